"""The sandbox is a trust boundary: attacks from inside a real sandbox, as the guest's own
user through the exec endpoint, must not steer the host.

Each attack was reproduced against the earlier layout (a guest-written ``boot.json``
chose the PID the host killed; a symlinked ``control.sock`` redirected the host's
connection; ``sandbox down ../x`` deleted folders). Here each must fail, on docker and
on xvfb alike.
"""

from __future__ import annotations

import os
import secrets
import signal
import socket
import subprocess
import threading
import time
from pathlib import Path

import pytest

from deskdojo.cli import main
from deskdojo.core.errors import SandboxError, SandboxTrustError
from deskdojo.vm.client import GuestClient
from deskdojo.vm.config import SandboxConfig
from deskdojo.vm.folders import SOCKET_NAME, container_peer, sandbox_folder, sandboxes_root
from deskdojo.vm.sandboxes import attach, list_persistent, start_persistent, stop_persistent

SCREEN = (320, 240)


@pytest.fixture
def bystander():
    """A host process (own session) that no sandbox command may signal."""
    proc = subprocess.Popen(["sleep", "120"], start_new_session=True)
    try:
        yield proc
    finally:
        proc.kill()
        proc.wait()


class HostListener:
    """A unix socket on the host that records whether anybody connected to it."""

    def __init__(self, path: Path):
        self.path = path
        self.connections = 0
        self.server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.server.bind(str(path))
        self.server.listen(4)
        self.server.settimeout(0.2)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self.server.accept()
            except (TimeoutError, OSError):
                continue
            self.connections += 1
            try:  # a forged answer, as a hostile server would give
                conn.sendall(b'HTTP/1.1 200 OK\r\nContent-Length: 40\r\n\r\n{"ok": true, "screen": [1, 1], "pid": 1}')
            except OSError:
                pass
            conn.close()

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=2)
        self.server.close()


@pytest.fixture
def host_listener(tmp_path):
    listener = HostListener(tmp_path / "host.sock")
    try:
        yield listener
    finally:
        listener.close()


def _swap_socket_for_symlink(sandbox, guest_socket: str, target: Path) -> None:
    result = sandbox.exec(["sh", "-c", f'ln -s "{target}" "{guest_socket}.new" && mv -f "{guest_socket}.new" "{guest_socket}"'])
    assert result.returncode == 0, result.stderr
    assert (sandbox_folder(sandbox.name) / "sock" / SOCKET_NAME).is_symlink()


def _persistent(provider: str):
    name = f"trust-{provider}-{secrets.token_hex(3)}"
    sandbox = start_persistent(SandboxConfig(provider=provider, screen=SCREEN), name=name)
    return name, sandbox


def _down_quietly(name: str) -> None:
    try:
        stop_persistent(name)
    except SandboxError:
        pass


# --- names: `sandbox down` deletes only sandbox folders --------------------------------


@pytest.mark.parametrize("name", ["../x", "..", "/tmp/victim", "a/b", "x\x00y", ".hidden"])
def test_sandbox_down_refuses_names_that_are_not_sandbox_names(name, tmp_path, capsys):
    victim = tmp_path / "victim"
    victim.mkdir()
    (victim / "keep.txt").write_text("precious")
    outside = sandboxes_root().parent / "x"
    outside.mkdir(exist_ok=True)
    try:
        code = main(["sandbox", "down", name])
        assert code != 0
        assert "invalid sandbox name" in capsys.readouterr().err
        assert (victim / "keep.txt").read_text() == "precious" and outside.is_dir()
    finally:
        outside.rmdir()


def test_sandbox_down_of_an_absolute_path_deletes_nothing(tmp_path, capsys):
    victim = tmp_path / "victim"
    victim.mkdir()
    assert main(["sandbox", "down", str(victim)]) != 0
    assert victim.is_dir()
    assert "invalid sandbox name" in capsys.readouterr().err


