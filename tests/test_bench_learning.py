"""`deskdojo bench learning` on fakes: the four arms from one SFT start, skipping finished
arms, resuming killed ones, (d)'s CPU matching, and the bootstrap intervals.

The real tiny VLM trains and acts (SFT start, GRPO, more SFT); the sandboxes are the fake
provider's and the judge is a fake, since the fake provider runs no practice apps. The
real path (xvfb sandboxes, oracle demos, the state judge) is test_cli's display test."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from deskdojo.core.fakes import ListTaskSource
from deskdojo.core.rundir import JsonlFile, RunDir
from deskdojo.core.types import Split, Task, Trajectory, Verdict
from deskdojo.evolve.bench import MORE_SFT_SEED_BASE, Backend, run_learning_bench
from deskdojo.evolve.bench_report import ARMS, bootstrap_ci, median_difference

SCREEN = (160, 120)
MODEL = "tiny-scratch"


class TokenJudge:
    """Success when the first generated token id is even: outcomes that differ by task."""

    judge_id = "token"

    def __init__(self, kill_at: str | None = None):
        self.kill_at = kill_at

    def judge(self, task: Task, trajectory: Trajectory, sandbox: Any) -> Verdict:
        if self.kill_at is not None and trajectory.id.startswith(self.kill_at):
            raise KeyboardInterrupt("killed by the test")
        tokens = trajectory.steps[0].token_ids if trajectory.steps else ()
        success = bool(tokens) and tokens[0] % 2 == 0
        return Verdict(task_id=task.id, trajectory_id=trajectory.id, success=success,
                       score=float(success), judge_id=self.judge_id)


def toy_tasks(split: Split) -> list[Task]:
    base = 1_000_000 if split is Split.HELDOUT else 0
    return [Task(id=f"toy-{split.value}-{family}-{level}-{i}", instruction=f"click target {family} {level} {i}",
                 family=family, level=level, seed=base + 10 * level + i, split=split, max_steps=1)
            for family in ("alpha", "beta") for level in (0, 1) for i in range(2)]


class FakeBackend:
    """The bench's Backend on fakes, counting what it is asked to do."""

    def __init__(self, *, kill_arm: str | None = None, kill_iteration: int = 2, fail_chunk: int | None = None):
        self.calls: list[tuple[str, str]] = []
        self.kill_arm, self.kill_iteration, self.fail_chunk = kill_arm, kill_iteration, fail_chunk

    def backend(self) -> Backend:
        return Backend(train_start=self.train_start, build_parts=self.build_parts, open_pool=self.open_pool,
                       record_demos=self.record_demos)

    def train_start(self, config: Any, folder: Path, *, provider: str, log: Any) -> None:
        from deskdojo.agent.train.sft import SFTConfig, make_click_target_demos, sft

        self.calls.append(("start", str(folder)))
        demos = make_click_target_demos(folder / "demos", 2, seed=config.seed, screen=SCREEN)
        sft(SFTConfig(demos=str(demos), model=MODEL, out=str(folder / "sft"), steps=1, batch_size=2,
                      warmup_steps=1, seed=config.seed), log=log)

    def build_parts(self, config: Any, run: RunDir, *, log: Any, provider: str, **_: Any) -> Any:
        from deskdojo.agent.policy import load_policy
        from deskdojo.agent.rollout import RolloutConfig, rollout
        from deskdojo.evolve.build import policy_config
        from deskdojo.evolve.learner import vlm_learner
        from deskdojo.evolve.parts import Parts, SourcePlan
        from deskdojo.vm.config import SandboxConfig
        from deskdojo.vm.pool import SandboxPool

        self.calls.append(("parts", run.path.name))
        policy = load_policy(str(run.path / "sft" / "policy"), policy_config(config))
        learner = vlm_learner(policy, config.grpo_settings(), run.path / "trajectories", log=log)
        kill = f"it{self.kill_iteration:05d}" if run.path.name == self.kill_arm else None
        pool = SandboxPool(SandboxConfig(provider="fake", screen=SCREEN), config.sandboxes).start()
        return Parts(learner=learner, judge=TokenJudge(kill), pool=pool, rollout=rollout,
                     plan=SourcePlan(ListTaskSource(toy_tasks(Split.TRAIN)), heldout=toy_tasks(Split.HELDOUT)),
                     rollout_config=RolloutConfig(max_steps=1))

    def open_pool(self, config: Any, provider: str) -> Any:
        from deskdojo.vm.config import SandboxConfig
        from deskdojo.vm.pool import SandboxPool

        return SandboxPool(SandboxConfig(provider="fake", screen=SCREEN), 1).start()

    def record_demos(self, tasks: list[Task], sandboxes: list[Any], folder: Path) -> None:
        from deskdojo.agent.train.sft import make_click_target_demos

        chunk = (tasks[0].seed - MORE_SFT_SEED_BASE) // len(tasks)
        self.calls.append(("record", str(chunk)))
        if chunk == self.fail_chunk:
            raise KeyboardInterrupt("killed by the test while recording")
        for task in tasks:  # the fake provider runs no oracle: synthetic one-click demos instead
            make_click_target_demos(folder, 1, seed=0, start=task.seed - MORE_SFT_SEED_BASE, screen=SCREEN)


