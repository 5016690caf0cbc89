"""OSWorld's ``pyautogui`` action space: Python code, read with ``ast`` against a
whitelist and turned into Actions. The code is NEVER executed::

    The dialog is open; I will confirm it.
    ```python
    pyautogui.click(640, 400)
    time.sleep(0.5)
    pyautogui.hotkey('ctrl', 's')
    ```

or one of OSWorld's special answers ```` ```DONE``` ````, ```` ```FAIL``` ````,
```` ```WAIT``` ````. Every statement must be a call of a whitelisted function
(``pyautogui.click/doubleClick/tripleClick/rightClick/middleClick/leftClick/moveTo/
moveRel/dragTo/dragRel/mouseDown/mouseUp/scroll/vscroll/hscroll/typewrite/write/press/
hotkey/keyDown/keyUp``, ``time.sleep``) with literal arguments (numbers, strings,
lists, tuples, ``True/False/None``, unary minus); ``import pyautogui`` and ``import
time`` are allowed and ignored, as are comments and bare string literals. Any other
call, name, attribute, import, assignment, loop or expression is a parse error that
names the line and the construct.

Semantics follow pyautogui: ``scroll`` positive scrolls up (deskdojo's ``dy`` is
positive down, so ``dy = -clicks``); ``hscroll`` positive scrolls right; a call
without coordinates acts where the previous call of the same answer left the pointer
(a scroll with no known pointer scrolls at the screen centre; a click with none is an
error); ``dragTo`` drags from that pointer; ``mouseDown``..``mouseUp`` is a drag (a
click when it ends where it began); ``keyDown``..``keyUp`` hold keys for the presses
in between (a chord); ``typewrite`` of a list presses each key; ``time.sleep`` ->
Wait; ``DONE``/``FAIL``/``WAIT`` -> Done/Fail/Wait(1). Scroll amounts are capped at
``MAX_SCROLL_CLICKS``. Coordinates are absolute pixels of the screenshot (mapped to
the screen when the two differ).

Elements, as OSWorld's ``som`` mode writes them: the name ``tag_12`` stands for the
centre of element 12 of the observation's element list, as a click's point
(``pyautogui.click(tag_12)``, ``pyautogui.rightClick(tag_12)``) and as a scroll's
(``pyautogui.scroll(-3, tag_12)``: the wheel turns at the element's centre, as pyautogui
would with the point ``tag_12`` names); a click on an element
followed by typing (``pyautogui.write('hi')``) is one typed-into-the-element action. No
other name is read, and ``tag_12`` is never looked up or run: it becomes the element id.
"""

from __future__ import annotations

import ast
import itertools
import math
import re
import warnings
from dataclasses import dataclass, field
from typing import Any

from deskdojo.agent.formats.base import (CoordinateSpace, FormatError, ParseFailure, ParseResult,
                                         check_size, clean_thought, element_id, merge_moves, names_element,
                                         safe_parse, until_terminal)
from deskdojo.core.actions import (MAX_SCROLL_CLICKS, Action, Click, Done, Drag, Fail, Key, Move,
                                   Scroll, Type, Wait, normalize_key)

_PRESS_REPEAT_MAX = 20
MAX_CODE_TOKENS = 4096
"""ast.parse costs 1-2 us a token: 64 KB of ``1<1<1...`` took 90 ms. Whitespace runs count
too; a string counts once however long, so any action's text fits; 4096 is some 400 calls."""
MAX_ACTIONS = 1024
"""``press([...], presses=20)`` and typing with keys held make many actions from little
code (64 KB made 320,000); more than this many in one answer is a parse error."""
# one token of Python, roughly: every alternative succeeds once it starts (an unclosed
# string runs to its line's or the text's end), so one pass reads the code in linear time
_CODE_TOKEN = re.compile(r"""
    [rRbBuUfF]{0,2}(?: '''(?:[^'\\]|\\.|'(?!''))*+(?:'''|\\?\Z)
                     | \"\"\"(?:[^"\\]|\\.|"(?!""))*+(?:\"\"\"|\\?\Z)
                     | '(?:[^'\\\n]|\\.)*+'?
                     | "(?:[^"\\\n]|\\.)*+"? )
  | \#[^\n]*+
  | \w++
  | \s++
  | \S
""", re.VERBOSE | re.DOTALL)
_CODE_LINE = re.compile(r"\s*(pyautogui\.|time\.|import\s)")
_SPECIAL = {"DONE": Done(), "FAIL": Fail(reason="FAIL"), "WAIT": Wait()}
_ALLOWED_IMPORTS = {"pyautogui", "time"}
_BUTTONS = {"left": "left", "right": "right", "middle": "middle", "primary": "left", "secondary": "right"}
TAG_PREFIX = "tag_"


