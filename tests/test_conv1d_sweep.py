"""Property sweep: every conv1d algorithm, its output and both gradients, against the loops.

For each random configuration (``reference.draw_config``: every padding name, an int or a
pair, every padding mode, flip, groups, stride, dilation, batch axes, short and long
signals; float64), every algorithm of ``convjax.convolution.ALGORITHMS`` computes
``y = conv1d(x, w)`` and the vector-Jacobian product ``(dx, dw)`` of a random cotangent
``g``; the references are ``reference.conv1d`` and its exact adjoint loop
``reference.conv1d_vjp`` (sums of products, no finite differences). An illegal draw
(empty output, reflect padding too wide) must raise the ``ValueError`` of conv1d with
every algorithm.

CI runs :data:`CI_CONFIGS` legal configurations drawn with seed 0;
``benchmarks/sweep_conv1d.py`` runs the same :func:`sweep` over more on demand, and
``docs/semantics.md`` records its last result.

Tolerance (float64, ``precision=HIGHEST``): ``|got - want| <= 1e-12 * scale``, where
``scale`` is the same reference run on ``|x|``, ``|w|``, ``|g|`` (the sum of the absolute
values of the terms of each entry), entry by entry. A quantity whose computation goes
through an FFT (found in the traced program: an ``fft`` operation, or convjax's primitive
evaluated with the ``"fft"`` algorithm, upstream of that output) spreads rounding of the
size of the whole signal over every entry, so its bound is ``1e-12`` times the size of
the signal: the largest ``scale``, and at least ``max|x| sum|w|`` for ``y``,
``max|g| sum|w|`` for ``dx``, ``max|x| sum|g|`` for ``dw`` (an entry that is exactly 0,
e.g. an output that reads only padding zeros, comes back as a tiny number, even when
every entry is 0). This is how ``tests/test_conv1d.py`` bounds ``"fft"``.

Cost: all algorithms of one configuration are one jitted program (one compilation per
configuration). A second thread compiles and runs one configuration's program while the
main thread computes the next one's references and traces its program. Programs are
compiled with :data:`FAST_COMPILE`, XLA options that change how XLA:CPU generates code
(no LLVM optimisation, the classic elemental emitter instead of the fusion emitters, one
LLVM module), not what it computes; each compilation is about 7 times cheaper.
``benchmarks/sweep_conv1d.py --xla-defaults`` compiles with XLA's defaults instead.
"""

from __future__ import annotations

import collections
import concurrent.futures
import importlib.util
import json
import os
import time

import jax
import jax.extend.core as jex
import jax.numpy as jnp
import numpy as np
import pytest
import reference as ref

from convjax import conv1d
from convjax.convolution import ALGORITHMS

HIGHEST = jax.lax.Precision.HIGHEST
RTOL = 1e-12
CI_CONFIGS = 300
QUANTITIES = ("y", "dx", "dw")
FAST_COMPILE = {
    "xla_backend_optimization_level": 0,
    "xla_cpu_use_fusion_emitters": False,
    "xla_cpu_parallel_codegen_split_count": 1,
}


def draw(n: int, seed: int) -> tuple[list[dict], list[dict]]:
    """``n`` legal configurations drawn with ``seed``, and the illegal ones drawn between."""
    rng = np.random.default_rng(seed)
    legal, illegal = [], []
    while len(legal) < n:
        config = ref.draw_config(rng)
        (legal if ref.legal(config) else illegal).append(config)
    return legal, illegal


def program(options: dict):
    """One jitted function of ``(x, w, g)``: ``[y, dx, dw]`` of every algorithm, flat."""

    def run(x, w, g):
        outs = []
        for algorithm in ALGORITHMS:

            def f(x, w, algorithm=algorithm):
                return conv1d(x, w, **options, algorithm=algorithm, precision=HIGHEST)

            y, vjp = jax.vjp(f, x, w)
            outs.extend([y, *vjp(g)])
        return outs

    return jax.jit(run)


def _sub_jaxprs(params: dict):
    for value in params.values():
        for item in value if isinstance(value, (list, tuple)) else (value,):
            if isinstance(item, jex.ClosedJaxpr):
                yield item.jaxpr
            elif isinstance(item, jex.Jaxpr):
                yield item


def _is_fft(eqn) -> bool:
    """An FFT, convjax's primitive evaluated by FFT, or a call whose body holds one."""
    return (
        eqn.primitive.name == "fft"
        or eqn.params.get("algorithm") == "fft"
        or any(_is_fft(e) for j in _sub_jaxprs(eqn.params) for e in j.eqns)
    )


