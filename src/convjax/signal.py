"""``convolve`` and ``correlate``: 1-D signal ops with numpy's semantics.

Both equal ``numpy.convolve`` / ``numpy.correlate``, including numpy's quirks,
which are kept on purpose so results can be compared one to one:

* Inputs are array-likes: jax or numpy arrays, lists, tuples; ``convolve`` also
  takes scalars (numpy reads them as length-1 sequences), ``correlate`` does not
  (numpy refuses them). Empty inputs raise ``ValueError``.
* ``mode`` is ``"full"``, ``"same"`` or ``"valid"`` spelled exactly, or numpy's
  integer codes ``0`` (valid), ``1`` (same), ``2`` (full); anything else raises
  ``ValueError`` (a bad string or integer) or ``TypeError`` (another type, ``None``).
* ``mode="same"`` returns ``max(M, N)`` samples; for an even-length kernel the
  odd extra zero goes at the START (``padding="same_lower"`` in :func:`conv1d`
  terms; XLA/torch ``"same"`` puts it at the end).
* If the second argument is longer than the first, numpy swaps them.
  Convolution commutes, so ``convolve`` is unaffected; ``correlate(a, v)`` then
  returns ``correlate(conj(v), a)`` (no conjugation) reversed.
* ``correlate`` conjugates its second argument: ``c[k] = sum_n a[n + k] * conj(v[n])``
  (before the swap above, so after a swap it is ``a`` that is not conjugated).

Dtypes follow ``jnp.convolve``: the result is the promoted dtype of ``a`` and
``v`` if it is inexact (floating or complex); bool and integer inputs give
float32, or float64 for 64-bit integers (with ``jax_enable_x64``). Integer and
bool inputs are computed EXACTLY, by a direct sum in the widest integer jax has
enabled (int64/uint64 with ``jax_enable_x64``, else int32/uint32), never through
an FFT, then rounded once to the float result. This holds for every output whose
sum of absolute products is below ``2**62`` (``2**30`` without x64, e.g. int16
audio with a long filter may exceed it); such outputs, which could overflow the
integer, are instead the floating sum, as ``jnp.convolve`` computes them.
Floating and complex inputs go through :func:`conv1d` (complex ones as two
real channels), with its ``precision`` and ``algorithm``.
"""

from __future__ import annotations

import operator

import jax
import jax.numpy as jnp
import numpy as np

from convjax import _checks
from convjax.convolution import ALGORITHMS, conv1d

MODES = ("full", "same", "valid")
#: numpy's integer codes for the modes (``numpy._core.multiarray`` order).
_INT_MODES = ("valid", "same", "full")
_PADDING = {"full": "full", "same": "same_lower", "valid": "valid"}


def _check_mode(fn: str, mode) -> str:
    """numpy's mode converter: an exact name, or the integer codes 0, 1, 2."""
    if isinstance(mode, str):
        if mode not in MODES:
            raise ValueError(
                f"{fn}: `mode` must be one of {', '.join(repr(c) for c in MODES)}, got {mode!r}."
            )
        return mode
    if not isinstance(mode, (bool, np.bool_)):
        try:
            code = operator.index(mode)
        except TypeError:
            pass
        else:
            if code not in (0, 1, 2):
                raise ValueError(
                    f"{fn}: `mode` as an integer must be numpy's code 0 ('valid'), "
                    f"1 ('same') or 2 ('full'), got {code}."
                )
            return _INT_MODES[code]
    raise TypeError(
        f"{fn}: `mode` must be a string ('full', 'same', 'valid') or numpy's integer "
        f"code (0, 1, 2), got {mode!r} of type {type(mode).__name__}."
    )


def _as_array(fn: str, name: str, x, scalar_ok: bool):
    """An array-like as a jax array (Python scalars stay weakly typed, as in jnp);
    a scalar becomes a length-1 sequence where ``scalar_ok`` (numpy.convolve)."""
    if hasattr(x, "dtype") and np.dtype(x.dtype).kind not in "biufc":
        raise TypeError(
            f"{fn}: `{name}` must have a numeric dtype (bool, integer, floating or "
            f"complex), got {np.dtype(x.dtype)}."
        )
    if not isinstance(x, jax.Array):
        try:
            x = jnp.asarray(x)
        except (TypeError, ValueError, OverflowError) as e:
            raise type(e)(
                f"{fn}: `{name}` must be an array-like of numbers (array, list, tuple"
                f"{', scalar' if scalar_ok else ''}), got {type(x).__name__} "
                f"{_short(x)}: {e}"
            ) from None
    return x.reshape(1) if scalar_ok and x.ndim == 0 else x


