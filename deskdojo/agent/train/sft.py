"""Supervised fine-tuning on demonstrations: the loss is the negative log-likelihood of
the demonstrated answer's tokens only (prompt and image tokens are masked), AdamW,
full fine-tuning or LoRA, atomic resumable checkpoints.

A demos folder holds one trajectory folder per demonstration (``steps.jsonl``,
``frames/NNNN.png`` = the screen before step NNNN, ``task.json``). Each step with an
action becomes one example: the last ``history_k`` frames up to it, the earlier
actions as history, and the action rendered in the policy's format as the target.

    result = sft(SFTConfig(demos="runs/x/demos", out="runs/x/sft", steps=300))
    policy = result.policy          # or load_policy("runs/x/sft/policy")

``make_click_target_demos`` writes the built-in synthetic dataset (a coloured square
on a grey screen; the action is a click at its centre), the fallback when there are
no recorded demonstrations.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence, TextIO

from deskdojo.core.elements import MODES_WITH_ELEMENTS
from deskdojo.core.errors import ConfigError, RunDirError
from deskdojo.core.progress import HEARTBEAT_S, ProgressLine, activity
from deskdojo.core.protocols import Decision
from deskdojo.core.types import Observation, Task

CHECKPOINT_FORMAT_VERSION = 1


@dataclass(frozen=True, slots=True, kw_only=True)
class SFTConfig:
    """An SFT run. Field docs are the ``deskdojo sft`` ``--help`` texts."""

    demos: str = field(metadata={"help": "folder of demonstrations (one trajectory folder each)"})
    model: str = field(default="tiny", metadata={"help": "policy to start from: tiny, a folder or a hub name"})
    out: str = field(default="runs/sft", metadata={"help": "output folder (checkpoints/, policy/, metrics.jsonl)"})
    format: str | None = field(default=None, metadata={"help": "action format (default: the policy's)"})
    steps: int | None = field(default=None, metadata={"help": "optimizer steps (default: epochs x batches)"})
    epochs: int = field(default=3, metadata={"help": "passes over the examples when steps is not set"})
    batch_size: int = field(default=8, metadata={"help": "examples per step"})
    lr: float = field(default=1e-3, metadata={"help": "AdamW learning rate (1e-3 suits tiny; ~1e-5 for big models)"})
    weight_decay: float = field(default=0.0, metadata={"help": "AdamW weight decay"})
    warmup_steps: int = field(default=10, metadata={"help": "linear learning-rate warm-up"})
    max_grad_norm: float = field(default=1.0, metadata={"help": "gradient clipping"})
    lora: bool = field(default=False, metadata={"help": "train LoRA adapters instead of all weights"})
    lora_r: int = field(default=16, metadata={"help": "LoRA rank"})
    lora_alpha: int = field(default=32, metadata={"help": "LoRA alpha"})
    history_k: int = field(default=1, metadata={"help": "screenshots per example"})
    observation: str | None = field(default=None, metadata={
        "help": "observation mode: screenshot | a11y_tree | screenshot_a11y_tree | som (default: the "
                "policy's); the modes with elements need demos that recorded each step's element listing"})
    max_pixels: int | None = field(default=None, metadata={"help": "pixel budget (default: the policy's)"})
    checkpoint_every: int = field(default=100, metadata={"help": "steps between checkpoints"})
    keep_checkpoints: int = field(default=2, metadata={"help": "how many checkpoints to keep"})
    log_every: int = field(default=10, metadata={"help": "steps between progress lines"})
    max_seconds: float | None = field(default=None, metadata={
        "help": "time limit in seconds, counted from the start (model loading included): no step starts "
                "that would likely end past it; SFT then writes its checkpoint and policy and reports the "
                "steps it did, and --resume carries on to the full count. None: no limit"})
    seed: int = field(default=0, metadata={"help": "weights of a tiny start, data order, dropout"})
    dtype: str = field(default="float32", metadata={"help": "float32 | bfloat16"})
    device: str = field(default="cpu", metadata={"help": "cpu | cuda | auto"})
    gradient_checkpointing: bool = field(default=False, metadata={
        "help": "recompute activations in the backward pass (less memory; for big models)"})
    # demos of one-click tasks alone teach `done` after one click; generated later steps
    # (deskdojo.agent.tiny.pretrain) rehearsed beside them keep multi-step tasks going
    generated_per_batch: int = field(default=0, metadata={
        "help": "generated later-step examples (element tables with earlier clicks) added to each step's "
                "batch beside the demos; needs an observation with elements. 0: demos only"})

    def __post_init__(self) -> None:
        if self.steps is not None and self.steps < 1:
            raise ConfigError(f"steps must be >= 1, got {self.steps}")
        for name in ("epochs", "batch_size", "checkpoint_every", "keep_checkpoints", "log_every", "history_k"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be >= 1, got {getattr(self, name)}")
        if not self.lr > 0:
            raise ConfigError(f"lr must be > 0, got {self.lr}")
        if self.max_seconds is not None and not self.max_seconds > 0:
            raise ConfigError(f"max_seconds must be > 0 or None, got {self.max_seconds}")
        if self.generated_per_batch < 0:
            raise ConfigError(f"generated_per_batch must be >= 0, got {self.generated_per_batch}")
        if self.observation is not None:
            from deskdojo.core.elements import check_mode

            try:
                check_mode(self.observation)
            except ValueError as exc:
                raise ConfigError(str(exc)) from None
            check_rehearsal(self.generated_per_batch, self.observation)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "SFTConfig":
        known = {f.name for f in dataclasses.fields(cls)}
        for key in data:
            if key not in known:
                raise ConfigError(f"SFT config has no key {key!r} (known: {', '.join(sorted(known))})")
        return cls(**data)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass(frozen=True, slots=True)
class DemoStep:
    """One training example read from a demo: frames are loaded when used."""

    frames: tuple[Path, ...]  # the window, oldest first
    task: Task
    history: tuple[Decision, ...]
    action: Any
    error: str | None = None  # the error line the newest screen carried (recorded in Step.prompt)
    elements: Path | None = None  # the newest screen's element listing (recorded in Step.prompt)
    history_elements: tuple[Path | None, ...] = ()  # each earlier step's listing (for ranked tables)


@dataclass(slots=True)
class SFTResult:
    policy: Any
    steps: int
    first_loss: float
    last_loss: float
    losses: list[float]
    seconds: float
    out: Path
    time_limited: bool = False  # stopped by max_seconds before the configured step count


# --- data ---------------------------------------------------------------------------


def read_demos(folder: str | os.PathLike[str], *, history_k: int = 1) -> list[DemoStep]:
    """Every step with an action, from every demo sub-folder (sorted by name; hidden ones,
    such as an abandoned recording, are skipped). Each demo is checked as ``load_demo``
    checks it, so a bad file stops SFT before training starts, naming the file."""
    from deskdojo.agent.demos import check_png, demo_frame, load_demo

    root = Path(folder)
    if not root.is_dir():
        raise ConfigError(f"demos folder {root} does not exist")
    examples: list[DemoStep] = []
    for folder_path in sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")):
        demo = load_demo(folder_path)
        task = demo.task
        history: list[Decision] = []
        listings: list[Path | None] = []
        frames: list[Path] = []
        for step in demo.trajectory.steps:
            frame = demo_frame(folder_path, step)
            if step.frame is None:  # load_demo checked the frames that are named
                check_png(frame, f"step {step.index}")
            frames.append(frame)
            listing = step.prompt.elements if step.prompt is not None else None
            if step.action is not None:
                examples.append(DemoStep(tuple(frames[-history_k:]), task, tuple(history), step.action,
                                         error=step.prompt.error if step.prompt is not None else None,
                                         elements=folder_path / listing if listing else None,
                                         history_elements=tuple(listings)))
            history.append(Decision(text=step.model_text, action=step.action))
            listings.append(folder_path / listing if listing else None)
    if not examples:
        raise ConfigError(f"{root} holds no demonstration steps with actions")
    return examples


def load_observation(path: Path) -> Observation:
    import numpy as np
    from PIL import Image

    with Image.open(path) as image:
        frame = np.asarray(image.convert("RGB"))
    return Observation(screenshot=frame, screen_size=(frame.shape[1], frame.shape[0]))


def to_samples(policy: Any, examples: Sequence[DemoStep]) -> list[Any]:
    """PolicySamples with the action rendered in the policy's format as the target."""
    from deskdojo.agent.policy import PolicySample

    samples = []
    for example in examples:
        observations = tuple(load_observation(p) for p in example.frames)
        if example.error is not None:
            observations = observations[:-1] + (dataclasses.replace(observations[-1], action_error=example.error),)
        if example.elements is not None:
            from deskdojo.core.elements import ElementList

            listing = ElementList.from_json(json.loads(example.elements.read_text()))
            observations = observations[:-1] + (dataclasses.replace(observations[-1], elements=listing),)
        history = example.history
        if getattr(policy, "element_order", "id") == "task":
            history = _history_as_said(policy, example, observations[-1])
        target = policy.render_target(example.action, observations[-1], task=example.task, history=history)
        samples.append(PolicySample(observations, example.task, history, target_text=target))
    return samples


