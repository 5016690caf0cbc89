"""UI-TARS (1.0 and 1.5) answers::

    Thought: The search box is at the top.
    Action: click(start_box='(235,512)')

Points come as ``start_box='(x,y)'``, boxes ``'(x1,y1,x2,y2)'`` or ``'[x1, y1, x2, y2]'``
(their centre), ``'<|box_start|>(x,y)<|box_end|>'``, or the newer
``point='<point>x y</point>'``. Several actions may follow one ``Action:`` label
(UI-TARS separates them with a blank line).

Coordinates: UI-TARS-1.5 (Qwen2.5-VL based) writes absolute pixels of the resized
image it saw (``smart_resize``); UI-TARS 1.0 (Qwen2-VL based) writes 0..1000 relative
coordinates. ``UITarsFormat(coordinates="absolute" | "relative1000")``.

Mapping to the one Action schema: ``click``/``left_single`` -> Click, ``left_double`` ->
Click(count=2), ``right_single`` -> Click(button="right"), ``hover`` -> Move,
``drag``/``select`` -> Drag, ``hotkey(key='ctrl c')`` and ``press(key=...)`` -> Key,
``type(content=...)`` -> Type (a trailing ``\\n`` stays in the text: the executor
presses Enter for it), ``scroll(direction=...)`` -> Scroll by ``scroll_clicks`` (5, as
UI-TARS's own pyautogui conversion; UI-TARS gives no amount), ``wait()`` -> Wait(5)
(UI-TARS's "sleep for 5s"), ``finished(content=...)`` -> Done(answer), ``call_user()``
-> Fail. A scroll without a point scrolls at the screen centre.
"""

from __future__ import annotations

import re
from typing import Any

from deskdojo.agent.formats.base import (CoordinateSpace, FormatError, ParseFailure, ParseResult,
                                         check_size, no_element, safe_parse, shorten, split_action_line,
                                         split_keys)
from deskdojo.agent.formats.calls import Call, parse_calls, unescape
from deskdojo.core.actions import (MAX_SCROLL_CLICKS, TERMINAL_KINDS, Action, Click, Done, Drag,
                                   Fail, Key, Move, Scroll, Type, Wait)

UITARS_WAIT_S = 5.0
DEFAULT_SCROLL_CLICKS = 5

_POINT_KEYS = ("point", "start_point", "start_box")
_END_KEYS = ("end_point", "end_box")
_BOX_KEYS = {"point": "start_box", "start_point": "start_box", "end_point": "end_box"}
_TAGS = re.compile(r"<\|box_start\|>|<\|box_end\|>|</?point>|</?bbox>")
_NUMBER = re.compile(r"[-+]?(?:\d+(?:\.\d*)?|\.\d+)")  # one way to match each number: linear
_SEPARATOR = re.compile(r"([,\s]+)")
_KEY_ALIASES = {"arrowleft": "left", "arrowright": "right", "arrowup": "up", "arrowdown": "down"}
_CLICKS = {"click": ("left", 1), "left_single": ("left", 1), "left_double": ("left", 2),
           "right_single": ("right", 1)}
_LENIENT_TEXT = re.compile(r"^\s*(type|finished)\s*\(\s*content\s*=\s*(['\"])(.*)\2\s*\)\s*$", re.DOTALL)
_ACTION_NAMES = ("click", "left_double", "right_single", "drag", "hotkey", "type", "scroll",
                 "wait", "finished", "call_user")


def point_numbers(body: str) -> list[str] | None:
    """The numbers of a point body, or None when it is not one: an optional ``(`` or
    ``[``, numbers parted by whitespace with at most one comma, an optional ``)`` or
    ``]``, whitespace anywhere between.

    A scan rather than one regex: ``^\\s*[(\\[]?\\s*(N(?:\\s*[,\\s]\\s*N)*)...$`` with
    ``N = \\d+\\.?\\d*`` has many ways to split a digit or space run, and backtracked
    through all of them (7 s on 8 KB of digits, exponential on ``11 11 11 ... x``)."""
    text = body.strip()
    if text[:1] in ("(", "["):
        text = text[1:].lstrip()
    if text[-1:] in (")", "]"):
        text = text[:-1].rstrip()
    parts = _SEPARATOR.split(text)  # number, separator, number, ..., number
    numbers, separators = parts[0::2], parts[1::2]
    if any(separator.count(",") > 1 for separator in separators):
        return None
    if not all(_NUMBER.fullmatch(number) for number in numbers):
        return None  # also an empty first or last part: a separator at either end
    return numbers


