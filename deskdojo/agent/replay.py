"""Replay a demonstration in a fresh sandbox and say where the screen stops matching it.

Before each step's action the live screen (after a bounded wait for it to settle) is
compared with the frame recorded before that action. A step is ``diverged`` when they
differ: the action of the step before it (or the task's setup, for step 0) did
something other than in the recording. At the end a judge, if given, says whether the
replayed run solved the task.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from typing import Any, Callable

from deskdojo.core.actions import Done, Fail, by_point
from deskdojo.core.errors import RecordError
from deskdojo.core.protocols import Judge
from deskdojo.core.records import to_json
from deskdojo.core.types import Verdict

DEFAULT_MIN_STRUCTURE = 0.995
"""Screens whose SSIM (8x downscaled grey, ``frame_similarity``) is below this differ.
Measured on the buttons app at 1024x768 (xvfb): a faithful replay scores 1.0 at every
step (mad 0: Xvfb renders deterministically once the screen has settled); a click on a
different button, which changes only the status label and which button shows the hover
colour, scores 0.986 (mad 0.30) at the next step."""


SETTLE_TIMEOUT_S = 2.0


@dataclass(frozen=True, slots=True)
class ReplayStep:
    """One compared step: the similarity of the live screen to the recorded one."""

    index: int
    structure: float  # SSIM, 1 = the same screen
    mad: float  # mean absolute difference per channel, 0 = identical
    diverged: bool
    action_error: str | None = None  # the sandbox refused the replayed action


@dataclass(frozen=True, slots=True)
class ReplayReport:
    demo: str
    task_id: str
    threshold: float
    steps: tuple[ReplayStep, ...]
    first_divergent: int | None
    verdict: Verdict | None = None
    stopped_early: bool = False
    seconds: float = 0.0

    @property
    def diverged(self) -> bool:
        return self.first_divergent is not None

    def to_json(self) -> dict[str, Any]:
        return to_json(self)


def replay(demo_dir: Any, sandbox: Any, *, judge: Judge | None = None,
           until_diverge: bool = False, threshold: float | None = None,
           on_step: Callable[[int, Any, Any, float], Any] | None = None,
           settle_timeout_s: float = SETTLE_TIMEOUT_S) -> ReplayReport:
    """Reset ``sandbox`` to the demo's task, re-perform its actions and compare screens.

    ``demo_dir`` is a demo folder or a ``Demo`` already loaded (and so checked).

    ``threshold`` is the least SSIM that counts as the same screen (default
    ``DEFAULT_MIN_STRUCTURE``). ``until_diverge`` stops at the first divergent step.
    ``on_step(index, recorded_rgb, live_rgb, similarity)`` is called for every compared
    step (the panel draws the two frames side by side).
    """
    from deskdojo.agent.demos import Demo, load_demo
    from deskdojo.perception.change import frame_similarity
    from deskdojo.perception.stable import wait_for_stable_screen

    threshold = DEFAULT_MIN_STRUCTURE if threshold is None else float(threshold)
    started = time.monotonic()
    demo = demo_dir if isinstance(demo_dir, Demo) else load_demo(demo_dir)
    sandbox.reset(demo.task)
    compared: list[ReplayStep] = []
    first_divergent: int | None = None
    stopped_early = False
    for step in demo.trajectory.steps:
        if step.frame is not None:
            recorded = _read_rgb(demo.path / step.frame, f"step {step.index}")
            # 4 equal frames (150 ms still): under load a Tk redraw can pause for 2 frames
            # mid-change (seen once in CI: SSIM 0.993 on a faithful replay)
            live, _waited, _stable = wait_for_stable_screen(lambda: sandbox.observe().screenshot,
                                                            timeout_s=settle_timeout_s, stable_frames=4)
            similarity = frame_similarity(recorded, live)
            diverged = similarity.structure < threshold
            if on_step is not None:
                on_step(step.index, recorded, live, similarity.structure)
            compared.append(ReplayStep(step.index, round(similarity.structure, 5), round(similarity.mad, 4),
                                       diverged))
            if diverged and first_divergent is None:
                first_divergent = step.index
                if until_diverge:
                    stopped_early = True
                    break
        if step.action is None or isinstance(step.action, (Done, Fail)):
            continue  # an invalid step performed nothing; done/fail only end the episode
        result = sandbox.act(by_point(step.action))
        if not result.ok and compared and compared[-1].index == step.index:
            last = compared[-1]
            compared[-1] = ReplayStep(last.index, last.structure, last.mad, last.diverged, result.error)
    verdict = judge.judge(demo.task, demo.trajectory, sandbox) if judge is not None and not stopped_early else None
    return ReplayReport(demo=str(demo.path), task_id=demo.task.id, threshold=threshold, steps=tuple(compared),
                        first_divergent=first_divergent, verdict=verdict, stopped_early=stopped_early,
                        seconds=round(time.monotonic() - started, 3))


def _read_rgb(path: os.PathLike[str], what: str) -> Any:
    import numpy as np
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as image:
            return np.asarray(image.convert("RGB"))
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as exc:
        reason = "not an image" if isinstance(exc, UnidentifiedImageError) else str(exc)
        raise RecordError(f"{path} ({what}) is not a readable PNG: {reason}") from None


def describe_report(report: ReplayReport) -> str:
    """A few lines for a terminal."""
    lines = [f"replayed {report.demo} (task {report.task_id}) in {report.seconds:.1f} s; "
             f"threshold SSIM {report.threshold}"]
    for step in report.steps:
        mark = "DIVERGED" if step.diverged else "ok"
        extra = f"  refused: {step.action_error}" if step.action_error else ""
        lines.append(f"  step {step.index:>3}  ssim {step.structure:.4f}  mad {step.mad:.3f}  {mark}{extra}")
    if report.first_divergent is None:
        lines.append("no divergence: the replay matches the recording")
    else:
        cause = "the setup" if report.first_divergent == 0 else f"step {report.first_divergent - 1}'s action"
        lines.append(f"first divergence before step {report.first_divergent} (after {cause})")
    if report.verdict is not None:
        lines.append(f"judge {report.verdict.judge_id}: success={report.verdict.success} "
                     f"score={report.verdict.score:.2f}")
    return "\n".join(lines)


__all__ = ["DEFAULT_MIN_STRUCTURE", "ReplayReport", "ReplayStep", "describe_report", "replay"]
