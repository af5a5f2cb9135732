"""Fingerprints of a run (key, data, optimizer) stored with its checkpoints, compared on resume.

All are computed on the host from a small amount of data, JSON-serialisable, and
cheap next to one training block:

* **key**: per run, the first 16 hex digits of the SHA-256 of the key's raw data.
* **data** (and **eval_data**): per leaf, its path, shape, dtype and the SHA-256 of
  :data:`SAMPLE` elements taken at evenly spaced positions of the flattened leaf
  (all of them for smaller leaves). It cannot see a change confined to elements that
  are not sampled (for a leaf of ``size`` elements, one in about ``size / SAMPLE``
  is read), such as one relabelled example in a large dataset.
* **optimizer**: the optimizer state's leaves (paths, shapes, dtypes) for these
  params, and its behaviour: starting from a fresh state on fixed pseudo-random probe
  params, :data:`PROBES` updates with fixed pseudo-random probe gradients (and
  ``value=`` losses), recording per update and per params leaf ``sum(u * g)`` and
  ``sum(|u|)`` of the update ``u``. Two optimizers are taken as the same when their
  state leaves agree and every recorded number agrees to a relative
  :data:`RTOL`. It cannot see what does not change these first updates on these
  probes: a schedule that differs only after update ``PROBES``, a change below
  ``RTOL`` relative, behaviour that depends on the values of the real params or
  gradients in ways the probes do not exercise (e.g. a clipping threshold the probe
  gradients stay under), and Python-side effects.
"""

from __future__ import annotations

import hashlib
import math

import jax
import jax.numpy as jnp
import numpy as np

from convjax.train import devices as dev
from convjax.train._block import apply_optimizer, make_optimizer
from convjax.train._validate import path_str, shape_struct

SAMPLE = 4096
"""Elements sampled per data leaf."""

PROBES = 3
"""Probe updates of the optimizer fingerprint."""

RTOL = 1e-5
"""Relative tolerance when comparing optimizer probe numbers (other machines round
differently)."""


def keys(key, many: bool) -> list[str]:
    """One short digest per run (one in all for fit)."""
    if jax.dtypes.issubdtype(key.dtype, jax.dtypes.prng_key):
        key = jax.random.key_data(key)
    raw = np.asarray(dev.to_host(key))
    rows = raw if many else raw[None]
    return [hashlib.sha256(np.ascontiguousarray(r).tobytes()).hexdigest()[:16] for r in rows]


def _sample(leaf) -> np.ndarray:
    size = int(np.prod(np.shape(leaf)))
    idx = np.unique(np.linspace(0, size - 1, min(size, SAMPLE)).round().astype(np.int64))
    if isinstance(leaf, jax.Array):
        return np.asarray(dev.to_host(jnp.ravel(leaf)[jnp.asarray(idx)]))
    return np.asarray(leaf).reshape(-1)[idx]


def data(tree) -> list[list]:
    """``[path, shape, dtype, digest]`` per leaf of a data pytree."""
    out = []
    for p, leaf in jax.tree_util.tree_leaves_with_path(tree):
        sample = np.ascontiguousarray(_sample(leaf))
        digest = hashlib.sha256(sample.tobytes()).hexdigest()[:16]
        out.append([path_str(p), list(np.shape(leaf)), str(jnp.result_type(leaf)), digest])
    return out


def _probe_params(params_like):
    leaves, treedef = jax.tree_util.tree_flatten(params_like)
    keys_ = jax.random.split(jax.random.key(20240611), len(leaves))
    return jax.tree_util.tree_unflatten(
        treedef,
        [
            jax.random.normal(k, x.shape, jnp.float32).astype(x.dtype)
            for k, x in zip(keys_, leaves, strict=True)
        ],
    )


def _probe_run(optimizer, factory, hyper, params):
    """``(PROBES, 2, n_leaves)`` float32 numbers of one optimizer's first updates."""
    opt = make_optimizer(optimizer, hyper, factory)
    state = opt.init(params)
    rows = []
    for i in range(PROBES):
        grads = jax.tree.map(lambda x, i=i: jnp.cos(x * (i + 1.7) + i), params)
        updates, state = apply_optimizer(opt, grads, state, params, jnp.float32(1.0 - 0.1 * i))
        u = [x.astype(jnp.float32) for x in jax.tree.leaves(updates)]
        g = [x.astype(jnp.float32) for x in jax.tree.leaves(grads)]
        rows.append(
            jnp.stack(
                [
                    jnp.stack([jnp.sum(a * b) for a, b in zip(u, g, strict=True)]),
                    jnp.stack([jnp.sum(jnp.abs(a)) for a in u]),
                ]
            )
        )
        params = jax.tree.map(lambda p, d: (p + d).astype(p.dtype), params, updates)
    return jnp.stack(rows)


def _number(x: float):
    return x if math.isfinite(x) else repr(x)  # JSON has no NaN / inf


def optimizer(optimizer, factory: bool, hyper, params, many: bool) -> dict:
    """The optimizer's state layout for one run's params and its probe numbers per run."""
    one = jax.tree.map(lambda x: shape_struct(x, drop_leading=many), params)
    run_hyper = (
        None if hyper is None else jax.tree.map(lambda x: shape_struct(x, drop_leading=many), hyper)
    )
    state = jax.eval_shape(lambda h: make_optimizer(optimizer, h, factory).init(one), run_hyper)
    layout = [
        [path_str(p), list(x.shape), str(x.dtype)]
        for p, x in jax.tree_util.tree_leaves_with_path(state)
    ]
    probe_params = _probe_params(one)

    def run(h):
        return _probe_run(optimizer, factory, h, probe_params)

    numbers = jax.jit(jax.vmap(run) if many and factory else run)(hyper)
    numbers = np.asarray(dev.to_host(numbers), np.float64)
    if not (many and factory):
        numbers = numbers[None]
    return {"state": layout, "probe": [[_number(float(v)) for v in r.ravel()] for r in numbers]}


def _close(a, b) -> bool:
    if isinstance(a, str) or isinstance(b, str):
        return a == b
    return abs(a - b) <= RTOL * max(abs(a), abs(b))


def optimizer_differs(saved: dict, now: dict) -> str | None:
    """None if two optimizer fingerprints agree, else what differs (in words)."""
    if saved["state"] != now["state"]:
        return "its state has other leaves, shapes or dtypes"
    if len(saved["probe"]) != len(now["probe"]):
        return "its number of runs differs"
    runs = [
        r
        for r, (a, b) in enumerate(zip(saved["probe"], now["probe"], strict=True))
        if len(a) != len(b) or not all(_close(x, y) for x, y in zip(a, b, strict=True))
    ]
    if runs:
        which = "" if len(saved["probe"]) == 1 else f" (runs {runs})"
        return f"its first {PROBES} updates on probe gradients differ{which}"
    return None
