"""Import conv weights (and settings) from the layouts people already have.

======================  ==========================  ==================  ==============
source                  weight layout               bias                cross-corr.?
======================  ==========================  ==================  ==============
PyTorch ``nn.Conv1d``   ``(Cout, Cin/g, K)``        ``(Cout,)``         yes
equinox ``Conv1d``      ``(Cout, Cin/g, K)``        ``(Cout, 1)``       yes
flax ``linen.Conv``     ``(K, Cin/g, Cout)``        ``(Cout,)``         yes
convjax ``Conv1D``      ``(K, Cin/g, Cout)``        ``(Cout,)``         ``flip=False``
======================  ==========================  ==================  ==============

All of them compute cross-correlation, so the imported layer has ``flip=False``.
Inputs are channels-last here ``(..., L, Cin)`` (as flax), channels-first in torch
``(N, Cin, L)`` and equinox ``(Cin, L)``: move the axis, not the weights.

Padding conventions (all agree with :mod:`convjax.geometry`):

* torch ``padding="same"`` (stride 1 only) pads ``d*(K-1)`` in total, the odd one
  at the END: convjax ``"same"``. An int ``p`` is ``(p, p)``. ``padding_mode``
  names are torch's.
* flax ``"SAME"``/``"VALID"`` are lax's (odd extra at the end: convjax ``"same"``);
  ``"CAUSAL"`` is convjax ``"causal"``; ``"CIRCULAR"``/``"REFLECT"`` pad
  ``((E-1)//2, E//2)`` (``E = d*(K-1)+1``) with wrap/reflect whatever the stride:
  convjax explicit ``(lo, hi)`` with ``padding_mode="circular"``/``"reflect"``.
* equinox ``"SAME"``/``"SAME_LOWER"``/``"VALID"`` are convjax ``"same"``,
  ``"same_lower"``, ``"valid"``; its ``padding_mode`` names are torch's upper-cased.

The ``*_weight`` functions only move axes (numpy or jax arrays in, jax arrays
out); the ``conv1d_from_*`` functions read a module's settings and weights and
return ``(layer, params)`` ready for ``layer.apply``. Nothing here imports torch,
flax or equinox: modules are read through their attributes.
"""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np

from convjax import _checks
from convjax.nn._describe import short
from convjax.nn.layers import Conv1D, Layer


def _array(fn: str, name: str, a):
    if hasattr(a, "detach"):  # a torch tensor
        a = a.detach().cpu().numpy()
    if not hasattr(a, "dtype"):
        try:
            arr = np.asarray(a, dtype=float) if isinstance(a, (list, tuple)) else None
        except (TypeError, ValueError):
            arr = None
        if arr is None:
            raise TypeError(
                f"{fn}: `{name}` must be an array (numpy, jax or a torch tensor) with a real "
                f"floating dtype, got an object of type {type(a).__name__}."
            )
        a = arr
    a = jnp.asarray(a)
    _checks.check_floating(fn, name, a)
    return a


def torch_to_conv_weight(weight):
    """torch / equinox ``(Cout, Cin/g, K)`` -> convjax ``(K, Cin/g, Cout)``."""
    w = _array("torch_to_conv_weight", "weight", weight)
    _checks.check_ndim("torch_to_conv_weight", "weight", w, 3, "(Cout, Cin/groups, K)")
    return jnp.transpose(w, (2, 1, 0))


def conv_weight_to_torch(w):
    """convjax ``(K, Cin/g, Cout)`` -> torch ``(Cout, Cin/g, K)`` (a jax array;
    ``torch.from_numpy(numpy.asarray(...))`` makes it a tensor)."""
    w = _array("conv_weight_to_torch", "w", w)
    _checks.check_ndim("conv_weight_to_torch", "w", w, 3, "(K, Cin/groups, Cout)")
    return jnp.transpose(w, (2, 1, 0))


def from_torch_conv1d(weight, bias=None):
    """torch ``Conv1d`` tensors -> convjax conv params ``{"w", "b"}``.

    Args:
      weight: ``(Cout, Cin/g, K)``.
      bias: ``(Cout,)`` or None.
    """
    p = {"w": torch_to_conv_weight(weight)}
    if bias is not None:
        p["b"] = _bias("from_torch_conv1d", bias, p["w"].shape[-1])
    return p


def to_torch_conv1d(params):
    """convjax conv params -> ``(weight (Cout, Cin/g, K), bias (Cout,) or None)``."""
    p = _conv_params("to_torch_conv1d", params)
    return conv_weight_to_torch(p["w"]), p.get("b")


def from_flax_conv(params):
    """flax ``linen.Conv`` params ``{"kernel": (K, Cin/g, Cout), "bias": (Cout,)}``
    (the ``variables["params"]`` dict) -> convjax ``{"w", "b"}`` (same layout)."""
    fn = "from_flax_conv"
    if not hasattr(params, "keys") or "kernel" not in params:
        raise TypeError(
            f"{fn}: `params` must be flax Conv params with a 'kernel' (and 'bias'), i.e. "
            f"variables['params'], got {type(params).__name__}"
            + (f" with keys {sorted(params.keys())}" if hasattr(params, "keys") else "")
            + "."
        )
    w = _array(fn, "params['kernel']", params["kernel"])
    _checks.check_ndim(fn, "params['kernel']", w, 3, "(K, Cin/groups, Cout)")
    p = {"w": w}
    if params.get("bias") is not None:
        p["b"] = _bias(fn, params["bias"], w.shape[-1])
    return p


