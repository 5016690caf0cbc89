"""A run's live status and its control file: how the panel (or a person) watches and
steers a training run without talking to its process.

The run writes ``status.json`` (atomically, a few times a second at most) and polls
``control.json``; anyone may write a command there with ``send_control``. Each command
carries a sequence number, so a command is acted on once even if the file is read many
times, and a stale command left from an earlier run is ignored on resume.

``status.json``::

    {"state": "starting|running|paused|stopping|finished|failed", "pid": int,
     "iteration": int, "env_steps": int, "updated": float,
     "sandboxes": [{"name": str, "socket": str | null, "task_id": str, "instruction": str,
                    "step": int, "last_action": {action dict} | null,
                    "trajectory": "trajectories/<id>"}]}
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any, Mapping

from deskdojo.core.errors import RunDirError
from deskdojo.core.rundir import write_atomic

STATUS_FILE = "status.json"
CONTROL_FILE = "control.json"
COMMANDS = ("pause", "resume", "stop")
STATES = ("starting", "running", "paused", "stopping", "finished", "failed")


def write_status(run_dir: str | os.PathLike[str], status: Mapping[str, Any]) -> None:
    """Replace ``status.json`` atomically (readers never see half a file)."""
    state = status.get("state")
    if state not in STATES:
        raise RunDirError(f"status.state must be one of {', '.join(STATES)}, got {state!r}")
    body = {"updated": time.time(), **status}
    write_atomic(Path(run_dir) / STATUS_FILE, json.dumps(body, sort_keys=True).encode(), fsync=False)


def read_status(run_dir: str | os.PathLike[str]) -> dict[str, Any] | None:
    """The run's last status, or None when it has written none (or it is unreadable)."""
    try:
        data = json.loads((Path(run_dir) / STATUS_FILE).read_bytes())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def status_is_live(status: Mapping[str, Any] | None) -> bool:
    """Whether the process that wrote ``status`` still runs (a killed run leaves 'running')."""
    if not status or status.get("state") in ("finished", "failed"):
        return False
    pid = status.get("pid")
    if not isinstance(pid, int) or pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _read_control(run_dir: str | os.PathLike[str]) -> dict[str, Any]:
    try:
        data = json.loads((Path(run_dir) / CONTROL_FILE).read_bytes())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def send_control(run_dir: str | os.PathLike[str], command: str) -> int:
    """Ask the run in ``run_dir`` to pause, resume or stop; returns the command's number."""
    if command not in COMMANDS:
        raise RunDirError(f"unknown run command {command!r}; use one of: {', '.join(COMMANDS)}")
    if not Path(run_dir).is_dir():
        raise RunDirError(f"{run_dir} is not a run directory")
    seq = int(_read_control(run_dir).get("seq", 0)) + 1
    body = {"command": command, "seq": seq, "time": time.time()}
    write_atomic(Path(run_dir) / CONTROL_FILE, json.dumps(body).encode(), fsync=False)
    return seq


class ControlReader:
    """Polled by the run: returns each new command once. Commands already in the file when
    the reader starts are skipped (they belong to an earlier process)."""

    def __init__(self, run_dir: str | os.PathLike[str]):
        self.run_dir = Path(run_dir)
        self.seen = int(_read_control(run_dir).get("seq", 0))

    def poll(self) -> str | None:
        data = _read_control(self.run_dir)
        seq = int(data.get("seq", 0))
        if seq <= self.seen:
            return None
        self.seen = seq
        command = data.get("command")
        return command if command in COMMANDS else None
