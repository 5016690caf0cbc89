"""The real-app and composite task families: every level of each family yields a task
that admission accepts in a real sandbox (its oracle passes, doing nothing fails), on
the xvfb provider, and the terminal family once on docker; generation is deterministic
and training and held-out tasks never share content words."""

from __future__ import annotations

import re
from typing import Any

import pytest

from deskdojo.core.records import to_json
from deskdojo.core.types import Split, Task
from deskdojo.curriculum.admission import admit
from deskdojo.curriculum.families import all_families, get_family
from deskdojo.curriculum.families.base import HELDOUT_SEED_BASE, is_heldout_word
from deskdojo.curriculum.families.vocab import CITIES, COLORS, NAMES, NOUNS
from deskdojo.vm.config import SandboxConfig
from deskdojo.vm.pool import make_provider
from deskdojo.world_model.judge import StateJudge

FAMILY_NAMES = ("terminal", "text_editor", "editor_save", "multiwindow", "form_then_save")
CASES = [(name, level) for name in FAMILY_NAMES for level in range(get_family(name).levels)]


def seed_for(name: str, level: int) -> tuple[int, Split]:
    """Odd levels draw held-out tasks, so both splits are admitted somewhere."""
    seed = 7 + level + len(name)
    return (HELDOUT_SEED_BASE + seed, Split.HELDOUT) if level % 2 else (seed, Split.TRAIN)


@pytest.mark.display
@pytest.mark.parametrize(("name", "level"), CASES, ids=[f"{n}-L{lv}" for n, lv in CASES])
def test_every_level_is_admitted_in_a_real_sandbox(box, name, level):
    seed, split = seed_for(name, level)
    task = get_family(name).generate(level, seed, split)
    result = admit(task, box, StateJudge())
    assert result.admitted, f"{task.id}: {result.reason}: {result.detail}"
    assert result.oracle_score == 1.0 and result.noop_score is not None and result.noop_score < 1.0


@pytest.mark.docker
def test_terminal_tasks_pass_admission_in_the_docker_image():
    sandbox = make_provider(SandboxConfig(provider="docker")).start()
    try:
        for level in (2, 4):
            task = get_family("terminal").generate(level, 41 + level, Split.TRAIN)
            result = admit(task, sandbox, StateJudge())
            assert result.admitted, f"{task.id}: {result.reason}: {result.detail}"
        task = get_family("text_editor").generate(3, 43, Split.TRAIN)  # mousepad's Save As dialog
        result = admit(task, sandbox, StateJudge())
        assert result.admitted, f"{task.id}: {result.reason}: {result.detail}"
    finally:
        sandbox.close()


def test_the_families_are_discovered_with_at_least_four_levels():
    families = all_families()
    for name in FAMILY_NAMES:
        assert name in families and families[name].levels >= 4
        assert len(families[name].knobs) == families[name].levels


@pytest.mark.parametrize("name", FAMILY_NAMES)
def test_generation_is_deterministic_and_fits_max_steps(name):
    family = get_family(name)
    for level in range(family.levels):
        first, again = family.generate(level, 5, "train"), family.generate(level, 5, "train")
        assert to_json(first) == to_json(again)
        assert to_json(first) != to_json(family.generate(level, 6, "train"))
        assert first.checks and first.oracle and first.max_steps >= len(first.oracle)
        assert first.max_steps <= len(first.oracle) + 4 + 2 * family.levels


POOL_WORDS = {w.lower(): w for pool in (NOUNS, NAMES, COLORS, CITIES) for w in pool}


def content_words(task: Task) -> set[str]:
    """Pool words (as the pools spell them) in what a task shows and checks: app params,
    files, expected values. (The instruction repeats them amid fixed wording.)"""
    shown = " ".join(values([to_json(task.setup), [to_json(c) for c in task.checks]]))
    return {POOL_WORDS[w] for w in re.findall(r"[a-z]+", shown.lower()) if w in POOL_WORDS}


def values(data: Any) -> list[str]:
    """Every value in nested JSON, as text (keys such as ``wait_window`` are not content)."""
    if isinstance(data, dict):
        return [text for v in data.values() for text in values(v)]
    if isinstance(data, list):
        return [text for v in data for text in values(v)]
    return [str(data)]


@pytest.mark.parametrize("name", FAMILY_NAMES)
def test_training_and_heldout_tasks_share_no_content(name):
    family = get_family(name)
    for level in range(family.levels):
        train = set().union(*(content_words(family.generate(level, s, "train")) for s in range(25)))
        heldout = set().union(*(content_words(family.generate(level, HELDOUT_SEED_BASE + s, "heldout"))
                                for s in range(25)))
        assert train and heldout
        assert not {w for w in train if is_heldout_word(w)}, f"{name} L{level}: held-out words in training tasks"
        assert not {w for w in heldout if not is_heldout_word(w)}, f"{name} L{level}: training words in held-out"
