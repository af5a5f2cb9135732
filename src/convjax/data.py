"""Synthetic 1-D data sets for the experiments: pure, jit-able, deterministic from a key.

Every generator takes a PRNG key first and the problem size ``n`` (number of
examples) second; all other settings are keyword-only and static (hashable), so
``jax.jit(partial(gen, n=..., d=..., ...))`` compiles once per setting and the
same key always gives the same data. Inputs are channels-last, ``x`` of shape
``(n, d, 1)`` (``d`` positions, one channel), ready for :func:`convjax.conv1d`.
Labels are class indices, ``y`` of shape ``(n,)`` and dtype int32 with values in
``{0, 1}``; :func:`signed_labels` maps them to ``-1.0 / +1.0``.

Both classes are EXACTLY balanced by construction: the labels are a random
permutation of ``[0, 1, 0, 1, ...]`` (``n // 2`` of class 1, the odd one out, if
any, is class 0) and each input is drawn from its class's distribution.

Local-pattern tasks (:func:`local_pattern`, :func:`marked_pattern`)
--------------------------------------------------------------------
Every position holds a random sign. A window of ``k`` consecutive positions
carries the pattern, with values ``+-1``; every other position is background,
``noise * (+-1)`` with independent fair signs. The label is a function of the
window only:

* ``rule="parity"``: ``y = (number of -1 in the window) mod 2`` (XOR of ``k``
  bits). Class ``y`` windows are uniform over the ``2**(k-1)`` sign patterns of
  that parity.
* ``rule="motif"``: ``y = 1`` iff the window equals ``motif``; class-0 windows
  are uniform over the ``2**k - 1`` other sign patterns.

``position="fixed"``: the window starts at ``start`` in every example (fixed, but
unknown to the learner). ``position="random"``: it starts at a position drawn
uniformly from ``{0, ..., d-k}`` for each example; the window is recognised by
its amplitude (``|x| = 1`` there, ``|x| = noise < 1`` elsewhere), so the task
stays noiseless (Bayes error 0) and a convolution followed by a max over
positions can solve it.

Non-Gaussian fields (:func:`nlgp`, :func:`nlgp_clone`)
------------------------------------------------------
The data model of Ingrosso & Goldt (PNAS 2022), "Data-driven emergence of
convolutional structure in neural networks", in 1-D. Class ``y`` draws a
periodic, translation-invariant Gaussian field ``z ~ N(0, C(xi_y))`` on a ring
of ``d`` sites with

    C(xi)_ij = exp(-dist(i, j)**2 / xi**2),   dist(i, j) = min(|i-j|, d-|i-j|),

and passes it through the normalised saturating nonlinearity

    x_i = erf(g * z_i) / Z(g),   Z(g)**2 = (2/pi) arcsin(2 g**2 / (1 + 2 g**2)),

so that every ``x_i`` has variance 1. Small gain ``g`` gives (nearly) Gaussian
data, large ``g`` (nearly) binary ``sign(z)`` data. The classes differ only in
their correlation length, not in their marginals.

With the wrap-around distance, ``C(xi)`` can have negative eigenvalues when
``xi`` is not small against ``d`` (below ``-1e-12`` from about ``xi >= d/10``:
the smallest is ``-1e-11`` for ``d=40, xi=4``, ``-9e-8`` for ``xi=5``, ``-2e-3``
for ``xi=8``). :func:`field_covariance` then clips the eigenvalues at 0 and
rescales to unit diagonal; the generators sample from exactly the matrix it
returns, and the matrix is the plain kernel whenever no eigenvalue is below
``-1e-12``.

The covariance of ``x`` is known in closed form (the arcsin formula for erf of
jointly Gaussian variables with unit variance and correlation ``c``):

    Cov(x_i, x_j) = (2/pi) arcsin(2 g**2 C_ij / (1 + 2 g**2)) / Z(g)**2.

:func:`nlgp_covariance` returns it, and the Gaussian clone :func:`nlgp_clone`
samples ``N(0, Cov(x | y))`` for each class ``y`` with that ANALYTIC covariance
(no empirical estimate): same first and second moments as :func:`nlgp`, no
higher-order structure.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from convjax import _checks

POSITIONS = ("fixed", "random")
RULES = ("parity", "motif")


class Dataset(NamedTuple):
    """A labelled data set (a pytree, unpacks as ``x, y = data``).

    Attributes:
      x: inputs, shape ``(n, d, 1)``, floating.
      y: labels, shape ``(n,)``, int32 class indices in ``{0, 1}``.
    """

    x: jax.Array
    y: jax.Array


# ---- small helpers ------------------------------------------------------------


def _as_float(
    fn: str,
    name: str,
    value,
    *,
    low: float,
    high: float | None = None,
    low_open: bool = False,
    high_open: bool = False,
) -> float:
    """Returns ``value`` as a Python float in the stated range or raises naming it."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, float, np.number)):
        raise TypeError(
            f"{fn}: `{name}` must be a real number, got {value!r} of type {type(value).__name__}."
        )
    v = float(value)
    bad = (
        not math.isfinite(v)
        or (v <= low if low_open else v < low)
        or (high is not None and (v >= high if high_open else v > high))
    )
    if bad:
        lo = f"{'>' if low_open else '>='} {low}"
        hi = "" if high is None else f" and {'<' if high_open else '<='} {high}"
        raise ValueError(f"{fn}: `{name}` must be a finite number {lo}{hi}, got {value!r}.")
    return v


