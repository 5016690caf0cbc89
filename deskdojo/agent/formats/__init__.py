"""Action formats: how a model writes actions, each derived from the one Action schema.

Each format gives the prompt text that tells a model how to answer, a parser that
turns the answer into Actions in screen pixels (and never raises on model output),
and a renderer that writes what a model should have answered (SFT targets).

>>> from deskdojo.agent.formats import get_format
>>> fmt = get_format("deskdojo")
>>> fmt.parse("Thought: open it\\nAction: click(x=644, y=406)", screen=(1280, 800), image=(1288, 812)).actions
(Click(x=640, y=400, button='left', count=1),)
"""

from __future__ import annotations

from deskdojo.agent.formats.base import (ActionFormat, CoordinateSpace, FormatError, ParseResult)
from deskdojo.agent.formats.deskdojo import DeskdojoFormat
from deskdojo.agent.formats.grid import GridFormat
from deskdojo.agent.formats.pyautogui_code import PyAutoGUIFormat
from deskdojo.agent.formats.qwen import QwenComputerUseFormat
from deskdojo.agent.formats.uitars import UITarsFormat

FORMATS: dict[str, ActionFormat] = {
    fmt.name: fmt for fmt in (
        DeskdojoFormat(),
        UITarsFormat(coordinates="absolute"),            # UI-TARS-1.5: pixels of the resized image
        UITarsFormat(coordinates="relative1000"),        # UI-TARS 1.0: 0..1000
        QwenComputerUseFormat(coordinates="absolute"),   # Qwen2.5-VL: pixels of the resized image
        QwenComputerUseFormat(coordinates="relative1000"),  # Qwen3-VL: 0..1000
        PyAutoGUIFormat(),                               # OSWorld: screen pixels
        GridFormat(),                                    # tiny models: 16 px cells of the screen
    )
}
"""Ready-made formats by name; build a format class directly for other options."""


def get_format(name: str) -> ActionFormat:
    """The registered format called ``name``."""
    try:
        return FORMATS[name]
    except (KeyError, TypeError):
        raise FormatError(f"unknown action format {name!r}; known formats: {', '.join(FORMATS)}") from None


__all__ = ["FORMATS", "ActionFormat", "CoordinateSpace", "DeskdojoFormat", "FormatError", "GridFormat",
           "ParseResult", "PyAutoGUIFormat", "QwenComputerUseFormat", "UITarsFormat", "get_format"]
