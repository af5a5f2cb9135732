"""Digits: conv vs locally connected vs dense twin vs eFCN on real 8x8 images.

Data: scikit-learn's handwritten digits (``sklearn.datasets.load_digits``: 1,797
grey 8x8 images, 10 classes, shipped inside the package, no download), pixels
scaled to [0, 1]. One fixed shuffle (``data_seed``) splits them into a test set of
``n_test`` images and a training pool; the training set of size ``n`` is the first
``n`` images of the pool (nested sets), repeated to the largest size so every size
runs under one compiled program per model (as in ``sample_efficiency``).

Models (one mechanism, three tyings of the first layer, everything else equal):
``first(C channels, 3x3, "same") -> relu -> MaxPool2D(2) -> Flatten(2) -> Dense(10)``
with ``first`` one of ``nn.Conv2D`` (tied), ``nn.LocallyConnected2D`` (one filter
per pixel) or the dense twin ``nn.Dense(C, kernel_size=(3, 3), padding="same")``
(every entry of the ``(64*C, 64)`` matrix free). The eFCN (d'Ascoli et al. 2019)
trains the conv net for half the steps, embeds it exactly into its dense twin
(``nn.move(params, structures, "dense")``) and trains that for the other half.

Training: Adam, softmax cross-entropy, minibatches, the same number of steps for
every size and model; seeds (vmapped by ``convjax.train.fit_many``) change the
initialisation and the minibatch order, the data are the same for every seed.

Statistics (``convjax.stats``): the mean test error per (model, size) with its
Student-t 95% interval over seeds; each claim is decided on the paired (same
seeds) interval of a difference of test errors: "holds" when the whole interval
is on the claimed side, "fails" when it is on the other side, otherwise undecided.
"""

from __future__ import annotations

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

NAME = "digits"
F32 = jnp.float32
ARCHS = ("conv", "local", "dense", "efcn")
LABELS = {
    "conv": "conv (Conv2D)",
    "local": "locally connected",
    "dense": "dense twin",
    "efcn": "eFCN (conv, then dense)",
}
COLOURS = {"conv": "#4c72b0", "local": "#55a868", "dense": "#c44e52", "efcn": "#8172b2"}


def settings(size: str) -> dict:
    """Every setting the numbers depend on, for ``size`` in tiny / quick / full."""
    return {
        "channels": common.pick(size, tiny=4, quick=8, full=16),
        "kernel": 3,
        "sizes": common.pick(
            size, tiny=[20, 40], quick=[50, 200, 800], full=[25, 50, 100, 200, 400, 800]
        ),
        "n_test": common.pick(size, tiny=200, quick=500, full=500),
        "steps": common.pick(size, tiny=20, quick=300, full=1000),
        "batch": common.pick(size, tiny=10, quick=32, full=32),
        "learning_rate": 0.005,
        "optimizer": "adam",
        "data_seed": 0,
    }


