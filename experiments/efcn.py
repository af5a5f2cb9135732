"""eFCN (d'Ascoli et al., NeurIPS 2019) in 1-D: a CNN relaxed into its dense twin at t_w.

A CNN trained for t_w steps is embedded exactly into its fully connected twin and
trained on as an FCN with plain SGD.

Protocol. A small CNN, ``Conv1D -> relu -> Conv1D -> relu -> flatten -> dense``, is
trained with plain SGD on a local-pattern task from :func:`convjax.data.local_pattern`.
At each relax time ``t_w`` its two conv layers are replaced by their dense twins
(:func:`convjax.nn.conv_to_dense`: the matrices ``T(w)``, tied weights copied,
structural zeros explicit), which compute the same function (checked on the test
set), and the resulting fully connected net (the *eFCN*) is trained on with plain
SGD for ``fcn_steps`` more steps, every weight free. References: the CNN trained for
the whole budget ``max(t_w) + fcn_steps`` steps, and the same fully connected net
trained from scratch (its usual dense initialisation) for ``fcn_steps`` steps. Over
the eFCN's training we follow the off-structure share of its weight norm (the share
of ``||W||^2`` at entries a convolution must hold at zero,
:func:`convjax.nn.off_structure_share`), pooled over its two layers.

All seeds (and, in the FCN stage, all relax times) run vmapped through
:func:`convjax.train.fit_many`.
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

from convjax import data, nn, train

NAME = "efcn"


def config_for(size: str) -> dict:
    """Every setting of the run, by size (``tiny`` / ``quick`` / ``full``)."""
    return {
        "task": {
            "generator": "convjax.data.local_pattern",
            "d": common.pick(size, tiny=12, quick=24, full=24),
            "k": 3,
            "position": "random",
            "rule": "motif",
            "noise": 0.5,
        },
        "n_train": common.pick(size, tiny=64, quick=256, full=256),
        "n_test": common.pick(size, tiny=128, quick=1024, full=4096),
        "channels": common.pick(size, tiny=2, quick=6, full=6),
        "kernel_size": 3,
        "padding": "valid",
        "lr": 0.2,
        "batch_size": common.pick(size, tiny=16, quick=32, full=32),
        "eval_every": common.pick(size, tiny=5, quick=50, full=50),
        "t_w": common.pick(
            size, tiny=[0, 5, 10], quick=[0, 50, 200, 800], full=[0, 50, 200, 800, 2400]
        ),
        "fcn_steps": common.pick(size, tiny=10, quick=1500, full=3000),
        "fcn_eval_every": common.pick(size, tiny=5, quick=100, full=100),
        "dtype": "float32",
    }


# ---- models ------------------------------------------------------------------------


def models(cfg: dict):
    """The CNN, its fully connected twin (``nn.twin`` of the whole model: both conv
    layers become their dense twins, the readout stays), and the structures of the
    CNN's layers (``nn.structures``, aligned with its params).

    He-normal init for the relu layers (``Var = 2 / fan_in``; the dense twin's fan is
    its full input size, so the FCN from scratch gets the usual dense He init),
    LeCun-normal for the readout.
    """
    c, k, pad = cfg["channels"], cfg["kernel_size"], cfg["padding"]
    vs = jax.nn.initializers.variance_scaling
    he, lecun = vs(2.0, "fan_in", "normal"), vs(1.0, "fan_in", "normal")
    conv1 = nn.Conv1D(c, k, padding=pad, w_init=he, dtype=cfg["dtype"])
    conv2 = nn.Conv1D(c, k, padding=pad, w_init=he, dtype=cfg["dtype"])
    head = nn.Dense(1, w_init=lecun, dtype=cfg["dtype"])
    cnn = nn.serial(conv1, nn.Relu, conv2, nn.Relu, nn.Flatten(), head)
    fcn = nn.twin(cnn, "dense")
    return cnn, fcn, nn.structures(cnn, (cfg["task"]["d"], 1))


def embed(cnn_params, ss):
    """CNN params -> the eFCN's params (the same function): conv layers -> dense twins."""
    return nn.move(cnn_params, ss, "dense")


