"""The guest control server: HTTP/1.1 with JSON over a unix socket, one per sandbox.

The host drives the sandbox only through these endpoints (all under ``/v1``):
health, screenshot, act, exec, files, windows, elements, app_state, reset, shutdown, web
(the web image's browser: load a task page, read its state), and record (while on, every
action performed is kept with the screen before it). Every
error is ``{"error": "..."}`` with a 4xx/5xx status and the server keeps serving;
the limits below (JSON depth, path length, request deadline, connection count) keep
bad or half-sent requests from holding threads or ending in a 500.
Standard library plus what the sandbox image holds (mss, python-xlib).
"""

from __future__ import annotations

import ctypes
import errno
import io
import json
import os
import socket
import socketserver
import subprocess
import sys
import tempfile
import threading
import time
import traceback
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

from deskdojo.core.actions import Key, Type, action_from_dict, action_to_dict, off_screen_error
from deskdojo.core.errors import ActionError
from deskdojo.vm.guest.procs import ProcessRegistry, run_captured
from deskdojo.vm.guest.homefolder import clear_directory, restore_home  # noqa: F401 - boot's import
from deskdojo.vm.guest.screen import ActionRecording, ScreenGrabber
from deskdojo.vm.guest.elements.act import ElementRefused, plan as element_plan, wait_for_focus
from deskdojo.vm.guest.elements.collect import WARM_AT_START, ElementCollector
from deskdojo.vm.guest.elements.tk import TkSource

PROTOCOL = 1
MAX_FILE_BYTES = 16 * 1024 * 1024
MAX_JSON_BYTES = 4 * 1024 * 1024
DEFAULT_EXEC_TIMEOUT_S = 30.0
MAX_EXEC_TIMEOUT_S = 600.0
DEFAULT_OUTPUT_CAP = 65536
MAX_OUTPUT_CAP = 1024 * 1024
# A keep-alive connection may wait this long for its next request. Idle connections
# are also the first to be closed when MAX_CONNECTIONS are open; the host's client
# reconnects on its own either way.
IDLE_CONNECTION_TIMEOUT_S = 600.0
# From a request's first byte to the last byte of its body: a client that sends part of
# a request and stops holds a thread this long at most (a 16 MB upload takes < 0.1 s).
REQUEST_READ_TIMEOUT_S = 5.0
RESPONSE_WRITE_TIMEOUT_S = 60.0  # a client that stops reading a reply is dropped after this
# One thread per connection: this bounds them well under the sandbox's pids limit (512).
MAX_CONNECTIONS = 64
MAX_JSON_DEPTH = 64  # bodies and app state files; json recurses once per level
MAX_PATH_BYTES = 4095  # Linux PATH_MAX (4096) less the terminating NUL
MAX_NAME_BYTES = 255  # NAME_MAX: one component of a path
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3  # glibc mallopt parameters
WM_MENU_DEPTH = 4
"""Escapes reset presses: one closes one level of an openbox menu, and submenus nest."""


def guest_version() -> str:
    try:
        import deskdojo

        return str(deskdojo.__version__)
    except (ImportError, AttributeError):
        return "unknown"


class HttpError(Exception):
    """Becomes ``{"error": message, **extra}`` with ``status``; ``close`` drops the connection."""

    def __init__(self, status: int, message: str, *, close: bool = False, **extra: Any) -> None:
        super().__init__(message)
        self.status, self.message, self.close, self.extra = status, message, close, extra


# --- processes ---------------------------------------------------------------------


def keep_large_buffers() -> bool:
    """Serve big allocations (3 MB frames) from the heap and keep freed memory.

    glibc mmaps each large buffer afresh and unmaps it on free, so every screenshot
    pays page faults on ~8 MB of new memory: this halves PNG time (12 -> 6 ms).
    """
    try:
        libc = ctypes.CDLL(None)
        return bool(libc.mallopt(_M_MMAP_THRESHOLD, 64 << 20) and libc.mallopt(_M_TRIM_THRESHOLD, 256 << 20))
    except (OSError, AttributeError):  # not glibc
        return False




# --- the service (what each endpoint does) -------------------------------------------


@dataclass
class GuestConfig:
    """Where things are in this sandbox; boot.py fills it in."""

    display: str
    socket_dir: Path
    home: Path
    state_dir: Path
    pristine_home: Path | None = None
    xserver_pid: int | None = None  # spared by reset, with its helpers (xkbcomp)
    wm_pid: int | None = None  # spared by reset; apps it launched are not
    service_pids: tuple[int, ...] = ()  # the accessibility bus and registry: spared by reset, with their children
    on_shutdown: Callable[[], None] | None = None


