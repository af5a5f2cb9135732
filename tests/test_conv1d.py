"""conv1d against independent references: a numpy loop, numpy, scipy, lax (and torch).

Tolerances: float64 results must match the float64 reference to 1e-12 relative to
the size of the terms (``|x| (*) |w|``); float32 results (``precision=HIGHEST``) to
1e-5 relative to the same scale.
"""

import functools
import os
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import reference as ref
import scipy.signal
from hypothesis import given, settings
from hypothesis import strategies as st

import convjax
from convjax import conv1d
from convjax.convolution import ALGORITHMS

HIGHEST = jax.lax.Precision.HIGHEST
RTOL64 = 1e-12
RTOL32 = 1e-5


def assert_close_to_reference(got, x, w, options, rtol, algorithm="xla"):
    """``got`` matches the reference within ``rtol`` times the reference run on
    ``|x|`` and ``|w|`` (the sum of the absolute values of the terms). The FFT's
    rounding error is spread over every output, so for ``"fft"`` the bound is
    relative to the size of the signal instead: the largest such sum, and at least
    ``max|x| * sum|w|`` (an output that is exactly 0, e.g. one that reads only
    padding zeros, comes back as a tiny number even when every output does)."""
    want = ref.conv1d(x, w, **options)
    scale = ref.conv1d(np.abs(x), np.abs(w), **options)
    if algorithm == "fft":
        size = max(scale.max(), np.abs(x).max() * np.abs(w).sum())
        scale = np.full_like(scale, size)
    got = np.asarray(got, np.float64)
    assert got.shape == want.shape
    err = np.abs(got - want)
    bad = err > rtol * scale + 1e-300
    assert not bad.any(), f"max error {err.max()} vs allowed {rtol * scale[bad].min()}"


# ---- the reference, over hundreds of random configurations -------------------


# Every example runs the default algorithm and one other drawn at random (compiling
# every algorithm for every configuration would cost minutes). Calls are jitted: one
# compilation per configuration is cheaper than eager op-by-op compilation, and
# jit == eager is tested separately below. The cheaper single-channel comparisons
# use algorithm="xla" (the algorithms agree with the reference, hence each other).
OTHER_ALGORITHMS = st.sampled_from([a for a in ALGORITHMS if a != "auto"])


def jitted(**options):
    return jax.jit(functools.partial(conv1d, **options, precision=HIGHEST))


@settings(max_examples=60, deadline=None)
@given(ref.configs(), OTHER_ALGORITHMS)
def test_conv1d_equals_reference_float64(config, other):
    x, w = ref.random_arrays(config)
    options = config["options"]
    if not ref.legal(config):
        with pytest.raises(ValueError, match=r"conv1d: .*(empty|reflect)"):
            conv1d(x, w, **options)
        return
    for algorithm in ("auto", other):
        y = jitted(**options, algorithm=algorithm)(x, w)
        assert y.dtype == jnp.float64
        assert_close_to_reference(y, x, w, options, RTOL64, algorithm)


@settings(max_examples=20, deadline=None)
@given(ref.configs(), OTHER_ALGORITHMS)
def test_conv1d_equals_reference_float32(config, other):
    x, w = ref.random_arrays(config, np.float32)
    options = config["options"]
    if not ref.legal(config):
        return
    for algorithm in ("auto", other):
        y = jitted(**options, algorithm=algorithm)(x, w)
        assert y.dtype == jnp.float32
        assert_close_to_reference(y, x, w, options, RTOL32, algorithm)


def test_mixed_dtypes_promote():
    x = np.ones((5, 1), np.float32)
    w = np.ones((2, 1, 1), np.float64)
    assert conv1d(x, w).dtype == jnp.float64
    assert conv1d(x, w.astype(np.float32)).dtype == jnp.float32


def test_zero_dimensional_conv_is_a_dot_product():
    rng = np.random.default_rng(0)
    x, w = rng.standard_normal((7, 3)), rng.standard_normal((7, 3, 1))
    y = conv1d(x, w, precision=HIGHEST)
    assert y.shape == (1, 1)
    np.testing.assert_allclose(y[0, 0], np.sum(x * w[:, :, 0]), rtol=1e-13)


# ---- single channel: numpy and scipy ------------------------------------------


