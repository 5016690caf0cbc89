"""GRPO: the loss against hand-computed values for each option, sample building
(error exclusion, zero-variance drop, success replay), and a toy policy whose
preferred action rises under repeated updates."""

from __future__ import annotations

import copy
import json
import math

import pytest
import torch

from deskdojo.agent.train.grpo import (
    GRPOConfig, GRPOTrainer, GRPOSample, LossStats, SuccessReplay, build_samples, group_advantages,
    grpo_loss, loss_normaliser, trajectory_reward)
from deskdojo.core.actions import Wait
from deskdojo.core.errors import ConfigError, RecordError
from deskdojo.core.types import EndReason, Step, StepLabel, Task, Trajectory, Verdict


# --- builders ----------------------------------------------------------------------


def make_task(task_id: str = "t0", seed: int = 0) -> Task:
    return Task(id=task_id, instruction="do it", family="toy", seed=seed)


def make_rollout(task: Task, traj_id: str, steps: list[tuple[tuple[int, ...], tuple[float, ...]]], *,
                 success: bool, score: float | None = None, end: EndReason = EndReason.DONE,
                 first_error_step: int | None = None, labels: tuple[StepLabel, ...] = (),
                 invalid: frozenset[int] = frozenset()):
    trajectory = Trajectory(
        id=traj_id, task_id=task.id, end=end,
        steps=tuple(Step(index=i, action=None if i in invalid else Wait(), token_ids=ids, logprobs=lps)
                    for i, (ids, lps) in enumerate(steps)))
    verdict = Verdict(task_id=task.id, trajectory_id=traj_id, success=success,
                      score=float(success) if score is None else score, judge_id="test",
                      step_labels=labels, first_error_step=first_error_step)
    return task, trajectory, verdict


ONE_STEP = [((1, 2), (-0.5, -0.7))]
NO_SHAPING = dict(invalid_step_penalty=0.0, no_op_penalty=0.0)


# --- config, rewards, advantages ------------------------------------------------------


def test_config_is_closed_and_validated():
    with pytest.raises(ConfigError, match="clip_hi"):
        GRPOConfig.from_dict({"clip_hi": 0.3})
    with pytest.raises(ConfigError, match="normaliser"):
        GRPOConfig(normaliser="per-sequence")
    with pytest.raises(ConfigError, match="ratio_cap"):
        GRPOConfig(ratio_cap=1.1)
    assert GRPOConfig.from_dict({"kl_beta": 0.05}).kl_beta == 0.05


def test_reward_is_outcome_minus_step_shaping():
    task = make_task()
    steps = [((1,), (-0.1,))] * 4
    labels = (StepLabel.PROGRESS, StepLabel.NO_OP, StepLabel.NO_OP, StepLabel.ERROR)
    _, trajectory, verdict = make_rollout(task, "a", steps, success=False, score=0.5, labels=labels,
                                          invalid=frozenset({2}))
    config = GRPOConfig(invalid_step_penalty=0.1, no_op_penalty=0.02)
    # one invalid step (index 2, whose no-op label is not charged again), one valid no-op
    assert trajectory_reward(trajectory, verdict, config) == pytest.approx(0.5 - 0.1 - 0.02)
    assert trajectory_reward(trajectory, verdict, config.replace(reward="success")) == pytest.approx(-0.12)
    assert trajectory_reward(trajectory, verdict, config.replace(**NO_SHAPING)) == 0.5


def test_grounding_credit_is_added_with_its_weight_and_gives_all_fail_groups_a_direction():
    import dataclasses

    task = make_task()
    rollouts = [make_rollout(task, f"g{i}", ONE_STEP, success=False) for i in range(3)]
    groundings = (0.8, 0.2, None)  # None: the verdict had no targets, counted as 0
    group = [(t, traj, dataclasses.replace(v, grounding=g)) for (t, traj, v), g in zip(rollouts, groundings)]
    config = GRPOConfig(**NO_SHAPING, grounding_weight=0.5, success_replay=False)
    assert [trajectory_reward(traj, v, config) for _, traj, v in group] == pytest.approx([0.4, 0.1, 0.0])
    batch = build_samples([group], config, None)
    # mean reward 0.5/3: the nearest miss is pushed up, the others down
    assert [s.advantage for s in batch.samples] == pytest.approx([0.4 - 0.5 / 3, 0.1 - 0.5 / 3, -0.5 / 3])
    assert batch.counts()["groups_used"] == 1
    # weight 0 (the default): the same group carries no signal and is dropped
    assert build_samples([group], config.replace(grounding_weight=0.0), None).counts()["groups_used"] == 0
    with pytest.raises(ConfigError, match="grounding_weight"):
        GRPOConfig(grounding_weight=-1)


def test_advantages_mean_centred_and_std_scaled():
    assert group_advantages([1.0, 0.0, 0.0, 0.0]) == pytest.approx([0.75, -0.25, -0.25, -0.25])
    # population std of (0.75, -0.25, -0.25, -0.25) is sqrt(0.1875) = sqrt(3)/4
    assert group_advantages([1.0, 0.0, 0.0, 0.0], scale_std=True) == pytest.approx(
        [math.sqrt(3), -1 / math.sqrt(3), -1 / math.sqrt(3), -1 / math.sqrt(3)])
    assert group_advantages([0.0, 0.0, 0.0]) is None
    assert group_advantages([1.0]) is None


# --- the loss, hand-computed -------------------------------------------------------------


def leaf(values) -> torch.Tensor:
    return torch.tensor(values, dtype=torch.float32).log().requires_grad_(True)


def test_clip_low_and_high_both_active():
    # ratios: [[1.5, 1.1], [0.5, 0.9]]; A = [+1, -1]; clip window [0.8, 1.28]
    logp = leaf([[0.6, 0.55], [0.2, 0.45]])
    old = torch.tensor([[0.4, 0.5], [0.4, 0.5]]).log()
    mask = torch.ones(2, 2)
    config = GRPOConfig(clip_low=0.2, clip_high=0.28)
    loss, stats = grpo_loss(logp, old, mask, torch.tensor([1.0, -1.0]), config=config, normaliser=4.0)
    # tokens: -min(1.5, 1.28) = -1.28 ; -1.1 ; -min(-0.5, -0.8) = 0.8 ; -min(-0.9, -0.9) = 0.9
    assert float(loss.detach()) == pytest.approx((-1.28 - 1.1 + 0.8 + 0.9) / 4)
    loss.backward()
    # clipped tokens get no gradient; the others get -ratio * A / normaliser
    assert logp.grad.flatten().tolist() == pytest.approx([0.0, -1.1 / 4, 0.0, 0.9 / 4])
    summary = stats.as_dict()
    assert (stats.clipped_high, stats.clipped_low, stats.tokens) == (1, 1, 4)
    assert summary["clip_fraction"] == 0.5
    assert summary["ratio_mean"] == pytest.approx(1.0)
    assert summary["entropy_estimate"] == pytest.approx(-math.log(0.6 * 0.55 * 0.2 * 0.45) / 4)


