"""``DesktopEnv``: one sandboxed desktop as a Gymnasium environment.

An episode is one task: ``reset`` restores the desktop and runs the task's setup,
``step`` performs one action, and the episode ends the way a rollout's does (the agent
says done or fail, the step cap, the time limit). Steps are played by the rollout's own
``SteppedEpisode``, so waits, step records, world deltas and end reasons are those of
``deskdojo evolve``, and the reward is the judge's: the Verdict's score (1.0 for a
success) on the step that ends the episode, 0 before. ``info["verdict"]`` carries the
typed Verdict, ``info["action"]`` the action as performed (an element resolved to its
point), and ``env.last_step`` the step's full record.

A sandbox that dies ends the episode as truncated with ``info["error"]`` (an
infrastructure failure is never scored); the next ``reset`` starts a fresh sandbox.
"""

from __future__ import annotations

import shutil
import tempfile
import uuid
from pathlib import Path
from typing import Any, Mapping, Sequence

import gymnasium as gym
import numpy as np

from deskdojo.core.actions import describe, is_action
from deskdojo.core.errors import ActionError, ConfigError, SandboxError
from deskdojo.core.protocols import Decision
from deskdojo.core.types import EndReason, Observation, Split, Task
from deskdojo.env.spaces import ACTION_SPACES, action_from_sample, observation_space
from deskdojo.env.spaces import action_space as make_action_space

DEFAULT_OBSERVATION = "screenshot_a11y_tree"


