"""The ``grid`` format: made for a small model learning from scratch. Coordinates are
single tokens naming a cell of a coarse grid over the SCREEN (16 px cells by default:
``<x0>..<x63>`` and ``<y0>..<y47>`` on 1024x768), verbs are short, one action a line::

    click <x12> <y30>
    click <x12> <y30> right 2        (right button, double click)
    move <x3> <y4>
    drag <x1> <y2> <x40> <y30>
    scroll <x32> <y24> down 3        (up/down/left/right, wheel clicks; two axes: "down 3 left 1")
    type "hello\\nworld"             (JSON string)
    key ctrl+s
    wait 2.5
    done                              done "42"
    fail "no such file"
    click #12                         (element 12 of the observation's element list)
    type #12 "hello"                  (click element 12 to focus it, then type)
    scroll #12 down 3                 (turn the wheel at the centre of element 12)

A point parses to the centre of its cell (clamped to the screen), so render -> parse
snaps coordinates to cell centres. An optional ``Thought: ...`` line may come before
an ``Action: ...`` line. The grid is of the screen, not of the image the model saw,
so the tokens mean the same whatever the pixel budget.
"""

from __future__ import annotations

import json
import re

from deskdojo.agent.formats.base import (FormatError, ParseFailure, ParseResult, check_size, element_id,
                                         names_element, safe_parse, shorten, split_action_line, split_keys)
from deskdojo.core.actions import (BUTTONS, MAX_SCROLL_CLICKS, Action, Click, Done, Drag, Fail, Key, Move,
                                   Scroll, Type, Wait)

DEFAULT_CELL = 16
"""Cell side in screen pixels."""

_POINT = re.compile(r"<x(\d+)>\s*<y(\d+)>")
_ELEMENT = re.compile(r"#(\S*)")
_COUNT_WORDS = {"1": 1, "2": 2, "3": 3}
_DIRECTIONS = {"down": (0, 1), "up": (0, -1), "right": (1, 0), "left": (-1, 0)}
VERBS = ("click", "move", "drag", "scroll", "type", "key", "wait", "done", "fail")
_ELEMENT_FORMS = {"click": "click #12 [button] [count]", "type": 'type #12 "text"', "scroll": "scroll #12 down 3"}
"""What a verb that names an element looks like, for the errors of one that names it wrongly."""


