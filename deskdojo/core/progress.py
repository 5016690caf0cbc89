"""Progress lines for long phases (recording demos, SFT, held-out evaluation, benches, the
image build): what is happening, done/total, rate and time left, so a person watching a
terminal or a CI log sees the job move.

On a terminal a line is redrawn in place (``\\r``); anywhere else (a pipe, a CI log) it is
written as a plain line now and then (at most every ``PLAIN_INTERVAL_S``), so logs stay
short, and again every ``HEARTBEAT_S`` while nothing moves, so a long single step still
shows that the job is alive. Progress goes to stderr; ``--quiet`` (``set_quiet``) silences
it, not messages, errors or results. Standard library only.
"""

from __future__ import annotations

import sys
import threading
import time
import weakref
from typing import Callable, TextIO

BAR_WIDTH = 20
TTY_INTERVAL_S = 0.2
PLAIN_INTERVAL_S = 10.0
HEARTBEAT_S = 20.0
"""In a log, a line that has not moved for this long is written again with its elapsed
time: no phase stays silent for more than this (plus one tick)."""
TICK_S = 1.0
"""How often the heartbeat thread looks (and a terminal's elapsed time is redrawn)."""

_quiet = False


def set_quiet(quiet: bool) -> None:
    """``deskdojo --quiet``: no progress lines from here on (results and errors still print)."""
    global _quiet
    _quiet = bool(quiet)


def is_quiet() -> bool:
    return _quiet


