"""Shared plumbing of the experiment scripts.

Every experiment is a script ``experiments/<name>.py`` with ``main(argv) -> dict``:

    def main(argv=None) -> dict:
        args = common.make_parser(__doc__).parse_args(argv)
        run = common.start_run("<name>", args)
        ...                                   # compute, vmapped over common.seed_keys(run.seeds)
        run.save_figure(fig, "curve.png")     # PNG under results/<name>/
        return run.finish(
            config={...}, numbers={"err": common.ci(per_seed)},  # mean, 95% interval
            table=common.markdown_table(headers, rows),
            claims=[common.verdict_claim(stats.evaluate(CLAIM, values, baseline))],
        )

with ``CLAIM`` a :class:`convjax.stats.Claim` fixed in the script before the run (its
rule, threshold and baseline); exact checks use :func:`claim` instead.

``run.finish`` writes ``<out>/<name>/metrics.json`` (schema: :data:`METRICS_KEYS`),
prints the table and returns the metrics dict, which ``run_all.py`` turns into
``results/REPORT.md``. Sizes: ``--tiny`` (seconds, for the tests; implies
``--quick``), ``--quick`` (the README's main command), neither (full).

Import this module before ``matplotlib.pyplot``: it selects the Agg backend.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import json
import math
import platform
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import jax
import numpy as np

import convjax
from convjax import stats

#: Keys of every ``metrics.json`` (and of the dict ``main`` returns).
METRICS_KEYS = (
    "name",
    "description",
    "size",
    "config",
    "seeds",
    "numbers",
    "claims",
    "table",
    "figures",
    "convjax_version",
    "jax_version",
    "backend",
    "environment",
    "timestamp",
    "wall_time_s",
)

#: Keys of each entry of ``metrics["claims"]``: the claim, what was measured (the
#: estimate and its interval), ``holds`` (True / False / None for undecided), the
#: ``verdict`` (one of ``convjax.stats.VERDICTS``), the ``rule`` fixed before the run
#: and the ``interval`` it was decided on (``convjax.stats.Interval.as_dict()``; None
#: for an exact check).
CLAIM_KEYS = ("claim", "measured", "holds", "verdict", "rule", "interval")
_HOLDS = {"holds": True, "fails": False, "undecided": None}

SIZES = ("tiny", "quick", "full")

#: Seeds per arm when ``--seeds`` is not given: at least 10 in the full run (each seed
#: its own draw of training and test data), fewer in quick (still with intervals).
DEFAULT_SEEDS = {"tiny": 3, "quick": 5, "full": 10}


# ---- arguments -------------------------------------------------------------------


def make_parser(description: str | None) -> argparse.ArgumentParser:
    """The arguments every experiment takes; add your own before ``parse_args``.

    ``--quick``: the README's main command (all experiments together under 10
    minutes on 2 CPU cores). ``--tiny``: seconds, for the tests (implies quick).
    ``--out``: results folder (default ``results``). ``--seeds``: number of seeds,
    ``0 .. seeds-1`` (default :data:`DEFAULT_SEEDS` by size).
    """
    first = (description or "").strip().splitlines()
    parser = argparse.ArgumentParser(description=first[0] if first else None)
    parser.add_argument(
        "--quick", action="store_true", help="small sizes (the README's main command)"
    )
    parser.add_argument(
        "--tiny",
        action="store_true",
        help="smallest sizes, seconds; for the tests (implies --quick)",
    )
    parser.add_argument("--out", default="results", help="results folder (default: results)")
    parser.add_argument(
        "--seeds",
        type=_positive_int,
        default=None,
        help="number of seeds 0..N-1 (default by size: " + str(DEFAULT_SEEDS) + ")",
    )
    return parser


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer >= 1, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected an integer >= 1, got {value}")
    return value


def size_of(args: argparse.Namespace) -> str:
    """``"tiny"``, ``"quick"`` or ``"full"`` from the parsed flags."""
    if getattr(args, "tiny", False):
        return "tiny"
    return "quick" if getattr(args, "quick", False) else "full"


def pick(size: str, *, tiny, quick, full):
    """The setting for this size: ``pick(run.size, tiny=2, quick=20, full=200)``."""
    return {"tiny": tiny, "quick": quick, "full": full}[size]


# ---- one run ----------------------------------------------------------------------


@dataclasses.dataclass
class Run:
    """One execution of one experiment: where it writes, and what it has written.

    Attributes:
      name: experiment name (folder name under ``out``).
      description: first line of the experiment's docstring.
      out_root: the ``--out`` folder.
      size: ``"tiny"``, ``"quick"`` or ``"full"``.
      seeds: the seeds, ``(0, ..., n-1)``.
      started: ``time.perf_counter()`` at the start.
      started_at: ISO-8601 UTC time of the start.
      figures: file names of the saved figures, relative to :attr:`out_dir`.
    """

    name: str
    description: str
    out_root: Path
    size: str
    seeds: tuple[int, ...]
    started: float
    started_at: str
    figures: list[str] = dataclasses.field(default_factory=list)

    @property
    def out_dir(self) -> Path:
        """``<out>/<name>``: this experiment's folder."""
        return self.out_root / self.name

    @property
    def quick(self) -> bool:
        return self.size != "full"

    def save_figure(self, fig, filename: str, *, dpi: int = 120) -> Path:
        """Saves a matplotlib figure as ``<out>/<name>/<filename>`` (PNG) and closes it."""
        import matplotlib.pyplot as plt

        if not filename.endswith(".png"):
            raise ValueError(f"Run.save_figure: `filename` must end with .png, got {filename!r}.")
        path = self.out_dir / filename
        fig.savefig(path, dpi=dpi, bbox_inches="tight")
        plt.close(fig)
        if filename not in self.figures:
            self.figures.append(filename)
        return path

    def finish(
        self,
        *,
        config: dict,
        numbers: dict,
        table: str,
        claims: Sequence[dict] = (),
        quiet: bool = False,
    ) -> dict:
        """Writes ``<out>/<name>/metrics.json``, prints the table, returns the metrics.

        Args:
          config: every setting the numbers depend on (sizes, learning rates, ...).
          numbers: every number the experiment reports (nested dicts / lists of
            numbers; numpy and jax arrays are converted to lists).
          table: the short markdown table printed and put in the report.
          claims: entries made by :func:`claim`.
          quiet: do not print the table.

        Returns:
          The metrics dict, with the keys :data:`METRICS_KEYS`.
        """
        metrics = {
            "name": self.name,
            "description": self.description,
            "size": self.size,
            "config": to_jsonable(config),
            "seeds": list(self.seeds),
            "numbers": to_jsonable(numbers),
            "claims": [to_jsonable(c) for c in claims],
            "table": table,
            "figures": list(self.figures),
            "convjax_version": convjax.__version__,
            "jax_version": jax.__version__,
            "backend": jax.default_backend(),
            "environment": environment(),
            "timestamp": self.started_at,
            "wall_time_s": round(time.perf_counter() - self.started, 3),
        }
        check_metrics(metrics)
        path = self.out_dir / "metrics.json"
        path.write_text(json.dumps(metrics, indent=2, allow_nan=False) + "\n")
        if not quiet:
            print(f"\n## {self.name} ({self.size}, {metrics['wall_time_s']:.1f} s)\n")
            print(table)
            print(f"\nwrote {path}")
        return metrics


