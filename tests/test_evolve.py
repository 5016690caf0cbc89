"""The self-evolving loop: iterations, metrics, control, checkpoints and kill -9 resume.

Most tests use a toy learner (a one-token bandit policy trained by the real GRPO
trainer) on fake sandboxes with a judge whose verdict depends on the action, so the
loop's bookkeeping is checked fast and deterministically. One smoke test runs the real
tiny VLM policy. This file is also the subprocess the kill -9 test starts and kills.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Sequence

import pytest

from deskdojo.core.actions import Click, Done
from deskdojo.core.control import read_status, send_control
from deskdojo.core.errors import ConfigError
from deskdojo.core.fakes import ListTaskSource
from deskdojo.core.protocols import Decision
from deskdojo.core.rundir import JsonlFile, RunDir
from deskdojo.core.types import Split, Task, Trajectory, Verdict
from deskdojo.evolve.config import EvolveConfig, diff_configs, load_config
from deskdojo.evolve.metrics import METRIC_KEYS

REPO = Path(__file__).resolve().parents[1]
ARMS = 4
GOOD_ARM = 2
SCREEN = (160, 120)


def arm_x(arm: int) -> int:
    return 10 + 30 * arm


# --- the toy learner ---------------------------------------------------------------


class Bandit:
    """Picks one of ARMS click targets per task (one token), then says done. Sampling is
    seeded by (seed, act calls) like the VLM policy, so resumes replay exactly."""

    clicks = 1  # clicks before done

    def __init__(self, seed: int = 0):
        import torch

        self.model = torch.nn.Linear(1, ARMS)
        torch.nn.init.zeros_(self.model.weight)
        torch.nn.init.zeros_(self.model.bias)
        self.policy_id = "bandit"
        self.seed = seed
        self._act_calls = 0
        self.greedy = False
        self.history_k = 1
        self.observation = "screenshot"

    def set_greedy(self, greedy: bool) -> None:
        self.greedy = greedy

    def rng_state(self) -> int:
        return self._act_calls

    def set_rng_state(self, state: int) -> None:
        self._act_calls = int(state)

    def logits(self) -> Any:
        import torch

        return self.model(torch.ones(1, 1))[0]

    def act(self, observations: Sequence[Any], tasks: Sequence[Task], histories: Sequence[Any]) -> list[Decision]:
        import torch

        generator = torch.Generator().manual_seed(hash((self.seed, self._act_calls)) & 0x7FFFFFFF)
        self._act_calls += 1
        with torch.no_grad():
            logp = torch.log_softmax(self.logits(), dim=-1)
        out = []
        for history in histories:
            if len(history) >= self.clicks:
                out.append(Decision(text="done", action=Done()))
                continue
            arm = int(logp.argmax()) if self.greedy else int(torch.multinomial(logp.exp(), 1, generator=generator))
            out.append(Decision(text=f"arm {arm}", action=Click(arm_x(arm), 20), token_ids=(arm,),
                                logprobs=(float(logp[arm]),)))
        return out

    def token_logprobs(self, samples: Sequence[Any]) -> tuple[Any, Any]:
        import torch

        logp = torch.log_softmax(self.logits(), dim=-1)
        rows = torch.stack([logp[s.token_ids[0]] for s in samples])[:, None]
        return rows, torch.ones_like(rows)


class ArmJudge:
    """Success when the first click hit the good arm; slow enough to be killed mid-iteration."""

    judge_id = "arm"

    def __init__(self, delay: float = 0.0):
        self.delay = delay

    def judge(self, task: Task, trajectory: Trajectory, sandbox: Any) -> Verdict:
        time.sleep(self.delay)
        first = trajectory.steps[0].action if trajectory.steps else None
        success = isinstance(first, Click) and first.x == arm_x(GOOD_ARM)
        return Verdict(task_id=task.id, trajectory_id=trajectory.id, success=success,
                       score=1.0 if success else 0.0, judge_id=self.judge_id)


def toy_tasks(n: int = 3, split: Split = Split.TRAIN) -> list[Task]:
    base = 1_000_000 if split is Split.HELDOUT else 0
    return [Task(id=f"toy-{split.value}-{i}", instruction=f"click the third target ({i})", family="toy",
                 level=i % 2, seed=base + i, split=split, max_steps=3) for i in range(n)]


def toy_config(**overrides: Any) -> EvolveConfig:
    data = {"provider": "fake", "sandboxes": 4, "group_size": 4, "tasks_per_iteration": 2,
            "budget": {"iterations": 4}, "eval": {"every": 2, "at_start": True},
            "sft": {"enabled": False}, "grpo": {"lr": 0.5, "neg_imitation_weight": 0.0, "normaliser": "global"},
            "curriculum": {"families": []}, "checkpoint_every": 1, "sandbox": {"screen": list(SCREEN)}}
    for key, value in overrides.items():
        data[key] = {**data[key], **value} if isinstance(value, dict) and isinstance(data.get(key), dict) else value
    return EvolveConfig.from_dict(data)


def toy_parts(config: EvolveConfig, run: RunDir, *, judge_delay: float = 0.0) -> Any:
    from deskdojo.agent.rollout import RolloutConfig, rollout
    from deskdojo.agent.train.grpo import GRPOConfig, GRPOTrainer
    from deskdojo.evolve.parts import GRPOLearner, Parts, SourcePlan
    from deskdojo.vm.config import SandboxConfig
    from deskdojo.vm.pool import SandboxPool

    policy = Bandit(seed=config.seed)
    trainer = GRPOTrainer(GRPOConfig.from_dict(config.grpo_settings()), policy.token_logprobs,
                          policy.model.parameters())

    pool = SandboxPool(SandboxConfig(provider="fake", screen=SCREEN), config.sandboxes).start()
    return Parts(learner=GRPOLearner(policy, trainer, module=policy.model), judge=ArmJudge(judge_delay),
                 plan=SourcePlan(ListTaskSource(toy_tasks()), heldout=toy_tasks(2, Split.HELDOUT)),
                 pool=pool, rollout=rollout, rollout_config=RolloutConfig(max_steps=3))


def run_toy(run_dir: Path, config: EvolveConfig, *, resume: bool = False, judge_delay: float = 0.0,
            handle_signals: bool = False, with_parts: Any = None, **kwargs: Any) -> Any:
    from deskdojo.evolve.loop import Evolver
    from deskdojo.evolve.run import open_or_create_run

    run = open_or_create_run(run_dir, config, resume=resume, force=False)
    parts = toy_parts(config, run, judge_delay=judge_delay)
    if with_parts is not None:
        with_parts(parts)
    try:
        return Evolver(config, run, parts, resume=resume, handle_signals=handle_signals, **kwargs).run_loop()
    finally:
        parts.close()


def metrics_of(run_dir: Path) -> list[dict[str, Any]]:
    return list(JsonlFile(run_dir / "metrics.jsonl").read())


# --- config ---------------------------------------------------------------------------


def test_config_is_closed_typed_and_hashed(tmp_path: Path):
    with pytest.raises(ConfigError, match="no key 'groupsize'"):
        EvolveConfig.from_dict({"groupsize": 4})
    with pytest.raises(ConfigError, match="budget has no key 'steps'"):
        EvolveConfig.from_dict({"budget": {"steps": 3}})
    with pytest.raises(ConfigError, match="sandboxes: expected an integer"):
        EvolveConfig.from_dict({"sandboxes": "four"})
    with pytest.raises(ConfigError, match="budget needs at least one"):
        EvolveConfig.from_dict({"budget": {}})
    with pytest.raises(ConfigError, match="disagrees with group_size"):
        EvolveConfig.from_dict({"group_size": 4, "grpo": {"group_size": 8}})
    path = tmp_path / "c.yaml"
    path.write_text("group_size: 6\nbudget:\n  iterations: 3\neval:\n  every: 1\n")
    config = load_config(path, {"budget": {"env_steps": 100}, "sandboxes": 3})
    assert (config.group_size, config.budget.iterations, config.budget.env_steps, config.sandboxes) == (6, 3, 100, 3)
    assert config.eval.every == 1  # the file set it
    assert config.eval.tasks_per_level == EvolveConfig().eval.tasks_per_level  # a default kept beside it
    assert EvolveConfig.from_dict(config.to_dict()) == config
    assert config.config_hash() != EvolveConfig().config_hash()
    assert diff_configs(EvolveConfig().to_dict(), config.to_dict())[:1] == ["budget.env_steps: null -> 100"]
    (tmp_path / "bad.yaml").write_text("a: [1,\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(tmp_path / "bad.yaml")


# --- the loop on fakes -------------------------------------------------------------------


def test_toy_evolve_learns_and_writes_the_run_directory(tmp_path: Path):
    run_dir = tmp_path / "run"
    config = toy_config(budget={"iterations": 6})
    result = run_toy(run_dir, config)
    assert result.state == "finished" and result.iterations == 6
    lines = metrics_of(run_dir)
    assert [m["iteration"] for m in lines] == [1, 2, 3, 4, 5, 6]
    for line in lines:
        assert tuple(line) == METRIC_KEYS
        assert set(line["time_split"]) == {"rollout", "judge", "train", "admission"}
    assert lines[-1]["env_steps"] == 6 * 2 * 4 * 2  # iterations x tasks x G x (click, done)
    assert [m["heldout_success"] is not None for m in lines] == [False, True, False, True, False, True]
    assert lines[0]["success_by_family"]["toy"].keys() <= {"0", "1"}
    # the real GRPO trainer moved the bandit towards the rewarded arm
    assert lines[-1]["train_success"] > lines[0]["train_success"]
    assert lines[-1]["heldout_success"] == 1.0
    heldout = list(JsonlFile(run_dir / "heldout.jsonl").read())
    assert [h["iteration"] for h in heldout] == [0, 2, 4, 6] and heldout[0]["success"] == 0.0
    trajectories = sorted(p.name for p in (run_dir / "trajectories").iterdir())
    assert len(trajectories) == 6 * 8 + 4 * 2
    verdicts = list(JsonlFile(run_dir / "verdicts.jsonl").read())
    assert sorted(v["trajectory_id"] for v in verdicts) == trajectories
    assert (run_dir / "learning_curve.png").read_bytes()[:4] == b"\x89PNG"
    assert json.loads((run_dir / "curriculum.json").read_text())["families"]["toy"]
    assert list((run_dir / "tb").iterdir())
    config_record = json.loads((run_dir / "config.json").read_text())
    assert config_record["config_hash"] == config.config_hash()
    assert "group_size: 4" in (run_dir / "config.yaml").read_text()
    assert read_status(run_dir)["state"] == "finished"
    assert [p.name for p in RunDir.open(run_dir).checkpoints()] == [f"{i:06d}" for i in range(7)]


class ExploringBandit(Bandit):
    """Clicks ``plain_arm`` unless exploring, then the good arm: a policy whose own answer
    fails (or succeeds) and whose exploration finds the success."""

    plain_arm = 0

    def __init__(self, seed: int = 0):
        super().__init__(seed)
        self.exploring = True
        self.switches: list[tuple[bool, float | None]] = []

    def set_exploring(self, on: bool, rate: float | None = None) -> None:
        self.exploring = on
        self.switches.append((on, rate))

    def act(self, observations: Sequence[Any], tasks: Sequence[Task], histories: Sequence[Any]) -> list[Decision]:
        self._act_calls += 1
        arm = GOOD_ARM if self.exploring else self.plain_arm
        return [Decision(text="done", action=Done()) if history else
                Decision(text=f"arm {arm}", action=Click(arm_x(arm), 20), token_ids=(arm,), logprobs=(-1.0,))
                for history in histories]


@pytest.mark.parametrize("plain_arm", [0, GOOD_ARM], ids=["own-answer-fails", "own-answer-succeeds"])
def test_explore_failed_only_plays_again_exploring_just_the_groups_that_all_failed(tmp_path: Path, plain_arm: int):
    config = toy_config(budget={"iterations": 2}, policy={"explore": 0.25}, explore_failed_only=True,
                        explore_failed_rate=0.6, eval={"every": 10, "at_start": False})
    policies = []

    def swap(parts: Any) -> None:
        policy = ExploringBandit(seed=config.seed)
        policy.plain_arm = plain_arm
        policy.model = parts.learner.policy.model
        parts.learner.policy = policy
        policies.append(policy)

    result = run_toy(tmp_path / "run", config, with_parts=swap)
    assert result.state == "finished"
    lines = metrics_of(tmp_path / "run")
    played = sorted(p.name for p in (tmp_path / "run" / "trajectories").iterdir() if p.name.startswith("it00001"))
    if plain_arm == GOOD_ARM:  # every group succeeded on the policy's own answers: nothing played again
        assert [m["explored"] for m in lines] == [0, 0] and len(played) == 2 * 4
        assert [m["train_success"] for m in lines] == [1.0, 1.0]
    else:  # both tasks failed 4 of 4, then 4 more each, exploring, which found the good arm
        assert [m["explored"] for m in lines] == [2, 2] and len(played) == 2 * 8
        assert {p.rsplit("-", 1)[1] for p in played} == {f"g{g:02d}" for g in range(8)}
        assert [m["train_success"] for m in lines] == [0.5, 0.5]
        assert lines[-1]["env_steps"] == 2 * 2 * 8 * 2  # iterations x tasks x 2G x (click, done)
        assert lines[0]["groups_used"] == 2  # groups of 8: 4 failures and 4 successes, so a signal
    # exploration off for each first pass, at explore_failed_rate for the groups played again, and
    # back on at the policy's own rate after it, whatever happened
    assert policies[0].switches[:3] == [(False, None), (True, 0.6), (True, None)] and policies[0].exploring
    assert policies[0].switches[-1] == (True, None)
    with pytest.raises(ConfigError, match="policy.explore"):
        toy_config(explore_failed_only=True)
    with pytest.raises(ConfigError, match="set explore_failed_only: true"):
        toy_config(policy={"explore": 0.25}, explore_failed_rate=0.5)
    with pytest.raises(ConfigError, match="explore_failed_rate must be a share"):
        toy_config(policy={"explore": 0.25}, explore_failed_only=True, explore_failed_rate=1.5)
    with pytest.raises(ConfigError, match="ray: explore_failed_only"):
        toy_config(policy={"explore": 0.25}, explore_failed_only=True, ray={"address": "auto"})


def test_a_deadline_passed_between_iterations_still_ends_with_a_held_out_evaluation(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """The loop's clock jumps past the deadline after iteration 2 (a slow spell, a long
    pause), which evaluated nothing because it expected more iterations to follow: no
    iteration starts after it, and the learning curve still gets its last point."""
    import types

    import deskdojo.evolve.loop as loop

    skipped = [0.0]
    monkeypatch.setattr(loop, "time", types.SimpleNamespace(
        monotonic=lambda: time.monotonic() + skipped[0], time=time.time, sleep=time.sleep))

    def after_iteration(iteration: int) -> None:
        if iteration == 2:
            skipped[0] = 3600.0

    run_dir = tmp_path / "run"
    config = toy_config(budget={"iterations": 50}, eval={"every": 100, "at_start": True})
    result = run_toy(run_dir, config, after_iteration=after_iteration, deadline=time.monotonic() + 1800)
    assert result.state == "finished" and result.iterations == 2
    heldout = list(JsonlFile(run_dir / "heldout.jsonl").read())
    assert [h["iteration"] for h in heldout] == [0, 2]
    checkpoint = json.loads((RunDir.open(run_dir).latest_checkpoint() / "cursor.json").read_text())
    assert checkpoint["iteration"] == 2 and checkpoint["lines"]["heldout.jsonl"] == 2  # counted: a resume keeps it


def test_pause_resume_and_stop_through_control_json(tmp_path: Path):
    import threading

    run_dir = tmp_path / "run"
    config = toy_config(budget={"iterations": 50}, eval={"every": 100, "at_start": False})
    seen: dict[str, Any] = {}

    def resume_later() -> None:
        time.sleep(0.6)
        status = read_status(run_dir)
        seen["paused"], seen["iteration_while_paused"] = status["state"], status["iteration"]
        send_control(run_dir, "resume")

    def steer(iteration: int) -> None:
        if iteration == 1:
            send_control(run_dir, "pause")
            threading.Thread(target=resume_later, daemon=True).start()
        if iteration == 3:
            send_control(run_dir, "stop")

    started = time.monotonic()
    result = run_toy(run_dir, config, after_iteration=steer)
    assert seen == {"paused": "paused", "iteration_while_paused": 1}
    assert time.monotonic() - started > 0.6  # it really waited while paused
    assert result.state == "stopped" and result.iterations == 3
    assert [m["iteration"] for m in metrics_of(run_dir)] == [1, 2, 3]
    assert read_status(run_dir)["state"] == "finished"


def test_stop_mid_iteration_keeps_the_last_completed_one(tmp_path: Path):
    import threading

    run_dir = tmp_path / "run"
    config = toy_config(budget={"iterations": 50}, eval={"every": 100, "at_start": False}, checkpoint_every=5)

    def stop_mid_iteration(iteration: int) -> None:
        if iteration == 2:  # the stop lands while iteration 3 is judging
            threading.Timer(0.05, send_control, (run_dir, "stop")).start()

    # judging (in parallel, per batch of 4) takes >= 0.2 s an iteration: the stop lands inside it
    result = run_toy(run_dir, config, after_iteration=stop_mid_iteration, judge_delay=0.1)
    assert result.state == "stopped" and result.iterations == 2
    assert [m["iteration"] for m in metrics_of(run_dir)] == [1, 2]
    latest = RunDir.open(run_dir).latest_checkpoint()
    cursor = json.loads((latest / "cursor.json").read_text())
    assert cursor["iteration"] == 2  # checkpointed on the way out, though checkpoint_every is 5
    ids = sorted(p.name for p in (run_dir / "trajectories").iterdir())
    assert ids == sorted(cursor["trajectory_ids"]) and len(ids) == 2 * 8
    assert sorted(v["trajectory_id"] for v in JsonlFile(run_dir / "verdicts.jsonl").read()) == ids
    assert any(p.name.startswith("r000-it00003") for p in (run_dir / "superseded").iterdir())
    # and it resumes from there to the end
    result = run_toy(run_dir, toy_config(budget={"iterations": 50}, eval={"every": 100, "at_start": False},
                                         checkpoint_every=5), resume=True,
                     after_iteration=lambda i: i == 4 and send_control(run_dir, "stop"))
    assert result.iterations == 4 and [m["iteration"] for m in metrics_of(run_dir)] == [1, 2, 3, 4]


def test_resume_refuses_a_changed_config_unless_forced(tmp_path: Path, capsys: pytest.CaptureFixture):
    from deskdojo.evolve.run import ConfigChanged, open_or_create_run

    run_dir = tmp_path / "run"
    run_toy(run_dir, toy_config(budget={"iterations": 1}, eval={"at_start": False}))
    changed = toy_config(budget={"iterations": 3}, eval={"at_start": False}, group_size=8)
    with pytest.raises(ConfigChanged) as info:
        open_or_create_run(run_dir, changed, resume=True)
    assert info.value.differences == ["budget.iterations: 1 -> 3", "group_size: 4 -> 8"]
    assert "budget.iterations: 1 -> 3" in str(info.value) and "--force" in str(info.value)
    from deskdojo.cli import main

    assert main(["evolve", "--resume", str(run_dir), "--iterations", "5"]) == 1  # the command refuses too
    assert "budget.iterations: 1 -> 5" in capsys.readouterr().err
    run = open_or_create_run(run_dir, changed, resume=True, force=True)
    assert run.config()["config"]["group_size"] == 8
    assert (run_dir / "config.previous.json").exists()


def test_a_run_made_before_a_setting_existed_resumes_with_its_default(tmp_path: Path):
    """A run's stored config lacks a section added later (here ``judge``): read through
    today's config it takes the default, which is what the run ran with."""
    import json

    from deskdojo.evolve.run import open_or_create_run

    run_dir = tmp_path / "run"
    config = toy_config(budget={"iterations": 1}, eval={"at_start": False})
    run_toy(run_dir, config)
    record = json.loads((run_dir / "config.json").read_text())
    del record["config"]["judge"]
    (run_dir / "config.json").write_text(json.dumps(record))
    assert open_or_create_run(run_dir, config, resume=True).path == run_dir
    changed = toy_config(budget={"iterations": 1}, eval={"at_start": False}, judge={"kind": "hybrid", "model": "tiny"})
    from deskdojo.evolve.run import ConfigChanged

    with pytest.raises(ConfigChanged, match="judge.kind"):
        open_or_create_run(run_dir, changed, resume=True)


