"""TensorBoard's writer, from torch (imported only when a run writes its first scalars)."""

from __future__ import annotations

from pathlib import Path
from typing import Any


def summary_writer(folder: Path, *, purge_step: int | None = None) -> Any:
    """A ``SummaryWriter`` on ``folder``; ``purge_step`` drops events a resumed run redoes."""
    from torch.utils.tensorboard import SummaryWriter

    return SummaryWriter(str(folder), purge_step=purge_step)