# --- docker ---------------------------------------------------------------------------


@pytest.mark.docker
def test_docker_guest_cannot_make_the_host_signal_a_pid(bystander):
    name, sandbox = _persistent("docker")
    try:
        # What the old layout read (boot.json in a sock/ folder) and the new state file's
        # name, both planted where the guest can write.
        forged = f'{{"pid": {bystander.pid}, "provider": "xvfb", "name": "{name}", "guest_uid": 0, "pid_token": "x"}}'
        result = sandbox.exec(["sh", "-c", f"mkdir -p /run/deskdojo/sock && printf '%s' '{forged}' | "
                                           f"tee /run/deskdojo/sock/boot.json /run/deskdojo/sandbox.json "
                                           f"/run/deskdojo/boot.json >/dev/null"])
        assert result.returncode == 0, result.stderr
        rows = {row["name"]: row for row in list_persistent()}
        assert rows[name]["provider"] == "docker"
        assert stop_persistent(name) == [name]
        time.sleep(0.5)
        assert bystander.poll() is None, "the host signalled a PID the guest chose"
        assert not sandbox_folder(name).exists()
        inspect = subprocess.run(["docker", "inspect", sandbox.container_id], capture_output=True)
        assert inspect.returncode != 0, "the container was left running"
    finally:
        _down_quietly(name)


@pytest.mark.docker
def test_docker_host_refuses_a_symlinked_control_socket(host_listener):
    name, sandbox = _persistent("docker")
    try:
        _swap_socket_for_symlink(sandbox, "/run/deskdojo/control.sock", host_listener.path)
        with pytest.raises(SandboxTrustError, match="symlink"):
            attach(name)
        time.sleep(0.3)
        assert host_listener.connections == 0, "the host connected to the symlink's target"
    finally:
        _down_quietly(name)


@pytest.mark.docker
def test_docker_host_refuses_a_socket_that_is_not_answered_by_the_container(tmp_path, host_listener):
    """Even a real socket owned by the guest's uid is refused when the process answering it
    is not inside the sandbox's container (the check after connect, before any byte)."""
    os.chown(host_listener.path, 1000, 1000)
    client = GuestClient(host_listener.path, timeout=5, socket_owner=1000,
                         peer_check=container_peer("0" * 64, 1000))
    with pytest.raises(SandboxTrustError, match="uid 0"):
        client.health()
    client.close()


# --- xvfb -----------------------------------------------------------------------------


@pytest.mark.display
def test_xvfb_guest_cannot_make_the_host_signal_a_pid(bystander):
    name, sandbox = _persistent("xvfb")
    try:
        sock = sandbox_folder(name) / "sock"
        forged = f'{{"pid": {bystander.pid}}}'
        sandbox_exec = attach(name)
        result = sandbox_exec.exec(["sh", "-c", f"printf '%s' '{forged}' > '{sock}/boot.json'; "
                                                f"printf '%s' '{forged}' > '{sock.parent}/sandbox.json'; true"])
        sandbox_exec.close()
        assert result.returncode == 0
        state = (sandbox_folder(name) / "sandbox.json").read_text()
        assert str(bystander.pid) not in state, "the guest wrote the host's state file"
        assert stop_persistent(name) == [name]
        time.sleep(0.5)
        assert bystander.poll() is None, "the host signalled a PID the guest chose"
        assert not sandbox_folder(name).exists()
    finally:
        _down_quietly(name)


@pytest.mark.display
def test_xvfb_host_refuses_a_symlinked_control_socket(host_listener):
    name, _ = _persistent("xvfb")
    try:
        sandbox = attach(name)
        guest_socket = str(sandbox_folder(name) / "sock" / SOCKET_NAME)
        _swap_socket_for_symlink(sandbox, guest_socket, host_listener.path)
        sandbox.close()
        with pytest.raises(SandboxTrustError, match="symlink"):
            attach(name)
        time.sleep(0.3)
        assert host_listener.connections == 0
    finally:
        _down_quietly(name)


