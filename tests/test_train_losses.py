"""Losses and metrics of convjax.train against numpy loops and optax."""

import hypothesis.strategies as st
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from hypothesis import given, settings

from convjax import train

shapes = st.tuples(st.lists(st.integers(1, 4), min_size=0, max_size=2), st.integers(2, 5))


def np_log_softmax(z):
    z = z - z.max(axis=-1, keepdims=True)
    return z - np.log(np.exp(z).sum(axis=-1, keepdims=True))


@settings(max_examples=5, deadline=None)
@given(shapes, st.integers(0, 2**16))
def test_softmax_cross_entropy(shape, seed):
    batch, c = tuple(shape[0]), shape[1]
    rng = np.random.default_rng(seed)
    logits = rng.normal(size=batch + (c,)) * 3
    labels = rng.integers(0, c, size=batch)
    per = np.zeros(batch)
    for i in np.ndindex(batch):
        per[i] = -np_log_softmax(logits[i])[labels[i]]
    got = train.softmax_cross_entropy(logits, labels, reduction="none")
    np.testing.assert_allclose(got, per, rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(train.softmax_cross_entropy(logits, labels), per.mean(), rtol=1e-12)
    np.testing.assert_allclose(
        train.softmax_cross_entropy(logits, labels, reduction="sum"), per.sum(), rtol=1e-12
    )
    onehot = np.eye(c)[labels]
    np.testing.assert_allclose(
        train.softmax_cross_entropy(logits, onehot, reduction="none"), per, rtol=1e-12, atol=1e-14
    )
    ref = optax.softmax_cross_entropy_with_integer_labels(jnp.asarray(logits), labels)
    np.testing.assert_allclose(got, ref, rtol=1e-12, atol=1e-14)
    acc = np.mean(np.argmax(logits, axis=-1) == labels)
    np.testing.assert_allclose(train.accuracy(logits, labels), acc, rtol=1e-15)
    np.testing.assert_allclose(train.accuracy(logits, onehot), acc, rtol=1e-15)


@settings(max_examples=5, deadline=None)
@given(st.lists(st.integers(1, 4), min_size=0, max_size=2), st.integers(0, 2**16))
def test_binary_losses(shape, seed):
    rng = np.random.default_rng(seed)
    logits = rng.normal(size=tuple(shape)) * 10
    labels = rng.integers(0, 2, size=tuple(shape))
    # -log sigmoid(z) for y = 1, -log(1 - sigmoid(z)) = -log sigmoid(-z) for y = 0.
    per = np.where(labels == 1, np.logaddexp(0.0, -logits), np.logaddexp(0.0, logits))
    np.testing.assert_allclose(
        train.logistic_loss(logits, labels, reduction="none"), per, rtol=1e-12
    )
    np.testing.assert_allclose(
        train.logistic_loss(logits, labels.astype(float)), per.mean(), rtol=1e-12
    )
    np.testing.assert_allclose(
        train.logistic_loss(logits, labels, reduction="none"),
        optax.sigmoid_binary_cross_entropy(jnp.asarray(logits), labels),
        rtol=1e-12,
        atol=1e-14,
    )
    np.testing.assert_allclose(
        train.binary_accuracy(logits, labels), np.mean((logits > 0) == labels), rtol=1e-15
    )
    pred, target = rng.normal(size=tuple(shape)), rng.normal(size=tuple(shape))
    np.testing.assert_allclose(train.mse(pred, target), np.mean((pred - target) ** 2), rtol=1e-12)
    np.testing.assert_allclose(
        train.mse(pred, target, reduction="sum"), np.sum((pred - target) ** 2), rtol=1e-12
    )


def test_logistic_loss_keeps_relative_precision():
    # Confident and correct: the loss is log1p(exp(-21)) ~ 7.6e-10, no cancellation.
    z = jnp.array([21.0, -21.0, 40.0])
    y = jnp.array([1, 0, 1])
    np.testing.assert_allclose(
        train.logistic_loss(z, y, reduction="none"),
        np.log1p(np.exp(-np.abs(np.asarray(z)))),
        rtol=1e-14,
    )


def test_extreme_logits_stay_finite():
    z = jnp.array([-1e4, 1e4])
    np.testing.assert_allclose(
        train.logistic_loss(z, jnp.array([1, 0]), reduction="none"), [1e4, 1e4], rtol=1e-12
    )
    logits = jnp.array([[1e4, -1e4]])
    np.testing.assert_allclose(train.softmax_cross_entropy(logits, jnp.array([1])), 2e4)


def test_grad_jit_vmap_agree_with_optax():
    rng = np.random.default_rng(1)
    logits, labels = jnp.asarray(rng.normal(size=(5, 3))), jnp.asarray(rng.integers(0, 3, 5))

    def ref(z):
        return optax.softmax_cross_entropy_with_integer_labels(z, labels).mean()

    g = jax.grad(lambda z: train.softmax_cross_entropy(z, labels))(logits)
    np.testing.assert_allclose(g, jax.grad(ref)(logits), rtol=1e-12, atol=1e-15)
    jitted = jax.jit(train.softmax_cross_entropy)(logits, labels)
    np.testing.assert_allclose(jitted, train.softmax_cross_entropy(logits, labels), rtol=1e-15)
    per_row = jax.vmap(train.softmax_cross_entropy)(logits, labels)
    np.testing.assert_allclose(
        per_row, train.softmax_cross_entropy(logits, labels, reduction="none"), rtol=1e-15
    )
    f32 = train.softmax_cross_entropy(logits.astype(jnp.float32), labels)
    assert f32.dtype == jnp.float32
    np.testing.assert_allclose(f32, ref(logits), rtol=1e-6)


def test_mean_std_over_seeds():
    h = {"loss": np.array([[1.0, 2.0], [3.0, 6.0], [5.0, 7.0]]), "step": np.array([[1, 2]] * 3)}
    mean, std = train.mean_std(h)
    np.testing.assert_allclose(mean["loss"], [3.0, 5.0])
    np.testing.assert_allclose(std["loss"], np.std(h["loss"], axis=0))
    np.testing.assert_allclose(
        train.mean_std(h, ddof=1)[1]["loss"], np.std(h["loss"], axis=0, ddof=1)
    )
    np.testing.assert_array_equal(mean["step"], [1, 2])
    with pytest.raises(
        ValueError,
        match=r"mean_std: need more than `ddof`=1 values along axis "
        r"0, got a leaf of shape \(1, 2\)",
    ):
        train.mean_std({"a": np.ones((1, 2))}, ddof=1)
    with pytest.raises(ValueError, match=r"mean_std: `axis` 2 is out of range"):
        train.mean_std({"a": np.ones((1, 2))}, axis=2)


@settings(max_examples=5, deadline=None)
@given(shapes, st.integers(0, 2**16))
def test_losses_equal_optax_losses(shape, seed):
    """Each loss is the optax loss it delegates to, reduced: bit for bit per example."""
    batch, c = tuple(shape[0]), shape[1]
    rng = np.random.default_rng(seed)
    logits = jnp.asarray(rng.normal(size=batch + (c,)) * 3)
    labels = jnp.asarray(rng.integers(0, c, size=batch))
    probs = jax.nn.softmax(jnp.asarray(rng.normal(size=batch + (c,))))
    pairs = [
        (
            train.softmax_cross_entropy(logits, labels, reduction="none"),
            optax.losses.softmax_cross_entropy_with_integer_labels(logits, labels),
        ),
        (
            train.softmax_cross_entropy(logits, probs, reduction="none"),
            optax.losses.softmax_cross_entropy(logits, probs),
        ),
        (
            train.logistic_loss(logits, probs, reduction="none"),
            optax.losses.sigmoid_binary_cross_entropy(logits, probs),
        ),
        (train.mse(logits, probs, reduction="none"), optax.losses.squared_error(logits, probs)),
        (train.mse(logits, probs), jnp.mean(optax.losses.squared_error(logits, probs))),
        (
            train.mse(logits, probs, reduction="sum"),
            jnp.sum(optax.losses.squared_error(logits, probs)),
        ),
        (2 * train.mse(logits, probs), 4 * jnp.mean(optax.losses.l2_loss(logits, probs))),
    ]
    for got, want in pairs:
        np.testing.assert_array_equal(got, want)


def test_targets_may_be_lists_of_numbers():
    z = jnp.array([[0.0, 2.0], [1.0, -1.0]])
    np.testing.assert_array_equal(
        train.softmax_cross_entropy(z, [1, 0]), train.softmax_cross_entropy(z, jnp.array([1, 0]))
    )
    assert float(train.accuracy(z, [1, 1])) == 0.5
    np.testing.assert_array_equal(train.mse(jnp.zeros(2), [1.0, 3.0]), 5.0)
    np.testing.assert_array_equal(
        train.logistic_loss(jnp.zeros(2), [0, 1]),
        train.logistic_loss(jnp.zeros(2), jnp.array([0, 1])),
    )


def test_errors():
    with pytest.raises(
        ValueError,
        match=r"softmax_cross_entropy: integer `labels` must have the "
        r"shape of `logits` without its last \(class\) axis, \(4,\), got \(3,\)",
    ):
        train.softmax_cross_entropy(jnp.zeros((4, 2)), jnp.zeros(3, jnp.int32))
    with pytest.raises(
        ValueError,
        match=r"accuracy: floating `labels` .* must have the shape "
        r"of `logits`, \(4, 2\), got \(4, 3\)",
    ):
        train.accuracy(jnp.zeros((4, 2)), jnp.zeros((4, 3)))
    with pytest.raises(
        TypeError,
        match=r"softmax_cross_entropy: `labels` must be integer class "
        r"indices or floating class probabilities, got dtype bool",
    ):
        train.softmax_cross_entropy(jnp.zeros((4, 2)), jnp.zeros(4, bool))
    with pytest.raises(TypeError, match=r"logistic_loss: `logits` must have a floating dtype"):
        train.logistic_loss(jnp.zeros(3, jnp.int32), jnp.zeros(3))
    with pytest.raises(
        ValueError,
        match=r"mse: `predictions` and `targets` must have the same "
        r"shape, got \(3,\) and \(3, 1\)",
    ):
        train.mse(jnp.zeros(3), jnp.zeros((3, 1)))
    with pytest.raises(
        ValueError,
        match=r"mse: `reduction` must be one of 'mean', 'sum', "
        r"'none', got 'max'",
    ):
        train.mse(jnp.zeros(3), jnp.zeros(3), reduction="max")
    with pytest.raises(
        TypeError,
        match=r"accuracy: `labels` must be an array \(or a list of "
        r"numbers\), got str 'ab'",
    ):
        train.accuracy(jnp.zeros((2, 4)), "ab")
    with pytest.raises(
        TypeError,
        match=r"binary_accuracy: `labels` must be an array .*got "
        r"object <object object",
    ):
        train.binary_accuracy(jnp.zeros(2), object())
    with pytest.raises(
        TypeError,
        match=r"softmax_cross_entropy: `labels` must be integer class "
        r"indices or floating class probabilities, got dtype complex64",
    ):
        train.softmax_cross_entropy(jnp.zeros((2, 4)), jnp.zeros(2, jnp.complex64))
    with pytest.raises(
        TypeError,
        match=r"softmax_cross_entropy: `logits` must be an array "
        r"\(jax.Array or numpy.ndarray\) with a real floating dtype, got an "
        r"object of type list",
    ):
        train.softmax_cross_entropy([[0.0, 1.0]], jnp.array([0]))
    with pytest.raises(
        ValueError,
        match=r"logistic_loss: `logits` and `labels` must have the "
        r"same shape, got \(3,\) and \(2,\)",
    ):
        train.logistic_loss(jnp.zeros(3), [0, 1])
