"""eFCN (d'Ascoli et al., NeurIPS 2019), 1-D: a CNN relaxed into its dense twin, SGD or Adam.

Protocol. A small CNN, ``Conv1D -> relu -> Conv1D -> relu -> flatten -> dense``, is
trained with plain SGD on a local-pattern task (:func:`convjax.data.local_pattern`).
At each relax time ``t_w`` (a grid spaced by factors of about sqrt(2), rounded to multiples
of the evaluation interval, dense where the CNN learns) its conv
layers are replaced by their dense twins (:func:`convjax.nn.conv_to_dense`: tied
weights copied, structural zeros explicit), which compute the same function (checked
on the test set), and the resulting fully connected net (the eFCN) is trained on for
``fcn_steps`` more steps with every weight free, by one of two optimizers:

* SGD with the PER-ENTRY STEP RULE. The CNN's step on a tap ``w_k`` is
  ``-lr * sum_c G_c``, the sum of the gradients ``G_c`` of its ``m_k`` copies in the
  dense matrix. Plain SGD on the eFCN would move each copy by ``-lr * G_c`` only, about
  ``1/m_k`` of the conv's step (the eFCN would barely move). The rule scales the
  learning rate of every copy of tap ``k`` by ``m_k`` (``ConvStructure.copies``; the
  bias, copied at ``Lout`` positions, by ``Lout``): then the mean of the copies' steps,
  which is the step of the eFCN's nearest convolution (the projection that averages
  the copies), is ``-lr * sum_c G_c``, EXACTLY the CNN's step. Entries off the conv
  structure (the structural zeros, which the experiment measures) have no conv
  counterpart and keep the base rate ``lr``: their growth is not inflated.
* Adam. Adam divides each entry's step by its own running gradient RMS, so it is
  invariant to a constant rescaling of an entry's gradient (up to ``eps``): no
  per-entry rule is needed, or possible through the gradient, and every entry,
  copies and structural zeros alike, takes steps of about ``lr`` from the start. So
  each copy moves like a conv tap under Adam; the off-structure entries, whose
  gradients are small, move as fast as any other, which makes Adam's off-structure
  growth an upper reference rather than the paper's setting.

References (each seed: its own training and test draw, shared by all arms, paired):
the CNN trained for the whole budget ``max(t_w) + fcn_steps`` SGD steps, and the fully
connected net trained from scratch (dense He init) for ``fcn_steps`` steps with the
same optimizer as the eFCN. Measures: final test error; the off-structure share of the
weights (share of ``||W||^2`` at entries a convolution holds at zero, both dense layers
pooled) and of the UPDATE ``W_final - W_embedded`` (for the FCN from scratch, of
``W_final - W_init``), and the update's relative norm (does the eFCN move at all?).
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

from convjax import data, nn, stats, train

NAME = "efcn"
OPTIMIZERS = ("sgd", "adam")


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
        "n_test": common.pick(size, tiny=128, quick=1024, full=2048),
        "channels": common.pick(size, tiny=2, quick=6, full=6),
        "kernel_size": 3,
        "padding": "valid",
        "lr": 0.2,
        "adam_lr": 1e-3,
        "batch_size": common.pick(size, tiny=16, quick=32, full=32),
        # every t_w and the budget are multiples of eval_every (one compiled block)
        "eval_every": common.pick(size, tiny=5, quick=50, full=50),
        "t_w": common.pick(
            size,
            tiny=[0, 5, 10],
            quick=[0, 50, 100, 200, 400, 800, 1600, 3200],
            full=[0, 50, 100, 150, 200, 300, 400, 550, 800, 1600, 3200],
        ),
        "fcn_steps": common.pick(size, tiny=10, quick=1000, full=3000),
        "fcn_eval_every": common.pick(size, tiny=5, quick=100, full=100),
        "dtype": "float32",
    }


# ---- models ------------------------------------------------------------------------


def models(cfg: dict):
    """The CNN, its fully connected twin (``nn.twin`` of the whole model), and the
    structures of the CNN's layers (``nn.structures``, aligned with its params).

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


