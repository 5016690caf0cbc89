"""Admission: a task is admitted only when its oracle passes and doing nothing fails; each
rejection carries its stable reason. Real tasks in a real xvfb sandbox."""

from __future__ import annotations


import pytest

from deskdojo.core.actions import Click
from deskdojo.core.errors import SandboxDied
from deskdojo.core.types import Check, Locator, OracleStep, SetupStep, Task
from deskdojo.curriculum.admission import REASONS, AdmissionLog, AdmissionResult, admit
from deskdojo.curriculum.families.base import launch
from deskdojo.world_model.judge import StateJudge

SETUP = (launch("buttons", {"seed": 5, "labels": ["pepper", "salt", "cumin"]}),)
CLICK_PEPPER = (OracleStep(Click(0, 0), at=Locator("buttons", path="widgets.button:pepper")),)


def task(checks: tuple[Check, ...], *, oracle: tuple[OracleStep, ...] = CLICK_PEPPER,
         setup: tuple[SetupStep, ...] = SETUP, task_id: str = "adm") -> Task:
    return Task(id=task_id, instruction="Click the button labelled “pepper”.", family="test",
                setup=setup, checks=checks, oracle=oracle)


def clicks(label: str, count: int) -> Check:
    return Check("app_state", "equals", {"app": "buttons", "path": f"clicks.{label}"}, count)


@pytest.mark.display
def test_a_good_task_is_admitted_with_full_oracle_and_zero_noop_scores(box):
    result = admit(task((clicks("pepper", 1), clicks("salt", 0))), box, StateJudge())
    assert result.admitted and result.reason is None, result.detail
    assert (result.oracle_score, result.noop_score) == (1.0, 0.5)  # salt stays 0 either way
    assert result.seconds > 0


@pytest.mark.display
def test_a_task_that_passes_when_nothing_is_done_is_rejected(box):
    result = admit(task((clicks("salt", 0),)), box, StateJudge())
    assert (result.admitted, result.reason) == (False, "noop_passed")
    assert (result.oracle_score, result.noop_score) == (1.0, 1.0)


@pytest.mark.display
def test_a_task_whose_oracle_fails_its_checks_is_rejected(box):
    result = admit(task((clicks("salt", 1),)), box, StateJudge())
    assert (result.admitted, result.reason, result.oracle_score) == (False, "oracle_failed", 0.0)
    assert "clicks.salt" in result.detail and "observed 0" in result.detail


@pytest.mark.display
def test_an_oracle_step_that_cannot_resolve_is_an_oracle_error(box):
    lost = (OracleStep(Click(0, 0), at=Locator("buttons", path="widgets.button:saffron"), timeout=0.5),)
    result = admit(task((clicks("pepper", 1),), oracle=lost), box, StateJudge())
    assert (result.admitted, result.reason, result.oracle_score) == (False, "oracle_error", None)
    assert "saffron" in result.detail


@pytest.mark.display
def test_a_setup_that_fails_is_rejected_as_setup_failed(box):
    broken = (SetupStep("run", {"argv": ["false"]}),)
    result = admit(task((clicks("pepper", 1),), setup=broken), box, StateJudge())
    assert (result.admitted, result.reason) == (False, "setup_failed")


def test_a_task_without_checks_is_rejected_before_touching_a_sandbox():
    result = admit(task(()), None, StateJudge())
    assert (result.admitted, result.reason) == (False, "no_checks")


class DyingSandbox:
    def reset(self, task: Task | None = None) -> None:
        raise SandboxDied("its container exited")


def test_a_dead_sandbox_is_a_reason_not_an_exception():
    result = admit(task((clicks("pepper", 1),)), DyingSandbox(), StateJudge())
    assert (result.admitted, result.reason) == (False, "sandbox_died")
    assert "container exited" in result.detail
    assert set(REASONS) >= {"setup_failed", "oracle_error", "oracle_failed", "noop_passed",
                            "no_checks", "sandbox_died"}


def test_the_admission_log_appends_the_task_and_its_result(tmp_path):
    log = AdmissionLog(tmp_path)
    good = task((clicks("pepper", 1),))
    log.record(good, AdmissionResult("adm", True, None, 1.0, 0.0, 1.25))
    log.record(good, AdmissionResult("adm", False, "noop_passed", 1.0, 1.0, 0.5, "salt stayed 0"))
    rows = AdmissionLog(tmp_path / "tasks.jsonl").read()
    assert [r["admitted"] for r in rows] == [True, False]
    assert rows[1]["reason"] == "noop_passed" and rows[0]["task"]["id"] == "adm"
    assert rows[0]["task"]["checks"][0]["args"] == {"app": "buttons", "path": "clicks.pepper"}
    assert {"time", "oracle_score", "noop_score", "seconds"} <= set(rows[0])