def pooled_off_share(fcn_params, ss):
    """Off-structure share of the squared norm of both dense layers together."""
    s1, s2 = ss[0], ss[2]
    w1, w2 = fcn_params[0]["w"], fcn_params[2]["w"]
    n1, n2 = jnp.sum(w1**2), jnp.sum(w2**2)
    off = (
        nn.off_structure_share(fcn_params[0], s1) * n1
        + nn.off_structure_share(fcn_params[2], s2) * n2
    )
    return off / (n1 + n2)


# ---- training ----------------------------------------------------------------------


def make_fns(model, ss=None):
    """``loss_fn(params, batch)`` and ``eval_fn(params, batch)`` for ``model``."""

    def logits(params, x):
        return model.apply(params, x)[..., 0]

    def loss_fn(params, batch):
        return train.logistic_loss(logits(params, batch["x"]), batch["y"])

    def eval_fn(params, batch):
        out = {"err": 1.0 - train.binary_accuracy(logits(params, batch["x"]), batch["y"])}
        if ss is not None:
            out["off_share"] = pooled_off_share(params, ss)
        return out

    return loss_fn, eval_fn


def stack_runs(tree_list):
    """A list of pytrees with leading seeds axes -> one pytree, the lists concatenated."""
    return jax.tree.map(lambda *a: np.concatenate([np.asarray(v) for v in a], axis=0), *tree_list)


