"""The control panel against fabricated run directories (offscreen Qt): every view, run
control through a stand-in run process, layout memory, theme, overlays, input mapping and
the --screenshot command. Live sandboxes and the real xcb window are in test_panel_live.py."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

os.environ["QT_QPA_PLATFORM"] = "offscreen"

import numpy as np  # noqa: E402
import pytest  # noqa: E402
from PIL import Image  # noqa: E402
from PyQt6.QtCore import QRectF, Qt  # noqa: E402
from PyQt6.QtGui import QColor, QImage, QPalette  # noqa: E402
from PyQt6.QtWidgets import QApplication  # noqa: E402

from deskdojo.core.actions import Click, Drag, Key, Scroll, Type  # noqa: E402
from deskdojo.core.control import read_status  # noqa: E402
from deskdojo.core.rundir import JsonlFile  # noqa: E402
from deskdojo.gui import adapters  # noqa: E402
from deskdojo.gui.canvas import key_event_action  # noqa: E402
from deskdojo.gui.data import JsonlTail, RunReader, curriculum_heatmap, load_trajectory  # noqa: E402
from deskdojo.gui.overlay import draw_action, image_with_action  # noqa: E402
from deskdojo.gui.window import MainWindow, panel_settings  # noqa: E402

sys.path.insert(0, str(Path(__file__).parent))
from panel_fixtures import ITERATIONS, make_run, metrics_line  # noqa: E402


@pytest.fixture
def settings(tmp_path):
    return panel_settings(tmp_path / "panel.ini")


@pytest.fixture
def fake_run(tmp_path):
    return make_run(tmp_path / "runs")


@pytest.fixture
def window(qtbot, fake_run, settings, tmp_path):
    win = MainWindow(run_dir=fake_run.path, runs_root=tmp_path / "runs", settings=settings,
                     check_environment=False)
    qtbot.addWidget(win)
    win.show()
    yield win
    win.close()


# --- pure readers -----------------------------------------------------------------------


def test_jsonl_tail_reads_only_new_complete_lines(tmp_path):
    path = tmp_path / "metrics.jsonl"
    tail = JsonlTail(path)
    assert tail.poll() == []  # missing file: nothing, no error
    path.write_bytes(b'{"a": 1}\n{"a": 2}\n{"a": 3')  # a torn last line
    assert [r["a"] for r in tail.poll()] == [1, 2]
    assert tail.poll() == []
    with open(path, "ab") as f:
        f.write(b'}\n{"a": 4}\n')
    assert [r["a"] for r in tail.poll()] == [3, 4]
    path.write_bytes(b'{"a": 9}\n')  # rewritten shorter: read from the start again
    assert [r["a"] for r in tail.poll()] == [9]
    assert [r["a"] for r in tail.records] == [9]


def test_heatmap_from_curriculum_and_from_metrics(fake_run):
    run = RunReader(fake_run.path)
    heat = curriculum_heatmap(run.curriculum())
    assert heat.families == ("buttons", "form", "menus")
    assert heat.levels == (0, 1, 2, 3)
    assert heat.cells[("buttons", 0)].rate == pytest.approx(0.9)
    assert heat.cells[("menus", 3)].rate is None
    assert heat.current_level == {"buttons": 1, "form": 2, "menus": 1}
    fallback = curriculum_heatmap(None, [metrics_line(0)])
    assert fallback.families == ("buttons",) and fallback.cells[("buttons", 0)].rate == 0.8


def test_trajectory_reader_keeps_delta_and_errors(fake_run):
    traj = load_trajectory(fake_run.path / "trajectories" / fake_run.trajectory_ids[0])
    assert len(traj.steps) == 4 and traj.end == "done"
    assert traj.steps[0].delta["apps"]["buttons"]["clicks"]["btn 0"] == 0
    assert traj.steps[1].delta is None
    assert traj.steps[2].action_error and isinstance(traj.steps[2].action, Drag)
    assert all(s.frame is not None and s.frame.exists() for s in traj.steps)


# --- overlays and input -------------------------------------------------------------------


def test_overlay_draws_at_the_action_point(qapp):
    base = QImage(640, 480, QImage.Format.Format_RGB32)
    base.fill(QColor(0, 0, 0))
    drawn = image_with_action(base, Click(100, 400))
    assert drawn.pixelColor(100, 400 - 14).red() > 200  # the ring around the click point
    assert drawn.pixelColor(500, 50) == QColor(0, 0, 0)  # far away: untouched
    drag = image_with_action(base, Drag(50, 50, 600, 50))
    assert drag.pixelColor(300, 50).red() > 200  # the arrow's shaft
    typed = image_with_action(base, Type("hello"))
    assert typed != base  # the caption box at the bottom
    # an element action the sandbox refused has no point: only its caption is drawn
    for unresolved in (Click(element=3), Scroll(element=3, dy=2)):
        shown = image_with_action(base, unresolved)
        assert shown != base and shown.pixelColor(320, 100) == QColor(0, 0, 0)
    # Drawn onto a smaller target, screen points scale with it.
    small = QImage(320, 240, QImage.Format.Format_RGB32)
    small.fill(QColor(0, 0, 0))
    from PyQt6.QtGui import QPainter

    painter = QPainter(small)
    draw_action(painter, Click(600, 440), QRectF(0, 0, 320, 240), (640, 480))
    painter.end()
    assert max(small.pixelColor(x, 217).red() for x in range(298, 303)) > 150  # the crosshair, scaled
    assert small.pixelColor(100, 100) == QColor(0, 0, 0)


def test_key_events_become_type_or_chords():
    none = Qt.KeyboardModifier.NoModifier
    ctrl = Qt.KeyboardModifier.ControlModifier
    shift = Qt.KeyboardModifier.ShiftModifier
    assert key_event_action(Qt.Key.Key_A, none, "a") == Type("a")
    assert key_event_action(Qt.Key.Key_A, shift, "A") == Type("A")
    assert key_event_action(Qt.Key.Key_S, ctrl, "\x13") == Key(("ctrl", "s"))
    assert key_event_action(Qt.Key.Key_Return, none, "\r") == Key(("enter",))
    assert key_event_action(Qt.Key.Key_Tab, shift, "") == Key(("shift", "tab"))
    assert key_event_action(Qt.Key.Key_F5, none, "") == Key(("f5",))
    assert key_event_action(Qt.Key.Key_Control, ctrl, "") is None


# --- the views on a fabricated run -----------------------------------------------------------


def test_curriculum_view_shows_heatmap_choices_and_tasks(window, fake_run):
    window.tabs.setCurrentWidget(window.curriculum)
    window.refresh_data()
    heat = window.curriculum.heatmap
    assert (heat.rowCount(), heat.columnCount()) == (3, 4)
    assert heat.item(0, 0).text() == "90%"
    assert heat.item(0, 1).text().startswith("◆")  # buttons' current level is 1
    red, green = heat.item(2, 2).background().color(), heat.item(0, 0).background().color()
    assert red.red() > red.green() and green.green() > green.red()
    choices = [window.curriculum.choices.item(i).text() for i in range(window.curriculum.choices.count())]
    assert any("menus @ level 1" in c for c in choices)
    assert any("proposed tasks (exploration): 2, 1 in the pool" in c for c in choices)
    assert any("after iteration 3: harder of explore_menus-L0-cd (1.0): 1 of 1 entered" in c for c in choices)
    tasks = window.curriculum.tasks
    assert tasks.rowCount() == len(fake_run.task_ids)
    assert tasks.item(0, 1).text() == fake_run.task_ids[-1]  # newest first
    admitted = [tasks.item(r, 6).text() for r in range(tasks.rowCount())]
    assert admitted.count("yes") == fake_run.admitted
    assert "doing nothing already passes" in " ".join(tasks.item(r, 7).text() for r in range(tasks.rowCount()))


def test_trajectory_browser_steps_through_frames_actions_delta_and_verdict(window, fake_run, qtbot):
    browser = window.trajectories
    window.tabs.setCurrentWidget(browser)
    window.refresh_data()
    assert browser.picker.count() == len(fake_run.trajectory_ids) + 1  # plus the demo
    assert browser.select(fake_run.trajectory_ids[1])  # the failed one
    assert "FAILURE" in browser.verdict_label.text() and "first error at step 2" in browser.verdict_label.text()
    assert browser.evidence.rowCount() == 2
    assert browser.canvas.image is not None and browser.canvas.screen_size == (640, 480)
    assert isinstance(browser.canvas.last_action, Click)
    assert "clicks" in browser.delta_text.toPlainText()
    qtbot.keyClick(browser, Qt.Key.Key_BracketRight)  # "]" = next step
    qtbot.keyClick(browser, Qt.Key.Key_BracketRight)
    assert browser.index == 2
    assert isinstance(browser.canvas.last_action, Drag)
    assert "off the screen" in browser.step_text.toPlainText()
    assert "label: error" in browser.step_text.toPlainText()
    assert "first error" in browser.step_label.text()
    assert browser.canvas.highlight is not None
    browser.show_step(99)  # clamps to the last step
    assert browser.index == 3 and isinstance(browser.canvas.last_action, Scroll)


def test_the_trajectory_view_lists_where_the_judges_disagree(window, fake_run):
    """The hybrid judge (mode both) writes disagreements.jsonl; the browser marks the
    trajectory in its list and says both outcomes and the VLM judge's reason."""
    disputed = fake_run.trajectory_ids[1]
    JsonlFile(fake_run.path / "disagreements.jsonl").append({
        "time": 0.0, "task_id": "t", "trajectory_id": disputed, "family": "f", "level": 0,
        "checks": {"success": False, "score": 0.0, "judge_id": "state"},
        "vlm": {"success": True, "score": 1.0, "judge_id": "vlm",
                "answer": {"error_type": "none", "rationale": "the box looks ticked"}}})
    browser = window.trajectories
    window.tabs.setCurrentWidget(browser)
    window.refresh_data()
    texts = [browser.picker.item(r).text() for r in range(browser.picker.count())]
    assert [t for t in texts if "judges disagree" in t] == [t for t in texts if disputed in t]
    assert browser.select(disputed)
    label = browser.verdict_label.text()
    assert "judges disagree" in label and "the checks say failure" in label and "the box looks ticked" in label
    assert browser.select(fake_run.trajectory_ids[0])
    assert "disagree" not in browser.verdict_label.text()