@dataclass(frozen=True, slots=True)
class _Tag:
    """``tag_N`` as an argument: element N of the observation's element list."""

    element: int

    def __repr__(self) -> str:
        return f"{TAG_PREFIX}{self.element}"


def _merge_element_typing(actions: list[Action]) -> list[Action]:
    """A plain click on an element then typing is one action: type into that element."""
    merged: list[Action] = []
    for action in actions:
        previous = merged[-1] if merged else None
        if (isinstance(action, Type) and action.element is None and isinstance(previous, Click)
                and previous.element is not None and previous.x is None
                and (previous.button, previous.count) == ("left", 1)):
            merged[-1] = Type(action.text, element=previous.element)
            continue
        merged.append(action)
    return merged

# pyautogui's own parameter order (pyautogui 0.9.54); names not used here are accepted and ignored
_MOUSE_TAIL = ("duration", "tween", "logScreenshot", "_pause")
SIGNATURES: dict[str, tuple[str, ...]] = {
    "click": ("x", "y", "clicks", "interval", "button") + _MOUSE_TAIL,
    "leftClick": ("x", "y", "interval") + _MOUSE_TAIL,
    "rightClick": ("x", "y", "interval") + _MOUSE_TAIL,
    "middleClick": ("x", "y", "interval") + _MOUSE_TAIL,
    "doubleClick": ("x", "y", "interval", "button") + _MOUSE_TAIL,
    "tripleClick": ("x", "y", "interval", "button") + _MOUSE_TAIL,
    "moveTo": ("x", "y") + _MOUSE_TAIL,
    "moveRel": ("xOffset", "yOffset") + _MOUSE_TAIL,
    "move": ("xOffset", "yOffset") + _MOUSE_TAIL,
    "dragTo": ("x", "y", "duration", "tween", "button", "logScreenshot", "_pause", "mouseDownUp"),
    "dragRel": ("xOffset", "yOffset", "duration", "tween", "button", "logScreenshot", "_pause", "mouseDownUp"),
    "drag": ("xOffset", "yOffset", "duration", "tween", "button", "logScreenshot", "_pause", "mouseDownUp"),
    "mouseDown": ("x", "y", "button") + _MOUSE_TAIL,
    "mouseUp": ("x", "y", "button") + _MOUSE_TAIL,
    "scroll": ("clicks", "x", "y", "logScreenshot", "_pause"),
    "vscroll": ("clicks", "x", "y", "logScreenshot", "_pause"),
    "hscroll": ("clicks", "x", "y", "logScreenshot", "_pause"),
    "typewrite": ("message", "interval", "logScreenshot", "_pause"),
    "write": ("message", "interval", "logScreenshot", "_pause"),
    "press": ("keys", "presses", "interval", "logScreenshot", "_pause"),
    "hotkey": ("*keys", "interval", "logScreenshot", "_pause"),
    "keyDown": ("key", "logScreenshot", "_pause"),
    "keyUp": ("key", "logScreenshot", "_pause"),
}
TIME_SIGNATURES = {"sleep": ("secs",)}


def extract_code(text: str) -> tuple[str, str | None]:
    """(code, thought): the fenced code blocks joined, and the text around them.

    Without fences: a last line ``DONE``/``FAIL``/``WAIT``, else the text from the first
    line that looks like code (``pyautogui.``, ``time.``, ``import``)."""
    pieces = text.split("```")
    if len(pieces) > 1:
        code_parts, prose = [], [pieces[0]]
        for i in range(1, len(pieces), 2):
            inner = pieces[i]
            if "\n" in inner:
                first, rest = inner.split("\n", 1)
                code_parts.append(rest if first.strip().lower() in ("", "python", "py", "python3") else inner)
            else:
                code_parts.append(inner)
            if i + 1 < len(pieces):
                prose.append(pieces[i + 1])
        return "\n".join(code_parts), clean_thought("\n".join(prose))
    lines = text.strip().splitlines()
    if lines and lines[-1].strip().upper() in _SPECIAL:
        return lines[-1].strip(), clean_thought("\n".join(lines[:-1]))
    for i, line in enumerate(lines):  # the `in` tests skip the regex on prose lines (a 64 KB answer has thousands)
        if ("pyautogui." in line or "time." in line or "import" in line) and _CODE_LINE.match(line):
            return "\n".join(lines[i:]), clean_thought("\n".join(lines[:i]))
    return text, None


