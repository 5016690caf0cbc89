"""The ``tiny`` preset: a real Qwen2.5-VL (or Qwen2-VL) architecture at toy size, with
seeded random weights and the tokenizer shipped in ``deskdojo/agent/tiny/``.

Choices made for learnability on a CPU (see the measurements in the SFT report):

* a small pixel budget (1024x768 -> 448x336, 192 image tokens) keeps a step cheap;
* a low ``rope_theta`` (20) and ``mrope_section`` (2, 7, 7), so the rotary angles of the
  image tokens' rows and columns turn through useful ranges over a 16x12 token grid
  (at Qwen's 1e6 the column frequencies barely move across a screen);
* the grid format's coordinate tokens start with a smooth (sinusoidal) embedding of
  their cell index, in and out, so neighbouring cells start as neighbours;
* the policy writes an absolute position code into each image patch's second
  temporal frame (``position_code``, see ``deskdojo.agent.model.position_code``):
  rotary positions act only on query-key products, so without it the values a head
  reads say nothing about where the attended patch is. The code is weighted by the
  patch's salience, so that even the nearly uniform attention of an untrained model
  averages to where the non-background things are.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch

TINY_MIN_PIXELS = 28 * 28 * 4
TINY_MAX_PIXELS = 28 * 28 * 192
"""The tiny preset's pixel budget: a 1024x768 screen becomes 448x336 = 192 image tokens."""



@dataclass(frozen=True, slots=True)
class TinySpec:
    """Sizes of the tiny model (the defaults are the ``tiny`` preset: 1.9 M parameters,
    0.53 M of them in the vision tower)."""

    hidden_size: int = 128
    layers: int = 4
    heads: int = 4
    kv_heads: int = 2
    intermediate_size: int = 384
    rope_theta: float = 20.0
    mrope_section: tuple[int, int, int] = (2, 7, 7)  # t, h, w: sums to head_dim / 2
    vision_hidden_size: int = 96
    vision_depth: int = 2
    vision_heads: int = 4
    vision_intermediate_size: int = 256
    grid_init_scale: float = 1.0
    tie_embeddings: bool = False  # output layer = input embeddings (as Qwen2.5-VL-3B): a copied word can be said

    def __post_init__(self) -> None:
        head_dim = self.hidden_size // self.heads
        if sum(self.mrope_section) * 2 != head_dim:
            raise ValueError(f"mrope_section {self.mrope_section} must sum to head_dim/2 = {head_dim // 2}")


READER_SPEC = TinySpec(rope_theta=10_000.0, tie_embeddings=True)
"""The tiny reader (the ``tiny`` preset, text only): rotary angles slow enough that a head
can match a word to a row hundreds of tokens away (the pixel preset's theta of 20 turns
every dimension within a few tokens), and tied embeddings, so a word copied from the
instruction (typed text) can be said."""


def special_token_ids(tokenizer: Any) -> dict[str, int]:
    ids = {name: tokenizer.convert_tokens_to_ids(token) for name, token in (
        ("image_token_id", "<|image_pad|>"), ("video_token_id", "<|video_pad|>"),
        ("vision_start_token_id", "<|vision_start|>"), ("vision_end_token_id", "<|vision_end|>"))}
    return ids


