"""Build convjax's API reference from its docstrings with pdoc; any warning is an error.

Usage::

    python scripts/build_api_docs.py            # build into a temporary folder, then remove it
    python scripts/build_api_docs.py -o api     # keep the HTML in ./api (open api/index.html)

Exits non-zero, listing them, when importing convjax or rendering its docs warns: a type
annotation that cannot be resolved, a broken docstring, a deprecation in an import. Two
kinds of warning about annotations convjax did not write are let through, narrowly:

- for a ``NamedTuple`` defined in a module with ``from __future__ import annotations``,
  pdoc evaluates the annotations of the generated ``__init__`` in the wrong namespace and
  warns although they are fine (pdoc issue 765, open as of pdoc 16); passed only when the
  class it names really is a NamedTuple;
- a public name bound to another library's function (``DEFAULT_B_INIT =
  jax.nn.initializers.zeros``) whose annotations use names private to that library;
  passed only when the object's ``__module__`` is outside convjax.
"""

from __future__ import annotations

import argparse
import importlib
import pathlib
import re
import sys
import tempfile
import warnings

_ANNOTATION = re.compile(
    r"Error parsing type annotation .* for (?P<name>[\w.]+?)(?P<init>\.__init__)?\. "
    r"Import of [\w.]+ failed"
)


def _resolve(dotted: str) -> object | None:
    """The object a dotted name like ``convjax.train.FitResult`` names, or None."""
    parts = dotted.split(".")
    for cut in range(len(parts), 0, -1):
        try:
            obj: object = importlib.import_module(".".join(parts[:cut]))
        except ImportError:
            continue
        try:
            for attr in parts[cut:]:
                obj = getattr(obj, attr)
        except AttributeError:
            return None
        return obj
    return None


def is_foreign_annotation(message: str) -> bool:
    """Whether ``message`` warns about annotations that convjax did not write (see above)."""
    match = _ANNOTATION.match(message)
    if match is None:
        return False
    obj = _resolve(match["name"])
    if match["init"]:
        return isinstance(obj, type) and issubclass(obj, tuple) and hasattr(obj, "_fields")
    module = getattr(obj, "__module__", None)
    return isinstance(module, str) and module.split(".")[0] != "convjax"


def build(output: pathlib.Path) -> list[str]:
    """Render the API reference of ``convjax`` into ``output``; return the warnings."""
    import pdoc
    import pdoc.render

    pdoc.render.configure(docformat="google", search=True, show_source=True)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        pdoc.pdoc("convjax", output_directory=output)
    messages = [f"{w.category.__name__}: {w.message}" for w in caught]
    return [m for m in messages if not is_foreign_annotation(m.split(": ", 1)[1])]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("-o", "--output", type=pathlib.Path, help="keep the HTML here")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        output = args.output or pathlib.Path(tmp)
        problems = build(output)
        pages = sorted(output.rglob("*.html"))
        if not problems and not any(p.name == "convjax.html" for p in pages):
            problems.append("pdoc wrote no convjax.html")
    for problem in problems:
        print(f"build_api_docs: {problem}", file=sys.stderr)
    where = args.output or "a temporary folder"
    print(f"build_api_docs: {len(pages)} pages in {where}, {len(problems)} warnings")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
