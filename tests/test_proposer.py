"""The model-based proposer with fake models: the prompt carries the guidebook and recent
verdicts; answers are parsed leniently (fences, trailing commas, several objects, lists,
wrappers, garbage); tasks without checks are judge-only; a proposed task with checks
passes admission in a real sandbox."""

from __future__ import annotations

import json

import pytest

from deskdojo.core.types import Provenance, Split, Task, Verdict
from deskdojo.curriculum.admission import admit
from deskdojo.curriculum.explore import Change, Entry, Guidebook, Probe, Route
from deskdojo.curriculum.proposer import ModelProposer, build_prompt, json_values, parse_proposals
from deskdojo.vm.config import SandboxConfig
from deskdojo.vm.pool import make_provider
from deskdojo.core.checks import validate_checks
from deskdojo.world_model.judge import StateJudge

PEAR = {"instruction": "Click the \"Pear\" button.", "level": 0,
        "checks": [{"getter": "app_state", "metric": "equals",
                    "args": {"app": "buttons", "path": "clicks.Pear"}, "expected": 1}],
        "oracle": [{"action": {"kind": "click", "x": 0, "y": 0},
                    "at": {"app": "buttons", "path": "widgets.button:Pear"}}],
        "max_steps": 4}
NO_CHECKS = {"instruction": "Make the window look tidy."}


def book() -> Guidebook:
    click = Probe("button", "Pear", path="widgets.button:Pear")
    return Guidebook(app="buttons", params={"seed": 1, "labels": ["Apple", "Pear"]}, initial={"clicks": {"Pear": 0}},
                     home="/home/u", entries=(Entry((click,), screen="s0", changes=(Change(("clicks", "Pear"), 0, 1),)),),
                     routes=(Route("s0", ()),), widgets_seen=("button:Apple", "button:Pear"), screens=1,
                     actions_tried=2, navigation_clicks=0, resets=1, seconds=1.0, stopped_by="done", max_depth=2)


def fake(answer: str):
    asked: list[str] = []

    def generate(prompt: str, images=()) -> str:
        asked.append(prompt)
        return answer
    generate.asked = asked  # type: ignore[attr-defined]
    return generate


def test_the_prompt_carries_the_guidebook_and_recent_verdicts():
    tasks = {"t1": Task(id="t1", instruction="Click the Apple button.", family="f"),
             "t2": Task(id="t2", instruction="Choose File > Open.", family="f")}
    verdicts = [Verdict("t1", "r1", True, 1.0, "state"), Verdict("t2", "r2", False, 0.0, "state")]
    prompt = build_prompt(3, guidebook=book(), verdicts=verdicts, tasks=tasks)
    assert "Propose 3 new tasks" in prompt
    assert 'button "Pear" -> clicks.Pear: 0 -> 1' in prompt and "button:Apple" in prompt
    assert 'succeeded (score 1.00): "Click the Apple button."' in prompt
    assert 'failed (score 0.00): "Choose File > Open."' in prompt


def test_good_json_becomes_tasks_for_admission_with_the_app_launched():
    model = fake(json.dumps([PEAR, NO_CHECKS]))
    proposer = ModelProposer(model, validate=validate_checks)
    result = proposer.propose(5, guidebook=book())
    assert model.asked and result.prompt == model.asked[0]
    assert [p.judge_only for p in result.proposed] == [False, True]
    task = result.for_admission[0]
    assert task.provenance is Provenance.MODEL and task.split is Split.TRAIN and task.family == "model_buttons"
    assert task.setup[0].kind == "launch" and "buttons" in task.setup[0].args["argv"]
    assert task.checks[0].expected == 1 and task.oracle[0].at.path == "widgets.button:Pear"
    assert result.judge_only[0].instruction == NO_CHECKS["instruction"]
    assert len({p.task.id for p in result.proposed}) == 2 and not result.rejected


def test_fenced_json_with_trailing_commas_and_several_objects_parses():
    answer = ("Sure! Here are the tasks:\n```json\n" + json.dumps(PEAR)[:-1] + ",}\n```\nand one more:\n"
              "```\n{\"instruction\": \"Close the dialog.\", \"level\": 1,}\n{\"instruction\": \"Open File.\"}\n```")
    proposed, rejected = parse_proposals(answer, family="model")
    assert [p.task.instruction for p in proposed] == [PEAR["instruction"], "Close the dialog.", "Open File."]
    assert proposed[1].task.level == 1 and not rejected
    assert json_values('prefix [1, 2,] {"a": {"b": 1}} suffix') == [[1, 2], {"a": {"b": 1}}]


def test_a_tasks_wrapper_unknown_fields_and_claimed_provenance_are_fixed_up():
    wrapped = {"tasks": [{**PEAR, "difficulty": "easy", "provenance": "template", "split": "heldout",
                          "id": "mine"}]}
    (item,), rejected = parse_proposals(json.dumps(wrapped), family="model", validate=validate_checks)
    assert item.task.id == "mine" and item.task.provenance is Provenance.MODEL and item.task.split is Split.TRAIN
    assert any("difficulty" in p for p in item.problems) and not rejected


def test_missing_or_broken_checks_make_a_task_judge_only():
    broken = {**PEAR, "checks": [{"getter": "telepathy", "metric": "equals", "args": {}}]}
    bad_oracle = {**PEAR, "oracle": [{"action": {"kind": "teleport"}}]}
    (a, b, c), rejected = parse_proposals(json.dumps([NO_CHECKS, broken, bad_oracle]), family="model",
                                          validate=validate_checks)
    assert a.judge_only and not a.problems
    assert b.judge_only and any("telepathy" in p for p in b.problems)
    assert not c.judge_only and not c.task.oracle and any("oracle" in p for p in c.problems)


def test_garbage_gives_no_tasks_and_says_why():
    proposer = ModelProposer(fake("I am not sure what you mean. {not json at all"))
    result = proposer.propose(2)
    assert result.proposed == () and result.rejected and "no JSON task objects" in result.rejected[0]
    proposed, rejected = parse_proposals('[{"level": 2}, 7, {"instruction": "   "}]', family="model")
    assert not proposed and len(rejected) == 3


def test_no_more_than_n_tasks_and_distinct_ids():
    many = [{"instruction": f"Task {i}."} for i in range(5)] + [{"instruction": "Task 0."}]
    result = ModelProposer(fake(json.dumps(many))).propose(3)
    assert len(result.proposed) == 3 and len({p.task.id for p in result.proposed}) == 3
    assert len(result.rejected) == 3
    with pytest.raises(ValueError):
        ModelProposer(fake("[]")).propose(0)


@pytest.mark.display
def test_a_proposed_task_with_checks_passes_admission():
    result = ModelProposer(fake(f"```json\n{json.dumps([PEAR])}\n```"), validate=validate_checks).propose(
        1, guidebook=book())
    (task,) = result.for_admission
    sandbox = make_provider(SandboxConfig(provider="xvfb")).start()
    try:
        outcome = admit(task, sandbox, StateJudge())
    finally:
        sandbox.close()
    assert outcome.admitted, f"{outcome.reason}: {outcome.detail}"
