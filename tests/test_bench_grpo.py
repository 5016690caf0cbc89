"""``random:ARCH`` models (published sizes, random weights) and ``deskdojo bench grpo``."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from deskdojo.agent.model.archs import parse_random, random_config
from deskdojo.agent.model.loading import load_tokenizer
from deskdojo.agent.tiny import TINY_DIR
from deskdojo.cli import main
from deskdojo.core.errors import ConfigError


@pytest.fixture(scope="module")
def tokenizer():
    return load_tokenizer(TINY_DIR, local=True)


@pytest.mark.parametrize("name,parameters,vision", [
    ("qwen2.5-vl-3b", 3_754_622_976, 668_684_288),  # Qwen2.5-VL-3B-Instruct's count
    ("qwen2.5-vl-7b", 8_292_166_656, 676_550_144),  # Qwen2.5-VL-7B-Instruct's (and UI-TARS-1.5-7B's)
])
def test_random_architectures_have_the_published_parameter_counts(tokenizer, name, parameters, vision):
    from transformers import Qwen2_5_VLForConditionalGeneration

    config = random_config(f"random:{name}", tokenizer)
    with torch.device("meta"):  # shapes only: no memory, no init
        model = Qwen2_5_VLForConditionalGeneration(config)
    assert sum(p.numel() for p in model.parameters()) == parameters
    assert sum(p.numel() for n, p in model.named_parameters() if "visual" in n) == vision
    # the shipped tokenizer's special tokens are the ones the model looks for
    assert config.image_token_id == tokenizer.convert_tokens_to_ids("<|image_pad|>")


def test_depth_overrides_keep_every_width(tokenizer):
    full = random_config("random:qwen2.5-vl-3b", tokenizer)
    cut = random_config("random:qwen2.5-vl-3b?layers=2&vision_depth=3", tokenizer)
    assert (cut.text_config.num_hidden_layers, cut.vision_config.depth) == (2, 3)
    assert cut.vision_config.fullatt_block_indexes == [2]  # 7, 15, 23, 31 are gone: the last block attends fully
    for key in ("hidden_size", "intermediate_size", "num_attention_heads", "num_key_value_heads", "vocab_size"):
        assert getattr(cut.text_config, key) == getattr(full.text_config, key)
    assert cut.vision_config.hidden_size == full.vision_config.hidden_size == 1280


@pytest.mark.parametrize("model,needle", [
    ("random:qwen9-vl", "unknown architecture 'qwen9-vl'"),
    ("random:qwen2.5-vl-3b?hidden_size=64", "'hidden_size' cannot be changed"),
    ("random:qwen2.5-vl-3b?layers=0", "layers must be a whole number >= 1"),
    ("random:qwen2.5-vl-3b?layers=two", "layers must be a whole number >= 1"),
])
def test_bad_random_names_say_what_is_allowed(model, needle):
    with pytest.raises(ConfigError, match=needle.replace("?", r"\?")):
        parse_random(model)


def test_bench_grpo_runs_one_iteration_of_a_cut_down_3b_and_reports_it(capsys):
    """The 3B config's settings (LoRA r16, checkpointing, its format) on the 3B's widths
    with 1 text and 1 vision block, on the CPU: the GPU measurement's code path."""
    config = Path(__file__).resolve().parents[1] / "configs" / "qwen2.5-vl-3b.yaml"
    code = main(["bench", "grpo", "--config", str(config),
                 "--model", "random:qwen2.5-vl-3b?layers=1&vision_depth=1", "--device", "cpu",
                 "--dtype", "float32", "--max-new-tokens", "4", "--group-size", "2", "--repeats", "1",
                 "--screen", "224x224", "--json"])
    assert code == 0
    result = json.loads(capsys.readouterr().out)
    assert result["config"] == str(config)
    assert result["model"] == "random:qwen2.5-vl-3b?layers=1&vision_depth=1"
    assert result["lora_r"] == 16 and result["gradient_checkpointing"] is True
    # 3B widths: embeddings 151936 x 2048 (tied), one decoder layer, one vision block, merger
    assert 400e6 < result["parameters"] < 500e6
    assert 0 < result["trainable_parameters"] < result["parameters"] / 100
    assert result["samples_per_update"] == 2
    assert result["tokens_per_update"] == 2 * 4  # random weights never end an answer early
    assert len(result["iterations"]) == 2  # warm-up and one measured
    for row in result["iterations"]:
        assert row["tokens_per_s"] > 0 and row["update_s"] > 0
        assert row["grad_norm"] > 0  # the update reached the adapters
    assert result["peak_memory"] == "process_rss" and result["update_peak_gib"] > 1.0  # 447 M float32 weights
