"""The exact algorithms behind :func:`convjax.conv1d` and the ``"auto"`` rule.

Every algorithm computes the same thing, a VALID cross-correlation of an input that
is already padded (or, for ``padding_mode="zeros"``, is padded by the algorithm
itself, see :class:`Spec`) with a filter that is already flipped:

    ``y[b, o, co] = sum_{k, a} xp[b, o*stride + k*dilation, h*cig + a] * w[k, a, co]``

for ``co`` in group ``h`` (``cig = Cin // groups``). Shapes: ``xp`` is
``(B, Lp, Cin)``, ``w`` is ``(K, Cin // groups, Cout)``, ``y`` is ``(B, Lout, Cout)``.

=============  ===================================================================
``"xla"``      ``lax.conv_general_dilated``.
``"direct"``   one shifted (strided) slice of the input per tap, times the tap's
               ``(Cin/g, Cout)`` block, summed: K matmuls (or, with one input
               channel per group, K elementwise multiply-adds, which XLA fuses into
               one loop over the output).
``"matmul"``   im2col: the K shifted slices side by side, ``(B*Lout, K*Cin/g)``,
               times the filter matrix ``(K*Cin/g, Cout)``: one matmul per group.
``"fft"``      real FFT. A circular correlation of length ``N >= Lp`` is exact on
               the valid outputs, so one FFT of the fast length (2^a 3^b 5^c)
               ``N >= Lp`` suffices; for long signals with a comparatively short
               filter, overlap-save blocks (the dual of overlap-add) of a
               power-of-two length chosen by an operation count. Strided outputs
               are computed at full rate and subsampled.
=============  ===================================================================

The ``"dense"`` reference (the Toeplitz matrix of :func:`convjax.conv_matrix` times
the input) lives in :mod:`convjax.conv` because it needs :mod:`convjax.tying`.

Gradients. :func:`conv_core` differentiates the named algorithm by plain autodiff
(a reference route). ``"auto"`` on CPU evaluates through the primitive of
:mod:`convjax.primitive`, whose JVP, transpose and batching rules keep every
derivative a forward convolution in the standard layout (fast inside compiled
loops); off CPU it is XLA's convolution and XLA's autodiff.

The ``"auto"`` rule (:func:`choose`) is a fixed, documented function of the backend
and the static shapes, calibrated once by ``benchmarks/bench_conv1d.py``; nothing is
timed at call time and nothing is cached, so it is safe under ``jit``.
"""

from __future__ import annotations

import dataclasses
import functools
import math

import jax
import jax.numpy as jnp

#: The algorithm names :func:`convjax.conv1d` accepts.
ALGORITHMS = ("auto", "xla", "direct", "fft", "matmul", "dense")

#: The algorithms implemented here (``"dense"`` is in :mod:`convjax.conv`).
CORE_ALGORITHMS = ("xla", "direct", "fft", "matmul")


@dataclasses.dataclass(frozen=True)
class Spec:
    """Static description of a valid cross-correlation (hashable, jit-static).

    Attributes:
      stride, dilation, groups: as in :func:`convjax.conv1d`.
      pad_lo, pad_hi: zeros the algorithm adds before / after the input (nonzero
        only for ``padding_mode="zeros"``; other modes are padded beforehand).
      out_length: ``Lout``.
    """

    stride: int
    dilation: int
    groups: int
    pad_lo: int
    pad_hi: int
    out_length: int


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


def _zero_pad(x, spec: Spec):
    if spec.pad_lo == 0 and spec.pad_hi == 0:
        return x
    return jnp.pad(x, ((0, 0), (spec.pad_lo, spec.pad_hi), (0, 0)))


def tap(xp, k: int, spec: Spec):
    """``(B, Lout, Cin)``: the input positions read by tap ``k``."""
    start = k * spec.dilation
    stop = start + (spec.out_length - 1) * spec.stride + 1
    return jax.lax.slice_in_dim(xp, start, stop, stride=spec.stride, axis=1)


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