def to_flax_conv(params):
    """convjax conv params -> flax ``{"kernel", "bias"}``."""
    p = _conv_params("to_flax_conv", params)
    out = {"kernel": p["w"]}
    if "b" in p:
        out["bias"] = p["b"]
    return out


def from_equinox_conv1d_weights(conv):
    """An ``equinox.nn.Conv1d`` -> convjax conv params (``weight`` ``(Cout, Cin/g, K)``
    transposed, ``bias`` ``(Cout, 1)`` squeezed)."""
    fn = "from_equinox_conv1d_weights"
    if not hasattr(conv, "weight"):
        raise TypeError(
            f"{fn}: `conv` must be an equinox.nn.Conv1d (no attribute 'weight'), got "
            f"{type(conv).__name__}."
        )
    _require_1d(fn, "conv", conv, "an equinox.nn.Conv1d")
    p = {"w": torch_to_conv_weight(conv.weight)}
    if getattr(conv, "bias", None) is not None:
        b = _array(fn, "conv.bias", conv.bias)
        p["b"] = _bias(fn, b.reshape(b.shape[0]), p["w"].shape[-1])
    return p


def _bias(fn, b, cout):
    b = _array(fn, "bias", b)
    if tuple(b.shape) != (cout,):
        raise ValueError(f"{fn}: `bias` must have shape ({cout},), got {tuple(b.shape)}.")
    return b


def _conv_params(fn, params):
    if not isinstance(params, dict) or "w" not in params or np.ndim(params["w"]) != 3:
        raise ValueError(
            f"{fn}: `params` must be Conv1D params {{'w': (K, Cin/g, Cout), 'b': (Cout,)}}, "
            f"got "
            + (
                f"a dict with w of shape {np.shape(params['w'])}"
                if isinstance(params, dict) and "w" in params
                else short(params)
            )
            + "."
        )
    return params


def _single(fn: str, name: str, value) -> int:
    if isinstance(value, (tuple, list)):
        if len(value) != 1:
            raise ValueError(f"{fn}: `{name}` must be 1-D (one entry), got {short(value)}.")
        value = value[0]
    return _checks.as_positive_int(fn, name, value, minimum=0)


# ---- modules: settings + weights ----------------------------------------------
_CONV_ATTRIBUTES = (
    "weight",
    "kernel_size",
    "stride",
    "padding",
    "dilation",
    "groups",
    "padding_mode",
    "out_channels",
)


def _require_conv_attributes(fn: str, name: str, obj, kind: str) -> None:
    """Raises TypeError unless ``obj`` has the attributes of a torch/equinox Conv1d
    (``kind`` names it with its article, e.g. ``"a torch.nn.Conv1d"``)."""
    for attr in _CONV_ATTRIBUTES:
        if not hasattr(obj, attr):
            raise TypeError(
                f"{fn}: `{name}` must be {kind} (no attribute {attr!r}), got {type(obj).__name__}."
            )
    _require_1d(fn, name, obj, kind)


def _require_1d(fn: str, name: str, obj, kind: str) -> None:
    """Raises TypeError for a 2-D/3-D or transposed conv module: one spatial axis only,
    a weight of rank 3 and no ``transposed`` flag (torch's ConvTranspose1d)."""
    ks = getattr(obj, "kernel_size", None)
    n_spatial = len(ks) if isinstance(ks, (tuple, list)) else 1
    rank = np.ndim(obj.weight) if hasattr(obj, "weight") else 3
    if n_spatial != 1 or rank != 3:
        raise TypeError(
            f"{fn}: `{name}` must be {kind} (one spatial axis), got "
            f"{type(obj).__name__} with kernel_size {ks!r} and a weight of rank {rank}."
        )
    if getattr(obj, "transposed", False) is True or "Transpose" in type(obj).__name__:
        raise TypeError(
            f"{fn}: `{name}` must be {kind}, got {type(obj).__name__}, a transposed "
            f"convolution (its weight is (Cin, Cout/g, K) and it is not a Conv1D)."
        )


def conv1d_from_torch(module, *, dtype=None) -> tuple[Layer, dict]:
    """A ``torch.nn.Conv1d`` -> ``(Conv1D layer, params)`` computing the same map on
    channels-last inputs: ``layer.apply(params, x.T) == module(x).T``."""
    fn = "conv1d_from_torch"
    _require_conv_attributes(fn, "module", module, "a torch.nn.Conv1d")
    padding = module.padding
    if isinstance(padding, str):
        padding = padding.lower()
    else:
        p = _single(fn, "padding", padding)
        padding = (p, p)
    params = from_torch_conv1d(module.weight, getattr(module, "bias", None))
    layer = Conv1D(
        int(module.out_channels),
        _single(fn, "kernel_size", module.kernel_size),
        stride=_single(fn, "stride", module.stride),
        padding=padding,
        dilation=_single(fn, "dilation", module.dilation),
        groups=int(module.groups),
        padding_mode=module.padding_mode,
        use_bias="b" in params,
        dtype=dtype or params["w"].dtype,
    )
    return layer, params