class DesktopEnv(gym.Env):
    """A desktop sandbox with deskdojo's tasks, judge and action formats.

    * ``provider``: docker | xvfb | fake | auto (docker when its engine and image are
      there): the environment starts its own sandbox at the first reset. Or ``pool`` and
      ``slot``: act in a started ``SandboxPool``'s slot (the pool's owner closes it).
    * Tasks: ``families`` and ``levels`` to draw from at each reset (default every
      practice-app family, every level), or ``tasks`` (Tasks or task files); or at
      ``reset``, ``options={"task": ...}`` (a Task, its JSON dict, a task file, ``"family"``
      or ``"family:level"``) or ``options={"family": ..., "level": ..., "split":
      "train"|"heldout", "seed": ...}``.
    * ``observation``: an observation mode (``screenshot``, ``a11y_tree``,
      ``screenshot_a11y_tree``, ``som``); modes with elements add the element table.
    * ``action_space``: ``text`` (an answer in ``action_format``) or ``dict``; in either,
      ``step`` also takes a deskdojo ``Action`` or a policy's ``Decision``.
    * ``record_dir``: keep every episode's trajectory there (frames, steps); without it,
      each episode is written to a temporary folder that the next reset removes.
    """

    metadata = {"render_modes": ["rgb_array"], "render_fps": 4}

    def __init__(self, *, provider: str = "auto", pool: Any = None, slot: int = 0,
                 families: Sequence[str] | None = None, levels: Sequence[int] | None = None,
                 tasks: Sequence[Any] | None = None, observation: str = DEFAULT_OBSERVATION,
                 action_space: str = "text", action_format: str = "deskdojo", max_steps: int = 15,
                 time_limit_s: float = 300.0, screen: tuple[int, int] = (1024, 768), judge: Any = None,
                 record_dir: str | Path | None = None, sandbox_options: Mapping[str, Any] | None = None,
                 rollout_options: Mapping[str, Any] | None = None, render_mode: str | None = "rgb_array"):
        from deskdojo.agent.formats import get_format
        from deskdojo.agent.rollout import RolloutConfig
        from deskdojo.core.elements import MODES_WITH_ELEMENTS, check_mode

        if action_space not in ACTION_SPACES:
            raise ConfigError(f"action_space must be one of {', '.join(ACTION_SPACES)}, got {action_space!r}")
        if render_mode not in (None, "rgb_array"):
            raise ConfigError(f"render_mode must be 'rgb_array' or None, got {render_mode!r}")
        try:
            self.mode = check_mode(observation)
        except ValueError as exc:
            raise ConfigError(str(exc)) from None
        self.with_elements = self.mode in MODES_WITH_ELEMENTS
        self.action_kind = action_space
        self.format = get_format(action_format)
        self.rollout_config = RolloutConfig.from_dict({"max_steps": max_steps, "time_limit_s": time_limit_s,
                                                       **(rollout_options or {})})
        self.families = _families(families)
        self.levels = tuple(levels) if levels is not None else None
        self.tasks = tuple(task_from_option(t, None) for t in tasks) if tasks is not None else None
        if self.tasks == ():
            raise ConfigError("tasks must hold at least one task (or be left out: tasks from the families)")
        self.render_mode = render_mode
        self._owns_pool = pool is None
        self._pool = pool
        self._slot = slot
        self._sandbox: Any = None
        if pool is None:
            self._sandbox_config = _sandbox_config(provider, screen, sandbox_options or {})
        else:
            if not 0 <= slot < len(pool):
                raise ConfigError(f"slot {slot} is not in the pool (slots 0..{len(pool) - 1})")
            self._sandbox_config = pool.config
        screen = self._sandbox_config.screen
        self.screen = (int(screen[0]), int(screen[1]))
        self._failed = False
        self._judge = judge
        self._probe = None
        self._record_dir = Path(record_dir) if record_dir is not None else None
        self._scratch: tempfile.TemporaryDirectory | None = None
        self._episode: Any = None
        self._last_folder: Path | None = None
        self._frame: np.ndarray | None = None
        self.last_step: Any = None  # the Step record of the last step (its model text, delta, timing)
        self.observation_space = observation_space(self.screen, elements=self.with_elements)
        self.action_space = make_action_space(self.action_kind, self.screen)

    # --- the Gymnasium API --------------------------------------------------------

    def reset(self, *, seed: int | None = None, options: Mapping[str, Any] | None = None
              ) -> tuple[dict[str, Any], dict[str, Any]]:
        from deskdojo.agent.rollout import SteppedEpisode
        from deskdojo.core.rundir import TrajectoryWriter

        super().reset(seed=seed)
        if seed is not None:
            self.action_space.seed(seed)
        task = self._choose_task(options or {})
        self._end_running("reset before the episode ended")
        self._forget_last_episode()
        sandbox = self._ensure_sandbox()
        trajectory_id = f"{task.id}-{uuid.uuid4().hex[:10]}"
        folder = self._episodes_root() / trajectory_id
        self._episode = SteppedEpisode(sandbox, task, TrajectoryWriter(folder, trajectory_id, task.id, "gym"),
                                       config=self.rollout_config, with_elements=self.with_elements,
                                       probe=self._world_probe())
        self._last_folder = folder
        observation = self._episode.start()
        if observation is None:  # the reset failed: the sandbox is replaced at the next reset
            self._drop_sandbox()
            raise SandboxError(f"the sandbox could not start task {task.id}: {self._episode.error}")
        return self._observation(observation), {"task": task}

    def step(self, action: Any) -> tuple[dict[str, Any], float, bool, bool, dict[str, Any]]:
        episode = self._episode
        if episode is None or episode.trajectory is not None:
            raise ConfigError("the episode has ended (or never started): call reset() first")
        self.last_step = step = episode.step(self._decision(action))
        info: dict[str, Any] = {"action": step.action if step is not None else None}
        if episode.trajectory is None:
            return self._observation(episode.observation), 0.0, False, False, info
        end = episode.end
        info["end"] = end.value
        if end is EndReason.ERROR:  # the sandbox failed: not scored; a fresh one at the next reset
            info["error"] = episode.error
            self._drop_sandbox()
            return self._observation(episode.observation), 0.0, False, True, info
        try:
            verdict = self.judge.judge(episode.task, episode.trajectory, self._sandbox)
        except SandboxError as exc:  # the final state could not be read: an error, never scored
            info["error"] = f"judging failed: {exc}"
            self._drop_sandbox()
            return self._observation(episode.observation), 0.0, False, True, info
        info["verdict"] = verdict
        terminated = end in (EndReason.DONE, EndReason.FAIL)
        return self._observation(episode.observation), float(verdict.score), terminated, not terminated, info

    def render(self) -> np.ndarray | None:
        if self.render_mode != "rgb_array":
            return None
        return None if self._frame is None else self._frame.copy()

    def close(self) -> None:
        self._end_running("the environment was closed")
        self._close_pool()
        self._forget_last_episode()
        if self._scratch is not None:
            self._scratch.cleanup()
            self._scratch = None

    # --- parts --------------------------------------------------------------------

    @property
    def judge(self) -> Any:
        if self._judge is None:
            from deskdojo.world_model.judge import StateJudge

            self._judge = StateJudge()
        return self._judge

    @property
    def sandbox(self) -> Any:
        """The sandbox of the current episode (started at the first reset)."""
        return self._sandbox

    @property
    def current_observation(self) -> Observation | None:
        """The episode's latest Observation as deskdojo's type (what a deskdojo Policy acts on)."""
        return None if self._episode is None else self._episode.observation

    @property
    def current_task(self) -> Task | None:
        return None if self._episode is None else self._episode.task

    @property
    def trajectory_dir(self) -> Path | None:
        """Where the current (or last) episode is recorded."""
        return self._last_folder

    @property
    def action_prompt(self) -> str:
        """What to tell a model so that its answers parse (text action space)."""
        return self.format.prompt(screen=self.screen, image=self.screen, elements=self.with_elements)

    def _world_probe(self) -> Any:
        if self._probe is None:
            from deskdojo.world_model.probe import StateProbe

            self._probe = StateProbe(files=False)
        return self._probe

    def _ensure_sandbox(self) -> Any:
        """The episode's sandbox: its pool slot's (an own one-slot pool is started at the
        first reset and closed at exit too), replaced when the last one failed."""
        if self._pool is None:
            from deskdojo.vm.pool import SandboxPool

            self._pool = SandboxPool(self._sandbox_config, 1).start()
        elif self._sandbox is None and self._failed:
            self._pool.replace(self._slot)
        self._failed = False
        self._sandbox = self._pool[self._slot]
        return self._sandbox

    def _drop_sandbox(self) -> None:
        """The sandbox failed: the next reset puts a fresh one in its slot."""
        self._sandbox, self._failed = None, True

    def _close_pool(self) -> None:
        if self._owns_pool and self._pool is not None:
            self._pool.close()
            self._pool = None
        self._sandbox = None

    def _episodes_root(self) -> Path:
        if self._record_dir is not None:
            self._record_dir.mkdir(parents=True, exist_ok=True)
            return self._record_dir
        if self._scratch is None:
            self._scratch = tempfile.TemporaryDirectory(prefix="deskdojo-gym-")
        return Path(self._scratch.name)

    def _forget_last_episode(self) -> None:
        if self._record_dir is None and self._last_folder is not None:
            shutil.rmtree(self._last_folder, ignore_errors=True)
        self._last_folder = None

    def _end_running(self, why: str) -> None:
        if self._episode is not None and self._episode.trajectory is None:
            self._episode.close(why)

    def _choose_task(self, options: Mapping[str, Any]) -> Task:
        unknown = sorted(set(options) - {"task", "family", "level", "split", "seed"})
        if unknown:
            raise ConfigError(f"reset options {unknown} are not known; use task, family, level, split, seed")
        if "task" in options:
            return task_from_option(options["task"], self.np_random)
        if self.tasks is not None and "family" not in options:
            return self.tasks[int(self.np_random.integers(len(self.tasks)))]
        from deskdojo.curriculum.families import get_family

        name = options.get("family")
        if name is None:
            name = self.families[int(self.np_random.integers(len(self.families)))]
        family = get_family(name)  # a KeyError naming the families for a name that is none
        level = options.get("level")
        if level is None:
            levels = [lv for lv in (self.levels or range(family.levels)) if 0 <= lv < family.levels] \
                or list(range(family.levels))
            level = levels[int(self.np_random.integers(len(levels)))]
        split = Split(options.get("split", "train"))
        seed = options.get("seed")
        if seed is None:
            seed = _random_seed(self.np_random, split)
        return family.generate(int(level), int(seed), split)

    def _decision(self, action: Any) -> Decision:
        if is_action(action):  # deskdojo's own Action objects pass in either action space
            return Decision(text=describe(action), action=action)
        if isinstance(action, Decision):  # a policy's decision: its text and tokens are recorded too
            return action
        if self.action_kind == "text":
            if not isinstance(action, str):
                return Decision(text=repr(action), action=None,
                                parse_error=f"the text action space takes a string, got {type(action).__name__}")
            result = self.format.parse(action, screen=self.screen, image=self.screen)
            if result.error is not None or not result.actions:
                return Decision(text=action, action=None, parse_error=result.error or "the answer holds no action")
            return Decision(text=action, action=result.actions[0])
        text = repr(action)
        try:
            if not isinstance(action, Mapping):
                raise ActionError(f"the dict action space takes a mapping, got {type(action).__name__}")
            return Decision(text=text, action=action_from_sample(action))
        except (ActionError, ValueError, TypeError) as exc:
            return Decision(text=text, action=None, parse_error=f"invalid action: {exc}")

    def _observation(self, observation: Observation | None) -> dict[str, Any]:
        from deskdojo.agent.observation import ShownElements, element_table

        if observation is not None:
            self._frame = np.ascontiguousarray(observation.screenshot, dtype=np.uint8)
        elif self._frame is None:
            self._frame = np.zeros((self.screen[1], self.screen[0], 3), np.uint8)
        task = self._episode.task
        result: dict[str, Any] = {"screenshot": self._frame.copy(), "instruction": task.instruction,
                                  "action_error": (observation.action_error if observation is not None else None)
                                  or ""}
        if self.with_elements:
            listing = observation.elements if observation is not None else None
            shown = ShownElements(tuple(listing.elements) if listing is not None else (), 0,
                                  listed=listing is not None, truncated=listing.truncated if listing else None)
            result["elements"] = element_table(shown, screen=self.screen, image=self.screen)
        return result


