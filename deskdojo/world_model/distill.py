"""Distilling the executable checks into a VLM judge (``deskdojo judge train``), and
measuring a judge against the checks (``deskdojo judge calibrate``).

The examples are runs' judged trajectories: what the judge reads (``vlm_judge.judge_view``:
the task, the actions by element, what each changed, the last screen's elements) and, as
the answer to learn, the checks' verdict written as a judge answer:

* ``success`` and ``score``: the checks' (ground truth, read from app state the judge
  never sees);
* ``redundant_steps``: steps whose recorded world-state delta was empty (``no-op``);
* ``first_error_step`` of a failure: the first step that did not parse or was refused,
  else the first that changed nothing, else the last step (where the episode stopped
  short); ``error_type`` from how it ended (``premature_done``, ``missing_step``,
  ``no_effect`` when nothing changed at all).

Tasks are split by family and seed: a family named in ``unseen`` never trains (it
measures transfer), and of the others every task whose seed falls in the held-out share
is only evaluated. A task (family, seed) is in one split only, whichever run it came from.
"""

from __future__ import annotations

import hashlib
import json
import math
import random
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

from deskdojo.core.errors import ConfigError, RecordError
from deskdojo.core.types import EndReason, StepLabel, Task, Trajectory, Verdict
from deskdojo.world_model.vlm_judge import (
    JUDGE_SYSTEM, JUDGE_VIEWS, JudgeAnswer, JudgeAnswerError, format_judge_answer, judge_text, judge_view,
    parse_judge_answer,
)

JUDGE_FILE = "judge.json"
"""Written beside a distilled judge's weights: how to ask it (images or not, answer length)."""
SPLITS = ("train", "heldout", "unseen")


@dataclass(frozen=True, slots=True)
class JudgeExample:
    """One judged trajectory as a judge training or evaluation example."""

    task: Task
    trajectory_id: str
    text: str  # the user message (judge_text of the view)
    answer: JudgeAnswer  # the checks' verdict as a judge answer
    split: str
    steps: int
    source: str = ""  # the run folder it came from


def answer_from_checks(trajectory: Trajectory, verdict: Verdict) -> JudgeAnswer:
    """The checks' verdict written as what a judge should answer (see the module doc)."""
    labels = list(verdict.step_labels) or [StepLabel.PROGRESS] * len(trajectory.steps)
    redundant = tuple(i for i, label in enumerate(labels) if label is StepLabel.NO_OP)
    score = round(verdict.score, 2)
    if verdict.success:
        return JudgeAnswer(True, score, None, redundant, "none", None, "the task is done")
    errors = [i for i, label in enumerate(labels) if label is StepLabel.ERROR]
    first = errors[0] if errors else (redundant[0] if redundant else max(len(trajectory.steps) - 1, 0))
    acting = [i for i, s in enumerate(trajectory.steps) if s.action is not None and s.action.kind not in
              ("done", "fail")]
    if not acting or all(labels[i] is StepLabel.NO_OP for i in acting):
        kind = "no_effect"
    elif trajectory.end is EndReason.DONE:
        kind = "premature_done"
    elif trajectory.end in (EndReason.STEP_LIMIT, EndReason.TIME_LIMIT):
        kind = "missing_step"
    else:
        kind = "other"
    return JudgeAnswer(False, score, first if trajectory.steps else None, redundant, kind, None,
                       "the task is not done")


def task_split(task: Task, *, unseen: Iterable[str], heldout_share: float) -> str:
    """``unseen`` for the named families; else ``heldout`` for a fixed share of each
    family's tasks (by a hash of family, level, split and seed, so every run agrees), else
    ``train``. The policy's held-out tasks (its evaluation rollouts) are tasks like any
    other here: the judge's own held-out share of them never trains the judge."""
    if task.family in set(unseen):
        return "unseen"
    digest = hashlib.sha256(f"{task.family}:{task.level}:{task.split.value}:{task.seed}".encode()).digest()
    return "heldout" if int.from_bytes(digest[:4], "big") / 2 ** 32 < heldout_share else "train"


def _run_tasks(run: Path) -> dict[str, Task]:
    from deskdojo.core.records import from_json

    tasks: dict[str, Task] = {}
    path = run / "tasks.jsonl"
    if not path.exists():
        raise ConfigError(f"{run} has no tasks.jsonl: name a run folder of `deskdojo evolve` or `deskdojo run`")
    for number, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
            task = record.get("task", record)
            if isinstance(task, dict) and "instruction" in task:
                parsed = from_json(Task, task, where=f"{path}:{number}")
                tasks[parsed.id] = parsed
        except (json.JSONDecodeError, RecordError):
            continue  # a torn last line of a killed run; the rest stands
    return tasks


