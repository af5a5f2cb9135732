#!/usr/bin/env bash
# Every check of convjax, in order; what the README's test command and CI run.
#
# Usage: bash scripts/check.sh [STAGE ...]     (no stage: all of them, in this order)
#   lint      ruff check
#   format    ruff format --check
#   types     mypy on src/convjax (configuration in pyproject.toml)
#   doctests  the docstring examples of every module, and the >>> examples of README.md and
#             docs/*.md (scripts/doctest_markdown.py); option flags in pyproject.toml
#   tests     the test suite, on 2 workers
#   apidocs   the API reference built from the docstrings with pdoc, warnings as errors
#             (scripts/build_api_docs.py)
#   floors    doctests and part of the suite at the lowest jax, jaxlib and optax declared
#             (scripts/check_floors.sh)
#
# Runs in the active environment (`pip install -e ".[test]"` first). Every stage runs even
# when an earlier one fails; the exit status is non-zero when any failed. Ends with a table of
# the stages' times and one line adding up the closing counts of every pytest run (doctests,
# suite, and those at the version floors).
set -uo pipefail
cd "$(dirname "$0")/.."

ALL=(lint format types doctests tests apidocs floors)
stages=("$@")
[ "${#stages[@]}" -eq 0 ] && stages=("${ALL[@]}")
PY_DIRS=(src tests benchmarks experiments scripts)

run_stage() {
    case "$1" in
        lint) ruff check "${PY_DIRS[@]}" ;;
        format) ruff format --check "${PY_DIRS[@]}" ;;
        types) python -m mypy ;;
        doctests)  # --noconftest: run as a user runs them, without the tests' x64 and checks
            python -m pytest -q -n 2 --noconftest --doctest-modules src/convjax \
                scripts/doctest_markdown.py
            ;;
        tests) python -m pytest -q -n 2 --durations=20 ;;
        apidocs) python scripts/build_api_docs.py ;;
        floors) bash scripts/check_floors.sh ;;
        *)
            echo "check.sh: unknown stage '$1' (stages: ${ALL[*]})" >&2
            return 2
            ;;
    esac
}

# Sets CPU to the CPU time (user + system, in tenths of a second) used so far by this shell's
# finished children: with other work on the machine, a stage's CPU time says more about its
# cost than its wall time. Called directly, never in $(...), whose subshell has no children.
child_cpu_tenths() {
    local -a t
    times >"$logs/times"
    read -ra t < <(tail -n 1 "$logs/times")
    local total=0 part m s
    for part in "${t[@]}"; do
        m=${part%%m*}
        s=${part#*m}
        s=${s%s}
        s=${s/,/.}
        total=$((total + m * 600 + 10#${s%.*} * 10 + 10#${s#*.} / 100))
    done
    CPU=$total
}

logs=$(mktemp -d -t convjax-check.XXXXXX)
trap 'rm -rf "$logs"' EXIT
summary=()
failed=0
declare -A count=([passed]=0 [failed]=0 [skipped]=0 [errors]=0)
for stage in "${stages[@]}"; do
    echo "=== check: $stage"
    start=${EPOCHREALTIME/[.,]/}
    child_cpu_tenths
    cpu_start=$CPU
    run_stage "$stage" 2>&1 | tee "$logs/$stage.log"
    status=${PIPESTATUS[0]}
    elapsed_ms=$(((${EPOCHREALTIME/[.,]/} - start) / 1000))
    child_cpu_tenths
    cpu=$((CPU - cpu_start))
    # pytest's closing lines, e.g. "2 failed, 455 passed, 53 skipped in 312.18s (0:05:12)".
    closing=$(grep -E '^(=+ )?[0-9]+ (passed|failed|skipped|errors?|deselected).* in [0-9.]+s' \
        "$logs/$stage.log" || true)
    for word in passed failed skipped error errors; do
        key=$word
        [ "$word" = error ] && key=errors
        for n in $(grep -oE "[0-9]+ $word\b" <<<"$closing" | grep -oE '^[0-9]+' || true); do
            count[$key]=$((count[$key] + n))
        done
    done
    if [ "$status" -eq 0 ]; then result=ok; else result="FAILED (exit $status)"; failed=1; fi
    summary+=("$(printf '%-9s %6d.%d s %6d.%d s  %s' "$stage" $((elapsed_ms / 1000)) \
        $((elapsed_ms % 1000 / 100)) $((cpu / 10)) $((cpu % 10)) "$result")")
done

echo "=== check: summary (stage, wall time, CPU time of its processes, result)"
printf '%s\n' "${summary[@]}"
echo "check: $((count[passed])) passed, $((count[failed] + count[errors])) failed, $((count[skipped])) skipped"
exit "$failed"