def _construct(node: ast.AST) -> str:
    """A short description of a node for error messages: its source, or its kind."""
    try:
        source = ast.unparse(node)
    except Exception:  # noqa: BLE001 - only for a message
        source = type(node).__name__
    source = " ".join(source.split())
    return source if len(source) <= 60 else source[:57] + "..."


_STATEMENT_NAMES = {
    ast.Assign: "an assignment", ast.AugAssign: "an assignment", ast.AnnAssign: "an assignment",
    ast.For: "a for loop", ast.While: "a while loop", ast.If: "an if statement", ast.With: "a with block",
    ast.FunctionDef: "a function definition", ast.AsyncFunctionDef: "a function definition",
    ast.ClassDef: "a class definition", ast.Try: "a try block", ast.Return: "a return",
    ast.Delete: "a del statement", ast.Global: "a global statement", ast.Raise: "a raise",
    ast.Assert: "an assert", ast.ImportFrom: "a from-import",
}


def literal(node: ast.AST, line: int) -> Any:
    """The value of a literal argument; anything else is a ParseFailure."""
    if isinstance(node, ast.Constant) and isinstance(node.value, (int, float, str, bool, type(None))):
        return node.value
    if (isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.USub, ast.UAdd))
            and isinstance(node.operand, ast.Constant) and isinstance(node.operand.value, (int, float))
            and not isinstance(node.operand.value, bool)):
        return -node.operand.value if isinstance(node.op, ast.USub) else node.operand.value
    if isinstance(node, (ast.List, ast.Tuple)):
        values = [literal(item, line) for item in node.elts]
        return values if isinstance(node, ast.List) else tuple(values)
    raise ParseFailure(f"line {line}: `{_construct(node)}` is not a literal; arguments must be plain "
                       "numbers, strings or lists of them")


@dataclass
class _State:
    """What the code has done so far: the pointer, a held mouse button, held keys."""

    pointer: tuple[int, int] | None = None
    pressed_at: tuple[int, int] | None = None
    pressed_button: str = "left"
    held_keys: list[str] = field(default_factory=list)
    chord_used: bool = False
    actions: list[Action] = field(default_factory=list)


