"""emergence_of_locality at the tiny size: schema of metrics.json and the figures.

No scientific outcome is asserted at this size; the measures themselves are tested
in tests/test_measures.py."""

import importlib
import json
import math
import sys
from pathlib import Path

import pytest

EXPERIMENTS = Path(__file__).resolve().parent.parent / "experiments"
sys.path.insert(0, str(EXPERIMENTS))

common = importlib.import_module("common")
experiment = importlib.import_module("emergence_of_locality")

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
pytestmark = pytest.mark.slow  # runs the experiment script (tiny size)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    out = tmp_path_factory.mktemp("results")
    metrics = experiment.main(["--tiny", "--seeds", "3", "--out", str(out)])
    return out, metrics


def test_metrics_schema_and_figures(tiny):
    out, metrics = tiny
    folder = out / "emergence_of_locality"
    on_disk = json.loads((folder / "metrics.json").read_text())
    assert on_disk == json.loads(json.dumps(metrics))
    common.check_metrics(on_disk)
    assert on_disk["name"] == "emergence_of_locality" and on_disk["size"] == "tiny"
    assert on_disk["seeds"] == [0, 1, 2]
    assert set(on_disk["figures"]) == {"weights_heatmap.png", "ipr_vs_step.png"}
    for fig in on_disk["figures"]:
        data = (folder / fig).read_bytes()
        assert data[:8] == PNG_MAGIC and len(data) > 1000
    assert on_disk["config"] == experiment.config_for("tiny")


def test_numbers_have_every_reported_quantity(tiny):
    _, m = tiny
    cfg, numbers = m["config"], m["numbers"]
    n_evals = cfg["steps"] // cfg["eval_every"]
    assert numbers["step"] == [0] + [cfg["eval_every"] * (i + 1) for i in range(n_evals)]
    assert numbers["gaussian_ipr_reference"] == pytest.approx(3 / (cfg["d"] + 2))
    assert numbers["uniform_window_share"] == pytest.approx(cfg["window"] / cfg["d"])
    for name in ("nlgp", "clone"):
        n = numbers[name]
        for key in (
            "final_test_acc",
            "final_train_loss",
            "final_ipr",
            "final_window_share",
            "share_of_units_above_2x_gaussian_ipr",
        ):
            assert set(n[key]) == {"mean", "std", "min", "max", "n"} and n[key]["n"] == 3
            assert math.isfinite(n[key]["mean"])
        assert len(n["curve_ipr"]["mean"]) == n_evals + 1
        assert len(n["curve_window_share"]["mean"]) == n_evals + 1
        assert len(n["curve_ipr_per_seed"]) == 3
        assert len(n["curve_ipr_per_seed"][0]) == n_evals + 1
        assert len(n["curve_test_acc"]["mean"]) == n_evals
        assert len(n["final_unit_ipr_seed0"]) == cfg["hidden"]
        assert n["seeds_localised"] in (0, 1, 2, 3)
        # the measures stay in their ranges (definitions, not outcomes)
        assert 1 / cfg["d"] - 1e-6 <= n["final_ipr"]["mean"] <= 1 + 1e-6
        assert cfg["window"] / cfg["d"] - 1e-6 <= n["final_window_share"]["mean"] <= 1 + 1e-6
        assert n["curve_ipr"]["mean"][0] == pytest.approx(numbers["init"]["ipr"]["mean"])


def test_claims_and_table(tiny):
    _, m = tiny
    assert len(m["claims"]) == 3
    for c in m["claims"]:
        assert set(c) == {"claim", "measured", "holds"}
        assert c["holds"] in (True, False)
        assert "rule:" in c["measured"]
    assert "Gaussian clone" in m["table"] and "NLGP" in m["table"]
