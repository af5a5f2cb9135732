"""Tests for convjax.data: shapes, determinism, balance, the labelling rules (re-implemented
in plain numpy), and the moments of the non-Gaussian fields and their Gaussian clone
(checked against the closed forms, Gauss-Hermite quadrature and Monte Carlo)."""

from functools import partial

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.special import erf

from convjax import data

KEY = jax.random.key(0)

# One compilation per static setting (eager dispatch would compile every op separately).
local_pattern = jax.jit(
    data.local_pattern,
    static_argnames=("n", "d", "k", "position", "start", "rule", "noise", "motif", "dtype"),
)


# ---- plain numpy references --------------------------------------------------------


def np_field_kernel(d, xi):
    r = np.arange(d)
    dist = np.abs(r[:, None] - r[None, :])
    dist = np.minimum(dist, d - dist)
    return np.exp(-(dist**2) / xi**2)


def normal_expectation(f, h=0.005, half_width=9.0):
    """E[f(z)] for z ~ N(0, 1), by the trapezoid rule on a fine grid."""
    t = np.arange(-half_width, half_width + h / 2, h)
    return np.sum(np.exp(-t * t / 2) / np.sqrt(2 * np.pi) * f(t)) * h


def normal_pair_expectation(f, rho, h=0.01, half_width=9.0):
    """E[f(z1) f(z2)] for unit-variance z1, z2 with correlation rho (2-D trapezoid rule
    with the bivariate normal density written out)."""
    t = np.arange(-half_width, half_width + h / 2, h)
    a, b = np.meshgrid(t, t, indexing="ij")
    det = 1 - rho**2
    p = np.exp(-(a * a - 2 * rho * a * b + b * b) / (2 * det)) / (2 * np.pi * np.sqrt(det))
    return np.sum(p * f(a) * f(b)) * h * h


def np_label(window, rule, motif):
    """The labelling rule, from the window's signs."""
    if rule == "parity":
        return int(np.sum(window < 0) % 2)
    return int(np.array_equal(window, motif))


def find_window(row, k):
    """Start of the only run of |x| == 1 in a row (random-position task, noise < 1)."""
    on = np.flatnonzero(np.abs(row) == 1.0)
    assert len(on) == k and np.all(np.diff(on) == 1), row
    return int(on[0])


# ---- local-pattern tasks ---------------------------------------------------------


@pytest.mark.parametrize("position", ["fixed", "random"])
@pytest.mark.parametrize("rule", ["parity", "motif"])
@pytest.mark.parametrize("dtype", [jnp.float32, jnp.float64])
def test_local_pattern_shapes_dtypes_balance(position, rule, dtype):
    x, y = local_pattern(KEY, 11, d=9, k=3, position=position, rule=rule, dtype=dtype)
    assert x.shape == (11, 9, 1) and x.dtype == dtype
    assert y.shape == (11,) and y.dtype == jnp.int32
    np.testing.assert_array_equal(data.class_counts(y), [6, 5])


@settings(max_examples=12, deadline=None)
@given(
    d=st.integers(1, 12),
    k=st.integers(1, 6),
    noise=st.sampled_from([0.0, 0.25, 0.5, 0.75]),
    rule=st.sampled_from(["parity", "motif"]),
    position=st.sampled_from(["fixed", "random"]),
    seed=st.integers(0, 2**16),
    n=st.sampled_from([1, 24]),
)
def test_local_pattern_labels_follow_the_rule(d, k, noise, rule, position, seed, n):
    k = min(k, d)
    x, y = local_pattern(
        jax.random.key(seed),
        n,
        d=d,
        k=k,
        position=position,
        rule=rule,
        noise=noise,
        dtype=jnp.float64,
    )
    x, y = np.asarray(x[:, :, 0]), np.asarray(y)
    motif = np.array(data._default_motif(k))
    start = (d - k) // 2
    for row, label in zip(x, y, strict=True):
        s = start if position == "fixed" else find_window(row, k)
        window = row[s : s + k]
        background = np.delete(row, np.arange(s, s + k))
        np.testing.assert_array_equal(np.abs(window), 1.0)
        np.testing.assert_array_equal(np.abs(background), noise)
        assert np_label(window, rule, motif) == label
    assert np.sum(y) == n // 2


