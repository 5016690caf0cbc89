"""`deskdojo doctor`: check that this machine can run deskdojo, and say how to fix it.

Each check is one row: what was looked at, whether it passed, what was found and the
exact command that fixes it. Only `required` checks decide the exit code.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import importlib.util
import json
import os
import shlex
import shutil
import subprocess
import sys
from dataclasses import asdict, dataclass
from typing import Literal, TextIO

Level = Literal["required", "optional", "info"]

MIN_PYTHON = (3, 11)
DOCKER_TIMEOUT_S = 5.0
SANDBOX_LABEL = "deskdojo=1"

# import name -> PyPI name
PACKAGES = {"numpy": "numpy", "PIL": "pillow", "mss": "mss", "pyautogui": "pyautogui", "Xlib": "python-xlib"}
# binary -> Debian package that provides it
BINARIES = {
    "Xvfb": "xvfb",
    "openbox": "openbox",
    "xdotool": "xdotool",
    "xterm": "xterm",
    "debootstrap": "debootstrap",
    "docker": "docker.io",
}
# Where root-only tools live when a non-root PATH leaves them out.
_SBIN_DIRS = ("/usr/local/sbin", "/usr/sbin", "/sbin")

ENGINE_FIX = (
    "start it: `nohup dockerd >/var/log/deskdojo-dockerd.log 2>&1 &` (or `make setup`), "
    "or use `--provider xvfb`"
)


@dataclass(frozen=True, slots=True)
class Check:
    """One row of the doctor's report. `fix` is empty when there is nothing to do."""

    name: str
    ok: bool
    detail: str
    fix: str = ""
    level: Level = "required"


def _sudo() -> str:
    return "" if os.geteuid() == 0 else "sudo "


def _pip_install(*names: str) -> str:
    return f"{shlex.quote(sys.executable)} -m pip install {' '.join(names)}"


def check_python() -> Check:
    version = ".".join(map(str, sys.version_info[:3]))
    ok = sys.version_info >= MIN_PYTHON
    fix = "" if ok else f"{_sudo()}apt-get install -y python3 python3-venv && PYTHON=/usr/bin/python3 make setup"
    return Check("python", ok, f"{version} ({sys.executable})", fix)


def check_package(import_name: str, pypi_name: str) -> Check:
    # find_spec, not import: the doctor must stay fast and must not open a display.
    try:
        found = importlib.util.find_spec(import_name) is not None
    except (ImportError, ValueError):
        found = False
    if not found:
        return Check(import_name, False, "not importable", _pip_install(pypi_name))
    try:
        detail = f"{pypi_name} {importlib.metadata.version(pypi_name)}"
    except importlib.metadata.PackageNotFoundError:
        detail = "importable"
    return Check(import_name, True, detail)


def check_torch() -> Check:
    try:
        version = importlib.metadata.version("torch")
    except importlib.metadata.PackageNotFoundError:
        return Check(
            "torch", False, "not installed (needed for training and the VLM policy)",
            _pip_install("torch==2.13.0"), level="optional",
        )
    return Check("torch", True, version, level="optional")


def check_binary(binary: str, package: str) -> Check:
    path = shutil.which(binary)
    if path:
        return Check(binary, True, path)
    for folder in _SBIN_DIRS:
        candidate = os.path.join(folder, binary)
        if os.access(candidate, os.X_OK):
            return Check(binary, False, f"installed at {candidate} but not on PATH", f'export PATH="$PATH:{folder}"')
    return Check(
        binary, False, "not found on PATH",
        f"{_sudo()}apt-get install -y --no-install-recommends {package}",
    )


def _docker(*args: str) -> subprocess.CompletedProcess[str]:
    """Run the docker CLI; raises OSError when it is missing, TimeoutExpired when it hangs."""
    return subprocess.run(
        ["docker", *args], capture_output=True, text=True, timeout=DOCKER_TIMEOUT_S, check=False,
    )


def _engine_address() -> str:
    return os.environ.get("DOCKER_HOST") or "unix:///var/run/docker.sock"


