"""The VLM policy: any Qwen2-VL / Qwen2.5-VL / Qwen3-VL / UI-TARS checkpoint through
transformers, or the ``tiny`` preset, acting for a batch of sandboxes at once, with the
small training interface SFT and GRPO share.

Sampling log-probs, exactly (what GRPO recomputes with :meth:`VLMPolicy.token_logprobs`):
for each generated token, ``log_softmax(logits / T)[token]`` where ``logits`` are the
model's raw next-token logits and ``T`` is ``PolicyConfig.temperature`` (``T = 1`` when
the temperature is 0, i.e. greedy decoding). top-p truncation is NOT folded in: the
numbers are those of the tempered full distribution. The end token ``<|im_end|>`` is
part of ``Decision.token_ids`` when the model produced it (it is what teaches stopping).

Prompt (one chat, built the same way for acting and for training): a system message
with the action format's instructions; a user message with the task instruction, the
earlier actions as text (``history_text``), the last ``history_k`` screenshots (oldest
first), the newest screen's element table (``observation`` modes that carry elements;
``som`` draws the same ids on the newest screenshot, ``a11y_tree`` shows no image) and
the last action's error when there was one; then the assistant's turn.

Answers with several actions (formats that allow it): the Decision keeps the first
action and drops the rest (one action per step; the step loop asks again).

Randomness: ``act`` draws from a private generator seeded with ``(seed, number of act
calls so far)``, so a fresh policy with the same seed gives the same samples and the
global torch RNG is left alone.

Gradient checkpointing (``PolicyConfig.gradient_checkpointing``): the decoder layers
(and vision blocks) keep only their inputs and recompute the rest in the backward pass.
transformers checkpoints a layer only while that layer is in training mode (and then
drops the KV cache), and the policy is usually in eval mode (no dropout) when GRPO trains
it, so ``token_logprobs`` flags the checkpointed layers and the models holding them alone
as training while grads are on, and ``act`` flags them as not training so that
``generate`` keeps its KV cache whatever mode the model is in.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import json
import re
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Mapping, Sequence

from deskdojo.agent.observation import DEFAULT_ELEMENT_BUDGET, ELEMENT_ORDERS, place_of
from deskdojo.core.actions import Action, Done, Fail, Type, action_points, element_of
from deskdojo.core.configs import closed_from_dict
from deskdojo.core.elements import MODES_WITH_ELEMENTS, MODES_WITH_PIXELS, SCROLL_ROLES, check_mode
from deskdojo.core.errors import ConfigError, RecordError
from deskdojo.core.protocols import Decision
from deskdojo.core.types import Observation, Task

DTYPES = ("float32", "bfloat16")
DEVICES = ("cpu", "cuda", "auto")
LM_LINEAR_NAMES = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
POLICY_FORMAT_VERSION = 1
DEFAULT_MAX_NEW_TOKENS = 48
"""Answer length limit for formats that do not name their own."""
VISION_TOKENS = ("<|image_pad|>", "<|video_pad|>", "<|vision_start|>", "<|vision_end|>")
"""Tokens the policy may never say: in an answer they would read as the start or the
placeholder of an image when the answer is fed back for training."""
HISTORY_TEXT_STEPS = 8
"""At most this many earlier actions are written into the prompt."""


@dataclass(frozen=True, slots=True, kw_only=True)
class LoraSettings:
    """LoRA adapters on the language model's linear layers (never the vision tower)."""

    r: int = field(default=16, metadata={"help": "adapter rank"})
    alpha: int = field(default=32, metadata={"help": "scale numerator (scale = alpha / r)"})
    dropout: float = field(default=0.0, metadata={"help": "dropout on the adapter input"})
    targets: tuple[str, ...] = field(default=LM_LINEAR_NAMES, metadata={
        "help": "linear layer names to adapt inside the language model"})

    def __post_init__(self) -> None:
        if self.r < 1 or self.alpha < 1:
            raise ConfigError(f"LoRA r and alpha must be >= 1, got r={self.r}, alpha={self.alpha}")
        if not 0.0 <= self.dropout < 1.0:
            raise ConfigError(f"LoRA dropout must be within [0, 1), got {self.dropout}")
        object.__setattr__(self, "targets", tuple(self.targets))
        if not self.targets or not all(isinstance(t, str) and t.isidentifier() for t in self.targets):
            raise ConfigError(f"LoRA targets must be layer names like 'q_proj', got {self.targets!r}")

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "LoraSettings":
        return closed_from_dict(cls, data, "LoRA settings")

    def target_pattern(self) -> str:
        """A peft ``target_modules`` regex: the named linears anywhere except under ``visual``."""
        return rf"^(?!.*\bvisual\b).*\.({'|'.join(self.targets)})$"


EXPLORE_SCROLL_CLICKS = (3, 10)
"""Wheel clicks an exploratory scroll turns: a short look and a long one."""


