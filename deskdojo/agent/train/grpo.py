"""GRPO on judged desktop rollouts, in the order it happens.

rewards (outcome + step shaping) -> group-relative advantages (all-fail groups get a
replayed success, zero-variance groups are dropped) -> one sample per trajectory step
-> clipped token-level surrogate against the stored sampling log-probs (a replayed
success's: the policy's before the update) (+ optional k3 KL
to the adapter-free reference, + negative imitation of the first judged error) ->
gradient accumulation over micro-batches -> one optimizer step (``epochs`` of them on the
same samples).

The policy is reached through one small protocol, :class:`TokenLogProbs`: a callable
that scores each sample's generated tokens under the current weights (with grad). The
reference policy is the same callable shape, run under ``torch.no_grad``.
"""

from __future__ import annotations

import dataclasses
import math
from collections import OrderedDict, deque
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Mapping, Protocol, Sequence

import torch
import torch.nn.functional as F

from deskdojo.core.configs import closed_from_dict
from deskdojo.core.errors import ConfigError, RecordError
from deskdojo.core.records import from_json, to_json
from deskdojo.core.types import EndReason, StepLabel, Task, Trajectory, Verdict

REWARDS = ("score", "success")
NORMALISERS = ("constant", "global")


# --- config ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class GRPOConfig:
    """How GRPO turns judged groups into one update. Field docs are the CLI's ``--help``."""

    group_size: int = field(default=8, metadata={"help": "rollouts per task (G)"})
    reward: str = field(default="score", metadata={
        "help": "trajectory outcome: score (the verdict's partial credit in [0,1]) | success (0/1)"})
    invalid_step_penalty: float = field(default=0.05, metadata={
        "help": "subtracted from the reward per step whose output did not parse (0 disables)"})
    no_op_penalty: float = field(default=0.01, metadata={
        "help": "subtracted from the reward per valid step the judge labelled no-op (0 disables)"})
    grounding_weight: float = field(default=0.0, metadata={
        "help": "added to the reward: this times the verdict's grounding (how near the clicks landed "
                "to the task's targets, in [0,1]); a signal in groups whose outcomes all agree (0 disables)"})
    scale_std: bool = field(default=False, metadata={
        "help": "divide group advantages by the group's std (off: mean-centred only)"})
    clip_low: float = field(default=0.2, metadata={"help": "ratio floor is 1 - clip_low"})
    clip_high: float = field(default=0.28, metadata={"help": "ratio ceiling is 1 + clip_high (clip-higher)"})
    ratio_cap: float = field(default=3.0, metadata={
        "help": "truncated importance weight: a token's ratio weighs at most this much; "
                "only bites where A < 0, which the clip leaves unbounded (0 disables)"})
    normaliser: str = field(default="constant", metadata={
        "help": "token-sum divided by: constant (max_new_tokens x policy-gradient samples, i.e. steps, "
                "in the batch) | global (policy-gradient tokens in the batch)"})
    max_new_tokens: int = field(default=64, metadata={
        "help": "tokens the policy may generate per step; sets the constant normaliser"})
    kl_beta: float = field(default=0.0, metadata={
        "help": "weight of the k3 KL to the reference policy (adapters disabled); 0 disables"})
    neg_imitation_weight: float = field(default=0.2, metadata={
        "help": "weight of -log sigmoid(-(logp - logp_ref)) on the first error step of failed "
                "trajectories (SEAgent); 0 disables"})
    success_replay: bool = field(default=True, metadata={
        "help": "inject a stored success into groups that failed entirely (ARPO)"})
    replay_per_task: int = field(default=4, metadata={"help": "successes kept per family and level"})
    replay_max_tasks: int = field(default=1024, metadata={
        "help": "families x levels kept in the replay buffer (least recently updated goes first)"})
    rehearsal: int = field(default=0, metadata={
        "help": "stored successes of OTHER families and levels added to every update with advantage "
                "rehearsal_advantage, the least recently rehearsed first, so that an update which "
                "learns one cell keeps the answers other cells already get right; 0 disables"})
    rehearsal_advantage: float = field(default=0.5, metadata={
        "help": "advantage of a rehearsed success (a success in a group of two with one failure)"})
    generated_rehearsal: int = field(default=0, metadata={
        "help": "generated later-step examples (the tiny reader's pretraining tables, fresh each update) "
                "whose answers every optimizer step also learns, as SFT learns a demo, weighted by "
                "generated_rehearsal_weight: holds the steps no sampled group shows (a second click, "
                "a drop-down) while the groups teach one family; needs an element table; 0 disables"})
    generated_rehearsal_weight: float = field(default=1.0, metadata={
        "help": "weight of the generated examples' mean token negative log-likelihood in the loss"})
    self_imitation: float = field(default=0.0, metadata={
        "help": "weight of the mean (over steps) negative log-likelihood of the steps of the update's own "
                "groups that get a positive advantage (not the rehearsed successes of other cells, whose many "
                "steps would drown a new one's few), as SFT learns a demo (self-imitation): a success found by a rare answer (one "
                "exploration drew) keeps being learned, where the clipped surrogate stops pushing once its "
                "ratio passes 1 + clip_high and its token-sum gives one step a small share beside the "
                "rehearsal terms; answers already likely add almost nothing; 0 disables"})
    self_imitation_rehearsal: float = field(default=0.0, metadata={
        "help": "weight of the mean (over steps) negative log-likelihood of the rehearsed successes' steps, "
                "a mean of its own beside self_imitation's, so that their many steps do not drown a new "
                "success's few: what self-imitation teaches one cell (the `2` of `$2`) it otherwise teaches "
                "every cell whose steps look alike (the start's `$1` of a one-text form), and rehearsal through "
                "the clipped surrogate alone did not hold them; 0 disables"})
    negative_scale: float = field(default=1.0, metadata={
        "help": "multiplies below-mean advantages (1: plain GRPO; 0: learn only from the rollouts that did "
                "better than their group, as SFT learns from demos)"})
    positive_needs_success: bool = field(default=False, metadata={
        "help": "a rollout that beat its group's mean but failed gets advantage 0, not a positive one: "
                "only successes are reinforced (partial credit and shaping still rank the failures)"})
    skip_no_op_steps: bool = field(default=False, metadata={
        "help": "a step the judge labelled no-op gets no positive advantage: the redundant clicks of a "
                "success are not reinforced (else the policy learns to repeat a click)"})
    skip_error_steps: bool = field(default=False, metadata={
        "help": "a step whose answer did not parse or was refused (labelled error) gets no positive "
                "advantage: it did nothing, so it did not make the success, and reinforced it teaches the "
                "junk (a success found by explore_past_done holds the answers sampled with done forbidden)"})
    skip_after_checked: bool = field(default=False, metadata={
        "help": "a success's steps after the last one that changed what its checks read (app_state "
                "paths) get no positive advantage: typing on into a form already submitted did not make "
                "the success, and reinforced it teaches the wrong text; a task with other checks, or "
                "steps without recorded deltas, keep them all"})
    lr: float = field(default=1e-5, metadata={"help": "AdamW learning rate"})
    weight_decay: float = field(default=0.0, metadata={"help": "AdamW weight decay"})
    max_grad_norm: float = field(default=1.0, metadata={"help": "gradient-norm clip (0 disables)"})
    micro_batch_size: int = field(default=8, metadata={
        "help": "samples (steps) per forward/backward; gradients accumulate to one optimizer step"})
    epochs: int = field(default=1, metadata={
        "help": "optimizer steps per update on the same samples (PPO's inner epochs); later passes "
                "are off-policy, and the ratio to the stored sampling log-probs clips them"})

    def __post_init__(self) -> None:
        if self.group_size < 2:
            raise ConfigError(f"group_size must be >= 2 (advantages are relative), got {self.group_size}")
        if self.reward not in REWARDS:
            raise ConfigError(f"reward {self.reward!r} is not one of: {', '.join(REWARDS)}")
        if self.normaliser not in NORMALISERS:
            raise ConfigError(f"normaliser {self.normaliser!r} is not one of: {', '.join(NORMALISERS)}")
        for name in ("invalid_step_penalty", "no_op_penalty", "grounding_weight", "kl_beta", "neg_imitation_weight",
                     "clip_high", "weight_decay", "max_grad_norm", "rehearsal_advantage", "negative_scale",
                     "generated_rehearsal_weight", "self_imitation", "self_imitation_rehearsal"):
            value = getattr(self, name)
            if not (isinstance(value, (int, float)) and math.isfinite(value) and value >= 0):
                raise ConfigError(f"{name} must be a finite number >= 0, got {value!r}")
        if not 0 <= self.clip_low < 1:
            raise ConfigError(f"clip_low must be within [0, 1), got {self.clip_low}")
        if self.ratio_cap != 0 and self.ratio_cap < 1 + self.clip_high:
            raise ConfigError(f"ratio_cap must be 0 (off) or >= 1 + clip_high = {1 + self.clip_high}, "
                              f"got {self.ratio_cap}")
        for name in ("max_new_tokens", "replay_per_task", "replay_max_tasks", "micro_batch_size", "epochs"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be >= 1, got {getattr(self, name)}")
        if not self.lr > 0:
            raise ConfigError(f"lr must be > 0, got {self.lr}")
        if isinstance(self.generated_rehearsal, bool) or not isinstance(self.generated_rehearsal, int) \
                or self.generated_rehearsal < 0:
            raise ConfigError(f"generated_rehearsal must be a count >= 0, got {self.generated_rehearsal!r}")
        if self.rehearsal < 0 or (self.rehearsal and not self.success_replay):
            raise ConfigError(f"rehearsal must be >= 0 and needs success_replay (it replays the buffer's "
                              f"successes), got rehearsal={self.rehearsal}, success_replay={self.success_replay}")

    @property
    def needs_reference(self) -> bool:
        return self.kl_beta > 0 or self.neg_imitation_weight > 0

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "GRPOConfig":
        return closed_from_dict(cls, data, "grpo config")

    def replace(self, **changes: Any) -> "GRPOConfig":
        return dataclasses.replace(self, **changes)


# --- rewards and advantages ----------------------------------------------------------


def trajectory_reward(trajectory: Trajectory, verdict: Verdict, config: GRPOConfig) -> float:
    """Outcome (the verdict's score, or success as 0/1) plus ``grounding_weight`` times the
    verdict's grounding (0 where it has none), minus per-step shaping penalties.

    A step whose output did not parse (``action is None``) costs ``invalid_step_penalty``;
    a valid step the judge labelled no-op costs ``no_op_penalty`` (an unparsed step is
    charged once, as invalid, whatever its label).
    """
    outcome = verdict.score if config.reward == "score" else float(verdict.success)
    outcome += config.grounding_weight * (verdict.grounding or 0.0)
    invalid_steps = sum(1 for step in trajectory.steps if step.action is None)
    no_op_steps = sum(1 for step, label in zip(trajectory.steps, verdict.step_labels)
                      if step.action is not None and label == StepLabel.NO_OP)
    return outcome - config.invalid_step_penalty * invalid_steps - config.no_op_penalty * no_op_steps


def group_advantages(rewards: Sequence[float], *, scale_std: bool = False) -> list[float] | None:
    """Group-relative advantages ``r - mean(r)`` (divided by the population std if
    ``scale_std``), or None when the group carries no signal (fewer than two members or
    all rewards equal): such groups are dropped, not trained on with zeros.

    >>> group_advantages([1.0, 0.0, 0.0, 1.0])
    [0.5, -0.5, -0.5, 0.5]
    >>> group_advantages([1.0, 0.0, 0.0, 1.0], scale_std=True)
    [1.0, -1.0, -1.0, 1.0]
    >>> group_advantages([0.3, 0.3]) is None
    True
    """
    if len(rewards) < 2 or max(rewards) - min(rewards) < 1e-9:
        return None
    mean = sum(rewards) / len(rewards)
    advantages = [r - mean for r in rewards]
    if scale_std:
        std = math.sqrt(sum(a * a for a in advantages) / len(advantages))
        advantages = [a / std for a in advantages]
    return advantages


# --- success replay ------------------------------------------------------------------


def _has_sampling_logprobs(trajectory: Trajectory) -> bool:
    steps = [step for step in trajectory.steps if step.token_ids]
    return bool(steps) and all(len(step.logprobs) == len(step.token_ids) for step in steps)


def replay_key(task: Task) -> str:
    """What success replay is keyed by: the task's family and level. Generated tasks rarely
    recur by id (each draw may be a new seed), but their family and level do.

    >>> replay_key(Task(id="click-3", instruction="Click OK", family="click_button", level=2))
    'click_button/L2'
    """
    return f"{task.family}/L{task.level}"


class SuccessReplay:
    """Buffer of recent successful trajectories per family and level (bounded), for all-fail groups.

    When every rollout of a task fails, a stored success of the same family and level
    joins the group (as ARPO does with the same task) so the group still says which way
    is up: the task's own success when one is stored, else the newest of a sibling task.
    A replayed trajectory trains on its own task's prompt. Its ratio is taken to the
    policy before the update (``GRPOTrainer.update``), not to the log-probs it was
    sampled with: against those, a success sampled at p = 0.04 is clipped once the
    policy gives it 0.05, and every later replay of it would carry no gradient.
    Frames are referenced by path, so the run directory that holds them must persist.
    Successes added without their task (older checkpoints) are keyed by task id.
    """

    def __init__(self, *, per_task: int = 4, max_tasks: int = 1024):
        if per_task < 1 or max_tasks < 1:
            raise ConfigError(f"replay needs per_task >= 1 and max_tasks >= 1, got {per_task}, {max_tasks}")
        self.per_task = per_task
        self.max_tasks = max_tasks
        self._buffers: OrderedDict[str, deque[tuple[Task | None, Trajectory, Verdict]]] = OrderedDict()

    def __len__(self) -> int:
        return sum(len(buffer) for buffer in self._buffers.values())

    def add(self, trajectory: Trajectory, verdict: Verdict, *, task: Task | None = None) -> bool:
        """Store a success (under ``replay_key(task)``; without ``task``, under its task id);
        False (not stored) for failures, duplicates, and trajectories without sampling
        log-probs (they could not be importance-weighted)."""
        if not verdict.success or not _has_sampling_logprobs(trajectory):
            return False
        if task is not None and task.id != trajectory.task_id:
            raise RecordError(f"replay: trajectory {trajectory.id} is of task {trajectory.task_id!r}, not {task.id!r}")
        key = replay_key(task) if task is not None else trajectory.task_id
        buffer = self._buffers.setdefault(key, deque(maxlen=self.per_task))
        if any(stored.id == trajectory.id for _, stored, _ in buffer):
            return False
        buffer.append((task, trajectory, verdict))
        self._buffers.move_to_end(key)
        while len(self._buffers) > self.max_tasks:
            self._buffers.popitem(last=False)
        return True

    def sample(self, key: str) -> tuple[Trajectory, Verdict] | None:
        """The most recent stored success under ``key`` (deterministic, so resumes agree)."""
        buffer = self._buffers.get(key)
        return buffer[-1][1:] if buffer else None

    def sample_for(self, task: Task) -> tuple[Task, Trajectory, Verdict] | None:
        """A success for an all-fail group of ``task``: its own newest, else the newest of
        its family and level, else one stored by task id; None when there is none."""
        buffer = self._buffers.get(replay_key(task)) or ()
        own = [entry for entry in buffer if entry[1].task_id == task.id]
        if own or buffer:
            stored_task, trajectory, verdict = (own or list(buffer))[-1]
            return stored_task or task, trajectory, verdict
        legacy = self._buffers.get(task.id)
        return (task, *legacy[-1][1:]) if legacy else None

    def rehearse(self, count: int, *, exclude: frozenset[str]) -> list[tuple[Task, Trajectory, Verdict]]:
        """The newest success of each of up to ``count`` keys not in ``exclude``, least
        recently added or rehearsed first; each key taken goes to the back of that order,
        so rehearsal cycles through the families and levels the buffer holds."""
        chosen = []
        for key in [k for k in self._buffers if k not in exclude]:
            if len(chosen) == count:
                break
            entries = [entry for entry in self._buffers[key] if entry[0] is not None]
            if entries:
                chosen.append(entries[-1])
                self._buffers.move_to_end(key)
        return chosen

    def to_dict(self) -> dict[str, Any]:
        return {"per_task": self.per_task, "max_tasks": self.max_tasks,
                "tasks": [{"key": key,
                           "entries": [{"task": to_json(task) if task is not None else None,
                                        "trajectory": to_json(t), "verdict": to_json(v)}
                                       for task, t, v in buffer]}
                          for key, buffer in self._buffers.items()]}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "SuccessReplay":
        try:
            replay = cls(per_task=int(data["per_task"]), max_tasks=int(data["max_tasks"]))
            tasks = data["tasks"]
        except (KeyError, TypeError, ValueError) as exc:
            raise RecordError(f"success replay state is malformed ({exc!r}); expected the output of "
                              f"SuccessReplay.to_dict()") from None
        for entry_set in tasks:
            for i, entry in enumerate(entry_set["entries"]):
                where = f"replay[{entry_set.get('key', entry_set.get('task_id'))}][{i}]"
                task = entry.get("task")
                replay.add(from_json(Trajectory, entry["trajectory"], where=f"{where}.trajectory"),
                           from_json(Verdict, entry["verdict"], where=f"{where}.verdict"),
                           task=from_json(Task, task, where=f"{where}.task") if task is not None else None)
        return replay


# --- samples -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Rollout:
    """One judged rollout of a task. ``replayed`` marks a success injected from the buffer."""

    task: Task
    trajectory: Trajectory
    verdict: Verdict
    replayed: bool = False


@dataclass(frozen=True, slots=True, eq=False)
class GRPOSample:
    """One trajectory step as a training sample.

    The prompt is that step's observation window, which the policy rebuilds from
    ``task``, ``trajectory`` and ``step_index`` (frames, history); the target is the
    tokens it generated then, ``token_ids``, with the log-probs they were sampled with
    (which a ``replayed`` sample's ratio does not use: see ``SuccessReplay``).
    """

    task: Task
    trajectory: Trajectory
    step_index: int
    token_ids: tuple[int, ...]
    old_logprobs: tuple[float, ...]
    advantage: float
    policy_gradient: bool  # False: the sample only carries negative imitation (its group was dropped)
    negative_imitation: bool
    replayed: bool = False
    rehearsed: bool = False  # a stored success of another family or level (``rehearsal``)


class TokenLogProbs(Protocol):
    """Scores samples' target tokens under a policy.

    Returns ``(logp, mask)``, both ``[B, T]`` with ``T >= max len(token_ids)``:
    ``logp[b, t]`` is the log-probability of ``samples[b].token_ids[t]`` given the
    prompt and the tokens before it (differentiable for the trained policy), and
    ``mask[b, t]`` is 1 exactly for ``t < len(samples[b].token_ids)``.
    """

    def __call__(self, samples: Sequence[GRPOSample]) -> tuple[torch.Tensor, torch.Tensor]: ...


@dataclass(frozen=True, slots=True)
class GroupSummary:
    """What one group contributed; ``mean_abs_advantage`` (of the group's own rollouts,
    replay excluded, never std-scaled) is the curriculum's learning-progress signal.
    ``rewards`` and ``advantages`` are those of the group's own valid rollouts (replay
    excluded; advantages std-scaled as configured, zeros when the group carries no
    signal): the loop's metrics read them here instead of rewarding every rollout again."""

    task_id: str
    rewards: tuple[float, ...]
    successes: tuple[bool, ...]
    mean_abs_advantage: float
    used: bool
    replayed: bool
    error_excluded: int
    advantages: tuple[float, ...] = ()


@dataclass(frozen=True, slots=True)
class SampleBatch:
    samples: tuple[GRPOSample, ...]
    groups: tuple[GroupSummary, ...]
    rehearsed: int = 0  # stored successes of other families and levels added (``rehearsal``)

    def counts(self) -> dict[str, float]:
        own = [s for g in self.groups for s in g.successes]
        rewards = [r for g in self.groups for r in g.rewards]
        return {
            "groups": len(self.groups),
            "groups_used": sum(g.used for g in self.groups),
            "groups_zero_variance": sum(not g.used for g in self.groups),
            "trajectories": len(own),
            "trajectories_error_excluded": sum(g.error_excluded for g in self.groups),
            "replayed": sum(g.replayed for g in self.groups),
            "rehearsed": self.rehearsed,
            "samples": len(self.samples),
            "negative_imitation_samples": sum(s.negative_imitation for s in self.samples),
            "success_rate": sum(own) / len(own) if own else 0.0,
            "reward_mean": sum(rewards) / len(rewards) if rewards else 0.0,
        }


def _as_rollout(item: Rollout | Sequence[Any]) -> Rollout:
    rollout = item if isinstance(item, Rollout) else Rollout(*item)
    task, trajectory, verdict = rollout.task, rollout.trajectory, rollout.verdict
    if trajectory.task_id != task.id or verdict.task_id != task.id:
        raise RecordError(f"rollout of task {task.id!r} holds trajectory for {trajectory.task_id!r} "
                          f"and verdict for {verdict.task_id!r}: pass (task, trajectory, verdict) that match")
    if verdict.trajectory_id != trajectory.id:
        raise RecordError(f"verdict for {verdict.trajectory_id!r} paired with trajectory {trajectory.id!r}")
    return rollout


def build_samples(groups: Iterable[Sequence[Rollout | Sequence[Any]]], config: GRPOConfig,
                  replay: SuccessReplay | None = None) -> SampleBatch:
    """Judged groups -> per-step samples with advantages. Updates ``replay``."""
    samples: list[GRPOSample] = []
    summaries: list[GroupSummary] = []
    for group in groups:
        rollouts = [_as_rollout(item) for item in group]
        if not rollouts:
            continue
        task_ids = {r.task.id for r in rollouts}
        if len(task_ids) != 1:
            raise RecordError(f"a GRPO group must hold rollouts of one task, got {sorted(task_ids)}")
        valid = [r for r in rollouts if r.trajectory.end is not EndReason.ERROR]
        own_rewards = [trajectory_reward(r.trajectory, r.verdict, config) for r in valid]
        # the curriculum's signal: mean-centred only, so it says how much outcomes differ
        own_advantages = group_advantages(own_rewards) or [0.0] * len(valid)

        replayed = False
        if replay is not None and valid:
            if any(r.verdict.success for r in valid):
                for r in valid:
                    replay.add(r.trajectory, r.verdict, task=r.task)
            elif (stored := replay.sample_for(valid[0].task)) is not None:
                valid.append(Rollout(*stored, replayed=True))
                replayed = True

        # each trajectory is rewarded once: only a replayed success (appended last) is new here
        rewards = own_rewards + [trajectory_reward(r.trajectory, r.verdict, config)
                                 for r in valid[len(own_rewards):]]
        advantages = group_advantages(rewards, scale_std=config.scale_std)
        summaries.append(GroupSummary(
            task_id=rollouts[0].task.id, rewards=tuple(own_rewards),
            successes=tuple(r.verdict.success for r in valid if not r.replayed),
            mean_abs_advantage=sum(abs(a) for a in own_advantages) / max(1, len(own_advantages)),
            used=advantages is not None, replayed=replayed,
            error_excluded=len(rollouts) - len([r for r in valid if not r.replayed]),
            advantages=tuple(group_advantages(own_rewards, scale_std=True) or [0.0] * len(own_rewards))
            if config.scale_std else tuple(own_advantages)))

        for rollout, advantage in zip(valid, advantages or [0.0] * len(valid)):
            if advantage < 0:
                advantage *= config.negative_scale
            elif config.positive_needs_success and not rollout.verdict.success:
                advantage = 0.0
            samples.extend(_step_samples(rollout, advantage, advantages is not None, config))
    rehearsed = 0
    if config.rehearsal and replay is not None and any(s.policy_gradient for s in samples):
        # only alongside an update: rehearsal keeps what works, it is no signal by itself
        own_keys = frozenset(replay_key(s.task) for s in samples)
        for task, trajectory, verdict in replay.rehearse(config.rehearsal, exclude=own_keys):
            samples.extend(dataclasses.replace(sample, rehearsed=True) for sample in _step_samples(
                Rollout(task, trajectory, verdict, replayed=True), config.rehearsal_advantage, True, config))
            rehearsed += 1
    return SampleBatch(tuple(samples), tuple(summaries), rehearsed)


def _step_samples(rollout: Rollout, advantage: float, policy_gradient: bool,
                  config: GRPOConfig) -> list[GRPOSample]:
    """Every generated step gets the trajectory's advantage (with ``skip_no_op_steps`` and
    ``skip_error_steps``, a positive one skips the steps labelled no-op and error); the
    first error step of a failed trajectory is also marked for negative imitation."""
    verdict = rollout.verdict
    imitation_step = (verdict.first_error_step
                      if config.neg_imitation_weight > 0 and not verdict.success else None)
    labels = verdict.step_labels
    last_checked = (last_checked_step(rollout.task, rollout.trajectory)
                    if config.skip_after_checked and advantage > 0 and verdict.success else None)
    skipped = ((StepLabel.NO_OP,) if config.skip_no_op_steps else ()) + \
        ((StepLabel.ERROR,) if config.skip_error_steps else ())
    out = []
    for step in rollout.trajectory.steps:
        negative_imitation = step.index == imitation_step
        if not step.token_ids or not (policy_gradient or negative_imitation):
            continue
        step_advantage = advantage
        if last_checked is not None and step.index > last_checked and not negative_imitation:
            continue
        if advantage > 0 and step.index < len(labels) and labels[step.index] in skipped:
            if not negative_imitation:
                continue
            step_advantage = 0.0
        if len(step.logprobs) != len(step.token_ids):
            raise RecordError(f"trajectory {rollout.trajectory.id} step {step.index} has token ids but no "
                              f"sampling logprobs: GRPO needs them; record Decision logprobs at rollout")
        out.append(GRPOSample(
            task=rollout.task, trajectory=rollout.trajectory, step_index=step.index,
            token_ids=tuple(step.token_ids), old_logprobs=tuple(step.logprobs), advantage=step_advantage,
            policy_gradient=policy_gradient, negative_imitation=negative_imitation,
            replayed=rollout.replayed))
    return out


def last_checked_step(task: Task, trajectory: Trajectory) -> int | None:
    """The index of the last step whose recorded delta changed a path the task's checks
    read (``app_state`` checks: an app and a dotted path; a change touches it when one path
    is a prefix of the other, by components), or None where that cannot be told: a check
    of another getter, a step without a recorded delta, or no such step."""
    checked = []
    for check in task.checks:
        if check.getter != "app_state" or "app" not in check.args or "path" not in check.args:
            return None
        checked.append((str(check.args["app"]), str(check.args["path"]).split(".")))
    last = None
    for step in trajectory.steps:
        if step.delta is None:
            return None
        for app, change in step.delta.get("apps", {}).items():
            keys = [*change.get("changed", {}), *change.get("added", ()), *change.get("removed", ())]
            for key in keys:
                parts = str(key).split(".")
                if any(app == checked_app and parts[:len(path)] == path[:len(parts)]
                       for checked_app, path in checked):
                    last = step.index
    return last


def _rehearsal_imitated(sample: GRPOSample) -> bool:
    """Whether ``self_imitation_rehearsal`` learns ``sample``: a rehearsed success's step."""
    return sample.policy_gradient and sample.advantage > 0 and sample.rehearsed


def _imitated(sample: GRPOSample) -> bool:
    """Whether self-imitation learns ``sample``: a step of the update's own groups (a
    success replayed into its own cell's group too) that gets a positive advantage. Not a
    rehearsed one: rehearsal holds other cells through the surrogate, and in the mean NLL
    its dozens of steps drowned the few of a success just found."""
    return sample.policy_gradient and sample.advantage > 0 and not sample.rehearsed


def loss_normaliser(config: GRPOConfig, samples: Sequence[GRPOSample]) -> float:
    """What the token-sum is divided by. Never a per-sequence mean: that would give the
    tokens of short answers more weight than those of long ones.

    With N the batch's policy-gradient samples (one per generated step of a trajectory
    in a used group, replay included), L = ``max_new_tokens`` and n_i the tokens of
    sample i, the policy term is ``sum_i sum_{t < n_i} loss_it / D`` with::

        constant:  D = L * N           every token weighs 1 / (L N): a sample's share is
                                       n_i / (L N), whatever the lengths of the others;
                                       the gradient is a mean over samples, so its scale
                                       does not grow with the number of groups or steps
        global:    D = sum_i n_i       every token weighs the same, 1 / (tokens in batch)

    (Dr. GRPO's constant normaliser, with "sequences" = steps.) One group of G one-step
    rollouts gives D = L * G under ``constant``.
    """
    pg_samples = [s for s in samples if s.policy_gradient]
    if config.normaliser == "constant":
        return float(config.max_new_tokens * max(1, len(pg_samples)))
    return float(max(1, sum(len(s.token_ids) for s in pg_samples)))


# --- the loss ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class LossStats:
    """Sums over one (micro-)batch; ``+`` merges micro-batches, ``as_dict`` gives means.

    The loss terms are already divided by the whole batch's normaliser (and the
    negative-imitation count), so they add up across micro-batches.
    """

    loss: float = 0.0
    policy_loss: float = 0.0
    kl_loss: float = 0.0
    neg_imitation_loss: float = 0.0
    tokens: int = 0
    clipped_low: int = 0
    clipped_high: int = 0
    capped: int = 0
    ratio_sum: float = 0.0
    kl_sum: float = 0.0
    logp_sum: float = 0.0
    kl_tokens: int = 0  # tokens the KL covers (those with a reference)

    def __add__(self, other: "LossStats") -> "LossStats":
        return LossStats(*(getattr(self, f.name) + getattr(other, f.name) for f in dataclasses.fields(self)))

    def as_dict(self) -> dict[str, float]:
        """Means per token. ``kl`` is over the tokens that have a reference and is absent
        when none has: with ``kl_beta`` 0 only negative-imitation samples get one, and a
        0 there would read as "the policy has not moved" when nothing was measured."""
        tokens = max(1, self.tokens)
        kl = {"kl": self.kl_sum / self.kl_tokens} if self.kl_tokens else {}
        return {
            "loss": self.loss, "policy_loss": self.policy_loss, "kl_loss": self.kl_loss,
            "neg_imitation_loss": self.neg_imitation_loss, "tokens": self.tokens,
            "clip_fraction": (self.clipped_low + self.clipped_high) / tokens,
            "clip_low_fraction": self.clipped_low / tokens,
            "clip_high_fraction": self.clipped_high / tokens,
            "capped_fraction": self.capped / tokens,
            "ratio_mean": self.ratio_sum / tokens,
            **kl, "kl_tokens": self.kl_tokens,
            # -log p of sampled tokens: an unbiased per-token entropy estimate on-policy
            "entropy_estimate": -self.logp_sum / tokens,
        }


def grpo_loss(logp: torch.Tensor, old_logp: torch.Tensor, mask: torch.Tensor, advantages: torch.Tensor,
              *, config: GRPOConfig, normaliser: float, policy_gradient: torch.Tensor | None = None,
              ref_logp: torch.Tensor | None = None, negative_imitation: torch.Tensor | None = None,
              negative_imitation_count: int | None = None,
              reference_rows: torch.Tensor | None = None) -> tuple[torch.Tensor, LossStats]:
    """The GRPO objective for one (micro-)batch, as a loss to minimise.

    Shapes: ``logp``, ``old_logp``, ``mask``, ``ref_logp``: [B, T]; ``advantages``,
    ``policy_gradient``, ``negative_imitation``, ``reference_rows`` (which rows of
    ``ref_logp`` hold reference log-probs; default all): [B]. ``old_logp`` are the STORED
    sampling log-probs (for a replayed sample, the trainer passes the policy's before the
    update). Per token, with A the sample's advantage::

        ratio     = exp(logp - old_logp)
        weighted  = min(ratio, ratio_cap)          (value and gradient weight; TIS)
        loss_t    = -min(weighted * A, clip(ratio, 1 - clip_low, 1 + clip_high) * A)
        policy    = sum_t loss_t / normaliser       (token-sum, not per-sequence mean)
        kl        = sum_t [exp(ref - logp) - (ref - logp) - 1] / normaliser      (k3)
        imitation = mean over marked samples of -log sigmoid(-sum_t (logp - ref))
        loss      = policy + kl_beta * kl + neg_imitation_weight * imitation

    Positions outside ``mask`` are SELECTED away (``torch.where``) before any arithmetic,
    never multiplied by 0: a log-prob source may leave -inf or NaN there, and -inf * 0 is
    NaN in the loss and in the gradient.

    Why the cap: where A < 0 the clipped surrogate picks the unclipped ``ratio * A``
    for ratio > 1 + clip_high, so one token the sampler found unlikely (a stale or
    replayed sample, a sampler/trainer numeric mismatch) can dominate the step. Capping
    its importance weight at c keeps its gradient bounded (``c * A * grad logp``) but
    not zero, as truncated importance sampling does. Where A > 0 the clip acts first.
    It is computed in log space, ``exp(log_ratio - max(0, log_ratio - log c))`` with the
    subtracted part detached, so a ratio that underflows to 0 stays 0 (no 0/0).
    """
    real = mask.to(device=logp.device, dtype=torch.bool)
    logp = torch.where(real, logp.float(), 0.0)
    old_logp = torch.where(real, old_logp.to(logp), 0.0)
    advantages = advantages.to(logp)
    pg_rows = (torch.ones_like(advantages, dtype=torch.bool) if policy_gradient is None
               else policy_gradient.to(device=logp.device, dtype=torch.bool))
    pg_mask = real & pg_rows[:, None]
    advantage = advantages[:, None]

    log_ratio = logp - old_logp
    ratio = torch.exp(log_ratio)
    weighted = ratio
    if config.ratio_cap > 0:
        weighted = torch.exp(log_ratio - (log_ratio.detach() - math.log(config.ratio_cap)).clamp(min=0))
    unclipped = weighted * advantage
    clipped = ratio.clamp(1 - config.clip_low, 1 + config.clip_high) * advantage
    per_token = -torch.minimum(unclipped, clipped)
    policy_loss = torch.where(pg_mask, per_token, 0.0).sum() / normaliser
    loss = policy_loss

    kl_sum = torch.zeros((), device=logp.device)
    kl_loss = torch.zeros((), device=logp.device)
    kl_mask = torch.zeros_like(pg_mask)
    if ref_logp is not None:
        has_reference = (torch.ones_like(pg_rows) if reference_rows is None
                         else reference_rows.to(device=logp.device, dtype=torch.bool))
        ref_logp = torch.where(real & has_reference[:, None], ref_logp.to(logp), logp.detach())
        kl_mask = pg_mask & has_reference[:, None]
        log_ref_ratio = ref_logp - logp
        k3 = torch.exp(log_ref_ratio) - log_ref_ratio - 1
        kl_sum = torch.where(kl_mask, k3, 0.0).sum()
        kl_loss = kl_sum / normaliser
    if config.kl_beta > 0:
        if ref_logp is None:
            raise ConfigError("kl_beta > 0 needs ref_logp (the policy with adapters disabled)")
        loss = loss + config.kl_beta * kl_loss

    neg_loss = torch.zeros((), device=logp.device)
    if config.neg_imitation_weight > 0 and negative_imitation is not None and bool(negative_imitation.any()):
        if ref_logp is None:
            raise ConfigError("neg_imitation_weight > 0 needs ref_logp (the policy with adapters disabled)")
        marked = negative_imitation.to(device=logp.device, dtype=torch.bool)
        count = negative_imitation_count if negative_imitation_count is not None else int(marked.sum())
        sequence_log_ratio = (logp - ref_logp).sum(dim=-1)  # both are 0 off the mask
        neg_loss = torch.where(marked, -F.logsigmoid(-sequence_log_ratio), 0.0).sum() / count
        loss = loss + config.neg_imitation_weight * neg_loss

    with torch.no_grad():
        stats = LossStats(
            loss=float(loss.detach()), policy_loss=float(policy_loss.detach()), kl_loss=float(kl_loss.detach()),
            neg_imitation_loss=float(neg_loss.detach()), tokens=int(pg_mask.sum()),
            clipped_low=int((pg_mask & (advantage < 0) & (ratio < 1 - config.clip_low)).sum()),
            clipped_high=int((pg_mask & (advantage > 0) & (ratio > 1 + config.clip_high)).sum()),
            capped=int((pg_mask & (advantage < 0) & (ratio > config.ratio_cap)).sum())
            if config.ratio_cap > 0 else 0,
            ratio_sum=float(torch.where(pg_mask, ratio, 0.0).sum()), kl_sum=float(kl_sum),
            logp_sum=float(torch.where(pg_mask, logp.detach(), 0.0).sum()), kl_tokens=int(kl_mask.sum()))
    return loss, stats


# --- the trainer ---------------------------------------------------------------------


def _padded(rows: Sequence[Sequence[float]], width: int, *, device: torch.device) -> torch.Tensor:
    out = torch.zeros(len(rows), width, dtype=torch.float32, device=device)
    for i, row in enumerate(rows):
        out[i, :len(row)] = torch.tensor(row, dtype=torch.float32)
    return out


def _check_alignment(logp: torch.Tensor, mask: torch.Tensor, samples: Sequence[GRPOSample],
                     source: str) -> None:
    lengths = [len(s.token_ids) for s in samples]
    if logp.dim() != 2 or logp.shape != mask.shape or logp.shape[0] != len(samples) \
            or logp.shape[1] < max(lengths):
        raise ConfigError(f"{source} returned logp {tuple(logp.shape)} and mask {tuple(mask.shape)} for "
                          f"{len(samples)} samples of up to {max(lengths)} tokens: expected [B, T>=max] both")
    got = mask.detach().to(torch.long).sum(dim=-1).tolist()
    if got != lengths:
        raise ConfigError(f"{source} mask covers {got} tokens per sample but the samples have {lengths}: "
                          f"logp must align with each sample's token_ids")


class GRPOTrainer:
    """Owns the optimizer and the success replay; ``step(groups)`` is one GRPO update.

    ``policy_logprobs`` scores samples with grad; ``reference_logprobs`` (needed when
    ``kl_beta`` or ``neg_imitation_weight`` > 0) scores them under the reference policy,
    e.g. the same model with its adapters disabled, and is called under no_grad.
    ``supervised`` (needed when ``generated_rehearsal`` > 0) gives update ``n``'s supervised
    loss with grad (the generated examples' mean token NLL): a function of ``n``, so a
    resumed run rehearses what the uninterrupted one would have.
    """

    def __init__(self, config: GRPOConfig, policy_logprobs: TokenLogProbs,
                 parameters: Iterable[torch.nn.Parameter], *,
                 reference_logprobs: TokenLogProbs | None = None,
                 supervised: Callable[[int], torch.Tensor] | None = None):
        self.config = config
        self.policy_logprobs = policy_logprobs
        self.reference_logprobs = reference_logprobs
        if config.needs_reference and reference_logprobs is None:
            raise ConfigError("kl_beta and neg_imitation_weight need reference_logprobs (the policy with "
                              "adapters disabled): pass it, or set both to 0")
        if config.generated_rehearsal and supervised is None:
            raise ConfigError("generated_rehearsal needs the supervised loss of the generated examples: pass "
                              "supervised (vlm_learner does, for a policy with an element table), or set it to 0")
        self.supervised = supervised if config.generated_rehearsal else None
        self._generated_nll: float | None = None  # the latest optimizer step's supervised loss
        self.parameters = [p for p in parameters if p.requires_grad]
        if not self.parameters:
            raise ConfigError("GRPOTrainer got no trainable parameters (requires_grad=True): "
                              "pass the adapter's parameters")
        self.optimizer = torch.optim.AdamW(self.parameters, lr=config.lr, weight_decay=config.weight_decay)
        self.replay = (SuccessReplay(per_task=config.replay_per_task, max_tasks=config.replay_max_tasks)
                       if config.success_replay else None)
        self.updates = 0
        self.last_groups: tuple[GroupSummary, ...] = ()
        self._imitated = 0  # this update's self-imitated steps (the NLL's divisor)
        self._imitation_nll = 0.0  # this optimizer step's mean NLL over them
        self._rehearsal_imitated = 0  # the same for self_imitation_rehearsal's rehearsed steps
        self._rehearsal_imitation_nll = 0.0

    def step(self, groups: Iterable[Sequence[Rollout | Sequence[Any]]]) -> dict[str, float]:
        """One update from judged groups of (task, trajectory, verdict). Returns stats;
        ``skipped`` is 1 when no group carried signal (no optimizer step was taken)."""
        batch = build_samples(groups, self.config, self.replay)
        self.last_groups = batch.groups
        stats: dict[str, float] = batch.counts()
        if not batch.samples:
            return {**stats, "skipped": 1}
        return {**stats, **self.update(batch.samples), "skipped": 0}

    def update(self, samples: Sequence[GRPOSample]) -> dict[str, float]:
        """The optimizer steps (``epochs`` of them) for samples that already carry their
        advantages; ``step`` builds those from judged groups."""
        normaliser = loss_normaliser(self.config, samples)
        imitation_count = sum(s.negative_imitation for s in samples)
        self._imitated = sum(_imitated(s) for s in samples) if self.config.self_imitation > 0 else 0
        self._rehearsal_imitated = (sum(_rehearsal_imitated(s) for s in samples)
                                    if self.config.self_imitation_rehearsal > 0 else 0)
        references = self._reference_rows(samples)
        # a replayed sample's ratio is to the policy before this update (its first pass's
        # log-probs), so that every replay of a rare success can move the policy again
        before: dict[GRPOSample, torch.Tensor] = {}
        first: tuple[LossStats, float, float | None, float, float] | None = None
        for _ in range(self.config.epochs):
            self._imitation_nll = self._rehearsal_imitation_nll = 0.0
            totals, grad_norm = self._optimizer_step(samples, references, before, normaliser, imitation_count)
            first = first or (totals, grad_norm, self._generated_nll, self._imitation_nll,
                              self._rehearsal_imitation_nll)
        self.updates += 1
        totals, grad_norm, generated_nll, imitation_nll, rehearsal_imitation_nll = first
        # the stats are the first pass's: on-policy, comparable across settings of epochs
        extra = {"generated_nll": generated_nll} if generated_nll is not None else {}
        if self._imitated:
            extra["self_imitation_nll"] = imitation_nll
            extra["self_imitation_steps"] = self._imitated
        if self._rehearsal_imitated:
            extra["self_imitation_rehearsal_nll"] = rehearsal_imitation_nll
            extra["self_imitation_rehearsal_steps"] = self._rehearsal_imitated
        return {**totals.as_dict(), "normaliser": normaliser, "grad_norm": grad_norm, **extra}

    def _reference_rows(self, samples: Sequence[GRPOSample]) -> list[torch.Tensor | None]:
        """Each sample's reference log-probs (detached, one per token), or None where the
        loss does not use them. The reference is frozen, so they are computed once per
        update, in micro-batches of the samples that need them (all when ``kl_beta`` > 0,
        else those marked for negative imitation), and every epoch reuses them."""
        rows: list[torch.Tensor | None] = [None] * len(samples)
        if self.reference_logprobs is None:
            return rows
        wanted = [i for i, s in enumerate(samples) if self.config.kl_beta > 0
                  or (self.config.neg_imitation_weight > 0 and s.negative_imitation)]
        size = self.config.micro_batch_size
        for start in range(0, len(wanted), size):
            chunk = wanted[start:start + size]
            scored = [samples[i] for i in chunk]
            with torch.no_grad():
                ref_logp, ref_mask = self.reference_logprobs(scored)
            _check_alignment(ref_logp, ref_mask, scored, "reference_logprobs")
            ref_logp = ref_logp.detach().float()
            for row, i in enumerate(chunk):
                rows[i] = ref_logp[row, :len(samples[i].token_ids)].clone()
        return rows

    def _optimizer_step(self, samples: Sequence[GRPOSample], references: Sequence[torch.Tensor | None],
                        before: dict[GRPOSample, torch.Tensor], normaliser: float,
                        imitation_count: int) -> tuple[LossStats, float]:
        self.optimizer.zero_grad(set_to_none=True)
        totals = LossStats()
        size = self.config.micro_batch_size
        for start in range(0, len(samples), size):
            totals += self._accumulate(samples[start:start + size], references[start:start + size],
                                       before, normaliser, imitation_count)
        if self.supervised is not None:
            nll = self.supervised(self.updates)
            (self.config.generated_rehearsal_weight * nll).backward()
            self._generated_nll = float(nll.detach())
        if self.config.max_grad_norm > 0:
            grad_norm = torch.nn.utils.clip_grad_norm_(self.parameters, self.config.max_grad_norm)
        else:
            grad_norm = torch.linalg.vector_norm(torch.stack(
                [p.grad.norm() for p in self.parameters if p.grad is not None]))
        self.optimizer.step()
        return totals, float(grad_norm)

    def _accumulate(self, samples: Sequence[GRPOSample], references: Sequence[torch.Tensor | None],
                    before: dict[GRPOSample, torch.Tensor], normaliser: float, imitation_count: int) -> LossStats:
        """Forward and backward one micro-batch; its gradient adds to the others'. ``before``
        holds the replayed samples' log-probs from the update's first pass (filled by it)."""
        logp, mask = self.policy_logprobs(samples)
        _check_alignment(logp, mask, samples, "policy_logprobs")
        device = logp.device
        old_logp = _padded([s.old_logprobs for s in samples], logp.shape[1], device=device)
        for i, sample in enumerate(samples):
            if sample.replayed:
                if sample not in before:  # samples hash by identity (eq=False)
                    before[sample] = logp[i, :len(sample.token_ids)].detach().float().clone()
                old_logp[i, :len(sample.token_ids)] = before[sample]
        negative_imitation = torch.tensor([s.negative_imitation for s in samples], device=device)
        ref_logp = reference_rows = None
        if any(row is not None for row in references):
            ref_logp = torch.zeros(logp.shape, dtype=torch.float32, device=device)
            for i, row in enumerate(references):
                if row is not None:
                    ref_logp[i, :len(row)] = row.to(device)
            reference_rows = torch.tensor([row is not None for row in references], device=device)
        loss, stats = grpo_loss(
            logp, old_logp, mask,
            torch.tensor([s.advantage for s in samples], device=device),
            config=self.config, normaliser=normaliser,
            policy_gradient=torch.tensor([s.policy_gradient for s in samples], device=device),
            ref_logp=ref_logp, negative_imitation=negative_imitation,
            negative_imitation_count=imitation_count, reference_rows=reference_rows)
        def mean_nll(chosen: Callable[[GRPOSample], bool], count: int) -> Any:
            """This micro-batch's share of the mean NLL over the update's ``count`` chosen steps."""
            rows = torch.tensor([chosen(s) for s in samples], device=device)
            return -torch.where(mask.bool() & rows[:, None], logp.float(), 0.0).sum() / count

        if self._imitated:
            nll = mean_nll(_imitated, self._imitated)
            loss = loss + self.config.self_imitation * nll
            self._imitation_nll += float(nll.detach())
        if self._rehearsal_imitated:
            nll = mean_nll(_rehearsal_imitated, self._rehearsal_imitated)
            loss = loss + self.config.self_imitation_rehearsal * nll
            self._rehearsal_imitation_nll += float(nll.detach())
        loss.backward()
        return stats

    def state_dict(self) -> dict[str, Any]:
        """For checkpoints: optimizer tensors (torch.save them) and the JSON replay buffer."""
        return {"optimizer": self.optimizer.state_dict(), "updates": self.updates,
                "replay": self.replay.to_dict() if self.replay is not None else None}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.optimizer.load_state_dict(state["optimizer"])
        self.updates = int(state["updates"])
        if self.replay is not None and state.get("replay") is not None:
            self.replay = SuccessReplay.from_dict(state["replay"])
