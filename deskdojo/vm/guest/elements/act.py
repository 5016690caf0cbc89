"""Actions that name an element: resolved in the guest, at the moment they run, against the
last listing (and a fresh read of the element's source), into the plain actions to perform.

A click on element 12 becomes a click at its centre now, as a scroll over element 12 turns the
wheel at its centre now; typing into element 12 becomes a
click at its centre, a wait until its window and then the element itself (where its source
says which has the focus) have the focus, then the typing. What cannot
be resolved is an ``ElementRefused`` whose message is for the model.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any

from deskdojo.core.actions import Action, Click, Scroll, Type, element_of
from deskdojo.core.elements import Element
from deskdojo.vm.guest.elements.collect import ElementCollector, ElementRefused

FOCUS_WAIT_S = 0.5  # after clicking an element to type into it, wait this long at most for its window's focus

__all__ = ["ElementPlan", "ElementRefused", "plan", "wait_for_focus"]


@dataclass(frozen=True)
class ElementPlan:
    """What to perform for one action: ``steps`` in order; ``resolved`` (the action with its
    point filled in) and ``element`` (as it is on screen now) when it named one."""

    steps: tuple[Action, ...]
    resolved: Action | None = None
    element: Element | None = None

    def reply(self) -> dict[str, Any]:
        """The act reply's fields that say how the element was resolved."""
        if self.element is None or self.resolved is None:
            return {}
        from deskdojo.core.actions import action_to_dict

        return {"resolved": action_to_dict(self.resolved), "element": self.element.to_json(),
                "point": list(self.element.center)}


def plan(collector: ElementCollector, action: Action) -> ElementPlan:
    """The steps for ``action``; an action naming an element is resolved (ElementRefused if it
    cannot be)."""
    element_id = element_of(action)
    if element_id is None:
        return ElementPlan(steps=(action,))
    element = collector.resolve(element_id)
    x, y = element.center
    if isinstance(action, (Click, Scroll)):
        resolved = replace(action, x=x, y=y)
        return ElementPlan(steps=(resolved,), resolved=resolved, element=element)
    if isinstance(action, Type):
        return ElementPlan(steps=(Click(x=x, y=y, element=element_id), Type(action.text)),
                           resolved=action, element=element)
    raise ElementRefused(f"a {action.kind} action cannot name an element; only click, scroll and type can")


def wait_for_focus(list_windows: Callable[[], Sequence[dict[str, Any]]], title: str, *,
                   timeout: float = FOCUS_WAIT_S) -> bool:
    """Wait until the window titled ``title`` has the focus (a click that focuses another
    window lets keys typed at once go to the window that had it). False if it never did
    or no window has that title."""
    deadline = time.monotonic() + timeout
    while title:
        windows = [w for w in list_windows() if w.get("title") == title]
        if not windows:
            return False
        if any(w.get("focused") for w in windows):
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.02)
    return False
