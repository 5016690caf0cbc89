"""The panel's main window: six tabs over one attached run, menus with shortcuts, theme, and
a layout remembered between launches (QSettings)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from PyQt6.QtCore import QSettings, QTimer
from PyQt6.QtGui import QAction, QActionGroup, QCloseEvent, QGuiApplication, QKeySequence
from PyQt6.QtWidgets import QApplication, QMainWindow, QTabWidget, QWidget

from deskdojo.core.errors import DeskdojoError
from deskdojo.gui import adapters
from deskdojo.gui.curriculum_view import CurriculumView
from deskdojo.gui.curves_view import CurvesView
from deskdojo.gui.data import RunReader
from deskdojo.gui.live import LiveSource, LiveView
from deskdojo.gui.replay_view import ReplayView
from deskdojo.gui.run_view import RunView, doctor_summary
from deskdojo.gui.theme import THEMES, apply_theme
from deskdojo.gui.trajectory_view import TrajectoryBrowser
from deskdojo.gui.widgets import code
from deskdojo.gui.workers import Tasks

SETTINGS_ENV = "DESKDOJO_PANEL_SETTINGS"
STATUS_POLL_MS = 500
DATA_POLL_MS = 1500
TAB_NAMES = ("Live", "Run", "Curriculum", "Trajectories", "Curves", "Replay")


def panel_settings(path: str | os.PathLike[str] | None = None) -> QSettings:
    """Where the panel remembers its layout: ``path`` or $DESKDOJO_PANEL_SETTINGS (an INI
    file, as tests use), else the user's settings store."""
    path = path or os.environ.get(SETTINGS_ENV)
    if path:
        return QSettings(str(path), QSettings.Format.IniFormat)
    return QSettings("deskdojo", "panel")


