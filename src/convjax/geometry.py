"""Where each tap of each output reads: padding, stride, dilation and flip, per axis.

This module is the single source of truth for the index arithmetic of a
convolution with any number ``N >= 1`` of spatial axes. Everything else
(``conv``'s algorithms, the dense matrix, the locally connected layer, the tying
structure) reads the same tables from :class:`Geometry`.

Conventions (channels-last, one column per channel, as in the maths of a layer):

* The input ``x`` has shape ``(..., *spatial, Cin)``; the filter ``w`` has shape
  ``(*kernel, Cin // groups, Cout)`` (its rank minus 2 is ``N``); the output has
  shape ``(..., *out_spatial, Cout)``.
* Each spatial axis ``a`` is padded first (``lo`` positions before, ``hi`` after,
  filled according to ``padding_mode``), then the filter slides over the padded
  input with ``stride[a]`` and ``dilation[a]``. The axes are independent: the tap
  set is the Cartesian product of the per-axis taps.
* ``flip=False`` is cross-correlation (what lax, torch and flax call
  "convolution"): along axis ``a``, output ``o`` tap ``k`` reads padded position
  ``o*stride + k*dilation``. ``flip=True`` is true convolution on every axis: tap
  ``k`` reads padded position ``o*stride + (K-1-k)*dilation``; equivalently it is
  cross-correlation with ``w`` reversed along every spatial axis.

Padding names, per axis, with ``E = dilation*(K-1) + 1`` the effective kernel length:

=============  =====================================================================
``"valid"``    no padding; ``Lout = floor((L - E) / stride) + 1``
``"same"``     ``Lout = ceil(L / stride)``; total padding
               ``max((Lout-1)*stride + E - L, 0)``, odd extra zero at the END
               (XLA/TensorFlow ``SAME``, torch ``padding="same"``, flax ``"SAME"``)
``"same_lower"`` as ``"same"`` with the odd extra zero at the START (ONNX
               ``SAME_LOWER``; this is what ``numpy.convolve(mode="same")`` does)
``"full"``     ``E-1`` on both sides: every partial overlap
``"causal"``   ``E-1`` at the start only: output ``o`` sees inputs ``<= o`` (for
               ``N >= 2`` on every axis: output ``(o1, o2)`` sees inputs
               ``(i1, i2)`` with ``i1 <= o1`` and ``i2 <= o2``)
``int p``      ``p`` on both sides of every axis
=============  =====================================================================

``padding`` is a name (for every axis), an int (every axis), or a sequence of ``N``
entries, one per axis, each a name, an int or a pair ``(lo, hi)``. For ``N = 1`` a
bare pair ``(lo, hi)`` is ``lo`` before and ``hi`` after, as it always was.

Padding modes follow torch: ``"zeros"``; ``"circular"`` (wraps around; here any
width is allowed and wraps as often as needed); ``"reflect"`` (mirror without
repeating the edge, width at most ``L - 1``); ``"replicate"`` (repeats the edge).
Each axis is padded in turn, so a corner of a 2-D padding is what torch's
``F.pad`` gives.

Flattening: tables over positions use the row-major (C) order of the spatial
shape, ``numpy.ravel_multi_index``; a kernel position is flattened the same way
over the kernel shape.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence

import numpy as np

from convjax import _checks

PADDING_NAMES = ("valid", "same", "same_lower", "full", "causal")
PADDING_MODES = ("zeros", "circular", "reflect", "replicate")

#: One axis' padding before resolution: a name or an explicit ``(lo, hi)``.
AxisPadding = str | tuple[int, int]
PaddingLike = str | int | Sequence


@dataclasses.dataclass(frozen=True)
class ConvOptions:
    """The normalised, hashable options of a convolution with ``ndim`` spatial axes.

    Build it with :func:`conv_options`, which checks and canonicalises every
    argument once; inner code sees only this form: one entry per spatial axis in
    ``stride``, ``padding`` and ``dilation``.
    """

    stride: tuple[int, ...] = (1,)
    padding: tuple[AxisPadding, ...] = ("valid",)
    dilation: tuple[int, ...] = (1,)
    groups: int = 1
    flip: bool = False
    padding_mode: str = "zeros"

    @property
    def ndim(self) -> int:
        """``N``: the number of spatial axes."""
        return len(self.stride)

    @property
    def padding_arg(self):
        """The padding as a user would write it: a name shared by every axis, or the
        per-axis tuple (a bare ``(lo, hi)`` for ``N = 1``); used in messages."""
        if len(set(self.padding)) == 1 and isinstance(self.padding[0], str):
            return self.padding[0]
        return self.padding[0] if self.ndim == 1 else self.padding

    def geometry(self, in_shape, kernel_shape, *, fn: str = "conv1d") -> Geometry:
        """Resolves the padding for an input shape and kernel shape (ints for 1-D)."""
        return Geometry.resolve(self, in_shape, kernel_shape, fn=fn)


def conv_options(
    *,
    stride=1,
    padding: PaddingLike = "valid",
    dilation=1,
    groups=1,
    flip: bool = False,
    padding_mode: str = "zeros",
    ndim: int = 1,
    fn: str = "conv1d",
) -> ConvOptions:
    """Checks and canonicalises convolution options for ``ndim`` spatial axes.

    Args:
      stride, dilation: an int for every axis, or a sequence of ``ndim`` ints.
      padding: see the module docstring.
      groups, flip, padding_mode: as in :func:`convjax.conv`.
      ndim: the number of spatial axes ``N``.
      fn: the public function name used in error messages.

    Returns:
      A frozen, hashable :class:`ConvOptions` with per-axis tuples.

    Raises:
      TypeError: a size that is not an integer, or ``flip`` that is not a bool.
      ValueError: a size < 1, an unknown padding or padding mode, negative padding,
        a per-axis sequence whose length is not ``ndim``.

    Example:
      >>> conv_options(stride=(1, 2), padding=[(0, 1), "same"], ndim=2).padding
      ((0, 1), 'same')
    """
    groups = _checks.as_positive_int(fn, "groups", groups)
    if not isinstance(flip, (bool, np.bool_)):
        raise TypeError(f"{fn}: `flip` must be a bool, got {flip!r}.")
    padding_mode = _checks.check_choice(fn, "padding_mode", padding_mode, PADDING_MODES)
    return ConvOptions(
        stride=per_axis(fn, "stride", stride, ndim),
        padding=_normalise_padding(fn, padding, ndim),
        dilation=per_axis(fn, "dilation", dilation, ndim),
        groups=groups,
        flip=bool(flip),
        padding_mode=padding_mode,
    )


def per_axis(fn: str, name: str, value, ndim: int, *, minimum: int = 1) -> tuple[int, ...]:
    """An int for every axis, or a sequence of ``ndim`` ints, as a tuple of ``ndim`` ints."""
    if isinstance(value, (tuple, list)):
        if len(value) != ndim:
            raise ValueError(
                f"{fn}: `{name}` must be an int or a sequence of {ndim} ints (one per "
                f"spatial axis), got {value!r} of length {len(value)}."
            )
        return tuple(
            _checks.as_positive_int(fn, f"{name}[{j}]", v, minimum=minimum)
            for j, v in enumerate(value)
        )
    return (_checks.as_positive_int(fn, name, value, minimum=minimum),) * ndim


def _is_int(v) -> bool:
    return isinstance(v, (int, np.integer)) and not isinstance(v, (bool, np.bool_))


def _normalise_padding(fn: str, padding, ndim: int) -> tuple[AxisPadding, ...]:
    if isinstance(padding, str):
        return (_checks.check_choice(fn, "padding", padding, PADDING_NAMES),) * ndim
    if _is_int(padding):
        p = _checks.as_positive_int(fn, "padding", padding, minimum=0)
        return ((p, p),) * ndim
    if isinstance(padding, (tuple, list)):
        if ndim == 1 and len(padding) == 2 and not any(isinstance(p, str) for p in padding):
            if all(not isinstance(p, (tuple, list)) for p in padding):
                return (_pair(fn, "padding", padding),)
        if len(padding) == ndim:
            return tuple(_axis_padding(fn, f"padding[{j}]", p) for j, p in enumerate(padding))
    # A float, bool, None or other non-sequence is the wrong type; a sequence of the
    # wrong length is a wrong value.
    error = ValueError if isinstance(padding, (tuple, list)) else TypeError
    per = (
        "a pair (lo, hi) of non-negative ints"
        if ndim == 1
        else (
            f"a sequence of {ndim} entries (one per spatial axis), each a name, an int or a "
            "pair (lo, hi)"
        )
    )
    raise error(
        f"{fn}: `padding` must be one of {', '.join(repr(p) for p in PADDING_NAMES)}, "
        f"a non-negative int, or {per}, got {padding!r}."
    )


def _pair(fn: str, name: str, pair) -> tuple[int, int]:
    lo = _checks.as_positive_int(fn, f"{name}[0]", pair[0], minimum=0)
    hi = _checks.as_positive_int(fn, f"{name}[1]", pair[1], minimum=0)
    return (lo, hi)


def _axis_padding(fn: str, name: str, p) -> AxisPadding:
    """One axis' entry of a per-axis padding: a name, an int or a pair."""
    if isinstance(p, str):
        return _checks.check_choice(fn, name, p, PADDING_NAMES)
    if isinstance(p, (tuple, list)) and len(p) == 2:
        return _pair(fn, name, p)
    if _is_int(p):
        q = _checks.as_positive_int(fn, name, p, minimum=0)
        return (q, q)
    error = ValueError if isinstance(p, (tuple, list)) else TypeError
    raise error(
        f"{fn}: `{name}` must be a padding name, a non-negative int or a pair (lo, hi), got {p!r}."
    )


