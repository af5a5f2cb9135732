"""Checkpoints without pickle: ``.npz`` files of arrays plus one ``.json`` record.

A checkpoint of step ``s`` in ``directory`` is::

    step_{s:09d}.json         the record: format, step, the array files (name, size,
                              SHA-256), the leaf manifest (pytree path, shape, dtype,
                              and the chunks that tile each leaf) and caller metadata
    step_{s:09d}.npz          the arrays, when one process writes them all; or
    step_{s:09d}.p{k:05d}.npz the chunks written by process ``k`` (multi-process
                              arrays: each process writes the shards it owns)

Every file is written to a temporary name ``.tmp-<random>-<name>`` and renamed into
place (``os.replace`` is atomic on POSIX and Windows), the array files first: the
``.json`` is the commit record, so a crash at any moment leaves either a complete
checkpoint or none. Files are created with mode ``0o666`` minus the umask, like any
other file the process writes. Temporary files left by a killed writer are removed
by the next :func:`save_checkpoint` in the same directory.

Loading validates before it reads anything large (see :func:`read_record` and
:func:`load_checkpoint`): the record's structure and types, file names (no path can
leave the directory), regular files only (no symlinks, devices or FIFOs), file sizes
against the record, then the SHA-256, then every array header against the manifest.
The checksum is written by the same hand as the files: it detects corruption and
accidents, it is no authentication against someone who can write the directory.

Arrays whose dtype numpy cannot store without pickle (``bfloat16`` and the other
``ml_dtypes``) are stored as unsigned integers of the same width and viewed back;
typed PRNG keys are stored as their key data and wrapped back.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import os
import re
import secrets
import stat
import zipfile
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

FORMAT = "convjax.train.checkpoint/2"
MAX_RECORD_BYTES = 64 << 20
_FORMAT_PREFIX = "convjax.train.checkpoint/"
_NAME = re.compile(r"^step_(\d{9,})\.json$")
_ARRAYS = re.compile(r"^step_(\d{9,})(?:\.p\d{5})?\.npz$")
_TMP = re.compile(r"^\.tmp-[0-9a-f]{16}-step_\d{9,}(?:\.p\d{5})?\.(?:npz|json)$")
_SHA256 = re.compile(r"^[0-9a-f]{64}$")
_RECORD_KEYS = {"format", "step", "files", "leaves", "metadata"}
_FILE_KEYS = {"name", "size", "sha256"}
_LEAF_KEYS = {"path", "shape", "dtype", "chunks"}
_LEAF_OPTIONAL = {"stored_as", "key_impl", "key_shape"}
_CHUNK_KEYS = {"file", "start", "stop"}
_STORED_AS = {"uint8", "uint16", "uint32", "uint64"}
_OPEN_FLAGS = (
    os.O_RDONLY
    | getattr(os, "O_NOFOLLOW", 0)
    | getattr(os, "O_NONBLOCK", 0)
    | getattr(os, "O_BINARY", 0)
)


class CheckpointError(ValueError):
    """A checkpoint file is missing, malformed, corrupted or not what is expected."""


# ------------------------------------------------------------------------------ names


def _as_step(fn: str, step) -> int:
    if isinstance(step, bool) or not isinstance(step, (int, np.integer)):
        raise TypeError(f"{fn}: `step` must be an int >= 0, got {type(step).__name__}.")
    if step < 0:
        raise ValueError(f"{fn}: `step` must be an int >= 0, got {int(step)}.")
    return int(step)


def checkpoint_path(directory: str, step: int) -> str:
    """Path of the ``.json`` record of the checkpoint of ``step`` in ``directory``.

    Example:
      >>> checkpoint_path("ckpt", 12)
      'ckpt/step_000000012.json'
    """
    step = _as_step("checkpoint_path", step)
    return os.path.join(os.fspath(directory), f"step_{step:09d}.json")


def _array_name(step: int, process: int | None) -> str:
    part = "" if process is None else f".p{process:05d}"
    return f"step_{step:09d}{part}.npz"


def _process_of(name, step: int) -> int | None:
    """``k`` if ``name`` is ``step_{step:09d}.p{k:05d}.npz``, else None."""
    m = re.match(rf"^step_{step:09d}\.p(\d{{5}})\.npz$", name) if isinstance(name, str) else None
    return int(m.group(1)) if m else None


def list_checkpoints(directory: str) -> list[tuple[int, str]]:
    """Committed checkpoints in ``directory`` as ``(step, json_path)``, oldest first.

    Only the names are looked at; :func:`load_checkpoint` validates the files.
    """
    directory = os.fspath(directory)
    found = []
    for name in os.listdir(directory):
        m = _NAME.match(name)
        if m:
            found.append((int(m.group(1)), os.path.join(directory, name)))
    return sorted(found)


def latest_checkpoint(directory: str) -> str | None:
    """The ``.json`` path of the newest committed checkpoint in ``directory``, or None.

    It only reads the directory listing (it removes nothing: a reader may run
    while another process writes; stale temporary files are removed by
    :func:`save_checkpoint`).

    Raises:
      FileNotFoundError: ``directory`` does not exist.
    """
    directory = os.fspath(directory)
    if not os.path.isdir(directory):
        raise FileNotFoundError(
            f"latest_checkpoint: checkpoint directory `{directory}` does not exist."
        )
    found = list_checkpoints(directory)
    return found[-1][1] if found else None


# ---------------------------------------------------------------------------- writing


def _is_key(x) -> bool:
    return hasattr(x, "dtype") and jax.dtypes.issubdtype(x.dtype, jax.dtypes.prng_key)


def _is_global(x) -> bool:
    """A jax.Array some of whose shards live in other processes."""
    return isinstance(x, jax.Array) and not x.is_fully_addressable


def _physical(x) -> tuple[Any, dict[str, Any]]:
    """The array to store (numpy, or a multi-process jax.Array) and its manifest entry."""
    if _is_key(x):
        data = jax.random.key_data(x)
        entry = {
            "shape": list(np.shape(x)),
            "dtype": str(x.dtype),
            "stored_as": str(data.dtype),
            "key_impl": str(jax.random.key_impl(x)),
            "key_shape": list(np.shape(data))[np.ndim(x) :],
        }
        return (data if _is_global(data) else np.asarray(data)), entry
    arr = x if _is_global(x) else np.asarray(x)
    dtype = np.dtype(arr.dtype)
    entry = {"shape": list(arr.shape), "dtype": str(dtype)}
    if dtype.isbuiltin != 1 or dtype.kind not in "biufc":
        if dtype.kind == "O" or dtype.itemsize not in (1, 2, 4, 8):
            raise TypeError(
                f"save_checkpoint: cannot store a leaf of dtype {dtype} without pickle."
            )
        entry["stored_as"] = f"uint{8 * dtype.itemsize}"
    return arr, entry


def _box(index: tuple | None, shape: tuple[int, ...]) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """``(start, stop)`` of a tuple of unit-stride slices into an array of ``shape``."""
    index = () if index is None else tuple(index)
    index = index + (slice(None),) * (len(shape) - len(index))
    bounds = [s.indices(n)[:2] for s, n in zip(index, shape, strict=True)]
    return tuple(b[0] for b in bounds), tuple(b[1] for b in bounds)


def _chunks(arr) -> list[tuple[tuple, tuple, int, Any]]:
    """``(start, stop, owner process, owner device)`` per distinct shard of ``arr``.

    A host value is one chunk owned by process 0. A multi-process array has one chunk
    per distinct shard index, owned by the device with the lowest ``(process_index,
    id)`` holding it: every process computes the same table without communicating.
    """
    shape = tuple(arr.shape)
    if not _is_global(arr):
        return [((0,) * len(shape), shape, 0, None)]
    owners: dict = {}
    for device, index in arr.sharding.devices_indices_map(shape).items():
        box = _box(index, shape)
        rank = (device.process_index, device.id)
        if box not in owners or rank < (owners[box].process_index, owners[box].id):
            owners[box] = device
    table = [(start, stop, d.process_index, d) for (start, stop), d in owners.items()]
    return sorted(table, key=lambda c: (c[2], c[0]))


def _member(i: int, j: int) -> str:
    return f"leaf_{i:05d}_{j:04d}"


def _step_named(path) -> bool:
    """Whether the last key of a pytree path is ``step`` (dict key or attribute)."""
    if not path:
        return False
    last = path[-1]
    return getattr(last, "key", getattr(last, "name", None)) == "step"


def _check_step_values(where: str, leaf_path: str, values: np.ndarray, step: int, fn: str):
    if values.dtype.kind not in "iu" or values.size == 0:
        return
    lo, hi = int(values.min()), int(values.max())
    if lo < 0 or hi > step:
        cls = ValueError if fn == "save_checkpoint" else CheckpointError
        raise cls(
            f"{where}: leaf {leaf_path} is a step counter (its last key is `step`) and must "
            f"hold values in [0, {step}] (the checkpoint's step), got values in [{lo}, {hi}]."
        )


def _host_chunk(arr, device, entry) -> np.ndarray:
    if device is None:
        host = np.asarray(arr)
    else:
        host = np.asarray(next(s for s in arr.addressable_shards if s.device == device).data)
    if "stored_as" in entry and host.dtype != np.dtype(entry["stored_as"]):
        host = host.view(np.dtype(entry["stored_as"]))
    return host if host.flags.c_contiguous else np.array(host, order="C")


def _plan(tree, step: int):
    """Manifest of ``tree`` and, per leaf, its physical array and chunk table."""
    leaves_with_paths, _ = jax.tree_util.tree_flatten_with_path(tree)
    manifest, plans = [], []
    for path, leaf in leaves_with_paths:
        arr, entry = _physical(leaf)
        entry = {"path": jax.tree_util.keystr(path), **entry}
        plans.append((arr, entry, _chunks(arr), _step_named(path) and not _is_key(leaf)))
        manifest.append(entry)
    return manifest, plans


def _members_of(process: int, plans, step: int) -> dict[str, np.ndarray]:
    """The npz members ``process`` writes: the chunks it owns."""
    members = {}
    for i, (arr, entry, chunks, is_step) in enumerate(plans):
        for j, (_, _, owner, device) in enumerate(chunks):
            if owner != process:
                continue
            host = _host_chunk(arr, device, entry)
            if is_step:
                _check_step_values("save_checkpoint", entry["path"], host, step, "save_checkpoint")
            members[_member(i, j)] = host
    return members


def _open_new(path: str):
    """A new file at a fresh temporary name next to ``path``, mode 0o666 minus umask."""
    directory, base = os.path.split(path)
    tmp = os.path.join(directory, f".tmp-{secrets.token_hex(8)}-{base}")
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0)
    return tmp, os.open(tmp, flags, 0o666)


def _write_atomic(path: str, write) -> None:
    tmp, fd = _open_new(path)
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.remove(tmp)
        raise


def _fsync_dir(directory: str) -> None:
    if hasattr(os, "O_DIRECTORY"):
        fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _sha256(f) -> str:
    h = hashlib.sha256()
    for chunk in iter(lambda: f.read(1 << 20), b""):
        h.update(chunk)
    return h.hexdigest()


def _write_arrays(path: str, members: dict[str, np.ndarray]) -> dict[str, Any]:
    """Writes ``members`` as an npz at ``path``; its ``{"name", "size", "sha256"}``."""
    _write_atomic(path, lambda f: np.savez(f, **members))  # type: ignore[arg-type]
    with open(path, "rb") as f:
        digest, size = _sha256(f), os.fstat(f.fileno()).st_size
    return {"name": os.path.basename(path), "size": size, "sha256": digest}


def _exchange(entry: dict[str, Any] | None, failed: bool) -> list[dict[str, Any] | None]:
    """Every process's ``{"size", "sha256"}`` (None: it wrote nothing), on every process.

    A ``process_allgather`` of 41 bytes per process; it is also the barrier that
    orders every array file before the record. Raises on every process if one failed.
    """
    raw = np.zeros(41, np.uint8)
    raw[0] = 2 if failed else int(entry is not None)
    if entry is not None:
        raw[1:9] = np.frombuffer(int(entry["size"]).to_bytes(8, "little"), np.uint8)
        raw[9:] = np.frombuffer(bytes.fromhex(entry["sha256"]), np.uint8)
    table = _allgather(raw).reshape(-1, 41)
    _raise_if_failed(table[:, 0] == 2, "could not write their array files")
    return [
        {"size": int.from_bytes(row[1:9].tobytes(), "little"), "sha256": row[9:].tobytes().hex()}
        if row[0]
        else None
        for row in table
    ]


def _allgather(x: np.ndarray) -> np.ndarray:
    from jax.experimental import multihost_utils

    return np.asarray(multihost_utils.process_allgather(x))


def _raise_if_failed(failed: np.ndarray, what: str) -> None:
    if failed.any():
        raise RuntimeError(
            f"save_checkpoint: processes {np.flatnonzero(failed).tolist()} {what}; nothing "
            "was committed (see their own errors)."
        )


def _remove_step(directory: str, step: int) -> None:
    """Deletes the checkpoint of ``step``: its record first (uncommits), then its arrays."""
    with contextlib.suppress(FileNotFoundError):
        os.remove(checkpoint_path(directory, step))
    for name in os.listdir(directory):
        m = _ARRAYS.match(name)
        if m and int(m.group(1)) == step:
            with contextlib.suppress(FileNotFoundError):
                os.remove(os.path.join(directory, name))


def _remove_stale(directory: str, before_ns: int) -> None:
    """Removes ``.tmp-*`` files of this module last modified before ``before_ns``."""
    for name in os.listdir(directory):
        if not _TMP.match(name):
            continue
        path = os.path.join(directory, name)
        with contextlib.suppress(FileNotFoundError):
            if os.lstat(path).st_mtime_ns < before_ns:
                os.remove(path)


def _dumps(record: dict) -> str:
    """The record as JSON, one file and one leaf per line."""

    def value(k, v):
        if k in ("files", "leaves") and v:
            return "[\n  " + ",\n  ".join(json.dumps(e) for e in v) + "\n ]"
        return json.dumps(v, indent=1).replace("\n", "\n ")

    return (
        "{\n"
        + ",\n".join(f" {json.dumps(k)}: {value(k, v)}" for k, v in record.items())
        + ("\n}\n")
    )


def _commit(directory, step, record, keep) -> str:
    """Writes the record, then removes old checkpoints and stale temporary files."""
    json_path = checkpoint_path(directory, step)
    newest_ns = os.stat(os.path.join(directory, record["files"][0]["name"])).st_mtime_ns
    text = _dumps(record)
    _write_atomic(json_path, lambda f: f.write(text.encode("utf-8")))
    _fsync_dir(directory)
    if keep is not None:
        for old, _ in list_checkpoints(directory)[:-keep]:
            _remove_step(directory, old)
    _remove_stale(directory, newest_ns)
    return json_path


def save_checkpoint(
    directory: str, step: int, tree, *, metadata: dict | None = None, keep: int | None = None
) -> str:
    """Writes ``tree`` as the checkpoint of ``step``, atomically.

    One process, or host values: the calling process writes ``step_{step:09d}.npz``
    and the record. When a leaf is a ``jax.Array`` whose shards live in several
    processes (after ``jax.distributed.initialize``), the call is collective: every
    process must call it with the same tree; each process writes the distinct shards
    it owns to ``step_{step:09d}.p{process:05d}.npz`` (no process gathers another's
    shards; host values and fully addressable leaves are written by process 0 and
    must be equal in every process), the processes exchange the files' sizes and
    SHA-256 (a few bytes), process 0 writes the record, and all return once it is
    committed.

    After the commit, the writer of the record removes checkpoints beyond ``keep``
    and ``.tmp-*`` files of this module older than the arrays it just wrote (left by
    a killed writer).

    Leaves whose last pytree key is ``step`` (a dict key or attribute) with an
    integer dtype are step counters: their values must lie in ``[0, step]``, checked
    here and by :func:`load_checkpoint`.

    Args:
      directory: an existing directory.
      step: int >= 0, the step the checkpoint belongs to (its file name).
      tree: a pytree of arrays (numpy, jax, typed PRNG keys; jax arrays may span
        several processes).
      metadata: JSON-serialisable dict stored in the record.
      keep: if given (>= 1), keep only the ``keep`` newest checkpoints.

    Returns:
      The path of the ``.json`` record.

    Raises:
      FileNotFoundError: ``directory`` does not exist.
      TypeError: a leaf of a dtype that cannot be stored without pickle, metadata
        that is not a JSON-serialisable dict, a non-int ``step``.
      ValueError: a negative ``step``, ``keep < 1``, a step counter outside
        ``[0, step]``.

    Example:
      >>> import tempfile, numpy as np
      >>> d = tempfile.mkdtemp()
      >>> p = save_checkpoint(d, 3, {"w": np.ones(2), "step": np.int32(3)})
      >>> tree, meta = load_checkpoint(p, {"w": np.zeros(2), "step": np.int32(0)})
      >>> tree["w"].tolist(), int(tree["step"]), meta
      ([1.0, 1.0], 3, {})
    """
    directory = os.fspath(directory)
    step = _as_step("save_checkpoint", step)
    if keep is not None and (isinstance(keep, bool) or not isinstance(keep, int) or keep < 1):
        raise ValueError(f"save_checkpoint: `keep` must be None or an int >= 1, got {keep!r}.")
    if not os.path.isdir(directory):
        raise FileNotFoundError(
            f"save_checkpoint: checkpoint directory `{directory}` does not exist."
        )
    metadata = {} if metadata is None else metadata
    if not isinstance(metadata, dict):
        raise TypeError(
            f"save_checkpoint: `metadata` must be a dict, got {type(metadata).__name__}."
        )
    try:
        json.dumps(metadata)
    except (TypeError, ValueError) as e:
        raise TypeError(f"save_checkpoint: `metadata` is not JSON-serialisable: {e}") from e
    manifest, plans = _plan(tree, step)
    if not any(_is_global(arr) for arr, *_ in plans):
        members = _members_of(0, plans, step)
        files = [_write_arrays(os.path.join(directory, _array_name(step, None)), members)]
        record = _record(step, files, {0: 0}, manifest, plans, metadata)
        return _commit(directory, step, record, keep)
    return _save_collective(directory, step, manifest, plans, metadata, keep)


def _record(step, files, file_of, manifest, plans, metadata) -> dict:
    for entry, (_, _, chunks, _) in zip(manifest, plans, strict=True):
        entry["chunks"] = [
            {"file": file_of[owner], "start": list(start), "stop": list(stop)}
            for start, stop, owner, _ in chunks
        ]
    return {
        "format": FORMAT,
        "step": step,
        "files": files,
        "leaves": manifest,
        "metadata": metadata,
    }


def _save_collective(directory, step, manifest, plans, metadata, keep) -> str:
    """Each process writes its shards; process 0 commits; every process sees the outcome."""
    me, mine, error = jax.process_index(), None, None
    try:
        members = _members_of(me, plans, step)
        if members:
            mine = _write_arrays(os.path.join(directory, _array_name(step, me)), members)
            _fsync_dir(directory)
    except Exception as e:  # re-raised below, after telling the other processes
        error = e
    if error is not None:
        with contextlib.suppress(RuntimeError):  # the others raise; this one raises its own
            _exchange(None, failed=True)
        raise error
    gathered = _exchange(mine, failed=False)
    files, file_of = _gathered_files(step, gathered, plans)
    json_path, error = checkpoint_path(directory, step), None
    if me == 0:
        try:
            _commit(directory, step, _record(step, files, file_of, manifest, plans, metadata), keep)
        except Exception as e:  # re-raised below, after telling the other processes
            error = e
    status = _allgather(np.array([error is not None], np.uint8))
    if error is not None:
        raise error
    _raise_if_failed(status.reshape(-1) == 1, "could not commit the record")
    return json_path


def _gathered_files(step, gathered, plans):
    """The record's file list and ``{process: file index}``, checked against the plan."""
    owners = sorted({owner for _, _, chunks, _ in plans for *_, owner, _ in chunks})
    wrote = [p for p, e in enumerate(gathered) if e is not None]
    if wrote != owners:
        raise RuntimeError(
            f"save_checkpoint: processes {wrote} wrote array files but the shards are owned "
            f"by processes {owners}; was the call made with the same tree in every process?"
        )
    files = [{"name": _array_name(step, p), **gathered[p]} for p in owners]
    return files, {p: k for k, p in enumerate(owners)}


