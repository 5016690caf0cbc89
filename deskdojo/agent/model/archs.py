"""``random:ARCH`` models: a published architecture, full size, with seeded random weights.

They answer "what does one GRPO iteration of this model cost on this GPU?" (memory,
generation speed, update time) without a hub download: every size of the network is
the published checkpoint's, only the weights are random and the tokenizer is the one
shipped for the tiny preset (its ids fit inside the published vocabulary; sampled ids
beyond it decode to nothing). ``random:qwen2.5-vl-3b?layers=2&vision_depth=1`` keeps the
widths and cuts the depth: a CPU-sized smoke check of the same code path.

The sizes are those of the checkpoints' config.json files (Qwen2.5-VL-3B-Instruct:
3,754,622,976 parameters; UI-TARS-1.5-7B has Qwen2.5-VL-7B's architecture).
"""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qsl

from deskdojo.core.errors import ConfigError

RANDOM_PREFIX = "random:"

_QWEN25_VISION = dict(depth=32, hidden_size=1280, intermediate_size=3420, num_heads=16, window_size=112,
                      fullatt_block_indexes=[7, 15, 23, 31], patch_size=14, spatial_merge_size=2,
                      temporal_patch_size=2)

ARCHS: dict[str, dict[str, Any]] = {
    "qwen2.5-vl-3b": dict(
        model_type="qwen2_5_vl", tie_word_embeddings=True,
        text=dict(vocab_size=151936, hidden_size=2048, intermediate_size=11008, num_hidden_layers=36,
                  num_attention_heads=16, num_key_value_heads=2, rope_theta=1e6, mrope_section=[16, 24, 24]),
        vision={**_QWEN25_VISION, "out_hidden_size": 2048}),
    "qwen2.5-vl-7b": dict(
        model_type="qwen2_5_vl", tie_word_embeddings=False,
        text=dict(vocab_size=152064, hidden_size=3584, intermediate_size=18944, num_hidden_layers=28,
                  num_attention_heads=28, num_key_value_heads=4, rope_theta=1e6, mrope_section=[16, 24, 24]),
        vision={**_QWEN25_VISION, "out_hidden_size": 3584}),
}
"""Published architectures by name (``random:NAME``)."""

OVERRIDES = ("layers", "vision_depth")
"""What ``?key=value`` may change: depths only, so every matrix keeps its published shape."""


def is_random(model: str) -> bool:
    return model.startswith(RANDOM_PREFIX)


def parse_random(model: str) -> tuple[str, dict[str, int]]:
    """``random:NAME[?layers=N&vision_depth=M]`` -> (NAME, overrides)."""
    name, _, query = model[len(RANDOM_PREFIX):].partition("?")
    if name not in ARCHS:
        raise ConfigError(f"unknown architecture {name!r} in {model!r}; known: "
                          f"{', '.join(RANDOM_PREFIX + a for a in ARCHS)}")
    overrides: dict[str, int] = {}
    for key, value in parse_qsl(query, keep_blank_values=True, strict_parsing=bool(query)):
        if key not in OVERRIDES:
            raise ConfigError(f"{model!r}: {key!r} cannot be changed; only {', '.join(OVERRIDES)} "
                              f"(depths), e.g. random:{name}?layers=2&vision_depth=1")
        if not value.isdigit() or int(value) < 1:
            raise ConfigError(f"{model!r}: {key} must be a whole number >= 1, got {value!r}")
        overrides[key] = int(value)
    return name, overrides


def random_config(model: str, tokenizer: Any) -> Any:
    """The transformers config of ``model`` (a ``random:`` name) for ``tokenizer``'s special tokens."""
    from transformers import Qwen2_5_VLConfig

    from deskdojo.agent.model.tiny import special_token_ids

    name, overrides = parse_random(model)
    arch = ARCHS[name]
    if len(tokenizer) > arch["text"]["vocab_size"]:
        raise ConfigError(f"the tokenizer has {len(tokenizer)} tokens, more than {name}'s vocabulary")
    text = dict(arch["text"])
    rope = {"rope_type": "default", "rope_theta": text.pop("rope_theta"), "mrope_section": text.pop("mrope_section")}
    text.update(max_position_embeddings=128000, rope_parameters=rope, bos_token_id=None,
                eos_token_id=tokenizer.convert_tokens_to_ids("<|im_end|>"), pad_token_id=tokenizer.pad_token_id)
    vision = dict(arch["vision"])
    if "layers" in overrides:
        text["num_hidden_layers"] = overrides["layers"]
    if "vision_depth" in overrides:
        depth = overrides["vision_depth"]
        vision["depth"] = depth
        vision["fullatt_block_indexes"] = [i for i in vision["fullatt_block_indexes"] if i < depth] or [depth - 1]
    return Qwen2_5_VLConfig(text_config=text, vision_config=vision,
                            tie_word_embeddings=arch["tie_word_embeddings"], **special_token_ids(tokenizer))


def build_random_model(model: str, tokenizer: Any, *, seed: int, dtype: Any, device: str) -> Any:
    """The model with seeded random weights, built directly on ``device`` in ``dtype``
    (a 3B model is initialised on the GPU in seconds, not copied from the CPU)."""
    import torch
    from transformers import Qwen2_5_VLForConditionalGeneration

    config = random_config(model, tokenizer)
    devices = [] if device == "cpu" else [torch.device(device)]
    with torch.random.fork_rng(devices=devices), torch.device(device):
        torch.manual_seed(seed)
        built = Qwen2_5_VLForConditionalGeneration._from_config(config, dtype=dtype)
    built.eval()
    return built
