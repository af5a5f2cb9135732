"""One process of the two-process test in ``test_train_multiprocess.py``.

Run as ``python multiprocess_worker.py PROCESS_ID PORT WORK_DIR`` in two processes, each
with ``XLA_FLAGS=--xla_force_host_platform_device_count=2`` and ``JAX_PLATFORMS=cpu``;
they join through ``jax.distributed.initialize`` on ``localhost:PORT`` into one
4-device cluster. Each process writes what it computed to
``WORK_DIR/result_<id>.json``; the test compares both with a single-process run of
the same problem (``problem()`` below, imported by the test).
"""

from __future__ import annotations

import json
import os
import sys

STEPS, FIRST_STEPS = 9, 6
KW = dict(batch_size=8, eval_every=3, checkpoint_every=3, progress=False)


def problem():
    """Data, loss, eval function and initial params/keys shared with the test."""
    import jax
    import jax.numpy as jnp
    import numpy as np
    import optax

    rng = np.random.default_rng(0)
    x = rng.normal(size=(32, 3))
    data = {"x": x, "y": x @ np.array([1.0, -2.0, 0.5]) + 0.1 * rng.normal(size=32)}

    def loss_fn(p, b):
        r = b["x"] @ p["w"] + p["b"] - b["y"]
        return jnp.mean(r * r)

    def eval_fn(p, d):
        return {"mse": loss_fn(p, d)}

    keys = jax.random.split(jax.random.key(1), 4)
    many = jax.vmap(lambda k: {"w": jax.random.normal(k, (3,)), "b": jnp.zeros(())})(keys)
    return dict(
        data=data,
        loss_fn=loss_fn,
        eval_fn=eval_fn,
        opt=optax.adam(0.1),
        make_opt=lambda h: optax.adam(h["lr"]),
        params=({"w": jnp.zeros(3), "b": jnp.zeros(())}),
        key=jax.random.key(0),
        many_params=many,
        keys=keys,
        hyper={"lr": jnp.array([0.01, 0.03, 0.1, 0.3])},
    )


def fit_one(pb, steps, **kw):
    from convjax import train

    return train.fit(
        pb["loss_fn"],
        pb["params"],
        pb["opt"],
        pb["data"],
        pb["key"],
        steps=steps,
        eval_fn=pb["eval_fn"],
        eval_data=pb["data"],
        **kw,
    )


def fit_runs(pb, steps, **kw):
    from convjax import train

    return train.fit_many(
        pb["loss_fn"],
        pb["many_params"],
        pb["make_opt"],
        pb["data"],
        pb["keys"],
        hyper=pb["hyper"],
        steps=steps,
        eval_fn=pb["eval_fn"],
        eval_data=pb["data"],
        **kw,
    )


def summary(res) -> dict:
    """Params, optimizer state and history as nested lists (gathered where sharded)."""
    import jax
    import numpy as np

    from convjax.train import devices

    host = devices.to_host({"params": res.params, "opt_state": res.opt_state})
    leaves = [np.asarray(x).tolist() for x in jax.tree.leaves(host)]
    return {
        "leaves": leaves,
        "history": {k: v.tolist() for k, v in res.history.items()},
        "step": res.step,
    }


def train_and_resume(pb, fit, directory, parallel):
    """A run cut at FIRST_STEPS and resumed to STEPS, and the same run uninterrupted.

    No barrier between the two calls: the loop's checkpointing must make every process
    see the committed checkpoint before it returns. Every cross-process gather made
    while saving or restoring is recorded (``[save or restore, dtype, nbytes]``), and so
    is whether the resumed state came back sharded (each process reading only its shards).
    """
    import jax
    import numpy as np
    from jax.experimental import multihost_utils

    from convjax.train import _resume
    from convjax.train import checkpoint as ckpt

    inside, gathers, loaded, sharded = [], [], [], []
    real_gather, real_load = multihost_utils.process_allgather, ckpt.load_checkpoint
    real_save, real_restore = _resume.save, _resume.restore

    def gather(x, tiled=False):
        if inside:
            gathers.extend(
                [inside[-1], str(np.asarray(v).dtype), int(np.asarray(v).nbytes)]
                for v in jax.tree.leaves(x)
            )
        return real_gather(x, tiled=tiled)

    def within(fn):
        def call(*args, **kwargs):
            inside.append(fn.__name__)
            try:
                return fn(*args, **kwargs)
            finally:
                inside.pop()

        return call

    def load(path, like):
        loaded.append(os.path.basename(path))
        tree, meta = real_load(path, like)
        sharded.append(
            all(
                isinstance(x, jax.Array) and not x.is_fully_addressable
                for x in jax.tree.leaves(tree["state"])
            )
        )
        return tree, meta

    multihost_utils.process_allgather, ckpt.load_checkpoint = gather, load
    _resume.save, _resume.restore = within(real_save), within(real_restore)
    try:
        fit(pb, FIRST_STEPS, checkpoint_dir=directory, parallel=parallel, **KW)
        resumed = fit(pb, STEPS, checkpoint_dir=directory, resume=True, parallel=parallel, **KW)
    finally:
        multihost_utils.process_allgather, ckpt.load_checkpoint = real_gather, real_load
        _resume.save, _resume.restore = real_save, real_restore
    whole = fit(pb, STEPS, parallel=parallel, **{**KW, "checkpoint_every": None})
    return resumed, whole, {"loaded": loaded, "sharded": sharded, "gathers": gathers}