@settings(max_examples=25, deadline=None)
@given(st.integers(1, 12), st.integers(1, 12), st.integers(0, 2**32 - 1))
def test_single_channel_equals_numpy_and_scipy(n, m, seed):
    n, m = max(n, m), min(n, m)  # conv1d slides the kernel over the longer signal
    rng = np.random.default_rng(seed)
    a, v = rng.standard_normal(n), rng.standard_normal(m)
    padding = {"full": "full", "same": "same_lower", "valid": "valid"}
    for mode, pad in padding.items():
        conv = conv1d(a[:, None], v[:, None, None], padding=pad, flip=True, algorithm="xla")
        corr = conv1d(a[:, None], v[:, None, None], padding=pad, algorithm="xla")
        np.testing.assert_allclose(conv[:, 0], np.convolve(a, v, mode), rtol=1e-12, atol=1e-12)
        np.testing.assert_allclose(corr[:, 0], np.correlate(a, v, mode), rtol=1e-12, atol=1e-12)
        for method in ("direct", "fft"):
            np.testing.assert_allclose(
                conv[:, 0],
                scipy.signal.convolve(a, v, mode, method=method),
                rtol=1e-10,
                atol=1e-10,
            )
            np.testing.assert_allclose(
                corr[:, 0],
                scipy.signal.correlate(a, v, mode, method=method),
                rtol=1e-10,
                atol=1e-10,
            )


@settings(max_examples=15, deadline=None)
@given(
    st.integers(1, 10),
    st.integers(1, 4),
    st.integers(1, 3),
    st.integers(1, 3),
    st.integers(0, 2**32 - 1),
)
def test_multichannel_valid_equals_scipy_nd_correlate(L, K, cin, cout, seed):
    """Channel mixing checked against scipy's N-d correlation over (length, channel)."""
    K = min(K, L)
    rng = np.random.default_rng(seed)
    x, w = rng.standard_normal((L, cin)), rng.standard_normal((K, cin, cout))
    y = conv1d(x, w, precision=HIGHEST, algorithm="xla")
    for co in range(cout):
        want = scipy.signal.correlate(x, w[:, :, co], mode="valid")[:, 0]
        np.testing.assert_allclose(y[:, co], want, rtol=1e-12, atol=1e-12)


# ---- "same" with an even kernel: which side gets the extra zero ---------------


def test_even_kernel_same_pins_the_side_of_the_extra_zero():
    x = jnp.array([1.0, 2.0, 3.0, 4.0])[:, None]
    w = jnp.array([1.0, 10.0])[:, None, None]
    # "same": the extra zero at the END, y[o] = x[o] + 10 x[o+1].
    np.testing.assert_array_equal(conv1d(x, w, padding="same")[:, 0], [21, 32, 43, 4])
    # "same_lower": the extra zero at the START, y[o] = x[o-1] + 10 x[o].
    np.testing.assert_array_equal(conv1d(x, w, padding="same_lower")[:, 0], [10, 21, 32, 43])
    # numpy's mode="same" is "same_lower" (true convolution, kernel reversed).
    np.testing.assert_array_equal(
        conv1d(x, w, padding="same_lower", flip=True)[:, 0],
        np.convolve([1.0, 2, 3, 4], [1.0, 10], "same"),
    )
    geom = convjax.conv_options(padding="same").geometry(4, 2)
    assert (geom.pad_lo, geom.pad_hi) == (0, 1)
    geom = convjax.conv_options(padding="same_lower").geometry(4, 2)
    assert (geom.pad_lo, geom.pad_hi) == (1, 0)


