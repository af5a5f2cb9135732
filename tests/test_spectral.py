"""Spectral tools against independent references.

The reference for every singular value is ``numpy.linalg.svd`` of a dense matrix built
from the definitions with numpy (``dense_reference``: for each output position and tap,
the input index it reads through the padding mode, by ``reference.source_index``; any
rank), never by convjax or lax; for 1-D it is also checked equal to
``convjax.conv_matrix``. Tolerances: float64 ``1e-12`` times the largest singular value
(FFT and SVD rounding, both a few units of 1e-16); float32 ``1e-5`` times it (measured
errors below 1e-6, see ``docs/spectral.md``).
"""

import functools
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import reference as ref
from hypothesis import given, settings
from hypothesis import strategies as st

import convjax
from convjax import clip_singular_values, conv_operator_norm, conv_singular_values

EXACT = 1e-12
FLOAT32 = 1e-5


def dense_reference(w, in_shape, *, stride, padding, dilation, groups, flip, padding_mode):
    """``T(w)`` by the definition, numpy float64; ``padding`` one entry per axis.

    Row ``o_flat * Cout + co``, column ``i_flat * Cin + ci`` (row-major over the
    spatial positions, then the channel): ``T[o, co, src(o, k), g*Cin/groups + c] +=
    w[k, c, co]`` where tap ``k`` of output ``o`` reads padded position ``o*stride +
    t(k)*dilation`` per axis, ``t(k) = k`` or ``K-1-k`` with ``flip``.
    """
    w = np.asarray(w, np.float64)
    rank = w.ndim - 2
    kernel, (cig, cout) = w.shape[:rank], w.shape[rank:]
    cog = cout // groups
    pads = [
        ref.resolve_padding(n, k, stride=s, padding=p, dilation=d)
        for n, k, s, p, d in zip(in_shape, kernel, stride, padding, dilation, strict=True)
    ]
    out = [
        (n + lo + hi - d * (k - 1) - 1) // s + 1
        for n, k, s, (lo, hi), d in zip(in_shape, kernel, stride, pads, dilation, strict=True)
    ]
    T = np.zeros((math.prod(out), cout, math.prod(in_shape), cig * groups))
    for o in np.ndindex(*out):
        for k in np.ndindex(*kernel):
            src = []
            for a in range(rank):
                t = kernel[a] - 1 - k[a] if flip else k[a]
                j = o[a] * stride[a] + t * dilation[a] - pads[a][0]
                src.append(ref.source_index(j, in_shape[a], padding_mode))
            if None in src:
                continue
            row, col = np.ravel_multi_index(o, out), np.ravel_multi_index(src, in_shape)
            for co in range(cout):
                g = co // cog
                T[row, co, col, g * cig : (g + 1) * cig] += w[k][:, co]
    return T.reshape(math.prod(out) * cout, -1)


def svd_reference(T):
    return np.linalg.svd(np.asarray(T, np.float64), compute_uv=False)


def public_padding(config):
    """One name for every axis when the axes share it, else a resolved (lo, hi) per axis
    (names are not per-axis entries)."""
    c = config
    if len(set(c["padding"])) == 1 and isinstance(c["padding"][0], str):
        return c["padding"][0]
    return [
        ref.resolve_padding(n, k, stride=s, padding=p, dilation=d)
        for n, k, s, p, d in zip(
            c["in_shape"], c["w_shape"], c["stride"], c["padding"], c["dilation"], strict=False
        )
    ]


def options_of(config):
    """The options as the public functions take them."""
    c = config
    return dict(
        stride=c["stride"],
        padding=public_padding(c),
        dilation=c["dilation"],
        groups=c["groups"],
        flip=c["flip"],
        padding_mode=c["padding_mode"],
    )


def reference_matrix(w, config):
    c = config
    return dense_reference(
        w,
        c["in_shape"],
        stride=c["stride"],
        padding=c["padding"],
        dilation=c["dilation"],
        groups=c["groups"],
        flip=c["flip"],
        padding_mode=c["padding_mode"],
    )


