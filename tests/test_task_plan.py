"""What reaches training, without a model or a display: the rollout records what each
prompt was built from (and hands windows to policies that ask), old step records still
load, and the family plan draws recurring, admitted tasks (so replay and retirement fire)."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import pytest

from deskdojo.agent.rollout import RolloutConfig, rollout
from deskdojo.core.actions import Click, describe
from deskdojo.core.errors import ConfigError
from deskdojo.core.protocols import Decision, DeterministicPolicy
from deskdojo.core.records import from_json, to_json
from deskdojo.core.rundir import JsonlFile, RunDir, read_trajectory
from deskdojo.core.types import Step, Task
from deskdojo.curriculum.admission import AdmissionResult
from deskdojo.curriculum.families import all_families
from deskdojo.evolve.parts import GroupOutcome, FamilyPlan
from deskdojo.vm.fake import FakeSandbox, synthetic_frames


class WindowPolicy(DeterministicPolicy):
    """Clicks off a 64x48 screen, then on it; keeps what it was handed."""

    policy_id = "window"
    history_k = 2

    def __init__(self) -> None:
        self.handed: list[Any] = []

    def act(self, observations, tasks, histories) -> list[Decision]:
        self.handed.extend(observations)
        return [Decision(text="x", action=Click(500, 5) if not h else Click(3, 3), token_ids=(1,),
                         logprobs=(-0.5,), temperature=0.7) for h in histories]


def test_rollout_hands_windows_and_records_the_error_line_and_frames_the_policy_saw(tmp_path: Path):
    run = RunDir.create(tmp_path / "run", {})
    policy = WindowPolicy()
    task = Task(id="t", instruction="do it", family="test")
    rollout(policy, [task], [FakeSandbox(synthetic_frames(64, 48))], run, config=RolloutConfig(max_steps=3))
    assert [len(w) for w in policy.handed] == [1, 2, 2]  # oldest first, fewer at the start
    steps = read_trajectory(run.path / "trajectories" / run.trajectory_ids()[0]).steps
    assert steps[0].action_error and policy.handed[1][-1].action_error == steps[1].prompt.error
    assert steps[1].prompt.error == f"{describe(Click(500, 5))}: {steps[0].action_error}"
    assert steps[0].prompt.error is None and steps[2].prompt.error is None
    assert [s.prompt.window for s in steps] == [("frames/0000.png",), ("frames/0000.png", "frames/0001.png"),
                                               ("frames/0001.png", "frames/0002.png")]
    assert {s.prompt.temperature for s in steps} == {0.7}


def test_step_records_without_the_prompt_field_still_load():
    old = {"index": 1, "action": {"kind": "click", "x": 3, "y": 3, "button": "left", "count": 1},
           "frame": "frames/0001.png", "model_text": "x", "token_ids": [1], "logprobs": [-0.5],
           "action_error": None, "started_at": 0.0, "duration_s": 0.1, "delta": None}
    step = from_json(Step, json.loads(json.dumps(old)))
    assert step.prompt is None  # the learner rebuilds such steps the old way


# --- the family plan: recurring seeds, cached admission ---------------------------------------


def admit_all_but_seed_3(task: Task) -> AdmissionResult:
    ok = task.seed != 3
    return AdmissionResult(task.id, ok, None if ok else "noop_passed", 1.0, 1.0 if not ok else 0.0, 0.01)


def plan(**kwargs: Any) -> FamilyPlan:
    return FamilyPlan({"click_button": all_families()["click_button"]}, heldout_levels=(), **kwargs)


def test_tasks_recur_from_a_pool_and_admission_runs_once_per_task():
    calls: list[str] = []

    def admit(task: Task) -> AdmissionResult:
        calls.append(task.id)
        return admit_all_but_seed_3(task)

    tasks = plan(seeds_per_level=4, admit=admit)
    drawn = [t for _ in range(10) for t in tasks.propose(2)]
    assert {t.seed for t in drawn} <= {0, 1, 2} and len({t.id for t in drawn}) < len(drawn)  # they recur
    assert sorted(calls) == sorted(set(calls)) and len(calls) == 4  # each task checked once
    records = tasks.drain_admissions()
    assert [(r["task"]["seed"], r["admitted"], r["reason"]) for r in records if not r["admitted"]] == \
        [(3, False, "noop_passed")]
    assert tasks.drain_admissions() == []
    resumed = plan(seeds_per_level=4, admit=admit)
    resumed.load_state_dict(json.loads(json.dumps(tasks.state_dict())))
    assert [t.id for t in resumed.propose(3)] == [t.id for t in tasks.propose(3)] and len(calls) == 4
    fresh = plan(seeds_per_level=0)
    assert [t.seed for t in fresh.propose(3)] == [0, 1, 2]  # 0: a new seed on every draw, as before


def test_max_level_caps_the_levels_both_samplings_train_at():
    from deskdojo.evolve.config import EvolveConfig

    assert all_families()["click_button"].levels > 2
    uniform = plan(sampling="uniform", max_level=1)
    assert {t.level for _ in range(40) for t in uniform.propose(2)} == {0, 1}
    curriculum = plan(max_level=1)
    for iteration in range(1, 6):  # every group succeeds: the scheduler climbs, and stops at the cap
        tasks = curriculum.propose(2)
        curriculum.record([GroupOutcome(t, (True,) * 4, 0.0, True) for t in tasks], iteration=iteration)
    assert curriculum.scheduler.level["click_button"] == 1
    assert {t.level for t in curriculum.propose(4)} == {1}
    uncapped = plan()
    for iteration in range(1, 6):
        tasks = uncapped.propose(2)
        uncapped.record([GroupOutcome(t, (True,) * 4, 0.0, True) for t in tasks], iteration=iteration)
    assert uncapped.scheduler.level["click_button"] > 1
    with pytest.raises(ConfigError, match="max_level"):
        EvolveConfig.from_dict({"curriculum": {"max_level": -1}})


def test_a_mastered_recurring_task_retires_and_is_not_proposed_again():
    tasks = plan(seeds_per_level=2, scheduler_settings={"mastery_streak": 4})
    first = tasks.propose(1)[0]
    tasks.record([GroupOutcome(first, (True,) * 4, 0.0, False)], iteration=1)
    assert tasks.snapshot()["retired"] == [first.id]
    assert all(t.id != first.id for t in tasks.propose(20))


def test_a_level_with_nothing_admissible_falls_back_and_then_says_what_to_check():
    def admit_level_0_only(task: Task) -> AdmissionResult:
        ok = task.level == 0
        return AdmissionResult(task.id, ok, None if ok else "oracle_failed", 0.0, 0.0, 0.01)

    tasks = plan(seeds_per_level=4, admit=admit_level_0_only)
    tasks.scheduler.level["click_button"] = 1
    assert {t.level for t in tasks.propose(3)} == {0}
    with pytest.raises(ConfigError, match="tasks check --family click_button"):
        plan(admit=lambda task: AdmissionResult(task.id, False, "oracle_failed", 0.0, 0.0, 0.01)).propose(1)


class MixedTemperaturePolicy:
    """``token_logprobs`` = -T for every token: which temperature scored which row shows."""

    def encode_samples(self, samples):
        return len(samples)

    def token_logprobs(self, batch, *, temperature=None):
        import torch

        value = -(temperature if temperature is not None else 1.0)
        return torch.full((batch, 2), value, requires_grad=True), torch.ones(batch, 2, dtype=torch.bool)


def test_each_sample_is_scored_at_the_temperature_it_was_sampled_at(tmp_path: Path):
    from types import SimpleNamespace

    from deskdojo.core.types import PromptInputs, Trajectory
    from deskdojo.evolve.learner import StepPrompts

    def sample(temperature: float | None) -> Any:
        prompt = PromptInputs(window=("frames/0000.png",), temperature=temperature) if temperature else None
        step = Step(index=0, action=None, token_ids=(1, 2), logprobs=(-1.0, -1.0), prompt=prompt)
        return SimpleNamespace(trajectory=Trajectory(id="t", task_id="x", steps=(step,)), step_index=0)

    prompts = StepPrompts(tmp_path, history_k=1)
    prompts.policy_sample = lambda s: s  # no frames needed: the fake policy ignores prompts
    logp, _ = prompts.logprobs(MixedTemperaturePolicy(), [sample(0.7), sample(None), sample(1.5), sample(0.7)])
    assert logp[:, 0].tolist() == pytest.approx([-0.7, -1.0, -1.5, -0.7])  # None: the policy's own T
    assert logp.requires_grad


class ToyFamily:
    """Procedural toy tasks for the loop's Bandit (tests/test_evolve.py): two levels."""

    levels = 2

    def generate(self, level: int, seed: int, split: Any) -> Task:
        return Task(id=f"toy-L{level}-{split.value}-{seed}", instruction=f"click the third target ({seed})",
                    family="toy", level=level, seed=seed, split=split, max_steps=3)


