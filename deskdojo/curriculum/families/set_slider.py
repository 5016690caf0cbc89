"""set_slider: set sliders of the practice ``slider_drag`` app to a value.

The slider can be dragged by its knob, clicked along its trough or moved with the
arrow keys; the check is ``approx`` with a tolerance that shrinks with the level.
Levels add other sliders beside it (which must be left alone), vertical sliders,
other ranges, starting values that are not the minimum, and two sliders to set.
Targets always lie well away from the starting value, so doing nothing fails.

The oracle drags the knob (``handle_box``) to a point on the ``track``: with the
``slider_length`` knob fixed, the track is ``length - slider_length - 2`` pixels long,
so the point for a value is known when the task is made.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from deskdojo.core.actions import Drag
from deskdojo.core.types import Check, Locator, OracleStep, Split, Task
from deskdojo.curriculum.families.base import Family, launch, make_task, pick
from deskdojo.curriculum.families.vocab import NOUNS

APP = "slider_drag"
RANGES = ((0, 100), (0, 50), (0, 200), (-50, 50), (10, 90), (0, 60))


@dataclass(frozen=True)
class Level:
    sliders: int  # sliders in the window
    to_set: int  # how many of them the task sets
    tolerance: float  # |value - target| allowed
    ranges: tuple[tuple[int, int], ...]  # the ranges sliders are drawn from
    orients: tuple[str, ...] = ("horizontal",)
    start_anywhere: bool = False  # sliders start at a random value, not at their minimum


LEVELS = (
    Level(sliders=1, to_set=1, tolerance=10, ranges=((0, 100),)),
    Level(sliders=1, to_set=1, tolerance=5, ranges=((0, 100), (0, 50), (0, 200)),
          orients=("horizontal", "vertical")),
    Level(sliders=2, to_set=1, tolerance=3, ranges=RANGES, orients=("horizontal", "vertical"),
          start_anywhere=True),
    Level(sliders=3, to_set=1, tolerance=2, ranges=((0, 100), (-50, 50), (10, 90), (0, 60)),
          orients=("horizontal", "vertical"), start_anywhere=True),
    Level(sliders=3, to_set=2, tolerance=1, ranges=((0, 100), (-50, 50), (0, 60)),
          orients=("horizontal", "vertical"), start_anywhere=True),
)


def choose_target(rng: random.Random, low: int, high: int, start: int, tolerance: float) -> int:
    """A value at least a fifth of the range (and several tolerances) away from ``start``."""
    gap = max((high - low) // 5, int(3 * tolerance) + 1)
    choices = [v for v in range(low, high + 1) if abs(v - start) >= gap]
    return rng.choice(choices)


class SetSlider(Family):
    def make(self, level: int, seed: int, split: Split, rng: random.Random) -> Task:
        knobs = LEVELS[level]
        names = [n.capitalize() for n in pick(rng, NOUNS, split, knobs.sliders)]
        ranges = {name: list(rng.choice(knobs.ranges)) for name in names}
        starts = {name: (rng.randint(low, high) if knobs.start_anywhere else low)
                  for name, (low, high) in ranges.items()}
        orient = rng.choice(knobs.orients)
        length = rng.randint(260, 360)
        knob = rng.randint(20, 30)
        track = length - knob - 2  # pixels from the "from" end to the "to" end (see the module docstring)
        params = {"seed": seed, "sliders": ranges, "values": starts, "orient": orient, "length": length,
                  "slider_length": knob, "tiles": [], "targets": []}

        targets = {}
        for name in rng.sample(names, knobs.to_set):
            low, high = ranges[name]
            targets[name] = choose_target(rng, low, high, starts[name], knobs.tolerance)
        oracle = []
        for name, value in targets.items():
            low, high = ranges[name]
            offset = round((value - low) / (high - low) * track) - track // 2  # from the track's centre
            shift = {"dx": offset} if orient == "horizontal" else {"dy": offset}
            oracle.append(OracleStep(Drag(0, 0, 0, 0), at=Locator(APP, path=f"widgets.slider:{name}.handle_box"),
                                     to=Locator(APP, path=f"widgets.slider:{name}.track", **shift)))
        checks = [Check("app_state", "approx", {"app": APP, "path": f"sliders.{name}",
                                                "tolerance": knobs.tolerance}, expected=value)
                  for name, value in targets.items()]
        untouched = [name for name in names if name not in targets]
        checks += [Check("app_state", "equals", {"app": APP, "path": f"sliders.{name}"}, expected=starts[name],
                         weight=0.5) for name in untouched]
        return make_task(self, level, seed, split, instruction=instruction(rng, targets, untouched, knobs),
                         setup=(launch(APP, params),), checks=tuple(checks), oracle=tuple(oracle),
                         max_steps=2 * len(oracle) + 3 + level)


def instruction(rng: random.Random, targets: dict[str, int], untouched: list[str], knobs: Level) -> str:
    settings = [f"the {name} slider to {value}" for name, value in targets.items()]
    within = f", give or take {knobs.tolerance:g}" if knobs.tolerance < 5 else ""
    text = rng.choice(["Set {}{}.", "Move {}{}.", "Adjust {}{}."]).format(" and ".join(settings), within)
    if untouched:
        text += " Leave the other sliders as they are."
    return text


FAMILIES = [SetSlider(
    name="set_slider", app=APP, levels=len(LEVELS),
    description="Set a slider of the practice slider_drag app to a value, within a tolerance.",
    knobs=("one horizontal slider, 0-100, within 10", "vertical too, other ranges, within 5",
           "a second slider to leave alone, any starting value, within 3",
           "three sliders, within 2", "set two of three sliders, within 1"),
)]
