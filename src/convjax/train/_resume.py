"""Checkpoint glue of the training loops: what is saved between blocks and how a run resumes.

A checkpoint holds ``{"state": TrainState, "hyper": hyper, "history": {name: (n_blocks,
...)}}`` (see :mod:`convjax.train.checkpoint` for the files) and, as metadata, the run's
:class:`Identity` (settings record, fingerprints of key, data and optimizer, deliberate
changes so far), the planned ``steps``, the number of history blocks and their dtypes.
A resume refuses a checkpoint whose identity differs from the call's, except in what
``allow_changes`` names.
"""

from __future__ import annotations

import os
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from convjax.train import _fingerprint as fp
from convjax.train import checkpoint as ckpt
from convjax.train import devices as dev
from convjax.train import sampling
from convjax.train._block import Settings
from convjax.train._validate import Options, shape_struct


class Identity(NamedTuple):
    """What a checkpoint records about its run, compared when resuming."""

    settings: dict
    fingerprints: dict
    changes: list


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


def identity(o: Options, s: Settings, n_runs, key, data, eval_data, has_eval, optimizer,
             hyper, params) -> Identity | None:
    """This call's :class:`Identity` (None without a ``checkpoint_dir``: nothing to save)."""
    if o.checkpoint_dir is None:
        return None
    prints = {
        "key": fp.keys(key, o.many),
        "data": fp.data(data),
        "eval_data": fp.data(eval_data),
        "optimizer": fp.optimizer(optimizer, s.factory, hyper, params, o.many),
    }
    return Identity(settings_record(o, s, n_runs, data, has_eval, hyper), prints, [])


def start(o: Options, s: Settings, state, hyper, ident: Identity | None):
    """``(state, history, step, identity)`` to start from: fresh, or the newest checkpoint's.

    Without ``resume`` the directory is created and must hold no checkpoint; with it the
    directory must exist, and an empty one starts from scratch.
    """
    fresh = state, {}, 0, ident
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
    return restore(o, s, latest, state, hyper, ident)


def due(o: Options, step: int) -> bool:
    """Whether a checkpoint is written after the block that ends at ``step``."""
    return o.checkpoint_dir is not None and (step % o.checkpoint_every == 0 or step == o.steps)


def save(o: Options, step: int, state, hyper, history, ident: Identity) -> None:
    """Writes the checkpoint of ``step`` (from process 0; every process gathers first)."""
    stacked = {k: np.stack(v) for k, v in history.items()}
    tree = {"state": dev.to_host(state), "hyper": dev.to_host(hyper), "history": stacked}
    meta = {
        "settings": ident.settings,
        "fingerprints": ident.fingerprints,
        "changes": ident.changes,
        "steps": o.steps,
        "n_blocks": len(history["step"]),
        "history": {k: str(v.dtype) for k, v in stacked.items()},
    }
    if jax.process_index() == 0:
        ckpt.save_checkpoint(o.checkpoint_dir, step, tree, metadata=meta,
                             keep=o.keep_checkpoints)


def restore(o: Options, s: Settings, path, state, hyper, ident: Identity):
    """``(state, history, step, identity)`` from the checkpoint at ``path``.

    The checkpoint must belong to this run (:func:`_compare`), and its params and the
    optimizer-state leaves that were finite at this call's initialisation
    (``s.checked_state``) must be finite: a resume never starts from a bad state.
    """
    meta = ckpt.read_record(path)["metadata"]
    saved = Identity(*(ckpt.metadata_field(path, meta, k, dict if k != "changes" else list)
                       for k in Identity._fields))
    n_blocks = ckpt.metadata_field(path, meta, "n_blocks", int, minimum=0)
    dtypes = ckpt.metadata_field(path, meta, "history", dict)
    _compare_settings(o, path, saved, ident)
    tree, _ = ckpt.load_checkpoint(path, _template(state, hyper, n_blocks, dtypes))
    allowed = _compare(o, path, saved, ident)
    got_step = int(np.max(tree["state"].step))
    if got_step > o.steps:
        raise ValueError(
            f"{o.fn}: checkpoint `{path}` is at step {got_step}, beyond `steps` ({o.steps})."
        )
    _check_finite(o.fn, path, tree["state"], s.checked_state)
    restored = tree["state"]
    if "key" in allowed:  # continue with this call's key
        restored = restored._replace(key=state.key)
    changes = saved.changes + ([{"step": got_step, "changed": allowed}] if allowed else [])
    history = {k: list(v) for k, v in tree["history"].items()}
    return restored, history, got_step, ident._replace(changes=changes)


