"""Data-parallel and runs-parallel training over 4 forced CPU devices (in a subprocess)."""

import json
import os
import subprocess
import sys
import textwrap

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from convjax import train

SCRIPT = textwrap.dedent(
    """
    import json
    import jax
    jax.config.update("jax_enable_x64", True)
    jax.config.update("jax_numpy_rank_promotion", "raise")
    import jax.numpy as jnp
    import numpy as np
    import optax
    from convjax import train

    assert jax.device_count() == 4, jax.devices()
    rng = np.random.default_rng(0)
    x = rng.normal(size=(32, 3))
    data = {"x": x, "y": x @ np.array([1.0, -2.0, 0.5])}

    def loss_fn(p, b):
        r = b["x"] @ p["w"] + p["b"] - b["y"]
        return jnp.mean(r * r)

    def eval_fn(p, d):
        return {"mse": loss_fn(p, d)}

    p0 = {"w": jnp.zeros(3), "b": jnp.zeros(())}
    kw = dict(steps=6, batch_size=8, eval_every=3, eval_fn=eval_fn, eval_data=data,
              progress=False)
    out = {}

    def close(a, b):
        return all(np.allclose(u, v, rtol=1e-10, atol=1e-12)
                   for u, v in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True))

    one = train.fit(loss_fn, p0, optax.adam(0.1), data, jax.random.key(0), **kw)
    dp = train.fit(loss_fn, p0, optax.adam(0.1), data, jax.random.key(0), parallel="data", **kw)
    out["data_parallel_equal"] = close(one.params, dp.params) and close(one.history, dp.history)

    keys = jax.random.split(jax.random.key(1), 4)
    params = jax.vmap(lambda k: {"w": jax.random.normal(k, (3,)), "b": jnp.zeros(())})(keys)
    hyper = {"lr": jnp.array([0.01, 0.03, 0.1, 0.3])}
    make = lambda h: optax.adam(h["lr"])
    many = train.fit_many(loss_fn, params, make, data, keys, hyper=hyper, **kw)
    runs = train.fit_many(loss_fn, params, make, data, keys, hyper=hyper, parallel="runs", **kw)
    mdp = train.fit_many(loss_fn, params, make, data, keys, hyper=hyper, parallel="data", **kw)
    out["runs_parallel_equal"] = close(many.params, runs.params) and close(many.history,
                                                                          runs.history)
    out["many_data_parallel_equal"] = close(many.params, mdp.params)

    # Each run its own data (per_run_data): sharded along runs with the state.
    own = {"x": np.stack([x * (1 + r) for r in range(4)]),
           "y": np.stack([data["y"] * (1 + r) for r in range(4)])}
    kw_own = dict(kw, eval_data=own, per_run_data=True)
    own_one = train.fit_many(loss_fn, params, make, own, keys, hyper=hyper, **kw_own)
    own_runs = train.fit_many(loss_fn, params, make, own, keys, hyper=hyper, parallel="runs",
                              **kw_own)
    own_dp = train.fit_many(loss_fn, params, make, own, keys, hyper=hyper, parallel="data",
                            **kw_own)
    out["per_run_data_equal"] = (close(own_one.params, own_runs.params)
                                 and close(own_one.history, own_runs.history)
                                 and close(own_one.params, own_dp.params))
    out["per_run_data_differs"] = not close(own_one.params, many.params)

    # The results keep the layout asked for: runs split over devices, data replicated.
    out["runs_sharding"] = sorted(
        (sh.device.id, sh.data.shape) for sh in runs.params["w"].addressable_shards
    ) == [(i, (1, 3)) for i in range(4)]
    out["data_replicated"] = dp.params["w"].sharding.is_fully_replicated and len(
        dp.params["w"].sharding.device_set) == 4

    try:
        train.fit_many(loss_fn, jax.tree.map(lambda a: a[:3], params), make, data, keys[:3],
                       hyper={"lr": hyper["lr"][:3]}, parallel="runs", **kw)
    except ValueError as e:
        out["runs_error"] = str(e)
    try:
        train.fit(loss_fn, p0, optax.adam(0.1), data, jax.random.key(0), parallel="data",
                  **dict(kw, batch_size=6))
    except ValueError as e:
        out["data_error"] = str(e)
    print("RESULT" + json.dumps(out))
    """
)


def test_four_cpu_devices_match_one_device():
    env = dict(os.environ)
    env["XLA_FLAGS"] = env.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=4"
    env["JAX_PLATFORMS"] = "cpu"
    proc = subprocess.run(
        [sys.executable, "-c", SCRIPT], env=env, capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    line = [x for x in proc.stdout.splitlines() if x.startswith("RESULT")][-1]
    out = json.loads(line[len("RESULT") :])
    assert out["data_parallel_equal"]
    assert out["runs_parallel_equal"]
    assert out["many_data_parallel_equal"]
    assert out["per_run_data_equal"] and out["per_run_data_differs"]
    assert out["runs_sharding"]
    assert out["data_replicated"]
    assert out["runs_error"] == (
        "fit_many: with `parallel='runs'` the number of runs (3) must be divisible by the "
        "number of devices (4)."
    )
    assert out["data_error"] == (
        "fit: with `parallel='data'` the batch size (6) must be divisible by the number of "
        "devices (4)."
    )


def test_data_parallel_on_one_device_equals_default():
    # In this process there is one CPU device: the sharded code path still runs.
    rng = np.random.default_rng(0)
    data = {"x": rng.normal(size=(8, 2)), "y": rng.normal(size=8)}

    def loss_fn(p, b):
        return jnp.mean((b["x"] @ p["w"] - b["y"]) ** 2)

    kw = dict(steps=4, batch_size=4, eval_every=2, progress=False)
    a = train.fit(loss_fn, {"w": jnp.zeros(2)}, optax.sgd(0.1), data, jax.random.key(0), **kw)
    b = train.fit(
        loss_fn,
        {"w": jnp.zeros(2)},
        optax.sgd(0.1),
        data,
        jax.random.key(0),
        parallel="data",
        devices=jax.devices()[:1],
        **kw,
    )
    np.testing.assert_allclose(a.params["w"], b.params["w"], rtol=1e-12)
    assert isinstance(b.params["w"], jax.Array)
    assert b.params["w"].sharding.is_fully_replicated
    with pytest.raises(ValueError, match=r"fit: `parallel` must be one of 'data', got 'model'"):
        train.fit(
            loss_fn,
            {"w": jnp.zeros(2)},
            optax.sgd(0.1),
            data,
            jax.random.key(0),
            parallel="model",
            **kw,
        )
