"""What the loop is handed: the learner, the task plan, the judge, the sandboxes and the
rollout function, as small protocols, plus the adapters that fit simple task sources to
them. The loop never builds parts itself (``deskdojo.evolve.build`` does), so tests hand
it fakes.
"""

from __future__ import annotations

import contextlib
import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, ContextManager, Iterator, Mapping, Protocol, Sequence

from deskdojo.core.protocols import Judge, Policy, Pool, TaskSource, WorldProbe
from deskdojo.core.types import Split, Task, Trajectory, Verdict


@dataclass(frozen=True, slots=True)
class GroupOutcome:
    """What one task's group taught: the curriculum's input and a metrics row."""

    task: Task
    successes: tuple[bool, ...]  # of the group's own (non-error) rollouts
    mean_abs_advantage: float
    used: bool  # it carried signal into the update


@dataclass(frozen=True, slots=True)
class UpdateStats:
    """What one learner update reports (None where the update took no optimizer step).
    ``details`` keeps every figure the trainer returned, for logs and tests."""

    groups_used: int = 0
    replayed: int = 0
    rehearsed: int = 0
    samples: int = 0
    skipped: bool = False
    reward_mean: float | None = None
    loss: float | None = None
    kl: float | None = None
    entropy: float | None = None  # the sampled tokens' -log p: an on-policy entropy estimate
    clip_fraction: float | None = None
    ratio_mean: float | None = None
    details: Mapping[str, float] = field(default_factory=dict)

    @classmethod
    def from_trainer(cls, stats: Mapping[str, float]) -> "UpdateStats":
        """From ``GRPOTrainer.step``'s dict (its keys are that trainer's names)."""
        def number(key: str) -> float | None:
            return float(stats[key]) if key in stats else None

        return cls(groups_used=int(stats.get("groups_used", 0)), replayed=int(stats.get("replayed", 0)),
                   rehearsed=int(stats.get("rehearsed", 0)), samples=int(stats.get("samples", 0)), skipped=bool(stats.get("skipped", 0)),
                   reward_mean=number("reward_mean"), loss=number("loss"), kl=number("kl"),
                   entropy=number("entropy_estimate"), clip_fraction=number("clip_fraction"),
                   ratio_mean=number("ratio_mean"), details=dict(stats))


@dataclass(frozen=True, slots=True)
class UpdateResult:
    """One learner update: its stats and per-group outcomes."""

    stats: UpdateStats
    groups: tuple[GroupOutcome, ...]
    advantages: tuple[float, ...] = ()  # every own rollout's advantage, for the spread


Rollout = tuple[Task, Trajectory, Verdict]


class Learner(Protocol):
    """The policy that acts plus what updates it; checkpointed by ``save``/``load``.

    ``load`` restores into the already built learner (same base weights), so a resumed
    run continues with the very same parameters, optimizer moments and sampling stream.
    """

    policy: Policy

    def update(self, groups: Sequence[Sequence[Rollout]]) -> UpdateResult: ...
    def evaluation(self, greedy: bool) -> ContextManager[None]: ...
    def save(self, folder: Path) -> None: ...
    def load(self, folder: Path) -> None: ...


class TaskPlan(Protocol):
    """Proposes training tasks, learns from group outcomes, owns the held-out set."""

    def propose(self, n: int) -> list[Task]: ...
    def record(self, outcomes: Sequence[GroupOutcome], *, iteration: int) -> None: ...
    def heldout(self) -> list[Task]: ...
    def state_dict(self) -> dict[str, Any]: ...
    def load_state_dict(self, state: Mapping[str, Any]) -> None: ...
    def snapshot(self) -> dict[str, Any]: ...
    def drain_admissions(self) -> list[dict[str, Any]]: ...


RolloutFn = Callable[..., list[Trajectory]]
"""``rollout(policy, tasks, sandboxes, writer_factory, *, config, probe, on_step, stop)``:
one task per sandbox, returns one Trajectory per task (``end=error`` for a dead sandbox)."""