def own_members(directory, step):
    """The npz members this process wrote for ``step`` (None: it wrote no file)."""
    import jax
    import numpy as np

    name = os.path.join(directory, f"step_{step:09d}.p{jax.process_index():05d}.npz")
    if not os.path.exists(name):
        return None
    with np.load(name) as z:
        return {k: list(z[k].shape) for k in sorted(z.files)}


def collective_checkpoint(directory, res, keys):
    """save_checkpoint with arrays spanning both processes, then load it back."""
    import jax
    import numpy as np
    from jax.experimental import multihost_utils

    from convjax import train
    from convjax.train import checkpoint as ckpt
    from convjax.train import devices

    gathered_bytes = []
    real = multihost_utils.process_allgather

    def spy(x, tiled=False):
        gathered_bytes.append(int(sum(np.asarray(v).nbytes for v in jax.tree.leaves(x))))
        return real(x, tiled=tiled)

    multihost_utils.process_allgather = spy
    os.makedirs(directory, exist_ok=True)
    tree = {"params": res.params, "keys": keys, "host": np.arange(3.0), "step": np.int32(7)}
    try:
        path = train.save_checkpoint(directory, 7, tree)
    finally:
        multihost_utils.process_allgather = real
    record = ckpt.read_record(path)
    like = jax.tree.map(
        lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=x.sharding),
        {"params": res.params, "keys": keys},
    )
    like.update(host=np.zeros(3), step=np.int32(0))
    back, _ = train.load_checkpoint(path, like)
    same_shards = all(
        np.array_equal(np.asarray(a.data), np.asarray(b.data)) and a.index == b.index
        for x, y in zip(jax.tree.leaves(back["params"]), jax.tree.leaves(res.params), strict=True)
        for a, b in zip(x.addressable_shards, y.addressable_shards, strict=True)
    )
    key_data = [jax.random.key_data(k) for k in (back["keys"], keys)]
    whole, _ = train.load_checkpoint(
        path,
        {
            "params": jax.tree.map(np.asarray, devices.to_host(res.params)),
            "keys": keys,
            "host": np.zeros(3),
            "step": np.int32(0),
        },
    )
    return {
        "files": [f["name"] for f in record["files"]],
        "chunk_files": {
            leaf["path"]: [[c["file"], c["start"], c["stop"]] for c in leaf["chunks"]]
            for leaf in record["leaves"]
        },
        "own_file_members": own_members(directory, 7),
        "gathered_bytes": gathered_bytes,
        "sharded_load_equal": bool(same_shards),
        "sharded_load_kept_sharding": all(
            x.sharding == y.sharding
            for x, y in zip(
                jax.tree.leaves(back["params"]), jax.tree.leaves(res.params), strict=True
            )
        ),
        "key_data_equal": bool(
            np.array_equal(devices.to_host(key_data[0]), devices.to_host(key_data[1]))
        ),
        "whole_load_equal": all(
            np.array_equal(a, b)
            for a, b in zip(
                jax.tree.leaves(whole["params"]),
                jax.tree.leaves(devices.to_host(res.params)),
                strict=True,
            )
        ),
    }


def collective_failure(directory, sharding):
    """A save that fails in process 1 only: every process must raise, none may hang."""
    import numpy as np

    from convjax import train
    from convjax.train import devices

    os.makedirs(directory, exist_ok=True)
    # A step counter with values beyond the step, in the runs held by process 1 only.
    bad = devices.put(np.array([7, 7, 99, 99], np.int32), sharding)
    try:
        train.save_checkpoint(directory, 7, {"state": {"step": bad}})
        error = "none"
    except (ValueError, RuntimeError) as e:
        error = f"{type(e).__name__}: {e}"
    return {"error": error, "committed": train.latest_checkpoint(directory)}


