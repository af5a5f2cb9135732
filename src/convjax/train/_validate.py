"""Checks of :func:`convjax.train.fit` / ``fit_many`` arguments, all before anything compiles.

:func:`options` normalises the keyword settings once; the ``check_*`` functions look at
the arrays' shapes and dtypes; :func:`validate` traces the loss, the optimizer and the
evaluation of one run abstractly (``jax.eval_shape``) and reports what does not fit,
naming the function and the argument.
"""

from __future__ import annotations

import os
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from convjax import _checks
from convjax.train import devices as dev
from convjax.train import progress as prog
from convjax.train._block import Settings, apply_optimizer, make_optimizer

NONFINITE = ("raise", "skip")
CHANGES = ("key", "data", "eval_data", "optimizer")
"""What ``allow_changes`` may name."""


class Options(NamedTuple):
    """The keyword settings of one call, normalised."""

    fn: str
    many: bool
    steps: int
    eval_every: int
    batch_size: int | None
    has_aux: bool
    on_nonfinite: str
    progress: str
    parallel: str | None
    devices: Any
    checkpoint_dir: str | None
    checkpoint_every: int | None
    keep_checkpoints: int | None
    resume: bool
    per_run_data: bool = False
    allow_changes: tuple[str, ...] = ()


def options(
    fn,
    many,
    *,
    steps,
    eval_every,
    batch_size,
    has_aux,
    on_nonfinite,
    progress,
    parallel,
    devices,
    checkpoint_dir,
    checkpoint_every,
    keep_checkpoints,
    resume,
    per_run_data=False,
    allow_changes=(),
) -> Options:
    """Checks the keyword settings that need no array and returns them normalised."""
    steps = _checks.as_positive_int(fn, "steps", steps)
    if eval_every is None:
        eval_every = steps
    eval_every = _checks.as_positive_int(fn, "eval_every", eval_every)
    if eval_every > steps:
        raise ValueError(f"{fn}: `eval_every` ({eval_every}) must be <= `steps` ({steps}).")
    if batch_size is not None:
        batch_size = _checks.as_positive_int(fn, "batch_size", batch_size)
    on_nonfinite = _checks.check_choice(fn, "on_nonfinite", on_nonfinite, NONFINITE)
    mode = prog.progress_mode(fn, progress)
    if parallel is not None:
        allowed = dev.PARALLEL if many else ("data",)
        parallel = _checks.check_choice(fn, "parallel", parallel, allowed)
    checkpoint_dir, checkpoint_every = _checkpoint_options(
        fn, checkpoint_dir, checkpoint_every, resume, eval_every
    )
    if keep_checkpoints is not None:
        keep_checkpoints = _checks.as_positive_int(fn, "keep_checkpoints", keep_checkpoints)
    if not isinstance(per_run_data, (bool, np.bool_)):
        raise TypeError(f"{fn}: `per_run_data` must be True or False, got {per_run_data!r}.")
    allow_changes = _allow_changes(fn, allow_changes, resume)
    return Options(
        fn,
        many,
        steps,
        eval_every,
        batch_size,
        bool(has_aux),
        on_nonfinite,
        mode,
        parallel,
        devices,
        checkpoint_dir,
        checkpoint_every,
        keep_checkpoints,
        bool(resume),
        bool(per_run_data),
        allow_changes,
    )


def _allow_changes(fn, allow_changes, resume) -> tuple[str, ...]:
    names = CHANGES
    if isinstance(allow_changes, str) or not isinstance(allow_changes, (tuple, list)):
        raise TypeError(
            f"{fn}: `allow_changes` must be a tuple of names among {names}, got {allow_changes!r}."
        )
    bad = [c for c in allow_changes if c not in names]
    if bad:
        raise ValueError(
            f"{fn}: `allow_changes` may name {', '.join(map(repr, names))}, got {bad[0]!r}."
        )
    if allow_changes and not resume:
        raise ValueError(f"{fn}: `allow_changes` needs `resume=True` (it is about resuming).")
    return tuple(sorted(set(allow_changes)))


def _checkpoint_options(fn, checkpoint_dir, checkpoint_every, resume, eval_every):
    if checkpoint_dir is None:
        if resume:
            raise ValueError(f"{fn}: `resume=True` needs a `checkpoint_dir`.")
        if checkpoint_every is not None:
            raise ValueError(f"{fn}: `checkpoint_every` needs a `checkpoint_dir`.")
        return None, None
    if checkpoint_every is None:
        checkpoint_every = eval_every
    checkpoint_every = _checks.as_positive_int(fn, "checkpoint_every", checkpoint_every)
    if checkpoint_every % eval_every:
        raise ValueError(
            f"{fn}: `checkpoint_every` ({checkpoint_every}) must be a multiple of "
            f"`eval_every` ({eval_every}): checkpoints are written between blocks."
        )
    return os.fspath(checkpoint_dir), checkpoint_every