@dataclass(frozen=True, slots=True, kw_only=True)
class PolicyConfig:
    """How the VLM policy is built and samples. Field docs are ``--help`` texts."""

    model: str = field(default="tiny", metadata={
        "help": "'tiny', 'tiny-qwen2vl', a local checkpoint or saved-policy folder, a hub name, or "
                "'random:qwen2.5-vl-3b' (a published architecture with random weights, for benchmarks)"})
    format: str | None = field(default=None, metadata={
        "help": "action format name (default: the saved one; 'grid' for tiny; by model family otherwise)"})
    min_pixels: int | None = field(default=None, metadata={"help": "pixel budget floor (default: the model's)"})
    max_pixels: int | None = field(default=None, metadata={"help": "pixel budget ceiling (default: the model's)"})
    history_k: int = field(default=1, metadata={"help": "screenshots in the prompt, newest last"})
    history_text: bool = field(default=True, metadata={"help": "write earlier actions into the prompt"})
    temperature: float = field(default=1.0, metadata={"help": "sampling temperature; 0 = greedy"})
    top_p: float = field(default=1.0, metadata={"help": "nucleus sampling mass"})
    max_new_tokens: int | None = field(default=None, metadata={
        "help": "answer length limit in tokens (default: the format's, 24 for grid, else 48)"})
    position_code: bool | None = field(default=None, metadata={
        "help": "write an absolute position code into each image patch's second temporal frame "
                "(deskdojo.agent.model.position_code), so a small model trained from scratch can say "
                "where things are; default: the saved value, on for tiny presets, off otherwise"})
    dtype: str = field(default="float32", metadata={"help": "float32 | bfloat16"})
    device: str = field(default="cpu", metadata={"help": "cpu | cuda | auto"})
    seed: int = field(default=0, metadata={"help": "weights of a tiny preset and the sampling stream"})
    lora: LoraSettings | None = field(default=None, metadata={"help": "LoRA adapters (None: none)"})
    gradient_checkpointing: bool | None = field(default=None, metadata={
        "help": "recompute activations in the backward pass (less memory, ~30% slower); for big models; "
                "default: the saved value, off otherwise"})
    observation: str | None = field(default=None, metadata={
        "help": "what the prompt shows: screenshot | a11y_tree (element table, no image) | "
                "screenshot_a11y_tree | som (numbered marks on the screenshot + the table); "
                "default: the saved value, screenshot otherwise"})
    element_order: str | None = field(default=None, metadata={
        "help": "order of the element table's rows: id (the listing's) | task (rows that share words "
                "with the task first, best match first); default: the saved value, id otherwise"})
    history_names: bool | None = field(default=None, metadata={
        "help": "write earlier element actions by the element's name (click \"Kettle\"), not by the row "
                "number said then: a number from another step's table is a number to copy, not a "
                "fact; default: the saved value, off otherwise"})
    text_refs: bool | None = field(default=None, metadata={
        "help": "say a text the task asks to type by its place among the task's texts to type "
                "(type \"$1\"), not by copying it; the answer's $N is replaced by that text before it "
                "acts; default: the saved value, off otherwise"})
    field_texts: bool | None = field(default=None, metadata={
        "help": "with text_refs and element_order task, a field the task has yet to type into carries the "
                "place of the text it takes as its last state (`editable,enabled,named,$2`), so the answer "
                "copies the mark, not a digit worked out from the sentence; default: the saved value, "
                "off otherwise"})
    explore: float = field(default=0.0, metadata={
        "help": "share of sampled steps (never greedy ones) whose answer is drawn at random from the "
                "answers the element table allows (click a row; type a task's text into an editable row; "
                "turn the wheel over a list, canvas or scroll bar), "
                "scored by the model like its own: how the loop finds an answer the model gives almost no "
                "probability (a second text to type); needs an element table; 0 disables"})
    explore_past_done: float = field(default=0.0, metadata={
        "help": "while exploring (a sampled step, explore on), the share of `done` and `fail` answers sampled "
                "again with those two forbidden: the model's own next answer, so the episode goes on where "
                "its habit (one action, then done) would end it before it could follow up what exploration "
                "found (a wheel turn, then the click); 0 disables"})
    element_budget: int = field(default=DEFAULT_ELEMENT_BUDGET, metadata={
        "help": "characters of element-table rows per prompt; past it, elements off screen or far "
                "from the focus are left out (the prompt says how many)"})

    def __post_init__(self) -> None:
        if not isinstance(self.model, str) or not self.model:
            raise ConfigError("PolicyConfig.model must name a model ('tiny', a folder or a hub name)")
        for name in ("text_refs", "field_texts"):
            if getattr(self, name) is not None and not isinstance(getattr(self, name), bool):
                raise ConfigError(f"{name} must be true or false, got {getattr(self, name)!r}")
        if self.gradient_checkpointing is not None and not isinstance(self.gradient_checkpointing, bool):
            raise ConfigError(f"gradient_checkpointing must be true or false, got "
                              f"{self.gradient_checkpointing!r} ({type(self.gradient_checkpointing).__name__})")
        if self.history_k < 1:
            raise ConfigError(f"history_k must be >= 1, got {self.history_k}")
        if not self.temperature >= 0:
            raise ConfigError(f"temperature must be >= 0, got {self.temperature}")
        for name in ("explore", "explore_past_done"):
            value = getattr(self, name)
            if isinstance(value, bool) or not (isinstance(value, (int, float)) and 0 <= value <= 1):
                raise ConfigError(f"{name} must be a share within [0, 1], got {value!r}")
        if not 0 < self.top_p <= 1:
            raise ConfigError(f"top_p must be within (0, 1], got {self.top_p}")
        if self.max_new_tokens is not None and self.max_new_tokens < 1:
            raise ConfigError(f"max_new_tokens must be >= 1, got {self.max_new_tokens}")
        if self.observation is not None:
            try:
                check_mode(self.observation)
            except ValueError as exc:
                raise ConfigError(str(exc)) from None
        if self.element_order is not None and self.element_order not in ELEMENT_ORDERS:
            raise ConfigError(f"element_order must be one of {', '.join(ELEMENT_ORDERS)}, got {self.element_order!r}")
        if isinstance(self.element_budget, bool) or not isinstance(self.element_budget, int) \
                or self.element_budget < 1:
            raise ConfigError(f"element_budget must be a positive number of characters, got {self.element_budget!r}")
        if self.dtype not in DTYPES:
            raise ConfigError(f"dtype must be one of {', '.join(DTYPES)}, got {self.dtype!r}")
        if self.device not in DEVICES:
            raise ConfigError(f"device must be one of {', '.join(DEVICES)}, got {self.device!r}")
        for name in ("min_pixels", "max_pixels"):
            value = getattr(self, name)
            if value is not None and value < 28 * 28:
                raise ConfigError(f"{name} must be at least 784 (one 28x28 patch), got {value}")
        if self.min_pixels and self.max_pixels and self.min_pixels > self.max_pixels:
            raise ConfigError(f"min_pixels {self.min_pixels} is above max_pixels {self.max_pixels}")
        if isinstance(self.lora, Mapping):
            object.__setattr__(self, "lora", LoraSettings.from_dict(self.lora))
        if self.format is not None:
            from deskdojo.agent.formats import FORMATS

            if self.format not in FORMATS:
                raise ConfigError(f"unknown action format {self.format!r}; known formats: {', '.join(FORMATS)}")

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "PolicyConfig":
        return closed_from_dict(cls, data, "policy config")

    def to_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        if self.lora is not None:
            data["lora"]["targets"] = list(self.lora.targets)
        return data

    def replace(self, **changes: Any) -> "PolicyConfig":
        return dataclasses.replace(self, **changes)


@dataclass(frozen=True, slots=True)
class PolicySample:
    """One training example: what the policy saw and what it should have answered.

    ``observations`` is the screenshot window, oldest first (the last ``history_k`` are
    used). Give the answer as ``target_ids`` (e.g. the sampled ``Decision.token_ids``)
    or as ``target_text`` (tokenised, then the end token is appended).
    """

    observations: tuple[Observation, ...]
    task: Task
    history: tuple[Decision, ...] = ()
    target_text: str | None = None
    target_ids: tuple[int, ...] | None = None

    def __post_init__(self) -> None:
        if isinstance(self.observations, Observation):
            object.__setattr__(self, "observations", (self.observations,))
        if not self.observations:
            raise ConfigError("a PolicySample needs at least one observation")
        if (self.target_text is None) == (self.target_ids is None):
            raise ConfigError("a PolicySample needs exactly one of target_text or target_ids")


@dataclass(slots=True)
class PolicyBatch:
    """Model inputs for a batch of samples: ``[left pad][prompt][target][right pad]``, so
    every target starts at the same column and ``token_logprobs`` returns ``[B, T]``."""

    inputs: dict[str, Any]
    target_ids: Any  # LongTensor [B, T] (pad where the mask is False)
    target_mask: Any  # BoolTensor [B, T]

    def __len__(self) -> int:
        return int(self.target_ids.shape[0])


