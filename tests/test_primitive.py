"""The loop-safe convolution primitive (issue 9, item 1): its derivatives equal XLA's
autodiff, every transformation works, and the route is pinned.

Tolerances (written out): float64 gradients match XLA's autodiff to ``1e-12`` times
the size of the terms (the same gradient of ``|x|``, ``|w|`` and ``|g|``); half
precision to ``1e-2`` (float16) and ``4e-2`` (bfloat16) of it.
"""

import functools
import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from jax.test_util import check_grads

from convjax import algorithms, conv, conv1d, primitive
from convjax.algorithms import CORE_ALGORITHMS, Spec

HIGHEST = jax.lax.Precision.HIGHEST


@st.composite
def configs(draw):
    groups = draw(st.sampled_from([1, 1, 2, 3]))
    cig, cog = draw(st.integers(1, 3)), draw(st.integers(1, 3))
    K = draw(st.integers(1, 6))
    dilation, stride = draw(st.integers(1, 3)), draw(st.integers(1, 3))
    padding = draw(
        st.sampled_from(["valid", "same", "same_lower", "full", "causal", 2, (0, 3), (7, 1)])
    )
    padding_mode = draw(st.sampled_from(["zeros", "circular", "reflect", "replicate"]))
    flip = draw(st.booleans())
    e = dilation * (K - 1) + 1
    L = draw(st.integers(max(e, 8), 24))
    batch = draw(st.sampled_from([(), (2,), (2, 3)]))
    options = dict(
        stride=stride,
        padding=padding,
        dilation=dilation,
        groups=groups,
        flip=flip,
        padding_mode=padding_mode,
    )
    if padding_mode == "reflect" and padding == (7, 1):
        options["padding_mode"] = "replicate"
    rng = np.random.default_rng(draw(st.integers(0, 2**31 - 1)))
    x = rng.standard_normal(batch + (L, cig * groups))
    w = rng.standard_normal((K, cig, cog * groups))
    return x, w, options


def _grads(x, w, g, options, algorithm):
    def f(x, w):
        return conv1d(x, w, algorithm=algorithm, precision=HIGHEST, **options)

    y, vjp = jax.vjp(f, x, w)
    return (y, *vjp(g))


@settings(max_examples=40, deadline=None)
@given(configs())
def test_gradients_equal_xla_autodiff_float64(config):
    x, w, options = config
    y = conv1d(x, w, algorithm="xla", **options)
    g = np.random.default_rng(1).standard_normal(y.shape)

    @functools.partial(jax.jit, static_argnums=3)
    def run(x, w, g, algorithm):
        return _grads(x, w, g, options, algorithm)

    got = run(x, w, g, "auto")
    want = run(x, w, g, "xla")
    scale = run(np.abs(x), np.abs(w), np.abs(g), "xla")
    for a, b, s in zip(got, want, scale, strict=True):
        assert a.dtype == b.dtype and a.shape == b.shape
        np.testing.assert_array_less(np.abs(a - b), 1e-12 * (s + 1.0))


@pytest.mark.parametrize(
    ("dtype", "tol"), [("float16", 1e-2), ("bfloat16", 4e-2), ("float32", 1e-5)]
)
def test_half_and_single_precision_keep_dtype_and_match(dtype, tol):
    rng = np.random.default_rng(2)
    options = dict(stride=2, dilation=2, groups=2, padding="same")
    x = jnp.asarray(rng.standard_normal((3, 20, 4)), dtype)
    w = jnp.asarray(rng.standard_normal((3, 2, 6)), dtype)
    y = conv1d(x, w, algorithm="xla", **options)
    g = jnp.asarray(rng.standard_normal(y.shape), dtype)
    got = _grads(x, w, g, options, "auto")
    want = _grads(*(a.astype(jnp.float64) for a in (x, w, g)), options, "xla")
    for a, b in zip(got, want, strict=True):
        assert a.dtype == jnp.dtype(dtype)
        b = np.asarray(b)
        np.testing.assert_array_less(
            np.abs(np.asarray(a, np.float64) - b), tol * (np.abs(b).max() + 1.0)
        )