def test_local_pattern_fixed_start_and_custom_motif():
    motif = (1, 1, -1, 1)
    x, y = local_pattern(
        KEY, 200, d=10, k=4, start=0, rule="motif", motif=motif, noise=1.0, dtype=jnp.float64
    )
    x, y = np.asarray(x[:, :, 0]), np.asarray(y)
    is_motif = np.all(x[:, :4] == np.array(motif), axis=1)
    np.testing.assert_array_equal(is_motif, y == 1)


def test_local_pattern_distribution_within_class():
    """Windows are uniform over the patterns of their class, starts uniform, background fair.
    Tolerances: 5 binomial standard deviations per count."""
    n, d, k = 16000, 12, 3
    for rule in ("parity", "motif"):
        x, y = local_pattern(
            jax.random.key(1),
            n,
            d=d,
            k=k,
            position="random",
            rule=rule,
            noise=0.5,
            dtype=jnp.float64,
        )
        x, y = np.asarray(x[:, :, 0]), np.asarray(y)
        on = np.abs(x) == 1.0
        assert np.all(on.sum(1) == k)
        starts = on.argmax(1)
        assert np.all(on[np.arange(n)[:, None], starts[:, None] + np.arange(k)])
        codes = np.zeros(n, dtype=int)
        for j in range(k):
            codes += (x[np.arange(n), starts + j] < 0) * (1 << j)
        # start uniform over d - k + 1 values
        p = 1 / (d - k + 1)
        counts = np.bincount(starts, minlength=d - k + 1)
        assert np.all(np.abs(counts - n * p) <= 5 * np.sqrt(n * p * (1 - p)))
        # each class uniform over its patterns
        for c in (0, 1):
            cc = codes[y == c]
            allowed = np.unique(cc)
            if rule == "parity":
                assert len(allowed) == 2 ** (k - 1)
                assert np.all([bin(a).count("1") % 2 == c for a in allowed])
            else:
                assert len(allowed) == (1 if c == 1 else 2**k - 1)
            q = 1 / len(allowed)
            counts = np.array([np.sum(cc == a) for a in allowed])
            assert np.all(np.abs(counts - len(cc) * q) <= 5 * np.sqrt(len(cc) * q * (1 - q)) + 1)
        # background signs fair: mean of sign over all background entries ~ 0
        mask = np.ones_like(x, dtype=bool)
        for j in range(k):
            mask[np.arange(n), starts + j] = False
        signs = np.sign(x[mask])
        assert abs(signs.mean()) <= 5 / np.sqrt(signs.size)


def test_local_pattern_deterministic_jit_vmap():
    gen = partial(data.local_pattern, n=13, d=8, k=3, position="random", rule="parity")
    a = gen(KEY)
    b = gen(KEY)
    np.testing.assert_array_equal(a.x, b.x)
    np.testing.assert_array_equal(a.y, b.y)
    c = gen(jax.random.key(1))
    assert not np.array_equal(a.x, c.x)
    j = jax.jit(gen)(KEY)
    np.testing.assert_array_equal(a.x, j.x)
    np.testing.assert_array_equal(a.y, j.y)
    keys = jax.random.split(KEY, 3)
    v = jax.vmap(gen)(keys)
    assert v.x.shape == (3, 13, 8, 1)
    for s in range(3):
        np.testing.assert_array_equal(v.x[s], gen(keys[s]).x)
        np.testing.assert_array_equal(v.y[s], gen(keys[s]).y)


