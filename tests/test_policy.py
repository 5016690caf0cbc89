"""The VLM policy on the tiny presets: offline loading, batched acting whose stored
log-probs GRPO can recompute, parse errors as data, LoRA on the language model only,
and save -> load giving the same outputs."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from deskdojo.agent.policy import (LoraSettings, PolicyConfig, PolicySample, VLMPolicy, load_policy)
from deskdojo.core.actions import Click
from deskdojo.core.errors import ConfigError
from deskdojo.core.protocols import Decision, Policy
from deskdojo.core.types import Observation, Task

REPO = Path(__file__).resolve().parents[1]
SCREEN = (1024, 768)
TASK = Task(id="t", instruction="Click the red square.", family="click-target")


def observation(seed: int, *, error: str | None = None) -> Observation:
    rng = np.random.default_rng(seed)
    frame = np.full((SCREEN[1], SCREEN[0], 3), 128, dtype=np.uint8)
    x, y = int(rng.integers(0, 900)), int(rng.integers(0, 650))
    frame[y:y + 100, x:x + 100] = (220, 40, 40)
    return Observation(frame, SCREEN, action_error=error)


@pytest.fixture(scope="module")
def policy() -> VLMPolicy:
    return load_policy("tiny-scratch", PolicyConfig(max_new_tokens=12))


def test_tiny_loads_offline_without_network_or_torchvision(tmp_path):
    script = """
import json, socket, sys
def refuse(*args, **kwargs):
    raise OSError("network access attempted")
socket.socket.connect = refuse
socket.create_connection = refuse
from deskdojo.agent.policy import load_policy
policy = load_policy("tiny-scratch")
print(json.dumps({"torchvision": "torchvision" in sys.modules, "type": type(policy.model).__name__,
                  "params": sum(p.numel() for p in policy.model.parameters()),
                  "format": policy.format.name, "processor": type(policy.processor).__name__}))
