"""The host's side of the guest control server: one persistent HTTP/1.1 connection over AF_UNIX.

Model mistakes come back as data (:class:`ActResult` with ``ok=False``); a sandbox
that stops answering raises :class:`~deskdojo.core.errors.SandboxDied` or
:class:`~deskdojo.core.errors.SandboxTimeout`.
"""

from __future__ import annotations

import dataclasses
import http.client
import json
import os
import socket
import threading
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from deskdojo.core.actions import Action, Wait, action_from_dict, action_to_dict
from deskdojo.core.elements import Element, ElementList
from deskdojo.core.errors import (
    ActionError, GuestRequestError, RecordError, SandboxDied, SandboxError, SandboxTimeout, SandboxTrustError,
)
from deskdojo.core.protocols import ActResult, ExecResult
from deskdojo.core.types import Window
from deskdojo.vm.folders import PeerCheck, check_socket_path, peer_credentials

if TYPE_CHECKING:
    import numpy as np

_EXEC_MARGIN_S = 10.0  # on top of a command's own timeout, for the server to kill and reply


#: The host sees one schema for results, whichever provider produced them.
WindowInfo = Window

__all__ = ["ActResult", "ExecResult", "GuestClient", "WindowInfo"]


def bgrx_to_rgb(buffer: bytes, width: int, height: int) -> "np.ndarray":
    """X's BGRX pixels as a contiguous (H, W, 3) RGB array (faster than a reversed view)."""
    import numpy as np

    bgrx = np.frombuffer(buffer, dtype=np.uint8).reshape(height, width, 4)
    rgb = np.empty((height, width, 3), dtype=np.uint8)
    rgb[..., 0] = bgrx[..., 2]
    rgb[..., 1] = bgrx[..., 1]
    rgb[..., 2] = bgrx[..., 0]
    return rgb


def _connect_unix(sock: socket.socket, path: str, timeout: float) -> None:
    """Connect, waiting up to ``timeout`` s for room in the server's listen queue.

    With a timeout set, a unix-socket connect fails at once with EAGAIN while the
    queue is full (a burst of connections the server has not accepted yet); it does
    not wait as a TCP connect would.
    """
    deadline = time.monotonic() + timeout
    while True:
        try:
            sock.connect(path)
            return
        except BlockingIOError:
            if time.monotonic() >= deadline:
                raise TimeoutError(f"the listen queue of {path} stayed full for {timeout:g} s") from None
            time.sleep(0.005)


class _UnixHTTPConnection(http.client.HTTPConnection):
    """HTTPConnection over a unix socket (no TCP_NODELAY: it is not a TCP socket).

    With ``socket_owner``, the path must be a real socket of that uid before connecting;
    with ``peer_check``, the process that accepted must pass it before a byte is sent."""

    def __init__(self, socket_path: str, timeout: float, *, socket_owner: int | None = None,
                 peer_check: PeerCheck | None = None) -> None:
        super().__init__("localhost", timeout=timeout)
        self.socket_path = socket_path
        self.socket_owner = socket_owner
        self.peer_check = peer_check

    def connect(self) -> None:
        if self.socket_owner is not None:
            check_socket_path(Path(self.socket_path), self.socket_owner)
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.settimeout(self.timeout)
            _connect_unix(sock, self.socket_path, self.timeout)
            if self.peer_check is not None:
                pid, uid = peer_credentials(sock)
                reason = self.peer_check(pid, uid)
                if reason is not None:
                    raise SandboxTrustError(f"refusing the guest server at {self.socket_path}: {reason}")
        except BaseException:
            sock.close()
            raise
        self.sock = sock


class _Response:
    __slots__ = ("body", "headers", "status")

    def __init__(self, status: int, headers: http.client.HTTPMessage, body: bytes) -> None:
        self.status, self.headers, self.body = status, headers, body

    def json(self) -> Any:
        return json.loads(self.body)


