"""Exact moves of params between the three kinds of linear layer of one structure.

Given the :class:`~convjax.tying.ConvStructure` ``s`` of a layer (from
:func:`convjax.nn.structure`), params move between the kinds

* ``"conv"``: ``{"w": (*K, Cin//g, Cout), "b": (Cout,)}``,
* ``"local"``: ``{"w": (*Lout, *K, Cin//g, Cout), "b": (*Lout, Cout)}``,
* ``"dense"``: ``{"w": (prod(Lout)*Cout, prod(L)*Cin), "b": (*Lout, Cout)}``,

for any number of spatial axes (``K``, ``L``, ``Lout`` are shapes in N-D)

(``"b"`` optional; it moves with ``"w"`` when present) by three kinds of maps:

=========================  ===========================  ==============================
embeddings (lossless)      projections back (nearest)   adjoints (for gradients)
=========================  ===========================  ==============================
:func:`conv_to_local`      :func:`local_to_conv`        :func:`local_to_conv_adjoint`
:func:`local_to_dense`     :func:`dense_to_local`       :func:`dense_to_local_adjoint`
:func:`conv_to_dense`      :func:`dense_to_conv`        :func:`dense_to_conv_adjoint`
=========================  ===========================  ==============================

* An EMBEDDING ``E`` gives the twin that computes the same function (to float
  precision): the conv bias is copied to every position.
* The PROJECTION back is the nearest point in the smaller family (least squares in
  the space of the dense matrix for ``dense_to_*``, in parameter space for
  ``local_to_conv``): it drops off-structure dense weights and AVERAGES the copies
  of a tied weight (and of the bias over positions). ``projection(embedding(p)) ==
  p`` and ``embedding(projection(.))`` is idempotent.
* The ADJOINT ``E*`` SUMS the copies instead: ``<E(u), v> == <u, E*(v)>``; it maps
  the gradient of the bigger twin to the gradient of the smaller one (the chain
  rule for a shared weight).

WHOLE MODELS: every move (the nine maps above and :func:`move`) also takes, in
place of ``s``, the tree of structures of a :func:`~convjax.nn.serial` model
(:func:`convjax.nn.structures`: a tuple aligned with the model's params, a
ConvStructure for each linear layer with a conv structure, ``None`` for the
others) and the model's params; it moves every treated layer and passes every
other layer's params through unchanged (the same object). With
:func:`convjax.nn.twin` for the model::

    ss = nn.structures(model, input_shape)
    dense_model = nn.twin(model, "dense")
    dense_params = nn.move(params, ss, "dense")   # dense_model computes what model did
    back = nn.move(dense_params, ss, "conv")      # the nearest conv model

How far a dense or local layer is from the conv family: :func:`off_structure_share`
(share of the squared weight norm sitting at structural zeros: what
:func:`dense_to_local` drops) and :func:`distance_to_conv` (relative distance to
the nearest convolution).
"""

from __future__ import annotations

import functools

import jax.numpy as jnp
import numpy as np

from convjax import _checks
from convjax.nn._describe import short
from convjax.nn.layers import KINDS, Layer, check_kind
from convjax.tying import ConvStructure


def kind_of(params, s: ConvStructure, *, fn: str = "kind_of") -> str:
    """Which twin ``params`` belong to: ``"conv"``, ``"local"`` or ``"dense"``,
    read from the shape of ``params["w"]`` against the structure ``s``.

    Raises:
      TypeError: ``params`` is not a dict with a ``"w"``.
      ValueError: ``params["w"]`` fits none of the three shapes of ``s``.
    """
    _check_structure(fn, s)
    if not isinstance(params, dict) or "w" not in params:
        got = (
            f"dict with keys {sorted(map(str, params))}"
            if isinstance(params, dict)
            else short(params)
        )
        raise TypeError(
            f"{fn}: `params` must be a dict {{'w': ..., 'b': ...}} of a Conv1D, "
            f"LocallyConnected1D or Dense layer, got {got}."
        )
    shape = tuple(np.shape(params["w"]))
    for kind, want in zip(KINDS, _w_shapes(s), strict=True):
        if shape == want:
            return kind
    conv, local, dense = _w_shapes(s)
    raise ValueError(
        f"{fn}: `params['w']` has shape {shape}, which is none of the shapes of this "
        f"structure: conv {conv}, local {local}, dense {dense}."
    )


def _w_shapes(s: ConvStructure):
    return (tuple(s.filter_shape), tuple(s.local_filter_shape), tuple(s.dense_shape))