class MainWindow(QMainWindow):
    def __init__(self, *, run_dir: str | os.PathLike[str] | None = None, runs_root: str | os.PathLike[str] = "runs",
                 settings: QSettings | None = None, check_environment: bool = True, fps: int = 10):
        super().__init__()
        self.settings = settings or panel_settings()
        self.run: RunReader | None = None
        self.status: dict[str, Any] | None = None
        self.theme = str(self.settings.value("theme", "system"))
        self.setWindowTitle("deskdojo panel")
        self.background = Tasks(self, threads=1)

        self.tabs = QTabWidget()
        self.live = LiveView(fps=fps, tasks_provider=self._task_rows, demos_dir=self._demos_dir)
        self.run_view = RunView(runs_root=Path(runs_root))
        self.curriculum = CurriculumView()
        self.trajectories = TrajectoryBrowser()
        self.curves = CurvesView()
        self.replay = ReplayView()
        for widget, name in zip(self.views(), TAB_NAMES):
            self.tabs.addTab(widget, name)
        self.setCentralWidget(self.tabs)
        self.tabs.currentChanged.connect(lambda _i: self.refresh_data())
        self.live.status_message.connect(self.show_message)
        self.live.demo_saved.connect(lambda _path: self.refresh_data(all_views=True))
        self.run_view.status_message.connect(self.show_message)
        self.run_view.attach_requested.connect(self.attach)
        self._build_menus()
        self.apply_theme(self.theme)
        hints = QGuiApplication.styleHints()
        if hints is not None:
            hints.colorSchemeChanged.connect(lambda _scheme: self.theme == "system" and self.apply_theme("system"))

        self.status_timer = QTimer(self)
        self.status_timer.timeout.connect(self.poll_status)
        self.status_timer.start(STATUS_POLL_MS)
        self.data_timer = QTimer(self)
        self.data_timer.timeout.connect(self.refresh_data)
        self.data_timer.start(DATA_POLL_MS)
        self.resize(1400, 900)
        self.restore_layout()
        if run_dir is not None:
            self.attach(str(run_dir))
        elif self.settings.value("last_run"):
            last = Path(str(self.settings.value("last_run")))
            if (last / "config.json").exists():
                self.attach(str(last))
        if check_environment:
            self.background.submit(doctor_summary, self._doctor_done, lambda message: None)
        self.statusBar().showMessage("Ready. Ctrl+O attaches a run; Ctrl+N starts one.")

    def views(self) -> list[QWidget]:
        return [self.live, self.run_view, self.curriculum, self.trajectories, self.curves, self.replay]

    # --- menus and shortcuts -------------------------------------------------------

    def _action(self, menu: Any, text: str, shortcut: str | None, slot: Any) -> QAction:
        action = QAction(text, self)
        if shortcut:
            action.setShortcut(QKeySequence(shortcut))
        action.triggered.connect(slot)
        menu.addAction(action)
        return action

    def _build_menus(self) -> None:
        bar = self.menuBar()
        file_menu = bar.addMenu("&File")
        self._action(file_menu, "Attach run…", "Ctrl+O", self.run_view.choose_run)
        self._action(file_menu, "Start run", "Ctrl+N", self._start_run_from_menu)
        self._action(file_menu, "New sandbox", "Ctrl+Shift+N", lambda: self.live.start_panel_sandbox())
        file_menu.addSeparator()
        self._action(file_menu, "Quit", "Ctrl+Q", self.close)
        run_menu = bar.addMenu("&Run")
        self._action(run_menu, "Pause", "Ctrl+P", lambda: self.run_view.send("pause"))
        self._action(run_menu, "Resume", "Ctrl+R", lambda: self.run_view.send("resume"))
        self._action(run_menu, "Stop", "Ctrl+.", lambda: self.run_view.send("stop"))
        self._action(run_menu, "Replay selected recording", "Ctrl+Shift+R", self._replay_from_menu)
        view_menu = bar.addMenu("&View")
        for number, name in enumerate(TAB_NAMES):
            self._action(view_menu, name, f"Ctrl+{number + 1}", lambda _c=False, n=number: self.tabs.setCurrentIndex(n))
        self._action(view_menu, "Refresh", "F5", lambda: self.refresh_data(all_views=True))
        theme_menu = view_menu.addMenu("Theme")
        group = QActionGroup(self)
        self.theme_actions: dict[str, QAction] = {}
        for theme in THEMES:
            action = QAction(theme.capitalize(), self, checkable=True)
            action.triggered.connect(lambda _c=False, t=theme: self.apply_theme(t))
            group.addAction(action)
            theme_menu.addAction(action)
            self.theme_actions[theme] = action

    def _start_run_from_menu(self) -> None:
        self.tabs.setCurrentWidget(self.run_view)
        self.run_view.start_run()

    def _replay_from_menu(self) -> None:
        self.tabs.setCurrentWidget(self.replay)
        self.replay.start_replay()

    def apply_theme(self, theme: str) -> None:
        self.theme = theme if theme in THEMES else "system"
        app = QApplication.instance()
        if app is not None:
            self.dark = apply_theme(app, self.theme)
        self.theme_actions[self.theme].setChecked(True)
        self.curves.setPalette(QApplication.palette())
        self.curves.apply_palette()

    def show_message(self, text: str) -> None:
        self.statusBar().showMessage(text, 10000)

    # --- the run -------------------------------------------------------------------

    def attach(self, path: str) -> bool:
        try:
            run = RunReader(path)
        except DeskdojoError as exc:
            self.show_message(str(exc))
            return False
        self.run = run
        self.settings.setValue("last_run", str(run.path.resolve()))
        self.setWindowTitle(f"deskdojo panel — {run.name}")
        self.run_view.set_run_dir(run.path)
        for view in (self.curriculum, self.trajectories, self.curves, self.replay):
            view.set_run(run)
        self.poll_status()
        self.show_message(f"attached {run.path}")
        return True

    def _task_rows(self) -> list[dict[str, Any]]:
        return self.run.task_records() if self.run is not None else []

    def _demos_dir(self) -> Path | None:
        return self.run.path / "demos" if self.run is not None else None

    def poll_status(self) -> None:
        """Read status.json (a small file) and feed the live grid and the run controls."""
        status = adapters.read_status(self.run.path) if self.run is not None else None
        self.status = status
        self.run_view.update_status(status)
        entries = (status or {}).get("sandboxes") or []
        live = status is not None and adapters.status_is_live(status)
        self.live.set_run_sources([LiveSource.from_status(e) for e in entries if isinstance(e, dict)]
                                  if live else [])

    def refresh_data(self, all_views: bool = False) -> None:
        """Refresh the visible tab (or every tab): each reads only what is new on disk."""
        current = self.tabs.currentWidget()
        for view in (self.curriculum, self.trajectories, self.curves, self.replay):
            if all_views or view is current:
                view.refresh()
        if all_views or current is self.run_view:
            self.run_view.refresh_runs()

    def _doctor_done(self, summary: dict[str, Any]) -> None:
        self.run_view.set_doctor(summary)
        if not summary.get("docker"):
            fix = summary.get("docker_fix") or "bash scripts/setup.sh"
            self.live.provider_box.setCurrentText("xvfb")
            self.replay.provider_box.setCurrentText("xvfb")
            self.live.empty.set_text(
                "No sandboxes to show",
                "Attach a running run (Ctrl+O), start one on the Run tab (Ctrl+N), or press <b>New sandbox</b>."
                f"<br><br>Docker sandboxes are not available ({summary.get('docker_detail', '')}). Fix: "
                f"{code(fix)} (or {code('bash scripts/setup.sh')}); until then the xvfb provider is used.")

    # --- layout memory ----------------------------------------------------------------

    def restore_layout(self) -> None:
        geometry = self.settings.value("geometry")
        if geometry is not None:
            self.restoreGeometry(geometry)
        state = self.settings.value("window_state")
        if state is not None:
            self.restoreState(state)
        tab = self.settings.value("tab")
        if tab is not None:
            self.tabs.setCurrentIndex(int(tab))

    def save_layout(self) -> None:
        self.settings.setValue("geometry", self.saveGeometry())
        self.settings.setValue("window_state", self.saveState())
        self.settings.setValue("tab", self.tabs.currentIndex())
        self.settings.setValue("theme", self.theme)
        self.settings.sync()

    def closeEvent(self, event: QCloseEvent) -> None:  # noqa: N802 (Qt's name)
        self.save_layout()
        self.status_timer.stop()
        self.data_timer.stop()
        self.live.shutdown()
        self.replay.shutdown()
        self.run_view.shutdown()
        self.background.wait(10000)
        super().closeEvent(event)

