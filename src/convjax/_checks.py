"""Input checks shared by every public function.

All checks run at trace time from static shapes and dtypes only. Messages name
the function, the argument in backticks, the rule and the value received.
"""

from __future__ import annotations

import operator
from collections.abc import Sequence

import jax.numpy as jnp
import numpy as np


def as_positive_int(fn: str, name: str, value, *, minimum: int = 1) -> int:
    """Returns ``value`` as an int >= ``minimum`` or raises naming ``name``."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)):
        # operator.index accepts exactly the integer-like objects.
        try:
            if isinstance(value, (bool, np.bool_)):
                raise TypeError
            value = operator.index(value)
        except TypeError:
            raise TypeError(
                f"{fn}: `{name}` must be an integer, got {value!r} "
                f"of type {type(value).__name__}."
            ) from None
    value = int(value)
    if value < minimum:
        raise ValueError(f"{fn}: `{name}` must be an integer >= {minimum}, got {value}.")
    return value


def check_floating(fn: str, name: str, x) -> None:
    """Raises TypeError unless ``x`` has a real floating dtype."""
    if not hasattr(x, "dtype"):
        # jnp.result_type on a list/tuple/str would fail with an opaque message.
        raise TypeError(
            f"{fn}: `{name}` must be an array (jax.Array or numpy.ndarray) with a real "
            f"floating dtype, got an object of type {type(x).__name__}. Convert it first, "
            f"e.g. `jnp.asarray({name}, jnp.float32)`."
        )
    dtype = jnp.result_type(x)
    if jnp.issubdtype(dtype, jnp.complexfloating):
        raise TypeError(
            f"{fn}: `{name}` has complex dtype {dtype}; only real floating dtypes are "
            "supported (convolve the real and imaginary parts separately)."
        )
    if not jnp.issubdtype(dtype, jnp.floating):
        raise TypeError(
            f"{fn}: `{name}` must have a floating dtype (float16, bfloat16, float32 or "
            f"float64), got {dtype}. Cast it first, e.g. `{name}.astype(jnp.float32)`."
        )


def check_ndim(fn: str, name: str, x, ndim: int | Sequence[int], layout: str) -> None:
    allowed = (ndim,) if isinstance(ndim, int) else tuple(ndim)
    got = np.ndim(x)
    if got not in allowed:
        raise ValueError(
            f"{fn}: `{name}` must have rank {' or '.join(map(str, allowed))} "
            f"(layout {layout}), got rank {got} with shape {tuple(np.shape(x))}."
        )


def check_min_ndim(fn: str, name: str, x, ndim: int, layout: str) -> None:
    got = np.ndim(x)
    if got < ndim:
        raise ValueError(
            f"{fn}: `{name}` must have rank >= {ndim} (layout {layout}), "
            f"got rank {got} with shape {tuple(np.shape(x))}."
        )


def check_choice(fn: str, name: str, value, choices: Sequence[str]) -> str:
    if not isinstance(value, str) or value.lower() not in choices:
        raise ValueError(
            f"{fn}: `{name}` must be one of {', '.join(repr(c) for c in choices)}, "
            f"got {value!r}."
        )
    return value.lower()


def result_dtype(fn: str, **arrays):
    """Checks every array is real floating and returns their promoted dtype."""
    for name, a in arrays.items():
        check_floating(fn, name, a)
    return jnp.result_type(*arrays.values())