def _b_shape(s: ConvStructure, kind: str):
    return (s.out_channels,) if kind == "conv" else s.bias_shape


def _check_structure(fn: str, s) -> None:
    if not isinstance(s, ConvStructure):
        raise TypeError(
            f"{fn}: `s` must be a ConvStructure (from `convjax.nn.structure(layer, "
            f"input_shape)` or `convjax.conv_structure`), got {_what(s)}."
        )


def _what(s) -> str:
    if isinstance(s, Layer):
        return "a Layer; pass its structure, `nn.structure(layer, input_shape)`"
    return type(s).__name__


# ---- whole models -------------------------------------------------------------
def check_structures(fn: str, structures, arg: str = "structures") -> None:
    """Raises TypeError unless ``structures`` is a ConvStructure, None or a (nested)
    tuple/list of them."""
    if structures is None or isinstance(structures, ConvStructure):
        return
    if isinstance(structures, (tuple, list)) and not isinstance(structures, Layer):
        for st in structures:
            check_structures(fn, st, arg)
        return
    raise TypeError(
        f"{fn}: `{arg}` must be a ConvStructure, None, or a tuple/list of them aligned "
        f"with the params (from `nn.structures(model, input_shape)`), got {_what(structures)}."
    )


def map_structures(
    fn: str, f, params, structures, *, arg: str = "structures", path: str = "params"
):
    """Applies ``f(layer_params, s)`` to the params of every layer that ``structures``
    gives a ConvStructure; params under ``None`` are returned unchanged (the same
    objects); tuples and lists keep their type.

    Raises:
      ValueError: a tuple of structures whose length differs from the params'.
      TypeError: ``structures`` is not a ConvStructure, None or a tuple/list of them.
    """
    if structures is None:
        return params
    if isinstance(structures, ConvStructure):
        return f(params, structures)
    check_structures(fn, structures, arg)
    if not isinstance(params, (tuple, list)) or len(params) != len(structures):
        got = type(params).__name__ + (
            f" of length {len(params)}" if isinstance(params, (tuple, list)) else ""
        )
        raise ValueError(
            f"{fn}: `{arg}` has {len(structures)} entries but {path} is {got}; give one "
            f"entry (a ConvStructure or None) per layer of the serial params."
        )
    out = [
        map_structures(fn, f, p, st, arg=arg, path=f"{path}[{j}]")
        for j, (p, st) in enumerate(zip(params, structures, strict=True))
    ]
    return type(params)(out)


def _layerwise(f):
    """Lets a one-layer move ``f(params, s)`` take a model's structures and params."""

    @functools.wraps(f)
    def wrapper(params, s, *args, **kwargs):
        if isinstance(s, ConvStructure):
            return f(params, s, *args, **kwargs)
        return map_structures(
            f.__name__, lambda p, st: f(p, st, *args, **kwargs), params, s, arg="s"
        )

    return wrapper


def _take(fn: str, params, s: ConvStructure, kind: str):
    """Checks ``params`` are ``kind``'s params for ``s``; returns ``(w, b or None)``."""
    got = kind_of(params, s, fn=fn)
    if got != kind:
        raise ValueError(
            f"{fn}: `params` must be {kind} params (`params['w']` of shape "
            f"{_w_shapes(s)[KINDS.index(kind)]}), got {got} params with shape "
            f"{tuple(np.shape(params['w']))}."
        )
    extra = set(params) - {"w", "b"}
    if extra:
        raise ValueError(
            f"{fn}: `params` has unexpected keys {sorted(extra)} (a linear layer's params "
            f"are {{'w', 'b'}})."
        )
    b = params.get("b")
    if b is not None and tuple(np.shape(b)) != _b_shape(s, kind):
        raise ValueError(
            f"{fn}: `params['b']` must have shape {_b_shape(s, kind)} for {kind} params, "
            f"got {tuple(np.shape(b))}."
        )
    return jnp.asarray(params["w"]), (None if b is None else jnp.asarray(b))


def _out(w, b):
    return {"w": w} if b is None else {"w": w, "b": b}


def _spread(b, s: ConvStructure):
    return jnp.broadcast_to(b.reshape((1,) * s.ndim + b.shape), s.bias_shape)


def _positions(s: ConvStructure) -> tuple[int, ...]:
    """The axes of the output positions in an untied bias ``(*Lout, Cout)``."""
    return tuple(range(s.ndim))


