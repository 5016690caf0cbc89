"""``deskdojo bench parse``: the worst-case time each action format takes to parse a
65,536-character answer (the longest one a parser reads), on adversarial inputs made to
trip backtracking regexes, deep recursion, and work that multiplies (one long
well-formed answer per format family is timed too).

Every case runs through every registered format: text written against one format's
syntax is just hostile text to the others. The budget is ``BUDGET_MS`` per answer: a
parse that takes longer stalls the rollout loop for every sandbox in the batch.
"""

from __future__ import annotations

import statistics
import time
from dataclasses import dataclass
from typing import Any, Iterable

from deskdojo.agent.formats.base import MAX_OUTPUT_CHARS
from deskdojo.core.progress import ProgressLine

BUDGET_MS = 50.0
"""The most one parse of a ``MAX_OUTPUT_CHARS`` answer may take, worst case."""

SCREEN = (1280, 800)
IMAGE = (1288, 812)  # smart_resize((1280, 800)): what Qwen2.5-VL and UI-TARS-1.5 see


@dataclass(frozen=True, slots=True)
class Case:
    """One answer to time. ``family`` is the format family whose syntax it speaks
    (None: no format's); ``well_formed`` answers must parse in that family."""

    name: str
    text: str
    family: str | None = None
    well_formed: bool = False


