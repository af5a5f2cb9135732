"""convjax.train.fit / fit_many against step-by-step references, and their errors."""

import functools
import io
import re

import hypothesis.strategies as st
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
import sampling_reference as sref
from hypothesis import given, settings

from convjax import train
from convjax.train import progress as prog

N, D = 12, 3
ADAM, SGD = optax.adam(0.05), optax.sgd(0.1)


def make_data(n=N, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, D))
    y = x @ np.array([1.0, -2.0, 0.5]) + 0.1 * rng.normal(size=n)
    return {"x": x, "y": y}


def loss_fn(p, b):
    r = b["x"] @ p["w"] + p["b"] - b["y"]
    return jnp.mean(r * r)


def loss_aux(p, b):
    r = b["x"] @ p["w"] + p["b"] - b["y"]
    return jnp.mean(r * r), {"mae": jnp.mean(jnp.abs(r))}


def eval_fn(p, d):
    return {"mse": loss_fn(p, d)}


def params0():
    return {"w": jnp.zeros(D), "b": jnp.zeros(())}


def reference(loss, params, opt, data, key, steps, batch_size, skip_nonfinite=False):
    """Python loop over single steps following the documented sampling contract."""
    state = opt.init(params)
    # Optimizer-state leaves checked for non-finite values: floating and finite at init.
    checked = [
        np.issubdtype(np.asarray(x).dtype, np.inexact) and np.isfinite(x).all()
        for x in jax.tree.leaves(state)
    ]
    n = len(jax.tree.leaves(data)[0])
    losses = []
    for s in range(steps):
        batch = data
        if batch_size is not None:
            idx = sref.batch(key, s, n, batch_size)
            batch = jax.tree.map(lambda a, idx=idx: a[np.asarray(idx)], data)
        value, grads, updates, new_state = _ref_step(loss, opt, params, state, batch)
        new_params = optax.apply_updates(params, updates)
        finite = all(np.isfinite(x).all() for x in jax.tree.leaves((value, grads, new_params)))
        finite &= all(
            np.isfinite(x).all()
            for x, c in zip(jax.tree.leaves(new_state), checked, strict=True)
            if c
        )
        losses.append(float(value))
        if skip_nonfinite and not finite:
            continue
        params, state = new_params, new_state
    return params, state, np.array(losses)


@functools.partial(jax.jit, static_argnums=(0, 1))
def _ref_step(loss, opt, params, state, batch):
    value, grads = jax.value_and_grad(loss)(params, batch)
    updates, new_state = opt.update(grads, state, params)
    return value, grads, updates, new_state


def assert_tree_close(a, b, rtol, atol=0.0):
    jax.tree.map(lambda x, y: np.testing.assert_allclose(x, y, rtol=rtol, atol=atol), a, b)


# ---------------------------------------------------------------- against references


def test_full_batch_gd_matches_numpy_closed_form():
    data = make_data()
    lr, steps = 0.1, 7
    w, b = np.zeros(D), 0.0
    x, y = data["x"], data["y"]
    for _ in range(steps):
        r = x @ w + b - y
        w, b = w - lr * 2 * x.T @ r / N, b - lr * 2 * r.mean()
    res = train.fit(
        loss_fn, params0(), optax.sgd(lr), data, jax.random.key(0), steps=steps, progress=False
    )
    np.testing.assert_allclose(res.params["w"], w, rtol=1e-12)
    np.testing.assert_allclose(res.params["b"], b, rtol=1e-12, atol=1e-15)
    assert res.step == steps and res.history["step"].tolist() == [steps]