def random_filter(config, seed, dtype=np.float64):
    rng = np.random.default_rng(seed)
    return jnp.asarray(rng.standard_normal(config["w_shape"]), dtype)


@st.composite
def circular_configs(draw, ranks=(1, 2), max_size=5):
    """A layer with circular padding, stride 1 and output shape equal to input shape."""
    rank = draw(st.sampled_from(ranks))
    in_shape = tuple(draw(st.integers(1, max_size)) for _ in range(rank))
    kernel = tuple(draw(st.integers(1, 3)) for _ in range(rank))
    dilation = tuple(draw(st.integers(1, 3)) for _ in range(rank))
    padding = []
    for k, d in zip(kernel, dilation, strict=True):
        e = d * (k - 1) + 1
        lo = draw(st.integers(0, e - 1))
        padding.append(draw(st.sampled_from(["same", "same_lower", "causal", (lo, e - 1 - lo)])))
    groups = draw(st.integers(1, 2))
    cig, cog = draw(st.integers(1, 3)), draw(st.integers(1, 3))
    return dict(
        in_shape=in_shape,
        w_shape=(*kernel, cig, cog * groups),
        stride=(1,) * rank,
        padding=tuple(padding),
        dilation=dilation,
        groups=groups,
        flip=draw(st.booleans()),
        padding_mode="circular",
    )


@st.composite
def general_configs(draw, ranks=(1, 2)):
    """Any legal layer: every padding mode, stride 1 or 2, every padding name."""
    rank = draw(st.sampled_from(ranks))
    in_shape = tuple(draw(st.integers(2, 5)) for _ in range(rank))
    kernel = tuple(draw(st.integers(1, min(3, n))) for n in in_shape)
    padding = tuple(draw(st.sampled_from(["valid", "same", "full", 1, (0, 1)])) for _ in kernel)
    groups = draw(st.integers(1, 2))
    return dict(
        in_shape=in_shape,
        w_shape=(*kernel, draw(st.integers(1, 2)), draw(st.integers(1, 2)) * groups),
        stride=tuple(draw(st.integers(1, 2)) for _ in kernel),
        padding=padding,
        dilation=(1,) * rank,
        groups=groups,
        flip=draw(st.booleans()),
        padding_mode=draw(st.sampled_from(["zeros", "circular", "reflect", "replicate"])),
    )


def jitted(fn, config, **kwargs):
    """``fn(w, in_shape, **options, **kwargs)`` as one compiled program of ``w`` (cheaper
    to compile than the op-by-op dispatch of eager calls)."""
    return jax.jit(
        functools.partial(fn, in_shape=config["in_shape"], **options_of(config), **kwargs)
    )


def close(got, want, tol):
    got, want = np.asarray(got, np.float64), np.asarray(want, np.float64)
    assert got.shape == want.shape
    scale = max(float(np.max(np.abs(want), initial=0.0)), 1.0)
    np.testing.assert_allclose(got, want, rtol=0, atol=tol * scale)


# ---- the dense reference itself --------------------------------------------------------


@settings(max_examples=4, deadline=None)
@given(general_configs(ranks=(1,)), st.integers(0, 2**16))
def test_dense_reference_is_conv_matrix_in_1d(config, seed):
    w = random_filter(config, seed)
    c = config
    f = functools.partial(
        convjax.conv_matrix,
        in_shape=c["in_shape"][0],
        stride=c["stride"][0],
        padding=c["padding"][0],
        dilation=c["dilation"][0],
        groups=c["groups"],
        flip=c["flip"],
        padding_mode=c["padding_mode"],
    )
    T = jax.jit(f)(w)
    close(reference_matrix(w, config), T, EXACT)


# ---- singular values -----------------------------------------------------------------


