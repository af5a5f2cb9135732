"""The exact algorithms behind :func:`convjax.conv` and the ``"auto"`` rule.

Every algorithm computes the same thing, a VALID cross-correlation over ``N >= 1``
spatial axes of an input that is already padded (or, for ``padding_mode="zeros"``,
is padded by the algorithm itself, see :class:`Spec`) with a filter that is already
flipped:

    ``y[b, o, co] = sum_{k, a} xp[b, o*stride + k*dilation, h*cig + a] * w[k, a, co]``

for ``co`` in group ``h`` (``cig = Cin // groups``), with ``o``, ``k``, ``stride``
and ``dilation`` per-axis tuples (the products taken axis by axis). Shapes: ``xp``
is ``(B, *Lp, Cin)``, ``w`` is ``(*K, Cin // groups, Cout)``, ``y`` is
``(B, *Lout, Cout)``.

=============  ===================================================================
``"xla"``      ``lax.conv_general_dilated``.
``"direct"``   one shifted (strided) slice of the input per kernel position, times
               that position's ``(Cin/g, Cout)`` block, summed: ``prod(K)``
               matmuls (or, with one input channel per group, elementwise
               multiply-adds, which XLA fuses into one loop over the output).
``"loop"``     XLA's convolution marked window-reversed in the HLO (the filter is
               flipped first, so the result is unchanged): XLA:CPU hands a
               convolution to Eigen only without window reversal, so this one is
               compiled into XLA's own loop nest, which is 4-90x faster than
               Eigen's for one input channel per group and runs at the same speed
               inside a ``while`` loop as outside (Eigen and the shifted
               multiply-adds of ``"direct"`` do not). Internal: ``"auto"`` picks it
               on CPU (:func:`choose`); not a name :func:`convjax.conv` accepts.
``"matmul"``   im2col: the ``prod(K)`` shifted slices side by side,
               ``(B*prod(Lout), prod(K)*Cin/g)``, times the filter matrix: one
               matmul per group.
``"fft"``      real FFT. A circular correlation of length ``N_a >= Lp_a`` on every
               axis is exact on the valid outputs, so one N-D transform of fast
               lengths (2^a 3^b 5^c) suffices; for long 1-D signals with a
               comparatively short filter, overlap-save blocks (the dual of
               overlap-add) of a power-of-two length chosen by an operation count.
               Strided outputs are computed at full rate and subsampled.
``"dense"``    the matrix ``T(w)`` of :func:`convjax.conv_matrix` times the
               flattened input (:func:`dense_matrix`, :func:`conv_dense`); a
               reference, quadratic in the number of positions.
=============  ===================================================================

Gradients. :func:`conv_core` differentiates the named algorithm by plain autodiff
(a reference route). ``"auto"`` on CPU evaluates through the primitive of
:mod:`convjax.primitive`, whose JVP, transpose and batching rules keep every
derivative a forward convolution in the standard layout (fast inside compiled
loops); off CPU it is XLA's convolution and XLA's autodiff.

The ``"auto"`` rule (:func:`choose`) is a fixed, documented function of the backend
and the static shapes, calibrated once by ``benchmarks/bench_conv1d.py`` for 1-D;
nothing is timed at call time and nothing is cached, so it is safe under ``jit``.
"""

from __future__ import annotations

import dataclasses
import functools
import itertools
import math

import jax
import jax.numpy as jnp
import numpy as np
from jax.extend.core import Primitive
from jax.extend.mlir.dialects import stablehlo
from jax.interpreters import mlir

#: The algorithm names :func:`convjax.conv` accepts.
ALGORITHMS = ("auto", "xla", "direct", "fft", "matmul", "dense")

#: The algorithms of a valid cross-correlation of a padded input (``"dense"`` works
#: on the unpadded input, through the geometry's tables).
CORE_ALGORITHMS = ("xla", "direct", "fft", "matmul")


@dataclasses.dataclass(frozen=True)
class Spec:
    """Static description of a valid cross-correlation (hashable, jit-static).

    Every field but ``groups`` is a tuple with one entry per spatial axis.

    Attributes:
      stride, dilation: as in :func:`convjax.conv`.
      groups: the channel group count.
      pads: ``((lo, hi), ...)``: zeros the algorithm adds before / after the input
        on each axis (nonzero only for ``padding_mode="zeros"``; other modes are
        padded beforehand).
      out_shape: ``(Lout1, ..., LoutN)``.
    """

    stride: tuple[int, ...]
    dilation: tuple[int, ...]
    groups: int
    pads: tuple[tuple[int, int], ...]
    out_shape: tuple[int, ...]

    @property
    def ndim(self) -> int:
        return len(self.out_shape)


