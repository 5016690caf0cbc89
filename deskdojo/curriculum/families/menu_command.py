"""menu_command: choose one command from the practice ``menus`` app's menu bar.

Levels nest the command deeper (a command on a top menu, then one and two sub-menus
down), add menus around it, give its neighbours labels that share a word with it, and
finally put a command of the same name under another menu, so only the whole path
named in the instruction is right. Checked through the app's ``chosen`` path.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Any

from deskdojo.core.actions import Click
from deskdojo.core.types import Check, Locator, OracleStep, StateCondition, Split, Task
from deskdojo.curriculum.families.base import Family, launch, make_task, split_pool
from deskdojo.curriculum.families.vocab import COLORS, NOUNS

APP = "menus"


@dataclass(frozen=True)
class Level:
    menus: int  # top-level menus in the menu bar
    items: int  # entries per menu
    depth: int  # menu levels down to the command: 1 = on a top menu
    similar: bool = False  # the command's neighbours share a word with it
    decoy: bool = False  # another menu holds a command with the same label


LEVELS = (
    Level(menus=1, items=1, depth=1),
    Level(menus=3, items=4, depth=1),
    Level(menus=3, items=4, depth=2),
    Level(menus=4, items=5, depth=3, similar=True),
    Level(menus=5, items=5, depth=3, similar=True, decoy=True),
)


class Labels:
    """Fresh, distinct labels from the split's pools: single nouns, or "Colour noun" pairs
    (enough of them for big menus, and a way to make labels that look alike)."""

    def __init__(self, rng: random.Random, split: Split):
        self.rng = rng
        self.nouns = [w.capitalize() for w in split_pool(NOUNS, split)]
        self.colours = [w.capitalize() for w in split_pool(COLORS, split)]
        self.used: set[str] = set()

    def fresh(self, make: Any, tries: int = 1000) -> str | None:
        for _ in range(tries):
            label = make()
            if label not in self.used:
                self.used.add(label)
                return label
        return None

    def noun(self) -> str:
        """A single noun while the (small, held-out) pool lasts, then a pair."""
        return self.fresh(lambda: self.rng.choice(self.nouns), tries=100) or self.pair()

    def pair(self, colour: str | None = None) -> str:
        label = self.fresh(lambda: f"{colour or self.rng.choice(self.colours)} {self.rng.choice(self.nouns).lower()}")
        if label is None:
            raise ValueError("ran out of distinct menu labels")
        return label


class MenuCommand(Family):
    def make(self, level: int, seed: int, split: Split, rng: random.Random) -> Task:
        knobs = LEVELS[level]
        labels = Labels(rng, split)
        tops = [labels.noun() for _ in range(knobs.menus)]
        path = [rng.choice(tops)] + [labels.noun() for _ in range(knobs.depth - 1)]
        colour = rng.choice(labels.colours)
        command = labels.pair(colour) if knobs.similar else labels.noun()
        path.append(command)

        def filler(beside_command: bool = False) -> str:
            """A command label; the target's neighbours look like it on levels with similar labels."""
            if not knobs.similar:
                return labels.noun()
            return labels.pair(colour if beside_command and rng.random() < 0.75 else None)

        def branch(level_here: int, depth: int, *, beside_command: bool = False) -> list[Any]:
            """A menu's items; at ``level_here`` of ``depth`` levels, one item opens a sub-menu."""
            items: list[Any] = [filler(beside_command) for _ in range(knobs.items)]
            if level_here < depth:
                items[rng.randrange(len(items))] = {labels.noun(): branch(level_here + 1, depth)}
            return items

        def target_menu(level_here: int) -> list[Any]:
            last = level_here == knobs.depth
            items = branch(level_here, level_here, beside_command=last)  # the path's next step goes in below
            slot = rng.randrange(len(items))
            items[slot] = command if last else {path[level_here]: target_menu(level_here + 1)}
            return items

        tree = {top: (target_menu(1) if top == path[0] else branch(1, rng.randint(1, knobs.depth)))
                for top in tops}
        if knobs.decoy:  # the same command label in another menu: only the full path is right
            other = rng.choice([t for t in tops if t != path[0]])
            tree[other][rng.randrange(len(tree[other]))] = command
        params = {"seed": seed, "tree": tree}

        oracle = [OracleStep(Click(0, 0), at=Locator(APP, menu=path[0]))]
        for depth, label in enumerate(path[1:], start=1):  # each entry shows once its menu is posted
            oracle.append(OracleStep(Click(0, 0), at=Locator(APP, menu=label),
                                     wait=StateCondition(APP, f"open_menus.{depth - 1}")))
        check = Check("app_state", "equals", {"app": APP, "path": "chosen"}, expected=path)
        return make_task(self, level, seed, split, instruction=instruction(rng, path),
                         setup=(launch(APP, params),), checks=(check,), oracle=tuple(oracle),
                         max_steps=2 * len(oracle) + 3)


def instruction(rng: random.Random, path: list[str]) -> str:
    command, menus = path[-1], path[:-1]
    if len(menus) == 1:
        return rng.choice([f"Choose the command {command} from the {menus[0]} menu.",
                           f"Open the {menus[0]} menu in the menu bar and click {command}.",
                           f"In the menu bar, pick {menus[0]} > {command}."])
    trail = " > ".join(path)
    return rng.choice([f"Using the menu bar, choose {trail}.",
                       f"Open the {menus[0]} menu, then the {' sub-menu, then the '.join(menus[1:])} "
                       f"sub-menu, and click {command}.",
                       f"Run the menu command {trail} (open each menu in turn)."])


FAMILIES = [MenuCommand(
    name="menu_command", app=APP, levels=len(LEVELS),
    description="Choose a command from the menu bar of the practice menus app, through sub-menus.",
    knobs=("one menu, a command on it", "three menus", "the command is in a sub-menu",
           "two sub-menus deep, four menus, neighbours that look alike",
           "five menus, and the same command label under another menu"),
)]
