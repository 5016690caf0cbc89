"""Pretraining the tiny reader on generated element tables: text only, no sandbox.

A model trained from nothing on "instruction + element table -> element id" sits at
chance for tens of thousands of examples before associative recall appears. This
phase buys that skill once, on made-up data, so that the warm start and the loop spend
their examples on tasks instead. Each example is a prompt built by the policy's own
prompt code (the ``a11y_tree`` observation: the table, no image) from a generated
screen: rows with made-up names (``words.pseudo_words``; no task family's word appears,
and of the families' sentence shapes only menu_command's "the command X from the Y
menu"), an instruction that mentions one to four rows, and, in most examples, earlier
clicks. The target is the policy's own answer text:

* ``click #id`` of a mentioned row not yet clicked: the next one when the instruction
  gives an order ("then", "in that order"), one of them at random when it does not, so
  the model learns to spread its choice where the instruction does not decide (what
  the loop's sampling explores);
* ``done`` when every mentioned row was clicked;
* in some examples a typing step, a drop-down that holds the target (opened, closed with
  ``key escape`` when it was the wrong one), or a row named by its kind alone.

With ``form_share`` (``deskdojo tiny pretrain --form-share``, continuing a reader), that
share of examples fill a form of two or three labelled fields, each field marked with the
place of the text it takes (``policy.field_texts``): the answer copies the mark.

Table sizes grow over training (a curriculum: 2-4 rows first). A held-out set of
made-up words that never train measures whether the skill carries over to words the
model never saw, as the families' held-out words are.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import math
import random
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence, TextIO

from deskdojo.agent.observation import place_of
from deskdojo.core.actions import Click, Done, Key, Type
from deskdojo.core.elements import Element, ElementList
from deskdojo.core.progress import ProgressLine
from deskdojo.core.protocols import Decision
from deskdojo.core.types import Observation, Task

SCREEN = (1024, 768)

ROLES = ("button", "button", "button", "check box", "radio button", "menu", "menu item", "page tab",
         "list item", "label", "entry", "combo box", "slider", "text line", "push button", "toggle button")
CLICKABLE = frozenset(r for r in ROLES if r not in ("label", "text line"))
STATES = ("enabled", "enabled", "enabled", "enabled,focused", "checked,enabled", "-", "enabled,selected")

GLUE = tuple("the a and then in of to with on at for from this that it its each".split())
VERBS = tuple("click press choose select open pick tap hit activate use".split())
LATER_VERBS = VERBS + ("go to", "switch to", "tick", "enable", "confirm with", "finish with", "answer with")
"""Verbs of a later step ("Go to the Star tab and tick ...", "..., confirm with Proceed")."""
JOINTS = (", then ", ", then ", " and ", ", ", " and then ", ", and then ")
"""How a sentence joins its ordered steps."""
TARGET_COUNTS = (1, 1, 2, 2, 3, 4)
"""How many rows an instruction names (weights by repetition)."""
NOUN_HINTS = tuple("button item entry option box tab menu control field thing one command".split())
CONTAINERS = ("menu", "list", "tab", "panel", "page", "section", "group")
"""What holds a target that is clicked after its holder ("Choose the command X from the Y menu")."""
TYPING_SHARE = 0.3
"""Examples whose instruction also asks for text typed into a field."""
OPENER_SHARE = 0.14
"""Examples whose target is inside a drop-down that the instruction names by its kind or not at all."""
UNNAMED_ROLES = ("list", "scroll bar", "panel", "text line", "combo box", "separator")
"""Rows that real screens list without a name (a list's frame, its scroll bar, an empty
combo box): never a target, and one unnamed row is not another."""
OPENER_PLACES = ("from the drop-down", "in the drop-down menu", "from the list", "in the menu", "from the options",
                 "from the drop-down list", "in the combo box")
ROLE_SHARE = 0.08
"""Examples whose instruction names one row by its kind alone ("Tick the checkbox.")."""
KIND_WORDS = {"combo box": ("drop-down", "dropdown", "combo box"), "check box": ("checkbox", "check box"),
              "radio button": ("radio button",), "slider": ("slider",), "spin button": ("spin box",),
              "toggle button": ("toggle",)}
"""Words for a kind of row (a subset of ``deskdojo.perception.relevance.ROLE_PHRASES``)."""
KIND_VERBS = ("click", "open", "tick", "use", "activate", "press", "select")


@dataclass(frozen=True, slots=True, kw_only=True)
class PretrainConfig:
    """One pretraining run. ``steps`` optimizer steps of ``batch_size`` generated examples."""

    steps: int = 1500
    batch_size: int = 16
    lr: float = 2e-3
    warmup_steps: int = 100
    min_rows: int = 2
    max_rows: int = 16
    grow_steps: int = 250  # table size reaches max_rows here (linear)
    heldout_words: int = 400  # made-up words kept out of training, for the generalisation check
    eval_every: int = 100
    eval_examples: int = 128
    seed: int = 0  # weights, data and the held-out words
    start_step: int = 0  # steps the reader was pretrained before this run (continued: new data, full tables)
    max_seconds: float | None = None
    log_every: int = 50
    form_share: float = 0.0  # examples of forms (``form_example``); the reader then shows field marks


@dataclass(slots=True)
class Example:
    task: Task
    observation: Observation
    history: tuple[Decision, ...]
    target: Any  # the action the answer must name
    choices: tuple[Any, ...] = ()  # every right answer (for scoring)
    stale: bool = False  # the history's row numbers belong to tables that have changed since


@dataclass(slots=True)
class PretrainResult:
    steps: int
    seconds: float
    losses: list[float] = field(default_factory=list)
    evals: list[dict[str, Any]] = field(default_factory=list)


_BLANK: Any = None


def _blank_screen() -> Any:
    global _BLANK
    if _BLANK is None:
        import numpy as np

        _BLANK = np.zeros((SCREEN[1], SCREEN[0], 3), dtype=np.uint8)
        _BLANK.setflags(write=False)
    return _BLANK


def _name(rng: random.Random, words: Sequence[str]) -> str:
    return rng.choice(words) if rng.random() < 0.75 else f"{rng.choice(words)} {rng.choice(words)}"


def _quote(rng: random.Random, name: str) -> str:
    style = rng.random()
    if style < 0.45:
        return f"“{name}”"
    if style < 0.7:
        return f'"{name}"'
    return name


def _instruction(rng: random.Random, mentions: Sequence[Element], ordered: bool, words: Sequence[str]) -> str:
    """An imperative that names ``mentions`` (no task family's template)."""
    parts = []
    for element in mentions:
        hint = rng.choice(NOUN_HINTS + ("",) * 4)
        quoted = _quote(rng, element.name)
        if hint and rng.random() < 0.5:
            parts.append(f"the {hint} {quoted}" if rng.random() < 0.5 else f"the {quoted} {hint}")
        else:
            parts.append(quoted)
    verb = rng.choice(VERBS)
    if len(parts) == 1:
        text = f"{verb} {parts[0]}"
    elif ordered:
        form = rng.random()
        if form < 0.3:
            text = f"{verb} {', '.join(parts[:-1])} and {parts[-1]}, in that order"
        elif form < 0.7:
            text = f"{verb} {parts[0]}" + "".join(f"{rng.choice(JOINTS)}{rng.choice(LATER_VERBS)} {p}"
                                                 for p in parts[1:])
        elif form < 0.85:  # a menu path
            text = f"{verb} " + " > ".join(_quote(rng, e.name) for e in mentions)
        else:
            text = f"first {verb} {parts[0]}" + "".join(f", next {p}" for p in parts[1:])
    else:
        text = f"{verb} {', '.join(parts[:-1])} and {parts[-1]}, in any order"
    if rng.random() < 0.3:  # filler that names nothing on the screen
        text += f" {rng.choice(GLUE)} {rng.choice(words)}"
    return text[0].upper() + text[1:] + "."


def _inside_instruction(rng: random.Random, item: str, holder: str) -> str:
    """An imperative that names the item first and what holds it last, which is clicked
    first ("Choose the command Library from the Castle menu.")."""
    place = rng.choice(CONTAINERS)
    item_text, holder_text = _quote(rng, item), _quote(rng, holder)
    form = rng.random()
    if form < 0.35:
        text = f"{rng.choice(VERBS)} the command {item_text} from the {holder_text} {place}"
    elif form < 0.7:
        text = f"{rng.choice(VERBS)} {item_text} {rng.choice(('from', 'in', 'under'))} the {holder_text} {place}"
    else:
        text = f"{rng.choice(VERBS)} the {rng.choice(NOUN_HINTS)} {item_text} in {holder_text}"
    return text[0].upper() + text[1:] + "."


def make_example(rng: random.Random, words: Sequence[str], *, rows: int, form_share: float = 0.0) -> Example:
    """One generated example: mostly clicks on named rows (``click_example``); some ask for
    text typed into a field on the way (``typing_example``); some name a target that a
    drop-down holds, which the instruction names by its kind or not at all
    (``opener_example``); some name one row by its kind alone (``role_example``); with
    ``form_share``, that share fill a form of two or three fields (``form_example``)."""
    if form_share and rng.random() < form_share:
        return form_example(rng, words, rows=rows)
    draw = rng.random()
    if draw < TYPING_SHARE:
        return typing_example(rng, words, rows=rows)
    if draw < TYPING_SHARE + OPENER_SHARE:
        return opener_example(rng, words, rows=rows)
    if draw < TYPING_SHARE + OPENER_SHARE + ROLE_SHARE:
        return role_example(rng, words, rows=rows)
    return click_example(rng, words, rows=rows)


def _fresh_names(rng: random.Random, words: Sequence[str], count: int, used: set[str]) -> list[str]:
    """``count`` names that share no word with each other or with ``used`` (so no row's whole
    name is inside another's: "Grouluk" in "Open “clagail Grouluk”" would be ``named``)."""
    names: list[str] = []
    while len(names) < count:
        name = _name(rng, words)
        parts = name.lower().split()
        if len(set(parts)) == len(parts) and not used.intersection(parts):
            used.update(parts)
            names.append(name)
    return names


def _screen(rng: random.Random, words: Sequence[str], rows: Sequence[tuple[str, str, frozenset[str]]]) -> Observation:
    """An observation whose listing holds a frame and ``rows`` (role, name, states) in a
    shuffled screen order, numbered by that order."""
    order = rng.sample(range(len(rows)), len(rows))
    elements = [Element(0, "frame", f"deskdojo {rng.choice(words)}", (0, 0, 640, 480), frozenset({"enabled"}))]
    for number, i in enumerate(order, start=1):
        role, name, states = rows[i]
        elements.append(Element(number, role, name, _box(rng), states))
    return _observation(rng, elements)


def _screen_holding(rng: random.Random, words: Sequence[str], rows: Sequence[tuple[str, str, frozenset[str]]],
                    role: str, count: int) -> tuple[Observation, list[Element]]:
    """``_screen`` drawn again until it lists ``count`` rows of ``role`` (its unnamed extras
    may add one), and those rows."""
    while True:
        observation = _screen(rng, words, rows)
        held = [e for e in observation.elements.elements if e.role == role]
        if len(held) == count:
            return observation, held


def _box(rng: random.Random) -> tuple[int, int, int, int]:
    return rng.randrange(0, 900), rng.randrange(0, 700), rng.randrange(30, 160), rng.randrange(12, 40)


def _observation(rng: random.Random, elements: list[Element]) -> Observation:
    """The listing with up to three unnamed rows put in at random places (ids past the named
    rows'), as real screens list them."""
    rows = list(elements)
    for k in range(rng.choice((0, 0, 1, 2, 3))):
        rows.insert(rng.randint(1, len(rows)), Element(500 + k, rng.choice(UNNAMED_ROLES), "", _box(rng),
                                                       frozenset({"enabled"})))
    return Observation(screenshot=_blank_screen(), screen_size=SCREEN, elements=ElementList(tuple(rows)))


def _row_id(observation: Observation, name: str, role: str | None = None) -> int:
    return next(e.id for e in observation.elements.elements if e.name == name and (role is None or e.role == role))


def _filler(rng: random.Random) -> frozenset[str]:
    return frozenset(s for s in rng.choice(STATES).split(",") if s != "-")


@functools.cache
def _tiny_tokenizer() -> Any:
    from deskdojo.agent.model.loading import load_tokenizer
    from deskdojo.agent.tiny import TINY_DIR

    return load_tokenizer(TINY_DIR, local=True)


@functools.cache
def one_token(word: str) -> bool:
    """Whether ``word``, quoted in an answer (``type "word"``), is one token of the tiny
    tokenizer."""
    tokenizer = _tiny_tokenizer()
    return len(tokenizer(f'type "{word}"')["input_ids"]) == len(tokenizer('type "A"')["input_ids"])


def _typed_text(rng: random.Random, words: Sequence[str], used: set[str]) -> str:
    """A word to type that is one token, as the families' are (`Cairo`, `Riga`): copying
    one token from the instruction is one attention step, and with made-up words of 2-6
    pieces the reader wrote one constant word whatever the task quoted."""
    while True:
        word = rng.choice(words)
        if word.lower() not in used and one_token(word):
            used.add(word.lower())
            return word


def typing_example(rng: random.Random, words: Sequence[str], *, rows: int) -> Example:
    """Clicks on named rows with one typing step among them, in the instruction's order:
    ``type “Rufus” into the Reason field``. The field is the table's one editable row (its
    name is what it holds); the answer types into it by number. Once typed, the field holds
    the text, and the history says what was typed."""
    used: set[str] = set()
    clicks = _fresh_names(rng, words, rng.choice((0, 1, 1, 2, 3)), used)
    others = _fresh_names(rng, words, max(0, rows - len(clicks) - 2), used)
    text = _typed_text(rng, words, used)
    label, prefill = _fresh_names(rng, words, 2, used)
    label = label.capitalize()
    place = rng.randint(0, len(clicks))
    sequence: list[str | None] = [*clicks[:place], None, *clicks[place:]]  # None: the typing step
    done = rng.randint(0, len(sequence)) if rng.random() < 0.7 else 0
    typed = None in sequence[:done]
    field_role = rng.choice(("text", "entry"))
    field_name = text if typed else ("" if rng.random() < 0.8 else prefill)
    field_states = frozenset({"editable", "enabled"} | ({"focused"} if rng.random() < 0.5 else set()))
    screen_rows = [(rng.choice(sorted(CLICKABLE)), n, _filler(rng)) for n in clicks]
    screen_rows += [(rng.choice(ROLES), n, _filler(rng)) for n in others]
    screen_rows += [("label", f"{label}:", frozenset({"enabled"})), (field_role, field_name, field_states)]
    observation = _screen(rng, words, screen_rows)
    field_id = _row_id(observation, field_name, field_role)
    parts = [f"type {_quote(rng, text)} into the {label} {rng.choice(('field', 'box', 'entry'))}" if step is None
             else _quote(rng, step) for step in sequence]
    verb = rng.choice(VERBS)
    sentence = ", then ".join(p if p.startswith("type ") else f"{rng.choice(VERBS) if k else verb} {p}"
                              for k, p in enumerate(parts))
    instruction = sentence[0].upper() + sentence[1:] + "."
    history = tuple(Decision(text=f'type "{text}"', action=Type(text, element=field_id), element_name="")
                    if step is None else
                    Decision(text=f"click #{_row_id(observation, step)}", action=Click(element=_row_id(observation, step)),
                             element_name=step)
                    for step in sequence[:done])
    following = sequence[done] if done < len(sequence) else "done"
    if following == "done":
        target, choices = Done(), (Done(),)
    elif following is None:  # into the focused field as it is (a dialog's), else click it first
        target = Type(text) if "focused" in field_states else Type(text, element=field_id)
        choices = (Type(text), Type(text, element=field_id)) if "focused" in field_states else (target,)
    else:
        target = Click(element=_row_id(observation, following))
        choices = (target,)
    task = Task(id="pretrain", instruction=instruction, family="pretrain")
    return Example(task, observation, history, target, choices)


FIELD_STEP_PX = 40
"""Rows of a generated form lie this far apart (a label beside or above its field)."""


def form_example(rng: random.Random, words: Sequence[str], *, rows: int) -> Example:
    """A form of two or three labelled fields (``type “Rufus” into the “Reason” field and
    “Mina” into the “Note” field, then press “Vilk”``), in the sentence's order: the next
    field not yet holding its text (row by number, text by place: ``type #2 "$2"``), then
    the button, then ``done``. Labels stand beside or above their fields, so the table
    marks each field with the place of its text (``policy.field_texts``: ``$2``), and the
    answer copies that mark (the loop, taught ``$2`` by a few successes alone, learned the
    digit as a bias and said it into one-text forms too)."""
    used: set[str] = set()
    count = rng.choice((2, 2, 3))
    labels = [name.capitalize() for name in _fresh_names(rng, words, count, used)]
    texts = [_typed_text(rng, words, used) for _ in range(count)]
    (button,) = _fresh_names(rng, words, 1, used)
    others = _fresh_names(rng, words, max(0, rows - 2 * count - 1), used)
    said_order = rng.sample(range(count), count)  # the sentence names the fields in this order
    typed = rng.randint(0, count) if rng.random() < 0.85 else count
    pressed = typed == count and rng.random() < 0.3
    above = rng.random() < 0.4
    x, y = rng.randrange(40, 500), rng.randrange(40, 480)
    rows_out: list[Element] = []
    field_ids: dict[int, int] = {}
    for place, i in enumerate(rng.sample(range(count), count)):  # the form's own top-down order
        top = y + place * FIELD_STEP_PX * (2 if above else 1)
        label_box = (x, top, 90, 16) if not above else (x, top, 90, 14)
        field_box = (x + 100, top, 160, 16) if not above else (x, top + 18, 160, 16)
        holds = texts[i] if i in said_order[:typed] else ""
        rows_out.append(Element(0, "label", f"{labels[i]}:", label_box, frozenset({"enabled"})))
        rows_out.append(Element(0, rng.choice(("text", "entry")), holds, field_box,
                                frozenset({"editable", "enabled"})))
        field_ids[i] = len(rows_out) - 1
    rows_out.append(Element(0, "button", button, (x + 180, y + count * FIELD_STEP_PX * 2 + 10, 60, 20),
                            frozenset({"enabled"})))
    rows_out += [Element(0, rng.choice(ROLES), name, _box(rng), _filler(rng)) for name in others]
    order = rng.sample(range(len(rows_out)), len(rows_out))
    number_of = {index: number for number, index in enumerate(order, start=1)}
    elements = [Element(0, "frame", f"deskdojo {rng.choice(words)}", (0, 0, 900, 700), frozenset({"enabled"}))]
    elements += [dataclasses.replace(rows_out[index], id=number_of[index]) for index in sorted(order, key=number_of.get)]
    field_of = {i: number_of[index] for i, index in field_ids.items()}
    noun = rng.choice(("field", "box", "entry"))
    # a text after the first is quoted, as ``texts_to_type`` needs ("and “Mina” into ...")
    quoted = [_quote(rng, texts[i]) if k == 0 else rng.choice(("“{}”", '"{}"')).format(texts[i])
              for k, i in enumerate(said_order)]
    parts = [f"{text} into the {_quote(rng, labels[i]) if rng.random() < 0.6 else labels[i]} {noun}"
             for text, i in zip(quoted, said_order)]
    instruction = f"Type {', '.join(parts[:-1])} and {parts[-1]}, then {rng.choice(('press', 'click'))} {_quote(rng, button)}."
    history = tuple(Decision(text="", action=Type(texts[i], element=field_of[i]), element_name="")
                    for i in said_order[:typed])
    observation = _observation(rng, elements)
    button_id = _row_id(observation, button, "button")
    if pressed:
        history += (Decision(text="", action=Click(element=button_id), element_name=button),)
        target: Any = Done()
    elif typed < count:
        target = Type(texts[said_order[typed]], element=field_of[said_order[typed]])
    else:
        target = Click(element=button_id)
    task = Task(id="pretrain", instruction=instruction, family="pretrain")
    return Example(task, observation, history, target, (target,))


def opener_example(rng: random.Random, words: Sequence[str], *, rows: int) -> Example:
    """A target inside a drop-down: the instruction names the item (“White”) and the
    drop-down by its kind or not at all; the drop-down shows another item (“Brown”). First
    click a drop-down (any of them, when there are two), then the item it shows, then done;
    a chosen item becomes the drop-down's name.

    The other drop-down, opened first, shows no such item: ``key escape`` closes its list
    (a click elsewhere only closes the list, as in Tk and most toolkits, and the reader then
    saw both drop-downs acted and said done), then the one not acted on opens."""
    used: set[str] = set()
    target_name, shown_name, *items = _fresh_names(rng, words, rng.randint(4, 6), used)
    others = _fresh_names(rng, words, max(0, rows - 3), used)
    # a second drop-down, often without a name (an empty combo box)
    spare = (_fresh_names(rng, words, 1, used)[0] if rng.random() < 0.5 else "") if rng.random() < 0.5 else None
    spare_items = _fresh_names(rng, words, rng.randint(0, 3), used) if spare is not None else []
    step = rng.choice((0, 1, 1, 2) + ((3, 4, 4) if spare is not None else ()))
    detour = spare is not None and (step == 4 or (step in (1, 2) and rng.random() < 0.3))
    screen_rows = [(rng.choice([r for r in ROLES if r != "combo box"]), n, _filler(rng)) for n in others]
    main_name = target_name if step == 2 else shown_name
    screen_rows.append(("combo box", main_name, frozenset({"enabled", "expanded"} if step == 1 else {"enabled"})))
    if step == 1:
        screen_rows += [("menu item", n, frozenset({"enabled"})) for n in (shown_name, target_name, *items)]
    if spare is not None:
        screen_rows.append(("combo box", spare, frozenset({"enabled", "expanded"} if step == 3 else {"enabled"})))
    if step == 3:
        screen_rows += [("list item", n, frozenset({"enabled"})) for n in spare_items]
    observation, combos = _screen_holding(rng, words, screen_rows, "combo box", 1 + (spare is not None))
    instruction = f"{rng.choice(VERBS)} {_quote(rng, target_name)} {rng.choice(OPENER_PLACES)}"
    instruction = instruction[0].upper() + instruction[1:] + "."
    history: tuple[Decision, ...] = ()
    if spare is not None and (step == 3 or detour):
        row = next(e for e in combos if e.name == spare)
        history += (Decision(text="click #1", action=Click(element=10_002), element_name=spare,
                             element_place=place_of(row, observation.elements.elements)),)
        if step != 3:
            history += (Decision(text="key escape", action=Key(("escape",))),)
    if step in (1, 2):
        history += (Decision(text="click #1", action=Click(element=10_000), element_name=shown_name),)
    if step == 2:
        history += (Decision(text="click #1", action=Click(element=10_001), element_name=target_name),)
    if step == 0:
        choices = tuple(Click(element=e.id) for e in combos)
        target = rng.choice(choices)
    elif step == 1:
        target = Click(element=_row_id(observation, target_name, "menu item"))
        choices = (target,)
    elif step == 2:
        target, choices = Done(), (Done(),)
    elif step == 3:
        target = Key(("escape",))
        choices = (target,)
    else:
        target = Click(element=_row_id(observation, shown_name, "combo box"))
        choices = (target,)
    task = Task(id="pretrain", instruction=instruction, family="pretrain")
    return Example(task, observation, history, target, choices, stale=bool(history))


def role_example(rng: random.Random, words: Sequence[str], *, rows: int) -> Example:
    """One row named by its kind alone ("Tick the checkbox.", "Open the drop-down."):
    click the table's one row of that kind (named or not), then done."""
    role = rng.choice(sorted(KIND_WORDS))
    used: set[str] = set()
    others = _fresh_names(rng, words, max(1, rows - 1), used)
    name = _fresh_names(rng, words, 1, used)[0] if rng.random() < 0.6 else ""
    screen_rows = [(rng.choice([r for r in ROLES if r not in KIND_WORDS]), n, _filler(rng)) for n in others]
    screen_rows.append((role, name, frozenset({"enabled"})))
    observation, (row,) = _screen_holding(rng, words, screen_rows, role, 1)
    instruction = f"{rng.choice(KIND_VERBS)} the {rng.choice(KIND_WORDS[role])}"
    if rng.random() < 0.3:
        instruction += f" {rng.choice(GLUE)} {rng.choice(words)}"
    instruction = instruction[0].upper() + instruction[1:] + "."
    clicked = rng.random() < 0.5
    history = (Decision(text=f"click #{row.id}", action=Click(element=row.id), element_name=name,
                        element_place=place_of(row, observation.elements.elements)),) if clicked else ()
    target = Done() if clicked else Click(element=row.id)
    task = Task(id="pretrain", instruction=instruction, family="pretrain")
    return Example(task, observation, history, target, (target,))


def click_example(rng: random.Random, words: Sequence[str], *, rows: int) -> Example:
    """One generated screen, instruction, history and answer.

    Most examples are mid-episode (earlier clicks in the history), because that is where
    a reader trained on first steps alone falls back on counting: "one name quoted, one
    click made, so done". Half of the multi-target screens reveal their targets one at a
    time, as menus and dialogs do: a later target is not on the screen until the one
    before it was clicked, and a clicked target may be gone. The only cue that stays true
    is the rows' states: ``done`` exactly when no row the task names is left un-acted.
    """
    count = max(2, rows)
    names: list[str] = []
    used: set[str] = set()
    while len(names) < count - 1:
        name = _name(rng, words)
        if name.lower() not in used:
            used.add(name.lower())
            names.append(name)
    roles = [rng.choice(ROLES) for _ in names]
    targets_n = min(rng.choice(TARGET_COUNTS), len(names))
    candidates = [i for i, r in enumerate(roles) if r in CLICKABLE] or list(range(len(names)))
    targets_n = min(targets_n, len(candidates))
    chosen = rng.sample(candidates, targets_n)
    if len(chosen) > 1 and rng.random() < 0.4:  # a target may contain another ("Zebra", "Enable Zebra")
        joined = f"{rng.choice(words)} {names[chosen[0]]}"
        if joined.lower() not in used:
            used.add(joined.lower())
            names[chosen[1]] = joined
    # look-alikes of a target ("brelk" -> "brelk tav", "tav brelk"): only the exact name is right
    for i in range(len(names)):
        if i not in chosen and rng.random() < 0.25:
            target = names[rng.choice(chosen)]
            alike = f"{target} {rng.choice(words)}" if rng.random() < 0.5 else f"{rng.choice(words)} {target}"
            if alike.lower() not in used:
                used.add(alike.lower())
                names[i] = alike
    revealed = len(chosen) > 1 and rng.random() < 0.5  # the screen, not the sentence, orders them
    ordered = len(chosen) > 1 and (revealed or rng.random() < 0.6)
    history_share = 0.5 if len(chosen) == 1 else 0.8
    clicked = rng.randint(1, len(chosen)) if rng.random() < history_share else 0
    done_first = chosen[:clicked] if ordered else rng.sample(chosen, clicked)
    remaining = [i for i in chosen if i not in done_first]
    hidden: set[int] = set()
    if revealed:
        hidden |= set(remaining[1:])  # not on the screen until the one before is clicked
        hidden |= {i for i in done_first if rng.random() < 0.3}  # a clicked menu item closes its menu
    kept = [i for i in rng.sample(range(len(names)), len(names)) if i not in hidden]  # screen order
    elements = [Element(0, "frame", f"deskdojo {rng.choice(words)}", (0, 0, 640, 480), frozenset({"enabled"}))]
    row_of: dict[int, Element] = {}
    for number, i in enumerate(kept, start=1):
        x, y = rng.randrange(0, 900), rng.randrange(0, 700)
        states = frozenset(s for s in rng.choice(STATES).split(",") if s != "-")
        row_of[i] = Element(number, roles[i], names[i], (x, y, rng.randrange(30, 160), rng.randrange(12, 40)), states)
        elements.append(row_of[i])
    mentions = [Element(0, roles[i], names[i], (0, 0, 1, 1), frozenset()) for i in chosen]
    if revealed and len(chosen) == 2 and rng.random() < 0.4:  # "Choose Tulip from the Panda menu"
        instruction = _inside_instruction(rng, names[chosen[1]], names[chosen[0]])
    elif revealed and rng.random() < 0.2:  # named last, clicked first
        instruction = _instruction(rng, mentions[::-1], False, words)
    else:
        instruction = _instruction(rng, mentions, ordered, words)
    # what an earlier step clicked keeps its id only when its row is still on the screen
    history = tuple(Decision(text=f"click #{row_of[i].id if i in row_of else rng.randint(1, len(elements))}",
                             action=Click(element=row_of[i].id if i in row_of else 10_000 + i),
                             element_name=names[i]) for i in done_first)
    if not remaining:
        target, choices = Done(), (Done(),)
    elif ordered:
        target = Click(element=row_of[remaining[0]].id)
        choices = (target,)
    else:
        choices = tuple(Click(element=row_of[i].id) for i in remaining)
        target = rng.choice(choices)
    observation = _observation(rng, elements)
    task = Task(id="pretrain", instruction=instruction, family="pretrain")
    # the screen changed since the earlier clicks (a menu or dialog opened), so the numbers
    # the history says are not this table's: only the rows' "acted" state tells
    stale = bool(history) and (revealed or rng.random() < 0.5)
    if stale:
        history = tuple(dataclasses.replace(d, text=f"click #{rng.randint(1, len(elements))}") for d in history)
    return Example(task, observation, history, target, choices, stale=stale)


def split_words(words: Sequence[str], heldout: int, *, seed: int = 0) -> tuple[list[str], list[str]]:
    shuffled = list(words)
    random.Random(seed).shuffle(shuffled)
    return shuffled[heldout:], shuffled[:heldout]


def rows_at(step: int, config: PretrainConfig, rng: random.Random) -> int:
    grown = min(1.0, step / max(1, config.grow_steps))
    top = config.min_rows + 2 + round(grown * (config.max_rows - config.min_rows - 2))
    return rng.randint(config.min_rows, max(config.min_rows, top))


def said(policy: Any, example: Example) -> Example:
    """``example`` with its history's texts as the policy says them (row numbers of its table;
    a stale history keeps the numbers of the tables it was said on)."""
    if example.stale:
        return example
    history = tuple(dataclasses.replace(d, text=policy.render_target(d.action, example.observation, task=example.task))
                    for d in example.history)
    return dataclasses.replace(example, history=history)


def _samples(policy: Any, examples: Sequence[Example]) -> list[Any]:
    from deskdojo.agent.policy import PolicySample

    samples = []
    for example in examples:
        history = said(policy, example).history
        samples.append(PolicySample((example.observation,), example.task, history,
                                    target_text=policy.render_target(example.target, example.observation,
                                                                     task=example.task, history=history)))
    return samples


def generated_batch(policy: Any, config: PretrainConfig, count: int, *, seed: int) -> list[Any]:
    """``count`` training samples of later steps (examples with earlier steps in their
    history), generated from ``config``'s training words at full table size: what the warm
    start rehearses beside its demos, so that a few demos that all end after one click do
    not teach ``done`` after one click. Seeded: the same ``seed`` gives the same samples."""
    from deskdojo.agent.tiny.words import pseudo_words

    train_words, _ = split_words(pseudo_words(), config.heldout_words, seed=config.seed)
    rng = random.Random(seed)
    examples: list[Example] = []
    while len(examples) < count:
        example = make_example(rng, train_words, rows=rows_at(config.grow_steps, config, rng))
        if example.history:
            examples.append(example)
    return _samples(policy, examples)


def accuracy(policy: Any, examples: Sequence[Example], *, batch: int = 32) -> float:
    """Greedy answers that are one of the right ones."""
    right = 0
    policy.set_greedy(True)
    try:
        for start in range(0, len(examples), batch):
            chunk = [said(policy, e) for e in examples[start:start + batch]]
            decisions = policy.act([e.observation for e in chunk], [e.task for e in chunk],
                                   [e.history for e in chunk])
            right += sum(d.action is not None and d.action in e.choices for d, e in zip(decisions, chunk))
    finally:
        policy.set_greedy(False)
    return right / max(1, len(examples))


def pretrain(policy: Any, config: PretrainConfig, *, log: Callable[[str], None] = print,
             words: Sequence[str] | None = None, progress: TextIO | None = None) -> PretrainResult:
    """Train ``policy`` (all weights) on generated examples; evaluates greedy accuracy on
    training-word and held-out-word examples every ``eval_every`` steps. With ``progress``
    (a stream) a progress line with the step, loss and time left replaces the
    every-``log_every`` loss lines."""
    import torch

    from deskdojo.agent.tiny.words import pseudo_words
    from deskdojo.agent.train.sft import supervised_step

    train_words, heldout_words = split_words(words or pseudo_words(), config.heldout_words, seed=config.seed)
    rng = random.Random(config.seed) if not config.start_step else random.Random(f"{config.seed}+{config.start_step}")
    eval_rng = random.Random(config.seed + 1)
    evals = {"train": [make_example(eval_rng, train_words, rows=eval_rng.randint(2, config.max_rows))
                       for _ in range(config.eval_examples)],
             "heldout": [make_example(eval_rng, heldout_words, rows=eval_rng.randint(2, config.max_rows))
                         for _ in range(config.eval_examples)]}
    if config.form_share:
        evals["forms-heldout"] = [form_example(eval_rng, heldout_words, rows=eval_rng.randint(7, config.max_rows))
                                  for _ in range(config.eval_examples)]
    model = policy.model
    parameters = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(parameters, lr=config.lr, weight_decay=0.01, betas=(0.9, 0.98))
    result = PretrainResult(steps=0, seconds=0.0)
    started = time.perf_counter()
    recent: list[float] = []

    def lr_at(step: int) -> float:
        warm = min(1.0, (step + 1) / config.warmup_steps)
        return config.lr * warm * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * min(1.0, step / config.steps))))

    limit_at = time.monotonic() + config.max_seconds if config.max_seconds is not None else None
    line = (ProgressLine("pretrain", config.steps, unit="steps", stream=progress, deadline=limit_at)
            if progress is not None else None)
    for step in range(config.steps):
        if config.max_seconds is not None and time.perf_counter() - started > config.max_seconds:
            log(f"pretrain: time limit reached at step {step}")
            break
        if step % config.eval_every == 0 or step == config.steps - 1:
            model.eval()
            scores = {name: accuracy(policy, examples) for name, examples in evals.items()}
            result.evals.append({"step": step, "seconds": round(time.perf_counter() - started, 1), **scores})
            log(f"pretrain: step {step}  accuracy {_scores_text(scores)}")
        model.train()
        batch_examples = [make_example(rng, train_words, rows=rows_at(config.start_step + step, config, rng),
                                       form_share=config.form_share)
                          for _ in range(config.batch_size)]
        value = supervised_step(policy, _samples(policy, batch_examples), optimizer, parameters,
                                lr=lr_at(step), max_grad_norm=1.0)
        result.losses.append(value)
        recent.append(value)
        result.steps = step + 1
        if line is not None:
            line.update(result.steps, info=f"loss {sum(result.losses[-10:]) / len(result.losses[-10:]):.4f}")
        elif result.steps % config.log_every == 0:
            elapsed = time.perf_counter() - started
            log(f"pretrain: step {result.steps}/{config.steps}  loss {sum(recent) / len(recent):.4f}  "
                f"{elapsed / result.steps:.2f} s/step")
            recent = []
    if line is not None:
        line.close()
    model.eval()
    scores = {name: accuracy(policy, examples) for name, examples in evals.items()}
    result.evals.append({"step": result.steps, "seconds": round(time.perf_counter() - started, 1), **scores})
    log(f"pretrain: done at step {result.steps}: accuracy {_scores_text(scores)}")
    result.seconds = time.perf_counter() - started
    return result


