"""multiwindow: work across the windows of the ``multiwindow`` app: open a tool window,
type into it, copy a value from one window into another, close one, bring one forward.

Tool windows open at fixed, non-overlapping spots (the app's ``positions`` knob), so a
click at a window's centre lands in that window; the app gives a clicked tool window's
text field the keyboard, and Escape closes it.
"""

from __future__ import annotations

import random

from deskdojo.core.actions import Key
from deskdojo.core.types import Check, OracleStep, Split, Task
from deskdojo.curriculum.families.base import Family, launch, make_task, pick
from deskdojo.curriculum.families.base import click, state_is, type_text, when
from deskdojo.curriculum.families.vocab import CITIES, NAMES, NOUNS

APP = "multiwindow"
MAIN_AT = (16, 16)
SLOTS = [(24 + 340 * column, 300 + 220 * row) for row in range(2) for column in range(3)]


def focus_window(name: str) -> tuple[OracleStep, ...]:
    """Click a tool window (raising it) and wait until its text field has the keyboard."""
    return (click(APP, f"windows.{name}"), when(APP, "focus", f"{name}.entry"))


def replace_text(name: str, text: str) -> tuple[OracleStep, ...]:
    """In a focused tool window: select all of its field (Ctrl+/ in Tk) and type over it."""
    return (OracleStep(Key(("ctrl", "slash"))), type_text(APP, f"{name}.entry", text))


def open_window(name: str) -> tuple[OracleStep, ...]:
    """Press the main window's Open button; the new window takes the keyboard."""
    return (click(APP, f"widgets.open:{name}"), when(APP, "focus", f"{name}.entry"))


class MultiwindowFamily(Family):
    def make(self, level: int, seed: int, split: Split, rng: random.Random) -> Task:
        names = [n.capitalize() for n in pick(rng, NOUNS, split, 3 + (level >= 3))]
        values = [f"{a} {b}" for a, b in zip(pick(rng, NAMES, split, 2), pick(rng, CITIES, split, 2))]
        slots = rng.sample(SLOTS, len(names))
        params = {"seed": seed, "windows": names, "x": MAIN_AT[0], "y": MAIN_AT[1],
                  "positions": {n: list(xy) for n, xy in zip(names, slots)}}
        a, b, c = names[:3]
        if level == 0:
            instruction = f"Open the {a} window."
            oracle = open_window(a)
            checks: tuple[Check, ...] = (Check("app_state", "contains", {"app": APP, "path": "open"}, expected=a),)
        elif level == 1:
            instruction = f"Open the {a} window and type \"{values[0]}\" into its text field."
            oracle = (*open_window(a), type_text(APP, f"{a}.entry", values[0]))
            checks = (state_is(APP, f"values.{a}", values[0]),)
        elif level == 2:
            params.update(open=[a], prefill={a: values[0]})
            instruction = f"Copy the text in the {a} window into the text field of the {b} window."
            oracle = (*open_window(b), type_text(APP, f"{b}.entry", values[0]))
            checks = (state_is(APP, f"values.{b}", values[0]), state_is(APP, f"values.{a}", values[0]))
        elif level == 3:
            params.update(open=[a, b, c], prefill={a: values[0]})
            instruction = (f"Copy the text in the {a} window into the text field of the {b} window, "
                           f"then close the {a} window.")
            oracle = (*focus_window(b), type_text(APP, f"{b}.entry", values[0]),
                      *focus_window(a), OracleStep(Key(("escape",))))
            checks = (state_is(APP, f"values.{b}", values[0]),
                      Check("app_state", "not_contains", {"app": APP, "path": "open"}, expected=a),
                      Check("app_state", "contains", {"app": APP, "path": "open"}, expected=b))
        else:
            params.update(open=[c, a, b], prefill={a: values[0], b: values[1]})
            instruction = (f"Swap the texts of the {a} and {b} windows (each window's text field gets "
                           f"the other's text), then bring the {c} window to the front.")
            oracle = (*focus_window(a), *replace_text(a, values[1]), *focus_window(b),
                      *replace_text(b, values[0]), *focus_window(c),
                      when(APP, "front", c))
            checks = (state_is(APP, f"values.{a}", values[1]), state_is(APP, f"values.{b}", values[0]),
                      state_is(APP, "front", c))
        setup = (launch(APP, params),)
        if level >= 2:  # the windows open at start have opened before the task begins
            opened = params["open"]
            oracle = (when(APP, "open", opened), *oracle)
        return make_task(self, level, seed, split, instruction=instruction, setup=setup, checks=checks,
                         oracle=tuple(oracle), max_steps=len(oracle) + 4 + 2 * level)


FAMILIES = [MultiwindowFamily(
    name="multiwindow", app=APP, levels=5,
    description="Act across several windows: open, type into, copy between, close, bring forward.",
    knobs=("open a tool window", "open one and type into it", "copy a value into a window that is closed",
           "copy between open windows, then close the source", "swap two windows' texts, raise a third"),
)]
