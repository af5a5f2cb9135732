# ruff: noqa  (a measurement script kept as it ran: compact, not library code)
"""Trial behind the CPU rule for one channel pair per group (``algorithms.loop_beats_fft``
and the choice of ``"loop"`` over ``"direct"``): the forward pass of one signal / one
image by each algorithm, at top level and per step inside an 8-step ``lax.scan`` (the
input changes every step), timed as medians of back-to-back calls; and the weight
gradient of signals by the three routes of ``algorithms.weight_gradient_route``. Run on a quiet
machine::

    python benchmarks/loop_route_trial.py --out docs/measurements/loop_route_trial.json
"""

import argparse
import json
import os
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import machine

from convjax import algorithms as A
from convjax import primitive as P

STEPS = 8


def per_call(fn, target_s=0.05, samples=7):
    jax.block_until_ready(fn())
    t = time.perf_counter()
    jax.block_until_ready(fn())
    n = max(1, int(target_s / max(time.perf_counter() - t, 1e-7)))
    ts = []
    for _ in range(samples):
        t = time.perf_counter()
        for _ in range(n):
            jax.block_until_ready(fn())
        ts.append((time.perf_counter() - t) / n)
    return float(np.median(ts))


def case(x, w, spec, algos, fns=None):
    row = {}
    for a in algos:
        f = fns[a] if fns else (lambda x, w, a=a: A.IMPLS[a](x, w, spec, None))
        top = jax.jit(f)

        def run(x, w, f=f):
            def body(c, _):
                return c + 1e-12 * jnp.sum(f(x + c, w)), None

            return jax.lax.scan(body, jnp.zeros((), x.dtype), length=STEPS)[0]

        scan = jax.jit(run)
        row[a] = {
            "top_level_s": per_call(lambda: top(x, w)),
            "in_scan_per_step_s": per_call(lambda: scan(x, w)) / STEPS,
        }
    return row


def record(rows, r):
    rows.append(r)
    times = {
        a: (v["top_level_s"] * 1e6, v["in_scan_per_step_s"] * 1e6) for a, v in r["rows"].items()
    }
    print(r["case"], {a: (round(t, 1), round(s, 1)) for a, (t, s) in times.items()}, flush=True)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", default="loop_route_trial.json")
    p.add_argument("--wait", type=float, default=600.0)
    p.add_argument("--quick", action="store_true")
    args = p.parse_args(argv)
    quiet = machine.wait_for_quiet(max_wait_s=args.wait)
    start = machine.snapshot(256 if args.quick else 2048)
    rng = np.random.default_rng(0)
    rows = []
    signals = (
        [(1000, 3)]
        if args.quick
        else [(L, K) for L in (10**3, 10**4, 10**5, 10**6) for K in (3, 31, 63, 127, 255)]
    )
    for L, K in signals:
        x = jnp.asarray(rng.standard_normal((1, L, 1)), jnp.float32)
        w = jnp.asarray(rng.standard_normal((K, 1, 1)), jnp.float32)
        spec = A.Spec((1,), (1,), 1, ((K - 1, K - 1),), (L + K - 1,))
        algos = ("loop", "fft", "xla") + (("direct",) if K <= 63 else ())
        r = {"case": f"signal L={L:g} K={K}", "rows": case(x, w, spec, algos)}
        record(rows, r)
    images = [(32, 3)] if args.quick else [(H, K) for H in (64, 256, 1024) for K in (3, 5, 7)]
    for H, K in images:
        x = jnp.asarray(rng.standard_normal((1, H, H, 1)), jnp.float32)
        w = jnp.asarray(rng.standard_normal((K, K, 1, 1)), jnp.float32)
        p_ = K // 2
        spec = A.Spec((1, 1), (1, 1), 1, ((p_, p_), (p_, p_)), (H, H))
        r = {
            "case": f"image {H}x{H} K={K}",
            "rows": case(x, w, spec, ("loop", "direct", "fft", "xla")),
        }
        record(rows, r)
    grads = (
        [(1, 1000, 3)]
        if args.quick
        else [
            (B, L, K)
            for B, L in ((1, 10**4), (1, 10**5), (1, 10**6), (8, 4096))
            for K in (3, 7, 31)
        ]
    )
    for B, L, K in grads:
        x = jnp.asarray(rng.standard_normal((B, L, 1)), jnp.float32)
        g = jnp.asarray(rng.standard_normal((B, L - K + 1, 1)), jnp.float32)
        spec = A.Spec((1,), (1,), 1, ((0, 0),), (L - K + 1,))
        fns = {
            "loop": lambda x, g, K=K, spec=spec: P._weight_gradient_conv(
                g, x, (K,), 1, spec, None, "loop"
            ),
            "taps": lambda x, g, K=K, spec=spec: P._weight_gradient_taps(g, x, (K,), 1, spec, None),
            "conv (own choice)": lambda x, g, K=K, spec=spec: P._weight_gradient_conv(
                g, x, (K,), 1, spec, None
            ),
        }
        r = {
            "case": f"weight gradient B={B} L={L:g} K={K}",
            "rows": case(x, g, spec, list(fns), fns),
        }
        record(rows, r)
    report = {
        "quiet": quiet,
        "start": start,
        "end": machine.snapshot(256 if args.quick else 2048),
        "versions": {"jax": jax.__version__},
        "scan_steps": STEPS,
        "results": rows,
    }
    with open(args.out, "w") as f:
        json.dump(report, f, indent=1)
    return report


if __name__ == "__main__":
    main()
