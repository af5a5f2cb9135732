"""``convolve`` and ``correlate``: 1-D signal ops with numpy's semantics.

Both equal ``numpy.convolve`` / ``numpy.correlate`` for real 1-D inputs,
including numpy's quirks, which are kept on purpose so results can be compared
one to one:

* ``mode="same"`` returns ``max(M, N)`` samples; for an even-length kernel the
  odd extra zero goes at the START (``padding="same_lower"`` in :func:`conv1d`
  terms; XLA/torch ``"same"`` puts it at the end).
* If the second argument is longer than the first, numpy swaps them.
  Convolution commutes, so ``convolve`` is unaffected; ``correlate(a, v)`` then
  returns ``correlate(v, a)`` reversed, which is the same sequence of lags
  ``c[k] = sum_n a[n + k] * v[n]`` numpy documents.
* Complex inputs (numpy conjugates ``v`` in ``correlate``) are not supported
  and raise ``TypeError``; integer inputs raise ``TypeError`` instead of being
  silently promoted.
"""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np

from convjax import _checks
from convjax.conv import conv1d

MODES = ("full", "same", "valid")
_PADDING = {"full": "full", "same": "same_lower", "valid": "valid"}


def _check_pair(fn: str, a, v, mode):
    mode = _checks.check_choice(fn, "mode", mode, MODES)
    dtype = _checks.result_dtype(fn, a=a, v=v)
    _checks.check_ndim(fn, "a", a, 1, "(N,)")
    _checks.check_ndim(fn, "v", v, 1, "(M,)")
    for name, arr in (("a", a), ("v", v)):
        if np.shape(arr)[0] == 0:
            raise ValueError(f"{fn}: `{name}` must not be empty, got shape (0,).")
    return mode, jnp.asarray(a, dtype), jnp.asarray(v, dtype)


def _slide(signal, kernel, mode, flip, precision, algorithm):
    y = conv1d(
        signal[:, None], kernel[:, None, None], padding=_PADDING[mode], flip=flip,
        precision=precision, algorithm=algorithm,
    )
    return y[:, 0]


def convolve(a, v, mode: str = "full", *, precision=None, algorithm: str = "auto"):
    """Discrete linear convolution of two 1-D sequences, as ``numpy.convolve``.

    ``(a * v)[n] = sum_m a[m] * v[n - m]``.

    Args:
      a: shape ``(N,)``, real floating.
      v: shape ``(M,)``, real floating.
      mode: ``"full"`` (``N+M-1`` outputs), ``"same"`` (``max(N, M)``) or
        ``"valid"`` (``max(N, M) - min(N, M) + 1``).
      precision, algorithm: as in :func:`convjax.conv1d`.

    Returns:
      1-D array in the promoted dtype.

    Example:
      >>> import jax.numpy as jnp
      >>> convolve(jnp.array([1., 2., 3., 4.]), jnp.array([5., 6., 7.]))
      Array([ 5., 16., 34., 52., 45., 28.], dtype=float32)
    """
    mode, a, v = _check_pair("convolve", a, v, mode)
    if v.shape[0] > a.shape[0]:
        a, v = v, a
    return _slide(a, v, mode, True, precision, algorithm)


def correlate(a, v, mode: str = "valid", *, precision=None, algorithm: str = "auto"):
    """Cross-correlation of two 1-D sequences, as ``numpy.correlate`` (real inputs).

    ``c[k] = sum_n a[n + k] * v[n]``; no flip.

    Args:
      a: shape ``(N,)``, real floating.
      v: shape ``(M,)``, real floating.
      mode: ``"valid"`` (default, as numpy), ``"same"`` or ``"full"``.
      precision, algorithm: as in :func:`convjax.conv1d`.

    Returns:
      1-D array in the promoted dtype.

    Example:
      >>> import jax.numpy as jnp
      >>> correlate(jnp.array([1., 2., 3., 4.]), jnp.array([5., 6., 7.]))
      Array([38., 56.], dtype=float32)
    """
    mode, a, v = _check_pair("correlate", a, v, mode)
    if v.shape[0] > a.shape[0]:
        return _slide(v, a, mode, False, precision, algorithm)[::-1]
    return _slide(a, v, mode, False, precision, algorithm)