def main(argv=None) -> dict:
    args = common.make_parser(__doc__).parse_args(argv)
    run = common.start_run(NAME, args, description=__doc__)
    cfg = config_for(run.size)
    n_seeds = len(run.seeds)
    dtype = jnp.dtype(cfg["dtype"])
    task = {k: v for k, v in cfg["task"].items() if k != "generator"}

    # data: one draw per set, the same for every seed (seeds vary init and minibatches)
    k_train, k_test = jax.random.split(jax.random.key(1000))
    train_set = data.local_pattern(k_train, cfg["n_train"], dtype=dtype, **task)
    test_set = data.local_pattern(k_test, cfg["n_test"], dtype=dtype, **task)
    train_data = {"x": train_set.x, "y": train_set.y}
    test_data = {"x": test_set.x, "y": test_set.y}

    cnn, fcn, ss = models(cfg)
    in_shape = (cfg["task"]["d"], 1)
    keys = common.seed_keys(run.seeds)
    init_keys = jax.vmap(lambda k: jax.random.fold_in(k, 0))(keys)
    cnn_params = jax.jit(jax.vmap(lambda k: cnn.init(k, in_shape)[1]))(init_keys)
    sgd = optax.sgd(cfg["lr"])
    fit_kw = {"batch_size": cfg["batch_size"], "eval_data": test_data, "progress": False}

    # ---- stage 1: the CNN, trained in segments that end at each relax time t_w
    t_ws = sorted(set(cfg["t_w"]))
    budget = max(t_ws) + cfg["fcn_steps"]
    cnn_loss, cnn_eval = make_fns(cnn)
    snapshots, hist_steps, hist_err = {0: cnn_params}, [], []
    err_at_tw = {0: None}
    bounds = [t for t in t_ws if t > 0] + [budget]
    params, done = cnn_params, 0
    for seg, end in enumerate(bounds):
        seg_keys = jax.vmap(lambda k, s=seg: jax.random.fold_in(k, 1 + s))(keys)
        res = train.fit_many(
            cnn_loss,
            params,
            sgd,
            train_data,
            seg_keys,
            steps=end - done,
            eval_every=cfg["eval_every"],
            eval_fn=cnn_eval,
            **fit_kw,
        )
        params = res.params
        hist_steps.append(res.history["step"] + done)
        hist_err.append(res.history["eval_err"])
        done = end
        snapshots[end] = params
        err_at_tw[end] = res.history["eval_err"][:, -1]
    cnn_steps = np.concatenate(hist_steps)
    cnn_err = np.concatenate(hist_err, axis=1)  # (seeds, n_evals)
    cnn_init_err = jax.jit(jax.vmap(cnn_eval, in_axes=(0, None)))(cnn_params, test_data)
    err_at_tw[0] = np.asarray(cnn_init_err["err"])

    # ---- the embedding: dense twins, same function (checked on the test set)
    embed_runs = jax.jit(jax.vmap(lambda p: embed(p, ss)))

    @jax.jit
    def output_gap(p_cnn, p_fcn, x):
        out_cnn = jax.vmap(cnn.apply, in_axes=(0, None))(p_cnn, x)
        out_fcn = jax.vmap(fcn.apply, in_axes=(0, None))(p_fcn, x)
        return jnp.max(jnp.abs(out_cnn - out_fcn)), jnp.max(jnp.abs(out_cnn))

    embedded = [embed_runs(snapshots[t]) for t in t_ws]
    max_rel_diff = 0.0
    for t, p_fcn in zip(t_ws, embedded, strict=True):
        diff, scale = output_gap(snapshots[t], p_fcn, test_data["x"])
        max_rel_diff = max(max_rel_diff, float(diff) / max(float(scale), 1e-30))
    embed_tol = 1e-5 if dtype == jnp.float32 else 1e-12

    # ---- stage 2: every eFCN and the FCN from scratch, all vmapped in one call
    scratch = jax.jit(jax.vmap(lambda k: fcn.init(k, in_shape)[1]))(init_keys)
    fcn_params = stack_runs(embedded + [scratch])
    n_groups = len(t_ws) + 1
    run_keys = jnp.concatenate(
        [jax.vmap(lambda k, g=g: jax.random.fold_in(k, 100 + g))(keys) for g in range(n_groups)]
    )
    fcn_loss, fcn_eval = make_fns(fcn, ss)
    init_off = np.asarray(jax.jit(jax.vmap(lambda p: pooled_off_share(p, ss)))(fcn_params))
    res = train.fit_many(
        fcn_loss,
        fcn_params,
        sgd,
        train_data,
        run_keys,
        steps=cfg["fcn_steps"],
        eval_every=cfg["fcn_eval_every"],
        eval_fn=fcn_eval,
        **fit_kw,
    )
    fcn_steps = res.history["step"]
    fcn_err = res.history["eval_err"].reshape(n_groups, n_seeds, -1)
    fcn_off = res.history["eval_off_share"].reshape(n_groups, n_seeds, -1)
    init_off = init_off.reshape(n_groups, n_seeds)

    # ---- numbers
    cnn_final = common.mean_std(cnn_err[:, -1])
    scratch_final = common.mean_std(fcn_err[-1, :, -1])
    scratch_off = common.mean_std(fcn_off[-1, :, -1])
    per_tw = {}
    for g, t in enumerate(t_ws):
        per_tw[str(t)] = {
            "cnn_err_at_t_w": common.mean_std(err_at_tw[t]),
            "efcn_final_err": common.mean_std(fcn_err[g, :, -1]),
            "efcn_final_off_share": common.mean_std(fcn_off[g, :, -1]),
            "efcn_max_off_share": common.mean_std(fcn_off[g].max(axis=-1)),
            "off_share_at_embedding": common.mean_std(init_off[g]),
        }
    numbers = {
        "embedding_max_relative_output_diff": max_rel_diff,
        "cnn_full_budget_steps": budget,
        "cnn_full_budget_err": cnn_final,
        "fcn_scratch_err": scratch_final,
        "fcn_scratch_final_off_share": scratch_off,
        "fcn_scratch_off_share_at_init": common.mean_std(init_off[-1]),
        "per_t_w": per_tw,
        "curves": {
            "cnn_step": cnn_steps,
            "cnn_err": common.mean_std(cnn_err),
            "fcn_step": fcn_steps,
            "efcn_err": {str(t): common.mean_std(fcn_err[g]) for g, t in enumerate(t_ws)},
            "efcn_off_share": {str(t): common.mean_std(fcn_off[g]) for g, t in enumerate(t_ws)},
            "scratch_err": common.mean_std(fcn_err[-1]),
            "scratch_off_share": common.mean_std(fcn_off[-1]),
        },
    }

    # ---- table
    f = common.fmt_mean_std
    rows = [
        [
            f"eFCN t_w={t}",
            f(per_tw[str(t)]["cnn_err_at_t_w"]),
            f(per_tw[str(t)]["efcn_final_err"]),
            f(per_tw[str(t)]["efcn_final_off_share"]),
        ]
        for t in t_ws
    ]
    rows.append([f"CNN, {budget} steps", "", f(cnn_final), "0 (conv)"])
    rows.append(
        [f"FCN from scratch, {cfg['fcn_steps']} steps", "", f(scratch_final), f(scratch_off)]
    )
    table = common.markdown_table(
        ["model", "CNN test error at t_w", "final test error", "final off-structure share"], rows
    )

    # ---- claims, decided by the numbers of this run
    def se(stats):
        return stats["std"] / np.sqrt(stats["n"])

    late = [t for t in t_ws if t > 0]
    gaps = {t: cnn_final["mean"] - per_tw[str(t)]["efcn_final_err"]["mean"] for t in late}
    margins = {t: 2 * np.hypot(se(cnn_final), se(per_tw[str(t)]["efcn_final_err"])) for t in late}
    better = [t for t in late if gaps[t] > margins[t]]
    claims = [
        common.claim(
            "The CNN embeds exactly into its fully connected twin (identical outputs).",
            f"largest |CNN(x) - eFCN(x)| / max|CNN(x)| over all t_w, seeds and the test "
            f"set: {max_rel_diff:.2g} (rule: below {embed_tol:g} in {cfg['dtype']}).",
            max_rel_diff < embed_tol,
        ),
        common.claim(
            "d'Ascoli et al.: an eFCN relaxed from the CNN at some t_w > 0 ends with a lower "
            "test error than the CNN trained for the full budget.",
            "CNN full budget "
            + f(cnn_final)
            + "; eFCN "
            + ", ".join(f"t_w={t}: {f(per_tw[str(t)]['efcn_final_err'])}" for t in late)
            + " (rule: holds if some t_w beats the CNN by more than 2 standard errors of the "
            f"difference; t_w that do: {better or 'none'}).",
            bool(better),
        ),
        common.claim(
            "d'Ascoli et al.: the eFCN stays close to the convolutional subspace: the "
            "off-structure share of its weight norm stays small.",
            "largest off-structure share during training, per t_w > 0: "
            + ", ".join(f"{t}: {per_tw[str(t)]['efcn_max_off_share']['mean']:.3g}" for t in late)
            + f"; FCN from scratch ends at {f(scratch_off)} (rule: holds if every t_w > 0 "
            "stays below 0.1 on average over seeds).",
            all(per_tw[str(t)]["efcn_max_off_share"]["mean"] < 0.1 for t in late),
        ),
        common.claim(
            "d'Ascoli et al.: an FCN trained from scratch does worse than the CNN.",
            f"FCN from scratch {f(scratch_final)} vs CNN {f(cnn_final)} (rule: holds if the "
            "FCN's mean error is above the CNN's by more than 2 standard errors of the "
            "difference).",
            bool(
                scratch_final["mean"] - cnn_final["mean"]
                > 2 * np.hypot(se(scratch_final), se(cnn_final))
            ),
        ),
        common.claim(
            "d'Ascoli et al.: an FCN trained from scratch does worse than every eFCN "
            "relaxed at t_w > 0.",
            f"FCN from scratch {f(scratch_final)} vs eFCN "
            + ", ".join(f"t_w={t}: {f(per_tw[str(t)]['efcn_final_err'])}" for t in late)
            + " (rule: holds if the FCN's mean error is above every eFCN's mean).",
            all(scratch_final["mean"] > per_tw[str(t)]["efcn_final_err"]["mean"] for t in late),
        ),
    ]

    # ---- figures
    plot_curves(run, cfg, t_ws, numbers)
    plot_summary(run, t_ws, numbers)
    return run.finish(config={**cfg, "budget": budget}, numbers=numbers, table=table, claims=claims)


