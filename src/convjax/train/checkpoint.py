"""Checkpoints without pickle: one ``.npz`` of arrays plus one ``.json`` record.

A checkpoint of step ``s`` in ``directory`` is the pair::

    step_{s:09d}.npz    the array leaves, keyed "leaf_00000", "leaf_00001", ...
    step_{s:09d}.json   format, step, the leaf manifest (pytree path, shape, dtype),
                        the SHA-256 of the .npz and caller metadata

Both are written to a temporary name and renamed into place (``os.replace`` is
atomic on POSIX and Windows), the ``.npz`` first: the ``.json`` is the commit
record, so a crash at any moment leaves either a complete checkpoint or none (a
stray ``.npz`` without its ``.json`` is ignored). Loading uses
``np.load(allow_pickle=False)``, verifies the checksum, and checks every leaf
against a template; anything wrong raises :class:`CheckpointError` naming the file.

Arrays whose dtype numpy cannot store without pickle (``bfloat16`` and the other
``ml_dtypes``) are stored as unsigned integers of the same width and viewed back;
new-style typed PRNG keys are stored as their key data and wrapped back.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import tempfile
import zipfile
from typing import Any

import jax
import numpy as np

FORMAT = "convjax.train.checkpoint/1"
_NAME = re.compile(r"^step_(\d{9,})\.json$")


class CheckpointError(ValueError):
    """A checkpoint file is missing, corrupted or does not match what is expected."""


def checkpoint_path(directory: str, step: int) -> str:
    """Path of the ``.json`` record of the checkpoint of ``step`` in ``directory``."""
    return os.path.join(os.fspath(directory), f"step_{int(step):09d}.json")


def list_checkpoints(directory: str) -> list[tuple[int, str]]:
    """Complete checkpoints in ``directory`` as ``(step, json_path)``, oldest first."""
    found = []
    for name in os.listdir(directory):
        m = _NAME.match(name)
        if m:
            found.append((int(m.group(1)), os.path.join(directory, name)))
    return sorted(found)


def latest_checkpoint(directory: str) -> str | None:
    """The ``.json`` path of the newest complete checkpoint in ``directory``, or None.

    Raises:
      FileNotFoundError: ``directory`` does not exist.
    """
    if not os.path.isdir(directory):
        raise FileNotFoundError(
            f"latest_checkpoint: checkpoint directory `{directory}` does not exist."
        )
    found = list_checkpoints(directory)
    return found[-1][1] if found else None


def _is_key(x) -> bool:
    return hasattr(x, "dtype") and jax.dtypes.issubdtype(x.dtype, jax.dtypes.prng_key)


def _encode(x) -> tuple[np.ndarray, dict[str, Any]]:
    """Host array to store and its manifest entry (shape and dtype as the caller sees)."""
    if _is_key(x):
        impl = str(jax.random.key_impl(x))
        data = np.asarray(jax.random.key_data(x))
        return data, {"shape": list(np.shape(x)), "dtype": str(x.dtype), "key_impl": impl}
    arr = np.asarray(x)
    entry = {"shape": list(arr.shape), "dtype": str(arr.dtype)}
    if arr.dtype.isbuiltin != 1 or arr.dtype.kind not in "biufc":
        if arr.dtype.kind == "O" or arr.dtype.itemsize not in (1, 2, 4, 8):
            raise TypeError(
                f"save_checkpoint: cannot store a leaf of dtype {arr.dtype} without pickle."
            )
        entry["stored_as"] = f"uint{8 * arr.dtype.itemsize}"
        arr = arr.view(np.dtype(entry["stored_as"]))
    return arr, entry


def _sha256(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _write_atomic(path: str, write) -> None:
    directory = os.path.dirname(path) or "."
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=".tmp-", suffix=os.path.basename(path))
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise


def _fsync_dir(directory: str) -> None:
    if hasattr(os, "O_DIRECTORY"):
        fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def save_checkpoint(
    directory: str, step: int, tree, *, metadata: dict | None = None, keep: int | None = None
) -> str:
    """Writes ``tree`` as the checkpoint of ``step``, atomically.

    Args:
      directory: an existing directory.
      step: int >= 0, the step the checkpoint belongs to (its file name).
      tree: a pytree of arrays (numpy, jax, typed PRNG keys); fully addressable
        (on several hosts, gather first and save from one process).
      metadata: JSON-serialisable dict stored in the ``.json`` record.
      keep: if given, keep only the ``keep`` newest checkpoints (older ones deleted
        after the new one is committed).

    Returns:
      The path of the ``.json`` record.

    Raises:
      FileNotFoundError: ``directory`` does not exist.
      TypeError: a leaf of a dtype that cannot be stored without pickle, metadata
        that is not JSON-serialisable.
    """
    directory = os.fspath(directory)
    if not os.path.isdir(directory):
        raise FileNotFoundError(
            f"save_checkpoint: checkpoint directory `{directory}` does not exist."
        )
    leaves_with_paths, _ = jax.tree_util.tree_flatten_with_path(tree)
    arrays, manifest = {}, []
    for i, (path, leaf) in enumerate(leaves_with_paths):
        arr, entry = _encode(leaf)
        arrays[f"leaf_{i:05d}"] = arr
        manifest.append({"path": jax.tree_util.keystr(path), **entry})
    json_path = checkpoint_path(directory, step)
    npz_path = json_path[: -len(".json")] + ".npz"
    _write_atomic(npz_path, lambda f: np.savez(f, **arrays))
    record = {
        "format": FORMAT,
        "step": int(step),
        "npz": os.path.basename(npz_path),
        "sha256": _sha256(npz_path),
        "leaves": manifest,
        "metadata": metadata if metadata is not None else {},
    }
    text = json.dumps(record, indent=1)
    _write_atomic(json_path, lambda f: f.write(text.encode("utf-8")))
    _fsync_dir(directory)
    if keep is not None:
        for _, old in list_checkpoints(directory)[:-keep]:
            os.remove(old)
            old_npz = old[: -len(".json")] + ".npz"
            if os.path.exists(old_npz):
                os.remove(old_npz)
    return json_path


def read_record(path: str) -> dict:
    """Reads and checks the ``.json`` record of a checkpoint.

    Raises:
      CheckpointError: the file is missing, not valid JSON or not a checkpoint record.
    """
    try:
        with open(path, encoding="utf-8") as f:
            record = json.load(f)
    except FileNotFoundError:
        raise CheckpointError(f"checkpoint record `{path}` does not exist.") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise CheckpointError(
            f"checkpoint record `{path}` is corrupted (not valid JSON): {e}"
        ) from e
    needed = ("format", "step", "npz", "sha256", "leaves", "metadata")
    if not isinstance(record, dict) or any(k not in record for k in needed):
        raise CheckpointError(
            f"checkpoint record `{path}` is not a convjax checkpoint record "
            f"(expected keys {', '.join(needed)})."
        )
    if record["format"] != FORMAT:
        raise CheckpointError(
            f"checkpoint record `{path}` has format {record['format']!r}, expected {FORMAT!r}."
        )
    return record


def load_checkpoint(path: str, like):
    """Loads the checkpoint whose ``.json`` record is ``path``, shaped like ``like``.

    Args:
      path: the ``.json`` record (as returned by :func:`save_checkpoint` or
        :func:`latest_checkpoint`).
      like: a pytree with the expected structure; its leaves (arrays or
        ``jax.ShapeDtypeStruct``) give the expected shapes and dtypes.

    Returns:
      ``(tree, metadata)``: a pytree like ``like`` of numpy arrays (typed PRNG keys
      come back as jax key arrays) and the metadata dict stored with it.

    Raises:
      CheckpointError: missing or corrupted files, checksum mismatch, or a structure,
        shape or dtype that differs from ``like``; the message names the file and,
        for a mismatch, the leaf.
    """
    record = read_record(path)
    npz_path = os.path.join(os.path.dirname(path), record["npz"])
    if not os.path.exists(npz_path):
        raise CheckpointError(f"checkpoint arrays `{npz_path}` (named by `{path}`) are missing.")
    if _sha256(npz_path) != record["sha256"]:
        raise CheckpointError(
            f"checkpoint arrays `{npz_path}` are corrupted: their SHA-256 does not match "
            f"the one recorded in `{path}`."
        )
    expected, treedef = jax.tree_util.tree_flatten_with_path(like)
    manifest = record["leaves"]
    want_paths = [jax.tree_util.keystr(p) for p, _ in expected]
    got_paths = [entry["path"] for entry in manifest]
    if want_paths != got_paths:
        missing = [p for p in want_paths if p not in got_paths]
        extra = [p for p in got_paths if p not in want_paths]
        raise CheckpointError(
            f"checkpoint `{path}` does not match the expected structure: "
            f"{len(got_paths)} leaves stored, {len(want_paths)} expected; "
            f"missing {', '.join(missing[:5]) or 'none'}; unexpected "
            f"{', '.join(extra[:5]) or 'none'}."
        )
    for (_, leaf), entry in zip(expected, manifest, strict=True):
        want_shape = list(np.shape(leaf))
        want_dtype = str(leaf.dtype if hasattr(leaf, "dtype") else np.result_type(leaf))
        if entry["shape"] != want_shape or entry["dtype"] != want_dtype:
            raise CheckpointError(
                f"checkpoint `{path}`: leaf {entry['path']} has shape {tuple(entry['shape'])} "
                f"and dtype {entry['dtype']}, expected shape {tuple(want_shape)} and dtype "
                f"{want_dtype}."
            )
    out = []
    try:
        with np.load(npz_path, allow_pickle=False) as z:
            for i, entry in enumerate(manifest):
                arr = z[f"leaf_{i:05d}"]
                if "key_impl" in entry:
                    out.append(jax.random.wrap_key_data(arr, impl=entry["key_impl"]))
                    continue
                if "stored_as" in entry:
                    arr = arr.view(jax.numpy.dtype(entry["dtype"]))
                if list(arr.shape) != entry["shape"] or str(arr.dtype) != entry["dtype"]:
                    raise CheckpointError(
                        f"checkpoint arrays `{npz_path}`: leaf {entry['path']} holds shape "
                        f"{arr.shape} and dtype {arr.dtype}, but `{path}` records shape "
                        f"{tuple(entry['shape'])} and dtype {entry['dtype']}."
                    )
                out.append(arr)
    except CheckpointError:
        raise
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as e:
        raise CheckpointError(f"checkpoint arrays `{npz_path}` cannot be read: {e}") from e
    return jax.tree_util.tree_unflatten(treedef, out), record["metadata"]