@settings(max_examples=6, deadline=None)
@given(circular_configs(), st.integers(0, 2**16))
def test_circular_singular_values_fft_and_dense_equal_numpy_svd(config, seed):
    w = random_filter(config, seed)
    want = svd_reference(reference_matrix(w, config))
    for method in ("fft", "dense"):
        got = jitted(conv_singular_values, config, method=method)(w)
        assert got.dtype == jnp.float64
        close(got, want, EXACT)


@settings(max_examples=6, deadline=None)
@given(general_configs(), st.integers(0, 2**16))
def test_any_layer_dense_singular_values_equal_numpy_svd(config, seed):
    w = random_filter(config, seed)
    want = svd_reference(reference_matrix(w, config))
    close(jitted(conv_singular_values, config)(w), want, EXACT)


def test_3d_circular_fft_equals_numpy_svd():
    config = dict(
        in_shape=(3, 4, 2),
        w_shape=(2, 3, 1, 2, 3),
        stride=(1, 1, 1),
        padding=("same", (2, 0), "same"),
        dilation=(1, 1, 1),
        groups=1,
        flip=True,
        padding_mode="circular",
    )
    w = random_filter(config, 3)
    want = svd_reference(reference_matrix(w, config))
    close(conv_singular_values(w, (3, 4, 2), method="fft", **options_of(config)), want, EXACT)


def test_float32_within_stated_tolerance():
    config = dict(
        in_shape=(8, 8),
        w_shape=(3, 3, 4, 6),
        stride=(1, 1),
        padding=("same", "same"),
        dilation=(1, 1),
        groups=1,
        flip=False,
        padding_mode="circular",
    )
    w64 = random_filter(config, 7)
    want = svd_reference(reference_matrix(w64, config))
    for method in ("fft", "dense"):
        got = jitted(conv_singular_values, config, method=method)(w64.astype(jnp.float32))
        assert got.dtype == jnp.float32
        close(got, want, FLOAT32)


def test_kernel_of_ones_on_a_ring_is_the_dft_magnitude():
    """``x[o] + x[o+1]`` on a ring of 8: singular values ``|1 + exp(2 pi i f / 8)|``."""
    w = jnp.ones((2, 1, 1))
    want = np.sort(np.abs(1 + np.exp(2j * np.pi * np.arange(8) / 8)))[::-1]
    got = conv_singular_values(w, 8, padding="same", padding_mode="circular")
    close(got, want, EXACT)


def test_padding_forms_agree():
    """A name, an int, a bare (lo, hi) pair (N = 1) and one entry per axis mean the same."""
    w1 = jnp.asarray(np.random.default_rng(8).standard_normal((3, 2, 2)))
    f1 = functools.partial(conv_singular_values, w1, 6, padding_mode="circular")
    for padding in ((1, 1), [(1, 1)], 1, "same"):
        close(f1(padding=padding), f1(padding=[1]), EXACT)
    w2 = jnp.asarray(np.random.default_rng(9).standard_normal((3, 2, 1, 2)))
    f2 = functools.partial(conv_singular_values, w2, (5, 4), padding_mode="circular")
    want = f2(padding=[(1, 1), (0, 1)], stride=(1, 1), dilation=1)
    close(f2(padding=[1, (0, 1)], stride=1, dilation=(1, 1)), want, EXACT)


def test_jit_vmap_and_grad():
    shape, opts = (5, 4), dict(padding="same", padding_mode="circular")
    ws = jnp.asarray(np.random.default_rng(0).standard_normal((3, 3, 2, 2, 3)))
    f = functools.partial(conv_singular_values, in_shape=shape, **opts)
    close(jax.jit(f)(ws[0]), f(ws[0]), EXACT)
    close(jax.jit(jax.vmap(f))(ws), np.stack([f(w) for w in ws]), EXACT)
    top_fft = jax.jit(jax.grad(lambda w: f(w, method="fft")[0]))(ws[0])
    top_dense = jax.jit(jax.grad(lambda w: f(w, method="dense")[0]))(ws[0])
    close(top_fft, top_dense, 1e-10)


# ---- operator norm ---------------------------------------------------------------------


