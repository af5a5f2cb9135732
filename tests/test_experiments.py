"""The experiment framework: common.py helpers, run_all.py's registry and report, and the
seed walkthrough run through the driver at the tiny size into a temporary folder (schema
checks only; no scientific outcome is asserted at this size, except the seed walkthrough's
exact facts)."""

import importlib
import json
import math
import sys
from pathlib import Path

import jax
import numpy as np
import pytest
import scipy.signal

from convjax import stats

EXPERIMENTS = Path(__file__).resolve().parent.parent / "experiments"
sys.path.insert(0, str(EXPERIMENTS))

common = importlib.import_module("common")
run_all = importlib.import_module("run_all")

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def assert_valid_output(out: Path, metrics: dict) -> None:
    """metrics.json on disk equals the returned dict, has the schema, and its figures exist."""
    path = out / metrics["name"] / "metrics.json"
    on_disk = json.loads(path.read_text())
    assert on_disk == json.loads(json.dumps(metrics))
    common.check_metrics(on_disk)
    assert on_disk["size"] == "tiny"
    assert on_disk["figures"], "every experiment saves at least one PNG"
    for fig in on_disk["figures"]:
        data = (out / metrics["name"] / fig).read_bytes()
        assert data[:8] == PNG_MAGIC and len(data) > 1000
    assert on_disk["table"].startswith("|")
    assert on_disk["wall_time_s"] > 0


# ---- every experiment that exists, through run_all ---------------------------------------


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("results")
    # Only the seed walkthrough goes through the driver here: every other experiment
    # has its own tiny-size test (tests/test_experiments_<name>.py), and running them
    # twice would double the slowest part of CI.
    names = run_all.available(["seed_walkthrough"])
    result = run_all.main(["--tiny", "--seeds", "3", "--out", str(out), "--only", ",".join(names)])
    return out, names, result


@pytest.mark.slow
def test_run_all_runs_the_seed_walkthrough_and_reports(tiny_run):
    out, names, result = tiny_run
    assert "seed_walkthrough" in names
    assert result["failed"] == []
    assert [r["name"] for r in result["records"]] == names
    for record in result["records"]:
        assert record["status"] == "ok", record["error"]
        assert_valid_output(out, record["metrics"])
        assert record["metrics"]["seeds"] == [0, 1, 2]


@pytest.mark.slow
def test_report_only_rebuilds_the_report_from_metrics_on_disk(tiny_run):
    out, names, result = tiny_run
    before = (out / "REPORT.md").read_text()
    rebuilt = run_all.main(["--tiny", "--out", str(out), "--report-only"])
    text = (out / "REPORT.md").read_text()
    try:
        assert rebuilt["failed"] == []
        by_name = {r["name"]: r for r in rebuilt["records"]}
        assert set(by_name) == set(run_all.REGISTRY)
        for name in run_all.REGISTRY:  # only the walkthrough was run here
            assert by_name[name]["status"] == ("ok" if name in names else "skipped")
        assert text.splitlines()[2].startswith("Assembled by `python experiments/run_all.py")
        stamp = by_name["seed_walkthrough"]["metrics"]["timestamp"]
        assert f"seed_walkthrough {stamp}" in text
        # the experiment's own section is the same as in the report of its run
        section = before[before.index("## seed_walkthrough") :]
        assert section.split("\n## ")[0] in text
    finally:
        (out / "REPORT.md").write_text(before)


@pytest.mark.slow
def test_report_links_tables_figures_and_claims(tiny_run):
    out, names, result = tiny_run
    report = (out / "REPORT.md").read_text()
    assert result["report"] == str(out / "REPORT.md")
    assert "## Claims vs what we measured" in report
    for record in result["records"]:
        m = record["metrics"]
        assert f"## {m['name']}" in report
        assert m["table"] in report
        for fig in m["figures"]:
            assert f"]({m['name']}/{fig})" in report
        for c in m["claims"]:
            assert c["claim"].replace("|", "\\|") in report
    assert (
        "| experiment | claim | rule (fixed before the run) | measured (95% interval) | verdict |"
        in report
    )


