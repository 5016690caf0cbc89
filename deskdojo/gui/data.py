"""What the panel reads from a run directory, without Qt: cheap to poll, forgiving of gaps.

A run is written by another process while the panel watches it, so every reader here
accepts missing files and keys (the view then says what is missing) and JSONL files
are tailed by byte offset: a poll reads only what was appended since the last one.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

from deskdojo.core.actions import Action, action_from_dict
from deskdojo.core.elements import ElementList
from deskdojo.core.errors import ActionError, RecordError, RunDirError


class JsonlTail:
    """Follows an append-only JSONL file: ``poll()`` returns only the complete new lines.

    A torn last line (a writer cut off mid-line) is left for the next poll; a file that
    shrank (rewritten or truncated) is read again from the start.
    """

    def __init__(self, path: str | os.PathLike[str]):
        self.path = Path(path)
        self.offset = 0
        self.records: list[dict[str, Any]] = []
        self._by_trajectory: dict[str, dict[str, Any]] = {}
        self._indexed = 0

    def latest_by_trajectory(self) -> dict[str, dict[str, Any]]:
        """The newest record per ``trajectory_id``, kept up to date as lines arrive (a
        browser asks once per listed trajectory per refresh: no scan per question)."""
        self.poll()
        for record in self.records[self._indexed:]:
            if isinstance(record.get("trajectory_id"), str):
                self._by_trajectory[record["trajectory_id"]] = record
        self._indexed = len(self.records)
        return self._by_trajectory

    def poll(self) -> list[dict[str, Any]]:
        try:
            size = self.path.stat().st_size
        except FileNotFoundError:
            return []
        if size < self.offset:
            self.offset, self.records = 0, []
            self._by_trajectory, self._indexed = {}, 0
        if size == self.offset:
            return []
        with open(self.path, "rb") as f:
            f.seek(self.offset)
            data = f.read(size - self.offset)
        end = data.rfind(b"\n")
        if end < 0:
            return []
        self.offset += end + 1
        fresh = []
        for raw in data[:end].split(b"\n"):
            if not raw.strip():
                continue
            try:
                value = json.loads(raw)
            except json.JSONDecodeError:
                continue  # a corrupt line must not take the panel down; the run's own readers report it
            if isinstance(value, dict):
                fresh.append(value)
        self.records.extend(fresh)
        return fresh


def read_json(path: Path) -> Any | None:
    """A JSON file's value, or None when it is missing or half-written."""
    try:
        return json.loads(path.read_text())
    except (FileNotFoundError, json.JSONDecodeError, UnicodeDecodeError, IsADirectoryError):
        return None


def load_elements(path: Path | None) -> ElementList | None:
    """An element listing recorded with a frame, or None when there is none or it does not parse."""
    if path is None:
        return None
    data = read_json(path)
    try:
        return ElementList.from_json(data) if data is not None else None
    except RecordError:
        return None


def parse_action(data: Any) -> Action | None:
    """An action dict as an Action; None for null or malformed ones (shown as text instead)."""
    if not isinstance(data, Mapping):
        return None
    try:
        return action_from_dict(data)
    except ActionError:
        return None


# --- trajectories ----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class StepView:
    """One step as the browser shows it; ``delta`` and ``label`` are there when recorded."""

    index: int
    action: Action | None
    action_error: str | None
    model_text: str
    frame: Path | None
    delta: Mapping[str, Any] | None
    raw: Mapping[str, Any]
    elements: Path | None = None  # the element listing shown with this frame (frames/NNNN.elements.json)


@dataclass(frozen=True, slots=True)
class TrajectoryView:
    id: str
    folder: Path
    task_id: str
    end: str | None
    error: str | None
    steps: tuple[StepView, ...]
    task: Mapping[str, Any] | None  # from task.json (demos) when present