def plot_curves(run, cfg, t_ws, numbers):
    c = numbers["curves"]
    fig, (ax_err, ax_off) = plt.subplots(1, 2, figsize=(11, 4))
    colors = plt.cm.viridis(np.linspace(0, 0.85, len(t_ws)))
    m, s = np.asarray(c["cnn_err"]["mean"]), np.asarray(c["cnn_err"]["std"])
    ax_err.plot(c["cnn_step"], m, color="k", label="CNN")
    ax_err.fill_between(c["cnn_step"], m - s, m + s, color="k", alpha=0.15)
    for col, t in zip(colors, t_ws, strict=True):
        steps = t + np.asarray(c["fcn_step"])
        for key, ax in (("efcn_err", ax_err), ("efcn_off_share", ax_off)):
            m, s = np.asarray(c[key][str(t)]["mean"]), np.asarray(c[key][str(t)]["std"])
            ax.plot(steps, m, color=col, label=f"eFCN, t_w={t}")
            ax.fill_between(steps, m - s, m + s, color=col, alpha=0.15)
    for key, ax in (("scratch_err", ax_err), ("scratch_off_share", ax_off)):
        m, s = np.asarray(c[key]["mean"]), np.asarray(c[key]["std"])
        ax.plot(c["fcn_step"], m, color="tab:red", ls="--", label="FCN from scratch")
        ax.fill_between(c["fcn_step"], m - s, m + s, color="tab:red", alpha=0.15)
    ax_err.set(
        xlabel="SGD step (eFCN: t_w + steps after embedding)",
        ylabel="test error",
        title="test error (mean ± std over seeds)",
    )
    ax_off.set(
        xlabel="SGD step (eFCN: t_w + steps after embedding)",
        ylabel="off-structure share of ||W||²",
        yscale="log",
        title="distance from the conv subspace",
    )
    ax_err.legend(fontsize=8)
    ax_off.legend(fontsize=8)
    fig.suptitle(
        f"eFCN protocol, local motif k={cfg['task']['k']} at a random position, "
        f"d={cfg['task']['d']}, n_train={cfg['n_train']}",
        y=1.03,
    )
    run.save_figure(fig, "curves.png")


