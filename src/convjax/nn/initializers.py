"""How a layer hands its weight to a jax initializer so that the fans are STRUCTURAL.

The layers take any initializer with jax's signature ``init(key, shape, dtype) ->
array``: everything in :mod:`jax.nn.initializers` (``lecun_normal()``,
``he_normal()``, ``glorot_uniform()``, ``variance_scaling(...)``, ``normal(0.01)``,
``zeros``, ...) and the same functions re-exported as ``flax.linen.initializers``.
convjax has no initializers of its own.

A variance-scaling initializer reads its fans from the shape it is given, with
its default axes (``in_axis=-2``, ``out_axis=-1``, no batch axis; the remaining
axes are the receptive field)::

    fan_in = prod(shape) / shape[-1]        fan_out = prod(shape) / shape[-2]

The fans that matter are the layer's STRUCTURAL ones: ``fan_in`` is the number of
weights one output unit sums over (the nonzeros in a row of the layer's dense
matrix), ``fan_out`` the number of output units one input unit feeds (per
position, in the interior). So the layer does not hand the initializer its
weight array's shape; it hands it a VIEW whose counts are the structural ones and
builds the weight from one or several draws (:func:`weight_view`,
:func:`init_weight`):

=========  ======================  ==============================  =======  =========
kind       params['w']             the initializer is called on    fan_in   fan_out
=========  ======================  ==============================  =======  =========
conv, g=1  (K, Cin, Cout)          (K, Cin, Cout)                  K*Cin    K*Cout
conv, g>1  (K, Cin/g, Cout)        (K, Cin/g, Cout/g) per group    K*Cin/g  K*Cout/g
local      (Lout, K, Cin/g, Cout)  the conv view per position      K*Cin/g  K*Cout/g
dense      (Lout*Cout, L*Cin)      (L*Cin, Lout*Cout), transposed  L*Cin    Lout*Cout
Dense(n)   (n, F)                  (F, n), transposed              F        n
=========  ======================  ==============================  =======  =========

With ``N`` spatial axes ``K`` and ``Lout`` are shapes: the conv view is
``(*K, Cin/g, Cout/g)`` (``fan_in = prod(K)*Cin/g``), the locally connected weight
``(*Lout, *K, Cin/g, Cout)`` is one such draw per output position, the dense matrix
``(prod(Lout)*Cout, prod(L)*Cin)`` is drawn transposed.

(``g`` = ``groups``; "per group": the ``g`` draws side by side along ``Cout``;
"per position": one draw for each of the ``Lout`` output positions.)

Separate draws use keys split from the layer's key (``jax.vmap`` over them), so
a locally connected layer starts as ``Lout`` independent convolutions of the same
scale, and a conv, its locally connected twin and its dense twin start at the
same activation scale (``Var(y) = scale * Var(x)`` per unit for
``variance_scaling(scale, "fan_in", ...)``). Handing the initializer the weight's
own shape would count the ``Lout`` axis of the locally connected weight as
receptive field (as ``flax.linen.ConvLocal`` does through its flattened kernel),
making the weights ``sqrt(Lout)`` times too small, and would read the dense
matrix ``(out, in)`` the wrong way round.

The stride is not counted in ``fan_out`` (a shape cannot carry the fractional
``K*Cout/(g*stride)``); neither jax nor flax counts it. Initializers built with
other axes (``variance_scaling(..., in_axis=0)``) see the same views and count
their own way.

Biases: ``b_init(key, (Cout,), dtype)`` for a conv and a plain ``Dense(n)``
(``(n,)``); once per output position for the ``(Lout, Cout)`` bias of the local
and dense kinds. The default is :func:`jax.nn.initializers.zeros`.
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np

from convjax.nn._describe import short

Initializer = Callable[..., jax.Array]

VIEW_KINDS = ("conv", "local", "dense")

#: the default weight initializer of the linear layers (truncated normal, ``1/fan_in``)
DEFAULT_W_INIT: Initializer = jax.nn.initializers.lecun_normal()
#: the default bias initializer
DEFAULT_B_INIT: Initializer = jax.nn.initializers.zeros


def check_initializer(fn: str, name: str, init) -> None:
    """Raises TypeError unless ``init`` looks like ``init(key, shape, dtype)``.

    Catches the old convjax signature ``(key, shape, dtype, *, fan_in, fan_out)``
    (required keyword-only arguments) with a message that says what to use instead.
    """
    if not callable(init):
        raise TypeError(
            f"{fn}: `{name}` must be an initializer `init(key, shape, dtype) -> array` "
            f"(e.g. jax.nn.initializers.lecun_normal()), got {short(init)}."
        )
    try:
        sig = inspect.signature(init)
    except (TypeError, ValueError):  # builtins without a signature: trust the caller
        return
    required_kw = [
        p.name for p in sig.parameters.values() if p.kind is p.KEYWORD_ONLY and p.default is p.empty
    ]
    if required_kw:
        raise TypeError(
            f"{fn}: `{name}` must be an initializer `init(key, shape, dtype) -> array` "
            f"(e.g. jax.nn.initializers.lecun_normal()); this one requires the keyword "
            f"argument(s) {', '.join(required_kw)}: the old convjax signature `(key, shape, "
            f"dtype, *, fan_in, fan_out)` is gone, the layer now hands the initializer a "
            f"shape whose fans are the structural ones (see CHANGELOG.md)."
        )


def weight_view(kind: str, w_shape, *, groups: int = 1, ndim: int = 1) -> tuple[int, ...]:
    """The shape one call of the initializer sees for a weight of ``w_shape``.

    Args:
      kind: ``"conv"`` (``w_shape == (*K, Cin/g, Cout)``), ``"local"``
        (``(*Lout, *K, Cin/g, Cout)``) or ``"dense"`` (``(n_out, n_in)``).
      w_shape: the weight's shape.
      groups: the layer's ``groups`` (conv and local).
      ndim: the number of spatial axes ``N`` (conv and local).

    Returns:
      The view: ``(*K, Cin/g, Cout/g)`` for conv and local (drawn once per group and,
      for local, once per output position), ``(n_in, n_out)`` for dense; so
      ``fan_in = prod(K)*Cin/g`` for conv and local, ``n_in`` for dense.

    Raises:
      ValueError: unknown ``kind``, a shape of the wrong rank, or ``Cout`` not
        divisible by ``groups``.

    Example:
      >>> weight_view("local", (14, 3, 2, 8), groups=2)
      (3, 2, 4)
      >>> weight_view("dense", (112, 64))
      (64, 112)
      >>> weight_view("conv", (3, 3, 2, 8), ndim=2)
      (3, 3, 2, 8)
    """
    fn = "weight_view"
    if kind not in VIEW_KINDS:
        raise ValueError(
            f"{fn}: `kind` must be one of {', '.join(map(repr, VIEW_KINDS))}, got {kind!r}."
        )
    shape = tuple(int(d) for d in w_shape)
    rank = {"conv": ndim + 2, "local": 2 * ndim + 2, "dense": 2}[kind]
    if len(shape) != rank:
        raise ValueError(f"{fn}: a {kind} weight must have rank {rank}, got `w_shape`={shape}.")
    if kind == "dense":
        return (shape[1], shape[0])
    ks, cin_g, cout = shape[-ndim - 2 : -2], shape[-2], shape[-1]
    if groups < 1 or cout % groups:
        raise ValueError(
            f"{fn}: Cout={cout} (the last axis of `w_shape`={shape}) must be divisible by "
            f"`groups`={groups}."
        )
    return (*ks, cin_g, cout // groups)


def view_fans(view) -> tuple[float, float]:
    """``(fan_in, fan_out)`` that a variance-scaling initializer with its default axes
    reads from ``view``: ``prod / view[-1]`` and ``prod / view[-2]``.

    Example:
      >>> view_fans((3, 4, 8))
      (12.0, 24.0)
    """
    n = math.prod(view)
    return n / view[-1], n / view[-2]


def init_weight(
    init: Initializer,
    key,
    kind: str,
    w_shape,
    dtype,
    *,
    groups: int = 1,
    ndim: int = 1,
    fn: str = "init_weight",
    name: str = "w_init",
) -> jax.Array:
    """Draws a weight of ``w_shape`` from ``init`` through its structural view.

    Args:
      init: ``init(key, shape, dtype) -> array``, e.g. from :mod:`jax.nn.initializers`.
      key: a PRNG key.
      kind: ``"conv"``, ``"local"`` or ``"dense"``; see :func:`weight_view`.
      w_shape: the weight's shape: ``(*K, Cin/g, Cout)``, ``(*Lout, *K, Cin/g, Cout)``
        or ``(n_out, n_in)``.
      dtype: the parameter dtype.
      groups: the layer's ``groups``.
      ndim: the number of spatial axes (conv and local).
      fn, name: the function and argument named in error messages.

    Returns:
      An array of ``w_shape`` and ``dtype``: for conv the per-group draws of the
      view side by side along ``Cout``; for local one such draw per position; for
      dense the transposed draw.

    Raises:
      ValueError, TypeError: the initializer fails on the view or returns another
        shape (the message names ``fn``, ``name`` and the view).

    Example:
      >>> import jax
      >>> w = init_weight(jax.nn.initializers.he_normal(), jax.random.key(0), "local",
      ...                 (14, 3, 4, 8), "float32")
      >>> w.shape
      (14, 3, 4, 8)
    """
    view = weight_view(kind, w_shape, groups=groups, ndim=ndim)
    w_shape = tuple(int(d) for d in w_shape)
    if kind == "dense":
        return _call(fn, name, init, key, view, dtype).T
    if kind == "conv":
        return _conv_draw(fn, name, init, key, view, dtype, groups)
    keys = jax.random.split(key, math.prod(w_shape[:ndim]))  # one draw per output position
    w = jax.vmap(lambda k: _conv_draw(fn, name, init, k, view, dtype, groups))(keys)
    return w.reshape(w_shape)


def init_bias(
    init: Initializer, key, b_shape, dtype, *, fn: str = "init_bias", name: str = "b_init"
) -> jax.Array:
    """Draws a bias: ``init(key, b_shape)`` for a 1-D ``b_shape``; for ``(*Lout, Cout)``
    one ``(Cout,)`` draw per output position (split keys), as the conv bias is drawn.

    Example:
      >>> import jax
      >>> init_bias(jax.nn.initializers.constant(0.5), jax.random.key(0), (2, 3),
      ...           "float32").tolist()
      [[0.5, 0.5, 0.5], [0.5, 0.5, 0.5]]
    """
    b_shape = tuple(int(d) for d in b_shape)
    if len(b_shape) == 1:
        return _call(fn, name, init, key, b_shape, dtype)
    keys = jax.random.split(key, math.prod(b_shape[:-1]))
    b = jax.vmap(lambda k: _call(fn, name, init, k, b_shape[-1:], dtype))(keys)
    return b.reshape(b_shape)


def _conv_draw(fn, name, init, key, view, dtype, groups):
    """``(*K, Cin/g, Cout)`` from ``groups`` draws of ``view = (*K, Cin/g, Cout/g)``."""
    if groups == 1:
        return _call(fn, name, init, key, view, dtype)
    keys = jax.random.split(key, groups)
    w = jax.vmap(lambda k: _call(fn, name, init, k, view, dtype))(keys)  # (g, *K, Cin/g, Cout/g)
    return jnp.moveaxis(w, 0, -2).reshape(*view[:-1], groups * view[-1])


def _call(fn, name, init, key, shape, dtype):
    try:
        out = init(key, shape, dtype)
    except (TypeError, ValueError) as e:
        raise (TypeError if isinstance(e, TypeError) else ValueError)(
            f"{fn}: `{name}` failed on the shape {shape} (the structural view it is "
            f"handed; see convjax.nn.initializers): {type(e).__name__}: {e}"
        ) from e
    if tuple(np.shape(out)) != tuple(shape):
        raise ValueError(
            f"{fn}: `{name}` returned shape {tuple(np.shape(out))} for the requested "
            f"shape {shape}; an initializer must return an array of the shape it is given."
        )
    return jnp.asarray(out, dtype)


__all__ = [
    "DEFAULT_B_INIT",
    "DEFAULT_W_INIT",
    "VIEW_KINDS",
    "check_initializer",
    "init_bias",
    "init_weight",
    "view_fans",
    "weight_view",
]
