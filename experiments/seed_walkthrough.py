"""Seed walkthrough: a convolution as a matrix product, executed on x=[1,2,3,4], w=[5,6,7].

Full / valid / same convolution and cross-correlation (checked against numpy), a
nonlinearity on the feature map, two output channels stacked as columns, the dense
matrix T(w) (printed and drawn: tied diagonals, structural zeros) with
T(w) @ x == conv(x, w), and the backward pass: the gradient of each shared weight
is the sum of the dense gradient over that weight's copies. The 2-D case: a 3x3
filter on a 4x4 image, its 4x16 doubly block Toeplitz matrix (drawn), and the
backward pass summing each of the 9 weights over its 4 tied copies.

Everything is float32 with HIGHEST precision. Every value is a small integer, so
the forward comparisons are exact; the gradient through XLA's convolution is
compared within a written-out float32 tolerance (``GRAD_RTOL``), since XLA's CPU
backward convolution may round (an earlier engine gave 7.999999 for 8); the gradient through the
dense algorithm (``algorithm="dense"``) is recorded next to it. The run is
deterministic: the seeds are recorded but not used.
"""

from __future__ import annotations

import sys
from functools import partial
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import common
import jax
import jax.numpy as jnp
import matplotlib.pyplot as plt
import numpy as np
from matplotlib.colors import ListedColormap

import convjax

NAME = "seed_walkthrough"
HP = jax.lax.Precision.HIGHEST
F32 = jnp.float32
X = (1.0, 2.0, 3.0, 4.0)
W = (5.0, 6.0, 7.0)
W_SECOND = (1.0, 0.0, -1.0)  # second output channel: a difference filter
W_TARGET = (4.0, 6.0, 9.0)  # the backward-pass demo fits conv(x, w) to conv(x, W_TARGET)
BIAS = -30.0
GRAD_RTOL = 1e-6  # |autodiff - sum over copies| <= GRAD_RTOL * max |gradient| (float32)
TAP_COLOURS = ("#4c72b0", "#dd8452", "#55a868")
IMAGE = tuple(range(1, 17))  # the 4x4 image of the 2-D case, row-major
W_IMAGE = tuple(range(1, 10))  # its 3x3 filter, row-major: distinct values locate copies
W_IMAGE_TARGET = (1, 0, 2, 0, 5, 0, 2, 0, 1)
TAP_COLOURS_2D = plt.get_cmap("tab10").colors[:9]


def _col(v) -> jax.Array:
    """``(L,)`` -> ``(L, 1)``: a one-channel signal for conv1d."""
    return jnp.asarray(v, F32).reshape(-1, 1)


def _filt(*filters) -> jax.Array:
    """Filters ``(K,)`` each -> ``(K, 1, Cout)``: one output channel per filter."""
    return jnp.stack([jnp.asarray(f, F32) for f in filters], axis=-1)[:, None, :]


def _ints(a) -> list:
    """Exact small-integer values as a list of ints (the run checks they are integers)."""
    a = np.asarray(a, dtype=np.float64)
    if not np.all(a == np.round(a)):
        raise AssertionError(f"seed_walkthrough: expected integer values, got {a}")
    return np.round(a).astype(int).tolist()


def sequences() -> dict:
    """Convolution and cross-correlation in every mode, convjax next to numpy."""
    x, w = jnp.asarray(X, F32), jnp.asarray(W, F32)
    out = {}
    for mode in ("full", "valid", "same"):
        out[f"convolve_{mode}"] = {
            "convjax": _ints(convjax.convolve(x, w, mode, precision=HP)),
            "numpy": _ints(np.convolve(X, W, mode)),
        }
        out[f"correlate_{mode}"] = {
            "convjax": _ints(convjax.correlate(x, w, mode, precision=HP)),
            "numpy": _ints(np.correlate(X, W, mode)),
        }
    # conv1d, the layer op: cross-correlation by default, convolution with flip=True
    out["conv1d_valid_flip_false"] = _ints(conv1d(_col(X), _filt(W))[:, 0])
    out["conv1d_valid_flip_true"] = _ints(conv1d(_col(X), _filt(W), flip=True)[:, 0])
    out["correlate_equals_convolve_reversed"] = _ints(
        convjax.correlate(x, w, "full", precision=HP)
    ) == _ints(convjax.convolve(x, w[::-1], "full", precision=HP))
    return out