@settings(max_examples=5, deadline=None)
@given(
    steps=st.integers(1, 9),
    eval_every=st.integers(1, 4),
    batch_size=st.sampled_from([None, 1, 4, N]),
    seed=st.integers(0, 2**16),
)
def test_fit_matches_eager_loop(steps, eval_every, batch_size, seed):
    eval_every = min(eval_every, steps)
    data, key = make_data(), jax.random.key(seed)
    opt = ADAM
    res = train.fit(
        loss_fn,
        params0(),
        opt,
        data,
        key,
        steps=steps,
        batch_size=batch_size,
        eval_every=eval_every,
        eval_fn=eval_fn,
        eval_data=data,
        progress=False,
    )
    p_ref, s_ref, losses = reference(loss_fn, params0(), opt, data, key, steps, batch_size)
    assert_tree_close(res.params, p_ref, rtol=1e-10, atol=1e-13)
    assert_tree_close(res.opt_state, s_ref, rtol=1e-10, atol=1e-13)
    # Evaluations at every multiple of eval_every and at `steps` (last block shorter).
    ends = list(range(eval_every, steps, eval_every)) + [steps]
    assert res.history["step"].tolist() == ends
    starts = [0] + ends[:-1]
    block_means = [losses[a:b].mean() for a, b in zip(starts, ends, strict=True)]
    np.testing.assert_allclose(res.history["loss"], block_means, rtol=1e-10)
    np.testing.assert_allclose(res.history["eval_mse"][-1], loss_fn(p_ref, data), rtol=1e-10)
    assert all(v.shape == (len(ends),) for v in res.history.values())


def test_aux_metrics_are_block_means():
    data, key = make_data(), jax.random.key(1)
    res = train.fit(
        loss_aux,
        params0(),
        optax.sgd(0.05),
        data,
        key,
        steps=6,
        eval_every=3,
        batch_size=5,
        has_aux=True,
        progress=False,
    )
    p = params0()
    opt, state, maes = optax.sgd(0.05), None, []
    state = opt.init(p)
    for s in range(6):
        idx = sref.batch(key, s, N, 5)
        batch = jax.tree.map(lambda a, idx=idx: a[idx], data)
        (_, aux), g = jax.value_and_grad(loss_aux, has_aux=True)(p, batch)
        maes.append(float(aux["mae"]))
        u, state = opt.update(g, state, p)
        p = optax.apply_updates(p, u)
    np.testing.assert_allclose(
        res.history["mae"], [np.mean(maes[:3]), np.mean(maes[3:])], rtol=1e-12
    )
    assert set(res.history) == {"step", "loss", "mae"}


def test_float32_params_keep_dtype():
    data = jax.tree.map(lambda a: a.astype(np.float32), make_data())
    p = jax.tree.map(lambda a: a.astype(jnp.float32), params0())
    res = train.fit(
        loss_fn, p, ADAM, data, jax.random.key(0), steps=20, batch_size=4, progress=False
    )
    ref, _, _ = reference(loss_fn, p, ADAM, data, jax.random.key(0), 20, 4)
    assert res.params["w"].dtype == jnp.float32
    assert_tree_close(res.params, ref, rtol=1e-5, atol=1e-6)


def test_extra_args_optimizer_receives_loss_value():
    # reduce_on_plateau needs `value=`; with a huge patience-free setting it must reduce.
    opt = optax.chain(SGD, optax.contrib.reduce_on_plateau(patience=0, factor=0.5, cooldown=0))
    res = train.fit(
        lambda p, b: jnp.sum(p["w"] ** 2) * 0.0 + 1.0,
        {"w": jnp.ones(2)},
        opt,
        make_data(),
        jax.random.key(0),
        steps=5,
        progress=False,
    )
    assert float(res.opt_state[1].scale) < 1.0


# ---------------------------------------------------------------- compile once


def test_compiles_once_across_blocks_and_calls():
    traces = []

    def counted(p, b):
        traces.append(1)
        return loss_fn(p, b)

    opt, data, key = SGD, make_data(), jax.random.key(0)
    kwargs = dict(batch_size=4, eval_every=2, progress=False)
    train.fit(counted, params0(), opt, data, key, steps=4, **kwargs)
    first = len(traces)
    train.fit(counted, params0(), opt, data, key, steps=4, **kwargs)
    assert len(traces) == first + 1  # only the abstract input check traces again
    train.fit(counted, params0(), opt, data, key, steps=21, **kwargs)  # 11 blocks
    assert len(traces) == first + 2


