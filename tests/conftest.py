"""Shared test gating: tests marked `docker` or `display` run where the capability is,
skip (saying the fix) where it is not, and fail loudly under CI, where it must be."""

from __future__ import annotations

import functools
import os
import shutil
import subprocess

import pytest

CI = os.environ.get("CI", "").strip().lower() in {"1", "true", "yes"}
if os.environ.get("PYTEST_XDIST_WORKER"):
    # Several test processes share the cores: OpenMP threads (torch, tesseract) that
    # busy-wait for each other across processes make CPU-bound tests many times slower.
    os.environ.setdefault("OMP_NUM_THREADS", "1")
SANDBOX_LABEL = "deskdojo=1"
_skipped_in_ci: list[str] = []


def _docker(*args: str, timeout: float = 10.0) -> subprocess.CompletedProcess[str] | None:
    if shutil.which("docker") is None:
        return None
    try:
        return subprocess.run(["docker", *args], capture_output=True, text=True, timeout=timeout, check=False)
    except subprocess.TimeoutExpired:
        return None


@functools.cache
def _docker_missing() -> str | None:
    """Why the `docker` tests cannot run here, or None when they can."""
    info = _docker("info", "--format", "{{.ServerVersion}}")
    if info is None or info.returncode != 0:
        return "docker engine not reachable: run `make setup` (starts dockerd)"
    try:
        from deskdojo.vm.image import current_tag, image_present
    except ImportError as exc:
        return f"deskdojo.vm.image unavailable ({exc}): run `make setup`"
    if image_present():
        return None
    if os.geteuid() == 0 and shutil.which("debootstrap"):
        return None  # the image fixtures build it on first use
    return f"sandbox image {current_tag()} missing and not buildable here: run `make image` as root"


def docker_available() -> bool:
    """The engine answers and the sandbox image is present or can be built."""
    return _docker_missing() is None


def xvfb_available() -> bool:
    return shutil.which("Xvfb") is not None or os.access("/usr/bin/Xvfb", os.X_OK)


def _gpu_available() -> bool:
    return os.path.exists("/dev/nvidia0")


def _missing_capability(item: pytest.Item) -> str | None:
    if item.get_closest_marker("docker") and (reason := _docker_missing()):
        return reason
    if item.get_closest_marker("display") and not xvfb_available():
        return "Xvfb not installed: run `make setup` (or `apt-get install -y xvfb`)"
    return None


@functools.cache
def _ensure_image() -> None:
    """Build the sandbox image for the code under test (a no-op when the tag exists)."""
    from deskdojo.vm.image import build_image

    build_image(log=lambda line: None)


def pytest_runtest_setup(item: pytest.Item) -> None:
    if item.get_closest_marker("gpu") and not _gpu_available():
        pytest.skip("no CUDA device (CI has none)")
    reason = _missing_capability(item)
    if reason is None:
        if item.get_closest_marker("docker"):
            _ensure_image()
        return
    if CI:
        pytest.fail(f"CI must have this capability: {reason}", pytrace=False)
    pytest.skip(reason)


# Test files that take longest, started first: with several test processes (make test
# runs three, a file per process), a long file that starts last would run on alone.
LONGEST_FIRST = ("test_sft.py", "test_bench_grpo.py", "test_cli.py", "test_evolve.py",
                 "test_elements_guest.py", "test_families_apps.py", "test_families_basic.py")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    def rank(item: pytest.Item) -> int:
        name = item.path.name
        return LONGEST_FIRST.index(name) if name in LONGEST_FIRST else len(LONGEST_FIRST)

    items.sort(key=rank)  # stable: the order within a file stays


def _note_ci_skip(report: pytest.CollectReport | pytest.TestReport) -> None:
    if CI and report.skipped and not hasattr(report, "wasxfail") and "gpu" not in getattr(report, "keywords", {}):
        _skipped_in_ci.append(report.nodeid)


pytest_collectreport = _note_ci_skip
pytest_runtest_logreport = _note_ci_skip


_end_notes: list[str] = []
_OWNER_LABEL = "deskdojo.owner"  # "<pid>:<starttime>" on sandboxes the docker provider starts


def _sandbox_containers() -> dict[str, str]:
    """Containers labelled deskdojo=1 -> their owner label ("" when none)."""
    listed = _docker("ps", "-a", "--filter", f"label={SANDBOX_LABEL}",
                     "--format", '{{.ID}}\t{{.Label "' + _OWNER_LABEL + '"}}')
    if listed is None or listed.returncode != 0:
        return {}
    rows = (line.split("\t") + [""] for line in listed.stdout.splitlines() if line.strip())
    return {row[0]: row[1] for row in rows}


def own_containers() -> set[str]:
    """This test process's sandbox containers (by the owner label: other test processes
    start and stop theirs at the same time)."""
    return {cid for cid, owner in _sandbox_containers().items() if owner.split(":")[0] == str(os.getpid())}


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """Under CI a skip is a failure (only `gpu` tests may skip: CI has no GPU).
    Then a safety net: remove the sandbox containers this pytest process still owns
    (by label and owner PID); other processes' containers stay."""
    if _skipped_in_ci:
        _end_notes.append(f"CI=true and {len(_skipped_in_ci)} test(s) skipped; nothing may skip in CI:")
        _end_notes.extend(f"  {nodeid}" for nodeid in _skipped_in_ci)
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
    ours = sorted(own_containers())
    if ours:
        _docker("rm", "-f", *ours, timeout=60.0)
        _end_notes.append(f"removed {len(ours)} leftover container(s) labelled {SANDBOX_LABEL} owned by this test run: {' '.join(ours)}")


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if _end_notes:
        terminalreporter.write_sep("=", "deskdojo conftest", yellow=True)
        for line in _end_notes:
            terminalreporter.write_line(line, yellow=True)


@pytest.fixture(scope="module")
def box():
    """One real xvfb sandbox shared by a test module (closed even when tests fail)."""
    from deskdojo.vm.config import SandboxConfig
    from deskdojo.vm.pool import make_provider

    sandbox = make_provider(SandboxConfig(provider="xvfb")).start()
    try:
        yield sandbox
    finally:
        sandbox.close()
