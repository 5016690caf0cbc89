"""Replay: play a recorded demo or trajectory into a fresh sandbox, its recorded frames beside
the live ones, and mark the first step where the live screen no longer matches."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from PyQt6.QtCore import QObject, Qt, pyqtSignal
from PyQt6.QtGui import QBrush, QColor, QImage
from PyQt6.QtWidgets import (
    QAbstractItemView, QCheckBox, QComboBox, QFileDialog, QHBoxLayout, QLabel, QPushButton, QSplitter,
    QTableWidget, QTableWidgetItem, QVBoxLayout, QWidget,
)

from deskdojo.core.errors import DeskdojoError
from deskdojo.gui import adapters
from deskdojo.gui.canvas import ScreenCanvas
from deskdojo.gui.data import RunReader, load_trajectory
from deskdojo.gui.frames import rgb_to_qimage
from deskdojo.gui.widgets import EmptyState
from deskdojo.gui.workers import Tasks

DIVERGED = QColor(220, 60, 60)


class _StepRelay(QObject):
    step = pyqtSignal(int, QImage, QImage, float)


class ReplayView(QWidget):
    finished = pyqtSignal(object)  # the replay report, or None when it failed

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.run: RunReader | None = None
        self.tasks = Tasks(self, threads=1)
        self.relay = _StepRelay(self)
        self.relay.step.connect(self._on_step)
        self.report: Any = None
        self.first_divergent: int | None = None
        self.steps_seen: list[tuple[int, float]] = []
        self.actions: list[Any] = []
        layout = QVBoxLayout(self)
        bar = QHBoxLayout()
        self.source_box = QComboBox()
        self.source_box.setMinimumContentsLength(30)
        browse = QPushButton("Open folder…")
        browse.clicked.connect(self._browse)
        self.provider_box = QComboBox()
        self.provider_box.addItems(["xvfb", "docker"])
        self.until_diverge = QCheckBox("stop at the first divergence")
        self.replay_button = QPushButton("Replay into a fresh sandbox (Ctrl+Shift+R)")
        self.replay_button.clicked.connect(self.start_replay)
        bar.addWidget(QLabel("Recording:"))
        bar.addWidget(self.source_box, 1)
        bar.addWidget(browse)
        bar.addWidget(QLabel("Provider:"))
        bar.addWidget(self.provider_box)
        bar.addWidget(self.until_diverge)
        bar.addWidget(self.replay_button)
        layout.addLayout(bar)
        self.state_label = QLabel("Pick a demo or trajectory, then replay it.")
        self.state_label.setWordWrap(True)
        layout.addWidget(self.state_label)
        self.empty = EmptyState()
        self.empty.set_text("Nothing to replay yet",
                            "Record a demonstration on the Live tab (enlarge a sandbox, take over, Start "
                            "recording), attach a run with trajectories (Ctrl+O), or open a demo folder.")
        layout.addWidget(self.empty)
        self.content = QSplitter(Qt.Orientation.Horizontal)
        self.recorded = ScreenCanvas(placeholder="recorded frame")
        self.recorded.header = "recorded"
        self.live = ScreenCanvas(placeholder="live frame (replay not started)")
        self.live.header = "live replay"
        self.table = QTableWidget(0, 3)
        self.table.setHorizontalHeaderLabels(["step", "similarity", "diverged"])
        self.table.verticalHeader().setVisible(False)
        self.table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.table.setMaximumWidth(260)
        self.content.addWidget(self.recorded)
        self.content.addWidget(self.live)
        self.content.addWidget(self.table)
        layout.addWidget(self.content, 1)
        self.set_run(None)

    # --- sources -----------------------------------------------------------------

    def set_run(self, run: RunReader | None) -> None:
        self.run = run
        self.refresh()

    def refresh(self) -> None:
        current = self.source_box.currentData()
        self.source_box.blockSignals(True)
        self.source_box.clear()
        if self.run is not None:
            for demo in reversed(self.run.demo_ids()):
                self.source_box.addItem(f"demo {demo}", str(self.run.path / "demos" / demo))
            for traj in reversed(self.run.trajectory_ids()):
                self.source_box.addItem(f"trajectory {traj}", str(self.run.path / "trajectories" / traj))
        if current is not None:
            index = self.source_box.findData(current)
            if index < 0:
                self.source_box.addItem(Path(current).name, current)
                index = self.source_box.count() - 1
            self.source_box.setCurrentIndex(index)
        self.source_box.blockSignals(False)
        has_any = self.source_box.count() > 0
        self.empty.setVisible(not has_any and not self.steps_seen)
        self.content.setVisible(has_any or bool(self.steps_seen))
        self.replay_button.setEnabled(has_any and self.tasks.pending() == 0)

    def _browse(self) -> None:
        path = QFileDialog.getExistingDirectory(self, "A demo or trajectory folder")
        if path:
            self.choose(path)

    def choose(self, folder: str | Path) -> None:
        folder = str(folder)
        index = self.source_box.findData(folder)
        if index < 0:
            self.source_box.addItem(Path(folder).name, folder)
            index = self.source_box.count() - 1
        self.source_box.setCurrentIndex(index)
        self.refresh()

    # --- replaying ---------------------------------------------------------------

    def start_replay(self, provider: str | None = None) -> None:
        folder = self.source_box.currentData()
        if not folder or self.tasks.pending():
            return
        provider = provider or self.provider_box.currentText()
        try:
            steps = load_trajectory(folder).steps
        except DeskdojoError as exc:
            self.state_label.setText(str(exc))
            return
        self.actions = [s.action for s in steps]
        frame = next((s.frame for s in steps if s.frame is not None), None)
        size = QImage(str(frame)).size() if frame is not None else None
        screen = (size.width(), size.height()) if size is not None and not size.isEmpty() else None
        self.steps_seen, self.first_divergent, self.report = [], None, None
        self.table.setRowCount(0)
        self.live.highlight = self.recorded.highlight = None
        self.replay_button.setEnabled(False)
        self.state_label.setText(f"starting a {provider} sandbox and replaying {Path(folder).name}…")
        relay = self.relay
        until = self.until_diverge.isChecked()

        def on_step(index: int, recorded: Any, live: Any, similarity: float) -> None:
            relay.step.emit(index, rgb_to_qimage(recorded), rgb_to_qimage(live), float(similarity))

        def work() -> Any:
            sandbox = adapters.start_sandbox(provider, screen)  # the recording's screen size
            try:
                return adapters.run_replay(folder, sandbox, on_step=on_step, until_diverge=until)
            finally:
                sandbox.close()

        self.tasks.submit(work, self._done, self._failed)

    def _on_step(self, index: int, recorded: QImage, live: QImage, similarity: float) -> None:
        action = self.actions[index] if 0 <= index < len(self.actions) else None
        self.recorded.set_frame(recorded, recorded.width(), recorded.height())
        self.recorded.set_action(action)
        self.live.set_frame(live, live.width(), live.height())
        self.live.set_action(action)
        self.steps_seen.append((index, similarity))
        row = self.table.rowCount()
        self.table.insertRow(row)
        for column, text in enumerate((str(index), f"{similarity:.3f}", "")):
            self.table.setItem(row, column, QTableWidgetItem(text))
        self.state_label.setText(f"step {index}: similarity {similarity:.3f}")

    def _done(self, report: Any) -> None:
        self.report = report
        self.first_divergent = getattr(report, "first_divergent", None)
        diverged = {int(getattr(s, "index", i)) for i, s in enumerate(getattr(report, "steps", []) or [])
                    if getattr(s, "diverged", False)}
        for row in range(self.table.rowCount()):
            index = int(self.table.item(row, 0).text())
            if index in diverged:
                self.table.item(row, 2).setText("yes" + (" ← first" if index == self.first_divergent else ""))
            if index == self.first_divergent:
                for column in range(3):
                    self.table.item(row, column).setBackground(QBrush(DIVERGED))
                self.table.selectRow(row)
        verdict = getattr(report, "verdict", None)
        verdict_text = ""
        if verdict is not None:
            success = getattr(verdict, "success", None)
            verdict_text = f" · verdict: {'success' if success else 'failure'} (score {getattr(verdict, 'score', 0):.2f})"
        if self.first_divergent is None:
            self.state_label.setText(f"replayed {len(self.steps_seen)} step(s); the live screen matched the "
                                     f"recording at every step{verdict_text}")
            self.live.highlight = None
        else:
            self.state_label.setText(f"replayed {len(self.steps_seen)} step(s); <b>first divergent step: "
                                     f"{self.first_divergent}</b>{verdict_text}")
            self.live.highlight = DIVERGED
        self.live.update()
        self.replay_button.setEnabled(True)
        self.finished.emit(report)

    def _failed(self, message: str) -> None:
        self.state_label.setText(f"replay failed: {message}")
        self.replay_button.setEnabled(True)
        self.finished.emit(None)

    def shutdown(self) -> None:
        self.tasks.wait(60000)
