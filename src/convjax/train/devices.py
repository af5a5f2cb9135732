"""Placing training state and data on devices with ``jax.sharding``.

Two layouts, each over a 1-D mesh of devices (default: all of ``jax.devices()``,
which on a multi-host cluster after ``jax.distributed.initialize()`` are the
devices of every process):

* data-parallel (mesh axis ``"data"``): params, optimizer state and data are
  replicated; each minibatch is sharded along its batch axis, so each device
  computes the gradient of its share and XLA inserts the all-reduce.
* runs-parallel (mesh axis ``"runs"``): the stacked state of ``fit_many`` is
  sharded along its leading runs axis; data is replicated.

Arrays are built with ``jax.make_array_from_callback`` from the full host value,
which works unchanged when the mesh spans several processes (each process only
materialises its own shards). Reading back uses ``process_allgather`` when an
array is not fully addressable from this process.
"""

from __future__ import annotations

from collections.abc import Sequence

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

PARALLEL = ("data", "runs")


def make_mesh(axis: str, devices: Sequence | None = None) -> Mesh:
    """A 1-D mesh named ``axis`` over ``devices`` (default ``jax.devices()``)."""
    devs = list(jax.devices() if devices is None else devices)
    if not devs:
        raise ValueError("make_mesh: `devices` is empty.")
    return Mesh(np.array(devs, dtype=object), (axis,))


def replicated(mesh: Mesh) -> NamedSharding:
    return NamedSharding(mesh, PartitionSpec())


def leading(mesh: Mesh) -> NamedSharding:
    """Shards the leading axis over the mesh's (only) axis."""
    return NamedSharding(mesh, PartitionSpec(mesh.axis_names[0]))


def _put(x, sharding: NamedSharding):
    if isinstance(x, jax.Array) and x.sharding == sharding:
        return x
    if isinstance(x, jax.Array) and jax.dtypes.issubdtype(x.dtype, jax.dtypes.prng_key):
        data = _put(jax.random.key_data(x), sharding)
        return jax.random.wrap_key_data(data, impl=jax.random.key_impl(x))
    if isinstance(x, jax.Array) and x.is_fully_addressable and jax.process_count() == 1:
        return jax.device_put(x, sharding)
    host = np.asarray(x)
    return jax.make_array_from_callback(host.shape, sharding, lambda index: host[index])


def put(tree, sharding: NamedSharding):
    """Places every leaf of ``tree`` with ``sharding`` (multi-host safe)."""
    return jax.tree.map(lambda x: _put(x, sharding), tree)


def constrain(tree, sharding: NamedSharding | None):
    """``with_sharding_constraint`` on every leaf (inside jit); no-op for None."""
    if sharding is None:
        return tree
    return jax.tree.map(lambda x: jax.lax.with_sharding_constraint(x, sharding), tree)


def _host(x):
    if _is_key(x):
        return jax.random.wrap_key_data(_host(jax.random.key_data(x)), impl=jax.random.key_impl(x))
    if isinstance(x, jax.Array) and not x.is_fully_addressable:
        from jax.experimental import multihost_utils

        return np.asarray(multihost_utils.process_allgather(x, tiled=True))
    return np.asarray(x)


def _is_key(x) -> bool:
    return hasattr(x, "dtype") and jax.dtypes.issubdtype(x.dtype, jax.dtypes.prng_key)


def to_host(tree):
    """Numpy copy of every leaf (gathered across processes when needed); keys stay keys."""
    return jax.tree.map(_host, tree)
