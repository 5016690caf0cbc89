"""Action formats: round trips through render/parse, real model outputs, malformed
outputs (never an exception, never executed), the coordinate rule, and `deskdojo parse`."""

from __future__ import annotations

import dataclasses
import json
import math
import random
import subprocess
import sys
from pathlib import Path

import pytest

from deskdojo.agent.formats import (FORMATS, DeskdojoFormat, FormatError, ParseResult, PyAutoGUIFormat,
                                    QwenComputerUseFormat, UITarsFormat, get_format)
from deskdojo.agent.formats.base import action_fields
from deskdojo.core.actions import (ACTION_TYPES, Action, Click, Done, Drag, Fail, Key, Move, Scroll, Type,
                                   Wait, action_points)
from deskdojo.perception.resize import (CoordinateMap, image_to_screen, image_tokens, screen_to_image,
                                        smart_resize)

REPO = Path(__file__).resolve().parents[1]
DESKDOJO_BIN = REPO / ".venv" / "bin" / "deskdojo"

SCREEN = (1280, 800)
IMAGE = smart_resize(SCREEN)  # (1288, 812): larger than the screen, so absolute round trips are exact
WHERE = {"screen": SCREEN, "image": IMAGE}


# --- the coordinate rule ------------------------------------------------------------


def test_smart_resize_matches_the_published_token_counts():
    assert smart_resize((1280, 800)) == (1288, 812)
    assert image_tokens((1280, 800)) == 1334
    assert smart_resize((1920, 1080)) == (1932, 1092)
    assert image_tokens((1920, 1080)) == 2691
    # measured with the real processor (NOTES.md): 640x480 at three budgets
    assert image_tokens((640, 480)) == 391
    assert image_tokens((640, 480), max_pixels=256 * 28 * 28) == 234
    assert image_tokens((640, 480), max_pixels=64 * 28 * 28) == 54


def test_smart_resize_scales_into_the_budget_keeping_aspect():
    # 1920x1080 under Qwen2.5-VL's processor default max_pixels = 1280*28*28, worked by hand
    assert smart_resize((1920, 1080), max_pixels=1280 * 28 * 28) == (1316, 728)
    # below min_pixels (UI-TARS's 100*28*28): scale up, round each side up
    assert smart_resize((100, 50), min_pixels=100 * 28 * 28) == (420, 224)
    width, height = smart_resize((1000, 37))
    assert width % 28 == 0 and height % 28 == 0
    with pytest.raises(ValueError, match="aspect ratio"):
        smart_resize((10000, 20))


def test_image_and_screen_points_map_both_ways():
    assert image_to_screen(644, 406, IMAGE, SCREEN) == (640, 400)
    assert screen_to_image(640, 400, IMAGE, SCREEN) == (644, 406)
    for x, y in [(0, 0), (1279, 799), (1, 1), (641, 399), (333, 777)]:
        assert image_to_screen(*screen_to_image(x, y, IMAGE, SCREEN), IMAGE, SCREEN) == (x, y)
    # a smaller image than the screen loses up to ceil(scale / 2) pixels
    small = smart_resize((1920, 1080), max_pixels=1280 * 28 * 28)
    mapping = CoordinateMap((1920, 1080), small)
    worst = max(abs(mapping.to_screen(*mapping.to_image(x, 500))[0] - x) for x in range(0, 1920, 7))
    assert worst <= math.ceil(1920 / small[0] / 2)


# --- round trips ----------------------------------------------------------------------

CLICKS_ALL = [Click(640, 400), Click(10, 790, count=2), Click(1279, 0, count=3), Click(5, 5, button="right"),
              Click(700, 300, button="middle"), Click(3, 4, button="right", count=2)]
TEXTS = ["hello world", 'say "hi"', "it's", "line one\nline two\n", "back\\slash", "tab\there",
         "ünïcødé — 中文 😀", "{json: [1, 2]}", "a'b\"c"]
KEYS = [("enter",), ("ctrl", "s"), ("ctrl", "shift", "t"), ("alt", "f4"), ("ctrl", "+"), ("a",), ("super",)]

EXPRESSIBLE: dict[str, list[Action]] = {
    "deskdojo": [*CLICKS_ALL, Move(100, 200), Drag(10, 20, 1000, 700), Drag(1, 2, 3, 4, button="right"),
                 Scroll(640, 400, dy=3), Scroll(640, 400, dy=-10), Scroll(5, 6, dx=2), Scroll(5, 6, dx=-1, dy=4),
                 *[Type(t) for t in TEXTS], *[Key(k) for k in KEYS], Wait(1.0), Wait(2.5), Wait(0.0),
                 Done(), Done(answer="42"), Done(answer='a "quoted"\nanswer'), Fail(), Fail(reason="no such file")],
    "uitars": [Click(640, 400), Click(10, 790, count=2), Click(5, 5, button="right"), Move(100, 200),
               Drag(10, 20, 1000, 700), Scroll(640, 400, dy=5), Scroll(640, 400, dy=-5), Scroll(1, 2, dx=5),
               Scroll(1, 2, dx=-5), *[Type(t) for t in TEXTS], *[Key(k) for k in KEYS if k != ("ctrl", "+")],
               Wait(5.0), Done(), Done(answer="The total is 42"), Done(answer="it's \"x\"")],
    "qwen_computer_use": [*CLICKS_ALL[:5], Move(100, 200), Drag(10, 20, 1000, 700), Scroll(640, 400, dy=3),
                          Scroll(640, 400, dy=-10), Scroll(5, 6, dx=2), Scroll(5, 6, dx=-7),
                          *[Type(t) for t in TEXTS], *[Key(k) for k in KEYS], Wait(1.0), Wait(2.5),
                          Done(), Done(answer="42")],
    "pyautogui": [*CLICKS_ALL, Move(100, 200), Drag(10, 20, 1000, 700), Drag(1, 2, 3, 4, button="right"),
                  Scroll(640, 400, dy=3), Scroll(640, 400, dy=-10), Scroll(5, 6, dx=2), Scroll(5, 6, dx=-1),
                  *[Type(t) for t in TEXTS], *[Key(k) for k in KEYS], Wait(1.0), Wait(0.5), Done()],
}
EXPRESSIBLE["uitars_v1"] = EXPRESSIBLE["uitars"]
EXPRESSIBLE["qwen3_computer_use"] = EXPRESSIBLE["qwen_computer_use"]
EXPRESSIBLE["grid"] = EXPRESSIBLE["deskdojo"]  # every kind; points snap to 16 px cell centres
RELATIVE = {"uitars_v1", "qwen3_computer_use"}
SNAPPING = {"grid": 8}  # coordinates within half a cell


