"""A widget that shows a sandbox's screen with an action drawn on it, and, when a person
takes over, turns mouse and keyboard input on it into core Actions in screen pixels."""

from __future__ import annotations

from PyQt6.QtCore import QEvent, QPointF, QRectF, Qt, pyqtSignal
from PyQt6.QtGui import QColor, QImage, QKeyEvent, QMouseEvent, QPainter, QPalette, QPen, QWheelEvent
from PyQt6.QtWidgets import QSizePolicy, QWidget

from deskdojo.core.actions import Action, Click, Drag, Key, Scroll, Type
from deskdojo.core.elements import ElementList
from deskdojo.gui.overlay import draw_action, draw_elements, fit_rect

DRAG_THRESHOLD_PX = 6  # in screen pixels: below this a press-release is a click

_NAMED_KEYS = {
    Qt.Key.Key_Return: "enter", Qt.Key.Key_Enter: "enter", Qt.Key.Key_Tab: "tab",
    Qt.Key.Key_Backtab: "tab", Qt.Key.Key_Backspace: "backspace", Qt.Key.Key_Delete: "delete",
    Qt.Key.Key_Insert: "insert", Qt.Key.Key_Escape: "escape", Qt.Key.Key_Home: "home",
    Qt.Key.Key_End: "end", Qt.Key.Key_PageUp: "pageup", Qt.Key.Key_PageDown: "pagedown",
    Qt.Key.Key_Up: "up", Qt.Key.Key_Down: "down", Qt.Key.Key_Left: "left", Qt.Key.Key_Right: "right",
    Qt.Key.Key_Space: "space", Qt.Key.Key_Menu: "menu", Qt.Key.Key_Print: "printscreen",
    **{getattr(Qt.Key, f"Key_F{i}"): f"f{i}" for i in range(1, 25)},
}
_MODIFIER_KEYS = {Qt.Key.Key_Control, Qt.Key.Key_Shift, Qt.Key.Key_Alt, Qt.Key.Key_Meta,
                  Qt.Key.Key_AltGr, Qt.Key.Key_CapsLock, Qt.Key.Key_Super_L, Qt.Key.Key_Super_R}


def key_event_action(key: int, modifiers: Qt.KeyboardModifier, text: str) -> Action | None:
    """The Action for one key press: printable text types, anything else is a key chord."""
    key = Qt.Key(key)
    if key in _MODIFIER_KEYS:
        return None
    chord: list[str] = []
    if modifiers & Qt.KeyboardModifier.ControlModifier:
        chord.append("ctrl")
    if modifiers & Qt.KeyboardModifier.AltModifier:
        chord.append("alt")
    if modifiers & Qt.KeyboardModifier.MetaModifier:
        chord.append("super")
    named = _NAMED_KEYS.get(key)
    if named is None and not chord and text and text.isprintable():
        return Type(text)
    if named is not None:
        if modifiers & Qt.KeyboardModifier.ShiftModifier or key == Qt.Key.Key_Backtab:
            chord.append("shift")
        return Key(tuple(chord + [named]))
    if Qt.Key.Key_A <= key <= Qt.Key.Key_Z:
        name = chr(ord("a") + key - Qt.Key.Key_A)
    elif Qt.Key.Key_0 <= key <= Qt.Key.Key_9:
        name = chr(ord("0") + key - Qt.Key.Key_0)
    elif text and len(text) == 1 and text.isprintable():
        name = text.lower()
    else:
        return None
    if modifiers & Qt.KeyboardModifier.ShiftModifier:
        chord.append("shift")
    return Key(tuple(chord + [name]))