def through_fft(jaxpr) -> list[bool]:
    """For each output of ``jaxpr``, whether an FFT is upstream of it."""
    tainted: set = set()
    for eqn in jaxpr.eqns:
        if _is_fft(eqn) or any(isinstance(v, jex.Var) and v in tainted for v in eqn.invars):
            tainted.update(eqn.outvars)
    return [isinstance(v, jex.Var) and v in tainted for v in jaxpr.outvars]


def usable_compile_options(options: dict) -> dict:
    """The entries of ``options`` this jaxlib knows (unknown ones are dropped)."""
    known = {}
    for name, value in options.items():
        try:
            jax.jit(lambda x: x + 1).lower(1.0).compile({name: value})
        except Exception as e:  # jaxlib raises its own XlaRuntimeError for unknown options
            if "No such compile option" not in str(e):
                raise
        else:
            known[name] = value
    return known


def errors(got: np.ndarray, want: np.ndarray, scale: np.ndarray, size: float):
    """``(entry, signal)``: ``max |got - want| / scale`` entry by entry (0/0 is 0, a
    nonzero error over 0 is inf), and ``max |got - want| / max(max scale, size)``."""
    err = np.abs(got - want)
    with np.errstate(divide="ignore", invalid="ignore"):
        entry = np.where(err == 0, 0.0, err / scale)
    top = max(float(scale.max()), size)
    signal = float(err.max()) / top if top > 0 else (0.0 if err.max() == 0 else np.inf)
    return float(entry.max()), signal


def jsonable(config: dict) -> dict:
    options = dict(config["options"])
    if isinstance(options["padding"], tuple):
        options["padding"] = list(options["padding"])
    return {
        "x_shape": list(config["x_shape"]),
        "w_shape": list(config["w_shape"]),
        "options": options,
        "seed": config["seed"],
    }


def prepare(config: dict) -> tuple:
    """The references of a legal configuration, and its program traced and lowered.

    Returns ``(want, scale, size, fft, lowered, args)``: ``y, dx, dw`` of the loops and
    of the loops on absolute values, the sizes of the signals behind ``y, dx, dw``
    (``max|x| sum|w|``, ``max|g| sum|w|``, ``max|x| sum|g|``), whether each program
    output went through an FFT, the lowered program of every algorithm, and its
    arguments ``(x, w, g)``.
    """
    x, w = ref.random_arrays(config)
    options = config["options"]
    y = ref.conv1d(x, w, **options)
    g = ref.random_cotangent(config, y.shape)
    want = (y, *ref.conv1d_vjp(x, w, g, **options))
    scale = (
        ref.conv1d(abs(x), abs(w), **options),
        *ref.conv1d_vjp(abs(x), abs(w), abs(g), **options),
    )
    size = tuple(float(np.abs(a).max() * np.abs(b).sum()) for a, b in ((x, w), (g, w), (x, g)))
    traced = program(options).trace(x, w, g)
    return want, scale, size, through_fft(traced.jaxpr.jaxpr), traced.lower(), (x, w, g)


def finish(prepared: tuple, compile_options: dict) -> dict:
    """Compiles and runs a :func:`prepare` d program and compares it with the loops.

    Returns ``{algorithm: {quantity: {"entry", "signal", "fft", "ok"}}}``: the two
    error measures of :func:`errors`, whether the quantity went through an FFT, and
    whether it met its bound (shape or dtype mismatches fail with errors ``inf``).
    """
    want, scale, size, fft, lowered, args = prepared
    outs = lowered.compile(compile_options)(*args)
    results: dict = {}
    for i, algorithm in enumerate(ALGORITHMS):
        results[algorithm] = {}
        for j, q in enumerate(QUANTITIES):
            got = outs[3 * i + j]
            if got.shape != want[j].shape or got.dtype != jnp.float64:
                entry = signal = np.inf
            else:
                entry, signal = errors(np.asarray(got), want[j], scale[j], size[j])
            via_fft = fft[3 * i + j]
            ok = bool((signal if via_fft else entry) <= RTOL)
            results[algorithm][q] = {"entry": entry, "signal": signal, "fft": via_fft, "ok": ok}
    return results


def check_config(config: dict, compile_options: dict) -> dict:
    """:func:`finish` of :func:`prepare`: one legal configuration, checked."""
    return finish(prepare(config), compile_options)


