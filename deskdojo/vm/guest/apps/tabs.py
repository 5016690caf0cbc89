"""tabs: a ttk.Notebook whose pages each hold one control; one page may nest a notebook.

Widgets: ``tab:<label>`` (kind ``tab``, the tab's header; ``selected``; headers of the
nested notebook too), ``control:<label>`` (kind ``checkbox``, ``entry`` or ``button``;
``value``), ``notebook``. A page's controls are ``visible: false`` while it is hidden.
State fields: ``tab`` (the selected top tab), ``inner_tab`` (the nested notebook's tab,
or null), ``values`` ``{label: bool | text | click count}`` per page control.
"""

from __future__ import annotations

import tkinter as tk
from tkinter import ttk
from typing import Any

from deskdojo.vm.guest.apps.common import App, ParamError

KNOBS = {
    "tabs": "list[str]: top-level tab labels (default: 3-6 seeded)",
    "controls": "object {tab: 'checkbox' | 'entry' | 'button'}: each page's control (default: seeded)",
    "nested": "str | null: a tab whose page is a notebook of inner_tabs (default: null)",
    "inner_tabs": "list[str]: the nested notebook's tabs (default: 2-3 seeded)",
    "start_tab": "str: the tab shown first (default: the first)",
}
TAB_POOL = ["General", "Network", "Display", "Sound", "Privacy", "Advanced", "Accounts", "Updates",
            "Keyboard", "Storage"]
INNER_POOL = ["Basic", "Expert", "Wired", "Wireless", "Local", "Remote"]
CONTROL_TEXT = {"checkbox": "Enable {tab}", "entry": "{tab} name:", "button": "Refresh {tab}"}


def tab_boxes(notebook: ttk.Notebook, cache: dict[Any, Any]) -> list[dict[str, int]]:
    """Screen boxes of a notebook's tab headers, found by hit-testing (ttk has no bbox for tabs)."""
    call, path = notebook.tk.call, str(notebook)
    key = (notebook.winfo_width(), notebook.winfo_height(), notebook.index("end"), notebook.index("current"))
    if cache.get("key") != key:
        spans: dict[int, list[int]] = {}
        for y in range(0, min(60, notebook.winfo_height()), 2):
            for x in range(0, notebook.winfo_width(), 2):
                hit = str(call(path, "identify", "tab", x, y))
                if hit != "":
                    span = spans.setdefault(int(hit), [x, y, x, y])
                    span[0], span[1] = min(span[0], x), min(span[1], y)
                    span[2], span[3] = max(span[2], x), max(span[3], y)
        cache.update(key=key, spans=spans)
    ox, oy = notebook.winfo_rootx(), notebook.winfo_rooty()
    return [{"x": ox + s[0], "y": oy + s[1], "w": s[2] - s[0] + 2, "h": s[3] - s[1] + 2}
            for _, s in sorted(cache["spans"].items())]


def build(params: dict[str, Any]) -> App:
    app = App("tabs", params, KNOBS)
    labels = app.labels_param("tabs", lambda rng: rng.sample(TAB_POOL, rng.randint(3, 6)), min_len=2)
    nested = app.param("nested", lambda rng: None, check=lambda v: v is None or v in labels,
                       what="a tab label or null")
    inner = app.labels_param("inner_tabs", lambda rng: rng.sample(INNER_POOL, rng.randint(2, 3))) if nested else []
    if set(inner) & set(labels):
        raise ParamError(f"inner_tabs {inner} and tabs {labels} share a label")
    kinds = ["checkbox", "entry", "button"]
    pages = [t for t in labels if t != nested] + inner
    controls = app.param("controls", lambda rng: {t: rng.choice(kinds) for t in pages},
                         what=f"an object {{each of {pages}: one of {kinds}}}",
                         check=lambda v: isinstance(v, dict) and set(v) == set(pages)
                         and set(v.values()) <= set(kinds))
    start = app.param("start_tab", lambda rng: labels[0], check=lambda v: v in labels, what="a tab label")
    pad, layout = app.style.pad, app.rng("layout")
    values: dict[str, tk.Variable] = {}

    def add_page(notebook: ttk.Notebook, tab: str) -> None:
        page = tk.Frame(notebook, padx=3 * pad, pady=3 * pad)
        notebook.add(page, text=tab)
        text = CONTROL_TEXT[controls[tab]].format(tab=tab.lower())
        if controls[tab] == "checkbox":
            var: tk.Variable = tk.BooleanVar(app.root, False)
            widget: tk.Widget = tk.Checkbutton(page, text=text, variable=var)
        elif controls[tab] == "entry":
            var = tk.StringVar(app.root, "")
            tk.Label(page, text=text).pack(anchor="w")
            widget = tk.Entry(page, textvariable=var)
        else:
            var = tk.IntVar(app.root, 0)
            widget = tk.Button(page, text=text, command=lambda: var.set(var.get() + 1))
        widget.pack(anchor=layout.choice(["w", "center"]), pady=layout.randint(0, 3 * pad))
        tk.Label(page, text=layout.choice(["", "Changes apply at once.", f"{tab} settings"])).pack(anchor="w")
        values[tab] = var
        app.watch(var)
        app.register(f"control:{tab}", widget, controls[tab], value=var.get)

    def register_tabs(notebook: ttk.Notebook, tabs: list[str]) -> None:
        cache: dict[Any, Any] = {}
        for index, tab in enumerate(tabs):
            app.register(f"tab:{tab}", notebook, "tab", text=tab,
                         selected=lambda i=index: notebook.index("current") == i,
                         **{k: lambda i=index, k=k: _box(notebook, cache, i).get(k) for k in ("x", "y", "w", "h")})

    notebook = ttk.Notebook(app.root, width=layout.randint(320, 460), height=layout.randint(120, 200))
    notebook.pack(padx=pad, pady=pad, fill="both", expand=True)
    inner_book = None
    for tab in labels:
        if tab == nested:
            inner_book = ttk.Notebook(notebook)
            notebook.add(inner_book, text=tab)
            for sub in inner:
                add_page(inner_book, sub)
        else:
            add_page(notebook, tab)
    register_tabs(notebook, labels)
    if inner_book is not None:
        register_tabs(inner_book, inner)
    app.register("notebook", notebook, "notebook")
    notebook.select(labels.index(start))
    # The seeded size may be too small for a page (pack hides what does not fit): grow to fit.
    app.root.update_idletasks()
    page_frames = [notebook.nametowidget(page) for page in notebook.tabs()]
    notebook.configure(width=max(int(notebook.cget("width")), *(p.winfo_reqwidth() for p in page_frames)),
                       height=max(int(notebook.cget("height")), *(p.winfo_reqheight() for p in page_frames)))

    def current(book: ttk.Notebook | None, tabs: list[str]) -> str | None:
        return tabs[book.index("current")] if book is not None else None

    app.fields = lambda: {"tab": current(notebook, labels), "inner_tab": current(inner_book, inner),
                          "values": {tab: var.get() for tab, var in values.items()}}
    app.place(app.root)
    return app


def _box(notebook: ttk.Notebook, cache: dict[Any, Any], index: int) -> dict[str, int]:
    boxes = tab_boxes(notebook, cache)
    return boxes[index] if index < len(boxes) else {}
