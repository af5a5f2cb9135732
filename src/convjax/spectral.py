"""Spectral tools for convolution layers: singular values, operator norm, clipping.

A convolution layer is the linear map ``x -> conv(x, w)`` from inputs of shape
``(*in_shape, Cin)`` to outputs of shape ``(*out_shape, Cout)``; its matrix is the
dense twin ``T(w)`` of :func:`convjax.conv_matrix`, shape
``(prod(out_shape) * Cout, prod(in_shape) * Cin)``. Its singular values are those
of ``T(w)``; its operator norm is the largest, the norm from the Euclidean norm of
the flattened input to that of the flattened output.

* :func:`conv_singular_values`: every singular value, exact. For a circular layer
  (``padding_mode="circular"``, stride 1, output shape equal to the input shape) by
  the FFT (Sedghi, Gupta & Long 2019): ``T(w)`` is block circulant, so the unitary
  DFT over the spatial axes turns it into one ``Cin x Cout`` matrix per frequency,
  ``H[f] = sum_j h[j] exp(-2 pi i <f, j / in_shape>)``, with ``h`` the filter laid
  out on the input grid (the layer is ``y[o] = sum_j x[(o + j) mod in_shape] h[j]``),
  and the singular values of ``T(w)`` are those of all the ``H[f]`` together.
  Otherwise by the SVD of the dense twin, guarded by ``max_bytes``.
* :func:`conv_operator_norm`: the largest singular value by power iteration on
  ``T^T T``, applying the convolution and its transpose
  (``jax.linear_transpose``), never building ``T``.
* :func:`clip_singular_values`: a circular layer's singular values clipped to a
  bound, per frequency (Sedghi et al., Algorithm 2): both the exact clipped
  operator, whose filter has full support (the whole input grid), and its
  projection back onto the taps of ``w``, with the operator norm that projection
  measures (it can exceed the bound).

Every function takes the filter ``w`` of shape ``(*kernel, Cin // groups, Cout)``
(its rank minus 2 is the number of spatial axes ``N``), ``in_shape`` (an int for
``N = 1`` or a tuple of ``N`` sizes) and the options of :func:`convjax.conv1d`:
``stride`` and ``dilation`` (an int or one per axis), ``padding`` (a name for every
axis, an int, a sequence of ``N`` entries each an int or a ``(lo, hi)`` pair; for
``N = 1`` a bare ``(lo, hi)`` pair), ``groups``, ``flip`` (convjax convolves by
cross-correlation unless ``flip=True``, which flips every spatial axis) and
``padding_mode`` (one for every axis). Padding names are resolved per axis as in
1-D (so ``"causal"`` pads ``dilation * (K - 1)`` before each axis).
"""

from __future__ import annotations

import dataclasses
import functools
import math
from collections.abc import Callable, Sequence
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from convjax import _checks
from convjax.convolution import conv
from convjax.geometry import Geometry, conv_options
from convjax.tying import conv_matrix

HIGHEST = jax.lax.Precision.HIGHEST
METHODS = ("auto", "fft", "dense")


# ---- the layer, normalised once ----------------------------------------------------


@dataclasses.dataclass(frozen=True)
class _Layer:
    """A convolution layer's static description: one resolved 1-D geometry per axis."""

    axes: tuple[Geometry, ...]
    in_channels: int
    out_channels: int
    groups: int
    flip: bool
    padding_mode: str

    @property
    def rank(self) -> int:
        return len(self.axes)

    @property
    def in_shape(self) -> tuple[int, ...]:
        return tuple(g.in_length for g in self.axes)

    @property
    def out_shape(self) -> tuple[int, ...]:
        return tuple(g.out_length for g in self.axes)

    @property
    def kernel_shape(self) -> tuple[int, ...]:
        return tuple(g.kernel_size for g in self.axes)

    @property
    def padding(self) -> tuple[tuple[int, int], ...]:
        return tuple((g.pad_lo, g.pad_hi) for g in self.axes)

    @property
    def dense_shape(self) -> tuple[int, int]:
        rows = math.prod(self.out_shape) * self.out_channels
        return rows, math.prod(self.in_shape) * self.in_channels

    def circular_problem(self) -> str | None:
        """Why the FFT does not apply to this layer, or None when it does."""
        strides = tuple(g.stride[0] for g in self.axes)
        if any(s != 1 for s in strides):
            return f"stride {strides} (the FFT needs stride 1 on every axis)"
        if self.out_shape != self.in_shape:
            return (
                f"output shape {self.out_shape} != input shape {self.in_shape} (the FFT "
                "needs padding lo + hi = dilation*(K-1) on every axis, e.g. 'same')"
            )
        if self.padding_mode != "circular" and any(p != (0, 0) for p in self.padding):
            return (
                f"padding_mode={self.padding_mode!r} with padding {self.padding} (the FFT "
                "needs padding_mode='circular')"
            )
        return None


