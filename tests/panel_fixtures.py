"""A fabricated run directory for the panel's tests: real writers (RunDir, TrajectoryWriter,
JsonlFile), synthetic but distinct PNG frames, verdicts, metrics, curriculum and tasks."""

from __future__ import annotations

import io
import json
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from deskdojo.core.actions import Click, Done, Drag, Key, Scroll, Type
from deskdojo.core.records import to_json
from deskdojo.core.rundir import RunDir, write_atomic
from deskdojo.core.types import (
    CheckEvidence, EndReason, Provenance, Split, Step, StepLabel, Task, Verdict,
)

SCREEN = (640, 480)
FAMILIES = ("buttons", "form", "menus")
ITERATIONS = 12


@dataclass(frozen=True)
class FakeRun:
    path: Path
    trajectory_ids: tuple[str, ...]
    demo_id: str
    task_ids: tuple[str, ...]
    admitted: int


def frame_png(index: int, *, seed: int = 0, size: tuple[int, int] = SCREEN) -> bytes:
    """A desktop-like frame: a gradient, a window with a title bar and coloured buttons."""
    width, height = size
    rng = np.random.default_rng(seed * 100 + index)
    y, x = np.mgrid[0:height, 0:width]
    base = np.stack([(x * 255 // width), (y * 255 // height), np.full_like(x, 90 + 20 * (index % 5))], -1)
    image = Image.fromarray(base.astype(np.uint8))
    draw = ImageDraw.Draw(image)
    left, top = 60 + 10 * index, 50 + 5 * index
    draw.rectangle([left, top, left + 400, top + 300], fill=(235, 235, 235), outline=(20, 20, 20))
    draw.rectangle([left, top, left + 400, top + 24], fill=(50, 90, 160))
    draw.text((left + 8, top + 6), f"deskdojo buttons — step {index}", fill=(255, 255, 255))
    for button in range(4):
        colour = tuple(int(c) for c in rng.integers(40, 220, 3))
        bx, by = left + 30 + 90 * button, top + 80
        draw.rectangle([bx, by, bx + 70, by + 40], fill=colour, outline=(0, 0, 0))
        draw.text((bx + 10, by + 14), f"btn {button}", fill=(0, 0, 0))
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", compress_level=1)
    return buffer.getvalue()


def make_task(number: int, *, family: str, level: int, split: Split = Split.TRAIN) -> Task:
    return Task(id=f"{family}-{level}-{number}", instruction=f"Click the button number {number % 4} in {family}",
                family=family, level=level, seed=number, split=split,
                provenance=(Provenance.TEMPLATE, Provenance.EXPLORATION, Provenance.MODEL)[number % 3])


def make_run(root: Path, name: str = "run-test", *, trajectories: int = 3, steps: int = 4,
             with_status: bool = False) -> FakeRun:
    run = RunDir.create(root / name, {"model": "tiny", "provider": "xvfb", "sandboxes": 2, "iterations": ITERATIONS})
    tasks_log = run.jsonl("tasks.jsonl")
    tasks: list[Task] = []
    admitted = 0
    for number in range(9):
        task = make_task(number, family=FAMILIES[number % 3], level=number // 3,
                         split=Split.HELDOUT if number == 8 else Split.TRAIN)
        ok = number % 4 != 3
        admitted += ok
        tasks_log.append({"task": to_json(task), "admitted": ok,
                          "reason": None if ok else "doing nothing already passes the checks",
                          "time": time.time() - 100 + number})
        tasks.append(task)

    actions = [Click(200, 150), Type("hello"), Drag(100, 100, 300, 200), Scroll(320, 240, dy=3),
               Key(("ctrl", "s")), Done()]
    labels = [StepLabel.PROGRESS, StepLabel.NO_OP, StepLabel.ERROR, StepLabel.PROGRESS,
              StepLabel.PROGRESS, StepLabel.PROGRESS]
    trajectory_ids = []
    for t in range(trajectories):
        task = tasks[t]
        traj_id = f"it0001-{t:02d}"
        writer = run.trajectory_writer(traj_id, task.id, policy_id="tiny")
        for index in range(steps):
            frame = writer.write_frame(index, frame_png(index, seed=t))
            action = actions[index % len(actions)]
            writer.append_step(Step(index=index, action=action, frame=frame,
                                    model_text=f"I see the window. Action: {action.kind} (step {index})",
                                    delta={"apps": {"buttons": {"clicks": {"btn 0": index}}},
                                           "windows": {"focused": "deskdojo buttons"}} if index % 2 == 0 else None,
                                    action_error="click at (900, 900) is off the screen" if index == 2 else None))
        writer.finish(EndReason.DONE)
        success = t % 2 == 0
        run.jsonl("verdicts.jsonl").append(Verdict(
            task_id=task.id, trajectory_id=traj_id, success=success, score=1.0 if success else 0.25,
            judge_id="checks-v1",
            evidence=(CheckEvidence("app_state:buttons.clicks", success, 1.0 if success else 0.0,
                                    observed={"btn 0": 1}, message="clicked once"),
                      CheckEvidence("window_title", True, 1.0, observed="deskdojo buttons")),
            step_labels=tuple(labels[:steps]), first_error_step=None if success else 2))
        trajectory_ids.append(traj_id)

    demo_id = "demo-buttons"
    demo = run.trajectory_writer(demo_id, tasks[0].id, policy_id="human", demo=True)
    for index in range(3):
        frame = demo.write_frame(index, frame_png(index, seed=9))
        demo.append_step(Step(index=index, action=actions[index], frame=frame))
    demo.finish(EndReason.DONE)
    write_atomic(run.path / "demos" / demo_id / "task.json", json.dumps(to_json(tasks[0])).encode())

    metrics = run.jsonl("metrics.jsonl")
    for iteration in range(ITERATIONS):
        metrics.append(metrics_line(iteration))

    curriculum = {"families": {}, "recent_choices": [], "moves": [{"family": "buttons", "from": 0, "to": 1}],
                  "retired": [], "proposals": {"source": "exploration", "pool": ["explore_menus-L1-ab"], "tasks": 2,
                                               "refills": [{"after_iteration": 3, "relation": "harder",
                                                            "reference": "explore_menus-L0-cd", "rate": 1.0,
                                                            "proposed": 1, "entered": ["explore_menus-L1-ab"]}]}}
    for f_number, family in enumerate(FAMILIES):
        levels = {}
        for level in range(3):
            attempts = 10 * (3 - level)
            successes = int(attempts * max(0.0, 0.9 - 0.3 * level - 0.1 * f_number))
            levels[str(level)] = {"attempts": attempts, "successes": successes,
                                  "rate": successes / attempts if attempts else None}
        levels["3"] = {"attempts": 0, "successes": 0, "rate": None}
        curriculum["families"][family] = {"level": 1 + f_number % 2, "levels": levels, "value": 0.1 * (f_number + 1)}
        curriculum["recent_choices"].append([family, 1 + f_number % 2])
    write_atomic(run.path / "curriculum.json", json.dumps(curriculum).encode())
    if with_status:
        write_atomic(run.path / "status.json", json.dumps({
            "state": "finished", "pid": 0, "iteration": ITERATIONS, "env_steps": 480,
            "updated": time.time(), "sandboxes": []}).encode())
    return FakeRun(run.path, tuple(trajectory_ids), demo_id, tuple(t.id for t in tasks), admitted)


def metrics_line(iteration: int) -> dict:
    return {"iteration": iteration, "time": time.time(), "wall_s": 30.0 * (iteration + 1),
            "env_steps": 40 * (iteration + 1), "train_success": min(1.0, 0.1 + 0.06 * iteration),
            "heldout_success": None if iteration % 3 else min(1.0, 0.05 + 0.05 * iteration),
            "success_by_family": {"buttons": {"0": 0.8}}, "reward_mean": 0.2 + 0.03 * iteration,
            "grounding": 0.3 + 0.02 * iteration,
            "adv_mean_abs": 0.4, "loss": 1.0 / (1 + iteration), "kl": 0.001 * iteration,
            "entropy": 2.0 - 0.05 * iteration, "clip_frac": 0.1, "tokens_per_s": 900.0,
            "env_steps_per_s": 12.0 + iteration % 3,
            "time_split": {"rollout": 20.0, "judge": 2.0, "train": 8.0},
            "replayed": iteration % 2, "retired": int(iteration == 4), "admitted": 2, "rejected": int(iteration == 1),
            "errors": 2 if iteration == 4 else 0}
