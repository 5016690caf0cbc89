"""Proposed tasks in the loop: ACuRL's rule picks what to ask for (harder above 70%,
sibling 30-70%, prerequisite below 30%); tasks with checks go through admission, tasks
without checks enter only when a VLM judge can decide them; the plan's state survives a
checkpoint. Then the real parts: exploration of a real app as a source, the tiny model as
a proposer model on a real screenshot, and an evolve run on real sandboxes."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from deskdojo.core.types import Check, Split, Task
from deskdojo.curriculum.admission import AdmissionResult
from deskdojo.curriculum.families.base import launch, launched
from deskdojo.curriculum.proposer import ProposedTask, Relation, acurl_relation
from deskdojo.evolve.build import select_families
from deskdojo.evolve.parts import FamilyPlan, GroupOutcome
from deskdojo.evolve.proposing import ExplorationProposals, ProposingPlan

CHECK = Check("app_state", "equals", {"app": "buttons", "path": "clicks.Pear"}, expected=1)


def task(name: str, level: int = 0, *, checks: bool = True) -> Task:
    return Task(id=name, instruction=f"Do {name}.", family="model_buttons", level=level,
                setup=(launch("buttons", {"labels": ["Pear"]}),), checks=(CHECK,) if checks else ())


class ScriptedSource:
    """Hands out the next scripted batch and remembers what it was asked."""

    name = "scripted"

    def __init__(self, batches: list[list[ProposedTask]]):
        self.batches = batches
        self.asked: list[Relation | None] = []

    def propose(self, n, relation, recent, known):
        self.asked.append(relation)
        return (self.batches.pop(0) if self.batches else []), []

    def state_dict(self) -> dict[str, Any]:
        return {"left": len(self.batches)}

    def load_state_dict(self, state) -> None:
        pass


def family_plan(admit=None) -> FamilyPlan:
    return FamilyPlan(select_families(("click_button",)), seed=0, heldout_levels=(0,), heldout_per_level=1,
                      admit=admit)


def outcome(t: Task, *successes: bool) -> GroupOutcome:
    return GroupOutcome(task=t, successes=tuple(successes), mean_abs_advantage=0.25, used=True)


def test_acurl_rule_bounds():
    assert [acurl_relation(r) for r in (1.0, 0.71, 0.7, 0.3, 0.29, 0.0)] == [
        "harder", "harder", "sibling", "sibling", "prerequisite", "prerequisite"]
    with pytest.raises(ValueError):
        acurl_relation(1.5)
    ref = task("ref", level=1)
    assert "harder" in Relation.of(ref, 0.9).describe() and "level 2" in Relation.of(ref, 0.9).describe()
    assert "easier" in Relation.of(ref, 0.0).describe() and "level 0" in Relation.of(ref, 0.0).describe()


def test_each_iteration_mixes_proposed_and_template_tasks_and_follows_acurl():
    a, b, c, d = task("a"), task("b"), task("c", 1), task("d")
    source = ScriptedSource([[ProposedTask(a, False), ProposedTask(b, False)], [ProposedTask(c, False)],
                             [ProposedTask(d, False)]])
    plan = ProposingPlan(family_plan(), source, per_iteration=1, batch=2)
    first = plan.propose(3)
    assert first[0] is a and [t.family for t in first[1:]] == ["click_button", "click_button"]
    assert source.asked == [None]  # nothing measured yet: no relation
    plan.record([outcome(a, True, True, True, True), outcome(first[1], False, True)], iteration=1)
    assert plan.relation().kind == "harder" and plan.relation().reference is a
    assert [t.id for t in plan.pool] == ["b"]  # mastered: a left the pool
    assert plan.base.scheduler.snapshot()["families"]["click_button"]["levels"]["0"]["attempts"] == 2
    assert plan.propose(2)[0] is b and len(source.asked) == 1  # the pool still had b: no refill
    plan.record([outcome(b, True, False)], iteration=2)
    assert plan.relation().kind == "sibling" and [t.id for t in plan.pool] == ["b"]  # a sibling stays
    plan.pool.clear()
    assert plan.propose(2)[0] is c
    assert source.asked[-1].kind == "sibling" and source.asked[-1].reference is b
    plan.record([outcome(c, False, False)], iteration=3)
    plan.propose(2)
    assert source.asked[-1].kind == "prerequisite" and source.asked[-1].reference is c

    snapshot = plan.snapshot()
    cell = snapshot["families"]["model_buttons"]["levels"]["1"]
    assert cell == {"attempts": 2, "successes": 0, "rate": 0.0}
    refills = snapshot["proposals"]["refills"]
    assert snapshot["proposals"]["tasks"] == 4
    assert [(r["after_iteration"], r["relation"], r["reference"]) for r in refills] == [
        (0, None, None), (2, "sibling", "b"), (3, "prerequisite", "c")]

    state = json.loads(json.dumps(plan.state_dict()))  # a checkpoint is JSON
    again = ProposingPlan(family_plan(), ScriptedSource([]), per_iteration=1, batch=2)
    again.load_state_dict(state)
    assert [t.id for t in again.pool] == [t.id for t in plan.pool] and again.stats == plan.stats
    assert again.relation() == plan.relation() and again.snapshot()["families"] == snapshot["families"]


def test_tasks_with_checks_pass_admission_and_check_less_ones_need_a_vlm_judge():
    good, broken, free = task("good"), task("broken"), task("free", checks=False)
    admitted = []

    def admit(t: Task) -> AdmissionResult:
        admitted.append(t.id)
        return AdmissionResult(task_id=t.id, admitted=t.id != "broken", reason=None if t.id != "broken"
                               else "oracle_failed", oracle_score=1.0, noop_score=0.0, seconds=0.1)

    batch = [ProposedTask(good, False), ProposedTask(broken, False), ProposedTask(free, True)]
    plan = ProposingPlan(family_plan(admit), ScriptedSource([list(batch)]), per_iteration=1, batch=3)
    plan.propose(2)
    assert [t.id for t in plan.pool] == ["good"] and "free" not in plan.known
    records = {r["task"]["id"]: r for r in plan.drain_admissions()}
    assert records["broken"]["reason"] == "oracle_failed" and records["good"]["admitted"]
    assert records["free"]["reason"] == "no_judge" and not records["free"]["admitted"]
    assert "judge.kind hybrid" in records["free"]["detail"]

    judged = ProposingPlan(family_plan(admit), ScriptedSource([list(batch)]), per_iteration=1, batch=3,
                           judge_only_ok=True, withhold_checks=True)
    judged.propose(2)
    assert [t.id for t in judged.pool] == ["good", "free"] and all(not t.checks for t in judged.pool)
    assert {r["task"]["id"]: r["reason"] for r in judged.drain_admissions()
            if r["reason"] == "judge_only"} == {"good": "judge_only", "free": "judge_only"}


def test_when_nothing_is_proposed_the_templates_fill_the_iteration():
    plan = ProposingPlan(family_plan(), ScriptedSource([]), per_iteration=2, batch=2)
    tasks = plan.propose(2)
    assert len(tasks) == 2 and {t.family for t in tasks} == {"click_button"}
    assert plan.log[0]["proposed"] == 0


def test_launched_inverts_launch():
    assert launched(task("x")) == ("buttons", {"labels": ["Pear"]})
    assert launched(Task(id="n", instruction="i", family="f")) is None


# --- real parts ---------------------------------------------------------------------------


MENUS = {"seed": 2, "tree": {"File": ["Open", "Close"], "Edit": ["Copy", {"Transform": ["Rotate", "Flip"]}]}}


@pytest.mark.display
def test_exploration_of_a_real_app_proposes_by_level(box):
    from deskdojo.curriculum.explore import explore_app

    source = ExplorationProposals.from_guidebooks([explore_app("menus", box, params=MENUS, max_depth=3,
                                                               max_actions=60)])
    (first,), _ = source.propose(1, None, [], {})
    assert first.task.level == 1 and first.task.family == "explore_menus"  # File > Open: the easiest
    (harder,), _ = source.propose(1, Relation.of(first.task, 1.0), [], {})
    assert harder.task.level == 2 and "Transform" in harder.task.instruction
    (easier,), _ = source.propose(1, Relation.of(harder.task, 0.0), [], {})
    assert easier.task.level == 1 and easier.task.id != first.task.id
    rest, _ = source.propose(10, None, [], {})
    _, why = source.propose(1, None, [], {})
    assert len(rest) == 2 and "every explored task was proposed" in why[0]


def test_exploration_moves_to_the_next_app_when_its_app_has_nothing_harder():
    def explored(app: str, level: int, n: int) -> Task:
        return Task(id=f"explore_{app}-L{level}-{n}", instruction=f"Do {app} {n}.", family=f"explore_{app}",
                    level=level, setup=(launch(app, {}),), checks=(CHECK,))

    source = ExplorationProposals({"buttons": [explored("buttons", 0, i) for i in range(3)],
                                   "menus": [explored("menus", level, level) for level in (0, 1, 2)]})
    (first,), _ = source.propose(1, None, [], {})
    assert first.task.id == "explore_buttons-L0-0"
    (harder,), _ = source.propose(1, Relation.of(first.task, 1.0), [], {})
    assert harder.task.id == "explore_menus-L1-1"  # buttons has no level 1: menus, nearest level 1
    (sibling,), _ = source.propose(1, Relation.of(first.task, 0.5), [], {})
    assert sibling.task.id == "explore_buttons-L0-1"  # a sibling stays in the app
    (up,), _ = source.propose(1, Relation.of(harder.task, 0.9), [], {})
    assert up.task.id == "explore_menus-L2-2"
    state = json.loads(json.dumps(source.state_dict()))
    again = ExplorationProposals(source.tasks)
    again.load_state_dict(state)
    assert again.given == source.given and again.turn == source.turn


@pytest.mark.display
def test_the_tiny_model_proposes_from_a_real_screenshot(box):
    """The real proposer model path: the app's screenshot and elements from a real sandbox,
    the tiny model's answer; what does not parse is rejected with the reason, never a task."""
    from deskdojo.agent.policy import PolicyConfig, load_policy
    from deskdojo.core.checks import validate_checks
    from deskdojo.curriculum.explore import explore_app
    from deskdojo.curriculum.proposer import ModelProposer, PolicyProposerModel
    from deskdojo.evolve.build import app_screens
    from deskdojo.evolve.proposing import ModelProposals

    book = explore_app("buttons", box, params={"seed": 1, "labels": ["Apple", "Pear"]}, max_depth=1,
                       max_actions=10)
    screens = app_screens(box, [book])
    image, elements = screens["buttons"]
    assert image.size[0] > 0 and any(e.name == "Pear" for e in elements)
    asked: list[tuple[str, int]] = []
    model = PolicyProposerModel(load_policy("tiny", PolicyConfig()), max_new_tokens=24)

    def generate(prompt: str, images) -> str:
        asked.append((prompt, len(images)))
        return model(prompt, images)

    source = ModelProposals(ModelProposer(generate, validate=validate_checks), [book], screens)
    proposed, rejected = source.propose(2, None, [], {})
    prompt, images = asked[0]
    assert images == 1 and '"Pear"' in prompt and "Elements on the app's first screen" in prompt
    assert all(p.task.family == "model_buttons" for p in proposed)
    assert len(proposed) <= 2  # never more than asked for
    assert all(r.startswith(("item ", "no JSON task objects")) for r in rejected)  # each says what failed


