"""Standard losses and metrics for :func:`convjax.train.fit`, plus seed statistics.

Every loss and metric takes predictions first and targets second and, by default,
returns the MEAN over all example axes (a scalar), which is what a
``loss(params, batch) -> scalar`` needs. ``reduction="sum"`` sums instead and
``reduction="none"`` returns one value per example.

The losses are :mod:`optax.losses`, with convjax's input checks (shapes, dtypes,
named in the message) and reductions around them:

=============================  ===================================================
convjax                        computed by
=============================  ===================================================
:func:`softmax_cross_entropy`  ``optax.losses.softmax_cross_entropy_with_integer_labels``
                               (integer labels), ``optax.losses.softmax_cross_entropy``
                               (class probabilities)
:func:`logistic_loss`          ``optax.losses.sigmoid_binary_cross_entropy``
:func:`mse`                    ``optax.losses.squared_error``
=============================  ===================================================

The metrics optax does not have, :func:`accuracy` and :func:`binary_accuracy`, and
:func:`mean_std` are convjax's.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax

from convjax import _checks

REDUCTIONS = ("mean", "sum", "none")


def _reduce(fn: str, values, reduction: str):
    reduction = _checks.check_choice(fn, "reduction", reduction, REDUCTIONS)
    if reduction == "mean":
        return jnp.mean(values)
    if reduction == "sum":
        return jnp.sum(values)
    return values


def _as_array(fn: str, name: str, x):
    """``x`` if it is an array (or tracer); an array-like (list, tuple, number) as a jax
    array; anything else raises TypeError naming ``fn`` and ``name``."""
    if hasattr(x, "dtype") and hasattr(x, "shape"):
        return x
    if isinstance(x, (list, tuple, int, float, bool, np.number)):
        try:
            return jnp.asarray(x)
        except (TypeError, ValueError):
            pass
    text = repr(x)
    text = text if len(text) <= 60 else text[:57] + "..."
    raise TypeError(
        f"{fn}: `{name}` must be an array (or a list of numbers), got {type(x).__name__} {text}."
    )


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
    labels = _as_array(fn, "labels", labels)
    kind = _class_targets(fn, logits, labels)
    if kind == "index":
        per_example = optax.losses.softmax_cross_entropy_with_integer_labels(logits, labels)
    else:
        per_example = optax.losses.softmax_cross_entropy(logits, labels)
    return _reduce(fn, per_example, reduction)


def _check_same_shape(fn: str, a_name: str, a, b_name: str, b) -> None:
    if np.shape(a) != np.shape(b):
        raise ValueError(
            f"{fn}: `{a_name}` and `{b_name}` must have the same shape, got "
            f"{tuple(np.shape(a))} and {tuple(np.shape(b))}."
        )


def logistic_loss(logits, labels, *, reduction: str = "mean"):
    """Binary cross-entropy on logits: ``softplus(z) - y z``, computed stably
    (``optax.losses.sigmoid_binary_cross_entropy``: ``-y log sigmoid(z) - (1 - y) log
    sigmoid(-z)``, which keeps the relative precision of confident predictions for
    ``y`` in ``{0, 1}``).

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
    labels = _as_array(fn, "labels", labels)
    _check_same_shape(fn, "logits", logits, "labels", labels)
    per_example = optax.losses.sigmoid_binary_cross_entropy(logits, labels)
    return _reduce(fn, per_example, reduction)


