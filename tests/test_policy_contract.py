"""The Policy contract (``core.protocols.Policy``), run by the fake and the real policy alike:
one Decision per observation, windows of ``history_k`` screens, greedy decoding that
repeats itself, and a sampling stream that a saved ``rng_state`` replays exactly."""

from __future__ import annotations

import numpy as np
import pytest

from deskdojo.core.actions import Action, Click
from deskdojo.core.elements import OBSERVATION_MODES
from deskdojo.core.fakes import ScriptedPolicy
from deskdojo.core.protocols import Decision, Policy
from deskdojo.core.types import Observation, Task

SCREEN = (64, 48)


def _observation(seed: int) -> Observation:
    rng = np.random.default_rng(seed)
    pixels = rng.integers(0, 255, (SCREEN[1], SCREEN[0], 3), dtype=np.uint8)
    return Observation(screenshot=pixels, screen_size=SCREEN)


TASKS = [Task(id=f"t{i}", instruction=f"click the button number {i}", family="contract",
              oracle=(Click(5 + i, 7),)) for i in range(3)]


@pytest.fixture(scope="module", params=["scripted", "tiny-vlm"])
def policy(request) -> Policy:
    if request.param == "scripted":
        return ScriptedPolicy()
    from deskdojo.agent.policy import PolicyConfig, load_policy

    return load_policy("tiny-scratch", PolicyConfig(max_new_tokens=8, history_k=2, temperature=1.0))


def _inputs(policy: Policy, k: int | None = None):
    k = policy.history_k if k is None else k
    observations = [tuple(_observation(10 * i + j) for j in range(k)) if k > 1 else _observation(10 * i)
                    for i in range(len(TASKS))]
    return observations, TASKS, [[] for _ in TASKS]


def test_it_is_a_policy(policy):
    assert isinstance(policy, Policy)
    assert isinstance(policy.policy_id, str) and policy.policy_id
    assert isinstance(policy.history_k, int) and policy.history_k >= 1
    assert policy.observation in OBSERVATION_MODES


def test_one_decision_per_observation_in_order(policy):
    decisions = policy.act(*_inputs(policy))
    assert len(decisions) == len(TASKS)
    for decision in decisions:
        assert isinstance(decision, Decision) and isinstance(decision.text, str)
        assert decision.action is None or isinstance(decision.action, Action)
        if decision.action is None:  # a model mistake is data, with its reason
            assert decision.parse_error
        assert len(decision.token_ids) == len(decision.logprobs)


def test_windows_shorter_than_history_k_are_accepted(policy):
    """At an episode's start the rollout has fewer screens than history_k."""
    observations = [(_observation(1),) for _ in TASKS] if policy.history_k > 1 else [_observation(1)] * len(TASKS)
    assert len(policy.act(observations, TASKS, [[] for _ in TASKS])) == len(TASKS)


def test_greedy_decoding_repeats_itself(policy):
    policy.set_greedy(True)
    try:
        first = [d.text for d in policy.act(*_inputs(policy))]
        second = [d.text for d in policy.act(*_inputs(policy))]
    finally:
        policy.set_greedy(False)
    assert first == second


def test_a_saved_rng_state_replays_the_same_samples(policy):
    state = policy.rng_state()
    first = [(d.text, d.token_ids) for d in policy.act(*_inputs(policy))]
    policy.set_rng_state(state)
    again = [(d.text, d.token_ids) for d in policy.act(*_inputs(policy))]
    assert again == first
