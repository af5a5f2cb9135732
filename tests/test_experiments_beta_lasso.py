"""experiments/beta_lasso.py: its measures against numpy, and the script at the tiny size
into a temporary folder (schema and figures only; no scientific outcome is asserted at this
size)."""

import importlib
import json
import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from convjax import nn

EXPERIMENTS = Path(__file__).resolve().parent.parent / "experiments"
sys.path.insert(0, str(EXPERIMENTS))

common = importlib.import_module("common")
bl = importlib.import_module("beta_lasso")

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def numpy_best_window_share(w, k):
    a = np.abs(np.asarray(w, np.float64))
    out = []
    for row in a:
        total = row.sum()
        best = max(row[j : j + k].sum() for j in range(len(row) - k + 1))
        out.append(best / total if total > 0 else np.nan)
    return np.array(out)


def test_best_window_share_matches_numpy():
    rng = np.random.default_rng(0)
    w = rng.normal(size=(6, 10))
    w[2] = 0.0  # dead unit -> NaN
    w[3] = 0.0
    w[3, 4:7] = [1.0, -2.0, 0.5]  # perfectly local -> 1
    got = np.asarray(bl.best_window_share(jnp.asarray(w), 3))
    want = numpy_best_window_share(w, 3)
    np.testing.assert_allclose(got, want, rtol=1e-12, equal_nan=True)
    assert np.isnan(got[2]) and got[3] == 1.0


def test_first_layer_measures():
    d, k, c = 8, 3, 2
    layer = nn.Dense(c, kernel_size=k, dtype=jnp.float32)
    s = nn.structure(layer, (d, 1))
    _, p = layer.init(jax.random.key(0), (d, 1))
    w = np.zeros(p["w"].shape, np.float32)
    w[0, 3:6] = 1.0  # unit 0: on the window [3, 6)
    w[1, 0] = 2.0  # unit 1 (position 0, channel 1): one weight, inside its structure
    params = (
        {"w": jnp.asarray(w), "b": p["b"]},
        (),
        (),
        ({"w": jnp.ones((1, c)), "b": jnp.zeros((1,))}),
    )
    m = bl.first_layer_measures(params, s, k, (3, 6))
    n_w = w.size
    np.testing.assert_allclose(float(m["sparsity_w1"]), (n_w - 4) / n_w, rtol=1e-6)
    n_all = n_w + p["b"].size + 2 + 1
    zeros_all = (n_w - 4) + p["b"].size + 1  # init bias is 0, the readout bias is 0
    np.testing.assert_allclose(float(m["sparsity_all"]), zeros_all / n_all, rtol=1e-6)
    np.testing.assert_allclose(float(m["locality"]), 1.0, rtol=1e-6)
    np.testing.assert_allclose(float(m["alive_units"]), 2 / w.shape[0], rtol=1e-6)
    np.testing.assert_allclose(float(m["task_window"]), 3 / 5, rtol=1e-6)
    # unit 0 = (position 0, channel 0) reads [0, 3): its weights on [3, 6) are off-structure
    want_in = 1.0 - float(nn.off_structure_share({"w": jnp.asarray(w), "b": p["b"]}, s))
    np.testing.assert_allclose(float(m["in_structure"]), want_in, rtol=1e-6)
    np.testing.assert_allclose(want_in, 4.0 / 7.0, rtol=1e-6)
    want_dist = float(nn.distance_to_conv({"w": jnp.asarray(w), "b": p["b"]}, s))
    np.testing.assert_allclose(float(m["distance_to_conv"]), want_dist, rtol=1e-6)
    # a convolution embedded as a dense matrix is at distance 0
    conv = nn.conv_to_dense({"w": jnp.ones((k, 1, c)), "b": jnp.zeros((c,))}, s)
    m = bl.first_layer_measures((conv, (), (), params[3]), s, k, (3, 6))
    assert float(m["distance_to_conv"]) == pytest.approx(0.0, abs=1e-6)


def test_first_layer_measures_sum_the_channels_of_a_position():
    d, k, c, cin = 6, 2, 1, 2
    layer = nn.Dense(c, kernel_size=k, dtype=jnp.float32)
    s = nn.structure(layer, (d, cin))
    _, p = layer.init(jax.random.key(0), (d, cin))
    w = np.zeros(p["w"].shape, np.float32)
    w[0, 2 * cin + 1] = 1.0  # position 2, channel 1
    w[0, 3 * cin + 0] = 1.0  # position 3, channel 0
    params = (
        {"w": jnp.asarray(w), "b": p["b"]},
        (),
        (),
        {"w": jnp.ones((1, c)), "b": jnp.zeros(1)},
    )
    m = bl.first_layer_measures(params, s, k, (2, 4), cin)
    np.testing.assert_allclose(float(m["locality"]), 1.0, rtol=1e-6)
    np.testing.assert_allclose(float(m["task_window"]), 1.0, rtol=1e-6)


@pytest.mark.slow
def test_tiny_run_writes_metrics_and_figures(tmp_path):
    metrics = bl.main(["--tiny", "--seeds", "3", "--out", str(tmp_path)])
    on_disk = json.loads((tmp_path / "beta_lasso" / "metrics.json").read_text())
    assert on_disk == json.loads(json.dumps(metrics))
    common.check_metrics(on_disk)
    assert on_disk["size"] == "tiny" and on_disk["seeds"] == [0, 1, 2]
    assert on_disk["figures"] == ["training_curves.png", "first_layer_weights.png"]
    for fig in on_disk["figures"]:
        png = (tmp_path / "beta_lasso" / fig).read_bytes()
        assert png[:8] == PNG_MAGIC and len(png) > 1000
    numbers, cfg = on_disk["numbers"], on_disk["config"]
    assert sorted(numbers["fc"]) == sorted(f"{lam:g}" for lam in cfg["lams"])
    for entry in numbers["fc"].values():
        for m in bl.MEASURES:
            assert entry[m]["n"] == 3
        assert 0.0 <= entry["sparsity_w1"]["estimate"] <= 1.0
    assert numbers["fc"]["0"]["sparsity_w1"]["estimate"] == 0.0  # plain SGD zeroes nothing
    assert numbers["selected_lam"] in cfg["lams"] and numbers["selected_lam"] > 0
    pilot = numbers["pilot"]
    assert pilot["chosen_n"] in cfg["pilot_sizes"] and pilot["seeds"] == cfg["pilot_seeds"]
    assert not set(pilot["seeds"]) & set(on_disk["seeds"])  # pilot seeds are not reused
    assert np.shape(pilot["fc_sgd_error_per_seed"]) == (
        len(cfg["pilot_sizes"]),
        len(pilot["seeds"]),
    )
    assert numbers["n_train"] == pilot["chosen_n"]
    assert len(on_disk["claims"]) == len(bl.CLAIMS)
    for c in on_disk["claims"]:
        assert c["verdict"] in ("holds", "fails", "undecided") and c["interval"] is not None
    assert on_disk["table"].startswith("| net | training |") and "Pilot" in on_disk["table"]


def test_pilot_seeds_must_not_be_reused(tmp_path):
    with pytest.raises(ValueError, match=r"beta_lasso: pilot seeds \[100, 101\] must not"):
        bl.main(["--tiny", "--seeds", "102", "--out", str(tmp_path)])
