"""convjax.train against the loop a user would write by hand, in one run.

The model (for ``C`` in {8, 32} channels): ``conv1d(1->C, K=5, "same")``, relu,
``conv1d(C->C, K=5, "same")``, relu, global max over length, dense ``C->2``, softmax
cross-entropy, Adam; inputs of length ``L=64``, batches of 128, float32, the default
``algorithm="auto"``. Compared, each as warm calls (compile time excluded after one
warm-up call, reported separately):

* ``fit`` (one block of ``steps`` updates) vs a plain Python loop calling one
  ``jax.jit`` of ``value_and_grad`` + ``optimizer.update`` + ``apply_updates`` on
  minibatches drawn beforehand (the same sizes);
* ``fit_many`` with 16 seeds vs 16 ``fit`` calls one after another;
* ``fit`` steps/s with ``n = 262,144`` training examples vs ``n = 2,048``.

Before starting it waits (up to ``--wait`` seconds) for a 1-minute load average below
0.5 and records whether it got one; it records the load and the matmul peak at the
start and the end.

Usage::

    python benchmarks/bench_train.py                # writes benchmarks/results/train.json
    python benchmarks/bench_train.py --quick --out train_quick.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import machine

import convjax
from convjax import train

L, K, BATCH = 64, 5, 128


def make_data(key, n):
    """Label: does the signal hold a width-5 window whose mean exceeds 0.75?"""
    x = jax.random.normal(key, (n, L, 1), jnp.float32)
    local = convjax.conv1d(x, jnp.full((K, 1, 1), 1.0 / K, jnp.float32))[..., 0]
    y = (jnp.max(local, axis=1) > 0.75).astype(jnp.int32)
    return {"x": x, "y": y}


def init(key, ch):
    k1, k2, k3 = jax.random.split(key, 3)
    return {
        "w1": jax.random.normal(k1, (K, 1, ch), jnp.float32) / np.sqrt(K),
        "w2": jax.random.normal(k2, (K, ch, ch), jnp.float32) / np.sqrt(K * ch),
        "v": jax.random.normal(k3, (ch, 2), jnp.float32) / np.sqrt(ch),
    }


def loss_fn(p, batch):
    h = jax.nn.relu(convjax.conv1d(batch["x"], p["w1"], padding="same"))
    h = jax.nn.relu(convjax.conv1d(h, p["w2"], padding="same"))
    logits = jnp.max(h, axis=-2) @ p["v"]
    return optax.losses.softmax_cross_entropy_with_integer_labels(logits, batch["y"]).mean()


def warm_time(fn, repeats):
    """(first call seconds, best of ``repeats`` warm calls, last result)."""
    t0 = time.perf_counter()
    out = jax.block_until_ready(fn())
    cold = time.perf_counter() - t0
    best = np.inf
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = jax.block_until_ready(fn())
        best = min(best, time.perf_counter() - t0)
    return cold, best, out


def plain_loop(params, opt, data, steps, seed):
    """The hand-written baseline: one jitted step, minibatches drawn beforehand."""

    @jax.jit
    def step(p, s, batch):
        loss, g = jax.value_and_grad(loss_fn)(p, batch)
        updates, s = opt.update(g, s, p)
        return optax.apply_updates(p, updates), s, loss

    rng = np.random.default_rng(seed)
    n = data["y"].shape[0]
    draws = [rng.choice(n, BATCH, replace=False) for _ in range(steps)]
    batches = [jax.tree.map(lambda a, i=i: a[i], data) for i in draws]
    jax.block_until_ready(batches)

    def run():
        p, s = params, opt.init(params)
        p, s, _ = step(p, s, batches[0])  # warm-up call: compile once
        jax.block_until_ready(p)
        t0 = time.perf_counter()
        for b in batches:
            p, s, loss = step(p, s, b)
        jax.block_until_ready(p)
        return time.perf_counter() - t0

    run()
    return min(run() for _ in range(2))


def compare(ch, steps, runs, repeats, n_small, n_large):
    key = jax.random.key(ch)
    opt = optax.adam(1e-3)
    data = make_data(jax.random.fold_in(key, 1), n_small)
    keys = jax.random.split(jax.random.fold_in(key, 3), runs)
    params = jax.vmap(lambda k: init(k, ch))(keys)
    one = jax.tree.map(lambda a: a[0], params)
    kw = dict(steps=steps, batch_size=BATCH, progress=False)
    out = {}

    cold, fit_s, _ = warm_time(
        lambda: train.fit(loss_fn, one, opt, data, keys[0], **kw).params, repeats
    )
    loop_s = plain_loop(one, opt, data, steps, seed=ch)
    out["fit_vs_plain_loop"] = {
        "fit_steps_per_s": steps / fit_s,
        "plain_loop_steps_per_s": steps / loop_s,
        "ratio": loop_s / fit_s,
        "fit_first_call_s": cold,
    }

    _, many_s, _ = warm_time(
        lambda: train.fit_many(loss_fn, params, opt, data, keys, **kw).params, repeats
    )

    def sequential():
        return [
            train.fit(
                loss_fn, jax.tree.map(lambda a, r=r: a[r], params), opt, data, keys[r], **kw
            ).params
            for r in range(runs)
        ]

    _, seq_s, _ = warm_time(sequential, max(1, repeats - 1))
    out["fit_many_vs_sequential"] = {
        "runs": runs,
        "fit_many_s": many_s,
        "sequential_s": seq_s,
        "ratio": seq_s / many_s,
    }

    large = make_data(jax.random.fold_in(key, 2), n_large)
    _, large_s, _ = warm_time(
        lambda: train.fit(loss_fn, one, opt, large, keys[0], **kw).params, repeats
    )
    out["large_n_vs_small_n"] = {
        "n_small": n_small,
        "n_large": n_large,
        "steps_per_s_small": steps / fit_s,
        "steps_per_s_large": steps / large_s,
        "ratio": fit_s / large_s,
    }
    for name, r in out.items():
        print(f"C={ch:2d} {name:24s} ratio {r['ratio']:6.2f}  {r}", flush=True)
    return out


def markdown(report) -> str:
    rows = [
        "| channels | comparison | convjax | baseline | ratio | target |",
        "|---|---|---|---|---|---|",
    ]
    for ch, r in report["results"].items():
        a, b, c = r["fit_vs_plain_loop"], r["fit_many_vs_sequential"], r["large_n_vs_small_n"]
        rows.append(
            f"| {ch} | `fit` vs plain jitted loop (steps/s) | "
            f"{a['fit_steps_per_s']:.0f} | {a['plain_loop_steps_per_s']:.0f} | "
            f"{a['ratio']:.2f}x | >= 1.0x |"
        )
        rows.append(
            f"| {ch} | `fit_many` ({b['runs']} seeds) vs sequential `fit` (s) | "
            f"{b['fit_many_s']:.2f} | {b['sequential_s']:.2f} | {b['ratio']:.2f}x | "
            f">= 2x |"
        )
        rows.append(
            f"| {ch} | `fit` steps/s, n={c['n_large']:,} vs n={c['n_small']:,} | "
            f"{c['steps_per_s_large']:.0f} | {c['steps_per_s_small']:.0f} | "
            f"{c['ratio']:.2f}x | >= 0.8x |"
        )
    return "\n".join(rows)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="tiny sizes (for the test suite)")
    ap.add_argument("--steps", type=int, default=None)
    ap.add_argument("--runs", type=int, default=None, help="seeds for fit_many (default 16)")
    ap.add_argument("--repeats", type=int, default=None)
    ap.add_argument("--channels", default="8,32")
    ap.add_argument(
        "--wait",
        type=float,
        default=None,
        help="seconds to wait for load average < 0.5 (default 600, quick 0)",
    )
    ap.add_argument(
        "--out", default=os.path.join(os.path.dirname(__file__), "results", "train.json")
    )
    args = ap.parse_args(argv)
    steps = args.steps or (6 if args.quick else 300)
    runs = args.runs or (2 if args.quick else 16)
    repeats = args.repeats or (1 if args.quick else 3)
    n_small, n_large = (256, 1024) if args.quick else (2048, 262144)
    quiet = machine.wait_for_quiet(max_wait_s=0 if args.quick else (args.wait or 600))
    start = machine.snapshot(512 if args.quick else 2048)
    results = {}
    for ch in (int(c) for c in args.channels.split(",")):
        results[ch] = compare(ch, steps, runs, repeats, n_small, n_large)
    report = {
        "config": {
            "steps": steps,
            "runs": runs,
            "batch_size": BATCH,
            "L": L,
            "K": K,
            "repeats": repeats,
            "quick": args.quick,
            "optimizer": "adam(1e-3)",
            "model": "conv1d(1->C,K=5,same) relu conv1d(C->C,K=5,same) relu max "
            "dense(C->2), float32, algorithm='auto'",
        },
        "environment": {
            "jax": jax.__version__,
            "convjax": convjax.__version__,
            "backend": jax.default_backend(),
            "cpu_count": os.cpu_count(),
            "python": platform.python_version(),
            "machine": platform.machine(),
        },
        "quiet": quiet,
        "start": start,
        "end": machine.snapshot(512 if args.quick else 2048),
        "results": results,
    }
    report["markdown"] = markdown(report)
    print(report["markdown"])
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    with open(args.out, "w") as f:
        json.dump(report, f, indent=2)
    print(f"wrote {args.out}")
    return report


if __name__ == "__main__":
    main()
