"""The hybrid judge: executable checks where a task has them, the VLM judge where it has
none, or both, with every disagreement written down.

In ``both`` mode the checks decide success and score (they read ground truth) and the VLM
judge's first error step and redundant steps become the step labels, which GRPO's
negative imitation reads; when the two disagree on success, one line goes to
``disagreements.jsonl`` (the panel lists them in its trajectory view).
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path
from typing import Any

from deskdojo.core.rundir import JsonlFile
from deskdojo.core.types import Task, Trajectory, Verdict
from deskdojo.world_model.vlm_judge import VLMJudge, answer_of

MODES = ("fallback", "both")
DISAGREEMENTS = "disagreements.jsonl"


class HybridJudge:
    """``checks`` (a StateJudge) and ``vlm`` (a VLMJudge) behind the one ``Judge`` protocol.

    ``fallback``: checks when the task has any, else the VLM judge. ``both``: the VLM judge
    also reads every task with checks; the verdict keeps the checks' outcome with the VLM's
    step labels, and a disagreement on success is appended to ``disagreements``. Every
    verdict carries this judge's id; its evidence says which part decided (check names,
    or ``vlm`` votes)."""

    def __init__(self, checks: Any, vlm: VLMJudge, *, mode: str = "fallback",
                 disagreements: str | Path | None = None, judge_id: str = "hybrid"):
        from deskdojo.core.errors import ConfigError

        if mode not in MODES:
            raise ConfigError(f"hybrid judge mode {mode!r} is not one of: {', '.join(MODES)}")
        if mode == "both" and disagreements is None:
            raise ConfigError("the hybrid judge in mode 'both' needs a disagreements file (a run's "
                              f"{DISAGREEMENTS})")
        self.checks, self.vlm, self.mode = checks, vlm, mode
        self.disagreements = JsonlFile(disagreements) if disagreements is not None else None
        self.judge_id = judge_id
        self.counts = {"checks": 0, "vlm": 0, "both": 0, "disagreements": 0}

    def judge(self, task: Task, trajectory: Trajectory, sandbox: Any | None) -> Verdict:
        if not task.checks:
            self.counts["vlm"] += 1
            return dataclasses.replace(self.vlm.judge(task, trajectory, sandbox), judge_id=self.judge_id)
        checked = self.checks.judge(task, trajectory, sandbox)
        if self.mode == "fallback":
            self.counts["checks"] += 1
            return dataclasses.replace(checked, judge_id=self.judge_id)
        self.counts["both"] += 1
        seen = self.vlm.judge(task, trajectory, sandbox)
        if seen.success != checked.success:
            self.counts["disagreements"] += 1
            assert self.disagreements is not None
            self.disagreements.append({
                "time": time.time(), "task_id": task.id, "trajectory_id": trajectory.id,
                "family": task.family, "level": task.level,
                "checks": {"success": checked.success, "score": checked.score, "judge_id": checked.judge_id},
                "vlm": {"success": seen.success, "score": seen.score, "judge_id": seen.judge_id,
                        "answer": answer_of(seen)}})
        return dataclasses.replace(checked, step_labels=seen.step_labels, first_error_step=seen.first_error_step,
                                   evidence=checked.evidence + seen.evidence, judge_id=self.judge_id)