def test_curves_follow_metrics_as_they_grow(window, fake_run):
    curves = window.curves
    window.tabs.setCurrentWidget(curves)
    window.refresh_data()
    xs, ys = curves.series("train_success")
    assert len(xs) == ITERATIONS and ys[0] == pytest.approx(0.1)
    held_x, _ = curves.series("heldout_success")
    assert held_x == [0.0, 3.0, 6.0, 9.0]  # null where not evaluated
    _, grounding = curves.series("grounding")
    assert list(grounding[:2]) == pytest.approx([0.3, 0.32])
    _, errors = curves.series("errors")
    assert len(errors) == ITERATIONS and errors[4] == 2 and sum(errors) == 2  # episodes lost to sandboxes
    assert "sandbox errors 2" in curves.summary.text()
    assert list(curves.series("replayed")[1][:3]) == [0, 1, 0] and curves.series("rejected")[1][1] == 1
    assert curves.series("retired")[1][4] == 1 and "retired" in curves.curves
    JsonlFile(fake_run.path / "metrics.jsonl").append(metrics_line(ITERATIONS))
    window.refresh_data()
    xs, _ = curves.series("loss")
    assert len(xs) == ITERATIONS + 1 and xs[-1] == ITERATIONS
    assert f"iteration {ITERATIONS}" in curves.summary.text()


