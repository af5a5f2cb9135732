"""beta-LASSO: does an FC net trained with an L1 step and a threshold become local, conv-like?

Claim tested (Neyshabur, "Towards learning convolutions from scratch", NeurIPS 2020):
training a fully connected net with beta-LASSO (an SGD step on the loss plus
``lam * sign(theta)``, then every weight with ``|theta| < beta * lam`` set to 0;
``convjax.train.beta_lasso``) makes its first layer LOCAL and SPARSE and closes much of
the gap in test error to a convolutional net, where plain SGD does neither.

Task: (a) of ``sample_efficiency`` (the marked parity of ``k`` signs at a fixed position
of ``d``, the window's values distributed as the background's), models: its dense twin
``Dense(C, kernel_size=k)`` (a free ``(Lout*C, 2d)`` matrix) and ``Conv1D(C, k)``, then
relu, global max pool, ``Dense(1)``. Every seed draws its own training, validation and
test sets (disjoint parts of one draw); the FC net runs for every ``lam`` of a grid
FIXED IN ADVANCE (``lam = 0`` is plain SGD exactly), the conv net with plain SGD; same
learning rate, steps and minibatches for all.

Training-set size: chosen by a PILOT on seeds that are recorded and never reused (seeds
``pilot_seeds``, their own data draws): for each ``n`` of a grid, plain SGD on the FC and
conv nets; the chosen ``n`` is the smallest at which the conv net's mean pilot error is
at most ``conv_max`` while the FC net's is at least ``fc_min`` (so that dense SGD is
clearly worse), else the ``n`` of the largest mean gap.

``lam`` is SELECTED ON THE VALIDATION SET: the ``lam > 0`` with the lowest mean
validation error. The claims use that ``lam``; every ``lam`` is reported.

Measures of the first layer's dense matrix ``W`` (a row per hidden unit, a column per
input position and channel; position mass ``sum_c |W[:, i, c]|``):

* sparsity: fraction of exact zeros in ``W``;
* locality: per nonzero row, the share of its position mass in its best window of ``k``
  consecutive positions, averaged over rows (``k / d`` for a flat row; the value at
  initialisation is the chance reference);
* tying: the relative distance from ``W`` to the nearest convolution of the first
  layer's structure (``convjax.nn.distance_to_conv``: 0 for a convolution, tied and
  zero off the structure);
* task window: share of ``sum |W|`` on the ``k`` positions that carry the pattern.
"""

from __future__ import annotations

import functools
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import common
import jax
import jax.numpy as jnp
import matplotlib.pyplot as plt
import numpy as np
import sample_efficiency as se

from convjax import data, nn, stats, train

NAME = "beta_lasso"
LOCALITY_FACTOR = 1.5  # "local": best-window share at least this many times its value at init
SPARSITY_NEEDED = 0.5  # "sparse": at least half of the first layer's weights exactly zero
CIN = 2  # marked_pattern's channels: the signs and the marker


def settings(size: str) -> dict:
    base = se.settings(size)
    return {
        "d": common.pick(size, tiny=12, quick=16, full=32),
        "k": base["k"],
        "rule": base["rule"],
        "channels": base["channels"],
        "generator": base["generator"],
        "position": "fixed",
        "pilot_seeds": common.pick(
            size, tiny=[100, 101], quick=[100, 101, 102], full=[100, 101, 102]
        ),
        "pilot_sizes": common.pick(
            size, tiny=[16, 64], quick=[64, 128, 256, 512], full=[64, 128, 256, 512, 1024]
        ),
        "conv_max": 0.1,
        "fc_min": 0.3,
        "n_test": base["n_test"],
        "n_val": common.pick(size, tiny=128, quick=1000, full=2000),
        "steps": common.pick(size, tiny=20, quick=800, full=2000),
        "batch": 64,
        "eval_every": common.pick(size, tiny=10, quick=100, full=200),
        "learning_rate": 0.1,
        "beta": 50.0,
        "lams": common.pick(
            size,
            tiny=[0.0, 2e-3],
            quick=[0.0, 3e-4, 1e-3, 3e-3, 1e-2],
            full=[0.0, 1e-4, 3e-4, 1e-3, 3e-3, 1e-2],
        ),
        "lam_selection": "lam > 0 with the lowest mean validation error",
        "optimizer": "beta_lasso (lam = 0: plain SGD), minibatches",
        "readout": base["readout"],
        "data_seed": 7,
    }


# ---- measures of the first layer ------------------------------------------------------


