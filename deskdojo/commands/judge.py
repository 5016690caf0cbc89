"""``deskdojo judge``: distil the executable checks into a VLM judge, and measure a judge
against the checks.

* ``deskdojo judge train --runs RUN [RUN ...] --out DIR`` builds examples from the runs'
  judged trajectories (``deskdojo.world_model.distill``), fine-tunes the whole tiny model
  (or any policy checkpoint given with ``--model``) to answer the checks' verdicts as
  judge answers, and writes the judge with ``judge.json`` and ``train_report.json``.
* ``deskdojo judge calibrate --judge DIR --runs RUN [RUN ...]`` answers every held-out and
  unseen-family example, records the three adversarial sets in real sandboxes, and prints
  (and writes, ``--out``) precision, recall, negative predictive value, accuracy and
  Cohen's kappa per split and family, the false-success rates and seconds per verdict.
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable, Sequence

from deskdojo.core.errors import ConfigError
from deskdojo.core.types import Task


# --- adversarial sets ------------------------------------------------------------------------

ADVERSARIAL = ("done_nothing", "undone", "half_done")
ADVERSARIAL_TRAIN_SEED_BASE = 700_000
"""Training-split seeds of ``judge train --adversarial``: apart from the loop's task pools and
the warm start's demos (the learning bench's more-SFT arm draws its policy demos from here
up too; a judge's training data and a policy's never meet)."""
"""The calibration's own hard cases, each recorded in a real sandbox and labelled by the
checks: answered done with nothing changed; made progress, then undid it (a box ticked,
then unticked); did the first half of a task of two or more steps, then answered done."""
UNDO_FAMILY = "toggle_choices"
TRAIN_SETS = ("oracle", *ADVERSARIAL)
"""What ``judge train --adversarial`` records: the adversarial sets and the oracle played
whole (a success, where the checks agree), so the recorded families come with both answers."""


def adversarial_tasks(kind: str, *, families: Sequence[str], count: int, seed_base: int | None = None,
                      split: str = "heldout") -> list[Task]:
    """Tasks for one adversarial set: held-out-split ones to calibrate on (seeds apart from
    the policy's held-out evaluation, which counts up from ``HELDOUT_SEED_BASE``), or
    training-split ones (other seeds and words) for ``judge train --adversarial``."""
    from deskdojo.curriculum.families import get_family
    from deskdojo.curriculum.families.base import HELDOUT_SEED_BASE

    if seed_base is None:
        seed_base = HELDOUT_SEED_BASE + 900_000 if split == "heldout" else ADVERSARIAL_TRAIN_SEED_BASE

    if kind not in TRAIN_SETS:
        raise ConfigError(f"adversarial set {kind!r} is not one of: {', '.join(TRAIN_SETS)}")
    chosen = [UNDO_FAMILY] if kind == "undone" else list(families)
    tasks: list[Task] = []
    seed = seed_base
    while len(tasks) < count and seed < seed_base + 50 * count + 100:
        family = get_family(chosen[seed % len(chosen)])
        level = 0 if kind == "undone" else (seed // len(chosen)) % min(family.levels, 3)
        task = family.generate(level, seed, split)
        seed += 1
        if kind == "half_done" and len(task.oracle) < 2:
            continue
        if kind == "undone" and not (len(task.oracle) == 1 and task.oracle[0].action.kind == "click"):
            continue
        tasks.append(task)
    return tasks


def record_adversarial(kind: str, tasks: Sequence[Task], sandbox: Any, folder: Path, *, layout: str = "full",
                       log: Callable[[str], None] = print) -> list[Any]:
    """Play each task the adversarial way in ``sandbox`` (a real one), judge it by its
    checks, and return the episodes as examples (split ``adversarial:<kind>``)."""
    import dataclasses

    from deskdojo.agent.demos import DemoRecorder
    from deskdojo.core.oracle import run_oracle
    from deskdojo.world_model.distill import JudgeExample, answer_from_checks
    from deskdojo.world_model.vlm_judge import judge_text, judge_view
    from deskdojo.core.rundir import read_trajectory
    from deskdojo.world_model.judge import StateJudge
    from deskdojo.world_model.probe import StateProbe

    judge = StateJudge()
    examples: list[JudgeExample] = []
    for number, task in enumerate(tasks):
        recorder = DemoRecorder(sandbox, task, folder, probe=StateProbe(files=False), policy_id=f"adversarial-{kind}")
        try:
            if kind == "undone":
                (action,) = run_oracle(sandbox, task, act=recorder.act)
                recorder.act(action)  # the same click again: the box goes back
            elif kind == "half_done":
                half = dataclasses.replace(task, oracle=task.oracle[:len(task.oracle) // 2])
                run_oracle(sandbox, half, act=recorder.act)
            elif kind == "oracle":
                run_oracle(sandbox, task, act=recorder.act)
            path = recorder.finish(f"{kind}-{number:03d}")
        except BaseException:
            recorder.discard()
            raise
        trajectory = read_trajectory(path)
        verdict = judge.judge(task, trajectory, sandbox)
        examples.append(JudgeExample(
            task=task, trajectory_id=trajectory.id, text=judge_text(judge_view(task, trajectory, path), layout=layout),
            answer=answer_from_checks(trajectory, verdict), split=f"adversarial:{kind}",
            steps=len(trajectory.steps), source=str(path)))
    passed = sum(e.answer.success for e in examples)
    log(f"judge calibrate: {kind}: {len(examples)} episodes recorded ({passed} pass their checks)")
    return examples


def adversarial_examples(families: Sequence[str], count: int, *, split: str, provider: str,
                         layout: str = "full") -> list[Any]:
    """``count`` episodes of each adversarial set, recorded in one real sandbox and judged
    by the checks; ``split`` "train" makes training examples of them, and adds the oracle
    played whole (``TRAIN_SETS``)."""
    from deskdojo.vm.config import SandboxConfig
    from deskdojo.vm.pool import make_provider

    examples: list[Any] = []
    with tempfile.TemporaryDirectory(prefix="deskdojo-adversarial-") as folder:
        sandbox = make_provider(SandboxConfig(provider=provider)).start()
        try:
            for kind in TRAIN_SETS if split == "train" else ADVERSARIAL:
                tasks = adversarial_tasks(kind, families=families, count=count, split=split)
                examples += record_adversarial(kind, tasks, sandbox, Path(folder) / kind, layout=layout, log=_log)
        finally:
            sandbox.close()
    if split == "train":
        import dataclasses

        examples = [dataclasses.replace(e, split="train") for e in examples]
    return examples


def adversarial_families(chosen: str, examples: Sequence[Any], *, unseen: Sequence[str]) -> list[str]:
    """The families ``judge train --adversarial`` records on: ``runs`` (those the runs'
    training split holds), ``all`` (every registered family), or a comma-separated list;
    never a family in ``unseen``, which must measure transfer."""
    from deskdojo.curriculum.families import all_families, get_family

    if chosen == "runs":
        families = sorted({e.task.family for e in examples if e.split == "train"})
    elif chosen == "all":
        families = sorted(all_families())
    else:
        families = sorted({f.strip() for f in chosen.split(",") if f.strip()})
        for family in families:
            try:
                get_family(family)
            except KeyError as exc:
                raise ConfigError(f"judge train --families: {exc.args[0]}") from None
    families = [f for f in families if f not in set(unseen)]
    if not families:
        raise ConfigError(f"judge train: no family left to record adversarial sets on ({chosen!r} less the "
                          f"unseen families {', '.join(unseen)})")
    return families


def _examples(args: argparse.Namespace, layout: str) -> list[Any]:
    from deskdojo.world_model.distill import run_examples

    unseen = [f for f in (args.unseen or "").split(",") if f]
    return run_examples(args.runs, unseen=unseen, heldout_share=args.heldout_share, layout=layout, log=_log)


def _log(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def cmd_judge_train(args: argparse.Namespace) -> int:
    from deskdojo.agent.model.loading import quiet_libraries
    from deskdojo.agent.policy import PolicyConfig, load_policy
    from deskdojo.core.rundir import write_atomic
    from deskdojo.world_model.distill import JudgeTrainConfig, examples_digest, save_judge, train_judge

    quiet_libraries()
    config = JudgeTrainConfig(steps=args.steps, batch_size=args.batch_size, lr=args.lr, seed=args.seed,
                              view=args.view)
    examples = _examples(args, config.view)
    adversarial = []
    if args.adversarial:
        families = adversarial_families(args.families, examples, unseen=(args.unseen or "").split(","))
        _log(f"judge train: adversarial sets on {len(families)} families: {', '.join(families)}")
        adversarial = adversarial_examples(families, args.adversarial, split="train", provider=args.provider,
                                           layout=config.view)
        examples += adversarial
    digest = examples_digest(examples)
    _log(f"judge train: {json.dumps(digest['splits'])}")
    policy = load_policy(args.model, PolicyConfig(lora=None))
    result = train_judge(policy, examples, config, log=_log)
    out = Path(args.out)
    policy.policy_id = f"judge:{out.name}"
    info = {"command": shlex.join(["deskdojo", *sys.argv[1:]]), "runs": [str(r) for r in args.runs],
            "unseen": args.unseen, "heldout_share": args.heldout_share, "base": args.model,
            "examples": digest, "adversarial_train": len(adversarial), "train": result}
    save_judge(policy, out, config, info)
    write_atomic(out / "train_report.json", json.dumps(info, indent=1).encode())
    print(f"judge written to {out} ({result['train_examples']} training examples, loss "
          f"{result['loss_first']:.3f} -> {result['loss_last']:.3f}, {result['seconds'] / 60:.1f} min)")
    return 0


def cmd_judge_calibrate(args: argparse.Namespace) -> int:
    from deskdojo.agent.model.loading import quiet_libraries
    from deskdojo.core.rundir import write_atomic
    from deskdojo.evolve.bench import git_state
    from deskdojo.evolve.build import load_judge_model
    from deskdojo.world_model.distill import calibration_report, judge_examples

    quiet_libraries()
    model = load_judge_model(args.judge)
    examples = [e for e in _examples(args, model.view) if e.split != "train"]
    if args.limit:
        by_split: dict[str, list[Any]] = {}
        for example in examples:
            by_split.setdefault(example.split, []).append(example)
        import random

        rng = random.Random(0)  # the same sample every time, across runs and families
        examples = [e for rows in by_split.values() for e in (rng.sample(rows, args.limit)
                                                              if len(rows) > args.limit else rows)]
    if args.adversarial:
        families = sorted({e.task.family for e in examples if e.split == "heldout"}) or ["toggle_choices"]
        examples += adversarial_examples(families, args.adversarial, split="heldout", provider=args.provider,
                                         layout=model.view)
    started = time.perf_counter()
    judged = judge_examples(model, examples, retries=args.retries, log=_log)
    report = calibration_report(judged)
    commit, dirty = git_state()
    result = {"command": shlex.join(["deskdojo", *sys.argv[1:]]), "git_commit": commit, "git_dirty": dirty,
              "judge": str(args.judge), "runs": [str(r) for r in args.runs], "unseen": args.unseen,
              "seconds": round(time.perf_counter() - started, 1), **report}
    if "heldout" in report:
        overall = report["heldout"]["overall"]
        result["seen_families"] = {"precision": overall["precision"], "recall": overall["recall"],
                                   "families": sorted(report["heldout"]["families"])}
    if args.out:
        write_atomic(Path(args.out), json.dumps(result, indent=1).encode())
    if args.json:
        print(json.dumps(result, indent=1))
    else:
        print(calibration_table(result))
    return 0


def calibration_table(result: dict[str, Any]) -> str:
    lines = ["| split | family | n | precision | recall | NPV | accuracy | kappa | unparsed | s/verdict |",
             "|---|---|---|---|---|---|---|---|---|---|"]

    def fmt(value: Any) -> str:
        return "-" if value is None else (f"{value:.3f}" if isinstance(value, float) else str(value))

    for split in ("heldout", "unseen"):
        if split not in result:
            continue
        rows = [("all", result[split]["overall"])] + sorted(result[split]["families"].items())
        for family, f in rows:
            lines.append(f"| {split} | {family} | {f['n']} | {fmt(f['precision'])} | {fmt(f['recall'])} | "
                         f"{fmt(f['npv'])} | {fmt(f['accuracy'])} | {fmt(f['kappa'])} | {f['unparsed']} | "
                         f"{fmt(f['median_s_per_verdict'])} |")
    for kind, f in result.get("adversarial", {}).items():
        lines.append(f"adversarial {kind}: false-success rate {fmt(f['false_success_rate'])} "
                     f"({f['judge_says_success']} of {f['checks_fail']} failing episodes judged a success)")
    return "\n".join(lines)


def add_judge_parser(sub: Any) -> None:
    from deskdojo.world_model.vlm_judge import JUDGE_VIEWS

    judge = sub.add_parser("judge", help="the VLM judge: distil it from checks, calibrate it against them"
                           ).add_subparsers(dest="judge_cmd", required=True)

    def data_args(p: argparse.ArgumentParser) -> None:
        p.add_argument("--runs", nargs="+", required=True, help="run folders whose trajectories the checks judged")
        p.add_argument("--unseen", default="confirm_dialog,switch_tab",
                       help="families that never train (comma-separated; they measure transfer)")
        p.add_argument("--heldout-share", type=float, default=0.25,
                       help="share of each seen family's task seeds kept for evaluation")

    p = judge.add_parser("train", help="distil the checks of runs' trajectories into a judge (tiny: full FT)")
    data_args(p)
    p.add_argument("--out", required=True, help="folder for the judge")
    p.add_argument("--model", default="tiny", help="the model to start from (tiny, a checkpoint, a folder)")
    p.add_argument("--steps", type=int, default=300, help="optimizer steps")
    p.add_argument("--batch-size", type=int, default=8, help="examples per step (half successes)")
    p.add_argument("--lr", type=float, default=1e-3, help="peak learning rate")
    p.add_argument("--view", choices=JUDGE_VIEWS, default="evidence",
                   help="what the judge reads: evidence (the evidence lines, each action's number and kind, "
                        "the ending; the one that carried over to unseen families) or full (also every action, what "
                        "it changed and the last screen's rows); saved with the judge")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--adversarial", type=int, default=0,
                   help="also train on this many episodes of each adversarial set, recorded on training-split "
                        "tasks of the seen families (other seeds and words than calibrate's)")
    p.add_argument("--families", default="runs",
                   help="families of the adversarial sets: runs (the runs' seen families), all (every family "
                        "but the unseen ones), or a comma-separated list")
    p.add_argument("--provider", default="xvfb", choices=["docker", "xvfb"], help="where adversarial sets play")
    p.set_defaults(fn=cmd_judge_train)

    p = judge.add_parser("calibrate", help="measure a judge against the checks (and three adversarial sets)")
    data_args(p)
    p.add_argument("--judge", required=True, help="a folder from `judge train`, or a model checkpoint")
    p.add_argument("--adversarial", type=int, default=30, help="episodes per adversarial set (0: none)")
    p.add_argument("--provider", default="xvfb", choices=["docker", "xvfb"], help="where adversarial sets play")
    p.add_argument("--limit", type=int, default=0,
                   help="at most this many examples per split, a seeded random sample (0: all)")
    p.add_argument("--retries", type=int, default=2,
                   help="re-asks (at T 0.7) of an answer that does not parse, as the loop's judge does")
    p.add_argument("--out", default=None, help="write the figures as JSON here")
    p.add_argument("--json", action="store_true", help="print JSON instead of the table")
    p.set_defaults(fn=cmd_judge_calibrate)
