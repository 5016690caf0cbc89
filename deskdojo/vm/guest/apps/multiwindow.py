"""multiwindow: a main window that opens several tool windows (Toplevels) at once.

Each tool window has a text field and a Close button; the main window has an Open
button per tool and a Close all button.
Widgets: ``open:<name>``, ``close_all``, and per open window ``<name>.entry`` (``value``),
``<name>.close``. Each open tool window is ``windows[<name>]`` (title
``deskdojo multiwindow: <name>``); its close button in the title bar and Escape close it too.
Clicking anywhere in a tool window gives its text field the keyboard.
State fields: ``open`` (names of open tool windows, in opening order), ``values``
``{name: text}`` (kept after a window closes), ``opened`` and ``closed`` (counts per name),
``stacking`` (the app's mapped windows bottom to top, ``main`` for the main window) and
``front`` (the topmost of them: clicking a window raises it).
"""

from __future__ import annotations

import tkinter as tk
from typing import Any

from deskdojo.vm.guest.apps.common import App

KNOBS = {
    "windows": "list[str]: the tool windows (default: 2-4 seeded, e.g. Inspector, Palette)",
    "open": "list[str]: tool windows open at start (default: none)",
    "prefill": "object {name: text}: initial text per tool window (default: empty)",
    "positions": "object {name: [x, y]}: where tool windows open on screen (default: seeded spots)",
}
WINDOW_POOL = ["Inspector", "Palette", "Notes", "Console", "Layers", "History", "Preview", "Outline"]


def build(params: dict[str, Any]) -> App:
    app = App("multiwindow", params, KNOBS)
    names = app.labels_param("windows", lambda rng: rng.sample(WINDOW_POOL, rng.randint(2, 4)))
    initially = app.subset_param("open", names)
    prefill = app.mapping_param("prefill", names, lambda _, text: isinstance(text, str), what="text")
    positions = app.mapping_param("positions", names, lambda _, xy: isinstance(xy, list) and len(xy) == 2 and all(
        isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in xy), what="[x >= 0, y >= 0]")
    pad, layout = app.style.pad, app.rng("layout")
    values = {name: tk.StringVar(app.root, prefill.get(name, "")) for name in names}
    app.watch(*values.values())
    tools: dict[str, tk.Toplevel] = {}
    opened = {name: 0 for name in names}
    closed = {name: 0 for name in names}

    def open_tool(name: str) -> None:
        if name in tools:
            tools[name].lift()
            return
        window = tk.Toplevel(app.root, padx=2 * pad, pady=2 * pad)
        window.title(f"deskdojo multiwindow: {name}")
        tk.Label(window, text=layout.choice([f"{name} text:", f"Note for {name}:", "Text:"])).pack(anchor="w")
        entry = tk.Entry(window, textvariable=values[name], width=layout.randint(18, 30))
        entry.pack(pady=pad)
        button = tk.Button(window, text="Close", command=lambda: close_tool(name))
        button.pack(anchor=layout.choice(["e", "w", "center"]))
        window.protocol("WM_DELETE_WINDOW", lambda: close_tool(name))
        window.bind("<Escape>", lambda e: close_tool(name))
        window.bind("<ButtonPress-1>", lambda e: entry.focus_set(), add="+")  # its only field
        app.register(f"{name}.entry", entry, "entry", value=values[name].get)
        app.register(f"{name}.close", button, "button")
        tools[name] = app.windows[name] = window
        opened[name] += 1
        if name in positions:
            window.geometry("+{}+{}".format(*positions[name]))
        else:
            app.place(window, f"tool:{name}")
        window.wait_visibility()
        entry.focus_force()  # a new window takes the keyboard, as most apps' windows do
        app.changed()

    def close_tool(name: str) -> None:
        window = tools.pop(name, None)
        if window is None:
            return
        app.unregister(f"{name}.")
        del app.windows[name]
        window.destroy()
        closed[name] += 1
        app.changed()

    tk.Label(app.root, text=layout.choice(["Windows", "Tools", "Open a window"]),
             font=(app.style.family, app.style.size + 2, "bold")).pack(anchor="w", padx=pad, pady=pad)
    frame = tk.Frame(app.root, padx=pad)
    frame.pack()
    side = layout.choice(["top", "left"])
    for name in names:
        button = tk.Button(frame, text=f"Open {name}", command=lambda n=name: open_tool(n))
        button.pack(side=side, fill="x", padx=pad // 2, pady=pad // 2)
        app.register(f"open:{name}", button, "button")
    close_all = tk.Button(app.root, text="Close all", command=lambda: [close_tool(n) for n in list(tools)])
    close_all.pack(anchor="e", padx=pad, pady=pad)
    app.register("close_all", close_all, "button")

    def stacking() -> list[str]:
        names_by_path = {str(app.root): "main", **{str(w): n for n, w in tools.items()}}
        order = app.root.tk.splitlist(app.root.tk.call("wm", "stackorder", str(app.root)))
        return [names_by_path[str(p)] for p in order if str(p) in names_by_path]

    def fields() -> dict[str, Any]:
        order = stacking()
        return {"open": list(tools), "values": {n: v.get() for n, v in values.items()},
                "opened": dict(opened), "closed": dict(closed), "stacking": order,
                "front": order[-1] if order else None}

    app.fields = fields
    app.place(app.root)
    for name in initially:
        open_tool(name)
    return app
