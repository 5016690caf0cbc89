"""The curriculum as a TaskSource: the scheduler picks (family, level), the family makes a
training task with a fresh seed, admission keeps only tasks whose oracle passes and whose
do-nothing run fails; verdicts flow back to the scheduler.

Held-out evaluation tasks come from ``heldout_tasks``: fixed seeds in the held-out range
and held-out word pools, never proposed for training. ``state_dict``/``from_state``
carry the seed cursors, the admission cache and the scheduler across a resume.
"""

from __future__ import annotations

import dataclasses
import statistics
from collections import defaultdict
from typing import Any, Callable, Mapping, Sequence

from deskdojo.core.errors import DeskdojoError
from deskdojo.core.types import Split, Task, Verdict
from deskdojo.curriculum.admission import AdmissionLog, AdmissionResult, admit
from deskdojo.curriculum.families.base import HELDOUT_SEED_BASE, Family
from deskdojo.curriculum.scheduler import Scheduler, SchedulerConfig

STATE_FORMAT_VERSION = 1
MAX_TRIES_PER_TASK = 8  # rejected or retired tasks are replaced, up to this many draws


class CurriculumError(DeskdojoError):
    """The curriculum could not produce an admitted task."""


class Curriculum:
    """TaskSource over task families with a Scheduler and admission.

    ``sandbox`` (any Sandbox) runs admission; without one, tasks are proposed unadmitted
    (for dry runs and tests of the wiring). ``judge`` is handed to admission (default:
    the world-state judge). ``log`` is an AdmissionLog (a run's ``tasks.jsonl``).
    """

    def __init__(self, families: Mapping[str, Family] | None = None, *, sandbox: Any | None = None,
                 judge: Any | None = None, scheduler: Scheduler | None = None,
                 scheduler_config: SchedulerConfig | None = None, log: AdmissionLog | None = None,
                 admit_fn: Callable[..., AdmissionResult] = admit):
        if families is None:
            from deskdojo.curriculum.families import all_families
            families = all_families()
        if not families:
            raise CurriculumError("the curriculum needs at least one task family")
        self.families = dict(families)
        self.scheduler = scheduler or Scheduler({n: f.levels for n, f in self.families.items()}, scheduler_config)
        self.sandbox = sandbox
        self.judge = judge
        self.log = log
        self.admit_fn = admit_fn
        self.next_seed: dict[str, int] = {name: 0 for name in self.families}
        self.admissions: dict[str, dict[str, Any]] = {}  # task id -> AdmissionResult fields
        self.proposed: dict[str, tuple[str, int]] = {}  # task id -> (family, level)

    # --- TaskSource ---------------------------------------------------------------------

    def propose(self, n: int) -> list[Task]:
        return [self._admitted_task(family, level) for family, level in self.scheduler.choose(n)]

    def update(self, verdicts: Sequence[Verdict], advantages: Mapping[str, float] | None = None) -> None:
        """Record each task's group of verdicts. ``advantages`` (trajectory id -> advantage)
        default to the group-normalised scores, as GRPO computes them."""
        groups: dict[str, list[Verdict]] = defaultdict(list)
        for verdict in verdicts:
            if verdict.task_id in self.proposed:  # held-out and foreign tasks are not the scheduler's
                groups[verdict.task_id].append(verdict)
        for task_id, group in groups.items():
            family, level = self.proposed[task_id]
            if advantages is not None and all(v.trajectory_id in advantages for v in group):
                values = [advantages[v.trajectory_id] for v in group]
            else:
                values = group_advantages([v.score for v in group])
            self.scheduler.record(family, level, task_id, [v.success for v in group],
                                  sum(abs(a) for a in values) / len(values), split="train")

    # --- held-out evaluation ------------------------------------------------------------

    def heldout_tasks(self, per_family_level: int = 2) -> list[Task]:
        """The fixed held-out set: ``per_family_level`` tasks of each family and level."""
        return [family.generate(level, HELDOUT_SEED_BASE + k, Split.HELDOUT)
                for family in self.families.values() for level in range(family.levels)
                for k in range(per_family_level)]

    # --- making tasks -------------------------------------------------------------------

    def _admitted_task(self, family_name: str, level: int) -> Task:
        family = self.families[family_name]
        reasons = []
        for _ in range(MAX_TRIES_PER_TASK):
            seed = self.next_seed[family_name]
            self.next_seed[family_name] = seed + 1
            task = family.generate(level, seed, Split.TRAIN)
            if self.scheduler.is_retired(task.id):
                continue
            result = self._admission(task)
            if result is None or result["admitted"]:
                self.proposed[task.id] = (family_name, level)
                return task
            reasons.append(f"{task.id}: {result['reason']}")
        raise CurriculumError(f"{family_name} level {level}: no admitted task in {MAX_TRIES_PER_TASK} draws "
                              f"({'; '.join(reasons) or 'all retired'})")

    def _admission(self, task: Task) -> dict[str, Any] | None:
        if self.sandbox is None:
            return None
        if task.id not in self.admissions:
            result = self.admit_fn(task, self.sandbox, self.judge)
            self.admissions[task.id] = dataclasses.asdict(result)
            if self.log is not None:
                self.log.record(task, result)
        return self.admissions[task.id]

    # --- resume -------------------------------------------------------------------------

    def state_dict(self) -> dict[str, Any]:
        return {"format_version": STATE_FORMAT_VERSION, "next_seed": dict(self.next_seed),
                "admissions": dict(self.admissions),
                "proposed": {k: list(v) for k, v in self.proposed.items()},
                "scheduler": self.scheduler.state_dict()}

    @classmethod
    def from_state(cls, state: Mapping[str, Any], families: Mapping[str, Family] | None = None,
                   **kwargs: Any) -> "Curriculum":
        if state.get("format_version") != STATE_FORMAT_VERSION:
            raise CurriculumError(f"curriculum source state format_version {state.get('format_version')!r} "
                                  f"is not supported (this deskdojo reads {STATE_FORMAT_VERSION})")
        curriculum = cls(families, scheduler=Scheduler.from_state(state["scheduler"]), **kwargs)
        curriculum.next_seed.update({k: int(v) for k, v in state["next_seed"].items()})
        curriculum.admissions = {k: dict(v) for k, v in state["admissions"].items()}
        curriculum.proposed = {k: (v[0], int(v[1])) for k, v in state["proposed"].items()}
        return curriculum


def group_advantages(scores: Sequence[float]) -> list[float]:
    """GRPO's group-normalised advantages: (score - mean) / std (0 when all are equal).

    >>> group_advantages([1.0, 0.0])
    [1.0, -1.0]
    """
    mean = statistics.fmean(scores)
    std = statistics.pstdev(scores)
    return [0.0 if std == 0 else (s - mean) / std for s in scores]
