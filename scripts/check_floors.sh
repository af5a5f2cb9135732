#!/usr/bin/env bash
# Test convjax at the lowest versions of jax, jaxlib and optax that pyproject.toml declares.
#
# Reads the floors from the `>=` specs in pyproject.toml's `dependencies`, makes a throwaway
# virtual environment, installs exactly those versions together with the package (built as a
# wheel, as a user gets it) and the `test` extra less the peers that bring their own jax or
# are tools (flax, equinox, torch: their oracle tests skip here and run in the main suite;
# ruff, mypy, pdoc), then runs, to fit CI's time budget, a subset chosen for where jax and
# optax versions differ:
#   - the docstring examples of every module of the installed package (each public function
#     called once, outputs compared as printed);
#   - the training stack (optax states, typed PRNG keys sharded over devices, checkpoints of
#     key arrays, losses, optimizers) and dtype promotion (jax's promotion rules, x64).
# Every one of these files failed below the present floors. The whole suite (less `slow`)
# was run at the floors when they were set; its one failure (a hypothesis case of
# test_conv1d.py) fails the same way at the newest jax. To run it again:
#     bash scripts/check_floors.sh -q -n 2 -m "not slow"
#
# Usage: bash scripts/check_floors.sh [pytest arguments]   (arguments replace the subset)
# Needs Python >= 3.11 (tomllib) as `python3`; the venv is removed on exit.
set -euo pipefail
cd "$(dirname "$0")/.."
unset PYTHONPATH  # the floor environment sees only what it installed

# $(...), not <(...): a failure to read the floors stops the script (set -e).
spec_lines=$(python3 - <<'PY'
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
mapfile -t specs <<<"$spec_lines"
echo "check_floors: ${specs[*]}"

venv=$(mktemp -d -t convjax-floors.XXXXXX)
trap 'rm -rf "$venv"' EXIT
python3 -m venv "$venv"
"$venv/bin/python" -m pip install -q "${specs[@]}" .
"$venv/bin/python" -m pip list 2>/dev/null | grep -iE '^(jax|jaxlib|optax|numpy|chex) '

# The repository root holds no `convjax` (it lives in src/): the tests import the installed wheel.
pytest=("$venv/bin/python" -m pytest -p no:cacheprovider)
if [ "$#" -gt 0 ]; then
    "${pytest[@]}" "$@"
    exit
fi
status=0
# --noconftest: the examples run as a user runs them (tests/conftest.py turns on x64).
"${pytest[@]}" -q -n 2 --noconftest --doctest-modules --pyargs convjax || status=1
"${pytest[@]}" -q -n 2 tests/test_train.py tests/test_train_checkpoint.py \
    tests/test_train_devices.py tests/test_train_losses.py tests/test_optimizers.py \
    tests/test_checks.py tests/test_signal.py || status=1
exit "$status"
