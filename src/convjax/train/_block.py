"""The block function: ``eval_every`` optimizer updates under one ``lax.scan``, then evaluation.

:func:`block` is one run's block; :func:`compiled_block` returns it jitted (vmapped over a
leading runs axis for ``fit_many``) from a cache that holds the user's callables only
through weak references, so a cache entry never keeps a ``loss_fn``, an optimizer or an
``eval_fn`` (nor what their closures capture) alive; an entry disappears when any of them
is collected.
"""

from __future__ import annotations

import functools
import types
import weakref
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

from convjax.train import devices as dev
from convjax.train import sampling


class TrainState(NamedTuple):
    """What a run carries from step to step (leaves gain a leading runs axis in fit_many).

    Attributes:
      params: the parameter pytree.
      opt_state: the optimizer state.
      key: the run's PRNG key (constant; it draws the minibatches, see
        :mod:`convjax.train.sampling`).
      step: int32 ``()``, the number of updates done.
      bad_step: int32 ``()``, with ``on_nonfinite="raise"``: the number (1-based, as
        ``history["step"]``) of the first update that produced a non-finite value
        (see :data:`PROBLEMS`), ``-1`` if none.
    """

    params: Any
    opt_state: Any
    key: jax.Array
    step: jax.Array
    bad_step: jax.Array


class Settings(NamedTuple):
    """Static configuration of the block function (hashable: part of the cache key)."""

    batch_size: int | None
    n_data: int
    eval_every: int
    has_aux: bool
    on_nonfinite: str
    factory: bool
    batch_sharding: Any = None
    state_sharding: Any = None
    per_run_data: bool = False
    checked_state: tuple[bool, ...] | None = None  # opt-state leaves that must stay finite


PROBLEMS = (
    "the loss",
    "the gradient",
    "the updated params",
    "the optimizer state (a leaf that was finite at initialisation)",
)
"""What bit ``i`` of an update's problem flags stands for (see :func:`problems`)."""


def make_optimizer(optimizer, hyper, factory: bool):
    """The run's GradientTransformation: ``optimizer(hyper)`` for a factory."""
    return optimizer(hyper) if factory else optimizer


def apply_optimizer(opt, grads, opt_state, params, loss):
    """``opt.update``, passing ``value=loss`` to transformations with extra arguments."""
    if isinstance(opt, optax.GradientTransformationExtraArgs):
        return opt.update(grads, opt_state, params, value=loss)
    return opt.update(grads, opt_state, params)


def _select(ok, new, old):
    return jax.tree.map(lambda a, b: jnp.where(ok, a, b), new, old)


def _all_finite(tree):
    leaves = [jnp.all(jnp.isfinite(x)) for x in jax.tree_util.tree_leaves(tree)]
    return functools.reduce(jnp.logical_and, leaves, jnp.bool_(True))


def _sample(data, key, step, s: Settings):
    """The minibatch of update ``step`` (see :mod:`convjax.train.sampling`)."""
    if s.batch_size is not None:
        idx = sampling.batch_indices(key, step, s.n_data, s.batch_size)
        data = jax.tree.map(lambda a: jnp.take(a, idx, axis=0), data)
    return dev.constrain(data, s.batch_sharding)


def _loss_grad(loss_fn, has_aux, params, batch):
    if has_aux:
        (loss, aux), grads = jax.value_and_grad(loss_fn, has_aux=True)(params, batch)
    else:
        loss, grads = jax.value_and_grad(loss_fn)(params, batch)
        aux = {}
    return loss, aux, grads


def finite_leaves(tree) -> tuple[bool, ...]:
    """Per leaf: floating (or complex) and finite everywhere (host values; a sync)."""

    def ok(x):
        return bool(jnp.issubdtype(jnp.result_type(x), jnp.inexact) and jnp.all(jnp.isfinite(x)))

    return tuple(ok(x) for x in jax.tree_util.tree_leaves(tree))


def problems(s: Settings, loss, grads, params, opt_state):
    """int32 bit flags of what an update made non-finite (bit ``i``: ``PROBLEMS[i]``).

    Every params leaf is checked; of the optimizer state only the leaves flagged in
    ``s.checked_state`` (those finite at initialisation; None: every inexact leaf).
    """
    leaves = jax.tree_util.tree_leaves(opt_state)
    checked: tuple[bool, ...] | list[bool] | None = s.checked_state
    if checked is None:
        checked = [jnp.issubdtype(jnp.result_type(x), jnp.inexact) for x in leaves]
    state = [x for x, c in zip(leaves, checked, strict=True) if c]
    bad = [~jnp.isfinite(loss), ~_all_finite(grads), ~_all_finite(params), ~_all_finite(state)]
    return functools.reduce(jnp.bitwise_or, [b.astype(jnp.int32) << i for i, b in enumerate(bad)])


def _step(loss_fn, opt, s: Settings, end, data, carry):
    """One update of one run; a no-op at or past ``end`` (and after a bad one in raise mode).

    ``carry`` is ``(state, what)``: ``what`` holds the problem flags of the update named
    by ``state.bad_step`` (raise mode).
    """
    st, what = carry
    batch = _sample(data, st.key, st.step, s)
    loss, aux, grads = _loss_grad(loss_fn, s.has_aux, st.params, batch)
    updates, opt_state = apply_optimizer(opt, grads, st.opt_state, st.params, loss)
    params = optax.apply_updates(st.params, updates)
    flags = problems(s, loss, grads, params, opt_state)
    active, finite = st.step < end, flags == 0
    ok, bad_step = active & finite, st.bad_step
    if s.on_nonfinite == "raise":
        first = active & ~finite & (st.bad_step < 0)
        ok = ok & (st.bad_step < 0)
        bad_step = jnp.where(first, st.step + 1, st.bad_step)
        what = jnp.where(first, flags, what)
    new = TrainState(
        params=_select(ok, params, st.params),
        opt_state=_select(ok, opt_state, st.opt_state),
        key=st.key,
        step=st.step + active.astype(st.step.dtype),
        bad_step=bad_step,
    )
    return (new, what), (loss, aux, active & finite, active & ~finite)


