"""The VLM policy and GRPO trainer as the loop's Learner.

GRPO hands the trainer samples that name a trajectory step; the policy scores prompts
built from observations. This adapter rebuilds each step's prompt from the run
directory (the frames the policy saw, the earlier decisions, the last action's error)
exactly as the rollout showed it, and scores the stored tokens. Imported only when an
evolve run builds a real policy (it loads torch through the agent modules).
"""

from __future__ import annotations

from collections import OrderedDict
from pathlib import Path
from typing import Any, Sequence

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
        from deskdojo.agent.policy import PolicySample

        steps = sample.trajectory.steps
        folder = self.root / sample.trajectory.id
        window = []
        for index in range(max(0, sample.step_index - self.history_k + 1), sample.step_index + 1):
            step = steps[index]
            frame = self._frame(folder / (step.frame or f"frames/{index:04d}.png"))
            previous_error = steps[index - 1].action_error if index > 0 else None
            window.append(Observation(screenshot=frame, screen_size=(frame.shape[1], frame.shape[0]),
                                      step=index, action_error=previous_error))
        history = tuple(Decision(text=s.model_text, action=s.action, token_ids=tuple(s.token_ids),
                                 logprobs=tuple(s.logprobs)) for s in steps[:sample.step_index])
        return PolicySample(observations=tuple(window), task=sample.task, history=history,
                            target_ids=tuple(sample.token_ids))


def vlm_learner(policy: Any, grpo_settings: dict[str, Any], trajectories_root: Path) -> GRPOLearner:
    """A GRPOLearner over a VLMPolicy (LoRA on when the policy has adapters)."""
    from deskdojo.agent.train.grpo import GRPOConfig, GRPOTrainer

    config = GRPOConfig.from_dict({"max_new_tokens": policy.max_new_tokens, **grpo_settings})
    prompts = StepPrompts(trajectories_root, policy.config.history_k)

    def policy_logprobs(samples: Sequence[Any]) -> tuple[Any, Any]:
        batch = policy.encode_samples([prompts.policy_sample(s) for s in samples])
        return policy.token_logprobs(batch)

    def reference_logprobs(samples: Sequence[Any]) -> tuple[Any, Any]:
        batch = policy.encode_samples([prompts.policy_sample(s) for s in samples])
        with policy.adapters_disabled():
            return policy.token_logprobs(batch)

    needs_reference = config.kl_beta > 0 or config.neg_imitation_weight > 0
    if needs_reference and policy.lora is None:
        # without adapters the "reference" would be the trained policy itself
        config = config.replace(kl_beta=0.0, neg_imitation_weight=0.0)
        needs_reference = False
    trainer = GRPOTrainer(config, policy_logprobs, policy.trainable_parameters(),
                          reference_logprobs=reference_logprobs if needs_reference else None)
    return GRPOLearner(policy, trainer, set_greedy=policy.set_greedy, module=policy.model,
                       save_policy=lambda folder: policy.save(folder))
