"""Gradient checkpointing on the tiny preset: the same loss and gradients as without it
(full fine-tune and LoRA), layers that really recompute in the backward pass even while
the model is in eval mode (how GRPO trains), generation that keeps its KV cache, the
flag surviving save -> load, and the shipped real-model configs asking for it."""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import pytest

from deskdojo.agent.policy import LoraSettings, PolicyConfig, PolicySample, VLMPolicy, load_policy
from deskdojo.core.errors import ConfigError
from deskdojo.core.types import Observation, Task

REPO = Path(__file__).resolve().parents[1]
SCREEN = (1024, 768)
TASK = Task(id="t", instruction="Click the red square.", family="click-target")
SMALL = PolicyConfig(max_new_tokens=6, max_pixels=28 * 28 * 48, temperature=0.0)
LORA = LoraSettings(r=4, alpha=8)
ATOL = 1e-5


def observation(seed: int) -> Observation:
    rng = np.random.default_rng(seed)
    frame = np.full((SCREEN[1], SCREEN[0], 3), 128, dtype=np.uint8)
    x, y = int(rng.integers(0, 900)), int(rng.integers(0, 650))
    frame[y:y + 100, x:x + 100] = (220, 40, 40)
    return Observation(frame, SCREEN)


SAMPLES = [PolicySample((observation(0),), TASK, target_text="click <x3> <y5>"),
           PolicySample((observation(1),), TASK, target_text="click <x10> <y1>")]


def loss_and_grads(policy: VLMPolicy) -> tuple[float, dict[str, np.ndarray]]:
    """A GRPO-like step: the mean target log-prob's loss and every trainable gradient."""
    policy.model.zero_grad(set_to_none=True)
    batch = policy.encode_samples(SAMPLES)
    logp, mask = policy.token_logprobs(batch)
    loss = -(logp.sum() / mask.sum())
    loss.backward()
    grads = {name: p.grad.detach().clone().numpy() for name, p in policy.model.named_parameters()
             if p.requires_grad and p.grad is not None}
    return float(loss.detach()), grads


@contextlib.contextmanager
def counting_mlp_forwards(policy: VLMPolicy) -> Iterator[list[int]]:
    """Counts calls of the first decoder layer's MLP (a recompute calls it again). The
    instance's ``forward`` is wrapped: module hooks do not fire during the recompute."""
    layer = next(m for name, m in policy.model.named_modules() if name.endswith("language_model.layers.0"))
    calls = [0]
    forward = layer.mlp.forward

    def counted(*args: Any, **kwargs: Any) -> Any:
        calls[0] += 1
        return forward(*args, **kwargs)

    layer.mlp.forward = counted
    try:
        yield calls
    finally:
        del layer.mlp.forward


def set_adapter_weights(policy: VLMPolicy, seed: int) -> None:
    """The same adapter weights in every policy (peft draws lora_A from the global RNG),
    with a non-zero lora_B (peft's zero start would leave lora_A's gradient zero)."""
    import torch

    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in policy.model.named_parameters():
            if "lora_" in name:
                p.copy_(torch.randn(p.shape, generator=generator) * 0.05)


def test_full_fine_tune_gives_the_same_loss_and_grads_and_really_recomputes():
    plain = load_policy("tiny-scratch", SMALL)
    checkpointed = load_policy("tiny-scratch", SMALL.replace(gradient_checkpointing=True))
    assert not plain.gradient_checkpointing and not plain.model.is_activation_checkpointing
    assert checkpointed.gradient_checkpointing and checkpointed.model.is_activation_checkpointing
    assert not checkpointed.model.training  # GRPO trains in eval mode: checkpointing must still act
    with counting_mlp_forwards(plain) as plain_calls, counting_mlp_forwards(checkpointed) as checkpointed_calls:
        plain_loss, plain_grads = loss_and_grads(plain)
        loss, grads = loss_and_grads(checkpointed)
    assert plain_calls[0] == 1 and checkpointed_calls[0] == 2  # the backward pass ran the layer again
    assert not checkpointed.model.training
    assert not any(m.training for m in checkpointed._checkpointing_modules())  # flags restored
    assert abs(loss - plain_loss) <= ATOL and loss > 0
    assert plain_grads.keys() == grads.keys() and len(grads) == len(list(plain.model.parameters()))
    for name in ("model.language_model.layers.0.mlp.down_proj.weight",
                 "model.language_model.layers.1.self_attn.q_proj.weight",
                 "model.visual.blocks.0.mlp.up_proj.weight", "lm_head.weight"):
        assert name in grads and np.abs(grads[name]).max() > 0, name
    for name, grad in grads.items():
        assert np.allclose(grad, plain_grads[name], atol=ATOL), name


