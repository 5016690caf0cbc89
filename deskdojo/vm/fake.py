"""The fake provider: replays PNG frames, for unit tests of the parts above the sandbox.

Each accepted action advances to the next frame (cycling), so "did the screen change"
logic has something to see. It keeps files in memory and knows three commands
(``true``, ``false``, ``echo``); any other program is "not found", as in a real sandbox.
"""

from __future__ import annotations

import io
import time
from dataclasses import replace
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from deskdojo.core.actions import Action, Click, Scroll, describe
from deskdojo.core.elements import Element, ElementList, SourceReport
from deskdojo.core.errors import GuestRequestError, SandboxDied, SandboxError
from deskdojo.core.protocols import ActResult, ExecResult
from deskdojo.core.types import Observation, Task, Window
from deskdojo.vm.base import ClosesOnExit, act_in_process, new_sandbox_name, run_setup
from deskdojo.vm.config import SandboxConfig
from deskdojo.vm.guest.elements.collect import ElementRefused, lookup, relocate

MAX_FILE_BYTES = 16 * 1024 * 1024
FAKE_HOME = "/home/fake"


def synthetic_frames(width: int, height: int, count: int = 4) -> list[np.ndarray]:
    """Distinct frames: a grey desktop with a coloured square that moves each frame."""
    frames = []
    for i in range(count):
        frame = np.full((height, width, 3), 40 + 10 * i, dtype=np.uint8)
        size = max(8, min(width, height) // 8)
        x = (i * size) % max(1, width - size)
        frame[size:2 * size, x:x + size] = (200, 60 + 40 * i % 190, 30)
        frames.append(frame)
    return frames


def synthetic_elements(width: int, height: int, count: int = 4) -> list[tuple[Element, ...]]:
    """Each synthetic frame's element listing: its coloured square, as a button."""
    size = max(8, min(width, height) // 8)
    return [(Element(id=0, role="button", name="square", box=((i * size) % max(1, width - size), size, size, size),
                     states=frozenset({"enabled"}), window="fake desktop", source="tk"),)
            for i in range(count)]


def load_frames(folder: str | Path) -> list[np.ndarray]:
    from PIL import Image

    paths = sorted(Path(folder).glob("*.png"))
    if not paths:
        raise SandboxError(f"fake provider: no PNG frames in {folder}")
    frames = [np.asarray(Image.open(p).convert("RGB")) for p in paths]
    shapes = {f.shape for f in frames}
    if len(shapes) != 1:
        raise SandboxError(f"fake provider: frames in {folder} differ in size: {sorted(shapes)}")
    return frames


class FakeSandbox(ClosesOnExit):
    """Implements the Sandbox protocol without a desktop.

    ``frame_elements`` (one tuple of Elements per frame; empty by default) is what
    ``elements()`` lists on each frame; ``set_elements`` fixes one listing for every frame.
    Actions naming an element resolve here as in a guest: against the last listing,
    re-checked against the current frame's elements.
    """

    def __init__(self, frames: Sequence[np.ndarray], name: str | None = None, *,
                 frame_elements: Sequence[Sequence[Element]] | None = None):
        if not frames:
            raise SandboxError("FakeSandbox needs at least one frame")
        self.frames = list(frames)
        height, width = self.frames[0].shape[:2]
        self.screen_size = (width, height)
        self.name = name or new_sandbox_name("fake")
        self.control_socket: str | None = None  # nothing to watch from another process
        self.actions: list[Action] = []
        self.files: dict[str, bytes] = {}
        self.state: dict[str, Any] = {}
        self._frame = 0
        self._step = 0
        self._last_error: str | None = None
        self._closed = False
        self._dead = False
        self.frame_elements = [tuple(e) for e in frame_elements] if frame_elements else [()]
        self.fixed_elements: tuple[Element, ...] | None = None
        self.last_listing: ElementList | None = None
        self._listings = 0

    def _guard(self) -> None:
        if self._closed:
            raise SandboxError(f"sandbox {self.name} is closed")
        if self._dead:
            raise SandboxDied(f"sandbox {self.name} died: killed")

    def reset(self, task: Task | None = None) -> Observation:
        self._guard()
        self._frame = self._step = 0
        self._last_error = None
        self.actions.clear()
        self.files.clear()
        self.state.clear()
        if task is not None:
            run_setup(self, task)
        return self.observe()

    def observe(self) -> Observation:
        self._guard()
        return Observation(screenshot=self.frames[self._frame].copy(),
                           screen_size=self.screen_size, step=self._step,
                           action_error=self._last_error, timestamp=time.time())

    def act(self, action: Action) -> ActResult:
        self._guard()
        element_id = getattr(action, "element", None)
        if element_id is None:
            return act_in_process(self, action, self._advance)
        try:
            element = relocate(lookup(self.last_listing, element_id),
                               [{**e.to_json(), "box": e.box, "states": e.states} for e in self._shown()])
        except ElementRefused as refusal:
            self._step += 1
            self._last_error = f"{describe(action)}: {refusal}"
            return ActResult(ok=False, error=str(refusal))
        x, y = element.center
        resolved = replace(action, x=x, y=y) if isinstance(action, (Click, Scroll)) else action
        result = act_in_process(self, resolved, self._advance)
        return replace(result, resolved=resolved, element=element) if result.ok else result

    def _shown(self) -> tuple[Element, ...]:
        if self.fixed_elements is not None:
            return self.fixed_elements
        return self.frame_elements[self._frame % len(self.frame_elements)]

    def set_elements(self, elements: Sequence[Element] | None) -> None:
        """List ``elements`` on every frame from now on (None: each frame's own again)."""
        self.fixed_elements = None if elements is None else tuple(elements)

    def elements(self, sources: Sequence[str] | None = None) -> ElementList:
        self._guard()
        shown = tuple(sorted(self._shown(), key=lambda e: e.id))
        self._listings += 1
        self.last_listing = ElementList(
            elements=shown, listing=self._listings,
            sources={name: SourceReport(ok=True, count=len(shown)) for name in (sources or ("tk",))})
        return self.last_listing

    def _advance(self, action: Action) -> None:
        self.actions.append(action)
        self._frame = (self._frame + 1) % len(self.frames)

    def note_invalid(self, error: str) -> None:
        self._step += 1
        self._last_error = error

    def screenshot_png(self) -> bytes:
        from PIL import Image

        self._guard()
        buf = io.BytesIO()
        Image.fromarray(self.frames[self._frame]).save(buf, format="PNG", compress_level=1)
        return buf.getvalue()

    def exec(self, argv: Sequence[str], *, timeout: float = 30.0, output_cap: int = 65536,
             background: bool = False) -> ExecResult:
        self._guard()
        if not argv:
            raise GuestRequestError("exec needs a non-empty argv", 400)
        program = argv[0]
        if background:
            return ExecResult(returncode=None, pid=4242)
        if program == "true":
            return ExecResult(returncode=0)
        if program == "false":
            return ExecResult(returncode=1)
        if program == "echo":
            out = " ".join(argv[1:]) + "\n"
            return ExecResult(returncode=0, stdout=out[:output_cap], truncated=len(out) > output_cap)
        raise GuestRequestError(f"exec: program {program!r} not found (the fake knows only "
                                f"true, false and echo)", 400)

    @staticmethod
    def _expand(path: str) -> str:
        return FAKE_HOME + path[1:] if path == "~" or path.startswith("~/") else path

    def read_file(self, path: str) -> bytes:
        self._guard()
        path = self._expand(path)
        if path not in self.files:
            raise GuestRequestError(f"no such file: {path}", 404)
        return self.files[path]

    def write_file(self, path: str, data: bytes) -> int:
        self._guard()
        path = self._expand(path)
        if not path.startswith("/"):
            raise GuestRequestError(f"path must be absolute: {path}", 400)
        if len(data) > MAX_FILE_BYTES:
            raise GuestRequestError(f"{len(data)} bytes is over the {MAX_FILE_BYTES}-byte limit", 413)
        self.files[path] = bytes(data)
        return len(data)

    def windows(self) -> tuple[Window, ...]:
        self._guard()
        return ()

    def app_state(self) -> Mapping[str, Any]:
        self._guard()
        return {"apps": dict(self.state)}

    def alive(self) -> bool:
        return not (self._closed or self._dead)

    def kill(self) -> None:
        """Simulate the sandbox dying (for fault tests of the parts above)."""
        self._dead = True

    def close(self) -> None:
        self._closed = True



class FakeProvider:
    def __init__(self, config: SandboxConfig | None = None):
        self.config = config or SandboxConfig(provider="fake")

    def start(self, name: str | None = None) -> FakeSandbox:
        if self.config.fake_frames:
            frames = load_frames(self.config.fake_frames)
            return FakeSandbox(frames, name=name)
        frames = synthetic_frames(*self.config.screen)
        return FakeSandbox(frames, name=name, frame_elements=synthetic_elements(*self.config.screen))
