"""convjax: a convolutional layer is a fully connected layer with tied weights and
structural zeros, made exact and usable in JAX.

Public API:

* :func:`conv` -- the layer op over ``N`` spatial axes (cross-correlation by
  default, ``flip=True`` for true convolution), channels-last ``(..., *spatial, Cin)``;
  :func:`conv1d` and :func:`conv2d` fix ``N`` to 1 and 2.
* :func:`locally_connected`, :func:`locally_connected1d` -- the untied twins.
* :func:`convolve`, :func:`correlate` -- 1-D signal ops with numpy's semantics.
* :func:`conv_matrix`, :func:`conv_matrix_sparse` -- the dense (or sparse) matrix
  ``T(w)`` with ``T(w) @ x.ravel() == conv(x, w).ravel()`` (doubly block Toeplitz
  in 2-D).
* :func:`conv_structure` -- the tying structure behind ``T``: masks, the adjoint
  (sums copies), the nearest filter (averages copies), the locally connected view.
* :func:`conv_singular_values`, :func:`conv_operator_norm`,
  :func:`clip_singular_values` -- the spectrum of a layer (exact by the FFT for
  circular layers, by the SVD of ``T`` otherwise), its operator norm by power
  iteration without ``T``, and singular-value clipping of circular layers.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

#: Where each public name lives. ``import convjax`` loads none of these modules: a
#: name is imported from its module on first access (PEP 562), so the import adds
#: almost nothing to ``import jax, optax`` (``benchmarks/import_time.py``) and a
#: script pays only for what it uses.
_SUBMODULES = ("data", "measures", "nn", "stats", "train")
_NAMES = {
    "conv": "convjax.convolution",
    "conv1d": "convjax.convolution",
    "conv2d": "convjax.convolution",
    "locally_connected": "convjax.local",
    "ConvOptions": "convjax.geometry",
    "Geometry": "convjax.geometry",
    "conv_options": "convjax.geometry",
    "locally_connected1d": "convjax.local",
    "convolve": "convjax.signal",
    "correlate": "convjax.signal",
    "ClippedConv": "convjax.spectral",
    "NormEstimate": "convjax.spectral",
    "clip_singular_values": "convjax.spectral",
    "conv_operator_norm": "convjax.spectral",
    "conv_singular_values": "convjax.spectral",
    "DEFAULT_MAX_BYTES": "convjax.tying",
    "ConvStructure": "convjax.tying",
    "conv_matrix": "convjax.tying",
    "conv_matrix_sparse": "convjax.tying",
    "conv_structure": "convjax.tying",
}

if TYPE_CHECKING:  # what the lazy names are, for type checkers and IDEs
    from convjax import data, measures, nn, stats, train
    from convjax.convolution import conv, conv1d, conv2d
    from convjax.geometry import ConvOptions, Geometry, conv_options
    from convjax.local import locally_connected, locally_connected1d
    from convjax.signal import convolve, correlate
    from convjax.spectral import (
        ClippedConv,
        NormEstimate,
        clip_singular_values,
        conv_operator_norm,
        conv_singular_values,
    )
    from convjax.tying import (
        DEFAULT_MAX_BYTES,
        ConvStructure,
        conv_matrix,
        conv_matrix_sparse,
        conv_structure,
    )


def __getattr__(name: str):
    """Imports a public name on first access; afterwards it is a plain attribute."""
    if name in _SUBMODULES:
        return importlib.import_module(f"convjax.{name}")  # also sets convjax.<name>
    if name in _NAMES:
        value = getattr(importlib.import_module(_NAMES[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'convjax' has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(__all__))


__version__ = "0.1.0"

__all__ = [
    "DEFAULT_MAX_BYTES",
    "ClippedConv",
    "ConvOptions",
    "ConvStructure",
    "Geometry",
    "NormEstimate",
    "clip_singular_values",
    "conv",
    "conv1d",
    "conv2d",
    "conv_matrix",
    "conv_matrix_sparse",
    "conv_operator_norm",
    "conv_options",
    "conv_singular_values",
    "conv_structure",
    "convolve",
    "correlate",
    "data",
    "locally_connected",
    "locally_connected1d",
    "measures",
    "nn",
    "stats",
    "train",
]
