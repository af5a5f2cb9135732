"""``convjax.conv`` / ``conv2d`` over N spatial axes (issue 11, items 1, 2 and 6).

References: a numpy loop written from the definition (``reference_conv`` below:
``numpy.pad`` per axis, one strided slice per kernel position), ``scipy.signal``'s
``correlate2d`` / ``convolve2d``, ``lax.conv_general_dilated`` and
``torch.nn.functional.conv2d`` / ``conv3d`` (with ``F.pad`` for the non-zero
padding modes).

Tolerances (written out): float64 outputs and gradients within ``1e-12`` times the
size of their terms (the same computation on ``|x|``, ``|w|``, ``|g|``), plus, for
the FFT, ``1e-12`` times the size of the signal (``max|x| sum|w|``), because the FFT
spreads its rounding over every entry; float32 within ``2e-5`` of the size of the
terms (the float32 unit roundoff 6e-8 times at most a few hundred terms).
"""

import functools
import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.signal
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from convjax import conv, conv1d, conv2d
from convjax.convolution import ALGORITHMS

HIGHEST = jax.lax.Precision.HIGHEST
NP_MODES = {"zeros": "constant", "circular": "wrap", "reflect": "reflect", "replicate": "edge"}


# ---- the independent reference ------------------------------------------------