def start_run(name: str, args: argparse.Namespace, *, description: str | None = None) -> Run:
    """Starts the clock and creates ``<args.out>/<name>/``."""
    out_root = Path(args.out)
    run = Run(
        name=name,
        description=(description or "").strip().splitlines()[0] if description else name,
        out_root=out_root,
        size=size_of(args),
        seeds=tuple(range(args.seeds or DEFAULT_SEEDS[size_of(args)])),
        started=time.perf_counter(),
        started_at=datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
    )
    run.out_dir.mkdir(parents=True, exist_ok=True)
    return run


# ---- seeds and statistics ----------------------------------------------------------


def seed_keys(seeds: Sequence[int]):
    """One PRNG key per seed, stacked: a key array of shape ``(len(seeds),)`` to
    ``jax.vmap`` over."""
    return jax.vmap(jax.random.key)(np.asarray(list(seeds), dtype=np.uint32))


# ---- tables, claims, JSON -----------------------------------------------------------


def markdown_table(headers: Sequence[str], rows: Sequence[Sequence], *, fmt: str = ".4g") -> str:
    """A markdown table; floats are formatted with ``fmt``, everything else with ``str``."""

    def cell(v) -> str:
        if isinstance(v, (float, np.floating)):
            return f"{float(v):{fmt}}"
        return str(v).replace("|", "\\|").replace("\n", " ")

    for r, row in enumerate(rows):
        if len(row) != len(headers):
            raise ValueError(
                f"markdown_table: row {r} has {len(row)} cells, expected {len(headers)} "
                f"(one per header)."
            )
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