def bad_resume(pb, source, directory):
    """Resume from a copy of ``source`` whose runs held by process 1 hold NaN params.

    Process 0 edits the copy (fixing up the recorded size and SHA-256); only process 1
    reads the NaN, but every process must refuse the checkpoint with the same error.
    """
    import hashlib
    import shutil

    import jax
    import numpy as np
    from jax.experimental import multihost_utils

    from convjax import train

    if jax.process_index() == 0:
        shutil.copytree(source, directory)
        path = train.latest_checkpoint(directory)
        with open(path) as f:
            record = json.load(f)
        i = next(
            i for i, leaf in enumerate(record["leaves"]) if leaf["path"] == "['state'].params['w']"
        )
        k = next(k for k, f in enumerate(record["files"]) if f["name"].endswith(".p00001.npz"))
        npz = os.path.join(directory, record["files"][k]["name"])
        with np.load(npz) as z:
            members = {m: z[m] for m in z.files}
        for j, c in enumerate(record["leaves"][i]["chunks"]):
            if c["file"] == k:
                members[f"leaf_{i:05d}_{j:04d}"] = np.full_like(
                    members[f"leaf_{i:05d}_{j:04d}"], np.nan
                )
        with open(npz, "wb") as f:
            np.savez(f, **members)
        with open(npz, "rb") as f:
            raw = f.read()
        record["files"][k].update(size=len(raw), sha256=hashlib.sha256(raw).hexdigest())
        with open(path, "w") as f:
            json.dump(record, f)
    multihost_utils.sync_global_devices(f"forged: {directory}")
    try:
        fit_runs(pb, STEPS + 3, checkpoint_dir=directory, resume=True, parallel="runs", **KW)
        return "none"
    except train.CheckpointError as e:
        return str(e).replace(directory, "DIR")


def main(process_id: int, port: int, work: str) -> None:
    import jax

    try:  # gloo is the default on recent jax; older versions need it asked for
        jax.config.update("jax_cpu_collectives_implementation", "gloo")
    except (AttributeError, ValueError):
        pass
    jax.distributed.initialize(
        coordinator_address=f"localhost:{port}",
        num_processes=2,
        process_id=process_id,
        initialization_timeout=60,
    )
    jax.config.update("jax_enable_x64", True)
    jax.config.update("jax_numpy_rank_promotion", "raise")
    from convjax.train import devices

    assert jax.process_count() == 2 and jax.device_count() == 4, jax.devices()
    assert jax.local_device_count() == 2
    pb = problem()
    out = {"devices": [[d.id, d.process_index] for d in jax.devices()]}

    def phase(name: str) -> None:  # the test shows the last one if a worker hangs
        print(f"[process {process_id}] {name}", flush=True)

    for name, fit, parallel in (
        ("fit_data", fit_one, "data"),
        ("many_runs", fit_runs, "runs"),
        ("many_data", fit_runs, "data"),
        ("fit_local", fit_one, None),
    ):
        phase(f"{name}: train, cut, resume")
        resumed, whole, seen = train_and_resume(pb, fit, os.path.join(work, name), parallel)
        out[name] = {"resumed": summary(resumed), "whole": summary(whole), **seen}
        if name == "many_runs":
            phase("bad resume")
            out["bad_resume"] = bad_resume(
                pb, os.path.join(work, name), os.path.join(work, "bad_resume")
            )
            mesh = devices.make_mesh("runs")
            keys = devices.put(pb["keys"], devices.leading(mesh))
            phase("collective checkpoint, runs")
            out["collective_runs"] = collective_checkpoint(
                os.path.join(work, "coll_runs"), resumed, keys
            )
            phase("collective failure")
            out["collective_failure"] = collective_failure(
                os.path.join(work, "coll_fail"), devices.leading(mesh)
            )
        if name == "fit_data":
            mesh = devices.make_mesh("data")
            keys = devices.put(pb["keys"], devices.replicated(mesh))
            phase("collective checkpoint, data")
            out["collective_data"] = collective_checkpoint(
                os.path.join(work, "coll_data"), resumed, keys
            )
    with open(os.path.join(work, f"result_{process_id}.json"), "w") as f:
        json.dump(out, f)
    phase("done")


if __name__ == "__main__":
    main(int(sys.argv[1]), int(sys.argv[2]), sys.argv[3])
