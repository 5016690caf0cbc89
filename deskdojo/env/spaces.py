"""The environments' observation and action spaces, and the action a sample of them means.

Two action spaces, both ending in the one Action schema:

* ``text``: a model's answer in any registered action format, parsed exactly as the
  policy's answers are (``deskdojo.agent.formats``); an answer that does not parse is
  an invalid step whose error the next observation carries, never an exception.
* ``dict``: the schema as a ``gymnasium.spaces.Dict`` (a kind index and its fields), for
  agents that choose numbers, and for random agents: every sample is a well-formed
  request, and one the schema refuses (a scroll by 0, an unknown key) is an invalid step.

Gymnasium's ``Text`` space accepts only the characters of its charset, and the words on
a desktop are any Unicode, so instructions, element tables and answers use ``AnyText``:
any string up to a length, sampled from printable ASCII.
"""

from __future__ import annotations

import string
from typing import Any, Mapping

import gymnasium as gym
import numpy as np

from deskdojo.core.actions import (ACTION_TYPES, BUTTONS, MAX_ELEMENT_ID, MAX_WAIT_S, Action, Click, Done,
                                   Drag, Fail, Key, Move, Scroll, Type, Wait)
from deskdojo.core.errors import ActionError, ConfigError

ACTION_SPACES = ("text", "dict")
KINDS = tuple(ACTION_TYPES)
"""The ``kind`` index of the dict action space: click, move, drag, scroll, type, key, wait, done, fail."""
KEYS = ("enter", "tab", "escape", "backspace", "delete", "space", "up", "down", "left", "right", "home", "end",
        "pageup", "pagedown", "f1", "f2", "f5", "f10") + tuple(string.ascii_lowercase) + tuple(string.digits)
"""The keys a dict action can press (with any of ``MODIFIERS`` held)."""
MODIFIERS = ("ctrl", "shift", "alt", "super")
MAX_TEXT_CHARS = 4096
"""Longest instruction, element table or text answer an observation or action carries."""
MAX_TABLE_CHARS = 65536
SAMPLE_CHARSET = string.ascii_letters + string.digits + string.punctuation + " "


class AnyText(gym.spaces.Text):
    """A ``Text`` space that contains any ``str`` up to ``max_length`` characters, whatever
    its characters (samples still come from ``charset``)."""

    def __init__(self, max_length: int, *, min_length: int = 0, seed: Any = None):
        super().__init__(max_length, min_length=min_length, charset=SAMPLE_CHARSET, seed=seed)

    def contains(self, x: Any) -> bool:
        return isinstance(x, str) and self.min_length <= len(x) <= self.max_length

    def __repr__(self) -> str:
        return f"AnyText({self.min_length}, {self.max_length})"

    def __eq__(self, other: Any) -> bool:
        return (isinstance(other, AnyText) and other.min_length == self.min_length
                and other.max_length == self.max_length)


def observation_space(screen: tuple[int, int], *, elements: bool) -> gym.spaces.Dict:
    """The screenshot (H, W, 3 uint8), the instruction, the last action's error ("" when
    none) and, when ``elements``, the element table (ids as the sandbox numbers them)."""
    width, height = screen
    spaces: dict[str, gym.Space] = {
        "screenshot": gym.spaces.Box(0, 255, (height, width, 3), np.uint8),
        "instruction": AnyText(MAX_TEXT_CHARS),
        "action_error": AnyText(MAX_TEXT_CHARS),
    }
    if elements:
        spaces["elements"] = AnyText(MAX_TABLE_CHARS)
    return gym.spaces.Dict(spaces)


def action_space(kind: str, screen: tuple[int, int], *, max_elements: int = 400,
                 max_wait_s: float = 2.0) -> gym.Space:
    """The ``text`` or ``dict`` action space for a ``screen`` (width, height)."""
    if kind == "text":
        return AnyText(MAX_TEXT_CHARS, min_length=1)
    if kind != "dict":
        raise ConfigError(f"action_space must be one of {', '.join(ACTION_SPACES)}, got {kind!r}")
    if not 0 < max_wait_s <= MAX_WAIT_S:
        raise ConfigError(f"max_wait_s must be within (0, {MAX_WAIT_S:g}], got {max_wait_s}")
    high = np.array([screen[0] - 1, screen[1] - 1], dtype=np.int64)
    return gym.spaces.Dict({
        "kind": gym.spaces.Discrete(len(KINDS)),
        "point": gym.spaces.Box(np.zeros(2, np.int64), high, dtype=np.int64),
        "to_point": gym.spaces.Box(np.zeros(2, np.int64), high, dtype=np.int64),
        "element": gym.spaces.Discrete(min(max_elements, MAX_ELEMENT_ID) + 1, start=-1),  # -1: use point
        "button": gym.spaces.Discrete(len(BUTTONS)),
        "count": gym.spaces.Discrete(3, start=1),
        "scroll": gym.spaces.Box(-5, 5, (2,), dtype=np.int64),
        "text": AnyText(64, min_length=1),
        "key": gym.spaces.Discrete(len(KEYS)),
        "modifiers": gym.spaces.MultiBinary(len(MODIFIERS)),
        "seconds": gym.spaces.Box(0.0, max_wait_s, (), dtype=np.float32),
    })


def action_from_sample(sample: Mapping[str, Any]) -> Action:
    """The Action a dict-space sample asks for. Raises ``ActionError`` (naming the field)
    for one the schema refuses; the environment makes that an invalid step."""
    try:
        kind = KINDS[int(sample["kind"])]
    except (KeyError, IndexError, TypeError, ValueError):
        raise ActionError(f"a dict action needs 'kind', an index 0..{len(KINDS) - 1} into {KINDS}; "
                          f"got {sample.get('kind') if isinstance(sample, Mapping) else sample!r}") from None

    def field(name: str) -> Any:
        if name not in sample:
            raise ActionError(f"a {kind} action needs the field {name!r}")
        return sample[name]

    def point(name: str = "point") -> tuple[int, int]:
        x, y = (int(v) for v in np.asarray(field(name)).reshape(2))
        return x, y

    def element() -> int | None:
        value = int(sample.get("element", -1))
        return None if value < 0 else value

    if kind == "click":
        target = element()
        x, y = (None, None) if target is not None else point()
        return Click(x=x, y=y, element=target, button=BUTTONS[int(field("button"))], count=int(field("count")))
    if kind == "move":
        return Move(*point())
    if kind == "drag":
        (x, y), (to_x, to_y) = point(), point("to_point")
        return Drag(x, y, to_x, to_y, button=BUTTONS[int(field("button"))])
    if kind == "scroll":
        dx, dy = (int(v) for v in np.asarray(field("scroll")).reshape(2))
        target = element()
        x, y = (None, None) if target is not None else point()
        return Scroll(x=x, y=y, dx=dx, dy=dy, element=target)
    if kind == "type":
        return Type(str(field("text")), element=element())
    if kind == "key":
        held = [name for name, on in zip(MODIFIERS, np.asarray(sample.get("modifiers", np.zeros(4))).reshape(-1))
                if on]
        return Key(tuple(held) + (KEYS[int(field("key"))],))
    if kind == "wait":
        return Wait(float(field("seconds")))
    if kind == "done":
        return Done()
    return Fail("the agent gave up")
