"""The tying structure: which weight each entry of the dense matrix holds.

A convolution layer ``y = conv(x, w)`` with ``N`` spatial axes is the linear map
``y.reshape(-1) = T(w) @ x.reshape(-1)`` with ``T(w)`` of shape
``(prod(Lout)*Cout, prod(L)*Cin)``, flattened row-major over (spatial..., channel)
on both sides, exactly as ``reshape(-1)`` flattens ``(*Lout, Cout)`` and
``(*L, Cin)``:

* row    ``o*Cout + co`` is (flattened) output position ``o``, output channel ``co``;
* column ``i*Cin + ci`` is (flattened) input position ``i``, input channel ``ci``.

In 1-D ``T`` is block Toeplitz (block circulant with circular padding); in 2-D it is
doubly block Toeplitz: ``Hout x H`` blocks indexed by image rows, each block the
``(Wout*Cout, W*Cin)`` matrix of a 1-D convolution along the columns, constant along
block diagonals (doubly block circulant with circular padding and stride 1).

``T(w)`` is a fully connected weight matrix with *tied* entries (every copy of
``w[k, c, co]`` is the same number) and *structural zeros* (entries that hold
no weight: outside the receptive field, or between channels of different
groups). With ``"circular"``, ``"reflect"`` or ``"replicate"`` padding, one
entry can hold the *sum* of several weights (two taps read the same input).

:class:`ConvStructure` stores this as a list of *incidences* ``(o, i, k)``:
"output position ``o`` reads input position ``i`` through kernel position ``k``"
(all three flattened row-major), one per live tap, times the block-diagonal channel
pattern of ``groups``. The rank appears only in the geometry that emits the
incidences; everything below serves every ``N``. Everything
below is derived from that one table:

=============================  ===================================================
``dense(w)``                   ``T(w)``; also :func:`conv_matrix`
``mask()``                     ``True`` where ``T`` holds at least one weight
``weight_index()``             the table (row, column, weight index) itself
``sparse(w)``                  ``T(w)`` as a ``BCOO`` with one entry per incidence
``adjoint(G)``                 ``T*(G)``: SUMS the copies of each weight. This is
                               how ``grad`` of a shared weight is the sum of the
                               gradients of its copies, and how the gradient at a
                               structural zero is discarded.
``nearest_filter(D)``          ``argmin_w ||T(w) - D||_F``: AVERAGES the copies
                               (a least-squares solve where entries hold sums)
``project(D)``                 ``T(nearest_filter(D))``: orthogonal projection onto
                               the convolutions of this shape
=============================  ===================================================

The same incidences, untied (one filter per output position, shape
``(*Lout, *K, Cin//groups, Cout)``), give the locally connected layer:
``local_dense``, ``local_adjoint``, ``local_nearest``, and the moves between the
families ``conv_to_local``, ``local_to_conv_adjoint``, ``local_to_conv_nearest``.
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING

import jax
import jax.numpy as jnp
import numpy as np

from convjax import _checks
from convjax import algorithms as _alg
from convjax.geometry import ConvOptions, Geometry, PaddingLike, conv_options

if TYPE_CHECKING:  # imported where used: it costs ~0.15 s (scipy.sparse) at import
    from jax.experimental import sparse as jsparse

#: Default ceiling for :func:`conv_matrix`: refuse to allocate more than 1 GiB.
DEFAULT_MAX_BYTES = _checks.DEFAULT_MAX_BYTES


@dataclasses.dataclass(frozen=True)
class ConvStructure:
    """The tying structure of one convolution layer with ``N`` spatial axes (static,
    hashable).

    Attributes:
      geometry: the resolved :class:`~convjax.geometry.Geometry`.
      in_channels: ``Cin``.
      out_channels: ``Cout``.
      groups: number of channel groups; ``Cin`` and ``Cout`` are multiples of it.
    """

    geometry: Geometry
    in_channels: int
    out_channels: int
    groups: int

    # ---- shapes -----------------------------------------------------------
    @property
    def ndim(self) -> int:
        """``N``: the number of spatial axes."""
        return self.geometry.ndim

    @property
    def in_shape(self) -> tuple[int, ...]:
        return self.geometry.in_shape

    @property
    def out_shape(self) -> tuple[int, ...]:
        return self.geometry.out_shape

    @property
    def kernel_shape(self) -> tuple[int, ...]:
        return self.geometry.kernel_shape

    @property
    def in_length(self) -> int:
        """``L`` (one spatial axis only; see :attr:`in_shape`)."""
        return self.geometry.in_length

    @property
    def out_length(self) -> int:
        """``Lout`` (one spatial axis only; see :attr:`out_shape`)."""
        return self.geometry.out_length

    @property
    def kernel_size(self) -> int:
        """``K`` (one spatial axis only; see :attr:`kernel_shape`)."""
        return self.geometry.kernel_size

    @property
    def filter_shape(self) -> tuple[int, ...]:
        """``(*K, Cin // groups, Cout)``: the shape of ``w``."""
        return (*self.kernel_shape, self.in_channels // self.groups, self.out_channels)

    @property
    def local_filter_shape(self) -> tuple[int, ...]:
        """``(*Lout, *K, Cin // groups, Cout)``: one filter per output position."""
        return (*self.out_shape, *self.filter_shape)

    @property
    def bias_shape(self) -> tuple[int, ...]:
        """``(*Lout, Cout)``: one bias per output position and channel (the untied
        bias of the locally connected and dense twins)."""
        return (*self.out_shape, self.out_channels)

    @property
    def dense_shape(self) -> tuple[int, int]:
        """``(prod(Lout) * Cout, prod(L) * Cin)``: the shape of ``T(w)``."""
        g = self.geometry
        return (g.out_size * self.out_channels, g.in_size * self.in_channels)

    # ---- the table --------------------------------------------------------
    def incidences(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The live taps as three int arrays ``(o, i, k)`` of equal length: flattened
        output position ``o`` reads flattened input position ``i`` through flattened
        kernel position ``k``. Taps that read a zero of the padding are left out."""
        return _alg.incidences(self.geometry)

    def copies(self) -> np.ndarray:
        """``(prod(K),)`` int array: how many live incidences each (flattened) kernel
        position has, i.e. how many dense entries (per channel pair) hold a copy of
        ``w[k]``. Zero for a tap that only ever reads padding zeros ("dead" tap)."""
        _, _, k = self.incidences()
        return np.bincount(k, minlength=self.geometry.n_taps)

    def channel_mask(self) -> np.ndarray:
        """``(Cout, Cin)`` bool: which channel pairs are connected (block diagonal
        over ``groups``)."""
        return _alg.channel_mask(self.in_channels, self.out_channels, self.groups)

    def position_mask(self) -> np.ndarray:
        """``(prod(Lout), prod(L))`` bool: which (flattened) output and input
        positions are connected."""
        return self.geometry.position_mask()

    def mask(self) -> np.ndarray:
        """``dense_shape`` bool numpy array: ``True`` where ``T(w)`` holds a weight,
        ``False`` at structural zeros."""
        m = self.position_mask()[:, None, :, None] & self.channel_mask()[None, :, None, :]
        return m.reshape(self.dense_shape)

    def weight_index(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The table itself: int arrays ``(row, col, widx)``, one entry per copy, with
        ``T[row, col] += w.reshape(-1)[widx]``. A (row, col) pair appears more than
        once where an entry holds a sum of weights (circular/reflect/replicate)."""
        o, i, k = self.incidences()
        cig = self.in_channels // self.groups
        cog = self.out_channels // self.groups
        co = np.arange(self.out_channels)
        a = np.arange(cig)
        ci = (co // cog)[:, None] * cig + a[None, :]  # (Cout, cig) global input channel
        rows = o[:, None, None] * self.out_channels + co[None, :, None]
        cols = i[:, None, None] * self.in_channels + ci[None, :, :]
        widx = (k[:, None, None] * cig + a[None, None, :]) * self.out_channels + co[None, :, None]
        shape = (len(o), self.out_channels, cig)
        return (
            np.broadcast_to(rows, shape).reshape(-1),
            np.broadcast_to(cols, shape).reshape(-1),
            np.broadcast_to(widx, shape).reshape(-1),
        )

    # ---- channel blocks ---------------------------------------------------
    def _flat_taps(self, w):
        """``(..., *K, cig, Cout)`` -> ``(..., prod(K), cig, Cout)``."""
        n = self.ndim
        return w.reshape(*w.shape[: w.ndim - n - 2], self.geometry.n_taps, *w.shape[-2:])

    def _shrink_groups(self, full):
        """Adjoint of :func:`~convjax.algorithms.expand_groups`: keeps the diagonal
        channel blocks. ``(..., Cout, Cin)`` -> ``(..., Cin//g, Cout)``."""
        g = self.groups
        cig, cog = self.in_channels // g, self.out_channels // g
        lead = full.shape[:-2]
        f = full.reshape(*lead, g, cog, g, cig)
        diag = jnp.diagonal(f, axis1=-4, axis2=-2)  # (..., cog, cig, g)
        return jnp.moveaxis(diag, -1, -3).reshape(*lead, self.out_channels, cig).swapaxes(-1, -2)

    def _scatter(self, blocks):
        """``(n_incidences, Cout, Cin)`` blocks -> dense ``dense_shape``."""
        return _alg.scatter_blocks(self.geometry, blocks)

    def _gather(self, dense):
        """Dense ``dense_shape`` -> ``(n_incidences, Cout, Cin)`` blocks."""
        o, i, _ = self.incidences()
        g = self.geometry
        t = dense.reshape(g.out_size, self.out_channels, g.in_size, self.in_channels)
        return t[o, :, i, :]

    # ---- tied (convolution) ----------------------------------------------
    def dense(self, w):
        """``T(w)``, shape ``dense_shape``; ``w`` has shape ``(*K, Cin//g, Cout)``."""
        self._check_array("w", w, self.filter_shape)
        return _alg.dense_matrix(w, self.geometry, self.groups)

    def sparse(self, w) -> jsparse.BCOO:
        """``T(w)`` as a ``jax.experimental.sparse.BCOO`` with one stored entry per
        copy of a weight (``prod(Lout)*prod(K)*Cin*Cout/groups`` at most), never
        ``prod(Lout)*prod(L)``."""
        from jax.experimental import sparse as jsparse

        self._check_array("w", w, self.filter_shape)
        rows, cols, widx = self.weight_index()
        indices = jnp.asarray(np.stack([rows, cols], axis=1).astype(np.int32))
        return jsparse.BCOO((w.reshape(-1)[widx], indices), shape=self.dense_shape)

    def adjoint(self, dense):
        """``T*(G)``: for each weight, the SUM of ``G`` over the entries holding a
        copy of it. Shape ``dense_shape`` -> ``(*K, Cin//g, Cout)``.

        ``<T(w), G>_F == <w, T*(G)>`` for all ``w`` and ``G``. Entries of ``G`` at
        structural zeros do not contribute. This is exactly the chain rule for a
        shared weight: ``grad_w f(T(w)) == T*(grad_T f)``.
        """
        self._check_array("dense", dense, self.dense_shape)
        _, _, k = self.incidences()
        n_taps = self.geometry.n_taps
        per_tap = jax.ops.segment_sum(self._gather(dense), k, num_segments=n_taps)
        return self._shrink_groups(per_tap).reshape(self.filter_shape)

    def tap_gram(self) -> np.ndarray:
        """``(prod(K), prod(K))`` float array ``A^T A`` of the position part of ``T``
        (kernel positions flattened row-major): entry ``(k, l)`` counts the dense
        entries (per channel pair) holding both taps. Diagonal (the copy counts)
        unless an entry holds a sum of weights."""
        o, i, k = self.incidences()
        entry = o * self.geometry.in_size + i
        _, inverse = np.unique(entry, return_inverse=True)
        a = np.zeros((inverse.max(initial=-1) + 1, self.geometry.n_taps))
        np.add.at(a, (inverse, k), 1.0)
        return a.T @ a

    def nearest_filter(self, dense):
        """``argmin_w ||T(w) - dense||_F``: the tied filter nearest a dense matrix.

        Where each entry holds at most one weight, every weight is the AVERAGE of
        ``dense`` over its copies; in general it solves the normal equations
        (minimum-norm solution; a dead tap gets 0).
        Shape ``dense_shape`` -> ``(*K, Cin//g, Cout)``.
        """
        summed = self._flat_taps(self.adjoint(dense))
        gram_pinv = np.linalg.pinv(self.tap_gram())
        w = jnp.einsum("kl,l...->k...", jnp.asarray(gram_pinv, summed.dtype), summed)
        return w.reshape(self.filter_shape)

    def project(self, dense):
        """Orthogonal projection of a dense matrix onto ``{T(w)}``: ``T(nearest_filter)``."""
        return self.dense(self.nearest_filter(dense))

    # ---- untied (locally connected) --------------------------------------
    def _flat_local(self, filters):
        """``(*Lout, *K, cig, Cout)`` -> ``(prod(Lout), prod(K), cig, Cout)``."""
        g = self.geometry
        return filters.reshape(g.out_size, g.n_taps, *filters.shape[-2:])

    def local_dense(self, filters):
        """The dense matrix of a locally connected layer: output position ``o`` uses
        its own filter ``filters[o]``. ``(*Lout, *K, Cin//g, Cout)`` -> ``dense_shape``."""
        self._check_array("filters", filters, self.local_filter_shape)
        o, _, k = self.incidences()
        return self._scatter(_alg.expand_groups(self._flat_local(filters), self.groups)[o, k])

    def local_mask(self) -> np.ndarray:
        """``(*Lout, *K, 1, 1)`` bool: live (o, k) taps of the untied filters; the
        others read only padding zeros and have no effect."""
        live = self.geometry.tap_sources() >= 0
        return live.reshape(*self.out_shape, *self.kernel_shape, 1, 1)

    def _local_multiplicity(self) -> np.ndarray:
        """``(prod(Lout), prod(K))``: how many taps of row ``o`` read the same input
        as tap ``k``."""
        src = self.geometry.tap_sources()
        same = (src[:, :, None] == src[:, None, :]) & (src[:, :, None] >= 0)
        return same.sum(-1)

    def local_adjoint(self, dense):
        """Adjoint of :meth:`local_dense`: ``dense_shape`` -> ``(*Lout, *K, Cin//g, Cout)``,
        each untied weight gets the sum of ``dense`` over the entries it sits in
        (one entry, or none for a dead tap)."""
        self._check_array("dense", dense, self.dense_shape)
        o, _, k = self.incidences()
        blocks = self._gather(dense)
        g = self.geometry
        shape = (g.out_size, g.n_taps, self.out_channels, self.in_channels)
        full = jnp.zeros(shape, blocks.dtype).at[o, k].set(blocks)
        return self._shrink_groups(full).reshape(self.local_filter_shape)

    def local_nearest(self, dense):
        """The locally connected filters nearest a dense matrix (least squares,
        minimum norm): drops every off-structure entry; where several taps of one
        row read the same input the entry is shared equally; dead taps get 0."""
        mult = np.maximum(self._local_multiplicity(), 1)
        mult = mult.reshape(*self.out_shape, *self.kernel_shape, 1, 1)
        return self.local_adjoint(dense) / jnp.asarray(mult, jnp.result_type(dense))

    def conv_to_local(self, w):
        """Embeds a conv filter as untied filters: every live tap gets a copy, dead
        taps are 0. Lossless: ``local_dense(conv_to_local(w)) == dense(w)``."""
        self._check_array("w", w, self.filter_shape)
        return jnp.where(self.local_mask(), w[(None,) * self.ndim], jnp.zeros((), w.dtype))

    def local_to_conv_adjoint(self, filters):
        """Adjoint of :meth:`conv_to_local`: sums each tap over the positions where it
        is live. ``(*Lout, *K, Cin//g, Cout)`` -> ``(*K, Cin//g, Cout)``."""
        self._check_array("filters", filters, self.local_filter_shape)
        live = jnp.where(self.local_mask(), filters, jnp.zeros((), filters.dtype))
        return live.sum(tuple(range(self.ndim)))

    def local_to_conv_nearest(self, filters):
        """The tied filter nearest untied filters (in parameter space): each tap is the
        AVERAGE over the positions where it is live; a dead tap gets 0."""
        counts = np.maximum(self.local_mask().sum(tuple(range(self.ndim))), 1)
        return self.local_to_conv_adjoint(filters) / jnp.asarray(counts, filters.dtype)

    # ---- distance from the conv subspace ----------------------------------
    def off_structure_share(self, dense):
        """Share of the squared Frobenius norm of ``dense`` that sits at structural
        zeros: ``||dense * ~mask||^2 / ||dense||^2`` (0 for a conv or locally
        connected matrix, 0 also for an all-zero matrix)."""
        self._check_array("dense", dense, self.dense_shape)
        total = jnp.sum(dense**2)
        off = jnp.sum(jnp.where(jnp.asarray(self.mask()), 0.0, dense) ** 2)
        return jnp.where(total > 0, off / jnp.where(total > 0, total, 1.0), 0.0)

    def distance_to_conv(self, dense):
        """``||dense - project(dense)||_F / ||dense||_F``: the relative distance to the
        nearest convolution of this shape (0 for a convolution)."""
        self._check_array("dense", dense, self.dense_shape)
        total = jnp.sqrt(jnp.sum(dense**2))
        dist = jnp.sqrt(jnp.sum((dense - self.project(dense)) ** 2))
        return jnp.where(total > 0, dist / jnp.where(total > 0, total, 1.0), 0.0)

    def _check_array(self, name, a, shape):
        if tuple(np.shape(a)) != tuple(shape):
            raise ValueError(
                f"ConvStructure: `{name}` must have shape {tuple(shape)} for this structure "
                f"({self._describe()}, Cin={self.in_channels}, Cout={self.out_channels}, "
                f"groups={self.groups}), got shape {tuple(np.shape(a))}."
            )
        _checks.check_floating("ConvStructure", name, a)

    def _describe(self) -> str:
        if self.ndim == 1:
            return f"L={self.in_length}, Lout={self.out_length}, K={self.kernel_size}"
        return f"in {self.in_shape}, out {self.out_shape}, kernel {self.kernel_shape}"


def spatial_shape(fn: str, in_shape) -> tuple[int, ...]:
    """``in_shape`` (an int for 1-D, or a sequence of spatial sizes) as a tuple of
    ints >= 1, or raises naming ``in_shape``."""
    if isinstance(in_shape, (tuple, list)):
        if not in_shape:
            raise ValueError(f"{fn}: `in_shape` must have at least one spatial axis, got ().")
        return tuple(
            _checks.as_positive_int(fn, f"in_shape[{j}]", v) for j, v in enumerate(in_shape)
        )
    return (_checks.as_positive_int(fn, "in_shape", in_shape),)


def structure_from_options(
    opts: ConvOptions,
    filter_shape,
    in_shape,
    *,
    fn: str = "conv_structure",
) -> ConvStructure:
    """Builds a :class:`ConvStructure` from normalised options, ``w.shape`` and the
    input's spatial shape (an int for 1-D)."""
    n = opts.ndim
    layout = "(K, Cin//groups, Cout)" if n == 1 else "(*kernel, Cin//groups, Cout)"
    try:
        filter_shape = tuple(filter_shape)
    except TypeError:
        raise TypeError(
            f"{fn}: the filter shape must be a tuple {layout}, got "
            f"{filter_shape!r} of type {type(filter_shape).__name__}."
        ) from None
    if len(filter_shape) != n + 2:
        raise ValueError(
            f"{fn}: `w` must have rank {n + 2} (layout {layout}"
            + ("" if n == 1 else f", {n} spatial axes as in `in_shape`")
            + f"), got rank {len(filter_shape)} with shape {tuple(filter_shape)}."
        )
    dims = tuple(
        _checks.as_positive_int(fn, f"w.shape[{j}]", s, minimum=0)
        for j, s in enumerate(filter_shape)
    )
    if min(dims) < 1:
        raise ValueError(
            f"{fn}: `w` must have no zero-sized axis, got shape {tuple(filter_shape)}."
        )
    ks, (cig, cout) = dims[:n], dims[n:]
    if cout % opts.groups:
        raise ValueError(
            f"{fn}: the output channels Cout={cout} (w.shape[{n + 1}]) must be divisible by "
            f"`groups`={opts.groups}."
        )
    spatial = spatial_shape(fn, in_shape)
    if len(spatial) != n:
        raise ValueError(
            f"{fn}: `in_shape` must have {n} entries (one per spatial axis of `w`), got "
            f"{in_shape!r}."
        )
    geom = opts.geometry(spatial, ks, fn=fn)
    return ConvStructure(geom, cig * opts.groups, cout, opts.groups)


def _ndim_of(fn: str, in_shape) -> int:
    return len(spatial_shape(fn, in_shape))


def conv_structure(
    filter_shape,
    in_shape,
    *,
    stride=1,
    padding: PaddingLike = "valid",
    dilation=1,
    groups=1,
    flip: bool = False,
    padding_mode: str = "zeros",
) -> ConvStructure:
    """The tying structure of ``conv(x, w, ...)`` for ``x`` of spatial shape ``in_shape``.

    Args:
      filter_shape: ``w.shape == (*K, Cin // groups, Cout)``.
      in_shape: the input length ``L`` (an int, 1-D) or the spatial shape
        ``(L1, ..., LN)``; ``N`` must be ``len(filter_shape) - 2``.
      stride, padding, dilation, groups, flip, padding_mode: as in
        :func:`convjax.conv` (per-axis options with ``N`` entries).

    Returns:
      A static, hashable :class:`ConvStructure`.

    Example:
      >>> s = conv_structure((3, 1, 1), 4, flip=True)
      >>> s.mask().astype(int)
      array([[1, 1, 1, 0],
             [0, 1, 1, 1]])
      >>> conv_structure((2, 2, 1, 1), (3, 3)).mask().shape   # 2x2 outputs, 3x3 inputs
      (4, 9)
    """
    fn = "conv_structure"
    opts = conv_options(
        stride=stride,
        padding=padding,
        dilation=dilation,
        groups=groups,
        flip=flip,
        padding_mode=padding_mode,
        ndim=_ndim_of(fn, in_shape),
        fn=fn,
    )
    return structure_from_options(opts, filter_shape, in_shape, fn=fn)


def conv_matrix(
    w,
    in_shape,
    *,
    stride=1,
    padding: PaddingLike = "valid",
    dilation=1,
    groups=1,
    flip: bool = False,
    padding_mode: str = "zeros",
    max_bytes: int | None = DEFAULT_MAX_BYTES,
):
    """The dense matrix ``T(w)`` that does the job of ``conv(x, w, ...)``.

    ``T(w) @ x.reshape(-1) == conv(x, w, ...).reshape(-1)`` for ``x`` of shape
    ``(*in_shape, Cin)``, with row-major (spatial..., channel) flattening on both
    sides: row ``o*Cout + co``, column ``i*Cin + ci`` for flattened positions ``o``,
    ``i``. In 1-D ``T`` is block Toeplitz; in 2-D doubly block Toeplitz (``Hout x H``
    blocks, one per pair of image rows, each a 1-D convolution matrix along the
    columns); doubly block circulant with ``padding_mode="circular"``, stride 1 and
    as many outputs as inputs.

    Args:
      w: filter, shape ``(*K, Cin // groups, Cout)``, real floating.
      in_shape: the input length ``L`` (an int, 1-D) or the spatial shape
        ``(L1, ..., LN)`` with ``N = w.ndim - 2``.
      stride, padding, dilation, groups, flip, padding_mode: as in
        :func:`convjax.conv`.
      max_bytes: refuse (before allocating) when the matrix would need more bytes
        than this; ``None`` disables the check. Default: 1 GiB.

    Returns:
      ``T``, shape ``(prod(Lout) * Cout, prod(in_shape) * Cin)``, dtype of ``w``.

    Raises:
      ValueError: bad options or shapes (``w``'s rank not ``len(in_shape) + 2``), or
        the matrix exceeds ``max_bytes`` (use :func:`conv_matrix_sparse` then).
      TypeError: ``w`` is not real floating.

    Example:
      >>> import jax.numpy as jnp
      >>> w = jnp.array([5., 6., 7.]).reshape(3, 1, 1)
      >>> conv_matrix(w, 4, flip=True)
      Array([[7., 6., 5., 0.],
             [0., 7., 6., 5.]], dtype=float32)
      >>> w2 = jnp.array([[1., 2.], [3., 4.]]).reshape(2, 2, 1, 1)
      >>> conv_matrix(w2, (2, 3)).astype(int)     # 1 x 2 outputs, 2 x 3 inputs
      Array([[1, 2, 0, 3, 4, 0],
             [0, 1, 2, 0, 3, 4]], dtype=int32)
    """
    fn = "conv_matrix"
    _checks.check_floating(fn, "w", w)
    s = _structure_of(fn, w, in_shape, stride, padding, dilation, groups, flip, padding_mode)
    _checks.check_bytes(
        fn,
        "the dense matrix",
        s.dense_shape,
        w.dtype,
        max_bytes,
        "pass a larger max_bytes (or None) or use conv_matrix_sparse.",
    )
    return s.dense(w)


def _structure_of(fn, w, in_shape, stride, padding, dilation, groups, flip, padding_mode):
    opts = conv_options(
        stride=stride,
        padding=padding,
        dilation=dilation,
        groups=groups,
        flip=flip,
        padding_mode=padding_mode,
        ndim=_ndim_of(fn, in_shape),
        fn=fn,
    )
    return structure_from_options(opts, np.shape(w), in_shape, fn=fn)


def conv_matrix_sparse(
    w,
    in_shape,
    *,
    stride=1,
    padding: PaddingLike = "valid",
    dilation=1,
    groups=1,
    flip: bool = False,
    padding_mode: str = "zeros",
) -> jsparse.BCOO:
    """:func:`conv_matrix` as a ``BCOO`` sparse matrix whose storage grows with the
    number of copies of weights (at most ``prod(Lout)*prod(K)*Cin*Cout/groups``),
    not with ``prod(Lout)*prod(L)``.
    ``conv_matrix_sparse(w, in_shape).todense() == conv_matrix(w, in_shape)``.

    Example:
      >>> import jax.numpy as jnp
      >>> w = jnp.ones((3, 3, 1, 1))
      >>> conv_matrix_sparse(w, (8, 8)).nse    # 6*6 outputs * 9 taps, not 36*64
      324
    """
    fn = "conv_matrix_sparse"
    _checks.check_floating(fn, "w", w)
    s = _structure_of(fn, w, in_shape, stride, padding, dilation, groups, flip, padding_mode)
    return s.sparse(w)
