"""The guest's element collector without a desktop: deadlines, busy sources, merging,
reading order, caps, and the resolution of element ids (fake sources stand in for
tk, AT-SPI and OCR; the real sources run in tests/test_elements_guest.py)."""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest

from deskdojo.core.actions import Click, Scroll, Type
from deskdojo.core.elements import MAX_ELEMENTS, MAX_NAME_CHARS, Element, ElementList
from deskdojo.vm.guest.elements.act import plan
from deskdojo.vm.guest.elements.collect import ElementCollector, ElementRefused

SCREEN = (1024, 768)


def raw(role: str, name: str, box: tuple[int, int, int, int], *, window: str = "app",
        states: tuple[str, ...] = ("enabled",)) -> dict[str, Any]:
    return {"role": role, "name": name, "box": list(box), "states": list(states), "window": window}


class FakeSource:
    """Answers ``elements`` (changeable), after ``delay`` seconds; counts its reads."""

    def __init__(self, name: str, elements: list[dict[str, Any]] | None = None, *, delay: float = 0.0,
                 why_not: str | None = None) -> None:
        self.name, self.elements, self.delay, self.why_not = name, list(elements or []), delay, why_not
        self.reads = 0
        self.release = threading.Event()

    def unavailable(self) -> str | None:
        return self.why_not

    def read(self, *, deadline: float, grab: Any) -> list[dict[str, Any]]:
        self.reads += 1
        if self.delay:
            self.release.wait(self.delay)  # a hung accessibility bus, until the test lets go
        return list(self.elements)


def collector(*sources: FakeSource, deadline_s: float = 0.5) -> ElementCollector:
    return ElementCollector(grab=lambda: (b"", 0, 0), screen_size=SCREEN, deadline_s=deadline_s,
                            sources={s.name: s for s in sources})


def test_a_hanging_source_does_not_hang_the_listing_and_the_reply_says_who_answered():
    tk = FakeSource("tk", [raw("button", "OK", (10, 10, 80, 30))])
    hung = FakeSource("atspi", [raw("button", "Late", (200, 10, 80, 30))], delay=30)
    ocr = FakeSource("ocr", [raw("text line", "hello", (10, 100, 60, 14))])
    elements = collector(tk, hung, ocr, deadline_s=0.3)
    try:
        start = time.monotonic()
        listing = elements.listing()
        assert time.monotonic() - start < 1.0
        assert [e.name for e in listing.elements] == ["OK", "hello"]
        assert listing.sources["tk"].ok and listing.sources["ocr"].ok
        assert not listing.sources["atspi"].ok and listing.sources["atspi"].error.startswith("timeout")
        # the host reads the same story from the JSON
        parsed = ElementList.from_json(listing.to_json())
        assert {n for n, r in parsed.sources.items() if r.ok} == {"tk", "ocr"}
        # still hung: the next request is not queued behind it; it is told "busy" at once
        start = time.monotonic()
        again = elements.listing()
        assert time.monotonic() - start < 0.2
        assert again.sources["atspi"].error.startswith("busy:") and again.sources["tk"].ok
        assert hung.reads == 1
    finally:
        hung.release.set()
    time.sleep(0.05)
    assert elements.listing(["atspi"]).sources["atspi"].ok  # once it returns, it serves again


def test_unknown_missing_and_unavailable_sources_are_named():
    elements = collector(FakeSource("tk"), FakeSource("ocr", why_not="tesseract is not installed"))
    with pytest.raises(ValueError, match=r"no element source 'dom'; the sources are: tk, atspi, ocr"):
        elements.parse_sources("tk,dom")
    assert elements.parse_sources("ocr, tk,ocr") == ["ocr", "tk"]
    assert elements.parse_sources("") is None
    listing = elements.listing(["tk", "ocr"])
    assert listing.sources["ocr"] == listing.sources["ocr"].__class__(ok=False, error="tesseract is not installed")
    assert listing.sources["tk"].ok


def test_a_source_that_raises_is_a_report_not_a_crash():
    class Broken(FakeSource):
        def read(self, *, deadline: float, grab: Any) -> list[dict[str, Any]]:
            raise RuntimeError("bus gone")

    listing = collector(FakeSource("tk", [raw("label", "x", (0, 0, 5, 5))]), Broken("atspi")).listing()
    assert listing.sources["atspi"].error == "RuntimeError: bus gone"
    assert [e.name for e in listing.elements] == ["x"]


