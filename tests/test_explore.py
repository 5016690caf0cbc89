"""Exploration-based generation: a depth-first walk of real practice apps finds the
clicks that change their state (every button; a command inside a sub-menu), writes a
guidebook, and proposes tasks that admission accepts."""

from __future__ import annotations

import argparse
import json

import pytest

from deskdojo.core.types import Provenance
from deskdojo.curriculum.admission import admit
from deskdojo.commands.tasks import explore_command
from deskdojo.curriculum.explore import (Change, Entry, Guidebook, Probe, checks_for, describe_path, diff,
                                         explore_app, propose_from_guidebook)
from deskdojo.world_model.judge import StateJudge

BUTTONS = {"seed": 1, "labels": ["Apple", "Pear", "Plum"], "columns": 3}
MENUS = {"seed": 2, "tree": {"File": ["Open", "Close"], "Edit": ["Copy", {"Transform": ["Rotate", "Flip"]}]}}


@pytest.fixture(scope="module")
def buttons_book(box) -> Guidebook:
    return explore_app("buttons", box, params=BUTTONS, max_depth=2, max_actions=50)


@pytest.mark.display
def test_exploring_buttons_finds_every_button_and_its_counter(box, buttons_book):
    book = buttons_book
    assert book.stopped_by == "done" and book.actions_tried == 3 and book.resets == 1
    assert {f"button:{label}" for label in BUTTONS["labels"]} <= set(book.widgets_seen)
    for label in BUTTONS["labels"]:
        entry = next(e for e in book.state_changing if e.path[-1].label == label)
        assert len(entry.path) == 1 and entry.path[0].path == f"widgets.button:{label}"
        assert Change(("clicks", label), 0, 1) in entry.changes
    assert Guidebook.from_json(json.loads(json.dumps(book.to_json()))) == book

    tasks = propose_from_guidebook(book, n=10, seed=0)
    assert len(tasks) == 3 and len({t.id for t in tasks}) == 3
    assert all(t.provenance is Provenance.EXPLORATION and t.family == "explore_buttons" for t in tasks)
    assert propose_from_guidebook(book, n=10, seed=0) == tasks  # deterministic
    result = admit(tasks[0], box, StateJudge())
    assert result.admitted, f"{tasks[0].id}: {result.reason}: {result.detail}"


@pytest.mark.display
def test_exploring_menus_finds_a_command_inside_a_submenu_and_its_task_is_admitted(box):
    book = explore_app("menus", box, params=MENUS, max_depth=3, max_actions=60)
    paths = {tuple(p.label for p in e.path): e for e in book.entries}
    rotate = paths[("Edit", "Transform", "Rotate")]
    assert [p.kind for p in rotate.path] == ["menu", "cascade", "menu_command"]
    assert any(c.path == ("chosen",) and c.after == ["Edit", "Transform", "Rotate"] for c in rotate.changes)
    assert not paths[("Edit",)].changes and "menu:Edit" in paths[("Edit",)].opened  # opening a menu changes no state
    commands = {e.path[-1].label for e in book.state_changing}
    assert commands == {"Open", "Close", "Copy", "Rotate", "Flip"}

    tasks = {t.instruction: t for t in propose_from_guidebook(book, n=10, seed=3)}
    task = tasks["Choose Edit > Transform > Rotate from the menus."]
    assert task.level == 2 and [s.at.menu for s in task.oracle[:3]] == ["Edit", "Transform", "Rotate"]
    result = admit(task, box, StateJudge())
    assert result.admitted, f"{task.id}: {result.reason}: {result.detail}"


@pytest.mark.display
def test_exploration_stops_at_its_action_budget(box):
    book = explore_app("buttons", box, params=BUTTONS, max_depth=2, max_actions=2)
    assert book.stopped_by == "max_actions" and book.actions_tried == 2 and len(book.entries) == 2


@pytest.mark.display
def test_the_explore_command_writes_the_guidebook_and_admitted_tasks(tmp_path, capsys):
    args = argparse.Namespace(app="buttons", provider="xvfb", max_depth=2, max_actions=10, json=True,
                              out=str(tmp_path))
    assert explore_command(args) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["app"] == "buttons" and summary["actions_tried"] >= 1
    assert summary["tasks_admitted"] == summary["tasks_proposed"] >= 1
    book = Guidebook.from_json(json.loads((tmp_path / "guidebook-buttons.json").read_text()))
    assert len(book.state_changing) == summary["state_changing"]
    lines = (tmp_path / "tasks-buttons.jsonl").read_text().splitlines()
    assert len(lines) == summary["tasks_admitted"]


# --- without a sandbox ---------------------------------------------------------------


def test_diff_ignores_runtime_keys_and_geometry_and_keeps_new_keys():
    before = {"app": "a", "seq": 1, "time": 1.0, "focus": None, "results": {}, "count": 0,
              "widgets": {"b": {"kind": "button", "x": 1, "y": 1, "w": 5, "h": 5, "visible": True, "text": "Go"}}}
    after = {**before, "seq": 2, "time": 2.0, "focus": "b", "results": {"Go": "done"}, "count": 0,
             "widgets": {"b": {**before["widgets"]["b"], "x": 9, "text": "Went"}}}
    assert diff(before, after) == (Change(("results", "Go"), None, "done"),
                                   Change(("widgets", "b", "text"), "Go", "Went"))


def test_checks_come_from_the_change_and_fail_when_nothing_was_done():
    click = Probe("button", "Go", path="widgets.go")
    entry = Entry((click,), changes=(Change(("history",), ["Stop"], ["Stop", "Go"]), Change(("count",), 4, 5),
                                     Change(("last",), "Stop", "Go"), Change(("where",), None, "/home/u/x")))
    checks = checks_for(entry, {"history": [], "count": 0, "last": None}, "app", home="/home/u")
    assert [(c.metric, c.args["path"], c.expected) for c in checks] == [("equals", "last", "Go"),
                                                                         ("contains", "history", "Go")]
    menu = [Probe("menu", "Edit", menu="Edit"), Probe("cascade", "More", menu="More"),
            Probe("menu_command", "Rotate", menu="Rotate"), Probe("tab", "Sound", path="widgets.tab:Sound")]
    assert describe_path(menu) == "Choose Edit > More > Rotate from the menus, then switch to the \"Sound\" tab."
