"""form_then_save: tasks composed of subtasks across two apps, the ``form`` and the
``editor``: fill and submit the form, then record what was sent in the editor and save
it through the editor's dialog (or the other way round: read a value from a file in the
editor, send it through the form, mark the file). Levels add subtasks.

The form opens at the screen's left and the editor at its right, so they never cover
each other.
"""

from __future__ import annotations

import random

from deskdojo.core.actions import Key, Type
from deskdojo.core.types import Check, OracleStep, SetupStep, Split, Task
from deskdojo.curriculum.families.base import Family, launch, make_task, pick
from deskdojo.curriculum.families.base import click, file_is, press, state_is, type_into, when
from deskdojo.curriculum.families.editor_save import EDITOR, editor_params, save_in_dialog, saved
from deskdojo.curriculum.families.vocab import CITIES, COLORS, NAMES, NOUNS

FORM = "form"
FORM_AT = (16, 16)
EDITOR_AT = (500, 16)


def fill(fields: dict[str, str]) -> tuple[OracleStep, ...]:
    steps: list[OracleStep] = []
    for field, value in fields.items():
        steps += type_into(FORM, f"entry:{field}", value)
    return tuple(steps)


def submit() -> tuple[OracleStep, ...]:
    return (click(FORM, "widgets.submit"), when(FORM, "submitted", True))


def submitted(fields: dict[str, str]) -> tuple[Check, ...]:
    """The last submission carried these values."""
    return tuple(state_is(FORM, f"submissions.-1.{field}", value) for field, value in fields.items())


def write_in_editor(text: str) -> tuple[OracleStep, ...]:
    return type_into(EDITOR, "text", text)


class FormThenSaveFamily(Family):
    def make(self, level: int, seed: int, split: Split, rng: random.Random) -> Task:
        n_fields = 1 if level in (0, 2) else 2
        labels = [n.capitalize() for n in pick(rng, NOUNS, split, n_fields + rng.randint(0, 1))]
        given = labels[:n_fields]
        values = [f"{name} {city}" for name, city in zip(pick(rng, NAMES, split, n_fields),
                                                        pick(rng, CITIES, split, n_fields))]
        fields = dict(zip(given, values))
        rng.shuffle(labels)
        form = launch(FORM, {"seed": seed, "fields": labels, "columns": 1, "x": FORM_AT[0], "y": FORM_AT[1]})
        asked = " and ".join(f"{field} to \"{value}\"" for field, value in fields.items())
        proposed, stem = (f"{w}.txt" for w in pick(rng, NOUNS, split, 2))
        editor = launch(EDITOR, editor_params(seed, text="", default_name=proposed, x=EDITOR_AT[0], y=EDITOR_AT[1],
                                              size=[40, 10]))
        setup: tuple[SetupStep, ...]
        if level <= 1:
            instruction = f"In the form, set {asked} and submit it."
            setup, oracle = (form,), (*fill(fields), *submit())
            checks = submitted(fields)
        elif level == 2:
            (value,) = values
            instruction = (f"In the form, set {asked} and submit it. Then type the same text in the editor "
                           f"and save it under the name the editor proposes ({proposed}).")
            setup = (form, editor)
            oracle = (*fill(fields), *submit(), *write_in_editor(value), press("ctrl", "s"),
                      *save_in_dialog(proposed))
            checks = (*submitted(fields), file_is(proposed, value))
        elif level == 3:
            record = "\n".join(values)
            instruction = (f"In the form, set {asked} and submit it. Then write the two values in the editor, "
                           f"one per line in the same order, and save the file as {stem}.")
            setup = (form, editor)
            oracle = (*fill(fields), *submit(), *write_in_editor(record), press("ctrl", "s"),
                      *save_in_dialog(stem))
            checks = (*submitted(fields), file_is(stem, record), Check("file", "exists", {"path": f"~/{proposed}"},
                                                                      expected=False))
        else:
            (colour,) = pick(rng, COLORS, split, 1)
            first, second = given
            note = f"{first}: {values[0]}"
            sent_line = f"sent in {colour}"
            setup = (SetupStep("write_file", {"path": f"~/{stem}", "content": note}), form,
                     launch(EDITOR, editor_params(seed, file=stem, x=EDITOR_AT[0], y=EDITOR_AT[1], size=[40, 10])))
            instruction = (f"The editor shows {stem}, which gives a value for the form's {first} field. "
                           f"Put that value in the form, set {second} to \"{values[1]}\", and submit the form. "
                           f"Then add the line \"{sent_line}\" at the end of {stem} in the editor and save it.")
            oracle = (*fill(fields), *submit(), click(EDITOR, "widgets.text"),
                      OracleStep(Key(("ctrl", "end")), wait=when(EDITOR, "focus", "text").wait),
                      OracleStep(Type(f"\n{sent_line}")), press("ctrl", "s"), saved())
            checks = (*submitted(fields), file_is(stem, f"{note}\n{sent_line}"))
        return make_task(self, level, seed, split, instruction=instruction, setup=setup, checks=checks,
                         oracle=tuple(oracle), max_steps=len(oracle) + 4 + 2 * level)


FAMILIES = [FormThenSaveFamily(
    name="form_then_save", app=FORM, levels=5,
    description="Composed subtasks: fill and submit a form, then record the values in the editor and save.",
    knobs=("fill one field, submit", "fill two fields among distractors, submit",
           "+ type the value in the editor and save under the proposed name",
           "+ two values, one per line, saved under a given name",
           "read a value from a file in the editor, send it through the form, mark the file and save"),
)]
