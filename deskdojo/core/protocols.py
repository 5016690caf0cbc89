"""The interfaces between the parts. Each has a fake in the package and a contract test.

Lifecycle of a Sandbox (the contract ``tests/contract_sandbox.py`` checks):

* a provider returns a sandbox that is already started and answers ``observe()``;
* ``reset(task)`` restores the pristine desktop, runs the task's setup steps and
  returns the first Observation; it may be called any number of times;
* ``act(action)`` never raises for a model mistake (off-screen, invalid): it returns
  ``ActResult(ok=False, error=...)`` and the next Observation carries the error;
* any infrastructure failure raises ``SandboxError`` (``SandboxDied`` when the
  sandbox is gone); after that only ``close()`` is valid;
* ``close()`` is idempotent and leaves no process or container behind.

File paths are absolute or start with ``~/`` (the sandbox's home folder, wherever the
provider keeps it); reset restores the home folder to its pristine contents.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping, Protocol, Sequence, runtime_checkable

from deskdojo.core.actions import Action
from deskdojo.core.types import Observation, Task, Trajectory, Verdict, Window


@dataclass(frozen=True, slots=True)
class ActResult:
    """What happened to one action: ``ok=False`` carries the reason for the model."""

    ok: bool
    error: str | None = None
    elapsed_ms: float = 0.0


@dataclass(frozen=True, slots=True)
class ExecResult:
    """A command run inside the sandbox (argv, never a shell string from a model)."""

    returncode: int | None
    stdout: str = ""
    stderr: str = ""
    timed_out: bool = False
    truncated: bool = False
    elapsed_ms: float = 0.0
    pid: int | None = None  # set for background commands


@runtime_checkable
class Sandbox(Protocol):
    """A desktop the agent can see and act in (see the module docstring's contract)."""

    name: str
    screen_size: tuple[int, int]

    def reset(self, task: Task | None = None) -> Observation: ...
    def observe(self) -> Observation: ...
    def act(self, action: Action) -> ActResult: ...
    def screenshot_png(self) -> bytes: ...
    def exec(self, argv: Sequence[str], *, timeout: float = 30.0, output_cap: int = 65536,
             background: bool = False) -> ExecResult: ...
    def read_file(self, path: str) -> bytes: ...
    def write_file(self, path: str, data: bytes) -> int: ...
    def windows(self) -> tuple[Window, ...]: ...
    def app_state(self) -> Mapping[str, Any]: ...
    def alive(self) -> bool: ...
    def close(self) -> None: ...


@dataclass(frozen=True, slots=True)
class Decision:
    """One policy output: the raw text, its tokens and sampling log-probs, the parsed action."""

    text: str
    action: Action | None
    token_ids: tuple[int, ...] = ()
    logprobs: tuple[float, ...] = ()
    parse_error: str | None = None


@runtime_checkable
class Policy(Protocol):
    """Maps observations to decisions, for a batch of sandboxes at once."""

    policy_id: str

    def act(self, observations: Sequence[Observation], tasks: Sequence[Task],
            histories: Sequence[Sequence[Decision]]) -> list[Decision]: ...


@runtime_checkable
class Judge(Protocol):
    """Decides what a trajectory achieved. ``sandbox`` is there to probe final state."""

    judge_id: str

    def judge(self, task: Task, trajectory: Trajectory, sandbox: Sandbox | None) -> Verdict: ...


@runtime_checkable
class TaskSource(Protocol):
    """Proposes tasks and learns from verdicts (the curriculum)."""

    def propose(self, n: int) -> list[Task]: ...
    def update(self, verdicts: Sequence[Verdict]) -> None: ...


@runtime_checkable
class WorldProbe(Protocol):
    """Takes snapshots of a sandbox's world state (app states, windows, files) so that
    each step can record what its action changed. The rollout calls ``snapshot`` after
    reset and after every action and stores ``delta(before, after)`` in ``Step.delta``;
    the judge labels steps from those deltas."""

    def snapshot(self, sandbox: Sandbox) -> Mapping[str, Any]: ...
    def delta(self, before: Mapping[str, Any], after: Mapping[str, Any]) -> Mapping[str, Any]: ...
