"""Running a task's oracle: scripted solutions whose points come from app state at run time.

Practice apps publish where every widget is (``x, y, w, h`` in screen pixels), so an
oracle step names a widget, a list row or a menu entry (a ``Locator``) and this module
turns it into a core Action just before performing it. The same resolution serves
admission (does the oracle pass?), oracle demonstrations and the scripted policy.
Standard library only: the guest image imports ``deskdojo.core`` too.
"""

from __future__ import annotations

import dataclasses
import time
from typing import Any, Callable, Mapping, Sequence

from deskdojo.core.actions import Action, action_from_dict
from deskdojo.core.errors import ActionError, DeskdojoError
from deskdojo.core.types import Locator, OracleStep, StateCondition, Task

POLL_S = 0.03
FOLLOW_LIMIT = 40
"""At most this many actions from one ``follow`` step (a solver that never finishes)."""
FOLLOW_SETTLE_S = 0.5
"""After an action, the next one is taken once the app's published state has changed and
held still for FOLLOW_QUIET_S (a page may show half of what was typed), or after this long
(the app may react without showing it)."""
FOLLOW_QUIET_S = 0.06
RUNTIME_KEYS = frozenset({"seq", "time", "focus"})
"""Keys of a published app state that change on every write, without the world changing."""


class OracleError(DeskdojoError):
    """An oracle step could not be resolved or performed (the task is broken, not the agent)."""


# --- reading published state ------------------------------------------------------


def state_path(state: Any, path: str) -> Any:
    """The value at a dotted ``path`` (list items by number); KeyError naming the missing part.

    Keys may themselves contain dots (widget ids like ``dialog.name``): where a single
    part is not a key, the longest run of parts that is one wins."""
    parts = path.split(".")
    value = state
    index = 0
    while index < len(parts):
        if isinstance(value, Mapping):
            for end in range(len(parts), index, -1):
                key = ".".join(parts[index:end])
                if key in value:
                    value, index = value[key], end
                    break
            else:
                raise KeyError(f"no {'.'.join(parts[:index + 1])!r} in the state")
            continue
        part = parts[index]
        if isinstance(value, (list, tuple)) and part.lstrip("-").isdigit() and -len(value) <= int(part) < len(value):
            value, index = value[int(part)], index + 1
            continue
        raise KeyError(f"no {'.'.join(parts[:index + 1])!r} in the state")
    return value