def test_lora_adapters_get_the_same_nonzero_grads_with_checkpointing():
    plain = load_policy("tiny-scratch", SMALL.replace(lora=LORA))
    checkpointed = load_policy("tiny-scratch", SMALL.replace(lora=LORA, gradient_checkpointing=True))
    assert checkpointed.lora is not None and checkpointed.model.get_base_model().is_activation_checkpointing
    set_adapter_weights(plain, seed=7)
    set_adapter_weights(checkpointed, seed=7)
    plain_loss, plain_grads = loss_and_grads(plain)
    with counting_mlp_forwards(checkpointed) as calls:
        loss, grads = loss_and_grads(checkpointed)
    assert calls[0] == 2
    assert abs(loss - plain_loss) <= ATOL
    assert grads and all("lora_" in name for name in grads)  # the base stays frozen
    assert grads.keys() == plain_grads.keys()
    for kind in ("lora_A", "lora_B"):
        assert any(kind in name for name in grads), kind
    for name, grad in grads.items():
        assert np.abs(grad).max() > 0, name
        assert np.allclose(grad, plain_grads[name], atol=ATOL), name


def test_lora_put_on_after_loading_keeps_checkpointing_and_grads():
    policy = load_policy("tiny-scratch", SMALL.replace(gradient_checkpointing=True))
    policy.enable_lora(LORA)
    set_adapter_weights(policy, seed=3)
    with counting_mlp_forwards(policy) as calls:
        _, grads = loss_and_grads(policy)
    assert calls[0] == 2
    assert grads and all(np.abs(g).max() > 0 for g in grads.values())


@pytest.mark.parametrize("train_mode", [False, True])
def test_acting_keeps_the_kv_cache_and_gives_the_same_decisions(train_mode, caplog):
    from transformers.utils import logging as transformers_logging

    plain = load_policy("tiny-scratch", SMALL)
    checkpointed = load_policy("tiny-scratch", SMALL.replace(gradient_checkpointing=True))
    for policy in (plain, checkpointed):
        policy.model.train(train_mode)  # the tiny model has no dropout, so modes agree
    observations = [observation(i) for i in range(2)]
    transformers_logging.enable_propagation()
    try:
        with caplog.at_level("WARNING"):
            expected = plain.act(observations, [TASK] * 2, [(), ()])
            decisions = checkpointed.act(observations, [TASK] * 2, [(), ()])
    finally:
        transformers_logging.disable_propagation()
    assert not [r for r in caplog.records if "checkpointing" in r.getMessage()]
    assert all(len(d.token_ids) == 6 or d.token_ids[-1] == checkpointed.end_token_id for d in decisions)
    for got, want in zip(decisions, expected):
        assert got.token_ids == want.token_ids
        assert np.allclose(got.logprobs, want.logprobs, atol=1e-4)
    assert checkpointed.model.training == train_mode
    assert all(m.training == train_mode for m in checkpointed._checkpointing_modules())


def test_saving_records_the_flag_and_loading_keeps_it(tmp_path):
    full = load_policy("tiny-scratch", SMALL.replace(gradient_checkpointing=True))
    full.save(tmp_path / "full")
    assert load_policy(str(tmp_path / "full"), SMALL).gradient_checkpointing
    off = load_policy(str(tmp_path / "full"), SMALL.replace(gradient_checkpointing=False))
    assert not off.gradient_checkpointing and not off.model.is_activation_checkpointing
    adapter = load_policy("tiny-scratch", SMALL.replace(lora=LORA, gradient_checkpointing=True))
    adapter.save(tmp_path / "adapter")
    again = load_policy(str(tmp_path / "adapter"), SMALL)
    assert again.lora is not None and again.gradient_checkpointing
    assert again.model.get_base_model().is_activation_checkpointing
    assert not load_policy(str(tmp_path / "adapter"), SMALL.replace(gradient_checkpointing=False)) \
        .model.get_base_model().is_activation_checkpointing
    plain = load_policy("tiny-scratch", SMALL)
    plain.save(tmp_path / "plain")
    assert not load_policy(str(tmp_path / "plain"), SMALL).gradient_checkpointing


@pytest.mark.parametrize("value", ["yes", 1, 0.0, [True]])
def test_the_config_takes_only_a_bool(value):
    with pytest.raises(ConfigError, match="gradient_checkpointing"):
        PolicyConfig(gradient_checkpointing=value)
    with pytest.raises(ConfigError, match="gradient_checkpointing"):
        PolicyConfig.from_dict({"gradient_checkpointing": value})
    assert PolicyConfig.from_dict({"gradient_checkpointing": True}).gradient_checkpointing is True
    assert PolicyConfig().gradient_checkpointing is None


@pytest.mark.parametrize("name", ["qwen2.5-vl-3b", "qwen2.5-vl-7b", "ui-tars-1.5-7b"])
def test_the_real_model_configs_ask_for_checkpointing(name):
    from deskdojo.evolve.build import policy_config
    from deskdojo.evolve.config import load_config

    settings = policy_config(load_config(REPO / "configs" / f"{name}.yaml"))
    assert settings.gradient_checkpointing is True
    assert settings.dtype == "bfloat16" and settings.lora is not None
