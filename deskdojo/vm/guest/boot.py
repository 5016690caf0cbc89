"""Boot a sandbox desktop: Xvfb, a window manager, the home folder, then the control server.

``python3 -m deskdojo.vm.guest.boot --socket-dir DIR`` serves on ``DIR/control.sock``
and writes ``DIR/boot.json`` once it answers. SIGTERM or SIGINT (or ``POST
/v1/shutdown``) stops every process it started and exits 0.
"""

from __future__ import annotations

import argparse
import ctypes
import json
import os
import re
import select
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from deskdojo.vm.guest.procs import (
    ProcessRegistry, become_subreaper, descendants, kill_group, process_table,
)
from deskdojo.vm.guest.server import (
    PROTOCOL, GuestConfig, GuestHTTPServer, GuestService, keep_large_buffers, restore_home,
)

SOCKET_NAME = "control.sock"
BOOT_FILE = "boot.json"
_XVFB_START_TIMEOUT_S = 15.0
_WM_START_TIMEOUT_S = 10.0
_A11Y_START_TIMEOUT_S = 5.0
A11Y_BUS_CONFIG = "/usr/share/defaults/at-spi2/accessibility.conf"
A11Y_REGISTRYD = "/usr/libexec/at-spi2-registryd"
_PR_SET_PDEATHSIG = 1
_MAX_UNIX_PATH = 107  # sun_path is 108 bytes with the trailing NUL


class BootError(Exception):
    """Booting failed; the message says what to do."""


class Stopped(Exception):
    """SIGTERM/SIGINT arrived while booting."""


def _die_with_parent() -> None:
    """In the child: get SIGKILL if boot dies, even by SIGKILL (Xvfb must never leak)."""
    try:
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    except (OSError, AttributeError):
        pass


def _make_x11_socket_dir() -> None:
    """Create /tmp/.X11-unix, which Xvfb creates only when it runs as root.

    Without it (a fresh tmpfs /tmp in a container) Xvfb listens only on the abstract
    socket, which clients in other network namespaces cannot reach.
    """
    path = "/tmp/.X11-unix"
    try:
        os.mkdir(path)
        os.chmod(path, 0o1777)
    except OSError:  # already there (the usual case on a host), or /tmp is read-only
        pass


def parse_screen(text: str) -> tuple[int, int]:
    match = re.fullmatch(r"(\d+)x(\d+)", text.strip())
    if not match:
        raise argparse.ArgumentTypeError(f"screen must look like 1024x768, got {text!r}")
    width, height = int(match[1]), int(match[2])
    if not (64 <= width <= 8192 and 64 <= height <= 8192):
        raise argparse.ArgumentTypeError(f"screen {width}x{height} is outside 64x64..8192x8192")
    return width, height


def parse_display(text: str) -> str:
    if text == "auto" or re.fullmatch(r":\d+", text):
        return text
    raise argparse.ArgumentTypeError(f"display must be ':N' or 'auto', got {text!r}")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python3 -m deskdojo.vm.guest.boot",
        description="Start Xvfb, a window manager and the deskdojo guest control server.")
    parser.add_argument("--socket-dir", required=True, type=Path,
                        help="folder shared with the host: control.sock, boot.json and logs go here")
    parser.add_argument("--screen", default=(1024, 768), type=parse_screen,
                        help="screen size WxH (default 1024x768)")
    parser.add_argument("--display", default="auto", type=parse_display,
                        help="X display ':N', or 'auto' to let Xvfb pick a free one (default)")
    parser.add_argument("--home", default=Path(os.environ.get("HOME", "/tmp")), type=Path,
                        help="the sandbox user's home folder (default $HOME)")
    parser.add_argument("--pristine-home", default=None, type=Path,
                        help="copy this folder's contents into --home at boot and on every reset; "
                             "--home is emptied first, so give a home that belongs to the sandbox")
    parser.add_argument("--wm", default="openbox", choices=("openbox", "none"),
                        help="window manager (default openbox)")
    parser.add_argument("--verbose", action="store_true", help="log every request to stderr")
    return parser


