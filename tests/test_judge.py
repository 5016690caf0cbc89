"""The state judge (step labels, probe failures as evidence) and the world probe's deltas,
on stubs and on a real xvfb sandbox."""

from __future__ import annotations

from typing import Any

import pytest

from deskdojo.core.actions import Click, Type
from deskdojo.core.errors import SandboxDied, SandboxError
from deskdojo.core.oracle import center
from deskdojo.core.protocols import Judge, WorldProbe
from deskdojo.core.types import Check, Step, StepLabel, Task, Trajectory
from deskdojo.curriculum.families.base import launch
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


class BrokenSandbox:
    def __init__(self, error: Exception):
        self.error = error

    def app_state(self) -> Any:
        raise self.error


def test_a_failing_probe_is_a_verdict_with_the_error_as_evidence():
    judge = StateJudge()
    assert isinstance(judge, Judge) and judge.judge_id == "state"
    verdict = judge.judge(TASK, trajectory(Step(0, None)), BrokenSandbox(SandboxError("app_state failed (500)")))
    assert not verdict.success and verdict.score == 0.0
    assert "500" in verdict.evidence[0].message and verdict.first_error_step == 0
    verdict = judge.judge(TASK, trajectory(), None)
    assert not verdict.success and "no sandbox" in verdict.evidence[0].message


def test_a_dead_sandbox_propagates_out_of_the_judge():
    with pytest.raises(SandboxDied):
        StateJudge().judge(TASK, trajectory(), BrokenSandbox(SandboxDied("container exited")))


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