def test_ratio_cap_truncates_the_importance_weight_for_negative_advantages():
    old = torch.tensor([[0.1]]).log()
    for cap, expected in ((3.0, 3.0), (0.0, 4.0)):  # ratio 4, A = -1
        logp = leaf([[0.4]])
        loss, stats = grpo_loss(logp, old, torch.ones(1, 1), torch.tensor([-1.0]),
                                config=GRPOConfig(ratio_cap=cap), normaliser=1.0)
        loss.backward()
        assert float(loss.detach()) == pytest.approx(expected)
        assert float(logp.grad.sum()) == pytest.approx(expected)  # gradient weight min(ratio, cap) * -A
        assert stats.capped == (1 if cap else 0)


def test_constant_and_global_normalisers():
    logp = leaf([[0.5, 0.5, 0.5], [0.5, 0.5, 0.5]])
    old = logp.detach().clone()  # ratio 1 everywhere -> token loss = -A
    mask = torch.tensor([[1.0, 1.0, 1.0], [1.0, 0.0, 0.0]])
    advantages = torch.tensor([1.0, -0.5])
    token_sum = -(3 * 1.0) + 0.5  # -2.5
    loss, _ = grpo_loss(logp, old, mask, advantages, config=GRPOConfig(), normaliser=4.0)
    assert float(loss.detach()) == pytest.approx(token_sum / 4)  # global: 4 tokens, not a per-sequence mean
    loss, _ = grpo_loss(logp, old, mask, advantages, config=GRPOConfig(), normaliser=64 * 8)
    assert float(loss.detach()) == pytest.approx(token_sum / 512)

    task = make_task()
    _, trajectory, _ = make_rollout(task, "a", ONE_STEP, success=True)
    def sample(n: int, pg: bool) -> GRPOSample:
        return GRPOSample(task=task, trajectory=trajectory, step_index=0, token_ids=(1,) * n,
                            old_logprobs=(-1.0,) * n, advantage=0.0, policy_gradient=pg,
                            negative_imitation=not pg)
    samples = [sample(3, True), sample(1, True), sample(5, False)]
    assert loss_normaliser(GRPOConfig(normaliser="global"), samples) == 4.0  # imitation-only tokens excluded
    # constant: max_new_tokens x policy-gradient samples, whatever the group size
    assert loss_normaliser(GRPOConfig(normaliser="constant", max_new_tokens=5, group_size=8), samples) == 10.0


def test_k3_kl_to_the_reference():
    logp = leaf([[0.5]])
    ref = torch.tensor([[0.25]]).log()
    config = GRPOConfig(kl_beta=0.5)
    loss, stats = grpo_loss(logp, logp.detach(), torch.ones(1, 1), torch.tensor([0.0]), config=config,
                            normaliser=1.0, ref_logp=ref)
    # d = ref - logp = ln 0.5 ; k3 = e^d - d - 1 = 0.5 + ln 2 - 1
    k3 = 0.5 + math.log(2) - 1
    assert float(loss.detach()) == pytest.approx(0.5 * k3)
    assert stats.as_dict()["kl"] == pytest.approx(k3)
    # no reference, no KL: absent, not a 0 that reads as "the policy has not moved"
    assert "kl" not in LossStats(tokens=3).as_dict() and LossStats(tokens=3).as_dict()["kl_tokens"] == 0
    loss.backward()
    assert float(logp.grad.sum()) == pytest.approx(0.5 * (1 - 0.5))  # beta * (1 - e^d)
    with pytest.raises(ConfigError, match="ref_logp"):
        grpo_loss(logp, logp.detach(), torch.ones(1, 1), torch.tensor([0.0]), config=config, normaliser=1.0)


def test_negative_imitation_on_marked_samples():
    # row 0 marked, not in the policy gradient; sequence log-ratio = ln(1.2) + ln(0.8) = ln(0.96)
    logp = leaf([[0.3, 0.2], [0.9, 0.9]])
    ref = torch.tensor([[0.25, 0.25], [0.1, 0.1]]).log()
    config = GRPOConfig(neg_imitation_weight=0.2)
    common = dict(config=config, normaliser=1.0, ref_logp=ref, policy_gradient=torch.tensor([False, True]),
                  negative_imitation=torch.tensor([True, False]))
    loss, stats = grpo_loss(logp, logp.detach(), torch.ones(2, 2), torch.tensor([0.0, 0.0]), **common)
    # -log sigmoid(-d) = log(1 + e^d) = log(1.96)
    assert float(loss.detach()) == pytest.approx(0.2 * math.log(1.96))
    assert stats.neg_imitation_loss == pytest.approx(math.log(1.96))
    loss.backward()
    assert logp.grad[0].tolist() == pytest.approx([0.2 * 0.96 / 1.96] * 2)  # pushes the error's logp down
    assert logp.grad[1].tolist() == [0.0, 0.0]
    loss, _ = grpo_loss(logp, logp.detach(), torch.ones(2, 2), torch.tensor([0.0, 0.0]),
                        negative_imitation_count=2, **common)  # the batch had two marked samples
    assert float(loss.detach()) == pytest.approx(0.1 * math.log(1.96))


# --- building samples from judged groups ---------------------------------------------


def test_error_trajectories_are_excluded_from_groups():
    task = make_task()
    group = [make_rollout(task, "ok", ONE_STEP, success=True),
             make_rollout(task, "bad", ONE_STEP, success=False),
             make_rollout(task, "crash", ONE_STEP, success=True, end=EndReason.ERROR)]
    batch = build_samples([group], GRPOConfig(**NO_SHAPING, neg_imitation_weight=0), None)
    assert {s.trajectory.id: s.advantage for s in batch.samples} == {"ok": 0.5, "bad": -0.5}
    counts = batch.counts()
    assert counts["trajectories_error_excluded"] == 1 and counts["trajectories"] == 2
    assert counts["groups_used"] == 1


def test_zero_variance_groups_are_dropped_but_first_errors_still_imitated():
    task = make_task()
    two_steps = ONE_STEP + [((3,), (-0.2,))]
    group = [make_rollout(task, f"f{i}", two_steps, success=False, first_error_step=1) for i in range(3)]
    batch = build_samples([group], GRPOConfig(**NO_SHAPING, neg_imitation_weight=0), None)
    assert batch.samples == () and batch.counts()["groups_zero_variance"] == 1
    batch = build_samples([group], GRPOConfig(**NO_SHAPING), None)
    assert [(s.step_index, s.policy_gradient, s.negative_imitation) for s in batch.samples] == \
        [(1, False, True)] * 3


def test_each_step_is_a_sample_with_the_trajectory_advantage_and_stored_logprobs():
    task = make_task()
    steps = [((1, 2), (-0.5, -0.7)), ((), ()), ((4,), (-1.5,))]  # a step without tokens is skipped
    group = [make_rollout(task, "win", steps, success=True),
             make_rollout(task, "lose", steps, success=False, first_error_step=2)]
    batch = build_samples([group], GRPOConfig(**NO_SHAPING), None)
    assert [(s.trajectory.id, s.step_index, s.advantage, s.negative_imitation, s.old_logprobs)
            for s in batch.samples] == [
        ("win", 0, 0.5, False, (-0.5, -0.7)), ("win", 2, 0.5, False, (-1.5,)),
        ("lose", 0, -0.5, False, (-0.5, -0.7)), ("lose", 2, -0.5, True, (-1.5,))]
    assert batch.groups[0].mean_abs_advantage == 0.5


