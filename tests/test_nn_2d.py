"""Image layers (issue 11, item 4): Conv2D, LocallyConnected2D and the 2-D dense twin
as one mechanism, exact moves between them, tied training, 2-D pooling, structural
fan-in, and weight import from torch / flax / equinox checked against their outputs.

Tolerances: float64 everywhere, 1e-12 (relative and absolute) for exact identities;
1e-10 for comparisons with the other libraries' float64 outputs.
"""

import equinox as eqx
import flax.linen as fnn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
import torch

import convjax
from convjax import nn

HI = jax.lax.Precision.HIGHEST
TOL = dict(rtol=1e-12, atol=1e-12)
X = np.random.default_rng(0).standard_normal((3, 7, 6, 2))


def _layers(**opts):
    conv = nn.Conv2D(4, (3, 2), precision=HI, **opts)
    return conv, nn.twin(conv, "local"), nn.twin(conv, "dense")


@pytest.mark.parametrize(
    "opts",
    [
        dict(),
        dict(stride=(2, 1), padding="same", groups=2),
        dict(padding=[(1, 0), "full"], dilation=(1, 2), padding_mode="circular", flip=True),
    ],
)
def test_three_kinds_compute_the_same_function_after_exact_moves(opts):
    conv, local, dense = _layers(**opts)
    out, p = conv.init(jax.random.key(0), X.shape)
    s = nn.structure(conv, X.shape)
    y = conv.apply(p, X)
    assert y.shape == out
    want = np.asarray(convjax.conv2d(X, p["w"], precision=HI, **opts)) + np.asarray(p["b"])
    np.testing.assert_allclose(y, want, **TOL)
    pl, pd = nn.conv_to_local(p, s), nn.conv_to_dense(p, s)
    assert pl["w"].shape == (*s.out_shape, 3, 2, *p["w"].shape[-2:])
    assert pl["b"].shape == pd["b"].shape == (*s.out_shape, 4)
    assert pd["w"].shape == s.dense_shape
    np.testing.assert_allclose(local.apply(pl, X), y, **TOL)
    np.testing.assert_allclose(dense.apply(pd, X), y, **TOL)
    np.testing.assert_allclose(dense.apply(nn.local_to_dense(pl, s), X), y, **TOL)
    for back in (nn.local_to_conv(pl, s), nn.dense_to_conv(pd, s)):
        live = s.copies().reshape(s.kernel_shape) > 0
        np.testing.assert_allclose(back["w"][live], p["w"][live], **TOL)
        np.testing.assert_allclose(back["b"], p["b"], **TOL)


def test_whole_image_model_moves_and_twins():
    model = nn.serial(
        nn.Conv2D(3, 3, padding="same", precision=HI),
        nn.Relu,
        nn.MaxPool2D(2),
        nn.Conv2D(2, 2, precision=HI),
        nn.Flatten(2),
        nn.Dense(1, precision=HI),
    )
    shape = (2, 6, 6, 1)
    _, params = model.init(jax.random.key(1), shape)
    x = np.random.default_rng(1).standard_normal(shape)
    ss = nn.structures(model, shape)
    want = jax.jit(model.apply)(params, x)
    for kind in ("local", "dense"):
        moved = nn.move(params, ss, kind)
        np.testing.assert_allclose(jax.jit(nn.twin(model, kind).apply)(moved, x), want, **TOL)
        assert moved[5] is params[5]  # the plain Dense head passes through


