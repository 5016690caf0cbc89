"""The Judge contract (``core.protocols.Judge``), run by the fake and the real judge alike:
a Verdict about the given task and trajectory, a score in [0, 1] that agrees with
success, one step label per step, and a dead sandbox is an error, never a score."""

from __future__ import annotations

import pytest

from deskdojo.core.actions import Click
from deskdojo.core.errors import SandboxDied
from deskdojo.core.fakes import FixedJudge
from deskdojo.core.protocols import Judge
from deskdojo.core.types import Check, EndReason, Step, Task, Trajectory, Verdict
from deskdojo.vm.fake import FakeSandbox, synthetic_frames
from deskdojo.world_model.hybrid import HybridJudge
from deskdojo.world_model.judge import StateJudge
from deskdojo.world_model.vlm_judge import ScriptedJudgeModel, VLMJudge

TASK = Task(id="judge-contract", instruction="set the value", family="contract",
            checks=(Check(getter="app_state", args={"app": "form", "path": "value"}, metric="equals",
                          expected="pear"),))
TRAJECTORY = Trajectory(id="traj-1", task_id=TASK.id, end=EndReason.DONE,
                        steps=(Step(index=0, action=Click(3, 3)), Step(index=1, action=None, action_error="no parse")))


def _sandbox(value: str) -> FakeSandbox:
    sandbox = FakeSandbox(synthetic_frames(32, 24))
    sandbox.state["form"] = {"value": value}
    return sandbox


VLM_ANSWER = ('{"success": false, "score": 0.0, "first_error_step": 1, "redundant_steps": [], '
              '"error_type": "wrong_target", "correct_action": null, "rationale": "not set"}')


def _vlm() -> VLMJudge:
    return VLMJudge(ScriptedJudgeModel(lambda prompt: VLM_ANSWER), None)


@pytest.fixture(params=["fixed", "state", "vlm", "hybrid", "hybrid-both"])
def judge(request, tmp_path) -> Judge:
    if request.param == "fixed":
        return FixedJudge(success=True)
    if request.param == "vlm":
        return _vlm()
    if request.param.startswith("hybrid"):
        mode = "both" if request.param == "hybrid-both" else "fallback"
        return HybridJudge(StateJudge(settle_timeout=0.2, quiet=0.0), _vlm(), mode=mode,
                           disagreements=tmp_path / "disagreements.jsonl")
    return StateJudge(settle_timeout=0.2, quiet=0.0)


def _check_verdict(judge: Judge, verdict: Verdict) -> None:
    assert verdict.task_id == TASK.id and verdict.trajectory_id == TRAJECTORY.id
    assert verdict.judge_id == judge.judge_id
    assert 0.0 <= verdict.score <= 1.0
    assert verdict.success is (verdict.score == 1.0) or not verdict.success
    assert len(verdict.step_labels) in (0, len(TRAJECTORY.steps))


def test_it_is_a_judge(judge):
    assert isinstance(judge, Judge) and judge.judge_id


@pytest.mark.parametrize("value", ["pear", "plum"])
def test_a_verdict_about_the_given_task_and_trajectory(judge, value):
    sandbox = _sandbox(value)
    try:
        _check_verdict(judge, judge.judge(TASK, TRAJECTORY, sandbox))
    finally:
        sandbox.close()


def test_the_state_judge_follows_the_world():
    judge = StateJudge(settle_timeout=0.2, quiet=0.0)
    for value, success in (("pear", True), ("plum", False)):
        sandbox = _sandbox(value)
        try:
            verdict = judge.judge(TASK, TRAJECTORY, sandbox)
        finally:
            sandbox.close()
        assert verdict.success is success and verdict.score == float(success)


@pytest.mark.parametrize("probing_judge", [
    StateJudge(settle_timeout=0.2, quiet=0.0),
    HybridJudge(StateJudge(settle_timeout=0.2, quiet=0.0), _vlm()),
    "vlm-after-step-limit",
], ids=["state", "hybrid", "vlm"])
def test_a_dead_sandbox_is_an_error_not_a_score(probing_judge):
    """For every judge that probes the sandbox (the fixed one never looks; the VLM judge
    reads the screen after the last action when the episode did not end with done)."""
    trajectory = TRAJECTORY
    if probing_judge == "vlm-after-step-limit":
        probing_judge = _vlm()
        trajectory = Trajectory(id=TRAJECTORY.id, task_id=TASK.id, steps=TRAJECTORY.steps,
                                end=EndReason.STEP_LIMIT)
    sandbox = _sandbox("pear")
    sandbox.kill()
    with pytest.raises(SandboxDied):
        probing_judge.judge(TASK, trajectory, sandbox)
    sandbox.close()