def step_multipliers(cnn_params_one, ss):
    """The per-entry learning-rate multipliers of the SGD rule, a pytree shaped like the
    eFCN's params: ``m_k`` (copies of tap ``k``, ``ConvStructure.copies``) on every copy of
    ``k``, ``Lout`` on the spread bias, 1 on structural zeros and on the readout."""

    def layer(p, s):
        if s is None:
            return jax.tree.map(jnp.ones_like, p)
        copies = jnp.asarray(s.copies(), p["w"].dtype)[:, None, None]
        conv = {
            "w": jnp.broadcast_to(copies, p["w"].shape),
            "b": jnp.full(p["b"].shape, s.out_length, p["b"].dtype),
        }
        dense = nn.conv_to_dense(conv, s)
        return jax.tree.map(lambda m: jnp.where(m == 0, jnp.ones_like(m), m), dense)

    return tuple(layer(p, s) for p, s in zip(cnn_params_one, ss, strict=True))


def scale_by_tree(mult) -> optax.GradientTransformation:
    """Multiplies every update entry by ``mult`` (a pytree shaped like the params)."""

    def scale(updates, params=None):
        return jax.tree.map(lambda u, m: u * m.astype(u.dtype), updates, mult)

    return optax.stateless(scale)


def pooled_off_share(fcn_params, ss):
    """Off-structure share of the squared norm of both dense layers together."""
    s1, s2 = ss[0], ss[2]
    w1, w2 = fcn_params[0]["w"], fcn_params[2]["w"]
    n1, n2 = jnp.sum(w1**2), jnp.sum(w2**2)
    off = (
        nn.off_structure_share(fcn_params[0], s1) * n1
        + nn.off_structure_share(fcn_params[2], s2) * n2
    )
    return off / jnp.maximum(n1 + n2, 1e-30)


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
    return jax.tree.map(lambda *a: jnp.concatenate(a, axis=0), *tree_list)


def seed_sets(cfg: dict, seeds):
    """Per-seed training and test sets (own draws), leading seeds axis."""
    task = {k: v for k, v in cfg["task"].items() if k != "generator"}
    n_train, n_test = cfg["n_train"], cfg["n_test"]

    def draw(key):
        ds = data.local_pattern(key, n_train + n_test, dtype=jnp.dtype(cfg["dtype"]), **task)
        return {"x": ds.x[:n_train], "y": ds.y[:n_train]}, {
            "x": ds.x[n_train:],
            "y": ds.y[n_train:],
        }

    keys = jax.vmap(lambda s: jax.random.fold_in(jax.random.key(1000), s))(jnp.asarray(seeds))
    return jax.jit(jax.vmap(draw))(keys)


def tile(tree, reps: int):
    return jax.tree.map(lambda a: jnp.concatenate([a] * reps), tree)


def train_cnn(cfg, cnn_loss, cnn_eval, cnn_params, train_data, test_data, keys, t_ws, budget):
    """SGD on the CNN in segments ending at each ``t_w > 0`` and at ``budget``; returns
    snapshots by step, the error curve and the per-seed error at each snapshot."""
    snapshots, hist_steps, hist_err = {0: cnn_params}, [], []
    params, done = cnn_params, 0
    sgd = optax.sgd(cfg["lr"])  # one object: every segment reuses one compiled block
    for seg, end in enumerate([t for t in t_ws if t > 0] + [budget]):
        res = train.fit_many(
            cnn_loss,
            params,
            sgd,
            train_data,
            jax.vmap(lambda k, s=seg: jax.random.fold_in(k, 1 + s))(keys),
            steps=end - done,
            batch_size=cfg["batch_size"],
            eval_every=cfg["eval_every"],
            eval_fn=cnn_eval,
            eval_data=test_data,
            progress=False,
            per_run_data=True,
        )
        params, done = res.params, end
        hist_steps.append(np.asarray(res.history["step"]) + end - int(res.history["step"][-1]))
        hist_err.append(res.history["eval_err"])
        snapshots[end] = params
    return snapshots, np.concatenate(hist_steps), np.concatenate(hist_err, axis=1)