def _exempt(o: Options) -> set:
    """Settings entries a named change may alter: hyper with the optimizer, data shapes."""
    allow = set(o.allow_changes)
    return {k for k, name in (("hyper", "optimizer"), ("data", "data")) if name in allow}


def _compare_settings(o: Options, path, saved: Identity, now: Identity) -> None:
    """Refuses a checkpoint written with other settings (except what a change may alter)."""
    exempt = _exempt(o)
    settings = [f"{k}: checkpoint {saved.settings.get(k)!r}, this call {v!r}"
                for k, v in now.settings.items()
                if saved.settings.get(k) != v and k not in exempt]
    if settings:
        raise ckpt.CheckpointError(
            f"{o.fn}: checkpoint `{path}` does not match this call's settings: "
            + "; ".join(settings) + "."
        )


def _compare(o: Options, path, saved: Identity, now: Identity) -> dict:
    """``{name: what differs}`` between the checkpoint's run and this call, all allowed.

    Raises:
      CheckpointError: a difference that ``allow_changes`` does not name, or an
        optimizer change that alters the optimizer state's layout.
    """
    allow, exempt = set(o.allow_changes), _exempt(o)
    diffs = _differences(saved, now)
    if "optimizer" in diffs and diffs["optimizer"].startswith("its state"):
        raise ckpt.CheckpointError(
            f"{o.fn}: checkpoint `{path}`: optimizer: {diffs['optimizer']}; the optimizer "
            "state cannot be carried over (a deliberate change must keep its layout, e.g. "
            "a new learning rate)."
        )
    refused = {k: v for k, v in diffs.items() if k not in allow}
    if refused:
        raise ckpt.CheckpointError(
            f"{o.fn}: checkpoint `{path}` was written by another run: "
            + "; ".join(f"{k}: {v}" for k, v in refused.items())
            + ". Resume with the same key, data, optimizer and settings, or pass "
            f"allow_changes={tuple(sorted(refused))!r} to continue with these deliberately."
        )
    if "hyper" in exempt and saved.settings.get("hyper") != now.settings.get("hyper"):
        diffs.setdefault("optimizer", "hyper differs")
    if "data" in exempt and saved.settings.get("data") != now.settings.get("data"):
        diffs.setdefault("data", "shapes differ")
    return diffs


def _differences(saved: Identity, now: Identity) -> dict:
    """``{name: what differs}`` over the fingerprints."""
    a, b = saved.fingerprints, now.fingerprints
    out = {}
    if a.get("key") != b["key"]:
        runs = [r for r, (x, y) in enumerate(zip(a.get("key") or [], b["key"], strict=False))
                if x != y]
        out["key"] = ("the checkpoint's key differs from this call's" if len(b["key"]) == 1
                      else f"the checkpoint's keys differ from this call's (runs {runs})")
    for name in ("data", "eval_data"):
        if a.get(name) != b[name]:
            out[name] = _data_difference(a.get(name) or [], b[name])
    saved_opt = a.get("optimizer")
    problem = ("not recorded" if not isinstance(saved_opt, dict)
               else fp.optimizer_differs(saved_opt, b["optimizer"]))
    if problem:
        out["optimizer"] = problem
    return out


def _data_difference(saved: list, now: list) -> str:
    if [x[:3] for x in saved] != [x[:3] for x in now]:
        return "its leaves, shapes or dtypes differ"
    leaves = [x[0] for x, y in zip(saved, now, strict=True) if x[3] != y[3]]
    return f"leaf {', '.join(leaves)} has other content (sampled elements differ)"


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


def _template(state, hyper, n_blocks: int, dtypes: dict):
    """The pytree of shapes and dtypes ``load_checkpoint`` checks the files against."""
    lead = tuple(np.shape(state.step))
    return {
        "state": jax.tree.map(lambda x: x if dev._is_key(x) else shape_struct(x), state),
        "hyper": None if hyper is None else jax.tree.map(shape_struct, hyper),
        "history": {  # "step" is shared by all runs: no runs axis
            k: jax.ShapeDtypeStruct((n_blocks,) + (() if k == "step" else lead), np.dtype(dtype))
            for k, dtype in dtypes.items()
        },
    }
