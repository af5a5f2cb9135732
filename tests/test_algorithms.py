"""The algorithms behind ``conv1d`` (issue 6): each against a numpy loop, each
against the others, their gradients, dtypes, the FFT planning and the "auto" rule.

Tolerances (written out): float64 results match the float64 numpy loop to
``1e-12`` times the size of the terms (the same loop on ``|x|`` and ``|w|``);
float32 results to ``2e-5`` times the size of the terms (the FFT's error is
spread over the whole signal, hence relative to the terms' size, not to each
output); float16/bfloat16 to ``1e-2`` and ``4e-2`` of it.
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from jax.test_util import check_grads

from convjax import algorithms, conv1d
from convjax.algorithms import CORE_ALGORITHMS, choose, fast_length, fft_plan

HIGHEST = jax.lax.Precision.HIGHEST
EXPLICIT = ("xla", "direct", "fft", "matmul", "dense")
TOL = {"float64": 1e-12, "float32": 2e-5, "float16": 1e-2, "bfloat16": 4e-2}


# ---- an independent reference: numpy padding and a loop over taps ------------


def _resolve(L, K, stride, padding, dilation):
    e = dilation * (K - 1) + 1
    if padding == "valid":
        return 0, 0
    if padding == "full":
        return e - 1, e - 1
    if padding == "causal":
        return e - 1, 0
    if padding in ("same", "same_lower"):
        total = max((-(-L // stride) - 1) * stride + e - L, 0)
        small, big = total // 2, total - total // 2
        return (small, big) if padding == "same" else (big, small)
    if isinstance(padding, int):
        return padding, padding
    return padding


_NP_MODE = {"zeros": "constant", "circular": "wrap", "reflect": "reflect", "replicate": "edge"}


def reference(
    x, w, *, stride=1, padding="valid", dilation=1, groups=1, flip=False, padding_mode="zeros"
):
    """``(..., L, Cin)``, ``(K, Cin/g, Cout)`` -> ``(..., Lout, Cout)`` in float64."""
    x, w = np.asarray(x, np.float64), np.asarray(w, np.float64)
    L, cin = x.shape[-2:]
    K, cig, cout = w.shape
    cog = cout // groups
    lo, hi = _resolve(L, K, stride, padding, dilation)
    cfg = [(0, 0)] * (x.ndim - 2) + [(lo, hi), (0, 0)]
    xp = np.pad(x, cfg, mode=_NP_MODE[padding_mode])
    lout = (L + lo + hi - dilation * (K - 1) - 1) // stride + 1
    y = np.zeros(x.shape[:-2] + (lout, cout))
    wk = w[::-1] if flip else w
    for k in range(K):
        xs = xp[..., k * dilation : k * dilation + (lout - 1) * stride + 1 : stride, :]
        for g in range(groups):
            y[..., g * cog : (g + 1) * cog] += (
                xs[..., g * cig : (g + 1) * cig] @ wk[k, :, g * cog : (g + 1) * cog]
            )
    return y


def assert_matches(got, x, w, rtol, **options):
    want = reference(x, w, **options)
    scale = reference(
        np.abs(np.asarray(x, np.float64)), np.abs(np.asarray(w, np.float64)), **options
    )
    got = np.asarray(got, np.float64)
    assert got.shape == want.shape
    err = np.abs(got - want)
    allowed = rtol * (scale + scale.max() * (rtol > 1e-10))  # FFT: relative to the signal
    assert np.all(err <= allowed + 1e-300), f"max error {err.max()}, allowed {allowed.min()}"


# ---- random configurations ---------------------------------------------------


@st.composite
def configs(draw):
    groups = draw(st.sampled_from([1, 1, 2, 3]))
    cig = draw(st.integers(1, 3))
    cog = draw(st.integers(1, 3))
    K = draw(st.integers(1, 6))
    dilation = draw(st.integers(1, 3))
    stride = draw(st.integers(1, 3))
    padding = draw(
        st.sampled_from(["valid", "same", "same_lower", "full", "causal", 1, (0, 2), (3, 1)])
    )
    padding_mode = draw(st.sampled_from(["zeros", "circular", "reflect", "replicate"]))
    flip = draw(st.booleans())
    e = dilation * (K - 1) + 1
    L = draw(st.integers(max(e, 4), 24))
    batch = draw(st.sampled_from([(), (2,), (2, 1)]))
    lo, hi = _resolve(L, K, stride, padding, dilation)
    if padding_mode == "reflect" and max(lo, hi) > L - 1:
        padding_mode = "replicate"
    options = dict(
        stride=stride,
        padding=padding,
        dilation=dilation,
        groups=groups,
        flip=flip,
        padding_mode=padding_mode,
    )
    seed = draw(st.integers(0, 2**31 - 1))
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(batch + (L, cig * groups))
    w = rng.standard_normal((K, cig, cog * groups))
    return x, w, options


def all_algorithms(x, w, options, algorithms):
    """Every algorithm on one configuration, in ONE jitted program (one compilation
    per configuration instead of one per algorithm and per op)."""

    @jax.jit
    def run(x, w):
        return [conv1d(x, w, **options, algorithm=a, precision=HIGHEST) for a in algorithms]

    return dict(zip(algorithms, run(x, w), strict=True))


@settings(max_examples=12, deadline=None)
@given(configs())
def test_every_algorithm_equals_the_numpy_loop_float64(config):
    x, w, options = config
    for algorithm, y in all_algorithms(x, w, options, EXPLICIT + ("auto",)).items():
        assert y.dtype == jnp.float64
        assert_matches(y, x, w, TOL["float64"] * (1e3 if algorithm == "fft" else 1), **options)


@settings(max_examples=6, deadline=None)
@given(configs())
def test_every_algorithm_equals_the_numpy_loop_float32(config):
    x, w, options = config
    x32, w32 = x.astype(np.float32), w.astype(np.float32)
    for y in all_algorithms(x32, w32, options, EXPLICIT).values():
        assert y.dtype == jnp.float32
        assert_matches(y, x32, w32, TOL["float32"], **options)


@pytest.mark.parametrize("dtype", ["float16", "bfloat16", "float32", "float64"])
@pytest.mark.parametrize("algorithm", EXPLICIT + ("auto",))
def test_dtype_is_preserved(algorithm, dtype):
    rng = np.random.default_rng(0)
    x = jnp.asarray(rng.standard_normal((2, 16, 4)), dtype)
    w = jnp.asarray(rng.standard_normal((3, 2, 4)), dtype)
    y = conv1d(x, w, groups=2, padding="same", algorithm=algorithm, precision=HIGHEST)
    assert y.dtype == jnp.dtype(dtype)
    assert_matches(
        y, x.astype(jnp.float64), w.astype(jnp.float64), TOL[dtype], groups=2, padding="same"
    )


def test_fft_overlap_save_blocks_are_exact():
    # A long signal with a short filter: fft_plan splits it into blocks.
    L, K, dilation = 3000, 5, 3
    assert fft_plan(L, dilation * (K - 1) + 1)[1] > 0
    rng = np.random.default_rng(1)
    x = rng.standard_normal((2, L, 2))
    w = rng.standard_normal((K, 2, 3))
    for stride in (1, 4):
        options = dict(stride=stride, dilation=dilation, padding="same", padding_mode="reflect")
        y = conv1d(x, w, **options, algorithm="fft")
        assert_matches(y, x, w, 1e-11, **options)


@pytest.mark.parametrize("n", [1, 2, 7, 11, 97, 1000, 1001, 4097, 10**6 + 1])
def test_fast_length_is_the_next_5_smooth_number(n):
    m = fast_length(n)
    assert m >= n

    def smooth(k):
        for p in (2, 3, 5):
            while k % p == 0:
                k //= p
        return k == 1

    assert smooth(m)
    assert not any(smooth(k) for k in range(n, m))


def test_fft_plan_prefers_blocks_for_long_signals_and_one_transform_for_short():
    n, m = fft_plan(10**6, 32)
    assert m == n - 32 + 1 and n < 10**5
    n, m = fft_plan(1000, 255)
    assert m == 0 and n == fast_length(1000)


# ---- jit, vmap, grad ---------------------------------------------------------

CASE = dict(stride=2, padding="same", dilation=2, groups=2, flip=True, padding_mode="circular")


@pytest.mark.parametrize("algorithm", EXPLICIT + ("auto",))
def test_jit_equals_eager_and_vmap_equals_loop(algorithm):
    rng = np.random.default_rng(2)
    x = rng.standard_normal((2, 17, 4))
    w = rng.standard_normal((3, 2, 6))
    f = functools.partial(conv1d, **CASE, algorithm=algorithm, precision=HIGHEST)
    eager = f(x, w)
    np.testing.assert_allclose(jax.jit(f)(x, w), eager, rtol=1e-12, atol=1e-12)
    g = jax.jit(f)
    batched = jax.jit(jax.vmap(f, in_axes=(0, None)))(x, w)
    looped = np.stack([g(xi, w) for xi in x])
    np.testing.assert_allclose(batched, looped, rtol=1e-12, atol=1e-12)
    ws = np.stack([w, 2 * w])
    np.testing.assert_allclose(
        jax.jit(jax.vmap(f, in_axes=(None, 0)))(x, ws),
        np.stack([g(x, wi) for wi in ws]),
        rtol=1e-12,
        atol=1e-12,
    )


@pytest.mark.parametrize("algorithm", EXPLICIT + ("auto",))
def test_gradients_equal_the_xla_gradients(algorithm):
    rng = np.random.default_rng(3)
    x = rng.standard_normal((2, 19, 4))
    w = rng.standard_normal((4, 2, 6))
    r = rng.standard_normal(conv1d(x, w, **CASE).shape)

    def loss(x, w, algorithm):
        y = conv1d(x, w, **CASE, algorithm=algorithm, precision=HIGHEST)
        return jnp.sum(jnp.tanh(y) * r)

    grad = jax.jit(jax.grad(loss, argnums=(0, 1)), static_argnums=2)
    got = grad(x, w, algorithm)
    want = grad(x, w, "xla")
    for g, h in zip(got, want, strict=True):
        np.testing.assert_allclose(g, h, rtol=1e-10, atol=1e-10)


def test_auto_check_grads_second_order_through_the_primitive():
    rng = np.random.default_rng(5)
    # one signal: XLA's loop nest forward, derivatives by the loop-safe rules
    x = rng.standard_normal((300, 1))
    w = rng.standard_normal((5, 1, 1))
    assert _choice("cpu", 1, 300, 1, 1, 5) == algorithms.Choice("loop", "rules")
    f = jax.jit(functools.partial(conv1d, padding="same", algorithm="auto"))
    check_grads(f, (x, w), order=2, modes=("fwd", "rev"), atol=1e-6, rtol=1e-6)

    def loss(w, algorithm):
        return jnp.sum(conv1d(x, w, padding="same", algorithm=algorithm) ** 2)

    g = jax.jit(jax.grad(loss), static_argnums=1)
    np.testing.assert_allclose(g(w, "auto"), g(w, "xla"), rtol=1e-10)
    # jax.hessian (forward over reverse) works through the primitive's rules.
    hess = jax.jit(jax.hessian(loss), static_argnums=1)
    np.testing.assert_allclose(hess(w, "auto"), hess(w, "xla"), rtol=1e-10, atol=1e-10)


# ---- the auto rule -----------------------------------------------------------


def _choice(platform, B, L, cin, cout, K, dilation=1, groups=1):
    del B  # the rule does not depend on the batch size
    return choose(
        platform,
        length=L,
        in_channels=cin,
        out_channels=cout,
        kernel_size=K,
        dilation=dilation,
        groups=groups,
    )


def test_auto_rule_cpu_as_documented():
    # one long signal: XLA's loop nest for short filters, fft for long
    assert _choice("cpu", 1, 10**5, 1, 1, 3).forward == "loop"
    assert _choice("cpu", 1, 10**5, 1, 1, 31).forward == "loop"
    assert _choice("cpu", 1, 10**5, 1, 1, 255) == algorithms.Choice("fft", "rules")
    assert _choice("cpu", 1, 10**5, 1, 1, 9, dilation=12).forward == "fft"  # span 97
    assert _choice("cpu", 1, 10**4, 1, 1, 255).forward == "loop"  # short signal
    assert _choice("cpu", 1, 10**5, 1, 1, 9, dilation=10).forward == "loop"  # span 81
    # depthwise layers are one channel pair per group
    assert _choice("cpu", 64, 1024, 64, 64, 9, groups=64).forward == "loop"
    # one input channel, many outputs (a first layer): shifted multiply-adds
    assert _choice("cpu", 128, 64, 1, 32, 5).forward == "direct"
    # channels: XLA forward
    assert _choice("cpu", 64, 1024, 64, 64, 3).forward == "xla"
    assert _choice("cpu", 256, 256, 32, 64, 5).forward == "xla"


@pytest.mark.parametrize("platform", ["gpu", "tpu"])
def test_auto_rule_off_cpu_is_xla_except_long_single_channel_large_kernels(platform):
    xla = algorithms.Choice("xla", "xla")
    for B, L, cin, cout, K, g in [
        (64, 1024, 64, 64, 3, 1),
        (64, 1024, 64, 64, 9, 1),
        (256, 256, 32, 64, 5, 1),
        (64, 1024, 64, 64, 9, 64),
        (1, 10**5, 1, 1, 3, 1),
        (1, 10**5, 1, 1, 31, 1),
        (1, 1000, 1, 1, 255, 1),
        (8, 10**5, 1, 1, 255, 1),
    ]:
        assert _choice(platform, B, L, cin, cout, K, groups=g) == xla
    assert _choice(platform, 1, 10**6, 1, 1, 255) == algorithms.Choice("fft", "fft")


def test_platform_of_concrete_and_traced():
    x = jnp.ones((3, 1))
    assert algorithms.platform_of(x) == jax.default_backend()
    seen = []
    jax.jit(lambda x: seen.append(algorithms.platform_of(x)) or x)(x)
    assert seen == [jax.default_backend()]


def test_auto_under_jit_compiles_once():
    rng = np.random.default_rng(6)
    traces = []

    @jax.jit
    def f(x, w):
        traces.append(1)
        return conv1d(x, w, padding="same")

    x = rng.standard_normal((4000, 1))
    w = rng.standard_normal((255, 1, 1))
    a = f(x, w)
    b = f(x + 1.0, w)
    assert len(traces) == 1
    assert_matches(a, x, w, 1e-10, padding="same")
    assert_matches(b, x + 1.0, w, 1e-10, padding="same")


def test_unknown_algorithm_is_refused_naming_the_choices():
    with pytest.raises(
        ValueError,
        match=r"conv1d: `algorithm` must be one of 'auto', 'xla', "
        r"'direct', 'fft', 'matmul', 'dense', got 'winograd'",
    ):
        conv1d(jnp.ones((5, 1)), jnp.ones((2, 1, 1)), algorithm="winograd")


@pytest.mark.parametrize("algorithm", CORE_ALGORITHMS)
def test_algorithm_errors_are_the_conv1d_errors(algorithm):
    with pytest.raises(ValueError, match=r"conv1d: channel mismatch"):
        conv1d(jnp.ones((5, 3)), jnp.ones((2, 2, 1)), algorithm=algorithm)
    with pytest.raises(ValueError, match=r"conv1d: the kernel is longer than the padded input"):
        conv1d(jnp.ones((5, 1)), jnp.ones((7, 1, 1)), algorithm=algorithm)
