"""The world-state judge: runs a task's executable checks on the sandbox's final state
and labels each step of the trajectory from the world-state delta its action caused.

Three kinds of outcome stay apart. What the agent left behind (a missing file, an app
that published no state) is a failed check with evidence. A sandbox that cannot be
probed is not the agent's failure: ``SandboxError`` propagates out of ``judge`` so the
caller ends the episode as ``error`` (excluded from training) instead of scoring it.
Anything else raised while judging is a bug in a check or here: ``JudgeError`` names the
task and the run stops, rather than scoring a silent zero.
"""

from __future__ import annotations

from collections import Counter
from typing import Any, Iterable, Sequence

from deskdojo.core.oracle import wait_until_quiet, without_runtime_keys
from deskdojo.core.errors import JudgeError, SandboxError
from deskdojo.core.types import (
    CheckEvidence, StepLabel, Task, Trajectory, Verdict,
)
from deskdojo.world_model.checks import GetterFailed, Probes, evaluate
from deskdojo.world_model.grounding import DEFAULT_SIGMA, trajectory_grounding

SETTLE_TIMEOUT_S = 2.0
QUIET_S = 0.3  # states unchanged this long count as settled
POLL_S = 0.05


def checked_apps(task: Task) -> set[str]:
    """The practice apps whose state the task's checks read."""
    return {str(c.args["app"]) for c in task.checks if c.getter == "app_state" and "app" in c.args}


def settle(sandbox: Any, *, apps: Iterable[str] = (), timeout: float = SETTLE_TIMEOUT_S,
           quiet: float = QUIET_S) -> bool:
    """Wait until the published app states stop changing (and ``apps`` have published one),
    at most ``timeout`` seconds. True when they settled, False when time ran out."""
    wanted = set(apps)
    _, settled = wait_until_quiet(
        lambda: {name: without_runtime_keys(state) for name, state in sandbox.app_state().get("apps", {}).items()},
        quiet=quiet, timeout=timeout, ready=lambda view, waited: wanted <= set(view), poll=POLL_S)
    return settled


def step_labels(trajectory: Trajectory) -> tuple[tuple[StepLabel, ...], int | None]:
    """Per-step labels and the first error step. ``error``: the action did not parse or was
    refused; ``no-op``: its recorded delta is empty, or a later step undid what it changed
    (see ``undone_steps``); ``progress``: otherwise (also when no delta was recorded)."""
    undone = undone_steps(trajectory)
    labels = []
    for step in trajectory.steps:
        if step.action is None or step.action_error:
            labels.append(StepLabel.ERROR)
        elif (step.delta is not None and not step.delta) or step.index in undone:
            labels.append(StepLabel.NO_OP)
        else:
            labels.append(StepLabel.PROGRESS)
    first_error = next((i for i, label in enumerate(labels) if label is StepLabel.ERROR), None)
    return tuple(labels), first_error


def undone_steps(trajectory: Trajectory) -> set[int]:
    """Steps whose changes later steps took back: from the left, the shortest run of steps
    that starts with a change and leaves every value it touched as it found it (tick, untick;
    open a menu, close it). A success reinforced with them teaches the policy to repeat a
    click. A step without a recorded delta, or a changed file (its content is not kept), ends
    every run through it."""
    steps = trajectory.steps
    found: set[int] = set()
    start = 0
    while start < len(steps):
        end = _net_zero_end(steps, start) if steps[start].delta else None
        if end is None:
            start += 1
            continue
        found.update(range(start, end + 1))
        start = end + 1
    return found


def _net_zero_end(steps: Sequence[Any], start: int) -> int | None:
    first: dict[tuple[str, ...], Any] = {}  # a value as it was before ``start``
    last: dict[tuple[str, ...], Any] = {}
    counts: Counter[tuple[str, ...]] = Counter()  # added/opened/created +1, removed/closed/deleted -1
    for index in range(start, len(steps)):
        delta = steps[index].delta
        if delta is None or delta.get("files", {}).get("changed"):
            return None
        for app, change in delta.get("apps", {}).items():
            for path, (old, new) in change.get("changed", {}).items():
                first.setdefault(("app", app, path), old)
                last[("app", app, path)] = new
            for sign, kind in ((1, "added"), (-1, "removed")):
                for path in change.get(kind, ()):
                    counts[("app", app, path)] += sign
        for sign, kind in ((1, "opened"), (-1, "closed")):
            for title in delta.get("windows", {}).get(kind, ()):
                counts[("window", title)] += sign
        for sign, kind in ((1, "created"), (-1, "deleted")):
            for path in delta.get("files", {}).get(kind, ()):
                counts[("file", path)] += sign
        if index > start and all(last[k] == v for k, v in first.items()) and not any(counts.values()):
            return index
    return None


class StateJudge:
    """Judges from ground truth: the task's checks over the sandbox's state after settling,
    and how near the clicks landed to the oracle's targets in that state (``grounding``,
    a Gaussian of width ``grounding_sigma`` box sizes; see ``world_model.grounding``)."""

    def __init__(self, judge_id: str = "state", *, settle_timeout: float = SETTLE_TIMEOUT_S,
                 quiet: float = QUIET_S, grounding_sigma: float = DEFAULT_SIGMA):
        if not grounding_sigma > 0:
            raise ValueError(f"grounding_sigma must be > 0, got {grounding_sigma}")
        self.judge_id = judge_id
        self.settle_timeout = settle_timeout
        self.quiet = quiet
        self.grounding_sigma = grounding_sigma

    def judge(self, task: Task, trajectory: Trajectory, sandbox: Any | None) -> Verdict:
        labels, first_error = step_labels(trajectory)

        def verdict(success: bool, score: float, evidence: tuple[CheckEvidence, ...],
                    grounding: float | None = None) -> Verdict:
            return Verdict(task_id=task.id, trajectory_id=trajectory.id, success=success, score=score,
                           judge_id=self.judge_id, evidence=evidence, step_labels=labels,
                           first_error_step=first_error, grounding=grounding)

        if sandbox is None:
            return verdict(False, 0.0, (CheckEvidence("probe", False, 0.0,
                                                      message="no sandbox to probe: the state judge "
                                                              "needs the episode's sandbox"),))
        try:
            settle(sandbox, apps=checked_apps(task), timeout=self.settle_timeout, quiet=self.quiet)
            probes = Probes(sandbox)
            success, score, evidence = evaluate(task, sandbox, probes=probes)
            grounding = self._grounding(task, trajectory, probes)
        except SandboxError:
            raise  # infrastructure: the caller ends the episode as error, never a score
        except Exception as exc:
            raise JudgeError(f"judging task {task.id!r} (trajectory {trajectory.id}) crashed with "
                             f"{type(exc).__name__}: {exc} — a bug in the task's checks or in the "
                             f"judge, not the agent's doing; fix the check (validate it with "
                             f"deskdojo.core.checks.validate_checks) or report it") from exc
        return verdict(success, score, evidence, grounding)

    def _grounding(self, task: Task, trajectory: Trajectory, probes: Probes) -> float | None:
        """Grounding in the state the checks read (None when the task names no targets or
        that state cannot be read: the outcome stands either way)."""
        if not task.oracle:
            return None
        try:
            apps = probes.apps().get("apps", {})
        except GetterFailed:
            return None
        return trajectory_grounding(task, trajectory, apps, self.grounding_sigma)
