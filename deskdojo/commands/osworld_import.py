"""``deskdojo tasks import-osworld``: OSWorld task files -> deskdojo task files, with a report
of what imports, what is refused and why, and (``--run``) what runs in a real sandbox."""

from __future__ import annotations

import argparse
import json
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

from deskdojo.core.errors import DeskdojoError


def run_imported(imported: list[Any], provider: str) -> dict[str, tuple[str, str]]:
    """task id -> (status, detail) after resetting a real sandbox to each task (its setup
    runs) and judging the do-nothing state: ``runs`` when setup works, every check reads
    its value and nothing-done fails; else ``setup_failed``, ``check_error`` or ``noop_passed``."""
    from deskdojo.core.errors import SandboxError
    from deskdojo.core.progress import ProgressLine
    from deskdojo.vm.config import SandboxConfig
    from deskdojo.vm.pool import SandboxPool
    from deskdojo.world_model.checks import evaluate

    outcome: dict[str, tuple[str, str]] = {}
    tasks = [item.task for item in imported if item.task is not None]
    if not tasks:
        return outcome
    with SandboxPool(SandboxConfig(provider=provider), 1) as pool, \
            ProgressLine("import-osworld --run", len(tasks), unit="tasks") as line:
        for done, task in enumerate(tasks, start=1):
            try:
                pool[0].reset(task)
            except SandboxError as exc:
                outcome[task.id] = ("setup_failed", str(exc)[:400])
                if not getattr(pool[0], "alive", lambda: True)():
                    pool.replace(0)
            else:
                success, _, evidence = evaluate(task, pool[0])
                # a metric's own complaint (a missing file, say) is a fair do-nothing state;
                # a getter that could not read (a command that timed out, ...) is not
                unread = [e for c, e in zip(task.checks, evidence)
                          if not e.passed and not e.message.startswith(("expected", f"{c.metric}:"))]
                if unread:
                    outcome[task.id] = ("check_error", "; ".join(f"{e.check}: {e.message}" for e in unread)[:400])
                elif success:
                    outcome[task.id] = ("noop_passed", "doing nothing already passes the checks")
                else:
                    outcome[task.id] = ("runs", "")
            line.update(done, info=f"{sum(s == 'runs' for s, _ in outcome.values())} run")
    return outcome


def summarise(imported: list[Any], ran: dict[str, tuple[str, str]] | None,
              desktop_env: tuple[str, ...] | None) -> dict[str, Any]:
    """The report as JSON: counts by domain, refusal reasons, and one row per task."""
    rows = []
    for item in imported:
        task_id = item.task.id if item.task is not None else None
        status = "imported" if item.task is not None else "refused"
        row = {"osworld_id": item.osworld_id, "domain": item.domain, "source": item.source,
               "status": status, "reason": item.reason, "detail": item.detail, "task_id": task_id}
        if ran is not None and task_id is not None:
            row["run"], row["run_detail"] = ran.get(task_id, ("not_run", ""))
        rows.append(row)
    domains: dict[str, Counter[str]] = defaultdict(Counter)
    for row in rows:
        counts = domains[row["domain"]]
        counts["tasks"] += 1
        counts[row["status"]] += 1
        if row.get("run") == "runs":
            counts["runs"] += 1
    reasons = Counter(row["reason"] for row in rows if row["reason"])
    run_reasons = Counter(row["run"] for row in rows if row.get("run") not in (None, "runs"))
    return {
        "tasks": len(rows), "imported": sum(r["status"] == "imported" for r in rows),
        "refused": sum(r["status"] == "refused" for r in rows),
        "runs": sum(r.get("run") == "runs" for r in rows) if ran is not None else None,
        "by_domain": {d: {k: c.get(k, 0) for k in ("tasks", "imported", "refused", "runs")}
                      for d, c in sorted(domains.items())},
        "refused_by_reason": dict(reasons.most_common()),
        "not_running_by_reason": dict(run_reasons.most_common()) if ran is not None else None,
        "desktop_env": {"installed": desktop_env is not None, "metrics_it_defines": list(desktop_env or ()),
                        "used": False, "why": "deskdojo's checks use their own metrics of these names: "
                        "desktop-env's compare files by host path and its metrics package imports every "
                        "app's parsers"},
        "rows": rows,
    }


