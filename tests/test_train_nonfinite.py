"""Non-finite values made by an update: caught, numbered from 1, never checkpointed."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from convjax import train
from convjax.train import checkpoint as ckpt

N, D = 16, 3


def make_data():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(N, D))
    return {"x": x, "y": x @ np.array([1.0, -2.0, 0.5])}


def loss_fn(p, b):
    r = b["x"] @ p["w"] - b["y"]
    return jnp.mean(r * r)


def params0():
    return {"w": jnp.zeros(D)}


def nan_at_fifth_update():
    """The 5th update is NaN (scale_by_schedule's count is 4 then): loss and grads are fine."""
    return optax.chain(
        optax.sgd(0.1), optax.scale_by_schedule(lambda c: jnp.where(c == 4, jnp.nan, 1.0))
    )


def template(path, res):
    """The pytree ``load_checkpoint`` expects for a fit checkpoint shaped like ``res``."""
    record = ckpt.read_record(path)
    n_blocks = record["metadata"]["n_blocks"]
    return {
        "history": {
            k: np.zeros((n_blocks,), np.dtype(v)) for k, v in record["metadata"]["history"].items()
        },
        "hyper": None,
        "state": train.TrainState(
            params=res.params,
            opt_state=res.opt_state,
            key=jax.random.key(0),
            step=np.int32(0),
            bad_step=np.int32(0),
        ),
    }


def assert_finite(tree):
    for leaf in jax.tree.leaves(tree):
        if jnp.issubdtype(leaf.dtype, jnp.inexact):
            assert np.isfinite(np.asarray(leaf)).all()


def test_nan_made_by_the_optimizer_names_update_5_and_is_never_checkpointed(tmp_path):
    kw = dict(steps=10, batch_size=4, eval_every=1, keep_checkpoints=None, progress=False)
    with pytest.raises(
        train.NonFiniteError,
        match=r"fit: update 5 produced non-finite values "
        r"\(NaN or inf\) in the updated params\. .*kept as they were after 4 "
        r"updates",
    ) as err:
        train.fit(
            loss_fn,
            params0(),
            nan_at_fifth_update(),
            make_data(),
            jax.random.key(0),
            checkpoint_dir=tmp_path,
            **kw,
        )
    assert err.value.step == 5 and err.value.what == ("the updated params",)
    assert [s for s, _ in ckpt.list_checkpoints(tmp_path)] == [1, 2, 3, 4]
    four = train.fit(
        loss_fn,
        params0(),
        nan_at_fifth_update(),
        make_data(),
        jax.random.key(0),
        **dict(kw, steps=4),
    )
    for _, path in ckpt.list_checkpoints(tmp_path):  # every checkpoint holds finite values
        tree, _ = ckpt.load_checkpoint(path, template(path, four))
        assert_finite(tree)
    # Resuming the full run starts from step 4 (good) and stops at update 5 again.
    with pytest.raises(train.NonFiniteError, match=r"update 5 produced"):
        train.fit(
            loss_fn,
            params0(),
            nan_at_fifth_update(),
            make_data(),
            jax.random.key(0),
            checkpoint_dir=tmp_path,
            resume=True,
            **kw,
        )
    assert [s for s, _ in ckpt.list_checkpoints(tmp_path)] == [1, 2, 3, 4]


def test_nan_made_by_the_optimizer_is_skipped_and_counted():
    res = train.fit(
        loss_fn,
        params0(),
        nan_at_fifth_update(),
        make_data(),
        jax.random.key(0),
        steps=8,
        batch_size=4,
        eval_every=4,
        on_nonfinite="skip",
        progress=False,
    )
    # Update 5 is skipped; the schedule's count stays at 4, so every later one is NaN too.
    assert res.history["skipped"].tolist() == [0, 4]
    four = train.fit(
        loss_fn,
        params0(),
        nan_at_fifth_update(),
        make_data(),
        jax.random.key(0),
        steps=4,
        batch_size=4,
        progress=False,
    )
    np.testing.assert_array_equal(res.params["w"], four.params["w"])
    assert int(res.opt_state[1].count) == 4
    assert np.isnan(res.history["loss"][1])  # a block whose updates were all skipped


def adam_eps0_and_unused():
    """adam with eps=0 on a parameter the loss ignores: its update is 0 / 0 = NaN."""
    params = {"w": jnp.zeros(D), "unused": jnp.ones(2)}
    return optax.adam(1e-2, eps=0.0), params


def test_adam_eps0_raises_at_update_1():
    opt, params = adam_eps0_and_unused()
    with pytest.raises(
        train.NonFiniteError,
        match=r"fit: update 1 produced non-finite values "
        r"\(NaN or inf\) in the updated params\.",
    ) as err:
        train.fit(loss_fn, params, opt, make_data(), jax.random.key(0), steps=3, progress=False)
    assert err.value.step == 1


def test_adam_eps0_skips_and_never_returns_nan():
    opt, params = adam_eps0_and_unused()
    res = train.fit(
        loss_fn,
        params,
        opt,
        make_data(),
        jax.random.key(0),
        steps=6,
        eval_every=3,
        on_nonfinite="skip",
        progress=False,
    )
    assert res.history["skipped"].tolist() == [3, 3]
    assert_finite((res.params, res.opt_state))
    np.testing.assert_array_equal(res.params["unused"], params["unused"])
    np.testing.assert_array_equal(res.params["w"], params["w"])


def test_fit_many_adam_eps0_names_every_run():
    opt, params = adam_eps0_and_unused()
    stacked = jax.tree.map(lambda a: jnp.stack([a] * 3), params)
    keys = jax.random.split(jax.random.key(0), 3)
    with pytest.raises(
        train.NonFiniteError,
        match=r"fit_many: update 1 of run 0 \(runs hit "
        r"in this block: \[0, 1, 2\]\) produced",
    ) as err:
        train.fit_many(loss_fn, stacked, opt, make_data(), keys, steps=2, progress=False)
    assert err.value.runs == (0, 1, 2) and err.value.step == 1


def finite_param_inf_state():
    """Updates are the gradient; the state turns to inf at the 3rd update (count 2)."""

    def init(params):
        return {"count": jnp.zeros((), jnp.int32), "acc": jnp.zeros(())}

    def update(grads, state, params=None):
        del params
        acc = jnp.where(state["count"] == 2, jnp.inf, state["acc"] + 1.0)
        return (jax.tree.map(lambda g: -0.1 * g, grads), {"count": state["count"] + 1, "acc": acc})

    return optax.GradientTransformation(init, update)


def test_optimizer_state_that_turns_non_finite_is_caught():
    with pytest.raises(
        train.NonFiniteError,
        match=r"update 3 produced non-finite values "
        r"\(NaN or inf\) in the optimizer state \(a leaf that was finite at "
        r"initialisation\)\.",
    ):
        train.fit(
            loss_fn,
            params0(),
            finite_param_inf_state(),
            make_data(),
            jax.random.key(0),
            steps=5,
            progress=False,
        )


def test_state_leaves_non_finite_at_init_are_allowed():
    # reduce_on_plateau keeps its best value at inf until the first evaluation.
    opt = optax.chain(optax.sgd(0.1), optax.contrib.reduce_on_plateau(accumulation_size=100))
    assert not np.isfinite(opt.init(params0())[1].best_value)
    res = train.fit(
        loss_fn,
        params0(),
        opt,
        make_data(),
        jax.random.key(0),
        steps=5,
        batch_size=4,
        progress=False,
    )
    assert np.isinf(res.opt_state[1].best_value)  # still inf: no accumulation finished
    assert_finite(res.params)


def test_non_finite_initial_params_are_refused():
    with pytest.raises(
        ValueError,
        match=r"fit: `params` must be finite at initialisation, leaf "
        r"\['w'\] holds NaN or inf",
    ):
        train.fit(
            loss_fn,
            {"w": jnp.array([0.0, jnp.nan, 0.0])},
            optax.sgd(0.1),
            make_data(),
            jax.random.key(0),
            steps=2,
            progress=False,
        )


def test_resume_refuses_a_checkpoint_with_non_finite_params(tmp_path):
    kw = dict(steps=4, batch_size=4, eval_every=4, progress=False)
    train.fit(
        loss_fn,
        params0(),
        optax.sgd(0.1),
        make_data(),
        jax.random.key(0),
        checkpoint_dir=tmp_path,
        **kw,
    )
    path = ckpt.latest_checkpoint(tmp_path)
    res = train.fit(
        loss_fn,
        params0(),
        optax.sgd(0.1),
        make_data(),
        jax.random.key(0),
        checkpoint_dir=tmp_path,
        resume=True,
        **kw,
    )
    tree, meta = ckpt.load_checkpoint(path, template(path, res))
    state = tree["state"]._replace(params={"w": np.array([np.nan, 0.0, 0.0])})
    ckpt.save_checkpoint(
        tmp_path, 5, {**tree, "state": state._replace(step=np.int32(5))}, metadata=meta
    )  # as an older version could have written it
    with pytest.raises(
        train.CheckpointError,
        match=r"fit: checkpoint `.*step_000000005.json` "
        r"holds NaN or inf in params\['w'\], which was finite at "
        r"initialisation; it cannot be resumed from",
    ):
        train.fit(
            loss_fn,
            params0(),
            optax.sgd(0.1),
            make_data(),
            jax.random.key(0),
            checkpoint_dir=tmp_path,
            resume=True,
            **dict(kw, steps=8),
        )
