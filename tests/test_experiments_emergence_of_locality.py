"""experiments/emergence_of_locality.py at the tiny size into a temporary folder: schema,
figures, the reported quantities with intervals, the claims' verdict logic, and the
random-vector reference against its closed-form mean (no scientific outcome is asserted
at this size)."""

import importlib
import json
import sys
from pathlib import Path

import numpy as np
import pytest

EXPERIMENTS = Path(__file__).resolve().parent.parent / "experiments"
sys.path.insert(0, str(EXPERIMENTS))

common = importlib.import_module("common")
experiment = importlib.import_module("emergence_of_locality")

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
CI = {"estimate", "low", "high", "n", "censoring"}


def test_reference_ipr_is_measured_on_random_vectors():
    ref = experiment.reference_ipr(40, 20000, 0.99)
    # the mean of 20000 random vectors' IPR is within 1% of 3 / (D + 2)
    assert ref["mean"] == pytest.approx(3 / 42, rel=0.01)
    assert ref["quantile"] > ref["mean"] and ref["closed_form_mean"] == pytest.approx(3 / 42)


def test_seed_stats_counts_localised_units():
    ipr = np.array([[0.5, 0.5, 0.1, 0.1], [0.5, 0.1, 0.1, 0.1]])
    s = experiment.seed_stats(ipr, 0.2)
    np.testing.assert_allclose(s["frac"], [0.5, 0.25])
    assert s["seed"].tolist() == [True, False]


def test_step_keys_give_every_step_its_own_key():
    import jax

    k = experiment.step_keys(jax.random.split(jax.random.key(0), 2), 5)
    assert k.shape[:2] == (2, 5)
    rows = {tuple(np.asarray(r)) for r in k.reshape(10, -1)}
    assert len(rows) == 10


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    out = tmp_path_factory.mktemp("results")
    metrics = experiment.main(["--tiny", "--seeds", "3", "--out", str(out)])
    return out, metrics


@pytest.mark.slow
def test_metrics_schema_numbers_and_claims(tiny):
    out, metrics = tiny
    folder = out / "emergence_of_locality"
    on_disk = json.loads((folder / "metrics.json").read_text())
    assert on_disk == json.loads(json.dumps(metrics))
    common.check_metrics(on_disk)
    assert on_disk["size"] == "tiny" and on_disk["seeds"] == [0, 1, 2]
    assert set(on_disk["figures"]) == {"weights_heatmap.png", "ipr_vs_step.png"}
    for fig in on_disk["figures"]:
        data = (folder / fig).read_bytes()
        assert data[:8] == PNG_MAGIC and len(data) > 1000
    cfg, numbers = on_disk["config"], on_disk["numbers"]
    assert cfg == experiment.config_for("tiny")
    for name in experiment.DATASETS:
        n = numbers[name]
        for key in ("final_test_acc", "mean_ipr", "frac_localised_units_per_seed"):
            assert CI <= set(n[key]) and n[key]["n"] == 3
        assert n["seeds_localised"]["method"] == "clopper-pearson"
        assert n["units_localised"]["method"] == "clopper-pearson"
        assert n["units_localised"]["n"] == 3 * cfg["hidden"]
        assert np.shape(n["unit_ipr_per_seed"]) == (3, cfg["hidden"])
        assert len(n["curve_mean_ipr_per_seed"][0]) == len(numbers["step"])
    sens = numbers["sensitivity"]["cells"]
    assert len(sens) == len(cfg["sensitivity"]["batch"]) * len(cfg["sensitivity"]["gain"])
    assert len(on_disk["claims"]) == len(experiment.CLAIMS)
    for c in on_disk["claims"]:
        assert c["verdict"] in ("holds", "fails", "undecided") and c["interval"] is not None
        lo, hi = c["interval"]["low"], c["interval"]["high"]
        assert lo is None or hi is None or lo <= hi
    assert "Sensitivity" in on_disk["table"] and "random Gaussian vectors" in on_disk["table"]