def test_the_judge_section_builds_the_hybrid_judge(tmp_path: Path):
    from deskdojo.core.rundir import RunDir
    from deskdojo.evolve.build import build_judge
    from deskdojo.world_model.hybrid import HybridJudge
    from deskdojo.world_model.judge import StateJudge

    run = RunDir.create(tmp_path / "run", {})
    assert isinstance(build_judge(load_config(None, {}), run, log=lambda _: None), StateJudge)
    config = load_config(None, {"judge": {"kind": "hybrid", "model": "tiny", "mode": "both",
                                          "vlm": {"votes": 3, "images": False}}})
    judge = build_judge(config, run, log=lambda _: None)
    assert isinstance(judge, HybridJudge) and judge.mode == "both" and judge.vlm.config.votes == 3
    assert judge.disagreements is not None and judge.disagreements.path == run.path / "disagreements.jsonl"
    from deskdojo.evolve.build import check_settings

    for bad, problem in (({"kind": "hybrid"}, "needs judge.model"), ({"kind": "vote"}, "judge.kind"),
                         ({"vlm": {"vots": 2}}, "judge.vlm has no key 'vots'")):
        with pytest.raises(ConfigError, match=problem):
            check_settings(load_config(None, {"judge": bad}), "xvfb")


def test_the_tiny_readers_warm_start_rehearses_generated_later_steps_unless_told_otherwise():
    from deskdojo.evolve.build import TINY_REHEARSAL, check_settings, sft_config

    def rehearsal(observation: str | None = None, **overrides: Any) -> int:
        return sft_config(load_config(None, overrides), demos="demos", out="sft", history_k=1,
                          observation=observation).generated_per_batch

    assert TINY_REHEARSAL == 16
    for observation in (None, "a11y_tree", "screenshot_a11y_tree", "som"):  # None: the reader's own, a11y_tree
        assert rehearsal(observation) == TINY_REHEARSAL, observation
    assert rehearsal("screenshot") == 0  # no element table to rehearse on
    assert rehearsal(model="tiny-scratch") == rehearsal(model="Qwen/Qwen2.5-VL-3B-Instruct") == 0
    assert rehearsal(sft={"options": {"generated_per_batch": 4}}) == 4  # the user's sft.options win
    assert rehearsal(sft={"options": {"generated_per_batch": 0}}) == 0
    assert rehearsal("a11y_tree", model="tiny-scratch", sft={"options": {"generated_per_batch": 2}}) == 2
    with pytest.raises(ConfigError, match="sft.options: .*needs an observation with elements"):
        check_settings(load_config(None, {"policy": {"observation": "screenshot"},
                                          "sft": {"options": {"generated_per_batch": 4}}}), "xvfb")
    check_settings(load_config(None, {"policy": {"observation": "screenshot"}}), "xvfb")  # the default: 0 there