def test_a_huge_listing_is_cut_and_says_so():
    many = [raw("label", f"row {i}", (0, i, 50, 1)) for i in range(MAX_ELEMENTS + 50)]
    many.append(raw("text area", "x" * 5000, (100, 0, 300, 300)))
    listing = collector(FakeSource("tk", many)).listing()
    assert len(listing.elements) == MAX_ELEMENTS
    assert f"cut to {MAX_ELEMENTS} of {MAX_ELEMENTS + 51} elements" in listing.truncated
    assert "1 name(s) cut to 200 characters" in listing.truncated
    long = next(e for e in listing.elements if e.role == "text area")
    assert len(long.name) == MAX_NAME_CHARS and long.name.endswith("…")
    assert [e.id for e in listing.elements] == list(range(MAX_ELEMENTS))
    assert ElementList.from_json(listing.to_json()).truncated == listing.truncated


def test_malformed_and_off_screen_elements_are_dropped_and_counted():
    listing = collector(FakeSource("tk", [
        raw("button", "ok", (1, 1, 10, 10)), {"role": "button"}, {"role": "x", "box": "nope"},
        raw("button", "off", (5000, 10, 10, 10)), raw("button", "flat", (10, 10, 0, 10)),
        raw("button", "odd state", (30, 30, 10, 10), states=("enabled", "sparkly")),
    ])).listing()
    assert [e.name for e in listing.elements] == ["ok", "odd state"]
    assert listing.elements[1].states == frozenset({"enabled"})
    assert listing.sources["tk"].error == "dropped 2 malformed element(s)"


def test_duplicates_merge_and_structured_sources_beat_ocr():
    tk = FakeSource("tk", [raw("button", "Save", (100, 100, 80, 30)), raw("text", "", (100, 200, 200, 24))])
    atspi = FakeSource("atspi", [
        raw("push button", "Save", (102, 101, 80, 30), states=("enabled", "focused")),  # same button, richer
        raw("button", "Other", (400, 150, 80, 30)),
        raw("entry", "", (101, 201, 200, 24)),  # same text field, no richer
    ])
    ocr = FakeSource("ocr", [raw("text line", "Save", (120, 108, 40, 14)),  # the button's own label
                             raw("text line", "$ ls -l", (10, 400, 80, 14))])
    listing = collector(tk, atspi, ocr).listing()
    names = [(e.role, e.name, e.source) for e in listing.elements]
    assert names == [("push button", "Save", "atspi"), ("button", "Other", "atspi"),
                     ("text", "", "tk"), ("text line", "$ ls -l", "ocr")]


def test_ids_follow_reading_order_window_by_window():
    tk = FakeSource("tk", [
        raw("button", "B", (300, 50, 10, 10)), raw("button", "A", (100, 50, 10, 10)),
        raw("label", "top", (100, 20, 10, 10)), raw("frame", "app", (90, 10, 400, 300)),
        raw("frame", "dialog", (50, 5, 100, 100), window="dialog"),
        raw("button", "in dialog", (60, 60, 20, 10), window="dialog"),
    ])
    listing = collector(tk).listing()
    assert [e.name for e in listing.elements] == ["dialog", "in dialog", "app", "top", "A", "B"]
    assert [e.id for e in listing.elements] == [0, 1, 2, 3, 4, 5]
    assert listing.listing == 1 and collector(tk).listing().listing == 1  # serials per collector