# ---------------------------------------------------------------------------- reading


def _open_regular(path: str, what: str, size: int | None, limit: int | None, named_by: str):
    """An fd on ``path``, after refusing symlinks, special files and a wrong size."""
    by = f" (named by `{named_by}`)" if named_by else ""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        raise CheckpointError(f"{what} `{path}`{by} does not exist.") from None
    except OSError as e:
        raise CheckpointError(f"{what} `{path}`{by} cannot be read: {e}") from e
    if stat.S_ISLNK(st.st_mode):
        raise CheckpointError(
            f"{what} `{path}`{by} is a symbolic link; checkpoint files must be regular files."
        )
    if not stat.S_ISREG(st.st_mode):
        raise CheckpointError(
            f"{what} `{path}`{by} is not a regular file (a directory, device, FIFO or "
            "socket); checkpoint files must be regular files."
        )
    if size is not None and st.st_size != size:
        raise CheckpointError(
            f"{what} `{path}` holds {st.st_size} bytes, but `{named_by}` records {size}."
        )
    if limit is not None and st.st_size > limit:
        raise CheckpointError(
            f"{what} `{path}` holds {st.st_size} bytes, more than the {limit} a record may."
        )
    try:
        fd = os.open(path, _OPEN_FLAGS)
    except OSError as e:
        raise CheckpointError(f"{what} `{path}`{by} cannot be opened: {e}") from e
    now = os.fstat(fd)
    if (now.st_dev, now.st_ino, now.st_size) != (st.st_dev, st.st_ino, st.st_size):
        os.close(fd)
        raise CheckpointError(f"{what} `{path}`{by} changed while it was being opened.")
    return fd


