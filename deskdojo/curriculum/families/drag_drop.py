"""drag_drop: drag tiles of the practice ``slider_drag`` app onto drop targets.

Levels add targets to choose among, other tiles and a slider as distractors, then
sequences of two and three drags, with target labels that share a word. Checked
through each tile's ``on`` (the target under its centre); tiles start off every target.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from deskdojo.core.actions import Drag
from deskdojo.core.types import Check, Locator, OracleStep, Split, Task
from deskdojo.curriculum.families.base import Family, launch, make_task, pick
from deskdojo.curriculum.families.vocab import COLORS, NAMES, NOUNS

APP = "slider_drag"


@dataclass(frozen=True)
class Level:
    tiles: int
    targets: int
    drags: int  # tiles to move, each onto its own target
    slider: bool = False  # a slider in the window too (a distractor)
    similar: bool = False  # target labels share their colour word
    canvas: tuple[int, int] = (360, 220)


LEVELS = (
    Level(tiles=1, targets=1, drags=1),
    Level(tiles=1, targets=3, drags=1, canvas=(400, 240)),
    Level(tiles=3, targets=3, drags=1, slider=True, canvas=(460, 260)),
    Level(tiles=3, targets=4, drags=2, slider=True, canvas=(480, 280)),
    Level(tiles=4, targets=5, drags=3, slider=True, similar=True, canvas=(520, 300)),
)


class DragDrop(Family):
    def make(self, level: int, seed: int, split: Split, rng: random.Random) -> Task:
        knobs = LEVELS[level]
        tiles = pick(rng, NAMES, split, knobs.tiles)
        if knobs.similar:  # e.g. "Teal basket", "Teal kettle", "Coral basket"
            colours = [c.capitalize() for c in pick(rng, COLORS, split, 2)]
            things = pick(rng, NOUNS, split, knobs.targets)
            targets = [f"{colours[0] if i % 3 else colours[1]} {thing}" for i, thing in enumerate(things)]
        else:
            targets = [f"{c.capitalize()} box" for c in pick(rng, COLORS, split, knobs.targets)]
        width, height = knobs.canvas
        params = {"seed": seed, "tiles": tiles, "targets": targets,
                  "canvas_size": [width + rng.randint(0, 40), height + rng.randint(0, 30)]}
        if knobs.slider:
            (name,) = pick(rng, NOUNS, split, 1)
            params["sliders"] = {name.capitalize(): [0, 100]}
        else:
            params["sliders"] = {}

        moves = list(zip(rng.sample(tiles, knobs.drags), rng.sample(targets, knobs.drags)))
        oracle = tuple(OracleStep(Drag(0, 0, 0, 0), at=Locator(APP, path=f"tiles.{tile}"),
                                  to=Locator(APP, path=f"targets.{target}")) for tile, target in moves)
        checks = tuple(Check("app_state", "equals", {"app": APP, "path": f"tiles.{tile}.on"}, expected=target)
                       for tile, target in moves)
        return make_task(self, level, seed, split, instruction=instruction(rng, moves),
                         setup=(launch(APP, params),), checks=checks, oracle=oracle,
                         max_steps=2 * len(oracle) + 3)


def instruction(rng: random.Random, moves: list[tuple[str, str]]) -> str:
    parts = [f"the {tile} tile onto the {target} target" for tile, target in moves]
    if len(parts) == 1:
        return rng.choice([f"Drag {parts[0]}.", f"Move {parts[0]} by dragging it.",
                           f"Drop {parts[0]}."])
    listed = ", ".join(parts[:-1]) + f" and {parts[-1]}"
    return rng.choice([f"Drag {listed}.", f"Using drag and drop, put {listed}."])


FAMILIES = [DragDrop(
    name="drag_drop", app=APP, levels=len(LEVELS),
    description="Drag tiles onto drop targets in the practice slider_drag app.",
    knobs=("one tile, one target", "three targets to choose from", "three tiles and a slider as distractors",
           "two drags in a row", "three drags, five targets whose labels share a word"),
)]
