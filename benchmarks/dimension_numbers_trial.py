# ruff: noqa  (a measurement script kept as it ran: compact, not library code)
"""Trial: one single-channel convolution written with every arrangement of dimension
numbers, at top level and per step inside a ``lax.scan``, against the window-reversed
``"loop"`` form that ``"auto"`` uses.

The case is a single image's weight gradient (a 256x256 input correlated with a 256x256
"filter", 3x3 outputs; every batch and channel axis has size 1, so all the arrangements
are the same computation). It records the dimension labels of the convolution in the
compiled program, to show when XLA:CPU canonicalizes a convolution for Eigen. Run on a
quiet machine::

    python benchmarks/dimension_numbers_trial.py --out docs/measurements/dimension_numbers_trial.json
"""

import argparse
import itertools
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

STEPS = 8


def per_call(fn, repeats):
    jax.block_until_ready(fn())
    ts = []
    for _ in range(repeats):
        t = time.perf_counter()
        jax.block_until_ready(fn())
        ts.append(time.perf_counter() - t)
    return float(np.median(ts))


def in_scan(f):
    def run(g, x):
        def body(c, _):
            return c + 1e-12 * jnp.sum(f(g, x + c)), None

        return jax.lax.scan(body, jnp.zeros((), x.dtype), length=STEPS)[0]

    return jax.jit(run)


def conv_labels(fn, *args):
    text = jax.jit(fn).lower(*args).compile().as_text()
    line = [l for l in text.splitlines() if "convolution(" in l][0]
    return line.split("dim_labels=")[1].split(",")[0], "rhs_reversal" in line


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", default="dimension_numbers_trial.json")
    p.add_argument("--wait", type=float, default=600.0)
    p.add_argument("--quick", action="store_true", help="a 16x16 image and 2 arrangements")
    args = p.parse_args(argv)
    quiet = machine.wait_for_quiet(max_wait_s=args.wait)
    peak_n = 256 if args.quick else 2048
    start = machine.snapshot(peak_n)
    H, K, pad = (16, 3, 1) if args.quick else (256, 3, 1)
    repeats = 2 if args.quick else 9
    rng = np.random.default_rng(0)
    x = jnp.asarray(rng.standard_normal((H, H)), jnp.float32)
    g = jnp.asarray(rng.standard_normal((H, H)), jnp.float32)

    def shaped(spec, a):
        sizes = iter(a.shape)
        return a.reshape(tuple(next(sizes) if c in "HW" else 1 for c in spec))

    variants = {}
    spec = A.Spec((1, 1), (1, 1), 1, ((pad, pad), (pad, pad)), (K, K))
    # "auto"'s form: XLA's convolution with the filter flipped and the window reversed.
    variants["loop (window reversed, NHWC/HWIO/NHWC)"] = lambda g, x: A.conv_loop(
        x[None, :, :, None], g[:, :, None, None], spec, None
    ).reshape(K, K)
    arrangements = list(
        itertools.product(
            ["NHWC", "CHWN", "HWNC", "NCHW"],
            ["HWIO", "IHWO", "OIHW", "HWOI"],
            ["NHWC", "HWNC", "CHWN"],
        )
    )
    if args.quick:
        arrangements = arrangements[:2]
    for ls, rs, os_ in arrangements:

        def f(g, x, ls=ls, rs=rs, os_=os_):
            out = jax.lax.conv_general_dilated(
                shaped(ls, x),
                shaped(rs, g),
                (1, 1),
                [(pad, pad), (pad, pad)],
                dimension_numbers=(ls, rs, os_),
            )
            return out.reshape(K, K)

        variants[f"{ls}/{rs}/{os_}"] = f
    want = None
    rows = []
    for name, f in variants.items():
        jf = jax.jit(f)
        got = jf(g, x)
        want = got if want is None else want
        err = float(jnp.max(jnp.abs(got - want)) / jnp.max(jnp.abs(want)))
        assert err < 1e-4, (name, err)
        sf = in_scan(f)
        top_labels, top_rev = conv_labels(f, g, x)
        row = {
            "variant": name,
            "compiled_dim_labels_top_level": top_labels,
            "window_reversed": top_rev,
            "top_level_s": per_call(lambda: jf(g, x), repeats),
            "in_scan_per_step_s": per_call(lambda: sf(g, x), repeats) / STEPS,
        }
        rows.append(row)
        print(
            f"{name:42s} {top_labels:22s} top {row['top_level_s'] * 1e3:8.3f} ms  scan/step {row['in_scan_per_step_s'] * 1e3:8.3f} ms",
            flush=True,
        )
    report = {
        "quiet": quiet,
        "start": start,
        "end": machine.snapshot(peak_n),
        "versions": {"jax": jax.__version__},
        "case": f"single image {H}x{H}, weight gradient of a {K}x{K} filter (valid correlation with a {H}x{H} filter, pad {pad})",
        "scan_steps": STEPS,
        "results": rows,
    }
    with open(args.out, "w") as fh:
        json.dump(report, fh, indent=1)
    return report


if __name__ == "__main__":
    main()
