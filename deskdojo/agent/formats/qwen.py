"""Qwen2.5-VL / Qwen3-VL ``computer_use`` tool calls::

    The Save button is in the toolbar.
    <tool_call>
    {"name": "computer_use", "arguments": {"action": "left_click", "coordinate": [120, 45]}}
    </tool_call>

Coordinates: Qwen2.5-VL writes absolute pixels of the resized image it saw
(``smart_resize``); Qwen3-VL writes 0..1000 relative coordinates.
``QwenComputerUseFormat(coordinates="absolute" | "relative1000")``.

Mapping to the one Action schema: ``left_click``/``double_click``/``triple_click`` ->
Click(count=1/2/3), ``right_click``/``middle_click`` -> Click(button=...), ``mouse_move``
-> Move, ``left_click_drag`` -> Drag (from ``start_coordinate``, or from a ``mouse_move``
earlier in the same answer: the tool drags from where the pointer is), ``key`` -> Key
(``keys`` pressed as one chord), ``type`` -> Type, ``scroll``/``hscroll`` -> Scroll,
``wait`` -> Wait(``time``), ``terminate`` -> Done (status ``success``) or Fail
(``failure``), ``answer`` -> Done(answer=text).

Scroll amounts: the tool's ``pixels`` (positive scrolls up, as ``pyautogui.scroll``;
for ``hscroll`` positive scrolls right, as ``pyautogui.hscroll``) are divided by
``pixels_per_click`` (default 1: the value is a count of wheel clicks, which is how
OSWorld's Qwen agents execute it) and rounded, at least one click, at most
``MAX_SCROLL_CLICKS``. ``dy = -pixels / pixels_per_click``, ``dx = +pixels / pixels_per_click``.
A click or scroll without a coordinate acts where a ``mouse_move`` earlier in the same
answer left the pointer; a scroll with neither scrolls at the screen centre.

Elements: when the observation lists UI elements, the tool takes an ``element`` argument
(an id from the list) in place of ``coordinate`` for the clicks, for ``scroll``/``hscroll``
(the wheel turns at the element's centre) and for ``type`` (the element is clicked first, to
focus it): ``{"action": "left_click", "element": 12}``,
``{"action": "scroll", "element": 12, "pixels": -3}``. It
is an added, optional property of the same tool, so the schema stays one function and a
model that never uses it sees the same calls as before.
"""

from __future__ import annotations

import json
import math
import re
from typing import Any

from deskdojo.agent.formats.base import (CoordinateSpace, FormatError, ParseFailure, ParseResult,
                                         check_size, clean_thought, element_id, merge_moves, names_element,
                                         safe_parse, shorten, split_keys, until_terminal)
from deskdojo.core.actions import (MAX_SCROLL_CLICKS, POINTER_KINDS, Action, Click, Done, Drag, Fail,
                                   Key, Move, Scroll, Type, Wait, action_points)

TOOL_NAME = "computer_use"
_CALL_BLOCK = re.compile(r"<tool_call>(.*?)(?:</tool_call>|\Z)", re.DOTALL)
_CLICKS = {"left_click": ("left", 1), "double_click": ("left", 2), "triple_click": ("left", 3),
           "right_click": ("right", 1), "middle_click": ("middle", 1)}
ACTIONS = ("key", "type", "mouse_move", "left_click", "left_click_drag", "right_click", "middle_click",
           "double_click", "triple_click", "scroll", "hscroll", "wait", "terminate", "answer")


def scroll_clicks(amount: float, per_click: float) -> int:
    """A scroll amount -> whole wheel clicks, keeping the sign, at least one, at most the cap."""
    clicks = max(1, math.floor(abs(amount) / per_click + 0.5))
    return int(math.copysign(min(clicks, MAX_SCROLL_CLICKS), amount))


