"""A progress line for long phases (recording demos, SFT): what is happening, done/total,
rate and time left, so a person watching a terminal or a CI log sees the job move.

On a terminal the line is redrawn in place (``\\r``); anywhere else (a pipe, a CI log)
it is written as a plain line now and then, so logs stay short. Standard library only.
"""

from __future__ import annotations

import sys
import threading
import time
from typing import Callable, TextIO

BAR_WIDTH = 20
TTY_INTERVAL_S = 0.2
PLAIN_INTERVAL_S = 10.0


def bar(fraction: float, width: int = BAR_WIDTH) -> str:
    """``[#####...............]``: the bar the evolve progress line draws too."""
    filled = int(min(1.0, max(0.0, fraction)) * width)
    return "[" + "#" * filled + "." * (width - filled) + "]"


def duration(seconds: float) -> str:
    """``45s``, ``3m05s``, ``1h02m``: short enough for a progress line."""
    seconds = max(0, int(round(seconds)))
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"


class ProgressLine:
    """``label [####....]  done/total unit  rate  ETA``, for one phase of known size.

    ``deadline`` (a ``clock()`` value) is the phase's time limit: when it comes before
    the rate says the work will end, the line says the phase stops at the limit instead.
    ``start`` is where a resumed phase begins (the rate counts only the work done now).
    Updates may come from several threads.
    """

    def __init__(self, label: str, total: int, *, unit: str = "", stream: TextIO | None = None,
                 start: int = 0, deadline: float | None = None, plain_every_s: float = PLAIN_INTERVAL_S,
                 clock: Callable[[], float] = time.monotonic):
        self.label = label
        self.total = max(0, total)
        self.unit = unit
        self.stream = stream if stream is not None else sys.stderr
        self.tty = bool(getattr(self.stream, "isatty", lambda: False)())
        self.deadline = deadline
        self.plain_every_s = plain_every_s
        self.clock = clock
        self.started = clock()
        self.start = start
        self.done = start
        self.info = ""
        self._drawn_at: float | None = None
        self._drawn_done = -1
        self._width = 0
        self._lock = threading.Lock()

    def text(self) -> str:
        now = self.clock()
        elapsed = now - self.started
        fraction = self.done / self.total if self.total else 1.0
        unit = f" {self.unit}" if self.unit else ""
        parts = [f"{self.label} {bar(fraction)} {self.done}/{self.total}{unit}"]
        made = self.done - self.start
        rate = made / elapsed if elapsed > 0 and made > 0 else None
        if rate is not None:
            parts.append(f"{rate:.2f}/s" if rate >= 1 else f"{1 / rate:.1f} s each")
        left = (self.total - self.done) / rate if rate is not None else None
        limit_left = self.deadline - now if self.deadline is not None else None
        if self.done >= self.total:
            parts.append(f"done in {duration(elapsed)}")
        elif limit_left is not None and (left is None or limit_left < left):
            parts.append(f"time limit in {duration(limit_left)}" if limit_left > 0 else "time limit reached")
        elif left is not None:
            parts.append(f"ETA {duration(left)}")
        if self.info:
            parts.append(self.info)
        return "  ".join(parts)

    def update(self, done: int, *, info: str | None = None) -> None:
        """Set the count (and the trailing ``info``, e.g. the loss); redraw when due."""
        with self._lock:
            self.done = done
            if info is not None:
                self.info = info
            now = self.clock()
            interval = TTY_INTERVAL_S if self.tty else self.plain_every_s
            if self._drawn_at is None or now - self._drawn_at >= interval or (self.tty and done >= self.total):
                self._draw(now)

    def advance(self, count: int = 1, *, info: str | None = None) -> None:
        with self._lock:
            done = self.done + count
        self.update(done, info=info)

    def note(self, message: str) -> None:
        """A line of its own, which does not break up the progress line."""
        with self._lock:
            self._end_line()
            self.stream.write(message + "\n")
            self.stream.flush()

    def close(self, note: str | None = None) -> None:
        """Draw the last state (a plain stream gets it too, if not yet written) and end the line."""
        with self._lock:
            if self.tty or self._drawn_done != self.done:
                self._draw(self.clock())
            self._end_line()
            if note:
                self.stream.write(note + "\n")
            self.stream.flush()

    def _draw(self, now: float) -> None:
        text = self.text()
        if self.tty:
            self.stream.write("\r" + text + " " * max(0, self._width - len(text)))
            self._width = len(text)
        else:
            self.stream.write(text + "\n")
        self.stream.flush()
        self._drawn_at = now
        self._drawn_done = self.done

    def _end_line(self) -> None:
        if self.tty and self._width:
            self.stream.write("\n")
            self._width = 0