def test_the_tiny_readers_grpo_rehearses_generated_later_steps_unless_told_otherwise():
    from types import SimpleNamespace

    from deskdojo.agent.train.grpo import GRPOConfig
    from deskdojo.evolve.build import TINY_REHEARSAL, grpo_settings

    def rehearsal(observation: str = "a11y_tree", **overrides: Any) -> int:
        settings = grpo_settings(load_config(None, overrides), SimpleNamespace(observation=observation))
        return GRPOConfig.from_dict(settings).generated_rehearsal

    assert rehearsal() == rehearsal("som") == TINY_REHEARSAL
    assert rehearsal("screenshot") == 0  # no element table to rehearse on
    assert rehearsal(model="Qwen/Qwen2.5-VL-3B-Instruct") == 0
    assert rehearsal(grpo={"generated_rehearsal": 3}) == 3  # the user's grpo value wins
    assert rehearsal(grpo={"lr": 1e-4}) == TINY_REHEARSAL  # a grpo mapping without it keeps the default


def test_every_held_out_evaluation_and_iteration_shows_on_the_progress_stream(tmp_path: Path,
                                                                             monkeypatch: pytest.MonkeyPatch):
    """A log (not a terminal) gets a line per held-out evaluation with its count, and the
    iteration bar; ``--quiet`` (the progress module's switch) leaves the stream empty."""
    import io

    from deskdojo.core import progress

    out = io.StringIO()
    run_toy(tmp_path / "run", toy_config(), out=out)
    lines = out.getvalue().splitlines()
    for iteration in (0, 2, 4):  # at the start, then every 2 iterations
        label = f"held-out evaluation (iteration {iteration}) ["
        mine = [line for line in lines if line.startswith(label)]
        assert mine and "2/2 tasks" in mine[-1] and "done in" in mine[-1], lines
    assert [line.split(" it ")[1].split()[0] for line in lines if " it " in line] == ["1", "2", "3", "4"], lines

    monkeypatch.setattr(progress, "_quiet", True)
    quiet = io.StringIO()
    run_toy(tmp_path / "quiet", toy_config(), out=quiet)
    assert quiet.getvalue() == ""
    assert len(metrics_of(tmp_path / "quiet")) == 4  # the run itself is the same


