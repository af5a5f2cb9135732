"""beta-LASSO: does a fully connected net trained with an L1 step and a hard threshold become local?

Claim tested (Neyshabur, "Towards learning convolutions from scratch", NeurIPS
2020): training a fully connected net with beta-LASSO (an SGD step on the loss
plus ``lam * sign(theta)``, then every weight with ``|theta| < beta * lam`` set to
0; ``convjax.train.beta_lasso``) makes it learn LOCAL, SPARSE first-layer
weights and closes much of the gap in test error to a convolutional net, where
plain SGD does neither.

Task: 2(a) of ``sample_efficiency`` (parity of ``k`` consecutive inputs at a
fixed, unknown position of ``d``; same generator and settings), with ``n_train``
examples, where the fully connected net trained with plain SGD is clearly worse
than the convolution.

Models: ``sample_efficiency``'s nets: the dense twin ``Dense(C, kernel_size=k)``
(a free ``(Lout*C, d)`` matrix) or ``Conv1D(C, k)``, then relu, global max pool,
``Dense(1)``. All runs use the same learning rate and steps, full-batch gradients;
the FC net runs for every ``lam`` in ``lams`` (``lam = 0`` is plain SGD exactly),
the conv net with plain SGD. Seeds and ``lam`` values run vmapped together in one
``fit_many`` call (``lam`` through fit_many's ``hyper``).

Measured on the first layer's dense matrix ``W`` (one row per hidden unit, one
column per input position), every ``eval_every`` steps:

* sparsity: fraction of exact zeros in ``W`` (and in all params);
* locality: for each nonzero row, the share of ``sum |w|`` inside its best window of
  ``k`` consecutive positions, averaged over rows. Chance: the same measure at
  initialisation (random weights), and ``k / d`` for a perfectly uniform row;
* structure: 1 - the off-structure share of ``||W||^2`` for the conv structure
  (``convjax.nn.off_structure_share``): how much of ``W`` a convolution could hold;
* task window: share of ``sum |W|`` on the ``k`` positions that carry the pattern.

Gap closed (per ``lam``) = ``(err_FC_sgd - err_FC_beta_lasso) / (err_FC_sgd - err_conv)``
with seed-averaged final test errors. ``lam`` is SELECTED ON A VALIDATION SET
(``n_val`` fresh examples of the same task, independent of the training and
test sets): the ``lam > 0`` with the lowest mean validation error; the claims
are decided with that ``lam``, never with the best one on the test set. Every
``lam`` is reported for context.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import common
import jax
import jax.numpy as jnp
import matplotlib.pyplot as plt
import numpy as np
import sample_efficiency as se

from convjax import nn, train

NAME = "beta_lasso"
LOCALITY_FACTOR = 2.0  # "local": best-window share at least this many times its value at init
GAP_NEEDED = 0.5  # "closes much of the gap": at least half of it
SPARSITY_NEEDED = 0.5  # "sparse": at least half of the first layer's weights exactly zero


def settings(size: str) -> dict:
    base = se.settings(size)
    return {
        "d": base["d"],
        "k": base["k"],
        "rule": base["rule"],
        "noise": base["noise"],
        "channels": base["channels"],
        "n_train": common.pick(size, tiny=32, quick=32, full=32),
        "n_test": base["n_test"],
        "steps": common.pick(size, tiny=20, quick=1500, full=4000),
        "eval_every": common.pick(size, tiny=10, quick=100, full=200),
        "learning_rate": 0.1,
        "beta": 50.0,
        "lams": common.pick(
            size,
            tiny=[0.0, 2e-3],
            quick=[0.0, 1e-3, 2e-3, 4e-3],
            full=[0.0, 5e-4, 1e-3, 2e-3, 4e-3],
        ),
        "n_val": common.pick(size, tiny=200, quick=2000, full=4000),
        "lam_selection": "lam > 0 with the lowest mean validation error",
        "optimizer": "beta_lasso (lam = 0: plain SGD), full batch",
        "readout": base["readout"],
        "position": "fixed",
        "data_seed": base["data_seed"],
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


def first_layer_measures(params, s, k: int, window: tuple[int, int]) -> dict:
    """Sparsity and locality of the dense first layer ``params[0]["w"]`` ``(Lout*C, d)``."""
    w = params[0]["w"]
    share = best_window_share(w, k)
    alive = ~jnp.isnan(share)
    a = jnp.abs(w)
    total = jnp.sum(a)
    leaves = jax.tree_util.tree_leaves(params)
    zeros = sum(jnp.sum(p == 0) for p in leaves)
    size = sum(p.size for p in leaves)
    return {
        "sparsity_w1": jnp.mean(w == 0),
        "sparsity_all": zeros / size,
        "locality": jnp.sum(jnp.where(alive, share, 0.0)) / jnp.maximum(jnp.sum(alive), 1),
        "alive_units": jnp.mean(alive),
        "in_structure": 1.0 - nn.off_structure_share(params[0], s),
        "task_window": jnp.sum(a[:, window[0] : window[1]]) / jnp.where(total > 0, total, 1.0),
    }


# ---- the experiment ---------------------------------------------------------------------


def train_runs(cfg: dict, seeds) -> dict:
    """Trains the FC net for every (lam, seed) and the conv net for every seed."""
    d, k, c = cfg["d"], cfg["k"], cfg["channels"]
    n_seeds, lams = len(seeds), list(cfg["lams"])
    key = jax.random.key(cfg["data_seed"])
    k_pool, k_test = jax.random.split(jax.random.fold_in(key, 0))  # task (a) of sample_eff.
    train_set = se.task_data(k_pool, cfg["n_train"], cfg, "fixed")
    test = se.task_data(k_test, cfg["n_test"], cfg, "fixed")
    start = (d - k) // 2  # local_pattern's default fixed window
    window = (start, start + k)
    init_keys, train_keys = se.run_keys(seeds)
    fc, conv = se.model("fc", c, k), se.model("conv", c, k)
    s = nn.structure(se.first_layer("fc", c, k), (d, 1))
    loss_fc, err_fc = se.losses_for(fc)
    loss_conv, err_conv = se.losses_for(conv)
    sets = se.eval_sets(test, train_set)
    val = se.task_data(jax.random.fold_in(key, 100), cfg["n_val"], cfg, "fixed")

    def eval_fc(params, sets):
        return {**err_fc(params, sets), **first_layer_measures(params, s, k, window)}

    # FC: runs ordered (lam, seed): run r = lam_index * n_seeds + seed_index
    params_fc = se.init_many(fc, init_keys, (d, 1))
    params_fc = jax.tree.map(lambda p: jnp.concatenate([p] * len(lams)), params_fc)
    hyper = {"lam": jnp.repeat(jnp.asarray(lams, jnp.float32), n_seeds)}
    keys_fc = jnp.concatenate([train_keys] * len(lams))
    lr, beta = cfg["learning_rate"], cfg["beta"]
    res_fc = train.fit_many(
        loss_fc,
        params_fc,
        lambda h: train.beta_lasso(lr, h["lam"], beta),
        train_set,
        keys_fc,
        steps=cfg["steps"],
        eval_every=cfg["eval_every"],
        eval_fn=eval_fc,
        eval_data=sets,
        hyper=hyper,
        progress=False,
    )
    res_conv = train.fit_many(
        loss_conv,
        se.init_many(conv, init_keys, (d, 1)),
        train.beta_lasso(lr, 0.0, beta),
        train_set,
        train_keys,
        steps=cfg["steps"],
        eval_every=cfg["eval_every"],
        eval_fn=err_conv,
        eval_data=sets,
        progress=False,
    )
    val_error = jax.jit(jax.vmap(lambda p: err_fc(p, se.eval_sets(val, train_set))["test_error"]))
    init_measures = jax.vmap(lambda p: first_layer_measures(p, s, k, window))(
        se.init_many(fc, init_keys, (d, 1))
    )
    fc_hist = {
        name: np.asarray(v).reshape(len(lams), n_seeds, -1)
        for name, v in res_fc.history.items()
        if name != "step"
    }  # step: no runs axis
    fc_hist["val_error"] = np.asarray(val_error(res_fc.params)).reshape(len(lams), n_seeds)
    return {
        "fc": fc_hist,
        "conv": {n: np.asarray(v) for n, v in res_conv.history.items()},
        "fc_w1": np.asarray(res_fc.params[0]["w"]).reshape(
            len(lams), n_seeds, *res_fc.params[0]["w"].shape[1:]
        ),
        "init": {n: np.asarray(v) for n, v in init_measures.items()},
        "window": window,
    }


MEASURES = (
    "test_error",
    "train_error",
    "sparsity_w1",
    "sparsity_all",
    "locality",
    "alive_units",
    "in_structure",
    "task_window",
)


def summarise(cfg: dict, out: dict) -> dict:
    lams = list(cfg["lams"])
    conv_err = common.mean_std(out["conv"]["eval_test_error"][:, -1])
    fc = {}
    for i, lam in enumerate(lams):
        h = out["fc"]
        fc[f"{lam:g}"] = {
            "lam": lam,
            "val_error": common.mean_std(h["val_error"][i]),
            **{m: common.mean_std(h[f"eval_{m}"][i, :, -1]) for m in MEASURES},
        }
    sgd = fc[f"{0.0:g}"]["test_error"]["mean"] if 0.0 in lams else None
    for entry in fc.values():
        gap = None if sgd is None else sgd - conv_err["mean"]
        entry["gap_closed"] = (
            None if not gap or gap <= 0 else (sgd - entry["test_error"]["mean"]) / gap
        )
    chance = {
        "locality_at_init": common.mean_std(out["init"]["locality"]),
        "locality_uniform_row": cfg["k"] / cfg["d"],
        "in_structure_at_init": common.mean_std(out["init"]["in_structure"]),
        "task_window_at_init": common.mean_std(out["init"]["task_window"]),
        "task_window_uniform": cfg["k"] / cfg["d"],
    }
    curves = {
        "step": out["conv"]["step"],
        "conv_test_error": common.mean_std(out["conv"]["eval_test_error"]),
        "fc": {
            f"{lam:g}": {
                m: common.mean_std(out["fc"][f"eval_{m}"][i])
                for m in ("test_error", "sparsity_w1", "locality", "task_window")
            }
            for i, lam in enumerate(lams)
        },
    }
    positive = [e for e in fc.values() if e["lam"] > 0]
    selected = (
        min(positive, key=lambda e: (e["val_error"]["mean"], e["lam"]))["lam"] if positive else None
    )
    return {
        "selected_lam": selected,
        "conv_sgd": {
            "test_error": conv_err,
            "train_error": common.mean_std(out["conv"]["eval_train_error"][:, -1]),
        },
        "fc": fc,
        "chance": chance,
        "curves": curves,
        "task_window_positions": list(out["window"]),
    }


def claims_from(cfg: dict, summary: dict, size: str) -> list[dict]:
    decide = size != "tiny"
    chosen = summary["selected_lam"]
    main = None if chosen is None else summary["fc"][f"{chosen:g}"]
    sgd = summary["fc"].get(f"{0.0:g}")
    if main is None or sgd is None:
        return [common.claim("beta-LASSO vs SGD", "no lam > 0 or no lam = 0 run", None)]
    loc_init = summary["chance"]["locality_at_init"]["mean"]
    loc_bl, loc_sgd = main["locality"]["mean"], sgd["locality"]["mean"]
    sp_bl, sp_sgd = main["sparsity_w1"]["mean"], sgd["sparsity_w1"]["mean"]
    gap = main["gap_closed"]
    err = summary["conv_sgd"]["test_error"]["mean"]
    lam = f"lam={chosen:g}, selected on validation"
    return [
        common.claim(
            "beta-LASSO makes the fully connected net's first layer local (rule: mean "
            f"best-window share >= {LOCALITY_FACTOR:g} x its value at init, and above SGD's)",
            f"best-window share (k={cfg['k']} of d={cfg['d']}): beta-LASSO ({lam}) "
            f"{loc_bl:.3f}, SGD {loc_sgd:.3f}, init {loc_init:.3f}, uniform row "
            f"{cfg['k'] / cfg['d']:.3f}; share on the task's window: beta-LASSO "
            f"{main['task_window']['mean']:.3f}, SGD {sgd['task_window']['mean']:.3f}",
            (loc_bl >= LOCALITY_FACTOR * loc_init and loc_bl > loc_sgd) if decide else None,
        ),
        common.claim(
            f"beta-LASSO learns sparse weights (rule: >= {SPARSITY_NEEDED:.0%} of the first "
            "layer exactly zero)",
            f"zeros in the first layer: beta-LASSO ({lam}) {sp_bl:.3f}, SGD {sp_sgd:.3f}",
            (sp_bl >= SPARSITY_NEEDED) if decide else None,
        ),
        common.claim(
            "beta-LASSO closes much of the gap in test error between the fully connected net "
            f"(SGD) and the conv net (rule: gap closed >= {GAP_NEEDED:g})",
            f"test error: FC SGD {sgd['test_error']['mean']:.3f}, FC beta-LASSO ({lam}) "
            f"{main['test_error']['mean']:.3f}, conv SGD {err:.3f}; gap closed "
            + ("n/a (no gap: FC SGD is not worse than conv)" if gap is None else f"{gap:.2f}"),
            (gap is not None and gap >= GAP_NEEDED) if decide else None,
        ),
    ]


def figures(run, cfg: dict, summary: dict, out: dict) -> None:
    steps = np.asarray(summary["curves"]["step"])
    lams = list(cfg["lams"])
    colours = plt.cm.viridis(np.linspace(0.0, 0.85, len(lams)))
    fig, axes = plt.subplots(1, 3, figsize=(14, 4))
    panels = (
        ("test_error", "test error"),
        ("sparsity_w1", "first layer: fraction of zeros"),
        ("locality", f"first layer: best-window share (k={cfg['k']})"),
    )
    for ax, (m, label) in zip(axes, panels, strict=True):
        for lam, col in zip(lams, colours, strict=True):
            h = out["fc"][f"eval_{m}"][lams.index(lam)]
            name = "FC, plain SGD" if lam == 0 else f"FC, beta-LASSO lam={lam:g}"
            ax.plot(steps, np.nanmean(h, axis=0), color=col, label=name)
            ax.fill_between(
                steps, np.nanmin(h, axis=0), np.nanmax(h, axis=0), color=col, alpha=0.2, lw=0
            )
        ax.set_xlabel("step")
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
    e = out["conv"]["eval_test_error"]
    axes[0].plot(steps, e.mean(axis=0), "k--", label="conv, plain SGD")
    loc0 = summary["chance"]["locality_at_init"]["mean"]
    axes[2].axhline(loc0, color="0.5", ls=":", label="at init (chance)")
    axes[2].axhline(cfg["k"] / cfg["d"], color="0.7", ls="-.", label="uniform row (k/d)")
    axes[0].legend(fontsize=7)
    axes[2].legend(fontsize=7)
    fig.suptitle(
        f"beta-LASSO (beta={cfg['beta']:g}, lr={cfg['learning_rate']:g}) vs SGD on "
        f"task 2(a), n_train={cfg['n_train']}; mean over {len(run.seeds)} seeds, "
        "band: min-max",
        fontsize=10,
    )
    run.save_figure(fig, "training_curves.png")

    # first-layer weights of seed 0: plain SGD vs beta-LASSO (the selected lam)
    shown = [lam for lam in (0.0, summary["selected_lam"]) if lam in lams]
    fig, axes = plt.subplots(1, len(shown), figsize=(5.5 * len(shown), 4.5), squeeze=False)
    for ax, lam in zip(axes[0], shown, strict=True):
        w = np.abs(out["fc_w1"][lams.index(lam), 0])
        im = ax.imshow(w, aspect="auto", cmap="magma", interpolation="nearest")
        ax.axvspan(out["window"][0] - 0.5, out["window"][1] - 0.5, fill=False, ec="c", lw=1.5)
        ax.set_title(
            "plain SGD" if lam == 0 else f"beta-LASSO, lam={lam:g} (selected on validation)",
            fontsize=10,
        )
        ax.set_xlabel("input position (cyan: the task's window)")
        ax.set_ylabel("hidden unit (row of the dense first layer)")
        fig.colorbar(im, ax=ax, label="|w|")
    fig.suptitle(
        "First-layer weights of the fully connected net after training (seed 0)", fontsize=10
    )
    run.save_figure(fig, "first_layer_weights.png")


def table_from(cfg: dict, summary: dict) -> str:
    rows = [
        [
            "conv",
            "SGD",
            "-",
            common.fmt_mean_std(summary["conv_sgd"]["test_error"], ".3f"),
            "-",
            "-",
            "-",
            "-",
            "-",
        ]
    ]
    for entry in summary["fc"].values():
        lam = entry["lam"]
        gap = entry["gap_closed"]
        rows.append(
            [
                "FC",
                "SGD"
                if lam == 0
                else f"beta-LASSO lam={lam:g}"
                + (" (selected)" if lam == summary["selected_lam"] else ""),
                common.fmt_mean_std(entry["val_error"], ".3f"),
                common.fmt_mean_std(entry["test_error"], ".3f"),
                common.fmt_mean_std(entry["sparsity_w1"], ".3f"),
                common.fmt_mean_std(entry["locality"], ".3f"),
                common.fmt_mean_std(entry["task_window"], ".3f"),
                common.fmt_mean_std(entry["in_structure"], ".3f"),
                "-" if lam == 0 or gap is None else f"{gap:.2f}",
            ]
        )
    ch = summary["chance"]
    rows.append(
        [
            "FC",
            "at init (chance)",
            "-",
            "-",
            "0",
            f"{ch['locality_at_init']['mean']:.3f}",
            f"{ch['task_window_at_init']['mean']:.3f}",
            f"{ch['in_structure_at_init']['mean']:.3f}",
            "-",
        ]
    )
    return common.markdown_table(
        [
            "net",
            "training",
            "val error",
            "test error",
            "zeros in W1",
            "best-window share",
            "share on task window",
            "in conv structure",
            "gap closed",
        ],
        rows,
    )


def main(argv=None) -> dict:
    args = common.make_parser(__doc__).parse_args(argv)
    run = common.start_run(NAME, args, description=__doc__)
    cfg = settings(run.size)
    out = train_runs(cfg, run.seeds)
    summary = summarise(cfg, out)
    figures(run, cfg, summary, out)
    return run.finish(
        config=cfg,
        numbers=summary,
        table=table_from(cfg, summary),
        claims=claims_from(cfg, summary, run.size),
    )


if __name__ == "__main__":
    main()
