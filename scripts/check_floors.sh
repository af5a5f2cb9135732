#!/usr/bin/env bash
# Test convjax at the lowest versions of jax, jaxlib and optax that pyproject.toml declares.
#
# Reads the floors from the `>=` specs in pyproject.toml's `dependencies`, makes a throwaway
# virtual environment, installs exactly those versions together with the package (built as a
# wheel, as a user gets it) and the `test` extra less the peers that bring their own jax or
# are tools (flax, equinox, torch: their oracle tests skip here and run in the main suite;
# ruff, mypy, pdoc), then runs the test suite without the `slow` tests.
#
# Usage: bash scripts/check_floors.sh [pytest arguments]    (default: -q -n 2 -m "not slow")
# Needs Python >= 3.11 (tomllib) as `python3`; the venv is removed on exit.
set -euo pipefail
cd "$(dirname "$0")/.."
unset PYTHONPATH  # the floor environment sees only what it installed

mapfile -t specs < <(python3 - <<'PY'
import re
import tomllib

with open("pyproject.toml", "rb") as f:
    project = tomllib.load(f)["project"]
floors = {}
for dep in project["dependencies"]:
    m = re.fullmatch(r"\s*(jax|jaxlib|optax)\s*>=\s*([\w.]+)\s*", dep)
    if m:
        floors[m[1]] = m[2]
missing = {"jax", "jaxlib", "optax"} - floors.keys()
if missing:
    raise SystemExit(f"check_floors: no `>=` floor for {sorted(missing)} in pyproject.toml")
for name, version in floors.items():
    print(f"{name}=={version}")
skip = {"flax", "equinox", "torch", "ruff", "mypy", "pdoc"}
for dep in project["optional-dependencies"]["test"]:
    if re.match(r"[A-Za-z0-9_.-]+", dep)[0].lower() not in skip:
        print(dep)
PY
)
echo "check_floors: ${specs[*]}"

venv=$(mktemp -d -t convjax-floors.XXXXXX)
trap 'rm -rf "$venv"' EXIT
python3 -m venv "$venv"
"$venv/bin/python" -m pip install -q "${specs[@]}" .
"$venv/bin/python" -m pip list 2>/dev/null | grep -iE '^(jax|jaxlib|optax|numpy|chex) '

# The repository root holds no `convjax` (it lives in src/): the tests import the installed wheel.
if [ "$#" -eq 0 ]; then
    set -- -q -n 2 -m "not slow"
fi
"$venv/bin/python" -m pytest -p no:cacheprovider "$@"
