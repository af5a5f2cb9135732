"""Training loops: :func:`fit` (one run) and :func:`fit_many` (runs vmapped together).

One run is a :class:`TrainState` carried through ``steps`` optimizer updates. The
steps between two evaluations (a *block* of ``eval_every`` steps) run inside one
``lax.scan`` in one jitted function, which also evaluates at the end of the block;
the block function is compiled once per configuration and called once per block,
so Python only sees the state between blocks (to record metrics, draw progress and
write checkpoints). :func:`fit_many` is the same block function under ``jax.vmap``
over a leading runs axis (seeds, initialisations, hyperparameters).

Sampling contract (what makes runs reproducible and resumable): with ``n`` examples
and batch size ``b``, an epoch is ``m = n // b`` updates; the update numbered ``s``
(0-based) uses the examples at positions ``(s % m) * b, ..., (s % m) * b + b - 1`` of
epoch ``s // m``'s permutation of ``[0, n)``, a keyed Feistel network with cycle
walking whose round keys come from ``fold_in(key, s // m)``::

    idx = convjax.train.sampling.batch_indices(key, s, n, b)

so a batch never repeats an example nor straddles two epochs, the ``n % b`` examples
left at the end of each epoch's permutation sit that epoch out, and the batch costs
``O(b)`` whatever ``n``. It depends only on the run's key and the step, never on where
blocks or restarts fall. :mod:`convjax.train.sampling` states the rule in full.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from convjax.train import _resume
from convjax.train import _validate as val
from convjax.train import devices as dev
from convjax.train import progress as prog
from convjax.train._block import (
    PROBLEMS,
    BlockCache,
    Settings,
    TrainState,
    finite_leaves,
    make_optimizer,
)

__all__ = ["FitResult", "NonFiniteError", "TrainState", "fit", "fit_many", "jsonable"]

# Compiled block functions; weakly keyed on the user's callables (see BlockCache).
_BLOCKS = BlockCache()


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
        end. Shapes ``(n_evals,)`` for fit; ``(n_runs, n_evals)`` for fit_many, except
        ``"step"``, which is the same for every run and stays ``(n_evals,)``.
        :func:`jsonable` turns it into lists for ``json.dump``.
      step: the number of updates done (an int).
      hyper: the ``hyper`` pytree passed (numpy arrays on the host; leaves
        ``(n_runs, ...)`` for fit_many), or None: each run's hyperparameters, e.g. for
        ``mean_std(res.history, by=res.hyper["lr"])`` to summarise runs per value.
    """

    params: Any
    opt_state: Any
    history: dict
    step: int
    hyper: Any = None


class NonFiniteError(FloatingPointError):
    """An update produced a NaN or infinity (``on_nonfinite="raise"``).

    Attributes:
      step: the number of the update that produced it, counted from 1 (the numbering of
        ``history["step"]``): the params and optimizer state are kept as they were
        after ``step - 1`` updates.
      runs: for fit_many, the runs hit in the block (the message names the first run
        that was hit at the lowest ``step``); None for fit.
      what: what was non-finite after that update, among :data:`PROBLEMS`: the loss,
        the gradient, the updated params, and optimizer-state leaves that were finite at
        initialisation.
    """

    def __init__(
        self,
        message: str,
        step: int,
        runs: tuple[int, ...] | None = None,
        what: tuple[str, ...] = (),
    ):
        super().__init__(message)
        self.step = step
        self.runs = runs
        self.what = what


def jsonable(tree):
    """Numpy/jax arrays in ``tree`` turned into (nested) lists, for ``json.dump``.

    Example:
      >>> import numpy as np
      >>> jsonable({"loss": np.array([0.5, 0.25]), "step": np.array([1, 2])})
      {'loss': [0.5, 0.25], 'step': [1, 2]}
    """
    return jax.tree.map(lambda x: np.asarray(x).tolist(), tree)