@pytest.fixture(scope="module")
def two_xvfb():
    from deskdojo.vm.xvfb import XvfbProvider

    provider = XvfbProvider(SandboxConfig(provider="xvfb", screen=SCREEN))
    first = provider.start()
    try:
        second = provider.start()
        try:
            yield first, second
        finally:
            second.close()
    finally:
        first.close()


@pytest.mark.display
def test_xvfb_guest_runs_unprivileged_without_network(two_xvfb):
    box, _ = two_xvfb
    if os.geteuid() == 0:
        assert box.exec(["id", "-u"]).stdout.strip() != "0"
    status = box.exec(["cat", "/proc/self/status"]).stdout
    caps = {line.split(":")[0]: line.split()[1] for line in status.splitlines() if line.startswith("Cap")}
    assert int(caps["CapEff"], 16) == 0 and int(caps["CapBnd"], 16) == 0
    assert "NoNewPrivs:\t1" in status
    interfaces = box.exec(["cat", "/proc/net/dev"]).stdout.splitlines()[2:]
    assert [line.split(":")[0].strip() for line in interfaces] == ["lo"]
    for path in ("/var/run/docker.sock", "/run/docker.sock"):
        assert box.exec(["test", "-e", path]).returncode != 0, f"{path} is visible in the guest"


@pytest.mark.display
def test_xvfb_guest_reads_neither_root_nor_another_sandbox(two_xvfb):
    box, other = two_xvfb
    secret = Path("/root" if os.geteuid() == 0 else Path.home()) / f".deskdojo-trust-{secrets.token_hex(4)}"
    secret.write_text("host secret")
    try:
        result = box.exec(["cat", str(secret)])
        assert result.returncode != 0 and "host secret" not in result.stdout
    finally:
        secret.unlink()
    for path in (other.folder, other.folder / "home", other.folder / "sock", other.folder / "sandbox.json"):
        result = box.exec(["ls", "-a", str(path)])
        assert result.returncode != 0, f"{path} of another sandbox is visible: {result.stdout!r}"
    listing = box.exec(["ls", "-a", str(sandboxes_root())])
    assert other.name not in listing.stdout
    # Its own home is writable; the host's state file beside it is not.
    assert box.exec(["sh", "-c", "echo x > ~/own.txt"]).returncode == 0
    assert box.exec(["sh", "-c", f"echo x > {box.folder}/sandbox.json"]).returncode != 0 \
        or "x" not in (box.folder / "sandbox.json").read_text().splitlines()


@pytest.mark.display
def test_xvfb_sandbox_down_stops_only_the_recorded_process_group():
    name, sandbox = _persistent("xvfb")
    pid = sandbox.proc.pid
    try:
        assert stop_persistent(name) == [name]
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            try:
                os.killpg(pid, 0)
            except ProcessLookupError:
                break
            sandbox.proc.poll()  # reap: it is this process's child
            time.sleep(0.05)
        with pytest.raises(ProcessLookupError):
            os.killpg(pid, 0)
    finally:
        _down_quietly(name)
        if sandbox.proc.poll() is None:
            os.killpg(pid, signal.SIGKILL)


def test_the_panel_connects_only_to_recorded_sandbox_sockets(host_listener):
    """The panel finds sockets in a run's status file; one outside the sandboxes root, or
    of a folder with no host record, is refused before connecting."""
    from deskdojo.vm.sandboxes import trust_for_socket

    with pytest.raises(SandboxTrustError, match="not a sandbox's control socket"):
        trust_for_socket(host_listener.path)
    forged = sandboxes_root() / "no-such-sandbox" / "sock" / SOCKET_NAME
    with pytest.raises(SandboxError, match="no sandbox named"):
        trust_for_socket(forged)
    assert host_listener.connections == 0