def test_bad_groups_are_refused():
    a, b = make_task("a"), make_task("b")
    with pytest.raises(RecordError, match="one task"):
        build_samples([[make_rollout(a, "1", ONE_STEP, success=True),
                        make_rollout(b, "2", ONE_STEP, success=False)]], GRPOConfig(), None)
    no_logprobs = [((1, 2), ())]
    with pytest.raises(RecordError, match="sampling logprobs"):
        build_samples([[make_rollout(a, "1", no_logprobs, success=True),
                        make_rollout(a, "2", ONE_STEP, success=False)]], GRPOConfig(), None)


def test_success_replay_injects_into_all_fail_groups_and_serialises():
    task = make_task()
    replay = SuccessReplay(per_task=2, max_tasks=4)
    config = GRPOConfig(**NO_SHAPING, neg_imitation_weight=0)
    stored_logprobs = ((7,), (-3.0,))
    build_samples([[make_rollout(task, "win", [stored_logprobs], success=True),
                    make_rollout(task, "lose", ONE_STEP, success=False)]], config, replay)
    assert len(replay) == 1

    failing = [make_rollout(task, f"f{i}", ONE_STEP, success=False) for i in range(3)]
    batch = build_samples([failing], config, replay)
    by_id = {s.trajectory.id: s for s in batch.samples}
    assert by_id["win"].replayed and by_id["win"].old_logprobs == (-3.0,)  # its own sampling logprobs
    assert by_id["win"].advantage == pytest.approx(0.75)  # rewards (0, 0, 0, 1)
    assert by_id["f0"].advantage == pytest.approx(-0.25)
    assert batch.counts()["replayed"] == 1 and batch.groups[0].used
    assert batch.groups[0].mean_abs_advantage == 0.0  # learning signal of the group's own rollouts
    assert build_samples([failing], config, None).samples == ()  # without replay: dropped

    restored = SuccessReplay.from_dict(json.loads(json.dumps(replay.to_dict())))
    stored_task, trajectory, verdict = restored.sample_for(task)
    assert trajectory.id == "win" and trajectory.steps[0].logprobs == (-3.0,) and verdict.success
    assert stored_task == task
    for i in range(3):  # bounded per family and level: the oldest success goes
        replay.add(*make_rollout(task, f"again{i}", ONE_STEP, success=True)[1:], task=task)
    assert len(replay) == 2 and replay.sample("toy/L0")[0].id == "again2"
    for i in range(6):  # bounded in keys (here task ids: added without their task): the least recent goes
        replay.add(*make_rollout(make_task(f"u{i % 5}"), f"w{i}", ONE_STEP, success=True)[1:])
    assert len(replay) == 4 and replay.sample("toy/L0") is None and replay.sample("u1") is None
    assert replay.sample("u0")[0].id == "w5"


def test_success_replay_is_keyed_by_family_and_level_so_fresh_seeds_still_get_one():
    """Generated tasks rarely recur by id: an all-fail group of a NEW seed gets the success
    of a sibling task (same family and level), trained on that sibling's own prompt; its
    own success wins when one is stored; another level gets none."""
    config = GRPOConfig(**NO_SHAPING, neg_imitation_weight=0)
    replay = SuccessReplay()
    solved, fresh = make_task("toy-L0-s0", seed=0), make_task("toy-L0-s1", seed=1)
    harder = Task(id="toy-L1-s2", instruction="do it", family="toy", level=1, seed=2)
    build_samples([[make_rollout(solved, "win", ONE_STEP, success=True),
                    make_rollout(solved, "lose", ONE_STEP, success=False)]], config, replay)
    batch = build_samples([[make_rollout(fresh, f"f{i}", ONE_STEP, success=False) for i in range(3)],
                           [make_rollout(harder, f"h{i}", ONE_STEP, success=False) for i in range(3)]],
                          config, replay)
    assert [g.replayed for g in batch.groups] == [True, False]
    replayed = [s for s in batch.samples if s.replayed]
    assert [(s.trajectory.id, s.task.id) for s in replayed] == [("win", solved.id)]  # its own task's prompt
    build_samples([[make_rollout(fresh, "own", ONE_STEP, success=True),
                    make_rollout(fresh, "miss", ONE_STEP, success=False)]], config, replay)
    assert replay.sample_for(fresh)[1].id == "own" and replay.sample_for(solved)[1].id == "win"
    old_style = SuccessReplay()  # a checkpoint from before keying by family and level
    old_style.add(*make_rollout(solved, "kept", ONE_STEP, success=True)[1:])
    assert SuccessReplay.from_dict(old_style.to_dict()).sample_for(solved)[1].id == "kept"


def test_rehearsal_adds_successes_of_other_cells_to_updates_in_turn():
    """Every update also trains on stored successes of OTHER families and levels (positive
    advantage), least recently rehearsed first; never without an update of its own."""
    config = GRPOConfig(**NO_SHAPING, neg_imitation_weight=0, rehearsal=2, rehearsal_advantage=0.4)
    replay = SuccessReplay()
    cells = [Task(id=f"{family}-L{level}", instruction="do it", family=family, level=level)
             for family, level in (("a", 0), ("b", 0), ("c", 1))]
    for task in cells:
        replay.add(*make_rollout(task, f"win-{task.id}", ONE_STEP, success=True)[1:], task=task)

    def mixed(task, tag):
        return [make_rollout(task, f"{tag}-w", ONE_STEP, success=True),
                make_rollout(task, f"{tag}-l", ONE_STEP, success=False)]

    first = build_samples([mixed(cells[0], "1")], config, replay)
    rehearsed = [s for s in first.samples if s.replayed]
    assert first.counts()["rehearsed"] == 2
    assert [(s.trajectory.id, s.advantage, s.policy_gradient) for s in rehearsed] == [
        ("win-b-L0", 0.4, True), ("win-c-L1", 0.4, True)]  # never the update's own cell (a/L0)
    from deskdojo.agent.train.grpo import _imitated

    # self-imitation learns the group's own success, not the rehearsed ones (they would drown it)
    assert [(s.trajectory.id, s.rehearsed, _imitated(s)) for s in first.samples] == [
        ("1-w", False, True), ("1-l", False, False), ("win-b-L0", True, False), ("win-c-L1", True, False)]
    second = build_samples([mixed(cells[1], "2")], config, replay)
    # b/L0 is this update's own; of the others a/L0 is now the least recently used
    assert [s.trajectory.id for s in second.samples if s.replayed] == ["1-w", "win-c-L1"]
    no_signal = build_samples([[make_rollout(cells[2], f"x{i}", ONE_STEP, success=True) for i in range(2)]],
                              config, replay)
    assert no_signal.samples == () and no_signal.rehearsed == 0
    with pytest.raises(ConfigError, match="rehearsal"):
        GRPOConfig(rehearsal=1, success_replay=False)
    with pytest.raises(ConfigError, match="rehearsal"):
        GRPOConfig(rehearsal=-1)


