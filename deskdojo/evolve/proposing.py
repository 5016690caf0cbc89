"""Proposed tasks in the loop: a TaskPlan that trains on the template families' tasks and,
each iteration, on tasks that exploration or a model proposed, asked for by ACuRL's rule.

The rule reads the last proposed task's success rate: above 70% the next tasks are harder,
30-70% siblings, below 30% prerequisites. A proposed task with checks passes admission
like a template task; one without checks (a model's, or any when ``withhold_checks``)
is judge-only, and enters only when a VLM judge can decide it (``judge_only_ok``).

Sources (``ProposalSource``): ``ExplorationProposals`` picks from the tasks the guidebooks
of ``tasks explore`` hold, by level; ``ModelProposals`` asks a model (``--proposer``) with
an app's guidebook, screenshot, elements and the recent verdicts.
"""

from __future__ import annotations

import dataclasses
import time
from typing import Any, Mapping, Protocol, Sequence

from deskdojo.core.records import from_json, to_json
from deskdojo.core.types import Task, Verdict
from deskdojo.curriculum.explore import Guidebook, propose_from_guidebook
from deskdojo.curriculum.families.base import launched
from deskdojo.curriculum.proposer import ModelProposer, ProposedTask, Relation
from deskdojo.evolve.parts import FamilyPlan, GroupOutcome

LEVEL_STEP = {"harder": 1, "sibling": 0, "prerequisite": -1}
RECENT_VERDICTS = 20


class ProposalSource(Protocol):
    """Where proposed tasks come from. ``propose`` returns the tasks and one line per
    answer or object that gave none."""

    name: str

    def propose(self, n: int, relation: Relation | None, recent: Sequence[Verdict],
                known: Mapping[str, Task]) -> tuple[list[ProposedTask], list[str]]: ...


class ExplorationProposals:
    """Tasks from exploration guidebooks (one per effect, checks included), handed out by
    level: ACuRL's relation moves the level from the reference task's, in its app. When
    that app has nothing harder, or nothing left, the next app in turn gives its task
    nearest the level asked for."""

    name = "exploration"

    def __init__(self, tasks: Mapping[str, Sequence[Task]]):
        self.tasks = {app: list(found) for app, found in tasks.items()}
        self.apps = list(self.tasks)
        self.given: set[str] = set()
        self.turn = 0

    @classmethod
    def from_guidebooks(cls, guidebooks: Sequence[Guidebook], *, seed: int = 0) -> "ExplorationProposals":
        return cls({g.app: propose_from_guidebook(g, n=len(g.state_changing), seed=seed) for g in guidebooks})

    def _fresh(self, app: str | None) -> list[Task]:
        return [t for t in self.tasks.get(app, []) if t.id not in self.given] if app else []

    def _next_app(self) -> str | None:
        for _ in range(len(self.apps)):
            app = self.apps[self.turn % len(self.apps)]
            self.turn += 1
            if self._fresh(app):
                return app
        return None

    def propose(self, n: int, relation: Relation | None, recent: Sequence[Verdict],
                known: Mapping[str, Task]) -> tuple[list[ProposedTask], list[str]]:
        app = _app_of(relation.reference) if relation is not None else None
        target = max(0, relation.reference.level + LEVEL_STEP[relation.kind]) if relation is not None else 0
        fresh = self._fresh(app)
        stuck = relation is not None and relation.kind == "harder" and all(
            t.level <= relation.reference.level for t in fresh)
        if not fresh or stuck:
            app = self._next_app()
            fresh = self._fresh(app)
        if not fresh:
            return [], ["exploration: every explored task was proposed already"]
        chosen = sorted(fresh, key=lambda t: (abs(t.level - target), t.level))[:n]
        self.given.update(t.id for t in chosen)
        return [ProposedTask(task=t, judge_only=False) for t in chosen], []

    def state_dict(self) -> dict[str, Any]:
        return {"given": sorted(self.given), "turn": self.turn}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.given = set(state.get("given", []))
        self.turn = int(state.get("turn", 0))


