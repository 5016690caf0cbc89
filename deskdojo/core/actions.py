"""The one action schema: frozen dataclasses with a ``kind`` tag, in screen pixels.

Every view of an action (model formats, the guest executor, the demo format, the
panel's overlays) is derived from these classes. This module is standard library
only because it is also copied into the sandbox image and imported by the guest.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any, ClassVar, Mapping, Union

from deskdojo.core.errors import ActionError

ACTION_SCHEMA_VERSION = 1

BUTTONS = ("left", "right", "middle")
MAX_TYPE_CHARS = 4096
MAX_WAIT_S = 60.0
MAX_SCROLL_CLICKS = 50
MAX_ELEMENT_ID = 100_000

_NAMED_KEYS = frozenset(
    """
    enter return tab space backspace delete insert escape esc home end pageup pagedown
    up down left right ctrl shift alt super win meta cmd capslock numlock scrolllock
    printscreen pause menu ctrlleft ctrlright shiftleft shiftright altleft altright
    minus plus equal comma period slash backslash semicolon apostrophe quote grave
    bracketleft bracketright
    """.split()
) | frozenset(f"f{i}" for i in range(1, 25))
_KEY_ALIASES = {"control": "ctrl", "cmd": "super", "win": "super", "meta": "super",
                "return": "enter", "esc": "escape", "del": "delete", "pgup": "pageup",
                "pgdn": "pagedown", "option": "alt"}


def normalize_key(name: str) -> str:
    """Lower-case a key name and map common aliases (``Control`` -> ``ctrl``)."""
    key = name.strip()
    if len(key) == 1:
        return key.lower() if key.isalpha() else key
    key = key.lower()
    return _KEY_ALIASES.get(key, key)


def is_known_key(name: str) -> bool:
    """True for a single printable character or a named key such as ``enter``."""
    return (len(name) == 1 and name.isprintable()) or name in _NAMED_KEYS


# --- validation helpers --------------------------------------------------------


def _check_int(kind: str, field: str, value: Any, *, low: int | None = None,
               high: int | None = None) -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ActionError(f"{kind}.{field} must be an integer, got {value!r}")
    if low is not None and value < low:
        raise ActionError(f"{kind}.{field} must be >= {low}, got {value}")
    if high is not None and value > high:
        raise ActionError(f"{kind}.{field} must be <= {high}, got {value}")


def _check_str(kind: str, field: str, value: Any, *, max_len: int | None = None,
               optional: bool = False) -> None:
    if optional and value is None:
        return
    if not isinstance(value, str):
        raise ActionError(f"{kind}.{field} must be a string, got {value!r}")
    if max_len is not None and len(value) > max_len:
        raise ActionError(f"{kind}.{field} is {len(value)} characters; the limit is {max_len}")


def _check_button(kind: str, value: Any) -> None:
    if value not in BUTTONS:
        raise ActionError(f"{kind}.button must be one of {', '.join(BUTTONS)}, got {value!r}")


# --- the actions ---------------------------------------------------------------


def _check_target(kind: str, action: Any, *, point_optional: bool = False) -> None:
    """A pointer target is (x, y), an element id, or both (an element resolved to its centre)."""
    if action.element is not None:
        _check_int(kind, "element", action.element, low=0, high=MAX_ELEMENT_ID)
    has_x, has_y = action.x is not None, action.y is not None
    if has_x != has_y:
        raise ActionError(f"{kind} needs both x and y, or neither (with an element)")
    if has_x:
        _check_int(kind, "x", action.x)
        _check_int(kind, "y", action.y)
    elif action.element is None and not point_optional:
        raise ActionError(f"{kind} needs x and y, or an element id")


@dataclass(frozen=True, slots=True)
class Click:
    """Press and release a mouse button ``count`` times at (x, y), or at the centre of
    ``element`` (an id from the observation's element listing), resolved when it acts."""

    kind: ClassVar[str] = "click"
    x: int | None = None
    y: int | None = None
    button: str = "left"
    count: int = 1
    element: int | None = None

    def __post_init__(self) -> None:
        _check_target("click", self)
        _check_button("click", self.button)
        _check_int("click", "count", self.count, low=1, high=3)


@dataclass(frozen=True, slots=True)
class Move:
    """Move the pointer to (x, y) without pressing anything (hover)."""

    kind: ClassVar[str] = "move"
    x: int
    y: int

    def __post_init__(self) -> None:
        _check_int("move", "x", self.x)
        _check_int("move", "y", self.y)


@dataclass(frozen=True, slots=True)
class Drag:
    """Press at (x, y), move to (to_x, to_y), release."""

    kind: ClassVar[str] = "drag"
    x: int
    y: int
    to_x: int
    to_y: int
    button: str = "left"

    def __post_init__(self) -> None:
        for name in ("x", "y", "to_x", "to_y"):
            _check_int("drag", name, getattr(self, name))
        _check_button("drag", self.button)


@dataclass(frozen=True, slots=True)
class Scroll:
    """Scroll by wheel clicks at (x, y); positive ``dy`` scrolls down, ``dx`` right.

    ``element`` in place of (x, y) turns the wheel at that element's centre, resolved when
    it acts: a small model names a list far more easily than a point inside it."""

    kind: ClassVar[str] = "scroll"
    x: int | None = None
    y: int | None = None
    dx: int = 0
    dy: int = 0
    element: int | None = None

    def __post_init__(self) -> None:
        _check_target("scroll", self)
        _check_int("scroll", "dx", self.dx, low=-MAX_SCROLL_CLICKS, high=MAX_SCROLL_CLICKS)
        _check_int("scroll", "dy", self.dy, low=-MAX_SCROLL_CLICKS, high=MAX_SCROLL_CLICKS)
        if self.dx == 0 and self.dy == 0:
            raise ActionError("scroll needs a non-zero dx or dy")


@dataclass(frozen=True, slots=True)
class Type:
    """Type text into the focused widget, or into ``element`` (clicked first to focus it)."""

    kind: ClassVar[str] = "type"
    text: str
    element: int | None = None  # click this element first (to focus it), then type

    def __post_init__(self) -> None:
        _check_str("type", "text", self.text, max_len=MAX_TYPE_CHARS)
        if not self.text:
            raise ActionError("type.text must not be empty")
        if self.element is not None:
            _check_int("type", "element", self.element, low=0, high=MAX_ELEMENT_ID)


@dataclass(frozen=True, slots=True)
class Key:
    """Press a key or a chord (``("ctrl", "s")``): all down in order, then all up."""

    kind: ClassVar[str] = "key"
    keys: tuple[str, ...]

    def __post_init__(self) -> None:
        keys = self.keys
        if isinstance(keys, str):
            keys = tuple(k for k in keys.replace(" ", "+").split("+") if k)
        if not isinstance(keys, (tuple, list)) or not keys:
            raise ActionError(f"key.keys must be a non-empty list of key names, got {self.keys!r}")
        normalized = []
        for key in keys:
            if not isinstance(key, str) or not key:
                raise ActionError(f"key.keys entries must be key names, got {key!r}")
            name = normalize_key(key)
            if not is_known_key(name):
                raise ActionError(f"key.keys: unknown key {key!r} (use names like "
                                  f"'enter', 'ctrl', 'f5' or one character)")
            normalized.append(name)
        if len(normalized) > 5:
            raise ActionError(f"key.keys: a chord has at most 5 keys, got {len(normalized)}")
        object.__setattr__(self, "keys", tuple(normalized))


@dataclass(frozen=True, slots=True)
class Wait:
    """Do nothing for a while (let an app finish opening)."""

    kind: ClassVar[str] = "wait"
    seconds: float = 1.0

    def __post_init__(self) -> None:
        value = self.seconds
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise ActionError(f"wait.seconds must be a number, got {value!r}")
        if not 0 <= value <= MAX_WAIT_S:
            raise ActionError(f"wait.seconds must be within 0..{MAX_WAIT_S:g}, got {value}")
        object.__setattr__(self, "seconds", float(value))


@dataclass(frozen=True, slots=True)
class Done:
    """The agent says the task is finished, optionally with an answer."""

    kind: ClassVar[str] = "done"
    answer: str | None = None

    def __post_init__(self) -> None:
        _check_str("done", "answer", self.answer, max_len=MAX_TYPE_CHARS, optional=True)


@dataclass(frozen=True, slots=True)
class Fail:
    """The agent gives up, saying why."""

    kind: ClassVar[str] = "fail"
    reason: str = ""

    def __post_init__(self) -> None:
        _check_str("fail", "reason", self.reason, max_len=MAX_TYPE_CHARS)


Action = Union[Click, Move, Drag, Scroll, Type, Key, Wait, Done, Fail]
ACTION_TYPES: dict[str, type] = {
    cls.kind: cls for cls in (Click, Move, Drag, Scroll, Type, Key, Wait, Done, Fail)
}
TERMINAL_KINDS = frozenset({"done", "fail"})
POINTER_KINDS = frozenset({"click", "move", "drag", "scroll"})


def is_action(value: Any) -> bool:
    return type(value) in ACTION_TYPES.values()


def action_to_dict(action: Action) -> dict[str, Any]:
    """The JSON form: ``{"kind": "click", "x": 10, "y": 20, ...}``; an unset element is left out."""
    if not is_action(action):
        raise ActionError(f"not an action: {action!r}")
    data: dict[str, Any] = {"kind": action.kind}
    for f in dataclasses.fields(action):
        value = getattr(action, f.name)
        if f.name in ("element", "x", "y") and value is None:
            continue  # unset targets are left out: older records stay byte-identical
        data[f.name] = list(value) if isinstance(value, tuple) else value
    return data


def action_from_dict(data: Mapping[str, Any]) -> Action:
    """Parse the JSON form, naming the offending field on any problem."""
    if not isinstance(data, Mapping):
        raise ActionError(f"an action must be a JSON object, got {type(data).__name__}")
    kind = data.get("kind")
    if kind not in ACTION_TYPES:
        raise ActionError(f"action.kind {kind!r} is not one of: {', '.join(ACTION_TYPES)}")
    cls = ACTION_TYPES[kind]
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - set(fields) - {"kind"})
    if unknown:
        raise ActionError(f"{kind} has no field {unknown[0]!r} (fields: {', '.join(fields) or 'none'})")
    missing = [name for name, f in fields.items()
               if f.default is dataclasses.MISSING and name not in data]
    if missing:
        raise ActionError(f"{kind}.{missing[0]} is required")
    kwargs = {name: data[name] for name in fields if name in data}
    if "keys" in kwargs and isinstance(kwargs["keys"], list):
        kwargs["keys"] = tuple(kwargs["keys"])
    return cls(**kwargs)