def plot_summary(run, t_ws, numbers):
    fig, ax = plt.subplots(figsize=(6, 4))
    x = np.arange(len(t_ws))
    m = [numbers["per_t_w"][str(t)]["efcn_final_err"]["mean"] for t in t_ws]
    s = [numbers["per_t_w"][str(t)]["efcn_final_err"]["std"] for t in t_ws]
    ax.errorbar(x, m, yerr=s, fmt="o-", capsize=3, label="eFCN (final)")
    m0 = [numbers["per_t_w"][str(t)]["cnn_err_at_t_w"]["mean"] for t in t_ws]
    ax.plot(x, m0, "s:", color="gray", label="CNN at t_w (before the embedding)")
    for key, col, lab in (
        ("cnn_full_budget_err", "k", "CNN, full budget"),
        ("fcn_scratch_err", "tab:red", "FCN from scratch"),
    ):
        mu, sd = numbers[key]["mean"], numbers[key]["std"]
        ax.axhline(mu, color=col, ls="--", label=lab)
        ax.axhspan(mu - sd, mu + sd, color=col, alpha=0.1)
    ax.set_xticks(x, [str(t) for t in t_ws])
    ax.set(
        xlabel="relax time t_w (CNN steps before the embedding)",
        ylabel="test error",
        title="final test error vs relax time (mean ± std)",
    )
    ax.legend(fontsize=8)
    run.save_figure(fig, "final_error_vs_tw.png")


if __name__ == "__main__":
    main()