class ModelProposals:
    """Tasks a model proposes for the explored apps: the app of the reference task (or
    each in turn) with its guidebook, its first screen's screenshot and elements."""

    name = "model"

    def __init__(self, proposer: ModelProposer, guidebooks: Sequence[Guidebook],
                 screens: Mapping[str, tuple[Any, Sequence[Any]]] | None = None):
        self.proposer = proposer
        self.guidebooks = {g.app: g for g in guidebooks}
        self.screens = dict(screens or {})
        self.turn = 0

    def propose(self, n: int, relation: Relation | None, recent: Sequence[Verdict],
                known: Mapping[str, Task]) -> tuple[list[ProposedTask], list[str]]:
        apps = sorted(self.guidebooks)
        app = _app_of(relation.reference) if relation is not None else None
        if app not in self.guidebooks and apps:
            app = apps[self.turn % len(apps)]
            self.turn += 1
        guidebook = self.guidebooks.get(app) if app else None
        screenshot, elements = self.screens.get(app, (None, ())) if app else (None, ())
        result = self.proposer.propose(n, guidebook=guidebook, verdicts=recent, tasks=known, relation=relation,
                                       screenshot=screenshot, elements=elements)
        return list(result.proposed), list(result.rejected)

    def state_dict(self) -> dict[str, Any]:
        return {"turn": self.turn}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.turn = int(state.get("turn", 0))


def _app_of(task: Task) -> str | None:
    found = launched(task)
    return found[0] if found else None


