"""Fakes for the Policy, Judge and TaskSource protocols, for unit tests of other parts.

(The fake Sandbox lives in ``deskdojo.vm.fake``: it needs numpy and PIL.)
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

from deskdojo.core.actions import Action, Wait, action_to_dict
from deskdojo.core.protocols import Decision, DeterministicPolicy, Sandbox
from deskdojo.core.oracle import resolve
from deskdojo.core.types import Observation, OracleStep, Task, Trajectory, Verdict


WAITING = "oracle: waiting:"  # marks decisions that wait for app state (not script steps)


class ScriptedPolicy(DeterministicPolicy):
    """Plays a fixed list of actions, or the task's oracle when none is given (oracle steps
    with locators resolve against the Observation's ``app_state`` when it carries one)."""

    def __init__(self, actions: Sequence[Action] | None = None, policy_id: str = "scripted"):
        self.actions = tuple(actions) if actions is not None else None
        self.policy_id = policy_id

    def act(self, observations: Sequence[Observation | Sequence[Observation]], tasks: Sequence[Task],
            histories: Sequence[Sequence[Decision]]) -> list[Decision]:
        decisions = []
        for observation, task, history in zip(observations, tasks, histories):
            if not isinstance(observation, Observation):  # a window, oldest first: act on the newest
                observation = observation[-1]
            script = self.actions if self.actions is not None else task.oracle
            done = sum(1 for d in history if not d.text.startswith(WAITING))
            if done >= len(script):
                decisions.append(Decision(text="", action=None, parse_error="script exhausted"))
                continue
            action = script[done]
            if isinstance(action, OracleStep):
                apps = (observation.app_state or {}).get("apps", {})
                try:
                    action = resolve(action, apps)
                except (KeyError, IndexError, TypeError) as exc:
                    # The app has not published what this step needs yet (it may still be
                    # mapping its window): wait a moment rather than lose the step.
                    decisions.append(Decision(text=f"{WAITING} {exc}", action=Wait(0.1)))
                    continue
            decisions.append(Decision(text=str(action_to_dict(action)), action=action))
        return decisions


class FixedJudge:
    """Returns the same outcome for every trajectory."""

    def __init__(self, success: bool = True, score: float | None = None, judge_id: str = "fixed"):
        self.success = success
        self.score = (1.0 if success else 0.0) if score is None else score
        self.judge_id = judge_id

    def judge(self, task: Task, trajectory: Trajectory, sandbox: Sandbox | None) -> Verdict:
        return Verdict(task_id=task.id, trajectory_id=trajectory.id, success=self.success,
                       score=self.score, judge_id=self.judge_id)


class ListTaskSource:
    """Proposes tasks from a list, round robin, and remembers the verdicts it was given."""

    def __init__(self, tasks: Sequence[Task]):
        if not tasks:
            raise ValueError("ListTaskSource needs at least one task")
        self.tasks = list(tasks)
        self.cursor = 0
        self.verdicts: list[Verdict] = []

    def propose(self, n: int) -> list[Task]:
        out = [self.tasks[(self.cursor + i) % len(self.tasks)] for i in range(n)]
        self.cursor = (self.cursor + n) % len(self.tasks)
        return out

    def update(self, verdicts: Sequence[Verdict]) -> None:
        self.verdicts.extend(verdicts)

    def state_dict(self) -> dict[str, Any]:
        return {"cursor": self.cursor}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.cursor = int(state["cursor"]) % len(self.tasks)