def _history_as_said(policy: Any, example: DemoStep, current: Observation) -> tuple[Decision, ...]:
    """The earlier steps' texts as this policy would have said them: a ranked table's row
    numbers belong to each step's own table, read from that step's listing."""
    from deskdojo.agent.observation import place_of
    from deskdojo.core.actions import element_of
    from deskdojo.core.elements import ElementList

    said = []
    for index, decision in enumerate(example.history):
        path = example.history_elements[index] if index < len(example.history_elements) else None
        if decision.action is None or element_of(decision.action) is None or path is None:
            said.append(decision)
            continue
        listing = ElementList.from_json(json.loads(path.read_text()))
        text = policy.render_target(decision.action, dataclasses.replace(current, elements=listing),
                                    task=example.task)
        element = listing.by_id(element_of(decision.action))
        said.append(dataclasses.replace(decision, text=text, element_name=element.name if element else None,
                                        element_place=place_of(element, listing.elements) if element else None))
    return tuple(said)


def check_rehearsal(generated_per_batch: int, observation: str, *, setting: str = "generated_per_batch") -> None:
    """Generated examples are element tables: a mode without one would train on prompts
    that show nothing of them."""
    if generated_per_batch > 0 and observation not in MODES_WITH_ELEMENTS:
        raise ConfigError(f"{setting} {generated_per_batch}: generated rehearsal needs an observation "
                          f"with elements ({', '.join(sorted(MODES_WITH_ELEMENTS))}), and the policy's is "
                          f"{observation}; set {setting} to 0 or pick such an observation")


