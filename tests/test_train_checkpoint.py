"""Checkpoints (npz + JSON, no pickle) and resuming fit / fit_many after a crash."""

import json
import os
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from convjax import train
from convjax.train import checkpoint as ckpt

N, D = 16, 3
ADAM = optax.adam(0.05)


def make_data():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(N, D))
    return {"x": x, "y": x @ np.array([1.0, -2.0, 0.5]) + 0.1 * rng.normal(size=N)}


def loss_fn(p, b):
    r = b["x"] @ p["w"] + p["b"] - b["y"]
    return jnp.mean(r * r), {"mae": jnp.mean(jnp.abs(r))}


def eval_fn(p, d):
    return {"mse": loss_fn(p, d)[0]}


def params0():
    return {"w": jnp.zeros(D), "b": jnp.zeros(())}


KW = dict(steps=12, batch_size=4, eval_every=2, has_aux=True, eval_fn=eval_fn, progress=False)


def assert_bitwise(a, b):
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
        x, y = np.asarray(x), np.asarray(y)
        assert x.dtype == y.dtype and x.shape == y.shape
        assert x.tobytes() == y.tobytes()


class Crash(Exception):
    pass


def crash_after(monkeypatch, step):
    """Makes the run die right after the checkpoint of ``step`` is committed."""
    real = ckpt.save_checkpoint

    def save(directory, s, tree, **kwargs):
        path = real(directory, s, tree, **kwargs)
        if s == step:
            raise Crash(f"killed after step {s}")
        return path

    monkeypatch.setattr(ckpt, "save_checkpoint", save)


# ------------------------------------------------------------------------ file format


def test_roundtrip_without_pickle(tmp_path):
    tree = {
        "bf16": jnp.arange(6, dtype=jnp.bfloat16).reshape(2, 3),
        "f32": np.linspace(0, 1, 5, dtype=np.float32),
        "i": np.int32(7),
        "typed_key": jax.random.key(3),
        "raw_key": jax.random.PRNGKey(4),
        "keys": jax.random.split(jax.random.key(5), 3),
        "nested": [np.ones((2, 2)), (np.zeros(1, np.int64),)],
    }
    path = train.save_checkpoint(tmp_path, 5, tree, metadata={"note": "hi"})
    assert path.endswith("step_000000005.json") and train.latest_checkpoint(tmp_path) == path
    with np.load(path[:-5] + ".npz", allow_pickle=False) as z:  # plain arrays only
        assert all(z[k].dtype != object for k in z.files)
    back, meta = train.load_checkpoint(path, tree)
    assert meta == {"note": "hi"}
    assert back["bf16"].dtype == jnp.bfloat16
    np.testing.assert_array_equal(
        np.asarray(back["bf16"], np.float32), np.arange(6.0).reshape(2, 3)
    )
    for k in ("typed_key", "keys"):
        assert jax.dtypes.issubdtype(back[k].dtype, jax.dtypes.prng_key)
        np.testing.assert_array_equal(jax.random.key_data(back[k]), jax.random.key_data(tree[k]))
    for k in ("f32", "i", "raw_key"):
        np.testing.assert_array_equal(back[k], tree[k])
        assert back[k].dtype == np.asarray(tree[k]).dtype
    record = json.loads(Path(path).read_text())
    assert record["leaves"][0]["path"] == "['bf16']" and record["step"] == 5


def test_keep_and_latest(tmp_path):
    for s in (3, 10, 7, 12):
        train.save_checkpoint(tmp_path, s, {"a": np.float32(s)}, keep=2)
    assert [s for s, _ in ckpt.list_checkpoints(tmp_path)] == [10, 12]
    # A crash while writing leaves a temp file or an npz without its json record: ignored.
    (tmp_path / ".tmp-xyz-step_000000099.npz").write_bytes(b"partial")
    (tmp_path / "step_000000099.npz").write_bytes(b"partial")
    assert train.latest_checkpoint(tmp_path).endswith("step_000000012.json")
    with pytest.raises(FileNotFoundError, match="latest_checkpoint: checkpoint directory `.*nope"):
        train.latest_checkpoint(tmp_path / "nope")


