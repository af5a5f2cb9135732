"""convjax.train.beta_lasso against a plain numpy implementation of the update rule."""

import hypothesis.strategies as st
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from hypothesis import given, settings

from convjax import train


def numpy_beta_lasso(theta, g, eta, lam, beta):
    """One beta-LASSO step, written out (Neyshabur 2020, Algorithm 1)."""
    theta = np.asarray(theta)
    new = theta - eta * (np.asarray(g) + lam * np.sign(theta))
    return np.where(np.abs(new) >= beta * lam, new, 0.0)


def step(opt, params, grads, state=None):
    state = opt.init(params) if state is None else state
    updates, state = opt.update(grads, state, params)
    return optax.apply_updates(params, updates), state


@jax.jit
def jitted_step(theta, g, eta, lam, beta):
    """One step with traced hyperparameters: one compilation per shape of ``theta``."""
    return step(train.beta_lasso(eta, lam, beta), theta, g)[0]


@settings(max_examples=30, deadline=None)
@given(
    seed=st.integers(0, 2**31 - 1),
    n=st.sampled_from([1, 5, 30]),
    eta=st.floats(1e-3, 1.0),
    lam=st.floats(0.0, 0.5),
    beta=st.floats(0.0, 5.0),
)
def test_matches_numpy_rule_float64(seed, n, eta, lam, beta):
    rng = np.random.default_rng(seed)
    theta = rng.normal(size=n)
    theta[rng.random(n) < 0.2] = 0.0  # exact zeros: sign(0) = 0
    g = rng.normal(size=n)
    got = jitted_step(theta, g, eta, lam, beta)
    want = numpy_beta_lasso(theta, g, eta, lam, beta)
    np.testing.assert_allclose(np.asarray(got), want, rtol=1e-14, atol=1e-15)
    # the zeros are exact zeros, and exactly where the rule puts them
    np.testing.assert_array_equal(np.asarray(got) == 0.0, want == 0.0)


def test_float32_pytree_and_dtype_kept():
    rng = np.random.default_rng(1)
    params = {
        "w": rng.normal(size=(4, 5)).astype(np.float32),
        "b": rng.normal(size=(5,)).astype(np.float32),
    }
    grads = jax.tree.map(lambda p: rng.normal(size=p.shape).astype(np.float32), params)
    eta, lam, beta = 0.1, 0.2, 3.0
    got, _ = step(train.beta_lasso(eta, lam, beta), params, grads)
    for k in params:
        assert got[k].dtype == jnp.float32
        want = numpy_beta_lasso(params[k].astype(np.float64), grads[k], eta, lam, beta)
        np.testing.assert_allclose(np.asarray(got[k]), want, rtol=1e-6, atol=1e-6)
        np.testing.assert_array_equal(np.asarray(got[k]) == 0.0, want == 0.0)


def test_hand_example():
    # 1 - 0.1 * (1 + 0.5) = 0.85 kept; 0.3 - 0.05 = 0.25 < beta*lam = 0.5 -> 0;
    # -2 - 0.1 * (0 - 0.5) = -1.95 kept; 0 stays 0 (sign(0) = 0, 0.1 * 0.2 < 0.5).
    p = jnp.array([1.0, 0.3, -2.0, 0.0])
    g = jnp.array([1.0, 0.0, 0.0, -0.2])
    got, state = step(train.beta_lasso(0.1, 0.5, 1.0), p, g)
    np.testing.assert_allclose(np.asarray(got), [0.85, 0.0, -1.95, 0.0], rtol=1e-15)
    assert int(state.count) == 1


def test_lam_zero_is_plain_sgd():
    rng = np.random.default_rng(2)
    p, g = jnp.asarray(rng.normal(size=7)), jnp.asarray(rng.normal(size=7))
    got, _ = step(train.beta_lasso(0.3, 0.0, 50.0), p, g)
    want, _ = step(optax.sgd(0.3), p, g)
    np.testing.assert_array_equal(np.asarray(got), np.asarray(want))


def test_schedule_sees_the_step_count():
    sched = optax.piecewise_constant_schedule(0.1, {1: 0.0})  # eta = 0.1, then 0
    opt = train.beta_lasso(sched, 0.01, 1.0)
    p, g = jnp.array([1.0, -1.0]), jnp.array([1.0, 1.0])
    p1, s1 = step(opt, p, g)
    np.testing.assert_allclose(
        np.asarray(p1), numpy_beta_lasso([1.0, -1.0], [1, 1], 0.1, 0.01, 1.0), rtol=1e-15
    )
    p2, s2 = step(opt, p1, g, s1)  # eta = 0: params unchanged (all above the threshold)
    np.testing.assert_array_equal(np.asarray(p2), np.asarray(p1))
    assert int(s2.count) == 2


