"""Exploration-based task generation: walk an app's on-screen elements depth-first (in
the spirit of OSExpert's GUI-DFS), write down what each path of clicks changed (a
"guidebook"), and propose tasks grounded in it.

What can be clicked comes from the element listing (``Sandbox.elements()``: Tk
introspection, AT-SPI, OCR), so the walk works on the practice apps, on mousepad, on
xterm and on any app a user adds. The walk, for one app in one sandbox:

1. reset the sandbox to a task that only launches the app; the settled listing is the
   first *screen*, identified by the roles and names of what is on it (never boxes);
   what can be clicked on it: enabled buttons, check boxes, radio buttons, tabs, list
   rows, combo boxes, menu bar entries; only the deepest open menu's entries while a
   menu is open; only the dialog's elements while a dialog is up; labels and OCR text
   lines only when nothing else is there;
2. for each of those, from a sandbox that is at this screen: click it (``Click(element=id)``),
   let the screen settle, and record the change: for practice apps the diff of their
   published state (ignoring ``seq``/``time``/``focus`` and geometry: the ground truth
   that checks read); for every app the elements that appeared, went away or changed
   name or state, and the window titles that opened or closed;
3. when the click led to a screen not seen yet (a menu or sub-menu opened, a tab page
   or a dialog appeared) and the depth allows, explore that screen first (depth-first);
4. whenever the sandbox is no longer at the screen being explored, bring it back: by a
   click or two along transitions seen already (from one tab page to another), else by
   resetting and replaying the path that led there.

Bounds: ``max_depth`` clicks per path, ``max_actions`` probes, ``time_limit_s``.

Proposals turn each path whose change a check can read into a Task: for practice apps
``app_state`` + ``equals`` (or ``contains`` for a list that grew), with the path as the
oracle through Locators (an element is tied to the published widget whose box it
matches); for other apps a window title that the path opens (``windows`` +
``contains``) or closes (``not_contains``), with the path as clicks at the elements'
centres. Family ``explore_<app>``, provenance ``exploration``; they go through
admission like any other task.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

from deskdojo.core.actions import Click, Wait
from deskdojo.core.elements import ElementList
from deskdojo.core.errors import DeskdojoError
from deskdojo.core.oracle import OracleError, wait_until_quiet, without_runtime_keys
from deskdojo.core.records import to_json
from deskdojo.core.types import Check, OracleStep, Provenance, SetupStep, Split, StateCondition, Task
from deskdojo.curriculum.families.base import launch
from deskdojo.curriculum.screens import (
    Change, Probe, Screen, candidates, comparable, diff, element_changes, flatten, screen_parts, signature,
)

GUIDEBOOK_FORMAT_VERSION = 2
FIRST_CHANGE_S = 0.6  # a click that changes nothing has published nothing by then
QUIET_S = 0.25  # a state that has held still this long is settled
SETTLE_LIMIT_S = 5.0
MAX_WAY = 2  # clicks along known transitions tried before a reset (a reset relaunches the app)
REAL_APPS = {  # apps without published state that the command knows how to launch
    "mousepad": (("mousepad",), "Mousepad$"),
    "xterm": (("xterm", "-T", "xterm", "-geometry", "80x24+0+0"), "^xterm$"),
}


class ExploreError(DeskdojoError):
    """The app could not be explored (it did not start, or its state never settled)."""


# --- the guidebook ------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Entry:
    """What one path of probes did: the last probe's state changes and what it opened or closed."""

    path: tuple[Probe, ...]
    screen: str = ""  # the signature of the screen the last probe was clicked on
    changes: tuple[Change, ...] = ()  # in the app's published state (practice apps)
    opened: tuple[str, ...] = ()  # windows, menus and widgets that appeared
    closed: tuple[str, ...] = ()  # ... and those that went away
    elements_added: tuple[str, ...] = ()  # "role:name" of elements that appeared
    elements_removed: tuple[str, ...] = ()  # ... and went away
    elements_changed: tuple[str, ...] = ()  # "role:name: states a -> b", "role: 'old' -> 'new'"
    windows_opened: tuple[str, ...] = ()  # window titles that appeared
    windows_closed: tuple[str, ...] = ()  # ... and went away

    @property
    def changed_state(self) -> bool:
        """Whether it changed something a check can read: published state, or a window title."""
        return bool(self.changes or self.windows_opened or self.windows_closed)


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
    argv: tuple[str, ...] = ()  # how an app without published state was launched (empty: a practice app)
    wait_window: str = ""  # ... and the title its launch waits for
    initial_windows: tuple[str, ...] = ()  # window titles on the first screen
    format_version: int = GUIDEBOOK_FORMAT_VERSION

    @property
    def practice(self) -> bool:
        return not self.argv

    def setup(self) -> SetupStep:
        """The setup step that launches the app as the walk did."""
        return launch_step(self.app, self.params, self.argv, self.wait_window)

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