@settings(max_examples=5, deadline=None, derandomize=True)
@given(st.one_of(circular_configs(), general_configs()), st.integers(0, 2**16))
def test_operator_norm_converges_to_the_largest_singular_value(config, seed):
    """Small layers (at most 25 positions): the gap below the top is wide enough for
    3000 iterations to reach 1e-8 (derandomized: the error depends on that gap)."""
    w = random_filter(config, seed)
    s1 = svd_reference(reference_matrix(w, config))[0]
    est = jitted(conv_operator_norm, config, max_iters=3000, tol=0.0)(w)
    assert est.norm <= s1 * (1 + EXACT)
    close(est.norm, s1, 1e-8)
    assert est.vector.shape == (*config["in_shape"], config["w_shape"][-2] * config["groups"])
    close(jnp.linalg.norm(est.vector), 1.0, EXACT)


@pytest.mark.parametrize("iters", [3])
def test_operator_norm_is_a_lower_bound_at_every_iteration_count(iters):
    w = jnp.asarray(np.random.default_rng(1).standard_normal((3, 3, 3, 4)))
    s1 = jax.jit(lambda w: conv_singular_values(w, (6, 6), padding="same"))(w)[0]
    f = functools.partial(conv_operator_norm, in_shape=(6, 6), padding="same", max_iters=iters)
    est = jax.jit(functools.partial(f, tol=0.0))(w)
    assert int(est.iterations) == iters and not bool(est.converged)
    assert 0 < est.norm <= s1 * (1 + EXACT)


def test_operator_norm_of_a_layer_too_big_to_build():
    """64 x 64 x 8 -> 8: T(w) would need 8.6 GB in float64; each power iteration costs
    two convolutions. The spectrum of a layer this wide is nearly continuous near its
    top, so 30 iterations leave a relative error of 7.9e-3 here (docs/spectral.md)."""
    w = jnp.asarray(np.random.default_rng(2).standard_normal((3, 3, 8, 8)))
    opts = dict(padding="same", padding_mode="circular")
    with pytest.raises(ValueError, match=r"would need 8589934592 bytes"):
        conv_singular_values(w, (64, 64), method="dense", **opts)
    s1 = conv_singular_values(w, (64, 64), **opts)[0]
    est = conv_operator_norm(w, (64, 64), max_iters=30, tol=0.0, **opts)
    assert s1 * (1 - 2e-2) <= est.norm <= s1 * (1 + EXACT)


def test_operator_norm_float32_default_settings():
    w = jnp.asarray(np.random.default_rng(3).standard_normal((3, 3, 4, 4)), jnp.float32)
    opts = dict(in_shape=(16, 16), padding="same", padding_mode="circular")
    s1 = conv_singular_values(w.astype(jnp.float64), **opts)[0]
    est = jax.jit(functools.partial(conv_operator_norm, **opts))(w)
    assert est.norm.dtype == jnp.float32 and bool(est.converged)
    assert est.norm <= s1 * (1 + FLOAT32)
    close(est.norm, s1, 1e-4)  # measured error: docs/measurements/spectral.json


def test_operator_norm_key_start_vector_and_determinism():
    w = jnp.asarray(np.random.default_rng(4).standard_normal((3, 2, 3)))
    f = jax.jit(
        lambda key: conv_operator_norm(w, 10, padding="full", key=key, max_iters=2, tol=0.0)
    )
    a = conv_operator_norm(w, 10, padding="full", max_iters=2, tol=0.0)  # key=None
    b = conv_operator_norm(w, 10, padding="full", key=jax.random.key(0), max_iters=2, tol=0.0)
    assert np.array_equal(a.norm, b.norm) and np.array_equal(a.vector, b.vector)
    assert np.array_equal(f(jax.random.key(1)).vector, f(jax.random.key(1)).vector)
    assert not np.array_equal(f(jax.random.key(1)).norm, f(jax.random.key(0)).norm)
    g = jax.jit(
        lambda v0: conv_operator_norm(w, 10, padding="full", v0=v0, max_iters=3000, tol=1e-12)
    )
    converged = g(jnp.ones((10, 2)))
    warm = g(converged.vector)
    assert int(warm.iterations) <= 3
    close(warm.norm, converged.norm, 1e-10)  # both stopped at a change <= 1e-12


