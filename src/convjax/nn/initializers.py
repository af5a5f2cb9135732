"""Weight initialisers whose fans come from the layer's STRUCTURE, not its shape.

An initialiser here is a pure function
``init(key, shape, dtype, *, fan_in, fan_out) -> array``. The layer passes the
fans it knows from its tying structure:

============================  ==========================  =========================
layer                         ``fan_in``                  ``fan_out``
============================  ==========================  =========================
convolutional (tied)          ``K * Cin / groups``        ``K * Cout / groups / stride``
locally connected (untied)    ``K * Cin / groups``        ``K * Cout / groups / stride``
fully connected               ``L * Cin`` (inputs)        ``Lout * Cout`` (outputs)
============================  ==========================  =========================

``fan_in`` is the number of structural nonzeros in a row of the layer's dense
matrix (one output unit), ``fan_out`` the (interior, average) number in a column
(one input unit). Deriving the fans from the shape of the weight array goes wrong
for the untied layer, whose weight ``(Lout, K, Cin/g, Cout)`` has an extra axis
that is NOT summed over by any one output: counting it (as ``flax.linen.ConvLocal``
does through its flattened kernel) makes the weights ``sqrt(Lout)`` times too small.
With the fans above a convolution, its locally connected twin and a fully
connected layer all start with output variance ``scale * Var(x)`` per unit.
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np

from convjax import _checks

Initializer = Callable[..., jax.Array]

MODES = ("fan_in", "fan_out", "fan_avg")
DISTRIBUTIONS = ("truncated_normal", "normal", "uniform")

# std of a standard normal truncated to [-2, 2]; dividing by it restores unit variance.
_TRUNC_STD = 0.87962566103423978


def variance_scaling(scale: float, mode: str, distribution: str) -> Initializer:
    """Variance-scaling initialiser: ``Var(w) = scale / n`` with ``n`` the fan
    chosen by ``mode``.

    Args:
      scale: positive float.
      mode: ``"fan_in"``, ``"fan_out"`` or ``"fan_avg"`` (mean of the two).
      distribution: ``"truncated_normal"`` (at two standard deviations, rescaled
        to the target variance), ``"normal"`` or ``"uniform"``.

    Returns:
      ``init(key, shape, dtype, *, fan_in, fan_out) -> array`` of ``shape``.

    Raises:
      ValueError: non-positive scale, unknown mode or distribution.

    Example:
      >>> import jax
      >>> init = variance_scaling(2.0, "fan_in", "normal")
      >>> init(jax.random.key(0), (3, 4, 8), "float32", fan_in=12, fan_out=24).shape
      (3, 4, 8)
    """
    fn = "variance_scaling"
    if isinstance(scale, bool) or not isinstance(scale, (int, float, np.floating, np.integer)):
        raise TypeError(f"{fn}: `scale` must be a float, got {scale!r}.")
    if not scale > 0:
        raise ValueError(f"{fn}: `scale` must be > 0, got {scale!r}.")
    mode = _checks.check_choice(fn, "mode", mode, MODES)
    distribution = _checks.check_choice(fn, "distribution", distribution, DISTRIBUTIONS)
    scale = float(scale)

    def init(key, shape, dtype, *, fan_in, fan_out):
        n = {"fan_in": fan_in, "fan_out": fan_out, "fan_avg": (fan_in + fan_out) / 2}[mode]
        if not n > 0:
            raise ValueError(f"{fn}: the {mode} must be > 0, got {n!r}.")
        std = np.sqrt(scale / n)
        if distribution == "truncated_normal":
            z = jax.random.truncated_normal(key, -2.0, 2.0, shape, dtype)
            return z * jnp.asarray(std / _TRUNC_STD, dtype)
        if distribution == "normal":
            return jax.random.normal(key, shape, dtype) * jnp.asarray(std, dtype)
        lim = np.sqrt(3.0) * std
        return jax.random.uniform(key, shape, dtype, -lim, lim)

    return init


def lecun_normal() -> Initializer:
    """``Var(w) = 1 / fan_in``, truncated normal (for tanh/linear, SELU)."""
    return variance_scaling(1.0, "fan_in", "truncated_normal")


def lecun_uniform() -> Initializer:
    """``Var(w) = 1 / fan_in``, uniform."""
    return variance_scaling(1.0, "fan_in", "uniform")


def he_normal() -> Initializer:
    """``Var(w) = 2 / fan_in``, truncated normal (for ReLU; "Kaiming")."""
    return variance_scaling(2.0, "fan_in", "truncated_normal")


def he_uniform() -> Initializer:
    """``Var(w) = 2 / fan_in``, uniform."""
    return variance_scaling(2.0, "fan_in", "uniform")


def glorot_normal() -> Initializer:
    """``Var(w) = 2 / (fan_in + fan_out)``, truncated normal ("Xavier")."""
    return variance_scaling(1.0, "fan_avg", "truncated_normal")


def glorot_uniform() -> Initializer:
    """``Var(w) = 2 / (fan_in + fan_out)``, uniform."""
    return variance_scaling(1.0, "fan_avg", "uniform")


def normal(stddev: float = 1e-2) -> Initializer:
    """i.i.d. normal with a fixed standard deviation (ignores the fans)."""
    if not stddev >= 0:
        raise ValueError(f"normal: `stddev` must be >= 0, got {stddev!r}.")

    def init(key, shape, dtype, *, fan_in, fan_out):
        del fan_in, fan_out
        return jax.random.normal(key, shape, dtype) * jnp.asarray(stddev, dtype)

    return init


def zeros() -> Initializer:
    """All zeros (the default for biases)."""

    def init(key, shape, dtype, *, fan_in, fan_out):
        del key, fan_in, fan_out
        return jnp.zeros(shape, dtype)

    return init


def constant(value: float) -> Initializer:
    """All entries equal to ``value``."""

    def init(key, shape, dtype, *, fan_in, fan_out):
        del key, fan_in, fan_out
        return jnp.full(shape, value, dtype)

    return init
