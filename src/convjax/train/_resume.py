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
        "hyper": jax.tree.map(lambda x: np.asarray(x).tolist(), hyper)
        if hyper is not None
        else None,
    }


def identity(
    o: Options, s: Settings, n_runs, key, data, eval_data, has_eval, optimizer, hyper, params
) -> Identity | None:
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
    fresh: tuple = (state, {}, 0, ident)
    if o.checkpoint_dir is None or ident is None:  # ident is None without a directory
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
    if o.checkpoint_dir is None or o.checkpoint_every is None:
        return False
    return step % o.checkpoint_every == 0 or step == o.steps


def save(o: Options, step: int, state, hyper, history, ident: Identity) -> None:
    """Writes the checkpoint of ``step``; called by every process, returns once it is committed.

    When the state spans several processes (``parallel`` over a multi-process mesh) the
    save is collective: each process writes the shards it owns, and no process gathers
    another's (:func:`convjax.train.checkpoint.save_checkpoint`). Otherwise process 0
    writes everything, and with several processes all wait at a barrier until it has
    committed, so that none can resume from an older checkpoint than another.
    """
    stacked = {k: np.stack(v) for k, v in history.items()}
    tree = {"state": state, "hyper": hyper, "history": stacked}
    meta = {
        "settings": ident.settings,
        "fingerprints": ident.fingerprints,
        "changes": ident.changes,
        "steps": o.steps,
        "n_blocks": len(history["step"]),
        "history": {k: str(v.dtype) for k, v in stacked.items()},
    }
    assert o.checkpoint_dir is not None  # due() is False without a directory
    spans = _spans(tree)
    if spans or jax.process_index() == 0:
        ckpt.save_checkpoint(o.checkpoint_dir, step, tree, metadata=meta, keep=o.keep_checkpoints)
    if not spans and jax.process_count() > 1:
        from jax.experimental import multihost_utils

        # Named by the step only: hosts may mount the directory under different paths.
        multihost_utils.sync_global_devices(f"convjax checkpoint of step {step}")


def _spans(tree) -> bool:
    """Whether a leaf of ``tree`` is a ``jax.Array`` with shards in other processes."""
    return any(
        isinstance(x, jax.Array) and not x.is_fully_addressable for x in jax.tree.leaves(tree)
    )


def restore(o: Options, s: Settings, path, state, hyper, ident: Identity):
    """``(state, history, step, identity)`` from the checkpoint at ``path``.

    The step is the record's (its file name's); every run's ``state.step`` and the last
    ``history["step"]`` must equal it. The checkpoint must belong to this run
    (:func:`_compare`), and its params and the optimizer-state leaves that were finite
    at this call's initialisation (``s.checked_state``) must be finite: a resume never
    starts from a bad state. With ``parallel``, state and hyper come back sharded as
    the loop places them, each process reading only the shards its devices hold.
    """
    record = ckpt.read_record(path)
    meta, step = record["metadata"], record["step"]
    saved = Identity(
        *(
            ckpt.metadata_field(path, meta, k, dict if k != "changes" else list)
            for k in Identity._fields
        )
    )
    n_blocks = ckpt.metadata_field(path, meta, "n_blocks", int, minimum=0)
    dtypes = _history_dtypes(path, ckpt.metadata_field(path, meta, "history", dict))
    _compare_settings(o, path, saved, ident)
    like = _template(state, hyper, n_blocks, dtypes, s.state_sharding)
    tree, _ = ckpt.load_checkpoint(path, like)
    allowed = _compare(o, path, saved, ident)
    if step > o.steps:
        raise ValueError(
            f"{o.fn}: checkpoint `{path}` is at step {step}, beyond `steps` ({o.steps})."
        )
    _check_steps(o.fn, path, step, tree)
    _check_finite(o.fn, path, tree["state"], s.checked_state)
    _check_history(o.fn, path, step, tree["history"])
    restored = tree["state"]
    if "key" in allowed:  # continue with this call's key
        restored = restored._replace(key=state.key)
    changes = saved.changes + ([{"step": step, "changed": allowed}] if allowed else [])
    history = {k: list(v) for k, v in tree["history"].items()}
    return restored, history, step, ident._replace(changes=changes)


def _history_dtypes(path, dtypes: dict) -> dict:
    """The recorded history dtypes as numpy dtypes (numbers only)."""
    out = {}
    for name, dtype in dtypes.items():
        try:
            parsed = np.dtype(dtype) if isinstance(dtype, str) else None
        except TypeError:
            parsed = None
        if parsed is None or parsed.kind not in "biufc":
            raise ckpt.CheckpointError(
                f"checkpoint record `{path}` is malformed: metadata field `history` gives "
                f"entry {name!r} the dtype {_short(dtype)}, not the name of a numeric "
                "dtype."
            )
        out[name] = parsed
    return out


def _short(v) -> str:
    text = repr(v)
    return text if len(text) <= 40 else text[:37] + "..."