def bench(tmp_path: Path, fake: FakeBackend) -> dict[str, Any]:
    config = tmp_path / "bench.yaml"
    config.write_text(yaml.safe_dump({
        "model": MODEL, "sandboxes": 2, "group_size": 2, "tasks_per_iteration": 1, "max_steps": 1,
        "policy": {"max_new_tokens": 3, "lora": {"r": 2, "alpha": 4}}, "sandbox": {"screen": list(SCREEN)},
        "grpo": {"lr": 1e-2, "neg_imitation_weight": 0.0, "normaliser": "global"}, "eval": {"every": 50},
        "sft": {"families": ["click_button"], "steps": 1, "options": {"batch_size": 2, "warmup_steps": 1}},
        "curriculum": {"families": ["click_button"], "admission": False}}))
    return run_learning_bench(seeds=1, env_steps=4, heldout_per_level=2, levels=(0, 1), provider="fake",
                              config_path=str(config), runs_root=str(tmp_path / "bench"), chunk_demos=1,
                              chunk_steps=1, resamples=500, command="deskdojo bench learning (test)",
                              backend=fake.backend(), log=lambda text: None)


def result_mtimes(root: Path) -> dict[str, float]:
    return {str(p.relative_to(root)): p.stat().st_mtime_ns for p in root.rglob("result.json")}


def test_four_arms_then_a_second_call_skips_them_all(tmp_path: Path):
    fake = FakeBackend()
    report = bench(tmp_path, fake)
    root = tmp_path / "bench"
    seed = root / "seed0"
    for arm in ("sft-start", "curriculum", "uniform", "more-sft"):
        assert (seed / arm / "result.json").exists(), arm
    # one SFT start, referenced by every arm
    assert [c for c in fake.calls if c[0] == "start"] == [("start", str(seed / "sft-start"))]
    assert [c[1] for c in fake.calls if c[0] == "parts"] == ["curriculum", "uniform", "more-sft"]
    assert not any((seed / "curriculum" / "demos").iterdir())

    entry = report["per_seed"][0]["arms"]
    for name in ARMS:
        arm = entry[name]
        assert arm["tasks"] == 8 and arm["ci"][0] <= arm["success"] <= arm["ci"][1], name
        assert set(arm["outcomes"]) == {t.id for t in toy_tasks(Split.HELDOUT)}
        assert set(arm["by_family"]) == {"alpha", "beta"}
    # (a) is (b)'s evaluation before its first iteration
    first = next(iter(JsonlFile(seed / "curriculum" / "heldout.jsonl").read()))
    assert first["iteration"] == 0 and entry["sft_only"]["success"] == first["success"]
    assert entry["curriculum"]["env_steps"] >= 4 and entry["uniform"]["env_steps"] >= 4
    assert entry["curriculum"]["diagnostics"][0].keys() >= {"train_success", "signal_share", "replayed", "kl",
                                                            "entropy", "promotions", "demotions"}

    # (d): the loop's own evaluation record, after chunks that stop once (b)'s CPU is reached
    d = json.loads((seed / "more-sft" / "result.json").read_text())
    (record,) = JsonlFile(seed / "more-sft" / "heldout.jsonl").read()
    assert record["iteration"] == 0 and len(record["outcomes"]) == 8
    target = json.loads((seed / "curriculum" / "result.json").read_text())["cpu_s"]
    assert d["target_cpu_s"] == target and d["cpu_s"] >= target
    assert all(cpu < target for cpu in d["cpu_by_chunk"][:-1]) and d["cpu_by_chunk"][-1] >= target
    assert d["sft_steps"] == d["chunks"] and d["demos"] == d["chunks"]  # 1 step and 1 demo per chunk
    assert [c for c in fake.calls if c[0] == "record"] == [("record", str(k)) for k in range(d["chunks"])]
    assert (seed / "more-sft" / "sft" / "policy" / "deskdojo_policy.json").exists()

    summary = report["summary"]
    for key in ("seeds", "curriculum_minus_sft_pp", "curriculum_minus_sft_ci_pp", "curriculum_minus_more_sft_pp",
                "curriculum_minus_uniform_pp", "curriculum_steps_to_uniform_final", "cells_zero_to_over_half"):
        assert key in summary, key
    low, high = summary["curriculum_minus_sft_ci_pp"]
    assert summary["seeds"] == 1 and low <= summary["curriculum_minus_sft_pp"] <= high
    written = json.loads((root / "bench_learning.json").read_text())
    assert written["command"] == "deskdojo bench learning (test)" and "git_commit" in written
    assert written["heldout"]["warning"]  # 8 tasks over 1 family is under a reviewer's minimum: said
    for png in report["plots"].values():
        assert Path(png).read_bytes()[:4] == b"\x89PNG"

    before = result_mtimes(root)
    again = FakeBackend()
    report2 = bench(tmp_path, again)
    assert again.calls == []  # nothing trained, built or recorded again
    assert result_mtimes(root) == before
    assert report2["summary"] == report["summary"]


