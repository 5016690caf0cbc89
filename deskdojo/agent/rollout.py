"""Rollouts: a policy plays tasks in sandboxes, all sandboxes in lock-step, so every step
is ONE batched ``policy.act`` call for the episodes still running.

Each step is written as it happens (``frames/NNNN.png``, the screen the policy saw,
then a flushed line in ``steps.jsonl``), so a run killed mid-episode leaves readable
trajectories. Model mistakes are steps (an unparsable decision becomes an invalid step
whose error the next Observation carries); a sandbox that dies ends only its own
episode, as ``error``. Sandbox calls (reset, act, observe, probes, frame writing) run
in a thread pool, one thread per sandbox.

Observation modes: when the policy's ``observation`` mode shows elements, each observation
carries ``sandbox.elements()``, and the listing the policy saw is written next to its
frame (``frames/NNNN.elements.json``, named in ``Step.prompt.elements``) so training
rebuilds the same prompt. A step whose action named an element records the action as the
sandbox resolved it (element and point), when the sandbox says.
"""

from __future__ import annotations

import dataclasses
import json
import os
import statistics
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

from deskdojo.core.actions import Done, Fail
from deskdojo.core.configs import closed_from_dict
from deskdojo.core.elements import MODES_WITH_ELEMENTS
from deskdojo.core.errors import ConfigError, SandboxError
from deskdojo.core.protocols import Decision, Policy, WorldProbe, shown_task
from deskdojo.core.rundir import RunDir, TrajectoryWriter
from deskdojo.core.types import EndReason, Observation, PromptInputs, Step, Task, Trajectory

STOPPED_MESSAGE = "stopped by request before the episode ended"

WriterFactory = Callable[[str, Task, str], TrajectoryWriter]
"""``(trajectory_id, task, policy_id) -> TrajectoryWriter``."""


@dataclass(frozen=True, slots=True, kw_only=True)
class RolloutConfig:
    """How episodes are run. Field docs are the CLI's ``--help``."""

    max_steps: int = field(default=15, metadata={
        "help": "step cap per episode (the task's own max_steps applies too: the smaller wins)"})
    time_limit_s: float = field(default=300.0, metadata={
        "help": "wall-clock seconds per episode, checked between steps"})
    observe_app_state: bool = field(default=False, metadata={
        "help": "fill Observation.app_state (what a scripted/oracle policy resolves locators with)"})
    wait_stable: bool = field(default=False, metadata={
        "help": "after each action, wait (bounded) for the screen to stop changing before observing"})
    stable_timeout_s: float = field(default=1.0, metadata={
        "help": "the most seconds one stable-screen wait may take"})
    threads: int = field(default=8, metadata={
        "help": "threads for sandbox calls (reset, act, observe, frame writing)"})
    listing_quiet_s: float = field(default=0.3, metadata={
        "help": "in modes with elements, after each action: observe once the element listing has not "
                "changed for this many seconds (apps publish their widget walk 0.15-0.25 s after a change; "
                "read at once, a listing can still show the screen before the action); 0 disables"})
    listing_timeout_s: float = field(default=1.5, metadata={
        "help": "the most seconds one listing wait may take (an app that keeps changing, e.g. a clock)"})
    first_listing_s: float = field(default=3.0, metadata={
        "help": "in modes with elements, the most seconds to wait after a reset for an element listing "
                "with widget rows, not only OCR text (apps publish their widget walk a moment after their "
                "window shows)"})

    def __post_init__(self) -> None:
        if not 1 <= self.max_steps <= 1000:
            raise ConfigError(f"max_steps must be within 1..1000, got {self.max_steps}")
        if not self.time_limit_s > 0:
            raise ConfigError(f"time_limit_s must be > 0, got {self.time_limit_s}")
        if not self.stable_timeout_s >= 0:
            raise ConfigError(f"stable_timeout_s must be >= 0, got {self.stable_timeout_s}")
        if not 1 <= self.threads <= 256:
            raise ConfigError(f"threads must be within 1..256, got {self.threads}")
        if not (self.listing_quiet_s >= 0 and self.listing_timeout_s >= 0):
            raise ConfigError(f"listing_quiet_s and listing_timeout_s must be >= 0, got "
                              f"{self.listing_quiet_s}, {self.listing_timeout_s}")
        if not self.first_listing_s >= 0:
            raise ConfigError(f"first_listing_s must be >= 0, got {self.first_listing_s}")

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "RolloutConfig":
        return closed_from_dict(cls, data, "rollout config")