def _is_sequence(value) -> bool:
    """A list, tuple or array of rank >= 1 (not a string, not a 0-d array)."""
    if isinstance(value, np.ndarray):
        return value.ndim > 0
    return isinstance(value, Sequence) and not isinstance(value, str)


def _per_axis(fn: str, name: str, value, rank: int) -> tuple[int, ...]:
    """An int for every axis, or a sequence of ``rank`` ints, as a tuple of ints >= 1."""
    if _is_sequence(value):
        if len(value) != rank:
            raise ValueError(
                f"{fn}: `{name}` must be an int or a sequence of {rank} ints (one per "
                f"spatial axis of w), got {value!r} of length {len(value)}."
            )
        return tuple(_checks.as_positive_int(fn, f"{name}[{i}]", v) for i, v in enumerate(value))
    return (_checks.as_positive_int(fn, name, value),) * rank


def _per_axis_padding(fn: str, padding, rank: int) -> tuple:
    """A padding entry (a name, an int or a ``(lo, hi)`` pair) for every axis."""
    if not _is_sequence(padding):
        return (padding,) * rank
    if rank == 1 and len(padding) == 2 and all(np.ndim(p) == 0 for p in padding):
        return (tuple(padding),)  # N = 1: a bare (lo, hi) pair keeps conv1d's meaning
    if len(padding) != rank:
        raise ValueError(
            f"{fn}: `padding` must be a name, an int, or a sequence of {rank} entries (one "
            f"per spatial axis of w, each an int or a (lo, hi) pair), got {padding!r} of "
            f"length {len(padding)}."
        )
    for i, p in enumerate(padding):
        if isinstance(p, str):
            raise ValueError(
                f"{fn}: `padding[{i}]` must be an int or a (lo, hi) pair (a name applies to "
                f"every axis: pass it alone), got {p!r}."
            )
    return tuple(tuple(p) if _is_sequence(p) else p for p in padding)


def _in_shape(fn: str, in_shape, rank: int) -> tuple[int, ...]:
    if _is_sequence(in_shape):
        if len(in_shape) != rank:
            raise ValueError(
                f"{fn}: `in_shape` must have one size per spatial axis of w ({rank}: w has "
                f"rank {rank + 2}), got {in_shape!r}."
            )
        return tuple(
            _checks.as_positive_int(fn, f"in_shape[{i}]", n) for i, n in enumerate(in_shape)
        )
    if rank != 1:
        raise ValueError(
            f"{fn}: `in_shape` must be a tuple of {rank} sizes for a filter with {rank} "
            f"spatial axes (an int only for 1-D), got {in_shape!r}."
        )
    return (_checks.as_positive_int(fn, "in_shape", in_shape),)


def _axis_geometry(fn: str, axis: int, rank: int, n: int, k: int, **options) -> Geometry:
    """The 1-D geometry of one spatial axis; for ``N >= 2`` an error names the axis."""
    try:
        return conv_options(fn=fn, **options).geometry(n, k, fn=fn)
    except ValueError as error:
        if rank == 1:
            raise
        raise ValueError(f"{error} (spatial axis {axis} of {rank})") from None


