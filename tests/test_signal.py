"""convolve / correlate against numpy, jnp, scipy and the reference loop.

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
    return {
        (fn.__name__, mode): fn(a, v, mode, precision=HIGHEST)
        for fn in (convolve, correlate)
        for mode in MODES
    }


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
    cots = {
        (name, mode): np.random.default_rng(0).standard_normal(NUMPY[name](a, v, mode).shape)
        for name in NUMPY
        for mode in MODES
    }

    def loss(a, v):
        return sum(jnp.sum(y * cots[k]) for k, y in all_modes(a, v).items())

    # eager == jit (one eager call: eager compiles op by op and is slow to start).
    np.testing.assert_allclose(convolve(a, v, "same"), all_modes(a, v)["convolve", "same"], **TOL)
    # vmap over a batch of first arguments == numpy one by one.
    for (name, mode), got in jax.jit(jax.vmap(all_modes, (0, None)))(batch, v).items():
        want = np.stack([NUMPY[name](b, v, mode) for b in batch])
        np.testing.assert_allclose(got, want, **TOL)
    # grad: bilinear functions, so numpy on unit vectors gives the Jacobians.
    ga, gv = jax.jit(jax.grad(loss, argnums=(0, 1)))(a, v)
    want_ga = [
        sum(np.sum(NUMPY[nm](e, v, md) * c) for (nm, md), c in cots.items()) for e in np.eye(n)
    ]
    want_gv = [
        sum(np.sum(NUMPY[nm](a, e, md) * c) for (nm, md), c in cots.items()) for e in np.eye(m)
    ]
    np.testing.assert_allclose(ga, want_ga, **TOL)
    np.testing.assert_allclose(gv, want_gv, **TOL)


def test_mode_spelled_as_numpy_spells_it():
    """numpy's converter: exact names or the integer codes 0, 1, 2 (valid, same, full);
    other strings and integers are ValueError, other types (None, bool, float) TypeError."""
    a, v = pair(5, 3, 0)
    for code, name in enumerate(("valid", "same", "full")):
        for fn in (convolve, correlate):
            np.testing.assert_array_equal(fn(a, v, code), fn(a, v, name))
            np.testing.assert_array_equal(fn(a, v, np.int64(code)), fn(a, v, name))
    for bad, exc in (
        ("FULL", ValueError),
        ("f", ValueError),
        (-1, ValueError),
        (3, ValueError),
        (None, TypeError),
        (True, TypeError),
        (2.0, TypeError),
    ):
        for fn in ("convolve", "correlate"):
            with pytest.raises(exc):
                NUMPY[fn](a, v, bad)  # the reference refuses the same modes
            with pytest.raises(exc, match=rf"{fn}: `mode`"):
                {"convolve": convolve, "correlate": correlate}[fn](a, v, bad)


# ---- array-likes, dtypes, exact integers, complex --------------------------------------


def test_array_likes_lists_tuples_and_scalars_as_numpy():
    np.testing.assert_array_equal(convolve([1, 2, 3, 4], (5, 6, 7)), [5, 16, 34, 52, 45, 28])
    np.testing.assert_array_equal(correlate((1, 2, 3, 4), [5, 6, 7]), [38, 56])
    np.testing.assert_array_equal(convolve([1.5, 2], [[3]][0]), np.convolve([1.5, 2], [3]))
    # numpy.convolve reads a scalar as a length-1 sequence; numpy.correlate refuses it.
    for a, v in ((2, 3), ([1, 2, 3], 2), (2.5, [1, 2])):
        np.testing.assert_array_equal(convolve(a, v), np.convolve(a, v))
    with pytest.raises(ValueError):
        np.correlate([1, 2], 3)
    with pytest.raises(ValueError, match=r"correlate: `v` must have rank 1 .* got rank 0"):
        correlate([1, 2], 3)
    # A Python scalar stays weakly typed, as in jnp: it does not widen an int8 array.
    assert convolve(np.array([1, 2], np.int8), 2).dtype == jnp.float32
    assert convolve(np.ones(3, np.float32), 2.5).dtype == jnp.float32


@pytest.mark.parametrize("fn", ["convolve", "correlate"])
def test_bad_array_likes(fn):
    f = {"convolve": convolve, "correlate": correlate}[fn]
    with pytest.raises(
        TypeError,
        match=rf"{fn}: `a` must be an array-like of numbers .* "
        r"got list \['x', 'y'\]",
    ):
        f(["x", "y"], [1.0])
    with pytest.raises(ValueError, match=rf"{fn}: `v` must be an array-like of numbers"):
        f([1.0, 2.0], [[1.0], [1.0, 2.0]])
    with pytest.raises(TypeError, match=rf"{fn}: `v` must have a numeric dtype .* got <U1"):
        f([1.0, 2.0], np.array(["x"]))
    with pytest.raises(ValueError, match=rf"{fn}: `a` must have rank 1 .* shape \(2, 1\)"):
        f([[1.0], [2.0]], [1.0])


INT_DTYPES = [
    np.bool_,
    np.int8,
    np.int16,
    np.int32,
    np.int64,
    np.uint8,
    np.uint16,
    np.uint32,
    np.uint64,
]


@pytest.mark.parametrize("x64", [True, False])
def test_dtype_promotion_is_jnp_convolve_s(x64):
    """Every pair of bool/integer dtypes, and integers with floating and complex ones:
    the result dtype is ``jnp.convolve``'s / ``jnp.correlate``'s, with and without x64."""
    others = [np.float16, np.float32, np.float64, np.complex64, np.complex128]
    pairs = [(d, e) for d in INT_DTYPES for e in INT_DTYPES + others]
    with jax.enable_x64(x64):
        for d, e in pairs:
            a, v = np.ones(4, d), np.ones(2, e)
            for ours, theirs in ((convolve, jnp.convolve), (correlate, jnp.correlate)):
                want = jax.eval_shape(theirs, a, v).dtype
                assert jax.eval_shape(ours, a, v).dtype == want, (ours.__name__, d, e)


def test_integers_exact_with_x64_where_a_float_sum_is_not():
    """Products near 2**56 summed to near 2**60: the exact integer sum rounded once to
    float64 equals numpy's int64 result cast; a float64 sum (``jnp.convolve``) does not,
    so the test can tell the routes apart. Any ``algorithm`` keeps integers exact."""
    rng = np.random.default_rng(7)
    a = rng.integers(-(2**28), 2**28, 40)
    v = rng.integers(-(2**28), 2**28, 9)
    for mode in MODES:
        for name in NUMPY:
            want = NUMPY[name](a, v, mode).astype(np.float64)  # exact int64, rounded once
            for alg in ("auto", "fft", "xla"):
                got = {"convolve": convolve, "correlate": correlate}[name](
                    a, v, mode, algorithm=alg
                )
                assert got.dtype == jnp.float64
                np.testing.assert_array_equal(got, want)
            np.testing.assert_array_equal(all_modes(a, v)[name, mode], want)  # under jit
    float_sum = jnp.convolve(a.astype(np.float64), v.astype(np.float64), precision=HIGHEST)
    assert np.any(np.asarray(float_sum) != np.convolve(a, v).astype(np.float64))


def test_integers_without_x64():
    """int32 sums: exact where they fit (small values, each output checked), the float
    sum where they could overflow int32 (int16 audio, long filter), never wrapped."""
    rng = np.random.default_rng(3)
    a, v = rng.integers(-1000, 1000, 300), rng.integers(-1000, 1000, 40)
    big_a = rng.integers(-(2**15), 2**15, 300).astype(np.int16)
    big_v = rng.integers(-(2**15), 2**15, 40).astype(np.int16)
    with jax.enable_x64(False):
        for mode in MODES:
            got = convolve(a.astype(np.int32), v.astype(np.int32), mode)
            assert got.dtype == jnp.float32
            want = np.convolve(a, v, mode)
            assert np.abs(want).max() < 2**24  # so float32 holds the exact values
            np.testing.assert_array_equal(got, want)
            got = correlate(big_a, big_v, mode)
            want = np.correlate(big_a.astype(np.int64), big_v.astype(np.int64), mode)
            scale = np.correlate(
                np.abs(big_a.astype(np.int64)), np.abs(big_v.astype(np.int64)), mode
            )
            assert np.all(np.abs(np.asarray(got, np.float64) - want) <= 1e-5 * scale)


def test_bool_inputs_count_as_jnp_does():
    a = np.array([True, False, True, True])
    v = np.array([True, True])
    np.testing.assert_array_equal(convolve(a, v), [1, 1, 1, 2, 1])
    np.testing.assert_array_equal(convolve(a, v), jnp.convolve(a, v))
    np.testing.assert_array_equal(correlate(a, v, "full"), jnp.correlate(a, v, "full"))


@pytest.mark.parametrize("n, m", [(7, 3), (3, 7), (4, 4), (1, 5), (6, 1), (2, 9)])
@pytest.mark.parametrize("dtype", [np.complex64, np.complex128])
def test_complex_against_numpy(n, m, dtype):
    """numpy conjugates ``v`` in correlate (then swaps and reverses when ``v`` is longer);
    complex with real and with integer second arguments too."""
    rng = np.random.default_rng(n * 10 + m)
    a = (rng.standard_normal(n) + 1j * rng.standard_normal(n)).astype(dtype)
    v = (rng.standard_normal(m) + 1j * rng.standard_normal(m)).astype(dtype)
    tol = dict(rtol=1e-5, atol=1e-5) if dtype == np.complex64 else TOL
    for other in (v, v.real, rng.integers(-3, 4, m)):
        for x, y in ((a, other), (other, a)):
            for (name, mode), got in all_modes(x, y).items():
                assert got.dtype == jnp.result_type(x, y)  # jax promotion, not numpy's
                np.testing.assert_allclose(got, NUMPY[name](x, y, mode), **tol)


def test_integer_route_under_vmap():
    a = np.arange(12).reshape(3, 4) - 5
    v = np.array([2, -1, 3])
    for (name, mode), got in jax.jit(jax.vmap(all_modes, (0, None)))(a, v).items():
        np.testing.assert_array_equal(got, np.stack([NUMPY[name](r, v, mode) for r in a]))
