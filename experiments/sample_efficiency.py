"""Sample efficiency: convolution vs locally connected vs fully connected on local-pattern tasks.

Claim tested (Li, Zhang & Arora, ICLR 2021; Wang & Wu, NeurIPS 2023): when the
label depends on a local pattern, LOCALITY buys the large gain in sample
efficiency when the pattern sits at a fixed (unknown) position (task a), and
WEIGHT SHARING buys a further gain when the pattern sits at a random position in
every example (task b).

Data (``convjax.data.local_pattern``): ``d`` positions, each a random sign; a
window of ``k`` consecutive positions carries +-1, the background +-``noise``;
the label is the PARITY of the window (XOR of ``k`` bits, not linearly
separable). Task (a): ``position="fixed"`` (the middle); task (b):
``position="random"`` (uniform start per example).

Models (one mechanism, three tyings of the first layer; everything else equal):
``first(C channels, kernel k) -> relu -> global max pool over positions ->
Dense(1)``, with ``first`` one of ``Conv1D(C, k)`` (shared filter),
``LocallyConnected1D(C, k)`` (one filter per position) or the dense twin
``Dense(C, kernel_size=k)`` (every entry of the (Lout*C, d) matrix free, the same
output shape (Lout, C)). Same hidden width (C channels at each of the Lout
positions) for all three.

Readout: GLOBAL MAX POOLING over positions, then a scalar readout, for all three.
A flatten+dense head would make the readout learn every position separately,
so on task (b) even the convolution would have to relearn its detector's
readout at each position and the comparison would measure the head, not the
tying of the first layer; with global pooling the three nets differ ONLY in the
first layer's tying. For the dense net the pooling groups its Lout*C hidden units
by channel, a fixed readout structure that costs it nothing: its hidden units
have no positions, so any grouping is as good as any other.

Training: Adam, logistic loss, minibatches of ``batch`` examples, the same number
of steps for every size and model; test error on a fresh test set of
``n_test`` examples. The training set of size ``n`` is the first ``n`` examples
of one pool (nested sets), repeated ``n_max / n`` times so every size has the
same array shapes and runs under ONE compiled program per model; sampling a
minibatch from the repeated set is sampling from the ``n`` examples. Seeds
(vmapped through ``convjax.train.fit_many``) change the initialisation and the
minibatch order; the training set of a given size is the same for every seed.

Summary number: ``n(eps)``, the training-set size at which the mean test error
first falls to ``eps`` (log-linear interpolation between grid sizes; ``None``
when it never does on the grid). A gain of architecture B over A is
``n_A(eps) / n_B(eps)``; when A never reaches ``eps`` the gain is at least
``n_max / n_B(eps)`` (reported as a lower bound).
"""

from __future__ import annotations

import functools
import math
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import common
import jax
import jax.numpy as jnp
import matplotlib.pyplot as plt
import numpy as np
import optax

from convjax import data, nn, train

NAME = "sample_efficiency"
F32 = jnp.float32
ARCHS = ("conv", "local", "fc")
LABELS = {
    "conv": "conv (local + shared)",
    "local": "locally connected (local)",
    "fc": "fully connected (dense twin)",
}
COLOURS = {"conv": "#4c72b0", "local": "#55a868", "fc": "#c44e52"}
TASKS = {"a": "fixed", "b": "random"}
TASK_TITLES = {
    "a": "(a) pattern at a fixed, unknown position",
    "b": "(b) pattern at a random position per example",
}
GAIN_NEEDED = 2.0  # a "gain" counts when the sample size needed shrinks by at least this factor


def settings(size: str) -> dict:
    """Every setting the numbers depend on, for ``size`` in tiny / quick / full."""
    return {
        "d": common.pick(size, tiny=12, quick=32, full=32),
        "k": 3,
        "rule": "parity",
        "noise": 0.25,
        "channels": common.pick(size, tiny=4, quick=8, full=16),
        "sizes": common.pick(
            size,
            tiny=[8, 32],
            quick=[16, 64, 256, 1024],
            full=[8, 16, 32, 64, 128, 256, 512, 1024, 2048],
        ),
        "n_test": common.pick(size, tiny=200, quick=2000, full=4000),
        "steps": common.pick(size, tiny=20, quick=400, full=1500),
        "batch": common.pick(size, tiny=8, quick=64, full=64),
        "learning_rate": 0.01,
        "optimizer": "adam",
        "readout": "global max pool + Dense(1)",
        "eps": 0.1,
        "data_seed": 0,
    }


# ---- models and data (beta_lasso.py reuses these) ----------------------------------