def test_compiled_blocks_do_not_keep_user_closures_alive():
    import gc
    import weakref

    from convjax.train import loop

    def make():
        scale = jnp.full((), 2.0)  # captured: must be freed with the closures

        def loss(p, b):
            return scale * loss_fn(p, b)

        def evaluate(p, d):  # refers back to the loss, as user code often does
            return {"mse": loss(p, d)}

        return loss, evaluate, optax.sgd(0.01 * scale)

    before = len(loop._BLOCKS)
    loss, evaluate, opt = make()
    data = make_data()
    train.fit(
        loss,
        params0(),
        opt,
        data,
        jax.random.key(0),
        steps=2,
        batch_size=4,
        eval_fn=evaluate,
        eval_data=data,
        progress=False,
    )
    assert len(loop._BLOCKS) == before + 1
    refs = [weakref.ref(f) for f in (loss, evaluate, opt.update)]
    del loss, evaluate, opt
    gc.collect()
    assert [r() for r in refs] == [None, None, None]
    assert len(loop._BLOCKS) == before  # the entry went with its callables


def test_block_cache_is_quiet_at_interpreter_exit():
    # The cache's weak-reference callbacks may fire while modules are torn down.
    import subprocess
    import sys

    code = (
        "import jax, jax.numpy as jnp, optax\n"
        "from convjax import train\n"
        "def loss(p, b):\n"
        "    return jnp.mean((b['x'] @ p['w']) ** 2)\n"
        "opt = optax.sgd(0.1)  # module globals: freed while modules are torn down\n"
        "train.fit(loss, {'w': jnp.ones(2)}, opt, {'x': jnp.ones((4, 2))},\n"
        "          jax.random.key(0), steps=2, batch_size=2, progress=False)\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0 and proc.stderr == "", proc.stderr[-2000:]


def test_bound_method_loss_compiles_once():
    traces = []

    class Model:
        def loss(self, p, b):
            traces.append(1)
            return loss_fn(p, b)

    model, data = Model(), make_data()
    for _ in range(2):  # `model.loss` is a new bound-method object each time
        train.fit(
            model.loss,
            params0(),
            SGD,
            data,
            jax.random.key(0),
            steps=2,
            batch_size=4,
            progress=False,
        )
    assert len(traces) == 3  # two abstract checks, one trace of the block


# ---------------------------------------------------------------- many runs


def test_fit_many_equals_separate_fits():
    data, n_runs = make_data(), 3
    keys = jax.random.split(jax.random.key(3), n_runs)
    inits = jax.vmap(lambda k: {"w": jax.random.normal(k, (D,)), "b": jnp.zeros(())})(keys)
    lrs = jnp.array([0.0, 0.02, 0.1])

    def make_opt(h):
        return optax.adam(h["lr"])

    res = train.fit_many(
        loss_fn,
        inits,
        make_opt,
        data,
        keys,
        hyper={"lr": lrs},
        steps=7,
        batch_size=4,
        eval_every=3,
        eval_fn=eval_fn,
        eval_data=data,
        progress=False,
    )
    assert res.history["loss"].shape == (n_runs, 3)
    assert res.history["step"].tolist() == [3, 6, 7]  # shared by the runs: no runs axis
    assert res.hyper["lr"].tolist() == np.asarray(lrs).tolist()
    assert isinstance(res.hyper["lr"], np.ndarray)
    assert res.params["w"].shape == (n_runs, D)
    np.testing.assert_array_equal(res.params["w"][0], inits["w"][0])  # lr = 0
    for r in range(n_runs):
        one = train.fit(
            loss_fn,
            jax.tree.map(lambda a, r=r: a[r], inits),
            make_opt,
            data,
            keys[r],
            hyper={"lr": lrs[r]},
            steps=7,
            batch_size=4,
            eval_every=3,
            eval_fn=eval_fn,
            eval_data=data,
            progress=False,
        )
        assert_tree_close(jax.tree.map(lambda a, r=r: a[r], res.params), one.params, 1e-10, 1e-13)
        np.testing.assert_array_equal(one.history["step"], res.history["step"])
        for k in set(one.history) - {"step"}:
            np.testing.assert_allclose(res.history[k][r], one.history[k], rtol=1e-10)
    np.testing.assert_allclose(
        res.history["eval_mse"][:, -1],
        jax.vmap(lambda p: loss_fn(p, data))(res.params),
        rtol=1e-10,
    )
    mean, std = train.mean_std(res.history)
    np.testing.assert_allclose(mean["loss"], res.history["loss"].mean(0), rtol=1e-12)
    np.testing.assert_allclose(std["loss"], res.history["loss"].std(0), rtol=1e-12)
    assert train.fit(loss_fn, params0(), SGD, data, keys[0], steps=2, progress=False).hyper is None


def test_fit_many_runs_grouped_by_hyperparameter():
    data, seeds = make_data(), 3
    lrs = np.repeat([0.01, 0.1], seeds)  # 2 learning rates x 3 seeds, flattened
    keys = jax.random.split(jax.random.key(8), len(lrs))
    params = jax.tree.map(lambda a: jnp.stack([a] * len(lrs)), params0())
    res = train.fit_many(
        loss_fn,
        params,
        lambda h: optax.sgd(h["lr"]),
        data,
        keys,
        hyper={"lr": jnp.asarray(lrs)},
        steps=4,
        batch_size=4,
        eval_every=2,
        progress=False,
    )
    groups = train.mean_std(res.history, by=res.hyper["lr"], level=None)
    assert sorted(groups) == [0.01, 0.1]
    for i, lr in enumerate((0.01, 0.1)):
        rows = res.history["loss"][i * seeds : (i + 1) * seeds]
        np.testing.assert_allclose(groups[lr].mean["loss"], rows.mean(0), rtol=1e-12)
        np.testing.assert_array_equal(groups[lr].mean["step"], [2, 4])
        assert groups[lr].n == seeds


def test_fit_many_shared_optimizer_and_raw_keys():
    data = make_data()
    keys = jax.random.split(jax.random.PRNGKey(0), 2)
    params = jax.tree.map(lambda a: jnp.stack([a, a]), params0())
    res = train.fit_many(loss_fn, params, SGD, data, keys, steps=3, batch_size=4, progress=False)
    for r in range(2):
        ref, _, _ = reference(loss_fn, params0(), SGD, data, keys[r], 3, 4)
        assert_tree_close(jax.tree.map(lambda a, r=r: a[r], res.params), ref, 1e-10, 1e-13)
    assert not np.allclose(res.params["w"][0], res.params["w"][1])  # different batches


def per_run_data(n_runs):
    """Each run its own dataset (different draws, same n), stacked on a runs axis."""
    sets = [make_data(seed=10 + r) for r in range(n_runs)]
    return jax.tree.map(lambda *a: np.stack(a), *sets), sets


def test_fit_many_per_run_data_equals_fit_on_each_dataset():
    n_runs = 3
    data, sets = per_run_data(n_runs)
    evals, eval_sets = per_run_data(n_runs)
    keys = jax.random.split(jax.random.key(4), n_runs)
    params = jax.tree.map(lambda a: jnp.stack([a] * n_runs), params0())
    kw = dict(steps=5, batch_size=4, eval_every=2, eval_fn=eval_fn, progress=False)
    res = train.fit_many(
        loss_fn, params, ADAM, data, keys, eval_data=evals, per_run_data=True, **kw
    )
    assert res.history["eval_mse"].shape == (n_runs, 3)
    for r in range(n_runs):
        one = train.fit(loss_fn, params0(), ADAM, sets[r], keys[r], eval_data=eval_sets[r], **kw)
        assert_tree_close(jax.tree.map(lambda a, r=r: a[r], res.params), one.params, 1e-10, 1e-13)
        for k in ("loss", "eval_mse"):
            np.testing.assert_allclose(res.history[k][r], one.history[k], rtol=1e-10)
    # Different data per run really is used: runs 0 and 1 with equal keys still differ.
    same_keys = jnp.stack([keys[0]] * n_runs)
    res2 = train.fit_many(
        loss_fn,
        params,
        ADAM,
        data,
        same_keys,
        per_run_data=True,
        steps=5,
        batch_size=4,
        progress=False,
    )
    assert not np.allclose(res2.params["w"][0], res2.params["w"][1])


def test_fit_many_per_run_data_errors():
    keys = jax.random.split(jax.random.key(0), 3)
    params = jax.tree.map(lambda a: jnp.stack([a] * 3), params0())
    data, _ = per_run_data(2)

    def run(data, **kw):
        train.fit_many(
            loss_fn, params, SGD, data, keys, steps=2, per_run_data=True, progress=False, **kw
        )

    with pytest.raises(
        ValueError,
        match=r"fit_many: with `per_run_data=True` every leaf of "
        r"`data` must have a leading runs axis of size 3 \(the number of keys\), "
        r"leaf \['x'\] has shape \(2, 12, 3\)",
    ):
        run(data)
    good, _ = per_run_data(3)
    with pytest.raises(
        ValueError,
        match=r"fit_many: with `per_run_data=True` every leaf of "
        r"`eval_data` must have a leading runs axis of size 3",
    ):
        run(good, eval_fn=eval_fn, eval_data=make_data())
    with pytest.raises(
        ValueError,
        match=r"fit_many: every leaf of `data` needs a leading "
        r"example axis after its runs axis \(per_run_data=True\), leaf \['s'\] "
        r"has shape \(3,\)",
    ):
        run({**good, "s": np.zeros(3)})
    with pytest.raises(
        ValueError,
        match=r"fit_many: the leaves of `data` must share their "
        r"second \(example\) axis, got sizes \['x'\]: 12, \['y'\]: 5",
    ):
        run({**good, "y": good["y"][:, :5]})
    with pytest.raises(
        ValueError,
        match=r"fit_many: `batch_size` \(13\) is larger than the "
        r"dataset \(12 examples\)",
    ):
        run(good, batch_size=13)
    with pytest.raises(
        TypeError,
        match=r"fit_many: `per_run_data` must be True or False, got "
        r"'yes'",
    ):
        train.fit_many(
            loss_fn, params, SGD, good, keys, steps=2, per_run_data="yes", progress=False
        )


# ---------------------------------------------------------------- non-finite


def nan_data():
    data = make_data(8)
    data["y"][5] = np.nan
    return data


def first_hit(key, steps, n=8, b=2, bad=5):
    hits = [s for s in range(steps) if bad in sref.batch(key, s, n, b)]
    return hits


def test_nonfinite_raises_naming_the_update():
    key = jax.random.key(7)
    hits = first_hit(key, 12)  # 0-based indices of the updates that sample the NaN
    assert hits, "the test needs a step that samples the NaN example"
    n = hits[0] + 1  # updates are numbered from 1, as history["step"]
    with pytest.raises(
        train.NonFiniteError,
        match=rf"fit: update {n} produced non-finite "
        rf"values \(NaN or inf\) in the loss, the gradient and the updated params\. "
        rf"Updates are numbered from 1, as history\['step'\]; params and "
        rf"optimizer state are kept as they were after {n - 1} updates",
    ) as err:
        train.fit(
            loss_fn,
            params0(),
            SGD,
            nan_data(),
            key,
            steps=12,
            batch_size=2,
            eval_every=4,
            progress=False,
        )
    assert err.value.step == n and err.value.runs is None
    assert err.value.what == ("the loss", "the gradient", "the updated params")


def test_nonfinite_skip_matches_reference():
    key = jax.random.key(7)
    data = nan_data()
    hits = first_hit(key, 12)
    res = train.fit(
        loss_fn,
        params0(),
        SGD,
        data,
        key,
        steps=12,
        batch_size=2,
        eval_every=4,
        on_nonfinite="skip",
        progress=False,
    )
    ref, _, losses = reference(loss_fn, params0(), SGD, data, key, 12, 2, skip_nonfinite=True)
    assert_tree_close(res.params, ref, 1e-12, 1e-14)
    expected = [sum(1 for h in hits if a <= h < a + 4) for a in (0, 4, 8)]
    assert res.history["skipped"].tolist() == expected
    finite = [
        np.nanmean(np.where(np.isfinite(losses[a : a + 4]), losses[a : a + 4], np.nan))
        for a in (0, 4, 8)
    ]
    np.testing.assert_allclose(res.history["loss"], finite, rtol=1e-12)


def test_nonfinite_fit_many_names_runs():
    keys = jax.random.split(jax.random.key(5), 4)
    hits = [first_hit(k, 3) for k in keys]
    bad_runs = [r for r, h in enumerate(hits) if h]
    assert 0 < len(bad_runs) < 4, "the key must give some runs that hit the NaN, some not"
    first, first_run = min((h[0] + 1, r) for r, h in enumerate(hits) if h)
    params = jax.tree.map(lambda a: jnp.stack([a] * 4), params0())
    runs = re.escape(str(bad_runs))
    msg = rf"fit_many: update {first} of run {first_run} \(runs hit in this block: {runs}\) "
    with pytest.raises(train.NonFiniteError, match=msg) as e:
        train.fit_many(
            loss_fn, params, SGD, nan_data(), keys, steps=3, batch_size=2, progress=False
        )
    assert e.value.runs == tuple(bad_runs) and e.value.step == first


# ---------------------------------------------------------------- progress


def test_progress_modes(capsys):
    data, key = make_data(), jax.random.key(0)
    kw = dict(steps=4, eval_every=2, eval_fn=eval_fn, eval_data=data)
    train.fit(loss_fn, params0(), SGD, data, key, progress="text", **kw)
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 2 and err[1].startswith("fit [") and "4/4" in err[1]
    assert "loss=" in err[1] and "eval_mse=" in err[1]
    for quiet in ("auto", False, "none"):  # pytest's stderr is not a terminal
        train.fit(loss_fn, params0(), SGD, data, key, progress=quiet, **kw)
        assert capsys.readouterr().err == ""
    train.fit(loss_fn, params0(), SGD, data, key, progress="tqdm", **kw)
    assert "4/4" in capsys.readouterr().err


def test_progress_tqdm_without_tqdm_is_a_clear_error(monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "tqdm", None)  # makes `import tqdm` fail
    with pytest.raises(ValueError, match=r"fit: `progress`='tqdm' needs the tqdm package"):
        train.fit(loss_fn, params0(), SGD, make_data(), jax.random.key(0), steps=2, progress="tqdm")


def test_text_bar_redraws_on_a_terminal():
    class Tty(io.StringIO):
        def isatty(self):
            return True

    stream = Tty()
    bar = prog.make_progress("text", 10, stream=stream)
    bar.update(5, {"loss": 0.5})
    bar.update(10, {"loss": 0.25})
    bar.close()
    out = stream.getvalue()
    assert out.count("\r") == 2 and out.endswith("\n") and "10/10" in out
    assert "[##########----------] 5/10" in out


# ---------------------------------------------------------------- bad input


def expect(exc, match, **overrides):
    kwargs = dict(
        loss_fn=loss_fn,
        params=params0(),
        optimizer=SGD,
        data=make_data(),
        key=jax.random.key(0),
        steps=4,
        progress=False,
    )
    kwargs.update(overrides)
    with pytest.raises(exc, match=match):
        train.fit(**kwargs)


def test_bad_settings():
    expect(
        ValueError,
        r"fit: `batch_size` \(13\) is larger than the dataset \(12 examples\)",
        batch_size=13,
    )
    expect(ValueError, r"fit: `steps` must be an integer >= 1, got 0", steps=0)
    expect(TypeError, r"fit: `eval_every` must be an integer, got 1.5", eval_every=1.5)
    expect(ValueError, r"fit: `eval_every` \(5\) must be <= `steps` \(4\)", eval_every=5)
    expect(
        ValueError,
        r"fit: `on_nonfinite` must be one of 'raise', 'skip', got 'ignore'",
        on_nonfinite="ignore",
    )
    expect(ValueError, r"fit: `progress` must be one of .*got 'fancy'", progress="fancy")
    expect(ValueError, r"fit: `parallel` must be one of 'data', got 'runs'", parallel="runs")
    expect(ValueError, r"fit: `resume=True` needs a `checkpoint_dir`", resume=True)
    expect(ValueError, r"fit: `checkpoint_every` needs a `checkpoint_dir`", checkpoint_every=2)


def test_bad_checkpoint_every(tmp_path):
    expect(
        ValueError,
        r"fit: `checkpoint_every` \(3\) must be a multiple of `eval_every` \(2\)",
        eval_every=2,
        checkpoint_every=3,
        checkpoint_dir=tmp_path,
    )


def test_bad_data_and_key():
    bad = make_data()
    bad["y"] = bad["y"][:5]
    expect(
        ValueError,
        r"fit: the leaves of `data` must share their leading \(example\) axis, "
        r"got sizes \['x'\]: 12, \['y'\]: 5",
        data=bad,
    )
    expect(
        ValueError,
        r"fit: every leaf of `data` needs a leading example axis, leaf "
        r"\['s'\] has shape \(\)",
        data={"s": np.float64(1.0)},
    )
    expect(
        ValueError,
        r"fit: `key` must be one PRNG key: .*got key<fry> of shape \(2,\)",
        key=jax.random.split(jax.random.key(0)),
    )
    expect(
        TypeError,
        r"fit: every leaf of `params` must be a floating array .*\['n'\] has "
        r"dtype int",
        params={"n": jnp.arange(3)},
    )


def test_bad_loss():
    expect(
        ValueError,
        r"fit: `loss_fn\(params, batch\)` must return a scalar.*got shape "
        r"\(12,\)",
        loss_fn=lambda p, b: b["x"] @ p["w"],
    )
    expect(
        TypeError, r"with `has_aux=True`, `loss_fn` must return \(loss, aux_dict\)", has_aux=True
    )
    expect(
        ValueError,
        r"aux metric names must not be 'step'",
        loss_fn=lambda p, b: (loss_fn(p, b), {"loss": 0.0}),
        has_aux=True,
    )


def test_params_optimizer_mismatch():
    masked = optax.masked(SGD, {"w": True})  # mask misses "b"
    expect(
        ValueError,
        r"fit: `optimizer` does not fit `params`: optimizer.init\(params\) "
        r"raised",
        optimizer=masked,
    )
    other = optax.adam(0.1).init({"w": jnp.zeros(D + 1), "b": jnp.zeros(())})
    expect(
        ValueError,
        r"fit: `opt_state` does not match `optimizer.init\(params\)`: leaf .*"
        r"shape \(4,\)",
        optimizer=optax.adam(0.1),
        opt_state=other,
    )

    def widen(grads, state, params=None):
        del params
        return grads, state + sum(jnp.sum(g) for g in jax.tree.leaves(grads)).astype(jnp.float64)

    drifting = optax.GradientTransformation(lambda p: jnp.zeros((), jnp.float32), widen)
    expect(ValueError, r"the optimizer state changes structure, shape or dtype", optimizer=drifting)
    expect(
        TypeError,
        r"`hyper` is given but `optimizer` is already a GradientTransformation",
        hyper={"lr": 0.1},
    )
    expect(
        TypeError,
        r"`optimizer` must be an optax.GradientTransformation, or a callable",
        optimizer=lambda h: optax.sgd(h),
    )


def test_fit_many_bad_leading_axes():
    keys = jax.random.split(jax.random.key(0), 3)
    with pytest.raises(
        ValueError,
        match=r"fit_many: every leaf of `params` must have a leading "
        r"runs axis of size 3 .*\['w'\] has shape \(2, 3\)",
    ):
        train.fit_many(
            loss_fn,
            {"w": jnp.zeros((2, D)), "b": jnp.zeros(3)},
            SGD,
            make_data(),
            keys,
            steps=2,
            progress=False,
        )
    params = jax.tree.map(lambda a: jnp.stack([a] * 3), params0())
    with pytest.raises(ValueError, match=r"fit_many: every leaf of `hyper` must have a leading"):
        train.fit_many(
            loss_fn,
            params,
            lambda h: optax.sgd(h["lr"]),
            make_data(),
            keys,
            hyper={"lr": jnp.ones(2)},
            steps=2,
            progress=False,
        )
    with pytest.raises(ValueError, match=r"fit_many: `keys` must hold one key per run"):
        train.fit_many(
            loss_fn, params, SGD, make_data(), jax.random.key(0), steps=2, progress=False
        )


def test_history_is_json_serialisable():
    import json

    res = train.fit(
        loss_fn,
        params0(),
        SGD,
        make_data(),
        jax.random.key(0),
        steps=4,
        eval_every=2,
        progress=False,
    )
    back = json.loads(json.dumps(train.jsonable(res.history)))
    assert back["step"] == [2, 4] and len(back["loss"]) == 2
