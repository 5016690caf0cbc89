"""The learning path end to end: the tiny VLM acts in a real xvfb sandbox (windows of two
screens, some actions refused by the sandbox), the episodes go to a run folder, and GRPO
trains on them read back from disk. On the first epoch the policy has not moved, so every
token's ratio to its stored sampling log-prob must be 1: the prompt that is trained is
the prompt that acted."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any, Sequence

import pytest

from deskdojo.core.actions import Click, describe
from deskdojo.core.protocols import Decision
from deskdojo.core.rundir import RunDir, read_trajectory
from deskdojo.core.types import Split, Trajectory, Verdict

pytestmark = [pytest.mark.display,
              pytest.mark.timeout(900)]  # about 1 min on an idle 2-core machine; far longer when it is shared

EPISODES = 3
STEPS = 2


class RefusedEveryOtherStep:
    """The tiny VLM, except that on even steps its parsed action becomes a click far off
    the screen, which the sandbox refuses (its tokens and log-probs stay the model's: the
    action is what the next prompt's history and error line describe)."""

    def __init__(self, policy: Any):
        self.policy = policy
        self.policy_id = policy.policy_id
        self.history_k = policy.history_k
        self.observation = policy.observation
        self.set_greedy, self.rng_state, self.set_rng_state = policy.set_greedy, policy.rng_state, policy.set_rng_state

    def act(self, observations: Sequence[Any], tasks: Sequence[Any], histories: Sequence[Any]) -> list[Decision]:
        decisions = self.policy.act(observations, tasks, histories)
        return [dataclasses.replace(d, action=Click(20_000, 5), parse_error=None) if len(h) % 2 == 0 else d
                for d, h in zip(decisions, histories)]


def test_epoch_one_ratio_is_one_on_every_step_after_refusals_with_two_screen_windows(box, tmp_path: Path):
    import torch

    from deskdojo.agent.policy import LoraSettings, PolicyConfig, load_policy
    from deskdojo.agent.rollout import RolloutConfig, rollout
    from deskdojo.agent.train.grpo import build_samples
    from deskdojo.curriculum.families import all_families
    from deskdojo.evolve.learner import StepPrompts, vlm_learner

    policy = load_policy("tiny-scratch", PolicyConfig(history_k=2, max_new_tokens=8, temperature=0.7, seed=3,
                                              lora=LoraSettings(r=4, alpha=8)))
    task = all_families()["click_button"].generate(0, 0, Split.TRAIN)
    run = RunDir.create(tmp_path / "run", {"test": "learning path"})
    acting = RefusedEveryOtherStep(policy)
    for _ in range(EPISODES):
        rollout(acting, [task], [box], run, config=RolloutConfig(max_steps=STEPS))

    # everything below reads the run folder, as the learner does
    trajectories = [read_trajectory(run.path / "trajectories" / tid) for tid in run.trajectory_ids()]
    assert len(trajectories) == EPISODES and all(len(t.steps) == STEPS for t in trajectories)
    for trajectory in trajectories:
        refused, after = trajectory.steps[0], trajectory.steps[1]
        assert refused.action == Click(20_000, 5) and "off the" in refused.action_error
        # what the policy saw next: the sandbox's line, which is not the step's own record
        assert after.prompt.error == f"{describe(refused.action)}: {refused.action_error}"
        assert after.prompt.window == (refused.frame, after.frame) and after.prompt.temperature == 0.7
        assert trajectory.steps[0].prompt.window == (refused.frame,)
    verdicts = [Verdict(task_id=task.id, trajectory_id=t.id, success=i == 0, score=float(i == 0), judge_id="test")
                for i, t in enumerate(trajectories)]
    learner = vlm_learner(policy, {"group_size": EPISODES, "epochs": 1, "kl_beta": 0.0, "neg_imitation_weight": 0.0,
                                   "micro_batch_size": 4, "lr": 1e-3}, run.path / "trajectories")
    trainer = learner.trainer
    group = [(task, t, v) for t, v in zip(trajectories, verdicts)]

    # the control: rebuilt the old way (previous step's own error, no record), the prompts differ
    prompts = StepPrompts(run.path / "trajectories", policy.history_k)
    stripped = [(task, Trajectory(id=t.id, task_id=t.task_id, end=t.end, policy_id=t.policy_id,
                                  steps=tuple(dataclasses.replace(s, prompt=None) for s in t.steps)), v)
                for _, t, v in group]
    old_way = build_samples([stripped], trainer.config).samples
    with torch.no_grad():
        logp, mask = prompts.logprobs(policy, old_way)
    old_gap = max(float((logp[i, :len(s.token_ids)] - torch.tensor(s.old_logprobs)).abs().max())
                  for i, s in enumerate(old_way))
    assert old_gap > 1e-2, old_gap

    scored: list[tuple[Any, Any]] = []
    score = trainer.policy_logprobs

    def spy(samples: Sequence[Any]) -> tuple[Any, Any]:
        logp, mask = score(samples)
        scored.append((list(samples), logp.detach().clone()))
        return logp, mask

    trainer.policy_logprobs = spy
    stats = learner.update([group]).stats
    assert not stats.skipped and stats.samples == EPISODES * STEPS - sum(
        1 for t in trajectories for s in t.steps if not s.token_ids)
    assert stats.ratio_mean == pytest.approx(1.0, abs=1e-4) and stats.clip_fraction == 0
    checked = 0
    for samples, logp in scored:
        for i, sample in enumerate(samples):
            n = len(sample.token_ids)
            ratio = torch.exp(logp[i, :n] - torch.tensor(sample.old_logprobs))
            assert torch.allclose(ratio, torch.ones(n), atol=1e-4), (sample.trajectory.id, sample.step_index, ratio)
            checked += 1
    assert checked == stats.samples