def conv1d(x, w, **options):
    return convjax.conv1d(x, w, precision=HP, **options)


def worked_sums() -> list[str]:
    """The valid outputs written out as sums of products (from the arrays, not typed)."""
    lines = []
    for name, taps in (("convolution", W[::-1]), ("cross-correlation", W)):
        for o in range(len(X) - len(W) + 1):
            terms = [f"{X[o + k]:g}*{taps[k]:g}" for k in range(len(W))]
            value = sum(X[o + k] * taps[k] for k in range(len(W)))
            lines.append(f"{name} y[{o}] = " + " + ".join(terms) + f" = {value:g}")
    return lines


def feature_maps() -> dict:
    """Nonlinearity on the feature map, and two output channels stacked as columns."""
    pre = conv1d(_col(X), _filt(W), padding="full", flip=True)[:, 0] + BIAS
    two = conv1d(_col(X), _filt(W, W_SECOND), padding="full", flip=True)  # (6, 2)
    cols_match = all(
        _ints(two[:, c]) == _ints(np.convolve(X, f, "full")) for c, f in enumerate((W, W_SECOND))
    )
    return {
        "bias": BIAS,
        "pre_activation": _ints(pre),
        "relu": _ints(jax.nn.relu(pre)),
        "second_filter": list(W_SECOND),
        "two_channels": _ints(two),
        "two_channel_columns_match_numpy": cols_match,
    }


def dense_matrices() -> dict:
    """T(w) for full / valid convolution, valid cross-correlation, and two channels;
    checks T(w) @ x == conv1d(x, w) (and for 'same')."""
    x = _col(X)
    out = {}
    cases = {
        "full_convolution": dict(padding="full", flip=True),
        "valid_convolution": dict(padding="valid", flip=True),
        "same_convolution": dict(padding="same", flip=True),
        "valid_cross_correlation": dict(padding="valid", flip=False),
    }
    for name, opts in cases.items():
        t = convjax.conv_matrix(_filt(W), len(X), **opts)
        via_matrix = jnp.matmul(t, x.reshape(-1), precision=HP)
        direct = conv1d(x, _filt(W), **opts).reshape(-1)
        out[name] = {
            "T": _ints(t),
            "T_at_x": _ints(via_matrix),
            "conv1d": _ints(direct),
            "max_abs_diff": float(jnp.max(jnp.abs(via_matrix - direct))),
            "structural_zeros": int(
                np.sum(~convjax.conv_structure((3, 1, 1), len(X), **opts).mask())
            ),
        }
    t2 = convjax.conv_matrix(_filt(W, W_SECOND), len(X), padding="full", flip=True)
    out["full_convolution_two_channels"] = {
        "T": _ints(t2),
        "rows": "row o*Cout + co: output position o, channel co (interleaved)",
    }
    return out


def backward_pass() -> dict:
    """grad of L(w) = 0.5 ||conv(x, w) - conv(x, w_target)||^2 through conv1d, next to the
    dense gradient G = dL/dT summed over each weight's copies (found by value in T)."""
    x = _col(X)
    opts = dict(padding="full", flip=True)
    target = conv1d(x, _filt(W_TARGET), **opts)

    def loss_conv(w, algorithm="auto"):
        return 0.5 * jnp.sum((conv1d(x, w, algorithm=algorithm, **opts) - target) ** 2)

    def loss_dense(t):
        return 0.5 * jnp.sum((jnp.matmul(t, x.reshape(-1), precision=HP) - target[:, 0]) ** 2)

    w = _filt(W)
    t = convjax.conv_matrix(w, len(X), **opts)
    g_w = jax.grad(loss_conv)(w)[:, 0, 0]
    g_w_dense = jax.grad(partial(loss_conv, algorithm="dense"))(w)[:, 0, 0]
    g_t = jax.grad(loss_dense)(t)
    s = convjax.conv_structure(w.shape, len(X), **opts)
    adj = s.adjoint(g_t)[:, 0, 0]
    t_np, g_np = np.asarray(t), np.asarray(g_t)
    rows = []
    for k, wk in enumerate(W):
        copies = t_np == wk  # the weights are distinct, so a value locates its copies
        rows.append(
            {
                "tap": k,
                "weight": wk,
                "copies": int(copies.sum()),
                "grad_autodiff": float(g_w[k]),
                "grad_autodiff_dense_algorithm": float(g_w_dense[k]),
                "sum_dense_grad_over_copies": float(g_np[copies].sum()),
                "adjoint": float(adj[k]),
            }
        )
    zeros = ~s.mask()
    scale = max(abs(r["sum_dense_grad_over_copies"]) for r in rows)
    return {
        "loss": float(loss_conv(w)),
        "residual": _ints(conv1d(x, w, **opts)[:, 0] - target[:, 0]),
        "dense_grad": _ints(g_t),
        "per_weight": rows,
        "max_abs_diff": max(
            abs(r["grad_autodiff"] - r["sum_dense_grad_over_copies"]) for r in rows
        ),
        "max_abs_diff_dense_algorithm": max(
            abs(r["grad_autodiff_dense_algorithm"] - r["sum_dense_grad_over_copies"]) for r in rows
        ),
        "tolerance": GRAD_RTOL * scale,
        "dense_grad_abs_sum_at_structural_zeros": float(np.abs(g_np[zeros]).sum()),
    }


