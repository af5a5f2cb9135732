"""Minibatches in O(batch): a keyed permutation of the examples per epoch, read in slots.

The contract of :func:`convjax.train.fit` and ``fit_many`` (``n`` examples, batch size
``b``, ``1 <= b <= n``):

* **Epochs drop the remainder.** An epoch is ``m = n // b`` consecutive updates. Update
  ``s`` (0-based) belongs to epoch ``e = s // m`` and fills slot ``t = s % m``: its
  minibatch is the examples at positions ``t * b, ..., t * b + b - 1`` of epoch ``e``'s
  permutation ``pi_e`` of ``[0, n)``. So a batch never straddles two epochs, never
  repeats an example, and within an epoch every example is used at most once; the
  ``n - m * b`` examples at positions ``m * b, ..., n - 1`` of ``pi_e`` (a different,
  random set each epoch) are not used in epoch ``e``. When ``b`` divides ``n`` every
  example is used exactly once per epoch.
* **The permutation** ``pi_e`` is a Feistel network on ``k``-bit words,
  ``k = max(1, ceil(log2 n))``, restricted to ``[0, n)`` by cycle walking:
  ``pi_e(p)`` applies the network to ``p``, then again to the result while it is
  ``>= n``. The network is :data:`ROUNDS` rounds; round ``r`` splits a word ``x`` into
  its high ``h_r`` bits ``hi`` and low ``k - h_r`` bits ``lo`` (``h_r = ceil(k / 2)``
  for even ``r``, ``floor(k / 2)`` for odd ``r``) and maps it to
  ``(lo << h_r) | (hi ^ (F(K_r, lo) mod 2**h_r))``, with ``F(K, v)`` the 32-bit
  MurmurHash3 finaliser of ``v xor K`` and round keys
  ``K = jax.random.bits(jax.random.fold_in(key, e), (ROUNDS,), jnp.uint32)``.
  Each round is a bijection of ``[0, 2**k)``, hence so is the network, and cycle
  walking turns a bijection of ``[0, 2**k)`` into one of ``[0, n)``.
* **Cost.** A minibatch costs ``O(b)`` work whatever ``n`` (no array of size ``n`` is
  built): each position needs ``ROUNDS`` hash evaluations per walk step. Cycle walking
  runs as a ``lax.while_loop`` over the batch's positions until all of them are inside
  ``[0, n)``. Since ``2**k < 2 n``, a walk step lands outside ``[0, n)`` with
  probability at most 1/2 for a random permutation, so walks are short on average; no
  walk takes more than ``2**k - n + 1`` steps, because the cycle through a start
  ``p < n`` comes back to ``p`` after at most ``2**k - n`` values ``>= n``. Under
  ``vmap`` (``fit_many``) the loop runs until the longest walk of all runs ends; its
  body stays ``O(runs * b)``.

Everything is a pure function of ``(key, s)``, which is what makes runs reproducible
and a resumed run bitwise identical to an uninterrupted one.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from convjax import _checks

ROUNDS = 8
"""Feistel rounds of the per-epoch permutation."""

CONTRACT = "feistel8-cycle-walk, epochs of n // b batches (remainder dropped)"
"""Names the sampling rule in checkpoint settings (a resume under another rule is refused)."""


def word_bits(n: int) -> int:
    """``k = max(1, ceil(log2 n))``: the Feistel word size used for ``n`` examples.

    Example:
      >>> [word_bits(n) for n in (1, 2, 3, 4, 5, 1000)]
      [1, 1, 2, 2, 3, 10]
    """
    n = _checks.as_positive_int("word_bits", "n", n)
    return max(1, (n - 1).bit_length())


def _fmix32(h):
    h = h ^ (h >> 16)
    h = h * jnp.uint32(0x85EBCA6B)
    h = h ^ (h >> 13)
    h = h * jnp.uint32(0xC2B2AE35)
    return h ^ (h >> 16)


def _feistel(round_keys, x, k: int):
    """The ``ROUNDS``-round Feistel network on ``k``-bit words ``x`` (uint32)."""
    for r in range(ROUNDS):
        high = (k + 1) // 2 if r % 2 == 0 else k // 2
        low = k - high
        hi, lo = x >> low, x & jnp.uint32((1 << low) - 1)
        f = _fmix32(lo ^ round_keys[r]) & jnp.uint32((1 << high) - 1)
        x = (lo << high) | (hi ^ f)
    return x


def epoch_permutation(key, epoch, positions, n: int):
    """``pi_epoch(positions)``: entries of the epoch's permutation of ``[0, n)``.

    Args:
      key: the run's PRNG key (``jax.random.key`` or ``jax.random.PRNGKey``).
      epoch: int (or traced int32 scalar) >= 0.
      positions: integer array of any shape, entries in ``[0, n)``.
      n: the number of examples (static int, ``1 <= n <= 2**31 - 1``).

    Returns:
      int32 array shaped like ``positions``: the examples at those positions.

    Example:
      >>> import jax, jax.numpy as jnp
      >>> perm = epoch_permutation(jax.random.key(0), 0, jnp.arange(10), 10)
      >>> sorted(perm.tolist()) == list(range(10))
      True
    """
    n = _checks.as_positive_int("epoch_permutation", "n", n)
    if n > 2**31 - 1:
        raise ValueError(f"epoch_permutation: `n` must be < 2**31, got {n}.")
    k = word_bits(n)
    round_keys = jax.random.bits(jax.random.fold_in(key, epoch), (ROUNDS,), jnp.uint32)
    limit = jnp.uint32(n)

    def walk(y):
        return jnp.where(y >= limit, _feistel(round_keys, y, k), y)

    y = _feistel(round_keys, jnp.asarray(positions).astype(jnp.uint32), k)
    y = jax.lax.while_loop(lambda y: jnp.any(y >= limit), walk, y)
    return y.astype(jnp.int32)


def steps_per_epoch(n: int, batch_size: int) -> int:
    """``n // batch_size``: updates per epoch (the remainder is dropped).

    Example:
      >>> steps_per_epoch(10, 3)
      3
    """
    n = _checks.as_positive_int("steps_per_epoch", "n", n)
    batch_size = _checks.as_positive_int("steps_per_epoch", "batch_size", batch_size)
    if batch_size > n:
        raise ValueError(f"steps_per_epoch: `batch_size` ({batch_size}) is larger than `n` ({n}).")
    return n // batch_size


def batch_indices(key, step, n: int, batch_size: int):
    """The examples of the minibatch of update ``step`` (0-based), as the module defines.

    Args:
      key: the run's PRNG key.
      step: int (or traced int32 scalar) >= 0, the 0-based update index.
      n: number of examples (static).
      batch_size: examples per update, ``1 <= batch_size <= n`` (static).

    Returns:
      int32 array ``(batch_size,)`` of distinct indices in ``[0, n)``.

    Example:
      >>> import jax, numpy as np
      >>> key = jax.random.key(0)
      >>> epoch = np.concatenate([batch_indices(key, s, 12, 4) for s in range(3)])
      >>> sorted(epoch.tolist()) == list(range(12))   # 12 // 4 = 3 updates per epoch
      True
    """
    m = steps_per_epoch(n, batch_size)
    step = jnp.asarray(step, jnp.int32)
    positions = (step % m) * batch_size + jnp.arange(batch_size, dtype=jnp.int32)
    return epoch_permutation(key, step // m, positions, n)