def load_trajectory(folder: str | os.PathLike[str]) -> TrajectoryView:
    """A trajectory folder as plain views. Steps are read as dicts so that extra keys
    a newer writer adds (such as ``delta``) are shown instead of rejected."""
    folder = Path(folder)
    if not (folder / "steps.jsonl").exists() and not (folder / "trajectory.json").exists():
        raise RunDirError(f"{folder} is not a trajectory folder (no steps.jsonl); pick a folder "
                          f"under <run>/trajectories/ or <run>/demos/")
    tail = JsonlTail(folder / "steps.jsonl")
    tail.poll()
    steps = []
    for number, raw in enumerate(tail.records):
        frame = raw.get("frame")
        frame_path = folder / frame if isinstance(frame, str) else folder / "frames" / f"{number:04d}.png"
        prompt = raw.get("prompt") if isinstance(raw.get("prompt"), Mapping) else {}
        listed = prompt.get("elements")
        elements_path = (folder / listed if isinstance(listed, str)
                         else frame_path.with_name(frame_path.name.removesuffix(".png") + ".elements.json"))
        steps.append(StepView(
            index=int(raw.get("index", number)), action=parse_action(raw.get("action")),
            action_error=raw.get("action_error"), model_text=str(raw.get("model_text") or ""),
            frame=frame_path if frame_path.exists() else None,
            delta=raw.get("delta") if isinstance(raw.get("delta"), Mapping) else None, raw=raw,
            elements=elements_path if elements_path.is_file() else None))
    header = read_json(folder / "trajectory.json") or {}
    task = read_json(folder / "task.json")
    return TrajectoryView(id=str(header.get("id") or folder.name), folder=folder,
                          task_id=str(header.get("task_id") or (task or {}).get("id") or ""),
                          end=header.get("end"), error=header.get("error"), steps=tuple(steps),
                          task=task if isinstance(task, Mapping) else None)


# --- the run -----------------------------------------------------------------------


def is_run_dir(path: str | os.PathLike[str]) -> bool:
    return (Path(path) / "config.json").exists()


def list_runs(root: str | os.PathLike[str]) -> list[Path]:
    """Run folders directly under ``root``, newest first."""
    root = Path(root)
    if not root.is_dir():
        return []
    runs = [p for p in root.iterdir() if p.is_dir() and is_run_dir(p)]
    return sorted(runs, key=lambda p: (p / "config.json").stat().st_mtime, reverse=True)


class RunReader:
    """The panel's view of one run directory; each reader is cheap enough to call per second."""

    def __init__(self, path: str | os.PathLike[str]):
        self.path = Path(path)
        if not self.path.is_dir():
            raise RunDirError(f"{self.path} does not exist; pick a run folder (one with config.json)")
        self.metrics = JsonlTail(self.path / "metrics.jsonl")
        self.tasks = JsonlTail(self.path / "tasks.jsonl")
        self.verdicts = JsonlTail(self.path / "verdicts.jsonl")
        self.disagreements = JsonlTail(self.path / "disagreements.jsonl")  # the hybrid judge's

    @property
    def name(self) -> str:
        return self.path.name

    def config(self) -> dict[str, Any]:
        data = read_json(self.path / "config.json")
        return data.get("config", {}) if isinstance(data, dict) else {}

    def curriculum(self) -> dict[str, Any] | None:
        data = read_json(self.path / "curriculum.json")
        return data if isinstance(data, dict) else None

    def status(self) -> dict[str, Any] | None:
        data = read_json(self.path / "status.json")
        return data if isinstance(data, dict) else None

    def trajectory_ids(self) -> list[str]:
        return self._folders("trajectories")

    def demo_ids(self) -> list[str]:
        return self._folders("demos")

    def _folders(self, sub: str) -> list[str]:
        root = self.path / sub
        return sorted(p.name for p in root.iterdir() if p.is_dir()) if root.is_dir() else []

    def verdict_for(self, trajectory_id: str) -> dict[str, Any] | None:
        return self.verdicts.latest_by_trajectory().get(trajectory_id)

    def disagreement_for(self, trajectory_id: str) -> dict[str, Any] | None:
        """Where the checks and the VLM judge disagreed on this trajectory (hybrid judge, mode both)."""
        return self.disagreements.latest_by_trajectory().get(trajectory_id)

    def task_records(self) -> list[dict[str, Any]]:
        """tasks.jsonl lines as ``{"task": {...}, "admitted", "reason", "time"}``; bare Task
        lines (as older writers append) are wrapped as admitted with no reason."""
        self.tasks.poll()
        rows = []
        for record in self.tasks.records:
            if "task" in record and isinstance(record["task"], Mapping):
                rows.append(record)
            elif "instruction" in record:
                rows.append({"task": record, "admitted": True, "reason": None, "time": None})
        return rows

    def task_by_id(self, task_id: str) -> dict[str, Any] | None:
        for row in reversed(self.task_records()):
            if row["task"].get("id") == task_id:
                return dict(row["task"])
        return None


