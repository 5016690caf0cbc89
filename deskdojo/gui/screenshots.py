"""``deskdojo panel --screenshot``: render each view of a run to a PNG and exit (offscreen)."""

from __future__ import annotations

import time
from pathlib import Path

from PyQt6.QtWidgets import QApplication

from deskdojo.gui.window import TAB_NAMES, MainWindow

SETTLE_S = 0.4


def settle(seconds: float = SETTLE_S) -> None:
    """Let timers, queued signals and repaints run for a while."""
    app = QApplication.instance()
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        app.processEvents()
        time.sleep(0.01)


def render_views(window: MainWindow, out_dir: str | Path) -> list[Path]:
    """Show each tab in turn and save it as ``<out_dir>/<n>-<tab>.png``; returns the paths."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    window.show()
    settle()
    paths = []
    for number, name in enumerate(TAB_NAMES):
        window.tabs.setCurrentIndex(number)
        window.refresh_data(all_views=True)
        if window.tabs.currentWidget() is window.trajectories:
            window.trajectories.show_step(1)  # a step with an action on it, when there is one
        settle()
        path = out / f"{number + 1}-{name.lower()}.png"
        if not window.grab().save(str(path)):
            raise OSError(f"could not write {path}")
        paths.append(path)
    return paths
