"""The progress display of convjax.train: tqdm's bar on a terminal, a plain line per
block without tqdm or off a terminal (train/progress.py)."""

from __future__ import annotations

import io
import sys

import pytest

from convjax.train import progress as prog


class Tty(io.StringIO):
    def isatty(self):
        return True


def _draw(mode, stream):
    bar = prog.make_progress(mode, 10, stream=stream)
    bar.update(5, {"loss": 0.5})
    bar.update(10, {"loss": 0.25})
    bar.close()
    return bar, stream.getvalue()


def test_auto_on_a_terminal_is_tqdm():
    tqdm = pytest.importorskip("tqdm")
    bar = prog.make_progress("auto", 10, stream=Tty())
    assert isinstance(bar._bar, tqdm.tqdm)
    bar.close()


def test_auto_on_a_terminal_without_tqdm_writes_a_plain_line_per_block(monkeypatch):
    monkeypatch.setitem(sys.modules, "tqdm", None)  # makes `import tqdm` fail
    bar, out = _draw("auto", Tty())
    assert isinstance(bar, prog.TextBar)
    lines = out.splitlines()
    assert "\r" not in out and len(lines) == 2
    assert lines[0].startswith("fit [##########----------] 5/10 ") and lines[0].endswith("loss=0.5")
    assert lines[1].startswith("fit [####################] 10/10 ")


def test_text_off_a_terminal_writes_a_plain_line_per_block():
    _, out = _draw("text", io.StringIO())
    assert "\r" not in out and len(out.splitlines()) == 2 and "10/10" in out


@pytest.mark.parametrize("mode", ["auto", "none"])
def test_nothing_off_a_terminal(mode):
    _, out = _draw(mode, io.StringIO())
    assert out == ""


def test_progress_modes_are_checked():
    assert prog.progress_mode("fit", True) == "auto"
    assert prog.progress_mode("fit", False) == "none"
    with pytest.raises(
        ValueError,
        match=r"fit: `progress` must be one of 'auto', 'tqdm', "
        r"'text', 'none', got 'bar'",
    ):
        prog.progress_mode("fit", "bar")


def test_tqdm_mode_without_tqdm_is_a_clear_error(monkeypatch):
    monkeypatch.setitem(sys.modules, "tqdm", None)
    with pytest.raises(ValueError, match=r"fit_many: `progress`='tqdm' needs the tqdm package"):
        prog.make_progress("tqdm", 10, stream=io.StringIO(), desc="fit_many")
