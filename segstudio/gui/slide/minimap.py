"""The overview in a corner of the slide view: the whole slide, and where the view is on it."""

from __future__ import annotations

from PySide6.QtCore import QPointF, QRectF, Qt
from PySide6.QtGui import QColor, QMouseEvent, QPainter, QPen
from PySide6.QtWidgets import QWidget

SIDE = 200  # the longer side, in screen pixels
MARGIN = 10


class Minimap(QWidget):
    """Click or drag on it to move the view there (View > Overview, M, shows or hides it)."""

    def __init__(self, view) -> None:
        super().__init__(view)
        self.view = view
        height, width = view.document.shape
        scale = SIDE / max(height, width)
        self.scale = scale
        self.setFixedSize(max(8, round(width * scale)), max(8, round(height * scale)))
        self.setCursor(Qt.CursorShape.PointingHandCursor)
        self.setToolTip("Overview: click or drag to move the view")
        self.place()

    def place(self) -> None:
        self.move(self.view.width() - self.width() - MARGIN, MARGIN)

    def view_rect(self) -> QRectF:
        """The view's outline on the overview."""
        (y0, y1), (x0, x1) = self.view.visible_box()
        return QRectF(x0 * self.scale, y0 * self.scale, (x1 - x0) * self.scale, (y1 - y0) * self.scale)

    def paintEvent(self, event) -> None:  # noqa: N802
        painter = QPainter(self)
        painter.setRenderHint(QPainter.RenderHint.SmoothPixmapTransform)
        painter.drawImage(self.rect(), self.view._overview_image)
        painter.setPen(QPen(QColor(255, 255, 255, 160), 1))
        painter.drawRect(self.rect().adjusted(0, 0, -1, -1))
        painter.setPen(QPen(QColor(255, 40, 40), 2))
        painter.drawRect(self.view_rect().intersected(QRectF(self.rect()).adjusted(1, 1, -1, -1)))
        painter.end()

    def _jump(self, position: QPointF) -> None:
        self.view.center_on(position.y() / self.scale, position.x() / self.scale)

    def mousePressEvent(self, event: QMouseEvent) -> None:  # noqa: N802
        self._jump(event.position())

    def mouseMoveEvent(self, event: QMouseEvent) -> None:  # noqa: N802
        if event.buttons() & Qt.MouseButton.LeftButton:
            self._jump(event.position())
