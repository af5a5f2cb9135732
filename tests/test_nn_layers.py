"""convjax.nn layers: shapes, the locally connected op against a numpy loop,
init scale, jit / vmap / grad, pooling, serial training, and the error messages."""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from jax.test_util import check_grads
from test_nn_strategies import layer_configs, local_reference, out_length

import convjax
from convjax import nn
from convjax.nn import initializers as inits

HI = jax.lax.Precision.HIGHEST
KEY = jax.random.key(0)


def _linear_layers(c, *, use_bias=True, w_init=None):
    K, cout, o = c["K"], c["Cout"], c["opts"]
    kw = {"use_bias": use_bias, "precision": HI, "w_init": w_init, "b_init": w_init}
    return {
        "conv": nn.Conv1D(cout, K, **kw, **o),
        "local": nn.LocallyConnected1D(cout, K, **kw, **o),
        "dense": nn.Dense(cout, kernel_size=K, **kw, **o),
    }


# ---- the locally connected op ------------------------------------------------------
@settings(max_examples=20, deadline=None)
@given(c=layer_configs(), seed=st.integers(0, 2**16))
def test_locally_connected1d_matches_numpy_loop(c, seed):
    rng = np.random.default_rng(seed)
    lout = out_length(c["L"], c["K"], **c["opts"])
    x = rng.normal(size=(*c["batch"], c["L"], c["Cin"]))
    f = rng.normal(size=(lout, c["K"], c["Cin"] // c["opts"]["groups"], c["Cout"]))
    # jitted: one compilation per drawn shape instead of one per primitive
    op = jax.jit(functools.partial(convjax.locally_connected1d, precision=HI, **c["opts"]))
    got = op(x, f)
    np.testing.assert_allclose(got, local_reference(x, f, **c["opts"]), rtol=1e-12, atol=1e-12)


def test_locally_connected1d_float32_tolerance():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(3, 12, 4)).astype(np.float32)
    f = rng.normal(size=(6, 3, 2, 6)).astype(np.float32)
    opts = {"stride": 2, "padding": "same", "groups": 2, "padding_mode": "reflect"}
    got = convjax.locally_connected1d(x, f, precision=HI, **opts)
    assert got.dtype == jnp.float32
    # float32: 6 products per output, |terms| ~ 1; 1e-5 relative is ~100 ulps.
    np.testing.assert_allclose(got, local_reference(x, f, **opts), rtol=1e-5, atol=1e-5)


def test_locally_connected1d_errors():
    x = jnp.zeros((8, 4))
    with pytest.raises(ValueError, match=r"locally_connected1d: `filters` has 5 positions"):
        convjax.locally_connected1d(x, jnp.zeros((5, 3, 4, 2)))
    with pytest.raises(ValueError, match=r"locally_connected1d: channel mismatch.*Cin=4"):
        convjax.locally_connected1d(x, jnp.zeros((6, 3, 3, 2)))
    with pytest.raises(ValueError, match=r"`filters` must have rank 4"):
        convjax.locally_connected1d(x, jnp.zeros((3, 4, 2)))
    with pytest.raises(TypeError, match=r"locally_connected1d: `x` has complex dtype"):
        convjax.locally_connected1d(jnp.zeros((8, 4), complex), jnp.zeros((6, 3, 4, 2)))
    with pytest.raises(ValueError, match=r"locally_connected1d: `stride` must be"):
        convjax.locally_connected1d(x, jnp.zeros((6, 3, 4, 2)), stride=0)


# ---- shapes: init == apply -----------------------------------------------------------
@settings(max_examples=15, deadline=None)
@given(c=layer_configs(batch_shapes=((), (3,), (2, 1))), use_bias=st.booleans())
def test_linear_layers_init_shape_equals_apply_shape(c, use_bias):
    x = np.ones((*c["batch"], c["L"], c["Cin"]))
    lout = out_length(c["L"], c["K"], **c["opts"])
    g = c["opts"]["groups"]
    want_w = {
        "conv": (c["K"], c["Cin"] // g, c["Cout"]),
        "local": (lout, c["K"], c["Cin"] // g, c["Cout"]),
        "dense": (lout * c["Cout"], c["L"] * c["Cin"]),
    }
    want_b = {"conv": (c["Cout"],), "local": (lout, c["Cout"]), "dense": (lout, c["Cout"])}
    # a constant init: this test is about shapes (random inits compile per shape)
    for kind, layer in _linear_layers(
        c, use_bias=use_bias, w_init=jax.nn.initializers.constant(0.5)
    ).items():
        shape, p = layer.init(KEY, x.shape)
        assert shape == (*c["batch"], lout, c["Cout"])
        assert jax.eval_shape(layer.apply, p, x).shape == shape
        assert p["w"].shape == want_w[kind]
        assert ("b" in p) == use_bias
        if use_bias:
            assert p["b"].shape == want_b[kind]
        # one example, no batch axes
        assert jax.eval_shape(layer.apply, p, x.reshape(-1, *x.shape[-2:])[0]).shape == (
            lout,
            c["Cout"],
        )


def test_batch_axes_may_be_unknown_in_input_shape():
    shape, _ = nn.Conv1D(4, 3).init(KEY, (-1, 10, 2))
    assert shape == (-1, 8, 4)


@pytest.mark.parametrize(
    "layer, in_shape, out_shape",
    [
        (nn.Flatten(), (2, 5, 3), (2, 15)),
        (nn.Relu, (2, 5, 3), (2, 5, 3)),
        (nn.Activation("gelu"), (5, 3), (5, 3)),
        (nn.AvgPool1D(2), (2, 7, 3), (2, 3, 3)),
        (nn.MaxPool1D(3, stride=2, padding="same"), (7, 3), (4, 3)),
        (nn.AvgPool1D(3, stride=1, padding="same"), (7, 3), (7, 3)),
        (nn.GlobalAvgPool(), (2, 7, 3), (2, 3)),
        (nn.GlobalMaxPool(), (7, 3), (3,)),
        (nn.Dense(6), (2, 7), (2, 6)),
        (nn.Dense(6, out_length=4), (2, 7, 3), (2, 4, 6)),
        (
            nn.serial(nn.Conv1D(4, 3), nn.Tanh, nn.MaxPool1D(2), nn.Flatten(), nn.Dense(2)),
            (5, 10, 1),
            (5, 2),
        ),
        (nn.serial(), (5, 3), (5, 3)),
    ],
)
def test_every_layer_init_shape_equals_apply_shape(layer, in_shape, out_shape):
    shape, p = layer.init(KEY, in_shape)
    assert shape == out_shape
    y = layer.apply(p, jax.random.normal(KEY, in_shape))
    assert y.shape == out_shape
    assert jax.jit(layer.apply)(p, jax.random.normal(KEY, in_shape)).shape == out_shape


def test_activations_match_their_functions():
    x = jnp.linspace(-3.0, 3.0, 13).reshape(13, 1)
    refs = {
        "relu": np.maximum(np.asarray(x), 0.0),
        "tanh": np.tanh(np.asarray(x)),
        "identity": np.asarray(x),
        "erf": np.vectorize(__import__("math").erf)(np.asarray(x)),
        "gelu": np.asarray(x)
        * 0.5
        * (1 + np.vectorize(__import__("math").erf)(np.asarray(x) / np.sqrt(2.0))),
    }
    for name, ref in refs.items():
        np.testing.assert_allclose(nn.Activation(name).apply((), x), ref, rtol=1e-12, atol=1e-12)


def test_pooling_matches_numpy():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(2, 7, 3))
    # valid, window 3, stride 2: windows [0:3], [2:5], [4:7]
    win = np.stack([x[:, s : s + 3] for s in (0, 2, 4)], axis=1)
    np.testing.assert_allclose(nn.AvgPool1D(3, stride=2).apply((), x), win.mean(2), rtol=1e-12)
    np.testing.assert_allclose(nn.MaxPool1D(3, stride=2).apply((), x), win.max(2), rtol=1e-12)
    # same, window 3, stride 1: pads one on each side; the average counts real entries only
    got = nn.AvgPool1D(3, stride=1, padding="same").apply((), x)
    ref = np.stack([x[:, max(o - 1, 0) : o + 2].mean(1) for o in range(7)], axis=1)
    np.testing.assert_allclose(got, ref, rtol=1e-12)
    got = nn.MaxPool1D(3, stride=1, padding="same").apply((), x)
    ref = np.stack([x[:, max(o - 1, 0) : o + 2].max(1) for o in range(7)], axis=1)
    np.testing.assert_allclose(got, ref, rtol=1e-12)
    np.testing.assert_allclose(nn.GlobalAvgPool().apply((), x), x.mean(1), rtol=1e-12)
    np.testing.assert_allclose(nn.GlobalMaxPool().apply((), x), x.max(1), rtol=1e-12)


def test_flatten_is_the_dense_matrix_flattening():
    x = jnp.arange(12.0).reshape(2, 3, 2)
    np.testing.assert_array_equal(nn.Flatten().apply((), x), x.reshape(2, 6))


def test_dense_weight_is_the_conv_matrix_layout():
    conv = nn.Conv1D(3, 3, padding="same", stride=2)
    _, p = conv.init(KEY, (9, 2))
    dense = nn.twin(conv, "dense")
    s = nn.structure(conv, (9, 2))
    pd = {
        "w": convjax.conv_matrix(p["w"], 9, padding="same", stride=2),
        "b": jnp.broadcast_to(p["b"], (s.out_length, 3)),
    }
    x = jax.random.normal(KEY, (4, 9, 2))
    np.testing.assert_allclose(dense.apply(pd, x), conv.apply(p, x), rtol=1e-12, atol=1e-12)


# ---- init: jax initializers, handed the structural fans ----------------------------------
def _fan_spy(which):
    """An initializer that fills its output with the fan it reads from the shape (jax's
    default axes: fan_in = prod / shape[-1], fan_out = prod / shape[-2])."""

    def init(key, shape, dtype=jnp.float64):
        del key
        n = int(np.prod(shape))
        return jnp.full(shape, n / shape[-1] if which == "in" else n / shape[-2], dtype)

    return init


STRUCT = {"L": 32, "Cin": 8, "Cout": 16, "K": 5}


def _structural_fans(kind, groups, lout):
    """The structural fans, written out independently of convjax: fan_in is the number
    of weights one output unit sums over, fan_out the number of output units (per
    position) one input unit feeds, stride not counted."""
    L, cin, cout, K = STRUCT["L"], STRUCT["Cin"], STRUCT["Cout"], STRUCT["K"]
    if kind == "dense":
        return L * cin, lout * cout
    return K * cin / groups, K * cout / groups


def _three_kinds(w_init, **opts):
    cout, K = STRUCT["Cout"], STRUCT["K"]
    return {
        "conv": nn.Conv1D(cout, K, w_init=w_init, **opts),
        "local": nn.LocallyConnected1D(cout, K, w_init=w_init, **opts),
        "dense": nn.Dense(cout, kernel_size=K, w_init=w_init, **opts),
    }


@pytest.mark.parametrize("groups, stride", [(1, 1), (2, 1), (4, 2)])
@pytest.mark.parametrize("which", ["in", "out"])
def test_initializer_sees_the_structural_fans_exactly(groups, stride, which):
    """Every entry of the weight comes from a draw whose shape gives the structural fan
    under jax's default axes (a spy initializer writes the fan it reads)."""
    shape = (STRUCT["L"], STRUCT["Cin"])
    for kind, layer in _three_kinds(
        _fan_spy(which), padding="same", groups=groups, stride=stride
    ).items():
        out_shape, p = layer.init(KEY, shape)
        fan_in, fan_out = _structural_fans(kind, groups, out_shape[0])
        want = fan_in if which == "in" else fan_out
        np.testing.assert_array_equal(p["w"], np.full(p["w"].shape, want), err_msg=kind)


def test_plain_dense_initializer_sees_in_and_out():
    _, p = nn.Dense(6, w_init=_fan_spy("in")).init(KEY, (3, 10))
    np.testing.assert_array_equal(p["w"], np.full((6, 10), 10.0))
    _, p = nn.Dense(6, w_init=_fan_spy("out")).init(KEY, (3, 10))
    np.testing.assert_array_equal(p["w"], np.full((6, 10), 6.0))


@pytest.mark.parametrize(
    "init, var",
    [
        (None, lambda fi, fo: 1 / fi),  # the default: lecun_normal
        (jax.nn.initializers.lecun_normal(), lambda fi, fo: 1 / fi),
        (jax.nn.initializers.he_normal(), lambda fi, fo: 2 / fi),
        (jax.nn.initializers.he_uniform(), lambda fi, fo: 2 / fi),
        (jax.nn.initializers.glorot_normal(), lambda fi, fo: 2 / (fi + fo)),
        (jax.nn.initializers.variance_scaling(1.0, "fan_out", "normal"), lambda fi, fo: 1 / fo),
    ],
    ids=["default", "lecun_normal", "he_normal", "he_uniform", "glorot_normal", "fan_out"],
)
def test_measured_init_std_is_the_structural_one(init, var):
    """Measured over 64 keys: the std of w is sqrt(var(structural fans)) within 3% for
    the conv (grouped, strided), its locally connected twin and its dense twin."""
    groups, stride = 2, 2
    keys = jax.random.split(jax.random.key(3), 64)
    shape = (STRUCT["L"], STRUCT["Cin"])
    for kind, layer in _three_kinds(init, padding="same", groups=groups, stride=stride).items():
        out_shape, _ = layer.init(KEY, shape)
        w = jax.jit(jax.vmap(lambda k, layer=layer: layer.init(k, shape)[1]["w"]))(keys)
        target = np.sqrt(var(*_structural_fans(kind, groups, out_shape[0])))
        # >= 20480 samples: the relative standard error of the std is < 0.5%
        assert abs(float(jnp.std(w)) / target - 1) < 0.03, (kind, float(jnp.std(w)), target)


def test_flax_initializers_are_accepted():
    flax_inits = pytest.importorskip("flax.linen.initializers")
    layer = nn.LocallyConnected1D(
        8, 3, w_init=flax_inits.he_normal(), b_init=flax_inits.zeros_init()
    )
    _, p = layer.init(KEY, (16, 4))
    assert p["w"].shape == (14, 3, 4, 8) and float(jnp.max(jnp.abs(p["b"]))) == 0.0


def test_init_draws_are_independent_per_group_and_position():
    """Groups of a conv and positions of a local layer are separate draws, not copies."""
    _, p = nn.Conv1D(4, 3, groups=2).init(KEY, (8, 4))
    assert not np.allclose(p["w"][..., :2], p["w"][..., 2:])
    _, p = nn.LocallyConnected1D(4, 3).init(KEY, (8, 2))
    assert not np.allclose(p["w"][0], p["w"][1])
    # one group: exactly the initializer's draw on the weight's own shape (as flax)
    init = jax.nn.initializers.lecun_normal()
    kw, _ = jax.random.split(KEY)
    _, p = nn.Conv1D(4, 3, w_init=init).init(KEY, (8, 2))
    np.testing.assert_array_equal(p["w"], init(kw, (3, 2, 4), p["w"].dtype))


def test_bias_init_is_drawn_per_position_like_the_conv_bias():
    b_init = jax.nn.initializers.normal(1.0)
    _, p = nn.LocallyConnected1D(4, 3, b_init=b_init).init(KEY, (8, 2))
    assert p["b"].shape == (6, 4) and not np.allclose(p["b"][0], p["b"][1])
    _, p = nn.Dense(4, kernel_size=3, b_init=jax.nn.initializers.constant(0.25)).init(KEY, (8, 2))
    np.testing.assert_array_equal(p["b"], np.full((6, 4), 0.25))


def test_family_starts_at_the_same_activation_scale():
    """Unit-variance input: every output unit has variance ~1 under lecun init for
    the conv, its local twin and its dense twin (interior positions)."""
    L, cin, cout, K = 64, 4, 32, 3
    conv = nn.Conv1D(cout, K, padding="same", use_bias=False)
    x = jax.random.normal(jax.random.key(7), (64, L, cin))
    stds = {}
    for kind in ("conv", "local", "dense"):
        layer = nn.twin(conv, kind)
        _, p = layer.init(jax.random.key(11), (L, cin))
        stds[kind] = float(jnp.std(layer.apply(p, x)[:, 1:-1]))
    for kind, s in stds.items():
        assert abs(s - 1.0) < 0.10, (kind, stds)


def test_initializer_errors():
    def old_style(key, shape, dtype, *, fan_in, fan_out):
        return jnp.zeros(shape, dtype)

    with pytest.raises(
        TypeError,
        match=r"Conv1D: `w_init` must be an initializer "
        r"`init\(key, shape, dtype\) -> array`.*requires the keyword "
        r"argument\(s\) fan_in, fan_out: the old convjax signature",
    ):
        nn.Conv1D(4, 3, w_init=old_style)
    with pytest.raises(TypeError, match=r"twin: `b_init` must be an initializer .*got 'he'"):
        nn.twin(nn.Conv1D(4, 3), "dense", b_init="he")
    with pytest.raises(
        ValueError,
        match=r"LocallyConnected1D.init: `b_init` failed on the "
        r"shape \(4,\) .*Can't compute input and output sizes",
    ):
        nn.LocallyConnected1D(4, 3, b_init=jax.nn.initializers.he_normal()).init(KEY, (8, 2))
    with pytest.raises(
        ValueError,
        match=r"Dense.init: `w_init` returned shape \(3,\) for the "
        r"requested shape \(2, 6\)",
    ):
        nn.Dense(6, w_init=lambda key, shape, dtype: jnp.zeros(3)).init(KEY, (2,))
    with pytest.raises(
        ValueError,
        match=r"weight_view: `kind` must be one of 'conv', 'local', "
        r"'dense', got 'none'",
    ):
        inits.weight_view("none", (3, 2, 4))
    with pytest.raises(
        ValueError,
        match=r"weight_view: Cout=5 \(the last axis of "
        r"`w_shape`=\(3, 2, 5\)\) must be divisible by `groups`=2",
    ):
        inits.weight_view("conv", (3, 2, 5), groups=2)


# ---- jit, vmap, grad ---------------------------------------------------------------------
def _all_layers():
    conv_opts = {"padding": "same", "stride": 2, "groups": 2, "padding_mode": "circular"}
    return [
        nn.Conv1D(4, 3, precision=HI, **conv_opts),
        nn.LocallyConnected1D(4, 3, precision=HI, **conv_opts),
        nn.Dense(4, kernel_size=3, precision=HI, **conv_opts),
        nn.Dense(4, out_length=3, precision=HI),
        nn.serial(
            nn.Conv1D(4, 3, precision=HI),
            nn.Gelu,
            nn.AvgPool1D(2),
            nn.LocallyConnected1D(2, 2, precision=HI),
            nn.Flatten(),
            nn.Dense(3, precision=HI),
        ),
        nn.serial(
            nn.MaxPool1D(3, stride=2, padding="same"),
            nn.Erf,
            nn.AvgPool1D(2, stride=1, padding="same"),
            nn.GlobalMaxPool(),
            nn.Dense(2, precision=HI),
        ),
    ]


@pytest.mark.parametrize(
    "layer", _all_layers(), ids=["conv", "local", "dense_twin", "dense", "serial", "pooling"]
)
def test_jit_vmap_grad(layer):
    x = jax.random.normal(jax.random.key(1), (5, 9, 2))
    _, p = layer.init(KEY, x.shape)
    eager = layer.apply(p, x)
    np.testing.assert_allclose(jax.jit(layer.apply)(p, x), eager, rtol=1e-12, atol=1e-12)
    # vmap over examples
    np.testing.assert_allclose(
        jax.vmap(layer.apply, in_axes=(None, 0))(p, x), eager, rtol=1e-12, atol=1e-12
    )
    # vmap over a stack of params (many seeds)
    keys = jax.random.split(jax.random.key(2), 3)
    init = jax.jit(lambda k: layer.init(k, x.shape)[1])
    stack = jax.vmap(init)(keys)
    many = jax.vmap(layer.apply, in_axes=(0, None))(stack, x)
    apply = jax.jit(layer.apply)
    for j in range(3):
        np.testing.assert_allclose(many[j], apply(init(keys[j]), x), rtol=1e-12, atol=1e-12)
    # grad against finite differences (float64); jitted, so it compiles once
    f = jax.jit(lambda p, x: jnp.sum(jnp.sin(layer.apply(p, x))))
    check_grads(f, (p, x), order=1, modes=("rev",), atol=1e-6, rtol=1e-6)


def test_no_recompilation_on_second_call():
    layer = nn.LocallyConnected1D(3, 3)
    _, p = layer.init(KEY, (8, 2))
    f = jax.jit(layer.apply)
    f(p, jnp.ones((8, 2)))
    before = f._cache_size()
    f(p, jnp.zeros((8, 2)))
    assert f._cache_size() == before


# ---- training ------------------------------------------------------------------------------
def test_serial_model_of_all_three_kinds_trains_with_sgd():
    L, cin = 16, 2
    model = nn.serial(
        nn.Conv1D(4, 3, padding="same"),
        nn.Relu,
        nn.LocallyConnected1D(4, 3, stride=2),
        nn.Relu,
        nn.Flatten(),
        nn.Dense(1),
    )
    kx, kt = jax.random.split(jax.random.key(5))
    x = jax.random.normal(kx, (64, L, cin))
    target = jnp.sum(x[:, 2:6, 0] * x[:, 3:7, 1], axis=1, keepdims=True)
    _, params = model.init(jax.random.key(6), x.shape)

    def loss(p):
        return jnp.mean((model.apply(p, x) - target) ** 2)

    opt = optax.sgd(0.05)
    state = opt.init(params)

    @jax.jit
    def step(p, s):
        val, g = jax.value_and_grad(loss)(p)
        u, s = opt.update(g, s, p)
        return optax.apply_updates(p, u), s, val

    first = float(loss(params))
    for _ in range(300):
        params, state, _ = step(params, state)
    last = float(loss(params))
    assert last < 0.5 * first, (first, last)


# ---- twins, specs ----------------------------------------------------------------------------
def test_twin_and_structure():
    conv = nn.Conv1D(6, 3, padding="causal", dilation=2)
    s = nn.structure(conv, (4, 10, 3))
    assert s == convjax.conv_structure((3, 3, 6), 10, padding="causal", dilation=2)
    assert nn.linear_spec(nn.twin(conv, "local")).kind == "local"
    assert nn.structure(nn.twin(conv, "dense"), (10, 3)) == s
    assert nn.linear_spec(conv).output_shape((10, 3)) == (10, 6)


# ---- errors ---------------------------------------------------------------------------------
def test_apply_errors_name_the_argument_and_value():
    conv, local, dense = (nn.Conv1D(4, 3), nn.LocallyConnected1D(4, 3), nn.Dense(4, kernel_size=3))
    _, pc = conv.init(KEY, (10, 2))
    _, pl = local.init(KEY, (10, 2))
    _, pd = dense.init(KEY, (10, 2))
    x = jnp.ones((10, 2))
    with pytest.raises(ValueError, match=r"Conv1D.apply: `x` has Cin=3 channels.*Cin=2"):
        conv.apply(pc, jnp.ones((10, 3)))
    with pytest.raises(ValueError, match=r"LocallyConnected1D.apply: `x` has Cin=3"):
        local.apply(pl, jnp.ones((10, 3)))
    with pytest.raises(
        ValueError,
        match=r"LocallyConnected1D.apply: `params\['w'\]` must "
        r"have shape \(9, 3, 2, 4\).*L=11.*got shape "
        r"\(8, 3, 2, 4\)",
    ):
        local.apply(pl, jnp.ones((11, 2)))
    with pytest.raises(
        ValueError,
        match=r"Dense.apply: `params\['w'\]` must have shape "
        r"\(28, 18\).*got shape \(32, 20\)",
    ):
        dense.apply(pd, jnp.ones((9, 2)))
    with pytest.raises(
        ValueError,
        match=r"Dense.apply: `params\['w'\]` must have shape "
        r"\(32, 20\).*got shape \(8, 3, 2, 4\)",
    ):
        dense.apply(pl, x)
    with pytest.raises(
        ValueError,
        match=r"Conv1D.apply: `params\['w'\]` must have shape "
        r"\(3, 2, 4\) \(layout \(K, Cin//groups, Cout\)\)",
    ):
        conv.apply(pd, x)
    with pytest.raises(
        ValueError,
        match=r"Conv1D.apply: `params` must have keys \['b', 'w'\], "
        r"got keys \['w'\]",
    ):
        conv.apply({"w": pc["w"]}, x)
    with pytest.raises(TypeError, match=r"Conv1D.apply: `params` must be a dict"):
        conv.apply((pc,), x)
    with pytest.raises(ValueError, match=r"Conv1D.apply: `x` must have rank >= 2"):
        conv.apply(pc, jnp.ones(10))
    with pytest.raises(TypeError, match=r"Conv1D.apply: `x` has complex dtype complex128"):
        conv.apply(pc, jnp.ones((10, 2), jnp.complex128))
    with pytest.raises(
        TypeError,
        match=r"Conv1D.apply: `x` must be an array .*got an object "
        r"of type list",
    ):
        conv.apply(pc, [[1.0, 2.0]] * 10)
    with pytest.raises(
        TypeError,
        match=r"Dense.apply: `params\['w'\]` must have a floating "
        r"dtype",
    ):
        dense.apply({"w": pd["w"].astype(jnp.int32), "b": pd["b"]}, x)
    with pytest.raises(ValueError, match=r"Conv1D.apply: the kernel is longer"):
        conv.apply(pc, jnp.ones((2, 2)))
    with pytest.raises(ValueError, match=r"Flatten.apply: this layer has no parameters"):
        nn.Flatten().apply(pc, x)
    with pytest.raises(ValueError, match=r"serial.apply: `params` must be a tuple of 2"):
        nn.serial(conv, nn.Relu).apply(pc, x)


def test_integer_and_bool_inputs_are_promoted_as_conv1d_promotes_them():
    xi = jnp.arange(20, dtype=jnp.int32).reshape(10, 2) % 3 - 1
    for layer in (
        nn.Conv1D(4, 3, dtype=jnp.float32),
        nn.LocallyConnected1D(4, 3),
        nn.Dense(4, kernel_size=3, dtype=jnp.float32),
    ):
        _, p = layer.init(KEY, (10, 2))
        y = layer.apply(p, xi)
        assert y.dtype == p["w"].dtype  # int32 with float32 (or float64) params
        np.testing.assert_array_equal(y, layer.apply(p, xi.astype(p["w"].dtype)))
    conv = nn.Conv1D(4, 3, dtype=jnp.float32)
    _, p = conv.init(KEY, (10, 2))
    np.testing.assert_array_equal(conv.apply(p, xi), convjax.conv1d(xi, p["w"]) + p["b"][None, :])
    default = jnp.result_type(float)
    for layer in (
        nn.Relu,
        nn.Tanh,
        nn.Flatten(),
        nn.AvgPool1D(2),
        nn.MaxPool1D(2),
        nn.GlobalMaxPool(),
    ):
        y = layer.apply((), xi)
        assert y.dtype == default
        np.testing.assert_array_equal(y, layer.apply((), xi.astype(default)))
    assert nn.Relu.apply((), jnp.array([True, False])).dtype == default


def test_factory_and_init_errors():
    with pytest.raises(ValueError, match=r"Activation: `name` must be one of .*got 'swish2'"):
        nn.Activation("swish2")
    with pytest.raises(
        ValueError,
        match=r"Conv1D: `out_channels` must be an integer >= 1, "
        r"got 0",
    ):
        nn.Conv1D(0, 3)
    with pytest.raises(TypeError, match=r"Conv1D: `kernel_size` must be an integer, got 2.5"):
        nn.Conv1D(4, 2.5)
    with pytest.raises(ValueError, match=r"LocallyConnected1D: `padding` must be one of"):
        nn.LocallyConnected1D(4, 3, padding="sane")
    with pytest.raises(ValueError, match=r"Conv1D: `padding_mode` must be one of .*'mirror'"):
        nn.Conv1D(4, 3, padding_mode="mirror")
    with pytest.raises(
        ValueError,
        match=r"Conv1D: `out_channels`=5 must be divisible by "
        r"`groups`=2",
    ):
        nn.Conv1D(5, 3, groups=2)
    with pytest.raises(
        ValueError,
        match=r"Conv1D.init: the input channels Cin=3 must be "
        r"divisible by `groups`=2",
    ):
        nn.Conv1D(4, 3, groups=2).init(KEY, (10, 3))
    with pytest.raises(
        ValueError,
        match=r"Dense: give either `out_length`.*out_length=3, "
        r"kernel_size=2",
    ):
        nn.Dense(4, out_length=3, kernel_size=2)
    with pytest.raises(TypeError, match=r"Conv1D.init: `input_shape` must be a tuple of ints"):
        nn.Conv1D(4, 3).init(KEY, jnp.ones((10, 2)))
    with pytest.raises(
        ValueError,
        match=r"Conv1D.init: `input_shape` must end with 2 "
        r"positive sizes .*got \(10,\)",
    ):
        nn.Conv1D(4, 3).init(KEY, (10,))
    with pytest.raises(
        TypeError,
        match=r"Conv1D: `w_init` must be an initializer "
        r"`init\(key, shape, dtype\) -> array`.*got 'he'",
    ):
        nn.Conv1D(4, 3, w_init="he")
    with pytest.raises(TypeError, match=r"serial: `layers\[1\]` must be a Layer"):
        nn.serial(nn.Conv1D(4, 3), nn.Flatten)
    with pytest.raises(TypeError, match=r"linear_spec: `layer` must be a layer made by"):
        nn.structure(nn.Relu, (10, 2))
    with pytest.raises(
        ValueError,
        match=r"Dense.structure: this dense layer has no conv "
        r"structure",
    ):
        nn.structure(nn.Dense(4, out_length=2), (10, 2))
    with pytest.raises(
        ValueError,
        match=r"twin: `kind` must be one of 'conv', 'local', "
        r"'dense', got 'sparse'",
    ):
        nn.twin(nn.Conv1D(4, 3), "sparse")
    with pytest.raises(ValueError, match=r"twin: `layer` is a dense layer without conv"):
        nn.twin(nn.Dense(4), "conv")


def test_errors_that_say_what_to_do():
    with pytest.raises(
        TypeError,
        match=r"Layer: this is already a layer \(a Layer\(init, "
        r"apply\)\), not a factory: use it without `\(\)`, e\.g\. "
        r"`nn\.serial\(nn\.Conv1D\(8, 3\), nn\.Relu\)`, not `nn\.Relu\(\)`",
    ):
        nn.Relu()
    model = nn.serial(nn.Conv1D(4, 3), nn.Relu)
    _, p = model.init(KEY, (10, 2))
    with pytest.raises(
        TypeError,
        match=r"Layer: a layer is not callable \(called with 2 "
        r"positional argument\(s\)\); run it with `layer.apply\(params, x\)`",
    ):
        model(p, jnp.ones((10, 2)))
    x = jnp.zeros((1000, 10, 2))
    for layer, fn in ((model, "serial"), (nn.Conv1D(4, 3), "Conv1D"), (nn.Flatten(), "Flatten")):
        with pytest.raises(
            TypeError,
            match=rf"{fn}.init: `input_shape` must be a tuple of "
            r"ints .*got ArrayImpl of shape \(1000, 10, 2\) and dtype float64; "
            r"pass `x.shape`, not the array `x`\.$",
        ):
            layer.init(KEY, x)
    with pytest.raises(
        ValueError,
        match=r"twin: `kind` must be one of 'conv', 'local', "
        r"'dense', got 'none' \(an old name, now 'dense'; see CHANGELOG.md\)",
    ):
        nn.twin(nn.Conv1D(4, 3), "none")
    with pytest.raises(
        ValueError,
        match=r"twin: `kind` must be one of 'conv', 'local', "
        r"'dense', got ndarray of shape \(100,\) and dtype float64\.$",
    ):
        nn.twin(nn.Conv1D(4, 3), np.zeros(100))
    for old, new in (("shared", "conv"), ("per_position", "local"), ("untied", "local")):
        with pytest.raises(ValueError, match=rf"got '{old}' \(an old name, now '{new}'"):
            nn.twin(nn.Conv1D(4, 3), old)
    with pytest.raises(
        TypeError,
        match=r"twin: `layer` must be a layer made by Conv1D, "
        r"LocallyConnected1D or Dense, or a serial model, got "
        r"Activation\('relu'\) layer",
    ):
        nn.twin(nn.Relu, "dense")
    with pytest.raises(
        TypeError,
        match=r"linear_spec: `layer` must be a layer made by .*got "
        r"the function Flatten \(a layer factory: call it, `Flatten\(\)`\)",
    ):
        nn.linear_spec(nn.Flatten)
    with pytest.raises(
        TypeError,
        match=r"Conv1D: `dtype` must be a real floating dtype "
        r"\(e.g. 'float32'\), got 'int32'",
    ):
        nn.Conv1D(4, 3, dtype="int32")
    with pytest.raises(
        TypeError,
        match=r"Dense: `dtype` must be a real floating dtype .*got "
        r"'floaty'",
    ):
        nn.Dense(4, dtype="floaty")
    with pytest.raises(TypeError, match=r"Elementwise: `fn` must be callable, got 3"):
        nn.Elementwise(3)
    with pytest.raises(TypeError, match=r"Conv1D: `use_bias` must be a bool, got 'yes'"):
        nn.Conv1D(4, 3, use_bias="yes")
    with pytest.raises(
        TypeError,
        match=r"structures: `input_shape` must be a tuple of ints "
        r".*got ArrayImpl of shape",
    ):
        nn.structures(model, x)
    with pytest.raises(
        ValueError,
        match=r"serial.apply: `params` must be a tuple of 2 entries "
        r"\(one per layer\), got dict \{'b': \(4,\), 'w': \(3, 2, 4\)\}",
    ):
        model.apply(p[0], jnp.ones((10, 2)))


def test_conv1d_algorithm_option_is_passed_through_and_checked():
    x = np.random.default_rng(0).standard_normal((2, 12, 3))
    ref_layer = nn.Conv1D(4, 3, padding="same")
    _, params = ref_layer.init(jax.random.key(0), x.shape)
    want = ref_layer.apply(params, x)
    for algorithm in ("xla", "direct", "fft", "matmul", "dense"):
        got = nn.Conv1D(4, 3, padding="same", algorithm=algorithm).apply(params, x)
        np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-10)
    with pytest.raises(ValueError, match=r"Conv1D: `algorithm` must be one of .* got 'bogus'"):
        nn.Conv1D(4, 3, algorithm="bogus")