def center(box: Mapping[str, Any]) -> tuple[int, int]:
    """The centre of anything with ``x, y, w, h`` (a widget, a list row, a menu entry)."""
    return int(box["x"] + box["w"] // 2), int(box["y"] + box["h"] // 2)


def find_widget(state: Mapping[str, Any], *, text: str | None = None, kind: str | None = None) -> str:
    """The id of the one widget with this ``text`` (and ``kind``); KeyError if none or several."""
    found = [wid for wid, w in state.get("widgets", {}).items()
             if (text is None or w.get("text") == text) and (kind is None or w.get("kind") == kind)]
    if len(found) != 1:
        raise KeyError(f"{len(found)} widgets with text={text!r} kind={kind!r} in {state.get('app')!r}")
    return found[0]


def menu_entry(state: Mapping[str, Any], label: str) -> Mapping[str, Any]:
    """The on-screen entry ``label`` of the menu bar or of an open menu (the deepest first)."""
    for menu in reversed(state.get("open_menus", [])):
        for item in menu["items"]:
            if item["label"] == label:
                return item
    for item in state.get("menubar", []):
        if item["label"] == label:
            return item
    raise KeyError(f"no menu entry {label!r} on screen in {state.get('app')!r}")


def locate_box(apps: Mapping[str, Any], locator: Locator) -> dict[str, int]:
    """Screen box ``{x, y, w, h}`` of ``locator`` in the published states ``apps`` (app
    name -> state), moved by the locator's ``dx, dy``; KeyError while it is not on screen."""
    if locator.app not in apps:
        raise KeyError(f"app {locator.app!r} has published no state (running: {', '.join(sorted(apps)) or 'none'})")
    state = apps[locator.app]
    if locator.path is not None:
        box = state_path(state, locator.path)
    elif locator.menu is not None:
        box = menu_entry(state, locator.menu)
    else:
        box = state["widgets"][find_widget(state, text=locator.text)]
    if not isinstance(box, Mapping) or not all(k in box for k in ("x", "y", "w", "h")):
        raise KeyError(f"{locator} does not point at something with x, y, w, h")
    if box["w"] <= 0 or box["h"] <= 0:
        raise KeyError(f"{locator} is not on screen yet (size {box['w']}x{box['h']})")
    return {"x": int(box["x"]) + locator.dx, "y": int(box["y"]) + locator.dy, "w": int(box["w"]), "h": int(box["h"])}


def locate(apps: Mapping[str, Any], locator: Locator) -> tuple[int, int]:
    """Screen point of ``locator`` in the published states ``apps``: its box's centre."""
    return center(locate_box(apps, locator))


def holds(apps: Mapping[str, Any], condition: StateCondition) -> bool:
    try:
        value = state_path(apps[condition.app], condition.path)
    except KeyError:
        return False
    return condition.equals is None or value == condition.equals


def resolve(step: OracleStep, apps: Mapping[str, Any]) -> Action:
    """The concrete Action of ``step`` given the current published states (KeyError if not yet)."""
    action = step.action
    if step.wait is not None and not holds(apps, step.wait):
        raise KeyError(f"waiting for {step.wait.app}.{step.wait.path} == {step.wait.equals!r}")
    if step.at is not None:
        x, y = locate(apps, step.at)
        action = dataclasses.replace(action, x=x, y=y)
    if step.to is not None:
        to_x, to_y = locate(apps, step.to)
        action = dataclasses.replace(action, to_x=to_x, to_y=to_y)
    return action


def needs_state(step: OracleStep) -> bool:
    return step.at is not None or step.to is not None or step.wait is not None or step.follow is not None


def without_runtime_keys(state: Any) -> Any:
    """A published app state without the keys that change on every write."""
    return {k: v for k, v in state.items() if k not in RUNTIME_KEYS} if isinstance(state, Mapping) else state


MISSING = object()
"""Stands for a key one side of a ``changes`` comparison does not have."""


def changes(old: Any, new: Any, *, into_lists: bool = True,
            path: tuple[str, ...] = ()) -> list[tuple[tuple[str, ...], Any, Any]]:
    """Every leaf that differs between two JSON values: ``(key path, old, new)``, where a key
    only one side has shows ``MISSING`` on the other. Objects are compared key by key (the
    old one's keys first); lists of equal length item by item when ``into_lists``, else
    whole. The one state diff: the judge's per-step deltas and exploration both use it."""
    if isinstance(old, Mapping) and isinstance(new, Mapping):
        found = []
        for key in old:
            if key in new:
                found += changes(old[key], new[key], into_lists=into_lists, path=(*path, str(key)))
            else:
                found.append(((*path, str(key)), old[key], MISSING))
        found += [((*path, str(key)), MISSING, new[key]) for key in new if key not in old]
        return found
    if into_lists and isinstance(old, list) and isinstance(new, list) and len(old) == len(new):
        found = []
        for index, (a, b) in enumerate(zip(old, new)):
            found += changes(a, b, into_lists=into_lists, path=(*path, str(index)))
        return found
    return [] if old == new else [(path, old, new)]


def wait_until_quiet(read: Callable[[], Any], *, quiet: float, timeout: float,
                     key: Callable[[Any], Any] = lambda value: value,
                     ready: Callable[[Any, float], bool] = lambda value, waited: True,
                     poll: float = POLL_S) -> tuple[Any, bool]:
    """Poll ``read()`` until ``key`` of what it returns has held still for ``quiet`` seconds
    while ``ready(value, seconds waited)``, at most ``timeout`` seconds. Returns the last
    value and whether it settled. The one settle: the judge and exploration both use it."""
    start = time.monotonic()
    last, since, value = MISSING, start, None
    while True:
        now = time.monotonic()
        value = read()
        if ready(value, now - start):
            current = key(value)
            if current != last:
                last, since = current, now
            elif now - since >= quiet:
                return value, True
        if now - start >= timeout:
            return value, False
        time.sleep(poll)


# --- performing ----------------------------------------------------------------


def resolve_when_ready(sandbox: Any, step: OracleStep) -> Action:
    """Poll the sandbox's app state until ``step`` resolves, up to ``step.timeout`` seconds."""
    if not needs_state(step):
        return step.action
    deadline = time.monotonic() + step.timeout
    while True:
        apps = sandbox.app_state().get("apps", {})
        try:
            return resolve(step, apps)
        except (KeyError, IndexError, TypeError) as exc:
            if time.monotonic() > deadline:
                raise OracleError(f"{exc} (gave up after {step.timeout:g} s)") from None
        time.sleep(POLL_S)


def run_oracle(sandbox: Any, task: Task, *,
               on_action: Callable[[int, Action], Any] | None = None,
               act: Callable[[Action], Any] | None = None) -> list[Action]:
    """Perform ``task``'s oracle in ``sandbox`` (already reset to the task) and return
    the actions it performed. ``act`` replaces ``sandbox.act`` (a demo recorder passes
    its own); ``on_action(index, action)`` is called before each action is sent."""
    perform = act or sandbox.act
    done: list[Action] = []
    for index, step in enumerate(task.oracle):
        if step.follow is not None:
            done += _follow(sandbox, task, index, step, perform, on_action)
            continue
        try:
            action = resolve_when_ready(sandbox, step)
        except OracleError as exc:
            raise OracleError(f"task {task.id}: oracle step {index} ({step.action.kind}): {exc}") from None
        if on_action is not None:
            on_action(index, action)
        result = perform(action)
        if result is not None and getattr(result, "ok", True) is False:
            raise OracleError(f"task {task.id}: oracle step {index} ({action.kind}) was refused: "
                              f"{getattr(result, 'error', '')}")
        done.append(action)
    return done


def _follow(sandbox: Any, task: Task, index: int, step: OracleStep, perform: Callable[[Action], Any],
            on_action: Callable[[int, Action], Any] | None) -> list[Action]:
    """Perform the app's published next action until it publishes none (see OracleStep)."""
    assert step.follow is not None and step.follow.path is not None
    where = f"task {task.id}: oracle step {index} (follow {step.follow.app}.{step.follow.path})"
    done: list[Action] = []
    last: Any = MISSING
    since = 0.0
    while True:
        deadline = time.monotonic() + step.timeout
        seen: Any = MISSING
        seen_since = time.monotonic()
        while True:
            apps = sandbox.app_state().get("apps", {})
            try:
                value = state_path(apps[step.follow.app], step.follow.path)
            except (KeyError, IndexError, TypeError) as exc:
                if time.monotonic() > deadline:
                    raise OracleError(f"{where}: {exc} (gave up after {step.timeout:g} s)") from None
            else:
                state = without_runtime_keys(apps[step.follow.app])
                now = time.monotonic()
                if state != seen:
                    seen, seen_since = state, now
                if (state != last and now - seen_since >= FOLLOW_QUIET_S) or now - since >= FOLLOW_SETTLE_S:
                    break
            time.sleep(POLL_S)
        if value is None:
            return done
        if len(done) >= FOLLOW_LIMIT:
            raise OracleError(f"{where}: still publishing actions after {FOLLOW_LIMIT}")
        try:
            action = action_from_dict(value)
        except (ActionError, TypeError, ValueError) as exc:
            raise OracleError(f"{where}: the app published no valid action ({exc})") from None
        if on_action is not None:
            on_action(index, action)
        result = perform(action)
        if result is not None and getattr(result, "ok", True) is False:
            raise OracleError(f"{where}: {action.kind} was refused: {getattr(result, 'error', '')}")
        done.append(action)
        last, since = state, time.monotonic()


def literal_actions(oracle: Sequence[OracleStep]) -> list[Action]:
    """The oracle's actions when none of them needs app state (ValueError otherwise)."""
    if any(needs_state(step) or step.follow is not None for step in oracle):
        raise ValueError("this oracle reads app state at run time; use run_oracle with a sandbox")
    return [step.action for step in oracle]


def oracle_of(*actions: Action) -> tuple[OracleStep, ...]:
    """Literal oracle steps, for tasks whose solution points are known in advance."""
    return tuple(OracleStep(action) for action in actions)
