"""The panel on real desktops: live frames from an xvfb sandbox, a demonstration recorded by
simulated mouse and key events on the enlarged view (checked through the practice app's
published state) and replayed into a fresh sandbox; and the panel in a real xcb window."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

os.environ["QT_QPA_PLATFORM"] = "offscreen"

import numpy as np  # noqa: E402
import pytest  # noqa: E402
from PyQt6.QtCore import QPoint, Qt  # noqa: E402

from deskdojo.core.actions import Click, Done, Key  # noqa: E402
from deskdojo.core.control import write_status  # noqa: E402
from deskdojo.core.rundir import read_trajectory  # noqa: E402
from deskdojo.core.types import Task  # noqa: E402
from deskdojo.core.records import to_json  # noqa: E402
from deskdojo.core.rundir import JsonlFile  # noqa: E402
from deskdojo.gui.window import MainWindow, panel_settings  # noqa: E402
from deskdojo.vm.config import SandboxConfig  # noqa: E402
from deskdojo.vm.guest.apps import launch_step, widget_center  # noqa: E402
from deskdojo.vm.pool import make_provider  # noqa: E402

sys.path.insert(0, str(Path(__file__).parent))
from panel_fixtures import make_run  # noqa: E402

pytestmark = pytest.mark.display


def buttons_task() -> Task:
    return Task(id="buttons-demo", instruction="Click the first button, then press Tab", family="buttons",
                setup=(launch_step("buttons", {"seed": 1, "labels": ["alpha", "beta", "gamma"], "shuffle": False},
                                   python=sys.executable),))


def widget_point(canvas, x: int, y: int) -> QPoint:
    """The canvas position that shows screen pixel (x, y)."""
    rect = canvas.screen_rect()
    width, height = canvas.screen_size
    return QPoint(int(rect.x() + (x + 0.5) * rect.width() / width),
                  int(rect.y() + (y + 0.5) * rect.height() / height))


@pytest.fixture
def sandbox():
    box = make_provider(SandboxConfig(provider="xvfb", screen=(800, 600))).start()
    try:
        yield box
    finally:
        box.close()


def test_live_grid_demo_by_takeover_and_replay(qtbot, sandbox, tmp_path):
    fake = make_run(tmp_path / "runs", trajectories=1, steps=2)
    task = buttons_task()
    JsonlFile(fake.path / "tasks.jsonl").append({"task": to_json(task), "admitted": True, "reason": None,
                                                 "time": time.time()})
    # The run says one sandbox is live (this process stands in for the training process).
    write_status(fake.path, {"state": "running", "pid": os.getpid(), "iteration": 1, "env_steps": 3,
                             "sandboxes": [{"name": sandbox.name, "socket": sandbox.client.socket_path,
                                            "task_id": "t-1", "instruction": "look at me", "step": 3,
                                            "last_action": {"kind": "click", "x": 10, "y": 20},
                                            "trajectory": "trajectories/x"}]})
    win = MainWindow(run_dir=fake.path, settings=panel_settings(tmp_path / "p.ini"), check_environment=False)
    qtbot.addWidget(win)
    win.resize(1300, 900)
    win.show()
    live = win.live
    try:
        # Live grid: the run's sandbox appears with its task, step and last action; frames arrive.
        qtbot.waitUntil(lambda: sandbox.name in live.tiles, timeout=5000)
        tile = live.tiles[sandbox.name]
        assert "look at me" in tile.header and "step 3" in tile.footer
        assert tile.last_action == Click(10, 20)
        qtbot.waitUntil(lambda: live.frames_received.get(sandbox.name, 0) >= 3, timeout=10000)
        assert tile.screen_size == (800, 600) and tile.image is not None

        # Enlarge by clicking the tile, pick the task, start recording (resets the sandbox with it).
        qtbot.mouseClick(tile, Qt.MouseButton.LeftButton, pos=tile.rect().center())
        assert live.enlarged == sandbox.name and live.stack.currentIndex() == 2
        index = live.task_box.findText("buttons-demo", Qt.MatchFlag.MatchStartsWith)
        assert index > 0
        live.task_box.setCurrentIndex(index)
        live.demo_name.setText("my-demo")
        live.record_button.click()
        qtbot.waitUntil(lambda: live.recorder is not None, timeout=30000)
        assert live.take_over.isChecked() and live.big.capture
        qtbot.waitUntil(lambda: live.big.screen_size == (800, 600), timeout=5000)
        qtbot.waitUntil(lambda: "buttons" in sandbox.app_state()["apps"], timeout=10000)
        state = sandbox.app_state()["apps"]["buttons"]
        assert state["clicks"]["alpha"] == 0
        x, y = widget_center(state, "button:alpha")

        # The person clicks the button on the enlarged view and presses Tab.
        qtbot.mouseClick(live.big, Qt.MouseButton.LeftButton, pos=widget_point(live.big, x, y))
        qtbot.keyClick(live.big, Qt.Key.Key_Tab)
        messages = []
        live.status_message.connect(messages.append)
        qtbot.waitUntil(lambda: live.pending_actions == 0, timeout=10000)
        assert live.recorded_steps == 2, (messages, live.demo_status.text())
        qtbot.waitUntil(lambda: sandbox.app_state()["apps"]["buttons"]["clicks"]["alpha"] == 1, timeout=5000)
        assert isinstance(live.big.last_action, Key)
        live.set_run_sources(live.run_sources)  # the run's status arrives again (it still says Click(10, 20))
        assert isinstance(live.big.last_action, Key) and "step 2" in live.big.footer  # the recording's steps

        live.save_button.click()
        qtbot.waitUntil(lambda: live.recorder is None, timeout=10000)
        demo = fake.path / "demos" / "my-demo"
        recorded = read_trajectory(demo)
        assert len(recorded.steps) == 3 and isinstance(recorded.steps[2].action, Done)  # finish adds Done
        first = recorded.steps[0].action
        assert isinstance(first, Click) and abs(first.x - x) <= 2 and abs(first.y - y) <= 2
        assert recorded.steps[1].action == Key(("tab",))
        assert (demo / recorded.steps[0].frame).exists()
        assert json.loads((demo / "task.json").read_text())["id"] == "buttons-demo"

        # Replay it into a fresh sandbox, side by side.
        win.tabs.setCurrentWidget(win.replay)
        win.refresh_data()
        win.replay.choose(demo)
        with qtbot.waitSignal(win.replay.finished, timeout=60000) as finished:
            win.replay.start_replay("xvfb")
        report = finished.args[0]
        assert report is not None, win.replay.state_label.text()
        assert len(report.steps) == 3 and win.replay.table.rowCount() == 3
        assert win.replay.recorded.image is not None and win.replay.live.image is not None
        assert report.steps[0].structure > 0.9  # same app, same seed: step 0 looks the same
        assert report.first_divergent is None, report  # a faithful replay matches at every step
        assert "matched the recording at every step" in win.replay.state_label.text()
    finally:
        win.close()


def test_replay_marks_the_first_divergent_step(qtbot, tmp_path):
    """A demo whose second frame was recorded on a different screen diverges at step 1."""
    from deskdojo.gui.adapters import demo_recorder

    fake = make_run(tmp_path / "runs", trajectories=0)
    box = make_provider(SandboxConfig(provider="xvfb", screen=(640, 480))).start()
    try:
        task = buttons_task()
        recorder = demo_recorder(box, task, fake.path / "demos", name="diverging")
        deadline = time.monotonic() + 10
        while "buttons" not in box.app_state()["apps"] and time.monotonic() < deadline:
            time.sleep(0.05)
        state = box.app_state()["apps"]["buttons"]
        recorder.act(Click(*widget_center(state, "button:beta")))
        recorder.act(Key(("tab",)))
        folder = recorder.finish()
    finally:
        box.close()
    frame = folder / "frames" / "0001.png"
    from PIL import Image

    Image.fromarray(np.full((480, 640, 3), (255, 0, 255), dtype=np.uint8)).save(frame)  # a screen never seen
    win = MainWindow(run_dir=fake.path, settings=panel_settings(tmp_path / "p.ini"), check_environment=False)
    qtbot.addWidget(win)
    try:
        win.replay.refresh()
        win.replay.choose(folder)
        with qtbot.waitSignal(win.replay.finished, timeout=60000) as finished:
            win.replay.start_replay("xvfb")
        report = finished.args[0]
        assert report is not None, win.replay.state_label.text()
        assert report.first_divergent == 1
        assert win.replay.first_divergent == 1
        assert "first divergent step: 1" in win.replay.state_label.text()
        row = [r for r in range(win.replay.table.rowCount()) if win.replay.table.item(r, 0).text() == "1"][0]
        assert "first" in win.replay.table.item(row, 2).text()
        assert win.replay.live.highlight is not None
    finally:
        win.close()


XCB_SCRIPT = textwrap.dedent("""
    import sys, time
    from PyQt6.QtWidgets import QApplication
    from deskdojo.gui.window import MainWindow, panel_settings
    import mss, mss.tools
    run_dir, settings_path, out = sys.argv[1:4]
    app = QApplication([sys.argv[0]])
    window = MainWindow(run_dir=run_dir, settings=panel_settings(settings_path), check_environment=False)
    window.tabs.setCurrentIndex(3)
    window.move(0, 0)
    window.resize(1200, 800)
    window.show()
    deadline = time.monotonic() + 2.0
    while time.monotonic() < deadline:
        app.processEvents()
        time.sleep(0.02)
    print("platform", QApplication.platformName(), flush=True)
    with mss.MSS() as grabber:
        shot = grabber.grab(grabber.monitors[1])
        mss.tools.to_png(shot.rgb, shot.size, output=out)
    window.close()