class Boot:
    """One sandbox's lifetime: start, serve until told to stop, stop everything."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.socket_dir: Path = args.socket_dir.absolute()
        self.home: Path = args.home.absolute()
        self.pristine: Path | None = args.pristine_home.absolute() if args.pristine_home else None
        self.registry = ProcessRegistry()
        self.stop = threading.Event()
        self.exit_code = 0
        self.xvfb: subprocess.Popen | None = None
        self.wm: subprocess.Popen | None = None
        self.a11y: list[subprocess.Popen] = []  # the accessibility bus and its registry
        self.a11y_note = ""  # why there is no accessibility bus, when there is none
        self.a11y_runtime: str | None = None  # the private folder of its socket
        self.server: GuestHTTPServer | None = None
        self.service: GuestService | None = None
        self._serve_thread: threading.Thread | None = None

    # --- checks --------------------------------------------------------------------

    def _check(self) -> None:
        socket_path = self.socket_dir / SOCKET_NAME
        if len(os.fsencode(socket_path)) > _MAX_UNIX_PATH:
            raise BootError(f"the socket path {socket_path} is longer than {_MAX_UNIX_PATH} bytes; "
                            f"give a shorter --socket-dir")
        if shutil.which("Xvfb") is None:
            raise BootError("Xvfb is not installed (not on PATH); install it with "
                            "`apt-get install xvfb`")
        if self.args.wm == "openbox" and shutil.which("openbox") is None:
            raise BootError("openbox is not installed; install it with `apt-get install openbox` "
                            "or pass --wm none")
        if self.pristine is not None:
            if not self.pristine.is_dir():
                raise BootError(f"--pristine-home {self.pristine} is not a folder")
            home, pristine = Path(os.path.realpath(self.home)), Path(os.path.realpath(self.pristine))
            if home == Path("/") or home == pristine or home in pristine.parents or pristine in home.parents:
                raise BootError(f"--home {self.home} and --pristine-home {self.pristine} must be "
                                f"separate folders (and home not /): home is emptied on every reset")

    # --- starting -------------------------------------------------------------------

    def _wait(self, seconds: float) -> None:
        if self.stop.wait(seconds):
            raise Stopped

    def _log_tail(self, name: str, lines: int = 8) -> str:
        try:
            text = (self.socket_dir / name).read_text(errors="replace").strip().splitlines()
        except OSError:
            return ""
        return " | ".join(text[-lines:])

    def _start_xvfb(self) -> str:
        width, height = self.args.screen
        _make_x11_socket_dir()
        read_end, write_end = os.pipe()
        argv = ["Xvfb"]
        if self.args.display != "auto":
            argv.append(self.args.display)
        argv += ["-screen", "0", f"{width}x{height}x24", "-nolisten", "tcp", "-noreset",
                 "-displayfd", str(write_end)]
        with open(self.socket_dir / "xvfb.log", "wb") as log:
            self.xvfb = self.registry.popen(argv, stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                                            pass_fds=(write_end,), preexec_fn=_die_with_parent)
        os.close(write_end)
        try:
            received = b""
            deadline = time.monotonic() + _XVFB_START_TIMEOUT_S
            while not received.endswith(b"\n"):
                if self.stop.is_set():
                    raise Stopped
                if self.xvfb.poll() is not None:
                    raise BootError(f"Xvfb exited with code {self.xvfb.returncode} while starting: "
                                    f"{self._log_tail('xvfb.log') or 'no output'}")
                if time.monotonic() > deadline:
                    raise BootError(f"Xvfb did not report a display within {_XVFB_START_TIMEOUT_S:g} s: "
                                    f"{self._log_tail('xvfb.log') or 'no output'}")
                ready, _, _ = select.select([read_end], [], [], 0.1)
                if ready:
                    chunk = os.read(read_end, 64)
                    if not chunk:  # Xvfb closed the pipe: it is exiting
                        try:
                            self.xvfb.wait(timeout=2)
                        except subprocess.TimeoutExpired:
                            raise BootError("Xvfb closed -displayfd without naming a display: "
                                            f"{self._log_tail('xvfb.log') or 'no output'}") from None
                        continue
                    received += chunk
        finally:
            os.close(read_end)
        display = f":{int(received.strip())}"
        self._wait_display(display)
        return display

    def _wait_display(self, display: str) -> None:
        from Xlib import error as xerror

        from deskdojo.vm.guest.xwindows import open_display

        deadline = time.monotonic() + 5
        while True:
            try:
                open_display(display).close()
                return
            except (xerror.DisplayError, ConnectionError, OSError) as error:
                if time.monotonic() > deadline:
                    raise BootError(f"Xvfb started but display {display} does not answer: {error}") from None
                self._wait(0.05)

    def _start_wm(self, display: str) -> None:
        if self.args.wm == "none":
            return
        from Xlib import X

        from deskdojo.vm.guest.xwindows import open_display

        env = {**os.environ, "DISPLAY": display, "HOME": str(self.home)}
        with open(self.socket_dir / "wm.log", "wb") as log:
            self.wm = self.registry.popen(["openbox", "--sm-disable"], env=env, cwd=str(self.home),
                                          stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                                          preexec_fn=_die_with_parent)
        connection = open_display(display)
        try:
            check = connection.intern_atom("_NET_SUPPORTING_WM_CHECK")
            root = connection.screen().root
            deadline = time.monotonic() + _WM_START_TIMEOUT_S
            while root.get_full_property(check, X.AnyPropertyType) is None:
                if self.wm.poll() is not None:
                    raise BootError(f"openbox exited with code {self.wm.returncode} while starting: "
                                    f"{self._log_tail('wm.log') or 'no output'}")
                if time.monotonic() > deadline:
                    raise BootError(f"openbox did not take over the display within "
                                    f"{_WM_START_TIMEOUT_S:g} s: {self._log_tail('wm.log')}")
                self._wait(0.02)
        finally:
            connection.close()

    def _accessibility_unavailable(self) -> str | None:
        """Why this guest runs no accessibility bus (None: it runs one)."""
        import importlib.util

        if shutil.which("dbus-daemon") is None or not os.path.exists(A11Y_BUS_CONFIG) \
                or not os.access(A11Y_REGISTRYD, os.X_OK):
            return "at-spi2-core is not installed"
        if importlib.util.find_spec("pyatspi") is None:  # nothing here could read the bus
            return f"pyatspi is not importable by {sys.executable}"
        return None

    def _start_accessibility_bus(self, display: str) -> None:
        """Start a private accessibility bus (a dbus-daemon with at-spi's config) and the
        AT-SPI registry, and point the apps this guest starts at it.

        Apps find the bus through AT_SPI_BUS_ADDRESS, so no session bus is needed for
        it: the session bus stays what it was (autolaunched per app session and killed
        on reset, with the settings daemons it starts), while the accessibility bus and
        the registry hold no user state and survive resets. The socket lives in a
        private folder under /tmp (a tmpfs in the container).
        """
        self.a11y_note = self._accessibility_unavailable() or ""
        if self.a11y_note:
            os.environ.setdefault("NO_AT_BRIDGE", "1")  # GTK must not look for a bus
            return
        import tempfile

        runtime = self.a11y_runtime = tempfile.mkdtemp(prefix="deskdojo-a11y-", dir="/tmp")
        env = {**os.environ, "DISPLAY": display, "HOME": str(self.home)}
        read_end, write_end = os.pipe()
        with open(self.socket_dir / "a11y.log", "ab") as log:
            bus = self.registry.popen(
                ["dbus-daemon", f"--config-file={A11Y_BUS_CONFIG}", "--nofork",
                 f"--print-address={write_end}", f"--address=unix:path={runtime}/bus"],
                env=env, stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                pass_fds=(write_end,), preexec_fn=_die_with_parent)
        os.close(write_end)
        self.a11y.append(bus)
        try:
            received = b""
            deadline = time.monotonic() + _A11Y_START_TIMEOUT_S
            while not received.endswith(b"\n"):
                if bus.poll() is not None or time.monotonic() > deadline:
                    raise BootError(f"the accessibility bus (dbus-daemon) did not start: "
                                    f"{self._log_tail('a11y.log') or 'no output'}")
                ready, _, _ = select.select([read_end], [], [], 0.05)
                if ready:
                    chunk = os.read(read_end, 512)
                    if not chunk:
                        raise BootError(f"the accessibility bus exited while starting: "
                                        f"{self._log_tail('a11y.log') or 'no output'}")
                    received += chunk
        finally:
            os.close(read_end)
        address = received.decode().strip()
        os.environ["AT_SPI_BUS_ADDRESS"] = address
        os.environ.pop("NO_AT_BRIDGE", None)
        os.environ["QT_ACCESSIBILITY"] = "1"  # Qt apps publish their widgets only when asked
        os.environ["QT_LINUX_ACCESSIBILITY_ALWAYS_ON"] = "1"
        with open(self.socket_dir / "a11y.log", "ab") as log:
            self.a11y.append(self.registry.popen(
                [A11Y_REGISTRYD], env={**env, "AT_SPI_BUS_ADDRESS": address},
                stdin=subprocess.DEVNULL, stdout=log, stderr=log, preexec_fn=_die_with_parent))
        # Apps start later (exec), but wait until the registry answers, so the first app
        # registers with this one and not with one that the bus would activate for it.
        deadline = time.monotonic() + _A11Y_START_TIMEOUT_S
        while "SpiRegistry daemon is running" not in self._log_tail("a11y.log", 20):
            if self.a11y[-1].poll() is not None or time.monotonic() > deadline:
                raise BootError(f"the AT-SPI registry did not start: "
                                f"{self._log_tail('a11y.log') or 'no output'}")
            self._wait(0.01)

    def _write_boot_file(self, display: str) -> None:
        info = {"display": display, "pid": os.getpid(), "screen": list(self.args.screen),
                "protocol": PROTOCOL, "socket": str(self.socket_dir / SOCKET_NAME),
                "xvfb_pid": self.xvfb.pid if self.xvfb else None,
                "wm_pid": self.wm.pid if self.wm else None,
                "a11y_pids": [proc.pid for proc in self.a11y], "a11y_note": self.a11y_note}
        temporary = self.socket_dir / f".{BOOT_FILE}.{os.getpid()}.tmp"
        temporary.write_text(json.dumps(info) + "\n")
        os.chmod(temporary, 0o644)
        os.replace(temporary, self.socket_dir / BOOT_FILE)

    def start(self) -> None:
        self._check()
        self.socket_dir.mkdir(parents=True, exist_ok=True)
        for stale in (BOOT_FILE, SOCKET_NAME):
            try:
                (self.socket_dir / stale).unlink()
            except FileNotFoundError:
                pass
        become_subreaper()
        keep_large_buffers()
        display = self._start_xvfb()
        os.environ["DISPLAY"] = display
        self.home.mkdir(parents=True, exist_ok=True)
        if self.pristine is not None:
            restore_home(self.home, self.pristine, keep=[self.socket_dir])
        os.environ["HOME"] = str(self.home)
        state_dir = Path(os.environ.get("DESKDOJO_STATE_DIR") or self.home / ".deskdojo" / "state")
        state_dir.mkdir(parents=True, exist_ok=True)
        self._start_wm(display)
        self._start_accessibility_bus(display)
        config = GuestConfig(display=display, socket_dir=self.socket_dir, home=self.home,
                             state_dir=state_dir, pristine_home=self.pristine,
                             xserver_pid=self.xvfb.pid if self.xvfb else None,
                             wm_pid=self.wm.pid if self.wm else None,
                             service_pids=tuple(proc.pid for proc in self.a11y),
                             on_shutdown=self.stop.set)
        self.service = GuestService(config, self.registry)
        self.server = GuestHTTPServer(self.socket_dir / SOCKET_NAME, self.service,
                                      verbose=self.args.verbose)
        self._serve_thread = threading.Thread(target=self.server.serve_forever,
                                              kwargs={"poll_interval": 0.2},
                                              name="guest-server", daemon=True)
        self._serve_thread.start()
        self._write_boot_file(display)

    # --- running and stopping --------------------------------------------------------

    def watch(self) -> None:
        """Block until told to stop; the sandbox is dead if Xvfb or the WM dies."""
        while not self.stop.wait(1.0):
            self.registry.reap()
            for name, proc in (("Xvfb", self.xvfb), ("openbox", self.wm)):
                if proc is not None and proc.poll() is not None:
                    print(f"deskdojo guest boot: {name} exited with code {proc.returncode}; "
                          f"stopping the sandbox", file=sys.stderr)
                    self.exit_code = 1
                    self.stop.set()

    def shutdown(self) -> None:
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()  # also removes the socket
        if self.service is not None:
            self.service.close()
        try:
            (self.socket_dir / BOOT_FILE).unlink()
        except FileNotFoundError:
            pass
        # Apps first (they may want the X server to exit cleanly), then Xvfb itself.
        xvfb_pid = self.xvfb.pid if self.xvfb else None
        apps = [pid for pid in descendants(os.getpid()) if pid != xvfb_pid
                and (xvfb_pid is None or pid not in descendants(xvfb_pid))]
        for pid in apps:
            kill_group(pid, signal.SIGTERM)
            try:
                os.kill(pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
        deadline = time.monotonic() + 1.0
        while time.monotonic() < deadline and self._alive(apps):
            self.registry.reap()
            time.sleep(0.02)
        self.registry.kill_descendants(spare_trees={xvfb_pid} if xvfb_pid else set())
        if self.xvfb is not None and self.xvfb.poll() is None:
            self.xvfb.terminate()
            try:
                self.xvfb.wait(timeout=3)
            except subprocess.TimeoutExpired:
                self.xvfb.kill()
                self.xvfb.wait()
        self.registry.kill_descendants()
        if self.a11y_runtime:
            shutil.rmtree(self.a11y_runtime, ignore_errors=True)

    def _alive(self, pids: Sequence[int]) -> bool:
        table = process_table()
        return any(pid in table and table[pid][1] not in "ZX" for pid in pids)


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    boot = Boot(args)

    def on_signal(signum: int, frame: Any) -> None:
        boot.stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    try:
        boot.start()
        boot.watch()
    except Stopped:
        pass
    except BootError as error:
        print(f"deskdojo guest boot: {error}", file=sys.stderr)
        boot.exit_code = 1
    except Exception as error:  # noqa: BLE001 - one clear line, then clean up
        print(f"deskdojo guest boot: failed: {type(error).__name__}: {error}", file=sys.stderr)
        boot.exit_code = 1
    finally:
        boot.shutdown()
    return boot.exit_code


if __name__ == "__main__":
    sys.exit(main())