def _draw_matrix(
    ax, t: np.ndarray, taps: np.ndarray, title: str, row_labels=None, colours=TAP_COLOURS
):
    """Cells coloured by which weight they hold (tied entries share a colour), structural
    zeros white, every value written in its cell."""
    img = np.ma.masked_less(taps.astype(float), 0)
    cmap = ListedColormap(colours).with_extremes(bad="white")
    ax.imshow(img, cmap=cmap, vmin=-0.5, vmax=len(colours) - 0.5, aspect="equal")
    for (r, c), v in np.ndenumerate(t):
        ax.text(
            c,
            r,
            f"{v:g}",
            ha="center",
            va="center",
            color="white" if taps[r, c] >= 0 else "0.6",
            fontsize=10,
        )
    ax.set_xticks(range(t.shape[1]), [f"x[{i}]" for i in range(t.shape[1])])
    ax.set_yticks(range(t.shape[0]), row_labels or [f"y[{o}]" for o in range(t.shape[0])])
    ax.set_xticks(np.arange(-0.5, t.shape[1]), minor=True)
    ax.set_yticks(np.arange(-0.5, t.shape[0]), minor=True)
    ax.grid(which="minor", color="0.85", linewidth=0.8)
    ax.tick_params(which="minor", length=0)
    ax.set_title(title, fontsize=10)


def _tap_map(w_shape, opts: dict, in_shape) -> np.ndarray:
    """Which (flattened) filter tap each dense entry holds (-1 at a structural zero),
    from the structure's weight index (one channel in, any channels out)."""
    s = convjax.conv_structure(w_shape, in_shape, **opts)
    rows, cols, widx = s.weight_index()
    taps = -np.ones(s.dense_shape, dtype=int)
    taps[rows, cols] = widx // (w_shape[-2] * w_shape[-1])  # widx = (k*cig + a)*Cout + co
    return taps


