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
    np.testing.assert_array_equal(np.asarray(back["bf16"], np.float32),
                                  np.arange(6.0).reshape(2, 3))
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
    with pytest.raises(train.CheckpointError, match=r"checkpoint `.*step_000000001.json` does not "
                       r"match the expected structure"):
        train.load_checkpoint(path, {"w": tree["w"]})
    with pytest.raises(train.CheckpointError, match=r"leaf \['w'\] has shape \(4,\) and dtype "
                       r"float64, expected shape \(5,\)"):
        train.load_checkpoint(path, {"w": np.zeros(5), "k": np.int32(0)})
    with pytest.raises(train.CheckpointError, match=r"leaf \['w'\] .* expected shape \(4,\) and "
                       r"dtype float32"):
        train.load_checkpoint(path, {"w": np.zeros(4, np.float32), "k": np.int32(0)})
    raw = bytearray(Path(npz).read_bytes())
    raw[len(raw) // 2] ^= 0xFF
    Path(npz).write_bytes(bytes(raw))
    with pytest.raises(train.CheckpointError, match=r"checkpoint arrays `.*step_000000001.npz` are "
                       r"corrupted: their SHA-256 does not match"):
        train.load_checkpoint(path, tree)
    os.remove(npz)
    with pytest.raises(train.CheckpointError, match=r"checkpoint arrays `.*step_000000001.npz` "
                       r"\(named by `.*step_000000001.json`\) does not exist"):
        train.load_checkpoint(path, tree)
    Path(path).write_text('{"format": "convjax.train.checkpoint/2", "st')
    with pytest.raises(train.CheckpointError, match=r"checkpoint record `.*step_000000001.json` is "
                       r"corrupted \(not valid JSON\)"):
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
        train.fit(loss_fn, params0(), ADAM, data, key, eval_data=data, checkpoint_dir=tmp_path,
                  checkpoint_every=2, **KW)
    monkeypatch.undo()
    assert train.latest_checkpoint(tmp_path).endswith("step_000000006.json")
    resumed = train.fit(loss_fn, params0(), ADAM, data, key, eval_data=data,
                        checkpoint_dir=tmp_path, checkpoint_every=2, resume=True, **KW)
    assert resumed.step == 12
    assert_bitwise(resumed.params, full.params)
    assert_bitwise(resumed.opt_state, full.opt_state)
    assert resumed.history.keys() == full.history.keys()
    assert_bitwise(resumed.history, full.history)

    # Rerunning the finished job returns the final checkpoint without training.
    again = train.fit(loss_fn, params0(), ADAM, data, key, eval_data=data,
                      checkpoint_dir=tmp_path, resume=True, checkpoint_every=2, **KW)
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
    full = train.fit_many(loss_fn, params, make_opt, data, keys, hyper=hyper, eval_data=data,
                          **dict(kw, checkpoint_every=None))
    crash_after(monkeypatch, 4)
    with pytest.raises(Crash):
        train.fit_many(loss_fn, params, make_opt, data, keys, hyper=hyper, eval_data=data,
                       checkpoint_dir=tmp_path, **kw)
    monkeypatch.undo()
    resumed = train.fit_many(loss_fn, params, make_opt, data, keys, hyper=hyper, eval_data=data,
                             checkpoint_dir=tmp_path, resume=True, **kw)
    assert_bitwise(resumed.params, full.params)
    assert_bitwise(resumed.history, full.history)
    assert resumed.history["eval_mse"].shape == (n, 3)

    other = {"lr": jnp.array([0.01, 0.05, 0.2])}
    with pytest.raises(train.CheckpointError, match=r"fit_many: checkpoint `.*step_000000006.json` "
                       r"does not match this call's settings: hyper"):
        train.fit_many(loss_fn, params, make_opt, data, keys, hyper=other, eval_data=data,
                       checkpoint_dir=tmp_path, resume=True, **kw)


def test_resume_extends_training(tmp_path):
    data, key = make_data(), jax.random.key(2)
    kw = dict(KW, eval_data=data)
    full = train.fit(loss_fn, params0(), ADAM, data, key, **kw)
    train.fit(loss_fn, params0(), ADAM, data, key, checkpoint_dir=tmp_path,
              **dict(kw, steps=6))
    more = train.fit(loss_fn, params0(), ADAM, data, key, checkpoint_dir=tmp_path, resume=True,
                     **kw)
    assert_bitwise(more.params, full.params)
    assert more.history["step"].tolist() == list(range(2, 13, 2))


def test_resume_errors(tmp_path):
    data, key = make_data(), jax.random.key(0)
    run = dict(loss_fn=loss_fn, params=params0(), optimizer=ADAM, data=data, key=key,
               eval_data=data, **KW)
    missing = tmp_path / "missing"
    with pytest.raises(FileNotFoundError, match=r"fit: `resume=True` but the checkpoint "
                       r"directory `.*missing` does not exist"):
        train.fit(checkpoint_dir=missing, resume=True, **run)
    # An existing empty directory starts from scratch.
    empty = tmp_path / "empty"
    empty.mkdir()
    first = train.fit(checkpoint_dir=empty, resume=True, **dict(run, steps=4))
    assert first.step == 4 and train.latest_checkpoint(empty).endswith("step_000000004.json")
    with pytest.raises(ValueError, match=r"fit: `checkpoint_dir` `.*empty` already holds "
                       r"checkpoints; pass `resume=True`"):
        train.fit(checkpoint_dir=empty, **run)
    with pytest.raises(train.CheckpointError, match=r"fit: checkpoint `.*step_000000004.json` "
                       r"does not match this call's settings: batch_size: checkpoint 4, this "
                       r"call 8"):
        train.fit(checkpoint_dir=empty, resume=True, **dict(run, batch_size=8))
    with pytest.raises(train.CheckpointError, match=r"checkpoint `.*step_000000004.json` does "
                       r"not match the expected structure: 14 leaves stored, 17 expected; missing "
                       r"\['state'\]\.params\['c'\], "):
        train.fit(checkpoint_dir=empty, resume=True,
                  **dict(run, params={**params0(), "c": jnp.zeros(2)}))
    with pytest.raises(train.CheckpointError, match=r"checkpoint `.*step_000000004.json`: leaf "
                       r"\['state'\]\.params\['w'\] has shape \(3,\) and dtype float64, "
                       r"expected shape \(3,\) and dtype float32"):
        train.fit(checkpoint_dir=empty, resume=True,
                  **dict(run, params={"w": jnp.zeros(D, jnp.float32), "b": jnp.zeros(())}))
    with pytest.raises(ValueError, match=r"fit: checkpoint `.*step_000000004.json` is at step "
                       r"4, beyond `steps` \(2\)"):
        train.fit(checkpoint_dir=empty, resume=True, **dict(run, steps=2))
    bad = empty / "step_000000004.json"
    bad.write_text("not json")
    with pytest.raises(train.CheckpointError, match=r"checkpoint record `.*step_000000004.json` "
                       r"is corrupted"):
        train.fit(checkpoint_dir=empty, resume=True, **run)


def test_nonfinite_block_is_not_checkpointed(tmp_path):
    data = make_data()
    data["y"][:] = np.nan
    with pytest.raises(train.NonFiniteError, match="at step 0;"):
        train.fit(loss_fn, params0(), ADAM, data, jax.random.key(0), checkpoint_dir=tmp_path,
                  eval_data=data, **KW)
    assert train.latest_checkpoint(tmp_path) is None