def best_window_share(w, k: int):
    """Per row of ``w`` ``(units, d)``: ``max_j sum_{i in [j, j+k)} |w_i| / sum_i |w_i|``.

    Returns ``(units,)``; NaN for an all-zero row."""
    a = jnp.abs(w)
    windows = jax.lax.reduce_window(a, jnp.zeros((), a.dtype), jax.lax.add, (1, k), (1, 1), "VALID")
    total = jnp.sum(a, axis=1)
    return jnp.where(
        total > 0, jnp.max(windows, axis=1) / jnp.where(total > 0, total, 1.0), jnp.nan
    )


def first_layer_measures(params, s, k: int, window: tuple[int, int], cin: int = 1) -> dict:
    """Sparsity, locality and tying of the dense first layer ``params[0]["w"]``
    ``(Lout*C, d*cin)`` (columns: position-major, ``cin`` channels per position)."""
    w = params[0]["w"]
    pos = jnp.sum(jnp.abs(w).reshape(w.shape[0], -1, cin), axis=-1)  # (units, d)
    share = best_window_share(pos, k)
    alive = ~jnp.isnan(share)
    total = jnp.sum(pos)
    leaves = jax.tree_util.tree_leaves(params)
    zeros = sum(jnp.sum(p == 0) for p in leaves)
    size = sum(p.size for p in leaves)
    return {
        "sparsity_w1": jnp.mean(w == 0),
        "sparsity_all": zeros / size,
        "locality": jnp.sum(jnp.where(alive, share, 0.0)) / jnp.maximum(jnp.sum(alive), 1),
        "alive_units": jnp.mean(alive),
        "in_structure": 1.0 - nn.off_structure_share(params[0], s),
        "distance_to_conv": nn.distance_to_conv(params[0], s),
        "task_window": jnp.sum(pos[:, window[0] : window[1]]) / jnp.where(total > 0, total, 1.0),
    }


MEASURES = (
    "test_error",
    "sparsity_w1",
    "sparsity_all",
    "locality",
    "alive_units",
    "in_structure",
    "distance_to_conv",
    "task_window",
)


# ---- data and training ---------------------------------------------------------------


def sets_for(cfg: dict, seeds, n: int, n_val: int = 0):
    """Task (a) training pool of ``n``, test and (if ``n_val``) validation sets, per seed."""
    scfg = {**cfg, "ds": [cfg["d"]]}
    sets = se.task_sets(scfg, cfg["d"], seeds, n, n_val)
    half = len(seeds)  # task (a) runs come first
    return tuple(data.Dataset(ds.x[:half], ds.y[:half]) for ds in sets)


@functools.cache
def _fns(arch: str, d: int, k: int, c: int, measure: bool, lr: float, beta: float):
    """The net, its loss, eval and error functions and the optimizer factory of ``arch``:
    the same objects for every call with these settings, so that ``fit_many`` reuses one
    compiled block (e.g. across the pilot's sizes)."""
    net = se.model(arch, c, k)
    loss_fn, err_fn = se.losses_for(net)
    s = nn.structure(se.first_layer("fc", c, k), (d, CIN))
    start = (d - k) // 2
    window = (start, start + k)

    def eval_fn(params, test):
        out = err_fn(params, test)
        if measure:
            out = {**out, **first_layer_measures(params, s, k, window, CIN)}
        return out

    def optimizer(h):
        return train.beta_lasso(lr, h["lam"], beta)

    return net, loss_fn, eval_fn, err_fn, optimizer, s, window


def train_net(cfg, arch, seeds, train_set, test, lams, *, measure=True):
    """``fit_many`` of ``arch`` for every (lam, seed) (runs ordered lam-major)."""
    d, k, c = cfg["d"], cfg["k"], cfg["channels"]
    net, loss_fn, eval_fn, err_fn, optimizer, s, window = _fns(
        arch, d, k, c, measure, cfg["learning_rate"], cfg["beta"]
    )
    init_keys, train_keys = se.run_keys(seeds)
    params0 = se.init_many(net, init_keys, (d, CIN))
    reps = len(lams)

    def tile(t):
        return jax.tree.map(lambda a: jnp.concatenate([a] * reps), t)

    res = train.fit_many(
        loss_fn,
        tile(params0),
        optimizer,
        tile(train_set),
        jnp.concatenate([train_keys] * reps),
        steps=cfg["steps"],
        batch_size=min(cfg["batch"], train_set.y.shape[1]),
        eval_every=cfg["eval_every"],
        eval_fn=eval_fn,
        eval_data=tile(test),
        hyper={"lam": jnp.repeat(jnp.asarray(lams, jnp.float32), len(seeds))},
        progress=False,
        per_run_data=True,
    )
    init = (
        {m: np.asarray(v) for m, v in jax.vmap(eval_fn)(params0, test).items()} if measure else {}
    )
    return res, init, err_fn, s, window


