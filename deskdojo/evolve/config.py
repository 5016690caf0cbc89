"""The evolve run's configuration: typed, frozen, closed (an unknown key is an error that
names it), loadable from YAML or JSON, and hashed so a resumed run can prove it is the
same run. The embedded defaults are the main job (``deskdojo run``).

Settings owned by other parts (the policy, GRPO, the scheduler, the rollout) are kept as
override mappings here and validated against their owners' configs when the run starts,
so that loading a config never imports torch.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

from deskdojo.core.errors import ConfigError
from deskdojo.core.records import decode

PROVIDERS = ("auto", "docker", "xvfb", "fake")
DEFAULT_GRPO = {"lr": 1e-3, "negative_scale": 0.0, "epochs": 2, "rehearsal": 24, "positive_needs_success": True,
                "skip_no_op_steps": True, "kl_beta": 0.05}
MAIN_JOB_FAMILIES = ("click_button", "select_list", "toggle_choices", "menu_command", "confirm_dialog",
                     "switch_tab")
"""The main job's families: practice apps a policy acts on by element (no typing of free
text, no dragging), from one click to four in order."""
SFT_DEFAULT_FAMILIES = 2
"""With ``sft.families`` empty, the warm start's demos come from this many of the training
families (the first ones: click_button and select_list in the main job): they teach the
answer format; the rest is the loop's."""
SAMPLING = ("curriculum", "uniform")


