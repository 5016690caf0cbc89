"""confirm_dialog: press a button of the practice ``dialogs`` app and answer the modal
dialog it opens: confirm or cancel, as the instruction says.

Levels add buttons to choose from, a text field in the dialog to fill before
confirming, a second "are you sure?" dialog, and finally two actions in a row (one
confirmed with a reason typed, one cancelled). Checked through the app's ``results``
(the latest answer per action) and ``history`` (with the text typed).
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Any

from deskdojo.core.actions import Type
from deskdojo.core.types import Check, OracleStep, StateCondition, Split, Task
from deskdojo.curriculum.families.base import click as base_click
from deskdojo.curriculum.families.base import Family, launch, make_task, pick
from deskdojo.curriculum.families.vocab import NAMES, NOUNS, VERBS

APP = "dialogs"
# A dialog's answer buttons are the generic words of the interface, not content: what
# changes between tasks (and is split into train / held-out) are the actions and the text.
CONFIRM_WORDS = ("OK", "Yes", "Confirm", "Proceed")
CANCEL_WORDS = ("Cancel", "No", "Keep", "Back")
PROMPTS = ("Reason:", "Note:", "Comment:")


@dataclass(frozen=True)
class Level:
    actions: int  # buttons in the main window
    answers: tuple[str, ...]  # what to do with each dialog, in order: "confirm" | "cancel"
    prompt: bool = False  # the dialog has a text field to fill before confirming
    twice: bool = False  # confirming asks again in a second dialog
    verb_button: bool = False  # the confirm button says the action's verb (Delete), not OK


LEVELS = (
    Level(actions=1, answers=("confirm",)),
    Level(actions=3, answers=("either",)),
    Level(actions=3, answers=("confirm",), prompt=True, verb_button=True),
    Level(actions=4, answers=("confirm",), twice=True, verb_button=True),
    Level(actions=4, answers=("confirm", "cancel"), prompt=True, twice=True),
)


def click(path: str | None = None, **how: Any) -> OracleStep:
    return base_click(APP, path, **how)


class ConfirmDialog(Family):
    def make(self, level: int, seed: int, split: Split, rng: random.Random) -> Task:
        knobs = LEVELS[level]
        verbs = [v.capitalize() for v in pick(rng, VERBS, split, knobs.actions)]
        nouns = pick(rng, NOUNS, split, knobs.actions)
        actions = [f"{verb} {noun}" for verb, noun in zip(verbs, nouns)]
        chosen = rng.sample(range(knobs.actions), len(knobs.answers))
        answers = [rng.choice(("confirm", "cancel")) if a == "either" else a for a in knobs.answers]
        first_verb = verbs[chosen[0]]
        confirm_label = first_verb if knobs.verb_button else rng.choice(CONFIRM_WORDS)
        cancel_label = rng.choice(CANCEL_WORDS)
        params: dict[str, Any] = {"seed": seed, "actions": actions, "confirm_label": confirm_label,
                                  "cancel_label": cancel_label}
        (reason,) = pick(rng, NAMES, split, 1) if knobs.prompt else ("",)
        if knobs.prompt:
            params["prompt"] = rng.choice(PROMPTS)
        if knobs.twice:
            params["confirm_twice"] = [actions[chosen[0]]]

        oracle: list[OracleStep] = []
        checks: list[Check] = []
        sentences: list[str] = []
        for order, (index, answer) in enumerate(zip(chosen, answers)):
            action = actions[index]
            after = (StateCondition(APP, f"results.{actions[chosen[order - 1]]}") if order else None)
            oracle.append(click(f"widgets.action:{action}", wait=after))
            asks_twice = knobs.twice and order == 0
            typed = knobs.prompt and answer == "confirm"
            if typed:
                oracle.append(OracleStep(Type(reason), wait=StateCondition(APP, "focus", "dialog.entry")))
            button = confirm_label if answer == "confirm" else cancel_label
            oracle.append(click(text=button, wait=StateCondition(APP, "dialog.action", action)))
            if asks_twice and answer == "confirm":
                oracle.append(click(text=button, wait=StateCondition(APP, "dialog.stage", 2)))
            result = "confirmed" if answer == "confirm" else "cancelled"
            checks.append(Check("app_state", "equals", {"app": APP, "path": f"results.{action}"}, expected=result))
            if typed:
                checks.append(Check("app_state", "contains", {"app": APP, "path": "history"},
                                    expected={"action": action, "result": result, "text": reason}))
            sentences.append(describe(rng, action, answer, button, typed=reason if typed else None,
                                      prompt=params.get("prompt"), twice=asks_twice))
        text = " ".join([sentences[0], *(f"Then {s[0].lower()}{s[1:]}" for s in sentences[1:])])
        return make_task(self, level, seed, split, instruction=text, setup=(launch(APP, params),),
                         checks=tuple(checks), oracle=tuple(oracle), max_steps=2 * len(oracle) + 3)


def describe(rng: random.Random, action: str, answer: str, button: str, *, typed: str | None,
             prompt: str | None, twice: bool) -> str:
    """One sentence per action: which button, what to type, how to answer."""
    if answer == "cancel":
        how = rng.choice([f"cancel the dialog it opens with {button}", f"answer {button} to cancel"])
        return f"Press the \"{action}\" button and {how}."
    field = f"type \"{typed}\" into the {(prompt or '').rstrip(':')} field, then " if typed else ""
    if twice:
        return (f"Press the \"{action}\" button, {field}confirm with {button}, and confirm again with "
                f"{button} when asked a second time.")
    return rng.choice([f"Press the \"{action}\" button, {field}confirm with {button}.",
                       f"Click \"{action}\" and, in the dialog that opens, {field}press {button}."])


FAMILIES = [ConfirmDialog(
    name="confirm_dialog", app=APP, levels=len(LEVELS),
    description="Trigger an action that asks for confirmation, then confirm or cancel as told.",
    knobs=("one button, confirm", "three buttons, confirm or cancel",
           "a text field to fill before confirming; the confirm button says the verb",
           "four buttons, a second confirmation dialog",
           "two actions in a row: one confirmed twice with a note typed, one cancelled"),
)]