class GuestClient:
    """Talks to one sandbox's guest server at ``socket_path``. Thread-safe (one request at a time)."""

    def __init__(self, socket_path: str | os.PathLike[str], *, timeout: float = 30.0,
                 socket_owner: int | None = None, peer_check: PeerCheck | None = None) -> None:
        self.socket_path = os.fspath(socket_path)
        self.timeout = timeout
        self.socket_owner = socket_owner
        self.peer_check = peer_check
        self._lock = threading.Lock()
        self._connection: _UnixHTTPConnection | None = None
        self._used = False  # whether the open connection has already carried a request

    # --- plumbing --------------------------------------------------------------------

    def close(self) -> None:
        with self._lock:
            self._drop()

    def __enter__(self) -> GuestClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _drop(self) -> None:
        if self._connection is not None:
            self._connection.close()
        self._connection = None
        self._used = False

    def _died(self, what: str, error: BaseException) -> SandboxDied:
        return SandboxDied(f"the guest server at {self.socket_path} {what} ({type(error).__name__}: "
                           f"{error}); the sandbox has stopped or has not started")

    def _request(self, method: str, path: str, *, body: bytes | None = None,
                 content_type: str = "application/json", timeout: float | None = None) -> _Response:
        timeout = self.timeout if timeout is None else timeout
        with self._lock:
            for attempt in (1, 2):
                if self._connection is None:
                    self._connection = _UnixHTTPConnection(self.socket_path, timeout,
                                                           socket_owner=self.socket_owner,
                                                           peer_check=self.peer_check)
                    self._used = False
                    try:
                        self._connection.connect()
                    except SandboxTrustError:
                        self._drop()
                        raise
                    except (FileNotFoundError, ConnectionRefusedError, ConnectionResetError) as error:
                        self._drop()
                        raise self._died("is not reachable", error) from None
                    except OSError as error:
                        self._drop()
                        raise self._died("cannot be connected to", error) from None
                connection, reused = self._connection, self._used
                connection.timeout = timeout
                connection.sock.settimeout(timeout)  # type: ignore[union-attr]
                headers = {"Content-Type": content_type} if body is not None else {}
                try:
                    try:
                        connection.request(method, path, body=body, headers=headers)
                    except (BrokenPipeError, ConnectionResetError):
                        # The server may have refused the body early (413) and closed: its
                        # reply is still readable. Otherwise an idle connection was closed.
                        pass
                    response = connection.getresponse()
                    data = response.read()
                except TimeoutError as error:
                    self._drop()
                    raise SandboxTimeout(f"the guest server at {self.socket_path} did not answer "
                                         f"{method} {path} within {timeout:g} s") from error
                except (ConnectionError, http.client.HTTPException, OSError) as error:
                    self._drop()
                    if reused and attempt == 1:
                        continue  # the server closed an idle keep-alive connection: once more
                    raise self._died(f"dropped the connection during {method} {path}", error) from None
                self._used = True
                if response.will_close:
                    self._drop()
                return _Response(response.status, response.msg, data)
        raise AssertionError("unreachable")  # pragma: no cover

    def _call(self, method: str, path: str, payload: Any = None, *, timeout: float | None = None,
              ok_statuses: Sequence[int] = ()) -> Any:
        body = None if payload is None else json.dumps(payload).encode()
        response = self._request(method, path, body=body, timeout=timeout)
        if response.status >= 400 and response.status not in ok_statuses:
            raise self._error(method, path, response)
        return response.json()

    def _error(self, method: str, path: str, response: _Response) -> SandboxError:
        try:
            message = str(response.json()["error"])
        except (ValueError, KeyError, TypeError):
            message = response.body[:200].decode("utf-8", "replace") or "no message"
        if 400 <= response.status < 500:
            return GuestRequestError(f"{method} {path}: {message}", response.status)
        return SandboxError(f"the guest server failed {method} {path} ({response.status}): {message}")

    def _get_bytes(self, path: str) -> _Response:
        response = self._request("GET", path)
        if response.status >= 400:
            raise self._error("GET", path, response)
        return response

    # --- endpoints -------------------------------------------------------------------

    def health(self) -> dict[str, Any]:
        """``{"ok", "protocol", "version", "display", "screen": [w, h], "pid"}``."""
        return self._call("GET", "/v1/health")

    def wait_ready(self, timeout: float = 30.0) -> dict[str, Any]:
        """Poll health until the server answers; SandboxTimeout names the last problem."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                wait = max(0.5, min(5.0, deadline - time.monotonic()))
                return self._call("GET", "/v1/health", timeout=wait)
            except (SandboxDied, SandboxTimeout) as error:
                if time.monotonic() >= deadline:
                    raise SandboxTimeout(f"the guest server at {self.socket_path} was not ready within "
                                         f"{timeout:g} s: {error}") from None
                time.sleep(0.05)

    def screenshot_bgrx(self) -> tuple[bytes, int, int]:
        """The screen as X's raw BGRX bytes with its width and height (no copy, no convert:
        what a viewer that draws BGRX directly wants)."""
        response = self._get_bytes("/v1/screenshot?format=raw")
        pixel_format = response.headers.get("X-Pixel-Format", "BGRX")
        if pixel_format != "BGRX":
            raise SandboxError(f"the guest sent pixels as {pixel_format}; this client reads BGRX")
        return response.body, int(response.headers["X-Width"]), int(response.headers["X-Height"])

    def screenshot(self) -> np.ndarray:
        """The screen as an (H, W, 3) uint8 RGB array."""
        return bgrx_to_rgb(*self.screenshot_bgrx())

    def screenshot_png(self) -> bytes:
        return self._get_bytes("/v1/screenshot?format=png").body

    def act(self, action: Action) -> ActResult:
        """Perform one action; a refused or malformed action is ``ok=False``, not an exception."""
        timeout = self.timeout + action.seconds if isinstance(action, Wait) else None
        payload = self._call("POST", "/v1/act", {"action": action_to_dict(action)},
                             timeout=timeout, ok_statuses=(422,))
        if "error" in payload:
            return ActResult(ok=False, error=str(payload["error"]), elapsed_ms=0.0)
        resolved = element = None
        if "resolved" in payload:  # the action named an element: where it was performed
            try:
                resolved, element = action_from_dict(payload["resolved"]), Element.from_json(payload["element"])
            except (ActionError, RecordError, KeyError, TypeError, ValueError) as error:
                raise SandboxError(f"the guest resolved {action_to_dict(action)} into something "
                                   f"unreadable: {error}") from None
        return ActResult(ok=True, error=None, elapsed_ms=float(payload.get("elapsed_ms", 0.0)),
                         resolved=resolved, element=element)

    def elements(self, sources: Sequence[str] | None = None) -> ElementList:
        """The UI elements on screen now, from ``sources`` (every source when None); actions
        naming an element resolve against this listing until the next one."""
        query = "" if sources is None else f"?sources={quote(','.join(sources))}"
        payload = self._call("GET", f"/v1/elements{query}")
        try:
            return ElementList.from_json(payload)
        except RecordError as error:
            raise SandboxError(f"the guest's element listing is malformed: {error}") from None

    def exec(self, argv: Sequence[str], *, timeout: float = 30, output_cap: int = 65536,
             cwd: str | None = None, env: Mapping[str, str] | None = None,
             background: bool = False) -> ExecResult:
        """Run ``argv`` (no shell) in the sandbox; a hung command is killed at ``timeout`` s."""
        payload: dict[str, Any] = {"argv": list(argv), "timeout": timeout,
                                   "output_cap": output_cap, "background": background}
        if cwd is not None:
            payload["cwd"] = cwd
        if env is not None:
            payload["env"] = dict(env)
        result = self._call("POST", "/v1/exec", payload, timeout=timeout + _EXEC_MARGIN_S)
        if background:
            return ExecResult(returncode=None, stdout="", stderr="", truncated=False,
                              timed_out=False, elapsed_ms=0.0, pid=int(result["pid"]))
        return ExecResult(returncode=result["returncode"], stdout=result["stdout"],
                          stderr=result["stderr"], truncated=bool(result["truncated"]),
                          timed_out=bool(result["timed_out"]), elapsed_ms=float(result["elapsed_ms"]))

    def read_file(self, path: str) -> bytes:
        return self._get_bytes(f"/v1/files?path={quote(path)}").body

    def write_file(self, path: str, data: bytes) -> int:
        """Write ``data`` to ``path`` in the sandbox (parents created); returns the byte count."""
        target = f"/v1/files?path={quote(path)}"
        response = self._request("PUT", target, body=bytes(data), content_type="application/octet-stream")
        if response.status >= 400:
            raise self._error("PUT", target, response)
        return int(response.json()["bytes"])

    def windows(self) -> list[Window]:
        names = [field.name for field in dataclasses.fields(Window)]
        return [Window(**{name: window[name] for name in names if name in window})
                for window in self._call("GET", "/v1/windows")["windows"]]

    def app_state(self) -> dict[str, Any]:
        """``{"apps": {name: state}, "errors": {name: message}}`` from the guest's state folder."""
        return self._call("GET", "/v1/app_state")

    def web_load(self, task: str, *, seed: int = 0, episode_s: float | None = None) -> Any:
        """Load a MiniWoB++ task page in the guest's browser; its reply, checked (``PageLoad``)."""
        from deskdojo.vm.web import PageLoad

        payload: dict[str, Any] = {"task": task, "seed": seed}
        if episode_s is not None:
            payload["episode_s"] = episode_s
        return PageLoad.parse(self._call("POST", "/v1/web", payload, timeout=max(self.timeout, 60.0)))

    def web_state(self) -> Any:
        """The loaded page's state, checked (``PageState``), or None."""
        from deskdojo.vm.web import PageState

        return PageState.parse_reply(self._call("GET", "/v1/web"))

    def reset(self) -> float:
        """Kill the sandbox's apps, restore its home folder; returns the guest's elapsed ms."""
        return float(self._call("POST", "/v1/reset", {})["elapsed_ms"])

    def set_recording(self, on: bool) -> None:
        """Turn the guest's action recording on (a new recording) or off (kept for reading)."""
        self._call("POST", "/v1/record", {"on": bool(on)})

    def recording(self) -> dict[str, Any]:
        """``{"recording", "started", "dropped", "limit", "actions": [{"index", "time", "action"}]}``."""
        return self._call("GET", "/v1/record")

    def recorded_frame(self, index: int) -> bytes:
        """The PNG of the screen just before recorded action ``index``."""
        return self._get_bytes(f"/v1/record/frame?index={int(index)}").body

    def shutdown(self) -> None:
        """Ask the guest to stop everything and exit (used by the local Xvfb provider)."""
        try:
            self._call("POST", "/v1/shutdown", {})
        except SandboxDied:
            pass
