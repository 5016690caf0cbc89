"""click_button: click the button with a given label (later: several, in order) in the
``buttons`` practice app, among distractors, look-alike labels and disabled look-alikes."""

from __future__ import annotations

import random
from dataclasses import dataclass

from deskdojo.core.types import Check, OracleStep, Split, StateCondition, Task
from deskdojo.curriculum.families.base import click, Family, launch, make_task, pick
from deskdojo.curriculum.families.vocab import NOUNS

APP = "buttons"


@dataclass(frozen=True)
class Level:
    targets: int  # buttons to click, in order
    buttons: int  # enabled buttons in all (targets included)
    similar: int  # enabled look-alikes of the targets ("pepper mill", "peppers")
    disabled: int  # disabled look-alikes
    columns: tuple[int, int]


LEVELS = (
    Level(targets=1, buttons=1, similar=0, disabled=0, columns=(1, 1)),
    Level(targets=1, buttons=4, similar=0, disabled=0, columns=(1, 2)),
    Level(targets=1, buttons=7, similar=2, disabled=1, columns=(2, 4)),
    Level(targets=2, buttons=8, similar=2, disabled=1, columns=(2, 4)),
    Level(targets=3, buttons=12, similar=3, disabled=2, columns=(3, 5)),
)


def look_alikes(rng: random.Random, target: str, fillers: list[str], n: int, taken: set[str]) -> list[str]:
    """Labels that contain ``target`` but are not it: "pepper mill", "salt pepper", "peppers"."""
    found: list[str] = []
    candidates = [f"{target}s"] + [f"{target} {w}" for w in fillers] + [f"{w} {target}" for w in fillers]
    rng.shuffle(candidates)
    for label in candidates:
        if len(found) == n:
            break
        if label not in taken:
            found.append(label)
            taken.add(label)
    return found


def quoted(labels: list[str]) -> str:
    shown = [f"“{label}”" for label in labels]
    return shown[0] if len(shown) == 1 else ", ".join(shown[:-1]) + " and " + shown[-1]


def click_on(app: str, path: str, *, after: str | None = None) -> OracleStep:
    """Click ``path``; with ``after``, once the app shows that button as the last clicked
    (clicks fired within a few milliseconds of each other are sometimes lost by Tk)."""
    return click(app, path, wait=StateCondition(app, "last", after) if after is not None else None)


class ClickButton(Family):
    def make(self, level: int, seed: int, split: Split, rng: random.Random) -> Task:
        spec = LEVELS[level]
        plain = spec.buttons - spec.targets - spec.similar
        words = pick(rng, NOUNS, split, spec.targets + plain + 3)
        targets, others, fillers = words[:spec.targets], words[spec.targets:spec.targets + plain], words[-3:]
        taken = set(words)
        similar = [label for i in range(spec.similar)
                   for label in look_alikes(rng, targets[i % len(targets)], fillers, 1, taken)]
        disabled = [label for i in range(spec.disabled)
                    for label in look_alikes(rng, targets[i % len(targets)], fillers, 1, taken)]
        labels = targets + others + similar + disabled
        distractors = others + similar  # enabled buttons that must not be clicked
        params = {"seed": seed, "labels": labels, "disabled": disabled, "shuffle": True,
                  "columns": rng.randint(*spec.columns)}
        history = {"app": APP, "path": "history"}
        if len(targets) == 1:
            instruction = f"Click the button labelled “{targets[0]}”."
            checks = [Check("app_state", "includes", history, list(targets), weight=3.0)]
        else:
            instruction = f"Click the buttons labelled {quoted(targets)}, in that order."
            checks = [Check("app_state", "equals", history, list(targets), weight=2.0),
                      Check("app_state", "includes", history, list(targets))]
        if distractors:  # light: doing nothing must not earn much
            checks.append(Check("app_state", "excludes", history, distractors))
        return make_task(self, level, seed, split, instruction=instruction, setup=(launch(APP, params),),
                         checks=tuple(checks),
                         oracle=tuple(click_on(APP, f"widgets.button:{label}", after=targets[i - 1] if i else None)
                                      for i, label in enumerate(targets)),
                         max_steps=4 + 3 * len(targets))


FAMILIES = [ClickButton(
    name="click_button", app=APP, levels=len(LEVELS),
    description="Click the button with a given label (several in order at the top level).",
    knobs=("one button", "four buttons with distractor labels",
           "seven buttons: look-alike labels, a disabled look-alike, a grid",
           "two buttons in order among eight, look-alikes and a disabled one",
           "three buttons in order among fourteen, look-alikes and disabled ones"),
)]
