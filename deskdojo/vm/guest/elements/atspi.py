"""AT-SPI element source: the widgets that GTK, Qt and Chromium apps publish on the
accessibility bus, read with pyatspi (Debian's ``python3-pyatspi``).

Every property read is a D-Bus round trip to the app (0.1-0.4 ms each), so the walk
prunes subtrees that are not showing and keeps what it read: role (fixed), name,
states, children, text and the box relative to the top-level window stay cached until
the app says they changed (AT-SPI events, drained at the start of each read). Each read
re-reads only the top-level windows' boxes. The walk checks the deadline before every
call and returns what it has when it passes. Runs in the guest (standard library;
pyatspi imported on first read).
"""

from __future__ import annotations

import importlib.util
import os
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Protocol

Box = tuple[int, int, int, int]

MAX_DEPTH = 40
MAX_CHILDREN = 400  # a node with more children (a big table) is read only this far
MAX_TEXT_CHARS = 200
CALL_TIMEOUT_MS = 300  # one D-Bus call to a hung app gives up after this
CACHE_MAX_AGE_S = 10.0  # re-walk from scratch this often, in case an event was missed

# AT-SPI role names -> the short names the listing uses (others pass through as they are).
ROLE_NAMES = {
    "push button": "button", "entry": "text", "password text": "text",
    "desktop frame": "desktop", "page tab list": "page tab list",
}
TEXT_ROLES = frozenset({"text", "entry", "password text", "terminal", "document text", "paragraph"})
# Containers that say nothing by themselves: left out unless they have a name.
STRUCTURAL_ROLES = frozenset({
    "filler", "panel", "scroll pane", "viewport", "layered pane", "root pane", "glass pane",
    "redundant object", "unknown", "invalid", "section", "split pane", "separator",
    "application", "desktop frame", "page tab list", "tool bar", "status bar",
})
TOP_LEVEL_ROLES = frozenset({"frame", "dialog", "window", "alert", "file chooser", "color chooser"})
# AT-SPI state names -> the listing's states.
STATE_NAMES = {"sensitive": "enabled", "focused": "focused", "checked": "checked", "pressed": "checked",
               "selected": "selected", "expanded": "expanded", "editable": "editable"}
EVENTS = ("object:state-changed", "object:children-changed", "object:property-change",
          "object:bounds-changed", "object:text-changed")


class Node(Protocol):
    """What the walk needs from one accessible (pyatspi's, or a test's fake)."""

    key: Any

    def role(self) -> str: ...
    def name(self) -> str: ...
    def states(self) -> set[str]: ...
    def extents(self) -> Box: ...
    def children(self, limit: int) -> list[Node]: ...
    def text(self, limit: int) -> str: ...


class DeadlinePassed(Exception):
    pass


@dataclass
class _Cached:
    role: str
    name: str | None = None
    states: set[str] | None = None
    children: list[Any] | None = None
    offset: Box | None = None  # box relative to its top-level window's corner
    text: str | None = None


@dataclass
class Walk:
    """One read's results and bookkeeping (kept so a read cut by the deadline has them)."""

    deadline: float
    screen: Box
    out: list[dict] = field(default_factory=list)
    calls: int = 0
    app: str = ""


class _PyatspiNode:
    """A pyatspi accessible, as the walk's Node."""

    __slots__ = ("acc", "key")

    def __init__(self, acc: Any) -> None:
        self.acc = acc
        self.key = _key(acc)

    def role(self) -> str:
        return self.acc.getRoleName()

    def name(self) -> str:
        return self.acc.name or ""

    def states(self) -> set[str]:
        return {state.value_nick for state in self.acc.getState().getStates()}

    def extents(self) -> Box:
        import pyatspi

        ext = self.acc.queryComponent().getExtents(pyatspi.DESKTOP_COORDS)
        return ext.x, ext.y, ext.width, ext.height

    def children(self, limit: int) -> list[_PyatspiNode]:
        found = []
        for index in range(min(self.acc.childCount, limit)):
            child = self.acc.getChildAtIndex(index)
            if child is not None:
                found.append(_PyatspiNode(child))
        return found

    def text(self, limit: int) -> str:
        return self.acc.queryText().getText(0, limit)