def main(argv=None) -> dict:
    args = common.make_parser(__doc__).parse_args(argv)
    run = common.start_run(NAME, args, description=__doc__)
    cfg = config_for(run.size)
    n_seeds = len(run.seeds)
    dtype = jnp.dtype(cfg["dtype"])
    train_data, test_data = seed_sets(cfg, run.seeds)

    cnn, fcn, ss = models(cfg)
    in_shape = (cfg["task"]["d"], 1)
    keys = common.seed_keys(run.seeds)
    init_keys = jax.vmap(lambda k: jax.random.fold_in(k, 0))(keys)
    cnn_params = jax.jit(jax.vmap(lambda k: cnn.init(k, in_shape)[1]))(init_keys)
    t_ws = sorted(set(cfg["t_w"]))
    budget = max(t_ws) + cfg["fcn_steps"]
    cnn_loss, cnn_eval = make_fns(cnn)
    snapshots, cnn_steps, cnn_err = train_cnn(
        cfg, cnn_loss, cnn_eval, cnn_params, train_data, test_data, keys, t_ws, budget
    )
    err_of = jax.jit(jax.vmap(cnn_eval))
    err_at_tw = {t: np.asarray(err_of(snapshots[t], test_data)["err"]) for t in t_ws}
    cnn_final = np.asarray(err_of(snapshots[budget], test_data)["err"])

    # ---- the embedding: dense twins, same function (checked on the test set)
    embed_runs = jax.jit(jax.vmap(lambda p: embed(p, ss)))

    @jax.jit
    def output_gap(p_cnn, p_fcn, x):
        out_cnn = jax.vmap(cnn.apply)(p_cnn, x)
        out_fcn = jax.vmap(fcn.apply)(p_fcn, x)
        return jnp.max(jnp.abs(out_cnn - out_fcn)), jnp.max(jnp.abs(out_cnn))

    embedded = [embed_runs(snapshots[t]) for t in t_ws]
    max_rel_diff = 0.0
    for t, p_fcn in zip(t_ws, embedded, strict=True):
        diff, scale = output_gap(snapshots[t], p_fcn, test_data["x"])
        max_rel_diff = max(max_rel_diff, float(diff) / max(float(scale), 1e-30))
    embed_tol = 1e-5 if dtype == jnp.float32 else 1e-12

    # ---- stage 2: every eFCN and the FCN from scratch, per optimizer, one call each
    scratch = jax.jit(jax.vmap(lambda k: fcn.init(k, in_shape)[1]))(init_keys)
    start = stack_runs(embedded + [scratch])
    n_groups = len(t_ws) + 1
    run_keys = jnp.concatenate(
        [jax.vmap(lambda k, g=g: jax.random.fold_in(k, 100 + g))(keys) for g in range(n_groups)]
    )
    fcn_loss, fcn_eval = make_fns(fcn, ss)
    mult = step_multipliers(jax.tree.map(lambda p: p[0], cnn_params), ss)
    mult_runs = jax.tree.map(
        lambda m: jnp.concatenate(
            [jnp.broadcast_to(m, (len(t_ws) * n_seeds,) + m.shape), jnp.ones((n_seeds,) + m.shape)]
        ),
        mult,
    )
    optimizers = {
        # hyper carries the per-run multipliers (the FCN from scratch: all ones)
        "sgd": lambda h: optax.chain(scale_by_tree(h["mult"]), optax.sgd(cfg["lr"])),
        "adam": lambda h: optax.adam(cfg["adam_lr"]),
    }
    stage2 = {}
    for name in OPTIMIZERS:
        res = train.fit_many(
            fcn_loss,
            start,
            optimizers[name],
            tile(train_data, n_groups),
            run_keys,
            steps=cfg["fcn_steps"],
            batch_size=cfg["batch_size"],
            eval_every=cfg["fcn_eval_every"],
            eval_fn=fcn_eval,
            eval_data=tile(test_data, n_groups),
            hyper={"mult": mult_runs},
            progress=False,
            per_run_data=True,
        )
        upd = jax.tree.map(jnp.subtract, res.params, start)
        upd_off = np.asarray(jax.jit(jax.vmap(lambda p: pooled_off_share(p, ss)))(upd))
        rel = np.asarray(
            jax.vmap(
                lambda u, p: (
                    jnp.sqrt(sum(jnp.sum(v**2) for v in jax.tree.leaves(u)))
                    / jnp.sqrt(sum(jnp.sum(v**2) for v in jax.tree.leaves(p)))
                )
            )(upd, start)
        )
        stage2[name] = {
            "step": res.history["step"],
            "err": res.history["eval_err"].reshape(n_groups, n_seeds, -1),
            "off": res.history["eval_off_share"].reshape(n_groups, n_seeds, -1),
            "update_off": upd_off.reshape(n_groups, n_seeds),
            "update_rel": rel.reshape(n_groups, n_seeds),
        }

    numbers, claims = summarise(
        cfg, t_ws, budget, err_at_tw, cnn_final, stage2, max_rel_diff, embed_tol
    )
    numbers["curves"] = {
        "cnn_step": cnn_steps,
        "cnn_err_per_seed": cnn_err,
        "fcn_step": stage2["sgd"]["step"],
        **{f"{o}_err_mean": stage2[o]["err"].mean(axis=1) for o in OPTIMIZERS},
        **{f"{o}_off_share_mean": stage2[o]["off"].mean(axis=1) for o in OPTIMIZERS},
    }
    plot_curves(run, cfg, t_ws, numbers)
    plot_summary(run, cfg, t_ws, numbers)
    return run.finish(
        config={**cfg, "budget": budget},
        numbers=numbers,
        table=table_from(cfg, t_ws, budget, numbers),
        claims=claims,
    )


