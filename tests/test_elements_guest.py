"""Elements from a real guest (xvfb sandbox, real Tk practice apps): recall against the
apps' published widgets, element clicks and typing, stale and unknown ids, and the
endpoint's answers to bad requests. (The Sandbox contract covers docker too.)"""

from __future__ import annotations

import sys
from collections import defaultdict
from typing import Any

import pytest

from deskdojo.core.actions import Click, Type
from deskdojo.core.elements import ElementList, iou
from deskdojo.core.errors import GuestRequestError
from deskdojo.core.types import Task
from deskdojo.curriculum.families import all_families
from deskdojo.vm.guest.apps import launch_step
from waiting import wait_for

pytestmark = pytest.mark.display
RECALL_LEVELS = range(4)
PRACTICE_FAMILIES = [name for name, family in all_families().items()
                     if family.app not in ("xterm", "mousepad")]



def enabled_widgets(state: dict[str, Any]) -> dict[str, tuple[int, int, int, int]]:
    """The published geometry of every enabled widget that shows on screen."""
    return {wid: (w["x"], w["y"], w["w"], w["h"]) for wid, w in state["widgets"].items()
            if w.get("enabled") and w.get("visible", True) and w.get("w", 0) > 0 and w.get("h", 0) > 0}


def matched(widgets: dict[str, tuple[int, int, int, int]], listing: ElementList) -> set[str]:
    return {wid for wid, box in widgets.items() if any(iou(box, e.box) >= 0.5 for e in listing.elements)}


def launch(box: Any, app: str, params: dict[str, Any]) -> dict[str, Any]:
    """Start one practice app; its state once both it and its element walk are published."""
    box.reset(Task(id=f"elements-{app}", instruction="-", family="elements",
                   setup=(launch_step(app, params, python=sys.executable),)))
    wait_for(lambda: app in box.app_state()["apps"] and box.elements(["tk"]).elements, what=f"{app}'s state")
    return box.app_state()["apps"][app]


def test_elements_cover_the_practice_apps_enabled_widgets(box):
    """Every practice-app family, levels 0-3: >= 98% of enabled widgets have an element
    with box IoU >= 0.5 (the apps' published state is read here, by the test only)."""
    totals: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    missed: list[str] = []
    families = all_families()
    for name in PRACTICE_FAMILIES:
        for level in RECALL_LEVELS:
            task = families[name].generate(level, 11, "train")
            box.reset(task)

            def settled() -> tuple[dict[str, Any], ElementList] | None:
                apps = box.app_state()["apps"]
                listing = box.elements(["tk"])
                if not apps or not listing.elements:
                    return None
                complete = all(matched(enabled_widgets(s), listing) == set(enabled_widgets(s)) for s in apps.values())
                return (apps, listing) if complete else None

            try:  # apps settle within a few publishes; take the last look if one never does
                apps, listing = wait_for(settled, timeout=3.0, what=f"{task.id} to settle")
            except AssertionError:
                apps, listing = box.app_state()["apps"], box.elements(["tk"])
            for app, state in apps.items():
                widgets = enabled_widgets(state)
                hits = matched(widgets, listing)
                totals[app][0] += len(hits)
                totals[app][1] += len(widgets)
                missed.extend(f"{task.id}:{app}:{wid}" for wid in sorted(set(widgets) - hits))
    report = ", ".join(f"{app} {hit}/{total}" for app, (hit, total) in sorted(totals.items()))
    print(f"\nelement recall per app: {report}")
    hit, total = sum(t[0] for t in totals.values()), sum(t[1] for t in totals.values())
    assert len(totals) >= 10 and total > 200, report
    assert hit / total >= 0.98, f"recall {hit}/{total} = {hit / total:.3f} < 0.98 ({report}); missed: {missed[:20]}"


def test_an_element_click_presses_a_button_and_typing_into_an_element_fills_it(box):
    state = launch(box, "form", {"seed": 4})
    listing = box.elements(["tk"])
    submit_text = state["widgets"]["submit"]["text"]
    submit = next(e for e in listing.elements if e.role == "button" and e.name == submit_text)
    entries = [e for e in listing.elements if e.role == "text"]
    first_entry = min(state["widgets"], key=lambda w: (state["widgets"][w]["y"], state["widgets"][w]["x"])
                      if w.startswith("entry:") else (10**6, 0))
    target = next(e for e in entries if iou(e.box, tuple(state["widgets"][first_entry][k] for k in "xywh")) > 0.5)
    typed = box.act(Type("Ada", element=target.id))
    assert typed.ok, typed.error
    assert typed.resolved == Type("Ada", element=target.id) and typed.element.box == target.box
    wait_for(lambda: box.app_state()["apps"]["form"]["widgets"][first_entry]["value"] == "Ada",
             what="the typed text in the entry")
    clicked = box.act(Click(element=submit.id))
    assert clicked.ok and clicked.resolved == Click(x=submit.center[0], y=submit.center[1], element=submit.id)
    wait_for(lambda: box.app_state()["apps"]["form"].get("submissions"), what="the form's submission")


def test_stale_and_unknown_elements_are_refused_actions(box):
    launch(box, "buttons", {"seed": 5})
    listing = box.elements(["tk"])
    button = next(e for e in listing.elements if e.role == "button")
    last = len(listing.elements) - 1
    unknown = box.act(Click(element=last + 50))
    assert not unknown.ok
    assert unknown.error == (f"no element {last + 50} in the last listing (ids 0-{last}); look at the screen again")
    assert box.observe().action_error.endswith(unknown.error)
    box.reset()  # the app is gone
    stale = box.act(Click(element=button.id))
    assert not stale.ok
    assert stale.error == (f"element {button.id} (button {button.name!r}) is no longer on screen; "
                           f"look at the screen again")


def test_the_endpoint_names_the_sources_and_is_read_only(box):
    with pytest.raises(GuestRequestError, match="no element source 'dom'; the sources are: tk, atspi, ocr") as info:
        box.client._call("GET", "/v1/elements?sources=tk,dom")
    assert info.value.status == 400
    with pytest.raises(GuestRequestError) as info:
        box.client._call("POST", "/v1/elements", {})
    assert info.value.status == 405
    listing = box.elements()
    assert set(listing.sources) == {"tk", "atspi", "ocr"} and listing.sources["tk"].ok
