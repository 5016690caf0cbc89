"""Core types: the action schema, records, the run directory, and a light import."""

from __future__ import annotations

import json
import multiprocessing
import os
import subprocess
import sys

import pytest

from deskdojo.core import (
    ACTION_TYPES, ActionError, Click, Done, Drag, EndReason, Fail, Key, Move, OracleStep, RecordError, RunDirError,
    Scroll, SetupStep, Step, Task, Trajectory, Type, Verdict, Wait, action_from_dict,
    action_to_dict,
)
from deskdojo.core.actions import action_points, by_point, element_of, off_screen_error
from deskdojo.core.records import from_json, to_json
from deskdojo.core.rundir import JsonlFile, RunDir, read_trajectory

EXAMPLES = [
    Click(10, 20), Click(5, 6, button="right", count=2), Move(1, 2), Drag(1, 2, 30, 40),
    Scroll(100, 100, dy=3), Type("hello"), Key(("ctrl", "s")), Wait(0.5), Done("42"), Fail("stuck"),
]


def test_every_kind_has_an_example_and_round_trips_through_json():
    assert {a.kind for a in EXAMPLES} == set(ACTION_TYPES)
    for action in EXAMPLES:
        wire = json.loads(json.dumps(action_to_dict(action)))
        assert action_from_dict(wire) == action


@pytest.mark.parametrize("data, message", [
    ({"kind": "teleport"}, "action.kind 'teleport' is not one of"),
    ({"x": 1}, "action.kind None"),
    ({"kind": "click", "x": 1}, "click needs both x and y"),
    ({"kind": "click"}, "click needs x and y, or an element id"),
    ({"kind": "click", "element": -1}, "click.element must be >= 0"),
    ({"kind": "type", "text": "a", "element": "OK"}, "type.element must be an integer"),
    ({"kind": "click", "x": "1", "y": 2}, "click.x must be an integer"),
    ({"kind": "click", "x": True, "y": 2}, "click.x must be an integer"),
    ({"kind": "click", "x": 1, "y": 2, "button": "side"}, "click.button must be one of"),
    ({"kind": "click", "x": 1, "y": 2, "count": 9}, "click.count must be <= 3"),
    ({"kind": "click", "x": 1, "y": 2, "z": 3}, "click has no field 'z'"),
    ({"kind": "scroll", "x": 1, "y": 2}, "non-zero dx or dy"),
    ({"kind": "scroll", "dy": 2}, "scroll needs x and y, or an element id"),
    ({"kind": "scroll", "x": 1, "dy": 2, "element": 3}, "scroll needs both x and y"),
    ({"kind": "scroll", "element": -2, "dy": 2}, "scroll.element must be >= 0"),
    ({"kind": "type", "text": ""}, "type.text must not be empty"),
    ({"kind": "type", "text": "x" * 5000}, "the limit is 4096"),
    ({"kind": "key", "keys": []}, "key.keys must be a non-empty list"),
    ({"kind": "key", "keys": ["ctrl", "hyper"]}, "unknown key 'hyper'"),
    ({"kind": "wait", "seconds": -1}, "wait.seconds must be within"),
    ({"kind": "wait", "seconds": float("nan")}, "wait.seconds must be a number"),
    ([1, 2], "must be a JSON object"),
])
def test_malformed_actions_are_rejected_naming_the_field(data, message):
    with pytest.raises(ActionError, match=message.replace("(", r"\(").replace(".", r"\.")):
        action_from_dict(data)


def test_key_names_are_normalised():
    assert Key(("Control", "Return")).keys == ("ctrl", "enter")
    assert Key("ctrl+shift+T").keys == ("ctrl", "shift", "t")


def test_off_screen_error_names_the_point_and_bounds():
    assert off_screen_error(Click(10, 10), 100, 100) is None
    message = off_screen_error(Drag(10, 10, 150, 10), 100, 100)
    assert "(150, 10)" in message and "0..99" in message
    assert off_screen_error(Type("x"), 1, 1) is None


