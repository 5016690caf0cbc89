"""deskdojo's own action format, made for a small model to learn from scratch:
one action per answer, the function and argument names of the Action dataclasses,
coordinates in pixels of the screenshot the model saw::

    Thought: The Save button is at the top left.
    Action: click(x=120, y=45)

Strings are double-quoted with JSON escapes (``type(text="a \\"b\\"\\n")``); key chords
are names joined by ``+`` (``key(keys="ctrl+s")``). Everything is derived from
``deskdojo.core.actions``: a new field or action appears here without an edit.

When the observation lists UI elements, a click, a scroll or a typed text may name one by
its id instead of a point: ``click(element=12)``, ``scroll(dy=3, element=12)``,
``type(text="hello", element=12)``.
"""

from __future__ import annotations

import json
from typing import Any

from deskdojo.agent.formats.base import (ELEMENT_FIELD, CoordinateSpace, FieldSpec, FormatError, ParseFailure,
                                         ParseResult, action_fields, action_summary, check_size, element_id,
                                         element_kinds, names_element, safe_parse, shorten, split_action_line,
                                         split_keys)
from deskdojo.agent.formats.calls import Call, parse_calls
from deskdojo.core.actions import (ACTION_TYPES, BUTTONS, MAX_SCROLL_CLICKS, MAX_WAIT_S, Action,
                                   action_to_dict)
from deskdojo.core.errors import ActionError

_FIELD_NOTES = {
    ("click", "button"): f"one of {', '.join(BUTTONS)}",
    ("drag", "button"): f"one of {', '.join(BUTTONS)}",
    ("click", "count"): "1, 2 (double click) or 3",
    ("scroll", "dx"): f"wheel clicks, -{MAX_SCROLL_CLICKS}..{MAX_SCROLL_CLICKS}",
    ("scroll", "dy"): f"wheel clicks, -{MAX_SCROLL_CLICKS}..{MAX_SCROLL_CLICKS}",
    ("key", "keys"): 'key names joined by "+", e.g. "ctrl+s", "enter", "alt+f4"',
    ("wait", "seconds"): f"0..{MAX_WAIT_S:g}",
}
_ELEMENT_SUMMARIES = {
    "click": "click the centre of an element of the element list, named by its id",
    "type": "click an element of the element list (to focus it), then type text into it",
    "scroll": "turn the wheel at the centre of an element of the element list (a list, a canvas)",
}


def _format_value(value: Any) -> str:
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, float):
        return str(int(value)) if value.is_integer() else repr(value)
    return str(value)