# ---- numbers and claims --------------------------------------------------------------


def _paired(a, b):
    return common.interval_dict(stats.difference_interval(a, b, paired=True))


def summarise(cfg, t_ws, budget, err_at_tw, cnn_final, stage2, max_rel_diff, embed_tol):
    """Numbers (every quantity with its 95% interval) and the claims."""
    late = [t for t in t_ws if t > 0]
    level = 1 - 0.05 / len(late)  # Bonferroni over the positive relax times
    numbers: dict = {
        "embedding_max_relative_output_diff": max_rel_diff,
        "cnn_full_budget_steps": budget,
        "cnn_full_budget_err": common.ci(cnn_final),
        "cnn_err_at_t_w": {str(t): common.ci(err_at_tw[t]) for t in t_ws},
        "bonferroni_level": level,
    }
    claims = [
        common.claim(
            "The CNN embeds exactly into its fully connected twin (identical outputs).",
            f"largest |CNN(x) - eFCN(x)| / max|CNN(x)| over all t_w, seeds and the test "
            f"set: {max_rel_diff:.2g}",
            max_rel_diff < embed_tol,
            rule=f"below {embed_tol:g} in {cfg['dtype']}",
        )
    ]
    for o in OPTIMIZERS:
        s = stage2[o]
        err, scratch = s["err"][:, :, -1], s["err"][-1, :, -1]
        per = {}
        for g, t in enumerate(t_ws):
            per[str(t)] = {
                "efcn_err": common.ci(err[g]),
                "efcn_minus_cnn": _paired(err[g], cnn_final),
                "efcn_minus_fcn": _paired(err[g], scratch),
                "final_off_share": common.ci(s["off"][g, :, -1]),
                "update_off_share": common.ci(s["update_off"][g]),
                "update_relative_norm": common.ci(s["update_rel"][g]),
                "per_seed_err": err[g],
            }
        numbers[o] = {
            "per_t_w": per,
            "fcn_scratch_err": common.ci(scratch),
            "fcn_scratch_minus_cnn": _paired(scratch, cnn_final),
            "fcn_scratch_final_off_share": common.ci(s["off"][-1, :, -1]),
            "fcn_scratch_update_off_share": common.ci(s["update_off"][-1]),
        }
        claims += claims_for(o, cfg, late, level, t_ws, err, scratch, cnn_final, s)
    return numbers, claims