def first_layer(arch: str, channels: int, k: int):
    """The first layer of ``arch``: ``(..., d, 1) -> (..., d-k+1, channels)``, float32."""
    if arch == "conv":
        return nn.Conv1D(channels, k, dtype=F32)
    if arch == "local":
        return nn.LocallyConnected1D(channels, k, dtype=F32)
    if arch == "fc":
        return nn.Dense(channels, kernel_size=k, dtype=F32)
    raise ValueError(f"first_layer: `arch` must be one of {ARCHS}, got {arch!r}.")


def model(arch: str, channels: int, k: int):
    """``first_layer -> relu -> global max pool -> Dense(1)``: ``(..., d, 1) -> (..., 1)``."""
    return nn.serial(
        first_layer(arch, channels, k), nn.Relu, nn.GlobalMaxPool(), nn.Dense(1, dtype=F32)
    )


def task_data(key, n: int, cfg: dict, position: str) -> data.Dataset:
    """``n`` examples of the local-parity task with the window at ``position`` (one
    compiled program per setting instead of one per primitive)."""
    gen = functools.partial(
        data.local_pattern,
        n=n,
        d=cfg["d"],
        k=cfg["k"],
        position=position,
        rule=cfg["rule"],
        noise=cfg["noise"],
        dtype=F32,
    )
    return jax.jit(gen)(key)


def repeat_to(ds: data.Dataset, n: int, n_max: int) -> data.Dataset:
    """The first ``n`` examples of ``ds`` repeated to ``n_max`` rows (``n`` divides ``n_max``)."""
    if n_max % n:
        raise ValueError(f"repeat_to: `n`={n} must divide n_max={n_max}.")
    reps = n_max // n
    return data.Dataset(jnp.tile(ds.x[:n], (reps, 1, 1)), jnp.tile(ds.y[:n], reps))


def losses_for(net):
    """``(loss_fn, eval_fn)`` of a binary classifier ``net`` (logit = output[..., 0])."""

    def loss_fn(params, batch):
        return train.logistic_loss(net.apply(params, batch.x)[..., 0], batch.y)

    def eval_fn(params, sets):
        """``sets`` from :func:`eval_sets`: test and training examples stacked, with
        ``is_test`` marking the test rows; returns ``test_error``, ``test_loss``,
        ``train_error``."""
        logits = net.apply(params, sets["x"])[..., 0]
        wrong = 1.0 - train.binary_accuracy(logits, sets["y"], reduction="none")
        loss = train.logistic_loss(logits, sets["y"], reduction="none")
        test = sets["is_test"].astype(wrong.dtype)
        return {
            "test_error": jnp.sum(wrong * test) / jnp.sum(test),
            "test_loss": jnp.sum(loss * test) / jnp.sum(test),
            "train_error": jnp.sum(wrong * (1 - test)) / jnp.sum(1 - test),
        }

    return loss_fn, eval_fn


def eval_sets(test: data.Dataset, train_set: data.Dataset) -> dict:
    """Test and training examples stacked into one eval set (fit_many's ``eval_data``
    leaves share one leading axis), ``is_test`` marking the test rows."""
    return {
        "x": jnp.concatenate([test.x, train_set.x]),
        "y": jnp.concatenate([test.y, train_set.y]),
        "is_test": jnp.arange(len(test.y) + len(train_set.y)) < len(test.y),
    }


def init_many(net, keys, input_shape):
    """Params of ``net`` for each key, stacked ``(n_runs, ...)`` (one compiled program)."""
    return jax.jit(jax.vmap(lambda k: net.init(k, input_shape)[1]))(keys)


def run_keys(seeds):
    """Per-seed ``(init_keys, train_keys)``, each a key array of shape ``(n_seeds,)``."""
    keys = common.seed_keys(seeds)
    return (
        jax.vmap(lambda k: jax.random.fold_in(k, 0))(keys),
        jax.vmap(lambda k: jax.random.fold_in(k, 1))(keys),
    )


# ---- the summary number ------------------------------------------------------------


def size_to_reach(sizes, errors, eps: float):
    """Training-set size at which ``errors`` (mean over seeds, one per size) first reach
    ``eps``, interpolated linearly in ``log n``; ``sizes[0]`` if already there, None if never."""
    sizes, errors = np.asarray(sizes, float), np.asarray(errors, float)
    if errors[0] <= eps:
        return float(sizes[0])
    for j in range(1, len(sizes)):
        if errors[j] <= eps:
            e0, e1 = errors[j - 1], errors[j]
            t = (e0 - eps) / (e0 - e1)
            return float(math.exp(math.log(sizes[j - 1]) + t * math.log(sizes[j] / sizes[j - 1])))
    return None


