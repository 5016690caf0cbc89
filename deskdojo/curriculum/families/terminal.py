"""terminal: shell tasks in a real xterm, checked through the files they leave and
through command output (never through app state: xterm publishes none).

The oracle types commands and presses Enter; xterm has the keyboard from the moment
its window maps (openbox focuses new windows), and setup waits a moment for the
shell to start. Commands are task-authored, fixed strings; checks read files by path
(``file`` getter) and run fixed argv in the sandbox's home (``command`` getter).
"""

from __future__ import annotations

import random

from deskdojo.core.actions import Key, Type, Wait
from deskdojo.core.types import Check, OracleStep, SetupStep, Split, Task
from deskdojo.curriculum.families.base import Family, make_task, pick
from deskdojo.curriculum.families.vocab import COLORS, NOUNS

TERMINAL_TITLE = "Terminal"
SHELL_SETTLE_S = 0.6  # the shell prints its prompt after the window maps
COMMAND_SETTLE_S = 0.4  # the last command finishes writing before the judge looks


def open_terminal() -> tuple[SetupStep, ...]:
    """Start xterm in the home folder with a known title, wait for its window and shell."""
    return (SetupStep("launch", {"argv": ["xterm", "-title", TERMINAL_TITLE, "-geometry", "90x24+40+40"],
                                 "wait_window": f"^{TERMINAL_TITLE}$", "timeout": 15.0}),
            SetupStep("wait", {"seconds": SHELL_SETTLE_S}))


def commands(*lines: str) -> tuple[OracleStep, ...]:
    """Type each command line and press Enter, then give the last one time to finish."""
    steps: list[OracleStep] = []
    for line in lines:
        steps += [OracleStep(Type(line)), OracleStep(Key(("enter",)))]
    return (*steps, OracleStep(Wait(COMMAND_SETTLE_S)))


def file_equals(path: str, text: str) -> Check:
    """The file's text equals ``text`` up to surrounding whitespace (echo adds a newline)."""
    return Check("file", "equals", {"path": f"~/{path}", "strip": True}, expected=text)


def file_exists(path: str, exists: bool = True) -> Check:
    return Check("file", "exists", {"path": f"~/{path}"}, expected=exists)


def listing(folder: str, names: list[str]) -> Check:
    """``ls FOLDER`` (run in home) prints exactly these names, one per line, sorted."""
    return Check("command", "equals", {"argv": ["ls", "-1", folder]}, expected="\n".join(sorted(names)))


class TerminalFamily(Family):
    def make(self, level: int, seed: int, split: Split, rng: random.Random) -> Task:
        build = (self._create_empty, self._create_with_text, self._move_into_folder,
                 self._command_output, self._organise)[level]
        instruction, setup, checks, lines = build(rng, split)
        oracle = commands(*lines)
        return make_task(self, level, seed, split, instruction=instruction,
                         setup=open_terminal() + setup, checks=checks, oracle=oracle,
                         max_steps=len(oracle) + 4 + 2 * level)

    # one builder per level: (instruction, extra setup, checks, command lines)

    def _create_empty(self, rng: random.Random, split: Split):
        (name,) = pick(rng, NOUNS, split, 1)
        path = f"{name}.txt"
        return (f"In the terminal, create an empty file named {path} in your home folder.",
                (), (file_exists(path),), [f"touch {path}"])

    def _create_with_text(self, rng: random.Random, split: Split):
        name, word = pick(rng, NOUNS, split, 2)
        (colour,) = pick(rng, COLORS, split, 1)
        path, text = f"{name}.txt", f"{colour} {word}"
        return (f"In the terminal, create a file named {path} in your home folder that contains "
                f"the text: {text}", (), (file_equals(path, text),), [f"echo '{text}' > {path}"])

    def _move_into_folder(self, rng: random.Random, split: Split):
        name, folder, word = pick(rng, NOUNS, split, 3)
        path = f"{name}.txt"
        content = f"{word}\n"
        setup = (SetupStep("write_file", {"path": f"~/{path}", "content": content}),)
        checks = (listing(folder, [path]), file_equals(f"{folder}/{path}", word), file_exists(path, False))
        return (f"In the terminal, make a folder named {folder} in your home folder and move the "
                f"file {path} into it.", setup, checks, [f"mkdir {folder}", f"mv {path} {folder}/"])

    def _command_output(self, rng: random.Random, split: Split):
        folder, out, *files = pick(rng, NOUNS, split, 2 + rng.randint(2, 4))
        names = [f"{f}.txt" for f in files]
        setup = tuple(SetupStep("write_file", {"path": f"~/{folder}/{n}", "content": f"{n}\n"}) for n in names)
        target = f"{out}.txt"
        return (f"In the terminal, write the list of files in the folder {folder} (as `ls {folder}` "
                f"prints them, one per line) into a new file named {target} in your home folder.",
                setup, (file_equals(target, "\n".join(sorted(names))),), [f"ls -1 {folder} > {target}"])

    def _organise(self, rng: random.Random, split: Split):
        folder, first, second, index = pick(rng, NOUNS, split, 4)
        colour_a, colour_b = pick(rng, COLORS, split, 2)
        a, b = f"{first}.txt", f"{second}.txt"
        listed = sorted([a, b])
        checks = (file_equals(f"{folder}/{a}", colour_a), file_equals(f"{folder}/{b}", colour_b),
                  file_equals(f"{index}.txt", "\n".join(listed)))
        return (f"In the terminal: make a folder named {folder} in your home folder; in it, create "
                f"{a} containing {colour_a} and {b} containing {colour_b}; then write the list of "
                f"files in {folder} (one per line) into {index}.txt in your home folder.",
                (), checks,
                [f"mkdir {folder}", f"echo {colour_a} > {folder}/{a}", f"echo {colour_b} > {folder}/{b}",
                 f"ls -1 {folder} > {index}.txt"])


FAMILIES = [TerminalFamily(
    name="terminal", app="xterm", levels=5,
    description="Shell tasks in a real xterm: create files, folders, redirect command output.",
    knobs=("create an empty file", "create a file with given text", "make a folder and move a file into it",
           "write a command's output into a file", "several commands: folder, two files, a listing"),
)]
