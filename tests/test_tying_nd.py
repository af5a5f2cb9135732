"""The dense twin and tying structure for every rank (issue 11, item 3).

References: ``convjax.conv`` itself (checked against numpy, scipy, lax and torch in
``tests/test_conv_nd.py``) for ``T @ x``, the explicit doubly block Toeplitz /
circulant index rule for 2-D, ``numpy.linalg.lstsq`` for the nearest filter, and
``jax.grad`` for the adjoint. Tolerance in float64: 1e-12 (entries of ``T`` are
single weights or sums of a few).
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from test_conv_nd import configs

from convjax import conv, conv_matrix, conv_matrix_sparse, conv_structure, locally_connected

HIGHEST = jax.lax.Precision.HIGHEST
TOL = dict(rtol=1e-12, atol=1e-12)


def _one_example(config):
    x, w, options = config
    return x[0], w, options


@settings(max_examples=4, deadline=None)
@given(configs(ndims=(2, 3)))
def test_dense_twin_does_the_job_of_conv_and_every_map_is_consistent(config):
    x, w, options = _one_example(config)
    in_shape = x.shape[:-1]
    s = conv_structure(w.shape, in_shape, **options)
    rng = np.random.default_rng(0)
    g = rng.standard_normal(s.dense_shape)
    f = rng.standard_normal(s.local_filter_shape)

    @jax.jit
    def everything(x, w, g, f):
        t = conv_matrix(w, in_shape, **options)
        return dict(
            t=t,
            sparse=conv_matrix_sparse(w, in_shape, **options).todense(),
            tx=jnp.matmul(t, x.reshape(-1), precision=HIGHEST),
            y=conv(x, w, **options, precision=HIGHEST).reshape(-1),
            adjoint=s.adjoint(g),
            grad=jax.grad(lambda v: jnp.sum(s.dense(v) * g))(w),
            nearest_tw=s.nearest_filter(t),
            local=s.local_dense(f),
            local_x=locally_connected(x, f, **options, precision=HIGHEST).reshape(-1),
            local_tx=jnp.matmul(s.local_dense(f), x.reshape(-1), precision=HIGHEST),
            embedded=s.local_dense(s.conv_to_local(w)),
            local_adj=s.local_adjoint(g),
            back=s.local_to_conv_nearest(s.conv_to_local(w)),
        )

    r = {k: np.asarray(v) for k, v in everything(x, w, g, f).items()}
    assert r["t"].shape == (np.prod(s.out_shape) * w.shape[-1], np.prod(in_shape) * x.shape[-1])
    np.testing.assert_allclose(r["tx"], r["y"], **TOL)  # T @ x == conv(x, w), row-major
    np.testing.assert_allclose(r["sparse"], r["t"], **TOL)
    np.testing.assert_allclose(r["adjoint"], r["grad"], **TOL)  # T* sums the copies
    assert np.isclose(np.sum(r["t"] * g), np.sum(w * r["adjoint"]), rtol=1e-12)
    np.testing.assert_allclose(r["local_tx"], r["local_x"], **TOL)
    np.testing.assert_allclose(r["embedded"], r["t"], **TOL)
    assert np.isclose(np.sum(r["local"] * g), np.sum(f * r["local_adj"]), rtol=1e-12)
    mask = s.mask()
    assert not np.any(r["t"][~mask]) and not np.any(r["local"][~mask])
    # the weight index rebuilds T
    rows, cols, widx = s.weight_index()
    rebuilt = np.zeros(s.dense_shape)
    np.add.at(rebuilt, (rows, cols), w.reshape(-1)[widx])
    np.testing.assert_allclose(rebuilt, r["t"], **TOL)
    # nearest filter: least squares over every entry of T, against numpy's lstsq
    basis = np.stack([np.asarray(s.dense(e.reshape(w.shape))).ravel() for e in np.eye(w.size)], 1)
    lstsq = np.linalg.lstsq(basis, r["t"].ravel(), rcond=None)[0].reshape(w.shape)
    np.testing.assert_allclose(r["nearest_tw"], lstsq, rtol=1e-10, atol=1e-10)
    live = s.copies().reshape(w.shape[:-2]) > 0
    np.testing.assert_allclose(r["back"][live], w[live], **TOL)


def test_2d_valid_is_doubly_block_toeplitz():
    """Stride 1, zero padding: entry (row (i, j), column (p, q)) is ``w[p-i, q-j]``
    where that is a kernel position, 0 elsewhere: ``Hout x H`` blocks, block ``(i, p)``
    depending only on ``p - i`` and itself Toeplitz in ``(j, q)``."""
    rng = np.random.default_rng(1)
    H, W, KH, KW = 5, 6, 2, 3
    w = rng.standard_normal((KH, KW, 1, 1))
    t = np.asarray(conv_matrix(w, (H, W)))
    Ho, Wo = H - KH + 1, W - KW + 1
    want = np.zeros((Ho, Wo, H, W))
    for i, j, p, q in np.ndindex(Ho, Wo, H, W):
        if 0 <= p - i < KH and 0 <= q - j < KW:
            want[i, j, p, q] = w[p - i, q - j, 0, 0]
    np.testing.assert_array_equal(t, want.reshape(Ho * Wo, H * W))
    blocks = t.reshape(Ho, Wo, H, W).transpose(0, 2, 1, 3)  # (i, p) blocks of (j, q)
    for i, p in np.ndindex(Ho, H):
        if 0 <= p - i < KH:
            np.testing.assert_array_equal(blocks[i, p], blocks[0, p - i])
        else:
            assert not blocks[i, p].any()


def test_2d_circular_same_is_doubly_block_circulant():
    """Circular padding, stride 1, ``"same"``: entry (row (i, j), column (p, q))
    depends only on ``((p - i) mod H, (q - j) mod W)``."""
    rng = np.random.default_rng(2)
    H, W = 4, 5
    w = rng.standard_normal((3, 2, 1, 1))
    t = np.asarray(conv_matrix(w, (H, W), padding="same", padding_mode="circular"))
    t4 = t.reshape(H, W, H, W)
    for i, j, p, q in np.ndindex(H, W, H, W):
        assert t4[i, j, p, q] == t4[0, 0, (p - i) % H, (q - j) % W]
    # with channels the blocks are (Cout, Cin): rows (i, j, co), columns (p, q, ci)
    w2 = rng.standard_normal((3, 3, 2, 3))
    t2 = np.asarray(conv_matrix(w2, (H, W), padding="same", padding_mode="circular"))
    t6 = t2.reshape(H, W, 3, H, W, 2)
    for i, j, p, q in np.ndindex(H, W, H, W):
        np.testing.assert_array_equal(t6[i, j, :, p, q], t6[0, 0, :, (p - i) % H, (q - j) % W])


def test_flattening_is_row_major_over_spatial_then_channel():
    """Column ``(p*W + q)*Cin + ci`` is input position ``(p, q)``, channel ``ci``:
    ``T`` applied to a one-hot input equals the conv of that one-hot image."""
    rng = np.random.default_rng(3)
    w = rng.standard_normal((2, 2, 2, 3))
    t = np.asarray(conv_matrix(w, (3, 4), padding="same"))
    p, q, ci = 1, 2, 1
    x = np.zeros((3, 4, 2))
    x[p, q, ci] = 1.0
    col = (p * 4 + q) * 2 + ci
    np.testing.assert_allclose(t[:, col], np.asarray(conv(x, w, padding="same")).reshape(-1))


def test_structure_shapes_and_errors_in_2d():
    s = conv_structure((3, 2, 2, 4), (6, 5), stride=(2, 1), groups=2)
    assert s.ndim == 2 and s.out_shape == (2, 4) and s.kernel_shape == (3, 2)
    assert s.filter_shape == (3, 2, 2, 4) and s.in_channels == 4
    assert s.local_filter_shape == (2, 4, *s.filter_shape)
    assert s.dense_shape == (2 * 4 * 4, 6 * 5 * 4)
    assert s.bias_shape == (2, 4, 4)
    with pytest.raises(AttributeError, match=r"Geometry.in_length exists for one spatial axis"):
        _ = s.in_length
    with pytest.raises(ValueError, match=r"conv_structure: `w` must have rank 4 \(layout"):
        conv_structure((3, 1, 1), (6, 5))
    with pytest.raises(
        ValueError, match=r"conv_structure: `in_shape\[1\]` must be an integer >= 1"
    ):
        conv_structure((3, 3, 1, 1), (6, 0))
    with pytest.raises(TypeError, match=r"conv_matrix: `in_shape\[0\]` must be an integer"):
        conv_matrix(jnp.ones((3, 3, 1, 1)), (6.5, 6))
    with pytest.raises(ValueError, match=r"conv_matrix: the dense matrix of shape \(36, 64\)"):
        conv_matrix(jnp.ones((3, 3, 1, 1)), (8, 8), max_bytes=1000)
    with pytest.raises(ValueError, match=r"ConvStructure: `w` must have shape \(3, 3, 1, 1\)"):
        conv_structure((3, 3, 1, 1), (8, 8)).dense(jnp.ones((3, 1, 1)))


@pytest.mark.parametrize("in_shape", [(6,), 6])
def test_an_int_and_a_one_tuple_give_the_same_1d_structure(in_shape):
    w = jnp.arange(3.0).reshape(3, 1, 1)
    np.testing.assert_array_equal(conv_matrix(w, in_shape), conv_matrix(w, 6))
    assert conv_structure(w.shape, in_shape).in_length == 6


@settings(max_examples=4, deadline=None)
@given(st.integers(0, 2**31 - 1))
def test_sparse_storage_grows_with_the_copies_not_the_positions(seed):
    rng = np.random.default_rng(seed)
    w = jnp.asarray(rng.standard_normal((3, 3, 2, 2)))
    sp = conv_matrix_sparse(w, (7, 6))
    assert sp.nse == 5 * 4 * 9 * 2 * 2  # every output position, tap and channel pair
    np.testing.assert_allclose(sp.todense(), conv_matrix(w, (7, 6)), **TOL)