""")


def _start_xvfb() -> tuple[subprocess.Popen, int]:
    """Xvfb on a display number it picks itself (-displayfd), so it never collides."""
    read_fd, write_fd = os.pipe()
    proc = subprocess.Popen(["Xvfb", "-displayfd", str(write_fd), "-screen", "0", "1280x860x24", "-nolisten", "tcp"],
                            pass_fds=(write_fd,), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    os.close(write_fd)
    with os.fdopen(read_fd) as pipe:
        number = pipe.readline().strip()
    if not number:
        proc.kill()
        proc.wait()
        raise RuntimeError("Xvfb did not report a display number")
    return proc, int(number)


def test_panel_in_a_real_xcb_window(tmp_path):
    fake = make_run(tmp_path / "runs")
    script = tmp_path / "xcb_panel.py"
    script.write_text(XCB_SCRIPT)
    out = tmp_path / "screen.png"
    xvfb, display = _start_xvfb()
    try:
        env = {**os.environ, "QT_QPA_PLATFORM": "xcb", "DISPLAY": f":{display}"}
        result = subprocess.run([sys.executable, str(script), str(fake.path), str(tmp_path / "s.ini"), str(out)],
                                env=env, capture_output=True, text=True, timeout=60)
    finally:
        xvfb.terminate()
        try:
            xvfb.wait(timeout=5)
        except subprocess.TimeoutExpired:
            xvfb.kill()
            xvfb.wait()
    assert result.returncode == 0, result.stderr[-2000:]
    assert "platform xcb" in result.stdout
    from PIL import Image

    pixels = np.asarray(Image.open(out).convert("RGB"))
    assert pixels.shape[:2] == (860, 1280)
    colours = len(np.unique(pixels.reshape(-1, 3)[::5], axis=0))
    assert colours > 500, f"the screen looks flat: {colours} distinct colours"
    window_area = pixels[:800, :1200].reshape(-1, 3)
    assert (window_area != pixels[-1, -1]).any(axis=1).mean() > 0.5  # the window covers the screen's top left
