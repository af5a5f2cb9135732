"""Resume refuses a checkpoint of another run (key, data, optimizer, settings) unless allowed."""

import shutil

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
import sampling_reference as sref

from convjax import train
from convjax.train import checkpoint as ckpt

N, D = 16, 3
KW = dict(steps=4, batch_size=4, eval_every=2, progress=False)


def make_data(seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(N, D))
    return {"x": x, "y": x @ np.array([1.0, -2.0, 0.5])}


def loss_fn(p, b):
    r = b["x"] @ p["w"] - b["y"]
    return jnp.mean(r * r)


def params0():
    return {"w": jnp.zeros(D)}


def first_run(directory, opt=None, key=None, data=None, **kw):
    opt = optax.adam(1e-2) if opt is None else opt
    data = make_data() if data is None else data
    key = jax.random.key(0) if key is None else key
    return train.fit(loss_fn, params0(), opt, data, key, checkpoint_dir=directory, **{**KW, **kw})


def resume(directory, opt=None, key=None, data=None, **kw):
    return first_run(directory, opt, key, data, resume=True, **{"steps": 8, **kw})


def test_same_run_resumes(tmp_path):
    first_run(tmp_path)
    assert resume(tmp_path).step == 8
    assert ckpt.read_record(ckpt.latest_checkpoint(tmp_path))["metadata"]["changes"] == []


def test_different_key_is_refused(tmp_path):
    first_run(tmp_path)
    with pytest.raises(
        train.CheckpointError,
        match=r"fit: checkpoint `.*step_000000004.json` "
        r"was written by another run: key: the checkpoint's key differs from "
        r"this call's\. Resume with the same key, data, optimizer and settings, "
        r"or pass allow_changes=\('key',\) to continue with these deliberately",
    ):
        resume(tmp_path, key=jax.random.key(1))
    raw = jax.random.PRNGKey(0)  # the same key as raw data is the same key
    first_run(tmp_path / "raw", key=raw)
    assert resume(tmp_path / "raw", key=raw).step == 8


