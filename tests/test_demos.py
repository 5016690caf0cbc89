"""Demonstrations: the recorder, oracle demos, recording through the guest server,
export/import (deskdojo jsonl and OSWorld), and the CLI."""

from __future__ import annotations

import dataclasses
import io
import json
import time
from pathlib import Path
from typing import Any, Sequence

import pytest

from deskdojo.agent.demos import (DemoRecorder, demo_from_recording, export_demo, import_demo, list_demos,
                                  load_demo, record_oracle_demos)
from deskdojo.core.actions import Click, Done, Drag, Key, Scroll, Type, Wait
from deskdojo.core.errors import GuestRequestError, RecordError
from deskdojo.core.records import to_json
from deskdojo.core.types import EndReason, Locator, OracleStep, Task
from deskdojo.vm.fake import FakeSandbox, synthetic_frames

LABELS = ["apple", "pear", "plum", "fig"]
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def buttons_task(clicks: Sequence[str] = ("apple", "plum")) -> Task:
    from deskdojo.vm.guest.apps import launch_step

    oracle = tuple(OracleStep(Click(0, 0), at=Locator("buttons", path=f"widgets.button:{label}"))
                   for label in clicks)
    return Task(id="buttons-demo", instruction=f"Click {' then '.join(clicks)}.", family="test",
                setup=(launch_step("buttons", {"seed": 3, "labels": LABELS}),), oracle=oracle)


def fake_demo(tmp_path: Path, name: str = "fake") -> Path:
    sandbox = FakeSandbox(synthetic_frames(200, 120))
    task = Task(id="fake-task", instruction="do many things", family="test")
    recorder = DemoRecorder(sandbox, task, tmp_path / "demos", settle_s=0.2)
    for action in (Click(10, 20), Click(30, 40, button="right"), Click(5, 5, count=2), Type("hi there"),
                   Key(("ctrl", "s")), Scroll(50, 60, dy=3), Drag(1, 2, 100, 110), Wait(0.5)):
        assert recorder.act(action).ok
    return recorder.finish(name)


# --- the recorder (fake sandbox: fast) ----------------------------------------------


def test_recorder_writes_a_demo_folder(tmp_path: Path) -> None:
    path = fake_demo(tmp_path)
    demo = load_demo(path)
    assert demo.id == "fake" and demo.task.id == "fake-task"
    assert demo.trajectory.end is EndReason.DONE and demo.trajectory.id == "fake"
    assert [s.action.kind for s in demo.trajectory.steps][-2:] == ["wait", "done"]  # Done() appended
    assert all((path / s.frame).read_bytes().startswith(PNG_MAGIC) for s in demo.trajectory.steps)
    assert not [p for p in (tmp_path / "demos").iterdir() if p.name.startswith(".")]  # no leftovers
    assert list_demos(tmp_path / "demos") == [{"id": "fake", "task_id": "fake-task", "steps": 9, "end": "done",
                                               "instruction": "do many things", "provenance": "template"}]
    with pytest.raises(RecordError, match="already exists"):
        recorder = DemoRecorder(FakeSandbox(synthetic_frames(64, 48)), demo.task, tmp_path / "demos", settle_s=0)
        recorder.finish("fake")
    with pytest.raises(RecordError, match="folder name"):
        DemoRecorder(FakeSandbox(synthetic_frames(64, 48)), demo.task, tmp_path / "demos", name="../evil")


def test_jsonl_round_trip(tmp_path: Path) -> None:
    path = fake_demo(tmp_path)
    out = export_demo(path, tmp_path / "exported", format="jsonl")
    with pytest.raises(RecordError, match="not empty"):
        export_demo(path, out, format="jsonl")
    back = import_demo(out, tmp_path / "other", name="again")
    original, imported = load_demo(path), load_demo(back)
    assert imported.task == original.task
    assert imported.trajectory.steps == original.trajectory.steps
    assert (back / "frames" / "0003.png").read_bytes() == (path / "frames" / "0003.png").read_bytes()


def test_osworld_round_trip(tmp_path: Path) -> None:
    path = fake_demo(tmp_path)
    out = export_demo(path, tmp_path / "osworld", format="osworld")
    lines = [json.loads(line) for line in (out / "traj.jsonl").read_text().splitlines()]
    assert [line["step_num"] for line in lines] == list(range(1, 10))
    assert lines[0]["action"] == "pyautogui.click(10, 20)" and lines[-1]["action"] == "DONE"
    assert "pyautogui.hotkey('ctrl', 's')" in lines[4]["action"]
    assert all((out / line["screenshot_file"]).exists() and line["response"] for line in lines)
    # OSWorld saves the screen AFTER each action: step 1's shot is the demo's frame 1
    assert (out / lines[0]["screenshot_file"]).read_bytes() == (path / "frames" / "0001.png").read_bytes()
    assert (out / "step_0.png").read_bytes() == (path / "frames" / "0000.png").read_bytes()

    back = import_demo(out, tmp_path / "demos2", name="from-osworld")
    original, imported = load_demo(path), load_demo(back)
    assert imported.task == original.task  # task.json travels beside traj.jsonl
    assert [s.action for s in imported.trajectory.steps] == [s.action for s in original.trajectory.steps]
    for step in imported.trajectory.steps:  # the frame before each action comes back
        assert (back / step.frame).read_bytes() == (path / f"frames/{step.index:04d}.png").read_bytes()