def _local(x) -> list[np.ndarray]:
    """The values of ``x`` this process holds: its addressable shards, or all of it."""
    if isinstance(x, jax.Array) and not x.is_fully_addressable:
        return [np.asarray(shard.data) for shard in x.addressable_shards]
    return [np.asarray(x)]


def _gathered(tree, local) -> np.ndarray:
    """``local`` of every process, stacked ``(n_processes, ...)``, when ``tree`` spans several.

    Otherwise ``local[None]``. Every process gets the same table, so every process takes
    the same branch after it (one raises, all raise; none is left waiting in a collective).
    """
    local = np.asarray(local, np.int64)
    if not _spans(tree):
        return local[None]
    from jax.experimental import multihost_utils

    return np.asarray(multihost_utils.process_allgather(local)).reshape((-1,) + local.shape)


def _check_steps(fn, path, step: int, tree) -> None:
    """Every ``state.step`` equals the record's step."""
    values = np.concatenate([v.ravel() for v in _local(tree["state"].step)])
    table = _gathered(
        tree["state"], [values.min(), values.max()] if values.size else [step, step]
    )  # a process holding no shard agrees
    lo, hi = int(table[:, 0].min()), int(table[:, 1].max())
    if lo != step or hi != step:
        raise ckpt.CheckpointError(
            f"{fn}: checkpoint `{path}` is the record of step {step}, but its state.step "
            f"holds values in [{lo}, {hi}]; the record and its arrays disagree."
        )


def _check_history(fn, path, step: int, history) -> None:
    """The last ``history["step"]`` equals the record's step (a block ends there)."""
    last = history.get("step")
    got = None if last is None or not len(last) else int(last[-1])
    if got != step:
        raise ckpt.CheckpointError(
            f"{fn}: checkpoint `{path}` is the record of step {step}, but its history "
            f"ends at step {got}; the record and its arrays disagree."
        )


def _exempt(o: Options) -> set:
    """Settings entries a named change may alter: hyper with the optimizer, data shapes."""
    allow = set(o.allow_changes)
    return {k for k, name in (("hyper", "optimizer"), ("data", "data")) if name in allow}


def _compare_settings(o: Options, path, saved: Identity, now: Identity) -> None:
    """Refuses a checkpoint written with other settings (except what a change may alter)."""
    exempt = _exempt(o)
    settings = [
        f"{k}: checkpoint {saved.settings.get(k)!r}, this call {v!r}"
        for k, v in now.settings.items()
        if saved.settings.get(k) != v and k not in exempt
    ]
    if settings:
        raise ckpt.CheckpointError(
            f"{o.fn}: checkpoint `{path}` does not match this call's settings: "
            + "; ".join(settings)
            + "."
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
        runs = [
            r for r, (x, y) in enumerate(zip(a.get("key") or [], b["key"], strict=False)) if x != y
        ]
        out["key"] = (
            "the checkpoint's key differs from this call's"
            if len(b["key"]) == 1
            else f"the checkpoint's keys differ from this call's (runs {runs})"
        )
    for name in ("data", "eval_data"):
        if a.get(name) != b[name]:
            out[name] = _data_difference(a.get(name) or [], b[name])
    saved_opt = a.get("optimizer")
    problem = (
        "not recorded"
        if not isinstance(saved_opt, dict)
        else fp.optimizer_differs(saved_opt, b["optimizer"])
    )
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
    named = [("params", p, x) for p, x in params]
    named += [("opt_state", p, x) for (p, x), c in zip(opt, checked_state, strict=True) if c]
    local = [all(np.isfinite(v).all() for v in _local(x)) for _, _, x in named]
    finite = _gathered(state, local).min(axis=0, initial=1)
    for (where, p, _), ok in zip(named, finite, strict=True):
        if not ok:
            raise ckpt.CheckpointError(
                f"{fn}: checkpoint `{path}` holds NaN or inf in {where}"
                f"{jax.tree_util.keystr(p)}, which was finite at initialisation; it cannot "
                "be resumed from (resume from an earlier checkpoint, or start afresh)."
            )


def _template(state, hyper, n_blocks: int, dtypes: dict, sharding):
    """The pytree of shapes and dtypes ``load_checkpoint`` checks the files against.

    With a ``sharding`` (the loop's state sharding, which is also hyper's), state and
    hyper leaves carry it, so they load as sharded ``jax.Array`` s; history loads whole.
    """
    lead = tuple(np.shape(state.step))

    def struct(x):
        if sharding is None:
            return x if dev._is_key(x) else shape_struct(x)
        dtype = x.dtype if dev._is_key(x) else jnp.result_type(x)
        return jax.ShapeDtypeStruct(np.shape(x), dtype, sharding=sharding)

    return {
        "state": jax.tree.map(struct, state),
        "hyper": None if hyper is None else jax.tree.map(struct, hyper),
        "history": {  # "step" is shared by all runs: no runs axis
            k: jax.ShapeDtypeStruct((n_blocks,) + (() if k == "step" else lead), dtype)
            for k, dtype in dtypes.items()
        },
    }