def test_replay_view_lists_demos_and_trajectories(window, fake_run):
    window.tabs.setCurrentWidget(window.replay)
    window.refresh_data()
    box = window.replay.source_box
    items = [box.itemText(i) for i in range(box.count())]
    assert items[0] == f"demo {fake_run.demo_id}"
    assert len(items) == 1 + len(fake_run.trajectory_ids)
    assert window.replay.replay_button.isEnabled()


def test_empty_states_say_what_to_do(qtbot, settings, tmp_path):
    win = MainWindow(runs_root=tmp_path / "none", settings=settings, check_environment=False)
    qtbot.addWidget(win)
    win.refresh_data(all_views=True)
    assert "deskdojo evolve --run-dir" in win.curves.empty.body.text()
    assert "deskdojo evolve --run-dir" in win.run_view.runs_empty.text()
    assert "New sandbox" in win.live.empty.body.text()
    assert win.live.stack.currentWidget() is win.live.empty
    win._doctor_done({"docker": False, "xvfb": True, "docker_detail": "not reachable",
                      "docker_fix": "nohup dockerd &", "xvfb_fix": ""})
    assert "nohup dockerd" in win.live.empty.body.text() and "bash scripts/setup.sh" in win.live.empty.body.text()
    assert "nohup dockerd" in win.run_view.provider_hint.text()
    assert win.run_view.provider_box.currentText() == "xvfb"
    empty_run = tmp_path / "runs" / "empty"
    from deskdojo.core.rundir import RunDir

    RunDir.create(empty_run, {})
    assert win.attach(str(empty_run))
    win.refresh_data(all_views=True)
    assert "no episodes yet" in win.trajectories.empty.body.text()
    assert "metrics.jsonl" in win.curves.empty.body.text()
    win.close()


