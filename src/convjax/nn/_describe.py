"""Short forms of values for error messages: never the contents of an array."""

from __future__ import annotations

_MAX = 80


def short(value) -> str:
    """A one-line description of ``value`` for an error message.

    Arrays (anything with ``shape`` and ``dtype``): ``"<type> of shape (..) and dtype
    .."``; layers and functions: their name; tuples, lists and dicts: their repr if
    short, else their type and length (arrays inside shown in short form); anything
    else: its repr cut to 80 characters.

    Example:
      >>> import numpy as np
      >>> short(np.zeros((1000, 3)))
      'ndarray of shape (1000, 3) and dtype float64'
      >>> short((10, 2))
      '(10, 2)'
    """
    if hasattr(value, "shape") and hasattr(value, "dtype"):
        return f"{type(value).__name__} of shape {tuple(value.shape)} and dtype {value.dtype}"
    if isinstance(value, (tuple, list)):
        inner = ", ".join(short(v) for v in value[:8])
        if len(value) == 1 and isinstance(value, tuple):
            inner += ","
        text = ("(" + inner + ")") if isinstance(value, tuple) else ("[" + inner + "]")
        if len(value) <= 8 and len(text) <= _MAX:
            return text
        return f"{type(value).__name__} of length {len(value)}"
    if isinstance(value, dict):
        text = "{" + ", ".join(f"{k!r}: {short(v)}" for k, v in value.items()) + "}"
        return text if len(text) <= _MAX else f"dict with keys {sorted(map(str, value))}"
    if callable(value) and hasattr(value, "__qualname__"):
        return f"{type(value).__name__} {value.__qualname__}"
    text = repr(value)
    return text if len(text) <= _MAX else text[: _MAX - 3] + "..."
