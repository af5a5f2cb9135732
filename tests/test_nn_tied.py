"""Training the dense / locally connected twin inside the conv structure
(convjax.nn.tied): the tied gradient reproduces conv SGD step for step."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import convjax
from convjax import nn

HI = jax.lax.Precision.HIGHEST
L, CIN, COUT = 10, 2, 4
OPTS = {"padding": "same", "stride": 1, "dilation": 2, "groups": 2, "padding_mode": "circular"}


def _problem():
    conv = nn.Conv1D(COUT, 3, precision=HI, **OPTS)
    s = nn.structure(conv, (L, CIN))
    kx, ky, kp = jax.random.split(jax.random.key(0), 3)
    x = jax.random.normal(kx, (16, L, CIN))
    y = jax.random.normal(ky, (16, L, COUT))
    _, p = conv.init(kp, (L, CIN))
    return conv, s, x, y, p


def _train(layer, params, opt, x, y, steps):
    def loss(p):
        return jnp.mean((jnp.tanh(layer.apply(p, x)) - y) ** 2)

    @jax.jit
    def step(p, state):
        g = jax.grad(loss)(p)
        u, state = opt.update(g, state, p)
        return optax.apply_updates(p, u), state

    state = opt.init(params)
    for _ in range(steps):
        params, state = step(params, state)
    return params


@pytest.mark.parametrize("momentum", [None, 0.9], ids=["sgd", "momentum"])
@pytest.mark.parametrize("kind", ["dense", "local"])
def test_tied_gradient_follows_the_conv_sgd_trajectory(kind, momentum):
    conv, s, x, y, p = _problem()
    twin = nn.twin(conv, kind)
    embed = nn.conv_to_dense if kind == "dense" else nn.conv_to_local
    steps = 25
    p_conv = _train(conv, p, optax.sgd(0.5, momentum=momentum), x, y, steps)
    opt = optax.chain(nn.tied_gradient(s), optax.sgd(0.5, momentum=momentum))
    p_twin = _train(twin, embed(p, s), opt, x, y, steps)
    want = embed(p_conv, s)
    # the conv params really moved, and the twin moved with them
    assert float(jnp.max(jnp.abs(p_conv["w"] - p["w"]))) > 1e-2
    for k in want:
        np.testing.assert_allclose(p_twin[k], want[k], rtol=1e-10, atol=1e-12)
    assert float(nn.distance_to_conv(p_twin, s)) < 1e-12


def test_projected_gradient_stays_in_structure_but_is_not_conv_sgd():
    conv, s, x, y, p = _problem()
    dense = nn.twin(conv, "dense")
    p_conv = _train(conv, p, optax.sgd(0.5), x, y, 10)
    opt = optax.chain(nn.projected_gradient(s), optax.sgd(0.5))
    p_proj = _train(dense, nn.conv_to_dense(p, s), opt, x, y, 10)
    assert float(nn.distance_to_conv(p_proj, s)) < 1e-12
    assert float(nn.off_structure_share(p_proj, s)) == 0.0
    # each weight has Lout=10 copies here, so the projected step is 10x smaller
    gap = jnp.max(jnp.abs(nn.dense_to_conv(p_proj, s)["w"] - p_conv["w"]))
    assert float(gap) > 1e-3
    # ... and it IS conv SGD with the step divided by the number of copies
    p_slow = _train(conv, p, optax.sgd(0.5 / L), x, y, 10)
    np.testing.assert_allclose(
        nn.dense_to_conv(p_proj, s)["w"], p_slow["w"], rtol=1e-10, atol=1e-12
    )


def test_plain_dense_training_leaves_the_structure():
    conv, s, x, y, p = _problem()
    p_dense = _train(nn.twin(conv, "dense"), nn.conv_to_dense(p, s), optax.sgd(0.5), x, y, 5)
    assert float(nn.off_structure_share(p_dense, s)) > 1e-6


def test_tied_within_local_keeps_zeros_but_unties():
    conv, s, x, y, p = _problem()
    dense = nn.twin(conv, "dense")
    local = nn.twin(conv, "local")
    pl = nn.conv_to_local(p, s)
    p_local = _train(local, pl, optax.sgd(0.5), x, y, 5)
    opt = optax.chain(nn.tied_gradient(s, within="local"), optax.sgd(0.5))
    p_dense = _train(dense, nn.local_to_dense(pl, s), opt, x, y, 5)
    want = nn.local_to_dense(p_local, s)
    for k in want:
        np.testing.assert_allclose(p_dense[k], want[k], rtol=1e-10, atol=1e-12)
    assert float(nn.off_structure_share(p_dense, s)) < 1e-28
    assert float(nn.distance_to_conv(p_dense, s)) > 1e-3


def test_serial_params_with_a_structure_per_layer():
    conv = nn.Conv1D(COUT, 3, precision=HI, **OPTS)
    s = nn.structure(conv, (L, CIN))
    model = nn.serial(nn.twin(conv, "dense"), nn.Tanh, nn.Flatten(), nn.Dense(1))
    _, params = model.init(jax.random.key(1), (L, CIN))
    structures = (s, None, None, None)
    projected = nn.project_params(params, structures)
    assert float(nn.distance_to_conv(projected[0], s)) < 1e-12
    assert projected[3] is params[3]
    # idempotent
    again = nn.project_params(projected, structures)
    np.testing.assert_allclose(again[0]["w"], projected[0]["w"], rtol=1e-12, atol=1e-14)
    opt = optax.chain(nn.tied_gradient(structures), optax.sgd(0.1))
    state = opt.init(projected)
    g = jax.grad(lambda p: jnp.sum(model.apply(p, jnp.ones((3, L, CIN)))))(projected)
    u, _ = opt.update(g, state, projected)
    new = optax.apply_updates(projected, u)
    assert float(nn.distance_to_conv(new[0], s)) < 1e-12
    np.testing.assert_array_equal(u[3]["w"], -0.1 * g[3]["w"])


def test_tied_errors():
    conv, s, _, _, p = _problem()
    with pytest.raises(TypeError, match=r"tied_gradient: `structures` must be a ConvStructure"):
        nn.tied_gradient("conv")
    with pytest.raises(
        ValueError,
        match=r"tied_gradient: `within` must be one of 'conv', "
        r"'local', got 'dense'",
    ):
        nn.tied_gradient(s, within="dense")
    other = convjax.conv_structure((3, 1, 2), L + 1, padding="same", groups=2)
    with pytest.raises(
        ValueError,
        match=r"tied_gradient: `params\['w'\]` has shape "
        r"\(3, 1, 4\), which is none of the shapes",
    ):
        nn.tied_gradient(other).init(p)
    with pytest.raises(
        ValueError,
        match=r"project_params: `structures` has 2 entries but "
        r"params is dict",
    ):
        nn.project_params(p, (s, None))


def test_tied_gradient_on_a_whole_model_from_structures():
    """nn.structures gives the tree nn.tied_gradient takes: the dense twin of a whole
    model follows the conv model's SGD step (one step, every layer)."""
    model = nn.serial(
        nn.Conv1D(COUT, 3, precision=HI, **OPTS),
        nn.Tanh,
        nn.Conv1D(2, 3, padding="same", precision=HI),
        nn.Flatten(),
        nn.Dense(1, precision=HI),
    )
    ss = nn.structures(model, (L, CIN))
    dense = nn.twin(model, "dense")
    _, p = model.init(jax.random.key(4), (L, CIN))
    x = jax.random.normal(jax.random.key(5), (8, L, CIN))
    y = jax.random.normal(jax.random.key(6), (8, 1))

    def loss(m):
        return lambda q: jnp.mean((m.apply(q, x) - y) ** 2)

    p_conv = _step(loss(model), p, optax.sgd(0.3))
    opt = optax.chain(nn.tied_gradient(ss), optax.sgd(0.3))
    p_dense = _step(loss(dense), nn.move(p, ss, "dense"), opt)
    want = nn.move(p_conv, ss, "dense")
    for a, b in zip(jax.tree.leaves(p_dense), jax.tree.leaves(want), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-12)


def _step(loss, params, opt):
    u, _ = opt.update(jax.grad(loss)(params), opt.init(params), params)
    return optax.apply_updates(params, u)