def _read_json(path: str):
    fd = _open_regular(path, "checkpoint record", None, MAX_RECORD_BYTES, "")
    with os.fdopen(fd, "rb") as f:
        raw = f.read(MAX_RECORD_BYTES + 1)
    try:
        return json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as e:
        raise CheckpointError(
            f"checkpoint record `{path}` is corrupted (not valid JSON): {e}"
        ) from e


def _is_int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_dims(v) -> bool:
    return isinstance(v, list) and all(_is_int(e) and e >= 0 for e in v)


def _short(v) -> str:
    text = repr(v)
    return text if len(text) <= 60 else text[:57] + "..."


def _malformed(path: str, what: str) -> CheckpointError:
    return CheckpointError(f"checkpoint record `{path}` is malformed: {what}.")


def _check_keys(path, where, obj, required, optional=frozenset()):
    if not isinstance(obj, dict):
        raise _malformed(path, f"{where} must be an object, got {_short(obj)}")
    missing = sorted(set(required) - set(obj))
    extra = sorted(set(obj) - set(required) - set(optional))
    if missing or extra:
        raise _malformed(
            path, f"{where} lacks {missing or 'nothing'} and has unexpected {extra or 'nothing'}"
        )


def _check_format(path: str, record) -> None:
    fmt = record.get("format") if isinstance(record, dict) else None
    if isinstance(fmt, str) and fmt.startswith(_FORMAT_PREFIX) and fmt != FORMAT:
        raise CheckpointError(
            f"checkpoint record `{path}` has format {fmt!r}, but this convjax reads "
            f"{FORMAT!r} only: the checkpoint format changed (per-file sizes, per-process "
            "shards, step checks). Load it with the convjax version that wrote it, or start "
            "the run again in an empty directory."
        )
    if fmt != FORMAT:
        raise CheckpointError(
            f"checkpoint record `{path}` is not a convjax checkpoint record (format "
            f"{_short(fmt)}, expected {FORMAT!r})."
        )