@dataclass
class RolloutStats:
    """Where a rollout's time went, in seconds. ``generate`` has one sample per batched
    ``policy.act`` call; the others one per episode step (``observe`` includes the
    stable-screen wait and app state; ``write`` is the frame PNG and the step line, both
    fsynced)."""

    generate: list[float] = field(default_factory=list)
    observe: list[float] = field(default_factory=list)
    action: list[float] = field(default_factory=list)
    probe: list[float] = field(default_factory=list)
    write: list[float] = field(default_factory=list)
    reset: list[float] = field(default_factory=list)
    env_steps: int = 0
    decisions: int = 0
    wall_s: float = 0.0  # the step loop, without the resets

    def medians_ms(self) -> dict[str, float | None]:
        """Median milliseconds per phase; None for a phase that never ran (no valid action)."""
        return {name: round(statistics.median(values) * 1000, 3) if values else None
                for name, values in (("generate", self.generate), ("observe", self.observe),
                                     ("action", self.action), ("probe", self.probe),
                                     ("write", self.write), ("reset", self.reset))}

    def summary(self) -> dict[str, Any]:
        steps_per_s = self.env_steps / self.wall_s if self.wall_s > 0 else 0.0
        generating = sum(self.generate)
        return {"env_steps": self.env_steps, "decisions": self.decisions, "wall_s": round(self.wall_s, 3),
                "steps_per_s": round(steps_per_s, 2),
                "decisions_per_generate_s": round(self.decisions / generating, 3) if generating > 0 else None,
                "median_ms": self.medians_ms()}


@dataclass
class _Episode:
    """One slot's episode while it runs."""

    slot: int
    task: Task
    sandbox: Any
    writer: TrajectoryWriter
    cap: int
    with_elements: bool = False  # the policy's observation mode shows elements
    observation: Observation | None = None
    window: list[tuple[Observation, str | None]] = field(default_factory=list)  # (shown, its frame), oldest first
    snapshot: Mapping[str, Any] | None = None
    history: list[Decision] = field(default_factory=list)
    started: float = 0.0
    end: EndReason | None = None
    error: str | None = None
    trajectory: Trajectory | None = None


def rollout(policy: Policy, tasks: Sequence[Task], sandboxes: Sequence[Any],
            run_dir_or_writer_factory: RunDir | WriterFactory | str | os.PathLike[str], *,
            config: RolloutConfig | None = None, probe: WorldProbe | None = None,
            on_step: Callable[[int, Task, Step], Any] | None = None,
            stop: Callable[[], bool] | None = None,
            stats: RolloutStats | None = None) -> list[Trajectory]:
    """Play ``tasks[i]`` in ``sandboxes[i]`` and return the finished trajectories, in slot order.

    ``run_dir_or_writer_factory``: a RunDir (trajectories go to its ``trajectories/``),
    a folder, or a factory of TrajectoryWriters. ``probe`` records each step's world
    delta. ``on_step(slot, task, step)`` is called in this thread after each step is
    written. ``stop()`` is polled between steps (it may block to pause); when it returns
    True the running episodes end as ``error`` with ``STOPPED_MESSAGE`` (never scored).
    ``stats`` (optional) is filled with the time split.
    """
    config = config or RolloutConfig()
    stats = stats if stats is not None else RolloutStats()
    if len(tasks) != len(sandboxes):
        raise ConfigError(f"rollout needs one task per sandbox; got {len(tasks)} tasks "
                          f"for {len(sandboxes)} sandboxes")
    if not tasks:
        return []
    make_writer = _writer_factory(run_dir_or_writer_factory)
    episodes = [
        _Episode(slot, task, sandbox, make_writer(f"{task.id}-{uuid.uuid4().hex[:10]}", task, policy.policy_id),
                 cap=min(config.max_steps, task.max_steps),
                 with_elements=policy.observation in MODES_WITH_ELEMENTS)
        for slot, (task, sandbox) in enumerate(zip(tasks, sandboxes))
    ]
    with ThreadPoolExecutor(max_workers=min(len(episodes), config.threads),
                            thread_name_prefix="rollout") as pool:
        try:
            list(pool.map(lambda e: _reset(e, config, probe, stats), episodes))
            loop_started = time.perf_counter()
            _step_loop(policy, episodes, pool, config, probe, on_step, stop, stats)
            stats.wall_s += time.perf_counter() - loop_started
        except BaseException as exc:  # a bug or Ctrl-C: close what is open, then re-raise
            for episode in episodes:
                if episode.trajectory is None:
                    _finish(episode, EndReason.ERROR, f"rollout aborted: {type(exc).__name__}: {exc}")
            raise
    return [episode.trajectory for episode in episodes]  # type: ignore[misc]


