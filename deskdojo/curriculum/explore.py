"""Exploration-based task generation: walk a practice app's widget tree depth-first
(in the spirit of OSExpert's GUI-DFS), write down what each path of clicks changed in
the app's published state (a "guidebook"), and propose tasks grounded in it.

The walk, for one app in one sandbox:

1. reset the sandbox to a task that only launches the app; the settled state is the
   first *screen* (what can be clicked now: enabled widgets, menu bar entries, list
   rows; only the open menu's entries while a menu is open; only the dialog's widgets
   while a dialog holds the input);
2. for each thing on the screen, from a sandbox that is at this screen: click it, let
   the state settle, record the change (a diff of the published state, ignoring the
   runtime keys ``seq``/``time``/``focus`` and geometry) and what opened or closed
   (windows, menus, widgets);
3. when the click led to a screen not seen yet (a menu or sub-menu opened, a tab page
   or a dialog appeared) and the depth allows, explore that screen first (depth-first);
4. whenever the sandbox is no longer at the screen being explored, bring it back: by a
   click or two along transitions seen already (from one tab page to another), else by
   resetting and replaying the path that led there.

Bounds: ``max_depth`` clicks per path, ``max_actions`` probes, ``time_limit_s``.

Proposals turn each state-changing path into a Task: the path as the oracle (Locators,
never pixels), checks read from the recorded change (``app_state`` + ``equals``, or
``contains`` for a list that grew), family ``explore_<app>``, provenance
``exploration``. They go through admission like any other task.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import random
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

from deskdojo.core.actions import Click, Wait
from deskdojo.core.errors import DeskdojoError
from deskdojo.core.oracle import (
    MISSING, RUNTIME_KEYS, OracleError, changes, locate, resolve_when_ready, wait_until_quiet, without_runtime_keys,
)
from deskdojo.core.records import to_json
from deskdojo.core.types import Check, Locator, OracleStep, Provenance, Split, StateCondition, Task
from deskdojo.curriculum.families.base import launch

GUIDEBOOK_FORMAT_VERSION = 1
NOT_APP_FIELDS = frozenset({"app", "version", "seed", "params", "style", "widgets", "windows", "menubar",
                            "open_menus", "open_popdown", "closed"}) | RUNTIME_KEYS
GEOMETRY_KEYS = frozenset({"x", "y", "w", "h", "visible", "rows", "kind"})
CLICKABLE_KINDS = frozenset({"button", "checkbox", "radio", "tab", "combobox", "optionmenu"})
ROWS_PER_LIST = 3  # list rows tried per listbox: enough to find what selecting does
FIRST_CHANGE_S = 0.6  # a click that changes nothing has published nothing by then
QUIET_S = 0.25  # a state that has held still this long is settled
SETTLE_LIMIT_S = 5.0
MAX_WAY = 2  # clicks along known transitions tried before a reset (a reset relaunches the app)


class ExploreError(DeskdojoError):
    """The app could not be explored (it did not start, or its state never settled)."""


# --- the guidebook ------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Probe:
    """One exploratory click: what was clicked (``kind``, ``label``) and where (a Locator's
    ``path``, ``menu`` or ``text``)."""

    kind: str
    label: str
    path: str | None = None
    menu: str | None = None
    text: str | None = None

    def locator(self, app: str) -> Locator:
        return Locator(app, path=self.path, menu=self.menu, text=self.text)

    def step(self, app: str) -> OracleStep:
        """Click it, once it is on screen: a widget waits until the app shows it (a page
        that a tab click reveals is published a moment after the click)."""
        wait = None
        if self.path is not None and self.path.startswith("widgets."):
            widget = self.path.split(".")[1]
            wait = StateCondition(app, f"widgets.{widget}.visible", True)
        return OracleStep(Click(0, 0), at=self.locator(app), wait=wait)

    def key(self) -> str:
        return f"{self.kind}:{self.path or self.menu or self.text}"


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


@dataclass(frozen=True, slots=True)
class Entry:
    """What one path of probes did: the last probe's state changes and what it opened or closed."""

    path: tuple[Probe, ...]
    screen: str = ""  # the signature of the screen the last probe was clicked on
    changes: tuple[Change, ...] = ()
    opened: tuple[str, ...] = ()  # windows, menus and widgets that appeared
    closed: tuple[str, ...] = ()  # ... and those that went away

    @property
    def changed_state(self) -> bool:
        return bool(self.changes)


@dataclass(frozen=True, slots=True)
class Route:
    """The shortest path the walk found to a screen (depth-first finds long ones first)."""

    screen: str
    path: tuple[Probe, ...]


