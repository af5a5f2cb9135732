"""GPU check of conv1d's algorithms and of the "auto" rule (about 3 minutes).

Times, on the GPU, "xla", "auto" and each algorithm (forward and forward+backward,
float32) on the CNN shapes of ``bench_conv1d.py``, a depthwise layer and long
single-channel signals, and says for each shape whether "auto" is slower than XLA
(the rule off CPU is meant never to be). Prints a table and writes
``$OUT/gpu_check.json`` (``benchmarks/results/gpu_check.json`` when ``OUT`` is unset).

If jax has no GPU backend it says so and exits 0. Run it with ``gpu_check.sh``,
which installs ``jax[cuda12]`` first.
"""

from __future__ import annotations

import json
import os
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench_conv1d import measure

ALGOS = ("auto", "xla", "direct", "fft", "matmul")
# label, x shape, w shape, options
SHAPES = [
    ("layer B=64 L=1024 64->64 K=3", (64, 1024, 64), (3, 64, 64), {"padding": "same"}),
    ("layer B=64 L=1024 64->64 K=9", (64, 1024, 64), (9, 64, 64), {"padding": "same"}),
    ("layer B=256 L=256 32->64 K=5", (256, 256, 32), (5, 32, 64), {"padding": "same"}),
    (
        "depthwise B=64 L=1024 C=64 K=9",
        (64, 1024, 64),
        (9, 1, 64),
        {"padding": "same", "groups": 64},
    ),
    ("signal L=1e5 K=31", (10**5, 1), (31, 1, 1), {"padding": "full", "flip": True}),
    ("signal L=1e6 K=255", (10**6, 1), (255, 1, 1), {"padding": "full", "flip": True}),
]


def _calls(conv1d, x, w, r, options, algorithm):
    """Zero-argument (forward, forward+backward) calls of one algorithm."""

    def f(x, w):
        return conv1d(x, w, **options, algorithm=algorithm)

    fwd = jax.jit(f)
    grad = jax.jit(jax.grad(lambda x, w: jnp.sum(f(x, w) * r), argnums=(0, 1)))
    return (lambda: jax.block_until_ready(fwd(x, w))), (lambda: jax.block_until_ready(grad(x, w)))


def main(budget_s: float = 0.4) -> int:
    backend = jax.default_backend()
    if backend != "gpu":
        print(
            f"gpu_check: jax has no GPU backend (default backend: {backend!r}, devices: "
            f"{jax.devices()}); nothing to check. Install jax with CUDA "
            "(pip install 'jax[cuda12]') and rerun."
        )
        return 0
    import convjax
    from convjax import algorithms

    t_start = time.perf_counter()
    rows = []
    for label, xs, ws, options in SHAPES:
        kx, kw, kr = jax.random.split(jax.random.key(0), 3)
        x = jax.random.normal(kx, xs, jnp.float32)
        w = jax.random.normal(kw, ws, jnp.float32) / np.sqrt(ws[0] * ws[1])
        y_shape = jax.eval_shape(lambda x, w, o=options: convjax.conv1d(x, w, **o), x, w).shape
        r = jax.random.normal(kr, y_shape, jnp.float32)
        calls = {}
        for a in ALGOS:
            calls[("forward", a)], calls[("forward+backward", a)] = _calls(
                convjax.conv1d, x, w, r, options, a
            )
        choice = algorithms.choose(
            "gpu",
            length=xs[-2],
            in_channels=xs[-1],
            out_channels=ws[-1],
            kernel_size=ws[0],
            dilation=options.get("dilation", 1),
            groups=options.get("groups", 1),
        )
        for mode in ("forward", "forward+backward"):
            times = measure(
                {a: calls[(mode, a)] for a in ALGOS}, budget_s=budget_s, min_rounds=5, max_rounds=50
            )
            med = {a: float(np.median(ts)) for a, ts in times.items()}
            best = min(med, key=med.get)
            # Where auto picks xla/xla it runs the same program as xla: any gap is noise.
            same = (choice.forward, choice.gradient) == ("xla", "xla")
            row = {
                "shape": label,
                "mode": mode,
                "auto_choice": [choice.forward, choice.gradient],
                "median_s": med,
                "fastest": best,
                "auto_over_xla": med["auto"] / med["xla"],
                "auto_is_xla_program": same,
                "auto_slower_than_xla": (not same) and med["auto"] > 1.1 * med["xla"],
            }
            rows.append(row)
            print(
                f"{label:<34} {mode:<17} auto={choice.forward}/{choice.gradient:<7} "
                + "  ".join(f"{a}={med[a] * 1e3:.3f}ms" for a in ALGOS)
                + f"  fastest={best}  auto/xla={row['auto_over_xla']:.2f}",
                flush=True,
            )
    report = {
        "devices": [str(d) for d in jax.devices()],
        "jax": jax.__version__,
        "rows": rows,
        "seconds": time.perf_counter() - t_start,
        "auto_ever_slower_than_xla": any(r["auto_slower_than_xla"] for r in rows),
    }
    out = os.environ.get("OUT") or os.path.join(os.path.dirname(__file__), "results")
    os.makedirs(out, exist_ok=True)
    with open(os.path.join(out, "gpu_check.json"), "w") as fh:
        json.dump(report, fh, indent=1)
    print(
        f"gpu_check: done in {report['seconds']:.0f}s; auto slower than xla (>10%) on "
        f"{sum(r['auto_slower_than_xla'] for r in rows)} of {len(rows)} rows; wrote "
        f"{os.path.join(out, 'gpu_check.json')}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
