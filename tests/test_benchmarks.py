"""The conv1d benchmark and the GPU check run, at a tiny size, and write what they
promise (the numbers themselves are measured by the full runs, see docs/speed.md)."""

import importlib.util
import json
import os

import jax
import pytest

BENCH_DIR = os.path.join(os.path.dirname(__file__), os.pardir, "benchmarks")


def _load(name):
    spec = importlib.util.spec_from_file_location(name, os.path.join(BENCH_DIR, f"{name}.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.slow
def test_bench_conv1d_quick_writes_json_and_plot(tmp_path):
    bench = _load("bench_conv1d")
    report = bench.main(["--quick", "--out", str(tmp_path)])
    on_disk = json.loads((tmp_path / "conv1d.json").read_text())
    assert on_disk["quick"] is True and on_disk["dtype"] == "float32"
    assert (tmp_path / "conv1d.png").stat().st_size > 0
    assert on_disk["matmul_peak"]["gflops_median"] > 0
    kinds_modes = {(r["kind"], r["mode"]) for r in report["results"]}
    scan = f"forward+backward in lax.scan ({bench.SCAN_STEPS} steps)"
    assert kinds_modes == {
        (k, m) for k in ("signal", "layer") for m in ("forward", "forward+backward", scan)
    }
    assert set(on_disk["quiet"]) == {"load_at_start", "waited_s", "quiet", "threshold"}
    for r in on_disk["results"]:
        names = set(r["times"])
        if r["mode"] == scan:
            assert names == {"convjax.auto", "lax.conv_general_dilated"}
            assert set(r["summary"]["peak_memory_ratio"]) == {"auto", "xla"}
        else:
            assert {f"convjax.{a}" for a in bench.ALGOS} <= names
        assert "lax.conv_general_dilated" in names
        if r["kind"] == "signal" and r["mode"] == "forward":
            assert {
                "numpy.convolve",
                "scipy.signal.convolve",
                "scipy.signal.oaconvolve",
                "jnp.convolve",
                "jax.scipy.signal.fftconvolve",
            } <= names
        for t in r["times"].values():
            assert 0 < t["min_s"] <= t["median_s"] and t["rounds"] >= 2
        s = r["summary"]
        assert s["best_peer"] in names and r["times"][s["best_peer"]]["group"] == "peer"
        assert s["auto_speedup_vs_best_peer"] > 0
    assert {c["algorithm"] for c in on_disk["compile_times"]} == {"auto", "xla"}


def test_gpu_check_says_so_and_exits_0_without_a_gpu(capsys):
    if jax.default_backend() == "gpu":
        pytest.skip("a GPU is present: the check would run for minutes")
    check = _load("gpu_check")
    assert check.main() == 0
    assert "jax has no GPU backend" in capsys.readouterr().out


@pytest.mark.slow
def test_bench_conv2d_quick_writes_json(tmp_path):
    bench = _load("bench_conv2d")
    report = bench.main(["--quick", "--out", str(tmp_path)])
    on_disk = json.loads((tmp_path / "conv2d.json").read_text())
    assert on_disk["quick"] is True and on_disk["start"]["matmul_peak"]["gflops_median"] > 0
    assert {(r["case"], r["mode"]) for r in report["results"]} == {
        (c[0], m) for c in bench.shapes(True) for m in ("forward", "forward+backward", "scan")
    }
    for r in on_disk["results"]:
        names = set(r["times_ms"])
        assert "lax.conv_general_dilated" in names and "convjax.auto" in names
        if r["mode"] != "scan":
            assert {f"convjax.{a}" for a in bench.ALGOS} <= names
        assert r["auto_forward"] in (*bench.ALGOS, "loop") and r["auto_vs_lax"] > 0
        assert all(t > 0 for t in r["times_ms"].values())


def test_fit_many_anatomy_tiny_writes_json(tmp_path):
    """benchmarks/fit_many_anatomy.py at a tiny size: both variants of the step, one run
    and the vmapped runs, and the derived speed-ups."""
    out = tmp_path / "anatomy.json"
    argv = ["--runs", "2", "--repeats", "1", "--wait", "0", "--channels", "2"]
    report = _load("fit_many_anatomy").main([*argv, "--peak-n", "64", "--out", str(out)])
    on_disk = json.loads(out.read_text())
    assert on_disk["runs"] == 2 and set(on_disk["results"]) == {"2 channels"}
    row = report["results"]["2 channels"]
    for variant in ("model", "without convolutions"):
        times = row[variant]
        assert times["one_run_step_s"]["median"] > 0 and times["2_runs_vmapped_step_s"]["min"] > 0
    assert row["measured_vmapped_speedup"] > 0
    assert row["best_possible_speedup_if_convolutions_were_free"] > 0


def test_loop_route_trial_quick_writes_json(tmp_path):
    """benchmarks/loop_route_trial.py at its quick size: every algorithm and every
    weight-gradient route, at top level and in a scan."""
    out = tmp_path / "trial.json"
    report = _load("loop_route_trial").main(["--quick", "--wait", "0", "--out", str(out)])
    assert json.loads(out.read_text())["scan_steps"] == report["scan_steps"]
    cases = {r["case"]: r["rows"] for r in report["results"]}
    assert set(cases["signal L=1000 K=3"]) == {"loop", "fft", "xla", "direct"}
    assert set(cases["weight gradient B=1 L=1000 K=3"]) == {"loop", "taps", "conv (own choice)"}
    for rows in cases.values():
        for t in rows.values():
            assert t["top_level_s"] > 0 and t["in_scan_per_step_s"] > 0


def test_cnn_gradient_trial_quick_writes_json(tmp_path):
    """benchmarks/cnn_gradient_trial.py at its quick size: every weight-gradient variant
    is checked against lax's inside the script before it is timed (1-D and 2-D)."""
    out = tmp_path / "cnn.json"
    report = _load("cnn_gradient_trial").main(["--quick", "--wait", "0", "--out", str(out)])
    assert json.loads(out.read_text())["scan_steps"] == report["scan_steps"]
    by_case = {r["case"]: r for r in report["results"]}
    assert set(by_case) == {"B=4 16 3->5 K=3", "B=2 6x7 2->3 K=3"}
    for row in by_case.values():
        top = row["top_level_s"]
        assert "weight gradient, input padded before its layout copy" in top
        assert all(t > 0 for t in top.values())
    assert report["depthwise"]["weight gradient, auto"] > 0


def test_dimension_numbers_trial_quick_writes_json(tmp_path):
    """benchmarks/dimension_numbers_trial.py at its quick size: the reversed loop form
    and two arrangements, checked against each other inside the script."""
    out = tmp_path / "dn.json"
    report = _load("dimension_numbers_trial").main(["--quick", "--wait", "0", "--out", str(out)])
    rows = json.loads(out.read_text())["results"]
    assert len(rows) == len(report["results"]) == 3
    assert rows[0]["window_reversed"] and not rows[1]["window_reversed"]
    assert all(r["top_level_s"] > 0 and r["in_scan_per_step_s"] > 0 for r in rows)