# --- the real tiny VLM policy and GRPO -----------------------------------------------------


class EvenTokenJudge:
    """Success when the policy's first generated token id is even: depends on what the
    policy emitted, so a group of sampled rollouts usually carries signal."""

    judge_id = "even-token"

    def judge(self, task: Task, trajectory: Trajectory, sandbox: Any) -> Verdict:
        tokens = trajectory.steps[0].token_ids if trajectory.steps else ()
        success = bool(tokens) and tokens[0] % 2 == 0
        return Verdict(task_id=task.id, trajectory_id=trajectory.id, success=success,
                       score=1.0 if success else 0.0, judge_id=self.judge_id)


def test_smoke_two_iterations_with_the_tiny_vlm_policy_and_grpo(tmp_path: Path):
    import torch

    from deskdojo.agent.policy import load_policy
    from deskdojo.agent.rollout import RolloutConfig, rollout
    from deskdojo.evolve.build import policy_config
    from deskdojo.evolve.learner import vlm_learner
    from deskdojo.evolve.loop import Evolver
    from deskdojo.evolve.parts import Parts, SourcePlan
    from deskdojo.evolve.run import open_or_create_run
    from deskdojo.vm.config import SandboxConfig
    from deskdojo.vm.pool import SandboxPool

    config = toy_config(budget={"iterations": 2}, group_size=4, tasks_per_iteration=1,
                        policy={"max_new_tokens": 4, "temperature": 1.5, "lora": {"r": 4, "alpha": 8}},
                        grpo={"lr": 1e-2, "neg_imitation_weight": 0.1, "normaliser": "global"},
                        eval={"every": 2, "at_start": False})
    run = open_or_create_run(tmp_path / "run", config, resume=False)
    policy = load_policy("tiny-scratch", policy_config(config))
    learner = vlm_learner(policy, config.grpo_settings(), run.path / "trajectories")
    before = {n: p.detach().clone() for n, p in policy.model.named_parameters() if p.requires_grad}
    assert before and all("lora" in n for n in before)
    pool = SandboxPool(SandboxConfig(provider="fake", screen=SCREEN), 4).start()
    parts = Parts(learner=learner, plan=SourcePlan(ListTaskSource(toy_tasks(2)), heldout=toy_tasks(1, Split.HELDOUT)),
                  judge=EvenTokenJudge(), pool=pool, rollout=rollout, rollout_config=RolloutConfig(max_steps=1))
    try:
        result = Evolver(config, run, parts, handle_signals=False).run_loop()
    finally:
        parts.close()
    assert result.iterations == 2
    lines = metrics_of(run.path)
    assert [tuple(m) for m in lines] == [METRIC_KEYS, METRIC_KEYS]
    assert sum(m["groups_used"] for m in lines) >= 1, lines  # GRPO saw signal at least once
    assert all(m["tokens_per_s"] > 0 for m in lines)
    used = [m for m in lines if m["groups_used"]]
    assert used[0]["loss"] is not None and used[0]["entropy"] > 0
    changed = [n for n, p in policy.model.named_parameters() if p.requires_grad and not torch.equal(p, before[n])]
    assert changed  # the LoRA adapters moved
    assert lines[-1]["heldout_success"] is not None and (run.path / "learning_curve.png").exists()
    checkpoint = RunDir.open(run.path).latest_checkpoint()
    assert (checkpoint / "learner" / "policy" / "adapter").is_dir()  # a loadable policy, besides learner.pt


