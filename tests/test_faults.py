"""Fault tests: `docker kill` of sandboxes in the middle of a real evolve run. A sandbox that
dies is an infrastructure error, never a scored failure: its episode ends as ``error``
(whether the rollout or the judge finds the corpse), gets no verdict, is in no GRPO group,
is counted in metrics.jsonl, and the run completes with the dead sandboxes replaced."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest

from deskdojo.core.actions import Click
from deskdojo.core.rundir import JsonlFile, RunDir
from deskdojo.core.types import Task

from test_evolve import GOOD_ARM, Bandit, arm_x, toy_config, toy_tasks  # noqa: E402

pytestmark = pytest.mark.docker

SCREEN = (320, 240)
CLICKS = 2  # then done: 3 steps, so a death after step 0 or after step 1 is found differently


class ClickTwice(Bandit):
    """The toy bandit, but two clicks before ``done``: a kill after the first click is found
    by the rollout (the second click fails); a kill after the second only by the judge
    (``done`` touches no sandbox)."""

    clicks = CLICKS


class ArmStateJudge:
    """The real state judge (it settles and probes the sandbox, so a dead one raises), with
    the toy's success rule on top: the first click hit the good arm."""

    judge_id = "arm+state"

    def __init__(self) -> None:
        from deskdojo.world_model.judge import StateJudge

        self.state = StateJudge(settle_timeout=1.0, quiet=0.1)

    def judge(self, task: Task, trajectory: Any, sandbox: Any) -> Any:
        import dataclasses

        verdict = self.state.judge(task, trajectory, sandbox)
        first = trajectory.steps[0].action if trajectory.steps else None
        success = isinstance(first, Click) and first.x == arm_x(GOOD_ARM)
        return dataclasses.replace(verdict, success=success, score=float(success), judge_id=self.judge_id)


def recording_learner(policy: Any, trainer: Any, seen: list[str]) -> Any:
    """The real GRPO learner, noting which trajectories each update's groups hold."""
    from deskdojo.evolve.parts import GRPOLearner

    class Recording(GRPOLearner):
        def update(self, groups: Any) -> Any:
            seen.extend(trajectory.id for group in groups for _, trajectory, _ in group)
            return super().update(groups)

    return Recording(policy, trainer, module=policy.model)


def _ours(pool_id: str) -> list[str]:
    listed = subprocess.run(["docker", "ps", "-a", "--filter", "label=deskdojo=1", "--filter",
                             f"name=dojo-{pool_id}-", "--format", "{{.Names}}"],
                            capture_output=True, text=True, timeout=30, check=True)
    return listed.stdout.split()


def test_docker_kill_mid_iteration_is_an_error_episode_counted_in_metrics(tmp_path: Path):
    from deskdojo.agent.rollout import RolloutConfig, rollout
    from deskdojo.agent.train.grpo import GRPOConfig, GRPOTrainer
    from deskdojo.core.fakes import ListTaskSource
    from deskdojo.evolve.loop import Evolver
    from deskdojo.evolve.parts import Parts, SourcePlan
    from deskdojo.evolve.run import open_or_create_run
    from deskdojo.vm.config import SandboxConfig
    from deskdojo.vm.pool import SandboxPool

    config = toy_config(provider="docker", sandboxes=2, group_size=2, tasks_per_iteration=1,
                        budget={"iterations": 3}, eval={"every": 100, "at_start": False},
                        sandbox={"screen": list(SCREEN)})
    run_dir = tmp_path / "run"
    run = open_or_create_run(run_dir, config, resume=False, force=False)
    policy = ClickTwice(seed=config.seed)
    trainer = GRPOTrainer(GRPOConfig.from_dict(config.grpo_settings()), policy.token_logprobs,
                          policy.model.parameters())
    pool = SandboxPool(SandboxConfig(provider="docker", screen=SCREEN), 2)
    # (iteration's trajectory prefix, slot, after step) -> killed: one death each way
    kills = {("it00002", 0, 0): "rollout", ("it00003", 1, 1): "judge"}
    killed: dict[str, str] = {}
    trained: list[str] = []

    def rollout_with_kills(policy: Any, tasks: Any, sandboxes: Any, writers: Any, *, on_step: Any = None,
                           **kwargs: Any) -> Any:
        def on_step_and_kill(slot: int, task: Task, step: Any) -> None:
            iteration = f"it{evolver.cursor.iteration + 1:05d}"
            if (iteration, slot, step.index) in kills:
                sandboxes[slot].kill()  # `docker kill`, as a crash would
                killed[f"{iteration}-t00-g{slot:02d}"] = kills[(iteration, slot, step.index)]
            if on_step is not None:
                on_step(slot, task, step)

        return rollout(policy, tasks, sandboxes, writers, on_step=on_step_and_kill, **kwargs)

    try:
        pool.start()
        parts = Parts(learner=recording_learner(policy, trainer, trained), judge=ArmStateJudge(),
                      plan=SourcePlan(ListTaskSource(toy_tasks()), heldout=toy_tasks(2)), pool=pool,
                      rollout=rollout_with_kills, rollout_config=RolloutConfig(max_steps=CLICKS + 1))
        evolver = Evolver(config, run, parts, handle_signals=False)
        result = evolver.run_loop()
    finally:
        pool.close()
    assert _ours(pool.pool_id) == []  # every container of the run is gone, the replacements too

    assert result.state == "finished" and result.iterations == 3
    assert killed == {"it00002-t00-g00": "rollout", "it00003-t00-g01": "judge"} and pool.replaced == 2
    headers = {p.name: json.loads((p / "trajectory.json").read_text())
               for p in (run_dir / "trajectories").iterdir()}
    errors = {tid: h["error"] for tid, h in headers.items() if h["end"] == "error"}
    assert set(errors) == set(killed)
    assert "sandbox failed at step 1" in errors["it00002-t00-g00"] and "died" in errors["it00002-t00-g00"]
    assert "while the episode was judged" in errors["it00003-t00-g01"] and "died" in errors["it00003-t00-g01"]
    assert all(h["error"] is None and h["end"] == "done" for tid, h in headers.items() if tid not in killed)

    verdicts = {v["trajectory_id"] for v in JsonlFile(run_dir / "verdicts.jsonl").read()}
    assert verdicts == set(headers) - set(killed)  # an error episode is never scored
    assert sorted(trained) == sorted(t for t in set(headers) - set(killed) if t.startswith("it"))  # no group
    metrics = list(JsonlFile(run_dir / "metrics.jsonl").read())
    assert [m["errors"] for m in metrics] == [0, 1, 1]
    steps = {tid: len((run_dir / "trajectories" / tid / "steps.jsonl").read_text().splitlines())
             for tid in headers}
    assert steps["it00002-t00-g00"] == 1 and steps["it00003-t00-g01"] == CLICKS + 1
    assert metrics[-1]["env_steps"] == sum(n for t, n in steps.items() if t.startswith("it"))  # steps taken
    cursor = json.loads((RunDir.open(run_dir).latest_checkpoint() / "cursor.json").read_text())
    assert sorted(cursor["trajectory_ids"]) == sorted(headers)  # each kept once, none lost
