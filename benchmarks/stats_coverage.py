"""Measured coverage of convjax.stats intervals at 10 seeds (the table in docs/statistics.md).

Simulates many experiments of ``--seeds`` draws from known distributions and counts how
often each 95% interval holds the true value. Writes ``stats_coverage.json`` to ``--out``.

Usage:
    python benchmarks/stats_coverage.py --out docs    # docs/stats_coverage.json, ~3 min, 1 core
    python benchmarks/stats_coverage.py --experiments 200 --out /tmp/sc   # quick look
"""

from __future__ import annotations

import argparse
import json
import os
import time

import numpy as np

from convjax import stats


def mean_stat(a):
    return a.mean(axis=-1)


def median_stat(a):
    return np.median(a, axis=-1)


def ratio_stat(a, b):
    return a.mean(axis=-1) / b.mean(axis=-1)


def run(experiments: int, n_boot: int, n: int, seed: int) -> dict:
    rng = np.random.default_rng(seed)
    rows = []

    def record(case, method, hits, count):
        cov = hits / count
        rows.append(
            {
                "case": case,
                "method": method,
                "experiments": count,
                "coverage": cov,
                "standard_error": float(np.sqrt(cov * (1 - cov) / count)),
            }
        )
        print(f"{case:45s} {method:22s} {cov:.3f}", flush=True)

    # t-intervals: vectorised over experiments, so 5x as many
    many = 5 * experiments
    x = rng.normal(size=(n, many))
    record("normal mean", "t", int(np.sum(_covers(stats.mean_interval(x), 0.0))), many)
    for sigma in (0.5, 1.0):
        x = rng.lognormal(0, sigma, size=(n, many))
        truth = float(np.exp(sigma**2 / 2))
        hits = int(np.sum(_covers(stats.mean_interval(x), truth)))
        record(f"lognormal({sigma:g}) mean", "t", hits, many)

    cases = [
        ("normal mean", lambda: [rng.normal(size=n)], mean_stat, 0.0),
        (
            "lognormal(0.5) mean",
            lambda: [rng.lognormal(0, 0.5, n)],
            mean_stat,
            float(np.exp(0.125)),
        ),
        ("lognormal(1) mean", lambda: [rng.lognormal(0, 1, n)], mean_stat, float(np.exp(0.5))),
        ("normal median", lambda: [rng.normal(size=n)], median_stat, 0.0),
        ("exponential median", lambda: [rng.exponential(size=n)], median_stat, float(np.log(2))),
        (
            "ratio of lognormal(0.5) means, unpaired",
            lambda: [rng.lognormal(np.log(2), 0.5, n), rng.lognormal(0, 0.5, n)],
            ratio_stat,
            2.0,
        ),
        (
            "ratio of gamma(4) means, unpaired",
            lambda: [rng.gamma(4, 2, n), rng.gamma(4, 1, n)],
            ratio_stat,
            2.0,
        ),
    ]
    for case, draw, statistic, truth in cases:
        for method, expand in (
            ("percentile", False),
            ("bca", False),
            ("percentile", True),
            ("bca", True),
        ):
            hits = 0
            for _ in range(experiments):
                iv = stats.bootstrap_interval(
                    statistic,
                    *draw(),
                    n_boot=n_boot,
                    method=method,
                    expand=expand,
                    seed=int(rng.integers(1 << 30)),
                )
                hits += bool(_covers(iv, truth))
            record(case, method + ("+expanded" if expand else ""), hits, experiments)

    def pairs():  # a shared lognormal seed effect; E[a] / E[b] = 2
        z = rng.normal(size=n) * 0.5
        return [
            np.exp(np.log(2) + z + 0.2 * rng.normal(size=n)),
            np.exp(z + 0.2 * rng.normal(size=n)),
        ]

    for expand in (True, False):
        hits = 0
        for _ in range(experiments):
            iv = stats.bootstrap_interval(
                ratio_stat,
                *pairs(),
                paired=True,
                n_boot=n_boot,
                expand=expand,
                seed=int(rng.integers(1 << 30)),
            )
            hits += bool(_covers(iv, 2.0))
        record(
            "paired ratio of means (shared seed effect)",
            "bca" + ("+expanded" if expand else ""),
            hits,
            experiments,
        )
    return {
        "seeds_per_experiment": n,
        "n_boot": n_boot,
        "level": 0.95,
        "rng_seed": seed,
        "results": rows,
    }


def _covers(iv, truth):
    return (np.asarray(iv.low) <= truth) & (truth <= np.asarray(iv.high))


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--experiments", type=int, default=4000)
    parser.add_argument("--n-boot", type=int, default=2000)
    parser.add_argument("--seeds", type=int, default=10)
    parser.add_argument("--rng-seed", type=int, default=12345)
    parser.add_argument("--out", default=None, help="folder for stats_coverage.json")
    args = parser.parse_args(argv)
    start = time.perf_counter()
    report = run(args.experiments, args.n_boot, args.seeds, args.rng_seed)
    report["wall_s"] = round(time.perf_counter() - start, 1)
    if args.out:
        os.makedirs(args.out, exist_ok=True)
        with open(os.path.join(args.out, "stats_coverage.json"), "w") as f:
            json.dump(report, f, indent=1)
    return report


if __name__ == "__main__":
    main()
