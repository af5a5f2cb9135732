"""The O(batch) minibatch contract of convjax.train (convjax.train.sampling)."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
import sampling_reference as ref
from scipy import stats

from convjax.train import _block, sampling

KEY = jax.random.key(42)
# Jitted once: an eager call traces its while loop again every time.
batch_indices = jax.jit(sampling.batch_indices, static_argnums=(2, 3))
epoch_permutation = jax.jit(sampling.epoch_permutation, static_argnums=(3,))


@pytest.mark.parametrize(
    "n, b, steps",
    [
        (1, 1, [0, 1, 5]),
        (2, 1, [0, 1, 2, 3]),
        (3, 2, [0, 1, 2]),
        (8, 4, [0, 1, 2, 7]),
        (10, 3, [0, 2, 3, 4, 100]),
        (97, 16, [0, 5, 6, 12345]),
        (2**20 + 7, 5, [0, 209716, 209717, 10**6]),
    ],
)
def test_matches_the_documented_rule(n, b, steps):
    for s in steps:
        got = np.asarray(batch_indices(KEY, s, n, b))
        np.testing.assert_array_equal(got, ref.batch(KEY, s, n, b), err_msg=f"step {s}")
        assert got.dtype == np.int32 and len(set(got.tolist())) == b


def test_raw_keys_jit_and_vmap_agree_with_eager():
    raw = jax.random.PRNGKey(3)
    eager = np.stack([sampling.batch_indices(raw, s, 50, 7) for s in range(3)])
    jitted = np.stack([batch_indices(raw, s, 50, 7) for s in range(20)])
    np.testing.assert_array_equal(jitted[:3], eager)
    vmapped = jax.jit(jax.vmap(lambda s: sampling.batch_indices(raw, s, 50, 7)))(jnp.arange(20))
    np.testing.assert_array_equal(vmapped, jitted)
    np.testing.assert_array_equal(jitted[4], ref.batch(raw, 4, 50, 7))
    keys = jax.random.split(KEY, 3)
    per_key = jax.jit(jax.vmap(lambda k: sampling.batch_indices(k, 11, 50, 7)))(keys)
    for r in range(3):
        np.testing.assert_array_equal(per_key[r], ref.batch(keys[r], 11, 50, 7))


def test_each_epoch_is_a_permutation_when_batches_fill_it():
    n, b = 24, 6  # 4 updates per epoch, every example once per epoch
    for epoch in range(3):
        seen = np.concatenate([batch_indices(KEY, 4 * epoch + t, n, b) for t in range(4)])
        assert sorted(seen.tolist()) == list(range(n))
    first = np.concatenate([batch_indices(KEY, t, n, b) for t in range(4)])
    second = np.concatenate([batch_indices(KEY, 4 + t, n, b) for t in range(4)])
    assert not np.array_equal(first, second)  # a new order every epoch


def test_epoch_boundary_drops_the_remainder():
    n, b = 10, 3  # 3 updates per epoch, 1 example left out (a different one per epoch)
    assert sampling.steps_per_epoch(n, b) == 3
    left_out = []
    for epoch in range(6):
        seen = np.concatenate([batch_indices(KEY, 3 * epoch + t, n, b) for t in range(3)])
        assert len(set(seen.tolist())) == 9  # no repeats within an epoch
        full = np.asarray(epoch_permutation(KEY, epoch, jnp.arange(n), n))
        assert sorted(full.tolist()) == list(range(n))
        np.testing.assert_array_equal(seen, full[:9])  # slots fill positions 0..8 in order
        left_out.append(int(full[9]))
    assert len(set(left_out)) > 1


def test_reproducible_and_key_dependent():
    a = np.asarray(batch_indices(KEY, 7, 1000, 32))
    np.testing.assert_array_equal(a, batch_indices(jax.random.key(42), 7, 1000, 32))
    b = np.asarray(batch_indices(jax.random.key(43), 7, 1000, 32))
    assert not np.array_equal(a, b)


@pytest.mark.parametrize("n", [8, 10])  # a power of two, and one that needs cycle walking
def test_position_of_an_example_is_uniform(n):
    keys = jax.random.split(jax.random.key(0), 4000)

    def perms_of(epoch):
        return np.asarray(
            jax.jit(jax.vmap(lambda k: sampling.epoch_permutation(k, epoch, jnp.arange(n), n)))(
                keys
            )
        )

    perms = perms_of(0)
    assert (np.sort(perms, axis=1) == np.arange(n)).all()
    for example in (0, n - 1):
        counts = np.bincount(np.argmax(perms == example, axis=1), minlength=n)
        chi2 = stats.chisquare(counts)
        assert chi2.pvalue > 1e-4, (example, counts)
    # Pairs: example 0 comes before example 1 about half the time.
    before = np.mean(np.argmax(perms == 0, axis=1) < np.argmax(perms == 1, axis=1))
    assert abs(before - 0.5) < 0.04
    # Consecutive epochs are unrelated: positions of example 0 in epochs 0 and 1.
    nxt = perms_of(1)
    table = np.zeros((n, n))
    np.add.at(table, (np.argmax(perms == 0, axis=1), np.argmax(nxt == 0, axis=1)), 1)
    assert stats.chi2_contingency(table).pvalue > 1e-4


def _shapes(jaxpr):
    """Output shapes of every equation of ``jaxpr`` and of its sub-jaxprs."""
    for eqn in jaxpr.eqns:
        for v in eqn.outvars:
            yield eqn.primitive.name, tuple(getattr(v.aval, "shape", ()))
        for p in eqn.params.values():
            for sub in p if isinstance(p, (list, tuple)) else [p]:
                inner = getattr(sub, "jaxpr", sub)
                if hasattr(inner, "eqns"):
                    yield from _shapes(inner)


def _largest_op(f, *args):
    return max(int(np.prod(shape)) for _, shape in _shapes(jax.make_jaxpr(f)(*args).jaxpr))


def test_no_operation_of_the_dataset_size():
    n, d = 2**22 + 5, 3
    data = {
        "x": jax.ShapeDtypeStruct((n, d), jnp.float32),
        "y": jax.ShapeDtypeStruct((n,), jnp.float32),
    }
    params = {"w": jnp.zeros(d, jnp.float32)}
    opt = optax.adam(1e-3)

    def loss(p, b):
        return jnp.mean((b["x"] @ p["w"] - b["y"]) ** 2)

    s = _block.Settings(
        batch_size=16,
        n_data=n,
        eval_every=4,
        has_aux=False,
        on_nonfinite="raise",
        factory=False,
        batch_sharding=None,
        state_sharding=None,
    )

    def one(state, data):
        return _block.block(loss, opt, None, s, state, None, jnp.int32(4), data, None)

    def state(lead):
        p = jax.tree.map(lambda a: jnp.zeros(lead + a.shape, a.dtype), params)
        return _block.TrainState(
            params=p,
            opt_state=jax.vmap(opt.init)(p) if lead else opt.init(p),
            key=jax.random.split(KEY, lead[0]) if lead else KEY,
            step=jnp.zeros(lead, jnp.int32),
            bad_step=jnp.full(lead, -1, jnp.int32),
        )

    assert _largest_op(one, state(()), data) < n
    many = jax.vmap(one, in_axes=(0, None))
    assert _largest_op(many, state((5,)), data) < n
    # The check has teeth: the former rule (choice without replacement) builds size n.
    assert _largest_op(lambda k: jax.random.choice(k, n, (16,), replace=False), KEY) >= n


def test_errors():
    with pytest.raises(
        ValueError,
        match=r"steps_per_epoch: `batch_size` \(5\) is larger than "
        r"`n` \(4\)",
    ):
        sampling.batch_indices(KEY, 0, 4, 5)
    with pytest.raises(
        ValueError,
        match=r"epoch_permutation: `n` must be < 2\*\*31, got "
        r"2147483648",
    ):
        sampling.epoch_permutation(KEY, 0, jnp.arange(3), 2**31)
    with pytest.raises(ValueError, match=r"word_bits: `n` must be an integer >= 1, got 0"):
        sampling.word_bits(0)