# --- the walk -----------------------------------------------------------------------


def launch_step(app: str, params: Mapping[str, Any], argv: Sequence[str] = (), wait_window: str = "") -> SetupStep:
    """Launch practice ``app`` with ``params``, or (``argv`` given) any other program,
    waiting for a window whose title matches ``wait_window`` (default: none)."""
    if not argv:
        return launch(app, params)
    args: dict[str, Any] = {"argv": list(argv), "timeout": 20.0}
    if wait_window:
        args["wait_window"] = wait_window
    return SetupStep("launch", args)


class _Walker:
    """Depth-first exploration of one app; see the module docstring."""

    def __init__(self, app: str, sandbox: Any, params: Mapping[str, Any], *, argv: Sequence[str],
                 wait_window: str, max_depth: int, max_actions: int, time_limit_s: float,
                 sources: Sequence[str] | None):
        self.app, self.sandbox, self.params = app, sandbox, dict(params)
        self.argv, self.wait_window, self.sources = tuple(argv), wait_window, sources
        self.practice = not self.argv
        self.max_depth, self.max_actions = max_depth, max_actions
        self.deadline = time.monotonic() + time_limit_s
        self.task = Task(id=f"explore-{app}", instruction=f"explore {app}", family=f"explore_{app}",
                         setup=(launch_step(app, self.params, self.argv, wait_window),),
                         provenance=Provenance.EXPLORATION)
        self.initial: Mapping[str, Any] = {}
        self.initial_windows: tuple[str, ...] = ()
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

    def look(self, state: Mapping[str, Any] | None = None) -> Screen:
        listing = self.sandbox.elements(self.sources)
        windows = tuple(sorted(w.title for w in self.sandbox.windows()))
        return Screen(listing, windows, state)

    def settle(self, before: Screen | None) -> Screen:
        """The screen once it changed after ``before`` (or FIRST_CHANGE_S passed) and then
        held still: a practice app's published state, else the element listing."""
        if self.practice:
            since_seq = before.state.get("seq") if before is not None and before.state is not None else None
            state, _ = wait_until_quiet(
                self.state, quiet=QUIET_S, timeout=SETTLE_LIMIT_S, key=without_runtime_keys,
                ready=lambda state, waited: state is not None and (
                    since_seq is None or state.get("seq") != since_seq or waited > FIRST_CHANGE_S))
            if state is None:
                raise ExploreError(f"{self.app} published no state within {SETTLE_LIMIT_S:g} s")
            return self.look(state)
        old = _fingerprint(before.listing) if before is not None else None
        screen, _ = wait_until_quiet(
            self.look, quiet=QUIET_S, timeout=SETTLE_LIMIT_S, key=lambda s: _fingerprint(s.listing),
            ready=lambda s, waited: (bool(s.listing.elements) or waited > SETTLE_LIMIT_S / 2) and (
                old is None or _fingerprint(s.listing) != old or waited > FIRST_CHANGE_S))
        return screen  # the last listing read: the one the guest resolves element ids against

    def click(self, probe: Probe, before: Screen) -> Screen:
        """Click ``probe``'s element by its id in the listing the guest read last."""
        element = probe.find(before.listing)
        if element is None:
            raise KeyError(f"{probe.role} {probe.label!r} is not on screen")
        result = self.sandbox.act(Click(element=element.id))
        if not result.ok:  # moved since that listing (refused as stale): read again, try once more
            element = probe.find(self.look(before.state).listing)
            result = self.sandbox.act(Click(element=element.id)) if element is not None else result
            if not result.ok:
                raise OracleError(f"clicking {probe.role} {probe.label!r} was refused: {result.error}")
        return self.settle(before)

    def return_to(self, screen: str, path: tuple[Probe, ...]) -> Screen:
        """Bring the sandbox back to ``screen``: it may be there already, or a click or two
        along known transitions away (a tab page from another); else reset and replay."""
        now = self.settle(None)
        if not now.closed:
            way = self.way(signature(now), screen)
            try:
                for probe in way or ():
                    now = self.click(probe, now)
                    self.moved += 1
            except (OracleError, KeyError):
                way = None
            if way is not None and signature(now) == screen:
                self.at = path
                return now
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

    def restore(self, path: tuple[Probe, ...]) -> Screen:
        """Reset the sandbox and replay ``path``: the sandbox is then at that screen."""
        self.sandbox.reset(self.task)
        self.resets += 1
        screen = self.settle(None)
        for probe in path:
            screen = self.click(probe, screen)
        self.at = path
        return screen

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
        screen = self.restore(())
        self.initial = comparable(screen.state) if screen.state is not None else {}
        self.initial_windows = screen.windows
        self.routes[signature(screen)] = ()
        self.explore((), screen)

    def explore(self, path: tuple[Probe, ...], screen: Screen) -> None:
        here = signature(screen)
        self.seen_screens.add(here)
        probes = candidates(screen)
        self.widgets_seen |= {f"{p.role}:{p.label}" for p in probes}
        for probe in probes:
            if self.out_of_budget():
                return
            if self.at != path:
                screen = self.return_to(here, path)
                if signature(screen) != here:  # the app did not come back the same way: stop here
                    return
            try:
                after = self.click(probe, screen)
            except (OracleError, KeyError) as exc:  # it moved or vanished: note it, go on
                self.actions += 1
                self.at = None
                self.entries.append(Entry((*path, probe), screen=here, closed=(f"error: {exc}",)))
                continue
            self.actions += 1
            self.entries.append(self.entry((*path, probe), here, screen, after))
            there = signature(after)
            self.moves.setdefault(here, {})[probe.key()] = (probe, there)
            if there not in self.routes or len(path) + 1 < len(self.routes[there]):
                self.routes[there] = (*path, probe)
            if after.closed:
                self.at = None
                continue
            if there == here:
                screen = after  # same screen: carry on from here (the diff of the next probe is its own)
                continue
            self.at = None
            if there not in self.seen_screens and len(path) + 1 < self.max_depth:
                self.at = (*path, probe)
                self.explore((*path, probe), after)
                if self.stopped_by != "done":
                    return

    def entry(self, path: tuple[Probe, ...], here: str, before: Screen, after: Screen) -> Entry:
        """What the last probe of ``path`` changed: the published state's diff and what
        opened or closed (practice apps), the elements and window titles (every app)."""
        added, removed, changed = element_changes(before.listing, after.listing)
        opened_windows = tuple(sorted(set(after.windows) - set(before.windows)))
        closed_windows = tuple(sorted(set(before.windows) - set(after.windows)))
        if before.state is not None and after.state is not None:
            before_parts, after_parts = screen_parts(before.state), screen_parts(after.state)
            changes, opened, closed = (diff(before.state, after.state), tuple(sorted(after_parts - before_parts)),
                                       tuple(sorted(before_parts - after_parts)))
        else:
            changes = ()
            opened = tuple(f"window:{t}" for t in opened_windows)
            closed = tuple(f"window:{t}" for t in closed_windows)
        return Entry(path, screen=here, changes=changes, opened=opened, closed=closed, elements_added=added,
                     elements_removed=removed, elements_changed=changed, windows_opened=opened_windows,
                     windows_closed=closed_windows)