def _run(
    fn, loss_fn, optimizer, params, data, key, *, hyper, opt_state, eval_fn, eval_data, **settings
) -> FitResult:
    """Checks everything, then trains block by block; ``fn`` is "fit" or "fit_many"."""
    o = val.options(fn, fn == "fit_many", **settings)
    factory = val.check_optimizer(fn, optimizer, hyper)
    n_runs, n_data = _check_arrays(o, params, data, key, hyper, opt_state, eval_data)
    mesh, s = _settings(o, factory, n_runs, n_data)
    _validate(o, s, loss_fn, optimizer, eval_fn, params, opt_state, hyper, data, eval_data)
    state = _initial_state(o, optimizer, factory, params, opt_state, key, hyper)
    s = s._replace(checked_state=finite_leaves(state.opt_state))
    ident = _resume.identity(
        o, s, n_runs, key, data, eval_data, eval_fn is not None, optimizer, hyper, params
    )
    state, history, start, ident = _resume.start(o, s, state, hyper, ident)
    state, hyper, data, eval_data = _place(o, mesh, s, state, hyper, data, eval_data)
    block = _BLOCKS.get(loss_fn, optimizer, eval_fn, s, o.many)
    state, history, step = _train(o, block, state, hyper, data, eval_data, history, start, ident)
    out_history = {k: np.stack(v, axis=-1) for k, v in history.items()}
    return FitResult(state.params, state.opt_state, out_history, step, dev.to_host(hyper))


def _check_arrays(o: val.Options, params, data, key, hyper, opt_state, eval_data):
    """Checks the array arguments' shapes; returns ``(n_runs or None, n_data)``."""
    n_runs = val.n_runs_of(o.fn, key) if o.many else None
    val.check_key(o.fn, "keys" if o.many else "key", key, n_runs)
    val.check_params(o.fn, params)
    if n_runs is not None:
        for name, tree in (("params", params), ("hyper", hyper), ("opt_state", opt_state)):
            val.check_leading(o.fn, name, tree, n_runs)
        if o.per_run_data:
            why = "with `per_run_data=True` "
            val.check_leading(o.fn, "data", data, n_runs, why)
            val.check_leading(o.fn, "eval_data", eval_data, n_runs, why)
    n_data = val.check_data(o.fn, "data", data, True, o.per_run_data)
    assert n_data is not None  # required=True: an empty data tree raised
    val.check_data(o.fn, "eval_data", eval_data, False, o.per_run_data)
    val.check_batch_size(o.fn, o.batch_size, n_data)
    return n_runs, n_data


def _settings(o: val.Options, factory: bool, n_runs, n_data):
    """The device mesh (or None) and the block function's static settings."""
    mesh = batch_sharding = state_sharding = None
    if o.parallel is not None:
        mesh = dev.make_mesh(o.parallel, o.devices)
        n_dev = mesh.devices.size
        if o.parallel == "data":
            if (o.batch_size or n_data) % n_dev:
                raise ValueError(
                    f"{o.fn}: with `parallel='data'` the batch size ({o.batch_size or n_data}) "
                    f"must be divisible by the number of devices ({n_dev})."
                )
            batch_sharding, state_sharding = dev.leading(mesh), dev.replicated(mesh)
        else:
            if n_runs % n_dev:
                raise ValueError(
                    f"{o.fn}: with `parallel='runs'` the number of runs ({n_runs}) must be "
                    f"divisible by the number of devices ({n_dev})."
                )
            state_sharding = dev.leading(mesh)
    s = Settings(
        o.batch_size,
        n_data,
        o.eval_every,
        o.has_aux,
        o.on_nonfinite,
        factory,
        batch_sharding,
        state_sharding,
        o.per_run_data,
    )
    return mesh, s


def _validate(
    o: val.Options,
    s: Settings,
    loss_fn,
    optimizer,
    eval_fn,
    params,
    opt_state,
    hyper,
    data,
    eval_data,
) -> None:
    """Abstract checks of one run (the first, for fit_many): nothing is compiled."""
    one = functools.partial(jax.tree.map, functools.partial(val.shape_struct, drop_leading=o.many))
    run_data = one if o.per_run_data else (lambda t: t)
    val.validate(
        o.fn,
        loss_fn,
        optimizer,
        eval_fn,
        s,
        one(params),
        None if opt_state is None else one(opt_state),
        None if hyper is None else one(hyper),
        run_data(data),
        run_data(eval_data),
    )


