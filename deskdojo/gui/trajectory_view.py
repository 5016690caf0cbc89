"""The trajectory browser: pick an episode (or a demo), step through its frames with the
model's text, the parsed action drawn on the frame, the world-state delta, the step's
label, and the final Verdict with its evidence per check."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from PyQt6.QtCore import Qt
from PyQt6.QtGui import QBrush, QColor, QImage, QKeySequence, QShortcut
from PyQt6.QtWidgets import (
    QAbstractItemView, QHBoxLayout, QLabel, QListWidget, QListWidgetItem, QPlainTextEdit, QPushButton,
    QSlider, QSplitter, QTableWidget, QTableWidgetItem, QVBoxLayout, QWidget,
)

from deskdojo.core.actions import describe
from deskdojo.core.errors import DeskdojoError
from deskdojo.gui.canvas import ScreenCanvas
from deskdojo.gui.data import RunReader, TrajectoryView, load_elements, load_trajectory
from deskdojo.gui.widgets import EmptyState, code

LABEL_COLOURS = {"progress": QColor(40, 170, 70), "no-op": QColor(200, 150, 30), "error": QColor(220, 60, 60)}


class TrajectoryBrowser(QWidget):
    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.run: RunReader | None = None
        self.trajectory: TrajectoryView | None = None
        self.verdict: dict[str, Any] | None = None
        self.index = 0
        self._listed: list[str] = []
        layout = QVBoxLayout(self)
        self.empty = EmptyState()
        self.content = QSplitter(Qt.Orientation.Horizontal)
        self.picker = QListWidget()
        self.picker.currentItemChanged.connect(self._picked)
        self.picker.setMaximumWidth(320)
        self.content.addWidget(self.picker)

        middle = QWidget()
        mid_layout = QVBoxLayout(middle)
        self.title = QLabel("")
        self.title.setWordWrap(True)
        mid_layout.addWidget(self.title)
        self.canvas = ScreenCanvas(placeholder="no frame recorded for this step")
        mid_layout.addWidget(self.canvas, 1)
        nav = QHBoxLayout()
        self.prev_button = QPushButton("◀ Prev ([)")
        self.prev_button.clicked.connect(lambda: self.show_step(self.index - 1))
        self.next_button = QPushButton("Next (]) ▶")
        self.next_button.clicked.connect(lambda: self.show_step(self.index + 1))
        self.slider = QSlider(Qt.Orientation.Horizontal)
        self.slider.valueChanged.connect(self.show_step)
        self.step_label = QLabel("")
        nav.addWidget(self.prev_button)
        nav.addWidget(self.slider, 1)
        nav.addWidget(self.next_button)
        nav.addWidget(self.step_label)
        mid_layout.addLayout(nav)
        self.content.addWidget(middle)

        right = QSplitter(Qt.Orientation.Vertical)
        self.step_text = QPlainTextEdit()
        self.step_text.setReadOnly(True)
        self.delta_text = QPlainTextEdit()
        self.delta_text.setReadOnly(True)
        verdict_box = QWidget()
        verdict_layout = QVBoxLayout(verdict_box)
        self.verdict_label = QLabel("")
        self.verdict_label.setWordWrap(True)
        verdict_layout.addWidget(self.verdict_label)
        self.evidence = QTableWidget(0, 4)
        self.evidence.setHorizontalHeaderLabels(["check", "passed", "score", "observed / message"])
        self.evidence.horizontalHeader().setStretchLastSection(True)
        self.evidence.verticalHeader().setVisible(False)
        self.evidence.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        verdict_layout.addWidget(self.evidence)
        right.addWidget(_titled("Step: model text and action", self.step_text))
        right.addWidget(_titled("World-state delta", self.delta_text))
        right.addWidget(_titled("Verdict", verdict_box))
        self.content.addWidget(right)
        self.content.setStretchFactor(1, 3)
        self.content.setStretchFactor(2, 2)
        layout.addWidget(self.empty)
        layout.addWidget(self.content)
        QShortcut(QKeySequence("["), self, activated=lambda: self.show_step(self.index - 1))
        QShortcut(QKeySequence("]"), self, activated=lambda: self.show_step(self.index + 1))
        QShortcut(QKeySequence("E"), self, activated=self.toggle_elements)  # the element overlay
        self.set_run(None)

    # --- picking -----------------------------------------------------------------

    def set_run(self, run: RunReader | None) -> None:
        self.run = run
        self._listed = []
        self.picker.clear()
        self.trajectory = None
        self.refresh()

    def refresh(self) -> None:
        run = self.run
        if run is None:
            self._empty("No run attached", "Attach a run folder (Ctrl+O) to browse its trajectories.")
            return
        entries = [f"trajectories/{t}" for t in reversed(run.trajectory_ids())] + \
                  [f"demos/{d}" for d in reversed(run.demo_ids())]
        if not entries:
            self._empty("No trajectories yet", f"{run.path} has no episodes yet. They appear as the run "
                        "rolls out; to record one by hand, enlarge a sandbox on the Live tab and take over. "
                        "Or start a run: " + code(f"deskdojo evolve --run-dir {run.path} --model tiny "
                                                   "--provider xvfb --sandboxes 2 --iterations 10"))
            return
        self.empty.hide()
        self.content.show()
        if entries == self._listed:  # verdicts and disagreements arrive after their trajectories
            for row in range(self.picker.count()):
                item = self.picker.item(row)
                text = self._entry_text(item.data(Qt.ItemDataRole.UserRole))
                if item.text() != text:
                    item.setText(text)
            return
        selected = self.picker.currentItem().data(Qt.ItemDataRole.UserRole) if self.picker.currentItem() else None
        self.picker.blockSignals(True)
        self.picker.clear()
        for rel in entries:
            item = QListWidgetItem(self._entry_text(rel))
            item.setData(Qt.ItemDataRole.UserRole, rel)
            self.picker.addItem(item)
        self.picker.blockSignals(False)
        self._listed = entries
        rows = [i for i, rel in enumerate(entries) if rel == selected]
        self.picker.setCurrentRow(rows[0] if rows else 0)

    def _entry_text(self, rel: str) -> str:
        kind, name = rel.split("/", 1)
        if kind == "demos":
            return f"● demo {name}"
        verdict = self.run.verdict_for(name) if self.run else None
        if verdict is None:
            return f"… {name}"
        disputed = " ⚠ judges disagree" if self.run and self.run.disagreement_for(name) else ""
        return f"{'✔' if verdict.get('success') else '✘'} {name}  ({float(verdict.get('score', 0)):.2f}){disputed}"

    def _empty(self, title: str, body: str) -> None:
        self.content.hide()
        self.empty.set_text(title, body)
        self.empty.show()

    def _picked(self, item: QListWidgetItem | None, _previous: Any = None) -> None:
        if item is None or self.run is None:
            return
        self.open(self.run.path / item.data(Qt.ItemDataRole.UserRole))

    def select(self, trajectory_id: str) -> bool:
        for row in range(self.picker.count()):
            if self.picker.item(row).data(Qt.ItemDataRole.UserRole).endswith("/" + trajectory_id):
                self.picker.setCurrentRow(row)
                return True
        return False

    def open(self, folder: Path) -> None:
        try:
            self.trajectory = load_trajectory(folder)
        except DeskdojoError as exc:
            self.title.setText(str(exc))
            return
        traj = self.trajectory
        self.verdict = self.run.verdict_for(traj.id) if self.run and folder.parent.name == "trajectories" else None
        instruction = ""
        task = traj.task or (self.run.task_by_id(traj.task_id) if self.run and traj.task_id else None)
        if task:
            instruction = task.get("instruction", "")
        self.title.setText(f"<b>{traj.id}</b> · task {traj.task_id or '—'} · end {traj.end or 'running'}"
                           + (f" · error: {traj.error}" if traj.error else "")
                           + (f"<br>{instruction}" if instruction else ""))
        self._show_verdict()
        self.slider.blockSignals(True)
        self.slider.setRange(0, max(0, len(traj.steps) - 1))
        self.slider.blockSignals(False)
        self.index = -1
        self.show_step(0)

    # --- stepping ----------------------------------------------------------------

    def show_step(self, index: int) -> None:
        traj = self.trajectory
        if traj is None or not traj.steps:
            self.step_text.setPlainText("this trajectory has no steps yet")
            return
        index = max(0, min(index, len(traj.steps) - 1))
        if index == self.index:
            return
        self.index = index
        self.slider.blockSignals(True)
        self.slider.setValue(index)
        self.slider.blockSignals(False)
        step = traj.steps[index]
        if step.frame is not None:
            image = QImage(str(step.frame))
            self.canvas.set_frame(image, image.width(), image.height())
        else:
            self.canvas.image = None
        self.canvas.set_action(step.action)
        self.canvas.set_elements(load_elements(step.elements))
        label = self._label(index)
        first_error = (self.verdict or {}).get("first_error_step")
        self.canvas.highlight = LABEL_COLOURS.get(label) if label else None
        self.step_label.setText(f"step {index + 1}/{len(traj.steps)}" + (f" · {label}" if label else "")
                                + (" · first error" if first_error == index else ""))
        lines = [f"step {step.index}" + (f" — label: {label}" if label else "")]
        lines.append(f"action: {describe(step.action) if step.action else 'none (did not parse)'}")
        if step.action_error:
            lines.append(f"action error: {step.action_error}")
        lines += ["", "model text:", step.model_text or "(none)"]
        self.step_text.setPlainText("\n".join(lines))
        self.delta_text.setPlainText(json.dumps(step.delta, indent=1, sort_keys=True, default=str)
                                     if step.delta else "(no delta recorded for this step)")

    def toggle_elements(self) -> None:
        """Show or hide the element boxes recorded with the frames (key E)."""
        self.canvas.set_show_elements(not self.canvas.show_elements)

    def _label(self, index: int) -> str | None:
        labels = (self.verdict or {}).get("step_labels") or []
        return labels[index] if index < len(labels) else None

    def _show_verdict(self) -> None:
        verdict = self.verdict
        if verdict is None:
            self.verdict_label.setText("not judged (yet)" if self.trajectory and
                                       self.trajectory.folder.parent.name == "trajectories" else
                                       "a demonstration: no verdict")
            self.evidence.setRowCount(0)
            return
        success = verdict.get("success")
        colour = "#2a2" if success else "#d33"
        self.verdict_label.setText(
            f"<b style='color:{colour}'>{'SUCCESS' if success else 'FAILURE'}</b> · score "
            f"{float(verdict.get('score', 0)):.2f} · judge {verdict.get('judge_id', '?')}"
            + (f" · first error at step {verdict['first_error_step']}"
               if verdict.get("first_error_step") is not None else "")
            + self._disagreement_text())
        evidence = verdict.get("evidence") or []
        self.evidence.setRowCount(len(evidence))
        for row, item in enumerate(evidence):
            observed = item.get("observed")
            detail = json.dumps(observed, default=str) if observed is not None else ""
            if item.get("message"):
                detail = f"{detail}  {item['message']}".strip()
            cells = [str(item.get("check", "")), "yes" if item.get("passed") else "no",
                     f"{float(item.get('score', 0)):.2f}", detail]
            for column, text in enumerate(cells):
                cell = QTableWidgetItem(text)
                if column == 1:
                    cell.setForeground(QBrush(QColor(40, 170, 70) if item.get("passed") else QColor(220, 60, 60)))
                self.evidence.setItem(row, column, cell)
        self.evidence.resizeColumnsToContents()


    def _disagreement_text(self) -> str:
        """The hybrid judge's disagreement on this trajectory, if any: both outcomes and why."""
        record = self.run.disagreement_for(self.trajectory.id) if self.run and self.trajectory else None
        if not record:
            return ""
        checks, vlm = record.get("checks") or {}, record.get("vlm") or {}
        answer = vlm.get("answer") or {}

        def said(side: dict[str, Any]) -> str:
            return "success" if side.get("success") else "failure"

        return (f"<br><b style='color:#c80'>judges disagree</b>: the checks say {said(checks)}, the VLM "
                f"judge says {said(vlm)}" + (f" ({answer.get('error_type')}; {answer.get('rationale')})"
                                             if answer.get("rationale") else ""))


def _titled(title: str, widget: QWidget) -> QWidget:
    box = QWidget()
    layout = QVBoxLayout(box)
    layout.setContentsMargins(0, 0, 0, 0)
    layout.addWidget(QLabel(f"<b>{title}</b>"))
    layout.addWidget(widget)
    return box
