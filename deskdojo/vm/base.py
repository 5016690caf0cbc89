"""What every sandbox shares: the step bookkeeping, task setup, and the guest-backed sandbox.

Providers differ only in where the desktop lives (a container, host processes, PNG
files); ``GuestSandbox`` talks to the guest control server that docker and xvfb run.
"""

from __future__ import annotations

import base64
import re
import secrets
import time
from typing import Any, Callable, Mapping, Sequence

from deskdojo.core.actions import Action, action_from_dict, describe, off_screen_error
from deskdojo.core.elements import ElementList
from deskdojo.core.errors import SandboxDied, SandboxError
from deskdojo.core.protocols import ActResult, ExecResult
from deskdojo.core.types import Observation, SetupStep, Task, Window

SETUP_WINDOW_TIMEOUT_S = 15.0


def run_setup(sandbox: Any, task: Task) -> None:
    """Run a task's setup steps in a freshly reset sandbox; a failing step is a SandboxError."""
    for number, step in enumerate(task.setup):
        try:
            _run_setup_step(sandbox, step)
        except SandboxError as exc:
            raise type(exc)(f"task {task.id}: setup step {number} ({step.kind}) failed: {exc}") from exc


def _run_setup_step(sandbox: Any, step: SetupStep) -> None:
    args = step.args
    if step.kind == "launch":
        sandbox.exec(list(args["argv"]), background=True)
        if args.get("wait_window"):
            wait_for_window(sandbox, str(args["wait_window"]),
                            timeout=float(args.get("timeout", SETUP_WINDOW_TIMEOUT_S)))
    elif step.kind == "write_file":
        data = (base64.b64decode(args["content_b64"]) if "content_b64" in args
                else str(args.get("content", "")).encode())
        sandbox.write_file(str(args["path"]), data)
    elif step.kind == "run":
        result = sandbox.exec(list(args["argv"]), timeout=float(args.get("timeout", 30)))
        if result.returncode != 0:
            raise SandboxError(f"{args['argv']!r} exited {result.returncode}: "
                               f"{(result.stderr or result.stdout)[-300:]}")
    elif step.kind == "wait":
        time.sleep(float(args.get("seconds", 0.5)))
    elif step.kind == "web":
        sandbox.load_page(str(args["task"]), seed=int(args.get("seed", 0)),
                          episode_s=args.get("episode_s"))


def wait_for_window(sandbox: Any, title_pattern: str, *, timeout: float = 10.0) -> Window:
    """Poll the window list until a title matches ``title_pattern`` (a regex)."""
    pattern = re.compile(title_pattern)
    deadline = time.monotonic() + timeout
    while True:
        for window in sandbox.windows():
            if pattern.search(window.title) or pattern.search(window.wm_class):
                return window
        if time.monotonic() > deadline:
            raise SandboxError(f"no window matching {title_pattern!r} appeared within {timeout:g} s")
        time.sleep(0.05)


def act_in_process(sandbox: Any, action: Action, perform: Callable[[Action], None]) -> ActResult:
    """Step bookkeeping for sandboxes that act in this process (fake, host): refuse
    off-screen points as a model mistake, otherwise ``perform`` the action."""
    started = time.perf_counter()
    sandbox._step += 1
    error = off_screen_error(action, *sandbox.screen_size)
    if error:
        sandbox._last_error = f"{describe(action)}: {error}"
        return ActResult(ok=False, error=error)
    perform(action)
    sandbox._last_error = None
    return ActResult(ok=True, elapsed_ms=(time.perf_counter() - started) * 1000)


