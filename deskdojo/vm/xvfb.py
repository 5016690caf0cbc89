"""The xvfb provider: the same guest server and apps as host processes on a private display.

For machines without Docker. Each sandbox is one process group (boot.py, Xvfb, the
window manager, the apps); closing it ends that group, by the PID the host started.

Isolation: with bubblewrap (Debian ``bubblewrap``) each sandbox gets its own network
(loopback only), PID, IPC and UTS namespaces and a filesystem view of the system folders
read-only plus its own socket folder and home, nothing else of the host's. Started as
root, the guest runs as the unprivileged ``deskdojo-guest`` account with no capabilities
and no-new-privileges; as root without bubblewrap the provider refuses to start.
Without bubblewrap (not root) the guest runs as the calling user, with the host's
network and files: use docker where you can.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import deskdojo
from deskdojo.core.errors import EngineUnavailable, SandboxStartError
from deskdojo.vm.base import GuestSandbox, new_sandbox_name
from deskdojo.vm.config import SandboxConfig
from deskdojo.vm.folders import (
    SOCKET_FOLDER, SOCKET_NAME, SandboxState, check_name, make_sandbox_folder, process_token,
    remove_sandbox_folder, session_peer, write_state,
)

PRISTINE_FOLDERS = ("Desktop", "Documents")
GUEST_USER = "deskdojo-guest"
SYSTEM_FOLDERS = ("/usr", "/etc")
"""Shown to the guest read-only; /bin, /lib, /lib64 and /sbin follow as links or binds."""
PASSED_ENV = ("PATH", "LANG", "LANGUAGE", "LC_ALL", "LC_CTYPE", "TZ", "PYTHONPATH")
"""The only host environment variables a guest sees (no tokens or credentials)."""

_account_lock = threading.Lock()


def _kill_group(pgid: int, sig: int) -> None:
    try:
        os.killpg(pgid, sig)
    except ProcessLookupError:
        pass


def _signal_members(pgid: int, sig: int) -> None:
    """Signal every process in group ``pgid`` but its leader. The leader (bubblewrap, our
    child) must outlive what it runs: if it died first, its children would be orphaned to
    an init that may never reap them, and the group would never empty."""
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit() or int(entry.name) == pgid:
            continue
        try:
            fields = Path(entry.path, "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[2]) == pgid:
            try:
                os.kill(int(entry.name), sig)
            except ProcessLookupError:
                pass


@dataclass(frozen=True, slots=True)
class Isolation:
    """How this machine's xvfb sandboxes are isolated (what ``doctor`` reports)."""

    guest_uid: int
    guest_gid: int
    guest_user: str
    namespaces: bool  # bubblewrap: own network, PIDs, IPC, filesystem view
    drops_root: bool

    def describe(self) -> str:
        who = f"as {self.guest_user} (uid {self.guest_uid})" if self.guest_uid >= 0 else \
            f"as {self.guest_user} (created at the first start)"
        if self.drops_root and not self.namespaces:
            return "refuses to start as root without bubblewrap (it would run guests as root)"
        if self.namespaces:
            return (f"{who}, no capabilities, in bubblewrap namespaces: loopback-only network, "
                    f"own PIDs, system folders read-only, no host files but its own folders")
        return (f"{who}, with the host's network and a view of the host's files "
                f"(install bubblewrap, or use docker)")


def guest_account() -> tuple[int, int]:
    """The unprivileged account root runs guests as (created on first use, like a package
    would: a system account with no home and no login shell)."""
    import pwd

    with _account_lock:
        try:
            entry = pwd.getpwnam(GUEST_USER)
        except KeyError:
            useradd = shutil.which("useradd") or "/usr/sbin/useradd"
            proc = subprocess.run([useradd, "--system", "--user-group", "--no-create-home",
                                   "--home-dir", "/nonexistent", "--shell", "/usr/sbin/nologin",
                                   GUEST_USER], capture_output=True, text=True, check=False)
            if proc.returncode not in (0, 9):  # 9: it exists (another process made it)
                raise SandboxStartError(f"could not create the guest account {GUEST_USER}: "
                                        f"{proc.stderr.strip()} — create it with `useradd --system "
                                        f"--user-group {GUEST_USER}`") from None
            entry = pwd.getpwnam(GUEST_USER)
    return entry.pw_uid, entry.pw_gid


