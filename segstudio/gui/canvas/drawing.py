"""What the canvas paints: its layers, tool feedback and orientation letters."""

from __future__ import annotations

import math

from PySide6.QtCore import QPointF, QRect, QRectF, Qt
from PySide6.QtGui import QColor, QPainter, QPainterPath, QPen

from segstudio.gui.canvas.layers import LAYER_NAMES
from segstudio.gui.canvas.tool import Tool


def paint_orientation(painter: QPainter, rect: QRect, letters: tuple[str, str, str, str] | None) -> None:
    """The patient directions at the edges of *rect* (nothing for *letters* None)."""
    if letters is None:
        return
    top, bottom, left, right = letters
    font = painter.font()
    font.setPixelSize(14)
    font.setBold(True)
    painter.setFont(font)
    margin = 6
    area = rect.adjusted(margin, margin, -margin, -margin)
    flags = Qt.AlignmentFlag
    for text, align in ((top, flags.AlignTop | flags.AlignHCenter), (bottom, flags.AlignBottom | flags.AlignHCenter),
                        (left, flags.AlignLeft | flags.AlignVCenter), (right, flags.AlignRight | flags.AlignVCenter)):
        painter.setPen(QColor(0, 0, 0, 200))  # a shadow keeps the letter legible on bright tissue
        painter.drawText(area.translated(1, 1), align, text)
        painter.setPen(QColor(255, 220, 90))
        painter.drawText(area, align, text)


def paint_overlays(canvas, painter: QPainter) -> None:
    """What a tool draws over the image: the accept region, the polygon, the brush outline."""
    painter.setRenderHint(QPainter.RenderHint.Antialiasing, True)
    if canvas._accept_path:
        pen = QPen(QColor(255, 255, 255, 90), 2 * canvas.brush_radius * canvas.zoom)
        pen.setCapStyle(Qt.PenCapStyle.RoundCap)
        pen.setJoinStyle(Qt.PenJoinStyle.RoundJoin)
        painter.setPen(pen)
        path = QPainterPath(canvas._accept_path[0])
        for point in canvas._accept_path[1:]:
            path.lineTo(point)
        painter.drawPath(path)
    if canvas.polygon_points:
        painter.setPen(QPen(QColor(255, 230, 0), 1.5))
        points = [canvas.to_widget(r, c) for r, c in canvas.polygon_points]
        if canvas._cursor is not None:
            points.append(canvas._cursor)
        for a, b in zip(points, points[1:], strict=False):
            painter.drawLine(a, b)
        for point in points[: len(canvas.polygon_points)]:
            painter.drawEllipse(point, 3, 3)
    if canvas._cursor is not None and canvas.tool in (Tool.BRUSH, Tool.ERASER, Tool.ACCEPT):
        # the brush is a disc in pixels; on a coronal or sagittal plane a
        # pixel is drawn `aspect` times taller, and so is what it paints
        rx = canvas.brush_radius * canvas.zoom
        ry = rx * canvas.aspect
        painter.setPen(QPen(QColor(0, 0, 0, 160), 3))
        painter.drawEllipse(canvas._cursor, rx, ry)
        painter.setPen(QPen(QColor(255, 255, 255, 220), 1))
        painter.drawEllipse(canvas._cursor, rx, ry)


def paint_layers(canvas, painter: QPainter, rect: QRect) -> None:
    """The visible layers of the image part inside the widget's *rect*, in order."""
    height, width = canvas.image_size()
    top, left = canvas.to_image(QPointF(rect.topLeft()))
    bottom, right = canvas.to_image(QPointF(rect.bottomRight()))
    top, left = max(0, math.floor(top)), max(0, math.floor(left))
    bottom, right = min(height, math.ceil(bottom) + 1), min(width, math.ceil(right) + 1)
    if bottom > top and right > left:
        source = QRectF(left, top, right - left, bottom - top)
        corner = canvas.to_widget(top, left)
        target = QRectF(corner.x(), corner.y(), source.width() * canvas.zoom,
                        source.height() * canvas.zoom * canvas.aspect)
        painter.setRenderHint(QPainter.RenderHint.SmoothPixmapTransform, canvas.zoom < 1.0)
        for name in LAYER_NAMES:
            state = canvas.states[name]
            image = canvas.layer_image(name)
            if image is None or not state.visible or state.opacity <= 0:
                continue
            painter.setOpacity(state.opacity)
            painter.drawImage(target, image, source)
            painter.setRenderHint(QPainter.RenderHint.SmoothPixmapTransform, False)
        painter.setOpacity(1.0)