def _fingerprint(listing: ElementList) -> tuple[tuple[str, str, tuple[int, ...], frozenset[str]], ...]:
    """What settling compares: every element's role, name, box and states (not its id)."""
    return tuple((e.role, e.name, e.box, e.states) for e in listing.elements)


def explore_app(app: str, sandbox: Any, *, params: Mapping[str, Any] | None = None, max_depth: int = 3,
                max_actions: int = 200, time_limit_s: float = 300.0, argv: Sequence[str] | None = None,
                wait_window: str | None = None, sources: Sequence[str] | None = None) -> Guidebook:
    """Explore ``app`` in ``sandbox`` depth-first on its elements and return its guidebook.

    A practice app is launched with ``params``; another program with ``argv`` (mousepad
    and xterm have defaults in REAL_APPS), waiting for a window titled ``wait_window``.
    ``sources`` picks the element sources (default: all the guest has). The sandbox is
    reset as often as needed and left wherever the walk ended."""
    if max_depth < 1 or max_actions < 1:
        raise ValueError(f"max_depth and max_actions must be >= 1, got {max_depth} and {max_actions}")
    if argv is None and app in REAL_APPS:
        argv, default_wait = REAL_APPS[app]
        wait_window = default_wait if wait_window is None else wait_window
    started = time.monotonic()
    walker = _Walker(app, sandbox, dict(params or ({} if argv else {"seed": 0})), argv=tuple(argv or ()),
                     wait_window=wait_window or "", max_depth=max_depth, max_actions=max_actions,
                     time_limit_s=time_limit_s, sources=sources)
    walker.walk()
    home = sandbox.exec(["printenv", "HOME"]).stdout.strip()
    return Guidebook(app=app, params=walker.params, initial=walker.initial, home=home, entries=tuple(walker.entries),
                     routes=tuple(Route(screen, path) for screen, path in walker.routes.items()),
                     widgets_seen=tuple(sorted(walker.widgets_seen)), screens=len(walker.seen_screens),
                     actions_tried=walker.actions, navigation_clicks=walker.moved, resets=walker.resets,
                     seconds=round(time.monotonic() - started, 3), stopped_by=walker.stopped_by,
                     max_depth=max_depth, argv=walker.argv, wait_window=walker.wait_window,
                     initial_windows=walker.initial_windows)


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


