"""The dense matrix T(w) and its tying structure against independent references.

References: ``reference.conv_matrix`` (the numpy loop applied to unit inputs),
``scipy.linalg.convolution_matrix``, ``numpy.linalg.lstsq`` for the least-squares
maps. Tolerance in float64: 1e-12 (entries of T are single weights or sums of a few).
"""

import functools
import time

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import reference as ref
import scipy.linalg
from hypothesis import given, settings

import convjax
from convjax import conv1d, conv_matrix, conv_matrix_sparse, conv_structure

HIGHEST = jax.lax.Precision.HIGHEST
TOL = dict(rtol=1e-12, atol=1e-12)

# Smaller than conv1d's configurations: the dense matrix is (Lout*Cout, L*Cin).
SMALL = dict(batch_shapes=((),), max_length=8, max_kernel=4)


def structure_of(config):
    return conv_structure(config["w_shape"], config["x_shape"][-2], **config["options"])


def inner(a, b):
    return float(np.sum(np.asarray(a, np.float64) * np.asarray(b, np.float64)))


# ---- everything about one structure, against the references ---------------------


def structure_outputs(s, options, w, x, g, f):
    """Every derived quantity of one structure, computed in ONE jitted call (eager
    op-by-op compilation of each method for each random shape would cost minutes)."""
    L = s.in_length
    t = conv_matrix(w, L, **options)
    p = s.project(g)
    lp = s.local_dense(s.local_nearest(g))
    return dict(
        t=t,
        dense=s.dense(w),
        sparse=conv_matrix_sparse(w, L, **options).todense(),
        tx=jnp.matmul(t, x.reshape(-1), precision=HIGHEST),
        y=conv1d(x, w, **options, precision=HIGHEST).reshape(-1),
        adjoint=s.adjoint(g),
        adjoint_off=s.adjoint(jnp.where(s.mask(), 0.0, g)),
        nearest=s.nearest_filter(g),
        nearest_tw=s.nearest_filter(t),
        project_tw=s.project(t),
        project=p,
        project2=s.project(p),
        local=s.local_dense(f),
        local_of_conv=s.local_dense(s.conv_to_local(w)),
        local_adjoint=s.local_adjoint(g),
        conv_to_local=s.conv_to_local(w),
        local_to_conv_adjoint=s.local_to_conv_adjoint(f),
        local_project=lp,
        local_project2=s.local_dense(s.local_nearest(lp)),
        local_to_conv_nearest=s.local_to_conv_nearest(s.conv_to_local(w)),
    )


def design_matrix(config):
    """Columns: the reference T of each unit filter, raveled. (T is linear in w.)"""
    shape, L, options = config["w_shape"], config["x_shape"][-2], config["options"]
    n = int(np.prod(shape))
    return np.stack(
        [ref.conv_matrix(e.reshape(shape), L, **options).ravel() for e in np.eye(n)], axis=1
    )


def local_reference(filters, L, options):
    """Row block ``o`` of a locally connected matrix uses its own filter ``filters[o]``."""
    cout = filters.shape[-1]
    rows = [
        ref.conv_matrix(f, L, **options)[o * cout : (o + 1) * cout] for o, f in enumerate(filters)
    ]
    return np.concatenate(rows)


@settings(max_examples=25, deadline=None)
@given(ref.configs(**SMALL))
def test_structure_equals_references(config):
    x, w = ref.random_arrays(config)
    options = config["options"]
    L = x.shape[-2]
    if not ref.legal(config):
        with pytest.raises(ValueError, match=r"conv_matrix: .*(empty|reflect)"):
            conv_matrix(w, L, **options)
        return
    s = structure_of(config)
    rng = np.random.default_rng(config["seed"] + 1)
    g = rng.standard_normal(s.dense_shape)
    f = rng.standard_normal(s.local_filter_shape)
    v = rng.standard_normal(w.shape)
    out = jax.jit(functools.partial(structure_outputs, s, options))(w, x, g, f)
    out = {k: np.asarray(a) for k, a in out.items()}
    want = ref.conv_matrix(w, L, **options)

    # T(w): the reference, the structure, the sparse form, and T @ x == conv1d(x, w).
    assert out["t"].shape == want.shape == s.dense_shape
    np.testing.assert_allclose(out["t"], want, **TOL)
    np.testing.assert_array_equal(out["dense"], out["t"])
    np.testing.assert_allclose(out["sparse"], out["t"], **TOL)
    np.testing.assert_allclose(out["tx"], out["y"], **TOL)
    # mask() is False exactly at the structural zeros (random w: no accidental zeros).
    assert s.mask().dtype == bool
    np.testing.assert_array_equal(s.mask(), want != 0)

    # The adjoint is the true adjoint and ignores structural zeros.
    np.testing.assert_allclose(inner(out["t"], g), inner(w, out["adjoint"]), **TOL)
    np.testing.assert_array_equal(out["adjoint_off"], 0.0)

    # nearest_filter is the minimum-norm least-squares filter.
    lstsq = np.linalg.lstsq(design_matrix(config), g.ravel(), rcond=None)[0]
    np.testing.assert_allclose(out["nearest"], lstsq.reshape(w.shape), **TOL)
    np.testing.assert_allclose(out["project_tw"], out["t"], **TOL)
    if (s.copies() > 0).all() and np.linalg.matrix_rank(s.tap_gram()) == s.kernel_size:
        np.testing.assert_allclose(out["nearest_tw"], w, **TOL)
    # project: idempotent, residual orthogonal to every convolution of this shape.
    p = out["project"]
    np.testing.assert_allclose(out["project2"], p, **TOL)
    tv = ref.conv_matrix(v, L, **options)
    assert abs(inner(g - p, tv)) <= 1e-10 * np.abs(g).sum() * np.abs(tv).max()

    # The locally connected view.
    np.testing.assert_allclose(out["local"], local_reference(f, L, options), **TOL)
    np.testing.assert_allclose(out["local_of_conv"], out["t"], **TOL)
    np.testing.assert_allclose(inner(out["local"], g), inner(f, out["local_adjoint"]), **TOL)
    np.testing.assert_allclose(
        inner(out["conv_to_local"], f), inner(w, out["local_to_conv_adjoint"]), **TOL
    )
    lp = out["local_project"]
    np.testing.assert_allclose(out["local_project2"], lp, **TOL)
    np.testing.assert_array_equal(lp[~s.mask()], 0.0)
    assert abs(inner(g - lp, out["local"])) <= 1e-10 * np.abs(g).sum() * np.abs(f).sum()
    live = s.copies() > 0
    np.testing.assert_allclose(out["local_to_conv_nearest"][live], w[live], **TOL)


