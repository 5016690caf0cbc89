"""The panel's element overlay (key E): boxes, ids and roles drawn where the listing says,
on trajectory frames (the listing recorded next to the frame) and on live tiles (listings
fetched from a real xvfb sandbox off the UI thread); pressing E again removes them."""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

os.environ["QT_QPA_PLATFORM"] = "offscreen"

import pytest  # noqa: E402
from PyQt6.QtCore import Qt  # noqa: E402
from PyQt6.QtGui import QColor, QImage  # noqa: E402

from deskdojo.core.elements import Element, ElementList  # noqa: E402
from deskdojo.core.types import Task  # noqa: E402
from deskdojo.gui.overlay import ELEMENT_COLOURS  # noqa: E402
from deskdojo.gui.window import MainWindow, panel_settings  # noqa: E402

sys.path.insert(0, str(Path(__file__).parent))
from panel_fixtures import make_run  # noqa: E402

YELLOW = ELEMENT_COLOURS["click"]


def near(colour: QColor, want: QColor, tolerance: int = 40) -> bool:
    return all(abs(a - b) <= tolerance for a, b in ((colour.red(), want.red()), (colour.green(), want.green()),
                                                     (colour.blue(), want.blue())))


def edge_pixels(canvas, box: tuple[int, int, int, int]) -> tuple[list[QColor], QColor]:
    """The rendered canvas's pixels across the left edge of ``box`` (screen pixels) at its
    middle height, and one pixel well inside the box."""
    image: QImage = canvas.grab().toImage()
    rect = canvas.screen_rect()
    sx, sy = rect.width() / canvas.screen_size[0], rect.height() / canvas.screen_size[1]
    x, y, w, h = box
    wx, wy = rect.x() + x * sx, int(rect.y() + (y + h * 0.6) * sy)
    ratio = image.devicePixelRatio()
    across = [image.pixelColor(int((wx + dx) * ratio), int(wy * ratio)) for dx in range(-2, 3)]
    inside = image.pixelColor(int((wx + w * sx / 2) * ratio), int((rect.y() + (y + h * 0.75) * sy) * ratio))
    return across, inside


def test_trajectory_frames_show_the_listing_recorded_next_to_them(qtbot, tmp_path):
    run = make_run(tmp_path / "runs", trajectories=1, steps=2)
    folder = run.path / "trajectories" / run.trajectory_ids[0]
    box = (200, 150, 160, 90)
    listing = ElementList((Element(0, "frame", "deskdojo buttons", (0, 0, 640, 480)),
                           Element(1, "button", "Apple", box, frozenset({"enabled"}))), listing=7)
    (folder / "frames" / "0001.elements.json").write_text(json.dumps(listing.to_json()))
    win = MainWindow(run_dir=run.path, settings=panel_settings(tmp_path / "p.ini"), check_environment=False)
    qtbot.addWidget(win)
    win.resize(1200, 800)
    win.show()
    qtbot.waitUntil(win.isActiveWindow)  # shortcuts (E) act in the active window
    browser = win.trajectories
    win.tabs.setCurrentWidget(browser)
    win.refresh_data()
    assert browser.select(run.trajectory_ids[0])
    browser.show_step(1)
    assert browser.canvas.elements == listing
    before, inside_before = edge_pixels(browser.canvas, box)
    assert not any(near(c, YELLOW) for c in before)

    qtbot.keyClick(browser, Qt.Key.Key_E)
    assert browser.canvas.show_elements
    on, inside_on = edge_pixels(browser.canvas, box)
    assert any(near(c, YELLOW, 10) for c in on), [c.name() for c in on]
    assert inside_on == inside_before  # a box, not a fill

    browser.show_step(0)  # no listing recorded for step 0: nothing drawn
    assert browser.canvas.elements is None
    browser.show_step(1)
    qtbot.keyClick(browser, Qt.Key.Key_E)
    off, _ = edge_pixels(browser.canvas, box)
    assert not browser.canvas.show_elements and off == before
    win.close()


@pytest.mark.display
def test_live_tiles_overlay_the_sandboxes_elements(qtbot, tmp_path):
    from deskdojo.gui.live import LiveSource, LiveView
    from deskdojo.vm.config import SandboxConfig
    from deskdojo.vm.guest.apps import launch_step
    from deskdojo.vm.pool import make_provider

    sandbox = make_provider(SandboxConfig(provider="xvfb", screen=(800, 600))).start()
    live = LiveView(fps=5)
    try:
        sandbox.reset(Task(id="overlay", instruction="-", family="buttons", setup=(launch_step(
            "buttons", {"seed": 1, "labels": ["alpha", "beta"], "shuffle": False}, python=sys.executable),)))
        qtbot.addWidget(live)
        live.resize(900, 700)
        live.show()
        qtbot.waitExposed(live)
        qtbot.waitUntil(live.isActiveWindow)  # shortcuts (E) act in the active window
        live.set_run_sources([LiveSource(name=sandbox.name, socket=sandbox.client.socket_path)])
        tile = live.tiles[sandbox.name]
        qtbot.waitUntil(lambda: live.frames_received.get(sandbox.name, 0) >= 2, timeout=10000)
        assert tile.elements is None  # nothing is fetched while the overlay is off

        qtbot.keyClick(live, Qt.Key.Key_E)
        assert live.show_elements and tile.show_elements
        qtbot.waitUntil(lambda: tile.elements is not None
                        and any(e.role == "button" and e.name == "alpha" for e in tile.elements.elements),
                        timeout=10000)
        button = next(e for e in tile.elements.elements if e.role == "button" and e.name == "alpha")
        first = tile.elements.listing
        time.sleep(0.1)
        qtbot.waitUntil(lambda: live.frames_received.get(sandbox.name, 0) >= 4, timeout=10000)
        on, _ = edge_pixels(tile, button.box)
        assert any(near(c, YELLOW, 10) for c in on), [c.name() for c in on]
        qtbot.waitUntil(lambda: tile.elements.listing != first, timeout=5000)  # fetched again: it keeps up

        qtbot.keyClick(live, Qt.Key.Key_E)
        assert not live.show_elements and not live.elements_timer.isActive()
        off, _ = edge_pixels(tile, button.box)
        assert not any(near(c, YELLOW, 10) for c in off), [c.name() for c in off]
    finally:
        live.shutdown()
        sandbox.close()
