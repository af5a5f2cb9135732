"""efcn at the tiny size: schema of metrics.json, the figures, and the exactness of the
embedding (a property of the library, not a scientific outcome)."""

import importlib
import json
import math
import sys
from pathlib import Path

import pytest

EXPERIMENTS = Path(__file__).resolve().parent.parent / "experiments"
sys.path.insert(0, str(EXPERIMENTS))

common = importlib.import_module("common")
experiment = importlib.import_module("efcn")

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
pytestmark = pytest.mark.slow  # runs the experiment script (tiny size)
STATS = {"mean", "std", "min", "max", "n"}


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    out = tmp_path_factory.mktemp("results")
    metrics = experiment.main(["--tiny", "--seeds", "3", "--out", str(out)])
    return out, metrics


def test_metrics_schema_and_figures(tiny):
    out, metrics = tiny
    folder = out / "efcn"
    on_disk = json.loads((folder / "metrics.json").read_text())
    assert on_disk == json.loads(json.dumps(metrics))
    common.check_metrics(on_disk)
    assert on_disk["name"] == "efcn" and on_disk["size"] == "tiny"
    assert on_disk["seeds"] == [0, 1, 2]
    assert set(on_disk["figures"]) == {"curves.png", "final_error_vs_tw.png"}
    for fig in on_disk["figures"]:
        data = (folder / fig).read_bytes()
        assert data[:8] == PNG_MAGIC and len(data) > 1000


def test_numbers_have_every_reported_quantity(tiny):
    _, m = tiny
    cfg, numbers = m["config"], m["numbers"]
    t_ws = sorted(set(cfg["t_w"]))
    assert cfg["budget"] == max(t_ws) + cfg["fcn_steps"]
    assert numbers["cnn_full_budget_steps"] == cfg["budget"]
    assert list(numbers["per_t_w"]) == [str(t) for t in t_ws]
    for key in (
        "cnn_full_budget_err",
        "fcn_scratch_err",
        "fcn_scratch_final_off_share",
        "fcn_scratch_off_share_at_init",
    ):
        assert set(numbers[key]) == STATS and numbers[key]["n"] == 3
    for t in t_ws:
        row = numbers["per_t_w"][str(t)]
        assert set(row) == {
            "cnn_err_at_t_w",
            "efcn_final_err",
            "efcn_final_off_share",
            "efcn_max_off_share",
            "off_share_at_embedding",
        }
        for stats in row.values():
            assert set(stats) == STATS and math.isfinite(stats["mean"])
            assert 0.0 <= stats["mean"] <= 1.0
    c = numbers["curves"]
    assert c["cnn_step"][-1] == cfg["budget"]
    assert len(c["cnn_err"]["mean"]) == len(c["cnn_step"])
    assert c["fcn_step"][-1] == cfg["fcn_steps"]
    for t in t_ws:
        assert len(c["efcn_off_share"][str(t)]["mean"]) == len(c["fcn_step"])


def test_embedding_is_exact(tiny):
    # the dense twin computes the CNN's function: a library guarantee, checked at any size
    _, m = tiny
    assert m["numbers"]["embedding_max_relative_output_diff"] < 1e-5
    for t in m["numbers"]["per_t_w"].values():
        # the embedded matrices hold nothing off the conv structure
        assert t["off_share_at_embedding"]["max"] == pytest.approx(0.0, abs=1e-12)
    assert m["claims"][0]["holds"] is True


def test_claims_and_table(tiny):
    _, m = tiny
    assert len(m["claims"]) == 5
    for c in m["claims"]:
        assert set(c) == {"claim", "measured", "holds"}
        assert c["holds"] in (True, False)
        assert "rule:" in c["measured"]
    assert "FCN from scratch" in m["table"] and "eFCN t_w=0" in m["table"]