def element_of(action: Action) -> int | None:
    """The element id an action names (clicks, scrolls and typing can name one), or None."""
    return action.element if isinstance(action, (Click, Scroll, Type)) else None


def by_point(action: Action) -> Action:
    """An action that has its point as well as an element, without the element: what a
    record replays or exports, since the element's id belongs to the recorded listing."""
    if element_of(action) is not None and action_points(action):
        return dataclasses.replace(action, element=None)
    return action


def action_points(action: Action) -> list[tuple[int, int]]:
    """Screen points an action touches (for bounds checks and overlays)."""
    if isinstance(action, Drag):
        return [(action.x, action.y), (action.to_x, action.to_y)]
    if isinstance(action, (Click, Scroll)) and action.x is None:
        return []  # an element not yet resolved to a point
    if isinstance(action, (Click, Move, Scroll)):
        return [(action.x, action.y)]
    return []


def off_screen_error(action: Action, width: int, height: int) -> str | None:
    """Why the action's coordinates fall outside a width x height screen, or None."""
    for x, y in action_points(action):
        if not (0 <= x < width and 0 <= y < height):
            return (f"{action.kind} at ({x}, {y}) is off the {width}x{height} screen; "
                    f"x must be within 0..{width - 1} and y within 0..{height - 1}")
    return None


def describe(action: Action) -> str:
    """A short human-readable line (history text, logs, overlays)."""
    args = ", ".join(f"{k}={v!r}" for k, v in action_to_dict(action).items() if k != "kind")
    return f"{action.kind}({args})"
