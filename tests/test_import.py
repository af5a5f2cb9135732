"""``import convjax`` is cheap: public names load their modules on first access
(PEP 562), ``jax.experimental.sparse`` is loaded only by the sparse form, and the
import-time benchmark runs and writes its JSON (timings are not asserted: they
depend on the machine; see benchmarks/import_time.py)."""

import importlib
import json
import os
import subprocess
import sys

import pytest

import convjax

ROOT = os.path.join(os.path.dirname(__file__), os.pardir)


def run_python(code: str) -> str:
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stdout + out.stderr
    return out.stdout


def test_import_loads_no_submodule_and_every_name_resolves():
    loaded = json.loads(
        run_python(
            "import json, sys, convjax\n"
            "print(json.dumps(sorted(m for m in sys.modules if m.startswith('convjax'))))\n"
        )
    )
    assert loaded == ["convjax"]
    for name, module in convjax._NAMES.items():
        assert getattr(convjax, name) is getattr(importlib.import_module(module), name)
    for name in convjax._SUBMODULES:
        assert getattr(convjax, name) is importlib.import_module(f"convjax.{name}")
    assert set(convjax.__all__) == set(convjax._NAMES) | set(convjax._SUBMODULES)
    assert set(convjax.__all__) <= set(dir(convjax))
    with pytest.raises(AttributeError, match=r"module 'convjax' has no attribute 'conv4d'"):
        convjax.conv4d  # noqa: B018
    namespace = {}
    exec("from convjax import *", namespace)
    assert {n for n in namespace if n != "__builtins__"} == set(convjax.__all__)


def test_sparse_is_loaded_only_by_the_sparse_form():
    """Every public name loaded, jax.experimental.sparse is not; conv_matrix_sparse
    loads it when called."""
    out = run_python(
        "import sys, convjax, jax.numpy as jnp\n"
        "for name in convjax.__all__: getattr(convjax, name)\n"
        "print('jax.experimental.sparse' in sys.modules)\n"
        "m = convjax.conv_matrix_sparse(jnp.ones((3, 1, 1)), 5)\n"
        "print('jax.experimental.sparse' in sys.modules, type(m).__name__)\n"
    )
    assert out.split() == ["False", "True", "BCOO"]


@pytest.mark.slow
def test_import_time_benchmark_writes_its_json(tmp_path):
    script = os.path.join(ROOT, "benchmarks", "import_time.py")
    out = subprocess.run(
        [sys.executable, script, "--reps", "1", "--warmup", "1", "--out", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert out.returncode == 0, out.stdout + out.stderr
    assert "import convjax after them:" in out.stdout
    report = json.loads((tmp_path / "import_time.json").read_text())
    assert report["reps"] == 1 and report["target_s"] == 0.05
    for key in (
        "base_median_s",
        "convjax_total_median_s",
        "overhead_median_s",
        "all_names_median_s",
    ):
        assert report[key] > 0, key
    assert report["sparse_loaded"] is False
    assert len(report["samples"]["overhead_s"]) == 1
    assert {"jax", "optax"} == set(report["versions"])
