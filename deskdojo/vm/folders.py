"""Sandbox folders, and the checks the host makes before it trusts anything in them.

A guest can write its socket folder (and, for xvfb, its home); it can write nothing
else the host reads. Each sandbox has one host-owned folder under ``sandboxes_root()``:

```
<root>/<name>/           host-owned, 0711 inside a 0700 root (no guest can list or write it)
  sandbox.json           host-written: provider, the pid + start time the host started,
                         container id, the guest's uid (never mounted into the guest)
  boot.log               host-opened log of an xvfb sandbox's boot process
  sock/                  the guest's socket folder: control.sock lives here
  home/ pristine/        an xvfb sandbox's home and the copy it is restored from
```

The host acts only on ``sandbox.json`` (kind, pid, uid) and connects to ``sock/control.sock``
only when it is a real socket, not a symlink, owned by the guest's uid, and the process
answering on it is the sandbox's own (``SO_PEERCRED``). Names follow ``NAME_PATTERN``
and every delete is of a folder directly under the root.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import stat
import struct
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable

from deskdojo.core.errors import SandboxError, SandboxTrustError

NAME_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,62}")
STATE_FILE = "sandbox.json"
SOCKET_FOLDER = "sock"
SOCKET_NAME = "control.sock"


def sandboxes_root() -> Path:
    """``/tmp/deskdojo-<uid>``: owned by this user; each sandbox gets a folder in it.

    Kept short because a unix socket path is limited to 107 bytes. Private (0700): guests
    reach their own folders only through what their provider mounts for them.
    """
    root = Path(os.environ.get("DESKDOJO_SOCKET_ROOT") or f"/tmp/deskdojo-{os.getuid()}")
    root.mkdir(mode=0o700, parents=True, exist_ok=True)
    info = root.lstat()
    if not stat.S_ISDIR(info.st_mode) or info.st_uid != os.getuid():
        raise SandboxTrustError(f"the sandboxes folder {root} is not a folder owned by uid "
                                f"{os.getuid()}; remove it or set DESKDOJO_SOCKET_ROOT to a folder of yours")
    if stat.S_IMODE(info.st_mode) & 0o022:
        raise SandboxTrustError(f"the sandboxes folder {root} is writable by others; "
                                f"`chmod 711 {root}` or set DESKDOJO_SOCKET_ROOT")
    return root


def check_name(name: str) -> str:
    """A sandbox name, or SandboxError: letters, digits, ``-`` and ``_``, at most 63
    characters, no separators and no dots (so never ``..``)."""
    if not isinstance(name, str) or not NAME_PATTERN.fullmatch(name):
        raise SandboxError(f"invalid sandbox name {name!r}: use letters, digits, '-' and '_' "
                           f"(at most 63, starting with a letter or digit)")
    return name


def sandbox_folder(name: str) -> Path:
    return sandboxes_root() / check_name(name)


def make_sandbox_folder(name: str) -> Path:
    """The sandbox's host-owned folder, new (an existing one is an error: names are unique)."""
    folder = sandbox_folder(name)
    try:
        folder.mkdir(mode=0o711)
    except FileExistsError:
        raise SandboxError(f"a sandbox named {name!r} exists already — pick another name or "
                           f"`deskdojo sandbox down {name}`") from None
    folder.chmod(0o711)  # mkdir's mode is masked by the umask
    return folder


def remove_sandbox_folder(name: str) -> None:
    """Delete ``<root>/<name>`` and nothing else: the name is checked and the folder must be
    a real folder directly under the root (rmtree never follows the guest's symlinks)."""
    root = sandboxes_root()
    folder = root / check_name(name)
    try:
        info = folder.lstat()
    except FileNotFoundError:
        return
    if not stat.S_ISDIR(info.st_mode) or folder.resolve().parent != root.resolve():
        raise SandboxTrustError(f"refusing to delete {folder}: not a sandbox folder under {root}")
    shutil.rmtree(folder, ignore_errors=True)


@dataclass(frozen=True, slots=True)
class SandboxState:
    """What the host recorded when it started a sandbox (``sandbox.json``)."""

    name: str
    provider: str
    guest_uid: int
    pid: int | None = None
    pid_token: str | None = None
    container_id: str | None = None