@dataclasses.dataclass(frozen=True)
class Choice:
    """What ``"auto"`` picked: the forward algorithm and the derivative route.

    ``gradient`` is an algorithm name (plain autodiff of it) or ``"rules"``: the
    loop-safe rules of :mod:`convjax.primitive`, each derivative convolution again
    picked by this rule for its own shapes.
    """

    forward: str
    gradient: str


# ---------------------------------------------------------------------------
# helpers


def compute_dtype(dtype):
    """float16/bfloat16 are computed in float32 (as XLA accumulates them)."""
    return jnp.float32 if jnp.dtype(dtype).itemsize < 4 else dtype


def zero_pad(x, spec: Spec):
    """Pads the spatial axes of ``(B, *L, C)`` with the zeros of ``spec.pads`` (a
    negative edge crops, as in XLA's convolution)."""
    if not any(lo or hi for lo, hi in spec.pads):
        return x
    config = [(0, 0, 0), *((lo, hi, 0) for lo, hi in spec.pads), (0, 0, 0)]
    return jax.lax.pad(x, jnp.zeros((), x.dtype), config)


def tap(xp, k: tuple[int, ...], spec: Spec):
    """``(B, *Lout, C)``: the input positions read by kernel position ``k``."""
    start = [0] + [kk * d for kk, d in zip(k, spec.dilation, strict=True)] + [0]
    stop = (
        [xp.shape[0]]
        + [
            s0 + (lo - 1) * st + 1
            for s0, lo, st in zip(start[1:-1], spec.out_shape, spec.stride, strict=True)
        ]
        + [xp.shape[-1]]
    )
    return jax.lax.slice(xp, start, stop, (1, *spec.stride, 1))


def kernel_positions(kernel_shape):
    """Every kernel position, row-major."""
    return itertools.product(*(range(k) for k in kernel_shape))


def _with_compute_dtype(fn):
    """Runs ``fn(x, w, spec, precision)`` in float32 for half-precision inputs and
    casts the result back, so that every algorithm preserves the dtype."""

    @functools.wraps(fn)
    def wrapped(x, w, spec, precision):
        dtype = jnp.result_type(x, w)
        cdt = compute_dtype(dtype)
        y = fn(x.astype(cdt), w.astype(cdt), spec, precision)
        return y.astype(dtype)

    return wrapped


def dimension_numbers(ndim: int) -> jax.lax.ConvDimensionNumbers:
    """Channels-last dimension numbers of ``lax.conv_general_dilated`` for ``ndim``
    spatial axes: input and output ``(B, *spatial, C)``, filter ``(*K, Cin/g, Cout)``."""
    spatial = tuple(range(1, ndim + 1))
    return jax.lax.ConvDimensionNumbers(
        lhs_spec=(0, ndim + 1, *spatial),
        rhs_spec=(ndim + 1, ndim, *range(ndim)),
        out_spec=(0, ndim + 1, *spatial),
    )


# ---------------------------------------------------------------------------
# the algorithms: (x, w, spec, precision) -> y, shapes (B, *L, Cin),
# (*K, Cin/g, Cout) -> (B, *Lout, Cout)


def conv_xla(x, w, spec: Spec, precision):
    """``lax.conv_general_dilated``."""
    return jax.lax.conv_general_dilated(
        x,
        w,
        window_strides=spec.stride,
        padding=list(spec.pads),
        rhs_dilation=spec.dilation,
        dimension_numbers=dimension_numbers(spec.ndim),
        feature_group_count=spec.groups,
        precision=precision,
    )


@_with_compute_dtype
def conv_direct(x, w, spec: Spec, precision):
    """Shifted multiply-adds (one input channel per group) or shifted matmuls."""
    xp = zero_pad(x, spec)
    cig, cout = w.shape[-2:]
    g = spec.groups
    cog = cout // g
    lead = (xp.shape[0], *spec.out_shape)
    y = None
    for k in kernel_positions(w.shape[:-2]):
        xk = tap(xp, k, spec).reshape(*lead, g, cig)
        wk = w[k].reshape(cig, g, cog)
        if cig == 1:
            term = xk * wk.reshape(*(1,) * len(lead), g, cog)
        elif g == 1:
            term = jnp.einsum("...a,ac->...c", xk[..., 0, :], wk[:, 0], precision=precision)
            term = term.reshape(*lead, 1, cog)
        else:
            term = jnp.einsum("...ga,agc->...gc", xk, wk, precision=precision)
        y = term if y is None else y + term
    assert y is not None  # every kernel axis >= 1
    return y.reshape(*lead, cout)


# "loop": XLA's convolution as XLA:CPU's own loop nest. ``lax.conv_general_dilated``
# cannot mark the window reversed, so a primitive of its own emits the HLO; it only
# ever runs inside conv_p (convjax.primitive), whose rules differentiate and batch it.
_loop_conv_p = Primitive("convjax_loop_conv")