def _check_files(path: str, step: int, files) -> None:
    if not isinstance(files, list) or not files:
        raise _malformed(path, f"`files` must be a non-empty list, got {_short(files)}")
    for k, f in enumerate(files):
        _check_keys(path, f"files[{k}]", f, _FILE_KEYS)
        if not _is_int(f["size"]) or f["size"] < 0:
            raise _malformed(path, f"files[{k}].size must be an int >= 0, got {_short(f['size'])}")
        if not isinstance(f["sha256"], str) or not _SHA256.match(f["sha256"]):
            raise _malformed(
                path, f"files[{k}].sha256 must be 64 hex digits, got {_short(f['sha256'])}"
            )
    names = [f["name"] for f in files]
    processes = [_process_of(n, step) for n in names]
    one_writer = names == [_array_name(step, None)]
    known = [k for k in processes if k is not None]
    increasing = all(a < b for a, b in zip(known, known[1:], strict=False))
    sharded = len(known) == len(processes) and increasing
    if not (one_writer or sharded):
        raise _malformed(
            path,
            f"the array files must be [{_array_name(step, None)!r}] or "
            f"'step_{step:09d}.p<process>.npz' names in increasing order (files in the "
            f"checkpoint's own directory, of its own step), got {_short(names)}",
        )


def _check_chunks(path: str, where: str, chunks, dims: list[int], n_files: int) -> None:
    if not isinstance(chunks, list) or not chunks:
        raise _malformed(path, f"{where}.chunks must be a non-empty list, got {_short(chunks)}")
    boxes = []
    for j, c in enumerate(chunks):
        _check_keys(path, f"{where}.chunks[{j}]", c, _CHUNK_KEYS)
        ok = (
            _is_int(c["file"])
            and 0 <= c["file"] < n_files
            and _is_dims(c["start"])
            and _is_dims(c["stop"])
            and len(c["start"]) == len(c["stop"]) == len(dims)
            and all(a <= b <= n for a, b, n in zip(c["start"], c["stop"], dims, strict=True))
        )
        if not ok:
            raise _malformed(
                path,
                f"{where}.chunks[{j}] is not a box inside shape "
                f"{tuple(dims)} in one of {n_files} files: {_short(c)}",
            )
        boxes.append((c["start"], c["stop"]))
    _check_tiling(path, where, boxes, dims)


