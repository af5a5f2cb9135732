"""conv2d's algorithms on images, next to lax (and PyTorch when installed): the
measurement behind the 2-D ``"auto"`` rule of :func:`convjax.algorithms.choose`.

Shapes (float32, ``padding="same"`` cross-correlation, channels last):

* (a) one image, ``H = W`` in {64, 256, 1024}, one channel, ``K x K`` with ``K`` in
  {3, 7, 15}: the single-channel rows of the rule (``direct`` against ``fft``);
* (b) CNN layers: a first layer ``B=128, 28x28, 1 -> 16, 5x5``; ``B=64, 32x32,
  16 -> 32, 3x3``; ``B=32, 16x16, 64 -> 64, 3x3`` (the ``xla`` row).

For each shape, every convjax algorithm (and ``"auto"``), forward and
forward+backward (the gradient of ``sum(y * r)`` with respect to input and filter),
plus forward+backward inside a ``lax.scan`` for ``"auto"`` and lax. Timing,
interleaving and the quiet-machine rule are those of ``bench_conv1d.py`` (the load
average and the matmul peak are recorded at start and end).

Usage::

    python benchmarks/bench_conv2d.py            # about two minutes on a quiet machine
    python benchmarks/bench_conv2d.py --quick    # tiny shapes, seconds

Writes ``<out>/conv2d.json`` (default ``benchmarks/results``).
"""

from __future__ import annotations

import argparse
import json
import os
import sys

import jax
import jax.numpy as jnp
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bench_conv1d as b1
import machine

import convjax

ALGOS = ("auto", "xla", "direct", "fft", "matmul")
MATMUL_MAX_BYTES = 512 * 2**20


def shapes(quick: bool):
    """``(label, B, H, Cin, Cout, K)`` for every case."""
    if quick:
        return [("image 16x16 K=3", 1, 16, 1, 1, 3), ("layer B=4 8x8 4->4 K=3", 4, 8, 4, 4, 3)]
    images = [(f"image {h}x{h} K={k}", 1, h, 1, 1, k) for h in (64, 256, 1024) for k in (3, 7, 15)]
    layers = [
        ("layer B=128 28x28 1->16 K=5", 128, 28, 1, 16, 5),
        ("layer B=64 32x32 16->32 K=3", 64, 32, 16, 32, 3),
        ("layer B=32 16x16 64->64 K=3", 32, 16, 64, 64, 3),
    ]
    return images + layers


def contenders(B, H, cin, cout, K, torch):
    rng = np.random.default_rng(0)
    xn = rng.standard_normal((B, H, H, cin)).astype(np.float32)
    wn = (rng.standard_normal((K, K, cin, cout)) / K).astype(np.float32)
    rn = rng.standard_normal((B, H, H, cout)).astype(np.float32)
    x, w, r = jnp.asarray(xn), jnp.asarray(wn), jnp.asarray(rn)
    out = {}
    for a in ALGOS:
        if a == "matmul" and B * H * H * K * K * cin * 4 > MATMUL_MAX_BYTES:
            continue

        def f(x, w, a=a):
            return convjax.conv2d(x, w, padding="same", algorithm=a)

        out[f"convjax.{a}"] = ("convjax", *b1._jax_pair(f, x, w, r))
    lo, hi = (K - 1) // 2, K // 2

    def lax_conv(x, w):
        return jax.lax.conv_general_dilated(
            x, w, (1, 1), [(lo, hi), (lo, hi)], dimension_numbers=("NHWC", "HWIO", "NHWC")
        )

    out["lax.conv_general_dilated"] = ("peer", *b1._jax_pair(lax_conv, x, w, r))
    if torch is not None and K % 2 == 1:
        tconv = torch.nn.functional.conv2d
        tx = torch.from_numpy(np.ascontiguousarray(xn.transpose(0, 3, 1, 2)))
        tw = torch.from_numpy(np.ascontiguousarray(wn.transpose(3, 2, 0, 1)))
        tr = torch.from_numpy(np.ascontiguousarray(rn.transpose(0, 3, 1, 2)))
        txg, twg = tx.clone().requires_grad_(True), tw.clone().requires_grad_(True)

        def tfwd():
            with torch.no_grad():
                return tconv(tx, tw, padding=K // 2)

        def tfwdbwd():
            txg.grad, twg.grad = None, None
            (tconv(txg, twg, padding=K // 2) * tr).sum().backward()
            return txg.grad, twg.grad

        out["torch.conv2d"] = ("peer", tfwd, tfwdbwd, None)
    return out


def run(quick: bool, out_dir: str, budget: float, wait: float) -> dict:
    quiet = machine.wait_for_quiet(max_wait_s=0.0 if quick else wait)
    start = machine.snapshot(256 if quick else 2048)
    torch = b1._torch()
    results = []
    for label, B, H, cin, cout, K in shapes(quick):
        calls = contenders(B, H, cin, cout, K, torch)
        flops = 2 * B * H * H * K * K * cin * cout
        for mode, idx, mult in (("forward", 1, 1), ("forward+backward", 2, 3), ("scan", 3, 3)):
            fns = {n: c[idx] for n, c in calls.items() if c[idx] is not None}
            if mode == "scan":
                fns = {
                    n: f
                    for n, f in fns.items()
                    if n in ("convjax.auto", "lax.conv_general_dilated")
                }
            times = b1.measure(fns, budget_s=budget, min_rounds=3, max_rounds=41)
            row = {
                "case": label,
                "mode": mode,
                "auto_forward": convjax.algorithms.choose(
                    "cpu",
                    length=(H, H),
                    in_channels=cin,
                    out_channels=cout,
                    kernel_size=(K, K),
                    dilation=(1, 1),
                    groups=1,
                ).forward,
                "times_ms": {n: float(np.median(t)) * 1e3 for n, t in times.items()},
                "gflops": {n: mult * flops / np.median(t) / 1e9 for n, t in times.items()},
            }
            lax_t = row["times_ms"]["lax.conv_general_dilated"]
            row["auto_vs_lax"] = lax_t / row["times_ms"]["convjax.auto"]
            convjax_rows = {n: t for n, t in row["times_ms"].items() if n.startswith("convjax.")}
            row["fastest_convjax"] = min(convjax_rows, key=convjax_rows.get)
            results.append(row)
            cells = ", ".join(f"{n.split('.')[-1]} {t:.3f}" for n, t in row["times_ms"].items())
            print(f"{label:32s} {mode:17s} ms: {cells}", flush=True)
    report = {
        "quick": quick,
        "budget_s": budget,
        "quiet": quiet,
        "start": start,
        "end": machine.snapshot(256 if quick else 2048),
        "versions": {"jax": jax.__version__, "convjax": convjax.__version__},
        "results": results,
    }
    os.makedirs(out_dir, exist_ok=True)
    with open(os.path.join(out_dir, "conv2d.json"), "w") as fh:
        json.dump(report, fh, indent=1)
    return report


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="tiny shapes, seconds")
    parser.add_argument("--out", default=os.path.join(os.path.dirname(__file__), "results"))
    parser.add_argument("--budget", type=float, default=0.3, help="seconds per contender")
    parser.add_argument("--wait", type=float, default=600.0, help="seconds to wait for quiet")
    args = parser.parse_args(argv)
    return run(args.quick, args.out, args.budget, args.wait)


if __name__ == "__main__":
    main()
