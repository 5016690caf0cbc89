"""What every practice app shares: closed params, seeded style and placement, widget
geometry, and the publisher that writes the app's full state as JSON on every change.

State written to ``$DESKDOJO_STATE_DIR/<app>.json`` (all coordinates in root-screen pixels):

- ``app``, ``version``, ``seed``, ``params`` (every knob, defaults resolved), ``style``
- ``widgets``: ``{id: {kind, x, y, w, h, visible, enabled, ...}}`` plus each widget's
  own fields (``text``, ``value``, ``checked``, ``rows``, ...)
- ``windows``: ``{name: {title, x, y, w, h, visible}}`` for the app's open windows
- ``focus``: the id of the widget with the keyboard focus, or null
- ``menubar``: ``[{label, x, y, w, h}]``; ``open_menus``: ``[{menu: [label path],
  items: [{label, type, enabled, x, y, w, h}]}]`` for every posted menu
- ``open_popdown``: ``{widget, rows: [{index, text, x, y, w, h}]}`` while a combobox list is open
- ``closed``: true once the main window was closed; ``seq`` and ``time`` change on every write
- then each app's own fields (see its module docstring).

Beside it, ``$DESKDOJO_STATE_DIR/elements/<app>.json`` holds ``{app, pid, time, elements}``:
a walk of the Tk widget tree (``App.walk``: role by widget class, text, states, screen box,
window title), generic over widgets and blind to ``widgets`` above; the guest's tk element
source reads it. Written on the same cadence, only when the walk changed.

A state is written only once every window of the app has held still for SETTLE_S, so its
coordinates are where things are on screen (a new window is first centred by openbox, then
moved). Before typing, click the field and wait until ``focus`` names it: a click that
focuses another window lets keys typed at once go to the window that had the focus.
"""

from __future__ import annotations

import json
import os
import random
import sys
import time
import tkinter as tk
import traceback
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from tkinter import ttk
from typing import Any

from deskdojo.vm.guest.apps import STATE_VERSION, window_title

PUBLISH_INTERVAL_MS = 30  # at most one write per interval; the last change is always written
HEARTBEAT_MS = 100  # also publish whatever changed without an event we watch (scrolling, WM moves)
SETTLE_S = 0.15  # a state waits until every window has stayed put this long
COMMON_KNOBS = {
    "seed": "int: drives every default below (layout, labels, colours, fonts, positions)",
    "x": "int: the main window's left edge on screen (default: seeded)",
    "y": "int: the main window's top edge on screen (default: seeded)",
    "font_size": "int: base font size in points (default: seeded, 10-14)",
}
FONTS = ("DejaVu Sans", "DejaVu Serif", "DejaVu Sans Mono")  # fonts-dejavu-core, in the image
PALETTES = (  # (background, foreground, accent): light backgrounds, dark text, all readable
    ("#f4f1ea", "#202020", "#d7e3f4"), ("#eef6ee", "#1d2b1d", "#c9e4c5"),
    ("#f7eef3", "#2b1d25", "#f0c9dc"), ("#eef2f7", "#18202b", "#c5d5ea"),
    ("#fbf6e4", "#2a2410", "#f2e2a5"), ("#f0f0f0", "#000000", "#d0d0d0"),
    ("#e9f4f4", "#102a2a", "#bfe1e1"), ("#f6efe7", "#2e2016", "#ebd0b4"),
)
WORDS = {
    "fruit": ["Apple", "Banana", "Cherry", "Date", "Elderberry", "Fig", "Grape", "Guava", "Kiwi",
              "Lemon", "Lime", "Mango", "Melon", "Nectarine", "Lychee", "Orange", "Papaya", "Peach",
              "Pear", "Plum", "Quince", "Raspberry", "Strawberry", "Tangerine"],
    "colour": ["Amber", "Azure", "Beige", "Coral", "Crimson", "Cyan", "Emerald", "Gold", "Indigo",
               "Ivory", "Lavender", "Magenta", "Maroon", "Navy", "Ochre", "Olive", "Pink",
               "Purple", "Ruby", "Salmon", "Silver", "Teal", "Turquoise", "Violet"],
    "animal": ["Badger", "Beaver", "Bison", "Camel", "Cougar", "Crane", "Dingo", "Eagle", "Ferret",
               "Gecko", "Heron", "Ibis", "Jackal", "Koala", "Lemur", "Lynx", "Marten", "Newt",
               "Otter", "Panda", "Puffin", "Raven", "Stoat", "Tapir", "Walrus", "Yak", "Zebra"],
    "city": ["Aarhus", "Bergen", "Cork", "Dresden", "Essen", "Faro", "Ghent", "Graz", "Hull",
             "Izmir", "Kyoto", "Lille", "Lyon", "Malmo", "Nantes", "Oslo", "Porto", "Quito",
             "Riga", "Sapporo", "Turin", "Utrecht", "Vigo", "Zurich"],
    "verb": ["Archive", "Copy", "Duplicate", "Export", "Import", "Merge", "Move", "Print", "Publish",
             "Refresh", "Rename", "Rotate", "Share", "Sort", "Split", "Sync", "Tag", "Verify",
             "Zip", "Compress", "Encrypt", "Preview", "Restore", "Validate"],
}