def _check_tiling(path, where, boxes, dims) -> None:
    """Disjoint boxes inside ``dims`` whose volumes add up to its size tile it exactly."""
    volume = sum(math.prod(b - a for a, b in zip(s, e, strict=True)) for s, e in boxes)
    if volume != math.prod(dims):
        raise _malformed(path, f"{where}.chunks cover {volume} elements of {math.prod(dims)}")
    for j, (s1, e1) in enumerate(boxes):
        for s2, e2 in boxes[:j]:
            if all(max(a, c) < min(b, d) for a, b, c, d in zip(s1, e1, s2, e2, strict=True)):
                raise _malformed(path, f"{where}.chunks overlap")


def _check_leaf(path: str, i: int, leaf, n_files: int) -> None:
    where = f"leaves[{i}]"
    _check_keys(path, where, leaf, _LEAF_KEYS, _LEAF_OPTIONAL)
    if not isinstance(leaf["path"], str) or not isinstance(leaf["dtype"], str):
        raise _malformed(
            path,
            f"{where}.path and .dtype must be strings, got "
            f"{_short(leaf['path'])} and {_short(leaf['dtype'])}",
        )
    if not _is_dims(leaf["shape"]):
        raise _malformed(
            path, f"{where}.shape must be a list of ints >= 0, got {_short(leaf['shape'])}"
        )
    if "stored_as" in leaf and leaf["stored_as"] not in _STORED_AS:
        raise _malformed(
            path,
            f"{where}.stored_as must be one of {sorted(_STORED_AS)}, got "
            f"{_short(leaf['stored_as'])}",
        )
    is_key = "key_impl" in leaf or "key_shape" in leaf
    if is_key and not (
        "key_impl" in leaf
        and "key_shape" in leaf
        and "stored_as" in leaf
        and isinstance(leaf["key_impl"], str)
        and _is_dims(leaf["key_shape"])
    ):
        raise _malformed(
            path, f"{where} is a key leaf without a string key_impl, a key_shape list and stored_as"
        )
    dims = leaf["shape"] + (leaf["key_shape"] if is_key else [])
    _check_chunks(path, where, leaf["chunks"], dims, n_files)


