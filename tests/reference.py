"""Plain numpy reference implementations, written from the definitions.

Nothing here imports convjax: these loops are the independent oracle the tests
compare the library against. They are slow on purpose (explicit loops over output
positions and taps) and compute in float64.

Definitions (channels-last, ``x`` of shape ``(..., L, Cin)``, ``w`` of shape
``(K, Cin // groups, Cout)``, ``E = dilation * (K - 1) + 1``):

* pad ``x`` with ``lo`` positions before and ``hi`` after; padded position ``p``
  holds the input index ``j = p - lo`` mapped by the padding mode (torch's
  meanings): ``zeros`` -> 0 outside ``[0, L)``; ``circular`` -> ``x[j mod L]`` (any
  width); ``reflect`` -> mirror about the first and last sample without repeating
  them, legal only for ``lo, hi <= L - 1``; ``replicate`` -> the nearest edge sample;
* ``y[o, co] = sum_{k, c} xp[o*stride + t(k)*dilation, g*Cin/groups + c] * w[k, c, co]``
  with ``g = co // (Cout / groups)`` and ``t(k) = k`` (cross-correlation) or
  ``t(k) = K - 1 - k`` (``flip=True``, true convolution);
* ``Lout = (L + lo + hi - E) // stride + 1``, empty (an error) when ``L + lo + hi < E``.
"""

from __future__ import annotations

import numpy as np


class IllegalConfig(ValueError):
    """The configuration has no output (or is not legal) by the definitions."""