def test_a_scroll_names_an_element_as_a_click_does():
    wheel = Scroll(element=3, dy=2)
    assert (wheel.x, wheel.y, wheel.dx, wheel.dy, element_of(wheel)) == (None, None, 0, 2, 3)
    assert action_to_dict(wheel) == {"kind": "scroll", "dx": 0, "dy": 2, "element": 3}
    assert action_from_dict(json.loads(json.dumps(action_to_dict(wheel)))) == wheel
    assert action_points(wheel) == [] and by_point(wheel) == wheel  # not yet resolved: no point to say
    resolved = Scroll(x=50, y=60, dy=2, element=3)  # where the sandbox turned the wheel
    assert action_from_dict(action_to_dict(resolved)) == resolved and element_of(resolved) == 3
    assert by_point(resolved) == Scroll(50, 60, dy=2) and element_of(by_point(resolved)) is None
    assert Scroll(0, 0, dy=-1) == Scroll(x=0, y=0, dx=0, dy=-1)  # the point forms are as they were
    assert element_of(Scroll(1, 2, dx=1)) is None
    with pytest.raises(ActionError, match="scroll needs x and y, or an element id"):
        Scroll(dy=2)
    with pytest.raises(ActionError, match="non-zero dx or dy"):
        Scroll(element=3)


def test_actions_are_frozen():
    with pytest.raises(AttributeError):
        Click(1, 2).x = 5  # type: ignore[misc]


def _task(**changes):
    base = dict(id="t1", instruction="Click OK", family="buttons", level=2, seed=7,
                setup=(SetupStep("launch", {"argv": ["xterm"]}),),
                oracle=(OracleStep(Click(3, 4)), OracleStep(Key(("enter",)))))
    base.update(changes)
    return Task(**base)


def test_task_round_trips_and_rejects_unknown_or_bad_fields():
    task = _task()
    assert from_json(Task, json.loads(json.dumps(to_json(task)))) == task
    data = to_json(task)
    with pytest.raises(RecordError, match="has no key 'colour'"):
        from_json(Task, {**data, "colour": "red"})
    with pytest.raises(RecordError, match=r"Task\.oracle\[1\]\.action: key\.keys: unknown key"):
        from_json(Task, {**data, "oracle": [data["oracle"][0], {"action": {"kind": "key", "keys": ["nope"]}}]})
    with pytest.raises(RecordError, match=r"Task\.level: expected an integer"):
        from_json(Task, {**data, "level": "2"})
    with pytest.raises(RecordError, match="Task.instruction is required"):
        from_json(Task, {k: v for k, v in data.items() if k != "instruction"})
    with pytest.raises(RecordError, match="SetupStep.kind 'format_disk'"):
        from_json(Task, {**data, "setup": [{"kind": "format_disk"}]})
    with pytest.raises(RecordError, match="format_version 9 is not supported"):
        from_json(Task, {**data, "format_version": 9})


def test_verdict_and_step_validation():
    with pytest.raises(RecordError, match=r"score must be within \[0, 1\]"):
        Verdict(task_id="t", trajectory_id="r", success=True, score=1.5, judge_id="j")
    with pytest.raises(RecordError, match="2 logprobs for 1 token ids"):
        Step(index=0, action=None, token_ids=(1,), logprobs=(-0.1, -0.2))
    with pytest.raises(RecordError, match="step 1 has index 5"):
        Trajectory(id="r", task_id="t", steps=(Step(0, None), Step(5, None)))


def test_jsonl_skips_and_repairs_a_torn_last_line(tmp_path):
    log = JsonlFile(tmp_path / "verdicts.jsonl")
    log.append({"n": 1})
    log.append({"n": 2})
    with open(log.path, "ab") as f:  # a write cut off by kill -9
        f.write(b'{"n": 3, "trunc')
    assert [r["n"] for r in log.read()] == [1, 2]
    again = JsonlFile(log.path)
    again.append({"n": 4})
    assert [r["n"] for r in again.read()] == [1, 2, 4]
    assert log.path.read_bytes().count(b"\n") == 3


