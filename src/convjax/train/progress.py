"""Progress display for :func:`convjax.train.fit`: the bar is tqdm's; without tqdm,
a plain line per block.

tqdm is optional (runtime dependencies are jax, jaxlib and optax only), so the
fallback is one line of text per block (``eval_every`` steps)::

    fit [##########----------] 50/100 1.2e+03 step/s loss=0.12 eval_acc=0.9

=========================  ==========================  ===============================
``progress``               stream is a terminal        stream is not a terminal
=========================  ==========================  ===============================
``"auto"`` (or ``True``)   tqdm; plain lines without   nothing (logs, CI)
                           tqdm
``"tqdm"``                 tqdm (ValueError without    tqdm (ValueError without it)
                           it)
``"text"``                 the line, redrawn in place  a plain line per block
``"none"`` (or ``False``)  nothing                     nothing
=========================  ==========================  ===============================
"""

from __future__ import annotations

import sys
import time

from convjax import _checks

MODES = ("auto", "tqdm", "text", "none")


def progress_mode(fn: str, progress) -> str:
    """Normalises ``progress`` (bool or a mode name) to one of :data:`MODES`."""
    if progress is True:
        return "auto"
    if progress is False or progress is None:
        return "none"
    return _checks.check_choice(fn, "progress", progress, MODES)


def format_metrics(metrics: dict[str, float]) -> str:
    return " ".join(f"{k}={v:.4g}" for k, v in metrics.items())


class _Null:
    def update(self, step: int, metrics: dict[str, float]) -> None:
        del step, metrics

    def close(self) -> None:
        pass


class _Tqdm:
    def __init__(self, total: int, initial: int, desc: str, stream):
        try:
            import tqdm
        except ModuleNotFoundError:
            raise ValueError(
                f"{desc}: `progress`='tqdm' needs the tqdm package, which is not installed "
                "(pip install tqdm, or use progress='text')."
            ) from None

        self._bar = tqdm.tqdm(
            total=total, initial=initial, desc=desc, file=stream, unit="step", dynamic_ncols=True
        )
        self._step = initial

    def update(self, step: int, metrics: dict[str, float]) -> None:
        self._bar.set_postfix_str(format_metrics(metrics), refresh=False)
        self._bar.update(step - self._step)
        self._step = step

    def close(self) -> None:
        self._bar.close()


class TextBar:
    """One line per update: ``desc [#####-----] 50/100 1.2e+03 step/s loss=0.12``;
    ``redraw=True`` rewrites it in place (``\\r``) instead of starting a new line."""

    def __init__(
        self,
        total: int,
        initial: int = 0,
        desc: str = "fit",
        stream=None,
        width=20,
        *,
        redraw: bool | None = None,
    ):
        self.total, self.desc, self.width = total, desc, width
        self.stream = stream if stream is not None else sys.stderr
        self._tty = _isatty(self.stream) if redraw is None else bool(redraw)
        self._start_step, self._start_time = initial, time.perf_counter()
        self._drawn = False

    def update(self, step: int, metrics: dict[str, float]) -> None:
        done = int(self.width * step / self.total) if self.total else self.width
        elapsed = time.perf_counter() - self._start_time
        rate = (step - self._start_step) / elapsed if elapsed > 0 else float("nan")
        line = (
            f"{self.desc} [{'#' * done}{'-' * (self.width - done)}] {step}/{self.total} "
            f"{rate:.3g} step/s {format_metrics(metrics)}"
        ).rstrip()
        if self._tty:
            self.stream.write("\r" + line + "\x1b[K")
        else:
            self.stream.write(line + "\n")
        self.stream.flush()
        self._drawn = True

    def close(self) -> None:
        if self._tty and self._drawn:
            self.stream.write("\n")
            self.stream.flush()


def _isatty(stream) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):
        return False


def _have_tqdm() -> bool:
    try:
        import tqdm  # noqa: F401
    except ImportError:
        return False
    return True


def make_progress(mode: str, total: int, *, initial: int = 0, desc: str = "fit", stream=None):
    """A progress object with ``update(step, metrics)`` and ``close()``.

    Args:
      mode: one of :data:`MODES` (already normalised by :func:`progress_mode`).
      total: the final step.
      initial: the step the run starts from (non-zero after a resume).
      desc: the label in front of the bar.
      stream: where to write (default ``sys.stderr``).

    Returns:
      See the table in the module docstring: tqdm's bar, a :class:`TextBar`, or an
      object that draws nothing.

    Raises:
      ValueError: ``mode="tqdm"`` without tqdm installed (the message names ``desc``).
    """
    stream = stream if stream is not None else sys.stderr
    tty = _isatty(stream)
    if mode == "none" or (mode == "auto" and not tty):
        return _Null()
    if mode == "tqdm" or (mode == "auto" and _have_tqdm()):
        return _Tqdm(total, initial, desc, stream)
    # "text" (redrawn on a terminal), or "auto" on a terminal without tqdm: plain lines
    return TextBar(total, initial, desc, stream, redraw=tty and mode == "text")
