"""editor_save: write text in the practice ``editor`` and save it through its own
open/save dialog (``filedialog``), checked through the saved file and the app state.

The dialog's name field has the keyboard when it opens, with the proposed name
selected, so typing replaces it; typing a folder name and Enter enters the folder.
"""

from __future__ import annotations

import random
import re

from deskdojo.core.actions import Type, Wait
from deskdojo.core.types import Check, OracleStep, SetupStep, StateCondition, Split, Task
from deskdojo.curriculum.families.base import (Family, click, click_menu, file_is, file_missing, launch,
                                               make_task, pick, press, state_is, type_into, when)
from deskdojo.curriculum.families.vocab import CITIES, COLORS, NAMES, NOUNS

# --- the editor's dialog ----------------------------------------------------------

EDITOR = "editor"


def dialog_ready() -> OracleStep:
    """Wait for the file dialog to open with its name field focused."""
    return OracleStep(Wait(0.05), wait=StateCondition(EDITOR, "focus", "dialog.name"))


def save_in_dialog(name: str, folder: str | None = None) -> tuple[OracleStep, ...]:
    """In an open save dialog: enter ``folder`` (typed, then Enter), type ``name`` over the
    proposed one, Enter, then wait until the editor says the buffer is saved."""
    steps = [dialog_ready()]
    if folder is not None:
        steps += [OracleStep(Type(folder)), press("enter"), when(EDITOR, "dialog.name", "")]
    steps += [OracleStep(Type(name)), press("enter"), saved()]
    return tuple(steps)


def saved() -> OracleStep:
    return when(EDITOR, "modified", False)


def editor_params(seed: int, **params: object) -> dict[str, object]:
    return {"seed": seed, "size": [52, 12], **params}


def sentence(rng: random.Random, split: Split) -> str:
    (name,) = pick(rng, NAMES, split, 1)
    (noun,) = pick(rng, NOUNS, split, 1)
    (city,) = pick(rng, CITIES, split, 1)
    return f"{name} left the {noun} in {city}"


class EditorSaveFamily(Family):
    def make(self, level: int, seed: int, split: Split, rng: random.Random) -> Task:
        build = (self._save_proposed, self._save_named, self._open_and_change, self._save_in_folder,
                 self._menus)[level]
        instruction, setup, checks, oracle = build(seed, rng, split)
        return make_task(self, level, seed, split, instruction=instruction, setup=setup, checks=checks,
                         oracle=oracle, max_steps=len(oracle) + 4 + 2 * level)

    def _save_proposed(self, seed: int, rng: random.Random, split: Split):
        text = sentence(rng, split)
        (stem,) = pick(rng, NOUNS, split, 1)
        name = f"{stem}.txt"
        setup = (launch(EDITOR, editor_params(seed, text="", default_name=name)),)
        oracle = (*type_into(EDITOR, "text", text), press("ctrl", "s"), dialog_ready(),
                  press("enter"), saved())
        return (f"In the editor, type \"{text}\" and save the file as {name} (the name the save "
                f"dialog proposes).", setup, (file_is(name, text),), oracle)

    def _save_named(self, seed: int, rng: random.Random, split: Split):
        text = sentence(rng, split)
        proposed, stem = pick(rng, NOUNS, split, 2)
        name = f"{stem}.txt"
        setup = (launch(EDITOR, editor_params(seed, text="", default_name=f"{proposed}.txt")),)
        oracle = (*type_into(EDITOR, "text", text), press("ctrl", "s"), *save_in_dialog(name))
        return (f"In the editor, type \"{text}\" and save it in your home folder as {name}.",
                setup, (file_is(name, text), file_missing(f"{proposed}.txt")), oracle)

    def _open_and_change(self, seed: int, rng: random.Random, split: Split):
        first = sentence(rng, split)
        (stem,) = pick(rng, NOUNS, split, 1)
        (colour,) = pick(rng, COLORS, split, 1)
        path = f"Documents/{stem}.txt"
        added = f"{colour} was chosen"
        setup = (SetupStep("write_file", {"path": f"~/{path}", "content": first}),
                 launch(EDITOR, editor_params(seed, text="")))
        oracle = (click_menu(EDITOR, "File"), click_menu(EDITOR, "Open..."), dialog_ready(),
                  OracleStep(Type(path)), press("enter"), when(EDITOR, "opens.0"),
                  click(EDITOR, "widgets.text"), press("ctrl", "end", wait=StateCondition(EDITOR, "focus", "text")),
                  OracleStep(Type(f"\n{added}")), press("ctrl", "s"), saved())
        checks = (file_is(path, f"{first}\n{added}"), state_is(EDITOR, "modified", False))
        return (f"In the editor, open the file {stem}.txt from the Documents folder, add the line "
                f"\"{added}\" at its end and save it.", setup, checks, oracle)

    def _save_in_folder(self, seed: int, rng: random.Random, split: Split):
        text = sentence(rng, split)
        proposed, folder, stem = pick(rng, NOUNS, split, 3)
        name = f"{stem}.txt"
        setup = (SetupStep("run", {"argv": ["mkdir", "-p", folder]}),
                 launch(EDITOR, editor_params(seed, text="", default_name=f"{proposed}.txt")))
        oracle = (*type_into(EDITOR, "text", text), press("ctrl", "s"), *save_in_dialog(name, folder))
        checks = (file_is(f"{folder}/{name}", text), file_missing(name))
        return (f"In the editor, type \"{text}\" and save it as {name} inside the folder {folder} "
                f"(in your home folder).", setup, checks, oracle)

    def _menus(self, seed: int, rng: random.Random, split: Split):
        text = sentence(rng, split)
        source, folder, stem = pick(rng, NOUNS, split, 3)
        name = f"{stem}.txt"
        setup = (SetupStep("write_file", {"path": f"~/{source}.txt", "content": text}),
                 SetupStep("run", {"argv": ["mkdir", "-p", folder]}),
                 launch(EDITOR, editor_params(seed, file=f"{source}.txt")))
        oracle = (click_menu(EDITOR, "Edit"), click_menu(EDITOR, "Upper Case"), when(EDITOR, "text", text.upper()),
                  click_menu(EDITOR, "File"), click_menu(EDITOR, "Save As..."), *save_in_dialog(name, folder))
        checks = (file_is(f"{folder}/{name}", text.upper()), file_is(f"{source}.txt", text),
                  Check("app_state", "regex", {"app": EDITOR, "path": "path"},
                        expected=rf"/{re.escape(folder)}/{re.escape(name)}$"))
        return (f"The editor shows {source}.txt. Using the menus, turn the whole text into upper case "
                f"(Edit > Upper Case), then save it as {name} in the folder {folder} with "
                f"File > Save As..., leaving {source}.txt unchanged.", setup, checks, oracle)


FAMILIES = [EditorSaveFamily(
    name="editor_save", app=EDITOR, levels=5,
    description="Type in the practice editor and save through its file dialog.",
    knobs=("save under the proposed name", "save under a given name", "open an existing file, change it, save",
           "save into a subfolder", "menus: Edit > Upper Case, then File > Save As into a folder"),
)]
