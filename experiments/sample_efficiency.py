"""Sample efficiency vs input length d: how the sample need of FC, LC and conv nets grows.

Claims tested (Li, Zhang & Arora, ICLR 2021; Wang & Wu, NeurIPS 2023): on a task whose
label is a local pattern, the number of training examples a fully connected net needs
grows faster with the input length ``d`` than a locally connected net's (LOCALITY),
which grows faster than a conv net's (WEIGHT SHARING). We measure ``n(eps)``, the
training-set size at which the test error reaches ``eps``, at several ``d`` and fit
log-log slopes ``n(eps) ~ d**slope``.

Data (:func:`convjax.data.marked_pattern`, pattern only): channel 0 holds a fair random
sign at every position, the window of ``k`` consecutive positions included, so the
window's values have exactly the background's distribution (amplitude is not a cue);
the label is the PARITY of the window (every ``k - 1`` window signs are uniform: only
the product of all ``k`` carries the label). Channel 1 is a marker, ``1`` on the
window, ``0`` elsewhere: it gives the window's position, never its label. Task (a):
the window at a fixed position (the middle; the marker is then constant); task (b):
at a uniform random position per example. (a) separates what locality buys, (b) adds
what sharing buys (a shared filter learns the detector once for every position).

Models (one readout for all three, stated): ``first(C channels, kernel k) -> relu ->
global max pool over positions -> Dense(1)``, ``first`` one of ``Conv1D(C, k)``,
``LocallyConnected1D(C, k)`` or the dense twin ``Dense(C, kernel_size=k)`` (a free
``(Lout*C, 2d)`` matrix with the same output shape). The nets differ only in the first
layer's tying. Adam, logistic loss, the same steps and minibatch size for every size.

Seeds: every seed draws its own training pool and test set (``fit_many`` with
``per_run_data``); the three nets see the same draws (paired). A training set of size
``n`` is the first ``n`` examples of the seed's pool (nested), repeated to the pool's
size so that every size runs under one compiled program.

``n(eps)`` per seed: the first grid size whose test error is ``<= eps``, interpolated
linearly in ``log n`` from the size before. CENSORING: a seed that never reaches ``eps``
on the grid records the largest size, flagged as a lower bound; every interval then
treats it as one (``convjax.stats``: the side the truth could move to becomes
infinite). A seed already at ``eps`` at the smallest size records that size (an upper
bound; counted in ``numbers``). Slopes: per seed, least squares of ``log n(eps)`` on
``log d``; a censored value at a ``d`` above the mean ``log d`` can only raise the
slope (a lower bound), one below it could lower it (then the slope is unbounded below).
Ratios between nets: geometric mean of per-seed ratios with the paired t-interval of
the log ratios. Grid sizes above the first one at which every seed has reached the
smallest ``eps`` are skipped (they cannot change any ``n(eps)``).
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

from convjax import data, nn, stats, train

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
    "b": "(b) pattern at a random, marked position",
}
#: The orders the papers state for n(eps) as d grows (exponent of d; logs dropped).
PAPER_ORDERS = {
    "fc": "Omega(d^2) (Li, Zhang & Arora: FC nets trained by orthogonally equivariant "
    "algorithms; Wang & Wu: FCN lower bound)",
    "local": "Omega(d) and O~(d) (Wang & Wu: LCN)",
    "conv": "O~(log^2 d) (Wang & Wu: CNN) / O(1) (Li, Zhang & Arora: CNN)",
}
PAPER_EXPONENT = {"fc": 2.0, "local": 1.0, "conv": 0.0}
GAIN_NEEDED = 2.0  # a ratio of sample needs counts as a gain when its interval is above this


def settings(size: str) -> dict:
    """Every setting the numbers depend on, for ``size`` in tiny / quick / full."""
    return {
        "ds": common.pick(size, tiny=[8, 12], quick=[8, 12, 16, 24], full=[8, 16, 32, 64]),
        "k": 3,
        "rule": "parity",
        "generator": "convjax.data.marked_pattern",
        "channels": common.pick(size, tiny=4, quick=16, full=16),
        "sizes": common.pick(
            size,
            tiny=[8, 32],
            quick=[32, 128, 512],
            full=[32, 64, 128, 256, 512, 1024, 2048],
        ),
        "n_test": common.pick(size, tiny=128, quick=1000, full=2000),
        "steps": common.pick(size, tiny=20, quick=300, full=600),
        "batch": common.pick(size, tiny=8, quick=64, full=64),
        "learning_rate": 0.02,
        "optimizer": "adam",
        "readout": "global max pool over positions + Dense(1), the same for all three nets",
        "eps": [0.05, 0.1, 0.2],
        "eps_claims": 0.1,
        "data_seed": 0,
    }


# ---- models and data (beta_lasso.py reuses these) ----------------------------------


def first_layer(arch: str, channels: int, k: int):
    """The first layer of ``arch``: ``(..., d, c) -> (..., d-k+1, channels)``, float32."""
    if arch == "conv":
        return nn.Conv1D(channels, k, dtype=F32)
    if arch == "local":
        return nn.LocallyConnected1D(channels, k, dtype=F32)
    if arch == "fc":
        return nn.Dense(channels, kernel_size=k, dtype=F32)
    raise ValueError(f"first_layer: `arch` must be one of {ARCHS}, got {arch!r}.")


def model(arch: str, channels: int, k: int):
    """``first_layer -> relu -> global max pool -> Dense(1)``: ``(..., d, c) -> (..., 1)``."""
    return nn.serial(
        first_layer(arch, channels, k), nn.Relu, nn.GlobalMaxPool(), nn.Dense(1, dtype=F32)
    )


def task_sets(cfg: dict, d: int, seeds, n_pool: int, n_extra: int = 0):
    """Per-seed training pools and test sets of both tasks at input length ``d``, in one
    compiled call: ``(pool, test[, extra])`` Datasets with leading runs axis
    ``task_index * n_seeds + seed``; ``pool`` has ``n_pool`` examples per run, ``test``
    ``cfg["n_test"]``, ``extra`` (a validation set, if ``n_extra > 0``) ``n_extra``. Every
    set of a run is drawn with one key (disjoint examples of one draw)."""
    n_test = cfg["n_test"]
    sizes = (n_pool, n_test) + ((n_extra,) if n_extra else ())
    total = sum(sizes)

    @jax.jit
    def draw(keys_by_task):
        sets = [
            jax.vmap(
                functools.partial(
                    data.marked_pattern,
                    n=total,
                    d=d,
                    k=cfg["k"],
                    position=position,
                    rule=cfg["rule"],
                    dtype=F32,
                )
            )(keys)
            for keys, position in zip(keys_by_task, TASKS.values(), strict=True)
        ]
        return jax.tree.map(lambda *a: jnp.concatenate(a), *sets)

    both = draw([data_keys(cfg["data_seed"], t, d, seeds, 0) for t in range(len(TASKS))])
    bounds = np.cumsum((0,) + sizes)
    return tuple(
        data.Dataset(both.x[:, lo:hi], both.y[:, lo:hi])
        for lo, hi in zip(bounds[:-1], bounds[1:], strict=True)
    )


def data_keys(data_seed: int, task_index: int, d: int, seeds, part: int):
    """One key per seed for (task, d, part): part 0 the training pool, 1 the test set,
    2 the validation set."""
    base = jax.random.fold_in(jax.random.fold_in(jax.random.key(data_seed), task_index), d)
    base = jax.random.fold_in(base, part)
    return jax.vmap(lambda s: jax.random.fold_in(base, s))(jnp.asarray(list(seeds)))


def repeat_to(ds: data.Dataset, n: int, n_max: int) -> data.Dataset:
    """The first ``n`` examples (axis -3 of ``x``, -1 of ``y``) repeated to ``n_max``."""
    if n_max % n:
        raise ValueError(f"repeat_to: `n`={n} must divide n_max={n_max}.")
    reps = n_max // n
    x, y = ds.x[..., :n, :, :], ds.y[..., :n]
    return data.Dataset(
        jnp.tile(x, (1,) * (x.ndim - 3) + (reps, 1, 1)), jnp.tile(y, (1,) * (y.ndim - 1) + (reps,))
    )


def losses_for(net):
    """``(loss_fn, eval_fn)`` of a binary classifier ``net`` (logit = output[..., 0]);
    ``eval_fn(params, test)`` returns ``test_error`` and ``test_loss``."""

    def loss_fn(params, batch):
        return train.logistic_loss(net.apply(params, batch.x)[..., 0], batch.y)

    def eval_fn(params, test):
        logits = net.apply(params, test.x)[..., 0]
        return {
            "test_error": 1.0 - train.binary_accuracy(logits, test.y),
            "test_loss": train.logistic_loss(logits, test.y),
        }

    return loss_fn, eval_fn


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


# ---- the summary numbers ------------------------------------------------------------


def size_to_reach(sizes, errors, eps: float) -> tuple[float, bool, bool]:
    """``(n, censored, at_first)`` for ONE seed's errors over ``sizes`` (NaN: not run):
    the first size with error ``<= eps``, interpolated linearly in ``log n`` from the
    size before; ``(sizes[-1], True, False)`` if none (a lower bound);
    ``(sizes[0], False, True)`` if the first size is already there (an upper bound)."""
    sizes, errors = np.asarray(sizes, float), np.asarray(errors, float)
    for j in range(len(sizes)):
        if not np.isnan(errors[j]) and errors[j] <= eps:
            if j == 0:
                return float(sizes[0]), False, True
            e0, e1 = errors[j - 1], errors[j]
            t = (e0 - eps) / (e0 - e1)
            log_n = math.log(sizes[j - 1]) + t * math.log(sizes[j] / sizes[j - 1])
            return float(math.exp(log_n)), False, False
    return float(sizes[-1]), True, False


def loglog_slopes(ds, n_eps, censored):
    """Per-seed least-squares slopes of ``log n`` on ``log d``.

    Args:
      ds: ``(n_d,)`` input lengths.
      n_eps: ``(n_seeds, n_d)`` sample needs; censored: same shape, lower bounds.

    Returns:
      ``(slopes, up, down)``: ``(n_seeds,)`` slopes and flags: ``up`` a censored value
      at a ``d`` above the mean ``log d`` (the true slope may be larger), ``down`` one
      below it (the true slope may be smaller).
    """
    x = np.log(np.asarray(ds, float))
    xc = x - x.mean()
    y = np.log(np.asarray(n_eps, float))
    slopes = (y - y.mean(axis=1, keepdims=True)) @ xc / np.sum(xc**2)
    c = np.asarray(censored, bool)
    return slopes, np.any(c & (xc > 0), axis=1), np.any(c & (xc < 0), axis=1)


def slope_interval(slopes, up, down) -> stats.Interval:
    """t-interval of the mean slope; infinite on the side(s) censoring leaves open."""
    iv = stats.mean_interval(slopes, censored=up)
    if np.any(down):
        state = "unbounded" if np.any(up) else "at_most"
        iv = iv._replace(low=-math.inf, censoring=state, n_censored=int(np.sum(up | down)))
    return iv


# ---- the experiment -----------------------------------------------------------------


def run_grid(cfg: dict, seeds, *, log=print) -> dict:
    """Trains every (task, d, architecture, size) for every seed.

    Both tasks run together as one ``fit_many`` call per (d, architecture, size): runs
    ``task_index * n_seeds + seed``, each with its own data (``per_run_data``), so each
    (d, architecture) compiles once. Returns ``results[task][d][arch]`` with
    ``test_error`` ``(n_sizes, n_seeds)`` (NaN for a skipped size), ``n_params`` and
    ``at_init`` (the test error at initialisation, ``(n_seeds,)``; NaN except for the
    conv net at the largest d, the only place a claim uses it)."""
    k, c, n_seeds = cfg["k"], cfg["channels"], len(seeds)
    sizes, n_max, eps_min = list(cfg["sizes"]), max(cfg["sizes"]), min(cfg["eps"])
    init_keys, train_keys = run_keys(seeds)
    keys = jnp.concatenate(
        [jax.vmap(lambda q, t=t: jax.random.fold_in(q, t))(train_keys) for t in range(len(TASKS))]
    )
    optimizer = optax.adam(cfg["learning_rate"])
    nets = {a: model(a, c, k) for a in ARCHS}
    fns = {a: losses_for(nets[a]) for a in ARCHS}  # the same objects: one compile per shape
    evals = {a: jax.jit(jax.vmap(fns[a][1])) for a in ARCHS}
    results: dict = {task: {} for task in TASKS}
    for d in cfg["ds"]:
        pool, test = task_sets(cfg, d, seeds, n_max)
        for task in TASKS:
            results[task][d] = {}
        for arch in ARCHS:
            loss_fn, eval_fn = fns[arch]
            params0 = init_many(nets[arch], init_keys, (d, 2))
            params0 = jax.tree.map(lambda p: jnp.concatenate([p] * len(TASKS)), params0)
            # the error at initialisation: only where a claim uses it (a compile per shape)
            at_init = (
                np.asarray(evals[arch](params0, test)["test_error"])
                if (arch, d) == ("conv", max(cfg["ds"]))
                else np.full(len(TASKS) * n_seeds, np.nan)
            )
            errs = np.full((len(sizes), len(TASKS) * n_seeds), np.nan)
            for i, n in enumerate(sizes):
                t0 = time.perf_counter()
                res = train.fit_many(
                    loss_fn,
                    params0,
                    optimizer,
                    repeat_to(pool, n, n_max),
                    keys,
                    steps=cfg["steps"],
                    batch_size=min(cfg["batch"], n_max),
                    eval_every=cfg["steps"],
                    eval_fn=eval_fn,
                    eval_data=test,
                    progress=False,
                    per_run_data=True,
                )
                errs[i] = res.history["eval_test_error"][:, -1]
                log(
                    f"  d={d:>4} {arch:>5} n={n:>5}: test error (a) "
                    f"{np.mean(errs[i, :n_seeds]):.3f}, (b) {np.mean(errs[i, n_seeds:]):.3f}"
                    f" ({time.perf_counter() - t0:.1f} s)",
                    flush=True,
                )
                if np.all(errs[i] <= eps_min):
                    break  # larger sizes cannot change any n(eps)
            for t, task in enumerate(TASKS):
                cols = slice(t * n_seeds, (t + 1) * n_seeds)
                results[task][d][arch] = {
                    "test_error": errs[:, cols],
                    "at_init": at_init[cols],
                    "n_params": nn.param_count(jax.tree.map(lambda p: p[0], params0)),
                }
    return results


def n_eps_table(cfg: dict, results: dict, eps: float):
    """``{task: {arch: (n (seeds, n_d), censored, at_first)}}`` at ``eps``."""
    out: dict = {}
    for task, per_d in results.items():
        out[task] = {}
        for arch in ARCHS:
            rows = [
                [
                    size_to_reach(cfg["sizes"], per_d[d][arch]["test_error"][:, s], eps)
                    for d in cfg["ds"]
                ]
                for s in range(per_d[cfg["ds"][0]][arch]["test_error"].shape[1])
            ]
            arr = np.asarray(rows, dtype=object)
            out[task][arch] = tuple(np.asarray(arr[..., j].tolist()) for j in range(3))
    return out


RATIOS = (
    ("fc_over_local", "fc", "local"),
    ("local_over_conv", "local", "conv"),
    ("fc_over_conv", "fc", "conv"),
)


def summarise(cfg: dict, results: dict) -> dict:
    """Per (task, d, arch): test error per size with intervals; per eps: n(eps) with
    intervals, ratios between nets, log-log slopes; all JSON-able."""
    out: dict = {}
    for task, per_d in results.items():
        errors = {}
        for d in cfg["ds"]:
            errors[str(d)] = {}
            for arch in ARCHS:
                r = per_d[d][arch]
                e = r["test_error"]
                ran = ~np.isnan(e[:, 0])
                errors[str(d)][arch] = {
                    "n_params": r["n_params"],
                    "sizes_run": [n for n, ok in zip(cfg["sizes"], ran, strict=True) if ok],
                    "test_error": common.ci(e[ran], axis=1),
                    "test_error_per_seed": e,
                    "at_init": None if np.isnan(r["at_init"]).any() else common.ci(r["at_init"]),
                }
        out[task] = {"errors": errors, "by_eps": {}}
    for eps in cfg["eps"]:
        table = n_eps_table(cfg, results, eps)
        for task in results:
            entry: dict = {"n_eps": {}, "ratios": {}, "slopes": {}, "slope_differences": {}}
            for arch in ARCHS:
                n, cen, first = table[task][arch]
                entry["n_eps"][arch] = {
                    "per_seed": n,
                    "censored": cen,
                    "at_first_size": first,
                    "geometric_mean": [
                        common.interval_dict(_geo(n[:, j], cen[:, j]))
                        for j in range(len(cfg["ds"]))
                    ],
                }
                slopes, up, down = loglog_slopes(cfg["ds"], n, cen)
                entry["slopes"][arch] = {
                    "per_seed": slopes,
                    "interval": common.interval_dict(slope_interval(slopes, up, down)),
                    "paper_order": PAPER_ORDERS[arch],
                }
            for name, a, b in RATIOS:
                (na, ca, _), (nb, cb, _) = table[task][a], table[task][b]
                entry["ratios"][name] = [
                    common.interval_dict(
                        stats.paired_ratio_interval(
                            na[:, j], nb[:, j], censored_a=ca[:, j], censored_b=cb[:, j]
                        )
                    )
                    for j in range(len(cfg["ds"]))
                ]
            for name, a, b in RATIOS:
                sa, ua, da = loglog_slopes(cfg["ds"], *table[task][a][:2])
                sb, ub, db = loglog_slopes(cfg["ds"], *table[task][b][:2])
                iv = stats.difference_interval(sa, sb, paired=True, censored_a=ua, censored_b=ub)
                if np.any(da) or np.any(db):  # a bound that cannot be signed: unknown side
                    iv = iv._replace(
                        low=-math.inf if np.any(da) else iv.low,
                        high=math.inf if np.any(db) else iv.high,
                    )
                entry["slope_differences"][name] = common.interval_dict(iv)
            out[task]["by_eps"][f"{eps:g}"] = entry
    return out


def _geo(n, censored) -> stats.Interval:
    """Geometric mean of one column of n(eps) (t-interval on log n; censored: at least)."""
    iv = stats.mean_interval(np.log(n), censored=censored)
    return iv._replace(estimate=math.exp(iv.estimate), low=math.exp(iv.low), high=math.exp(iv.high))


CLAIMS = {
    "locality_a": stats.Claim(
        "Task (a), fixed position: locality cuts the sample need at the largest d "
        f"(n_fc / n_local above {GAIN_NEEDED:g})",
        "n(eps) of the FC net / n(eps) of the LC net, per seed, largest d",
        "paired_ratio",
        "above",
        GAIN_NEEDED,
        against="the LC net on the same seeds' data",
    ),
    "sharing_b": stats.Claim(
        "Task (b), random position: weight sharing cuts the sample need at the largest d "
        f"(n_local / n_conv above {GAIN_NEEDED:g})",
        "n(eps) of the LC net / n(eps) of the conv net, per seed, largest d",
        "paired_ratio",
        "above",
        GAIN_NEEDED,
        against="the conv net on the same seeds' data",
    ),
    "slope_sharing_b": stats.Claim(
        "Task (b): the LC net's sample need grows faster with d than the conv net's "
        "(Wang & Wu: Omega(d) vs O~(log^2 d)); slope difference above 0.5",
        "log-log slope of n(eps) on d: LC minus conv, per seed",
        "difference",
        "above",
        0.5,
        against="the conv net's slope on the same seeds",
    ),
    "slope_conv_b": stats.Claim(
        "Task (b): the conv net's sample need grows sublinearly in d (slope below 1)",
        "log-log slope of n(eps) on d of the conv net, per seed",
        "mean",
        "below",
        1.0,
    ),
    "slope_locality_a": stats.Claim(
        "Task (a): the FC net's sample need grows faster with d than the LC net's "
        "(Wang & Wu: Omega(d^2) vs O~(d)); slope difference above 0.5",
        "log-log slope of n(eps) on d: FC minus LC, per seed",
        "difference",
        "above",
        0.5,
        against="the LC net's slope on the same seeds",
    ),
    "trained_b": stats.Claim(
        "Baseline: the conv net learns task (b) at all (its error at the largest n and d "
        "is below its error at initialisation by more than 0.1)",
        "test error after training minus at initialisation, conv, task (b), largest d, "
        "largest size run",
        "difference",
        "below",
        -0.1,
        against="the same seeds at initialisation",
    ),
}


def claims_from(cfg: dict, results: dict) -> list[dict]:
    """Evaluates :data:`CLAIMS` at ``eps_claims`` (rules fixed above, before the run)."""
    eps, d_max = cfg["eps_claims"], max(cfg["ds"])
    table = n_eps_table(cfg, results, eps)
    j = cfg["ds"].index(d_max)
    out = []

    def ratio(task, a, b):
        (na, ca, _), (nb, cb, _) = table[task][a], table[task][b]
        return na[:, j], nb[:, j], ca[:, j], cb[:, j]

    for key, task, a, b in (
        ("locality_a", "a", "fc", "local"),
        ("sharing_b", "b", "local", "conv"),
    ):
        va, vb, ca, cb = ratio(task, a, b)
        v = stats.evaluate(CLAIMS[key], va, vb, censored=ca, baseline_censored=cb)
        out.append(
            common.verdict_claim(
                v,
                f"eps={eps:g}, d={d_max}; censored (never reached eps): {a} {int(ca.sum())}, "
                f"{b} {int(cb.sum())} of {len(va)} seeds",
            )
        )
    for key, task, a, b in (
        ("slope_sharing_b", "b", "local", "conv"),
        ("slope_locality_a", "a", "fc", "local"),
    ):
        sa, ua, da = loglog_slopes(cfg["ds"], *table[task][a][:2])
        sb, ub, db = loglog_slopes(cfg["ds"], *table[task][b][:2])
        v = stats.evaluate(CLAIMS[key], sa, sb, censored=ua, baseline_censored=ub)
        if np.any(da) or np.any(db):  # a censored value at a small d: the side is unknown
            iv = v.interval._replace(
                low=-math.inf if np.any(da) else v.interval.low,
                high=math.inf if np.any(db) else v.interval.high,
            )
            v = v._replace(interval=iv, verdict=stats._decide("above", 0.5, iv.low, iv.high))
        out.append(common.verdict_claim(v, f"eps={eps:g}, d in {cfg['ds']}"))
    s, up, down = loglog_slopes(cfg["ds"], *table["b"]["conv"][:2])
    iv = slope_interval(s, up, down)
    v = stats.evaluate(CLAIMS["slope_conv_b"], s, censored=up)
    if np.any(down):
        v = v._replace(interval=iv, verdict=stats._decide("below", 1.0, iv.low, iv.high))
    out.append(common.verdict_claim(v, f"eps={eps:g}; papers: {PAPER_ORDERS['conv']}"))
    r = results["b"][d_max]["conv"]
    e = r["test_error"]
    last = e[~np.isnan(e[:, 0])][-1]
    out.append(common.verdict_claim(stats.evaluate(CLAIMS["trained_b"], last, r["at_init"])))
    return out


# ---- figures and table --------------------------------------------------------------


def figure_curves(run, cfg: dict, results: dict) -> None:
    """Test error vs n for every seed (thin) and the mean (thick), per task and d."""
    ds = cfg["ds"]
    fig, axes = plt.subplots(2, len(ds), figsize=(3.2 * len(ds), 6.2), sharey=True, squeeze=False)
    for r, (task, per_d) in enumerate(results.items()):
        for col, d in enumerate(ds):
            ax = axes[r, col]
            for arch in ARCHS:
                e = per_d[d][arch]["test_error"]
                ran = ~np.isnan(e[:, 0])
                n = np.asarray(cfg["sizes"])[ran]
                ax.plot(n, e[ran], color=COLOURS[arch], lw=0.5, alpha=0.5)
                ax.plot(n, e[ran].mean(axis=1), "o-", color=COLOURS[arch], ms=3, label=LABELS[arch])
            ax.axhline(cfg["eps_claims"], color="0.5", ls=":", lw=1)
            ax.set_xscale("log", base=2)
            ax.set_title(f"{TASK_TITLES[task][:3]} d={d}", fontsize=9)
            ax.grid(alpha=0.3)
            if r == 1:
                ax.set_xlabel("training-set size n")
        axes[r, 0].set_ylabel(f"test error, task {TASK_TITLES[task][:3]}")
    axes[0, 0].legend(fontsize=7)
    fig.suptitle(
        f"Marked parity of k={cfg['k']}; every seed (thin, own data draw) and the mean "
        f"(thick) over {results['a'][ds[0]]['conv']['test_error'].shape[1]} seeds; "
        f"dotted: eps={cfg['eps_claims']:g}",
        fontsize=10,
    )
    run.save_figure(fig, "test_error_vs_n.png")


def figure_scaling(run, cfg: dict, summary: dict) -> None:
    """n(eps) vs d, log-log: every seed (open triangles: censored lower bounds) and the
    geometric mean with its interval."""
    eps = f"{cfg['eps_claims']:g}"
    ds = np.asarray(cfg["ds"], float)
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2), sharey=True)
    for ax, task in zip(axes, ("a", "b"), strict=True):
        e = summary[task]["by_eps"][eps]
        for i, arch in enumerate(ARCHS):
            ne = e["n_eps"][arch]
            n, cen = np.asarray(ne["per_seed"], float), np.asarray(ne["censored"], bool)
            jitter = ds * (1 + 0.04 * (i - 1))
            for s in range(n.shape[0]):
                ax.scatter(jitter[~cen[s]], n[s, ~cen[s]], color=COLOURS[arch], s=8, alpha=0.5)
                ax.scatter(
                    jitter[cen[s]],
                    n[s, cen[s]],
                    color=COLOURS[arch],
                    s=14,
                    marker="^",
                    facecolors="none",
                    alpha=0.7,
                )
            g = ne["geometric_mean"]
            est = np.array([v["estimate"] for v in g])
            lo = np.array([v["low"] for v in g])
            hi = np.array([np.nan if v["high"] is None else v["high"] for v in g])
            ax.plot(jitter, est, "-", color=COLOURS[arch], label=LABELS[arch])
            ax.vlines(
                jitter,
                lo,
                np.where(np.isnan(hi), max(cfg["sizes"]) * 2, hi),
                color=COLOURS[arch],
                lw=1.5,
            )
            sl = e["slopes"][arch]["interval"]
            ax.plot([], [], " ", label=f"  slope {common.fmt_ci(sl, '.2f')}")
        ax.set(xscale="log", yscale="log", xlabel="input length d", title=TASK_TITLES[task])
        ax.axhline(max(cfg["sizes"]), color="0.6", ls="--", lw=1)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    axes[0].set_ylabel(f"n(eps={eps}) (triangles: never reached, lower bound)")
    fig.suptitle(
        "Sample need vs input length: every seed, geometric mean and 95% interval", fontsize=10
    )
    run.save_figure(fig, "n_eps_vs_d.png")


def table_from(cfg: dict, summary: dict) -> str:
    eps = f"{cfg['eps_claims']:g}"
    headers = (
        ["task", "net"]
        + [f"n(eps={eps}), d={d}" for d in cfg["ds"]]
        + [
            "slope (log-log)",
            "papers' order",
        ]
    )
    rows = []
    for task in ("a", "b"):
        e = summary[task]["by_eps"][eps]
        for arch in ARCHS:
            g = e["n_eps"][arch]["geometric_mean"]
            cells = [common.fmt_ci(v, ".3g") for v in g]
            rows.append(
                [
                    task,
                    arch,
                    *cells,
                    common.fmt_ci(e["slopes"][arch]["interval"], ".2f"),
                    PAPER_ORDERS[arch].split(" (")[0],
                ]
            )
    for task in ("a", "b"):
        e = summary[task]["by_eps"][eps]
        for name, _, _ in RATIOS:
            cells = [common.fmt_ci(v, ".3g") for v in e["ratios"][name]]
            rows.append(
                [
                    task,
                    f"ratio {name}",
                    *cells,
                    common.fmt_ci(e["slope_differences"][name], ".2f") + " (diff.)",
                    "",
                ]
            )
    return common.markdown_table(headers, rows)


def main(argv=None) -> dict:
    args = common.make_parser(__doc__).parse_args(argv)
    run = common.start_run(NAME, args, description=__doc__)
    cfg = settings(run.size)
    results = run_grid(cfg, run.seeds)
    summary = summarise(cfg, results)
    figure_curves(run, cfg, results)
    figure_scaling(run, cfg, summary)
    return run.finish(
        config={**cfg, "tasks": TASKS, "archs": list(ARCHS), "paper_orders": PAPER_ORDERS},
        numbers={"tasks": summary, "claims_rules": {k: c.rule() for k, c in CLAIMS.items()}},
        table=table_from(cfg, summary),
        claims=claims_from(cfg, results),
    )


if __name__ == "__main__":
    main()
