"""Grounding credit: how near a trajectory's clicks landed to the task's targets.

An outcome reward says nothing to a policy whose clicks all miss: every rollout of the
group scores the same and the group is dropped. The practice apps publish where every
widget is, and a task's oracle names the widgets it acts on (``Locator``), so the judge
can also say *how far* each click was from a target. The credit of a point for a box is
a Gaussian around the box's centre whose spread is the box's size times ``sigma``
(the point rewards of GUI-G², Tang et al. 2025, for GUI grounding)::

    credit(p, box) = exp(-((px - cx)^2 / (sigma w)^2 + (py - cy)^2 / (sigma h)^2) / 2)

A trajectory's grounding is the geometric mean of recall (each target's best credit over
the clicks, averaged over targets) and precision (each click's best credit over the
targets, averaged over clicks): landing on every target counts, and so does not
spraying clicks everywhere. Targets are resolved in the state the judge sees (the
practice apps do not move their widgets while a task runs); oracle steps whose target
is not on screen then (a closed menu's entry) are left out. Standard library only.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Mapping, Sequence

from deskdojo.core.actions import Action, Click, Drag
from deskdojo.core.oracle import locate_box
from deskdojo.core.types import Task, Trajectory

DEFAULT_SIGMA = 1.0


@dataclass(frozen=True, slots=True)
class Target:
    """A box the task's oracle acts on, and which point of an action should land on it:
    ``at`` (a click's point, a drag's start) or ``to`` (a drag's end)."""

    box: Mapping[str, int]
    end: str = "at"


def point_credit(x: float, y: float, box: Mapping[str, float], sigma: float = DEFAULT_SIGMA) -> float:
    """Gaussian credit in (0, 1] of the point ``(x, y)`` for ``box`` (1 at its centre).

    >>> point_credit(50, 20, {"x": 0, "y": 0, "w": 100, "h": 40})
    1.0
    >>> round(point_credit(150, 20, {"x": 0, "y": 0, "w": 100, "h": 40}), 4)  # one width off
    0.6065
    """
    if sigma <= 0:
        raise ValueError(f"grounding sigma must be > 0, got {sigma}")
    cx, cy = box["x"] + box["w"] / 2, box["y"] + box["h"] / 2
    zx, zy = (x - cx) / (sigma * box["w"]), (y - cy) / (sigma * box["h"])
    return math.exp(-(zx * zx + zy * zy) / 2)


def task_targets(task: Task, apps: Mapping[str, Any]) -> list[Target]:
    """The boxes of the task's oracle clicks and drags that are on screen in ``apps``."""
    targets = []
    for step in task.oracle:
        if not isinstance(step.action, (Click, Drag)):
            continue
        for end, locator in (("at", step.at), ("to", step.to)):
            if locator is None:
                continue
            try:
                targets.append(Target(locate_box(apps, locator), end))
            except (KeyError, IndexError, TypeError):
                continue
    return targets


def _point(action: Action | None, end: str) -> tuple[float, float] | None:
    if end == "at" and isinstance(action, (Click, Drag)):
        if action.x is None:  # a click by an element the sandbox refused: it clicked nowhere
            return None
        return action.x, action.y
    if end == "to" and isinstance(action, Drag):
        return action.to_x, action.to_y
    return None


def grounding(actions: Sequence[Action | None], targets: Sequence[Target],
              sigma: float = DEFAULT_SIGMA) -> float | None:
    """sqrt(recall x precision) of the actions' points against ``targets``, in [0, 1];
    0 when no action has a point, None when there are no targets (nothing to ground)."""
    if not targets:
        return None
    # credit[i][j]: target i against action j (None where the action has no such point)
    credit = [[None if (p := _point(a, t.end)) is None else point_credit(*p, t.box, sigma) for a in actions]
              for t in targets]
    pointing = [j for j in range(len(actions)) if any(row[j] is not None for row in credit)]
    if not pointing:
        return 0.0
    recall = sum(max((c for c in row if c is not None), default=0.0) for row in credit) / len(targets)
    precision = sum(max(row[j] or 0.0 for row in credit) for j in pointing) / len(pointing)
    return math.sqrt(recall * precision)


def trajectory_grounding(task: Task, trajectory: Trajectory, apps: Mapping[str, Any],
                         sigma: float = DEFAULT_SIGMA) -> float | None:
    """``grounding`` of the trajectory's actions against the task's targets in ``apps``."""
    return grounding([step.action for step in trajectory.steps], task_targets(task, apps), sigma)
