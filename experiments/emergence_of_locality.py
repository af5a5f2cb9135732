"""Emergence of locality (Ingrosso & Goldt, PNAS 2022): FCN receptive fields, online SGD.

A fully connected net trained on non-Gaussian 1-D fields learns localised receptive
fields; trained on their Gaussian clone it does not.

Data: two classes of periodic Gaussian fields on a ring of ``D`` sites that differ
only in their correlation length (``xi0`` vs ``xi1``), passed through
``erf(g z) / Z(g)`` (:func:`convjax.data.nlgp`), and the Gaussian clone of that data:
Gaussian inputs with exactly the same class covariances
(:func:`convjax.data.nlgp_clone`). Network: ``D -> K`` erf hidden units ``-> 1``, fully
connected, plain SGD on the square loss against labels ``+-1``, from a small
initialisation of the first layer (the feature-learning regime of the paper).

Stable training: ONLINE SGD. Every step draws a FRESH minibatch of ``batch`` examples
from the generator (inside the compiled step, from a key that is a function of the
run and the step), as in the paper's online analysis; no example is seen twice, so
there is no training pool to overfit and the gradient noise is set by the batch
size alone. (A fixed pool of minibatches, the previous set-up, let the accuracy swing
between 0.55 and 0.95 from one evaluation to the next.) Each seed has its own
initialisation, its own stream of training examples and its own test set.

Measures, per hidden unit with weights ``w`` of shape ``(D,)``: the inverse
participation ratio ``IPR = sum w**4 / (sum w**2)**2``. Reference: the IPR of RANDOM
Gaussian vectors of length ``D`` (``n_reference`` draws, numpy seed 0; its mean is
``3/(D+2)``). A unit is LOCALISED when its IPR exceeds the 99th percentile of the
reference; a seed is localised when at least half of its units are. Claims compare
the trained nets with the same seeds at initialisation (paired) and NLGP with clone.

Fractions of localised units (all seeds' units pooled) and of localised seeds get
Clopper-Pearson intervals; units of one seed are not independent, so the units' interval
is narrower than a seed-level one (the per-seed fractions with t-intervals are in
``numbers``). Sensitivity: the same after training on the NLGP for every (batch size,
gain) in a grid (3 x 3 values in the full run), the rest as above.
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
import optax

from convjax import data, measures, nn, stats, train

NAME = "emergence_of_locality"
DATASETS = ("nlgp", "clone")
GENERATORS = {"nlgp": data.nlgp, "clone": data.nlgp_clone}
RATIO_NEEDED = 1.5  # "localised": mean IPR at least this many times its value at init


def config_for(size: str) -> dict:
    """Every setting of the run, by size (``tiny`` / ``quick`` / ``full``)."""
    return {
        "d": common.pick(size, tiny=12, quick=40, full=40),
        "xi": [1.0, 3.0],
        "gain": 3.0,
        "hidden": common.pick(size, tiny=2, quick=8, full=8),
        "init_scale": 0.1,
        "lr": 0.5,
        "batch": common.pick(size, tiny=16, quick=256, full=512),
        "n_test": common.pick(size, tiny=64, quick=1024, full=2048),
        "steps": common.pick(size, tiny=20, quick=1500, full=6000),
        "eval_every": common.pick(size, tiny=10, quick=250, full=500),
        "n_reference": common.pick(size, tiny=2000, quick=100_000, full=100_000),
        "reference_quantile": 0.99,
        "sensitivity": {
            "batch": common.pick(size, tiny=[16], quick=[16, 256], full=[16, 128, 512]),
            "gain": common.pick(size, tiny=[0.5, 3.0], quick=[0.5, 3.0], full=[0.5, 1.5, 3.0]),
            "steps": common.pick(size, tiny=20, quick=400, full=3000),
        },
        "training": "online SGD: a fresh minibatch from the generator every step",
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


def reference_ipr(d: int, n: int, q: float) -> dict:
    """IPR of ``n`` random standard Gaussian vectors of length ``d`` (numpy seed 0):
    mean, the ``q`` quantile (the localisation threshold) and the closed-form mean."""
    w = np.random.default_rng(0).standard_normal((n, d))
    ipr = np.sum(w**4, axis=1) / np.sum(w**2, axis=1) ** 2
    return {
        "mean": float(ipr.mean()),
        "quantile": float(np.quantile(ipr, q)),
        "q": q,
        "n": n,
        "closed_form_mean": measures.gaussian_ipr(d),
    }


def make_fns(model, cfg: dict, name: str, gain: float, batch: int):
    """``loss_fn`` (a fresh minibatch per step from the generator, keyed by the step's
    integer) and ``eval_fn`` (test accuracy, unit IPRs)."""
    field = {"d": cfg["d"], "xi": tuple(cfg["xi"]), "gain": gain, "dtype": jnp.dtype(cfg["dtype"])}
    gen = functools.partial(GENERATORS[name], n=batch, **field)

    def outputs(params, x):
        return model.apply(params, x)[..., 0]

    def loss_fn(params, b):
        x, y = gen(jax.random.wrap_key_data(b["key"][0]))
        return 0.5 * train.mse(outputs(params, x), data.signed_labels(y, x.dtype))

    def eval_fn(params, test):
        acc = train.binary_accuracy(outputs(params, test["x"]), test["y"])
        return {
            "acc": acc,
            "mean_ipr": jnp.mean(measures.inverse_participation_ratio(params[1]["w"])),
        }

    return loss_fn, eval_fn, field


def step_keys(keys, steps: int):
    """``(n_runs, steps, 2)`` raw keys: the stream of minibatch keys of each run (one
    fresh key per step; fit_many samples them without replacement, one per step)."""
    return jax.vmap(lambda k: jax.random.key_data(jax.random.split(k, steps)))(keys)


def train_nets(cfg: dict, seeds, name: str, gain: float, batch: int, steps: int, salt: int):
    """Online SGD of every seed on ``name`` data; returns history and final params."""
    model = model_for(cfg)
    loss_fn, eval_fn, field = make_fns(model, cfg, name, gain, batch)
    keys = common.seed_keys(seeds)
    params0 = jax.jit(jax.vmap(lambda k: model.init(jax.random.fold_in(k, 0), (cfg["d"], 1))[1]))(
        keys
    )
    run_keys = jax.vmap(lambda k: jax.random.fold_in(k, salt))(keys)
    test_keys = jax.vmap(lambda k: jax.random.fold_in(k, salt + 1))(keys)
    test = jax.jit(jax.vmap(lambda k: GENERATORS[name](k, cfg["n_test"], **field)))(test_keys)
    res = train.fit_many(
        loss_fn,
        params0,
        optax.sgd(cfg["lr"]),
        {"key": step_keys(jax.vmap(lambda k: jax.random.fold_in(k, 7))(run_keys), steps)},
        run_keys,
        steps=steps,
        batch_size=1,
        eval_every=min(cfg["eval_every"], steps),
        eval_fn=eval_fn,
        eval_data={"x": test.x, "y": test.y},
        progress=False,
        per_run_data=True,
    )
    init_ipr = np.asarray(measures.inverse_participation_ratio(params0[1]["w"]))  # (S, K)
    w = np.asarray(res.params[1]["w"])
    return {
        "history": res.history,
        "w": w,
        "init_unit_ipr": init_ipr,
        "unit_ipr": np.asarray(measures.inverse_participation_ratio(w)),
    }


def seed_stats(unit_ipr, threshold: float) -> dict:
    """Per seed: mean unit IPR, fraction of localised units, localised (>= half)."""
    frac = (np.asarray(unit_ipr) > threshold).mean(axis=-1)
    return {"mean_ipr": np.asarray(unit_ipr).mean(axis=-1), "frac": frac, "seed": frac >= 0.5}


CLAIMS = {
    "nlgp_vs_init": stats.Claim(
        "Ingrosso & Goldt: trained on the NLGP, the FCN's receptive fields localise "
        f"(mean IPR at least {RATIO_NEEDED:g} x its value at initialisation)",
        "mean unit IPR after training / at initialisation, per seed",
        "paired_ratio",
        "above",
        RATIO_NEEDED,
        against="the same seeds at initialisation",
    ),
    "clone_vs_init": stats.Claim(
        f"Trained on the Gaussian clone it does not (mean IPR below {RATIO_NEEDED:g} x "
        "its value at initialisation)",
        "mean unit IPR after training / at initialisation, per seed",
        "paired_ratio",
        "below",
        RATIO_NEEDED,
        against="the same seeds at initialisation",
    ),
    "nlgp_vs_clone": stats.Claim(
        "Localisation is driven by the non-Gaussian statistics: NLGP-trained units are more "
        "localised than clone-trained ones",
        "mean unit IPR, NLGP minus clone, per seed (same initialisation)",
        "difference",
        "above",
        0.0,
        against="the clone-trained net of the same seed",
    ),
    "seeds_localise": stats.Claim(
        "Localisation is the typical outcome: more than half of the seeds localise "
        "(at least half of their units above the random-vector threshold)",
        "seed localised (0/1), NLGP",
        "proportion",
        "above",
        0.5,
    ),
    "learns": stats.Claim(
        "Baseline: the net learns the NLGP task (test accuracy above 0.5, chance)",
        "final test accuracy on NLGP, per seed",
        "mean",
        "above",
        0.5,
    ),
}


def main(argv=None) -> dict:
    args = common.make_parser(__doc__).parse_args(argv)
    run = common.start_run(NAME, args, description=__doc__)
    cfg = config_for(run.size)
    ref = reference_ipr(cfg["d"], cfg["n_reference"], cfg["reference_quantile"])
    thr = ref["quantile"]

    runs = {
        name: train_nets(
            cfg, run.seeds, name, cfg["gain"], cfg["batch"], cfg["steps"], 10 * (j + 1)
        )
        for j, name in enumerate(DATASETS)
    }
    init = seed_stats(runs["nlgp"]["init_unit_ipr"], thr)  # same init for both data sets
    final = {n: seed_stats(r["unit_ipr"], thr) for n, r in runs.items()}
    numbers: dict = {
        "reference_ipr": ref,
        "step": np.concatenate([[0], runs["nlgp"]["history"]["step"]]),
        "init": {
            "mean_ipr": common.ci(init["mean_ipr"]),
            "units_localised": common.interval_dict(
                stats.proportion_interval((runs["nlgp"]["init_unit_ipr"] > thr).ravel())
            ),
            "seeds_localised": common.interval_dict(stats.proportion_interval(init["seed"])),
        },
    }
    for name, r in runs.items():
        h, f = r["history"], final[name]
        curve = np.concatenate([r["init_unit_ipr"].mean(axis=1)[:, None], h["eval_mean_ipr"]], 1)
        numbers[name] = {
            "final_test_acc": common.ci(h["eval_acc"][:, -1]),
            "final_train_loss": common.ci(h["loss"][:, -1]),
            "mean_ipr": common.ci(f["mean_ipr"]),
            "ipr_ratio_to_init": common.interval_dict(
                stats.paired_ratio_interval(f["mean_ipr"], init["mean_ipr"])
            ),
            "frac_localised_units_per_seed": common.ci(f["frac"]),
            "seeds_localised": common.interval_dict(stats.proportion_interval(f["seed"])),
            "units_localised": common.interval_dict(
                stats.proportion_interval((r["unit_ipr"] > thr).ravel())
            ),
            "unit_ipr_per_seed": r["unit_ipr"],
            "curve_mean_ipr_per_seed": curve,
            "curve_test_acc_per_seed": h["eval_acc"],
        }
    numbers["sensitivity"] = sensitivity(cfg, run.seeds, thr)

    verdicts = [
        (stats.evaluate(CLAIMS["nlgp_vs_init"], final["nlgp"]["mean_ipr"], init["mean_ipr"]), ""),
        (stats.evaluate(CLAIMS["clone_vs_init"], final["clone"]["mean_ipr"], init["mean_ipr"]), ""),
        (
            stats.evaluate(
                CLAIMS["nlgp_vs_clone"], final["nlgp"]["mean_ipr"], final["clone"]["mean_ipr"]
            ),
            "",
        ),
        (
            stats.evaluate(CLAIMS["seeds_localise"], final["nlgp"]["seed"]),
            f"at initialisation {int(init['seed'].sum())} of {len(init['seed'])} seeds; clone "
            f"{int(final['clone']['seed'].sum())}; unit threshold: IPR > {thr:.3g} (the "
            f"{ref['q']:.0%} quantile of {ref['n']} random Gaussian vectors)",
        ),
        (stats.evaluate(CLAIMS["learns"], runs["nlgp"]["history"]["eval_acc"][:, -1]), ""),
    ]
    claims = [common.verdict_claim(v, m) for v, m in verdicts]
    plot_weights(run, cfg, runs, thr)
    plot_curves(run, cfg, numbers)
    return run.finish(config=cfg, numbers=numbers, table=table_from(cfg, numbers), claims=claims)


def sensitivity(cfg: dict, seeds, thr: float) -> dict:
    """Fraction of localised units (t-interval over seeds) and of localised seeds
    (Clopper-Pearson) after online SGD on the NLGP, per (batch, gain)."""
    sens = cfg["sensitivity"]
    out: dict = {"cells": []}
    for b in sens["batch"]:
        for g in sens["gain"]:
            r = train_nets(cfg, seeds, "nlgp", g, b, sens["steps"], 100)
            f = seed_stats(r["unit_ipr"], thr)
            i = seed_stats(r["init_unit_ipr"], thr)
            out["cells"].append(
                {
                    "batch": b,
                    "gain": g,
                    "units_localised": common.interval_dict(
                        stats.proportion_interval((r["unit_ipr"] > thr).ravel())
                    ),
                    "seeds_localised": common.interval_dict(stats.proportion_interval(f["seed"])),
                    "ipr_ratio_to_init": common.interval_dict(
                        stats.paired_ratio_interval(f["mean_ipr"], i["mean_ipr"])
                    ),
                    "test_acc": common.ci(r["history"]["eval_acc"][:, -1]),
                }
            )
    return out


def table_from(cfg: dict, numbers: dict) -> str:
    f = common.fmt_ci
    rows = [
        [
            "initialisation (both)",
            "",
            f(numbers["init"]["mean_ipr"]),
            "",
            f(numbers["init"]["units_localised"]),
            f(numbers["init"]["seeds_localised"]),
        ]
    ]
    for name, label in (("nlgp", f"NLGP, g={cfg['gain']:g}"), ("clone", "Gaussian clone")):
        n = numbers[name]
        rows.append(
            [
                label,
                f(n["final_test_acc"]),
                f(n["mean_ipr"]),
                f(n["ipr_ratio_to_init"]),
                f(n["units_localised"]),
                f(n["seeds_localised"]),
            ]
        )
    ref = numbers["reference_ipr"]
    rows.append(
        [
            f"{ref['n']} random Gaussian vectors",
            "",
            f"{ref['mean']:.3g} (3/(D+2) = {ref['closed_form_mean']:.3g})",
            "",
            f"threshold: {ref['q']:.0%} quantile {ref['quantile']:.3g}",
            "",
        ]
    )
    main = common.markdown_table(
        [
            f"first layer after {cfg['steps']} online SGD steps, batch {cfg['batch']}",
            "test accuracy",
            "mean unit IPR",
            "IPR / at init",
            "fraction of units localised (all seeds' units pooled)",
            "fraction of seeds localised",
        ],
        rows,
    )
    sens = numbers["sensitivity"]["cells"]
    sens_rows = [
        [
            c["batch"],
            f"{c['gain']:g}",
            f(c["test_acc"]),
            f(c["ipr_ratio_to_init"]),
            f(c["units_localised"]),
            f(c["seeds_localised"]),
        ]
        for c in sens
    ]
    sens_table = common.markdown_table(
        [
            "batch",
            "gain",
            "test accuracy",
            "IPR / at init",
            "fraction of units localised",
            "fraction of seeds localised",
        ],
        sens_rows,
    )
    return (
        main
        + f"\n\nSensitivity (NLGP, {cfg['sensitivity']['steps']} online SGD steps, lr "
        + f"{cfg['lr']:g}):\n\n"
        + sens_table
    )


def plot_weights(run, cfg, runs, thr):
    """Heatmaps of the first-layer weights of EVERY seed (one panel per seed and data
    set), rows sorted by the position of their largest weight, each scaled to max |w| = 1."""
    n_seeds = len(run.seeds)
    fig, axes = plt.subplots(
        2, n_seeds, figsize=(1.6 * n_seeds + 1, 4.8), sharex=True, sharey=True, squeeze=False
    )
    im = None
    for r, name in enumerate(DATASETS):
        for s in range(n_seeds):
            w = runs[name]["w"][s]
            w = w[np.argsort(np.argmax(np.abs(w), axis=1), kind="stable")]
            w = w / np.max(np.abs(w), axis=1, keepdims=True)
            ax = axes[r, s]
            im = ax.imshow(
                w, aspect="auto", cmap="RdBu_r", vmin=-1, vmax=1, interpolation="nearest"
            )
            ipr = np.asarray(measures.inverse_participation_ratio(runs[name]["w"][s]))
            ax.set_title(f"seed {s}: {int((ipr > thr).sum())}/{len(ipr)}", fontsize=7)
            ax.tick_params(labelsize=6)
        axes[r, 0].set_ylabel(f"{name}\nunits", fontsize=8)
    fig.colorbar(im, ax=axes, label="w / max|w| per unit")
    fig.suptitle(
        f"First-layer weights after training, every seed (title: localised units / all); "
        f"top NLGP g={cfg['gain']:g}, bottom Gaussian clone",
        fontsize=9,
    )
    run.save_figure(fig, "weights_heatmap.png")


def plot_curves(run, cfg, numbers):
    steps = np.asarray(numbers["step"])
    fig, axes = plt.subplots(1, 2, figsize=(11, 3.8))
    for name, col in (("nlgp", "tab:blue"), ("clone", "tab:orange")):
        for key, ax, x in (
            ("curve_mean_ipr_per_seed", axes[0], steps),
            ("curve_test_acc_per_seed", axes[1], steps[1:]),
        ):
            curves = np.asarray(numbers[name][key])
            for r, c in enumerate(curves):
                ax.plot(x, c, color=col, lw=0.8, alpha=0.6, label=name if r == 0 else None)
    ref = numbers["reference_ipr"]
    axes[0].axhline(ref["mean"], color="gray", ls="--", label="random Gaussian vectors: mean")
    axes[0].axhline(ref["quantile"], color="gray", ls=":", label=f"{ref['q']:.0%} quantile")
    axes[0].set(xlabel="SGD step", ylabel="mean unit IPR", yscale="log")
    axes[1].set(xlabel="SGD step", ylabel="test accuracy")
    for ax in axes:
        ax.legend(fontsize=8)
    fig.suptitle(
        f"FCN D={cfg['d']} -> K={cfg['hidden']} erf -> 1, online SGD, batch {cfg['batch']}: "
        f"every seed",
        y=1.02,
    )
    run.save_figure(fig, "ipr_vs_step.png")


if __name__ == "__main__":
    main()
