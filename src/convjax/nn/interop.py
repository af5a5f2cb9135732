"""Import conv weights (and settings) from the layouts people already have.

======================  ==========================  ==================  ==============
source                  weight layout               bias                cross-corr.?
======================  ==========================  ==================  ==============
PyTorch ``nn.Conv1d``   ``(Cout, Cin/g, K)``        ``(Cout,)``         yes
PyTorch ``nn.Conv2d``   ``(Cout, Cin/g, KH, KW)``   ``(Cout,)``         yes
equinox ``Conv1d``      ``(Cout, Cin/g, K)``        ``(Cout, 1)``       yes
equinox ``Conv2d``      ``(Cout, Cin/g, KH, KW)``   ``(Cout, 1, 1)``    yes
flax ``linen.Conv``     ``(*K, Cin/g, Cout)``       ``(Cout,)``         yes
convjax ``Conv1D/2D``   ``(*K, Cin/g, Cout)``       ``(Cout,)``         ``flip=False``
======================  ==========================  ==================  ==============

All of them compute cross-correlation, so the imported layer has ``flip=False``.
Inputs are channels-last here ``(..., L, Cin)`` / ``(..., H, W, Cin)`` (as flax),
channels-first in torch ``(N, Cin, L)`` / ``(N, Cin, H, W)`` and equinox
``(Cin, L)`` / ``(Cin, H, W)``: move the axis, not the weights.

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
out; ``ndim`` spatial axes); the ``conv1d_from_*`` and ``conv2d_from_*`` functions
read a module's settings and weights and return ``(layer, params)`` ready for
``layer.apply``. Nothing here imports torch,
flax or equinox: modules are read through their attributes.
"""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np

from convjax import _checks
from convjax.nn._describe import short
from convjax.nn.layers import Conv1D, Conv2D, Layer

_FACTORIES = {1: Conv1D, 2: Conv2D}
_AXES = {1: "one spatial axis", 2: "two spatial axes"}


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


def torch_to_conv_weight(weight, *, ndim: int = 1):
    """torch / equinox ``(Cout, Cin/g, *K)`` -> convjax ``(*K, Cin/g, Cout)``
    (``ndim`` spatial axes)."""
    fn = "torch_to_conv_weight"
    w = _array(fn, "weight", weight)
    _checks.check_ndim(
        fn, "weight", w, ndim + 2, "(Cout, Cin/groups, *K)" if ndim > 1 else "(Cout, Cin/groups, K)"
    )
    return jnp.transpose(w, (*range(2, ndim + 2), 1, 0))


def conv_weight_to_torch(w, *, ndim: int = 1):
    """convjax ``(*K, Cin/g, Cout)`` -> torch ``(Cout, Cin/g, *K)`` (a jax array;
    ``torch.from_numpy(numpy.asarray(...))`` makes it a tensor). The inverse of
    :func:`torch_to_conv_weight`."""
    fn = "conv_weight_to_torch"
    w = _array(fn, "w", w)
    _checks.check_ndim(
        fn, "w", w, ndim + 2, "(*K, Cin/groups, Cout)" if ndim > 1 else "(K, Cin/groups, Cout)"
    )
    return jnp.transpose(w, (ndim + 1, ndim, *range(ndim)))


def from_torch_conv1d(weight, bias=None):
    """torch ``Conv1d`` tensors -> convjax conv params ``{"w", "b"}`` (for a
    ``Conv2d``: :func:`conv2d_from_torch`, or :func:`torch_to_conv_weight` with
    ``ndim=2``).

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


def from_flax_conv(params, *, ndim: int = 1):
    """flax ``linen.Conv`` params ``{"kernel": (*K, Cin/g, Cout), "bias": (Cout,)}``
    (the ``variables["params"]`` dict, ``ndim`` spatial axes) -> convjax
    ``{"w", "b"}`` (same layout)."""
    fn = "from_flax_conv"
    if not hasattr(params, "keys") or "kernel" not in params:
        raise TypeError(
            f"{fn}: `params` must be flax Conv params with a 'kernel' (and 'bias'), i.e. "
            f"variables['params'], got {type(params).__name__}"
            + (f" with keys {sorted(params.keys())}" if hasattr(params, "keys") else "")
            + "."
        )
    w = _array(fn, "params['kernel']", params["kernel"])
    layout = "(K, Cin/groups, Cout)" if ndim == 1 else "(*K, Cin/groups, Cout)"
    _checks.check_ndim(fn, "params['kernel']", w, ndim + 2, layout)
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
    return _equinox_weights("from_equinox_conv1d_weights", conv, 1)


def from_equinox_conv2d_weights(conv):
    """An ``equinox.nn.Conv2d`` -> convjax conv params (``weight``
    ``(Cout, Cin/g, KH, KW)`` -> ``(KH, KW, Cin/g, Cout)``, ``bias`` ``(Cout, 1, 1)``
    squeezed)."""
    return _equinox_weights("from_equinox_conv2d_weights", conv, 2)


def _equinox_weights(fn: str, conv, ndim: int):
    kind = f"an equinox.nn.Conv{ndim}d"
    if not hasattr(conv, "weight"):
        raise TypeError(
            f"{fn}: `conv` must be {kind} (no attribute 'weight'), got {type(conv).__name__}."
        )
    _require_rank(fn, "conv", conv, kind, ndim)
    p = {"w": torch_to_conv_weight(conv.weight, ndim=ndim)}
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


def _axes(fn: str, name: str, value, ndim: int) -> tuple[int, ...]:
    """A module's per-axis setting (an int or ``ndim`` ints) as a tuple."""
    if ndim == 1:
        return (_single(fn, name, value),)
    if isinstance(value, (tuple, list)):
        if len(value) != ndim:
            raise ValueError(
                f"{fn}: `{name}` must have {ndim} entries (one per spatial axis), got "
                f"{short(value)}."
            )
        return tuple(
            _checks.as_positive_int(fn, f"{name}[{j}]", v, minimum=0) for j, v in enumerate(value)
        )
    return (_checks.as_positive_int(fn, name, value, minimum=0),) * ndim


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


