"""Drawing a core Action on top of a screen image: click marker, drag arrow, typed text, key chord.

One function for every view (live tiles, the trajectory browser, replay), derived from
the Action classes so a new action kind shows up everywhere or nowhere.
"""

from __future__ import annotations

import math

from PyQt6.QtCore import QPointF, QRectF, Qt
from PyQt6.QtGui import QColor, QFont, QImage, QPainter, QPen, QPolygonF

from deskdojo.core.actions import Action, Click, Done, Drag, Fail, Key, Move, Scroll, Type, Wait
from deskdojo.core.elements import ElementList

ACCENT = QColor(255, 64, 160)
ACCENT_2 = QColor(40, 220, 255)


def action_caption(action: Action) -> str:
    """The short text shown with an action (the key chord, the typed text, ...)."""
    if isinstance(action, Type):
        text = action.text if len(action.text) <= 40 else action.text[:37] + "..."
        return f"type “{text}”"
    if isinstance(action, Key):
        return "+".join(k.upper() if len(k) == 1 else k.capitalize() for k in action.keys)
    if isinstance(action, Click):
        extra = {1: "", 2: " ×2", 3: " ×3"}[action.count]
        return f"{action.button} click{extra}"
    if isinstance(action, Scroll):
        return f"scroll {'down' if action.dy > 0 else 'up' if action.dy < 0 else ''}{abs(action.dy) or ''}" + (
            f" {'right' if action.dx > 0 else 'left'}{abs(action.dx)}" if action.dx else "")
    if isinstance(action, Drag):
        return "drag"
    if isinstance(action, Move):
        return "move"
    if isinstance(action, Wait):
        return f"wait {action.seconds:g}s"
    if isinstance(action, Done):
        return "done" + (f": {action.answer}" if action.answer else "")
    if isinstance(action, Fail):
        return "fail" + (f": {action.reason}" if action.reason else "")
    return action.kind


def draw_action(painter: QPainter, action: Action | None, target: QRectF,
                screen_size: tuple[int, int]) -> None:
    """Draw ``action`` (screen pixels) onto ``target``, the rectangle where the screen is shown."""
    if action is None:
        return
    width, height = screen_size
    sx, sy = target.width() / max(1, width), target.height() / max(1, height)

    def at(x: int, y: int) -> QPointF:
        return QPointF(target.x() + (x + 0.5) * sx, target.y() + (y + 0.5) * sy)

    scale = max(0.35, min(1.5, target.width() / 800))
    painter.save()
    painter.setRenderHint(QPainter.RenderHint.Antialiasing)
    pen = QPen(ACCENT, max(2.0, 3 * scale))
    painter.setPen(pen)
    painter.setBrush(Qt.BrushStyle.NoBrush)
    caption_at: QPointF | None = None
    if isinstance(action, (Click, Move, Scroll)) and action.x is not None:  # an unresolved element: no point
        p = at(action.x, action.y)
        r = 14 * scale
        painter.drawEllipse(p, r, r)
        painter.drawLine(QPointF(p.x() - 1.6 * r, p.y()), QPointF(p.x() + 1.6 * r, p.y()))
        painter.drawLine(QPointF(p.x(), p.y() - 1.6 * r), QPointF(p.x(), p.y() + 1.6 * r))
        if isinstance(action, Click) and action.count > 1:
            painter.drawEllipse(p, r * 1.5, r * 1.5)
        if isinstance(action, Scroll):
            direction = 1 if (action.dy or action.dx) > 0 else -1
            end = QPointF(p.x() + (28 * scale * direction if action.dx else 0),
                          p.y() + (28 * scale * direction if action.dy else 0))
            _arrow(painter, p, end, scale, ACCENT_2)
        caption_at = QPointF(p.x() + 1.8 * r, p.y() - 1.8 * r)
    elif isinstance(action, Drag):
        start, end = at(action.x, action.y), at(action.to_x, action.to_y)
        painter.drawEllipse(start, 8 * scale, 8 * scale)
        _arrow(painter, start, end, scale, ACCENT)
        caption_at = QPointF(end.x() + 10 * scale, end.y())
    else:
        caption_at = QPointF(target.x() + 12 * scale, target.bottom() - 16 * scale)
    _caption(painter, action_caption(action), caption_at, target, scale)
    painter.restore()


def _arrow(painter: QPainter, start: QPointF, end: QPointF, scale: float, colour: QColor) -> None:
    painter.setPen(QPen(colour, max(2.0, 3 * scale)))
    painter.drawLine(start, end)
    angle = math.atan2(end.y() - start.y(), end.x() - start.x())
    size = 14 * scale
    head = QPolygonF([end,
                      QPointF(end.x() - size * math.cos(angle - 0.45), end.y() - size * math.sin(angle - 0.45)),
                      QPointF(end.x() - size * math.cos(angle + 0.45), end.y() - size * math.sin(angle + 0.45))])
    painter.setBrush(colour)
    painter.drawPolygon(head)
    painter.setBrush(Qt.BrushStyle.NoBrush)


