# ruff: noqa  (a measurement script kept as it ran: compact, not library code)
"""Trial of the routes behind two of the speed issue's choices, kept with its output so the
choices can be checked: (1) the weight gradient of CNN layers (``cig > 1``) on CPU, as one
forward convolution with the roles exchanged (``"conv"``, kept) or one matmul per tap
(``"taps"``), forward+backward at top level and inside a 4-step ``lax.scan``, against
``lax``; (2) how ``vmap`` over independent runs (``fit_many``) evaluates a convolution
whose input and filter are both batched: ``lax.map`` over the runs (kept), the runs
unrolled, or one batched im2col matmul, timed as ``fit_many`` with 16 seeds against 16
sequential ``fit`` calls on the 8-channel CNN of ``bench_train.py`` (100 steps).

It swaps the module-level choices of :mod:`convjax.algorithms` / :mod:`convjax.primitive`
in place (a benchmark, not library code). Run on a quiet machine::

    python benchmarks/routes_trial.py --out docs/measurements/routes_trial.json
"""

import argparse
import json
import os
import sys
import time

import jax
import jax.numpy as jnp
import optax

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bench_train as bt

from convjax import algorithms as A
from convjax import primitive as P
from convjax import train
from convjax.algorithms import Spec

parser = argparse.ArgumentParser(description="weight-gradient and batched-runs routes")
parser.add_argument("--out", default="routes_trial.json")
args = parser.parse_args()


def im2col(x, w, spec, precision):
    n, B = x.shape[:2]
    K, cig, cout = w.shape[1:]
    g = spec.groups
    cog = cout // g
    xp = jnp.pad(x, ((0, 0), (0, 0), spec.pads[0], (0, 0)))
    lout = spec.out_shape[0]
    taps = []
    for k in range(K):
        s0 = k * spec.dilation[0]
        t = jax.lax.slice_in_dim(
            xp, s0, s0 + (lout - 1) * spec.stride[0] + 1, stride=spec.stride[0], axis=2
        )
        taps.append(t.reshape(n, B, lout, g, 1, cig))
    patches = jnp.concatenate(taps, axis=4)
    y = jnp.einsum(
        "nblgka,nkagc->nblgc", patches, w.reshape(n, K, cig, g, cog), precision=precision
    )
    return y.reshape(n, B, lout, cout)


def unrolled(x, w, spec, precision):
    return jnp.stack([P.conv(x[i], w[i], spec, precision) for i in range(x.shape[0])])


VARIANTS = {"map": P._batched_runs, "unrolled": unrolled, "im2col": im2col}


def best(fn, rep=3):
    jax.block_until_ready(fn())
    b = 1e9
    for _ in range(rep):
        t0 = time.perf_counter()
        jax.block_until_ready(fn())
        b = min(b, time.perf_counter() - t0)
    return b


out = {"load_start": os.getloadavg()}


def _unused(fn, rep=3):
    jax.block_until_ready(fn())
    b = 1e9
    for _ in range(rep):
        t0 = time.perf_counter()
        jax.block_until_ready(fn())
        b = min(b, time.perf_counter() - t0)
    return b


# 1. CNN top level + scan, weight-gradient route
shapes = [(64, 1024, 64, 64, 3), (64, 1024, 64, 64, 9), (256, 256, 32, 64, 5), (128, 64, 32, 32, 5)]
res = {}
for B, L, ci, co, K in shapes:
    x = jax.random.normal(jax.random.key(0), (B, L, ci))
    w = jax.random.normal(jax.random.key(1), (K, ci, co)) * 0.1
    pad = ((K - 1) // 2, K - 1 - (K - 1) // 2)
    lax_f = lambda x, w: jax.lax.conv_general_dilated(
        x, w, (1,), [pad], dimension_numbers=("NWC", "WIO", "NWC")
    )
    spec = Spec((1,), (1,), 1, (pad,), (L,))
    r = {}
    fns = {"lax": jax.jit(jax.grad(lambda x, w: jnp.sum(lax_f(x, w) ** 2), (0, 1)))}
    for route in ("conv", "taps"):
        A.CNN_WEIGHT_GRADIENT = route
        jax.clear_caches()
        f = jax.jit(jax.grad(lambda x, w: jnp.sum(P.conv(x, w, spec) ** 2), (0, 1)))
        jax.block_until_ready(f(x, w))
        fns[route] = f

        def scanned(x, w):
            def body(c, _):
                gx, gw = jax.grad(lambda x, w: jnp.sum(P.conv(x, w, spec) ** 2), (0, 1))(x + c, w)
                return c + 1e-12 * (jnp.sum(gx) + jnp.sum(gw)), None

            return jax.lax.scan(body, jnp.zeros(()), length=4)[0]

        fs = jax.jit(scanned)
        jax.block_until_ready(fs(x, w))
        fns[route + "_scan4"] = fs
    for rnd in range(3):
        for k, f in fns.items():
            r.setdefault(k, []).append(best(lambda: f(x, w)))
    r = {k: min(v) for k, v in r.items()}
    res[str((B, L, ci, co, K))] = r
    print(
        (B, L, ci, co, K),
        {k: f"{v * 1e3:.2f}ms" for k, v in r.items()},
        "lax/conv %.2f lax/taps %.2f" % (r["lax"] / r["conv"], r["lax"] / r["taps"]),
        flush=True,
    )
out["cnn"] = res
# 2. fit_many batching x weight route
fm = {}
for ch in (8,):
    key = jax.random.key(ch)
    opt = optax.adam(1e-3)
    steps = 100
    data = bt.make_data(jax.random.fold_in(key, 1), 2048)
    keys = jax.random.split(jax.random.fold_in(key, 3), 16)
    params = jax.vmap(lambda k: bt.init(k, ch))(keys)
    one = jax.tree.map(lambda a: a[0], params)
    kw = dict(steps=steps, batch_size=128, progress=False)
    for route in ("conv", "taps"):
        A.CNN_WEIGHT_GRADIENT = route
        jax.clear_caches()
        lf = lambda p, b: bt.loss_fn(p, b)
        seq = 16 * best(lambda: train.fit(lf, one, opt, data, keys[0], **kw).params)
        for name in ("map", "unrolled", "im2col"):
            P._batched_runs = VARIANTS[name]
            jax.clear_caches()
            lf = lambda p, b: bt.loss_fn(p, b)
            many = best(lambda: train.fit_many(lf, params, opt, data, keys, **kw).params, rep=2)
            fm[f"C={ch} {route} {name}"] = {"seq16": seq, "many": many, "ratio": seq / many}
            print(
                f"C={ch} wgrad={route} runs={name}: seq16 {seq:.3f}s many {many:.3f}s ratio {seq / many:.2f}",
                flush=True,
            )
out["fit_many"] = fm
out["load_end"] = os.getloadavg()
with open(args.out, "w") as fh:
    json.dump(out, fh, indent=1)
print("wrote", args.out)