def _float_dtype(fn: str, dtype):
    try:
        dt = jnp.dtype(dtype)
    except TypeError:
        raise TypeError(f"{fn}: `dtype` must be a floating dtype, got {dtype!r}.") from None
    if not jnp.issubdtype(dt, jnp.floating):
        raise TypeError(f"{fn}: `dtype` must be a floating dtype, got {dt}.")
    return dt


def balanced_labels(key, n: int):
    """Exactly balanced binary labels in random order.

    Args:
      key: PRNG key.
      n: number of labels, int >= 1.

    Returns:
      ``(n,)`` int32 array, a random permutation of ``[0, 1, 0, 1, ...]``:
      ``n // 2`` ones and ``n - n // 2`` zeros.
    """
    n = _checks.as_positive_int("balanced_labels", "n", n)
    return _balanced_from(jax.random.bits(key, (n,), dtype=jnp.uint32))


def _balanced_from(sort_keys):
    """``[0, 1, 0, 1, ...]`` permuted by the order of ``sort_keys`` (``(n,)``, iid
    continuous or uniform words: every permutation is equally likely up to ties)."""
    return (jnp.argsort(sort_keys) % 2).astype(jnp.int32)


def _below(words, m: int):
    """Uniform ints in ``[0, m)`` from uniform uint32 ``words``: ``floor(words * m / 2**32)``
    (Lemire's multiply-shift, in 16-bit limbs so that it needs no 64-bit integers; the
    bias is at most ``m / 2**32``). ``m`` is a static int, ``1 <= m <= 2**31``."""
    m = jnp.uint32(m)
    lo16 = jnp.uint32(0xFFFF)
    a_hi, a_lo = words >> 16, words & lo16
    b_hi, b_lo = m >> 16, m & lo16
    lh, hl = a_lo * b_hi, a_hi * b_lo
    mid = ((a_lo * b_lo) >> 16) + (lh & lo16) + (hl & lo16)
    high = a_hi * b_hi + (lh >> 16) + (hl >> 16) + (mid >> 16)
    return high.astype(jnp.int32)


def class_counts(y, *, num_classes: int = 2):
    """Number of examples per class.

    Args:
      y: ``(n,)`` integer labels in ``{0, ..., num_classes - 1}``.
      num_classes: int >= 1.

    Returns:
      ``(num_classes,)`` int32 array of counts (labels outside the range are not counted).
    """
    num_classes = _checks.as_positive_int("class_counts", "num_classes", num_classes)
    _checks.check_ndim("class_counts", "y", y, 1, "(n,)")
    if not jnp.issubdtype(jnp.result_type(y), jnp.integer):
        raise TypeError(
            f"class_counts: `y` must hold integer class indices, got dtype {jnp.result_type(y)}."
        )
    y = jnp.asarray(y)
    return jnp.sum(
        y[:, None] == jnp.arange(num_classes, dtype=y.dtype)[None, :], axis=0, dtype=jnp.int32
    )


