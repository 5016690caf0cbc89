"""The state judge (step labels; agent outcomes as evidence, sandbox errors and bugs raised)
and the world probe's deltas, on stubs and on a real xvfb sandbox."""

from __future__ import annotations

from typing import Any

import pytest

from deskdojo.core.actions import Click, Type
from deskdojo.core.errors import GuestRequestError, JudgeError, SandboxDied, SandboxError, SandboxTimeout
from deskdojo.core.oracle import center
from deskdojo.core.protocols import Judge, WorldProbe
from deskdojo.core.types import Check, Step, StepLabel, Task, Trajectory
from deskdojo.curriculum.families.base import launch
from deskdojo.world_model.checks import GETTERS, METRICS
from deskdojo.world_model.judge import StateJudge, settle, step_labels
from deskdojo.world_model.probe import StateProbe, app_delta, without_noise

TASK = Task(id="judge-demo", instruction="Click the button labelled “pepper”.", family="test",
            setup=(launch("buttons", {"seed": 9, "labels": ["pepper", "salt"]}),),
            checks=(Check("app_state", "includes", {"app": "buttons", "path": "history"}, ["pepper"]),
                    Check("file", "equals", {"path": "~/notes.txt"}, "hello")))


def trajectory(*steps: Step) -> Trajectory:
    return Trajectory(id="traj", task_id=TASK.id, steps=steps)


def test_steps_are_labelled_from_their_deltas_and_errors():
    steps = (Step(0, Click(1, 1), delta={"apps": {"buttons": {"changed": {"last": [None, "salt"]}}}}),
             Step(1, Click(2, 2), delta={}),
             Step(2, None, model_text="click(?)"),
             Step(3, Click(9999, 1), action_error="point is off the screen", delta={}),
             Step(4, Type("x")))  # no delta recorded
    labels, first_error = step_labels(trajectory(*steps))
    assert labels == (StepLabel.PROGRESS, StepLabel.NO_OP, StepLabel.ERROR, StepLabel.ERROR, StepLabel.PROGRESS)
    assert first_error == 2
    assert step_labels(trajectory(Step(0, Click(1, 1), delta={})))[1] is None


def tick(app: str, name: str, old: bool) -> dict[str, Any]:
    return {"apps": {app: {"changed": {f"checked.{name}": [old, not old]}}}}


def test_steps_a_later_step_undid_are_no_ops():
    """Tick, untick, tick, then the radio: the first two took each other back (no-op), the
    third tick and the radio stay. A menu opened and closed is undone too; an app that
    started, a changed file or a step without a delta is never taken back."""
    menu = {"apps": {"menus": {"changed": {"open_menus": [[], ["File"]]}}}}
    close = {"apps": {"menus": {"changed": {"open_menus": [["File"], []]}}}}
    radio = {"apps": {"choices": {"changed": {"radios.colour": ["Gray", "Khaki"]}}}}
    steps = (Step(0, Click(1, 1), delta=tick("choices", "rabbit", False)),
             Step(1, Click(1, 1), delta=tick("choices", "rabbit", True)),
             Step(2, Click(1, 1), delta=tick("choices", "rabbit", False)),
             Step(3, Click(2, 2), delta=radio),
             Step(4, Click(3, 3), delta=menu), Step(5, Click(3, 3), delta={}), Step(6, Click(3, 3), delta=close))
    labels, _ = step_labels(trajectory(*steps))
    assert [label.value for label in labels] == ["no-op", "no-op", "progress", "progress", "no-op", "no-op", "no-op"]
    started = {"apps": {"editor": {"added": ["."]}}}
    saved = {"files": {"changed": ["~/notes.txt"]}}
    for kept in ((Step(0, Click(1, 1), delta=started), Step(1, Click(1, 1), delta={"apps": {"editor": {"added": ["x"]}}})),
                 (Step(0, Click(1, 1), delta=tick("c", "a", False)), Step(1, Click(1, 1), delta=saved),
                  Step(2, Click(1, 1), delta=tick("c", "a", True))),
                 (Step(0, Click(1, 1), delta=tick("c", "a", False)), Step(1, Type("x")),
                  Step(2, Click(1, 1), delta=tick("c", "a", True)))):
        assert StepLabel.PROGRESS in step_labels(trajectory(*kept))[0][:1], kept


class BrokenSandbox:
    def __init__(self, error: Exception):
        self.error = error

    def app_state(self) -> Any:
        raise self.error


@pytest.mark.parametrize("error", [SandboxError("the guest server failed GET /v1/app_state (500)"),
                                   SandboxTimeout("no answer within 30 s"), SandboxDied("container exited")],
                         ids=lambda e: type(e).__name__)
def test_a_sandbox_that_cannot_be_probed_is_an_error_never_a_score(error: SandboxError):
    """Infrastructure trouble propagates (the loop ends the episode as ``error``); it used to
    be a verdict with score 0, i.e. a training failure with a real advantage."""
    judge = StateJudge()
    assert isinstance(judge, Judge) and judge.judge_id == "state"
    with pytest.raises(type(error)) as raised:
        judge.judge(TASK, trajectory(Step(0, None)), BrokenSandbox(error))
    assert raised.value is error
    verdict = judge.judge(TASK, trajectory(), None)
    assert not verdict.success and "no sandbox" in verdict.evidence[0].message