@dataclass(frozen=True, slots=True)
class Guidebook:
    """What exploring ``app`` (launched with ``params``) found."""

    app: str
    params: Mapping[str, Any]
    initial: Mapping[str, Any]  # the first settled state's app fields and widget fields (no geometry)
    home: str  # the sandbox's home folder: values that name it hold only in this sandbox
    entries: tuple[Entry, ...]
    routes: tuple[Route, ...]
    widgets_seen: tuple[str, ...]
    screens: int
    actions_tried: int
    navigation_clicks: int
    resets: int
    seconds: float
    stopped_by: str  # "done", "max_actions" or "time_limit"
    max_depth: int
    format_version: int = GUIDEBOOK_FORMAT_VERSION

    @property
    def state_changing(self) -> tuple[Entry, ...]:
        return tuple(e for e in self.entries if e.changed_state)

    def shortest(self, entry: Entry) -> tuple[Probe, ...]:
        """``entry``'s path with its way to the screen replaced by the shortest one known."""
        route = next((r.path for r in self.routes if r.screen == entry.screen), None)
        prefix = entry.path[:-1]
        return (route if route is not None and len(route) < len(prefix) else prefix) + entry.path[-1:]

    def to_json(self) -> dict[str, Any]:
        return to_json(self)

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> "Guidebook":
        from deskdojo.core.records import from_json

        return from_json(cls, data)

    def save(self, path: str | Path) -> Path:
        path = Path(path)
        path.write_text(json.dumps(self.to_json(), indent=1, sort_keys=True))
        return path

    def summary(self) -> dict[str, Any]:
        return {"app": self.app, "widgets_seen": len(self.widgets_seen), "screens": self.screens,
                "actions_tried": self.actions_tried, "state_changing": len(self.state_changing),
                "navigation_clicks": self.navigation_clicks, "resets": self.resets, "seconds": round(self.seconds, 2), "stopped_by": self.stopped_by}


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


def signature(state: Mapping[str, Any]) -> str:
    """A screen's identity: what is on it and which of it can be clicked."""
    parts = sorted(screen_parts(state)) + sorted(p.key() for p in candidates(state))
    return hashlib.sha1("\n".join(parts).encode()).hexdigest()[:16]


def candidates(state: Mapping[str, Any]) -> list[Probe]:
    """What can be clicked on this screen, in reading order."""
    popdown = state.get("open_popdown")
    if popdown:
        return [Probe("row", r["text"], path=f"open_popdown.rows.{i}") for i, r in enumerate(popdown["rows"])]
    menus = state.get("open_menus") or []
    if menus:  # a posted menu holds the pointer: only its entries can be clicked
        deepest = max(menus, key=lambda m: len(m["menu"]))
        return [Probe("cascade" if item["type"] == "cascade" else "menu_command", item["label"], menu=item["label"])
                for item in deepest["items"] if item.get("enabled", True) and item["type"] != "separator"]
    widgets = state.get("widgets", {})
    modal = "dialog" in state.get("windows", {})
    found: list[Probe] = [Probe("menu", item["label"], menu=item["label"])
                          for item in state.get("menubar", [])] if not modal else []
    texts = [w.get("text") for w in widgets.values()]
    for wid, w in widgets.items():
        if modal and not wid.startswith("dialog."):
            continue  # the dialog grabs the input
        if not (w.get("visible") and w.get("enabled", True) and w.get("w", 0) > 0 and w.get("h", 0) > 0):
            continue
        label = str(w.get("text") or wid)
        if w.get("kind") in CLICKABLE_KINDS:
            if "." not in wid:
                found.append(Probe(w["kind"], label, path=f"widgets.{wid}"))
            elif w.get("text") and texts.count(w["text"]) == 1:
                found.append(Probe(w["kind"], label, text=w["text"]))
        elif w.get("rows") and "." not in wid and w.get("kind") in ("listbox", "list"):
            found += [Probe("row", r["text"], path=f"widgets.{wid}.rows.{i}")
                      for i, r in enumerate(w["rows"][:ROWS_PER_LIST])]
        elif w.get("kind") == "slider" and isinstance(w.get("track"), Mapping) and "." not in wid:
            found.append(Probe("slider", label.split(":", 1)[-1], path=f"widgets.{wid}.track"))
    if not modal:  # rows an app publishes as its own field (a canvas list): {text, x, y, w, h}
        for key, value in app_fields(state).items():
            if isinstance(value, list) and value and all(_is_box(v) and "text" in v for v in value):
                found += [Probe("row", str(v["text"]), path=f"{key}.{i}") for i, v in enumerate(value[:ROWS_PER_LIST])]
    return sorted(found, key=lambda p: _reading_order(state, p))