@dataclass(slots=True)
class _Prompt:
    text: str
    images: list[Any]
    screen: tuple[int, int]
    image: tuple[int, int]
    shown: Any = None  # the ShownElements of the table (None: no table), to map answers back
    texts: tuple[str, ...] = ()  # the task's texts to type, which an answer's $N names (text_refs)


class VLMPolicy:
    """A Qwen-VL family model behind the ``Policy`` protocol (see the module docstring).

    Build it with :func:`load_policy`. ``model`` is the torch module (a peft model once
    :meth:`enable_lora` ran); ``policy_id`` names the policy in trajectories.
    """

    def __init__(self, *, model: Any, tokenizer: Any, processor: Any, config: PolicyConfig,
                 model_type: str, base: str, format_name: str, min_pixels: int, max_pixels: int,
                 factor: int, position_code: bool = False, observation: str = "screenshot",
                 element_order: str = "id", history_names: bool = False, text_refs: bool = False,
                 field_texts: bool = False):
        from deskdojo.agent.formats import get_format

        self.model = model
        self.tokenizer = tokenizer
        self.processor = processor
        self.config = config
        self.model_type = model_type
        self.base = base
        self.format = get_format(format_name)
        self.min_pixels = min_pixels
        self.max_pixels = max_pixels
        self.factor = factor
        self.position_code = position_code
        self.observation = check_mode(observation)
        self.element_order = element_order
        self.history_names = history_names
        self.text_refs = text_refs
        self.field_texts = field_texts
        self.lora: LoraSettings | None = None
        self.gradient_checkpointing = False
        self.policy_id = f"vlm:{Path(base).name if Path(base).exists() else base}"
        self.end_token_id = tokenizer.convert_tokens_to_ids("<|im_end|>")
        vocab = tokenizer.get_vocab()
        self.unsayable_ids = tuple(sorted(vocab[token] for token in VISION_TOKENS if token in vocab))
        self.pad_token_id = tokenizer.pad_token_id
        self._act_calls = 0
        self._greedy = False
        self._exploring = True  # set_exploring: the loop turns exploration off for a first pass
        self._explore_rate: float | None = None  # set_exploring's rate, in place of config.explore
        self._frozen_reference: Any = None

    @property
    def max_new_tokens(self) -> int:
        """The answer length limit: the config's, else the format's own (short for grid)."""
        return self.config.max_new_tokens or getattr(self.format, "max_new_tokens", DEFAULT_MAX_NEW_TOKENS)

    @property
    def device(self) -> Any:
        return next(self.model.parameters()).device

    @property
    def history_k(self) -> int:
        """Screens per prompt: the rollout hands ``act`` windows this long (the Policy protocol)."""
        return self.config.history_k

    # --- prompts ------------------------------------------------------------------

    def _prompt(self, window: Sequence[Observation], task: Task, history: Sequence[Decision]) -> _Prompt:
        from PIL import Image

        from deskdojo.perception.resize import resize_to_budget

        from deskdojo.agent.observation import (acted_on, element_table, marked_screenshot, ranked_for_task,
                                                shown_elements)
        from deskdojo.perception.resize import smart_resize

        mode = self.observation
        texts = self._texts(task)
        shown = list(window)[-self.config.history_k:]
        current = shown[-1]
        screen = tuple(current.screen_size)
        # the size the model's coordinates refer to, also in a11y_tree mode (no image shown)
        image_size = smart_resize(screen, factor=self.factor, min_pixels=self.min_pixels,
                                  max_pixels=self.max_pixels)
        elements = None
        if mode in MODES_WITH_ELEMENTS:  # the newest screen's listing; older screens are shown plain
            elements = shown_elements(current, budget=self.config.element_budget, image=image_size)
            if self.element_order == "task":
                elements = ranked_for_task(elements, task.instruction, acted=acted_on(history),
                                           field_texts=self.field_texts and self.text_refs)
        images = []
        for observation in (shown if mode in MODES_WITH_PIXELS else ()):
            pixels = observation.screenshot
            if mode == "som" and observation is current:
                pixels = marked_screenshot(observation, elements)
            frame, mapping = resize_to_budget(pixels, factor=self.factor,
                                              min_pixels=self.min_pixels, max_pixels=self.max_pixels)
            images.append(Image.fromarray(frame))
            image_size = mapping.image if observation is current else image_size
        # the screen first, the task last: what the answer must follow sits nearest to it
        # (a small model finds the instruction's words at a short, steady distance)
        content: list[dict[str, Any]] = [{"type": "image"} for _ in images]
        if elements is not None:
            content.append({"type": "text", "text": ("\n" if images else "")
                            + element_table(elements, screen=screen, image=image_size)})
        if current.action_error:
            content.append({"type": "text", "text": f"The last action failed: {current.action_error}\n"})
        if self.config.history_text and history:
            content.append({"type": "text", "text": self._history_text(history, screen, image_size, texts)})
        content.append({"type": "text", "text": f"{chr(10) if images and elements is None else ''}"
                                                f"Task: {task.instruction}\n"})
        instructions = self.format.prompt(screen=screen, image=image_size, elements=elements is not None)
        messages = [{"role": "system", "content": instructions},
                    {"role": "user", "content": content}]
        text = self.processor.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        return _Prompt(text=text, images=images, screen=screen, image=image_size, shown=elements, texts=texts)

    def _texts(self, task: Task | None) -> tuple[str, ...]:
        """The texts ``task`` asks to type, which answers name by place (none without text_refs)."""
        from deskdojo.perception.relevance import texts_to_type

        return texts_to_type(task.instruction) if self.text_refs and task is not None else ()

    def _history_text(self, history: Sequence[Decision], screen: tuple[int, int],
                      image: tuple[int, int], texts: tuple[str, ...] = ()) -> str:
        lines = []
        start = max(0, len(history) - HISTORY_TEXT_STEPS)
        for number, decision in enumerate(history[start:], start=start + 1):
            if decision.action is None:
                lines.append(f"{number}. (an answer that did not parse)")
                continue
            if self.history_names and (named := _named_line(decision, texts)) is not None:
                lines.append(f"{number}. {named}")
                continue
            if self.element_order == "task" and decision.text and element_of(decision.action) is not None:
                # a ranked table's numbers belong to that step's table: say what was said then
                # (the rows acted on carry the state "acted" in the current table)
                lines.append(f"{number}. {' '.join(decision.text.split())}")
                continue
            try:
                line = self.format.render(said_by_place(decision.action, texts), screen=screen, image=image)
            except Exception:  # an action this format cannot write: describe it instead
                from deskdojo.core.actions import describe

                line = describe(decision.action)
            lines.append(f"{number}. {' '.join(line.split())}")
        return "Earlier actions:\n" + "\n".join(lines) + "\n"

    def model_inputs(self, texts: Sequence[str], images: Sequence[Sequence[Any]]) -> Any:
        """The processor's tensors for prompts and their images (left padded), with the
        position code in the pixels when it is on: acting and training both come here,
        so what the model sees, and so the log-probs, match."""
        images = [list(i) for i in images]
        inputs = self.processor(text=list(texts), images=images if any(images) else None,  # a11y_tree: text only
                                padding=True, return_tensors="pt")
        if self.position_code and "pixel_values" in inputs:
            from deskdojo.agent.model.position_code import add_position_code

            image_processor = self.processor.image_processor
            inputs["pixel_values"] = add_position_code(
                inputs["pixel_values"], inputs["image_grid_thw"], patch_size=int(image_processor.patch_size),
                merge_size=int(image_processor.merge_size),
                temporal_patch_size=int(image_processor.temporal_patch_size))
        return inputs

    # --- acting -------------------------------------------------------------------

    def act(self, observations: Sequence[Observation | Sequence[Observation]], tasks: Sequence[Task],
            histories: Sequence[Sequence[Decision]]) -> list[Decision]:
        """One Decision per sandbox, from one batched ``generate`` call (left padding).

        An element of ``observations`` is the current Observation or a window of them,
        oldest first (for ``history_k`` > 1). Model output never raises: what does not
        parse becomes ``Decision(action=None, parse_error=...)``.
        """
        if not (len(observations) == len(tasks) == len(histories)):
            raise ConfigError(f"act needs as many tasks and histories as observations, got "
                              f"{len(observations)}, {len(tasks)}, {len(histories)}")
        if not observations:
            return []
        windows = [(o,) if isinstance(o, Observation) else tuple(o) for o in observations]
        prompts = [self._prompt(w, t, h) for w, t, h in zip(windows, tasks, histories)]
        temperature = 0.0 if self._greedy else self.config.temperature
        scored_at = temperature if temperature > 0 else 1.0  # the T of the log-probs, stored with each step
        answers = self._sampled(prompts, temperature)
        if temperature > 0 and self._exploring and self.config.explore_past_done > 0:
            answers = self._past_done(answers, prompts, temperature)
        if temperature > 0 and self.explore_rate > 0:
            answers = self._explored(answers, prompts, windows, tasks, histories, scored_at)
        return [dataclasses.replace(self._decision(ids, logprobs, prompts[i]), temperature=scored_at)
                for i, (ids, logprobs) in enumerate(answers)]

    def _sampled(self, prompts: Sequence[_Prompt], temperature: float, *, stream: tuple[str, ...] = (),
                 **extra: Any) -> list[tuple[list[int], list[float]]]:
        """One batched ``generate`` over ``prompts``: each answer's token ids and their log-probs
        under the model at ``temperature`` (1 when greedy), from the raw logits: a token that
        ``extra`` forbids is still scored as the model would score it unforbidden."""
        import torch

        inputs = self.model_inputs([p.text for p in prompts], [p.images for p in prompts]).to(self.device)
        out = self._generate(inputs, temperature, top_p=self.config.top_p, max_new_tokens=self.max_new_tokens,
                             stream=stream, output_logits=True, return_dict_in_generate=True, **extra)
        generated = out.sequences[:, inputs["input_ids"].shape[1]:]
        # one step's raw [B, V] logits at a time (its rows as one chunk): never a [B, T, V] copy
        chosen = torch.stack([self._chosen_logprobs(step_logits[None], generated[None, :, t],
                                                    temperature if temperature > 0 else 1.0)[0]
                              for t, step_logits in enumerate(out.logits)], dim=1)
        return [(generated[i].tolist(), chosen[i].tolist()) for i in range(len(prompts))]

    def _past_done(self, answers: list[tuple[list[int], list[float]]], prompts: Sequence[_Prompt],
                   temperature: float) -> list[tuple[list[int], list[float]]]:
        """``answers`` with each ``done`` or ``fail``, at rate ``config.explore_past_done``, sampled
        again with those two words forbidden as the answer's first token: the model's own next
        answer, so that an episode goes on where its habit (one action, then done) would end it
        before it could follow up an answer exploration found (a wheel turn, then the click)."""
        import random

        stops = self.stop_word_ids
        draw = random.Random(hash((self.config.seed, "past_done", self._act_calls)) & 0x7FFF_FFFF)
        again = [i for i, (ids, _) in enumerate(answers)
                 if ids and ids[0] in stops and draw.random() < self.config.explore_past_done]
        if not again:
            return answers
        resampled = self._sampled([prompts[i] for i in again], temperature, stream=("past_done",),
                                  begin_suppress_tokens=sorted(stops))
        out = list(answers)
        for i, answer in zip(again, resampled):
            out[i] = answer
        return out

    @functools.cached_property
    def stop_word_ids(self) -> frozenset[int]:
        """The first token of a ``done`` and of a ``fail`` answer in this policy's format."""
        said = (self.format.render(action, screen=(1024, 768), image=(1024, 768)) for action in (Done(), Fail()))
        return frozenset(self.tokenizer(text, add_special_tokens=False)["input_ids"][0] for text in said)

    def _explored(self, answers: list[tuple[list[int], list[float]]], prompts: Sequence[_Prompt],
                  windows: Sequence[tuple[Observation, ...]], tasks: Sequence[Task],
                  histories: Sequence[Sequence[Decision]], temperature: float) -> list[tuple[list[int], list[float]]]:
        """``answers`` with each one replaced, at ``explore_rate``, by a random answer the
        prompt's table allows, and its tokens scored by the model at ``temperature``: the
        stored log-probs are the model's own, so GRPO weighs the step as it would a sample.
        The draws come from a stream of their own, seeded like ``generate``'s."""
        import random

        import torch

        draw = random.Random(hash((self.config.seed, "explore", self._act_calls)) & 0x7FFF_FFFF)
        chosen: dict[int, str] = {}
        for i, prompt in enumerate(prompts):
            if draw.random() < self.explore_rate and (options := self._table_answers(prompt, answers[i][0])):
                # the sampled row's other answers twice as often: the model's row is usually right
                verb = draw.choice(sorted(options) + (["row"] if "row" in options else []))
                chosen[i] = draw.choice(options[verb])
        if not chosen:
            return answers
        order = sorted(chosen)
        batch = self.encode_samples([PolicySample(observations=windows[i], task=tasks[i], history=tuple(histories[i]),
                                                  target_text=chosen[i]) for i in order])
        with torch.no_grad():
            logp, mask = self.token_logprobs(batch, temperature=temperature)
        out = list(answers)
        for row, i in enumerate(order):
            n = int(mask[row].sum())
            out[i] = (batch.target_ids[row, :n].tolist(), logp[row, :n].tolist())
        return out

    def _table_answers(self, prompt: _Prompt, sampled: Sequence[int] = ()) -> dict[str, list[str]]:
        """What the prompt's table lets an answer say, by kind, in this policy's format:
        ``click`` each row; ``type`` each of the task's texts (by place) into each editable
        row; ``scroll`` the wheel over each row that scrolls (``SCROLL_ROLES``), named as a
        click names it, each way (a scroll bar along its length), a few clicks and many (an
        item below the fold is not in the table until it shows);
        ``row``: the other answers on the row the ``sampled`` answer names (the model found
        the row, not what to do there). A kind is drawn first, so the many clickable rows do
        not drown the few fields."""
        from deskdojo.core.actions import Click, Scroll

        shown = prompt.shown
        if shown is None or not shown.elements:
            return {}
        labels = [(shown.label_of(e.id), e) for e in shown.elements]

        def said(action: Action) -> str:
            return self.format.render(action, screen=prompt.screen, image=prompt.image)

        def typed_on(label: int, element: Any) -> list[str]:
            return [said(Type(text=f"${place}" if self.text_refs else text, element=label))
                    for place, text in enumerate(prompt.texts, start=1) if "editable" in element.states]

        def scrolled_on(label: int, element: Any) -> list[str]:
            if element.role not in SCROLL_ROLES:
                return []
            _, _, width, height = element.box
            ways = ((0, 1), (0, -1), (1, 0), (-1, 0))
            if element.role == "scroll bar":  # a bar scrolls along its length only
                ways = ways[:2] if height >= width else ways[2:]
            return [said(Scroll(element=label, dx=dx * clicks, dy=dy * clicks))
                    for dx, dy in ways for clicks in EXPLORE_SCROLL_CLICKS]

        def on_row(label: int, element: Any) -> list[str]:
            return [said(Click(element=label)), *typed_on(label, element), *scrolled_on(label, element)]

        options = {"click": [said(Click(element=label)) for label, _ in labels]}
        for kind, answers in (("type", [a for label, e in labels for a in typed_on(label, e)]),
                              ("scroll", [a for label, e in labels for a in scrolled_on(label, e)])):
            if answers:
                options[kind] = answers
        current = " ".join(self.tokenizer.decode(list(sampled), skip_special_tokens=True).split())
        parsed = self.format.parse(current, screen=prompt.screen, image=prompt.image)
        row = element_of(parsed.actions[0]) if parsed.error is None and parsed.actions else None
        if row is not None and (element := next((e for label, e in labels if label == row), None)) is not None:
            if others := [answer for answer in on_row(row, element) if answer != current]:
                options["row"] = others
        return options

    def generate_texts(self, texts: Sequence[str], images: Sequence[Sequence[Any]], *, temperature: float = 0.0,
                       max_new_tokens: int | None = None) -> list[str]:
        """Free text for prompts built elsewhere (the VLM judge's): the model's answer up to
        its end token, decoded; sampled from this policy's private generator like ``act``."""
        if not texts:
            return []
        inputs = self.model_inputs(list(texts), [list(i) for i in images]).to(self.device)
        out = self._generate(inputs, temperature, top_p=None, max_new_tokens=max_new_tokens or self.max_new_tokens,
                             stream=("text",))
        answers = []
        for row in out[:, inputs["input_ids"].shape[1]:].tolist():
            if self.end_token_id in row:
                row = row[:row.index(self.end_token_id)]
            answers.append(self.tokenizer.decode(row, skip_special_tokens=True))
        return answers

    def _generate(self, inputs: Any, temperature: float, *, top_p: float | None, max_new_tokens: int,
                  stream: tuple[str, ...] = (), **extra: Any) -> Any:
        """One batched ``generate`` from the private generator seeded with ``(seed, *stream,
        calls so far)``; greedy when ``temperature`` is 0. The global torch RNG is left alone."""
        import torch

        generator_seed = hash((self.config.seed, *stream, self._act_calls)) & 0x7FFF_FFFF
        self._act_calls += 1
        cpu_only = [] if self.device.type == "cpu" else None
        with torch.no_grad(), self._checkpointing_modules_training(False), torch.random.fork_rng(devices=cpu_only):
            torch.manual_seed(generator_seed)
            return self.model.generate(
                **inputs, do_sample=temperature > 0, temperature=temperature if temperature > 0 else None,
                top_p=top_p if temperature > 0 else None, top_k=None, max_new_tokens=max_new_tokens,
                eos_token_id=self.end_token_id, pad_token_id=self.pad_token_id,
                suppress_tokens=list(self.unsayable_ids) or None, **extra)

    def _decision(self, ids: list[int], logprobs: list[float], prompt: _Prompt) -> Decision:
        if self.end_token_id in ids:
            cut = ids.index(self.end_token_id) + 1
            ids, logprobs = ids[:cut], logprobs[:cut]
        text = self.tokenizer.decode(ids, skip_special_tokens=True)
        result = self.format.parse(text, screen=prompt.screen, image=prompt.image)
        if result.error is not None or not result.actions:
            return Decision(text=text, action=None, token_ids=tuple(ids), logprobs=tuple(logprobs),
                            parse_error=result.error or "the answer holds no action")
        action = result.actions[0]
        if self.text_refs and isinstance(action, Type) and (place := text_place(action.text)) is not None:
            if not 1 <= place <= len(prompt.texts):
                return Decision(text=text, action=None, token_ids=tuple(ids), logprobs=tuple(logprobs),
                                parse_error=f"${place} names no text the task asks to type "
                                            f"(it asks for {len(prompt.texts)}: "
                                            f"{', '.join(json.dumps(t) for t in prompt.texts) or 'none'})")
            action = dataclasses.replace(action, text=prompt.texts[place - 1])
        if prompt.shown is not None and prompt.shown.numbered and element_of(action) is not None:
            element = prompt.shown.element_of(element_of(action))
            if element is None:
                return Decision(text=text, action=None, token_ids=tuple(ids), logprobs=tuple(logprobs),
                                parse_error=f"#{element_of(action)} is not a number of the element list "
                                            f"(1..{len(prompt.shown.elements)})")
            action = dataclasses.replace(action, element=element)
        shown = None
        if prompt.shown is not None and element_of(action) is not None:
            shown = next((e for e in prompt.shown.elements if e.id == element_of(action)), None)
        return Decision(text=text, action=action, token_ids=tuple(ids), logprobs=tuple(logprobs),
                        element_name=shown.name if shown else None,
                        element_place=place_of(shown, prompt.shown.elements) if shown else None)

    # --- training interface -------------------------------------------------------

    def render_target(self, action: Action, observation: Observation, *, task: Task | None = None,
                      thought: str | None = None, history: Sequence[Decision] = ()) -> str:
        """What this policy's format says for ``action`` on ``observation``'s screen (SFT
        targets). A table ranked for the task (``element_order`` task) numbers its rows, so
        an element action needs ``task`` to find the number its element has there."""
        from deskdojo.perception.resize import smart_resize

        screen = tuple(observation.screen_size)
        image = smart_resize(screen, factor=self.factor, min_pixels=self.min_pixels, max_pixels=self.max_pixels)
        if (self.observation not in MODES_WITH_ELEMENTS and element_of(action) is not None
                and action_points(action)):
            action = dataclasses.replace(action, element=None)  # no element list shown: say the point
        if self.observation in MODES_WITH_ELEMENTS and self.element_order == "task" \
                and element_of(action) is not None:
            action = self._numbered(action, observation, task, image, history)
        action = said_by_place(action, self._texts(task))
        return self.format.render(action, screen=screen, image=image, thought=thought)

    def _numbered(self, action: Action, observation: Observation, task: Task | None,
                  image: tuple[int, int], history: Sequence[Decision] = ()) -> Action:
        """``action`` with its element id replaced by the row number the ranked table shows."""
        from deskdojo.agent.observation import acted_on, ranked_for_task, shown_elements

        if task is None:
            raise ConfigError("this policy ranks its element table by the task (element_order task): "
                              "render_target needs the task")
        shown = ranked_for_task(shown_elements(observation, budget=self.config.element_budget, image=image),
                                task.instruction, acted=acted_on(history))
        number = shown.label_of(element_of(action))
        if number is None:
            raise RecordError(f"element {element_of(action)} of the action {action!r} is not in the table this "
                              f"screen shows ({len(shown.elements)} rows): its listing lacks it or the budget cut it")
        return dataclasses.replace(action, element=number)

    def target_token_ids(self, text: str) -> list[int]:
        """The tokens of an answer ``text`` followed by the end token."""
        return self.tokenizer(text, add_special_tokens=False)["input_ids"] + [self.end_token_id]

    def encode_samples(self, samples: Sequence[PolicySample]) -> PolicyBatch:
        """Tokenise prompts (with images) and targets into one padded batch."""
        import torch

        rows, targets, pixel_values, grids = [], [], [], []
        for sample in samples:
            prompt = self._prompt(sample.observations, sample.task, sample.history)
            encoded = self.model_inputs([prompt.text], [prompt.images])
            rows.append({key: value[0] for key, value in encoded.items()
                         if key not in ("pixel_values", "image_grid_thw")})
            if "pixel_values" in encoded:  # none in a11y_tree mode
                pixel_values.append(encoded["pixel_values"])
                grids.append(encoded["image_grid_thw"])
            target = (list(sample.target_ids) if sample.target_ids is not None
                      else self.target_token_ids(sample.target_text))
            if not target:
                raise ConfigError("a PolicySample's target is empty")
            if unsayable := sorted(set(target) & set(self.unsayable_ids)):
                raise RecordError(f"a target answer holds image-marker token(s) {unsayable} "
                                  f"({', '.join(VISION_TOKENS)}); the policy never samples these, so this "
                                  "answer was written by an older version: drop that trajectory or demo")
            targets.append(target)
        prompt_len = max(len(row["input_ids"]) for row in rows)
        target_len = max(len(t) for t in targets)
        batch_size = len(rows)
        input_ids = torch.full((batch_size, prompt_len + target_len), self.pad_token_id, dtype=torch.long)
        attention = torch.zeros_like(input_ids)
        extra = {key: torch.zeros_like(input_ids) for key in rows[0] if key not in ("input_ids", "attention_mask")}
        target_ids = torch.full((batch_size, target_len), self.pad_token_id, dtype=torch.long)
        target_mask = torch.zeros((batch_size, target_len), dtype=torch.bool)
        for i, (row, target) in enumerate(zip(rows, targets)):
            n = len(row["input_ids"])
            input_ids[i, prompt_len - n:prompt_len] = row["input_ids"]
            attention[i, prompt_len - n:prompt_len + len(target)] = 1
            for key in extra:
                extra[key][i, prompt_len - n:prompt_len] = row[key]
            input_ids[i, prompt_len:prompt_len + len(target)] = torch.tensor(target)
            target_ids[i, :len(target)] = torch.tensor(target)
            target_mask[i, :len(target)] = True
        inputs = {"input_ids": input_ids, "attention_mask": attention, **extra}
        if pixel_values:
            inputs.update(pixel_values=torch.cat(pixel_values), image_grid_thw=torch.cat(grids))
        device = self.device
        return PolicyBatch(inputs={k: v.to(device) for k, v in inputs.items()},
                           target_ids=target_ids.to(device), target_mask=target_mask.to(device))

    def token_logprobs(self, batch: PolicyBatch, *, temperature: float | None = None) -> tuple[Any, Any]:
        """``(logp [B, T], mask [B, T])``: ``log_softmax(logits / T)`` of each target token
        (with grad; ``T`` defaults to the sampling temperature, 1 when greedy), and which
        entries are real target tokens. ``logp[i, :n]`` lines up with a Decision's logprobs."""
        import torch

        if temperature is None:
            temperature = self.config.temperature if self.config.temperature > 0 else 1.0
        target_len = batch.target_ids.shape[1]
        with self._checkpointing_modules_training(torch.is_grad_enabled()):
            out = self.model(**batch.inputs, logits_to_keep=target_len + 1, use_cache=False)
        # the whole output, not [:, :-1]: its last position (past the targets) gets no gradient
        logp = self._chosen_logprobs(out.logits, batch.target_ids, temperature)
        del out  # the log-prob function keeps the logits it needs for the backward pass
        return torch.where(batch.target_mask, logp, 0.0), batch.target_mask

    def _chosen_logprobs(self, logits: Any, token_ids: Any, temperature: float) -> Any:
        """``log_softmax(logits / T)[token]`` with the unsayable tokens at -inf: the
        distribution ``generate`` samples from (``suppress_tokens``). ``act`` and
        ``token_logprobs`` both come here, so recorded and recomputed log-probs agree in
        method; gather minus a chunked logsumexp, never a full-vocabulary copy."""
        from deskdojo.agent.model.logprobs import chosen_logprobs

        return chosen_logprobs(logits, token_ids, temperature=temperature, suppressed_ids=self.unsayable_ids)

    # --- LoRA ---------------------------------------------------------------------

    def enable_lora(self, settings: LoraSettings | None = None) -> None:
        """Wrap the model with peft LoRA adapters on the language model's linears only."""
        from peft import LoraConfig, get_peft_model

        if self.lora is not None:
            raise ConfigError("LoRA is already on for this policy")
        settings = settings or LoraSettings()
        config = LoraConfig(r=settings.r, lora_alpha=settings.alpha, lora_dropout=settings.dropout,
                            target_modules=settings.target_pattern(), bias="none")
        self.model = get_peft_model(self.model, config)
        self.lora = settings

    # --- gradient checkpointing ---------------------------------------------------

    def enable_gradient_checkpointing(self) -> None:
        """Keep only each layer's inputs in the forward pass and recompute the rest in the
        backward pass: activation memory drops from all layers' to about one layer's, for
        one more forward per step. Non-reentrant, so frozen inputs (LoRA) still pass grads."""
        if self.gradient_checkpointing:
            return
        base = self.model.get_base_model() if self.lora is not None else self.model
        if not getattr(base, "supports_gradient_checkpointing", False):
            raise ConfigError(f"{type(base).__name__} does not support gradient checkpointing; "
                              f"set gradient_checkpointing: false")
        if hasattr(base, "activation_checkpointing_enable"):  # transformers >= 5.x names it so
            base.activation_checkpointing_enable(activation_checkpointing_kwargs={"use_reentrant": False})
        else:
            base.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        self.gradient_checkpointing = True

    def _checkpointing_modules(self) -> list[Any]:
        """The modules transformers flagged: the checkpointed layers and the vision and
        text models that hold them (which turn ``use_cache`` off while training)."""
        return [m for m in self.model.modules() if vars(m).get("gradient_checkpointing") is True]

    @contextlib.contextmanager
    def _checkpointing_modules_training(self, on: bool) -> Iterator[None]:
        """Within the block the flagged modules themselves (not their children, so no
        dropout changes) count as training (``on``: the layers checkpoint) or not (they run
        plainly and keep the KV cache); see the module docstring."""
        if not self.gradient_checkpointing:
            yield
            return
        modules = self._checkpointing_modules()
        before = [module.training for module in modules]
        for module in modules:
            module.training = on
        try:
            yield
        finally:
            for module, was in zip(modules, before):
                module.training = was

    @contextlib.contextmanager
    def adapters_disabled(self) -> Iterator[None]:
        """The reference policy: the same model with the LoRA adapters switched off."""
        if self.lora is None:
            yield
            return
        with self.model.disable_adapter():
            yield

    def keep_frozen_reference(self) -> int:
        """Keep a frozen copy of the current weights as the reference policy, for training
        without LoRA (where there are no adapters to switch off). It costs a second copy of
        the weights on the same device: cheap for ``tiny``, about +7 GiB for Qwen2.5-VL-3B in bf16.
        Returns the copy's size in bytes."""
        import copy

        if self.lora is not None:
            raise ConfigError("a LoRA policy's reference is its base (adapters off): no frozen copy needed")
        self._frozen_reference = copy.deepcopy(self.model).requires_grad_(False)
        return sum(p.numel() * p.element_size() for p in self._frozen_reference.parameters())

    @contextlib.contextmanager
    def reference(self) -> Iterator[None]:
        """Within the block the policy scores as the reference policy: the LoRA adapters
        switched off, or, without LoRA, the copy :meth:`keep_frozen_reference` kept."""
        if self.lora is not None:
            with self.model.disable_adapter():
                yield
            return
        if self._frozen_reference is None:
            raise ConfigError("this policy has no LoRA adapters and no frozen reference: call "
                              "keep_frozen_reference() first (it doubles the weights' memory)")
        trained, self.model = self.model, self._frozen_reference
        try:
            yield
        finally:
            self.model = trained

    def trainable_parameters(self) -> list[Any]:
        return [p for p in self.model.parameters() if p.requires_grad]

    def reseed(self, seed: int) -> None:
        """Restart the sampling stream (as if freshly loaded with ``seed``)."""
        self.config = self.config.replace(seed=seed)
        self._act_calls = 0

    # --- decoding mode and the sampling stream ------------------------------------

    def set_greedy(self, on: bool) -> None:
        """Decode greedily (True) or at ``config.temperature`` (False, the default; a
        temperature of 0 is greedy too). Log-probs of greedy decisions are those of
        temperature 1."""
        self._greedy = bool(on)

    def set_exploring(self, on: bool, rate: float | None = None) -> None:
        """Let sampled answers be replaced by exploration (True, the default) or not: the loop's
        ``explore_failed_only`` plays each group without it first. ``rate``: the share of steps
        explored while on, in place of ``config.explore`` (None: that)."""
        if rate is not None and not 0 <= rate <= 1:
            raise ConfigError(f"an exploration rate is a share within [0, 1], got {rate!r}")
        self._exploring = bool(on)
        self._explore_rate = rate

    @property
    def explore_rate(self) -> float:
        """The share of sampled steps exploration replaces now (0 while switched off)."""
        if not self._exploring:
            return 0.0
        return self.config.explore if self._explore_rate is None else self._explore_rate

    def rng_state(self) -> dict[str, int]:
        """Where the sampling stream stands (JSON-able): restore it with :meth:`set_rng_state`."""
        return {"seed": int(self.config.seed), "act_calls": int(self._act_calls)}

    def set_rng_state(self, state: Mapping[str, int]) -> None:
        """Continue the sampling stream from a :meth:`rng_state` (resume after a restart)."""
        unknown = set(state) - {"seed", "act_calls"}
        if unknown or "act_calls" not in state:
            raise ConfigError(f"a policy RNG state holds 'seed' and 'act_calls', got {sorted(state)}")
        if "seed" in state and int(state["seed"]) != self.config.seed:
            self.config = self.config.replace(seed=int(state["seed"]))
        self._act_calls = int(state["act_calls"])

    # --- saving -------------------------------------------------------------------

    def save(self, folder: str | Path) -> Path:
        """Write the policy so :func:`load_policy` restores it: full weights, tokenizer and
        processor settings; with LoRA on, only the adapter and a reference to the base."""
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        record = {"format_version": POLICY_FORMAT_VERSION, "model_type": self.model_type,
                  "format": self.format.name, "min_pixels": self.min_pixels, "max_pixels": self.max_pixels,
                  "position_code": self.position_code, "gradient_checkpointing": self.gradient_checkpointing,
                  "observation": self.observation, "element_order": self.element_order,
                  "history_names": self.history_names, "text_refs": self.text_refs,
                  "field_texts": self.field_texts, "seed": self.config.seed, "policy_id": self.policy_id,
                  "lora": None if self.lora is None else dataclasses.asdict(self.lora)}
        if self.lora is None:
            self.model.save_pretrained(str(folder))
            self.tokenizer.save_pretrained(str(folder))
            self.processor.image_processor.save_pretrained(str(folder))
            record["base"] = None
        else:
            adapter = folder / "adapter"
            if adapter.exists():
                shutil.rmtree(adapter)
            self.model.save_pretrained(str(adapter))
            record["base"] = self.base
        (folder / "deskdojo_policy.json").write_text(json.dumps(record, indent=1) + "\n")
        return folder


