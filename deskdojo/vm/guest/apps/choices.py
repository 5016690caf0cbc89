"""choices: checkboxes and groups of radio buttons.

Widgets: ``checkbox:<label>`` (kind ``checkbox``, ``checked``), ``radio:<group>:<option>``
(kind ``radio``, ``selected``), ``group:<group>`` (the frame around a group), ``apply``.
State fields: ``checked`` ``{label: bool}``, ``radios`` ``{group: option, "" when none}``,
``applied`` (the checked labels and radios at each press of ``apply``).
"""

from __future__ import annotations

import tkinter as tk
from typing import Any

from deskdojo.vm.guest.apps.common import App, words

KNOBS = {
    "checkboxes": "list[str]: checkbox labels (default: 2-6 seeded words)",
    "checked": "list[str]: checkboxes initially on (default: none)",
    "groups": "object {group: [options]}: radio groups, {} for none (default: 1-2 seeded groups of 2-4)",
    "selected": "object {group: option}: initial radio choices (default: none selected)",
    "apply_label": "str: the apply button's text (default: seeded)",
    "columns": "int 1-3: checkbox columns (default: seeded)",
}
GROUP_POOL = {"Size": ["Small", "Medium", "Large", "Huge"], "Speed": ["Slow", "Normal", "Fast", "Turbo"],
              "Mode": ["Light", "Dark", "Auto", "Contrast"], "Shipping": ["Standard", "Express", "Pickup", "Drone"],
              "Quality": ["Low", "Good", "Best", "Lossless"]}


def _groups_ok(value: Any) -> bool:
    return isinstance(value, dict) and all(  # {} is fine: checkboxes only
        isinstance(g, str) and isinstance(o, list) and len(o) >= 2 and len(set(o)) == len(o)
        and all(isinstance(x, str) and x for x in o) for g, o in value.items())


def build(params: dict[str, Any]) -> App:
    app = App("choices", params, KNOBS)
    boxes = app.labels_param("checkboxes", lambda rng: [
        f"Enable {w.lower()}" for w in words(rng, rng.choice(["animal", "colour"]), rng.randint(2, 6))])
    initially = app.subset_param("checked", boxes)
    groups = app.param("groups", lambda rng: {g: rng.sample(GROUP_POOL[g], rng.randint(2, 4))
                                              for g in rng.sample(sorted(GROUP_POOL), rng.randint(1, 2))},
                       check=_groups_ok, what="an object {group: [2+ distinct options]}")
    selected = app.mapping_param("selected", list(groups), lambda group, option: option in groups[group],
                                 what="one of its options")
    apply_label = app.text_param("apply_label", lambda rng: rng.choice(["Apply", "Done", "Confirm"]))
    columns = app.int_param("columns", lambda rng: rng.randint(1, 3), low=1, high=3)
    pad, layout = app.style.pad, app.rng("layout")
    checks = {label: tk.BooleanVar(app.root, label in initially) for label in boxes}
    radios = {group: tk.StringVar(app.root, selected.get(group, "")) for group in groups}
    app.watch(*checks.values(), *radios.values())
    applied: list[dict[str, Any]] = []

    frame = tk.LabelFrame(app.root, text=layout.choice(["Options", "Features", "Settings"]), padx=pad, pady=pad)
    frame.pack(fill="x", padx=pad, pady=pad)
    for index, label in enumerate(boxes):
        box = tk.Checkbutton(frame, text=label, variable=checks[label], anchor="w")
        box.grid(row=index // columns, column=index % columns, sticky="w", padx=layout.randint(0, pad))
        app.register(f"checkbox:{label}", box, "checkbox", checked=checks[label].get)
    side = layout.choice(["top", "left"])
    holder = tk.Frame(app.root)
    holder.pack(fill="x", padx=pad)
    for group, options in groups.items():
        box = tk.LabelFrame(holder, text=group, padx=pad, pady=pad)
        box.pack(side=side, fill="x", padx=pad // 2, pady=pad // 2, anchor="nw")
        app.register(f"group:{group}", box, "group")
        flow = layout.choice(["top", "left"]) if side == "top" else "top"  # options in a column or a row
        for option in options:
            radio = tk.Radiobutton(box, text=option, value=option, variable=radios[group],
                                   tristatevalue="\x00", anchor="w")
            radio.pack(anchor="w", side=flow)
            app.register(f"radio:{group}:{option}", radio, "radio",
                         selected=lambda g=group, o=option: radios[g].get() == o)

    def apply() -> None:
        applied.append({"checked": [label for label, var in checks.items() if var.get()],
                        "radios": {group: var.get() for group, var in radios.items()}})
        app.changed()

    button = tk.Button(app.root, text=apply_label, command=apply)
    button.pack(anchor=layout.choice(["w", "e"]), padx=pad, pady=pad)
    app.register("apply", button, "button")
    app.fields = lambda: {"checked": {label: var.get() for label, var in checks.items()},
                          "radios": {group: var.get() for group, var in radios.items()},
                          "applied": list(applied)}
    app.place(app.root)
    return app