"""
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "HF_HOME": str(tmp_path)}
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env,
                         cwd=REPO, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    info = json.loads(out.stdout.strip().splitlines()[-1])
    assert info == {"torchvision": False, "type": "Qwen2_5_VLForConditionalGeneration",
                    "params": info["params"], "format": "grid",
                    "processor": "ImagesOnlyQwen2_5_VLProcessor"}
    assert 1_000_000 < info["params"] < 5_000_000


def test_the_tiny_preset_is_seeded_and_sized_as_documented(policy):
    config = policy.model.config
    text = config.text_config
    head_dim = text.hidden_size // text.num_attention_heads
    assert sum(text.rope_parameters["mrope_section"]) * 2 == head_dim
    assert policy.model_type == "qwen2_5_vl" and isinstance(policy, Policy)
    # the budget: a 1024x768 screen is 448x336, 192 image tokens
    batch = policy.encode_samples([PolicySample((observation(0),), TASK, target_text="done")])
    assert int((batch.inputs["input_ids"] == config.image_token_id).sum()) == 192
    again = load_policy("tiny-scratch")
    other = load_policy("tiny-scratch", PolicyConfig(seed=1))
    first = next(iter(policy.model.state_dict().values()))
    assert first.equal(next(iter(again.model.state_dict().values())))
    assert not first.equal(next(iter(other.model.state_dict().values())))


def test_a_batch_of_three_gives_three_decisions_whose_logprobs_recompute(policy):
    import torch

    observations = [observation(i) for i in range(3)]
    histories = [(), (Decision(text="click <x1> <y2>", action=Click(24, 40)),), ()]
    decisions = policy.act(observations, [TASK] * 3, histories)
    assert len(decisions) == 3
    for decision in decisions:
        assert 1 <= len(decision.token_ids) <= 12 and len(decision.logprobs) == len(decision.token_ids)
        assert all(lp <= 0 for lp in decision.logprobs)
        assert (decision.action is None) != (decision.parse_error is None)
    samples = [PolicySample((o,), TASK, h, target_ids=d.token_ids)
               for o, h, d in zip(observations, histories, decisions)]
    batch = policy.encode_samples(samples)
    logp, mask = policy.token_logprobs(batch)
    assert logp.requires_grad and logp.shape == mask.shape
    with torch.no_grad():
        for i, decision in enumerate(decisions):
            n = len(decision.token_ids)
            assert int(mask[i].sum()) == n
            assert np.allclose(logp[i, :n].numpy(), decision.logprobs, atol=1e-4), i
            assert batch.target_ids[i, :n].tolist() == list(decision.token_ids)


def test_image_marker_tokens_are_never_sampled_and_never_trained_on():
    """A policy that wants to say <|image_pad|> (here: +50 on its logit) must not: fed
    back for training, the answer would count as one image token too many."""
    import torch

    from deskdojo.agent.policy import VISION_TOKENS
    from deskdojo.core.errors import RecordError

    tempted = load_policy("tiny-scratch", PolicyConfig(max_new_tokens=6, seed=4))
    pad = tempted.tokenizer.convert_tokens_to_ids("<|image_pad|>")
    assert len(tempted.unsayable_ids) == len(VISION_TOKENS) and pad in tempted.unsayable_ids

    def push(module, inputs, output):
        output = output.clone()
        output[..., pad] += 50.0
        return output

    handle = tempted.model.get_output_embeddings().register_forward_hook(push)
    try:
        decisions = tempted.act([observation(1), observation(2)], [TASK] * 2, [(), ()])
        for decision in decisions:
            assert len(decision.token_ids) == 6 and not set(decision.token_ids) & set(tempted.unsayable_ids)
        batch = tempted.encode_samples([PolicySample((observation(1),), TASK, target_ids=decisions[0].token_ids)])
        with torch.no_grad():
            logp, _ = tempted.token_logprobs(batch)
        assert np.allclose(logp[0].numpy(), decisions[0].logprobs, atol=1e-4)  # the same distribution
    finally:
        handle.remove()
    with pytest.raises(RecordError, match="image-marker token"):
        tempted.encode_samples([PolicySample((observation(1),), TASK, target_ids=(5, pad, tempted.end_token_id))])


def test_temperature_changes_the_stored_logprobs_the_same_way():
    import torch

    hot = load_policy("tiny-scratch", PolicyConfig(temperature=2.0, max_new_tokens=6, seed=3))
    decisions = hot.act([observation(5)], [TASK], [()])
    batch = hot.encode_samples([PolicySample((observation(5),), TASK, target_ids=decisions[0].token_ids)])
    with torch.no_grad():
        logp, _ = hot.token_logprobs(batch)
        plain, _ = hot.token_logprobs(batch, temperature=1.0)
    n = len(decisions[0].token_ids)
    assert np.allclose(logp[0, :n].numpy(), decisions[0].logprobs, atol=1e-4)
    assert not np.allclose(plain[0, :n].numpy(), decisions[0].logprobs, atol=1e-3)


def test_garbage_output_is_a_parse_error_not_an_exception(policy):
    ids = policy.tokenizer("no action here at all", add_special_tokens=False)["input_ids"]
    prompt = policy._prompt([observation(0)], TASK, ())
    decision = policy._decision(ids + [policy.end_token_id], [-1.0] * (len(ids) + 1), prompt)
    assert decision.action is None and "action verb" in decision.parse_error
    assert decision.text == "no action here at all"
    good = policy.tokenizer("click <x3> <y4>", add_special_tokens=False)["input_ids"]
    decision = policy._decision(good + [policy.end_token_id, 7, 7], [-0.5] * (len(good) + 3), prompt)
    assert decision.action == Click(56, 72) and decision.parse_error is None
    assert decision.token_ids[-1] == policy.end_token_id and len(decision.logprobs) == len(good) + 1
    # the random tiny model writes garbage: every decision is an action or an error, never a raise
    decisions = policy.act([observation(i, error="click at (2000, 5) is off screen") for i in range(2)],
                           [TASK] * 2, [(), ()])
    assert all(d.parse_error for d in decisions if d.action is None)


def test_the_prompt_holds_task_history_screenshots_and_the_last_error():
    policy = load_policy("tiny-scratch", PolicyConfig(history_k=2))
    history = (Decision(text="click <x1> <y2>", action=Click(24, 40)), Decision(text="??", action=None))
    prompt = policy._prompt([observation(0), observation(1, error="refused")], TASK, history)
    assert "Task: Click the red square." in prompt.text
    assert "1. click <x1> <y2>" in prompt.text and "2. (an answer that did not parse)" in prompt.text
    assert "The last action failed: refused" in prompt.text and prompt.text.count("<|vision_start|>") == 2
    assert len(prompt.images) == 2 and prompt.image == (448, 336)
    assert policy.format.prompt(screen=SCREEN, image=(448, 336)) in prompt.text


def test_a_tiny_qwen2_vl_builds_and_acts():
    import torch

    policy = load_policy("tiny-qwen2vl", PolicyConfig(max_new_tokens=5))
    assert type(policy.model).__name__ == "Qwen2VLForConditionalGeneration"
    decisions = policy.act([observation(0), observation(1)], [TASK] * 2, [(), ()])
    assert len(decisions) == 2 and all(1 <= len(d.token_ids) <= 5 for d in decisions)
    batch = policy.encode_samples([PolicySample((observation(0),), TASK, target_ids=decisions[0].token_ids)])
    with torch.no_grad():
        logp, _ = policy.token_logprobs(batch)
    n = len(decisions[0].token_ids)
    assert np.allclose(logp[0, :n].numpy(), decisions[0].logprobs, atol=1e-4)


def test_lora_adapts_the_language_model_only_and_can_be_switched_off():
    import torch

    policy = load_policy("tiny-scratch", PolicyConfig(max_new_tokens=4, lora=LoraSettings(r=4, alpha=8)))
    adapted = [name for name, _ in policy.model.named_modules() if name.endswith(".lora_A")]
    assert adapted and not [name for name in adapted if "visual" in name]
    for target in LoraSettings().targets:
        assert any(f".{target}.lora_A" in name for name in adapted), target
    trainable = [name for name, p in policy.model.named_parameters() if p.requires_grad]
    assert trainable and all("lora_" in name and "visual" not in name for name in trainable)
    batch = policy.encode_samples([PolicySample((observation(0),), TASK, target_text="click <x3> <y4>")])
    with torch.no_grad():
        before, _ = policy.token_logprobs(batch)
        for name, parameter in policy.model.named_parameters():
            if "lora_B" in name:
                parameter.add_(0.05)
        after, _ = policy.token_logprobs(batch)
        with policy.adapters_disabled():
            reference, _ = policy.token_logprobs(batch)
    assert not torch.allclose(before, after, atol=1e-4)
    assert torch.allclose(before, reference, atol=1e-6)
    with pytest.raises(ConfigError, match="already"):
        policy.enable_lora()


@pytest.mark.parametrize("lora", [False, True], ids=["full", "lora"])
def test_save_then_load_gives_identical_outputs(tmp_path, lora):
    import torch

    config = PolicyConfig(max_new_tokens=8, seed=11, lora=LoraSettings(r=4, alpha=8) if lora else None)
    policy = load_policy("tiny-scratch", config)
    with torch.no_grad():  # move away from the seeded init so the weights must come from disk
        for name, parameter in policy.model.named_parameters():
            if not lora or "lora_B" in name:
                parameter.add_(torch.randn_like(parameter) * 0.02)
    policy.save(tmp_path / "saved")
    assert (tmp_path / "saved" / "deskdojo_policy.json").exists()
    if lora:
        assert (tmp_path / "saved" / "adapter").is_dir() and not (tmp_path / "saved" / "model.safetensors").exists()
    loaded = load_policy(str(tmp_path / "saved"), PolicyConfig(max_new_tokens=8, seed=11))
    assert loaded.format.name == "grid" and (loaded.min_pixels, loaded.max_pixels) == (
        policy.min_pixels, policy.max_pixels)
    assert (loaded.lora is not None) == lora and loaded.policy_id == policy.policy_id
    assert loaded.position_code is policy.position_code is True
    observations = [observation(i) for i in range(2)]
    policy.reseed(11)
    first = policy.act(observations, [TASK] * 2, [(), ()])
    second = loaded.act(observations, [TASK] * 2, [(), ()])
    assert [d.token_ids for d in first] == [d.token_ids for d in second]
    assert np.allclose(sum((d.logprobs for d in first), ()), sum((d.logprobs for d in second), ()), atol=1e-5)


def test_the_position_code_sits_in_the_second_frame_of_the_patch_it_names(policy):
    import torch

    from deskdojo.agent.model.position_code import add_position_code, fourier_code, patch_positions

    # a 4x6-patch image (56x84 px) whose pixels say where they are: value = row * 100 + column
    rows, cols = torch.meshgrid(torch.arange(4), torch.arange(6), indexing="ij")
    image = (rows * 100 + cols).float()
    inputs = policy.processor.image_processor(
        images=[np.zeros((56, 84, 3), dtype=np.uint8)], return_tensors="pt")
    assert inputs["image_grid_thw"].tolist() == [[1, 4, 6]]
    # build pixel_values the way patchify lays them out, from the per-patch labels
    positions = patch_positions(inputs["image_grid_thw"], merge_size=2)
    labels = image[positions[:, 0], positions[:, 1]]
    # merge-window order: the first four rows are the 2x2 window at the top left
    assert labels[:6].tolist() == [0, 1, 100, 101, 2, 3]
    assert labels[-1].item() == 305
    pixel_values = labels[:, None].repeat(1, 3 * 2 * 196)
    coded = add_position_code(pixel_values, inputs["image_grid_thw"], patch_size=14, merge_size=2,
                              temporal_patch_size=2).view(-1, 3, 2, 196)
    assert torch.equal(coded[:, :, 0, :], pixel_values.view(-1, 3, 2, 196)[:, :, 0, :])  # frame 0 kept
    patch_row_2_col_5 = int((labels == 205).nonzero())
    expected = fourier_code(torch.tensor([2]), torch.tensor([5]), height=torch.tensor([4]),
                            width=torch.tensor([6]), size=3 * 196)
    assert torch.allclose(coded[patch_row_2_col_5, :, 1, :].reshape(1, -1), expected)
    assert coded[:, :, 1, :].abs().max() <= 1.0 and coded[:, :, 1, :].std() > 0.5
    codes = coded[:, :, 1, :].reshape(24, -1)
    assert torch.cdist(codes, codes).fill_diagonal_(1e9).min() > 0.5  # every patch's code differs
    # the real processor gives the same layout: frame 1 equals frame 0 before coding
    real = policy.processor.image_processor(images=[np.random.default_rng(0).integers(
        0, 255, (56, 84, 3), dtype=np.uint8)], return_tensors="pt")["pixel_values"].view(-1, 3, 2, 196)
    assert torch.equal(real[:, :, 0], real[:, :, 1])


def test_the_position_code_is_weighted_by_salience_so_plain_background_carries_none(policy):
    import torch

    from deskdojo.agent.model.position_code import add_position_code, patch_salience, patch_positions

    # a plain dark 8x8-patch screen with one bright 2x2-patch square and one faint patch
    screen = np.full((112, 112, 3), 20, dtype=np.uint8)
    screen[28:56, 56:84] = 230                      # patches rows 2-3, columns 4-5
    screen[84:98, 14:28] = 26                       # patch row 6, column 1: barely different
    inputs = policy.processor.image_processor(images=[screen], return_tensors="pt")
    grid = inputs["image_grid_thw"]
    coded = add_position_code(inputs["pixel_values"], grid, patch_size=14, merge_size=2,
                              temporal_patch_size=2).view(-1, 3, 2, 196)
    positions = patch_positions(grid, merge_size=2).tolist()
    strength = {tuple(p): coded[i, :, 1, :].abs().max().item() for i, p in enumerate(positions)}
    square = {(r, c) for r in (2, 3) for c in (4, 5)}
    assert all(strength[p] > 0.9 for p in square)              # salient: the full code
    assert {p for p, s in strength.items() if s > 1e-5} == square | {(6, 1)}  # background: none
    assert 0.0 < strength[(6, 1)] < 0.5                        # a faint patch: a weak code
    frame = inputs["pixel_values"].view(-1, 3, 2, 196)[:, :, 0, :]
    salience = patch_salience(frame, grid)
    assert salience.shape == (64,) and salience.min() < 1e-6 and salience.max() == 1.0
    # two images in one batch: each is weighed against its own dominant colour
    light = np.full((112, 112, 3), 230, dtype=np.uint8)
    both = policy.processor.image_processor(images=[screen, light], return_tensors="pt")
    both_frame = both["pixel_values"].view(-1, 3, 2, 196)[:, :, 0, :]
    assert torch.equal(patch_salience(both_frame, both["image_grid_thw"])[:64], salience)
    assert patch_salience(both_frame, both["image_grid_thw"])[64:].max() < 1e-6


def test_the_position_code_is_on_for_tiny_and_used_when_acting_and_training(policy, tmp_path):
    import torch

    assert policy.position_code is True
    assert load_policy("tiny-qwen2vl").position_code is True
    plain = load_policy("tiny-scratch", PolicyConfig(position_code=False))
    assert plain.position_code is False
    prompt = policy._prompt([observation(0)], TASK, ())
    coded = policy.model_inputs([prompt.text], [prompt.images])["pixel_values"].view(-1, 3, 2, 196)
    raw = plain.model_inputs([prompt.text], [prompt.images])["pixel_values"].view(-1, 3, 2, 196)
    assert torch.equal(coded[:, :, 0], raw[:, :, 0]) and not torch.equal(coded[:, :, 1], raw[:, :, 1])
    batch = policy.encode_samples([PolicySample((observation(0),), TASK, target_text="done")])
    assert torch.equal(batch.inputs["pixel_values"].view(-1, 3, 2, 196), coded)
    plain.save(tmp_path / "plain")
    assert load_policy(str(tmp_path / "plain")).position_code is False


def test_greedy_mode_and_the_sampling_stream_can_be_saved_and_restored():
    hot = load_policy("tiny-scratch", PolicyConfig(temperature=1.5, max_new_tokens=6, seed=5))
    observations = [observation(i) for i in range(2)]
    hot.set_greedy(True)
    first = hot.act(observations, [TASK] * 2, [(), ()])
    again = hot.act(observations, [TASK] * 2, [(), ()])
    hot.set_greedy(False)
    assert [d.token_ids for d in first] == [d.token_ids for d in again]  # greedy ignores the stream
    assert hot.config.temperature == 1.5
    state = hot.rng_state()
    assert state == {"seed": 5, "act_calls": 2}
    sampled = hot.act(observations, [TASK] * 2, [(), ()])
    fresh = load_policy("tiny-scratch", PolicyConfig(temperature=1.5, max_new_tokens=6, seed=5))
    fresh.set_rng_state(state)
    assert [d.token_ids for d in fresh.act(observations, [TASK] * 2, [(), ()])] == [d.token_ids for d in sampled]
    with pytest.raises(ConfigError, match="act_calls"):
        fresh.set_rng_state({"calls": 3})


def test_configs_are_closed_and_checked():
    with pytest.raises(ConfigError, match="no key 'temprature'"):
        PolicyConfig.from_dict({"temprature": 0.5})
    with pytest.raises(ConfigError, match="unknown action format"):
        PolicyConfig(format="nope")
    with pytest.raises(ConfigError, match="history_k"):
        PolicyConfig(history_k=0)
    with pytest.raises(ConfigError, match="no key 'rank'"):
        LoraSettings.from_dict({"rank": 4})
    assert PolicyConfig.from_dict({"lora": {"r": 4}}).lora == LoraSettings(r=4)
    assert "visual" in LoraSettings().target_pattern()
    with pytest.raises(ConfigError, match="does not exist"):
        load_policy("/no/such/folder")


# --- the log-prob path: gather minus logsumexp, no full-vocabulary copies --------------


class FullVocabularyTensors:
    """Records ``(op, rows)`` for the ops that allocate a fresh tensor of ``rows`` x
    vocabulary entries (views and in-place results, which share an input's storage, are
    not counted); ``ops(rows)`` lists those of at least ``rows`` rows."""

    def __init__(self, vocab: int):
        from torch.utils._python_dispatch import TorchDispatchMode
        from torch.utils._pytree import tree_leaves

        counter = self
        self.made: list[tuple[str, int]] = []

        class Mode(TorchDispatchMode):
            def __torch_dispatch__(self, func, types, args=(), kwargs=None):
                import torch

                out = func(*args, **(kwargs or {}))
                inputs = {t.untyped_storage().data_ptr() for t in tree_leaves((args, kwargs))
                          if isinstance(t, torch.Tensor)}
                for t in tree_leaves(out):
                    if (isinstance(t, torch.Tensor) and t.dim() and t.shape[-1] == vocab
                            and t.untyped_storage().data_ptr() not in inputs):
                        counter.made.append((str(func), t.numel() // vocab))
                return out

        self.mode = Mode()

    def __enter__(self) -> "FullVocabularyTensors":
        self.mode.__enter__()
        return self

    def __exit__(self, *exc) -> None:
        self.mode.__exit__(*exc)

    def ops(self, rows: int) -> list[str]:
        return [op for op, n in self.made if n >= rows]


def test_logprobs_are_gather_minus_logsumexp_equal_to_log_softmax_with_no_vocabulary_copies():
    """The recorded (act) and recomputed (token_logprobs) log-probs equal the
    log_softmax formula they replace, values and gradients, and make no [B, T, V] copy of
    the logits: acting makes none at all, training only the model's own logits and the
    gradient for them (log_softmax made 4 in the forward pass and 10 in all)."""
    import torch

    from deskdojo.agent.model.logprobs import chosen_logprobs

    policy = load_policy("tiny-scratch", PolicyConfig(max_new_tokens=10, temperature=0.7, seed=2))
    vocab = policy.model.get_output_embeddings().weight.shape[0]
    observations = [observation(i) for i in range(3)]
    with FullVocabularyTensors(vocab) as acting:
        decisions = policy.act(observations, [TASK] * 3, [(), (), ()])
    steps = max(len(d.token_ids) for d in decisions)
    assert steps >= 2 and acting.ops(3 * steps) == []  # generate's own [3, V] per step only
    batch = policy.encode_samples([PolicySample((o,), TASK, target_ids=d.token_ids)
                                   for o, d in zip(observations, decisions)])
    width = batch.target_ids.shape[1]
    with FullVocabularyTensors(vocab) as training:
        logp, mask = policy.token_logprobs(batch)
        forward = training.ops(3 * width)
        torch.where(mask, logp, 0.0).sum().backward()
    everything = training.ops(3 * width)
    assert forward == ["aten.mm.default"] and len(everything) <= 2, everything  # the logits, their grad

    def log_softmax_way(logits: torch.Tensor, temperature: float) -> torch.Tensor:
        ids = torch.tensor(policy.unsayable_ids)
        scaled = logits.float().index_fill(-1, ids, float("-inf")) / temperature
        return torch.log_softmax(scaled, dim=-1).gather(-1, batch.target_ids[..., None]).squeeze(-1)

    with torch.no_grad():
        logits = policy.model(**batch.inputs, logits_to_keep=width + 1, use_cache=False).logits[:, :-1]
    assert np.allclose(logp.detach()[mask].numpy(), log_softmax_way(logits, 0.7)[mask].numpy(), atol=1e-5)
    for i, decision in enumerate(decisions):  # acting recorded the same numbers
        assert np.allclose(logp.detach()[i, :len(decision.logprobs)].numpy(), decision.logprobs, atol=1e-4)
    weights = torch.randn(mask.shape, generator=torch.Generator().manual_seed(0))
    grads = []
    for way in (lambda x: chosen_logprobs(x, batch.target_ids, temperature=0.7,
                                          suppressed_ids=policy.unsayable_ids),
                lambda x: log_softmax_way(x, 0.7)):
        leaf = logits.clone().requires_grad_(True)
        (torch.where(mask, way(leaf), 0.0) * weights).sum().backward()
        grads.append(leaf.grad)
    assert torch.allclose(grads[0], grads[1], atol=1e-6) and grads[0].abs().sum() > 0
    assert torch.isneginf(chosen_logprobs(logits, torch.full_like(batch.target_ids, policy.unsayable_ids[0]),
                                          suppressed_ids=policy.unsayable_ids)).all()


def test_without_lora_the_reference_is_a_frozen_copy_and_kl_settings_are_kept(tmp_path):
    """vlm_learner used to zero kl_beta and neg_imitation_weight when the policy had no
    LoRA; now the reference is a frozen copy of the starting weights and the settings hold."""
    import torch

    from deskdojo.evolve.learner import vlm_learner

    policy = load_policy("tiny-scratch", PolicyConfig(max_new_tokens=4))
    batch = policy.encode_samples([PolicySample((observation(0),), TASK, target_text="click <x3> <y4>")])
    with pytest.raises(ConfigError, match="keep_frozen_reference"):
        with policy.reference():
            pass
    said: list[str] = []
    learner = vlm_learner(policy, {"kl_beta": 0.05, "neg_imitation_weight": 0.3}, tmp_path, log=said.append)
    assert learner.trainer.config.kl_beta == 0.05 and learner.trainer.config.neg_imitation_weight == 0.3
    assert learner.trainer.reference_logprobs is not None
    assert len(said) == 1 and "frozen copy" in said[0] and "GiB" in said[0]
    with torch.no_grad():
        start, _ = policy.token_logprobs(batch)
        for parameter in policy.trainable_parameters():
            parameter.add_(0.01 * torch.randn_like(parameter))
        trained, _ = policy.token_logprobs(batch)
        with policy.reference():
            reference, _ = policy.token_logprobs(batch)
        after, _ = policy.token_logprobs(batch)
    assert not torch.allclose(start, trained, atol=1e-4)
    assert torch.equal(reference, start) and torch.equal(after, trained)
    assert not any(p.requires_grad for p in policy._frozen_reference.parameters())


def test_grpo_rehearses_generated_tables_on_the_real_reader_and_refuses_without_a_table(tmp_path):
    """The supervised term vlm_learner gives the trainer: the tiny reader's generated
    later steps, a function of the update's number (a resume rehearses the same), with
    grad into the adapters; refused for a policy that shows no element table."""
    import torch

    from deskdojo.evolve.learner import vlm_learner

    policy = load_policy("tiny", PolicyConfig(lora=LoraSettings(r=4, alpha=8)))
    settings = {"generated_rehearsal": 3, "kl_beta": 0.0, "neg_imitation_weight": 0.0}
    supervised = vlm_learner(policy, settings, tmp_path).trainer.supervised
    first, again, other = supervised(0), supervised(0), supervised(1)
    assert first.requires_grad and 0 < float(first.detach()) < 5
    assert float(first.detach()) == pytest.approx(float(again.detach()))
    assert float(first.detach()) != pytest.approx(float(other.detach()))
    first.backward()
    assert any(p.grad is not None and torch.count_nonzero(p.grad) for p in policy.trainable_parameters())
    pixels_only = load_policy("tiny-scratch", PolicyConfig(max_new_tokens=4))
    with pytest.raises(ConfigError, match="grpo.generated_rehearsal 3: generated rehearsal needs an observation"):
        vlm_learner(pixels_only, settings, tmp_path)