class EmptySandbox:
    """A sandbox where the agent left nothing: no app published state, no file was written."""

    def app_state(self) -> Any:
        return {"apps": {}, "errors": {}}

    def read_file(self, path: str) -> bytes:
        raise GuestRequestError(f"no such file in the sandbox: {path}", 404)

    def windows(self) -> tuple[()]:
        return ()


def test_what_the_agent_left_behind_is_a_failed_check_with_evidence():
    verdict = StateJudge(settle_timeout=0.05).judge(TASK, trajectory(Step(0, None)), EmptySandbox())
    assert (verdict.success, verdict.score, verdict.first_error_step) == (False, 0.0, 0)
    assert [e.passed for e in verdict.evidence] == [False, False]
    assert "'buttons' has published no state" in verdict.evidence[0].message
    assert verdict.evidence[1].observed is None and "expected equals" in verdict.evidence[1].message


def _broken_getter(probes: Any, args: Any) -> Any:
    return {"apps": {}}["apps"]["buttons"]  # a KeyError in our own code


def _broken_metric(observed: Any, expected: Any, options: Any) -> float:
    return len(observed) / None  # a TypeError in our own code


@pytest.mark.parametrize("table, name, bug, cause", [(GETTERS, "app_state", _broken_getter, KeyError),
                                                     (METRICS, "equals", _broken_metric, TypeError)])
def test_a_check_that_crashes_in_our_code_stops_the_run_naming_the_task(monkeypatch, table, name, bug, cause):
    monkeypatch.setitem(table, name, bug)
    with pytest.raises(JudgeError, match=r"judging task 'judge-demo' \(trajectory traj\) crashed with "
                                         + cause.__name__) as raised:
        StateJudge(settle_timeout=0.05).judge(TASK, trajectory(), EmptySandbox())
    assert isinstance(raised.value.__cause__, cause)


def test_deltas_ignore_geometry_and_runtime_keys_and_name_paths():
    before = {"buttons": without_noise({"clicks": {"a": 0}, "widgets": {"b": {"x": 1, "y": 2, "w": 3, "h": 4,
                                                                             "text": "a"}}})}
    after = {"buttons": without_noise({"clicks": {"a": 1, "b": 0}, "widgets": {"b": {"x": 9, "y": 9, "w": 3,
                                                                                     "h": 4, "text": "A"}}}),
             "form": {"values": {}}}
    assert app_delta(before, after) == {
        "buttons": {"changed": {"clicks.a": [0, 1], "widgets.b.text": ["a", "A"]}, "added": ["clicks.b"]},
        "form": {"added": ["."]}}
    assert app_delta(after, before)["form"] == {"removed": ["."]}
    assert app_delta(before, before) == {}


@pytest.mark.display
def test_probe_deltas_on_a_real_sandbox(box):
    probe = StateProbe()
    assert isinstance(probe, WorldProbe)
    box.reset(TASK)
    assert settle(box, apps=["buttons"], timeout=8.0)
    before = probe.snapshot(box)
    assert "deskdojo buttons" in before["windows"] and "buttons" in before["apps"]
    assert probe.delta(before, probe.snapshot(box)) == {}  # nothing happened

    state = box.app_state()["apps"]["buttons"]
    assert box.act(Click(*center(state["widgets"]["button:pepper"]))).ok
    settle(box)
    clicked = probe.snapshot(box)
    delta = probe.delta(before, clicked)
    assert delta["apps"]["buttons"]["changed"]["clicks.pepper"] == [0, 1]
    assert delta["apps"]["buttons"]["changed"]["last"] == [None, "pepper"]
    assert set(delta) == {"apps"}

    box.write_file("~/notes.txt", b"hello")
    written = probe.snapshot(box)
    assert probe.delta(clicked, written) == {"files": {"created": ["~/notes.txt"]}}
    box.write_file("~/notes.txt", b"hello again")
    assert probe.delta(written, probe.snapshot(box)) == {"files": {"changed": ["~/notes.txt"]}}

    verdict = StateJudge().judge(TASK, trajectory(Step(0, Click(1, 1), delta=delta)), box)
    assert not verdict.success
    assert [e.passed for e in verdict.evidence] == [True, False]  # "hello again" != "hello"
    assert verdict.score == 0.5 and verdict.step_labels == (StepLabel.PROGRESS,)


@pytest.mark.display
def test_the_judge_passes_a_solved_task_and_reads_a_missing_file_as_evidence(box):
    box.reset(TASK)
    settle(box, apps=["buttons"], timeout=8.0)
    verdict = StateJudge().judge(TASK, trajectory(), box)
    assert not verdict.success and verdict.score == 0.0
    assert "expected equals" in verdict.evidence[1].message and verdict.evidence[1].observed is None
    state = box.app_state()["apps"]["buttons"]
    box.act(Click(*center(state["widgets"]["button:pepper"])))
    box.write_file("~/notes.txt", b"hello")
    verdict = StateJudge().judge(TASK, trajectory(), box)  # settles before probing
    assert verdict.success and verdict.score == 1.0