def _caption(painter: QPainter, text: str, anchor: QPointF, bounds: QRectF, scale: float) -> None:
    font = QFont()
    font.setPixelSize(max(9, int(16 * scale)))
    font.setBold(True)
    painter.setFont(font)
    metrics = painter.fontMetrics()
    box = QRectF(metrics.boundingRect(text)).adjusted(-5, -3, 5, 3)
    box.moveTopLeft(anchor)
    # Keep the label inside the picture.
    if box.right() > bounds.right():
        box.moveRight(bounds.right() - 2)
    if box.bottom() > bounds.bottom():
        box.moveBottom(bounds.bottom() - 2)
    box.moveLeft(max(box.left(), bounds.left() + 2))
    box.moveTop(max(box.top(), bounds.top() + 2))
    painter.setPen(Qt.PenStyle.NoPen)
    painter.setBrush(QColor(0, 0, 0, 190))
    painter.drawRoundedRect(box, 4, 4)
    painter.setPen(QColor(255, 255, 255))
    painter.drawText(box, Qt.AlignmentFlag.AlignCenter, text)


# Element boxes by what they are: things to click, things to type into, text, the rest.
ELEMENT_COLOURS = {"click": QColor(255, 196, 0), "edit": QColor(0, 200, 120), "text": QColor(150, 150, 255),
                   "other": QColor(160, 160, 160)}
EDIT_ROLES = frozenset({"text", "text area", "terminal", "spin button", "combo box", "editbar", "entry"})
TEXT_ROLES = frozenset({"label", "text line", "heading", "paragraph", "static"})
PASSIVE_ROLES = frozenset({"frame", "dialog", "window", "panel", "filler", "menu bar", "page tab list", "list",
                           "canvas", "scroll bar", "scroll pane", "tool bar", "status bar"})


def element_colour(role: str) -> QColor:
    if role in EDIT_ROLES:
        return ELEMENT_COLOURS["edit"]
    if role in TEXT_ROLES:
        return ELEMENT_COLOURS["text"]
    return ELEMENT_COLOURS["other"] if role in PASSIVE_ROLES else ELEMENT_COLOURS["click"]


def draw_elements(painter: QPainter, listing: ElementList | None, target: QRectF,
                  screen_size: tuple[int, int]) -> None:
    """Draw each element's box (screen pixels) onto ``target`` with a tag "id role" at
    its top-left corner; windows are outlined only (their tags would cover the content)."""
    if listing is None or not screen_size[0] or not screen_size[1]:
        return
    sx, sy = target.width() / screen_size[0], target.height() / screen_size[1]
    painter.save()
    font = QFont()
    font.setPixelSize(max(8, int(11 * max(0.6, min(1.4, target.width() / 1000)))))
    painter.setFont(font)
    metrics = painter.fontMetrics()
    painter.setBrush(Qt.BrushStyle.NoBrush)
    for element in sorted(listing.elements, key=lambda e: -e.box[2] * e.box[3]):  # big first: small tags on top
        x, y, w, h = element.box
        rect = QRectF(target.x() + x * sx, target.y() + y * sy, max(1.0, w * sx), max(1.0, h * sy))
        colour = element_colour(element.role)
        painter.setPen(QPen(colour, 1.5))
        painter.drawRect(rect)
        if element.role in ("frame", "window"):
            continue
        tag = f"{element.id} {element.role}"
        box = QRectF(metrics.boundingRect(tag)).adjusted(-2, -1, 2, 1)
        box.moveTopLeft(rect.topLeft())
        painter.fillRect(box, QColor(0, 0, 0, 170))
        painter.setPen(colour)
        painter.drawText(box, Qt.AlignmentFlag.AlignCenter, tag)
    painter.restore()


def image_with_action(image: QImage, action: Action | None) -> QImage:
    """A copy of ``image`` (a full screen) with ``action`` drawn on it."""
    out = image.convertToFormat(QImage.Format.Format_RGB32)
    if action is not None:
        painter = QPainter(out)
        draw_action(painter, action, QRectF(0, 0, out.width(), out.height()), (out.width(), out.height()))
        painter.end()
    return out


def fit_rect(image_w: int, image_h: int, box: QRectF) -> QRectF:
    """The largest rectangle with the image's aspect ratio centred in ``box``."""
    if image_w <= 0 or image_h <= 0:
        return QRectF(box)
    scale = min(box.width() / image_w, box.height() / image_h)
    w, h = image_w * scale, image_h * scale
    return QRectF(box.x() + (box.width() - w) / 2, box.y() + (box.height() - h) / 2, w, h)
