"""Locally connected layers: the untied twins of :func:`convjax.conv`.

A locally connected layer reads exactly the same taps as a convolution (same
padding, stride, dilation, groups, flip, padding mode, per axis: the tables of
:class:`~convjax.geometry.Geometry`), but every output position ``o`` has its own
filter ``filters[o]`` instead of one shared filter. Its dense matrix is
``ConvStructure.local_dense(filters)``; with ``filters[o] == w`` for every ``o``
it is ``conv(x, w)``.
"""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np

from convjax import _checks
from convjax.convolution import pad_input
from convjax.geometry import Geometry, PaddingLike, conv_options


def locally_connected(
    x,
    filters,
    *,
    stride=1,
    padding: PaddingLike = "valid",
    dilation=1,
    groups=1,
    flip: bool = False,
    padding_mode: str = "zeros",
    precision=None,
):
    """Locally connected layer over ``N`` spatial axes: one filter per output position.

    ``y[..., o, co] = sum_{k, c} xp[..., o*stride + k'*dilation, c] * filters[o, k, c, co]``
    with multi-indices ``o``, ``k`` (per-axis products), ``k' = k``
    (``flip=False``) or ``k`` reversed on every axis (``flip=True``), ``xp`` the
    padded input, and ``c`` running over the input channels of the group of ``co``,
    exactly as in :func:`convjax.conv`.

    Args:
      x: input, shape ``(..., *spatial, Cin)``; any number of leading batch axes.
      filters: untied filters, shape ``(*out_spatial, *kernel, Cin // groups,
        Cout)``; ``N = (filters.ndim - 2) / 2`` and ``out_spatial`` must be the
        output shape the options give for ``spatial``.
      stride, padding, dilation, groups, flip, padding_mode: as in
        :func:`convjax.conv`.
      precision: passed to XLA (e.g. ``jax.lax.Precision.HIGHEST``).

    Returns:
      ``(..., *out_spatial, Cout)`` array in the promoted dtype of ``x`` and ``filters``.

    Raises:
      ValueError: wrong rank, channel mismatch, ``out_spatial`` not the output
        shape, bad option.
      TypeError: non-floating dtype, non-integer size.

    Example:
      >>> import jax.numpy as jnp
      >>> x = jnp.arange(9.).reshape(3, 3, 1)
      >>> f = jnp.zeros((2, 2, 2, 2, 1, 1)).at[:, :, 0, 0].set(1.)  # top-left taps
      >>> locally_connected(x, f.at[1, 1, 1, 1].set(10.))[..., 0]
      Array([[ 0.,  1.],
             [ 3., 84.]], dtype=float32)
    """
    fn = "locally_connected"
    rank = np.ndim(filters)
    if rank < 4 or rank % 2:
        raise ValueError(
            f"{fn}: `filters` must have an even rank >= 4 (layout (*out_spatial, "
            f"*kernel, Cin // groups, Cout)), got rank {rank} with shape "
            f"{tuple(np.shape(filters))}."
        )
    opts = conv_options(
        stride=stride,
        padding=padding,
        dilation=dilation,
        groups=groups,
        flip=flip,
        padding_mode=padding_mode,
        ndim=(rank - 2) // 2,
        fn=fn,
    )
    return _local(fn, x, filters, opts, precision)


def locally_connected1d(
    x,
    filters,
    *,
    stride=1,
    padding: PaddingLike = "valid",
    dilation=1,
    groups=1,
    flip: bool = False,
    padding_mode: str = "zeros",
    precision=None,
):
    """1-D locally connected layer: :func:`locally_connected` with one spatial axis.

    ``y[..., o, co] = sum_{k, c} xp[..., o*stride + k'*dilation, c] * filters[o, k, c, co]``
    with ``k' = k`` (``flip=False``, cross-correlation) or ``k' = K-1-k``
    (``flip=True``), ``xp`` the padded input, and ``c`` running over the input
    channels of the group of ``co``, exactly as in :func:`convjax.conv1d`.

    Args:
      x: input, shape ``(..., L, Cin)``; any number of leading batch axes.
      filters: untied filters, shape ``(Lout, K, Cin // groups, Cout)``; ``Lout``
        must be the output length the options give for ``L``.
      stride, padding, dilation, groups, flip, padding_mode: as in
        :func:`convjax.conv1d`.
      precision: passed to XLA (e.g. ``jax.lax.Precision.HIGHEST``).

    Returns:
      ``(..., Lout, Cout)`` array in the promoted dtype of ``x`` and ``filters``.

    Raises:
      ValueError: wrong rank, channel mismatch, ``filters.shape[0]`` not ``Lout``,
        bad option.
      TypeError: non-floating dtype, non-integer size.

    Example:
      >>> import jax.numpy as jnp
      >>> x = jnp.array([1., 2., 3., 4.]).reshape(4, 1)
      >>> f = jnp.array([[1., 1.], [0., 10.], [2., 0.]]).reshape(3, 2, 1, 1)
      >>> locally_connected1d(x, f)[:, 0]
      Array([ 3., 30.,  6.], dtype=float32)
    """
    fn = "locally_connected1d"
    _checks.check_ndim(fn, "filters", filters, 4, "(Lout, K, Cin // groups, Cout)")
    opts = conv_options(
        stride=stride,
        padding=padding,
        dilation=dilation,
        groups=groups,
        flip=flip,
        padding_mode=padding_mode,
        ndim=1,
        fn=fn,
    )
    return _local(fn, x, filters, opts, precision)


