"""What of an Observation goes into the policy's prompt in each observation mode: the
element table (cut to a budget by ``fit_to_budget``'s rule) and, for ``som``, the
screenshot with numbered marks. Acting and training both come here, so a prompt rebuilt
from a trajectory's record is the prompt that acted.

Modes (OSWorld's names): ``screenshot`` (pixels only), ``a11y_tree`` (the element table
only: no image), ``screenshot_a11y_tree`` (both), ``som`` (the screenshot with each listed
element's box and id drawn on it, and the table with the same ids).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Iterable, Mapping, Sequence

from deskdojo.core.actions import Scroll
from deskdojo.core.elements import MODES_WITH_ELEMENTS, Element, ElementList, fit_to_budget
from deskdojo.core.types import Observation
from deskdojo.perception.relevance import (CONTAINER_ROLES, mention_position, named_kinds,  # noqa: F401
                                           task_relevance, texts_to_type)

if TYPE_CHECKING:
    from deskdojo.core.protocols import Decision

DEFAULT_ELEMENT_BUDGET = 2400
"""Characters of element rows per prompt (about 60 rows; some 800 tokens of a Qwen tokenizer)."""


@dataclass(frozen=True, slots=True)
class ShownElements:
    """The elements one prompt shows (id order) and how many of the listing it left out."""

    elements: tuple[Element, ...]
    left_out: int
    listed: bool  # False: the observation carried no listing at all
    truncated: str = ""  # the listing's own note when the guest or host cut it
    numbered: bool = False  # rows show 1..n in this order (choices), not the listing's ids
    acted: frozenset[int] = frozenset()  # rows whose names earlier steps acted on (state "acted")
    named: frozenset[int] = frozenset()  # rows whose whole name the task says (state "named")
    kind: frozenset[int] = frozenset()  # rows of a kind the task names, while nothing is named (state "kind")
    takes: Mapping[int, int] = field(default_factory=dict)  # field id -> place of the task's text it takes ("$2")

    def label_of(self, element_id: int) -> int | None:
        """What the table calls element ``element_id`` (None: not shown)."""
        for number, element in enumerate(self.elements, start=1):
            if element.id == element_id:
                return number if self.numbered else element_id
        return None

    def element_of(self, label: int) -> int | None:
        """The listing id of the row the table calls ``label`` (None: no such row)."""
        if not self.numbered:
            return label if any(e.id == label for e in self.elements) else None
        return self.elements[label - 1].id if 1 <= label <= len(self.elements) else None


def element_row(element: Element, *, screen: tuple[int, int], image: tuple[int, int],
                number: int | None = None, acted: bool = False, named: bool = False, kind: bool = False,
                takes: int | None = None) -> str:
    """``12 button "Save" enabled,focused 40,10,64,24``: id, role, name (JSON-quoted, so a
    name cannot start a new row), states (``-`` for none), box x,y,w,h in ``image`` pixels.
    A field that takes the task's second text to type ends its states with ``$2``."""
    from deskdojo.perception.resize import screen_to_image

    x, y, w, h = element.box
    x0, y0 = screen_to_image(x, y, image, screen)
    x1, y1 = screen_to_image(x + w, y + h, image, screen)
    marks = {ACTED} if acted else {NAMED} if named else {KIND} if kind else set()
    states = ",".join([*sorted(element.states | marks), *([f"${takes}"] if takes is not None else [])]) or "-"
    name = json.dumps(element.name, ensure_ascii=False)
    label = element.id if number is None else number
    return f"{label} {element.role} {name} {states} {x0},{y0},{x1 - x0},{y1 - y0}"


def shown_elements(observation: Observation, *, budget: int, image: tuple[int, int]) -> ShownElements:
    """The rows that fit ``budget`` characters, chosen by ``fit_to_budget``'s rule
    (on-screen first, then nearest the focused element)."""
    listing: ElementList | None = observation.elements
    if listing is None:
        return ShownElements((), 0, listed=False)
    screen = tuple(observation.screen_size)

    def cost(element: Element) -> int:
        return len(element_row(element, screen=screen, image=image)) + 1

    kept, left_out = fit_to_budget(listing.elements, screen, budget=budget, cost=cost)
    return ShownElements(tuple(kept), left_out, listed=True, truncated=listing.truncated)


ELEMENT_ORDERS = ("id", "task")
"""How the table's rows are ordered: ``id`` (the listing's order) or ``task`` (rows whose
names share words with the task first, best match first, as MindAct's candidate ranking
puts the likely targets before the rest)."""