def check_optimizer(fn: str, optimizer, hyper) -> bool:
    """Whether ``optimizer`` is a factory ``optimizer(hyper)``; raises on a wrong pairing."""
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
    return factory


def path_str(p) -> str:
    """A pytree path as jax prints it (``(root)`` for the root)."""
    return jax.tree_util.keystr(p) or "(root)"


def shape_struct(x, drop_leading: bool = False):
    """``jax.ShapeDtypeStruct`` of ``x`` (without its leading axis if ``drop_leading``)."""
    shape = tuple(np.shape(x))
    return jax.ShapeDtypeStruct(shape[1:] if drop_leading else shape, jnp.result_type(x))


def check_data(fn: str, name: str, data, required: bool, per_run: bool = False) -> int | None:
    """The shared example-axis size of ``data``; None for an empty optional tree.

    The example axis is the leading one, or the second with ``per_run`` (after the runs
    axis, which :func:`check_leading` checks first).
    """
    leaves = jax.tree_util.tree_leaves_with_path(data)
    if not leaves:
        if required:
            raise ValueError(f"{fn}: `{name}` must be a pytree of arrays, got no arrays: {data!r}.")
        return None
    sizes = {}
    for p, leaf in leaves:
        if not hasattr(leaf, "shape") or not hasattr(leaf, "dtype"):
            raise TypeError(
                f"{fn}: `{name}` must be a pytree of arrays, leaf {path_str(p)} is a "
                f"{type(leaf).__name__}."
            )
        if np.ndim(leaf) < 1 + per_run:
            raise ValueError(
                f"{fn}: every leaf of `{name}` needs a leading example axis"
                f"{' after its runs axis (per_run_data=True)' if per_run else ''}, leaf "
                f"{path_str(p)} has shape {tuple(np.shape(leaf))}."
            )
        sizes[path_str(p)] = np.shape(leaf)[int(per_run)]
    if len(set(sizes.values())) != 1:
        raise ValueError(
            f"{fn}: the leaves of `{name}` must share their "
            f"{'second' if per_run else 'leading'} (example) axis, got "
            f"sizes {', '.join(f'{k}: {v}' for k, v in sizes.items())}."
        )
    n = next(iter(sizes.values()))
    if n < 1:
        raise ValueError(f"{fn}: `{name}` holds no examples (leading axis of size 0).")
    return n


def check_key(fn: str, name: str, key, n_runs: int | None) -> None:
    """``key`` is one PRNG key (``n_runs`` None) or one per run, typed or raw."""
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
        typed, raw = ("()", "(2,)") if n_runs is None else (f"({n_runs},)", f"({n_runs}, 2)")
        what = "one PRNG key" if n_runs is None else f"one PRNG key per run ({n_runs} runs)"
        raise ValueError(
            f"{fn}: `{name}` must be {what}: a typed key array of shape {typed} "
            f"(jax.random.key) or a raw uint32 array of shape {raw} (jax.random.PRNGKey), "
            f"got {getattr(key, 'dtype', type(key).__name__)} of shape {tuple(np.shape(key))}."
        )


def n_runs_of(fn: str, keys) -> int:
    """The number of runs of ``fit_many``: the leading axis of ``keys``."""
    if not hasattr(keys, "shape") or np.ndim(keys) < 1:
        raise ValueError(
            f"{fn}: `keys` must hold one key per run (e.g. jax.random.split(key, n)), got "
            f"shape {tuple(np.shape(keys))}."
        )
    return int(np.shape(keys)[0])


def check_leading(fn: str, name: str, tree, n_runs: int, why: str = "") -> None:
    """Every leaf of ``tree`` has a leading runs axis of size ``n_runs``."""
    for p, leaf in jax.tree_util.tree_leaves_with_path(tree):
        if np.ndim(leaf) < 1 or np.shape(leaf)[0] != n_runs:
            raise ValueError(
                f"{fn}: {why}every leaf of `{name}` must have a leading runs axis of size "
                f"{n_runs} (the number of keys), leaf {path_str(p)} has shape "
                f"{tuple(np.shape(leaf))}."
            )


def check_params(fn: str, params) -> None:
    """``params`` is a non-empty pytree of floating arrays."""
    leaves = jax.tree_util.tree_leaves_with_path(params)
    if not leaves:
        raise ValueError(f"{fn}: `params` holds no arrays: {params!r}.")
    for p, leaf in leaves:
        if not hasattr(leaf, "dtype") or not jnp.issubdtype(jnp.result_type(leaf), jnp.floating):
            what = f"dtype {leaf.dtype}" if hasattr(leaf, "dtype") else type(leaf).__name__
            raise TypeError(
                f"{fn}: every leaf of `params` must be a floating array (it is "
                f"differentiated), leaf {path_str(p)} has {what}."
            )