def check_engine() -> Check:
    name = "docker engine"
    address = _engine_address()
    try:
        result = _docker("info", "--format", "{{.ServerVersion}}")
    except OSError:
        return Check(name, False, "docker CLI not found", f"{_sudo()}apt-get install -y --no-install-recommends docker.io")
    except subprocess.TimeoutExpired:
        return Check(name, False, f"no answer from {address} within {DOCKER_TIMEOUT_S:g} s", ENGINE_FIX)
    version = result.stdout.strip()
    if result.returncode == 0 and version:
        return Check(name, True, f"{version} at {address}")
    message = (result.stderr.strip().splitlines() or ["no server version"])[-1]
    if "permission denied" in message.lower():
        return Check(name, False, f"permission denied at {address}", 'sudo usermod -aG docker "$USER"  # then log in again')
    return Check(name, False, f"not reachable at {address}: {message}", ENGINE_FIX)


def check_image(engine_ok: bool) -> Check:
    name = "sandbox image"
    if not engine_ok:
        return Check(name, False, "unknown: the docker engine is not reachable", "make setup")
    try:  # lazily: the doctor must work even where the vm part is broken or absent
        image = importlib.import_module("deskdojo.vm.image")
    except ImportError as exc:
        return Check(name, False, f"deskdojo.vm.image unavailable: {exc}", "pip install -e '.[dev]'")
    try:
        tag = image.current_tag()
        present = image.image_present(tag)
    except Exception as exc:  # the doctor reports; it never crashes on a broken part
        return Check(name, False, f"could not check: {exc}", "deskdojo image build")
    if present:
        return Check(name, True, tag)
    return Check(name, False, f"{tag} not built", "deskdojo image build")


def check_display() -> Check:
    display = os.environ.get("DISPLAY")
    if display:
        return Check("DISPLAY", True, f"{display} (the host desktop provider could use it)", level="info")
    return Check(
        "DISPLAY", False,
        "not set: no host desktop provider (the docker and xvfb providers do not need one)",
        level="info",
    )


def check_leftovers(engine_ok: bool) -> Check:
    name = "leftover sandboxes"
    if not engine_ok:
        return Check(name, True, "not checked: the docker engine is not reachable", level="info")
    try:
        result = _docker("ps", "-aq", "--filter", f"label={SANDBOX_LABEL}")
    except (OSError, subprocess.TimeoutExpired) as exc:
        return Check(name, False, f"could not list containers: {exc}", level="info")
    if result.returncode != 0:
        return Check(name, False, f"could not list containers: {result.stderr.strip()}", level="info")
    ids = result.stdout.split()
    if not ids:
        return Check(name, True, f"no containers labelled {SANDBOX_LABEL}", level="info")
    return Check(name, False, f"{len(ids)} container(s) labelled {SANDBOX_LABEL}", "make clean-sandboxes", level="info")


DOCKER_ISOLATION = ("no network but loopback, no capabilities, no-new-privileges, read-only root, "
                    "uid 1000, no host files but its socket folder")


def check_isolation(engine_ok: bool) -> list[Check]:
    """What each provider's sandboxes are fenced by on this machine (the README's table)."""
    rows = [Check("isolation: docker", engine_ok, DOCKER_ISOLATION if engine_ok
                  else "unavailable: the docker engine is not reachable", level="info")]
    try:
        from deskdojo.vm.xvfb import isolation

        iso = isolation(create_account=False)
    except Exception as exc:  # the doctor reports; it never crashes on a broken part
        return rows + [Check("isolation: xvfb", False, f"could not check: {exc}", level="info")]
    fix = "" if iso.namespaces else f"{_sudo()}apt-get install -y bubblewrap"
    rows.append(Check("isolation: xvfb", iso.namespaces, iso.describe(), fix, level="optional"))
    return rows


def check_proposer() -> Check:
    """What proposes training tasks by default: no model is downloaded, so templates and
    exploration stand in for a model proposer."""
    return Check("task proposer", True,
                 "offline default: task templates, plus exploration with `evolve --proposer explore`; no model "
                 "proposer is configured (`evolve --proposer MODEL` adds one, any Qwen-VL checkpoint or hub name)",
                 level="info")


RAY_VERSION = "2.60.0"
RAY_TIMEOUT_S = 30.0
_RAY_PROBE = """
import json, sys
import ray
ray.init(address=sys.argv[1], logging_level="ERROR", log_to_driver=False)
nodes = [n for n in ray.nodes() if n.get("Alive")]
print(json.dumps({"nodes": len(nodes), "resources": ray.cluster_resources()}))
"""