class ClosesOnExit:
    """``with sandbox:`` closes it, whatever happens inside."""

    def __enter__(self):
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class GuestSandbox(ClosesOnExit):
    """A sandbox whose desktop runs ``deskdojo.vm.guest`` behind a unix socket.

    Subclasses say how the desktop is started and stopped (``_is_running``, ``_stop``).
    """

    def __init__(self, name: str, client: Any, screen_size: tuple[int, int], *,
                 on_close: Callable[[], None] | None = None):
        self.name = name
        self.client = client
        self.screen_size = screen_size
        self._on_close = on_close
        self._step = 0
        self._last_error: str | None = None
        self._closed = False
        self._dead_reason: str | None = None
        self.page_load: Any = None  # the PageLoad of the page this reset's task loaded (see shown_task)

    @property
    def control_socket(self) -> str | None:
        return self.client.socket_path

    # --- the step loop -------------------------------------------------------

    def reset(self, task: Task | None = None) -> Observation:
        self._guard()
        self._call(self.client.reset)
        self._step = 0
        self._last_error = None
        self.page_load = None
        if task is not None:
            run_setup(self, task)
        return self.observe()

    def observe(self) -> Observation:
        self._guard()
        frame = self._call(self.client.screenshot)
        return Observation(screenshot=frame, screen_size=self.screen_size, step=self._step,
                           action_error=self._last_error, timestamp=time.time())

    def act(self, action: Action) -> ActResult:
        self._guard()
        result = self._call(self.client.act, action)
        self._step += 1
        self._last_error = None if result.ok else f"{describe(action)}: {result.error}"
        return result

    def note_invalid(self, error: str) -> None:
        """Record a model output that did not parse: the next Observation carries it."""
        self._step += 1
        self._last_error = error

    # --- probes and tools ----------------------------------------------------

    def screenshot_png(self) -> bytes:
        self._guard()
        return self._call(self.client.screenshot_png)

    def exec(self, argv: Sequence[str], *, timeout: float = 30.0, output_cap: int = 65536,
             background: bool = False) -> ExecResult:
        self._guard()
        return self._call(self.client.exec, list(argv), timeout=timeout,
                          output_cap=output_cap, background=background)

    def read_file(self, path: str) -> bytes:
        self._guard()
        return self._call(self.client.read_file, path)

    def write_file(self, path: str, data: bytes) -> int:
        self._guard()
        return self._call(self.client.write_file, path, data)

    def windows(self) -> tuple[Window, ...]:
        self._guard()
        return tuple(self._call(self.client.windows))

    def app_state(self) -> Mapping[str, Any]:
        self._guard()
        return self._call(self.client.app_state)

    def elements(self, sources: Sequence[str] | None = None) -> ElementList:
        """The UI elements on screen now (the guest remembers this listing: actions that
        name an element resolve against it)."""
        self._guard()
        return self._call(self.client.elements, sources)

    def health(self) -> dict[str, Any]:
        self._guard()
        return self._call(self.client.health)

    def load_page(self, task: str, *, seed: int = 0, episode_s: float | None = None) -> Any:
        """Load MiniWoB++ page ``task`` with ``seed`` (web image); a checked ``PageLoad``."""
        self._guard()
        self.page_load = self._call(self.client.web_load, task, seed=seed, episode_s=episode_s)
        return self.page_load

    def page_state(self) -> Any:
        """The loaded page's checked ``PageState`` (None when no page is loaded)."""
        self._guard()
        return self._call(self.client.web_state)

    # --- recording (demonstrations) -----------------------------------------------

    def start_recording(self) -> None:
        """From now on the guest keeps every action performed in this sandbox (by anyone:
        the panel, ``deskdojo sandbox act``, a recorder) with the screen before it."""
        self._guard()
        self._call(self.client.set_recording, True)

    def stop_recording(self) -> list[tuple[Action, bytes]]:
        """Stop recording; the recorded actions in order, each with the PNG of the screen
        just before it."""
        self._guard()
        self._call(self.client.set_recording, False)
        recorded = self._call(self.client.recording)
        if recorded.get("dropped"):
            raise SandboxError(f"the guest recorded only the first {recorded['limit']} actions and dropped "
                               f"{recorded['dropped']}; record shorter demonstrations")
        return [(action_from_dict(entry["action"]), self._call(self.client.recorded_frame, entry["index"]))
                for entry in recorded["actions"]]

    def alive(self) -> bool:
        if self._closed or self._dead_reason:
            return False
        if not self._is_running():
            self._dead_reason = "its process or container exited"
            return False
        try:
            self.client.health()
        except SandboxError as exc:
            self._dead_reason = str(exc)
            return False
        return True

    # --- lifecycle -----------------------------------------------------------

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        try:
            self.client.close()
        finally:
            try:
                self._stop()
            finally:
                if self._on_close is not None:
                    self._on_close()

    def __repr__(self) -> str:
        state = "closed" if self._closed else ("dead" if self._dead_reason else "live")
        return f"<{type(self).__name__} {self.name} {self.screen_size[0]}x{self.screen_size[1]} {state}>"

    # --- for subclasses ------------------------------------------------------

    def _is_running(self) -> bool:
        return True

    def _stop(self) -> None:
        pass

    def _guard(self) -> None:
        if self._closed:
            raise SandboxError(f"sandbox {self.name} is closed")
        if self._dead_reason:
            raise SandboxDied(f"sandbox {self.name} died: {self._dead_reason}")

    def _call(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except SandboxDied as exc:
            self._dead_reason = str(exc)
            if not self._is_running():
                self._dead_reason = f"{exc} (its process or container exited)"
            raise SandboxDied(f"sandbox {self.name} died: {exc}") from exc


# --- names ----------------------------------------------------------------------


def new_sandbox_name(prefix: str = "dojo") -> str:
    return f"{prefix}-{secrets.token_hex(4)}"