# --- loading ----------------------------------------------------------------------

FAMILY_FORMATS = {"qwen2_vl": "deskdojo", "qwen2_5_vl": "qwen_computer_use", "qwen3_vl": "qwen3_computer_use",
                  "qwen3_vl_moe": "qwen3_computer_use"}
"""Default format per architecture for a checkpoint with no saved format (UI-TARS-1.5:
pass ``format="uitars"``)."""


def load_policy(model: str = "tiny", config: PolicyConfig | None = None) -> VLMPolicy:
    """Load a policy: ``tiny`` / ``tiny-qwen2vl`` presets, a folder written by
    :meth:`VLMPolicy.save`, a local checkpoint (offline) or a hub name.

    Settings saved with a policy (format, pixel budget, position code, gradient
    checkpointing) apply unless ``config`` sets them.
    """
    from deskdojo.agent.model.archs import is_random
    from deskdojo.agent.model.loading import (POLICY_FILE, READER_PRESET, TINY_PRESETS, load_pretrained,
                                              load_random, load_tiny, reader_folder)
    from deskdojo.agent.model.processor import build_processor
    from deskdojo.agent.model.tiny import TINY_MAX_PIXELS, TINY_MIN_PIXELS
    from deskdojo.perception.resize import QWEN_MAX_PIXELS, QWEN_MIN_PIXELS

    config = (config or PolicyConfig()).replace(model=model)
    device = _resolve_device(config.device)
    folder = reader_folder() if model == READER_PRESET else Path(model).expanduser()
    saved = _read_policy_record(folder / POLICY_FILE) if (folder / POLICY_FILE).exists() else None
    checkpointing = _first(config.gradient_checkpointing, (saved or {}).get("gradient_checkpointing", False))
    if saved is not None and saved.get("base") is not None:  # an adapter over a base
        policy = load_policy(saved["base"], config.replace(
            seed=saved.get("seed", config.seed), lora=None,
            format=config.format or saved["format"], min_pixels=config.min_pixels or saved["min_pixels"],
            max_pixels=config.max_pixels or saved["max_pixels"],
            position_code=_first(config.position_code, saved.get("position_code", False)),
            observation=_first(config.observation, saved.get("observation")),
            element_order=_first(config.element_order, saved.get("element_order")),
            history_names=_first(config.history_names, saved.get("history_names", False)),
            text_refs=_first(config.text_refs, saved.get("text_refs", False)),
            field_texts=_first(config.field_texts, saved.get("field_texts", False)),
            gradient_checkpointing=checkpointing))
        _load_adapter(policy, folder / "adapter", LoraSettings.from_dict(
            {**saved["lora"], "targets": tuple(saved["lora"]["targets"])}))
        policy.policy_id = saved.get("policy_id", policy.policy_id)
        policy.config = config.replace(lora=policy.lora)
        return policy
    if model in TINY_PRESETS:
        loaded = load_tiny(model, seed=config.seed, dtype=config.dtype, device=device)
        defaults = (TINY_MIN_PIXELS, TINY_MAX_PIXELS)
        default_format = "grid"
        default_code = True
    elif is_random(model):
        loaded = load_random(model, seed=config.seed, dtype=config.dtype, device=device)
        defaults = (QWEN_MIN_PIXELS, QWEN_MAX_PIXELS)
        default_format = FAMILY_FORMATS[loaded.model_type]
        default_code = False
    else:
        loaded = load_pretrained(str(folder) if folder.exists() else model, dtype=config.dtype, device=device)
        defaults = loaded.default_pixels or (QWEN_MIN_PIXELS, QWEN_MAX_PIXELS)
        default_format = FAMILY_FORMATS[loaded.model_type]
        default_code = False
    if saved is not None:
        defaults = (saved["min_pixels"], saved["max_pixels"])
        default_format = saved["format"]
        default_code = saved.get("position_code", False)
    min_pixels = config.min_pixels or defaults[0]
    max_pixels = config.max_pixels or defaults[1]
    if min_pixels > max_pixels:
        raise ConfigError(f"min_pixels {min_pixels} is above max_pixels {max_pixels}")
    settings = loaded.image_settings
    processor = build_processor(loaded.model_type, loaded.tokenizer, min_pixels=min_pixels,
                                max_pixels=max_pixels, settings=settings)
    image_processor = processor.image_processor
    factor = int(image_processor.patch_size) * int(image_processor.merge_size)
    policy = VLMPolicy(model=loaded.model, tokenizer=loaded.tokenizer, processor=processor, config=config,
                       model_type=loaded.model_type,
                       base=model if model == READER_PRESET or not folder.exists() else str(folder.resolve()),
                       format_name=config.format or default_format, min_pixels=min_pixels,
                       max_pixels=max_pixels, factor=factor,
                       position_code=_first(config.position_code, default_code),
                       observation=_first(config.observation, (saved or {}).get("observation") or "screenshot"),
                       element_order=_first(config.element_order, (saved or {}).get("element_order") or "id"),
                       history_names=bool(_first(config.history_names, (saved or {}).get("history_names", False))),
                       text_refs=bool(_first(config.text_refs, (saved or {}).get("text_refs", False))),
                       field_texts=bool(_first(config.field_texts, (saved or {}).get("field_texts", False))))
    if saved is not None:
        policy.policy_id = saved.get("policy_id", policy.policy_id)
    if config.lora is not None:
        policy.enable_lora(config.lora)
    if checkpointing:
        policy.enable_gradient_checkpointing()
    return policy