def test_forward_mode_hessian_and_check_grads_order_two():
    rng = np.random.default_rng(3)
    x = rng.standard_normal((2, 13, 4))
    w = rng.standard_normal((3, 2, 6))
    options = dict(stride=2, dilation=2, groups=2, padding=(1, 2))
    f = jax.jit(functools.partial(conv1d, **options))
    check_grads(f, (x, w), order=2, modes=("fwd", "rev"), atol=1e-7, rtol=1e-7)

    def loss(w, algorithm):
        return jnp.sum(jnp.tanh(conv1d(x, w, algorithm=algorithm, **options)))

    hess = jax.jit(jax.hessian(loss), static_argnums=1)
    np.testing.assert_allclose(hess(w, "auto"), hess(w, "xla"), rtol=1e-12, atol=1e-12)
    jac_fwd = jax.jit(jax.jacfwd(loss), static_argnums=1)
    np.testing.assert_allclose(jac_fwd(w, "auto"), jac_fwd(w, "xla"), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("in_axes", [(0, None), (None, 0), (0, 0), (2, 1)])
def test_vmap_grad_of_vmap_and_vmap_of_grad(in_axes):
    rng = np.random.default_rng(4)
    options = dict(stride=2, groups=2, padding="same")
    xs = rng.standard_normal((5, 2, 11, 4))
    ws = rng.standard_normal((5, 3, 2, 6))
    x = np.moveaxis(xs, 0, in_axes[0]) if in_axes[0] is not None else xs[0]
    w = np.moveaxis(ws, 0, in_axes[1]) if in_axes[1] is not None else ws[0]

    def batched(alg):
        return jax.vmap(functools.partial(conv1d, algorithm=alg, **options), in_axes=in_axes)

    def loss(x, w, alg):
        return jnp.sum(jnp.sin(batched(alg)(x, w)))

    def per_run_grad(x, w, alg):
        return jax.grad(
            lambda a, b: jnp.sum(jnp.sin(conv1d(a, b, algorithm=alg, **options))), (0, 1)
        )(x, w)

    np.testing.assert_allclose(batched("auto")(x, w), batched("xla")(x, w), atol=1e-12)
    for a, b in zip(
        jax.grad(loss, (0, 1))(x, w, "auto"), jax.grad(loss, (0, 1))(x, w, "xla"), strict=True
    ):
        np.testing.assert_allclose(a, b, atol=1e-12)
    vg = jax.vmap(per_run_grad, in_axes=(*in_axes, None))
    for a, b in zip(vg(x, w, "auto"), vg(x, w, "xla"), strict=True):
        np.testing.assert_allclose(a, b, atol=1e-12)


def test_nested_vmap():
    rng = np.random.default_rng(5)
    x = rng.standard_normal((3, 4, 9, 2))
    w = rng.standard_normal((3, 4, 2, 2, 5))
    f = jax.vmap(jax.vmap(conv1d))
    np.testing.assert_allclose(
        f(x, w), jax.vmap(jax.vmap(functools.partial(conv1d, algorithm="xla")))(x, w), atol=1e-12
    )


@pytest.mark.parametrize("algorithm", algorithms.PRIMITIVE_ALGORITHMS)
def test_every_forward_algorithm_inside_the_primitive(algorithm):
    rng = np.random.default_rng(6)
    spec = Spec(stride=(2,), dilation=(2,), groups=2, pads=((1, 3),), out_shape=(9,))
    x = rng.standard_normal((2, 17, 4))
    w = rng.standard_normal((3, 2, 6))
    f = functools.partial(primitive.conv, spec=spec, precision=HIGHEST, algorithm=algorithm)
    ref = functools.partial(algorithms.conv_core, spec=spec, precision=HIGHEST, algorithm="xla")
    g = rng.standard_normal((2, 9, 6))
    got = jax.vjp(f, x, w)
    want = jax.vjp(ref, x, w)
    np.testing.assert_allclose(got[0], want[0], atol=1e-12)
    for a, b in zip(got[1](g), want[1](g), strict=True):
        np.testing.assert_allclose(a, b, atol=1e-11)


def test_a_user_scan_around_conv1d_equals_the_python_loop():
    rng = np.random.default_rng(7)
    x = rng.standard_normal((4, 16, 3))
    w0 = rng.standard_normal((3, 3, 3)) * 0.3

    def step(w, _):
        g = jax.grad(lambda w: jnp.sum(jnp.tanh(conv1d(x, w, padding="same")) ** 2))(w)
        return w - 0.1 * g, None

    scanned = jax.jit(lambda w: jax.lax.scan(step, w, length=5)[0])(w0)
    w = w0
    for _ in range(5):
        w = step(w, None)[0]
    np.testing.assert_allclose(scanned, w, rtol=1e-12, atol=1e-12)


# ---- the route: what the CPU gradient is made of ----------------------------------


_CONV = re.compile(
    r"stablehlo\.convolution\(.*?dim_numbers = \[(.*?)\]x\[(.*?)\]->\[(.*?)\], "
    r"window = \{(.*?)\}"
)


def _convolutions(fn, *args):
    text = jax.jit(fn).lower(*args).as_text()
    return [(m.group(1), m.group(2), m.group(3), m.group(4)) for m in _CONV.finditer(text)]


@pytest.mark.parametrize(
    "options",
    [
        dict(padding="same"),
        dict(stride=2, dilation=3, padding="full"),
        dict(groups=2, padding=(4, 0), flip=True),
        dict(stride=3, padding_mode="circular", padding="same"),
    ],
)
def test_cpu_gradient_route_is_standard_forward_convolutions(options):
    if jax.default_backend() != "cpu":
        pytest.skip("the loop-safe rules are the CPU route")
    rng = np.random.default_rng(8)
    x = rng.standard_normal((8, 40, 4))
    w = rng.standard_normal((3, 4 // options.get("groups", 1), 6))

    def loss(x, w):
        return jnp.sum(jnp.tanh(conv1d(x, w, **options)))

    def in_scan(x, w):
        def body(c, _):
            gx, gw = jax.grad(loss, (0, 1))(x + c, w)
            return c + jnp.sum(gx) * 1e-9 + jnp.sum(gw) * 1e-9, None

        return jax.lax.scan(body, 0.0, length=3)[0]

    jaxpr = str(jax.make_jaxpr(jax.grad(loss, (0, 1)))(x, w))
    assert "convjax_conv" in jaxpr and "conv_general_dilated" not in jaxpr
    for fn in (jax.grad(loss, (0, 1)), in_scan):
        convs = _convolutions(fn, x, w)
        assert len(convs) == 3  # forward, input gradient, weight gradient
        for lhs, rhs, out, rest in convs:
            assert (lhs, rhs, out) == ("b, 0, f", "0, i, o", "b, 0, f")
            # no transposed (input-dilated) or reversed convolution
            assert re.search(r"lhs_dilate = \[1\]", rest) and "reverse = [false]" in rest


@pytest.mark.parametrize(
    "shapes, options",
    [
        (((8, 40, 4), (3, 4, 6)), dict(padding="same")),
        (((8, 40, 4), (5, 2, 6)), dict(padding="full", groups=2, stride=2)),
        (((4, 9, 11, 3), (3, 3, 3, 5)), dict(padding="same")),  # images
    ],
)
def test_weight_gradient_convolution_pads_the_input_itself(shapes, options):
    """The weight gradient's swapped-roles convolution takes the layer's zero padding
    as its own: the program has no pad op, whose fusion into the input's layout copy
    made that copy a generic loop (up to 4x slower 2-D weight gradients at top level,
    docs/measurements/cnn_gradient_trial.json)."""
    if jax.default_backend() != "cpu":
        pytest.skip("the loop-safe rules are the CPU route")
    rng = np.random.default_rng(5)
    x, w = (rng.standard_normal(s) for s in shapes)

    def loss(w):
        return jnp.sum(jnp.tanh(conv(x, w, **options)))

    assert "stablehlo.pad" not in jax.jit(jax.grad(loss)).lower(w).as_text()
    want = jax.grad(lambda w: jnp.sum(jnp.tanh(conv(x, w, algorithm="xla", **options))))
    np.testing.assert_allclose(jax.grad(loss)(w), want(w), rtol=1e-12, atol=1e-12)


def test_explicit_algorithms_keep_their_own_autodiff():
    x = jnp.ones((2, 10, 3))
    w = jnp.ones((3, 3, 3))
    for algorithm in CORE_ALGORITHMS:
        jaxpr = str(
            jax.make_jaxpr(jax.grad(lambda w, a=algorithm: jnp.sum(conv1d(x, w, algorithm=a))))(w)
        )
        assert "convjax_conv" not in jaxpr


@pytest.mark.parametrize(
    "shapes, options",
    [
        (((3, 50, 1), (3, 1, 1)), dict(padding="full", flip=True)),  # three signals
        (((4, 30, 3), (3, 1, 6)), dict(groups=3, stride=2, dilation=2, padding="same")),
        (((4, 30, 1), (4, 1, 8)), dict(padding="same")),  # a first layer
    ],
)
def test_short_filters_with_one_input_channel_take_the_weight_gradient_by_taps(shapes, options):
    """``cig == 1``, more than one example or output channel per group, and at most
    ``MAX_TAPS`` kernel positions: the weight gradient is
    K fused multiply-and-sum reductions (no convolution, no FFT); the forward pass and
    the input gradient stay forward convolutions (or fused multiply-adds)."""
    if jax.default_backend() != "cpu":
        pytest.skip("the loop-safe rules are the CPU route")
    rng = np.random.default_rng(3)
    x, w = (rng.standard_normal(s) for s in shapes)

    def loss(x, w):
        return jnp.sum(jnp.tanh(conv1d(x, w, **options)))

    jaxpr = jax.make_jaxpr(jax.grad(loss, 1))(x, w)
    prims = [e.primitive.name for e in jaxpr.jaxpr.eqns]
    assert prims.count("convjax_conv") == 1  # only the forward pass: dw needs no conv
    assert "reduce_sum" in prims and "fft" not in prims
    text = jax.jit(jax.grad(loss, (0, 1))).lower(x, w).as_text()
    assert "stablehlo.fft" not in text
    got = jax.grad(loss, (0, 1))(x, w)
    want = jax.grad(
        lambda x, w: jnp.sum(jnp.tanh(conv1d(x, w, algorithm="xla", **options))), (0, 1)
    )(x, w)
    np.testing.assert_allclose(got[1], want[1], rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize(
    "shapes, options",
    [
        (((50, 1), (3, 1, 1)), dict(padding="full", flip=True)),
        (((1, 40, 1), (31, 1, 1)), dict(padding="same", dilation=1)),
        (((60, 1), (5, 1, 1)), dict(stride=3, dilation=2, padding="causal")),
        (((21, 1), (21, 1, 1)), dict()),  # one output: a dot product
        (((12, 1), (7, 1, 1)), dict(padding="same", padding_mode="circular")),
        (((2, 9, 11, 1), (3, 2, 1, 1)), dict(padding="same")),  # two images
        (((2, 30, 4), (3, 1, 4)), dict(groups=4, padding="same")),  # depthwise
    ],
)
def test_one_channel_pair_per_group_runs_the_loop_nest_everywhere(shapes, options):
    """``cig == cog == 1`` with a short filter: the forward pass and the input gradient
    are XLA convolutions marked window-reversed (XLA:CPU's own loop nest, not Eigen);
    a single example's weight gradient too. Equal to XLA's autodiff (float64)."""
    if jax.default_backend() != "cpu":
        pytest.skip("the loop-safe rules are the CPU route")
    rng = np.random.default_rng(4)
    x, w = (rng.standard_normal(s) for s in shapes)
    nd = w.ndim - 2

    def loss(x, w, a="auto"):
        return jnp.sum(jnp.tanh(conv(x, w, algorithm=a, **options)))

    jaxpr = str(jax.make_jaxpr(jax.grad(loss, (0, 1)))(x, w))
    single = x.ndim == nd + 1 or x.shape[0] == 1
    assert jaxpr.count("algorithm=loop") == (3 if single else 2)
    if "fft" not in jaxpr:

        def in_scan(x, w):
            def body(c, _):
                gx, gw = jax.grad(loss, (0, 1))(x + c, w)
                return c + 1e-9 * (jnp.sum(gx) + jnp.sum(gw)), None

            return jax.lax.scan(body, 0.0, length=2)[0]

        for fn in (jax.grad(loss, (0, 1)), in_scan):
            compiled = jax.jit(fn).lower(x, w).compile().as_text()
            convs = [line for line in compiled.splitlines() if " convolution(" in line]
            # every convolution of the loop route keeps its reversed window (XLA's loop
            # nest, never Eigen); XLA may fold a one-tap one away
            loop = [line for line in convs if "convjax_loop_conv" in line]
            assert loop and all("rhs_reversal=1" in line for line in loop), convs
    got = jax.grad(loss, (0, 1))(x, w)
    want = jax.grad(functools.partial(loss, a="xla"), (0, 1))(x, w)
    for a, b in zip(got, want, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("out_ones", [False, True])
def test_loop_algorithm_equals_xla_convolution(out_ones):
    """The ``"loop"`` algorithm alone, including a window that is the whole input
    (which XLA's simplifier would get wrong with a reversed window)."""
    rng = np.random.default_rng(5)
    for L, K, cig, cout, groups in [(9, 4, 1, 1, 1), (10, 3, 2, 6, 3), (8, 8, 1, 1, 1)]:
        for nd in (1, 2):
            e = (L, K) if not out_ones else (K, K)
            x = rng.standard_normal((2, *(e[0],) * nd, cig * groups))
            w = rng.standard_normal((*(K,) * nd, cig, cout))
            spec = Spec((1,) * nd, (1,) * nd, groups, ((0, 0),) * nd, (e[0] - K + 1,) * nd)
            np.testing.assert_allclose(
                algorithms.conv_loop(x, w, spec, None),
                algorithms.conv_xla(x, w, spec, HIGHEST),
                rtol=1e-12,
                atol=1e-12,
            )


@pytest.mark.parametrize(
    "shapes, options",
    [
        (((2, 1, 2), (1, 2, 1)), dict(padding=(0, 3))),  # found by the non-finite property test
        (((2, 1, 4), (1, 2, 2)), dict(padding=(0, 3), groups=2)),
        (((3, 17, 2), (5, 2, 3)), dict(padding="same", stride=3)),
        (((2, 16, 3), (4, 3, 2)), dict(padding="full", stride=2, dilation=3)),
        (((2, 20, 1), (3, 1, 4)), dict(padding=(4, 1))),
        (((1, 30, 1), (7, 1, 1)), dict(padding="same")),  # the loop route (one example)
        (((2, 7, 9, 2), (3, 2, 2, 3)), dict(padding="same", stride=(2, 1))),  # images
    ],
)
def test_weight_gradient_propagates_a_nonfinite_cotangent_over_the_padding(shapes, options):
    """``dw[k, a, c]`` sums ``xp[b, o*s + k*d, a] * g[b, o, c]`` over every output, and
    every output's tap ``k`` reads either the input or the zero padding, so with a
    finite input a NaN or infinity anywhere in ``g[..., c]`` makes every ``dw[..., c]``
    non-finite (the rule of docs/semantics.md; ``0 * inf`` and ``0 * NaN`` are NaN). The weight
    gradient's convolution pads by itself and skips the products with the padding; the
    rule puts them back. Each position of ``g`` in turn holds a NaN, then an infinity.
    (XLA's own weight gradient skips them too in some of these cases: the first one.)"""
    if jax.default_backend() != "cpu":
        pytest.skip("the loop-safe rules are the CPU route")
    rng = np.random.default_rng(11)
    x, w = (rng.standard_normal(s) for s in shapes)
    dw = jax.jit(lambda g: jax.vjp(lambda w: conv(x, w, **options), w)[1](g)[0])
    out_shape = jax.eval_shape(lambda: conv(x, w, **options)).shape
    assert np.all(np.isfinite(np.asarray(dw(np.ones(out_shape)))))
    for flat in range(int(np.prod(out_shape))):
        for bad in (np.nan, np.inf):
            g = rng.standard_normal(out_shape)
            g.reshape(-1)[flat] = bad
            channel = np.unravel_index(flat, out_shape)[-1]
            want = np.zeros(w.shape, bool)
            want[..., channel] = True
            got = np.asarray(dw(g))
            np.testing.assert_array_equal(~np.isfinite(got), want)
