"""fill_form: type values into labelled fields of the ``form`` practice app and submit;
later levels add fields to leave alone, prefilled values to keep, and a wrong value to
replace."""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Sequence

from deskdojo.core.actions import Click, Type
from deskdojo.core.types import Check, Locator, OracleStep, Split, StateCondition, Task
from deskdojo.curriculum.families.base import Family, launch, make_task, pick, split_pool
from deskdojo.curriculum.families.vocab import CITIES, COLORS, NAMES, NOUNS

APP = "form"
# Field label -> the word pool its values come from. Labels are split train/held-out too.
FIELDS: dict[str, Sequence[str]] = {
    "First name": NAMES, "Last name": NAMES, "Nickname": NAMES, "Contact person": NAMES,
    "Manager": NAMES, "Friend": NAMES, "Username": NAMES,
    "City": CITIES, "Home town": CITIES, "Birthplace": CITIES, "Destination": CITIES, "Office": CITIES,
    "Departure": CITIES, "Favourite colour": COLORS, "Car colour": COLORS, "Team colour": COLORS,
    "Wall colour": COLORS, "Pet": NOUNS, "Hobby": NOUNS, "Project": NOUNS, "Gift": NOUNS,
    "Codeword": NOUNS, "Instrument": NOUNS, "Snack": NOUNS,
    "Sponsor": NAMES, "Coach": NAMES, "Tutor": NAMES, "Mentor": NAMES, "Editor": NAMES,
    "Hometown": CITIES, "Meeting place": CITIES, "Arrival": CITIES, "Nearest town": CITIES,
    "Shirt colour": COLORS, "Souvenir": NOUNS, "Partner": NAMES, "Captain": NAMES, "Venue": CITIES,
    "Door colour": COLORS, "Toy": NOUNS, "Mascot": NOUNS,
}
SUBMIT_LABELS = ("Submit", "Send", "Save", "Apply", "OK", "Done", "Confirm", "Finish", "Register",
                 "Continue", "Proceed", "Store", "Post", "Commit", "Accept")
CLEAR_LABELS = ("Clear", "Reset", "Erase", "Wipe", "Empty", "Blank", "Discard", "Undo all",
                "Start over", "Remove all", "Scrap", "Purge")


@dataclass(frozen=True)
class Level:
    fields: tuple[int, int]  # fields shown
    fill: int  # fields to type into
    prefilled: int  # other fields with a value to keep
    replace: int  # target fields holding a wrong value to replace
    columns: tuple[int, int]


LEVELS = (
    Level(fields=(1, 1), fill=1, prefilled=0, replace=0, columns=(1, 1)),
    Level(fields=(2, 2), fill=2, prefilled=0, replace=0, columns=(1, 1)),
    Level(fields=(3, 4), fill=2, prefilled=0, replace=0, columns=(1, 2)),
    Level(fields=(4, 5), fill=2, prefilled=2, replace=0, columns=(1, 2)),
    Level(fields=(5, 6), fill=3, prefilled=1, replace=1, columns=(1, 2)),
)


def value_for(rng: random.Random, field: str, split: Split, avoid: set[str]) -> str:
    pool = [w for w in split_pool(FIELDS[field], split) if w not in avoid]
    value = rng.choice(pool)
    avoid.add(value)
    return value


def quoted_pairs(pairs: list[tuple[str, str]]) -> str:
    parts = [f"“{value}” into the “{field}” field" for field, value in pairs]
    return parts[0] if len(parts) == 1 else ", ".join(parts[:-1]) + " and " + parts[-1]


class FillForm(Family):
    def make(self, level: int, seed: int, split: Split, rng: random.Random) -> Task:
        spec = LEVELS[level]
        shown = pick(rng, list(FIELDS), split, rng.randint(*spec.fields))
        targets = rng.sample(shown, spec.fill)
        rest = [f for f in shown if f not in targets]
        kept = rest[:spec.prefilled]
        replaced = targets[:spec.replace]
        used: set[str] = set()
        wanted = {field: value_for(rng, field, split, used) for field in targets}
        prefill = {field: value_for(rng, field, split, used) for field in kept + replaced}
        submit = rng.choice(split_pool(SUBMIT_LABELS, split))
        clear = rng.choice(split_pool(CLEAR_LABELS, split))
        params = {"seed": seed, "fields": shown, "prefill": prefill, "submit_label": submit,
                  "clear_label": clear, "columns": rng.randint(*spec.columns),
                  "label_side": rng.choice(["left", "above"]) if level >= 2 else "left"}

        typed = [(f, wanted[f]) for f in targets if f not in replaced]
        sentences = []
        if typed:
            sentences.append(f"Type {quoted_pairs(typed)}")
        for field in replaced:
            sentences.append(f"replace the text in the “{field}” field with “{wanted[field]}”")
        instruction = "; ".join(sentences) + f". Then press “{submit}”."
        instruction = instruction[0].upper() + instruction[1:]
        if kept:
            instruction += " Leave the other fields as they are."

        last = "submissions.-1"
        checks = [Check("app_state", "equals", {"app": APP, "path": f"{last}.{f}", "strip": True}, wanted[f],
                        weight=2.0) for f in targets]
        checks += [Check("app_state", "equals", {"app": APP, "path": f"{last}.{f}"}, prefill.get(f, ""),
                         weight=0.5) for f in rest]
        oracle: list[OracleStep] = []
        typed_in: StateCondition | None = None  # the previous field shows its typed value
        for field in targets:
            entry = f"entry:{field}"
            # Three clicks select a prefilled line, so the typed text replaces it.
            oracle.append(OracleStep(Click(0, 0, count=3 if field in prefill else 1),
                                     at=Locator(APP, path=f"widgets.{entry}"), wait=typed_in))
            oracle.append(OracleStep(Type(wanted[field]), wait=StateCondition(APP, "focus", entry)))
            typed_in = StateCondition(APP, f"values.{field}", wanted[field])
        oracle.append(OracleStep(Click(0, 0), at=Locator(APP, path="widgets.submit"), wait=typed_in))
        return make_task(self, level, seed, split, instruction=instruction, setup=(launch(APP, params),),
                         checks=tuple(checks), oracle=tuple(oracle), max_steps=4 + 3 * len(targets))


FAMILIES = [FillForm(
    name="fill_form", app=APP, levels=len(LEVELS),
    description="Type values into labelled form fields and submit.",
    knobs=("one field", "two fields", "three or four fields, two to fill, varied layout",
           "four or five fields, two to fill, prefilled values to keep",
           "five or six fields: fill three, one of them holds a wrong value to replace"),
)]
