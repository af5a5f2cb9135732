"""Runs the default experiments (the README's main job)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import seed_walkthrough  # noqa: E402


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="small sizes, a few minutes")
    parser.add_argument("--out", default="results", help="output folder")
    args = parser.parse_args(argv)
    seed_walkthrough.main(["--out", args.out] + (["--quick"] if args.quick else []))


if __name__ == "__main__":
    main()
