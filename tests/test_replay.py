"""Replay: a real recorded demo reproduces; a perturbed copy is flagged at the right step."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest

from deskdojo.agent.demos import DemoRecorder
from deskdojo.agent.replay import DEFAULT_MIN_STRUCTURE, replay
from deskdojo.core.actions import Click
from deskdojo.core.fakes import FixedJudge
from deskdojo.core.types import Task

pytestmark = pytest.mark.display

LABELS = ["apple", "pear", "plum", "fig"]
CLICKS = ["apple", "plum", "pear", "plum"]
PERTURBED = 1  # the step whose click goes to another button in the perturbed copy


@pytest.fixture(scope="module")
def recorded(box: Any, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, tuple[int, int]]]:
    """A demo of four clicks in the buttons app, recorded in a real sandbox."""
    from deskdojo.vm.guest.apps import launch_step

    task = Task(id="buttons-replay", instruction="Click apple, plum, pear, plum.", family="test",
                setup=(launch_step("buttons", {"seed": 3, "labels": LABELS}, python="python3"),))
    recorder = DemoRecorder(box, task, tmp_path_factory.mktemp("demos"))
    points = buttons_points(box)
    for label in CLICKS:
        assert recorder.act(Click(*points[label])).ok
    wait_history(box, CLICKS)
    return recorder.finish("clicks"), points


def wait_history(sandbox: Any, expected: list[str], timeout: float = 5.0) -> None:
    """The app publishes its state a moment after a click is handled."""
    import time

    deadline = time.monotonic() + timeout
    while (history := sandbox.app_state()["apps"]["buttons"]["history"]) != expected:
        assert time.monotonic() < deadline, f"history {history}, expected {expected}"
        time.sleep(0.05)


def buttons_points(sandbox: Any, timeout: float = 10.0) -> dict[str, tuple[int, int]]:
    import time

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        state = sandbox.app_state()["apps"].get("buttons")
        if state and all(state["widgets"][f"button:{label}"]["w"] > 0 for label in LABELS):
            return {label: (box["x"] + box["w"] // 2, box["y"] + box["h"] // 2)
                    for label in LABELS for box in [state["widgets"][f"button:{label}"]]}
        time.sleep(0.05)
    raise AssertionError("the buttons app published no state")


def perturbed_copy(demo: Path, to: Path, point: tuple[int, int]) -> Path:
    shutil.copytree(demo, to)
    lines = (to / "steps.jsonl").read_text().splitlines()
    step = json.loads(lines[PERTURBED])
    step["action"]["x"], step["action"]["y"] = point
    lines[PERTURBED] = json.dumps(step)
    (to / "steps.jsonl").write_text("\n".join(lines) + "\n")
    return to


def test_faithful_replay_matches(box: Any, recorded: tuple[Path, Any]) -> None:
    demo, _points = recorded
    seen: list[tuple[int, tuple[int, ...], tuple[int, ...], float]] = []
    report = replay(demo, box, judge=FixedJudge(success=True),
                    on_step=lambda i, rec, live, sim: seen.append((i, rec.shape, live.shape, sim)))
    assert report.first_divergent is None and not report.diverged
    assert [s.index for s in report.steps] == [0, 1, 2, 3, 4]  # four clicks and the final Done
    assert all(s.structure >= DEFAULT_MIN_STRUCTURE for s in report.steps)
    assert [i for i, *_ in seen] == [0, 1, 2, 3, 4] and seen[0][1] == seen[0][2] == (768, 1024, 3)
    wait_history(box, CLICKS)  # the replay did it again
    assert report.verdict is not None and report.verdict.success


def test_perturbed_copy_is_flagged_at_the_right_step(box: Any, recorded: tuple[Path, Any],
                                                     tmp_path: Path) -> None:
    demo, points = recorded
    assert CLICKS[PERTURBED] != "fig"
    copy = perturbed_copy(demo, tmp_path / "perturbed", points["fig"])
    report = replay(copy, box)
    # the click of step 1 went to fig: the screen before step 2 is not the recorded one
    assert report.first_divergent == PERTURBED + 1
    assert [s.diverged for s in report.steps][:PERTURBED + 2] == [False] * (PERTURBED + 1) + [True]
    assert report.steps[PERTURBED + 1].structure < DEFAULT_MIN_STRUCTURE
    wait_history(box, ["apple", "fig", "pear", "plum"])

    early = replay(copy, box, until_diverge=True, judge=FixedJudge())
    assert early.stopped_early and early.first_divergent == PERTURBED + 1
    assert len(early.steps) == PERTURBED + 2 and early.verdict is None
    wait_history(box, ["apple", "fig"])


def test_replay_cli_exit_codes(recorded: tuple[Path, Any], tmp_path: Path,
                               capsys: pytest.CaptureFixture[str]) -> None:
    from deskdojo.cli import main

    demo, points = recorded
    assert main(["replay", str(demo), "--json", "--no-judge"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["first_divergent"] is None and len(report["steps"]) == 5
    copy = perturbed_copy(demo, tmp_path / "perturbed", points["fig"])
    assert main(["replay", str(copy), "--until-diverge", "--no-judge"]) == 1
    assert f"first divergence before step {PERTURBED + 1}" in capsys.readouterr().out
