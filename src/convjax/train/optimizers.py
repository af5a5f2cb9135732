"""Optimizers that are not in optax: :func:`beta_lasso` (Neyshabur, NeurIPS 2020).

Each is an ``optax.GradientTransformation`` (a NamedTuple of the pure functions
``init`` and ``update``); hyperparameters live in the closure and may be Python
numbers, optax schedules or (inside :func:`convjax.train.fit_many`'s optimizer
factory) traced scalars, so a sweep over them runs vmapped.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax


class BetaLassoState(NamedTuple):
    """State of :func:`beta_lasso`.

    Attributes:
      count: int32 ``()``, the number of updates done (the step a schedule sees).
    """

    count: jax.Array  # type: ignore[assignment]  # the field shadows tuple.count


def _check_hyper(name: str, value, *, positive: bool) -> None:
    """Checks a concrete scalar hyperparameter; traced or array values only by shape."""
    fn = "beta_lasso"
    if isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{fn}: `{name}` must be a real number, got {value!r}.")
    if isinstance(value, (int, float, np.integer, np.floating)):
        v = float(value)
        if not math.isfinite(v) or v < 0 or (positive and v == 0):
            rule = "> 0" if positive else ">= 0"
            raise ValueError(f"{fn}: `{name}` must be a finite number {rule}, got {value!r}.")
        return
    if hasattr(value, "shape") and hasattr(value, "dtype"):
        if np.shape(value) != ():
            raise ValueError(
                f"{fn}: `{name}` must be a scalar, got an array of shape "
                f"{tuple(np.shape(value))}; for one value per run use fit_many's `hyper` "
                f"with an optimizer factory."
            )
        if not jnp.issubdtype(jnp.result_type(value), jnp.floating) and not jnp.issubdtype(
            jnp.result_type(value), jnp.integer
        ):
            raise TypeError(
                f"{fn}: `{name}` must be a real scalar, got dtype {jnp.result_type(value)}."
            )
        return
    raise TypeError(
        f"{fn}: `{name}` must be a real number or a scalar array, got {value!r} of type "
        f"{type(value).__name__}."
    )


def beta_lasso(
    learning_rate: float | Callable[[jax.Array], jax.Array],
    lam: float,
    beta: float,
) -> optax.GradientTransformation:
    """beta-LASSO (Neyshabur, "Towards learning convolutions from scratch", NeurIPS 2020).

    One step on parameters ``theta`` with gradient ``g`` and learning rate ``eta``::

        theta' = theta - eta * (g + lam * sign(theta))      # SGD on loss + lam * |theta|_1
        theta' = 0   wherever |theta'| < beta * lam         # hard threshold

    ``sign(0) = 0``, so a weight at zero stays at zero unless one gradient step
    carries it beyond the threshold. ``lam = 0`` is plain SGD (nothing is below a
    zero threshold). The transformation returns the update ``theta' - theta``
    (``-theta`` exactly for the zeroed entries), so ``optax.apply_updates`` lands
    on exact zeros. Every leaf of ``params`` is treated alike (biases included);
    the hyperparameters are cast to each leaf's dtype.

    Args:
      learning_rate: ``eta > 0``, a number or an optax schedule ``count -> eta``.
      lam: ``lambda >= 0``, the L1 coefficient (also scales the threshold).
      beta: ``beta >= 0``; weights with ``|theta'| < beta * lam`` are set to 0.
        Neyshabur uses ``beta = 50``.

      Numbers are checked here; scalar arrays (e.g. fit_many's ``hyper`` entries,
      traced inside the compiled step) are checked by shape only.

    Returns:
      ``optax.GradientTransformation`` with state :class:`BetaLassoState`. Its
      ``update(grads, state, params)`` requires ``params``.

    Raises:
      ValueError: a negative or non-finite hyperparameter, ``learning_rate == 0``,
        a non-scalar array hyperparameter; at update time, ``params`` missing.
      TypeError: a hyperparameter that is not a real number, scalar array or callable.

    Example:
      >>> import jax.numpy as jnp, optax
      >>> opt = beta_lasso(0.1, lam=0.5, beta=1.0)
      >>> p = jnp.array([1.0, 0.3, -2.0])
      >>> u, _ = opt.update(jnp.array([1.0, 0.0, 0.0]), opt.init(p), p)
      >>> [round(v, 4) for v in optax.apply_updates(p, u).tolist()]  # 0.25 < 0.5 -> 0
      [0.85, 0.0, -1.95]
    """
    if not callable(learning_rate):
        _check_hyper("learning_rate", learning_rate, positive=True)
    _check_hyper("lam", lam, positive=False)
    _check_hyper("beta", beta, positive=False)

    def init(params):
        del params
        return BetaLassoState(count=jnp.zeros((), jnp.int32))

    def update(updates, state, params=None):
        if params is None:
            raise ValueError(
                "beta_lasso: `params` are required by update(grads, state, params) (the "
                "L1 sign and the threshold act on the parameters), got None."
            )
        eta = learning_rate(state.count) if callable(learning_rate) else learning_rate

        def leaf(g, p):
            dt = jnp.result_type(p)
            step = jnp.asarray(eta, dt) * (g.astype(dt) + jnp.asarray(lam, dt) * jnp.sign(p))
            new = p - step
            keep = jnp.abs(new) >= jnp.asarray(beta, dt) * jnp.asarray(lam, dt)
            return jnp.where(keep, -step, -p)

        out = jax.tree.map(leaf, updates, params)
        return out, BetaLassoState(count=optax.safe_int32_increment(state.count))

    return optax.GradientTransformation(init, update)


__all__ = ["BetaLassoState", "beta_lasso"]
