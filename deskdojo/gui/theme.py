"""Light and dark palettes that follow the system's colour scheme unless the user picks one."""

from __future__ import annotations

from PyQt6.QtCore import Qt
from PyQt6.QtGui import QColor, QGuiApplication, QPalette
from PyQt6.QtWidgets import QApplication

THEMES = ("system", "light", "dark")


def system_is_dark() -> bool:
    hints = QGuiApplication.styleHints()
    scheme = hints.colorScheme() if hints is not None else Qt.ColorScheme.Unknown
    if scheme == Qt.ColorScheme.Dark:
        return True
    if scheme == Qt.ColorScheme.Light:
        return False
    window = QGuiApplication.palette().color(QPalette.ColorRole.Window)
    return window.lightness() < 128


def dark_palette() -> QPalette:
    palette = QPalette()
    colours = {
        QPalette.ColorRole.Window: QColor(37, 38, 42), QPalette.ColorRole.WindowText: QColor(225, 225, 230),
        QPalette.ColorRole.Base: QColor(26, 27, 30), QPalette.ColorRole.AlternateBase: QColor(44, 45, 50),
        QPalette.ColorRole.ToolTipBase: QColor(50, 50, 55), QPalette.ColorRole.ToolTipText: QColor(230, 230, 230),
        QPalette.ColorRole.Text: QColor(225, 225, 230), QPalette.ColorRole.Button: QColor(50, 51, 56),
        QPalette.ColorRole.ButtonText: QColor(225, 225, 230), QPalette.ColorRole.BrightText: QColor(255, 80, 80),
        QPalette.ColorRole.Link: QColor(90, 160, 255), QPalette.ColorRole.Highlight: QColor(70, 120, 210),
        QPalette.ColorRole.HighlightedText: QColor(255, 255, 255),
        QPalette.ColorRole.PlaceholderText: QColor(140, 140, 150),
    }
    for role, colour in colours.items():
        palette.setColor(role, colour)
    for role in (QPalette.ColorRole.Text, QPalette.ColorRole.ButtonText, QPalette.ColorRole.WindowText):
        palette.setColor(QPalette.ColorGroup.Disabled, role, QColor(120, 120, 125))
    return palette


def apply_theme(app: QApplication, theme: str) -> bool:
    """Apply ``theme`` (system | light | dark) to the app; returns whether it is dark."""
    if theme not in THEMES:
        theme = "system"
    app.setStyle("Fusion")
    dark = system_is_dark() if theme == "system" else theme == "dark"
    app.setPalette(dark_palette() if dark else app.style().standardPalette())
    return dark
