"""``deskdojo tasks``: list the task families, sample and show tasks, check that generated
tasks are admitted in real sandboxes, and explore an app for grounded tasks."""

from __future__ import annotations

import argparse
import json
import re
import shlex
import statistics
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any, Iterable, Mapping

from deskdojo.core.errors import DeskdojoError
from deskdojo.core.types import Split

TASK_ID = re.compile(r"^(?P<family>.+)-L(?P<level>\d+)-(?P<split>train|heldout)-(?P<seed>\d+)$")


# --- families / sample / show --------------------------------------------------------


def cmd_families(args: argparse.Namespace) -> int:
    from deskdojo.curriculum.families import all_families, web_families

    rows = [{"name": f.name, "app": f.app, "levels": f.levels, "description": f.description}
            for f in [*all_families().values(), *web_families().values()]]
    if args.json:
        print(json.dumps(rows, indent=1))
        return 0
    print(f"{'family':<18} {'app':<12} {'levels':>6}  description")
    for row in rows:
        print(f"{row['name']:<18} {row['app']:<12} {row['levels']:>6}  {row['description']}")
    return 0


def _generate(family: str, level: int, seed: int, split: str):
    from deskdojo.curriculum.families import get_family

    try:
        return get_family(family).generate(level, seed, split)
    except KeyError as exc:
        raise DeskdojoError(exc.args[0]) from None
    except ValueError as exc:
        raise DeskdojoError(f"{family}: {exc}") from None


def _print_task(task: Any, as_json: bool) -> None:
    from deskdojo.curriculum.spec import task_json

    if as_json:
        print(task_json(task, indent=None))
    else:
        print(task_json(task))


def cmd_sample(args: argparse.Namespace) -> int:
    from deskdojo.curriculum.families.base import HELDOUT_SEED_BASE

    seed = args.seed
    if seed is None:
        seed = HELDOUT_SEED_BASE if args.split == "heldout" else 0
    elif args.split == "heldout" and seed < HELDOUT_SEED_BASE:
        seed += HELDOUT_SEED_BASE  # held-out seeds live in their own range
    _print_task(_generate(args.family, args.level, seed, args.split), args.json)
    return 0


def cmd_show(args: argparse.Namespace) -> int:
    match = TASK_ID.match(args.id)
    if match:
        task = _generate(match["family"], int(match["level"]), int(match["seed"]), match["split"])
    elif Path(args.id).exists():
        from deskdojo.curriculum.spec import load_tasks

        for task in load_tasks(args.id):  # a file may hold a list of tasks (docs/tasks.md)
            _print_task(task, args.json)
        return 0
    else:
        raise DeskdojoError(f"{args.id!r} is neither a task id like click_button-L2-train-17 "
                            f"nor a task file")
    _print_task(task, args.json)
    return 0


# --- check ---------------------------------------------------------------------------


def spread(n: int, families: dict[str, Any], *, only_family: str | None = None,
           only_level: int | None = None, seed: int = 0) -> list[tuple[str, int, str, int]]:
    """``n`` (family, level, split, seed) spread evenly over every family and level,
    alternating train and held-out, with fresh seeds on each pass."""
    from deskdojo.curriculum.families.base import HELDOUT_SEED_BASE

    pairs = [(name, level) for name, family in families.items() if only_family in (None, name)
             for level in range(family.levels) if only_level in (None, level)]
    if not pairs:
        raise DeskdojoError(f"no family and level match --family {only_family} --level {only_level}")
    out = []
    for i in range(n):
        name, level = pairs[i % len(pairs)]
        lap = i // len(pairs)
        split = "train" if (lap + i) % 2 == 0 else "heldout"
        base = HELDOUT_SEED_BASE if split == "heldout" else 0
        out.append((name, level, split, base + seed + lap))
    return out


