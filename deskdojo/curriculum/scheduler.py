"""The curriculum scheduler: keeps each task family near the edge of competence and
spends rollouts where the policy is learning most.

Two decisions, kept apart:

* **Which level** of a family: its success rate over a recent window of attempts at
  the current level. Above ``up_threshold`` the family moves one level up, below
  ``down_threshold`` one level down, in between it stays. Moving up takes one group
  (``min_attempts``), so a warm start that masters the low levels does not spend its
  budget there; moving down takes a full try (``down_attempts``) where next to nothing
  succeeds, since a level where one attempt in eight succeeds still gives GRPO groups
  whose outcomes differ.
* **Which family** gets the next rollouts: a non-stationary bandit ("Self-Evolving
  Curriculum", Chen et al. 2025). Each family's value is an EMA (TD(0)) of the mean
  absolute GRPO advantage of its recent groups: large when outcomes differ within a
  group, i.e. when there is something to learn. Families are drawn from a Boltzmann
  distribution over the values, mixed with a floor so that no family starves. A family
  that moves up starts its new level at the best family's value (a new arm is tried
  before it is judged), so climbing out of levels the warm start masters does not leave
  it at the floor.

Only train-split results are recorded; held-out tasks are evaluated elsewhere. The whole
state (RNG included) round-trips through JSON, so a resumed run makes the same choices.
Standard library only.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import random
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

from deskdojo.core.configs import closed_from_dict
from deskdojo.core.errors import ConfigError, CurriculumError, RecordError

STATE_FORMAT_VERSION = 1


@dataclass(frozen=True, slots=True, kw_only=True)
class SchedulerConfig:
    """How the curriculum moves levels and shares out rollouts. Field docs are ``--help``."""

    up_threshold: float = field(default=0.7, metadata={
        "help": "window success rate above which a family moves one level up"})
    down_threshold: float = field(default=0.1, metadata={
        "help": "window success rate below which a family moves one level down (a level where some "
                "attempts succeed still teaches: GRPO learns from any group whose outcomes differ)"})
    window: int = field(default=16, metadata={
        "help": "recent attempts at a family's current level that decide its moves"})
    min_attempts: int = field(default=4, metadata={
        "help": "attempts at the current level (since arriving there) before a move up: a start that "
                "already masters a level leaves it after one group"})
    down_attempts: int = field(default=16, metadata={
        "help": "attempts at the current level (since arriving there) before a move down: a new level "
                "gets this many tries (at most the window) before the family falls back"})
    progress_rate: float = field(default=0.3, metadata={
        "help": "alpha: EMA step of each family's learning-progress value (TD(0))"})
    temperature: float = field(default=0.1, metadata={
        "help": "tau: Boltzmann temperature over the values (lower = greedier)"})
    exploration_floor: float = field(default=0.05, metadata={
        "help": "minimum probability of drawing each family (families x floor must be <= 1)"})
    mastery_streak: int = field(default=16, metadata={
        "help": "a task that succeeds this many times in a row retires (0 never retires)"})
    history: int = field(default=64, metadata={"help": "recent choices and moves kept for the panel"})
    seed: int = field(default=0, metadata={"help": "seed of the scheduler's own RNG"})

    def __post_init__(self) -> None:
        if not 0 <= self.down_threshold <= self.up_threshold <= 1:
            raise ConfigError(f"need 0 <= down_threshold <= up_threshold <= 1, got "
                              f"{self.down_threshold} and {self.up_threshold}")
        if self.window < 1 or not 1 <= self.min_attempts <= self.window:
            raise ConfigError(f"need window >= 1 and 1 <= min_attempts <= window, got window "
                              f"{self.window} and min_attempts {self.min_attempts}")
        if self.down_attempts < self.min_attempts:
            raise ConfigError(f"need down_attempts >= min_attempts, got {self.down_attempts} and "
                              f"{self.min_attempts}")
        if not 0 < self.progress_rate <= 1:
            raise ConfigError(f"progress_rate must be within (0, 1], got {self.progress_rate}")
        if not self.temperature > 0:
            raise ConfigError(f"temperature must be > 0, got {self.temperature}")
        if not 0 <= self.exploration_floor < 1:
            raise ConfigError(f"exploration_floor must be within [0, 1), got {self.exploration_floor}")
        if self.mastery_streak < 0 or self.history < 1:
            raise ConfigError(f"need mastery_streak >= 0 and history >= 1, got {self.mastery_streak}, "
                              f"{self.history}")

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "SchedulerConfig":
        return closed_from_dict(cls, data, "scheduler config")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass(slots=True)
class _Level:
    attempts: int = 0
    successes: int = 0


class Scheduler:
    """Levels per family, a learning-progress bandit over families, retired tasks.

    Lifecycle: ``choose(n)`` -> the caller draws a train task at each (family, level),
    skipping ``is_retired`` ones, rolls it out and trains -> ``record(...)`` per group.
    ``snapshot()`` is what the panel shows; ``state_dict()``/``from_state`` resume.
    """

    def __init__(self, families: Mapping[str, int], config: SchedulerConfig | None = None):
        self.config = config = config or SchedulerConfig()
        if not families:
            raise ConfigError("Scheduler needs at least one family (name -> number of levels)")
        for family, levels in families.items():
            if not isinstance(family, str) or not family:
                raise ConfigError(f"family names must be non-empty strings, got {family!r}")
            if isinstance(levels, bool) or not isinstance(levels, int) or levels < 1:
                raise ConfigError(f"family {family!r} needs a number of levels >= 1, got {levels!r}")
        if len(families) * config.exploration_floor > 1:
            raise ConfigError(f"exploration_floor {config.exploration_floor} x {len(families)} families "
                              f"exceeds 1: lower it to at most {1 / len(families):.4f}")
        self.num_levels: dict[str, int] = dict(families)
        self.level: dict[str, int] = {family: 0 for family in families}
        self.value: dict[str, float] = {family: 0.0 for family in families}
        self._levels = {f: [_Level() for _ in range(n)] for f, n in families.items()}
        self._windows = {f: [deque(maxlen=config.window) for _ in range(n)] for f, n in families.items()}
        self._streaks: dict[str, int] = {}
        self._retired: dict[str, None] = {}  # insertion-ordered set
        self._recent_choices: deque[tuple[str, int]] = deque(maxlen=config.history)
        self._moves: deque[dict[str, Any]] = deque(maxlen=config.history)
        self.groups_recorded = 0
        self._rng = random.Random(config.seed)

    # --- which family, at which level --------------------------------------------------

    def probabilities(self) -> dict[str, float]:
        """floor + (1 - K * floor) * softmax(value / temperature), per family."""
        tau, floor = self.config.temperature, self.config.exploration_floor
        top = max(self.value.values())
        weights = {f: math.exp((v - top) / tau) for f, v in self.value.items()}
        total = sum(weights.values())
        share = 1 - len(weights) * floor
        return {f: floor + share * w / total for f, w in weights.items()}

    def choose(self, n: int) -> list[tuple[str, int]]:
        """``n`` draws of (family, its current level) for the next groups of rollouts."""
        if n < 0:
            raise ConfigError(f"choose needs n >= 0, got {n}")
        probabilities = self.probabilities()
        families = self._rng.choices(list(probabilities), weights=list(probabilities.values()), k=n)
        choices = [(family, self.level[family]) for family in families]
        self._recent_choices.extend(choices)
        return choices

    def is_retired(self, task_id: str) -> bool:
        return task_id in self._retired

    # --- learning from results ---------------------------------------------------------

    def record(self, family: str, level: int, task_id: str, successes: Sequence[bool],
               mean_abs_advantage: float, *, split: str, iteration: int | None = None) -> list[dict[str, Any]]:
        """Take one group's results; returns the level moves it caused (also kept).

        ``split`` must be ``"train"``: a held-out result is refused, so evaluation can
        never leak into what the curriculum adapts to. ``iteration`` labels moves
        (default: the number of groups recorded so far).
        """
        split_name = getattr(split, "value", split)
        if split_name != "train":
            raise CurriculumError(f"task {task_id!r} is from the {split_name!r} split: the scheduler only "
                                  f"takes training results; evaluate held-out tasks separately")
        if family not in self.num_levels:
            raise CurriculumError(f"unknown family {family!r} (known: {', '.join(self.num_levels)})")
        if isinstance(level, bool) or not isinstance(level, int) or not 0 <= level < self.num_levels[family]:
            raise CurriculumError(f"family {family!r} has levels 0..{self.num_levels[family] - 1}, got {level!r}")
        if not successes or not all(isinstance(s, bool) for s in successes):
            raise CurriculumError(f"task {task_id!r}: successes must be a non-empty list of booleans")
        if not (isinstance(mean_abs_advantage, (int, float)) and math.isfinite(mean_abs_advantage)
                and mean_abs_advantage >= 0):
            raise CurriculumError(f"mean_abs_advantage must be a finite number >= 0, got {mean_abs_advantage!r}")

        stats = self._levels[family][level]
        stats.attempts += len(successes)
        stats.successes += sum(successes)
        self._windows[family][level].extend(successes)
        self.value[family] += self.config.progress_rate * (mean_abs_advantage - self.value[family])
        self._update_mastery(task_id, successes)
        self.groups_recorded += 1
        if level != self.level[family]:
            return []  # rollouts handed out before the family last moved: counted, not deciding
        move = self._maybe_move(family, self.groups_recorded if iteration is None else iteration)
        return [move] if move else []

    def _update_mastery(self, task_id: str, successes: Sequence[bool]) -> None:
        streak = self._streaks.get(task_id, 0)
        for success in successes:
            streak = streak + 1 if success else 0
        self._streaks[task_id] = streak
        if self.config.mastery_streak and streak >= self.config.mastery_streak:
            self._retired.setdefault(task_id, None)

    def _maybe_move(self, family: str, iteration: int) -> dict[str, Any] | None:
        current = self.level[family]
        window = self._windows[family][current]
        if len(window) < self.config.min_attempts:
            return None
        rate = sum(window) / len(window)
        if rate > self.config.up_threshold and current + 1 < self.num_levels[family]:
            target, reason = current + 1, f"success {rate:.2f} > {self.config.up_threshold} over {len(window)}"
        elif (rate < self.config.down_threshold and current > 0
              and len(window) >= min(self.config.down_attempts, self.config.window)):
            target, reason = current - 1, f"success {rate:.2f} < {self.config.down_threshold} over {len(window)}"
        else:
            return None
        self.level[family] = target
        if target > current:  # a new level is a new arm: drawn as the best family is, until its groups tell
            self.value[family] = max(self.value.values())
        self._windows[family][target].clear()  # judge the new level on attempts made from now on
        move = {"family": family, "from": current, "to": target, "rate": rate, "iteration": iteration,
                "reason": reason}
        self._moves.append(move)
        return move

    # --- what the panel reads, and resume ----------------------------------------------

    def snapshot(self) -> dict[str, Any]:
        """The ``curriculum.json`` layout the panel reads."""
        probabilities = self.probabilities()
        families = {}
        for family, levels in self._levels.items():
            window = self._windows[family][self.level[family]]
            families[family] = {
                "level": self.level[family],
                "levels": {str(i): {"attempts": s.attempts, "successes": s.successes,
                                    "rate": s.successes / s.attempts if s.attempts else None}
                           for i, s in enumerate(levels)},
                "value": self.value[family],
                "probability": probabilities[family],
                "window_rate": sum(window) / len(window) if window else None,
            }
        return {"families": families,
                "recent_choices": [[family, level] for family, level in self._recent_choices],
                "moves": [dict(move) for move in self._moves],
                "retired": list(self._retired)}

    def state_dict(self) -> dict[str, Any]:
        """The snapshot plus what resuming needs (config, windows, streaks, RNG); JSON-ready."""
        version, internal, gauss_next = self._rng.getstate()
        return {**self.snapshot(),
                "format_version": STATE_FORMAT_VERSION,
                "config": self.config.to_dict(),
                "num_levels": dict(self.num_levels),
                "windows": {f: [list(w) for w in windows] for f, windows in self._windows.items()},
                "streaks": dict(self._streaks),
                "groups_recorded": self.groups_recorded,
                "rng": [version, list(internal), gauss_next]}

    @classmethod
    def from_state(cls, state: Mapping[str, Any]) -> "Scheduler":
        if state.get("format_version") != STATE_FORMAT_VERSION:
            raise RecordError(f"curriculum state format_version {state.get('format_version')!r} is not "
                              f"supported (this deskdojo reads {STATE_FORMAT_VERSION})")
        try:
            scheduler = cls(state["num_levels"], SchedulerConfig.from_dict(state["config"]))
            for family, info in state["families"].items():
                scheduler.level[family] = int(info["level"])
                scheduler.value[family] = float(info["value"])
                for level, cell in info["levels"].items():
                    scheduler._levels[family][int(level)] = _Level(int(cell["attempts"]), int(cell["successes"]))
                for level, window in enumerate(state["windows"][family]):
                    scheduler._windows[family][level].extend(bool(s) for s in window)
            scheduler._streaks = {str(k): int(v) for k, v in state["streaks"].items()}
            scheduler._retired = dict.fromkeys(state["retired"])
            scheduler._recent_choices.extend((f, int(level)) for f, level in state["recent_choices"])
            scheduler._moves.extend(dict(move) for move in state["moves"])
            scheduler.groups_recorded = int(state["groups_recorded"])
            version, internal, gauss_next = state["rng"]
            scheduler._rng.setstate((version, tuple(internal), gauss_next))
        except (KeyError, TypeError, ValueError, IndexError) as exc:
            raise RecordError(f"curriculum state is malformed ({exc!r}): expected the output of "
                              f"Scheduler.state_dict()") from None
        return scheduler

    def save(self, path: str | os.PathLike[str]) -> None:
        """Write ``state_dict()`` atomically (e.g. to ``runs/<id>/curriculum.json``)."""
        from deskdojo.core.rundir import write_atomic

        write_atomic(Path(path), json.dumps(self.state_dict()).encode())

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> "Scheduler":
        try:
            return cls.from_state(json.loads(Path(path).read_text()))
        except (OSError, json.JSONDecodeError) as exc:
            raise RecordError(f"cannot read curriculum state {path}: {exc}") from None