def test_tied_gradient_reproduces_conv_sgd_in_2d():
    conv = nn.Conv2D(2, 3, padding="same", precision=HI)
    dense = nn.twin(conv, "dense")
    shape = (4, 5, 5, 1)
    x = np.random.default_rng(2).standard_normal(shape)
    t = np.random.default_rng(3).standard_normal((4, 5, 5, 2))
    _, p = conv.init(jax.random.key(2), shape)
    s = nn.structure(conv, shape)

    def train(layer, params, opt, steps=3):
        loss = lambda q: jnp.mean((layer.apply(q, x) - t) ** 2)  # noqa: E731

        @jax.jit
        def run(params):
            state = opt.init(params)
            for _ in range(steps):
                g = jax.grad(loss)(params)
                u, state = opt.update(g, state, params)
                params = optax.apply_updates(params, u)
            return params

        return run(params)

    conv_after = train(conv, p, optax.sgd(0.1))
    opt = optax.chain(nn.tied_gradient(s), optax.sgd(0.1))
    dense_after = train(dense, nn.conv_to_dense(p, s), opt)
    np.testing.assert_allclose(dense_after["w"], nn.conv_to_dense(conv_after, s)["w"], **TOL)
    proj = optax.chain(nn.projected_gradient(s), optax.sgd(0.1))
    after = train(dense, nn.conv_to_dense(p, s), proj)
    assert float(nn.off_structure_share(after, s)) < 1e-24


def test_initializers_see_the_structural_fans_in_2d():
    seen = []

    def spy(key, shape, dtype):
        seen.append(tuple(shape))
        return jax.nn.initializers.lecun_normal()(key, shape, dtype)

    shape = (6, 5, 4)
    for layer in (
        nn.Conv2D(6, (3, 2), groups=2, w_init=spy),
        nn.LocallyConnected2D(6, (3, 2), groups=2, w_init=spy),
        nn.Dense(6, kernel_size=(3, 2), w_init=spy),
    ):
        jax.jit(layer.init, static_argnums=1)(jax.random.key(0), shape)
    # conv: one (KH, KW, Cin/g, Cout/g) view per group (fan_in = 3*2*2); local: the
    # same view once per position and group, under vmap; dense: (in, out)
    assert seen == [(3, 2, 2, 3), (3, 2, 2, 3), (6 * 5 * 4, 4 * 4 * 6)]
    _, p = jax.jit(nn.Conv2D(32, 3).init, static_argnums=1)(jax.random.key(1), (8, 8, 16))
    # lecun_normal: variance 1/fan_in with fan_in = 3*3*16; 4608 draws, so the sample
    # variance is within 10% (about 5 standard deviations of the estimate)
    assert abs(float(jnp.var(p["w"])) * 3 * 3 * 16 - 1.0) < 0.1


def test_pooling_2d_against_numpy():
    x = np.random.default_rng(4).standard_normal((2, 6, 4, 3))
    blocks = x.reshape(2, 3, 2, 2, 2, 3)
    np.testing.assert_allclose(nn.AvgPool2D(2).apply((), x), blocks.mean((2, 4)), **TOL)
    np.testing.assert_allclose(nn.MaxPool2D((2, 2)).apply((), x), blocks.max((2, 4)), **TOL)
    np.testing.assert_allclose(nn.GlobalAvgPool2D().apply((), x), x.mean((1, 2)), **TOL)
    np.testing.assert_allclose(nn.GlobalMaxPool2D().apply((), x), x.max((1, 2)), **TOL)
    # "same" padding: the average is over the real entries of each window
    y = nn.AvgPool2D(3, stride=1, padding="same").apply((), x)
    xp = np.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)))
    ones = np.pad(np.ones((6, 4)), 1)
    want = np.zeros_like(x)
    for i, j in np.ndindex(6, 4):
        want[:, i, j] = xp[:, i : i + 3, j : j + 3].sum((1, 2)) / ones[i : i + 3, j : j + 3].sum()
    np.testing.assert_allclose(y, want, **TOL)
    assert nn.MaxPool2D(2, stride=(1, 2)).init(None, (9, 6, 4, 3))[0] == (9, 5, 2, 3)


def test_a_jitted_init_keeps_the_structure():
    conv = nn.Conv2D(4, 3)
    fast = conv._replace(init=jax.jit(conv.init, static_argnums=1))
    assert nn.structure(fast, (8, 8, 2)) == nn.structure(conv, (8, 8, 2))
    assert nn.linear_spec(fast).kind == "conv"