def test_operator_norm_of_zero_filter_is_zero():
    est = conv_operator_norm(jnp.zeros((3, 2, 2)), 5, padding="same")
    assert float(est.norm) == 0.0 and bool(est.converged) and int(est.iterations) == 1


def test_operator_norm_jit_vmap_and_gradient_of_the_largest_singular_value():
    ws = jnp.asarray(np.random.default_rng(5).standard_normal((3, 3, 2, 3)))
    f = functools.partial(conv_operator_norm, in_shape=7, padding="same", max_iters=3000, tol=0.0)
    jf = jax.jit(lambda w: f(w).norm)
    close(jax.jit(jax.vmap(jf))(ws), np.stack([jf(w) for w in ws]), 1e-12)
    got = jax.jit(jax.grad(jf))(ws[0])
    want = jax.jit(jax.grad(lambda w: conv_singular_values(w, 7, padding="same")[0]))(ws[0])
    close(got, want, 1e-7)


# ---- clipping --------------------------------------------------------------------------


def full_config(config):
    """The options of ``ClippedConv.full``: kernel = input, padding (0, n-1), no flip."""
    n = config["in_shape"]
    return dict(
        config,
        w_shape=(*n, *config["w_shape"][-2:]),
        padding=tuple((0, s - 1) for s in n),
        dilation=(1,) * len(n),
        flip=False,
    )


@settings(max_examples=6, deadline=None)
@given(circular_configs(), st.integers(0, 2**16), st.floats(0.0, 1.2))
def test_clip_full_operator_and_projection(config, seed, fraction):
    w = random_filter(config, seed)
    s = svd_reference(reference_matrix(w, config))
    bound = fraction * s[0]
    c = jax.jit(lambda w, b: jitted(clip_singular_values, config, bound=b)(w))(w, bound)
    assert c.full.shape == full_config(config)["w_shape"] and c.projected.shape == w.shape
    full_s = svd_reference(reference_matrix(c.full, full_config(config)))
    close(full_s, np.sort(np.minimum(s, bound))[::-1], EXACT)
    close(c.projected_norm, svd_reference(reference_matrix(c.projected, config))[0], EXACT)
    if fraction >= 1:  # nothing clipped: the same operator, projected back unchanged
        close(reference_matrix(c.projected, config), reference_matrix(w, config), EXACT)


def least_squares_projection(D, config):
    """The orthogonal projection (Frobenius) of the matrix ``D`` onto the matrices of
    the layers of ``config``: ``numpy.linalg.lstsq`` over the matrices of one-hot
    filters."""
    basis = []
    for i in range(math.prod(config["w_shape"])):
        e = np.zeros(math.prod(config["w_shape"]))
        e[i] = 1.0
        basis.append(reference_matrix(e.reshape(config["w_shape"]), config).ravel())
    B = np.stack(basis, axis=1)
    coef = np.linalg.lstsq(B, np.asarray(D).ravel(), rcond=None)[0]
    return (B @ coef).reshape(np.shape(D))


@settings(max_examples=4, deadline=None)
@given(circular_configs(max_size=4), st.integers(0, 2**16))
def test_clip_projection_is_the_least_squares_projection(config, seed):
    """``projected``'s layer is the layer of ``w``'s options nearest to the clipped
    operator in the Frobenius norm (taps sharing an offset may split it differently,
    so the matrices are compared)."""
    w = random_filter(config, seed)
    c = jitted(clip_singular_values, config, bound=0.5)(w)
    want = least_squares_projection(reference_matrix(c.full, full_config(config)), config)
    close(reference_matrix(c.projected, config), want, EXACT)