def resolve_axis(name: AxisPadding, L: int, K: int, stride: int, dilation: int) -> tuple[int, int]:
    """The explicit ``(lo, hi)`` of one axis' padding for length ``L``, kernel ``K``."""
    eff = dilation * (K - 1) + 1
    if name == "valid":
        return (0, 0)
    if name == "full":
        return (eff - 1, eff - 1)
    if name == "causal":
        return (eff - 1, 0)
    if name in ("same", "same_lower"):
        out = -(-L // stride)
        total = max((out - 1) * stride + eff - L, 0)
        small, big = total // 2, total - total // 2
        return (small, big) if name == "same" else (big, small)
    assert isinstance(name, tuple)  # normalised by conv_options: a name or (lo, hi)
    return name


def _as_shape(fn: str, what: str, shape, ndim: int) -> tuple[int, ...]:
    shape = (shape,) if _is_int(shape) else tuple(int(s) for s in shape)
    if len(shape) != ndim:
        raise ValueError(
            f"{fn}: the {what} must have {ndim} spatial axes (one per axis of the "
            f"options), got shape {shape}."
        )
    return shape


@dataclasses.dataclass(frozen=True)
class Geometry:
    """A resolved convolution: shapes, explicit padding and the tap tables, per axis.

    Attributes:
      in_shape: the spatial shape of the input, ``(L1, ..., LN)``.
      kernel_shape: ``(K1, ..., KN)``.
      out_shape: ``(Lout1, ..., LoutN)``.
      pads: ``((lo1, hi1), ..., (loN, hiN))``: explicit padding per axis.
      stride, dilation: per-axis tuples; flip, padding_mode: as in :class:`ConvOptions`.

    For ``N = 1`` the scalar names of the 1-D code also exist: ``in_length``,
    ``kernel_size``, ``out_length``, ``pad_lo``, ``pad_hi``.
    """

    in_shape: tuple[int, ...]
    kernel_shape: tuple[int, ...]
    out_shape: tuple[int, ...]
    pads: tuple[tuple[int, int], ...]
    stride: tuple[int, ...]
    dilation: tuple[int, ...]
    flip: bool
    padding_mode: str

    @staticmethod
    def resolve(opts: ConvOptions, in_shape, kernel_shape, *, fn: str) -> Geometry:
        n = opts.ndim
        ins = _as_shape(fn, "input", in_shape, n)
        ks = _as_shape(fn, "kernel", kernel_shape, n)
        pads, outs = [], []
        for a in range(n):
            lo, hi, out = _resolve_one(opts, a, ins[a], ks[a], fn)
            pads.append((lo, hi))
            outs.append(out)
        return Geometry(
            ins,
            ks,
            tuple(outs),
            tuple(pads),
            opts.stride,
            opts.dilation,
            opts.flip,
            opts.padding_mode,
        )

    # ---- sizes --------------------------------------------------------------
    @property
    def ndim(self) -> int:
        return len(self.in_shape)

    @property
    def in_size(self) -> int:
        """Number of input positions, ``prod(in_shape)``."""
        return math.prod(self.in_shape)

    @property
    def out_size(self) -> int:
        """Number of output positions, ``prod(out_shape)``."""
        return math.prod(self.out_shape)

    @property
    def n_taps(self) -> int:
        """Number of kernel positions, ``prod(kernel_shape)``."""
        return math.prod(self.kernel_shape)

    @property
    def padded_shape(self) -> tuple[int, ...]:
        return tuple(L + lo + hi for L, (lo, hi) in zip(self.in_shape, self.pads, strict=True))

    # ---- the 1-D names --------------------------------------------------------
    @property
    def in_length(self) -> int:
        return self._one("in_length", self.in_shape)

    @property
    def kernel_size(self) -> int:
        return self._one("kernel_size", self.kernel_shape)

    @property
    def out_length(self) -> int:
        return self._one("out_length", self.out_shape)

    @property
    def pad_lo(self) -> int:
        return self._one("pad_lo", tuple(p[0] for p in self.pads))

    @property
    def pad_hi(self) -> int:
        return self._one("pad_hi", tuple(p[1] for p in self.pads))

    @property
    def padded_length(self) -> int:
        return self._one("padded_length", self.padded_shape)

    def _one(self, name: str, values: tuple[int, ...]) -> int:
        if len(values) != 1:
            raise AttributeError(
                f"Geometry.{name} exists for one spatial axis; this geometry has "
                f"{len(values)} (use the per-axis tuples, e.g. in_shape, out_shape, pads)."
            )
        return values[0]

    # ---- per-axis tables -------------------------------------------------------
    def padded_source_axis(self, a: int) -> np.ndarray:
        """``(L + lo + hi,)`` int array for axis ``a``: the input index each padded
        position copies, or -1 where it is a zero."""
        L, (lo, hi) = self.in_shape[a], self.pads[a]
        src = np.arange(L + lo + hi) - lo
        mode = self.padding_mode
        if mode == "zeros":
            return np.where((src >= 0) & (src < L), src, -1)
        if mode == "circular":
            return np.mod(src, L)
        if mode == "replicate":
            return np.clip(src, 0, L - 1)
        # reflect: mirror about 0 and L-1 without repeating the edge.
        if L == 1:
            return np.zeros_like(src)
        period = 2 * (L - 1)
        r = np.mod(src, period)
        return np.where(r < L, r, period - r)

    def tap_positions_axis(self, a: int) -> np.ndarray:
        """``(Lout_a, K_a)`` int array: the padded position along axis ``a`` read by
        output ``o``, tap ``k`` (``k`` indexes the filter as given: flip applied)."""
        k = np.arange(self.kernel_shape[a])
        if self.flip:
            k = k[::-1]
        o = np.arange(self.out_shape[a])
        return o[:, None] * self.stride[a] + k[None, :] * self.dilation[a]

    def tap_sources_axis(self, a: int) -> np.ndarray:
        """``(Lout_a, K_a)`` int array: the input index along axis ``a`` read by output
        ``o``, tap ``k``, or -1 where the tap reads a zero of the padding."""
        return self.padded_source_axis(a)[self.tap_positions_axis(a)]

    # ---- flattened tables -----------------------------------------------------
    def tap_sources(self) -> np.ndarray:
        """``(prod(out_shape), prod(kernel_shape))`` int array: the flattened
        (row-major) input position read by flattened output position ``o`` through
        flattened kernel position ``k``, or -1 where the tap reads a zero of the
        padding on some axis. For ``N = 1`` it is the ``(Lout, K)`` table."""
        return self._flatten([self.tap_sources_axis(a) for a in range(self.ndim)], self.in_shape)

    def _flatten(self, tables, shape) -> np.ndarray:
        """Per-axis ``(Lout_a, K_a)`` index tables -> one ``(prod(Lout), prod(K))``
        table of row-major flat indices into ``shape``; -1 where any axis has -1."""
        n = self.ndim
        flat = np.zeros((1,) * (2 * n), dtype=np.int64)
        dead = np.zeros((1,) * (2 * n), dtype=bool)
        place = 1
        for a in reversed(range(n)):
            shape_a = [1] * (2 * n)
            shape_a[a], shape_a[n + a] = tables[a].shape
            t = tables[a].reshape(shape_a)
            flat = flat + np.where(t >= 0, t, 0) * place
            dead = dead | (t < 0)
            place *= shape[a]
        table = np.broadcast_to(np.where(dead, -1, flat), (*self.out_shape, *self.kernel_shape))
        return table.reshape(self.out_size, self.n_taps)

    def tap_positions(self) -> np.ndarray:
        """``(prod(out_shape), prod(kernel_shape))`` int array: the flattened
        (row-major over ``padded_shape``) padded position read by flattened output
        position ``o`` through flattened kernel position ``k``. For ``N = 1`` it is
        the ``(Lout, K)`` table of padded positions."""
        return self._flatten(
            [self.tap_positions_axis(a) for a in range(self.ndim)], self.padded_shape
        )

    def padded_source(self) -> np.ndarray:
        """``(L + pad_lo + pad_hi,)`` int array (``N = 1``): the input index each
        padded position copies, or -1 where it is a zero."""
        self._one("padded_source", self.in_shape)
        return self.padded_source_axis(0)

    def position_mask(self) -> np.ndarray:
        """``(prod(out_shape), prod(in_shape))`` bool: which flattened (output, input)
        positions are connected by at least one live tap."""
        m = np.zeros((self.out_size, self.in_size), dtype=bool)
        src = self.tap_sources()
        o, k = np.nonzero(src >= 0)
        m[o, src[o, k]] = True
        return m


def _resolve_one(opts: ConvOptions, a: int, L: int, K: int, fn: str) -> tuple[int, int, int]:
    """``(lo, hi, Lout)`` of axis ``a``, with the checks of that axis."""
    s, d, name = opts.stride[a], opts.dilation[a], opts.padding[a]
    where = "" if opts.ndim == 1 else f" along spatial axis {a}"
    if L < 1:
        raise ValueError(f"{fn}: the input length{where} must be >= 1, got {L}.")
    if K < 1:
        raise ValueError(f"{fn}: the kernel size{where} must be >= 1, got {K}.")
    lo, hi = resolve_axis(name, L, K, s, d)
    eff = d * (K - 1) + 1
    if opts.padding_mode == "reflect" and max(lo, hi) > L - 1:
        raise ValueError(
            f"{fn}: `padding_mode`='reflect' needs padding < input length {L} on each "
            f"side{where}, got padding (lo, hi) = ({lo}, {hi}) from "
            f"padding={opts.padding_arg!r}."
        )
    padded = L + lo + hi
    if padded < eff:
        raise ValueError(
            f"{fn}: the kernel is longer than the padded input{where}, so the output would "
            f"be empty: effective kernel length dilation*(K-1)+1 = {eff} (K={K}, "
            f"dilation={d}) > padded input length {padded} (L={L}, "
            f"padding={opts.padding_arg!r})."
        )
    return lo, hi, (padded - eff) // s + 1
