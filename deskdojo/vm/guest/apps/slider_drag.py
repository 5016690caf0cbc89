"""slider_drag: sliders (Scale) and a canvas whose tiles are dragged onto targets.

Widgets: ``slider:<name>`` (kind ``slider``; ``value``, ``from``, ``to``, ``handle`` =
the screen point of the slider's knob, ``from_xy`` / ``to_xy`` = the points of the two
ends, so a value v sits at ``from_xy + (v - from) / (to - from) * (to_xy - from_xy)``;
``handle_box`` = the knob as a box, ``track`` = the box from ``from_xy`` to ``to_xy``
along the slider, so scripted solutions can point at both), ``canvas`` (not shown when
there are neither tiles nor targets).
With the ``slider_length`` knob given, the track is ``length - slider_length - 2`` pixels
long (Tk's trough minus the knob and the border), known before the app starts.
State fields: ``sliders`` ``{name: value}``, ``tiles`` ``{label: {x, y, w, h, on}}`` (screen
box; ``on`` = the target under its centre, or null), ``targets`` ``{label: {x, y, w, h}}``,
``drops`` (``{tile, target}`` for each release of a dragged tile, target null if none).
"""

from __future__ import annotations

import tkinter as tk
from typing import Any

from deskdojo.vm.guest.apps.common import App, ParamError, words

KNOBS = {
    "sliders": "object {name: [from, to]}: the sliders, {} for none (default: 1-2 seeded, e.g. Volume 0-100)",
    "values": "object {name: number}: initial slider values (default: each slider's from)",
    "orient": "'horizontal' | 'vertical' (default: seeded)",
    "length": "int 120-500: slider length in pixels (default: 180-320)",
    "slider_length": "int 10-60: the knob's length in pixels along the slider (default: seeded 20-34)",
    "tiles": "list[str]: draggable tile labels, [] for none (default: 1-3 seeded)",
    "targets": "list[str]: drop target labels, [] for none (default: 1-3 seeded)",
    "canvas_size": "[w, h]: the canvas (default: seeded around 360x220)",
}
SLIDER_POOL = {"Volume": [0, 100], "Brightness": [0, 100], "Zoom": [10, 200], "Speed": [1, 10],
               "Opacity": [0, 100], "Balance": [-50, 50]}
TILE, TARGET = (70, 40), (100, 64)
ORIENTS = ["horizontal", "vertical"]