def close_enough(got: Action, want: Action, tolerance: int) -> bool:
    """Equal, except screen coordinates may differ by ``tolerance`` pixels."""
    if type(got) is not type(want):
        return False
    for spec in action_fields(want.kind):
        a, b = getattr(got, spec.name), getattr(want, spec.name)
        if spec.axis is not None:
            if abs(a - b) > tolerance:
                return False
        elif a != b:
            return False
    return True


def test_every_registered_format_is_covered_and_named_by_its_key():
    assert set(FORMATS) == set(EXPRESSIBLE)
    for name, fmt in FORMATS.items():
        assert fmt.name == name
        assert get_format(name) is fmt


@pytest.mark.parametrize("name", sorted(EXPRESSIBLE))
def test_render_then_parse_gives_the_action_back(name):
    fmt = FORMATS[name]
    # relative 0..1000 coordinates lose up to one pixel on a 1280-wide screen (inherent);
    # absolute image pixels of a larger image lose nothing
    tolerance = SNAPPING.get(name, 1 if name in RELATIVE else 0)
    for action in EXPRESSIBLE[name]:
        text = fmt.render(action, **WHERE)
        result = fmt.parse(text, **WHERE)
        assert result.error is None, (action, text, result.error)
        assert len(result.actions) == 1, (action, text, result.actions)
        assert close_enough(result.actions[0], action, tolerance), (action, text, result.actions[0])


@pytest.mark.parametrize("name", sorted(EXPRESSIBLE))
def test_a_thought_survives_the_round_trip(name):
    fmt = FORMATS[name]
    text = fmt.render(Click(640, 400), thought="The OK button is in the middle.", **WHERE)
    result = fmt.parse(text, **WHERE)
    assert result.thought == "The OK button is in the middle."
    assert result.actions == (Click(640, 400),) or name in RELATIVE or name in SNAPPING


def test_the_deskdojo_format_round_trips_every_action_kind():
    kinds = {action.kind for action in EXPRESSIBLE["deskdojo"]}
    assert kinds == set(ACTION_TYPES)


NAMING_ELEMENTS = ("deskdojo", "grid", "pyautogui", "qwen_computer_use", "qwen3_computer_use")
ELEMENT_ACTIONS = [Click(element=12), Click(element=0, button="right"), Click(element=7, count=2),
                   Click(element=99_999, button="middle"), Type("hello", element=3),
                   Type('say "hi"\nthen enter\n', element=40), Scroll(element=3, dy=3), Scroll(element=12, dx=-10),
                   Scroll(element=0, dy=-50)]


@pytest.mark.parametrize("name", NAMING_ELEMENTS)
def test_actions_that_name_an_element_round_trip(name):
    fmt = FORMATS[name]
    for action in ELEMENT_ACTIONS:
        text = fmt.render(action, **WHERE)
        assert fmt.parse(text, **WHERE).actions == (action,), (name, text)
        thought = fmt.parse(fmt.render(action, **WHERE, thought="It is listed."), **WHERE)
        assert thought.actions == (action,) and thought.thought == "It is listed."
    # an action the sandbox resolved (element and its centre) is written by its element
    resolved = Click(640, 400, element=5)
    assert fmt.parse(fmt.render(resolved, **WHERE), **WHERE).actions == (Click(element=5),)
    wheel = Scroll(640, 400, dy=2, element=5)
    assert fmt.parse(fmt.render(wheel, **WHERE), **WHERE).actions == (Scroll(element=5, dy=2),)


@pytest.mark.parametrize("name", sorted(FORMATS))
def test_element_actions_are_offered_only_where_the_observation_lists_elements(name):
    fmt = FORMATS[name]
    plain, listed = fmt.prompt(**WHERE), fmt.prompt(**WHERE, elements=True)
    marker = {"deskdojo": "element=<id>", "grid": "click #id", "pyautogui": "tag_N"}.get(name, '"element"')
    assert marker not in plain
    if name.startswith("uitars"):  # UI-TARS has no way to name an element: it acts by points
        assert listed == plain
        with pytest.raises(FormatError, match="cannot name an element"):
            fmt.render(Click(element=3), **WHERE)
        with pytest.raises(FormatError, match="cannot name an element"):
            fmt.render(Scroll(element=3, dy=1), **WHERE)
        assert fmt.parse(fmt.render(Scroll(640, 400, dy=1, element=3), **WHERE), **WHERE).actions[0].element is None
        assert fmt.parse(fmt.render(Click(640, 400, element=3), **WHERE), **WHERE).actions[0].element is None
    else:
        assert marker in listed


