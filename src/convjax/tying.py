"""The tying structure: which weight each entry of the dense matrix holds.

A 1-D convolution layer ``y = conv1d(x, w)`` is the linear map
``y.reshape(-1) = T(w) @ x.reshape(-1)`` with ``T(w)`` of shape
``(Lout*Cout, L*Cin)``, flattened row-major over (position, channel):

* row    ``o*Cout + co`` is output position ``o``, output channel ``co``;
* column ``i*Cin + ci`` is input position ``i``, input channel ``ci``.

``T(w)`` is a fully connected weight matrix with *tied* entries (every copy of
``w[k, c, co]`` is the same number) and *structural zeros* (entries that hold
no weight: outside the receptive field, or between channels of different
groups). With ``"circular"``, ``"reflect"`` or ``"replicate"`` padding, one
entry can hold the *sum* of several weights (two taps read the same input).

:class:`ConvStructure` stores this as a list of *incidences* ``(o, i, k)``:
"output position ``o`` reads input position ``i`` through tap ``k``", one per
live tap, times the block-diagonal channel pattern of ``groups``. Everything
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
``(Lout, K, Cin//groups, Cout)``), give the locally connected layer:
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
from convjax.geometry import ConvOptions, Geometry, PaddingLike, conv_options

if TYPE_CHECKING:  # imported where used: it costs ~0.15 s (scipy.sparse) at import
    from jax.experimental import sparse as jsparse

#: Default ceiling for :func:`conv_matrix`: refuse to allocate more than 1 GiB.
DEFAULT_MAX_BYTES = _checks.DEFAULT_MAX_BYTES


@dataclasses.dataclass(frozen=True)
class ConvStructure:
    """The tying structure of one 1-D convolution layer (static, hashable).

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
    def in_length(self) -> int:
        return self.geometry.in_length

    @property
    def out_length(self) -> int:
        return self.geometry.out_length

    @property
    def kernel_size(self) -> int:
        return self.geometry.kernel_size

    @property
    def filter_shape(self) -> tuple[int, int, int]:
        """``(K, Cin // groups, Cout)``: the shape of ``w``."""
        return (self.kernel_size, self.in_channels // self.groups, self.out_channels)

    @property
    def local_filter_shape(self) -> tuple[int, int, int, int]:
        """``(Lout, K, Cin // groups, Cout)``: one filter per output position."""
        return (self.out_length, *self.filter_shape)

    @property
    def dense_shape(self) -> tuple[int, int]:
        """``(Lout * Cout, L * Cin)``: the shape of ``T(w)``."""
        return (self.out_length * self.out_channels, self.in_length * self.in_channels)

    # ---- the table --------------------------------------------------------
    def incidences(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The live taps as three int arrays ``(o, i, k)`` of equal length: output
        position ``o`` reads input position ``i`` through filter tap ``k``.
        Taps that read a zero of the padding are left out."""
        src = self.geometry.tap_sources()
        o, k = np.nonzero(src >= 0)
        return o, src[o, k], k

    def copies(self) -> np.ndarray:
        """``(K,)`` int array: how many live incidences each tap has, i.e. how many
        dense entries (per channel pair) hold a copy of ``w[k]``. Zero for a tap
        that only ever reads padding zeros ("dead" tap)."""
        _, _, k = self.incidences()
        return np.bincount(k, minlength=self.kernel_size)

    def channel_mask(self) -> np.ndarray:
        """``(Cout, Cin)`` bool: which channel pairs are connected (block diagonal
        over ``groups``)."""
        g = self.groups
        co = np.arange(self.out_channels) // (self.out_channels // g)
        ci = np.arange(self.in_channels) // (self.in_channels // g)
        return co[:, None] == ci[None, :]

    def position_mask(self) -> np.ndarray:
        """``(Lout, L)`` bool: which (output, input) positions are connected."""
        m = np.zeros((self.out_length, self.in_length), dtype=bool)
        o, i, _ = self.incidences()
        m[o, i] = True
        return m

    def mask(self) -> np.ndarray:
        """``(Lout*Cout, L*Cin)`` bool numpy array: ``True`` where ``T(w)`` holds a
        weight, ``False`` at structural zeros."""
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
    def _expand_groups(self, w):
        """``(..., K, Cin//g, Cout)`` -> ``(..., K, Cout, Cin)``, zeros off the groups."""
        g = self.groups
        cig, cout = self.in_channels // g, self.out_channels
        cog = cout // g
        lead = w.shape[:-2]
        wg = w.reshape(*lead, cig, g, cog)  # (..., a, h, b): out channel h*cog+b
        eye = jnp.eye(g, dtype=w.dtype)
        full = jnp.einsum("...ahb,gh->...hbga", wg, eye)  # (..., h, b, g, a)
        return full.reshape(*lead, cout, self.in_channels)

    def _shrink_groups(self, full):
        """Adjoint of :meth:`_expand_groups`: keeps the diagonal channel blocks.
        ``(..., Cout, Cin)`` -> ``(..., Cin//g, Cout)``."""
        g = self.groups
        cig, cog = self.in_channels // g, self.out_channels // g
        lead = full.shape[:-2]
        f = full.reshape(*lead, g, cog, g, cig)
        diag = jnp.diagonal(f, axis1=-4, axis2=-2)  # (..., cog, cig, g)
        return jnp.moveaxis(diag, -1, -3).reshape(*lead, self.out_channels, cig).swapaxes(-1, -2)

    def _scatter(self, blocks):
        """``(n_incidences, Cout, Cin)`` blocks -> dense ``(Lout*Cout, L*Cin)``."""
        o, i, _ = self.incidences()
        t = jnp.zeros(
            (self.out_length, self.in_length, self.out_channels, self.in_channels), blocks.dtype
        )
        t = t.at[o, i].add(blocks)
        return t.transpose(0, 2, 1, 3).reshape(self.dense_shape)

    def _gather(self, dense):
        """Dense ``(Lout*Cout, L*Cin)`` -> ``(n_incidences, Cout, Cin)`` blocks."""
        o, i, _ = self.incidences()
        t = dense.reshape(self.out_length, self.out_channels, self.in_length, self.in_channels)
        return t[o, :, i, :]

    # ---- tied (convolution) ----------------------------------------------
    def dense(self, w):
        """``T(w)``, shape ``(Lout*Cout, L*Cin)``; ``w`` has shape ``(K, Cin//g, Cout)``."""
        self._check_array("w", w, self.filter_shape)
        _, _, k = self.incidences()
        return self._scatter(self._expand_groups(w)[k])

    def sparse(self, w) -> jsparse.BCOO:
        """``T(w)`` as a ``jax.experimental.sparse.BCOO`` with one stored entry per
        copy of a weight (``Lout*K*Cin*Cout/groups`` at most), never ``Lout*L``."""
        from jax.experimental import sparse as jsparse

        self._check_array("w", w, self.filter_shape)
        rows, cols, widx = self.weight_index()
        indices = jnp.asarray(np.stack([rows, cols], axis=1).astype(np.int32))
        return jsparse.BCOO((w.reshape(-1)[widx], indices), shape=self.dense_shape)

    def adjoint(self, dense):
        """``T*(G)``: for each weight, the SUM of ``G`` over the entries holding a
        copy of it. Shape ``(Lout*Cout, L*Cin)`` -> ``(K, Cin//g, Cout)``.

        ``<T(w), G>_F == <w, T*(G)>`` for all ``w`` and ``G``. Entries of ``G`` at
        structural zeros do not contribute. This is exactly the chain rule for a
        shared weight: ``grad_w f(T(w)) == T*(grad_T f)``.
        """
        self._check_array("dense", dense, self.dense_shape)
        _, _, k = self.incidences()
        per_tap = jax.ops.segment_sum(self._gather(dense), k, num_segments=self.kernel_size)
        return self._shrink_groups(per_tap)

    def tap_gram(self) -> np.ndarray:
        """``(K, K)`` float array ``A^T A`` of the position part of ``T``: entry
        ``(k, l)`` counts the dense entries (per channel pair) holding both taps.
        Diagonal (the copy counts) unless an entry holds a sum of weights."""
        o, i, k = self.incidences()
        entry = o * self.in_length + i
        _, inverse = np.unique(entry, return_inverse=True)
        a = np.zeros((inverse.max(initial=-1) + 1, self.kernel_size))
        np.add.at(a, (inverse, k), 1.0)
        return a.T @ a

    def nearest_filter(self, dense):
        """``argmin_w ||T(w) - dense||_F``: the tied filter nearest a dense matrix.

        Where each entry holds at most one weight, every weight is the AVERAGE of
        ``dense`` over its copies; in general it solves the normal equations
        (minimum-norm solution; a dead tap gets 0).
        Shape ``(Lout*Cout, L*Cin)`` -> ``(K, Cin//g, Cout)``.
        """
        summed = self.adjoint(dense)
        gram_pinv = np.linalg.pinv(self.tap_gram())
        return jnp.einsum("kl,l...->k...", jnp.asarray(gram_pinv, summed.dtype), summed)

    def project(self, dense):
        """Orthogonal projection of a dense matrix onto ``{T(w)}``: ``T(nearest_filter)``."""
        return self.dense(self.nearest_filter(dense))

    # ---- untied (locally connected) --------------------------------------
    def local_dense(self, filters):
        """The dense matrix of a locally connected layer: output position ``o`` uses
        its own filter ``filters[o]``. ``(Lout, K, Cin//g, Cout)`` -> ``(Lout*Cout, L*Cin)``."""
        self._check_array("filters", filters, self.local_filter_shape)
        o, _, k = self.incidences()
        return self._scatter(self._expand_groups(filters)[o, k])

    def local_mask(self) -> np.ndarray:
        """``(Lout, K, 1, 1)`` bool: live (o, k) taps of the untied filters; the
        others read only padding zeros and have no effect."""
        return (self.geometry.tap_sources() >= 0)[:, :, None, None]

    def _local_multiplicity(self) -> np.ndarray:
        """``(Lout, K)``: how many taps of row ``o`` read the same input as tap ``k``."""
        src = self.geometry.tap_sources()
        same = (src[:, :, None] == src[:, None, :]) & (src[:, :, None] >= 0)
        return same.sum(-1)

    def local_adjoint(self, dense):
        """Adjoint of :meth:`local_dense`: ``(Lout*Cout, L*Cin)`` -> ``(Lout, K, Cin//g, Cout)``,
        each untied weight gets the sum of ``dense`` over the entries it sits in
        (one entry, or none for a dead tap)."""
        self._check_array("dense", dense, self.dense_shape)
        o, _, k = self.incidences()
        blocks = self._gather(dense)
        shape = (self.out_length, self.kernel_size, self.out_channels, self.in_channels)
        full = jnp.zeros(shape, blocks.dtype).at[o, k].set(blocks)
        return self._shrink_groups(full)

    def local_nearest(self, dense):
        """The locally connected filters nearest a dense matrix (least squares,
        minimum norm): drops every off-structure entry; where several taps of one
        row read the same input the entry is shared equally; dead taps get 0."""
        mult = np.maximum(self._local_multiplicity(), 1)[:, :, None, None]
        return self.local_adjoint(dense) / jnp.asarray(mult, jnp.result_type(dense))

    def conv_to_local(self, w):
        """Embeds a conv filter as untied filters: every live tap gets a copy, dead
        taps are 0. Lossless: ``local_dense(conv_to_local(w)) == dense(w)``."""
        self._check_array("w", w, self.filter_shape)
        return jnp.where(self.local_mask(), w[None], jnp.zeros((), w.dtype))

    def local_to_conv_adjoint(self, filters):
        """Adjoint of :meth:`conv_to_local`: sums each tap over the positions where it
        is live. ``(Lout, K, Cin//g, Cout)`` -> ``(K, Cin//g, Cout)``."""
        self._check_array("filters", filters, self.local_filter_shape)
        return jnp.where(self.local_mask(), filters, jnp.zeros((), filters.dtype)).sum(0)

    def local_to_conv_nearest(self, filters):
        """The tied filter nearest untied filters (in parameter space): each tap is the
        AVERAGE over the positions where it is live; a dead tap gets 0."""
        counts = np.maximum(self.local_mask()[..., 0, 0].sum(0), 1)[:, None, None]
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
                f"(L={self.in_length}, Lout={self.out_length}, K={self.kernel_size}, "
                f"Cin={self.in_channels}, Cout={self.out_channels}, groups={self.groups}), "
                f"got shape {tuple(np.shape(a))}."
            )
        _checks.check_floating("ConvStructure", name, a)


def structure_from_options(
    opts: ConvOptions,
    filter_shape,
    in_length: int,
    *,
    fn: str = "conv_structure",
) -> ConvStructure:
    """Builds a :class:`ConvStructure` from normalised options and ``w.shape``."""
    try:
        filter_shape = tuple(filter_shape)
    except TypeError:
        raise TypeError(
            f"{fn}: the filter shape must be a tuple (K, Cin // groups, Cout), got "
            f"{filter_shape!r} of type {type(filter_shape).__name__}."
        ) from None
    if len(filter_shape) != 3:
        raise ValueError(
            f"{fn}: `w` must have rank 3 (layout (K, Cin//groups, Cout)), got rank "
            f"{len(filter_shape)} with shape {tuple(filter_shape)}."
        )
    K, cig, cout = (
        _checks.as_positive_int(fn, f"w.shape[{j}]", s, minimum=0)
        for j, s in enumerate(filter_shape)
    )
    if min(K, cig, cout) < 1:
        raise ValueError(
            f"{fn}: `w` must have no zero-sized axis, got shape {tuple(filter_shape)}."
        )
    if cout % opts.groups:
        raise ValueError(
            f"{fn}: the output channels Cout={cout} (w.shape[2]) must be divisible by "
            f"`groups`={opts.groups}."
        )
    in_length = _checks.as_positive_int(fn, "in_length", in_length)
    geom = opts.geometry(in_length, K, fn=fn)
    return ConvStructure(geom, cig * opts.groups, cout, opts.groups)


def conv_structure(
    filter_shape,
    in_length: int,
    *,
    stride=1,
    padding: PaddingLike = "valid",
    dilation=1,
    groups=1,
    flip: bool = False,
    padding_mode: str = "zeros",
) -> ConvStructure:
    """The tying structure of ``conv1d(x, w, ...)`` for ``x`` of length ``in_length``.

    Args:
      filter_shape: ``w.shape == (K, Cin // groups, Cout)``.
      in_length: the input length ``L``.
      stride, padding, dilation, groups, flip, padding_mode: as in
        :func:`convjax.conv1d`.

    Returns:
      A static, hashable :class:`ConvStructure`.

    Example:
      >>> s = conv_structure((3, 1, 1), 4, flip=True)
      >>> s.mask().astype(int)
      array([[1, 1, 1, 0],
             [0, 1, 1, 1]])
    """
    opts = conv_options(
        stride=stride,
        padding=padding,
        dilation=dilation,
        groups=groups,
        flip=flip,
        padding_mode=padding_mode,
        fn="conv_structure",
    )
    return structure_from_options(opts, filter_shape, in_length, fn="conv_structure")


def conv_matrix(
    w,
    in_length: int,
    *,
    stride=1,
    padding: PaddingLike = "valid",
    dilation=1,
    groups=1,
    flip: bool = False,
    padding_mode: str = "zeros",
    max_bytes: int | None = DEFAULT_MAX_BYTES,
):
    """The dense matrix ``T(w)`` that does the job of ``conv1d(x, w, ...)``.

    ``T(w) @ x.reshape(-1) == conv1d(x, w, ...).reshape(-1)`` for ``x`` of shape
    ``(in_length, Cin)``, with row-major (position, channel) flattening on both
    sides: row ``o*Cout + co``, column ``i*Cin + ci``.

    Args:
      w: filter, shape ``(K, Cin // groups, Cout)``, real floating.
      in_length: the input length ``L``.
      stride, padding, dilation, groups, flip, padding_mode: as in
        :func:`convjax.conv1d`.
      max_bytes: refuse (before allocating) when the matrix would need more bytes
        than this; ``None`` disables the check. Default: 1 GiB.

    Returns:
      ``T``, shape ``(Lout * Cout, L * Cin)``, dtype of ``w``.

    Raises:
      ValueError: bad options or shapes, or the matrix exceeds ``max_bytes`` (use
        :func:`conv_matrix_sparse` then).
      TypeError: ``w`` is not real floating.

    Example:
      >>> import jax.numpy as jnp
      >>> w = jnp.array([5., 6., 7.]).reshape(3, 1, 1)
      >>> conv_matrix(w, 4, flip=True)
      Array([[7., 6., 5., 0.],
             [0., 7., 6., 5.]], dtype=float32)
    """
    _checks.check_floating("conv_matrix", "w", w)
    opts = conv_options(
        stride=stride,
        padding=padding,
        dilation=dilation,
        groups=groups,
        flip=flip,
        padding_mode=padding_mode,
        fn="conv_matrix",
    )
    s = structure_from_options(opts, np.shape(w), in_length, fn="conv_matrix")
    _checks.check_bytes(
        "conv_matrix",
        "the dense matrix",
        s.dense_shape,
        w.dtype,
        max_bytes,
        "pass a larger max_bytes (or None) or use conv_matrix_sparse.",
    )
    return s.dense(w)


def conv_matrix_sparse(
    w,
    in_length: int,
    *,
    stride=1,
    padding: PaddingLike = "valid",
    dilation=1,
    groups=1,
    flip: bool = False,
    padding_mode: str = "zeros",
) -> jsparse.BCOO:
    """:func:`conv_matrix` as a ``BCOO`` sparse matrix whose storage grows with the
    number of copies of weights (at most ``Lout*K*Cin*Cout/groups``), not with
    ``Lout*L``. ``conv_matrix_sparse(w, L).todense() == conv_matrix(w, L)``."""
    _checks.check_floating("conv_matrix_sparse", "w", w)
    opts = conv_options(
        stride=stride,
        padding=padding,
        dilation=dilation,
        groups=groups,
        flip=flip,
        padding_mode=padding_mode,
        fn="conv_matrix_sparse",
    )
    s = structure_from_options(opts, np.shape(w), in_length, fn="conv_matrix_sparse")
    return s.sparse(w)
