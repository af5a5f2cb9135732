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
    report = bench.main(["--quick", "--channels", "4", "--out", str(out)])
    saved = json.loads(out.read_text())
    assert saved == json.loads(json.dumps(report))
    res = saved["results"]["4"]
    assert set(res) == {"fit_vs_plain_loop", "fit_many_vs_sequential", "large_n_vs_small_n"}
    a = res["fit_vs_plain_loop"]
    assert a["ratio"] == pytest.approx(a["fit_steps_per_s"] / a["plain_loop_steps_per_s"])
    b = res["fit_many_vs_sequential"]
    assert b["ratio"] == pytest.approx(b["sequential_s"] / b["fit_many_s"]) and b["runs"] == 2
    for when in ("start", "end"):
        assert saved[when]["matmul_peak"]["gflops_best"] > 0
        assert len(saved[when]["load_average"]) == 3
    assert set(saved["quiet"]) == {"load_at_start", "waited_s", "quiet", "threshold"}
    assert "| 4 | `fit` vs plain jitted loop" in saved["markdown"]
    assert "fit_many_vs_sequential" in capsys.readouterr().out