def _check_fields(where: str, body: Mapping[str, Any], allowed: set[str]) -> None:
    unknown = sorted(set(body) - allowed)
    if unknown:
        raise HttpError(400, f"{where} has no field {unknown[0]!r} (fields: {', '.join(sorted(allowed))})")


def _number(where: str, value: Any, low: float, high: float) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not low < value <= high:
        raise HttpError(400, f"{where} must be a number in ({low:g}, {high:g}], got {value!r}")
    return float(value)


def parse_json(data: bytes | str, *, max_depth: int = MAX_JSON_DEPTH) -> Any:
    """``json.loads`` that refuses nesting deeper than ``max_depth`` with a ValueError.

    The decoder recurses once per level: ``"[" * 100000`` would otherwise end in a
    RecursionError, and a value just under that depth fails again when it is sent back.
    """
    try:
        value = json.loads(data)
    except RecursionError:
        raise ValueError(f"it nests deeper than {max_depth} levels (the guest's JSON depth limit)") from None
    stack = [(value, 1)] if isinstance(value, (dict, list)) else []
    while stack:
        item, depth = stack.pop()
        if depth > max_depth:
            raise ValueError(f"it nests {depth} levels deep; the guest's JSON depth limit is {max_depth}")
        children = item.values() if isinstance(item, dict) else item
        stack.extend((child, depth + 1) for child in children if isinstance(child, (dict, list)))
    return value


def check_path_length(path: str) -> None:
    """Refuse a path the kernel would refuse with ENAMETOOLONG, naming the limit it breaks."""
    encoded = os.fsencode(path)
    if len(encoded) > MAX_PATH_BYTES:
        raise HttpError(400, f"the path is {len(encoded)} bytes; paths in the sandbox are at most "
                             f"{MAX_PATH_BYTES} bytes (PATH_MAX)")
    for name in encoded.split(b"/"):
        if len(name) > MAX_NAME_BYTES:
            shown = os.fsdecode(name[:40])
            raise HttpError(400, f"the name {shown!r}... is {len(name)} bytes; one name in a path is at "
                                 f"most {MAX_NAME_BYTES} bytes (NAME_MAX)")


def file_error(path: str, error: OSError, doing: str) -> HttpError:
    """The HttpError for an OSError from reading or writing ``path``; re-raises what no client caused."""
    code = error.errno
    if code == errno.ENOENT:
        return HttpError(404, f"no such file in the sandbox: {path}")
    if code in (errno.EACCES, errno.EPERM, errno.EROFS):
        return HttpError(403, f"the sandbox user may not {doing} {path}")
    if code == errno.EISDIR:
        return HttpError(400, f"{path} is a directory; give a file path (list folders with exec ['ls', ...])")
    if code == errno.ENOTDIR:
        return HttpError(400, f"a parent of {path} is a file, not a directory")
    if code == errno.ENAMETOOLONG:
        return HttpError(400, f"{path[:80]}... is too long once its links are followed; paths are at most "
                              f"{MAX_PATH_BYTES} bytes and names {MAX_NAME_BYTES} bytes")
    if code == errno.ELOOP:
        return HttpError(400, f"{path} goes through too many symbolic links")
    if code in (errno.ENOSPC, errno.EDQUOT):
        return HttpError(507, f"no space left in the sandbox to {doing} {path}")
    if code == errno.EFBIG:
        return HttpError(413, f"{path} would be larger than the sandbox allows")
    raise error