def _require_conv_attributes(fn: str, name: str, obj, kind: str, ndim: int = 1) -> None:
    """Raises TypeError unless ``obj`` has the attributes of a torch/equinox conv module
    with ``ndim`` spatial axes (``kind`` names it with its article, e.g.
    ``"a torch.nn.Conv1d"``)."""
    for attr in _CONV_ATTRIBUTES:
        if not hasattr(obj, attr):
            raise TypeError(
                f"{fn}: `{name}` must be {kind} (no attribute {attr!r}), got {type(obj).__name__}."
            )
    _require_rank(fn, name, obj, kind, ndim)


def _require_rank(fn: str, name: str, obj, kind: str, ndim: int) -> None:
    """Raises TypeError for a conv module of another rank or a transposed one:
    ``ndim`` spatial axes, a weight of rank ``ndim + 2`` and no ``transposed`` flag
    (torch's ConvTranspose)."""
    ks = getattr(obj, "kernel_size", None)
    n_spatial = len(ks) if isinstance(ks, (tuple, list)) else 1
    rank = np.ndim(obj.weight) if hasattr(obj, "weight") else ndim + 2
    if n_spatial != ndim or rank != ndim + 2:
        raise TypeError(
            f"{fn}: `{name}` must be {kind} ({_AXES[ndim]}), got "
            f"{type(obj).__name__} with kernel_size {ks!r} and a weight of rank {rank}."
        )
    if getattr(obj, "transposed", False) is True or "Transpose" in type(obj).__name__:
        raise TypeError(
            f"{fn}: `{name}` must be {kind}, got {type(obj).__name__}, a transposed "
            f"convolution (its weight is (Cin, Cout/g, *K) and it is not a convolution)."
        )


def conv1d_from_torch(module, *, dtype=None) -> tuple[Layer, dict]:
    """A ``torch.nn.Conv1d`` -> ``(Conv1D layer, params)`` computing the same map on
    channels-last inputs: ``layer.apply(params, x.T) == module(x).T``."""
    return _from_torch("conv1d_from_torch", module, 1, dtype)


def conv2d_from_torch(module, *, dtype=None) -> tuple[Layer, dict]:
    """A ``torch.nn.Conv2d`` -> ``(Conv2D layer, params)`` computing the same map on
    channels-last images: ``layer.apply(params, x_nhwc) == module(x_nchw)`` moved to
    NHWC."""
    return _from_torch("conv2d_from_torch", module, 2, dtype)


def _from_torch(fn: str, module, ndim: int, dtype):
    _require_conv_attributes(fn, "module", module, f"a torch.nn.Conv{ndim}d", ndim)
    padding = module.padding
    if isinstance(padding, str):
        padding = padding.lower()
    else:
        padding = [(p, p) for p in _axes(fn, "padding", padding, ndim)]
    w = torch_to_conv_weight(module.weight, ndim=ndim)
    params = {"w": w}
    if getattr(module, "bias", None) is not None:
        params["b"] = _bias(fn, module.bias, w.shape[-1])
    layer = _FACTORIES[ndim](
        int(module.out_channels),
        _axes(fn, "kernel_size", module.kernel_size, ndim),
        stride=_axes(fn, "stride", module.stride, ndim),
        padding=padding,
        dilation=_axes(fn, "dilation", module.dilation, ndim),
        groups=int(module.groups),
        padding_mode=module.padding_mode,
        use_bias="b" in params,
        dtype=dtype or params["w"].dtype,
    )
    return layer, params


