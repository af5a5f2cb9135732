"""Independent reference of the minibatch contract of convjax.train (plain Python integers).

Written from the rule in ``convjax.train.sampling``'s docstring; only the round keys come
from jax (``jax.random.bits(jax.random.fold_in(key, epoch), (8,), uint32)``).
"""

import jax
import jax.numpy as jnp
import numpy as np

ROUNDS = 8
M32 = 0xFFFFFFFF


def fmix32(h: int) -> int:
    h ^= h >> 16
    h = (h * 0x85EBCA6B) & M32
    h ^= h >> 13
    h = (h * 0xC2B2AE35) & M32
    return h ^ (h >> 16)


def round_keys(key, epoch: int) -> list[int]:
    bits = jax.random.bits(jax.random.fold_in(key, epoch), (ROUNDS,), jnp.uint32)
    return [int(b) for b in np.asarray(bits)]


def feistel(keys: list[int], x: int, k: int) -> int:
    for r, kr in enumerate(keys):
        high = (k + 1) // 2 if r % 2 == 0 else k // 2
        low = k - high
        hi, lo = x >> low, x & ((1 << low) - 1)
        x = (lo << high) | (hi ^ (fmix32(lo ^ kr) & ((1 << high) - 1)))
    return x


def permutation_at(key, epoch: int, positions, n: int) -> list[int]:
    """pi_epoch(p) for p in positions: the Feistel network, cycle-walked into [0, n)."""
    k = max(1, (n - 1).bit_length())
    keys = round_keys(key, epoch)
    out = []
    for p in positions:
        y = feistel(keys, int(p), k)
        while y >= n:
            y = feistel(keys, y, k)
        out.append(y)
    return out


def batch(key, step: int, n: int, b: int) -> np.ndarray:
    """Indices of update ``step`` (0-based): slot step % (n // b) of epoch step // (n // b)."""
    m = n // b
    epoch, slot = divmod(step, m)
    return np.array(permutation_at(key, epoch, range(slot * b, slot * b + b), n))
