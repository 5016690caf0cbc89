"""What is on a screen, for exploration: the things that can be clicked (from the element
listing, or a practice app's published state), a screen's identity, and what a click
changed (in published state and in the elements). ``deskdojo.curriculum.explore`` walks
an app with these."""

from __future__ import annotations

import hashlib
from collections import Counter
from dataclasses import dataclass
from typing import Any, Mapping, Sequence

from deskdojo.core.actions import Click
from deskdojo.core.elements import Element, ElementList, iou
from deskdojo.core.oracle import MISSING, RUNTIME_KEYS, changes
from deskdojo.core.types import Locator, OracleStep, StateCondition

NOT_APP_FIELDS = frozenset({"app", "version", "seed", "params", "style", "widgets", "windows", "menubar",
                            "open_menus", "open_popdown", "closed"}) | RUNTIME_KEYS
ROWS_PER_LIST = 3  # list rows tried per listbox: enough to find what selecting does
GEOMETRY_KEYS = frozenset({"x", "y", "w", "h", "visible", "rows", "kind"})
CLICKABLE_KINDS = frozenset({"button", "checkbox", "radio", "tab", "combobox", "optionmenu"})

# Elements: which roles can be clicked (AT-SPI's words), and what a click on each is called.
ROLE_KINDS = {"button": "button", "push button": "button", "toggle button": "button", "check box": "checkbox",
              "radio button": "radio", "page tab": "tab", "combo box": "combobox", "list item": "row",
              "table cell": "row", "tree item": "row", "slider": "slider", "link": "link", "spin button": "spin"}
MENU_ENTRY_ROLES = frozenset({"menu", "menu item", "check menu item", "radio menu item"})
WINDOW_ROLES = frozenset({"frame", "dialog", "window", "alert", "file chooser", "color chooser"})
MODAL_ROLES = frozenset({"dialog", "alert", "file chooser", "color chooser"})
FALLBACK_ROLES = frozenset({"label", "text line", "static", "heading", "paragraph", "icon", "image"})
MAX_CHANGES_KEPT = 40  # element-level changes kept per entry (an OCR'd terminal can change every line)


