"""The training benchmark script runs at a tiny size and writes its JSON."""

import importlib.util
import json
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "bench_train.py"


@pytest.mark.slow
def test_bench_train_quick(tmp_path, capsys):
    spec = importlib.util.spec_from_file_location("bench_train", SCRIPT)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    out = tmp_path / "train.json"
    report = bench.main(["--quick", "--steps", "4", "--algorithms", "auto", "--out", str(out)])
    saved = json.loads(out.read_text())
    assert saved == json.loads(json.dumps(report))
    res = saved["results"]["auto"]
    assert set(res) == {"one_run", "vmapped_2", "sequential_2"}
    for r in res.values():
        assert r["warm_s"] > 0 and r["cold_s"] > 0
    assert saved["speedup_vmapped_vs_sequential"]["auto"] == pytest.approx(
        res["sequential_2"]["warm_s"] / res["vmapped_2"]["warm_s"])
    assert saved["config"]["steps"] == 4 and saved["config"]["runs"] == 2
    assert "faster" in capsys.readouterr().out
