"""``locally_connected1d``: the untied twin of :func:`convjax.conv1d`.

A locally connected layer reads exactly the same taps as a convolution (same
padding, stride, dilation, groups, flip, padding mode: the tables of
:class:`~convjax.geometry.Geometry`), but every output position ``o`` has its own
filter ``filters[o]`` instead of one shared filter. Its dense matrix is
``ConvStructure.local_dense(filters)``; with ``filters[o] == w`` for every ``o``
it is ``conv1d(x, w)``.
"""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np

from convjax import _checks
from convjax.conv import pad_input
from convjax.geometry import Geometry, PaddingLike, conv_options


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
    """1-D locally connected layer: a convolution with one filter per output position.

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
    opts = conv_options(
        stride=stride,
        padding=padding,
        dilation=dilation,
        groups=groups,
        flip=flip,
        padding_mode=padding_mode,
        fn=fn,
    )
    dtype = _checks.result_dtype(fn, x=x, filters=filters)
    _checks.check_min_ndim(fn, "x", x, 2, "(..., L, Cin)")
    _checks.check_ndim(fn, "filters", filters, 4, "(Lout, K, Cin // groups, Cout)")
    L, cin = np.shape(x)[-2:]
    lout_w, K, cig, cout = np.shape(filters)
    g = opts.groups
    if 0 in np.shape(x):
        raise ValueError(f"{fn}: `x` must not be empty, got shape {tuple(np.shape(x))}.")
    if min(lout_w, K, cig, cout) < 1:
        raise ValueError(
            f"{fn}: `filters` must not be empty, got shape {tuple(np.shape(filters))}."
        )
    if cig * g != cin:
        raise ValueError(
            f"{fn}: channel mismatch: `x` has Cin={cin} channels (x.shape[-1]) but "
            f"`filters` expects Cin // groups = {cig} (filters.shape[2]) with "
            f"groups={g}, i.e. Cin = {cig * g}."
        )
    if cout % g:
        raise ValueError(
            f"{fn}: the output channels Cout={cout} (filters.shape[3]) must be divisible "
            f"by `groups`={g}."
        )
    geom = opts.geometry(L, K, fn=fn)
    if lout_w != geom.out_length:
        raise ValueError(
            f"{fn}: `filters` has {lout_w} positions (filters.shape[0]) but the input "
            f"length L={L} gives Lout={geom.out_length} output positions with these "
            f"options (K={K}, stride={opts.stride}, padding={opts.padding!r}, "
            f"dilation={opts.dilation})."
        )
    x = jnp.asarray(x, dtype)
    filters = jnp.asarray(filters, dtype)
    return local_apply(x, filters, geom, g, precision)


def local_apply(x, filters, geom: Geometry, groups: int, precision=None):
    """The unchecked route: gathers the ``(Lout, K)`` patches, then one einsum.

    ``x``: ``(..., L, Cin)``; ``filters``: ``(Lout, K, Cin//groups, Cout)``;
    returns ``(..., Lout, Cout)``.
    """
    lout, K, cig, cout = filters.shape
    xp = pad_input(x, geom)  # (..., Lp, Cin)
    patches = jnp.take(xp, jnp.asarray(geom.tap_positions()), axis=-2)  # (..., Lout, K, Cin)
    patches = patches.reshape(*patches.shape[:-1], groups, cig)
    f = filters.reshape(lout, K, cig, groups, cout // groups)
    y = jnp.einsum("...okga,okagb->...ogb", patches, f, precision=precision)
    return y.reshape(*y.shape[:-2], cout)