def test_negative_scale_shrinks_only_below_mean_advantages():
    """``negative_scale`` 0 trains on the rollouts that beat their group and leaves the
    others out of the gradient (advantage 0); the metrics keep the plain advantages."""
    task = make_task("toy-L0-s0", seed=0)
    group = [make_rollout(task, "w", ONE_STEP, success=True), make_rollout(task, "l1", ONE_STEP, success=False),
             make_rollout(task, "l2", ONE_STEP, success=False), make_rollout(task, "l3", ONE_STEP, success=False)]
    plain = build_samples([group], GRPOConfig(**NO_SHAPING, neg_imitation_weight=0))
    positive = build_samples([group], GRPOConfig(**NO_SHAPING, neg_imitation_weight=0, negative_scale=0.0))
    half = build_samples([group], GRPOConfig(**NO_SHAPING, neg_imitation_weight=0, negative_scale=0.5))
    assert [s.advantage for s in plain.samples] == pytest.approx([0.75, -0.25, -0.25, -0.25])
    assert [s.advantage for s in positive.samples] == pytest.approx([0.75, 0.0, 0.0, 0.0])
    assert [s.advantage for s in half.samples] == pytest.approx([0.75, -0.125, -0.125, -0.125])
    assert positive.groups[0].advantages == plain.groups[0].advantages
    with pytest.raises(ConfigError, match="negative_scale"):
        GRPOConfig(negative_scale=-1.0)


def test_positive_needs_success_reinforces_only_successes():
    """In a group that all failed, partial credit sets one failure above the mean: plain
    GRPO reinforces it, ``positive_needs_success`` leaves it out; a success keeps its advantage."""
    task = make_task("toy-L0-s0", seed=0)
    failed = [make_rollout(task, "half", ONE_STEP, success=False, score=0.5),
              make_rollout(task, "none", ONE_STEP, success=False, score=0.0)]
    plain = build_samples([failed], GRPOConfig(**NO_SHAPING, neg_imitation_weight=0))
    strict = build_samples([failed], GRPOConfig(**NO_SHAPING, neg_imitation_weight=0, positive_needs_success=True))
    assert [s.advantage for s in plain.samples] == pytest.approx([0.25, -0.25])
    assert [s.advantage for s in strict.samples] == pytest.approx([0.0, -0.25])
    mixed = [make_rollout(task, "w", ONE_STEP, success=True), make_rollout(task, "half", ONE_STEP, success=False,
                                                                          score=0.9),
             make_rollout(task, "l1", ONE_STEP, success=False, score=0.0),
             make_rollout(task, "l2", ONE_STEP, success=False, score=0.0)]
    both = build_samples([mixed], GRPOConfig(**NO_SHAPING, neg_imitation_weight=0, positive_needs_success=True,
                                             negative_scale=0.0))
    assert [s.advantage for s in both.samples] == pytest.approx([1.0 - 0.475, 0.0, 0.0, 0.0])


def test_skip_no_op_steps_leaves_a_successes_redundant_clicks_unreinforced():
    """A success that clicked the same thing twice: plain GRPO reinforces the repeat too;
    ``skip_no_op_steps`` leaves the step the judge labelled no-op out, failures keep all."""
    task = make_task("toy-L0-s0", seed=0)
    three = [((1, 2), (-0.5, -0.7))] * 3
    labels = (StepLabel.PROGRESS, StepLabel.NO_OP, StepLabel.PROGRESS)
    group = [make_rollout(task, "w", three, success=True, labels=labels),
             make_rollout(task, "l", three, success=False, labels=labels)]
    plain = build_samples([group], GRPOConfig(**NO_SHAPING, neg_imitation_weight=0))
    skip = build_samples([group], GRPOConfig(**NO_SHAPING, neg_imitation_weight=0, skip_no_op_steps=True))
    assert [(s.trajectory.id, s.step_index) for s in plain.samples] == [
        ("w", 0), ("w", 1), ("w", 2), ("l", 0), ("l", 1), ("l", 2)]
    assert [(s.trajectory.id, s.step_index, s.advantage) for s in skip.samples] == [
        ("w", 0, 0.5), ("w", 2, 0.5), ("l", 0, -0.5), ("l", 1, -0.5), ("l", 2, -0.5)]


def test_skip_error_steps_leaves_a_successes_unparsed_answers_unreinforced():
    """A success with an answer that did not parse between its actions (explore_past_done
    samples such answers): ``skip_error_steps`` leaves it out of the success, failures keep
    theirs (pushed down), and without the flag it is reinforced like the rest."""
    task = make_task("toy-L0-s0", seed=0)
    three = [((1, 2), (-0.5, -0.7))] * 3
    labels = (StepLabel.PROGRESS, StepLabel.ERROR, StepLabel.PROGRESS)
    group = [make_rollout(task, "w", three, success=True, labels=labels),
             make_rollout(task, "l", three, success=False, labels=labels)]
    plain = build_samples([group], GRPOConfig(**NO_SHAPING, neg_imitation_weight=0, skip_no_op_steps=True))
    skip = build_samples([group], GRPOConfig(**NO_SHAPING, neg_imitation_weight=0, skip_error_steps=True))
    assert [(s.trajectory.id, s.step_index) for s in plain.samples] == [
        ("w", 0), ("w", 1), ("w", 2), ("l", 0), ("l", 1), ("l", 2)]
    assert [(s.trajectory.id, s.step_index, s.advantage) for s in skip.samples] == [
        ("w", 0, 0.5), ("w", 2, 0.5), ("l", 0, -0.5), ("l", 1, -0.5), ("l", 2, -0.5)]


# --- the trainer, with a toy policy ---------------------------------------------------


class ToyPolicy(torch.nn.Module):
    """p(token | context, previous token) from one linear layer over one-hot inputs."""

    def __init__(self, contexts: int = 2, vocab: int = 4):
        super().__init__()
        self.contexts, self.vocab = contexts, vocab
        self.linear = torch.nn.Linear(contexts + vocab, vocab)
        torch.nn.init.zeros_(self.linear.weight)
        torch.nn.init.zeros_(self.linear.bias)

    def prob(self, context: int, token: int) -> float:
        with torch.no_grad():
            return float(self.log_probs(context, 0)[token].exp())

    def log_probs(self, context: int, previous: int) -> torch.Tensor:
        x = torch.cat([torch.nn.functional.one_hot(torch.tensor(context), self.contexts),
                       torch.nn.functional.one_hot(torch.tensor(previous), self.vocab)]).float()
        return torch.log_softmax(self.linear(x), dim=-1)

    def token_logprobs(self, samples):
        width = max(len(s.token_ids) for s in samples)
        logp = torch.zeros(len(samples), width)
        mask = torch.zeros(len(samples), width)
        rows = []
        for b, sample in enumerate(samples):
            previous, row = 0, []
            for token in sample.token_ids:
                row.append(self.log_probs(sample.task.seed, previous)[token])
                previous = token
            rows.append(torch.stack(row))
            mask[b, :len(row)] = 1
        logp = torch.stack([torch.nn.functional.pad(r, (0, width - len(r))) for r in rows])
        return logp, mask

    def sample(self, context: int, generator: torch.Generator) -> tuple[int, float]:
        with torch.no_grad():
            logp = self.log_probs(context, 0)
        token = int(torch.multinomial(logp.exp(), 1, generator=generator))
        return token, float(logp[token])