@dataclass(frozen=True, slots=True)
class Probe:
    """One exploratory click on an element: what it is (``kind`` from its role, ``label``
    its name, ``role``, and ``nth`` among the elements of that role and name on the
    screen) and, for practice apps, the published thing it is (a Locator's ``path``,
    ``menu`` or ``text``). ``box`` is where it was when clicked: an oracle clicks its
    centre when there is no Locator (apps without published state lay out the same way
    on every launch)."""

    kind: str
    label: str
    path: str | None = None
    menu: str | None = None
    text: str | None = None
    role: str = ""
    nth: int = 0
    box: tuple[int, int, int, int] | None = None

    @property
    def grounded(self) -> bool:
        """Whether a Locator names it (in a practice app's published state)."""
        return (self.path, self.menu, self.text) != (None, None, None)

    def locator(self, app: str) -> Locator:
        return Locator(app, path=self.path, menu=self.menu, text=self.text)

    def step(self, app: str) -> OracleStep:
        """Click it, once it is on screen: a widget waits until the app shows it (a page
        that a tab click reveals is published a moment after the click)."""
        if not self.grounded:
            if self.box is None:
                raise ValueError(f"probe {self.key()} has neither a Locator nor a box to click")
            x, y, w, h = self.box
            return OracleStep(Click(x + w // 2, y + h // 2))
        wait = None
        if self.path is not None and self.path.startswith("widgets."):
            widget = self.path.split(".")[1]
            wait = StateCondition(app, f"widgets.{widget}.visible", True)
        return OracleStep(Click(0, 0), at=self.locator(app), wait=wait)

    def key(self) -> str:
        if self.grounded:
            return f"{self.kind}:{self.path or self.menu or self.text}"
        return f"{self.kind}:{self.role}:{self.label}#{self.nth}"

    def find(self, listing: ElementList) -> Element | None:
        """This probe's element in ``listing`` (by role, name and rank), or None."""
        same = [e for e in listing.elements if e.role == self.role and e.name == self.label]
        return same[self.nth] if self.nth < len(same) else None


@dataclass(frozen=True, slots=True)
class Change:
    """One value of the app state that a probe changed; ``path`` is the list of keys."""

    path: tuple[str, ...]
    before: Any
    after: Any

    @property
    def dotted(self) -> str | None:
        """The dotted path a Check can name, or None when a key holds a dot itself."""
        return None if any("." in part for part in self.path) else ".".join(self.path)


# --- reading a state -----------------------------------------------------------------


def app_fields(state: Mapping[str, Any]) -> dict[str, Any]:
    """The app's own fields (``clicks``, ``chosen``, ``values``, ...)."""
    return {k: v for k, v in state.items() if k not in NOT_APP_FIELDS}


def comparable(state: Mapping[str, Any]) -> dict[str, Any]:
    """What a diff looks at: the app's fields and each widget's non-geometry fields."""
    widgets = {wid: {k: v for k, v in w.items() if k not in GEOMETRY_KEYS}
               for wid, w in state.get("widgets", {}).items()}
    return {**app_fields(state), "widgets": widgets}


def flatten(value: Any, prefix: tuple[str, ...] = ()) -> dict[tuple[str, ...], Any]:
    """Leaves of nested objects by key path; lists are leaves (compared whole)."""
    if isinstance(value, Mapping) and value:
        out: dict[tuple[str, ...], Any] = {}
        for key, item in value.items():
            out.update(flatten(item, (*prefix, str(key))))
        return out
    return {prefix: value}


def diff(before: Mapping[str, Any], after: Mapping[str, Any]) -> tuple[Change, ...]:
    """The values that differ between two states (widgets that came or went aside); lists
    are compared whole, and a key one side lacks reads as None there."""
    old, new = comparable(before), comparable(after)
    common = set(old["widgets"]) & set(new["widgets"])
    old["widgets"] = {w: old["widgets"][w] for w in common}
    new["widgets"] = {w: new["widgets"][w] for w in common}
    found = [Change(path, None if a is MISSING else a, None if b is MISSING else b)
             for path, a, b in changes(old, new, into_lists=False)]
    return tuple(sorted(found, key=lambda change: str(change.path)))


def screen_parts(state: Mapping[str, Any]) -> set[str]:
    """The things on screen: windows, posted menus, a combobox list, widgets that can be seen."""
    parts = {f"window:{name}" for name, w in state.get("windows", {}).items() if w.get("visible", True)}
    parts |= {"menu:" + " > ".join(m["menu"]) for m in state.get("open_menus", [])}
    if state.get("open_popdown"):
        parts.add(f"popdown:{state['open_popdown'].get('widget')}")
    parts |= {f"widget:{wid}" for wid, w in state.get("widgets", {}).items() if w.get("visible")}
    return parts


@dataclass(frozen=True, slots=True)
class Screen:
    """What the walk sees at one moment: the element listing, the window titles, and a
    practice app's published state (None for apps that publish none)."""

    listing: ElementList
    windows: tuple[str, ...] = ()
    state: Mapping[str, Any] | None = None

    @property
    def closed(self) -> bool:
        """The app went away (a practice app says so; another app has no window left)."""
        if self.state is not None:
            return self.state.get("closed") is True
        return not self.windows


def _inside(inner: Sequence[int], outer: Sequence[int], slack: int = 2) -> bool:
    x, y, w, h = inner
    ox, oy, ow, oh = outer
    return x >= ox - slack and y >= oy - slack and x + w <= ox + ow + slack and y + h <= oy + oh + slack


def _usable(element: Element) -> bool:
    """On screen with a size, and enabled (OCR reads no states: its lines count as enabled)."""
    return element.box[2] > 0 and element.box[3] > 0 and (element.source == "ocr" or "enabled" in element.states)


def popup_entries(elements: Sequence[Element]) -> list[Element]:
    """Entries of posted menus: menu entries that lie outside every menu bar."""
    bars = [e.box for e in elements if e.role == "menu bar"]
    return [e for e in elements if e.role in MENU_ENTRY_ROLES and e.name and not any(_inside(e.box, b) for b in bars)]


def deepest_menus(entries: Sequence[Element]) -> list[Element]:
    """The entries of the innermost posted menu(s). Entries of one menu share a column;
    a menu is a parent when a sub-menu entry of it has another menu's column beside it,
    starting level with that entry."""
    columns: dict[tuple[int, int], list[Element]] = {}
    for entry in entries:
        columns.setdefault((entry.box[0], entry.box[2]), []).append(entry)

    def opens(parent: tuple[int, int], child: tuple[int, int]) -> bool:
        beside = child[0] >= parent[0] + parent[1] - 4 or child[0] + child[1] <= parent[0] + 4
        top = min(e.box[1] for e in columns[child])
        return beside and any(e.role == "menu" and abs(top - e.box[1]) <= e.box[3] + 8 for e in columns[parent])

    leaves = [c for c in columns if not any(opens(c, other) for other in columns if other != c)]
    chosen = set(leaves or columns)
    return [e for e in entries if (e.box[0], e.box[2]) in chosen]


def clickable(listing: ElementList) -> list[Element]:
    """What can be clicked on this screen, in id (reading) order: see the module docstring."""
    elements = [e for e in listing.elements if _usable(e)]
    popups = popup_entries(elements)
    if popups:  # a posted menu holds the pointer: only its entries can be clicked
        return deepest_menus(popups)
    modal = {e.name for e in listing.elements if e.role in MODAL_ROLES}
    scope = [e for e in elements if e.window in modal] if modal else elements
    scope = scope or elements  # a dialog whose elements name no window: take the whole screen
    for combo in (e for e in scope if e.role == "combo box" and "expanded" in e.states):
        x, y, w, h = combo.box
        rows = [e for e in scope if ROLE_KINDS.get(e.role) == "row" and e.box[0] < x + w and e.box[0] + e.box[2] > x
                and (e.box[1] >= y + h - 2 or e.box[1] + e.box[3] <= y + 2)]
        if rows:  # an open drop-down list holds the pointer
            return rows
    lists = [e.box for e in listing.elements if e.role in ("list", "table", "tree", "tree table")]
    per_list: Counter[tuple[int, str]] = Counter()
    found: list[Element] = []
    for element in scope:
        if element.role not in ROLE_KINDS and not (element.role in MENU_ENTRY_ROLES and element.name):
            continue
        if ROLE_KINDS.get(element.role) == "row":  # a few rows per list: enough to find what selecting does
            owner = next((i for i, box in enumerate(lists) if _inside(element.box, box)), -1), element.window
            if per_list[owner] >= ROWS_PER_LIST:
                continue
            per_list[owner] += 1
        found.append(element)
    if found:
        return found
    return [e for e in scope if e.role in FALLBACK_ROLES and e.name.strip()]


def signature(screen: Screen | ElementList) -> str:
    """A screen's identity: its windows, menu bars and what can be clicked, by role and
    name (never boxes, states or the text of fields and labels)."""
    listing = screen.listing if isinstance(screen, Screen) else screen
    parts = {f"{e.role}:{e.name}" for e in listing.elements if e.role in WINDOW_ROLES or e.role == "menu bar"}
    parts |= {f"{e.role}:{e.name}" for e in clickable(listing)}
    return hashlib.sha1("\n".join(sorted(parts)).encode()).hexdigest()[:16]


def kind_of(element: Element, popups: Sequence[Element]) -> str:
    """What a click on ``element`` is called (``describe_path`` words it)."""
    if element.role in MENU_ENTRY_ROLES:
        if any(element.id == e.id for e in popups):
            return "cascade" if element.role == "menu" else "menu_command"
        return "menu" if element.role == "menu" else "menu_command"
    return ROLE_KINDS.get(element.role, element.role)


def _box(value: Mapping[str, Any]) -> tuple[int, int, int, int]:
    return int(value["x"]), int(value["y"]), int(value["w"]), int(value["h"])


def state_boxes(state: Mapping[str, Any]) -> list[tuple[dict[str, str], tuple[int, int, int, int]]]:
    """Everything a practice app publishes with a box, as (Locator fields, box): widgets
    (by path, or by their text when that is unique), list rows, a drop-down's rows,
    rows an app publishes as its own field."""
    found: list[tuple[dict[str, str], tuple[int, int, int, int]]] = []
    widgets = state.get("widgets", {})
    texts = [w.get("text") for w in widgets.values()]
    for wid, w in widgets.items():
        if not (isinstance(w, Mapping) and w.get("visible") and _is_box(w)):
            continue
        if "." not in wid:
            track = w.get("track")
            path = f"widgets.{wid}.track" if w.get("kind") == "slider" and _is_box(track) else f"widgets.{wid}"
            found.append(({"path": path}, _box(w)))
            found += [({"path": f"widgets.{wid}.rows.{i}"}, _box(r))
                      for i, r in enumerate(w.get("rows") or []) if _is_box(r)]
        elif w.get("text") and texts.count(w["text"]) == 1:
            found.append(({"text": str(w["text"])}, _box(w)))
    popdown = state.get("open_popdown")
    if isinstance(popdown, Mapping):
        found += [({"path": f"open_popdown.rows.{i}"}, _box(r))
                  for i, r in enumerate(popdown.get("rows") or []) if _is_box(r)]
    for key, value in app_fields(state).items():
        if isinstance(value, list) and all(_is_box(v) for v in value):
            found += [({"path": f"{key}.{i}"}, _box(v)) for i, v in enumerate(value)]
    return found


def ground(element: Element, state: Mapping[str, Any]) -> dict[str, str]:
    """The Locator fields of the published thing ``element`` is (a menu entry by its label,
    anything else by box IoU >= 0.5), or {} when the app publishes no such thing."""
    if element.role in MENU_ENTRY_ROLES:
        labels = {str(item.get("label")) for item in state.get("menubar", [])}
        labels |= {str(item.get("label")) for menu in state.get("open_menus", []) for item in menu.get("items", [])}
        return {"menu": element.name} if element.name in labels else {}
    best, best_iou = {}, 0.5
    for fields, box in state_boxes(state):
        overlap = iou(element.box, box)
        if overlap >= best_iou:
            best, best_iou = fields, overlap
    return best


def candidates(screen: Screen) -> list[Probe]:
    """What can be clicked on this screen as probes, in reading order; tied to the app's
    published state where it has one."""
    elements = list(screen.listing.elements)
    popups = popup_entries([e for e in elements if _usable(e)])
    seen: Counter[tuple[str, str]] = Counter()
    rank: dict[int, int] = {}
    for element in elements:
        rank[element.id] = seen[(element.role, element.name)]
        seen[(element.role, element.name)] += 1
    probes = []
    for element in clickable(screen.listing):
        fields = ground(element, screen.state) if screen.state is not None else {}
        probes.append(Probe(kind_of(element, popups), element.name, role=element.role, nth=rank[element.id],
                            box=element.box, **fields))
    return probes


def _is_box(value: Any) -> bool:
    return isinstance(value, Mapping) and all(k in value for k in ("x", "y", "w", "h"))


def element_changes(before: ElementList, after: ElementList) -> tuple[tuple[str, ...], tuple[str, ...], tuple[str, ...]]:
    """Element-level change between two listings: (appeared, went away, changed). Elements
    are matched by role, name and rank; one that went away and one of its role that
    appeared in about the same place (IoU >= 0.5) read as a rename."""
    def keyed(listing: ElementList) -> dict[tuple[str, int], Element]:
        out: dict[tuple[str, int], Element] = {}
        count: Counter[str] = Counter()
        for element in listing.elements:
            key = f"{element.role}:{element.name}"
            out[(key, count[key])] = element
            count[key] += 1
        return out

    def show(key: tuple[str, int]) -> str:
        return key[0] + (f" #{key[1] + 1}" if key[1] else "")

    old, new = keyed(before), keyed(after)
    added = [k for k in new if k not in old]
    removed = [k for k in old if k not in new]
    changed = [f"{show(k)}: states {','.join(sorted(old[k].states)) or '-'} -> {','.join(sorted(new[k].states)) or '-'}"
               for k in old.keys() & new.keys() if old[k].states != new[k].states]
    for key in list(removed):
        was = old[key]
        match = next((a for a in added if new[a].role == was.role and iou(new[a].box, was.box) >= 0.5), None)
        if match is not None:
            changed.append(f"{was.role}: {was.name!r} -> {new[match].name!r}")
            removed.remove(key)
            added.remove(match)
    return (tuple(sorted(show(k) for k in added)[:MAX_CHANGES_KEPT]),
            tuple(sorted(show(k) for k in removed)[:MAX_CHANGES_KEPT]), tuple(sorted(changed)[:MAX_CHANGES_KEPT]))