def gain(n_slow, n_fast, n_min: float, n_max: float) -> tuple[float | None, bool]:
    """``(n_slow / n_fast, is_lower_bound)``. ``n_slow=None`` (never reached) gives
    ``n_max / n_fast`` as a lower bound; ``n_fast == n_min`` (reached at the smallest
    size, so possibly earlier) also makes the ratio a lower bound; ``n_fast=None``
    gives ``(None, False)``."""
    if n_fast is None:
        return None, False
    if n_slow is None:
        return n_max / n_fast, True
    return n_slow / n_fast, bool(n_fast <= n_min < n_slow)


def fmt_gain(g: tuple[float | None, bool]) -> str:
    value, lower = g
    if value is None:
        return "n/a (the faster model never reached eps)"
    return f"{'>= ' if lower else ''}{value:.3g}x"


# ---- the experiment -----------------------------------------------------------------


def run_grid(cfg: dict, seeds, *, log=print) -> dict:
    """Trains every (task, architecture, size) for every seed; returns the raw results:
    ``results[task][arch]`` with ``test_error``, ``test_loss``, ``train_error`` arrays of
    shape ``(n_sizes, n_seeds)`` and ``n_params``."""
    d, k, c = cfg["d"], cfg["k"], cfg["channels"]
    sizes, n_max = list(cfg["sizes"]), max(cfg["sizes"])
    init_keys, train_keys = run_keys(seeds)
    data_key = jax.random.key(cfg["data_seed"])
    optimizer = optax.adam(cfg["learning_rate"])
    nets = {a: model(a, c, k) for a in ARCHS}
    fns = {a: losses_for(nets[a]) for a in ARCHS}  # the same objects: one compile per model
    results = {}
    for t, (task, position) in enumerate(TASKS.items()):
        k_pool, k_test = jax.random.split(jax.random.fold_in(data_key, t))
        pool = task_data(k_pool, n_max, cfg, position)
        test = task_data(k_test, cfg["n_test"], cfg, position)
        results[task] = {}
        for arch in ARCHS:
            net, (loss_fn, eval_fn) = nets[arch], fns[arch]
            params0 = init_many(net, init_keys, (d, 1))
            errs, losses, train_errs = [], [], []
            for n in sizes:
                t0 = time.perf_counter()
                train_set = repeat_to(pool, n, n_max)
                res = train.fit_many(
                    loss_fn,
                    params0,
                    optimizer,
                    train_set,
                    train_keys,
                    steps=cfg["steps"],
                    batch_size=cfg["batch"],
                    eval_every=cfg["steps"],
                    eval_fn=eval_fn,
                    eval_data=eval_sets(test, train_set),
                    progress=False,
                )
                # the error on the repeated training set is the error on its n examples
                errs.append(res.history["eval_test_error"][:, -1])
                losses.append(res.history["eval_test_loss"][:, -1])
                train_errs.append(res.history["eval_train_error"][:, -1])
                log(
                    f"  task ({task}) {arch:>5} n={n:>5}: test error "
                    f"{np.mean(errs[-1]):.3f} +- {np.std(errs[-1]):.3f} "
                    f"({time.perf_counter() - t0:.1f} s)"
                )
            results[task][arch] = {
                "test_error": np.stack(errs),
                "test_loss": np.stack(losses),
                "train_error": np.stack([np.asarray(e) for e in train_errs]),
                "n_params": nn.param_count(jax.tree.map(lambda p: p[0], params0)),
            }
    return results


def summarise(cfg: dict, results: dict) -> dict:
    """Mean/spread per size, ``n(eps)`` per model and the gains, as JSON-able numbers."""
    sizes, eps = cfg["sizes"], cfg["eps"]
    n_min, n_max = float(min(sizes)), float(max(sizes))
    out = {}
    for task, per_arch in results.items():
        out[task] = {"models": {}, "gains": {}}
        n_eps = {}
        for arch, r in per_arch.items():
            stats = common.mean_std(r["test_error"], axis=1)
            n_eps[arch] = size_to_reach(sizes, stats["mean"], eps)
            out[task]["models"][arch] = {
                "n_params": r["n_params"],
                "test_error": stats,
                "test_error_per_seed": r["test_error"],
                "test_loss": common.mean_std(r["test_loss"], axis=1),
                "train_error": common.mean_std(r["train_error"], axis=1),
                "n_to_reach_eps": n_eps[arch],
            }
        for name, slow, fast in (
            ("locality_fc_over_local", "fc", "local"),
            ("sharing_local_over_conv", "local", "conv"),
            ("both_fc_over_conv", "fc", "conv"),
        ):
            value, lower = gain(n_eps[slow], n_eps[fast], n_min, n_max)
            out[task]["gains"][name] = {"value": value, "lower_bound": lower}
    return out


