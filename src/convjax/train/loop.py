"""Training loops: :func:`fit` (one run) and :func:`fit_many` (runs vmapped together).

One run is a :class:`TrainState` carried through ``steps`` optimizer updates. The
steps between two evaluations (a *block* of ``eval_every`` steps) run inside one
``lax.scan`` in one jitted function, which also evaluates at the end of the block;
the block function is compiled once per configuration and called once per block,
so Python only sees the state between blocks (to record metrics, draw progress and
write checkpoints). :func:`fit_many` is the same block function under ``jax.vmap``
over a leading runs axis (seeds, initialisations, hyperparameters).

Sampling contract (what makes runs reproducible and resumable): the minibatch of
the update numbered ``s`` (0-based) is ``data[idx]`` with::

    idx = jax.random.choice(jax.random.fold_in(key, s), n, (batch_size,), replace=False)

so it depends only on the run's key and the step, never on where blocks or
restarts fall.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from convjax import _checks
from convjax.train import checkpoint as ckpt
from convjax.train import devices as dev
from convjax.train import progress as prog

NONFINITE = ("raise", "skip")


class TrainState(NamedTuple):
    """What a run carries from step to step (leaves gain a leading runs axis in fit_many).

    Attributes:
      params: the parameter pytree.
      opt_state: the optimizer state.
      key: the run's PRNG key (constant; step ``s`` uses ``fold_in(key, s)``).
      step: int32 ``()``, the number of updates done.
      bad_step: int32 ``()``, the first step whose loss or gradient was not finite
        (``-1`` if none); only used with ``on_nonfinite="raise"``.
    """

    params: Any
    opt_state: Any
    key: jax.Array
    step: jax.Array
    bad_step: jax.Array


class FitResult(NamedTuple):
    """What :func:`fit` and :func:`fit_many` return.

    Attributes:
      params: final parameters, jax arrays (stacked ``(n_runs, ...)`` leaves for
        fit_many; with ``parallel`` they keep their sharding: replicated for
        ``"data"``, split along runs for ``"runs"``).
      opt_state: final optimizer state (stacked and laid out likewise).
      history: dict of numpy arrays, one entry per metric, one value per block:
        ``"step"`` (updates done when the block ended), ``"loss"`` (mean training
        loss over the block's steps), every aux metric of the loss (same mean),
        ``"skipped"`` (with ``on_nonfinite="skip"``: non-finite steps skipped in the
        block) and ``"eval_<name>"`` for every metric of ``eval_fn`` at the block's
        end. Shapes ``(n_evals,)`` for fit, ``(n_runs, n_evals)`` for fit_many.
        :func:`jsonable` turns it into lists for ``json.dump``.
      step: the number of updates done (an int).
    """

    params: Any
    opt_state: Any
    history: dict
    step: int


class NonFiniteError(FloatingPointError):
    """The loss or its gradient was NaN or infinite; ``step`` (and ``runs``) say where."""

    def __init__(self, message: str, step: int, runs: tuple[int, ...] | None = None):
        super().__init__(message)
        self.step = step
        self.runs = runs


class _Settings(NamedTuple):
    """Static configuration of the block function (hashable: a jit static argument)."""

    batch_size: int | None
    n_data: int
    eval_every: int
    has_aux: bool
    on_nonfinite: str
    factory: bool
    batch_sharding: Any
    state_sharding: Any


# ----------------------------------------------------------------------------- block


def _select(ok, new, old):
    return jax.tree.map(lambda a, b: jnp.where(ok, a, b), new, old)


def _all_finite(tree):
    leaves = [jnp.all(jnp.isfinite(x)) for x in jax.tree_util.tree_leaves(tree)]
    return functools.reduce(jnp.logical_and, leaves, jnp.bool_(True))


def _sample(data, key, s: _Settings):
    if s.batch_size is not None:
        idx = jax.random.choice(key, s.n_data, (s.batch_size,), replace=False)
        data = jax.tree.map(lambda a: jnp.take(a, idx, axis=0), data)
    return dev.constrain(data, s.batch_sharding)


def _loss_grad(loss_fn, has_aux, params, batch):
    if has_aux:
        (loss, aux), grads = jax.value_and_grad(loss_fn, has_aux=True)(params, batch)
    else:
        loss, grads = jax.value_and_grad(loss_fn)(params, batch)
        aux = {}
    return loss, aux, grads


def _update(opt, grads, opt_state, params, loss):
    if isinstance(opt, optax.GradientTransformationExtraArgs):
        return opt.update(grads, opt_state, params, value=loss)
    return opt.update(grads, opt_state, params)


def _block(loss_fn, optimizer, eval_fn, s: _Settings, state, hyper, end, data, eval_data):
    """Runs ``eval_every`` steps (those at or past ``end`` are no-ops), then evaluates."""
    opt = optimizer(hyper) if s.factory else optimizer

    def body(st: TrainState, _):
        batch = _sample(data, jax.random.fold_in(st.key, st.step), s)
        loss, aux, grads = _loss_grad(loss_fn, s.has_aux, st.params, batch)
        updates, opt_state = _update(opt, grads, st.opt_state, st.params, loss)
        params = optax.apply_updates(st.params, updates)
        finite = jnp.isfinite(loss) & _all_finite(grads)
        active = st.step < end
        if s.on_nonfinite == "raise":
            fresh = st.bad_step < 0
            ok = active & finite & fresh
            bad_step = jnp.where(active & ~finite & fresh, st.step, st.bad_step)
        else:
            ok = active & finite
            bad_step = st.bad_step
        new = TrainState(
            params=_select(ok, params, st.params),
            opt_state=_select(ok, opt_state, st.opt_state),
            key=st.key,
            step=st.step + active.astype(st.step.dtype),
            bad_step=bad_step,
        )
        return new, (loss, aux, active & finite, active & ~finite)

    state, (loss, aux, counted, skipped) = jax.lax.scan(body, state, length=s.eval_every)
    n = jnp.sum(counted)

    def mean(v):
        return jnp.sum(jnp.where(counted, v, jnp.zeros_like(v))) / n.astype(v.dtype)

    metrics = {"loss": mean(loss), **{k: mean(v) for k, v in aux.items()}}
    if s.on_nonfinite == "skip":
        metrics["skipped"] = jnp.sum(skipped).astype(jnp.int32)
    evals = {}
    if eval_fn is not None:
        evals = {f"eval_{k}": v for k, v in eval_fn(state.params, eval_data).items()}
    return state, metrics, evals


@functools.partial(jax.jit, static_argnums=(0, 1, 2, 3))
def _fit_block(loss_fn, optimizer, eval_fn, s, state, hyper, end, data, eval_data):
    state, metrics, evals = _block(loss_fn, optimizer, eval_fn, s, state, hyper, end, data,
                                   eval_data)
    return dev.constrain(state, s.state_sharding), metrics, evals


@functools.partial(jax.jit, static_argnums=(0, 1, 2, 3))
def _fit_many_block(loss_fn, optimizer, eval_fn, s, state, hyper, end, data, eval_data):
    run = functools.partial(_block, loss_fn, optimizer, eval_fn, s)
    state, metrics, evals = jax.vmap(run, in_axes=(0, 0, None, None, None))(
        state, hyper, end, data, eval_data
    )
    return dev.constrain(state, s.state_sharding), metrics, evals


# ---------------------------------------------------------------------------- checks


def _path(p) -> str:
    return jax.tree_util.keystr(p) or "(root)"


def _shape_struct(x, drop_leading: bool):
    shape = tuple(np.shape(x))
    return jax.ShapeDtypeStruct(shape[1:] if drop_leading else shape, jnp.result_type(x))


def _check_data(fn: str, name: str, data, required: bool) -> int | None:
    leaves = jax.tree_util.tree_leaves_with_path(data)
    if not leaves:
        if required:
            raise ValueError(f"{fn}: `{name}` must be a pytree of arrays, got no arrays: {data!r}.")
        return None
    sizes = {}
    for p, leaf in leaves:
        if not hasattr(leaf, "shape") or not hasattr(leaf, "dtype"):
            raise TypeError(
                f"{fn}: `{name}` must be a pytree of arrays, leaf {_path(p)} is a "
                f"{type(leaf).__name__}."
            )
        if np.ndim(leaf) < 1:
            raise ValueError(
                f"{fn}: every leaf of `{name}` needs a leading example axis, leaf "
                f"{_path(p)} is a scalar."
            )
        sizes[_path(p)] = np.shape(leaf)[0]
    if len(set(sizes.values())) != 1:
        raise ValueError(
            f"{fn}: the leaves of `{name}` must share their leading (example) axis, got "
            f"sizes {', '.join(f'{k}: {v}' for k, v in sizes.items())}."
        )
    n = next(iter(sizes.values()))
    if n < 1:
        raise ValueError(f"{fn}: `{name}` holds no examples (leading axis of size 0).")
    return n


def _check_key(fn: str, name: str, key, n_runs: int | None):
    lead = () if n_runs is None else (n_runs,)
    if hasattr(key, "dtype") and jax.dtypes.issubdtype(key.dtype, jax.dtypes.prng_key):
        ok = np.shape(key) == lead
    else:
        ok = (
            hasattr(key, "dtype")
            and jnp.result_type(key) == jnp.uint32
            and np.ndim(key) == len(lead) + 1
            and np.shape(key)[: len(lead)] == lead
        )
    if not ok:
        typed, raw = (("()", "(2,)") if n_runs is None else (f"({n_runs},)", f"({n_runs}, 2)"))
        what = "one PRNG key" if n_runs is None else f"one PRNG key per run ({n_runs} runs)"
        raise ValueError(
            f"{fn}: `{name}` must be {what}: a typed key array of shape {typed} "
            f"(jax.random.key) or a raw uint32 array of shape {raw} (jax.random.PRNGKey), "
            f"got {getattr(key, 'dtype', type(key).__name__)} of shape {tuple(np.shape(key))}."
        )


def _check_leading(fn: str, name: str, tree, n_runs: int) -> None:
    for p, leaf in jax.tree_util.tree_leaves_with_path(tree):
        if np.ndim(leaf) < 1 or np.shape(leaf)[0] != n_runs:
            raise ValueError(
                f"{fn}: every leaf of `{name}` must have a leading runs axis of size "
                f"{n_runs} (the number of keys), leaf {_path(p)} has shape "
                f"{tuple(np.shape(leaf))}."
            )


def _check_params(fn: str, params) -> None:
    leaves = jax.tree_util.tree_leaves_with_path(params)
    if not leaves:
        raise ValueError(f"{fn}: `params` holds no arrays: {params!r}.")
    for p, leaf in leaves:
        if not hasattr(leaf, "dtype") or not jnp.issubdtype(jnp.result_type(leaf), jnp.floating):
            raise TypeError(
                f"{fn}: every leaf of `params` must be a floating array (it is "
                f"differentiated), leaf {_path(p)} has "
                f"{'dtype ' + str(leaf.dtype) if hasattr(leaf, 'dtype') else type(leaf).__name__}."
            )


def _same_structure(a, b) -> str | None:
    """None if ``a`` and ``b`` agree in structure, shapes and dtypes, else a description."""
    la, ta = jax.tree_util.tree_flatten_with_path(a)
    lb, tb = jax.tree_util.tree_flatten_with_path(b)
    if ta != tb:
        return f"tree structures differ:\n  {ta}\nvs\n  {tb}"
    for (p, x), (_, y) in zip(la, lb, strict=True):
        if np.shape(x) != np.shape(y) or jnp.result_type(x) != jnp.result_type(y):
            return (
                f"leaf {_path(p)} has shape {tuple(np.shape(x))} and dtype "
                f"{jnp.result_type(x)} vs shape {tuple(np.shape(y))} and dtype "
                f"{jnp.result_type(y)}"
            )
    return None


def _check_scalar_dict(fn: str, what: str, out) -> None:
    if not isinstance(out, dict):
        raise TypeError(f"{fn}: {what} must be a dict of scalars, got {type(out).__name__}.")
    for k, v in out.items():
        if not isinstance(k, str) or np.shape(v) != ():
            raise ValueError(
                f"{fn}: {what} must be a dict of scalars with string keys, entry {k!r} has "
                f"shape {tuple(np.shape(v))}."
            )


def _validate(fn, loss_fn, optimizer, eval_fn, s, params, opt_state, hyper, data, eval_data):
    """Abstract checks of one run: traced under ``jax.eval_shape``, nothing is compiled.

    ``params``, ``opt_state`` and ``hyper`` are one run's shape structs.
    """
    batch = jax.tree.map(
        lambda a: jax.ShapeDtypeStruct(
            ((s.batch_size or s.n_data),) + tuple(np.shape(a))[1:], jnp.result_type(a)
        ),
        data,
    )
    eval_data = jax.tree.map(lambda a: jax.ShapeDtypeStruct(np.shape(a), jnp.result_type(a)),
                             eval_data)

    def check(params, opt_state, hyper, batch, eval_data):
        _check_traced(fn, loss_fn, optimizer, eval_fn, s, params, opt_state, hyper, batch,
                      eval_data)

    jax.eval_shape(check, params, opt_state, hyper, batch, eval_data)


def _check_traced(fn, loss_fn, optimizer, eval_fn, s, params, opt_state, hyper, batch,
                  eval_data):
    out = loss_fn(params, batch)
    if s.has_aux:
        if not (isinstance(out, tuple) and len(out) == 2):
            raise TypeError(
                f"{fn}: with `has_aux=True`, `loss_fn` must return (loss, aux_dict), got "
                f"{type(out).__name__}."
            )
        out, aux = out
        _check_scalar_dict(fn, "the aux output of `loss_fn`", aux)
        clash = {"step", "loss", "skipped"} & set(aux)
        if clash or any(k.startswith("eval_") for k in aux):
            raise ValueError(
                f"{fn}: aux metric names must not be 'step', 'loss', 'skipped' or start with "
                f"'eval_', got {sorted(aux)}."
            )
    if not hasattr(out, "shape") or np.shape(out) != ():
        raise ValueError(
            f"{fn}: `loss_fn(params, batch)` must return a scalar"
            f"{' (with has_aux=True: (scalar, dict))' if not s.has_aux else ''}, got "
            f"{'shape ' + str(np.shape(out)) if hasattr(out, 'shape') else type(out).__name__}."
        )
    if not jnp.issubdtype(out.dtype, jnp.floating):
        raise TypeError(f"{fn}: `loss_fn` must return a floating scalar, got dtype {out.dtype}.")

    opt = optimizer(hyper) if s.factory else optimizer
    if s.factory and not isinstance(opt, optax.GradientTransformation):
        raise TypeError(
            f"{fn}: `optimizer(hyper)` must return an optax.GradientTransformation, got "
            f"{type(opt).__name__}."
        )
    try:
        init_state = opt.init(params)
    except Exception as e:  # re-raised with context: which argument does not fit.
        raise ValueError(
            f"{fn}: `optimizer` does not fit `params`: optimizer.init(params) raised "
            f"{type(e).__name__}: {e}"
        ) from e
    if opt_state is not None:
        problem = _same_structure(opt_state, init_state)
        if problem:
            raise ValueError(
                f"{fn}: `opt_state` does not match `optimizer.init(params)`: {problem}."
            )
    try:
        updates, new_state = _update(opt, params, init_state, params, out)
    except Exception as e:
        raise ValueError(
            f"{fn}: `optimizer` does not fit `params`: optimizer.update(grads, state, params) "
            f"raised {type(e).__name__}: {e}"
        ) from e
    problem = _same_structure(updates, params)
    if problem:
        raise ValueError(f"{fn}: the optimizer's updates do not match `params`: {problem}.")
    problem = _same_structure(new_state, init_state)
    if problem:
        raise ValueError(
            f"{fn}: the optimizer state changes structure, shape or dtype in an update "
            f"(params dtype vs optimizer hyperparameter dtype?): {problem}."
        )
    if eval_fn is not None:
        _check_scalar_dict(fn, "`eval_fn(params, eval_data)`", eval_fn(params, eval_data))


# ------------------------------------------------------------------------------ runs


def jsonable(tree):
    """Numpy/jax arrays in ``tree`` turned into (nested) lists, for ``json.dump``.

    Example:
      >>> import numpy as np
      >>> jsonable({"loss": np.array([0.5, 0.25]), "step": np.array([1, 2])})
      {'loss': [0.5, 0.25], 'step': [1, 2]}
    """
    return jax.tree.map(lambda x: np.asarray(x).tolist(), tree)


def _settings_record(kind, s: _Settings, n_runs, data, has_eval, hyper) -> dict:
    return {
        "kind": kind,
        "n_runs": n_runs,
        "batch_size": s.batch_size,
        "eval_every": s.eval_every,
        "on_nonfinite": s.on_nonfinite,
        "has_aux": s.has_aux,
        "has_eval": has_eval,
        "data": [[list(np.shape(a)), str(jnp.result_type(a))] for a in jax.tree.leaves(data)],
        "hyper": jsonable(hyper) if hyper is not None else None,
    }


def _run(fn, kind, loss_fn, optimizer, params, data, key, *, steps, batch_size, eval_every,
         eval_fn, eval_data, has_aux, hyper, opt_state, on_nonfinite, checkpoint_dir,
         checkpoint_every, keep_checkpoints, resume, progress, parallel, devices):
    many = kind == "fit_many"
    # ---- settings, normalised once
    steps = _checks.as_positive_int(fn, "steps", steps)
    eval_every = steps if eval_every is None else _checks.as_positive_int(fn, "eval_every",
                                                                          eval_every)
    if eval_every > steps:
        raise ValueError(f"{fn}: `eval_every` ({eval_every}) must be <= `steps` ({steps}).")
    on_nonfinite = _checks.check_choice(fn, "on_nonfinite", on_nonfinite, NONFINITE)
    mode = prog.progress_mode(fn, progress)
    if parallel is not None:
        allowed = dev.PARALLEL if many else ("data",)
        parallel = _checks.check_choice(fn, "parallel", parallel, allowed)
    if checkpoint_dir is None:
        if resume:
            raise ValueError(f"{fn}: `resume=True` needs a `checkpoint_dir`.")
        if checkpoint_every is not None:
            raise ValueError(f"{fn}: `checkpoint_every` needs a `checkpoint_dir`.")
    else:
        checkpoint_dir = os.fspath(checkpoint_dir)
        checkpoint_every = (
            eval_every if checkpoint_every is None
            else _checks.as_positive_int(fn, "checkpoint_every", checkpoint_every)
        )
        if checkpoint_every % eval_every:
            raise ValueError(
                f"{fn}: `checkpoint_every` ({checkpoint_every}) must be a multiple of "
                f"`eval_every` ({eval_every}): checkpoints are written between blocks."
            )
    if keep_checkpoints is not None:
        keep_checkpoints = _checks.as_positive_int(fn, "keep_checkpoints", keep_checkpoints)

    factory = not isinstance(optimizer, optax.GradientTransformation)
    if factory and (hyper is None or not callable(optimizer)):
        raise TypeError(
            f"{fn}: `optimizer` must be an optax.GradientTransformation, or a callable "
            f"`optimizer(hyper)` returning one together with `hyper`; got "
            f"{type(optimizer).__name__} with hyper={'None' if hyper is None else '...'}."
        )
    if not factory and hyper is not None:
        raise TypeError(
            f"{fn}: `hyper` is given but `optimizer` is already a GradientTransformation; "
            "pass a factory `optimizer(hyper) -> GradientTransformation` instead."
        )

    # ---- arrays
    n_runs = None
    if many:
        if not hasattr(key, "shape") or np.ndim(key) < 1:
            raise ValueError(
                f"{fn}: `keys` must hold one key per run (e.g. jax.random.split(key, n)), got "
                f"shape {tuple(np.shape(key))}."
            )
        n_runs = int(np.shape(key)[0])
    _check_key(fn, "keys" if many else "key", key, n_runs)
    _check_params(fn, params)
    if many:
        _check_leading(fn, "params", params, n_runs)
        if hyper is not None:
            _check_leading(fn, "hyper", hyper, n_runs)
        if opt_state is not None:
            _check_leading(fn, "opt_state", opt_state, n_runs)
    n_data = _check_data(fn, "data", data, required=True)
    _check_data(fn, "eval_data", eval_data, required=False)
    if batch_size is not None:
        batch_size = _checks.as_positive_int(fn, "batch_size", batch_size)
        if batch_size > n_data:
            raise ValueError(
                f"{fn}: `batch_size` ({batch_size}) is larger than the dataset ({n_data} "
                "examples); minibatches are sampled without replacement."
            )

    mesh = batch_sharding = state_sharding = None
    if parallel is not None:
        mesh = dev.make_mesh(parallel, devices)
        n_dev = mesh.devices.size
        if parallel == "data":
            if (batch_size or n_data) % n_dev:
                raise ValueError(
                    f"{fn}: with `parallel='data'` the batch size ({batch_size or n_data}) must "
                    f"be divisible by the number of devices ({n_dev})."
                )
            batch_sharding = dev.leading(mesh)
            state_sharding = dev.replicated(mesh)
        else:
            if n_runs % n_dev:
                raise ValueError(
                    f"{fn}: with `parallel='runs'` the number of runs ({n_runs}) must be "
                    f"divisible by the number of devices ({n_dev})."
                )
            state_sharding = dev.leading(mesh)
    s = _Settings(batch_size, n_data, eval_every, bool(has_aux), on_nonfinite, factory,
                  batch_sharding, state_sharding)

    # ---- abstract checks on one run
    one = functools.partial(_shape_struct, drop_leading=many)
    run_hyper = None if hyper is None else jax.tree.map(one, hyper)
    _validate(
        fn, loss_fn, optimizer, eval_fn, s, jax.tree.map(one, params),
        None if opt_state is None else jax.tree.map(one, opt_state), run_hyper,
        data, eval_data,
    )

    # ---- initial state
    if opt_state is None:
        if many:
            def init(p, h):
                return (optimizer(h) if factory else optimizer).init(p)

            opt_state = jax.vmap(init)(params, hyper)
        else:
            opt_state = (optimizer(hyper) if factory else optimizer).init(params)
    lead = (n_runs,) if many else ()
    state = TrainState(
        params=params,
        opt_state=opt_state,
        key=key,
        step=jnp.zeros(lead, jnp.int32),
        bad_step=jnp.full(lead, -1, jnp.int32),
    )
    history: dict[str, list] = {}
    start = 0

    # ---- checkpoints
    record = _settings_record(kind, s, n_runs, data, eval_fn is not None, hyper)
    if checkpoint_dir is not None:
        if resume:
            if not os.path.isdir(checkpoint_dir):
                raise FileNotFoundError(
                    f"{fn}: `resume=True` but the checkpoint directory `{checkpoint_dir}` does "
                    "not exist (create it to start a resumable run from scratch)."
                )
            latest = ckpt.latest_checkpoint(checkpoint_dir)
            if latest is not None:
                state, history, start = _restore(fn, latest, state, hyper, record, steps)
        else:
            os.makedirs(checkpoint_dir, exist_ok=True)
            if ckpt.list_checkpoints(checkpoint_dir):
                raise ValueError(
                    f"{fn}: `checkpoint_dir` `{checkpoint_dir}` already holds checkpoints; pass "
                    "`resume=True` to continue from the newest, or use an empty directory."
                )

    # ---- placement
    if parallel is None:
        to_dev = functools.partial(jax.tree.map, jnp.asarray)
        state, data, eval_data, hyper = (to_dev(t) for t in (state, data, eval_data, hyper))
    else:
        rep = dev.replicated(mesh)
        state = dev.put(state, state_sharding)
        hyper = dev.put(hyper, state_sharding if parallel == "runs" else rep)
        data, eval_data = dev.put(data, rep), dev.put(eval_data, rep)

    block = _fit_many_block if many else _fit_block
    bar = prog.make_progress(mode, steps, initial=start, desc=fn)
    step = start
    try:
        while step < steps:
            end = min((step // eval_every + 1) * eval_every, steps)
            state, metrics, evals = block(loss_fn, optimizer, eval_fn, s, state, hyper,
                                          jnp.int32(end), data, eval_data)
            bad = np.asarray(dev.to_host(state.bad_step))
            if (bad >= 0).any():
                raise _nonfinite_error(fn, bad, many)
            step = end
            row = {"step": np.full(lead, step, np.int32),
                   **dev.to_host(metrics), **dev.to_host(evals)}
            for k, v in row.items():
                history.setdefault(k, []).append(np.asarray(v))
            bar.update(step, {k: float(np.mean(v)) for k, v in row.items() if k != "step"})
            if checkpoint_dir is not None and (step % checkpoint_every == 0 or step == steps):
                _save(checkpoint_dir, step, state, hyper, history, record, steps,
                      keep_checkpoints)
    finally:
        bar.close()

    out_history = {k: np.stack(v, axis=-1) for k, v in history.items()}
    return FitResult(state.params, state.opt_state, out_history, step)


def _nonfinite_error(fn, bad, many):
    if many:
        runs = tuple(int(r) for r in np.flatnonzero(bad >= 0))
        first_run = min(runs, key=lambda r: (bad[r], r))
        first = int(bad[first_run])
        where = f" in run {first_run} (runs hit in this block: {list(runs)})"
    else:
        runs, first, where = None, int(bad), ""
    return NonFiniteError(
        f"{fn}: the loss or its gradient is not finite at step {first}{where}; step is the "
        f"0-based index of the update, params are kept as they were after {first} updates. "
        "Lower the learning rate, check the data, or pass on_nonfinite='skip' to skip such "
        "steps.",
        step=first,
        runs=runs,
    )


def _history_template(history_keys, n_blocks, dtypes, lead):
    return {k: jax.ShapeDtypeStruct((n_blocks,) + lead, np.dtype(dtypes[k])) for k in history_keys}


def _save(directory, step, state, hyper, history, record, steps, keep):
    tree = {
        "state": dev.to_host(state),
        "hyper": dev.to_host(hyper),
        "history": {k: np.stack(v) for k, v in history.items()},
    }
    meta = {
        "settings": record,
        "steps": steps,
        "n_blocks": len(history["step"]),
        "history": {k: str(np.stack(v).dtype) for k, v in history.items()},
    }
    if jax.process_index() == 0:
        ckpt.save_checkpoint(directory, step, tree, metadata=meta, keep=keep)


def _restore(fn, path, state, hyper, record, steps):
    meta = ckpt.read_record(path)["metadata"]
    saved = meta.get("settings")
    if not isinstance(saved, dict) or "n_blocks" not in meta or "history" not in meta:
        raise ckpt.CheckpointError(f"{fn}: checkpoint `{path}` was not written by convjax.train.")
    diffs = [
        f"{k}: checkpoint {saved.get(k)!r}, this call {v!r}"
        for k, v in record.items()
        if saved.get(k) != v
    ]
    if diffs:
        raise ckpt.CheckpointError(
            f"{fn}: checkpoint `{path}` does not match this call's settings: "
            + "; ".join(diffs) + "."
        )
    lead = tuple(np.shape(state.step))
    like = {
        "state": jax.tree.map(lambda x: _shape_struct(x, False) if not dev._is_key(x) else x,
                              state),
        "hyper": None if hyper is None else jax.tree.map(lambda x: _shape_struct(x, False),
                                                         hyper),
        "history": _history_template(meta["history"], int(meta["n_blocks"]), meta["history"],
                                     lead),
    }
    tree, _ = ckpt.load_checkpoint(path, like)
    got_step = int(np.max(tree["state"].step))
    if got_step > steps:
        raise ValueError(
            f"{fn}: checkpoint `{path}` is at step {got_step}, beyond `steps` ({steps})."
        )
    history = {k: list(v) for k, v in tree["history"].items()}
    return tree["state"], history, got_step


# ------------------------------------------------------------------------------ API

def fit(
    loss_fn: Callable,
    params,
    optimizer,
    data,
    key,
    *,
    steps: int,
    batch_size: int | None = None,
    eval_every: int | None = None,
    eval_fn: Callable | None = None,
    eval_data=None,
    has_aux: bool = False,
    hyper=None,
    opt_state=None,
    on_nonfinite: str = "raise",
    checkpoint_dir: str | os.PathLike | None = None,
    checkpoint_every: int | None = None,
    keep_checkpoints: int | None = 3,
    resume: bool = False,
    progress: bool | str = "auto",
    parallel: str | None = None,
    devices: Sequence | None = None,
) -> FitResult:
    """Trains ``params`` for ``steps`` optimizer updates on minibatches of ``data``.

    The steps of each block of ``eval_every`` run inside one ``lax.scan`` of one
    jitted function (compiled once per configuration: changing ``steps`` or calling
    again with the same ``loss_fn``, ``optimizer`` and ``eval_fn`` objects does not
    recompile); after each block the metrics are recorded, the progress bar drawn
    and, when due, a checkpoint written.

    Args:
      loss_fn: ``loss_fn(params, batch) -> scalar`` (or ``(scalar, aux)`` with
        ``has_aux=True``, ``aux`` a dict of scalar metrics). ``batch`` is ``data``
        with its leading axis cut to ``batch_size``.
      params: pytree of floating arrays.
      optimizer: an ``optax.GradientTransformation``; or, with ``hyper``, a factory
        ``optimizer(hyper) -> GradientTransformation`` (e.g.
        ``lambda h: optax.adam(h["lr"])``) called inside the compiled code.
        ``GradientTransformationExtraArgs`` receive ``value=loss`` (for
        ``optax.contrib.reduce_on_plateau`` and friends).
      data: pytree of arrays sharing a leading example axis of size ``n``.
      key: the run's PRNG key (``jax.random.key`` or ``jax.random.PRNGKey``). The
        minibatch of update ``s`` is ``data[choice(fold_in(key, s), n,
        (batch_size,), replace=False)]``.
      steps: number of optimizer updates, >= 1.
      batch_size: examples per update, sampled without replacement; ``None`` (default)
        uses all of ``data`` every step (full-batch gradient descent, no sampling).
      eval_every: steps per block (default: ``steps``, one block). Metrics are
        recorded at steps ``eval_every, 2 * eval_every, ...`` and at ``steps``; when
        ``eval_every`` does not divide ``steps`` the last block is shorter: it runs
        under the same compiled function with its surplus steps masked out (no
        recompilation, the update count is exact).
      eval_fn: optional ``eval_fn(params, eval_data) -> dict of scalars``, computed at
        the end of every block (inside the compiled block) and recorded as
        ``history["eval_<name>"]``.
      eval_data: passed to ``eval_fn`` (any pytree, e.g. a held-out test set).
      has_aux: whether ``loss_fn`` returns ``(loss, aux)``.
      hyper: pytree of arrays passed to the ``optimizer`` factory.
      opt_state: start from this optimizer state instead of ``optimizer.init(params)``.
      on_nonfinite: ``"raise"`` (default): stop with :class:`NonFiniteError` naming the
        first step whose loss or gradient is NaN/inf (checked inside the scan, raised
        after the block; nothing is checkpointed). ``"skip"``: leave params and
        optimizer state unchanged at such steps and count them in
        ``history["skipped"]``; they are excluded from the block's mean loss.
      checkpoint_dir: directory for checkpoints (created if needed when
        ``resume=False``, which then requires it to hold no checkpoint).
      checkpoint_every: checkpoint every this many steps, a multiple of
        ``eval_every`` (default: every block); the final step is always saved.
      keep_checkpoints: keep the newest this many (``None``: all).
      resume: continue from the newest checkpoint in ``checkpoint_dir`` (which must
        exist; when it holds none, training starts from scratch, so the same command
        can be rerun after a crash). ``params``, ``key`` etc. must have the shapes
        and settings the checkpoint was written with; ``steps`` may grow. The result
        is bitwise identical to an uninterrupted run on the same machine.
      progress: ``"auto"`` (default; a bar only on a terminal), ``"tqdm"``,
        ``"text"``, ``"none"``, or True/False; shows step, loss and eval metrics,
        updated per block.
      parallel: ``None`` (default devices) or ``"data"``: data-parallel over
        ``devices`` (batch axis sharded, params replicated); ``batch_size`` (or
        ``n``) must be divisible by the number of devices.
      devices: devices for ``parallel`` (default ``jax.devices()``: every device of
        every process after ``jax.distributed.initialize()``).

    Returns:
      :class:`FitResult` ``(params, opt_state, history, step)``; history leaves have
      shape ``(n_evals,)``, one entry per block since step 0 (a resumed run returns
      the checkpointed entries too): ``n_evals = ceil(steps / eval_every)`` unless an
      earlier run that was resumed with a larger ``steps`` had ended between two
      multiples of ``eval_every``.

    Raises:
      ValueError: bad settings, data with mismatched leading axes, ``batch_size >
        n``, a loss that is not a scalar, an optimizer that does not fit ``params``
        (its init or update fails, or changes structure/shape/dtype), ``resume``
        without a ``checkpoint_dir``, ``checkpoint_every`` not a multiple of
        ``eval_every``.
      TypeError: non-floating params, a wrong ``optimizer`` / ``hyper`` combination.
      FileNotFoundError: ``resume=True`` with a missing ``checkpoint_dir``.
      CheckpointError: a corrupted checkpoint, or one written with other shapes or
        settings (the message names the file).
      NonFiniteError: with ``on_nonfinite="raise"``, a NaN/inf loss or gradient.

    Example:
      >>> import jax, jax.numpy as jnp, optax
      >>> x = jnp.linspace(-1.0, 1.0, 32)[:, None]
      >>> data = {"x": x, "y": 3.0 * x}
      >>> loss = lambda p, b: jnp.mean((b["x"] * p["w"] - b["y"]) ** 2)
      >>> res = fit(loss, {"w": jnp.zeros(())}, optax.sgd(0.5), data, jax.random.key(0),
      ...           steps=100, batch_size=8, eval_every=50, progress=False)
      >>> round(float(res.params["w"]), 4), res.history["step"].tolist()
      (3.0, [50, 100])
    """
    return _run(
        "fit", "fit", loss_fn, optimizer, params, data, key, steps=steps,
        batch_size=batch_size, eval_every=eval_every, eval_fn=eval_fn, eval_data=eval_data,
        has_aux=has_aux, hyper=hyper, opt_state=opt_state, on_nonfinite=on_nonfinite,
        checkpoint_dir=checkpoint_dir, checkpoint_every=checkpoint_every,
        keep_checkpoints=keep_checkpoints, resume=resume, progress=progress,
        parallel=parallel, devices=devices,
    )


def fit_many(
    loss_fn: Callable,
    params,
    optimizer,
    data,
    keys,
    *,
    steps: int,
    batch_size: int | None = None,
    eval_every: int | None = None,
    eval_fn: Callable | None = None,
    eval_data=None,
    has_aux: bool = False,
    hyper=None,
    opt_state=None,
    on_nonfinite: str = "raise",
    checkpoint_dir: str | os.PathLike | None = None,
    checkpoint_every: int | None = None,
    keep_checkpoints: int | None = 3,
    resume: bool = False,
    progress: bool | str = "auto",
    parallel: str | None = None,
    devices: Sequence | None = None,
) -> FitResult:
    """:func:`fit` for ``n_runs`` runs at once: the same block function under ``jax.vmap``.

    Each run has its own key (so its own minibatches), its own params and, with
    ``hyper``, its own optimizer hyperparameters; all share ``data``, ``eval_data``
    and the settings. Run ``r`` gives the same result as ``fit`` called with
    ``keys[r]``, the ``r``-th params and ``hyper`` entries (up to floating-point
    reassociation of the batched computation).

    Args:
      loss_fn, optimizer, data, and the keyword settings: as in :func:`fit`.
      params: pytree whose leaves have a leading runs axis ``(n_runs, ...)``, e.g.
        ``jax.vmap(init)(jax.random.split(key, n_runs))``; to start every run from
        the same params, ``jax.tree.map(lambda p: jnp.broadcast_to(p, (n_runs,) +
        p.shape), params)``.
      keys: ``n_runs`` keys, ``jax.random.split(key, n_runs)`` (typed ``(n_runs,)``
        or raw ``(n_runs, 2)``).
      hyper: pytree of ``(n_runs, ...)`` arrays for the ``optimizer`` factory, e.g.
        ``{"lr": jnp.array([1e-3, 1e-2, ...])}`` with
        ``optimizer=lambda h: optax.adam(h["lr"])``. Combine seeds and
        hyperparameters by repeating them (a grid flattened to ``n_runs`` runs).
      opt_state: stacked ``(n_runs, ...)`` optimizer state, or None.
      eval_fn: as in :func:`fit`, evaluated per run (vmapped).
      parallel: ``None``, ``"runs"`` (the runs axis sharded over ``devices``;
        ``n_runs`` divisible by their number) or ``"data"`` (each run's batch axis
        sharded).

    Returns:
      :class:`FitResult` with stacked ``params`` and ``opt_state`` and history leaves
      of shape ``(n_runs, n_evals)``; :func:`convjax.train.mean_std` summarises them
      over seeds.

    Raises:
      As :func:`fit`; also ValueError when a leaf of ``params``, ``hyper`` or
      ``opt_state`` lacks the leading ``n_runs`` axis. :class:`NonFiniteError` names
      the step and the runs (``err.runs``).

    Example:
      >>> import jax, jax.numpy as jnp, optax
      >>> x = jnp.linspace(-1.0, 1.0, 32)[:, None]
      >>> data = {"x": x, "y": 3.0 * x}
      >>> loss = lambda p, b: jnp.mean((b["x"] * p["w"] - b["y"]) ** 2)
      >>> res = fit_many(loss, {"w": jnp.zeros((4,))}, lambda h: optax.sgd(h["lr"]), data,
      ...                jax.random.split(jax.random.key(0), 4), hyper={"lr": jnp.array(
      ...                [0.0, 0.1, 0.3, 0.5])}, steps=50, batch_size=8, progress=False)
      >>> res.history["loss"].shape, float(res.params["w"][0])
      ((4, 1), 0.0)
    """
    return _run(
        "fit_many", "fit_many", loss_fn, optimizer, params, data, keys, steps=steps,
        batch_size=batch_size, eval_every=eval_every, eval_fn=eval_fn, eval_data=eval_data,
        has_aux=has_aux, hyper=hyper, opt_state=opt_state, on_nonfinite=on_nonfinite,
        checkpoint_dir=checkpoint_dir, checkpoint_every=checkpoint_every,
        keep_checkpoints=keep_checkpoints, resume=resume, progress=progress,
        parallel=parallel, devices=devices,
    )
