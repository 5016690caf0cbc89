"""On-screen UI elements: what perception found, for the policy's prompt and for
actions that name an element instead of a point.

A listing comes from the guest (``/v1/elements``): elements merged from Tk
introspection, AT-SPI and OCR, each with an id that is stable while the screen does
not change. The guest is untrusted, so ``ElementList.from_json`` checks every field
and caps sizes. Standard library only (the guest imports it too).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence

from deskdojo.core.errors import RecordError

ELEMENTS_FORMAT_VERSION = 1
OBSERVATION_MODES = ("screenshot", "a11y_tree", "screenshot_a11y_tree", "som")  # OSWorld's names
MODES_WITH_ELEMENTS = frozenset({"a11y_tree", "screenshot_a11y_tree", "som"})
MODES_WITH_PIXELS = frozenset({"screenshot", "screenshot_a11y_tree", "som"})
SOURCES = ("tk", "atspi", "ocr")
STATES = ("enabled", "focused", "checked", "selected", "expanded", "editable")
MAX_ELEMENTS = 400  # a listing past this is cut (and says so)
MAX_NAME_CHARS = 200  # a longer name or text is cut to this with a trailing "…"
MAX_ROLE_CHARS = 40
MAX_WINDOW_CHARS = 120
SCROLL_ROLES = frozenset({"list", "canvas", "scroll bar", "scroll pane", "text area", "document text", "tree",
                          "table"})
"""Roles whose area the mouse wheel scrolls: exploration scrolls over them, and a recorded
scroll names the one under its point."""


def check_mode(mode: str) -> str:
    """The observation mode, or an error that lists the ones there are."""
    if mode not in OBSERVATION_MODES:
        raise ValueError(f"observation mode {mode!r} is not one of: {', '.join(OBSERVATION_MODES)}")
    return mode


@dataclass(frozen=True, slots=True)
class Element:
    """One UI element: ``box`` is (x, y, width, height) in screen pixels."""

    id: int
    role: str
    name: str
    box: tuple[int, int, int, int]
    states: frozenset[str] = frozenset()
    window: str = ""
    source: str = "tk"

    def __post_init__(self) -> None:
        if isinstance(self.id, bool) or not isinstance(self.id, int) or self.id < 0:
            raise RecordError(f"element.id must be a non-negative integer, got {self.id!r}")
        for name, value, limit in (("role", self.role, MAX_ROLE_CHARS), ("name", self.name, MAX_NAME_CHARS),
                                   ("window", self.window, MAX_WINDOW_CHARS)):
            if not isinstance(value, str):
                raise RecordError(f"element {self.id}: {name} must be a string, got {value!r}")
            if len(value) > limit:
                object.__setattr__(self, name, value[:limit - 1] + "…")
        box = tuple(self.box) if isinstance(self.box, (list, tuple)) else None
        if box is None or len(box) != 4 or any(isinstance(v, bool) or not isinstance(v, int) for v in box):
            raise RecordError(f"element {self.id}: box must be 4 integers [x, y, w, h], got {self.box!r}")
        if box[2] < 0 or box[3] < 0:
            raise RecordError(f"element {self.id}: box width and height must be >= 0, got {box}")
        object.__setattr__(self, "box", box)
        states = frozenset(self.states)
        unknown = sorted(states - set(STATES))
        if unknown:
            raise RecordError(f"element {self.id}: unknown state {unknown[0]!r} (states: {', '.join(STATES)})")
        object.__setattr__(self, "states", states)
        if self.source not in SOURCES:
            raise RecordError(f"element {self.id}: source must be one of {', '.join(SOURCES)}, got {self.source!r}")

    @property
    def center(self) -> tuple[int, int]:
        x, y, w, h = self.box
        return x + w // 2, y + h // 2

    def to_json(self) -> dict[str, Any]:
        return {"id": self.id, "role": self.role, "name": self.name, "box": list(self.box),
                "states": sorted(self.states), "window": self.window, "source": self.source}

    @classmethod
    def from_json(cls, data: Any) -> Element:
        if not isinstance(data, Mapping):
            raise RecordError(f"an element must be a JSON object, got {type(data).__name__}")
        unknown = sorted(set(data) - {"id", "role", "name", "box", "states", "window", "source"})
        if unknown:
            raise RecordError(f"element has no field {unknown[0]!r}")
        missing = [key for key in ("id", "role", "name", "box") if key not in data]
        if missing:
            raise RecordError(f"element is missing {missing[0]!r}")
        states = data.get("states", [])
        if not isinstance(states, list) or not all(isinstance(s, str) for s in states):
            raise RecordError(f"element {data.get('id')!r}: states must be a list of names, got {states!r}")
        return cls(id=data["id"], role=data["role"], name=data["name"], box=data["box"],
                   states=frozenset(states), window=data.get("window", ""), source=data.get("source", "tk"))


@dataclass(frozen=True, slots=True)
class SourceReport:
    """How one source answered: ``ok`` with a count and time, or why not."""

    ok: bool
    count: int = 0
    ms: float = 0.0
    error: str = ""

    def to_json(self) -> dict[str, Any]:
        return {"ok": self.ok, "count": self.count, "ms": round(self.ms, 3), "error": self.error}


@dataclass(frozen=True, slots=True)
class ElementList:
    """One listing: elements in id order, which sources answered, and whether it was cut."""

    elements: tuple[Element, ...]
    sources: Mapping[str, SourceReport] = field(default_factory=dict)
    truncated: str = ""  # why and where the listing was cut; empty if it is whole
    listing: int = 0  # the guest's serial number of this listing (ids belong to it)

    def __post_init__(self) -> None:
        ids = [e.id for e in self.elements]
        if len(set(ids)) != len(ids):
            raise RecordError("element ids in one listing must be distinct")

    def by_id(self, element_id: int) -> Element | None:
        return next((e for e in self.elements if e.id == element_id), None)

    def to_json(self) -> dict[str, Any]:
        return {"version": ELEMENTS_FORMAT_VERSION, "listing": self.listing,
                "elements": [e.to_json() for e in self.elements],
                "sources": {name: report.to_json() for name, report in self.sources.items()},
                "truncated": self.truncated}

    @classmethod
    def from_json(cls, data: Any) -> ElementList:
        """Parse a guest's answer; a listing past MAX_ELEMENTS is cut and says so."""
        if not isinstance(data, Mapping):
            raise RecordError(f"an element listing must be a JSON object, got {type(data).__name__}")
        raw = data.get("elements")
        if not isinstance(raw, list):
            raise RecordError("an element listing needs an 'elements' list")
        truncated = data.get("truncated", "")
        if not isinstance(truncated, str):
            raise RecordError(f"listing.truncated must be a string, got {truncated!r}")
        if len(raw) > MAX_ELEMENTS:
            truncated = f"cut to {MAX_ELEMENTS} of {len(raw)} elements (the host's cap)"
            raw = raw[:MAX_ELEMENTS]
        sources: dict[str, SourceReport] = {}
        raw_sources = data.get("sources", {})
        if not isinstance(raw_sources, Mapping):
            raise RecordError("listing.sources must be an object")
        for name, report in raw_sources.items():
            if name not in SOURCES or not isinstance(report, Mapping):
                raise RecordError(f"listing.sources: unknown source {name!r} (sources: {', '.join(SOURCES)})")
            count, ms = report.get("count", 0), report.get("ms", 0.0)
            if (isinstance(count, bool) or not isinstance(count, int)
                    or isinstance(ms, bool) or not isinstance(ms, (int, float)) or not math.isfinite(ms)):
                raise RecordError(f"listing.sources.{name}: count must be an integer and ms a number")
            sources[name] = SourceReport(ok=bool(report.get("ok")), count=count, ms=float(ms),
                                         error=str(report.get("error", ""))[:MAX_NAME_CHARS])
        listing = data.get("listing", 0)
        if isinstance(listing, bool) or not isinstance(listing, int):
            raise RecordError(f"listing.listing must be an integer, got {listing!r}")
        return cls(elements=tuple(Element.from_json(e) for e in raw), sources=sources,
                   truncated=truncated, listing=listing)