@pytest.mark.display
def test_evolve_trains_on_exploration_tasks_on_real_sandboxes(tmp_path: Path):
    from deskdojo.core.rundir import JsonlFile
    from deskdojo.evolve.config import EvolveConfig
    from deskdojo.evolve.run import run_evolve

    config = EvolveConfig.from_dict({
        "provider": "xvfb", "sandboxes": 2, "group_size": 2, "tasks_per_iteration": 2, "max_steps": 2,
        "sandbox": {"screen": [640, 480]},
        "policy": {"max_new_tokens": 8, "temperature": 1.0, "lora": {"r": 4, "alpha": 8}},
        "sft": {"demos_per_family": 1, "steps": 1, "options": {"batch_size": 1, "warmup_steps": 0}},
        "curriculum": {"families": ["click_button"]},
        "proposer": {"kind": "explore", "max_depth": 1, "max_actions": 12},
        "eval": {"every": 2, "at_start": False, "levels": [0], "tasks_per_level": 1},
        "budget": {"iterations": 2}})
    run_dir = tmp_path / "run"
    result = run_evolve(config, run_dir)
    assert result.state == "finished" and result.iterations == 2
    book = json.loads((run_dir / "guidebooks" / "guidebook-buttons.json").read_text())
    assert book["app"] == "buttons" and book["entries"]
    logged = list(JsonlFile(run_dir / "tasks.jsonl").read())
    explored = [r for r in logged if r.get("task", r).get("family") == "explore_buttons"]
    assert explored and all(r["admitted"] for r in explored)  # admission ran on each
    played = {json.loads((p / "trajectory.json").read_text())["task_id"]
              for p in (run_dir / "trajectories").glob("it*")}
    assert {r["task"]["id"] for r in explored} & played  # an exploration task was trained on
    curriculum = json.loads((run_dir / "curriculum.json").read_text())
    assert curriculum["proposals"]["source"] == "exploration" and "explore_buttons" in curriculum["families"]


