"""scroll_find: a long list on a scrolling canvas; the target row is far below the fold.

Scroll with the mouse wheel over the list, the scrollbar, or Up/Down/PageUp/PageDown/
Home/End; click a row to select it. With ``orient: horizontal`` the rows are items of a
strip, side by side, that scrolls sideways: the wheel, sideways wheel clicks (buttons
6 and 7, Shift+wheel), the scrollbar, Left/Right/PageUp/PageDown/Home/End.
Widgets: ``list`` (the canvas), ``scrollbar``.
State fields: ``rows_visible`` (the rows on screen now: ``{index, text, x, y, w, h}``,
clipped to the viewport), ``scroll`` ([first, last] fractions of the list in view, along
its axis), ``selected`` (text of the selected row, or null), ``selections`` (every click,
in order), ``target`` and ``target_index`` (where the knobs put the target row),
``target_row`` (the target's entry of ``rows_visible`` while it is on screen, else null).
"""

from __future__ import annotations

import tkinter as tk
import tkinter.font as tkfont
from typing import Any

from deskdojo.vm.guest.apps.common import WORDS, App, bind_wheel

KNOBS = {
    "rows": "list[str]: every row's text (default: n_rows seeded 'Invoice 0423'-style names)",
    "n_rows": "int 5-500: rows when rows is not given (default: 40-80)",
    "target": "str: the row to find; put into the list if missing (default: a seeded name)",
    "target_index": "int: where the target goes (default: in the lower half)",
    "viewport_rows": "int 3-20: rows visible at once (default: 6-10)",
    "wheel_rows": "int 1-10: rows scrolled per wheel click (default: 3)",
    "orient": "'vertical' | 'horizontal': a list, or a strip of items side by side that scrolls "
              "sideways (default: vertical)",
}
ORIENTS = ["vertical", "horizontal"]
KINDS = ["Invoice", "Order", "Ticket", "Report", "Memo", "Receipt", "Parcel", "Contract"]


