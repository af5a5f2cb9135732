"""Where each tap of each output reads: padding, stride, dilation and flip.

This module is the single source of truth for the index arithmetic of a 1-D
convolution. Everything else (``conv1d``'s algorithms, the dense matrix, the
locally connected layer) reads the same tables from :class:`Geometry`.

Conventions (channels-last, one column per channel, as in the maths of a layer):

* The input ``x`` has shape ``(..., L, Cin)``; the filter ``w`` has shape
  ``(K, Cin // groups, Cout)``; the output has shape ``(..., Lout, Cout)``.
* Padding is applied to the input first (``pad_lo`` positions before, ``pad_hi``
  after, filled according to ``padding_mode``), then the filter slides over the
  padded input with ``stride`` and ``dilation``.
* ``flip=False`` is cross-correlation (what lax, torch and flax call
  "convolution"): output ``o`` tap ``k`` reads padded position ``o*stride + k*dilation``.
  ``flip=True`` is true convolution: tap ``k`` reads padded position
  ``o*stride + (K-1-k)*dilation``; equivalently it is cross-correlation with
  ``w[::-1]``.

Padding names, with ``E = dilation*(K-1) + 1`` the effective kernel length:

=============  =====================================================================
``"valid"``    no padding; ``Lout = floor((L - E) / stride) + 1``
``"same"``     ``Lout = ceil(L / stride)``; total padding
               ``max((Lout-1)*stride + E - L, 0)``, odd extra zero at the END
               (XLA/TensorFlow ``SAME``, torch ``padding="same"``, flax ``"SAME"``)
``"same_lower"`` as ``"same"`` with the odd extra zero at the START (ONNX
               ``SAME_LOWER``; this is what ``numpy.convolve(mode="same")`` does)
``"full"``     ``E-1`` on both sides: every partial overlap
``"causal"``   ``E-1`` at the start only: output ``o`` sees inputs ``<= o``
``int p``      ``p`` on both sides
``(lo, hi)``   ``lo`` before, ``hi`` after
=============  =====================================================================

Padding modes follow torch: ``"zeros"``; ``"circular"`` (wraps around; here any
width is allowed and wraps as often as needed); ``"reflect"`` (mirror without
repeating the edge, width at most ``L - 1``); ``"replicate"`` (repeats the edge).
"""

from __future__ import annotations

import dataclasses
from typing import Literal

import numpy as np

from convjax import _checks

PADDING_NAMES = ("valid", "same", "same_lower", "full", "causal")
PADDING_MODES = ("zeros", "circular", "reflect", "replicate")

PaddingLike = str | int | tuple[int, int]
PaddingMode = Literal["zeros", "circular", "reflect", "replicate"]


@dataclasses.dataclass(frozen=True)
class ConvOptions:
    """The normalised, hashable options of a 1-D convolution.

    Build it with :func:`conv_options`, which checks and canonicalises every
    argument once; inner code sees only this form.
    """

    stride: int = 1
    padding: str | tuple[int, int] = "valid"
    dilation: int = 1
    groups: int = 1
    flip: bool = False
    padding_mode: str = "zeros"

    def geometry(self, in_length: int, kernel_size: int, *, fn: str = "conv1d") -> Geometry:
        """Resolves the padding for an input length and kernel size."""
        return Geometry.resolve(self, in_length, kernel_size, fn=fn)


def conv_options(
    *,
    stride=1,
    padding: PaddingLike = "valid",
    dilation=1,
    groups=1,
    flip: bool = False,
    padding_mode: str = "zeros",
    fn: str = "conv1d",
) -> ConvOptions:
    """Checks and canonicalises convolution options.

    Raises:
      TypeError: a size that is not an integer, or ``flip`` that is not a bool.
      ValueError: a size < 1, an unknown padding or padding mode, negative padding.
    """
    stride = _checks.as_positive_int(fn, "stride", stride)
    dilation = _checks.as_positive_int(fn, "dilation", dilation)
    groups = _checks.as_positive_int(fn, "groups", groups)
    if not isinstance(flip, (bool, np.bool_)):
        raise TypeError(f"{fn}: `flip` must be a bool, got {flip!r}.")
    padding_mode = _checks.check_choice(fn, "padding_mode", padding_mode, PADDING_MODES)
    return ConvOptions(
        stride=stride,
        padding=_normalise_padding(fn, padding),
        dilation=dilation,
        groups=groups,
        flip=bool(flip),
        padding_mode=padding_mode,
    )


