"""convjax.nn: convolutional, locally connected and fully connected layers as one
family, on parameter pytrees.

A layer is a :class:`Layer` NamedTuple of two pure functions,
``init(key, input_shape) -> (output_shape, params)`` and ``apply(params, x)``;
params are plain dicts of arrays. :func:`Conv1D`, :func:`LocallyConnected1D` and
:func:`Dense` are one linear mechanism (:class:`Linear1D`) in three KINDS,
``"conv"``, ``"local"`` and ``"dense"``; :func:`twin` turns a layer or a whole
:func:`serial` model into another kind and :mod:`convjax.nn.family` moves the
params (of one layer, or of a whole model with :func:`structures`) exactly;
:mod:`convjax.nn.tied` trains a dense or locally connected twin inside the conv
structure; :mod:`convjax.nn.interop` imports torch / flax / equinox conv weights.
Initializers are jax's own (:mod:`jax.nn.initializers`), handed the structural
fans (:mod:`convjax.nn.initializers`).
"""

from convjax.nn import family, initializers, interop, tied
from convjax.nn.family import (
    conv_to_dense,
    conv_to_local,
    dense_to_conv,
    dense_to_conv_adjoint,
    dense_to_local,
    dense_to_local_adjoint,
    distance_to_conv,
    kind_of,
    local_to_conv,
    local_to_conv_adjoint,
    local_to_dense,
    move,
    off_structure_share,
)
from convjax.nn.interop import (
    conv1d_from_equinox,
    conv1d_from_flax,
    conv1d_from_torch,
    from_flax_conv,
    from_torch_conv1d,
    to_flax_conv,
    to_torch_conv1d,
)
from convjax.nn.layers import (
    ACTIVATIONS,
    KINDS,
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
    structures,
    twin,
)
from convjax.nn.tied import project_params, projected_gradient, tied_gradient

__all__ = [
    "ACTIVATIONS",
    "KINDS",
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
    "conv1d_from_equinox",
    "conv1d_from_flax",
    "conv1d_from_torch",
    "conv_to_dense",
    "conv_to_local",
    "dense_to_conv",
    "dense_to_conv_adjoint",
    "dense_to_local",
    "dense_to_local_adjoint",
    "distance_to_conv",
    "family",
    "from_flax_conv",
    "from_torch_conv1d",
    "initializers",
    "interop",
    "kind_of",
    "linear_spec",
    "local_to_conv",
    "local_to_conv_adjoint",
    "local_to_dense",
    "move",
    "off_structure_share",
    "param_count",
    "project_params",
    "projected_gradient",
    "serial",
    "structure",
    "structures",
    "tied",
    "tied_gradient",
    "to_flax_conv",
    "to_torch_conv1d",
    "twin",
]
