"""Qwen-VL processors that need no video processor (the stock ones want torchvision).

The processor here only ever sees screenshots, already resized by deskdojo to the
policy's pixel budget (``deskdojo.perception.resize``), so the image processor's own
resize keeps their size and coordinates map back exactly.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from transformers.processing_utils import ProcessorMixin

from deskdojo.core.errors import ConfigError

IMAGE_PROCESSOR_KEYS = ("patch_size", "merge_size", "temporal_patch_size", "image_mean", "image_std")


class _ImagesOnly:
    """Mixin for a Qwen-VL processor class: the same prompt expansion, no video processor."""

    def __init__(self, image_processor: Any = None, tokenizer: Any = None, chat_template: Any = None,
                 **kwargs: Any):
        self.image_token = getattr(tokenizer, "image_token", None) or "<|image_pad|>"
        self.video_token = getattr(tokenizer, "video_token", None) or "<|video_pad|>"
        self.image_token_id = tokenizer.convert_tokens_to_ids(self.image_token)
        self.video_token_id = tokenizer.convert_tokens_to_ids(self.video_token)
        if chat_template is None:
            chat_template = getattr(tokenizer, "chat_template", None)
        ProcessorMixin.__init__(self, image_processor, tokenizer, chat_template=chat_template)


def _processor_class(model_type: str) -> type:
    if model_type in ("qwen2_5_vl",):
        from transformers import Qwen2_5_VLProcessor as base
    elif model_type == "qwen2_vl":
        from transformers import Qwen2VLProcessor as base
    elif model_type in ("qwen3_vl", "qwen3_vl_moe"):
        from transformers import Qwen3VLProcessor as base
    else:
        raise ConfigError(f"no processor for model type {model_type!r}; deskdojo loads "
                          "qwen2_vl, qwen2_5_vl and qwen3_vl checkpoints")
    return type(f"ImagesOnly{base.__name__}", (_ImagesOnly, base), {})


PROCESSOR_CLASSES: dict[str, type] = {}


def processor_class(model_type: str) -> type:
    """The images-only subclass of the model type's processor (one class per type)."""
    if model_type not in PROCESSOR_CLASSES:
        PROCESSOR_CLASSES[model_type] = _processor_class(model_type)
    return PROCESSOR_CLASSES[model_type]


def image_processor_settings(folder: Path | None) -> dict[str, Any]:
    """Patch/merge sizes and normalisation from a checkpoint's ``preprocessor_config.json``."""
    if folder is None or not (folder / "preprocessor_config.json").exists():
        return {}
    data = json.loads((folder / "preprocessor_config.json").read_text())
    settings = {key: data[key] for key in IMAGE_PROCESSOR_KEYS if key in data}
    for key in ("patch_size", "merge_size", "temporal_patch_size"):  # some configs nest them
        if key not in settings and isinstance(data.get("vision_config"), dict) and key in data["vision_config"]:
            settings[key] = data["vision_config"][key]
    return settings


def build_processor(model_type: str, tokenizer: Any, *, min_pixels: int, max_pixels: int,
                    settings: dict[str, Any] | None = None) -> Any:
    """An images-only processor with the pixel budget as ``size`` (min/max pixels)."""
    from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import Qwen2VLImageProcessorPil

    image_processor = Qwen2VLImageProcessorPil(
        size={"shortest_edge": min_pixels, "longest_edge": max_pixels}, **(settings or {}))
    return processor_class(model_type)(image_processor=image_processor, tokenizer=tokenizer)