def parse_point(value: Any, what: str) -> tuple[float, float]:
    """A UI-TARS point or box (any of its spellings) -> (x, y); boxes give their centre."""
    if isinstance(value, (list, tuple)):
        numbers = list(value)
        if not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in numbers):
            raise ParseFailure(f"{what} must hold numbers, got {value!r}")
    elif isinstance(value, str):
        texts = point_numbers(_TAGS.sub("", value))
        if texts is None:
            raise ParseFailure(f"{what}={value!r} is not a point; write '<point>x y</point>' or '(x,y)'")
        numbers = [float(v) for v in texts]
    else:
        raise ParseFailure(f"{what} must be a quoted point like '<point>x y</point>', got {value!r}")
    if len(numbers) == 2:
        return float(numbers[0]), float(numbers[1])
    if len(numbers) == 4:
        x1, y1, x2, y2 = (float(v) for v in numbers)
        return (x1 + x2) / 2, (y1 + y2) / 2
    raise ParseFailure(f"{what}={value!r} has {len(numbers)} numbers; a point has 2 (x y), a box 4")


def _py_quote(text: str) -> str:
    """A single-quoted string with the escapes UI-TARS is taught (\\\\, \\', \\n)."""
    escaped = text.replace("\\", "\\\\").replace("'", "\\'")
    escaped = escaped.replace("\n", "\\n").replace("\r", "\\r").replace("\t", "\\t")
    return f"'{escaped}'"


