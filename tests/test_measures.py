"""Tests of convjax.measures against plain numpy loops."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from convjax import measures

# ---- numpy references (loops, written independently of the library) -----------------


def ipr_ref(v):
    v = np.asarray(v, np.float64)
    s2 = sum(x * x for x in v)
    return 0.0 if s2 == 0 else sum(x**4 for x in v) / s2**2


def shares_ref(v, width, periodic, power):
    v = np.asarray(v, np.float64)
    n = len(v)
    mass = [abs(x) ** power for x in v]
    total = sum(mass)
    starts = range(n) if periodic else range(n - width + 1)
    out = []
    for j in starts:
        inside = sum(mass[(j + t) % n] for t in range(width))
        out.append(0.0 if total == 0 else inside / total)
    return np.array(out)


# ---- inverse participation ratio --------------------------------------------------


def test_ipr_extremes():
    n = 7
    one_hot = np.zeros(n)
    one_hot[3] = -2.5
    assert float(measures.inverse_participation_ratio(jnp.asarray(one_hot))) == pytest.approx(
        1.0, abs=1e-15
    )
    flat = np.full(n, 0.3)
    assert float(measures.inverse_participation_ratio(jnp.asarray(flat))) == pytest.approx(
        1.0 / n, abs=1e-15
    )
    assert float(measures.inverse_participation_ratio(jnp.zeros(n))) == 0.0


@settings(max_examples=20, deadline=None)
@given(
    shape=st.lists(st.integers(1, 5), min_size=1, max_size=3),
    axis_pick=st.integers(0, 10),
    seed=st.integers(0, 2**31 - 1),
)
def test_ipr_matches_numpy_loop(shape, axis_pick, seed):
    w = np.random.default_rng(seed).normal(size=shape)
    axis = axis_pick % len(shape) - (len(shape) if axis_pick % 2 else 0)
    got = np.asarray(measures.inverse_participation_ratio(jnp.asarray(w), axis=axis))
    moved = np.moveaxis(w, axis, -1)
    want = np.array([ipr_ref(v) for v in moved.reshape(-1, moved.shape[-1])])
    np.testing.assert_allclose(got.reshape(-1), want, rtol=1e-12, atol=0)
    assert got.shape == moved.shape[:-1]
    n = w.shape[axis]
    assert np.all(got >= 1.0 / n - 1e-12) and np.all(got <= 1.0 + 1e-12)


def test_ipr_float32_dtype_and_tolerance():
    w = np.random.default_rng(0).normal(size=(4, 30)).astype(np.float32)
    got = measures.inverse_participation_ratio(jnp.asarray(w))
    assert got.dtype == jnp.float32
    want = [ipr_ref(v) for v in w]
    np.testing.assert_allclose(np.asarray(got), want, rtol=1e-5, atol=0)


def test_gaussian_ipr_monte_carlo():
    n, samples = 20, 20000
    w = jax.random.normal(jax.random.key(1), (samples, n), dtype=jnp.float64)
    ipr = np.asarray(measures.inverse_participation_ratio(w))
    se = ipr.std() / np.sqrt(samples)
    # 5 standard errors: fails by chance with probability < 1e-6.
    assert abs(ipr.mean() - measures.gaussian_ipr(n)) < 5 * se
    assert measures.gaussian_ipr(n) == 3.0 / 22.0


def test_ipr_jit_vmap_grad():
    w = jax.random.normal(jax.random.key(2), (3, 9), dtype=jnp.float64)
    f = measures.inverse_participation_ratio
    eager = f(w)
    # jit may fuse the reductions differently: equal up to float64 rounding
    np.testing.assert_allclose(np.asarray(jax.jit(f)(w)), np.asarray(eager), rtol=1e-14)
    np.testing.assert_allclose(np.asarray(jax.vmap(f)(w)), np.asarray(eager), rtol=1e-14)
    # grad against central finite differences
    v = w[0]
    g = jax.grad(f)(v)
    eps = 1e-6
    fd = np.array([(f(v.at[i].add(eps)) - f(v.at[i].add(-eps))) / (2 * eps) for i in range(9)])
    np.testing.assert_allclose(np.asarray(g), fd, rtol=1e-6, atol=1e-9)
    # zero vector: value 0 and a finite (zero) gradient, no NaN
    gz = jax.grad(f)(jnp.zeros(5))
    assert np.all(np.isfinite(np.asarray(gz)))


# ---- windows -----------------------------------------------------------------------


@settings(max_examples=25, deadline=None)
@given(
    n=st.integers(1, 12),
    batch=st.integers(1, 3),
    data=st.data(),
    periodic=st.booleans(),
    power=st.sampled_from([1, 2, 1.5]),
    seed=st.integers(0, 2**31 - 1),
)
def test_window_shares_match_numpy_loop(n, batch, data, periodic, power, seed):
    width = data.draw(st.integers(1, n))
    w = np.random.default_rng(seed).normal(size=(batch, n))
    got = np.asarray(measures.window_shares(jnp.asarray(w), width, periodic=periodic, power=power))
    want = np.stack([shares_ref(v, width, periodic, power) for v in w])
    assert got.shape == want.shape
    np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-15)
    share, start = measures.best_window(jnp.asarray(w), width, periodic=periodic, power=power)
    np.testing.assert_allclose(np.asarray(share), want.max(axis=1), rtol=1e-12)
    np.testing.assert_array_equal(np.asarray(start), want.argmax(axis=1))
    assert start.dtype == jnp.int32


def test_window_wraps_around_and_axis():
    w = np.zeros((6, 2))
    w[5, 0], w[0, 0] = 1.0, 1.0  # mass at both ends: one periodic window of 2 holds it all
    w[2, 1] = 1.0
    share, start = measures.best_window(jnp.asarray(w), 2, axis=0)
    np.testing.assert_allclose(np.asarray(share), [1.0, 1.0])
    np.testing.assert_array_equal(np.asarray(start), [5, 1])
    share_open, _ = measures.best_window(jnp.asarray(w), 2, axis=0, periodic=False)
    np.testing.assert_allclose(np.asarray(share_open), [0.5, 1.0])


def test_window_full_width_and_even_vector():
    w = jnp.asarray(np.random.default_rng(3).normal(size=(2, 8)))
    np.testing.assert_allclose(np.asarray(measures.window_shares(w, 8)), 1.0, rtol=1e-14)
    share, _ = measures.best_window(jnp.ones(8), 3)
    assert float(share) == pytest.approx(3 / 8, abs=1e-15)
    share0, start0 = measures.best_window(jnp.zeros(8), 3)
    assert float(share0) == 0.0 and int(start0) == 0


def test_window_jit_vmap_grad():
    w = jax.random.normal(jax.random.key(4), (3, 10), dtype=jnp.float64)

    def f(v):
        return measures.best_window(v, 3)[0]

    np.testing.assert_allclose(np.asarray(jax.jit(f)(w)), np.asarray(f(w)), rtol=1e-14)
    np.testing.assert_allclose(np.asarray(jax.vmap(f)(w)), np.asarray(f(w)), rtol=1e-14)
    g = jax.grad(f)(w[0])
    assert np.all(np.isfinite(np.asarray(g)))
    # the share is scale-invariant: the gradient is orthogonal to w
    assert abs(float(jnp.dot(g, w[0]))) < 1e-12


# ---- errors ------------------------------------------------------------------------


def test_errors_name_function_argument_and_value():
    with pytest.raises(TypeError, match=r"inverse_participation_ratio: `w` must have a floating"):
        measures.inverse_participation_ratio(jnp.arange(3))
    with pytest.raises(ValueError, match=r"inverse_participation_ratio: `w` must have rank >= 1"):
        measures.inverse_participation_ratio(jnp.float32(1.0))
    with pytest.raises(
        ValueError,
        match=r"inverse_participation_ratio: `axis` must be in "
        r"\[-2, 2\).*got 2",
    ):
        measures.inverse_participation_ratio(jnp.ones((2, 3)), axis=2)
    with pytest.raises(TypeError, match=r"window_shares: `axis` must be an int, got 0.5"):
        measures.window_shares(jnp.ones(3), 1, axis=0.5)
    with pytest.raises(
        ValueError,
        match=r"window_shares: `width` must be <= the number of "
        r"positions n=4, got 5",
    ):
        measures.window_shares(jnp.ones(4), 5)
    with pytest.raises(ValueError, match=r"window_shares: `width` must be an integer >= 1, got 0"):
        measures.best_window(jnp.ones(4), 0)
    with pytest.raises(
        ValueError,
        match=r"window_shares: `power` must be a finite number > 0, "
        r"got -1.0",
    ):
        measures.window_shares(jnp.ones(4), 2, power=-1.0)
    with pytest.raises(TypeError, match=r"window_shares: `power` must be a positive number"):
        measures.window_shares(jnp.ones(4), 2, power="2")
    with pytest.raises(ValueError, match=r"gaussian_ipr: `n` must be an integer >= 1, got 0"):
        measures.gaussian_ipr(0)