def _check_record(path: str, record) -> None:
    _check_format(path, record)
    _check_keys(path, "the record", record, _RECORD_KEYS)
    step = record["step"]
    m = _NAME.match(os.path.basename(path))
    if not m:
        raise CheckpointError(
            f"checkpoint record `{path}` is not named step_<9 digits>.json; checkpoints are "
            "found and checked by their file name."
        )
    if not _is_int(step) or step < 0 or step != int(m.group(1)):
        raise _malformed(
            path, f"`step` must be the int {int(m.group(1))} of the file name, got {_short(step)}"
        )
    _check_files(path, step, record["files"])
    if not isinstance(record["leaves"], list):
        raise _malformed(path, f"`leaves` must be a list, got {_short(record['leaves'])}")
    for i, leaf in enumerate(record["leaves"]):
        _check_leaf(path, i, leaf, len(record["files"]))
    used = {c["file"] for leaf in record["leaves"] for c in leaf["chunks"]}
    if record["leaves"] and used != set(range(len(record["files"]))):
        raise _malformed(path, "an array file holds no chunk of any leaf")
    if not isinstance(record["metadata"], dict):
        raise _malformed(path, f"`metadata` must be an object, got {_short(record['metadata'])}")


def read_record(path: str) -> dict:
    """Reads the ``.json`` record of a checkpoint and checks its structure and types.

    Nothing but the record is read. It must be a regular file (not a symlink or a
    device) of at most :data:`MAX_RECORD_BYTES`, named ``step_<9 digits>.json``, of
    format :data:`FORMAT`, with a step equal to its name's, array files named after
    that step inside the record's own directory, and a manifest whose every leaf has
    a path, a shape, a dtype and chunks that tile it exactly.

    Returns:
      The record (a dict with ``"format"``, ``"step"``, ``"files"``, ``"leaves"``,
      ``"metadata"``).

    Raises:
      CheckpointError: naming ``path``: missing, not a regular file, too large, not
        valid JSON, written in another format, or malformed (the message says what).
    """
    path = os.fspath(path)
    record = _read_json(path)
    _check_record(path, record)
    return record


def metadata_field(path: str, metadata: dict, name: str, kind: type, *, minimum=None):
    """``metadata[name]``, checked: for callers validating their own metadata fields.

    Args:
      path: the record the metadata came from (named in the error).
      metadata: the metadata dict (``read_record(path)["metadata"]``).
      name: the field.
      kind: ``int`` (bool excluded), ``float`` (an int is accepted), ``str``, ``bool``,
        ``list`` or ``dict``.
      minimum: for ``int`` / ``float``, the smallest value allowed.

    Returns:
      The value.

    Raises:
      CheckpointError: the field is missing, of another type or below ``minimum``.

    Example:
      >>> metadata_field("step_000000004.json", {"n_blocks": 2}, "n_blocks", int, minimum=0)
      2
    """
    if not isinstance(metadata, dict) or name not in metadata:
        raise _malformed(path, f"metadata field `{name}` is missing")
    value = metadata[name]
    if kind is float:
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
    elif kind is int:
        ok = _is_int(value)
    else:
        ok = isinstance(value, kind)
    if not ok:
        raise _malformed(
            path, f"metadata field `{name}` must be {kind.__name__}, got {_short(value)}"
        )
    if minimum is not None and kind in (int, float) and value < minimum:
        raise _malformed(path, f"metadata field `{name}` must be >= {minimum}, got {value}")
    return value


def _like_dtype(leaf) -> str:
    return str(leaf.dtype if hasattr(leaf, "dtype") else np.result_type(leaf))


