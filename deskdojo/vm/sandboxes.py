"""Sandboxes that outlive the command that started them (``deskdojo sandbox up``).

Each is found by name under the sandboxes root, and what the host does to it comes only
from the host-written ``sandbox.json`` (see ``vm.folders``): docker ones are removed by
container id, xvfb ones by the process group the host started, after checking that the
PID still names that process (its start time). Nothing a guest can write is read here.
"""

from __future__ import annotations

import os
import signal
import stat
import time
from pathlib import Path
from typing import Any

from deskdojo.core.errors import SandboxError, SandboxTrustError
from deskdojo.vm.base import GuestSandbox
from deskdojo.vm.config import SandboxConfig
from deskdojo.vm.folders import (
    NAME_PATTERN, SOCKET_FOLDER, SOCKET_NAME, SandboxState, check_name, container_peer,
    process_token, read_state, remove_sandbox_folder, sandbox_folder, sandboxes_root, session_peer,
)


class AttachedSandbox(GuestSandbox):
    """A sandbox another process started; closing it only drops the connection."""


def start_persistent(config: SandboxConfig, name: str | None = None) -> Any:
    if name is not None:
        check_name(name)
    if config.provider == "docker":
        from deskdojo.vm.docker import DockerProvider

        sandbox = DockerProvider(config).start(name, persistent=True)
    elif config.provider == "xvfb":
        from deskdojo.vm.xvfb import XvfbProvider

        sandbox = XvfbProvider(config).start(name)
    else:
        raise SandboxError(f"`sandbox up` supports docker and xvfb, not {config.provider}")
    sandbox.client.close()  # leave it running; later commands attach by name
    return sandbox


def _trust(state: SandboxState) -> dict[str, Any]:
    """GuestClient arguments that trust the socket only if it is the guest's and answered
    by the process the host recorded (the container, or the session it started)."""
    if state.provider == "docker" and state.container_id:
        check = container_peer(state.container_id, state.guest_uid)
    elif state.provider == "xvfb" and state.pid:
        check = session_peer(state.pid, state.guest_uid)
    else:
        raise SandboxError(f"sandbox {state.name!r} has an unknown provider {state.provider!r}")
    return {"socket_owner": state.guest_uid, "peer_check": check}


def _client(state: SandboxState, timeout: float = 30.0):
    from deskdojo.vm.client import GuestClient

    sock = sandbox_folder(state.name) / SOCKET_FOLDER / SOCKET_NAME
    return GuestClient(sock, timeout=timeout, **_trust(state))


def trust_for_socket(socket_path: str | os.PathLike[str]) -> dict[str, Any]:
    """For a client of another process's sandbox known by its socket path (the panel
    watching a run): the checks that sandbox's host record asks for. Only
    ``<root>/<name>/sock/control.sock`` paths of recorded sandboxes are accepted."""
    path = Path(socket_path)
    root = sandboxes_root()
    if path.name != SOCKET_NAME or path.parent.name != SOCKET_FOLDER or path.parent.parent.parent != root:
        raise SandboxTrustError(f"{path} is not a sandbox's control socket under {root}: refusing to connect")
    return _trust(read_state(path.parent.parent.name))


def attach(name: str) -> GuestSandbox:
    """Connect to a running sandbox by name; closing the result leaves it running."""
    state = read_state(name)
    client = _client(state)
    try:
        health = client.health()
    except SandboxTrustError:
        client.close()
        raise
    except SandboxError as exc:
        client.close()
        raise SandboxError(f"sandbox {name} does not answer ({exc}); stop it with "
                           f"`deskdojo sandbox down {name}`") from None
    return AttachedSandbox(name, client, tuple(health["screen"]))


def _sandbox_names() -> list[str]:
    root = sandboxes_root()
    return sorted(entry.name for entry in os.scandir(root)
                  if NAME_PATTERN.fullmatch(entry.name) and stat.S_ISDIR(entry.stat(follow_symlinks=False).st_mode))


def _xvfb_alive(state: SandboxState) -> bool:
    return bool(state.pid) and process_token(state.pid) == state.pid_token


def list_persistent() -> list[dict[str, str]]:
    containers: dict[str, str] = {}
    rows = []
    for name in _sandbox_names():
        try:
            state = read_state(name)
        except SandboxError:
            rows.append({"name": name, "provider": "unknown", "state": "no sandbox.json (stale folder)"})
            continue
        if state.provider == "xvfb":
            running = "running" if _xvfb_alive(state) else "dead"
        else:
            if not containers:
                from deskdojo.vm.docker import labelled_containers

                try:
                    containers = {row["id"]: row["state"] for row in labelled_containers()}
                except SandboxError:
                    containers = {"": "engine not reachable"}
            running = next((value for cid, value in containers.items()
                            if cid and state.container_id and state.container_id.startswith(cid)), "gone")
        rows.append({"name": name, "provider": state.provider, "state": running})
    return rows


def stop_persistent(name: str) -> list[str]:
    """Stop sandbox ``name`` by what the host recorded, then delete its folder."""
    check_name(name)
    try:
        state = read_state(name)
    except SandboxError:
        if not sandbox_folder(name).exists():
            raise
        state = None  # a stale folder: nothing to signal, only the folder to remove
    if state is not None and state.provider == "docker" and state.container_id:
        from deskdojo.vm.docker import docker

        docker("rm", "-f", state.container_id, check=False)
    elif state is not None and state.provider == "xvfb" and _xvfb_alive(state):
        pid = int(state.pid)  # type: ignore[arg-type]
        os.killpg(pid, signal.SIGTERM)
        deadline = time.monotonic() + 5
        while _xvfb_alive(state) and time.monotonic() < deadline:
            time.sleep(0.05)
        if _xvfb_alive(state):
            os.killpg(pid, signal.SIGKILL)
    remove_sandbox_folder(name)
    return [name]


def stop_all() -> list[str]:
    stopped = []
    for name in _sandbox_names():
        stopped += stop_persistent(name)
    try:
        from deskdojo.vm.docker import remove_all

        stopped += [n for n in remove_all() if n not in stopped]
    except SandboxError:
        pass  # no engine: nothing of docker's to stop
    return stopped