def bandit_group(policy: ToyPolicy, task: Task, generator: torch.Generator, iteration: int, good: int = 2):
    group = []
    for g in range(8):
        token, logprob = policy.sample(task.seed, generator)
        group.append(make_rollout(task, f"{iteration}-{g}", [((token,), (logprob,))], success=token == good))
    return group


def test_toy_bandit_raises_the_rewarded_action():
    torch.manual_seed(0)
    policy = ToyPolicy()
    config = GRPOConfig(lr=0.05, neg_imitation_weight=0.0, normaliser="global", success_replay=False)
    trainer = GRPOTrainer(config, policy.token_logprobs, policy.parameters())
    generator = torch.Generator().manual_seed(0)
    task = make_task(seed=1)
    before = policy.prob(1, 2)
    skipped = 0
    for iteration in range(30):
        stats = trainer.step([bandit_group(policy, task, generator, iteration)])
        skipped += stats["skipped"]  # all-success (or all-fail) groups carry no signal
    after = policy.prob(1, 2)
    assert before == pytest.approx(0.25)
    assert after > 0.8, (before, after, stats)
    assert trainer.updates == 30 - skipped and trainer.updates >= 10
    assert policy.prob(0, 2) < after  # the other context moved less: the shared bias only


def test_negative_imitation_lowers_the_first_error_action():
    policy = ToyPolicy()
    reference = copy.deepcopy(policy).requires_grad_(False)
    config = GRPOConfig(lr=0.05, neg_imitation_weight=1.0, success_replay=False)
    trainer = GRPOTrainer(config, policy.token_logprobs, policy.parameters(),
                          reference_logprobs=reference.token_logprobs)
    task = make_task(seed=0)
    group = [make_rollout(task, f"f{i}", [((3,), (math.log(0.25),))], success=False, first_error_step=0)
             for i in range(4)]
    for _ in range(5):
        stats = trainer.step([group])
    assert stats["groups_zero_variance"] == 1 and stats["negative_imitation_samples"] == 4
    assert policy.prob(0, 3) < 0.2


def test_micro_batches_accumulate_to_the_full_batch_gradient():
    torch.manual_seed(1)
    base = ToyPolicy()
    torch.nn.init.normal_(base.linear.weight, std=0.5)
    reference = copy.deepcopy(base).requires_grad_(False)
    tasks = [make_task("a", seed=0), make_task("b", seed=1)]
    groups = []
    for task in tasks:
        groups.append([make_rollout(task, f"{task.id}{i}", [((i % 4, 1), (-1.2, -1.6)), ((2,), (-1.0,))][: 1 + i % 2],
                                    success=i % 3 == 0, score=0.3 * (i % 3 == 0) + 0.1 * i,
                                    first_error_step=0 if i % 3 else None) for i in range(5)])
    grads = []
    for micro in (1, 3, 100):
        policy = copy.deepcopy(base)
        config = GRPOConfig(micro_batch_size=micro, normaliser="global", kl_beta=0.1, max_grad_norm=0.0)
        trainer = GRPOTrainer(config, policy.token_logprobs, policy.parameters(),
                              reference_logprobs=reference.token_logprobs)
        stats = trainer.step(groups)
        grads.append((policy.linear.weight.grad.clone(), stats["loss"], stats["tokens"]))
    for grad, loss, tokens in grads[1:]:
        assert torch.allclose(grad, grads[0][0], atol=1e-6)
        assert loss == pytest.approx(grads[0][1]) and tokens == grads[0][2]
    assert grads[0][0].abs().sum() > 0


def test_epochs_are_optimizer_steps_on_the_same_samples_against_the_stored_logprobs():
    """epochs=3 is three passes over one batch: the same weights as three single-pass
    updates on that batch (the ratio is to the stored sampling log-probs each time),
    and not the same as one pass."""
    torch.manual_seed(2)
    base = ToyPolicy()
    torch.nn.init.normal_(base.linear.weight, std=0.5)
    task = make_task(seed=1)
    group = [make_rollout(task, f"e{i}", [((i % 4,), (math.log(0.25),))], success=i % 4 == 2) for i in range(8)]
    config = GRPOConfig(lr=0.05, neg_imitation_weight=0.0, success_replay=False, max_grad_norm=0.0)

    def trained(epochs: int, calls: int) -> tuple[torch.Tensor, dict, GRPOTrainer]:
        policy = copy.deepcopy(base)
        trainer = GRPOTrainer(config.replace(epochs=epochs), policy.token_logprobs, policy.parameters())
        stats = [trainer.step([group]) for _ in range(calls)]
        return policy.linear.weight.detach().clone(), stats[0], trainer

    three_passes, stats3, trainer3 = trained(3, 1)
    three_calls, stats1, _ = trained(1, 3)
    one_pass, _, _ = trained(1, 1)
    assert torch.allclose(three_passes, three_calls, atol=1e-6)
    assert not torch.allclose(three_passes, one_pass, atol=1e-4)
    assert trainer3.updates == 1 and stats3["loss"] == pytest.approx(stats1["loss"])  # first pass's stats
    with pytest.raises(ConfigError, match="epochs"):
        GRPOConfig(epochs=0)


def test_a_replayed_success_moves_the_policy_however_far_it_has_moved_since_it_was_sampled():
    """A success sampled at p = 0.25 and replayed once the policy gives it 0.5: its ratio
    to the stored log-prob (2) is past the clip, so a fresh sample like it carries no
    gradient; replayed, its ratio is to the policy before the update and it still
    raises the action. Each further replay raises it again."""
    policy = ToyPolicy()
    with torch.no_grad():  # p(token 2 | context 0) = 0.5, the other three 1/6 each
        policy.linear.bias[2] = math.log(3.0)
    config = GRPOConfig(**NO_SHAPING, lr=0.05, neg_imitation_weight=0.0, max_grad_norm=0.0, epochs=2,
                        negative_scale=0.0)  # only the success moves the policy
    task = make_task(seed=0)
    stored = [((2,), (math.log(0.25),))]
    failing = [make_rollout(task, f"f{i}", [((1,), (math.log(1 / 6),))], success=False) for i in range(3)]

    fresh = GRPOTrainer(config.replace(success_replay=False), policy.token_logprobs, policy.parameters())
    fresh.step([[*failing, make_rollout(task, "won-then", stored, success=True)]])
    assert policy.prob(0, 2) == pytest.approx(0.5, abs=1e-3)  # clipped: the stored ratio is 2 > 1.28

    trainer = GRPOTrainer(config, policy.token_logprobs, policy.parameters())
    trainer.replay.add(*make_rollout(task, "won-then", stored, success=True)[1:], task=task)
    probs = [policy.prob(0, 2)]
    for _ in range(3):
        stats = trainer.step([failing])
        assert stats["replayed"] == 1 and stats["skipped"] == 0
        probs.append(policy.prob(0, 2))
    assert probs[0] < probs[1] < probs[2] < probs[3], probs
    assert stats["clip_high_fraction"] == 0.0  # the first pass of each update: ratio 1


