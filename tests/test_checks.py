"""Dtype promotion shared by conv1d and locally_connected1d (``_checks.result_dtype``):
integers and bools promote to jax's default float dtype instead of being refused."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from convjax import _checks, conv1d, locally_connected1d

INTS = [np.bool_, np.int8, np.int16, np.int32, np.int64, np.uint8, np.uint32]


@pytest.mark.parametrize("x64", [True, False])
def test_integers_and_bools_promote_to_the_default_float(x64):
    want = np.float64 if x64 else np.float32
    with jax.enable_x64(x64):
        assert _checks.default_float() == want
        for d in INTS:
            for e in INTS:
                assert _checks.result_dtype("f", x=np.ones(2, d), w=np.ones(2, e)) == want
            # mixed with a floating array, jax's promotion decides (int8 + float16 -> float16)
            for f in (np.float16, jnp.bfloat16, np.float32):
                got = _checks.result_dtype("f", x=np.ones(2, d), w=np.ones(2, f))
                assert got == jnp.result_type(np.ones(2, d), np.ones(2, f)) == f


def test_conv1d_and_locally_connected1d_on_integers_equal_the_cast_inputs():
    rng = np.random.default_rng(0)
    x = rng.integers(-5, 6, (2, 9, 3)).astype(np.int32)
    w = rng.integers(-5, 6, (3, 3, 4)).astype(np.int8)
    filters = rng.integers(-5, 6, (7, 3, 3, 4))
    xf, wf = x.astype(np.float64), w.astype(np.float64)
    for ww in (w, wf, w > 0):
        got = conv1d(x, ww, padding="same")
        assert got.dtype == jnp.float64
        np.testing.assert_array_equal(got, conv1d(xf, ww.astype(np.float64), padding="same"))
    got = locally_connected1d(x > 0, filters)
    assert got.dtype == jnp.float64
    np.testing.assert_array_equal(
        got, locally_connected1d((x > 0).astype(np.float64), filters.astype(np.float64))
    )


def test_non_numeric_and_complex_dtypes_still_refused():
    w = np.ones((3, 1, 1))
    with pytest.raises(
        TypeError,
        match=r"conv1d: `x` must have a real numeric dtype "
        r"\(bool, integer or floating\), got <U1",
    ):
        conv1d(np.array([["a"]] * 4), w)
    with pytest.raises(
        TypeError,
        match=r"conv1d: `w` must have a real numeric dtype .* "
        r"got object",
    ):
        conv1d(np.ones((4, 1)), w.astype(object))
    with pytest.raises(
        TypeError,
        match=r"conv1d: `x` has complex dtype complex64; only real "
        r"floating dtypes are supported, integers and bools",
    ):
        conv1d(np.ones((4, 1), np.complex64), w)
