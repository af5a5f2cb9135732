"""convjax: a convolutional layer is a fully connected layer with tied weights and
structural zeros, made exact and usable in JAX.

Public API:

* :func:`conv1d` -- the layer op (cross-correlation by default, ``flip=True`` for
  true convolution), channels-last ``(..., L, Cin)``.
* :func:`convolve`, :func:`correlate` -- 1-D signal ops with numpy's semantics.
* :func:`conv_matrix`, :func:`conv_matrix_sparse` -- the dense (or sparse) matrix
  ``T(w)`` with ``T(w) @ x.ravel() == conv1d(x, w).ravel()``.
* :func:`conv_structure` -- the tying structure behind ``T``: masks, the adjoint
  (sums copies), the nearest filter (averages copies), the locally connected view.
"""

from convjax import data, measures, nn, stats, train
from convjax.conv import conv1d
from convjax.geometry import ConvOptions, Geometry, conv_options
from convjax.local import locally_connected1d
from convjax.signal import convolve, correlate
from convjax.tying import (
    DEFAULT_MAX_BYTES,
    ConvStructure,
    conv_matrix,
    conv_matrix_sparse,
    conv_structure,
)

__version__ = "0.1.0"

__all__ = [
    "DEFAULT_MAX_BYTES",
    "ConvOptions",
    "ConvStructure",
    "Geometry",
    "conv1d",
    "conv_matrix",
    "conv_matrix_sparse",
    "conv_options",
    "conv_structure",
    "convolve",
    "correlate",
    "data",
    "locally_connected1d",
    "measures",
    "nn",
    "stats",
    "train",
]