def test_osworld_import_parses_code_and_never_runs_it(tmp_path: Path) -> None:
    from PIL import Image

    source = tmp_path / "run"
    source.mkdir()
    Image.new("RGB", (1280, 720), (1, 2, 3)).save(source / "step_1_x.png")
    lines = [{"step_num": 1, "action": "import pyautogui\npyautogui.moveTo(100, 200)\npyautogui.click()\n"
                                      "pyautogui.write('hello')", "response": "I click and type",
              "screenshot_file": "step_1_x.png"},
             {"step_num": 2, "action": "DONE", "screenshot_file": "step_1_x.png"}]
    (source / "traj.jsonl").write_text("".join(json.dumps(line) + "\n" for line in lines))
    (source / "instruction.txt").write_text("Type hello in the box")
    path = import_demo(source, tmp_path / "demos")
    demo = load_demo(path)
    assert demo.task.instruction == "Type hello in the box" and demo.task.provenance.value == "imported"
    assert [s.action for s in demo.trajectory.steps] == [Click(100, 200), Type("hello"), Done()]
    assert demo.trajectory.steps[0].model_text == "I click and type"
    assert demo.trajectory.steps[0].frame is None  # no step_0.png: the first screen is unknown
    assert demo.trajectory.steps[2].frame is not None

    marker = tmp_path / "pwned"
    evil = tmp_path / "evil"
    evil.mkdir()
    (evil / "traj.jsonl").write_text(json.dumps(
        {"step_num": 1, "action": f"import os\nos.system('touch {marker}')"}) + "\n")
    with pytest.raises(RecordError, match="traj.jsonl:1"):
        import_demo(evil, tmp_path / "demos")
    assert not marker.exists() and not (tmp_path / "demos" / "evil").exists()
    assert not [p for p in (tmp_path / "demos").iterdir() if p.name.startswith(".")]


# --- real sandboxes ----------------------------------------------------------------


class SlowFakeSandbox(FakeSandbox):
    """A fake whose actions take 0.1 s, like a busy machine's sandbox."""

    def act(self, action: Any) -> Any:
        time.sleep(0.1)
        return super().act(action)


def test_oracle_demos_stop_at_the_deadline_and_keep_what_was_recorded(tmp_path: Path) -> None:
    tasks = [Task(id=f"click-{i}", instruction="Click.", family="test", oracle=(OracleStep(Click(5, 5)),))
             for i in range(40)]
    progress = io.StringIO()
    started = time.monotonic()
    paths = record_oracle_demos(tasks, [SlowFakeSandbox(synthetic_frames(64, 48)) for _ in range(2)],
                                tmp_path / "demos", settle_s=0, deadline=started + 1.0, progress=progress)
    took = time.monotonic() - started
    # each sandbox starts no demo that its last demo's time says would end past the deadline
    assert 2 <= len(paths) < 40 and took < 1.0 + 0.5, (len(paths), took)
    assert sorted(p.name for p in (tmp_path / "demos").iterdir()) == sorted(p.name for p in paths)  # no leftovers
    assert all(load_demo(p).task.id.startswith("click-") for p in paths)
    assert f" {len(paths)}/40 demos" in progress.getvalue().splitlines()[-1]


@pytest.mark.display
def test_oracle_demos_and_recorder_in_a_real_sandbox(box: Any, tmp_path: Path) -> None:
    [path] = record_oracle_demos([buttons_task(("plum", "fig", "plum"))], box, tmp_path)
    demo = load_demo(path)
    _wait_for(lambda: box.app_state()["apps"]["buttons"]["history"] == ["plum", "fig", "plum"])
    assert [s.action.kind for s in demo.trajectory.steps] == ["click", "click", "click", "done"]
    assert demo.trajectory.policy_id == "oracle" and demo.trajectory.end is EndReason.DONE
    widgets = box.app_state()["apps"]["buttons"]["widgets"]
    plum = widgets["button:plum"]
    first = demo.trajectory.steps[0].action
    assert plum["x"] <= first.x < plum["x"] + plum["w"] and plum["y"] <= first.y < plum["y"] + plum["h"]


