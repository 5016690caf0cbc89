"""toggle_choices: bring the checkboxes and radio groups of the ``choices`` practice app to
a target configuration (later: several changes, other boxes left alone, then Apply)."""

from __future__ import annotations

import random
from dataclasses import dataclass

from deskdojo.core.actions import Click
from deskdojo.core.types import Check, Locator, OracleStep, Split, StateCondition, Task
from deskdojo.curriculum.families.base import Family, launch, make_task, pick, split_pool
from deskdojo.curriculum.families.vocab import COLORS, NOUNS

APP = "choices"
APPLY_LABELS = ("Apply", "Done", "Confirm", "Accept", "Update", "Use these", "Save settings",
                "Set", "Commit", "Keep", "Go", "Activate")


@dataclass(frozen=True)
class Level:
    boxes: tuple[int, int]  # checkboxes shown
    toggles: int  # checkboxes to flip
    groups: int  # radio groups shown (each needs a choice)
    options: tuple[int, int]  # options per group
    apply: bool  # the configuration counts once Apply is pressed
    columns: tuple[int, int]


LEVELS = (
    Level(boxes=(1, 1), toggles=1, groups=0, options=(0, 0), apply=False, columns=(1, 1)),
    Level(boxes=(3, 4), toggles=1, groups=0, options=(0, 0), apply=False, columns=(1, 2)),
    Level(boxes=(3, 4), toggles=1, groups=1, options=(2, 3), apply=False, columns=(1, 2)),
    Level(boxes=(4, 6), toggles=2, groups=2, options=(3, 4), apply=False, columns=(1, 3)),
    Level(boxes=(5, 6), toggles=3, groups=2, options=(3, 4), apply=True, columns=(2, 3)),
)


def listing(items: list[str]) -> str:
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]


def click_on(path: str, after: StateCondition | None = None) -> OracleStep:
    return OracleStep(Click(0, 0), at=Locator(APP, path=path), wait=after)


class ToggleChoices(Family):
    def make(self, level: int, seed: int, split: Split, rng: random.Random) -> Task:
        spec = LEVELS[level]
        nouns = pick(rng, NOUNS, split, rng.randint(*spec.boxes) + spec.groups)
        boxes, group_nouns = nouns[:len(nouns) - spec.groups], nouns[len(nouns) - spec.groups:]
        # Level 0 starts with every box off; later some start on and the task may turn one off.
        initially = [b for b in boxes if level > 0 and rng.random() < 0.5]
        toggles = rng.sample(boxes, spec.toggles)
        final = {b: (b in initially) != (b in toggles) for b in boxes}
        groups = {f"{noun.capitalize()} colour": [c.capitalize() for c in pick(rng, COLORS, split,
                                                                               rng.randint(*spec.options))]
                  for noun in group_nouns}
        selected = {g: rng.choice(opts) for g, opts in groups.items() if rng.random() < 0.5}
        chosen = {g: rng.choice([o for o in opts if o != selected.get(g)]) for g, opts in groups.items()}
        apply_label = rng.choice(split_pool(APPLY_LABELS, split))
        params = {"seed": seed, "checkboxes": boxes, "checked": initially, "groups": groups,
                  "selected": selected, "apply_label": apply_label, "columns": rng.randint(*spec.columns)}

        turn_on = [f"“{b}”" for b in toggles if final[b]]
        turn_off = [f"“{b}”" for b in toggles if not final[b]]
        parts = []
        if turn_on:
            parts.append(f"check the {'box' if len(turn_on) == 1 else 'boxes'} labelled {listing(turn_on)}")
        if turn_off:
            parts.append(f"uncheck the {'box' if len(turn_off) == 1 else 'boxes'} labelled {listing(turn_off)}")
        parts += [f"set “{g}” to “{o}”" for g, o in chosen.items()]
        instruction = listing(parts)
        instruction = instruction[0].upper() + instruction[1:]
        instruction += f", then press “{apply_label}”." if spec.apply else "."
        if len(boxes) > len(toggles):
            instruction += " Leave the other boxes as they are."

        if spec.apply:
            where = "applied.-1"
            on = [b for b in boxes if final[b]]
            off = [b for b in boxes if not final[b]]
            checks = [Check("app_state", "includes", {"app": APP, "path": f"{where}.checked"}, on, weight=2.0)] if on else []
            checks += [Check("app_state", "excludes", {"app": APP, "path": f"{where}.checked"}, off)] if off else []
            checks += [Check("app_state", "equals", {"app": APP, "path": f"{where}.radios.{g}"}, o, weight=2.0)
                       for g, o in chosen.items()]
        else:
            checks = [Check("app_state", "equals", {"app": APP, "path": f"checked.{b}"}, final[b],
                            weight=2.0 if b in toggles else 0.5) for b in boxes]
            checks += [Check("app_state", "equals", {"app": APP, "path": f"radios.{g}"}, o, weight=2.0)
                       for g, o in chosen.items()]
        # Each click waits until the previous one shows in the state: clicks fired within a
        # few milliseconds of each other are sometimes lost by Tk.
        steps = [(f"widgets.checkbox:{b}", StateCondition(APP, f"checked.{b}", final[b])) for b in toggles]
        steps += [(f"widgets.radio:{g}:{o}", StateCondition(APP, f"radios.{g}", o)) for g, o in chosen.items()]
        if spec.apply:
            steps.append(("widgets.apply", None))
        oracle = [click_on(path, steps[i - 1][1] if i else None) for i, (path, _) in enumerate(steps)]
        return make_task(self, level, seed, split, instruction=instruction, setup=(launch(APP, params),),
                         checks=tuple(checks), oracle=tuple(oracle), max_steps=4 + 2 * len(oracle))


FAMILIES = [ToggleChoices(
    name="toggle_choices", app=APP, levels=len(LEVELS),
    description="Set checkboxes and radio buttons to a described configuration.",
    knobs=("one checkbox to check", "three or four checkboxes, some on: flip one",
           "flip one checkbox and pick one radio option",
           "flip two of up to six checkboxes, pick options in two radio groups",
           "flip three checkboxes, pick two radio options, then press Apply"),
)]
