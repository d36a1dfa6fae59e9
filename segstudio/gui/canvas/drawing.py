"""What the canvas paints: its layers, tool feedback, the crosshair and orientation letters."""

from __future__ import annotations

import math

from PySide6.QtCore import QPointF, QRect, QRectF, Qt
from PySide6.QtGui import QColor, QPainter, QPainterPath, QPen

from segstudio.gui.canvas.layers import LAYER_NAMES
from segstudio.gui.canvas.slicing import AXES
from segstudio.gui.canvas.tool import Tool

#: each plane's colour, as in 3D Slicer: axial red, coronal green, sagittal yellow. A view's
#: crosshair line along another plane takes that plane's colour, and its name is in its own
PLANE_COLORS = ((235, 80, 80), (110, 200, 90), (230, 210, 70))
CROSSHAIR_ALPHA = 170
CROSSHAIR_GAP = 6  # pixels left open around the crosshair's centre, so the voxel stays visible


def crosshair_position(canvas) -> QPointF | None:
    """Where the canvas's crosshair is on the widget: the centre of its voxel in
    the plane as shown (None without a crosshair or a volume)."""
    slicer, voxel = canvas.slicer, canvas.crosshair
    if slicer is None or voxel is None:
        return None
    row, column = (v for axis, v in enumerate(voxel) if axis != slicer.axis)  # stored plane order
    row, column = slicer.screen_to_plane(row, column)  # as shown (a flip is its own inverse)
    return canvas.to_widget(row + 0.5, column + 0.5)


def paint_crosshair(canvas, painter: QPainter) -> None:
    """Two thin lines through the crosshair, each the trace of another view's
    plane in its colour, and the view's plane name in its own colour."""
    centre = crosshair_position(canvas)
    if centre is None:
        return
    painter.setRenderHint(QPainter.RenderHint.Antialiasing, False)
    others = [axis for axis in range(3) if axis != canvas.slicer.axis]  # the rows' axis, the columns' axis
    width, height = canvas.width(), canvas.height()
    # the centre of the pixel the voxel's centre falls in: a 1-pixel line covers exactly that pixel
    x, y, gap = math.floor(centre.x()) + 0.5, math.floor(centre.y()) + 0.5, CROSSHAIR_GAP
    # a row of the plane (rows' axis constant) is the trace of that axis's plane: horizontal
    painter.setPen(QPen(QColor(*PLANE_COLORS[others[0]], CROSSHAIR_ALPHA), 1))
    painter.drawLine(QPointF(0, y), QPointF(x - gap, y))
    painter.drawLine(QPointF(x + gap, y), QPointF(width, y))
    painter.setPen(QPen(QColor(*PLANE_COLORS[others[1]], CROSSHAIR_ALPHA), 1))
    painter.drawLine(QPointF(x, 0), QPointF(x, y - gap))
    painter.drawLine(QPointF(x, y + gap), QPointF(x, height))
    font = painter.font()
    font.setPixelSize(12)
    font.setBold(True)
    painter.setFont(font)
    text = f"{AXES[canvas.slicer.axis].capitalize()} {canvas.slicer.index + 1}/{canvas.slicer.count}"
    text_width = painter.fontMetrics().horizontalAdvance(text)
    # in the top-left corner; a line lower where it would run into the letter at the top's centre
    crowded = canvas.slicer.letters is not None and 8 + text_width > canvas.width() / 2 - 14
    label = QRect(8, 26 if crowded else 6, text_width + 4, 18)
    painter.setPen(QColor(0, 0, 0, 200))
    painter.drawText(label.translated(1, 1), Qt.AlignmentFlag.AlignLeft | Qt.AlignmentFlag.AlignTop, text)
    painter.setPen(QColor(*PLANE_COLORS[canvas.slicer.axis]))
    painter.drawText(label, Qt.AlignmentFlag.AlignLeft | Qt.AlignmentFlag.AlignTop, text)


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
    """What a tool draws over the image: the accept region, the polygon, the brush
    outline; and the crosshair of a volume shown in three views."""
    if canvas.crosshair is not None:
        paint_crosshair(canvas, painter)
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
    if canvas._cursor is not None and canvas.tool in (Tool.BRUSH, Tool.ERASER, Tool.ACCEPT, Tool.SCRIBBLE):
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
