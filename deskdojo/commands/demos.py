"""``deskdojo record``, ``deskdojo demos export|import|list``, ``deskdojo replay`` and
``deskdojo bench rollout``. Each command imports what it needs when it runs."""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path
from typing import Any

DEFAULT_DEMOS = "demos"
_FAMILY_TASK_ID = re.compile(r"^(?P<family>.+)-L(?P<level>\d+)-(?P<split>train|heldout)-(?P<seed>\d+)$")


def load_task(spec: str) -> Any:
    """A task from a JSON file (a Task record), or a family task id ``<family>-L<level>-<split>-<seed>``."""
    from deskdojo.core.errors import RecordError
    from deskdojo.core.records import from_json
    from deskdojo.core.types import Task

    path = Path(spec)
    if path.is_file():
        try:
            data = json.loads(path.read_text())
        except json.JSONDecodeError as exc:
            raise RecordError(f"{path}: not valid JSON ({exc.msg})") from None
        where = "Task"
        if isinstance(data, list):  # a task file may hold a list (docs/tasks.md); one is needed here
            if len(data) != 1:
                raise RecordError(f"{path}: holds a list of {len(data)} tasks; this command takes one: "
                                  f"put it in a file of its own or give a family task id")
            data, where = data[0], "tasks[0]"
        try:
            return from_json(Task, data, where=where)
        except RecordError as exc:  # the file, then the field: `t.json: Task.level: ...`
            raise RecordError(f"{path}: {exc}") from None
    match = _FAMILY_TASK_ID.match(spec)
    if match is None:
        raise RecordError(f"--task {spec!r} is neither a task JSON file nor a family task id "
                          f"like buttons-L0-train-3 (<family>-L<level>-<split>-<seed>)")
    from deskdojo.curriculum.families import get_family

    try:
        family = get_family(match["family"])
        return family.generate(int(match["level"]), int(match["seed"]), match["split"])
    except (KeyError, ValueError) as exc:
        raise RecordError(f"--task {spec!r}: {exc}") from None


def _start_sandbox(provider: str) -> Any:
    from deskdojo.vm.config import SandboxConfig
    from deskdojo.vm.pool import make_provider

    return make_provider(SandboxConfig(provider=provider)).start()


def _actions_from(args: argparse.Namespace) -> list[Any]:
    from deskdojo.core.actions import action_from_dict
    from deskdojo.core.errors import ActionError

    texts = list(args.action or [])
    if args.stdin:
        texts += [line for line in sys.stdin.read().splitlines() if line.strip()]
    actions = []
    for number, text in enumerate(texts, start=1):
        try:
            actions.append(action_from_dict(json.loads(text)))
        except json.JSONDecodeError as exc:
            raise ActionError(f"action {number} is not JSON ({exc.msg}): {text!r}; write it like "
                              '\'{"kind": "click", "x": 10, "y": 20}\'') from None
    return actions


# --- record ----------------------------------------------------------------------


def cmd_record(args: argparse.Namespace) -> int:
    from deskdojo.agent.demos import DemoRecorder, record_oracle_demos
    from deskdojo.core.errors import DeskdojoError

    task = load_task(args.task)
    actions = _actions_from(args)
    if args.oracle and actions:
        raise DeskdojoError("--oracle records the task's own solution; drop --action/--stdin")
    if not args.oracle and not actions:
        raise DeskdojoError("nothing to record: give --action JSON (repeatable), --stdin, or --oracle")
    demos = Path(args.demos)
    with _start_sandbox(args.provider) as sandbox:
        if args.oracle:
            path = record_oracle_demos([task], sandbox, demos)[0]
            if args.name:
                path = path.rename(demos / args.name)
        else:
            recorder = DemoRecorder(sandbox, task, demos, name=args.name)
            try:
                refused = [(i, r.error) for i, r in enumerate(recorder.act(a) for a in actions) if not r.ok]
                path = recorder.finish()
            except BaseException:
                recorder.discard()
                raise
            for index, error in refused:
                print(f"deskdojo: step {index} was refused: {error}", file=sys.stderr)
    print(path)
    return 0


# --- demos -----------------------------------------------------------------------


def cmd_demos_list(args: argparse.Namespace) -> int:
    from deskdojo.agent.demos import list_demos

    rows = list_demos(args.demos)
    if args.json:
        print(json.dumps(rows))
    elif not rows:
        print(f"no demos in {args.demos} — record one with `deskdojo record`")
    else:
        for row in rows:
            if "error" in row:
                print(f"{row['id']:<48} unreadable: {row['error']}")
            else:
                print(f"{row['id']:<48} {row['steps']:>3} steps  {row['end'] or '-':<5} {row['instruction'][:60]}")
    return 0


def cmd_demos_export(args: argparse.Namespace) -> int:
    from deskdojo.agent.demos import export_demo

    print(export_demo(args.demo, args.out, format=args.format))
    return 0


def cmd_demos_import(args: argparse.Namespace) -> int:
    from deskdojo.agent.demos import import_demo

    task = load_task(args.task) if args.task else None
    print(import_demo(args.path, args.demos, format=args.format, name=args.name, task=task))
    return 0


# --- replay ----------------------------------------------------------------------