def grid_shape(screen: tuple[int, int], cell: int = DEFAULT_CELL) -> tuple[int, int]:
    """(columns, rows) of the grid over a ``screen`` (a partial last cell counts)."""
    width, height = screen
    return -(-width // cell), -(-height // cell)


class GridFormat:
    """The grid format (see the module docstring); ``cell`` is the cell side in pixels."""

    max_new_tokens = 24
    """Enough for any click, key or short typed text; what a policy generates at most by default."""

    def __init__(self, *, cell: int = DEFAULT_CELL, name: str = "grid"):
        if not isinstance(cell, int) or cell < 2:
            raise FormatError(f"grid cell must be an integer of at least 2 pixels, got {cell!r}")
        self.cell = cell
        self.name = name

    # --- the text that tells a model how to answer ---------------------------------

    def expected_form(self) -> str:
        return 'Answer with one action line such as: click <x12> <y30>'

    def prompt(self, *, screen: tuple[int, int], image: tuple[int, int], elements: bool = False) -> str:
        check_size("screen", screen), check_size("image", image)
        columns, rows = grid_shape(screen, self.cell)
        # scroll #id parses too, but the line stays the one the shipped reader was pretrained
        # with: a word more here changes every tiny prompt, and every figure measured on it
        by_element = ' | click #id | type #id "text" (an element of the list)' if elements else ""
        # short on purpose: a model learning from scratch gains nothing from a long manual,
        # and every prompt token is paid for at every step (grid is the tiny preset's format)
        return (f"{screen[0]}x{screen[1]} screen as {image[0]}x{image[1]}, {self.cell} px cells "
                f"<x0>..<x{columns - 1}> <y0>..<y{rows - 1}>. One line: click <x> <y> [button] [count] | "
                f"move | drag <x> <y> <x> <y> | scroll <x> <y> down N | type \"text\" | key ctrl+s | "
                f"wait S | done | fail{by_element}")

    # --- model text -> actions ----------------------------------------------------

    @safe_parse
    def parse(self, text: str, *, screen: tuple[int, int], image: tuple[int, int]) -> ParseResult:
        thought, action_text, count = split_action_line(text)
        if count > 1:
            raise ParseFailure(f"the answer has {count} 'Action:' lines; give exactly one action. "
                               f"{self.expected_form()}", thought=thought)
        if action_text is None:
            thought, action_text = None, text
        lines = [line.strip() for line in action_text.strip().split("\n") if line.strip()]
        if not lines:
            raise ParseFailure(f"the answer is empty. {self.expected_form()}", thought=thought)
        if len(lines) > 1:
            raise ParseFailure(f"the answer has {len(lines)} lines; give exactly one action line. "
                               f"{self.expected_form()}", thought=thought)
        try:
            action = self._action(lines[0], screen=screen)
        except ParseFailure as exc:
            raise ParseFailure(exc.message, thought=thought) from None
        return ParseResult(actions=(action,), thought=thought)

    def _action(self, line: str, *, screen: tuple[int, int]) -> Action:
        verb, _, rest = line.partition(" ")
        rest = rest.strip()
        if verb not in VERBS:
            raise ParseFailure(f"{shorten(line)!r} does not start with an action verb "
                               f"({', '.join(VERBS)}). {self.expected_form()}")
        if verb in ("click", "type", "scroll") and rest.startswith("#"):
            return self._element_action(verb, rest)
        if verb in ("click", "move", "drag", "scroll"):
            points, words = self._points(verb, rest, screen=screen)
            needed = 2 if verb == "drag" else 1
            if len(points) != needed:
                raise ParseFailure(f"{verb} needs {needed} point{'s' * (needed > 1)} written <xN> <yN>, "
                                   f"got {len(points)}{' or more' * (len(points) > 2)} in {shorten(line)!r}")
            (x, y), *more = points
            if verb == "click":
                return self._click(x, y, words)
            if verb == "move":
                self._no_words(verb, words)
                return Move(x, y)
            if verb == "drag":
                button = words.pop(0) if words and words[0] in BUTTONS else "left"
                self._no_words(verb, words)
                return Drag(x, y, more[0][0], more[0][1], button=button)
            return self._scroll(x, y, words)
        if verb == "type":
            return Type(self._string(verb, rest, required=True))
        if verb == "key":
            if not rest or " " in rest.strip():
                raise ParseFailure(f'key needs key names joined by "+", like key ctrl+s, got {shorten(line)!r}')
            return Key(split_keys(rest))
        if verb == "wait":
            try:
                seconds = float(rest) if rest else 1.0
            except ValueError:
                raise ParseFailure(f"wait takes a number of seconds, like wait 2, got {rest!r}") from None
            return Wait(seconds)
        if verb == "done":
            return Done(self._string(verb, rest, required=False))
        return Fail(self._string(verb, rest, required=False) or "")

    def _points(self, verb: str, rest: str, *, screen: tuple[int, int]) -> tuple[list[tuple[int, int]], list[str]]:
        columns, rows = grid_shape(screen, self.cell)
        points = []
        position = 0
        for match in _POINT.finditer(rest):
            if rest[position:match.start()].strip() or len(points) > 2:
                break  # no verb takes a third point: the count is wrong already, read no more of them
            digits = match.group(1), match.group(2)
            # int() is slow on long digit runs (and refuses 4,300 digits and more): such a cell is off the grid
            column, row = (int(d) if len(d.lstrip("0")) <= 9 else 10 ** 9 for d in digits)
            if column >= columns or row >= rows:
                shown = [d if len(d) <= 12 else d[:9] + "..." for d in digits]
                raise ParseFailure(f"{verb}: cell <x{shown[0]}> <y{shown[1]}> is off the grid; columns are "
                                   f"<x0>..<x{columns - 1}> and rows <y0>..<y{rows - 1}>")
            points.append(self.cell_centre(column, row, screen=screen))
            position = match.end()
        return points, rest[position:].split()

    def _element_action(self, verb: str, rest: str) -> Action:
        """``click #12 [button] [count]``, ``type #12 "text"`` or ``scroll #12 down 3``."""
        match = _ELEMENT.match(rest)
        assert match is not None  # rest starts with "#"
        try:
            number = element_id(match.group(1), f"{verb} #{shorten(match.group(1), 20)}")
        except ParseFailure as exc:
            raise ParseFailure(f"{exc.message}; write {_ELEMENT_FORMS[verb]}") from None
        tail = rest[match.end():].strip()
        if verb == "type":
            return Type(self._string(verb, tail, required=True), element=number)
        if verb == "scroll":
            return self._scroll(None, None, tail.split(), element=number)
        return self._click(None, None, tail.split(), element=number)

    def _click(self, x: int | None, y: int | None, words: list[str], *, element: int | None = None) -> Click:
        button, count = "left", 1
        if words and words[0] in BUTTONS:
            button = words.pop(0)
        if words and words[0] in _COUNT_WORDS:
            count = _COUNT_WORDS[words.pop(0)]
        if element is not None and words:
            raise ParseFailure(f"click #{element}: unexpected {' '.join(words)!r} after the element; "
                               f"write click #{element} [button] [count]")
        self._no_words("click", words)
        return Click(x, y, button=button, count=count, element=element)

    def _scroll(self, x: int | None, y: int | None, words: list[str], *, element: int | None = None) -> Scroll:
        dx = dy = 0
        target = "<x3> <y4>" if element is None else f"#{element}"
        if not words:
            raise ParseFailure(f"scroll needs a direction and wheel clicks, like scroll {target} down 3")
        for i in range(0, len(words), 2):  # by index: pop(0) made this quadratic in the word count
            direction, amount = words[i], words[i + 1] if i + 1 < len(words) else ""
            if direction not in _DIRECTIONS or not amount.isdigit() or len(amount) > 18:
                raise ParseFailure(f"scroll: write a direction (up, down, left, right) then wheel clicks "
                                   f"1..{MAX_SCROLL_CLICKS}, like scroll {target} down 3")
            clicks = int(amount)
            sx, sy = _DIRECTIONS[direction]
            dx, dy = dx + sx * clicks, dy + sy * clicks
        return Scroll(x, y, dx=dx, dy=dy, element=element)

    @staticmethod
    def _no_words(verb: str, words: list[str]) -> None:
        if words:
            raise ParseFailure(f"{verb}: unexpected {' '.join(words)!r} after the point")

    @staticmethod
    def _string(verb: str, rest: str, *, required: bool) -> str | None:
        if not rest:
            if required:
                raise ParseFailure(f'{verb} needs a double-quoted string, like {verb} "hello"')
            return None
        if not rest.startswith('"'):
            raise ParseFailure(f'{verb}: the text must be double-quoted, like {verb} "hello", got {shorten(rest)!r}')
        try:
            value, end = json.JSONDecoder().raw_decode(rest)
        except json.JSONDecodeError as exc:
            raise ParseFailure(f"{verb}: the quoted text is not closed or has a bad escape ({exc.msg})") from None
        if rest[end:].strip():
            raise ParseFailure(f"{verb}: unexpected {shorten(rest[end:].strip())!r} after the quoted text")
        if not isinstance(value, str):
            raise ParseFailure(f'{verb} needs a double-quoted string, like {verb} "hello"')
        return value

    # --- coordinates --------------------------------------------------------------

    def cell_of(self, x: int, y: int, *, screen: tuple[int, int]) -> tuple[int, int]:
        """The (column, row) holding screen pixel (x, y); FormatError when off screen."""
        width, height = screen
        if not (0 <= x < width and 0 <= y < height):
            raise FormatError(f"({x}, {y}) is off the {width}x{height} screen: the grid format "
                              "cannot write it")
        return x // self.cell, y // self.cell

    def cell_centre(self, column: int, row: int, *, screen: tuple[int, int]) -> tuple[int, int]:
        """The screen pixel a cell stands for: its centre, clamped to the screen."""
        width, height = screen
        return (min(column * self.cell + self.cell // 2, width - 1),
                min(row * self.cell + self.cell // 2, height - 1))

    def snap(self, x: int, y: int, *, screen: tuple[int, int]) -> tuple[int, int]:
        """Where a screen point lands after render -> parse."""
        return self.cell_centre(*self.cell_of(x, y, screen=screen), screen=screen)

    # --- actions -> model text ----------------------------------------------------

    def _point_text(self, x: int, y: int, screen: tuple[int, int]) -> str:
        column, row = self.cell_of(x, y, screen=screen)
        return f"<x{column}> <y{row}>"

    def render(self, action: Action, *, screen: tuple[int, int], image: tuple[int, int],
               thought: str | None = None) -> str:
        check_size("screen", screen), check_size("image", image)
        line = self._render_line(action, screen)
        if thought is None:
            return line
        if any(part.strip().lower().startswith("action:") for part in thought.splitlines()):
            raise FormatError("a thought must not contain an 'Action:' line")
        return f"Thought: {thought.strip()}\nAction: {line}"

    def _render_line(self, action: Action, screen: tuple[int, int]) -> str:
        if isinstance(action, Click):
            words = [] if action.button == "left" else [action.button]
            words += [] if action.count == 1 else [str(action.count)]
            target = f"#{action.element}" if names_element(action) else self._point_text(action.x, action.y, screen)
            return " ".join(["click", target, *words])
        if isinstance(action, Move):
            return f"move {self._point_text(action.x, action.y, screen)}"
        if isinstance(action, Drag):
            button = "" if action.button == "left" else f" {action.button}"
            return (f"drag {self._point_text(action.x, action.y, screen)} "
                    f"{self._point_text(action.to_x, action.to_y, screen)}{button}")
        if isinstance(action, Scroll):
            target = f"#{action.element}" if names_element(action) else self._point_text(action.x, action.y, screen)
            parts = [f"scroll {target}"]
            if action.dy:
                parts.append(f"{'down' if action.dy > 0 else 'up'} {abs(action.dy)}")
            if action.dx:
                parts.append(f"{'right' if action.dx > 0 else 'left'} {abs(action.dx)}")
            return " ".join(parts)
        if isinstance(action, Type):
            target = f"#{action.element} " if names_element(action) else ""
            return f"type {target}{json.dumps(action.text, ensure_ascii=False)}"
        if isinstance(action, Key):
            return "key " + "+".join(action.keys)
        if isinstance(action, Wait):
            return f"wait {int(action.seconds) if action.seconds.is_integer() else action.seconds!r}"
        if isinstance(action, Done):
            return "done" if action.answer is None else f"done {json.dumps(action.answer, ensure_ascii=False)}"
        if isinstance(action, Fail):
            return "fail" if not action.reason else f"fail {json.dumps(action.reason, ensure_ascii=False)}"
        raise FormatError(f"the grid format cannot write {action!r}")
