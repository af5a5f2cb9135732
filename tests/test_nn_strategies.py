"""Shared by the tests of ``convjax.nn``: random layer configurations (hypothesis)
and a numpy loop reference for the locally connected layer, written from the
definitions with ``np.pad`` (nothing from convjax). The tests in this file check
the reference itself against numpy."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

NP_MODES = {"zeros": "constant", "circular": "wrap", "reflect": "reflect", "replicate": "edge"}


def resolve(L, K, *, stride=1, padding="valid", dilation=1):
    """``(lo, hi)`` padding from the definitions (see convjax.geometry)."""
    E = dilation * (K - 1) + 1
    if padding == "valid":
        return 0, 0
    if padding == "full":
        return E - 1, E - 1
    if padding == "causal":
        return E - 1, 0
    if padding in ("same", "same_lower"):
        total = max((-(-L // stride) - 1) * stride + E - L, 0)
        small, big = total // 2, total - total // 2
        return (small, big) if padding == "same" else (big, small)
    if isinstance(padding, int):
        return padding, padding
    return tuple(padding)


def out_length(L, K, *, stride=1, padding="valid", dilation=1, **_):
    lo, hi = resolve(L, K, stride=stride, padding=padding, dilation=dilation)
    return (L + lo + hi - dilation * (K - 1) - 1) // stride + 1


def local_reference(
    x, filters, *, stride=1, padding="valid", dilation=1, groups=1, flip=False, padding_mode="zeros"
):
    """Loop reference: ``x (..., L, Cin)``, ``filters (Lout, K, Cin/g, Cout)``."""
    x = np.asarray(x, np.float64)
    f = np.asarray(filters, np.float64)
    lout, K, cig, cout = f.shape
    lo, hi = resolve(x.shape[-2], K, stride=stride, padding=padding, dilation=dilation)
    cfg = [(0, 0)] * (x.ndim - 2) + [(lo, hi), (0, 0)]
    xp = np.pad(x, cfg, mode=NP_MODES[padding_mode])
    cog = cout // groups
    y = np.zeros(x.shape[:-2] + (lout, cout))
    for o in range(lout):
        for k in range(K):
            t = K - 1 - k if flip else k
            p = o * stride + t * dilation
            for co in range(cout):
                g = co // cog
                y[..., o, co] += xp[..., p, g * cig : (g + 1) * cig] @ f[o, k, :, co]
    return y


@st.composite
def layer_configs(draw, *, max_length=10, max_kernel=4, batch_shapes=((), (2,), (2, 3))):
    """A legal conv configuration: dict with L, Cin, Cout, K, batch and the options."""
    K = draw(st.integers(1, max_kernel))
    dilation = draw(st.integers(1, 3))
    stride = draw(st.integers(1, 3))
    groups = draw(st.integers(1, 3))
    cin = groups * draw(st.integers(1, 2))
    cout = groups * draw(st.integers(1, 2))
    mode = draw(st.sampled_from(tuple(NP_MODES)))
    padding = draw(
        st.one_of(
            st.sampled_from(("valid", "same", "same_lower", "full", "causal")),
            st.integers(0, 3),
            st.tuples(st.integers(0, 3), st.integers(0, 3)),
        )
    )
    E = dilation * (K - 1) + 1
    L = draw(st.integers(1, max_length))
    lo, hi = resolve(L, K, stride=stride, padding=padding, dilation=dilation)
    if L + lo + hi < E:
        L = E  # make it legal rather than rejecting the draw
        lo, hi = resolve(L, K, stride=stride, padding=padding, dilation=dilation)
    if mode == "reflect" and max(lo, hi) > L - 1:
        mode = "zeros"
    return {
        "L": L,
        "Cin": cin,
        "Cout": cout,
        "K": K,
        "batch": draw(st.sampled_from(batch_shapes)),
        "opts": {
            "stride": stride,
            "padding": padding,
            "dilation": dilation,
            "groups": groups,
            "flip": draw(st.booleans()),
            "padding_mode": mode,
        },
    }


# ---- the reference checked against numpy ------------------------------------------
@settings(max_examples=20, deadline=None)
@given(L=st.integers(1, 9), K=st.integers(1, 4), seed=st.integers(0, 2**16))
def test_reference_with_equal_filters_is_numpy_convolve(L, K, seed):
    if K > L:
        return
    rng = np.random.default_rng(seed)
    x, w = rng.normal(size=L), rng.normal(size=K)
    lout = L - K + 1
    f = np.broadcast_to(w.reshape(1, K, 1, 1), (lout, K, 1, 1))
    got = local_reference(x.reshape(L, 1), f, flip=True)[:, 0]
    np.testing.assert_allclose(got, np.convolve(x, w, "valid"), rtol=1e-12, atol=1e-12)
    got = local_reference(x.reshape(L, 1), f, padding="full", flip=False)
    assert got.shape[0] == L - K + 1


def test_reference_full_padding_is_numpy_correlate_full():
    rng = np.random.default_rng(0)
    x, w = rng.normal(size=6), rng.normal(size=3)
    f = np.broadcast_to(w.reshape(1, 3, 1, 1), (8, 3, 1, 1))
    got = local_reference(x.reshape(6, 1), f, padding="full")[:, 0]
    np.testing.assert_allclose(got, np.correlate(x, w, "full"), rtol=1e-12, atol=1e-12)


def test_reference_untied_filters_act_per_position():
    x = np.arange(1.0, 5.0).reshape(4, 1)
    f = np.array([[1.0, 1.0], [0.0, 10.0], [2.0, 0.0]]).reshape(3, 2, 1, 1)
    np.testing.assert_array_equal(local_reference(x, f)[:, 0], [3.0, 30.0, 6.0])


def test_out_length_matches_the_reference():
    x = np.zeros((7, 1))
    for opts in (
        {"stride": 2, "padding": "same"},
        {"dilation": 2, "padding": "full"},
        {"padding": (3, 0)},
    ):
        n = out_length(7, 3, **opts)
        assert local_reference(x, np.zeros((n, 3, 1, 1)), **opts).shape == (n, 1)