def window_checks(entry: Entry, initial_windows: Sequence[str]) -> tuple[Check, ...]:
    """Checks on window titles: one the path opened that the first screen did not have
    (``contains``), else one it closed that the first screen had (``not_contains``)."""
    for title in entry.windows_opened:
        if title not in initial_windows:
            return (Check("windows", "contains", {}, expected=title),)
    for title in entry.windows_closed:
        if title in initial_windows:
            return (Check("windows", "not_contains", {}, expected=title),)
    return ()


def effect(task: Task) -> str:
    """What a task achieves: its last click and what its checks expect (paths that reach
    the same effect through other screens make the same task)."""
    last = task.oracle[-2]
    return json.dumps([to_json(last.at) if last.at is not None else to_json(last.action), to_json(task.checks)],
                      sort_keys=True)


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
        parts.append(verb.format(probe.label or probe.role))
    if menu:
        parts.append("open the " + " > ".join(menu) + " menu")
    text = ", then ".join(parts)
    return text[0].upper() + text[1:] + "."


def task_for(guidebook: Guidebook, entry: Entry, *, seed: int) -> Task | None:
    """The task of doing ``entry`` by the shortest known path, or None when its change
    cannot be checked: in a practice app's state, else in the window titles. The oracle
    ends once the state shows the change (a practice app) or after a pause."""
    checks = checks_for(entry, guidebook.initial, guidebook.app, home=guidebook.home) if guidebook.practice else ()
    checks = checks or window_checks(entry, guidebook.initial_windows)
    if not checks:
        return None
    app, path = guidebook.app, guidebook.shortest(entry)
    if any(not p.grounded and p.box is None for p in path):
        return None
    first = checks[0]
    if first.getter == "app_state" and first.metric == "equals" and first.expected is not None:
        settle = OracleStep(Wait(0.05), wait=StateCondition(app, first.args["path"], first.expected))
    else:
        settle = OracleStep(Wait(0.3 if guidebook.practice else 1.0))
    steps: list[OracleStep] = []
    for probe in path:  # clicks at elements' centres wait for the screen the last click opens
        steps += [probe.step(app)] if probe.grounded else [OracleStep(Wait(0.6)), probe.step(app)]
    digest = hashlib.sha1(json.dumps([p.key() for p in path]).encode()).hexdigest()[:8]
    return Task(id=f"explore_{app}-L{len(path) - 1}-{digest}", instruction=describe_path(path),
                family=f"explore_{app}", level=len(path) - 1, seed=seed, split=Split.TRAIN,
                setup=(guidebook.setup(),), checks=checks, oracle=(*steps, settle), max_steps=len(path) + 4,
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
