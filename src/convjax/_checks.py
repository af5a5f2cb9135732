"""Input checks shared by every public function.

All checks run at trace time from static shapes and dtypes only. Messages name
the function, the argument in backticks, the rule and the value received.
"""

from __future__ import annotations

import math
import operator
from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np

#: The default ``max_bytes`` of the routes whose size grows by nature (the dense
#: matrix, im2col patches): 1 GiB.
DEFAULT_MAX_BYTES = 2**30


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
                f"{fn}: `{name}` must be an integer, got {value!r} of type {type(value).__name__}."
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
            f"{fn}: `{name}` must be one of {', '.join(repr(c) for c in choices)}, got {value!r}."
        )
    return value.lower()


def check_real(fn: str, name: str, x) -> None:
    """Raises TypeError unless ``x`` is an array with a real dtype: bool, integer or floating."""
    if not hasattr(x, "dtype"):
        raise TypeError(
            f"{fn}: `{name}` must be an array (jax.Array or numpy.ndarray) with a real "
            f"dtype, got an object of type {type(x).__name__}. Convert it first, "
            f"e.g. `jnp.asarray({name})`."
        )
    dtype = np.dtype(x.dtype)
    if jnp.issubdtype(dtype, jnp.complexfloating):
        raise TypeError(
            f"{fn}: `{name}` has complex dtype {dtype}; only real floating dtypes are "
            "supported, integers and bools promoted to them (convolve the real and "
            "imaginary parts separately)."
        )
    if not (
        jnp.issubdtype(dtype, jnp.floating)
        or jnp.issubdtype(dtype, jnp.integer)
        or dtype == np.bool_
    ):
        raise TypeError(
            f"{fn}: `{name}` must have a real numeric dtype (bool, integer or floating), "
            f"got {dtype}."
        )


def default_float():
    """jax's default floating dtype: float64 with ``jax_enable_x64``, else float32."""
    return jnp.result_type(float)


def result_dtype(fn: str, **arrays):
    """Checks every array is real and returns the floating dtype they compute in.

    The promoted dtype of the arrays (``jnp.result_type``) if it is floating;
    integers and bools, alone or mixed with each other, promote to jax's
    default float dtype (:func:`default_float`: float32, or float64 with
    ``jax_enable_x64``). Integer arrays mixed with floating ones follow jax's
    promotion (``int8`` with ``float16`` gives ``float16``).

    Raises:
      TypeError: an argument is not an array, or is complex, or has a
        non-numeric dtype; the message names ``fn`` and the argument.
    """
    for name, a in arrays.items():
        check_real(fn, name, a)
    dtype = jnp.result_type(*arrays.values())
    return dtype if jnp.issubdtype(dtype, jnp.floating) else default_float()


def check_precision(fn: str, precision):
    """Returns ``precision`` if XLA accepts it (None, a ``jax.lax.Precision``, one of
    its names, or a pair of those), else raises naming ``fn`` and the argument."""
    entries = precision if isinstance(precision, (tuple, list)) else (precision,)
    ok = 1 <= len(entries) <= 2
    for p in entries:
        if p is None or isinstance(p, jax.lax.Precision):
            continue
        try:
            jax.lax.Precision(p)
        except (ValueError, TypeError, KeyError):
            ok = False
    if not ok or (isinstance(precision, (tuple, list)) and None in entries):
        names = ", ".join(repr(m.name.lower()) for m in jax.lax.Precision)
        raise ValueError(
            f"{fn}: `precision` must be None, a jax.lax.Precision, one of its names "
            f"({names}) or a pair of them, got {precision!r}."
        )
    return tuple(precision) if isinstance(precision, list) else precision


def check_bytes(fn: str, what: str, shape, dtype, max_bytes, hint: str) -> None:
    """Raises ValueError (before anything is allocated) when an array of ``shape`` and
    ``dtype`` would exceed ``max_bytes`` (``None``: no limit)."""
    if max_bytes is None:
        return
    max_bytes = as_positive_int(fn, "max_bytes", max_bytes, minimum=0)
    need = math.prod(shape) * np.dtype(dtype).itemsize
    if need > max_bytes:
        raise ValueError(
            f"{fn}: {what} of shape {tuple(shape)} in {np.dtype(dtype)} would need {need} "
            f"bytes ({need / 2**30:.3g} GiB), more than `max_bytes`={max_bytes}; {hint}"
        )