def flax_padding(padding, kernel_size: int, dilation: int = 1):
    """flax ``Conv`` ``padding`` -> convjax ``(padding, padding_mode)``."""
    fn = "flax_padding"
    if isinstance(padding, str):
        name = padding.upper()
        if name in ("SAME", "VALID", "CAUSAL"):
            return name.lower(), "zeros"
        if name in ("CIRCULAR", "REFLECT"):
            eff = dilation * (kernel_size - 1) + 1
            return ((eff - 1) // 2, eff // 2), name.lower()
        raise ValueError(
            f"{fn}: `padding` must be 'SAME', 'VALID', 'CAUSAL', 'CIRCULAR', 'REFLECT', "
            f"an int or [(lo, hi)], got {short(padding)}."
        )
    if isinstance(padding, (int, np.integer)):
        return (int(padding), int(padding)), "zeros"
    if isinstance(padding, (tuple, list)) and len(padding) == 1:
        pair = padding[0]
        if isinstance(pair, (int, np.integer)):
            return (int(pair), int(pair)), "zeros"
        return (int(pair[0]), int(pair[1])), "zeros"
    raise ValueError(
        f"{fn}: `padding` must be 'SAME', 'VALID', 'CAUSAL', 'CIRCULAR', 'REFLECT', "
        f"an int or [(lo, hi)], got {short(padding)}."
    )


def conv1d_from_flax(module, params, *, dtype=None) -> tuple[Layer, dict]:
    """A ``flax.linen.Conv`` (1-D) and its ``variables["params"]`` ->
    ``(Conv1D layer, params)`` with ``layer.apply(p, x) == module.apply(variables, x)``.

    Raises:
      ValueError: ``input_dilation`` other than 1, or a 2-D+ kernel.
    """
    fn = "conv1d_from_flax"
    for attr in ("features", "kernel_size", "padding"):
        if not hasattr(module, attr):
            raise TypeError(
                f"{fn}: `module` must be a flax.linen.Conv (no attribute {attr!r}), got "
                f"{type(module).__name__}."
            )
    if _single(fn, "input_dilation", getattr(module, "input_dilation", 1) or 1) != 1:
        raise ValueError(
            f"{fn}: `input_dilation` must be 1 (transposed convolution is not a Conv1D), "
            f"got {module.input_dilation!r}."
        )
    ks = module.kernel_size
    if isinstance(ks, (tuple, list)) and len(ks) != 1:
        raise ValueError(
            f"{fn}: `module` must be a 1-D flax.linen.Conv (kernel_size of one entry), got "
            f"{type(module).__name__} with kernel_size {ks!r}."
        )
    k = _single(fn, "kernel_size", ks)
    d = _single(fn, "kernel_dilation", getattr(module, "kernel_dilation", 1) or 1)
    padding, mode = flax_padding(module.padding, k, d)
    p = from_flax_conv(params)
    layer = Conv1D(
        int(module.features),
        k,
        stride=_single(fn, "strides", module.strides or 1),
        padding=padding,
        dilation=d,
        groups=int(getattr(module, "feature_group_count", 1)),
        padding_mode=mode,
        use_bias="b" in p,
        dtype=dtype or p["w"].dtype,
    )
    return layer, p


def conv1d_from_equinox(conv, *, dtype=None) -> tuple[Layer, dict]:
    """An ``equinox.nn.Conv1d`` -> ``(Conv1D layer, params)`` with
    ``layer.apply(p, x.T) == conv(x).T`` (equinox is channels-first ``(Cin, L)``)."""
    fn = "conv1d_from_equinox"
    _require_conv_attributes(fn, "conv", conv, "an equinox.nn.Conv1d")
    padding = conv.padding
    if isinstance(padding, str):
        padding = padding.lower()
    else:
        if len(padding) != 1:
            raise ValueError(f"{fn}: `conv` must be 1-D, got padding {padding!r}.")
        padding = (int(padding[0][0]), int(padding[0][1]))
    p = from_equinox_conv1d_weights(conv)
    layer = Conv1D(
        int(conv.out_channels),
        _single(fn, "kernel_size", conv.kernel_size),
        stride=_single(fn, "stride", conv.stride),
        padding=padding,
        dilation=_single(fn, "dilation", conv.dilation),
        groups=int(conv.groups),
        padding_mode=str(conv.padding_mode).lower(),
        use_bias="b" in p,
        dtype=dtype or p["w"].dtype,
    )
    return layer, p


__all__ = [
    "conv1d_from_equinox",
    "conv1d_from_flax",
    "conv1d_from_torch",
    "conv_weight_to_torch",
    "flax_padding",
    "from_equinox_conv1d_weights",
    "from_flax_conv",
    "from_torch_conv1d",
    "to_flax_conv",
    "to_torch_conv1d",
    "torch_to_conv_weight",
]