def tiny_config(tokenizer: Any, *, spec: TinySpec = TinySpec(), model_type: str = "qwen2_5_vl") -> Any:
    """A tiny ``Qwen2_5_VLConfig`` (or ``Qwen2VLConfig``) sized for ``tokenizer``."""
    vocab = len(tokenizer)
    text = dict(vocab_size=vocab, hidden_size=spec.hidden_size, intermediate_size=spec.intermediate_size,
                num_hidden_layers=spec.layers, num_attention_heads=spec.heads,
                num_key_value_heads=spec.kv_heads, max_position_embeddings=4096,
                rope_parameters={"rope_type": "default", "rope_theta": spec.rope_theta,
                                 "mrope_section": list(spec.mrope_section)},
                bos_token_id=None, eos_token_id=tokenizer.convert_tokens_to_ids("<|im_end|>"),
                pad_token_id=tokenizer.pad_token_id)
    if model_type == "qwen2_5_vl":
        from transformers import Qwen2_5_VLConfig

        vision = dict(depth=spec.vision_depth, hidden_size=spec.vision_hidden_size,
                      intermediate_size=spec.vision_intermediate_size, num_heads=spec.vision_heads,
                      out_hidden_size=spec.hidden_size, window_size=112,
                      fullatt_block_indexes=[spec.vision_depth - 1], patch_size=14,
                      spatial_merge_size=2, temporal_patch_size=2)
        return Qwen2_5_VLConfig(text_config=text, vision_config=vision, tie_word_embeddings=spec.tie_embeddings,
                                **special_token_ids(tokenizer))
    if model_type == "qwen2_vl":
        from transformers import Qwen2VLConfig

        vision = dict(depth=spec.vision_depth, embed_dim=spec.vision_hidden_size,
                      hidden_size=spec.hidden_size, mlp_ratio=max(1, spec.vision_intermediate_size // spec.vision_hidden_size),
                      num_heads=spec.vision_heads, patch_size=14, spatial_merge_size=2,
                      temporal_patch_size=2)
        return Qwen2VLConfig(text_config=text, vision_config=vision, tie_word_embeddings=spec.tie_embeddings,
                             **special_token_ids(tokenizer))
    raise ValueError(f"the tiny preset is qwen2_5_vl or qwen2_vl, not {model_type!r}")


def build_tiny_model(tokenizer: Any, *, seed: int = 0, spec: TinySpec = TinySpec(),
                     model_type: str = "qwen2_5_vl") -> Any:
    """The tiny model with seeded random weights (the same seed gives the same weights)."""
    config = tiny_config(tokenizer, spec=spec, model_type=model_type)
    if model_type == "qwen2_5_vl":
        from transformers import Qwen2_5_VLForConditionalGeneration as model_class
    else:
        from transformers import Qwen2VLForConditionalGeneration as model_class
    state = torch.random.get_rng_state()
    try:
        torch.manual_seed(seed)
        model = model_class(config)
    finally:
        torch.random.set_rng_state(state)
    init_grid_embeddings(model, tokenizer, scale=spec.grid_init_scale)
    model.eval()
    return model


def init_grid_embeddings(model: Any, tokenizer: Any, *, scale: float = 1.0) -> int:
    """Give ``<xN>``/``<yN>`` tokens a sinusoidal code of N (input and output embeddings),
    so nearby cells start similar; returns how many tokens were set."""
    vocab = tokenizer.get_vocab()
    input_embeddings = model.get_input_embeddings().weight
    output_embeddings = model.get_output_embeddings().weight
    dim = input_embeddings.shape[1]
    half = dim // 2
    count = 0
    with torch.no_grad():
        for axis, offset in (("x", 0), ("y", half)):
            index = 0
            while (token_id := vocab.get(f"<{axis}{index}>")) is not None:
                code = _sinusoid(index, half)
                vector = torch.zeros(dim)
                vector[offset:offset + half] = code * scale
                input_embeddings[token_id] = vector * 0.02 * math.sqrt(dim) / math.sqrt(half)
                output_embeddings[token_id] = vector * 0.02 * math.sqrt(dim) / math.sqrt(half)
                index += 1
                count += 1
    return count


def _sinusoid(index: int, width: int, *, longest: float = 256.0) -> torch.Tensor:
    """cos/sin of ``index`` at ``width/2`` wavelengths from 4 to ``longest`` cells."""
    pairs = width // 2
    wavelengths = torch.logspace(math.log10(4.0), math.log10(longest), pairs)
    angles = 2 * math.pi * index / wavelengths
    return torch.cat([torch.cos(angles), torch.sin(angles)])
