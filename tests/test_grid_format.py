"""The grid action format: every Action kind round-trips (coordinates snap to cell
centres), malformed and random output is an error and never an exception, and the
tiny tokenizer holds every grid cell as one token."""

from __future__ import annotations

import random

import pytest

from deskdojo.agent.formats import FORMATS, FormatError, GridFormat, get_format
from deskdojo.agent.formats.grid import grid_shape
from deskdojo.core.actions import ACTION_TYPES, Click, Done, Drag, Fail, Key, Move, Scroll, Type, Wait

SCREEN = (1024, 768)
WHERE = {"screen": SCREEN, "image": (448, 336)}
GRID = get_format("grid")

ACTIONS = [
    Click(100, 200), Click(0, 0), Click(1023, 767), Click(5, 5, button="right"), Click(7, 9, count=2),
    Click(500, 300, button="middle", count=3), Move(640, 400), Drag(10, 20, 1000, 700),
    Drag(1, 2, 3, 4, button="right"), Scroll(640, 400, dy=3), Scroll(640, 400, dy=-10),
    Scroll(5, 6, dx=2), Scroll(5, 6, dx=-1, dy=4), Type("hello world"), Type('say "hi"\nnext line'),
    Type("ünïcødé — 中文 😀"), Type("line\u2028separator"), Key(("enter",)), Key(("ctrl", "s")),
    Key(("ctrl", "+")), Key(("alt", "f4")), Wait(1.0), Wait(2.5), Wait(0.0), Done(), Done(answer="42"),
    Done(answer='a "quoted"\nanswer'), Fail(), Fail("no such file"),
]


def snapped(action, fmt=GRID, screen=SCREEN):
    """What render -> parse gives back: points at the centre of their cell."""
    import dataclasses

    changes = {}
    for x_name in ("x", "to_x"):
        if hasattr(action, x_name):
            y_name = x_name[:-1] + "y"
            changes[x_name], changes[y_name] = fmt.snap(getattr(action, x_name), getattr(action, y_name),
                                                        screen=screen)
    return dataclasses.replace(action, **changes) if changes else action


def test_grid_is_registered_and_covers_every_action_kind():
    assert FORMATS["grid"] is GRID and GRID.name == "grid"
    assert {a.kind for a in ACTIONS} == set(ACTION_TYPES)


@pytest.mark.parametrize("action", ACTIONS, ids=lambda a: a.kind)
def test_render_then_parse_round_trips_to_the_cell_centre(action):
    text = GRID.render(action, **WHERE)
    assert "\n" not in text
    result = GRID.parse(text, **WHERE)
    assert result.error is None, (text, result.error)
    assert result.actions == (snapped(action),), text
    # a second round trip changes nothing: cell centres are fixed points
    assert GRID.render(result.actions[0], **WHERE) == text


def test_coordinates_are_screen_cells_whatever_the_image_size():
    assert GRID.render(Click(100, 200), **WHERE) == "click <x6> <y12>"
    assert GRID.render(Click(100, 200), screen=SCREEN, image=(1036, 784)) == "click <x6> <y12>"
    assert GRID.parse("click <x6> <y12>", **WHERE).actions == (Click(104, 200),)
    assert grid_shape(SCREEN) == (64, 48)
    # a partial last cell on a screen that is not a multiple of 16: its centre is clamped on screen
    assert grid_shape((1000, 750)) == (63, 47)
    assert GRID.parse("click <x62> <y46>", screen=(1000, 750), image=(1000, 750)).actions == (Click(999, 744),)
    assert GridFormat(cell=32).render(Click(100, 200), **WHERE) == "click <x3> <y6>"


def test_a_thought_survives_the_round_trip():
    text = GRID.render(Click(640, 400), thought="The OK button is in the middle.", **WHERE)
    result = GRID.parse(text, **WHERE)
    assert result.thought == "The OK button is in the middle."
    assert result.actions == (Click(648, 408),)


def test_off_screen_actions_cannot_be_written():
    with pytest.raises(FormatError, match="off the 1024x768 screen"):
        GRID.render(Click(1024, 5), **WHERE)
    with pytest.raises(FormatError):
        GRID.render(Drag(0, 0, -1, 5), **WHERE)
    with pytest.raises(FormatError):
        GridFormat(cell=1)


MALFORMED = [
    "", "   ", "garbage", "click", "click <x3>", "click <x64> <y0>", "click <x0> <y48>",
    "click <x1> <y2> <x3> <y4>", "click <x1> <y2> sideways", "click <x1> <y2> left 4", "move <x1> <y2> left",
    "drag <x1> <y2>", "scroll <x1> <y2>", "scroll <x1> <y2> down", "scroll <x1> <y2> down 99",
    "scroll <x1> <y2> diagonal 3", "type", "type hello", 'type "unclosed', 'type "a" extra', "type 42",
    "type \"\"", "key", "key ctrl s", "key nosuchkey", "key ctrl++++x", "wait forever", "wait -1",
    "wait 1000", 'done "a" "b"', "done 42", "fail reason", "click <x1> <y2>\ntype \"a\"",
    "Action: click <x1> <y2>\nAction: click <x3> <y4>", "CLICK <x1> <y2>", "click <x1><y2",
]


