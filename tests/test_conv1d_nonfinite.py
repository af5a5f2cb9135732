"""Non-finite values stay local (issue 12, item 1): an output (or gradient entry) is
NaN/inf exactly where its receptive field holds a NaN/inf (XLA's pattern, without
groups).

"auto" (forward and both gradients, whatever algorithm it picks) and the explicit
"fft" and "dense" forward passes match XLA's pattern of non-finite entries; the
explicit "fft"/"dense" gradients are their own autodiff, which spreads a non-finite
cotangent over the whole transform (documented in docs/semantics.md).
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from convjax import conv1d


@st.composite
def cases(draw):
    groups = draw(st.sampled_from([1, 2]))
    cig, cog = draw(st.integers(1, 2)), draw(st.integers(1, 2))
    K = draw(st.sampled_from([1, 2, 5, 70]))
    dilation, stride = draw(st.integers(1, 2)), draw(st.integers(1, 3))
    padding = draw(st.sampled_from(["valid", "same", "full", (0, 3)]))
    mode = draw(st.sampled_from(["zeros", "circular", "replicate"]))
    e = dilation * (K - 1) + 1
    L = draw(st.integers(e, e + 150))
    rng = np.random.default_rng(draw(st.integers(0, 2**31 - 1)))
    x = rng.standard_normal((2, L, cig * groups))
    for _ in range(draw(st.integers(1, 3))):
        x[rng.integers(2), rng.integers(L), rng.integers(cig * groups)] = rng.choice(
            [np.nan, np.inf, -np.inf]
        )
    w = rng.standard_normal((K, cig, cog * groups))
    options = dict(
        stride=stride, dilation=dilation, groups=groups, padding=padding, padding_mode=mode
    )
    return x, w, options, rng


def _pattern(a):
    return ~np.isfinite(np.asarray(a))


def _any_group(pattern, groups):
    """The pattern spread over every group of the last axis (the same other indices)."""
    shape = pattern.shape
    p = pattern.reshape(*shape[:-1], groups, shape[-1] // groups)
    return np.broadcast_to(p.any(axis=-2, keepdims=True), p.shape).reshape(shape)


def receptive_patterns(x, w, g, options):
    """Where the output and the two gradients must be non-finite, from the definition:
    an entry is non-finite iff a non-finite value enters its sum (with finite ``w``):
    ``y[o]`` reads ``x`` at its taps; ``dx[j]`` reads ``g`` at the outputs that read
    ``j``; ``dw[k, a, c]`` reads ``x`` at tap ``k`` of every output and ``g[..., c]`` at
    every output. Computed with XLA on finite 0/1 indicators."""
    ind_x = _pattern(x).astype(np.float64)
    ind_g = _pattern(g).astype(np.float64)
    ones_w = np.ones_like(w)
    conv = functools.partial(conv1d, algorithm="xla", **options)
    y, vjp_x = jax.vjp(lambda a: conv(a, ones_w), ind_x)
    _, vjp_w = jax.vjp(lambda b: conv(ind_x, b), ones_w)
    (dx,) = vjp_x(ind_g)
    (dw,) = vjp_w(np.ones_like(ind_g))
    g_any = ind_g.reshape(-1, ind_g.shape[-1]).max(axis=0)
    return [
        np.asarray(y) > 0,
        np.asarray(dx) > 0,
        (np.asarray(dw) > 0) | (g_any[None, None, :] > 0),
    ]


@settings(max_examples=30, deadline=None)
@given(cases())
def test_forward_and_gradients_are_non_finite_exactly_on_the_receptive_field(case):
    x, w, options, rng = case
    y_xla = conv1d(x, w, algorithm="xla", **options)
    g = rng.standard_normal(y_xla.shape)
    g[rng.integers(g.shape[0]), rng.integers(g.shape[1]), rng.integers(g.shape[2])] = np.nan
    xf = np.where(np.isfinite(x), x, 0.0)  # a finite input: only g carries the NaN

    @functools.partial(jax.jit, static_argnums=3)
    def run(x, w, g, algorithm):
        f = functools.partial(conv1d, algorithm=algorithm, **options)
        y, vjp = jax.vjp(f, x, w)
        return (y, *vjp(g))

    for inputs in ((x, w, g), (xf, w, g), (x, w, np.ones_like(g))):
        want = receptive_patterns(*inputs, options)
        got = [_pattern(a) for a in run(*inputs, "auto")]
        for a, b in zip(got, want, strict=True):
            if options["groups"] == 1:
                np.testing.assert_array_equal(a, b)
            else:  # XLA:CPU's grouped convolution may spread a NaN to other groups
                assert np.all(a >= b)
                np.testing.assert_array_equal(a, a & _any_group(b, options["groups"]))
    for algorithm in ("fft", "dense"):
        y = conv1d(x, w, algorithm=algorithm, **options)
        np.testing.assert_array_equal(_pattern(y), receptive_patterns(x, w, g, options)[0])


def test_ungrouped_xla_has_the_same_pattern():
    """The definition above is XLA's own pattern without groups (XLA:CPU's grouped
    convolution spreads a NaN to the other groups' outputs, see docs/semantics.md)."""
    rng = np.random.default_rng(3)
    x = rng.standard_normal((2, 40, 3))
    x[1, 17, 2] = np.nan
    w = rng.standard_normal((4, 3, 2))
    g = rng.standard_normal((2, 20, 2))
    g[0, 5, 1] = np.inf
    options = dict(stride=2, padding="same")
    f = functools.partial(conv1d, algorithm="xla", **options)
    y, vjp = jax.vjp(f, x, w)
    got = [_pattern(a) for a in (y, *vjp(g))]
    for a, b in zip(got, receptive_patterns(x, w, g, options), strict=True):
        np.testing.assert_array_equal(a, b)


def test_the_issue_reproducers():
    x = jnp.asarray(np.random.default_rng(0).standard_normal((512, 1)), jnp.float32)
    x = x.at[100, 0].set(jnp.nan)
    w = jnp.ones((65, 1, 1), jnp.float32)
    for algorithm in ("auto", "xla", "fft", "dense"):
        assert int(jnp.sum(jnp.isnan(conv1d(x, w, algorithm=algorithm)))) == 65
    x2 = jnp.zeros((512, 1), jnp.float32).at[101, 0].set(jnp.nan)  # read by no output
    for algorithm in ("auto", "xla", "fft", "dense"):
        y = conv1d(x2, jnp.ones((1, 1, 1), jnp.float32), stride=2, algorithm=algorithm)
        assert bool(jnp.all(jnp.isfinite(y)))
