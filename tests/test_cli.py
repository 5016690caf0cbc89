"""The `deskdojo` command end to end, as a user types it (real sandboxes, real PNGs)."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

DESKDOJO = str(Path(sys.executable).with_name("deskdojo"))


def run(*args: str, env: dict | None = None, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run([DESKDOJO, *args], capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, **(env or {})})


@pytest.mark.parametrize("provider", [pytest.param("xvfb", marks=pytest.mark.display),
                                      pytest.param("docker", marks=pytest.mark.docker)])
def test_sandbox_up_use_and_down(provider, tmp_path):
    from PIL import Image

    up = run("sandbox", "up", "--provider", provider, "--screen", "640x480")
    assert up.returncode == 0, up.stderr
    name = json.loads(up.stdout)["name"]
    try:
        listed = json.loads(run("sandbox", "list", "--json").stdout)
        assert {"name": name, "provider": provider} in [
            {k: row[k] for k in ("name", "provider")} for row in listed]

        shot = run("sandbox", "screenshot", name, "-o", str(tmp_path / "s.png"))
        assert shot.returncode == 0, shot.stderr
        assert Image.open(io.BytesIO((tmp_path / "s.png").read_bytes())).size == (640, 480)

        ok = run("sandbox", "act", name, '{"kind": "click", "x": 10, "y": 20}')
        assert ok.returncode == 0 and json.loads(ok.stdout)["ok"] is True
        refused = run("sandbox", "act", name, '{"kind": "click", "x": 900, "y": 20}')
        assert refused.returncode == 2 and "off the 640x480 screen" in json.loads(refused.stdout)["error"]
        bad = run("sandbox", "act", name, '{"kind": "teleport"}')
        assert bad.returncode == 1 and "'teleport' is not one of" in bad.stderr
        not_json = run("sandbox", "act", name, "click 10 20")
        assert not_json.returncode == 1 and "not JSON" in not_json.stderr

        echo = run("sandbox", "exec", name, "--", "sh", "-c", "echo out; echo err >&2; exit 3")
        assert (echo.returncode, echo.stdout, echo.stderr) == (3, "out\n", "err\n")
        hung = run("sandbox", "exec", name, "--timeout", "1", "--", "sleep", "30")
        assert hung.returncode == 124 and "killed after 1 s" in hung.stderr
    finally:
        down = run("sandbox", "down", name)
    assert down.returncode == 0 and json.loads(down.stdout)["stopped"] == [name]
    assert name not in {row["name"] for row in json.loads(run("sandbox", "list", "--json").stdout)}
    gone = run("sandbox", "screenshot", name)
    assert gone.returncode == 1 and f"no sandbox named '{name}'" in gone.stderr


def test_unreachable_docker_engine_says_how_to_start_it():
    out = run("sandbox", "up", "--provider", "docker", env={"DOCKER_HOST": "unix:///nonexistent/docker.sock"})
    assert out.returncode == 1
    assert "docker engine not reachable" in out.stderr and "dockerd" in out.stderr
    assert "--provider xvfb" in out.stderr


def test_host_desktop_needs_the_opt_in():
    out = run("sandbox", "act", "host", '{"kind": "move", "x": 1, "y": 1}', env={"DISPLAY": ":99"})
    assert out.returncode == 1 and "--i-understand-this-controls-my-desktop" in out.stderr


@pytest.mark.docker
def test_image_build_is_a_fast_no_op_when_nothing_changed():
    from deskdojo.vm.image import current_tag

    out = run("image", "build")
    assert out.returncode == 0 and out.stdout.strip().endswith(current_tag())


@pytest.mark.display
def test_bench_env_json_has_the_documented_keys():
    out = run("bench", "env", "--json", "--providers", "xvfb", "--counts", "1,2", "--repeats", "1",
              "--screen", "320x240", timeout=300)
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout)
    for key in ("provider", "cold_start_s", "reset_s", "screenshot_raw_ms", "screenshot_png_ms",
                "action_ms", "step_ms", "floor_step_ms", "steps_per_s"):
        assert key in result, key
    assert result["provider"] == "xvfb" and set(result["steps_per_s"]) == {"1", "2"}
    assert all(result[k] > 0 for k in ("cold_start_s", "step_ms", "floor_step_ms"))
    # action and step time the action path, not the guest's wait between two clicks
    assert result["action_ms"] < result["click_gap_ms"] / 2 < result["back_to_back_click_ms"]


@pytest.mark.display
def test_demo_writes_frames_and_steps(tmp_path):
    out = run("demo", "--provider", "xvfb", "--screen", "800x600", "--out", str(tmp_path / "demo"))
    assert out.returncode == 0, out.stderr + out.stdout
    folder = tmp_path / "demo" / "trajectories" / "demo"
    steps = [json.loads(line) for line in (folder / "steps.jsonl").read_text().splitlines()]
    assert len(steps) == 7 and all((folder / s["frame"]).exists() for s in steps)
    assert json.loads((folder / "trajectory.json").read_text())["end"] == "done"
    assert "-> success" in out.stdout


@pytest.mark.display
def test_bench_learning_runs_four_arms_from_one_sft_start(tmp_path):
    """`deskdojo bench learning` scaled down on real xvfb sandboxes: one seed, a 2-step SFT
    start on oracle demos, both GRPO arms on the same env-step budget, (d) recording new
    oracle demos until it has spent (b)'s CPU, every arm judged by the state judge on the
    same held-out tasks; a second call finds every arm finished."""
    import yaml

    config = tmp_path / "small.yaml"
    config.write_text(yaml.safe_dump({
        "sandboxes": 2, "group_size": 2, "tasks_per_iteration": 1, "max_steps": 2,
        "sandbox": {"screen": [640, 480]},
        "policy": {"max_new_tokens": 8, "lora": {"r": 4, "alpha": 8}},
        "sft": {"demos_per_family": 2, "steps": 2, "families": ["click_button"],
                "options": {"batch_size": 2, "warmup_steps": 1}},
        "curriculum": {"families": ["click_button"]}, "eval": {"every": 50}}))
    argv = ("bench", "learning", "--seeds", "1", "--budget-env-steps", "3", "--heldout-per-level", "2",
            "--levels", "0", "--provider", "xvfb", "--config", str(config), "--runs-root", str(tmp_path / "runs"),
            "--more-sft-chunk-steps", "2", "--json")
    out = run(*argv, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    report = json.loads(out.stdout)
    (seed,) = report["per_seed"]
    assert report["env_step_budget"] == 3 and report["provider"] == "xvfb"
    assert report["command"].startswith("deskdojo bench learning") and report["heldout"]["tasks"] == 2
    arms = seed["arms"]
    for name in ("curriculum", "uniform"):
        assert arms[name]["env_steps"] >= 3 and arms[name]["iterations"] >= 1  # the budget bound the arm
        assert arms[name]["curve"][0][0] == 0 and arms[name]["curve"][-1][0] == arms[name]["env_steps"]
    for name in ("sft_only", "curriculum", "uniform", "more_sft"):
        assert arms[name]["tasks"] == 2 and len(arms[name]["outcomes"]) == 2, name
    # one SFT start: (a) is (b)'s start, and (c) starts from a copy of the same weights
    assert arms["uniform"]["curve"][0][1] == arms["sft_only"]["success"]
    root = tmp_path / "runs" / "seed0"
    assert not any((root / "uniform" / "demos").iterdir()) and any((root / "sft-start" / "demos").iterdir())
    assert arms["more_sft"]["cpu_minutes"] >= arms["curriculum"]["cpu_minutes"]
    demos = [p for p in (root / "more-sft" / "demos").iterdir() if p.is_dir()]
    assert demos and all((p / "task.json").exists() for p in demos)  # real oracle demos, new seeds
    from deskdojo.core.rundir import JsonlFile

    verdicts = list(JsonlFile(root / "more-sft" / "verdicts.jsonl").read())
    assert {v["judge_id"] for v in verdicts} == {"state"}
    assert report["summary"]["seeds"] == 1 and "curriculum_minus_sft_pp" in report["summary"]

    again = run(*argv[:-1], timeout=300)  # a second call: all finished, tables only
    assert again.returncode == 0, again.stderr[-3000:]
    assert "(b)-(a), median over seeds" in again.stdout and "finished earlier; skipped" in again.stderr