def say(message: str, *, stream: TextIO | None = None) -> None:
    """One progress message on a line of its own (stderr, flushed), unless quiet."""
    if _quiet:
        return
    out = stream if stream is not None else sys.stderr
    out.write(message + "\n")
    out.flush()


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
    """``label [####....]  done/total unit  rate  ETA  info``, for one phase.

    ``total`` None is a phase of unknown size: the line says how long it has run.
    ``deadline`` (a ``clock()`` value) is the phase's time limit: when it comes before
    the rate says the work will end, the line says the phase stops at the limit instead.
    ``start`` is where a resumed phase begins (the rate counts only the work done now).
    ``heartbeat_s`` (None: off) starts a thread that redraws the line while nothing
    moves: every ``TICK_S`` on a terminal, after ``heartbeat_s`` of silence in a log.
    ``delay_s``: nothing is drawn before the phase has run this long (short phases leave
    no line). ``redraw`` False: every draw is a line of its own, on a terminal too (an
    outer line, e.g. a bench's cases, whose steps draw progress lines of their own).
    ``transient``: on a terminal, ``close`` erases the line instead of ending it.
    Updates may come from several threads. Use it as a context manager, or ``close`` it.
    """

    def __init__(self, label: str, total: int | None, *, unit: str = "", stream: TextIO | None = None,
                 start: int = 0, deadline: float | None = None, plain_every_s: float = PLAIN_INTERVAL_S,
                 heartbeat_s: float | None = HEARTBEAT_S, delay_s: float = 0.0, redraw: bool = True,
                 transient: bool = False, clock: Callable[[], float] = time.monotonic):
        self.label = label
        self.total = None if total is None else max(0, total)
        self.unit = unit
        self.stream = stream if stream is not None else sys.stderr
        self.silent = _quiet
        self.tty = redraw and bool(getattr(self.stream, "isatty", lambda: False)())
        self.deadline = deadline
        self.plain_every_s = plain_every_s
        self.heartbeat_s = heartbeat_s
        self.delay_s = delay_s
        self.transient = transient
        self.clock = clock
        self.started = clock()
        self.start = start
        self.done = start
        self.info = ""
        self.closed = False
        self._drawn_at: float | None = None
        self._drawn_done = -1
        self._width = 0
        self._lock = threading.RLock()
        self._stop = threading.Event()
        if heartbeat_s is not None and not self.silent:
            threading.Thread(target=_beat, args=(weakref.ref(self), self._stop), daemon=True,
                             name=f"progress-{label[:20]}").start()

    def __enter__(self) -> "ProgressLine":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def text(self) -> str:
        now = self.clock()
        elapsed = now - self.started
        unit = f" {self.unit}" if self.unit else ""
        if self.total is None:
            parts = [self.label]
            if self.done or self.unit:
                parts.append(f"{self.done}{unit}")
            if self.closed:
                parts.append(f"done in {duration(elapsed)}")
            elif elapsed >= 1:
                parts.append(f"{duration(elapsed)} so far")
            if self.info:
                parts.append(self.info)
            return "  ".join(parts)
        fraction = self.done / self.total if self.total else 1.0
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
        elif elapsed >= 1:
            parts.append(f"{duration(elapsed)} so far")
        if self.info:
            parts.append(self.info)
        return "  ".join(parts)

    def update(self, done: int, *, info: str | None = None) -> None:
        """Set the count (and the trailing ``info``, e.g. the loss); redraw when due."""
        with self._lock:
            now = self.clock()
            self.done = done
            if info is not None:
                self.info = info
            if self.silent or self.closed or now - self.started < self.delay_s:
                return
            interval = TTY_INTERVAL_S if self.tty else self.plain_every_s
            finished = self.total is not None and done >= self.total
            if self._drawn_at is None or now - self._drawn_at >= interval or (self.tty and finished):
                self._draw(now)

    def advance(self, count: int = 1, *, info: str | None = None) -> None:
        with self._lock:
            self.update(self.done + count, info=info)

    def heartbeat(self) -> None:
        """Redraw if the line has been still too long: on a terminal every ``TICK_S`` (the
        elapsed time moves), in a log after ``heartbeat_s`` without a line. The thread
        calls this every ``TICK_S``; tests call it with their own clock."""
        with self._lock:
            if self.silent or self.closed or self.heartbeat_s is None:
                return
            now = self.clock()
            if now - self.started < self.delay_s:
                return
            since = now - (self._drawn_at if self._drawn_at is not None else self.started)
            if (self.tty and since >= TICK_S) or (not self.tty and (self._drawn_at is None or since >= self.heartbeat_s)):
                self._draw(now)

    def note(self, message: str) -> None:
        """A line of its own, which does not break up the progress line (written when quiet
        too: a note is a message, not progress)."""
        with self._lock:
            self._end_line()
            self.stream.write(message + "\n")
            self.stream.flush()

    def close(self, note: str | None = None) -> None:
        """Draw the last state (a plain stream gets it too, if not yet written) and end the
        line; a transient line on a terminal is erased instead. Closing twice does nothing."""
        with self._lock:
            if self.closed:
                return
            self._stop.set()
            drawn = self._drawn_at is not None
            self.closed = True
            if not self.silent and (drawn or self.delay_s <= 0):
                if self.tty and self.transient:
                    self._erase()
                elif self.tty or self._drawn_done != self.done or self.total is None:
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

    def _erase(self) -> None:
        if self._width:
            self.stream.write("\r" + " " * self._width + "\r")
            self._width = 0

    def _end_line(self) -> None:
        if self.tty and self._width:
            self.stream.write("\n")
            self._width = 0


def _beat(ref: "weakref.ref[ProgressLine]", stop: threading.Event) -> None:
    """The heartbeat thread: holds the line only weakly, so a line nobody closed and
    nobody holds any more stops beating."""
    while not stop.wait(TICK_S):
        line = ref()
        if line is None:
            return
        try:
            line.heartbeat()
        except (OSError, ValueError):  # the stream went away (a closed pipe, a test's buffer)
            return
        del line


def activity(label: str, *, stream: TextIO | None = None, delay_s: float = 0.0) -> ProgressLine:
    """A phase of unknown size (starting sandboxes, loading a model, one long build step):
    ``label`` now (or, with ``delay_s``, only once it has run that long), ``label  45s so
    far`` while it lasts, ``label  done in 1m05s`` at the end."""
    line = ProgressLine(label, None, stream=stream, delay_s=delay_s)
    line.update(0)
    return line


class LineStream:
    """A stream that hands each whole line written to it to ``say`` (a log function), so a
    progress line can go where a caller's log goes. Not a terminal: lines are plain."""

    def __init__(self, say: Callable[[str], None]):
        self.say = say
        self._buffer = ""

    def write(self, text: str) -> int:
        self._buffer += text
        *lines, self._buffer = self._buffer.split("\n")
        for line in lines:
            self.say(line)
        return len(text)

    def flush(self) -> None:
        pass

    def isatty(self) -> bool:
        return False