def test_layer_errors_name_the_argument():
    with pytest.raises(ValueError, match=r"Conv2D: `kernel_size` must be an int or a sequence"):
        nn.Conv2D(4, (3, 3, 3))
    with pytest.raises(ValueError, match=r"Conv2D: `stride\[1\]` must be an integer >= 1"):
        nn.Conv2D(4, 3, stride=(1, 0))
    with pytest.raises(ValueError, match=r"Conv2D.init: `input_shape` must end with 3 positive"):
        nn.Conv2D(4, 3).init(jax.random.key(0), (8, 2))
    local = nn.LocallyConnected2D(4, 3)
    _, p = local.init(jax.random.key(0), (8, 8, 2))
    with pytest.raises(ValueError, match=r"fix its input shape; this `x` has spatial shape"):
        local.apply(p, np.ones((9, 8, 2)))


# ---- import from torch, flax, equinox ------------------------------------------


@pytest.mark.parametrize(
    "kw",
    [
        dict(padding=1),
        dict(padding="same", dilation=(2, 1), padding_mode="reflect"),
        dict(stride=(2, 1), padding=(2, 0), groups=2, padding_mode="circular"),
        dict(padding=1, padding_mode="replicate", bias=False),
    ],
)
def test_conv2d_from_torch_matches_torch(kw):
    torch.manual_seed(0)
    module = torch.nn.Conv2d(4, 6, (3, 2), **kw).double()
    x = np.random.default_rng(5).standard_normal((2, 4, 7, 6))
    want = module(torch.from_numpy(x)).detach().numpy()
    layer, p = nn.conv2d_from_torch(module)
    got = layer.apply(p, np.moveaxis(x, 1, -1))
    np.testing.assert_allclose(np.moveaxis(np.asarray(got), -1, 1), want, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize(
    "kw",
    [
        dict(padding="SAME", strides=(2, 1)),
        dict(padding="CIRCULAR", kernel_dilation=(1, 2)),
        dict(padding=((1, 0), (2, 1)), feature_group_count=2),
        dict(padding="VALID", use_bias=False),
    ],
)
def test_conv2d_from_flax_matches_flax(kw):
    module = fnn.Conv(6, (3, 2), param_dtype=jnp.float64, dtype=jnp.float64, precision=HI, **kw)
    x = np.random.default_rng(6).standard_normal((2, 7, 6, 4))
    variables = module.init(jax.random.key(0), x)
    want = module.apply(variables, x)
    layer, p = nn.conv2d_from_flax(module, variables["params"])
    np.testing.assert_allclose(layer.apply(p, x), want, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize(
    "kw",
    [
        dict(padding=1),
        dict(padding="SAME", stride=(1, 2)),
        dict(padding=((2, 0), (1, 1)), dilation=(2, 1), padding_mode="REFLECT", groups=2),
    ],
)
def test_conv2d_from_equinox_matches_equinox(kw):
    conv = eqx.nn.Conv2d(4, 6, (3, 2), key=jax.random.key(0), dtype=jnp.float64, **kw)
    x = np.random.default_rng(7).standard_normal((4, 7, 6))
    want = conv(x)
    layer, p = nn.conv2d_from_equinox(conv)
    got = layer.apply(p, np.moveaxis(x, 0, -1))
    np.testing.assert_allclose(np.moveaxis(np.asarray(got), -1, 0), want, rtol=1e-10, atol=1e-10)


def test_2d_importers_refuse_1d_modules():
    with pytest.raises(
        TypeError,
        match=r"conv2d_from_torch: `module` must be a torch.nn.Conv2d \(two spatial axes\), "
        r"got Conv1d",
    ):
        nn.conv2d_from_torch(torch.nn.Conv1d(2, 3, 3))
    with pytest.raises(ValueError, match=r"conv2d_from_flax: `module` must be a 2-D"):
        module = fnn.Conv(3, (3,))
        nn.conv2d_from_flax(module, module.init(jax.random.key(0), jnp.ones((1, 5, 2)))["params"])


def test_torch_weight_layout_round_trip_in_2d():
    w = np.random.default_rng(8).standard_normal((3, 2, 4, 5))  # (KH, KW, Cin/g, Cout)
    t = nn.interop.conv_weight_to_torch(w, ndim=2)
    assert t.shape == (5, 4, 3, 2)
    np.testing.assert_array_equal(nn.interop.torch_to_conv_weight(t, ndim=2), w)