def test_proposer_settings_are_checked_and_the_flag_sets_them():
    import argparse

    from deskdojo.core.errors import ConfigError
    from deskdojo.evolve.cli import _overrides
    from deskdojo.evolve.config import load_config

    with pytest.raises(ConfigError, match="needs proposer.model"):
        load_config(None, {"proposer": {"kind": "model"}})
    with pytest.raises(ConfigError, match="needs judge.kind hybrid"):
        load_config(None, {"proposer": {"kind": "explore", "withhold_checks": True}})
    with pytest.raises(ConfigError, match="proposer.kind"):
        load_config(None, {"proposer": {"kind": "llm"}})
    assert load_config(None, {}).proposer.kind == "none"  # the default trains on the templates only
    from deskdojo.evolve.build import check_settings

    with pytest.raises(ConfigError, match="fake sandboxes run no apps"):
        check_settings(load_config(None, {"proposer": {"kind": "explore"}}), "fake")
    flags = argparse.Namespace(proposer="Qwen/Qwen2.5-VL-3B-Instruct")
    assert _overrides(flags) == {"proposer": {"kind": "model", "model": "Qwen/Qwen2.5-VL-3B-Instruct"}}
    assert _overrides(argparse.Namespace(proposer="explore")) == {"proposer": {"kind": "explore"}}