@pytest.mark.parametrize("text", MALFORMED)
def test_malformed_output_is_an_error_not_an_exception(text):
    result = GRID.parse(text, **WHERE)
    assert result.error and not result.actions, (text, result)


def test_errors_say_what_to_write():
    assert "click <x12> <y30>" in GRID.parse("garbage", **WHERE).error
    assert "<x0>..<x63>" in GRID.parse("click <x64> <y0>", **WHERE).error
    assert "double-quoted" in GRID.parse("type hello", **WHERE).error


def test_a_scroll_names_an_element_by_its_number_and_the_point_form_still_parses():
    assert GRID.parse("scroll #3 down 3", **WHERE).actions == (Scroll(element=3, dy=3),)
    assert GRID.parse("scroll #12 left 10", **WHERE).actions == (Scroll(element=12, dx=-10),)
    assert GRID.parse("scroll #4 up 2 right 1", **WHERE).actions == (Scroll(element=4, dx=1, dy=-2),)
    assert GRID.parse("scroll <x3> <y4> down 3", **WHERE).actions == (Scroll(56, 72, dy=3),)
    assert GRID.render(Scroll(element=3, dy=3), **WHERE) == "scroll #3 down 3"
    assert GRID.render(Scroll(element=12, dx=-10), **WHERE) == "scroll #12 left 10"
    # resolved by the sandbox (its point and its element): still said by its element
    assert GRID.render(Scroll(177, 514, dy=3, element=3), **WHERE) == "scroll #3 down 3"
    # the answer-forms line is the one the shipped reader was pretrained with
    assert GRID.prompt(**WHERE, elements=True).endswith('click #id | type #id "text" (an element of the list)')


@pytest.mark.parametrize("text, says", [
    ("scroll #x down", "'x' is not an element id; ids are the whole numbers 0..100000 of the element list; "
                       "write scroll #12 down 3"),
    ("scroll #3 down", "write a direction (up, down, left, right) then wheel clicks 1..50, like scroll #3 down 3"),
    ("scroll #3", "scroll needs a direction and wheel clicks, like scroll #3 down 3"),
    ("scroll #3 <x1> <y2> down 3", "like scroll #3 down 3"),
    ("scroll #3 down 99", "scroll.dy must be <= 50"),
])
def test_a_malformed_element_scroll_says_what_to_write(text, says):
    result = GRID.parse(text, **WHERE)
    assert not result.actions and says in result.error, result.error


def test_a_fuzz_of_random_and_truncated_outputs_never_raises():
    rng = random.Random(7)
    renders = [GRID.render(a, **WHERE) for a in ACTIONS]
    pieces = ["click", "<x3>", "<y4>", "<x99>", " ", "\n", '"', "\\", "type", "scroll", "down", "3", "#", "#7",
              "Action:", "Thought:", "+", "key", "drag", "é", "\u2028", "done", "-", "1e9", "nan"]
    cases = [text[:cut] for text in renders for cut in range(len(text) + 1)]
    cases += ["".join(rng.choice(pieces) for _ in range(rng.randint(1, 12))) for _ in range(1500)]
    cases += ["".join(chr(rng.randint(0, 0x2FFF)) for _ in range(rng.randint(1, 40))) for _ in range(500)]
    for text in cases:
        result = GRID.parse(text, **WHERE)
        assert (result.error is None) != (not result.actions), text
        for action in result.actions:
            x, y = getattr(action, "x", 0), getattr(action, "y", 0)
            assert (x, y) == (None, None) or (0 <= x < SCREEN[0] and 0 <= y < SCREEN[1])


def test_the_prompt_names_the_grid_and_every_verb():
    prompt = GRID.prompt(**WHERE)
    assert "<x0>..<x63>" in prompt and "<y0>..<y47>" in prompt and "448x336" in prompt
    for verb in ("click", "move", "drag", "scroll", "type", "key", "wait", "done", "fail"):
        assert verb in prompt


def test_the_tiny_tokenizer_holds_each_cell_as_one_token():
    from transformers import AutoTokenizer

    from deskdojo.agent.tiny import TINY_DIR

    tokenizer = AutoTokenizer.from_pretrained(str(TINY_DIR))
    columns, rows = grid_shape((2048, 2048))
    for name in [f"<x{i}>" for i in range(columns)] + [f"<y{i}>" for i in range(rows)]:
        ids = tokenizer(name, add_special_tokens=False)["input_ids"]
        assert len(ids) == 1 and tokenizer.decode(ids) == name
    text = GRID.render(Drag(10, 20, 1000, 700), **WHERE)
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    assert tokenizer.decode(ids) == text and len(ids) <= 9  # drag, 4 cells, spaces
