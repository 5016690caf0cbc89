"""What of an Observation goes into the policy's prompt in each observation mode: the
element table (cut to a budget by ``fit_to_budget``'s rule) and, for ``som``, the
screenshot with numbered marks. Acting and training both come here, so a prompt rebuilt
from a trajectory's record is the prompt that acted.

Modes (OSWorld's names): ``screenshot`` (pixels only), ``a11y_tree`` (the element table
only: no image), ``screenshot_a11y_tree`` (both), ``som`` (the screenshot with each listed
element's box and id drawn on it, and the table with the same ids).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from deskdojo.core.elements import MODES_WITH_ELEMENTS, Element, ElementList, fit_to_budget
from deskdojo.core.types import Observation

DEFAULT_ELEMENT_BUDGET = 2400
"""Characters of element rows per prompt (about 60 rows; some 800 tokens of a Qwen tokenizer)."""


@dataclass(frozen=True, slots=True)
class ShownElements:
    """The elements one prompt shows (id order) and how many of the listing it left out."""

    elements: tuple[Element, ...]
    left_out: int
    listed: bool  # False: the observation carried no listing at all
    truncated: str = ""  # the listing's own note when the guest or host cut it


def element_row(element: Element, *, screen: tuple[int, int], image: tuple[int, int]) -> str:
    """``12 button "Save" enabled,focused 40,10,64,24``: id, role, name (JSON-quoted, so a
    name cannot start a new row), states (``-`` for none), box x,y,w,h in ``image`` pixels."""
    from deskdojo.perception.resize import screen_to_image

    x, y, w, h = element.box
    x0, y0 = screen_to_image(x, y, image, screen)
    x1, y1 = screen_to_image(x + w, y + h, image, screen)
    states = ",".join(sorted(element.states)) or "-"
    name = json.dumps(element.name, ensure_ascii=False)
    return f"{element.id} {element.role} {name} {states} {x0},{y0},{x1 - x0},{y1 - y0}"


def shown_elements(observation: Observation, *, budget: int, image: tuple[int, int]) -> ShownElements:
    """The rows that fit ``budget`` characters, chosen by ``fit_to_budget``'s rule
    (on-screen first, then nearest the focused element)."""
    listing: ElementList | None = observation.elements
    if listing is None:
        return ShownElements((), 0, listed=False)
    screen = tuple(observation.screen_size)

    def cost(element: Element) -> int:
        return len(element_row(element, screen=screen, image=image)) + 1

    kept, left_out = fit_to_budget(listing.elements, screen, budget=budget, cost=cost)
    return ShownElements(tuple(kept), left_out, listed=True, truncated=listing.truncated)


def element_table(shown: ShownElements, *, screen: tuple[int, int], image: tuple[int, int]) -> str:
    """The prompt's element table, with a line that says how many rows were left out."""
    if not shown.listed:
        return "Elements: none listed (the sandbox gave no element listing for this screen).\n"
    if not shown.elements and not shown.left_out:
        return "Elements: none on this screen.\n"
    lines = [f"Elements (id role \"name\" states box x,y,w,h in pixels of a {image[0]}x{image[1]} "
             "view of the screen):"]
    lines += [element_row(e, screen=screen, image=image) for e in shown.elements]
    if shown.left_out:
        lines.append(f"({shown.left_out} more elements left out: those off screen or farthest from the focus)")
    if shown.truncated:
        lines.append(f"(the listing itself was cut: {shown.truncated})")
    return "\n".join(lines) + "\n"


def marked_screenshot(observation: Observation, shown: ShownElements) -> Any:
    """``som``: the observation's screenshot with the shown elements' marks drawn on it."""
    from deskdojo.perception.marks import draw_marks

    return draw_marks(observation.screenshot, shown.elements)


def needs_elements(mode: str) -> bool:
    """Whether observations in ``mode`` must carry an element listing."""
    return mode in MODES_WITH_ELEMENTS