@dataclass(slots=True)
class Parts:
    """Everything one evolve run uses."""

    learner: Learner
    plan: TaskPlan
    judge: Judge
    pool: Pool
    rollout: RolloutFn
    rollout_config: Any = None
    probe: WorldProbe | None = None
    closers: list[Callable[[], None]] = field(default_factory=list)
    fleet: Any = None  # a RayFleet (deskdojo.evolve.ray_workers): episodes play on its workers, not ``pool``

    def close(self) -> None:
        for close in [*self.closers, self.pool.close]:
            try:
                close()
            except Exception:  # closing must go on for the others
                pass


# --- task plans for simple sources ---------------------------------------------------


class SourcePlan:
    """A plain ``TaskSource`` (e.g. ``ListTaskSource``) as a TaskPlan: verdict-level
    learning only, a fixed held-out list, state = whatever the source exposes."""

    def __init__(self, source: TaskSource, heldout: Sequence[Task] = ()):
        self.source = source
        self._heldout = list(heldout)
        self._recorded: list[dict[str, Any]] = []

    def propose(self, n: int) -> list[Task]:
        return self.source.propose(n)

    def record(self, outcomes: Sequence[GroupOutcome], *, iteration: int) -> None:
        from deskdojo.core.types import Verdict

        verdicts = [Verdict(task_id=o.task.id, trajectory_id=f"{o.task.id}#{i}", success=s,
                            score=float(s), judge_id="group") for o in outcomes for i, s in enumerate(o.successes)]
        self.source.update(verdicts)
        for o in outcomes:
            self._recorded.append({"iteration": iteration, "task_id": o.task.id, "family": o.task.family,
                                   "level": o.task.level, "successes": sum(o.successes),
                                   "attempts": len(o.successes)})

    def heldout(self) -> list[Task]:
        return list(self._heldout)

    def state_dict(self) -> dict[str, Any]:
        return {"recorded": list(self._recorded), "source": self.source.state_dict()}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self._recorded = list(state.get("recorded", []))
        if state.get("source") is not None:
            self.source.load_state_dict(state["source"])

    def snapshot(self) -> dict[str, Any]:
        families: dict[str, dict[str, Any]] = {}
        for row in self._recorded:
            fam = families.setdefault(row["family"], {"level": row["level"], "levels": {}})
            cell = fam["levels"].setdefault(str(row["level"]), {"attempts": 0, "successes": 0, "rate": None})
            cell["attempts"] += row["attempts"]
            cell["successes"] += row["successes"]
            cell["rate"] = cell["successes"] / cell["attempts"]
            fam["level"] = row["level"]
        return {"families": families, "recent_choices": [], "moves": [], "retired": []}

    def drain_admissions(self) -> list[dict[str, Any]]:
        return []  # a plain source admits nothing itself


MAX_DRAWS = 20
"""Draws per (family, level) before the plan falls back to a lower level: retired and
rejected tasks are skipped; past half of them, seeds come from beyond the task pool."""
TRANSIENT_REJECTIONS = ("sandbox_died",)
"""Admission outcomes that say nothing about the task: not cached, the task may come back."""