class ProposingPlan:
    """A TaskPlan: ``per_iteration`` of each iteration's tasks come from a pool of proposed
    tasks, the rest from the family plan (``base``), which also gives the held-out set.

    The pool is refilled from ``source`` when it runs short, with ACuRL's relation to the
    proposed task that last finished a group. A task leaves the pool once its rate says
    "harder" or "prerequisite" (the next refill asks for those); a "sibling" stays.
    """

    def __init__(self, base: FamilyPlan, source: ProposalSource, *, per_iteration: int = 1, batch: int = 2,
                 judge_only_ok: bool = False, withhold_checks: bool = False):
        if per_iteration < 1 or batch < 1:
            raise ValueError(f"per_iteration and batch must be >= 1, got {per_iteration}, {batch}")
        self.base = base
        self.source = source
        self.per_iteration = per_iteration
        self.batch = batch
        self.judge_only_ok = judge_only_ok
        self.withhold_checks = withhold_checks
        self.pool: list[Task] = []
        self.known: dict[str, Task] = {}  # every proposed task that entered the pool
        self.stats: dict[str, list[int]] = {}  # task id -> [successes, attempts]
        self.last: tuple[str, float] | None = None  # (task id, its rate) of the last finished group
        self.recent: list[Verdict] = []
        self.log: list[dict[str, Any]] = []  # one row per refill
        self._records: list[dict[str, Any]] = []  # tasks.jsonl lines not yet handed out
        self.iteration = 0  # the last one recorded

    def relation(self) -> Relation | None:
        if self.last is None or self.last[0] not in self.known:
            return None
        task_id, rate = self.last
        return Relation.of(self.known[task_id], rate)

    def _enter(self, item: ProposedTask) -> bool:
        """Admission for a task with checks; judge-only ones need a VLM judge."""
        task = item.task
        if task.id in self.known or self.base.scheduler.is_retired(task.id):
            return False
        if not item.judge_only and not self.base.admitted(task):
            return False  # the family plan logged the admission
        if self.withhold_checks and task.checks:
            task = dataclasses.replace(task, checks=())
        if not task.checks:
            reason = "judge_only" if self.judge_only_ok else "no_judge"
            self._records.append({"task": to_json(task), "admitted": self.judge_only_ok, "reason": reason,
                                  "time": time.time(), "oracle_score": None, "noop_score": None, "seconds": 0.0,
                                  "detail": "" if self.judge_only_ok else
                                  "no checks and no VLM judge: set judge.kind hybrid to train on it"})
            if not self.judge_only_ok:
                return False
        self.known[task.id] = task
        self.pool.append(task)
        return True

    def _refill(self) -> None:
        relation = self.relation()
        proposed, rejected = self.source.propose(self.batch, relation, self.recent[-RECENT_VERDICTS:], self.known)
        entered = [item.task.id for item in proposed if self._enter(item)]
        self.log.append({"after_iteration": self.iteration, "source": self.source.name,
                         "relation": relation.kind if relation else None,
                         "reference": relation.reference.id if relation else None,
                         "rate": round(relation.rate, 3) if relation else None,
                         "proposed": len(proposed), "entered": entered, "rejected": rejected[:5]})

    def propose(self, n: int) -> list[Task]:
        wanted = min(self.per_iteration, n)
        if len(self.pool) < wanted:
            self._refill()
        # the least tried first (a stable sort keeps the pool's order among equals)
        chosen = sorted(self.pool, key=lambda t: self.stats.get(t.id, [0, 0])[1])[:wanted]
        return chosen + self.base.propose(n - len(chosen))

    def record(self, outcomes: Sequence[GroupOutcome], *, iteration: int) -> None:
        self.iteration = iteration
        own = [o for o in outcomes if o.task.id in self.known]
        self.base.record([o for o in outcomes if o.task.id not in self.known], iteration=iteration)
        for o in own:
            if not o.successes:
                continue
            counts = self.stats.setdefault(o.task.id, [0, 0])
            counts[0] += sum(o.successes)
            counts[1] += len(o.successes)
            rate = sum(o.successes) / len(o.successes)
            self.last = (o.task.id, rate)
            self.recent += [Verdict(task_id=o.task.id, trajectory_id=f"{o.task.id}#{iteration}.{i}", success=s,
                                    score=float(s), judge_id="group") for i, s in enumerate(o.successes)]
            if Relation.of(o.task, rate).kind != "sibling":
                self.pool = [t for t in self.pool if t.id != o.task.id]
        self.recent = self.recent[-RECENT_VERDICTS:]

    def heldout(self) -> list[Task]:
        return self.base.heldout()

    def drain_admissions(self) -> list[dict[str, Any]]:
        records, self._records = self.base.drain_admissions() + self._records, []
        return records

    def state_dict(self) -> dict[str, Any]:
        return {"base": self.base.state_dict(), "source": self.source.state_dict(),
                "pool": [t.id for t in self.pool], "known": [to_json(t) for t in self.known.values()],
                "stats": {k: list(v) for k, v in self.stats.items()}, "last": list(self.last) if self.last else None,
                "recent": [to_json(v) for v in self.recent], "log": list(self.log), "iteration": self.iteration}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.base.load_state_dict(state["base"])
        self.source.load_state_dict(state.get("source", {}))
        self.known = {t.id: t for t in (from_json(Task, data) for data in state.get("known", []))}
        self.pool = [self.known[task_id] for task_id in state.get("pool", []) if task_id in self.known]
        self.stats = {str(k): [int(x) for x in v] for k, v in state.get("stats", {}).items()}
        self.last = (str(state["last"][0]), float(state["last"][1])) if state.get("last") else None
        self.recent = [from_json(Verdict, data) for data in state.get("recent", [])]
        self.log = list(state.get("log", []))
        self.iteration = int(state.get("iteration", 0))
        self._records = []

    def snapshot(self) -> dict[str, Any]:
        """The family plan's table, with the proposed tasks' families added, and the refills."""
        snap = self.base.snapshot()
        families = dict(snap.get("families", {}))
        for task_id, (successes, attempts) in sorted(self.stats.items()):
            task = self.known[task_id]
            fam = families.setdefault(task.family, {"level": task.level, "levels": {}, "proposed": True})
            cell = fam["levels"].setdefault(str(task.level), {"attempts": 0, "successes": 0, "rate": None})
            cell["attempts"] += attempts
            cell["successes"] += successes
            cell["rate"] = cell["successes"] / cell["attempts"]
            fam["level"] = max(fam["level"], task.level)
        return {**snap, "families": families,
                "proposals": {"source": self.source.name, "pool": [t.id for t in self.pool],
                              "tasks": len(self.known), "refills": self.log[-10:]}}
