"""Checkpoints and resume: what an evolve run must remember to continue after a
``kill -9`` at any moment with nothing lost and nothing counted twice.

A checkpoint holds the learner (trainable weights, optimizer, replay, sampling stream),
the task plan's state, the RNG states and the cursor: iterations done, env steps and
wall time spent, the ids of every trajectory counted so far and how many lines of each
log belonged to counted work. On resume, whatever was written after the checkpoint
belongs to an iteration that will be redone: log lines past the cursor are dropped and
uncounted trajectory folders move to ``superseded/`` (kept for inspection, never read).
"""

from __future__ import annotations

import json
import pickle
import random
import shutil
import sys
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from deskdojo.core.errors import RecordError, RunDirError
from deskdojo.core.rundir import JsonlFile, RunDir, write_atomic

HELDOUT_FILE = "heldout.jsonl"
SUPERSEDED_DIR = "superseded"


@dataclass(slots=True)
class Cursor:
    """Where the run is: everything up to ``iteration`` is counted."""

    iteration: int = 0
    env_steps: int = 0
    eval_env_steps: int = 0
    wall_s: float = 0.0
    trajectory_ids: list[str] = field(default_factory=list)
    logged_task_ids: list[str] = field(default_factory=list)
    lines: dict[str, int] = field(default_factory=dict)  # log name -> lines that are counted
    resumes: int = 0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Any, where: str = "cursor") -> "Cursor":
        """A cursor from its JSON; a missing or wrong field is a RecordError naming it."""
        if not isinstance(data, dict):
            raise RecordError(f"{where}: expected a JSON object, got {type(data).__name__}")
        known = [f.name for f in fields(cls)]
        for key in data:
            if key not in known:
                raise RecordError(f"{where}: unknown field {key!r} (known: {', '.join(known)})")
        for key, value in data.items():
            if key == "wall_s":
                ok = isinstance(value, (int, float)) and not isinstance(value, bool) and value >= 0
                wanted = "a number >= 0"
            elif key in ("trajectory_ids", "logged_task_ids"):
                ok, wanted = isinstance(value, list) and all(isinstance(v, str) for v in value), "a list of strings"
            elif key == "lines":
                ok = isinstance(value, dict) and all(isinstance(n, int) and not isinstance(n, bool) and n >= 0
                                                     for n in value.values())
                wanted = "an object of line counts"
            else:
                ok, wanted = isinstance(value, int) and not isinstance(value, bool) and value >= 0, "an integer >= 0"
            if not ok:
                raise RecordError(f"{where}: {key}: expected {wanted}, got {value!r}")
        return cls(**data)


def count_lines(path: Path) -> int:
    return sum(1 for _ in JsonlFile(path).read()) if path.exists() else 0


# --- random number generators ------------------------------------------------------


def rng_states() -> dict[str, Any]:
    """python, numpy and (when loaded) torch generator states."""
    import numpy as np

    states: dict[str, Any] = {"python": random.getstate(), "numpy": np.random.get_state()}
    torch = sys.modules.get("torch")
    if torch is not None:
        states["torch"] = torch.random.get_rng_state()
    return states


def set_rng_states(states: dict[str, Any]) -> None:
    import numpy as np

    random.setstate(states["python"])
    np.random.set_state(states["numpy"])
    torch = sys.modules.get("torch")  # loaded by the policy, which is built before this runs
    if "torch" in states and torch is not None:
        torch.random.set_rng_state(states["torch"])


def seed_everything(seed: int) -> None:
    import numpy as np

    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch = sys.modules.get("torch")
    if torch is not None:
        torch.manual_seed(seed)


# --- writing and reading checkpoints -----------------------------------------------


def write_checkpoint(run: RunDir, cursor: Cursor, *, learner: Any, plan_state: dict[str, Any],
                     rng: dict[str, Any]) -> Path:
    """Atomically write ``checkpoints/<iteration>``; a folder of that number from an
    earlier attempt (a stop mid-way that re-checkpointed) is replaced."""

    def fill(folder: Path) -> None:
        learner.save(folder / "learner")
        write_atomic(folder / "plan.json", json.dumps(plan_state).encode())
        write_atomic(folder / "rng.pkl", pickle.dumps(rng))
        write_atomic(folder / "cursor.json", json.dumps(cursor.to_dict()).encode())

    final = run.path / "checkpoints" / f"{cursor.iteration:06d}"
    if final.exists():
        shutil.rmtree(final)
    return run.write_checkpoint(cursor.iteration, fill)


@dataclass(slots=True)
class Restored:
    cursor: Cursor
    plan_state: dict[str, Any]
    rng: dict[str, Any]
    learner_folder: Path
    checkpoint: Path