def _local(fn: str, x, filters, opts, precision):
    """The checked body of :func:`locally_connected` and :func:`locally_connected1d`."""
    n = opts.ndim
    dtype = _checks.result_dtype(fn, x=x, filters=filters)
    _checks.check_min_ndim(fn, "x", x, n + 1, "(..., L, Cin)" if n == 1 else "(..., *spatial, Cin)")
    spatial, cin = np.shape(x)[-n - 1 : -1], np.shape(x)[-1]
    fshape = np.shape(filters)
    outs, ks, (cig, cout) = fshape[:n], fshape[n : 2 * n], fshape[-2:]
    g = opts.groups
    if 0 in np.shape(x):
        raise ValueError(f"{fn}: `x` must not be empty, got shape {tuple(np.shape(x))}.")
    if 0 in fshape:
        raise ValueError(f"{fn}: `filters` must not be empty, got shape {tuple(fshape)}.")
    if cig * g != cin:
        raise ValueError(
            f"{fn}: channel mismatch: `x` has Cin={cin} channels (x.shape[-1]) but "
            f"`filters` expects Cin // groups = {cig} (filters.shape[{2 * n}]) with "
            f"groups={g}, i.e. Cin = {cig * g}."
        )
    if cout % g:
        raise ValueError(
            f"{fn}: the output channels Cout={cout} (filters.shape[{2 * n + 1}]) must be "
            f"divisible by `groups`={g}."
        )
    geom = opts.geometry(tuple(spatial), tuple(ks), fn=fn)
    if tuple(outs) != geom.out_shape:
        if n == 1:
            raise ValueError(
                f"{fn}: `filters` has {outs[0]} positions (filters.shape[0]) but the input "
                f"length L={spatial[0]} gives Lout={geom.out_length} output positions with "
                f"these options (K={ks[0]}, stride={opts.stride[0]}, "
                f"padding={opts.padding_arg!r}, dilation={opts.dilation[0]})."
            )
        raise ValueError(
            f"{fn}: `filters` has output positions {tuple(outs)} (filters.shape[:{n}]) but "
            f"the input shape {tuple(spatial)} gives {geom.out_shape} with these options "
            f"(kernel {tuple(ks)}, stride={opts.stride}, padding={opts.padding_arg!r}, "
            f"dilation={opts.dilation})."
        )
    x = jnp.asarray(x, dtype)
    filters = jnp.asarray(filters, dtype)
    return local_apply(x, filters, geom, g, precision)


def local_apply(x, filters, geom: Geometry, groups: int, precision=None):
    """The unchecked route: gathers the (output, kernel position) patches, then one
    einsum.

    ``x``: ``(..., *L, Cin)``; ``filters``: ``(*Lout, *K, Cin//groups, Cout)``;
    returns ``(..., *Lout, Cout)``.
    """
    n = geom.ndim
    cig, cout = filters.shape[-2:]
    xp = pad_input(x, geom)  # (..., *Lp, Cin)
    lead = xp.shape[: -n - 1]
    xp = xp.reshape(*lead, -1, xp.shape[-1])
    patches = jnp.take(xp, jnp.asarray(geom.tap_positions()), axis=-2)  # (..., O, T, Cin)
    patches = patches.reshape(*patches.shape[:-1], groups, cig)
    f = filters.reshape(geom.out_size, geom.n_taps, cig, groups, cout // groups)
    y = jnp.einsum("...okga,okagb->...ogb", patches, f, precision=precision)
    return y.reshape(*lead, *geom.out_shape, cout)
