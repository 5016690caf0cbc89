"""How well an element's name matches a task's words: what ranks the policy's element
table and marks the rows a task names, and what the VLM judge marks the same way. Pure
text, no model: both sides of the loop see the same "named" rows.
"""

from __future__ import annotations

import functools
import re

_WORD = re.compile(r"[^\W_]+")
_DOUBLE_QUOTED = r"“([^”]*)”|\"([^\"]*)\""
"""A name in double quotes (curly or straight); single quotes are apostrophes too often."""


@functools.lru_cache(maxsize=256)
def _instruction_words(instruction: str) -> tuple[tuple[str, ...], tuple[tuple[int, tuple[str, ...]], ...]]:
    """The instruction's words (lower case) and its double-quoted names as (first word
    index, words): parsed once per instruction, not once per row of every table."""
    said = tuple(w.lower() for w in _WORD.findall(instruction))
    quotes = tuple((len(_WORD.findall(instruction[:quote.start()])),
                    tuple(w.lower() for w in _WORD.findall(quote.group())))
                   for quote in re.finditer(_DOUBLE_QUOTED, instruction))
    return said, quotes


def mention_position(name: str, instruction: str) -> int:
    """Where the instruction first says the name's first word (a word index; past the end
    when it never does), so rows the task names in order are ranked in that order. A word
    inside a quoted name that is not this one does not count while another mention does
    ("Rotate" in `Press "Rotate forest", type ..., then confirm with Rotate` is said last),
    and a mention of the whole name counts before one of its first word alone."""
    words = tuple(w.lower() for w in _WORD.findall(name))
    said, quotes = _instruction_words(instruction)
    hits = [i for i, w in enumerate(said) if words and w == words[0]]
    if not hits:
        return len(said)
    # word indices inside quotes that hold another name
    others = {i for start, quoted in quotes if quoted != words for i in range(start, start + len(quoted))}
    whole = [i for i in hits if said[i:i + len(words)] == words]
    return next((i for i in whole if i not in others), next((i for i in hits if i not in others), hits[0]))


def task_relevance(name: str, instruction: str) -> float:
    """How well an element's name matches the task: 2 when the whole name appears in the
    instruction as a phrase (any case), plus the share of the name's words that appear
    there. "pepper" for "Click “pepper”." scores 3; "pepper mill" 0.5; "peppers" 0."""
    words = tuple(w.lower() for w in _WORD.findall(name))
    if not words:
        return 0.0
    said = _instruction_words(instruction)[0]
    share = sum(w in said for w in words) / len(words)
    n = len(words)
    phrase = any(said[i:i + n] == words for i in range(len(said) - n + 1))
    return 2.0 * phrase + share


CONTAINER_ROLES = frozenset({"panel", "frame", "filler", "group", "heading", "menu bar", "page tab list",
                             "scroll pane", "separator", "status bar", "tool bar", "window", "dialog", "list",
                             "tree"})
"""Roles of rows that hold what a task acts on rather than being it. A task that names one
("set “Marble colour” to “Cyan”": a radio group's panel) says where to look, so the row
ranks after the rows the task names whole and is never ``named`` itself. Ranked among
them and named, it was clicked as a target: the reader takes the first named row that no
step acted on, and in generated tables those rows are always together at the top. In 52
recorded oracle demos of 13 families no click went to such a row, and a panel was
``named`` on 13 of their steps."""


ROLE_PHRASES: dict[str, frozenset[str]] = {
    "drop-down": frozenset({"combo box"}), "dropdown": frozenset({"combo box"}),
    "drop down": frozenset({"combo box"}), "combo box": frozenset({"combo box"}),
    "combobox": frozenset({"combo box"}), "option menu": frozenset({"combo box"}),
    "checkbox": frozenset({"check box"}), "check box": frozenset({"check box"}),
    "tick box": frozenset({"check box"}), "radio button": frozenset({"radio button"}),
    "slider": frozenset({"slider"}), "spin box": frozenset({"spin button"}),
    "spinbox": frozenset({"spin button"}), "toggle": frozenset({"toggle button"}),
}
"""Words a task uses for a kind of element, and the roles the element table gives that
kind. "Choose “White” from the drop-down menu." names the target, which the drop-down
hides, and the drop-down only by its kind: a reader that matches names cannot find it
(p = 0.02-0.04 of opening it), and more examples did not teach it to read roles."""

_PHRASE = {phrase: re.compile(rf"(?<![\w-]){re.escape(phrase)}(?![\w-])") for phrase in ROLE_PHRASES}


def named_kinds(instruction: str) -> frozenset[str]:
    """The roles of the kinds of element the instruction names (``ROLE_PHRASES``)."""
    said = instruction.lower()
    return frozenset(role for phrase, roles in ROLE_PHRASES.items() if _PHRASE[phrase].search(said)
                     for role in roles)


_QUOTED = _DOUBLE_QUOTED + r"|‘([^’]*)’|'([^']*)'"
_TYPED = re.compile(rf"(?<![\w-])type\s+(?:{_QUOTED}|([^\s,.;:!?\"“”]+)(?=\s+(?:into|in|on)\b|\s*[,.;]|\s*$))"
                    rf"|(?:{_QUOTED})(?=\s+into\b)", re.IGNORECASE)


@functools.lru_cache(maxsize=256)
def texts_to_type(instruction: str) -> tuple[str, ...]:
    """The texts the instruction asks to type, in its order: what follows the verb "type",
    quoted (“Cairo”, "Cairo", 'Cairo') or one bare word before "into", "in", "on" or the
    clause's end (``type Cairo into``; not "the type of file"), and a quoted text put "into"
    something (``type “Kiev” into A and “azure” into B``). A policy that says them by place
    (``$1``: ``text_refs``) answers a position, as it does for rows: copying a word the
    model never wrote did not form (0 of 80 typing answers of a reader pretrained to copy,
    on training and held-out words alike)."""
    return tuple(next(g for g in match.groups() if g is not None) for match in _TYPED.finditer(instruction))