def run_examples(runs: Sequence[str | Path], *, unseen: Sequence[str] = (), heldout_share: float = 0.25,
                 keyframes: int = 6, layout: str = "full", log: Callable[[str], None] = print) -> list[JudgeExample]:
    """Every trajectory of ``runs`` that the checks judged (``verdicts.jsonl``), as examples
    whose text is the judge view ``layout`` (``JUDGE_VIEWS``). Trajectories that ended as
    ``error`` have no verdict and are not used."""
    from deskdojo.core.records import from_json
    from deskdojo.core.rundir import read_trajectory

    examples: list[JudgeExample] = []
    for run in map(Path, runs):
        if not (run / "verdicts.jsonl").exists():
            raise ConfigError(f"{run} has no verdicts.jsonl: name run folders whose trajectories were judged")
        tasks = _run_tasks(run)
        used = skipped = 0
        for line in (run / "verdicts.jsonl").read_text().splitlines():
            try:
                verdict = from_json(Verdict, json.loads(line))
            except (json.JSONDecodeError, RecordError):
                skipped += 1
                continue
            task = tasks.get(verdict.task_id)
            folder = run / "trajectories" / verdict.trajectory_id
            if task is None or not (folder / "steps.jsonl").exists() or not task.checks:
                skipped += 1
                continue
            trajectory = read_trajectory(folder)
            view = judge_view(task, trajectory, folder, keyframes=keyframes)
            examples.append(JudgeExample(
                task=task, trajectory_id=trajectory.id, text=judge_text(view, layout=layout),
                answer=answer_from_checks(trajectory, verdict), steps=len(trajectory.steps),
                split=task_split(task, unseen=unseen, heldout_share=heldout_share), source=str(run)))
            used += 1
        log(f"judge data: {run}: {used} judged trajectories" + (f" ({skipped} skipped)" if skipped else ""))
    return examples


# --- training ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class JudgeTrainConfig:
    steps: int = field(default=600, metadata={"help": "optimizer steps"})
    batch_size: int = field(default=16, metadata={"help": "examples per step (balanced success/failure)"})
    lr: float = field(default=1e-3, metadata={"help": "AdamW peak learning rate (cosine decay)"})
    warmup_steps: int = field(default=30, metadata={"help": "linear warm-up steps"})
    seed: int = 0
    max_new_tokens: int = field(default=96, metadata={"help": "answer length when judging"})
    images: bool = field(default=False, metadata={
        "help": "show keyframes (the tiny model's vision tower is untrained: text only by default)"})
    view: str = field(default="evidence", metadata={
        "help": "what the judge reads (vlm_judge.JUDGE_VIEWS): evidence (the evidence lines, each "
                "action's number and kind, and the ending: a tiny judge trained on the full listing "
                "fits the seen families through it and reads unseen ones at chance) | full; saved in "
                "judge.json, so it is asked the same way"})

    def __post_init__(self) -> None:
        if self.steps < 1 or self.batch_size < 1 or self.warmup_steps < 0 or not self.lr > 0:
            raise ConfigError("judge train: steps and batch size must be >= 1, warm-up >= 0 and lr > 0")
        if self.view not in JUDGE_VIEWS:
            raise ConfigError(f"judge train: view {self.view!r} is not one of: {', '.join(JUDGE_VIEWS)}")


def chat_text(policy: Any, text: str) -> str:
    messages = [{"role": "system", "content": JUDGE_SYSTEM}, {"role": "user", "content": [{"type": "text",
                                                                                          "text": text}]}]
    return policy.processor.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)