class ParamError(ValueError):
    """A bad ``--params`` value; the message names the knob."""


def words(rng: random.Random, pool: str, n: int) -> list[str]:
    """``n`` distinct words from a pool (cycling with numbers if the pool runs out)."""
    base = WORDS[pool]
    picked = rng.sample(base, min(n, len(base)))
    picked += [f"{rng.choice(base)} {i}" for i in range(n - len(picked))]
    return picked


def parse_params(text: str) -> dict[str, Any]:
    try:
        params = json.loads(text)
    except ValueError as error:
        raise ParamError(f"--params is not valid JSON: {error}") from None
    if not isinstance(params, dict):
        raise ParamError(f"--params must be a JSON object, got {type(params).__name__}")
    return params


class Style:
    """Seeded look: font, palette and padding, applied through Tk's option database."""

    def __init__(self, rng: random.Random, font_size: int | None) -> None:
        self.family = rng.choice(FONTS)
        self.size = font_size if font_size is not None else rng.randint(10, 14)
        self.bg, self.fg, self.accent = rng.choice(PALETTES)
        self.pad = rng.randint(3, 10)
        self.relief = rng.choice(("raised", "groove", "ridge"))

    @property
    def font(self) -> tuple[str, int]:
        return (self.family, self.size)

    def apply(self, root: tk.Tk) -> None:
        for pattern, value in (("*Font", self.font), ("*Background", self.bg), ("*Foreground", self.fg),
                               ("*activeBackground", self.accent), ("*selectBackground", self.accent),
                               ("*selectForeground", self.fg), ("*highlightBackground", self.bg),
                               ("*troughColor", self.accent), ("*tearOff", 0),
                               ("*Entry.Background", "white"), ("*Listbox.Background", "white"),
                               ("*Text.Background", "white"), ("*Button.Relief", self.relief)):
            root.option_add(pattern, value)
        root.configure(background=self.bg)
        style = ttk.Style(root)
        style.theme_use("clam")
        style.configure(".", background=self.bg, foreground=self.fg, font=self.font)
        style.configure("TNotebook.Tab", padding=(self.pad + 4, 3))
        root.option_add("*TCombobox*Listbox.Font", self.font)

    def as_dict(self) -> dict[str, Any]:
        return {"font": [self.family, self.size], "bg": self.bg, "fg": self.fg,
                "accent": self.accent, "pad": self.pad}


def geometry(widget: tk.Misc) -> dict[str, Any]:
    """Where a widget is on the screen, and whether it can be seen at all."""
    return {"x": widget.winfo_rootx(), "y": widget.winfo_rooty(), "w": widget.winfo_width(),
            "h": widget.winfo_height(), "visible": bool(widget.winfo_viewable())}


def listbox_rows(listbox: tk.Misc, path: str | None = None) -> list[dict[str, Any]]:
    """The rows of a listbox (``listbox``, or the Tk-made one at ``path``) on screen now."""
    call, path = listbox.tk.call, path or str(listbox)
    ox, oy = int(call("winfo", "rootx", path)), int(call("winfo", "rooty", path))
    width = int(call("winfo", "width", path))
    rows = []
    for index in range(int(str(call(path, "index", "end")))):
        box = listbox.tk.splitlist(call(path, "bbox", index))
        if box:
            rows.append({"index": index, "text": str(call(path, "get", index)), "x": ox + 2,
                         "y": oy + int(box[1]), "w": width - 4, "h": int(box[3])})
    return rows