def signed_labels(y, dtype=jnp.float32):
    """Maps class indices ``{0, 1}`` to signs ``{-1, +1}``: ``(n,)`` -> ``(n,)`` of ``dtype``."""
    dt = _float_dtype("signed_labels", dtype)
    return (2 * jnp.asarray(y) - 1).astype(dt)


def train_test_split(key, data: Dataset, *, n_test: int) -> tuple[Dataset, Dataset]:
    """Random split of a data set into a training and a test part.

    The split is a uniform random permutation (not stratified): each part is
    balanced only up to sampling noise. For exactly balanced parts, draw the two
    sets from the generator with two keys (``jax.random.split(key)``) instead.

    Args:
      key: PRNG key.
      data: :class:`Dataset` with ``x`` of shape ``(n, ...)`` and ``y`` of shape ``(n,)``.
      n_test: size of the test part, ``1 <= n_test < n``.

    Returns:
      ``(train, test)``: datasets of ``n - n_test`` and ``n_test`` examples.
    """
    x, y = data
    n = np.shape(x)[0] if np.ndim(x) else 0
    if np.ndim(y) != 1 or np.shape(y)[0] != n:
        raise ValueError(
            f"train_test_split: `data.y` must have shape (n,) with n = x.shape[0] = {n}, "
            f"got shape {tuple(np.shape(y))}."
        )
    n_test = _checks.as_positive_int("train_test_split", "n_test", n_test)
    if n_test >= n:
        raise ValueError(
            f"train_test_split: `n_test` must be smaller than the number of examples {n}, "
            f"got {n_test}."
        )
    perm = jax.random.permutation(key, n)
    test, train = perm[:n_test], perm[n_test:]
    return Dataset(x[train], y[train]), Dataset(x[test], y[test])


# ---- local-pattern tasks --------------------------------------------------------