class FamilyPlan:
    """Tasks drawn from procedural families, by the curriculum scheduler or uniformly.

    ``sampling="curriculum"``: the Scheduler chooses (family, level) pairs and learns from
    each group's success and mean |advantage|. ``sampling="uniform"``: families and levels
    at random (the bench's baseline); a scheduler still records results so curriculum.json
    shows the same table. Held-out tasks come from the families' held-out split.

    ``seeds_per_level`` > 0: each (family, level) trains on that many tasks (seeds drawn at
    random), so tasks recur: a mastered task can retire and an all-fail group can replay
    its own earlier success. 0: a fresh seed on every draw. ``max_level``: the highest level
    either sampling trains at (None: each family's last). ``admit(task)`` (an
    ``AdmissionResult``) runs once per task; the result is cached in the plan's state,
    and what ran since the last call is handed out by ``drain_admissions`` for tasks.jsonl.
    """

    def __init__(self, families: Mapping[str, Any], *, sampling: str = "curriculum",
                 scheduler_settings: Mapping[str, Any] | None = None, seed: int = 0,
                 heldout_levels: Sequence[int] = (0, 1), heldout_per_level: int = 2,
                 seeds_per_level: int = 0, admit: Callable[[Task], Any] | None = None,
                 max_level: int | None = None):
        from deskdojo.curriculum.families.base import HELDOUT_SEED_BASE
        from deskdojo.curriculum.scheduler import Scheduler, SchedulerConfig

        if not families:
            from deskdojo.core.errors import ConfigError

            raise ConfigError("no task families to train on: check curriculum.families")
        self.families = dict(families)
        self.sampling = sampling
        settings = {"seed": seed, **(scheduler_settings or {})}
        self.levels = {name: fam.levels if max_level is None else min(fam.levels, max_level + 1)
                       for name, fam in self.families.items()}  # the levels training draws from
        self.scheduler = Scheduler(self.levels, SchedulerConfig.from_dict(settings))
        self.rng = random.Random(f"uniform/{seed}")
        self.seed_rng = random.Random(f"seeds/{seed}")
        self.next_seed = {name: 0 for name in self.families}
        self.seeds_per_level = seeds_per_level
        self.admit = admit
        self.admissions: dict[str, dict[str, Any]] = {}  # task id -> {"admitted", "reason"}
        self._admission_records: list[dict[str, Any]] = []  # tasks.jsonl lines not yet handed out
        self._heldout = [fam.generate(level, HELDOUT_SEED_BASE + i, Split.HELDOUT)
                         for name, fam in self.families.items()
                         for level in heldout_levels if level < fam.levels
                         for i in range(heldout_per_level)]

    def _seed(self, family: str, draw: int) -> int:
        if self.seeds_per_level and draw < MAX_DRAWS // 2:
            return self.seed_rng.randrange(self.seeds_per_level)
        seed = self.seeds_per_level + self.next_seed[family]  # fresh, past the pool
        self.next_seed[family] += 1
        return seed

    def _draw(self, family: str, level: int) -> Task | None:
        for draw in range(MAX_DRAWS):
            task = self.families[family].generate(level, self._seed(family, draw), Split.TRAIN)
            if not self.scheduler.is_retired(task.id) and self.admitted(task):
                return task
        return None

    def admitted(self, task: Task) -> bool:
        if self.admit is None:
            return True
        known = self.admissions.get(task.id)
        if known is None:
            from deskdojo.curriculum.admission import admission_record

            result = self.admit(task)
            self._admission_records.append(admission_record(task, result))
            known = {"admitted": bool(result.admitted), "reason": result.reason}
            if result.reason not in TRANSIENT_REJECTIONS:
                self.admissions[task.id] = known
        return bool(known["admitted"])

    def drain_admissions(self) -> list[dict[str, Any]]:
        """The admission records (tasks.jsonl lines) of the checks run since the last call."""
        records, self._admission_records = self._admission_records, []
        return records

    def _pick_task(self, family: str, level: int) -> Task:
        for lower in range(level, -1, -1):  # nothing admissible here: an easier level of the family
            task = self._draw(family, lower)
            if task is not None:
                return task
        from deskdojo.core.errors import ConfigError

        reasons = sorted({str(r.get("reason")) for r in self._admission_records if not r.get("admitted")})
        raise ConfigError(f"family {family!r}: no admissible training task at levels 0..{level} in "
                          f"{MAX_DRAWS} draws each (rejections: {', '.join(reasons) or 'none; all retired'}); "
                          "check the family with `deskdojo tasks check --family " + family + "`")

    def propose(self, n: int) -> list[Task]:
        if self.sampling == "uniform":
            names = sorted(self.families)
            picks = []
            for _ in range(n):
                name = self.rng.choice(names)
                picks.append((name, self.rng.randrange(self.levels[name])))
        else:
            picks = self.scheduler.choose(n)
        return [self._pick_task(family, level) for family, level in picks]

    def record(self, outcomes: Sequence[GroupOutcome], *, iteration: int) -> None:
        for o in outcomes:
            if not o.successes:
                continue  # every rollout errored: nothing was learned about this task
            self.scheduler.record(o.task.family, o.task.level, o.task.id, list(o.successes),
                                  float(o.mean_abs_advantage), split=o.task.split.value, iteration=iteration)

    def heldout(self) -> list[Task]:
        return list(self._heldout)

    def state_dict(self) -> dict[str, Any]:
        version, internal, gauss = self.rng.getstate()
        seed_version, seed_internal, seed_gauss = self.seed_rng.getstate()
        return {"scheduler": self.scheduler.state_dict(), "next_seed": dict(self.next_seed),
                "rng": [version, list(internal), gauss],
                "seed_rng": [seed_version, list(seed_internal), seed_gauss],
                "admissions": {task_id: dict(known) for task_id, known in self.admissions.items()}}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        from deskdojo.curriculum.scheduler import Scheduler

        self.scheduler = Scheduler.from_state(state["scheduler"])
        self.next_seed = {str(k): int(v) for k, v in state["next_seed"].items()}
        version, internal, gauss = state["rng"]
        self.rng.setstate((version, tuple(internal), gauss))
        if "seed_rng" in state:  # absent in states written before task pools
            seed_version, seed_internal, seed_gauss = state["seed_rng"]
            self.seed_rng.setstate((seed_version, tuple(seed_internal), seed_gauss))
        self.admissions = {str(k): dict(v) for k, v in state.get("admissions", {}).items()}
        self._admission_records = []

    def snapshot(self) -> dict[str, Any]:
        return {**self.scheduler.snapshot(), "sampling": self.sampling}