def claims_from(summary: dict, size: str) -> list[dict]:
    """The paper's claims, decided by the numbers of this run (None at the tiny size)."""

    def g(task, name):
        e = summary[task]["gains"][name]
        return e["value"], e["lower_bound"]

    def big(v):  # a gain counts when it is at least GAIN_NEEDED
        return v[0] is not None and v[0] >= GAIN_NEEDED

    decide = size != "tiny"
    loc_a, share_a = g("a", "locality_fc_over_local"), g("a", "sharing_local_over_conv")
    share_b, loc_b = g("b", "sharing_local_over_conv"), g("b", "locality_fc_over_local")
    # (a)'s ratio must be exact (a lower bound on (a) cannot show it is the smaller one)
    if share_a[0] is None or share_b[0] is None:
        smaller = False
    elif share_a[1]:
        smaller = None
    else:
        smaller = share_a[0] < share_b[0]
    return [
        common.claim(
            "Task (a), pattern at a fixed position: locality gives a large gain in sample "
            f"efficiency (rule: n_fc(eps) / n_local(eps) >= {GAIN_NEEDED:g})",
            f"n_fc/n_local = {fmt_gain(loc_a)}",
            big(loc_a) if decide else None,
        ),
        common.claim(
            "Task (b), pattern at a random position: weight sharing gives a further gain "
            f"over locality (rule: n_local(eps) / n_conv(eps) >= {GAIN_NEEDED:g})",
            f"n_local/n_conv = {fmt_gain(share_b)} (locality alone on (b): n_fc/n_local = "
            f"{fmt_gain(loc_b)})",
            big(share_b) if decide else None,
        ),
        common.claim(
            "Weight sharing matters more when the position varies (rule: n_local/n_conv "
            "smaller on (a) than on (b); undecided when (a)'s ratio is only a lower bound)",
            f"n_local/n_conv: (a) {fmt_gain(share_a)}, (b) {fmt_gain(share_b)}",
            smaller if decide else None,
        ),
    ]


def figure(run, cfg: dict, results: dict) -> None:
    sizes = np.asarray(cfg["sizes"])
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2), sharey=True)
    for ax, (task, per_arch) in zip(axes, results.items(), strict=True):
        for arch, r in per_arch.items():
            e = r["test_error"]
            mean, lo, hi = e.mean(axis=1), e.min(axis=1), e.max(axis=1)
            ax.plot(sizes, mean, "o-", color=COLOURS[arch], label=LABELS[arch])
            ax.fill_between(sizes, lo, hi, color=COLOURS[arch], alpha=0.2, lw=0)
        ax.axhline(cfg["eps"], color="0.5", ls=":", lw=1, label=f"eps = {cfg['eps']:g}")
        ax.set_xscale("log", base=2)
        ax.set_xlabel("training-set size n (log scale)")
        ax.set_title(TASK_TITLES[task], fontsize=10)
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("test error (mean over seeds, band: min-max)")
    axes[0].set_ylim(-0.02, 0.55)
    axes[0].legend(fontsize=8, loc="upper right")
    fig.suptitle(
        f"Local parity of k={cfg['k']} of d={cfg['d']} inputs; C={cfg['channels']} "
        f"channels, {cfg['steps']} Adam steps, {len(run.seeds)} seeds",
        fontsize=10,
    )
    run.save_figure(fig, "test_error_vs_n.png")


def table_from(cfg: dict, summary: dict) -> str:
    headers = (
        ["task", "model", "params"] + [f"n={n}" for n in cfg["sizes"]] + [f"n(eps={cfg['eps']:g})"]
    )
    rows = []
    for task, s in summary.items():
        for arch, m in s["models"].items():
            st = m["test_error"]
            cells = [f"{mu:.3f} ± {sd:.3f}" for mu, sd in zip(st["mean"], st["std"], strict=True)]
            n_eps = m["n_to_reach_eps"]
            if n_eps is None:
                reach = f"> {max(cfg['sizes'])}"
            elif n_eps <= min(cfg["sizes"]):
                reach = f"<= {min(cfg['sizes'])}"
            else:
                reach = f"{n_eps:.0f}"
            rows.append([task, arch, m["n_params"], *cells, reach])
    return common.markdown_table(headers, rows)


def main(argv=None) -> dict:
    args = common.make_parser(__doc__).parse_args(argv)
    run = common.start_run(NAME, args, description=__doc__)
    cfg = settings(run.size)
    results = run_grid(cfg, run.seeds)
    summary = summarise(cfg, results)
    figure(run, cfg, results)
    claims = claims_from(summary, run.size)
    numbers = {"tasks": summary}
    return run.finish(
        config={**cfg, "tasks": TASKS, "archs": list(ARCHS)},
        numbers=numbers,
        table=table_from(cfg, summary),
        claims=claims,
    )


if __name__ == "__main__":
    main()
