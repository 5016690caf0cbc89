"""The docker provider: each sandbox is a locked-down container running the guest server.

No network, ``--init``, every capability dropped, no-new-privileges, read-only root with
tmpfs where the desktop writes, memory/pids/CPU limits, a non-root user, and no host
path but the sandbox's own socket folder. Containers carry the ``deskdojo=1`` label and
their owner process, so orphans of a crashed run are reaped at the next start-up.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from pathlib import Path

from deskdojo.core.errors import EngineUnavailable, SandboxError, SandboxStartError, SandboxTrustError
from deskdojo.vm.base import GuestSandbox, new_sandbox_name
from deskdojo.vm.config import SandboxConfig
from deskdojo.vm.folders import (
    SOCKET_FOLDER, SOCKET_NAME, SandboxState, check_name, container_peer, make_sandbox_folder,
    process_token, read_state, remove_sandbox_folder, sandbox_folder, write_state,
)

LABEL = "deskdojo"
OWNER_LABEL = "deskdojo.owner"
PERSISTENT_OWNER = "persistent"
GUEST_SOCKET_DIR = "/run/deskdojo"
GUEST_HOME = "/home/dojo"
GUEST_UID = 1000
ENGINE_HINT = ("start it with `nohup dockerd >/var/log/deskdojo-dockerd.log 2>&1 &` "
               "(or `make setup`), or use `--provider xvfb`")


def docker_binary() -> str:
    path = shutil.which("docker")
    if path is None:
        raise EngineUnavailable("the docker command is not installed — install it with "
                                "`apt-get install -y docker.io` (or `make setup`), "
                                "or use `--provider xvfb`")
    return path


def docker(*args: str, timeout: float = 60.0, check: bool = True,
           input: bytes | None = None) -> subprocess.CompletedProcess[str]:
    """Run the docker CLI; engine problems become EngineUnavailable with the fix."""
    try:
        proc = subprocess.run([docker_binary(), *args], capture_output=True, text=True,
                              timeout=timeout, input=input.decode() if input else None)
    except subprocess.TimeoutExpired:
        raise EngineUnavailable(f"`docker {args[0]}` did not answer within {timeout:g} s — "
                                f"is the engine healthy? {ENGINE_HINT}") from None
    if check and proc.returncode != 0:
        err = proc.stderr.strip()
        if "Cannot connect to the Docker daemon" in err or "docker daemon" in err.lower() \
                or "connect: no such file" in err:
            host = os.environ.get("DOCKER_HOST", "unix:///var/run/docker.sock")
            raise EngineUnavailable(f"docker engine not reachable at {host} — {ENGINE_HINT}")
        raise SandboxError(f"`docker {' '.join(args[:2])}` failed: {err[-500:]}")
    return proc


def engine_available() -> bool:
    try:
        docker("info", "--format", "{{.ServerVersion}}", timeout=10)
        return True
    except (EngineUnavailable, SandboxError):
        return False


def _owner_alive(owner: str) -> bool:
    if owner == PERSISTENT_OWNER:
        return True
    try:
        pid = int(owner.split(":")[0])
    except ValueError:
        return False
    return process_token(pid) == owner


def labelled_containers() -> list[dict[str, str]]:
    """Every container labelled ``deskdojo=1``: id, name, owner, state."""
    proc = docker("ps", "-a", "--filter", f"label={LABEL}=1", "--format",
                  "{{.ID}}\t{{.Names}}\t{{.Label \"" + OWNER_LABEL + "\"}}\t{{.State}}")
    rows = []
    for line in proc.stdout.splitlines():
        cid, name, owner, state = (line.split("\t") + ["", "", "", ""])[:4]
        rows.append({"id": cid, "name": name, "owner": owner, "state": state})
    return rows


def reap_orphans() -> list[str]:
    """Remove containers whose owner process is gone (a crashed run). Returns their names."""
    orphans = [row for row in labelled_containers() if not _owner_alive(row["owner"])]
    if orphans:
        docker("rm", "-f", *(row["id"] for row in orphans), check=False)
        _remove_folders(row["name"] for row in orphans)
    return [row["name"] for row in orphans]


def remove_all(*, include_persistent: bool = True) -> list[str]:
    """Remove every deskdojo container (``make clean-sandboxes``), by label only."""
    rows = [r for r in labelled_containers()
            if include_persistent or r["owner"] != PERSISTENT_OWNER]
    if rows:
        docker("rm", "-f", *(r["id"] for r in rows), check=False)
        _remove_folders(r["name"] for r in rows)
    return [r["name"] for r in rows]


def _remove_folders(names) -> None:
    for name in names:
        try:
            remove_sandbox_folder(name)
        except SandboxError:
            pass  # a container name that is no sandbox name has no folder of ours


class DockerSandbox(GuestSandbox):
    """A sandbox in a container; closing it removes the container and its folder."""

    def __init__(self, name: str, container_id: str, socket_dir: Path, client,
                 screen_size: tuple[int, int]):
        super().__init__(name, client, screen_size)
        self.container_id = container_id
        self.socket_dir = socket_dir
        self.folder = socket_dir.parent

    def _is_running(self) -> bool:
        proc = docker("inspect", "-f", "{{.State.Running}}", self.container_id,
                      check=False, timeout=10)
        return proc.stdout.strip() == "true"

    def _stop(self) -> None:
        docker("rm", "-f", self.container_id, check=False, timeout=30)
        remove_sandbox_folder(self.name)

    def kill(self) -> None:
        """Kill the container abruptly, as a crash would (for fault tests)."""
        docker("kill", self.container_id, check=False)


class DockerProvider:
    """Starts sandboxes as containers of the deskdojo desktop image."""

    def __init__(self, config: SandboxConfig | None = None):
        self.config = config or SandboxConfig(provider="docker")
        self._image: str | None = self.config.image
        self._reaped = False

    def image(self) -> str:
        if self._image is None:
            from deskdojo.vm import image as image_mod

            flavor = self.config.flavor
            tag = image_mod.current_tag(flavor)
            if not image_mod.image_present(tag):
                build = "deskdojo image build" + (f" --flavor {flavor}" if flavor != "desktop" else "")
                raise SandboxStartError(f"the sandbox image {tag} is not built — run "
                                        f"`{build}` (or `make setup`)")
            self._image = tag
        return self._image

    def run_args(self, name: str, socket_dir: Path, *, persistent: bool = False) -> list[str]:
        """The `docker run` arguments: every isolation setting in one place."""
        from deskdojo.vm.image import TMPFS_PATHS

        cfg = self.config
        width, height = cfg.screen
        owner = PERSISTENT_OWNER if persistent else process_token(os.getpid())
        args = [
            "run", "-d", "--init", "--name", name,
            "--label", f"{LABEL}=1", "--label", f"{OWNER_LABEL}={owner}",
            "--network", "none",
            "--cap-drop", "ALL", "--security-opt", "no-new-privileges",
            "--read-only",
            "--tmpfs", "/tmp:rw,nosuid,nodev,size=256m",
            "--tmpfs", f"{GUEST_HOME}:rw,nosuid,nodev,size=512m,uid={GUEST_UID},gid={GUEST_UID},mode=0700",
            "--memory", f"{cfg.memory_mb}m", "--memory-swap", f"{cfg.memory_mb}m",
            "--pids-limit", str(cfg.pids_limit), "--cpus", str(cfg.cpus),
            "--user", f"{GUEST_UID}:{GUEST_UID}",
            "--mount", f"type=bind,source={socket_dir},target={GUEST_SOCKET_DIR}",
        ]
        for path in TMPFS_PATHS:
            if path not in ("/tmp", GUEST_HOME):
                args += ["--tmpfs", f"{path}:rw,nosuid,nodev,size=64m,uid={GUEST_UID},gid={GUEST_UID}"]
        args += [self.image(), "--socket-dir", GUEST_SOCKET_DIR, "--display", ":0",
                 "--screen", f"{width}x{height}", "--home", GUEST_HOME,
                 "--pristine-home", "/opt/deskdojo/home"]
        return args

    def start(self, name: str | None = None, *, persistent: bool = False) -> DockerSandbox:
        if not self._reaped:
            reap_orphans()
            self._reaped = True
        name = check_name(name or new_sandbox_name())
        folder = make_sandbox_folder(name)
        socket_dir = folder / SOCKET_FOLDER  # the only host path the guest sees
        socket_dir.mkdir(mode=0o700)
        if os.getuid() == 0:
            os.chown(socket_dir, GUEST_UID, GUEST_UID)
        else:  # the guest's uid differs from ours: let it create its socket
            socket_dir.chmod(0o777)
        try:
            container_id = docker(*self.run_args(name, socket_dir, persistent=persistent),
                                  timeout=60).stdout.strip()
            write_state(folder, SandboxState(name=name, provider="docker", guest_uid=GUEST_UID,
                                             container_id=container_id))
        except BaseException:
            remove_sandbox_folder(name)
            raise
        sandbox = DockerSandbox(name, container_id, socket_dir,
                                docker_client(socket_dir, container_id, self.config.request_timeout_s),
                                self.config.screen)
        try:
            self._wait_ready(sandbox)
        except BaseException:
            sandbox.close()
            raise
        return sandbox

    def attach(self, name: str) -> DockerSandbox:
        """Connect to a running sandbox by name (one started by `deskdojo sandbox up`)."""
        state = read_state(name)
        if state.provider != "docker" or not state.container_id:
            raise SandboxError(f"sandbox {name!r} is not a docker sandbox")
        socket_dir = sandbox_folder(name) / SOCKET_FOLDER
        client = docker_client(socket_dir, state.container_id, self.config.request_timeout_s)
        health = client.health()
        return DockerSandbox(name, state.container_id, socket_dir, client, tuple(health["screen"]))

    def _wait_ready(self, sandbox: DockerSandbox) -> None:
        deadline = time.monotonic() + self.config.start_timeout_s
        sock = sandbox.socket_dir / SOCKET_NAME
        while time.monotonic() < deadline:
            if sock.exists():
                try:
                    sandbox.client.wait_ready(timeout=max(1.0, deadline - time.monotonic()))
                    return
                except SandboxTrustError:
                    raise
                except SandboxError:
                    pass
            elif not sandbox._is_running():
                logs = docker("logs", "--tail", "30", sandbox.container_id, check=False)
                raise SandboxStartError(f"sandbox {sandbox.name} exited during start-up:\n"
                                        f"{(logs.stdout + logs.stderr)[-2000:]}")
            time.sleep(0.01)
        raise SandboxStartError(f"sandbox {sandbox.name} did not answer within "
                                f"{self.config.start_timeout_s:g} s (see `docker logs {sandbox.name}`)")


def docker_client(socket_dir: Path, container_id: str, timeout: float):
    """A client that connects only to a real socket of the guest's uid, answered by a
    process inside ``container_id`` (whatever the guest wrote in its socket folder)."""
    from deskdojo.vm.client import GuestClient

    return GuestClient(socket_dir / SOCKET_NAME, timeout=timeout, socket_owner=GUEST_UID,
                       peer_check=container_peer(container_id, GUEST_UID))


def describe_security(container_id: str) -> dict:
    """The container's effective isolation settings, read back from the engine."""
    info = json.loads(docker("inspect", container_id).stdout)[0]
    host = info["HostConfig"]
    return {
        "network_mode": host.get("NetworkMode"),
        "cap_drop": host.get("CapDrop"),
        "cap_add": host.get("CapAdd"),
        "security_opt": host.get("SecurityOpt"),
        "readonly_rootfs": host.get("ReadonlyRootfs"),
        "init": host.get("Init"),
        "memory": host.get("Memory"),
        "pids_limit": host.get("PidsLimit"),
        "nano_cpus": host.get("NanoCpus"),
        "privileged": host.get("Privileged"),
        "user": info["Config"].get("User"),
        "mounts": [(m.get("Type"), m.get("Source"), m.get("Destination")) for m in info.get("Mounts", [])],
        "labels": info["Config"].get("Labels", {}),
    }
