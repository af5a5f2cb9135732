"""Two processes joined by ``jax.distributed.initialize``: fit / fit_many and checkpoints.

Two copies of ``multiprocess_worker.py`` run on this machine, each with 2 CPU devices
(``--xla_force_host_platform_device_count=2``), joined on a localhost coordinator into
one 4-device cluster (cross-process collectives: gloo). They train with
``parallel="data"`` and ``parallel="runs"``, cut each run after 6 of 9 steps and resume
it from its checkpoint, and save / load a checkpoint whose arrays span both processes.
The test compares what they report with the same problem run here, in one process on
one device.

Checkpoints are collective (each process writes the shards it owns, nothing is gathered)
and resumed sharded; the test puts no barrier of its own between a run and its resume.

Tolerance: the data-parallel gradient is an all-reduce of per-device partial sums, so
the summation order differs from the single-device mean; in float64 over 9 Adam steps
the difference stays near 1e-15, and the test allows ``rtol=1e-10, atol=1e-12``.
Within the cluster, a resumed run must equal the uninterrupted one bitwise, and both
processes must report the same numbers bitwise.
"""

import json
import os
import socket
import subprocess
import sys
import time

import jax
import multiprocess_worker as worker
import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
TIMEOUT_S = 240  # the two workers take about 30 s on a busy 2-core machine


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("localhost", 0))
        return s.getsockname()[1]


def run_workers(work: str) -> list[dict]:
    """Starts the two workers and waits for both. A worker that fails stops the other at
    once (it would wait in a collective for a peer that is gone) and the assertion shows
    its log; on a timeout, both logs show the last phase each worker reached (the
    worker prints one line per phase)."""
    env = dict(os.environ)
    env["XLA_FLAGS"] = env.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=2"
    env["JAX_PLATFORMS"] = "cpu"
    port = str(free_port())
    logs = [os.path.join(work, f"log_{i}.txt") for i in range(2)]
    files = [open(path, "w") for path in logs]
    procs = [
        subprocess.Popen(
            [sys.executable, os.path.join(HERE, "multiprocess_worker.py"), str(i), port, work],
            env=env,
            stdout=files[i],
            stderr=subprocess.STDOUT,
            text=True,
        )
        for i in range(2)
    ]
    deadline = time.monotonic() + TIMEOUT_S
    try:
        while any(p.poll() is None for p in procs) and time.monotonic() < deadline:
            if any(p.poll() not in (None, 0) for p in procs):
                break
            time.sleep(0.2)
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
            p.wait()
        for f in files:
            f.close()

    def tail(i):
        with open(logs[i]) as f:
            return f.read()[-3000:]

    for i, p in enumerate(procs):
        assert p.returncode == 0, (
            f"process {i} exited with {p.returncode} (negative: killed, after "
            f"{TIMEOUT_S} s or when its peer failed):\n{tail(i)}\n"
            f"--- process {1 - i}:\n{tail(1 - i)}"
        )
    results = []
    for i in range(2):
        with open(os.path.join(work, f"result_{i}.json")) as f:
            results.append(json.load(f))
    return results


def reference() -> dict:
    """The same runs in this process: one device, no checkpoints."""
    pb = worker.problem()
    kw = {**worker.KW, "checkpoint_every": None}
    return {
        "fit": worker.summary(worker.fit_one(pb, worker.STEPS, **kw)),
        "many": worker.summary(worker.fit_runs(pb, worker.STEPS, **kw)),
    }


def assert_close(got: dict, want: dict) -> None:
    assert got["step"] == want["step"] == worker.STEPS
    assert len(got["leaves"]) == len(want["leaves"])
    for a, b in zip(got["leaves"], want["leaves"], strict=True):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-10, atol=1e-12)
    assert got["history"].keys() == want["history"].keys()
    for k in want["history"]:
        np.testing.assert_allclose(got["history"][k], want["history"][k], rtol=1e-10, atol=1e-12)


def test_two_processes(tmp_path):
    """One test (the workers run once): training, resuming, collective checkpoints."""
    assert jax.config.jax_enable_x64  # conftest: the reference runs in float64 too
    results = run_workers(str(tmp_path))
    check_training(tmp_path, results)
    check_bad_resume(results)
    check_collective_checkpoint(results)
    check_collective_failure(results)


