"""The task families over the practice apps (menus, dialogs, slider_drag, scroll_find,
tabs): every level's tasks are admitted in a real sandbox (the oracle passes, doing
nothing fails), generation is deterministic, train and held-out tasks show disjoint
content, and tasks survive a JSON round trip."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest

from deskdojo.core.records import from_json, to_json
from deskdojo.core.types import Task
from deskdojo.curriculum.families import get_family
from deskdojo.curriculum.families.base import HELDOUT_SEED_BASE, is_heldout_word
from deskdojo.curriculum.families.vocab import CITIES, COLORS, NAMES, NOUNS, VERBS
from deskdojo.world_model.judge import StateJudge

FAMILY_NAMES = ("menu_command", "confirm_dialog", "set_slider", "drag_drop", "scroll_find", "switch_tab")
CASES = [(name, level) for name in FAMILY_NAMES for level in range(get_family(name).levels)]
TRAIN_SEED, HELDOUT_SEED = 7, HELDOUT_SEED_BASE + 7
POOLS = (NOUNS, COLORS, NAMES, CITIES, VERBS)
POOL_WORDS = {w.lower() for pool in POOLS for w in pool}
HELDOUT_WORDS = {w.lower() for pool in POOLS for w in pool if is_heldout_word(w)}
TRAIN_WORDS = {w.lower() for pool in POOLS for w in pool if not is_heldout_word(w)}
# Words the apps' params may hold that are interface vocabulary or settings, not content.
INTERFACE_WORDS = {"box", "ok", "yes", "confirm", "proceed", "cancel", "no", "keep", "back", "reason",
                   "note", "comment", "horizontal", "vertical", "checkbox", "entry", "button",
                   "confirmed", "cancelled", "action", "result", "text"}


def app_params(task: Task) -> dict[str, Any]:
    """The params of the practice app the task launches (its one setup step)."""
    (step,) = task.setup
    argv = step.args["argv"]
    return json.loads(argv[argv.index("--params") + 1])


def shown_words(value: Any) -> set[str]:
    """Every word of every string (keys too) in ``value``, lower-cased."""
    if isinstance(value, str):
        return {w.lower() for w in re.findall(r"[A-Za-z]+", value)}
    if isinstance(value, dict):
        return set().union(*(shown_words(k) | shown_words(v) for k, v in value.items()))
    if isinstance(value, list):
        return set().union(*(shown_words(v) for v in value))
    return set()


def content_words(task: Task) -> set[str]:
    """The pool words a task shows (labels in its app params, values its checks expect);
    fails on any other word, so nothing slips in from outside the split's pools."""
    values = [v for k, v in app_params(task).items() if k != "seed"]  # the knobs' values, not their names
    words = shown_words(values) | shown_words([c.expected for c in task.checks])
    stray = words - POOL_WORDS - INTERFACE_WORDS
    assert not stray, f"{task.id}: words from outside the vocabulary pools: {sorted(stray)}"
    return (words & POOL_WORDS) - INTERFACE_WORDS


@pytest.mark.display
@pytest.mark.parametrize("name,level", CASES, ids=[f"{n}-L{lv}" for n, lv in CASES])
def test_each_level_is_admitted_for_train_and_heldout(box, name, level):
    from deskdojo.curriculum.admission import admit

    family = get_family(name)
    for seed, split in ((TRAIN_SEED, "train"), (HELDOUT_SEED, "heldout")):
        task = family.generate(level, seed, split)
        result = admit(task, box, StateJudge())
        assert result.admitted, f"{task.id} rejected ({result.reason}): {result.detail}"
        assert result.oracle_score == 1.0 and result.noop_score < 1.0


@pytest.mark.parametrize("name,level", CASES, ids=[f"{n}-L{lv}" for n, lv in CASES])
def test_generation_is_deterministic_and_round_trips(name, level):
    family = get_family(name)
    for seed, split in ((TRAIN_SEED, "train"), (HELDOUT_SEED, "heldout"), (123, "train")):
        task = family.generate(level, seed, split)
        assert family.generate(level, seed, split) == task
        assert from_json(Task, json.loads(json.dumps(to_json(task)))) == task
        assert task.family == name and task.level == level and task.split.value == split
        assert task.checks and task.oracle
        assert len(task.oracle) < task.max_steps <= (15 if level <= 1 else 40)
    assert family.generate(level, 8, "train") != family.generate(level, 9, "train")


@pytest.mark.parametrize("name,level", CASES, ids=[f"{n}-L{lv}" for n, lv in CASES])
def test_train_and_heldout_show_disjoint_content(name, level):
    family = get_family(name)
    train, heldout = set(), set()
    for offset in range(5):
        train |= content_words(family.generate(level, TRAIN_SEED + offset, "train"))
        heldout |= content_words(family.generate(level, HELDOUT_SEED + offset, "heldout"))
    assert train and heldout
    assert train <= TRAIN_WORDS, f"held-out words in training tasks: {sorted(train - TRAIN_WORDS)}"
    assert heldout <= HELDOUT_WORDS, f"training words in held-out tasks: {sorted(heldout - HELDOUT_WORDS)}"
    assert not train & heldout, f"shared by train and held-out: {sorted(train & heldout)}"


def test_every_family_has_at_least_four_levels_and_grows_harder():
    for name in FAMILY_NAMES:
        family = get_family(name)
        assert family.levels >= 4 and len(family.knobs) == family.levels
        lengths = [len(family.generate(level, 11, "train").oracle) for level in range(family.levels)]
        assert lengths[0] <= 3, f"{name}: level 0 should take a few actions, takes {lengths[0]}"
        assert max(lengths[1:]) >= lengths[0]


def test_scroll_find_oracle_scrolls_the_target_into_view_for_every_seed():
    """Pure arithmetic, no display: the oracle's wheel clicks leave the target row inside
    the viewport for many seeds of every level (a rounding overshoot once hid it)."""
    import json as _json

    from deskdojo.core.errors import ConfigError
    from deskdojo.curriculum.families import get_family
    from deskdojo.curriculum.families.scroll_find import wheel_clicks

    family = get_family("scroll_find")
    for level in range(family.levels):
        for seed in [*range(0, 100), *range(1_000_000, 1_000_100)]:
            task = family.generate(level, seed, "heldout" if seed >= 1_000_000 else "train")
            params = _json.loads(task.setup[0].args["argv"][-1])
            clicks = sum(abs(getattr(step.action, "dy", 0)) + abs(getattr(step.action, "dx", 0))
                         for step in task.oracle if step.action.kind == "scroll")
            rows, view, wheel = len(params["rows"]), params["viewport_rows"], params["wheel_rows"]
            first = min(clicks * wheel, max(0, rows - view))
            assert first <= params["target_index"] < first + view, (task.id, first, params["target_index"])
    with pytest.raises(ConfigError):
        wheel_clicks(13, 40, 3, 5)