# --- the real thing: xvfb sandboxes, a practice app, oracle demos, SFT, the tiny VLM -------


@pytest.mark.display
def test_smoke_evolve_two_iterations_on_real_xvfb_sandboxes(tmp_path: Path, capsys: pytest.CaptureFixture):
    """`deskdojo evolve` end to end as the main job runs it, scaled down: oracle demos on real
    sandboxes, the SFT warm start, two GRPO iterations of the tiny VLM on the click_button
    practice app, the state judge, held-out evaluation and every run-folder artefact."""
    from deskdojo.evolve.run import run_evolve

    config = EvolveConfig.from_dict({
        "provider": "xvfb", "sandboxes": 2, "group_size": 2, "tasks_per_iteration": 1, "max_steps": 2,
        "sandbox": {"screen": [640, 480]},
        "policy": {"max_new_tokens": 8, "temperature": 1.0, "lora": {"r": 4, "alpha": 8}},
        "sft": {"demos_per_family": 2, "steps": 2, "options": {"batch_size": 2, "warmup_steps": 1}},
        "curriculum": {"families": ["click_button"]},
        "eval": {"every": 2, "at_start": True, "levels": [0], "tasks_per_level": 2},
        "budget": {"iterations": 2}})
    run_dir = tmp_path / "run"
    result = run_evolve(config, run_dir)
    out = capsys.readouterr().out
    assert result.state == "finished" and result.iterations == 2
    assert "held-out success (learning curve)" in out and "click_button/L0" in out

    demos = [p for p in (run_dir / "demos").iterdir() if p.is_dir()]
    assert len(demos) == 2 and (run_dir / "sft" / "policy" / "deskdojo_policy.json").exists()
    lines = metrics_of(run_dir)
    assert [m["iteration"] for m in lines] == [1, 2] and all(tuple(m) == METRIC_KEYS for m in lines)
    assert lines[-1]["env_steps"] == sum(
        len((p / "steps.jsonl").read_text().splitlines())
        for p in (run_dir / "trajectories").iterdir() if p.name.startswith("it"))
    assert all(set(m["time_split"]) == {"rollout", "judge", "train", "admission"} and m["time_split"]["rollout"] > 0
               for m in lines)
    verdicts = list(JsonlFile(run_dir / "verdicts.jsonl").read())
    assert {v["judge_id"] for v in verdicts} == {"state"}  # the executable checks judged, not a fake
    train_verdicts = [v for v in verdicts if v["trajectory_id"].startswith("it")]
    assert len(train_verdicts) == 4 and all(0.0 <= v["score"] <= 1.0 for v in train_verdicts)
    heldout = list(JsonlFile(run_dir / "heldout.jsonl").read())
    assert [h["iteration"] for h in heldout] == [0, 2] and all(h["tasks"] == 2 for h in heldout)
    frames = list((run_dir / "trajectories").glob("it00001-t00-g00/frames/*.png"))
    assert frames  # what the policy saw, written as the episode ran
    curriculum = json.loads((run_dir / "curriculum.json").read_text())
    assert "click_button" in curriculum["families"]
    assert (run_dir / "learning_curve.png").stat().st_size > 0 and any((run_dir / "tb").iterdir())
    checkpoint = RunDir.open(run_dir).latest_checkpoint()
    assert json.loads((checkpoint / "cursor.json").read_text())["iteration"] == 2