def _check_like(path: str, record: dict, expected) -> None:
    manifest = record["leaves"]
    want = [jax.tree_util.keystr(p) for p, _ in expected]
    got = [entry["path"] for entry in manifest]
    if want != got:
        missing = [p for p in want if p not in got]
        extra = [p for p in got if p not in want]
        raise CheckpointError(
            f"checkpoint `{path}` does not match the expected structure: "
            f"{len(got)} leaves stored, {len(want)} expected; "
            f"missing {', '.join(missing[:5]) or 'none'}; unexpected "
            f"{', '.join(extra[:5]) or 'none'}."
        )
    for (_, leaf), entry in zip(expected, manifest, strict=True):
        shape, dtype = list(np.shape(leaf)), _like_dtype(leaf)
        if entry["shape"] != shape or entry["dtype"] != dtype:
            raise CheckpointError(
                f"checkpoint `{path}`: leaf {entry['path']} has shape {tuple(entry['shape'])} "
                f"and dtype {entry['dtype']}, expected shape {tuple(shape)} and dtype {dtype}."
            )
        _check_stored(path, leaf, entry)


def _check_stored(path: str, leaf, entry) -> None:
    """The stored layout agrees with the expected leaf (key data shape, view width)."""
    if _is_key(leaf):
        data = jax.eval_shape(jax.random.key_data, jax.ShapeDtypeStruct(np.shape(leaf), leaf.dtype))
        want = list(data.shape)[np.ndim(leaf) :]
        if entry.get("key_shape") != want or entry.get("stored_as") != str(data.dtype):
            raise CheckpointError(
                f"checkpoint `{path}`: key leaf {entry['path']} stores key data of trailing "
                f"shape {_short(entry.get('key_shape'))} as {_short(entry.get('stored_as'))}, "
                f"expected {want} as {data.dtype} for {entry['dtype']}."
            )
    elif "key_impl" in entry:
        raise _malformed(path, f"leaf {entry['path']} has a key_impl but dtype {entry['dtype']}")
    elif "stored_as" in entry:
        width = np.dtype(entry["stored_as"]).itemsize
        if jnp.dtype(entry["dtype"]).itemsize != width:
            raise _malformed(
                path,
                f"leaf {entry['path']} of dtype {entry['dtype']} is stored "
                f"as {entry['stored_as']}, of another width",
            )


def _stored_dtype(entry) -> np.dtype:
    return np.dtype(entry.get("stored_as", entry["dtype"]))


class _Files:
    """The record's array files, each opened, size-checked and hashed on first use."""

    def __init__(self, path: str, record: dict, stack: contextlib.ExitStack):
        self.path, self.record, self.stack = path, record, stack
        self.directory = os.path.dirname(path)
        self.open: dict[int, zipfile.ZipFile] = {}

    def get(self, k: int) -> zipfile.ZipFile:
        if k not in self.open:
            self.open[k] = self._verify(k)
        return self.open[k]

    def _verify(self, k: int) -> zipfile.ZipFile:
        entry = self.record["files"][k]
        npz = os.path.join(self.directory, entry["name"])
        fd = _open_regular(npz, "checkpoint arrays", entry["size"], None, self.path)
        f = self.stack.enter_context(os.fdopen(fd, "rb"))
        if _sha256(f) != entry["sha256"]:
            raise CheckpointError(
                f"checkpoint arrays `{npz}` are corrupted: their SHA-256 does not match the "
                f"one recorded in `{self.path}`."
            )
        f.seek(0)
        try:
            z = self.stack.enter_context(zipfile.ZipFile(f))
        except (zipfile.BadZipFile, OSError, ValueError) as e:
            raise CheckpointError(f"checkpoint arrays `{npz}` cannot be read: {e}") from e
        want = sorted(
            _member(i, j) + ".npy"
            for i, leaf in enumerate(self.record["leaves"])
            for j, c in enumerate(leaf["chunks"])
            if c["file"] == k
        )
        if sorted(z.namelist()) != want:
            raise CheckpointError(
                f"checkpoint arrays `{npz}` hold members {_short(sorted(z.namelist()))}, but "
                f"`{self.path}` places {len(want)} chunks there ({_short(want)})."
            )
        return z


def _read_member(z: zipfile.ZipFile, name: str, shape: tuple, dtype: np.dtype, where: str):
    """The array of npz member ``name``, after checking its header (bounded reads)."""
    fmt = np.lib.format
    try:
        with z.open(name + ".npy") as m:
            version = fmt.read_magic(m)
            if version not in ((1, 0), (2, 0)):
                raise ValueError(f"npy format version {version}")
            read_header = (
                fmt.read_array_header_1_0 if version == (1, 0) else (fmt.read_array_header_2_0)
            )
            got_shape, fortran, got_dtype = read_header(m)
            if got_shape != shape or got_dtype != dtype:
                raise CheckpointError(
                    f"{where}: member {name} holds shape {got_shape} and dtype {got_dtype}, "
                    f"the record says shape {shape} and dtype {dtype}."
                )
            n = math.prod(shape) * dtype.itemsize
            raw = m.read(n)
    except CheckpointError:
        raise
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as e:
        raise CheckpointError(f"{where}: member {name} cannot be read: {e}") from e
    if len(raw) != n:
        raise CheckpointError(f"{where}: member {name} is truncated ({len(raw)} of {n} bytes).")
    arr = np.frombuffer(raw, dtype)
    return arr.reshape(shape[::-1]).T if fortran else arr.reshape(shape)


