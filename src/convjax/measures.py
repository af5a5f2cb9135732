"""How local a weight vector is: small pure measures for the experiments.

A hidden unit of a fully connected layer on a 1-D input of ``n`` positions has a
weight vector ``w`` of shape ``(n,)`` (its *receptive field*). Two measures say
whether that receptive field is localised:

* :func:`inverse_participation_ratio` -- ``IPR(w) = sum_i w_i**4 / (sum_i w_i**2)**2``.
  It lies in ``[1/n, 1]``: ``1/n`` for a vector spread evenly over all positions,
  ``1`` for a vector on a single position, about ``1/m`` for a vector spread
  evenly over ``m`` positions. A random isotropic Gaussian vector has the mean
  :func:`gaussian_ipr` ``= 3 / (n + 2)``, the reference for "not localised".
* :func:`window_shares` / :func:`best_window` -- the share of the weight *mass*
  ``|w_i|**power`` (``power=2``: the squared norm, ``power=1``: the l1 mass) that
  falls inside a window of ``width`` consecutive positions, for every window, and
  for the best one. Windows wrap around the ends with ``periodic=True`` (the
  right choice for data on a ring, such as :func:`convjax.data.nlgp`). A weight
  vector spread evenly has best share ``width / n``.

Every function works on a batch: the positions are on ``axis`` (default the last)
and every other axis is a batch axis, so ``inverse_participation_ratio(W)`` with
``W`` of shape ``(hidden, n)`` gives one value per hidden unit. All-zero vectors
get IPR 0 and share 0 (no mass, nothing localised) instead of NaN. The functions
are jit-, vmap- and grad-friendly; the settings (``axis``, ``width``, ``power``,
``periodic``) are static.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np

from convjax import _checks


def _positions_last(fn: str, w, axis) -> jax.Array:
    """Checks ``w`` (floating, rank >= 1) and moves the positions ``axis`` last."""
    _checks.check_floating(fn, "w", w)
    _checks.check_min_ndim(fn, "w", w, 1, "(..., n)")
    ndim = np.ndim(w)
    if isinstance(axis, (bool, np.bool_)) or not isinstance(axis, (int, np.integer)):
        raise TypeError(f"{fn}: `axis` must be an int, got {axis!r} of type {type(axis).__name__}.")
    if not -ndim <= int(axis) < ndim:
        raise ValueError(
            f"{fn}: `axis` must be in [-{ndim}, {ndim}) for `w` of shape "
            f"{tuple(np.shape(w))}, got {axis}."
        )
    w = jnp.asarray(w)
    if w.shape[int(axis)] < 1:
        raise ValueError(
            f"{fn}: `w` must have at least one position along `axis`={axis}, got shape "
            f"{tuple(w.shape)}."
        )
    return jnp.moveaxis(w, int(axis), -1)


def _safe_ratio(num, den):
    """``num / den`` where ``den > 0``, 0 elsewhere (no NaN in values or gradients)."""
    ok = den > 0
    return jnp.where(ok, num / jnp.where(ok, den, 1.0), 0.0)


def inverse_participation_ratio(w, *, axis: int = -1):
    """Inverse participation ratio ``sum_i w_i**4 / (sum_i w_i**2)**2`` along ``axis``.

    Args:
      w: weights, shape ``(..., n, ...)`` with the ``n`` positions on ``axis``;
        real floating.
      axis: the positions axis (default ``-1``).

    Returns:
      ``w.shape`` without ``axis``, dtype of ``w``: values in ``[1/n, 1]`` (``1``: all
      the weight on one position; ``1/n``: spread evenly), ``0`` for an all-zero
      vector.

    Raises:
      TypeError: non-floating ``w``, non-integer ``axis``.
      ValueError: ``w`` of rank 0 or ``axis`` out of range.

    Example:
      >>> import jax.numpy as jnp
      >>> inverse_participation_ratio(jnp.array([[0.0, 2.0, 0.0, 0.0], [1.0, 1.0, 1.0, 1.0]]))
      Array([1.  , 0.25], dtype=float32)
    """
    w = _positions_last("inverse_participation_ratio", w, axis)
    w2 = w * w
    return _safe_ratio(jnp.sum(w2 * w2, axis=-1), jnp.sum(w2, axis=-1) ** 2)


def gaussian_ipr(n: int) -> float:
    """Mean IPR of an isotropic Gaussian vector of ``n`` entries: ``3 / (n + 2)``.

    For ``w ~ N(0, I_n)`` the direction ``u = w / |w|`` is uniform on the sphere and
    ``E[u_i**4] = 3 / (n (n + 2))``, so ``E[IPR] = n * 3 / (n (n + 2))``. It is the
    reference for a receptive field that is NOT localised (about ``3 / n``, three
    times the minimum ``1 / n``).

    Args:
      n: number of positions, int >= 1.

    Returns:
      A Python float.

    Example:
      >>> gaussian_ipr(40)
      0.07142857142857142
    """
    n = _checks.as_positive_int("gaussian_ipr", "n", n)
    return 3.0 / (n + 2)


def _check_window(fn: str, width, n: int, power) -> tuple[int, float]:
    width = _checks.as_positive_int(fn, "width", width)
    if width > n:
        raise ValueError(f"{fn}: `width` must be <= the number of positions n={n}, got {width}.")
    if isinstance(power, (bool, np.bool_)) or not isinstance(power, (int, float, np.number)):
        raise TypeError(f"{fn}: `power` must be a positive number, got {power!r}.")
    power = float(power)
    if not (math.isfinite(power) and power > 0):
        raise ValueError(f"{fn}: `power` must be a finite number > 0, got {power!r}.")
    return width, power


def _mass(w, power: float):
    a = jnp.abs(w)
    return a * a if power == 2.0 else (a if power == 1.0 else a**power)


def window_shares(w, width: int, *, axis: int = -1, periodic: bool = True, power: float = 2):
    """Share of the weight mass ``|w_i|**power`` inside every window of ``width``
    consecutive positions.

    Window ``j`` holds positions ``j, j+1, ..., j+width-1``: taken modulo ``n``
    (``n`` windows) with ``periodic=True``, or only the ``n - width + 1`` windows
    that fit with ``periodic=False``.

    Args:
      w: weights, shape ``(..., n, ...)`` with the ``n`` positions on ``axis``.
      width: window length, ``1 <= width <= n``.
      axis: the positions axis (default ``-1``).
      periodic: whether windows wrap around the ends (data on a ring).
      power: the mass of position ``i`` is ``|w_i|**power``; ``2`` (default) for
        shares of the squared norm, ``1`` for shares of the l1 mass.

    Returns:
      ``w.shape`` without ``axis``, plus a last axis of ``n`` windows
      (``n - width + 1`` with ``periodic=False``); values in ``[0, 1]``, all ``0`` for
      an all-zero vector.

    Raises:
      TypeError: non-floating ``w``, non-integer ``axis`` / ``width``, non-numeric
        ``power``.
      ValueError: ``width`` outside ``[1, n]``, ``power <= 0``, ``axis`` out of range.

    Example:
      >>> import jax.numpy as jnp
      >>> window_shares(jnp.array([1.0, 0.0, 0.0, 1.0]), 2)
      Array([0.5, 0. , 0.5, 1. ], dtype=float32)
    """
    fn = "window_shares"
    w = _positions_last(fn, w, axis)
    n = w.shape[-1]
    width, power = _check_window(fn, width, n, power)
    m = _mass(w, power)
    total = jnp.sum(m, axis=-1, keepdims=True)
    if periodic:
        ext = jnp.concatenate([m, m[..., : width - 1]], axis=-1)
        n_win = n
    else:
        ext = m
        n_win = n - width + 1
    inside = ext[..., 0:n_win]
    for j in range(1, width):
        inside = inside + ext[..., j : j + n_win]
    return _safe_ratio(inside, jnp.broadcast_to(total, inside.shape))


def best_window(w, width: int, *, axis: int = -1, periodic: bool = True, power: float = 2):
    """The window of ``width`` consecutive positions holding the most weight mass.

    Args: as :func:`window_shares`.

    Returns:
      ``(share, start)``, both of shape ``w.shape`` without ``axis``: the largest
      share of the mass ``|w_i|**power`` in one window (in ``[width / n, 1]`` for a
      nonzero vector with ``periodic=True``; ``0`` for an all-zero vector) and the
      first position of that window (int32; the smallest such start on ties).

    Example:
      >>> import jax.numpy as jnp
      >>> share, start = best_window(jnp.array([3.0, 0.0, 0.0, 0.0, 4.0]), 2)
      >>> float(share), int(start)
      (1.0, 4)
    """
    shares = window_shares(w, width, axis=axis, periodic=periodic, power=power)
    return jnp.max(shares, axis=-1), jnp.argmax(shares, axis=-1).astype(jnp.int32)


__all__ = [
    "best_window",
    "gaussian_ipr",
    "inverse_participation_ratio",
    "window_shares",
]
