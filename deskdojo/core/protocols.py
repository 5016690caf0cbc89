"""The interfaces between the parts. Each has a fake in the package and a contract test.

Lifecycle of a Sandbox (the contract ``tests/test_sandbox_contract.py`` checks):

* a provider returns a sandbox that is already started and answers ``observe()``;
* ``reset(task)`` restores the pristine desktop, runs the task's setup steps and
  returns the first Observation; it may be called any number of times;
* ``act(action)`` never raises for a model mistake (off-screen, invalid, an unknown or
  stale element id): it returns ``ActResult(ok=False, error=...)`` and the next
  Observation carries the error;
* ``elements(sources)`` lists the UI elements on screen now (every source when None);
  an action that names an element resolves against the last listing when it runs;
* any infrastructure failure raises ``SandboxError`` (``SandboxDied`` when the
  sandbox is gone); after that only ``close()`` is valid;
* ``close()`` is idempotent and leaves no process or container behind.

File paths are absolute or start with ``~/`` (the sandbox's home folder, wherever the
provider keeps it); reset restores the home folder to its pristine contents.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Mapping, Protocol, Sequence, runtime_checkable

from deskdojo.core.actions import Action
from deskdojo.core.elements import Element, ElementList
from deskdojo.core.errors import SandboxError
from deskdojo.core.types import Observation, Task, Trajectory, Verdict, Window


@dataclass(frozen=True, slots=True)
class ActResult:
    """What happened to one action: ``ok=False`` carries the reason for the model.

    An action that named an element comes back ``resolved`` (the action with the point
    it was performed at) with the ``element`` as it was on screen then (role, name, box),
    so records keep both; both are None for actions that named none.
    """

    ok: bool
    error: str | None = None
    elapsed_ms: float = 0.0
    resolved: Action | None = None
    element: Element | None = None


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
    control_socket: str | None  # where a viewer (the panel) can watch it; None: nowhere

    def reset(self, task: Task | None = None) -> Observation: ...
    def observe(self) -> Observation: ...
    def act(self, action: Action) -> ActResult: ...
    def screenshot_png(self) -> bytes: ...
    def exec(self, argv: Sequence[str], *, timeout: float = 30.0, output_cap: int = 65536,
             background: bool = False) -> ExecResult: ...
    def read_file(self, path: str) -> bytes: ...
    def write_file(self, path: str, data: bytes) -> int: ...
    def windows(self) -> tuple[Window, ...]: ...
    def elements(self, sources: Sequence[str] | None = None) -> ElementList: ...
    def app_state(self) -> Mapping[str, Any]: ...
    def alive(self) -> bool: ...
    def close(self) -> None: ...


def shown_task(sandbox: Any, task: Task) -> Task:
    """``task`` as its sandbox shows it: a MiniWoB++ task's instruction is its page's own
    utterance, known only once the task's setup loaded the page (the Task carries a
    stand-in until then). Every other task, or a sandbox that loads no pages, is unchanged.
    The policy's prompt, the learner's and a demo's all use this one."""
    page = getattr(sandbox, "page_load", None)  # GuestSandbox keeps its last reset's PageLoad
    web = next((step for step in task.setup if step.kind == "web"), None)
    if web is None or page is None:
        return task
    if page.task != web.args.get("task") or page.seed != int(web.args.get("seed", 0)):
        raise SandboxError(f"task {task.id}: the sandbox shows the page {page.task!r} seed {page.seed}, "
                           f"not the task's (was it reset to another task?)")
    return dataclasses.replace(task, instruction=page.utterance)


@dataclass(frozen=True, slots=True)
class Decision:
    """One policy output: the raw text, its tokens and sampling log-probs, the parsed action.
    ``temperature`` is the T the log-probs are ``log_softmax(logits / T)`` of (1 when
    decoding greedily); the rollout stores it so training scores the tokens the same way."""

    text: str
    action: Action | None
    token_ids: tuple[int, ...] = ()
    logprobs: tuple[float, ...] = ()
    parse_error: str | None = None
    temperature: float | None = None
    element_name: str | None = None  # the name of the element the action named, as its table showed it
    element_place: tuple[str, tuple[int, int] | None, tuple[int, int]] | None = None  # observation.place_of