def _initial_state(o: val.Options, optimizer, factory, params, opt_state, key, hyper):
    """The run's (or runs') state at step 0; params must be finite."""
    for (path, _), ok in zip(
        jax.tree_util.tree_leaves_with_path(params), finite_leaves(params), strict=True
    ):
        if not ok:
            raise ValueError(
                f"{o.fn}: `params` must be finite at initialisation, leaf "
                f"{val.path_str(path)} holds NaN or inf."
            )
    if opt_state is None:

        def init(p, h):
            return make_optimizer(optimizer, h, factory).init(p)

        opt_state = jax.vmap(init)(params, hyper) if o.many else init(params, hyper)
    lead = (int(np.shape(key)[0]),) if o.many else ()
    return TrainState(
        params=params,
        opt_state=opt_state,
        key=key,
        step=jnp.zeros(lead, jnp.int32),
        bad_step=jnp.full(lead, -1, jnp.int32),
    )


def _place(o: val.Options, mesh, s: Settings, state, hyper, data, eval_data):
    """Puts state, hyper and data on the devices (sharded as ``parallel`` asks)."""
    if o.parallel is None:
        to_dev = functools.partial(jax.tree.map, jnp.asarray)
        return tuple(to_dev(t) for t in (state, hyper, data, eval_data))
    rep = dev.replicated(mesh)
    per_run = s.state_sharding if o.parallel == "runs" else rep
    state = dev.put(state, s.state_sharding)
    data_sharding = per_run if o.per_run_data else rep
    return (
        state,
        dev.put(hyper, per_run),
        dev.put(data, data_sharding),
        dev.put(eval_data, data_sharding),
    )


