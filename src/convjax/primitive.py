"""The convolution primitive: one bilinear op whose derivatives stay fast in compiled loops.

XLA:CPU runs the convolutions that jax's own transpose rules emit for the gradients
of ``lax.conv_general_dilated`` (swapped dimension numbers, input dilation) 30-150x
slower inside a ``while`` loop (``lax.scan``, ``fori_loop``, :func:`convjax.train.fit`)
than at top level, while a plain forward convolution with the standard ``NWC``/``WIO``
layout is as fast inside a loop as outside (jax-ml/jax#12868). ``conv_p`` is a jax
primitive (:mod:`jax.extend`) for the valid cross-correlation of
:mod:`convjax.algorithms` whose rules are written so that every derivative, of any
order, is again a forward ``conv_p``, a pad or a transpose:

* **JVP** (forward mode): bilinearity, ``conv(dx, w) + conv(x, dw)``.
* **Transpose in x** (the input gradient): the cotangent ``g`` (``(B, Lout, Cout)``)
  is spread to stride 1 and padded in one ``lax.pad`` (interior ``stride - 1``,
  edges ``E - 1 - pad_lo`` and the rest, negative edges crop), then
  cross-correlated, valid, with the filter reversed along its taps and with its
  channel axes swapped within each group: ``w'[j, c, h*cig + a] = w[K-1-j, a, h*cog + c]``.
* **Transpose in w** (the weight gradient): the same sum read with the roles
  exchanged, ``dw[k, a, h*cog+c] = sum_{b,o} xp[b, o*s + k*d, h*cig+a] g[b, o, h*cog+c]``,
  is a valid cross-correlation of the padded input laid out as
  ``(cig, Lp, g*B)`` (batch = input channel, channels = batch) with the cotangent laid
  out as a ``(Lout, B, Cout)`` filter dilated by the stride, at window stride
  ``dilation``: another forward ``conv_p`` with the standard layout.
* **Batching** (``vmap``): a batched input folds into the batch axis; a batched
  filter alone folds into the output channels; both batched (independent runs,
  :func:`convjax.train.fit_many`) become one batched matmul per tap
  (``dot_general`` with a batch dimension), which XLA:CPU runs far faster than the
  grouped convolution that vmapping ``lax.conv_general_dilated`` produces.

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
from jax.extend.core import Primitive
from jax.interpreters import ad, batching, mlir

from convjax import algorithms as _alg
from convjax.algorithms import Spec

conv_p = Primitive("convjax_conv")


def conv(x, w, spec: Spec, precision=None, algorithm: str | None = None):
    """Valid cross-correlation ``(B, L, Cin), (K, Cin/g, Cout) -> (B, Lout, Cout)`` as
    :func:`convjax.algorithms.conv_core` computes it, with the loop-safe derivative
    rules of this module.

    Args:
      x: ``(B, L, Cin)``; zero padding as ``spec.pad_lo``/``spec.pad_hi`` say.
      w: ``(K, Cin // groups, Cout)``, already flipped for a true convolution.
      spec: the static :class:`~convjax.algorithms.Spec`.
      precision: passed to the matmuls / XLA convolutions.
      algorithm: a name of :data:`~convjax.algorithms.CORE_ALGORITHMS` for this
        (forward) evaluation; ``None`` picks one by the CPU rule of
        :func:`~convjax.algorithms.choose`.

    Returns:
      ``(B, spec.out_length, Cout)`` in the dtype of ``x``.

    Example:
      >>> import jax.numpy as jnp
      >>> spec = Spec(stride=1, dilation=1, groups=1, pad_lo=0, pad_hi=0, out_length=2)
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
    B, L, cin = x_shape
    K, _, cout = w_shape
    return _alg.choose(
        "cpu",
        batch=B,
        length=L + spec.pad_lo + spec.pad_hi,
        in_channels=cin,
        out_channels=cout,
        kernel_size=K,
        dilation=spec.dilation,
        groups=spec.groups,
    ).forward


# ---------------------------------------------------------------------------- rules


def _abstract_eval(x, w, *, spec, precision, algorithm):
    del precision, algorithm
    dtype = jnp.result_type(x.dtype, w.dtype)
    return jax.core.ShapedArray((x.shape[0], spec.out_length, w.shape[-1]), dtype)


def _evaluate(x, w, *, spec, precision, algorithm):
    return _alg.IMPLS[algorithm](x, w, spec, precision)


conv_p.def_abstract_eval(_abstract_eval)
conv_p.def_impl(jax.jit(_evaluate, static_argnames=("spec", "precision", "algorithm")))
mlir.register_lowering(conv_p, mlir.lower_fun(_evaluate, multiple_results=False))


def _effective(K: int, spec: Spec) -> int:
    return spec.dilation * (K - 1) + 1


def _input_gradient(g, x, w, *, spec, precision, algorithm):
    """Transpose in ``x``: ``(B, Lout, Cout)`` -> ``(B, L, Cin)``."""
    del algorithm
    L, cin = x.aval.shape[1], x.aval.shape[2]
    K, cig, cout = w.shape
    grp = spec.groups
    cog = cout // grp
    e = _effective(K, spec)
    spread = (spec.out_length - 1) * spec.stride + 1
    lo = e - 1 - spec.pad_lo
    hi = L + e - 1 - lo - spread
    gp = jax.lax.pad(g, jnp.zeros((), g.dtype), [(0, 0, 0), (lo, hi, spec.stride - 1), (0, 0, 0)])
    w_t = w.reshape(K, cig, grp, cog)[::-1].transpose(0, 3, 2, 1).reshape(K, cog, cin)
    inner = Spec(1, spec.dilation, grp, 0, 0, L)
    return conv(gp, w_t.astype(g.dtype), inner, precision)


def _weight_gradient(g, x, w, *, spec, precision, algorithm):
    """Transpose in ``w``: ``(B, Lout, Cout)`` -> ``(K, Cin/g, Cout)``, by the route
    :func:`convjax.algorithms.weight_gradient_route` picks for the shapes."""
    del algorithm
    K, cig, cout = w.aval.shape
    route = _alg.weight_gradient_route(K, cig, spec.dilation)
    if route == "taps":
        return _weight_gradient_taps(g, x, K, cig, spec, precision)
    return _weight_gradient_conv(g, x, K, cig, cout, spec, precision)


def _weight_gradient_taps(g, x, K, cig, spec, precision):
    """``dw[k, a, h*cog+c] = sum_{b,o} xp[b, o*s + k*d, h*cig+a] g[b, o, h*cog+c]`` as
    one contraction per tap: the tap's strided slice of the padded input against the
    cotangent, over the batch and output positions (a dot product per channel pair for
    one channel, a ``(cig, B*Lout) @ (B*Lout, cog)`` matmul per group otherwise). Its
    own derivatives are slices, pads and ``dot_general`` s, all loop-safe."""
    B, lout = g.shape[0], spec.out_length
    grp = spec.groups
    cog = g.shape[-1] // grp
    cdt = _alg.compute_dtype(g.dtype)
    xp = jnp.pad(x, ((0, 0), (spec.pad_lo, spec.pad_hi), (0, 0))).astype(cdt)
    gg = g.reshape(B, lout, grp, cog).astype(cdt)
    taps = [
        jnp.einsum(
            "blha,blhc->ahc",
            _alg.tap(xp, k, spec).reshape(B, lout, grp, cig),
            gg,
            precision=precision,
        )
        for k in range(K)
    ]
    return jnp.stack(taps).reshape(K, cig, grp * cog).astype(g.dtype)


def _weight_gradient_conv(g, x, K, cig, cout, spec, precision):
    """The weight gradient as one forward ``conv_p`` with the roles exchanged (see
    the module docstring): for long filters, where it runs by the FFT."""
    B, _, cin = x.shape
    grp = spec.groups
    xp = jnp.pad(x, ((0, 0), (spec.pad_lo, spec.pad_hi), (0, 0)))
    # Only the positions some tap reads: the last is (Lout-1)*stride + (K-1)*dilation.
    need = (spec.out_length - 1) * spec.stride + (K - 1) * spec.dilation + 1
    xp = xp[:, :need]
    # lhs (cig, need, grp*B): batch = input channel within its group, channels =
    # (group, example); rhs (Lout, B, Cout): the cotangent as a filter.
    lhs = xp.reshape(B, need, grp, cig).transpose(3, 1, 2, 0).reshape(cig, need, grp * B)
    rhs = g.transpose(1, 0, 2)
    inner = Spec(spec.dilation, spec.stride, grp, 0, 0, K)
    dw = conv(lhs.astype(g.dtype), rhs, inner, precision)  # (cig, K, Cout)
    return dw.transpose(1, 0, 2)


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
    """One input, ``n`` filters ``(n, K, cig, Cout)``: the filters side by side as
    output channels, kept group-major."""
    n, K, cig, cout = w.shape
    grp = spec.groups
    cog = cout // grp
    wide = w.reshape(n, K, cig, grp, cog).transpose(1, 2, 3, 0, 4).reshape(K, cig, grp * n * cog)
    y = conv(x, wide, spec, precision)  # (B, Lout, grp*n*cog)
    B, lout = y.shape[:2]
    return y.reshape(B, lout, grp, n, cog).transpose(3, 0, 1, 2, 4).reshape(n, B, lout, cout)


def _batched_runs(x, w, spec, precision):
    """``n`` independent convolutions, ``(n, B, L, Cin)`` with ``(n, K, cig, Cout)``:
    a loop over the runs inside the compiled program (``lax.map``), each a ``conv_p``
    in the standard layout. Measured faster on CPU than both a grouped convolution
    with ``n * groups`` groups (what vmapping ``lax.conv_general_dilated`` gives) and
    per-tap batched matmuls (``docs/speed.md``)."""
    return jax.lax.map(lambda xw: conv(xw[0], xw[1], spec, precision), (x, w))


batching.primitive_batchers[conv_p] = _batch