def test_trainer_contract_errors():
    policy = ToyPolicy()
    with pytest.raises(ConfigError, match="reference_logprobs"):
        GRPOTrainer(GRPOConfig(kl_beta=0.1), policy.token_logprobs, policy.parameters())

    def misaligned(samples):
        logp, mask = policy.token_logprobs(samples)
        return logp, torch.ones_like(mask)
    task = make_task()
    group = [make_rollout(task, "a", [((1, 2), (-1.0, -1.0))], success=True),
             make_rollout(task, "b", [((1,), (-1.0,))], success=False)]
    trainer = GRPOTrainer(GRPOConfig(neg_imitation_weight=0), misaligned, policy.parameters())
    with pytest.raises(ConfigError, match="align"):
        trainer.step([group])
    trainer = GRPOTrainer(GRPOConfig(neg_imitation_weight=0), policy.token_logprobs, policy.parameters())
    skipped = trainer.step([[make_rollout(task, "c", ONE_STEP, success=False)] * 2])
    assert skipped["skipped"] == 1 and trainer.updates == 0
    state = trainer.state_dict()
    assert json.loads(json.dumps(state["replay"]))["per_task"] == 4


def test_trainer_state_round_trips_and_doctests_hold():
    import doctest

    from deskdojo.agent.train import grpo
    assert doctest.testmod(grpo).failed == 0

    policy = ToyPolicy()
    config = GRPOConfig(neg_imitation_weight=0, scale_std=True)
    trainer = GRPOTrainer(config, policy.token_logprobs, policy.parameters())
    task = make_task()
    trainer.step([[make_rollout(task, "w", ONE_STEP, success=True),
                   make_rollout(task, "l", ONE_STEP, success=False),
                   make_rollout(task, "m", ONE_STEP, success=False)]])
    # the curriculum's signal is never std-scaled: |(1, 0, 0) - 1/3| averaged = 4/9
    assert trainer.last_groups[0].mean_abs_advantage == pytest.approx(4 / 9)
    restored = GRPOTrainer(config, policy.token_logprobs, policy.parameters())
    restored.load_state_dict(trainer.state_dict())
    assert restored.updates == 1 and restored.replay.sample_for(task)[1].id == "w"
    assert restored.optimizer.state_dict()["state"]  # Adam moments came back


# --- numerics and cost of one update (issue 15) -----------------------------------------


@pytest.mark.parametrize("padding", [float("-inf"), float("nan")], ids=["-inf", "nan"])
def test_non_finite_padding_never_reaches_the_loss_or_the_gradient(padding):
    """A log-prob source may leave -inf (log_softmax of a suppressed token) or NaN past a
    sample's tokens, in the policy's and in the reference's log-probs: the loss selects
    those positions away, so loss, gradient and stats are those of zero padding."""
    mask = torch.tensor([[1.0, 1.0, 1.0], [1.0, 0.0, 0.0]])
    old = torch.tensor([[0.5, 0.4, 0.3], [0.6, 1.0, 1.0]]).log()
    ref = torch.tensor([[0.4, 0.4, 0.4], [0.3, 1.0, 1.0]]).log()
    config = GRPOConfig(kl_beta=0.1, neg_imitation_weight=0.2)
    results = []
    for fill in (0.0, padding):
        raw = torch.tensor([[0.6, 0.3, 0.2], [0.5, 0.1, 0.1]]).log().requires_grad_(True)
        logp = torch.where(mask.bool(), raw, fill)
        loss, stats = grpo_loss(logp, old, mask, torch.tensor([1.0, -1.0]), config=config, normaliser=4.0,
                                ref_logp=torch.where(mask.bool(), ref, fill),
                                negative_imitation=torch.tensor([False, True]))
        loss.backward()
        results.append((float(loss.detach()), raw.grad.clone(), stats.as_dict()))
    (loss0, grad0, stats0), (loss1, grad1, stats1) = results
    assert math.isfinite(loss1) and torch.isfinite(grad1).all()
    assert loss1 == pytest.approx(loss0) and torch.allclose(grad1, grad0)
    assert stats1 == pytest.approx(stats0)

    # the same through the trainer, with a policy that pads its rows with the non-finite value
    policy = ToyPolicy()

    def padded_badly(samples):
        logp, mask = policy.token_logprobs(samples)
        return torch.where(mask.bool(), logp, padding), mask
    task = make_task()
    group = [make_rollout(task, "long", [((1, 2, 3), (-1.0, -1.2, -1.4))], success=True),
             make_rollout(task, "short", [((1,), (-1.0,))], success=False)]
    trainer = GRPOTrainer(GRPOConfig(neg_imitation_weight=0), padded_badly, policy.parameters())
    stats = trainer.step([group])
    assert math.isfinite(stats["loss"]) and math.isfinite(stats["grad_norm"]) and stats["grad_norm"] > 0
    assert all(torch.isfinite(p).all() for p in policy.parameters())


def test_a_ratio_that_underflows_to_zero_gives_no_nan():
    """exp(logp - old) is exactly 0 in float32 when logp is 150 nats below the sampler's:
    the ratio cap used to divide by that ratio (0/0 = NaN)."""
    old = torch.tensor([[-0.1, -0.1]])
    for advantage in (-1.0, 1.0):
        logp = torch.tensor([[-150.0, -0.1]], requires_grad=True)
        assert float(torch.exp(logp.detach() - old)[0, 0]) == 0.0  # it really underflows
        loss, stats = grpo_loss(logp, old, torch.ones(1, 2), torch.tensor([advantage]),
                                config=GRPOConfig(ratio_cap=3.0), normaliser=2.0)
        loss.backward()
        # token 0, ratio 0: -min(0 * A, clip(0) * A) = 0.8 for A = -1 (clipped: no gradient), 0 for A = +1
        assert float(loss.detach()) == pytest.approx(((0.8 if advantage < 0 else 0.0) - advantage) / 2)
        assert logp.grad[0].tolist() == pytest.approx([0.0, -advantage / 2])
        assert stats.as_dict()["ratio_mean"] == pytest.approx(0.5)