def _scores_text(scores: dict[str, float]) -> str:
    names = {"train": "train-words", "heldout": "held-out words", "forms-heldout": "forms of held-out words"}
    return "  ".join(f"{names.get(key, key)} {value:.2f}" for key, value in scores.items())


def reader_from_scratch(*, seed: int = 0) -> Any:
    """The reader before pretraining: ``READER_SPEC`` with seeded random weights, acting on
    the element table (``a11y_tree``), answering in the grid format."""
    from deskdojo.agent.model.tiny import READER_SPEC, build_tiny_model
    from deskdojo.agent.policy import load_policy

    policy = load_policy("tiny-scratch", _reader_config().replace(seed=seed))
    policy.model = build_tiny_model(policy.tokenizer, seed=seed, spec=READER_SPEC)
    return policy


def reader_from(folder: Path, *, seed: int = 0, field_texts: bool = False) -> Any:
    """A pretrained reader (a folder ``VLMPolicy.save`` wrote) to pretrain further, with the
    reader's settings as ``reader_from_scratch`` makes them (a setting added since it was
    built, such as ``text_refs``, takes effect); ``field_texts`` for pretraining on forms."""
    from deskdojo.agent.policy import load_policy

    return load_policy(str(folder), _reader_config().replace(seed=seed, field_texts=field_texts or None))


def _reader_config() -> Any:
    from deskdojo.agent.policy import PolicyConfig

    return PolicyConfig(observation="a11y_tree", element_order="task", history_names=True, text_refs=True,
                        position_code=False)


def write_report(path: Path, config: PretrainConfig, result: PretrainResult,
                 continued_from: dict[str, Any] | None = None) -> None:
    """The run's config, accuracy evaluations and losses; a continued run keeps the report
    of the reader it continued (``continued_from``), so the whole history stays beside the weights."""
    extra = {"continued_from": continued_from} if continued_from is not None else {}
    path.write_text(json.dumps({**extra, "config": {k: getattr(config, k) for k in config.__dataclass_fields__},
                                "steps": result.steps, "total_steps": config.start_step + result.steps,
                                "seconds": round(result.seconds, 1),
                                "evals": result.evals,
                                "loss_first": result.losses[:1], "loss_last": result.losses[-20:]}, indent=1) + "\n")
