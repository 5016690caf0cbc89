"""A learner's checkpoint: the trained parameters, the trainer's state (optimizer, replay)
and the policy's sampling RNG, in one ``learner.pt`` (torch lives here, not in evolve)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from deskdojo.core.errors import RunDirError

LEARNER_FILE = "learner.pt"


def save_learner(folder: Path, module: Any, trainer_state: dict[str, Any], policy_rng: Any) -> None:
    import torch

    folder.mkdir(parents=True, exist_ok=True)
    trainable = {name: p.detach().cpu().clone() for name, p in module.named_parameters() if p.requires_grad}
    torch.save({"trainable": trainable, "trainer": trainer_state, "policy_rng": policy_rng},
               folder / LEARNER_FILE)


def load_learner(folder: Path, module: Any) -> tuple[dict[str, Any], Any]:
    """Copy the saved parameters into ``module``; returns (trainer state, policy RNG state)."""
    import torch

    state = torch.load(folder / LEARNER_FILE, weights_only=False)
    params = dict(module.named_parameters())
    missing = sorted(set(state["trainable"]) - set(params))
    if missing:
        raise RunDirError(f"checkpoint {folder} holds parameters this policy lacks ({missing[:3]}...): "
                          "was the run's model or LoRA setting changed?")
    with torch.no_grad():
        for name, value in state["trainable"].items():
            params[name].copy_(value)
    return state["trainer"], state.get("policy_rng")