def check_ray(address: str | None = None) -> list[Check]:
    """Ray (``evolve --ray``): installed or not, and, when an address is given or RAY_ADDRESS
    is set, whether that cluster answers and how many ``sandbox`` slots its nodes offer.
    The probe runs in a child process: connecting imports Ray and may wait on the network."""
    try:
        version = importlib.metadata.version("ray")
    except importlib.metadata.PackageNotFoundError:
        return [Check("ray", False, "not installed (needed for `evolve --ray`, rollout workers on many machines)",
                      _pip_install(f"'ray=={RAY_VERSION}'"), level="optional")]
    rows = [Check("ray", True, version, level="optional")]
    address = address or os.environ.get("RAY_ADDRESS")
    if not address:
        return rows + [Check("ray cluster", True, "not checked: give `doctor --ray ADDRESS` or set RAY_ADDRESS",
                             level="info")]
    env = {**os.environ, "RAY_enable_metrics_collection": "0", "RAY_USAGE_STATS_ENABLED": "0"}
    start = f"ray start --head --resources '{{\"sandbox\": 4}}'"
    try:
        result = subprocess.run([sys.executable, "-c", _RAY_PROBE, address], capture_output=True, text=True,
                                timeout=RAY_TIMEOUT_S, check=False, env=env)
    except subprocess.TimeoutExpired:
        return rows + [Check("ray cluster", False, f"no answer from {address} within {RAY_TIMEOUT_S:g} s",
                             f"start one: `{start}`", level="optional")]
    if result.returncode != 0:
        message = (result.stderr.strip().splitlines() or ["no answer"])[-1][:300]
        return rows + [Check("ray cluster", False, f"not reachable at {address}: {message}",
                             f"start one: `{start}`", level="optional")]
    found = json.loads(result.stdout.strip().splitlines()[-1])
    resources = found["resources"]
    slots = int(resources.get("sandbox", 0))
    detail = (f"{address}: {found['nodes']} node(s), {resources.get('CPU', 0):g} CPUs, "
              f"{resources.get('GPU', 0):g} GPUs, {slots} sandbox slots")
    fix = "" if slots else "give each node sandbox slots: `ray start --address HEAD:PORT --resources '{\"sandbox\": 4}'`"
    return rows + [Check("ray cluster", slots > 0, detail, fix, level="optional")]


def collect_checks(*, ray_address: str | None = None) -> list[Check]:
    """Run every check, in report order."""
    checks = [check_python()]
    checks += [check_package(module, pypi) for module, pypi in PACKAGES.items()]
    checks.append(check_torch())
    checks += [check_binary(binary, package) for binary, package in BINARIES.items()]
    engine = check_engine()
    checks += [engine, check_image(engine.ok), check_display(), check_leftovers(engine.ok)]
    checks += check_isolation(engine.ok)
    checks.append(check_proposer())
    checks += check_ray(ray_address)
    return checks


def all_required_ok(checks: list[Check]) -> bool:
    return all(check.ok for check in checks if check.level == "required")


def format_table(checks: list[Check]) -> str:
    width = max(len(check.name) for check in checks)
    lines = []
    for check in checks:
        mark = "✓" if check.ok else ("✗" if check.level == "required" else "!")
        lines.append(f"{mark} {check.name:<{width}}  {check.detail}")
        if not check.ok and check.fix:
            lines.append(f"  {'':<{width}}  fix: {check.fix}")
    failed = sum(1 for check in checks if check.level == "required" and not check.ok)
    lines.append("")
    lines.append("all required checks passed" if not failed else f"{failed} required check(s) failed: run the fixes above")
    return "\n".join(lines)


def run_doctor(*, as_json: bool = False, out: TextIO = sys.stdout, ray_address: str | None = None) -> int:
    """Print the report to `out`; return 0 when everything the default path needs is present, else 1."""
    checks = collect_checks(ray_address=ray_address)
    ok = all_required_ok(checks)
    if as_json:
        json.dump({"ok": ok, "checks": [asdict(check) for check in checks]}, out, indent=2)
        out.write("\n")
    else:
        out.write(format_table(checks) + "\n")
    return 0 if ok else 1