def _writer_factory(target: RunDir | WriterFactory | str | os.PathLike[str]) -> WriterFactory:
    if isinstance(target, RunDir):
        return lambda tid, task, policy_id: target.trajectory_writer(tid, task.id, policy_id)
    if isinstance(target, (str, os.PathLike)):
        root = Path(target)
        return lambda tid, task, policy_id: TrajectoryWriter(root / tid, tid, task.id, policy_id)
    if callable(target):
        return target
    raise ConfigError(f"rollout writes to a RunDir, a folder or a writer factory; got {type(target).__name__}")


def _step_loop(policy: Policy, episodes: list[_Episode], pool: ThreadPoolExecutor, config: RolloutConfig,
               probe: WorldProbe | None, on_step: Callable[[int, Task, Step], Any] | None,
               stop: Callable[[], bool] | None, stats: RolloutStats) -> None:
    history_k = max(1, policy.history_k)
    while True:
        for episode in _running(episodes):
            _end_at_limits(episode, config)
        running = _running(episodes)
        if not running:
            return
        if stop is not None and stop():
            for episode in running:
                _finish(episode, EndReason.ERROR, STOPPED_MESSAGE)
            return
        started = time.perf_counter()
        decisions = policy.act([_shown(e, history_k) for e in running], [e.task for e in running],
                               [list(e.history) for e in running])
        stats.generate.append(time.perf_counter() - started)
        if len(decisions) != len(running):
            raise ConfigError(f"policy {policy.policy_id!r} returned {len(decisions)} decisions "
                              f"for {len(running)} observations")
        stats.decisions += len(decisions)
        steps = list(pool.map(lambda pair: _play(pair[0], pair[1], config, probe, stats),
                              zip(running, decisions)))
        for episode, step in zip(running, steps):
            if step is not None:
                stats.env_steps += 1
                if on_step is not None:
                    on_step(episode.slot, episode.task, step)
            if episode.end is not None and episode.trajectory is None:
                _finish(episode, episode.end, episode.error)


def _end_at_limits(episode: _Episode, config: RolloutConfig) -> None:
    """End ``episode`` when it reached its step cap or its time limit."""
    if len(episode.history) >= episode.cap:
        _finish(episode, EndReason.STEP_LIMIT)
    elif time.monotonic() - episode.started > config.time_limit_s:
        _finish(episode, EndReason.TIME_LIMIT, f"no end after {config.time_limit_s:g} s")


class SteppedEpisode:
    """One episode driven a decision at a time from outside (a Gymnasium environment's
    ``step``), under the same rules as ``rollout``: the same reset and observation waits,
    the same step records and probe deltas, the same step cap and time limit, the same end
    reasons. ``start`` resets the sandbox; ``step`` plays one Decision and records it
    (``observation`` is then the screen after it); ``trajectory`` is set once the episode
    has ended."""

    def __init__(self, sandbox: Any, task: Task, writer: TrajectoryWriter, *, config: RolloutConfig,
                 with_elements: bool, probe: WorldProbe | None = None, stats: RolloutStats | None = None):
        self.config = config
        self.probe = probe
        self.stats = stats if stats is not None else RolloutStats()
        self._episode = _Episode(0, task, sandbox, writer, cap=min(config.max_steps, task.max_steps),
                                 with_elements=with_elements)

    @property
    def task(self) -> Task:
        return self._episode.task

    @property
    def observation(self) -> Observation | None:
        return self._episode.observation

    @property
    def history(self) -> list[Decision]:
        return self._episode.history

    @property
    def end(self) -> EndReason | None:
        return self._episode.end

    @property
    def error(self) -> str | None:
        return self._episode.error

    @property
    def trajectory(self) -> Trajectory | None:
        return self._episode.trajectory

    def start(self) -> Observation | None:
        """Reset the sandbox to the task; None when the reset failed (the episode ended as error)."""
        _reset(self._episode, self.config, self.probe, self.stats)
        return None if self._episode.end is not None else self._episode.observation

    def step(self, decision: Decision) -> Step | None:
        """Play ``decision``; then end the episode if it said done/fail, its sandbox failed,
        or it reached a limit. Returns the recorded Step (None when the sandbox failed)."""
        episode = self._episode
        if episode.trajectory is not None:
            raise ConfigError(f"episode of {episode.task.id} has ended ({episode.end.value}); start a new one")
        step = _play(episode, decision, self.config, self.probe, self.stats)
        if step is not None:
            self.stats.env_steps += 1
        if episode.end is not None:
            _finish(episode, episode.end, episode.error)
        else:
            _end_at_limits(episode, self.config)
        return step

    def close(self, error: str) -> None:
        """End an episode that is still running as ``error`` (its caller stopped it)."""
        if self._episode.trajectory is None:
            _finish(self._episode, EndReason.ERROR, error)