def _key(acc: Any) -> tuple[str, str]:
    try:
        return (str(acc.app.bus_name), str(acc.path))
    except Exception:  # noqa: BLE001 - a dead object: any key that will not match
        return ("", str(id(acc)))


def _clip(box: Box, screen: Box) -> Box | None:
    x0, y0 = max(box[0], screen[0]), max(box[1], screen[1])
    x1 = min(box[0] + box[2], screen[0] + screen[2])
    y1 = min(box[1] + box[3], screen[1] + screen[3])
    if x1 <= x0 or y1 <= y0:
        return None
    return x0, y0, x1 - x0, y1 - y0


class TreeCache:
    """What was read of each accessible, until an event says it changed."""

    def __init__(self) -> None:
        self.nodes: dict[Any, _Cached] = {}
        self.born = time.monotonic()

    def clear(self) -> None:
        self.nodes.clear()
        self.born = time.monotonic()

    def invalidate(self, key: Any, what: str) -> None:
        cached = self.nodes.get(key)
        if cached is None:
            return
        if what.startswith("object:state-changed"):
            cached.states = None
            if what.endswith((":showing", ":visible")):
                cached.offset = None
        elif what.startswith("object:children-changed"):
            cached.children = None
        elif what.startswith("object:property-change"):
            cached.name = None
            if what.endswith(":accessible-role"):
                del self.nodes[key]
        elif what.startswith("object:bounds-changed"):
            cached.offset = None
        elif what.startswith("object:text-changed"):
            cached.text = None


def walk_tree(desktop: Node, cache: TreeCache, walk: Walk) -> list[dict]:
    """Append every showing element under ``desktop`` to ``walk.out`` (depth first, the
    apps' order); raise DeadlinePassed (with walk.out kept) when the deadline passes."""

    def call(function: Callable[..., Any], *args: Any) -> Any:
        if time.monotonic() >= walk.deadline:
            raise DeadlinePassed
        walk.calls += 1
        return function(*args)

    def entry(node: Node) -> _Cached:
        cached = cache.nodes.get(node.key)
        if cached is None:
            cached = cache.nodes[node.key] = _Cached(role=call(node.role))
        return cached

    def children(node: Node, cached: _Cached) -> list[Node]:
        if cached.children is None:
            cached.children = call(node.children, MAX_CHILDREN)
        return cached.children

    def visit(node: Node, window: str, corner: tuple[int, int], depth: int) -> None:
        cached = entry(node)
        if cached.states is None:
            cached.states = call(node.states)
        if "showing" not in cached.states or depth > MAX_DEPTH:
            return
        if cached.offset is None:
            x, y, w, h = call(node.extents)
            cached.offset = (x - corner[0], y - corner[1], w, h)
        if cached.name is None:
            cached.name = " ".join(call(node.name).split())
        role = cached.role
        text = ""
        if role in TEXT_ROLES and not cached.name:
            if cached.text is None:
                try:
                    cached.text = " ".join(call(node.text, MAX_TEXT_CHARS).split())
                except DeadlinePassed:
                    raise
                except Exception:  # noqa: BLE001 - no Text interface: no text
                    cached.text = ""
            text = cached.text
        ox, oy, w, h = cached.offset
        box = _clip((corner[0] + ox, corner[1] + oy, w, h), walk.screen)
        name = cached.name or text
        if box is not None and (role not in STRUCTURAL_ROLES or name):
            walk.out.append({"role": _role(role, cached.states), "name": name, "box": list(box),
                             "states": sorted({STATE_NAMES[s] for s in cached.states if s in STATE_NAMES}),
                             "window": window})
        for child in children(node, cached):
            visit(child, window, corner, depth + 1)

    for app in children(desktop, entry(desktop)):
        app_cached = entry(app)
        if app_cached.name is None:
            app_cached.name = call(app.name)
        walk.app = app_cached.name
        for top in children(app, app_cached):
            cached = entry(top)
            if cached.states is None:
                cached.states = call(top.states)
            if "showing" not in cached.states:
                continue
            if cached.name is None:
                cached.name = " ".join(call(top.name).split())
            x, y, w, h = call(top.extents)  # windows move without telling their widgets
            cached.offset = (0, 0, w, h)
            visit(top, cached.name, (x, y), 0)
    return walk.out