class PyAutoGUIFormat:
    """OSWorld's pyautogui code (see the module docstring)."""

    def __init__(self, *, coordinates: str = "absolute", name: str = "pyautogui"):
        self.coordinates = CoordinateSpace(coordinates)
        self.name = name

    def expected_form(self) -> str:
        return ("Answer with a ```python``` block of pyautogui calls such as pyautogui.click(100, 200), "
                "or ```DONE```, ```FAIL``` or ```WAIT```")

    def prompt(self, *, screen: tuple[int, int], image: tuple[int, int], elements: bool = False) -> str:
        check_size("screen", screen), check_size("image", image)
        tags = ([f"The name {TAG_PREFIX}N stands for the centre of element N of the element list: "
                 f"pyautogui.click({TAG_PREFIX}12) clicks element 12, pyautogui.scroll(-3, {TAG_PREFIX}12) "
                 f"scrolls down over it, and pyautogui.click({TAG_PREFIX}12) "
                 "followed by pyautogui.write('text') types into it."] if elements else [])
        return "\n".join([
            "You are required to use `pyautogui` to perform the action grounded to the observation. "
            "Return one line or multiple lines of python code to perform the action each time.",
            "You ONLY need to return the code inside a code block, like this:",
            "```python", "# your code here", "```",
            "Only these calls are understood, with plain numbers and strings as arguments "
            "(no variables, loops or other functions): " + ", ".join(f"pyautogui.{n}" for n in SIGNATURES)
            + ", time.sleep.",
            self.coordinates.describe(image),
            *tags,
            "Specially, it is also allowed to return the following special code:",
            "When you think you have to wait for some time, return ```WAIT```;",
            "When you think the task can not be done, return ```FAIL```;",
            "When you think the task is done, return ```DONE```.",
            "First give a short reflection on the current screenshot and what was done, then return the "
            "code or special code.",
        ])

    # --- parse --------------------------------------------------------------------

    @safe_parse
    def parse(self, text: str, *, screen: tuple[int, int], image: tuple[int, int]) -> ParseResult:
        code, thought = extract_code(text)
        try:
            actions = self._run(code, screen=screen, image=image)
        except ParseFailure as exc:
            raise ParseFailure(exc.message, thought=thought) from None
        return ParseResult(actions=tuple(actions), thought=thought)

    def _run(self, code: str, *, screen: tuple[int, int], image: tuple[int, int]) -> list[Action]:
        if code.strip().upper() in _SPECIAL:
            return [_SPECIAL[code.strip().upper()]]
        if not code.strip():
            raise ParseFailure(f"the code block is empty. {self.expected_form()}")
        if sum(1 for _ in itertools.islice(_CODE_TOKEN.finditer(code), MAX_CODE_TOKENS + 1)) > MAX_CODE_TOKENS:
            raise ParseFailure(f"the code has more than {MAX_CODE_TOKENS} names, numbers and symbols; "
                               f"an answer needs a few calls. {self.expected_form()}")
        try:
            with warnings.catch_warnings():  # "invalid escape sequence" in model strings is not ours to report
                warnings.simplefilter("ignore")
                tree = ast.parse(code, mode="exec")
        except SyntaxError as exc:
            raise ParseFailure(f"line {exc.lineno}: not valid Python ({exc.msg}). {self.expected_form()}") from None
        except (RecursionError, MemoryError):  # what CPython's parser raises on deep nesting
            raise ParseFailure(f"the code nests too deeply to read. {self.expected_form()}") from None
        state = _State()
        for statement in tree.body:
            line = getattr(statement, "lineno", 0)
            if isinstance(statement, ast.Import):
                for alias in statement.names:
                    if alias.name not in _ALLOWED_IMPORTS or alias.asname:
                        raise ParseFailure(f"line {line}: `import {alias.name}"
                                           f"{' as ' + alias.asname if alias.asname else ''}` is not allowed; "
                                           "only `import pyautogui` and `import time`")
                continue
            if isinstance(statement, ast.Pass):
                continue
            if not isinstance(statement, ast.Expr):
                kind = _STATEMENT_NAMES.get(type(statement), f"a {type(statement).__name__} statement")
                raise ParseFailure(f"line {line}: {kind} (`{_construct(statement)}`) is not allowed; "
                                   "write each action as its own pyautogui call")
            value = statement.value
            if isinstance(value, ast.Constant) and isinstance(value.value, str):
                continue  # a docstring-style comment
            if isinstance(value, ast.Name) and value.id in _SPECIAL:
                state.actions.append(_SPECIAL[value.id])
                continue
            if not isinstance(value, ast.Call):
                raise ParseFailure(f"line {line}: `{_construct(value)}` is not a pyautogui call. "
                                   f"{self.expected_form()}")
            self._call(value, line, state, screen=screen, image=image)
        if state.pressed_at is not None:
            raise ParseFailure("pyautogui.mouseDown() has no pyautogui.mouseUp(); release the button")
        if state.held_keys:
            raise ParseFailure(f"pyautogui.keyDown({state.held_keys[0]!r}) has no keyUp; release the key")
        if not state.actions:
            raise ParseFailure(f"the code does nothing. {self.expected_form()}")
        return until_terminal(_merge_element_typing(merge_moves(state.actions)))

    def _call(self, node: ast.Call, line: int, state: _State, *, screen: tuple[int, int],
              image: tuple[int, int]) -> None:
        func = node.func
        if not (isinstance(func, ast.Attribute) and isinstance(func.value, ast.Name)
                and func.value.id in ("pyautogui", "time")):
            raise ParseFailure(f"line {line}: `{_construct(func)}(...)` is not allowed; only pyautogui "
                               "functions and time.sleep may be called")
        module, name = func.value.id, func.attr
        table = SIGNATURES if module == "pyautogui" else TIME_SIGNATURES
        if name not in table:
            raise ParseFailure(f"line {line}: `{module}.{name}` is not supported; use one of: "
                               + ", ".join(f"{module}.{n}" for n in table))
        args = self._bind(module, name, table[name], node, line)
        if module == "time":
            state.actions.append(Wait(self._number(args.get("secs"), "time.sleep", line)))
            return
        getattr(self, f"_do_{name}")(args, line, state, screen, image)

    def _bind(self, module: str, name: str, params: tuple[str, ...], node: ast.Call,
              line: int) -> dict[str, Any]:
        label = f"{module}.{name}"
        if any(isinstance(a, ast.Starred) for a in node.args) or any(k.arg is None for k in node.keywords):
            raise ParseFailure(f"line {line}: {label}() with * or ** arguments is not allowed")
        values = [self._argument(a, line) for a in node.args]
        bound: dict[str, Any] = {}
        if params and params[0].startswith("*"):
            bound[params[0][1:]] = values
            named = params[1:]
        else:
            if len(values) > len(params):
                raise ParseFailure(f"line {line}: {label}() takes at most {len(params)} positional values")
            bound.update(zip(params, values))
            named = params
        for keyword in node.keywords:
            if keyword.arg not in named:
                raise ParseFailure(f"line {line}: {label}() has no argument {keyword.arg!r}")
            if keyword.arg in bound:
                raise ParseFailure(f"line {line}: {label}() got {keyword.arg!r} twice")
            bound[keyword.arg] = self._argument(keyword.value, line)
        return bound

    @staticmethod
    def _argument(node: ast.AST, line: int) -> Any:
        """A literal, or ``tag_N`` (an element) as a whole argument."""
        if isinstance(node, ast.Name) and node.id.startswith(TAG_PREFIX):
            return _Tag(element_id(node.id[len(TAG_PREFIX):], f"line {line}: `{node.id}`"))
        return literal(node, line)

    # --- helpers for the handlers ---------------------------------------------------

    @staticmethod
    def _number(value: Any, label: str, line: int) -> float:
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise ParseFailure(f"line {line}: {label} needs a number, got {value!r}")
        return value

    def _point(self, args: dict[str, Any], label: str, line: int, state: _State, *,
               screen: tuple[int, int], image: tuple[int, int], need: bool = True) -> tuple[int, int] | None:
        x, y = args.get("x"), args.get("y")
        if any(isinstance(value, _Tag) for value in args.values()):
            raise ParseFailure(f"line {line}: {label}() cannot take an element tag; only clicks and scrolls "
                               f"name elements, as in pyautogui.click({TAG_PREFIX}12) or "
                               f"pyautogui.scroll(-3, {TAG_PREFIX}12)")
        if isinstance(x, (list, tuple)) and y is None and len(x) == 2:
            x, y = x  # pyautogui.click((100, 200))
        if x is None and y is None:
            if state.pointer is None and need:
                raise ParseFailure(f"line {line}: {label}() needs x and y (the pointer's position is "
                                   f"unknown), e.g. {label}(100, 200)")
            return state.pointer
        if x is None or y is None:
            raise ParseFailure(f"line {line}: {label}() needs both x and y")
        x = self._number(x, f"{label}() x", line)
        y = self._number(y, f"{label}() y", line)
        return self.coordinates.to_screen(x, y, screen=screen, image=image, what=f"line {line}: {label}()")

    @staticmethod
    def _button(args: dict[str, Any], label: str, line: int, default: str = "left") -> str:
        value = args.get("button", default)
        if value not in _BUTTONS:
            raise ParseFailure(f"line {line}: {label}() button must be 'left', 'right' or 'middle', got {value!r}")
        return _BUTTONS[value]

    def _emit(self, state: _State, action: Action, line: int) -> None:
        if state.pressed_at is not None and not isinstance(action, Move):
            raise ParseFailure(f"line {line}: only moveTo may come between mouseDown and mouseUp")
        state.actions.append(action)

    def _keys(self, state: _State, keys: tuple[str, ...], line: int) -> None:
        """A key press (or chord), with any keys held by keyDown."""
        if state.pressed_at is not None:
            raise ParseFailure(f"line {line}: only moveTo may come between mouseDown and mouseUp")
        if len(state.actions) >= MAX_ACTIONS:
            raise ParseFailure(f"line {line}: the code makes more than {MAX_ACTIONS} actions; "
                               "an answer should do a few")
        state.actions.append(Key(tuple(state.held_keys) + keys))
        if state.held_keys:
            state.chord_used = True

    @staticmethod
    def _key_name(value: Any, label: str, line: int) -> str:
        if not isinstance(value, str) or not value:
            raise ParseFailure(f"line {line}: {label}() needs key names as strings, got {value!r}")
        return "space" if value == " " else value

    # --- one handler per pyautogui function ------------------------------------------

    def _click(self, args: dict[str, Any], line: int, state: _State, screen: tuple[int, int],
               image: tuple[int, int], *, label: str, button: str | None, count: int) -> None:
        tag = args.get("x")
        if isinstance(tag, _Tag):
            if args.get("y") is not None:
                raise ParseFailure(f"line {line}: pyautogui.{label}({tag!r}) takes the tag alone, without y")
            button = button or self._button(args, f"pyautogui.{label}", line)
            self._emit(state, Click(button=button, count=count, element=tag.element), line)
            state.pointer = None  # where the element is, the sandbox knows when it acts
            return
        x, y = self._point(args, f"pyautogui.{label}", line, state, screen=screen, image=image)
        button = button or self._button(args, f"pyautogui.{label}", line)
        self._emit(state, Click(x, y, button=button, count=count), line)
        state.pointer = (x, y)

    def _do_click(self, args, line, state, screen, image) -> None:
        clicks = args.get("clicks", 1)
        if isinstance(clicks, bool) or not isinstance(clicks, int) or not 1 <= clicks <= 3:
            raise ParseFailure(f"line {line}: pyautogui.click() clicks must be 1, 2 or 3, got {clicks!r}")
        self._click(args, line, state, screen, image, label="click", button=None, count=clicks)

    def _do_leftClick(self, args, line, state, screen, image) -> None:
        self._click(args, line, state, screen, image, label="leftClick", button="left", count=1)

    def _do_rightClick(self, args, line, state, screen, image) -> None:
        self._click(args, line, state, screen, image, label="rightClick", button="right", count=1)

    def _do_middleClick(self, args, line, state, screen, image) -> None:
        self._click(args, line, state, screen, image, label="middleClick", button="middle", count=1)

    def _do_doubleClick(self, args, line, state, screen, image) -> None:
        self._click(args, line, state, screen, image, label="doubleClick", button=None, count=2)

    def _do_tripleClick(self, args, line, state, screen, image) -> None:
        self._click(args, line, state, screen, image, label="tripleClick", button=None, count=3)

    def _do_moveTo(self, args, line, state, screen, image) -> None:
        x, y = self._point(args, "pyautogui.moveTo", line, state, screen=screen, image=image)
        if state.pressed_at is None:
            state.actions.append(Move(x, y))
        state.pointer = (x, y)

    def _offset(self, args: dict[str, Any], label: str, line: int, state: _State, *,
                screen: tuple[int, int], image: tuple[int, int]) -> tuple[int, int]:
        if state.pointer is None:
            raise ParseFailure(f"line {line}: {label}() moves relative to the pointer, whose position is "
                               "unknown; use moveTo(x, y) / dragTo(x, y)")
        dx = self._number(args.get("xOffset") or 0, f"{label}() xOffset", line)
        dy = self._number(args.get("yOffset") or 0, f"{label}() yOffset", line)
        # offsets are lengths in the model's coordinates: scale them like points
        span = (1000, 1000) if self.coordinates.mode == "relative1000" else image
        return (state.pointer[0] + round(dx * screen[0] / span[0]),
                state.pointer[1] + round(dy * screen[1] / span[1]))

    def _do_moveRel(self, args, line, state, screen, image) -> None:
        x, y = self._offset(args, "pyautogui.moveRel", line, state, screen=screen, image=image)
        if state.pressed_at is None:
            state.actions.append(Move(x, y))
        state.pointer = (x, y)

    _do_move = _do_moveRel

    def _drag_to(self, state: _State, target: tuple[int, int], button: str, label: str, line: int) -> None:
        if state.pointer is None:
            raise ParseFailure(f"line {line}: {label}() drags from the pointer, whose position is unknown; "
                               "put pyautogui.moveTo(x, y) at the start point first")
        self._emit(state, Drag(state.pointer[0], state.pointer[1], target[0], target[1], button=button), line)
        state.pointer = target

    def _do_dragTo(self, args, line, state, screen, image) -> None:
        target = self._point(args, "pyautogui.dragTo", line, state, screen=screen, image=image)
        self._drag_to(state, target, self._button(args, "pyautogui.dragTo", line), "pyautogui.dragTo", line)

    def _do_dragRel(self, args, line, state, screen, image) -> None:
        target = self._offset(args, "pyautogui.dragRel", line, state, screen=screen, image=image)
        self._drag_to(state, target, self._button(args, "pyautogui.dragRel", line), "pyautogui.dragRel", line)

    _do_drag = _do_dragRel

    def _do_mouseDown(self, args, line, state, screen, image) -> None:
        if state.pressed_at is not None:
            raise ParseFailure(f"line {line}: pyautogui.mouseDown() while a button is already down")
        point = self._point(args, "pyautogui.mouseDown", line, state, screen=screen, image=image)
        state.pressed_at, state.pointer = point, point
        state.pressed_button = self._button(args, "pyautogui.mouseDown", line)

    def _do_mouseUp(self, args, line, state, screen, image) -> None:
        if state.pressed_at is None:
            raise ParseFailure(f"line {line}: pyautogui.mouseUp() without a mouseDown() before it")
        end = self._point(args, "pyautogui.mouseUp", line, state, screen=screen, image=image)
        start, button = state.pressed_at, state.pressed_button
        state.pressed_at, state.pointer = None, end
        if start == end:
            state.actions.append(Click(start[0], start[1], button=button))
        else:
            state.actions.append(Drag(start[0], start[1], end[0], end[1], button=button))

    def _scroll(self, args: dict[str, Any], line: int, state: _State, screen: tuple[int, int],
                image: tuple[int, int], *, label: str, horizontal: bool) -> None:
        clicks = self._number(args.get("clicks"), f"pyautogui.{label}() clicks", line)
        clicks = int(math.copysign(min(math.floor(abs(clicks) + 0.5), MAX_SCROLL_CLICKS), clicks))
        tag = args.get("x")
        if isinstance(tag, _Tag):
            if args.get("y") is not None:
                raise ParseFailure(f"line {line}: pyautogui.{label}(clicks, {tag!r}) takes the tag alone, without y")
            if clicks:
                self._emit(state, Scroll(dx=clicks, element=tag.element) if horizontal
                           else Scroll(dy=-clicks, element=tag.element), line)
            state.pointer = None  # where the element is, the sandbox knows when it acts
            return
        point = self._point(args, f"pyautogui.{label}", line, state, screen=screen, image=image, need=False)
        x, y = point or (screen[0] // 2, screen[1] // 2)
        if clicks == 0:
            return  # pyautogui scrolls nothing
        action = Scroll(x, y, dx=clicks) if horizontal else Scroll(x, y, dy=-clicks)
        self._emit(state, action, line)
        state.pointer = (x, y)

    def _do_scroll(self, args, line, state, screen, image) -> None:
        self._scroll(args, line, state, screen, image, label="scroll", horizontal=False)

    def _do_vscroll(self, args, line, state, screen, image) -> None:
        self._scroll(args, line, state, screen, image, label="vscroll", horizontal=False)

    def _do_hscroll(self, args, line, state, screen, image) -> None:
        self._scroll(args, line, state, screen, image, label="hscroll", horizontal=True)

    def _do_typewrite(self, args, line, state, screen, image, label: str = "typewrite") -> None:
        message = args.get("message")
        if isinstance(message, str):
            if not message:
                return
            if state.held_keys:  # typing with keys held down: each character is a chord
                for char in message:
                    self._keys(state, (self._key_name(char, f"pyautogui.{label}", line),), line)
                return
            self._emit(state, Type(message), line)
        elif isinstance(message, (list, tuple)):
            for key in message:
                self._keys(state, (self._key_name(key, f"pyautogui.{label}", line),), line)
        else:
            raise ParseFailure(f"line {line}: pyautogui.{label}() needs a string or a list of key names, "
                               f"got {message!r}")

    def _do_write(self, args, line, state, screen, image) -> None:
        self._do_typewrite(args, line, state, screen, image, label="write")

    def _do_press(self, args, line, state, screen, image) -> None:
        keys = args.get("keys")
        names = keys if isinstance(keys, (list, tuple)) else [keys]
        presses = args.get("presses", 1)
        if isinstance(presses, bool) or not isinstance(presses, int) or not 1 <= presses <= _PRESS_REPEAT_MAX:
            raise ParseFailure(f"line {line}: pyautogui.press() presses must be 1..{_PRESS_REPEAT_MAX}, "
                               f"got {presses!r}")
        for _ in range(presses):
            for name in names:
                self._keys(state, (self._key_name(name, "pyautogui.press", line),), line)

    def _do_hotkey(self, args, line, state, screen, image) -> None:
        keys = tuple(self._key_name(k, "pyautogui.hotkey", line) for k in args.get("keys", []))
        if not keys:
            raise ParseFailure(f"line {line}: pyautogui.hotkey() needs key names, e.g. hotkey('ctrl', 's')")
        self._keys(state, keys, line)

    def _do_keyDown(self, args, line, state, screen, image) -> None:
        key = normalize_key(self._key_name(args.get("key"), "pyautogui.keyDown", line))
        if key in state.held_keys:
            raise ParseFailure(f"line {line}: pyautogui.keyDown({key!r}) while it is already down")
        state.held_keys.append(key)

    def _do_keyUp(self, args, line, state, screen, image) -> None:
        key = normalize_key(self._key_name(args.get("key"), "pyautogui.keyUp", line))
        if key not in state.held_keys:
            raise ParseFailure(f"line {line}: pyautogui.keyUp({key!r}) without keyDown({key!r}) before it")
        if not state.chord_used:  # keyDown('shift'); keyUp('shift') is a press of the held keys
            state.actions.append(Key(tuple(state.held_keys)))
            state.chord_used = True
        state.held_keys.remove(key)
        if not state.held_keys:
            state.chord_used = False

    # --- render -------------------------------------------------------------------

    def render(self, action: Action, *, screen: tuple[int, int], image: tuple[int, int],
               thought: str | None = None) -> str:
        def pt(x: int, y: int) -> str:
            ix, iy = self.coordinates.from_screen(x, y, screen=screen, image=image)
            return f"{ix}, {iy}"

        if isinstance(action, Click):
            named = {("left", 1): "click", ("left", 2): "doubleClick", ("left", 3): "tripleClick",
                     ("right", 1): "rightClick", ("middle", 1): "middleClick"}
            name = named.get((action.button, action.count))
            target = f"{TAG_PREFIX}{action.element}" if names_element(action) else pt(action.x, action.y)
            if name:
                lines = [f"pyautogui.{name}({target})"]
            else:
                lines = [f"pyautogui.click({target}, clicks={action.count}, button={action.button!r})"]
        elif isinstance(action, Move):
            lines = [f"pyautogui.moveTo({pt(action.x, action.y)})"]
        elif isinstance(action, Drag):
            button = "" if action.button == "left" else f", button={action.button!r}"
            lines = [f"pyautogui.moveTo({pt(action.x, action.y)})",
                     f"pyautogui.dragTo({pt(action.to_x, action.to_y)}{button})"]
        elif isinstance(action, Scroll):
            if names_element(action):
                where = f"{TAG_PREFIX}{action.element}"
            else:
                x, y = pt(action.x, action.y).split(", ")
                where = f"x={x}, y={y}"
            lines = []
            if action.dy:
                lines.append(f"pyautogui.scroll({-action.dy}, {where})")
            if action.dx:
                lines.append(f"pyautogui.hscroll({action.dx}, {where})")
        elif isinstance(action, Type):
            lines = [f"pyautogui.typewrite({action.text!r})"]
            if names_element(action):
                lines.insert(0, f"pyautogui.click({TAG_PREFIX}{action.element})")
        elif isinstance(action, Key):
            if len(action.keys) == 1:
                lines = [f"pyautogui.press({action.keys[0]!r})"]
            else:
                lines = [f"pyautogui.hotkey({', '.join(repr(k) for k in action.keys)})"]
        elif isinstance(action, Wait):
            seconds = action.seconds
            lines = [f"time.sleep({int(seconds) if seconds.is_integer() else seconds!r})"]
        elif isinstance(action, Done):
            if action.answer is not None:
                raise FormatError("OSWorld's pyautogui answers cannot carry an answer text (DONE has none)")
            return (f"{thought.strip()}\n" if thought else "") + "```DONE```"
        elif isinstance(action, Fail):
            return (f"{thought.strip()}\n" if thought else "") + "```FAIL```"
        else:
            raise FormatError(f"not an action: {action!r}")
        head = f"{thought.strip()}\n" if thought else ""
        return head + "```python\n" + "\n".join(lines) + "\n```"