def test_killed_arms_resume_from_their_checkpoints(tmp_path: Path):
    root = tmp_path / "bench"
    seed = root / "seed0"
    with pytest.raises(KeyboardInterrupt):  # (c) dies in its second iteration
        bench(tmp_path, FakeBackend(kill_arm="uniform"))
    assert (seed / "curriculum" / "result.json").exists() and not (seed / "uniform" / "result.json").exists()
    assert [m["iteration"] for m in JsonlFile(seed / "uniform" / "metrics.jsonl").read()] == [1]

    with pytest.raises(KeyboardInterrupt):  # (c) finishes; (d) dies recording its second chunk
        bench(tmp_path, second := FakeBackend(fail_chunk=1))
    assert [c[1] for c in second.calls if c[0] == "parts"] == ["uniform"]  # (b) skipped, (c) resumed
    cursor = json.loads((RunDir.open(seed / "uniform").latest_checkpoint() / "cursor.json").read_text())
    assert cursor["resumes"] == 1 and cursor["iteration"] == 2
    assert [m["iteration"] for m in JsonlFile(seed / "uniform" / "metrics.jsonl").read()] == [1, 2]
    state = json.loads((seed / "more-sft" / "more_sft.json").read_text())
    assert state["trained"] == 1 and not (seed / "more-sft" / "result.json").exists()

    third = FakeBackend()
    report = bench(tmp_path, third)
    recorded = [int(c[1]) for c in third.calls if c[0] == "record"]
    assert recorded[0] == 1  # chunk 0 is kept; the chunk cut short is recorded again
    state = json.loads((seed / "more-sft" / "more_sft.json").read_text())
    assert [c["sft_steps"] for c in state["chunks"]] == list(range(1, state["trained"] + 1))
    assert len(list((seed / "more-sft" / "demos").glob("c0000-*"))) == 1  # no duplicates
    assert report["per_seed"][0]["arms"]["more_sft"]["success"] is not None


def test_bootstrap_intervals():
    outcomes = [1.0] * 30 + [0.0] * 66
    low, high = bootstrap_ci(outcomes, resamples=2000, seed=0)
    assert low < 30 / 96 < high and high - low < 0.25
    assert bootstrap_ci(outcomes, resamples=2000, seed=0) == (low, high)  # a fixed seed: reproducible
    assert bootstrap_ci([1.0] * 20) == (1.0, 1.0) and bootstrap_ci([0.0] * 20) == (0.0, 0.0)
    assert bootstrap_ci([]) is None

    tasks = [f"t{i}" for i in range(40)]
    a = {t: i % 4 == 0 for i, t in enumerate(tasks)}  # 25%
    b = {t: i % 4 != 3 for i, t in enumerate(tasks)}  # 75%
    figure = median_difference([(a, b), (a, a), (a, b)], resamples=2000)
    assert figure["pp"] == 50.0 and figure["ci_pp"][0] <= 50.0 <= figure["ci_pp"][1] and figure["ci_pp"][0] > 0
    same = median_difference([(a, a)] * 3)
    assert same == {"pp": 0.0, "ci_pp": [0.0, 0.0], "tasks": 40, "seeds": 3}


def test_a_bench_started_before_a_setting_existed_still_resumes(tmp_path: Path):
    """The stored spec lacks a config section added later (``judge``); with the default it
    is the same experiment, and another value is refused."""
    import json

    from deskdojo.core.errors import ConfigError
    from deskdojo.evolve.bench import SPEC, _check_spec, bench_config

    def spec(**overrides):
        config = bench_config(None, seed=0, sampling="curriculum", provider="xvfb", env_steps=40,
                              heldout_per_level=1, levels=(0,), families=None, sandboxes=None)
        return {"config": {**config.to_dict(), **overrides, "seed": None}, "more_sft": {"chunk_demos": 1}}

    old = spec()
    del old["config"]["judge"]
    (tmp_path / SPEC).write_text(json.dumps(old))
    _check_spec(tmp_path, spec())
    with pytest.raises(ConfigError, match="judge.kind"):
        _check_spec(tmp_path, spec(judge={"kind": "hybrid", "model": "tiny", "mode": "fallback", "vlm": {}}))