# ---- embeddings -----------------------------------------------------------
@_layerwise
def conv_to_local(params, s: ConvStructure):
    """Conv params -> the locally connected twin's params (same function).

    Every live tap of every position gets a copy of the filter (dead taps, which
    read only padding zeros, get 0); the bias is copied to every position.

    Example:
      >>> import jax, convjax
      >>> conv = convjax.nn.Conv1D(2, 3)
      >>> _, p = conv.init(jax.random.key(0), (6, 1))
      >>> conv_to_local(p, convjax.nn.structure(conv, (6, 1)))["w"].shape
      (4, 3, 1, 2)
    """
    w, b = _take("conv_to_local", params, s, "conv")
    return _out(s.conv_to_local(w), None if b is None else _spread(b, s))


@_layerwise
def local_to_dense(params, s: ConvStructure):
    """Locally connected params -> the dense twin's params (same function):
    ``w`` becomes ``s.local_dense(w)``, the bias is unchanged."""
    w, b = _take("local_to_dense", params, s, "local")
    return _out(s.local_dense(w), b)


@_layerwise
def conv_to_dense(params, s: ConvStructure):
    """Conv params -> the dense twin's params (same function): ``w`` becomes the
    matrix ``T(w) == conv_matrix(w, L, ...)``, the bias is copied to every position."""
    w, b = _take("conv_to_dense", params, s, "conv")
    return _out(s.dense(w), None if b is None else _spread(b, s))


# ---- projections back (nearest) -------------------------------------------
@_layerwise
def local_to_conv(params, s: ConvStructure):
    """Locally connected params -> the nearest conv params (in parameter space):
    each tap is the AVERAGE of its live copies, the bias the average over positions.
    Exact inverse of :func:`conv_to_local` on its image."""
    w, b = _take("local_to_conv", params, s, "local")
    return _out(s.local_to_conv_nearest(w), None if b is None else jnp.mean(b, axis=_positions(s)))


@_layerwise
def dense_to_local(params, s: ConvStructure):
    """Dense params -> the nearest locally connected params (least squares in the
    dense matrix): DROPS every off-structure weight (see :func:`off_structure_share`
    for how much of the weight norm that was); the bias is unchanged."""
    w, b = _take("dense_to_local", params, s, "dense")
    return _out(s.local_nearest(w), b)


@_layerwise
def dense_to_conv(params, s: ConvStructure):
    """Dense params -> the nearest conv params: ``w`` is
    ``argmin_v ||T(v) - w||_F`` (drops off-structure weights, averages copies), the
    bias the average over positions. ``conv_to_dense(dense_to_conv(p))`` is the
    orthogonal projection onto the dense twins of convolutions."""
    w, b = _take("dense_to_conv", params, s, "dense")
    return _out(s.nearest_filter(w), None if b is None else jnp.mean(b, axis=_positions(s)))


# ---- adjoints ---------------------------------------------------------------
@_layerwise
def local_to_conv_adjoint(params, s: ConvStructure):
    """Adjoint of :func:`conv_to_local`: SUMS each tap over its live positions and
    the bias over positions. Maps a local gradient to the conv gradient."""
    w, b = _take("local_to_conv_adjoint", params, s, "local")
    return _out(s.local_to_conv_adjoint(w), None if b is None else jnp.sum(b, axis=_positions(s)))


@_layerwise
def dense_to_local_adjoint(params, s: ConvStructure):
    """Adjoint of :func:`local_to_dense`: each untied weight gets the sum of the
    dense entries it sits in (off-structure entries are dropped)."""
    w, b = _take("dense_to_local_adjoint", params, s, "dense")
    return _out(s.local_adjoint(w), b)


@_layerwise
def dense_to_conv_adjoint(params, s: ConvStructure):
    """Adjoint of :func:`conv_to_dense`: ``T*``, SUMS each weight over its copies,
    the bias over positions. Maps a dense gradient to the conv gradient."""
    w, b = _take("dense_to_conv_adjoint", params, s, "dense")
    return _out(s.adjoint(w), None if b is None else jnp.sum(b, axis=_positions(s)))


# ---- generic moves ----------------------------------------------------------
_EMBED = {
    ("conv", "local"): conv_to_local,
    ("local", "dense"): local_to_dense,
    ("conv", "dense"): conv_to_dense,
}
_NEAREST = {
    ("local", "conv"): local_to_conv,
    ("dense", "local"): dense_to_local,
    ("dense", "conv"): dense_to_conv,
}
_ADJOINT = {
    ("local", "conv"): local_to_conv_adjoint,
    ("dense", "local"): dense_to_local_adjoint,
    ("dense", "conv"): dense_to_conv_adjoint,
}