@pytest.mark.slow
def test_seed_walkthrough_facts(tiny_run):
    out, _, _ = tiny_run
    m = json.loads((out / "seed_walkthrough" / "metrics.json").read_text())
    assert set(m["figures"]) >= {"T_heatmap.png", "backward.png"}
    seq = m["numbers"]["sequences"]
    x, w = [1, 2, 3, 4], [5, 6, 7]
    for mode in ("full", "valid", "same"):
        assert seq[f"convolve_{mode}"]["convjax"] == np.convolve(x, w, mode).tolist()
        assert seq[f"correlate_{mode}"]["convjax"] == np.correlate(x, w, mode).tolist()
    assert seq["conv1d_valid_flip_true"] == [34, 52]
    assert seq["conv1d_valid_flip_false"] == [38, 56]
    dense = m["numbers"]["dense"]
    # the full-convolution matrix: column i holds w shifted down by i (numpy reference)
    t = np.array([np.convolve(np.eye(4)[i], w, "full") for i in range(4)]).T
    assert dense["full_convolution"]["T"] == t.tolist()
    assert dense["valid_cross_correlation"]["T"] == [[5, 6, 7, 0], [0, 5, 6, 7]]
    assert dense["full_convolution"]["structural_zeros"] == 12
    feats = m["numbers"]["feature_maps"]
    assert feats["relu"] == np.maximum(np.convolve(x, w) - 30, 0).tolist()
    two = np.array(feats["two_channels"])
    assert two.shape == (6, 2)
    assert two[:, 1].tolist() == np.convolve(x, [1, 0, -1]).tolist()
    # backward pass: grad of w[k] = sum_o r[o] * x[o - k], r the residual (numpy reference)
    back = m["numbers"]["backward"]
    r = np.convolve(x, np.subtract(w, [4, 6, 9]))
    expected = [sum(r[o] * x[o - k] for o in range(k, k + 4)) for k in range(3)]
    summed = [row["sum_dense_grad_over_copies"] for row in back["per_weight"]]
    assert summed == expected
    np.testing.assert_allclose(
        [row["grad_autodiff"] for row in back["per_weight"]], expected, rtol=1e-6
    )
    assert [row["copies"] for row in back["per_weight"]] == [4, 4, 4]
    assert back["dense_grad_abs_sum_at_structural_zeros"] > 0
    # 2-D: scipy's correlate2d as the reference for the output; the 4x16 matrix from
    # its definition T[(i, j), (p, q)] = w[p - i, q - j]; each weight has 4 copies
    img = m["numbers"]["image"]
    x2, w2 = np.arange(1, 17).reshape(4, 4), np.arange(1, 10).reshape(3, 3)
    assert img["conv2d"] == scipy.signal.correlate2d(x2, w2, "valid").tolist()
    t2 = np.zeros((2, 2, 4, 4), int)
    for i, j in np.ndindex(2, 2):
        t2[i, j, i : i + 3, j : j + 3] = w2
    assert img["T"] == t2.reshape(4, 16).tolist()
    assert [row["copies"] for row in img["per_weight"]] == [4] * 9
    assert "T2_heatmap.png" in m["figures"]
    assert all(c["holds"] is True for c in m["claims"])


# ---- run_all with a fake registry: skipped, failed and ok experiments --------------------


FAKE_OK = '''"""Fake experiment: writes one figure and one number."""
import common
from convjax import stats
import matplotlib.pyplot as plt


def main(argv=None):
    args = common.make_parser(__doc__).parse_args(argv)
    run = common.start_run("fake_ok", args, description=__doc__)
    fig, ax = plt.subplots()
    ax.plot([0, 1], [0, 1])
    run.save_figure(fig, "line.png")
    return run.finish(config={"size": run.size}, numbers={"answer": 42.0},
                      table=common.markdown_table(["a"], [[1.5]]),
                      claims=[common.claim("lines are straight", "slope 1", True),
                              common.claim("more data helps", "cannot tell", None)])
'''

FAKE_BOOM = '''"""Fake experiment that fails."""
def main(argv=None):
    raise RuntimeError("boom at tiny size")
'''


def test_run_all_skips_missing_reports_failures(tmp_path, monkeypatch):
    scripts = tmp_path / "scripts"
    scripts.mkdir()
    (scripts / "fake_ok.py").write_text(FAKE_OK)
    (scripts / "fake_boom.py").write_text(FAKE_BOOM)
    monkeypatch.syspath_prepend(str(scripts))
    monkeypatch.setattr(run_all, "HERE", scripts)
    monkeypatch.setattr(run_all, "REGISTRY", ("fake_ok", "fake_missing", "fake_boom"))
    out = tmp_path / "out"
    result = run_all.main(["--tiny", "--out", str(out), "--seeds", "2"])
    status = {r["name"]: r["status"] for r in result["records"]}
    assert status == {"fake_ok": "ok", "fake_missing": "skipped", "fake_boom": "failed"}
    assert result["failed"] == ["fake_boom"]
    assert run_all.available() == ["fake_ok", "fake_boom"]
    ok = result["records"][0]["metrics"]
    assert ok["seeds"] == [0, 1] and ok["numbers"] == {"answer": 42.0}
    assert ok["config"] == {"size": "tiny"}
    assert_valid_output(out, ok)
    report = (out / "REPORT.md").read_text()
    assert "| fake_missing | skipped (not written yet) |" in report
    assert "RuntimeError: boom at tiny size" in report
    assert "| fake_ok | lines are straight | exact check | slope 1 | holds |" in report
    assert "| fake_ok | more data helps | exact check | cannot tell | undecided |" in report
    assert "![fake_ok: line.png](fake_ok/line.png)" in report
    with pytest.raises(SystemExit):
        run_all.main(["--only", "no_such_experiment", "--out", str(out)])