@settings(max_examples=15, deadline=None)
@given(
    st.integers(1, 12),
    st.integers(1, 6),
    st.integers(1, 3),
    st.integers(1, 3),
    st.integers(0, 2**32 - 1),
)
def test_same_equals_lax_SAME(L, K, stride, dilation, seed):
    rng = np.random.default_rng(seed)
    x, w = rng.standard_normal((2, L, 2)), rng.standard_normal((K, 2, 3))
    y = jitted(padding="same", stride=stride, dilation=dilation)(x, w)
    want = jax.lax.conv_general_dilated(
        x,
        w,
        (stride,),
        "SAME",
        rhs_dilation=(dilation,),
        dimension_numbers=("NWC", "WIO", "NWC"),
        precision=HIGHEST,
    )
    assert y.shape == want.shape == (2, -(-L // stride), 3)
    np.testing.assert_allclose(y, want, rtol=1e-12, atol=1e-12)


@settings(max_examples=15, deadline=None)
@given(st.integers(1, 12), st.integers(1, 6), st.integers(0, 2**32 - 1))
def test_same_lower_equals_numpy_same(n, m, seed):
    n, m = max(n, m), min(n, m)
    rng = np.random.default_rng(seed)
    a, v = rng.standard_normal(n), rng.standard_normal(m)
    y = jitted(padding="same_lower", flip=True)(a[:, None], v[:, None, None])
    np.testing.assert_allclose(y[:, 0], np.convolve(a, v, "same"), rtol=1e-12, atol=1e-12)


TORCH_MODES = {
    "zeros": "zeros",
    "circular": "circular",
    "reflect": "reflect",
    "replicate": "replicate",
}


@pytest.mark.filterwarnings("ignore:Using padding='same' with even kernel")
@pytest.mark.parametrize("padding_mode", sorted(TORCH_MODES))
@pytest.mark.parametrize("K", [1, 2, 3, 4])
@pytest.mark.parametrize("dilation", [1, 2])
def test_same_and_padding_modes_equal_torch(padding_mode, K, dilation):
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(K * 10 + dilation)
    L, cin, cout = 7, 2, 3
    x, w = rng.standard_normal((2, L, cin)), rng.standard_normal((K, cin, cout))
    layer = torch.nn.Conv1d(
        cin,
        cout,
        K,
        padding="same",
        dilation=dilation,
        bias=False,
        padding_mode=TORCH_MODES[padding_mode],
    ).double()
    with torch.no_grad():
        layer.weight.copy_(torch.from_numpy(np.transpose(w, (2, 1, 0)).copy()))
        want = layer(torch.from_numpy(np.transpose(x, (0, 2, 1)).copy())).numpy()
    y = jitted(padding="same", dilation=dilation, padding_mode=padding_mode)(x, w)
    np.testing.assert_allclose(y, np.transpose(want, (0, 2, 1)), rtol=1e-12, atol=1e-12)


# ---- padding modes: pinned by hand -------------------------------------------


@pytest.mark.parametrize(
    "padding_mode, padded",
    [
        ("zeros", [0, 0, 1, 2, 3, 0, 0]),
        ("circular", [2, 3, 1, 2, 3, 1, 2]),
        ("reflect", [3, 2, 1, 2, 3, 2, 1]),
        ("replicate", [1, 1, 1, 2, 3, 3, 3]),
    ],
)
def test_padding_modes_by_hand(padding_mode, padded):
    """A one-hot filter reads the padded input back, position by position."""
    x = jnp.array([1.0, 2.0, 3.0])[:, None]
    eye = jnp.eye(5)[:, :, None, None]  # five filters (K=5, 1, 1), tap j one-hot
    rows = [conv1d(x, eye[j], padding=2, padding_mode=padding_mode)[:, 0] for j in range(5)]
    # output o, tap j reads padded position o + j.
    for o in range(3):
        np.testing.assert_array_equal([r[o] for r in rows], padded[o : o + 5])


def test_circular_wraps_more_than_once():
    x = jnp.array([1.0, 2.0])[:, None]
    w = jnp.array([1.0])[:, None, None]
    y = conv1d(x, w, padding=(3, 4), padding_mode="circular")
    np.testing.assert_array_equal(y[:, 0], [2, 1, 2, 1, 2, 1, 2, 1, 2])


# ---- transformations ------------------------------------------------------------


@settings(max_examples=6, deadline=None)
@given(ref.configs())
def test_jit_equals_eager(config):
    if not ref.legal(config):
        return
    x, w = ref.random_arrays(config)
    f = functools.partial(conv1d, **config["options"], precision=HIGHEST)
    np.testing.assert_allclose(jax.jit(f)(x, w), f(x, w), rtol=1e-13, atol=1e-13)


@settings(max_examples=8, deadline=None)
@given(ref.configs(batch_shapes=((3,), (2, 3))))
def test_vmap_equals_batched_call(config):
    if not ref.legal(config):
        return
    x, w = ref.random_arrays(config)
    f = jitted(**config["options"])
    got = jax.jit(jax.vmap(f, (0, None)))(x, w)
    np.testing.assert_allclose(got, f(x, w), rtol=1e-13, atol=1e-13)
    # vmap over a batch of filters equals a loop over them.
    ws = np.stack([w, 2 * w, -w])
    got = jax.jit(jax.vmap(f, (None, 0)))(x, ws)
    np.testing.assert_allclose(got, np.stack([f(x, wi) for wi in ws]), rtol=1e-13, atol=1e-13)


@settings(max_examples=12, deadline=None)
@given(
    ref.configs(batch_shapes=((), (2,)), max_length=6, max_kernel=3), st.sampled_from(ALGORITHMS)
)
def test_grad_equals_reference_jacobian(config, algorithm):
    """conv1d is linear: the gradient of <conv1d(x, w), c> is read off the reference."""
    if not ref.legal(config):
        return
    x, w = ref.random_arrays(config)
    options = config["options"]
    c = np.random.default_rng(1).standard_normal(ref.conv1d(x, w, **options).shape)

    def f(x, w):
        return jnp.sum(conv1d(x, w, **options, precision=HIGHEST, algorithm=algorithm) * c)

    gx, gw = jax.jit(jax.grad(f, argnums=(0, 1)))(x, w)
    basis_x = np.eye(x.size).reshape(x.size, *x.shape)
    basis_w = np.eye(w.size).reshape(w.size, *w.shape)
    want_gx = [np.sum(ref.conv1d(e, w, **options) * c) for e in basis_x]
    want_gw = [np.sum(ref.conv1d(x, e, **options) * c) for e in basis_w]
    np.testing.assert_allclose(gx.reshape(-1), want_gx, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(gw.reshape(-1), want_gw, rtol=1e-12, atol=1e-12)


def test_no_recompilation_for_same_shapes():
    traces = []

    @jax.jit
    def f(x, w):
        traces.append(1)  # a Python side effect runs once per trace
        return conv1d(x, w, padding="same", padding_mode="reflect", stride=2)

    rng = np.random.default_rng(0)
    for _ in range(3):
        f(rng.standard_normal((2, 9, 2)), rng.standard_normal((3, 2, 4))).block_until_ready()
    assert len(traces) == 1
    f(rng.standard_normal((2, 10, 2)), rng.standard_normal((3, 2, 4)))
    assert len(traces) == 2  # a new shape traces again


# ---- docstring examples -----------------------------------------------------------


def test_docstring_examples_run():
    """The examples in the core modules' docstrings, run as doctests in a fresh
    interpreter without x64 (their printed dtypes are float32)."""
    code = (
        "import doctest, sys\n"
        "import convjax.convolution, convjax.geometry, convjax.signal, convjax.tying\n"
        "mods = (convjax.convolution, convjax.geometry, convjax.signal, convjax.tying)\n"
        "res = [doctest.testmod(m, optionflags=doctest.NORMALIZE_WHITESPACE) for m in mods]\n"
        "print(sum(r.attempted for r in res), sum(r.failed for r in res))\n"
        "sys.exit(1 if any(r.failed for r in res) else 0)\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("JAX_")}
    env["JAX_PLATFORMS"] = "cpu"
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120
    )
    assert out.returncode == 0, out.stdout + out.stderr
    attempted, failed = map(int, out.stdout.split()[-2:])
    assert failed == 0 and attempted >= 5


# ---- working-memory guard, precision, empty batch (issues 9 and 12) ---------------


def test_dense_and_matmul_refuse_beyond_max_bytes_before_allocating():
    x = jnp.ones((2**20, 1), jnp.float32)
    w = jnp.ones((3, 1, 1), jnp.float32)
    with pytest.raises(
        ValueError,
        match=r'conv1d: the dense matrix of algorithm="dense" of '
        r"shape \(1048574, 1048576\) in float32 would need 4398038122496 bytes",
    ):
        conv1d(x, w, algorithm="dense")
    with pytest.raises(
        ValueError,
        match=r'conv1d: the im2col patches of algorithm="matmul" of '
        r"shape \(4, 1048574, 6\) in float32 would need 100663104 bytes .* more "
        r"than `max_bytes`=1000000",
    ):
        conv1d(
            jnp.ones((4, 2**20, 2), jnp.float32),
            w.reshape(3, 1, 1) * jnp.ones((3, 2, 1), jnp.float32),
            algorithm="matmul",
            max_bytes=1_000_000,
        )
    # within the limit (or without one) they run
    small = conv1d(jnp.ones((20, 1)), w, algorithm="dense", max_bytes=None)
    assert small.shape == (18, 1)


@pytest.mark.parametrize("precision", ["bogus", 3, ("highest", "nope"), ()])
def test_bad_precision_names_conv1d_and_the_argument(precision):
    with pytest.raises(
        ValueError,
        match=r"conv1d: `precision` must be None, a "
        r"jax.lax.Precision, one of its names",
    ):
        conv1d(jnp.ones((5, 1)), jnp.ones((2, 1, 1)), precision=precision)


@pytest.mark.parametrize(
    "precision", [None, "highest", jax.lax.Precision.HIGH, ("highest", "default")]
)
def test_good_precisions_are_accepted(precision):
    assert conv1d(jnp.ones((5, 1)), jnp.ones((2, 1, 1)), precision=precision).shape == (4, 1)


@pytest.mark.parametrize("algorithm", ["auto", "xla", "direct", "fft", "matmul", "dense"])
def test_an_empty_batch_axis_gives_an_empty_output_like_lax(algorithm):
    x = jnp.ones((0, 3, 7, 2))
    w = jnp.ones((3, 2, 4))
    y = conv1d(x, w, padding="same", algorithm=algorithm)
    want = jax.lax.conv_general_dilated(
        x.reshape(0, 7, 2), w, (1,), "SAME", dimension_numbers=("NWC", "WIO", "NWC")
    )
    assert y.shape == (0, 3, 7, 4) and want.shape == (0, 7, 4)
    g = jax.grad(lambda w: jnp.sum(conv1d(x, w, algorithm=algorithm)))(w)
    np.testing.assert_array_equal(g, jnp.zeros_like(w))
