"""What every action format shares: the interface, the parse result, coordinate
spaces, and the field table derived from the Action dataclasses.

Standard library only: the formats are imported by the CLI and the policy alike.
"""

from __future__ import annotations

import dataclasses
import functools
import re
from dataclasses import dataclass
from typing import Any, Callable, Protocol, runtime_checkable

from deskdojo.core.actions import (ACTION_TYPES, MAX_ELEMENT_ID, POINTER_KINDS, TERMINAL_KINDS, Action, Move,
                                   action_points, element_of)
from deskdojo.core.errors import ActionError, DeskdojoError
from deskdojo.perception.resize import (image_to_screen, relative_to_screen, screen_to_image,
                                        screen_to_relative)

MAX_OUTPUT_CHARS = 65536
"""Longer model output is refused unread (a model that rambles this long is broken)."""

MAX_ERROR_CHARS = 500
"""A parse error longer than this is cut (it is shown to the model and stored per step)."""

COORDINATE_MODES = ("absolute", "relative1000")


class FormatError(DeskdojoError):
    """A format cannot express an action (rendering), or was configured wrongly."""


@dataclass(frozen=True, slots=True)
class ParseResult:
    """What a model's answer says: the actions (screen pixels), its reasoning, or why it
    did not parse. ``error`` is written for the model: it names what was wrong and
    shows the expected form. A result has actions or an error, never both."""

    actions: tuple[Action, ...] = ()
    thought: str | None = None
    error: str | None = None

    def __post_init__(self) -> None:
        # An error may quote the offending value; it goes into the next prompt and the
        # step record, so a 64 KB answer must not make a 64 KB error line.
        if self.error is not None and len(self.error) > MAX_ERROR_CHARS:
            cut = self.error[:MAX_ERROR_CHARS]
            object.__setattr__(self, "error", f"{cut}... ({len(self.error)} characters)")

    @property
    def ok(self) -> bool:
        return self.error is None

    @property
    def action(self) -> Action | None:
        """The first action (formats that allow one per answer have at most one)."""
        return self.actions[0] if self.actions else None


@runtime_checkable
class ActionFormat(Protocol):
    """How a model writes actions. ``screen`` and ``image`` are (width, height): the
    model sees an ``image``-sized picture of a ``screen``-sized desktop.

    * ``prompt`` tells a model how to answer (``elements``: the observation lists UI
      elements, so the actions that name one by id are offered too);
    * ``parse`` turns its answer into Actions in screen pixels and never raises on
      model output (problems come back as ``ParseResult.error``);
    * ``render`` is the inverse of ``parse``: what a model should have written for an
      action, with an optional thought (SFT targets); it raises ``FormatError`` for an
      action the format cannot express.
    """

    name: str

    def prompt(self, *, screen: tuple[int, int], image: tuple[int, int], elements: bool = False) -> str: ...
    def parse(self, text: str, *, screen: tuple[int, int], image: tuple[int, int]) -> ParseResult: ...
    def render(self, action: Action, *, screen: tuple[int, int], image: tuple[int, int],
               thought: str | None = None) -> str: ...


class ParseFailure(Exception):
    """Raised inside a parser; ``safe_parse`` turns it into ``ParseResult.error``."""

    def __init__(self, message: str, *, thought: str | None = None):
        super().__init__(message)
        self.message = message
        self.thought = thought


def safe_parse(method: Callable[..., ParseResult]) -> Callable[..., ParseResult]:
    """Wrap a ``parse`` so that nothing a model writes can raise out of it."""

    @functools.wraps(method)
    def wrapper(self: Any, text: Any, *, screen: tuple[int, int], image: tuple[int, int]) -> ParseResult:
        check_size("screen", screen), check_size("image", image)  # a caller's mistake: raises
        if not isinstance(text, str):
            return ParseResult(error=f"the model output must be text, got {type(text).__name__}")
        if len(text) > MAX_OUTPUT_CHARS:
            return ParseResult(error=f"the answer is {len(text)} characters; at most "
                                     f"{MAX_OUTPUT_CHARS} are read. {self.expected_form()}")
        try:
            return method(self, text, screen=screen, image=image)
        except ParseFailure as exc:
            return ParseResult(thought=exc.thought, error=exc.message)
        except ActionError as exc:
            return ParseResult(error=f"{exc}. {self.expected_form()}")
        except (RecursionError, MemoryError, ValueError, TypeError, OverflowError) as exc:
            return ParseResult(error=f"the answer could not be read ({type(exc).__name__}: {exc}). "
                                     f"{self.expected_form()}")
        except Exception as exc:  # a parser bug must not end a rollout: it becomes an invalid step
            return ParseResult(error=f"deskdojo's {self.name} parser failed on this answer "
                                     f"({type(exc).__name__}: {exc}). {self.expected_form()}")

    return wrapper