MALFORMED_ELEMENTS = {
    "deskdojo": ["Action: click(element=-1)", 'Action: click(element="first")', "Action: click(element=1.5)",
                 "Action: click(element=123456789)", "Action: type(text=\"x\", element=[1])",
                 "Action: click(element=null)", "Action: scroll(element=3)", "Action: scroll(x=4, dy=2, element=3)"],
    "grid": ["click #", "click #abc", "click #-1", "click #1.5", "click #12 <x1> <y2>", "type #3 hello",
             "click # 3", "type #x \"hi\"", "click #3 sideways", "scroll #x down", "scroll #"],
    "pyautogui": ["pyautogui.click(tag_)", "pyautogui.click(tag_abc)", "pyautogui.click(tag_1, 5)",
                  "pyautogui.moveTo(tag_3)", "pyautogui.dragTo(tag_2)", "pyautogui.scroll(3, tag_2, 5)",
                  "pyautogui.write(tag_3)", "pyautogui.click([tag_1])", "pyautogui.click(tag_1)\npyautogui.click()",
                  "pyautogui.click(tag_999999999)"],
    "qwen_computer_use": ['{"name": "computer_use", "arguments": {"action": "left_click", "element": "x"}}',
                          '{"name": "computer_use", "arguments": {"action": "left_click", "element": true}}',
                          '{"name": "computer_use", "arguments": {"action": "left_click", "element": [1]}}',
                          '{"name": "computer_use", "arguments": {"action": "left_click", "element": -4}}',
                          '{"name": "computer_use", "arguments": {"action": "scroll", "element": 3}}',
                          '{"name": "computer_use", "arguments": {"action": "mouse_move", "element": 3}}',
                          '{"name": "computer_use", "arguments": {"action": "type", "element": 3}}'],
}


@pytest.mark.parametrize("name", sorted(MALFORMED_ELEMENTS))
def test_a_malformed_element_reference_is_a_parse_error_that_says_what_an_id_is(name):
    fmt = FORMATS[name]
    for text in MALFORMED_ELEMENTS[name]:
        result = fmt.parse(text, **WHERE)
        assert not result.ok and not result.actions, (name, text, result)
        assert any(word in result.error for word in ("element", "tag", "needs", "unexpected", "quoted")), result.error
    first_words = next(t for t in MALFORMED_ELEMENTS[name] if "abc" in t or '"x"' in t or "first" in t)
    assert "ids are the whole numbers 0..100000" in fmt.parse(first_words, **WHERE).error


def test_pyautogui_and_qwen_scroll_over_an_element_as_they_click_one():
    code, qwen = FORMATS["pyautogui"], FORMATS["qwen_computer_use"]
    # the tag stands for the element's centre, a point pyautogui.scroll takes as its x
    assert code.render(Scroll(element=12, dy=3), **WHERE) == "```python\npyautogui.scroll(-3, tag_12)\n```"
    assert code.parse("pyautogui.scroll(5, x=tag_4)", **WHERE).actions == (Scroll(element=4, dy=-5),)
    assert code.parse("pyautogui.hscroll(-2, tag_4)", **WHERE).actions == (Scroll(element=4, dx=-2),)
    assert code.parse("pyautogui.scroll(-3, tag_2)\npyautogui.scroll(-3, 10, 20)", **WHERE).actions == (
        Scroll(element=2, dy=3), Scroll(10, 20, dy=3))
    assert code.parse(code.render(Scroll(element=4, dx=1, dy=2), **WHERE), **WHERE).actions == (
        Scroll(element=4, dy=2), Scroll(element=4, dx=1))  # two axes: two calls, as with a point
    assert "pyautogui.scroll(-3, tag_12)" in code.prompt(**WHERE, elements=True)
    refused = code.parse("pyautogui.scroll(-3, tag_2, 5)", **WHERE).error
    assert "takes the tag alone, without y" in refused
    assert "pyautogui.scroll(-3, tag_12)" in code.parse("pyautogui.moveTo(tag_3)", **WHERE).error
    # the computer_use tool: "element" in place of "coordinate"
    call = json.loads(qwen.render(Scroll(element=7, dy=3), **WHERE).split("\n")[1])
    assert call["arguments"] == {"action": "scroll", "element": 7, "pixels": -3}
    assert qwen.parse('{"name": "computer_use", "arguments": {"action": "hscroll", "element": 7, "pixels": 4}}',
                      **WHERE).actions == (Scroll(element=7, dx=4),)
    assert "`scroll` and `hscroll` turn the wheel there" in qwen.prompt(**WHERE, elements=True)
    refused = qwen.parse('{"name": "computer_use", "arguments": {"action": "scroll", "element": 7}}', **WHERE).error
    assert 'scroll needs a non-zero number "pixels"' in refused


def test_round_trip_with_an_image_smaller_than_the_screen():
    screen, image = (1920, 1080), smart_resize((1920, 1080), max_pixels=1280 * 28 * 28)
    tolerance = math.ceil(screen[0] / image[0] / 2)
    for name in ("deskdojo", "uitars", "qwen_computer_use", "pyautogui"):
        fmt = FORMATS[name]
        for action in (Click(1919, 1079), Drag(0, 0, 999, 555), Move(1001, 3), Scroll(77, 1001, dy=5)):
            result = fmt.parse(fmt.render(action, screen=screen, image=image), screen=screen, image=image)
            assert close_enough(result.actions[0], action, tolerance), (name, action, result)