# --- kill -9 at random moments, then resume ----------------------------------------------

KILL_ITERATIONS = 6


def _kill_config() -> EvolveConfig:
    return toy_config(budget={"iterations": KILL_ITERATIONS}, checkpoint_every=2)


def test_a_dead_sandbox_gives_an_error_trajectory_and_is_replaced(tmp_path: Path):
    run_dir = tmp_path / "run"
    held: dict[str, Any] = {}
    config = toy_config(budget={"iterations": 3}, eval={"every": 100, "at_start": False})
    result = run_toy(run_dir, config, with_parts=lambda parts: held.update(parts=parts),
                     after_iteration=lambda i: i == 1 and held["parts"].pool[0].kill())
    assert result.iterations == 3 and held["parts"].pool.replaced == 1
    ends = {p.name: json.loads((p / "trajectory.json").read_text())["end"]
            for p in (run_dir / "trajectories").iterdir()}
    assert [tid for tid, end in ends.items() if end == "error"] == ["it00002-t00-g00"]
    judged = {v["trajectory_id"] for v in JsonlFile(run_dir / "verdicts.jsonl").read()}
    assert judged == set(ends) - {"it00002-t00-g00"}  # the error is never scored
    assert [m["env_steps"] for m in metrics_of(run_dir)] == [16, 16 + 14, 16 + 14 + 16]
    assert [m["errors"] for m in metrics_of(run_dir)] == [0, 1, 0]  # counted, where the panel reads it