def flax_padding(padding, kernel_size, dilation=1):
    """flax ``Conv`` ``padding`` -> convjax ``(padding, padding_mode)``; ``kernel_size``
    and ``dilation`` are ints (1-D) or per-axis tuples."""
    fn = "flax_padding"
    ks = tuple(kernel_size) if isinstance(kernel_size, (tuple, list)) else (int(kernel_size),)
    ds = tuple(dilation) if isinstance(dilation, (tuple, list)) else (int(dilation),) * len(ks)
    one = len(ks) == 1
    if isinstance(padding, str):
        name = padding.upper()
        if name in ("SAME", "VALID", "CAUSAL"):
            return name.lower(), "zeros"
        if name in ("CIRCULAR", "REFLECT"):
            eff = [d * (k - 1) + 1 for k, d in zip(ks, ds, strict=True)]
            pads = [((e - 1) // 2, e // 2) for e in eff]
            return (pads[0] if one else pads), name.lower()
    elif isinstance(padding, (int, np.integer)):
        return ((int(padding), int(padding)) if one else int(padding)), "zeros"
    elif isinstance(padding, (tuple, list)) and len(padding) == len(ks):
        pads = [
            (int(p), int(p)) if isinstance(p, (int, np.integer)) else (int(p[0]), int(p[1]))
            for p in padding
        ]
        return (pads[0] if one else pads), "zeros"
    raise ValueError(
        f"{fn}: `padding` must be 'SAME', 'VALID', 'CAUSAL', 'CIRCULAR', 'REFLECT', "
        f"an int or [(lo, hi)] per axis, got {short(padding)}."
    )


def conv1d_from_flax(module, params, *, dtype=None) -> tuple[Layer, dict]:
    """A ``flax.linen.Conv`` (1-D) and its ``variables["params"]`` ->
    ``(Conv1D layer, params)`` with ``layer.apply(p, x) == module.apply(variables, x)``.

    Raises:
      ValueError: ``input_dilation`` other than 1, or a 2-D+ kernel.
    """
    return _from_flax("conv1d_from_flax", module, params, 1, dtype)


def conv2d_from_flax(module, params, *, dtype=None) -> tuple[Layer, dict]:
    """A 2-D ``flax.linen.Conv`` (``kernel_size=(KH, KW)``) and its
    ``variables["params"]`` -> ``(Conv2D layer, params)`` with
    ``layer.apply(p, x) == module.apply(variables, x)`` (both NHWC).

    Raises:
      ValueError: ``input_dilation`` other than 1, or a kernel that is not 2-D.
    """
    return _from_flax("conv2d_from_flax", module, params, 2, dtype)


def _from_flax(fn: str, module, params, ndim: int, dtype):
    for attr in ("features", "kernel_size", "padding"):
        if not hasattr(module, attr):
            raise TypeError(
                f"{fn}: `module` must be a flax.linen.Conv (no attribute {attr!r}), got "
                f"{type(module).__name__}."
            )
    if set(_axes(fn, "input_dilation", getattr(module, "input_dilation", 1) or 1, ndim)) != {1}:
        raise ValueError(
            f"{fn}: `input_dilation` must be 1 (transposed convolution is not a "
            f"Conv{ndim}D), got {module.input_dilation!r}."
        )
    ks = module.kernel_size
    if (len(ks) if isinstance(ks, (tuple, list)) else 1) != ndim:
        raise ValueError(
            f"{fn}: `module` must be a {ndim}-D flax.linen.Conv (kernel_size of "
            f"{'one entry' if ndim == 1 else f'{ndim} entries'}), got "
            f"{type(module).__name__} with kernel_size {ks!r}."
        )
    k = _axes(fn, "kernel_size", ks, ndim)
    d = _axes(fn, "kernel_dilation", getattr(module, "kernel_dilation", 1) or 1, ndim)
    padding, mode = flax_padding(module.padding, k, d)
    p = from_flax_conv(params, ndim=ndim)
    layer = _FACTORIES[ndim](
        int(module.features),
        k,
        stride=_axes(fn, "strides", module.strides or 1, ndim),
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
    return _from_equinox("conv1d_from_equinox", conv, 1, dtype)


def conv2d_from_equinox(conv, *, dtype=None) -> tuple[Layer, dict]:
    """An ``equinox.nn.Conv2d`` -> ``(Conv2D layer, params)`` with
    ``layer.apply(p, x_hwc) == conv(x_chw)`` moved to HWC."""
    return _from_equinox("conv2d_from_equinox", conv, 2, dtype)


def _from_equinox(fn: str, conv, ndim: int, dtype):
    _require_conv_attributes(fn, "conv", conv, f"an equinox.nn.Conv{ndim}d", ndim)
    padding = conv.padding
    if isinstance(padding, str):
        padding = padding.lower()
    else:
        if len(padding) != ndim:
            raise ValueError(f"{fn}: `conv` must be {ndim}-D, got padding {padding!r}.")
        pads = [(int(lo), int(hi)) for lo, hi in padding]
        padding = pads[0] if ndim == 1 else pads
    p = _equinox_weights(fn, conv, ndim)
    layer = _FACTORIES[ndim](
        int(conv.out_channels),
        _axes(fn, "kernel_size", conv.kernel_size, ndim),
        stride=_axes(fn, "stride", conv.stride, ndim),
        padding=padding,
        dilation=_axes(fn, "dilation", conv.dilation, ndim),
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
    "conv2d_from_equinox",
    "conv2d_from_flax",
    "conv2d_from_torch",
    "from_equinox_conv2d_weights",
    "conv_weight_to_torch",
    "flax_padding",
    "from_equinox_conv1d_weights",
    "from_flax_conv",
    "from_torch_conv1d",
    "to_flax_conv",
    "to_torch_conv1d",
    "torch_to_conv_weight",
]
