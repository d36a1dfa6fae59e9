"""The list of images in the project, with thumbnails and review status."""

from __future__ import annotations

import numpy as np
from PySide6.QtCore import QRect, QSize, Qt, Signal
from PySide6.QtGui import QColor, QIcon, QImage, QPainter, QPen, QPixmap
from PySide6.QtWidgets import (
    QApplication,
    QComboBox,
    QHBoxLayout,
    QLabel,
    QListWidget,
    QListWidgetItem,
    QMenu,
    QPushButton,
    QStyle,
    QStyledItemDelegate,
    QStyleOptionViewItem,
    QVBoxLayout,
    QWidget,
)

from segstudio.errors import InvalidArgumentError
from segstudio.gui.panels._util import blocked

THUMBNAIL_SIZE = 64
STATUS_COLORS: dict[str, tuple[int, int, int]] = {
    "new": (128, 128, 128),
    "predicted": (52, 120, 220),
    "corrected": (225, 140, 20),
    "reviewed": (40, 160, 70),
    "unreadable": (200, 40, 40),  # shown by the GUI only, never stored
}
STATUSES = tuple(STATUS_COLORS)
_STATUS_ROLE = Qt.ItemDataRole.UserRole + 1
_ALL = "All"


def _status_text(status: object) -> str:
    # the document may hand us an enum whose value is the status string
    text = str(getattr(status, "value", status))
    if text not in STATUS_COLORS:
        raise InvalidArgumentError(f"unknown image status {text!r}; expected one of {', '.join(STATUSES)}")
    return text


def _placeholder_icon() -> QIcon:
    pixmap = QPixmap(THUMBNAIL_SIZE, THUMBNAIL_SIZE)
    pixmap.fill(QColor(70, 70, 70))
    return QIcon(pixmap)