def _short(x) -> str:
    s = repr(x)
    return s if len(s) <= 60 else s[:57] + "..."


def _check_pair(fn: str, a, v, mode, algorithm, scalar_ok: bool):
    """Checks and converts both inputs; returns ``(mode, a, v, result dtype)``."""
    mode = _check_mode(fn, mode)
    _checks.check_choice(fn, "algorithm", algorithm, ALGORITHMS)
    a = _as_array(fn, "a", a, scalar_ok)
    v = _as_array(fn, "v", v, scalar_ok)
    _checks.check_ndim(fn, "a", a, 1, "(N,)")
    _checks.check_ndim(fn, "v", v, 1, "(M,)")
    for name, arr in (("a", a), ("v", v)):
        if arr.shape[0] == 0:
            raise ValueError(
                f"{fn}: `{name}` must not be empty, got shape (0,) "
                f"(numpy.{fn}: {name} cannot be empty)."
            )
    return mode, a, v, _result_dtype(a, v)


def _result_dtype(a, v):
    """``jnp.convolve``'s promotion: inexact stays, bool and integers of at most
    32 bits give float32, 64-bit integers float64 (float32 without x64)."""
    dtype = jnp.result_type(a, v)
    if jnp.issubdtype(dtype, jnp.inexact):
        return dtype
    wide = jnp.dtype(dtype).itemsize == 8
    return jax.dtypes.canonicalize_dtype(jnp.float64 if wide else jnp.float32)