def mse(predictions, targets, *, reduction: str = "mean"):
    """Mean squared error ``(predictions - targets) ** 2``
    (``optax.losses.squared_error``).

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
    targets = _as_array(fn, "targets", targets)
    _check_same_shape(fn, "predictions", predictions, "targets", targets)
    return _reduce(fn, optax.losses.squared_error(predictions, targets), reduction)


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
    labels = _as_array(fn, "labels", labels)
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
    labels = _as_array(fn, "labels", labels)
    _check_same_shape(fn, "logits", logits, "labels", labels)
    hits = ((logits > 0) == (jnp.asarray(labels) > 0.5)).astype(jnp.result_type(logits))
    return _reduce(fn, hits, reduction)


def mean_std(tree, *, axis: int = 0, ddof: int = 0, by=None, level: float | None = 0.95):
    """Mean and standard deviation of every leaf over the runs ``axis`` (e.g. over seeds),
    optionally per hyperparameter value.

    Host-side helper for results of :func:`convjax.train.fit_many`, whose history
    leaves have shape ``(n_runs, n_evals)``. A top-level ``"step"`` entry of a dict
    ``tree`` with fewer dimensions than the other leaves has no runs axis (fit_many's
    ``history["step"]``, shape ``(n_evals,)``): it is returned unchanged as the mean (and
    as ``low``/``high``) with zeros as the std.

    Args:
      tree: a pytree of arrays, each with the runs axis at ``axis``.
      axis: the axis to reduce (default 0, the runs axis).
      ddof: delta degrees of freedom of the standard deviation (0: population,
        1: the unbiased sample estimate).
      by: None, or each run's hyperparameter: an array ``(n_runs,)`` or a dict of such
        arrays (e.g. ``FitResult.hyper``), grouped by :func:`convjax.stats.group_runs`.
      level: with ``by``, the confidence level of the Student-t interval of each
        group's mean (:func:`convjax.stats.mean_interval`), or None for no interval.

    Returns:
      Without ``by``: ``(mean_tree, std_tree)``, two pytrees like ``tree`` of float numpy
      arrays with ``axis`` removed. With ``by``: ``{value: convjax.stats.MeanStd}``, one
      entry per distinct hyperparameter value (sorted), whose ``mean``, ``std``, ``low``
      and ``high`` are such pytrees (``low``/``high`` None when ``level`` is None) and
      ``n`` the group's number of runs.

    Raises:
      ValueError: ``axis`` out of range, too few runs for ``ddof`` (per group with
        ``by``), a group of one run with an interval asked for, ``by`` with a number
        of runs other than the leaves'.

    Example:
      >>> import numpy as np
      >>> m, s = mean_std({"loss": np.array([[1.0, 2.0], [3.0, 6.0]])})
      >>> m["loss"].tolist(), s["loss"].tolist()
      ([2.0, 4.0], [1.0, 2.0])
      >>> h = {"loss": np.array([[1.0], [5.0], [3.0], [7.0]]), "step": np.array([10])}
      >>> g = mean_std(h, by=np.array([0.1, 0.3, 0.1, 0.3]))
      >>> {lr: (r.mean["loss"].tolist(), r.n) for lr, r in g.items()}, g[0.1].mean["step"]
      ({0.1: ([2.0], 2), 0.3: ([6.0], 2)}, array([10]))
    """
    from convjax import stats  # numpy-only; imported here to keep this module's imports

    fn = "mean_std"
    ddof = _checks.as_positive_int(fn, "ddof", ddof, minimum=0)
    keys = list(tree) if isinstance(tree, dict) else None
    rest = {k: v for k, v in tree.items() if k != "step"} if keys else tree
    step = None
    if (
        keys
        and "step" in tree
        and rest
        and np.ndim(tree["step"]) < max(np.ndim(leaf) for leaf in jax.tree_util.tree_leaves(rest))
    ):
        tree, step = rest, np.asarray(tree["step"])  # shared by all runs
    groups = None if by is None else stats.group_runs(by)
    sizes = None if groups is None else [len(idx) for idx in groups.values()]
    for leaf in jax.tree_util.tree_leaves(tree):
        shape = tuple(np.shape(leaf))
        if not -len(shape) <= axis < len(shape):
            raise ValueError(f"{fn}: `axis` {axis} is out of range for a leaf of shape {shape}.")
        if sizes is not None and shape[axis] != sum(sizes):
            raise ValueError(
                f"{fn}: `by` gives {sum(sizes)} runs but a leaf of shape {shape} "
                f"has {shape[axis]} along axis {axis}."
            )
        if min(sizes or [shape[axis]]) <= ddof:
            raise ValueError(
                f"{fn}: need more than `ddof`={ddof} values along axis {axis}, got "
                + (
                    f"a leaf of shape {shape}."
                    if sizes is None
                    else f"groups of {sorted(set(sizes))} runs."
                )
            )
    if sizes is not None and level is not None and min(sizes) < 2:
        raise ValueError(
            f"{fn}: a group has 1 run; an interval needs at least 2 per group "
            "(pass `level=None` for means and stds only)."
        )

    def over(idx, f, shared):
        """``f`` of every leaf's runs ``idx`` (runs axis first); "step" put back."""
        out = jax.tree.map(lambda a: f(np.moveaxis(np.asarray(a, np.float64), axis, 0)[idx]), tree)
        if step is None or keys is None:
            return out
        return {k: (shared if k == "step" else out[k]) for k in keys}

    def summary(idx):
        mean = over(idx, lambda a: a.mean(axis=0), step)
        std = over(
            idx,
            lambda a: a.std(axis=0, ddof=ddof),
            None if step is None else np.zeros(np.shape(step)),
        )
        return mean, std

    if groups is None:
        return summary(slice(None))
    out = {}
    for key, idx in groups.items():
        mean, std = summary(idx)
        low = high = None
        if level is not None:
            low = over(idx, lambda a: np.asarray(stats.mean_interval(a, level=level).low), step)
            high = over(idx, lambda a: np.asarray(stats.mean_interval(a, level=level).high), step)
        out[key] = stats.MeanStd(mean, std, low, high, len(idx))
    return out