def test_corruption_and_mismatch_name_the_file(tmp_path):
    tree = {"w": np.arange(4.0), "k": np.int32(1)}
    path = train.save_checkpoint(tmp_path, 1, tree)
    npz = path[:-5] + ".npz"
    with pytest.raises(
        train.CheckpointError,
        match=r"checkpoint `.*step_000000001.json` does not "
        r"match the expected structure",
    ):
        train.load_checkpoint(path, {"w": tree["w"]})
    with pytest.raises(
        train.CheckpointError,
        match=r"leaf \['w'\] has shape \(4,\) and dtype "
        r"float64, expected shape \(5,\)",
    ):
        train.load_checkpoint(path, {"w": np.zeros(5), "k": np.int32(0)})
    with pytest.raises(
        train.CheckpointError,
        match=r"leaf \['w'\] .* expected shape \(4,\) and "
        r"dtype float32",
    ):
        train.load_checkpoint(path, {"w": np.zeros(4, np.float32), "k": np.int32(0)})
    raw = bytearray(Path(npz).read_bytes())
    raw[len(raw) // 2] ^= 0xFF
    Path(npz).write_bytes(bytes(raw))
    with pytest.raises(
        train.CheckpointError,
        match=r"checkpoint arrays `.*step_000000001.npz` are "
        r"corrupted: their SHA-256 does not match",
    ):
        train.load_checkpoint(path, tree)
    os.remove(npz)
    with pytest.raises(
        train.CheckpointError,
        match=r"checkpoint arrays `.*step_000000001.npz` "
        r"\(named by `.*step_000000001.json`\) does not exist",
    ):
        train.load_checkpoint(path, tree)
    Path(path).write_text('{"format": "convjax.train.checkpoint/2", "st')
    with pytest.raises(
        train.CheckpointError,
        match=r"checkpoint record `.*step_000000001.json` is "
        r"corrupted \(not valid JSON\)",
    ):
        train.load_checkpoint(path, tree)


def test_save_refuses_pickle_only_dtypes(tmp_path):
    with pytest.raises(TypeError, match="cannot store a leaf of dtype object without pickle"):
        train.save_checkpoint(tmp_path, 0, {"o": np.array([None, 1], dtype=object)})


# ------------------------------------------------------------------------------ resume


def test_resume_after_crash_is_bitwise_identical(tmp_path, monkeypatch):
    data, key = make_data(), jax.random.key(0)
    full = train.fit(loss_fn, params0(), ADAM, data, key, eval_data=data, **KW)

    crash_after(monkeypatch, 6)
    with pytest.raises(Crash):
        train.fit(
            loss_fn,
            params0(),
            ADAM,
            data,
            key,
            eval_data=data,
            checkpoint_dir=tmp_path,
            checkpoint_every=2,
            **KW,
        )
    monkeypatch.undo()
    assert train.latest_checkpoint(tmp_path).endswith("step_000000006.json")
    resumed = train.fit(
        loss_fn,
        params0(),
        ADAM,
        data,
        key,
        eval_data=data,
        checkpoint_dir=tmp_path,
        checkpoint_every=2,
        resume=True,
        **KW,
    )
    assert resumed.step == 12
    assert_bitwise(resumed.params, full.params)
    assert_bitwise(resumed.opt_state, full.opt_state)
    assert resumed.history.keys() == full.history.keys()
    assert_bitwise(resumed.history, full.history)

    # Rerunning the finished job returns the final checkpoint without training.
    again = train.fit(
        loss_fn,
        params0(),
        ADAM,
        data,
        key,
        eval_data=data,
        checkpoint_dir=tmp_path,
        resume=True,
        checkpoint_every=2,
        **KW,
    )
    assert_bitwise(again.params, full.params)
    assert_bitwise(again.history, full.history)


def test_fit_many_resume_with_hyperparameters(tmp_path, monkeypatch):
    data, n = make_data(), 3
    keys = jax.random.split(jax.random.key(1), n)
    params = jax.vmap(lambda k: {"w": jax.random.normal(k, (D,)), "b": jnp.zeros(())})(keys)
    hyper = {"lr": jnp.array([0.01, 0.05, 0.1])}

    def make_opt(h):
        return optax.adam(h["lr"])

    kw = dict(KW, steps=6, checkpoint_every=2)
    full = train.fit_many(
        loss_fn,
        params,
        make_opt,
        data,
        keys,
        hyper=hyper,
        eval_data=data,
        **dict(kw, checkpoint_every=None),
    )
    crash_after(monkeypatch, 4)
    with pytest.raises(Crash):
        train.fit_many(
            loss_fn,
            params,
            make_opt,
            data,
            keys,
            hyper=hyper,
            eval_data=data,
            checkpoint_dir=tmp_path,
            **kw,
        )
    monkeypatch.undo()
    resumed = train.fit_many(
        loss_fn,
        params,
        make_opt,
        data,
        keys,
        hyper=hyper,
        eval_data=data,
        checkpoint_dir=tmp_path,
        resume=True,
        **kw,
    )
    assert_bitwise(resumed.params, full.params)
    assert_bitwise(resumed.history, full.history)
    assert resumed.history["eval_mse"].shape == (n, 3)

    other = {"lr": jnp.array([0.01, 0.05, 0.2])}
    with pytest.raises(
        train.CheckpointError,
        match=r"fit_many: checkpoint `.*step_000000006.json` "
        r"does not match this call's settings: hyper",
    ):
        train.fit_many(
            loss_fn,
            params,
            make_opt,
            data,
            keys,
            hyper=other,
            eval_data=data,
            checkpoint_dir=tmp_path,
            resume=True,
            **kw,
        )


def test_resume_extends_training(tmp_path):
    data, key = make_data(), jax.random.key(2)
    kw = dict(KW, eval_data=data)
    full = train.fit(loss_fn, params0(), ADAM, data, key, **kw)
    train.fit(loss_fn, params0(), ADAM, data, key, checkpoint_dir=tmp_path, **dict(kw, steps=6))
    more = train.fit(
        loss_fn, params0(), ADAM, data, key, checkpoint_dir=tmp_path, resume=True, **kw
    )
    assert_bitwise(more.params, full.params)
    assert more.history["step"].tolist() == list(range(2, 13, 2))


def test_resume_errors(tmp_path):
    data, key = make_data(), jax.random.key(0)
    run = dict(
        loss_fn=loss_fn, params=params0(), optimizer=ADAM, data=data, key=key, eval_data=data, **KW
    )
    missing = tmp_path / "missing"
    with pytest.raises(
        FileNotFoundError,
        match=r"fit: `resume=True` but the checkpoint "
        r"directory `.*missing` does not exist",
    ):
        train.fit(checkpoint_dir=missing, resume=True, **run)
    # An existing empty directory starts from scratch.
    empty = tmp_path / "empty"
    empty.mkdir()
    first = train.fit(checkpoint_dir=empty, resume=True, **dict(run, steps=4))
    assert first.step == 4 and train.latest_checkpoint(empty).endswith("step_000000004.json")
    with pytest.raises(
        ValueError,
        match=r"fit: `checkpoint_dir` `.*empty` already holds "
        r"checkpoints; pass `resume=True`",
    ):
        train.fit(checkpoint_dir=empty, **run)
    with pytest.raises(
        train.CheckpointError,
        match=r"fit: checkpoint `.*step_000000004.json` "
        r"does not match this call's settings: batch_size: checkpoint 4, this "
        r"call 8",
    ):
        train.fit(checkpoint_dir=empty, resume=True, **dict(run, batch_size=8))
    with pytest.raises(
        train.CheckpointError,
        match=r"checkpoint `.*step_000000004.json` does "
        r"not match the expected structure: 14 leaves stored, 17 expected; missing "
        r"\['state'\]\.params\['c'\], ",
    ):
        train.fit(
            checkpoint_dir=empty, resume=True, **dict(run, params={**params0(), "c": jnp.zeros(2)})
        )
    with pytest.raises(
        train.CheckpointError,
        match=r"checkpoint `.*step_000000004.json`: leaf "
        r"\['state'\]\.params\['w'\] has shape \(3,\) and dtype float64, "
        r"expected shape \(3,\) and dtype float32",
    ):
        train.fit(
            checkpoint_dir=empty,
            resume=True,
            **dict(run, params={"w": jnp.zeros(D, jnp.float32), "b": jnp.zeros(())}),
        )
    with pytest.raises(
        ValueError,
        match=r"fit: checkpoint `.*step_000000004.json` is at step "
        r"4, beyond `steps` \(2\)",
    ):
        train.fit(checkpoint_dir=empty, resume=True, **dict(run, steps=2))
    bad = empty / "step_000000004.json"
    bad.write_text("not json")
    with pytest.raises(
        train.CheckpointError,
        match=r"checkpoint record `.*step_000000004.json` "
        r"is corrupted",
    ):
        train.fit(checkpoint_dir=empty, resume=True, **run)


def test_nonfinite_block_is_not_checkpointed(tmp_path):
    data = make_data()
    data["y"][:] = np.nan
    with pytest.raises(train.NonFiniteError, match=r"fit: update 1 produced non-finite"):
        train.fit(
            loss_fn,
            params0(),
            ADAM,
            data,
            jax.random.key(0),
            checkpoint_dir=tmp_path,
            eval_data=data,
            **KW,
        )
    assert train.latest_checkpoint(tmp_path) is None


# ------------------------------------------------------------------ malformed checkpoints
#
# Each case edits one part of a valid checkpoint and expects a CheckpointError naming the
# file. Edits of the arrays "fix up" the recorded size and SHA-256 (anyone who can write
# the directory can do that: the checksum detects accidents, it authenticates nothing),
# so the checks behind the checksum are exercised too.

TREE = {
    "w": np.arange(6.0).reshape(2, 3),
    "key": jax.random.key(7),
    "state": {"step": np.int32(4)},
    "history": {"step": np.array([2, 4], np.int32)},
}


def like():
    return {
        "w": np.zeros((2, 3)),
        "key": jax.random.key(0),
        "state": {"step": np.int32(0)},
        "history": {"step": np.zeros(2, np.int32)},
    }


def saved(tmp_path, step=4, tree=None):
    path = train.save_checkpoint(tmp_path, step, TREE if tree is None else tree)
    return Path(path), Path(path).with_suffix(".npz")


def edit_record(path, fn):
    record = json.loads(path.read_text())
    fn(record)
    path.write_text(json.dumps(record))


def refix(path):
    """Records the npz's current size and SHA-256 (what a careful forger would do)."""
    npz = path.with_suffix(".npz")
    import hashlib

    def fix(r):
        r["files"][0]["size"] = npz.stat().st_size
        r["files"][0]["sha256"] = hashlib.sha256(npz.read_bytes()).hexdigest()

    edit_record(path, fix)


def edit_arrays(path, fn):
    npz = path.with_suffix(".npz")
    with np.load(npz, allow_pickle=False) as z:
        members = {k: z[k] for k in z.files}
    fn(members)
    with open(npz, "wb") as f:
        np.savez(f, **members)
    refix(path)


def leaf(record, name):
    return next(x for x in record["leaves"] if x["path"] == name)


def at(record, *keys):
    """The object reached by ``keys``; a key starting with "[" names a leaf by its path."""
    obj = record
    for k in keys:
        obj = leaf(obj, k) if k.startswith("[") else obj[k]
    return obj


def set_(*keys, value):
    def fn(r):
        at(r, *keys[:-1])[keys[-1]] = value

    return fn


def drop(*keys):
    def fn(r):
        del at(r, *keys[:-1])[keys[-1]]

    return fn


W = "['w']"
RECORD_CASES = [
    # (case id, edit of the record, message pattern after "checkpoint record `...json`")
    (
        "leaves [1]",
        set_("leaves", value=[1]),
        r"is malformed: leaves\[0\] must be an object, "
        r"got 1",
    ),
    (
        "leaves None",
        set_("leaves", value=None),
        r"is malformed: `leaves` must be a list, got "
        r"None",
    ),
    ("npz None", set_("files", value=None), r"is malformed: `files` must be a non-empty list"),
    ("files []", set_("files", value=[]), r"is malformed: `files` must be a non-empty list"),
    ("leaf without shape", drop(W, "shape"), r"is malformed: leaves\[3\] lacks \['shape'\]"),
    (
        "leaf with extra key",
        set_(W, "pickle", value=True),
        r"leaves\[3\] lacks nothing and has "
        r"unexpected \['pickle'\]",
    ),
    (
        "shape [-1]",
        set_(W, "shape", value=[-1, 3]),
        r"leaves\[3\]\.shape must be a list of "
        r"ints >= 0, got \[-1, 3\]",
    ),
    ("shape '2x3'", set_(W, "shape", value="2x3"), r"leaves\[3\]\.shape must be a list of ints"),
    ("dtype 5", set_(W, "dtype", value=5), r"leaves\[3\]\.path and \.dtype must be strings"),
    (
        "stored_as float32",
        set_(W, "stored_as", value="float32"),
        r"leaves\[3\]\.stored_as must "
        r"be one of",
    ),
    (
        "chunks None",
        set_(W, "chunks", value=None),
        r"leaves\[3\]\.chunks must be a non-empty "
        r"list",
    ),
    (
        "chunk outside the shape",
        set_(W, "chunks", value=[{"file": 0, "start": [0, 0], "stop": [3, 3]}]),
        r"leaves\[3\]\.chunks\[0\] is not a box inside shape \(2, 3\)",
    ),
    (
        "chunk in a file that does not exist",
        set_(W, "chunks", value=[{"file": 1, "start": [0, 0], "stop": [2, 3]}]),
        r"in one of 1 files",
    ),
    (
        "chunks that do not cover",
        set_(W, "chunks", value=[{"file": 0, "start": [0, 0], "stop": [1, 3]}]),
        r"leaves\[3\]\.chunks cover 3 elements of 6",
    ),
    (
        "chunks that overlap",
        set_(
            W,
            "chunks",
            value=[
                {"file": 0, "start": [0, 0], "stop": [2, 2]},
                {"file": 0, "start": [1, 1], "stop": [2, 3]},
            ],
        ),
        r"leaves\[3\]\.chunks overlap",
    ),
    (
        "key leaf without key_shape",
        drop("['key']", "key_shape"),
        r"leaves\[1\] is a key leaf "
        r"without",
    ),
    (
        "npz outside the directory",
        set_("files", value=[{"name": "../b/step_000000004.npz", "size": 1, "sha256": "0" * 64}]),
        r"the array files must be \['step_000000004.npz'\] or 'step_000000004.p<process>.npz' "
        r"names",
    ),
    (
        "npz an absolute path",
        set_("files", value=[{"name": "/tmp/step_000000004.npz", "size": 1, "sha256": "0" * 64}]),
        r"the array files must be",
    ),
    (
        "npz of another step",
        set_("files", value=[{"name": "step_000000002.npz", "size": 1, "sha256": "0" * 64}]),
        r"the array files must be",
    ),
    (
        "shard files out of order",
        set_(
            "files",
            value=[
                {"name": f"step_000000004.p{k:05d}.npz", "size": 1, "sha256": "0" * 64}
                for k in (1, 0)
            ],
        ),
        r"the array files must be",
    ),
    (
        "size '852'",
        lambda r: r["files"][0].update(size="852"),
        r"files\[0\]\.size must be an "
        r"int >= 0, got '852'",
    ),
    ("size -1", lambda r: r["files"][0].update(size=-1), r"files\[0\]\.size must be an int"),
    (
        "sha256 not hex",
        lambda r: r["files"][0].update(sha256="xyz"),
        r"files\[0\]\.sha256 must "
        r"be 64 hex digits",
    ),
    ("step -4", set_("step", value=-4), r"`step` must be the int 4 of the file name, got -4"),
    ("step '4'", set_("step", value="4"), r"`step` must be the int 4 of the file name, got '4'"),
    (
        "step true",
        set_("step", value=True),
        r"`step` must be the int 4 of the file name, got "
        r"True",
    ),
    ("step 3 in step_4's record", set_("step", value=3), r"`step` must be the int 4"),
    ("missing key", drop("metadata"), r"the record lacks \['metadata'\]"),
    ("metadata a list", set_("metadata", value=[1]), r"`metadata` must be an object"),
    (
        "record without format",
        drop("format"),
        r"is not a convjax checkpoint record \(format "
        r"None",
    ),
    (
        "format /1",
        set_("format", value="convjax.train.checkpoint/1"),
        r"has format 'convjax.train.checkpoint/1', but this convjax reads "
        r"'convjax.train.checkpoint/2' only: the checkpoint format changed .* Load it with the "
        r"convjax version that wrote it, or start the run again in an empty directory",
    ),
]


@pytest.mark.parametrize(
    "edit,pattern", [c[1:] for c in RECORD_CASES], ids=[c[0] for c in RECORD_CASES]
)
def test_malformed_record_is_refused_naming_the_file(tmp_path, edit, pattern):
    path, _ = saved(tmp_path)
    edit_record(path, edit)
    with pytest.raises(
        train.CheckpointError,
        match=r"checkpoint record `.*step_000000004\.json` " + r".*" + pattern,
    ):
        ckpt.read_record(path)
    with pytest.raises(train.CheckpointError, match=r"step_000000004\.json"):
        train.load_checkpoint(path, like())


def test_record_not_json_object_or_wrongly_named(tmp_path):
    path, _ = saved(tmp_path)
    path.write_text("[1, 2]")
    with pytest.raises(
        train.CheckpointError,
        match=r"`.*step_000000004.json` is not a convjax "
        r"checkpoint record",
    ):
        ckpt.read_record(path)
    path, _ = saved(tmp_path)
    other = tmp_path / "best.json"
    other.write_text(path.read_text())
    with pytest.raises(
        train.CheckpointError,
        match=r"`.*best.json` is not named "
        r"step_<9 digits>.json",
    ):
        ckpt.read_record(other)


def test_record_size_is_bounded(tmp_path, monkeypatch):
    path, _ = saved(tmp_path)
    monkeypatch.setattr(ckpt, "MAX_RECORD_BYTES", 100)
    with pytest.raises(
        train.CheckpointError,
        match=r"checkpoint record `.*step_000000004.json` "
        r"holds \d+ bytes, more than the 100 a record may",
    ):
        ckpt.read_record(path)


def test_metadata_field_checks_callers_fields(tmp_path):
    path, _ = saved(tmp_path)
    meta = {"n_blocks": "abc", "lr": 1, "flag": True}
    with pytest.raises(
        train.CheckpointError,
        match=r"checkpoint record `x/step_000000004.json` "
        r"is malformed: metadata field `n_blocks` must be int, got 'abc'",
    ):
        ckpt.metadata_field("x/step_000000004.json", meta, "n_blocks", int)
    with pytest.raises(
        train.CheckpointError,
        match=r"metadata field `flag` must be int, got "
        r"True",
    ):
        ckpt.metadata_field(path, meta, "flag", int)
    with pytest.raises(train.CheckpointError, match=r"metadata field `steps` is missing"):
        ckpt.metadata_field(path, meta, "steps", int)
    with pytest.raises(train.CheckpointError, match=r"metadata field `lr` must be >= 2, got 1"):
        ckpt.metadata_field(path, meta, "lr", float, minimum=2)
    assert ckpt.metadata_field(path, meta, "lr", float) == 1
    assert ckpt.metadata_field(path, {"n": 3}, "n", int, minimum=0) == 3


ARRAY_CASES = [
    # (case id, edit of the npz members (checksum fixed up), message pattern)
    (
        "key data of the wrong shape",
        lambda m: m.update(leaf_00001_0000=np.arange(3, dtype=np.uint32)),
        r"member leaf_00001_0000 holds shape \(3,\) and dtype uint32, the record says shape "
        r"\(2,\)",
    ),
    (
        "array of the wrong dtype",
        lambda m: m.update(leaf_00003_0000=np.zeros((2, 3), np.float32)),
        r"member leaf_00003_0000 holds shape \(2, 3\) and dtype float32, the record says shape "
        r"\(2, 3\) and dtype float64",
    ),
    (
        "state.step edited to -50",
        lambda m: m.update(leaf_00002_0000=np.int32(-50)),
        r"leaf \['state'\]\['step'\] is a step counter \(its last key is `step`\) and must hold "
        r"values in \[0, 4\] \(the checkpoint's step\), got values in \[-50, -50\]",
    ),
    (
        "state.step beyond the record's step",
        lambda m: m.update(leaf_00002_0000=np.int32(90)),
        r"got values in \[90, 90\]",
    ),
    (
        "history.step negative",
        lambda m: m.update(leaf_00000_0000=np.array([-2, 4], np.int32)),
        r"leaf \['history'\]\['step'\] is a step counter",
    ),
    (
        "extra member",
        lambda m: m.update(evil=np.zeros(3)),
        r"hold members .*'evil.npy'.* but `.*step_000000004.json` places 4 chunks there",
    ),
    ("missing member", lambda m: m.pop("leaf_00003_0000"), r"places 4 chunks there"),
]


@pytest.mark.parametrize(
    "edit,pattern", [c[1:] for c in ARRAY_CASES], ids=[c[0] for c in ARRAY_CASES]
)
def test_malformed_arrays_are_refused_naming_the_file(tmp_path, edit, pattern):
    path, _ = saved(tmp_path)
    edit_arrays(path, edit)
    with pytest.raises(train.CheckpointError, match=r"checkpoint .*step_000000004\..*" + pattern):
        train.load_checkpoint(path, like())


def test_record_key_shape_must_match_the_expected_key(tmp_path):
    path, _ = saved(tmp_path)

    def fix(r):
        k = leaf(r, "['key']")
        k["key_shape"], k["chunks"] = [3], [{"file": 0, "start": [0], "stop": [3]}]

    edit_record(path, fix)
    with pytest.raises(
        train.CheckpointError,
        match=r"checkpoint `.*step_000000004.json`: key leaf "
        r"\['key'\] stores key data of trailing shape \[3\] as 'uint32', expected "
        r"\[2\] as uint32 for key<fry>",
    ):
        train.load_checkpoint(path, like())


def test_npy_header_is_checked_before_the_data_is_read(tmp_path):
    """A member whose header claims 10^12 elements is refused from its header."""
    path, npz = saved(tmp_path)
    import zipfile

    with np.load(npz, allow_pickle=False) as z:
        members = {k: z[k] for k in z.files}
    with zipfile.ZipFile(npz, "w") as zf:
        for k, v in members.items():
            with zf.open(k + ".npy", "w") as f:
                if k == "leaf_00003_0000":
                    np.lib.format.write_array_header_1_0(
                        f, {"descr": "<f8", "fortran_order": False, "shape": (10**6, 10**6)}
                    )
                    f.write(b"\0" * 48)
                else:
                    np.lib.format.write_array(f, v)
    refix(path)
    with pytest.raises(
        train.CheckpointError,
        match=r"member leaf_00003_0000 holds shape "
        r"\(1000000, 1000000\) and dtype float64, the record says shape \(2, 3\)",
    ):
        train.load_checkpoint(path, like())


def test_truncated_member_is_refused(tmp_path):
    path, npz = saved(tmp_path)
    import zipfile

    with zipfile.ZipFile(npz) as zf:  # rewritten with w's last 8 bytes missing
        raw = {n: zf.read(n) for n in zf.namelist()}
    with zipfile.ZipFile(npz, "w") as zf:
        for n, b in raw.items():
            zf.writestr(n, b[:-8] if n == "leaf_00003_0000.npy" else b)
    refix(path)
    with pytest.raises(
        train.CheckpointError,
        match=r"member leaf_00003_0000 is truncated \(40 of "
        r"48 bytes\)",
    ):
        train.load_checkpoint(path, like())


# ------------------------------------------------------- files that are not regular files


def test_npz_symlink_to_dev_zero_is_refused_without_reading(tmp_path):
    path, npz = saved(tmp_path)
    npz.unlink()
    npz.symlink_to("/dev/zero")
    with pytest.raises(
        train.CheckpointError,
        match=r"checkpoint arrays `.*step_000000004.npz` "
        r"\(named by `.*step_000000004.json`\) is a symbolic link; checkpoint "
        r"files must be regular files",
    ):
        train.load_checkpoint(path, like())


def test_npz_symlink_to_a_valid_file_elsewhere_is_refused(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir()
    b.mkdir()
    path, npz = saved(a)
    _, other = saved(b)
    npz.unlink()
    npz.symlink_to(other)
    with pytest.raises(train.CheckpointError, match=r"is a symbolic link"):
        train.load_checkpoint(path, like())


def test_record_symlink_is_refused(tmp_path):
    path, _ = saved(tmp_path)
    real = tmp_path / "real.json"
    path.rename(real)
    path.symlink_to(real)
    with pytest.raises(
        train.CheckpointError,
        match=r"checkpoint record `.*step_000000004.json` "
        r"is a symbolic link",
    ):
        train.load_checkpoint(path, like())


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no FIFOs on this platform")
@pytest.mark.parametrize("which", ["npz", "json"])
def test_fifo_is_refused_without_blocking(tmp_path, which):
    path, npz = saved(tmp_path)
    target = npz if which == "npz" else path
    target.unlink()
    os.mkfifo(target)  # opening it for reading would block until a writer came
    with pytest.raises(
        train.CheckpointError,
        match=rf"`.*step_000000004\.{which}`.* is not a "
        r"regular file \(a directory, device, FIFO or socket\)",
    ):
        train.load_checkpoint(path, like())


def test_npz_directory_is_refused(tmp_path):
    path, npz = saved(tmp_path)
    npz.unlink()
    npz.mkdir()
    with pytest.raises(train.CheckpointError, match=r"is not a regular file"):
        train.load_checkpoint(path, like())


def test_npz_size_must_match_the_record_before_hashing(tmp_path, monkeypatch):
    path, npz = saved(tmp_path)
    with open(npz, "ab") as f:
        f.write(b"\0" * 10)
    recorded = json.loads(path.read_text())["files"][0]["size"]
    monkeypatch.setattr(ckpt, "_sha256", lambda f: pytest.fail("hashed before the size check"))
    with pytest.raises(
        train.CheckpointError,
        match=r"checkpoint arrays `.*step_000000004.npz` "
        rf"holds {recorded + 10} bytes, but `.*step_000000004.json` records "
        rf"{recorded}",
    ):
        train.load_checkpoint(path, like())


# ---------------------------------------------------------------------- chunked leaves


def test_hand_made_chunked_checkpoint_loads_whole_and_sharded(tmp_path):
    """A record written by hand from the format's description: two shard files, chunks."""
    import hashlib

    full = np.arange(24.0).reshape(4, 6)
    parts = {
        0: {"leaf_00000_0000": full[:2], "leaf_00000_0001": full[2:, :3]},
        1: {"leaf_00000_0002": full[2:, 3:]},
    }
    files = []
    for p, members in parts.items():
        name = f"step_000000002.p{p:05d}.npz"
        with open(tmp_path / name, "wb") as f:
            np.savez(f, **members)
        raw = (tmp_path / name).read_bytes()
        files.append({"name": name, "size": len(raw), "sha256": hashlib.sha256(raw).hexdigest()})
    chunks = [
        {"file": 0, "start": [0, 0], "stop": [2, 6]},
        {"file": 0, "start": [2, 0], "stop": [4, 3]},
        {"file": 1, "start": [2, 3], "stop": [4, 6]},
    ]
    record = {
        "format": ckpt.FORMAT,
        "step": 2,
        "files": files,
        "metadata": {},
        "leaves": [{"path": "['a']", "shape": [4, 6], "dtype": "float64", "chunks": chunks}],
    }
    path = tmp_path / "step_000000002.json"
    path.write_text(json.dumps(record))
    back, _ = train.load_checkpoint(path, {"a": np.zeros((4, 6))})
    np.testing.assert_array_equal(back["a"], full)
    # A sharded template: one device here, so the whole array through the callback path.
    sharding = jax.sharding.SingleDeviceSharding(jax.devices()[0])
    got, _ = train.load_checkpoint(
        path, {"a": jax.ShapeDtypeStruct((4, 6), jnp.float64, sharding=sharding)}
    )
    assert isinstance(got["a"], jax.Array) and got["a"].sharding == sharding
    np.testing.assert_array_equal(np.asarray(got["a"]), full)
    # A chunk moved into the other file is refused from the member list.
    record["leaves"][0]["chunks"][1]["file"] = 1
    path.write_text(json.dumps(record))
    with pytest.raises(
        train.CheckpointError,
        match=r"step_000000002.p00000.npz` hold members "
        r"\['leaf_00000_0000.npy', 'leaf_00000_0001.npy'\], but "
        r"`.*step_000000002.json` places 1 chunks there",
    ):
        train.load_checkpoint(path, {"a": np.zeros((4, 6))})


def test_sharded_template_gives_a_jax_array_other_leaves_numpy(tmp_path):
    path, _ = saved(tmp_path)
    dev = jax.devices()[0]
    tmpl = like()
    tmpl["w"] = jax.ShapeDtypeStruct(
        (2, 3), jnp.float64, sharding=jax.sharding.SingleDeviceSharding(dev)
    )
    back, _ = train.load_checkpoint(path, tmpl)
    assert isinstance(back["w"], jax.Array) and isinstance(back["state"]["step"], np.ndarray)
    np.testing.assert_array_equal(np.asarray(back["w"]), TREE["w"])


# ----------------------------------------------------------------------------- writing


def test_save_argument_errors(tmp_path):
    with pytest.raises(ValueError, match=r"save_checkpoint: `step` must be an int >= 0, got -1"):
        train.save_checkpoint(tmp_path, -1, TREE)
    with pytest.raises(TypeError, match=r"save_checkpoint: `step` must be an int >= 0, got str"):
        train.save_checkpoint(tmp_path, "3", TREE)
    with pytest.raises(TypeError, match=r"save_checkpoint: `step` must be an int >= 0, got bool"):
        train.save_checkpoint(tmp_path, True, TREE)
    with pytest.raises(
        ValueError,
        match=r"save_checkpoint: `keep` must be None or an int >= 1, "
        r"got 0",
    ):
        train.save_checkpoint(tmp_path, 4, TREE, keep=0)
    with pytest.raises(TypeError, match=r"save_checkpoint: `metadata` must be a dict, got list"):
        train.save_checkpoint(tmp_path, 4, TREE, metadata=[1])
    with pytest.raises(TypeError, match=r"save_checkpoint: `metadata` is not JSON-serialisable"):
        train.save_checkpoint(tmp_path, 4, TREE, metadata={"a": np.float32(1)})
    with pytest.raises(
        ValueError,
        match=r"save_checkpoint: leaf \['history'\]\['step'\] is a "
        r"step counter .* values in \[0, 3\] .* got values in \[2, 4\]",
    ):
        train.save_checkpoint(tmp_path, 3, TREE)
    with pytest.raises(TypeError, match=r"checkpoint_path: `step` must be an int >= 0, got float"):
        ckpt.checkpoint_path(tmp_path, 1.5)
    assert os.listdir(tmp_path) == []  # nothing was written by any of the calls above


@pytest.mark.parametrize("umask,mode", [(0o022, 0o644), (0o077, 0o600), (0o002, 0o664)])
def test_files_follow_the_umask(tmp_path, umask, mode):
    old = os.umask(umask)
    try:
        path, npz = saved(tmp_path)
    finally:
        os.umask(old)
    assert oct(path.stat().st_mode & 0o777) == oct(mode)
    assert oct(npz.stat().st_mode & 0o777) == oct(mode)


def test_stale_temporaries_are_removed_by_the_next_save(tmp_path):
    saved(tmp_path, step=2, tree={"a": np.zeros(2)})
    stale = [
        tmp_path / ".tmp-0123456789abcdef-step_000000003.npz",
        tmp_path / ".tmp-fedcba9876543210-step_000000003.json",
        tmp_path / ".tmp-00000000aaaaaaaa-step_000000003.p00001.npz",
    ]
    fresh = tmp_path / ".tmp-1111111111111111-step_000000009.npz"  # a writer now running
    unrelated = [tmp_path / ".tmp-notours.npz", tmp_path / "notes.txt"]
    for f in stale + [fresh] + unrelated:
        f.write_bytes(b"partial")
    for f in stale + unrelated:
        os.utime(f, (1_000_000_000, 1_000_000_000))  # 2001: before any write below
    # latest_checkpoint is a reader: it removes nothing.
    assert train.latest_checkpoint(tmp_path).endswith("step_000000002.json")
    assert all(f.exists() for f in stale + [fresh] + unrelated)
    future = 4_000_000_000  # a file modified after the save's own arrays is not stale
    os.utime(fresh, (future, future))
    train.save_checkpoint(tmp_path, 4, {"a": np.zeros(2)})
    assert not any(f.exists() for f in stale)
    assert fresh.exists() and all(f.exists() for f in unrelated)


def test_keep_removes_records_and_their_arrays(tmp_path):
    for s in (1, 2, 3):
        train.save_checkpoint(tmp_path, s, {"a": np.float32(s)}, keep=2)
    # A shard file of step 2 (as a multi-process run writes) goes with its step.
    (tmp_path / "step_000000002.p00001.npz").write_bytes(b"x")
    train.save_checkpoint(tmp_path, 4, {"a": np.float32(4)}, keep=2)
    assert sorted(os.listdir(tmp_path)) == [
        "step_000000003.json",
        "step_000000003.npz",
        "step_000000004.json",
        "step_000000004.npz",
    ]


def test_resume_refuses_an_npz_symlinked_to_dev_zero(tmp_path):
    """The issue's reproducer: resume=True used to hang hashing /dev/zero."""
    data, key = make_data(), jax.random.key(0)
    run = dict(
        loss_fn=loss_fn,
        params=params0(),
        optimizer=ADAM,
        data=data,
        key=key,
        eval_data=data,
        **dict(KW, steps=4),
    )
    train.fit(checkpoint_dir=tmp_path, **run)
    npz = tmp_path / "step_000000004.npz"
    npz.unlink()
    npz.symlink_to("/dev/zero")
    with pytest.raises(
        train.CheckpointError,
        match=r"step_000000004.npz` \(named by "
        r"`.*step_000000004.json`\) is a symbolic link",
    ):
        train.fit(checkpoint_dir=tmp_path, resume=True, **run)


def test_unknown_key_impl_is_refused(tmp_path):
    path, _ = saved(tmp_path)
    edit_record(path, set_("['key']", "key_impl", value="nonsense"))
    with pytest.raises(
        train.CheckpointError,
        match=r"checkpoint `.*step_000000004.json`: leaf "
        r"\['key'\]: key data of impl 'nonsense' cannot be wrapped",
    ):
        train.load_checkpoint(path, like())


def test_key_impl_must_make_the_recorded_key_type(tmp_path):
    tree = {"k": jax.random.key(0, impl="rbg")}
    path = Path(train.save_checkpoint(tmp_path, 0, tree))
    edit_record(path, set_("['k']", "key_impl", value="unsafe_rbg"))  # same data shape (4,)
    with pytest.raises(
        train.CheckpointError,
        match=r"leaf \['k'\]: impl 'unsafe_rbg' makes "
        r"key<urbg> keys, the record says key<rbg>",
    ):
        train.load_checkpoint(path, tree)