class ScreenCanvas(QWidget):
    """Draws the latest frame scaled to fit, the last action on top, and a caption.

    With ``capture`` on, presses/drags/wheel/keys become ``action(Action)`` signals
    (pointer positions mapped to screen pixels); nothing is sent anywhere from here.
    """

    action = pyqtSignal(object)
    clicked = pyqtSignal()

    def __init__(self, parent: QWidget | None = None, *, placeholder: str = "waiting for the first frame…"):
        super().__init__(parent)
        self.image: QImage | None = None
        self.screen_size: tuple[int, int] = (0, 0)
        self.last_action: Action | None = None
        self.placeholder = placeholder
        self.header = ""
        self.footer = ""
        self.capture = False
        self.highlight: QColor | None = None
        self.elements: ElementList | None = None  # drawn while ``show_elements`` is on
        self.show_elements = False
        self._press: tuple[int, int, str] | None = None
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Expanding)
        self.setMinimumSize(160, 120)

    # --- content ---------------------------------------------------------------

    def set_frame(self, image: QImage, screen_w: int, screen_h: int) -> None:
        self.image = image
        self.screen_size = (screen_w, screen_h)
        self.update()

    def set_action(self, action: Action | None) -> None:
        self.last_action = action
        self.update()

    def set_elements(self, listing: ElementList | None) -> None:
        self.elements = listing
        self.update()

    def set_show_elements(self, on: bool) -> None:
        self.show_elements = on
        self.update()

    def set_capture(self, on: bool) -> None:
        self.capture = on
        self.setFocusPolicy(Qt.FocusPolicy.StrongFocus if on else Qt.FocusPolicy.NoFocus)
        self.setCursor(Qt.CursorShape.CrossCursor if on else Qt.CursorShape.ArrowCursor)
        if on:
            self.setFocus()
        self.update()

    def screen_rect(self) -> QRectF:
        """Where the screen is drawn inside this widget."""
        w, h = self.screen_size if self.screen_size[0] else (
            (self.image.width(), self.image.height()) if self.image is not None else (4, 3))
        top = 22 if self.header else 0
        bottom = 20 if self.footer else 0
        return fit_rect(w, h, QRectF(0, top, self.width(), self.height() - top - bottom))

    def to_screen(self, pos: QPointF) -> tuple[int, int] | None:
        """A widget position as screen pixels, or None outside the picture."""
        rect = self.screen_rect()
        if not rect.contains(pos) or not self.screen_size[0]:
            return None
        w, h = self.screen_size
        x = int((pos.x() - rect.x()) / rect.width() * w)
        y = int((pos.y() - rect.y()) / rect.height() * h)
        return min(max(x, 0), w - 1), min(max(y, 0), h - 1)

    # --- painting --------------------------------------------------------------

    def paintEvent(self, event) -> None:  # noqa: N802 (Qt's name)
        painter = QPainter(self)
        palette = self.palette()
        painter.fillRect(self.rect(), palette.color(QPalette.ColorRole.Base))
        rect = self.screen_rect()
        if self.image is not None:
            painter.setRenderHint(QPainter.RenderHint.SmoothPixmapTransform,
                                  self.image.width() < rect.width())
            painter.drawImage(rect, self.image)
            if self.show_elements:
                draw_elements(painter, self.elements, rect, self.screen_size)
            if self.screen_size[0]:
                draw_action(painter, self.last_action, rect, self.screen_size)
        else:
            painter.setPen(palette.color(QPalette.ColorRole.PlaceholderText))
            painter.drawText(rect, Qt.AlignmentFlag.AlignCenter | Qt.TextFlag.TextWordWrap, self.placeholder)
        painter.setPen(palette.color(QPalette.ColorRole.Text))
        if self.header:
            painter.drawText(QRectF(4, 0, self.width() - 8, 20),
                             Qt.AlignmentFlag.AlignVCenter | Qt.AlignmentFlag.AlignLeft,
                             painter.fontMetrics().elidedText(self.header, Qt.TextElideMode.ElideRight,
                                                              self.width() - 8))
        if self.footer:
            painter.drawText(QRectF(4, self.height() - 20, self.width() - 8, 20),
                             Qt.AlignmentFlag.AlignVCenter | Qt.AlignmentFlag.AlignLeft,
                             painter.fontMetrics().elidedText(self.footer, Qt.TextElideMode.ElideRight,
                                                              self.width() - 8))
        border = self.highlight or (QColor(255, 64, 160) if self.capture else None)
        if border is not None:
            painter.setPen(QPen(border, 3))
            painter.setBrush(Qt.BrushStyle.NoBrush)
            painter.drawRect(rect.adjusted(1, 1, -1, -1))
        painter.end()

    # --- input -----------------------------------------------------------------

    def event(self, event: QEvent) -> bool:
        # While a person drives the sandbox, its keys go to the sandbox, not to shortcuts.
        if self.capture and event.type() == QEvent.Type.ShortcutOverride:
            event.accept()
            return True
        if self.capture and event.type() == QEvent.Type.KeyPress:
            self.keyPressEvent(event)  # Tab too: it must reach the sandbox, not move focus
            return True
        return super().event(event)

    @staticmethod
    def _button(event: QMouseEvent) -> str:
        return {Qt.MouseButton.RightButton: "right", Qt.MouseButton.MiddleButton: "middle"}.get(
            event.button(), "left")

    def mousePressEvent(self, event: QMouseEvent) -> None:  # noqa: N802
        if not self.capture:
            if event.button() == Qt.MouseButton.LeftButton:
                self.clicked.emit()
            return
        self.setFocus()
        point = self.to_screen(event.position())
        self._press = (*point, self._button(event)) if point else None

    def mouseDoubleClickEvent(self, event: QMouseEvent) -> None:  # noqa: N802
        self.mousePressEvent(event)  # the second press of a double click is one more click

    def mouseReleaseEvent(self, event: QMouseEvent) -> None:  # noqa: N802
        if not self.capture or self._press is None:
            return
        x, y, button = self._press
        self._press = None
        end = self.to_screen(event.position())
        if end is not None and abs(end[0] - x) + abs(end[1] - y) >= DRAG_THRESHOLD_PX:
            self.action.emit(Drag(x, y, end[0], end[1], button=button))
        else:
            self.action.emit(Click(x, y, button=button))

    def wheelEvent(self, event: QWheelEvent) -> None:  # noqa: N802
        if not self.capture:
            return super().wheelEvent(event)
        point = self.to_screen(event.position())
        if point is None:
            return
        delta = event.angleDelta()
        dy = -round(delta.y() / 120) or (-1 if delta.y() > 0 else 1 if delta.y() < 0 else 0)
        dx = -round(delta.x() / 120) or (-1 if delta.x() > 0 else 1 if delta.x() < 0 else 0)
        if dx or dy:
            self.action.emit(Scroll(point[0], point[1], dx=dx, dy=dy))
        event.accept()

    def keyPressEvent(self, event: QKeyEvent) -> None:  # noqa: N802
        if not self.capture:
            return super().keyPressEvent(event)
        action = key_event_action(event.key(), event.modifiers(), event.text())
        if action is not None:
            self.action.emit(action)
        event.accept()
