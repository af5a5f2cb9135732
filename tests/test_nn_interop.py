"""Weight import from flax, equinox and torch conv layers: same outputs."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from convjax import nn

HI = jax.lax.Precision.HIGHEST
TOL = {"rtol": 1e-12, "atol": 1e-12}

FLAX_CASES = [
    # (K, strides, padding, dilation, groups)
    (3, 1, "SAME", 1, 1),
    (4, 1, "SAME", 1, 2),  # even kernel: odd extra zero at the end
    (4, 2, "SAME", 2, 1),
    (3, 1, "VALID", 1, 1),
    (3, 1, "CAUSAL", 2, 1),
    (4, 2, "CIRCULAR", 1, 2),
    (3, 1, "REFLECT", 1, 1),
    (3, 2, [(2, 1)], 1, 1),
    (2, 1, 1, 3, 1),
]


@pytest.mark.parametrize("K, strides, padding, dilation, groups", FLAX_CASES)
def test_conv1d_from_flax_matches_flax_linen_conv(K, strides, padding, dilation, groups):
    flax_nn = pytest.importorskip("flax.linen")
    cin, cout, L = 4, 6, 11
    module = flax_nn.Conv(
        cout,
        (K,),
        strides=strides,
        padding=padding,
        kernel_dilation=dilation,
        feature_group_count=groups,
        precision=HI,
        param_dtype=jnp.float64,
        dtype=jnp.float64,
    )
    x = jax.random.normal(jax.random.key(0), (2, L, cin))
    variables = module.init(jax.random.key(1), x)
    # a non-zero bias, so the bias path is compared too
    variables = {"params": {**variables["params"], "bias": jnp.linspace(-1.0, 1.0, cout)}}
    layer, params = nn.conv1d_from_flax(module, variables["params"])
    want = module.apply(variables, x)
    got = layer.apply(params, x)
    assert got.shape == want.shape
    np.testing.assert_allclose(got, want, **TOL)
    back = nn.to_flax_conv(params)
    np.testing.assert_array_equal(back["kernel"], variables["params"]["kernel"])


EQX_CASES = [
    # (K, stride, padding, dilation, groups, padding_mode)
    (3, 1, "SAME", 1, 1, "ZEROS"),
    (4, 1, "SAME", 1, 2, "ZEROS"),
    (4, 2, "SAME_LOWER", 1, 1, "ZEROS"),
    (3, 2, "VALID", 2, 1, "ZEROS"),
    (3, 1, 1, 1, 2, "REFLECT"),
    (3, 1, "SAME", 2, 1, "CIRCULAR"),
    (4, 1, ((2, 1),), 1, 1, "REPLICATE"),
]


@pytest.mark.parametrize("K, stride, padding, dilation, groups, mode", EQX_CASES)
def test_conv1d_from_equinox_matches_equinox_conv1d(K, stride, padding, dilation, groups, mode):
    eqx = pytest.importorskip("equinox")
    cin, cout, L = 4, 6, 11
    conv = eqx.nn.Conv1d(
        cin,
        cout,
        K,
        stride=stride,
        padding=padding,
        dilation=dilation,
        groups=groups,
        padding_mode=mode,
        dtype=jnp.float64,
        key=jax.random.key(2),
    )
    x = jax.random.normal(jax.random.key(3), (cin, L))  # equinox is channels-first
    layer, params = nn.conv1d_from_equinox(conv)
    want = conv(x)
    got = layer.apply(params, x.T).T
    assert got.shape == want.shape
    # equinox runs lax at default precision; on CPU float64 that is exact-ish
    np.testing.assert_allclose(got, want, **TOL)


def test_torch_layout_round_trip_and_bias():
    rng = np.random.default_rng(0)
    weight = rng.normal(size=(6, 2, 3))  # (Cout, Cin/g, K)
    bias = rng.normal(size=6)
    p = nn.from_torch_conv1d(weight, bias)
    assert p["w"].shape == (3, 2, 6)
    np.testing.assert_array_equal(p["w"][1, 0, 4], weight[4, 0, 1])
    w_back, b_back = nn.to_torch_conv1d(p)
    np.testing.assert_array_equal(w_back, weight)
    np.testing.assert_array_equal(b_back, bias)


@pytest.mark.filterwarnings("ignore:Using padding='same' with even kernel:UserWarning")
@pytest.mark.parametrize(
    "padding, mode, stride",
    [("same", "zeros", 1), (2, "reflect", 2), ("valid", "zeros", 3), (1, "circular", 1)],
)
def test_conv1d_from_torch_matches_torch(padding, mode, stride):
    torch = pytest.importorskip("torch")
    torch.manual_seed(0)
    module = torch.nn.Conv1d(
        4, 6, 4, stride=stride, padding=padding, dilation=1, groups=2, padding_mode=mode
    ).double()
    x = torch.randn(2, 4, 11, dtype=torch.float64)  # (N, Cin, L)
    layer, params = nn.conv1d_from_torch(module)
    want = module(x).detach().numpy().transpose(0, 2, 1)
    got = layer.apply(params, jnp.asarray(x.numpy().transpose(0, 2, 1)))
    np.testing.assert_allclose(got, want, **TOL)


def test_equinox_weights_without_bias():
    eqx = pytest.importorskip("equinox")
    conv = eqx.nn.Conv1d(2, 3, 3, use_bias=False, key=jax.random.key(0))
    p = nn.interop.from_equinox_conv1d_weights(conv)
    assert set(p) == {"w"} and p["w"].shape == (3, 2, 3)


def test_interop_errors():
    with pytest.raises(ValueError, match=r"torch_to_conv_weight: `weight` must have rank 3"):
        nn.from_torch_conv1d(np.ones((6, 3)))
    with pytest.raises(
        ValueError,
        match=r"from_torch_conv1d: `bias` must have shape \(6,\), "
        r"got \(5,\)",
    ):
        nn.from_torch_conv1d(np.ones((6, 2, 3)), np.ones(5))
    with pytest.raises(TypeError, match=r"from_flax_conv: `params` must be flax Conv params"):
        nn.from_flax_conv({"w": np.ones((3, 2, 6))})
    with pytest.raises(ValueError, match=r"flax_padding: `padding` must be 'SAME'.*got 'WRAP'"):
        nn.interop.flax_padding("WRAP", 3)
    with pytest.raises(
        TypeError,
        match=r"conv1d_from_torch: `module` must be a "
        r"torch.nn.Conv1d",
    ):
        nn.conv1d_from_torch(object())
    with pytest.raises(ValueError, match=r"to_torch_conv1d: `params` must be Conv1D params"):
        nn.to_torch_conv1d({"w": np.ones((5, 3, 2, 6))})


def test_importers_refuse_objects_that_are_not_conv_modules():
    with pytest.raises(
        TypeError,
        match=r"conv1d_from_torch: `module` must be a torch.nn.Conv1d "
        r"\(no attribute 'weight'\), got object",
    ):
        nn.conv1d_from_torch(object())
    with pytest.raises(
        TypeError,
        match=r"conv1d_from_equinox: `conv` must be an "
        r"equinox.nn.Conv1d \(no attribute 'weight'\), got object",
    ):
        nn.conv1d_from_equinox(object())


def test_importers_name_the_module_type_they_received():
    torch = pytest.importorskip("torch")
    with pytest.raises(
        TypeError,
        match=r"conv1d_from_torch: `module` must be a torch.nn.Conv1d "
        r"\(one spatial axis\), got Conv2d with kernel_size \(3, 3\) and a "
        r"weight of rank 4",
    ):
        nn.conv1d_from_torch(torch.nn.Conv2d(4, 8, 3))
    with pytest.raises(
        TypeError,
        match=r"conv1d_from_torch: `module` must be a torch.nn.Conv1d, "
        r"got ConvTranspose1d, a transposed convolution",
    ):
        nn.conv1d_from_torch(torch.nn.ConvTranspose1d(4, 8, 3))


def test_flax_and_equinox_importers_refuse_2d_modules():
    eqx = pytest.importorskip("equinox")
    conv2d = eqx.nn.Conv2d(2, 3, 3, key=jax.random.key(0))
    with pytest.raises(
        TypeError,
        match=r"conv1d_from_equinox: `conv` must be an "
        r"equinox.nn.Conv1d \(one spatial axis\), got Conv2d",
    ):
        nn.conv1d_from_equinox(conv2d)
    with pytest.raises(
        TypeError,
        match=r"from_equinox_conv1d_weights: `conv` must be an "
        r"equinox.nn.Conv1d \(one spatial axis\), got Conv2d",
    ):
        nn.interop.from_equinox_conv1d_weights(conv2d)
    fnn = pytest.importorskip("flax.linen")
    module = fnn.Conv(4, (3, 3))
    variables = module.init(jax.random.key(0), jnp.ones((1, 6, 6, 2)))
    with pytest.raises(
        ValueError,
        match=r"conv1d_from_flax: `module` must be a 1-D "
        r"flax.linen.Conv \(kernel_size of one entry\), got Conv with "
        r"kernel_size \(3, 3\)",
    ):
        nn.conv1d_from_flax(module, variables["params"])


def test_layout_helpers_name_what_they_got():
    with pytest.raises(
        ValueError,
        match=r"to_flax_conv: `params` must be Conv1D params .*got "
        r"ndarray of shape \(3, 2\) and dtype float64",
    ):
        nn.to_flax_conv(np.ones((3, 2)))
    with pytest.raises(
        TypeError,
        match=r"torch_to_conv_weight: `weight` .*got an object of "
        r"type str",
    ):
        nn.interop.torch_to_conv_weight("w")
