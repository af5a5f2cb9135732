"""``conv1d``: the 1-D convolution layer op, channels-last, any batch axes."""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np

from convjax import _checks
from convjax import algorithms as _alg
from convjax import primitive as _primitive
from convjax.geometry import ConvOptions, Geometry, PaddingLike, conv_options
from convjax.tying import structure_from_options

ALGORITHMS = _alg.ALGORITHMS


def conv1d(
    x,
    w,
    *,
    stride=1,
    padding: PaddingLike = "valid",
    dilation=1,
    groups=1,
    flip: bool = False,
    padding_mode: str = "zeros",
    precision=None,
    algorithm: str = "auto",
    max_bytes: int | None = _checks.DEFAULT_MAX_BYTES,
):
    """1-D convolution layer: cross-correlation by default, true convolution with ``flip=True``.

    ``flip=False`` (default) computes CROSS-CORRELATION, what ``lax``, torch and flax
    call convolution: ``y[o, co] = sum_{k, c} xp[o*stride + k*dilation, c] * w[k, c, co]``.
    ``flip=True`` computes TRUE CONVOLUTION, the same with ``w[K-1-k]`` in place of
    ``w[k]``. ``xp`` is the input padded as ``padding`` and ``padding_mode`` say (see
    :mod:`convjax.geometry` for the table of paddings; ``"same"`` puts the odd extra
    zero of an even kernel at the end, ``"same_lower"`` at the start).

    With ``groups = g``, input channels and output channels are split into ``g``
    consecutive blocks and block ``j`` of the output sees only block ``j`` of the input.

    Args:
      x: input, shape ``(..., L, Cin)``: any number of leading batch axes, then
        length, then channels (one column per channel).
      w: filter, shape ``(K, Cin // groups, Cout)``.
      stride: int >= 1.
      padding: ``"valid"``, ``"same"``, ``"same_lower"``, ``"full"``, ``"causal"``,
        an int, or ``(lo, hi)``.
      dilation: int >= 1, spacing between taps.
      groups: int >= 1 dividing ``Cin`` and ``Cout``.
      flip: ``False`` for cross-correlation, ``True`` for convolution.
      padding_mode: ``"zeros"``, ``"circular"``, ``"reflect"`` or ``"replicate"``
        (torch's meanings).
      precision: passed to XLA (e.g. ``jax.lax.Precision.HIGHEST``).
      algorithm: ``"auto"`` (default: a documented rule of the backend and the
        static shapes, see :func:`convjax.algorithms.choose` and ``docs/speed.md``),
        ``"xla"`` (``lax.conv_general_dilated``), ``"direct"`` (one shifted
        multiply-add or matmul per tap), ``"fft"`` (real FFT of a fast length, or
        overlap-save blocks for long signals), ``"matmul"`` (im2col patches times
        the filter matrix) or ``"dense"`` (the matrix of
        :func:`convjax.conv_matrix` times the input; a reference). All support
        every option and are exact up to floating-point rounding. An explicit
        name is differentiated by plain autodiff of that algorithm; ``"auto"`` on
        CPU goes through the primitive of :mod:`convjax.primitive`, whose
        derivatives (of any order, forward and reverse, under ``vmap``) are again
        standard-layout forward convolutions, fast inside ``lax.scan`` loops.
      max_bytes: refuse (before allocating, with a ValueError) when the working
        array of ``"dense"`` (the ``(Lout*Cout, L*Cin)`` matrix) or ``"matmul"``
        (the ``(B, Lout, K*Cin)`` patches) would exceed this many bytes; ``None``
        for no limit. Default 1 GiB. The other algorithms need memory linear in
        the input, output and filter.

    Returns:
      ``(..., Lout, Cout)`` array in the promoted dtype of ``x`` and ``w``.

    Raises:
      ValueError: wrong rank, channel mismatch, bad option, empty output, reflect
        padding wider than the input.
      TypeError: complex or non-numeric dtype, non-integer size. Integer and bool
        inputs are promoted to jax's default float dtype.

    Example:
      >>> import jax.numpy as jnp
      >>> x = jnp.array([1., 2., 3., 4.]).reshape(4, 1)
      >>> w = jnp.array([5., 6., 7.]).reshape(3, 1, 1)
      >>> conv1d(x, w, flip=True, padding="full")[:, 0]
      Array([ 5., 16., 34., 52., 45., 28.], dtype=float32)
      >>> conv1d(x, w)[:, 0]  # cross-correlation, valid
      Array([38., 56.], dtype=float32)
    """
    opts = conv_options(
        stride=stride,
        padding=padding,
        dilation=dilation,
        groups=groups,
        flip=flip,
        padding_mode=padding_mode,
    )
    algorithm = _checks.check_choice("conv1d", "algorithm", algorithm, ALGORITHMS)
    precision = _checks.check_precision("conv1d", precision)
    x, w, geom = _prepare("conv1d", x, w, opts)
    batch = x.shape[:-2]
    cout = w.shape[-1]
    if 0 in batch:  # an empty batch gives an empty output, as in lax and torch
        return jnp.zeros((*batch, geom.out_length, cout), x.dtype)
    xb = x.reshape(-1, *x.shape[-2:])
    _check_working_memory(algorithm, xb, w, geom, max_bytes)
    if algorithm == "dense":
        y = _conv_dense(xb, w, opts, precision)
    else:
        y = _conv_fast(x, xb, w, geom, opts.groups, precision, algorithm)
    return y.reshape(*batch, *y.shape[-2:])


