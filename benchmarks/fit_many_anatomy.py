# ruff: noqa  (a measurement script kept as it ran: compact, not library code)
"""Anatomy of one training step of ``bench_train.py``'s CNN, one run against 16 runs
vmapped (what ``fit_many`` batches), to bound what batching the seeds can gain on CPU.

For the 8- and 32-channel nets it times, on a quiet machine, the jitted step
(``value_and_grad`` + Adam update, a fresh minibatch per run and step, 20 steps in a
``lax.scan`` as in ``fit``'s blocks; times per step) of: the model as is; the
same model with both convolutions replaced by a stand-in of the same output shape
that costs almost nothing (a slice and a broadcast multiply: what remains is the
pooling, the dense head, the loss and the optimizer). If the stand-in model alone,
vmapped over 16 runs, costs as much as 16 sequential steps of the whole model
divided by 2, no convolution route can make ``fit_many`` 2x faster than sequential
``fit`` calls: the bound is printed.

    python benchmarks/fit_many_anatomy.py --out docs/measurements/fit_many_anatomy.json
"""

import argparse
import json
import os
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bench_train as bt
import machine

import convjax

parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
parser.add_argument("--out", default="fit_many_anatomy.json")
parser.add_argument("--runs", type=int, default=16)
parser.add_argument("--repeats", type=int, default=30)
parser.add_argument("--wait", type=float, default=600.0)
parser.add_argument("--channels", type=int, nargs="+", default=[8, 32])
parser.add_argument("--peak-n", type=int, default=2048, help="matmul size of the peak")


def stand_in(x, w):
    # same output shape as conv1d(x, w, padding="same"), almost no work
    return x[..., :1] * w[0, 0].reshape(1, 1, -1)


def make_loss(conv):
    def loss_fn(p, batch):
        h = jax.nn.relu(conv(batch["x"], p["w1"]))
        h = jax.nn.relu(conv(h, p["w2"]))
        logits = jnp.max(h, axis=-2) @ p["v"]
        return optax.losses.softmax_cross_entropy_with_integer_labels(logits, batch["y"]).mean()

    return loss_fn


STEPS = 20  # steps per timed call, inside one lax.scan as in fit's blocks


def step_fn(loss_fn, opt):
    def step(carry, batch):
        p, s = carry
        loss, g = jax.value_and_grad(loss_fn)(p, batch)
        u, s = opt.update(g, s, p)
        return (optax.apply_updates(p, u), s), loss

    def steps(p, s, batches):
        (p, s), losses = jax.lax.scan(step, (p, s), batches)
        return p, s, losses

    return steps


def timed(fn, *a, repeats):
    out = fn(*a)
    jax.block_until_ready(out)
    ts = []
    for _ in range(repeats):
        t = time.perf_counter()
        jax.block_until_ready(fn(*a))
        ts.append(time.perf_counter() - t)
    return float(np.median(ts)), float(np.min(ts))


def main(argv=None):
    args = parser.parse_args(argv)
    quiet = machine.wait_for_quiet(max_wait_s=args.wait)
    start = machine.snapshot(args.peak_n)
    opt = optax.adam(1e-3)
    n = args.runs
    rows = {}
    for ch in args.channels:
        keys = jax.random.split(jax.random.key(0), n)
        params = jax.vmap(lambda k: bt.init(k, ch))(keys)
        states = jax.vmap(opt.init)(params)
        data = jax.vmap(lambda k: bt.make_data(k, STEPS * bt.BATCH))(keys)
        data = jax.tree.map(lambda a: a.reshape(n, STEPS, bt.BATCH, *a.shape[2:]), data)
        one = lambda t: jax.tree.map(lambda a: a[0], t)
        row = {}
        for name, conv in (
            ("model", lambda x, w: convjax.conv1d(x, w, padding="same")),
            ("without convolutions", stand_in),
        ):
            step = step_fn(make_loss(conv), opt)
            single = jax.jit(step)
            batched = jax.jit(jax.vmap(step))
            t1 = [
                t / STEPS
                for t in timed(single, one(params), one(states), one(data), repeats=args.repeats)
            ]
            tn = [t / STEPS for t in timed(batched, params, states, data, repeats=args.repeats)]
            row[name] = {
                "one_run_step_s": {"median": t1[0], "min": t1[1]},
                f"{n}_runs_vmapped_step_s": {"median": tn[0], "min": tn[1]},
                "vmapped_over_one": tn[0] / t1[0],
            }
            print(
                f"{ch:3d} ch {name:22s} one run {t1[0] * 1e3:8.3f} ms   {n} runs vmapped "
                f"{tn[0] * 1e3:8.3f} ms   ratio {tn[0] / t1[0]:6.2f}",
                flush=True,
            )
        seq = n * row["model"]["one_run_step_s"]["median"]
        floor = row["without convolutions"][f"{n}_runs_vmapped_step_s"]["median"]
        row["sequential_step_time_s"] = seq
        row["best_possible_speedup_if_convolutions_were_free"] = seq / floor
        row["measured_vmapped_speedup"] = seq / row["model"][f"{n}_runs_vmapped_step_s"]["median"]
        print(
            f"    sequential {seq * 1e3:.3f} ms; vmapped model {seq / row['measured_vmapped_speedup'] * 1e3:.3f} ms "
            f"({row['measured_vmapped_speedup']:.2f}x); with free convolutions at most "
            f"{row['best_possible_speedup_if_convolutions_were_free']:.2f}x",
            flush=True,
        )
        rows[f"{ch} channels"] = row
    report = {
        "quiet": quiet,
        "start": start,
        "end": machine.snapshot(args.peak_n),
        "runs": n,
        "versions": {"jax": jax.__version__, "convjax": convjax.__version__},
        "results": rows,
    }
    with open(args.out, "w") as f:
        json.dump(report, f, indent=1)
    return report


if __name__ == "__main__":
    main()