def check_illegal(config: dict) -> list[str]:
    """The algorithms that do NOT refuse an illegal config with conv1d's ValueError."""
    x, w = ref.random_arrays(config)
    wrong = []
    for algorithm in ALGORITHMS:
        try:
            conv1d(x, w, **config["options"], algorithm=algorithm)
        except ValueError as e:
            if str(e).startswith("conv1d: ") and ("empty" in str(e) or "reflect" in str(e)):
                continue
        wrong.append(algorithm)
    return wrong


def coverage(configs: list[dict]) -> dict:
    """How often each option value was drawn (JSON keys: strings)."""
    count: dict = collections.defaultdict(collections.Counter)
    for c in configs:
        o = c["options"]
        p = o["padding"]
        count["padding"][p if isinstance(p, str) else "int" if isinstance(p, int) else "pair"] += 1
        for k in ("padding_mode", "flip", "groups", "stride", "dilation"):
            count[k][str(o[k])] += 1
        count["batch_shape"][str(tuple(c["x_shape"][:-2]))] += 1
        count["length"]["short (<= 16)" if c["x_shape"][-2] <= 16 else "long (>= 48)"] += 1
    return {k: dict(sorted(v.items())) for k, v in count.items()}


def sweep(n: int, seed: int = 0, *, compile_options=FAST_COMPILE, progress=None) -> dict:
    """Checks ``n`` legal random configurations (and the illegal ones drawn between).

    Args:
      n: the number of legal configurations.
      seed: the numpy seed of the draw.
      compile_options: XLA compile options for every program (``{}``: XLA's defaults);
        dropped if this jaxlib does not know them.
      progress: called as ``progress(done, n, failures)`` after each configuration.

    Returns:
      A JSON-serialisable summary: counts, failures (config, algorithm, quantity,
      errors), per algorithm and quantity the largest entry-wise and signal-relative
      errors, the largest error in units of the bound that applied (``bound_used``)
      and how many times it went through an FFT; the illegal configurations that
      some algorithm did not refuse; option coverage; wall time; versions.
    """
    start = time.perf_counter()
    compile_options = usable_compile_options(compile_options)
    legal, illegal = draw(n, seed)
    worst = {
        a: {
            q: {"entry": 0.0, "signal": 0.0, "bound_used": 0.0, "through_fft": 0}
            for q in QUANTITIES
        }
        for a in ALGORITHMS
    }
    failures = []

    def collect(config, results):
        for a, per_q in results.items():
            for q, r in per_q.items():
                acc = worst[a][q]
                acc["entry"] = max(acc["entry"], r["entry"])
                acc["signal"] = max(acc["signal"], r["signal"])
                acc["bound_used"] = max(acc["bound_used"], r["signal"] if r["fft"] else r["entry"])
                acc["through_fft"] += int(r["fft"])
                if not r["ok"]:
                    failures.append(
                        {"config": jsonable(config), "algorithm": a, "quantity": q, **r}
                    )

    # A pipeline of two: one thread compiles and runs configuration i (XLA releases the
    # GIL) while this one computes the references of i + 1 and traces its program.
    pending: collections.deque = collections.deque()
    done = 0
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        for config in legal:
            pending.append((config, pool.submit(finish, prepare(config), compile_options)))
            while pending and (len(pending) > 1 or config is legal[-1]):
                first, future = pending.popleft()
                collect(first, future.result())
                done += 1
                if progress is not None:
                    progress(done, n, len(failures))
    refused_wrongly = [
        {"config": jsonable(c), "algorithms": bad} for c in illegal if (bad := check_illegal(c))
    ]
    return {
        "configs": len(legal),
        "illegal_configs": len(illegal),
        "seed": seed,
        "rtol": RTOL,
        "compile_options": compile_options,
        "failures": failures,
        "illegal_not_refused": refused_wrongly,
        "max_error": worst,
        "coverage": coverage(legal),
        "wall_s": round(time.perf_counter() - start, 1),
        "jax": jax.__version__,
        "jaxlib": jax.lib.__version__ if hasattr(jax.lib, "__version__") else None,
        "numpy": np.__version__,
    }


# ---------------------------------------------------------------------------- tests