def test_lossy_actions_map_to_the_nearest_expressible_one_or_refuse():
    uitars, qwen, code = FORMATS["uitars"], FORMATS["qwen_computer_use"], FORMATS["pyautogui"]
    # UI-TARS: no scroll amount, a fixed wait, a fixed call_user reason
    assert uitars.parse(uitars.render(Scroll(1, 2, dy=2), **WHERE), **WHERE).actions == (Scroll(1, 2, dy=5),)
    assert uitars.parse(uitars.render(Wait(1.0), **WHERE), **WHERE).actions == (Wait(5.0),)
    assert uitars.parse(uitars.render(Fail("x"), **WHERE), **WHERE).actions[0].kind == "fail"
    with pytest.raises(FormatError):
        uitars.render(Click(1, 2, button="middle"), **WHERE)
    with pytest.raises(FormatError):
        uitars.render(Scroll(1, 2, dx=1, dy=1), **WHERE)
    # Qwen: failure carries no reason; a two-axis scroll is two tool calls
    assert qwen.parse(qwen.render(Fail("why"), **WHERE), **WHERE).actions[0].kind == "fail"
    assert qwen.parse(qwen.render(Scroll(5, 6, dx=1, dy=2), **WHERE), **WHERE).actions == (
        Scroll(5, 6, dy=2), Scroll(5, 6, dx=1))
    with pytest.raises(FormatError):
        qwen.render(Drag(1, 2, 3, 4, button="right"), **WHERE)
    # pyautogui: no answer text; FAIL carries no reason
    with pytest.raises(FormatError):
        code.render(Done(answer="42"), **WHERE)
    assert code.parse(code.render(Fail("why"), **WHERE), **WHERE).actions == (Fail("FAIL"),)


# --- prompts ------------------------------------------------------------------------


def test_the_deskdojo_prompt_is_derived_from_the_schema():
    prompt = FORMATS["deskdojo"].prompt(**WHERE)
    with_elements = FORMATS["deskdojo"].prompt(**WHERE, elements=True)
    for kind, cls in ACTION_TYPES.items():
        assert f"- {kind}(" in prompt
        for field in dataclasses.fields(cls):
            assert f"{field.name}=" in with_elements
            if field.name != "element":  # offered only where the observation lists elements
                assert f"{field.name}=" in prompt
    assert "element" not in prompt and "- click(button=\"left\", count=1, element=<id>)" in with_elements
    assert "1288x812" in prompt and "``" not in prompt
    # every example in the prompt parses
    examples = [line for line in prompt.splitlines() if line.startswith("Action: ") and "<" not in line]
    assert len(examples) >= 4
    for line in examples:
        assert FORMATS["deskdojo"].parse(line, **WHERE).ok, line


@pytest.mark.parametrize("name", sorted(FORMATS))
def test_each_prompt_states_the_coordinate_space(name):
    prompt = FORMATS[name].prompt(**WHERE)
    assert ("1000" in prompt) if name in RELATIVE else ("1288x812" in prompt)


def test_qwen_prompt_carries_a_valid_tool_schema():
    prompt = FORMATS["qwen3_computer_use"].prompt(**WHERE)
    tools = prompt.split("<tools>\n", 1)[1].split("\n</tools>", 1)[0]
    schema = json.loads(tools)
    assert schema["function"]["name"] == "computer_use"
    assert "left_click_drag" in schema["function"]["parameters"]["properties"]["action"]["enum"]


def test_unknown_format_names_the_known_ones():
    with pytest.raises(FormatError, match="deskdojo, uitars"):
        get_format("nope")
    with pytest.raises(FormatError):
        UITarsFormat(coordinates="percent")


# --- real-looking model outputs ----------------------------------------------------------


def parsed(name: str, text: str, **where) -> ParseResult:
    result = FORMATS[name].parse(text, **(where or WHERE))
    assert result.error is None, result.error
    return result


def test_deskdojo_samples():
    result = parsed("deskdojo", "Thought: The file menu is closed; open it first.\nAction: click(x=30, y=14)")
    assert result.thought == "The file menu is closed; open it first."
    assert result.actions == (Click(30, 14),)
    assert parsed("deskdojo", 'Action: type(text="report.txt\\n")').actions == (Type("report.txt\n"),)
    assert parsed("deskdojo", 'Action: key(keys="ctrl+shift+t")').actions == (Key(("ctrl", "shift", "t")),)
    assert parsed("deskdojo", "Action: scroll(x=644, y=406, dy=-3)").actions == (Scroll(640, 400, dy=-3),)
    assert parsed("deskdojo", "Action: drag(x=0, y=0, to_x=1288, to_y=812, button=\"right\")").actions == (
        Drag(0, 0, 1280, 800, button="right"),)
    assert parsed("deskdojo", 'Action: done(answer="3 files")').actions == (Done("3 files"),)
    assert parsed("deskdojo", "Action: wait(seconds=0.5)").actions == (Wait(0.5),)
    assert parsed("deskdojo", "Action: click(644.4, 406.6)").actions == (Click(640, 401),)  # positional, rounded
    assert parsed("deskdojo", "click(x=1, y=2, count=2)").actions == (Click(1, 2, count=2),)  # no labels
    assert parsed("deskdojo", 'Action: key(keys=["alt", "F4"])').actions == (Key(("alt", "f4")),)