def test_reference_log_probs_are_computed_once_per_sample_per_update():
    """The reference is frozen: two epochs over micro-batches of 3 score each sample
    under it once (they used to be scored again in every epoch), and without KL only the
    samples marked for negative imitation are scored."""
    torch.manual_seed(3)
    policy = ToyPolicy()
    torch.nn.init.normal_(policy.linear.weight, std=0.5)
    reference = copy.deepcopy(policy).requires_grad_(False)
    scored: list[GRPOSample] = []

    def counting(samples):
        scored.extend(samples)
        return reference.token_logprobs(samples)
    task = make_task(seed=1)
    group = [make_rollout(task, f"r{i}", [((i % 4,), (math.log(0.25),)), ((1, 2), (-1.0, -1.5))],
                          success=i % 2 == 0, first_error_step=None if i % 2 == 0 else 1) for i in range(5)]
    common = dict(epochs=2, micro_batch_size=3, success_replay=False)
    trainer = GRPOTrainer(GRPOConfig(kl_beta=0.1, neg_imitation_weight=0.2, **common), policy.token_logprobs,
                          policy.parameters(), reference_logprobs=counting)
    stats = trainer.step([group])
    assert stats["samples"] == 10 and len(scored) == 10 and len({id(s) for s in scored}) == 10
    assert stats["kl"] == pytest.approx(0.0, abs=1e-7) and math.isfinite(stats["loss"])  # starts at the reference
    scored.clear()
    trainer = GRPOTrainer(GRPOConfig(kl_beta=0.0, neg_imitation_weight=0.2, **common), policy.token_logprobs,
                          policy.parameters(), reference_logprobs=counting)
    stats = trainer.step([group])
    assert len(scored) == stats["negative_imitation_samples"] == 2 and all(s.negative_imitation for s in scored)
    assert stats["neg_imitation_loss"] > 0


def test_the_constant_normaliser_does_not_grow_with_groups_or_steps():
    """constant = max_new_tokens x policy-gradient samples: the same group twice, or
    every step taken twice, gives the gradient of the group once (it used to be
    max_new_tokens x group_size, so twice the groups gave twice the gradient)."""
    torch.manual_seed(4)
    base = ToyPolicy()
    torch.nn.init.normal_(base.linear.weight, std=0.5)
    config = GRPOConfig(normaliser="constant", max_new_tokens=4, group_size=2, neg_imitation_weight=0,
                        success_replay=False, max_grad_norm=0.0)

    def group(task: Task, steps: int = 1):
        return [make_rollout(task, f"{task.id}{i}", [((i % 4, 1), (-1.2, -1.6))] * steps, success=i % 2 == 0)
                for i in range(4)]

    def gradient(groups) -> tuple[torch.Tensor, float]:
        policy = copy.deepcopy(base)
        stats = GRPOTrainer(config, policy.token_logprobs, policy.parameters()).step(groups)
        return policy.linear.weight.grad.clone(), stats["normaliser"]

    once, normaliser = gradient([group(make_task("a", seed=1))])
    twice, normaliser_twice = gradient([group(make_task("a", seed=1)), group(make_task("b", seed=1))])
    two_steps, normaliser_steps = gradient([group(make_task("a", seed=1), steps=2)])
    assert (normaliser, normaliser_twice, normaliser_steps) == (4 * 4, 4 * 8, 4 * 8)
    assert once.abs().sum() > 0
    assert torch.allclose(once, twice, atol=1e-7) and torch.allclose(once, two_steps, atol=1e-7)


def test_each_rollout_is_rewarded_once_per_update(monkeypatch):
    """build_samples rewarded every rollout twice and the evolve learner a third time
    for its metrics; now the group summaries carry the advantages the metrics read."""
    from deskdojo.agent.train import grpo
    from deskdojo.evolve.parts import GRPOLearner

    rewarded: list[str] = []
    real = grpo.trajectory_reward
    monkeypatch.setattr(grpo, "trajectory_reward",
                        lambda trajectory, verdict, config: rewarded.append(trajectory.id) or
                        real(trajectory, verdict, config))
    policy = ToyPolicy()
    trainer = GRPOTrainer(GRPOConfig(neg_imitation_weight=0, scale_std=True), policy.token_logprobs,
                          policy.parameters())
    task = make_task()
    winning = [make_rollout(task, f"w{i}", ONE_STEP, success=i == 0) for i in range(3)]
    losing = [make_rollout(task, f"l{i}", ONE_STEP, success=False) for i in range(2)]
    result = GRPOLearner(policy, trainer, module=policy).update([winning, losing])
    # the second group failed entirely and got w0 from the replay: rewarded as its member once
    assert sorted(rewarded) == ["l0", "l1", "w0", "w0", "w1", "w2"]
    assert result.stats.replayed == 1
    # its own rollouts' advantages, std-scaled as configured: (1, 0, 0) -> (sqrt 2, -1/sqrt 2, -1/sqrt 2)
    assert result.advantages == pytest.approx([math.sqrt(2), -1 / math.sqrt(2), -1 / math.sqrt(2), 0.0, 0.0])


def test_generated_rehearsal_holds_what_the_groups_do_not_show():
    """The bandit rewards token 2 in context 1; the shared bias drags context 0 along. A
    supervised term on context 0's answer (token 3), called once per optimizer step with
    the update's number, keeps it while the groups still teach context 1."""
    def trained(rehearsal: int) -> tuple[ToyPolicy, list[int], dict]:
        torch.manual_seed(0)
        policy = ToyPolicy()
        calls: list[int] = []

        def supervised(update: int) -> torch.Tensor:
            calls.append(update)
            return -policy.log_probs(0, 0)[3]

        config = GRPOConfig(lr=0.05, neg_imitation_weight=0.0, normaliser="global", success_replay=False,
                            epochs=2, generated_rehearsal=rehearsal)
        trainer = GRPOTrainer(config, policy.token_logprobs, policy.parameters(), supervised=supervised)
        generator = torch.Generator().manual_seed(0)
        task = make_task(seed=1)
        stats: dict = {}
        for iteration in range(30):
            step = trainer.step([bandit_group(policy, task, generator, iteration)])
            stats = step if not step["skipped"] else stats
        return policy, calls, stats

    plain, plain_calls, plain_stats = trained(0)
    held, calls, stats = trained(4)
    assert plain_calls == [] and "generated_nll" not in plain_stats  # off: never called
    assert calls == sorted(calls) and calls[:2] == [0, 0] and len(calls) == 2 * len(set(calls))
    assert 0 < stats["generated_nll"] < 1.0
    assert held.prob(1, 2) > 0.6  # the groups still teach their own context
    assert held.prob(0, 3) > 0.6 > plain.prob(0, 3), (held.prob(0, 3), plain.prob(0, 3))
    with pytest.raises(ConfigError, match="generated_rehearsal needs the supervised loss"):
        GRPOTrainer(GRPOConfig(generated_rehearsal=2, neg_imitation_weight=0.0), plain.token_logprobs,
                    plain.parameters())
    for bad in (-1, 1.5, True):
        with pytest.raises(ConfigError, match="generated_rehearsal must be a count"):
            GRPOConfig(generated_rehearsal=bad)


