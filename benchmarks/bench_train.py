"""Steps per second of convjax.train: one run, 16 vmapped seeds, 16 sequential runs.

The model is a small 1-D conv net built from ``convjax.conv1d`` and a params dict
(conv 1->8, relu, conv 8->8, relu, global max, dense 8->2, softmax
cross-entropy) trained with Adam on a synthetic binary task. Every timing is of a
warm call (the block function already compiled, same loss/optimizer objects), the
best of ``--repeats``; the first (cold) call is reported separately as compile +
run time.

Usage::

    python benchmarks/bench_train.py                # writes benchmarks/results/train.json
    python benchmarks/bench_train.py --quick --out train_quick.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax

import convjax
from convjax import train

L, CH, K = 32, 8, 5


def make_data(key, n):
    """Label: does the signal hold a width-5 window whose mean exceeds 0.75 (a motif)?

    The threshold is about the median of the largest window mean of a white-noise
    signal of length 32, so the classes are roughly balanced.
    """
    x = jax.random.normal(key, (n, L, 1))
    local = convjax.conv1d(x, jnp.full((K, 1, 1), 1.0 / K))[..., 0]
    y = (jnp.max(local, axis=1) > 0.75).astype(jnp.int32)
    return {"x": x, "y": y}


def init(key):
    k1, k2, k3 = jax.random.split(key, 3)
    return {
        "w1": jax.random.normal(k1, (K, 1, CH)) / np.sqrt(K),
        "w2": jax.random.normal(k2, (K, CH, CH)) / np.sqrt(K * CH),
        "v": jax.random.normal(k3, (CH, 2)) / np.sqrt(CH),
    }


def model(algorithm):
    """(loss_fn, eval_fn) of the conv net with ``conv1d(..., algorithm=algorithm)``."""

    def logits(p, x):
        h = jax.nn.relu(convjax.conv1d(x, p["w1"], padding="same", algorithm=algorithm))
        h = jax.nn.relu(convjax.conv1d(h, p["w2"], padding="same", algorithm=algorithm))
        return jnp.max(h, axis=-2) @ p["v"]

    def loss_fn(p, batch):
        return train.softmax_cross_entropy(logits(p, batch["x"]), batch["y"])

    def eval_fn(p, data):
        return {"acc": train.accuracy(logits(p, data["x"]), data["y"])}

    return loss_fn, eval_fn


def timed(fn, repeats):
    """(cold seconds, best warm seconds, last result)."""
    t0 = time.perf_counter()
    out = fn()
    cold = time.perf_counter() - t0
    warm = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = fn()
        warm.append(time.perf_counter() - t0)
    return cold, min(warm), out


def measure(algorithm, params, opt, data, test, keys, steps, batch_size, repeats, parallel):
    loss_fn, eval_fn = model(algorithm)
    runs = len(keys)
    kw = dict(steps=steps, batch_size=batch_size, eval_every=steps // 2, eval_fn=eval_fn,
              eval_data=test, progress=False)

    def one(r=0):
        return train.fit(loss_fn, jax.tree.map(lambda a: a[r], params), opt, data, keys[r], **kw)

    def sequential():
        return [one(r) for r in range(runs)]

    def vmapped(parallel=None):
        return train.fit_many(loss_fn, params, opt, data, keys, parallel=parallel, **kw)

    results = {}
    cold, warm, res = timed(one, repeats)
    results["one_run"] = {"cold_s": cold, "warm_s": warm, "steps_per_s": steps / warm,
                          "final_eval_acc": float(res.history["eval_acc"][-1])}
    cold, warm, res = timed(vmapped, repeats)
    results[f"vmapped_{runs}"] = {
        "cold_s": cold, "warm_s": warm, "steps_per_s": steps / warm,
        "run_steps_per_s": runs * steps / warm,
        "final_eval_acc_mean": float(np.mean(res.history["eval_acc"][:, -1])),
    }
    cold, warm, res = timed(sequential, repeats)
    results[f"sequential_{runs}"] = {
        "cold_s": cold, "warm_s": warm, "steps_per_s": steps / warm,
        "run_steps_per_s": runs * steps / warm,
        "final_eval_acc_mean": float(np.mean([r.history["eval_acc"][-1] for r in res])),
    }
    if parallel:
        cold, warm, _ = timed(lambda: vmapped("runs"), repeats)
        results[f"vmapped_{runs}_parallel_runs"] = {
            "cold_s": cold, "warm_s": warm, "run_steps_per_s": runs * steps / warm}
    speedup = results[f"sequential_{runs}"]["warm_s"] / results[f"vmapped_{runs}"]["warm_s"]
    for name, r in results.items():
        rate = r.get("run_steps_per_s", r.get("steps_per_s"))
        print(f"{algorithm:7s} {name:28s} warm {r['warm_s']:8.3f} s  cold {r['cold_s']:8.3f} s"
              f"  {rate:10.1f} run-steps/s", flush=True)
    print(f"{algorithm:7s} vmapped {runs} seeds vs {runs} sequential runs: {speedup:.2f}x "
          "faster", flush=True)
    return results, speedup


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="tiny sizes (for the test suite)")
    ap.add_argument("--steps", type=int, default=None)
    ap.add_argument("--runs", type=int, default=None, help="number of seeds (default 16)")
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--n", type=int, default=1024, help="training examples")
    ap.add_argument("--repeats", type=int, default=None)
    ap.add_argument("--algorithms", default="auto,direct",
                    help="comma-separated conv1d algorithms to time the model with")
    ap.add_argument("--parallel", choices=["runs"], default=None,
                    help="also time fit_many with the runs axis sharded over all devices")
    ap.add_argument("--out", default=os.path.join(os.path.dirname(__file__), "results",
                                                  "train.json"))
    args = ap.parse_args(argv)
    steps = args.steps or (20 if args.quick else 500)
    runs = args.runs or (2 if args.quick else 16)
    repeats = args.repeats or (1 if args.quick else 3)
    n = 64 if args.quick else args.n

    key = jax.random.key(0)
    data = make_data(jax.random.fold_in(key, 1), n)
    test = make_data(jax.random.fold_in(key, 2), 256)
    keys = jax.random.split(jax.random.fold_in(key, 3), runs)
    params = jax.vmap(init)(keys)
    opt = optax.adam(3e-3)

    results, speedups = {}, {}
    for algorithm in args.algorithms.split(","):
        results[algorithm], speedups[algorithm] = measure(
            algorithm, params, opt, data, test, keys, steps, args.batch_size, repeats,
            args.parallel,
        )
    report = {
        "config": {"steps": steps, "runs": runs, "batch_size": args.batch_size, "n": n,
                   "eval_every": steps // 2, "repeats": repeats, "quick": args.quick,
                   "model": f"conv1d(1->{CH},K={K}) relu conv1d({CH}->{CH}) relu max "
                            f"dense({CH}->2), L={L}, adam 3e-3, {params['v'].dtype}"},
        "environment": {"jax": jax.__version__, "backend": jax.default_backend(),
                        "devices": [str(d) for d in jax.devices()],
                        "cpu_count": os.cpu_count(), "python": platform.python_version(),
                        "machine": platform.machine(),
                        "load_average_1min_at_end": os.getloadavg()[0],
                        "date": time.strftime("%Y-%m-%d %H:%M:%S %Z")},
        "results": results,
        "speedup_vmapped_vs_sequential": speedups,
    }
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    with open(args.out, "w") as f:
        json.dump(report, f, indent=2)
    print(f"wrote {args.out}")
    return report


if __name__ == "__main__":
    main()