def _shown(episode: _Episode, history_k: int) -> Observation | tuple[Observation, ...]:
    """What the policy gets for ``episode``: the current Observation, or (``history_k`` > 1)
    the window of the last ``history_k``, oldest first; ``_play`` records its frames."""
    del episode.window[:max(0, len(episode.window) - (history_k - 1))]
    if history_k == 1:
        return episode.observation  # type: ignore[return-value]
    return tuple(o for o, _ in episode.window) + (episode.observation,)  # type: ignore[operator]


def _running(episodes: list[_Episode]) -> list[_Episode]:
    return [e for e in episodes if e.end is None]


def _reset(episode: _Episode, config: RolloutConfig, probe: WorldProbe | None, stats: RolloutStats) -> None:
    started = time.perf_counter()
    try:
        episode.sandbox.reset(episode.task)
        episode.task = shown_task(episode.sandbox, episode.task)  # a web page's own instruction
        episode.observation = _observe(episode.sandbox, config, stats, elements=episode.with_elements)
        deadline = time.monotonic() + config.first_listing_s
        while (episode.with_elements and not lists_widgets(episode.observation.elements)
               and time.monotonic() < deadline):  # the app shows before its walk: don't act on its text alone
            time.sleep(0.05)
            episode.observation = _observe(episode.sandbox, config, stats, elements=True)
        if episode.with_elements and config.first_listing_s > 0:  # the walk can come in parts: act on it once still
            episode.observation = _observe(episode.sandbox, config, stats, elements=True, settle=True)
        if probe is not None:
            episode.snapshot = _timed(stats.probe, probe.snapshot, episode.sandbox)
    except SandboxError as exc:
        episode.end, episode.error = EndReason.ERROR, f"reset failed: {exc}"
        _finish(episode, EndReason.ERROR, episode.error)
    stats.reset.append(time.perf_counter() - started)
    episode.started = time.monotonic()


def _play(episode: _Episode, decision: Decision, config: RolloutConfig, probe: WorldProbe | None,
          stats: RolloutStats) -> Step | None:
    """Write the observed frame, perform the decision, observe again, write the step.
    Runs in a pool thread; sets ``episode.end`` when the episode is over."""
    index = len(episode.history)
    started_at = time.time()
    started = time.perf_counter()
    seen = episode.observation  # what the policy decided on (its error line, its frame)
    try:
        writing = time.perf_counter()
        frame = _write_frame(episode.writer, index, episode.observation)
        listing = None
        if seen is not None and seen.elements is not None:
            listing = episode.writer.write_elements(index, json.dumps(seen.elements.to_json()).encode())
        writing = time.perf_counter() - writing
        action, error = decision.action, None
        if action is None:
            error = decision.parse_error or "the model's answer held no action"
            episode.sandbox.note_invalid(error)
        elif isinstance(action, (Done, Fail)):
            episode.end = EndReason.DONE if isinstance(action, Done) else EndReason.FAIL
        else:
            result = _timed(stats.action, episode.sandbox.act, action)
            error = None if result.ok else result.error
            action = result.resolved if result.resolved is not None else action  # an element: where it acted
        delta = None
        if episode.end is None:
            episode.observation = _observe(episode.sandbox, config, stats, elements=episode.with_elements,
                                           settle=True)
            if probe is not None:
                after = _timed(stats.probe, probe.snapshot, episode.sandbox)
                delta = probe.delta(episode.snapshot or {}, after) if episode.snapshot is not None else None
                episode.snapshot = after
    except SandboxError as exc:
        episode.end, episode.error = EndReason.ERROR, f"sandbox failed at step {index}: {exc}"
        return None
    prompt = PromptInputs(window=tuple(f for _, f in episode.window if f is not None)
                          + ((frame,) if frame is not None else ()),
                          error=seen.action_error if seen is not None else None,
                          temperature=decision.temperature, elements=listing)
    episode.window.append((seen, frame))  # type: ignore[arg-type]
    step = Step(index=index, action=action, frame=frame, model_text=decision.text,
                token_ids=tuple(decision.token_ids), logprobs=tuple(decision.logprobs),
                action_error=error, started_at=started_at, duration_s=time.perf_counter() - started,
                delta=dict(delta) if delta is not None else None, prompt=prompt)
    appending = time.perf_counter()
    episode.writer.append_step(step)
    stats.write.append(writing + time.perf_counter() - appending)
    episode.history.append(decision)
    return step


