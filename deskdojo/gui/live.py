"""The live view: a grid of sandbox screens, one enlarged on click, and teaching by demonstration.

Sources are the run's sandboxes (from status.json) and sandboxes the panel started
itself. Frames come from ``FrameGrabber`` (worker threads); the UI thread only paints.
In the enlarged view a person can take over: their clicks, drags, wheel and keys become
core Actions performed through a DemoRecorder (when recording) on a one-thread queue,
so the actions reach the sandbox in the order they were made. Key E overlays the
elements each sandbox lists (``Sandbox.elements()``, fetched on a worker about once a
second while the overlay is on).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Callable

from PyQt6.QtCore import QSize, QTimer, pyqtSignal
from PyQt6.QtGui import QImage, QKeySequence, QShortcut
from PyQt6.QtWidgets import (
    QCheckBox, QComboBox, QFileDialog, QFormLayout, QGridLayout, QHBoxLayout, QLabel, QLineEdit,
    QPushButton, QScrollArea, QStackedWidget, QVBoxLayout, QWidget,
)

from deskdojo.core.actions import Action, describe
from deskdojo.core.errors import RecordError
from deskdojo.core.types import Task
from deskdojo.gui import adapters
from deskdojo.gui.canvas import ScreenCanvas
from deskdojo.gui.data import load_task_file, parse_action
from deskdojo.gui.frames import FrameGrabber
from deskdojo.gui.widgets import EmptyState
from deskdojo.gui.workers import Tasks

DEFAULT_FPS = 10
ELEMENTS_INTERVAL_MS = 1000  # element listings cost the guest a tree walk: a modest rate


@dataclass(frozen=True, slots=True)
class LiveSource:
    """One sandbox the live view shows. ``origin`` is ``run`` or ``panel`` (started here)."""

    name: str
    socket: str | None
    task_id: str = ""
    instruction: str = ""
    step: int = 0
    last_action: Action | None = None
    origin: str = "run"

    @classmethod
    def from_status(cls, entry: dict[str, Any]) -> "LiveSource":
        return cls(name=str(entry.get("name") or "?"), socket=entry.get("socket"),
                   task_id=str(entry.get("task_id") or ""), instruction=str(entry.get("instruction") or ""),
                   step=int(entry.get("step") or 0), last_action=parse_action(entry.get("last_action")))


class LiveView(QWidget):
    """Grid + enlarged view + take-over. ``frames_received`` counts frames per source."""

    status_message = pyqtSignal(str)
    demo_saved = pyqtSignal(str)

    def __init__(self, parent: QWidget | None = None, *, fps: int = DEFAULT_FPS,
                 tasks_provider: Callable[[], list[dict[str, Any]]] = lambda: [],
                 demos_dir: Callable[[], Path | None] = lambda: None,
                 provider_default: str = "xvfb"):
        super().__init__(parent)
        self.grabber = FrameGrabber(self)
        self.grabber.frame.connect(self._on_frame)
        self.grabber.failed.connect(self._on_failed)
        self.background = Tasks(self, threads=2)
        self.serial = Tasks(self, threads=1)  # demonstration actions, in order
        self.tasks_provider = tasks_provider
        self.demos_dir_provider = demos_dir
        self.custom_demos_dir: Path | None = None
        self.sources: dict[str, LiveSource] = {}
        self.run_sources: list[LiveSource] = []
        self.panel_sandboxes: dict[str, Any] = {}
        self.attached: dict[str, Any] = {}
        self.tiles: dict[str, ScreenCanvas] = {}
        self.frames_received: dict[str, int] = {}
        self.enlarged: str | None = None
        self.recorder: Any = None
        self.recorded_steps = 0
        self.pending_actions = 0
        self.last_errors: dict[str, str] = {}
        self.show_elements = False
        self.listings: dict[str, Any] = {}  # source -> its latest ElementList
        self.elements_pending: set[str] = set()  # sources with a listing being fetched
        self._build(provider_default)
        self.timer = QTimer(self)
        self.timer.timeout.connect(self._tick)
        self.set_fps(fps)
        self.timer.start()
        self.elements_timer = QTimer(self)
        self.elements_timer.setInterval(ELEMENTS_INTERVAL_MS)
        self.elements_timer.timeout.connect(self._fetch_elements)
        QShortcut(QKeySequence("E"), self, activated=self.toggle_elements)

    # --- layout ------------------------------------------------------------------

    def _build(self, provider_default: str) -> None:
        layout = QVBoxLayout(self)
        bar = QHBoxLayout()
        self.provider_box = QComboBox()
        self.provider_box.addItems(["xvfb", "docker"])
        self.provider_box.setCurrentText(provider_default)
        self.new_button = QPushButton("New sandbox")
        self.new_button.setToolTip("Start a sandbox of your own here (to demonstrate a task or try things)")
        self.new_button.clicked.connect(self.start_panel_sandbox)
        self.fps_label = QLabel("")
        bar.addWidget(QLabel("Sandboxes:"))
        bar.addWidget(self.provider_box)
        bar.addWidget(self.new_button)
        bar.addStretch(1)
        bar.addWidget(self.fps_label)
        layout.addLayout(bar)

        self.stack = QStackedWidget()
        self.empty = EmptyState()
        self.empty.set_text("No sandboxes to show",
                            "Attach a run that is running (File ▸ Attach run…, Ctrl+O), start one on the "
                            "Run tab (Ctrl+N), or press <b>New sandbox</b> to open a desktop of your own.")
        self.grid_host = QWidget()
        self.grid = QGridLayout(self.grid_host)
        self.grid.setSpacing(6)
        scroll = QScrollArea()
        scroll.setWidgetResizable(True)
        scroll.setWidget(self.grid_host)
        self.stack.addWidget(self.empty)
        self.stack.addWidget(scroll)
        self.stack.addWidget(self._build_enlarged())
        layout.addWidget(self.stack, 1)
        self._fps_clock = time.monotonic()
        self._fps_frames = 0

    def _build_enlarged(self) -> QWidget:
        page = QWidget()
        outer = QHBoxLayout(page)
        left = QVBoxLayout()
        top = QHBoxLayout()
        self.back_button = QPushButton("◀ All sandboxes (Esc)")
        self.back_button.clicked.connect(self.show_grid)
        self.enlarged_title = QLabel("")
        top.addWidget(self.back_button)
        top.addWidget(self.enlarged_title, 1)
        left.addLayout(top)
        self.big = ScreenCanvas(placeholder="waiting for the first frame…")
        self.big.action.connect(self.perform)
        left.addWidget(self.big, 1)
        outer.addLayout(left, 3)

        teach = QWidget()
        teach.setMaximumWidth(360)
        form = QFormLayout(teach)
        form.addRow(QLabel("<b>Teach by demonstration</b>"))
        self.take_over = QCheckBox("Take over (Ctrl+T)")
        self.take_over.setToolTip("Your clicks, drags, wheel and keys on the screen go to the sandbox")
        self.take_over.toggled.connect(self.big.set_capture)
        form.addRow(self.take_over)
        self.task_box = QComboBox()
        self.task_box.setMinimumContentsLength(24)
        form.addRow("Task", self.task_box)
        load = QPushButton("Load task file…")
        load.clicked.connect(self._load_task_file)
        form.addRow("", load)
        self.instruction_edit = QLineEdit()
        self.instruction_edit.setPlaceholderText("…or type a new instruction")
        form.addRow("Instruction", self.instruction_edit)
        self.record_button = QPushButton("Start recording")
        self.record_button.setToolTip("Reset the sandbox with the task, then record what you do")
        self.record_button.clicked.connect(self.start_recording)
        form.addRow(self.record_button)
        self.demo_name = QLineEdit()
        self.demo_name.setPlaceholderText("demo name (optional)")
        form.addRow("Name", self.demo_name)
        self.save_button = QPushButton("Stop and save")
        self.save_button.setEnabled(False)
        self.save_button.clicked.connect(self.stop_recording)
        form.addRow(self.save_button)
        folder = QPushButton("Save demos to…")
        folder.clicked.connect(self._choose_demos_dir)
        form.addRow(folder)
        self.demo_status = QLabel("Not recording.")
        self.demo_status.setWordWrap(True)
        form.addRow(self.demo_status)
        outer.addWidget(teach, 1)

        QShortcut(QKeySequence("Ctrl+T"), page, activated=self.take_over.toggle)
        QShortcut(QKeySequence("Esc"), page, activated=self.show_grid)
        return page

    # --- sources -----------------------------------------------------------------

    def set_run_sources(self, sources: list[LiveSource]) -> None:
        """The run's sandboxes (from status.json); panel-started ones stay."""
        self.run_sources = sources
        self._rebuild_sources()

    def _rebuild_sources(self) -> None:
        panel = {name: LiveSource(name=name, socket=adapters.sandbox_socket(sb), origin="panel",
                                  instruction=self.sources.get(name, LiveSource(name, None)).instruction,
                                  task_id=self.sources.get(name, LiveSource(name, None)).task_id,
                                  step=self.sources.get(name, LiveSource(name, None)).step,
                                  last_action=self.sources.get(name, LiveSource(name, None)).last_action)
                 for name, sb in self.panel_sandboxes.items()}
        wanted = {s.name: s for s in self.run_sources}
        wanted.update(panel)
        taking_over = getattr(self, "take_over", None)
        held = self.enlarged if (self.recorder is not None or (taking_over and taking_over.isChecked())) else None
        if held in wanted and held in self.sources:
            # a person acts on this sandbox now: its step and last action are theirs, not the
            # run's status (which still shows what the run last did there)
            mine = self.sources[held]
            wanted[held] = replace(wanted[held], step=mine.step, last_action=mine.last_action)
        for name in list(self.tiles):
            if name not in wanted:
                tile = self.tiles.pop(name)
                self.grid.removeWidget(tile)
                tile.deleteLater()
        self.sources = wanted
        for name, source in wanted.items():
            tile = self.tiles.get(name)
            if tile is None:
                tile = self.tiles[name] = ScreenCanvas()
                tile.setMinimumSize(240, 200)
                tile.set_show_elements(self.show_elements)
                tile.clicked.connect(lambda name=name: self.enlarge(name))
                tile.setToolTip("Click to enlarge")
            self._label(tile, source)
        columns = max(1, math.ceil(math.sqrt(len(self.tiles))))
        for index, name in enumerate(sorted(self.tiles)):
            self.grid.addWidget(self.tiles[name], index // columns, index % columns)
        if self.enlarged is not None and self.enlarged not in wanted and self.recorder is None:
            self.enlarged = None
        if self.enlarged is not None and self.enlarged in wanted:
            self._label(self.big, wanted[self.enlarged])
            self.enlarged_title.setText(f"<b>{self.enlarged}</b> — {wanted[self.enlarged].instruction}")
        elif self.enlarged is None:
            self.stack.setCurrentIndex(1 if self.tiles else 0)

    def _label(self, canvas: ScreenCanvas, source: LiveSource) -> None:
        canvas.header = f"{source.name}" + (f" — {source.instruction}" if source.instruction else "")
        canvas.footer = (f"task {source.task_id or '—'} · step {source.step}"
                         + (" · started here" if source.origin == "panel" else "")
                         + (f" · {self.last_errors[source.name]}" if source.name in self.last_errors else ""))
        if source.origin == "run" or canvas is self.big:
            canvas.set_action(source.last_action)
        if source.socket is None:
            canvas.placeholder = "this sandbox has no guest socket to watch"
        canvas.update()

    # --- frames ------------------------------------------------------------------

    def set_fps(self, fps: int) -> None:
        self.timer.setInterval(max(10, int(1000 / max(1, fps))))

    def _tick(self) -> None:
        if not self.isVisible():
            return
        if self.stack.currentIndex() == 2 and self.enlarged in self.sources:
            self._request(self.enlarged, self.big)
        else:
            for name, tile in self.tiles.items():
                self._request(name, tile)
        now = time.monotonic()
        if now - self._fps_clock >= 1.0:
            rate = self._fps_frames / (now - self._fps_clock)
            self.fps_label.setText(f"{rate:.0f} frames/s in all" if self.sources else "")
            self._fps_clock, self._fps_frames = now, 0

    def _request(self, name: str, canvas: ScreenCanvas) -> None:
        source = self.sources.get(name)
        if source is None or not source.socket:
            return
        rect = canvas.screen_rect()
        size = QSize(max(16, int(rect.width())), max(16, int(rect.height())))
        self.grabber.request(name, source.socket, size)

    def _on_frame(self, name: str, image: QImage, width: int, height: int, fetch_ms: float) -> None:
        self.frames_received[name] = self.frames_received.get(name, 0) + 1
        self._fps_frames += 1
        if self.last_errors.pop(name, None) is not None and name in self.sources:
            self._label(self.tiles[name], self.sources[name])
        if self.stack.currentIndex() == 2 and name == self.enlarged:
            self.big.set_frame(image, width, height)
        tile = self.tiles.get(name)
        if tile is not None and self.stack.currentIndex() != 2:
            tile.set_frame(image, width, height)

    def _on_failed(self, name: str, message: str) -> None:
        first = name not in self.last_errors
        self.last_errors[name] = "not answering"
        if first and name in self.tiles:
            self._label(self.tiles[name], self.sources[name])
            self.status_message.emit(f"{name}: {message}")

    # --- elements overlay ------------------------------------------------------------

    def toggle_elements(self) -> None:
        """Overlay (or hide) each screen's elements: boxes, ids, roles (key E)."""
        self.show_elements = not self.show_elements
        for canvas in [*self.tiles.values(), self.big]:
            canvas.set_show_elements(self.show_elements)
        if self.show_elements:
            self._fetch_elements()
            self.elements_timer.start()
        else:
            self.elements_timer.stop()
        self.status_message.emit("elements overlay " + ("on" if self.show_elements else "off") + " (E)")

    def _fetch_elements(self) -> None:
        """Ask the shown sandboxes for their listings, on a worker, one request per sandbox at a time."""
        if not self.show_elements:
            return
        shown = [self.enlarged] if self.stack.currentIndex() == 2 and self.enlarged else list(self.tiles)
        for name in shown:
            source = self.sources.get(name)
            if name in self.elements_pending or source is None or (not source.socket
                                                                    and name not in self.panel_sandboxes):
                continue
            self.elements_pending.add(name)

            def done(listing: Any, name: str = name) -> None:
                self.elements_pending.discard(name)
                self.listings[name] = listing
                if name in self.tiles:
                    self.tiles[name].set_elements(listing)
                if name == self.enlarged:
                    self.big.set_elements(listing)

            def failed(message: str, name: str = name) -> None:
                self.elements_pending.discard(name)
                self.status_message.emit(f"{name}: could not list elements: {message.splitlines()[0]}")

            self.background.submit(lambda name=name: adapters.read_elements(self._sandbox_for(name)), done, failed)

    # --- enlarge -----------------------------------------------------------------

    def enlarge(self, name: str) -> None:
        if name not in self.sources:
            return
        self.enlarged = name
        source = self.sources[name]
        tile = self.tiles.get(name)
        if tile is not None and tile.image is not None:
            self.big.set_frame(tile.image, *tile.screen_size)
        else:
            self.big.image = None
        self._label(self.big, source)
        self.big.set_elements(self.listings.get(name))
        self.enlarged_title.setText(f"<b>{name}</b> — {source.instruction}")
        self._refresh_tasks()
        self.stack.setCurrentIndex(2)

    def show_grid(self) -> None:
        if self.recorder is not None:
            self.status_message.emit("stop and save the demonstration before leaving the enlarged view")
            return
        self.take_over.setChecked(False)
        self.enlarged = None
        self.stack.setCurrentIndex(1 if self.tiles else 0)

    # --- panel-started sandboxes ---------------------------------------------------

    def start_panel_sandbox(self, provider: str | None = None,
                            on_ready: Callable[[str], None] | None = None) -> None:
        provider = provider or self.provider_box.currentText()
        self.new_button.setEnabled(False)
        self.status_message.emit(f"starting a {provider} sandbox…")

        def ready(sandbox: Any) -> None:
            self.new_button.setEnabled(True)
            self.panel_sandboxes[sandbox.name] = sandbox
            self._rebuild_sources()
            self.status_message.emit(f"sandbox {sandbox.name} is up")
            if on_ready is not None:
                on_ready(sandbox.name)

        def failed(message: str) -> None:
            self.new_button.setEnabled(True)
            self.status_message.emit(f"could not start a {provider} sandbox: {message}")

        self.background.submit(lambda: adapters.start_sandbox(provider), ready, failed)

    def add_panel_sandbox(self, sandbox: Any) -> None:
        """Show a sandbox started elsewhere in this process; the view closes it on shutdown."""
        self.panel_sandboxes[sandbox.name] = sandbox
        self._rebuild_sources()

    def _sandbox_for(self, name: str) -> Any:
        """The sandbox object behind ``name`` (blocking for run sandboxes: attaches)."""
        if name in self.panel_sandboxes:
            return self.panel_sandboxes[name]
        if name not in self.attached:
            source = self.sources[name]
            if not source.socket:
                raise RecordError(f"{name} has no guest socket; it cannot be driven from here")
            self.attached[name] = adapters.attach_socket(name, source.socket)
        return self.attached[name]

    # --- teaching ------------------------------------------------------------------

    def _refresh_tasks(self) -> None:
        current = self.task_box.currentData()
        self.task_box.clear()
        self.task_box.addItem("(the instruction typed below)", None)
        for row in self.tasks_provider():
            task = row["task"]
            self.task_box.addItem(f"{task.get('id')} — {task.get('instruction', '')[:60]}", dict(task))
        if current is not None:
            index = self.task_box.findData(current)
            if index >= 0:
                self.task_box.setCurrentIndex(index)

    def _load_task_file(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Load a task JSON file", "", "JSON (*.json)")
        if path:
            self.load_task(path)

    def load_task(self, path: str | Path) -> None:
        try:
            task = load_task_file(path)
        except RecordError as exc:
            self.status_message.emit(str(exc))
            return
        self.task_box.addItem(f"{task.get('id')} — {Path(path).name}", task)
        self.task_box.setCurrentIndex(self.task_box.count() - 1)

    def _choose_demos_dir(self) -> None:
        path = QFileDialog.getExistingDirectory(self, "Save demonstrations to")
        if path:
            self.custom_demos_dir = Path(path)

    def demos_dir(self) -> Path | None:
        return self.custom_demos_dir or self.demos_dir_provider()

    def chosen_task(self) -> Task:
        data = self.task_box.currentData()
        if data is not None:
            return adapters.task_from_dict(data)
        return adapters.new_instruction_task(self.instruction_edit.text())

    def start_recording(self) -> None:
        """Reset the enlarged sandbox with the chosen task and start a DemoRecorder on it."""
        if self.enlarged is None or self.recorder is not None:
            return
        demos_dir = self.demos_dir()
        try:
            task = self.chosen_task()
            if demos_dir is None:
                raise RecordError("no run attached: choose a folder with “Save demos to…”")
        except RecordError as exc:
            self.demo_status.setText(str(exc))
            return
        name = self.enlarged
        demo_name = self.demo_name.text().strip() or None  # read here: widgets belong to the UI thread
        self.record_button.setEnabled(False)
        self.demo_status.setText(f"resetting {name} with task {task.id}…")

        def begin() -> Any:
            sandbox = self._sandbox_for(name)
            return adapters.demo_recorder(sandbox, task, demos_dir, name=demo_name)

        def started(recorder: Any) -> None:
            self.recorder = recorder
            self.recorded_steps = 0
            self.save_button.setEnabled(True)
            self.take_over.setChecked(True)
            self.sources[name] = replace(self.sources[name], task_id=task.id, instruction=task.instruction, step=0)
            self._label(self.big, self.sources[name])
            self.demo_status.setText(f"Recording “{task.instruction}”. Act on the screen; then Stop and save.")

        def failed(message: str) -> None:
            self.record_button.setEnabled(True)
            self.demo_status.setText(f"could not start recording: {message}")

        self.serial.submit(begin, started, failed)

    def perform(self, action: Action) -> None:
        """Send one action from the person at the screen (through the recorder when recording)."""
        name = self.enlarged
        if name is None:
            return
        recorder = self.recorder
        self.pending_actions += 1
        self.big.set_action(action)

        def work() -> Any:
            target = recorder if recorder is not None else self._sandbox_for(name)
            return target.act(action)

        def done(result: Any) -> None:
            self.pending_actions -= 1
            if recorder is not None:
                self.recorded_steps += 1
                self.demo_status.setText(f"Recording: {self.recorded_steps} step(s); last {describe(action)}")
            if name in self.sources:
                source = self.sources[name]
                self.sources[name] = replace(source, step=source.step + 1, last_action=action)
                self._label(self.big, self.sources[name])
            if not getattr(result, "ok", True):
                self.status_message.emit(f"{describe(action)} refused: {result.error}")

        def failed(message: str) -> None:
            self.pending_actions -= 1
            self.status_message.emit(f"{describe(action)} failed: {message}")

        self.serial.submit(work, done, failed)

    def stop_recording(self) -> None:
        recorder = self.recorder
        if recorder is None:
            return
        name = self.demo_name.text().strip() or None
        self.save_button.setEnabled(False)

        def saved(path: Any) -> None:
            self.recorder = None
            self.record_button.setEnabled(True)
            self.take_over.setChecked(False)
            self.demo_status.setText(f"Saved {self.recorded_steps} step(s) to {path}")
            self.demo_saved.emit(str(path))

        def failed(message: str) -> None:
            self.save_button.setEnabled(True)
            self.demo_status.setText(f"could not save: {message}")

        self.serial.submit(lambda: recorder.finish(name), saved, failed)

    # --- shutdown ------------------------------------------------------------------

    def shutdown(self) -> None:
        """Stop fetching, finish queued work and close the sandboxes this view started."""
        self.timer.stop()
        self.elements_timer.stop()
        self.serial.wait(30000)
        self.background.wait(60000)
        self.grabber.close()
        for sandbox in list(self.attached.values()) + list(self.panel_sandboxes.values()):
            try:
                sandbox.close()
            except Exception:  # closing must go on for the others
                pass
        self.attached.clear()
        self.panel_sandboxes.clear()