def test_element_actions_resolve_against_the_last_listing_and_refuse_stale_or_unknown_ids():
    tk = FakeSource("tk", [raw("frame", "app", (0, 0, 500, 400)), raw("button", "OK", (100, 100, 80, 30)),
                           raw("text", "abc", (100, 200, 200, 24))])
    elements = collector(tk)
    with pytest.raises(ElementRefused, match="no element listing yet"):
        plan(elements, Click(element=1))
    elements.listing()
    assert plan(elements, Click(10, 10)).steps == (Click(10, 10),)
    steps = plan(elements, Click(element=1, button="right"))
    assert steps.resolved == Click(x=140, y=115, button="right", element=1)
    assert steps.reply()["element"]["name"] == "OK" and steps.reply()["point"] == [140, 115]
    typing = plan(elements, Type("hi", element=2))
    assert typing.steps == (Click(x=200, y=212, element=2), Type("hi"))
    with pytest.raises(ElementRefused, match=r"^no element 99 in the last listing \(ids 0-2\); look at the screen again$"):
        plan(elements, Click(element=99))
    # it moved a little: still the same button, clicked where it is now
    tk.elements[1] = raw("button", "OK", (110, 100, 80, 30))
    tk.elements[2] = raw("text", "abcdef", (100, 200, 200, 24))  # typed into: still the same field
    assert plan(elements, Click(element=1)).resolved == Click(x=150, y=115, element=1)
    assert plan(elements, Type("x", element=2)).element.name == "abcdef"
    tk.elements[1] = raw("button", "Cancel", (100, 100, 80, 30))  # a different button there now
    with pytest.raises(ElementRefused, match=r"^element 1 \(button 'OK'\) is no longer on screen; look at the screen again$"):
        plan(elements, Click(element=1))
    del tk.elements[1]
    with pytest.raises(ElementRefused, match="is no longer on screen"):
        plan(elements, Click(element=1))


def test_an_element_scroll_turns_the_wheel_at_the_element_centre_now():
    tk = FakeSource("tk", [raw("frame", "app", (0, 0, 500, 400)), raw("canvas", "", (40, 40, 200, 300))])
    elements = collector(tk)
    elements.listing()
    wheel = plan(elements, Scroll(element=1, dy=3))
    assert wheel.steps == (Scroll(x=140, y=190, dy=3, element=1),) and wheel.resolved == wheel.steps[0]
    assert wheel.reply()["point"] == [140, 190] and wheel.reply()["resolved"]["element"] == 1
    assert plan(elements, Scroll(10, 10, dx=-2)).steps == (Scroll(10, 10, dx=-2),)  # a point: as it is
    tk.elements[1] = raw("canvas", "", (60, 40, 200, 300))  # the list moved: turned where it is now
    assert plan(elements, Scroll(element=1, dx=-10)).resolved == Scroll(x=160, y=190, dx=-10, element=1)
    with pytest.raises(ElementRefused, match=r"^no element 7 in the last listing"):
        plan(elements, Scroll(element=7, dy=1))


def test_the_fake_sandbox_resolves_element_clicks_itself():
    from deskdojo.vm.config import SandboxConfig
    from deskdojo.vm.fake import FakeProvider

    box = FakeProvider(SandboxConfig(provider="fake", screen=(320, 240))).start()
    square = box.elements().elements[0]
    result = box.act(Click(element=square.id))
    assert result.ok and result.resolved == Click(x=square.center[0], y=square.center[1], element=0)
    assert result.element == square and box.actions[-1] == result.resolved
    moved = box.act(Click(element=square.id))  # the frame changed: the square is elsewhere
    assert not moved.ok and "is no longer on screen" in moved.error
    assert box.observe().action_error.endswith(moved.error)
    button = Element(id=0, role="button", name="Fixed", box=(10, 10, 20, 20))
    box.set_elements([button])
    assert box.elements().elements == (button,)
    assert box.act(Type("hi", element=0)).element == button
    wheel = box.act(Scroll(element=0, dy=2))
    assert wheel.resolved == Scroll(x=button.center[0], y=button.center[1], dy=2, element=0)
    assert box.actions[-1] == wheel.resolved
    assert "no element 5 in the last listing (ids 0-0)" in box.act(Click(element=5)).error


def test_a_source_that_keeps_warm_reads_while_idle_and_a_request_still_gets_its_answer():
    cold = FakeSource("tk", [raw("button", "OK", (10, 10, 50, 20))])
    warm = FakeSource("atspi", [raw("menu", "File", (0, 0, 40, 20))])
    warm.keep_warm = True  # as AtspiSource: the first listing after an app starts finds a walked tree
    elements = collector(cold, warm)
    first = elements.listing(["tk", "atspi"])
    assert cold.reads == 1 and warm.reads == 1 and len(first.elements) == 2
    time.sleep(1.3)  # idle: only the source that asked for it read on its own
    assert cold.reads == 1 and warm.reads >= 3
    assert [e.name for e in elements.listing(["atspi"]).elements] == ["File"]
