"""Practice apps: small Tk programs that run in a sandbox and publish their state as JSON.

Launch one with ``python3 -m deskdojo.vm.guest.apps <app> --params '<json>'``; it
writes ``$DESKDOJO_STATE_DIR/<app>.json`` on every change, which the guest server's
``/v1/app_state`` returns. This module is what the host needs (argv, titles, reading
widget geometry out of a state) and imports neither tkinter nor any app.
"""

from __future__ import annotations

import json
import re
from typing import Any, Mapping

from deskdojo.core.oracle import center, find_widget, menu_entry

__all__ = ["APPS", "center", "find_widget", "launch_argv", "launch_step", "menu_entry", "title_pattern", "widget_center", "window_title"]
from deskdojo.core.types import SetupStep

APPS: tuple[str, ...] = (
    "buttons", "form", "choices", "lists", "menus", "dialogs", "slider_drag",
    "scroll_find", "tabs", "editor", "multiwindow",
)
STATE_VERSION = 1


def window_title(app: str) -> str:
    """The main window's title: ``deskdojo <app>``."""
    return f"deskdojo {app}"


def title_pattern(app: str) -> str:
    """A regex for ``wait_window`` that matches only this app's main window."""
    return f"^{re.escape(window_title(app))}$"


def launch_argv(app: str, params: Mapping[str, Any] | None = None, *, python: str = "python3") -> list[str]:
    """The argv that starts ``app`` with ``params`` (``seed`` plus the app's knobs).

    ``python`` is the sandbox's interpreter: ``python3`` in the docker image,
    ``sys.executable`` for the xvfb provider (whose apps run on the host).
    """
    if app not in APPS:
        raise ValueError(f"no practice app {app!r}; the apps are: {', '.join(APPS)}")
    text = json.dumps(dict(params or {}), sort_keys=True, separators=(",", ":"))
    return [python, "-m", "deskdojo.vm.guest.apps", app, "--params", text]


def launch_step(app: str, params: Mapping[str, Any] | None = None, *, python: str = "python3") -> SetupStep:
    """A task setup step that starts ``app`` and waits for its main window."""
    return SetupStep("launch", {"argv": launch_argv(app, params, python=python), "wait_window": title_pattern(app)})


def widget_center(state: Mapping[str, Any], widget_id: str) -> tuple[int, int]:
    """Screen coordinates of the centre of a widget the state reports."""
    try:
        widget = state["widgets"][widget_id]
    except KeyError:
        known = ", ".join(sorted(state.get("widgets", {})))
        raise KeyError(f"state of {state.get('app')!r} has no widget {widget_id!r} (widgets: {known})") from None
    return center(widget)
