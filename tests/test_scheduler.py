"""The curriculum scheduler: level moves at the thresholds, a learning-progress bandit
that favours but never starves, retirement, held-out refusal, exact resume."""

from __future__ import annotations

import json
from collections import Counter

import pytest

from deskdojo.core.errors import ConfigError, RecordError
from deskdojo.core.types import Split
from deskdojo.curriculum.scheduler import CurriculumError, Scheduler, SchedulerConfig

CONFIG = SchedulerConfig(window=10, min_attempts=10, down_threshold=0.3, mastery_streak=0)


def group(successes: int, total: int = 10) -> list[bool]:
    return [True] * successes + [False] * (total - successes)


def test_config_is_closed_and_validated():
    with pytest.raises(ConfigError, match="tau"):
        SchedulerConfig.from_dict({"tau": 1.0})
    with pytest.raises(ConfigError, match="min_attempts"):
        SchedulerConfig(window=4, min_attempts=8)
    with pytest.raises(ConfigError, match="down_threshold"):
        SchedulerConfig(up_threshold=0.3, down_threshold=0.6)
    with pytest.raises(ConfigError, match="down_attempts"):
        SchedulerConfig(min_attempts=8, down_attempts=4)
    with pytest.raises(ConfigError, match="exploration_floor"):
        Scheduler({f"f{i}": 1 for i in range(30)}, SchedulerConfig(exploration_floor=0.05))
    with pytest.raises(ConfigError, match="levels"):
        Scheduler({"a": 0})


@pytest.mark.parametrize("successes, expected_level", [
    (8, 2), (7, 1), (5, 1), (3, 1), (2, 0),  # > 0.7 up; 0.7 and 0.3 exactly stay; < 0.3 down
])
def test_level_moves_at_the_thresholds(successes, expected_level):
    scheduler = Scheduler({"click": 4}, CONFIG)
    scheduler.level["click"] = 1  # start mid-ladder so both directions are possible
    moves = scheduler.record("click", 1, "t", group(successes), 0.1, split="train", iteration=7)
    assert scheduler.level["click"] == expected_level
    if expected_level == 1:
        assert moves == [] and scheduler.snapshot()["moves"] == []
    else:
        assert moves == scheduler.snapshot()["moves"]
        assert {k: moves[0][k] for k in ("family", "from", "to", "iteration")} == \
            {"family": "click", "from": 1, "to": expected_level, "iteration": 7}
        assert moves[0]["rate"] == successes / 10 and "success" in moves[0]["reason"]


def test_moves_wait_for_min_attempts_and_respect_the_ends():
    scheduler = Scheduler({"click": 2}, SchedulerConfig(window=16, min_attempts=8, mastery_streak=0))
    scheduler.record("click", 0, "t", group(4, 4), 0.0, split="train")
    assert scheduler.level["click"] == 0  # 4 attempts < min_attempts
    scheduler.record("click", 0, "t", group(4, 4), 0.0, split="train")
    assert scheduler.level["click"] == 1
    for _ in range(3):  # top level: success keeps it there, no move logged
        scheduler.record("click", 1, "t", group(8, 8), 0.0, split="train")
    assert scheduler.level["click"] == 1 and len(scheduler.snapshot()["moves"]) == 1
    # a late result for the old level is counted but does not move the family
    scheduler.record("click", 0, "t", group(0, 8), 0.0, split="train")
    assert scheduler.level["click"] == 1
    assert scheduler.snapshot()["families"]["click"]["levels"]["0"] == {"attempts": 16, "successes": 8, "rate": 0.5}
    scheduler.record("click", 1, "t", group(0, 8), 0.0, split="train")
    assert scheduler.level["click"] == 1  # the window (16) still holds 8 recent successes: 0.5
    scheduler.record("click", 1, "t", group(0, 8), 0.0, split="train")
    assert scheduler.level["click"] == 0  # 0/16
    scheduler.record("click", 0, "t", group(0, 8), 0.0, split="train")
    assert scheduler.level["click"] == 0  # floor: no move below 0