def answer_loss(policy: Any, examples: Sequence[JudgeExample]) -> Any:
    """Mean cross-entropy of the answers' tokens (and the end token) after their prompts."""
    import torch

    tokenizer = policy.tokenizer
    rows, targets = [], []
    for example in examples:
        prompt = tokenizer(chat_text(policy, example.text), add_special_tokens=False)["input_ids"]
        answer = tokenizer(format_judge_answer(example.answer), add_special_tokens=False)["input_ids"]
        answer = answer + [policy.end_token_id]
        rows.append(prompt + answer)
        targets.append([-100] * len(prompt) + answer)
    width = max(map(len, rows))
    pad = policy.pad_token_id
    input_ids = torch.tensor([r + [pad] * (width - len(r)) for r in rows], device=policy.device)
    labels = torch.tensor([t + [-100] * (width - len(t)) for t in targets], device=policy.device)
    mask = torch.tensor([[1] * len(r) + [0] * (width - len(r)) for r in rows], device=policy.device)
    logits = policy.model(input_ids=input_ids, attention_mask=mask).logits
    return torch.nn.functional.cross_entropy(logits[:, :-1].reshape(-1, logits.shape[-1]).float(),
                                             labels[:, 1:].reshape(-1), ignore_index=-100)


def _balanced_batches(examples: Sequence[JudgeExample], batch: int, rng: random.Random) -> Iterable[list[JudgeExample]]:
    """Endless batches, half successes and half failures where both exist (the runs hold
    more of one than of the other; a judge trained on the skew learns the base rate)."""
    by_outcome = [[e for e in examples if e.answer.success], [e for e in examples if not e.answer.success]]
    pools = [p for p in by_outcome if p]
    while True:
        yield [rng.choice(pools[i % len(pools)]) for i in range(batch)]


