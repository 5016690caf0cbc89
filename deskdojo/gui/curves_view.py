"""Training curves from metrics.jsonl: held-out and training success, reward, grounding, loss, KL,
entropy, env steps/s, episodes lost to sandbox errors, and how the curriculum fed GRPO
(replayed groups, retired tasks, admission checks) per iteration. Polling reads only the bytes appended since the
last poll, and curves are redrawn only when lines arrived."""

from __future__ import annotations

import pyqtgraph as pg
from PyQt6.QtGui import QPalette
from PyQt6.QtWidgets import QLabel, QVBoxLayout, QWidget

from deskdojo.gui.data import RunReader, metric_series
from deskdojo.gui.widgets import EmptyState, code

# (title, [(metric key, legend name, colour)])
PLOTS: tuple[tuple[str, tuple[tuple[str, str, str], ...]], ...] = (
    ("success rate", (("heldout_success", "held-out", "#e0407a"), ("train_success", "train", "#3a9ad9"))),
    ("reward and grounding (means)", (("reward_mean", "reward", "#e8a020"), ("grounding", "grounding", "#6a8a2a"))),
    ("loss", (("loss", "loss", "#8a5cd6"),)),
    ("KL to base", (("kl", "kl", "#30b070"),)),
    ("entropy", (("entropy", "entropy", "#d05a30"),)),
    ("env steps / s", (("env_steps_per_s", "env steps/s", "#2aa8b8"), ("tokens_per_s", "tokens/s ÷ 100", "#999999"))),
    ("episodes in error (sandbox)", (("errors", "errors", "#c03030"),)),
    ("replay, retirement, admission (per iteration)", (
        ("replayed", "replayed groups", "#e0407a"), ("retired", "retired tasks", "#30b070"),
        ("admitted", "admitted", "#3a9ad9"), ("rejected", "rejected", "#d05a30"))),
)
SCALED = {"tokens_per_s": 0.01}


class CurvesView(QWidget):
    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.run: RunReader | None = None
        layout = QVBoxLayout(self)
        self.empty = EmptyState()
        self.summary = QLabel("")
        self.graphs = pg.GraphicsLayoutWidget()
        self.curves: dict[str, pg.PlotDataItem] = {}
        self.plots: list[pg.PlotItem] = []
        for number, (title, series) in enumerate(PLOTS):
            plot = self.graphs.addPlot(row=number // 3, col=number % 3, title=title)
            plot.showGrid(x=True, y=True, alpha=0.25)
            plot.setLabel("bottom", "iteration")
            if len(series) > 1:
                plot.addLegend(offset=(5, 5))
            for key, name, colour in series:
                self.curves[key] = plot.plot([], [], name=name, pen=pg.mkPen(colour, width=2),
                                             symbol="o", symbolSize=4, symbolBrush=colour, symbolPen=None)
            if title == "success rate":
                plot.setYRange(0, 1)
            self.plots.append(plot)
        layout.addWidget(self.empty)
        layout.addWidget(self.summary)
        layout.addWidget(self.graphs, 1)
        self.apply_palette()
        self.set_run(None)

    def apply_palette(self) -> None:
        """Plot background and axes follow the window's (light or dark) palette."""
        palette = self.palette()
        self.graphs.setBackground(palette.color(QPalette.ColorRole.Base))
        text = palette.color(QPalette.ColorRole.Text)
        for plot in self.plots:
            for side in ("left", "bottom"):
                axis = plot.getAxis(side)
                axis.setPen(text)
                axis.setTextPen(text)
            plot.setTitle(plot.titleLabel.text, color=text.name())

    def set_run(self, run: RunReader | None) -> None:
        self.run = run
        if run is not None:
            run.metrics.offset, run.metrics.records = 0, []
        self._drawn = -1
        self.refresh()

    def refresh(self) -> None:
        run = self.run
        if run is None:
            self._empty("No run attached", "Attach a run folder (Ctrl+O), or start one: " + code(
                "deskdojo evolve --run-dir runs/first --model tiny --provider xvfb --sandboxes 2 --iterations 10"))
            return
        run.metrics.poll()
        lines = run.metrics.records
        if not lines:
            self._empty("No metrics yet", f"{run.path / 'metrics.jsonl'} is empty; the run writes one line "
                        "per iteration.")
            return
        self.empty.hide()
        self.graphs.show()
        self.summary.show()
        if len(lines) == self._drawn:
            return
        self._drawn = len(lines)
        for key, curve in self.curves.items():
            xs, ys = metric_series(lines, key)
            factor = SCALED.get(key, 1.0)
            curve.setData(xs, [y * factor for y in ys])
        last = lines[-1]
        parts = [f"iteration {last.get('iteration', len(lines) - 1)}"]
        for key, name in (("train_success", "train"), ("heldout_success", "held-out"),
                          ("env_steps", "env steps"), ("wall_s", "wall s")):
            value = last.get(key)
            if isinstance(value, (int, float)):
                parts.append(f"{name} {value:.2f}" if isinstance(value, float) else f"{name} {value}")
        errors = sum(metric_series(lines, "errors")[1])
        if errors:  # never scored, so only this says how many episodes the sandboxes cost
            parts.append(f"sandbox errors {errors:.0f} (last iteration {last.get('errors') or 0})")
        split = last.get("time_split")
        if isinstance(split, dict) and split:
            parts.append("time: " + ", ".join(f"{k} {float(v):.1f}s" for k, v in split.items()
                                              if isinstance(v, (int, float))))
        self.summary.setText(" · ".join(parts))

    def series(self, key: str) -> tuple[list[float], list[float]]:
        """What a curve shows now (for tests and the screenshot check)."""
        xs, ys = self.curves[key].getData()
        return ([] if xs is None else list(xs)), ([] if ys is None else list(ys))

    def _empty(self, title: str, body: str) -> None:
        self.graphs.hide()
        self.summary.hide()
        self.empty.set_text(title, body)
        self.empty.show()