def test_layout_theme_and_tab_are_remembered(qtbot, fake_run, tmp_path):
    path = tmp_path / "layout.ini"
    first = MainWindow(run_dir=fake_run.path, settings=panel_settings(path), check_environment=False)
    qtbot.addWidget(first)
    first.show()
    first.resize(820, 640)
    remembered = (first.width(), first.height())
    first.tabs.setCurrentIndex(4)
    first.apply_theme("dark")
    assert QApplication.palette().color(QPalette.ColorRole.Window).lightness() < 100
    first.close()
    second = MainWindow(settings=panel_settings(path), check_environment=False)
    qtbot.addWidget(second)
    assert second.tabs.currentIndex() == 4
    assert second.height() == remembered[1]  # (the width is clamped to the 800-pixel offscreen screen)
    fresh = MainWindow(settings=panel_settings(tmp_path / "other.ini"), check_environment=False)
    qtbot.addWidget(fresh)
    assert fresh.height() != remembered[1] and fresh.tabs.currentIndex() == 0
    assert second.theme == "dark"
    assert second.run is not None and second.run.path == fake_run.path.resolve()  # the last run
    second.apply_theme("light")
    assert QApplication.palette().color(QPalette.ColorRole.Window).lightness() > 150
    second.close()


def test_shortcuts_switch_tabs(window):
    from PyQt6.QtGui import QAction

    shortcuts = {a.shortcut().toString(): a for a in window.findChildren(QAction) if not a.shortcut().isEmpty()}
    for key in ("Ctrl+O", "Ctrl+N", "Ctrl+P", "Ctrl+R", "Ctrl+.", "Ctrl+1", "Ctrl+6", "F5", "Ctrl+Q"):
        assert key in shortcuts, key
    shortcuts["Ctrl+5"].trigger()
    assert window.tabs.currentWidget() is window.curves
    shortcuts["Ctrl+3"].trigger()
    assert window.tabs.currentWidget() is window.curriculum


# --- run control through a stand-in run process ------------------------------------------------

STAND_IN_RUN = textwrap.dedent("""
    import os, sys, time
    from deskdojo.core.control import ControlReader, write_status
    from deskdojo.core.rundir import RunDir
    run_dir = sys.argv[sys.argv.index("--run-dir") + 1]
    RunDir.create(run_dir, {"stand_in": True})
    reader = ControlReader(run_dir)
    state, iteration = "running", 0
    print("stand-in run started", flush=True)
    deadline = time.time() + 60
    while time.time() < deadline:
        command = reader.poll()
        if command == "pause": state = "paused"
        elif command == "resume": state = "running"
        elif command == "stop": break
        if state == "running": iteration += 1
        write_status(run_dir, {"state": state, "pid": os.getpid(), "iteration": iteration,
                               "env_steps": iteration * 4, "sandboxes": []})
        time.sleep(0.05)
    write_status(run_dir, {"state": "finished", "pid": os.getpid(), "iteration": iteration,
                           "env_steps": iteration * 4, "sandboxes": []})
    print("stand-in run stopped", flush=True)
""")


