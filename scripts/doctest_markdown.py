"""The Python examples of README.md and docs/*.md, as doctests.

Run by ``pytest --doctest-modules scripts/doctest_markdown.py`` (``scripts/check.sh`` does).
Each Markdown file becomes one doctest, so the examples of a file run in order as one
session, the way a reader types them. Only ```python fences that hold a ``>>>`` prompt
count; every other line is blanked, so a closing fence is never read as expected output
and the numbered lines of a failure report are the Markdown file's own line numbers (the
location line names this script; the test's name names the Markdown file). The option
flags are pytest's ``doctest_optionflags`` in pyproject.toml.
"""

from __future__ import annotations

import pathlib
import types

ROOT = pathlib.Path(__file__).resolve().parent.parent


def doctest_text(markdown: str) -> str:
    """The ``>>>`` examples of ```python fences, every other line blanked."""
    out: list[str] = []
    block: list[str] | None = None
    for line in markdown.splitlines():
        stripped = line.strip()
        if block is None:
            out.append("")
            if stripped in ("```python", "```py", "```pycon"):
                block = []
        elif stripped.startswith("```"):
            keep = any(b.lstrip().startswith(">>>") for b in block)
            out.extend(block if keep else [""] * len(block))
            out.append("")
            block = None
        else:
            block.append(line)
    if block is not None:
        raise ValueError("doctest_text: a ```python fence is never closed")
    return "\n".join(out) + "\n"


def markdown_files() -> list[pathlib.Path]:
    """README.md and docs/*.md, those that hold a ``>>>`` example."""
    files = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
    return [f for f in files if f.is_file() and ">>>" in doctest_text(f.read_text())]


def _as_doctest(path: pathlib.Path) -> types.ModuleType:
    # doctest gives a module's docstring line offset 0 (a plain string gets no line numbers).
    holder = types.ModuleType(path.name)
    holder.__doc__ = doctest_text(path.read_text())
    return holder


__test__ = {str(f.relative_to(ROOT)): _as_doctest(f) for f in markdown_files()}
