"""`deskdojo doctor` against the real machine, and with parts of it taken away."""

from __future__ import annotations

import io
import json
import shutil
import subprocess
import sys

import pytest

from deskdojo import doctor
from deskdojo.doctor import BINARIES, collect_checks, run_doctor


def by_name(checks: list[doctor.Check]) -> dict[str, doctor.Check]:
    return {check.name: check for check in checks}


def report(**kwargs: bool) -> tuple[int, str]:
    out = io.StringIO()
    code = run_doctor(out=out, **kwargs)
    return code, out.getvalue()


def test_every_check_has_a_unique_name_and_a_fix_when_required_and_failing() -> None:
    checks = collect_checks()
    assert len({check.name for check in checks}) == len(checks)
    for check in checks:
        assert check.level in ("required", "optional", "info")
        if not check.ok and check.level != "info":
            assert check.fix, check


def test_python_and_base_packages_pass_in_the_project_venv() -> None:
    checks = by_name(collect_checks())
    for name in ("python", "numpy", "PIL", "mss", "pyautogui", "Xlib"):
        assert checks[name].ok, checks[name]


def test_empty_path_reports_every_binary_missing_with_its_fix(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", "")
    checks = by_name(collect_checks())
    for binary, package in BINARIES.items():
        check = checks[binary]
        assert not check.ok
        # Either apt installs it, or it is installed in an sbin folder that PATH misses.
        assert package in check.fix or "export PATH=" in check.fix, check
    assert not checks["docker engine"].ok
    assert not checks["sandbox image"].ok

    code, text = report()
    assert code == 1
    assert "✗ Xvfb" in text
    assert "install -y --no-install-recommends xvfb" in text
    assert "required check(s) failed" in text


def test_table_prints_the_fix_under_each_failed_row(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", "")
    _, text = report()
    lines = text.splitlines()
    for index, line in enumerate(lines):
        if line.startswith("✗"):
            assert lines[index + 1].strip().startswith("fix: "), line


def test_json_has_one_entry_per_check_and_matches_the_exit_code() -> None:
    code, text = report(as_json=True)
    data = json.loads(text)
    names = [check.name for check in collect_checks()]
    assert [entry["name"] for entry in data["checks"]] == names
    assert set(data["checks"][0]) == {"name", "ok", "detail", "fix", "level"}
    assert code == (0 if data["ok"] else 1)


@pytest.mark.skipif(shutil.which("docker") is None, reason="needs the docker CLI: run `make setup`")
def test_unreachable_engine_fails_with_the_dockerd_fix(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DOCKER_HOST", "unix:///nonexistent.sock")
    checks = by_name(collect_checks())
    engine = checks["docker engine"]
    assert not engine.ok
    assert "unix:///nonexistent.sock" in engine.detail
    assert "nohup dockerd" in engine.fix and "--provider xvfb" in engine.fix
    assert not checks["sandbox image"].ok

    code, text = report()
    assert code == 1
    assert "nohup dockerd >/var/log/deskdojo-dockerd.log 2>&1 &" in text


def test_missing_image_module_is_reported_not_raised(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "deskdojo.vm.image", None)
    check = doctor.check_image(engine_ok=True)
    assert not check.ok and "deskdojo.vm.image" in check.detail


@pytest.mark.docker
@pytest.mark.display
def test_real_machine_has_docker_and_xvfb() -> None:
    checks = by_name(collect_checks())
    for name in ("Xvfb", "docker", "docker engine"):
        assert checks[name].ok, checks[name]


@pytest.mark.docker
def test_leftover_sandbox_is_reported_as_info_with_the_clean_command() -> None:
    from deskdojo.vm.image import build_image

    created = subprocess.run(  # created, never started: enough to be listed
        ["docker", "create", "--label", "deskdojo=1", "--label", "deskdojo-test=1", build_image(), "true"],
        capture_output=True, text=True, check=True,
    )
    container = created.stdout.strip()
    try:
        leftovers = by_name(collect_checks())["leftover sandboxes"]
        assert not leftovers.ok
        assert leftovers.level == "info"
        assert leftovers.fix == "make clean-sandboxes"
    finally:
        subprocess.run(["docker", "rm", "-f", container], capture_output=True, check=False)


def test_the_offline_default_says_templates_and_exploration_stand_in_for_a_model_proposer() -> None:
    from deskdojo.doctor import check_proposer, collect_checks

    row = check_proposer()
    assert row.ok and row.level == "info" and "exploration" in row.detail and "--proposer MODEL" in row.detail
    assert "task proposer" in [c.name for c in collect_checks()]