def test_a_judge_without_an_answer_makes_an_error_episode_and_the_run_goes_on(tmp_path: Path):
    from deskdojo.core.errors import JudgeError, JudgeUnanswered

    class Unanswering(ArmJudge):
        """The arm judge, but episode g01 of iteration 2 gets no answer that parses."""

        def judge(self, task: Task, trajectory: Trajectory, sandbox: Any) -> Verdict:
            if trajectory.id == "it00002-t00-g01":
                raise JudgeUnanswered("judge model scripted gave 1 of 1 answers that do not parse")
            return super().judge(task, trajectory, sandbox)

    run_dir = tmp_path / "run"
    config = toy_config(budget={"iterations": 3}, eval={"every": 100, "at_start": False})
    result = run_toy(run_dir, config, with_parts=lambda parts: setattr(parts, "judge", Unanswering()))
    assert result.state == "finished" and result.iterations == 3
    headers = {p.name: json.loads((p / "trajectory.json").read_text()) for p in (run_dir / "trajectories").iterdir()}
    errors = {tid: h["error"] for tid, h in headers.items() if h["end"] == "error"}
    assert list(errors) == ["it00002-t00-g01"] and "the judge gave no verdict" in errors["it00002-t00-g01"]
    judged = {v["trajectory_id"] for v in JsonlFile(run_dir / "verdicts.jsonl").read()}
    assert judged == set(headers) - set(errors)  # never a success or a failure
    assert [m["errors"] for m in metrics_of(run_dir)] == [0, 1, 0]

    class Broken(ArmJudge):
        def judge(self, task: Task, trajectory: Trajectory, sandbox: Any) -> Verdict:
            raise JudgeError("a check crashed")

    with pytest.raises(JudgeError, match="a check crashed"):  # a bug in a check still stops the run
        run_toy(tmp_path / "broken", config, with_parts=lambda parts: setattr(parts, "judge", Broken()))