def claim(text: str, measured: str, holds: bool | None, *, rule: str = "exact check") -> dict:
    """A claim decided by an exact check (no sampling variance: a property of the
    library, e.g. "the embedding reproduces the outputs"), not by an interval.

    Args:
      text: the claim.
      measured: what this run measured, with the numbers.
      holds: ``True`` / ``False``, or ``None`` where this size cannot tell.
      rule: the check, in words.
    """
    if holds is not None and not isinstance(holds, (bool, np.bool_)):
        raise TypeError(f"claim: `holds` must be True, False or None, got {holds!r}.")
    verdict = "undecided" if holds is None else ("holds" if holds else "fails")
    return {
        "claim": str(text),
        "measured": str(measured),
        "holds": None if holds is None else bool(holds),
        "verdict": verdict,
        "rule": str(rule),
        "interval": None,
    }


def verdict_claim(verdict: stats.Verdict, measured: str = "") -> dict:
    """A claim decided by :func:`convjax.stats.evaluate`: the rule fixed in code, the
    interval, the verdict (holds / fails / undecided), and ``measured`` as context."""
    if not isinstance(verdict, stats.Verdict):
        raise TypeError(f"verdict_claim: `verdict` must be a stats.Verdict, got {verdict!r}.")
    c, iv = verdict.claim, verdict.interval
    level = f"{100 * iv.level:.10g}%"  # 95%, 99.5% (a Bonferroni level), never rounded up
    head = f"{c.statistic} of {c.quantity} = {iv.format()} ({level} {iv.method}, n={iv.n})"
    return {
        "claim": c.name,
        "measured": head + (f"; {measured}" if measured else ""),
        "holds": _HOLDS[verdict.verdict],
        "verdict": verdict.verdict,
        "rule": f"{c.statistic} {c.rule()}",
        "interval": to_jsonable(iv.as_dict()),
    }


def ci(values, *, censored=None, axis: int = 0) -> dict:
    """Mean over seeds (along ``axis``) with its 95% t-interval, JSON-able:
    ``{"estimate", "low", "high", "n", "censoring"}`` (arrays for N-D values)."""
    v = np.moveaxis(np.asarray(values, dtype=np.float64), axis, 0)
    c = None if censored is None else np.moveaxis(np.asarray(censored, bool), axis, 0)
    iv = stats.mean_interval(v, censored=c)
    return to_jsonable(
        {
            "estimate": iv.estimate,
            "low": iv.low,
            "high": iv.high,
            "n": iv.n,
            "censoring": iv.censoring,
        }
    )


def interval_dict(iv: stats.Interval) -> dict:
    """An :class:`convjax.stats.Interval` as the JSON-able dict :func:`ci` returns."""
    return to_jsonable(
        {
            "estimate": iv.estimate,
            "low": iv.low,
            "high": iv.high,
            "n": iv.n,
            "censoring": iv.censoring,
            "method": iv.method,
        }
    )