def print_report(summary: dict[str, Any]) -> None:
    ran = summary["runs"] is not None
    print(f"{'domain':<22} {'tasks':>6} {'imported':>9} {'refused':>8}" + (f" {'runs':>5}" if ran else ""))
    for domain, c in summary["by_domain"].items():
        print(f"{domain:<22} {c['tasks']:>6} {c['imported']:>9} {c['refused']:>8}"
              + (f" {c['runs']:>5}" if ran else ""))
    print(f"{'all':<22} {summary['tasks']:>6} {summary['imported']:>9} {summary['refused']:>8}"
          + (f" {summary['runs']:>5}" if ran else ""))
    if summary["refused_by_reason"]:
        print("\nrefused, by first reason:")
        example = {}
        for row in summary["rows"]:
            example.setdefault(row["reason"], row["detail"])
        for reason, count in summary["refused_by_reason"].items():
            print(f"  {reason:<32} {count:>5}   e.g. {example[reason].split(': ', 1)[-1][:100]}")
    if ran and summary["not_running_by_reason"]:
        print("\nimported but not running (--run):")
        for reason, count in summary["not_running_by_reason"].items():
            print(f"  {reason:<32} {count:>5}")
    env = summary["desktop_env"]
    if env["installed"]:
        print(f"\ndesktop-env installed: it defines {', '.join(env['metrics_it_defines']) or 'none'} of our "
              f"metric names; {env['why']}")


def cmd_import_osworld(args: argparse.Namespace) -> int:
    from deskdojo.curriculum.osworld import desktop_env_metrics, import_file, task_files
    from deskdojo.curriculum.spec import save_task, task_json

    source = Path(args.source)
    files_dir = Path(args.files) if args.files else None
    if files_dir is not None and not files_dir.is_dir():
        raise DeskdojoError(f"--files {files_dir}: not a folder; give the folder that holds the tasks' files")
    imported = [import_file(path, files_dir=files_dir, domain=domain)
                for path, domain in task_files(source, Path(args.index) if args.index else None)]
    if not imported:
        raise DeskdojoError(f"{source}: no .json task files found")
    ran = run_imported(imported, args.provider) if args.run else None
    if args.out:
        out = Path(args.out)
        for item in imported:
            if item.task is not None:
                save_task(item.task, out / f"{item.task.id}.json")
    if args.report or args.json:
        summary = summarise(imported, ran, desktop_env_metrics())
        if args.json:
            print(json.dumps(summary, indent=1))
        else:
            print_report(summary)
            if args.out:
                print(f"\nwrote {summary['imported']} task files to {args.out}")
        return 0
    for item in imported:
        if item.task is None:
            print(f"refused ({item.reason}): {item.detail}")
        elif not args.out:
            print(task_json(item.task, indent=None))
    if args.out:
        print(f"wrote {sum(i.task is not None for i in imported)} of {len(imported)} tasks to {args.out}")
    if source.is_file() and imported[0].task is None:
        return 1  # one file asked for and not imported: the line above says why
    return 0


def add_import_parser(sub: Any) -> None:
    p = sub.add_parser("import-osworld", help="OSWorld task JSON -> deskdojo task files (and a report)")
    p.add_argument("source", help="an OSWorld task .json, or a folder of them (e.g. evaluation_examples/examples)")
    p.add_argument("--out", default=None, help="folder to write the imported tasks to, one .json each")
    p.add_argument("--files", default=None,
                   help="folder holding the files OSWorld downloads (looked up by path under the home, then name)")
    p.add_argument("--index", default=None, help="only the tasks an OSWorld index lists (e.g. test_all.json)")
    p.add_argument("--report", action="store_true", help="print what imports and what is refused, by domain and reason")
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    p.add_argument("--run", action="store_true",
                   help="also reset a real sandbox to each imported task and judge doing nothing")
    p.add_argument("--provider", default="docker", choices=["docker", "xvfb"], help="where --run's sandbox runs")
    p.set_defaults(fn=cmd_import_osworld)