def test_sigterm_stops_cleanly_and_keeps_the_last_iteration(tmp_path: Path):
    run_dir = tmp_path / "run"
    proc = _start(run_dir, resume=False, iterations=50)
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            status = read_status(run_dir) if run_dir.exists() else None
            if status and status.get("pid") == proc.pid and status.get("iteration", 0) >= 1:
                break
            time.sleep(0.05)
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, err.decode()[-2000:]
    iterations = [m["iteration"] for m in metrics_of(run_dir)]
    assert 1 <= len(iterations) < 50 and iterations == list(range(1, len(iterations) + 1))
    cursor = json.loads((RunDir.open(run_dir).latest_checkpoint() / "cursor.json").read_text())
    assert cursor["iteration"] == iterations[-1]
    assert read_status(run_dir)["state"] == "finished"


def _start(run_dir: Path, resume: bool, iterations: int = 0) -> subprocess.Popen:
    argv = [sys.executable, str(Path(__file__).resolve()), str(run_dir), str(iterations)] + (["--resume"] if resume else [])
    return subprocess.Popen(argv, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def test_kill_9_at_random_moments_then_resume_loses_and_double_counts_nothing(tmp_path: Path):
    reference = tmp_path / "reference"
    run_toy(reference, _kill_config(), judge_delay=0.01)

    run_dir = tmp_path / "killed"
    rng = random.Random(7)
    kills, resume = 0, False
    while True:
        proc = _start(run_dir, resume)
        if kills < 3:
            # wait until the run is under way (some iterations in), then kill at a random moment
            deadline = time.monotonic() + 60
            target = rng.randint(0, KILL_ITERATIONS - 2)
            while time.monotonic() < deadline and proc.poll() is None:
                status = read_status(run_dir) if run_dir.exists() else None
                if status and status.get("pid") == proc.pid and status.get("iteration", 0) >= target:
                    break
                time.sleep(0.02)
            time.sleep(rng.uniform(0.0, 0.4))
            if proc.poll() is None:
                os.kill(proc.pid, signal.SIGKILL)
                kills += 1
            proc.wait()
            resume = True
            continue
        _, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err.decode()[-2000:]
        break
    assert kills >= 1

    ref_lines, lines = metrics_of(reference), metrics_of(run_dir)
    assert [m["iteration"] for m in lines] == list(range(1, KILL_ITERATIONS + 1))
    for key in ("env_steps", "train_success", "heldout_success", "success_by_family", "groups_used", "loss"):
        assert [m[key] for m in lines] == [m[key] for m in ref_lines], key
    ref_ids = sorted(p.name for p in (reference / "trajectories").iterdir())
    ids = sorted(p.name for p in (run_dir / "trajectories").iterdir())
    assert ids == ref_ids  # redone iterations reuse their ids; the killed attempts are superseded
    verdict_ids = [v["trajectory_id"] for v in JsonlFile(run_dir / "verdicts.jsonl").read()]
    assert sorted(verdict_ids) == ids  # one verdict per counted trajectory, none twice
    tasks = [t["id"] for t in JsonlFile(run_dir / "tasks.jsonl").read()]
    assert len(tasks) == len(set(tasks))
    heldout = [h["iteration"] for h in JsonlFile(run_dir / "heldout.jsonl").read()]
    assert heldout == [h["iteration"] for h in JsonlFile(reference / "heldout.jsonl").read()]
    for tid in ids:
        assert (run_dir / "trajectories" / tid / "trajectory.json").exists()


if __name__ == "__main__":  # the process the kill -9 test starts
    config = _kill_config()
    if int(sys.argv[2]):
        config = toy_config(budget={"iterations": int(sys.argv[2])}, eval={"every": 100, "at_start": False})
    run_toy(Path(sys.argv[1]), config, resume="--resume" in sys.argv, judge_delay=0.01, handle_signals=True)


@pytest.mark.parametrize("path", sorted((REPO / "configs").glob("*.yaml")), ids=lambda p: p.stem)
def test_every_shipped_config_loads_and_its_parts_validate(path: Path):
    """A shipped config must be usable as written: its own keys, and the settings it hands
    to the policy and to GRPO, checked by their owners' closed configs."""
    from deskdojo.agent.policy import PolicyConfig
    from deskdojo.agent.train.grpo import GRPOConfig

    config = load_config(path)
    policy = PolicyConfig.from_dict(config.policy_settings())
    grpo = GRPOConfig.from_dict({"max_new_tokens": policy.max_new_tokens, **config.grpo_settings()})
    assert grpo.group_size == config.group_size and policy.lora is not None