def move(params, s, to: str, *, method: str = "nearest"):
    """Moves params to the twin of kind ``to``: an embedding upwards (conv -> local ->
    dense), a projection downwards with ``method="nearest"`` or the adjoint with
    ``method="adjoint"``; identity when ``params`` already are of kind ``to``.

    Args:
      params: one linear layer's params ``{"w", "b"}``, or a :func:`~convjax.nn.serial`
        model's params (a tuple).
      s: the layer's ConvStructure, or the model's structures
        (:func:`convjax.nn.structures`; ``None`` entries pass their params through).
      to: ``"conv"``, ``"local"`` or ``"dense"``.
      method: ``"nearest"`` (default) or ``"adjoint"``, for the moves downwards.

    Returns:
      Params of the same form, every treated layer of kind ``to``.

    Raises:
      ValueError: unknown ``to`` or ``method``, params that fit none of the shapes of
        their structure, structures not aligned with the params.
      TypeError: ``s`` is not a ConvStructure or a tree of them.

    Example:
      >>> import jax, convjax
      >>> from convjax import nn
      >>> model = nn.serial(nn.Conv1D(4, 3), nn.Relu, nn.Flatten(), nn.Dense(1))
      >>> _, params = model.init(jax.random.key(0), (8, 2))
      >>> ss = nn.structures(model, (8, 2))
      >>> dense = nn.move(params, ss, "dense")
      >>> dense[0]["w"].shape, dense[3] is params[3]
      ((24, 16), True)
    """
    to = check_kind("move", "to", to)
    method = _checks.check_choice("move", "method", method, ("nearest", "adjoint"))
    return map_structures("move", lambda p, st: _move_layer(p, st, to, method), params, s, arg="s")


def _move_layer(params, s: ConvStructure, to: str, method: str):
    src = kind_of(params, s, fn="move")
    if src == to:
        return dict(params)
    if (src, to) in _EMBED:
        return _EMBED[src, to](params, s)
    return (_NEAREST if method == "nearest" else _ADJOINT)[src, to](params, s)


# ---- distances ----------------------------------------------------------------
def off_structure_share(params, s: ConvStructure):
    """Share of the squared norm of ``params["w"]`` that no convolution of this
    structure could hold: for dense params, ``||w * ~mask||^2 / ||w||^2`` (what
    :func:`dense_to_local` drops); for locally connected params, the share on dead
    taps (taps that only read padding zeros); 0 for conv params. 0 for all-zero ``w``.
    Returns a scalar array."""
    kind = kind_of(params, s, fn="off_structure_share")
    w = jnp.asarray(params["w"])
    if kind == "dense":
        return s.off_structure_share(w)
    if kind == "conv":
        return jnp.zeros((), w.dtype)
    dead = jnp.asarray(~s.local_mask())
    total = jnp.sum(w**2)
    off = jnp.sum(jnp.where(dead, w, 0.0) ** 2)
    return jnp.where(total > 0, off / jnp.where(total > 0, total, 1.0), 0.0)


def distance_to_conv(params, s: ConvStructure):
    """Relative distance ``||w - E(N(w))|| / ||w||`` from ``params["w"]`` to the nearest
    convolution of this structure (``N`` the nearest projection, ``E`` the embedding):
    in the dense matrix's Frobenius norm for dense params, in parameter space for
    locally connected params; 0 for conv params. Returns a scalar array."""
    kind = kind_of(params, s, fn="distance_to_conv")
    w = jnp.asarray(params["w"])
    if kind == "dense":
        return s.distance_to_conv(w)
    if kind == "conv":
        return jnp.zeros((), w.dtype)
    near = s.conv_to_local(s.local_to_conv_nearest(w))
    total = jnp.sqrt(jnp.sum(w**2))
    dist = jnp.sqrt(jnp.sum((w - near) ** 2))
    return jnp.where(total > 0, dist / jnp.where(total > 0, total, 1.0), 0.0)


__all__ = [
    "KINDS",
    "check_structures",
    "conv_to_dense",
    "conv_to_local",
    "dense_to_conv",
    "dense_to_conv_adjoint",
    "dense_to_local",
    "dense_to_local_adjoint",
    "distance_to_conv",
    "kind_of",
    "local_to_conv",
    "local_to_conv_adjoint",
    "local_to_dense",
    "map_structures",
    "move",
    "off_structure_share",
]