def test_uitars_samples_from_the_docs():
    s15 = {"screen": (1920, 1080), "image": smart_resize((1920, 1080), min_pixels=100 * 28 * 28)}
    # README_deploy's expected output (UI-TARS-1.5), absolute in the resized image
    text = ("Thought: 我看到Preferences窗口已经打开了，让我点击它看看里面有什么选项。\n"
            "Action: click(start_box='(177,549)')")
    result = parsed("uitars", text, **s15)
    assert result.thought.startswith("我看到Preferences") and result.actions == (Click(176, 543),)
    assert parsed("uitars", "Action: click(start_box='<|box_start|>(177,549)<|box_end|>')", **s15).actions == (
        Click(176, 543),)
    assert parsed("uitars", "Thought: Open it.\nAction: left_double(point='<point>966 546</point>')",
                  **s15).actions == (Click(960, 540, count=2),)
    assert parsed("uitars", "Action: right_single(start_box='[100, 200, 120, 220]')", **s15).actions == (
        Click(109, 208, button="right"),)
    assert parsed("uitars", "Action: drag(start_point='<point>10 20</point>', end_point='<point>300 400</point>')",
                  **s15).actions == (Drag(10, 20, 298, 396),)
    assert parsed("uitars", "Action: hotkey(key='ctrl c')").actions == (Key(("ctrl", "c")),)
    assert parsed("uitars", "Action: hotkey(key='arrowdown')").actions == (Key(("down",)),)
    assert parsed("uitars", "Action: type(content='hello\\n')").actions == (Type("hello\n"),)
    assert parsed("uitars", "Action: type(content='It's 5 o'clock')").actions == (Type("It's 5 o'clock"),)
    assert parsed("uitars", "Action: scroll(start_box='(644,406)', direction='up')").actions == (
        Scroll(640, 400, dy=-5),)
    assert parsed("uitars", "Action: scroll(direction='down')").actions == (Scroll(640, 400, dy=5),)
    assert parsed("uitars", "Action: wait()").actions == (Wait(5.0),)
    assert parsed("uitars", "Action: finished()").actions == (Done(),)
    assert parsed("uitars", "Action: finished(content='The answer is 7')").actions == (Done("The answer is 7"),)
    assert parsed("uitars", "Action: call_user()").actions[0].kind == "fail"
    # several actions after one label, separated by a blank line (UI-TARS's own convention)
    assert parsed("uitars", "Thought: t\nAction: click(start_box='(10,10)')\n\ntype(content='x')").actions == (
        Click(10, 10), Type("x"))
    # Reflection / Action_Summary variants keep their text as the thought
    assert parsed("uitars", "Action_Summary: close it\nAction: hotkey(key='alt f4')").thought == "close it"


def test_uitars_1_0_relative_coordinates():
    result = parsed("uitars_v1", "Thought: click the centre\nAction: click(start_box='(500,500)')")
    assert result.actions == (Click(640, 400),)
    assert parsed("uitars_v1", "Action: click(start_box='(1000,1000)')").actions == (Click(1279, 799),)  # clamped
    assert parsed("uitars_v1", "Action: click(start_box='(490,490,510,510)')").actions == (Click(640, 400),)
    bad = FORMATS["uitars_v1"].parse("Action: click(start_box='(1500,20)')", **WHERE)
    assert not bad.actions and "0..1000" in bad.error


def test_qwen_samples():
    call = '<tool_call>\n{{"name": "computer_use", "arguments": {args}}}\n</tool_call>'
    assert parsed("qwen_computer_use", "I will click Save.\n" + call.format(
        args='{"action": "left_click", "coordinate": [644, 406]}')).actions == (Click(640, 400),)
    assert parsed("qwen_computer_use", call.format(args='{"action": "key", "keys": ["ctrl", "a"]}')).actions == (
        Key(("ctrl", "a")),)
    assert parsed("qwen_computer_use", call.format(args='{"action": "key", "keys": ["Return"]}')).actions == (
        Key(("enter",)),)
    assert parsed("qwen_computer_use", call.format(args='{"action": "key", "keys": ["ctrl+Page_Down"]}')
                  ).actions == (Key(("ctrl", "pagedown")),)
    assert parsed("qwen_computer_use", call.format(args='{"action": "type", "text": "hello\\nworld"}')).actions == (
        Type("hello\nworld"),)
    assert parsed("qwen_computer_use", call.format(
        args='{"action": "scroll", "coordinate": [644, 406], "pixels": -5}')).actions == (Scroll(640, 400, dy=5),)
    assert parsed("qwen_computer_use", call.format(args='{"action": "hscroll", "pixels": 3}')).actions == (
        Scroll(640, 400, dx=3),)
    assert parsed("qwen_computer_use", call.format(args='{"action": "wait", "time": 2}')).actions == (Wait(2.0),)
    assert parsed("qwen_computer_use", call.format(args='{"action": "terminate", "status": "success"}')).actions == (
        Done(),)
    assert parsed("qwen_computer_use", call.format(args='{"action": "triple_click", "coordinate": [10, 10]}')
                  ).actions == (Click(10, 10, count=3),)
    # Qwen2.5-VL drags from where the pointer is: a mouse_move first, merged into one Drag
    two = (call.format(args='{"action": "mouse_move", "coordinate": [10, 10]}') + "\n"
           + call.format(args='{"action": "left_click_drag", "coordinate": [300, 300]}'))
    assert parsed("qwen_computer_use", two).actions == (Drag(10, 10, 298, 296),)
    # answer then terminate (Qwen3-VL's habit): one Done carrying the answer
    both = (call.format(args='{"action": "answer", "text": "42"}') + "\n"
            + call.format(args='{"action": "terminate", "status": "success"}'))
    assert parsed("qwen3_computer_use", both).actions == (Done("42"),)
    # Qwen3-VL: 0..1000 relative; <think> reasoning kept as the thought
    result = parsed("qwen3_computer_use", "<think>The icon is at the centre.</think>\n" + call.format(
        args='{"action": "double_click", "coordinate": [500, 500]}'))
    assert result.actions == (Click(640, 400, count=2),) and result.thought == "The icon is at the centre."
    # arguments sent as a JSON string, and a missing closing tag at the end of generation
    assert parsed("qwen_computer_use", '<tool_call>\n{"name": "computer_use", "arguments": '
                  '"{\\"action\\": \\"mouse_move\\", \\"coordinate\\": [1, 2]}"}').actions == (Move(1, 2),)