def iou(a: Sequence[int], b: Sequence[int]) -> float:
    """Intersection over union of two (x, y, w, h) boxes."""
    ax, ay, aw, ah = a
    bx, by, bw, bh = b
    w = min(ax + aw, bx + bw) - max(ax, bx)
    h = min(ay + ah, by + bh) - max(ay, by)
    inter = max(0, w) * max(0, h)
    union = aw * ah + bw * bh - inter
    return inter / union if union > 0 else 0.0


def budget_order(elements: Sequence[Element], screen_size: tuple[int, int]) -> list[Element]:
    """The order in which elements earn a place in a prompt with a budget.

    The rule: elements whose box lies on the screen come before those that do not;
    within each, the nearest to the focused element's centre (the screen's centre when
    nothing has the focus) comes first; ties go to the lower id.
    """
    width, height = screen_size
    focused = next((e for e in elements if "focused" in e.states), None)
    fx, fy = focused.center if focused is not None else (width // 2, height // 2)

    def key(element: Element) -> tuple[int, float, int]:
        x, y, w, h = element.box
        on_screen = w > 0 and h > 0 and x < width and y < height and x + w > 0 and y + h > 0
        cx, cy = element.center
        return (0 if on_screen else 1, math.hypot(cx - fx, cy - fy), element.id)

    return sorted(elements, key=key)


def fit_to_budget(elements: Sequence[Element], screen_size: tuple[int, int], *,
                  budget: int, cost: Any = None) -> tuple[list[Element], int]:
    """The elements that fit ``budget`` (by ``cost(element)``, default 1 each), taken in
    ``budget_order`` until the first that does not fit, returned in id order, and how
    many were left out."""
    measure = cost or (lambda element: 1)
    kept: list[Element] = []
    spent = 0
    for element in budget_order(elements, screen_size):
        price = measure(element)
        if spent + price > budget:
            break
        kept.append(element)
        spent += price
    kept.sort(key=lambda e: e.id)
    return kept, len(elements) - len(kept)