# ---- common.py helpers ------------------------------------------------------------------


def test_parser_sizes_and_seeds():
    p = common.make_parser("Title line.\n\nMore.")
    a = p.parse_args([])
    assert (a.quick, a.tiny, a.out, a.seeds) == (False, False, "results", None)
    assert common.DEFAULT_SEEDS["full"] >= 10
    assert common.size_of(a) == "full"
    assert common.size_of(p.parse_args(["--quick"])) == "quick"
    assert common.size_of(p.parse_args(["--tiny"])) == "tiny"
    assert common.size_of(p.parse_args(["--tiny", "--quick"])) == "tiny"
    assert p.parse_args(["--seeds", "5"]).seeds == 5
    with pytest.raises(SystemExit):
        p.parse_args(["--seeds", "0"])
    assert common.pick("quick", tiny=1, quick=2, full=3) == 2


def test_seed_keys_vmap():
    keys = common.seed_keys([0, 1, 2])
    assert keys.shape == (3,)
    draws = jax.vmap(lambda k: jax.random.normal(k, (2,)))(keys)
    np.testing.assert_array_equal(draws[1], jax.random.normal(jax.random.key(1), (2,)))


def test_markdown_table_and_claims():
    t = common.markdown_table(["a", "b"], [[1, 0.123456], ["x|y", None]], fmt=".3g")
    assert t.splitlines() == ["| a | b |", "|---|---|", "| 1 | 0.123 |", "| x\\|y | None |"]
    with pytest.raises(ValueError, match=r"markdown_table: row 0 has 1 cells, expected 2"):
        common.markdown_table(["a", "b"], [[1]])
    assert common.claim("c", "m", np.bool_(True)) == {
        "claim": "c",
        "measured": "m",
        "holds": True,
        "verdict": "holds",
        "rule": "exact check",
        "interval": None,
    }
    assert common.claim("c", "m", None)["verdict"] == "undecided"
    c = stats.Claim("lower than 1", "x", "mean", "below", 1.0)
    for values, verdict, holds in (
        ([0.1, 0.2, 0.15], "holds", True),
        ([2.0, 2.1, 1.9], "fails", False),
        ([0.5, 1.5, 1.0], "undecided", None),
    ):
        row = common.verdict_claim(stats.evaluate(c, values), "context")
        assert (row["verdict"], row["holds"]) == (verdict, holds)
        assert row["rule"] == "mean < 1" and row["measured"].endswith("; context")
        assert set(row["interval"]) >= {"estimate", "low", "high", "level", "method", "n"}
    strict = stats.Claim("lower than 1", "x", "mean", "below", 1.0, level=0.995)
    assert (
        "(99.5% t, n=3)"
        in common.verdict_claim(stats.evaluate(strict, [0.1, 0.2, 0.15]))["measured"]
    )
    d = common.ci([1.0, 2.0, 3.0, 4.0])
    assert common.fmt_ci(d) == "2.5 [0.446, 4.55]"
    d = common.ci([1.0, 2.0, 3.0], censored=[False, True, False])
    assert common.fmt_ci(d) == "≥ 2 [-0.484, ∞)"
    with pytest.raises(TypeError, match=r"claim: `holds` must be True, False or None, got 'yes'"):
        common.claim("c", "m", "yes")


def test_to_jsonable_and_check_metrics():
    obj = {
        "a": np.arange(3),
        "b": jax.numpy.ones(2),
        "c": (np.float32(1.5), math.nan),
        "d": {1: np.int64(4), "e": np.bool_(False)},
        "p": Path("x/y.png"),
    }
    assert common.to_jsonable(obj) == {
        "a": [0, 1, 2],
        "b": [1.0, 1.0],
        "c": [1.5, None],
        "d": {"1": 4, "e": False},
        "p": "x/y.png",
    }
    with pytest.raises(TypeError, match=r"to_jsonable: cannot store a object"):
        common.to_jsonable(object())
    good = {k: None for k in common.METRICS_KEYS}
    with pytest.raises(ValueError, match=r"check_metrics: `name` must be"):
        common.check_metrics(good)
    with pytest.raises(ValueError, match=r"check_metrics: missing keys \['wall_time_s'\]"):
        common.check_metrics({k: None for k in common.METRICS_KEYS[:-1]})
