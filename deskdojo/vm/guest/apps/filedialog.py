"""A modal open/save file dialog of plain Tk widgets, drivable by mouse and keyboard.

Widgets (ids start with ``dialog.``): ``dialog.dir`` (label: the folder shown),
``dialog.up`` (button: the parent folder), ``dialog.files`` (listbox of folders, shown
with a trailing ``/``, then files; ``rows`` on screen), ``dialog.name`` (entry: the file
name, ``value``), ``dialog.ok`` (Open or Save), ``dialog.cancel``, ``dialog.status``.
The proposed name starts selected, so typing replaces it.
Mouse: click a file to take its name, double-click a folder to enter it or a file to
accept it. Keyboard: type a name (or a folder, ``..``, an absolute path) and press Enter;
arrows and Enter in the list; Escape cancels. ``state()`` is ``{mode, dir, entries,
name, error}``.
"""

from __future__ import annotations

import os
import tkinter as tk
from collections.abc import Callable
from typing import Any

from deskdojo.vm.guest.apps.common import App, listbox_rows


class FileDialog:
    def __init__(self, app: App, *, mode: str, directory: str, name: str = "",
                 on_done: Callable[[str | None], None]) -> None:
        self.app, self.mode, self.on_done = app, mode, on_done
        self.directory = os.path.abspath(directory)
        self.error = ""
        self.entries: list[str] = []
        pad = app.style.pad
        window = self.window = tk.Toplevel(app.root, padx=pad, pady=pad)
        window.title(f"deskdojo {app.name}: {'Open' if mode == 'open' else 'Save as'}")
        window.transient(app.root)
        self.name = tk.StringVar(window, name)
        app.watch(self.name)
        top = tk.Frame(window)
        top.pack(fill="x")
        self.up = tk.Button(top, text="Up", command=lambda: self.enter(".."))
        self.up.pack(side="left")
        self.where = tk.Label(top, anchor="w")
        self.where.pack(side="left", fill="x", padx=pad)
        frame = tk.Frame(window)
        frame.pack(fill="both", expand=True, pady=pad)
        self.files = tk.Listbox(frame, height=8, width=40, exportselection=False)
        scrollbar = tk.Scrollbar(frame, command=self.files.yview)
        self.files.configure(yscrollcommand=lambda *a: (scrollbar.set(*a), app.changed()))
        self.files.pack(side="left", fill="both", expand=True)
        scrollbar.pack(side="left", fill="y")
        row = tk.Frame(window)
        row.pack(fill="x")
        tk.Label(row, text="File name:").pack(side="left")
        self.entry = tk.Entry(row, textvariable=self.name, width=30)
        self.entry.pack(side="left", fill="x", expand=True, padx=pad)
        self.status = tk.Label(window, anchor="w", foreground="#a00000")
        self.status.pack(fill="x")
        buttons = tk.Frame(window)
        buttons.pack(anchor="e", pady=(pad, 0))
        self.ok = tk.Button(buttons, text="Open" if mode == "open" else "Save", width=8, command=self.accept)
        self.cancel = tk.Button(buttons, text="Cancel", width=8, command=lambda: self.finish(None))
        self.ok.pack(side="left", padx=pad)
        self.cancel.pack(side="left")

        self.files.bind("<<ListboxSelect>>", lambda e: self.picked())
        self.files.bind("<Double-Button-1>", lambda e: self.activate())
        self.files.bind("<Return>", lambda e: (self.activate(), "break")[1])
        self.entry.bind("<Return>", lambda e: (self.accept(), "break")[1])
        window.bind("<Escape>", lambda e: self.finish(None))
        window.protocol("WM_DELETE_WINDOW", lambda: self.finish(None))
        for wid, widget, kind, extra in (
                ("dir", self.where, "label", {}), ("up", self.up, "button", {}),
                ("files", self.files, "listbox", {"rows": lambda: listbox_rows(self.files)}),
                ("name", self.entry, "entry", {"value": self.name.get}), ("ok", self.ok, "button", {}),
                ("cancel", self.cancel, "button", {}), ("status", self.status, "label", {})):
            app.register(f"dialog.{wid}", widget, kind, **extra)
        app.windows["dialog"] = window
        self.show(self.directory)
        app.place(window, "filedialog", near=app.root)
        window.wait_visibility()
        window.grab_set()
        self.entry.focus_force()
        self.entry.icursor("end")
        self.entry.selection_range(0, "end")  # as GTK does: typing replaces the proposed name
        app.changed()

    def state(self) -> dict[str, Any]:
        return {"mode": self.mode, "dir": self.directory, "entries": list(self.entries),
                "name": self.name.get(), "error": self.error or None}

    def show(self, directory: str) -> None:
        try:
            names = sorted(n for n in os.listdir(directory) if not n.startswith("."))
        except OSError as error:
            self.fail(f"Cannot open {directory}: {error.strerror}")
            return
        self.directory = directory
        self.entries = ([f"{n}/" for n in names if os.path.isdir(os.path.join(directory, n))]
                        + [n for n in names if not os.path.isdir(os.path.join(directory, n))])
        self.files.delete(0, "end")
        self.files.insert("end", *self.entries)
        self.where.configure(text=directory)
        self.fail("")

    def fail(self, message: str) -> None:
        self.error = message
        self.status.configure(text=message)
        self.app.changed()

    def enter(self, name: str) -> None:
        self.show(os.path.normpath(os.path.join(self.directory, name)))

    def picked(self) -> None:
        chosen = self.files.curselection()
        if chosen and not self.entries[chosen[0]].endswith("/"):
            self.name.set(self.entries[chosen[0]])

    def activate(self) -> None:
        chosen = self.files.curselection()
        if not chosen:
            return
        entry = self.entries[chosen[0]]
        if entry.endswith("/"):
            self.enter(entry[:-1])
        else:
            self.name.set(entry)
            self.accept()

    def accept(self) -> None:
        name = self.name.get().strip()
        if not name:
            self.fail("Type a file name")
            return
        path = os.path.normpath(os.path.join(self.directory, os.path.expanduser(name)))
        if os.path.isdir(path):
            self.show(path)
            self.name.set("")
        elif self.mode == "open" and not os.path.isfile(path):
            self.fail(f"No such file: {name}")
        elif self.mode == "save" and not os.path.isdir(os.path.dirname(path)):
            self.fail(f"No such folder: {os.path.dirname(path)}")
        else:
            self.finish(path)

    def finish(self, path: str | None) -> None:
        self.app.unregister("dialog.")
        self.app.windows.pop("dialog", None)
        self.window.grab_release()
        self.window.destroy()
        self.on_done(path)
        self.app.changed()
