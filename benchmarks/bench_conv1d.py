"""conv1d against the field: every convjax algorithm and "auto" next to lax, jnp,
jax.scipy, numpy, scipy and (when installed) PyTorch, in one run.

Shapes (float32):

* (a) one signal, ``L`` in {1e3, 1e4, 1e5, 1e6} x ``K`` in {3, 31, 255}: a true
  convolution, ``mode="full"`` (numpy's default);
* (b) a CNN layer, ``B=64, L=1024, 64 -> 64`` channels, ``K`` in {3, 9},
  ``padding="same"`` cross-correlation;
* (c) ``B=256, L=256, 32 -> 64``, ``K=5``, same.

For each shape, forward and forward+backward (the gradient of ``sum(y * r)`` with
respect to the input and the filter; numpy and scipy have no backward). Reported:
median and minimum wall time over interleaved rounds (every contender once per
round, so a burst of load from other processes hits all of them alike), nominal
GFLOP/s (``2 * MACs`` of the direct sum, forward; three times that with the
backward), and the ratio of the best peer's median to convjax "auto"'s median
(> 1: auto is faster). The same run measures the float32 matmul peak
(``jnp.dot`` of two 2048 x 2048 matrices) and the compile time of one conv1d per
algorithm, forward and forward+backward, against XLA's.

Usage::

    python benchmarks/bench_conv1d.py            # full run, minutes
    python benchmarks/bench_conv1d.py --quick    # tiny shapes, seconds (used by a test)

Writes ``<out>/conv1d.json`` and ``<out>/conv1d.png`` (default
``benchmarks/results``).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import machine

import convjax

ALGOS = ("auto", "xla", "direct", "fft", "matmul", "dense")
#: Algorithms are skipped where their working memory would exceed these.
DENSE_MAX_BYTES = 64 * 2**20
MATMUL_MAX_BYTES = 512 * 2**20


# ---- timing --------------------------------------------------------------------


def _block(out):
    jax.block_until_ready(out)
    return out


#: A timed sample lasts at least this long: a contender of a few microseconds per call
#: runs several times back to back within one sample (as ``timeit`` does), so that the
#: timer's resolution and the wake-up of idle threads do not dominate its time.
MIN_SAMPLE_S = 2e-3


def measure(
    calls: dict, *, budget_s: float, min_rounds: int, max_rounds: int, numbers_out=None
) -> dict:
    """Times zero-argument callables in interleaved rounds.

    Each callable is called once to warm up (compile); the faster of two timed calls
    estimates its time per call, which sets ``number``, the calls per timed sample (at
    least :data:`MIN_SAMPLE_S` per sample, each call blocked until ready), and how many
    rounds fit ``budget_s`` (per contender), clamped to ``[min_rounds, max_rounds]``
    (at least 2); slow contenders drop out after their rounds. Each round runs the
    contenders in a new random order.

    Returns:
      ``{name: [seconds per call, ...]}``, one entry per sample; ``numbers_out`` (a
      dict), if given, receives ``{name: calls per sample}``.
    """
    times = {name: [] for name in calls}
    for fn in calls.values():
        fn()
    for j in range(2):  # two timed calls each, interleaved: the estimate is their min
        for name, fn in calls.items() if j == 0 else reversed(calls.items()):
            t = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - t)
    numbers = {n: max(1, math.ceil(MIN_SAMPLE_S / max(min(ts), 1e-7))) for n, ts in times.items()}
    rounds = {
        name: int(np.clip(budget_s / max(min(ts) * numbers[name], 1e-6), min_rounds, max_rounds))
        for name, ts in times.items()
    }
    names = list(calls)
    rng = np.random.default_rng(0)
    for r in range(2, max(rounds.values())):
        # a new random order each round: no contender always runs right after the same
        # other one (e.g. after torch, whose threads may still hold the cores)
        for name in [names[i] for i in rng.permutation(len(names))]:
            fn, number = calls[name], numbers[name]
            if r < rounds[name]:
                t = time.perf_counter()
                for _ in range(number):
                    fn()
                times[name].append((time.perf_counter() - t) / number)
    if numbers_out is not None:
        numbers_out.update(numbers)
    return times


def matmul_peak(n: int = 2048, repeats: int = 10) -> dict:
    """Measured float32 matmul throughput of ``jnp.dot`` (n x n) @ (n x n)."""
    a = jax.random.normal(jax.random.key(0), (n, n), jnp.float32)
    b = jax.random.normal(jax.random.key(1), (n, n), jnp.float32)
    f = jax.jit(jnp.dot)
    ts = measure(
        {"dot": lambda: _block(f(a, b))}, budget_s=1e9, min_rounds=repeats, max_rounds=repeats
    )["dot"]
    flops = 2 * n**3
    return {
        "n": n,
        "median_s": float(np.median(ts)),
        "min_s": float(np.min(ts)),
        "gflops_median": flops / np.median(ts) / 1e9,
        "gflops_best": flops / np.min(ts) / 1e9,
    }


# ---- contenders ----------------------------------------------------------------


def _torch():
    # Idle OpenMP threads should sleep, not spin, so that torch does not slow down
    # whatever runs after it on a shared CPU.
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    try:
        import torch
    except ImportError:
        return None
    return torch


SCAN_STEPS = 8


def _jax_pair(f, x, w, r):
    """(forward call, forward+backward call, forward+backward inside a ``lax.scan`` of
    ``SCAN_STEPS`` steps) of a jax function ``f(x, w)``; the scan's time is divided by
    its steps, so the three are per call."""
    fwd = jax.jit(f)
    g = jax.grad(lambda x, w: jnp.sum(f(x, w) * r), argnums=(0, 1))
    grad = jax.jit(g)

    def scanned(x, w):
        def body(c, _):
            gx, gw = g(x + c, w)  # the carry feeds the next step: nothing is hoisted
            return c + 1e-12 * (jnp.sum(gx) + jnp.sum(gw)), None

        return jax.lax.scan(body, jnp.zeros((), x.dtype), length=SCAN_STEPS)[0]

    scan = jax.jit(scanned)
    return (lambda: _block(fwd(x, w))), (lambda: _block(grad(x, w))), (lambda: _block(scan(x, w)))


def peak_memory_ratio(f, x, w) -> float | None:
    """Peak bytes of the compiled forward+backward (arguments + outputs + temporaries,
    ``memory_analysis``) over the bytes of input + output + filter."""
    g = jax.jit(jax.grad(lambda x, w: jnp.sum(f(x, w)), argnums=(0, 1)))
    m = g.lower(x, w).compile().memory_analysis()
    if m is None:
        return None
    y = jax.eval_shape(f, x, w)
    base = (x.size + y.size + w.size) * x.dtype.itemsize
    return (m.temp_size_in_bytes + m.argument_size_in_bytes + m.output_size_in_bytes) / base


def signal_contenders(L: int, K: int, torch, *, skip_slow_peers: bool):
    """One signal, true convolution, mode="full"."""
    rng = np.random.default_rng(0)
    xn = rng.standard_normal(L).astype(np.float32)
    wn = rng.standard_normal(K).astype(np.float32)
    x, w = jnp.asarray(xn), jnp.asarray(wn)
    r = jnp.asarray(rng.standard_normal(L + K - 1).astype(np.float32))
    out = {}
    for a in ALGOS:
        if a == "dense" and (L + K - 1) * L * 4 > DENSE_MAX_BYTES:
            continue
        if a == "matmul" and (L + K - 1) * K * 4 > MATMUL_MAX_BYTES:
            continue

        def f(x, w, a=a):
            y = convjax.conv1d(x[:, None], w[:, None, None], padding="full", flip=True, algorithm=a)
            return y[:, 0]

        out[f"convjax.{a}"] = ("convjax", *_jax_pair(f, x, w, r))

    def lax_conv(x, w):
        return jax.lax.conv_general_dilated(
            x[None, None], w[::-1][None, None], (1,), [(K - 1, K - 1)]
        )[0, 0]

    out["lax.conv_general_dilated"] = ("peer", *_jax_pair(lax_conv, x, w, r))
    if not (skip_slow_peers and L * K > 3 * 10**7):
        out["jnp.convolve"] = ("peer", *_jax_pair(jnp.convolve, x, w, r))
    out["jax.scipy.signal.fftconvolve"] = (
        "peer",
        *_jax_pair(jax.scipy.signal.fftconvolve, x, w, r),
    )
    out["numpy.convolve"] = ("peer", lambda: np.convolve(xn, wn), None, None)
    import scipy.signal

    out["scipy.signal.convolve"] = ("peer", lambda: scipy.signal.convolve(xn, wn), None, None)
    out["scipy.signal.oaconvolve"] = ("peer", lambda: scipy.signal.oaconvolve(xn, wn), None, None)
    if torch is not None:
        out["torch.conv1d"] = (
            "peer",
            *_torch_pair(
                torch,
                xn[None, None],
                wn[::-1].copy()[None, None],
                np.asarray(r)[None, None],
                padding=K - 1,
            ),
        )
    return out


def layer_contenders(B: int, L: int, cin: int, cout: int, K: int, torch):
    """A CNN layer: cross-correlation, padding="same", channels last for jax (native
    for lax and convjax), channels first for torch (native there)."""
    rng = np.random.default_rng(0)
    xn = rng.standard_normal((B, L, cin)).astype(np.float32)
    wn = (rng.standard_normal((K, cin, cout)) / np.sqrt(K * cin)).astype(np.float32)
    x, w = jnp.asarray(xn), jnp.asarray(wn)
    rn = rng.standard_normal((B, L, cout)).astype(np.float32)
    r = jnp.asarray(rn)
    out = {}
    for a in ALGOS:
        if a == "dense" and L * cout * L * cin * 4 > DENSE_MAX_BYTES:
            continue
        if a == "matmul" and B * L * K * cin * 4 > MATMUL_MAX_BYTES:
            continue

        def f(x, w, a=a):
            return convjax.conv1d(x, w, padding="same", algorithm=a)

        out[f"convjax.{a}"] = ("convjax", *_jax_pair(f, x, w, r))
    lo = (K - 1) // 2

    def lax_conv(x, w):
        return jax.lax.conv_general_dilated(
            x, w, (1,), [(lo, K - 1 - lo)], dimension_numbers=("NWC", "WIO", "NWC")
        )

    out["lax.conv_general_dilated"] = ("peer", *_jax_pair(lax_conv, x, w, r))
    if torch is not None:
        out["torch.conv1d"] = (
            "peer",
            *_torch_pair(
                torch,
                xn.transpose(0, 2, 1).copy(),
                wn.transpose(2, 1, 0).copy(),
                rn.transpose(0, 2, 1).copy(),
                padding="same",
            ),
        )
    return out


def _torch_pair(torch, xn, wn, rn, *, padding):
    """(forward call, forward+backward call) of ``torch.nn.functional.conv1d``,
    layout (B, C, L) and filter (Cout, Cin, K)."""
    conv = torch.nn.functional.conv1d
    x = torch.from_numpy(np.array(xn, copy=True))
    w = torch.from_numpy(np.array(wn, copy=True))
    r = torch.from_numpy(np.array(rn, copy=True))  # writable: no torch warning
    xg = x.clone().requires_grad_(True)
    wg = w.clone().requires_grad_(True)

    def fwd():
        with torch.no_grad():
            return conv(x, w, padding=padding)

    def fwdbwd():
        xg.grad = None
        wg.grad = None
        y = conv(xg, wg, padding=padding)
        (y * r).sum().backward()
        return xg.grad, wg.grad

    return fwd, fwdbwd, None


# ---- compile time --------------------------------------------------------------


def compile_times(shapes, algorithms, repeats: int = 3) -> list:
    """Seconds to lower and compile one ``conv1d`` (forward, and forward+backward) per
    algorithm, the median of ``repeats`` fresh compilations."""
    rows = []
    for label, xs, ws, options in shapes:
        x = jnp.zeros(xs, jnp.float32)
        w = jnp.zeros(ws, jnp.float32)
        for a in algorithms:
            row = {"shape": label, "algorithm": a}
            for mode in ("forward", "forward+backward"):
                ts = []
                for _ in range(repeats):

                    def f(x, w, a=a, options=options):
                        return convjax.conv1d(x, w, **options, algorithm=a)

                    g = (
                        f
                        if mode == "forward"
                        else jax.grad(lambda x, w, f=f: jnp.sum(f(x, w)), argnums=(0, 1))
                    )
                    t = time.perf_counter()
                    jax.jit(g).lower(x, w).compile()
                    ts.append(time.perf_counter() - t)
                row[mode] = float(np.median(ts))
            rows.append(row)
    return rows


# ---- the run -------------------------------------------------------------------


def run(quick: bool, out_dir: str, budget_s: float, wait_s: float = 600.0) -> dict:
    quiet = machine.wait_for_quiet(max_wait_s=0 if quick else wait_s)
    load_at_start = list(os.getloadavg()) if hasattr(os, "getloadavg") else None
    torch = _torch()
    if quick:
        signals = [(200, 3)]
        layers = [(2, 32, 4, 4, 3)]
        rounds = dict(budget_s=0.02, min_rounds=2, max_rounds=3)
    else:
        signals = [(L, K) for L in (10**3, 10**4, 10**5, 10**6) for K in (3, 31, 255)]
        layers = [(64, 1024, 64, 64, 3), (64, 1024, 64, 64, 9), (256, 256, 32, 64, 5)]
        rounds = dict(budget_s=budget_s, min_rounds=5, max_rounds=41)
    peak_size = (256, 3) if quick else (2048, 15)
    peak = matmul_peak(*peak_size)
    print(
        f"float32 matmul peak (jnp.dot {peak['n']}^2): {peak['gflops_median']:.1f} GFLOP/s "
        f"median, {peak['gflops_best']:.1f} best",
        flush=True,
    )
    results = []
    cases = [("signal", (L, K)) for L, K in signals] + [("layer", s) for s in layers]
    for kind, dims in cases:
        if kind == "signal":
            L, K = dims
            label = f"signal L={L:g} K={K}"
            flops = 2 * L * K
            contenders = signal_contenders(L, K, torch, skip_slow_peers=False)
            shape = {"L": L, "K": K}
            xs, ws = (L, 1), (K, 1, 1)
            options = {"padding": "full", "flip": True}
        else:
            B, L, cin, cout, K = dims
            label = f"layer B={B} L={L} {cin}->{cout} K={K}"
            flops = 2 * B * L * K * cin * cout
            contenders = layer_contenders(B, L, cin, cout, K, torch)
            shape = {"B": B, "L": L, "Cin": cin, "Cout": cout, "K": K}
            xs, ws = (B, L, cin), (K, cin, cout)
            options = {"padding": "same"}
        memory = {}
        for a in ("auto", "xla"):

            def f(x, w, a=a, options=options):
                return convjax.conv1d(x, w, algorithm=a, **options)

            memory[a] = peak_memory_ratio(f, jnp.zeros(xs, jnp.float32), jnp.zeros(ws, jnp.float32))
        print(f"   peak memory of forward+backward / (input+output+filter): {memory}")
        modes = [
            ("forward", 1, 1),
            ("forward+backward", 2, 3),
            (f"forward+backward in lax.scan ({SCAN_STEPS} steps)", 3, 3 * SCAN_STEPS),
        ]
        for mode, col, mult in modes:
            calls = {n: c[col] for n, c in contenders.items() if c[col] is not None}
            how = rounds
            if col == 3:  # in a loop: auto against lax only (XLA's is slow there)
                calls = {n: calls[n] for n in ("convjax.auto", "lax.conv_general_dilated")}
                how = dict(rounds, min_rounds=2, max_rounds=min(rounds["max_rounds"], 5))
            numbers: dict = {}
            times = measure(calls, **how, numbers_out=numbers)
            rows = {
                n: {
                    "group": contenders[n][0],
                    "median_s": float(np.median(ts)),
                    "min_s": float(np.min(ts)),
                    "rounds": len(ts),
                    "calls_per_sample": numbers[n],
                    "gflops": mult * flops / np.median(ts) / 1e9,
                }
                for n, ts in times.items()
            }
            peers = {n: v for n, v in rows.items() if v["group"] == "peer"}
            best_peer = min(peers, key=lambda n: peers[n]["median_s"])
            auto = rows["convjax.auto"]["median_s"]
            best_peer_min = min(peers, key=lambda n: peers[n]["min_s"])
            summary = {
                "best_peer": best_peer,
                "auto_speedup_vs_best_peer": peers[best_peer]["median_s"] / auto,
                # the same by the minimum over rounds: less sensitive to other processes
                "best_peer_by_min": best_peer_min,
                "auto_speedup_vs_best_peer_by_min": peers[best_peer_min]["min_s"]
                / rows["convjax.auto"]["min_s"],
                "auto_speedup_vs_lax": rows["lax.conv_general_dilated"]["median_s"] / auto,
                "auto_fraction_of_matmul_peak": rows["convjax.auto"]["gflops"]
                / peak["gflops_median"],
            }
            if "jnp.convolve" in rows:
                summary["auto_speedup_vs_jnp_convolve"] = rows["jnp.convolve"]["median_s"] / auto
            if mode.startswith("forward+backward"):
                summary["peak_memory_ratio"] = memory
            if mode == "forward+backward":
                summary["auto_fraction_of_matmul_peak_best"] = (
                    mult * flops / rows["convjax.auto"]["min_s"] / 1e9 / peak["gflops_best"]
                )
            if "torch.conv1d" in rows:
                summary["auto_speedup_vs_torch"] = rows["torch.conv1d"]["median_s"] / auto
            results.append(
                {
                    "case": label,
                    "kind": kind,
                    "shape": shape,
                    "mode": mode,
                    "nominal_gflop": mult * flops / 1e9,
                    "times": rows,
                    "summary": summary,
                }
            )
            print(_format(label, mode, rows, summary), flush=True)
    # The load from other processes changes during the run: measure the peak again at
    # the end and keep the better one (the fractions of peak above used the first).
    peak_end = matmul_peak(*peak_size)
    print(
        f"float32 matmul peak at the end: {peak_end['gflops_median']:.1f} GFLOP/s median, "
        f"{peak_end['gflops_best']:.1f} best",
        flush=True,
    )
    for r in results:
        best = max(peak["gflops_median"], peak_end["gflops_median"])
        r["summary"]["auto_fraction_of_matmul_peak"] = r["times"]["convjax.auto"]["gflops"] / best
    if quick:
        ctimes = compile_times(
            [("layer B=2 L=32 4->4 K=3", (2, 32, 4), (3, 4, 4), {"padding": "same"})],
            ("auto", "xla"),
            repeats=1,
        )
    else:
        ctimes = compile_times(
            [
                ("layer B=64 L=1024 64->64 K=9", (64, 1024, 64), (9, 64, 64), {"padding": "same"}),
                ("signal L=1e5 K=31", (10**5, 1), (31, 1, 1), {"padding": "full", "flip": True}),
                ("signal L=1e5 K=255", (10**5, 1), (255, 1, 1), {"padding": "full", "flip": True}),
            ],
            [a for a in ALGOS if a != "dense"],
        )
    for row in ctimes:
        print(
            f"compile {row['shape']:<32} {row['algorithm']:<8} forward "
            f"{row['forward']:.3f}s  forward+backward {row['forward+backward']:.3f}s"
        )
    report = {
        "machine": {
            "platform": platform.platform(),
            "processor": platform.processor(),
            "cpu_count": os.cpu_count(),
            "backend": jax.default_backend(),
            "devices": [str(d) for d in jax.devices()],
            "load_average_at_start": load_at_start,
            "load_average_at_end": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
        },
        "versions": {
            "jax": jax.__version__,
            "numpy": np.__version__,
            "torch": None if torch is None else torch.__version__,
            "python": sys.version.split()[0],
        },
        "quiet": quiet,
        "quick": quick,
        "dtype": "float32",
        "matmul_peak": peak,
        "matmul_peak_end": peak_end,
        "results": results,
        "compile_times": ctimes,
        "notes": "medians over interleaved rounds; other processes may share the CPU, so "
        "timings are noisy (see load_average_at_start).",
    }
    os.makedirs(out_dir, exist_ok=True)
    with open(os.path.join(out_dir, "conv1d.json"), "w") as f:
        json.dump(report, f, indent=1)
    plot(report, os.path.join(out_dir, "conv1d.png"))
    return report


def _format(label, mode, rows, summary):
    lines = [f"== {label} [{mode}]"]
    for n, v in sorted(rows.items(), key=lambda kv: kv[1]["median_s"]):
        lines.append(
            f"   {n:<30} {v['median_s'] * 1e3:10.3f} ms  (min {v['min_s'] * 1e3:9.3f})"
            f"  {v['gflops']:8.2f} GFLOP/s"
        )
    lines.append(
        f"   auto vs best peer ({summary['best_peer']}): "
        f"{summary['auto_speedup_vs_best_peer']:.2f}x;  vs lax: "
        f"{summary['auto_speedup_vs_lax']:.2f}x;  by min vs "
        f"{summary['best_peer_by_min']}: "
        f"{summary['auto_speedup_vs_best_peer_by_min']:.2f}x"
    )
    return "\n".join(lines)


def markdown(report) -> str:
    """The summary tables of a report, as Markdown (for docs/speed.md)."""
    peak = report["matmul_peak"]
    end = report.get("matmul_peak_end", peak)
    out = [
        f"float32 matmul peak (jnp.dot {peak['n']}^2): {peak['gflops_median']:.1f} GFLOP/s "
        f"(median), {peak['gflops_best']:.1f} (best) at the start, "
        f"{end['gflops_median']:.1f} / {end['gflops_best']:.1f} at the end; load average "
        f"at start {report['machine']['load_average_at_start']}.",
        "",
        "| case | mode | auto [ms] median (min) | best peer | peer [ms] median (min) "
        "| auto speed-up vs best peer: median / min | vs lax | vs jnp.convolve "
        "| auto GFLOP/s | auto / matmul peak | peak memory auto (xla) |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in report["results"]:
        t, s = r["times"], r["summary"]
        a, p = t["convjax.auto"], t[s["best_peer"]]
        jc = s.get("auto_speedup_vs_jnp_convolve")
        out.append(
            f"| {r['case']} | {r['mode']} | {a['median_s'] * 1e3:.3f} ({a['min_s'] * 1e3:.3f}) "
            f"| {s['best_peer']} | {p['median_s'] * 1e3:.3f} ({p['min_s'] * 1e3:.3f}) "
            f"| {s['auto_speedup_vs_best_peer']:.2f}x / "
            f"{s['auto_speedup_vs_best_peer_by_min']:.2f}x ({s['best_peer_by_min']}) "
            f"| {s['auto_speedup_vs_lax']:.2f}x "
            f"| {'' if jc is None else f'{jc:.1f}x'} | {a['gflops']:.1f} "
            f"| {s['auto_fraction_of_matmul_peak']:.0%} | {_mem(s)} |"
        )
    out += [
        "",
        "| compile: shape | algorithm | forward [s] | forward+backward [s] |",
        "|---|---|---|---|",
    ]
    for c in report["compile_times"]:
        out.append(
            f"| {c['shape']} | {c['algorithm']} | {c['forward']:.3f} "
            f"| {c['forward+backward']:.3f} |"
        )
    return "\n".join(out)


def _mem(summary) -> str:
    m = summary.get("peak_memory_ratio")
    if not m or m.get("auto") is None:
        return ""
    return f"{m['auto']:.2f}x ({m['xla']:.2f}x)"


def plot(report, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    modes = ("forward", "forward+backward")
    fig, axes = plt.subplots(2, 1, figsize=(14, 9), sharex=True)
    for ax, mode in zip(axes, modes, strict=True):
        rows = [r for r in report["results"] if r["mode"] == mode]
        names = sorted({n for r in rows for n in r["times"]})
        width = 0.8 / max(len(names), 1)
        for j, n in enumerate(names):
            xs = [i + j * width for i, r in enumerate(rows) if n in r["times"]]
            ys = [r["times"][n]["median_s"] for r in rows if n in r["times"]]
            ax.bar(xs, ys, width, label=n, hatch="//" if n == "convjax.auto" else None)
        ax.set_yscale("log")
        ax.set_ylabel("median time [s]")
        ax.set_title(
            f"conv1d float32, {mode}; matmul peak "
            f"{report['matmul_peak']['gflops_median']:.0f} GFLOP/s"
        )
        ax.set_xticks([i + 0.4 for i in range(len(rows))])
        ax.set_xticklabels([r["case"] for r in rows], rotation=60, ha="right", fontsize=7)
    axes[0].legend(fontsize=7, ncol=4)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="tiny shapes, a few seconds")
    parser.add_argument("--out", default=os.path.join(os.path.dirname(__file__), "results"))
    parser.add_argument(
        "--budget",
        type=float,
        default=1.5,
        help="seconds of timing per contender and shape (full run)",
    )
    parser.add_argument(
        "--wait",
        type=float,
        default=600.0,
        help="seconds to wait for a load average below 0.5 first",
    )
    parser.add_argument(
        "--markdown", metavar="JSON", help="print the summary tables of an earlier run and exit"
    )
    args = parser.parse_args(argv)
    if args.markdown:
        with open(args.markdown) as fh:
            print(markdown(json.load(fh)))
        return None
    return run(args.quick, args.out, args.budget, args.wait)


if __name__ == "__main__":
    main()