ACTED = "acted"
"""The state a ranked table gives a row an earlier step of the episode acted on (``ActedOn``)."""
NAMED = "named"
"""The state a ranked table gives a row whose whole name the task says (``task_relevance``
of 2 or more) and that no earlier step acted on: where the task's targets end and
look-alikes begin. An acted row shows ``acted`` instead, so "is any target left?" is one
state to look for, which a small model learns at once (told apart by "named without
acted" in the same row, a reader trained on 12,800 examples still answered ``done``
after the first click of a two-click task 15 times in 16)."""

KIND = "kind"
"""The state of a row of a kind the task names ("the drop-down", "the checkbox":
``named_kinds``) while no row is ``named``, no step acted on it and no step acted on a
row the task names whole: where a target the screen does not show yet is to be found.
The reader's rule stays one state to look for: the first ``named`` row, else the first
``kind`` row, else ``done``."""


NEVER_TARGET_ROLES = frozenset({"label", "text line", "static text", "heading"})
"""Rows that show words and are not acted on: a label the task names ("the Reason
field") is not a target."""


def can_be_target(element: Element) -> bool:
    """Whether a row the task names whole is a target (``named``): not a label, and not an
    editable field, whose name is the text it holds (typed "Rufus" is not a row "Rufus")."""
    return element.role not in NEVER_TARGET_ROLES and "editable" not in element.states


KIND_RELEVANCE = 1.5
"""Where a row of a kind the task names ranks when the task does not name it whole."""
ACTED_RELEVANCE = 1.0
"""Where an acted-on row ranks: below every row the task names, above look-alikes (0.5)
and rows that share no word with it."""


WINDOW_ROLES = frozenset({"frame", "dialog", "alert", "window"})
"""Rows that stand for a window: their name is the window's title, their box its frame."""

SAME_ORIGIN_PX = 4
"""How far a window's top-left may move and still be the window an earlier step acted in."""
UNNAMED_SPOT_PX = 6
"""How far an unnamed element's centre may move and still be the one acted on: unnamed
rows are told apart by their place alone (an empty combo box and the option menu beside
it stand 100 px or more apart)."""
SAME_SPOT_PX = 32
"""How far an element's centre may move in its window and still be the element acted on:
a click that relabels a status line reflows the buttons beside it by 20 px; two choices
of one name in two groups stand 100 px or more apart."""

SHOWS_CHOICE = frozenset({"combo box"})
"""Roles whose name is the item chosen in them: a drop-down closed on the chosen item."""

Place = tuple[str, "tuple[int, int] | None", tuple[int, int]]
"""Where an element is: its window's title, that window's top-left (None: not listed) and
the element's centre."""


def window_origin(elements: Iterable[Element], title: str) -> tuple[int, int] | None:
    """The top-left of the window row titled ``title`` among ``elements``, if listed."""
    for element in elements:
        if element.role in WINDOW_ROLES and element.name == title:
            return element.box[0], element.box[1]
    return None


