"""What the benchmarks record about the machine: load average (and a wait for a quiet
machine) and the float32 matmul peak, measured at the start and the end of a run."""

from __future__ import annotations

import os
import time

import jax
import jax.numpy as jnp
import numpy as np


def wait_for_quiet(threshold: float = 0.5, max_wait_s: float = 600.0, poll_s: float = 10.0):
    """Waits until the 1-minute load average is below ``threshold`` (at most
    ``max_wait_s``). Returns ``{"load_at_start", "waited_s", "quiet"}``; ``quiet`` is
    False when the wait ran out (the run is then recorded as loaded)."""
    t0 = time.monotonic()
    load = os.getloadavg()[0]
    while load >= threshold and time.monotonic() - t0 < max_wait_s:
        time.sleep(poll_s)
        load = os.getloadavg()[0]
    return {
        "load_at_start": load,
        "waited_s": round(time.monotonic() - t0, 1),
        "quiet": bool(load < threshold),
        "threshold": threshold,
    }


def matmul_peak(n: int = 2048, repeats: int = 10) -> dict:
    """Measured float32 throughput of ``jnp.dot`` on two ``n x n`` matrices (GFLOP/s of
    the median and of the best of ``repeats`` warm calls)."""
    a = jax.random.normal(jax.random.key(0), (n, n), jnp.float32)
    b = jax.random.normal(jax.random.key(1), (n, n), jnp.float32)
    f = jax.jit(jnp.dot)
    jax.block_until_ready(f(a, b))
    ts = []
    for _ in range(repeats):
        t = time.perf_counter()
        jax.block_until_ready(f(a, b))
        ts.append(time.perf_counter() - t)
    flops = 2 * n**3
    return {
        "n": n,
        "median_s": float(np.median(ts)),
        "min_s": float(np.min(ts)),
        "gflops_median": flops / np.median(ts) / 1e9,
        "gflops_best": flops / np.min(ts) / 1e9,
    }


def snapshot(peak_n: int = 2048) -> dict:
    """Load averages and the matmul peak, now."""
    return {
        "load_average": list(os.getloadavg()),
        "matmul_peak": matmul_peak(peak_n),
        "time": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
    }