class DeskdojoFormat:
    """deskdojo's format (see the module docstring). ``coordinates="relative1000"``
    switches coordinates to 0..1000 of each side (then mapped and clamped)."""

    def __init__(self, *, coordinates: str = "absolute", name: str = "deskdojo"):
        self.coordinates = CoordinateSpace(coordinates)
        self.name = name

    # --- the text that tells a model how to answer ---------------------------------

    def signature(self, kind: str, *, element: bool = False) -> str:
        """``click(x=<int>, y=<int>, button="left", count=1)``; with ``element`` the form
        that names an element instead: ``click(element=<id>, button="left", count=1)``."""
        parts = []
        for spec in action_fields(kind):
            if spec.name == ELEMENT_FIELD or (element and spec.axis is not None):
                continue
            if spec.axis is not None:  # a point: required unless an element is named
                parts.append(f"{spec.name}=<int>")
            elif spec.required:
                parts.append(f"{spec.name}=<{'text' if spec.kind == 'str' else spec.kind}>")
            else:
                default = "null" if spec.default is None else _format_value(spec.default)
                parts.append(f"{spec.name}={default}")
        if element:
            parts.append(f"{ELEMENT_FIELD}=<id>")
        return f"{kind}({', '.join(parts)})"

    def expected_form(self) -> str:
        return ('Answer with "Thought: <your reasoning>" then one line "Action: <call>", e.g. '
                'Action: click(x=120, y=45)')

    def prompt(self, *, screen: tuple[int, int], image: tuple[int, int], elements: bool = False) -> str:
        check_size("screen", screen), check_size("image", image)
        lines = ["Answer in exactly this form, with one action per answer:",
                 "Thought: <what you see and what you will do, briefly>",
                 "Action: <one call from the list below>", "", "Actions:"]
        for kind in ACTION_TYPES:
            notes = [f"{spec.name}: {_FIELD_NOTES[(kind, spec.name)]}"
                     for spec in action_fields(kind) if (kind, spec.name) in _FIELD_NOTES]
            extra = f" ({'; '.join(notes)})" if notes else ""
            lines.append(f"- {self.signature(kind)}: {action_summary(kind)}{extra}")
            if elements and kind in element_kinds():
                lines.append(f"- {self.signature(kind, element=True)}: {_ELEMENT_SUMMARIES.get(kind, kind)}")
        lines += ["", self.coordinates.describe(image),
                  'Text is double-quoted; write a quote as \\" and a new line as \\n.',
                  "Arguments left out take the value shown above.", "", "Examples:"]
        cx, cy = screen[0] // 2, screen[1] // 2
        from deskdojo.core.actions import Click, Done, Key, Scroll, Type
        for example in (Click(cx, cy), Type("hello world"), Key(("ctrl", "s")),
                        Scroll(cx, cy, dy=3), Done(answer="42")):
            lines.append(self.render(example, screen=screen, image=image))
        if elements:
            lines += [self.render(Click(element=3), screen=screen, image=image),
                      self.render(Type("hello", element=5), screen=screen, image=image)]
        return "\n".join(lines)

    # --- model text -> actions ----------------------------------------------------

    @safe_parse
    def parse(self, text: str, *, screen: tuple[int, int], image: tuple[int, int]) -> ParseResult:
        thought, action_text, count = split_action_line(text)
        if count > 1:
            raise ParseFailure(f"the answer has {count} 'Action:' lines; give exactly one action per answer. "
                               f"{self.expected_form()}", thought=thought)
        if action_text is None:
            try:  # lenient: a bare call with no labels at all
                calls = parse_calls(text)
            except ParseFailure:
                calls = []
            if len(calls) != 1:
                raise ParseFailure(f"no 'Action:' line. {self.expected_form()}", thought=thought)
            thought, action_text = None, text
        try:
            calls = parse_calls(action_text)
        except ParseFailure as exc:
            raise ParseFailure(f"Action {shorten(action_text)!r}: {exc.message}. {self.expected_form()}",
                               thought=thought) from None
        if not calls:
            raise ParseFailure(f"'Action:' is empty. {self.expected_form()}", thought=thought)
        if len(calls) > 1:
            raise ParseFailure(f"the Action line has {len(calls)} calls; give exactly one action per answer",
                               thought=thought)
        try:
            action = self._action(calls[0], screen=screen, image=image)
        except ParseFailure as exc:
            raise ParseFailure(exc.message, thought=thought) from None
        return ParseResult(actions=(action,), thought=thought)

    def _action(self, call: Call, *, screen: tuple[int, int], image: tuple[int, int]) -> Action:
        kind = call.name
        if kind not in ACTION_TYPES:
            known = ", ".join(ACTION_TYPES)
            raise ParseFailure(f"unknown action {kind!r}; use one of: {known}")
        specs = action_fields(kind)
        by_name = {spec.name: spec for spec in specs}
        if len(call.args) > len(specs):
            raise ParseFailure(f"{kind} takes at most {len(specs)} values; write it as {self.signature(kind)}")
        values: dict[str, Any] = {}
        for spec, value in zip(specs, call.args):
            values[spec.name] = value
        for key, value in call.kwargs.items():
            if key not in by_name:
                raise ParseFailure(f"{kind} has no argument {key!r}; write it as {self.signature(kind)}")
            if key in values:
                raise ParseFailure(f"{kind}: {key} is given twice")
            values[key] = value
        missing = [spec.name for spec in specs if spec.required and spec.name not in values]
        given_points = [spec.name for spec in specs if spec.axis is not None and spec.name in values]
        if given_points:  # an optional point (click's, for an element) is still given whole
            missing += [spec.name for spec in specs if spec.axis is not None and spec.name not in values]
        if missing:
            raise ParseFailure(f"{kind} needs {' and '.join(missing)}; write it as {self.signature(kind)}")
        form = self.signature(kind, element=ELEMENT_FIELD in values)
        try:
            kwargs = {name: self._convert(kind, by_name[name], value) for name, value in values.items()}
            self._map_points(kind, kwargs, screen=screen, image=image)
            return ACTION_TYPES[kind](**kwargs)
        except ParseFailure as exc:
            raise ParseFailure(f"{exc.message}; write it as {form}") from None
        except ActionError as exc:
            raise ParseFailure(f"{exc}; write it as {form}") from None

    def _convert(self, kind: str, spec: FieldSpec, value: Any) -> Any:
        label = f"{kind}.{spec.name}"
        is_number = isinstance(value, (int, float)) and not isinstance(value, bool)
        if spec.name == ELEMENT_FIELD:
            return None if value is None else element_id(value, label)
        if spec.kind in ("int", "optional_int"):
            if value is None and spec.kind == "optional_int":
                return None
            if not is_number:
                shown = "null" if value is None else _format_value(value)
                raise ParseFailure(f"{label} must be a number, got {shown}")
            if spec.axis is None:
                if isinstance(value, float) and not value.is_integer():
                    raise ParseFailure(f"{label} must be a whole number, got {value!r}")
                return int(value)
            return value  # coordinates are mapped (and rounded) with their pair
        if spec.kind == "float":
            if not is_number:
                raise ParseFailure(f"{label} must be a number, got {value!r}")
            return float(value)
        if spec.kind == "str":
            if not isinstance(value, str):
                raise ParseFailure(f'{label} must be a quoted string like "...", got {value!r}')
            return value
        if spec.kind == "optional_str":
            if value is not None and not isinstance(value, str):
                raise ParseFailure(f'{label} must be a quoted string like "...", got {value!r}')
            return value
        if spec.kind == "keys":
            if isinstance(value, str):
                return split_keys(value)
            if isinstance(value, (list, tuple)) and value and all(isinstance(v, str) for v in value):
                return tuple(value)
            raise ParseFailure(f'{label} must be key names joined by "+", like "ctrl+s", got {value!r}')
        raise ParseFailure(f"{label}: unsupported field kind {spec.kind}")

    def _map_points(self, kind: str, kwargs: dict[str, Any], *, screen: tuple[int, int],
                    image: tuple[int, int]) -> None:
        """Map each (…x, …y) coordinate pair from the model's space to screen pixels."""
        for spec in action_fields(kind):
            if spec.axis != "x" or spec.name not in kwargs:
                continue
            y_name = spec.name[:-1] + "y"
            if y_name not in kwargs:
                continue
            sx, sy = self.coordinates.to_screen(kwargs[spec.name], kwargs[y_name], screen=screen,
                                                image=image, what=f"{kind} ({spec.name}, {y_name})")
            kwargs[spec.name], kwargs[y_name] = sx, sy

    # --- actions -> model text ----------------------------------------------------

    def render(self, action: Action, *, screen: tuple[int, int], image: tuple[int, int],
               thought: str | None = None) -> str:
        data = action_to_dict(action)
        kind = data.pop("kind")
        if names_element(action):  # written by its element, whether or not the sandbox resolved it
            data = {name: value for name, value in data.items()
                    if not any(spec.name == name and spec.axis for spec in action_fields(kind))}
        for spec in action_fields(kind):
            if spec.axis == "x" and spec.name in data:
                y_name = spec.name[:-1] + "y"
                data[spec.name], data[y_name] = self.coordinates.from_screen(
                    data[spec.name], data[y_name], screen=screen, image=image)
        parts = []
        for spec in action_fields(kind):
            value = getattr(action, spec.name) if spec.kind == "keys" else data.get(spec.name)
            if not spec.required and value == spec.default and spec.kind != "keys":
                continue
            if spec.kind == "keys":
                value = "+".join(value)
            if value is None:
                continue
            parts.append(f"{spec.name}={_format_value(value)}")
        line = f"Action: {kind}({', '.join(parts)})"
        if thought is not None:
            if any(line_.strip().lower().startswith("action:") for line_ in thought.splitlines()):
                raise FormatError("a thought must not contain an 'Action:' line")
            return f"Thought: {thought.strip()}\n{line}"
        return line