def _normalise_padding(fn: str, padding) -> str | tuple[int, int]:
    if isinstance(padding, str):
        return _checks.check_choice(fn, "padding", padding, PADDING_NAMES)
    if isinstance(padding, (int, np.integer)) and not isinstance(padding, (bool, np.bool_)):
        p = _checks.as_positive_int(fn, "padding", padding, minimum=0)
        return (p, p)
    if isinstance(padding, (tuple, list)) and len(padding) == 2:
        lo = _checks.as_positive_int(fn, "padding[0]", padding[0], minimum=0)
        hi = _checks.as_positive_int(fn, "padding[1]", padding[1], minimum=0)
        return (lo, hi)
    # A float, bool, None or other non-sequence is the wrong type; a pair of the
    # wrong length is a wrong value.
    error = ValueError if isinstance(padding, (tuple, list)) else TypeError
    raise error(
        f"{fn}: `padding` must be one of {', '.join(repr(p) for p in PADDING_NAMES)}, "
        f"a non-negative int, or a pair (lo, hi) of non-negative ints, got {padding!r}."
    )


@dataclasses.dataclass(frozen=True)
class Geometry:
    """A resolved 1-D convolution: lengths, explicit padding and the tap tables.

    Attributes:
      in_length: ``L``.
      kernel_size: ``K``.
      out_length: ``Lout``.
      pad_lo, pad_hi: explicit padding before / after the input.
      stride, dilation, flip, padding_mode: as in :class:`ConvOptions`.
    """

    in_length: int
    kernel_size: int
    out_length: int
    pad_lo: int
    pad_hi: int
    stride: int
    dilation: int
    flip: bool
    padding_mode: str

    @staticmethod
    def resolve(opts: ConvOptions, in_length: int, kernel_size: int, *, fn: str) -> Geometry:
        L, K, s, d = int(in_length), int(kernel_size), opts.stride, opts.dilation
        if L < 1:
            raise ValueError(f"{fn}: the input length must be >= 1, got {L}.")
        if K < 1:
            raise ValueError(f"{fn}: the kernel size must be >= 1, got {K}.")
        eff = d * (K - 1) + 1
        p = opts.padding
        if p == "valid":
            lo = hi = 0
        elif p == "full":
            lo = hi = eff - 1
        elif p == "causal":
            lo, hi = eff - 1, 0
        elif p in ("same", "same_lower"):
            out = -(-L // s)
            total = max((out - 1) * s + eff - L, 0)
            small, big = total // 2, total - total // 2
            lo, hi = (small, big) if p == "same" else (big, small)
        else:
            assert isinstance(p, tuple)  # normalised by conv_options: a name or (lo, hi)
            lo, hi = p
        if opts.padding_mode == "reflect" and max(lo, hi) > L - 1:
            raise ValueError(
                f"{fn}: `padding_mode`='reflect' needs padding < input length {L} on each "
                f"side, got padding (lo, hi) = ({lo}, {hi}) from padding={opts.padding!r}."
            )
        padded = L + lo + hi
        if padded < eff:
            raise ValueError(
                f"{fn}: the kernel is longer than the padded input, so the output would be "
                f"empty: effective kernel length dilation*(K-1)+1 = {eff} (K={K}, "
                f"dilation={d}) > padded input length {padded} (L={L}, padding={opts.padding!r})."
            )
        out_length = (padded - eff) // s + 1
        return Geometry(L, K, out_length, lo, hi, s, d, opts.flip, opts.padding_mode)

    @property
    def padded_length(self) -> int:
        return self.in_length + self.pad_lo + self.pad_hi

    def padded_source(self) -> np.ndarray:
        """``(L + pad_lo + pad_hi,)`` int array: the input index each padded
        position copies, or -1 where it is a zero."""
        L = self.in_length
        src = np.arange(self.padded_length) - self.pad_lo
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

    def tap_positions(self) -> np.ndarray:
        """``(Lout, K)`` int array: the padded position read by output ``o``, tap ``k``
        (``k`` indexes the filter as given, so flip is already applied)."""
        k = np.arange(self.kernel_size)
        if self.flip:
            k = k[::-1]
        return np.arange(self.out_length)[:, None] * self.stride + k[None, :] * self.dilation

    def tap_sources(self) -> np.ndarray:
        """``(Lout, K)`` int array: the input index read by output ``o``, tap ``k``,
        or -1 where the tap reads a zero of the padding."""
        return self.padded_source()[self.tap_positions()]