@pytest.mark.parametrize(
    "mode, padding", [("full", "full"), ("same", "same_lower"), ("valid", "valid")]
)
@pytest.mark.parametrize("n, m", [(1, 1), (5, 2), (6, 3), (6, 6)])
def test_conv_matrix_equals_scipy_convolution_matrix(mode, padding, n, m):
    a = np.random.default_rng(n * 10 + m).standard_normal(m)
    t = conv_matrix(a[:, None, None], n, padding=padding, flip=True)
    np.testing.assert_allclose(t, scipy.linalg.convolution_matrix(a, n, mode), **TOL)


def test_circular_entry_holds_a_sum_of_weights():
    """L=2 < K=3 with circular padding: taps 0 and 2 read the same input."""
    w = jnp.array([1.0, 10.0, 100.0])[:, None, None]
    t = conv_matrix(w, 2, padding=(1, 1), padding_mode="circular")
    # padded input [x1, x0, x1, x0]; output 0 reads x1, x0, x1: x1 gets 1 + 100.
    np.testing.assert_array_equal(t, [[10, 101], [101, 10]])
    s = conv_structure(w.shape, 2, padding=(1, 1), padding_mode="circular")
    gram = s.tap_gram()
    assert gram[0, 2] > 0  # not diagonal: an entry holds a sum


def test_sparse_stores_one_entry_per_copy():
    w = jnp.ones((3, 2, 4))
    s = conv_structure(w.shape, 50, groups=2, padding="same")
    sp = s.sparse(w)
    rows, cols, widx = s.weight_index()
    assert sp.nse == len(rows) <= s.out_length * 3 * 4 * 4 // 2
    assert sp.nse < s.dense_shape[0] * s.dense_shape[1] // 10


# ---- small cases pinned by hand -------------------------------------------------


def test_nearest_filter_averages_copies_and_ignores_dead_taps():
    s = conv_structure((3, 1, 1), 4)  # Lout=2: each tap has 2 copies
    d = np.arange(8.0).reshape(2, 4)  # rows [0 1 2 3], [4 5 6 7]
    # tap k sits at (0, k) and (1, k+1): averages (0+5)/2, (1+6)/2, (2+7)/2.
    np.testing.assert_allclose(s.nearest_filter(d)[:, 0, 0], [2.5, 3.5, 4.5], **TOL)
    # L=1, padding (1, 0): tap 0 only ever reads the padding zero: dead, gets 0.
    s = conv_structure((2, 1, 1), 1, padding=(1, 0))
    assert list(s.copies()) == [0, 1]
    np.testing.assert_allclose(s.nearest_filter(np.array([[3.0]]))[:, 0, 0], [0.0, 3.0])


def test_nearest_filter_unidentifiable_taps_share_the_entry():
    """L=1 circular: every tap reads x[0], T(w) = sum(w); min-norm splits equally."""
    s = conv_structure((3, 1, 1), 1, padding="full", padding_mode="circular")
    d = np.full(s.dense_shape, 6.0)
    np.testing.assert_allclose(s.nearest_filter(d)[:, 0, 0], [2.0, 2.0, 2.0], **TOL)


