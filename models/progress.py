"""A one-line progress bar with the running loss and steps per second.

Drawn only on a terminal, and not with `quiet`; lines printed through `ProgressBar.print`
clear the bar first, so the log and the bar never mix. No dependency.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from typing import Any, TextIO


class ProgressBar:
    def __init__(self, total: int, label: str = "", *, quiet: bool = False,
                 stream: TextIO | None = None, width: int = 30, interval: float = 0.1):
        self.total, self.label, self.quiet = total, label, quiet
        self.stream = sys.stdout if stream is None else stream
        self.drawn = not quiet and _is_terminal(self.stream)
        self.width, self.interval = width, interval
        self.step, self.loss = 0, float("nan")
        self._start = self._last_draw = time.perf_counter()
        self._visible = False

    def __enter__(self) -> ProgressBar:
        return self

    def __exit__(self, *exc: Any) -> None:
        self._clear()

    def update(self, step: int, loss: float) -> None:
        """Record that `step` of `total` steps is done at `loss`; redraw at most every
        `interval` seconds (and at the last step)."""
        self.step, self.loss = step, loss
        now = time.perf_counter()
        if self.drawn and (now - self._last_draw >= self.interval or step == self.total):
            self._last_draw = now
            self._draw(now)

    def print(self, line: str) -> None:
        """Print a log line (unless quiet) above the bar."""
        if self.quiet:
            return
        self._clear()
        print(line, file=self.stream, flush=True)
        if self.drawn and self.step:
            self._draw(time.perf_counter())

    def chain(self, callback: Callable[[Any], Any] | None = None) -> Callable[[Any], None]:
        """A training callback that moves the bar, then runs `callback`: a line it prints
        redraws the bar at this step, not the one before."""

        def on_step(progress: Any) -> None:
            self.update(progress.step, progress.loss)
            if callback is not None:
                callback(progress)

        return on_step

    def render(self, now: float) -> str:
        done = self.step / self.total if self.total else 1.0
        filled = int(round(self.width * done))
        rate = self.step / max(now - self._start, 1e-9)
        return (f"{self.label} [{'#' * filled}{'.' * (self.width - filled)}] "
                f"{self.step}/{self.total}  loss {self.loss:.4g}  {rate:.0f} steps/s")

    def _draw(self, now: float) -> None:
        self.stream.write("\r" + self.render(now) + "\x1b[K")
        self.stream.flush()
        self._visible = True

    def _clear(self) -> None:
        if self._visible:
            self.stream.write("\r\x1b[K")
            self.stream.flush()
            self._visible = False


def _is_terminal(stream: TextIO) -> bool:
    isatty = getattr(stream, "isatty", None)
    return bool(isatty and isatty())