def test_jsonl_corruption_in_the_middle_names_file_and_line(tmp_path):
    path = tmp_path / "metrics.jsonl"
    path.write_text('{"a": 1}\nnot json\n{"a": 2}\n')
    with pytest.raises(RecordError, match=r"metrics\.jsonl:2: not valid JSON"):
        list(JsonlFile(path).read())


def test_trajectory_writer_round_trip(tmp_path):
    run = RunDir.create(tmp_path / "run", {"seed": 1})
    writer = run.trajectory_writer("traj-1", "t1", "scripted")
    frame = writer.write_frame(0, b"\x89PNG fake")
    writer.append_step(Step(index=0, action=Click(1, 2), frame=frame, model_text="click",
                            token_ids=(1, 2), logprobs=(-0.5, -0.25)))
    writer.append_step(Step(index=1, action=None, action_error="could not parse"))
    partial = read_trajectory(run.path / "trajectories" / "traj-1")
    assert partial.end is None and len(partial.steps) == 2
    done = writer.finish(EndReason.STEP_LIMIT)
    loaded = read_trajectory(run.path / "trajectories" / "traj-1")
    assert loaded == done and loaded.end is EndReason.STEP_LIMIT
    assert loaded.steps[0].action == Click(1, 2) and loaded.steps[0].logprobs == (-0.5, -0.25)
    assert run.trajectory_ids() == ["traj-1"]


def test_run_dir_refuses_to_overwrite_and_checks_the_format(tmp_path):
    RunDir.create(tmp_path / "r", {"a": 1})
    with pytest.raises(Exception, match="already holds a run"):
        RunDir.create(tmp_path / "r", {"a": 2})
    assert RunDir.open(tmp_path / "r").config()["config"] == {"a": 1}
    with pytest.raises(Exception, match="not a run directory"):
        RunDir.open(tmp_path / "nothing")


def _checkpoint_then_die(path: str) -> None:
    run = RunDir.open(path)

    def fill(folder):
        (folder / "adapter.bin").write_bytes(b"x" * 1000)
        os._exit(9)  # killed in the middle of writing the checkpoint

    run.write_checkpoint(2, fill)


def test_a_checkpoint_killed_mid_write_is_never_seen(tmp_path):
    run = RunDir.create(tmp_path / "run", {})
    run.write_checkpoint(1, lambda folder: (folder / "adapter.bin").write_bytes(b"ok"))
    proc = multiprocessing.get_context("fork").Process(target=_checkpoint_then_die, args=(str(run.path),))
    proc.start()
    proc.join(30)
    assert proc.exitcode == 9
    assert [p.name for p in run.checkpoints()] == ["000001"]
    assert (run.latest_checkpoint() / "adapter.bin").read_bytes() == b"ok"
    run.write_checkpoint(2, lambda folder: (folder / "adapter.bin").write_bytes(b"two"))
    assert run.latest_checkpoint().name == "000002"