def resolve(name, L, K, s, d):
    """``(lo, hi)`` of one axis from the padding table of docs/semantics.md."""
    e = d * (K - 1) + 1
    if isinstance(name, tuple):
        return name
    if name == "valid":
        return (0, 0)
    if name == "full":
        return (e - 1, e - 1)
    if name == "causal":
        return (e - 1, 0)
    total = max((-(-L // s) - 1) * s + e - L, 0)
    small, big = total // 2, total - total // 2
    return (small, big) if name == "same" else (big, small)


def reference_conv(x, w, *, stride, padding, dilation, groups, flip, padding_mode):
    """numpy: pad each axis, then for every kernel position a strided slice times
    that position's channel block, summed. ``x (B, *L, Cin)``, ``w (*K, cig, Cout)``,
    per-axis ``stride``, ``padding`` (names or pairs), ``dilation``."""
    n = w.ndim - 2
    ks, (cig, cout) = w.shape[:n], w.shape[n:]
    pads = [
        resolve(p, L, K, s, d)
        for p, L, K, s, d in zip(padding, x.shape[1:-1], ks, stride, dilation, strict=True)
    ]
    xp = np.pad(x, [(0, 0), *pads, (0, 0)], mode=NP_MODES[padding_mode])
    if flip:
        w = w[(slice(None, None, -1),) * n]
    outs = [
        (lp - d * (K - 1) - 1) // s + 1
        for lp, K, s, d in zip(xp.shape[1:-1], ks, stride, dilation, strict=True)
    ]
    y = np.zeros((x.shape[0], *outs, cout))
    cog = cout // groups
    for k in itertools.product(*(range(K) for K in ks)):
        sl = tuple(
            slice(kk * d, kk * d + (o - 1) * s + 1, s)
            for kk, d, o, s in zip(k, dilation, outs, stride, strict=True)
        )
        patch = xp[(slice(None), *sl)]
        for h in range(groups):
            y[..., h * cog : (h + 1) * cog] += (
                patch[..., h * cig : (h + 1) * cig] @ w[k][:, h * cog : (h + 1) * cog]
            )
    return y


@st.composite
def configs(draw, ndims=(1, 2, 3)):
    """A random legal configuration with small shapes (the dense matrix and the
    loops stay cheap)."""
    n = draw(st.sampled_from(ndims))
    groups = draw(st.sampled_from([1, 1, 2]))
    cig, cog = draw(st.integers(1, 2)), draw(st.integers(1, 2))
    mode = draw(st.sampled_from(["zeros", "circular", "reflect", "replicate"]))
    ks, ls, strides, dils, pads = [], [], [], [], []
    for _ in range(n):
        K, d, s = draw(st.integers(1, 3)), draw(st.integers(1, 2)), draw(st.integers(1, 2))
        e = d * (K - 1) + 1
        L = draw(st.integers(max(e, 2), 7 if n < 3 else 5))
        names = ["valid", "same", "same_lower", "full", "causal", (0, 2), (1, 0)]
        p = draw(st.sampled_from(names))
        if mode == "reflect" and max(resolve(p, L, K, s, d)) > L - 1:
            p = "valid"
        ks.append(K), ls.append(L), strides.append(s), dils.append(d), pads.append(p)
    batch = draw(st.sampled_from([1, 2]))
    rng = np.random.default_rng(draw(st.integers(0, 2**31 - 1)))
    x = rng.standard_normal((batch, *ls, cig * groups))
    w = rng.standard_normal((*ks, cig, cog * groups))
    options = dict(
        stride=tuple(strides),
        padding=tuple(pads),
        dilation=tuple(dils),
        groups=groups,
        flip=draw(st.booleans()),
        padding_mode=mode,
    )
    return x, w, options


def _every_algorithm(x, w, g, options):
    """Output and VJP of every algorithm, one jitted program."""

    def one(algorithm):
        f = functools.partial(conv, **options, algorithm=algorithm, precision=HIGHEST)
        y, vjp = jax.vjp(f, x, w)
        return (y, *vjp(g))

    return {a: one(a) for a in ALGORITHMS}


@settings(max_examples=4, deadline=None)
@given(configs())
def test_every_algorithm_equals_the_numpy_loop_float64(config):
    x, w, options = config
    want = reference_conv(x, w, **options)
    g = np.random.default_rng(1).standard_normal(want.shape)
    got = jax.jit(lambda x, w, g: _every_algorithm(x, w, g, options))(x, w, g)
    scale = reference_conv(np.abs(x), np.abs(w), **options)
    signal = np.abs(x).max() * np.abs(w).sum()
    want_grads = jax.vjp(
        functools.partial(conv, **options, algorithm="xla", precision=HIGHEST), x, w
    )[1](g)
    for algorithm, (y, dx, dw) in got.items():
        bound = 1e-12 * (scale + (signal if algorithm == "fft" else 0.0)) + 1e-300
        np.testing.assert_array_less(np.abs(y - want), bound + 1e-15, err_msg=algorithm)
        # gradients: against XLA's autodiff (itself checked against the loop in 1-D)
        for a, b in zip((dx, dw), want_grads, strict=True):
            tol = 1e-12 * (np.abs(b).max() + np.abs(g).max() * (np.abs(x).sum() + np.abs(w).sum()))
            np.testing.assert_allclose(a, b, atol=tol, rtol=0, err_msg=algorithm)


@settings(max_examples=6, deadline=None)
@given(configs(ndims=(2, 3)))
def test_auto_gradients_equal_xla_autodiff_float64(config):
    """The primitive's rules (the route of "auto" on CPU) equal XLA's autodiff to
    1e-12 times the size of the terms, as the 1-D tests pin."""
    x, w, options = config

    @functools.partial(jax.jit, static_argnums=3)
    def run(x, w, g, algorithm):
        f = functools.partial(conv, **options, algorithm=algorithm, precision=HIGHEST)
        y, vjp = jax.vjp(f, x, w)
        return (y, *vjp(g))

    g = np.random.default_rng(2).standard_normal(conv(x, w, **options).shape)
    got, want = run(x, w, g, "auto"), run(x, w, g, "xla")
    scale = run(np.abs(x), np.abs(w), np.abs(g), "xla")
    for a, b, s in zip(got, want, scale, strict=True):
        assert a.dtype == b.dtype and a.shape == b.shape
        np.testing.assert_array_less(np.abs(a - b), 1e-12 * (s + 1.0))


def test_float32_within_stated_tolerance():
    rng = np.random.default_rng(3)
    x = rng.standard_normal((2, 9, 8, 4)).astype(np.float32)
    w = rng.standard_normal((3, 3, 2, 6)).astype(np.float32)
    options = dict(stride=(2, 1), padding="same", dilation=(1, 2), groups=2)
    want = reference_conv(
        x.astype(np.float64),
        w.astype(np.float64),
        **{**options, "stride": (2, 1), "padding": ("same", "same"), "dilation": (1, 2)},
        flip=False,
        padding_mode="zeros",
    )
    scale = reference_conv(
        np.abs(x).astype(np.float64),
        np.abs(w).astype(np.float64),
        stride=(2, 1),
        padding=("same", "same"),
        dilation=(1, 2),
        groups=2,
        flip=False,
        padding_mode="zeros",
    )
    for algorithm in ALGORITHMS:
        y = conv2d(x, w, **options, algorithm=algorithm, precision=HIGHEST)
        assert y.dtype == jnp.float32
        np.testing.assert_array_less(np.abs(np.asarray(y, np.float64) - want), 2e-5 * (scale + 1))


# ---- against scipy, lax and torch -----------------------------------------------


@pytest.mark.parametrize(
    "mode, boundary",
    [("valid", "fill"), ("full", "fill"), ("same", "fill"), ("full", "wrap"), ("same", "wrap")],
)
@pytest.mark.parametrize("kernel", [(3, 3), (2, 4), (3, 2)])
def test_scipy_correlate2d_and_convolve2d(mode, boundary, kernel):
    """``correlate2d(mode)`` is ``conv2d(padding=mode)``; ``convolve2d`` is
    ``flip=True``, with ``"same_lower"`` for its "same" (numpy's centring); scipy's
    ``boundary="wrap"`` is ``padding_mode="circular"``."""
    rng = np.random.default_rng(sum(kernel) + len(mode))
    x, k = rng.standard_normal((5, 6)), rng.standard_normal(kernel)
    pm = "circular" if boundary == "wrap" else "zeros"
    got_c = conv2d(x[..., None], k[..., None, None], padding=mode, padding_mode=pm)[..., 0]
    want_c = scipy.signal.correlate2d(x, k, mode=mode, boundary=boundary)
    np.testing.assert_allclose(got_c, want_c, rtol=1e-12, atol=1e-12)
    pad = "same_lower" if mode == "same" else mode
    got_v = conv2d(x[..., None], k[..., None, None], padding=pad, padding_mode=pm, flip=True)
    want_v = scipy.signal.convolve2d(x, k, mode=mode, boundary=boundary)
    np.testing.assert_allclose(got_v[..., 0], want_v, rtol=1e-12, atol=1e-12)


def _torch_conv(x, w, options):
    """torch's conv2d/conv3d on channels-last numpy arrays, F.pad for the modes."""
    n = w.ndim - 2
    xt = torch.from_numpy(np.moveaxis(x, -1, 1).copy())
    wt = torch.from_numpy(np.transpose(w, (n + 1, n, *range(n))).copy())
    if options["flip"]:
        wt = torch.flip(wt, dims=tuple(range(2, n + 2)))
    pads = [
        resolve(p, L, K, s, d)
        for p, L, K, s, d in zip(
            options["padding"],
            x.shape[1:-1],
            w.shape[:n],
            options["stride"],
            options["dilation"],
            strict=False,
        )
    ]
    flat = [v for lo_hi in reversed(pads) for v in lo_hi]  # F.pad: last axis first
    mode = options["padding_mode"]
    xt = F.pad(xt, flat) if mode == "zeros" else F.pad(xt, flat, mode=mode)
    f = F.conv2d if n == 2 else F.conv3d
    y = f(xt, wt, stride=options["stride"], dilation=options["dilation"], groups=options["groups"])
    return np.moveaxis(y.numpy(), 1, -1)


@settings(max_examples=12, deadline=None)
@given(configs(ndims=(2, 3)))
def test_torch_conv2d_and_conv3d_float64(config):
    x, w, options = config
    if options["padding_mode"] == "circular":
        # torch's circular F.pad wraps at most once: keep the widths within the input
        pads = [
            resolve(p, L, K, s, d)
            for p, L, K, s, d in zip(
                options["padding"],
                x.shape[1:-1],
                w.shape[:-2],
                options["stride"],
                options["dilation"],
                strict=False,
            )
        ]
        if any(max(p) > L for p, L in zip(pads, x.shape[1:-1], strict=True)):
            options = {**options, "padding_mode": "zeros"}
    got = conv(x, w, **options, precision=HIGHEST)
    np.testing.assert_allclose(got, _torch_conv(x, w, options), rtol=1e-12, atol=1e-12)


def test_lax_conv_general_dilated_3d_per_axis_options():
    rng = np.random.default_rng(4)
    x = rng.standard_normal((2, 6, 5, 7, 4))
    w = rng.standard_normal((2, 3, 1, 2, 6))
    pads = ((1, 0), (2, 2), (0, 3))
    got = conv(
        x, w, stride=(1, 2, 3), padding=pads, dilation=(2, 1, 1), groups=2, precision=HIGHEST
    )
    want = jax.lax.conv_general_dilated(
        x,
        w,
        (1, 2, 3),
        pads,
        rhs_dilation=(2, 1, 1),
        dimension_numbers=("NDHWC", "DHWIO", "NDHWC"),
        feature_group_count=2,
        precision=HIGHEST,
    )
    np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12)


def test_conv1d_is_conv_with_one_axis_and_a_bare_pair_keeps_its_meaning():
    rng = np.random.default_rng(5)
    x, w = rng.standard_normal((3, 10, 2)), rng.standard_normal((3, 2, 4))
    a = conv1d(x, w, padding=(2, 1), stride=2)
    np.testing.assert_array_equal(a, conv(x, w, padding=(2, 1), stride=2))
    np.testing.assert_array_equal(a, conv(x, w, padding=[(2, 1)], stride=(2,)))


def test_per_axis_padding_names_and_causal_in_2d():
    """A per-axis sequence may mix names, ints and pairs; "causal" in 2-D pads
    ``E-1`` before on every axis, so output ``(i, j)`` reads inputs ``<= (i, j)``."""
    x = np.zeros((4, 5, 1))
    x[2, 3, 0] = 1.0
    w = np.ones((2, 3, 1, 1))
    y = conv2d(x, w, padding="causal")[..., 0]
    want = np.zeros((4, 5), bool)
    want[2:4, 3:5] = True  # outputs (i, j) >= (2, 3) within reach of the impulse
    np.testing.assert_array_equal(y != 0, want)
    mixed = conv2d(x, w, padding=["same", (0, 2)])
    assert mixed.shape == (4, 5, 1)


def test_jit_vmap_grad_and_leading_batch_axes_in_2d():
    rng = np.random.default_rng(6)
    x = rng.standard_normal((2, 3, 6, 5, 2))
    w = rng.standard_normal((3, 2, 2, 3))
    f = functools.partial(conv2d, padding="same", precision=HIGHEST)
    y = f(x, w)
    assert y.shape == (2, 3, 6, 5, 3)
    np.testing.assert_allclose(jax.jit(f)(x, w), y, atol=1e-13)
    np.testing.assert_allclose(jax.vmap(f, (0, None))(x, w), y, atol=1e-13)
    loss = lambda w: jnp.sum(f(x, w) ** 2)  # noqa: E731
    gx = jax.grad(loss)(w)
    ref = jax.grad(lambda w: jnp.sum(f(x, w, algorithm="xla") ** 2))(w)
    np.testing.assert_allclose(gx, ref, rtol=1e-11, atol=1e-11)


@pytest.mark.parametrize("in_axes", [(None, 0), (0, 0)])
def test_vmap_over_filters_and_runs_in_2d(in_axes):
    """The primitive's batching rules for a batched filter (filters side by side) and
    for both batched (independent runs), with their gradients, against XLA."""
    rng = np.random.default_rng(7)
    x = rng.standard_normal((3, 2, 6, 5, 4))
    w = rng.standard_normal((3, 2, 3, 2, 6))
    xs = x if in_axes[0] == 0 else x[0]

    def loss(x, w, algorithm):
        y = conv2d(x, w, stride=(1, 2), padding="same", groups=2, algorithm=algorithm)
        return jnp.sum(jnp.sin(y))

    def run(algorithm):
        f = jax.vmap(jax.value_and_grad(loss, argnums=(0, 1)), (*in_axes, None))
        return jax.jit(f, static_argnums=2)(xs, w, algorithm)

    got, want = run("auto"), run("xla")
    for a, b in zip(jax.tree.leaves(got), jax.tree.leaves(want), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-11, atol=1e-11)


def test_nonfinite_stays_on_its_receptive_field_in_2d():
    x = np.ones((1, 6, 6, 1))
    x[0, 2, 3, 0] = np.nan
    w = np.ones((2, 2, 1, 1))
    want = np.isnan(
        reference_conv(
            x,
            w,
            stride=(1, 1),
            padding=("valid",) * 2,
            dilation=(1, 1),
            groups=1,
            flip=False,
            padding_mode="zeros",
        )
    )
    for algorithm in ("auto", "xla", "direct", "fft", "dense"):
        y = conv2d(x, w, algorithm=algorithm)
        np.testing.assert_array_equal(np.isnan(y), want, err_msg=algorithm)


# ---- errors ---------------------------------------------------------------------


X2, W2 = np.ones((5, 6, 2)), np.ones((3, 3, 2, 4))


@pytest.mark.parametrize(
    "call, exc, match",
    [
        (
            lambda: conv(np.ones((5, 2)), W2),
            ValueError,
            r"conv: `x` must have rank >= 3 \(layout \(\.\.\., \*spatial\[2\], Cin\)\), got rank 2",
        ),
        (
            lambda: conv2d(X2, np.ones((3, 2, 4))),
            ValueError,
            r"conv2d: `w` must have rank 4 \(layout \(KH, KW, Cin // groups, Cout\)\), got rank 3",
        ),
        (lambda: conv(X2, np.ones((2, 4))), ValueError, r"conv: `w` must have rank >= 3"),
        (
            lambda: conv2d(X2, W2, stride=(1, 2, 3)),
            ValueError,
            r"conv2d: `stride` must be an int or a sequence of 2 ints \(one per spatial axis\), "
            r"got \(1, 2, 3\) of length 3",
        ),
        (
            lambda: conv2d(X2, W2, dilation=[1]),
            ValueError,
            r"conv2d: `dilation` must be an int or a sequence of 2 ints .* got \[1\] of length 1",
        ),
        (
            lambda: conv2d(X2, W2, stride=(1, 0)),
            ValueError,
            r"conv2d: `stride\[1\]` must be an integer >= 1, got 0",
        ),
        (
            lambda: conv2d(X2, W2, stride=(1, 1.5)),
            TypeError,
            r"conv2d: `stride\[1\]` must be an integer, got 1\.5",
        ),
        (
            lambda: conv2d(X2, W2, padding=(1, 2, 3)),
            ValueError,
            r"conv2d: `padding` must be one of .* a sequence of 2 entries .* got \(1, 2, 3\)",
        ),
        (
            lambda: conv2d(X2, W2, padding=[(1, 2, 3), 0]),
            ValueError,
            r"conv2d: `padding\[0\]` must be a padding name, a non-negative int or a pair",
        ),
        (
            lambda: conv2d(X2, W2, padding=["same", "sam"]),
            ValueError,
            r"conv2d: `padding\[1\]` must be one of 'valid', .* got 'sam'",
        ),
        (
            lambda: conv2d(X2, W2, padding=[(0, -1), 0]),
            ValueError,
            r"conv2d: `padding\[0\]\[1\]` must be an integer >= 0, got -1",
        ),
        (
            lambda: conv2d(np.ones((5, 2, 2)), W2),
            ValueError,
            r"conv2d: the kernel is longer than the padded input along spatial axis 1, so the "
            r"output would be empty: .* = 3 \(K=3, dilation=1\) > padded input length 2",
        ),
        (
            lambda: conv2d(X2, W2, padding=(0, 6), padding_mode="reflect"),
            ValueError,
            r"conv2d: `padding_mode`='reflect' needs padding < input length 6 on each side along "
            r"spatial axis 1, got padding \(lo, hi\) = \(6, 6\)",
        ),
        (
            lambda: conv2d(X2, np.ones((3, 3, 3, 4))),
            ValueError,
            r"conv2d: channel mismatch: `x` has Cin=2 .*\(w\.shape\[2\]\)",
        ),
        (
            lambda: conv2d(np.ones((0, 6, 2)), W2),
            ValueError,
            r"conv2d: `x` must have a non-empty spatial and channel axis, got shape \(0, 6, 2\)",
        ),
        (
            lambda: conv2d(X2, W2, algorithm="dense", max_bytes=100),
            ValueError,
            r"conv2d: the dense matrix of algorithm=\"dense\" of shape \(48, 60\) in float64 "
            r"would need 23040 bytes",
        ),
        (
            lambda: conv2d(X2, W2, algorithm="matmul", max_bytes=100),
            ValueError,
            r"conv2d: the im2col patches of algorithm=\"matmul\" of shape \(1, 3, 4, 18\)",
        ),
    ],
)
def test_errors_name_the_argument_and_the_value(call, exc, match):
    with pytest.raises(exc, match=match):
        call()
    with pytest.raises(exc, match=match):  # also at trace time under jit
        jax.jit(call)()


def test_auto_rule_for_images_reads_spans_and_sizes_as_products():
    """The documented 2-D rule of ``algorithms.choose``: the 1-D rule with the span
    ``prod(dilation*(K-1)+1)`` and the size ``prod(Lp)``."""
    from convjax.algorithms import Choice, choose

    def pick(platform, length, cin, cout, K, groups=1, dilation=(1, 1)):
        return choose(
            platform,
            length=length,
            in_channels=cin,
            out_channels=cout,
            kernel_size=K,
            dilation=dilation,
            groups=groups,
        )

    assert pick("cpu", (28, 28), 1, 1, (3, 3)) == Choice("loop", "rules")  # span 9
    assert pick("cpu", (28, 28), 1, 1, (9, 9)) == Choice("fft", "rules")  # span 81 >= 32
    assert pick("cpu", (256, 256), 1, 1, (5, 5)) == Choice("loop", "rules")  # span 25
    assert pick("cpu", (256, 256), 1, 1, (7, 7)) == Choice("fft", "rules")  # span 49
    assert pick("cpu", (28, 28), 1, 1, (3, 3), dilation=(4, 4)) == Choice("fft", "rules")
    assert pick("cpu", (28, 28), 1, 16, (3, 3)) == Choice("direct", "rules")  # cig == 1
    assert pick("cpu", (28, 28), 16, 32, (3, 3)) == Choice("xla", "rules")  # CNN layer
    assert pick("gpu", (28, 28), 16, 32, (3, 3)) == Choice("xla", "xla")
    assert pick("gpu", (512, 512), 1, 1, (16, 16)) == Choice("fft", "fft")  # 2**18, span 256
