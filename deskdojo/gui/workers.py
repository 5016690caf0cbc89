"""Running blocking work (sandbox start, reset, actions, replay) off the UI thread.

``Tasks.submit(fn, on_done, on_error)`` runs ``fn`` on a worker and calls the callbacks
on the UI thread. A ``Tasks`` with one thread runs its jobs in submission order, which
is what a demonstration's actions need.
"""

from __future__ import annotations

import traceback
from typing import Any, Callable

from PyQt6.QtCore import QObject, QThreadPool, pyqtSignal

from deskdojo.core.errors import DeskdojoError


class _Relay(QObject):
    done = pyqtSignal(object)
    failed = pyqtSignal(str)


class Tasks(QObject):
    """A small thread pool whose results come back as UI-thread callbacks."""

    def __init__(self, parent: QObject | None = None, *, threads: int = 2):
        super().__init__(parent)
        self.pool = QThreadPool(self)
        self.pool.setMaxThreadCount(threads)
        self._relays: set[_Relay] = set()

    def submit(self, fn: Callable[[], Any], on_done: Callable[[Any], None] | None = None,
               on_error: Callable[[str], None] | None = None) -> None:
        relay = _Relay()
        self._relays.add(relay)

        def finish_ok(value: Any) -> None:
            self._relays.discard(relay)
            if on_done is not None:
                on_done(value)

        def finish_error(message: str) -> None:
            self._relays.discard(relay)
            if on_error is not None:
                on_error(message)

        relay.done.connect(finish_ok)
        relay.failed.connect(finish_error)

        def work() -> None:
            try:
                value = fn()
            except DeskdojoError as exc:
                relay.failed.emit(str(exc))
            except Exception as exc:  # a bug in a part must show in the panel, not kill it
                relay.failed.emit(f"{type(exc).__name__}: {exc}\n{traceback.format_exc(limit=4)}")
            else:
                relay.done.emit(value)

        self.pool.start(work)

    def pending(self) -> int:
        return len(self._relays)

    def wait(self, timeout_ms: int = 30000) -> bool:
        return self.pool.waitForDone(timeout_ms)