def image_case() -> dict:
    """The 2-D case: a 3x3 filter on a 4x4 image (valid cross-correlation, 2x2 outputs),
    its 4x16 doubly block Toeplitz matrix, and the backward pass summing tied copies."""
    x = jnp.asarray(IMAGE, F32).reshape(4, 4, 1)
    w = jnp.asarray(W_IMAGE, F32).reshape(3, 3, 1, 1)
    target = convjax.conv2d(x, jnp.asarray(W_IMAGE_TARGET, F32).reshape(3, 3, 1, 1))
    t = convjax.conv_matrix(w, (4, 4))
    y = convjax.conv2d(x, w, precision=HP)

    def loss_conv(w):
        return 0.5 * jnp.sum((convjax.conv2d(x, w, precision=HP) - target) ** 2)

    def loss_dense(t):
        return 0.5 * jnp.sum((jnp.matmul(t, x.reshape(-1), precision=HP) - target.reshape(-1)) ** 2)

    g_w = np.asarray(jax.grad(loss_conv)(w)).reshape(-1)
    g_t = np.asarray(jax.grad(loss_dense)(t))
    t_np = np.asarray(t)
    per_weight = []
    for k, wk in enumerate(W_IMAGE):
        copies = t_np == wk
        per_weight.append(
            {
                "tap": k,
                "weight": wk,
                "copies": int(copies.sum()),
                "grad_autodiff": float(g_w[k]),
                "sum_dense_grad_over_copies": float(g_t[copies].sum()),
            }
        )
    scale = max(abs(r["sum_dense_grad_over_copies"]) for r in per_weight)
    blocks = t_np.reshape(2, 2, 4, 4).transpose(0, 2, 1, 3)  # (out row, in row) blocks
    toeplitz = all(
        np.array_equal(blocks[i, p], blocks[0, p - i]) if 0 <= p - i < 3 else not blocks[i, p].any()
        for i in range(2)
        for p in range(4)
    )
    return {
        "image": _ints(x[..., 0]),
        "filter": _ints(w[..., 0, 0]),
        "conv2d": _ints(y[..., 0]),
        "T": _ints(t),
        "T_at_x": _ints(jnp.matmul(t, x.reshape(-1), precision=HP)),
        "max_abs_diff": float(
            np.abs(t_np @ np.asarray(x).reshape(-1) - np.asarray(y).reshape(-1)).max()
        ),
        "doubly_block_toeplitz": bool(toeplitz),
        "per_weight": per_weight,
        "max_abs_grad_diff": max(
            abs(r["grad_autodiff"] - r["sum_dense_grad_over_copies"]) for r in per_weight
        ),
        "tolerance": GRAD_RTOL * scale,
    }


def figure_matrices(run: common.Run, dense: dict) -> None:
    panels = [
        ("full_convolution", dict(padding="full", flip=True), "full convolution, 6x4"),
        ("valid_convolution", dict(padding="valid", flip=True), "valid convolution, 2x4"),
        (
            "valid_cross_correlation",
            dict(padding="valid", flip=False),
            "valid cross-correlation, 2x4",
        ),
    ]
    fig, axes = plt.subplots(1, 4, figsize=(14, 5.2), gridspec_kw={"width_ratios": [1, 1, 1, 1]})
    for ax, (key, opts, title) in zip(axes[:3], panels, strict=True):
        t = np.asarray(dense[key]["T"], dtype=float)
        _draw_matrix(ax, t, _tap_map((3, 1, 1), opts, len(X)), f"T(w): {title}")
    t2 = np.asarray(dense["full_convolution_two_channels"]["T"], dtype=float)
    labels = [f"y[{r // 2}] c{r % 2}" for r in range(t2.shape[0])]
    _draw_matrix(
        axes[3],
        t2,
        _tap_map((3, 1, 2), dict(padding="full", flip=True), len(X)),
        "two output channels, 12x4 (w=[5,6,7], [1,0,-1]);\n"
        "an orange 0 is a weight equal to 0,\nnot a structural zero",
        labels,
    )
    handles = [plt.Rectangle((0, 0), 1, 1, color=c) for c in TAP_COLOURS]
    handles.append(plt.Rectangle((0, 0), 1, 1, facecolor="white", edgecolor="0.6"))
    fig.legend(
        handles,
        ["tap 0 (w[0])", "tap 1 (w[1])", "tap 2 (w[2])", "structural zero"],
        loc="lower center",
        ncol=4,
        frameon=False,
    )
    fig.suptitle("x = [1, 2, 3, 4], w = [5, 6, 7]: tied diagonals, structural zeros")
    run.save_figure(fig, "T_heatmap.png")


def figure_image(run: common.Run, img: dict) -> None:
    t = np.asarray(img["T"], dtype=float)
    taps = _tap_map((3, 3, 1, 1), {}, (4, 4))
    fig, ax = plt.subplots(figsize=(13, 3.6))
    _draw_matrix(
        ax,
        t,
        taps,
        "T(w) of a 3x3 filter on a 4x4 image (valid cross-correlation): 4x16, doubly block "
        "Toeplitz\n(rows: outputs (i, j) row-major; columns: pixels (p, q) row-major; "
        "colour: which of the 9 weights)",
        [f"y[{o // 2},{o % 2}]" for o in range(4)],
        colours=TAP_COLOURS_2D,
    )
    ax.set_xticks(range(16), [f"x[{c // 4},{c % 4}]" for c in range(16)], fontsize=7)
    for c in (3.5, 7.5, 11.5):
        ax.axvline(c, color="0.2", linewidth=1.5)
    run.save_figure(fig, "T2_heatmap.png")