# The element walk: Tk widget class -> role (AT-SPI's words). Classes not named here
# (Frame, TFrame, ...) are containers: walked through, not listed.
TK_ROLES = {
    "Tk": "frame", "Toplevel": "frame", "Button": "button", "TButton": "button",
    "Checkbutton": "check box", "TCheckbutton": "check box",
    "Radiobutton": "radio button", "TRadiobutton": "radio button",
    "Entry": "text", "TEntry": "text", "Spinbox": "spin button", "TSpinbox": "spin button",
    "Text": "text area", "Listbox": "list", "TCombobox": "combo box",
    "Menubutton": "button", "TMenubutton": "button",  # with a drop-down indicator: combo box
    "Scale": "slider", "TScale": "slider", "Scrollbar": "scroll bar", "TScrollbar": "scroll bar",
    "TNotebook": "page tab list", "Label": "label", "TLabel": "label", "Message": "label",
    "Labelframe": "panel", "TLabelframe": "panel", "Canvas": "canvas", "TProgressbar": "progress bar",
}
TTK_CLASSES = frozenset({"TButton", "TCheckbutton", "TRadiobutton", "TEntry", "TSpinbox", "TCombobox",
                         "TMenubutton", "TScale", "TScrollbar", "TNotebook", "TLabel", "TLabelframe",
                         "TProgressbar"})
VALUE_CLASSES = frozenset({"Entry", "TEntry", "Spinbox", "TSpinbox", "TCombobox"})  # name = their text
MENU_ENTRY_ROLES = {"cascade": "menu", "checkbutton": "check menu item", "radiobutton": "radio menu item"}
TAB_SCAN_HEIGHT = 60  # notebook tabs are found by hit-testing this strip (ttk has no bbox for tabs)