@pytest.mark.display
def test_guest_records_every_action_sent_to_it(box: Any, tmp_path: Path) -> None:
    from deskdojo.vm.client import GuestClient

    task = buttons_task()
    box.reset(task)
    widgets = _wait_for_buttons(box)
    apple, fig = _center(widgets["button:apple"]), _center(widgets["button:fig"])
    box.start_recording()
    assert box.act(Click(*apple)).ok
    _wait_for(lambda: box.app_state()["apps"]["buttons"]["history"] == ["apple"])  # repainted
    with GuestClient(box.client.socket_path) as other:  # anyone's actions: the panel, the CLI
        assert other.recording()["recording"] is True
        assert other.act(Click(*fig)).ok
        assert not other.act(Click(5000, 5000)).ok  # refused: not performed, not recorded
    recorded = box.stop_recording()
    assert [action for action, _png in recorded] == [Click(*apple), Click(*fig)]
    assert all(png.startswith(PNG_MAGIC) for _action, png in recorded)
    assert recorded[0][1] != recorded[1][1]  # the screen before each action: apple's click shows
    assert box.act(Click(*apple)).ok  # recording is off: not kept
    summary = box.client.recording()
    assert summary["recording"] is False and len(summary["actions"]) == 2
    assert summary["actions"][0]["time"] >= summary["started"]
    with pytest.raises(GuestRequestError, match="no frame 2"):
        box.client.recorded_frame(2)
    with pytest.raises(GuestRequestError, match="record needs"):
        box.client._call("POST", "/v1/record", {"on": "yes"})
    box.start_recording()  # a new recording starts empty
    assert box.client.recording()["actions"] == []
    box.stop_recording()

    path = demo_from_recording(task, recorded, tmp_path, name="recorded")
    demo = load_demo(path)
    assert [s.action for s in demo.trajectory.steps] == [Click(*apple), Click(*fig), Done()]
    assert (path / "frames" / "0000.png").read_bytes() == recorded[0][1]


@pytest.mark.display
def test_record_cli(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from deskdojo.cli import main

    task_file = tmp_path / "task.json"
    task_file.write_text(json.dumps(to_json(buttons_task(("pear",)))))
    demos = tmp_path / "demos"
    code = main(["record", "--task", str(task_file), "--provider", "xvfb", "--demos", str(demos),
                 "--name", "by-hand", "--action", json.dumps({"kind": "wait", "seconds": 0.1}),
                 "--action", json.dumps({"kind": "click", "x": 20, "y": 20})])
    assert code == 0 and capsys.readouterr().out.strip() == str(demos / "by-hand")
    assert [s.action.kind for s in load_demo(demos / "by-hand").trajectory.steps] == ["wait", "click", "done"]
    assert main(["record", "--task", str(task_file), "--provider", "xvfb", "--demos", str(demos),
                 "--oracle", "--name", "oracle"]) == 0
    assert [s.action.kind for s in load_demo(demos / "oracle").trajectory.steps] == ["click", "done"]
    capsys.readouterr()
    assert main(["demos", "list", "--demos", str(demos), "--json"]) == 0
    assert sorted(row["id"] for row in json.loads(capsys.readouterr().out)) == ["by-hand", "oracle"]
    assert main(["demos", "export", str(demos / "oracle"), str(tmp_path / "ow"), "--format", "osworld"]) == 0
    assert main(["demos", "import", str(tmp_path / "ow"), "--demos", str(demos), "--name", "back"]) == 0
    clicked = load_demo(demos / "oracle").trajectory.steps[0].action
    assert clicked.element is not None  # the oracle's click names the element it hit, too
    # OSWorld code carries the point; the element id belongs to a listing the export leaves behind
    assert load_demo(demos / "back").trajectory.steps[0].action == dataclasses.replace(clicked, element=None)
    assert main(["record", "--task", "no-such-thing", "--demos", str(demos), "--oracle"]) == 1
    assert "neither a task JSON file" in capsys.readouterr().err


def _wait_for(predicate: Any, timeout: float = 5.0) -> None:
    import time

    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("timed out")
        time.sleep(0.05)


def _wait_for_buttons(sandbox: Any, timeout: float = 10.0) -> dict[str, Any]:
    import time

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        state = sandbox.app_state()["apps"].get("buttons")
        if state and all(state["widgets"][f"button:{label}"]["w"] > 0 for label in LABELS):
            return state["widgets"]
        time.sleep(0.05)
    raise AssertionError("the buttons app published no state")


def _center(box: dict[str, Any]) -> tuple[int, int]:
    return box["x"] + box["w"] // 2, box["y"] + box["h"] // 2


@pytest.mark.docker
def test_guest_recording_in_a_container(tmp_path: Path) -> None:
    """The image's copy of the guest server records too; a demo recorded there replays."""
    from deskdojo.agent.replay import replay
    from deskdojo.vm.config import SandboxConfig
    from deskdojo.vm.pool import make_provider

    task = buttons_task()
    with make_provider(SandboxConfig(provider="docker")).start() as sandbox:
        sandbox.reset(task)
        widgets = _wait_for_buttons(sandbox)
        sandbox.start_recording()
        for label in ("pear", "fig"):
            assert sandbox.act(Click(*_center(widgets[f"button:{label}"]))).ok
            _wait_for(lambda: sandbox.app_state()["apps"]["buttons"]["last"] == label)
        recorded = sandbox.stop_recording()
        assert [a for a, _png in recorded] == [Click(*_center(widgets["button:pear"])),
                                              Click(*_center(widgets["button:fig"]))]
        path = demo_from_recording(task, recorded, tmp_path)
        report = replay(path, sandbox)
    assert report.first_divergent is None and [s.index for s in report.steps] == [0, 1]
