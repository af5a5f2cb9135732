"""Moves between the conv, locally connected and dense twins (convjax.nn.family):
embeddings are lossless, projections are idempotent nearest points, adjoints are
true adjoints, and the distances measure what they say."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from test_nn_strategies import layer_configs

import convjax
from convjax import nn

HI = jax.lax.Precision.HIGHEST


def _setup(c, seed, dtype=np.float64):
    """The structure, the three twin layers and random params of each kind."""
    rng = np.random.default_rng(seed)
    conv = nn.Conv1D(c["Cout"], c["K"], precision=HI, **c["opts"])
    s = nn.structure(conv, (c["L"], c["Cin"]))
    lout, cout = s.out_length, s.out_channels

    def draw(*shape):
        return jnp.asarray(rng.normal(size=shape).astype(dtype))

    params = {
        "conv": {"w": draw(*s.filter_shape), "b": draw(cout)},
        "local": {"w": draw(*s.local_filter_shape), "b": draw(lout, cout)},
        "dense": {"w": draw(*s.dense_shape), "b": draw(lout, cout)},
    }
    layers = {"conv": conv, "local": nn.twin(conv, "per_position"), "dense": nn.twin(conv, "none")}
    x = draw(*c["batch"], c["L"], c["Cin"])
    return s, layers, params, x, rng


def _dot(a, b):
    return sum(jnp.vdot(a[k], b[k]) for k in a)


@settings(max_examples=10, deadline=None)
@given(c=layer_configs(), seed=st.integers(0, 2**16))
def test_embeddings_are_lossless_float64(c, seed):
    s, layers, p, x, _ = _setup(c, seed)

    @jax.jit
    def run(p, x):
        to_local = nn.conv_to_local(p["conv"], s)
        to_dense = nn.conv_to_dense(p["conv"], s)
        local_dense = nn.local_to_dense(p["local"], s)
        return {
            "conv": layers["conv"].apply(p["conv"], x),
            "conv_as_local": layers["local"].apply(to_local, x),
            "conv_as_dense": layers["dense"].apply(to_dense, x),
            "local": layers["local"].apply(p["local"], x),
            "local_as_dense": layers["dense"].apply(local_dense, x),
            "composed": nn.local_to_dense(to_local, s)["w"] - to_dense["w"],
        }

    r = jax.tree_util.tree_map(np.asarray, run(p, x))
    tol = {"rtol": 1e-12, "atol": 1e-12}
    np.testing.assert_allclose(r["conv_as_local"], r["conv"], **tol)
    np.testing.assert_allclose(r["conv_as_dense"], r["conv"], **tol)
    np.testing.assert_allclose(r["local_as_dense"], r["local"], **tol)
    np.testing.assert_allclose(r["composed"], 0.0, **tol)


def test_embeddings_are_lossless_float32():
    c = {"L": 12, "Cin": 4, "Cout": 6, "K": 3, "batch": (5,),
         "opts": {"stride": 2, "padding": "same", "dilation": 2, "groups": 2, "flip": True,
                  "padding_mode": "reflect"}}
    s, _, p, x, _ = _setup(c, 0, np.float32)
    conv = nn.Conv1D(6, 3, dtype=jnp.float32, precision=HI, **c["opts"])
    y = conv.apply(p["conv"], x)
    assert y.dtype == jnp.float32
    for kind, params in (("per_position", nn.conv_to_local(p["conv"], s)),
                         ("none", nn.conv_to_dense(p["conv"], s))):
        got = nn.twin(conv, kind).apply(params, x)
        assert got.dtype == jnp.float32
        # float32: sums of 6 products of unit normals; 1e-5 is ~100 ulps of the outputs
        np.testing.assert_allclose(got, y, rtol=1e-5, atol=1e-5)


@settings(max_examples=10, deadline=None)
@given(c=layer_configs(batch_shapes=((),)), seed=st.integers(0, 2**16))
def test_projections_invert_embeddings_and_are_idempotent(c, seed):
    s, _, p, _, _ = _setup(c, seed)
    live = jnp.asarray(s.copies() > 0)[:, None, None]  # dead taps read only padding zeros
    injective = np.linalg.matrix_rank(s.tap_gram()) == int(np.sum(s.copies() > 0))

    @jax.jit
    def run(p):
        conv, local, dense = p["conv"], p["local"], p["dense"]
        conv_live = {"w": jnp.where(live, conv["w"], 0.0), "b": conv["b"]}
        proj_lc = nn.conv_to_local(nn.local_to_conv(local, s), s)
        proj_dc = nn.conv_to_dense(nn.dense_to_conv(dense, s), s)
        proj_dl = nn.local_to_dense(nn.dense_to_local(dense, s), s)
        e_dense = nn.conv_to_dense(conv, s)
        l_dense = nn.local_to_dense(local, s)
        out = {
            # N(E(p)) == p in parameter space (live taps) for local -> conv
            "back_lc": (nn.local_to_conv(nn.conv_to_local(conv, s), s), conv_live),
            # E(N(E(p))) == E(p): an embedded layer projects to itself
            "back_dc": (nn.conv_to_dense(nn.dense_to_conv(e_dense, s), s), e_dense),
            "back_dl": (nn.local_to_dense(nn.dense_to_local(l_dense, s), s), l_dense),
            # projections are idempotent
            "idem_lc": (nn.conv_to_local(nn.local_to_conv(proj_lc, s), s), proj_lc),
            "idem_dc": (nn.conv_to_dense(nn.dense_to_conv(proj_dc, s), s), proj_dc),
            "idem_dl": (nn.local_to_dense(nn.dense_to_local(proj_dl, s), s), proj_dl),
        }
        if injective:  # no dense entry holds a sum of taps: the filter itself comes back
            out["back_dc_params"] = (nn.dense_to_conv(e_dense, s), conv_live)
        return out

    for name, (a, b) in run(p).items():
        for k in a:
            np.testing.assert_allclose(a[k], b[k], rtol=1e-10, atol=1e-10, err_msg=name)


@settings(max_examples=10, deadline=None)
@given(c=layer_configs(batch_shapes=((),)), seed=st.integers(0, 2**16))
def test_adjoints_are_true_adjoints(c, seed):
    """<E u, v> == <u, E* v> for each embedding E, weights and bias together."""
    s, _, p, _, _ = _setup(c, seed)
    _, _, q, _, _ = _setup(c, seed + 1)

    @jax.jit
    def run(p, q):
        return jnp.stack([
            _dot(nn.conv_to_local(p["conv"], s), q["local"]),
            _dot(p["conv"], nn.local_to_conv_adjoint(q["local"], s)),
            _dot(nn.local_to_dense(p["local"], s), q["dense"]),
            _dot(p["local"], nn.dense_to_local_adjoint(q["dense"], s)),
            _dot(nn.conv_to_dense(p["conv"], s), q["dense"]),
            _dot(p["conv"], nn.dense_to_conv_adjoint(q["dense"], s)),
        ])

    r = np.asarray(run(p, q))
    scale = 1.0 + np.abs(r).max()
    np.testing.assert_allclose(r[0::2], r[1::2], rtol=0, atol=1e-12 * scale)


def test_adjoint_maps_the_dense_gradient_to_the_conv_gradient():
    c = {"L": 9, "Cin": 2, "Cout": 4, "K": 3, "batch": (3,),
         "opts": {"stride": 2, "padding": "full", "dilation": 1, "groups": 2, "flip": False,
                  "padding_mode": "circular"}}
    s, layers, p, x, _ = _setup(c, 3)

    def loss(kind):
        return lambda q: jnp.sum(jnp.tanh(layers[kind].apply(q, x)) ** 2)

    g_conv = jax.grad(loss("conv"))(p["conv"])
    g_dense = jax.grad(loss("dense"))(nn.conv_to_dense(p["conv"], s))
    g_local = jax.grad(loss("local"))(nn.conv_to_local(p["conv"], s))
    for got in (nn.dense_to_conv_adjoint(g_dense, s), nn.local_to_conv_adjoint(g_local, s)):
        for k in g_conv:
            np.testing.assert_allclose(got[k], g_conv[k], rtol=1e-12, atol=1e-12)


def _least_squares_conv(s, D):
    """Independent nearest conv: numpy lstsq over the basis {T(e_j)}."""
    n = int(np.prod(s.filter_shape))
    basis = np.stack([np.asarray(s.dense(jnp.eye(n)[j].reshape(s.filter_shape))).ravel()
                      for j in range(n)], axis=1)
    coef, *_ = np.linalg.lstsq(basis, np.asarray(D).ravel(), rcond=None)
    return (basis @ coef).reshape(D.shape)


@pytest.mark.parametrize("mode", ["zeros", "circular"])
def test_distances_measure_what_they_say(mode):
    c = {"L": 7, "Cin": 2, "Cout": 2, "K": 3, "batch": (),
         "opts": {"stride": 1, "padding": "same", "dilation": 2, "groups": 1, "flip": False,
                  "padding_mode": mode}}
    s, _, p, _, rng = _setup(c, 5)
    D = np.asarray(p["dense"]["w"])
    mask = s.mask()
    # off-structure share: exactly the squared norm at structural zeros
    share = float(nn.off_structure_share(p["dense"], s))
    np.testing.assert_allclose(share, (D[~mask] ** 2).sum() / (D**2).sum(), rtol=1e-12)
    # dense_to_local drops exactly that part
    kept = np.asarray(nn.local_to_dense(nn.dense_to_local(p["dense"], s), s)["w"])
    np.testing.assert_allclose(((D - kept) ** 2).sum() / (D**2).sum(), share, rtol=1e-12)
    # distance to conv against an independent least-squares solve
    near = _least_squares_conv(s, D)
    want = np.linalg.norm(D - near) / np.linalg.norm(D)
    np.testing.assert_allclose(float(nn.distance_to_conv(p["dense"], s)), want, rtol=1e-10)
    np.testing.assert_allclose(nn.conv_to_dense(nn.dense_to_conv(p["dense"], s), s)["w"], near,
                               rtol=1e-10, atol=1e-12)
    # a conv's twins are at distance 0; conv params have share 0
    for q in (nn.conv_to_dense(p["conv"], s), nn.conv_to_local(p["conv"], s), p["conv"]):
        assert float(nn.distance_to_conv(q, s)) < 1e-13
        assert float(nn.off_structure_share(q, s)) == 0.0
    # an all-zero layer is at distance 0 and share 0, not nan
    zero = {"w": jnp.zeros(s.dense_shape)}
    assert float(nn.distance_to_conv(zero, s)) == 0.0
    assert float(nn.off_structure_share(zero, s)) == 0.0


def test_local_distance_and_dead_taps():
    # valid-free padding "full" with K=3 has dead taps at the two ends
    s = convjax.conv_structure((3, 1, 1), 2, padding="full")
    w = jnp.ones(s.local_filter_shape)
    dead = ~s.local_mask()
    assert dead.any()
    share = float(nn.off_structure_share({"w": w}, s))
    np.testing.assert_allclose(share, dead.sum() / dead.size, rtol=1e-12)
    # untied filters that are a conv on the live taps: distance is the dead part only
    np.testing.assert_allclose(float(nn.distance_to_conv({"w": w}, s)), np.sqrt(share),
                               rtol=1e-12)


def test_move_and_kind_of():
    s = convjax.conv_structure((3, 2, 4), 8, padding="same")
    p = {"w": jnp.ones(s.filter_shape), "b": jnp.arange(4.0)}
    assert nn.kind_of(p, s) == "conv"
    d = nn.move(p, s, "dense")
    assert nn.kind_of(d, s) == "dense"
    np.testing.assert_array_equal(d["b"], np.broadcast_to(np.arange(4.0), (8, 4)))
    back = nn.move(d, s, "conv")
    np.testing.assert_allclose(back["w"], p["w"], rtol=1e-12)
    summed = nn.move(d, s, "conv", method="adjoint")
    np.testing.assert_allclose(summed["b"], 8 * p["b"], rtol=1e-12)
    assert nn.move(p, s, "conv")["w"] is p["w"]


def test_bias_free_params_move_too():
    s = convjax.conv_structure((2, 1, 3), 5)
    d = nn.conv_to_dense({"w": jnp.ones(s.filter_shape)}, s)
    assert set(d) == {"w"}


def test_family_errors():
    s = convjax.conv_structure((3, 2, 4), 8, padding="same")
    conv = {"w": jnp.ones(s.filter_shape), "b": jnp.ones(4)}
    local = nn.conv_to_local(conv, s)
    with pytest.raises(ValueError, match=r"conv_to_dense: `params` must be conv params .*got "
                                         r"local params with shape \(8, 3, 2, 4\)"):
        nn.conv_to_dense(local, s)
    with pytest.raises(ValueError, match=r"dense_to_conv: `params\['w'\]` has shape \(5, 5\), "
                                         r"which is none of the shapes of this structure"):
        nn.dense_to_conv({"w": jnp.ones((5, 5))}, s)
    with pytest.raises(ValueError, match=r"conv_to_local: `params\['b'\]` must have shape "
                                         r"\(4,\) for conv params, got \(8, 4\)"):
        nn.conv_to_local({"w": conv["w"], "b": jnp.ones((8, 4))}, s)
    with pytest.raises(TypeError, match=r"local_to_conv: `s` must be a ConvStructure"):
        nn.local_to_conv(local, nn.Conv1D(4, 3))
    with pytest.raises(TypeError, match=r"conv_to_local: `params` must be a dict"):
        nn.conv_to_local(conv["w"], s)
    with pytest.raises(ValueError, match=r"move: `to` must be one of 'conv', 'local', "
                                         r"'dense', got 'sparse'"):
        nn.move(conv, s, "sparse")
    with pytest.raises(ValueError, match=r"conv_to_local: `params` has unexpected keys "
                                         r"\['scale'\]"):
        nn.conv_to_local({**conv, "scale": jnp.ones(())}, s)
