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
    layers = {"conv": conv, "local": nn.twin(conv, "local"), "dense": nn.twin(conv, "dense")}
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
    c = {
        "L": 12,
        "Cin": 4,
        "Cout": 6,
        "K": 3,
        "batch": (5,),
        "opts": {
            "stride": 2,
            "padding": "same",
            "dilation": 2,
            "groups": 2,
            "flip": True,
            "padding_mode": "reflect",
        },
    }
    s, _, p, x, _ = _setup(c, 0, np.float32)
    conv = nn.Conv1D(6, 3, dtype=jnp.float32, precision=HI, **c["opts"])
    y = conv.apply(p["conv"], x)
    assert y.dtype == jnp.float32
    for kind, params in (
        ("local", nn.conv_to_local(p["conv"], s)),
        ("dense", nn.conv_to_dense(p["conv"], s)),
    ):
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
        return jnp.stack(
            [
                _dot(nn.conv_to_local(p["conv"], s), q["local"]),
                _dot(p["conv"], nn.local_to_conv_adjoint(q["local"], s)),
                _dot(nn.local_to_dense(p["local"], s), q["dense"]),
                _dot(p["local"], nn.dense_to_local_adjoint(q["dense"], s)),
                _dot(nn.conv_to_dense(p["conv"], s), q["dense"]),
                _dot(p["conv"], nn.dense_to_conv_adjoint(q["dense"], s)),
            ]
        )

    r = np.asarray(run(p, q))
    scale = 1.0 + np.abs(r).max()
    np.testing.assert_allclose(r[0::2], r[1::2], rtol=0, atol=1e-12 * scale)


def test_adjoint_maps_the_dense_gradient_to_the_conv_gradient():
    c = {
        "L": 9,
        "Cin": 2,
        "Cout": 4,
        "K": 3,
        "batch": (3,),
        "opts": {
            "stride": 2,
            "padding": "full",
            "dilation": 1,
            "groups": 2,
            "flip": False,
            "padding_mode": "circular",
        },
    }
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
    basis = np.stack(
        [np.asarray(s.dense(jnp.eye(n)[j].reshape(s.filter_shape))).ravel() for j in range(n)],
        axis=1,
    )
    coef, *_ = np.linalg.lstsq(basis, np.asarray(D).ravel(), rcond=None)
    return (basis @ coef).reshape(D.shape)


@pytest.mark.parametrize("mode", ["zeros", "circular"])
def test_distances_measure_what_they_say(mode):
    c = {
        "L": 7,
        "Cin": 2,
        "Cout": 2,
        "K": 3,
        "batch": (),
        "opts": {
            "stride": 1,
            "padding": "same",
            "dilation": 2,
            "groups": 1,
            "flip": False,
            "padding_mode": mode,
        },
    }
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
    np.testing.assert_allclose(
        nn.conv_to_dense(nn.dense_to_conv(p["dense"], s), s)["w"], near, rtol=1e-10, atol=1e-12
    )
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
    np.testing.assert_allclose(float(nn.distance_to_conv({"w": w}, s)), np.sqrt(share), rtol=1e-12)


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
    with pytest.raises(
        ValueError,
        match=r"conv_to_dense: `params` must be conv params .*got "
        r"local params with shape \(8, 3, 2, 4\)",
    ):
        nn.conv_to_dense(local, s)
    with pytest.raises(
        ValueError,
        match=r"dense_to_conv: `params\['w'\]` has shape \(5, 5\), "
        r"which is none of the shapes of this structure",
    ):
        nn.dense_to_conv({"w": jnp.ones((5, 5))}, s)
    with pytest.raises(
        ValueError,
        match=r"conv_to_local: `params\['b'\]` must have shape "
        r"\(4,\) for conv params, got \(8, 4\)",
    ):
        nn.conv_to_local({"w": conv["w"], "b": jnp.ones((8, 4))}, s)
    with pytest.raises(TypeError, match=r"local_to_conv: `s` must be a ConvStructure"):
        nn.local_to_conv(local, nn.Conv1D(4, 3))
    with pytest.raises(TypeError, match=r"conv_to_local: `params` must be a dict"):
        nn.conv_to_local(conv["w"], s)
    with pytest.raises(
        ValueError,
        match=r"move: `to` must be one of 'conv', 'local', "
        r"'dense', got 'sparse'",
    ):
        nn.move(conv, s, "sparse")
    with pytest.raises(
        ValueError,
        match=r"conv_to_local: `params` has unexpected keys "
        r"\['scale'\]",
    ):
        nn.conv_to_local({**conv, "scale": jnp.ones(())}, s)


