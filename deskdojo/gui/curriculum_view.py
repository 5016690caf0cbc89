"""The curriculum view: families x levels success heat map, the scheduler's current choices,
and the newest generated tasks with their provenance and admission result."""

from __future__ import annotations

import time
from typing import Any

from PyQt6.QtCore import Qt
from PyQt6.QtGui import QBrush, QColor
from PyQt6.QtWidgets import (
    QAbstractItemView, QHeaderView, QLabel, QListWidget, QSplitter, QTableWidget, QTableWidgetItem,
    QVBoxLayout, QWidget,
)

from deskdojo.gui.data import RunReader, curriculum_heatmap
from deskdojo.gui.widgets import EmptyState, code

NEWEST_TASKS = 200


def rate_colour(rate: float | None) -> QColor:
    """Red (0) through amber to green (1); grey when the cell has no attempts yet."""
    if rate is None:
        return QColor(128, 128, 128, 70)
    rate = min(1.0, max(0.0, float(rate)))
    hue = int(120 * rate)  # 0 red .. 120 green
    return QColor.fromHsv(hue, 200, 210)


class CurriculumView(QWidget):
    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.run: RunReader | None = None
        layout = QVBoxLayout(self)
        self.empty = EmptyState()
        self.content = QSplitter(Qt.Orientation.Vertical)
        top = QSplitter(Qt.Orientation.Horizontal)
        heat_box = QWidget()
        heat_layout = QVBoxLayout(heat_box)
        heat_layout.addWidget(QLabel("<b>Success rate by family and level</b> (◆ = the family's current level)"))
        self.heatmap = QTableWidget()
        self.heatmap.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        heat_layout.addWidget(self.heatmap)
        choice_box = QWidget()
        choice_layout = QVBoxLayout(choice_box)
        choice_layout.addWidget(QLabel("<b>Scheduler: current choices</b>"))
        self.choices = QListWidget()
        choice_layout.addWidget(self.choices)
        top.addWidget(heat_box)
        top.addWidget(choice_box)
        top.setStretchFactor(0, 3)
        top.setStretchFactor(1, 2)
        tasks_box = QWidget()
        tasks_layout = QVBoxLayout(tasks_box)
        self.tasks_title = QLabel("<b>Newest generated tasks</b>")
        tasks_layout.addWidget(self.tasks_title)
        self.tasks = QTableWidget(0, 8)
        self.tasks.setHorizontalHeaderLabels(["when", "task", "family", "level", "split", "provenance",
                                              "admitted", "instruction / reason"])
        self.tasks.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.tasks.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.tasks.horizontalHeader().setStretchLastSection(True)
        self.tasks.verticalHeader().setVisible(False)
        tasks_layout.addWidget(self.tasks)
        self.content.addWidget(top)
        self.content.addWidget(tasks_box)
        layout.addWidget(self.empty)
        layout.addWidget(self.content)
        self._shown_tasks = -1
        self.set_run(None)

    def set_run(self, run: RunReader | None) -> None:
        self.run = run
        self._shown_tasks = -1
        self.refresh()

    def refresh(self) -> None:
        run = self.run
        if run is None:
            self._empty("No run attached", "Attach a run folder (Ctrl+O) or start one: "
                        + code("deskdojo evolve --run-dir runs/first --model tiny --provider xvfb "
                               "--sandboxes 2 --iterations 10"))
            return
        run.metrics.poll()
        curriculum = run.curriculum()
        heat = curriculum_heatmap(curriculum, run.metrics.records)
        rows = run.task_records()
        if not heat.families and not rows:
            self._empty("No curriculum yet", f"{run.path} has no curriculum.json or tasks.jsonl yet; they "
                        "appear after the run's first iteration.")
            return
        self.empty.hide()
        self.content.show()
        self._fill_heatmap(heat)
        self._fill_choices(curriculum or {})
        if len(rows) != self._shown_tasks:
            self._fill_tasks(rows)

    def _empty(self, title: str, body: str) -> None:
        self.content.hide()
        self.empty.set_text(title, body)
        self.empty.show()

    def _fill_heatmap(self, heat: Any) -> None:
        table = self.heatmap
        table.setRowCount(len(heat.families))
        table.setColumnCount(len(heat.levels))
        table.setVerticalHeaderLabels(list(heat.families))
        table.setHorizontalHeaderLabels([f"level {lv}" for lv in heat.levels])
        for row, family in enumerate(heat.families):
            for column, level in enumerate(heat.levels):
                cell = heat.cells.get((family, level))
                current = heat.current_level.get(family) == level
                if cell is None:
                    text, tip, colour = ("◆" if current else ""), "no attempts", rate_colour(None)
                else:
                    rate = "—" if cell.rate is None else f"{cell.rate:.0%}"
                    counts = f" ({cell.successes}/{cell.attempts})" if cell.attempts else ""
                    text = ("◆ " if current else "") + rate
                    tip = f"{family} level {level}: {rate}{counts}"
                    colour = rate_colour(cell.rate)
                item = QTableWidgetItem(text)
                item.setTextAlignment(Qt.AlignmentFlag.AlignCenter)
                item.setBackground(QBrush(colour))
                item.setForeground(QBrush(QColor(10, 10, 10) if cell is not None and cell.rate is not None
                                          else self.palette().text().color()))
                item.setToolTip(tip)
                table.setItem(row, column, item)
        table.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeMode.Stretch)

    def _fill_choices(self, curriculum: dict[str, Any]) -> None:
        self.choices.clear()
        families = curriculum.get("families") or {}
        for family, info in sorted(families.items()):
            if isinstance(info, dict):
                value = info.get("value")
                value_text = f", learning value {value:.2f}" if isinstance(value, (int, float)) else ""
                self.choices.addItem(f"{family}: level {info.get('level', '?')}{value_text}")
        recent = curriculum.get("recent_choices") or []
        if recent:
            self.choices.addItem("— recent choices (newest first) —")
            for choice in list(reversed(recent))[:20]:
                if isinstance(choice, (list, tuple)) and len(choice) >= 2:
                    self.choices.addItem(f"  {choice[0]} @ level {choice[1]}")
        moves = curriculum.get("moves") or []
        if moves:
            self.choices.addItem("— level moves —")
            for move in list(reversed(moves))[:10]:
                self.choices.addItem(f"  {move}" if not isinstance(move, dict) else
                                     "  " + ", ".join(f"{k}={v}" for k, v in move.items()))
        retired = curriculum.get("retired") or []
        if retired:
            self.choices.addItem(f"— retired: {', '.join(map(str, retired))}")
        proposals = curriculum.get("proposals")
        if isinstance(proposals, dict):
            self.choices.addItem(f"— proposed tasks ({proposals.get('source')}): {proposals.get('tasks', 0)}, "
                                 f"{len(proposals.get('pool') or [])} in the pool —")
            for refill in list(reversed(proposals.get("refills") or []))[:10]:
                if isinstance(refill, dict):
                    why = (f"{refill.get('relation')} of {refill.get('reference')} ({refill.get('rate')})"
                           if refill.get("relation") else "first ask")
                    self.choices.addItem(f"  after iteration {refill.get('after_iteration')}: {why}: "
                                         f"{len(refill.get('entered') or [])} of {refill.get('proposed')} entered")

    def _fill_tasks(self, rows: list[dict[str, Any]]) -> None:
        self._shown_tasks = len(rows)
        newest = list(reversed(rows))[:NEWEST_TASKS]
        self.tasks_title.setText(f"<b>Newest generated tasks</b> ({len(rows)} proposed, "
                                 f"{sum(1 for r in rows if r.get('admitted'))} admitted)")
        self.tasks.setRowCount(len(newest))
        for row, record in enumerate(newest):
            task = record["task"]
            when = record.get("time")
            admitted = record.get("admitted")
            detail = task.get("instruction", "")
            if record.get("reason"):
                detail = f"{detail}  [{record['reason']}]"
            cells = [time.strftime("%H:%M:%S", time.localtime(when)) if isinstance(when, (int, float)) else "",
                     str(task.get("id", "")), str(task.get("family", "")), str(task.get("level", "")),
                     str(task.get("split", "")), str(task.get("provenance", "")),
                     "yes" if admitted else "no", detail]
            for column, text in enumerate(cells):
                item = QTableWidgetItem(text)
                if column == 6:
                    item.setForeground(QBrush(QColor(40, 170, 70) if admitted else QColor(220, 60, 60)))
                self.tasks.setItem(row, column, item)
        self.tasks.resizeColumnsToContents()