# --- learners -------------------------------------------------------------------------


class GRPOLearner:
    """A policy and a ``GRPOTrainer`` (deskdojo.agent.train.grpo) as a Learner.

    Evaluation switches decoding with the policy's ``set_greedy``; ``save``/``load`` keep
    ``module``'s trainable parameters, the optimizer, the success replay and the policy's
    sampling-stream position.
    """

    def __init__(self, policy: Policy, trainer: Any, *, module: Any,
                 save_policy: Callable[[Path], Any] | None = None):
        self.policy = policy
        self.trainer = trainer
        self.module = module
        self._save_policy = save_policy

    def update(self, groups: Sequence[Sequence[Rollout]]) -> UpdateResult:
        stats = UpdateStats.from_trainer(self.trainer.step(groups))
        by_id = {group[0][0].id: group[0][0] for group in groups if group}
        outcomes = tuple(GroupOutcome(task=by_id[g.task_id], successes=tuple(g.successes),
                                      mean_abs_advantage=float(g.mean_abs_advantage), used=bool(g.used))
                         for g in self.trainer.last_groups)
        # the trainer rewarded each rollout once; its group summaries carry the advantages
        advantages = tuple(a for g in self.trainer.last_groups for a in g.advantages)
        return UpdateResult(stats=stats, groups=outcomes, advantages=advantages)

    @contextlib.contextmanager
    def evaluation(self, greedy: bool) -> Iterator[None]:
        self.policy.set_greedy(greedy)
        try:
            yield
        finally:
            self.policy.set_greedy(False)

    def save(self, folder: Path) -> None:
        from deskdojo.agent.train.checkpoint import save_learner

        save_learner(folder, self.module, self.trainer.state_dict(), self.policy.rng_state())
        if self._save_policy is not None:
            self._save_policy(folder / "policy")

    def load(self, folder: Path) -> None:
        from deskdojo.agent.train.checkpoint import load_learner

        trainer_state, policy_rng = load_learner(folder, self.module)
        self.trainer.load_state_dict(trainer_state)
        if policy_rng is not None:
            self.policy.set_rng_state(policy_rng)
