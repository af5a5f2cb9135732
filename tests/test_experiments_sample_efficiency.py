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
    assert se.size_to_reach(sizes, [0.05, 0.0, 0.0], 0.1) == 16.0  # already there
    assert se.size_to_reach(sizes, [0.5, 0.3, 0.2], 0.1) is None  # never
    # halfway from 0.5 to 0.0 -> halfway in log n between 16 and 64 -> 32
    assert math.isclose(se.size_to_reach(sizes, [0.5, 0.0, 0.0], 0.25), 32.0, rel_tol=1e-12)
    # halfway from 0.3 to -0.1 -> halfway in log n between 64 and 256 -> 128
    assert math.isclose(se.size_to_reach(sizes, [0.5, 0.3, -0.1], 0.1), 128.0, rel_tol=1e-12)
    assert math.isclose(se.size_to_reach(sizes, [0.5, 0.1, 0.0], 0.1), 64.0, rel_tol=1e-12)


def test_gain_and_its_bounds():
    assert se.gain(64.0, 16.0, 8.0, 256.0) == (4.0, False)
    assert se.gain(None, 16.0, 8.0, 256.0) == (16.0, True)  # slow never reached: >= n_max/n
    assert se.gain(64.0, 8.0, 8.0, 256.0) == (8.0, True)  # fast reached at the smallest n
    assert se.gain(64.0, None, 8.0, 256.0) == (None, False)
    assert se.fmt_gain((16.0, True)) == ">= 16x"


def test_repeat_to_keeps_the_empirical_distribution():
    ds = se.task_data(se.run_keys([0])[0][0], 8, se.settings("tiny"), "fixed")
    rep = se.repeat_to(ds, 4, 16)
    assert rep.x.shape == (16, 12, 1) and rep.y.shape == (16,)
    np.testing.assert_array_equal(np.asarray(rep.x[4:8]), np.asarray(ds.x[:4]))
    with pytest.raises(ValueError, match=r"repeat_to: `n`=3 must divide n_max=16"):
        se.repeat_to(ds, 3, 16)


def test_models_share_output_shape_and_differ_in_tying():
    shapes = {}
    for arch in se.ARCHS:
        net = se.model(arch, 4, 3)
        seen = {}

        def init(k, net=net, seen=seen):
            seen["out_shape"], p = net.init(k, (12, 1))
            return p

        params = jax.jit(init)(se.run_keys([0])[0][0])
        out_shape = seen["out_shape"]
        shapes[arch] = (out_shape, params[0]["w"].shape)
        y = jax.jit(net.apply)(params, jnp.ones((5, 12, 1), jnp.float32))
        assert y.shape == (5, 1) and y.dtype == jnp.float32
    assert shapes["conv"][1] == (3, 1, 4)
    assert shapes["local"][1] == (10, 3, 1, 4)
    assert shapes["fc"][1] == (40, 12)
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
    assert on_disk["figures"] == ["test_error_vs_n.png"]
    png = (tmp_path / "sample_efficiency" / "test_error_vs_n.png").read_bytes()
    assert png[:8] == PNG_MAGIC and len(png) > 1000
    tasks = on_disk["numbers"]["tasks"]
    assert sorted(tasks) == ["a", "b"]
    for task in tasks.values():
        assert sorted(task["models"]) == sorted(se.ARCHS)
        for m in task["models"].values():
            assert len(m["test_error"]["mean"]) == len(cfg["sizes"])
            assert m["test_error"]["n"] == 3
            assert np.shape(m["test_error_per_seed"]) == (len(cfg["sizes"]), 3)
            assert all(0.0 <= e <= 1.0 for e in m["test_error"]["mean"])
        assert sorted(task["gains"]) == [
            "both_fc_over_conv",
            "locality_fc_over_local",
            "sharing_local_over_conv",
        ]
    assert len(on_disk["claims"]) == 3
    assert all(c["holds"] is None for c in on_disk["claims"])  # not decided at tiny size
    assert on_disk["table"].startswith("| task | model |")