def lists_widgets(listing: Any) -> bool:
    """Whether a listing holds rows from a widget source (the app's own walk, AT-SPI), not
    only text read off the screen. Measured in a main job: every held-out episode's first
    listing held OCR text lines only (the Tk walk came a moment later), so the policy's
    first step never saw a menu, tab or button as such."""
    if not listing.elements:
        return False
    reports = listing.sources or {}
    if not reports:
        return True  # a listing that does not say where its rows came from
    return any(name != "ocr" and report.ok and report.count > 0 for name, report in reports.items())


def _settled_listing(sandbox: Any, config: RolloutConfig) -> Any:
    """The element listing once it has held still for ``listing_quiet_s`` (at most
    ``listing_timeout_s``). Measured on switch_tab: read right after the click on the
    right tab, the listing lacked that tab's control in 10 of 56 and 29 of 116 rollouts,
    so the policy answered ``done`` to a screen it had not yet changed, and the group's
    outcome was the clock's, not the policy's (0 of 28 with the wait)."""
    listing = sandbox.elements()
    if config.listing_quiet_s <= 0:
        return listing
    started = since = time.monotonic()
    while time.monotonic() - started < config.listing_timeout_s:
        time.sleep(min(0.05, config.listing_quiet_s))
        again = sandbox.elements()
        if again.elements != listing.elements:
            since = time.monotonic()
        listing = again
        if time.monotonic() - since >= config.listing_quiet_s:
            break
    return listing


def _observe(sandbox: Any, config: RolloutConfig, stats: RolloutStats, *, elements: bool = False,
             settle: bool = False) -> Observation:
    """The sandbox's screen (and listing). ``settle``: after an action, wait for the listing
    to hold still first, then take the screenshot, so both show the screen after it."""
    started = time.perf_counter()
    listing = _settled_listing(sandbox, config) if elements and settle else None
    if config.wait_stable:
        from deskdojo.perception.stable import wait_for_stable_screen

        latest: list[Observation] = []

        def grab() -> Any:
            latest.append(sandbox.observe())
            return latest[-1].screenshot

        wait_for_stable_screen(grab, timeout_s=config.stable_timeout_s)
        observation = latest[-1]
    else:
        observation = sandbox.observe()
    if config.observe_app_state:
        observation = dataclasses.replace(observation, app_state=sandbox.app_state())
    if elements:  # read after the screen settled, so the listing belongs to the frame shown
        observation = dataclasses.replace(observation, elements=sandbox.elements() if listing is None else listing)
    stats.observe.append(time.perf_counter() - started)
    return observation


def _write_frame(writer: TrajectoryWriter, index: int, observation: Observation | None) -> str | None:
    if observation is None:
        return None
    from deskdojo.perception.png import encode_png

    return writer.write_frame(index, encode_png(observation.screenshot))


def _timed(samples: list[float], fn: Callable[..., Any], *args: Any) -> Any:
    started = time.perf_counter()
    try:
        return fn(*args)
    finally:
        samples.append(time.perf_counter() - started)


def _finish(episode: _Episode, end: EndReason, error: str | None = None) -> None:
    episode.end, episode.error = end, error
    episode.trajectory = episode.writer.finish(end, error=error)