def write_state(folder: Path, state: SandboxState) -> None:
    temporary = folder / f".{STATE_FILE}.{os.getpid()}.tmp"
    temporary.write_text(json.dumps(asdict(state)) + "\n")
    temporary.chmod(0o600)
    os.replace(temporary, folder / STATE_FILE)


def read_state(name: str) -> SandboxState:
    """The host's record of sandbox ``name``; SandboxError when there is none. Read only from
    a regular file owned by this user (never through a symlink)."""
    path = sandbox_folder(name) / STATE_FILE
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
    except FileNotFoundError:
        raise SandboxError(f"no sandbox named {name!r} — list them with `deskdojo sandbox list`") from None
    except OSError as exc:
        raise SandboxTrustError(f"cannot read {path} safely ({exc}); remove the folder") from None
    with os.fdopen(fd) as handle:
        info = os.fstat(handle.fileno())
        if not stat.S_ISREG(info.st_mode) or info.st_uid != os.getuid():
            raise SandboxTrustError(f"{path} is not a file of uid {os.getuid()}; refusing to act on it")
        try:
            data = json.load(handle)
            return SandboxState(**data)
        except (ValueError, TypeError) as exc:
            raise SandboxError(f"{path} is damaged ({exc}); remove the sandbox with "
                               f"`deskdojo sandbox down {name}`") from None


def process_token(pid: int) -> str | None:
    """``pid:starttime``: names a process without being fooled by PID reuse."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return f"{pid}:{fields[19]}"
    except (OSError, IndexError):
        return None


# --- the control socket ----------------------------------------------------------------

PeerCheck = Callable[[int, int], str | None]
"""``(peer_pid, peer_uid) -> None`` when the peer is the sandbox's own, else why not."""


def check_socket_path(path: Path, owner_uid: int) -> None:
    """Before connecting: ``path`` is a socket (not a symlink) owned by ``owner_uid`` in a
    real folder (not a symlink). SandboxTrustError otherwise."""
    folder = path.parent.lstat()
    info = path.lstat()
    if not stat.S_ISDIR(folder.st_mode):
        raise SandboxTrustError(f"{path.parent} is not a folder (a symlink?): refusing to connect")
    if not stat.S_ISSOCK(info.st_mode):
        kind = "a symlink" if stat.S_ISLNK(info.st_mode) else "not a socket"
        raise SandboxTrustError(f"{path} is {kind}: refusing to connect (the guest may have replaced it)")
    if info.st_uid != owner_uid:
        raise SandboxTrustError(f"{path} belongs to uid {info.st_uid}, not the guest's uid {owner_uid}: "
                                f"refusing to connect")


def peer_credentials(sock: socket.socket) -> tuple[int, int]:
    """The connected peer's (pid, uid), as the kernel reports them (``SO_PEERCRED``)."""
    raw = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    pid, uid, _gid = struct.unpack("3i", raw)
    return pid, uid


def container_peer(container_id: str, guest_uid: int) -> PeerCheck:
    """The peer runs as ``guest_uid`` inside the container ``container_id`` (its cgroup)."""

    def check(pid: int, uid: int) -> str | None:
        if uid != guest_uid:
            return f"the peer runs as uid {uid}, not the guest's {guest_uid}"
        try:
            cgroup = Path(f"/proc/{pid}/cgroup").read_text()
        except OSError as exc:
            return f"the peer's cgroup cannot be read ({exc})"
        if container_id not in cgroup:
            return f"the peer (pid {pid}) is not in container {container_id[:12]}"
        return None

    return check


def session_peer(session_id: int, guest_uid: int) -> PeerCheck:
    """The peer runs as ``guest_uid`` in the session the host started for the sandbox."""

    def check(pid: int, uid: int) -> str | None:
        if uid != guest_uid:
            return f"the peer runs as uid {uid}, not the guest's {guest_uid}"
        try:
            sid = os.getsid(pid)
        except OSError as exc:
            return f"the peer's session cannot be read ({exc})"
        if sid != session_id:
            return f"the peer (pid {pid}) is not in the sandbox's session {session_id}"
        return None

    return check
