"""experiments/sample_efficiency.py: its helpers against hand computations, and the script at
the tiny size into a temporary folder (schema and figure only; no scientific outcome is
asserted at this size)."""

import importlib
import json
import math
import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

EXPERIMENTS = Path(__file__).resolve().parent.parent / "experiments"
sys.path.insert(0, str(EXPERIMENTS))

common = importlib.import_module("common")
se = importlib.import_module("sample_efficiency")

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def test_size_to_reach_interpolates_in_log_n():
    sizes = [16, 64, 256]
    assert se.size_to_reach(sizes, [0.05, 0.0, 0.0], 0.1) == (16.0, False, True)  # at first
    assert se.size_to_reach(sizes, [0.5, 0.3, 0.2], 0.1) == (256.0, True, False)  # censored
    # halfway from 0.5 to 0.0 -> halfway in log n between 16 and 64 -> 32
    n, cen, first = se.size_to_reach(sizes, [0.5, 0.0, 0.0], 0.25)
    assert math.isclose(n, 32.0, rel_tol=1e-12) and not cen and not first
    # halfway from 0.3 to -0.1 -> halfway in log n between 64 and 256 -> 128
    assert math.isclose(se.size_to_reach(sizes, [0.5, 0.3, -0.1], 0.1)[0], 128.0, rel_tol=1e-12)
    assert math.isclose(se.size_to_reach(sizes, [0.5, 0.1, 0.0], 0.1)[0], 64.0, rel_tol=1e-12)
    # a skipped size (NaN) after the crossing does not matter
    assert se.size_to_reach(sizes, [0.5, 0.0, np.nan], 0.25)[1] is False


def test_loglog_slopes_and_censoring():
    ds = [8, 16, 32, 64]
    n = np.array([[10.0 * d for d in ds], [3.0 * d**2 for d in ds]])  # slopes 1 and 2
    cen = np.zeros_like(n, dtype=bool)
    slopes, up, down = se.loglog_slopes(ds, n, cen)
    np.testing.assert_allclose(slopes, [1.0, 2.0], rtol=1e-12)
    assert not up.any() and not down.any()
    cen[0, 3] = True  # censored at the largest d: the slope can only be larger
    cen[1, 0] = True  # censored at the smallest d: the slope could be smaller
    _, up, down = se.loglog_slopes(ds, n, cen)
    assert up.tolist() == [True, False] and down.tolist() == [False, True]
    iv = se.slope_interval(
        np.array([1.0, 1.2, 0.9]), np.array([True, False, False]), np.zeros(3, bool)
    )
    assert iv.censoring == "at_least" and math.isinf(iv.high) and math.isfinite(iv.low)
    iv = se.slope_interval(np.array([1.0, 1.2, 0.9]), np.zeros(3, bool), np.array([0, 1, 0], bool))
    assert iv.censoring == "at_most" and math.isinf(iv.low) and math.isfinite(iv.high)


def test_repeat_to_keeps_the_empirical_distribution():
    cfg = se.settings("tiny")
    pool, test = se.task_sets(cfg, 12, [0, 1], 8)
    assert pool.x.shape == (4, 8, 12, 2) and test.x.shape == (4, cfg["n_test"], 12, 2)
    rep = se.repeat_to(pool, 4, 16)
    assert rep.x.shape == (4, 16, 12, 2) and rep.y.shape == (4, 16)
    np.testing.assert_array_equal(np.asarray(rep.x[:, 4:8]), np.asarray(pool.x[:, :4]))
    # each run (task, seed) has its own draw; task (a) has a fixed marker, (b) a moving one
    assert not np.array_equal(np.asarray(pool.x[0]), np.asarray(pool.x[1]))
    assert len({tuple(m) for m in np.asarray(pool.x[0, :, :, 1])}) == 1
    with pytest.raises(ValueError, match=r"repeat_to: `n`=3 must divide n_max=16"):
        se.repeat_to(pool, 3, 16)


def test_models_share_output_shape_and_differ_in_tying():
    shapes = {}
    for arch in se.ARCHS:
        net = se.model(arch, 4, 3)
        seen = {}

        def init(k, net=net, seen=seen):
            seen["out_shape"], p = net.init(k, (12, 2))
            return p

        params = jax.jit(init)(se.run_keys([0])[0][0])
        shapes[arch] = params[0]["w"].shape
        y = jax.jit(net.apply)(params, jnp.ones((5, 12, 2), jnp.float32))
        assert y.shape == (5, 1) and y.dtype == jnp.float32
    assert shapes == {"conv": (3, 2, 4), "local": (10, 3, 2, 4), "fc": (40, 24)}
    with pytest.raises(ValueError, match=r"first_layer: `arch` must be one of"):
        se.first_layer("rnn", 4, 3)


@pytest.mark.slow
def test_tiny_run_writes_metrics_and_figure(tmp_path):
    metrics = se.main(["--tiny", "--seeds", "3", "--out", str(tmp_path)])
    path = tmp_path / "sample_efficiency" / "metrics.json"
    on_disk = json.loads(path.read_text())
    assert on_disk == json.loads(json.dumps(metrics))
    common.check_metrics(on_disk)
    assert on_disk["size"] == "tiny" and on_disk["seeds"] == [0, 1, 2]
    cfg = on_disk["config"]
    assert on_disk["figures"] == ["test_error_vs_n.png", "n_eps_vs_d.png"]
    for fig in on_disk["figures"]:
        png = (tmp_path / "sample_efficiency" / fig).read_bytes()
        assert png[:8] == PNG_MAGIC and len(png) > 1000
    tasks = on_disk["numbers"]["tasks"]
    assert sorted(tasks) == ["a", "b"]
    for task in tasks.values():
        for d in cfg["ds"]:
            for m in task["errors"][str(d)].values():
                assert m["test_error"]["n"] == 3
                assert np.shape(m["test_error_per_seed"]) == (len(cfg["sizes"]), 3)
        assert sorted(task["by_eps"]) == sorted(f"{e:g}" for e in cfg["eps"])
        for e in task["by_eps"].values():
            for arch in se.ARCHS:
                ne = e["n_eps"][arch]
                assert np.shape(ne["per_seed"]) == (3, len(cfg["ds"]))
                # a censored value is a lower bound: its interval is open above
                for j, g in enumerate(ne["geometric_mean"]):
                    if any(row[j] for row in ne["censored"]):
                        assert g["high"] is None and g["censoring"] == "at_least"
                assert len(e["slopes"][arch]["per_seed"]) == 3
            assert sorted(e["ratios"]) == sorted(r[0] for r in se.RATIOS)
    assert len(on_disk["claims"]) == len(se.CLAIMS)
    for c in on_disk["claims"]:
        assert c["verdict"] in ("holds", "fails", "undecided")
        assert c["interval"] is not None and c["rule"]
    assert on_disk["table"].startswith("| task | net |")