def _role(role: str, states: set[str]) -> str:
    if role == "text":
        return "text area" if "multi-line" in states else "text"
    return ROLE_NAMES.get(role, role)


class AtspiSource:
    """Elements from the accessibility bus. ``desktop`` (a Node) replaces the real bus in
    tests; without it the first read connects through pyatspi. ``keep_warm``: the
    collector reads it when idle, so a new app's tree is walked before anyone asks."""

    name = "atspi"
    keep_warm = True

    def __init__(self, *, desktop: Node | None = None, drain: Callable[[], None] | None = None,
                 screen: Box | None = None, max_age_s: float = CACHE_MAX_AGE_S) -> None:
        self._desktop = desktop
        self._drain = drain or (lambda: None)
        self._screen = screen
        self.max_age_s = max_age_s
        self.cache = TreeCache()
        self.last_calls = 0  # D-Bus calls the last read made (for the bench)
        self._expired = False

    def unavailable(self) -> str | None:
        if self._desktop is not None:
            return None
        if importlib.util.find_spec("pyatspi") is None:
            return ("pyatspi is not installed; the sandbox image has it (Debian's python3-pyatspi) "
                    "— on a host install python3-pyatspi and run the guest with Debian's python3")
        if not os.environ.get("AT_SPI_BUS_ADDRESS"):
            return ("no accessibility bus: AT_SPI_BUS_ADDRESS is not set (the guest boot starts "
                    "one when at-spi2-core and python3-pyatspi are installed)")
        return None

    def forget(self) -> None:
        """Drop the cache (the next read walks the whole tree again)."""
        self.cache.clear()

    def expire(self) -> None:
        """Make the next read walk the whole tree again (safe from another thread): for
        changes the app announces with no event, like a browser page load."""
        self._expired = True

    def _connect(self) -> None:
        import pyatspi
        from gi.repository import Atspi, GLib

        Atspi.set_timeout(CALL_TIMEOUT_MS, CALL_TIMEOUT_MS * 4)
        cache = self.cache

        def on_event(event: Any) -> None:
            cache.invalidate(_key(event.source), str(event.type))
            if str(event.type).startswith("object:children-changed"):
                # An app that came or went changes the desktop's children.
                cache.invalidate(_key(event.source), "object:children-changed")

        pyatspi.Registry.registerEventListener(on_event, *EVENTS)
        context = GLib.MainContext.default()

        def drain() -> None:
            for _ in range(10000):  # events arrive through the default main context
                if not context.iteration(False):
                    break

        self._drain = drain
        desktop = pyatspi.Registry.getDesktop(0)
        self._desktop = _PyatspiNode(desktop)
        if self._screen is None:
            ext = desktop.queryComponent().getExtents(pyatspi.DESKTOP_COORDS)
            self._screen = (ext.x, ext.y, ext.width, ext.height)

    def read(self, *, deadline: float, grab: Callable[[], tuple[bytes, int, int]] | None = None) -> list[dict]:
        if self._desktop is None:
            why_not = self.unavailable()
            if why_not:
                raise RuntimeError(why_not)
            self._connect()
        self._drain()
        if self._expired or time.monotonic() - self.cache.born > self.max_age_s:
            self._expired = False
            self.cache.clear()
        walk = Walk(deadline=deadline, screen=self._screen or (0, 0, 1 << 16, 1 << 16))
        try:
            walk_tree(self._desktop, self.cache, walk)  # type: ignore[arg-type]
        except DeadlinePassed:
            pass  # return what the walk has; the rest comes from the cache next time
        except Exception as error:  # noqa: BLE001 - a dead app mid-walk: start over next time
            self.cache.clear()
            if not walk.out:
                raise RuntimeError(f"AT-SPI walk failed in app {walk.app!r}: {error}") from error
        self.last_calls = walk.calls
        return walk.out