# ---------------------------------------------------------------------------
# the algorithms: (x, w, spec, precision) -> y, shapes (B, L, Cin), (K, Cin/g, Cout)
# -> (B, Lout, Cout)


def conv_xla(x, w, spec: Spec, precision):
    """``lax.conv_general_dilated``."""
    return jax.lax.conv_general_dilated(
        x,
        w,
        window_strides=(spec.stride,),
        padding=[(spec.pad_lo, spec.pad_hi)],
        rhs_dilation=(spec.dilation,),
        dimension_numbers=("NWC", "WIO", "NWC"),
        feature_group_count=spec.groups,
        precision=precision,
    )


@_with_compute_dtype
def conv_direct(x, w, spec: Spec, precision):
    """Shifted multiply-adds (one input channel per group) or shifted matmuls."""
    xp = _zero_pad(x, spec)
    K, cig, cout = w.shape
    g = spec.groups
    cog = cout // g
    B, lout = xp.shape[0], spec.out_length
    y = None
    for k in range(K):
        xk = tap(xp, k, spec).reshape(B, lout, g, cig)
        wk = w[k].reshape(cig, g, cog)
        if cig == 1:
            term = xk * wk.reshape(1, 1, g, cog)
        elif g == 1:
            term = jnp.einsum("bla,ac->blc", xk[:, :, 0], wk[:, 0], precision=precision)
            term = term.reshape(B, lout, 1, cog)
        else:
            term = jnp.einsum("blga,agc->blgc", xk, wk, precision=precision)
        y = term if y is None else y + term
    assert y is not None  # K >= 1
    return y.reshape(B, lout, cout)