def test_pyautogui_samples_in_osworld_style():
    text = ("The Save dialog is open. I will type the name and press Enter.\n"
            "```python\nimport pyautogui\nimport time\n\npyautogui.click(640, 400)\ntime.sleep(0.5)\n"
            "pyautogui.typewrite('report.txt', interval=0.05)\npyautogui.press('enter')\n```")
    result = parsed("pyautogui", text, screen=SCREEN, image=SCREEN)
    assert result.thought == "The Save dialog is open. I will type the name and press Enter."
    assert result.actions == (Click(640, 400), Wait(0.5), Type("report.txt"), Key(("enter",)))
    same = {"screen": SCREEN, "image": SCREEN}
    assert parsed("pyautogui", "```python\n# open the menu\npyautogui.rightClick(x=100, y=200)\n```",
                  **same).actions == (Click(100, 200, button="right"),)
    assert parsed("pyautogui", "```python\npyautogui.moveTo(100, 100)\npyautogui.dragTo(400, 300, duration=1.0, "
                  "button='left')\n```", **same).actions == (Drag(100, 100, 400, 300),)
    assert parsed("pyautogui", "```python\npyautogui.mouseDown(10, 10)\npyautogui.moveTo(50, 60)\n"
                  "pyautogui.mouseUp()\n```", **same).actions == (Drag(10, 10, 50, 60),)
    assert parsed("pyautogui", "```python\npyautogui.mouseDown(10, 10, button='right')\npyautogui.mouseUp()\n```",
                  **same).actions == (Click(10, 10, button="right"),)
    assert parsed("pyautogui", "```python\npyautogui.scroll(-5, x=300, y=200)\n```", **same).actions == (
        Scroll(300, 200, dy=5),)
    assert parsed("pyautogui", "```python\npyautogui.moveTo(300, 200)\npyautogui.scroll(3)\n```", **same).actions == (
        Scroll(300, 200, dy=-3),)
    assert parsed("pyautogui", "```python\npyautogui.scroll(-500)\n```", **same).actions == (
        Scroll(640, 400, dy=50),)  # centre of the screen, capped
    assert parsed("pyautogui", "```python\npyautogui.hscroll(4, x=1, y=2)\n```", **same).actions == (
        Scroll(1, 2, dx=4),)
    assert parsed("pyautogui", "```python\npyautogui.keyDown('shift')\npyautogui.typewrite('ab')\n"
                  "pyautogui.keyUp('shift')\n```", **same).actions == (Key(("shift", "a")), Key(("shift", "b")))
    assert parsed("pyautogui", "```python\npyautogui.keyDown('alt')\npyautogui.keyUp('alt')\n```",
                  **same).actions == (Key(("alt",)),)
    assert parsed("pyautogui", "```python\npyautogui.press(['tab', 'tab', 'space'])\n```", **same).actions == (
        Key(("tab",)), Key(("tab",)), Key(("space",)))
    assert parsed("pyautogui", "```python\npyautogui.press('down', presses=2)\n```", **same).actions == (
        Key(("down",)), Key(("down",)))
    assert parsed("pyautogui", "```python\npyautogui.click((5, 6), clicks=2)\n```", **same).actions == (
        Click(5, 6, count=2),)
    assert parsed("pyautogui", "```python\npyautogui.moveTo(10, 10)\npyautogui.click()\n```", **same).actions == (
        Click(10, 10),)
    assert parsed("pyautogui", "```WAIT```").actions == (Wait(),)
    assert parsed("pyautogui", "I have finished the task.\nDONE").actions == (Done(),)
    assert parsed("pyautogui", "```\nFAIL\n```").actions == (Fail("FAIL"),)
    # the UI-TARS -> OSWorld conversion writes a docstring first: harmless, ignored
    assert parsed("pyautogui", "```python\n'''\nObservation:\n\nThought: x\n'''\npyautogui.click(1, 2)\n```",
                  **same).actions == (Click(1, 2),)
    # coordinates in screenshot pixels are mapped when the screenshot was resized
    assert parsed("pyautogui", "```python\npyautogui.click(644, 406)\n```").actions == (Click(640, 400),)


# --- malformed outputs ----------------------------------------------------------------

