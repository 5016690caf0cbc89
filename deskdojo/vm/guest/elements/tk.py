"""The Tk source: the widget walks that running Tk apps write next to their state.

Each app built on the practice apps' harness (``apps/common.py``) walks its own widget
tree and writes ``$DESKDOJO_STATE_DIR/elements/<app>.json`` (``{"pid", "elements"}``)
whenever the walk changes; this source reads the files of apps still running. Reading
files, not Tk, keeps it fast and lets a hung app hang nobody.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

ELEMENTS_FOLDER = "elements"
MAX_FILE_BYTES = 4 * 1024 * 1024


def state_dir() -> Path:
    """Where apps write their state (as the guest server tells them: DESKDOJO_STATE_DIR)."""
    return Path(os.environ.get("DESKDOJO_STATE_DIR") or Path.home() / ".deskdojo" / "state")


def running(pid: Any) -> bool:
    """Whether ``pid`` is a live process (not a zombie waiting to be reaped)."""
    if isinstance(pid, bool) or not isinstance(pid, int) or pid <= 0:
        return False
    try:
        with open(f"/proc/{pid}/stat", "rb") as stat:
            return stat.read().rsplit(b")", 1)[1].split()[0] not in (b"Z", b"X")
    except (OSError, IndexError):
        return False


class TkSource:
    """Elements of the Tk apps that publish their walks (see the module docstring)."""

    name = "tk"

    def __init__(self, folder: Path | None = None) -> None:
        self._folder = folder

    @property
    def folder(self) -> Path:
        return (self._folder or state_dir()) / ELEMENTS_FOLDER

    def unavailable(self) -> str | None:
        return None  # no apps running is an empty answer, not an unusable source

    def read(self, *, deadline: float, grab: Any = None) -> list[dict[str, Any]]:
        found: list[dict[str, Any]] = []
        try:
            entries = sorted(os.scandir(self.folder), key=lambda entry: entry.name)
        except FileNotFoundError:
            return found
        for entry in entries:
            if not entry.name.endswith(".json") or entry.name.startswith("."):
                continue
            try:
                with open(entry.path, "rb") as handle:
                    data = json.loads(handle.read(MAX_FILE_BYTES))
            except (OSError, ValueError):
                continue  # being replaced, or cut: the next read sees the new file
            if isinstance(data, dict) and running(data.get("pid")) and isinstance(data.get("elements"), list):
                found.extend(e for e in data["elements"] if isinstance(e, dict))
        return found