def _leaf_reader(files: _Files, record: dict, i: int, is_step: bool):
    """``read(start, stop)``: the stored array of leaf ``i`` over a box, from its chunks."""
    entry = record["leaves"][i]
    dtype, cache = _stored_dtype(entry), {}

    def chunk(j):
        if j not in cache:
            c = entry["chunks"][j]
            shape = tuple(b - a for a, b in zip(c["start"], c["stop"], strict=True))
            name = record["files"][c["file"]]["name"]
            where = f"checkpoint arrays `{os.path.join(files.directory, name)}`"
            cache[j] = _read_member(files.get(c["file"]), _member(i, j), shape, dtype, where)
            if is_step:
                _check_step_values(
                    f"checkpoint `{files.path}`",
                    entry["path"],
                    cache[j],
                    record["step"],
                    "load_checkpoint",
                )
        return cache[j]

    def read(start, stop):
        out = np.empty([b - a for a, b in zip(start, stop, strict=True)], dtype)
        for j, c in enumerate(entry["chunks"]):
            lo = [max(a, s) for a, s in zip(start, c["start"], strict=True)]
            hi = [min(b, e) for b, e in zip(stop, c["stop"], strict=True)]
            if not all(a < b for a, b in zip(lo, hi, strict=True)):
                if c["start"] == c["stop"] or not out.size:
                    chunk(j)  # an empty chunk: its member is still checked
                continue
            src = tuple(slice(a - s, b - s) for a, b, s in zip(lo, hi, c["start"], strict=True))
            dst = tuple(slice(a - s, b - s) for a, b, s in zip(lo, hi, start, strict=True))
            out[dst] = chunk(j)[src]
        return out

    return read


def _finish(path: str, entry, arr):
    """A stored (host or device) array viewed back as the leaf's dtype, keys wrapped."""
    if "key_impl" in entry:
        try:
            keys = jax.random.wrap_key_data(arr, impl=entry["key_impl"])
        except (TypeError, ValueError, KeyError) as e:
            raise CheckpointError(
                f"checkpoint `{path}`: leaf {entry['path']}: key data of "
                f"impl {entry['key_impl']!r} cannot be wrapped: {e}"
            ) from e
        if str(keys.dtype) != entry["dtype"]:
            raise CheckpointError(
                f"checkpoint `{path}`: leaf {entry['path']}: impl "
                f"{entry['key_impl']!r} makes {keys.dtype} keys, the record "
                f"says {entry['dtype']}."
            )
        return keys
    if "stored_as" in entry:
        return arr.view(jnp.dtype(entry["dtype"]))
    return arr


def _load_leaf(files: _Files, record: dict, i: int, like_leaf, is_step: bool):
    entry = record["leaves"][i]
    read = _leaf_reader(files, record, i, is_step)
    dims = tuple(entry["shape"]) + tuple(entry.get("key_shape", ()))
    sharding = getattr(like_leaf, "sharding", None)
    if not isinstance(like_leaf, jax.ShapeDtypeStruct) or sharding is None:
        return _finish(files.path, entry, read((0,) * len(dims), dims))
    if "key_impl" in entry:
        data = jax.make_array_from_callback(dims, sharding, lambda idx: read(*_box(idx, dims)))
        return _finish(files.path, entry, data)
    return jax.make_array_from_callback(
        dims, sharding, lambda idx: _finish(files.path, entry, read(*_box(idx, dims)))
    )


def load_checkpoint(path: str, like):
    """Loads the checkpoint whose ``.json`` record is ``path``, shaped like ``like``.

    Checks, in this order, each refusing with :class:`CheckpointError` naming the
    file: the record (:func:`read_record`); the structure, shapes and dtypes against
    ``like``; then for each array file it needs: a regular file (no symlink, device
    or FIFO; opened without following links and without blocking), its size equal to
    the recorded one, its SHA-256, its members exactly the recorded chunks; then each
    member's header (shape, dtype) before its data is read. Integer leaves whose
    last key is ``step`` must hold values in ``[0, record step]``.

    A leaf of ``like`` that is a ``jax.ShapeDtypeStruct`` with a ``sharding`` comes
    back as a ``jax.Array`` with that sharding, built from the chunks this process's
    devices need (with several processes, no process reads the others' shards;
    for a typed key leaf the sharding must be rank-agnostic, e.g. a
    ``NamedSharding``). Every other leaf comes back as a numpy array (typed PRNG keys
    as jax key arrays) read whole.

    Args:
      path: the ``.json`` record (as returned by :func:`save_checkpoint` or
        :func:`latest_checkpoint`).
      like: a pytree with the expected structure; its leaves (arrays or
        ``jax.ShapeDtypeStruct``) give the expected shapes and dtypes.

    Returns:
      ``(tree, metadata)``: a pytree like ``like`` and the metadata dict stored with it.

    Raises:
      CheckpointError: missing, malformed or corrupted files, or a structure, shape
        or dtype that differs from ``like``; the message names the file and, for a
        mismatch, the leaf.

    Example:
      >>> import tempfile, numpy as np
      >>> p = save_checkpoint(tempfile.mkdtemp(), 0, {"a": np.arange(3)})
      >>> load_checkpoint(p, {"a": np.zeros(3, np.int64)})[0]["a"].tolist()
      [0, 1, 2]
    """
    path = os.fspath(path)
    record = read_record(path)
    expected, treedef = jax.tree_util.tree_flatten_with_path(like)
    _check_like(path, record, expected)
    out = []
    with contextlib.ExitStack() as stack:
        files = _Files(path, record, stack)
        for i, (p, leaf) in enumerate(expected):
            is_step = _step_named(p) and not _is_key(leaf)
            out.append(_load_leaf(files, record, i, leaf, is_step))
    return jax.tree_util.tree_unflatten(treedef, out), record["metadata"]
