"""The VLM policy and GRPO trainer as the loop's Learner.

GRPO hands the trainer samples that name a trajectory step; the policy scores prompts
built from observations. This adapter rebuilds each step's prompt from the run
directory (the frames the policy saw, the earlier decisions, the last action's error)
exactly as the rollout showed it, and scores the stored tokens. Imported only when an
evolve run builds a real policy (it loads torch through the agent modules).
"""

from __future__ import annotations

import dataclasses
from collections import OrderedDict
from pathlib import Path
from typing import Any, Callable, Sequence

from deskdojo.core.protocols import Decision
from deskdojo.core.types import Observation
from deskdojo.evolve.parts import GRPOLearner

FRAME_CACHE = 256


class StepPrompts:
    """GRPO samples -> policy samples (observation window, task, history, target ids)."""

    def __init__(self, trajectories_root: Path, history_k: int):
        self.root = Path(trajectories_root)
        self.history_k = history_k
        self._frames: OrderedDict[Path, Any] = OrderedDict()
        self._elements: dict[Path, tuple[Any, ...]] = {}  # a listing's rows

    def _frame(self, path: Path) -> Any:
        if path in self._frames:
            self._frames.move_to_end(path)
            return self._frames[path]
        import numpy as np
        from PIL import Image

        with Image.open(path) as image:
            frame = np.asarray(image.convert("RGB"))
        self._frames[path] = frame
        while len(self._frames) > FRAME_CACHE:
            self._frames.popitem(last=False)
        return frame

    def policy_sample(self, sample: Any) -> Any:
        """The prompt the step acted on: from its ``Step.prompt`` record (window frames and
        error line as shown), or, for records older than trajectory format 2, rebuilt
        from the previous step's refusal and ``history_k`` frames (not always what acted)."""
        from deskdojo.agent.observation import place_of
        from deskdojo.agent.policy import PolicySample

        steps = sample.trajectory.steps
        step = steps[sample.step_index]
        folder = self.root / sample.trajectory.id
        if step.prompt is not None and step.prompt.window:
            paths = [folder / name for name in step.prompt.window]
            errors = [None] * (len(paths) - 1) + [step.prompt.error]  # only the newest screen's is shown
        else:
            indexes = range(max(0, sample.step_index - self.history_k + 1), sample.step_index + 1)
            paths = [folder / (steps[i].frame or f"frames/{i:04d}.png") for i in indexes]
            errors = [steps[i - 1].action_error if i > 0 else None for i in indexes]
        window = []
        for path, error in zip(paths, errors):
            frame = self._frame(path)
            window.append(Observation(screenshot=frame, screen_size=(frame.shape[1], frame.shape[0]),
                                      action_error=error))
        if step.prompt is not None and step.prompt.elements is not None and window:
            # the listing the newest screen came with: the same table (and, for som, marks) as acted
            window[-1] = dataclasses.replace(window[-1], elements=self._listing(folder / step.prompt.elements))
        history = tuple(Decision(text=s.model_text, action=s.action, token_ids=tuple(s.token_ids),
                                 logprobs=tuple(s.logprobs), element_name=element.name if element else None,
                                 element_place=place_of(element, rows) if element else None)
                        for s in steps[:sample.step_index] for element, rows in (self._acted_element(folder, s),))
        return PolicySample(observations=tuple(window), task=sample.task, history=history,
                            target_ids=tuple(sample.token_ids))

    def _acted_element(self, folder: Path, step: Any) -> tuple[Any, tuple[Any, ...]]:
        """The element ``step``'s action named and the rows of the listing it was shown
        in (its name and place, as the acting Decision carried them, for prompts that say
        which rows were acted on); ``(None, ())`` when it named none."""
        from deskdojo.core.actions import element_of

        element = element_of(step.action) if step.action is not None else None
        if element is None or step.prompt is None or step.prompt.elements is None:
            return None, ()
        path = folder / step.prompt.elements
        if path not in self._elements:  # each earlier step's listing is read once, not per sample
            self._elements[path] = self._listing(path).elements
            while len(self._elements) > FRAME_CACHE:
                self._elements.pop(next(iter(self._elements)))
        rows = self._elements[path]
        return next((e for e in rows if e.id == element), None), rows

    @staticmethod
    def _listing(path: Path) -> Any:
        import json

        from deskdojo.core.elements import ElementList
        from deskdojo.core.errors import RecordError

        try:
            return ElementList.from_json(json.loads(path.read_text()))
        except (OSError, ValueError) as exc:
            raise RecordError(f"{path}: the element listing a step was shown cannot be read ({exc})") from None

    @staticmethod
    def temperature(sample: Any) -> float | None:
        """The T the step's stored log-probs were tempered by; None: not recorded."""
        prompt = sample.trajectory.steps[sample.step_index].prompt
        return prompt.temperature if prompt is not None else None

    def logprobs(self, policy: Any, samples: Sequence[Any]) -> tuple[Any, Any]:
        """``policy.token_logprobs`` over the samples' rebuilt prompts, each row scored at
        the temperature it was sampled at (a batch that mixes temperatures, e.g. a replayed
        success from before a resume that changed it, takes one more forward per extra one)."""
        temperatures = [self.temperature(s) for s in samples]
        distinct = list(dict.fromkeys(temperatures))
        batch = policy.encode_samples([self.policy_sample(s) for s in samples])
        logp, mask = policy.token_logprobs(batch, temperature=distinct[0])
        for temperature in distinct[1:]:
            other, _ = policy.token_logprobs(batch, temperature=temperature)
            rows = mask.new_tensor([t == temperature for t in temperatures])[:, None]
            logp = other.where(rows, logp)
        return logp, mask