def task_from_option(value: Any, rng: np.random.Generator | None) -> Task:
    """A Task from a reset option: a Task, its JSON dict, a task file, or ``family[:level]``."""
    from deskdojo.curriculum.spec import load_task, task_from_json

    if isinstance(value, Task):
        return value
    if isinstance(value, Mapping):
        return task_from_json(dict(value), source="reset options")
    if isinstance(value, Path) or (isinstance(value, str) and (value.endswith(".json") or "/" in value)):
        return load_task(value)
    if isinstance(value, str):
        from deskdojo.curriculum.families import get_family

        name, _, level = value.partition(":")
        family = get_family(name)
        if level and not level.isdigit():
            raise ConfigError(f"task {value!r}: the level after ':' must be a number")
        rng = rng if rng is not None else np.random.default_rng()
        chosen = int(level) if level else int(rng.integers(family.levels))
        return family.generate(chosen, _random_seed(rng, Split.TRAIN), Split.TRAIN)
    raise ConfigError(f"options['task'] must be a Task, a task dict, a task file or 'family[:level]'; "
                      f"got {type(value).__name__}")


def _random_seed(rng: np.random.Generator, split: Split) -> int:
    from deskdojo.curriculum.families.base import HELDOUT_SEED_BASE

    if split is Split.HELDOUT:
        return HELDOUT_SEED_BASE + int(rng.integers(1_000_000))
    return int(rng.integers(HELDOUT_SEED_BASE))


def _families(names: Sequence[str] | None) -> tuple[str, ...]:
    from deskdojo.curriculum.families import all_families

    families = all_families()
    if names is None:
        from deskdojo.evolve.build import practice_apps

        apps = practice_apps()
        return tuple(name for name, family in families.items() if family.app in apps)
    unknown = [name for name in names if name not in families]
    if unknown:
        raise ConfigError(f"no task family {unknown[0]!r}; the families are: {', '.join(families)}")
    if not names:
        raise ConfigError("families must name at least one family (or be left out: every practice-app family)")
    return tuple(names)


def _sandbox_config(provider: str, screen: tuple[int, int], options: Mapping[str, Any]) -> Any:
    from deskdojo.evolve.build import resolve_provider
    from deskdojo.vm.config import SandboxConfig

    if provider == "host":
        raise ConfigError("the Gymnasium environment does not act on the real desktop (provider host)")
    return SandboxConfig.from_dict({**options, "provider": resolve_provider(provider), "screen": tuple(screen)})