def pilot(cfg: dict) -> dict:
    """Plain SGD on the FC and conv nets at every pilot size, on the pilot seeds."""
    seeds = cfg["pilot_seeds"]
    n_max = max(cfg["pilot_sizes"])
    pool, test = sets_for(cfg, seeds, n_max)
    out = {"sizes": cfg["pilot_sizes"], "fc": [], "conv": []}
    for n in cfg["pilot_sizes"]:
        part = se.repeat_to(pool, n, n_max)
        for arch in ("fc", "conv"):
            res = train_net(cfg, arch, seeds, part, test, [0.0], measure=False)[0]
            out[arch].append(res.history["eval_test_error"][:, -1])
    fc, conv = np.asarray(out["fc"]), np.asarray(out["conv"])
    ok = (conv.mean(axis=1) <= cfg["conv_max"]) & (fc.mean(axis=1) >= cfg["fc_min"])
    gap = fc.mean(axis=1) - conv.mean(axis=1)
    j = int(np.argmax(ok)) if ok.any() else int(np.argmax(gap))
    out["chosen_n"] = cfg["pilot_sizes"][j]
    out["rule_met"] = bool(ok.any())
    out["fc"], out["conv"] = fc, conv
    return out


def run_main(cfg: dict, seeds, n: int) -> dict:
    train_set, test, val = sets_for(cfg, seeds, n, cfg["n_val"])
    lams, n_seeds = list(cfg["lams"]), len(seeds)
    res_fc, init, err_fc, s, window = train_net(cfg, "fc", seeds, train_set, test, lams)
    res_conv = train_net(cfg, "conv", seeds, train_set, test, [0.0], measure=False)[0]
    val_err = jax.jit(jax.vmap(lambda p, v: err_fc(p, v)["test_error"]))(
        res_fc.params, jax.tree.map(lambda a: jnp.concatenate([a] * len(lams)), val)
    )
    fc_hist = {
        name: np.asarray(v).reshape(len(lams), n_seeds, -1)
        for name, v in res_fc.history.items()
        if name != "step"
    }
    fc_hist["val_error"] = np.asarray(val_err).reshape(len(lams), n_seeds)
    return {
        "fc": fc_hist,
        "conv": {k: np.asarray(v) for k, v in res_conv.history.items()},
        "fc_w1": np.asarray(res_fc.params[0]["w"]).reshape(
            len(lams), n_seeds, *res_fc.params[0]["w"].shape[1:]
        ),
        "init": init,
        "window": window,
        "step": np.asarray(res_fc.history["step"]),
    }


# ---- summary and claims ---------------------------------------------------------------


def summarise(cfg: dict, out: dict, pilot_out: dict) -> dict:
    lams = list(cfg["lams"])
    h = out["fc"]
    conv_err = out["conv"]["eval_test_error"][:, -1]
    fc = {}
    for i, lam in enumerate(lams):
        fc[f"{lam:g}"] = {
            "lam": lam,
            "val_error": common.ci(h["val_error"][i]),
            **{m: common.ci(h[f"eval_{m}"][i, :, -1]) for m in MEASURES},
        }
    positive = [lam for lam in lams if lam > 0]
    selected = min(positive, key=lambda lam: (float(np.mean(h["val_error"][lams.index(lam)])), lam))
    return {
        "pilot": {
            "seeds": cfg["pilot_seeds"],
            "sizes": pilot_out["sizes"],
            "fc_sgd_error": [common.ci(e) for e in pilot_out["fc"]],
            "conv_sgd_error": [common.ci(e) for e in pilot_out["conv"]],
            "fc_sgd_error_per_seed": pilot_out["fc"],
            "conv_sgd_error_per_seed": pilot_out["conv"],
            "chosen_n": pilot_out["chosen_n"],
            "rule_met": pilot_out["rule_met"],
        },
        "n_train": pilot_out["chosen_n"],
        "selected_lam": selected,
        "conv_sgd": {"test_error": common.ci(conv_err), "per_seed": conv_err},
        "fc": fc,
        "at_init": {m: common.ci(v) for m, v in out["init"].items() if m in MEASURES},
        "locality_uniform_row": cfg["k"] / cfg["d"],
        "task_window_positions": list(out["window"]),
        "curves": {
            "step": out["step"],
            "conv_test_error_per_seed": out["conv"]["eval_test_error"],
            "fc_mean": {
                f"{lam:g}": {m: h[f"eval_{m}"][i].mean(axis=0) for m in ("test_error", "locality")}
                for i, lam in enumerate(lams)
            },
        },
    }