def test_other_runs_checkpoint_copied_in_is_refused(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    first_run(a, key=jax.random.key(1), data=make_data(1), steps=6, eval_every=2)
    first_run(b, key=jax.random.key(2), data=make_data(2))
    for f in a.iterdir():  # a's newer checkpoint (step 6) lands in b
        if f.name.startswith("step_000000006"):
            shutil.copy(f, b / f.name)
    with pytest.raises(
        train.CheckpointError,
        match=r"checkpoint `.*b/step_000000006.json` "
        r"was written by another run: key: .*; data: leaf \['x'\], \['y'\] has "
        r"other content \(sampled elements differ\)\. .*allow_changes=\('data', "
        r"'key'\)",
    ):
        resume(b, key=jax.random.key(2), data=make_data(2))


def test_same_shape_other_data_is_refused(tmp_path):
    first_run(tmp_path)
    other = make_data()
    other["y"] = other["y"] + 1.0
    with pytest.raises(
        train.CheckpointError,
        match=r"another run: data: leaf \['y'\] has "
        r"other content",
    ):
        resume(tmp_path, data=other)
    with pytest.raises(train.CheckpointError, match=r"another run: eval_data: leaf \['y'\]"):
        eval_fn = {"eval_fn": lambda p, d: {"mse": loss_fn(p, d)}}
        first_run(tmp_path / "e", eval_data=make_data(), **eval_fn)
        resume(tmp_path / "e", eval_data=other, **eval_fn)


def test_new_learning_rate_is_refused_then_allowed_and_recorded(tmp_path):
    first_run(tmp_path, optax.adam(1e-2))
    with pytest.raises(
        train.CheckpointError,
        match=r"another run: optimizer: its first 3 "
        r"updates on probe gradients differ\. .*allow_changes=\('optimizer',\)",
    ):
        resume(tmp_path, optax.adam(3e-2))
    res = resume(tmp_path, optax.adam(3e-2), allow_changes=("optimizer",))
    # Reference: 4 updates of adam(1e-2), then 4 of adam(3e-2) carrying adam's state.
    data, key = make_data(), jax.random.key(0)
    p, opts = params0(), (optax.adam(1e-2), optax.adam(3e-2))
    state = opts[0].init(p)
    for s in range(8):
        batch = jax.tree.map(lambda a, s=s: a[sref.batch(key, s, N, 4)], data)
        g = jax.grad(loss_fn)(p, batch)
        u, state = opts[s >= 4].update(g, state, p)
        p = optax.apply_updates(p, u)
    np.testing.assert_allclose(res.params["w"], p["w"], rtol=1e-10)
    meta = ckpt.read_record(ckpt.latest_checkpoint(tmp_path))["metadata"]
    assert meta["changes"] == [
        {"step": 4, "changed": {"optimizer": "its first 3 updates on probe gradients differ"}}
    ]
    # The new optimizer is now the run's: resuming again with it needs no permission.
    assert resume(tmp_path, optax.adam(3e-2), steps=10).step == 10
    assert len(ckpt.read_record(ckpt.latest_checkpoint(tmp_path))["metadata"]["changes"]) == 1


def test_adam_hyperparameters_that_the_first_update_hides_are_seen(tmp_path):
    first_run(tmp_path, optax.adam(1e-2))  # adam's first update is lr * sign(g): b2 unseen
    with pytest.raises(train.CheckpointError, match=r"optimizer: its first 3 updates"):
        resume(tmp_path, optax.adam(1e-2, b2=0.9))


def test_optimizer_with_another_state_layout_is_refused_even_if_allowed(tmp_path):
    first_run(tmp_path, optax.adam(1e-2))
    with pytest.raises(train.CheckpointError, match=r"does not match the expected structure"):
        resume(tmp_path, optax.sgd(1e-2), allow_changes=("optimizer",))


def test_fit_many_hyper_change_allowed_as_optimizer(tmp_path):
    keys = jax.random.split(jax.random.key(0), 2)
    params = jax.tree.map(lambda a: jnp.stack([a, a]), params0())

    def run(lr, **kw):
        return train.fit_many(
            loss_fn,
            params,
            lambda h: optax.adam(h["lr"]),
            make_data(),
            keys,
            hyper={"lr": jnp.array(lr)},
            checkpoint_dir=tmp_path,
            **{**KW, **kw},
        )

    run([1e-2, 2e-2])
    with pytest.raises(
        train.CheckpointError,
        match=r"does not match this call's settings: "
        r"hyper: checkpoint \{'lr': \[0.01, 0.02\]\}, this call \{'lr': \[0.01, "
        r"0.03\]\}",
    ):
        run([1e-2, 3e-2], resume=True, steps=8)
    res = run([1e-2, 3e-2], resume=True, steps=8, allow_changes=("optimizer",))
    assert res.step == 8 and res.hyper["lr"].tolist() == [1e-2, 3e-2]
    changes = ckpt.read_record(ckpt.latest_checkpoint(tmp_path))["metadata"]["changes"]
    assert changes[0]["changed"] == {
        "optimizer": "its first 3 updates on probe gradients differ (runs [1])"
    }


def test_allowed_key_and_data_changes(tmp_path):
    first_run(tmp_path)
    res = resume(tmp_path, key=jax.random.key(5), data=make_data(5), allow_changes=["data", "key"])
    changed = ckpt.read_record(ckpt.latest_checkpoint(tmp_path))["metadata"]["changes"]
    assert sorted(changed[0]["changed"]) == ["data", "key"]
    ref = train.fit(
        loss_fn, params0(), optax.adam(1e-2), make_data(5), jax.random.key(5), **dict(KW, steps=8)
    )  # from step 4 on, batches follow the new key
    assert not np.allclose(res.params["w"], ref.params["w"])  # the first 4 updates differ
    # More examples are allowed with "data" (the settings record their shapes).
    bigger = {k: np.concatenate([v, v]) for k, v in make_data(5).items()}
    assert (
        resume(tmp_path, key=jax.random.key(5), data=bigger, steps=10, allow_changes=("data",)).step
        == 10
    )


def test_allow_changes_errors(tmp_path):
    with pytest.raises(
        ValueError,
        match=r"fit: `allow_changes` may name 'key', 'data', "
        r"'eval_data', 'optimizer', got 'lr'",
    ):
        resume(tmp_path, allow_changes=("lr",))
    with pytest.raises(TypeError, match=r"fit: `allow_changes` must be a tuple of names"):
        resume(tmp_path, allow_changes="optimizer")
    with pytest.raises(ValueError, match=r"fit: `allow_changes` needs `resume=True`"):
        first_run(tmp_path, allow_changes=("optimizer",))
