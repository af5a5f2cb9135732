"""The convolution layer op: ``conv`` over ``N`` spatial axes, ``conv1d`` and ``conv2d``.

Channels last, any leading batch axes: ``x`` is ``(..., *spatial, Cin)``, ``w`` is
``(*kernel, Cin // groups, Cout)`` and fixes ``N`` (its rank minus 2). The index
arithmetic (padding, stride, dilation, flip, per axis) is :mod:`convjax.geometry`;
the algorithms are :mod:`convjax.algorithms`; the derivative rules of ``"auto"`` on
CPU are :mod:`convjax.primitive`.
"""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np

from convjax import _checks
from convjax import algorithms as _alg
from convjax import primitive as _primitive
from convjax.geometry import ConvOptions, Geometry, PaddingLike, conv_options

ALGORITHMS = _alg.ALGORITHMS


def conv(
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
    """Convolution layer over ``N`` spatial axes: cross-correlation by default, true
    convolution with ``flip=True``.

    ``flip=False`` (default) computes CROSS-CORRELATION, what ``lax``, torch and flax
    call convolution: with multi-indices ``o`` (output position), ``k`` (kernel
    position) and per-axis products,
    ``y[o, co] = sum_{k, c} xp[o*stride + k*dilation, c] * w[k, c, co]``.
    ``flip=True`` computes TRUE CONVOLUTION: the same with ``w`` reversed along every
    spatial axis. ``xp`` is the input padded as ``padding`` and ``padding_mode`` say,
    axis by axis (see :mod:`convjax.geometry`; ``"same"`` puts the odd extra zero of
    an even kernel at the end, ``"same_lower"`` at the start).

    With ``groups = g``, input channels and output channels are split into ``g``
    consecutive blocks and block ``j`` of the output sees only block ``j`` of the input.

    Args:
      x: input, shape ``(..., *spatial, Cin)``: any number of leading batch axes,
        then the ``N`` spatial axes, then channels.
      w: filter, shape ``(*kernel, Cin // groups, Cout)``; ``N = w.ndim - 2 >= 1``.
      stride: int >= 1, or one per spatial axis.
      padding: ``"valid"``, ``"same"``, ``"same_lower"``, ``"full"``, ``"causal"``
        (for every axis), an int (every axis), or a sequence of ``N`` entries, each a
        name, an int or a pair ``(lo, hi)``; for ``N = 1`` a bare ``(lo, hi)``.
      dilation: int >= 1, or one per spatial axis: spacing between taps.
      groups: int >= 1 dividing ``Cin`` and ``Cout``.
      flip: ``False`` for cross-correlation, ``True`` for convolution (every axis).
      padding_mode: ``"zeros"``, ``"circular"``, ``"reflect"`` or ``"replicate"``
        (torch's meanings), on every axis.
      precision: passed to XLA (e.g. ``jax.lax.Precision.HIGHEST``).
      algorithm: ``"auto"`` (default: a documented rule of the backend and the
        static shapes, see :func:`convjax.algorithms.choose` and ``docs/speed.md``),
        ``"xla"`` (``lax.conv_general_dilated``), ``"direct"`` (one shifted
        multiply-add or matmul per kernel position), ``"fft"`` (N-D real FFT of fast
        lengths; overlap-save blocks for long 1-D signals), ``"matmul"`` (im2col
        patches times the filter matrix) or ``"dense"`` (the matrix of
        :func:`convjax.conv_matrix` times the flattened input; a reference). All
        support every option and are exact up to floating-point rounding. An
        explicit name is differentiated by plain autodiff of that algorithm;
        ``"auto"`` on CPU goes through the primitive of :mod:`convjax.primitive`,
        whose derivatives (of any order, forward and reverse, under ``vmap``) are
        again standard-layout forward convolutions, fast inside ``lax.scan`` loops.
      max_bytes: refuse (before allocating, with a ValueError) when the working
        array of ``"dense"`` (the ``(prod(Lout)*Cout, prod(L)*Cin)`` matrix) or
        ``"matmul"`` (the ``(B, *Lout, prod(K)*Cin)`` patches) would exceed this
        many bytes; ``None`` for no limit. Default 1 GiB. The other algorithms need
        memory linear in the input, output and filter.

    Returns:
      ``(..., *Lout, Cout)`` array in the promoted dtype of ``x`` and ``w``.

    Raises:
      ValueError: wrong rank (of ``w``, of ``x`` for the rank of ``w``), a per-axis
        option of the wrong length, channel mismatch, bad option, empty output,
        reflect padding wider than the input.
      TypeError: complex or non-numeric dtype, non-integer size. Integer and bool
        inputs are promoted to jax's default float dtype.

    Example:
      >>> import jax.numpy as jnp
      >>> x = jnp.arange(16.).reshape(4, 4, 1)                  # a 4x4 image
      >>> w = jnp.array([[1., 0.], [0., -1.]]).reshape(2, 2, 1, 1)
      >>> conv(x, w)[..., 0]                                    # x[i, j] - x[i+1, j+1]
      Array([[-5., -5., -5.],
             [-5., -5., -5.],
             [-5., -5., -5.]], dtype=float32)
      >>> conv(x, w, stride=(1, 2), padding=[(0, 0), (1, 0)]).shape
      (3, 2, 1)
    """
    n = _rank_of_w("conv", w, None, "(*kernel, Cin // groups, Cout)")
    opts = conv_options(
        stride=stride,
        padding=padding,
        dilation=dilation,
        groups=groups,
        flip=flip,
        padding_mode=padding_mode,
        ndim=n,
        fn="conv",
    )
    return _conv("conv", x, w, opts, precision, algorithm, max_bytes)


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
    """1-D convolution layer: :func:`conv` with one spatial axis.

    ``flip=False`` (default) computes CROSS-CORRELATION, what ``lax``, torch and flax
    call convolution: ``y[o, co] = sum_{k, c} xp[o*stride + k*dilation, c] * w[k, c, co]``.
    ``flip=True`` computes TRUE CONVOLUTION, the same with ``w[K-1-k]`` in place of
    ``w[k]``.

    Args:
      x: input, shape ``(..., L, Cin)``: any number of leading batch axes, then
        length, then channels (one column per channel).
      w: filter, shape ``(K, Cin // groups, Cout)``.
      stride, dilation: int >= 1.
      padding: ``"valid"``, ``"same"``, ``"same_lower"``, ``"full"``, ``"causal"``,
        an int, or ``(lo, hi)``.
      groups, flip, padding_mode, precision, algorithm, max_bytes: as in
        :func:`conv`.

    Returns:
      ``(..., Lout, Cout)`` array in the promoted dtype of ``x`` and ``w``.

    Raises:
      ValueError: wrong rank, channel mismatch, bad option, empty output, reflect
        padding wider than the input.
      TypeError: complex or non-numeric dtype, non-integer size.

    Example:
      >>> import jax.numpy as jnp
      >>> x = jnp.array([1., 2., 3., 4.]).reshape(4, 1)
      >>> w = jnp.array([5., 6., 7.]).reshape(3, 1, 1)
      >>> conv1d(x, w, flip=True, padding="full")[:, 0]
      Array([ 5., 16., 34., 52., 45., 28.], dtype=float32)
      >>> conv1d(x, w)[:, 0]  # cross-correlation, valid
      Array([38., 56.], dtype=float32)
    """
    n = _rank_of_w("conv1d", w, 1, "(K, Cin // groups, Cout)")
    opts = conv_options(
        stride=stride,
        padding=padding,
        dilation=dilation,
        groups=groups,
        flip=flip,
        padding_mode=padding_mode,
        ndim=n,
        fn="conv1d",
    )
    return _conv("conv1d", x, w, opts, precision, algorithm, max_bytes)


def conv2d(
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
    """2-D convolution layer (images): :func:`conv` with two spatial axes.

    ``y[i, j, co] = sum_{ki, kj, c} xp[i*sh + ki*dh, j*sw + kj*dw, c] * w[ki, kj, c, co]``
    (cross-correlation, ``flip=False``); ``flip=True`` uses ``w[KH-1-ki, KW-1-kj]``.

    Args:
      x: input, shape ``(..., H, W, Cin)`` (NHWC with any leading batch axes).
      w: filter, shape ``(KH, KW, Cin // groups, Cout)`` (HWIO).
      stride, dilation: an int or a pair (one per axis).
      padding: a name, an int, or two entries (rows, columns), each a name, an int
        or a pair ``(lo, hi)``.
      groups, flip, padding_mode, precision, algorithm, max_bytes: as in
        :func:`conv`.

    Returns:
      ``(..., Hout, Wout, Cout)`` array in the promoted dtype of ``x`` and ``w``.

    Raises:
      ValueError, TypeError: as :func:`conv`; ``w`` must have rank 4.

    Example:
      >>> import jax.numpy as jnp
      >>> x = jnp.ones((5, 5, 1))
      >>> w = jnp.ones((3, 3, 1, 2))
      >>> conv2d(x, w, padding="same")[..., 0]
      Array([[4., 6., 6., 6., 4.],
             [6., 9., 9., 9., 6.],
             [6., 9., 9., 9., 6.],
             [6., 9., 9., 9., 6.],
             [4., 6., 6., 6., 4.]], dtype=float32)
    """
    n = _rank_of_w("conv2d", w, 2, "(KH, KW, Cin // groups, Cout)")
    opts = conv_options(
        stride=stride,
        padding=padding,
        dilation=dilation,
        groups=groups,
        flip=flip,
        padding_mode=padding_mode,
        ndim=n,
        fn="conv2d",
    )
    return _conv("conv2d", x, w, opts, precision, algorithm, max_bytes)


def _rank_of_w(fn: str, w, ndim: int | None, layout: str) -> int:
    """``N``: the number of spatial axes ``w`` fixes (checked against ``ndim``)."""
    if ndim is not None:
        _checks.check_ndim(fn, "w", w, ndim + 2, layout)
        return ndim
    _checks.check_min_ndim(fn, "w", w, 3, layout)
    return np.ndim(w) - 2


def _conv(fn: str, x, w, opts: ConvOptions, precision, algorithm: str, max_bytes):
    """The shared body of :func:`conv`, :func:`conv1d` and :func:`conv2d`."""
    n = opts.ndim
    algorithm = _checks.check_choice(fn, "algorithm", algorithm, ALGORITHMS)
    precision = _checks.check_precision(fn, precision)
    x, w, geom = prepare(fn, x, w, opts)
    batch = x.shape[: -n - 1]
    cout = w.shape[-1]
    if 0 in batch:  # an empty batch gives an empty output, as in lax and torch
        return jnp.zeros((*batch, *geom.out_shape, cout), x.dtype)
    xb = x.reshape(-1, *x.shape[-n - 1 :])
    _check_working_memory(fn, algorithm, xb, w, geom, max_bytes)
    if algorithm == "dense":
        y = _alg.conv_dense(xb, w, geom, opts.groups, precision)
    else:
        y = _conv_fast(x, xb, w, geom, opts.groups, precision, algorithm)
    return y.reshape(*batch, *y.shape[1:])


def _layout(n: int, what: str) -> str:
    if n == 1:
        return "(..., L, Cin)" if what == "x" else "(K, Cin // groups, Cout)"
    return f"(..., *spatial[{n}], Cin)"


def prepare(fn: str, x, w, opts: ConvOptions):
    """Checks ranks, channels and dtypes; returns promoted arrays and the geometry.

    ``w`` has rank ``opts.ndim + 2`` (checked by the caller); ``x`` needs at least
    ``opts.ndim + 1`` axes."""
    n = opts.ndim
    dtype = _checks.result_dtype(fn, x=x, w=w)
    _checks.check_min_ndim(fn, "x", x, n + 1, _layout(n, "x"))
    spatial, cin = np.shape(x)[-n - 1 : -1], np.shape(x)[-1]
    ks, (cig, cout) = np.shape(w)[:-2], np.shape(w)[-2:]
    if cin % opts.groups:
        raise ValueError(
            f"{fn}: the input channels Cin={cin} (x.shape[-1]) must be divisible by "
            f"`groups`={opts.groups}."
        )
    if cig * opts.groups != cin:
        raise ValueError(
            f"{fn}: channel mismatch: `x` has Cin={cin} channels (x.shape[-1]) but `w` "
            f"expects Cin // groups = {cig} (w.shape[{n}]) with groups={opts.groups}, i.e. "
            f"Cin = {cig * opts.groups}."
        )
    if 0 in np.shape(x)[-n - 1 :]:
        what = "length" if n == 1 else "spatial"
        raise ValueError(
            f"{fn}: `x` must have a non-empty {what} and channel axis, got shape "
            f"{tuple(np.shape(x))}."
        )
    if cout % opts.groups:
        raise ValueError(
            f"{fn}: the output channels Cout={cout} (w.shape[{n + 1}]) must be divisible by "
            f"`groups`={opts.groups}."
        )
    if min(ks) < 1 or cout < 1:
        raise ValueError(f"{fn}: `w` must not be empty, got shape {tuple(np.shape(w))}.")
    geom = opts.geometry(tuple(spatial), tuple(ks), fn=fn)
    return jnp.asarray(x, dtype), jnp.asarray(w, dtype), geom


def _check_working_memory(fn: str, algorithm: str, xb, w, geom: Geometry, max_bytes) -> None:
    """The ``max_bytes`` guard of the routes whose size grows with ``L*L`` or ``K*L``."""
    cin, cout = xb.shape[-1], w.shape[-1]
    hint = "pass a larger max_bytes (or None) or another algorithm."
    if algorithm == "dense":
        matrix = (geom.out_size * cout, geom.in_size * cin)
        what = 'the dense matrix of algorithm="dense"'
        _checks.check_bytes(fn, what, matrix, w.dtype, max_bytes, hint)
    elif algorithm == "matmul":
        patches = (xb.shape[0], *geom.out_shape, geom.n_taps * cin)
        what = 'the im2col patches of algorithm="matmul"'
        _checks.check_bytes(fn, what, patches, _alg.compute_dtype(w.dtype), max_bytes, hint)


def pad_input(x, geom: Geometry):
    """Pads ``x`` of shape ``(..., *L, C)`` along its spatial axes as ``geom`` says:
    returns ``(..., *(L + lo + hi), C)``. Axis by axis for the non-zero modes."""
    n = geom.ndim
    if geom.padding_mode == "zeros":
        cfg = [(0, 0)] * (x.ndim - n - 1) + list(geom.pads) + [(0, 0)]
        return jnp.pad(x, cfg)
    for a in range(n):
        x = jnp.take(x, jnp.asarray(geom.padded_source_axis(a)), axis=x.ndim - n - 1 + a)
    return x


def _conv_fast(x, xb, w, geom: Geometry, groups: int, precision, algorithm: str):
    """Pads (other than zeros), flips, picks the algorithm and runs it:
    ``(B, *L, Cin)`` -> ``(B, *Lout, Cout)``."""
    n = geom.ndim
    if geom.flip:
        w = w[(slice(None, None, -1),) * n]
    if geom.padding_mode == "zeros":
        pads = geom.pads
    else:
        xb = pad_input(xb, geom)
        pads = ((0, 0),) * n
    spec = _alg.Spec(geom.stride, geom.dilation, groups, pads, geom.out_shape)
    if algorithm != "auto":
        return _alg.conv_core(xb, w, spec, algorithm=algorithm, precision=precision)
    choice = _alg.choose(
        _alg.platform_of(x),
        length=geom.padded_shape,
        in_channels=xb.shape[-1],
        out_channels=w.shape[-1],
        kernel_size=geom.kernel_shape,
        dilation=geom.dilation,
        groups=groups,
    )
    if choice.gradient == "rules":
        return _primitive.conv(xb, w, spec, precision, algorithm=choice.forward)
    return _alg.conv_core(xb, w, spec, algorithm=choice.forward, precision=precision)
