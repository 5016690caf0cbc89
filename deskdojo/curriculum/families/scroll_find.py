"""scroll_find: scroll the practice ``scroll_find`` app's list until an item shows, then
click it.

Levels lengthen the list and push the item further down, turn the list into a strip
that scrolls sideways, and finally surround the item with labels that share its words.
Checked through the app's ``selected`` row. The oracle scrolls by the exact number of
wheel clicks that brings the item to the middle of the view (rows and wheel step are
knobs; the view stops at the list's end), then clicks the item where ``target_row`` says
it is.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from deskdojo.core.actions import Click, Scroll
from deskdojo.core.errors import ConfigError
from deskdojo.core.types import Check, Locator, OracleStep, Split, Task
from deskdojo.curriculum.families.base import Family, launch, make_task, split_pool
from deskdojo.curriculum.families.vocab import COLORS, NOUNS

APP = "scroll_find"
CLICKS_PER_SCROLL = 15  # wheel clicks per oracle scroll action


@dataclass(frozen=True)
class Level:
    rows: tuple[int, int]  # list length, low..high
    depth: tuple[float, float]  # where the item sits, as a share of the list
    viewport: tuple[int, int]  # rows visible at once
    wheel: int = 3  # rows per wheel click
    horizontal: bool = False
    similar: bool = False  # many rows share the item's colour or noun
    pairs: bool = True  # labels are "Colour noun"; level 0 uses single nouns


LEVELS = (
    Level(rows=(8, 8), depth=(0.75, 0.9), viewport=(5, 5), pairs=False),
    Level(rows=(20, 30), depth=(0.5, 0.8), viewport=(6, 8)),
    Level(rows=(60, 90), depth=(0.85, 1.0), viewport=(6, 9), wheel=4),
    Level(rows=(24, 36), depth=(0.6, 1.0), viewport=(3, 3), horizontal=True, wheel=2),
    Level(rows=(100, 140), depth=(0.8, 1.0), viewport=(6, 9), wheel=5, similar=True),
)


def row_labels(rng: random.Random, split: Split, n: int, *, pairs: bool, similar: bool) -> tuple[list[str], str]:
    """The other rows' ``n - 1`` distinct labels, and the target's."""
    nouns = split_pool(NOUNS, split)
    if not pairs:
        target, *others = [w.capitalize() for w in rng.sample(nouns, n)]
        return others, target
    colours = [c.capitalize() for c in split_pool(COLORS, split)]
    target = f"{rng.choice(colours)} {rng.choice(nouns)}"
    colour, noun = target.split(" ")
    chosen = {target}
    if similar:  # rows that share the colour or the noun
        look_alikes = [f"{colour} {w}" for w in nouns] + [f"{c} {noun}" for c in colours]
        chosen.update(rng.sample([x for x in look_alikes if x != target], min(n // 4, len(look_alikes) - 1)))
    while len(chosen) < n:
        chosen.add(f"{rng.choice(colours)} {rng.choice(nouns)}")
    labels = sorted(chosen - {target})
    rng.shuffle(labels)
    return labels[:n - 1], target


class ScrollFind(Family):
    def make(self, level: int, seed: int, split: Split, rng: random.Random) -> Task:
        knobs = LEVELS[level]
        n = rng.randint(*knobs.rows)
        viewport = rng.randint(*knobs.viewport)
        others, target = row_labels(rng, split, n, pairs=knobs.pairs, similar=knobs.similar)
        index = min(n - 1, max(viewport, round(n * rng.uniform(*knobs.depth))))  # always below the fold
        rows = others[:index] + [target] + others[index:]
        if knobs.similar:  # look-alikes next to the target, where the eye lands
            colour, noun = target.split(" ")
            near = [r for r in others if r.startswith(f"{colour} ") or r.endswith(f" {noun}")]
            rest = [r for r in others if r not in near]
            around = rng.sample(near, len(near))
            start = max(0, index - len(around) // 2)
            rows = rest[:start] + around[:index - start] + [target] + around[index - start:] + rest[start:]
            index = rows.index(target)
        params = {"seed": seed, "rows": rows, "target": target, "target_index": index,
                  "viewport_rows": viewport, "wheel_rows": knobs.wheel,
                  "orient": "horizontal" if knobs.horizontal else "vertical"}

        clicks = wheel_clicks(index, len(rows), viewport, knobs.wheel)
        oracle = []
        while clicks > 0:
            amount = min(clicks, CLICKS_PER_SCROLL)
            shift = {"dx": amount} if knobs.horizontal else {"dy": amount}
            oracle.append(OracleStep(Scroll(0, 0, **shift), at=Locator(APP, path="widgets.list")))
            clicks -= amount
        oracle.append(OracleStep(Click(0, 0), at=Locator(APP, path="target_row")))
        check = Check("app_state", "equals", {"app": APP, "path": "selected"}, expected=target)
        return make_task(self, level, seed, split, instruction=instruction(rng, target, knobs),
                         setup=(launch(APP, params),), checks=(check,), oracle=tuple(oracle),
                         max_steps=2 * len(oracle) + 3 + level)


def wheel_clicks(index: int, n_rows: int, viewport: int, wheel: int) -> int:
    """Wheel clicks that bring row ``index`` of ``n_rows`` nearest the middle of a view of
    ``viewport`` rows, scrolling ``wheel`` rows a click.

    After k clicks the first row in view is ``min(k * wheel, n_rows - viewport)``: the
    list stops at its end. Rounding k up instead can overshoot by ``wheel - 1`` rows, which
    scrolls the item out above the view when ``wheel`` exceeds half the view.
    """
    last_first = max(0, n_rows - viewport)
    middle = index - (viewport - 1) / 2  # the first row that centres the item
    clicks = min(range(-(-last_first // wheel) + 1), key=lambda k: abs(min(k * wheel, last_first) - middle))
    first = min(clicks * wheel, last_first)
    if not first <= index < first + viewport:
        raise ConfigError(f"scroll_find: {wheel} rows per wheel click cannot bring row {index} into a "
                          f"view of {viewport} rows; keep wheel_rows below viewport_rows")
    return clicks


def instruction(rng: random.Random, target: str, knobs: Level) -> str:
    where = "scroll the strip sideways" if knobs.horizontal else "scroll down the list"
    return rng.choice([f"Find the item \"{target}\" ({where} to reach it) and click it.",
                       f"Click \"{target}\" in the list; you will need to {where}.",
                       f"Select the entry \"{target}\". It is not in view at first: {where}."])


FAMILIES = [ScrollFind(
    name="scroll_find", app=APP, levels=len(LEVELS),
    description="Scroll a long list of the practice scroll_find app to an item and click it.",
    knobs=("8 rows, the item just below the fold", "20-30 rows", "60-90 rows, the item near the end",
           "a strip that scrolls sideways", "100-140 rows, look-alike labels around the item"),
)]
