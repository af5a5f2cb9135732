#!/usr/bin/env bash
# GPU check of conv1d (about 3 minutes). Run from anywhere:
#   bash benchmarks/gpu_check.sh
# Installs convjax (editable) and jax with CUDA 12 when jax has no GPU backend yet,
# then runs benchmarks/gpu_check.py, which writes $OUT/gpu_check.json when OUT is set.
# Without internet the install fails; the check then runs with what is installed and
# says clearly (exit 0) if there is no GPU backend. GPU_CHECK_NO_INSTALL=1 skips the
# install (for a dry run on a machine without a GPU: never pull CUDA wheels there).
set -u
cd "$(dirname "$0")/.."
PY="${PYTHON:-python}"

if [ "${GPU_CHECK_NO_INSTALL:-0}" != "1" ] \
    && ! "$PY" -c "import jax, sys; sys.exit(jax.default_backend() != 'gpu')" 2>/dev/null; then
    echo "gpu_check.sh: installing convjax and jax[cuda12] ..."
    "$PY" -m pip install -q --retries 2 --timeout 20 -e . "jax[cuda12]" \
        || echo "gpu_check.sh: pip install failed (no internet?); using what is installed."
fi
if ! "$PY" -c "import convjax" 2>/dev/null; then
    "$PY" -m pip install -q --no-deps --no-build-isolation -e . \
        || echo "gpu_check.sh: could not install convjax; adding src/ to PYTHONPATH."
    export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}"
fi
timeout 400 "$PY" benchmarks/gpu_check.py
