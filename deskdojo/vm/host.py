"""The host desktop provider: act on the user's real screen. Opt-in only.

It refuses to start unless ``i_understand_this_controls_my_desktop`` is set, and keeps
a fail-safe: if the pointer sits in a screen corner when an action is about to run,
the action is refused and the sandbox stops (move the mouse into a corner to stop the
agent, as with pyautogui's FAILSAFE). It never runs commands or touches files: those
endpoints exist only inside real sandboxes.
"""

from __future__ import annotations

import io
import os
import time
from typing import Any, Mapping, Sequence

from deskdojo.core.actions import Action
from deskdojo.core.elements import ElementList, SourceReport
from deskdojo.core.errors import ConfigError, SandboxError
from deskdojo.core.protocols import ActResult, ExecResult
from deskdojo.core.types import Observation, Task, Window
from deskdojo.vm.base import ClosesOnExit, act_in_process
from deskdojo.vm.config import SandboxConfig

OPT_IN_FLAG = "--i-understand-this-controls-my-desktop"
FAILSAFE_MARGIN = 2


class FailSafeTriggered(SandboxError):
    """The user moved the pointer into a screen corner to stop the agent."""


class HostSandbox(ClosesOnExit):
    """The user's own X display as a Sandbox (no exec, no files)."""

    def __init__(self, display: str):
        import mss

        from deskdojo.vm.guest.executor import Executor
        from deskdojo.vm.guest.xwindows import WindowLister

        self.name = f"host{display}"
        self.control_socket: str | None = None  # the user's own screen: watched directly
        self.display = display
        self._executor = Executor(display)
        self._grabber = mss.MSS(display=display)
        self._windows = WindowLister(display)
        monitor = self._grabber.monitors[0]
        self.screen_size = (monitor["width"], monitor["height"])
        self._step = 0
        self._last_error: str | None = None
        self._closed = False

    def _guard(self) -> None:
        if self._closed:
            raise SandboxError(f"sandbox {self.name} is closed")

    def _check_failsafe(self) -> None:
        x, y = self._executor.pointer_position()
        width, height = self.screen_size
        near_x = x <= FAILSAFE_MARGIN or x >= width - 1 - FAILSAFE_MARGIN
        near_y = y <= FAILSAFE_MARGIN or y >= height - 1 - FAILSAFE_MARGIN
        if near_x and near_y:
            self.close()
            raise FailSafeTriggered(f"fail-safe: the pointer is in a screen corner ({x}, {y}); "
                                    f"the host sandbox stopped. Move it away and start again.")

    def reset(self, task: Task | None = None) -> Observation:
        self._guard()
        if task is not None and task.setup:
            raise SandboxError("the host desktop runs no setup steps; use a docker or xvfb sandbox")
        self._step = 0
        self._last_error = None
        return self.observe()

    def observe(self) -> Observation:
        from deskdojo.vm.client import bgrx_to_rgb

        self._guard()
        shot = self._grabber.grab(self._grabber.monitors[0])
        frame = bgrx_to_rgb(shot.raw, shot.width, shot.height)
        return Observation(screenshot=frame, screen_size=self.screen_size,
                           step=self._step, action_error=self._last_error, timestamp=time.time())

    def act(self, action: Action) -> ActResult:
        self._guard()
        self._check_failsafe()
        if getattr(action, "element", None) is not None:  # no listing here to resolve it against
            self._step += 1
            self._last_error = "the host desktop lists no elements; give x and y instead of an element"
            return ActResult(ok=False, error=self._last_error)
        return act_in_process(self, action, self._executor.execute)

    def screenshot_png(self) -> bytes:
        from PIL import Image

        buf = io.BytesIO()
        Image.fromarray(self.observe().screenshot).save(buf, format="PNG", compress_level=1)
        return buf.getvalue()

    def exec(self, argv: Sequence[str], *, timeout: float = 30.0, output_cap: int = 65536,
             background: bool = False) -> ExecResult:
        raise SandboxError("the host desktop provider never runs commands; use a sandbox")

    def read_file(self, path: str) -> bytes:
        raise SandboxError("the host desktop provider never reads files; use a sandbox")

    def write_file(self, path: str, data: bytes) -> int:
        raise SandboxError("the host desktop provider never writes files; use a sandbox")

    def windows(self) -> tuple[Window, ...]:
        self._guard()
        return tuple(Window(**w) for w in self._windows.list())

    def app_state(self) -> Mapping[str, Any]:
        return {"apps": {}}

    def elements(self, sources: Sequence[str] | None = None) -> ElementList:
        """None: the host desktop runs no guest, so no element source (and no element actions)."""
        why = SourceReport(ok=False, error="the host desktop provider has no element sources; use a sandbox")
        return ElementList(elements=(), sources={name: why for name in (sources or ("tk",))})

    def alive(self) -> bool:
        return not self._closed

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._executor.close()
        self._windows.close()
        self._grabber.close()



class HostProvider:
    def __init__(self, config: SandboxConfig | None = None):
        self.config = config or SandboxConfig(provider="host")
        if not self.config.i_understand_this_controls_my_desktop:
            raise ConfigError("the host provider moves YOUR mouse and types on YOUR screen; "
                              f"it runs only with {OPT_IN_FLAG} (config key "
                              "i_understand_this_controls_my_desktop: true)")

    def start(self, name: str | None = None) -> HostSandbox:
        display = os.environ.get("DISPLAY")
        if not display:
            raise SandboxError("the host provider needs $DISPLAY (an X session)")
        return HostSandbox(display)