def test_the_loop_logs_admissions_replay_and_retirement(tmp_path: Path):
    from test_evolve import metrics_of, run_toy, toy_config

    def admit(task: Task) -> AdmissionResult:
        ok = task.seed != 1
        return AdmissionResult(task.id, ok, None if ok else "noop_passed", 1.0, 0.0 if ok else 1.0, 0.01)

    def family_plan(parts: Any) -> None:
        parts.plan = FamilyPlan({"toy": ToyFamily()}, seeds_per_level=3, heldout_levels=(0,), heldout_per_level=1,
                                scheduler_settings={"mastery_streak": 4, "min_attempts": 4}, admit=admit)

    config = toy_config(budget={"iterations": 8}, grpo={"lr": 0.3})
    run_toy(tmp_path / "run", config, with_parts=family_plan)
    lines = metrics_of(tmp_path / "run")
    records = list(JsonlFile(tmp_path / "run" / "tasks.jsonl").read())
    rejected = [r for r in records if r.get("admitted") is False]
    assert rejected and {r["reason"] for r in rejected} == {"noop_passed"}
    assert all(r["task"]["seed"] == 1 for r in rejected)
    assert sum(m["rejected"] for m in lines) == len(rejected) and sum(m["admitted"] for m in lines) >= 1
    trained = {json.loads(p.read_text())["task_id"] for p in (tmp_path / "run" / "trajectories").glob("it*/trajectory.json")}
    assert not trained & {r["task"]["id"] for r in rejected}  # never rolled out, never trained on
    assert sum(m["retired"] for m in lines) >= 1, [(m["train_success"], m["retired"]) for m in lines]
    assert sum(m["replayed"] for m in lines) >= 1  # an all-fail group got a sibling's success


def test_sft_shows_a_demo_step_the_error_line_its_record_says_the_actor_saw(tmp_path: Path):
    """A demo made from a rollout (its steps carry ``Step.prompt``): the SFT example for the
    step after a refusal carries the sandbox's error line, as the acting prompt did."""
    from deskdojo.agent.train.sft import make_click_target_demos, read_demos
    from deskdojo.core.types import PromptInputs

    demos = make_click_target_demos(tmp_path / "demos", 1, seed=0)
    folder = next(p for p in demos.iterdir() if p.is_dir())
    lines = (folder / "steps.jsonl").read_text().splitlines()
    step = from_json(Step, json.loads(lines[0]))
    seen = "click(x=900, y=5): click at (900, 5) is off the screen"
    with_record = dataclasses.replace(step, prompt=PromptInputs(window=(step.frame,), error=seen))
    (folder / "steps.jsonl").write_text("\n".join([json.dumps(to_json(with_record)), *lines[1:]]) + "\n")
    assert read_demos(demos)[0].error == seen
    plain = make_click_target_demos(tmp_path / "plain", 1, seed=0)
    assert read_demos(plain)[0].error is None  # demos recorded without a policy: no error line