def fill(head: str, unit: str, tail: str = "", *, size: int = MAX_OUTPUT_CHARS) -> str:
    """``head``, then ``unit`` repeated (the last copy cut to fit), then ``tail``:
    exactly ``size`` characters."""
    room = size - len(head) - len(tail)
    if room < 0 or not unit:
        raise ValueError(f"cannot fill {size} characters with head {len(head)} and tail {len(tail)}")
    return head + (unit * (room // len(unit) + 1))[:room] + tail


def _joined(head: str, units: Iterable[str], tail: str = "", *, size: int = MAX_OUTPUT_CHARS) -> str:
    """Like ``fill`` with distinct units (taken in order until the text is full)."""
    parts, length = [head], len(head) + len(tail)
    for unit in units:
        if length + len(unit) > size:
            break
        parts.append(unit)
        length += len(unit)
    return fill("".join(parts), " ", tail, size=size) if length < size else "".join(parts) + tail


_PROSE = ("The dialog shows a list of files; the Save button sits at the top left of the "
          "toolbar, next to Open. I will click it and then check that the title changes. ")


def _generic_cases() -> list[Case]:
    half = MAX_OUTPUT_CHARS // 2
    return [
        Case("digits", fill("", "1")),
        Case("digits-then-junk", fill("", "1", "x")),
        Case("spaces", fill("", " ")),
        Case("newlines", fill("", "\n")),
        Case("mixed-whitespace", fill("", " \t\n\r\x0b\x0c\u00a0\u3000")),
        Case("open-parens", fill("", "(")),
        Case("open-brackets", fill("", "[")),
        Case("open-braces", fill("", "{")),
        Case("balanced-brackets", "[" * half + "]" * half),
        Case("unclosed-double-quote", fill('"', "a")),
        Case("unclosed-single-quote", fill("'", "a")),
        Case("backslashes", fill("", "\\")),
        Case("quotes", fill("", "'\"")),
        Case("action-labels", fill("", "Action: \n")),
        Case("thought-labels", fill("", "Thought: ")),
        Case("think-tags", fill("", "<think></think>")),
        Case("call-prefixes", fill("", "click(")),
        Case("tool-call-openings", fill("", "<tool_call>")),
        Case("fences", fill("", "```")),
        Case("point-tags", fill("", "<point>")),
        Case("unicode", fill("", "é漢😀\u200b")),
    ]


def _deskdojo_cases() -> list[Case]:
    a = "Thought: t\nAction: "
    return [
        Case("dd-long-number", fill(a + "click(x=", "1", ", y=1)"), "deskdojo"),
        Case("dd-long-float", fill(a + "click(x=1.", "1", "e5, y=1)"), "deskdojo"),
        Case("dd-digits-then-junk", fill(a + "click(x=", "1", "x, y=1)"), "deskdojo"),
        Case("dd-nested-lists", fill(a + "key(keys=", "["), "deskdojo"),
        Case("dd-many-values", fill(a + "key(keys=[", "1, ", "1])"), "deskdojo"),
        Case("dd-many-kwargs", _joined(a + "click(", (f"k{i}=1, " for i in range(20000)), ")"), "deskdojo"),
        Case("dd-many-calls", fill(a, "wait() "), "deskdojo"),
        Case("dd-long-string", fill(a + 'type(text="', "a", '")'), "deskdojo"),
        Case("dd-escapes", fill(a + 'type(text="', "\\n", '")'), "deskdojo"),
        Case("dd-surrogate-escapes", fill(a + 'type(text="', "\\ud83d\\ude00", '")'), "deskdojo"),
        Case("dd-unterminated-string", fill(a + 'type(text="', "\\\""), "deskdojo"),
        Case("dd-well-formed", fill("Thought: ", _PROSE, "\nAction: click(x=120, y=45)"), "deskdojo", True),
    ]


def _uitars_cases() -> list[Case]:
    a = "Thought: t\nAction: "
    return [
        Case("uitars-point-digits", fill(a + "click(start_box='(", "1", " x)')"), "uitars"),
        Case("uitars-point-digit-groups", fill(a + "click(start_box='(", "11 ", "x)')"), "uitars"),
        Case("uitars-box-commas", fill(a + "click(start_box='(", "9,", "')"), "uitars"),
        Case("uitars-point-spaces", fill(a + "click(start_box='(1", " ", "x)')"), "uitars"),
        Case("uitars-point-comma-spaces", fill(a + "click(start_box='(1", " ", ", ,2)')"), "uitars"),
        Case("uitars-point-tags", fill(a + "click(point='<point>", "1 ", "x</point>')"), "uitars"),
        Case("uitars-box-tags", fill(a + "click(start_box='", "<|box_start|>", "(1,2)')"), "uitars"),
        Case("uitars-point-decimals", fill(a + "click(start_box='(", "1.1 ", ".x)')"), "uitars"),
        Case("uitars-lenient-quotes", fill(a + "type(content='", "') ", "x"), "uitars"),
        Case("uitars-lenient-spaces", fill(a + "type(content='it's", " ", "x')"), "uitars"),
        Case("uitars-many-actions", fill(a, "click(start_box='(1,1)')\n\n"), "uitars"),
        Case("uitars-many-labels", fill("Thought: t\n", "Action: wait()\n"), "uitars"),
        Case("uitars-hotkey-keys", fill(a + "hotkey(key='", "ctrl ", "')"), "uitars"),
        Case("uitars-well-formed", fill("Thought: ", _PROSE, "\nAction: click(start_box='(120,45)')"),
             "uitars", True),
    ]


def _qwen_cases() -> list[Case]:
    call = '<tool_call>\n{"name": "computer_use", "arguments": '
    return [
        Case("qwen-deep-json", fill("<tool_call>\n", "["), "qwen"),
        Case("qwen-deep-arguments", fill(call, '{"a": '), "qwen"),
        Case("qwen-long-coordinate", fill(call + '{"action": "left_click", "coordinate": [', "1",
                                          ', 2]}}\n</tool_call>'), "qwen"),
        Case("qwen-coordinate-string", fill(call + '{"action": "left_click", "coordinate": "', "1 ",
                                            '"}}\n</tool_call>'), "qwen"),
        Case("qwen-long-text", fill(call + '{"action": "type", "text": "', "\\u00e9", '"}}\n</tool_call>'), "qwen"),
        Case("qwen-many-calls", fill("", '<tool_call>\n{"name": "computer_use", "arguments": {"action": '
                                         '"mouse_move", "coordinate": [1, 2]}}\n</tool_call>\n'), "qwen"),
        Case("qwen-unclosed-calls", fill("", "<tool_call>{"), "qwen"),
        Case("qwen-name-prefixes", fill("", '{"name"'), "qwen"),
        Case("qwen-closing-tags", fill("<tool_call>", "</tool_call"), "qwen"),
        Case("qwen-well-formed", fill("", _PROSE, '\n<tool_call>\n{"name": "computer_use", "arguments": '
                                                  '{"action": "left_click", "coordinate": [120, 45]}}\n</tool_call>'),
             "qwen", True),
    ]


def _pyautogui_cases() -> list[Case]:
    py = "```python\n"
    return [
        Case("pg-deep-parens", fill(py + "pyautogui.click", "("), "pyautogui"),
        Case("pg-deep-lists", fill(py + "pyautogui.press(", "[", "\n```"), "pyautogui"),
        Case("pg-unary-chain", fill(py + "pyautogui.click(", "-", "1)\n```"), "pyautogui"),
        Case("pg-not-chain", fill(py, "not ", "x\n```"), "pyautogui"),
        Case("pg-lambda-chain", fill(py, "lambda:", "1\n```"), "pyautogui"),
        Case("pg-attribute-chain", fill(py + "pyautogui", ".a", "()\n```"), "pyautogui"),
        Case("pg-call-chain", fill(py + "f", "()", "\n```"), "pyautogui"),
        Case("pg-subscript-chain", fill(py + "a", "[0]", "\n```"), "pyautogui"),
        Case("pg-binop-chain", fill(py + "pyautogui.click(1", "+1", ", 2)\n```"), "pyautogui"),
        Case("pg-compare-chain", fill(py + "x = 1", "<1", "\n```"), "pyautogui"),
        Case("pg-chained-assign", fill(py, "x=", "1\n```"), "pyautogui"),
        Case("pg-big-list-literal", fill(py + "x = [", "1,", "]\n```"), "pyautogui"),
        Case("pg-decorators", fill(py, "@d\n", "def f(): pass\n```"), "pyautogui"),
        Case("pg-many-statements", fill(py, "x=1\n", "```"), "pyautogui"),
        Case("pg-key-list", fill(py + "pyautogui.typewrite([", "'a',", "])\n```"), "pyautogui"),
        Case("pg-press-repeats", fill(py + "pyautogui.press([", "'a',", "], presses=20)\n```"), "pyautogui"),
        Case("pg-held-keys-typing", fill(py + "pyautogui.keyDown('shift')\npyautogui.typewrite('", "a",
                                         "')\npyautogui.keyUp('shift')\n```"), "pyautogui"),
        Case("pg-many-clicks", fill(py, "pyautogui.click(1, 2)\n", "```"), "pyautogui"),
        Case("pg-many-moves", fill(py, "pyautogui.moveTo(1, 2)\n", "```"), "pyautogui"),
        Case("pg-long-string", fill(py + "pyautogui.typewrite('", "\\x41", "')\n```"), "pyautogui"),
        Case("pg-unterminated-string", fill(py + "pyautogui.typewrite('", "a"), "pyautogui"),
        Case("pg-fence-lines", fill("", "```\n"), "pyautogui"),
        Case("pg-unfenced-lines", fill("", "pyautogui.\n"), "pyautogui"),
        Case("pg-indented-lines", fill("", " " * 200 + "x\n"), "pyautogui"),
        Case("pg-well-formed", fill("", _PROSE, "\n```python\npyautogui.click(120, 45)\n```"), "pyautogui", True),
    ]


def _grid_cases() -> list[Case]:
    return [
        Case("grid-long-cell", fill("click <x", "1", "> <y1>"), "grid"),
        Case("grid-cell-no-close", fill("click ", "<x1"), "grid"),
        Case("grid-many-points", fill("click ", "<x1> <y1> "), "grid"),
        Case("grid-point-spaces", fill("click <x1>", " ", "<y1> x"), "grid"),
        Case("grid-scroll-words", fill("scroll <x1> <y1> ", "down 1 "), "grid"),
        Case("grid-wait-digits", fill("wait ", "1"), "grid"),
        Case("grid-key-pluses", fill("key ", "+"), "grid"),
        Case("grid-string-escapes", fill('type "', "\\u00e9", '"'), "grid"),
        Case("grid-well-formed", fill("Thought: ", _PROSE, "\nAction: click <x7> <y2>"), "grid", True),
    ]


def adversarial_cases() -> list[Case]:
    """Every case, each exactly ``MAX_OUTPUT_CHARS`` characters."""
    cases = (_generic_cases() + _deskdojo_cases() + _uitars_cases() + _qwen_cases()
             + _pyautogui_cases() + _grid_cases())
    for case in cases:
        if len(case.text) != MAX_OUTPUT_CHARS:
            raise AssertionError(f"bench case {case.name} is {len(case.text)} characters, "
                                 f"not {MAX_OUTPUT_CHARS}")
    return cases


def format_family(fmt: Any) -> str:
    """deskdojo / uitars / qwen / pyautogui / grid: which syntax a format reads."""
    from deskdojo.agent.formats import (DeskdojoFormat, GridFormat, PyAutoGUIFormat,
                                        QwenComputerUseFormat, UITarsFormat)

    for cls, family in ((DeskdojoFormat, "deskdojo"), (UITarsFormat, "uitars"),
                        (QwenComputerUseFormat, "qwen"), (PyAutoGUIFormat, "pyautogui"),
                        (GridFormat, "grid")):
        if isinstance(fmt, cls):
            return family
    return type(fmt).__name__


def time_parse(fmt: Any, text: str, *, repeats: int) -> tuple[list[float], Any]:
    """``repeats`` timings (ms) of ``fmt.parse(text)``, and the last result."""
    timings, result = [], None
    for _ in range(repeats):
        started = time.perf_counter()
        result = fmt.parse(text, screen=SCREEN, image=IMAGE)
        timings.append((time.perf_counter() - started) * 1000)
    return timings, result


def run_parse_bench(*, repeats: int = 5, formats: Iterable[str] | None = None,
                    budget_ms: float = BUDGET_MS) -> dict[str, Any]:
    """Time every case through every format; worst (max) and median ms per pair."""
    from deskdojo.agent.formats import FORMATS

    if repeats < 1:
        raise ValueError(f"repeats must be at least 1, got {repeats}")
    names = list(formats) if formats is not None else list(FORMATS)
    cases = adversarial_cases()
    out: dict[str, Any] = {"budget_ms": budget_ms, "chars": MAX_OUTPUT_CHARS, "repeats": repeats,
                           "cases": len(cases), "formats": {}}
    with ProgressLine("bench parse", len(names) * len(cases), unit="cases") as line:
        for name in names:
            fmt = FORMATS[name]
            family = format_family(fmt)
            rows = []
            for case in cases:
                timings, result = time_parse(fmt, case.text, repeats=repeats)
                rows.append({"case": case.name, "max_ms": round(max(timings), 3),
                             "median_ms": round(statistics.median(timings), 3),
                             "parsed": bool(result.ok), "actions": len(result.actions),
                             "well_formed": case.well_formed and case.family == family,
                             "pass": max(timings) < budget_ms})
                line.advance(info=name)
            worst = max(rows, key=lambda row: row["max_ms"])
            out["formats"][name] = {"family": family, "worst_case": worst["case"], "worst_ms": worst["max_ms"],
                                    "worst_median_ms": worst["median_ms"],
                                    "pass": all(row["pass"] for row in rows), "rows": rows}
    out["pass"] = all(entry["pass"] for entry in out["formats"].values())
    return out


def print_parse_table(result: dict[str, Any], *, all_rows: bool = False) -> None:
    """One line per format (its worst case); with ``all_rows``, every case first."""
    budget = result["budget_ms"]
    if all_rows:
        print(f"{'format':20} {'case':28} {'max ms':>9} {'median ms':>9} {'parsed':>6}  budget")
        for name, entry in result["formats"].items():
            for row in entry["rows"]:
                print(f"{name:20} {row['case']:28} {row['max_ms']:9.2f} {row['median_ms']:9.2f} "
                      f"{'yes' if row['parsed'] else 'no':>6}  {'pass' if row['pass'] else 'FAIL'}")
        print()
    print(f"{result['chars']:,}-character answers, {result['cases']} cases each, "
          f"{result['repeats']} repeats; budget {budget:g} ms worst case")
    print(f"{'format':20} {'worst case':28} {'max ms':>9} {'median ms':>9}  budget")
    for name, entry in result["formats"].items():
        print(f"{name:20} {entry['worst_case']:28} {entry['worst_ms']:9.2f} {entry['worst_median_ms']:9.2f}  "
              f"{'pass' if entry['pass'] else 'FAIL'}")
