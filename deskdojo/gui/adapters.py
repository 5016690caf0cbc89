"""The panel's one door to the parts it drives: run control, demo recording, replay, sandboxes.

Every call the panel makes into another part goes through this module, so a renamed
function elsewhere is fixed here once.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any, Callable, Mapping

from deskdojo.core.errors import RecordError
from deskdojo.core.records import from_json
from deskdojo.core.types import Provenance, Task

# --- run control -------------------------------------------------------------------


def read_status(run_dir: str | Path) -> dict[str, Any] | None:
    from deskdojo.core.control import read_status as read

    return read(run_dir)


def status_is_live(status: Mapping[str, Any] | None) -> bool:
    from deskdojo.core.control import status_is_live as live

    return live(status)


def send_control(run_dir: str | Path, command: str) -> int:
    from deskdojo.core.control import send_control as send

    return send(run_dir, command)


def evolve_argv(*, run_dir: str, model: str, provider: str, sandboxes: int, iterations: int,
                python: str = sys.executable) -> list[str]:
    """The command that starts a training run (``deskdojo evolve``) in a child process."""
    return [python, "-m", "deskdojo.cli", "evolve", "--run-dir", run_dir, "--model", model,
            "--provider", provider, "--sandboxes", str(sandboxes), "--iterations", str(iterations)]


# --- tasks -------------------------------------------------------------------------


def task_from_dict(data: Mapping[str, Any]) -> Task:
    return from_json(Task, dict(data), where="task")


def new_instruction_task(instruction: str) -> Task:
    """A task with only an instruction, typed by a person who is about to demonstrate it."""
    instruction = instruction.strip()
    if not instruction:
        raise RecordError("type an instruction for the demonstration (what you are about to do)")
    return Task(id=f"demo-{time.strftime('%Y%m%d-%H%M%S')}", instruction=instruction,
                family="demonstration", provenance=Provenance.DEMONSTRATION)


# --- sandboxes ---------------------------------------------------------------------


def start_sandbox(provider: str, screen: tuple[int, int] | None = None) -> Any:
    """A fresh sandbox (blocking: call it on a worker thread)."""
    from deskdojo.vm.config import SandboxConfig
    from deskdojo.vm.pool import make_provider

    values: dict[str, Any] = {"provider": provider}
    if screen is not None:
        values["screen"] = screen
    return make_provider(SandboxConfig(**values)).start()


def sandbox_socket(sandbox: Any) -> str | None:
    """The guest socket a live view can open, or None for sandboxes without one (fake, host)."""
    return sandbox.control_socket


def attach_socket(name: str, socket_path: str) -> Any:
    """A sandbox object for a guest socket another process owns; closing it leaves it running."""
    from deskdojo.vm.client import GuestClient
    from deskdojo.vm.sandboxes import AttachedSandbox, trust_for_socket

    client = GuestClient(socket_path, timeout=30.0, **trust_for_socket(socket_path))
    screen = tuple(client.health()["screen"])
    return AttachedSandbox(name, client, screen)


def read_elements(sandbox: Any) -> Any:
    """The sandbox's element listing now (blocking: call it on a worker thread)."""
    return sandbox.elements()


# --- demonstrations and replay -----------------------------------------------------


def demo_recorder(sandbox: Any, task: Task, demos_dir: str | Path, name: str | None = None) -> Any:
    """Reset ``sandbox`` to ``task`` and start recording: ``.act(action)``, ``.finish(name)``
    (blocking: call it on a worker thread)."""
    from deskdojo.agent.demos import DemoRecorder

    return DemoRecorder(sandbox, task, demos_dir, name=name)


def run_replay(demo_dir: str | Path, sandbox: Any, *,
               on_step: Callable[[int, Any, Any, float], None] | None = None,
               until_diverge: bool = False) -> Any:
    """``replay(demo_dir, sandbox, on_step=...)``: a report with ``.steps``,
    ``.first_divergent`` and ``.verdict``."""
    from deskdojo.agent.replay import replay

    return replay(demo_dir, sandbox, until_diverge=until_diverge, on_step=on_step)
