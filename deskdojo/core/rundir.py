"""The run directory: the one on-disk format every part reads and writes.

Append-only JSONL (one record per line, flushed and fsynced per append) and atomic
checkpoint folders (written under a temporary name, then renamed). A run killed at
any moment leaves at most one torn last line per file, which readers skip and the
next writer truncates, and never a half-written checkpoint.
"""

from __future__ import annotations

import hashlib
import json
import os
import threading
import shutil
import time
from pathlib import Path
from typing import Any, Callable, Iterator, TypeVar

from deskdojo.core.errors import RecordError, RunDirError
from deskdojo.core.records import from_json, to_json
from deskdojo.core.types import Step, Trajectory

T = TypeVar("T")

RUN_FORMAT_VERSION = 1
JSONL_FILES = ("tasks.jsonl", "verdicts.jsonl", "metrics.jsonl")


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_atomic(path: Path, data: bytes, *, fsync: bool = True) -> None:
    """Write a file so readers see the old or the new content, never a mix. ``fsync=False``
    for files rewritten many times a second whose loss in a crash does not matter."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}-{threading.get_ident()}")
    with open(tmp, "wb") as f:
        f.write(data)
        if fsync:
            f.flush()
            os.fsync(f.fileno())
    os.replace(tmp, path)


class JsonlFile:
    """An append-only JSON-lines file that survives being killed mid-write."""

    def __init__(self, path: str | os.PathLike[str], *, fsync: bool = True):
        self.path = Path(path)
        self.fsync = fsync
        self._repaired = False

    def _repair_torn_tail(self) -> None:
        """Drop a last line without its newline (a write cut off by a kill)."""
        self._repaired = True
        if not self.path.exists():
            return
        with open(self.path, "rb+") as f:
            size = f.seek(0, os.SEEK_END)
            if size == 0:
                return
            f.seek(size - 1)
            if f.read(1) == b"\n":
                return
            # Walk back to the last newline; keep everything up to and including it.
            pos = size - 1
            chunk = 4096
            while pos > 0:
                start = max(0, pos - chunk)
                f.seek(start)
                block = f.read(pos - start)
                idx = block.rfind(b"\n")
                if idx >= 0:
                    f.truncate(start + idx + 1)
                    return
                pos = start
            f.truncate(0)

    def append(self, record: Any) -> None:
        if not self._repaired:
            self._repair_torn_tail()
        line = json.dumps(to_json(record), ensure_ascii=False, separators=(",", ":"))
        if "\n" in line:  # json.dumps never emits raw newlines; guard the format anyway
            raise RecordError(f"{self.path.name}: record serialised across lines")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path, "ab") as f:
            f.write(line.encode() + b"\n")
            f.flush()
            if self.fsync:
                os.fsync(f.fileno())

    def read(self) -> Iterator[dict[str, Any]]:
        """Every complete record. A malformed complete line is an error naming file:line."""
        for _number, value in self.read_numbered():
            yield value

    def read_numbered(self) -> Iterator[tuple[int, dict[str, Any]]]:
        """``(line number, record)`` for every complete record, as ``read`` checks them."""
        if not self.path.exists():
            return
        with open(self.path, "rb") as f:
            data = f.read()
        lines = data.split(b"\n")
        complete, tail = lines[:-1], lines[-1]  # tail is b"" or a torn last write
        del tail
        for number, raw in enumerate(complete, start=1):
            if not raw.strip():
                continue
            try:
                value = json.loads(raw)
            except json.JSONDecodeError as exc:
                raise RecordError(f"{self.path}:{number}: not valid JSON ({exc.msg}); "
                                  f"the file is corrupt beyond a torn last line") from None
            if not isinstance(value, dict):
                raise RecordError(f"{self.path}:{number}: expected a JSON object")
            yield number, value

    def read_as(self, cls: type[T]) -> list[T]:
        """Every complete record as ``cls``; errors name ``file:line: Class.field``."""
        records = []
        for number, value in self.read_numbered():
            try:
                records.append(from_json(cls, value))
            except RecordError as exc:
                raise RecordError(f"{self.path}:{number}: {exc}") from None
        return records


class TrajectoryWriter:
    """Writes one episode as it runs: ``frames/NNNN.png`` then a line in ``steps.jsonl``.

    The frame is written before the step that names it, so a step line never points at
    a missing frame. ``finish`` writes ``trajectory.json`` (the header and end reason).
    """

    def __init__(self, folder: str | os.PathLike[str], trajectory_id: str, task_id: str,
                 policy_id: str = ""):
        self.folder = Path(folder)
        (self.folder / "frames").mkdir(parents=True, exist_ok=True)
        self.trajectory_id = trajectory_id
        self.task_id = task_id
        self.policy_id = policy_id
        self.steps_file = JsonlFile(self.folder / "steps.jsonl")

    def write_frame(self, index: int, png: bytes) -> str:
        rel = f"frames/{index:04d}.png"
        write_atomic(self.folder / rel, png)
        return rel

    def write_elements(self, index: int, listing_json: bytes) -> str:
        """The element listing shown with frame ``index``, next to it: ``frames/NNNN.elements.json``."""
        rel = f"frames/{index:04d}.elements.json"
        write_atomic(self.folder / rel, listing_json)
        return rel

    def append_step(self, step: Step) -> None:
        self.steps_file.append(step)

    def finish(self, end: Any, error: str | None = None) -> Trajectory:
        steps = tuple(self.steps_file.read_as(Step))
        trajectory = Trajectory(id=self.trajectory_id, task_id=self.task_id, steps=(),
                                end=end, policy_id=self.policy_id, error=error)
        header = to_json(trajectory)
        del header["steps"]
        write_atomic(self.folder / "trajectory.json",
                     json.dumps(header, indent=1).encode())
        return Trajectory(id=trajectory.id, task_id=trajectory.task_id, steps=steps,
                          end=trajectory.end, policy_id=trajectory.policy_id,
                          error=trajectory.error)


def read_trajectory(folder: str | os.PathLike[str]) -> Trajectory:
    """Load a trajectory folder; an unfinished one (no header yet) has ``end=None``."""
    folder = Path(folder)
    steps = tuple(JsonlFile(folder / "steps.jsonl").read_as(Step))
    header_path = folder / "trajectory.json"
    if header_path.exists():
        try:
            header = json.loads(header_path.read_text())
        except json.JSONDecodeError as exc:
            raise RecordError(f"{header_path}: not valid JSON ({exc.msg})") from None
        if not isinstance(header, dict):
            raise RecordError(f"{header_path}: expected a JSON object, got {type(header).__name__}")
        header["steps"] = []
        try:
            base = from_json(Trajectory, header)
        except RecordError as exc:  # the file, then the field
            raise RecordError(f"{header_path}: {exc}") from None
        return Trajectory(id=base.id, task_id=base.task_id, steps=steps, end=base.end,
                          policy_id=base.policy_id, error=base.error)
    return Trajectory(id=folder.name, task_id="", steps=steps, end=None)


class RunDir:
    """``runs/<run-id>/``: config, JSONL logs, trajectories, checkpoints, demos."""

    def __init__(self, path: str | os.PathLike[str]):
        self.path = Path(path)

    @classmethod
    def create(cls, path: str | os.PathLike[str], config: dict[str, Any]) -> "RunDir":
        run = cls(path)
        if (run.path / "config.json").exists():
            raise RunDirError(f"{run.path} already holds a run; pick a new folder or resume it")
        for sub in ("trajectories", "checkpoints", "demos"):
            (run.path / sub).mkdir(parents=True, exist_ok=True)
        body = json.dumps(config, sort_keys=True, indent=1)
        record = {"format_version": RUN_FORMAT_VERSION,
                  "config_hash": hashlib.sha256(body.encode()).hexdigest()[:16],
                  "created_at": time.time(), "config": config}
        write_atomic(run.path / "config.json", json.dumps(record, indent=1).encode())
        return run

    @classmethod
    def open(cls, path: str | os.PathLike[str]) -> "RunDir":
        run = cls(path)
        if not (run.path / "config.json").exists():
            raise RunDirError(f"{run.path} is not a run directory (no config.json)")
        return run

    def config(self) -> dict[str, Any]:
        path = self.path / "config.json"
        try:
            data = json.loads(path.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise RunDirError(f"{path}: not valid JSON ({exc}); the run's config is damaged "
                              f"(an evolve run keeps a copy in config.yaml)") from None
        if not isinstance(data, dict) or not isinstance(data.get("config"), dict):
            raise RunDirError(f"{path}: expected an object with a 'config' mapping; the run's config "
                              f"is damaged (an evolve run keeps a copy in config.yaml)")
        if data.get("format_version") != RUN_FORMAT_VERSION:
            raise RunDirError(f"{self.path}: run format {data.get('format_version')} is not "
                              f"supported (this deskdojo reads {RUN_FORMAT_VERSION})")
        return data

    def jsonl(self, name: str) -> JsonlFile:
        if name not in JSONL_FILES:
            raise RunDirError(f"unknown run log {name!r} (known: {', '.join(JSONL_FILES)})")
        return JsonlFile(self.path / name)

    def trajectory_writer(self, trajectory_id: str, task_id: str, policy_id: str = "",
                          *, demo: bool = False) -> TrajectoryWriter:
        root = self.path / ("demos" if demo else "trajectories")
        return TrajectoryWriter(root / trajectory_id, trajectory_id, task_id, policy_id)

    def trajectory_ids(self, *, demo: bool = False) -> list[str]:
        root = self.path / ("demos" if demo else "trajectories")
        return sorted(p.name for p in root.iterdir() if p.is_dir()) if root.exists() else []

    # --- checkpoints ---------------------------------------------------------

    def write_checkpoint(self, number: int, fill: Callable[[Path], None]) -> Path:
        """Call ``fill(tmp_folder)`` then rename the folder to ``checkpoints/<number>``."""
        root = self.path / "checkpoints"
        root.mkdir(parents=True, exist_ok=True)
        final = root / f"{number:06d}"
        if final.exists():
            raise RunDirError(f"checkpoint {number} already exists in {root}")
        tmp = root / f".tmp-{number:06d}-{os.getpid()}"
        if tmp.exists():
            shutil.rmtree(tmp)
        tmp.mkdir()
        try:
            fill(tmp)
            write_atomic(tmp / "COMPLETE", str(time.time()).encode())
            os.rename(tmp, final)
            _fsync_dir(root)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        return final

    def checkpoints(self) -> list[Path]:
        """Complete checkpoints, oldest first (temporary folders are ignored)."""
        root = self.path / "checkpoints"
        if not root.exists():
            return []
        return sorted(p for p in root.iterdir()
                      if p.is_dir() and p.name.isdigit() and (p / "COMPLETE").exists())

    def latest_checkpoint(self) -> Path | None:
        found = self.checkpoints()
        return found[-1] if found else None
