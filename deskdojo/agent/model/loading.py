"""Load a Qwen-VL family model, its tokenizer and an images-only processor: the
``tiny`` presets, a folder saved by ``VLMPolicy.save``, a local checkpoint (offline),
or a hub name. The class comes from ``model_type`` in the checkpoint's config.json.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from deskdojo.core.errors import ConfigError

TINY_PRESETS = {"tiny-scratch": "qwen2_5_vl", "tiny-qwen2vl": "qwen2_vl"}
"""Preset name -> the architecture it builds (seeded random weights, shipped tokenizer)."""

READER_PRESET = "tiny"
"""The embedded default: the tiny reader, pretrained on generated element tables
(``deskdojo tiny pretrain``) and shipped in ``deskdojo/agent/tiny/reader``."""


def reader_folder() -> Path:
    """The shipped tiny reader (a saved-policy folder); a clear error when it is missing."""
    from deskdojo.agent.tiny import TINY_DIR

    folder = TINY_DIR / "reader"
    if not (folder / POLICY_FILE).exists():
        raise ConfigError(f"the tiny reader's weights are missing from {folder}: rebuild them with "
                          "`deskdojo tiny pretrain` (about 6 minutes on 2 cores), or use --model tiny-scratch "
                          "(random weights)")
    return folder

MODEL_CLASSES = {
    "qwen2_vl": "Qwen2VLForConditionalGeneration",
    "qwen2_5_vl": "Qwen2_5_VLForConditionalGeneration",  # also UI-TARS-1.5
    "qwen3_vl": "Qwen3VLForConditionalGeneration",
    "qwen3_vl_moe": "Qwen3VLMoeForConditionalGeneration",
}

POLICY_FILE = "deskdojo_policy.json"
"""Written by ``VLMPolicy.save``: format, pixel budget, base reference, LoRA settings."""


@dataclass(slots=True)
class Loaded:
    """A model with what it needs to see and speak."""

    model: Any
    tokenizer: Any
    model_type: str
    folder: Path | None  # where the weights came from (None for a tiny preset or a hub name)
    image_settings: dict[str, Any]  # patch/merge size and normalisation for the image processor
    default_pixels: tuple[int, int] | None  # (min_pixels, max_pixels) the checkpoint ships with


def torch_dtype(name: str) -> Any:
    import torch

    return {"float32": torch.float32, "bfloat16": torch.bfloat16}[name]


def model_type_of(source: str, *, local: bool) -> str:
    """``model_type`` from a checkpoint's config.json (local folder or hub name)."""
    if local:
        path = Path(source) / "config.json"
        if not path.exists():
            raise ConfigError(f"{source} has no config.json: it is not a transformers checkpoint")
        model_type = json.loads(path.read_text()).get("model_type", "")
    else:
        from transformers import AutoConfig

        try:
            model_type = AutoConfig.from_pretrained(source).model_type
        except OSError as exc:
            raise ConfigError(f"cannot read the config of {source!r} ({exc}); give a local folder, "
                              "or 'tiny' when there is no hub access") from None
    if model_type not in MODEL_CLASSES:
        raise ConfigError(f"{source}: model type {model_type!r} is not supported; deskdojo loads "
                          f"{', '.join(MODEL_CLASSES)} (UI-TARS-1.5 is qwen2_5_vl)")
    return model_type


def load_tokenizer(source: str | Path, *, local: bool) -> Any:
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(source), local_files_only=local)
    tokenizer.padding_side = "left"
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = "<|endoftext|>"
    return tokenizer


def _checkpoint_pixels(folder: Path | None) -> tuple[int, int] | None:
    if folder is None or not (folder / "preprocessor_config.json").exists():
        return None
    data = json.loads((folder / "preprocessor_config.json").read_text())
    size = data.get("size") or {}
    low = data.get("min_pixels", size.get("shortest_edge"))
    high = data.get("max_pixels", size.get("longest_edge"))
    return (int(low), int(high)) if low and high else None


def load_pretrained(source: str, *, dtype: str, device: str) -> Loaded:
    """A local folder (offline) or a hub name, by its config's model type."""
    import transformers

    from deskdojo.agent.model.processor import image_processor_settings

    local = Path(source).exists()
    if not local and (source.startswith((".", "/", "~")) or source.count("/") > 1):
        raise ConfigError(f"model folder {source} does not exist")
    model_type = model_type_of(source, local=local)
    model_class = getattr(transformers, MODEL_CLASSES[model_type])
    folder = Path(source) if local else None
    if folder is None:  # a hub name: fetch the small files we read directly
        folder = _hub_folder(source)
    model = model_class.from_pretrained(source, dtype=torch_dtype(dtype), local_files_only=local)
    model.to(device)
    model.eval()
    return Loaded(model=model, tokenizer=load_tokenizer(source, local=local), model_type=model_type,
                  folder=Path(source) if local else None, image_settings=image_processor_settings(folder),
                  default_pixels=_checkpoint_pixels(folder))


def _hub_folder(name: str) -> Path | None:
    try:
        from huggingface_hub import hf_hub_download

        return Path(hf_hub_download(name, "preprocessor_config.json")).parent
    except Exception:  # no preprocessor config on the hub: the defaults apply
        return None


def load_random(model: str, *, seed: int, dtype: str, device: str) -> Loaded:
    """A ``random:ARCH`` model (see ``deskdojo.agent.model.archs``): published sizes,
    seeded random weights, the shipped tokenizer."""
    from deskdojo.agent.model.archs import ARCHS, build_random_model, parse_random
    from deskdojo.agent.tiny import TINY_DIR

    name, _ = parse_random(model)
    tokenizer = load_tokenizer(TINY_DIR, local=True)
    built = build_random_model(model, tokenizer, seed=seed, dtype=torch_dtype(dtype), device=device)
    return Loaded(model=built, tokenizer=tokenizer, model_type=ARCHS[name]["model_type"], folder=None,
                  image_settings={}, default_pixels=None)


def load_tiny(preset: str, *, seed: int, dtype: str, device: str) -> Loaded:
    """A tiny preset: the shipped tokenizer and a seeded random model."""
    from deskdojo.agent.model.tiny import build_tiny_model
    from deskdojo.agent.tiny import TINY_DIR

    tokenizer = load_tokenizer(TINY_DIR, local=True)
    model = build_tiny_model(tokenizer, seed=seed, model_type=TINY_PRESETS[preset])
    model.to(device=device, dtype=torch_dtype(dtype))
    return Loaded(model=model, tokenizer=tokenizer, model_type=TINY_PRESETS[preset], folder=None,
                  image_settings={}, default_pixels=None)


def quiet_libraries() -> None:
    """No per-shard progress bars or deprecation notes from transformers in the run's
    terminal: they would break up the progress line."""
    import os
    import warnings

    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    warnings.filterwarnings("ignore", category=FutureWarning, module=r"transformers\.")
    from transformers.utils import logging as transformers_logging

    transformers_logging.disable_progress_bar()