def test_start_pause_resume_stop_a_run_without_blocking(qtbot, settings, tmp_path, monkeypatch):
    script = tmp_path / "stand_in_run.py"
    script.write_text(STAND_IN_RUN)
    real_argv = adapters.evolve_argv

    def stand_in(**kwargs):
        argv = real_argv(**kwargs)
        assert argv[1:4] == ["-m", "deskdojo.cli", "evolve"] and "--sandboxes" in argv
        return [sys.executable, str(script)] + argv[4:]

    monkeypatch.setattr(adapters, "evolve_argv", stand_in)
    win = MainWindow(runs_root=tmp_path / "runs", settings=settings, check_environment=False)
    qtbot.addWidget(win)
    win.show()
    view = win.run_view
    view.run_dir_edit.setText(str(tmp_path / "runs" / "controlled"))
    view.sandboxes_spin.setValue(3)
    started = time.perf_counter()
    view.start_button.click()
    assert time.perf_counter() - started < 0.5  # the UI thread did not wait for the run
    run_dir = tmp_path / "runs" / "controlled"
    qtbot.waitUntil(lambda: (read_status(run_dir) or {}).get("state") == "running", timeout=20000)
    qtbot.waitUntil(lambda: view.pause_button.isEnabled(), timeout=5000)
    assert win.run is not None and win.run.path == run_dir
    view.pause_button.click()
    qtbot.waitUntil(lambda: (read_status(run_dir) or {}).get("state") == "paused", timeout=10000)
    qtbot.waitUntil(lambda: view.resume_button.isEnabled(), timeout=5000)
    paused_at = read_status(run_dir)["iteration"]
    qtbot.wait(300)
    assert read_status(run_dir)["iteration"] == paused_at
    view.resume_button.click()
    qtbot.waitUntil(lambda: (read_status(run_dir) or {}).get("iteration", 0) > paused_at, timeout=10000)
    view.stop_button.click()
    qtbot.waitUntil(lambda: view.process is None, timeout=15000)
    assert read_status(run_dir)["state"] == "finished"
    log = view.log.toPlainText()
    assert "stand-in run started" in log and "stand-in run stopped" in log and "exited with code 0" in log
    win.refresh_data(all_views=True)
    assert "controlled" in view.runs_list.item(0).text() and "finished" in view.runs_list.item(0).text()
    win.close()


# --- the --screenshot command --------------------------------------------------------------


def test_screenshot_command_renders_every_view(fake_run, tmp_path):
    out = tmp_path / "shots"
    env = {**os.environ, "QT_QPA_PLATFORM": "offscreen"}
    result = subprocess.run([sys.executable, "-m", "deskdojo.cli", "panel", "--screenshot", str(out),
                             "--run", str(fake_run.path)], capture_output=True, text=True, timeout=60, env=env)
    assert result.returncode == 0, result.stderr
    paths = [Path(line) for line in result.stdout.split()]
    assert [p.name for p in paths] == ["1-live.png", "2-run.png", "3-curriculum.png", "4-trajectories.png",
                                       "5-curves.png", "6-replay.png"]
    for path in paths:
        pixels = np.asarray(Image.open(path).convert("RGB"))
        assert pixels.shape[0] >= 600 and pixels.shape[1] >= 1000
        colours = len(np.unique(pixels.reshape(-1, 3)[::7], axis=0))
        assert colours > 20, f"{path.name} looks flat ({colours} colours)"
    trajectories = np.asarray(Image.open(out / "4-trajectories.png").convert("RGB"))
    assert len(np.unique(trajectories.reshape(-1, 3)[::3], axis=0)) > 1000  # the frame is in it


def test_panel_without_display_says_what_to_do(tmp_path):
    env = {k: v for k, v in os.environ.items() if k not in ("DISPLAY", "WAYLAND_DISPLAY", "QT_QPA_PLATFORM")}
    result = subprocess.run([sys.executable, "-m", "deskdojo.cli", "panel"], capture_output=True, text=True,
                            timeout=30, env=env)
    assert result.returncode == 1
    assert "--screenshot" in result.stderr and "DISPLAY" in result.stderr
