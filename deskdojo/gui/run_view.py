"""Run control: start a training run from a small form, attach to a run folder, and pause,
resume or stop it through its control file. Nothing here blocks the UI thread: the run
is a child process (QProcess), status.json is a small file read on a timer, and the
doctor's checks (which may wait on docker) run on a worker."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from PyQt6.QtCore import QProcess, Qt, pyqtSignal
from PyQt6.QtWidgets import (
    QComboBox, QFileDialog, QFormLayout, QGroupBox, QHBoxLayout, QLabel, QLineEdit, QListWidget,
    QListWidgetItem, QPlainTextEdit, QPushButton, QSpinBox, QVBoxLayout, QWidget,
)

from deskdojo.core.errors import DeskdojoError
from deskdojo.gui import adapters
from deskdojo.gui.data import list_runs
from deskdojo.gui.widgets import code

LOG_LINES = 2000


def doctor_summary() -> dict[str, Any]:
    """The doctor's sandbox-related checks: which providers can run here, and the fixes."""
    from deskdojo.doctor import check_binary, check_engine, check_image

    engine = check_engine()
    image = check_image(engine.ok)
    xvfb = check_binary("Xvfb", "xvfb")
    return {"docker": engine.ok and image.ok, "xvfb": xvfb.ok,
            "docker_fix": (engine.fix if not engine.ok else image.fix) or "",
            "docker_detail": engine.detail if not engine.ok else image.detail,
            "xvfb_fix": xvfb.fix}