def train_judge(policy: Any, examples: Sequence[JudgeExample], config: JudgeTrainConfig, *,
                log: Callable[[str], None] = print) -> dict[str, Any]:
    """Full fine-tuning of ``policy``'s weights on the train split; returns the loss curve."""
    import torch

    train = [e for e in examples if e.split == "train"]
    if not train:
        raise ConfigError("no training examples: the runs hold no judged trajectory of a seen family's "
                          "training seeds (check --unseen and the runs)")
    rng = random.Random(config.seed)
    torch.manual_seed(config.seed)
    params = [p for p in policy.model.parameters() if p.requires_grad] or list(policy.model.parameters())
    for p in params:
        p.requires_grad_(True)
    optimizer = torch.optim.AdamW(params, lr=config.lr, weight_decay=0.0)

    def lr_at(step: int) -> float:
        if step < config.warmup_steps:
            return config.lr * (step + 1) / config.warmup_steps
        done = (step - config.warmup_steps) / max(1, config.steps - config.warmup_steps)
        return config.lr * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * done)))

    policy.model.train()
    losses: list[float] = []
    started = time.perf_counter()
    batches = _balanced_batches(train, config.batch_size, rng)
    try:
        for step in range(config.steps):
            for group in optimizer.param_groups:
                group["lr"] = lr_at(step)
            loss = answer_loss(policy, next(batches))
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, 1.0)
            optimizer.step()
            losses.append(float(loss.detach()))
            if (step + 1) % max(1, config.steps // 10) == 0 or step + 1 == config.steps:
                window = losses[-max(1, config.steps // 10):]
                log(f"judge train: step {step + 1}/{config.steps}  loss {sum(window) / len(window):.4f}  "
                    f"{time.perf_counter() - started:.0f} s")
    finally:
        policy.model.eval()
    return {"train_examples": len(train), "loss_first": losses[0], "loss_last": losses[-1],
            "seconds": round(time.perf_counter() - started, 1)}


# --- calibration -------------------------------------------------------------------------------


def agreement(pairs: Sequence[tuple[bool, bool]]) -> dict[str, Any]:
    """Judge against checks, success as the positive class: ``pairs`` of (judge, checks).
    Precision (of the judge's successes, how many the checks pass), recall, negative
    predictive value, accuracy and Cohen's kappa; None where a ratio has no denominator."""
    tp = sum(j and c for j, c in pairs)
    fp = sum(j and not c for j, c in pairs)
    fn = sum(c and not j for j, c in pairs)
    tn = sum(not j and not c for j, c in pairs)
    n = len(pairs)

    def ratio(a: int, b: int) -> float | None:
        return round(a / b, 4) if b else None

    accuracy = (tp + tn) / n if n else None
    expected = ((tp + fp) * (tp + fn) + (fn + tn) * (fp + tn)) / (n * n) if n else None
    kappa = None
    if accuracy is not None and expected is not None:
        kappa = round((accuracy - expected) / (1 - expected), 4) if expected < 1 else (1.0 if accuracy == 1 else 0.0)
    return {"n": n, "tp": tp, "fp": fp, "fn": fn, "tn": tn, "precision": ratio(tp, tp + fp),
            "recall": ratio(tp, tp + fn), "npv": ratio(tn, tn + fn),
            "accuracy": round(accuracy, 4) if accuracy is not None else None, "kappa": kappa}


def judge_examples(model: Any, examples: Sequence[JudgeExample], *, batch: int = 16, retries: int = 2,
                   log: Callable[[str], None] = print) -> list[tuple[JudgeExample, JudgeAnswer | None, float]]:
    """Greedy answers for ``examples``, each that does not parse asked again at T = 0.7 up
    to ``retries`` times, as ``VLMJudge`` does in the loop: (example, parsed answer or
    None when every try failed, seconds per verdict including its retries)."""
    from deskdojo.world_model.vlm_judge import JudgePrompt

    out: list[tuple[JudgeExample, JudgeAnswer | None, float]] = []
    for start in range(0, len(examples), batch):
        chunk = list(examples[start:start + batch])
        answers: list[JudgeAnswer | None] = [None] * len(chunk)
        seconds = [0.0] * len(chunk)
        pending = list(range(len(chunk)))
        for attempt in range(retries + 1):
            began = time.perf_counter()
            texts = model.answer([JudgePrompt(JUDGE_SYSTEM, chunk[i].text) for i in pending],
                                 temperature=0.0 if attempt == 0 else 0.7)
            each = (time.perf_counter() - began) / max(1, len(pending))
            for i, text in zip(pending, texts):
                seconds[i] += each
                try:
                    answers[i] = parse_judge_answer(text, steps=chunk[i].steps)
                except JudgeAnswerError:
                    pass
            pending = [i for i in pending if answers[i] is None]
            if not pending:
                break
        out += list(zip(chunk, answers, seconds))
        if (start // batch) % 10 == 9:
            log(f"judge calibrate: {len(out)}/{len(examples)} verdicts")
    return out


def calibration_report(judged: Sequence[tuple[JudgeExample, JudgeAnswer | None, float]]) -> dict[str, Any]:
    """Figures per split and family. An example whose every try failed to parse (in the
    loop: a judge error, which ends no episode as a success) counts as a failure verdict
    here, and as ``unparsed``."""

    def figures(rows: Sequence[tuple[JudgeExample, JudgeAnswer | None, float]]) -> dict[str, Any]:
        pairs = [(bool(a and a.success), e.answer.success) for e, a, _ in rows]
        seconds = sorted(s for _, _, s in rows)
        return {**agreement(pairs), "unparsed": sum(a is None for _, a, _ in rows),
                "median_s_per_verdict": round(seconds[len(seconds) // 2], 4) if seconds else None}

    report: dict[str, Any] = {}
    for split in SPLITS:
        rows = [r for r in judged if r[0].split == split]
        if not rows:
            continue
        families = sorted({r[0].task.family for r in rows})
        report[split] = {"overall": figures(rows),
                         "families": {f: figures([r for r in rows if r[0].task.family == f]) for f in families}}
    adversarial = sorted({r[0].split for r in judged if r[0].split.startswith("adversarial:")})
    if adversarial:
        report["adversarial"] = {}
        for split in adversarial:
            rows = [r for r in judged if r[0].split == split]
            failing = [r for r in rows if not r[0].answer.success]  # the checks say it is not done
            said_yes = sum(bool(a and a.success) for _, a, _ in failing)
            report["adversarial"][split.split(":", 1)[1]] = {
                "episodes": len(rows), "checks_fail": len(failing), "judge_says_success": said_yes,
                "false_success_rate": round(said_yes / len(failing), 4) if failing else None,
                "unparsed": sum(a is None for _, a, _ in rows)}
    return report


def save_judge(policy: Any, folder: Path, config: JudgeTrainConfig, info: dict[str, Any]) -> Path:
    from deskdojo.core.rundir import write_atomic

    policy.save(folder)
    write_atomic(folder / JUDGE_FILE, json.dumps({"images": config.images, "max_new_tokens": config.max_new_tokens,
                                                  "view": config.view, **info}, indent=1).encode())
    return folder


def examples_digest(examples: Sequence[JudgeExample]) -> dict[str, Any]:
    counts: dict[str, dict[str, int]] = {}
    for e in examples:
        slot = counts.setdefault(e.split, {"success": 0, "failure": 0})
        slot["success" if e.answer.success else "failure"] += 1
    return {"splits": counts, "families": {s: sorted({e.task.family for e in examples if e.split == s})
                                           for s in SPLITS}}