def _default_motif(k: int) -> tuple[int, ...]:
    """``+1, -1, -1, +1, +1, -1, -1, ...``: neither constant nor alternating."""
    return tuple(1 if ((i + 1) // 2) % 2 == 0 else -1 for i in range(k))


def _check_motif(motif, k: int, fn: str = "local_pattern") -> tuple[int, ...]:
    if motif is None:
        return _default_motif(k)
    try:
        values = tuple(np.asarray(motif).reshape(-1).tolist())
    except (TypeError, ValueError):
        raise TypeError(f"{fn}: `motif` must be a sequence of +-1, got {motif!r}.") from None
    if np.ndim(motif) != 1 or len(values) != k or any(v not in (1, -1) for v in values):
        raise ValueError(
            f"{fn}: `motif` must be a sequence of {k} values, each +1 or -1 "
            f"(one per window position, k={k}), got {motif!r}."
        )
    return tuple(int(v) for v in values)


def _bits_to_signs(codes, k: int):
    """``(n,)`` ints in ``[0, 2**k)`` -> ``(n, k)`` signs; bit ``j`` set gives ``-1`` at ``j``."""
    bits = (codes[:, None] >> jnp.arange(k, dtype=codes.dtype)[None, :]) & 1
    return 1 - 2 * bits


def local_pattern(
    key,
    n: int,
    *,
    d: int,
    k: int,
    position: str = "fixed",
    start: int | None = None,
    rule: str = "parity",
    noise: float = 0.5,
    motif: Sequence[int] | None = None,
    dtype=jnp.float32,
) -> Dataset:
    """Binary task whose label is a function of ``k`` consecutive inputs.

    See the module docstring for the full definition. Summary: ``x[:, j, 0]`` is
    ``+-1`` inside the window ``[s, s+k)`` and ``noise * (+-1)`` outside, with
    fair independent signs; ``y`` is the window's parity (``rule="parity"``) or
    whether the window equals ``motif`` (``rule="motif"``). Classes are exactly
    balanced (see :func:`balanced_labels`).

    Args:
      key: PRNG key.
      n: number of examples, int >= 1.
      d: input length (positions), int >= k.
      k: window length, ``1 <= k <= min(d, 30)``.
      position: ``"fixed"``: the window starts at ``start`` in every example;
        ``"random"``: at a uniform random start in ``{0, ..., d-k}`` per example.
      start: first position of the fixed window, ``0 <= start <= d-k``; default
        ``(d - k) // 2`` (the middle). Must be ``None`` with ``position="random"``.
      rule: ``"parity"`` or ``"motif"``.
      noise: amplitude of the background signs, ``0 <= noise <= 1`` for a fixed
        window (``1``: the background looks like the window, the learner must find
        the window's position), ``0 <= noise < 1`` for a random window (so that the
        window can be told from the background).
      motif: the ``k`` signs of the motif for ``rule="motif"``; default
        ``+1, -1, -1, +1, +1, -1, ...``. Must be ``None`` with ``rule="parity"``.
      dtype: floating dtype of ``x``.

    Returns:
      :class:`Dataset` with ``x`` of shape ``(n, d, 1)`` and dtype ``dtype``, and
      ``y`` of shape ``(n,)``, int32 in ``{0, 1}``.

    Raises:
      ValueError: a size or option out of range.
      TypeError: a non-integer size or a non-floating dtype.

    Example:
      >>> import jax
      >>> x, y = local_pattern(jax.random.key(0), 4, d=8, k=2, noise=0.5)
      >>> x.shape, y.shape, y.dtype
      ((4, 8, 1), (4,), dtype('int32'))
    """
    fn = "local_pattern"
    n, d, k, position, start, rule, pattern = _pattern_args(
        fn, n, d, k, position, start, rule, motif
    )
    dt = _float_dtype(fn, dtype)
    noise = _as_float(fn, "noise", noise, low=0.0, high=1.0, high_open=position == "random")
    x, y, _ = _plant(key, n, d, k, position, start, rule, pattern, noise)
    return Dataset(x.astype(dt)[:, :, None], y)


def marked_pattern(
    key,
    n: int,
    *,
    d: int,
    k: int,
    position: str = "fixed",
    start: int | None = None,
    rule: str = "parity",
    motif: Sequence[int] | None = None,
    dtype=jnp.float32,
) -> Dataset:
    """Pattern-only task: the window's values have the background's distribution, a
    second channel marks where the window is.

    Channel 0 is :func:`local_pattern` with ``noise=1``: every position holds a fair
    random sign, the window included (for ``rule="parity"`` each window position is a
    fair sign, and so is every set of ``k - 1`` window positions: only the product of
    all ``k`` carries the label). Channel 1 is the MARKER: ``1`` on the window's ``k``
    positions, ``0`` elsewhere. The marker says where the window is, never what the
    label is (it is the same for both classes), so amplitude is not a cue: a net must
    read the pattern. With ``position="fixed"`` the marker is the same in every example
    and carries no information beyond the (learnable) fixed position.

    Args:
      key: PRNG key.
      n: number of examples, int >= 1.
      d: input length, int >= k.
      k: window length, ``1 <= k <= min(d, 30)``.
      position: ``"fixed"`` or ``"random"`` (uniform start per example).
      start: the fixed window's first position (default the middle); None for random.
      rule: ``"parity"`` (the marginal of every input is exactly that of the
        background) or ``"motif"`` (the window's per-site marginals are not).
      motif: as in :func:`local_pattern`.
      dtype: floating dtype of ``x``.

    Returns:
      :class:`Dataset` with ``x`` of shape ``(n, d, 2)`` (channel 0 the signs, channel
      1 the marker) and ``y`` of shape ``(n,)``, int32 in ``{0, 1}``.

    Raises:
      ValueError, TypeError: as :func:`local_pattern`, naming ``marked_pattern``.

    Example:
      >>> import jax
      >>> x, y = marked_pattern(jax.random.key(0), 4, d=8, k=3, position="random")
      >>> x.shape, [int(v) for v in x[:, :, 1].sum(axis=1)]
      ((4, 8, 2), [3, 3, 3, 3])
    """
    fn = "marked_pattern"
    n, d, k, position, start, rule, pattern = _pattern_args(
        fn, n, d, k, position, start, rule, motif
    )
    dt = _float_dtype(fn, dtype)
    x, y, inside = _plant(key, n, d, k, position, start, rule, pattern, 1.0)
    return Dataset(jnp.stack([x, inside], axis=-1).astype(dt), y)


def _pattern_args(fn, n, d, k, position, start, rule, motif):
    """Checks and normalises the arguments shared by the local-pattern generators."""
    n = _checks.as_positive_int(fn, "n", n)
    d = _checks.as_positive_int(fn, "d", d)
    k = _checks.as_positive_int(fn, "k", k)
    if k > d:
        raise ValueError(f"{fn}: the window `k`={k} must fit in the input, k <= d={d}.")
    if k > 30:
        raise ValueError(f"{fn}: `k` must be <= 30 (window patterns are int32 codes), got {k}.")
    position = _checks.check_choice(fn, "position", position, POSITIONS)
    rule = _checks.check_choice(fn, "rule", rule, RULES)
    if position == "random":
        if start is not None:
            raise ValueError(
                f"{fn}: `start` must be None with position='random' (the start is drawn "
                f"per example), got {start!r}."
            )
    else:
        start = (
            (d - k) // 2
            if start is None
            else _checks.as_positive_int(fn, "start", start, minimum=0)
        )
        if start > d - k:
            raise ValueError(
                f"{fn}: `start` must satisfy 0 <= start <= d - k = {d - k} (the window "
                f"[start, start+k) must fit in d={d} positions), got {start}."
            )
    if rule == "parity":
        if motif is not None:
            raise ValueError(f"{fn}: `motif` is only used with rule='motif', got {motif!r}.")
        pattern: tuple[int, ...] = ()
    else:
        pattern = tuple(_check_motif(motif, k, fn))
    return n, d, k, position, start, rule, pattern


def _plant(key, n, d, k, position, start, rule, pattern, noise):
    """``(x, y, inside)``: ``x`` ``(n, d)`` int32 signs (window) / ``noise`` signs
    (background), ``y`` the labels, ``inside`` ``(n, d)`` int32 window indicator."""
    # One draw of random words for everything (each separate jax.random call costs
    # about a second of XLA compilation on CPU): column 0 orders the labels,
    # column 1 picks the window pattern, column 2 the start, the rest the background.
    words = jax.random.bits(key, (n, 3 + d), dtype=jnp.uint32)
    y = _balanced_from(words[:, 0])
    if rule == "parity":
        # k-1 free bits, the last one fixes the parity: uniform over that class.
        free = _below(words[:, 1], 2 ** (k - 1))
        free_parity = jax.lax.population_count(free) & 1
        codes = free | ((free_parity ^ y) << (k - 1))
    else:
        motif_code = sum(1 << j for j, v in enumerate(pattern) if v == -1)
        other = _below(words[:, 1], 2**k - 1)
        other = other + (other >= motif_code).astype(jnp.int32)  # skip the motif
        codes = jnp.where(y == 1, jnp.int32(motif_code), other)
    window = _bits_to_signs(codes, k)  # (n, k)

    background = noise * (1 - 2 * (words[:, 3:] >> 31).astype(jnp.int32))
    if position == "random":
        starts = _below(words[:, 2], d - k + 1)
    else:
        starts = jnp.full((n,), start, dtype=jnp.int32)
    offset = jnp.arange(d, dtype=jnp.int32)[None, :] - starts[:, None]  # (n, d)
    inside = (offset >= 0) & (offset < k)
    planted = jnp.take_along_axis(window, jnp.clip(offset, 0, k - 1), axis=1)
    return jnp.where(inside, planted, background), y, inside.astype(jnp.int32)


# ---- Ingrosso & Goldt non-Gaussian fields ------------------------------------------


def _check_xi(fn: str, xi) -> tuple[float, float]:
    if isinstance(xi, (str, bytes)) or not isinstance(xi, Sequence) or len(xi) != 2:
        raise ValueError(
            f"{fn}: `xi` must be a pair (xi0, xi1) of correlation lengths, one per class, "
            f"got {xi!r}."
        )
    xi0, xi1 = (_as_float(fn, f"xi[{c}]", v, low=0.0, low_open=True) for c, v in enumerate(xi))
    return xi0, xi1


def erf_normaliser(gain: float) -> float:
    """``Z(g) = sqrt((2/pi) arcsin(2 g**2 / (1 + 2 g**2)))``: the standard deviation of
    ``erf(g z)`` for ``z ~ N(0, 1)``, so that ``erf(g z) / Z(g)`` has unit variance."""
    g = _as_float("erf_normaliser", "gain", gain, low=0.0, low_open=True)
    return math.sqrt(2.0 / math.pi * math.asin(2 * g * g / (1 + 2 * g * g)))


def field_covariance(d: int, xi: float) -> np.ndarray:
    """Covariance of the latent periodic Gaussian field ``z`` on a ring of ``d`` sites.

    ``C_ij = exp(-dist(i, j)**2 / xi**2)`` with the wrap-around distance
    ``dist(i, j) = min(|i-j|, d-|i-j|)``, made positive semi-definite by clipping
    negative eigenvalues at 0 and rescaled to unit diagonal when the smallest
    eigenvalue is below ``-1e-12`` (about ``xi >= d/10``; see the module docstring),
    left as it is otherwise.

    Args:
      d: number of sites, int >= 1.
      xi: correlation length, > 0.

    Returns:
      ``(d, d)`` float64 numpy array: symmetric, circulant, unit diagonal, PSD.
    """
    fn = "field_covariance"
    d = _checks.as_positive_int(fn, "d", d)
    xi = _as_float(fn, "xi", xi, low=0.0, low_open=True)
    r = np.arange(d)
    dist = np.abs(r[:, None] - r[None, :])
    dist = np.minimum(dist, d - dist)
    c = np.exp(-(dist.astype(np.float64) ** 2) / xi**2)
    evals, evecs = np.linalg.eigh(c)
    if evals.min() < -1e-12:
        c = (evecs * np.maximum(evals, 0.0)) @ evecs.T
        s = 1.0 / np.sqrt(np.diag(c))
        c = s[:, None] * c * s[None, :]
        c = 0.5 * (c + c.T)
    return c


def nlgp_covariance(d: int, xi: float, gain: float) -> np.ndarray:
    """Analytic covariance of ``x = erf(gain * z) / Z(gain)``.

    Here ``z ~ N(0, field_covariance(d, xi))``, and

    ``Cov(x_i, x_j) = (2/pi) arcsin(2 g**2 C_ij / (1 + 2 g**2)) / Z(g)**2`` (unit diagonal).

    Args:
      d: number of sites, int >= 1.
      xi: correlation length of the latent field, > 0.
      gain: ``g > 0``.

    Returns:
      ``(d, d)`` float64 numpy array.
    """
    fn = "nlgp_covariance"
    g = _as_float(fn, "gain", gain, low=0.0, low_open=True)
    c = field_covariance(d, xi)
    a = 2 * g * g / (1 + 2 * g * g)
    return np.arcsin(a * c) / math.asin(a)


def _sym_sqrt(cov: np.ndarray) -> np.ndarray:
    """Symmetric square root of a PSD matrix (eigenvalues clipped at 0)."""
    evals, evecs = np.linalg.eigh(cov)
    return (evecs * np.sqrt(np.maximum(evals, 0.0))) @ evecs.T


def _check_field_args(fn: str, n, d, xi, gain, dtype):
    n = _checks.as_positive_int(fn, "n", n)
    d = _checks.as_positive_int(fn, "d", d)
    xi = _check_xi(fn, xi)
    g = _as_float(fn, "gain", gain, low=0.0, low_open=True)
    return n, d, xi, g, _float_dtype(fn, dtype)


def _two_class_gaussian(key, n: int, roots: np.ndarray, dt):
    """Balanced labels ``y`` ``(n,)`` and ``z ~ N(0, roots[y] @ roots[y].T)`` ``(n, d)``,
    computed in ``dt`` promoted to at least float32; ``roots`` is ``(2, d, d)``."""
    work = jnp.promote_types(dt, jnp.float32)
    # one random draw (each jax.random call costs compilation time): the last column
    # orders the labels, the others are the white noise.
    eps = jax.random.normal(key, (n, roots.shape[-1] + 1), dtype=work)
    y = _balanced_from(eps[:, -1])
    eps = eps[:, :-1]
    r = jnp.asarray(roots, work)
    hp = jax.lax.Precision.HIGHEST
    z0 = jnp.einsum("ij,nj->ni", r[0], eps, precision=hp)
    z1 = jnp.einsum("ij,nj->ni", r[1], eps, precision=hp)
    return y, jnp.where((y == 1)[:, None], z1, z0)


def nlgp(key, n: int, *, d: int, xi: Sequence[float], gain: float, dtype=jnp.float32) -> Dataset:
    """Two classes of non-Gaussian periodic fields (Ingrosso & Goldt, PNAS 2022).

    Class ``y`` (``y = 0, 1``): ``z ~ N(0, field_covariance(d, xi[y]))`` and
    ``x = erf(gain * z) / erf_normaliser(gain)``. Every ``x_i`` has mean 0 and
    variance 1; the covariance is :func:`nlgp_covariance`.

    Args:
      key: PRNG key.
      n: number of examples, int >= 1.
      d: number of sites (input length), int >= 1.
      xi: ``(xi0, xi1)``, correlation lengths of class 0 and class 1, each > 0.
      gain: ``g > 0``; small: nearly Gaussian, large: nearly ``sign(z)``.
      dtype: floating dtype of ``x``.

    Returns:
      :class:`Dataset`: ``x`` ``(n, d, 1)`` of ``dtype``, ``y`` ``(n,)`` int32, balanced.

    Example:
      >>> import jax
      >>> x, y = nlgp(jax.random.key(0), 6, d=10, xi=(1.0, 3.0), gain=3.0)
      >>> x.shape, int(y.sum())
      ((6, 10, 1), 3)
    """
    n, d, xi, g, dt = _check_field_args("nlgp", n, d, xi, gain, dtype)
    roots = np.stack([_sym_sqrt(field_covariance(d, v)) for v in xi])
    y, z = _two_class_gaussian(key, n, roots, dt)
    x = jax.scipy.special.erf(g * z) / erf_normaliser(g)
    return Dataset(x.astype(dt)[:, :, None], y)


def nlgp_clone(
    key, n: int, *, d: int, xi: Sequence[float], gain: float, dtype=jnp.float32
) -> Dataset:
    """The Gaussian clone of :func:`nlgp`: ``x ~ N(0, nlgp_covariance(d, xi[y], gain))``.

    Same class means (0) and class covariances as :func:`nlgp` (analytic, not
    estimated), Gaussian in every other respect.

    Args:
      key: PRNG key.
      n: number of examples, int >= 1.
      d: number of sites, int >= 1.
      xi: ``(xi0, xi1)``, each > 0.
      gain: ``g > 0`` of the non-Gaussian model being cloned.
      dtype: floating dtype of ``x``.

    Returns:
      :class:`Dataset`: ``x`` ``(n, d, 1)`` of ``dtype``, ``y`` ``(n,)`` int32, balanced.
    """
    n, d, xi, g, dt = _check_field_args("nlgp_clone", n, d, xi, gain, dtype)
    roots = np.stack([_sym_sqrt(nlgp_covariance(d, v, g)) for v in xi])
    y, x = _two_class_gaussian(key, n, roots, dt)
    return Dataset(x.astype(dt)[:, :, None], y)