def figure_backward(run: common.Run, back: dict) -> None:
    fig, (ax0, ax1) = plt.subplots(1, 2, figsize=(10, 4.4))
    g = np.asarray(back["dense_grad"], dtype=float)
    taps = _tap_map((3, 1, 1), dict(padding="full", flip=True), len(X))
    _draw_matrix(
        ax0,
        g,
        taps,
        "dense gradient dL/dT (coloured: copies of each weight;\n"
        "white: structural zeros, their gradient is discarded)",
    )
    k = np.arange(len(W))
    auto = [r["grad_autodiff"] for r in back["per_weight"]]
    summed = [r["sum_dense_grad_over_copies"] for r in back["per_weight"]]
    ax1.bar(k - 0.18, auto, 0.36, label="dL/dw via conv1d (autodiff)", color="0.3")
    ax1.bar(k + 0.18, summed, 0.36, label="sum of dL/dT over the copies", color=TAP_COLOURS)
    ax1.set_xticks(k, [f"w[{i}] = {v:g}" for i, v in enumerate(W)])
    ax1.axhline(0, color="0.5", linewidth=0.8)
    ax1.legend(fontsize=8)
    ax1.set_title("gradient of each shared weight = sum over its copies", fontsize=10)
    run.save_figure(fig, "backward.png")