class QwenComputerUseFormat:
    """Qwen's ``computer_use`` tool calls (see the module docstring)."""

    def __init__(self, *, coordinates: str = "absolute", pixels_per_click: float = 1.0,
                 name: str | None = None):
        self.coordinates = CoordinateSpace(coordinates)
        if not pixels_per_click > 0:
            raise FormatError(f"pixels_per_click must be positive, got {pixels_per_click}")
        self.pixels_per_click = pixels_per_click
        self.name = name or ("qwen_computer_use" if coordinates == "absolute" else "qwen3_computer_use")

    def expected_form(self) -> str:
        return ('Answer with <tool_call>\n{"name": "computer_use", "arguments": {"action": "left_click", '
                '"coordinate": [100, 200]}}\n</tool_call>')

    # --- prompt -------------------------------------------------------------------

    def tool_schema(self, *, image: tuple[int, int], elements: bool = False) -> dict[str, Any]:
        """The function description (the ``tools`` entry a chat template takes); with
        ``elements``, the ``element`` property too."""
        if self.coordinates.mode == "relative1000":
            resolution = "The screen's resolution is 1000x1000 (relative coordinates, 0 to 1000 on each side)."
        else:
            resolution = f"The screen's resolution is {image[0]}x{image[1]}."
        actions = "\n".join([
            "* `key`: Press the keys in `keys` together as one chord (all down in order, then all up).",
            "* `type`: Type a string of text on the keyboard.",
            "* `mouse_move`: Move the cursor to a specified (x, y) pixel coordinate on the screen.",
            "* `left_click`: Click the left mouse button at a specified (x, y) pixel coordinate on the screen.",
            "* `left_click_drag`: Click and drag the cursor from `start_coordinate` to `coordinate`.",
            "* `right_click`: Click the right mouse button at a specified (x, y) pixel coordinate on the screen.",
            "* `middle_click`: Click the middle mouse button at a specified (x, y) pixel coordinate on the screen.",
            "* `double_click`: Double-click the left mouse button at a specified (x, y) pixel coordinate.",
            "* `triple_click`: Triple-click the left mouse button at a specified (x, y) pixel coordinate.",
            "* `scroll`: Scroll the mouse wheel at `coordinate`: `pixels` clicks, positive up, negative down.",
            "* `hscroll`: Scroll horizontally at `coordinate`: `pixels` clicks, positive right, negative left.",
            "* `wait`: Wait `time` seconds for the change to happen.",
            "* `terminate`: Terminate the current task and report its completion status.",
            "* `answer`: Answer a question (ends the task).",
        ])
        schema = {"type": "function", "function": {
            "name": TOOL_NAME,
            "description": ("Use a mouse and keyboard to interact with a computer, and take screenshots.\n"
                            f"* {resolution}\n"
                            "* Click buttons, links and icons with the cursor tip in the centre of the element."),
            "parameters": {"type": "object", "required": ["action"], "properties": {
                "action": {"description": "The action to perform. The available actions are:\n" + actions,
                           "enum": list(ACTIONS), "type": "string"},
                "keys": {"description": "Required only by `action=key`.", "type": "array"},
                "text": {"description": "Required only by `action=type` and `action=answer`.", "type": "string"},
                "coordinate": {"description": "(x, y): the point to act at. Required by clicks, "
                                              "`mouse_move` and `left_click_drag` (its end).", "type": "array"},
                "start_coordinate": {"description": "(x, y): where `left_click_drag` starts.", "type": "array"},
                "pixels": {"description": "The amount of scrolling. Required only by `action=scroll` "
                                          "and `action=hscroll`.", "type": "number"},
                "time": {"description": "The seconds to wait. Required only by `action=wait`.", "type": "number"},
                "status": {"description": "The status of the task. Required only by `action=terminate`.",
                           "type": "string", "enum": ["success", "failure"]},
            }},
        }}
        if elements:
            schema["function"]["parameters"]["properties"]["element"] = {
                "description": ("The id of an element from the element list, instead of `coordinate`: the "
                                "clicks act at its centre, `scroll` and `hscroll` turn the wheel there; "
                                "`action=type` clicks it first to focus it."),
                "type": "integer"}
        return schema

    def prompt(self, *, screen: tuple[int, int], image: tuple[int, int], elements: bool = False) -> str:
        check_size("screen", screen), check_size("image", image)
        return "\n".join([
            "# Tools", "", "You may call one or more functions to assist with the user query.", "",
            "You are provided with function signatures within <tools></tools> XML tags:",
            "<tools>", json.dumps(self.tool_schema(image=image, elements=elements), ensure_ascii=False), "</tools>", "",
            "For each function call, return a json object with function name and arguments within "
            "<tool_call></tool_call> XML tags:",
            "<tool_call>", '{"name": <function-name>, "arguments": <args-json-object>}', "</tool_call>",
        ])

    # --- parse --------------------------------------------------------------------

    @safe_parse
    def parse(self, text: str, *, screen: tuple[int, int], image: tuple[int, int]) -> ParseResult:
        blocks = list(_CALL_BLOCK.finditer(text))
        if blocks:
            payloads = [m.group(1) for m in blocks]
            thought = clean_thought(text[:blocks[0].start()])
        else:
            stripped = text.strip()
            start = stripped.find('{"name"')
            if start < 0:
                raise ParseFailure(f"no <tool_call> in the answer. {self.expected_form()}",
                                   thought=clean_thought(text))
            payloads = [stripped[start:]]
            thought = clean_thought(stripped[:start])
        actions: list[Action] = []
        pointer: tuple[int, int] | None = None
        try:
            for payload in payloads:
                action = self._action(self._arguments(payload), pointer, screen=screen, image=image)
                actions.append(action)
                if isinstance(action, Move):
                    pointer = (action.x, action.y)
                elif action.kind in POINTER_KINDS:
                    points = action_points(action)
                    pointer = points[-1] if points else None  # an element's place is the sandbox's to know
        except ParseFailure as exc:
            raise ParseFailure(exc.message, thought=thought) from None
        return ParseResult(actions=tuple(until_terminal(merge_moves(actions))), thought=thought)

    def _arguments(self, payload: str) -> dict[str, Any]:
        body = payload.strip()
        if body.startswith("```"):
            body = body.strip("`").removeprefix("json").strip()
        try:
            call = json.loads(body)
        except json.JSONDecodeError as exc:
            raise ParseFailure(f"the tool call {shorten(body)!r} is not JSON ({exc.msg} at character "
                               f"{exc.pos}). {self.expected_form()}") from None
        if not isinstance(call, dict):
            raise ParseFailure(f"a tool call must be a JSON object. {self.expected_form()}")
        if call.get("name") != TOOL_NAME:
            raise ParseFailure(f"unknown tool {call.get('name')!r}; the only tool is {TOOL_NAME!r}")
        arguments = call.get("arguments")
        if isinstance(arguments, str):  # some servers send arguments as a JSON string
            try:
                arguments = json.loads(arguments)
            except json.JSONDecodeError as exc:
                raise ParseFailure(f"the tool call's arguments are not JSON ({exc.msg})") from None
        if not isinstance(arguments, dict):
            raise ParseFailure(f'"arguments" must be a JSON object with an "action". {self.expected_form()}')
        return arguments

    def _coordinate(self, arguments: dict[str, Any], key: str, *, screen: tuple[int, int],
                    image: tuple[int, int]) -> tuple[int, int] | None:
        value = arguments.get(key)
        if value is None:
            return None
        if isinstance(value, str):  # "[100, 200]" or "100,200"
            value = [v for v in re.split(r"[\s,()\[\]]+", value) if v]
            if len(value) != 2:  # before float(): a 64 KB string may hold 30,000 numbers
                raise ParseFailure(f"{key} must be [x, y] (two numbers), got {shorten(arguments.get(key))!r}")
            try:
                value = [float(v) for v in value]
            except ValueError:
                raise ParseFailure(f"{key} must be [x, y] numbers, got {arguments.get(key)!r}") from None
        if (not isinstance(value, (list, tuple)) or len(value) != 2
                or not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in value)):
            raise ParseFailure(f"{key} must be [x, y] (two numbers), got {arguments.get(key)!r}")
        action = arguments.get("action")
        return self.coordinates.to_screen(value[0], value[1], screen=screen, image=image,
                                          what=f"{action} {key}")

    def _action(self, arguments: dict[str, Any], pointer: tuple[int, int] | None, *,
                screen: tuple[int, int], image: tuple[int, int]) -> Action:
        action = arguments.get("action")
        where = {"screen": screen, "image": image}
        if arguments.get("element") is not None:
            element = element_id(arguments["element"], f'{action} "element"')
            if action in _CLICKS:
                button, count = _CLICKS[action]
                return Click(button=button, count=count, element=element)
            if action == "type":
                text = arguments.get("text")
                if not isinstance(text, str) or not text:
                    raise ParseFailure('type needs "text": the text to type')
                return Type(text, element=element)
            if action in ("scroll", "hscroll"):
                clicks = self._scroll_clicks(arguments)
                return Scroll(dy=-clicks, element=element) if action == "scroll" else Scroll(dx=clicks, element=element)
            raise ParseFailure(f'{action!r} cannot take "element"; only the clicks, scroll, hscroll and type '
                               f'name an element')
        point = self._coordinate(arguments, "coordinate", **where)
        if action in _CLICKS:
            button, count = _CLICKS[action]
            target = point or pointer
            if target is None:
                raise ParseFailure(f'{action} needs "coordinate": [x, y]')
            return Click(target[0], target[1], button=button, count=count)
        if action == "mouse_move":
            if point is None:
                raise ParseFailure('mouse_move needs "coordinate": [x, y]')
            return Move(*point)
        if action == "left_click_drag":
            start = self._coordinate(arguments, "start_coordinate", **where) or pointer
            if point is None or start is None:
                raise ParseFailure('left_click_drag needs "start_coordinate": [x1, y1] and "coordinate": [x2, y2]')
            return Drag(start[0], start[1], point[0], point[1])
        if action in ("scroll", "hscroll"):
            clicks = self._scroll_clicks(arguments)
            x, y = point or pointer or (screen[0] // 2, screen[1] // 2)
            if action == "scroll":
                return Scroll(x, y, dy=-clicks)
            return Scroll(x, y, dx=clicks)
        if action == "key":
            keys = arguments.get("keys", arguments.get("text"))
            if isinstance(keys, str):
                keys = list(split_keys(keys))
            if not isinstance(keys, list) or not keys or not all(isinstance(k, str) and k for k in keys):
                raise ParseFailure('key needs "keys": a list of key names, e.g. ["ctrl", "s"]')
            names: list[str] = []
            for key in keys:  # xdotool spellings: "ctrl+s", "Page_Down"
                parts = split_keys(key) if len(key) > 1 and "+" in key else (key,)
                names.extend(p.replace("_", "") if len(p) > 1 else p for p in parts)
            return Key(tuple(names))
        if action == "type":
            text = arguments.get("text")
            if not isinstance(text, str) or not text:
                raise ParseFailure('type needs "text": the text to type')
            return Type(text)
        if action == "wait":
            seconds = arguments.get("time", arguments.get("seconds"))
            if seconds is None:
                return Wait()
            if isinstance(seconds, bool) or not isinstance(seconds, (int, float)):
                raise ParseFailure(f'wait "time" must be a number of seconds, got {seconds!r}')
            return Wait(seconds)
        if action == "terminate":
            status = arguments.get("status")
            if status == "success":
                return Done()
            if status in ("failure", "fail"):
                return Fail(reason="terminate: status failure")
            raise ParseFailure(f'terminate needs "status": "success" or "failure", got {status!r}')
        if action == "answer":
            text = arguments.get("text")
            if not isinstance(text, str):
                raise ParseFailure('answer needs "text": the answer')
            return Done(answer=text)
        raise ParseFailure(f"unknown action {action!r}; use one of: {', '.join(ACTIONS)}")

    def _scroll_clicks(self, arguments: dict[str, Any]) -> int:
        """A ``scroll``/``hscroll`` call's ``pixels`` as signed wheel clicks (positive: up, or right)."""
        action, pixels = arguments.get("action"), arguments.get("pixels")
        is_number = isinstance(pixels, (int, float)) and not isinstance(pixels, bool)
        if not is_number or not math.isfinite(pixels) or pixels == 0:
            raise ParseFailure(f'{action} needs a non-zero number "pixels" (positive scrolls '
                               f'{"up" if action == "scroll" else "right"}), got {pixels!r}')
        return scroll_clicks(pixels, self.pixels_per_click)

    # --- render -------------------------------------------------------------------

    def _call(self, arguments: dict[str, Any]) -> str:
        body = json.dumps({"name": TOOL_NAME, "arguments": arguments}, ensure_ascii=False)
        return f"<tool_call>\n{body}\n</tool_call>"

    def render(self, action: Action, *, screen: tuple[int, int], image: tuple[int, int],
               thought: str | None = None) -> str:
        def point(x: int, y: int) -> list[int]:
            return list(self.coordinates.from_screen(x, y, screen=screen, image=image))

        calls: list[dict[str, Any]]
        if isinstance(action, Click):
            names = {value: key for key, value in _CLICKS.items()}
            name = names.get((action.button, action.count))
            if name is None:
                raise FormatError(f"computer_use has no {action.button} click with count {action.count}")
            calls = [{"action": name, "element": action.element} if names_element(action)
                     else {"action": name, "coordinate": point(action.x, action.y)}]
        elif isinstance(action, Move):
            calls = [{"action": "mouse_move", "coordinate": point(action.x, action.y)}]
        elif isinstance(action, Drag):
            if action.button != "left":
                raise FormatError("computer_use drags with the left button only")
            calls = [{"action": "left_click_drag", "start_coordinate": point(action.x, action.y),
                      "coordinate": point(action.to_x, action.to_y)}]
        elif isinstance(action, Scroll):
            target = ({"element": action.element} if names_element(action)
                      else {"coordinate": point(action.x, action.y)})
            calls = []
            if action.dy:
                calls.append({"action": "scroll", **target, "pixels": self._pixels(-action.dy)})
            if action.dx:
                calls.append({"action": "hscroll", **target, "pixels": self._pixels(action.dx)})
        elif isinstance(action, Type):
            calls = [{"action": "type", "text": action.text}]
            if names_element(action):
                calls[0]["element"] = action.element
        elif isinstance(action, Key):
            calls = [{"action": "key", "keys": list(action.keys)}]
        elif isinstance(action, Wait):
            calls = [{"action": "wait", "time": int(action.seconds) if action.seconds.is_integer() else action.seconds}]
        elif isinstance(action, Done):
            calls = ([{"action": "terminate", "status": "success"}] if action.answer is None
                     else [{"action": "answer", "text": action.answer}])
        elif isinstance(action, Fail):
            calls = [{"action": "terminate", "status": "failure"}]
        else:
            raise FormatError(f"not an action: {action!r}")
        head = f"{thought.strip()}\n" if thought else ""
        return head + "\n".join(self._call(c) for c in calls)

    def _pixels(self, clicks: int) -> int | float:
        value = clicks * self.pixels_per_click
        return int(value) if float(value).is_integer() else value