@pytest.mark.parametrize(
    "kwargs, exc, match",
    [
        (dict(n=0, d=5, k=2), ValueError, r"local_pattern: `n` must be an integer >= 1, got 0"),
        (dict(n=4, d=5, k=2.0), TypeError, r"local_pattern: `k` must be an integer, got 2.0"),
        (dict(n=4, d=3, k=4), ValueError, r"local_pattern: the window `k`=4 must fit"),
        (
            dict(n=4, d=5, k=2, start=4),
            ValueError,
            r"`start` must satisfy 0 <= start <= d - k = 3.*got 4",
        ),
        (dict(n=4, d=5, k=2, start=-1), ValueError, r"`start` must be an integer >= 0, got -1"),
        (
            dict(n=4, d=5, k=2, position="random", start=1),
            ValueError,
            r"`start` must be None with position='random'",
        ),
        (
            dict(n=4, d=5, k=2, position="random", noise=1.0),
            ValueError,
            r"`noise` must be a finite number >= 0.0 and < 1.0, got 1.0",
        ),
        (
            dict(n=4, d=5, k=2, noise=1.5),
            ValueError,
            r"`noise` must be a finite number >= 0.0 and <= 1.0, got 1.5",
        ),
        (dict(n=4, d=5, k=2, noise="a"), TypeError, r"`noise` must be a real number, got 'a'"),
        (
            dict(n=4, d=5, k=2, position="middle"),
            ValueError,
            r"`position` must be one of 'fixed', 'random', got 'middle'",
        ),
        (
            dict(n=4, d=5, k=2, rule="xor"),
            ValueError,
            r"`rule` must be one of 'parity', 'motif', got 'xor'",
        ),
        (
            dict(n=4, d=5, k=2, rule="motif", motif=(1, 0)),
            ValueError,
            r"`motif` must be a sequence of 2 values, each \+1 or -1",
        ),
        (
            dict(n=4, d=5, k=2, rule="motif", motif=(1, 1, 1)),
            ValueError,
            r"`motif` must be a sequence of 2 values",
        ),
        (dict(n=4, d=5, k=2, motif=(1, 1)), ValueError, r"`motif` is only used with rule='motif'"),
        (
            dict(n=4, d=5, k=2, dtype=jnp.int32),
            TypeError,
            r"local_pattern: `dtype` must be a floating dtype, got int32",
        ),
        (dict(n=4, d=40, k=31), ValueError, r"`k` must be <= 30"),
    ],
)
def test_local_pattern_errors(kwargs, exc, match):
    n = kwargs.pop("n")
    with pytest.raises(exc, match=match):
        data.local_pattern(KEY, n, **kwargs)


# ---- helpers ------------------------------------------------------------------------