def isolation(*, create_account: bool = True) -> Isolation:
    """This machine's isolation; ``create_account=False`` reports without creating the
    guest account (uid -1 until it exists), as ``doctor`` does."""
    import pwd

    namespaces = shutil.which("bwrap") is not None
    if os.geteuid() == 0:
        if create_account:
            uid, gid = guest_account()
        else:
            try:
                entry = pwd.getpwnam(GUEST_USER)
                uid, gid = entry.pw_uid, entry.pw_gid
            except KeyError:
                uid = gid = -1
        return Isolation(uid, gid, GUEST_USER, namespaces, drops_root=True)
    return Isolation(os.getuid(), os.getgid(), pwd.getpwuid(os.getuid()).pw_name, namespaces,
                     drops_root=False)


def _with_parents(path: Path, made: set[Path]) -> list[str]:
    """bwrap arguments that create ``path``'s missing ancestors as 0755 folders (its own
    folders are 0700 otherwise, which an unprivileged guest cannot pass through)."""
    args: list[str] = []
    for parent in reversed(path.parents):
        if parent == Path("/") or parent in made or str(parent) in SYSTEM_FOLDERS:
            continue
        made.add(parent)
        args += ["--perms", "0755", "--dir", str(parent)]
    return args


def bwrap_prefix(*, read_only: list[Path], writable: list[Path], workdir: Path) -> list[str]:
    """The bubblewrap command that runs the guest: new network/PID/IPC/UTS namespaces, a
    fresh /tmp, /usr and /etc read-only, ``read_only`` and ``writable`` at their own paths."""
    # No --die-with-parent: its death signal follows the *thread* that started bwrap, and
    # pools start sandboxes from short-lived worker threads. --as-pid-1: the guest is the
    # namespace's init, so when it exits everything in it goes and bwrap reaps it.
    args = ["bwrap", "--unshare-net", "--unshare-pid", "--unshare-ipc", "--unshare-uts",
            "--unshare-cgroup-try", "--as-pid-1"]
    for folder in SYSTEM_FOLDERS:
        args += ["--ro-bind", folder, folder]
    for link in ("/bin", "/lib", "/lib64", "/sbin"):
        if os.path.islink(link):
            args += ["--symlink", os.readlink(link), link]
        elif os.path.isdir(link):
            args += ["--ro-bind", link, link]
    args += ["--proc", "/proc", "--dev", "/dev", "--perms", "1777", "--tmpfs", "/tmp"]
    made: set[Path] = {Path("/tmp")}
    for path in read_only:
        args += _with_parents(path, made) + ["--ro-bind", str(path), str(path)]
    for path in writable:
        args += _with_parents(path, made) + ["--bind", str(path), str(path)]
    return args + ["--chdir", str(workdir), "--"]


def drop_privileges(uid: int, gid: int) -> list[str]:
    """``setpriv`` run inside the namespaces: become ``uid`` with no capabilities at all."""
    return ["setpriv", f"--reuid={uid}", f"--regid={gid}", "--clear-groups", "--inh-caps=-all",
            "--bounding-set=-all", "--no-new-privs"]


def _python_folders() -> list[Path]:
    """What the guest needs to run ``python -m deskdojo.vm.guest.boot``: the interpreter's
    prefixes and the deskdojo package (an editable install lives outside them)."""
    folders = {Path(sys.prefix), Path(sys.base_prefix), Path(deskdojo.__file__).resolve().parent}
    folders = {f for f in folders if not any(str(f).startswith(s + "/") or str(f) == s
                                             for s in SYSTEM_FOLDERS)}
    return sorted(f for f in folders if not any(o in f.parents for o in folders))


class XvfbSandbox(GuestSandbox):
    def __init__(self, name: str, proc: subprocess.Popen, folder: Path, client,
                 screen_size: tuple[int, int]):
        super().__init__(name, client, screen_size)
        self.proc = proc
        self.folder = folder

    def _is_running(self) -> bool:
        return self.proc.poll() is None

    def _stop(self) -> None:
        if self.proc.poll() is None:
            self._signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                pass
        self._signal(signal.SIGKILL)  # stragglers that ignored SIGTERM
        try:
            self.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            pass
        remove_sandbox_folder(self.name)

    def kill(self) -> None:
        """Kill the whole desktop abruptly, as a crash would (for fault tests)."""
        self._signal(signal.SIGKILL)
        self.proc.wait(timeout=5)

    def _signal(self, sig: int) -> None:
        """The group the host started (pid = group id): its members first, and the leader
        only once they are gone or after a grace period (see ``_signal_members``)."""
        pgid = self.proc.pid
        _signal_members(pgid, sig)
        try:
            self.proc.wait(timeout=0.5 if sig == signal.SIGKILL else 0.1)
        except subprocess.TimeoutExpired:
            if sig == signal.SIGKILL:
                _kill_group(pgid, sig)


