"""Layers on parameter pytrees: convolutional, locally connected and fully
connected as ONE linear mechanism with three tyings, plus the usual pieces.

A layer is a :class:`Layer`, a NamedTuple of two pure functions:

* ``init(key, input_shape) -> (output_shape, params)``;
* ``apply(params, x) -> y``.

``input_shape`` and ``output_shape`` are tuples; the trailing axes are one example
(``(L, C)`` for the sequence layers) and any leading axes are batch axes carried
through unchanged (they may be ``-1``). ``apply`` works on one example and on any
leading batch axes. ``params`` are plain dicts (or tuples of them, for
:func:`serial`) of arrays; optax consumes them directly.

The linear family
-----------------

:class:`Linear1D` is the one mechanism: a linear map ``y = T x + b`` from
``(L, Cin)`` to ``(Lout, Cout)`` whose matrix ``T`` has the support of a 1-D
convolution (:class:`~convjax.tying.ConvStructure`), with one of three TYINGS:

=================  ======================  ==========================  ===================
tying              factory                 ``params["w"]``             ``params["b"]``
=================  ======================  ==========================  ===================
``"shared"``       :func:`Conv1D`          ``(K, Cin//g, Cout)``       ``(Cout,)``
``"per_position"`` :func:`LocallyConnected1D`  ``(Lout, K, Cin//g, Cout)``  ``(Lout, Cout)``
``"none"``         :func:`Dense`           ``(Lout*Cout, L*Cin)``      ``(Lout, Cout)``
=================  ======================  ==========================  ===================

* ``"shared"``: every output position uses the same filter (a convolution; apply
  route: :func:`convjax.conv1d`).
* ``"per_position"``: output position ``o`` has its own filter ``w[o]`` reading the
  same taps (locally connected; route: :func:`convjax.local.locally_connected1d`);
  the bias is per position AND channel.
* ``"none"``: every entry of ``T`` is free (fully connected; route: one matmul).
  ``params["w"]`` IS the matrix ``T``, laid out as :func:`convjax.conv_matrix`:
  row ``o*Cout + co``, column ``i*Cin + ci``; so the dense twin of a conv with
  filter ``w`` has ``params["w"] == conv_matrix(w, L, ...)``.

The three share one init (fans from the structure, see
:mod:`convjax.nn.initializers`), one bias handling, one shape inference and one
set of input checks. A plain ``Dense(n)`` (no ``out_length``, no conv settings)
is the familiar fully connected layer on the last axis: ``(..., F) -> (..., n)``,
``w`` of shape ``(n, F)``, ``b`` of shape ``(n,)``.
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
from convjax.conv import ALGORITHMS as CONV_ALGORITHMS
from convjax.conv import conv1d
from convjax.geometry import ConvOptions, PaddingLike, conv_options
from convjax.local import local_apply
from convjax.nn import initializers as inits
from convjax.tying import ConvStructure, structure_from_options

TYINGS = ("shared", "per_position", "none")
_FACTORY = {"shared": "Conv1D", "per_position": "LocallyConnected1D", "none": "Dense"}


class Layer(NamedTuple):
    """A layer: two pure functions.

    Attributes:
      init: ``init(key, input_shape) -> (output_shape, params)``.
      apply: ``apply(params, x) -> y``.
    """

    init: Callable
    apply: Callable


# --------------------------------------------------------------------------
# shared helpers
# --------------------------------------------------------------------------
def _default_dtype(dtype):
    if dtype is None:
        return jax.dtypes.canonicalize_dtype(jnp.float64)
    dt = jnp.dtype(dtype)
    if not jnp.issubdtype(dt, jnp.floating):
        raise TypeError(f"nn: `dtype` must be a floating dtype, got {dtype!r}.")
    return dt


def _check_input_shape(fn: str, input_shape, ndim: int, layout: str) -> tuple[int, ...]:
    """Checks ``input_shape`` (a tuple of ints, rank >= ndim, positive example axes)."""
    if not isinstance(input_shape, (tuple, list)) or not all(
        isinstance(d, (int, np.integer)) and not isinstance(d, bool) for d in input_shape
    ):
        raise TypeError(
            f"{fn}: `input_shape` must be a tuple of ints (layout {layout}), "
            f"got {input_shape!r}."
        )
    shape = tuple(int(d) for d in input_shape)
    if len(shape) < ndim or any(d < 1 for d in shape[len(shape) - ndim:]):
        raise ValueError(
            f"{fn}: `input_shape` must end with {ndim} positive sizes (layout {layout}), "
            f"got {shape}."
        )
    return shape


def _check_x(fn: str, x, ndim: int, layout: str):
    _checks.check_floating(fn, "x", x)
    _checks.check_min_ndim(fn, "x", x, ndim, layout)
    return jnp.asarray(x)


def _check_params(fn: str, params, expected: dict[str, tuple[int, ...]], layouts: dict, why: str):
    """Checks ``params`` is a dict with exactly the expected keys and shapes."""
    if not isinstance(params, dict):
        raise TypeError(
            f"{fn}: `params` must be a dict with keys {sorted(expected)}, got "
            f"{type(params).__name__}: {_short(params)}."
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
    s = repr(jax.tree_util.tree_map(lambda a: tuple(np.shape(a)), obj))
    return s if len(s) < 120 else s[:117] + "..."


def _add_bias(y, b):
    return y + jnp.broadcast_to(b.astype(y.dtype), y.shape)


# --------------------------------------------------------------------------
# the one linear mechanism
# --------------------------------------------------------------------------
class Frame(NamedTuple):
    """Everything static a :class:`Linear1D` needs for one example shape.

    Attributes:
      in_shape: the example input shape, ``(L, Cin)`` or ``(F,)``.
      out_shape: the example output shape, ``(Lout, Cout)`` or ``(n,)``.
      w_shape, b_shape: parameter shapes (``b_shape`` is None without a bias).
      fan_in, fan_out: structural nonzeros per output / input unit.
      structure: the :class:`ConvStructure`, or None for a plain dense layer.
    """

    in_shape: tuple[int, ...]
    out_shape: tuple[int, ...]
    w_shape: tuple[int, ...]
    b_shape: tuple[int, ...] | None
    fan_in: float
    fan_out: float
    structure: ConvStructure | None


@dataclasses.dataclass(frozen=True)
class Linear1D:
    """A linear layer over a convolution structure with a chosen tying.

    Build it with :func:`Conv1D`, :func:`LocallyConnected1D`, :func:`Dense`
    (or :func:`twin`); :meth:`layer` gives the :class:`Layer`.

    Attributes:
      tying: ``"shared"``, ``"per_position"`` or ``"none"``.
      out_channels: ``Cout`` (or the number of outputs ``n`` of a plain dense layer).
      kernel_size: ``K``; None for a dense layer that has no conv structure.
      out_length: the output length of a dense layer without conv structure
        (``(L, Cin) -> (out_length, Cout)``); None otherwise.
      options: the normalised conv options (stride, padding, ...).
      use_bias: whether there is a bias.
      w_init, b_init: initialisers ``(key, shape, dtype, *, fan_in, fan_out)``.
      dtype: the parameter dtype.
      precision: passed to XLA by ``apply``.
      algorithm: the :func:`convjax.conv1d` algorithm of the tied route (``"auto"``
        by default; the other tyings have one route each).
    """

    tying: str
    out_channels: int
    kernel_size: int | None
    out_length: int | None
    options: ConvOptions
    use_bias: bool
    w_init: Callable
    b_init: Callable
    dtype: Any
    precision: Any = None
    algorithm: str = "auto"

    @property
    def name(self) -> str:
        return _FACTORY[self.tying]

    @property
    def in_ndim(self) -> int:
        """Rank of one example: 2 (``(L, Cin)``), or 1 for a plain dense layer."""
        return 1 if self.kernel_size is None and self.out_length is None else 2

    @property
    def layout(self) -> str:
        return "(..., F)" if self.in_ndim == 1 else "(..., L, Cin)"

    def layer(self) -> Layer:
        """The :class:`Layer` ``(init, apply)`` of this spec."""
        return Layer(self.init, self.apply)

    # ---- static shapes ------------------------------------------------------
    def frame(self, example_shape: tuple[int, ...], *, fn: str | None = None) -> Frame:
        """The static shapes, fans and structure for one example of ``example_shape``."""
        fn = fn or f"{self.name}.init"
        cout = self.out_channels
        if self.in_ndim == 1:
            (f_in,) = example_shape
            return Frame((f_in,), (cout,), (cout, f_in), (cout,) if self.use_bias else None,
                         f_in, cout, None)
        L, cin = example_shape
        if self.kernel_size is None:  # dense (L, Cin) -> (out_length, Cout), no structure
            lout = self.out_length
            b = (lout, cout) if self.use_bias else None
            return Frame((L, cin), (lout, cout), (lout * cout, L * cin), b,
                         L * cin, lout * cout, None)
        g = self.options.groups
        if cin % g:
            raise ValueError(
                f"{fn}: the input channels Cin={cin} must be divisible by `groups`={g}."
            )
        s = structure_from_options(self.options, (self.kernel_size, cin // g, cout), L, fn=fn)
        lout = s.out_length
        fan_in = self.kernel_size * cin / g
        fan_out = self.kernel_size * cout / g / self.options.stride
        if self.tying == "shared":
            w, b = s.filter_shape, (cout,)
        elif self.tying == "per_position":
            w, b = s.local_filter_shape, (lout, cout)
        else:
            w, b = s.dense_shape, (lout, cout)
            fan_in, fan_out = L * cin, lout * cout
        return Frame((L, cin), (lout, cout), w, b if self.use_bias else None,
                     fan_in, fan_out, s)

    def output_shape(self, input_shape) -> tuple[int, ...]:
        """``input_shape`` (leading axes, then one example) -> the output shape."""
        shape = _check_input_shape(f"{self.name}.init", input_shape, self.in_ndim, self.layout)
        k = len(shape) - self.in_ndim
        return shape[:k] + self.frame(shape[k:]).out_shape

    def structure(self, input_shape) -> ConvStructure:
        """The :class:`ConvStructure` of this layer on inputs of ``input_shape``
        (leading batch axes allowed). Raises ValueError for a dense layer built
        without conv settings (it has no conv structure)."""
        shape = _check_input_shape(f"{self.name}.structure", input_shape, self.in_ndim,
                                   self.layout)
        fr = self.frame(shape[len(shape) - self.in_ndim:])
        if fr.structure is None:
            raise ValueError(
                f"{self.name}.structure: this dense layer has no conv structure (it was "
                f"built without `kernel_size`); build its dense twin with "
                f"`nn.twin(conv_layer, 'none')` or `Dense(..., kernel_size=...)`."
            )
        return fr.structure

    # ---- the layer ------------------------------------------------------------
    def init(self, key, input_shape):
        """``init(key, input_shape) -> (output_shape, params)``.

        ``params`` is ``{"w": ..., "b": ...}`` (no ``"b"`` without bias) with the
        shapes of the table in :mod:`convjax.nn.layers`.
        """
        fn = f"{self.name}.init"
        shape = _check_input_shape(fn, input_shape, self.in_ndim, self.layout)
        k = len(shape) - self.in_ndim
        fr = self.frame(shape[k:], fn=fn)
        kw, kb = jax.random.split(key)
        fans = {"fan_in": fr.fan_in, "fan_out": fr.fan_out}
        params = {"w": self.w_init(kw, fr.w_shape, self.dtype, **fans)}
        if self.use_bias:
            params["b"] = self.b_init(kb, fr.b_shape, self.dtype, **fans)
        return shape[:k] + fr.out_shape, params

    def apply(self, params, x):
        """``apply(params, x) -> y``: ``x`` of shape ``(..., L, Cin)`` (or ``(..., F)``
        for a plain dense layer), ``y`` of shape ``(..., Lout, Cout)`` (or ``(..., n)``)."""
        fn = f"{self.name}.apply"
        x = _check_x(fn, x, self.in_ndim, self.layout)
        example = x.shape[x.ndim - self.in_ndim:]
        fr = self._apply_frame(fn, params, example)
        w = params["w"]
        dtype = jnp.result_type(x, w)
        x, w = x.astype(dtype), jnp.asarray(w, dtype)
        if self.tying == "shared":
            y = _conv_route(x, w, self.options, self.precision, self.algorithm)
        elif self.tying == "per_position":
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
        if self.in_ndim == 2:
            fr0 = self._frame_from_params(fn, params)
            L, cin = example
            if fr0 is not None and cin != fr0:
                raise ValueError(
                    f"{fn}: `x` has Cin={cin} channels (x.shape[-1]) but `params` were "
                    f"built for Cin={fr0} channels."
                )
        fr = self.frame(tuple(example), fn=fn)
        expected = {"w": fr.w_shape}
        layouts = {"w": _W_LAYOUT[self.tying if self.in_ndim == 2 else "plain"]}
        if self.use_bias:
            expected["b"] = fr.b_shape
            layouts["b"] = _B_LAYOUT[self.tying if self.in_ndim == 2 else "plain"]
        why = f"for `x` with example shape {tuple(example)}"
        if self.tying != "shared" and self.in_ndim == 2 and isinstance(params, dict) \
                and "w" in params and tuple(np.shape(params["w"])) != fr.w_shape:
            why += (f" (the params of a {self.name} layer fix its input length; this `x` "
                    f"has L={example[0]})")
        _check_params(fn, params, expected, layouts, why)
        return fr

    def _frame_from_params(self, fn, params):
        """The Cin the params were built for, when it can be read off them."""
        if not isinstance(params, dict) or "w" not in params:
            return None
        wshape = np.shape(params["w"])
        g = self.options.groups
        if self.tying == "shared" and len(wshape) == 3:
            return wshape[1] * g
        if self.tying == "per_position" and len(wshape) == 4:
            return wshape[2] * g
        return None


_W_LAYOUT = {
    "shared": "(K, Cin//groups, Cout)",
    "per_position": "(Lout, K, Cin//groups, Cout)",
    "none": "(Lout*Cout, L*Cin)",
    "plain": "(n, F)",
}
_B_LAYOUT = {"shared": "(Cout,)", "per_position": "(Lout, Cout)", "none": "(Lout, Cout)",
             "plain": "(n,)"}


def _conv_route(x, w, opts: ConvOptions, precision, algorithm: str):
    return conv1d(
        x, w, stride=opts.stride, padding=opts.padding, dilation=opts.dilation,
        groups=opts.groups, flip=opts.flip, padding_mode=opts.padding_mode,
        precision=precision, algorithm=algorithm,
    )


def _make_linear(
    fn: str,
    tying: str,
    out_channels,
    kernel_size,
    out_length,
    *,
    stride, padding, dilation, groups, flip, padding_mode, use_bias, w_init, b_init, dtype,
    precision, algorithm: str = "auto",
) -> Linear1D:
    out_channels = _checks.as_positive_int(fn, "out_channels", out_channels)
    if kernel_size is not None:
        kernel_size = _checks.as_positive_int(fn, "kernel_size", kernel_size)
    if out_length is not None:
        out_length = _checks.as_positive_int(fn, "out_length", out_length)
    opts = conv_options(
        stride=stride, padding=padding, dilation=dilation, groups=groups, flip=flip,
        padding_mode=padding_mode, fn=fn,
    )
    if out_channels % opts.groups:
        raise ValueError(
            f"{fn}: `out_channels`={out_channels} must be divisible by `groups`={opts.groups}."
        )
    if not isinstance(use_bias, (bool, np.bool_)):
        raise TypeError(f"{fn}: `use_bias` must be a bool, got {use_bias!r}.")
    for name, f in (("w_init", w_init), ("b_init", b_init)):
        if f is not None and not callable(f):
            raise TypeError(
                f"{fn}: `{name}` must be an initialiser `(key, shape, dtype, *, fan_in, "
                f"fan_out) -> array` (see convjax.nn.initializers), got {f!r}."
            )
    return Linear1D(
        tying=tying,
        out_channels=out_channels,
        kernel_size=kernel_size,
        out_length=out_length,
        options=opts,
        use_bias=bool(use_bias),
        w_init=w_init if w_init is not None else _DEFAULT_W_INIT,
        b_init=b_init if b_init is not None else _DEFAULT_B_INIT,
        dtype=_default_dtype(dtype),
        precision=precision,
        algorithm=_checks.check_choice(fn, "algorithm", algorithm, CONV_ALGORITHMS),
    )


_DEFAULT_W_INIT = inits.lecun_normal()
_DEFAULT_B_INIT = inits.zeros()


def Conv1D(  # noqa: N802 (layer factories are capitalised, as in stax)
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
    """1-D convolution layer (tying ``"shared"``): ``(..., L, Cin) -> (..., Lout, Cout)``.

    Params: ``{"w": (K, Cin//groups, Cout), "b": (Cout,)}``; ``apply`` is
    :func:`convjax.conv1d` plus the bias. Works for any input length (the filter
    does not depend on ``L``).

    Args:
      out_channels: ``Cout``.
      kernel_size: ``K``.
      stride, padding, dilation, groups, flip, padding_mode: as in
        :func:`convjax.conv1d` (``flip=False``: cross-correlation, like torch/flax).
      use_bias: add a per-channel bias.
      w_init, b_init: initialisers from :mod:`convjax.nn.initializers` (default
        ``lecun_normal()`` with ``fan_in = K*Cin/groups``, and ``zeros()``).
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
        "Conv1D", "shared", out_channels, kernel_size, None, stride=stride, padding=padding,
        dilation=dilation, groups=groups, flip=flip, padding_mode=padding_mode,
        use_bias=use_bias, w_init=w_init, b_init=b_init, dtype=dtype, precision=precision,
        algorithm=algorithm,
    ).layer()


def LocallyConnected1D(  # noqa: N802
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
    """Locally connected layer (tying ``"per_position"``): a convolution whose
    output position ``o`` has its own filter. ``(..., L, Cin) -> (..., Lout, Cout)``.

    Params: ``{"w": (Lout, K, Cin//groups, Cout), "b": (Lout, Cout)}`` -- the bias
    is per position AND channel (an untied bias, as the weights are untied). The
    layer is tied to the input length ``L`` given to ``init``. Taps that only ever
    read padding zeros get weights too (they are initialised but have no effect).

    Args: as :func:`Conv1D`; the default init uses ``fan_in = K*Cin/groups``, the
    same as the convolution, so both start at the same activation scale.

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
        "LocallyConnected1D", "per_position", out_channels, kernel_size, None, stride=stride,
        padding=padding, dilation=dilation, groups=groups, flip=flip,
        padding_mode=padding_mode, use_bias=use_bias, w_init=w_init, b_init=b_init,
        dtype=dtype, precision=precision,
    ).layer()


def Dense(  # noqa: N802
    out_channels: int,
    *,
    out_length: int | None = None,
    kernel_size: int | None = None,
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
    """Fully connected layer (tying ``"none"``), in three shapes:

    * ``Dense(n)``: the usual layer on the last axis, ``(..., F) -> (..., n)``;
      params ``{"w": (n, F), "b": (n,)}``.
    * ``Dense(Cout, out_length=Lout)``: on the flattened example,
      ``(..., L, Cin) -> (..., Lout, Cout)``; params
      ``{"w": (Lout*Cout, L*Cin), "b": (Lout, Cout)}``.
    * ``Dense(Cout, kernel_size=K, stride=..., padding=..., ...)``: the DENSE TWIN of
      ``Conv1D(Cout, K, ...)``: the same shapes as the second form with ``Lout`` from
      the conv settings, and it knows its conv structure (for the moves in
      :mod:`convjax.nn.family` and :mod:`convjax.nn.tied`). Every entry of ``w``
      is free; the conv settings only fix ``Lout`` and the structure.

    ``w`` is laid out as :func:`convjax.conv_matrix`: ``y.reshape(-1) =
    w @ x.reshape(-1) + b.reshape(-1)`` for one example. Default init:
    ``lecun_normal()`` with ``fan_in = L*Cin`` (every entry is live).

    Args:
      out_channels: ``Cout`` (or ``n``).
      out_length: ``Lout`` for a dense layer on ``(L, Cin)`` without conv settings.
      kernel_size: ``K`` of the conv this layer is the dense twin of.
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
            f"out_length={out_length!r}, kernel_size={kernel_size!r}."
        )
    return _make_linear(
        "Dense", "none", out_channels, kernel_size, out_length, stride=stride, padding=padding,
        dilation=dilation, groups=groups, flip=flip, padding_mode=padding_mode,
        use_bias=use_bias, w_init=w_init, b_init=b_init, dtype=dtype, precision=precision,
    ).layer()


def linear_spec(layer) -> Linear1D:
    """The :class:`Linear1D` behind a layer made by :func:`Conv1D`,
    :func:`LocallyConnected1D` or :func:`Dense`.

    Raises:
      TypeError: ``layer`` is not one of those.
    """
    spec = getattr(getattr(layer, "init", None), "__self__", None)
    if not isinstance(spec, Linear1D):
        raise TypeError(
            f"linear_spec: `layer` must be a layer made by Conv1D, LocallyConnected1D or "
            f"Dense, got {layer!r}."
        )
    return spec


def structure(layer, input_shape) -> ConvStructure:
    """The :class:`~convjax.tying.ConvStructure` of a linear layer on inputs of
    ``input_shape`` (leading batch axes allowed): what the moves of
    :mod:`convjax.nn.family` and :mod:`convjax.nn.tied` take.

    Example:
      >>> s = structure(Conv1D(8, 3, padding="same"), (16, 4))
      >>> s.filter_shape, s.dense_shape
      ((3, 4, 8), (128, 64))
    """
    return linear_spec(layer).structure(input_shape)


def twin(layer, tying: str, *, w_init=None, b_init=None) -> Layer:
    """The same linear layer with another tying: ``"shared"`` (conv),
    ``"per_position"`` (locally connected) or ``"none"`` (dense twin).

    The twin reads the same taps with the same options; only the tying changes.
    ``w_init``/``b_init`` default to those of ``layer``.

    Example:
      >>> import jax
      >>> conv = Conv1D(8, 3, padding="same")
      >>> out_shape, params = twin(conv, "none").init(jax.random.key(0), (16, 4))
      >>> out_shape, params["w"].shape
      ((16, 8), (128, 64))
    """
    spec = linear_spec(layer)
    tying = _checks.check_choice("twin", "tying", tying, TYINGS)
    if spec.kernel_size is None:
        raise ValueError(
            "twin: `layer` is a dense layer without conv settings (no `kernel_size`), so it "
            "has no convolutional or locally connected twin."
        )
    return dataclasses.replace(
        spec,
        tying=tying,
        w_init=w_init if w_init is not None else spec.w_init,
        b_init=b_init if b_init is not None else spec.b_init,
    ).layer()


# --------------------------------------------------------------------------
# parameter-free layers
# --------------------------------------------------------------------------
def _stateless(fn: str, ndim: int, layout: str, out_example, forward) -> Layer:
    """A layer without params: ``out_example(example_shape) -> example_shape``,
    ``forward(x) -> y``."""

    def init(key, input_shape):
        del key
        shape = _check_input_shape(f"{fn}.init", input_shape, ndim, layout)
        k = len(shape) - ndim
        return shape[:k] + tuple(out_example(shape[k:], f"{fn}.init")), ()

    def apply(params, x):
        if not (isinstance(params, tuple) and len(params) == 0):
            raise ValueError(
                f"{fn}.apply: this layer has no parameters, `params` must be (), got "
                f"{_short(params)}."
            )
        x = _check_x(f"{fn}.apply", x, ndim, layout)
        out_example(x.shape[x.ndim - ndim:], f"{fn}.apply")
        return forward(x)

    return Layer(init, apply)


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


def Activation(name: str) -> Layer:  # noqa: N802
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


def Elementwise(fn: Callable) -> Layer:  # noqa: N802
    """A layer applying any elementwise jax function ``fn`` (shape unchanged)."""
    if not callable(fn):
        raise TypeError(f"Elementwise: `fn` must be callable, got {fn!r}.")
    return _stateless("Elementwise", 0, "(...)", lambda s, f: s, fn)


Identity = Activation("identity")
Relu = Activation("relu")
Gelu = Activation("gelu")
Tanh = Activation("tanh")
Erf = Activation("erf")


def Flatten() -> Layer:  # noqa: N802
    """``(..., L, C) -> (..., L*C)``, row-major (position, channel), the flattening
    of the dense matrices."""

    def out(s, fn):
        return (s[0] * s[1],)

    return _stateless("Flatten", 2, "(..., L, C)", out,
                      lambda x: x.reshape(*x.shape[:-2], x.shape[-2] * x.shape[-1]))


POOL_KINDS = ("avg", "max")


def _pool(fn: str, kind: str, window, stride, padding) -> Layer:
    window = _checks.as_positive_int(fn, "window", window)
    stride = window if stride is None else stride
    opts = conv_options(stride=stride, padding=padding, fn=fn)

    def out(s, f):
        g = opts.geometry(s[0], window, fn=f)
        return (g.out_length, s[1])

    def forward(x):
        g = opts.geometry(x.shape[-2], window, fn=f"{fn}.apply")
        nd = x.ndim
        dims = (1,) * (nd - 2) + (window, 1)
        strides = (1,) * (nd - 2) + (g.stride, 1)
        pads = ((0, 0),) * (nd - 2) + ((g.pad_lo, g.pad_hi), (0, 0))
        # Python-scalar init values: lax recognises the (max, -inf) and (add, 0)
        # monoids and uses its differentiable reduce_window_{max,sum} primitives.
        if kind == "max":
            return jax.lax.reduce_window(x, -np.inf, jax.lax.max, dims, strides, pads)
        total = jax.lax.reduce_window(x, 0.0, jax.lax.add, dims, strides, pads)
        # the number of real (unpadded) entries in each window, (Lout, 1): static
        count = (g.tap_sources() >= 0).sum(axis=1)[:, None]
        return total / jnp.broadcast_to(jnp.asarray(count, total.dtype), total.shape)

    return _stateless(fn, 2, "(..., L, C)", out, forward)


def AvgPool1D(window: int, *, stride: int | None = None, padding: PaddingLike = "valid") -> Layer:  # noqa: N802
    """Average pooling over length: ``(..., L, C) -> (..., Lout, C)``.

    Args:
      window: pooling window length.
      stride: step; default ``window`` (non-overlapping).
      padding: as :func:`convjax.conv1d` (``"valid"``, ``"same"``, ints, ...); the
        average is over the real entries of each window (padding not counted).
    """
    return _pool("AvgPool1D", "avg", window, stride, padding)


def MaxPool1D(window: int, *, stride: int | None = None, padding: PaddingLike = "valid") -> Layer:  # noqa: N802
    """Max pooling over length: ``(..., L, C) -> (..., Lout, C)``; padding is -inf.
    Arguments as :func:`AvgPool1D`."""
    return _pool("MaxPool1D", "max", window, stride, padding)


def GlobalAvgPool() -> Layer:  # noqa: N802
    """Mean over length: ``(..., L, C) -> (..., C)``."""
    return _stateless("GlobalAvgPool", 2, "(..., L, C)", lambda s, f: (s[1],),
                      lambda x: jnp.mean(x, axis=-2))


def GlobalMaxPool() -> Layer:  # noqa: N802
    """Max over length: ``(..., L, C) -> (..., C)``."""
    return _stateless("GlobalMaxPool", 2, "(..., L, C)", lambda s, f: (s[1],),
                      lambda x: jnp.max(x, axis=-2))


# --------------------------------------------------------------------------
# combinators
# --------------------------------------------------------------------------
def serial(*layers: Layer) -> Layer:
    """Composes layers: ``apply(params, x) = f_n(... f_1(x))``.

    Params are a tuple with one entry per layer (``()`` for a layer without
    params). ``init`` splits the key once per layer.

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
                f"serial: `layers[{j}]` must be a Layer (init, apply), got {layer!r}; "
                f"did you pass a factory without calling it, e.g. `Flatten` for `Flatten()`?"
            )
    layers = tuple(layers)

    def init(key, input_shape):
        params = []
        keys = jax.random.split(key, len(layers)) if layers else ()
        shape = input_shape
        for k, layer in zip(keys, layers, strict=True):
            shape, p = layer.init(k, shape)
            params.append(p)
        return shape, tuple(params)

    def apply(params, x):
        if not isinstance(params, (tuple, list)) or len(params) != len(layers):
            raise ValueError(
                f"serial.apply: `params` must be a tuple of {len(layers)} entries (one per "
                f"layer), got {type(params).__name__} {_short(params)}."
            )
        for p, layer in zip(params, layers, strict=True):
            x = layer.apply(p, x)
        return x

    return Layer(init, apply)


def param_count(params) -> int:
    """Number of scalars in a params pytree."""
    return int(sum(np.size(a) for a in jax.tree_util.tree_leaves(params)))


__all__ = [
    "ACTIVATIONS",
    "Activation",
    "AvgPool1D",
    "Conv1D",
    "Dense",
    "Elementwise",
    "Erf",
    "Flatten",
    "Frame",
    "Gelu",
    "GlobalAvgPool",
    "GlobalMaxPool",
    "Identity",
    "Layer",
    "Linear1D",
    "LocallyConnected1D",
    "MaxPool1D",
    "Relu",
    "TYINGS",
    "Tanh",
    "linear_spec",
    "param_count",
    "serial",
    "structure",
    "twin",
]