def resolve_padding(L: int, K: int, *, stride: int, padding, dilation: int) -> tuple[int, int]:
    """``(lo, hi)`` from a padding name, an int or a pair, by the definitions.

    ``"same"``: ``Lout = ceil(L / stride)``, total padding
    ``max((Lout - 1) * stride + E - L, 0)``, an odd extra zero at the END;
    ``"same_lower"``: the same, the odd extra zero at the START.
    """
    E = dilation * (K - 1) + 1
    if isinstance(padding, str):
        if padding == "valid":
            return 0, 0
        if padding == "full":
            return E - 1, E - 1
        if padding == "causal":
            return E - 1, 0
        if padding in ("same", "same_lower"):
            lout = -(-L // stride)
            total = max((lout - 1) * stride + E - L, 0)
            small, big = total // 2, total - total // 2
            return (small, big) if padding == "same" else (big, small)
        raise ValueError(padding)
    if isinstance(padding, int):
        return padding, padding
    lo, hi = padding
    return int(lo), int(hi)


def source_index(j: int, L: int, mode: str) -> int | None:
    """The input index that logical position ``j`` (``j = p - lo``) copies, or None
    for a zero of the padding."""
    if 0 <= j < L:
        return j
    if mode == "zeros":
        return None
    if mode == "circular":
        return j % L
    if mode == "replicate":
        return 0 if j < 0 else L - 1
    if mode == "reflect":
        r = -j if j < 0 else 2 * (L - 1) - j
        if not 0 <= r < L:
            raise IllegalConfig(f"reflect padding too wide: position {j}, L={L}")
        return r
    raise ValueError(mode)


def pad(x, lo: int, hi: int, mode: str) -> np.ndarray:
    """Pads ``x`` of shape ``(..., L, C)`` along the length axis, one position at a time."""
    x = np.asarray(x, np.float64)
    L = x.shape[-2]
    out = np.zeros(x.shape[:-2] + (L + lo + hi, x.shape[-1]))
    for p in range(L + lo + hi):
        j = source_index(p - lo, L, mode)
        if j is not None:
            out[..., p, :] = x[..., j, :]
    return out


def conv1d(
    x,
    w,
    *,
    stride: int = 1,
    padding="valid",
    dilation: int = 1,
    groups: int = 1,
    flip: bool = False,
    padding_mode: str = "zeros",
) -> np.ndarray:
    """The 1-D convolution layer by its definition: ``(..., L, Cin)`` -> ``(..., Lout, Cout)``.

    Raises:
      IllegalConfig: empty output or reflect padding wider than the input.
    """
    x = np.asarray(x, np.float64)
    w = np.asarray(w, np.float64)
    L, cin = x.shape[-2:]
    K, cig, cout = w.shape
    assert cig * groups == cin and cout % groups == 0
    cog = cout // groups
    lo, hi = resolve_padding(L, K, stride=stride, padding=padding, dilation=dilation)
    if padding_mode == "reflect" and max(lo, hi) > L - 1:
        raise IllegalConfig("reflect padding wider than the input")
    E = dilation * (K - 1) + 1
    if L + lo + hi < E:
        raise IllegalConfig("empty output")
    lout = (L + lo + hi - E) // stride + 1
    xp = pad(x, lo, hi, padding_mode)
    y = np.zeros(x.shape[:-2] + (lout, cout))
    for o in range(lout):
        for k in range(K):
            t = K - 1 - k if flip else k
            p = o * stride + t * dilation
            for g in range(groups):
                xs = xp[..., p, g * cig : (g + 1) * cig]  # (..., cig)
                ws = w[k, :, g * cog : (g + 1) * cog]  # (cig, cog)
                y[..., o, g * cog : (g + 1) * cog] += xs @ ws
    return y


def pad_adjoint(dxp, L: int, lo: int, hi: int, mode: str) -> np.ndarray:
    """The adjoint of :func:`pad`: each padded position's cotangent is added onto the
    input index it copies (a zero of the padding copies nothing). ``(..., L+lo+hi, C)``
    -> ``(..., L, C)``."""
    dxp = np.asarray(dxp, np.float64)
    out = np.zeros(dxp.shape[:-2] + (L, dxp.shape[-1]))
    for p in range(L + lo + hi):
        j = source_index(p - lo, L, mode)
        if j is not None:
            out[..., j, :] += dxp[..., p, :]
    return out


def conv1d_vjp(
    x,
    w,
    g,
    *,
    stride: int = 1,
    padding="valid",
    dilation: int = 1,
    groups: int = 1,
    flip: bool = False,
    padding_mode: str = "zeros",
) -> tuple[np.ndarray, np.ndarray]:
    """``(dx, dw)``: the gradients of ``sum(conv1d(x, w, **options) * g)``, exactly.

    The adjoint of :func:`conv1d`'s loop, statement by statement: each update
    ``y[..., o, out] += xs @ ws`` of the forward loop contributes ``g[..., o, out] @ ws.T``
    to the cotangent of the padded input at the positions ``xs`` read, and ``xs.T @
    g[..., o, out]`` (summed over the batch axes) to the filter block ``ws``; the padded
    input's cotangent then goes back through :func:`pad_adjoint`. Every value is a sum
    of products of the inputs, as in the forward loop (no differencing).

    Raises:
      IllegalConfig: as :func:`conv1d`.
    """
    x = np.asarray(x, np.float64)
    w = np.asarray(w, np.float64)
    g = np.asarray(g, np.float64)
    L, cin = x.shape[-2:]
    K, cig, cout = w.shape
    assert cig * groups == cin and cout % groups == 0
    cog = cout // groups
    lo, hi = resolve_padding(L, K, stride=stride, padding=padding, dilation=dilation)
    if padding_mode == "reflect" and max(lo, hi) > L - 1:
        raise IllegalConfig("reflect padding wider than the input")
    E = dilation * (K - 1) + 1
    if L + lo + hi < E:
        raise IllegalConfig("empty output")
    lout = (L + lo + hi - E) // stride + 1
    assert g.shape == x.shape[:-2] + (lout, cout)
    xp = pad(x, lo, hi, padding_mode)
    dxp = np.zeros_like(xp)
    dw = np.zeros_like(w)
    for o in range(lout):
        for k in range(K):
            t = K - 1 - k if flip else k
            p = o * stride + t * dilation
            for grp in range(groups):
                cin_s = slice(grp * cig, (grp + 1) * cig)
                cout_s = slice(grp * cog, (grp + 1) * cog)
                gs = g[..., o, cout_s]  # (..., cog)
                dxp[..., p, cin_s] += gs @ w[k, :, cout_s].T
                dw[k, :, cout_s] += xp[..., p, cin_s].reshape(-1, cig).T @ gs.reshape(-1, cog)
    return pad_adjoint(dxp, L, lo, hi, padding_mode), dw


def conv_matrix(w, L: int, **options) -> np.ndarray:
    """The dense matrix of :func:`conv1d` built column by column from unit inputs:
    column ``i*Cin + ci`` is ``conv1d(e_{i, ci}, w).ravel()``. Shape ``(Lout*Cout, L*Cin)``."""
    w = np.asarray(w, np.float64)
    cin = w.shape[1] * options.get("groups", 1)
    basis = np.eye(L * cin).reshape(L * cin, L, cin)
    cols = conv1d(basis, w, **options)  # (L*Cin, Lout, Cout)
    return cols.reshape(L * cin, -1).T


def full_convolution(a, v) -> np.ndarray:
    """``(a * v)[n] = sum_m a[m] * v[n - m]`` for ``n = 0 .. N + M - 2``."""
    a, v = np.asarray(a, np.float64), np.asarray(v, np.float64)
    out = np.zeros(len(a) + len(v) - 1)
    for n in range(len(out)):
        for m in range(len(a)):
            if 0 <= n - m < len(v):
                out[n] += a[m] * v[n - m]
    return out


def _numpy_window(full: np.ndarray, n: int, m: int, mode: str) -> np.ndarray:
    """numpy's choice of samples of the full result (lengths ``n``, ``m``)."""
    big, small = max(n, m), min(n, m)
    if mode == "full":
        return full
    if mode == "valid":
        start = small - 1
        return full[start : start + big - small + 1]
    if mode == "same":
        start = (small - 1) // 2  # the odd extra sample is dropped at the END
        return full[start : start + big]
    raise ValueError(mode)


def convolve(a, v, mode: str = "full") -> np.ndarray:
    """numpy.convolve semantics from the definition of the full convolution."""
    return _numpy_window(full_convolution(a, v), len(a), len(v), mode)


def correlate(a, v, mode: str = "valid") -> np.ndarray:
    """numpy.correlate semantics for real inputs: ``c[k] = sum_n a[n + k] * v[n]``,
    lags ordered as numpy orders them (the full result is ``convolve(a, v[::-1])``;
    when ``len(v) > len(a)`` numpy computes ``correlate(v, a)`` reversed)."""
    a, v = np.asarray(a, np.float64), np.asarray(v, np.float64)
    if len(v) > len(a):
        return correlate(v, a, mode)[::-1]
    return _numpy_window(full_convolution(a, v[::-1]), len(a), len(v), mode)


# ---- random configurations (hypothesis strategies shared by the tests) ------------

PADDING_NAMES = ("valid", "same", "same_lower", "full", "causal")
PADDING_MODES = ("zeros", "circular", "reflect", "replicate")


def paddings():
    """Every kind of padding: a name, an int, or a pair (lo, hi)."""
    from hypothesis import strategies as st

    return st.one_of(
        st.sampled_from(PADDING_NAMES),
        st.integers(0, 4),
        st.tuples(st.integers(0, 4), st.integers(0, 4)),
    )


def configs(*, batch_shapes=((), (2,), (2, 3)), max_length=12, max_kernel=5):
    """Random layer configurations: a dict with ``x_shape``, ``w_shape``, ``options``
    (the keyword arguments of conv1d) and ``seed``. Some are illegal by the
    definitions (empty output, reflect too wide); the tests check those raise."""
    from hypothesis import strategies as st

    @st.composite
    def draw_config(draw):
        groups = draw(st.integers(1, 3))
        cig, cog = draw(st.integers(1, 2)), draw(st.integers(1, 2))
        K = draw(st.integers(1, max_kernel))
        L = draw(st.integers(1, max_length))
        batch = draw(st.sampled_from(batch_shapes))
        options = dict(
            stride=draw(st.integers(1, 3)),
            padding=draw(paddings()),
            dilation=draw(st.integers(1, 3)),
            groups=groups,
            flip=draw(st.booleans()),
            padding_mode=draw(st.sampled_from(PADDING_MODES)),
        )
        return dict(
            x_shape=(*batch, L, cig * groups),
            w_shape=(K, cig, cog * groups),
            options=options,
            seed=draw(st.integers(0, 2**32 - 1)),
        )

    return draw_config()


def random_arrays(config, dtype=np.float64):
    """Standard normal ``x`` and ``w`` for a configuration, as numpy arrays."""
    rng = np.random.default_rng(config["seed"])
    x = rng.standard_normal(config["x_shape"]).astype(dtype)
    w = rng.standard_normal(config["w_shape"]).astype(dtype)
    return x, w


def legal(config) -> bool:
    """Whether the definitions give a non-empty output for this configuration."""
    L = config["x_shape"][-2]
    K = config["w_shape"][0]
    o = config["options"]
    lo, hi = resolve_padding(L, K, stride=o["stride"], padding=o["padding"], dilation=o["dilation"])
    if o["padding_mode"] == "reflect" and max(lo, hi) > L - 1:
        return False
    return L + lo + hi >= o["dilation"] * (K - 1) + 1


# ---- random configurations drawn with numpy (the property sweep) ------------------

SWEEP_BATCH_SHAPES = ((), (1,), (2,), (2, 3))


def draw_config(rng) -> dict:
    """One random layer configuration drawn with the numpy Generator ``rng``, in the
    format of :func:`configs` (``x_shape``, ``w_shape``, ``options``, ``seed``).

    Two regimes. Short (3 in 4): lengths 1..16, kernels 1..5, stride and dilation
    1..3, 1..3 groups of 1..2 input and output channels, integer paddings 0..4.
    Long (1 in 4): lengths 48..160, kernels 1..12 dilated 1..12 (effective lengths
    up to 133), one or two groups of mostly single channels, integer paddings 0..12:
    shapes for which ``"auto"`` computes the output or a gradient by FFT.
    Both: every padding name, an int or a pair (a third each), every padding mode,
    ``flip`` either way, batch shapes ``()``, ``(1,)``, ``(2,)``, ``(2, 3)``. Some
    draws are illegal by the definitions (see :func:`legal`).
    """
    long = rng.random() < 1 / 4
    if long:
        groups = int(rng.integers(1, 3))
        cig, cog = (int(v) for v in rng.choice([1, 1, 1, 2], size=2))
        K, L = int(rng.integers(1, 13)), int(rng.integers(48, 161))
        dilation, max_pad = int(rng.integers(1, 13)), 12
        batch = SWEEP_BATCH_SHAPES[int(rng.integers(0, 3))]
    else:
        groups = int(rng.integers(1, 4))
        cig, cog = int(rng.integers(1, 3)), int(rng.integers(1, 3))
        K, L = int(rng.integers(1, 6)), int(rng.integers(1, 17))
        dilation, max_pad = int(rng.integers(1, 4)), 4
        batch = SWEEP_BATCH_SHAPES[int(rng.integers(0, 4))]
    kind = int(rng.integers(0, 3))
    if kind == 0:
        padding = PADDING_NAMES[int(rng.integers(0, len(PADDING_NAMES)))]
    elif kind == 1:
        padding = int(rng.integers(0, max_pad + 1))
    else:
        padding = (int(rng.integers(0, max_pad + 1)), int(rng.integers(0, max_pad + 1)))
    options = dict(
        stride=int(rng.integers(1, 4)),
        padding=padding,
        dilation=dilation,
        groups=groups,
        flip=bool(rng.integers(0, 2)),
        padding_mode=PADDING_MODES[int(rng.integers(0, len(PADDING_MODES)))],
    )
    return dict(
        x_shape=(*batch, L, cig * groups),
        w_shape=(K, cig, cog * groups),
        options=options,
        seed=int(rng.integers(0, 2**32)),
    )


def random_cotangent(config, shape) -> np.ndarray:
    """A standard normal cotangent of ``shape`` for a configuration (its own stream)."""
    return np.random.default_rng([config["seed"], 1]).standard_normal(shape)
