"""dialogs: buttons that each open a modal confirm/cancel dialog.

Widgets: ``action:<label>``; while a dialog is open also ``dialog.message``,
``dialog.confirm``, ``dialog.cancel`` and, with ``prompt``, ``dialog.entry`` (``value``).
The dialog is the window ``dialog`` in ``windows``; it grabs the input (the main window
ignores clicks until it closes). Enter confirms, Escape and the window's close button cancel.
An action named in ``confirm_twice`` asks again once confirmed: a second dialog (stage 2,
``second_message``) opens, and only its confirm counts; a cancel at either stage cancels.
State fields: ``dialog`` (``{action, message, stage}`` while open, else null), ``results``
``{action: "confirmed" | "cancelled"}`` (the latest per action), ``history``
(``{action, result, text}`` in order; ``text`` is what the prompt held, or null).
"""

from __future__ import annotations

import tkinter as tk
from typing import Any

from deskdojo.vm.guest.apps.common import App

KNOBS = {
    "actions": "list[str]: buttons that open a dialog (default: 2-4 seeded)",
    "confirm_label": "str: the dialog's confirm button (default: seeded, e.g. OK, Yes, Delete)",
    "cancel_label": "str: the dialog's cancel button (default: seeded, e.g. Cancel, No, Keep)",
    "message": "str: dialog text; {action} becomes the action (default: seeded)",
    "prompt": "str | null: a label for a text field in the dialog (default: null, no field)",
    "confirm_twice": "list[str]: actions whose confirm opens a second dialog that must be confirmed too "
                     "(default: none)",
    "second_message": "str: the second dialog's text; {action} becomes the action (default: seeded)",
}
ACTION_POOL = ["Delete file", "Reset settings", "Send report", "Archive project", "Log out",
               "Empty trash", "Publish page", "Clear history"]


def build(params: dict[str, Any]) -> App:
    app = App("dialogs", params, KNOBS)
    actions = app.labels_param("actions", lambda rng: rng.sample(ACTION_POOL, rng.randint(2, 4)))
    confirm_label = app.text_param("confirm_label", lambda rng: rng.choice(["OK", "Yes", "Confirm", "Proceed"]))
    cancel_label = app.text_param("cancel_label", lambda rng: rng.choice(["Cancel", "No", "Keep", "Back"]))
    message = app.text_param("message", lambda rng: rng.choice(["Really {action}?", "Are you sure? ({action})",
                                                                "{action}: this cannot be undone."]))
    prompt = app.text_param("prompt", lambda rng: None, optional=True)
    twice = app.subset_param("confirm_twice", actions)
    second_message = (app.text_param("second_message", lambda rng: rng.choice(
        ["Last chance: {action}?", "{action} for sure? There is no way back.", "Really, truly {action}?"]))
        if twice else "")
    pad, layout = app.style.pad, app.rng("layout")
    results: dict[str, str] = {}
    history: list[dict[str, Any]] = []
    current: dict[str, Any] = {}

    def open_dialog(action: str, stage: int = 1, typed: str = "") -> None:
        """Stage 1 asks (with the prompt's field, if any); stage 2 asks again, keeping
        what stage 1's field held."""
        window = tk.Toplevel(app.root, padx=2 * pad, pady=2 * pad)
        window.title(f"deskdojo dialogs: {action}")
        window.transient(app.root)
        text = (message if stage == 1 else second_message).replace("{action}", action)
        current.update(action=action, message=text, window=window, stage=stage)
        label = tk.Label(window, text=text, wraplength=320)
        label.pack(pady=pad)
        app.register("dialog.message", label, "label")
        entry_var = tk.StringVar(window, typed)
        app.watch(entry_var)
        field = bool(prompt) and stage == 1
        if field:
            row = tk.Frame(window)
            row.pack(pady=pad)
            tk.Label(row, text=prompt).pack(side="left")
            entry = tk.Entry(row, textvariable=entry_var)
            entry.pack(side="left", padx=pad)
            app.register("dialog.entry", entry, "entry", value=entry_var.get)
        row = tk.Frame(window)
        row.pack(pady=pad)
        confirm = tk.Button(row, text=confirm_label, width=8, command=lambda: finish("confirmed"))
        cancel = tk.Button(row, text=cancel_label, width=8, command=lambda: finish("cancelled"))
        for button in layout.sample([confirm, cancel], 2):
            button.pack(side="left", padx=pad)
        app.register("dialog.confirm", confirm, "button")
        app.register("dialog.cancel", cancel, "button")
        window.bind("<Return>", lambda e: finish("confirmed"))
        window.bind("<Escape>", lambda e: finish("cancelled"))
        window.protocol("WM_DELETE_WINDOW", lambda: finish("cancelled"))
        app.windows["dialog"] = window
        app.place(window, "dialog" if stage == 1 else f"dialog{stage}", near=app.root)
        window.wait_visibility()
        window.grab_set()
        if field:
            entry.focus_force()
        else:
            window.focus_force()
        current["text"] = entry_var.get
        app.changed()

    def finish(result: str) -> None:
        if current.get("stage") == 1 and result == "confirmed" and current.get("action") in twice:
            action, window, typed = current["action"], current["window"], current["text"]()
            current.clear()
            app.unregister("dialog.")
            del app.windows["dialog"]
            window.grab_release()
            window.destroy()
            open_dialog(action, stage=2, typed=typed)
            return
        action, window = current.pop("action"), current.pop("window")
        text = current.pop("text")()
        results[action] = result
        history.append({"action": action, "result": result, "text": text if prompt else None})
        current.clear()
        app.unregister("dialog.")
        del app.windows["dialog"]
        window.grab_release()
        window.destroy()
        app.changed()

    tk.Label(app.root, text=layout.choice(["Actions", "What next?", "Manage"]),
             font=(app.style.family, app.style.size + 2, "bold")).pack(anchor="w", padx=pad, pady=pad)
    frame = tk.Frame(app.root, padx=pad, pady=pad)
    frame.pack()
    side = layout.choice(["top", "left"])
    for action in actions:
        button = tk.Button(frame, text=action, command=lambda a=action: open_dialog(a))
        button.pack(side=side, fill="x", padx=pad, pady=layout.randint(1, pad))
        app.register(f"action:{action}", button, "button")
    app.fields = lambda: {"dialog": ({"action": current["action"], "message": current["message"],
                                      "stage": current["stage"]}
                                     if "action" in current else None),
                          "results": dict(results), "history": list(history)}
    app.place(app.root)
    return app
