"""A pool of N sandboxes: parallel start, health checks, replacing the dead, clean shutdown.

A sandbox that dies mid-episode raises ``SandboxError`` to whoever was using it (the
episode ends as ``error``) and the pool puts a fresh one in its slot. Reset tries the
fast path (guest reset) first and re-creates the sandbox when that fails. Closing the
pool (also on Ctrl-C and at interpreter exit) leaves no container or Xvfb behind.
"""

from __future__ import annotations

import atexit
import secrets
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Callable, Iterator, TypeVar

from deskdojo.core.errors import SandboxError
from deskdojo.core.types import Observation, Task
from deskdojo.vm.config import SandboxConfig

T = TypeVar("T")


def make_provider(config: SandboxConfig) -> Any:
    """The provider object for ``config.provider`` (imports only that provider)."""
    if config.provider == "docker":
        from deskdojo.vm.docker import DockerProvider
        return DockerProvider(config)
    if config.provider == "xvfb":
        from deskdojo.vm.xvfb import XvfbProvider
        return XvfbProvider(config)
    if config.provider == "fake":
        from deskdojo.vm.fake import FakeProvider
        return FakeProvider(config)
    from deskdojo.vm.host import HostProvider
    return HostProvider(config)


class SandboxPool:
    def __init__(self, config: SandboxConfig, size: int, *, provider: Any | None = None):
        if size < 1:
            raise ValueError(f"a pool needs at least one sandbox, got {size}")
        if config.provider == "host" and size != 1:
            raise ValueError("the host desktop provider has exactly one screen: use size 1")
        self.config = config
        self.size = size
        self.provider = provider or make_provider(config)
        self.pool_id = secrets.token_hex(3)
        self.replaced = 0
        self._slots: list[Any] = []
        self._generation = [0] * size
        self._lock = threading.Lock()
        self._closed = False

    # --- lifecycle -----------------------------------------------------------

    def _name(self, index: int) -> str:
        return f"dojo-{self.pool_id}-{index}-{self._generation[index]}"

    def start(self) -> "SandboxPool":
        atexit.register(self.close)
        started: list[Any] = [None] * self.size
        errors: list[BaseException] = []

        def start_one(i: int) -> None:
            try:
                started[i] = self.provider.start(self._name(i))
            except BaseException as exc:  # collected and re-raised below
                errors.append(exc)

        with ThreadPoolExecutor(max_workers=min(self.size, 8)) as ex:
            list(ex.map(start_one, range(self.size)))
        self._slots = started
        if errors:
            self.close()
            raise errors[0]
        return self

    def close(self) -> None:
        with self._lock:
            if self._closed:
                return
            self._closed = True
            slots, self._slots = self._slots, []
        atexit.unregister(self.close)
        live = [s for s in slots if s is not None]
        if not live:
            return
        try:
            with ThreadPoolExecutor(max_workers=min(len(live), 8)) as ex:
                list(ex.map(_close_quietly, live))
        except RuntimeError:  # at interpreter exit no new threads start: close them one by one
            for sandbox in live:
                _close_quietly(sandbox)

    def __enter__(self) -> "SandboxPool":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- access --------------------------------------------------------------

    def __len__(self) -> int:
        return len(self._slots)

    def __getitem__(self, index: int) -> Any:
        return self._slots[index]

    def __iter__(self) -> Iterator[Any]:
        return iter(list(self._slots))

    # --- faults --------------------------------------------------------------

    def replace(self, index: int) -> Any:
        """Close the sandbox in slot ``index`` (dead or not) and start a fresh one there."""
        if self._closed:
            raise SandboxError("the pool is closed")
        old = self._slots[index]
        _close_quietly(old)
        self._generation[index] += 1
        self._slots[index] = self.provider.start(self._name(index))
        self.replaced += 1
        return self._slots[index]

    def call(self, index: int, fn: Callable[[Any], T]) -> T:
        """Run ``fn(sandbox)``; if the sandbox fails, replace it and re-raise the error."""
        try:
            return fn(self._slots[index])
        except SandboxError:
            if not self._slots[index].alive():
                self.replace(index)
            raise

    def check_health(self) -> list[int]:
        """Replace every sandbox that no longer answers; returns the replaced slots."""
        dead = [i for i, s in enumerate(self._slots) if not s.alive()]
        for i in dead:
            self.replace(i)
        return dead

    # --- reset ---------------------------------------------------------------

    def reset(self, index: int, task: Task | None = None) -> Observation:
        """Fast reset; on failure re-create the sandbox and reset the new one."""
        try:
            return self._slots[index].reset(task)
        except SandboxError:
            return self.replace(index).reset(task)

    def reset_all(self, task: Task | None = None) -> list[Observation]:
        with ThreadPoolExecutor(max_workers=min(len(self._slots), 8)) as ex:
            return list(ex.map(lambda i: self.reset(i, task), range(len(self._slots))))


def _close_quietly(sandbox: Any) -> None:
    if sandbox is None:
        return
    try:
        sandbox.close()
    except Exception:  # closing must go on for the others
        pass