# ---- whole models ---------------------------------------------------------------------------
def _model():
    """A serial model with linear layers of several settings (nested serial too) between
    non-linear and parameter-free layers, and a plain Dense readout (no conv structure)."""
    return nn.serial(
        nn.Conv1D(4, 3, padding="same", precision=HI),
        nn.Tanh,
        nn.serial(
            nn.Conv1D(6, 2, stride=2, padding="causal", groups=2, dilation=2, precision=HI), nn.Relu
        ),
        nn.AvgPool1D(2, stride=1),
        nn.Conv1D(3, 3, padding="full", flip=True, padding_mode="zeros", precision=HI),
        nn.Gelu,
        nn.Flatten(),
        nn.Dense(2, precision=HI),
    )


SHAPE = (11, 2)


def _model_params():
    model = _model()
    _, params = model.init(jax.random.key(0), (5, *SHAPE))
    # random biases too (they init to zero), so that bias moves are checked
    leaves, tree = jax.tree_util.tree_flatten(params)
    keys = jax.random.split(jax.random.key(1), len(leaves))
    params = jax.tree_util.tree_unflatten(
        tree, [jax.random.normal(k, a.shape, a.dtype) for k, a in zip(keys, leaves, strict=True)]
    )
    x = jax.random.normal(jax.random.key(2), (5, *SHAPE))
    return model, params, x


def test_structures_of_a_model_are_aligned_with_its_params():
    model, params, _ = _model_params()
    ss = nn.structures(model, (5, *SHAPE))
    assert [type(s).__name__ for s in ss] == [
        "ConvStructure",
        "NoneType",
        "tuple",
        "NoneType",
        "ConvStructure",
        "NoneType",
        "NoneType",
        "NoneType",
    ]
    assert ss[2][1] is None
    assert ss[0] == nn.structure(nn.Conv1D(4, 3, padding="same"), SHAPE)
    # the second conv reads the (11, 4) output of the first, the third the pooled (5, 6)
    assert ss[2][0] == convjax.conv_structure(
        (2, 2, 6), 11, stride=2, padding="causal", groups=2, dilation=2
    )
    assert ss[4] == convjax.conv_structure((3, 6, 3), 5, padding="full", flip=True)

    def aligned(p, s):
        if isinstance(s, tuple):
            return isinstance(p, tuple) and len(p) == len(s) and all(map(aligned, p, s))
        return isinstance(p, dict) if s is not None else True

    assert aligned(params, ss)


@pytest.mark.parametrize("to", ["local", "dense"])
def test_a_moved_model_computes_what_the_model_did(to):
    model, params, x = _model_params()
    ss = nn.structures(model, SHAPE)
    twin, moved = nn.twin(model, to), nn.move(params, ss, to)
    np.testing.assert_allclose(
        jax.jit(twin.apply)(moved, x), jax.jit(model.apply)(params, x), rtol=1e-12, atol=1e-12
    )
    # every linear layer with a structure is of kind `to`; the rest is untouched
    for j in (0, 4):
        assert nn.kind_of(moved[j], ss[j]) == to
    assert nn.kind_of(moved[2][0], ss[2][0]) == to
    assert moved[7] is params[7] and moved[1] is params[1] and moved[2][1] is params[2][1]
    # the named embedding takes the model too
    named = nn.conv_to_local if to == "local" else nn.conv_to_dense
    for a, b in zip(jax.tree.leaves(named(params, ss)), jax.tree.leaves(moved), strict=True):
        np.testing.assert_array_equal(a, b)