def found_again_and_again(trainer: GRPOTrainer, policy: ToyPolicy, task: Task, updates: int = 8) -> dict:
    """``updates`` groups of ``task`` in context 1: three rollouts answer token 1 and fail,
    one answers the rare token 3 (at its current log-prob) and succeeds; the last stats."""
    stats: dict = {}
    for update in range(updates):
        logp = float(policy.log_probs(1, 0)[3].detach())
        stats = trainer.step([[*(make_rollout(task, f"f{update}-{i}", [((1,), (math.log(1 / 3),))], success=False)
                                 for i in range(3)),
                               make_rollout(task, f"won{update}", [((3,), (logp,))], success=True)]])
    return stats


def test_self_imitation_learns_a_rare_success_that_the_clipped_ratio_barely_moves():
    """Exploration found token 3 in context 1, where the policy gives it p = 0.002; the
    group's three failures teach nothing (negative_scale 0). The clipped surrogate's
    token-sum over ``max_new_tokens`` x steps gives that one step a tiny share beside a
    supervised term on the same weights (the generated rehearsal, here pulling context 1
    to token 0), so the success loses; self-imitation's NLL, a mean over the imitated
    steps, weighs it as much as a demo and it wins."""
    def trained(weight: float) -> tuple[ToyPolicy, dict]:
        torch.manual_seed(0)
        policy = ToyPolicy()
        with torch.no_grad():  # p(token 3 | context 1) ~ 0.002, the other three ~ 1/3
            policy.linear.weight[3, 1] = -math.log(3 / 0.002 - 3)
        config = GRPOConfig(**NO_SHAPING, lr=0.1, neg_imitation_weight=0.0, epochs=2, negative_scale=0.0,
                            success_replay=False, generated_rehearsal=1, self_imitation=weight)
        trainer = GRPOTrainer(config, policy.token_logprobs, policy.parameters(),
                              supervised=lambda update: -policy.log_probs(1, 0)[0])
        return policy, found_again_and_again(trainer, policy, make_task(seed=1))

    plain, plain_stats = trained(0.0)
    imitating, stats = trained(1.0)
    assert "self_imitation_nll" not in plain_stats and stats["self_imitation_steps"] == 1
    assert plain.prob(1, 3) < 0.01 < 0.3 < imitating.prob(1, 3), (plain.prob(1, 3), imitating.prob(1, 3))
    with pytest.raises(ConfigError, match="self_imitation must be a finite number"):
        GRPOConfig(self_imitation=-1.0)


def test_self_imitation_of_the_rehearsed_successes_holds_an_old_answer_that_a_new_one_would_overwrite():
    """Context 0's stored success answers token 1; exploration then finds token 3 in context
    1. Self-imitation of the new success alone also raises token 3 in context 0 (the two
    share the bias and the first-token input: the reader's `$2`, learned on two-text forms,
    said on one-text ones too), and rehearsal through the clipped surrogate does not hold
    it; ``self_imitation_rehearsal``, a mean NLL of its own over the rehearsed steps, does."""
    old_cell = Task(id="old-L0", instruction="do it", family="old", level=0, seed=0)
    new_task = make_task(seed=1)

    def trained(rehearsal_weight: float) -> tuple[ToyPolicy, dict]:
        torch.manual_seed(0)
        policy = ToyPolicy()
        with torch.no_grad():
            policy.linear.weight[1, 0] = 3.0  # context 0 says token 1 (p ~ 0.87)
            policy.linear.weight[3, 1] = -math.log(3 / 0.002 - 3)  # token 3 in context 1: p ~ 0.002
        config = GRPOConfig(**NO_SHAPING, lr=0.1, neg_imitation_weight=0.0, epochs=2, negative_scale=0.0,
                            rehearsal=1, self_imitation=4.0, self_imitation_rehearsal=rehearsal_weight)
        trainer = GRPOTrainer(config, policy.token_logprobs, policy.parameters())
        trainer.replay.add(*make_rollout(old_cell, "old-win", [((1,), (math.log(0.87),))], success=True)[1:],
                           task=old_cell)
        return policy, found_again_and_again(trainer, policy, new_task)

    alone, alone_stats = trained(0.0)
    held, stats = trained(4.0)
    assert "self_imitation_rehearsal_nll" not in alone_stats and stats["self_imitation_rehearsal_steps"] == 1
    assert alone.prob(1, 3) > 0.5 and held.prob(1, 3) > 0.5  # both learn the new answer
    assert alone.prob(0, 1) < 0.5 < 0.6 < held.prob(0, 1), (alone.prob(0, 1), held.prob(0, 1))  # from 0.87
    with pytest.raises(ConfigError, match="self_imitation_rehearsal must be a finite number"):
        GRPOConfig(self_imitation_rehearsal=-1.0)


def test_a_successes_steps_after_its_checked_state_last_changed_are_not_reinforced():
    """fill_form: submitted at step 1, then typing on into a field; those later steps
    change nothing the checks read (the last submission) and get no positive advantage
    with skip_after_checked. Without deltas, or with a check of another getter, every
    step stays."""
    import dataclasses

    from deskdojo.agent.train.grpo import last_checked_step
    from deskdojo.core.types import Check

    task = Task(id="f", instruction="fill it", family="fill_form",
                checks=(Check("app_state", "equals", {"app": "form", "path": "submissions.-1.Venue"}, "Cork"),))
    deltas = [{"apps": {"form": {"changed": {"values.Venue": ["", "Cork"]}}}},
              {"apps": {"form": {"changed": {"submissions": [[], [{"Venue": "Cork"}]], "submitted": [False, True]}}}},
              {"apps": {"form": {"changed": {"values.Venue": ["Cork", "CorkGent"]}}}},
              {}]
    _, trajectory, _ = make_rollout(task, "won", [((1,), (-0.1,))] * 4, success=True)
    trajectory = dataclasses.replace(trajectory, steps=tuple(dataclasses.replace(step, delta=delta)
                                                            for step, delta in zip(trajectory.steps, deltas)))
    assert last_checked_step(task, trajectory) == 1
    failing = make_rollout(task, "lost", [((2,), (-0.1,))], success=False)
    won = (task, trajectory, make_rollout(task, "won", [], success=True)[2])
    config = GRPOConfig(**NO_SHAPING, negative_scale=0.0, skip_after_checked=True)
    steps = [s.step_index for s in build_samples([[won, failing]], config).samples if s.advantage > 0]
    assert steps == [0, 1]
    assert [s.step_index for s in build_samples([[won, failing]], config.replace(skip_after_checked=False)).samples
            if s.advantage > 0] == [0, 1, 2, 3]
    undelta = dataclasses.replace(trajectory, steps=tuple(dataclasses.replace(s, delta=None) for s in trajectory.steps))
    assert last_checked_step(task, undelta) is None
    other = dataclasses.replace(task, checks=task.checks + (Check("file_text", "equals", {"path": "a.txt"}, "x"),))
    assert last_checked_step(other, trajectory) is None
    deeper = dataclasses.replace(task, checks=(Check("app_state", "equals", {"app": "form", "path": "values"}, {}),))
    assert last_checked_step(deeper, trajectory) == 2  # values.Venue lies inside the checked values