def _state_judge() -> Any:
    try:
        from deskdojo.world_model.judge import StateJudge
    except ImportError as exc:
        print(f"deskdojo: no judge available ({exc}); replaying without a verdict", file=sys.stderr)
        return None
    return StateJudge()


def cmd_replay(args: argparse.Namespace) -> int:
    from deskdojo.agent.demos import load_demo
    from deskdojo.agent.replay import describe_report, replay

    demo = load_demo(args.demo)  # a bad demo is refused before a sandbox starts
    judge = None if args.no_judge else _state_judge()
    with _start_sandbox(args.provider) as sandbox:
        report = replay(demo, sandbox, judge=judge, until_diverge=args.until_diverge,
                        threshold=args.threshold)
    print(json.dumps(report.to_json(), indent=1) if args.json else describe_report(report))
    return 1 if report.diverged else 0


# --- bench -----------------------------------------------------------------------


def cmd_bench_rollout(args: argparse.Namespace) -> int:
    from deskdojo.commands.bench_rollout import print_rollout_table, run_rollout_bench
    from deskdojo.vm.config import parse_screen

    counts = [int(c) for c in args.sandboxes.split(",") if c.strip()]
    result = run_rollout_bench(model=args.model, counts=counts, steps=args.steps, provider=args.provider,
                               screen=parse_screen(args.screen))
    if args.json:
        print(json.dumps(result, indent=1))
    else:
        print_rollout_table(result)
    return 0


# --- wiring ----------------------------------------------------------------------


def add_agent_parsers(sub: Any, bench: Any) -> None:
    """Add ``record``, ``demos``, ``replay`` to the ``deskdojo`` subparsers and ``rollout``
    to the ``bench`` group's subparsers."""
    providers = ["xvfb", "docker"]

    p = sub.add_parser("record", help="record a demonstration: a task, then actions (or its oracle)")
    p.add_argument("--task", required=True,
                   help="a task JSON file, or a family task id like buttons-L0-train-3")
    p.add_argument("--provider", default="xvfb", choices=providers, help="where the desktop runs")
    p.add_argument("--name", default=None, help="the demo's folder name (default: generated)")
    p.add_argument("--demos", default=DEFAULT_DEMOS, help="the demos folder")
    p.add_argument("--action", action="append", default=None,
                   help='an action as JSON, e.g. \'{"kind": "click", "x": 10, "y": 20}\' (repeatable)')
    p.add_argument("--stdin", action="store_true", help="read more actions from stdin, one JSON per line")
    p.add_argument("--oracle", action="store_true", help="record the task's oracle solution instead")
    p.set_defaults(fn=cmd_record)

    demos = sub.add_parser("demos", help="list, export and import demonstrations").add_subparsers(
        dest="demos_cmd", required=True)
    p = demos.add_parser("list", help="the demos in a folder")
    p.add_argument("--demos", default=DEFAULT_DEMOS, help="the demos folder")
    p.add_argument("--json", action="store_true")
    p.set_defaults(fn=cmd_demos_list)
    p = demos.add_parser("export", help="write a demo to a new folder (deskdojo jsonl or OSWorld)")
    p.add_argument("demo", help="the demo folder")
    p.add_argument("out", help="a new folder to write")
    p.add_argument("--format", default="jsonl", choices=["jsonl", "osworld"])
    p.set_defaults(fn=cmd_demos_export)
    p = demos.add_parser("import", help="copy a demo (deskdojo jsonl or OSWorld traj.jsonl) into the demos folder")
    p.add_argument("path", help="the folder to import")
    p.add_argument("--format", default=None, choices=["jsonl", "osworld"], help="default: detected")
    p.add_argument("--demos", default=DEFAULT_DEMOS, help="the demos folder")
    p.add_argument("--name", default=None, help="the new demo's name (default: the folder's name)")
    p.add_argument("--task", default=None, help="OSWorld imports: the task (JSON file or family task id)")
    p.set_defaults(fn=cmd_demos_import)

    p = sub.add_parser("replay", help="replay a demo in a fresh sandbox; exit 1 when the screen diverges")
    p.add_argument("demo", help="the demo folder")
    p.add_argument("--provider", default="xvfb", choices=providers, help="where the desktop runs")
    p.add_argument("--until-diverge", action="store_true", help="stop at the first divergent step")
    p.add_argument("--threshold", type=float, default=None,
                   help="least SSIM that counts as the same screen (default 0.995)")
    p.add_argument("--no-judge", action="store_true", help="skip the final verdict")
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    p.set_defaults(fn=cmd_replay)

    p = bench.add_parser("rollout", help="rollout steps/s and decisions/s with 1, 4, 8 batched sandboxes")
    p.add_argument("--model", default="scripted", help="scripted (no model), tiny, or a checkpoint path")
    p.add_argument("--sandboxes", default="1,4,8", help="comma-separated sandbox counts")
    p.add_argument("--steps", type=int, default=20, help="steps per episode")
    p.add_argument("--provider", default="xvfb", choices=providers, help="where the desktops run")
    p.add_argument("--screen", default="1024x768", help="screen size WxH")
    p.add_argument("--json", action="store_true")
    p.set_defaults(fn=cmd_bench_rollout)