def _is_box(value: Any) -> bool:
    return isinstance(value, Mapping) and all(k in value for k in ("x", "y", "w", "h"))


def _reading_order(state: Mapping[str, Any], probe: Probe) -> tuple[int, int]:
    try:
        x, y = _point(state, probe)
    except KeyError:
        return (0, 0)
    return (y // 8, x)


def _point(state: Mapping[str, Any], probe: Probe) -> tuple[int, int]:
    return locate({state["app"]: state}, probe.locator(state["app"]))


# --- the walk -----------------------------------------------------------------------


class _Walker:
    """Depth-first exploration of one app; see the module docstring."""

    def __init__(self, app: str, sandbox: Any, params: Mapping[str, Any], *, max_depth: int,
                 max_actions: int, time_limit_s: float):
        self.app, self.sandbox, self.params = app, sandbox, dict(params)
        self.max_depth, self.max_actions = max_depth, max_actions
        self.deadline = time.monotonic() + time_limit_s
        self.task = Task(id=f"explore-{app}", instruction=f"explore {app}", family=f"explore_{app}",
                         setup=(launch(app, self.params),), provenance=Provenance.EXPLORATION)
        self.initial: Mapping[str, Any] = {}
        self.entries: list[Entry] = []
        self.routes: dict[str, tuple[Probe, ...]] = {}
        self.moves: dict[str, dict[str, tuple[Probe, str]]] = {}  # screen -> probe -> (probe, next screen)
        self.seen_screens: set[str] = set()
        self.widgets_seen: set[str] = set()
        self.actions = 0
        self.moved = 0  # clicks that only brought the app back to a screen
        self.resets = 0
        self.stopped_by = "done"
        self.at: tuple[Probe, ...] | None = None  # the path the sandbox is at, None when unknown

    # sandbox helpers

    def state(self) -> Mapping[str, Any] | None:
        return self.sandbox.app_state().get("apps", {}).get(self.app)

    def settle(self, since_seq: int | None) -> Mapping[str, Any]:
        """The state once it changed after ``since_seq`` (or FIRST_CHANGE_S passed) and then held still."""
        state, _ = wait_until_quiet(
            self.state, quiet=QUIET_S, timeout=SETTLE_LIMIT_S, key=without_runtime_keys,
            ready=lambda state, waited: state is not None and (
                since_seq is None or state.get("seq") != since_seq or waited > FIRST_CHANGE_S))
        if state is None:
            raise ExploreError(f"{self.app} published no state within {SETTLE_LIMIT_S:g} s")
        return state

    def click(self, probe: Probe, before: Mapping[str, Any]) -> Mapping[str, Any]:
        action = resolve_when_ready(self.sandbox, dataclasses.replace(probe.step(self.app), timeout=3.0))
        self.sandbox.act(action)
        return self.settle(before.get("seq"))

    def return_to(self, screen: str, path: tuple[Probe, ...]) -> Mapping[str, Any]:
        """Bring the sandbox back to ``screen``: it may be there already, or a click or two
        along known transitions away (a tab page from another); else reset and replay."""
        state = self.state()
        if state is not None and state.get("closed") is not True:
            state = self.settle(None)
            way = self.way(signature(state), screen)
            try:
                for probe in way or ():
                    state = self.click(probe, state)
                    self.moved += 1
            except (OracleError, KeyError):
                way = None
            if way is not None and signature(state) == screen:
                self.at = path
                return state
        return self.restore(path)

    def way(self, start: str, goal: str) -> list[Probe] | None:
        """The shortest known sequence of clicks (at most MAX_WAY) from screen ``start`` to ``goal``."""
        frontier: list[tuple[str, list[Probe]]] = [(start, [])]
        seen = {start}
        while frontier:
            screen, probes = frontier.pop(0)
            if screen == goal:
                return probes
            if len(probes) >= MAX_WAY:
                continue
            for probe, after in self.moves.get(screen, {}).values():
                if after not in seen:
                    seen.add(after)
                    frontier.append((after, [*probes, probe]))
        return None

    def restore(self, path: tuple[Probe, ...]) -> Mapping[str, Any]:
        """Reset the sandbox and replay ``path``: the sandbox is then at that screen."""
        self.sandbox.reset(self.task)
        self.resets += 1
        state = self.settle(None)
        for probe in path:
            state = self.click(probe, state)
        self.at = path
        return state

    def out_of_budget(self) -> bool:
        if self.actions >= self.max_actions:
            self.stopped_by = "max_actions"
        elif time.monotonic() > self.deadline:
            self.stopped_by = "time_limit"
        else:
            return False
        return True

    # the depth-first walk

    def walk(self) -> None:
        state = self.restore(())
        self.initial = comparable(state)
        self.routes[signature(state)] = ()
        self.explore((), state)

    def explore(self, path: tuple[Probe, ...], state: Mapping[str, Any]) -> None:
        here = signature(state)
        self.seen_screens.add(here)
        self.widgets_seen |= {p.split(":", 1)[1] for p in screen_parts(state) if p.startswith("widget:")}
        self.widgets_seen |= {f"menu:{item['label']}" for item in state.get("menubar", [])}
        self.widgets_seen |= {"menu:" + " > ".join([*menu["menu"], item["label"]])
                              for menu in state.get("open_menus", []) for item in menu["items"]}
        for probe in candidates(state):
            if self.out_of_budget():
                return
            if self.at != path:
                state = self.return_to(here, path)
                if signature(state) != here:  # the app did not come back the same way: stop here
                    return
            try:
                after = self.click(probe, state)
            except (OracleError, KeyError) as exc:  # it moved or vanished: note it, go on
                self.actions += 1
                self.at = None
                self.entries.append(Entry((*path, probe), screen=here, closed=(f"error: {exc}",)))
                continue
            self.actions += 1
            before_parts, after_parts = screen_parts(state), screen_parts(after)
            entry = Entry((*path, probe), screen=here, changes=diff(state, after),
                          opened=tuple(sorted(after_parts - before_parts)),
                          closed=tuple(sorted(before_parts - after_parts)))
            self.entries.append(entry)
            there = signature(after)
            self.moves.setdefault(here, {})[probe.key()] = (probe, there)
            if there not in self.routes or len(path) + 1 < len(self.routes[there]):
                self.routes[there] = (*path, probe)
            if after.get("closed") is True:
                self.at = None
                continue
            if there == here:
                state = after  # same screen: carry on from here (the diff of the next probe is its own)
                continue
            self.at = None
            if there not in self.seen_screens and len(path) + 1 < self.max_depth:
                self.at = (*path, probe)
                self.explore((*path, probe), after)
                if self.stopped_by != "done":
                    return


def explore_app(app: str, sandbox: Any, *, params: Mapping[str, Any] | None = None, max_depth: int = 3,
                max_actions: int = 200, time_limit_s: float = 300.0) -> Guidebook:
    """Explore practice ``app`` (launched with ``params``) in ``sandbox`` depth-first and
    return its guidebook. The sandbox is reset as often as needed and left wherever
    the walk ended."""
    if max_depth < 1 or max_actions < 1:
        raise ValueError(f"max_depth and max_actions must be >= 1, got {max_depth} and {max_actions}")
    started = time.monotonic()
    walker = _Walker(app, sandbox, dict(params or {"seed": 0}), max_depth=max_depth, max_actions=max_actions,
                     time_limit_s=time_limit_s)
    walker.walk()
    home = sandbox.exec(["printenv", "HOME"]).stdout.strip()
    return Guidebook(app=app, params=walker.params, initial=walker.initial, home=home, entries=tuple(walker.entries),
                     routes=tuple(Route(screen, path) for screen, path in walker.routes.items()),
                     widgets_seen=tuple(sorted(walker.widgets_seen)), screens=len(walker.seen_screens),
                     actions_tried=walker.actions, navigation_clicks=walker.moved, resets=walker.resets,
                     seconds=round(time.monotonic() - started, 3), stopped_by=walker.stopped_by,
                     max_depth=max_depth)


# --- proposing tasks ------------------------------------------------------------------


def checks_for(entry: Entry, initial: Mapping[str, Any], app: str, *, home: str = "") -> tuple[Check, ...]:
    """Checks that a fresh run of ``entry.path`` passes and doing nothing fails.

    The walk does not reset between clicks on one screen, so a change may build on the
    clicks before it: a list that grew is expected to hold the new item (``contains``);
    a count that grew from a value the app did not start with is left out (a fresh run
    counts differently); any other value is expected as it ended (``equals``) unless the
    app started with it. The app's own fields come first, equals before contains; at
    most two checks. Values that name the sandbox's folders (``home`` and its parent) are
    left out: another sandbox keeps its home elsewhere.
    """
    local = [os.path.dirname(home.rstrip("/"))] if home else []  # covers home itself
    start = flatten(initial)
    found: list[tuple[tuple[int, int, int], Check]] = []
    for change in entry.changes:
        dotted = change.dotted
        if dotted is None:
            continue
        args = {"app": app, "path": dotted}
        before, after = change.before, change.after
        started_with = start.get(change.path)
        if (isinstance(before, list) and isinstance(after, list) and len(after) > len(before)
                and after[:len(before)] == before):
            check, rank = Check("app_state", "contains", args, expected=after[-1]), 1
        elif (isinstance(before, int) and isinstance(after, int) and not isinstance(after, bool)
              and after > before and before != started_with):
            continue
        elif isinstance(after, list) and before:
            continue  # a reordered or rewritten list: its order may come from the clicks before
        elif after != started_with and after is not None:
            check, rank = Check("app_state", "equals", args, expected=after), 0
        else:
            continue
        if any(folder in json.dumps(check.expected) for folder in local):
            continue
        found.append(((change.path[0] == "widgets", rank, len(change.path)), check))
    return tuple(check for _, check in sorted(found, key=lambda pair: pair[0])[:2])


def effect(task: Task) -> str:
    """What a task achieves: its last click and what its checks expect (paths that reach
    the same effect through other screens make the same task)."""
    return json.dumps([task.oracle[-2].at and to_json(task.oracle[-2].at), to_json(task.checks)], sort_keys=True)


def describe_path(path: Sequence[Probe]) -> str:
    """A natural instruction for a path: menu clicks become "choose A > B > C"."""
    parts: list[str] = []
    menu: list[str] = []
    for probe in path:
        if probe.kind in ("menu", "cascade", "menu_command"):
            menu.append(probe.label)
            if probe.kind == "menu_command":
                parts.append("choose " + " > ".join(menu) + " from the menus")
                menu = []
            continue
        if menu:
            parts.append("open the " + " > ".join(menu) + " menu")
            menu = []
        verb = {"tab": "switch to the \"{}\" tab", "checkbox": "click the \"{}\" checkbox",
                "slider": "click the middle of the \"{}\" slider's track",
                "radio": "select \"{}\"", "row": "pick \"{}\" in the list",
                "combobox": "open the \"{}\" drop-down"}.get(probe.kind, "click \"{}\"")
        parts.append(verb.format(probe.label))
    if menu:
        parts.append("open the " + " > ".join(menu) + " menu")
    text = ", then ".join(parts)
    return text[0].upper() + text[1:] + "."


def task_for(guidebook: Guidebook, entry: Entry, *, seed: int) -> Task | None:
    """The task of doing ``entry`` by the shortest known path, or None when its change
    cannot be checked. The oracle ends once the state shows the change."""
    checks = checks_for(entry, guidebook.initial, guidebook.app, home=guidebook.home)
    if not checks:
        return None
    app, path = guidebook.app, guidebook.shortest(entry)
    first = checks[0]
    settle = (OracleStep(Wait(0.05), wait=StateCondition(app, first.args["path"], first.expected))
              if first.metric == "equals" and first.expected is not None else OracleStep(Wait(0.3)))
    digest = hashlib.sha1(json.dumps([p.key() for p in path]).encode()).hexdigest()[:8]
    return Task(id=f"explore_{app}-L{len(path) - 1}-{digest}", instruction=describe_path(path),
                family=f"explore_{app}", level=len(path) - 1, seed=seed, split=Split.TRAIN,
                setup=(launch(app, guidebook.params),), checks=checks,
                oracle=(*(p.step(app) for p in path), settle), max_steps=len(path) + 4,
                provenance=Provenance.EXPLORATION)


def propose_from_guidebook(guidebook: Guidebook, n: int, seed: int = 0) -> list[Task]:
    """Up to ``n`` distinct tasks from the guidebook's state-changing paths (one per
    effect, by its shortest path), chosen by ``seed`` and spread over depths."""
    tasks: dict[str, Task] = {}
    seen_effects: set[str] = set()
    for entry in sorted(guidebook.state_changing, key=lambda e: len(guidebook.shortest(e))):
        task = task_for(guidebook, entry, seed=seed)
        if task is None or effect(task) in seen_effects or task.id in tasks:
            continue
        seen_effects.add(effect(task))
        tasks[task.id] = task
    rng = random.Random(f"explore/{guidebook.app}/{seed}")
    by_depth: dict[int, list[Task]] = {}
    for task in sorted(tasks.values(), key=lambda t: t.id):
        by_depth.setdefault(task.level, []).append(task)
    for group in by_depth.values():
        rng.shuffle(group)
    chosen: list[Task] = []
    while len(chosen) < n and any(by_depth.values()):
        for level in sorted(by_depth):
            if by_depth[level] and len(chosen) < n:
                chosen.append(by_depth[level].pop())
    return chosen
