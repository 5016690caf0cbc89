"""Admission: a generated task enters the curriculum only if its oracle passes its checks
and doing nothing fails them.

``admit`` resets a sandbox to the task, runs the oracle, judges (must pass); resets
again, does nothing, judges (must fail). A rejected task carries one of the stable
``REASONS`` (the keys of ``rejected_by_reason`` in ``deskdojo tasks check``):

- ``no_checks``: the task has nothing to check;
- ``setup_failed``: resetting the sandbox to the task failed (an app did not start, ...);
- ``oracle_error``: an oracle step could not be resolved or was refused;
- ``oracle_failed``: the oracle ran but the checks did not pass;
- ``noop_passed``: doing nothing already passes the checks;
- ``sandbox_died``: the sandbox died (infrastructure; the task itself may be fine).

``AdmissionLog`` appends each result, with the task, to a run's ``tasks.jsonl``.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from deskdojo.core.checks import validate_checks
from deskdojo.core.errors import SandboxDied, SandboxError
from deskdojo.core.oracle import OracleError, run_oracle
from deskdojo.core.protocols import Judge
from deskdojo.core.records import to_json
from deskdojo.core.rundir import JsonlFile
from deskdojo.core.types import EndReason, Step, Task, Trajectory, Verdict

REASONS = ("no_checks", "setup_failed", "oracle_error", "oracle_failed", "noop_passed", "sandbox_died")
APP_START_TIMEOUT_S = 10.0  # for the do-nothing run: the checked apps must have published a state


@dataclass(frozen=True, slots=True)
class AdmissionResult:
    """Whether a task was admitted, and why not. Scores are None for runs that did not happen."""

    task_id: str
    admitted: bool
    reason: str | None
    oracle_score: float | None
    noop_score: float | None
    seconds: float
    detail: str = ""


def _explain(verdict: Verdict) -> str:
    return "; ".join(f"{e.check}: {e.message or 'passed'} (observed {e.observed!r})"[:300]
                     for e in verdict.evidence)


def _wait_for_apps(sandbox: Any, task: Task, timeout: float) -> None:
    """Before judging the do-nothing run: let the apps the checks read publish their first
    state, so "nothing happened" is judged on real state, not on a missing app."""
    wanted = {str(c.args["app"]) for c in task.checks if c.getter == "app_state" and "app" in c.args}
    deadline = time.monotonic() + timeout
    while wanted - set(sandbox.app_state().get("apps", {})) and time.monotonic() < deadline:
        time.sleep(0.05)


def admit(task: Task, sandbox: Any, judge: Judge) -> AdmissionResult:
    """Run ``task``'s oracle and a do-nothing episode in ``sandbox`` and judge both.

    Never raises for a broken task or a dead sandbox: the reason says what happened.
    (Checks with unknown getters or metrics raise RecordError: validate tasks when
    they are made or loaded.)
    """
    started = time.monotonic()
    oracle_score: float | None = None
    noop_score: float | None = None

    def result(reason: str | None, detail: str = "") -> AdmissionResult:
        return AdmissionResult(task_id=task.id, admitted=reason is None, reason=reason,
                               oracle_score=oracle_score, noop_score=noop_score,
                               seconds=round(time.monotonic() - started, 3), detail=detail)

    validate_checks(task)
    if not task.checks:
        return result("no_checks", "the task has no checks")
    stage = "setup"
    try:
        sandbox.reset(task)
        stage = "oracle"
        try:
            actions = run_oracle(sandbox, task)
        except OracleError as exc:
            return result("oracle_error", str(exc))
        stage = "judge"
        trajectory = Trajectory(id=f"admission-oracle-{task.id}", task_id=task.id,
                                steps=tuple(Step(index=i, action=a) for i, a in enumerate(actions)),
                                end=EndReason.DONE, policy_id="oracle")
        verdict = judge.judge(task, trajectory, sandbox)
        oracle_score = verdict.score
        if not verdict.success:
            return result("oracle_failed", _explain(verdict))

        stage = "setup"
        sandbox.reset(task)
        stage = "judge"
        _wait_for_apps(sandbox, task, APP_START_TIMEOUT_S)
        trajectory = Trajectory(id=f"admission-noop-{task.id}", task_id=task.id, steps=(),
                                end=EndReason.DONE, policy_id="noop")
        verdict = judge.judge(task, trajectory, sandbox)
        noop_score = verdict.score
        if verdict.success:
            return result("noop_passed", _explain(verdict))
    except SandboxDied as exc:
        return result("sandbox_died", f"during {stage}: {exc}")
    except SandboxError as exc:
        if stage == "setup":
            return result("setup_failed", str(exc))
        alive = getattr(sandbox, "alive", lambda: True)
        if not alive():
            return result("sandbox_died", f"during {stage}: {exc}")
        return result("oracle_error" if stage == "oracle" else "oracle_failed", f"during {stage}: {exc}")
    return result(None)


def admission_record(task: Task, result: AdmissionResult) -> dict[str, Any]:
    """One ``tasks.jsonl`` line: the task and how its admission went."""
    return {"task": to_json(task), "admitted": result.admitted, "reason": result.reason,
            "time": time.time(), "oracle_score": result.oracle_score,
            "noop_score": result.noop_score, "seconds": result.seconds, "detail": result.detail}


class AdmissionLog:
    """Appends admission results to ``tasks.jsonl`` (in a run folder, or a given .jsonl path)."""

    def __init__(self, run_dir_or_path: str | os.PathLike[str] | Any):
        path = Path(getattr(run_dir_or_path, "path", run_dir_or_path))
        self.path = path if path.suffix == ".jsonl" else path / "tasks.jsonl"
        self.file = JsonlFile(self.path)

    def record(self, task: Task, result: AdmissionResult) -> None:
        self.file.append(admission_record(task, result))

    def read(self) -> list[dict[str, Any]]:
        return list(self.file.read())