def test_distances_to_the_conv_subspace():
    s = conv_structure((3, 2, 2), 6, padding="same")
    rng = np.random.default_rng(0)
    w = rng.standard_normal(s.filter_shape)
    assert float(s.off_structure_share(s.dense(w))) == 0.0
    assert float(s.distance_to_conv(s.dense(w))) < 1e-14
    assert float(s.off_structure_share(jnp.zeros(s.dense_shape))) == 0.0
    assert float(s.distance_to_conv(jnp.zeros(s.dense_shape))) == 0.0
    d = rng.standard_normal(s.dense_shape)
    share = np.sum(d[~s.mask()] ** 2) / np.sum(d**2)
    np.testing.assert_allclose(s.off_structure_share(d), share, **TOL)
    dist = np.linalg.norm(d - s.project(d)) / np.linalg.norm(d)
    np.testing.assert_allclose(s.distance_to_conv(d), dist, **TOL)
    assert 0 < dist < 1


# ---- max_bytes ----------------------------------------------------------------


def test_max_bytes_names_the_bytes_and_none_disables():
    w = jnp.ones((3, 2, 4), jnp.float64)  # L=10: T is (8*4, 10*2) float64 = 5120 bytes
    assert conv_matrix(w, 10, max_bytes=5120).shape == (32, 20)
    with pytest.raises(
        ValueError,
        match=r"conv_matrix: .*\(32, 20\) in float64 would need "
        r"5120 bytes .*`max_bytes`=5119",
    ):
        conv_matrix(w, 10, max_bytes=5119)
    np.testing.assert_array_equal(conv_matrix(w, 10, max_bytes=None), conv_matrix(w, 10))


def test_max_bytes_refuses_before_allocating():
    # 10**15 positions: any allocation of T (or of its tables) would fail or hang.
    w = jnp.ones((3, 1, 1), jnp.float32)
    start = time.perf_counter()
    with pytest.raises(ValueError, match=r"would need 3999999999999992000000000000000 bytes"):
        conv_matrix(w, 10**15)
    assert time.perf_counter() - start < 1.0
    assert convjax.DEFAULT_MAX_BYTES == 2**30


# ---- gradients: the chain rule through tied weights ------------------------------


def chain_rule_outputs(s, options, w, x):
    """Gradients through conv1d and through the dense matrix, in one jitted call."""
    xf = x.reshape(-1, s.dense_shape[1])  # (B, L*Cin)

    def f_conv(w, x):
        return jnp.sum(jnp.tanh(conv1d(x, w, **options, precision=HIGHEST)) ** 2)

    def f_dense(t, xf):
        return jnp.sum(jnp.tanh(jnp.matmul(xf, t.T, precision=HIGHEST)) ** 2)

    t = s.dense(w)
    g_w, g_x = jax.grad(f_conv, argnums=(0, 1))(w, x)
    g_t, g_xf = jax.grad(f_dense, argnums=(0, 1))(t, xf)
    y = jnp.matmul(xf, t.T, precision=HIGHEST)
    g_y = 2 * jnp.tanh(y) / jnp.cosh(y) ** 2  # the gradient at the output
    return dict(
        g_w=g_w,
        adjoint_g_t=s.adjoint(g_t),
        g_x=g_x.reshape(xf.shape),
        g_xf=g_xf,
        t_transpose_g_y=jnp.matmul(g_y, t, precision=HIGHEST),
    )


@settings(max_examples=10, deadline=None)
@given(ref.configs(batch_shapes=((), (3,)), max_length=8, max_kernel=4))
def test_grad_through_conv1d_is_adjoint_of_dense_grad(config):
    """grad_w conv1d == T*(grad_T of the same loss through T(w) @ x); grad_x == T^T g_y."""
    if not ref.legal(config):
        return
    x, w = ref.random_arrays(config)
    s = structure_of(config)
    out = jax.jit(functools.partial(chain_rule_outputs, s, config["options"]))(w, x)
    np.testing.assert_allclose(out["g_w"], out["adjoint_g_t"], **TOL)
    np.testing.assert_allclose(out["g_x"], out["g_xf"], **TOL)
    np.testing.assert_allclose(out["g_x"], out["t_transpose_g_y"], **TOL)


@pytest.mark.parametrize("padding_mode", ["zeros", "circular", "reflect", "replicate"])
def test_grad_of_conv_matrix_is_adjoint(padding_mode):
    """Differentiating T(w) itself: grad_w <T(w), G> == T*(G)."""
    s = conv_structure((3, 2, 4), 5, groups=2, padding="same", padding_mode=padding_mode)
    g = np.random.default_rng(0).standard_normal(s.dense_shape)
    w = np.ones(s.filter_shape)
    grad = jax.jit(
        jax.grad(
            lambda w: jnp.sum(
                conv_matrix(w, 5, groups=2, padding="same", padding_mode=padding_mode) * g
            )
        )
    )(w)
    np.testing.assert_allclose(grad, s.adjoint(g), **TOL)


def test_structure_methods_under_jit():
    s = conv_structure((3, 2, 2), 6, padding="same", padding_mode="reflect")
    rng = np.random.default_rng(0)
    w, d = rng.standard_normal(s.filter_shape), rng.standard_normal(s.dense_shape)
    for method, arg in [(s.dense, w), (s.adjoint, d), (s.nearest_filter, d)]:
        np.testing.assert_allclose(jax.jit(method)(arg), method(arg), **TOL)
