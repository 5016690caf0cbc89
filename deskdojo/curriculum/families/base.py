"""What a task family is, and the helpers every family uses to keep training and held-out
tasks apart.

A family turns (level, seed, split) into a Task, deterministically. Level 0 is the
easiest; knobs (distractors, label similarity, layout randomness, nesting depth,
scrolling, number of steps, composition) grow with the level. Held-out tasks differ
from training tasks in seeds (a disjoint range) AND in content: labels and values are
drawn from word pools split by a fixed hash, so no held-out label is ever seen in
training.
"""

from __future__ import annotations

import json
import random
import re
import zlib
from dataclasses import dataclass
from typing import Any, Mapping, Sequence

from deskdojo.core.actions import Click, Key, Type, Wait
from deskdojo.core.types import Check, Locator, OracleStep, SetupStep, Split, StateCondition, Task

HELDOUT_SEED_BASE = 1_000_000  # held-out seeds are >= this, training seeds below


@dataclass(frozen=True)
class Family:
    """A procedural task family. Subclasses implement ``make``; ``generate`` checks the
    arguments and gives every task a stable id."""

    name: str
    app: str  # the practice app, or "xterm" / "mousepad" for real apps
    levels: int
    description: str
    knobs: tuple[str, ...] = ()  # one line per level: what makes it harder

    def generate(self, level: int, seed: int, split: Split | str = Split.TRAIN) -> Task:
        split = Split(split)
        if not 0 <= level < self.levels:
            raise ValueError(f"family {self.name} has levels 0..{self.levels - 1}, not {level}")
        check_seed(seed, split)
        rng = family_rng(self.name, level, seed, split)
        return self.make(level, seed, split, rng)

    def make(self, level: int, seed: int, split: Split, rng: random.Random) -> Task:
        raise NotImplementedError


def check_seed(seed: int, split: Split) -> None:
    if split is Split.HELDOUT and seed < HELDOUT_SEED_BASE:
        raise ValueError(f"held-out seeds are >= {HELDOUT_SEED_BASE}; got {seed}")
    if split is Split.TRAIN and not 0 <= seed < HELDOUT_SEED_BASE:
        raise ValueError(f"training seeds are within 0..{HELDOUT_SEED_BASE - 1}; got {seed}")


def family_rng(family: str, level: int, seed: int, split: Split) -> random.Random:
    return random.Random(f"{family}/{level}/{seed}/{Split(split).value}")


def task_id(family: str, level: int, seed: int, split: Split) -> str:
    return f"{family}-L{level}-{Split(split).value}-{seed}"


def is_heldout_word(word: str) -> bool:
    """A fixed quarter of every word pool is held out (by a hash, so it never changes)."""
    return zlib.crc32(word.encode()) % 4 == 0


def split_pool(words: Sequence[str], split: Split) -> list[str]:
    """The part of ``words`` a split may use: disjoint between train and held-out."""
    heldout = Split(split) is Split.HELDOUT
    chosen = [w for w in words if is_heldout_word(w) == heldout]
    if not chosen:
        raise ValueError(f"no {Split(split).value} words in pool starting {list(words)[:3]}")
    return chosen


def pick(rng: random.Random, words: Sequence[str], split: Split, n: int) -> list[str]:
    """``n`` distinct words of ``split``'s part of the pool."""
    pool = split_pool(words, split)
    if n > len(pool):
        raise ValueError(f"asked for {n} words but the {Split(split).value} pool has {len(pool)}")
    return rng.sample(pool, n)


def launch(app: str, params: Mapping[str, Any], *, timeout: float = 15.0) -> SetupStep:
    """Setup step that starts a practice app and waits for its window. The command line is
    the apps' documented interface (``deskdojo.vm.guest.apps``); curriculum does not
    import vm. "python3" means the sandbox's own interpreter."""
    text = json.dumps(dict(params), sort_keys=True, separators=(",", ":"))
    return SetupStep("launch", {"argv": ["python3", "-m", "deskdojo.vm.guest.apps", app, "--params", text],
                                "wait_window": f"^deskdojo {re.escape(app)}$", "timeout": timeout})


def launched(task: Task) -> tuple[str, dict[str, Any]] | None:
    """The practice app and parameters ``task``'s first ``launch`` step starts (the inverse
    of ``launch``), or None when it starts none."""
    for step in task.setup:
        argv = list(step.args.get("argv", ())) if step.kind == "launch" else []
        if len(argv) == 6 and argv[:3] == ["python3", "-m", "deskdojo.vm.guest.apps"] and argv[4] == "--params":
            try:
                params = json.loads(argv[5])
            except ValueError:
                return None
            return (str(argv[3]), params) if isinstance(params, dict) else None
    return None


def make_task(family: Family, level: int, seed: int, split: Split, **fields: Any) -> Task:
    """A Task with the family's id scheme filled in."""
    return Task(id=task_id(family.name, level, seed, split), family=family.name, level=level,
                seed=seed, split=split, **fields)


# --- oracle and check building blocks (shared by the families) ---------------------


def click(app: str, path: str | None = None, *, text: str | None = None, count: int = 1,
          wait: StateCondition | None = None) -> OracleStep:
    """Click the centre of whatever ``path`` names in ``app``'s state (or the widget
    showing ``text``), once ``wait`` holds."""
    return OracleStep(Click(0, 0, count=count), at=Locator(app, path=path, text=text), wait=wait)


def click_menu(app: str, label: str) -> OracleStep:
    """Click the on-screen menu entry ``label`` (menu bar or an open menu)."""
    return OracleStep(Click(0, 0), at=Locator(app, menu=label))


def when(app: str, path: str, equals: object = None, *, timeout: float = 8.0) -> OracleStep:
    """Wait until ``path`` in ``app``'s state equals ``equals`` (or exists, for None)."""
    return OracleStep(Wait(0.05), wait=StateCondition(app, path, equals), timeout=timeout)


def type_text(app: str, widget: str, text: str) -> OracleStep:
    """Type once ``widget`` has the keyboard focus."""
    return OracleStep(Type(text), wait=StateCondition(app, "focus", widget))


def type_into(app: str, widget: str, text: str, *, replace: bool = False) -> tuple[OracleStep, ...]:
    """Click a field (three times to select what it holds, when replacing) and type."""
    return (click(app, f"widgets.{widget}", count=3 if replace else 1), type_text(app, widget, text))


def press(*keys: str, wait: StateCondition | None = None) -> OracleStep:
    return OracleStep(Key(tuple(keys)), wait=wait)


def file_is(path: str, text: str) -> Check:
    """``~/path`` holds exactly ``text``."""
    return Check("file", "equals", {"path": f"~/{path}"}, expected=text)


def file_missing(path: str) -> Check:
    return Check("file", "exists", {"path": f"~/{path}"}, expected=False)


def state_is(app: str, path: str, expected: object) -> Check:
    return Check("app_state", "equals", {"app": app, "path": path}, expected=expected)
