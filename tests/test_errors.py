"""Bad input raises ValueError / TypeError at trace time, with a message naming the
function, the argument and the value received. Every case runs eagerly and under
``jax.jit`` (array arguments traced), so no check depends on concrete values."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from convjax import conv1d, conv_matrix, conv_matrix_sparse, conv_structure, convolve, correlate


def ones(*shape, dtype=jnp.float64):
    return jnp.ones(shape, dtype)


X, W = ones(6, 2), ones(3, 2, 4)  # a legal pair: L=6, Cin=2, K=3, Cout=4


def conv(**options):
    """conv1d with fixed options, taking the arrays: ``f(x, w)``."""
    return lambda x, w: conv1d(x, w, **options)


# (id, function of the arrays, the arrays, exception, regex the message must match)
CASES = [
    # ranks and channels
    (
        "x rank 1",
        conv(),
        (ones(6), W),
        ValueError,
        r"conv1d: `x` must have rank >= 2 \(layout \(\.\.\., L, Cin\)\), got rank 1 "
        r"with shape \(6,\)",
    ),
    ("x rank 0", conv(), (jnp.float64(1.0), W), ValueError, r"conv1d: `x` must have rank >= 2"),
    (
        "w rank 2",
        conv(),
        (X, ones(3, 2)),
        ValueError,
        r"conv1d: `w` must have rank 3 \(layout \(K, Cin // groups, Cout\)\), got rank 2",
    ),
    ("w rank 4", conv(), (X, ones(3, 2, 4, 1)), ValueError, r"conv1d: `w` must have rank 3"),
    (
        "channel mismatch",
        conv(),
        (ones(6, 3), W),
        ValueError,
        r"conv1d: channel mismatch: `x` has Cin=3 .*\(w\.shape\[1\]\)",
    ),
    (
        "channel mismatch groups",
        conv(groups=2),
        (ones(6, 2), ones(3, 2, 4)),
        ValueError,
        r"conv1d: channel mismatch: `x` has Cin=2 .*groups=2, i\.e\. Cin = 4",
    ),
    (
        "Cin not divisible",
        conv(groups=2),
        (ones(6, 3), ones(3, 1, 4)),
        ValueError,
        r"conv1d: the input channels Cin=3 .* divisible by `groups`=2",
    ),
    (
        "Cout not divisible",
        conv(groups=2),
        (ones(6, 4), ones(3, 2, 3)),
        ValueError,
        r"conv1d: the output channels Cout=3 .* divisible by `groups`=2",
    ),
    # unknown names
    (
        "unknown padding",
        conv(padding="SAMEE"),
        (X, W),
        ValueError,
        r"conv1d: `padding` must be one of 'valid', 'same', .* got 'SAMEE'",
    ),
    (
        "unknown padding_mode",
        conv(padding_mode="mirror"),
        (X, W),
        ValueError,
        r"conv1d: `padding_mode` must be one of 'zeros', 'circular', 'reflect', 'replicate', "
        r"got 'mirror'",
    ),
    (
        "padding_mode None",
        conv(padding_mode=None),
        (X, W),
        ValueError,
        r"conv1d: `padding_mode` must be one of .* got None",
    ),
    (
        "unknown algorithm",
        conv(algorithm="winograd"),
        (X, W),
        ValueError,
        r"conv1d: `algorithm` must be one of 'auto', .* got 'winograd'",
    ),
    # sizes: value
    (
        "stride 0",
        conv(stride=0),
        (X, W),
        ValueError,
        r"conv1d: `stride` must be an integer >= 1, got 0",
    ),
    (
        "stride -1",
        conv(stride=-1),
        (X, W),
        ValueError,
        r"conv1d: `stride` must be an integer >= 1, got -1",
    ),
    (
        "dilation 0",
        conv(dilation=0),
        (X, W),
        ValueError,
        r"conv1d: `dilation` must be an integer >= 1, got 0",
    ),
    (
        "groups 0",
        conv(groups=0),
        (X, W),
        ValueError,
        r"conv1d: `groups` must be an integer >= 1, got 0",
    ),
    (
        "groups -2",
        conv(groups=-2),
        (X, W),
        ValueError,
        r"conv1d: `groups` must be an integer >= 1, got -2",
    ),
    (
        "padding -1",
        conv(padding=-1),
        (X, W),
        ValueError,
        r"conv1d: `padding` must be an integer >= 0, got -1",
    ),
    (
        "padding (1, -2)",
        conv(padding=(1, -2)),
        (X, W),
        ValueError,
        r"conv1d: `padding\[1\]` must be an integer >= 0, got -2",
    ),
    (
        "padding triple",
        conv(padding=(1, 2, 3)),
        (X, W),
        ValueError,
        r"conv1d: `padding` must be one of .* a pair \(lo, hi\) .* got \(1, 2, 3\)",
    ),
    # sizes: type
    (
        "stride 2.5",
        conv(stride=2.5),
        (X, W),
        TypeError,
        r"conv1d: `stride` must be an integer, got 2\.5 of type float",
    ),
    (
        "stride '3'",
        conv(stride="3"),
        (X, W),
        TypeError,
        r"conv1d: `stride` must be an integer, got '3' of type str",
    ),
    (
        "stride True",
        conv(stride=True),
        (X, W),
        TypeError,
        r"conv1d: `stride` must be an integer, got True of type bool",
    ),
    (
        "dilation 1.0",
        conv(dilation=1.0),
        (X, W),
        TypeError,
        r"conv1d: `dilation` must be an integer, got 1\.0",
    ),
    (
        "groups np.float64",
        conv(groups=np.float64(2)),
        (X, W),
        TypeError,
        r"conv1d: `groups` must be an integer, got .*2\.0",
    ),
    (
        "padding 2.5",
        conv(padding=2.5),
        (X, W),
        TypeError,
        r"conv1d: `padding` must be one of .* got 2\.5",
    ),
    ("padding True", conv(padding=True), (X, W), TypeError, r"conv1d: `padding` .* got True"),
    ("padding None", conv(padding=None), (X, W), TypeError, r"conv1d: `padding` .* got None"),
    (
        "padding (1.5, 0)",
        conv(padding=(1.5, 0)),
        (X, W),
        TypeError,
        r"conv1d: `padding\[0\]` must be an integer, got 1\.5",
    ),
    ("flip 1", conv(flip=1), (X, W), TypeError, r"conv1d: `flip` must be a bool, got 1\."),
    (
        "flip 'yes'",
        conv(flip="yes"),
        (X, W),
        TypeError,
        r"conv1d: `flip` must be a bool, got 'yes'",
    ),
    # geometry
    (
        "kernel longer than input",
        conv(),
        (ones(3, 2), ones(5, 2, 4)),
        ValueError,
        r"conv1d: the kernel is longer than the padded input, so the output would be empty: "
        r"effective kernel length dilation\*\(K-1\)\+1 = 5 \(K=5, dilation=1\) > padded input "
        r"length 3",
    ),
    (
        "dilated kernel longer",
        conv(dilation=3, padding=1),
        (ones(4, 2), W),
        ValueError,
        r"conv1d: the kernel is longer .* = 7 \(K=3, dilation=3\) > padded input length 6",
    ),
    (
        "reflect too wide",
        conv(padding=3, padding_mode="reflect"),
        (ones(3, 2), W),
        ValueError,
        r"conv1d: `padding_mode`='reflect' needs padding < input length 3 on each side, got "
        r"padding \(lo, hi\) = \(3, 3\)",
    ),
    (
        "reflect same L=1",
        conv(padding="same", padding_mode="reflect"),
        (ones(1, 2), W),
        ValueError,
        r"conv1d: `padding_mode`='reflect' needs padding < input length 1",
    ),
    # dtypes
    (
        "complex x",
        conv(),
        (ones(6, 2, dtype=jnp.complex128), W),
        TypeError,
        r"conv1d: `x` has complex dtype complex128; only real floating dtypes",
    ),
    (
        "complex w",
        conv(),
        (X, ones(3, 2, 4, dtype=jnp.complex64)),
        TypeError,
        r"conv1d: `w` has complex dtype complex64",
    ),
    # empty arrays
    # (an empty batch axis is allowed: tests/test_conv1d.py)
    (
        "empty length",
        conv(),
        (ones(0, 2), W),
        ValueError,
        r"conv1d: `x` must have a non-empty length and channel axis, got shape \(0, 2\)",
    ),
    (
        "empty channels",
        conv(),
        (ones(6, 0), ones(3, 0, 4)),
        ValueError,
        r"conv1d: `x` must have a non-empty length and channel axis, got shape \(6, 0\)",
    ),
    (
        "empty kernel",
        conv(),
        (X, ones(0, 2, 4)),
        ValueError,
        r"conv1d: `w` must not be empty, got shape \(0, 2, 4\)",
    ),
    (
        "empty Cout",
        conv(),
        (X, ones(3, 2, 0)),
        ValueError,
        r"conv1d: `w` must not be empty, got shape \(3, 2, 0\)",
    ),
    # convolve / correlate
    (
        "convolve a rank 2",
        lambda a, v: convolve(a, v),
        (ones(4, 1), ones(3)),
        ValueError,
        r"convolve: `a` must have rank 1 \(layout \(N,\)\), got rank 2 with shape \(4, 1\)",
    ),
    (
        "correlate v rank 0",
        lambda a, v: correlate(a, v),
        (ones(4), jnp.float64(1.0)),
        ValueError,
        r"correlate: `v` must have rank 1 \(layout \(M,\)\), got rank 0",
    ),
    (
        "convolve unknown mode",
        lambda a, v: convolve(a, v, "circular"),
        (ones(4), ones(3)),
        ValueError,
        r"convolve: `mode` must be one of 'full', 'same', 'valid', got 'circular'",
    ),
    (
        "correlate mode None",
        lambda a, v: correlate(a, v, None),
        (ones(4), ones(3)),
        TypeError,
        r"correlate: `mode` must be a string .* got None",
    ),
    (
        "convolve empty a",
        lambda a, v: convolve(a, v),
        (ones(0), ones(3)),
        ValueError,
        r"convolve: `a` must not be empty, got shape \(0,\)",
    ),
    (
        "correlate empty v",
        lambda a, v: correlate(a, v),
        (ones(4), ones(0)),
        ValueError,
        r"correlate: `v` must not be empty",
    ),
    (
        "convolve unknown algorithm",
        lambda a, v: convolve(a, v, algorithm="nope"),
        (ones(4), ones(3)),
        ValueError,
        r"convolve: `algorithm` must be one of .* got 'nope'",
    ),
    # conv_matrix / conv_matrix_sparse
    (
        "conv_matrix over max_bytes",
        lambda w: conv_matrix(w, 100, max_bytes=1000),
        (W,),
        ValueError,
        r"conv_matrix: the dense matrix of shape \(392, 200\) in float64 would need "
        r"627200 bytes \(0\.000584 GiB\), more than `max_bytes`=1000; .*conv_matrix_sparse",
    ),
    (
        "conv_matrix max_bytes -1",
        lambda w: conv_matrix(w, 6, max_bytes=-1),
        (W,),
        ValueError,
        r"conv_matrix: `max_bytes` must be an integer >= 0, got -1",
    ),
    (
        "conv_matrix max_bytes str",
        lambda w: conv_matrix(w, 6, max_bytes="1GB"),
        (W,),
        TypeError,
        r"conv_matrix: `max_bytes` must be an integer, got '1GB'",
    ),
    (
        "conv_matrix in_shape 0",
        lambda w: conv_matrix(w, 0),
        (W,),
        ValueError,
        r"conv_matrix: `in_shape` must be an integer >= 1, got 0",
    ),
    (
        "conv_matrix in_shape 2.5",
        lambda w: conv_matrix(w, 2.5),
        (W,),
        TypeError,
        r"conv_matrix: `in_shape` must be an integer, got 2\.5",
    ),
    (
        "conv_matrix w rank 2",
        lambda w: conv_matrix(w, 6),
        (ones(3, 2),),
        ValueError,
        r"conv_matrix: `w` must have rank 3 \(layout \(K, Cin//groups, Cout\)\), got rank 2",
    ),
    (
        "conv_matrix int w",
        lambda w: conv_matrix(w, 6),
        (ones(3, 2, 4, dtype=jnp.int32),),
        TypeError,
        r"conv_matrix: `w` must have a floating dtype .* got int32",
    ),
    (
        "conv_matrix empty w",
        lambda w: conv_matrix(w, 6),
        (ones(3, 0, 4),),
        ValueError,
        r"conv_matrix: `w` must have no zero-sized axis, got shape \(3, 0, 4\)",
    ),
    (
        "conv_matrix kernel longer",
        lambda w: conv_matrix(w, 2),
        (W,),
        ValueError,
        r"conv_matrix: the kernel is longer than the padded input",
    ),
    (
        "conv_matrix Cout groups",
        lambda w: conv_matrix(w, 6, groups=3),
        (W,),
        ValueError,
        r"conv_matrix: the output channels Cout=4 .* divisible by `groups`=3",
    ),
    (
        "conv_matrix bad padding_mode",
        lambda w: conv_matrix(w, 6, padding_mode="wrap"),
        (W,),
        ValueError,
        r"conv_matrix: `padding_mode` must be one of .* got 'wrap'",
    ),
    (
        "conv_matrix_sparse complex",
        lambda w: conv_matrix_sparse(w, 6),
        (ones(3, 2, 4, dtype=jnp.complex64),),
        TypeError,
        r"conv_matrix_sparse: `w` has complex dtype",
    ),
    (
        "conv_matrix_sparse stride 0",
        lambda w: conv_matrix_sparse(w, 6, stride=0),
        (W,),
        ValueError,
        r"conv_matrix_sparse: `stride` must be an integer >= 1, got 0",
    ),
]


@pytest.mark.parametrize("fn, args, exc, match", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_raises_eagerly(fn, args, exc, match):
    with pytest.raises(exc, match=match):
        fn(*args)


@pytest.mark.parametrize("fn, args, exc, match", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_raises_at_trace_time_under_jit(fn, args, exc, match):
    with pytest.raises(exc, match=match):
        jax.jit(fn)(*args)


def test_non_array_input_is_a_clear_type_error():
    with pytest.raises(
        TypeError,
        match=r"conv1d: `x` must be an array .* got an object of "
        r"type list",
    ):
        conv1d([[1.0], [2.0]], W[:, :1, :])
    with pytest.raises(
        TypeError,
        match=r"convolve: `a` must be an array-like of numbers .* "
        r"got dict",
    ):
        convolve({"a": 1.0}, jnp.ones(2))


def test_traced_size_is_a_type_error():
    with pytest.raises(TypeError, match=r"conv1d: `stride` must be an integer, got .*Tracer"):
        jax.jit(lambda s: conv1d(X, W, stride=s))(2)


# ---- conv_structure and ConvStructure methods -----------------------------------


@pytest.mark.parametrize(
    "filter_shape, in_shape, exc, match",
    [
        (
            (3.5, 1, 1),
            5,
            TypeError,
            r"conv_structure: `w\.shape\[0\]` must be an integer, "
            r"got 3\.5",
        ),
        (
            3,
            5,
            TypeError,
            r"conv_structure: the filter shape must be a tuple .* got 3 of "
            r"type int",
        ),
        ((3, 1), 5, ValueError, r"conv_structure: `w` must have rank 3"),
        ((0, 1, 1), 5, ValueError, r"conv_structure: `w` must have no zero-sized axis"),
        ((-1, 1, 1), 5, ValueError, r"conv_structure: `w\.shape\[0\]` must be an integer >= 0"),
        ((3, 1, 1), 5.0, TypeError, r"conv_structure: `in_shape` must be an integer, got 5\.0"),
        ((3, 1, 1), 2, ValueError, r"conv_structure: the kernel is longer"),
    ],
)
def test_conv_structure_errors(filter_shape, in_shape, exc, match):
    with pytest.raises(exc, match=match):
        conv_structure(filter_shape, in_shape)


S = conv_structure((3, 1, 4), 6, groups=2, padding="same")  # Lout=6, T is (24, 12)
W_S, D_S, F_S = ones(3, 1, 4), ones(24, 12), ones(6, 3, 1, 4)
METHODS = [
    # (method, argument name, right shape)
    ("dense", "w", W_S.shape),
    ("sparse", "w", W_S.shape),
    ("adjoint", "dense", D_S.shape),
    ("nearest_filter", "dense", D_S.shape),
    ("project", "dense", D_S.shape),
    ("local_dense", "filters", F_S.shape),
    ("local_adjoint", "dense", D_S.shape),
    ("local_nearest", "dense", D_S.shape),
    ("conv_to_local", "w", W_S.shape),
    ("local_to_conv_adjoint", "filters", F_S.shape),
    ("local_to_conv_nearest", "filters", F_S.shape),
    ("off_structure_share", "dense", D_S.shape),
    ("distance_to_conv", "dense", D_S.shape),
]


@pytest.mark.parametrize("method, name, shape", METHODS, ids=[m[0] for m in METHODS])
def test_structure_methods_check_shape_and_dtype(method, name, shape):
    f = getattr(S, method)
    f(ones(*shape))  # the right shape works
    wrong = ones(*shape[:-1], shape[-1] + 1)
    pattern = (
        rf"ConvStructure: `{name}` must have shape \({', '.join(map(str, shape))},?\) for "
        rf"this structure \(L=6, Lout=6, K=3, Cin=2, Cout=4, groups=2\), got shape "
        rf"\({', '.join(map(str, wrong.shape))}\)"
    )
    with pytest.raises(ValueError, match=pattern):
        f(wrong)
    with pytest.raises(ValueError, match=pattern):
        jax.jit(f)(wrong)
    with pytest.raises(ValueError, match=rf"ConvStructure: `{name}` must have shape"):
        f(ones(*shape, 1))  # wrong rank
    with pytest.raises(TypeError, match=rf"ConvStructure: `{name}` must have a floating dtype"):
        f(ones(*shape, dtype=jnp.int32))
