"""Resume takes its step from the checkpoint's record and checks the arrays agree with it.

Each forged checkpoint below edits the arrays or the metadata of a valid one and fixes up
the recorded size and SHA-256 (as anyone who can write the directory can), so the checks
behind the checksum are what refuses it.
"""

import hashlib
import json

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from convjax import train
from convjax.train import checkpoint as ckpt

N, D = 16, 3
KW = dict(steps=4, batch_size=4, eval_every=2, progress=False)
ADAM = optax.adam(1e-2)


def make_data():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(N, D))
    return {"x": x, "y": x @ np.array([1.0, -2.0, 0.5])}


def loss_fn(p, b):
    r = b["x"] @ p["w"] - b["y"]
    return jnp.mean(r * r)


def fit(directory, **kw):
    return train.fit(
        loss_fn,
        {"w": jnp.zeros(D)},
        ADAM,
        make_data(),
        jax.random.key(0),
        checkpoint_dir=directory,
        **{**KW, **kw},
    )


def fit_many(directory, **kw):
    keys = jax.random.split(jax.random.key(0), 2)
    return train.fit_many(
        loss_fn,
        {"w": jnp.zeros((2, D))},
        ADAM,
        make_data(),
        keys,
        checkpoint_dir=directory,
        **{**KW, **kw},
    )


def forge(path, members=None, metadata=None):
    """Edits the npz members (``{leaf path: fn(array) -> array}``) and/or the metadata."""
    record = json.loads(path.read_text())
    npz = path.with_suffix(".npz")
    with np.load(npz, allow_pickle=False) as z:
        arrays = {k: z[k] for k in z.files}
    for leaf_path, fn in (members or {}).items():
        i = next(i for i, leaf in enumerate(record["leaves"]) if leaf["path"] == leaf_path)
        arrays[f"leaf_{i:05d}_0000"] = fn(arrays[f"leaf_{i:05d}_0000"])
    with open(npz, "wb") as f:
        np.savez(f, **arrays)
    raw = npz.read_bytes()
    record["files"][0].update(size=len(raw), sha256=hashlib.sha256(raw).hexdigest())
    if metadata is not None:
        metadata(record["metadata"])
    path.write_text(json.dumps(record))


def first_checkpoint(tmp_path, run=fit):
    run(tmp_path)
    return tmp_path / "step_000000004.json"


@pytest.mark.parametrize(
    "run,edit,values",
    [
        (fit, lambda s: np.int32(2), r"\[2, 2\]"),
        (fit, lambda s: np.int32(0), r"\[0, 0\]"),
        (fit_many, lambda s: np.array([4, 2], np.int32), r"\[2, 4\]"),
    ],
)
def test_state_step_must_equal_the_record_step(tmp_path, run, edit, values):
    path = first_checkpoint(tmp_path, run)
    forge(path, {"['state'].step": edit})
    fn = run.__name__
    with pytest.raises(
        train.CheckpointError,
        match=rf"{fn}: checkpoint `.*step_000000004\.json` "
        rf"is the record of step 4, but its state\.step holds values in {values}; "
        r"the record and its arrays disagree",
    ):
        run(tmp_path, resume=True, steps=8)


def test_history_must_end_at_the_record_step(tmp_path):
    path = first_checkpoint(tmp_path)
    forge(path, {"['history']['step']": lambda s: np.array([2, 3], np.int32)})
    with pytest.raises(
        train.CheckpointError,
        match=r"fit: checkpoint `.*step_000000004\.json` "
        r"is the record of step 4, but its history ends at step 3",
    ):
        fit(tmp_path, resume=True, steps=8)


def test_unedited_checkpoint_resumes_at_the_record_step(tmp_path):
    first_checkpoint(tmp_path, fit_many)
    res = fit_many(tmp_path, resume=True, steps=8)
    assert res.step == 8 and res.history["step"].tolist() == [2, 4, 6, 8]


@pytest.mark.parametrize(
    "dtype,short",
    [
        ("abc", "'abc'"),
        (None, "None"),
        (3, "3"),
        (["<f8"], r"\['<f8'\]"),
        ("object", "'object'"),
        ("U8", "'U8'"),
    ],
)
def test_garbage_history_dtype_is_refused_naming_the_file(tmp_path, dtype, short):
    path = first_checkpoint(tmp_path)
    forge(path, metadata=lambda m: m["history"].update(loss=dtype))
    with pytest.raises(
        train.CheckpointError,
        match=r"checkpoint record `.*step_000000004\.json` "
        r"is malformed: metadata field `history` gives entry 'loss' the dtype "
        rf"{short}, not the name of a numeric dtype",
    ):
        fit(tmp_path, resume=True, steps=8)


@pytest.mark.parametrize("parallel", ["runs", "data"])
def test_parallel_resume_loads_sharded_and_is_bitwise(tmp_path, monkeypatch, parallel):
    """With ``parallel`` the state is read straight into the loop's sharding."""
    whole = fit_many(None, steps=8, parallel=parallel)
    fit_many(tmp_path, parallel=parallel)
    loaded, real = [], ckpt.load_checkpoint

    def spy(path, like):
        tree, meta = real(path, like)
        loaded.append((like, tree))
        return tree, meta

    monkeypatch.setattr(ckpt, "load_checkpoint", spy)
    res = fit_many(tmp_path, resume=True, steps=8, parallel=parallel)
    [(like, tree)] = loaded
    for want, got in zip(
        jax.tree.leaves(like["state"]), jax.tree.leaves(tree["state"]), strict=True
    ):
        assert want.sharding is not None and got.sharding == want.sharding
    assert all(isinstance(x, np.ndarray) for x in jax.tree.leaves(tree["history"]))
    for a, b in zip(
        jax.tree.leaves((res.params, res.opt_state)),
        jax.tree.leaves((whole.params, whole.opt_state)),
        strict=True,
    ):
        assert np.asarray(a).tobytes() == np.asarray(b).tobytes()