def test_adjoint_loop_is_the_transpose_of_the_forward_loop():
    """reference.conv1d_vjp against the Jacobian read off reference.conv1d (it is
    linear in x and in w) column by column, on small random configurations."""
    legal, _ = draw(40, seed=1)
    small = [c for c in legal if np.prod(c["x_shape"]) <= 96 and c["x_shape"][-2] <= 16]
    assert len(small) >= 20
    for c in small:
        x, w = ref.random_arrays(c)
        options = c["options"]
        g = ref.random_cotangent(c, ref.conv1d(x, w, **options).shape)
        dx, dw = ref.conv1d_vjp(x, w, g, **options)
        basis_x = np.eye(x.size).reshape(x.size, *x.shape)
        basis_w = np.eye(w.size).reshape(w.size, *w.shape)
        want_dx = [np.sum(ref.conv1d(e, w, **options) * g) for e in basis_x]
        want_dw = [np.sum(ref.conv1d(x, e, **options) * g) for e in basis_w]
        np.testing.assert_allclose(dx.reshape(-1), want_dx, rtol=1e-13, atol=1e-13)
        np.testing.assert_allclose(dw.reshape(-1), want_dw, rtol=1e-13, atol=1e-13)


def test_through_fft_follows_the_data_flow():
    def f(x):
        return jnp.fft.irfft(jnp.fft.rfft(x), n=x.shape[0]), x * 2, jnp.sin(x)

    jaxpr = jax.make_jaxpr(f)(jnp.ones(8)).jaxpr
    assert through_fft(jaxpr) == [True, False, False]


def test_errors_measures():
    want, scale = np.array([1.0, 0.0, 2.0]), np.array([2.0, 0.0, 4.0])
    assert errors(want, want, scale, 1.0) == (0.0, 0.0)
    assert errors(want + [0, 0, 1e-3], want, scale, 1.0) == pytest.approx((2.5e-4, 2.5e-4))
    assert errors(want + [0, 0, 1e-3], want, scale, 10.0) == pytest.approx((2.5e-4, 1e-4))
    entry, signal = errors(want + [0, 1e-16, 0], want, scale, 1.0)
    assert entry == np.inf and signal == 2.5e-17  # a nonzero where the terms are all zero
    # Every exact value 0 (every output reads only padding): the signal's size remains.
    zero = np.zeros(2)
    assert errors(zero + 5e-17, zero, zero, 0.5) == (np.inf, 1e-16)
    assert errors(zero, zero, zero, 0.0) == (0.0, 0.0)


def test_every_algorithm_and_its_gradients_over_random_configurations():
    summary = sweep(CI_CONFIGS, seed=0)
    print(
        f"\nconv1d sweep: {summary['configs']} configurations, "
        f"{summary['illegal_configs']} illegal ones, {summary['wall_s']} s"
    )
    assert summary["configs"] == CI_CONFIGS
    assert summary["failures"] == [], summary["failures"][:5]
    assert summary["illegal_configs"] > 0 and summary["illegal_not_refused"] == []
    cov = summary["coverage"]
    assert set(cov["padding"]) == {*ref.PADDING_NAMES, "int", "pair"}
    assert set(cov["padding_mode"]) == set(ref.PADDING_MODES)
    assert set(cov["flip"]) == {"False", "True"}
    assert {"1", "2", "3"} <= set(cov["groups"]) and set(cov["stride"]) == {"1", "2", "3"}
    assert set(cov["batch_shape"]) == {str(s) for s in ref.SWEEP_BATCH_SHAPES}
    assert set(cov["length"]) == {"short (<= 16)", "long (>= 48)"}
    worst = summary["max_error"]
    # "fft" goes through the FFT everywhere, the loop algorithms never; "auto" never here:
    # its CPU rule takes the FFT for one channel pair per group only from spans of 96 on
    # signals of 2**15 samples, or spans of 512 (algorithms.loop_beats_fft), longer than
    # any configuration of the sweep (its FFT route is tested in test_primitive.py).
    for q in QUANTITIES:
        assert worst["fft"][q]["through_fft"] == CI_CONFIGS
        assert all(
            worst[a][q]["through_fft"] == 0 for a in ("xla", "direct", "matmul", "dense", "auto")
        ), q


def test_on_demand_script_writes_its_summary(tmp_path):
    """benchmarks/sweep_conv1d.py runs this module's sweep and writes strict JSON."""
    path = os.path.join(os.path.dirname(__file__), os.pardir, "benchmarks", "sweep_conv1d.py")
    spec = importlib.util.spec_from_file_location("sweep_conv1d", path)
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    out = tmp_path / "sweep.json"
    script.main(["--n", "3", "--seed", "5", "--out", str(out)])
    summary = json.loads(out.read_text())
    assert summary["configs"] == 3 and summary["seed"] == 5 and summary["failures"] == []
    assert summary["command"] == f"python benchmarks/sweep_conv1d.py --n 3 --seed 5 --out {out}"
    assert set(summary["max_error"]) == set(ALGORITHMS)
    assert summary["compile_options"] == usable_compile_options(FAST_COMPILE)