def test_import_deskdojo_loads_nothing_heavy():
    code = ("import sys, deskdojo, deskdojo.core, deskdojo.vm, deskdojo.cli;"
            "heavy = [m for m in ('numpy', 'torch', 'transformers', 'PyQt6', 'docker', 'PIL', 'cv2', 'ray')"
            " if m in sys.modules]; print(heavy)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_control_file_commands_are_seen_once_and_stale_ones_ignored(tmp_path):
    from deskdojo.core.control import ControlReader, read_status, send_control, status_is_live, write_status

    send_control(tmp_path, "pause")  # left over from an earlier process
    reader = ControlReader(tmp_path)
    assert reader.poll() is None
    send_control(tmp_path, "stop")
    assert reader.poll() == "stop"
    assert reader.poll() is None
    with pytest.raises(RunDirError, match="unknown run command 'explode'"):
        send_control(tmp_path, "explode")
    assert read_status(tmp_path) is None
    write_status(tmp_path, {"state": "running", "pid": os.getpid(), "iteration": 3})
    status = read_status(tmp_path)
    assert status["iteration"] == 3 and status_is_live(status)
    write_status(tmp_path, {"state": "finished", "pid": os.getpid()})
    assert not status_is_live(read_status(tmp_path))
    with pytest.raises(RunDirError, match="status.state"):
        write_status(tmp_path, {"state": "dancing"})


def test_oracle_locators_resolve_against_published_state():
    from deskdojo.core import Drag, Locator, StateCondition
    from deskdojo.core.oracle import literal_actions, resolve

    apps = {"form": {"app": "form", "focus": "name",
                     "widgets": {"ok": {"x": 10, "y": 20, "w": 30, "h": 10, "text": "OK"},
                                 "list": {"x": 0, "y": 0, "w": 100, "h": 100,
                                          "rows": [{"x": 0, "y": 40, "w": 100, "h": 20}]}},
                     "menubar": [{"label": "File", "x": 0, "y": 0, "w": 40, "h": 20}]}}
    assert resolve(OracleStep(Click(0, 0), at=Locator("form", path="widgets.ok")), apps) == Click(25, 25)
    assert resolve(OracleStep(Click(0, 0), at=Locator("form", text="OK", dx=3)), apps) == Click(28, 25)
    assert resolve(OracleStep(Click(0, 0), at=Locator("form", menu="File")), apps) == Click(20, 10)
    drag = OracleStep(Drag(0, 0, 0, 0), at=Locator("form", path="widgets.ok"),
                      to=Locator("form", path="widgets.list.rows.0"))
    assert resolve(drag, apps) == Drag(25, 25, 50, 50)
    with pytest.raises(KeyError, match="widgets.nope"):
        resolve(OracleStep(Click(0, 0), at=Locator("form", path="widgets.nope")), apps)
    with pytest.raises(KeyError, match="waiting for form.focus"):
        resolve(OracleStep(Type("x"), wait=StateCondition("form", "focus", "email")), apps)
    assert resolve(OracleStep(Type("x"), wait=StateCondition("form", "focus", "name")), apps) == Type("x")
    with pytest.raises(RecordError, match="exactly one of path, menu, text"):
        Locator("form", path="a", text="b")
    with pytest.raises(RecordError, match="no point for 'at'"):
        OracleStep(Type("x"), at=Locator("form", path="widgets.ok"))
    with pytest.raises(ValueError, match="reads app state"):
        literal_actions([drag])
    task = from_json(Task, json.loads(json.dumps(to_json(_task(oracle=(drag,))))))
    assert task.oracle == (drag,)


def test_state_path_reads_keys_that_contain_dots():
    from deskdojo.core.oracle import state_path

    state = {"widgets": {"dialog.name": {"x": 1}, "dialog": {"name": {"x": 2}}, "rows": [{"a.b": 3}]}}
    assert state_path(state, "widgets.dialog.name.x") == 1  # the longest key wins
    assert state_path(state, "widgets.rows.0.a.b") == 3
    with pytest.raises(KeyError, match="'widgets.nope'"):
        state_path(state, "widgets.nope.x")
    with pytest.raises(KeyError, match="'widgets.rows.5'"):
        state_path(state, "widgets.rows.5")


def test_errors_inside_nested_records_name_their_place():
    data = to_json(_task())
    data["oracle"] = [{"action": {"kind": "click", "x": 1, "y": 2}, "at": {"app": "form"}}]
    with pytest.raises(RecordError, match=r"^Task\.oracle\[0\]\.at: Locator for 'form' needs exactly one"):
        from_json(Task, data)