class GuestService:
    """The endpoints' behaviour, independent of HTTP."""

    def __init__(self, config: GuestConfig, registry: ProcessRegistry) -> None:
        from deskdojo.vm.guest.executor import Executor
        from deskdojo.vm.guest.xwindows import WindowLister

        self.config = config
        self.registry = registry
        self.executor = Executor(config.display)
        self.width, self.height = self.executor.width, self.executor.height
        self.screen = ScreenGrabber(config.display, self.width, self.height)
        self.windows_lister = WindowLister(config.display)
        self.env = {**os.environ, "DISPLAY": config.display, "HOME": str(config.home),
                    "DESKDOJO_STATE_DIR": str(config.state_dir)}
        self._reset_lock = threading.Lock()
        self.recording = ActionRecording()
        self.elements = ElementCollector(grab=self._grab_frame, screen_size=(self.width, self.height),
                                         sources={"tk": TkSource(config.state_dir)}, warm_up=WARM_AT_START)
        self._allowed_roots = [os.path.realpath(config.home), os.path.realpath("/tmp")]
        self._web: Any = None  # WebPages, made on the first web request

    def close(self) -> None:
        if self._web is not None:
            self._web.close()
        self.executor.close()
        self.screen.close()
        self.windows_lister.close()

    # health and pixels

    def health(self) -> dict[str, Any]:
        return {"ok": True, "protocol": PROTOCOL, "version": guest_version(),
                "display": self.config.display, "screen": [self.width, self.height],
                "pid": os.getpid()}

    # actions

    def act(self, body: Any) -> dict[str, Any]:
        if not isinstance(body, dict) or "action" not in body:
            raise HttpError(400, 'act needs a JSON object {"action": {"kind": ..., ...}}')
        _check_fields("act", body, {"action"})
        try:
            action = action_from_dict(body["action"])
        except (ActionError, TypeError, ValueError) as error:
            raise HttpError(400, str(error)) from None
        try:  # an action that names an element runs as the steps it resolves to now
            steps = element_plan(self.elements, action)
        except ElementRefused as error:
            raise HttpError(422, str(error), refused=True) from None
        for step in steps.steps:
            refusal = off_screen_error(step, self.width, self.height)
            if refusal is not None:
                raise HttpError(422, refusal, refused=True)
        elapsed_ms = 0.0
        for step in steps.steps:
            if isinstance(step, Type) and steps.element is not None:  # typing after the click
                wait_for_focus(self.windows_lister.list, steps.element.window)
                self.elements.wait_focused(steps.element)
            elapsed_ms += self._execute_recorded(step, body["action"] if steps.element is None
                                                 else action_to_dict(step))
        return {"ok": True, "elapsed_ms": round(elapsed_ms, 3), **steps.reply()}

    def _execute_recorded(self, action: Any, recorded: dict[str, Any]) -> float:
        if not self.recording.on:
            return self._execute(action)
        with self.recording.lock:
            frame_before, received = self.screen.settled_png(), time.time()
            elapsed_ms = self._execute(action)
            if self.recording.on:
                self.recording.add(recorded, frame_before, received)
        return elapsed_ms

    def _execute(self, action: Any) -> float:
        start = time.perf_counter()
        try:
            self.executor.execute(action)
        except ActionError as error:
            raise HttpError(400, str(error)) from None
        return round((time.perf_counter() - start) * 1000, 3)

    def record(self, body: Any) -> dict[str, Any]:
        if not isinstance(body, dict) or not isinstance(body.get("on"), bool):
            raise HttpError(400, 'record needs a JSON object {"on": true} or {"on": false}')
        _check_fields("record", body, {"on"})
        self.recording.switch(body["on"])
        return {"ok": True, "recording": body["on"]}

    # commands

    def exec(self, body: Any) -> dict[str, Any]:
        if not isinstance(body, dict):
            raise HttpError(400, 'exec needs a JSON object {"argv": [...], ...}')
        _check_fields("exec", body, {"argv", "timeout", "output_cap", "cwd", "env", "background"})
        argv = body.get("argv")
        if (not isinstance(argv, list) or not argv
                or not all(isinstance(a, str) and "\0" not in a for a in argv)):
            raise HttpError(400, f"exec.argv must be a non-empty list of strings (no shell), got {argv!r}")
        timeout = _number("exec.timeout", body.get("timeout", DEFAULT_EXEC_TIMEOUT_S), 0, MAX_EXEC_TIMEOUT_S)
        cap = body.get("output_cap", DEFAULT_OUTPUT_CAP)
        if isinstance(cap, bool) or not isinstance(cap, int) or not 0 <= cap <= MAX_OUTPUT_CAP:
            raise HttpError(400, f"exec.output_cap must be an integer in 0..{MAX_OUTPUT_CAP}, got {cap!r}")
        cwd = body.get("cwd") or str(self.config.home)
        if not isinstance(cwd, str) or not os.path.isdir(cwd):
            raise HttpError(400, f"exec.cwd {cwd!r} is not a directory in the sandbox")
        extra_env = body.get("env") or {}
        if not isinstance(extra_env, dict) or not all(
                isinstance(k, str) and isinstance(v, str) for k, v in extra_env.items()):
            raise HttpError(400, "exec.env must map variable names to string values")
        background = body.get("background", False)
        if not isinstance(background, bool):
            raise HttpError(400, f"exec.background must be true or false, got {background!r}")
        env = {**self.env, **extra_env}
        if argv[0] == "python3":
            # Tasks say "python3" for the sandbox's interpreter: the one that runs this
            # server and can import the practice apps (the image's, or the host venv's).
            argv = [sys.executable, *argv[1:]]
        try:
            if background:
                proc = self.registry.popen(argv, background=True, cwd=cwd, env=env,
                                           stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                           stderr=subprocess.DEVNULL)
                return {"pid": proc.pid}
            return run_captured(self.registry, argv, timeout=timeout, output_cap=cap, cwd=cwd, env=env)
        except FileNotFoundError:
            raise HttpError(400, f"exec: program {argv[0]!r} not found (PATH={env.get('PATH', '')}); "
                                 f"install it in the sandbox image or give its absolute path") from None
        except PermissionError as error:
            raise HttpError(400, f"exec: cannot run {argv[0]!r}: {error.strerror}") from None

    # files

    def _sandbox_path(self, query: Mapping[str, list[str]]) -> str:
        raw = (query.get("path") or [""])[0]
        if raw == "~" or raw.startswith("~/"):  # the sandbox's home, wherever the provider put it
            raw = self._allowed_roots[0] + raw[1:]
        if not raw.startswith("/") or "\0" in raw:
            raise HttpError(400, f"files needs ?path=<absolute path or ~/path>, got {raw!r}")
        check_path_length(raw)
        real = os.path.realpath(raw)
        if not any(real == root or real.startswith(root + os.sep) for root in self._allowed_roots):
            raise HttpError(403, f"{raw!r} resolves to {real!r}, outside the sandbox's home "
                                 f"({self._allowed_roots[0]}) and {self._allowed_roots[1]}; "
                                 f"files can only be read and written there")
        return real

    def read_file(self, query: Mapping[str, list[str]]) -> bytes:
        path = self._sandbox_path(query)
        try:
            with open(path, "rb") as handle:
                size = os.fstat(handle.fileno()).st_size
                if size > MAX_FILE_BYTES:
                    raise HttpError(413, f"{path} is {size} bytes; files over {MAX_FILE_BYTES} bytes "
                                         f"cannot be read through the guest server")
                return handle.read()
        except OSError as error:
            raise file_error(path, error, "read") from None

    def write_file(self, query: Mapping[str, list[str]], data: bytes) -> dict[str, Any]:
        path = self._sandbox_path(query)
        if os.path.isdir(path):
            raise HttpError(400, f"{path} is a directory; give a file path")
        directory = os.path.dirname(path)
        try:
            os.makedirs(directory, exist_ok=True)
            fd, temporary = tempfile.mkstemp(dir=directory, prefix=".deskdojo-upload-")
            try:
                with os.fdopen(fd, "wb") as handle:
                    handle.write(data)
                os.chmod(temporary, 0o644)
                os.replace(temporary, path)
            except BaseException:
                os.unlink(temporary)
                raise
        except OSError as error:
            raise file_error(path, error, "write") from None
        return {"ok": True, "bytes": len(data)}

    # windows and app state

    def list_elements(self, query: Mapping[str, list[str]]) -> dict[str, Any]:
        try:
            names = self.elements.parse_sources(",".join(query.get("sources", [])))
        except ValueError as error:
            raise HttpError(400, str(error)) from None
        return self.elements.listing(names).to_json()

    def _grab_frame(self) -> tuple[bytearray, int, int]:
        # BGRX as grabbed: OCR compares frames in it and converts only what it reads
        # (converting the whole frame to RGB cost 2-5 ms a listing here)
        return self.screen.raw()

    def windows(self) -> dict[str, Any]:
        return {"windows": self.windows_lister.list()}

    def app_state(self) -> dict[str, Any]:
        apps: dict[str, Any] = {}
        errors: dict[str, str] = {}
        try:
            names = sorted(os.listdir(self.config.state_dir))
        except FileNotFoundError:
            names = []
        for name in names:
            if not name.endswith(".json") or name.startswith("."):
                continue
            app = name[: -len(".json")]
            try:
                with open(os.path.join(self.config.state_dir, name), "rb") as handle:
                    apps[app] = parse_json(handle.read())
            except (OSError, ValueError) as error:
                errors[app] = f"{name}: {error}"
        if self._web is not None and self._web.page is not None:  # a loaded web page is an app too
            from deskdojo.vm.guest.web import WebError

            try:
                apps["web"] = self._web.state()
            except WebError as error:
                errors["web"] = str(error)
        return {"apps": apps, "errors": errors}

    # web pages (the web image's browser)

    def web(self) -> Any:
        if self._web is None:
            from deskdojo.vm.guest.web import WebPages

            self._web = WebPages(display=self.config.display, env=self.env, screen=(self.width, self.height),
                                 on_page=lambda: self.elements.expire("atspi"))
        return self._web

    def web_load(self, body: Any) -> dict[str, Any]:
        from deskdojo.vm.guest.web import WebError

        if not isinstance(body, dict):
            raise HttpError(400, 'web needs a JSON object {"task": "click-button", "seed": 0}')
        _check_fields("web", body, {"task", "seed", "episode_s"})
        try:
            return self.web().load(body)
        except ValueError as error:
            raise HttpError(400, str(error)) from None
        except LookupError as error:
            raise HttpError(404, str(error)) from None
        except WebError as error:
            raise HttpError(503, str(error)) from None

    def web_state(self) -> dict[str, Any]:
        from deskdojo.vm.guest.web import WebError

        try:
            return {"page": self._web.state() if self._web is not None else None}
        except WebError as error:
            raise HttpError(503, str(error)) from None

    # reset

    def reset(self) -> dict[str, Any]:
        with self._reset_lock:
            start = time.perf_counter()
            # The browser survives a reset (a page load is its reset): starting it costs seconds.
            browser = self._web.browser_pid() if self._web is not None else None
            self.registry.kill_descendants(
                spare={pid for pid in (self.config.wm_pid,) if pid},
                spare_trees={pid for pid in (self.config.xserver_pid, *self.config.service_pids, browser) if pid})
            try:  # X clients we did not start (none usually) lose their connection too
                windows = self.windows_lister.list() if browser else []
                spared = {w["id"] for w in windows if w["wm_class"].lower() == "chromium"}
                self.windows_lister.kill_clients([w for w in self.windows_lister.client_windows()
                                                  if w not in spared])
            except Exception as error:  # noqa: BLE001 - best effort; the processes are gone
                print(f"deskdojo guest: reset could not close leftover windows: {error}", file=sys.stderr)
            self.executor.release_all()
            if self.config.wm_pid:
                self._close_wm_menus()
            if self.config.pristine_home is not None:
                restore_home(self.config.home, self.config.pristine_home,
                             keep=[self.config.socket_dir, self.config.pristine_home])
            clear_directory(self.config.state_dir)
            if self._web is not None:
                self._web.blank()
            self.executor.move_to(self.width // 2, self.height // 2)
            return {"ok": True, "elapsed_ms": round((time.perf_counter() - start) * 1000, 3)}

    def _close_wm_menus(self) -> None:
        """Close a menu the window manager has open (alt+space's window menu, the desktop's).

        Openbox keeps it open, with the keyboard grabbed, after the apps are gone: the
        next episode's first click would land on it. With no menu open the Escapes reach
        no app (reset has just closed them; the web image's browser gets a blank page next).
        """
        for _ in range(WM_MENU_DEPTH):
            self.executor.execute(Key(("escape",)))

    def shutdown(self) -> dict[str, Any]:
        if self.config.on_shutdown is not None:
            threading.Timer(0.05, self.config.on_shutdown).start()  # after the reply goes out
        return {"ok": True}


# --- HTTP ------------------------------------------------------------------------------


_Route = Callable[["GuestRequestHandler", Mapping[str, list[str]], bytes], None]


class _ClientReader(io.RawIOBase):
    """A connection's read side with one deadline for a whole request.

    A socket timeout bounds each recv, so a client sending a byte every few seconds
    would never trip it; here each recv gets only what is left of the deadline. With
    no deadline set (between requests) a recv waits up to ``idle_timeout`` seconds.
    """

    def __init__(self, sock: socket.socket, idle_timeout: float) -> None:
        super().__init__()
        self._sock = sock
        self.idle_timeout = idle_timeout
        self.deadline: float | None = None
        self.expired = False
        self.ended = False  # the client closed its side (so a request read so far is cut short)

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        if self.deadline is None:
            timeout = self.idle_timeout
        else:
            timeout = self.deadline - time.monotonic()
            if timeout <= 0:
                self.expired = True
                raise TimeoutError("the request was not complete in time")
        self._sock.settimeout(timeout)
        try:
            count = self._sock.recv_into(buffer)
        except TimeoutError:
            self.expired = self.deadline is not None
            raise
        self.ended = self.ended or count == 0
        return count


class _ClientGone(ConnectionError):
    """A reply could not be written: the client closed the connection or stopped reading."""


class GuestRequestHandler(BaseHTTPRequestHandler):
    """Routes ``/v1/...`` requests to the GuestService; every reply has a Content-Length.

    A connection waits for its next request up to the server's idle timeout; once a
    request's first byte arrives, the rest of it (headers and body) must follow within
    the request timeout or the client gets a 408 and the connection closes.
    """

    protocol_version = "HTTP/1.1"
    server_version = "deskdojo-guest/1"
    server: GuestHTTPServer

    def setup(self) -> None:
        super().setup()
        self.rfile.close()  # the socket's own reader; it would keep the socket open after close()
        self._reader = _ClientReader(self.connection, self.server.idle_timeout_s)
        self.rfile = io.BufferedReader(self._reader)
        self._dispatched = False

    def handle(self) -> None:
        try:
            super().handle()
        except (ConnectionError, TimeoutError) as error:  # the client left or stopped reading
            self.close_connection = True
            self.log_message("connection dropped: %s", error)

    def handle_one_request(self) -> None:
        reader = self._reader
        reader.deadline, reader.expired, self._dispatched = None, False, False
        self.server.note_waiting(self.connection, True)
        try:
            if not self.rfile.peek(1):  # the client closed an idle connection
                self.close_connection = True
                return
        except TimeoutError:
            self.log_message("closing a connection idle for %g s", reader.idle_timeout)
            self.close_connection = True
            return
        reader.deadline = time.monotonic() + self.server.request_timeout_s
        self.command = self.request_version = self.requestline = ""  # until parse_request sets them
        super().handle_one_request()  # a timeout in the request line or headers: logged, closed
        if reader.expired and not self._dispatched:
            self._begin_reply()
            self.send_error(408, f"the request line and headers did not arrive within "
                                 f"{self.server.request_timeout_s:g} s")

    def _begin_reply(self) -> None:
        """The request has been read: no longer a candidate for eviction; writes get their own timeout."""
        self.server.note_waiting(self.connection, False)
        self.connection.settimeout(self.server.write_timeout_s)

    # unix sockets have no client address; the base class assumes a TCP (host, port)
    def address_string(self) -> str:
        return "unix"

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - base signature
        if self.server.verbose:
            sys.stderr.write(f"deskdojo guest: {format % args}\n")

    def log_error(self, format: str, *args: Any) -> None:  # noqa: A002
        sys.stderr.write(f"deskdojo guest: {format % args}\n")

    def send_error(self, code: int, message: str | None = None, explain: str | None = None) -> None:
        """Protocol-level errors (bad request line, unsupported method) as JSON too."""
        text = message or self.responses.get(code, ("error",))[0]
        if explain:
            text = f"{text}: {explain}"
        self.close_connection = True
        self._send(code, json.dumps({"error": text}).encode(), "application/json", close=True)

    def _send(self, status: int, body: bytes, content_type: str, *, close: bool = False,
              headers: Mapping[str, str] | None = None) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        if close:
            self.send_header("Connection", "close")
            self.close_connection = True
        try:
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(body)
        except OSError as error:  # a broken pipe, or the write timeout
            raise _ClientGone(f"{type(error).__name__}: {error}") from None

    def send_json(self, status: int, payload: Any, *, close: bool = False) -> None:
        self._send(status, json.dumps(payload).encode(), "application/json", close=close)

    def _read_body(self, limit: int) -> bytes:
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            raise HttpError(411, "send a Content-Length instead of a chunked body", close=True)
        text = self.headers.get("Content-Length")
        if text is None:
            return b""
        try:
            length = int(text)
            if length < 0:
                raise ValueError
        except ValueError:
            raise HttpError(400, f"bad Content-Length {text!r}", close=True) from None
        if length > limit:  # refused before reading a byte of it
            raise HttpError(413, f"the body is {length} bytes; this endpoint takes at most {limit} "
                                 f"bytes", close=True)
        try:
            body = self.rfile.read(length)
        except TimeoutError:
            raise HttpError(408, f"the body ({length} bytes promised) did not arrive within "
                                 f"{self.server.request_timeout_s:g} s of the request", close=True) from None
        if len(body) < length:
            raise HttpError(400, "the connection closed before the whole body arrived", close=True)
        return body

    def _dispatch(self, method: str) -> None:
        self._dispatched = True
        if self._reader.ended:  # the headers ended with the connection, not a blank line
            self.close_connection = True
            return
        url = urlsplit(self.path)
        try:
            limit = MAX_FILE_BYTES if (method, url.path) == ("PUT", "/v1/files") else MAX_JSON_BYTES
            try:
                body = self._read_body(limit)
            finally:
                self._begin_reply()
            routes = ROUTES.get(url.path)
            if routes is None:
                raise HttpError(404, f"no endpoint {method} {url.path}; the guest serves "
                                     f"{', '.join(sorted(ROUTES))}")
            route = routes.get(method)
            if route is None:
                raise HttpError(405, f"{url.path} takes {' or '.join(sorted(routes))}, not {method}")
            route(self, parse_qs(url.query), body)
        except HttpError as error:
            self.send_json(error.status, {"error": error.message, **error.extra}, close=error.close)
        except _ClientGone:
            raise
        except Exception as error:  # noqa: BLE001 - one bad request must not stop the server
            traceback.print_exc()
            self.send_json(500, {"error": f"the guest server failed on {method} {url.path}: "
                                          f"{type(error).__name__}: {error}"})

    def do_GET(self) -> None:  # noqa: N802 - the base class's naming
        self._dispatch("GET")

    def do_POST(self) -> None:  # noqa: N802
        self._dispatch("POST")

    def do_PUT(self) -> None:  # noqa: N802
        self._dispatch("PUT")

    def do_DELETE(self) -> None:  # noqa: N802
        self._dispatch("DELETE")

    # --- endpoints -----------------------------------------------------------------

    def _json_body(self, body: bytes) -> Any:
        if not body:
            return {}
        try:
            return parse_json(body)
        except ValueError as error:
            raise HttpError(400, f"the body is not valid JSON: {error}") from None

    def ep_health(self, query: Mapping[str, list[str]], body: bytes) -> None:
        self.send_json(200, self.server.service.health())

    def ep_screenshot(self, query: Mapping[str, list[str]], body: bytes) -> None:
        kind = (query.get("format") or ["png"])[0]
        screen = self.server.service.screen
        if kind == "png":
            self._send(200, screen.png(), "image/png")
        elif kind == "raw":
            pixels, width, height = screen.raw()
            self._send(200, pixels, "application/octet-stream", headers={
                "X-Width": str(width), "X-Height": str(height), "X-Pixel-Format": "BGRX"})
        else:
            raise HttpError(400, f"screenshot format must be png or raw, got {kind!r}")

    def ep_act(self, query: Mapping[str, list[str]], body: bytes) -> None:
        self.send_json(200, self.server.service.act(self._json_body(body)))

    def ep_exec(self, query: Mapping[str, list[str]], body: bytes) -> None:
        self.send_json(200, self.server.service.exec(self._json_body(body)))

    def ep_files_get(self, query: Mapping[str, list[str]], body: bytes) -> None:
        self._send(200, self.server.service.read_file(query), "application/octet-stream")

    def ep_files_put(self, query: Mapping[str, list[str]], body: bytes) -> None:
        self.send_json(200, self.server.service.write_file(query, body))

    def ep_elements(self, query: Mapping[str, list[str]], body: bytes) -> None:
        self.send_json(200, self.server.service.list_elements(query))

    def ep_windows(self, query: Mapping[str, list[str]], body: bytes) -> None:
        self.send_json(200, self.server.service.windows())

    def ep_app_state(self, query: Mapping[str, list[str]], body: bytes) -> None:
        self.send_json(200, self.server.service.app_state())

    def ep_web_get(self, query: Mapping[str, list[str]], body: bytes) -> None:
        self.send_json(200, self.server.service.web_state())

    def ep_web_post(self, query: Mapping[str, list[str]], body: bytes) -> None:
        self.send_json(200, self.server.service.web_load(self._json_body(body)))

    def ep_record_get(self, query: Mapping[str, list[str]], body: bytes) -> None:
        self.send_json(200, self.server.service.recording.summary())

    def ep_record_post(self, query: Mapping[str, list[str]], body: bytes) -> None:
        self.send_json(200, self.server.service.record(self._json_body(body)))

    def ep_record_frame(self, query: Mapping[str, list[str]], body: bytes) -> None:
        text = (query.get("index") or [""])[0]
        if not text.isdigit():
            raise HttpError(400, f"record/frame needs ?index=<number>, got {text!r}")
        try:
            self._send(200, self.server.service.recording.frame(int(text)), "image/png")
        except LookupError as error:
            raise HttpError(404, str(error)) from None

    def ep_reset(self, query: Mapping[str, list[str]], body: bytes) -> None:
        payload = self._json_body(body)
        if not isinstance(payload, dict):
            raise HttpError(400, "reset takes an empty JSON object {}")
        _check_fields("reset", payload, set())
        self.send_json(200, self.server.service.reset())

    def ep_shutdown(self, query: Mapping[str, list[str]], body: bytes) -> None:
        self.send_json(200, self.server.service.shutdown(), close=True)


ROUTES: dict[str, dict[str, _Route]] = {
    "/v1/health": {"GET": GuestRequestHandler.ep_health},
    "/v1/screenshot": {"GET": GuestRequestHandler.ep_screenshot},
    "/v1/act": {"POST": GuestRequestHandler.ep_act},
    "/v1/exec": {"POST": GuestRequestHandler.ep_exec},
    "/v1/files": {"GET": GuestRequestHandler.ep_files_get, "PUT": GuestRequestHandler.ep_files_put},
    "/v1/windows": {"GET": GuestRequestHandler.ep_windows},
    "/v1/elements": {"GET": GuestRequestHandler.ep_elements},
    "/v1/app_state": {"GET": GuestRequestHandler.ep_app_state},
    "/v1/reset": {"POST": GuestRequestHandler.ep_reset},
    "/v1/web": {"GET": GuestRequestHandler.ep_web_get, "POST": GuestRequestHandler.ep_web_post},
    "/v1/record": {"GET": GuestRequestHandler.ep_record_get, "POST": GuestRequestHandler.ep_record_post},
    "/v1/record/frame": {"GET": GuestRequestHandler.ep_record_frame},
    "/v1/shutdown": {"POST": GuestRequestHandler.ep_shutdown},
}


class GuestHTTPServer(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    """One thread per connection; connections persist (HTTP/1.1 keep-alive).

    At most ``max_connections`` at once, so held connections cannot use up the
    sandbox's pids: when full, a new connection closes the one that has waited
    longest on its client (idle, or sending a request); if every connection is busy
    running a request, the new one gets a 503 and is closed.
    """

    daemon_threads = True
    block_on_close = False
    # A full listen queue fails a connect with a timeout set (the host's client) at once
    # with EAGAIN; the default of 5 fills up under a burst of connections.
    request_queue_size = 256

    def __init__(self, socket_path: Path, service: GuestService, *, verbose: bool = False,
                 idle_timeout_s: float = IDLE_CONNECTION_TIMEOUT_S,
                 request_timeout_s: float = REQUEST_READ_TIMEOUT_S,
                 write_timeout_s: float = RESPONSE_WRITE_TIMEOUT_S,
                 max_connections: int = MAX_CONNECTIONS) -> None:
        self.socket_path = Path(socket_path)
        self.service = service
        self.verbose = verbose
        self.idle_timeout_s, self.request_timeout_s = idle_timeout_s, request_timeout_s
        self.write_timeout_s, self.max_connections = write_timeout_s, max_connections
        self._connections_lock = threading.Lock()
        self._open = 0
        self._waiting: dict[socket.socket, float] = {}  # connections blocked on their client: since
        if self.socket_path.is_socket():
            self.socket_path.unlink()  # left by a previous boot in the same folder
        super().__init__(str(self.socket_path), GuestRequestHandler)
        # The host connects as another user (root, or the docker host's uid).
        os.chmod(self.socket_path, 0o666)

    def note_waiting(self, connection: socket.socket, waiting: bool) -> None:
        with self._connections_lock:
            if waiting:
                self._waiting[connection] = time.monotonic()
            else:
                self._waiting.pop(connection, None)

    def process_request(self, request: Any, client_address: Any) -> None:
        with self._connections_lock:
            victim = None
            if self._open >= self.max_connections:
                victim = min(self._waiting, key=self._waiting.__getitem__, default=None)
                if victim is None:
                    self._refuse(request)
                    return
                del self._waiting[victim]
            self._open += 1
        if victim is not None:
            try:
                victim.shutdown(socket.SHUT_RDWR)  # its thread reads EOF and ends
            except OSError:
                pass
        super().process_request(request, client_address)

    def _refuse(self, request: socket.socket) -> None:
        body = json.dumps({"error": f"the guest server is running {self.max_connections} requests "
                                    f"at once, its limit; retry when one has finished"}).encode()
        try:
            request.settimeout(1.0)
            request.sendall(b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\n"
                            b"Content-Length: %d\r\nConnection: close\r\n\r\n%s" % (len(body), body))
        except OSError:
            pass
        self.shutdown_request(request)

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            with self._connections_lock:
                self._open -= 1
                self._waiting.pop(request, None)

    def connection_counts(self) -> dict[str, int]:
        """Open connections and how many of them wait on their client (for tests and logs)."""
        with self._connections_lock:
            return {"open": self._open, "waiting": len(self._waiting)}

    def server_close(self) -> None:
        super().server_close()
        try:
            self.socket_path.unlink()
        except FileNotFoundError:
            pass