def load(cfg: dict):
    """``(pool, test)`` Datasets of ``(n, 8, 8, 1)`` float32 images and int labels."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    x = (digits.images / 16.0).astype(np.float32)[..., None]
    y = digits.target.astype(np.int32)
    order = np.random.default_rng(cfg["data_seed"]).permutation(len(y))
    x, y = x[order], y[order]
    n_test = cfg["n_test"]
    test = data.Dataset(jnp.asarray(x[:n_test]), jnp.asarray(y[:n_test]))
    pool = data.Dataset(jnp.asarray(x[n_test:]), jnp.asarray(y[n_test:]))
    return pool, test


def first_layer(arch: str, channels: int, k: int):
    """``(..., 8, 8, 1) -> (..., 8, 8, channels)`` in one of the three kinds."""
    conv = nn.Conv2D(channels, k, padding="same", dtype=F32)
    return conv if arch == "conv" else nn.twin(conv, arch)


def model(arch: str, channels: int, k: int):
    return nn.serial(
        first_layer(arch, channels, k),
        nn.Relu,
        nn.MaxPool2D(2),
        nn.Flatten(2),
        nn.Dense(10, dtype=F32),
    )


def repeat_to(ds: data.Dataset, n: int, n_max: int) -> data.Dataset:
    reps = -(-n_max // n)
    x = jnp.tile(ds.x[:n], (reps, 1, 1, 1))[:n_max]
    return data.Dataset(x, jnp.tile(ds.y[:n], reps)[:n_max])


def fns(net):
    def loss_fn(params, batch):
        return train.softmax_cross_entropy(net.apply(params, batch.x), batch.y)

    def eval_fn(params, test):
        return {"test_error": 1.0 - train.accuracy(net.apply(params, test.x), test.y)}

    return loss_fn, eval_fn


def run_grid(cfg: dict, seeds, *, log=print) -> dict:
    """``results[arch]``: test errors of shape ``(n_sizes, n_seeds)`` and ``n_params``."""
    pool, test = load(cfg)
    sizes, n_max = list(cfg["sizes"]), max(cfg["sizes"])
    keys = common.seed_keys(seeds)
    init_keys = jax.vmap(lambda k: jax.random.fold_in(k, 0))(keys)
    train_keys = jax.vmap(lambda k: jax.random.fold_in(k, 1))(keys)
    c, k = cfg["channels"], cfg["kernel"]
    nets = {a: model(a, c, k) for a in ("conv", "local", "dense")}
    loss_eval = {a: fns(net) for a, net in nets.items()}
    optimizer = optax.adam(cfg["learning_rate"])
    shape = (8, 8, 1)
    ss = nn.structures(nets["conv"], shape)

    def fit(arch, params, train_set, steps, keys):
        loss_fn, eval_fn = loss_eval[arch]
        return train.fit_many(
            loss_fn,
            params,
            optimizer,
            train_set,
            keys,
            steps=steps,
            batch_size=cfg["batch"],
            eval_every=steps,
            eval_fn=eval_fn,
            eval_data=test,
            progress=False,
        )

    results = {a: {"test_error": [], "n_params": None} for a in ARCHS}
    for arch in ("conv", "local", "dense"):
        p0 = jax.jit(jax.vmap(lambda key, a=arch: nets[a].init(key, shape)[1]))(init_keys)
        results[arch]["n_params"] = nn.param_count(jax.tree.map(lambda p: p[0], p0))
        results[arch]["init"] = p0
    results["efcn"]["n_params"] = results["dense"]["n_params"]
    half = cfg["steps"] // 2
    for n in sizes:
        t0 = time.perf_counter()
        train_set = repeat_to(pool, n, n_max)
        for arch in ("conv", "local", "dense"):
            res = fit(arch, results[arch]["init"], train_set, cfg["steps"], train_keys)
            results[arch]["test_error"].append(np.asarray(res.history["eval_test_error"][:, -1]))
        # eFCN: the conv for half the steps, embedded exactly, then the dense twin
        first = fit("conv", results["conv"]["init"], train_set, half, train_keys)
        embedded = jax.vmap(lambda p: nn.move(p, ss, "dense"))(first.params)
        later = jax.vmap(lambda k: jax.random.fold_in(k, 2))(train_keys)
        res = fit("dense", embedded, train_set, cfg["steps"] - half, later)
        results["efcn"]["test_error"].append(np.asarray(res.history["eval_test_error"][:, -1]))
        means = ", ".join(f"{a} {np.mean(results[a]['test_error'][-1]):.3f}" for a in ARCHS)
        log(f"  n={n:>5}: test error {means} ({time.perf_counter() - t0:.1f} s)")
    for arch in ARCHS:
        results[arch]["test_error"] = np.stack(results[arch]["test_error"])
        results[arch].pop("init", None)
    return results


def summarise(cfg: dict, results: dict) -> dict:
    out = {}
    for arch, r in results.items():
        intervals = [stats.mean_interval(e) for e in r["test_error"]]
        out[arch] = {
            "n_params": r["n_params"],
            "test_error_per_seed": r["test_error"],
            "test_error": [iv.as_dict() for iv in intervals],
        }
    return out


def verdicts(cfg: dict, results: dict) -> list:
    """The claims, each decided on a paired interval of a difference of test errors."""
    err = {a: r["test_error"] for a, r in results.items()}
    small, large = cfg["sizes"][0], cfg["sizes"][-1]
    j_large = len(cfg["sizes"]) - 1
    rows = [
        (
            stats.Claim(
                "the conv net has a lower test error than its dense twin",
                f"test error at n={small}",
                "difference",
                "below",
                0.0,
                against="dense twin, same seeds",
            ),
            err["conv"][0],
            err["dense"][0],
        ),
        (
            stats.Claim(
                "locality alone (locally connected) beats the dense twin",
                f"test error at n={small}",
                "difference",
                "below",
                0.0,
                against="dense twin, same seeds",
            ),
            err["local"][0],
            err["dense"][0],
        ),
        (
            stats.Claim(
                "weight sharing beats locality alone (conv below locally connected)",
                f"test error at n={small}",
                "difference",
                "below",
                0.0,
                against="locally connected, same seeds",
            ),
            err["conv"][0],
            err["local"][0],
        ),
        (
            stats.Claim(
                "the eFCN (conv embedded in its dense twin halfway) beats the dense twin "
                "trained from scratch",
                f"test error at n={large}",
                "difference",
                "below",
                0.0,
                against="dense twin, same seeds",
            ),
            err["efcn"][j_large],
            err["dense"][j_large],
        ),
    ]
    return [stats.evaluate(claim, a, b) for claim, a, b in rows]


def figure(run, cfg: dict, summary: dict) -> None:
    sizes = np.asarray(cfg["sizes"])
    fig, ax = plt.subplots(figsize=(6.5, 4.2))
    for arch, s in summary.items():
        mean = np.array([iv["estimate"] for iv in s["test_error"]])
        lo = np.array([iv["low"] for iv in s["test_error"]])
        hi = np.array([iv["high"] for iv in s["test_error"]])
        ax.plot(sizes, mean, "o-", color=COLOURS[arch], label=LABELS[arch])
        ax.fill_between(sizes, lo, hi, color=COLOURS[arch], alpha=0.15, lw=0)
    ax.set_xscale("log")
    ax.set_xticks(sizes, [str(n) for n in sizes])
    ax.xaxis.set_minor_formatter(plt.NullFormatter())
    ax.set_xlabel("training-set size n (log scale)")
    ax.set_ylabel("test error (mean, band: 95% t interval over seeds)")
    ax.set_title(
        f"sklearn digits 8x8; C={cfg['channels']}, {cfg['steps']} Adam steps, "
        f"{len(run.seeds)} seeds",
        fontsize=10,
    )
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    run.save_figure(fig, "test_error_vs_n.png")


def table_from(cfg: dict, summary: dict) -> str:
    headers = ["model", "params"] + [f"n={n}" for n in cfg["sizes"]]
    rows = []
    for arch, s in summary.items():
        cells = [
            f"{iv['estimate']:.3f} [{iv['low']:.3f}, {iv['high']:.3f}]"
            if iv["low"] is not None
            else f"{iv['estimate']:.3f}"
            for iv in s["test_error"]
        ]
        rows.append([LABELS[arch], s["n_params"], *cells])
    return common.markdown_table(headers, rows)


def main(argv=None) -> dict:
    args = common.make_parser(__doc__).parse_args(argv)
    run = common.start_run(NAME, args, description=__doc__)
    cfg = settings(run.size)
    results = run_grid(cfg, run.seeds)
    summary = summarise(cfg, results)
    figure(run, cfg, summary)
    vs = verdicts(cfg, results)
    claims = [common.verdict_claim(v) for v in vs]
    return run.finish(
        config={**cfg, "archs": list(ARCHS)},
        numbers={"models": summary, "verdicts": [v.as_dict() for v in vs]},
        table=table_from(cfg, summary) + "\n\n" + stats.claims_table(vs),
        claims=claims,
    )


if __name__ == "__main__":
    main()
