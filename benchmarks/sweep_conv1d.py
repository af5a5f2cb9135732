"""The long property sweep of conv1d, run on demand: every algorithm, output and gradients.

The check of ``tests/test_conv1d_sweep.py`` (which CI runs over 300 configurations)
over ``--n`` random legal configurations (default 5,000): for each, every algorithm of
``convjax.convolution.ALGORITHMS`` computes the output and the vector-Jacobian product of a
random cotangent in float64, compared with the numpy loop of ``tests/reference.py`` and
its exact adjoint (tolerances: see the test module). Illegal configurations drawn on
the way must be refused by every algorithm.

Usage::

    python benchmarks/sweep_conv1d.py                  # 5,000 configurations
    python benchmarks/sweep_conv1d.py --n 200 --seed 7
    python benchmarks/sweep_conv1d.py --xla-defaults   # XLA's default compile options

Writes a JSON summary (default ``benchmarks/results/sweep_conv1d.json``): the
configuration count, every failure (configuration, algorithm, quantity, errors), the
largest errors per algorithm and quantity, option coverage, wall time and versions.
Exits with status 1 if any check failed. ``docs/semantics.md`` ("Property sweep")
records the last full run.
"""

from __future__ import annotations

import argparse
import datetime
import json
import math
import os
import platform
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, os.pardir, "tests"))


def _json_safe(value):
    """Non-finite floats as strings ("inf"), for strict JSON."""
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_json_safe(v) for v in value]
    return value


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=5000, help="legal configurations to check")
    parser.add_argument("--seed", type=int, default=0, help="numpy seed of the draw")
    parser.add_argument(
        "--xla-defaults",
        action="store_true",
        help="compile with XLA's default options, not the fast-compile ones",
    )
    parser.add_argument(
        "--out",
        default=os.path.join(HERE, "results", "sweep_conv1d.json"),
        help="JSON summary to write",
    )
    args = parser.parse_args(argv)
    if args.n < 1:
        parser.error(f"--n must be >= 1, got {args.n}")

    import jax

    jax.config.update("jax_enable_x64", True)
    import test_conv1d_sweep as sweep_module

    def progress(done, n, failures):
        if done % 100 == 0 or done == n:
            print(f"{done}/{n} configurations, {failures} failures", flush=True)

    options = {} if args.xla_defaults else sweep_module.FAST_COMPILE
    summary = sweep_module.sweep(args.n, args.seed, compile_options=options, progress=progress)
    summary = {
        "command": "python benchmarks/sweep_conv1d.py "
        + " ".join(sys.argv[1:] if argv is None else argv),
        "date": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        **summary,
        "python": platform.python_version(),
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs, {jax.default_backend()}",
    }
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    with open(args.out, "w") as f:
        json.dump(_json_safe(summary), f, indent=1, allow_nan=False)
        f.write("\n")
    worst = {
        a: max(r["bound_used"] for r in per_q.values()) for a, per_q in summary["max_error"].items()
    }
    print(
        f"{summary['configs']} configurations ({summary['illegal_configs']} illegal ones "
        f"refused), {len(summary['failures'])} failures, "
        f"{len(summary['illegal_not_refused'])} illegal ones not refused, "
        f"{summary['wall_s']} s; largest error against its bound's scale: "
        + ", ".join(f"{a} {e:.1e}" for a, e in worst.items())
    )
    print(f"wrote {args.out}")
    return summary


if __name__ == "__main__":
    result = main()
    sys.exit(1 if result["failures"] or result["illegal_not_refused"] else 0)
