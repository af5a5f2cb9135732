"""Layers on parameter pytrees: convolutional, locally connected and fully
connected as ONE linear mechanism in three kinds, plus the usual pieces.

A layer is a :class:`Layer`, a NamedTuple of two pure functions:

* ``init(key, input_shape) -> (output_shape, params)``;
* ``apply(params, x) -> y``.

``input_shape`` and ``output_shape`` are tuples; the trailing axes are one example
(``(L, C)`` for the sequence layers) and any leading axes are batch axes carried
through unchanged (they may be ``-1``). ``apply`` works on one example and on any
leading batch axes. Integer and bool inputs are promoted as :func:`convjax.conv1d`
promotes them: with the params' dtype for a linear layer (``int32`` with
``float32`` params gives ``float32``), to jax's default float dtype for the layers
without params; complex inputs are refused. ``params`` are plain dicts (or tuples of them, for
:func:`serial`) of arrays; optax consumes them directly.

The linear family
-----------------

:class:`Linear` is the one mechanism: a linear map ``y = T x + b`` from
``(*L, Cin)`` to ``(*Lout, Cout)`` whose matrix ``T`` has the support of a
convolution with ``N`` spatial axes (:class:`~convjax.tying.ConvStructure`), in one
of three KINDS (shown for ``N = 1``; :func:`Conv2D` and :func:`LocallyConnected2D`
are the same with ``K``, ``L``, ``Lout`` pairs, e.g. ``w`` of shape
``(KH, KW, Cin//g, Cout)`` for a conv on ``(H, W, Cin)`` images):

=========  ============================  ============================  ==================
kind       factory                       ``params["w"]``               ``params["b"]``
=========  ============================  ============================  ==================
``conv``   :func:`Conv1D`                ``(K, Cin//g, Cout)``         ``(Cout,)``
``local``  :func:`LocallyConnected1D`    ``(Lout, K, Cin//g, Cout)``   ``(Lout, Cout)``
``dense``  :func:`Dense`                 ``(Lout*Cout, L*Cin)``        ``(Lout, Cout)``
=========  ============================  ============================  ==================

* ``"conv"``: every output position uses the same filter (a convolution; apply
  route: :func:`convjax.conv1d`).
* ``"local"``: output position ``o`` has its own filter ``w[o]`` reading the
  same taps (locally connected; route: :func:`convjax.local.locally_connected1d`);
  the bias is per position AND channel.
* ``"dense"``: every entry of ``T`` is free (fully connected; route: one matmul).
  ``params["w"]`` IS the matrix ``T``, laid out as :func:`convjax.conv_matrix`:
  row ``o*Cout + co``, column ``i*Cin + ci``; so the dense twin of a conv with
  filter ``w`` has ``params["w"] == conv_matrix(w, L, ...)``.

The three share one init (any :mod:`jax.nn.initializers` initializer, handed a view
of the weight whose fans are the structural ones, see
:mod:`convjax.nn.initializers`), one bias handling, one shape inference and one
set of input checks. A plain ``Dense(n)`` (no ``out_length``, no conv settings)
is the familiar fully connected layer on the last axis, a separate
:class:`PlainDense`: ``(..., F) -> (..., n)``, ``w`` of shape ``(n, F)``, ``b`` of
shape ``(n,)``.

:func:`twin` gives a layer, or every linear layer of a :func:`serial` model, in
another kind; :func:`structures` the structures that :mod:`convjax.nn.family`
and :mod:`convjax.nn.tied` take to move and train a whole model's params.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from convjax import _checks
from convjax.convolution import ALGORITHMS as CONV_ALGORITHMS
from convjax.convolution import conv
from convjax.geometry import ConvOptions, PaddingLike, conv_options, per_axis
from convjax.local import local_apply
from convjax.nn import initializers as inits
from convjax.nn._describe import short
from convjax.tying import ConvStructure, structure_from_options

#: the three kinds of linear layer, from most to least tied
KINDS = ("conv", "local", "dense")
# old names of the kinds (see CHANGELOG.md), for a helpful error only
_OLD_KINDS = {
    "shared": "conv",
    "per_position": "local",
    "none": "dense",
    "untied": "local",
    "tied": "conv",
    "fully_connected": "dense",
}


def check_kind(fn: str, name: str, kind) -> str:
    """Returns ``kind`` (one of :data:`KINDS`, case-insensitive) or raises ValueError
    naming ``fn`` and ``name``; an old name (``"shared"``, ``"per_position"``,
    ``"none"``, ...) gets its new one in the message."""
    if not isinstance(kind, str):
        raise ValueError(
            f"{fn}: `{name}` must be one of 'conv', 'local', 'dense', got {short(kind)}."
        )
    if kind.lower() in _OLD_KINDS:
        raise ValueError(
            f"{fn}: `{name}` must be one of 'conv', 'local', 'dense', got {kind!r} (an old "
            f"name, now {_OLD_KINDS[kind.lower()]!r}; see CHANGELOG.md)."
        )
    return _checks.check_choice(fn, name, kind, KINDS)


class Layer(NamedTuple):
    """A layer: two pure functions, and what built them.

    Attributes:
      init: ``init(key, input_shape) -> (output_shape, params)``.
      apply: ``apply(params, x) -> y``.
      spec: the static description the factory built the layer from (a
        :class:`Linear`, a :class:`Serial`, ...), read by :func:`linear_spec`,
        :func:`structure` and :func:`twin`; ``None`` for a custom
        ``Layer(init, apply)``. It survives replacing the functions, e.g.
        ``layer._replace(init=jax.jit(layer.init, static_argnums=1))``.
    """

    init: Callable
    apply: Callable
    spec: Any = None

    def __call__(self, *args, **kwargs):
        """A layer is not callable; raises TypeError saying what to write instead."""
        if not args and not kwargs:
            raise TypeError(
                "Layer: this is already a layer (a Layer(init, apply)), not a factory: "
                "use it without `()`, e.g. `nn.serial(nn.Conv1D(8, 3), nn.Relu)`, not "
                "`nn.Relu()`."
            )
        raise TypeError(
            f"Layer: a layer is not callable (called with {len(args)} positional "
            f"argument(s)); run it with `layer.apply(params, x)` and build its params with "
            f"`layer.init(key, input_shape)`."
        )


# --------------------------------------------------------------------------
# shared helpers
# --------------------------------------------------------------------------
def _default_dtype(fn: str, dtype):
    if dtype is None:
        return jax.dtypes.canonicalize_dtype(jnp.float64)
    try:
        dt = jnp.dtype(dtype)
    except TypeError:
        dt = None
    if dt is None or not jnp.issubdtype(dt, jnp.floating):
        raise TypeError(
            f"{fn}: `dtype` must be a real floating dtype (e.g. 'float32'), got {short(dtype)}."
        )
    return dt


def _check_input_shape(fn: str, input_shape, ndim: int, layout: str) -> tuple[int, ...]:
    """Checks ``input_shape`` (a tuple of ints, rank >= ndim, positive example axes)."""
    if not isinstance(input_shape, (tuple, list)) or not all(
        isinstance(d, (int, np.integer)) and not isinstance(d, bool) for d in input_shape
    ):
        hint = "; pass `x.shape`, not the array `x`" if hasattr(input_shape, "shape") else ""
        raise TypeError(
            f"{fn}: `input_shape` must be a tuple of ints (layout {layout}), "
            f"got {short(input_shape)}{hint}."
        )
    shape = tuple(int(d) for d in input_shape)
    if len(shape) < ndim or any(d < 1 for d in shape[len(shape) - ndim :]):
        raise ValueError(
            f"{fn}: `input_shape` must end with {ndim} positive sizes (layout {layout}), "
            f"got {shape}."
        )
    return shape


def _check_x(fn: str, x, ndim: int, layout: str):
    """Checks ``x`` is a real array (bool, integer or floating) of rank >= ``ndim``."""
    _checks.check_real(fn, "x", x)
    _checks.check_min_ndim(fn, "x", x, ndim, layout)
    return jnp.asarray(x)


def _check_params(fn: str, params, expected: dict[str, tuple[int, ...]], layouts: dict, why: str):
    """Checks ``params`` is a dict with exactly the expected keys and shapes."""
    if not isinstance(params, dict):
        raise TypeError(
            f"{fn}: `params` must be a dict with keys {sorted(expected)}, got {_short(params)}."
        )
    if set(params) != set(expected):
        raise ValueError(
            f"{fn}: `params` must have keys {sorted(expected)}, got keys {sorted(params)}; "
            f"are these the params of another layer?"
        )
    for name, shape in expected.items():
        got = tuple(np.shape(params[name]))
        if got != shape:
            raise ValueError(
                f"{fn}: `params['{name}']` must have shape {shape} (layout "
                f"{layouts[name]}) {why}, got shape {got}; are these the params of "
                f"another layer or of another input shape?"
            )
        _checks.check_floating(fn, f"params['{name}']", params[name])


def _short(obj) -> str:
    """Short form of a params pytree: its type and the shapes of its leaves."""
    if isinstance(obj, (tuple, list, dict)):
        s = repr(jax.tree_util.tree_map(lambda a: tuple(np.shape(a)), obj))
        s = s if len(s) < 100 else s[:97] + "..."
        return f"{type(obj).__name__} {s}"
    return short(obj)


def _add_bias(y, b):
    return y + jnp.broadcast_to(b.astype(y.dtype), y.shape)


# --------------------------------------------------------------------------
# the one linear mechanism
# --------------------------------------------------------------------------
class Frame(NamedTuple):
    """Everything static a :class:`Linear` needs for one example shape.

    Attributes:
      in_shape: the example input shape, ``(*spatial, Cin)``.
      out_shape: the example output shape, ``(*out_spatial, Cout)``.
      w_shape, b_shape: parameter shapes (``b_shape`` is None without a bias).
      structure: the :class:`ConvStructure`, or None for a dense layer built
        without conv settings.
    """

    in_shape: tuple[int, ...]
    out_shape: tuple[int, ...]
    w_shape: tuple[int, ...]
    b_shape: tuple[int, ...] | None
    structure: ConvStructure | None


def _layout(ndim: int) -> str:
    return {1: "(..., L, Cin)", 2: "(..., H, W, Cin)"}.get(ndim, f"(..., *spatial[{ndim}], Cin)")


@dataclasses.dataclass(frozen=True)
class Linear:
    """A linear layer over a convolution structure with ``ndim`` spatial axes, of one
    of three kinds.

    Build it with :func:`Conv1D`, :func:`Conv2D`, :func:`LocallyConnected1D`,
    :func:`LocallyConnected2D`, :func:`Dense` with conv settings (or :func:`twin`);
    :meth:`layer` gives the :class:`Layer`. (A plain ``Dense(n)`` on the last axis
    is a :class:`PlainDense`, not this.)

    Attributes:
      kind: ``"conv"``, ``"local"`` or ``"dense"``.
      ndim: ``N``, the number of spatial axes.
      out_channels: ``Cout``.
      kernel_shape: ``(K1, ..., KN)``; None for a dense layer without conv structure.
      out_spatial: the output spatial shape of a dense layer without conv
        structure (``(*spatial, Cin) -> (*out_spatial, Cout)``); None otherwise.
      options: the normalised conv options (stride, padding, ..., per axis).
      use_bias: whether there is a bias.
      w_init, b_init: initializers ``init(key, shape, dtype)`` (see
        :mod:`convjax.nn.initializers` for the shapes they are handed).
      dtype: the parameter dtype.
      precision: passed to XLA by ``apply``.
      algorithm: the :func:`convjax.conv` algorithm of the conv route (``"auto"``
        by default; the other kinds have one route each).
    """

    kind: str
    ndim: int
    out_channels: int
    kernel_shape: tuple[int, ...] | None
    out_spatial: tuple[int, ...] | None
    options: ConvOptions
    use_bias: bool
    w_init: Callable
    b_init: Callable
    dtype: Any
    precision: Any = None
    algorithm: str = "auto"

    @property
    def name(self) -> str:
        if self.kind == "dense":
            return "Dense"
        base = "Conv" if self.kind == "conv" else "LocallyConnected"
        return f"{base}{self.ndim}D"

    @property
    def in_ndim(self) -> int:
        """Rank of one example: ``N + 1`` (``(*spatial, Cin)``)."""
        return self.ndim + 1

    @property
    def layout(self) -> str:
        return _layout(self.ndim)

    def layer(self) -> Layer:
        """The :class:`Layer` ``(init, apply)`` of this spec."""
        return Layer(self.init, self.apply, self)

    # ---- static shapes ------------------------------------------------------
    def frame(self, example_shape: tuple[int, ...], *, fn: str | None = None) -> Frame:
        """The static shapes and structure for one example of ``example_shape``."""
        fn = fn or f"{self.name}.init"
        cout = self.out_channels
        spatial, cin = tuple(example_shape[:-1]), example_shape[-1]
        if self.kernel_shape is None:  # dense (*spatial, Cin) -> (*out_spatial, Cout)
            assert self.out_spatial is not None
            outs = self.out_spatial
            w = (math.prod(outs) * cout, math.prod(spatial) * cin)
            b = (*outs, cout)
            return Frame((*spatial, cin), b, w, b if self.use_bias else None, None)
        g = self.options.groups
        if cin % g:
            raise ValueError(
                f"{fn}: the input channels Cin={cin} must be divisible by `groups`={g}."
            )
        s = structure_from_options(
            self.options, (*self.kernel_shape, cin // g, cout), spatial, fn=fn
        )
        shapes: dict[str, tuple[int, ...]] = {
            "conv": s.filter_shape,
            "local": s.local_filter_shape,
            "dense": s.dense_shape,
        }
        b = (cout,) if self.kind == "conv" else s.bias_shape
        out = (*s.out_shape, cout)
        return Frame((*spatial, cin), out, shapes[self.kind], b if self.use_bias else None, s)

    def output_shape(self, input_shape) -> tuple[int, ...]:
        """``input_shape`` (leading axes, then one example) -> the output shape."""
        shape = _check_input_shape(f"{self.name}.init", input_shape, self.in_ndim, self.layout)
        k = len(shape) - self.in_ndim
        return shape[:k] + self.frame(shape[k:]).out_shape

    def structure(self, input_shape) -> ConvStructure:
        """The :class:`ConvStructure` of this layer on inputs of ``input_shape``
        (leading batch axes allowed). Raises ValueError for a dense layer built
        without conv settings (it has no conv structure)."""
        shape = _check_input_shape(f"{self.name}.structure", input_shape, self.in_ndim, self.layout)
        fr = self.frame(shape[len(shape) - self.in_ndim :])
        if fr.structure is None:
            raise ValueError(
                f"{self.name}.structure: this dense layer has no conv structure (it was "
                f"built without `kernel_size`); build its dense twin with "
                f"`nn.twin(conv_layer, 'dense')` or `Dense(..., kernel_size=...)`."
            )
        return fr.structure

    # ---- the layer ------------------------------------------------------------
    def init(self, key, input_shape):
        """``init(key, input_shape) -> (output_shape, params)``.

        ``params`` is ``{"w": ..., "b": ...}`` (no ``"b"`` without bias) with the
        shapes of the table in :mod:`convjax.nn.layers`; ``w`` and ``b`` are drawn
        through the structural views of :mod:`convjax.nn.initializers`.
        """
        fn = f"{self.name}.init"
        shape = _check_input_shape(fn, input_shape, self.in_ndim, self.layout)
        k = len(shape) - self.in_ndim
        fr = self.frame(shape[k:], fn=fn)
        kw, kb = jax.random.split(key)
        params = {
            "w": inits.init_weight(
                self.w_init,
                kw,
                self.kind,
                fr.w_shape,
                self.dtype,
                groups=self.options.groups,
                ndim=self.ndim,
                fn=fn,
            )
        }
        if self.use_bias:
            params["b"] = inits.init_bias(self.b_init, kb, fr.b_shape, self.dtype, fn=fn)
        return shape[:k] + fr.out_shape, params

    def apply(self, params, x):
        """``apply(params, x) -> y``: ``x`` of shape ``(..., *spatial, Cin)``, ``y`` of
        shape ``(..., *out_spatial, Cout)``."""
        fn = f"{self.name}.apply"
        x = _check_x(fn, x, self.in_ndim, self.layout)
        example = x.shape[x.ndim - self.in_ndim :]
        fr = self._apply_frame(fn, params, example)
        w = params["w"]
        dtype = _checks.result_dtype(fn, x=x, w=w)  # integer x: promoted, as conv does
        x, w = x.astype(dtype), jnp.asarray(w, dtype)
        if self.kind == "conv":
            y = _conv_route(x, w, self.options, self.precision, self.algorithm)
        elif self.kind == "local":
            assert fr.structure is not None  # a local layer always has its structure
            y = local_apply(x, w, fr.structure.geometry, self.options.groups, self.precision)
        else:
            batch = x.shape[: x.ndim - self.in_ndim]
            flat = x.reshape(*batch, math.prod(fr.in_shape))
            y = jnp.einsum("...i,oi->...o", flat, w, precision=self.precision)
            y = y.reshape(*batch, *fr.out_shape)
        if self.use_bias:
            y = _add_bias(y, params["b"])
        return y

    def _apply_frame(self, fn, params, example) -> Frame:
        cin0 = self._cin_from_params(params)
        cin = example[-1]
        if cin0 is not None and cin != cin0:
            raise ValueError(
                f"{fn}: `x` has Cin={cin} channels (x.shape[-1]) but `params` were "
                f"built for Cin={cin0} channels."
            )
        fr = self.frame(tuple(example), fn=fn)
        expected = {"w": fr.w_shape}
        layouts = {"w": _w_layout(self.kind, self.ndim)}
        if self.use_bias and fr.b_shape is not None:
            expected["b"] = fr.b_shape
            layouts["b"] = _b_layout(self.kind, self.ndim)
        why = f"for `x` with example shape {tuple(example)}"
        if (
            self.kind != "conv"
            and isinstance(params, dict)
            and "w" in params
            and tuple(np.shape(params["w"])) != fr.w_shape
        ):
            size = f"L={example[0]}" if self.ndim == 1 else f"spatial shape {tuple(example[:-1])}"
            why += (
                f" (the params of a {self.name} layer fix its input "
                f"{'length' if self.ndim == 1 else 'shape'}; this `x` has {size})"
            )
        _check_params(fn, params, expected, layouts, why)
        return fr

    def _cin_from_params(self, params):
        """The Cin the params were built for, when it can be read off them."""
        if not isinstance(params, dict) or "w" not in params:
            return None
        wshape = np.shape(params["w"])
        rank = {"conv": self.ndim + 2, "local": 2 * self.ndim + 2}.get(self.kind)
        if len(wshape) == rank:
            return wshape[-2] * self.options.groups
        return None


def _w_layout(kind: str, ndim: int) -> str:
    if ndim == 1:
        return {
            "conv": "(K, Cin//groups, Cout)",
            "local": "(Lout, K, Cin//groups, Cout)",
            "dense": "(Lout*Cout, L*Cin)",
        }[kind]
    return {
        "conv": "(*K, Cin//groups, Cout)",
        "local": "(*Lout, *K, Cin//groups, Cout)",
        "dense": "(prod(Lout)*Cout, prod(L)*Cin)",
    }[kind]


def _b_layout(kind: str, ndim: int) -> str:
    if kind == "conv":
        return "(Cout,)"
    return "(Lout, Cout)" if ndim == 1 else "(*Lout, Cout)"


@dataclasses.dataclass(frozen=True)
class PlainDense:
    """The familiar fully connected layer on the last axis, ``(..., F) -> (..., n)``:
    ``w`` of shape ``(n, F)``, ``b`` of shape ``(n,)``. No conv structure; built by
    ``Dense(n)``."""

    out_features: int
    use_bias: bool
    w_init: Callable
    b_init: Callable
    dtype: Any
    precision: Any = None

    name = "Dense"
    layout = "(..., F)"

    def layer(self) -> Layer:
        return Layer(self.init, self.apply, self)

    def init(self, key, input_shape):
        """``init(key, (..., F)) -> ((..., n), {"w": (n, F), "b": (n,)})``."""
        fn = "Dense.init"
        shape = _check_input_shape(fn, input_shape, 1, self.layout)
        n, f_in = self.out_features, shape[-1]
        kw, kb = jax.random.split(key)
        params = {"w": inits.init_weight(self.w_init, kw, "dense", (n, f_in), self.dtype, fn=fn)}
        if self.use_bias:
            params["b"] = inits.init_bias(self.b_init, kb, (n,), self.dtype, fn=fn)
        return shape[:-1] + (n,), params

    def apply(self, params, x):
        """``apply(params, x)``: ``(..., F) -> (..., n)``."""
        fn = "Dense.apply"
        x = _check_x(fn, x, 1, self.layout)
        n, f_in = self.out_features, x.shape[-1]
        expected: dict[str, tuple[int, ...]] = {"w": (n, f_in)}
        if self.use_bias:
            expected["b"] = (n,)
        layouts = {"w": "(n, F)", "b": "(n,)"}
        _check_params(fn, params, expected, layouts, f"for `x` with F={f_in} features")
        dtype = _checks.result_dtype(fn, x=x, w=params["w"])
        w = jnp.asarray(params["w"], dtype)
        y = jnp.einsum("...i,oi->...o", x.astype(dtype), w, precision=self.precision)
        return _add_bias(y, params["b"]) if self.use_bias else y


def _conv_route(x, w, opts: ConvOptions, precision, algorithm: str):
    return conv(
        x,
        w,
        stride=opts.stride,
        padding=opts.padding,
        dilation=opts.dilation,
        groups=opts.groups,
        flip=opts.flip,
        padding_mode=opts.padding_mode,
        precision=precision,
        algorithm=algorithm,
    )


def _common(fn: str, out_channels, use_bias, w_init, b_init) -> int:
    """Checks the arguments every linear factory has; returns ``out_channels``."""
    out_channels = _checks.as_positive_int(fn, "out_channels", out_channels)
    if not isinstance(use_bias, (bool, np.bool_)):
        raise TypeError(f"{fn}: `use_bias` must be a bool, got {short(use_bias)}.")
    for name, f in (("w_init", w_init), ("b_init", b_init)):
        if f is not None:
            inits.check_initializer(fn, name, f)
    return out_channels


def _make_linear(
    fn: str,
    kind: str,
    ndim: int,
    out_channels,
    kernel_size,
    out_length,
    *,
    stride,
    padding,
    dilation,
    groups,
    flip,
    padding_mode,
    use_bias,
    w_init,
    b_init,
    dtype,
    precision,
    algorithm: str = "auto",
) -> Linear:
    out_channels = _common(fn, out_channels, use_bias, w_init, b_init)
    kernel_shape = None if kernel_size is None else per_axis(fn, "kernel_size", kernel_size, ndim)
    out_spatial = None if out_length is None else per_axis(fn, "out_length", out_length, ndim)
    opts = conv_options(
        stride=stride,
        padding=padding,
        dilation=dilation,
        groups=groups,
        flip=flip,
        padding_mode=padding_mode,
        ndim=ndim,
        fn=fn,
    )
    if out_channels % opts.groups:
        raise ValueError(
            f"{fn}: `out_channels`={out_channels} must be divisible by `groups`={opts.groups}."
        )
    return Linear(
        kind=kind,
        ndim=ndim,
        out_channels=out_channels,
        kernel_shape=kernel_shape,
        out_spatial=out_spatial,
        options=opts,
        use_bias=bool(use_bias),
        w_init=w_init if w_init is not None else inits.DEFAULT_W_INIT,
        b_init=b_init if b_init is not None else inits.DEFAULT_B_INIT,
        dtype=_default_dtype(fn, dtype),
        precision=precision,
        algorithm=_checks.check_choice(fn, "algorithm", algorithm, CONV_ALGORITHMS),
    )


def Conv1D(
    out_channels: int,
    kernel_size: int,
    *,
    stride=1,
    padding: PaddingLike = "valid",
    dilation=1,
    groups=1,
    flip: bool = False,
    padding_mode: str = "zeros",
    use_bias: bool = True,
    w_init: Callable | None = None,
    b_init: Callable | None = None,
    dtype=None,
    precision=None,
    algorithm: str = "auto",
) -> Layer:
    """1-D convolution layer (kind ``"conv"``): ``(..., L, Cin) -> (..., Lout, Cout)``.

    Params: ``{"w": (K, Cin//groups, Cout), "b": (Cout,)}``; ``apply`` is
    :func:`convjax.conv1d` plus the bias. Works for any input length (the filter
    does not depend on ``L``).

    Args:
      out_channels: ``Cout``.
      kernel_size: ``K``.
      stride, padding, dilation, groups, flip, padding_mode: as in
        :func:`convjax.conv1d` (``flip=False``: cross-correlation, like torch/flax).
      use_bias: add a per-channel bias.
      w_init, b_init: any initializers ``init(key, shape, dtype)``, e.g. from
        :mod:`jax.nn.initializers` (default ``jax.nn.initializers.lecun_normal()``,
        which sees ``fan_in = K*Cin/groups``, and ``jax.nn.initializers.zeros``); the
        shapes they are handed: :mod:`convjax.nn.initializers`.
      dtype: parameter dtype; default jax's default float (float64 with x64).
      precision: passed to XLA.
      algorithm: passed to :func:`convjax.conv1d` (``"auto"``, ``"xla"``, ``"direct"``,
        ``"fft"``, ``"matmul"``, ``"dense"``). On CPU, many seeds of a small conv model
        trained at once with ``train.fit_many`` run faster with ``"direct"``: vmapping
        XLA's convolution over its filters makes it a grouped convolution, which XLA:CPU
        runs slowly.

    Returns:
      A :class:`Layer`.

    Example:
      >>> import jax
      >>> layer = Conv1D(8, 3, padding="same")
      >>> out_shape, params = layer.init(jax.random.key(0), (16, 4))
      >>> out_shape, params["w"].shape, params["b"].shape
      ((16, 8), (3, 4, 8), (8,))
    """
    return _make_linear(
        "Conv1D",
        "conv",
        1,
        out_channels,
        kernel_size,
        None,
        stride=stride,
        padding=padding,
        dilation=dilation,
        groups=groups,
        flip=flip,
        padding_mode=padding_mode,
        use_bias=use_bias,
        w_init=w_init,
        b_init=b_init,
        dtype=dtype,
        precision=precision,
        algorithm=algorithm,
    ).layer()


def LocallyConnected1D(
    out_channels: int,
    kernel_size: int,
    *,
    stride=1,
    padding: PaddingLike = "valid",
    dilation=1,
    groups=1,
    flip: bool = False,
    padding_mode: str = "zeros",
    use_bias: bool = True,
    w_init: Callable | None = None,
    b_init: Callable | None = None,
    dtype=None,
    precision=None,
) -> Layer:
    """Locally connected layer (kind ``"local"``): a convolution whose
    output position ``o`` has its own filter. ``(..., L, Cin) -> (..., Lout, Cout)``.

    Params: ``{"w": (Lout, K, Cin//groups, Cout), "b": (Lout, Cout)}`` -- the bias
    is per position AND channel (an untied bias, as the weights are untied). The
    layer is tied to the input length ``L`` given to ``init``. Taps that only ever
    read padding zeros get weights too (they are initialised but have no effect).

    Args: as :func:`Conv1D`. The initializer is called once per output position on
    the conv's view ``(K, Cin/groups, Cout/groups)``, so it sees ``fan_in =
    K*Cin/groups``, the same as the convolution, and both start at the same
    activation scale.

    Returns:
      A :class:`Layer`.

    Example:
      >>> import jax
      >>> layer = LocallyConnected1D(8, 3, stride=2)
      >>> out_shape, params = layer.init(jax.random.key(0), (16, 4))
      >>> out_shape, params["w"].shape, params["b"].shape
      ((7, 8), (7, 3, 4, 8), (7, 8))
    """
    return _make_linear(
        "LocallyConnected1D",
        "local",
        1,
        out_channels,
        kernel_size,
        None,
        stride=stride,
        padding=padding,
        dilation=dilation,
        groups=groups,
        flip=flip,
        padding_mode=padding_mode,
        use_bias=use_bias,
        w_init=w_init,
        b_init=b_init,
        dtype=dtype,
        precision=precision,
    ).layer()


def Conv2D(
    out_channels: int,
    kernel_size,
    *,
    stride=1,
    padding: PaddingLike = "valid",
    dilation=1,
    groups=1,
    flip: bool = False,
    padding_mode: str = "zeros",
    use_bias: bool = True,
    w_init: Callable | None = None,
    b_init: Callable | None = None,
    dtype=None,
    precision=None,
    algorithm: str = "auto",
) -> Layer:
    """2-D convolution layer (kind ``"conv"``): ``(..., H, W, Cin) -> (..., Hout, Wout, Cout)``.

    Params: ``{"w": (KH, KW, Cin//groups, Cout), "b": (Cout,)}``; ``apply`` is
    :func:`convjax.conv2d` plus the bias. The same mechanism as :func:`Conv1D` with
    two spatial axes; the default initializer sees ``fan_in = KH*KW*Cin/groups``.

    Args:
      out_channels: ``Cout``.
      kernel_size: ``K`` (square) or ``(KH, KW)``.
      stride, padding, dilation, groups, flip, padding_mode: as in
        :func:`convjax.conv2d` (ints or one entry per axis).
      use_bias, w_init, b_init, dtype, precision, algorithm: as :func:`Conv1D`.

    Returns:
      A :class:`Layer`.

    Example:
      >>> import jax
      >>> layer = Conv2D(8, 3, padding="same")
      >>> out_shape, params = layer.init(jax.random.key(0), (28, 28, 1))
      >>> out_shape, params["w"].shape, params["b"].shape
      ((28, 28, 8), (3, 3, 1, 8), (8,))
    """
    return _make_linear(
        "Conv2D",
        "conv",
        2,
        out_channels,
        kernel_size,
        None,
        stride=stride,
        padding=padding,
        dilation=dilation,
        groups=groups,
        flip=flip,
        padding_mode=padding_mode,
        use_bias=use_bias,
        w_init=w_init,
        b_init=b_init,
        dtype=dtype,
        precision=precision,
        algorithm=algorithm,
    ).layer()


def LocallyConnected2D(
    out_channels: int,
    kernel_size,
    *,
    stride=1,
    padding: PaddingLike = "valid",
    dilation=1,
    groups=1,
    flip: bool = False,
    padding_mode: str = "zeros",
    use_bias: bool = True,
    w_init: Callable | None = None,
    b_init: Callable | None = None,
    dtype=None,
    precision=None,
) -> Layer:
    """2-D locally connected layer (kind ``"local"``): :func:`Conv2D` with one filter
    per output pixel. ``(..., H, W, Cin) -> (..., Hout, Wout, Cout)``.

    Params: ``{"w": (Hout, Wout, KH, KW, Cin//groups, Cout), "b": (Hout, Wout, Cout)}``;
    the layer is tied to the image size given to ``init``. The initializer is called
    once per output pixel on the conv's view, so it sees the conv's ``fan_in``.

    Args: as :func:`Conv2D`.

    Returns:
      A :class:`Layer`.

    Example:
      >>> import jax
      >>> layer = LocallyConnected2D(4, (3, 2))
      >>> out_shape, params = layer.init(jax.random.key(0), (8, 8, 2))
      >>> out_shape, params["w"].shape, params["b"].shape
      ((6, 7, 4), (6, 7, 3, 2, 2, 4), (6, 7, 4))
    """
    return _make_linear(
        "LocallyConnected2D",
        "local",
        2,
        out_channels,
        kernel_size,
        None,
        stride=stride,
        padding=padding,
        dilation=dilation,
        groups=groups,
        flip=flip,
        padding_mode=padding_mode,
        use_bias=use_bias,
        w_init=w_init,
        b_init=b_init,
        dtype=dtype,
        precision=precision,
    ).layer()


def Dense(
    out_channels: int,
    *,
    out_length: int | tuple[int, ...] | None = None,
    kernel_size: int | tuple[int, ...] | None = None,
    stride=1,
    padding: PaddingLike = "valid",
    dilation=1,
    groups=1,
    flip: bool = False,
    padding_mode: str = "zeros",
    use_bias: bool = True,
    w_init: Callable | None = None,
    b_init: Callable | None = None,
    dtype=None,
    precision=None,
) -> Layer:
    """Fully connected layer (kind ``"dense"``), in three shapes:

    * ``Dense(n)``: the usual layer on the last axis, ``(..., F) -> (..., n)``;
      params ``{"w": (n, F), "b": (n,)}``.
    * ``Dense(Cout, out_length=Lout)``: on the flattened example,
      ``(..., L, Cin) -> (..., Lout, Cout)``; params
      ``{"w": (Lout*Cout, L*Cin), "b": (Lout, Cout)}``.
    * ``Dense(Cout, kernel_size=K, stride=..., padding=..., ...)``: the DENSE TWIN of
      ``Conv1D(Cout, K, ...)``: the same shapes as the second form with ``Lout`` from
      the conv settings, and it knows its conv structure (for the moves in
      :mod:`convjax.nn.family` and :mod:`convjax.nn.tied`). Every entry of ``w``
      is free; the conv settings only fix ``Lout`` and the structure. With
      ``kernel_size=(KH, KW)`` it is the dense twin of ``Conv2D(Cout, (KH, KW),
      ...)`` on images ``(..., H, W, Cin)``: ``w`` of shape ``(Hout*Wout*Cout,
      H*W*Cin)`` (the doubly block Toeplitz layout of :func:`convjax.conv_matrix`),
      ``b`` of shape ``(Hout, Wout, Cout)``; likewise ``out_length=(Hout, Wout)``.

    ``w`` is laid out as :func:`convjax.conv_matrix`: ``y.reshape(-1) =
    w @ x.reshape(-1) + b.reshape(-1)`` for one example. The initializer is called on
    the transposed shape ``(L*Cin, Lout*Cout)`` (``(F, n)``), the ``(in, out)`` layout
    jax's initializers read, so it sees ``fan_in = L*Cin`` (every entry is live);
    default ``jax.nn.initializers.lecun_normal()``.

    Args:
      out_channels: ``Cout`` (or ``n``).
      out_length: ``Lout`` for a dense layer on ``(L, Cin)`` without conv settings
        (a tuple of output sizes for more spatial axes).
      kernel_size: ``K`` of the conv this layer is the dense twin of (a tuple for
        more spatial axes).
      stride, padding, dilation, groups, flip, padding_mode: that conv's options.
      use_bias, w_init, b_init, dtype, precision: as :func:`Conv1D`.

    Returns:
      A :class:`Layer`.

    Raises:
      ValueError: both ``out_length`` and ``kernel_size`` given.

    Example:
      >>> import jax
      >>> out_shape, params = Dense(10).init(jax.random.key(0), (32, 64))
      >>> out_shape, params["w"].shape
      ((32, 10), (10, 64))
      >>> out_shape, params = Dense(8, kernel_size=3).init(jax.random.key(0), (16, 4))
      >>> out_shape, params["w"].shape, params["b"].shape
      ((14, 8), (112, 64), (14, 8))
    """
    if out_length is not None and kernel_size is not None:
        raise ValueError(
            f"Dense: give either `out_length` (a free dense layer) or `kernel_size` (the "
            f"dense twin of a conv, whose Lout the conv settings fix), not both; got "
            f"out_length={short(out_length)}, kernel_size={short(kernel_size)}."
        )
    if out_length is None and kernel_size is None:
        n = _common("Dense", out_channels, use_bias, w_init, b_init)
        return PlainDense(
            out_features=n,
            use_bias=bool(use_bias),
            w_init=w_init if w_init is not None else inits.DEFAULT_W_INIT,
            b_init=b_init if b_init is not None else inits.DEFAULT_B_INIT,
            dtype=_default_dtype("Dense", dtype),
            precision=precision,
        ).layer()
    shape_arg = kernel_size if kernel_size is not None else out_length
    return _make_linear(
        "Dense",
        "dense",
        len(shape_arg) if isinstance(shape_arg, (tuple, list)) else 1,
        out_channels,
        kernel_size,
        out_length,
        stride=stride,
        padding=padding,
        dilation=dilation,
        groups=groups,
        flip=flip,
        padding_mode=padding_mode,
        use_bias=use_bias,
        w_init=w_init,
        b_init=b_init,
        dtype=dtype,
        precision=precision,
    ).layer()


def linear_spec(layer) -> Linear:
    """The :class:`Linear` behind a layer made by :func:`Conv1D`, :func:`Conv2D`,
    :func:`LocallyConnected1D`, :func:`LocallyConnected2D` or :func:`Dense` with conv
    settings or ``out_length`` (a plain ``Dense(n)`` is a :class:`PlainDense`).

    Raises:
      TypeError: ``layer`` is not one of those.

    Example:
      >>> linear_spec(Conv1D(8, 3)).kind
      'conv'
    """
    spec = _spec_of(layer)
    if not isinstance(spec, Linear):
        raise TypeError(
            f"linear_spec: `layer` must be a layer made by Conv1D, Conv2D, "
            f"LocallyConnected1D, LocallyConnected2D or Dense (with conv settings or "
            f"out_length), got {describe_layer(layer)}."
        )
    return spec


def structure(layer, input_shape) -> ConvStructure:
    """The :class:`~convjax.tying.ConvStructure` of a linear layer on inputs of
    ``input_shape`` (leading batch axes allowed): what the moves of
    :mod:`convjax.nn.family` and :mod:`convjax.nn.tied` take. For a whole
    :func:`serial` model, :func:`structures`.

    Raises:
      TypeError: ``layer`` is not a linear layer (a model: use :func:`structures`).
      ValueError: a dense layer built without conv settings, or a bad ``input_shape``.

    Example:
      >>> s = structure(Conv1D(8, 3, padding="same"), (16, 4))
      >>> s.filter_shape, s.dense_shape
      ((3, 4, 8), (128, 64))
    """
    if isinstance(_spec_of(layer), Serial):
        raise TypeError(
            f"structure: `layer` is a {describe_layer(layer)}; use "
            f"`nn.structures(model, input_shape)` for the structures of all its layers."
        )
    return linear_spec(layer).structure(input_shape)


def structures(model, input_shape):
    """The structures of every linear layer of a model, aligned with its params.

    For a :func:`serial` model, a tuple with one entry per layer: the layer's
    :class:`~convjax.tying.ConvStructure` for a conv, locally connected or dense
    layer with conv settings, ``None`` for every other layer (activations, pooling,
    ``Flatten``, a plain ``Dense(n)``, custom layers), a nested tuple for a nested
    ``serial``. For a single linear layer, its structure (or ``None``). This tree is
    what the moves of :mod:`convjax.nn.family` (``nn.move(params, structures, to)``)
    and the transformations of :mod:`convjax.nn.tied` take to treat a whole model.

    Args:
      model: a layer or a :func:`serial` model.
      input_shape: the model's input shape (leading batch axes allowed).

    Returns:
      A ConvStructure, None, or a (nested) tuple of them aligned with the params.

    Example:
      >>> model = serial(Conv1D(4, 3, padding="same"), Relu, Flatten(), Dense(1))
      >>> s = structures(model, (16, 2))
      >>> [type(x).__name__ for x in s]
      ['ConvStructure', 'NoneType', 'NoneType', 'NoneType']
    """
    return _structures("structures", model, input_shape)[0]


def _structures(fn: str, layer, shape):
    """``(structure tree, output shape)`` of ``layer`` on ``shape``."""
    spec = _spec_of(layer)
    if isinstance(spec, Serial):
        shape = _check_input_shape(fn, shape, 0, "(...)")
        out = []
        for sub in spec.layers:
            st, shape = _structures(fn, sub, shape)
            out.append(st)
        return tuple(out), shape
    if isinstance(spec, PlainDense):
        shape = _check_input_shape(fn, shape, 1, spec.layout)
        return None, shape[:-1] + (spec.out_features,)
    if isinstance(spec, Linear):
        shape = _check_input_shape(fn, shape, spec.in_ndim, spec.layout)
        k = len(shape) - spec.in_ndim
        fr = spec.frame(shape[k:], fn=fn)
        return fr.structure, shape[:k] + fr.out_shape
    if not (hasattr(layer, "init") and hasattr(layer, "apply")):
        raise TypeError(
            f"{fn}: `model` must be a Layer or a serial model, got {describe_layer(layer)}."
        )
    return None, _output_shape(layer, shape)


def _output_shape(layer, shape):
    """The output shape of any layer's ``init``, traced abstractly (no values drawn)."""
    box = []

    def f(key):
        out, params = layer.init(key, shape)
        box.append(tuple(out))
        return params

    jax.eval_shape(f, jax.random.key(0))
    return box[0]


def twin(layer, kind: str, *, w_init=None, b_init=None) -> Layer:
    """The same linear layer, or the same model, in another kind: ``"conv"``,
    ``"local"`` (locally connected) or ``"dense"``.

    The twin reads the same taps with the same options; only the kind changes. For
    a :func:`serial` model, every linear layer that has a conv structure is
    replaced by its twin (nested ``serial`` too); every other layer (activations,
    pooling, ``Flatten``, a plain ``Dense(n)``, custom layers) is kept as it is.
    ``w_init``/``b_init`` default to those of each layer. Params move with
    :func:`convjax.nn.move` and :func:`structures`.

    Args:
      layer: a layer made by :func:`Conv1D`, :func:`LocallyConnected1D` or
        :func:`Dense` with conv settings, or a :func:`serial` model.
      kind: ``"conv"``, ``"local"`` or ``"dense"``.
      w_init, b_init: initializers for the twins (default: the layers' own).

    Returns:
      A :class:`Layer`.

    Raises:
      ValueError: unknown ``kind`` (old names are pointed to their new ones), or a
        single dense layer without conv settings.
      TypeError: ``layer`` is neither a linear layer nor a serial model.

    Example:
      >>> import jax
      >>> conv = Conv1D(8, 3, padding="same")
      >>> out_shape, params = twin(conv, "dense").init(jax.random.key(0), (16, 4))
      >>> out_shape, params["w"].shape
      ((16, 8), (128, 64))
      >>> model = serial(conv, Relu, Flatten(), Dense(1))
      >>> _, params = twin(model, "local").init(jax.random.key(0), (16, 4))
      >>> params[0]["w"].shape, params[3]["w"].shape
      ((16, 3, 4, 8), (1, 128))
    """
    fn = "twin"
    kind = check_kind(fn, "kind", kind)
    for name, f in (("w_init", w_init), ("b_init", b_init)):
        if f is not None:
            inits.check_initializer(fn, name, f)
    spec = _spec_of(layer)
    if isinstance(spec, Serial):
        return _twin_model(spec, kind, w_init, b_init)
    if isinstance(spec, PlainDense):
        raise ValueError(
            f"{fn}: `layer` is a dense layer without conv settings (built without "
            f"`kernel_size`), so it has no {kind!r} twin; build the conv with "
            f"Conv1D(...) and take its twin."
        )
    if not isinstance(spec, Linear):
        raise TypeError(
            f"{fn}: `layer` must be a layer made by Conv1D, LocallyConnected1D or Dense, or "
            f"a serial model, got {describe_layer(layer)}."
        )
    if spec.kernel_shape is None:
        raise ValueError(
            f"{fn}: `layer` is a dense layer without conv settings (built without "
            f"`kernel_size`), so it has no {kind!r} twin; build the conv with "
            f"Conv1D(...) and take its twin."
        )
    return _twin_linear(spec, kind, w_init, b_init).layer()


def _twin_linear(spec: Linear, kind, w_init, b_init) -> Linear:
    return dataclasses.replace(
        spec,
        kind=kind,
        w_init=w_init if w_init is not None else spec.w_init,
        b_init=b_init if b_init is not None else spec.b_init,
    )


def _twin_model(spec: Serial, kind, w_init, b_init) -> Layer:
    out = []
    for sub in spec.layers:
        s = _spec_of(sub)
        if isinstance(s, Serial):
            out.append(_twin_model(s, kind, w_init, b_init))
        elif isinstance(s, Linear) and s.kernel_shape is not None:
            out.append(_twin_linear(s, kind, w_init, b_init).layer())
        else:
            out.append(sub)
    return Serial(tuple(out)).layer()


# --------------------------------------------------------------------------
# parameter-free layers
# --------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class _Stateless:
    """A layer without params: ``out_example(example_shape, fn) -> example_shape``,
    ``forward(x) -> y``."""

    name: str
    ndim: int
    layout: str
    out_example: Callable
    forward: Callable

    def init(self, key, input_shape):
        del key
        fn = f"{self.name}.init"
        shape = _check_input_shape(fn, input_shape, self.ndim, self.layout)
        k = len(shape) - self.ndim
        return shape[:k] + tuple(self.out_example(shape[k:], fn)), ()

    def apply(self, params, x):
        fn = f"{self.name}.apply"
        if not (isinstance(params, tuple) and len(params) == 0):
            raise ValueError(
                f"{fn}: this layer has no parameters, `params` must be (), got {_short(params)}."
            )
        x = _check_x(fn, x, self.ndim, self.layout)
        self.out_example(x.shape[x.ndim - self.ndim :], fn)
        return self.forward(x.astype(_checks.result_dtype(fn, x=x)))


def _stateless(fn: str, ndim: int, layout: str, out_example, forward) -> Layer:
    s = _Stateless(fn, ndim, layout, out_example, forward)
    return Layer(s.init, s.apply, s)


def _spec_of(layer):
    """The object behind a convjax layer (Linear, Serial, _Stateless), or None."""
    return layer.spec if isinstance(layer, Layer) else None


def describe_layer(layer) -> str:
    """A short description of a layer (or of what was passed instead of one), for
    error messages.

    Example:
      >>> describe_layer(serial(Conv1D(4, 3), Relu))
      'serial model of 2 layers'
      >>> describe_layer(Flatten)
      'the function Flatten (a layer factory: call it, `Flatten()`)'
    """
    spec = _spec_of(layer)
    if isinstance(spec, (Linear, PlainDense)):
        return f"{spec.name} layer"
    if isinstance(spec, Serial):
        return f"serial model of {len(spec.layers)} layers"
    if isinstance(spec, _Stateless):
        return f"{spec.name} layer"
    if isinstance(layer, Layer):
        return "Layer (a custom one)"
    if callable(layer) and getattr(layer, "__module__", None) == __name__:
        return f"the function {layer.__name__} (a layer factory: call it, `{layer.__name__}()`)"
    return short(layer)


ACTIVATIONS: dict[str, Callable] = {
    "identity": lambda x: x,
    "relu": jax.nn.relu,
    "gelu": lambda x: jax.nn.gelu(x, approximate=False),
    "gelu_tanh": lambda x: jax.nn.gelu(x, approximate=True),
    "tanh": jnp.tanh,
    "erf": jax.scipy.special.erf,
    "sigmoid": jax.nn.sigmoid,
    "softplus": jax.nn.softplus,
    "silu": jax.nn.silu,
    "elu": jax.nn.elu,
}


def Activation(name: str) -> Layer:
    """An elementwise activation layer by name; the shape is unchanged.

    Args:
      name: one of ``identity``, ``relu``, ``gelu`` (exact, erf-based),
        ``gelu_tanh`` (tanh approximation), ``tanh``, ``erf``, ``sigmoid``,
        ``softplus``, ``silu``, ``elu``.

    Raises:
      ValueError: an unknown name.
    """
    name = _checks.check_choice("Activation", "name", name, tuple(ACTIVATIONS))
    f = ACTIVATIONS[name]
    return _stateless(f"Activation({name!r})", 0, "(...)", lambda s, fn: s, f)


def Elementwise(fn: Callable) -> Layer:
    """A layer applying any elementwise jax function ``fn`` (shape unchanged)."""
    if not callable(fn):
        raise TypeError(f"Elementwise: `fn` must be callable, got {short(fn)}.")
    return _stateless("Elementwise", 0, "(...)", lambda s, f: s, fn)


Identity = Activation("identity")
Relu = Activation("relu")
Gelu = Activation("gelu")
Tanh = Activation("tanh")
Erf = Activation("erf")


def Flatten(spatial_axes: int = 1) -> Layer:
    """``(..., *spatial, C) -> (..., prod(spatial)*C)``, row-major (position, channel),
    the flattening of the dense matrices.

    Args:
      spatial_axes: how many spatial axes precede the channel axis (1 for
        ``(..., L, C)``, 2 for images ``(..., H, W, C)``).

    Example:
      >>> import jax.numpy as jnp
      >>> Flatten(2).apply((), jnp.ones((5, 4, 4, 3))).shape
      (5, 48)
    """
    n = _checks.as_positive_int("Flatten", "spatial_axes", spatial_axes) + 1

    def out(s, fn):
        return (math.prod(s),)

    return _stateless(
        "Flatten",
        n,
        _layout(n - 1).replace("Cin", "C"),
        out,
        lambda x: x.reshape(*x.shape[:-n], math.prod(x.shape[-n:])),
    )


def _pool(fn: str, kind: str, window, stride, padding, ndim: int) -> Layer:
    window = per_axis(fn, "window", window, ndim)
    stride = window if stride is None else stride
    opts = conv_options(stride=stride, padding=padding, ndim=ndim, fn=fn)
    layout = _layout(ndim).replace("Cin", "C")

    def out(s, f):
        return (*opts.geometry(tuple(s[:-1]), window, fn=f).out_shape, s[-1])

    def forward(x):
        g = opts.geometry(tuple(x.shape[-ndim - 1 : -1]), window, fn=f"{fn}.apply")
        lead = (1,) * (x.ndim - ndim - 1)
        dims, strides = lead + window + (1,), lead + g.stride + (1,)
        pads = ((0, 0),) * len(lead) + g.pads + ((0, 0),)
        # Python-scalar init values: lax recognises the (max, -inf) and (add, 0)
        # monoids and uses its differentiable reduce_window_{max,sum} primitives.
        if kind == "max":
            return jax.lax.reduce_window(x, -np.inf, jax.lax.max, dims, strides, pads)
        total = jax.lax.reduce_window(x, 0.0, jax.lax.add, dims, strides, pads)
        # the number of real (unpadded) entries in each window, (*Lout, 1): static
        count = np.ones((), int)
        for a in range(ndim):
            per = (g.tap_sources_axis(a) >= 0).sum(axis=1)
            count = np.multiply.outer(count, per)
        count = count[..., None]
        return total / jnp.broadcast_to(jnp.asarray(count, total.dtype), total.shape)

    return _stateless(fn, ndim + 1, layout, out, forward)


def AvgPool1D(window: int, *, stride: int | None = None, padding: PaddingLike = "valid") -> Layer:
    """Average pooling over length: ``(..., L, C) -> (..., Lout, C)``.

    Args:
      window: pooling window length.
      stride: step; default ``window`` (non-overlapping).
      padding: as :func:`convjax.conv1d` (``"valid"``, ``"same"``, ints, ...); the
        average is over the real entries of each window (padding not counted).
    """
    return _pool("AvgPool1D", "avg", window, stride, padding, 1)


def MaxPool1D(window: int, *, stride: int | None = None, padding: PaddingLike = "valid") -> Layer:
    """Max pooling over length: ``(..., L, C) -> (..., Lout, C)``; padding is -inf.
    Arguments as :func:`AvgPool1D`."""
    return _pool("MaxPool1D", "max", window, stride, padding, 1)


def AvgPool2D(window, *, stride=None, padding: PaddingLike = "valid") -> Layer:
    """Average pooling over images: ``(..., H, W, C) -> (..., Hout, Wout, C)``.

    Args:
      window: ``k`` (square) or ``(kh, kw)``.
      stride: step, an int or one per axis; default ``window`` (non-overlapping).
      padding: as :func:`convjax.conv2d`; the average is over the real entries of
        each window (padding not counted).

    Example:
      >>> import jax.numpy as jnp
      >>> AvgPool2D(2).apply((), jnp.arange(16.).reshape(4, 4, 1))[..., 0]
      Array([[ 2.5,  4.5],
             [10.5, 12.5]], dtype=float32)
    """
    return _pool("AvgPool2D", "avg", window, stride, padding, 2)


def MaxPool2D(window, *, stride=None, padding: PaddingLike = "valid") -> Layer:
    """Max pooling over images: ``(..., H, W, C) -> (..., Hout, Wout, C)``; padding
    is -inf. Arguments as :func:`AvgPool2D`."""
    return _pool("MaxPool2D", "max", window, stride, padding, 2)


def _global(fn: str, reduce, ndim: int) -> Layer:
    axes = tuple(range(-ndim - 1, -1))
    return _stateless(
        fn,
        ndim + 1,
        _layout(ndim).replace("Cin", "C"),
        lambda s, f: (s[-1],),
        lambda x: reduce(x, axis=axes),
    )


def GlobalAvgPool() -> Layer:
    """Mean over length: ``(..., L, C) -> (..., C)``."""
    return _global("GlobalAvgPool", jnp.mean, 1)


def GlobalMaxPool() -> Layer:
    """Max over length: ``(..., L, C) -> (..., C)``."""
    return _global("GlobalMaxPool", jnp.max, 1)


def GlobalAvgPool2D() -> Layer:
    """Mean over the image: ``(..., H, W, C) -> (..., C)``."""
    return _global("GlobalAvgPool2D", jnp.mean, 2)


def GlobalMaxPool2D() -> Layer:
    """Max over the image: ``(..., H, W, C) -> (..., C)``."""
    return _global("GlobalMaxPool2D", jnp.max, 2)


# --------------------------------------------------------------------------
# combinators
# --------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class Serial:
    """The layers of a :func:`serial` model, in order (what :func:`twin` and
    :func:`structures` walk)."""

    layers: tuple

    def init(self, key, input_shape):
        fn = "serial.init"
        shape = _check_input_shape(fn, input_shape, 0, "(...)")
        params = []
        keys = jax.random.split(key, len(self.layers)) if self.layers else ()
        for k, layer in zip(keys, self.layers, strict=True):
            shape, p = layer.init(k, shape)
            params.append(p)
        return shape, tuple(params)

    def apply(self, params, x):
        n = len(self.layers)
        if not isinstance(params, (tuple, list)) or len(params) != n:
            raise ValueError(
                f"serial.apply: `params` must be a tuple of {n} entries (one per "
                f"layer), got {_short(params)}."
            )
        for p, layer in zip(params, self.layers, strict=True):
            x = layer.apply(p, x)
        return x

    def layer(self) -> Layer:
        return Layer(self.init, self.apply, self)


def serial(*layers: Layer) -> Layer:
    """Composes layers: ``apply(params, x) = f_n(... f_1(x))``.

    Params are a tuple with one entry per layer (``()`` for a layer without
    params). ``init`` splits the key once per layer.

    Raises:
      TypeError: an argument is not a layer (e.g. a factory passed uncalled).

    Example:
      >>> import jax
      >>> model = serial(Conv1D(4, 3), Relu, Flatten(), Dense(2))
      >>> out_shape, params = model.init(jax.random.key(0), (5, 8, 1))
      >>> out_shape, len(params)
      ((5, 2), 4)
    """
    for j, layer in enumerate(layers):
        if not (hasattr(layer, "init") and hasattr(layer, "apply")):
            raise TypeError(
                f"serial: `layers[{j}]` must be a Layer (init, apply), got "
                f"{describe_layer(layer)}; did you pass a factory without calling it, e.g. "
                f"`Flatten` for `Flatten()`?"
            )
    return Serial(tuple(layers)).layer()


def param_count(params) -> int:
    """Number of scalars in a params pytree."""
    return int(sum(np.size(a) for a in jax.tree_util.tree_leaves(params)))


__all__ = [
    "ACTIVATIONS",
    "Activation",
    "AvgPool1D",
    "AvgPool2D",
    "Conv1D",
    "Conv2D",
    "Dense",
    "Elementwise",
    "Erf",
    "Flatten",
    "Frame",
    "Gelu",
    "GlobalAvgPool",
    "GlobalAvgPool2D",
    "GlobalMaxPool",
    "GlobalMaxPool2D",
    "Identity",
    "Layer",
    "KINDS",
    "Linear",
    "LocallyConnected1D",
    "LocallyConnected2D",
    "MaxPool2D",
    "PlainDense",
    "MaxPool1D",
    "Relu",
    "Serial",
    "Tanh",
    "check_kind",
    "describe_layer",
    "linear_spec",
    "param_count",
    "serial",
    "structure",
    "structures",
    "twin",
]