def _layer(
    fn: str, w_shape, in_shape, *, stride, padding, dilation, groups, flip, padding_mode
) -> _Layer:
    """Checks the filter shape and every option once; returns the static layer."""
    w_shape = tuple(w_shape)
    if len(w_shape) < 3:
        raise ValueError(
            f"{fn}: `w` must have rank >= 3 (layout (*kernel, Cin // groups, Cout)), got "
            f"rank {len(w_shape)} with shape {w_shape}."
        )
    if 0 in w_shape:
        raise ValueError(f"{fn}: `w` must have no zero-sized axis, got shape {w_shape}.")
    rank = len(w_shape) - 2
    sizes = _in_shape(fn, in_shape, rank)
    strides = _per_axis(fn, "stride", stride, rank)
    dilations = _per_axis(fn, "dilation", dilation, rank)
    paddings = _per_axis_padding(fn, padding, rank)
    per_axis = zip(sizes, w_shape[:-2], strides, paddings, dilations, strict=True)
    axes = tuple(
        _axis_geometry(
            fn,
            a,
            rank,
            n,
            k,
            stride=s,
            padding=p,
            dilation=d,
            groups=groups,
            flip=flip,
            padding_mode=padding_mode,
        )
        for a, (n, k, s, p, d) in enumerate(per_axis)
    )
    groups = _checks.as_positive_int(fn, "groups", groups)
    cig, cout = w_shape[-2:]
    if cout % groups:
        raise ValueError(
            f"{fn}: the output channels Cout={cout} (w.shape[-1]) must be divisible by "
            f"`groups`={groups}."
        )
    return _Layer(axes, cig * groups, cout, groups, bool(flip), axes[0].padding_mode)


def _floating(fn: str, w):
    """``w`` as an array of at least float32 (SVDs have no half-precision kernels)."""
    _checks.check_floating(fn, "w", w)
    return jnp.asarray(w, jnp.promote_types(w.dtype, jnp.float32))


# ---- the convolution and its dense twin ----------------------------------------------
def _options(layer: _Layer) -> dict:
    """The layer's settings as keyword arguments of :func:`convjax.conv` and
    :func:`convjax.conv_matrix`, one explicit ``(lo, hi)`` padding pair per axis."""
    return dict(
        stride=tuple(g.stride[0] for g in layer.axes),
        padding=tuple((g.pad_lo, g.pad_hi) for g in layer.axes),
        dilation=tuple(g.dilation[0] for g in layer.axes),
        groups=layer.groups,
        flip=layer.flip,
        padding_mode=layer.padding_mode,
    )


def _conv(x, w, layer: _Layer, precision):
    """The layer applied to one input ``x`` of shape ``(*in_shape, Cin)``."""
    return conv(x, w, precision=precision, **_options(layer))


def _conv_matrix(fn: str, w, layer: _Layer, max_bytes):
    """The dense twin ``T(w)``, ``(prod(out_shape) * Cout, prod(in_shape) * Cin)``."""
    rows, cols = layer.dense_shape
    hint = "pass a larger max_bytes (or None), or use conv_operator_norm for the norm."
    _checks.check_bytes(fn, "the dense matrix", (rows, cols), w.dtype, max_bytes, hint)
    return conv_matrix(w, tuple(layer.in_shape), max_bytes=max_bytes, **_options(layer))


# ---- exact singular values ---------------------------------------------------------


def _tap_positions(layer: _Layer) -> list[np.ndarray]:
    """Per axis, the input offset ``j`` each tap of the (unflipped) filter reads:
    ``(k * dilation - pad_lo) mod n``. Taps of a circular layer may share one."""
    return [
        np.mod(np.arange(g.kernel_size) * g.dilation[0] - g.pad_lo, g.in_length) for g in layer.axes
    ]


def _generating_filter(w, layer: _Layer):
    """``h``, shape ``(*in_shape, Cin // groups, Cout)``: the circular layer is
    ``y[o] = sum_j x[(o + j) mod in_shape] h[j]`` (taps that wrap onto one offset add)."""
    spatial = tuple(range(layer.rank))
    w = jnp.flip(w, spatial) if layer.flip else w
    h = jnp.zeros((*layer.in_shape, *w.shape[-2:]), w.dtype)
    return h.at[np.ix_(*_tap_positions(layer))].add(w)