def main(argv=None) -> dict:
    args = common.make_parser(__doc__).parse_args(argv)
    run = common.start_run(NAME, args, description=__doc__)

    seq = sequences()
    sums = worked_sums()
    feats = feature_maps()
    dense = dense_matrices()
    back = backward_pass()
    img = image_case()

    print("x =", list(X), " w =", list(W))
    for key, val in seq.items():
        if isinstance(val, dict):
            print(f"{key:>18}: {val['convjax']}  (numpy: {val['numpy']})")
    print("\n".join(sums))
    print(
        f"\nfeature map relu(conv_full(x, w) + {BIAS:g}): {feats['pre_activation']} -> "
        f"{feats['relu']}"
    )
    print(f"two output channels (columns: w={list(W)}, w={list(W_SECOND)}):")
    print(np.asarray(feats["two_channels"]))
    for key in ("full_convolution", "valid_convolution", "valid_cross_correlation"):
        print(f"\nT(w), {key.replace('_', ' ')}:\n{np.asarray(dense[key]['T'])}")
        print(f"T(w) @ x = {dense[key]['T_at_x']}, conv1d = {dense[key]['conv1d']}")
    print(f"\nbackward pass, L(w) = 0.5 ||conv(x, w) - conv(x, {list(W_TARGET)})||^2, full conv:")
    print(f"dense gradient dL/dT:\n{np.asarray(back['dense_grad'])}")
    print(f"{'tap':>4} {'w':>4} {'copies':>7} {'dL/dw (autodiff)':>17} {'sum over copies':>16}")
    for r in back["per_weight"]:
        print(
            f"{r['tap']:>4} {r['weight']:>4g} {r['copies']:>7} {r['grad_autodiff']:>17.8g} "
            f"{r['sum_dense_grad_over_copies']:>16.8g}"
        )

    print(f"\n2-D: 3x3 filter {list(W_IMAGE)} on the 4x4 image {list(IMAGE)} (row-major):")
    print(f"T(w), 4x16 doubly block Toeplitz:\n{np.asarray(img['T'])}")
    print(f"T(w) @ x = {img['T_at_x']}, conv2d = {img['conv2d']}")
    for r in img["per_weight"]:
        print(
            f"  w={r['weight']:>2} copies={r['copies']} dL/dw={r['grad_autodiff']:.8g} "
            f"sum over copies={r['sum_dense_grad_over_copies']:.8g}"
        )

    figure_matrices(run, dense)
    figure_backward(run, back)
    figure_image(run, img)

    numpy_match = all(v["convjax"] == v["numpy"] for v in seq.values() if isinstance(v, dict))
    matrix_diff = max(dense[k]["max_abs_diff"] for k in dense if "max_abs_diff" in dense[k])
    rows = [
        ["convolve full", seq["convolve_full"]["convjax"], seq["convolve_full"]["numpy"]],
        ["convolve valid", seq["convolve_valid"]["convjax"], seq["convolve_valid"]["numpy"]],
        ["convolve same", seq["convolve_same"]["convjax"], seq["convolve_same"]["numpy"]],
        ["correlate valid", seq["correlate_valid"]["convjax"], seq["correlate_valid"]["numpy"]],
        [f"relu(full + {BIAS:g})", feats["relu"], "-"],
        [
            "T(w) @ x, valid conv",
            dense["valid_convolution"]["T_at_x"],
            dense["valid_convolution"]["conv1d"],
        ],
    ]
    rows += [
        [
            f"dL/dw[{r['tap']}] ({r['copies']} copies)",
            r["grad_autodiff"],
            r["sum_dense_grad_over_copies"],
        ]
        for r in back["per_weight"]
    ]
    rows.append(["2-D: T(w) @ x, 3x3 on 4x4", img["T_at_x"], img["conv2d"]])
    table = common.markdown_table(
        ["quantity", "convjax", "reference (numpy / sum over copies)"], rows, fmt=".8g"
    )
    claims = [
        common.claim(
            "convolve/correlate agree with numpy in full, valid and same modes",
            f"all {sum(isinstance(v, dict) for v in seq.values())} sequences equal: {numpy_match}",
            numpy_match,
        ),
        common.claim(
            "T(w) @ x == conv(x, w) (full, valid, same; convolution and cross-correlation)",
            f"max |difference| = {matrix_diff:g}",
            matrix_diff == 0.0,
        ),
        common.claim(
            "cross-correlation with w == convolution with w reversed",
            f"equal: {seq['correlate_equals_convolve_reversed']}",
            seq["correlate_equals_convolve_reversed"],
        ),
        common.claim(
            "the gradient of a shared weight is the sum of the dense gradient over its "
            "copies; the dense gradient at structural zeros is discarded",
            f"max |autodiff through conv1d - sum over copies| = "
            f"{back['max_abs_diff']:g} (tolerance {back['tolerance']:g}, float32), "
            f"{back['max_abs_diff_dense_algorithm']:g} with algorithm='dense'; "
            f"|dL/dT| summed over structural zeros = "
            f"{back['dense_grad_abs_sum_at_structural_zeros']:g} (nonzero, unused)",
            back["max_abs_diff"] <= back["tolerance"],
        ),
    ]
    claims += [
        common.claim(
            "2-D: a 3x3 filter on a 4x4 image is a 4x16 doubly block Toeplitz matrix with "
            "T(w) @ x.reshape(-1) == conv2d(x, w).reshape(-1)",
            f"max |difference| = {img['max_abs_diff']:g}; block Toeplitz: "
            f"{img['doubly_block_toeplitz']}",
            img["max_abs_diff"] == 0.0 and img["doubly_block_toeplitz"],
        ),
        common.claim(
            "2-D backward pass: the gradient of each of the 9 shared weights is the sum of "
            "the dense gradient over its copies",
            f"max |autodiff through conv2d - sum over copies| = {img['max_abs_grad_diff']:g} "
            f"(tolerance {img['tolerance']:g}, float32); copies per weight: "
            f"{sorted({r['copies'] for r in img['per_weight']})}",
            img["max_abs_grad_diff"] <= img["tolerance"],
        ),
    ]
    config = {
        "x": list(X),
        "w": list(W),
        "second_filter": list(W_SECOND),
        "target_filter": list(W_TARGET),
        "bias": BIAS,
        "dtype": "float32",
        "precision": "HIGHEST",
        "image": list(IMAGE),
        "image_filter": list(W_IMAGE),
        "image_target_filter": list(W_IMAGE_TARGET),
    }
    numbers = {
        "sequences": seq,
        "worked_sums": sums,
        "feature_maps": feats,
        "dense": dense,
        "backward": back,
        "image": img,
    }
    return run.finish(config=config, numbers=numbers, table=table, claims=claims)


if __name__ == "__main__":
    main()