def _loop_abstract_eval(x, w, *, spec):
    return jax.core.ShapedArray((x.shape[0], *spec.out_shape, w.shape[-1]), x.dtype)


def _loop_lowering(ctx, x, w, *, spec: Spec):
    n = spec.ndim
    (out,) = ctx.avals_out
    spatial = list(range(1, n + 1))
    dims = stablehlo.ConvDimensionNumbers.get(
        input_batch_dimension=0,
        input_feature_dimension=n + 1,
        input_spatial_dimensions=spatial,
        kernel_input_feature_dimension=n,
        kernel_output_feature_dimension=n + 1,
        kernel_spatial_dimensions=list(range(n)),
        output_batch_dimension=0,
        output_feature_dimension=n + 1,
        output_spatial_dimensions=spatial,
    )
    result = stablehlo.convolution(
        mlir.ir.RankedTensorType.get(out.shape, mlir.dtype_to_ir_type(out.dtype)),
        x,
        w,
        dimension_numbers=dims,
        feature_group_count=mlir.i64_attr(spec.groups),
        batch_group_count=mlir.i64_attr(1),
        window_strides=mlir.dense_int_array(list(spec.stride)),
        padding=mlir.dense_int_elements(np.asarray(spec.pads, np.int64).reshape(n, 2)),
        lhs_dilation=mlir.dense_int_array([1] * n),
        rhs_dilation=mlir.dense_int_array(list(spec.dilation)),
        window_reversal=mlir.ir.DenseBoolArrayAttr.get([True] * n),
    )
    return [result]


_loop_conv_p.def_abstract_eval(_loop_abstract_eval)
_loop_conv_p.def_impl(
    jax.jit(lambda x, w, *, spec: _loop_conv_p.bind(x, w, spec=spec), static_argnames="spec")
)
mlir.register_lowering(_loop_conv_p, _loop_lowering)


@_with_compute_dtype
def conv_loop(x, w, spec: Spec, precision):
    """XLA's convolution with the filter flipped and the window marked reversed (the
    two flips cancel): XLA:CPU compiles it into its own loop nest rather than an
    Eigen call. ``precision`` is not passed to it (the loop nest computes in the
    compute dtype). A single output position is a dot product
    (:func:`_single_window`). No derivative or batching rules: it runs inside
    ``conv_p`` only."""
    if all(o == 1 for o in spec.out_shape):
        return _single_window(x, w, spec, precision)
    flipped = jnp.flip(w, tuple(range(spec.ndim)))
    return _loop_conv_p.bind(x, flipped, spec=spec)


