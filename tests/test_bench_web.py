"""``deskdojo bench web`` without browsers: its statistics, table, JSON, action mapping, and
the clear error when the peer's packages are missing."""

from __future__ import annotations

import builtins
import json

import pytest

from deskdojo.commands import bench_web
from deskdojo.commands.bench_web import Played, Script, compare, format_table, play, side_summary
from deskdojo.core.errors import ConfigError


class FakeEnv:
    """Resets and steps that take no time; an episode ends at its script's last action."""

    def __init__(self) -> None:
        self.calls: list[tuple] = []

    def reset(self, task: str, seed: int) -> None:
        self.calls.append(("reset", task, seed))
        self.left = {"click-button": 1, "enter-text": 3}[task]

    def step(self, action: dict) -> tuple[bool, bool]:
        self.calls.append(("step", action["kind"]))
        self.left -= 1
        return self.left == 0, self.left == 0


def _played(envs: int, resets: list[float], mids: list[float], lasts: list[float], wall: float,
            successes: int, moves: list[float] = ()) -> Played:
    return Played(envs=envs, reset_ms=resets, step_ms=mids, last_step_ms=lasts, successes=successes,
                  episodes=len(resets), wall_s=wall, move_ms=list(moves),
                  failed=[f"t/{k}" for k in range(len(resets) - successes)])


def test_play_replays_every_script_on_every_env_and_splits_the_last_step():
    scripts = [Script("click-button", 0, ({"kind": "click", "x": 1, "y": 2},)),
               Script("enter-text", 1, ({"kind": "click", "x": 1, "y": 2}, {"kind": "type", "text": "a"},
                                        {"kind": "click", "x": 3, "y": 4}))] * 2
    envs = [FakeEnv(), FakeEnv()]
    played = play(envs, scripts)
    assert played.episodes == 4 and played.successes == 4 and played.steps == 8
    assert len(played.last_step_ms) == 4 and len(played.step_ms) == 4 and played.wall_s > 0
    assert [c for c in envs[0].calls if c[0] == "reset"] == [("reset", "click-button", 0)] * 2


def test_a_failing_env_raises_in_the_caller():
    class Broken(FakeEnv):
        def step(self, action: dict) -> tuple[bool, bool]:
            raise RuntimeError("the browser died")

    with pytest.raises(RuntimeError, match="browser died"):
        play([Broken()], [Script("click-button", 0, ({"kind": "click", "x": 1, "y": 2},))])


def test_summary_comparison_table_and_json_from_fake_measurements():
    ours = side_summary({1: _played(1, [100.0, 120.0, 110.0], [20.0, 30.0], [10.0, 10.0, 40.0], 2.0, 3,
                                    moves=[9.0, 11.0, 10.0]),
                         4: _played(4, [200.0] * 3, [40.0] * 2, [40.0] * 3, 1.0, 3)})
    theirs = side_summary({1: _played(1, [100.0] * 3, [80.0] * 2, [60.0] * 3, 4.0, 2, moves=[30.0] * 3),
                           4: _played(4, [100.0] * 3, [80.0] * 2, [60.0] * 3, 2.5, 2)})
    # medians of the single-env run: steps 10, 10, 20, 30, 40 -> 20
    assert ours["reset_ms"] == 110.0 and ours["step_ms"] == 20.0 and ours["mid_step_ms"] == 25.0
    assert ours["steps_per_s"] == {"1": 2.5, "4": 5.0} and theirs["steps_per_s"] == {"1": 1.2, "4": 2.0}
    assert theirs["success_rate"] == round(2 / 3, 4) and theirs["step_ms"] == 60.0
    assert theirs["failed"] == ["t/0"] and ours["move_step_ms"] == 10.0
    verdict = compare(ours, theirs)
    assert verdict["step_ratio"] == round(20 / 60, 3) and verdict["mid_step_ratio"] == round(25 / 80, 3)
    assert verdict["move_step_ratio"] == round(10 / 30, 3) and verdict["target_met"]
    # judged on the steps that take a screenshot on both sides, not on the all-steps median
    assert not compare({**ours, "mid_step_ms": 41.0}, theirs)["target_met"]
    assert not compare({**ours, "move_step_ms": 16.0}, theirs)["target_met"]
    assert compare({**ours, "step_ms": 59.0}, theirs)["target_met"]
    result = {"tasks": ["click-button"], "episodes": 3, "ours": ours, "theirs": theirs, "comparison": verdict}
    table = format_table(result)
    assert "steps/s x4" in table and "66.7" in table and "(target <= 0.5: met)" in table
    assert json.loads(json.dumps(result)) == result


def test_our_actions_map_to_the_miniwob_action_space():
    class Config:
        allowed_keys = ["<Enter>", "C-a", "<Down>"]

    class Unwrapped:
        action_space_config = Config()

        def create_action(self, kind: str, **fields):
            return {"action_type": kind, **fields}

    class Env:
        unwrapped = Unwrapped()

    assert bench_web.to_miniwob_action(Env(), {"kind": "click", "x": 5, "y": 7}) == {
        "action_type": "CLICK_COORDS", "coords": [5.0, 7.0]}
    assert bench_web.to_miniwob_action(Env(), {"kind": "key", "keys": ["ctrl", "a"]})["key"] == 1
    assert bench_web.to_miniwob_action(Env(), {"kind": "type", "text": "hi"})["text"] == "hi"
    assert bench_web.to_miniwob_action(Env(), {"kind": "move", "x": 1, "y": 2})["action_type"] == "MOVE_COORDS"
    with pytest.raises(ConfigError, match="no miniwob action"):
        bench_web.to_miniwob_action(Env(), {"kind": "drag", "x": 1, "y": 1, "to_x": 2, "to_y": 2})


def test_missing_selenium_is_a_clear_error_naming_the_install(monkeypatch, capsys):
    real_import = builtins.__import__

    def no_selenium(name, *args, **kwargs):
        if name == "selenium" or name.startswith("selenium."):
            raise ImportError("No module named 'selenium'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_selenium)
    monkeypatch.setattr(bench_web.importlib, "import_module", lambda name: no_selenium(name))
    with pytest.raises(ConfigError, match=r"'selenium'.*pip install 'deskdojo\[bench-web\]'"):
        bench_web.peer_requirements()
    from deskdojo.cli import main

    assert main(["bench", "web", "--episodes", "1"]) != 0  # refused before any sandbox starts
    assert "chromium-driver" in capsys.readouterr().err


def test_bad_bench_arguments_are_refused():
    from deskdojo.cli import main

    with pytest.raises(SystemExit):
        main(["bench", "web", "--episodes", "x"])
    assert main(["bench", "web", "--tasks", "use-colorwheel"]) != 0


def test_a_bench_result_is_written_whole_and_printed_as_asked(tmp_path, capsys):
    from deskdojo.commands import print_result

    out = tmp_path / "deep" / "bench.json"
    print_result({"step_ms": 22.4}, out=str(out), as_json=False, table="| side | step ms |")
    assert json.loads(out.read_text()) == {"step_ms": 22.4}
    assert capsys.readouterr().out == "| side | step ms |\n"
    print_result({"step_ms": 1.0}, out=None, as_json=True, table="unused")
    assert json.loads(capsys.readouterr().out) == {"step_ms": 1.0} and json.loads(out.read_text())["step_ms"] == 22.4