def test_jit_equals_eager_and_vmap_over_hyperparameters():
    rng = np.random.default_rng(3)
    p, g = jnp.asarray(rng.normal(size=9)), jnp.asarray(rng.normal(size=9))

    def one(lam, eta):
        opt = train.beta_lasso(eta, lam, 2.0)
        return step(opt, p, g)[0]

    lams, etas = jnp.array([0.0, 0.1, 0.4]), jnp.array([0.2, 0.05, 0.3])
    eager = np.stack([np.asarray(one(float(a), float(b))) for a, b in zip(lams, etas, strict=True)])
    np.testing.assert_array_equal(np.asarray(jax.jit(one)(lams[1], etas[1])), eager[1])
    batched = jax.vmap(one)(lams, etas)
    for r in range(3):
        want = numpy_beta_lasso(np.asarray(p), np.asarray(g), float(etas[r]), float(lams[r]), 2.0)
        np.testing.assert_allclose(np.asarray(batched[r]), want, rtol=1e-14, atol=1e-15)
        np.testing.assert_allclose(eager[r], want, rtol=1e-14, atol=1e-15)


def test_fit_many_with_hyper_factory():
    # least squares with a sparse truth: beta-LASSO zeroes the null coordinates,
    # plain SGD (lam = 0) does not; each run equals a numpy loop of the rule.
    rng = np.random.default_rng(4)
    x = rng.normal(size=(32, 6))
    w_true = np.array([1.5, 0.0, 0.0, -2.0, 0.0, 0.0])
    data = {"x": x, "y": x @ w_true + 0.05 * rng.normal(size=32)}

    def loss(p, b):
        r = b["x"] @ p["w"] - b["y"]
        return 0.5 * jnp.mean(r * r)

    lams = np.array([0.0, 0.02, 0.05])
    n_steps, eta, beta = 60, 0.2, 2.0
    w0 = 0.1 * rng.normal(size=6)
    res = train.fit_many(
        loss,
        {"w": jnp.broadcast_to(jnp.asarray(w0), (3, 6))},
        lambda h: train.beta_lasso(eta, h["lam"], beta),
        data,
        jax.random.split(jax.random.key(0), 3),
        hyper={"lam": jnp.asarray(lams)},
        steps=n_steps,
        progress=False,
    )
    for r, lam in enumerate(lams):
        w = w0.copy()
        for _ in range(n_steps):
            g = x.T @ (x @ w - data["y"]) / len(x)
            w = numpy_beta_lasso(w, g, eta, lam, beta)
        np.testing.assert_allclose(np.asarray(res.params["w"][r]), w, rtol=1e-10, atol=1e-12)
        np.testing.assert_array_equal(np.asarray(res.params["w"][r]) == 0.0, w == 0.0)
    assert np.all(np.asarray(res.params["w"][0]) != 0.0)
    assert np.all(np.asarray(res.params["w"][2])[[1, 2, 4, 5]] == 0.0)


def test_update_without_params_raises():
    opt = train.beta_lasso(0.1, 0.1, 1.0)
    p = jnp.ones(3)
    with pytest.raises(ValueError, match=r"beta_lasso: `params` are required.*got None"):
        opt.update(p, opt.init(p))


@pytest.mark.parametrize(
    "kwargs, err, msg",
    [
        (
            {"learning_rate": 0.0},
            ValueError,
            r"beta_lasso: `learning_rate` must be a finite "
            r"number > 0, got 0.0",
        ),
        ({"learning_rate": float("nan")}, ValueError, r"`learning_rate` must be a finite"),
        (
            {"lam": -1e-3},
            ValueError,
            r"beta_lasso: `lam` must be a finite number >= 0, "
            r"got -0.001",
        ),
        ({"beta": -2}, ValueError, r"beta_lasso: `beta` must be a finite number >= 0, got -2"),
        (
            {"beta": "50"},
            TypeError,
            r"beta_lasso: `beta` must be a real number or a scalar "
            r"array, got '50'",
        ),
        ({"lam": True}, TypeError, r"beta_lasso: `lam` must be a real number, got True"),
        (
            {"lam": jnp.ones(3)},
            ValueError,
            r"beta_lasso: `lam` must be a scalar, got an "
            r"array of shape \(3,\)",
        ),
    ],
)
def test_bad_hyperparameters(kwargs, err, msg):
    args = {"learning_rate": 0.1, "lam": 0.1, "beta": 1.0, **kwargs}
    with pytest.raises(err, match=msg):
        train.beta_lasso(**args)
