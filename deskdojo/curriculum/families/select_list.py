"""select_list: select an item in the list box or the drop-down of the ``lists`` practice
app; later levels scroll a long list and combine the drop-down with the combo box."""

from __future__ import annotations

import random
from dataclasses import dataclass

from deskdojo.core.actions import Click, Key
from deskdojo.core.types import Check, Locator, OracleStep, Split, StateCondition, Task
from deskdojo.curriculum.families.base import Family, launch, make_task, pick
from deskdojo.curriculum.families.vocab import COLORS, NAMES, NOUNS

APP = "lists"


@dataclass(frozen=True)
class Level:
    items: tuple[int, int]  # list box rows
    visible: int | None  # rows shown at once (None: all of them)
    targets: tuple[str, ...]  # what to set: "listbox", "dropdown", "combobox"


LEVELS = (
    Level(items=(3, 3), visible=None, targets=("listbox",)),
    Level(items=(6, 8), visible=None, targets=("listbox",)),
    Level(items=(6, 8), visible=None, targets=("dropdown",)),
    Level(items=(14, 20), visible=4, targets=("listbox",)),
    Level(items=(10, 14), visible=5, targets=("dropdown", "combobox")),
)


def click_on(path: str | None = None, *, menu: str | None = None,
             wait: StateCondition | None = None) -> OracleStep:
    return OracleStep(Click(0, 0), at=Locator(APP, path=path, menu=menu), wait=wait)


class SelectList(Family):
    def make(self, level: int, seed: int, split: Split, rng: random.Random) -> Task:
        spec = LEVELS[level]
        items = [w.capitalize() for w in pick(rng, NOUNS, split, rng.randint(*spec.items))]
        options = [c.capitalize() for c in pick(rng, COLORS, split, rng.randint(4, 6))]
        combo_items = pick(rng, NAMES, split, rng.randint(4, 7))
        visible = spec.visible or len(items)
        params = {"seed": seed, "items": items, "list_height": max(3, visible), "select_mode": "browse",
                  "options": options, "option": options[0], "combo_items": combo_items, "combo": "",
                  "combo_editable": False}
        # A long list's target lies below the rows shown at first, so it must be scrolled to.
        target_index = rng.randrange(visible, len(items)) if spec.visible else rng.randrange(len(items))
        item = items[target_index]
        option = rng.choice(options[1:])  # the drop-down starts on options[0]
        name = rng.choice(combo_items)

        sentences, checks, oracle = [], [], []
        for target in spec.targets:
            if target == "listbox":
                sentences.append(f"select “{item}” in the list")
                checks.append(Check("app_state", "equals", {"app": APP, "path": "selected"}, [item]))
                if spec.visible:
                    # Select the first row, then walk down with the arrow key (the list scrolls along).
                    oracle.append(click_on("widgets.listbox.rows.0"))
                    oracle.append(OracleStep(Key(("down",)), wait=StateCondition(APP, "focus", "listbox")))
                    oracle += [OracleStep(Key(("down",)), wait=StateCondition(APP, "selected", [items[i]]))
                               for i in range(1, target_index)]
                else:
                    oracle.append(click_on(f"widgets.listbox.rows.{target_index}"))
            elif target == "dropdown":
                sentences.append(f"choose “{option}” from the drop-down menu")
                checks.append(Check("app_state", "equals", {"app": APP, "path": "option"}, option))
                oracle.append(click_on("widgets.optionmenu"))
                oracle.append(click_on(menu=option))
            else:
                sentences.append(f"pick “{name}” in the combo box")
                checks.append(Check("app_state", "equals", {"app": APP, "path": "combo"}, name))
                wait = StateCondition(APP, "option", option) if "dropdown" in spec.targets else None
                oracle.append(click_on("widgets.combobox", wait=wait))
                oracle.append(click_on(f"open_popdown.rows.{combo_items.index(name)}"))
        instruction = " and ".join(sentences) + "."
        instruction = instruction[0].upper() + instruction[1:]
        return make_task(self, level, seed, split, instruction=instruction, setup=(launch(APP, params),),
                         checks=tuple(checks), oracle=tuple(oracle),
                         max_steps=5 + 3 * len(spec.targets) + (8 if spec.visible else 0))


FAMILIES = [SelectList(
    name="select_list", app=APP, levels=len(LEVELS),
    description="Select an item in a list box, a drop-down menu or a combo box.",
    knobs=("a three-item list, all shown", "six to eight items, all shown",
           "choose an option from a drop-down menu",
           "a long list (14-20 items, 4 shown): scroll to the item",
           "a drop-down option and a combo-box entry"),
)]