def _train(o: val.Options, block, state, hyper, data, eval_data, history, start, ident):
    """Calls ``block`` until ``o.steps``; records, draws and checkpoints between blocks."""
    bar = prog.make_progress(o.progress, o.steps, initial=start, desc=o.fn)
    step = start
    try:
        while step < o.steps:
            end = min((step // o.eval_every + 1) * o.eval_every, o.steps)
            state, metrics, evals, what = block(state, hyper, jnp.int32(end), data, eval_data)
            bad = np.asarray(dev.to_host(state.bad_step))
            if (bad >= 0).any():
                raise _nonfinite_error(o.fn, bad, np.asarray(dev.to_host(what)), o.many)
            step = end
            row = {"step": np.int32(step), **dev.to_host(metrics), **dev.to_host(evals)}
            for k, v in row.items():
                history.setdefault(k, []).append(np.asarray(v))
            bar.update(step, {k: float(np.mean(v)) for k, v in row.items() if k != "step"})
            if _resume.due(o, step):
                _resume.save(o, step, state, hyper, history, ident)
    finally:
        bar.close()
    return state, history, step


def _nonfinite_error(fn, bad, what, many) -> NonFiniteError:
    """The error for the first bad update: ``bad`` its 1-based number, ``what`` its flags."""
    if many:
        runs = tuple(int(r) for r in np.flatnonzero(bad >= 0))
        run = min(runs, key=lambda r: (bad[r], r))
        first, flags = int(bad[run]), int(what[run])
        where = f" of run {run} (runs hit in this block: {list(runs)})"
    else:
        runs, first, flags, where = None, int(bad), int(what), ""
    kinds = tuple(k for i, k in enumerate(PROBLEMS) if flags >> i & 1)
    listed = ", ".join(kinds[:-1]) + (" and " if len(kinds) > 1 else "") + kinds[-1]
    return NonFiniteError(
        f"{fn}: update {first}{where} produced non-finite values (NaN or inf) in {listed}. "
        f"Updates are numbered from 1, as history['step']; params and optimizer state are "
        f"kept as they were after {first - 1} updates, and nothing from this block is "
        "checkpointed. Lower the learning rate, check the data and the optimizer, or pass "
        "on_nonfinite='skip' to skip such updates.",
        step=first,
        runs=runs,
        what=kinds,
    )


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
    allow_changes: Sequence[str] = (),
    progress: bool | str = "auto",
    parallel: str | None = None,
    devices: Sequence | None = None,
) -> FitResult:
    """Trains ``params`` for ``steps`` optimizer updates on minibatches of ``data``.

    The steps of each block of ``eval_every`` run inside one ``lax.scan`` of one
    jitted function (compiled once per configuration: changing ``steps`` or calling
    again with the same ``loss_fn``, ``optimizer`` and ``eval_fn`` objects does not
    recompile; the cache holds these objects only weakly, so the compiled function is
    freed with them); after each block the metrics are recorded, the progress bar drawn
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
        minibatch of update ``s`` (0-based) is ``data[batch_indices(key, s, n,
        batch_size)]`` (:func:`convjax.train.sampling.batch_indices`).
      steps: number of optimizer updates, >= 1.
      batch_size: examples per update, ``<= n``; ``None`` (default) uses all of
        ``data`` every step (full-batch gradient descent, no sampling). Epochs are
        ``n // batch_size`` updates, each a slice of that epoch's random permutation
        of the examples: no example repeats within an epoch, and the ``n %
        batch_size`` examples left at the end of the permutation sit the epoch out
        (a different set every epoch). Each batch costs ``O(batch_size)``.
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
      on_nonfinite: what to do with an update that produces a NaN or inf in the loss,
        the gradient, the updated params, or an optimizer-state leaf that was finite at
        initialisation (leaves that start non-finite, like the ``inf`` best value of
        ``optax.contrib.reduce_on_plateau``, are not checked). Checked inside the
        scan at every update. ``"raise"`` (default): stop with
        :class:`NonFiniteError` after the block, naming the update (counted from 1,
        as ``history["step"]``) and what was non-finite; nothing from that block is
        checkpointed. ``"skip"``: keep params and optimizer state as they were before
        such updates, count them in ``history["skipped"]`` and leave them out of the
        block's mean loss (a block whose updates were all skipped records NaN).
        Either way no non-finite value that was not there at initialisation reaches
        the params, the optimizer state or a checkpoint.
      checkpoint_dir: directory for checkpoints (created if needed when
        ``resume=False``, which then requires it to hold no checkpoint).
      checkpoint_every: checkpoint every this many steps, a multiple of
        ``eval_every`` (default: every block); the final step is always saved.
      keep_checkpoints: keep the newest this many (``None``: all).
      resume: continue from the newest checkpoint in ``checkpoint_dir`` (which must
        exist; when it holds none, training starts from scratch, so the same command
        can be rerun after a crash). The checkpoint must belong to this run: same
        settings, key, data and eval data (fingerprints of sampled elements), and
        optimizer (fingerprint of its state layout and of its first updates on probe
        gradients); else :class:`CheckpointError` names what differs. ``steps`` may
        grow. The result is bitwise identical to an uninterrupted run on the same
        machine.
      allow_changes: with ``resume``, names among ``"key"``, ``"data"``,
        ``"eval_data"``, ``"optimizer"`` that may differ from the checkpoint's run on
        purpose: e.g. ``("optimizer",)`` to continue with a new learning rate (the
        optimizer state must keep its layout; ``hyper`` may change too), ``("data",)``
        to continue on other data (its number of examples may change), ``("key",)``
        to draw later minibatches from this call's key. Each resume that used it is
        recorded in the checkpoints' metadata (``"changes"``: step and what differed).
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
      CheckpointError: a corrupted checkpoint, one written with other shapes or
        settings, by another run (key, data, optimizer) unless ``allow_changes`` names
        the difference, or one holding non-finite values (the message names the file).
      ValueError: also params that hold NaN or inf at initialisation.
      NonFiniteError: with ``on_nonfinite="raise"``, an update that produced NaN/inf.

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
        "fit",
        loss_fn,
        optimizer,
        params,
        data,
        key,
        steps=steps,
        batch_size=batch_size,
        eval_every=eval_every,
        eval_fn=eval_fn,
        eval_data=eval_data,
        has_aux=has_aux,
        hyper=hyper,
        opt_state=opt_state,
        on_nonfinite=on_nonfinite,
        checkpoint_dir=checkpoint_dir,
        checkpoint_every=checkpoint_every,
        keep_checkpoints=keep_checkpoints,
        resume=resume,
        allow_changes=allow_changes,
        progress=progress,
        parallel=parallel,
        devices=devices,
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
    allow_changes: Sequence[str] = (),
    progress: bool | str = "auto",
    parallel: str | None = None,
    devices: Sequence | None = None,
    per_run_data: bool = False,
) -> FitResult:
    """:func:`fit` for ``n_runs`` runs at once: the same block function under ``jax.vmap``.

    Each run has its own key (so its own minibatches), its own params and, with
    ``hyper``, its own optimizer hyperparameters; all share the settings and, unless
    ``per_run_data=True``, ``data`` and ``eval_data``. Run ``r`` gives the same result
    as ``fit`` called with ``keys[r]``, the ``r``-th params and ``hyper`` entries (and
    ``data[r]``, ``eval_data[r]`` with ``per_run_data``), up to floating-point
    reassociation of the batched computation.

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
        ``n_runs`` divisible by their number; per-run data is sharded with it) or
        ``"data"`` (each run's batch axis sharded).
      per_run_data: False (default): every run trains on all of ``data``. True: every
        leaf of ``data`` and of ``eval_data`` has a leading runs axis,
        ``(n_runs, n, ...)``, and run ``r`` trains on ``data[r]`` (its ``n`` examples,
        the same ``n`` for all runs) and is evaluated on ``eval_data[r]``; e.g. a
        different training sample per seed in a sample-size study.

    Returns:
      :class:`FitResult` with stacked ``params`` and ``opt_state``, history leaves of
      shape ``(n_runs, n_evals)`` (``history["step"]``: ``(n_evals,)``, shared by all
      runs) and ``hyper`` as passed (on the host); :func:`convjax.train.mean_std`
      summarises the history over seeds, per hyperparameter value with
      ``by=res.hyper[...]``.

    Raises:
      As :func:`fit`; also ValueError when a leaf of ``params``, ``hyper``,
      ``opt_state`` (or, with ``per_run_data``, ``data`` and ``eval_data``) lacks the
      leading ``n_runs`` axis. :class:`NonFiniteError` names
      the step and the runs (``err.runs``).

    Example:
      >>> import jax, jax.numpy as jnp, optax
      >>> x = jnp.linspace(-1.0, 1.0, 32)[:, None]
      >>> data = {"x": x, "y": 3.0 * x}
      >>> loss = lambda p, b: jnp.mean((b["x"] * p["w"] - b["y"]) ** 2)
      >>> res = fit_many(loss, {"w": jnp.zeros((4,))}, lambda h: optax.sgd(h["lr"]), data,
      ...                jax.random.split(jax.random.key(0), 4), hyper={"lr": jnp.array(
      ...                [0.0, 0.25, 0.5, 0.75])}, steps=50, batch_size=8, progress=False)
      >>> res.history["loss"].shape, res.history["step"].tolist(), float(res.params["w"][0])
      ((4, 1), [50], 0.0)
      >>> res.hyper["lr"].tolist()
      [0.0, 0.25, 0.5, 0.75]
    """
    return _run(
        "fit_many",
        loss_fn,
        optimizer,
        params,
        data,
        keys,
        steps=steps,
        batch_size=batch_size,
        eval_every=eval_every,
        eval_fn=eval_fn,
        eval_data=eval_data,
        has_aux=has_aux,
        hyper=hyper,
        opt_state=opt_state,
        on_nonfinite=on_nonfinite,
        checkpoint_dir=checkpoint_dir,
        checkpoint_every=checkpoint_every,
        keep_checkpoints=keep_checkpoints,
        resume=resume,
        allow_changes=allow_changes,
        progress=progress,
        parallel=parallel,
        devices=devices,
        per_run_data=per_run_data,
    )
