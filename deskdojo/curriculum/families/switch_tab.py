"""switch_tab: go to a tab of the practice ``tabs`` app and use the control on its page
(tick its box, press its button, or type into its field).

Levels add tabs, fields to type into, a tab whose page is a second notebook (go to
the outer tab, then the inner one), and finally work in two tabs. The window opens on
another tab than the one named. Checked through the app's ``values`` per page.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Any

from deskdojo.core.actions import Type
from deskdojo.core.types import Check, OracleStep, StateCondition, Split, Task
from deskdojo.curriculum.families.base import click as base_click
from deskdojo.curriculum.families.base import Family, launch, make_task, pick
from deskdojo.curriculum.families.vocab import CITIES, NOUNS

APP = "tabs"
KINDS = ("checkbox", "button", "entry")


@dataclass(frozen=True)
class Level:
    tabs: tuple[int, int]  # top-level tabs, low..high
    kinds: tuple[str, ...]  # what the target page's control may be
    nested: bool = False  # one tab holds a notebook of inner tabs; a target is inside it
    targets: int = 1  # pages to act in


LEVELS = (
    Level(tabs=(2, 2), kinds=("checkbox",)),
    Level(tabs=(3, 4), kinds=("checkbox", "button")),
    Level(tabs=(4, 6), kinds=KINDS),
    Level(tabs=(3, 5), kinds=KINDS, nested=True),
    Level(tabs=(4, 5), kinds=KINDS, nested=True, targets=2),
)


def control_text(kind: str, tab: str) -> str:
    """What the app writes on a page's control (``tabs.CONTROL_TEXT``)."""
    return {"checkbox": "Enable {tab}", "entry": "{tab} name:", "button": "Refresh {tab}"}[kind].format(tab=tab.lower())


class SwitchTab(Family):
    def make(self, level: int, seed: int, split: Split, rng: random.Random) -> Task:
        knobs = LEVELS[level]
        n_tabs = rng.randint(*knobs.tabs)
        n_inner = rng.randint(2, 3) if knobs.nested else 0
        words = [w.capitalize() for w in pick(rng, NOUNS, split, n_tabs + n_inner)]
        tabs, inner = words[:n_tabs], words[n_tabs:]
        start = rng.choice(tabs)
        nested = rng.choice([t for t in tabs if t != start]) if knobs.nested else None
        pages = [t for t in tabs if t != nested] + inner
        controls = {page: rng.choice(KINDS) for page in pages}

        # the targets: an inner page first when nested, then pages on other top tabs
        targets: list[str] = [rng.choice(inner)] if nested else []
        outside = [t for t in tabs if t not in (start, nested)] or [t for t in tabs if t != nested]
        targets += rng.sample(outside, knobs.targets - len(targets))
        rng.shuffle(targets)
        for page in targets:
            controls[page] = rng.choice(knobs.kinds)
        params: dict[str, Any] = {"seed": seed, "tabs": tabs, "controls": controls, "start_tab": start}
        if nested:
            params.update(nested=nested, inner_tabs=inner)

        oracle: list[OracleStep] = []
        checks: list[Check] = []
        sentences: list[str] = []
        for page in targets:
            kind = controls[page]
            control = f"control:{page}"
            if page in inner:
                oracle.append(click(f"widgets.tab:{nested}"))
                oracle.append(click(f"widgets.tab:{page}", wait=StateCondition(APP, "tab", nested)))
                where = f"the {page} tab inside the {nested} tab"
            else:
                oracle.append(click(f"widgets.tab:{page}"))
                where = f"the {page} tab"
            oracle.append(click(f"widgets.{control}", wait=StateCondition(APP, f"widgets.{control}.visible", True)))
            label = control_text(kind, page)
            if kind == "checkbox":
                checks.append(value_check(page, "equals", True))
                sentences.append(f"go to {where} and tick \"{label}\"")
            elif kind == "button":
                checks.append(value_check(page, "not_equals", 0))
                sentences.append(f"go to {where} and press \"{label}\"")
            else:
                (expected,) = pick(rng, CITIES, split, 1)  # what to type
                oracle.append(OracleStep(Type(expected), wait=StateCondition(APP, "focus", control)))
                checks.append(value_check(page, "equals", expected))
                sentences.append(f"go to {where} and type \"{expected}\" into the \"{label}\" field")
        text = " and then ".join(sentences)
        return make_task(self, level, seed, split, instruction=text[0].upper() + text[1:] + ".",
                         setup=(launch(APP, params),), checks=tuple(checks), oracle=tuple(oracle),
                         max_steps=2 * len(oracle) + 3)


def click(path: str | None = None, **how: Any) -> OracleStep:
    return base_click(APP, path, **how)


def value_check(page: str, metric: str, expected: Any) -> Check:
    args = {"app": APP, "path": f"values.{page}", **({"strip": True} if isinstance(expected, str) else {})}
    return Check("app_state", metric, args, expected=expected)


FAMILIES = [SwitchTab(
    name="switch_tab", app=APP, levels=len(LEVELS),
    description="Go to a tab of the practice tabs app and tick, press or type in the control on its page.",
    knobs=("two tabs, tick a box", "3-4 tabs, a box or a button", "4-6 tabs, a field to type into too",
           "the tab is inside another tab's notebook", "act in two tabs, one of them nested"),
)]
