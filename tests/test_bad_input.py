"""Bad input files, fed to the `deskdojo` command as a user would: each one is refused up
front with a message that names the file and the field (or line), a non-zero exit and no
traceback; a bad config makes no run folder and starts no sandbox."""

from __future__ import annotations

import json
import os
import pickle
import random
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

DESKDOJO = str(Path(sys.executable).with_name("deskdojo"))
SANDBOX_LOG = "sandboxes; families"  # build_parts' line "starting N xvfb sandboxes; families: ..."


def run(*args: str, timeout: float = 120, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([DESKDOJO, *map(str, args)], capture_output=True, text=True, timeout=timeout,
                          cwd=cwd, env={**os.environ, "PYTHONWARNINGS": "ignore"})


def refused(out: subprocess.CompletedProcess[str], *needles: str) -> str:
    """The one-line message of a clean refusal (exit 1, `deskdojo: ...`, no traceback)."""
    assert "Traceback" not in out.stderr, out.stderr[-2000:]
    assert out.returncode == 1, (out.returncode, out.stdout[-1000:], out.stderr[-1000:])
    message = out.stderr.strip().splitlines()[-1]
    assert message.startswith("deskdojo: "), out.stderr
    for needle in needles:
        assert needle in message, (needle, message)
    return message


# --- demos: replay, import, export, SFT ---------------------------------------------------


@pytest.fixture
def demo(tmp_path: Path) -> Path:
    """A finished one-step demo with a real PNG frame (no sandbox needed to make it)."""
    from deskdojo.agent.train.sft import make_click_target_demos

    root = make_click_target_demos(tmp_path / "demos", 1, screen=(320, 240))
    (folder,) = root.iterdir()
    return folder


def _set_frame(demo: Path, frame: str) -> None:
    steps = demo / "steps.jsonl"
    step = json.loads(steps.read_text())
    steps.write_text(json.dumps({**step, "frame": frame}) + "\n")


def test_replay_refuses_a_frame_that_is_not_a_png(demo: Path):
    (demo / "frames" / "0000.png").write_bytes(b"not a png at all")
    refused(run("replay", demo, "--no-judge", "--provider", "xvfb"),
            str(demo / "frames" / "0000.png"), "(step 0)", "not a readable PNG")


def test_replay_refuses_a_cut_off_png(demo: Path):
    frame = demo / "frames" / "0000.png"
    frame.write_bytes(frame.read_bytes()[:200])
    refused(run("replay", demo, "--no-judge", "--provider", "xvfb"), str(frame), "(step 0)", "not a readable PNG")


@pytest.mark.parametrize("frame", ["../../../../etc/passwd", "/etc/passwd"])
def test_replay_refuses_frame_paths_out_of_the_demo(demo: Path, frame: str):
    _set_frame(demo, frame)
    refused(run("replay", demo, "--no-judge", "--provider", "xvfb"),
            f"{demo / 'steps.jsonl'}: step 0: frame {frame!r}", "must be a path inside the demo folder")


def test_replay_and_import_refuse_a_frame_symlinked_out_of_the_demo(demo: Path, tmp_path: Path):
    outside = tmp_path / "outside.png"
    shutil.copyfile(demo / "frames" / "0000.png", outside)  # a valid PNG: only where it lies is wrong
    (demo / "frames" / "0000.png").unlink()
    (demo / "frames" / "0000.png").symlink_to(outside)
    for out in (run("replay", demo, "--no-judge", "--provider", "xvfb"),
                run("demos", "import", demo, "--demos", tmp_path / "imported")):
        refused(out, f"{demo / 'steps.jsonl'}: step 0: frame 'frames/0000.png'", "leads out of the demo folder")
    assert not (tmp_path / "imported").exists() or not any((tmp_path / "imported").iterdir())


@pytest.mark.parametrize("cut", [0, 40], ids=["empty", "truncated"])
def test_replay_refuses_an_empty_or_truncated_steps_file(demo: Path, cut: int):
    steps = demo / "steps.jsonl"
    steps.write_bytes(steps.read_bytes()[:cut])
    reason = "empty, the demo has no steps" if cut == 0 else "the last line is cut off"
    message = refused(run("replay", demo, "--no-judge", "--provider", "xvfb"), str(steps), reason)
    assert "no divergence" not in message


def test_export_and_sft_refuse_a_demo_with_a_bad_png(demo: Path, tmp_path: Path):
    from deskdojo.agent.train.sft import read_demos
    from deskdojo.core.errors import RecordError

    (demo / "frames" / "0000.png").write_bytes(b"\x89PNG\r\n\x1a\n garbage")
    refused(run("demos", "export", demo, tmp_path / "out"), str(demo / "frames" / "0000.png"), "not a readable PNG")
    assert not (tmp_path / "out").exists()
    with pytest.raises(RecordError, match=r"0000\.png \(step 0\) is not a readable PNG"):
        read_demos(demo.parent)  # SFT stops before it trains, naming the file


def test_osworld_import_refuses_a_bad_screenshot(tmp_path: Path):
    source = tmp_path / "osworld"
    source.mkdir()
    (source / "traj.jsonl").write_text(json.dumps({"step_num": 1, "action": "pyautogui.click(10, 10)",
                                                   "screenshot_file": "step_1.png"}) + "\n")
    (source / "step_1.png").write_bytes(b"not a png")
    refused(run("demos", "import", source, "--demos", tmp_path / "demos"),
            str(source / "step_1.png"), "traj.jsonl line 1", "not a readable PNG")


# --- resume: checkpoints and logs are read before any sandbox starts ----------------------


def _run_folder(path: Path, cursor: str, metrics: str | None = None) -> Path:
    """A run folder with one checkpoint, as `deskdojo evolve` leaves it; its config would
    start 2 xvfb sandboxes."""
    import numpy as np

    from deskdojo.core.rundir import RunDir, write_atomic

    config = {"provider": "xvfb", "sandboxes": 2, "budget": {"iterations": 1}, "sft": {"enabled": False},
              "eval": {"at_start": False}}
    run_dir = RunDir.create(path, config)

    def fill(folder: Path) -> None:
        (folder / "learner").mkdir()
        write_atomic(folder / "plan.json", b"{}")
        write_atomic(folder / "rng.pkl", pickle.dumps({"python": random.getstate(), "numpy": np.random.get_state()}))
        write_atomic(folder / "cursor.json", cursor.encode())

    run_dir.write_checkpoint(0, fill)
    if metrics is not None:
        (path / "metrics.jsonl").write_text(metrics)
    return path


def _snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_resume_refuses_an_empty_cursor_before_starting_sandboxes(tmp_path: Path):
    run_dir = _run_folder(tmp_path / "run", cursor="")
    before = _snapshot(run_dir)
    out = run("evolve", "--resume", run_dir)
    refused(out, str(run_dir / "checkpoints" / "000000" / "cursor.json"), "empty", "checkpoint 000000 is damaged")
    assert SANDBOX_LOG not in out.stdout
    assert _snapshot(run_dir) == before  # nothing lost


def test_resume_names_a_bad_cursor_field(tmp_path: Path):
    cursor = {"iteration": "three", "env_steps": 0, "wall_s": 0.0, "trajectory_ids": [], "lines": {}}
    run_dir = _run_folder(tmp_path / "run", cursor=json.dumps(cursor))
    refused(run("evolve", "--resume", run_dir), "cursor.json: iteration: expected an integer")


def test_resume_reports_a_corrupt_metrics_line_before_starting_sandboxes(tmp_path: Path):
    cursor = {"iteration": 0, "lines": {"metrics.jsonl": 1}}
    run_dir = _run_folder(tmp_path / "run", cursor=json.dumps(cursor),
                          metrics='{"iteration": 0}\n{"iteration": 1, oops\n{"iteration": 1}\n')
    before = _snapshot(run_dir)
    out = run("evolve", "--resume", run_dir)
    refused(out, f"{run_dir / 'metrics.jsonl'}:2: not valid JSON")
    assert SANDBOX_LOG not in out.stdout  # the old code started 2 sandboxes first
    assert _snapshot(run_dir) == before


# --- configs: nested keys are checked before a folder or a sandbox exists -----------------


@pytest.mark.parametrize("body, needles", [
    ("policy: {tempratur: 0.7}\n", ["policy config has no key 'tempratur'", "temperature"]),
    ("grpo: {lrr: 1}\n", ["grpo config has no key 'lrr'", "lr"]),
    ("policy: {lora: {rank: 4}}\n", ["policy config.lora has no key 'rank'"]),
    ("rollout: {max_step: 3}\n", ["rollout config has no key 'max_step'"]),
    ("sandbox: {screan: [640, 480]}\n", ["sandbox config has no key 'screan'"]),
    ("sft: {options: {batchsize: 2}}\n", ["sft.options: SFT config has no key 'batchsize'"]),
    ("curriculum: {scheduler: {windw: 3}}\n", ["curriculum.scheduler: scheduler config has no key 'windw'"]),
], ids=["policy", "grpo", "lora", "rollout", "sandbox", "sft", "scheduler"])
def test_evolve_refuses_unknown_nested_keys_before_making_anything(tmp_path: Path, body: str, needles: list[str]):
    config = tmp_path / "bad.yaml"
    config.write_text(body)
    runs = tmp_path / "runs"
    out = run("evolve", "--config", config, "--provider", "xvfb", "--sandboxes", "1", "--runs-root", runs,
              "--iterations", "1", timeout=300)
    refused(out, f"{config}: ", *needles)
    assert not runs.exists()
    assert SANDBOX_LOG not in out.stdout


def test_run_checks_the_config_before_the_run_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """`deskdojo run`'s config comes from the code; `run_evolve` checks any config first,
    so a bad nested key (here as a caller could pass it) makes no folder."""
    from deskdojo.core.errors import ConfigError
    from deskdojo.evolve.config import EvolveConfig
    from deskdojo.evolve.run import run_evolve

    config = EvolveConfig.from_dict({"provider": "xvfb", "policy": {"tempratur": 0.7}})
    with pytest.raises(ConfigError, match="tempratur"):
        run_evolve(config, tmp_path / "runs" / "x", log=lambda line: None)
    assert not (tmp_path / "runs").exists()


# --- task files ----------------------------------------------------------------------------


def _task() -> dict[str, Any]:
    from deskdojo.core.records import to_json
    from deskdojo.curriculum.families import get_family

    return to_json(get_family("click_button").generate(0, 0, "train"))


def test_a_setup_argv_given_as_a_string_is_refused_when_loaded(tmp_path: Path):
    task = _task()
    task["setup"] = [{"kind": "run", "args": {"argv": "rm -rf notes"}}]
    path = tmp_path / "t.json"
    path.write_text(json.dumps(task))
    for out in (run("tasks", "show", path), run("record", "--task", path, "--oracle", "--demos", tmp_path / "d")):
        refused(out, f"{path}: Task.setup[0]: args.argv must be a non-empty list of strings", "'rm -rf notes'")
    assert not (tmp_path / "d").exists()


def test_setup_steps_are_closed_and_typed():
    from deskdojo.core.errors import RecordError
    from deskdojo.core.types import SetupStep

    with pytest.raises(RecordError, match="no argument 'cmd'"):
        SetupStep("run", {"argv": ["ls"], "cmd": "ls"})
    with pytest.raises(RecordError, match="args.path is required"):
        SetupStep("write_file", {"content": "x"})
    with pytest.raises(RecordError, match="args.seconds must be a number"):
        SetupStep("wait", {"seconds": "soon"})
    assert SetupStep("launch", {"argv": ["xterm"], "wait_window": "x", "timeout": 5}).args["argv"] == ["xterm"]


def test_a_json_list_of_tasks_loads_and_errors_name_the_file_then_the_field(tmp_path: Path):
    task = _task()
    listed = tmp_path / "list.json"
    listed.write_text(json.dumps([task, {**task, "id": "second"}]))
    out = run("tasks", "show", listed, "--json")
    assert out.returncode == 0, out.stderr
    assert [json.loads(line)["id"] for line in out.stdout.splitlines()] == [task["id"], "second"]
    listed.write_text(json.dumps([task, {**task, "id": "second", "level": "two"}]))
    refused(run("tasks", "show", listed), f"{listed}: tasks[1].level: expected an integer, got 'two'")
    single = tmp_path / "t.json"
    single.write_text(json.dumps({**task, "level": "two"}))
    for out in (run("tasks", "show", single), run("record", "--task", single, "--oracle", "--demos", tmp_path / "d")):
        refused(out, f"{single}: Task.level: expected an integer, got 'two'")
    one = tmp_path / "one.json"
    one.write_text(json.dumps([{**task, "level": "two"}]))
    refused(run("record", "--task", one, "--oracle", "--demos", tmp_path / "d"), f"{one}: tasks[0].level")


# --- a closed pipe -------------------------------------------------------------------------


def test_a_closed_stdout_pipe_ends_quietly():
    """`deskdojo tasks families | head -1`: the reader goes away before the output is written."""
    proc = subprocess.Popen([DESKDOJO, "tasks", "families"], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert proc.stdout is not None and proc.stderr is not None
    proc.stdout.close()
    stderr = proc.stderr.read().decode()
    assert proc.wait(timeout=60) == 1
    assert "Traceback" not in stderr and "BrokenPipeError" not in stderr, stderr