def _block_metrics(s: Settings, loss, aux, counted, skipped) -> dict:
    """Means over the block's counted steps (and the skipped count in skip mode)."""
    n = jnp.sum(counted)

    def mean(v):
        return jnp.sum(jnp.where(counted, v, jnp.zeros_like(v))) / n.astype(v.dtype)

    metrics = {"loss": mean(loss), **{k: mean(v) for k, v in aux.items()}}
    if s.on_nonfinite == "skip":
        metrics["skipped"] = jnp.sum(skipped).astype(jnp.int32)
    return metrics


def block(loss_fn, optimizer, eval_fn, s: Settings, state, hyper, end, data, eval_data):
    """Runs ``eval_every`` steps of one run (those at or past ``end`` are no-ops), evaluates.

    Returns:
      ``(state, metrics, evals, what)``: the state after the block, the block's mean loss
      and aux metrics (plus ``"skipped"``), ``{"eval_<name>": value}`` from ``eval_fn``,
      and the problem flags of the update ``state.bad_step`` names (raise mode; else 0).
    """
    opt = make_optimizer(optimizer, hyper, s.factory)
    body = functools.partial(_step, loss_fn, opt, s, end, data)
    (state, what), (loss, aux, counted, skipped) = jax.lax.scan(
        lambda carry, _: body(carry), (state, jnp.int32(0)), length=s.eval_every
    )
    evals = {}
    if eval_fn is not None:
        evals = {f"eval_{k}": v for k, v in eval_fn(state.params, eval_data).items()}
    return state, _block_metrics(s, loss, aux, counted, skipped), evals, what


# Weak references to the user's callables.


def _weak(obj, callback=None):
    """A token standing for ``obj`` that does not keep it alive where Python allows.

    Bound methods are held as weak references to their function and instance (a bound
    method object is created anew at every attribute access); NamedTuples of callables
    (an optax ``GradientTransformation``) field by field; objects that cannot be weakly
    referenced (instances of classes with ``__slots__`` and no ``__weakref__``) are held
    strongly, as a ``jax.jit`` static argument would hold them. Tokens compare equal when
    their objects do; ``callback`` is called when a weakly held object dies.
    """
    if obj is None:
        return None
    if isinstance(obj, types.MethodType):
        return ("method", _weak(obj.__func__, callback), _weak(obj.__self__, callback))
    if isinstance(obj, tuple) and hasattr(obj, "_fields"):
        return ("fields", type(obj), tuple(_weak(f, callback) for f in obj))
    try:
        return weakref.ref(obj, callback)
    except TypeError:
        return ("strong", obj)


def _strong(token):
    """The object a :func:`_weak` token stands for (it must still be alive)."""
    if token is None:
        return None
    if isinstance(token, weakref.ref):
        obj = token()
        if obj is None:
            raise RuntimeError("convjax.train: a cached block outlived its callables.")
        return obj
    if token[0] == "method":
        return types.MethodType(_strong(token[1]), _strong(token[2]))
    if token[0] == "fields":
        return token[1](*(_strong(t) for t in token[2]))
    return token[1]


def _dead(token, ref=weakref.ref) -> bool:
    """Whether an object weakly held in ``token`` has been collected.

    It runs in weak-reference callbacks, possibly while the interpreter shuts down and
    module globals are already cleared: it uses no global name (``ref`` is bound here).
    """
    stack = [token]
    while stack:
        t = stack.pop()
        if isinstance(t, ref):
            if t() is None:
                return True
        elif isinstance(t, tuple):
            stack.extend(t)
    return False


def _jit_block(tokens, s: Settings, many: bool):
    """The jitted block; it reaches the user's callables only through ``tokens``."""

    def one(state, hyper, end, data, eval_data):
        loss_fn, optimizer, eval_fn = (_strong(t) for t in tokens)
        return block(loss_fn, optimizer, eval_fn, s, state, hyper, end, data, eval_data)

    def run(state, hyper, end, data, eval_data):
        data_axis = 0 if s.per_run_data else None
        fn = jax.vmap(one, in_axes=(0, 0, None, data_axis, data_axis)) if many else one
        state, metrics, evals, what = fn(state, hyper, end, data, eval_data)
        return dev.constrain(state, s.state_sharding), metrics, evals, what

    return jax.jit(run)


class BlockCache:
    """Jitted block functions keyed on ``(loss_fn, optimizer, eval_fn, settings, many)``.

    The keys hold the callables through weak references (see :func:`_weak`), the jitted
    functions reach them through the same references, and an entry is dropped as soon as
    one of its callables is collected: the cache never keeps a user's closure (or what it
    captures) alive. Calls with the same callable objects and settings share one compiled
    function, so they do not recompile.
    """

    def __init__(self):
        self._entries: dict = {}

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, loss_fn, optimizer, eval_fn, s: Settings, many: bool):
        """The jitted block for these callables and settings (traced on its first call)."""
        callables = (loss_fn, optimizer, eval_fn)
        hit = self._entries.get((tuple(_weak(c) for c in callables), s, many))
        if hit is not None:
            return hit
        tokens = tuple(_weak(c, self._drop_dead) for c in callables)
        fn = _jit_block(tokens, s, many)
        self._entries[(tokens, s, many)] = fn
        return fn

    def _drop_dead(self, _ref, dead=_dead) -> None:
        for key in [k for k in self._entries if dead(k[0])]:
            del self._entries[key]