CLAIMS = {
    "beats_sgd": stats.Claim(
        "beta-LASSO lowers the FC net's test error below plain SGD's",
        "final test error, beta-LASSO (selected lam) minus SGD, per seed",
        "difference",
        "below",
        0.0,
        against="plain SGD on the same seed's data and init",
    ),
    "half_gap": stats.Claim(
        "beta-LASSO closes at least half the gap between FC (SGD) and conv",
        "err_beta-LASSO - (err_FC_SGD + err_conv) / 2, per seed",
        "mean",
        "below",
        0.0,
    ),
    "local": stats.Claim(
        "beta-LASSO makes the first layer local "
        f"(best-window share >= {LOCALITY_FACTOR:g} x at init)",
        "best-window share of the first layer, beta-LASSO / at initialisation, per seed",
        "paired_ratio",
        "above",
        LOCALITY_FACTOR,
        against="the same seeds at initialisation",
    ),
    "local_vs_sgd": stats.Claim(
        "beta-LASSO's first layer is more local than SGD's",
        "best-window share, beta-LASSO minus SGD, per seed",
        "difference",
        "above",
        0.0,
        against="plain SGD on the same seed",
    ),
    "tying": stats.Claim(
        "beta-LASSO's first layer approaches a convolution (closer to the nearest conv than SGD's)",
        "relative distance to the nearest conv, beta-LASSO minus SGD, per seed",
        "difference",
        "below",
        0.0,
        against="plain SGD on the same seed",
    ),
    "sparse": stats.Claim(
        f"beta-LASSO learns sparse weights (>= {SPARSITY_NEEDED:.0%} of the first layer zero)",
        "fraction of exact zeros in the first layer, per seed",
        "mean",
        "above",
        SPARSITY_NEEDED,
    ),
    "gap_exists": stats.Claim(
        "Baseline: at the chosen n, dense SGD is worse than the conv net",
        "final test error, FC SGD minus conv SGD, per seed",
        "difference",
        "above",
        0.0,
        against="the conv net on the same seed's data",
    ),
}


def claims_from(cfg: dict, out: dict, summary: dict) -> list[dict]:
    lams = list(cfg["lams"])
    h = out["fc"]
    i_bl, i_sgd = lams.index(summary["selected_lam"]), lams.index(0.0)
    last = lambda m, i: h[f"eval_{m}"][i, :, -1]  # noqa: E731
    conv = out["conv"]["eval_test_error"][:, -1]
    ctx = f"lam={summary['selected_lam']:g} (selected on validation), n={summary['n_train']}"
    ev = stats.evaluate
    return [
        common.verdict_claim(ev(CLAIMS["gap_exists"], last("test_error", i_sgd), conv), ctx),
        common.verdict_claim(
            ev(CLAIMS["beats_sgd"], last("test_error", i_bl), last("test_error", i_sgd)), ctx
        ),
        common.verdict_claim(
            ev(
                CLAIMS["half_gap"],
                last("test_error", i_bl) - (last("test_error", i_sgd) + conv) / 2,
            ),
            ctx,
        ),
        common.verdict_claim(
            ev(CLAIMS["local"], last("locality", i_bl), out["init"]["locality"]), ctx
        ),
        common.verdict_claim(
            ev(CLAIMS["local_vs_sgd"], last("locality", i_bl), last("locality", i_sgd)), ctx
        ),
        common.verdict_claim(
            ev(CLAIMS["tying"], last("distance_to_conv", i_bl), last("distance_to_conv", i_sgd)),
            ctx + f"; at init {common.fmt_ci(summary['at_init']['distance_to_conv'])}",
        ),
        common.verdict_claim(ev(CLAIMS["sparse"], last("sparsity_w1", i_bl)), ctx),
    ]


