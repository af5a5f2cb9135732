"""digits at the tiny size: schema of metrics.json, the figure, the statistics fields
and that claims stay undecided at this size (numbers, not outcomes, are tested)."""

import importlib
import json
import sys
from pathlib import Path

import numpy as np
import pytest

EXPERIMENTS = Path(__file__).resolve().parent.parent / "experiments"
sys.path.insert(0, str(EXPERIMENTS))

common = importlib.import_module("common")
experiment = importlib.import_module("digits")

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
pytestmark = pytest.mark.slow  # runs the experiment script (tiny size)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    out = tmp_path_factory.mktemp("results")
    metrics = experiment.main(["--tiny", "--seeds", "3", "--out", str(out)])
    return out, metrics


def test_metrics_schema_figure_and_numbers(tiny):
    out, m = tiny
    folder = out / "digits"
    on_disk = json.loads((folder / "metrics.json").read_text())
    assert on_disk == json.loads(json.dumps(m))
    common.check_metrics(on_disk)
    assert on_disk["figures"] == ["test_error_vs_n.png"]
    assert (folder / "test_error_vs_n.png").read_bytes()[:8] == PNG_MAGIC
    cfg, models = m["config"], m["numbers"]["models"]
    assert list(models) == list(experiment.ARCHS)
    for s in models.values():
        per_seed = np.array(s["test_error_per_seed"])
        assert per_seed.shape == (len(cfg["sizes"]), 3)
        assert np.all((per_seed >= 0) & (per_seed <= 1))
        for row, iv in zip(per_seed, s["test_error"], strict=True):
            assert iv["n"] == 3 and iv["method"] == "t"
            assert np.isclose(iv["estimate"], row.mean())
            assert iv["low"] <= iv["estimate"] <= iv["high"]
    # the dense twin and the eFCN have the same parameter count; conv the fewest
    assert models["dense"]["n_params"] == models["efcn"]["n_params"]
    assert models["conv"]["n_params"] < models["local"]["n_params"] < models["dense"]["n_params"]
    assert len(m["numbers"]["verdicts"]) == len(m["claims"]) == 4
    for c, v in zip(m["claims"], m["numbers"]["verdicts"], strict=True):
        # decided by convjax.stats on the paired interval, shown next to the verdict
        assert c["verdict"] == v["verdict"] in ("holds", "fails", "undecided")
        assert c["holds"] == {"holds": True, "fails": False, "undecided": None}[c["verdict"]]
        assert c["interval"] is not None and c["interval"]["n"] == 3


def test_load_splits_without_overlap():
    cfg = experiment.settings("tiny")
    pool, test = experiment.load(cfg)
    assert test.x.shape == (cfg["n_test"], 8, 8, 1) and pool.x.shape[1:] == (8, 8, 1)
    assert len(test.y) + len(pool.y) == 1797
    assert float(pool.x.max()) <= 1.0 and float(pool.x.min()) >= 0.0
