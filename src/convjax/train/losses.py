"""Standard losses and metrics for :func:`convjax.train.fit`, plus seed statistics.

Every loss and metric takes predictions first and targets second and, by default,
returns the MEAN over all example axes (a scalar), which is what a
``loss(params, batch) -> scalar`` needs. ``reduction="sum"`` sums instead and
``reduction="none"`` returns one value per example.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from convjax import _checks

REDUCTIONS = ("mean", "sum", "none")


def _reduce(fn: str, values, reduction: str):
    reduction = _checks.check_choice(fn, "reduction", reduction, REDUCTIONS)
    if reduction == "mean":
        return jnp.mean(values)
    if reduction == "sum":
        return jnp.sum(values)
    return values


def _class_targets(fn: str, logits, labels):
    """Returns ``labels`` as class probabilities ``(..., C)`` or integer indices ``(...)``."""
    _checks.check_floating(fn, "logits", logits)
    _checks.check_min_ndim(fn, "logits", logits, 1, "(..., C)")
    lshape, yshape = tuple(np.shape(logits)), tuple(np.shape(labels))
    ydtype = jnp.result_type(labels)
    if jnp.issubdtype(ydtype, jnp.integer):
        if yshape != lshape[:-1]:
            raise ValueError(
                f"{fn}: integer `labels` must have the shape of `logits` without its last "
                f"(class) axis, {lshape[:-1]}, got {yshape}."
            )
        return "index"
    if jnp.issubdtype(ydtype, jnp.floating):
        if yshape != lshape:
            raise ValueError(
                f"{fn}: floating `labels` (one-hot or class probabilities) must have the "
                f"shape of `logits`, {lshape}, got {yshape}."
            )
        return "probs"
    raise TypeError(
        f"{fn}: `labels` must be integer class indices or floating class probabilities, "
        f"got dtype {ydtype}."
    )


def softmax_cross_entropy(logits, labels, *, reduction: str = "mean"):
    """Softmax cross-entropy ``-sum_c p_c log softmax(logits)_c``.

    Args:
      logits: ``(..., C)`` unnormalised class scores.
      labels: ``(...)`` integer class indices in ``[0, C)``, or ``(..., C)`` floating
        class probabilities (e.g. one-hot).
      reduction: ``"mean"`` (default) or ``"sum"`` over ``...``, or ``"none"``.

    Returns:
      A scalar, or ``(...)`` per-example losses with ``reduction="none"``.

    Raises:
      ValueError: shapes that do not match as described, unknown ``reduction``.
      TypeError: non-floating ``logits``, labels neither integer nor floating.

    Example:
      >>> import jax.numpy as jnp
      >>> round(float(softmax_cross_entropy(jnp.zeros((2, 4)), jnp.array([0, 3]))), 6)  # log 4
      1.386294
    """
    fn = "softmax_cross_entropy"
    kind = _class_targets(fn, logits, labels)
    logp = jax.nn.log_softmax(logits, axis=-1)
    if kind == "index":
        per_example = -jnp.take_along_axis(logp, labels[..., None], axis=-1)[..., 0]
    else:
        per_example = -jnp.sum(labels * logp, axis=-1)
    return _reduce(fn, per_example, reduction)


def _check_same_shape(fn: str, a_name: str, a, b_name: str, b) -> None:
    if np.shape(a) != np.shape(b):
        raise ValueError(
            f"{fn}: `{a_name}` and `{b_name}` must have the same shape, got "
            f"{tuple(np.shape(a))} and {tuple(np.shape(b))}."
        )


def logistic_loss(logits, labels, *, reduction: str = "mean"):
    """Binary cross-entropy on logits: ``softplus(z) - y z``, computed stably.

    Args:
      logits: ``(...)`` real scores; the predicted probability of class 1 is
        ``sigmoid(logits)``.
      labels: ``(...)`` targets in ``[0, 1]`` (integer or floating), same shape.
      reduction: ``"mean"`` (default), ``"sum"`` or ``"none"``.

    Returns:
      A scalar, or ``(...)`` per-example losses with ``reduction="none"``.

    Raises:
      ValueError: shape mismatch, unknown ``reduction``.
      TypeError: non-floating ``logits``.

    Example:
      >>> import jax.numpy as jnp
      >>> round(float(logistic_loss(jnp.zeros(3), jnp.array([0, 1, 1]))), 6)  # log 2
      0.693147
    """
    fn = "logistic_loss"
    _checks.check_floating(fn, "logits", logits)
    _check_same_shape(fn, "logits", logits, "labels", labels)
    y = jnp.asarray(labels).astype(jnp.result_type(logits))
    # softplus(z) - y z written as max(z, 0) - y z + log1p(exp(-|z|)): for y in {0, 1}
    # the first two terms cancel exactly, so confident correct predictions keep
    # their relative precision.
    per_example = jnp.maximum(logits, 0) - y * logits + jnp.log1p(jnp.exp(-jnp.abs(logits)))
    return _reduce(fn, per_example, reduction)


def mse(predictions, targets, *, reduction: str = "mean"):
    """Mean squared error ``(predictions - targets) ** 2``.

    Args:
      predictions: any shape ``(...)``, floating.
      targets: same shape.
      reduction: ``"mean"`` (default) or ``"sum"`` over all elements, or ``"none"``
        for the elementwise squared errors.

    Returns:
      A scalar, or ``(...)`` squared errors with ``reduction="none"``.

    Raises:
      ValueError: shape mismatch, unknown ``reduction``.
      TypeError: non-floating ``predictions``.

    Example:
      >>> import jax.numpy as jnp
      >>> float(mse(jnp.array([1.0, 2.0]), jnp.array([0.0, 0.0])))
      2.5
    """
    fn = "mse"
    _checks.check_floating(fn, "predictions", predictions)
    _check_same_shape(fn, "predictions", predictions, "targets", targets)
    return _reduce(fn, jnp.square(predictions - targets), reduction)


def accuracy(logits, labels, *, reduction: str = "mean"):
    """Fraction of examples whose arg-max class is the label.

    Args:
      logits: ``(..., C)`` class scores (probabilities work too).
      labels: ``(...)`` integer class indices, or ``(..., C)`` floating one-hot /
        probabilities (the label is their arg-max).
      reduction: ``"mean"`` (default), ``"sum"`` (number correct) or ``"none"``.

    Returns:
      A scalar in ``[0, 1]`` in ``logits``' dtype, or ``(...)`` 0/1 values.

    Example:
      >>> import jax.numpy as jnp
      >>> float(accuracy(jnp.array([[0.0, 1.0], [2.0, 1.0]]), jnp.array([1, 1])))
      0.5
    """
    fn = "accuracy"
    kind = _class_targets(fn, logits, labels)
    target = labels if kind == "index" else jnp.argmax(labels, axis=-1)
    hits = (jnp.argmax(logits, axis=-1) == target).astype(jnp.result_type(logits))
    return _reduce(fn, hits, reduction)


def binary_accuracy(logits, labels, *, reduction: str = "mean"):
    """Fraction of examples with ``(logits > 0) == labels`` (labels in ``{0, 1}``).

    Args:
      logits: ``(...)`` real scores (threshold 0, i.e. probability 1/2).
      labels: ``(...)`` 0/1 targets, integer, boolean or floating.
      reduction: ``"mean"`` (default), ``"sum"`` or ``"none"``.

    Returns:
      A scalar in ``[0, 1]`` in ``logits``' dtype, or ``(...)`` 0/1 values.

    Example:
      >>> import jax.numpy as jnp
      >>> round(float(binary_accuracy(jnp.array([-1.0, 2.0, 3.0]), jnp.array([0, 1, 0]))), 6)
      0.666667
    """
    fn = "binary_accuracy"
    _checks.check_floating(fn, "logits", logits)
    _check_same_shape(fn, "logits", logits, "labels", labels)
    hits = ((logits > 0) == (jnp.asarray(labels) > 0.5)).astype(jnp.result_type(logits))
    return _reduce(fn, hits, reduction)


def mean_std(tree, *, axis: int = 0, ddof: int = 0):
    """Mean and standard deviation of every leaf over ``axis`` (e.g. over seeds).

    Host-side helper for results of :func:`convjax.train.fit_many`, whose history
    leaves have shape ``(n_runs, n_evals)``.

    Args:
      tree: a pytree of arrays, each with the runs axis at ``axis``.
      axis: the axis to reduce (default 0, the runs axis).
      ddof: delta degrees of freedom of the standard deviation (0: population,
        1: the unbiased sample estimate).

    Returns:
      ``(mean_tree, std_tree)``: two pytrees like ``tree`` of float numpy arrays with
      ``axis`` removed.

    Example:
      >>> import numpy as np
      >>> m, s = mean_std({"loss": np.array([[1.0, 2.0], [3.0, 6.0]])})
      >>> m["loss"].tolist(), s["loss"].tolist()
      ([2.0, 4.0], [1.0, 2.0])
    """
    ddof = _checks.as_positive_int("mean_std", "ddof", ddof, minimum=0)
    leaves = jax.tree_util.tree_leaves(tree)
    for leaf in leaves:
        nd = np.ndim(leaf)
        if not -nd <= axis < nd:
            raise ValueError(
                f"mean_std: `axis` {axis} is out of range for a leaf of shape "
                f"{tuple(np.shape(leaf))}."
            )
        if np.shape(leaf)[axis] <= ddof:
            raise ValueError(
                f"mean_std: need more than `ddof`={ddof} values along axis {axis}, got a "
                f"leaf of shape {tuple(np.shape(leaf))}."
            )

    def mean(a):
        return np.mean(np.asarray(a, dtype=np.float64), axis=axis)

    def std(a):
        return np.std(np.asarray(a, dtype=np.float64), axis=axis, ddof=ddof)

    return jax.tree.map(mean, tree), jax.tree.map(std, tree)
