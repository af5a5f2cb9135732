"""Accuracy of convjax's spectral tools (no timings): the numbers quoted in docs/spectral.md.

Usage::

    python benchmarks/spectral_accuracy.py    # writes docs/measurements/spectral.json
    python benchmarks/spectral_accuracy.py --out other.json

Measures, in float64 (``jax_enable_x64``) and float32:

1. ``conv_singular_values`` by the FFT (float64, float32) and by the SVD of the dense
   twin in float32, against the dense twin's SVD in float64 (``method="dense"``, its
   matrix tested equal to a numpy loop in tests/test_spectral.py): the largest
   difference over all singular values, relative to the largest;
2. ``conv_operator_norm``: relative error against the exact largest singular value after
   ``t`` iterations (``tol=0``), and with the defaults (iterations run, converged);
3. ``clip_singular_values``: the norm of the clipped operator (exactly the bound) and the
   measured norm of its projection onto the 3 x 3 support, over repeated clip-and-project
   steps (Sedghi et al.'s alternation).
"""

from __future__ import annotations

import argparse
import datetime
import json
import pathlib
import platform
import sys

import jax

jax.config.update("jax_enable_x64", True)

import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

import convjax  # noqa: E402

CIRC = dict(padding="same", padding_mode="circular")

FFT_CASES = [  # (name, w shape, in_shape, extra options)
    ("1-D L=64 K=5 8->8", (5, 8, 8), 64, {}),
    ("2-D 16x16 3x3 8->8", (3, 3, 8, 8), (16, 16), {}),
    (
        "2-D 8x8 3x3 dilation 2 groups 2 4->6 flip",
        (3, 3, 2, 6),
        (8, 8),
        dict(dilation=2, groups=2, flip=True),
    ),
]


def filt(shape, seed, dtype=jnp.float64):
    return jnp.asarray(np.random.default_rng(seed).standard_normal(shape), dtype)


def fft_accuracy() -> list[dict]:
    rows = []
    for name, shape, in_shape, extra in FFT_CASES:
        w = filt(shape, 0)
        opts = dict(CIRC, **extra)
        dense = np.asarray(convjax.conv_singular_values(w, in_shape, method="dense", **opts))
        row = {"case": name, "count": int(dense.size), "s1": float(dense[0])}
        routes = (("fft", "float64"), ("fft", "float32"), ("dense", "float32"))
        for method, dtype in routes:
            got = convjax.conv_singular_values(w.astype(dtype), in_shape, method=method, **opts)
            err = np.max(np.abs(np.asarray(got, np.float64) - dense)) / dense[0]
            row[f"{method}_rel_error_{dtype}"] = float(err)
        rows.append(row)
    return rows


def power_iteration(n: int, cin: int, seed: int, iterations=(10, 30, 100, 300, 1000)) -> dict:
    """A 3x3 circular layer ``cin -> cin`` on ``n x n``; exact s1 by the FFT."""
    w = filt((3, 3, cin, cin), seed)
    s = np.asarray(convjax.conv_singular_values(w, (n, n), **CIRC))
    row = {"layer": f"2-D {n}x{n} 3x3 {cin}->{cin} circular, seed {seed}", "s1": float(s[0])}
    row["s2_distinct_over_s1"] = float(s[s < s[0] * (1 - 1e-9)][0] / s[0])
    f = jax.jit(
        lambda w, t: convjax.conv_operator_norm(w, (n, n), max_iters=t, tol=0.0, **CIRC).norm,
        static_argnums=1,
    )
    row["rel_error_after"] = {str(t): float((f(w, t) - s[0]) / s[0]) for t in iterations}
    for dtype in ("float64", "float32"):
        est = convjax.conv_operator_norm(w.astype(dtype), (n, n), **CIRC)
        row[f"defaults_{dtype}"] = {
            "iterations": int(est.iterations),
            "converged": bool(est.converged),
            "rel_error": float((float(est.norm) - s[0]) / s[0]),
        }
    return row


def clipping(n: int, c: int, bound: float, steps: int, seed: int = 0) -> dict:
    """He-initialised 3x3 layer ``c -> c`` on ``n x n``, clipped and projected ``steps`` times."""
    w = filt((3, 3, c, c), seed) * np.sqrt(2.0 / (9 * c))
    s1 = float(convjax.conv_singular_values(w, (n, n), **CIRC)[0])
    clip = jax.jit(lambda w: convjax.clip_singular_values(w, (n, n), bound, **CIRC))
    norms, full_norms = [], []
    for _ in range(steps):
        out = clip(w)
        full_norms.append(
            float(
                convjax.conv_singular_values(
                    out.full, (n, n), padding=[(0, n - 1)] * 2, padding_mode="circular"
                )[0]
            )
        )
        norms.append(float(out.projected_norm))
        w = out.projected
    return {
        "layer": f"2-D {n}x{n} 3x3 {c}->{c} circular, He init seed {seed}",
        "bound": bound,
        "s1_before": s1,
        "full_norm_per_step": full_norms,
        "projected_norm_per_step": norms,
    }


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="docs/measurements/spectral.json")
    args = parser.parse_args(argv)
    report = {
        "command": "python benchmarks/spectral_accuracy.py",
        "date": datetime.date.today().isoformat(),
        "versions": {
            "jax": jax.__version__,
            "numpy": np.__version__,
            "python": platform.python_version(),
            "backend": jax.default_backend(),
        },
        "fft_vs_dense": fft_accuracy(),
        "power_iteration": [
            power_iteration(8, 4, 3),
            power_iteration(16, 4, 3),
            power_iteration(32, 4, 3),
            power_iteration(64, 8, 2, iterations=(30, 100)),
        ],
        "clipping": [clipping(16, 16, 1.0, 10), clipping(16, 16, 0.5, 10)],
    }
    path = pathlib.Path(args.out)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(report, indent=1) + "\n")
    json.dump(report, sys.stdout, indent=1)
    return report


if __name__ == "__main__":
    main()