def build(params: dict[str, Any]) -> App:
    app = App("scroll_find", params, KNOBS)
    n_rows = app.int_param("n_rows", lambda rng: rng.randint(40, 80), low=5, high=500)

    def generated(rng: Any) -> list[str]:
        names = {f"{rng.choice(KINDS)} {rng.randint(100, 9999):04d}" for _ in range(n_rows * 3)}
        return rng.sample(sorted(names), n_rows)

    rows = app.labels_param("rows", generated, min_len=2)
    target = app.param("target", lambda rng: f"{rng.choice(WORDS['city'])} {rng.choice(KINDS).lower()}",
                       check=lambda v: isinstance(v, str) and v.strip(), what="a non-empty string")
    if target in rows:
        rows.remove(target)
    index = app.int_param("target_index", lambda rng: rng.randint(len(rows) // 2, len(rows)), low=0, high=len(rows))
    rows.insert(index, target)
    app.params["rows"] = list(rows)
    visible_rows = app.int_param("viewport_rows", lambda rng: rng.randint(6, 10), low=3, high=20)
    wheel = app.int_param("wheel_rows", lambda rng: 3, low=1, high=10)
    orient = app.choice_param("orient", ORIENTS, lambda rng: "vertical")
    horizontal = orient == "horizontal"
    pad, layout = app.style.pad, app.rng("layout")
    row_h = app.style.size * 2 + layout.randint(4, 12)
    width = layout.randint(260, 380)
    selections: list[str] = []
    selected: list[int] = []

    tk.Label(app.root, text=layout.choice(["Documents", "Inbox", "Archive", "Records"]),
             font=(app.style.family, app.style.size + 2, "bold")).pack(anchor="w", padx=pad, pady=pad)
    stripe = layout.choice(["#f3f3f3", "#eef4fb", "#fbf3ea"])
    indent = layout.randint(6, 20)
    # a horizontal strip: items side by side, each as wide as the longest text needs
    item_w = max(tkfont.Font(font=app.style.font).measure(text) for text in rows) + 2 * indent
    step = item_w if horizontal else row_h  # one row (item) along the scrolling axis
    frame = tk.Frame(app.root)
    frame.pack(padx=pad, pady=(0, pad))
    if horizontal:
        canvas = tk.Canvas(frame, width=visible_rows * item_w, height=row_h, background="white",
                           highlightthickness=0, xscrollincrement=item_w,
                           scrollregion=(0, 0, len(rows) * item_w, row_h))
        scrollbar = tk.Scrollbar(frame, command=canvas.xview, orient="horizontal")
        canvas.configure(xscrollcommand=lambda *a: (scrollbar.set(*a), app.changed()))
        canvas.pack(side="top")
        scrollbar.pack(side="top", fill="x")
    else:
        canvas = tk.Canvas(frame, width=width, height=visible_rows * row_h, background="white",
                           highlightthickness=0, yscrollincrement=row_h,
                           scrollregion=(0, 0, width, len(rows) * row_h))
        scrollbar = tk.Scrollbar(frame, command=canvas.yview)
        canvas.configure(yscrollcommand=lambda *a: (scrollbar.set(*a), app.changed()))
        canvas.pack(side="left")
        scrollbar.pack(side="left", fill="y")
    view = canvas.xview if horizontal else canvas.yview
    view_scroll = canvas.xview_scroll if horizontal else canvas.yview_scroll
    view_moveto = canvas.xview_moveto if horizontal else canvas.yview_moveto
    for i, text in enumerate(rows):
        tag = f"row{i}"
        x0, y0, x1, y1 = ((i * item_w, 0, (i + 1) * item_w, row_h) if horizontal
                          else (0, i * row_h, width, (i + 1) * row_h))
        canvas.create_rectangle(x0, y0, x1, y1, outline="#d0d0d0" if horizontal else "",
                                fill=stripe if i % 2 else "white", tags=(tag, "bg"))
        canvas.create_text(x0 + indent, y0 + row_h // 2, text=text, anchor="w",
                           fill=app.style.fg, tags=(tag,))
        canvas.tag_bind(tag, "<Button-1>", lambda e, i=i: select(i))

    def select(i: int) -> None:
        for old in selected:
            canvas.itemconfigure(canvas.find_withtag(f"row{old}")[0], fill=stripe if old % 2 else "white")
        selected[:] = [i]
        canvas.itemconfigure(canvas.find_withtag(f"row{i}")[0], fill=app.style.accent)
        selections.append(rows[i])
        app.changed()

    def scroll(amount: int, unit: str = "units") -> None:
        view_scroll(amount, unit)

    bind_wheel(canvas, lambda direction: scroll(direction * wheel))

    def sideways(event: Any) -> None:  # X11 buttons 6 and 7: a tilt wheel or a touchpad's sideways scroll
        if event.num in (6, 7):
            scroll((1 if event.num == 7 else -1) * wheel)

    if horizontal:
        canvas.bind("<ButtonPress>", sideways, add="+")
        canvas.bind("<Shift-Button-4>", lambda e: scroll(-wheel), add="+")
        canvas.bind("<Shift-Button-5>", lambda e: scroll(wheel), add="+")
    back, forward = ("<Left>", "<Right>") if horizontal else ("<Up>", "<Down>")
    for key, action in {forward: (1, "units"), back: (-1, "units"), "<Next>": (1, "pages"),
                        "<Prior>": (-1, "pages")}.items():
        app.root.bind(key, lambda e, a=action: scroll(*a))
    app.root.bind("<Home>", lambda e: view_moveto(0))
    app.root.bind("<End>", lambda e: view_moveto(1))
    app.register("list", canvas, "list")
    app.register("scrollbar", scrollbar, "scrollbar")

    def rows_visible() -> list[dict[str, Any]]:
        ox, oy = canvas.winfo_rootx(), canvas.winfo_rooty()
        first = int(canvas.canvasx(0) if horizontal else canvas.canvasy(0))
        last = first + (canvas.winfo_width() if horizontal else canvas.winfo_height())
        out = []
        for i in range(max(0, first // step), min(len(rows), last // step + 1)):
            start, end = max(i * step, first), min((i + 1) * step, last)
            if end > start:
                box = ({"x": ox + start - first, "y": oy, "w": end - start, "h": canvas.winfo_height()} if horizontal
                       else {"x": ox, "y": oy + start - first, "w": canvas.winfo_width(), "h": end - start})
                out.append({"index": i, "text": rows[i], **box})
        return out

    def fields() -> dict[str, Any]:
        visible = rows_visible()
        return {"rows_visible": visible, "scroll": [round(f, 4) for f in view()],
                "selected": rows[selected[0]] if selected else None, "selections": list(selections),
                "target": target, "target_index": index,
                "target_row": next((r for r in visible if r["index"] == index), None)}

    app.fields = fields
    app.place(app.root)
    return app