def place_of(element: Element, elements: Iterable[Element]) -> Place:
    """Where ``element`` is among the rows ``elements`` of one listing (``Place``)."""
    x, y, w, h = element.box
    return element.window, window_origin(elements, element.window), (x + w // 2, y + h // 2)


@dataclass(frozen=True, slots=True)
class ActedOn:
    """An element an earlier step acted on: its name and ``place`` (``place_of``) when the
    step's table showed it; ``place`` None knows it by name alone."""

    name: str
    place: Place | None = None

    def matches(self, element: Element, place: Place) -> bool:
        """Whether ``element``, now at ``place``, is this one: same name, same window (title
        and, where both are listed, top-left) and a centre within ``SAME_SPOT_PX``.

        A window that opened anew is another window even with the same title: a confirm-
        twice task's second dialog holds another "Confirm" (the reader said done there,
        seeing the first one's acted mark); and "Ivory" in a second group of choices is
        another "Ivory".

        A row without a name is the one acted on only at its very place
        (``UNNAMED_SPOT_PX``). A combo box that shows the name acted on (``SHOWS_CHOICE``)
        is the row acted on wherever it is: its item was chosen in a list elsewhere."""
        if element.name != self.name:
            return False
        if element.name and element.role in SHOWS_CHOICE:
            return True
        if self.place is None:
            return bool(element.name)
        (window, then, (x, y)), (_, now, (nx, ny)) = self.place, place
        if element.window != window:
            return False
        if then is not None and now is not None and max(abs(then[0] - now[0]), abs(then[1] - now[1])) > SAME_ORIGIN_PX:
            return False
        return max(abs(x - nx), abs(y - ny)) <= (SAME_SPOT_PX if element.name else UNNAMED_SPOT_PX)


LABEL_ROLES = frozenset({"label", "static text", "text line"})
"""Rows that can be a field's label (``Note:`` beside its entry, ``apple name:`` above it)."""
LABEL_GAP_PX = 120
"""How far left of a field (its left edge to the label's right edge) its label may stand."""
LABEL_ABOVE_PX = 24
"""How far above a field (its top to the label's bottom) its label may stand."""


def label_of(field: Element, elements: Iterable[Element]) -> Element | None:
    """The label of the editable row ``field``: the nearest label row on its line to the
    left of it, else the nearest just above it (overlapping it across); None when none is."""
    x, y, w, h = field.box
    middle = y + h / 2
    beside, above = [], []
    for row in elements:
        if row.role not in LABEL_ROLES or row.window != field.window or not row.name.strip():
            continue
        lx, ly, lw, lh = row.box
        gap_left = x - (lx + lw)
        if abs(ly + lh / 2 - middle) <= max(h, lh) / 2 and -4 <= gap_left <= LABEL_GAP_PX:
            beside.append((gap_left, row))
        gap_above = y - (ly + lh)
        if -4 <= gap_above <= LABEL_ABOVE_PX and lx < x + w and x < lx + lw:
            above.append((gap_above, row))
    for found in (beside, above):
        if found:
            return min(found, key=lambda pair: pair[0])[1]
    return None


def fields_to_type(elements: Sequence[Element], instruction: str) -> tuple[frozenset[int], dict[int, int]]:
    """The editable rows a task still has to type into, with where the task says each (a
    word index), and the ids of those that hold a text the task asks to type (typed: done,
    however it was typed). A field is to type into when the task names its label whole
    ("type “Mina” into the Note field": label ``Note:``) or, when no field's label is
    named, when it is the table's only editable row. Returns (typed ids, {id: position})."""
    texts = texts_to_type(instruction)
    fields = [e for e in elements if "editable" in e.states]
    if not texts or not fields:
        return frozenset(), {}
    typed = frozenset(e.id for e in fields if e.name in texts)
    waiting = [e for e in fields if e.id not in typed]
    pending = [t for t in texts if t not in {e.name for e in fields}]
    labelled = {e.id: mention_position(label.name, instruction) for e in waiting
                for label in (label_of(e, elements),) if label is not None
                and task_relevance(label.name, instruction) >= 2.0}
    if labelled:
        return typed, labelled
    if len(fields) == 1 and waiting and pending:
        return typed, {waiting[0].id: mention_position(pending[0], instruction)}
    return typed, {}


def texts_for_fields(to_type: Mapping[int, int], instruction: str) -> dict[int, int]:
    """Which of the task's texts to type (``texts_to_type``, by 1-based place) each field
    of ``fields_to_type`` takes: the text said last before the field's label ("“Gus” into
    the “Captain” field"), else the first one after it ("in the Note field, type Mina"; a
    sentence that names two labels before their texts would need a parse of its clauses, and
    no family says one).
    A field the table marks with its text's place (``$2``) is answered by copying that
    mark, not by a digit the reader has to work out from the sentence: taught only by
    its successes, a tiny reader learned the ``2`` of fill_form's second text as a bias and
    said it into one-text forms too (README, "A suite with room")."""
    texts = texts_to_type(instruction)
    said = [(mention_position(text, instruction), place) for place, text in enumerate(texts, start=1)]
    takes = {}
    for field_id, label_at in to_type.items():
        before = [(at, place) for at, place in said if at < label_at]
        after = [(at, place) for at, place in said if at >= label_at]
        if before or after:
            takes[field_id] = max(before)[1] if before else min(after)[1]
    return takes


def acted_on(history: Sequence[Decision]) -> tuple[ActedOn, ...]:
    """What the episode's earlier steps acted on, for ``ranked_for_task``. A scroll over a
    row is not acting on it: the list it turned is still where the target will show, and
    marked ``acted`` it would sink and take another number for the next turn."""
    return tuple(ActedOn(d.element_name, d.element_place) for d in history
                 if d.element_name is not None and not isinstance(d.action, Scroll))


def ranked_for_task(shown: ShownElements, instruction: str, *, acted: Iterable[ActedOn] = (),
                    field_texts: bool = False) -> ShownElements:
    """``shown`` with its rows ordered by ``task_relevance``, then by where the task first
    names them (ties, and rows that share no word, keep the listing's order); the rows are
    then numbered 1..n in that order. A container the task names (``CONTAINER_ROLES``)
    ranks after every row the task names whole, so those stay together at the top.

    A row the episode already acted on (``acted``, ``acted_on(history)``; a row without a
    name by its place alone) carries the state ``acted`` and sinks below the rows still to
    do, so the next named row is always the first: a small reader that had to count acted
    rows learned "the third click is #3" from one family and said it in another.

    A row of a kind the task names (``named_kinds``: "the drop-down") ranks after the rows
    the task names whole and before acted rows and look-alikes; it carries ``kind``
    (``KIND``) while nothing is ``named``.

    A field the task has yet to type into (``fields_to_type``) is ``named`` and ranks where
    the task says it, so the typing step is row 1 when it is next, as a click's target is;
    a field that holds a text the task asks to type is ``acted`` (and one clicked but still
    to type into is not). With ``field_texts`` such a field also says which of the task's
    texts it takes (``texts_for_fields``: ``$2``)."""
    by_name: dict[str, list[ActedOn]] = {}
    for record in acted:
        by_name.setdefault(record.name, []).append(record)
    # only a row of an acted-on name needs its place (a scan of the rows for its window)
    done = frozenset(e.id for e in shown.elements if e.name in by_name
                     for place in (place_of(e, shown.elements),)
                     if any(a.matches(e, place) for a in by_name[e.name]))
    typed, to_type = fields_to_type(shown.elements, instruction)
    done = (done | typed) - to_type.keys()  # a field clicked but still empty is not done
    kinds = named_kinds(instruction)
    relevance = {e.id: min(max(score, KIND_RELEVANCE) if e.role in kinds else score,
                           ACTED_RELEVANCE if e.id in done else 1.9 if e.role in CONTAINER_ROLES else 3.0)
                 for e in shown.elements for score in (task_relevance(e.name, instruction),)}
    relevance.update({row_id: 3.0 for row_id in to_type})
    order = sorted(shown.elements, key=lambda e: (-relevance[e.id], to_type[e.id] if e.id in to_type
                                                  else mention_position(e.name, instruction), e.id not in to_type))
    named = frozenset(e.id for e in order if e.id in to_type
                      or (relevance[e.id] >= 2.0 and e.id not in done and can_be_target(e)))
    target_acted = any(task_relevance(name, instruction) >= 2.0 for name in by_name)
    kind = frozenset() if named or target_acted else frozenset(e.id for e in order if e.role in kinds and e.id not in done)
    takes = texts_for_fields(to_type, instruction) if field_texts else {}
    return ShownElements(tuple(order), shown.left_out, shown.listed, shown.truncated, numbered=True, acted=done,
                         named=named, kind=kind, takes=takes)


def element_table(shown: ShownElements, *, screen: tuple[int, int], image: tuple[int, int]) -> str:
    """The prompt's element table, with a line that says how many rows were left out."""
    if not shown.listed:
        return "Elements: none listed (the sandbox gave no element listing for this screen).\n"
    if not shown.elements and not shown.left_out:
        return "Elements: none on this screen.\n"
    lines = [f"Elements ({'number' if shown.numbered else 'id'} role \"name\" states box x,y,w,h in pixels "
             f"of a {image[0]}x{image[1]} view of the screen):"]
    lines += [element_row(e, screen=screen, image=image, number=k if shown.numbered else None,
                          acted=e.id in shown.acted, named=e.id in shown.named, kind=e.id in shown.kind,
                          takes=shown.takes.get(e.id))
              for k, e in enumerate(shown.elements, start=1)]
    if shown.left_out:
        lines.append(f"({shown.left_out} more elements left out: those off screen or farthest from the focus)")
    if shown.truncated:
        lines.append(f"(the listing itself was cut: {shown.truncated})")
    return "\n".join(lines) + "\n"


def marked_screenshot(observation: Observation, shown: ShownElements) -> Any:
    """``som``: the observation's screenshot with the shown elements' marks drawn on it."""
    from deskdojo.perception.marks import draw_marks

    return draw_marks(observation.screenshot, shown.elements)


def needs_elements(mode: str) -> bool:
    """Whether observations in ``mode`` must carry an element listing."""
    return mode in MODES_WITH_ELEMENTS