# --- coordinates -----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class CoordinateSpace:
    """How a format's numbers become screen pixels.

    ``absolute``: pixels of the image the model saw (mapped to the screen by scale,
    rounded, not clamped: an off-screen point is the sandbox's to refuse);
    ``relative1000``: 0..1000 across each side of the screen (rounded and clamped).
    """

    mode: str = "absolute"

    def __post_init__(self) -> None:
        if self.mode not in COORDINATE_MODES:
            raise FormatError(f"coordinates must be one of {', '.join(COORDINATE_MODES)}, got {self.mode!r}")

    def to_screen(self, x: float, y: float, *, screen: tuple[int, int],
                  image: tuple[int, int], what: str = "point") -> tuple[int, int]:
        for value in (x, y):
            if value != value or value in (float("inf"), float("-inf")):
                raise ParseFailure(f"{what}: coordinates must be finite numbers, got ({x}, {y})")
        if self.mode == "relative1000":
            if not (0 <= x <= 1000 and 0 <= y <= 1000):
                raise ParseFailure(f"{what} ({x:g}, {y:g}) is outside 0..1000: coordinates are "
                                   "relative, 0 at the left/top edge and 1000 at the right/bottom")
            return relative_to_screen(x, y, screen)
        if abs(x) > 1e6 or abs(y) > 1e6:
            raise ParseFailure(f"{what} ({x:g}, {y:g}) is far outside the "
                               f"{image[0]}x{image[1]} screenshot")
        return image_to_screen(x, y, image, screen)

    def from_screen(self, x: int, y: int, *, screen: tuple[int, int],
                    image: tuple[int, int]) -> tuple[int, int]:
        if self.mode == "relative1000":
            return screen_to_relative(x, y, screen)
        return screen_to_image(x, y, image, screen)

    def describe(self, image: tuple[int, int]) -> str:
        if self.mode == "relative1000":
            return ("Coordinates are relative: x and y run from 0 (left/top edge) to 1000 "
                    "(right/bottom edge) whatever the screenshot's size.")
        return (f"Coordinates are pixels of the {image[0]}x{image[1]} screenshot: x from 0 "
                f"(left) to {image[0] - 1}, y from 0 (top) to {image[1] - 1}.")


def check_size(name: str, size: Any) -> tuple[int, int]:
    """A (width, height) pair of positive ints, or a FormatError naming ``name``."""
    try:
        width, height = size
    except (TypeError, ValueError):
        raise FormatError(f"{name} must be (width, height), got {size!r}") from None
    if not all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in (width, height)):
        raise FormatError(f"{name} must be two positive integers, got {size!r}")
    return width, height


# --- elements ----------------------------------------------------------------------

ELEMENT_FIELD = "element"
"""The Action field that names an element of the observation's listing by id."""


def element_kinds() -> tuple[str, ...]:
    """The action kinds that can name an element (click, scroll, type)."""
    return tuple(kind for kind, cls in ACTION_TYPES.items()
                 if any(f.name == ELEMENT_FIELD for f in dataclasses.fields(cls)))


def names_element(action: Action) -> bool:
    """Whether ``action`` names an element; such an action is written by its element (the
    point, when the sandbox resolved one, is where the element was: not the model's to say)."""
    return element_of(action) is not None


def element_id(value: Any, label: str) -> int:
    """An element id as a model wrote it, or a ParseFailure that says what an id is."""
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise ParseFailure(f"{label}: an element is named by its id, a whole number from the element "
                           f"list, got {shorten(repr(value), 40)}")
    text = str(value).strip()
    if isinstance(value, float):
        text = str(int(value)) if value.is_integer() else text
    if not (text.isascii() and text.isdigit()) or len(text) > 6 or int(text) > MAX_ELEMENT_ID:
        raise ParseFailure(f"{label}: {shorten(text, 40)!r} is not an element id; ids are the whole "
                           f"numbers 0..{MAX_ELEMENT_ID} of the element list")
    return int(text)


def no_element(action: Action, format_name: str) -> None:
    """Refuse to render an action that names an element in a format that cannot say so."""
    if names_element(action) and not action_points(action):
        raise FormatError(f"the {format_name} format cannot name an element ({action.kind} of element "
                          f"{action.element}); resolve it to a point first")


# --- the schema, as fields -------------------------------------------------------


@dataclass(frozen=True, slots=True)
class FieldSpec:
    """One field of one Action class, as formats see it."""

    name: str
    kind: str  # "int" | "optional_int" | "float" | "str" | "optional_str" | "keys"
    default: Any  # dataclasses.MISSING when required
    axis: str | None  # "x" / "y" for screen coordinates, else None

    @property
    def required(self) -> bool:
        return self.default is dataclasses.MISSING