def _grouped(a, groups: int):
    """``(..., Cin // groups, Cout) -> (..., groups, Cin // groups, Cout // groups)``."""
    a = a.reshape(*a.shape[:-1], groups, a.shape[-1] // groups)
    return jnp.moveaxis(a, -2, -3)


def _ungrouped(a):
    """The inverse of :func:`_grouped`."""
    a = jnp.moveaxis(a, -3, -2)
    return a.reshape(*a.shape[:-2], a.shape[-2] * a.shape[-1])


def _transfer(w, layer: _Layer):
    """``H``, ``(*in_shape, groups, Cin // groups, Cout // groups)`` complex: the DFT of
    the generating filter over the spatial axes, one matrix per frequency and group."""
    h = _generating_filter(w, layer)
    return _grouped(jnp.fft.fftn(h, axes=tuple(range(layer.rank))), layer.groups)


def _require_circular(fn: str, layer: _Layer, what: str) -> None:
    problem = layer.circular_problem()
    if problem is not None:
        raise ValueError(
            f"{fn}: {what} needs a circular layer (padding_mode='circular', stride 1, "
            f"output shape equal to the input shape); this layer has {problem}."
        )


def _check_method(fn: str, method, layer: _Layer) -> str:
    method = _checks.check_choice(fn, "method", method, METHODS)
    if method == "fft":
        _require_circular(fn, layer, "`method`='fft' (use 'dense' or 'auto')")
    if method == "auto":
        return "dense" if layer.circular_problem() else "fft"
    return method


def conv_singular_values(
    w,
    in_shape,
    *,
    stride=1,
    padding="valid",
    dilation=1,
    groups=1,
    flip: bool = False,
    padding_mode: str = "zeros",
    method: str = "auto",
    max_bytes: int | None = _checks.DEFAULT_MAX_BYTES,
):
    """Every singular value of the convolution layer ``x -> conv(x, w, ...)``, exact.

    The singular values of its dense twin ``T(w)``. ``method="fft"`` (Sedghi, Gupta &
    Long 2019) needs a circular layer: ``padding_mode="circular"`` (or no padding, a
    ``1 x ... x 1`` kernel), stride 1 and the output shape equal to the input shape
    (padding ``lo + hi = dilation * (K - 1)`` per axis: ``"same"``, ``"same_lower"``,
    ``"causal"`` or explicit). It lays the (flipped, if ``flip``) filter out on the
    input grid, taps ``k`` at offset ``(k * dilation - lo) mod n`` (taps that wrap onto
    one offset add), takes its DFT over the spatial axes and returns the singular
    values of the ``Cin x Cout`` matrix at every frequency (block diagonal over the
    groups): ``prod(in_shape) * min(Cin, Cout)`` values from ``prod(in_shape)`` small
    SVDs, never ``T(w)``. ``method="dense"`` builds ``T(w)`` (refused over
    ``max_bytes``) and takes its SVD. ``"auto"`` is ``"fft"`` where it applies. Works
    under ``jit``, ``vmap`` and ``grad`` (the options static; the gradient of a
    singular value is defined where it is simple).

    Args:
      w: filter, shape ``(*kernel, Cin // groups, Cout)``, real floating; ``N =
        w.ndim - 2`` spatial axes.
      in_shape: the input's spatial shape: an int (``N = 1``) or ``N`` ints.
      stride, padding, dilation, groups, flip, padding_mode: as in
        :func:`convjax.conv1d`, per axis (see the module docstring).
      method: ``"auto"`` (default), ``"fft"`` or ``"dense"``.
      max_bytes: the dense route refuses (before allocating) a matrix over this many
        bytes; ``None`` for no limit. Default 1 GiB.

    Returns:
      ``(min(rows, cols),)`` singular values of ``T(w)`` (``rows, cols =
      prod(out_shape) * Cout, prod(in_shape) * Cin``), in descending order, in the
      dtype of ``w`` (float32 for half precision).

    Raises:
      ValueError: bad shapes or options; ``method="fft"`` on a layer that is not
        circular (the message says why); the dense matrix over ``max_bytes``.
      TypeError: ``w`` not real floating; a non-integer size.

    Example:
      >>> import jax.numpy as jnp
      >>> w = jnp.array([1., 1.]).reshape(2, 1, 1)      # x[o] + x[o+1], circular
      >>> conv_singular_values(w, 4, padding="same", padding_mode="circular").round(4)
      Array([2.    , 1.4142, 1.4142, 0.    ], dtype=float32)
    """
    fn = "conv_singular_values"
    w = _floating(fn, w)
    layer = _layer(
        fn,
        w.shape,
        in_shape,
        stride=stride,
        padding=padding,
        dilation=dilation,
        groups=groups,
        flip=flip,
        padding_mode=padding_mode,
    )
    if _check_method(fn, method, layer) == "fft":
        s = jnp.linalg.svd(_transfer(w, layer), compute_uv=False)
        return jnp.sort(s.ravel())[::-1]
    return jnp.linalg.svd(_conv_matrix(fn, w, layer, max_bytes), compute_uv=False)


# ---- the operator norm by power iteration ----------------------------------------------


class NormEstimate(NamedTuple):
    """What :func:`conv_operator_norm` returns.

    Attributes:
      norm: ``()``, ``||conv(v, w)||`` for the final unit vector ``v``: a lower bound
        on the largest singular value (up to rounding), differentiable in ``w``.
      vector: ``(*in_shape, Cin)``, that unit vector ``v``, the estimate of the top
        right singular vector (pass it as ``v0`` to warm-start a later call).
      iterations: ``()`` int32, the power iterations run.
      converged: ``()`` bool, whether the last iteration changed the estimate by at
        most ``tol`` times the estimate.
    """

    norm: jax.Array
    vector: jax.Array
    iterations: jax.Array
    converged: jax.Array


def _power_iteration(apply: Callable, adjoint: Callable, v, max_iters: int, tol: float):
    """Power iteration on ``A^T A``: returns ``(v, iterations, converged)``."""

    def unit(z, fallback):
        size = jnp.linalg.norm(z)
        return jnp.where(size > 0, z / jnp.where(size > 0, size, 1), fallback)

    def cond(state):
        i, _, sigma, change = state
        return (i < max_iters) & (change > tol * sigma)

    def body(state):
        i, v, sigma, _ = state
        u = apply(v)
        new = jnp.linalg.norm(u)
        return i + 1, unit(adjoint(u), v), new, jnp.abs(new - sigma)

    zero = jnp.zeros((), v.real.dtype)
    state = (jnp.int32(0), unit(v, v), zero, jnp.asarray(jnp.inf, zero.dtype))
    i, v, sigma, change = jax.lax.while_loop(cond, body, state)
    return v, i, change <= tol * sigma


def _check_iteration(fn: str, max_iters, tol) -> tuple[int, float]:
    max_iters = _checks.as_positive_int(fn, "max_iters", max_iters)
    if isinstance(tol, (bool, np.bool_)) or not isinstance(tol, (int, float, np.number)):
        raise TypeError(f"{fn}: `tol` must be a real number, got {tol!r}.")
    if not 0 <= tol < math.inf:
        raise ValueError(f"{fn}: `tol` must be finite and >= 0, got {tol!r}.")
    return max_iters, float(tol)


def _start_vector(fn: str, key, v0, shape, dtype):
    if v0 is None:
        if key is not None and not hasattr(key, "dtype"):
            raise TypeError(
                f"{fn}: `key` must be a jax.random key (e.g. jax.random.key(0)) or None, "
                f"got {key!r} of type {type(key).__name__}."
            )
        return jax.random.normal(jax.random.key(0) if key is None else key, shape, dtype)
    _checks.check_floating(fn, "v0", v0)
    if tuple(np.shape(v0)) != shape:
        raise ValueError(
            f"{fn}: `v0` must have shape (*in_shape, Cin) = {shape}, got shape "
            f"{tuple(np.shape(v0))}."
        )
    return jnp.asarray(v0, dtype)


def conv_operator_norm(
    w,
    in_shape,
    *,
    stride=1,
    padding="valid",
    dilation=1,
    groups=1,
    flip: bool = False,
    padding_mode: str = "zeros",
    key=None,
    v0=None,
    max_iters: int = 1000,
    tol: float = 1e-6,
    precision=HIGHEST,
) -> NormEstimate:
    """The operator norm (largest singular value) of a convolution layer, matrix-free.

    Power iteration on ``T^T T``: from a unit vector ``v`` (drawn from ``key``, or
    ``v0``), repeat ``u = conv(v, w)``, ``v = T^T u / ||T^T u||``, the transpose
    applied by ``jax.linear_transpose`` of the convolution; ``T(w)`` is never built,
    so any layer size works and each iteration costs two convolutions. The estimate
    after an iteration is ``||u||``; the loop (a ``lax.while_loop``) stops after
    ``max_iters`` iterations or when the estimate changed by at most ``tol`` times
    itself. The change is not a bound on the error: after ``t`` iterations the
    vector's error shrinks like ``(s2 / s1)^(2 t)`` and the estimate's like
    ``(s2 / s1)^(4 t)``, times a constant set by the start vector (``s1 > s2`` the two
    largest distinct singular values), so a small gap can stop the loop far from
    ``s1``. Every
    estimate is a lower bound on ``s1`` up to rounding. For the exact value of a
    small or circular layer use :func:`conv_singular_values`.

    The loop runs on ``jax.lax.stop_gradient(w)``; the returned norm is
    ``||conv(v, w)||`` for the final ``v``, whose gradient in ``w`` is that of ``s1``
    (``u1 v1^T`` mapped onto the filter) once ``v`` has converged. Works under
    ``jit`` and ``vmap`` (options static).

    Args:
      w: filter, shape ``(*kernel, Cin // groups, Cout)``, real floating.
      in_shape: the input's spatial shape: an int (``N = 1``) or ``N`` ints.
      stride, padding, dilation, groups, flip, padding_mode: as in
        :func:`convjax.conv1d`, per axis (see the module docstring).
      key: a ``jax.random`` key for the start vector; ``None`` (default) means
        ``jax.random.key(0)``, so a call is deterministic either way.
      v0: a start vector of shape ``(*in_shape, Cin)`` instead of a random one (e.g.
        the ``vector`` of an earlier call); ``key`` is then unused.
      max_iters: the most iterations (int >= 1). Default 1000.
      tol: stop when the estimate changes by at most ``tol`` times itself (>= 0;
        ``0`` runs ``max_iters`` iterations unless it stops changing). Default 1e-6.
      precision: of the convolutions. Default ``jax.lax.Precision.HIGHEST`` (on GPU
        and TPU lower precisions round float32 inputs to fewer bits).

    Returns:
      A :class:`NormEstimate` ``(norm, vector, iterations, converged)``.

    Raises:
      ValueError: bad shapes or options, ``max_iters < 1``, negative or infinite
        ``tol``, ``v0`` of the wrong shape.
      TypeError: ``w`` or ``v0`` not real floating, a non-integer size, ``tol`` not
        a number.

    Example:
      >>> import jax.numpy as jnp
      >>> w = jnp.array([1., 1.]).reshape(2, 1, 1)
      >>> est = conv_operator_norm(w, 4, padding="same", padding_mode="circular")
      >>> est.norm.round(4), bool(est.converged)
      (Array(2., dtype=float32), True)
    """
    fn = "conv_operator_norm"
    w = _floating(fn, w)
    layer = _layer(
        fn,
        w.shape,
        in_shape,
        stride=stride,
        padding=padding,
        dilation=dilation,
        groups=groups,
        flip=flip,
        padding_mode=padding_mode,
    )
    max_iters, tol = _check_iteration(fn, max_iters, tol)
    precision = _checks.check_precision(fn, precision)
    v = _start_vector(fn, key, v0, (*layer.in_shape, layer.in_channels), w.dtype)
    w_fixed = jax.lax.stop_gradient(w)

    def apply(x):
        return _conv(x, w_fixed, layer, precision)

    transpose = jax.linear_transpose(apply, v)
    v, iterations, converged = _power_iteration(apply, lambda u: transpose(u)[0], v, max_iters, tol)
    norm = jnp.linalg.norm(_conv(v, w, layer, precision))
    return NormEstimate(norm, v, iterations, converged)


# ---- clipping the singular values of a circular layer --------------------------------


class ClippedConv(NamedTuple):
    """What :func:`clip_singular_values` returns.

    Attributes:
      full: ``(*in_shape, Cin // groups, Cout)``, the filter of the exact clipped
        operator (singular values ``min(s, bound)``, singular vectors those of the
        layer). Its support is the whole input grid, laid out as the layer's
        generating filter: the operator is ``conv(x, full, padding=[(0, n - 1) for n
        in in_shape], padding_mode="circular", groups=groups)`` (cross-correlation,
        ``flip=False``, stride and dilation 1) whatever the options of ``w``.
      projected: ``w.shape``, ``full`` projected back onto the taps of ``w``: the
        filter, for the options of ``w``, whose layer is nearest to the clipped one
        in the Frobenius norm (offsets outside the taps dropped; where taps wrap onto
        one offset, its value split equally between them).
      projected_norm: ``()``, the operator norm of ``projected``'s layer, measured
        (by the FFT, exact). It is NOT bounded by ``bound``: dropping the offsets
        outside the taps can raise it above.
    """

    full: jax.Array
    projected: jax.Array
    projected_norm: jax.Array


def _check_bound(fn: str, bound):
    if (
        isinstance(bound, (bool, np.bool_))
        or not (isinstance(bound, (int, float, np.number)) or hasattr(bound, "dtype"))
        or np.iscomplexobj(bound)
    ):
        raise TypeError(f"{fn}: `bound` must be a real scalar, got {bound!r}.")
    if np.ndim(bound) != 0:
        raise ValueError(f"{fn}: `bound` must be a scalar, got shape {np.shape(bound)}.")
    try:
        value = float(bound)
    except TypeError:  # traced (jax.errors.ConcretizationTypeError): not checked
        return bound
    if not value >= 0:
        raise ValueError(f"{fn}: `bound` must be >= 0, got {bound!r}.")
    return bound


def _clip_transfer(H, bound):
    """Each matrix of ``H`` with its singular values clipped to ``bound``."""
    u, s, vh = jnp.linalg.svd(H, full_matrices=False)
    s = jnp.minimum(s, jnp.asarray(bound, s.dtype))
    return (u * s[..., None, :].astype(u.dtype)) @ vh


def _project(h, layer: _Layer):
    """The filter of ``w``'s shape nearest (Frobenius norm of the layer) to the
    generating filter ``h``: its values at the taps' offsets, split among taps that
    share an offset."""
    positions = _tap_positions(layer)
    counts = [
        np.bincount(p, minlength=n)[p] for p, n in zip(positions, layer.in_shape, strict=True)
    ]
    share = functools.reduce(np.multiply, np.ix_(*counts)).astype(np.float64)
    w = h[np.ix_(*positions)] / jnp.asarray(share, h.dtype)[..., None, None]
    return jnp.flip(w, tuple(range(layer.rank))) if layer.flip else w


def clip_singular_values(
    w,
    in_shape,
    bound,
    *,
    stride=1,
    padding="valid",
    dilation=1,
    groups=1,
    flip: bool = False,
    padding_mode: str = "zeros",
) -> ClippedConv:
    """Clips the singular values of a circular convolution layer to ``bound``.

    Sedghi, Gupta & Long (2019), Algorithm 2: the SVD ``H[f] = U S V^*`` of the
    ``Cin x Cout`` matrix at every frequency (see :func:`conv_singular_values`),
    ``S`` replaced by ``min(S, bound)``, the inverse DFT back to a filter. That
    filter (``full``) is the exact clipped operator and has full support; its
    projection onto the taps of ``w`` (``projected``) is again a layer with ``w``'s
    options, but its norm (``projected_norm``, measured) can exceed ``bound``.
    Sedghi et al. alternate clipping and projecting (once per training step or a few
    times); calling this function repeatedly on ``projected`` does that.

    Args:
      w: filter, shape ``(*kernel, Cin // groups, Cout)``, real floating.
      in_shape: the input's spatial shape: an int (``N = 1``) or ``N`` ints.
      bound: the largest singular value to keep, a real scalar >= 0 (checked when
        concrete; a traced bound under ``jit`` is not checked).
      stride, padding, dilation, groups, flip, padding_mode: as in
        :func:`convjax.conv1d`, per axis; the layer must be circular (as for
        ``method="fft"`` of :func:`conv_singular_values`).

    Returns:
      A :class:`ClippedConv` ``(full, projected, projected_norm)``.

    Raises:
      ValueError: bad shapes or options, a layer that is not circular (the message
        says why), ``bound`` not a scalar or negative.
      TypeError: ``w`` not real floating, ``bound`` not a number.

    Example:
      >>> import jax.numpy as jnp
      >>> w = jnp.array([1., 1.]).reshape(2, 1, 1)   # singular values 2, 1.41, 1.41, 0
      >>> c = clip_singular_values(w, 4, 1.0, padding="same", padding_mode="circular")
      >>> conv_singular_values(c.full, 4, padding=(0, 3), padding_mode="circular").round(4)
      Array([1., 1., 1., 0.], dtype=float32)
      >>> c.projected[:, 0, 0].round(4), c.projected_norm.round(4)
      (Array([0.6036, 0.6036], dtype=float32), Array(1.2071, dtype=float32))
    """
    fn = "clip_singular_values"
    w = _floating(fn, w)
    bound = _check_bound(fn, bound)
    layer = _layer(
        fn,
        w.shape,
        in_shape,
        stride=stride,
        padding=padding,
        dilation=dilation,
        groups=groups,
        flip=flip,
        padding_mode=padding_mode,
    )
    _require_circular(fn, layer, "clipping")
    spatial = tuple(range(layer.rank))
    clipped = _ungrouped(_clip_transfer(_transfer(w, layer), bound))
    full = jnp.fft.ifftn(clipped, axes=spatial).real.astype(w.dtype)
    projected = _project(full, layer)
    s = jnp.linalg.svd(_transfer(projected, layer), compute_uv=False)
    return ClippedConv(full, projected, jnp.max(s))