def _exact_integer_slide(signal, kernel, mode: str, out_dtype):
    """``out[i] = sum_j xp[i + j] * kernel[j]`` for integer inputs, one tap at a time
    (no FFT): summed in the widest enabled integer, exact wherever
    ``sum_j |xp[i + j] * kernel[j]| < 2**(bits - 2)`` (so no partial sum can
    overflow), else (huge values) the sum in ``out_dtype`` as ``jnp.convolve``."""
    promoted = jnp.result_type(signal, kernel)
    unsigned = promoted == jnp.bool_ or jnp.issubdtype(promoted, jnp.unsignedinteger)
    acc = jax.dtypes.canonicalize_dtype(jnp.uint64 if unsigned else jnp.int64)
    m = kernel.shape[0]
    lo, hi = {"full": (m - 1, m - 1), "same": (m // 2, m - 1 - m // 2), "valid": (0, 0)}[mode]
    xi, ki = jnp.pad(signal.astype(acc), (lo, hi)), kernel.astype(acc)
    xf, kf = jnp.pad(signal.astype(out_dtype), (lo, hi)), kernel.astype(out_dtype)
    n_out = xi.shape[0] - m + 1

    def tap(j, sums):
        exact, approx, bound = sums
        term = kf[j] * jax.lax.dynamic_slice_in_dim(xf, j, n_out)
        exact = exact + ki[j] * jax.lax.dynamic_slice_in_dim(xi, j, n_out)
        return exact, approx + term, bound + jnp.abs(term)

    zeros = (jnp.zeros(n_out, acc), jnp.zeros(n_out, out_dtype), jnp.zeros(n_out, out_dtype))
    exact, approx, bound = jax.lax.fori_loop(0, m, tap, zeros)
    fits = bound < 2.0 ** (jnp.iinfo(acc).bits - 2)
    return jnp.where(fits, exact.astype(out_dtype), approx)


def _float_slide(signal, kernel, mode: str, flip: bool, precision, algorithm: str):
    """The same sliding sum through :func:`conv1d`; complex inputs as two real channels."""
    padding = _PADDING[mode]
    if not jnp.iscomplexobj(signal):
        y = conv1d(
            signal[:, None],
            kernel[:, None, None],
            padding=padding,
            flip=flip,
            precision=precision,
            algorithm=algorithm,
        )
        return y[:, 0]
    # (xr + i xi)(kr + i ki) = (xr kr - xi ki) + i (xr ki + xi kr): channels (re, im)
    # in and out, w[:, cin, cout].
    x = jnp.stack([signal.real, signal.imag], axis=-1)
    kr, ki = kernel.real, kernel.imag
    w = jnp.stack([jnp.stack([kr, ki], -1), jnp.stack([-ki, kr], -1)], axis=1)
    y = conv1d(x, w, padding=padding, flip=flip, precision=precision, algorithm=algorithm)
    return jax.lax.complex(y[:, 0], y[:, 1])


def _slide(signal, kernel, mode, flip, dtype, precision, algorithm):
    """Correlates (``flip=False``) or convolves ``signal`` (the longer) with ``kernel``."""
    if not jnp.issubdtype(jnp.result_type(signal, kernel), jnp.inexact):
        return _exact_integer_slide(signal, kernel[::-1] if flip else kernel, mode, dtype)
    return _float_slide(
        signal.astype(dtype), kernel.astype(dtype), mode, flip, precision, algorithm
    )


def convolve(a, v, mode="full", *, precision=None, algorithm: str = "auto"):
    """Discrete linear convolution of two 1-D sequences, as ``numpy.convolve``.

    ``(a * v)[n] = sum_m a[m] * v[n - m]``. See the module docstring for the
    dtypes, the exact integer route and numpy's conventions kept here.

    Args:
      a: shape ``(N,)``, array-like (array, list, tuple or scalar), any numeric
        dtype; a scalar is a length-1 sequence.
      v: shape ``(M,)``, the same kinds as ``a``.
      mode: ``"full"`` (``N+M-1`` outputs), ``"same"`` (``max(N, M)``) or
        ``"valid"`` (``max(N, M) - min(N, M) + 1``); or numpy's codes 2, 1, 0.
      precision, algorithm: as in :func:`convjax.conv1d`, for floating and
        complex inputs (integer inputs always take the exact integer route).

    Returns:
      1-D array: float (or complex) in ``jnp.convolve``'s promoted dtype.

    Raises:
      ValueError: rank other than 1, an empty input, an unknown mode name or code.
      TypeError: a non-numeric input, a mode that is neither a string nor an int.

    Example:
      >>> convolve([1, 2, 3, 4], [5, 6, 7])
      Array([ 5., 16., 34., 52., 45., 28.], dtype=float32)
      >>> convolve([1., 2., 3., 4.], [5., 6., 7.], "valid")
      Array([34., 52.], dtype=float32)
    """
    mode, a, v, dtype = _check_pair("convolve", a, v, mode, algorithm, True)
    if v.shape[0] > a.shape[0]:
        a, v = v, a
    return _slide(a, v, mode, True, dtype, precision, algorithm)


def correlate(a, v, mode="valid", *, precision=None, algorithm: str = "auto"):
    """Cross-correlation of two 1-D sequences, as ``numpy.correlate``.

    ``c[k] = sum_n a[n + k] * conj(v[n])``; no flip. If ``v`` is longer than
    ``a``, numpy's swap: ``correlate(conj(v), a)`` without conjugation, reversed.

    Args:
      a: shape ``(N,)``, array-like (array, list or tuple; not a scalar, as in
        numpy), any numeric dtype.
      v: shape ``(M,)``, the same kinds as ``a``.
      mode: ``"valid"`` (default, as numpy), ``"same"`` or ``"full"``; or
        numpy's codes 0, 1, 2.
      precision, algorithm: as in :func:`convjax.conv1d`, for floating and
        complex inputs (integer inputs always take the exact integer route).

    Returns:
      1-D array: float (or complex) in ``jnp.correlate``'s promoted dtype.

    Raises:
      ValueError: rank other than 1 (scalars included), an empty input, an
        unknown mode name or code.
      TypeError: a non-numeric input, a mode that is neither a string nor an int.

    Example:
      >>> correlate([1, 2, 3, 4], [5, 6, 7])
      Array([38., 56.], dtype=float32)
      >>> correlate([1 + 1j, 2, 3 - 1j], [0, 1, 0.5j], "full")
      Array([0.5-0.5j, 1. +0.j , 1.5-1.5j, 3. -1.j , 0. +0.j ], dtype=complex64)
    """
    mode, a, v, dtype = _check_pair("correlate", a, v, mode, algorithm, False)
    v = jnp.conj(v) if jnp.iscomplexobj(v) else v
    if v.shape[0] > a.shape[0]:
        return _slide(v, a, mode, False, dtype, precision, algorithm)[::-1]
    return _slide(a, v, mode, False, dtype, precision, algorithm)