def fmt_ci(d: dict, fmt: str = ".3g") -> str:
    """``"0.123 [0.101, 0.145]"`` from a scalar :func:`ci` dict; ``None`` ends (infinite,
    from censoring) print as ``∞``; ``≥`` marks an estimate that is a lower bound."""
    lo = "(-∞" if d["low"] is None else f"[{d['low']:{fmt}}"
    hi = "∞)" if d["high"] is None else f"{d['high']:{fmt}}]"
    pre = {"at_least": "≥ ", "at_most": "≤ "}.get(d.get("censoring", "none"), "")
    est = "?" if d["estimate"] is None else f"{d['estimate']:{fmt}}"
    return f"{pre}{est} {lo}, {hi}"


def ci_at(d: dict, index) -> dict:
    """The scalar :func:`ci` dict of element ``index`` of an array-valued one."""
    out = {}
    for k, v in d.items():
        if k in ("estimate", "low", "high", "censoring") and isinstance(v, list):
            for i in index if isinstance(index, tuple) else (index,):
                v = v[i]
        out[k] = v
    return out


def to_jsonable(obj):
    """Arrays -> lists, numpy scalars -> Python numbers, NaN/inf -> None, recursively."""
    if isinstance(obj, dict):
        return {str(k): to_jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [to_jsonable(v) for v in obj]
    if isinstance(obj, Path):
        return str(obj)
    if isinstance(obj, (np.ndarray, jax.Array)):
        return to_jsonable(np.asarray(obj).tolist())
    if isinstance(obj, (bool, np.bool_)):
        return bool(obj)
    if isinstance(obj, (int, np.integer)):
        return int(obj)
    if isinstance(obj, (float, np.floating)):
        v = float(obj)
        return v if math.isfinite(v) else None
    if obj is None or isinstance(obj, str):
        return obj
    raise TypeError(f"to_jsonable: cannot store a {type(obj).__name__} in metrics.json: {obj!r}")


def check_metrics(metrics: dict) -> None:
    """Raises ValueError unless ``metrics`` has the schema of ``metrics.json``."""
    missing = [k for k in METRICS_KEYS if k not in metrics]
    if missing:
        raise ValueError(f"check_metrics: missing keys {missing}.")
    types = {
        "name": str,
        "description": str,
        "size": str,
        "config": dict,
        "seeds": list,
        "numbers": dict,
        "claims": list,
        "table": str,
        "figures": list,
        "convjax_version": str,
        "jax_version": str,
        "backend": str,
        "environment": dict,
        "timestamp": str,
        "wall_time_s": (int, float),
    }
    for key, typ in types.items():
        if not isinstance(metrics[key], typ):
            raise ValueError(
                f"check_metrics: `{key}` must be a {typ}, got {type(metrics[key]).__name__}."
            )
    if metrics["size"] not in SIZES:
        raise ValueError(f"check_metrics: `size` must be one of {SIZES}, got {metrics['size']!r}.")
    if not metrics["seeds"] or not all(isinstance(s, int) for s in metrics["seeds"]):
        raise ValueError(
            f"check_metrics: `seeds` must be a non-empty list of ints, got {metrics['seeds']!r}."
        )
    for c in metrics["claims"]:
        if not isinstance(c, dict) or tuple(sorted(c)) != tuple(sorted(CLAIM_KEYS)):
            raise ValueError(f"check_metrics: each claim needs the keys {CLAIM_KEYS}, got {c!r}.")
        if c["verdict"] not in stats.VERDICTS or _HOLDS[c["verdict"]] != c["holds"]:
            raise ValueError(
                f"check_metrics: claim verdict {c['verdict']!r} must be one of "
                f"{stats.VERDICTS} and agree with holds={c['holds']!r}."
            )
    if not all(isinstance(f, str) and f.endswith(".png") for f in metrics["figures"]):
        raise ValueError(
            f"check_metrics: `figures` must be PNG file names, got {metrics['figures']!r}."
        )


def environment() -> dict:
    """Versions and machine, for ``metrics.json``."""
    import jaxlib

    env = {
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "numpy": np.__version__,
        "jaxlib": jaxlib.__version__,
        "devices": [str(d) for d in jax.devices()],
        "x64": bool(jax.config.jax_enable_x64),
    }
    try:
        import optax

        env["optax"] = optax.__version__
    except ImportError:  # optax is a dependency, but the report must not fail on it
        env["optax"] = None
    return env