@pytest.mark.parametrize("n", [1, 2, 7, 10])
def test_balanced_labels(n):
    y = data.balanced_labels(KEY, n)
    assert y.shape == (n,) and y.dtype == jnp.int32
    np.testing.assert_array_equal(np.bincount(np.asarray(y), minlength=2), [n - n // 2, n // 2])


def test_class_counts_and_signed_labels():
    y = jnp.array([0, 1, 1, 2, 1], dtype=jnp.int32)
    np.testing.assert_array_equal(data.class_counts(y, num_classes=3), [1, 3, 1])
    np.testing.assert_array_equal(data.class_counts(y), [1, 3])
    np.testing.assert_array_equal(data.signed_labels(jnp.array([0, 1, 1])), [-1.0, 1.0, 1.0])
    assert data.signed_labels(jnp.array([0, 1]), jnp.float64).dtype == jnp.float64
    with pytest.raises(TypeError, match=r"class_counts: `y` must hold integer class indices"):
        data.class_counts(jnp.array([0.0, 1.0]))
    with pytest.raises(ValueError, match=r"class_counts: `y` must have rank 1"):
        data.class_counts(jnp.zeros((2, 2), jnp.int32))


def test_train_test_split_partitions_the_data():
    n = 20
    x = jnp.arange(n, dtype=jnp.float64).reshape(n, 1, 1)
    y = jnp.arange(n, dtype=jnp.int32) % 2
    train, test = data.train_test_split(KEY, data.Dataset(x, y), n_test=6)
    assert train.x.shape == (14, 1, 1) and test.x.shape == (6, 1, 1)
    ids = np.concatenate([np.asarray(train.x).ravel(), np.asarray(test.x).ravel()])
    np.testing.assert_array_equal(np.sort(ids), np.arange(n))
    # the labels travel with their inputs
    np.testing.assert_array_equal(np.asarray(test.x).ravel() % 2, test.y)
    again = jax.jit(partial(data.train_test_split, n_test=6))(KEY, data.Dataset(x, y))
    np.testing.assert_array_equal(again[1].x, test.x)
    with pytest.raises(ValueError, match=r"train_test_split: `n_test` must be smaller than"):
        data.train_test_split(KEY, data.Dataset(x, y), n_test=20)
    with pytest.raises(ValueError, match=r"train_test_split: `data.y` must have shape \(n,\)"):
        data.train_test_split(KEY, data.Dataset(x, y[:5]), n_test=2)


# ---- non-Gaussian fields ---------------------------------------------------------


@pytest.mark.parametrize("d, xi", [(20, 1.0), (40, 3.0), (64, 2.5), (100, 9.5)])
def test_field_covariance_is_the_periodic_gaussian_kernel(d, xi):
    """For xi < d/10 no clipping happens: the matrix is exactly the kernel."""
    np.testing.assert_allclose(
        data.field_covariance(d, xi), np_field_kernel(d, xi), rtol=0, atol=1e-12
    )


@pytest.mark.parametrize("d, xi", [(16, 8.0), (40, 5.0), (40, 20.0)])
def test_field_covariance_clipped_is_psd_unit_diagonal_circulant(d, xi):
    assert np.linalg.eigvalsh(np_field_kernel(d, xi)).min() < -1e-8  # needs clipping
    c = data.field_covariance(d, xi)
    assert np.linalg.eigvalsh(c).min() > -1e-10
    np.testing.assert_allclose(np.diag(c), 1.0, atol=1e-12)
    np.testing.assert_allclose(c, c.T, atol=1e-12)
    for s in range(d):  # circulant: every row is the first row, rolled
        np.testing.assert_allclose(c[s], np.roll(c[0], s), atol=1e-10)


@pytest.mark.parametrize("g", [0.1, 1.0, 3.0, 30.0])
def test_erf_normaliser_and_arcsin_formula_by_quadrature(g):
    z2 = normal_expectation(lambda z: erf(g * z) ** 2)
    np.testing.assert_allclose(data.erf_normaliser(g) ** 2, z2, rtol=1e-8)
    # the closed form of the covariance against 2-D quadrature, entry by entry
    d, xi = 12, 2.0
    cov = data.nlgp_covariance(d, xi, g)
    c = np_field_kernel(d, xi)
    for j in (1, 3):
        quad = normal_pair_expectation(lambda z: erf(g * z), c[0, j]) / z2
        np.testing.assert_allclose(cov[0, j], quad, rtol=1e-8, atol=1e-12)
    np.testing.assert_allclose(np.diag(cov), 1.0, atol=1e-12)


@pytest.mark.parametrize("gen", [data.nlgp, data.nlgp_clone])
def test_field_generators_shapes_determinism_jit(gen):
    f = partial(gen, n=9, d=10, xi=(1.0, 3.0), gain=3.0)
    x, y = f(KEY)
    assert x.shape == (9, 10, 1) and x.dtype == jnp.float32
    assert y.shape == (9,) and y.dtype == jnp.int32
    np.testing.assert_array_equal(data.class_counts(y), [5, 4])
    np.testing.assert_array_equal(f(KEY).x, x)
    np.testing.assert_allclose(jax.jit(f)(KEY).x, x, rtol=1e-6, atol=1e-6)
    assert not np.array_equal(f(jax.random.key(5)).x, x)
    x64 = gen(KEY, 4, d=6, xi=(1.0, 2.0), gain=1.0, dtype=jnp.float64).x
    assert x64.dtype == jnp.float64


def _empirical_cov_and_se(x):
    """Sample covariance (means known to be 0) and the standard error of each entry."""
    prod = x[:, :, None] * x[:, None, :]
    return prod.mean(0), prod.std(0) / np.sqrt(len(x))


def test_clone_has_the_covariance_of_the_non_gaussian_data():
    """Measured on samples: each class covariance of nlgp and of nlgp_clone matches the
    analytic one, and the two measured covariances match each other, entry by entry
    within 5 standard errors (estimated from the same samples)."""
    n, d, xi, g = 40000, 12, (1.0, 3.0), 3.0
    k1, k2 = jax.random.split(jax.random.key(7))
    ng = data.nlgp(k1, n, d=d, xi=xi, gain=g, dtype=jnp.float64)
    cl = data.nlgp_clone(k2, n, d=d, xi=xi, gain=g, dtype=jnp.float64)
    for c in (0, 1):
        a = np.asarray(ng.x[ng.y == c][:, :, 0])
        b = np.asarray(cl.x[cl.y == c][:, :, 0])
        exact = data.nlgp_covariance(d, xi[c], g)
        ca, sa = _empirical_cov_and_se(a)
        cb, sb = _empirical_cov_and_se(b)
        assert np.all(np.abs(ca - exact) <= 5 * sa)
        assert np.all(np.abs(cb - exact) <= 5 * sb)
        assert np.all(np.abs(ca - cb) <= 5 * np.sqrt(sa**2 + sb**2))
        # means 0, within 5 standard errors
        assert np.all(np.abs(a.mean(0)) <= 5 * a.std(0) / np.sqrt(len(a)))
        assert np.all(np.abs(b.mean(0)) <= 5 * b.std(0) / np.sqrt(len(b)))
    # the two classes really differ: neighbour correlation of class 1 is larger
    c0, c1 = (data.nlgp_covariance(d, v, g)[0, 1] for v in xi)
    assert c1 > c0 + 0.3


def _excess_kurtosis(v):
    v = v - v.mean()
    return np.mean(v**4) / np.mean(v**2) ** 2 - 3.0


def test_non_gaussianity_measured_by_excess_kurtosis():
    """erf(g z)/Z is platykurtic for large g (-> sign(z), excess kurtosis -2); the clone is
    Gaussian (excess kurtosis 0). Expected values by quadrature; tolerance 5 standard
    errors of the kurtosis estimate, sqrt(24 / N) for the Gaussian."""
    n, d, xi = 20000, 8, (1.0, 3.0)
    k1, k2 = jax.random.split(jax.random.key(3))
    for g, expect_non_gaussian in ((3.0, True), (0.01, False)):
        z2 = normal_expectation(lambda z, g=g: erf(g * z) ** 2)
        z4 = normal_expectation(lambda z, g=g: erf(g * z) ** 4)
        exact = z4 / z2**2 - 3.0
        x = np.asarray(data.nlgp(k1, n, d=d, xi=xi, gain=g, dtype=jnp.float64).x).ravel()
        xc = np.asarray(data.nlgp_clone(k2, n, d=d, xi=xi, gain=g, dtype=jnp.float64).x).ravel()
        # sites are correlated; use n (not n*d) samples in the standard error: conservative
        tol = 5 * np.sqrt(24 / n)
        assert abs(_excess_kurtosis(x) - exact) <= tol
        assert abs(_excess_kurtosis(xc)) <= tol
        if expect_non_gaussian:
            assert exact < -1.0
            assert _excess_kurtosis(x) < _excess_kurtosis(xc) - 1.0
        else:
            assert abs(exact) < 1e-2


def test_small_gain_is_nearly_the_latent_gaussian():
    x = data.nlgp(KEY, 5, d=8, xi=(1.0, 2.0), gain=1e-4, dtype=jnp.float64)
    # same key, same latent draws: the clone's covariance tends to the field's
    np.testing.assert_allclose(
        data.nlgp_covariance(8, 2.0, 1e-4), data.field_covariance(8, 2.0), atol=1e-7
    )
    assert np.all(np.isfinite(np.asarray(x.x)))


@pytest.mark.parametrize(
    "kwargs, exc, match",
    [
        (dict(xi=(1.0,)), ValueError, r"nlgp: `xi` must be a pair \(xi0, xi1\).*got \(1.0,\)"),
        (dict(xi=1.0), ValueError, r"nlgp: `xi` must be a pair"),
        (
            dict(xi=(1.0, -2.0)),
            ValueError,
            r"nlgp: `xi\[1\]` must be a finite number > 0.0, got -2.0",
        ),
        (dict(gain=0.0), ValueError, r"nlgp: `gain` must be a finite number > 0.0, got 0.0"),
        (dict(gain=float("nan")), ValueError, r"nlgp: `gain` must be a finite number"),
        (dict(d=0), ValueError, r"nlgp: `d` must be an integer >= 1, got 0"),
        (dict(dtype=jnp.int8), TypeError, r"nlgp: `dtype` must be a floating dtype"),
    ],
)
def test_nlgp_errors(kwargs, exc, match):
    args = dict(d=8, xi=(1.0, 2.0), gain=1.0) | kwargs
    with pytest.raises(exc, match=match):
        data.nlgp(KEY, 4, **args)
    with pytest.raises(exc, match=match.replace("nlgp:", "nlgp_clone:")):
        data.nlgp_clone(KEY, 4, **args)


# ---- marked_pattern: pattern-only task with a position marker -------------------------

marked_pattern = jax.jit(
    data.marked_pattern, static_argnames=("n", "d", "k", "position", "start", "rule", "dtype")
)


@pytest.mark.parametrize("position", ["fixed", "random"])
def test_marked_pattern_marker_label_and_marginals(position):
    """The marker is exactly the window, the label is the parity of the marked signs
    (numpy), every sign is fair at every position (window included), the marker's start
    is independent of the label, and channel 0 equals local_pattern with noise=1.
    Tolerances: 5 binomial standard deviations."""
    n, d, k = 16000, 10, 3
    x, y = marked_pattern(jax.random.key(3), n, d=d, k=k, position=position)
    x, y = np.asarray(x), np.asarray(y)
    signs, marker = x[:, :, 0], x[:, :, 1]
    assert x.shape == (n, d, 2) and set(np.unique(signs)) == {-1.0, 1.0}
    assert set(np.unique(marker)) <= {0.0, 1.0} and np.all(marker.sum(1) == k)
    starts = marker.argmax(1)
    rows = np.arange(n)[:, None]
    assert np.all(marker[rows, starts[:, None] + np.arange(k)] == 1)
    window = signs[rows, starts[:, None] + np.arange(k)]
    np.testing.assert_array_equal(np.sum(window < 0, axis=1) % 2, y)
    # every position, the window's too, is a fair sign (the marginal of the background)
    frac = (signs > 0).mean(axis=0)
    assert np.all(np.abs(frac - 0.5) <= 5 * np.sqrt(0.25 / n))
    # any k-1 window positions are uniform too: no sub-pattern carries the label
    for c in (0, 1):
        pairs = (window[y == c, 0] > 0) * 2 + (window[y == c, 1] > 0)
        m = pairs.size
        assert np.all(np.abs(np.bincount(pairs, minlength=4) - m / 4) <= 5 * np.sqrt(m * 3 / 16))
    if position == "random":  # the start does not depend on the label
        for c in (0, 1):
            cnt = np.bincount(starts[y == c], minlength=d - k + 1)
            m, p = (y == c).sum(), 1 / (d - k + 1)
            assert np.all(np.abs(cnt - m * p) <= 5 * np.sqrt(m * p * (1 - p)))
    else:
        assert np.all(starts == (d - k) // 2)
    ref = local_pattern(jax.random.key(3), n, d=d, k=k, position=position, noise=1.0 - 1e-7)
    np.testing.assert_array_equal(np.sign(np.asarray(ref.x[:, :, 0])), signs)


@pytest.mark.parametrize(
    ("kwargs", "exc", "match"),
    [
        (dict(d=3, k=4), ValueError, r"marked_pattern: the window `k`=4 must fit"),
        (dict(d=8, k=3, position="random", start=1), ValueError, r"marked_pattern: `start`"),
        (dict(d=8, k=3, position="middle"), ValueError, r"marked_pattern: `position`"),
        (dict(d=8, k=3, dtype=jnp.int32), TypeError, r"marked_pattern: `dtype`"),
        (dict(d=8, k=3, rule="motif", motif=(1, 2, 1)), ValueError, r"marked_pattern: `motif`"),
    ],
)
def test_marked_pattern_errors(kwargs, exc, match):
    with pytest.raises(exc, match=match):
        data.marked_pattern(KEY, 4, **kwargs)
