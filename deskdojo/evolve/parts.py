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

from deskdojo.core.protocols import Judge, Policy, TaskSource, WorldProbe
from deskdojo.core.types import Split, Task, Trajectory, Verdict


@dataclass(frozen=True, slots=True)
class GroupOutcome:
    """What one task's group taught: the curriculum's input and a metrics row."""

    task: Task
    successes: tuple[bool, ...]  # of the group's own (non-error) rollouts
    mean_abs_advantage: float
    used: bool  # it carried signal into the update


@dataclass(frozen=True, slots=True)
class UpdateResult:
    """One learner update: scalar stats (loss, kl, entropy, clip_frac, ...) and per-group outcomes."""

    stats: Mapping[str, float]
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


RolloutFn = Callable[..., list[Trajectory]]
"""``rollout(policy, tasks, sandboxes, writer_factory, *, config, probe, on_step, stop)``:
one task per sandbox, returns one Trajectory per task (``end=error`` for a dead sandbox)."""


@dataclass(slots=True)
class Parts:
    """Everything one evolve run uses. ``pool`` is a SandboxPool (or anything with
    ``__len__``, ``__getitem__``, ``check_health()`` and ``close()``)."""

    learner: Learner
    plan: TaskPlan
    judge: Judge
    pool: Any
    rollout: RolloutFn
    rollout_config: Any = None
    probe: WorldProbe | None = None
    closers: list[Callable[[], None]] = field(default_factory=list)

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
        state = {"recorded": list(self._recorded)}
        if hasattr(self.source, "state_dict"):
            state["source"] = self.source.state_dict()
        elif hasattr(self.source, "cursor"):
            state["source"] = {"cursor": self.source.cursor}
        return state

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self._recorded = list(state.get("recorded", []))
        source = state.get("source")
        if source is None:
            return
        if hasattr(self.source, "load_state_dict"):
            self.source.load_state_dict(source)
        elif hasattr(self.source, "cursor"):
            self.source.cursor = int(source["cursor"])

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


class FamilyPlan:
    """Tasks drawn from procedural families, by the curriculum scheduler or uniformly.

    ``sampling="curriculum"``: the Scheduler chooses (family, level) pairs and learns from
    each group's success and mean |advantage|. ``sampling="uniform"``: families and levels
    at random (the bench's baseline); a scheduler still records results so curriculum.json
    shows the same table. Held-out tasks come from the families' held-out split.
    """

    def __init__(self, families: Mapping[str, Any], *, sampling: str = "curriculum",
                 scheduler_settings: Mapping[str, Any] | None = None, seed: int = 0,
                 heldout_levels: Sequence[int] = (0, 1), heldout_per_level: int = 2,
                 admit: Callable[[Task], bool] | None = None):
        from deskdojo.curriculum.scheduler import Scheduler, SchedulerConfig

        if not families:
            from deskdojo.core.errors import ConfigError

            raise ConfigError("no task families to train on: check curriculum.families")
        self.families = dict(families)
        self.sampling = sampling
        settings = {"seed": seed, **(scheduler_settings or {})}
        self.scheduler = Scheduler({name: fam.levels for name, fam in self.families.items()},
                                   SchedulerConfig.from_dict(settings))
        self.rng = random.Random(f"uniform/{seed}")
        self.next_seed = {name: 0 for name in self.families}
        self.admit = admit
        self._heldout = [fam.generate(level, 1_000_000 + i, Split.HELDOUT)
                         for name, fam in self.families.items()
                         for level in heldout_levels if level < fam.levels
                         for i in range(heldout_per_level)]

    def _draw(self, family: str, level: int) -> Task:
        for _ in range(20):
            seed = self.next_seed[family]
            self.next_seed[family] += 1
            task = self.families[family].generate(level, seed, Split.TRAIN)
            if self.scheduler.is_retired(task.id):
                continue
            if self.admit is None or self.admit(task):
                return task
        return task

    def propose(self, n: int) -> list[Task]:
        if self.sampling == "uniform":
            names = sorted(self.families)
            picks = []
            for _ in range(n):
                name = self.rng.choice(names)
                picks.append((name, self.rng.randrange(self.families[name].levels)))
        else:
            picks = self.scheduler.choose(n)
        return [self._draw(family, level) for family, level in picks]

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
        return {"scheduler": self.scheduler.state_dict(), "next_seed": dict(self.next_seed),
                "rng": [version, list(internal), gauss]}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        from deskdojo.curriculum.scheduler import Scheduler

        self.scheduler = Scheduler.from_state(state["scheduler"])
        self.next_seed = {str(k): int(v) for k, v in state["next_seed"].items()}
        version, internal, gauss = state["rng"]
        self.rng.setstate((version, tuple(internal), gauss))

    def snapshot(self) -> dict[str, Any]:
        return {**self.scheduler.snapshot(), "sampling": self.sampling}