def check_training(tmp_path, results):
    first, second = results
    for name in ("devices", "fit_data", "many_runs", "many_data", "fit_local"):
        assert first[name] == second[name], name  # the same numbers in every process, bitwise
    assert sorted(p for _, p in first["devices"]) == [0, 0, 1, 1]
    ref = reference()

    for name, want in (
        ("fit_data", ref["fit"]),
        ("many_runs", ref["many"]),
        ("many_data", ref["many"]),
        ("fit_local", ref["fit"]),
    ):
        # Every process resumed from the step-6 checkpoint, with no barrier in the test
        # between the two calls: fit returns only once its checkpoint is committed (a
        # collective save, or with parallel=None process 0's save and a barrier) ...
        assert first[name]["loaded"] == second[name]["loaded"] == ["step_000000006.json"], name
        # ... read as sharded arrays (each process reads the shards its devices hold) ...
        sharded = name != "fit_local"  # parallel=None: each process holds its own copy
        assert first[name]["sharded"] == second[name]["sharded"] == [sharded], name
        # ... and resuming across processes is bitwise the uninterrupted run ...
        assert first[name]["resumed"] == first[name]["whole"], name
        # ... which is the single-process result up to summation order.
        assert_close(first[name]["resumed"], want)
        assert first[name]["resumed"]["history"]["step"] == [3, 6, 9], name
        # No process gathers the state: saving exchanges 41-byte digests and a 1-byte
        # status (parallel=None: the barrier's 4-byte name hash), restoring a few integers
        # per state leaf (steps, finiteness flags; parallel=None: nothing).
        for r in results:
            assert {fn for fn, _, _ in r[name]["gathers"]} == (
                {"save", "restore"} if sharded else {"save"}
            ), name
            for fn, dtype, nbytes in r[name]["gathers"]:
                assert dtype in ("uint8", "uint32", "int64"), (name, fn, dtype)
                assert nbytes <= (41 if fn == "save" else 8 * 16), (name, fn, nbytes)
    for name, files in (
        ("fit_data", [".p00000.npz"]),
        ("many_runs", [".p00000.npz", ".p00001.npz"]),
        ("many_data", [".p00000.npz"]),
        ("fit_local", [".npz"]),
    ):
        # Steps 3, 6, 9 (keep_checkpoints=3): a record and one array file per writing
        # process (replicated state: process 0 writes one copy; runs-sharded state: each
        # process writes the runs it holds; parallel=None: process 0 writes step_s.npz).
        names = sorted(os.listdir(tmp_path / name))
        assert names == sorted(
            f"step_{s:09d}{ext}" for s in (3, 6, 9) for ext in [".json", *files]
        ), names


def check_bad_resume(results):
    """NaN params in the runs only process 1 holds: both processes refuse, alike."""
    first, second = (r["bad_resume"] for r in results)
    assert (
        first
        == second
        == (
            "fit_many: checkpoint `DIR/step_000000009.json` holds NaN or inf in "
            "params['w'], which was finite at initialisation; it cannot be resumed from (resume "
            "from an earlier checkpoint, or start afresh)."
        )
    )


def check_collective_checkpoint(results):
    """save_checkpoint of arrays spanning both processes: each shard written once."""
    for pid, r in enumerate(results):
        runs, data = r["collective_runs"], r["collective_data"]
        # Runs sharded over the 4 devices: each process wrote the 2 runs it holds.
        assert runs["files"] == ["step_000000007.p00000.npz", "step_000000007.p00001.npz"]
        assert runs["chunk_files"]["['params']['w']"] == [
            [0, [0, 0], [1, 3]],
            [0, [1, 0], [2, 3]],
            [1, [2, 0], [3, 3]],
            [1, [3, 0], [4, 3]],
        ]
        assert runs["chunk_files"]["['host']"] == [[0, [0], [3]]]  # host values: process 0
        rows = {k: v for k, v in runs["own_file_members"].items() if k.startswith("leaf_00003")}
        assert rows == (
            {"leaf_00003_0000": [1, 3], "leaf_00003_0001": [1, 3]}
            if pid == 0
            else {"leaf_00003_0002": [1, 3], "leaf_00003_0003": [1, 3]}
        )
        # Replicated (data-parallel) state: one writer, process 0, one copy.
        assert data["files"] == ["step_000000007.p00000.npz"]
        assert data["chunk_files"]["['params']['w']"] == [[0, [0], [3]]]
        assert (data["own_file_members"] is None) == (pid == 1)
        for case in (runs, data):
            # The only cross-process gathers are the 41-byte file digests and the barrier.
            assert max(case["gathered_bytes"]) <= 41, case["gathered_bytes"]
            assert case["sharded_load_equal"] and case["sharded_load_kept_sharding"]
            assert case["key_data_equal"] and case["whole_load_equal"]


def check_collective_failure(results):
    """A collective save failing in one process raises in every process, commits nothing."""
    first, second = (r["collective_failure"] for r in results)
    assert first["error"] == (
        "RuntimeError: save_checkpoint: processes [1] could not write their array files; "
        "nothing was committed (see their own errors)."
    )
    assert second["error"].startswith(
        "ValueError: save_checkpoint: leaf ['state']['step'] is a step counter"
    )
    assert first["committed"] is None and second["committed"] is None