def _named_line(decision: Decision, texts: tuple[str, ...] = ()) -> str | None:
    """An earlier click or typing by what it acted on (``click "Kettle"``, ``type "Rufus"``;
    ``type "$1"`` for the task's first text to type when ``texts`` holds it), for
    ``history_names``; None for an action this does not describe (it is rendered)."""
    from deskdojo.core.actions import Click

    action = decision.action
    if isinstance(action, Type):
        return f"type {json.dumps(said_by_place(action, texts).text, ensure_ascii=False)}"
    if not isinstance(action, Click) or action.element is None:
        return None
    name = ' '.join((decision.element_name or "").split())
    line = f"click {json.dumps(name, ensure_ascii=False)}" if name else "click an unnamed element"
    if (action.button, action.count) != ("left", 1):
        line += f" {action.button} {action.count}"
    return line


_PLACE = re.compile(r"\$([1-9][0-9]?)")


def text_place(text: str) -> int | None:
    """N when ``text`` is a reference ``$N`` to the task's N-th text to type, else None."""
    match = _PLACE.fullmatch(text)
    return int(match.group(1)) if match else None


def said_by_place(action: Action, texts: tuple[str, ...]) -> Action:
    """``action`` with a typed text that is one of the task's ``texts`` said as ``$N`` (its
    first place there); any other action or text as it is."""
    if isinstance(action, Type) and action.text in texts:
        return dataclasses.replace(action, text=f"${texts.index(action.text) + 1}")
    return action


def _first(value: Any, default: Any) -> Any:
    return default if value is None else value


def _read_policy_record(path: Path) -> dict[str, Any]:
    try:
        record = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{path}: not valid JSON ({exc.msg})") from None
    if record.get("format_version") != POLICY_FORMAT_VERSION:
        raise ConfigError(f"{path}: policy format {record.get('format_version')} is not supported "
                          f"(this deskdojo reads {POLICY_FORMAT_VERSION})")
    return record


def _load_adapter(policy: VLMPolicy, adapter: Path, settings: LoraSettings) -> None:
    from peft import PeftModel

    if not adapter.exists():
        raise ConfigError(f"{adapter} is missing: the saved policy's LoRA adapter was not written")
    policy.model = PeftModel.from_pretrained(policy.model, str(adapter), is_trainable=True)
    policy.lora = settings


def _resolve_device(device: str) -> str:
    if device != "auto":
        if device == "cuda":
            import torch

            if not torch.cuda.is_available():
                raise ConfigError("device 'cuda' asked for but torch sees no CUDA device; use 'cpu' or 'auto'")
        return device
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"