MALFORMED: dict[str, list[str]] = {
    "deskdojo": ["", "   ", "I think I should click the button", "Action:", "Action: clack(x=1, y=2)",
                 "Action: click(x=1)", 'Action: click(x="1", y=2)', "Action: click(x=1, y=2, z=3)",
                 'Action: type(text="unterminated)', "Action: type(text=hello)", "Action: click(x=1, y=2",
                 "Action: click(x=1, y=2) extra", "Action: click(x=1, y=2)\nAction: click(x=3, y=4)",
                 "Action: click(x=1, y=2) click(x=3, y=4)", 'Action: click(x=__import__("os"), y=1)',
                 "Action: click(x=1, y=2, count=9)", 'Action: click(x=1, y=2, button="sideways")',
                 "Action: scroll(x=1, y=2)", 'Action: key(keys="ctrl+")', 'Action: key(keys="hyper")',
                 "Action: wait(seconds=-1)", 'Action: type(text="")', "Action: click(x=1e400, y=2)",
                 "Action: click(x=[1], y=2)", "Action: os.system('x')", "Action: click(x=1, x=2, y=3)",
                 "Action: " + "[" * 50 + "]" * 50, "Action: click(x=0x10, y=2)"],
    "uitars": ["", "Thought: only thinking", "Action: frobnicate(start_box='(1,2)')", "Action: click()",
               "Action: click(start_box='(1,2,3)')", "Action: click(start_box='here')",
               "Action: click(start_box=(1, 2, 3))", "Action: drag(start_box='(1,2)')",
               "Action: scroll(start_box='(1,2)', direction='sideways')", "Action: type(content='')",
               "Action: hotkey(key='')", "Action: click(start_box='(1,2)'", "Action: type(content='x'",
               "Action: click(start_box=__import__('os').system('x'))", "Action: hotkey(key='ctrl hyper')"],
    "qwen_computer_use": ["", "Sure! I'll click it.", "<tool_call>\nnot json\n</tool_call>",
                          '<tool_call>\n{"name": "browser", "arguments": {}}\n</tool_call>',
                          '<tool_call>\n{"name": "computer_use", "arguments": {"action": "fly"}}\n</tool_call>',
                          '<tool_call>\n{"name": "computer_use", "arguments": {"action": "left_click"}}\n</tool_call>',
                          '<tool_call>\n{"name": "computer_use", "arguments": {"action": "left_click", '
                          '"coordinate": "here"}}\n</tool_call>',
                          '<tool_call>\n{"name": "computer_use", "arguments": {"action": "left_click", '
                          '"coordinate": [1, 2, 3]}}\n</tool_call>',
                          '<tool_call>\n{"name": "computer_use", "arguments": {"action": "left_click_drag", '
                          '"coordinate": [1, 2]}}\n</tool_call>',
                          '<tool_call>\n{"name": "computer_use", "arguments": {"action": "scroll", "pixels": 0}}'
                          '\n</tool_call>',
                          '<tool_call>\n{"name": "computer_use", "arguments": {"action": "key", "keys": []}}\n</tool_call>',
                          '<tool_call>\n{"name": "computer_use", "arguments": {"action": "type", "text": 5}}\n</tool_call>',
                          '<tool_call>\n{"name": "computer_use", "arguments": {"action": "terminate"}}\n</tool_call>',
                          '<tool_call>\n{"name": "computer_use", "arguments": {"action": "wait", "time": "soon"}}'
                          '\n</tool_call>',
                          '<tool_call>\n["computer_use"]\n</tool_call>',
                          '<tool_call>\n{"name": "computer_use", "arguments": {"action": "left_click", "coordinate"'],
    "pyautogui": ["", "```python\n```", "I will click.", "```python\npyautogui.click(\n```",
                  "```python\npyautogui.locateCenterOnScreen('button.png')\n```",
                  "```python\npyautogui.screenshot()\n```", "```python\nx = 100\npyautogui.click(x, 200)\n```",
                  "```python\npyautogui.click(x, 200)\n```", "```python\nfor i in range(3):\n    pyautogui.press('tab')\n```",
                  "```python\nwhile True:\n    pass\n```", "```python\nif True:\n    pyautogui.click(1, 2)\n```",
                  "```python\nimport os\n```", "```python\nimport pyautogui as pg\npg.click(1, 2)\n```",
                  "```python\nfrom os import system\n```", "```python\npyautogui.click(lambda: 1, 2)\n```",
                  "```python\npyautogui.click(1 + 1, 2)\n```", "```python\npyautogui.click(*[1, 2])\n```",
                  "```python\npyautogui.click(**{'x': 1})\n```", "```python\npyautogui.click(1, 2, bogus=3)\n```",
                  "```python\npyautogui.FAILSAFE = False\n```", "```python\npyautogui.a.b.c(1)\n```",
                  "```python\ndef f():\n    pass\n```", "```python\nprint('hi')\n```",
                  "```python\npyautogui.click()\n```", "```python\npyautogui.dragTo(5, 5)\n```",
                  "```python\npyautogui.mouseDown(1, 2)\n```", "```python\npyautogui.mouseUp(1, 2)\n```",
                  "```python\npyautogui.keyDown('ctrl')\n```", "```python\npyautogui.keyUp('ctrl')\n```",
                  "```python\npyautogui.typewrite(5)\n```", "```python\npyautogui.press('hyperkey')\n```",
                  "```python\npyautogui.click(1, 2, clicks=10)\n```", "```python\ntime.sleep(1000)\n```",
                  "```python\npyautogui.click('a', 2)\n```", "```python\n[pyautogui.click(1, 2)]\n```",
                  "```python\n" + "(" * 300 + ")" * 300 + "\n```", "```python\nwith open('f') as f: pass\n```",
                  "```python\npyautogui.click(1, 2) if True else None\n```"],
}
MALFORMED["uitars_v1"] = MALFORMED["uitars"]
MALFORMED["qwen3_computer_use"] = MALFORMED["qwen_computer_use"]


@pytest.mark.parametrize("name", sorted(MALFORMED))
def test_malformed_output_is_an_error_not_an_exception(name):
    fmt = FORMATS[name]
    for text in MALFORMED[name]:
        result = fmt.parse(text, **WHERE)
        assert result.error, (text, result)
        assert result.actions == (), (text, result)
        assert "parser failed" not in result.error, (text, result.error)  # no parser bug behind it


def test_errors_say_what_was_wrong_and_show_the_expected_form():
    fmt = FORMATS["deskdojo"]
    error = fmt.parse("Action: click(x=1)", **WHERE).error
    assert "needs y" in error and "click(x=<int>, y=<int>" in error
    error = fmt.parse('Action: type(text="abc)', **WHERE).error
    assert "unterminated string" in error and "Action:" in error
    assert "use one of: click, move" in fmt.parse("Action: tap(x=1, y=2)", **WHERE).error
    error = FORMATS["pyautogui"].parse("```python\nimport pyautogui\nos.system('rm -rf /')\n```", **WHERE).error
    assert "line 2" in error and "os.system" in error
    error = FORMATS["pyautogui"].parse("```python\npyautogui.click(1, 2)\nx = 3\n```", **WHERE).error
    assert "line 2" in error and "assignment" in error


