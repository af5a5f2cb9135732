"""The convolution primitive: one bilinear op whose derivatives stay fast in compiled loops.

XLA:CPU runs the convolutions that jax's own transpose rules emit for the gradients
of ``lax.conv_general_dilated`` (swapped dimension numbers, input dilation) 30-150x
slower inside a ``while`` loop (``lax.scan``, ``fori_loop``, :func:`convjax.train.fit`)
than at top level, while a plain forward convolution with the standard ``NWC``/``WIO``
layout is as fast inside a loop as outside (jax-ml/jax#12868). ``conv_p`` is a jax
primitive (:mod:`jax.extend`) for the valid cross-correlation of
:mod:`convjax.algorithms`, over any number ``N`` of spatial axes, whose rules are
written so that every derivative, of any order, is again a forward ``conv_p``, a pad
or a transpose (each statement below holds per spatial axis):

* **JVP** (forward mode): bilinearity, ``conv(dx, w) + conv(x, dw)``.
* **Transpose in x** (the input gradient): the cotangent ``g`` (``(B, *Lout, Cout)``)
  is spread to stride 1 and padded in one ``lax.pad`` (interior ``stride - 1``,
  edges ``E - 1 - pad_lo`` and the rest, negative edges crop), then
  cross-correlated, valid, with the filter reversed along every kernel axis and with its
  channel axes swapped within each group: ``w'[j, c, h*cig + a] = w[K-1-j, a, h*cog + c]``.
* **Transpose in w** (the weight gradient): the same sum read with the roles
  exchanged, ``dw[k, a, h*cog+c] = sum_{b,o} xp[b, o*s + k*d, h*cig+a] g[b, o, h*cog+c]``,
  is a valid cross-correlation of the input laid out as ``(cig, *L, g*B)`` (batch =
  input channel, channels = batch) with the cotangent laid out as a ``(*Lout, B, Cout)``
  filter dilated by the stride, at window stride ``dilation``: another forward
  ``conv_p`` with the standard layout, which zero-pads (or crops) the input itself.
  (Padding the input before its layout copy fuses the pad into the copy, which XLA:CPU
  then emits as a generic loop rather than its transpose kernel: weight gradients up to
  1.4x slower at top level in 1-D and 4x in 2-D,
  ``docs/measurements/cnn_gradient_trial.json``.) For a single
  example with one channel pair per group (one signal, one image) that convolution
  runs by the ``"loop"`` algorithm (XLA:CPU's own loop nest: one dot product per
  kernel position, read in place); for other filters of at most four taps with one
  input channel per group (batches of signals, depthwise and first layers:
  :func:`convjax.algorithms.weight_gradient_route`) the same sum is taken instead as
  one fused multiply-and-sum per kernel position of the strided input slice with the
  cotangent: K dot products rather than an FFT of the whole signal.
* **Batching** (``vmap``): a batched input folds into the batch axis; a batched
  filter alone folds into the output channels; both batched (independent runs,
  :func:`convjax.train.fit_many`) become a ``lax.map`` over the runs, each a
  ``conv_p`` in the standard layout (``docs/speed.md`` reports what was tried).

Every ``conv_p`` (the forward pass and those of the rules) is evaluated by a named
algorithm of :mod:`convjax.algorithms`, picked for its own shapes by
:func:`convjax.algorithms.choose` (``algorithm`` is a parameter of the equation, so
jaxprs show the route). ``jax.make_jaxpr(jax.grad(...))`` of a CPU ``conv1d`` with
``algorithm="auto"`` therefore holds ``conv_p``, ``pad``, ``transpose`` and
``dot_general`` equations but no ``conv_general_dilated`` (those appear only after
lowering, in the standard layout); ``tests/test_primitive.py`` pins this.

The results equal XLA's autodiff up to rounding (float64 to ``1e-12``), for every
stride, dilation, group count, padding and dtype; half precision is computed in
float32 as XLA accumulates it.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from jax.extend.core import Primitive
from jax.interpreters import ad, batching, mlir

from convjax import algorithms as _alg
from convjax.algorithms import Spec

conv_p = Primitive("convjax_conv")


def conv(x, w, spec: Spec, precision=None, algorithm: str | None = None):
    """Valid cross-correlation ``(B, *L, Cin), (*K, Cin/g, Cout) -> (B, *Lout, Cout)``
    as :func:`convjax.algorithms.conv_core` computes it, with the loop-safe derivative
    rules of this module.

    Args:
      x: ``(B, *L, Cin)``; zero padding as ``spec.pads`` say.
      w: ``(*K, Cin // groups, Cout)``, already flipped for a true convolution.
      spec: the static :class:`~convjax.algorithms.Spec`.
      precision: passed to the matmuls / XLA convolutions.
      algorithm: a name of :data:`~convjax.algorithms.CORE_ALGORITHMS` for this
        (forward) evaluation; ``None`` picks one by the CPU rule of
        :func:`~convjax.algorithms.choose`.

    Returns:
      ``(B, *spec.out_shape, Cout)`` in the dtype of ``x``.

    Example:
      >>> import jax.numpy as jnp
      >>> spec = Spec(stride=(1,), dilation=(1,), groups=1, pads=((0, 0),), out_shape=(2,))
      >>> x = jnp.array([1., 2., 3., 4.]).reshape(1, 4, 1)
      >>> w = jnp.array([5., 6., 7.]).reshape(3, 1, 1)
      >>> conv(x, w, spec)[0, :, 0]
      Array([38., 56.], dtype=float32)
    """
    if algorithm is None:
        algorithm = _cpu_choice(x.shape, w.shape, spec)
    return conv_p.bind(x, w, spec=spec, precision=precision, algorithm=algorithm)


def _cpu_choice(x_shape, w_shape, spec: Spec) -> str:
    """The forward algorithm of one ``conv_p`` by the CPU rule of ``choose``."""
    padded = tuple(L + lo + hi for L, (lo, hi) in zip(x_shape[1:-1], spec.pads, strict=True))
    return _alg.choose(
        "cpu",
        length=padded,
        in_channels=x_shape[-1],
        out_channels=w_shape[-1],
        kernel_size=tuple(w_shape[:-2]),
        dilation=spec.dilation,
        groups=spec.groups,
    ).forward


# ---------------------------------------------------------------------------- rules


def _abstract_eval(x, w, *, spec, precision, algorithm):
    del precision, algorithm
    dtype = jnp.result_type(x.dtype, w.dtype)
    return jax.core.ShapedArray((x.shape[0], *spec.out_shape, w.shape[-1]), dtype)


def _evaluate(x, w, *, spec, precision, algorithm):
    return _alg.IMPLS[algorithm](x, w, spec, precision)


conv_p.def_abstract_eval(_abstract_eval)
conv_p.def_impl(jax.jit(_evaluate, static_argnames=("spec", "precision", "algorithm")))
mlir.register_lowering(conv_p, mlir.lower_fun(_evaluate, multiple_results=False))


def _input_gradient(g, x, w, *, spec, precision, algorithm):
    """Transpose in ``x``: ``(B, *Lout, Cout)`` -> ``(B, *L, Cin)``."""
    del algorithm
    in_shape, cin = x.aval.shape[1:-1], x.aval.shape[-1]
    ks, (cig, cout) = w.shape[:-2], w.shape[-2:]
    n, grp = len(ks), spec.groups
    cog = cout // grp
    cfg = [(0, 0, 0)]
    for L, K, o, s, d, (plo, _) in zip(
        in_shape, ks, spec.out_shape, spec.stride, spec.dilation, spec.pads, strict=True
    ):
        e = d * (K - 1) + 1
        lo = e - 1 - plo
        cfg.append((lo, L + e - 1 - lo - ((o - 1) * s + 1), s - 1))
    gp = jax.lax.pad(g, jnp.zeros((), g.dtype), [*cfg, (0, 0, 0)])
    flipped = w.reshape(*ks, cig, grp, cog)[(slice(None, None, -1),) * n]
    w_t = jnp.moveaxis(flipped, (n, n + 2), (n + 2, n)).reshape(*ks, cog, cin)
    inner = Spec((1,) * n, spec.dilation, grp, ((0, 0),) * n, tuple(in_shape))
    return conv(gp, w_t.astype(g.dtype), inner, precision)


def _weight_gradient(g, x, w, *, spec, precision, algorithm):
    """Transpose in ``w``: ``(B, *Lout, Cout)`` -> ``(*K, Cin/g, Cout)``, by the route
    :func:`convjax.algorithms.weight_gradient_route` picks for the shapes."""
    del algorithm
    ks, cig = w.aval.shape[:-2], w.aval.shape[-2]
    cog = w.aval.shape[-1] // spec.groups
    route = _alg.weight_gradient_route(ks, cig, spec.dilation, cog=cog, batch=x.shape[0])
    if route == "taps":
        return _weight_gradient_taps(g, x, ks, cig, spec, precision)
    return _weight_gradient_conv(
        g, x, ks, cig, spec, precision, "loop" if route == "loop" else None
    )


def _weight_gradient_taps(g, x, ks, cig, spec, precision):
    """``dw[k, a, h*cog+c] = sum_{b,o} xp[b, o*s + k*d, h*cig+a] g[b, o, h*cog+c]``
    as one contraction per kernel position ``k``: the position's strided slice of the
    padded input against the cotangent, over the batch and output positions (with one
    input channel per group a fused multiply-and-sum, a ``(cig, B*Lout) @ (B*Lout,
    cog)`` matmul per group otherwise). Its own derivatives are slices, pads,
    multiplies, broadcasts and ``dot_general`` s, all loop-safe."""
    lead = g.shape[:-1]  # (B, *Lout)
    grp = spec.groups
    cog = g.shape[-1] // grp
    cdt = _alg.compute_dtype(g.dtype)
    xp = _alg.zero_pad(x, spec).astype(cdt)
    gg = g.reshape(*lead, grp, cog).astype(cdt)
    summed = tuple(range(len(lead)))
    if cig == 1:
        # One input channel per group: a multiply and a sum over (B, *Lout) per kernel
        # position, which XLA fuses into one reduction that reads the strided slice in
        # place (a dot_general would first copy every slice: K copies of the input).
        taps = [
            jnp.sum(_alg.tap(xp, k, spec).reshape(*lead, grp, 1) * gg, axis=summed)[:, None]
            for k in _alg.kernel_positions(ks)
        ]  # each (grp, 1, cog)
    else:
        dims = ((summed, summed), ((len(lead),), (len(lead),)))  # contract (B, *Lout)
        taps = [
            jax.lax.dot_general(
                _alg.tap(xp, k, spec).reshape(*lead, grp, cig), gg, dims, precision=precision
            )  # (grp, cig, cog)
            for k in _alg.kernel_positions(ks)
        ]
    dw = jnp.stack(taps).transpose(0, 2, 1, 3)  # (taps, cig, grp, cog)
    return dw.reshape(*ks, cig, grp * cog).astype(g.dtype)


def _weight_gradient_conv(g, x, ks, cig, spec, precision, algorithm=None):
    """The weight gradient as one forward ``conv_p`` with the roles of input and
    filter exchanged (see the module docstring), evaluated by ``algorithm`` (``None``:
    its own CPU choice, the FFT for a long "filter"; ``"loop"`` for one example
    with one channel pair per group)."""
    B, n, grp = x.shape[0], len(ks), spec.groups
    # Only the positions some tap reads: the last is (Lout-1)*stride + (K-1)*dilation.
    need = tuple(
        (o - 1) * s + (K - 1) * d + 1
        for o, s, K, d in zip(spec.out_shape, spec.stride, ks, spec.dilation, strict=True)
    )
    # The inner convolution pads (and crops, with a negative edge) by itself: padding
    # the input here would fuse a pad into the layout copy below, which XLA:CPU then
    # emits as a generic loop instead of its transpose kernel.
    pads = tuple(
        (lo, m - L - lo) for m, L, (lo, _) in zip(need, x.shape[1:-1], spec.pads, strict=True)
    )
    xp = x
    # lhs (cig, *need, grp*B): batch = input channel within its group, channels =
    # (group, example); rhs (*Lout, B, Cout): the cotangent as a filter.
    lhs = xp.reshape(B, *xp.shape[1:-1], grp, cig)
    lhs = jnp.moveaxis(lhs, (0, n + 2), (n + 2, 0)).reshape(cig, *xp.shape[1:-1], grp * B)
    rhs = jnp.moveaxis(g, 0, n)
    inner = Spec(spec.dilation, spec.stride, grp, pads, tuple(ks))
    dw = conv(lhs.astype(g.dtype), rhs, inner, precision, algorithm)  # (cig, *K, Cout)
    dw = jnp.moveaxis(dw, 0, n)
    bad = _padding_reads_nonfinite(g, ks, x.shape[1:-1], spec)
    return dw if bad is None else jnp.where(bad[..., None, :], jnp.nan, dw).astype(dw.dtype)


def _padding_reads_nonfinite(g, ks, in_shape, spec):
    """``(*K, Cout)`` bool (``None`` without zero padding): whether tap ``k`` of output
    channel ``c`` meets a NaN or infinity of the cotangent ``g`` at an output whose tap
    ``k`` falls on the padding. The sum defining ``dw[k, a, c]`` holds the products
    ``0 * g[b, o, c]`` there, a NaN when ``g`` is not finite (the rule of
    ``docs/semantics.md``; XLA's own weight gradient may skip them); the convolution
    that pads by itself skips those products, so they are put back here. Only the
    cotangent's edge slabs are read (the outputs whose tap ``k`` reaches the padding lie
    within ``ceil(pad / stride)`` of an edge), and the ops do not grow with ``K``: per
    padded axis, a running "any" over each slab and one static gather per edge."""
    n = len(ks)
    bad = None
    for i, (K, L, o, s, d, (lo, hi)) in enumerate(
        zip(ks, in_shape, spec.out_shape, spec.stride, spec.dilation, spec.pads, strict=True)
    ):
        if lo <= 0 and hi <= 0:
            continue
        # Outputs [0, first[k]) read the low padding at tap k, [last[k], o) the high.
        first = [min(o, max(0, -(-(lo - k * d) // s))) for k in range(K)]
        last = [min(o, max(0, -(-(lo + L - k * d) // s))) for k in range(K)]
        n_lo, n_hi = max(first), o - min(last)
        if n_lo == 0 and n_hi == 0:
            continue
        axis = i + 1
        others = tuple(a for a in range(g.ndim - 1) if a != axis)
        cout = g.shape[-1]
        none = jnp.zeros((1, cout), jnp.int8)
        per_axis = jnp.zeros((K, cout), bool)
        if n_lo:
            slab = jnp.any(~jnp.isfinite(jax.lax.slice_in_dim(g, 0, n_lo, axis=axis)), axis=others)
            # row j: any non-finite among the first j outputs
            prefix = jnp.concatenate([none, jax.lax.cummax(slab.astype(jnp.int8), axis=0)])
            per_axis = per_axis | (prefix[np.asarray(first)] > 0)
        if n_hi:
            slab = jnp.any(
                ~jnp.isfinite(jax.lax.slice_in_dim(g, o - n_hi, o, axis=axis)), axis=others
            )
            # row j: any non-finite among outputs [o - n_hi + j, o)
            suffix = jnp.concatenate(
                [jax.lax.cummax(slab.astype(jnp.int8), axis=0, reverse=True), none]
            )
            per_axis = per_axis | (suffix[np.asarray(last) - (o - n_hi)] > 0)
        shape = [1] * n + [cout]
        shape[i] = K
        per_axis = per_axis.reshape(shape)
        bad = per_axis if bad is None else bad | per_axis
    if bad is None:
        return None
    return jnp.broadcast_to(bad, (*ks, bad.shape[-1]))


ad.defbilinear(conv_p, _input_gradient, _weight_gradient)


def _batch(args, dims, *, spec, precision, algorithm):
    x, w = args
    bx, bw = dims
    if bw is None:
        return _batch_input(x, bx, w, spec, precision), 0
    w = jnp.moveaxis(w, bw, 0)
    if bx is None:
        return _batch_filter(x, w, spec, precision), 0
    x = jnp.moveaxis(x, bx, 0)
    return _batched_runs(x, w, spec, precision), 0


def _batch_input(x, bx, w, spec, precision):
    x = jnp.moveaxis(x, bx, 0)
    n, B = x.shape[:2]
    y = conv(x.reshape(n * B, *x.shape[2:]), w, spec, precision)
    return y.reshape(n, B, *y.shape[1:])


def _batch_filter(x, w, spec, precision):
    """One input, ``n`` filters ``(n, *K, cig, Cout)``: the filters side by side as
    output channels, kept group-major."""
    n, ks, (cig, cout) = w.shape[0], w.shape[1:-2], w.shape[-2:]
    grp = spec.groups
    cog = cout // grp
    nk = len(ks)
    wide = jnp.moveaxis(w.reshape(n, *ks, cig, grp, cog), 0, nk + 2)  # (*K, cig, grp, n, cog)
    y = conv(x, wide.reshape(*ks, cig, grp * n * cog), spec, precision)  # (B, *Lout, grp*n*cog)
    lead = y.shape[:-1]
    y = jnp.moveaxis(y.reshape(*lead, grp, n, cog), -2, 0)  # (n, B, *Lout, grp, cog)
    return y.reshape(n, *lead, cout)


def _batched_runs(x, w, spec, precision):
    """``n`` independent convolutions, ``(n, B, *L, Cin)`` with ``(n, *K, cig, Cout)``:
    a loop over the runs inside the compiled program (``lax.map``), each a ``conv_p``
    in the standard layout. Measured faster on CPU (1-D) than both a grouped
    convolution with ``n * groups`` groups (what vmapping ``lax.conv_general_dilated``
    gives) and per-tap batched matmuls (``docs/speed.md``)."""
    return jax.lax.map(lambda xw: conv(xw[0], xw[1], spec, precision), (x, w))


batching.primitive_batchers[conv_p] = _batch