def build(params: dict[str, Any]) -> App:
    app = App("slider_drag", params, KNOBS)
    sliders = app.param("sliders", lambda rng: {n: SLIDER_POOL[n] for n in
                                                rng.sample(sorted(SLIDER_POOL), rng.randint(1, 2))},
                        what="an object {name: [from, to]} of integers with from < to",
                        check=lambda v: isinstance(v, dict) and all(
                            isinstance(r, list) and len(r) == 2 and all(isinstance(n, int) for n in r) and r[0] < r[1]
                            for r in v.values()))
    values = app.mapping_param("values", list(sliders), what="an integer within its range",
                               value_ok=lambda k, n: isinstance(n, int) and sliders[k][0] <= n <= sliders[k][1])
    orient = app.choice_param("orient", ORIENTS, lambda rng: rng.choice(ORIENTS))
    length = app.int_param("length", lambda rng: rng.randint(180, 320), low=120, high=500)
    knob_length = (app.int_param("slider_length", lambda rng: None, low=10, high=60)  # else seeded per slider
                   if "slider_length" in app.given else None)
    tiles = app.labels_param("tiles", lambda rng: words(rng, "animal", rng.randint(1, 3)), min_len=0)
    targets = app.labels_param("targets", lambda rng: [f"{w} box" for w in words(rng, "colour", rng.randint(1, 3))],
                               min_len=0)
    size = app.param("canvas_size", lambda rng: [rng.randint(340, 420), rng.randint(200, 260)],
                     check=lambda v: isinstance(v, list) and len(v) == 2 and v[0] >= 200 and v[1] >= 150,
                     what="[width >= 200, height >= 150]")
    pad, layout = app.style.pad, app.rng("layout")
    variables = {n: tk.IntVar(app.root, values.get(n, r[0])) for n, r in sliders.items()}
    app.watch(*variables.values())
    drops: list[dict[str, Any]] = []

    top = tk.Frame(app.root, padx=pad, pady=pad)
    top.pack(side=layout.choice(["top", "left"]), anchor="nw")
    for name, (low, high) in sliders.items():
        knob = knob_length if knob_length is not None else layout.randint(20, 34)
        scale = tk.Scale(top, label=name, from_=low, to=high, orient=orient, length=length,
                         variable=variables[name], resolution=1, sliderlength=knob, borderwidth=1)
        scale.pack(side="left" if orient == "vertical" else "top", padx=pad, pady=pad)

        def point(value: float, scale: tk.Scale = scale) -> list[int]:
            x, y = scale.coords(value)
            return [scale.winfo_rootx() + int(x), scale.winfo_rooty() + int(y)]

        def handle_box(value: float, point: Any = point, knob: int = knob) -> dict[str, int]:
            x, y = point(value)
            along, across = knob, 12
            w, h = (along, across) if orient == "horizontal" else (across, along)
            return {"x": x - w // 2, "y": y - h // 2, "w": w, "h": h}

        def track(point: Any = point, low: int = low, high: int = high) -> dict[str, int]:
            (x0, y0), (x1, y1) = point(low), point(high)
            if orient == "horizontal":
                return {"x": x0, "y": y0 - 6, "w": max(1, x1 - x0), "h": 12}
            return {"x": x0 - 6, "y": y0, "w": 12, "h": max(1, y1 - y0)}

        var = variables[name]
        app.register(f"slider:{name}", scale, "slider", value=var.get, handle=lambda p=point, v=var: p(v.get()),
                     handle_box=lambda b=handle_box, v=var: b(v.get()), track=track,
                     **{"from": low, "to": high, "from_xy": lambda p=point, lo=low: p(lo),
                        "to_xy": lambda p=point, hi=high: p(hi)})

    width, height = size
    canvas = tk.Canvas(app.root, width=width, height=height, background=app.style.accent, highlightthickness=0)
    if tiles or targets:
        canvas.pack(padx=pad, pady=pad)
    app.register("canvas", canvas, "canvas")
    spots = [(x, y) for x in range(8, width - TARGET[0], TARGET[0] + 12)
             for y in range(8, height - TARGET[1], TARGET[1] + 12)]
    if len(spots) < len(tiles) + len(targets):
        raise ParamError(f"canvas_size {size} has room for {len(spots)} tiles and targets, "
                         f"not {len(tiles) + len(targets)}")
    things = [("target", label) for label in targets] + [("tile", label) for label in tiles]
    for (kind, label), (x, y) in zip(things, layout.sample(spots, len(things))):  # targets drawn first, below
        w, h = TILE if kind == "tile" else TARGET
        tag = f"{kind}:{label}"
        colour = layout.choice(["#e07a5f", "#3d5a80", "#81b29a", "#9c6644"]) if kind == "tile" else "white"
        canvas.create_rectangle(x, y, x + w, y + h, fill=colour, dash=(4, 2) if kind == "target" else (),
                                tags=(tag,))
        canvas.create_text(x + w // 2, y + h // 2, text=label, width=w - 4, tags=(tag,),
                           fill="white" if kind == "tile" else app.style.fg, font=(app.style.family, 9))

    def box(tag: str) -> dict[str, int]:
        x0, y0, x1, y1 = (int(v) for v in canvas.bbox(tag))
        return {"x": canvas.winfo_rootx() + x0, "y": canvas.winfo_rooty() + y0, "w": x1 - x0, "h": y1 - y0}

    def under(tile: str) -> str | None:
        b = box(f"tile:{tile}")
        cx, cy = b["x"] + b["w"] // 2, b["y"] + b["h"] // 2
        for target in targets:
            t = box(f"target:{target}")
            if t["x"] <= cx < t["x"] + t["w"] and t["y"] <= cy < t["y"] + t["h"]:
                return target
        return None

    grabbed: dict[str, Any] = {}

    def grab(event: Any, tag: str) -> None:
        grabbed.update(tag=tag, x=event.x, y=event.y)
        canvas.tag_raise(tag)

    def drag(event: Any) -> None:
        if grabbed:  # the pointer is clamped to the canvas, so a tile cannot be lost off its edge
            x, y = min(max(event.x, 0), width - 1), min(max(event.y, 0), height - 1)
            canvas.move(grabbed["tag"], x - grabbed["x"], y - grabbed["y"])
            grabbed.update(x=x, y=y)
            app.changed()

    def release(_: Any) -> None:
        if grabbed:
            tile = grabbed["tag"].split(":", 1)[1]
            grabbed.clear()
            drops.append({"tile": tile, "target": under(tile)})
            app.changed()

    for label in tiles:
        canvas.tag_bind(f"tile:{label}", "<ButtonPress-1>", lambda e, t=f"tile:{label}": grab(e, t))
    canvas.bind("<B1-Motion>", drag)
    canvas.bind("<ButtonRelease-1>", release)
    app.fields = lambda: {"sliders": {n: v.get() for n, v in variables.items()},
                          "tiles": {t: {**box(f"tile:{t}"), "on": under(t)} for t in tiles},
                          "targets": {t: box(f"target:{t}") for t in targets}, "drops": list(drops)}
    app.place(app.root)
    return app