def run_check(args: argparse.Namespace) -> dict[str, Any]:
    from deskdojo.core.progress import HEARTBEAT_S, ProgressLine, activity
    from deskdojo.curriculum.admission import AdmissionLog, AdmissionResult, admit
    from deskdojo.curriculum.families import all_families
    from deskdojo.vm.config import SandboxConfig
    from deskdojo.vm.pool import SandboxPool
    from deskdojo.world_model.judge import StateJudge

    families = all_families()
    plan = spread(args.n, families, only_family=args.family, only_level=args.level, seed=args.seed)
    log = AdmissionLog(args.log) if args.log else None
    results: list[tuple[str, int, str, AdmissionResult]] = []
    lock = threading.Lock()
    cursor = iter(plan)

    def worker(pool: SandboxPool, index: int) -> None:
        while True:
            with lock:
                item = next(cursor, None)
            if item is None:
                return
            name, level, split, seed = item
            started = time.monotonic()
            try:
                task = families[name].generate(level, seed, split)
            except Exception as exc:  # a family bug: counted, reported, never hidden
                result = AdmissionResult(f"{name}-L{level}-{split}-{seed}", False, "generate_error",
                                         None, None, round(time.monotonic() - started, 3),
                                         f"{type(exc).__name__}: {exc}")
                task = None
            else:
                try:
                    result = admit(task, pool[index], StateJudge())
                except Exception as exc:  # invalid checks, a judge bug: counted, not fatal
                    result = AdmissionResult(task.id, False, "admit_error", None, None,
                                             round(time.monotonic() - started, 3), f"{type(exc).__name__}: {exc}")
                if result.reason == "sandbox_died":
                    pool.replace(index)
            with lock:
                results.append((name, level, split, result))
                if log is not None and task is not None:
                    log.record(task, result)
                if args.verbose and not result.admitted:
                    print(f"rejected {result.task_id}: {result.reason}: {result.detail[:300]}", flush=True)
                admitted = sum(r[3].admitted for r in results)
                line.update(len(results), info=f"{admitted} admitted, {len(results) - admitted} rejected")

    config = SandboxConfig(provider=args.provider)
    with activity(f"tasks check: starting {args.sandboxes} {args.provider} sandboxes", delay_s=HEARTBEAT_S):
        pool = SandboxPool(config, args.sandboxes).start()
    try:
        with ProgressLine("tasks check", len(plan), unit="tasks") as line:
            threads = [threading.Thread(target=worker, args=(pool, i), daemon=True) for i in range(len(pool))]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
    finally:
        pool.close()
    return summarise(results, families=len({r[0] for r in results}),
                     levels=len({(r[0], r[1]) for r in results}))


def summarise(results: list[tuple[str, int, str, Any]], *, families: int, levels: int) -> dict[str, Any]:
    def block(rows: list[Any]) -> dict[str, Any]:
        admitted = [r for r in rows if r.admitted]
        return {
            "sampled": len(rows), "admitted": len(admitted),
            "oracle_pass_rate": round(sum(r.oracle_score == 1.0 for r in admitted) / len(admitted), 4)
            if admitted else None,
            "noop_pass_rate": round(sum(r.noop_score == 1.0 for r in admitted) / len(admitted), 4)
            if admitted else None,
            "rejected_by_reason": dict(Counter(r.reason for r in rows if not r.admitted)),
            "median_seconds_per_task": round(statistics.median(r.seconds for r in rows), 3) if rows else None,
        }

    summary = {"families": families, "levels": levels, **block([r[3] for r in results])}
    by_family: dict[str, Any] = {}
    for name in sorted({r[0] for r in results}):
        by_family[name] = block([r[3] for r in results if r[0] == name])
        by_family[name]["rejected"] = sorted(r[3].task_id for r in results if r[0] == name and not r[3].admitted)
    summary["by_family"] = by_family
    return summary


def cmd_check(args: argparse.Namespace) -> int:
    if args.n < 1 or args.sandboxes < 1:
        raise DeskdojoError("--n and --sandboxes must be at least 1")
    summary = run_check(args)
    if args.json:
        print(json.dumps(summary, indent=1))
    else:
        print(f"{'family':<18} {'sampled':>7} {'admitted':>8} {'median s':>8}  rejected by reason")
        for name, row in summary["by_family"].items():
            print(f"{name:<18} {row['sampled']:>7} {row['admitted']:>8} {row['median_seconds_per_task']:>8}  "
                  f"{row['rejected_by_reason'] or ''}")
        print(f"{'all':<18} {summary['sampled']:>7} {summary['admitted']:>8} "
              f"{summary['median_seconds_per_task']:>8}  {summary['rejected_by_reason'] or ''}")
        print(f"oracle pass rate {summary['oracle_pass_rate']}, no-op pass rate {summary['noop_pass_rate']} "
              f"(over admitted tasks)")
    return 0 if summary["admitted"] == summary["sampled"] else 3


# --- tasks explore ---------------------------------------------------------------------


def explore_command(args: Any) -> int:
    """``deskdojo tasks explore APP``: explore, propose, admit; print a summary; write the
    guidebook and the admitted tasks to ``--out``. (Wiring: imports the sandbox provider
    and the judge when it runs.)"""
    from deskdojo.core.records import to_json
    from deskdojo.curriculum.admission import admit
    from deskdojo.curriculum.explore import explore_app, propose_from_guidebook
    from deskdojo.vm.config import SandboxConfig
    from deskdojo.vm.pool import make_provider
    from deskdojo.world_model.judge import StateJudge

    provider = make_provider(SandboxConfig(provider=getattr(args, "provider", None) or "xvfb"))
    sandbox = provider.start()
    try:
        argv = shlex.split(args.argv) if getattr(args, "argv", None) else None
        sources = getattr(args, "sources", None)
        guidebook = explore_app(args.app, sandbox, max_depth=args.max_depth, max_actions=args.max_actions,
                                argv=argv, wait_window=getattr(args, "wait_window", None),
                                sources=sources.split(",") if sources else None)
        proposed = propose_from_guidebook(guidebook, n=len(guidebook.state_changing), seed=0)
        judge = StateJudge()
        results = [(task, admit(task, sandbox, judge)) for task in proposed]
    finally:
        sandbox.close()
    admitted = [task for task, result in results if result.admitted]
    summary = {**guidebook.summary(), "tasks_proposed": len(proposed), "tasks_admitted": len(admitted),
               "rejected": {task.id: result.reason for task, result in results if not result.admitted}}
    if args.out:
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        guidebook.save(out / f"guidebook-{args.app}.json")
        with open(out / f"tasks-{args.app}.jsonl", "w") as handle:
            for task in admitted:
                handle.write(json.dumps(to_json(task), sort_keys=True) + "\n")
        summary["out"] = str(out)
    if args.json:
        print(json.dumps(summary, indent=1, sort_keys=True))
    else:
        _print_summary(summary, guidebook.state_changing)
    return 0