def test_by_default_a_mastered_level_is_left_after_one_group_and_a_hard_one_kept_while_any_attempt_succeeds():
    """A start that already masters the low levels should not spend its budget there, and
    a level where one attempt in eight succeeds still gives GRPO groups whose outcomes
    differ: only a level where nothing succeeds sends the family back."""
    scheduler = Scheduler({"click": 3}, SchedulerConfig(mastery_streak=0))
    scheduler.record("click", 0, "t", group(4, 4), 0.0, split="train")
    scheduler.record("click", 1, "t", group(3, 4), 0.0, split="train")
    assert scheduler.level["click"] == 2  # one group of four at each level
    for _ in range(3):
        scheduler.record("click", 2, "t", group(0, 4), 0.0, split="train")
    assert scheduler.level["click"] == 2  # 0 of 12: not yet a full try (down_attempts 16)
    scheduler.record("click", 2, "t", group(2, 4), 0.0, split="train")
    assert scheduler.level["click"] == 2  # 2 of 16 (0.125): hard, but it teaches
    for _ in range(4):
        scheduler.record("click", 2, "t", group(0, 4), 0.0, split="train")
    assert scheduler.level["click"] == 1  # 0 of the last 16: back one level


def test_a_family_arriving_at_a_new_level_is_valued_as_the_best_family():
    """A new level is a new arm of the bandit: a family that has just moved up is drawn as
    often as the most promising family until its own groups say what it is worth, so a
    family that climbs out of mastered levels is not left at the floor."""
    config = SchedulerConfig(progress_rate=0.5, mastery_streak=0)
    scheduler = Scheduler({"click": 3, "type": 3}, config)
    scheduler.record("type", 0, "b", group(2, 4), 0.4, split="train")  # mixed: type learns
    scheduler.record("click", 0, "a", group(4, 4), 0.0, split="train")  # mastered: moves up
    assert scheduler.level["click"] == 1
    assert scheduler.value["click"] == scheduler.value["type"] == pytest.approx(0.2)
    scheduler.record("click", 1, "a", group(2, 4), 0.0, split="train")  # no signal: the value decays
    assert scheduler.value["click"] == pytest.approx(0.1) and scheduler.level["click"] == 1
    for _ in range(4):  # a move down is not a new arm: the value is not raised
        scheduler.record("click", 1, "a", group(0, 4), 0.0, split="train")
    assert scheduler.level["click"] == 0 and scheduler.value["click"] < 0.01


def test_arriving_at_a_level_starts_a_fresh_window():
    scheduler = Scheduler({"click": 3}, CONFIG)
    scheduler.record("click", 0, "t", group(10), 0.0, split="train")  # -> 1
    scheduler.record("click", 1, "t", group(0), 0.0, split="train")  # -> 0, whose window restarts
    assert scheduler.level["click"] == 0
    scheduler.record("click", 0, "t", group(5, 5), 0.0, split="train")
    assert scheduler.level["click"] == 0  # 5 fresh attempts < min_attempts, old 10 forgotten


def test_bandit_favours_learning_progress_but_starves_nobody():
    config = SchedulerConfig(progress_rate=0.5, temperature=0.05, exploration_floor=0.05, mastery_streak=0)
    scheduler = Scheduler({"click": 3, "type": 3, "menu": 3}, config)
    for _ in range(6):
        scheduler.record("click", 0, "a", group(5), 0.02, split="train")
        scheduler.record("type", 0, "b", group(5), 0.45, split="train")  # outcomes differ: learning
        scheduler.record("menu", 0, "c", group(0), 0.0, split="train")  # all fail: nothing to learn
    values = scheduler.snapshot()["families"]
    assert values["type"]["value"] > values["click"]["value"] > values["menu"]["value"] == 0.0
    counts = Counter(family for family, _ in scheduler.choose(2000))
    assert counts["type"] > 1600
    assert counts["click"] > 40 and counts["menu"] > 40  # the floor: ~5% each
    probabilities = scheduler.probabilities()
    assert sum(probabilities.values()) == pytest.approx(1.0)
    assert min(probabilities.values()) >= 0.05


def test_choices_carry_the_current_level():
    scheduler = Scheduler({"click": 3}, CONFIG)
    scheduler.record("click", 0, "t", group(10), 0.0, split="train")
    assert scheduler.choose(3) == [("click", 1)] * 3
    assert scheduler.snapshot()["recent_choices"][-1] == ["click", 1]