class XvfbProvider:
    """Starts sandboxes as host processes: ``python -m deskdojo.vm.guest.boot``, inside
    bubblewrap and as an unprivileged account where it can (see the module docstring)."""

    def __init__(self, config: SandboxConfig | None = None):
        self.config = config or SandboxConfig(provider="xvfb")
        if shutil.which("Xvfb") is None:
            raise EngineUnavailable("Xvfb is not installed — `apt-get install -y xvfb openbox "
                                    "xdotool xterm` (or `make setup`)")
        self.isolation = isolation()
        if self.isolation.drops_root and not self.isolation.namespaces:
            raise EngineUnavailable("the xvfb provider runs guests unprivileged, and as root that "
                                    "needs bubblewrap: `apt-get install -y bubblewrap` (or `make "
                                    "setup`), or use `--provider docker`")

    def start(self, name: str | None = None) -> XvfbSandbox:
        from deskdojo.vm.client import GuestClient

        name = check_name(name or new_sandbox_name("xvfb"))
        iso = self.isolation
        folder = make_sandbox_folder(name)
        try:
            socket_dir, home, pristine = (folder / SOCKET_FOLDER, folder / "home", folder / "pristine")
            for path in (socket_dir, home):
                path.mkdir(mode=0o700)
                if iso.drops_root:
                    os.chown(path, iso.guest_uid, iso.guest_gid)
            pristine.mkdir(mode=0o755)
            for sub in PRISTINE_FOLDERS:
                (pristine / sub).mkdir(mode=0o755)
            proc = self._spawn(folder, socket_dir, home, pristine)
            write_state(folder, SandboxState(name=name, provider="xvfb", guest_uid=iso.guest_uid,
                                             pid=proc.pid, pid_token=process_token(proc.pid)))
        except BaseException:
            remove_sandbox_folder(name)
            raise
        client = GuestClient(socket_dir / SOCKET_NAME, timeout=self.config.request_timeout_s,
                             socket_owner=iso.guest_uid, peer_check=session_peer(proc.pid, iso.guest_uid))
        sandbox = XvfbSandbox(name, proc, folder, client, self.config.screen)
        try:
            self._wait_ready(sandbox, socket_dir / SOCKET_NAME)
        except BaseException:
            sandbox.close()
            raise
        return sandbox

    def _spawn(self, folder: Path, socket_dir: Path, home: Path, pristine: Path) -> subprocess.Popen:
        width, height = self.config.screen
        env = {key: os.environ[key] for key in PASSED_ENV if key in os.environ}
        env.setdefault("PATH", "/usr/local/bin:/usr/bin:/bin")
        env.update(HOME=str(home), DESKDOJO_STATE_DIR=str(home / ".deskdojo" / "state"),
                   PYTHONDONTWRITEBYTECODE="1")
        wm = "openbox" if shutil.which("openbox") else "none"
        argv = [sys.executable, "-m", "deskdojo.vm.guest.boot", "--socket-dir", str(socket_dir),
                "--display", "auto", "--screen", f"{width}x{height}", "--home", str(home),
                "--pristine-home", str(pristine), "--wm", wm]
        if self.isolation.drops_root:
            argv = drop_privileges(self.isolation.guest_uid, self.isolation.guest_gid) + argv
        if self.isolation.namespaces:
            argv = bwrap_prefix(read_only=_python_folders() + [pristine],
                                writable=[socket_dir, home], workdir=home) + argv
        log = open(folder / "boot.log", "wb")  # a file, not a pipe: nobody drains a pipe
        try:
            return subprocess.Popen(argv, env=env, cwd=str(home), start_new_session=True,
                                    stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT)
        finally:
            log.close()

    def _wait_ready(self, sandbox: XvfbSandbox, sock: Path) -> None:
        deadline = time.monotonic() + self.config.start_timeout_s
        while time.monotonic() < deadline:
            if sandbox.proc.poll() is not None:
                output = (sandbox.folder / "boot.log").read_text(errors="replace")
                raise SandboxStartError(f"sandbox {sandbox.name} exited during start-up "
                                        f"(code {sandbox.proc.returncode}):\n{output[-2000:]}")
            if sock.exists():
                sandbox.client.wait_ready(timeout=max(1.0, deadline - time.monotonic()))
                return
            time.sleep(0.01)
        raise SandboxStartError(f"sandbox {sandbox.name} did not answer within "
                                f"{self.config.start_timeout_s:g} s")
