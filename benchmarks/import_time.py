"""What ``import convjax`` adds to ``import jax, optax``, in fresh interpreters.

Each repetition starts two fresh Python processes (this interpreter, this
environment), in alternating order so a burst of load from other processes hits
both alike:

* ``base``: times ``import jax, optax``;
* ``convjax``: times ``import jax, optax``, then, in the same process,
  ``import convjax``, then the first access to every public name (which loads
  every module: what a script using all of convjax pays once).

Reported (seconds, medians over the repetitions): ``base_median_s`` (jax +
optax), ``convjax_total_median_s`` (jax + optax + convjax), ``overhead_median_s``
(the median of ``import convjax`` timed after jax and optax in the same process:
paired, the least noisy) and ``overhead_unpaired_s`` (``convjax_total_median_s -
base_median_s``); the target is ``overhead_median_s <= 0.05``. Also
``all_names_median_s`` (the first access to every public name), the top-level
packages loaded beyond jax and optax once every name is loaded, and whether
``jax.experimental.sparse`` is among them (it should not be: it pulls in
``scipy.sparse``).

Bytecode: the probes run with ``PYTHONDONTWRITEBYTECODE`` removed and
``PYTHONPYCACHEPREFIX`` set to a fresh temporary folder that the ``--warmup``
untimed runs fill, so, as for an installed package, no module is compiled from
source in a timed run (compiling convjax's sources would add about 0.2 s), and
nothing is written into the source tree.

Usage::

    python benchmarks/import_time.py               # 21 repetitions, about a minute
    python benchmarks/import_time.py --reps 2 --warmup 1   # a smoke run (used by a test)

Writes ``<out>/import_time.json`` (default ``benchmarks/results``) and prints a
summary.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile

TARGET_S = 0.05

#: Run in a fresh interpreter; prints one JSON line.
_PROBE = """
import json, sys, time
t0 = time.perf_counter()
import jax, optax
t1 = time.perf_counter()
before = set(sys.modules)
result = {"base_s": t1 - t0}
if WITH_CONVJAX:
    import convjax
    t2 = time.perf_counter()
    for name in convjax.__all__:
        getattr(convjax, name)
    t3 = time.perf_counter()
    new = set(sys.modules) - before
    result.update(
        convjax_s=t2 - t1,
        total_s=t2 - t0,
        all_names_s=t3 - t2,
        new_packages=sorted({m.split(".")[0] for m in new} - {"convjax"}),
        n_new_modules=len(new),
        sparse_loaded="jax.experimental.sparse" in sys.modules,
        versions={"jax": jax.__version__, "optax": optax.__version__},
    )
print(json.dumps(result))
"""


def probe(with_convjax: bool, env: dict) -> dict:
    """One fresh interpreter; the probe's measurements."""
    code = _PROBE.replace("WITH_CONVJAX", repr(with_convjax))
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=True,
        timeout=300,
        env=env,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def measure(reps: int, warmup: int) -> dict:
    """``reps`` interleaved pairs of probes after ``warmup`` untimed ones."""
    base, runs = [], []
    with tempfile.TemporaryDirectory(prefix="convjax-pyc-") as pyc:
        env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
        env["PYTHONPYCACHEPREFIX"] = pyc
        for _ in range(warmup):
            probe(True, env)
        for i in range(reps):
            order = (False, True) if i % 2 == 0 else (True, False)
            for with_convjax in order:
                r = probe(with_convjax, env)
                (runs if with_convjax else base).append(r)
    base_s = [r["base_s"] for r in base]
    total_s = [r["total_s"] for r in runs]
    overhead_s = [r["convjax_s"] for r in runs]
    overhead = statistics.median(overhead_s)
    return {
        "reps": reps,
        "warmup": warmup,
        "target_s": TARGET_S,
        "base_median_s": statistics.median(base_s),
        "convjax_total_median_s": statistics.median(total_s),
        "overhead_median_s": overhead,
        "overhead_unpaired_s": statistics.median(total_s) - statistics.median(base_s),
        "within_target": overhead <= TARGET_S,
        "all_names_median_s": statistics.median(r["all_names_s"] for r in runs),
        "new_packages": runs[-1]["new_packages"],
        "n_new_modules": runs[-1]["n_new_modules"],
        "sparse_loaded": any(r["sparse_loaded"] for r in runs),
        "versions": runs[-1]["versions"],
        "samples": {
            "base_s": base_s,
            "convjax_total_s": total_s,
            "overhead_s": overhead_s,
            "all_names_s": [r["all_names_s"] for r in runs],
        },
    }


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--reps", type=int, default=21, help="pairs of fresh processes")
    parser.add_argument("--warmup", type=int, default=2, help="untimed runs first")
    parser.add_argument("--out", default=os.path.join(os.path.dirname(__file__), "results"))
    args = parser.parse_args(argv)
    if args.reps < 1 or args.warmup < 0:
        parser.error("--reps must be >= 1 and --warmup >= 0")
    report = measure(args.reps, args.warmup)
    report.update(
        python=platform.python_version(),
        platform=platform.platform(),
        jax_platforms=os.environ.get("JAX_PLATFORMS"),
    )
    os.makedirs(args.out, exist_ok=True)
    path = os.path.join(args.out, "import_time.json")
    with open(path, "w") as f:
        json.dump(report, f, indent=2)
    print(f"import jax, optax:            {report['base_median_s']:.3f} s (median of {args.reps})")
    print(
        f"import convjax after them:    {report['overhead_median_s'] * 1e3:.1f} ms (median; "
        f"target <= {TARGET_S} s: {'met' if report['within_target'] else 'NOT met'})"
    )
    print(f"unpaired difference:          {report['overhead_unpaired_s']:.3f} s")
    print(f"first use of every name:      {report['all_names_median_s']:.3f} s (median)")
    print(
        f"packages all of convjax adds: {', '.join(report['new_packages']) or 'none'}; "
        f"jax.experimental.sparse loaded: {report['sparse_loaded']}"
    )
    print(f"wrote {path}")
    return report


if __name__ == "__main__":
    main()
