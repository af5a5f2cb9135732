# ruff: noqa  (a measurement script kept as it ran: compact, not library code)
"""Trial behind the notes on CNN-layer gradients at top level: the input and weight
gradients of ``"auto"`` (the loop-safe rules) against ``lax`` one by one, the weight
gradient with the input zero-padded before its layout copy (the route before the
inner convolution took the padding itself), two alternatives for the 1-D weight
gradient (im2col patches times the cotangent in one matmul; an einsum over stacked
taps), the 2-D weight gradient written as a 3-D convolution with a unit axis (each
checked against lax's before it is timed), whether XLA:CPU hands a convolution to YNNPACK
(``__ynn_fusion`` in the compiled HLO) at top level and inside a ``lax.scan``, and the
depthwise weight gradient. Run on a quiet machine::

    python benchmarks/cnn_gradient_trial.py --out docs/measurements/cnn_gradient_trial.json
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

import convjax
from convjax import algorithms as A
from convjax import primitive as P

STEPS = 3


def per_call(fn, repeats=7):
    jax.block_until_ready(fn())
    ts = []
    for _ in range(repeats):
        t = time.perf_counter()
        jax.block_until_ready(fn())
        ts.append(time.perf_counter() - t)
    return float(np.median(ts))


def in_scan(f):
    def run(g, x, w):
        def body(c, _):
            return c + 1e-12 * jnp.sum(f(g, x + c, w)), None

        return jax.lax.scan(body, jnp.zeros((), x.dtype), length=STEPS)[0]

    return jax.jit(run)


def ynn(fn, *args):
    """The weight gradient's convolutions in the compiled program: inside a YNNPACK
    fusion, or plain (Eigen or XLA's own loop nest)."""
    text = jax.jit(fn).lower(*args).compile().as_text()
    lines = [l for l in text.splitlines() if "conv_general_dilated" in l and " = " in l]
    return {
        "in_ynn_fusion": sum("__ynn_fusion" in l for l in lines),
        "plain_convolution": sum(" convolution(" in l for l in lines),
    }


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", default="cnn_gradient_trial.json")
    p.add_argument("--wait", type=float, default=600.0)
    p.add_argument("--quick", action="store_true", help="tiny shapes: proves the script runs")
    args = p.parse_args(argv)
    quiet = machine.wait_for_quiet(max_wait_s=args.wait)
    peak_n = 256 if args.quick else 2048
    start = machine.snapshot(peak_n)
    rng = np.random.default_rng(0)
    rows = []
    shapes = [
        (256, (256,), 32, 64, 5),
        (64, (1024,), 64, 64, 3),
        (64, (1024,), 64, 64, 9),
        (64, (32, 32), 16, 32, 3),
        (32, (16, 16), 64, 64, 3),
        (64, (64, 64), 32, 32, 3),
    ]
    if args.quick:
        shapes = [(4, (16,), 3, 5, 3), (2, (6, 7), 2, 3, 3)]
    for B, Ls, ci, co, K in shapes:
        n = len(Ls)
        x = jnp.asarray(rng.standard_normal((B, *Ls, ci)), jnp.float32)
        g = jnp.asarray(rng.standard_normal((B, *Ls, co)), jnp.float32)
        ks = (K,) * n
        w = jnp.asarray(rng.standard_normal((*ks, ci, co)), jnp.float32)
        spec = A.Spec((1,) * n, (1,) * n, 1, ((K // 2, K // 2),) * n, tuple(Ls))
        conv = lambda x, w, a: convjax.conv(x, w, padding="same", algorithm=a)
        fns = {
            "input gradient, auto": lambda g, x, w: jax.vjp(lambda x: conv(x, w, "auto"), x)[1](g)[
                0
            ],
            "input gradient, lax": lambda g, x, w: jax.vjp(lambda x: conv(x, w, "xla"), x)[1](g)[0],
            "weight gradient, auto": lambda g, x, w: jax.vjp(lambda w: conv(x, w, "auto"), w)[1](g)[
                0
            ],
            "weight gradient, lax": lambda g, x, w: jax.vjp(lambda w: conv(x, w, "xla"), w)[1](g)[
                0
            ],
        }

        def padded_first(g, x, w):
            # The earlier route: the input zero-padded before its layout copy, then
            # the same swapped-roles convolution without padding of its own.
            xp = A.zero_pad(x, spec)
            lhs = jnp.moveaxis(xp, (0, n + 1), (n + 1, 0))  # (ci, *Lp, B)
            inner = A.Spec((1,) * n, (1,) * n, 1, ((0, 0),) * n, ks)
            dw = P.conv(lhs, jnp.moveaxis(g, 0, n), inner)  # (ci, *K, co)
            return jnp.moveaxis(dw, 0, n)

        fns["weight gradient, input padded before its layout copy"] = padded_first
        if n == 1:
            lout = Ls[0]

            def im2col(g, x, w):
                xp = jnp.pad(x, ((0, 0), spec.pads[0], (0, 0)))
                pt = jnp.concatenate([xp[:, k : k + lout] for k in range(K)], -1).reshape(
                    B * lout, K * ci
                )
                dw = jax.lax.dot_general(pt, g.reshape(B * lout, co), (((0,), (0,)), ((), ())))
                return dw.reshape(K, ci, co)

            def einsum(g, x, w):
                xp = jnp.pad(x, ((0, 0), spec.pads[0], (0, 0)))
                return jnp.einsum(
                    "kboa,boc->kac", jnp.stack([xp[:, k : k + lout] for k in range(K)]), g
                )

            fns["weight gradient, im2col matmul"] = im2col
            fns["weight gradient, einsum over taps"] = einsum
        else:
            p_ = K // 2
            xp = jnp.pad(x, ((0, 0), (p_, p_), (p_, p_), (0, 0)))

            def three_d(g, x, w):
                xp = jnp.pad(x, ((0, 0), (p_, p_), (p_, p_), (0, 0)))
                lhs = jnp.moveaxis(xp, (0, 3), (3, 0))[:, None]
                rhs = jnp.moveaxis(g, 0, 2)[None]
                dw = jax.lax.conv_general_dilated(
                    lhs, rhs, (1, 1, 1), "VALID", dimension_numbers=("NDHWC", "DHWIO", "NDHWC")
                )  # (ci, 1, K, K, co)
                return jnp.moveaxis(dw[:, 0], 0, 2)

            fns["weight gradient, as a 3-D convolution"] = three_d
        row = {
            "case": f"B={B} {'x'.join(map(str, Ls))} {ci}->{co} K={K}",
            "top_level_s": {},
            "in_scan_per_step_s": {},
        }
        want = jax.jit(fns["weight gradient, lax"])(g, x, w)
        for name, f in fns.items():
            jf = jax.jit(f)
            if name.startswith("weight"):
                got = jf(g, x, w)
                err = float(jnp.max(jnp.abs(got - want)) / jnp.max(jnp.abs(want)))
                assert got.shape == want.shape and err < 1e-4, (name, err)
            row["top_level_s"][name] = per_call(lambda: jf(g, x, w))
            if not name.endswith("lax"):  # lax's gradients inside a scan: see bench_conv1d
                sf = in_scan(f)
                row["in_scan_per_step_s"][name] = per_call(lambda: sf(g, x, w), 3) / STEPS
        wg = fns["weight gradient, auto"]
        row["weight_gradient_auto_convolutions"] = {
            "top_level": ynn(wg, g, x, w),
            "in_scan": ynn(in_scan(wg), g, x, w),
        }
        rows.append(row)
        print(
            row["case"],
            {k: round(v * 1e3, 2) for k, v in row["top_level_s"].items()},
            {k: round(v * 1e3, 2) for k, v in row["in_scan_per_step_s"].items()},
            row["weight_gradient_auto_convolutions"],
            flush=True,
        )
    # depthwise: 64 groups of one channel, batch 64
    B, L, C, K = (2, 16, 4, 3) if args.quick else (64, 1024, 64, 3)
    x = jnp.asarray(rng.standard_normal((B, L, C)), jnp.float32)
    g = jnp.asarray(rng.standard_normal((B, L, C)), jnp.float32)
    w0 = jnp.zeros((K, 1, C), jnp.float32)
    dw = {
        a: jax.jit(
            lambda g, x, a=a: jax.vjp(
                lambda w: convjax.conv1d(x, w, padding="same", groups=C, algorithm=a), w0
            )[1](g)[0]
        )
        for a in ("auto", "xla")
    }
    depthwise = {f"weight gradient, {a}": per_call(lambda: f(g, x)) for a, f in dw.items()}
    print("depthwise", {k: round(v * 1e3, 2) for k, v in depthwise.items()}, flush=True)
    report = {
        "quiet": quiet,
        "start": start,
        "end": machine.snapshot(peak_n),
        "versions": {"jax": jax.__version__},
        "scan_steps": STEPS,
        "results": rows,
        "depthwise": {"case": f"B={B} L={L} C={C} K={K} (top level, s)", **depthwise},
    }
    with open(args.out, "w") as f:
        json.dump(report, f, indent=1)
    return report


if __name__ == "__main__":
    main()