def read_checkpoint(folder: Path) -> Restored:
    """The checkpoint in ``folder``; a damaged or missing file is a RunDirError that names
    it and says how to resume from the checkpoint before (nothing is deleted)."""
    cursor_path = folder / "cursor.json"
    try:
        cursor = Cursor.from_dict(_read_json(cursor_path), where=str(cursor_path))
        plan_state = _read_json(folder / "plan.json")
        if not isinstance(plan_state, dict):
            raise RecordError(f"{folder / 'plan.json'}: expected a JSON object, got {type(plan_state).__name__}")
        rng = _read_rng(folder / "rng.pkl")
        if not (folder / "learner").is_dir():
            raise RecordError(f"{folder / 'learner'}: missing")
    except RecordError as exc:
        earlier = [p for p in folder.parent.iterdir()
                   if p.name.isdigit() and p.name < folder.name and (p / "COMPLETE").exists()]
        advice = (f"move it aside (mv {folder} {folder}.damaged) to resume from the checkpoint before it"
                  if earlier else "it is the run's only checkpoint: start a new run")
        raise RunDirError(f"{exc}; checkpoint {folder.name} is damaged: {advice} "
                          f"(nothing in the run folder was changed)") from None
    return Restored(cursor=cursor, plan_state=plan_state, rng=rng, learner_folder=folder / "learner",
                    checkpoint=folder)


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise RecordError(f"{path}: missing") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        if not path.read_bytes().strip():
            raise RecordError(f"{path}: empty") from None
        raise RecordError(f"{path}: not valid JSON ({exc})") from None


def _read_rng(path: Path) -> dict[str, Any]:
    try:
        rng = pickle.loads(path.read_bytes())  # written by this host's own run (checkpoints are not shared)
    except FileNotFoundError:
        raise RecordError(f"{path}: missing") from None
    except Exception as exc:  # unpickling a damaged file raises almost anything
        raise RecordError(f"{path}: not a saved RNG state ({type(exc).__name__}: {exc})") from None
    if not isinstance(rng, dict) or not {"python", "numpy"} <= set(rng):
        raise RecordError(f"{path}: not a saved RNG state (expected python and numpy states)")
    return rng


def check_resumable(run: RunDir) -> None:
    """Everything a resume reads before its first sandbox starts: the latest checkpoint and
    every log line. A problem is a RunDirError or RecordError naming the file and line."""
    checkpoint = run.latest_checkpoint()
    if checkpoint is not None:
        read_checkpoint(checkpoint)
    for name in ("tasks.jsonl", "verdicts.jsonl", "metrics.jsonl", HELDOUT_FILE):
        path = run.path / name
        try:
            for number, record in JsonlFile(path).read_numbered():
                iteration = record.get("iteration", 0)
                if name in ("metrics.jsonl", HELDOUT_FILE) and (isinstance(iteration, bool)
                                                               or not isinstance(iteration, int)):
                    raise RecordError(f"{path}:{number}: iteration: expected an integer, got {iteration!r}")
        except RecordError as exc:
            raise RecordError(f"{exc}; repair or delete that line (keep a copy), then resume "
                              f"(nothing in the run folder was changed)") from None


def discard_uncounted(run: RunDir, cursor: Cursor) -> dict[str, int]:
    """Make the run directory agree with ``cursor``: drop log lines written after it and
    move trajectory folders it does not count to ``superseded/``. Returns what was removed."""
    removed: dict[str, int] = {}
    counted = set(cursor.trajectory_ids)
    for name in ("tasks.jsonl", "verdicts.jsonl", "metrics.jsonl", HELDOUT_FILE):
        path = run.path / name
        if not path.exists():
            continue
        records = list(JsonlFile(path).read())
        if name == "verdicts.jsonl":
            keep = [r for r in records if r.get("trajectory_id") in counted]
        elif name in ("metrics.jsonl", HELDOUT_FILE):
            keep = [r for r in records if int(r.get("iteration", 0)) <= cursor.iteration]
            keep = keep[:cursor.lines.get(name, len(keep))]
        else:
            keep = records[:cursor.lines.get(name, 0)]
        removed[name] = len(records) - len(keep)
        if removed[name] or path.read_bytes()[-1:] not in (b"", b"\n"):
            body = b"".join(json.dumps(r, ensure_ascii=False, separators=(",", ":")).encode() + b"\n" for r in keep)
            write_atomic(path, body)
    moved = 0
    root = run.path / "trajectories"
    for folder in sorted(root.iterdir()) if root.exists() else []:
        if folder.is_dir() and folder.name not in counted:
            target = run.path / SUPERSEDED_DIR / f"r{cursor.resumes:03d}-{folder.name}"
            target.parent.mkdir(exist_ok=True)
            if target.exists():
                shutil.rmtree(target)
            folder.rename(target)
            moved += 1
    removed["trajectories"] = moved
    return removed
