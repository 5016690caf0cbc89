"""The four basic families (click_button, fill_form, toggle_choices, select_list): every
level makes valid, deterministic tasks whose oracle passes and whose no-op fails in a real
xvfb sandbox; train and held-out content is disjoint; the Curriculum and `tasks` CLI."""

from __future__ import annotations

import json
from typing import Any

import pytest

from deskdojo.cli import main
from deskdojo.core.types import Split
from deskdojo.curriculum.admission import admit
from deskdojo.curriculum.families import all_families, get_family, web_families
from deskdojo.curriculum.families.base import HELDOUT_SEED_BASE
from deskdojo.core.checks import validate_checks
from deskdojo.world_model.judge import StateJudge

BASIC = ("click_button", "fill_form", "toggle_choices", "select_list")
KNOB_WORDS = {"browse", "left", "above", ""}  # layout knobs, not content


def shown_words(task: Any) -> set[str]:
    """Every label and value the task's app shows (from its launch params)."""
    params = json.loads(task.setup[0].args["argv"][-1])
    found: set[str] = set()

    def walk(value: Any) -> None:
        if isinstance(value, str):
            found.add(value)
        elif isinstance(value, list):
            for item in value:
                walk(item)
        elif isinstance(value, dict):
            for key, item in value.items():
                walk(key)
                walk(item)

    walk([v for k, v in params.items() if k != "seed"])  # knob names are not shown
    return found - KNOB_WORDS


@pytest.mark.parametrize("name", BASIC)
def test_every_level_makes_valid_deterministic_tasks(name):
    family = get_family(name)
    assert family.levels >= 4 and len(family.knobs) == family.levels
    for level in range(family.levels):
        for split, seed in ((Split.TRAIN, 3), (Split.HELDOUT, HELDOUT_SEED_BASE + 3)):
            task = family.generate(level, seed, split)
            validate_checks(task)
            assert task == family.generate(level, seed, split)
            assert task.id == f"{name}-L{level}-{split.value}-{seed}" and task.oracle and task.checks
            assert "“" in task.instruction and task.instruction.endswith(".")
        assert family.generate(level, 4, Split.TRAIN) != family.generate(level, 5, Split.TRAIN)


@pytest.mark.parametrize("name", BASIC)
def test_train_and_heldout_tasks_show_disjoint_labels(name):
    family = get_family(name)
    train, heldout = set(), set()
    for level in range(family.levels):
        for seed in range(8):
            train |= shown_words(family.generate(level, seed, Split.TRAIN))
            heldout |= shown_words(family.generate(level, HELDOUT_SEED_BASE + seed, Split.HELDOUT))
    assert train and heldout
    assert not train & heldout, sorted(train & heldout)[:10]


def test_level_zero_is_one_target_without_distractors():
    assert shown_words(get_family("click_button").generate(0, 1, Split.TRAIN)).__len__() == 1
    form = json.loads(get_family("fill_form").generate(0, 1, Split.TRAIN).setup[0].args["argv"][-1])
    assert len(form["fields"]) == 1 and form["prefill"] == {}
    choices = json.loads(get_family("toggle_choices").generate(0, 1, Split.TRAIN).setup[0].args["argv"][-1])
    assert len(choices["checkboxes"]) == 1 and choices["groups"] == {} and choices["checked"] == []
    lists = json.loads(get_family("select_list").generate(0, 1, Split.TRAIN).setup[0].args["argv"][-1])
    assert len(lists["items"]) == 3 and lists["list_height"] >= 3


@pytest.mark.display
@pytest.mark.parametrize("name", BASIC)
def test_every_level_is_admitted_in_a_real_sandbox(box, name):
    family = get_family(name)
    for level in range(family.levels):
        split = Split.TRAIN if level % 2 == 0 else Split.HELDOUT
        seed = 11 + (HELDOUT_SEED_BASE if split is Split.HELDOUT else 0)
        result = admit(family.generate(level, seed, split), box, StateJudge())
        assert result.admitted, f"{name} level {level}: {result.reason}: {result.detail}"
        assert result.oracle_score == 1.0 and result.noop_score < 1.0


def test_the_tasks_cli_lists_samples_and_shows(capsys):
    assert main(["tasks", "families", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert {r["name"] for r in rows} >= set(BASIC) and {r["name"] for r in rows} == set(all_families()) | set(web_families())
    assert main(["tasks", "sample", "--family", "fill_form", "--level", "2", "--seed", "5", "--json"]) == 0
    sampled = json.loads(capsys.readouterr().out)
    assert sampled["id"] == "fill_form-L2-train-5"
    assert main(["tasks", "show", "fill_form-L2-train-5", "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == sampled
    assert main(["tasks", "sample", "--family", "nope"]) == 1
    assert "no task family 'nope'" in capsys.readouterr().err


@pytest.mark.display
def test_tasks_check_through_the_cli(capsys):
    code = main(["tasks", "check", "--n", "8", "--json", "--provider", "xvfb", "--sandboxes", "2",
                 "--family", "select_list"])
    out, err = capsys.readouterr()
    summary = json.loads(out)  # the JSON alone on stdout; the progress line on stderr
    assert "\r" not in err  # not a terminal: plain lines
    assert err.splitlines()[-1].startswith("tasks check [####################] 8/8 tasks")
    assert "8 admitted, 0 rejected" in err.splitlines()[-1]
    assert summary["sampled"] == 8 and summary["levels"] == 5 and summary["families"] == 1
    assert summary["admitted"] == 8, summary
    assert code == 0
    assert summary["oracle_pass_rate"] == 1.0 and summary["noop_pass_rate"] == 0.0
    assert summary["median_seconds_per_task"] > 0 and summary["rejected_by_reason"] == {}