@runtime_checkable
class Policy(Protocol):
    """Maps observations to decisions, for a batch of sandboxes at once.

    * ``act`` returns one Decision per observation, in order; an answer that does not
      parse is a Decision with ``action=None`` and ``parse_error``, never an exception.
    * ``history_k``: how many screens a prompt shows. With ``history_k`` > 1 the rollout
      hands, per sandbox, a window of the last ``history_k`` Observations (oldest first,
      fewer at the start of an episode) instead of the current Observation.
    * ``observation``: the observation mode (``deskdojo.core.elements.OBSERVATION_MODES``);
      in modes that carry elements the rollout puts the screen's element listing on
      each Observation.
    * ``set_greedy(True)`` switches to greedy decoding (held-out evaluation),
      ``set_greedy(False)`` back to the policy's own sampling.
    * ``rng_state()`` is where the sampling stream stands (picklable);
      ``set_rng_state(state)`` continues it, so a resumed run samples what it would have.

    ``tests/test_policy_contract.py`` checks this for every implementation.
    """

    policy_id: str
    history_k: int
    observation: str

    def act(self, observations: Sequence[Observation | Sequence[Observation]], tasks: Sequence[Task],
            histories: Sequence[Sequence[Decision]]) -> list[Decision]: ...
    def set_greedy(self, greedy: bool) -> None: ...
    def rng_state(self) -> Any: ...
    def set_rng_state(self, state: Any) -> None: ...


class DeterministicPolicy:
    """The Policy members a policy that never samples has: one screen per prompt, greedy
    by nature, no random stream to save (scripted and replay policies, test doubles)."""

    history_k = 1
    observation = "screenshot"

    def set_greedy(self, greedy: bool) -> None:
        pass

    def rng_state(self) -> Any:
        return None

    def set_rng_state(self, state: Any) -> None:
        pass


@runtime_checkable
class Judge(Protocol):
    """Decides what a trajectory achieved. ``sandbox`` is there to probe final state.

    What the agent left behind is a Verdict (failed checks carry evidence). A sandbox that
    cannot be probed raises ``SandboxError`` (the episode is an error, never scored); the
    judge's own bugs raise ``JudgeError`` naming the task."""

    judge_id: str

    def judge(self, task: Task, trajectory: Trajectory, sandbox: Sandbox | None) -> Verdict: ...


@runtime_checkable
class TaskSource(Protocol):
    """Proposes tasks and learns from verdicts (the curriculum). ``state_dict`` is what a
    checkpoint keeps (JSON-able); ``load_state_dict`` continues from it."""

    def propose(self, n: int) -> list[Task]: ...
    def update(self, verdicts: Sequence[Verdict]) -> None: ...
    def state_dict(self) -> dict[str, Any]: ...
    def load_state_dict(self, state: Mapping[str, Any]) -> None: ...


@runtime_checkable
class Pool(Protocol):
    """N sandboxes by slot. ``check_health`` replaces the dead ones (their episodes were
    errors already) and returns the slots it replaced; ``close`` ends them all."""

    def __len__(self) -> int: ...
    def __getitem__(self, index: int) -> Sandbox: ...
    def check_health(self) -> list[int]: ...
    def close(self) -> None: ...


@runtime_checkable
class WorldProbe(Protocol):
    """Takes snapshots of a sandbox's world state (app states, windows, files) so that
    each step can record what its action changed. The rollout calls ``snapshot`` after
    reset and after every action and stores ``delta(before, after)`` in ``Step.delta``;
    the judge labels steps from those deltas."""

    def snapshot(self, sandbox: Sandbox) -> Mapping[str, Any]: ...
    def delta(self, before: Mapping[str, Any], after: Mapping[str, Any]) -> Mapping[str, Any]: ...