# --- curriculum as a grid ------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class HeatCell:
    rate: float | None
    attempts: int
    successes: int


@dataclass(frozen=True, slots=True)
class Heatmap:
    families: tuple[str, ...]
    levels: tuple[int, ...]
    cells: Mapping[tuple[str, int], HeatCell]
    current_level: Mapping[str, int]


def curriculum_heatmap(curriculum: Mapping[str, Any] | None,
                       metrics: list[Mapping[str, Any]] | None = None) -> Heatmap:
    """Families x levels of success rate, from curriculum.json; failing that, from the
    newest metrics line's ``success_by_family``."""
    cells: dict[tuple[str, int], HeatCell] = {}
    current: dict[str, int] = {}
    families_data = (curriculum or {}).get("families")
    if isinstance(families_data, Mapping) and families_data:
        for family, info in families_data.items():
            if not isinstance(info, Mapping):
                continue
            if isinstance(info.get("level"), int):
                current[family] = info["level"]
            for level, cell in (info.get("levels") or {}).items():
                try:
                    level_number = int(level)
                except (TypeError, ValueError):
                    continue
                attempts = int(cell.get("attempts") or 0)
                successes = int(cell.get("successes") or 0)
                rate = cell.get("rate")
                if rate is None and attempts:
                    rate = successes / attempts
                cells[(family, level_number)] = HeatCell(rate, attempts, successes)
    else:
        for line in reversed(metrics or []):
            by_family = line.get("success_by_family")
            if isinstance(by_family, Mapping) and by_family:
                for family, levels in by_family.items():
                    for level, rate in (levels or {}).items():
                        try:
                            cells[(family, int(level))] = HeatCell(rate, 0, 0)
                        except (TypeError, ValueError):
                            continue
                break
    families = tuple(sorted({f for f, _ in cells} | set(current)))
    levels = tuple(sorted({lv for _, lv in cells} | set(current.values())))
    return Heatmap(families, levels, cells, current)


def metric_series(lines: list[Mapping[str, Any]], key: str) -> tuple[list[float], list[float]]:
    """(iterations, values) of one metric, skipping lines where it is missing or null."""
    xs, ys = [], []
    for number, line in enumerate(lines):
        value = line.get(key)
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            continue
        iteration = line.get("iteration", number)
        xs.append(float(iteration if isinstance(iteration, (int, float)) else number))
        ys.append(float(value))
    return xs, ys


def load_task_file(path: str | os.PathLike[str]) -> dict[str, Any]:
    """A task JSON file (a Task record, or a tasks.jsonl row with ``task``) as a dict."""
    data = read_json(Path(path))
    if isinstance(data, Mapping) and isinstance(data.get("task"), Mapping):
        data = data["task"]
    if not isinstance(data, Mapping) or "instruction" not in data:
        raise RecordError(f"{path} is not a task JSON file (expected an object with an "
                          f"'instruction'); export one from a run's tasks.jsonl")
    return dict(data)