def test_clip_example_and_measured_projection_norm():
    """Sedghi et al.'s observation: the projection can exceed the bound."""
    w = jnp.ones((2, 1, 1))
    c = clip_singular_values(w, 4, 1.0, padding="same", padding_mode="circular")
    close(c.full[:, 0, 0], np.array([1 + 2**0.5, 1 + 2**0.5, 1 - 2**0.5, 1 - 2**0.5]) / 4, EXACT)
    close(c.projected[:, 0, 0], np.full(2, (1 + 2**0.5) / 4), EXACT)
    close(c.projected_norm, (1 + 2**0.5) / 2, EXACT)
    assert c.projected_norm > 1.0


def test_clip_under_jit_with_a_traced_bound():
    w = jnp.asarray(np.random.default_rng(6).standard_normal((3, 3, 2, 2)))
    f = functools.partial(clip_singular_values, w, (5, 5), padding="same", padding_mode="circular")
    static, traced = jax.jit(lambda: f(0.7))(), jax.jit(f)(jnp.float64(0.7))
    for a, b in zip(static, traced, strict=True):
        close(a, b, EXACT)


# ---- bad input -------------------------------------------------------------------------

W1 = jnp.ones((3, 2, 2))
W2 = jnp.ones((3, 3, 2, 2))
CIRC = dict(padding="same", padding_mode="circular")