def test_moving_a_model_down_recovers_the_conv_params():
    """conv -> local -> dense -> local -> conv and dense -> conv give back the params
    (every tap of these structures reads real input and no dense entry holds a sum)."""
    model, params, x = _model_params()
    ss = nn.structures(model, SHAPE)
    local = nn.move(params, ss, "local")
    dense = nn.move(local, ss, "dense")
    for back in (
        nn.move(nn.move(dense, ss, "local"), ss, "conv"),
        nn.move(dense, ss, "conv"),
        nn.dense_to_conv(dense, ss),
        nn.local_to_conv(local, ss),
    ):
        for a, b in zip(jax.tree.leaves(back), jax.tree.leaves(params), strict=True):
            np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(
        nn.twin(nn.twin(model, "dense"), "conv").apply(nn.move(dense, ss, "conv"), x),
        model.apply(params, x),
        rtol=1e-12,
        atol=1e-12,
    )


def test_model_adjoint_maps_the_dense_gradient_to_the_conv_gradient():
    model, params, x = _model_params()
    ss = nn.structures(model, SHAPE)
    dense = nn.twin(model, "dense")

    def loss(m):
        return lambda p: jnp.sum(m.apply(p, x) ** 2)

    g_conv = jax.grad(loss(model))(params)
    g_dense = jax.grad(loss(dense))(nn.move(params, ss, "dense"))
    got = nn.move(g_dense, ss, "conv", method="adjoint")
    for a, b in zip(jax.tree.leaves(got), jax.tree.leaves(g_conv), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-12)


def test_twin_of_a_model_keeps_the_other_layers():
    model = _model()
    twin = nn.twin(model, "dense")
    inner = nn.layers.Serial
    subs = twin.spec.layers
    orig = model.spec.layers
    assert subs[1] is orig[1] and subs[3] is orig[3] and subs[7] is orig[7]
    assert nn.linear_spec(subs[0]).kind == "dense"
    assert isinstance(subs[2].spec, inner)
    assert nn.linear_spec(subs[2].spec.layers[0]).kind == "dense"
    # twin back: the conv model again (equal specs)
    back = nn.twin(twin, "conv").spec.layers
    assert nn.linear_spec(back[0]) == nn.linear_spec(orig[0])
    assert nn.linear_spec(back[4]) == nn.linear_spec(orig[4])
    assert nn.linear_spec(back[2].spec.layers[0]) == nn.linear_spec(orig[2].spec.layers[0])


def test_whole_model_errors():
    model, params, _ = _model_params()
    ss = nn.structures(model, SHAPE)
    with pytest.raises(
        ValueError,
        match=r"move: `s` has 8 entries but params is tuple of "
        r"length 7",
    ):
        nn.move(params[:7], ss, "dense")
    with pytest.raises(
        ValueError,
        match=r"conv_to_dense: `s` has 2 entries but params\[2\] "
        r"is dict",
    ):
        nn.conv_to_dense(params[:2] + (params[0],) + params[3:], ss)
    with pytest.raises(
        TypeError,
        match=r"move: `s` must be a ConvStructure, None, or a "
        r"tuple/list of them .*got a Layer; pass its structure",
    ):
        nn.move(params, model, "dense")
    with pytest.raises(
        ValueError,
        match=r"move: `to` must be one of 'conv', 'local', 'dense', "
        r"got 'none' \(an old name, now 'dense'",
    ):
        nn.move(params, ss, "none")
    with pytest.raises(
        TypeError,
        match=r"structure: `layer` is a serial model of 8 layers; "
        r"use `nn.structures",
    ):
        nn.structure(model, SHAPE)
    with pytest.raises(
        TypeError,
        match=r"serial.init: `input_shape` must be a tuple of ints "
        r"\(layout \(\.\.\.\)\), got ArrayImpl of shape "
        r"\(5, 11, 2\) and dtype float64; pass `x.shape`",
    ):
        model.init(jax.random.key(0), jnp.zeros((5, *SHAPE)))
    with pytest.raises(
        ValueError,
        match=r"conv_to_local: `params` must be conv params .*got "
        r"local params",
    ):
        nn.conv_to_local(nn.move(params, ss, "local"), ss)