def test_mastered_tasks_retire():
    scheduler = Scheduler({"click": 1}, SchedulerConfig(mastery_streak=12))
    scheduler.record("click", 0, "easy", group(8, 8), 0.0, split="train")
    scheduler.record("click", 0, "hard", [True] * 7 + [False], 0.0, split="train")
    assert not scheduler.is_retired("easy")
    scheduler.record("click", 0, "hard", group(8, 8), 0.0, split="train")  # streak restarted: 8
    scheduler.record("click", 0, "easy", group(4, 4), 0.0, split="train")  # 12 in a row
    assert scheduler.is_retired("easy") and not scheduler.is_retired("hard")
    assert scheduler.snapshot()["retired"] == ["easy"]


def test_held_out_and_unknown_results_are_refused():
    scheduler = Scheduler({"click": 2}, CONFIG)
    with pytest.raises(CurriculumError, match="heldout.*evaluate held-out tasks separately"):
        scheduler.record("click", 0, "secret", group(5), 0.1, split=Split.HELDOUT)
    with pytest.raises(CurriculumError, match="heldout"):
        scheduler.record("click", 0, "secret", group(5), 0.1, split="heldout")
    with pytest.raises(CurriculumError, match="unknown family"):
        scheduler.record("drag", 0, "t", group(5), 0.1, split="train")
    with pytest.raises(CurriculumError, match="levels 0..1"):
        scheduler.record("click", 2, "t", group(5), 0.1, split="train")
    assert scheduler.snapshot()["families"]["click"]["levels"]["0"]["attempts"] == 0  # nothing counted
    scheduler.record("click", 0, "t", group(5), 0.1, split=Split.TRAIN)


def drive(scheduler: Scheduler, rounds: range) -> list:
    """A deterministic mock training loop: results depend on what was chosen."""
    out = []
    for r in rounds:
        for i, (family, level) in enumerate(scheduler.choose(4)):
            wins = (r * 7 + i * 3 + len(family) + level) % 9
            out.append((family, level))
            out.extend(scheduler.record(family, level, f"{family}-{i % 3}", group(wins, 8), wins / 20,
                                        split="train", iteration=r))
    return out


def test_resume_makes_the_same_choices(tmp_path):
    config = SchedulerConfig(window=8, min_attempts=8, mastery_streak=10, seed=3)
    families = {"click": 4, "type": 3, "menu": 5}
    uninterrupted = Scheduler(families, config)
    expected = drive(uninterrupted, range(30))

    first = Scheduler(families, config)
    head = drive(first, range(12))
    state = json.loads(json.dumps(first.state_dict()))  # through JSON text
    first.save(tmp_path / "curriculum.json")
    for resumed in (Scheduler.from_state(state), Scheduler.load(tmp_path / "curriculum.json")):
        assert head + drive(resumed, range(12, 30)) == expected
        assert resumed.state_dict() == uninterrupted.state_dict()
    assert any(isinstance(event, dict) for event in expected)  # the run did move levels
    assert {event[0] for event in expected if isinstance(event, tuple)} == set(families)
    # the RNG state is what makes it exact: restoring everything else alone diverges
    fresh_rng = Scheduler(families, config).state_dict()["rng"]
    assert head + drive(Scheduler.from_state({**state, "rng": fresh_rng}), range(12, 30)) != expected


def test_snapshot_layout_for_the_panel():
    scheduler = Scheduler({"click": 2, "type": 1}, CONFIG)
    scheduler.record("click", 0, "t", group(10), 0.25, split="train", iteration=3)
    scheduler.choose(2)
    snapshot = json.loads(json.dumps(scheduler.snapshot()))
    assert set(snapshot) == {"families", "recent_choices", "moves", "retired"}
    click = snapshot["families"]["click"]
    assert click["level"] == 1 and click["value"] == pytest.approx(0.3 * 0.25)
    assert click["levels"] == {"0": {"attempts": 10, "successes": 10, "rate": 1.0},
                               "1": {"attempts": 0, "successes": 0, "rate": None}}
    assert snapshot["moves"][0]["to"] == 1 and snapshot["moves"][0]["iteration"] == 3
    assert all(len(choice) == 2 for choice in snapshot["recent_choices"])
    with pytest.raises(RecordError, match="format_version"):
        Scheduler.from_state({**scheduler.state_dict(), "format_version": 99})