def thumbnail_pixmap(rgb: np.ndarray, size: int = THUMBNAIL_SIZE) -> QPixmap:
    """Scale an 8-bit ``H x W`` grey, ``H x W x 3`` RGB or ``H x W x 4`` RGBA array into a ``size`` square.

    Raises
    ------
    InvalidArgumentError
        If the array is not one of those.
    """
    array = np.asarray(rgb)
    if array.ndim == 3 and array.shape[2] == 1:
        array = array[:, :, 0]
    if array.dtype != np.uint8 or array.ndim not in (2, 3) or (array.ndim == 3 and array.shape[2] not in (3, 4)):
        raise InvalidArgumentError(
            f"thumbnail must be an HxW, HxWx3 or HxWx4 uint8 array, got shape {array.shape} dtype {array.dtype}"
        )
    if array.shape[0] == 0 or array.shape[1] == 0:
        raise InvalidArgumentError(f"thumbnail is empty (shape {array.shape})")
    array = np.ascontiguousarray(array)
    height, width = array.shape[:2]
    if array.ndim == 2:
        image = QImage(array.data, width, height, width, QImage.Format.Format_Grayscale8)
    elif array.shape[2] == 3:
        image = QImage(array.data, width, height, 3 * width, QImage.Format.Format_RGB888)
    else:
        image = QImage(array.data, width, height, 4 * width, QImage.Format.Format_RGBA8888)
    scaled = image.scaled(size, size, Qt.AspectRatioMode.KeepAspectRatio, Qt.TransformationMode.SmoothTransformation)
    # centre on a square canvas so every row lines up whatever the aspect ratio
    canvas = QPixmap(size, size)
    canvas.fill(Qt.GlobalColor.transparent)
    painter = QPainter(canvas)
    painter.drawImage((size - scaled.width()) // 2, (size - scaled.height()) // 2, scaled)
    painter.end()
    return canvas


class _StatusBadgeDelegate(QStyledItemDelegate):
    """Draws the default icon + name, then a coloured status badge on the right."""

    def paint(self, painter: QPainter, option, index) -> None:  # noqa: D102 (Qt override)
        status = index.data(_STATUS_ROLE)
        opt = QStyleOptionViewItem(option)
        self.initStyleOption(opt, index)
        metrics = opt.fontMetrics
        badge_w = metrics.horizontalAdvance(status or "") + 12
        badge_h = metrics.height() + 4
        # elide the name so that it stops short of the badge
        room = opt.rect.width() - opt.decorationSize.width() - badge_w - 24
        opt.text = metrics.elidedText(opt.text, Qt.TextElideMode.ElideMiddle, max(room, 0))
        style = opt.widget.style() if opt.widget is not None else QApplication.style()
        style.drawControl(QStyle.ControlElement.CE_ItemViewItem, opt, painter, opt.widget)
        if not status:
            return
        rect = opt.rect
        badge = QRect(rect.right() - badge_w - 6, rect.center().y() - badge_h // 2, badge_w, badge_h)
        painter.save()
        painter.setRenderHint(QPainter.RenderHint.Antialiasing)
        selected = bool(opt.state & QStyle.StateFlag.State_Selected)
        # a white rim keeps the badge readable on the selection colour
        painter.setPen(QPen(QColor(255, 255, 255), 1.5) if selected else Qt.PenStyle.NoPen)
        painter.setBrush(QColor(*STATUS_COLORS.get(status, (128, 128, 128))))
        painter.drawRoundedRect(badge, badge_h / 2, badge_h / 2)
        painter.setPen(QColor(255, 255, 255))
        painter.drawText(badge, Qt.AlignmentFlag.AlignCenter, status)
        painter.restore()

    def sizeHint(self, option, index) -> QSize:  # noqa: N802 (Qt override)
        hint = super().sizeHint(option, index)
        # narrow: a row as wide as its name pushed the badge out of a narrow list
        # (the rows stretch to the list's width; paint() elides the name)
        return QSize(THUMBNAIL_SIZE + 40, max(hint.height(), THUMBNAIL_SIZE + 8))


class ImagesPanel(QWidget):
    """Thumbnails, names and review status of the project's images.

    Signals
    -------
    currentChanged(int)
        The user picked another image (row index into the entries).
    reviewToggled(int, bool)
        The user marked an image reviewed (True) or took the mark back (False).
    """

    currentChanged = Signal(int)
    reviewToggled = Signal(int, bool)

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self._list = QListWidget()
        self._list.setIconSize(QSize(THUMBNAIL_SIZE, THUMBNAIL_SIZE))
        self._list.setUniformItemSizes(True)
        self._list.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        self._list.setItemDelegate(_StatusBadgeDelegate(self._list))
        self._list.setContextMenuPolicy(Qt.ContextMenuPolicy.CustomContextMenu)
        self._list.currentRowChanged.connect(self._on_current_row_changed)
        self._list.customContextMenuRequested.connect(self._on_context_menu_requested)

        self._filter = QComboBox()
        self._filter.addItems([_ALL, *STATUSES])
        self._filter.setToolTip("Show only images with this status")
        self._filter.currentTextChanged.connect(self._on_filter_changed)

        self._review_button = QPushButton("Mark reviewed")
        self._review_button.setToolTip("Mark the current image as reviewed, or take the mark back")
        self._review_button.clicked.connect(self._on_review_clicked)
        self._count_label = QLabel()

        top = QHBoxLayout()
        top.addWidget(QLabel("Show:"))
        top.addWidget(self._filter, 1)
        bottom = QHBoxLayout()
        bottom.addWidget(self._count_label, 1)
        bottom.addWidget(self._review_button)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(4, 4, 4, 4)
        layout.addLayout(top)
        layout.addWidget(self._list, 1)
        layout.addLayout(bottom)
        self._update_controls()

    # -- setters (never emit) -------------------------------------------------
    def set_entries(self, entries: list[tuple[str, str]]) -> None:
        """Replace the list with ``(name, status)`` pairs; thumbnails start blank."""
        placeholder = _placeholder_icon()
        with blocked(self._list):
            self._list.clear()
            for name, status in entries:
                item = QListWidgetItem(placeholder, name)
                item.setToolTip(name)
                item.setData(_STATUS_ROLE, _status_text(status))
                self._list.addItem(item)
        self._apply_filter()
        self._update_controls()

    def set_status(self, index: int, status: str) -> None:
        """Show a new status for image ``index``."""
        self._item(index).setData(_STATUS_ROLE, _status_text(status))
        self._apply_filter()
        self._update_controls()

    def set_thumbnail(self, index: int, rgb: np.ndarray) -> None:
        """Show ``rgb`` (uint8 ``H x W``, ``H x W x 3`` or ``H x W x 4``, any size) as the thumbnail."""
        self._item(index).setIcon(QIcon(thumbnail_pixmap(rgb)))

    def set_current(self, index: int) -> None:
        """Select image ``index`` (-1 for none) without emitting ``currentChanged``."""
        if index != -1:
            self._item(index)
        with blocked(self._list):
            self._list.setCurrentRow(index)
        self._update_controls()

    # -- getters ---------------------------------------------------------------
    def current_index(self) -> int:
        """Index of the selected image, -1 when none."""
        return self._list.currentRow()

    def status(self, index: int) -> str:
        """The status shown for image ``index``."""
        return self._item(index).data(_STATUS_ROLE)

    def count(self) -> int:
        """Number of images listed (including those hidden by the filter)."""
        return self._list.count()

    # -- handlers ----------------------------------------------------------------
    def _on_current_row_changed(self, row: int) -> None:
        self._update_controls()
        if row >= 0:
            self.currentChanged.emit(row)

    def _on_review_clicked(self) -> None:
        row = self._list.currentRow()
        if row >= 0:
            self.reviewToggled.emit(row, self.status(row) != "reviewed")

    def _on_context_menu_requested(self, pos) -> None:
        item = self._list.itemAt(pos)
        if item is None:
            return
        row = self._list.row(item)
        reviewed = self.status(row) == "reviewed"
        menu = QMenu(self)
        action = menu.addAction("Unmark reviewed" if reviewed else "Mark reviewed")
        action.triggered.connect(lambda: self.reviewToggled.emit(row, not reviewed))
        menu.exec(self._list.viewport().mapToGlobal(pos))

    def _on_filter_changed(self, _text: str) -> None:
        self._apply_filter()

    # -- helpers -------------------------------------------------------------------
    def _item(self, index: int) -> QListWidgetItem:
        if not 0 <= index < self._list.count():
            raise InvalidArgumentError(f"image index {index} out of range (0..{self._list.count() - 1})")
        return self._list.item(index)

    def _apply_filter(self) -> None:
        wanted = self._filter.currentText()
        shown = 0
        for row in range(self._list.count()):
            item = self._list.item(row)
            hide = wanted != _ALL and item.data(_STATUS_ROLE) != wanted
            item.setHidden(hide)
            shown += not hide
        total = self._list.count()
        reviewed = sum(self._list.item(r).data(_STATUS_ROLE) == "reviewed" for r in range(total))
        self._count_label.setText(f"{reviewed}/{total} reviewed" + ("" if shown == total else f", {shown} shown"))

    def _update_controls(self) -> None:
        row = self._list.currentRow()
        self._review_button.setEnabled(row >= 0)
        reviewed = row >= 0 and self.status(row) == "reviewed"
        self._review_button.setText("Unmark reviewed" if reviewed else "Mark reviewed")