class UITarsFormat:
    """UI-TARS's ``Thought:/Action:`` format (see the module docstring).

    ``style`` chooses how ``render`` writes points: ``"point"`` (``point='<point>x y</point>'``,
    the default for absolute coordinates) or ``"box"`` (``start_box='(x,y)'``, the default
    for UI-TARS 1.0's relative coordinates). ``parse`` reads both.
    """

    def __init__(self, *, coordinates: str = "absolute", style: str | None = None,
                 scroll_clicks: int = DEFAULT_SCROLL_CLICKS, name: str | None = None):
        self.coordinates = CoordinateSpace(coordinates)
        self.style = style or ("point" if coordinates == "absolute" else "box")
        if self.style not in ("point", "box"):
            raise FormatError(f"style must be 'point' or 'box', got {style!r}")
        if not 1 <= scroll_clicks <= MAX_SCROLL_CLICKS:
            raise FormatError(f"scroll_clicks must be within 1..{MAX_SCROLL_CLICKS}, got {scroll_clicks}")
        self.scroll_clicks = scroll_clicks
        self.name = name or ("uitars" if coordinates == "absolute" else "uitars_v1")

    def expected_form(self) -> str:
        return f"Answer as \"Thought: ...\" then \"Action: {self._example_call()}\""

    def _example_call(self) -> str:
        return "click(point='<point>100 200</point>')" if self.style == "point" else "click(start_box='(100,200)')"

    # --- prompt -------------------------------------------------------------------

    def _pt(self, label: str = "x1 y1", key: str = "point") -> str:
        if self.style == "point":
            return f"{key}='<point>{label}</point>'"
        return f"{_BOX_KEYS[key]}='<|box_start|>({label.replace(' ', ',')})<|box_end|>'"

    def prompt(self, *, screen: tuple[int, int], image: tuple[int, int], elements: bool = False) -> str:
        """UI-TARS has no way to name an element, so ``elements`` changes nothing: it acts by points."""
        check_size("screen", screen), check_size("image", image)
        p = self._pt
        return "\n".join([
            "You are a GUI agent. You are given a task and your action history, with screenshots. "
            "You need to perform the next action to complete the task.",
            "", "## Output Format", "```", "Thought: ...", "Action: ...", "```", "",
            "## Action Space",
            f"click({p()})",
            f"left_double({p()})",
            f"right_single({p()})",
            f"hover({p()})",
            f"drag({p('x1 y1', 'start_point')}, {p('x2 y2', 'end_point')})",
            "hotkey(key='ctrl c') # Split keys with a space and use lowercase. At most 3 keys.",
            "type(content='xxx') # Escape \\' and \\n in content. To submit your input, end content with \\n.",
            f"scroll({p()}, direction='down or up or right or left')",
            f"wait() # Sleep for {UITARS_WAIT_S:g}s and take a screenshot to check for any changes.",
            "finished(content='xxx') # The task is done; content is the answer, if any.",
            "call_user() # The task cannot be done or needs the user's help.",
            "", "## Note", self.coordinates.describe(image),
            "Write a small plan and finally summarize your next action (with its target element) "
            "in one sentence in `Thought` part.",
        ])

    # --- parse --------------------------------------------------------------------

    @safe_parse
    def parse(self, text: str, *, screen: tuple[int, int], image: tuple[int, int]) -> ParseResult:
        thought, action_text, _count = split_action_line(text)
        if action_text is None:
            raise ParseFailure(f"no 'Action:' line. {self.expected_form()}", thought=thought)
        # later "Action:" labels only separate actions
        action_text = re.sub(r"(?im)^[ \t]*action[ \t]*:[ \t]*", "", action_text)
        calls = self._calls(action_text, thought)
        if not calls:
            raise ParseFailure(f"'Action:' is empty. {self.expected_form()}", thought=thought)
        actions: list[Action] = []
        for call in calls:
            try:
                action = self._action(call, screen=screen, image=image)
            except ParseFailure as exc:
                raise ParseFailure(exc.message, thought=thought) from None
            actions.append(action)
            if action.kind in TERMINAL_KINDS:
                break  # the episode ends here; anything after is never run
        return ParseResult(actions=tuple(actions), thought=thought)

    def _calls(self, action_text: str, thought: str | None) -> list[Call]:
        try:
            return parse_calls(action_text)
        except ParseFailure as exc:
            # UI-TARS often leaves quotes in typed text unescaped: type(content='it's')
            lenient = _LENIENT_TEXT.match(action_text)
            if lenient:
                return [Call(lenient.group(1), kwargs={"content": unescape(lenient.group(3))})]
            raise ParseFailure(f"Action {shorten(action_text)!r}: {exc.message}. {self.expected_form()}",
                               thought=thought) from None

    def _point(self, call: Call, keys: tuple[str, ...], *, screen: tuple[int, int],
               image: tuple[int, int], required: bool = True) -> tuple[int, int] | None:
        given = [k for k in keys if k in call.kwargs]
        if not given:
            if call.args and keys == _POINT_KEYS:
                value = call.args[0]
            elif not required:
                return None
            else:
                raise ParseFailure(f"{call.name} needs {keys[0]}; write it as {call.name}({self._pt()})")
        else:
            value = call.kwargs[given[0]]
        what = f"{call.name} {given[0] if given else keys[0]}"
        x, y = parse_point(value, what)
        return self.coordinates.to_screen(x, y, screen=screen, image=image, what=what)

    def _text(self, call: Call, key: str, *, required: bool) -> str | None:
        value = call.kwargs.get(key, call.args[0] if call.args else None)
        if value is None or value == "":
            if required:
                raise ParseFailure(f"{call.name} needs {key}='...'")
            return None
        if not isinstance(value, str):
            raise ParseFailure(f"{call.name} {key} must be a quoted string, got {value!r}")
        return value

    def _action(self, call: Call, *, screen: tuple[int, int], image: tuple[int, int]) -> Action:
        name = call.name
        if name in _CLICKS:
            button, count = _CLICKS[name]
            x, y = self._point(call, _POINT_KEYS, screen=screen, image=image)
            return Click(x, y, button=button, count=count)
        if name in ("hover", "mouse_move"):
            return Move(*self._point(call, _POINT_KEYS, screen=screen, image=image))
        if name in ("drag", "select"):
            x, y = self._point(call, _POINT_KEYS, screen=screen, image=image)
            to = self._point(call, _END_KEYS, screen=screen, image=image, required=False)
            if to is None:
                raise ParseFailure(f"{name} needs an end: {name}({self._pt('x1 y1', 'start_point')}, "
                                   f"{self._pt('x2 y2', 'end_point')})")
            return Drag(x, y, to[0], to[1])
        if name in ("hotkey", "press"):
            keys_text = self._text(call, "key", required=False) or self._text(call, name, required=True)
            names = keys_text.split()
            if len(names) == 1 and "+" in names[0] and names[0] != "+":
                names = list(split_keys(names[0]))  # 'ctrl+c' as well as 'ctrl c'
            keys = tuple(_KEY_ALIASES.get(k.lower(), k) for k in names)
            if not keys:
                raise ParseFailure(f"{name} needs key='...', e.g. hotkey(key='ctrl c')")
            return Key(keys)
        if name == "type":
            return Type(self._text(call, "content", required=True))
        if name == "scroll":
            point = self._point(call, _POINT_KEYS, screen=screen, image=image, required=False)
            x, y = point if point else (screen[0] // 2, screen[1] // 2)
            direction = (self._text(call, "direction", required=True) or "").strip().lower()
            steps = {"down": (0, 1), "up": (0, -1), "right": (1, 0), "left": (-1, 0)}
            if direction not in steps:
                raise ParseFailure(f"scroll direction must be 'down', 'up', 'left' or 'right', got {direction!r}")
            dx, dy = steps[direction]
            return Scroll(x, y, dx=dx * self.scroll_clicks, dy=dy * self.scroll_clicks)
        if name == "wait":
            return Wait(UITARS_WAIT_S)
        if name == "finished":
            return Done(answer=self._text(call, "content", required=False))
        if name == "call_user":
            return Fail(reason="call_user(): the model asked for the user's help")
        raise ParseFailure(f"unknown action {name!r}; use one of: {', '.join(_ACTION_NAMES)}")

    # --- render -------------------------------------------------------------------

    def _render_point(self, key: str, x: int, y: int, *, screen: tuple[int, int],
                      image: tuple[int, int]) -> str:
        ix, iy = self.coordinates.from_screen(x, y, screen=screen, image=image)
        if self.style == "point":
            return f"{key}='<point>{ix} {iy}</point>'"
        return f"{_BOX_KEYS[key]}='({ix},{iy})'"

    def render(self, action: Action, *, screen: tuple[int, int], image: tuple[int, int],
               thought: str | None = None) -> str:
        no_element(action, self.name)  # a resolved one (point and element) is written by its point
        where = {"screen": screen, "image": image}
        if isinstance(action, Click):
            names = {value: key for key, value in _CLICKS.items() if key != "left_single"}
            name = names.get((action.button, action.count))
            if name is None:
                raise FormatError(f"UI-TARS has no {action.button} click with count {action.count}")
            call = f"{name}({self._render_point('point', action.x, action.y, **where)})"
        elif isinstance(action, Move):
            call = f"hover({self._render_point('point', action.x, action.y, **where)})"
        elif isinstance(action, Drag):
            if action.button != "left":
                raise FormatError("UI-TARS drags with the left button only")
            call = (f"drag({self._render_point('start_point', action.x, action.y, **where)}, "
                    f"{self._render_point('end_point', action.to_x, action.to_y, **where)})")
        elif isinstance(action, Scroll):
            if action.dx and action.dy:
                raise FormatError("UI-TARS scrolls in one direction at a time")
            direction = ("down" if action.dy > 0 else "up") if action.dy else ("right" if action.dx > 0 else "left")
            call = f"scroll({self._render_point('point', action.x, action.y, **where)}, direction='{direction}')"
        elif isinstance(action, Type):
            call = f"type(content={_py_quote(action.text)})"
        elif isinstance(action, Key):
            call = f"hotkey(key={_py_quote(' '.join('space' if k == ' ' else k for k in action.keys))})"
        elif isinstance(action, Wait):
            call = "wait()"
        elif isinstance(action, Done):
            call = "finished()" if action.answer is None else f"finished(content={_py_quote(action.answer)})"
        elif isinstance(action, Fail):
            call = "call_user()"
        else:
            raise FormatError(f"not an action: {action!r}")
        head = f"Thought: {thought.strip()}\n" if thought else ""
        return f"{head}Action: {call}"
