"""A Ray cluster of several nodes on this machine, for benches and tests: each node is a
``ray start --block`` in its own process group, ended by its PID (never ``ray stop``,
which ends every Ray process on the machine, other users' too)."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Sequence

from deskdojo.core.errors import DeskdojoError

START_TIMEOUT_S = 60.0
OBJECT_STORE_BYTES = 256 * 2**20
QUIET_ENV = {"RAY_enable_metrics_collection": "0", "RAY_USAGE_STATS_ENABLED": "0"}
"""No metrics export and no usage reporting: nothing leaves the machine, no extra port."""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class LocalCluster:
    """A head with ``head_slots`` sandbox slots and one more node per ``node_slots`` entry,
    all on 127.0.0.1. ``with LocalCluster(...) as address:`` starts it and waits until every
    node's slots are there; leaving the block ends the nodes by process group."""

    def __init__(self, head_slots: int, node_slots: Sequence[int] = (), *, head_cpus: int = 2,
                 node_cpus: int = 1, pythonpath: str | None = None):
        self.head_slots = head_slots
        self.node_slots = tuple(node_slots)
        self.head_cpus = head_cpus
        self.node_cpus = node_cpus
        self.pythonpath = pythonpath
        self.address = ""
        self.processes: list[subprocess.Popen] = []
        self.temp = ""
        self._log = None

    @property
    def log_path(self) -> Path:
        return Path(self.temp) / "ray-start.log"

    def __enter__(self) -> str:
        try:
            return self.start()
        except BaseException:
            self.stop()
            raise

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self) -> str:
        ray_bin = str(Path(sys.executable).with_name("ray"))
        if not os.access(ray_bin, os.X_OK):
            raise DeskdojoError(f"no `ray` next to {sys.executable}: `pip install 'deskdojo[ray]'`")
        self.temp = tempfile.mkdtemp(prefix="dj-ray-", dir="/tmp")  # short: Ray's socket paths live under it
        env = {**os.environ, **QUIET_ENV}
        if self.pythonpath:
            env["PYTHONPATH"] = os.pathsep.join(p for p in (self.pythonpath, os.environ.get("PYTHONPATH")) if p)
        port = free_port()
        self.address = f"127.0.0.1:{port}"
        common = ["--block", "--node-ip-address", "127.0.0.1", "--disable-usage-stats",
                  "--object-store-memory", str(OBJECT_STORE_BYTES)]
        self._log = open(self.log_path, "wb")
        self._spawn([ray_bin, "start", "--head", "--port", str(port), "--ray-client-server-port", str(free_port()),
                     "--num-cpus", str(self.head_cpus), "--resources", json.dumps({"sandbox": self.head_slots}),
                     "--include-dashboard=false", "--temp-dir", self.temp, *common], env)
        self._wait(self._answers, "the head to answer")
        for slots in self.node_slots:
            self._spawn([ray_bin, "start", "--address", self.address, "--num-cpus", str(self.node_cpus),
                         "--resources", json.dumps({"sandbox": slots}), *common], env)
        self._wait(self._all_joined, f"{len(self.node_slots)} node(s) to join")
        return self.address

    def _spawn(self, argv: list[str], env: dict[str, str]) -> None:
        self.processes.append(subprocess.Popen(argv, stdout=self._log, stderr=subprocess.STDOUT, env=env,
                                               start_new_session=True))

    def _answers(self) -> bool:
        host, port = self.address.split(":")
        try:
            with socket.create_connection((host, int(port)), timeout=1):
                return True
        except OSError:
            return False

    def _all_joined(self) -> bool:
        import ray

        if not ray.is_initialized():
            os.environ.update(QUIET_ENV)
            ray.init(address=self.address, logging_level="WARNING", log_to_driver=False)
        return int(ray.cluster_resources().get("sandbox", 0)) == self.head_slots + sum(self.node_slots) \
            and len([n for n in ray.nodes() if n.get("Alive")]) == 1 + len(self.node_slots)

    def _wait(self, ready, what: str) -> None:
        deadline = time.monotonic() + START_TIMEOUT_S
        while not ready():
            if time.monotonic() > deadline or any(p.poll() is not None for p in self.processes):
                raise DeskdojoError(f"local Ray cluster: timed out waiting for {what}; ray start said:\n"
                                    f"{self.log_path.read_text(errors='replace')[-3000:]}")
            time.sleep(0.25)

    def stop(self) -> None:
        """Disconnect, then end each node's process group: SIGTERM, then SIGKILL."""
        try:
            import ray

            if ray.is_initialized():
                ray.shutdown()
        except ImportError:
            pass
        for proc in reversed(self.processes):
            _end_group(proc)
        self.processes = []
        if self._log is not None:
            self._log.close()
            self._log = None
        if self.temp:
            shutil.rmtree(self.temp, ignore_errors=True)


def _end_group(proc: subprocess.Popen) -> None:
    for sig, wait_s in ((signal.SIGTERM, 2.0), (signal.SIGKILL, 10.0)):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            break
        try:
            proc.wait(timeout=wait_s)
        except subprocess.TimeoutExpired:
            continue
        try:  # the leader is gone; what it started may linger a moment
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        break