def _field_kind(annotation: Any) -> str:
    text = annotation if isinstance(annotation, str) else getattr(annotation, "__name__", str(annotation))
    text = text.replace(" ", "")
    if text.startswith("tuple[str"):
        return "keys"
    if text in ("str|None", "Optional[str]", "None|str"):
        return "optional_str"
    if text in ("int|None", "Optional[int]", "None|int"):
        return "optional_int"  # a point that may be left out for an element, or an element id
    if text in ("int", "float", "str"):
        return text
    raise FormatError(f"action field type {annotation!r} has no format mapping yet: "
                      "teach deskdojo/agent/formats/base.py about it")


def coordinate_axis(field_name: str) -> str | None:
    """``x``/``to_x`` are horizontal screen coordinates, ``y``/``to_y`` vertical."""
    for axis in ("x", "y"):
        if field_name == axis or field_name.endswith("_" + axis):
            return axis
    return None


@functools.cache
def action_fields(kind: str) -> tuple[FieldSpec, ...]:
    """The fields of the Action class tagged ``kind``, in declaration order."""
    cls = ACTION_TYPES[kind]
    specs = []
    for f in dataclasses.fields(cls):
        field_kind = _field_kind(f.type)
        axis = coordinate_axis(f.name) if field_kind in ("int", "optional_int") else None
        specs.append(FieldSpec(f.name, field_kind, f.default, axis))
    return tuple(specs)


def action_summary(kind: str) -> str:
    """The first line of an Action class's docstring (what the action does)."""
    doc = (ACTION_TYPES[kind].__doc__ or "").strip()
    line = " ".join(doc.split("\n\n")[0].split()) if doc else kind
    if ", or " in line:  # "..., or at the centre of ``element``": the element form is offered on its own line
        line = line.split(", or ")[0] + "."
    line = re.sub(r"\s*\(``.*?``\)", "", line)  # code samples in the schema's own syntax
    return line.replace("``", "")


# --- action lists and text ----------------------------------------------------------------

_WORD = re.compile(r"\S+")
_LABEL = re.compile(r"^\s*(thought|reasoning|reflection|action_summary)\s*:\s*", re.IGNORECASE)


def clean_thought(text: str) -> str | None:
    """Strip a ``Thought:``-style label and whitespace; None when nothing is left."""
    stripped = _LABEL.sub("", re.sub(r"</?think>", "", text).strip(), count=1).strip()
    return stripped or None


def split_action_line(text: str) -> tuple[str | None, str | None, int]:
    """Split ``Thought: ...\\nAction: ...`` into (thought, action text, count of
    ``Action:`` labels). The action text is None when there is no ``Action:`` label."""
    matches = list(re.finditer(r"(?im)^[ \t]*action[ \t]*:[ \t]*", text))
    if not matches:
        return clean_thought(text), None, 0
    first = matches[0]
    thought = clean_thought(text[:first.start()])
    return thought, text[first.end():], len(matches)


def split_keys(text: str) -> tuple[str, ...]:
    """``"ctrl+s"`` -> ("ctrl", "s"); a ``+`` key is written ``"ctrl++"`` or ``"+"``."""
    if text.count("+") > 32:  # a chord of at most 5 keys needs far fewer: don't loop over 64 KB of them
        raise ParseFailure(f"key: {shorten(text)!r} joins too many keys; a chord has at most 5, as in \"ctrl+s\"")
    parts = text.split("+")
    keys: list[str] = []
    i = 0
    while i < len(parts):
        part = parts[i].strip()
        if part:
            keys.append(part)
            i += 1
        elif i + 1 < len(parts) and not parts[i + 1].strip():
            keys.append("+")
            i += 2
        else:
            raise ParseFailure(f'key: {text!r} has an empty key name; join keys with "+" as in "ctrl+s"')
    return tuple(keys)


def merge_moves(actions: list[Action]) -> list[Action]:
    """Drop a Move that the next pointer action starts from anyway (``moveTo`` then
    ``click()`` is one click; ``mouse_move`` then ``left_click_drag`` is one drag)."""
    merged: list[Action] = []
    for action in actions:
        if (merged and isinstance(merged[-1], Move) and action.kind in POINTER_KINDS
                and action_points(action)[:1] == [(merged[-1].x, merged[-1].y)]):  # [] for an element
            merged.pop()
        merged.append(action)
    return merged


def until_terminal(actions: list[Action]) -> list[Action]:
    """Actions up to and including the first done/fail: nothing after it ever runs."""
    for i, action in enumerate(actions):
        if action.kind in TERMINAL_KINDS:
            return actions[:i + 1]
    return actions


def shorten(text: str, limit: int = 80) -> str:
    """One line of at most ``limit`` characters, for quoting model output in errors."""
    words: list[str] = []
    length = -1
    for match in _WORD.finditer(text):  # only the first words: the text may be 64 KB of them
        words.append(match.group()[:limit])
        length += 1 + match.end() - match.start()
        if length > limit:
            break
    one_line = " ".join(words)
    return one_line if length <= limit else one_line[:limit - 3] + "..."
