"""The facts the library exists to make executable."""

import jax
import jax.numpy as jnp
import numpy as np

import convjax

X = jnp.array([1.0, 2.0, 3.0, 4.0])
W = jnp.array([5.0, 6.0, 7.0])


def test_seed_sequences():
    np.testing.assert_array_equal(convjax.convolve(X, W, "full"), [5, 16, 34, 52, 45, 28])
    np.testing.assert_array_equal(convjax.convolve(X, W, "valid"), [34, 52])
    np.testing.assert_array_equal(convjax.correlate(X, W, "valid"), [38, 56])


def test_seed_matrices():
    w = W.reshape(3, 1, 1)
    full = convjax.conv_matrix(w, 4, padding="full", flip=True)
    np.testing.assert_array_equal(
        full,
        [[5, 0, 0, 0], [6, 5, 0, 0], [7, 6, 5, 0], [0, 7, 6, 5], [0, 0, 7, 6], [0, 0, 0, 7]],
    )
    np.testing.assert_array_equal(
        convjax.conv_matrix(w, 4, flip=True), [[7, 6, 5, 0], [0, 7, 6, 5]]
    )
    np.testing.assert_array_equal(convjax.conv_matrix(w, 4), [[5, 6, 7, 0], [0, 5, 6, 7]])


def test_gradient_of_shared_weight_is_sum_over_copies():
    x = X.reshape(4, 1)
    w = W.reshape(3, 1, 1)
    s = convjax.conv_structure(w.shape, 4, padding="full", flip=True)

    def f_conv(w):
        return jnp.sum(jnp.tanh(convjax.conv1d(x, w, padding="full", flip=True)) ** 2)

    def f_dense(t):
        return jnp.sum(jnp.tanh(t @ x.reshape(-1)) ** 2)

    g_w = jax.grad(f_conv)(w)
    g_t = jax.grad(f_dense)(s.dense(w))
    # The dense gradient is nonzero at structural zeros too; the adjoint discards it.
    assert np.any(np.asarray(g_t)[~s.mask()] != 0)
    np.testing.assert_allclose(s.adjoint(g_t), g_w, rtol=1e-12, atol=1e-12)
