"""Emergence of locality (Ingrosso & Goldt, PNAS 2022): FCN receptive fields, NLGP vs clone.

A fully connected net trained on non-Gaussian 1-D fields learns localised receptive
fields; trained on their Gaussian clone it does not.

Data: two classes of periodic Gaussian fields on a ring of ``D`` sites that differ
only in their correlation length (``xi0`` vs ``xi1``), passed through
``erf(g z) / Z(g)`` with a large gain ``g`` (:func:`convjax.data.nlgp`), and the
Gaussian clone of that data: Gaussian inputs with exactly the same class
covariances (:func:`convjax.data.nlgp_clone`). Network: ``D -> K`` erf hidden units
``-> 1`` output, every layer fully connected, trained with plain SGD on the square
loss against labels ``+-1``, from a small initialisation of the first layer (the
feature-learning regime of the paper).

Measures, per hidden unit ``k`` with weights ``w_k`` of shape ``(D,)``: the inverse
participation ratio ``IPR = sum w**4 / (sum w**2)**2``
(:func:`convjax.measures.inverse_participation_ratio`; ``3/(D+2)`` for a random
Gaussian vector, :func:`convjax.measures.gaussian_ipr`) and the share of
``||w_k||^2`` in the best periodic window of ``window`` consecutive sites
(:func:`convjax.measures.best_window`); both averaged over the hidden units and
followed over training, mean and spread over seeds.

SGD samples minibatches from a fixed pool of pre-drawn minibatches (one
``fit_many`` "example" is a whole minibatch), a cheap stand-in for the paper's
online SGD on fresh samples.
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
import optax

from convjax import data, measures, nn, train

NAME = "emergence_of_locality"
DATASETS = ("nlgp", "clone")


def config_for(size: str) -> dict:
    """Every setting of the run, by size (``tiny`` / ``quick`` / ``full``)."""
    return {
        "d": common.pick(size, tiny=12, quick=40, full=40),
        "xi": [1.0, 3.0],
        "gain": 3.0,
        "hidden": common.pick(size, tiny=2, quick=8, full=8),
        "init_scale": 0.1,
        "lr": 0.5,
        "batch_size": common.pick(size, tiny=16, quick=64, full=64),
        "n_batches": common.pick(size, tiny=8, quick=256, full=512),
        "n_test": common.pick(size, tiny=64, quick=2048, full=4096),
        "steps": common.pick(size, tiny=20, quick=3000, full=10000),
        "eval_every": common.pick(size, tiny=10, quick=250, full=500),
        "window": common.pick(size, tiny=3, quick=5, full=5),
        "dtype": "float32",
    }


def model_for(cfg: dict) -> nn.Layer:
    """``(D, 1) -> flatten -> Dense(K) -> erf -> Dense(1)``; first layer ``std =
    init_scale / sqrt(D)``."""
    vs = jax.nn.initializers.variance_scaling
    return nn.serial(
        nn.Flatten(),
        nn.Dense(
            cfg["hidden"], w_init=vs(cfg["init_scale"] ** 2, "fan_in", "normal"), dtype=cfg["dtype"]
        ),
        nn.Erf,
        nn.Dense(1, w_init=vs(1.0, "fan_in", "normal"), dtype=cfg["dtype"]),
    )


def locality(w, window: int) -> dict:
    """Mean IPR and mean best-window share over the hidden units of ``w`` ``(K, D)``."""
    return {
        "ipr": jnp.mean(measures.inverse_participation_ratio(w)),
        "window_share": jnp.mean(measures.best_window(w, window)[0]),
    }


def make_fns(model, window: int):
    def outputs(params, x):
        return model.apply(params, x)[..., 0]

    def loss_fn(params, batch):
        x = batch["x"].reshape(-1, *batch["x"].shape[-2:])  # (1, B, D, 1) -> (B, D, 1)
        y = data.signed_labels(batch["y"].reshape(-1), x.dtype)
        return 0.5 * train.mse(outputs(params, x), y)

    def eval_fn(params, batch):
        acc = train.binary_accuracy(outputs(params, batch["x"]), batch["y"])
        return {"acc": acc, **locality(params[1]["w"], window)}

    return loss_fn, eval_fn


def main(argv=None) -> dict:
    args = common.make_parser(__doc__).parse_args(argv)
    run = common.start_run(NAME, args, description=__doc__)
    cfg = config_for(run.size)
    d, window = cfg["d"], cfg["window"]
    dtype = jnp.dtype(cfg["dtype"])
    gens = {"nlgp": data.nlgp, "clone": data.nlgp_clone}
    field = {"d": d, "xi": tuple(cfg["xi"]), "gain": cfg["gain"], "dtype": dtype}

    model = model_for(cfg)
    loss_fn, eval_fn = make_fns(model, window)
    keys = common.seed_keys(run.seeds)
    params0 = jax.jit(jax.vmap(lambda k: model.init(jax.random.fold_in(k, 0), (d, 1))[1]))(keys)
    at_init = jax.jit(jax.vmap(lambda p: locality(p[1]["w"], window)))(params0)
    sgd = optax.sgd(cfg["lr"])
    n_pool = cfg["n_batches"] * cfg["batch_size"]

    hist, final_w = {}, {}
    for j, name in enumerate(DATASETS):
        k_train, k_test = jax.random.split(jax.random.fold_in(jax.random.key(1000), j))
        pool = gens[name](k_train, n_pool, **field)
        test = gens[name](k_test, cfg["n_test"], **field)
        pool_data = {
            "x": pool.x.reshape(cfg["n_batches"], cfg["batch_size"], d, 1),
            "y": pool.y.reshape(cfg["n_batches"], cfg["batch_size"]),
        }
        run_keys = jax.vmap(lambda k, j=j: jax.random.fold_in(k, 1 + j))(keys)
        res = train.fit_many(
            loss_fn,
            params0,
            sgd,
            pool_data,
            run_keys,
            steps=cfg["steps"],
            batch_size=1,
            eval_every=cfg["eval_every"],
            eval_fn=eval_fn,
            eval_data={"x": test.x, "y": test.y},
            progress=False,
        )
        hist[name] = res.history
        final_w[name] = np.asarray(res.params[1]["w"])  # (seeds, K, D)

    # ---- numbers
    steps = np.concatenate([[0], hist["nlgp"]["step"]])
    ref_ipr = measures.gaussian_ipr(d)
    numbers = {
        "gaussian_ipr_reference": ref_ipr,
        "uniform_window_share": window / d,
        "init": {k: common.mean_std(v) for k, v in at_init.items()},
        "step": steps,
    }
    for name in DATASETS:
        h = hist[name]
        unit_ipr = np.asarray(measures.inverse_participation_ratio(final_w[name]))
        numbers[name] = {
            "final_test_acc": common.mean_std(h["eval_acc"][:, -1]),
            "final_train_loss": common.mean_std(h["loss"][:, -1]),
            "final_ipr": common.mean_std(h["eval_ipr"][:, -1]),
            "final_window_share": common.mean_std(h["eval_window_share"][:, -1]),
            "final_unit_ipr_seed0": unit_ipr[0],
            "share_of_units_above_2x_gaussian_ipr": common.mean_std(
                (unit_ipr > 2 * ref_ipr).mean(axis=1)
            ),
            "curve_ipr_per_seed": np.concatenate(
                [np.asarray(at_init["ipr"])[:, None], h["eval_ipr"]], 1
            ),
            "curve_window_share_per_seed": np.concatenate(
                [np.asarray(at_init["window_share"])[:, None], h["eval_window_share"]], 1
            ),
            "curve_test_acc": common.mean_std(h["eval_acc"]),
        }
        for key in ("ipr", "window_share"):
            numbers[name][f"curve_{key}"] = common.mean_std(numbers[name][f"curve_{key}_per_seed"])

    # ---- table
    f = common.fmt_mean_std
    rows = [
        ["initialisation (both)", "", f(numbers["init"]["ipr"]), f(numbers["init"]["window_share"])]
    ]
    for name, label in (("nlgp", f"NLGP, g={cfg['gain']:g}"), ("clone", "Gaussian clone")):
        n = numbers[name]
        rows.append([label, f(n["final_test_acc"]), f(n["final_ipr"]), f(n["final_window_share"])])
    rows.append(["random Gaussian reference", "", f"{ref_ipr:.3g}", f"{window / d:.3g} (flat)"])
    table = common.markdown_table(
        [
            "first-layer weights after training on",
            "test accuracy",
            "IPR (mean over units)",
            f"share of norm² in best {window}-site window",
        ],
        rows,
    )

    # ---- claims, decided by the numbers of this run
    nl, cl = numbers["nlgp"]["final_ipr"], numbers["clone"]["final_ipr"]
    factor = 1.5
    for name in DATASETS:
        numbers[name]["seeds_localised"] = int(
            np.sum(hist[name]["eval_ipr"][:, -1] > factor * ref_ipr)
        )
    n_seeds = len(run.seeds)
    gap = nl["mean"] - cl["mean"]
    se_gap = np.hypot(nl["std"] / np.sqrt(nl["n"]), cl["std"] / np.sqrt(cl["n"]))
    claims = [
        common.claim(
            "Ingrosso & Goldt: a fully connected net trained on the non-Gaussian fields "
            "(large gain) learns localised receptive fields.",
            f"final mean IPR {f(nl)} vs {ref_ipr:.3g} for a random Gaussian vector and "
            f"{f(numbers['init']['ipr'])} at initialisation; best-{window}-site-window share "
            f"{f(numbers['nlgp']['final_window_share'])}; seeds whose mean IPR ends above "
            f"{factor} x the reference: {numbers['nlgp']['seeds_localised']} of {n_seeds} "
            f"(rule: holds if the mean IPR over seeds ends above {factor} x the Gaussian "
            f"reference).",
            nl["mean"] > factor * ref_ipr,
        ),
        common.claim(
            "Ingrosso & Goldt: trained on the Gaussian clone (same covariance) it does not "
            "localise.",
            f"final mean IPR {f(cl)}, best-window share "
            f"{f(numbers['clone']['final_window_share'])}; seeds above {factor} x the "
            f"reference: {numbers['clone']['seeds_localised']} of {n_seeds} (rule: holds if "
            f"the mean IPR over seeds stays below {factor} x the Gaussian reference "
            f"{ref_ipr:.3g}).",
            cl["mean"] < factor * ref_ipr,
        ),
        common.claim(
            "Ingrosso & Goldt: localisation is driven by the higher-order (non-Gaussian) "
            "statistics: the NLGP-trained net is more localised than the clone-trained one.",
            f"IPR difference NLGP - clone {gap:.3g} (rule: holds if above 2 standard errors "
            f"of the difference, {2 * se_gap:.2g}).",
            gap > 2 * se_gap,
        ),
    ]

    plot_weights(run, cfg, final_w)
    plot_curves(run, cfg, numbers)
    return run.finish(config=cfg, numbers=numbers, table=table, claims=claims)


def plot_weights(run, cfg, final_w):
    """Heatmap of the first-layer weights of seed 0, one row per hidden unit,
    rows sorted by the position of their best window, each row scaled to max |w| = 1."""
    fig, axes = plt.subplots(1, 2, figsize=(11, 3.6), sharey=True)
    for ax, name, title in zip(
        axes, DATASETS, (f"NLGP (g={cfg['gain']:g})", "Gaussian clone"), strict=True
    ):
        w = final_w[name][0]
        start = np.asarray(measures.best_window(w, cfg["window"])[1])
        w = w[np.argsort(start, kind="stable")]
        w = w / np.max(np.abs(w), axis=1, keepdims=True)
        im = ax.imshow(w, aspect="auto", cmap="RdBu_r", vmin=-1, vmax=1, interpolation="nearest")
        ax.set(title=f"trained on {title}, seed 0", xlabel="input site i")
    axes[0].set_ylabel("hidden unit (sorted by best window)")
    fig.colorbar(im, ax=axes, label="w / max|w| per unit")
    run.save_figure(fig, "weights_heatmap.png")


def plot_curves(run, cfg, numbers):
    steps = np.asarray(numbers["step"])
    fig, axes = plt.subplots(1, 3, figsize=(14, 3.8))
    panels = (
        ("curve_ipr", "IPR (mean over hidden units)"),
        ("curve_window_share", f"share of norm² in best {cfg['window']}-site window"),
        ("curve_test_acc", "test accuracy"),
    )
    for ax, (key, label) in zip(axes, panels, strict=True):
        for name, col, lab in (
            ("nlgp", "tab:blue", f"NLGP g={cfg['gain']:g}"),
            ("clone", "tab:orange", "Gaussian clone"),
        ):
            m = np.asarray(numbers[name][key]["mean"])
            s = np.asarray(numbers[name][key]["std"])
            x = steps if len(m) == len(steps) else steps[1:]
            ax.plot(x, m, color=col, label=lab + " (mean ± std)")
            ax.fill_between(x, m - s, m + s, color=col, alpha=0.2)
            for r, curve in enumerate(numbers[name].get(f"{key}_per_seed", [])):
                ax.plot(
                    x,
                    np.asarray(curve),
                    color=col,
                    lw=0.7,
                    ls=":",
                    label=f"{lab}, each seed" if r == 0 else None,
                )
        ax.set(xlabel="SGD step", ylabel=label)
    axes[0].axhline(
        numbers["gaussian_ipr_reference"], color="gray", ls="--", label="random Gaussian 3/(D+2)"
    )
    axes[1].axhline(numbers["uniform_window_share"], color="gray", ls=":", label="flat weights")
    for ax in axes:
        ax.legend(fontsize=8)
    fig.suptitle(
        f"FCN D={cfg['d']} -> K={cfg['hidden']} erf -> 1, xi={cfg['xi']}, "
        f"mean ± std over {len(run.seeds)} seeds",
        y=1.03,
    )
    run.save_figure(fig, "ipr_vs_step.png")


if __name__ == "__main__":
    main()