@pytest.mark.parametrize(
    ("call", "error", "pattern"),
    [
        (
            lambda: conv_singular_values(jnp.ones((2, 2)), 4),
            ValueError,
            r"`w` must have rank >= 3.*\(2, 2\)",
        ),
        (lambda: conv_singular_values(jnp.ones((0, 2, 2)), 4), ValueError, r"no zero-sized axis"),
        (
            lambda: conv_singular_values(W2, 4),
            ValueError,
            r"`in_shape` must be a tuple of 2 sizes.*got 4",
        ),
        (
            lambda: conv_singular_values(W2, (4, 4, 4)),
            ValueError,
            r"`in_shape` must have one size per spatial axis.*\(4, 4, 4\)",
        ),
        (
            lambda: conv_singular_values(W1, 2.5),
            TypeError,
            r"`in_shape` must be an integer, got 2.5",
        ),
        (
            lambda: conv_singular_values(W2, (4, 0)),
            ValueError,
            r"`in_shape\[1\]` must be an integer >= 1, got 0",
        ),
        (
            lambda: conv_singular_values(W2, (4, 4), stride=(1, 2, 1)),
            ValueError,
            r"`stride` must be an int or a sequence of 2 ints.*length 3",
        ),
        (
            lambda: conv_singular_values(W2, (4, 4), dilation=(1, 0)),
            ValueError,
            r"`dilation\[1\]` must be an integer >= 1, got 0",
        ),
        (
            lambda: conv_singular_values(W2, (4, 4), padding=[1, 1, 1]),
            ValueError,
            r"`padding` must be a name.*sequence of 2 entries.*length 3",
        ),
        (
            lambda: conv_singular_values(W2, (4, 4), padding=["same", 1]),
            ValueError,
            r"`padding\[0\]` must be an int or a \(lo, hi\) pair.*'same'",
        ),
        (
            lambda: conv_singular_values(W2, (4, 4), padding="middle"),
            ValueError,
            r"`padding` must be one of.*'middle'",
        ),
        (
            lambda: conv_singular_values(jnp.ones((3, 2, 3)), 4, groups=2),
            ValueError,
            r"Cout=3 \(w.shape\[-1\]\) must be divisible by `groups`=2",
        ),
        (lambda: conv_singular_values(W1, 2), ValueError, r"empty"),
        (
            lambda: conv_singular_values(W2, (4, 2)),
            ValueError,
            r"kernel is longer than the padded input.*\(spatial axis 1 of 2\)",
        ),
        (
            lambda: conv_singular_values(W2, (4, 4), padding=4, padding_mode="reflect"),
            ValueError,
            r"'reflect' needs padding < input length 4.*\(spatial axis 0 of 2\)",
        ),
        (
            lambda: conv_singular_values(W1, 4, padding_mode="wrap"),
            ValueError,
            r"`padding_mode` must be one of.*'wrap'",
        ),
        (
            lambda: conv_singular_values(W1, 4, method="svd"),
            ValueError,
            r"`method` must be one of 'auto', 'fft', 'dense', got 'svd'",
        ),
        (
            lambda: conv_singular_values(W1, 4, method="fft", padding="same"),
            ValueError,
            r"`method`='fft'.*padding_mode='zeros' with padding \(\(1, 1\),\)",
        ),
        (
            lambda: conv_singular_values(W1, 8, method="fft", padding_mode="circular"),
            ValueError,
            r"output shape \(6,\) != input shape \(8,\)",
        ),
        (
            lambda: conv_singular_values(W1, 8, method="fft", stride=2, **CIRC),
            ValueError,
            r"stride \(2,\)",
        ),
        (
            lambda: conv_singular_values(W2, (40, 40), max_bytes=10**6),
            ValueError,
            r"would need \d+ bytes.*`max_bytes`=1000000",
        ),
        (
            lambda: conv_singular_values(W1, 400, padding="same", max_bytes=10**6),
            ValueError,
            r"conv_singular_values: the dense matrix of shape \(800, 800\) in float\d+ would need",
        ),
        (
            lambda: conv_singular_values(W1.astype(jnp.int32), 4),
            TypeError,
            r"`w` must have a floating dtype.*int32",
        ),
        (
            lambda: conv_singular_values(W1.astype(jnp.complex64), 4),
            TypeError,
            r"`w` has complex dtype",
        ),
        (
            lambda: conv_operator_norm(W1, 4, max_iters=0),
            ValueError,
            r"`max_iters` must be an integer >= 1, got 0",
        ),
        (
            lambda: conv_operator_norm(W1, 4, tol=-1.0),
            ValueError,
            r"`tol` must be finite and >= 0, got -1.0",
        ),
        (
            lambda: conv_operator_norm(W1, 4, tol="small"),
            TypeError,
            r"`tol` must be a real number, got 'small'",
        ),
        (
            lambda: conv_operator_norm(W1, 4, v0=jnp.ones((4, 3))),
            ValueError,
            r"`v0` must have shape \(\*in_shape, Cin\) = \(4, 2\), got shape \(4, 3\)",
        ),
        (
            lambda: conv_operator_norm(W1, 4, precision="best"),
            ValueError,
            r"`precision` must be None.*'best'",
        ),
        (
            lambda: clip_singular_values(W1, 4, 1.0),
            ValueError,
            r"clipping needs a circular layer.*output shape \(2,\) != input shape \(4,\)",
        ),
        (
            lambda: clip_singular_values(W1, 4, -1.0, **CIRC),
            ValueError,
            r"`bound` must be >= 0, got -1.0",
        ),
        (
            lambda: clip_singular_values(W1, 4, jnp.ones(2), **CIRC),
            ValueError,
            r"`bound` must be a scalar, got shape \(2,\)",
        ),
        (
            lambda: clip_singular_values(W1, 4, 1j, **CIRC),
            TypeError,
            r"`bound` must be a real scalar, got 1j",
        ),
        (
            lambda: conv_operator_norm(W1, 4, key=0),
            TypeError,
            r"`key` must be a jax.random key .* got 0 of type int",
        ),
        (
            lambda: clip_singular_values(W1, 4, "1", **CIRC),
            TypeError,
            r"`bound` must be a real scalar, got '1'",
        ),
    ],
)
def test_bad_input_raises_naming_the_argument(call, error, pattern):
    with pytest.raises(error, match=pattern):
        call()


def test_errors_are_raised_at_trace_time_under_jit():
    with pytest.raises(ValueError, match=r"`method`='fft'"):
        jax.jit(lambda w: conv_singular_values(w, 4, method="fft"))(W1)
