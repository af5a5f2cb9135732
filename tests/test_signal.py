"""convolve / correlate against numpy, scipy and the reference loop.

Tolerances: float64 1e-12 (absolute, inputs are standard normal and at most 12
terms are summed); float32 1e-5 relative to ``|a| * |v|`` summed.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import reference as ref
import scipy.signal
from hypothesis import given, settings
from hypothesis import strategies as st

from convjax import convolve, correlate

HIGHEST = jax.lax.Precision.HIGHEST
TOL = dict(rtol=1e-12, atol=1e-12)
MODES = ("full", "same", "valid")
lengths = st.integers(1, 9)
seeds = st.integers(0, 2**32 - 1)


def pair(n, m, seed, dtype=np.float64):
    rng = np.random.default_rng(seed)
    return rng.standard_normal(n).astype(dtype), rng.standard_normal(m).astype(dtype)


@jax.jit
def all_modes(a, v):
    """Both functions in every mode, in one compiled call (cached per pair of lengths;
    compiling each call eagerly for every random pair would cost minutes)."""
    return {(fn.__name__, mode): fn(a, v, mode, precision=HIGHEST)
            for fn in (convolve, correlate) for mode in MODES}


NUMPY = {"convolve": np.convolve, "correlate": np.correlate}
SCIPY = {"convolve": scipy.signal.convolve, "correlate": scipy.signal.correlate}
LOOP = {"convolve": ref.convolve, "correlate": ref.correlate}


@settings(max_examples=40, deadline=None)
@given(lengths, lengths, seeds)
def test_equal_numpy_scipy_and_reference_all_modes(n, m, seed):
    """Any lengths, the second argument longer than the first included."""
    a, v = pair(n, m, seed)
    for (name, mode), got in all_modes(a, v).items():
        assert got.dtype == jnp.float64
        np.testing.assert_allclose(got, NUMPY[name](a, v, mode), **TOL)
        np.testing.assert_allclose(got, LOOP[name](a, v, mode), **TOL)
        if n >= m:  # scipy's "same" is centred on the first input, numpy's on the longer
            np.testing.assert_allclose(got, SCIPY[name](a, v, mode), rtol=1e-10, atol=1e-10)


@settings(max_examples=15, deadline=None)
@given(lengths, lengths, seeds)
def test_float32(n, m, seed):
    a, v = pair(n, m, seed, np.float32)
    for (name, mode), got in all_modes(a, v).items():
        assert got.dtype == jnp.float32
        loop = LOOP[name]
        scale = loop(np.abs(a), np.abs(v), mode)
        assert np.all(np.abs(got - loop(a, v, mode)) <= 1e-5 * scale + 1e-30)


def test_seed_example_and_convolution_commutes():
    a, v = np.array([1.0, 2, 3, 4]), np.array([5.0, 6, 7])
    np.testing.assert_array_equal(convolve(a, v), [5, 16, 34, 52, 45, 28])
    np.testing.assert_array_equal(convolve(v, a), [5, 16, 34, 52, 45, 28])
    np.testing.assert_array_equal(convolve(a, v, "same"), [16, 34, 52, 45])
    np.testing.assert_array_equal(correlate(a, v), [38, 56])
    np.testing.assert_array_equal(correlate(v, a), [56, 38])  # numpy swaps and reverses
    np.testing.assert_array_equal(correlate(a, v, "full"), np.correlate(a, v, "full"))


@pytest.mark.parametrize("n, m", [(7, 3), (3, 7), (4, 4), (1, 5)])
def test_jit_vmap_grad(n, m):
    a, v = pair(n, m, n * 100 + m)
    batch = np.stack([a, 2 * a + 1, -a])
    cots = {(name, mode): np.random.default_rng(0).standard_normal(NUMPY[name](a, v, mode).shape)
            for name in NUMPY for mode in MODES}

    def loss(a, v):
        return sum(jnp.sum(y * cots[k]) for k, y in all_modes(a, v).items())

    # eager == jit (one eager call: eager compiles op by op and is slow to start).
    np.testing.assert_allclose(convolve(a, v, "same"), all_modes(a, v)["convolve", "same"],
                               **TOL)
    # vmap over a batch of first arguments == numpy one by one.
    for (name, mode), got in jax.jit(jax.vmap(all_modes, (0, None)))(batch, v).items():
        want = np.stack([NUMPY[name](b, v, mode) for b in batch])
        np.testing.assert_allclose(got, want, **TOL)
    # grad: bilinear functions, so numpy on unit vectors gives the Jacobians.
    ga, gv = jax.jit(jax.grad(loss, argnums=(0, 1)))(a, v)
    want_ga = [sum(np.sum(NUMPY[nm](e, v, md) * c) for (nm, md), c in cots.items())
               for e in np.eye(n)]
    want_gv = [sum(np.sum(NUMPY[nm](a, e, md) * c) for (nm, md), c in cots.items())
               for e in np.eye(m)]
    np.testing.assert_allclose(ga, want_ga, **TOL)
    np.testing.assert_allclose(gv, want_gv, **TOL)


def test_mode_is_case_insensitive_like_the_other_options():
    a, v = pair(5, 3, 0)
    np.testing.assert_array_equal(convolve(a, v, "FULL"), convolve(a, v, "full"))