def _single_window(x, w, spec: Spec, precision):
    """One output position on every axis: a dot product of the one window with the
    filter. (XLA's simplifier rewrites a window-reversed convolution whose window is
    the whole unpadded input, with one channel, into a product that drops the
    reversal: measured wrong on jax 0.10.2; this route never builds one.)"""
    n, (cig, cout) = spec.ndim, w.shape[-2:]
    window = tuple(d * (k - 1) + 1 for k, d in zip(w.shape[:-2], spec.dilation, strict=True))
    xp = zero_pad(x, spec)
    xw = jax.lax.slice(
        xp, (0,) * xp.ndim, (xp.shape[0], *window, xp.shape[-1]), (1, *spec.dilation, 1)
    )
    g = spec.groups
    xw = xw.reshape(xw.shape[0], -1, g, cig)  # (B, taps, g, cig)
    wg = w.reshape(-1, cig, g, cout // g)  # (taps, cig, g, cog)
    y = jnp.einsum("btga,tagc->bgc", xw, wg, precision=precision)
    return y.reshape(x.shape[0], *(1,) * n, cout)


@_with_compute_dtype
def conv_matmul(x, w, spec: Spec, precision):
    """im2col: ``(B*prod(Lout), prod(K)*Cin/g)`` patches times ``(prod(K)*Cin/g, Cout)``."""
    xp = zero_pad(x, spec)
    cig, cout = w.shape[-2:]
    T = math.prod(w.shape[:-2])
    g = spec.groups
    cog = cout // g
    lead = (xp.shape[0], *spec.out_shape)
    positions = list(kernel_positions(w.shape[:-2]))
    if g == 1:
        patches = jnp.concatenate([tap(xp, k, spec) for k in positions], axis=-1)
        return jnp.einsum("...k,kc->...c", patches, w.reshape(T * cig, cout), precision=precision)
    taps = [tap(xp, k, spec).reshape(*lead, g, 1, cig) for k in positions]
    patches = jnp.concatenate(taps, axis=-2)  # (B, *Lout, g, T, cig)
    wg = w.reshape(T, cig, g, cog)
    y = jnp.einsum("...gka,kagc->...gc", patches, wg, precision=precision)
    return y.reshape(*lead, cout)


def fast_length(n: int) -> int:
    """The smallest ``m >= n`` of the form ``2^a 3^b 5^c`` (a fast FFT length)."""
    n = max(int(n), 1)
    best = 1 << (n - 1).bit_length()
    p5 = 1
    while p5 < best:
        p35 = p5
        while p35 < best:
            m = p35
            while m < n:
                m *= 2
            best = min(best, m)
            p35 *= 3
        p5 *= 5
    return best


def fft_plan(padded_length: int, effective_kernel: int) -> tuple[int, int]:
    """``(N, M)``: FFT length and valid outputs per block for :func:`conv_fft` (1-D).

    ``M = 0`` means one FFT of the fast length ``N >= Lp`` over the whole signal;
    otherwise overlap-save blocks of length ``N`` (a power of two) each give
    ``M = N - E + 1`` outputs. The choice minimises ``blocks * N * log2(N)`` with the
    whole-signal FFT counted the same way, and needs ``E - 1 <= M``.
    """
    lp, e = int(padded_length), int(effective_kernel)
    n_whole = fast_length(lp)
    lv = lp - e + 1
    best = (n_whole * math.log2(max(n_whole, 2)), n_whole, 0)
    n = 1 << max((2 * e - 1).bit_length(), 6)
    while n < n_whole:
        m = n - e + 1
        if e - 1 <= m:
            blocks = -(-lv // m)
            # 1.15: a mild penalty for the framing copies and the extra batch axis.
            cost = 1.15 * blocks * n * math.log2(n)
            if cost < best[0]:
                best = (cost, n, m)
        n *= 2
    return best[1], best[2]


def _count_dtype(most: int):
    """The narrowest unsigned type whose wrap-around sums count up to ``most`` exactly."""
    for dtype in (jnp.uint8, jnp.uint16):
        if most <= jnp.iinfo(dtype).max:
            return dtype
    return jnp.uint32


def _window_count(c, axis: int, K: int, stride: int, dilation: int, out: int):
    """Along ``axis`` of the int array ``c``: for each of ``out`` strided outputs, the
    sum of ``c`` over its ``K`` dilated taps. Without dilation a cumulative sum read
    at the window ends; with dilation the sum of the K taps. Exact integers, also in
    a narrow unsigned type: sums and differences wrap modulo ``2**bits``, which leaves
    every window sum below ``2**bits`` exact (see :func:`reads_nonfinite`)."""
    if dilation == 1:
        pad = [(0, 0)] * c.ndim
        pad[axis] = (1, 0)
        cs = jnp.pad(jax.lax.cumsum(c, axis=axis), pad)
        hi = jax.lax.slice_in_dim(cs, K, K + (out - 1) * stride + 1, stride=stride, axis=axis)
        lo = jax.lax.slice_in_dim(cs, 0, (out - 1) * stride + 1, stride=stride, axis=axis)
        return hi - lo
    total = None
    for k in range(K):
        start = k * dilation
        term = jax.lax.slice_in_dim(c, start, start + (out - 1) * stride + 1, stride, axis=axis)
        total = term if total is None else total + term
    return total


def reads_nonfinite(x, kernel_shape, spec: Spec):
    """``(B, *Lout, groups)`` bool: whether output ``o`` of group ``h`` reads a NaN or
    infinity of ``x`` (``(B, *L, Cin)``) through any of its taps, i.e. whether its
    receptive field holds one. The tap set is a product of per-axis windows, so the
    count is a window sum along each spatial axis in turn: exact integer counts,
    linear in the input size.

    A count is at most the number of taps ``prod(kernel_shape)``, so it is kept in the
    narrowest unsigned type that holds that number (``uint8`` up to 255 taps): the
    cumulative sums wrap modulo ``2**bits`` but their differences, the window counts,
    are exact. The mask's working memory is then a quarter of a float32 input's or
    less (the memory bound of ``docs/speed.md``)."""
    cin = x.shape[-1]
    g = spec.groups
    bad = jnp.any(~jnp.isfinite(x).reshape(*x.shape[:-1], g, cin // g), axis=-1)
    count = zero_pad(bad.astype(_count_dtype(math.prod(_axes(kernel_shape)))), spec)
    for a, K in enumerate(_axes(kernel_shape)):
        count = _window_count(count, a + 1, K, spec.stride[a], spec.dilation[a], spec.out_shape[a])
    return count != 0


@_with_compute_dtype
def conv_fft(x, w, spec: Spec, precision):
    """Real FFT (one fast-length N-D transform, or overlap-save blocks in 1-D).

    Non-finite inputs stay local, as with XLA: the transform runs on ``x`` with its
    NaN/inf entries set to zero, and the outputs whose receptive field holds one are
    NaN (:func:`reads_nonfinite`; XLA may give ``+-inf`` there). A non-finite filter
    entry makes every output NaN, as every output reads every tap.
    """
    return jax.lax.cond(
        jnp.all(jnp.isfinite(x)),
        lambda x, w: _fft_finite(x, w, spec, precision),
        lambda x, w: _fft_masked(x, w, spec, precision),
        x,
        w,
    )


def _fft_masked(x, w, spec: Spec, precision):
    """The FFT route for an input holding NaN or infinity (the branch
    :func:`conv_fft` takes only then, so that a finite input pays for neither the
    mask nor the copy): zeros in their place, NaN at the outputs whose receptive
    field holds one."""
    bad = reads_nonfinite(x, w.shape[:-2], spec)
    x = jnp.where(jnp.isfinite(x), x, jnp.zeros((), x.dtype))
    y = _fft_finite(x, w, spec, precision)
    bad = jnp.repeat(bad, y.shape[-1] // spec.groups, axis=-1)
    return jnp.where(bad, jnp.full((), jnp.nan, y.dtype), y)


def _dilate(w, dilation):
    """The dilated filter ``(*E, cig, Cout)``: zeros between taps on every axis."""
    cfg = [(0, 0, d - 1) for d in dilation] + [(0, 0, 0), (0, 0, 0)]
    return jax.lax.pad(w, jnp.zeros((), w.dtype), cfg)


def _channel_mix(X, H, groups: int, precision):
    """Per frequency, ``(B, ..., Cin)`` spectra times ``(..., cig, Cout)`` filters."""
    cig, cout = H.shape[-2:]
    cin = X.shape[-1]
    if cig == 1 and groups == cout:  # depthwise / single channel: elementwise
        Hd = H[..., 0, :]
        return X * Hd.reshape((1,) * (X.ndim - Hd.ndim) + Hd.shape)
    if groups == 1:
        return jnp.einsum("b...a,...ac->b...c", X, H, precision=precision)
    Y = jnp.einsum(
        "b...ga,...agc->b...gc",
        X.reshape(*X.shape[:-1], groups, cin // groups),
        H.reshape(*H.shape[:-2], cig, groups, cout // groups),
        precision=precision,
    )
    return Y.reshape(*Y.shape[:-2], cout)


def _fft_finite(x, w, spec: Spec, precision):
    """The FFT route proper, for finite ``x``."""
    xp = zero_pad(x, spec)
    h = _dilate(w, spec.dilation)
    eff = h.shape[:-2]
    if spec.ndim == 1:
        n, m = fft_plan(xp.shape[1], eff[0])
        if m:
            return _overlap_save(xp, h, spec, n, m, precision)
    n_ax = spec.ndim
    axes = tuple(range(1, n_ax + 1))
    lengths = tuple(fast_length(lp) for lp in xp.shape[1:-1])
    X = jnp.fft.rfftn(xp, s=lengths, axes=axes)  # (B, *F, Cin)
    H = jnp.conj(jnp.fft.rfftn(h, s=lengths, axes=tuple(range(n_ax))))  # (*F, cig, Cout)
    y = jnp.fft.irfftn(_channel_mix(X, H, spec.groups, precision), s=lengths, axes=axes)
    stops = [(o - 1) * s + 1 for o, s in zip(spec.out_shape, spec.stride, strict=True)]
    return jax.lax.slice(y, [0] * y.ndim, [y.shape[0], *stops, y.shape[-1]], (1, *spec.stride, 1))


def _overlap_save(xp, h, spec: Spec, n: int, m: int, precision):
    """1-D overlap-save: blocks of length ``n`` each giving ``m`` valid outputs."""
    B, lp, cin = xp.shape
    e = h.shape[0]
    nb = -(-(lp - e + 1) // m)
    xpad = jnp.pad(xp, ((0, 0), (0, (nb + 1) * m - lp), (0, 0)))
    blocks = xpad.reshape(B, nb + 1, m, cin)
    frames = jnp.concatenate([blocks[:, :nb], blocks[:, 1:, : e - 1]], axis=2)
    X = jnp.fft.rfft(frames, n=n, axis=2)  # (B, nb, F, Cin)
    H = jnp.conj(jnp.fft.rfft(h, n=n, axis=0))  # (F, cig, Cout)
    y = jnp.fft.irfft(_channel_mix(X, H, spec.groups, precision), n=n, axis=2)[:, :, :m]
    y = y.reshape(B, nb * m, y.shape[-1])
    stop = (spec.out_shape[0] - 1) * spec.stride[0] + 1
    return jax.lax.slice_in_dim(y, 0, stop, stride=spec.stride[0], axis=1)


IMPLS = {
    "xla": conv_xla,
    "direct": conv_direct,
    "matmul": conv_matmul,
    "fft": conv_fft,
    "loop": conv_loop,
}

#: The algorithms the primitive of :mod:`convjax.primitive` evaluates: the core ones
#: and ``"loop"``, which only ``"auto"`` picks.
PRIMITIVE_ALGORITHMS = (*CORE_ALGORITHMS, "loop")


def conv_core(x, w, spec: Spec, *, algorithm: str, precision=None):
    """Valid cross-correlation by a named algorithm, differentiated by plain autodiff
    of that algorithm (the loop-safe rules are in :mod:`convjax.primitive`).

    Args:
      x: ``(B, *L, Cin)``, padded already unless ``spec.pads`` say otherwise.
      w: ``(*K, Cin // groups, Cout)``, already flipped for a true convolution.
      spec: the static :class:`Spec`.
      algorithm: one of :data:`CORE_ALGORITHMS`.
      precision: passed to every matmul / XLA convolution.

    Returns:
      ``(B, *Lout, Cout)`` in the dtype of ``x``.

    Example:
      >>> import jax.numpy as jnp
      >>> spec = Spec(stride=(1,), dilation=(1,), groups=1, pads=((0, 0),), out_shape=(2,))
      >>> x = jnp.array([1., 2., 3., 4.]).reshape(1, 4, 1)
      >>> w = jnp.array([5., 6., 7.]).reshape(3, 1, 1)
      >>> conv_core(x, w, spec, algorithm="direct")[0, :, 0]
      Array([38., 56.], dtype=float32)
    """
    return IMPLS[algorithm](x, w, spec, precision)


# ---------------------------------------------------------------------------
# the "dense" reference: the tap tables of a Geometry scattered into a matrix


def expand_groups(w, groups: int):
    """``(..., Cin//g, Cout)`` -> ``(..., Cout, Cin)``: the channel block of each tap,
    zeros between groups (block diagonal)."""
    cig, cout = w.shape[-2:]
    cog = cout // groups
    lead = w.shape[:-2]
    wg = w.reshape(*lead, cig, groups, cog)  # (..., a, h, b): out channel h*cog+b
    eye = jnp.eye(groups, dtype=w.dtype)
    full = jnp.einsum("...ahb,gh->...hbga", wg, eye)  # (..., h, b, g, a)
    return full.reshape(*lead, cout, cig * groups)


def incidences(geom) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The live taps of a :class:`~convjax.geometry.Geometry` as three int arrays
    ``(o, i, k)`` of equal length: flattened output position ``o`` reads flattened
    input position ``i`` through flattened kernel position ``k``."""
    src = geom.tap_sources()
    o, k = np.nonzero(src >= 0)
    return o, src[o, k], k


def scatter_blocks(geom, blocks):
    """``(n_incidences, Cout, Cin)`` blocks -> the dense ``(Nout*Cout, Nin*Cin)`` matrix,
    rows and columns row-major over (position, channel); blocks of one entry add."""
    o, i, _ = incidences(geom)
    cout, cin = blocks.shape[-2:]
    t = jnp.zeros((geom.out_size, geom.in_size, cout, cin), blocks.dtype)
    t = t.at[o, i].add(blocks)
    return t.transpose(0, 2, 1, 3).reshape(geom.out_size * cout, geom.in_size * cin)


def dense_matrix(w, geom, groups: int):
    """``T(w)``: ``(*K, Cin//g, Cout)`` -> ``(prod(Lout)*Cout, prod(L)*Cin)``, the
    matrix with ``T @ x.reshape(-1) == conv(x, w).reshape(-1)`` (``x`` of shape
    ``(*L, Cin)``, the padding mode and flip included)."""
    _, _, k = incidences(geom)
    per_tap = expand_groups(w.reshape(geom.n_taps, *w.shape[-2:]), groups)
    return scatter_blocks(geom, per_tap[k])


def conv_dense(x, w, geom, groups: int, precision):
    """``T(w) @ x`` per example, ``(B, *L, Cin)`` -> ``(B, *Lout, Cout)``.
    Non-finite inputs stay local as with XLA: the product runs on ``x`` with NaN/inf
    set to zero, and an output is NaN where the mask of ``T`` (its receptive field)
    reaches a non-finite input."""
    B, cin, cout = x.shape[0], x.shape[-1], w.shape[-1]
    xf = x.reshape(B, -1)
    finite = jnp.isfinite(xf)
    t = dense_matrix(w, geom, groups)
    y = jnp.einsum("rc,bc->br", t, jnp.where(finite, xf, 0), precision=precision)
    mask = geom.position_mask()[:, None, :, None] & channel_mask(cin, cout, groups)[None, :, None]
    mask = mask.reshape(t.shape)
    reach = jnp.einsum("rc,bc->br", jnp.asarray(mask, jnp.float32), (~finite).astype(jnp.float32))
    y = jnp.where(reach > 0, jnp.full((), jnp.nan, y.dtype), y)
    return y.reshape(B, *geom.out_shape, cout)


def channel_mask(cin: int, cout: int, groups: int) -> np.ndarray:
    """``(Cout, Cin)`` bool: which channel pairs are connected (block diagonal)."""
    co = np.arange(cout) // (cout // groups)
    ci = np.arange(cin) // (cin // groups)
    return co[:, None] == ci[None, :]


# ---------------------------------------------------------------------------
# the "auto" rule


def platform_of(x) -> str:
    """The platform (``"cpu"``, ``"gpu"``, ``"tpu"``) ``x`` lives on; under ``jit``
    (a tracer has no device) the default backend."""
    try:
        devices = x.devices()
    except (AttributeError, jax.errors.ConcretizationTypeError):
        devices = None
    if devices:
        platform = next(iter(devices)).platform
    else:
        platform = jax.default_backend()
    return "gpu" if platform in ("cuda", "rocm", "gpu") else platform


def _axes(v) -> tuple[int, ...]:
    return (int(v),) if isinstance(v, (int, np.integer)) else tuple(int(a) for a in v)


#: Most kernel positions for which the weight gradient of a layer with one input channel
#: per group is taken by taps: XLA:CPU materialises the strided input slice of every
#: position before its reduction, so the working memory is that many copies of the
#: input (measured: 2.5x (input+output+filter) at 3 taps, 16.5x at 31), and the
#: forward+backward peak must stay within 4x.
MAX_TAPS = 4

#: The weight-gradient route of CNN layers (more than one input channel per group) on
#: CPU: ``"conv"`` (one forward convolution with the roles exchanged, see
#: :mod:`convjax.primitive`) or ``"taps"`` (one matmul per kernel position).
CNN_WEIGHT_GRADIENT = "conv"


def weight_gradient_route(kernel_shape, cig: int, dilation, *, cog: int, batch: int) -> str:
    """How the loop-safe rules of :mod:`convjax.primitive` compute a weight gradient.

    ``"loop"``: the forward convolution with the roles of input and filter exchanged
    (input channels as the batch, the batch as channels, the cotangent as a
    ``Lout``-long filter), evaluated by the ``"loop"`` algorithm: one input and one
    output channel per group there, the case XLA:CPU's loop nest is fast at (one
    dot product per kernel position, read in place; ``O(taps * prod(Lout))`` work).
    ``"taps"``: one contraction per kernel position of the strided input slice with
    the cotangent (a fused multiply-and-sum per channel pair for one channel; ``O(taps
    * B * prod(Lout) * cig * cog)`` work, like the forward pass). ``"conv"``: the
    swapped-roles convolution with its own ``"auto"`` choice (the FFT for a long
    "filter", ``O(L log L)`` whatever the kernel).

    Rule: a single example (``batch == 1``) with one channel pair per group (``cig ==
    cog == 1``: a signal, an image) ``"loop"``; else one input channel per group
    (``cig == 1``: batches of signals, depthwise and first layers) ``"taps"`` for at
    most :data:`MAX_TAPS` kernel positions (the working memory is one input copy per
    position), else ``"conv"``; CNN layers (``cig > 1``) :data:`CNN_WEIGHT_GRADIENT`.
    Measured (``benchmarks/loop_route_trial.py``): for one signal of 1e5 samples and
    3 taps, ``"loop"`` 4.4x faster than ``"taps"`` and 16x faster than the FFT; for 8
    signals with 7 taps the FFT 1.6x faster than ``"loop"`` (whose loop then runs over
    the batch as channels).

    Example:
      >>> weight_gradient_route(31, 1, 1, cog=1, batch=1)  # one signal
      'loop'
      >>> [weight_gradient_route(k, 1, 1, cog=1, batch=8) for k in (3, 31)]  # 8 signals
      ['taps', 'conv']
      >>> [weight_gradient_route(k, 1, (1, 1), cog=16, batch=1) for k in ((2, 2), (3, 3))]
      ['taps', 'conv']
    """
    ks = _axes(kernel_shape)
    del dilation  # the work of either route does not depend on it
    if cig == 1 and cog == 1 and batch == 1:
        return "loop"
    if cig == 1:
        return "taps" if math.prod(ks) <= MAX_TAPS else "conv"
    return CNN_WEIGHT_GRADIENT


def loop_beats_fft(ndim: int, span: int, size: int) -> bool:
    """Whether the ``"loop"`` algorithm is the CPU pick over ``"fft"`` for one channel
    pair per group, from the number of spatial axes, the span ``E`` (product of the
    dilated kernel extents) and the padded size ``P`` (product over the axes).

    1-D: ``E < 96``, or ``E < 512`` with ``P < 2**15`` (the loop nest's work grows
    with ``P*E``, the FFT's with ``P log P`` plus a fixed cost that dominates short
    signals). Measured (``benchmarks/loop_route_trial.py``, output in
    ``docs/measurements/loop_route_trial.json``), one signal, loop / FFT time at top
    level: ``E = 63`` 0.86x at ``L = 1e5``, ``E = 127`` 1.23x at ``L = 1e5`` but 0.50x
    at ``L = 1e4``, ``E = 255`` 2.07x at ``L = 1e5`` and 0.66x at ``L = 1e4``. N-D
    (``ndim >= 2``): ``E < 32``, as the loop nest over a 2-D window runs about 4x
    slower per multiply-add than in 1-D (a 7x7 kernel on a 256x256 image: 0.91 ms,
    against 0.65 ms by the FFT; 5x5: 0.10 ms against 0.65 ms).

    Example:
      >>> loop_beats_fft(1, 31, 10**6), loop_beats_fft(1, 255, 10**4)
      (True, True)
      >>> loop_beats_fft(1, 255, 10**5), loop_beats_fft(2, 49, 256 * 256)
      (False, False)
    """
    if ndim == 1:
        return span < 96 or (span < 512 and size < 2**15)
    return span < 32


def choose(
    platform: str,
    *,
    length,
    in_channels: int,
    out_channels: int,
    kernel_size,
    dilation,
    groups: int,
) -> Choice:
    """The ``"auto"`` rule: which algorithms compute the forward pass and the gradients.

    A fixed function of static facts, calibrated for 1-D by
    ``benchmarks/bench_conv1d.py`` on a 2-core x86 CPU and kept conservative
    elsewhere (see ``docs/speed.md``). ``length``, ``kernel_size`` and ``dilation``
    are ints (1-D) or per-axis tuples (the padded input shape, the kernel shape,
    the dilations). With ``E = prod(dilation*(K-1)+1)`` the number of positions
    the dilated kernel spans (the effective kernel length in 1-D), ``P =
    prod(length)`` and ``cig``, ``cog`` the input and output channels per group:

    * not CPU (GPU, TPU): ``"xla"`` for the forward pass and the gradients (XLA's
      convolutions are the vendor libraries there), except one long single-channel
      signal (``Cin == Cout == 1``, ``P >= 2**17``) with a long filter
      (``E >= 128``): ``"fft"``.
    * CPU: the derivatives follow the rules of :mod:`convjax.primitive`
      (``gradient="rules"``); the forward algorithm: one channel pair per group
      (``cig == cog == 1``: a signal or image, a batch of them, a depthwise
      layer) ``"loop"`` (XLA:CPU's loop nest; as fast inside ``lax.scan`` as
      outside) when :func:`loop_beats_fft`, else ``"fft"``; one input channel per
      group and more outputs (``cig == 1``), ``E < 64``: ``"direct"``; otherwise
      (CNN layers) ``"xla"``.

    The same rule serves every rank, with spans and sizes read as products; only the
    loop nest's reach differs by rank (:func:`loop_beats_fft`).
    ``benchmarks/bench_conv1d.py`` and ``benchmarks/bench_conv2d.py`` measure it
    (``docs/speed.md``).

    Example:
      >>> choose("cpu", length=10**5, in_channels=1, out_channels=1, kernel_size=31,
      ...        dilation=1, groups=1)
      Choice(forward='loop', gradient='rules')
      >>> choose("cpu", length=(64, 64), in_channels=16, out_channels=32,
      ...        kernel_size=(3, 3), dilation=(1, 1), groups=1)
      Choice(forward='xla', gradient='rules')
    """
    ks, ds, ls = _axes(kernel_size), _axes(dilation), _axes(length)
    e = math.prod(d * (k - 1) + 1 for k, d in zip(ks, ds, strict=True))
    size = math.prod(ls)
    cig, cog = in_channels // groups, out_channels // groups
    if platform != "cpu":
        if in_channels == 1 and out_channels == 1 and e >= 128 and size >= 2**17:
            return Choice("fft", "fft")
        return Choice("xla", "xla")
    if cig == 1 and cog == 1:
        return Choice("loop" if loop_beats_fft(len(ks), e, size) else "fft", "rules")
    if cig == 1 and e < 64:
        return Choice("direct", "rules")
    return Choice("xla", "rules")