@dataclass(frozen=True, slots=True, kw_only=True)
class BudgetConfig:
    """When the run ends: the first bound reached wins (at least one must be set)."""

    iterations: int | None = field(default=None, metadata={"help": "iterations to run"})
    env_steps: int | None = field(default=None, metadata={"help": "environment steps to spend (all rollouts)"})
    wall_seconds: float | None = field(default=None, metadata={
        "help": "wall-clock seconds; no iteration starts that would likely end past it"})

    def __post_init__(self) -> None:
        if self.iterations is None and self.env_steps is None and self.wall_seconds is None:
            raise ConfigError("budget needs at least one of iterations, env_steps, wall_seconds")
        for name in ("iterations", "env_steps"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise ConfigError(f"budget.{name} must be >= 1, got {value}")
        if self.wall_seconds is not None and not self.wall_seconds > 0:
            raise ConfigError(f"budget.wall_seconds must be > 0, got {self.wall_seconds}")


@dataclass(frozen=True, slots=True, kw_only=True)
class EvalConfig:
    """Held-out evaluation: tasks that never train, scored every ``every`` iterations."""

    every: int = field(default=4, metadata={"help": "evaluate every K iterations (and after the last one)"})
    tasks_per_level: int = field(default=2, metadata={"help": "held-out tasks per family and level"})
    levels: tuple[int, ...] = field(default=(0, 1, 2, 3), metadata={"help": "levels evaluated"})
    greedy: bool = field(default=True, metadata={"help": "greedy decoding (else sampled at the policy's temperature)"})
    at_start: bool = field(default=True, metadata={"help": "also evaluate before the first iteration"})

    def __post_init__(self) -> None:
        if self.every < 1:
            raise ConfigError(f"eval.every must be >= 1, got {self.every}")
        if self.tasks_per_level < 0:
            raise ConfigError(f"eval.tasks_per_level must be >= 0, got {self.tasks_per_level}")
        object.__setattr__(self, "levels", tuple(self.levels))


@dataclass(frozen=True, slots=True, kw_only=True)
class SFTSettings:
    """Warm start: supervised fine-tuning on oracle demonstrations before evolving."""

    enabled: bool = field(default=True, metadata={"help": "run the SFT warm start"})
    demos_per_family: int = field(default=32, metadata={"help": "oracle demos recorded per family"})
    levels: tuple[int, ...] = field(default=(0,), metadata={"help": "levels the demos are drawn from"})
    families: tuple[str, ...] = field(default=(), metadata={
        "help": f"families the demos are drawn from, among curriculum.families (empty: the first "
                f"{SFT_DEFAULT_FAMILIES} of them); the others, and the levels above, are left to the loop"})
    steps: int = field(default=20, metadata={"help": "optimizer steps"})
    max_seconds: float | None = field(default=None, metadata={
        "help": "time limit of the warm start in seconds (demo recording, then SFT): recording stops early "
                "and SFT stops at the step it is on, so a slow machine gets fewer demos and steps instead of "
                "a later start of evolving; null: no limit (`deskdojo run` gives it 40% of its minutes)"})
    # the tiny reader is pretrained: a few gentle steps teach the answer format on real screens;
    # more (100 steps at 1e-3) collapsed it onto the demos' one pattern (click #1, then done),
    # with no sampling entropy left for the loop to explore (measured 0.0002 nats per token)
    options: Mapping[str, Any] = field(default_factory=lambda: {"batch_size": 16, "lr": 2e-4}, metadata={
        "help": "further settings for the SFT trainer (its own config's keys)"})

    def __post_init__(self) -> None:
        if self.demos_per_family < 1 or self.steps < 1:
            raise ConfigError(f"sft.demos_per_family and sft.steps must be >= 1, got "
                              f"{self.demos_per_family}, {self.steps}")
        object.__setattr__(self, "levels", tuple(self.levels))
        object.__setattr__(self, "families", tuple(self.families))


@dataclass(frozen=True, slots=True, kw_only=True)
class CurriculumSettings:
    """Which families train and how the scheduler picks among them."""

    families: tuple[str, ...] = field(default=MAIN_JOB_FAMILIES, metadata={
        "help": "task families to train on (empty: every family whose app is a practice app)"})
    scheduler: Mapping[str, Any] = field(default_factory=dict, metadata={
        "help": "scheduler settings (its own config's keys)"})
    seeds_per_level: int = field(default=32, metadata={
        "help": "training tasks per family and level (seeds drawn at random), so tasks recur and a "
                "mastered one can retire; 0: a fresh seed on every draw"})
    admission: bool = field(default=True, metadata={
        "help": "admit each training task before it trains (its oracle passes, doing nothing fails), "
                "once per task on a pool sandbox; rejections are logged in tasks.jsonl"})
    max_level: int | None = field(default=None, metadata={
        "help": "the highest level training draws from, for the curriculum and uniform sampling alike "
                "(null: each family's last); e.g. the held-out set's highest, so that no rollouts go to "
                "levels it never measures"})

    def __post_init__(self) -> None:
        object.__setattr__(self, "families", tuple(self.families))
        if self.seeds_per_level < 0:
            raise ConfigError(f"curriculum.seeds_per_level must be >= 0, got {self.seeds_per_level}")
        if self.max_level is not None and (isinstance(self.max_level, bool) or self.max_level < 0):
            raise ConfigError(f"curriculum.max_level must be >= 0 or null, got {self.max_level!r}")


JUDGES = ("checks", "hybrid")


@dataclass(frozen=True, slots=True, kw_only=True)
class JudgeSettings:
    """Who judges the rollouts: the executable checks, or the hybrid judge (checks where a
    task has them, the VLM judge ``model`` where it has none, or both with every
    disagreement in the run's ``disagreements.jsonl``)."""

    kind: str = field(default="checks", metadata={"help": "checks | hybrid"})
    model: str | None = field(default=None, metadata={
        "help": "the VLM judge: a folder from `deskdojo judge train`, or a model checkpoint (hybrid only)"})
    mode: str = field(default="fallback", metadata={
        "help": "hybrid: fallback (the VLM judges only tasks without checks) | both (it also judges "
                "tasks with checks; they keep the outcome, it gives the step labels)"})
    vlm: Mapping[str, Any] = field(default_factory=dict, metadata={
        "help": "VLM judge settings (VLMJudgeConfig keys: votes, rule, retries, temperature, keyframes, images)"})

    def __post_init__(self) -> None:
        from deskdojo.world_model.hybrid import MODES

        if self.kind not in JUDGES:
            raise ConfigError(f"judge.kind {self.kind!r} is not one of: {', '.join(JUDGES)}")
        if self.mode not in MODES:
            raise ConfigError(f"judge.mode {self.mode!r} is not one of: {', '.join(MODES)}")
        if self.kind == "hybrid" and not self.model:
            raise ConfigError("judge.kind hybrid needs judge.model: a folder from `deskdojo judge train` "
                              "or a model checkpoint")
        if not isinstance(self.vlm, Mapping):
            raise ConfigError("judge.vlm must be a mapping of VLMJudgeConfig keys")


PROPOSERS = ("none", "explore", "model")


@dataclass(frozen=True, slots=True, kw_only=True)
class ProposerSettings:
    """Tasks beyond the templates: none, exploration's (the training families' apps are
    explored when the run starts) or a model's (``model``, shown each app's guidebook,
    screenshot and elements). ACuRL's rule picks what to ask for next."""

    kind: str = field(default="none", metadata={
        "help": "none (template families only) | explore (tasks from exploring the apps) | "
                "model (a (V)LM proposes tasks; `--proposer MODEL`)"})
    model: str | None = field(default=None, metadata={
        "help": "the proposer model: a checkpoint folder, a hub name or 'tiny' (kind model)"})
    per_iteration: int = field(default=1, metadata={
        "help": "of each iteration's tasks, how many are proposed ones (the template families give the rest, "
                "and all of them while no proposed task is left)"})
    batch: int = field(default=2, metadata={"help": "tasks asked for whenever the proposed pool runs short"})
    withhold_checks: bool = field(default=False, metadata={
        "help": "proposed tasks enter without their checks, so the VLM judge decides them (needs judge.kind "
                "hybrid): what a loop on check-less tasks learns"})
    max_depth: int = field(default=2, metadata={"help": "exploration: clicks deep"})
    max_actions: int = field(default=40, metadata={"help": "exploration: actions tried per app"})

    def __post_init__(self) -> None:
        if self.kind not in PROPOSERS:
            raise ConfigError(f"proposer.kind {self.kind!r} is not one of: {', '.join(PROPOSERS)}")
        if self.kind == "model" and not self.model:
            raise ConfigError("proposer.kind model needs proposer.model: a checkpoint folder, a hub name or 'tiny'")
        for name in ("per_iteration", "batch", "max_depth", "max_actions"):
            if getattr(self, name) < 1:
                raise ConfigError(f"proposer.{name} must be >= 1, got {getattr(self, name)}")


@dataclass(frozen=True, slots=True, kw_only=True)
class RaySettings:
    """Rollouts on a Ray cluster (``--ray``): ``workers`` actors, each with its own pool of
    ``sandboxes_per_worker`` sandboxes and its own copy of the policy, placed on nodes by
    their ``sandbox`` resource; the learner stays in this process. Off while ``address``
    is null (the top-level ``sandboxes`` then run here, as always)."""

    address: str | None = field(default=None, metadata={
        "help": "null (no Ray: sandboxes run in this process) | auto (the cluster `ray start` made on this "
                "machine, or RAY_ADDRESS) | HOST:PORT of the head"})
    workers: int = field(default=2, metadata={"help": "rollout worker actors"})
    sandboxes_per_worker: int = field(default=2, metadata={
        "help": "sandboxes each worker owns; it asks the node for that many `sandbox` resources "
                "(`ray start --resources '{\"sandbox\": K}'`)"})
    worker_timeout_s: float = field(default=600.0, metadata={
        "help": "a worker whose episodes take longer is dropped from the iteration (its episodes end as "
                "error) and restarted"})
    max_restarts: int = field(default=3, metadata={"help": "times Ray restarts a worker that died"})

    def __post_init__(self) -> None:
        if self.address is not None and (not isinstance(self.address, str) or not self.address.strip()):
            raise ConfigError(f"ray.address must be null, 'auto' or HOST:PORT, got {self.address!r}")
        if self.address not in (None, "auto") and not _looks_like_address(self.address):
            raise ConfigError(f"ray.address {self.address!r} is not 'auto' or HOST:PORT (e.g. 10.0.0.5:6379, "
                              f"or ray://HOST:10001)")
        for name in ("workers", "sandboxes_per_worker"):
            if getattr(self, name) < 1:
                raise ConfigError(f"ray.{name} must be >= 1, got {getattr(self, name)}")
        if not self.worker_timeout_s > 0:
            raise ConfigError(f"ray.worker_timeout_s must be > 0, got {self.worker_timeout_s}")
        if self.max_restarts < 0:
            raise ConfigError(f"ray.max_restarts must be >= 0, got {self.max_restarts}")

    @property
    def enabled(self) -> bool:
        return self.address is not None


def _looks_like_address(address: str) -> bool:
    """``HOST:PORT`` or ``ray://HOST:PORT`` with a numeric port."""
    rest = address[len("ray://"):] if address.startswith("ray://") else address
    host, _, port = rest.rpartition(":")
    return bool(host) and port.isdigit() and 0 < int(port) < 65536


@dataclass(frozen=True, slots=True, kw_only=True)
class EvolveConfig:
    """Everything a `deskdojo evolve` run needs. Field docs are the ``--help`` texts."""

    model: str = field(default="tiny", metadata={"help": "policy: 'tiny', a checkpoint folder or a hub name"})
    policy: Mapping[str, Any] = field(default_factory=lambda: {"max_new_tokens": 16, "lora": {"r": 8, "alpha": 16}}, metadata={
        "help": "policy settings (PolicyConfig keys, e.g. temperature, max_new_tokens, lora)"})
    provider: str = field(default="auto", metadata={
        "help": "sandboxes: auto (docker when the engine answers and the image exists, else xvfb) "
                "| docker | xvfb | fake"})
    sandboxes: int = field(default=4, metadata={"help": "parallel sandboxes"})
    sandbox: Mapping[str, Any] = field(default_factory=dict, metadata={
        "help": "further sandbox settings (SandboxConfig keys, e.g. screen)"})
    group_size: int = field(default=4, metadata={"help": "rollouts per task (G); advantages are group-relative"})
    tasks_per_iteration: int = field(default=2, metadata={"help": "tasks proposed per iteration"})
    max_steps: int | None = field(default=5, metadata={
        "help": "cap on steps per episode (the task's own max_steps when lower); null: the task's"})
    rollout: Mapping[str, Any] = field(default_factory=dict, metadata={
        "help": "rollout settings (RolloutConfig keys)"})
    budget: BudgetConfig = field(default_factory=lambda: BudgetConfig(wall_seconds=600.0))
    eval: EvalConfig = field(default_factory=EvalConfig)
    checkpoint_every: int = field(default=1, metadata={"help": "write a checkpoint every N iterations"})
    sft: SFTSettings = field(default_factory=SFTSettings)
    # learning from the loop's own successes: only a success that beats its group trains, its
    # no-op steps left out, 24 stored successes of other cells rehearsed per update, a KL brake
    # to the start (README, "What the policy sees": the runs that chose these)
    grpo: Mapping[str, Any] = field(default_factory=lambda: dict(DEFAULT_GRPO), metadata={
        "help": "GRPO settings (GRPOConfig keys; group_size comes from the top level); a `grpo:` "
                "mapping replaces the default one whole (positive-only: lr 1e-3, negative_scale 0, "
                "epochs 2, rehearsal 24, positive_needs_success, skip_no_op_steps, kl_beta 0.05)"})
    explore_failed_only: bool = field(default=False, metadata={
        "help": "with policy.explore: play each group without exploration first, and only a task whose "
                "group_size rollouts all failed again, as many more, exploring; its group learns from all of "
                "them. Exploration goes where the policy fails, and a cell it already masters gives all-success "
                "groups, not the mixed ones exploration's slips make, which read as learning progress to the "
                "curriculum and keep a level from moving up"})
    explore_failed_rate: float | None = field(default=None, metadata={
        "help": "with explore_failed_only: the share of steps explored in the groups played again (default: "
                "policy.explore); higher finds more where a success needs a rare answer, and costs the passed "
                "cells nothing, which are never played exploring"})
    curriculum: CurriculumSettings = field(default_factory=CurriculumSettings)
    sampling: str = field(default="curriculum", metadata={
        "help": "curriculum (the scheduler picks) | uniform (families and levels at random: the baseline)"})
    seed: int = field(default=0, metadata={"help": "seeds python, numpy, torch and the policy"})
    judge: JudgeSettings = field(default_factory=JudgeSettings)
    proposer: ProposerSettings = field(default_factory=ProposerSettings)
    ray: RaySettings = field(default_factory=RaySettings)

    def __post_init__(self) -> None:
        if self.provider not in PROVIDERS:
            raise ConfigError(f"provider {self.provider!r} is not one of: {', '.join(PROVIDERS)}")
        if self.sampling not in SAMPLING:
            raise ConfigError(f"sampling {self.sampling!r} is not one of: {', '.join(SAMPLING)}")
        for name in ("sandboxes", "tasks_per_iteration", "checkpoint_every"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.group_size < 2:
            raise ConfigError(f"group_size must be >= 2 (advantages are relative), got {self.group_size}")
        if self.max_steps is not None and self.max_steps < 1:
            raise ConfigError(f"max_steps must be >= 1 or null, got {self.max_steps}")
        if "group_size" in self.grpo and self.grpo["group_size"] != self.group_size:
            raise ConfigError(f"grpo.group_size {self.grpo['group_size']} disagrees with group_size "
                              f"{self.group_size}: set it once, at the top level")
        for name in ("policy", "sandbox", "rollout", "grpo"):
            if not isinstance(getattr(self, name), Mapping):
                raise ConfigError(f"{name} must be a mapping of settings, got {getattr(self, name)!r}")
        if "provider" in self.sandbox:
            raise ConfigError("sandbox.provider: set the provider with the top-level `provider` key")
        if "model" in self.policy:
            raise ConfigError("policy.model: set the model with the top-level `model` key")
        if self.explore_failed_only and not self.policy.get("explore"):
            raise ConfigError("explore_failed_only replays failed groups exploring, but policy.explore is "
                              f"{self.policy.get('explore', 0)}: set policy.explore (e.g. 0.25) or turn it off")
        if self.explore_failed_rate is not None:
            if not self.explore_failed_only:
                raise ConfigError("explore_failed_rate is the exploration of the groups explore_failed_only plays "
                                  "again: set explore_failed_only: true, or leave the rate out")
            if isinstance(self.explore_failed_rate, bool) or not (
                    isinstance(self.explore_failed_rate, (int, float)) and 0 < self.explore_failed_rate <= 1):
                raise ConfigError(f"explore_failed_rate must be a share within (0, 1], got {self.explore_failed_rate!r}")
        if self.ray.enabled:
            self._check_ray()
        if self.proposer.withhold_checks and self.judge.kind != "hybrid":
            raise ConfigError("proposer.withhold_checks needs judge.kind hybrid: without checks only a VLM judge "
                              "can decide the proposed tasks")

    def _check_ray(self) -> None:
        """What Ray workers cannot do yet, refused before anything starts."""
        if self.judge.kind != "checks":
            raise ConfigError("ray: judge.kind must be checks (workers judge each episode on its sandbox; "
                              "the VLM judge reads frames from this machine's run folder)")
        if self.sft.enabled:
            raise ConfigError("ray: set sft.enabled: false (the warm start records its demos on local "
                              "sandboxes); start from a fine-tuned policy with --model FOLDER instead")
        if self.proposer.kind != "none":
            raise ConfigError(f"ray: proposer.kind {self.proposer.kind} explores apps on a local sandbox; "
                              "use proposer.kind none with Ray")
        if self.explore_failed_only:
            raise ConfigError("ray: explore_failed_only switches the local policy's exploration between two "
                              "passes, which Ray workers do not follow yet: turn it off with ray.address")
        web = [f for f in self.curriculum.families if f.startswith("miniwob.")]
        if web:
            raise ConfigError(f"ray: curriculum.families names {web[0]}; MiniWoB++ families run locally only "
                              "(a page's own instruction is read on the sandbox that loaded it, which Ray "
                              "workers do not hand back yet): leave ray.address out")

    # --- conversions ----------------------------------------------------------

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "EvolveConfig":
        return decode(cls, data, where="", error=ConfigError)

    def to_dict(self) -> dict[str, Any]:
        return _plain(self)

    def replace(self, **changes: Any) -> "EvolveConfig":
        return dataclasses.replace(self, **changes)

    def config_hash(self) -> str:
        """The same hash ``RunDir.create`` stores for this config."""
        body = json.dumps(self.to_dict(), sort_keys=True, indent=1)
        return hashlib.sha256(body.encode()).hexdigest()[:16]

    # --- the other parts' configs (validated here, built by them) ------------

    def grpo_settings(self) -> dict[str, Any]:
        return {**self.grpo, "group_size": self.group_size}

    def policy_settings(self) -> dict[str, Any]:
        return {"seed": self.seed, **self.policy}


def load_config(path: str | Path | None = None, overrides: Mapping[str, Any] | None = None) -> EvolveConfig:
    """The defaults, then a YAML/JSON file's values, then ``overrides`` (nested dicts merge)."""
    data: dict[str, Any] = {}
    if path is not None:
        data = read_config_file(path)
    return EvolveConfig.from_dict(merge(data, overrides or {}))


def read_config_file(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    if not path.exists():
        raise ConfigError(f"config file {path} does not exist")
    text = path.read_text()
    if path.suffix == ".json":
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ConfigError(f"{path}: not valid JSON ({exc.msg}, line {exc.lineno})") from None
    else:
        import yaml

        try:
            data = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            raise ConfigError(f"{path}: not valid YAML ({exc})") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: the top level must be a mapping of settings")
    return data


def merge(base: Mapping[str, Any], overrides: Mapping[str, Any]) -> dict[str, Any]:
    """``base`` with ``overrides`` laid over it; nested mappings merge key by key."""
    out = dict(base)
    for key, value in overrides.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), Mapping):
            out[key] = merge(out[key], value)
        else:
            out[key] = value
    return out


def diff_configs(old: Mapping[str, Any], new: Mapping[str, Any]) -> list[str]:
    """Key-by-key differences, as ``key: old -> new`` lines (dotted keys for nesting)."""
    lines: list[str] = []
    flat_old, flat_new = _flatten(old), _flatten(new)
    for key in sorted(set(flat_old) | set(flat_new)):
        before, after = flat_old.get(key, "<unset>"), flat_new.get(key, "<unset>")
        if before != after:
            lines.append(f"{key}: {json.dumps(before)} -> {json.dumps(after)}")
    return lines


def to_yaml(config: EvolveConfig) -> str:
    import yaml

    header = f"# deskdojo evolve config (hash {config.config_hash()})\n"
    return header + yaml.safe_dump(config.to_dict(), sort_keys=False)


def field_help(cls: type = EvolveConfig) -> dict[str, str]:
    return {f.name: f.metadata.get("help", "") for f in dataclasses.fields(cls)}


def _plain(value: Any) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: _plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    return value


def _flatten(data: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(data, Mapping):
        out: dict[str, Any] = {}
        for key, value in data.items():
            out.update(_flatten(value, f"{prefix}{key}."))
        return out if out or not prefix else {prefix[:-1]: {}}
    return {prefix[:-1]: data}
