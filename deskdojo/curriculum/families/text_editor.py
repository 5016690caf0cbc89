"""text_editor: edit a file in mousepad (a real GTK text editor) and save it, checked
through the saved file's text.

Setup writes the file and opens it in mousepad. The oracle works the keyboard only:
Ctrl+End to append, Ctrl+A and retype to change words (any edit that leaves the right
text is a solution), Ctrl+S to save, Ctrl+Shift+S and the GTK "Save As" dialog for a
new name. Mousepad publishes no state, so the oracle waits fixed times for its window
and its dialog.
"""

from __future__ import annotations

import random
import re

from deskdojo.core.actions import Key, Type, Wait
from deskdojo.core.types import Check, OracleStep, SetupStep, Split, Task
from deskdojo.curriculum.families.base import Family, make_task, pick
from deskdojo.curriculum.families.vocab import CITIES, COLORS, NAMES, NOUNS

EDITOR_READY_S = 1.0  # mousepad maps its window before it takes keys
DIALOG_OPEN_S = 1.5  # the GTK file chooser takes a moment to appear and focus its name field
SAVE_SETTLE_S = 0.6


def open_in_mousepad(path: str, text: str) -> tuple[SetupStep, ...]:
    """Write ``~/path`` and open it in mousepad (argv runs in the home folder)."""
    return (SetupStep("write_file", {"path": f"~/{path}", "content": text}),
            SetupStep("launch", {"argv": ["mousepad", path], "wait_window": f"{re.escape(path)} - Mousepad$",
                                 "timeout": 20.0}),
            SetupStep("wait", {"seconds": EDITOR_READY_S}))


def saved_text(path: str, text: str) -> Check:
    """The file holds ``text``, give or take a trailing newline or surrounding blanks."""
    return Check("file", "regex", {"path": f"~/{path}"}, expected=rf"\A\s*{re.escape(text)}\s*\Z")


def lines_of(rng: random.Random, split: Split, n: int) -> list[str]:
    """``n`` short sentences made of the split's words."""
    names = pick(rng, NAMES, split, n)
    nouns = pick(rng, NOUNS, split, n)
    cities = pick(rng, CITIES, split, n)
    return [f"{name} packed the {noun} for {city}" for name, noun, city in zip(names, nouns, cities)]


def retype(text: str) -> tuple[OracleStep, ...]:
    """Replace the whole buffer with ``text``."""
    return (OracleStep(Key(("ctrl", "a"))), OracleStep(Type(text)))


def append(line: str) -> tuple[OracleStep, ...]:
    return (OracleStep(Key(("ctrl", "end"))), OracleStep(Key(("enter",))), OracleStep(Type(line)))


SAVE = (OracleStep(Key(("ctrl", "s"))), OracleStep(Wait(SAVE_SETTLE_S)))


def save_as(name: str) -> tuple[OracleStep, ...]:
    """Ctrl+Shift+S, wait for the dialog, replace the proposed name, press Enter."""
    return (OracleStep(Key(("ctrl", "shift", "s"))), OracleStep(Wait(DIALOG_OPEN_S)),
            OracleStep(Key(("ctrl", "a"))), OracleStep(Type(name)), OracleStep(Key(("enter",))),
            OracleStep(Wait(SAVE_SETTLE_S)))


class TextEditorFamily(Family):
    def make(self, level: int, seed: int, split: Split, rng: random.Random) -> Task:
        (stem,) = pick(rng, NOUNS, split, 1)
        path = f"{stem}.txt"
        lines = lines_of(rng, split, 2 + min(level, 2))
        colour, new_colour = pick(rng, COLORS, split, 2)
        lines[0] = f"{lines[0]} in {colour}"
        original = "\n".join(lines)
        added = f"{new_colour} is the new colour"
        if level == 0:
            instruction = (f"The file {path} is open in the text editor. Add the line \"{added}\" at the end "
                           f"of the file and save it.")
            result = f"{original}\n{added}"
            oracle = append(added) + SAVE
            checks = (saved_text(path, result),)
        elif level == 1:
            instruction = (f"In the text editor, replace the word {colour} with {new_colour} in {path} "
                           f"and save the file.")
            result = original.replace(f" in {colour}", f" in {new_colour}")
            oracle = retype(result) + SAVE
            checks = (saved_text(path, result),)
        elif level == 2:
            instruction = (f"In the text editor, edit {path}: replace the word {colour} with {new_colour}, "
                           f"delete the last line, then add the line \"{added}\" at the end. Save the file.")
            result = "\n".join([lines[0].replace(f" in {colour}", f" in {new_colour}"), *lines[1:-1], added])
            oracle = retype(result) + SAVE
            checks = (saved_text(path, result),)
        else:
            (new_stem,) = pick(rng, [n for n in NOUNS if n != stem], split, 1)
            new_path = f"{new_stem}.txt"
            instruction = (f"In the text editor, add the line \"{added}\" at the end of {path}, then save "
                           f"it under the new name {new_path} (File > Save As) in the same folder. "
                           f"{path} itself must stay unchanged.")
            result = f"{original}\n{added}"
            oracle = append(added) + save_as(new_path)
            checks = (saved_text(new_path, result), saved_text(path, original))
        return make_task(self, level, seed, split, instruction=instruction,
                         setup=open_in_mousepad(path, original), checks=checks, oracle=oracle,
                         max_steps=len(oracle) + 6 + 2 * level)


FAMILIES = [TextEditorFamily(
    name="text_editor", app="mousepad", levels=4,
    description="Edit a text file in mousepad and save it: append, replace, several edits, Save As.",
    knobs=("append a line", "replace a word", "several edits in one file",
           "save under a new name through the Save As dialog"),
)]