def _prepare(fn: str, x, w, opts: ConvOptions):
    """Checks ranks, channels and dtypes; returns promoted arrays and the geometry."""
    dtype = _checks.result_dtype(fn, x=x, w=w)
    _checks.check_min_ndim(fn, "x", x, 2, "(..., L, Cin)")
    _checks.check_ndim(fn, "w", w, 3, "(K, Cin // groups, Cout)")
    L, cin = np.shape(x)[-2:]
    K, cig, cout = np.shape(w)
    if cin % opts.groups:
        raise ValueError(
            f"{fn}: the input channels Cin={cin} (x.shape[-1]) must be divisible by "
            f"`groups`={opts.groups}."
        )
    if cig * opts.groups != cin:
        raise ValueError(
            f"{fn}: channel mismatch: `x` has Cin={cin} channels (x.shape[-1]) but `w` "
            f"expects Cin // groups = {cig} (w.shape[1]) with groups={opts.groups}, i.e. "
            f"Cin = {cig * opts.groups}."
        )
    if 0 in np.shape(x)[-2:]:
        raise ValueError(
            f"{fn}: `x` must have a non-empty length and channel axis, got shape "
            f"{tuple(np.shape(x))}."
        )
    if cout % opts.groups:
        raise ValueError(
            f"{fn}: the output channels Cout={cout} (w.shape[2]) must be divisible by "
            f"`groups`={opts.groups}."
        )
    if K < 1 or cout < 1:
        raise ValueError(f"{fn}: `w` must not be empty, got shape {tuple(np.shape(w))}.")
    geom = opts.geometry(L, K, fn=fn)
    return jnp.asarray(x, dtype), jnp.asarray(w, dtype), geom


def _check_working_memory(algorithm: str, xb, w, geom: Geometry, max_bytes) -> None:
    """The ``max_bytes`` guard of the routes whose size grows with ``L*L`` or ``K*L``."""
    B, L, cin = xb.shape
    K, _, cout = w.shape
    if algorithm == "dense":
        matrix = (geom.out_length * cout, L * cin)
        _checks.check_bytes(
            "conv1d",
            'the dense matrix of algorithm="dense"',
            matrix,
            w.dtype,
            max_bytes,
            "pass a larger max_bytes (or None) or another algorithm.",
        )
    elif algorithm == "matmul":
        patches = (B, geom.out_length, K * cin)
        dtype = _alg.compute_dtype(w.dtype)
        _checks.check_bytes(
            "conv1d",
            'the im2col patches of algorithm="matmul"',
            patches,
            dtype,
            max_bytes,
            "pass a larger max_bytes (or None) or another algorithm.",
        )


def pad_input(x, geom: Geometry):
    """Pads ``x`` of shape ``(..., L, C)`` along length as ``geom`` says:
    returns ``(..., L + pad_lo + pad_hi, C)``."""
    if geom.padding_mode == "zeros":
        cfg = [(0, 0)] * (x.ndim - 2) + [(geom.pad_lo, geom.pad_hi), (0, 0)]
        return jnp.pad(x, cfg)
    return jnp.take(x, jnp.asarray(geom.padded_source()), axis=-2)


def _conv_fast(x, xb, w, geom: Geometry, groups: int, precision, algorithm: str):
    """Pads (other than zeros), flips, picks the algorithm and runs it:
    ``(B, L, Cin)`` -> ``(B, Lout, Cout)``."""
    if geom.flip:
        w = w[::-1]
    if geom.padding_mode == "zeros":
        pads = (geom.pad_lo, geom.pad_hi)
    else:
        xb = pad_input(xb, geom)
        pads = (0, 0)
    spec = _alg.Spec(geom.stride, geom.dilation, groups, *pads, geom.out_length)
    if algorithm != "auto":
        return _alg.conv_core(xb, w, spec, algorithm=algorithm, precision=precision)
    choice = _alg.choose(
        _alg.platform_of(x),
        batch=xb.shape[0],
        length=geom.padded_length,
        in_channels=xb.shape[-1],
        out_channels=w.shape[-1],
        kernel_size=geom.kernel_size,
        dilation=geom.dilation,
        groups=groups,
    )
    if choice.gradient == "rules":
        return _primitive.conv(xb, w, spec, precision, algorithm=choice.forward)
    return _alg.conv_core(xb, w, spec, algorithm=choice.forward, precision=precision)


def _conv_dense(xb, w, opts: ConvOptions, precision):
    """``T(w) @ x`` per example. Non-finite inputs stay local as with XLA: the product
    runs on ``x`` with NaN/inf set to zero, and an output is NaN where the mask of
    ``T`` (its receptive field) reaches a non-finite input."""
    s = structure_from_options(opts, w.shape, xb.shape[-2])
    xf = xb.reshape(xb.shape[0], -1)
    finite = jnp.isfinite(xf)
    t = s.dense(w)
    y = jnp.einsum("rc,bc->br", t, jnp.where(finite, xf, 0), precision=precision)
    reach = jnp.einsum(
        "rc,bc->br", jnp.asarray(s.mask(), jnp.float32), (~finite).astype(jnp.float32)
    )
    y = jnp.where(reach > 0, jnp.full((), jnp.nan, y.dtype), y)
    return y.reshape(xb.shape[0], s.out_length, s.out_channels)