def check_batch_size(fn: str, batch_size: int | None, n_data: int) -> None:
    if batch_size is not None and batch_size > n_data:
        raise ValueError(
            f"{fn}: `batch_size` ({batch_size}) is larger than the dataset ({n_data} "
            "examples); minibatches are sampled without replacement."
        )


def same_structure(a, b) -> str | None:
    """None if ``a`` and ``b`` agree in structure, shapes and dtypes, else a description."""
    la, ta = jax.tree_util.tree_flatten_with_path(a)
    lb, tb = jax.tree_util.tree_flatten_with_path(b)
    if ta != tb:  # type: ignore[operator]  # PyTreeDef defines __ne__ at runtime
        return f"tree structures differ:\n  {ta}\nvs\n  {tb}"
    for (p, x), (_, y) in zip(la, lb, strict=True):
        if np.shape(x) != np.shape(y) or jnp.result_type(x) != jnp.result_type(y):
            return (
                f"leaf {path_str(p)} has shape {tuple(np.shape(x))} and dtype "
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


def validate(
    fn, loss_fn, optimizer, eval_fn, s: Settings, params, opt_state, hyper, data, eval_data
) -> None:
    """Abstract checks of one run: traced under ``jax.eval_shape``, nothing is compiled.

    ``params``, ``opt_state`` and ``hyper`` are one run's shape structs; ``data`` and
    ``eval_data`` one run's data (leading example axis first).
    """
    batch = jax.tree.map(
        lambda a: jax.ShapeDtypeStruct(
            ((s.batch_size or s.n_data),) + tuple(np.shape(a))[1:], jnp.result_type(a)
        ),
        data,
    )
    eval_data = jax.tree.map(shape_struct, eval_data)

    def check(params, opt_state, hyper, batch, eval_data):
        loss = _check_loss(fn, loss_fn, s.has_aux, params, batch)
        _check_optimizer_fits(
            fn, make_optimizer(optimizer, hyper, s.factory), s.factory, params, opt_state, loss
        )
        if eval_fn is not None:
            _check_scalar_dict(fn, "`eval_fn(params, eval_data)`", eval_fn(params, eval_data))

    jax.eval_shape(check, params, opt_state, hyper, batch, eval_data)


def _check_loss(fn, loss_fn, has_aux, params, batch):
    """The (traced) loss of ``loss_fn(params, batch)``, checked to be a floating scalar."""
    out = loss_fn(params, batch)
    if has_aux:
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
        what = f"shape {np.shape(out)}" if hasattr(out, "shape") else type(out).__name__
        raise ValueError(
            f"{fn}: `loss_fn(params, batch)` must return a scalar"
            f"{' (with has_aux=True: (scalar, dict))' if not has_aux else ''}, got {what}."
        )
    if not jnp.issubdtype(out.dtype, jnp.floating):
        raise TypeError(f"{fn}: `loss_fn` must return a floating scalar, got dtype {out.dtype}.")
    return out


def _check_optimizer_fits(fn, opt, factory, params, opt_state, loss) -> None:
    """``opt`` initialises on ``params`` and updates without changing shapes or dtypes."""
    if factory and not isinstance(opt, optax.GradientTransformation):
        raise TypeError(
            f"{fn}: `optimizer(hyper)` must return an optax.GradientTransformation, got "
            f"{type(opt).__name__}."
        )
    init_state = _call(fn, "optimizer.init(params)", opt.init, params)
    if opt_state is not None:
        problem = same_structure(opt_state, init_state)
        if problem:
            raise ValueError(
                f"{fn}: `opt_state` does not match `optimizer.init(params)`: {problem}."
            )
    updates, new_state = _call(
        fn,
        "optimizer.update(grads, state, params)",
        apply_optimizer,
        opt,
        params,
        init_state,
        params,
        loss,
    )
    problem = same_structure(updates, params)
    if problem:
        raise ValueError(f"{fn}: the optimizer's updates do not match `params`: {problem}.")
    problem = same_structure(new_state, init_state)
    if problem:
        raise ValueError(
            f"{fn}: the optimizer state changes structure, shape or dtype in an update "
            f"(params dtype vs optimizer hyperparameter dtype?): {problem}."
        )


def _call(fn, what, f, *args):
    try:
        return f(*args)
    except Exception as e:  # re-raised with context: which argument does not fit.
        raise ValueError(
            f"{fn}: `optimizer` does not fit `params`: {what} raised {type(e).__name__}: {e}"
        ) from e