def generated_samples(policy: Any, count: int, *, seed: int, step: int) -> list[Any]:
    """The generated later-step samples of optimizer step ``step``: fresh ones each step, the
    same ones at the same step of a resumed run (a function of (seed, step), as the demos' order is)."""
    from deskdojo.agent.tiny.pretrain import PretrainConfig, generated_batch

    return generated_batch(policy, PretrainConfig(), count, seed=seed * 1_000_003 + step)


def batch_order(count: int, batch_size: int, *, seed: int, step: int) -> list[int]:
    """Example indices of optimizer step ``step`` (0-based): epochs are seeded
    permutations, so the order is a function of (seed, step) and resume needs no cursor."""
    import numpy as np

    per_epoch = max(1, count // batch_size) if count >= batch_size else 1
    epoch, slot = divmod(step, per_epoch)
    order = np.random.default_rng([seed, epoch]).permutation(count)
    if count < batch_size:
        return [int(i) for i in order]
    return [int(i) for i in order[slot * batch_size:(slot + 1) * batch_size]]


# --- training -----------------------------------------------------------------------


def sft(config: SFTConfig, *, policy: Any = None, log: Callable[[str], None] = print,
        resume: bool = False, progress: TextIO | None = None) -> SFTResult:
    """Train, checkpointing to ``config.out``; ``resume`` continues from the last checkpoint
    (same weights, optimizer state, step and RNG). Returns the trained policy. With
    ``progress`` (a stream) a progress line with the step, loss and time left replaces
    the every-``log_every`` log lines."""
    entered = time.monotonic()  # max_seconds counts model loading too: the caller budgets it all
    out = Path(config.out)
    # reading the demos and loading a large model can take minutes: a line if they do
    preparing = activity("sft: reading demos, loading the model", stream=progress,
                         delay_s=HEARTBEAT_S) if progress is not None else None
    try:
        policy, examples, start_step, optimizer, parameters = _prepare(config, policy, out, resume, log)
    finally:
        if preparing is not None:
            preparing.close()
    total_steps = config.steps or config.epochs * max(1, len(examples) // config.batch_size)
    model = policy.model

    def lr_at(step: int) -> float:
        return config.lr * min(1.0, (step + 1) / max(1, config.warmup_steps))

    rehearsed = f" + {config.generated_per_batch} generated later steps" if config.generated_per_batch else ""
    log(f"sft: {len(examples)} examples, {total_steps} steps of {config.batch_size}{rehearsed}, "
        f"{'LoRA' if policy.lora else 'full fine-tuning'}, format {policy.format.name}, out {out}")
    model.train()
    losses: list[float] = []
    started = time.perf_counter()
    recent: list[float] = []
    limit_at = entered + config.max_seconds if config.max_seconds is not None else None
    line = (ProgressLine("sft", total_steps, unit="steps", stream=progress, start=start_step, deadline=limit_at)
            if progress is not None else None)
    done, step_s = start_step, 0.0
    try:
        for step in range(start_step, total_steps):
            # no step that would likely end past the limit (by the last one's time; the first: if any is left)
            if limit_at is not None and time.monotonic() + step_s > limit_at:
                break
            step_started = time.monotonic()
            indices = batch_order(len(examples), config.batch_size, seed=config.seed, step=step)
            samples = to_samples(policy, [examples[i] for i in indices])
            if config.generated_per_batch:
                samples += generated_samples(policy, config.generated_per_batch, seed=config.seed, step=step)
            value = supervised_step(policy, samples, optimizer, parameters, lr=lr_at(step),
                                    max_grad_norm=config.max_grad_norm)
            losses.append(value)
            recent.append(value)
            done = step + 1
            if line is not None:
                line.update(done, info=f"loss {sum(losses[-10:]) / len(losses[-10:]):.4f}")
            elif done % config.log_every == 0 or done == total_steps:
                elapsed = time.perf_counter() - started
                log(f"sft: step {done}/{total_steps}  loss {sum(recent) / len(recent):.4f}  "
                    f"lr {lr_at(step):.2e}  {elapsed / (done - start_step):.2f} s/step")
                recent = []
            if done % config.checkpoint_every == 0 or done == total_steps:
                model.eval()
                write_checkpoint(out, done, policy, optimizer, config, keep=config.keep_checkpoints)
                model.train()
            step_s = time.monotonic() - step_started
        model.eval()
        time_limited = done < total_steps
        if time_limited and done > start_step and done % config.checkpoint_every:  # what a resume carries on from
            write_checkpoint(out, done, policy, optimizer, config, keep=config.keep_checkpoints)
        _write_final_policy(out, policy)
    finally:
        if line is not None:
            line.close()
    seconds = time.perf_counter() - started
    first = losses[0] if losses else float("nan")
    last = sum(losses[-5:]) / len(losses[-5:]) if losses else float("nan")
    if time_limited:
        log(f"sft: time limit of {config.max_seconds:.0f} s reached: stopped at step {done} of {total_steps} "
            f"(resume to carry on)")
    log(f"sft: done: {done - start_step} steps in {seconds:.1f} s, loss {first:.4f} -> {last:.4f}; "
        f"policy in {out / 'policy'}")
    return SFTResult(policy=policy, steps=done, first_loss=first, last_loss=last, losses=losses,
                     seconds=seconds, out=out, time_limited=time_limited)


def _prepare(config: SFTConfig, policy: Any, out: Path, resume: bool, log: Callable[[str], None]) -> tuple[Any, ...]:
    """The demos as examples, the policy (from the checkpoint when resuming), the step to
    start at, the optimizer and the parameters it trains."""
    import torch

    from deskdojo.agent.policy import LoraSettings, PolicyConfig, load_policy

    examples = read_demos(config.demos, history_k=config.history_k)
    lora = LoraSettings(r=config.lora_r, alpha=config.lora_alpha) if config.lora else None
    checkpoint = latest_checkpoint(out) if resume else None
    if resume and checkpoint is None:
        log(f"sft: no checkpoint in {out / 'checkpoints'}; starting from step 0")
    if checkpoint is None and out.exists() and any((out / "checkpoints").glob("0*")) and not resume:
        raise RunDirError(f"{out} already holds SFT checkpoints; pass --resume to continue or pick a new --out")
    policy_config = PolicyConfig(format=config.format, history_k=config.history_k, dtype=config.dtype,
                                 observation=config.observation,
                                 device=config.device, seed=config.seed, max_pixels=config.max_pixels,
                                 gradient_checkpointing=True if config.gradient_checkpointing else None)
    start_step = 0
    if checkpoint is not None:
        state = json.loads((checkpoint / "state.json").read_text())
        policy = load_policy(str(checkpoint / "policy"), policy_config)
        start_step = state["step"]
        log(f"sft: resuming from {checkpoint} at step {start_step}")
    elif policy is None:
        policy = load_policy(config.model, policy_config.replace(lora=lora))
    elif lora is not None and policy.lora is None:
        policy.enable_lora(lora)
    check_rehearsal(config.generated_per_batch, policy.observation)
    unlisted = sum(1 for e in examples if e.elements is None)
    if policy.observation in MODES_WITH_ELEMENTS and unlisted:
        raise ConfigError(f"{unlisted} of {len(examples)} demo steps in {config.demos} recorded no element "
                          f"listing, so their {policy.observation} prompts would show none: record the demos "
                          "with element listings, or train with observation screenshot")
    parameters = policy.trainable_parameters() if policy.lora is not None else list(policy.model.parameters())
    optimizer = torch.optim.AdamW(parameters, lr=config.lr, weight_decay=config.weight_decay)
    if checkpoint is not None:
        optimizer.load_state_dict(torch.load(checkpoint / "optimizer.pt", weights_only=True))
        torch.random.set_rng_state(torch.load(checkpoint / "torch_rng.pt", weights_only=True))
    return policy, examples, start_step, optimizer, parameters


def supervised_nll(policy: Any, samples: Sequence[Any]) -> Any:
    """The mean negative log-likelihood of the samples' target tokens, with grad."""
    batch = policy.encode_samples(samples)
    logp, mask = policy.token_logprobs(batch, temperature=1.0)
    return -(logp * mask).sum() / mask.sum()


def supervised_step(policy: Any, samples: Sequence[Any], optimizer: Any, parameters: Sequence[Any], *,
                    lr: float, max_grad_norm: float) -> float:
    """One optimizer step on the mean negative log-likelihood of the samples' target tokens;
    returns the loss (SFT and the tiny reader's pretraining both step here)."""
    import torch

    loss = supervised_nll(policy, samples)
    for group in optimizer.param_groups:
        group["lr"] = lr
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(parameters, max_grad_norm)
    optimizer.step()
    return float(loss.detach())


# --- checkpoints --------------------------------------------------------------------


def latest_checkpoint(out: Path) -> Path | None:
    from deskdojo.core.rundir import RunDir

    return RunDir(out).latest_checkpoint()


def write_checkpoint(out: Path, step: int, policy: Any, optimizer: Any, config: SFTConfig, *,
                     keep: int = 2) -> Path:
    """``out/checkpoints/<step>/``: policy, optimizer, torch RNG, step (atomic rename)."""
    import torch

    from deskdojo.core.rundir import RunDir

    run = RunDir(out)

    def fill(folder: Path) -> None:
        policy.save(folder / "policy")
        torch.save(optimizer.state_dict(), folder / "optimizer.pt")
        torch.save(torch.random.get_rng_state(), folder / "torch_rng.pt")
        state = {"format_version": CHECKPOINT_FORMAT_VERSION, "step": step, "config": config.to_dict()}
        (folder / "state.json").write_text(json.dumps(state, indent=1) + "\n")

    path = run.write_checkpoint(step, fill)
    for old in run.checkpoints()[:-keep]:
        shutil.rmtree(old, ignore_errors=True)
    return path


def _write_final_policy(out: Path, policy: Any) -> Path:
    final = out / "policy"
    tmp = out / f".policy-tmp-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    policy.save(tmp)
    old = out / f".policy-old-{os.getpid()}"
    if final.exists():
        os.rename(final, old)
    os.rename(tmp, final)
    shutil.rmtree(old, ignore_errors=True)
    return final


# --- the built-in synthetic dataset -------------------------------------------------

CLICK_TARGET_FAMILY = "click-target"
TARGET_COLOURS = {"red": (220, 40, 40), "green": (40, 170, 60), "blue": (40, 80, 220)}


def click_target_frame(rect: tuple[int, int, int, int], colour: str, *,
                       screen: tuple[int, int] = (1024, 768)) -> Any:
    """A grey screen with one coloured square ``rect`` = (x, y, w, h)."""
    import numpy as np

    frame = np.full((screen[1], screen[0], 3), 128, dtype=np.uint8)
    x, y, w, h = rect
    frame[y:y + h, x:x + w] = TARGET_COLOURS[colour]
    return frame


def click_target_task(index: int, *, seed: int = 0, screen: tuple[int, int] = (1024, 768),
                      size: tuple[int, int] = (64, 112)) -> tuple[Task, tuple[int, int, int, int], str]:
    """The ``index``-th click-target task of a seeded stream: (task, rect, colour)."""
    import numpy as np

    from deskdojo.core.actions import Click
    from deskdojo.core.types import Check, OracleStep, Provenance

    rng = np.random.default_rng([seed, index])
    side = int(rng.integers(size[0], size[1] + 1))
    x = int(rng.integers(0, screen[0] - side))
    y = int(rng.integers(0, screen[1] - side))
    colour = str(rng.choice(list(TARGET_COLOURS)))
    rect = (x, y, side, side)
    task = Task(id=f"click-target-{seed}-{index}", instruction=f"Click the {colour} square.",
                family=CLICK_TARGET_FAMILY, seed=seed, max_steps=1, provenance=Provenance.DEMONSTRATION,
                oracle=(OracleStep(Click(x + side // 2, y + side // 2)),),
                checks=(Check(getter="last_click", metric="point_in_rect", args={"rect": list(rect)}),))
    return task, rect, colour


def make_click_target_demos(folder: str | os.PathLike[str], count: int, *, seed: int = 0,
                            start: int = 0, screen: tuple[int, int] = (1024, 768)) -> Path:
    """Write ``count`` one-step demos (tasks ``start``..``start+count-1`` of the stream)."""
    import io

    from PIL import Image

    from deskdojo.core.records import to_json
    from deskdojo.core.rundir import TrajectoryWriter, write_atomic
    from deskdojo.core.types import EndReason, Step

    root = Path(folder)
    for index in range(start, start + count):
        task, rect, colour = click_target_task(index, seed=seed, screen=screen)
        demo = root / task.id
        writer = TrajectoryWriter(demo, trajectory_id=task.id, task_id=task.id, policy_id="oracle")
        buffer = io.BytesIO()
        Image.fromarray(click_target_frame(rect, colour, screen=screen)).save(buffer, format="PNG")
        frame = writer.write_frame(0, buffer.getvalue())
        writer.append_step(Step(index=0, action=task.oracle[0].action, frame=frame))
        writer.finish(EndReason.DONE)
        write_atomic(demo / "task.json", json.dumps(to_json(task), indent=1).encode())
    return root

