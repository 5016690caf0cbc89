"""Task files: one Task as a JSON object, many as JSON lines, or a folder of .json files.

The format is ``deskdojo.core.types.Task`` written by ``deskdojo.core.records.to_json``:
closed to unknown keys, versioned by ``format_version`` (this deskdojo reads version
``TASK_FORMAT_VERSION``), and checked on load: a check whose getter, metric or
arguments are unknown is rejected. Errors name the file (and line, for .jsonl) and
the field, e.g. ``tasks/bad.json: Task.checks[0].metric: unknown metric 'equal'
(known: ...)``. See ``docs/tasks.md`` for the fields and an example.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from deskdojo.core.checks import validate_checks
from deskdojo.core.errors import RecordError
from deskdojo.core.records import from_json, to_json
from deskdojo.core.types import Task


def _validate(task: Task, where: str) -> Task:
    validate_checks(task, where)
    return task


def task_from_json(data: object, *, source: str, where: str = "Task") -> Task:
    """A Task from parsed JSON; errors name the file, then the field:
    ``{source}: {where}.field: ...``."""
    try:
        return _validate(from_json(Task, data, where=where), where)
    except RecordError as exc:
        raise RecordError(f"{source}: {exc}") from None


def load_task(path: str | os.PathLike[str]) -> Task:
    """The one Task in a .json file."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise RecordError(f"{path}: no such task file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise RecordError(f"{path}: cannot read it ({exc})") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise RecordError(f"{path}: not valid JSON ({exc.msg} at line {exc.lineno} column {exc.colno})") from None
    return task_from_json(data, source=str(path))


def load_tasks(path: str | os.PathLike[str]) -> list[Task]:
    """Tasks from a .json file (one task, or a list of tasks), a .jsonl file (one per
    line; blank lines skipped) or a folder of .json files (sorted by name). Task ids
    must be unique."""
    path = Path(path)
    if path.is_dir():
        tasks = [task for file in sorted(path.glob("*.json")) for task in load_tasks(file)]
    elif path.suffix == ".jsonl":
        tasks = _load_jsonl(path)
    elif path.suffix == ".json" and path.exists():
        data = _read_json(path)
        if isinstance(data, list):
            tasks = [task_from_json(item, source=str(path), where=f"tasks[{i}]") for i, item in enumerate(data)]
        else:
            tasks = [task_from_json(data, source=str(path))]
    elif not path.exists():
        raise RecordError(f"{path}: no such task file or folder")
    else:
        raise RecordError(f"{path}: task files end in .json or .jsonl (or give a folder of .json files)")
    seen: dict[str, int] = {}
    for index, task in enumerate(tasks):
        if task.id in seen:
            raise RecordError(f"{path}: task id {task.id!r} appears twice (tasks {seen[task.id]} and {index})")
        seen[task.id] = index
    return tasks


def _read_json(path: Path) -> object:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise RecordError(f"{path}: not valid JSON ({exc.msg} at line {exc.lineno} column {exc.colno})") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise RecordError(f"{path}: cannot read it ({exc})") from None


def _load_jsonl(path: Path) -> list[Task]:
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise RecordError(f"{path}: cannot read it ({exc})") from None
    tasks = []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            data = json.loads(line)
        except json.JSONDecodeError as exc:
            raise RecordError(f"{path}:{number}: not valid JSON ({exc.msg} at column {exc.colno})") from None
        tasks.append(task_from_json(data, source=f"{path}:{number}"))
    return tasks


def task_json(task: Task, *, indent: int | None = 1) -> str:
    """A task as the JSON text of a task file."""
    return json.dumps(to_json(task), indent=indent, ensure_ascii=False)


def save_task(task: Task, path: str | os.PathLike[str]) -> Path:
    """Write ``task`` as a .json file (validated first, so a saved task always loads)."""
    _validate(task, "Task")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(task_json(task) + "\n", encoding="utf-8")
    return path
