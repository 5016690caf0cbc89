"""Polling for a condition in tests that drive real sandboxes, with one timeout message."""

from __future__ import annotations

import time
from typing import Any, Callable


def wait_for(probe: Callable[[], Any], timeout: float = 10.0, what: str = "condition", *,
             poll: float = 0.05) -> Any:
    """``probe()``'s first truthy value; AssertionError naming ``what`` after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while True:
        value = probe()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(poll)