class RunView(QWidget):
    """``attach_requested(path)`` asks the window to attach a run folder."""

    attach_requested = pyqtSignal(str)
    status_message = pyqtSignal(str)

    def __init__(self, parent: QWidget | None = None, *, runs_root: Path = Path("runs")):
        super().__init__(parent)
        self.runs_root = Path(runs_root)
        self.run_dir: Path | None = None
        self.process: QProcess | None = None
        self.doctor: dict[str, Any] | None = None
        layout = QHBoxLayout(self)
        left = QVBoxLayout()

        start_box = QGroupBox("Start a run")
        form = QFormLayout(start_box)
        self.model_edit = QLineEdit("tiny")
        self.model_edit.setToolTip("a model path or name; `tiny` works offline")
        self.provider_box = QComboBox()
        self.provider_box.addItems(["xvfb", "docker"])
        self.sandboxes_spin = QSpinBox()
        self.sandboxes_spin.setRange(1, 64)
        self.sandboxes_spin.setValue(2)
        self.iterations_spin = QSpinBox()
        self.iterations_spin.setRange(1, 1_000_000)
        self.iterations_spin.setValue(10)
        self.iterations_spin.setToolTip("the budget: how many iterations to run")
        self.run_dir_edit = QLineEdit()
        self.run_dir_edit.setPlaceholderText(f"{self.runs_root}/run-<time> (default)")
        form.addRow("Model", self.model_edit)
        form.addRow("Provider", self.provider_box)
        form.addRow("Sandboxes", self.sandboxes_spin)
        form.addRow("Iterations (budget)", self.iterations_spin)
        form.addRow("Run folder", self.run_dir_edit)
        self.start_button = QPushButton("Start run (Ctrl+N)")
        self.start_button.clicked.connect(self.start_run)
        form.addRow(self.start_button)
        self.provider_hint = QLabel("")
        self.provider_hint.setWordWrap(True)
        self.provider_hint.setTextFormat(Qt.TextFormat.RichText)
        self.provider_hint.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        form.addRow(self.provider_hint)
        left.addWidget(start_box)

        control_box = QGroupBox("The attached run")
        control = QVBoxLayout(control_box)
        self.run_label = QLabel("No run attached.")
        self.run_label.setWordWrap(True)
        self.status_label = QLabel("")
        self.status_label.setWordWrap(True)
        buttons = QHBoxLayout()
        self.pause_button = QPushButton("Pause (Ctrl+P)")
        self.resume_button = QPushButton("Resume (Ctrl+R)")
        self.stop_button = QPushButton("Stop (Ctrl+.)")
        self.pause_button.clicked.connect(lambda: self.send("pause"))
        self.resume_button.clicked.connect(lambda: self.send("resume"))
        self.stop_button.clicked.connect(lambda: self.send("stop"))
        for button in (self.pause_button, self.resume_button, self.stop_button):
            buttons.addWidget(button)
        attach = QPushButton("Attach run folder… (Ctrl+O)")
        attach.clicked.connect(self.choose_run)
        control.addWidget(self.run_label)
        control.addWidget(self.status_label)
        control.addLayout(buttons)
        control.addWidget(attach)
        left.addWidget(control_box)

        runs_box = QGroupBox(f"Runs in {self.runs_root}")
        self.runs_box = runs_box
        runs_layout = QVBoxLayout(runs_box)
        self.runs_list = QListWidget()
        self.runs_list.itemActivated.connect(lambda item: self.attach_requested.emit(item.data(Qt.ItemDataRole.UserRole)))
        self.runs_empty = QLabel("")
        self.runs_empty.setWordWrap(True)
        self.runs_empty.setTextFormat(Qt.TextFormat.RichText)
        self.runs_empty.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        runs_layout.addWidget(self.runs_list)
        runs_layout.addWidget(self.runs_empty)
        left.addWidget(runs_box, 1)
        layout.addLayout(left, 2)

        log_box = QGroupBox("Output of the run started here")
        log_layout = QVBoxLayout(log_box)
        self.log = QPlainTextEdit()
        self.log.setReadOnly(True)
        self.log.setMaximumBlockCount(LOG_LINES)
        log_layout.addWidget(self.log)
        layout.addWidget(log_box, 3)
        self.refresh_runs()
        self.update_status(None)

    # --- environment --------------------------------------------------------------

    def set_doctor(self, summary: dict[str, Any]) -> None:
        self.doctor = summary
        hints = []
        if not summary.get("docker"):
            hints.append(f"Docker sandboxes are not available here ({summary.get('docker_detail', '')}). "
                         f"Fix: {code(summary.get('docker_fix') or 'bash scripts/setup.sh')} "
                         f"— or use the xvfb provider.")
            if self.provider_box.currentText() == "docker":
                self.provider_box.setCurrentText("xvfb")
        if not summary.get("xvfb"):
            hints.append(f"Xvfb is missing. Fix: {code(summary.get('xvfb_fix') or 'apt-get install -y xvfb')}")
        self.provider_hint.setText("<br>".join(hints) if hints else "docker and xvfb sandboxes are both available")

    def refresh_runs(self) -> None:
        runs = list_runs(self.runs_root)
        names = [str(p) for p in runs]
        current = [self.runs_list.item(i).data(Qt.ItemDataRole.UserRole) for i in range(self.runs_list.count())]
        if names != current:
            self.runs_list.clear()
            for path in runs:
                status = adapters.read_status(path)
                state = (status or {}).get("state", "no status")
                if status and state not in ("finished", "failed") and not adapters.status_is_live(status):
                    state = f"{state}, process gone"
                item = QListWidgetItem(f"{path.name}   [{state}]")
                item.setData(Qt.ItemDataRole.UserRole, str(path))
                self.runs_list.addItem(item)
        self.runs_list.setVisible(bool(runs))
        self.runs_empty.setVisible(not runs)
        self.runs_empty.setText(
            f"No runs in {self.runs_root} yet. Start one with the form above, or from a terminal: "
            + code(f"deskdojo evolve --run-dir {self.runs_root}/first --model tiny --provider xvfb "
                   "--sandboxes 2 --iterations 10") + " — then double-click it here.")

    # --- the attached run -----------------------------------------------------------

    def set_run_dir(self, path: Path | None) -> None:
        self.run_dir = path
        self.run_label.setText(f"<b>{path}</b>" if path else "No run attached.")

    def update_status(self, status: dict[str, Any] | None) -> None:
        attached = self.run_dir is not None
        if not attached:
            self.status_label.setText("Attach a run folder or start a run to control it.")
        elif status is None:
            self.status_label.setText("The run has written no status.json yet (starting, or an older run).")
        else:
            live = adapters.status_is_live(status)
            state = status.get("state", "?")
            age = time.time() - float(status.get("updated", time.time()))
            self.status_label.setText(
                f"state <b>{state}</b>{'' if live or state in ('finished', 'failed') else ' (process gone)'}"
                f" · pid {status.get('pid', '?')} · iteration {status.get('iteration', 0)}"
                f" · env steps {status.get('env_steps', 0)} · {len(status.get('sandboxes') or [])} sandboxes"
                f" · updated {age:.0f} s ago")
        state = (status or {}).get("state")
        running = attached and state in ("starting", "running", "paused")
        self.pause_button.setEnabled(running and state != "paused")
        self.resume_button.setEnabled(running and state == "paused")
        self.stop_button.setEnabled(running or self.process is not None)

    def send(self, command: str) -> None:
        if self.run_dir is None:
            self.status_message.emit("attach a run first")
            return
        try:
            seq = adapters.send_control(self.run_dir, command)
        except DeskdojoError as exc:
            self.status_message.emit(str(exc))
            return
        self.status_message.emit(f"sent {command} (#{seq}) to {self.run_dir.name}")

    def choose_run(self) -> None:
        path = QFileDialog.getExistingDirectory(self, "Attach a run folder", str(self.runs_root))
        if path:
            self.attach_requested.emit(path)

    # --- starting a run -------------------------------------------------------------

    def start_argv(self) -> tuple[Path, list[str]]:
        run_dir = Path(self.run_dir_edit.text().strip() or self.runs_root / f"run-{time.strftime('%Y%m%d-%H%M%S')}")
        return run_dir, adapters.evolve_argv(run_dir=str(run_dir), model=self.model_edit.text().strip() or "tiny",
                                             provider=self.provider_box.currentText(),
                                             sandboxes=self.sandboxes_spin.value(),
                                             iterations=self.iterations_spin.value())

    def start_run(self) -> None:
        if self.process is not None and self.process.state() != QProcess.ProcessState.NotRunning:
            self.status_message.emit("a run started here is still going; stop it first")
            return
        run_dir, argv = self.start_argv()
        run_dir.mkdir(parents=True, exist_ok=True)  # so the panel can attach before the run writes
        process = QProcess(self)
        process.setProcessChannelMode(QProcess.ProcessChannelMode.MergedChannels)
        process.readyReadStandardOutput.connect(lambda: self._read_output(process))
        process.finished.connect(lambda code_, _status: self._finished(process, code_))
        process.errorOccurred.connect(lambda error: self.log.appendPlainText(f"[panel] could not run: {error}"))
        self.log.appendPlainText("$ " + " ".join(argv))
        process.start(argv[0], argv[1:])
        self.process = process
        self.attach_requested.emit(str(run_dir))
        self.status_message.emit(f"started a run in {run_dir}")

    def _read_output(self, process: QProcess) -> None:
        text = bytes(process.readAllStandardOutput()).decode("utf-8", "replace")
        for line in text.rstrip("\n").split("\n"):
            self.log.appendPlainText(line)

    def _finished(self, process: QProcess, exit_code: int) -> None:
        self.log.appendPlainText(f"[panel] the run exited with code {exit_code}")
        if process is self.process:
            self.process = None
        self.refresh_runs()

    def shutdown(self, wait_ms: int = 10000) -> None:
        """Leave a run started here running only if it was asked to; otherwise stop it."""
        process = self.process
        if process is None or process.state() == QProcess.ProcessState.NotRunning:
            return
        if self.run_dir is not None:
            try:
                adapters.send_control(self.run_dir, "stop")
            except DeskdojoError:
                pass
        if not process.waitForFinished(wait_ms):
            process.terminate()
            if not process.waitForFinished(5000):
                process.kill()
                process.waitForFinished(2000)