# --- learners -------------------------------------------------------------------------


class GRPOLearner:
    """A policy and a ``GRPOTrainer`` (deskdojo.agent.train.grpo) as a Learner.

    ``set_greedy(bool)`` is how evaluation switches decoding (a VLMPolicy's temperature);
    ``save``/``load`` keep the trainable parameters, the optimizer, the success replay
    and the policy's sampling-stream position.
    """

    def __init__(self, policy: Any, trainer: Any, *, set_greedy: Callable[[bool], None] | None = None,
                 module: Any = None, save_policy: Callable[[Path], Any] | None = None):
        self.policy = policy
        self.trainer = trainer
        self._set_greedy = set_greedy
        self.module = module if module is not None else getattr(policy, "model", policy)
        self._save_policy = save_policy

    def update(self, groups: Sequence[Sequence[Rollout]]) -> UpdateResult:
        from deskdojo.agent.train.grpo import group_advantages, trajectory_reward

        stats = dict(self.trainer.step(groups))
        by_id = {group[0][0].id: group[0][0] for group in groups if group}
        outcomes = tuple(GroupOutcome(task=by_id[g.task_id], successes=tuple(g.successes),
                                      mean_abs_advantage=float(g.mean_abs_advantage), used=bool(g.used))
                         for g in self.trainer.last_groups)
        advantages: list[float] = []
        for group in groups:
            rewards = [trajectory_reward(t, v, self.trainer.config) for _, t, v in group]
            advantages.extend(group_advantages(rewards, scale_std=self.trainer.config.scale_std)
                              or [0.0] * len(rewards))
        return UpdateResult(stats=stats, groups=outcomes, advantages=tuple(advantages))

    @contextlib.contextmanager
    def evaluation(self, greedy: bool) -> Iterator[None]:
        if self._set_greedy is None:
            yield
            return
        self._set_greedy(greedy)
        try:
            yield
        finally:
            self._set_greedy(False)

    def save(self, folder: Path) -> None:
        import torch

        folder.mkdir(parents=True, exist_ok=True)
        trainable = {name: p.detach().cpu().clone() for name, p in self.module.named_parameters()
                     if p.requires_grad}
        policy_rng = self.policy.rng_state() if hasattr(self.policy, "rng_state") else None
        torch.save({"trainable": trainable, "trainer": self.trainer.state_dict(), "policy_rng": policy_rng},
                   folder / "learner.pt")
        if self._save_policy is not None:
            self._save_policy(folder / "policy")

    def load(self, folder: Path) -> None:
        import torch

        state = torch.load(folder / "learner.pt", weights_only=False)
        params = dict(self.module.named_parameters())
        missing = sorted(set(state["trainable"]) - set(params))
        if missing:
            from deskdojo.core.errors import RunDirError

            raise RunDirError(f"checkpoint {folder} holds parameters this policy lacks ({missing[:3]}...): "
                              "was the run's model or LoRA setting changed?")
        with torch.no_grad():
            for name, value in state["trainable"].items():
                params[name].copy_(value)
        self.trainer.load_state_dict(state["trainer"])
        if state.get("policy_rng") is not None and hasattr(self.policy, "set_rng_state"):
            self.policy.set_rng_state(state["policy_rng"])