def _print_summary(summary: Mapping[str, Any], changing: Iterable[Any]) -> None:
    print(f"explored {summary['app']}: {summary['widgets_seen']} widgets seen, {summary['screens']} screens, "
          f"{summary['actions_tried']} actions tried (+{summary['navigation_clicks']} navigation clicks, "
          f"{summary['resets']} resets, {summary['seconds']} s, stopped: {summary['stopped_by']})")
    print(f"state-changing actions: {summary['state_changing']}")
    for entry in changing:
        changed = ", ".join(".".join(c.path) for c in entry.changes[:3])
        print(f"  {' > '.join(p.label for p in entry.path):50} -> {changed}")
    print(f"tasks proposed: {summary['tasks_proposed']}, admitted: {summary['tasks_admitted']}")
    for task_id, reason in summary["rejected"].items():
        print(f"  rejected {task_id}: {reason}")
    if "out" in summary:
        print(f"wrote the guidebook and admitted tasks to {summary['out']}")


# --- the parser ------------------------------------------------------------------------


def add_tasks_parser(subparsers: Any) -> None:
    tasks = subparsers.add_parser("tasks", help="task families: list, sample, show, check admission, explore")
    sub = tasks.add_subparsers(dest="tasks_cmd", required=True)

    p = sub.add_parser("families", help="the task families: name, app, levels, description")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p.set_defaults(fn=cmd_families)

    p = sub.add_parser("sample", help="generate one task and print it as JSON")
    p.add_argument("--family", required=True, help="a family name (see `deskdojo tasks families`)")
    p.add_argument("--level", type=int, default=0, help="difficulty level, 0 = easiest")
    p.add_argument("--seed", type=int, default=None,
                   help="seed (held-out seeds are offset into their own range)")
    p.add_argument("--split", default="train", choices=[s.value for s in Split])
    p.add_argument("--json", action="store_true", help="one line of JSON (default: indented)")
    p.set_defaults(fn=cmd_sample)

    p = sub.add_parser("show", help="print a task by id (family-L2-train-17) or from a task file")
    p.add_argument("id", help="a task id or a task file path")
    p.add_argument("--json", action="store_true", help="one line of JSON (default: indented)")
    p.set_defaults(fn=cmd_show)

    p = sub.add_parser("check", help="admit sampled tasks in real sandboxes (oracle passes, no-op fails)")
    p.add_argument("--n", type=int, default=40, help="tasks to sample, spread over all families and levels")
    p.add_argument("--family", default=None, help="only this family")
    p.add_argument("--level", type=int, default=None, help="only this level")
    p.add_argument("--seed", type=int, default=0, help="first seed of each pass")
    p.add_argument("--provider", default="xvfb", choices=["docker", "xvfb"], help="where the sandboxes run")
    p.add_argument("--sandboxes", type=int, default=2, help="sandboxes admitting in parallel")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p.add_argument("--log", default=None, help="append each task and its admission to this .jsonl file")
    p.add_argument("--verbose", action="store_true", help="print each rejection as it happens")
    p.set_defaults(fn=cmd_check)

    p = sub.add_parser("explore", help="explore an app's on-screen elements and propose grounded tasks")
    p.add_argument("app", help="a practice app (buttons, form, ...), mousepad, xterm, or a name for --argv")
    p.add_argument("--argv", default=None,
                   help="the command line that starts an app without published state (e.g. \"gedit --new-window\")")
    p.add_argument("--wait-window", default=None, help="a regex for the window title its launch waits for")
    p.add_argument("--sources", default=None, help="element sources, comma-separated (tk,atspi,ocr; default: all)")
    p.add_argument("--provider", default="xvfb", choices=["docker", "xvfb"], help="where the sandbox runs")
    p.add_argument("--max-depth", type=int, default=2, help="how many actions deep to explore")
    p.add_argument("--max-actions", type=int, default=60, help="how many actions to try in all")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p.add_argument("--out", default=None, help="folder for the guidebook and the admitted tasks")
    p.set_defaults(fn=explore_command)

    from deskdojo.commands.osworld_import import add_import_parser
    add_import_parser(sub)