class App:
    """One practice app: the Tk root, its resolved params and the state publisher.

    Apps build widgets on ``root``, ``register`` the interactive ones, set ``fields``
    to a function returning their own state fields, then call ``run()``.
    """

    def __init__(self, name: str, params: Mapping[str, Any], knobs: Mapping[str, str]) -> None:
        unknown = sorted(set(params) - set(knobs) - set(COMMON_KNOBS))
        if unknown:
            allowed = ", ".join(sorted({*knobs, *COMMON_KNOBS}))
            raise ParamError(f"no knob {unknown[0]!r} (knobs: {allowed})")
        self.name = name
        self.given = dict(params)
        self.seed = params.get("seed", 0)
        if isinstance(self.seed, bool) or not isinstance(self.seed, int):
            raise ParamError(f"seed must be an integer, got {self.seed!r}")
        self.params: dict[str, Any] = {"seed": self.seed}
        font_size = self.int_param("font_size", lambda rng: None, low=6, high=40)
        self.root = tk.Tk(className="Deskdojo")
        self.root.title(window_title(name))
        self.style = Style(self.rng("style"), font_size)
        self.params["font_size"] = self.style.size
        self.style.apply(self.root)
        self.root.protocol("WM_DELETE_WINDOW", self.close)
        self.widgets: dict[str, tuple[tk.Misc, str, dict[str, Any]]] = {}
        self.windows: dict[str, tk.Misc] = {"main": self.root}
        self.menus: dict[str, list[str]] = {}  # Tk path of each Menu -> its label path
        self.fields: Callable[[], dict[str, Any]] = dict
        self.closed = False
        self._state_path = Path(os.environ.get("DESKDOJO_STATE_DIR")
                                or Path.home() / ".deskdojo" / "state") / f"{name}.json"
        self._pending: str | None = None
        self._last_text = ""
        self._last_write = 0.0
        self._seq = 0
        self._placed: dict[str, tuple[Any, float]] = {}  # window -> (geometry, since when)
        self._warned = False
        self._last_elements = ""
        self._tab_spans: dict[str, tuple[Any, list[list[int]]]] = {}  # notebook -> (key, tab spans)

    # --- params -----------------------------------------------------------------

    def rng(self, topic: str) -> random.Random:
        """A generator for one aspect (labels, layout, ...): overriding one knob keeps the rest."""
        return random.Random(f"{self.name}:{self.seed}:{topic}")

    def param(self, key: str, default: Callable[[random.Random], Any], *,
              check: Callable[[Any], bool] = lambda v: True, what: str = "") -> Any:
        value = self.given[key] if key in self.given else default(self.rng(key))
        if key in self.given and not check(value):
            raise ParamError(f"knob {key!r} must be {what}, got {value!r}")
        self.params[key] = value
        return value

    def int_param(self, key: str, default: Callable[[random.Random], Any], *, low: int, high: int) -> Any:
        return self.param(key, default, what=f"an integer in {low}..{high}",
                          check=lambda v: not isinstance(v, bool) and isinstance(v, int) and low <= v <= high)

    def labels_param(self, key: str, default: Callable[[random.Random], list[str]], *,
                     min_len: int = 1) -> list[str]:
        def ok(value: Any) -> bool:
            return (isinstance(value, list) and len(value) >= min_len and len(set(value)) == len(value)
                    and all(isinstance(v, str) and v.strip() for v in value))
        return list(self.param(key, default, check=ok,
                               what=f"a list of at least {min_len} distinct non-empty strings"))

    def choice_param(self, key: str, choices: Sequence[Any], default: Callable[[random.Random], Any]) -> Any:
        return self.param(key, default, check=lambda v: v in choices, what=f"one of {list(choices)}")

    def text_param(self, key: str, default: Callable[[random.Random], Any], *, optional: bool = False) -> Any:
        return self.param(key, default, what="a non-empty string" + (" or null" if optional else ""),
                          check=lambda v: (optional and v is None) or (isinstance(v, str) and bool(v.strip())))

    def bool_param(self, key: str, default: bool) -> bool:
        return bool(self.param(key, lambda rng: default, check=lambda v: isinstance(v, bool), what="true or false"))

    def subset_param(self, key: str, of: Sequence[str]) -> list[str]:
        """Some of ``of`` (none by default): which are checked, disabled, open, ..."""
        return list(self.param(key, lambda rng: [], what=f"a list of some of {list(of)}",
                               check=lambda v: isinstance(v, list) and set(v) <= set(of)))

    def mapping_param(self, key: str, keys: Sequence[str], value_ok: Callable[[str, Any], bool], *,
                      what: str) -> dict[str, Any]:
        """``{key: value}`` for some of ``keys`` (empty by default): prefills, initial choices."""
        return dict(self.param(key, lambda rng: {}, what=f"an object {{one of {list(keys)}: {what}}}",
                               check=lambda v: isinstance(v, dict) and all(
                                   k in keys and value_ok(k, x) for k, x in v.items())))

    # --- widgets and windows ----------------------------------------------------

    def register(self, wid: str, widget: tk.Misc, kind: str, **fields: Any) -> Any:
        """Report ``widget`` as ``wid``; ``fields`` are values or functions read at publish time."""
        self.widgets[wid] = (widget, kind, fields)
        return widget

    def unregister(self, prefix: str) -> None:
        for wid in [w for w in self.widgets if w.startswith(prefix)]:
            del self.widgets[wid]

    def watch(self, *variables: tk.Variable) -> None:
        for var in variables:
            var.trace_add("write", lambda *_: self.changed())

    def place(self, window: tk.Misc, key: str = "", *, near: tk.Misc | None = None) -> None:
        """Put a window at a seeded spot that keeps it on screen (or at the x/y knobs)."""
        window.update_idletasks()
        sw, sh = window.winfo_screenwidth(), window.winfo_screenheight()
        w, h = window.winfo_reqwidth(), window.winfo_reqheight() + 60  # title bar, menu bar
        rng = self.rng(f"place:{key}")
        if near is not None:  # over its parent, shifted a little
            x = near.winfo_rootx() + rng.randint(-40, 80)
            y = near.winfo_rooty() + rng.randint(-20, 60)
        else:  # a spot clear of the app's other windows, if one of 30 tries finds it
            taken = [(o.winfo_rootx(), o.winfo_rooty() - 30, o.winfo_width(), o.winfo_height() + 40)
                     for o in self.windows.values() if o is not window and o.winfo_ismapped()]
            for _ in range(30):
                x, y = rng.randint(0, max(0, sw - w - 4)), rng.randint(0, max(0, sh - h - 4))
                if not any(x < ox + ow and ox < x + w and y < oy + oh and oy < y + h for ox, oy, ow, oh in taken):
                    break
        if not key:
            x = self.int_param("x", lambda _: x, low=0, high=sw)
            y = self.int_param("y", lambda _: y, low=0, high=sh)
        x, y = max(0, min(x, sw - w)), max(0, min(y, sh - h))
        window.geometry(f"+{x}+{y}")

    def close(self) -> None:
        """The main window was closed: say so in a last state, then quit."""
        self.closed = True
        self.publish(force=True)
        self.root.destroy()

    # --- state --------------------------------------------------------------------

    def changed(self, *_: Any) -> None:
        """Something changed: publish within PUBLISH_INTERVAL_MS (coalescing bursts)."""
        if self._pending is None and not self.closed:
            wait = PUBLISH_INTERVAL_MS - (time.monotonic() - self._last_write) * 1000
            self._pending = self.root.after(max(0, int(wait)), self._flush)

    def _flush(self) -> None:
        self._pending = None
        self.publish()

    def state(self) -> dict[str, Any]:
        widgets = {}
        for wid, (widget, kind, fields) in list(self.widgets.items()):
            if not widget.winfo_exists():
                continue
            entry = {"kind": kind, **geometry(widget)}
            try:
                entry["enabled"] = str(widget.cget("state")) not in ("disabled", "readonly")
            except tk.TclError:
                entry["enabled"] = True
            if "text" not in fields and "text" in widget.keys():  # not cget: "text" abbreviates -textvariable
                entry["text"] = str(widget.cget("text"))
            for key, value in fields.items():
                entry[key] = value() if callable(value) else value
            widgets[wid] = entry
        focus = self.root.tk.call("focus")
        focus_id = next((wid for wid, (w, _, _) in self.widgets.items() if str(w) == str(focus)), None)
        windows = {name: {"title": str(win.title()) if hasattr(win, "title") else "", **geometry(win)}
                   for name, win in self.windows.items() if win.winfo_exists()}
        menubar, open_menus, popdown = self._posted()
        return {"app": self.name, "version": STATE_VERSION, "seed": self.seed, "params": self.params,
                "style": self.style.as_dict(), "closed": self.closed, "windows": windows,
                "widgets": widgets, "focus": focus_id, "menubar": menubar, "open_menus": open_menus,
                "open_popdown": popdown, **self.fields()}

    def publish(self, *, force: bool = False) -> None:
        """Write the state if it changed (atomically: temp file, then rename)."""
        if not force and not self._ready():
            return
        self._publish_elements()
        try:
            state = self.state()
        except tk.TclError:  # a window vanished mid-read; the next event publishes again
            return
        except Exception:  # a bug must not stop the app: say it once, keep serving
            if not self._warned:
                traceback.print_exc()
                self._warned = True
            return
        text = json.dumps(state, sort_keys=True)
        if text == self._last_text:
            return
        self._seq += 1
        body = json.dumps({**state, "seq": self._seq, "time": round(time.time(), 3)}, sort_keys=True)
        try:
            self._state_path.parent.mkdir(parents=True, exist_ok=True)
            temporary = self._state_path.parent / f".{self.name}.json.{os.getpid()}.tmp"
            temporary.write_text(body)
            os.replace(temporary, self._state_path)
        except OSError as error:
            if not self._warned:
                print(f"deskdojo {self.name}: cannot write {self._state_path}: {error}", file=sys.stderr)
                self._warned = True
            return
        self._last_text, self._last_write = text, time.monotonic()

    def _ready(self) -> bool:
        """The main window is mapped and no window has moved for SETTLE_S, so no state
        shows a window where it is not: openbox centres a new window, then Tk moves it
        to the place asked for. (The heartbeat publishes once they hold still.)"""
        if not self.root.winfo_viewable():
            return False
        now = time.monotonic()
        seen: dict[str, tuple[Any, float]] = {}
        for name, window in self.windows.items():
            if window.winfo_exists():
                box = (window.winfo_rootx(), window.winfo_rooty(), window.winfo_width(),
                       window.winfo_height(), window.winfo_ismapped())
                old = self._placed.get(name)
                seen[name] = old if old is not None and old[0] == box else (box, now)
        self._placed = seen
        return all(now - since >= SETTLE_S for _, since in seen.values())

    def _heartbeat(self) -> None:
        self.root.after(HEARTBEAT_MS, self._heartbeat)
        self.publish()

    # --- menus and popdowns -------------------------------------------------------

    def _descendants(self, path: str) -> list[str]:
        found = []
        for child in self.root.tk.splitlist(self.root.tk.call("winfo", "children", path)):
            found.append(str(child))
            found.extend(self._descendants(str(child)))
        return found

    def _posted(self) -> tuple[list[dict[str, Any]], list[dict[str, Any]], dict[str, Any] | None]:
        call = self.root.tk.call
        menubar: list[dict[str, Any]] = []
        open_menus: list[dict[str, Any]] = []
        popdown = None
        for path in self._descendants("."):
            cls = str(call("winfo", "class", path))
            if cls not in ("Menu", "ComboboxPopdown") or not int(call("winfo", "ismapped", path)):
                continue
            if cls == "ComboboxPopdown":
                owner = path.rsplit(".", 1)[0]
                wid = next((w for w, (widget, _, _) in self.widgets.items() if str(widget) == owner), owner)
                popdown = {"widget": wid, "rows": listbox_rows(self.root, f"{path}.f.l")}
                continue
            # A menu bar and its cascades are shown through clones named .#a#b for .a.b
            last = path.rsplit(".", 1)[-1]
            original = last.replace("#", ".") if last.startswith("#") else path
            if str(call(path, "cget", "-type")) == "menubar":
                menubar = self._menu_entries(path, horizontal=True)
            else:
                open_menus.append({"menu": self.menus.get(original, [original]),
                                   "items": self._menu_entries(path, horizontal=False)})
        return menubar, open_menus, popdown

    def _menu_entries(self, path: str, *, horizontal: bool) -> list[dict[str, Any]]:
        call = self.root.tk.call
        last = call(path, "index", "end")
        if str(last) == "none":
            return []
        rx, ry = int(call("winfo", "rootx", path)), int(call("winfo", "rooty", path))
        width, height = int(call("winfo", "width", path)), int(call("winfo", "height", path))
        count = int(last) + 1
        axis = "xposition" if horizontal else "yposition"
        starts = [int(str(call(path, axis, i))) for i in range(count)]
        entries = []
        for i in range(count):
            kind = str(call(path, "type", i))
            if kind in ("separator", "tearoff"):
                continue
            if i + 1 < count:
                end = starts[i + 1]
            elif horizontal:  # the last item of a menu bar ends where the hit test says
                end = starts[i] + 1
                while end < width and str(call(path, "index", f"@{end},{height // 2}")) == str(i):
                    end += 1
            else:
                end = height - int(call("winfo", "pixels", path, call(path, "cget", "-borderwidth")))
            box = ((rx + starts[i], ry, end - starts[i], height) if horizontal
                   else (rx, ry + starts[i], width, end - starts[i]))
            entries.append({"label": str(call(path, "entrycget", i, "-label")), "type": kind,
                            "enabled": str(call(path, "entrycget", i, "-state")) != "disabled",
                            **dict(zip(("x", "y", "w", "h"), box))})
        return entries

    # --- elements: a walk of the widget tree, for any Tk app --------------------------

    def _publish_elements(self) -> None:
        """Write the walk to ``<state dir>/elements/<app>.json`` when it changed (empty once
        closed), with this process's pid so readers can ignore apps that exited."""
        try:
            elements = [] if self.closed else self.walk()
        except tk.TclError:  # a window vanished mid-walk; the next publish walks again
            return
        except Exception:  # noqa: BLE001 - a bug must not stop the app
            if not self._warned:
                traceback.print_exc()
                self._warned = True
            return
        text = json.dumps(elements, sort_keys=True)
        if text == self._last_elements:
            return
        folder = self._state_path.parent / "elements"
        try:
            folder.mkdir(parents=True, exist_ok=True)
            temporary = folder / f".{self.name}.json.{os.getpid()}.tmp"
            temporary.write_text(json.dumps({"app": self.name, "pid": os.getpid(), "time": round(time.time(), 3),
                                             "elements": elements}))
            os.replace(temporary, folder / f"{self.name}.json")
        except OSError:
            return  # said by publish() for the state file, which sits beside it
        self._last_elements = text

    def walk(self) -> list[dict[str, Any]]:
        """Every widget on screen as a raw element ``{role, name, box, states, window}``.

        Generic over widget classes (``TK_ROLES``): it reads the Tk widget tree from ".",
        never ``self.widgets`` (that is what checks compare against).
        """
        call, split = self.root.tk.call, self.root.tk.splitlist
        focus = str(call("focus"))
        titles: dict[str, str] = {}
        found: list[dict[str, Any]] = []
        stack = ["."]
        while stack:
            path = stack.pop()
            if not int(call("winfo", "viewable", path)):
                continue  # unmapped: neither it nor its children show
            cls = str(call("winfo", "class", path))
            if cls not in TK_ROLES and cls not in ("Menu", "ComboboxPopdown") \
                    and str(call("winfo", "toplevel", path)) == path:
                cls = "Toplevel"  # a window with its own class name (the root's is the app's)
            window = self._window_title(path, titles)
            if cls == "Menu":
                self._walk_menu(path, window, found)
            elif cls in TK_ROLES:
                self._walk_widget(path, cls, window, focus, found)
            stack.extend(str(child) for child in split(call("winfo", "children", path)))
        return found

    def _window_title(self, path: str, titles: dict[str, str]) -> str:
        """The title of the window ``path`` shows in (a posted menu or drop-down list: its owner's)."""
        call = self.root.tk.call
        top = str(call("winfo", "toplevel", path))
        if top not in titles:
            owner = top
            while str(call("winfo", "class", owner)) in ("Menu", "ComboboxPopdown") and owner != ".":
                owner = str(call("winfo", "toplevel", call("winfo", "parent", owner)))
            titles[top] = str(call("wm", "title", owner))
        return titles[top]

    def _option(self, path: str, name: str) -> str:
        try:
            return str(self.root.tk.call(path, "cget", name))
        except tk.TclError:
            return ""

    def _variable(self, name: str) -> str | None:
        try:
            return str(self.root.tk.call("set", name)) if name else None
        except tk.TclError:  # never set
            return None

    def _walk_widget(self, path: str, cls: str, window: str, focus: str, found: list[dict[str, Any]]) -> None:
        call = self.root.tk.call
        role = TK_ROLES[cls]
        box = [int(call("winfo", "rootx", path)), int(call("winfo", "rooty", path)),
               int(call("winfo", "width", path)), int(call("winfo", "height", path))]
        ttk_widget = cls in TTK_CLASSES
        state = "" if ttk_widget else self._option(path, "-state")
        enabled = not int(call(path, "instate", "disabled")) if ttk_widget else state != "disabled"
        states = {"enabled"} if enabled else set()
        if path == focus:
            states.add("focused")
        if role == "frame":
            name = window
            if path != "." and str(call("wm", "transient", path)):
                role = "dialog"
        elif cls in VALUE_CLASSES:
            name, shown = str(call(path, "get")), self._option(path, "-show")
            if shown:
                name = shown[0] * len(name)  # a password field
            readonly = int(call(path, "instate", "readonly")) if ttk_widget else state == "readonly"
            if enabled and not readonly:
                states.add("editable")
            if cls == "TCombobox" and int(call("winfo", "exists", f"{path}.popdown")) \
                    and int(call("winfo", "ismapped", f"{path}.popdown")):
                states.add("expanded")
        elif cls == "Text":
            name = str(call(path, "get", "1.0", "end-1c"))
            if state == "normal":
                states.add("editable")
        elif role == "slider":
            label, value = self._option(path, "-label"), str(call(path, "get"))
            value = value[:-2] if value.endswith(".0") else value
            name = f"{label}: {value}" if label else value
        elif cls in ("Canvas", "TNotebook"):
            name = ""
        else:
            variable = self._option(path, "-textvariable")
            text = self._variable(variable) if variable else None
            name = text if text is not None else self._option(path, "-text")
            if role == "label" and not name and not self._option(path, "-image"):
                return  # an empty label shows nothing
        if role == "check box" or role == "radio button":
            if ttk_widget:
                checked = bool(int(call(path, "instate", "selected")))
            else:
                value = self._variable(self._option(path, "-variable"))
                wanted = self._option(path, "-onvalue" if role == "check box" else "-value")
                checked = value is not None and value == wanted
            if checked:
                states.add("checked")
        if role == "button" and cls.endswith("Menubutton"):
            if self._option(path, "-indicatoron") in ("1", "true"):
                role = "combo box"
            menu = self._option(path, "-menu")
            if menu and int(call("winfo", "exists", menu)) and int(call("winfo", "ismapped", menu)):
                states.add("expanded")
        found.append({"role": role, "name": name, "box": box, "states": sorted(states), "window": window})
        if cls == "Listbox":
            chosen = {int(i) for i in self.root.tk.splitlist(call(path, "curselection"))}
            for row in listbox_rows(self.root, path):
                row_states = (["enabled"] if enabled else []) + (["selected"] if row["index"] in chosen else [])
                found.append({"role": "list item", "name": row["text"], "states": row_states, "window": window,
                              "box": [row["x"], row["y"], row["w"], row["h"]]})
        elif cls == "TNotebook":
            self._walk_tabs(path, box, window, found)
        elif cls == "Canvas":
            self._walk_canvas_text(path, box, window, found)

    def _walk_tabs(self, path: str, box: list[int], window: str, found: list[dict[str, Any]]) -> None:
        """A notebook's tab headers, located by hit-testing (cached until the notebook changes)."""
        call = self.root.tk.call
        count, current = int(call(path, "index", "end")), str(call(path, "index", "current"))
        key = (box[2], box[3], count, current)
        cached = self._tab_spans.get(path)
        if cached is None or cached[0] != key:
            spans: dict[int, list[int]] = {}
            for y in range(0, min(TAB_SCAN_HEIGHT, box[3]), 2):
                row_hits = 0
                for x in range(0, box[2], 2):
                    hit = str(call(path, "identify", "tab", x, y))
                    if hit:
                        row_hits += 1
                        span = spans.setdefault(int(hit), [x, y, x, y])
                        span[0], span[1] = min(span[0], x), min(span[1], y)
                        span[2], span[3] = max(span[2], x), max(span[3], y)
                if spans and not row_hits:
                    break  # below the row of tabs
            cached = self._tab_spans[path] = (key, [spans.get(i, []) for i in range(count)])
        for index, span in enumerate(cached[1]):
            if not span or self._option_of(path, index, "-state") == "hidden":
                continue
            states = ["enabled"] if self._option_of(path, index, "-state") != "disabled" else []
            if str(index) == current:
                states.append("selected")
            found.append({"role": "page tab", "name": self._option_of(path, index, "-text"), "states": states,
                          "window": window, "box": [box[0] + span[0], box[1] + span[1],
                                                    span[2] - span[0] + 2, span[3] - span[1] + 2]})

    def _option_of(self, path: str, index: int, name: str) -> str:
        return str(self.root.tk.call(path, "tab", index, name))

    def _walk_canvas_text(self, path: str, box: list[int], window: str, found: list[dict[str, Any]]) -> None:
        """The text items a canvas shows inside its visible area (as labels)."""
        call = self.root.tk.call
        left, top = float(call(path, "canvasx", 0)), float(call(path, "canvasy", 0))
        for item in self.root.tk.splitlist(call(path, "find", "all")):
            if str(call(path, "type", item)) != "text" or str(call(path, "itemcget", item, "-state")) == "hidden":
                continue
            corners = self.root.tk.splitlist(call(path, "bbox", item))
            if not corners:
                continue
            x0, y0, x1, y1 = (int(v) for v in corners)
            x0, y0 = max(0, int(x0 - left)), max(0, int(y0 - top))
            x1, y1 = min(box[2], int(x1 - left)), min(box[3], int(y1 - top))
            if x1 > x0 and y1 > y0:
                found.append({"role": "label", "name": str(call(path, "itemcget", item, "-text")),
                              "states": ["enabled"], "window": window,
                              "box": [box[0] + x0, box[1] + y0, x1 - x0, y1 - y0]})

    def _walk_menu(self, path: str, window: str, found: list[dict[str, Any]]) -> None:
        """A menu bar (the bar and its entries) or a posted menu (its items)."""
        call = self.root.tk.call
        horizontal = str(call(path, "cget", "-type")) == "menubar"
        if horizontal:
            found.append({"role": "menu bar", "name": "", "states": ["enabled"], "window": window,
                          "box": [int(call("winfo", "rootx", path)), int(call("winfo", "rooty", path)),
                                  int(call("winfo", "width", path)), int(call("winfo", "height", path))]})
        for entry in self._menu_entries(path, horizontal=horizontal):
            found.append({"role": MENU_ENTRY_ROLES.get(entry["type"], "menu item"), "name": entry["label"],
                          "states": ["enabled"] if entry["enabled"] else [], "window": window,
                          "box": [entry["x"], entry["y"], entry["w"], entry["h"]]})

    # --- run --------------------------------------------------------------------------

    def run(self) -> None:
        for sequence in ("<Map>", "<Unmap>", "<Configure>", "<ButtonRelease>", "<KeyRelease>",
                         "<FocusIn>", "<<ComboboxSelected>>", "<<NotebookTabChanged>>",
                         "<<ListboxSelect>>", "<<Modified>>"):
            self.root.bind_all(sequence, self.changed, add="+")
        self.root.after(0, self._heartbeat)
        self.root.mainloop()


def bind_wheel(widget: tk.Misc, scroll: Callable[[int], Any]) -> None:
    """Mouse-wheel scrolling (X11 sends buttons 4 and 5) calling ``scroll(+1 | -1)``."""
    widget.bind("<Button-4>", lambda e: scroll(-1), add="+")
    widget.bind("<Button-5>", lambda e: scroll(1), add="+")
    widget.bind("<MouseWheel>", lambda e: scroll(-1 if e.delta > 0 else 1), add="+")
