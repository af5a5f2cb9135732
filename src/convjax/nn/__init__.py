"""convjax.nn: convolutional, locally connected and fully connected layers as one
family, on parameter pytrees.

A layer is a :class:`Layer` NamedTuple of two pure functions,
``init(key, input_shape) -> (output_shape, params)`` and ``apply(params, x)``;
params are plain dicts of arrays. :func:`Conv1D`, :func:`LocallyConnected1D` and
:func:`Dense` are one linear mechanism (:class:`Linear1D`) with three tyings;
:mod:`convjax.nn.family` moves params between them exactly, :mod:`convjax.nn.tied`
trains a dense or locally connected twin inside the conv structure, and
:mod:`convjax.nn.interop` imports torch / flax / equinox conv weights.
"""

from convjax.nn import initializers
from convjax.nn.layers import (
    ACTIVATIONS,
    TYINGS,
    Activation,
    AvgPool1D,
    Conv1D,
    Dense,
    Elementwise,
    Erf,
    Flatten,
    Gelu,
    GlobalAvgPool,
    GlobalMaxPool,
    Identity,
    Layer,
    Linear1D,
    LocallyConnected1D,
    MaxPool1D,
    Relu,
    Tanh,
    linear_spec,
    param_count,
    serial,
    structure,
    twin,
)

__all__ = [
    "ACTIVATIONS",
    "TYINGS",
    "Activation",
    "AvgPool1D",
    "Conv1D",
    "Dense",
    "Elementwise",
    "Erf",
    "Flatten",
    "Gelu",
    "GlobalAvgPool",
    "GlobalMaxPool",
    "Identity",
    "Layer",
    "Linear1D",
    "LocallyConnected1D",
    "MaxPool1D",
    "Relu",
    "Tanh",
    "initializers",
    "linear_spec",
    "param_count",
    "serial",
    "structure",
    "twin",
]