def claims_for(o, cfg, late, level, t_ws, err, scratch, cnn_final, s):
    """The paper's claims for one optimizer, with rules fixed here."""
    idx = {t: t_ws.index(t) for t in late}
    name = "SGD (per-entry rule)" if o == "sgd" else "Adam"
    beats = stats.Claim(
        f"d'Ascoli et al. [{name}]: an eFCN relaxed at some t_w > 0 ends with a lower test "
        "error than the CNN trained for the full budget",
        f"final test error, eFCN minus CNN, per seed (Bonferroni over {len(late)} t_w)",
        "difference",
        "below",
        0.0,
        against="the CNN of the same seed after the full budget",
        level=level,
    )
    vs = {t: stats.evaluate(beats, err[idx[t]], cnn_final) for t in late}
    best = min(late, key=lambda t: vs[t].interval.high)
    verdict = (
        "holds"
        if any(v.verdict == "holds" for v in vs.values())
        else "fails"
        if all(v.verdict == "fails" for v in vs.values())
        else "undecided"
    )
    out = [
        common.verdict_claim(
            vs[best]._replace(verdict=verdict),
            f"shown: t_w={best} (lowest upper bound); verdict: holds if any t_w holds, fails if "
            f"all fail; per t_w: " + ", ".join(f"{t}: {vs[t].interval.format()}" for t in late),
        )
    ]
    worse = stats.Claim(
        f"d'Ascoli et al. [{name}]: an FCN trained from scratch ends worse than the CNN",
        "final test error, FCN from scratch minus CNN (full budget), per seed",
        "difference",
        "above",
        0.0,
        against="the CNN of the same seed",
    )
    out.append(common.verdict_claim(stats.evaluate(worse, scratch, cnn_final)))
    helps = stats.Claim(
        f"d'Ascoli et al. [{name}]: every eFCN relaxed at t_w > 0 ends better than the FCN "
        "from scratch",
        "final test error, eFCN minus FCN from scratch, per seed "
        f"(Bonferroni over {len(late)} t_w)",
        "difference",
        "below",
        0.0,
        against="the FCN from scratch of the same seed",
        level=level,
    )
    hv = {t: stats.evaluate(helps, err[idx[t]], scratch) for t in late}
    worst = max(late, key=lambda t: hv[t].interval.high)
    verdict = (
        "holds"
        if all(v.verdict == "holds" for v in hv.values())
        else "fails"
        if any(v.verdict == "fails" for v in hv.values())
        else "undecided"
    )
    out.append(
        common.verdict_claim(
            hv[worst]._replace(verdict=verdict),
            f"shown: t_w={worst} (highest upper bound); holds if all t_w hold, fails if any fails",
        )
    )
    mid = late[len(late) // 2]
    stays = stats.Claim(
        f"d'Ascoli et al. [{name}]: the eFCN's training stays near the conv subspace: the "
        f"off-structure share of its UPDATE is below half the FCN-from-scratch's (t_w={mid})",
        "off-structure share of W_final - W_start, eFCN / FCN from scratch, per seed",
        "paired_ratio",
        "below",
        0.5,
        against="the FCN from scratch of the same seed",
    )
    ok = s["update_rel"][idx[mid]] > 0
    out.append(
        common.verdict_claim(
            stats.evaluate(
                stays,
                np.maximum(s["update_off"][idx[mid]], 1e-12),
                np.maximum(s["update_off"][-1], 1e-12),
            ),
            "the eFCN moves: relative update norm "
            + common.fmt_ci(common.ci(s["update_rel"][idx[mid]]))
            + ("" if np.all(ok) else " (some seeds did not move)"),
        )
    )
    moves = stats.Claim(
        f"Baseline [{name}]: the eFCN trains (relative update norm above 0.01 at t_w={mid})",
        "||W_final - W_embedded|| / ||W_embedded||, per seed",
        "mean",
        "above",
        0.01,
    )
    out.append(common.verdict_claim(stats.evaluate(moves, s["update_rel"][idx[mid]])))
    return out


def table_from(cfg, t_ws, budget, numbers) -> str:
    f = common.fmt_ci
    rows = []
    for t in t_ws:
        row = [f"eFCN t_w={t}", f(numbers["cnn_err_at_t_w"][str(t)])]
        for o in OPTIMIZERS:
            p = numbers[o]["per_t_w"][str(t)]
            row += [
                f(p["efcn_err"]),
                f(p["efcn_minus_cnn"]),
                f(p["efcn_minus_fcn"]),
                f(p["update_off_share"]),
            ]
        rows.append(row)
    cnn = f(numbers["cnn_full_budget_err"])
    rows.append([f"CNN, {budget} SGD steps", "", cnn, "", "", "0 (conv)", cnn, "", "", "0 (conv)"])
    row = [f"FCN from scratch, {cfg['fcn_steps']} steps", ""]
    for o in OPTIMIZERS:
        n = numbers[o]
        row += [
            f(n["fcn_scratch_err"]),
            f(n["fcn_scratch_minus_cnn"]),
            "",
            f(n["fcn_scratch_update_off_share"]),
        ]
    rows.append(row)
    return common.markdown_table(
        ["model", "CNN error at t_w"]
        + [
            f"{o}: {h}"
            for o in ("SGD rule", "Adam")
            for h in (
                "final error",
                "minus CNN (paired)",
                "minus FCN (paired)",
                "off-structure share of update",
            )
        ],
        rows,
    )


def _tw_axis(ax, t_ws):
    """t_w on a log axis by value; t_w = 0 drawn at half the smallest positive t_w."""
    ax.set_xscale("log")
    pos = [t for t in t_ws if t > 0]
    ticks = [min(pos) / 2] + pos
    ax.set_xticks(ticks, ["0"] + [str(t) for t in pos], rotation=45, fontsize=7)
    ax.minorticks_off()


def _tw_x(t_ws):
    pos = [t for t in t_ws if t > 0]
    return np.array([min(pos) / 2 if t == 0 else t for t in t_ws], float)


def plot_summary(run, cfg, t_ws, numbers):
    """Final error vs t_w (log by value), every seed (dots) and the mean with interval."""
    x = _tw_x(t_ws)
    fig, axes = plt.subplots(1, 2, figsize=(11, 4), sharey=True)
    for ax, o, title in zip(axes, OPTIMIZERS, ("SGD (per-entry rule)", "Adam"), strict=True):
        per = numbers[o]["per_t_w"]
        for i, t in enumerate(t_ws):
            e = np.asarray(per[str(t)]["per_seed_err"])
            ax.scatter(np.full(e.shape, x[i]), e, s=6, color="tab:blue", alpha=0.4)
        est = [per[str(t)]["efcn_err"]["estimate"] for t in t_ws]
        lo = [per[str(t)]["efcn_err"]["low"] for t in t_ws]
        hi = [per[str(t)]["efcn_err"]["high"] for t in t_ws]
        ax.errorbar(
            x,
            est,
            yerr=[np.subtract(est, lo), np.subtract(hi, est)],
            fmt="o-",
            color="tab:blue",
            capsize=3,
            label="eFCN final error (mean, 95% interval)",
        )
        cnn_t = [numbers["cnn_err_at_t_w"][str(t)]["estimate"] for t in t_ws]
        ax.plot(x, cnn_t, "s:", color="gray", label="CNN at t_w")
        for key, col, lab in (
            (numbers["cnn_full_budget_err"], "k", "CNN, full budget"),
            (numbers[o]["fcn_scratch_err"], "tab:red", "FCN from scratch"),
        ):
            ax.axhline(key["estimate"], color=col, ls="--", label=lab)
            ax.axhspan(key["low"], key["high"], color=col, alpha=0.1)
        _tw_axis(ax, t_ws)
        ax.set(xlabel="relax time t_w (log scale by value)", title=title)
    axes[0].set_ylabel("final test error (dots: every seed)")
    axes[0].legend(fontsize=7)
    run.save_figure(fig, "final_error_vs_tw.png")


def plot_curves(run, cfg, t_ws, numbers):
    c = numbers["curves"]
    fig, axes = plt.subplots(1, 3, figsize=(15, 4))
    for e in np.asarray(c["cnn_err_per_seed"]):
        axes[0].plot(c["cnn_step"], e, color="k", lw=0.5, alpha=0.5)
    axes[0].set(xscale="log", xlabel="CNN SGD step", ylabel="test error", title="CNN, every seed")
    colors = plt.cm.viridis(np.linspace(0, 0.85, len(t_ws)))
    for ax, o in zip(axes[1:], OPTIMIZERS, strict=True):
        for g, (col, t) in enumerate(zip(colors, t_ws, strict=True)):
            ax.plot(
                c["fcn_step"], np.asarray(c[f"{o}_off_share_mean"])[g], color=col, label=f"t_w={t}"
            )
        ax.plot(
            c["fcn_step"], np.asarray(c[f"{o}_off_share_mean"])[-1], "r--", label="FCN from scratch"
        )
        ax.set(
            xlabel="steps after the embedding",
            ylabel="off-structure share of ||W||² (mean)",
            yscale="symlog",
            title=f"eFCN, {o}",
        )
        ax.set_yscale("symlog", linthresh=1e-4)
    axes[1].legend(fontsize=6)
    fig.suptitle(
        f"eFCN protocol, local motif k={cfg['task']['k']} at a random position, "
        f"d={cfg['task']['d']}, n_train={cfg['n_train']} (own draw per seed)",
        y=1.03,
    )
    run.save_figure(fig, "curves.png")


if __name__ == "__main__":
    main()
