"""The guest control server end to end: boot.py on a private Xvfb display, driven by GuestClient."""

from __future__ import annotations

import http.client
import io
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from deskdojo.core.actions import Click, Drag, Key, Move, Scroll, Type
from deskdojo.core.errors import GuestRequestError, SandboxDied
from deskdojo.vm.client import ActResult, GuestClient
from waiting import wait_for

pytestmark = pytest.mark.display  # tests/conftest.py skips (or, under CI, fails) without Xvfb

WIDTH, HEIGHT = 1024, 768
TERM_TITLE = "deskdojo-test-term"


@dataclass
class Sandbox:
    proc: subprocess.Popen
    client: GuestClient
    info: dict[str, Any]
    socket_path: Path
    home: Path



def alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] not in ("Z", "X")
    except (FileNotFoundError, ProcessLookupError):
        return False


@pytest.fixture(scope="module")
def sandbox(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sandbox]:
    root = tmp_path_factory.mktemp("guest")
    socket_dir, home, pristine = root / "s", root / "home", root / "pristine"
    (pristine / "docs").mkdir(parents=True)
    (pristine / "docs" / "pristine.txt").write_text("from the pristine home\n")
    log = open(root / "boot.log", "wb")
    proc = subprocess.Popen(
        [sys.executable, "-m", "deskdojo.vm.guest.boot", "--socket-dir", str(socket_dir),
         "--display", "auto", "--home", str(home), "--pristine-home", str(pristine)],
        stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    info: dict[str, Any] = {}
    client = GuestClient(socket_dir / "control.sock", timeout=20)
    try:
        boot_file = socket_dir / "boot.json"

        def booted() -> bool:
            if proc.poll() is not None:
                raise AssertionError(f"boot exited with {proc.returncode}: "
                                     f"{(root / 'boot.log').read_text()}")
            return boot_file.exists()

        wait_for(booted, 30, "boot.json")
        info.update(json.loads(boot_file.read_text()))
        client.wait_ready(10)
        yield Sandbox(proc, client, info, socket_dir / "control.sock", home)
    finally:
        client.close()
        try:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(timeout=10)
        except (ProcessLookupError, subprocess.TimeoutExpired):
            pass
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        log.close()
        # Boot kills its children; never leave an Xvfb behind even if it could not.
        xvfb_pid = info.get("xvfb_pid")
        if xvfb_pid and alive(xvfb_pid):
            os.kill(xvfb_pid, signal.SIGKILL)
            raise AssertionError(f"boot left Xvfb {xvfb_pid} running")
    assert proc.returncode == 0, (root / "boot.log").read_text()
    assert not (socket_dir / "control.sock").exists()


@pytest.fixture
def guest(sandbox: Sandbox) -> Iterator[GuestClient]:
    """The sandbox's client; every test leaves a freshly reset desktop behind."""
    yield sandbox.client
    sandbox.client.reset()


def raw_request(socket_path: Path, method: str, path: str, body: bytes | None = None,
                connection: http.client.HTTPConnection | None = None) -> tuple[int, dict[str, Any]]:
    """One request on a plain http.client connection (to send what GuestClient never would)."""
    if connection is None:
        connection = unix_connection(socket_path)
    connection.request(method, path, body=body)
    response = connection.getresponse()
    return response.status, json.loads(response.read())


def unix_connection(socket_path: Path) -> http.client.HTTPConnection:
    connection = http.client.HTTPConnection("localhost", timeout=10)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(10)
    sock.connect(str(socket_path))
    connection.sock = sock
    return connection


def pointer(sandbox: Sandbox) -> tuple[int, int]:
    out = subprocess.run(["xdotool", "getmouselocation", "--shell"], capture_output=True, text=True,
                         env={**os.environ, "DISPLAY": sandbox.info["display"]}, check=True).stdout
    values = dict(line.split("=", 1) for line in out.split())
    return int(values["X"]), int(values["Y"])


def start_terminal(guest: GuestClient, *, tries: int = 2) -> tuple[int, Any]:
    def placed_and_focused() -> Any:
        # A new window shows up at 1x1 before xterm sizes it and openbox focuses it.
        window = next((w for w in guest.windows() if w.title == TERM_TITLE), None)
        return window if window is not None and window.width > 100 and window.focused else None

    for attempt in range(tries):
        pid = guest.exec(["xterm", "-T", TERM_TITLE, "-geometry", "80x24+40+40",
                          "-e", "bash", "--norc", "--noprofile"], background=True).pid
        assert pid is not None
        try:
            return pid, wait_for(placed_and_focused, 5, "the xterm window")
        except AssertionError:
            # Known, rare (seen once in ~20 runs, right after the keymap changed): xterm
            # stays at one character cell. Not what these tests are about: start another.
            windows = guest.windows()
            os.kill(pid, signal.SIGKILL)
            wait_for(lambda: not any(w.title == TERM_TITLE for w in guest.windows()), 5,
                     "the stuck xterm to go")
            if attempt == tries - 1:
                raise AssertionError(f"xterm {pid} not placed and focused: {windows}") from None
    raise AssertionError("unreachable")


class EventWindow:
    """A bare override-redirect X window that records the pointer events it gets."""

    def __init__(self, display_name: str, x: int, y: int, width: int, height: int,
                 rgb: tuple[int, int, int] = (255, 255, 255)) -> None:
        from Xlib import X
        from Xlib import display as xdisplay

        self.X = X
        self.display = xdisplay.Display(display_name)
        screen = self.display.screen()
        colour = screen.default_colormap.alloc_color(*(c * 257 for c in rgb)).pixel
        self.window = screen.root.create_window(
            x, y, width, height, 0, screen.root_depth, X.InputOutput, X.CopyFromParent,
            background_pixel=colour, override_redirect=True,
            event_mask=X.ButtonPressMask | X.ButtonReleaseMask | X.PointerMotionMask | X.ExposureMask)
        self.window.map()
        self.display.sync()
        wait_for(lambda: any(e.type == X.Expose for e in self.drain()), 5, "the event window to map")

    def drain(self) -> list[Any]:
        events = []
        while self.display.pending_events():
            events.append(self.display.next_event())
        return events

    def events(self, settle: float = 0.2) -> list[Any]:
        time.sleep(settle)
        self.display.sync()
        return self.drain()

    def close(self) -> None:
        self.window.destroy()
        self.display.close()


# --- health and pixels ----------------------------------------------------------------


def test_health(sandbox: Sandbox, guest: GuestClient) -> None:
    health = guest.health()
    assert health["ok"] is True and health["protocol"] == 1
    assert health["screen"] == [WIDTH, HEIGHT]
    assert health["display"] == sandbox.info["display"]
    assert health["pid"] == sandbox.info["pid"] == sandbox.proc.pid
    assert isinstance(health["version"], str)


def test_screenshot_raw_and_png_agree(guest: GuestClient) -> None:
    from PIL import Image

    pixels = guest.screenshot()
    assert pixels.shape == (HEIGHT, WIDTH, 3) and pixels.dtype == np.uint8
    png = guest.screenshot_png()
    assert png.startswith(b"\x89PNG")
    image = Image.open(io.BytesIO(png))
    assert image.size == (WIDTH, HEIGHT) and image.mode == "RGB"
    np.testing.assert_array_equal(np.asarray(image), pixels)


def test_screenshot_colours_are_rgb(sandbox: Sandbox, guest: GuestClient) -> None:
    from PIL import Image

    patch = EventWindow(sandbox.info["display"], 100, 50, 40, 30, rgb=(250, 20, 90))
    try:
        pixels = guest.screenshot()
        assert tuple(pixels[60, 110]) == (250, 20, 90)
        assert tuple(pixels[49, 110]) != (250, 20, 90) and tuple(pixels[80, 110]) != (250, 20, 90)
        decoded = np.asarray(Image.open(io.BytesIO(guest.screenshot_png())))
        assert tuple(decoded[60, 110]) == (250, 20, 90)
    finally:
        patch.close()


# --- actions ----------------------------------------------------------------------------


def test_click_and_move_put_the_pointer_there(sandbox: Sandbox, guest: GuestClient) -> None:
    result = guest.act(Click(123, 456))
    assert result == ActResult(ok=True, error=None, elapsed_ms=result.elapsed_ms)
    assert pointer(sandbox) == (123, 456)
    assert guest.act(Move(700, 20)).ok
    assert pointer(sandbox) == (700, 20)


def test_type_and_key_chord_in_a_terminal(sandbox: Sandbox, guest: GuestClient) -> None:
    pid, window = start_terminal(guest)
    assert window.wm_class == "XTerm" and window.width > 100
    guest.act(Click(window.x + window.width // 2, window.y + window.height // 2))
    before = guest.screenshot()
    assert guest.act(Type("echo discarded")).ok
    wait_for(lambda: not np.array_equal(guest.screenshot(), before), 5, "typed text to show")
    # ctrl+u erases the line in bash: if the chord failed, the file would start with "echo discarded".
    assert guest.act(Key(("ctrl", "u"))).ok
    assert guest.act(Type("printf 'Hi There! %s\\n' \"$((6*7))\" > \"$HOME/typed.txt\"\n")).ok
    typed = sandbox.home / "typed.txt"
    wait_for(typed.exists, 5, "the typed command to run")
    wait_for(lambda: typed.read_text() == "Hi There! 42\n", 2, f"typed.txt ({typed.read_text()!r})")
    # Characters the keymap lacks are bound to spare keycodes; upper case must survive.
    unicode_text = "Ünïcode ✓ Ωμ 日本 ÀÉ"
    assert guest.act(Type(f"printf '%s\\n' '{unicode_text}' > \"$HOME/unicode.txt\"\n")).ok
    unicode_file = sandbox.home / "unicode.txt"
    wait_for(unicode_file.exists, 5, "the unicode command to run")
    wait_for(lambda: unicode_file.read_text() == unicode_text + "\n", 2,
             f"unicode.txt ({unicode_file.read_text()!r})")
    assert alive(pid)


def test_drag_moves_a_window_by_its_title_bar(guest: GuestClient) -> None:
    _, window = start_terminal(guest)
    title_y = window.y - 8  # openbox's title bar sits just above the client area
    assert guest.act(Drag(window.x + 60, title_y, window.x + 260, title_y + 150)).ok

    def at_target() -> Any:  # the window manager applies the motion after the drag returns
        now = next(w for w in guest.windows() if w.title == TERM_TITLE)
        return now if abs(now.x - (window.x + 200)) <= 2 and abs(now.y - (window.y + 150)) <= 2 else None

    # under load it was seen 3/4 of the way there when first looked at (CI, two busy cores)
    wait_for(at_target, 5, "the window to reach the end of the drag")


def test_drag_and_scroll_events(sandbox: Sandbox, guest: GuestClient) -> None:
    target = EventWindow(sandbox.info["display"], 500, 300, 300, 200)
    try:
        assert guest.act(Drag(520, 320, 700, 450)).ok
        events = target.events()
        X = target.X
        presses = [e for e in events if e.type == X.ButtonPress]
        motions = [e for e in events if e.type == X.MotionNotify and e.state & X.Button1Mask]
        releases = [e for e in events if e.type == X.ButtonRelease]
        assert [(e.detail, e.root_x, e.root_y) for e in presses] == [(1, 520, 320)]
        assert motions and (motions[-1].root_x, motions[-1].root_y) == (700, 450)
        assert [(e.detail, e.root_x, e.root_y) for e in releases] == [(1, 700, 450)]

        # Positive dy scrolls down (X button 5), negative dx scrolls left (button 6).
        assert guest.act(Scroll(600, 400, dy=3)).ok
        assert guest.act(Scroll(600, 400, dx=-2)).ok
        assert guest.act(Scroll(600, 400, dy=-1)).ok
        buttons = [e.detail for e in target.events() if e.type == X.ButtonPress]
        assert buttons == [5, 5, 5, 6, 6, 4]
    finally:
        target.close()


def test_off_screen_click_is_refused_not_raised(guest: GuestClient) -> None:
    result = guest.act(Click(WIDTH + 5, 10))
    assert not result.ok
    assert result.error is not None and f"off the {WIDTH}x{HEIGHT} screen" in result.error
    assert guest.act(Drag(10, 10, 10, -1)).ok is False
    assert guest.health()["ok"]


# --- protocol errors ------------------------------------------------------------------


def test_bad_requests_get_json_errors_and_the_server_keeps_serving(sandbox: Sandbox) -> None:
    connection = unix_connection(sandbox.socket_path)
    try:
        status, body = raw_request(sandbox.socket_path, "POST", "/v1/act", b"{not json", connection)
        assert status == 400 and "not valid JSON" in body["error"]
        status, body = raw_request(sandbox.socket_path, "POST", "/v1/act",
                                   json.dumps({"action": {"kind": "teleport", "x": 1}}).encode(),
                                   connection)
        assert status == 400 and "'teleport'" in body["error"]
        status, body = raw_request(sandbox.socket_path, "POST", "/v1/act",
                                   json.dumps({"action": {"kind": "click", "x": "1", "y": 2}}).encode(),
                                   connection)
        assert status == 400 and "click.x" in body["error"]
        status, body = raw_request(sandbox.socket_path, "GET", "/v1/nowhere", None, connection)
        assert status == 404 and "/v1/nowhere" in body["error"]
        status, body = raw_request(sandbox.socket_path, "GET", "/v1/act", None, connection)
        assert status == 405
        status, body = raw_request(sandbox.socket_path, "POST", "/v1/exec",
                                   json.dumps({"argv": "ls -l"}).encode(), connection)
        assert status == 400 and "exec.argv" in body["error"]
        # All of that on one keep-alive connection, which still works.
        status, body = raw_request(sandbox.socket_path, "GET", "/v1/health", None, connection)
        assert status == 200 and body["ok"]
    finally:
        connection.close()


# --- exec -------------------------------------------------------------------------------


def test_exec_output_and_returncode(guest: GuestClient) -> None:
    result = guest.exec(["sh", "-c", "echo out; echo err >&2; exit 3"])
    assert (result.returncode, result.stdout, result.stderr) == (3, "out\n", "err\n")
    assert not result.truncated and not result.timed_out
    env = guest.exec(["sh", "-c", "echo $DESKDOJO_TEST:$HOME:$PWD"], env={"DESKDOJO_TEST": "yes"},
                     cwd="/tmp")
    assert env.stdout.startswith("yes:") and env.stdout.endswith(":/tmp\n")
    with pytest.raises(GuestRequestError, match="no-such-program"):
        guest.exec(["no-such-program"])


def test_exec_that_hangs_is_killed_at_its_timeout(guest: GuestClient) -> None:
    start = time.monotonic()
    result = guest.exec(["sh", "-c", "echo before; sleep 30"], timeout=1)
    assert result.timed_out and result.returncode != 0
    assert result.stdout == "before\n"
    assert time.monotonic() - start < 3


def test_exec_output_is_capped(guest: GuestClient) -> None:
    result = guest.exec(["sh", "-c", "head -c 200000 /dev/zero | tr '\\0' x"], output_cap=1000)
    assert result.truncated and result.stdout == "x" * 1000 and result.returncode == 0


# --- files ------------------------------------------------------------------------------


def test_file_round_trip(sandbox: Sandbox, guest: GuestClient) -> None:
    data = bytes(range(256)) * 1000
    path = str(sandbox.home / "deep" / "er" / "blob.bin")
    assert guest.write_file(path, data) == len(data)
    assert guest.read_file(path) == data
    assert (sandbox.home / "deep" / "er" / "blob.bin").read_bytes() == data
    with pytest.raises(GuestRequestError) as missing:
        guest.read_file(str(sandbox.home / "missing.txt"))
    assert missing.value.status == 404


def test_paths_outside_home_and_tmp_are_forbidden(sandbox: Sandbox, guest: GuestClient) -> None:
    for path in ("/etc/passwd", f"{sandbox.home}{'/..' * 30}/etc/passwd"):
        with pytest.raises(GuestRequestError) as denied:
            guest.read_file(path)
        assert denied.value.status == 403
    (sandbox.home / "escape").symlink_to("/etc")
    with pytest.raises(GuestRequestError) as denied:
        guest.write_file(f"{sandbox.home}/escape/evil.conf", b"x")
    assert denied.value.status == 403
    with pytest.raises(GuestRequestError) as relative:
        guest.read_file("relative/path.txt")
    assert relative.value.status == 400


def test_oversized_write_is_refused_quickly(sandbox: Sandbox, guest: GuestClient) -> None:
    start = time.monotonic()
    with pytest.raises(GuestRequestError) as refused:
        guest.write_file(str(sandbox.home / "big.bin"), b"\0" * (50 * 1024 * 1024))
    assert refused.value.status == 413
    assert time.monotonic() - start < 2
    assert guest.health()["ok"]
    assert not (sandbox.home / "big.bin").exists()
    # The refusal comes from the headers alone: no byte of the body is needed.
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(5)
        sock.connect(str(sandbox.socket_path))
        sock.sendall(b"PUT /v1/files?path=/tmp/big HTTP/1.1\r\nHost: x\r\n"
                     b"Content-Length: 52428800\r\n\r\n")
        reply = sock.recv(4096)
    assert reply.startswith(b"HTTP/1.1 413")


# --- windows, app state, reset ----------------------------------------------------------


def test_app_state_reads_json_and_flags_bad_files(sandbox: Sandbox, guest: GuestClient) -> None:
    state_dir = sandbox.home / ".deskdojo" / "state"
    guest.write_file(str(state_dir / "todo.json"), json.dumps({"items": ["a"], "done": 1}).encode())
    guest.write_file(str(state_dir / "broken.json"), b"{half")
    state = guest.app_state()
    assert state["apps"] == {"todo": {"items": ["a"], "done": 1}}
    assert set(state["errors"]) == {"broken"}


def test_reset_kills_apps_and_restores_home(sandbox: Sandbox, guest: GuestClient) -> None:
    pid, _ = start_terminal(guest)
    daemon = guest.exec(["sh", "-c", "setsid sleep 300 > /dev/null 2>&1 & echo $!"]).stdout.strip()
    guest.write_file(str(sandbox.home / "scratch.txt"), b"made after boot")
    (sandbox.home / "docs" / "pristine.txt").write_text("edited")
    (sandbox.home / ".deskdojo" / "state" / "app.json").write_text("{}")

    elapsed_ms = guest.reset()

    assert elapsed_ms < 1000
    assert not alive(pid) and not alive(int(daemon))
    assert not any(w.title == TERM_TITLE for w in guest.windows())
    assert not (sandbox.home / "scratch.txt").exists()
    assert (sandbox.home / "docs" / "pristine.txt").read_text() == "from the pristine home\n"
    assert guest.app_state() == {"apps": {}, "errors": {}}
    assert pointer(sandbox) == (WIDTH // 2, HEIGHT // 2)
    assert alive(sandbox.info["xvfb_pid"]) and alive(sandbox.info["wm_pid"])


def test_client_reconnects_after_the_server_closes_the_connection(sandbox: Sandbox,
                                                                   guest: GuestClient) -> None:
    guest.health()
    # A 413 makes the server close the connection; the next call must just work.
    with pytest.raises(GuestRequestError):
        guest.write_file("/tmp/too-big", b"\0" * (17 * 1024 * 1024))
    assert guest.health()["ok"]
    with pytest.raises(SandboxDied, match="not reachable"):
        GuestClient(sandbox.socket_path.with_name("nothing.sock")).health()