@_with_compute_dtype
def conv_matmul(x, w, spec: Spec, precision):
    """im2col: ``(B*Lout, K*Cin/g)`` patches times ``(K*Cin/g, Cout)``."""
    xp = _zero_pad(x, spec)
    K, cig, cout = w.shape
    g = spec.groups
    cog = cout // g
    B, lout = xp.shape[0], spec.out_length
    if g == 1:
        patches = jnp.concatenate([tap(xp, k, spec) for k in range(K)], axis=-1)
        return jnp.einsum("blk,kc->blc", patches, w.reshape(K * cig, cout), precision=precision)
    taps = [tap(xp, k, spec).reshape(B, lout, g, 1, cig) for k in range(K)]
    patches = jnp.concatenate(taps, axis=3)  # (B, Lout, g, K, cig)
    wg = w.reshape(K, cig, g, cog)
    y = jnp.einsum("blgka,kagc->blgc", patches, wg, precision=precision)
    return y.reshape(B, lout, cout)


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
    """``(N, M)``: FFT length and valid outputs per block for :func:`conv_fft`.

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
    """The narrowest unsigned type whose wrap-around differences count up to ``most``."""
    for dtype in (jnp.uint8, jnp.uint16):
        if most <= jnp.iinfo(dtype).max:
            return dtype
    return jnp.uint32


def reads_nonfinite(x, K: int, spec: Spec):
    """``(B, Lout, groups)`` bool: whether output ``o`` of group ``h`` reads a NaN or
    infinity of ``x`` (``(B, L, Cin)``) through any of its ``K`` taps, i.e. whether
    its receptive field holds one. Exact integer counts: without dilation a
    cumulative sum read at the window ends; with dilation the sum of the K taps.
    Linear in the input length.

    The counts are kept in the narrowest unsigned type that holds ``K`` (``uint8``
    for ``K <= 255``): a window count is at most ``K``, and the difference of two
    cumulative sums taken modulo ``2**bits`` equals the true count whenever the
    count is below ``2**bits``, so wrap-around is harmless. This keeps the mask's
    working memory a quarter of the input's (float32) or less, part of the memory
    bound of ``docs/speed.md``.
    """
    B, _, cin = x.shape
    g, d, s = spec.groups, spec.dilation, spec.stride
    cdt = _count_dtype(K)
    bad = jnp.any(~jnp.isfinite(x).reshape(B, -1, g, cin // g), axis=-1)
    bad = _zero_pad(bad.astype(cdt), spec)  # (B, Lp, g)
    lout = spec.out_length
    if d == 1:
        c = jnp.pad(jax.lax.cumsum(bad, axis=1), ((0, 0), (1, 0), (0, 0)))
        hi = jax.lax.slice_in_dim(c, K, K + (lout - 1) * s + 1, stride=s, axis=1)
        lo = jax.lax.slice_in_dim(c, 0, (lout - 1) * s + 1, stride=s, axis=1)
        return (hi - lo) != 0
    total = tap(bad, 0, spec)
    for k in range(1, K):
        total = total + tap(bad, k, spec)
    return total != 0


@_with_compute_dtype
def conv_fft(x, w, spec: Spec, precision):
    """Real FFT (one fast-length transform, or overlap-save blocks).

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
    """The FFT route for an input holding NaN or infinity: zeros in their place, NaN
    at the outputs whose receptive field holds one."""
    bad = reads_nonfinite(x, w.shape[0], spec)
    x = jnp.where(jnp.isfinite(x), x, jnp.zeros((), x.dtype))
    y = _fft_finite(x, w, spec, precision)
    B, lout, cout = y.shape
    bad = jnp.repeat(bad, cout // spec.groups, axis=-1)
    return jnp.where(bad, jnp.full((), jnp.nan, y.dtype), y)


def _fft_finite(x, w, spec: Spec, precision):
    """The FFT route proper, for finite ``x``."""
    xp = _zero_pad(x, spec)
    K, cig, cout = w.shape
    g, d = spec.groups, spec.dilation
    cog = cout // g
    B, lp = xp.shape[0], xp.shape[1]
    e = d * (K - 1) + 1
    lv = lp - e + 1  # valid outputs at stride 1
    # the dilated filter, (E, cig, Cout), zeros between taps
    h = jax.lax.pad(w, jnp.zeros((), w.dtype), [(0, 0, d - 1), (0, 0, 0), (0, 0, 0)])
    n, m = fft_plan(lp, e)
    if m == 0:
        frames = xp[:, None]  # (B, 1, Lp, Cin)
        m = lv
    else:
        nb = -(-lv // m)
        xpad = jnp.pad(xp, ((0, 0), (0, (nb + 1) * m - lp), (0, 0)))
        blocks = xpad.reshape(B, nb + 1, m, xp.shape[2])
        frames = jnp.concatenate([blocks[:, :nb], blocks[:, 1:, : e - 1]], axis=2)
    X = jnp.fft.rfft(frames, n=n, axis=2)  # (B, nb, F, Cin)
    H = jnp.conj(jnp.fft.rfft(h, n=n, axis=0))  # (F, cig, Cout)
    nb_, f = X.shape[1], X.shape[2]
    if cig == 1 and g == cout:  # depthwise / single channel: elementwise
        Y = X * H.reshape(1, 1, f, cout)
    elif g == 1:
        Y = jnp.einsum("bnfa,fac->bnfc", X, H, precision=precision)
    else:
        Y = jnp.einsum(
            "bnfga,fagc->bnfgc",
            X.reshape(B, nb_, f, g, cig),
            H.reshape(f, cig, g, cog),
            precision=precision,
        ).reshape(B, nb_, f, cout)
    y = jnp.fft.irfft(Y, n=n, axis=2)[:, :, :m]  # (B, nb, M, Cout)
    y = y.reshape(B, nb_ * m, cout)
    stop = (spec.out_length - 1) * spec.stride + 1
    return jax.lax.slice_in_dim(y, 0, stop, stride=spec.stride, axis=1)


IMPLS = {"xla": conv_xla, "direct": conv_direct, "matmul": conv_matmul, "fft": conv_fft}


def conv_core(x, w, spec: Spec, *, algorithm: str, precision=None):
    """Valid cross-correlation by a named algorithm, differentiated by plain autodiff
    of that algorithm (the loop-safe rules are in :mod:`convjax.primitive`).

    Args:
      x: ``(B, L, Cin)``, padded already unless ``spec.pad_lo/pad_hi`` say otherwise.
      w: ``(K, Cin // groups, Cout)``, already flipped for a true convolution.
      spec: the static :class:`Spec`.
      algorithm: one of :data:`CORE_ALGORITHMS`.
      precision: passed to every matmul / XLA convolution.

    Returns:
      ``(B, Lout, Cout)`` in the dtype of ``x``.
    """
    return IMPLS[algorithm](x, w, spec, precision)


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


#: The weight-gradient route of CNN layers (more than one input channel per group) on
#: CPU: ``"conv"`` (one forward convolution with the roles exchanged, see
#: :mod:`convjax.primitive`) or ``"taps"`` (one matmul per tap).
CNN_WEIGHT_GRADIENT = "conv"


def weight_gradient_route(kernel_size: int, cig: int, dilation: int) -> str:
    """How the loop-safe rules of :mod:`convjax.primitive` compute a weight gradient.

    ``"taps"``: one contraction per tap of the strided input slice with the cotangent
    (``K`` dot products for one channel pair; ``O(K * B * Lout * cig * cog)`` work,
    like the forward pass). ``"conv"``: one forward convolution with the roles of input
    and filter exchanged, whose ``Lout``-long "filter" makes its own ``"auto"`` choice
    (the FFT for one channel pair, ``O(L log L)`` whatever ``K``).

    Rule, with ``E = dilation * (K - 1) + 1``: one input channel per group
    (``cig == 1``: signals, depthwise and first layers) ``"taps"`` for ``E < 64``, else
    ``"conv"``; CNN layers (``cig > 1``) :data:`CNN_WEIGHT_GRADIENT`.

    Example:
      >>> weight_gradient_route(3, 1, 1), weight_gradient_route(255, 1, 1)
      ('taps', 'conv')
    """
    e = dilation * (kernel_size - 1) + 1
    if cig == 1:
        return "taps" if e < 64 else "conv"
    return CNN_WEIGHT_GRADIENT


def choose(
    platform: str,
    *,
    batch: int,
    length: int,
    in_channels: int,
    out_channels: int,
    kernel_size: int,
    dilation: int,
    groups: int,
) -> Choice:
    """The ``"auto"`` rule: which algorithms compute the forward pass and the gradients.

    A fixed function of static facts, calibrated by ``benchmarks/bench_conv1d.py``
    on a 2-core x86 CPU and kept conservative elsewhere (see ``docs/speed.md``).
    With ``E = dilation*(K-1)+1`` the effective kernel length and ``cig``, ``cog``
    the input and output channels per group:

    * not CPU (GPU, TPU): ``"xla"`` for the forward pass and the gradients (XLA's
      convolutions are the vendor libraries there), except one long single-channel
      signal (``Cin == Cout == 1``, ``L >= 2**17``) with a long filter
      (``E >= 128``): ``"fft"``.
    * CPU: the derivatives follow the rules of :mod:`convjax.primitive`
      (``gradient="rules"``); the forward algorithm, with ``cig``/``cog`` the
      channels per group: one channel pair per group (``cig == cog == 1``: a 1-D
      signal, a batch of them, a depthwise layer) ``"direct"`` (K fused
      multiply-adds) for ``E < 64``, ``"fft"`` for ``E >= 64``; one input channel
      per group and more outputs (``cig == 1``), ``E < 64``: ``"direct"``;
      otherwise (CNN layers) ``"xla"``.
    """
    e = dilation * (kernel_size - 1) + 1
    cig, cog = in_channels // groups, out_channels // groups
    if platform != "cpu":
        if in_channels == 1 and out_channels == 1 and e >= 128 and length >= 2**17:
            return Choice("fft", "fft")
        return Choice("xla", "xla")
    if cig == 1 and cog == 1:
        return Choice("fft" if e >= 64 else "direct", "rules")
    if cig == 1 and e < 64:
        return Choice("direct", "rules")
    return Choice("xla", "rules")