def table_from(cfg: dict, summary: dict) -> str:
    f = common.fmt_ci
    rows = [["conv", "SGD", "-", f(summary["conv_sgd"]["test_error"])] + ["-"] * 5]
    for entry in summary["fc"].values():
        lam = entry["lam"]
        name = (
            "SGD"
            if lam == 0
            else f"beta-LASSO lam={lam:g}"
            + (" (selected)" if lam == summary["selected_lam"] else "")
        )
        rows.append(
            [
                "FC",
                name,
                f(entry["val_error"]),
                f(entry["test_error"]),
                f(entry["sparsity_w1"]),
                f(entry["locality"]),
                f(entry["task_window"]),
                f(entry["distance_to_conv"]),
                f(entry["in_structure"]),
            ]
        )
    a = summary["at_init"]
    rows.append(
        [
            "FC",
            "at init (chance)",
            "-",
            f(a["test_error"]),
            f(a["sparsity_w1"]),
            f(a["locality"]),
            f(a["task_window"]),
            f(a["distance_to_conv"]),
            f(a["in_structure"]),
        ]
    )
    p = summary["pilot"]
    pilot_rows = [
        [n, f(fe), f(ce)]
        for n, fe, ce in zip(p["sizes"], p["fc_sgd_error"], p["conv_sgd_error"], strict=True)
    ]
    return (
        common.markdown_table(
            [
                "net",
                "training",
                "val error",
                "test error",
                "zeros in W1",
                "best-window share",
                "share on task window",
                "distance to nearest conv",
                "in conv structure",
            ],
            rows,
        )
        + f"\n\nPilot (seeds {p['seeds']}, not reused; plain SGD): chosen n = {p['chosen_n']} "
        + f"(rule {'met' if p['rule_met'] else 'NOT met: largest gap'}).\n\n"
        + common.markdown_table(["n", "FC SGD test error", "conv SGD test error"], pilot_rows)
    )


def figures(run, cfg: dict, summary: dict, out: dict) -> None:
    steps = np.asarray(summary["curves"]["step"])
    lams = list(cfg["lams"])
    colours = plt.cm.viridis(np.linspace(0.0, 0.85, len(lams)))
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    for m, ax in zip(("test_error", "locality"), axes, strict=True):
        for i, (lam, col) in enumerate(zip(lams, colours, strict=True)):
            for r, curve in enumerate(out["fc"][f"eval_{m}"][i]):
                name = "FC, plain SGD" if lam == 0 else f"FC, beta-LASSO lam={lam:g}"
                ax.plot(steps, curve, color=col, lw=0.6, alpha=0.6, label=name if r == 0 else None)
        ax.set(xlabel="step", ylabel=m.replace("_", " "))
        ax.grid(alpha=0.3)
    for r, e in enumerate(out["conv"]["eval_test_error"]):
        axes[0].plot(steps, e, "k--", lw=0.6, label="conv, plain SGD" if r == 0 else None)
    axes[1].axhline(
        summary["at_init"]["locality"]["estimate"], color="0.5", ls=":", label="at init"
    )
    axes[0].legend(fontsize=6)
    axes[1].legend(fontsize=6)
    fig.suptitle(f"beta-LASSO vs SGD, task (a), n={summary['n_train']}: every seed", fontsize=10)
    run.save_figure(fig, "training_curves.png")

    # first-layer weights (position mass) of a stated representative seed: the seed whose
    # beta-LASSO locality is the median over seeds
    i_bl = lams.index(summary["selected_lam"])
    loc = out["fc"]["eval_locality"][i_bl, :, -1]
    rep = int(np.argsort(loc)[len(loc) // 2])
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.5))
    for ax, lam in zip(axes, (0.0, summary["selected_lam"]), strict=True):
        w = (
            np.abs(out["fc_w1"][lams.index(lam), rep])
            .reshape(out["fc_w1"].shape[2], -1, CIN)
            .sum(-1)
        )
        im = ax.imshow(w, aspect="auto", cmap="magma", interpolation="nearest")
        ax.axvspan(out["window"][0] - 0.5, out["window"][1] - 0.5, fill=False, ec="c", lw=1.5)
        ax.set_title(
            "plain SGD" if lam == 0 else f"beta-LASSO, lam={lam:g} (selected)", fontsize=10
        )
        ax.set(xlabel="input position (cyan: the task's window)", ylabel="hidden unit")
        fig.colorbar(im, ax=ax, label="sum over channels of |w|")
    fig.suptitle(
        f"First-layer weights, seed {rep} (the median seed by beta-LASSO locality)", fontsize=10
    )
    run.save_figure(fig, "first_layer_weights.png")


def main(argv=None) -> dict:
    args = common.make_parser(__doc__).parse_args(argv)
    run = common.start_run(NAME, args, description=__doc__)
    cfg = settings(run.size)
    overlap = set(cfg["pilot_seeds"]) & set(run.seeds)
    if overlap:
        raise ValueError(f"beta_lasso: pilot seeds {sorted(overlap)} must not be reused.")
    pilot_out = pilot(cfg)
    out = run_main(cfg, run.seeds, pilot_out["chosen_n"])
    summary = summarise(cfg, out, pilot_out)
    figures(run, cfg, summary, out)
    return run.finish(
        config=cfg,
        numbers=summary,
        table=table_from(cfg, summary),
        claims=claims_from(cfg, out, summary),
    )


if __name__ == "__main__":
    main()
