"""Checkpoint glue of the training loops: what is saved between blocks and how a run resumes.

A checkpoint holds ``{"state": TrainState, "hyper": hyper, "history": {name: (n_blocks,
...)}}`` (see :mod:`convjax.train.checkpoint` for the files) and, as metadata, the run's
settings record, the planned ``steps``, the number of history blocks and their dtypes.
"""

from __future__ import annotations

import os

import jax
import jax.numpy as jnp
import numpy as np

from convjax.train import checkpoint as ckpt
from convjax.train import devices as dev
from convjax.train import sampling
from convjax.train._block import Settings
from convjax.train._validate import Options, shape_struct


def settings_record(o: Options, s: Settings, n_runs, data, has_eval, hyper) -> dict:
    """The settings a resumed call must repeat (JSON-serialisable)."""
    return {
        "kind": o.fn,
        "sampling": sampling.CONTRACT,
        "n_runs": n_runs,
        "batch_size": s.batch_size,
        "eval_every": s.eval_every,
        "on_nonfinite": s.on_nonfinite,
        "has_aux": s.has_aux,
        "has_eval": has_eval,
        "per_run_data": o.per_run_data,
        "data": [[list(np.shape(a)), str(jnp.result_type(a))] for a in jax.tree.leaves(data)],
        "hyper": jax.tree.map(lambda x: np.asarray(x).tolist(), hyper) if hyper is not None
        else None,
    }


def start(o: Options, s: Settings, state, hyper, record):
    """``(state, history, step)`` to start from: fresh, or the newest checkpoint's.

    Without ``resume`` the directory is created and must hold no checkpoint; with it the
    directory must exist, and an empty one starts from scratch.
    """
    fresh = state, {}, 0
    if o.checkpoint_dir is None:
        return fresh
    if not o.resume:
        os.makedirs(o.checkpoint_dir, exist_ok=True)
        if ckpt.list_checkpoints(o.checkpoint_dir):
            raise ValueError(
                f"{o.fn}: `checkpoint_dir` `{o.checkpoint_dir}` already holds checkpoints; "
                "pass `resume=True` to continue from the newest, or use an empty directory."
            )
        return fresh
    if not os.path.isdir(o.checkpoint_dir):
        raise FileNotFoundError(
            f"{o.fn}: `resume=True` but the checkpoint directory `{o.checkpoint_dir}` does "
            "not exist (create it to start a resumable run from scratch)."
        )
    latest = ckpt.latest_checkpoint(o.checkpoint_dir)
    if latest is None:
        return fresh
    return restore(o, s, latest, state, hyper, record)


def due(o: Options, step: int) -> bool:
    """Whether a checkpoint is written after the block that ends at ``step``."""
    return o.checkpoint_dir is not None and (step % o.checkpoint_every == 0 or step == o.steps)


def save(o: Options, step: int, state, hyper, history, record) -> None:
    """Writes the checkpoint of ``step`` (from process 0; every process gathers first)."""
    stacked = {k: np.stack(v) for k, v in history.items()}
    tree = {"state": dev.to_host(state), "hyper": dev.to_host(hyper), "history": stacked}
    meta = {
        "settings": record,
        "steps": o.steps,
        "n_blocks": len(history["step"]),
        "history": {k: str(v.dtype) for k, v in stacked.items()},
    }
    if jax.process_index() == 0:
        ckpt.save_checkpoint(o.checkpoint_dir, step, tree, metadata=meta,
                             keep=o.keep_checkpoints)


def restore(o: Options, s: Settings, path, state, hyper, record):
    """``(state, history, step)`` from the checkpoint at ``path``, checked against this call.

    The restored params must be finite, and so must the optimizer-state leaves that were
    finite at this call's initialisation (``s.checked_state``): a resume never starts
    from a bad state.
    """
    meta = ckpt.read_record(path)["metadata"]
    saved = meta.get("settings")
    if not isinstance(saved, dict) or "n_blocks" not in meta or "history" not in meta:
        raise ckpt.CheckpointError(
            f"{o.fn}: checkpoint `{path}` was not written by convjax.train."
        )
    _check_settings(o.fn, path, saved, record)
    tree, _ = ckpt.load_checkpoint(path, _template(state, hyper, meta))
    got_step = int(np.max(tree["state"].step))
    if got_step > o.steps:
        raise ValueError(
            f"{o.fn}: checkpoint `{path}` is at step {got_step}, beyond `steps` ({o.steps})."
        )
    _check_finite(o.fn, path, tree["state"], s.checked_state)
    history = {k: list(v) for k, v in tree["history"].items()}
    return tree["state"], history, got_step


def _check_finite(fn, path, state, checked_state) -> None:
    params = jax.tree_util.tree_leaves_with_path(state.params)
    opt = jax.tree_util.tree_leaves_with_path(state.opt_state)
    named = [("params", p, x, True) for p, x in params]
    named += [("opt_state", p, x, c) for (p, x), c in zip(opt, checked_state, strict=True)]
    for where, p, x, checked in named:
        if checked and not np.all(np.isfinite(x)):
            raise ckpt.CheckpointError(
                f"{fn}: checkpoint `{path}` holds NaN or inf in {where}"
                f"{jax.tree_util.keystr(p)}, which was finite at initialisation; it cannot "
                "be resumed from (resume from an earlier checkpoint, or start afresh)."
            )


def _check_settings(fn, path, saved: dict, record: dict) -> None:
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


def _template(state, hyper, meta):
    """The pytree of shapes and dtypes ``load_checkpoint`` checks the files against."""
    lead = tuple(np.shape(state.step))
    n_blocks = int(meta["n_blocks"])
    return {
        "state": jax.tree.map(lambda x: x if dev._is_key(x) else shape_struct(x), state),
        "hyper": None if hyper is None else jax.tree.map(shape_struct, hyper),
        "history": {  # "step" is shared by all runs: no runs axis
            k: jax.ShapeDtypeStruct((n_blocks,) + (() if k == "step" else lead), np.dtype(dtype))
            for k, dtype in meta["history"].items()
        },
    }