def vlm_learner(policy: Any, grpo_settings: dict[str, Any], trajectories_root: Path, *,
                log: Callable[[str], None] | None = None) -> GRPOLearner:
    """A GRPOLearner over a VLMPolicy (LoRA on when the policy has adapters).

    The reference policy (for ``kl_beta`` and ``neg_imitation_weight``) is the base with
    the adapters off; without LoRA it is a frozen copy of the weights as they are now
    (the start of GRPO), which doubles the weights' memory: set both to 0 to avoid it.
    With ``generated_rehearsal``, every optimizer step also learns that many generated
    later-step tables (``sft.generated_samples``, seeded by the policy's seed and the update).
    """
    from deskdojo.agent.train.grpo import GRPOConfig, GRPOTrainer

    config = GRPOConfig.from_dict({"max_new_tokens": policy.max_new_tokens, **grpo_settings})
    prompts = StepPrompts(trajectories_root, policy.config.history_k)

    def policy_logprobs(samples: Sequence[Any]) -> tuple[Any, Any]:
        return prompts.logprobs(policy, samples)

    def reference_logprobs(samples: Sequence[Any]) -> tuple[Any, Any]:
        with policy.reference():
            return prompts.logprobs(policy, samples)

    needs_reference = config.kl_beta > 0 or config.neg_imitation_weight > 0
    if needs_reference and policy.lora is None:
        # no adapters to switch off: the reference is a frozen copy of the starting weights
        size = policy.keep_frozen_reference()
        if log is not None:
            log(f"grpo: no LoRA, so kl_beta={config.kl_beta} / neg_imitation_weight={config.neg_imitation_weight} "
                f"score against a frozen copy of the starting weights (+{size / 2**30:.2f} GiB); "
                f"set both to 0 to skip it")
    supervised = None
    if config.generated_rehearsal:
        from deskdojo.agent.train.sft import check_rehearsal, generated_samples, supervised_nll

        check_rehearsal(config.generated_rehearsal, policy.observation, setting="grpo.generated_rehearsal")

        def supervised(update: int) -> Any:
            return supervised_nll(policy, generated_samples(policy, config.generated_rehearsal,
                                                            seed=policy.config.seed, step=update))

    trainer = GRPOTrainer(config, policy_logprobs, policy.trainable_parameters(),
                          reference_logprobs=reference_logprobs if needs_reference else None,
                          supervised=supervised)
    return GRPOLearner(policy, trainer, module=policy.model,
                       save_policy=lambda folder: policy.save(folder))