def test_pyautogui_code_is_never_executed(tmp_path):
    marker = tmp_path / "pwned"
    attempts = [
        f"```python\n__import__('os').system('touch {marker}')\n```",
        f"```python\nimport os\nos.system('touch {marker}')\n```",
        f"```python\nopen('{marker}', 'w').write('x')\n```",
        f"```python\npyautogui.click(__import__('os').system('touch {marker}'), 1)\n```",
        f"```python\npyautogui.typewrite(open('{marker}', 'w').name)\n```",
        f"```python\n(lambda: __import__('os').system('touch {marker}'))()\n```",
        f"```python\nexec(\"open('{marker}', 'w')\")\n```",
        f"```python\neval(\"open('{marker}', 'w')\")\n```",
        f"```python\npyautogui.__class__.__init__.__globals__['os'].system('touch {marker}')\n```",
        f"```python\n[c for c in ().__class__.__base__.__subclasses__()]\n```",
        f"```python\nimport subprocess\nsubprocess.run(['touch', '{marker}'])\n```",
        f"```python\npyautogui.typewrite(f\"{{open('{marker}', 'w')}}\")\n```",
        f"```python\n@__import__('os').system('touch {marker}')\ndef f(): pass\n```",
    ]
    for text in attempts:
        result = FORMATS["pyautogui"].parse(text, **WHERE)
        assert result.error and not result.actions, text
    assert not marker.exists()


def test_the_deskdojo_parser_evaluates_nothing(tmp_path):
    marker = tmp_path / "pwned"
    for name in ("deskdojo", "uitars"):
        text = f"Action: type(text=open('{marker}', 'w').name)"
        result = FORMATS[name].parse(text, **WHERE)
        assert result.error and not result.actions
    assert not marker.exists()


def test_a_fuzz_of_random_and_truncated_outputs_never_raises():
    rng = random.Random(1234)
    alphabet = "abcxyz_ ()[]{}<>=,.:;'\"\\\n\t-+0123456789`|#@!?*/" + "é中😀"
    words = ["Action:", "Thought:", "click", "type", "drag", "scroll", "key", "(", ")", "x=", "y=", "'", '"',
             "<tool_call>", "</tool_call>", '{"name": "computer_use", "arguments": {', '"action":', "}", "```python\n",
             "```", "pyautogui.", "click(", "import ", "start_box=", "<point>", "</point>", "<|box_start|>", "\n"]
    renders = [fmt.render(action, **WHERE) for name, fmt in FORMATS.items() for action in EXPRESSIBLE[name]]
    samples: list[str] = []
    for _ in range(400):
        samples.append("".join(rng.choice(alphabet) for _ in range(rng.randint(0, 80))))
    for _ in range(400):
        samples.append("".join(rng.choice(words) for _ in range(rng.randint(0, 12))))
    for _ in range(400):
        text = rng.choice(renders)
        cut = rng.randint(0, len(text))
        samples.append(text[:cut] if rng.random() < 0.7 else text[:cut] + text[cut + 1:])
    assert len(samples) >= 1000
    for text in samples:
        for fmt in FORMATS.values():
            result = fmt.parse(text, **WHERE)
            assert isinstance(result, ParseResult)
            assert (result.error is None) != (result.actions == ()), (fmt.name, text, result)
            if result.error:
                assert "parser failed" not in result.error, (fmt.name, text, result.error)
            for action in result.actions:
                assert all(isinstance(v, int) for p in action_points(action) for v in p)
    # non-text and oversized input are errors too
    for fmt in FORMATS.values():
        assert fmt.parse(None, **WHERE).error  # type: ignore[arg-type]
        assert fmt.parse("x" * 100_000, **WHERE).error


def test_formats_with_other_options():
    fmt = DeskdojoFormat(coordinates="relative1000")
    assert fmt.parse("Action: click(x=500, y=500)", **WHERE).actions == (Click(640, 400),)
    uitars_box = UITarsFormat(style="box")
    assert "start_box='(644,406)'" in uitars_box.render(Click(640, 400), **WHERE)
    qwen = QwenComputerUseFormat(pixels_per_click=100)
    text = '<tool_call>\n{"name": "computer_use", "arguments": {"action": "scroll", "pixels": -300}}\n</tool_call>'
    assert qwen.parse(text, **WHERE).actions == (Scroll(640, 400, dy=3),)
    assert '"pixels": -300' in qwen.render(Scroll(640, 400, dy=3), **WHERE)
    code = PyAutoGUIFormat()
    assert code.parse("```python\npyautogui.click(10, 10)\n```", screen=SCREEN, image=SCREEN).actions == (Click(10, 10),)
    with pytest.raises(FormatError):
        code.parse("DONE", screen=(0, 10), image=SCREEN)  # a caller's mistake, not the model's


# --- deskdojo parse -----------------------------------------------------------------


def run_parse(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(DESKDOJO_BIN), "parse", *args], input=stdin, capture_output=True, text=True,
                          timeout=60, check=False)


def test_cli_parse_prints_actions_as_json():
    out = run_parse("--format", "deskdojo", "--screen", "1280x800", "--image", "1288x812",
                    "Thought: go\nAction: click(x=644, y=406)")
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout) == {"actions": [{"kind": "click", "x": 640, "y": 400, "button": "left",
                                                   "count": 1}], "thought": "go"}
    out = run_parse("--format", "pyautogui", "--screen", "1280x800", "-",
                    stdin="```python\npyautogui.hotkey('ctrl', 's')\ntime.sleep(1)\n```")
    assert out.returncode == 0, out.stderr
    assert [a["kind"] for a in json.loads(out.stdout)["actions"]] == ["key", "wait"]


def test_cli_parse_exits_2_with_the_error_as_json():
    out = run_parse("--format", "uitars", "--screen", "1280x800", "Action: teleport()")
    assert out.returncode == 2
    assert "unknown action 'teleport'" in json.loads(out.stdout)["error"]
    out = run_parse("--format", "nope", "--screen", "1280x800", "x")
    assert out.returncode != 0 and "invalid choice" in out.stderr


def test_importing_the_cli_and_formats_stays_light():
    code = ("import sys, deskdojo.cli, deskdojo.agent.formats, deskdojo.perception;"
            "deskdojo.cli.build_parser();"
            "print([m for m in ('numpy', 'cv2', 'PIL', 'torch') if m in sys.modules])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
