"""experiments/efcn.py: the SGD per-entry step rule against its derivation (the eFCN's
nearest convolution takes exactly the CNN's step), and the script at the tiny size into a
temporary folder (schema, the exact embedding, intervals and verdict logic; no scientific
outcome is asserted at this size)."""

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
experiment = importlib.import_module("efcn")

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def test_step_rule_gives_the_nearest_conv_the_cnns_step():
    """Scaling each copy's gradient by its number of copies (bias: Lout) makes the mean of
    the copies' steps (the nearest convolution's step) equal the CNN's gradient step,
    in float64 to 1e-12; structural zeros keep multiplier 1."""
    with jax.enable_x64(True):
        cfg = {**experiment.config_for("tiny"), "dtype": "float64"}
        cnn, fcn, ss = experiment.models(cfg)
        _, p = cnn.init(jax.random.key(1), (cfg["task"]["d"], 1))
        x = jax.random.normal(jax.random.key(2), (7, cfg["task"]["d"], 1), jnp.float64)
        y = (jnp.arange(7) % 2).astype(jnp.int32)
        loss_cnn, _ = experiment.make_fns(cnn)
        loss_fcn, _ = experiment.make_fns(fcn)
        g_cnn = jax.grad(loss_cnn)(p, {"x": x, "y": y})
        pf = experiment.embed(p, ss)
        g_fcn = jax.grad(loss_fcn)(pf, {"x": x, "y": y})
        mult = experiment.step_multipliers(p, ss)
        stepped = jax.tree.map(jnp.multiply, g_fcn, mult)
        back = nn.move(stepped, ss, "conv")  # nearest conv: the mean over the copies
        for a, b in zip(jax.tree.leaves(back), jax.tree.leaves(g_cnn), strict=True):
            np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-12, atol=1e-14)
        for layer in (0, 2):
            m, s = np.asarray(mult[layer]["w"]), ss[layer]
            mask = np.asarray(s.mask())
            assert m.min() == 1.0 and m.max() == s.copies().max()
            assert np.all(m[~mask] == 1.0) and np.all(m[mask] >= 1.0)
            assert np.all(np.asarray(mult[layer]["b"]) == s.out_length)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    out = tmp_path_factory.mktemp("results")
    metrics = experiment.main(["--tiny", "--seeds", "3", "--out", str(out)])
    return out, metrics


@pytest.mark.slow
def test_metrics_numbers_and_claims(tiny):
    out, metrics = tiny
    folder = out / "efcn"
    on_disk = json.loads((folder / "metrics.json").read_text())
    assert on_disk == json.loads(json.dumps(metrics))
    common.check_metrics(on_disk)
    assert on_disk["size"] == "tiny" and on_disk["seeds"] == [0, 1, 2]
    assert set(on_disk["figures"]) == {"curves.png", "final_error_vs_tw.png"}
    for fig in on_disk["figures"]:
        data = (folder / fig).read_bytes()
        assert data[:8] == PNG_MAGIC and len(data) > 1000
    cfg, numbers = on_disk["config"], on_disk["numbers"]
    t_ws = sorted(set(cfg["t_w"]))
    assert cfg["budget"] == max(t_ws) + cfg["fcn_steps"]
    # the dense twin computes the CNN's function: a library guarantee, checked at any size
    assert numbers["embedding_max_relative_output_diff"] < 1e-5
    assert on_disk["claims"][0]["verdict"] == "holds" and on_disk["claims"][0]["interval"] is None
    for o in experiment.OPTIMIZERS:
        assert list(numbers[o]["per_t_w"]) == [str(t) for t in t_ws]
        for row in numbers[o]["per_t_w"].values():
            for key in ("efcn_err", "efcn_minus_cnn", "efcn_minus_fcn", "update_off_share"):
                assert row[key]["n"] == 3 and row[key]["low"] <= row[key]["high"]
            # a paired difference's estimate is the mean of the per-seed differences
            assert len(row["per_seed_err"]) == 3
    assert numbers["bonferroni_level"] == pytest.approx(1 - 0.05 / (len(t_ws) - 1))
    assert len(on_disk["claims"]) == 1 + 5 * len(experiment.OPTIMIZERS)
    for c in on_disk["claims"][1:]:
        assert c["verdict"] in ("holds", "fails", "undecided") and c["interval"] is not None
    assert "FCN from scratch" in on_disk["table"] and "eFCN t_w=0" in on_disk["table"]
