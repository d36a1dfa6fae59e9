"""The list of images in the project, with thumbnails, review status and uncertainty.

The list shows the images in file order, or with "Most uncertain first" in
the order Next image to annotate (key N) follows
(:func:`~segstudio.inference.uncertainty.annotation_order`): unreviewed
images before reviewed ones, never predicted ones first, then from the
highest uncertainty score to the lowest. Rows move; the panel speaks in
image indices throughout (signals, setters, getters), whatever the order.
"""

from __future__ import annotations

import math

import numpy as np
from PySide6.QtCore import QRect, QSettings, QSize, Qt, Signal
from PySide6.QtGui import QColor, QIcon, QImage, QPainter, QPalette, QPen, QPixmap
from PySide6.QtWidgets import (
    QApplication,
    QComboBox,
    QGridLayout,
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
from segstudio.inference.uncertainty import annotation_order

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
_INDEX_ROLE = Qt.ItemDataRole.UserRole + 2  # the image's index in the project, whatever its row
_SCORE_ROLE = Qt.ItemDataRole.UserRole + 3  # its uncertainty score, None before any prediction
_ALL = "All"
FILE_ORDER = "File order"
MOST_UNCERTAIN = "Most uncertain first"
SORT_CHOICES = (FILE_ORDER, MOST_UNCERTAIN)


def _status_text(status: object) -> str:
    # the document may hand us an enum whose value is the status string
    text = str(getattr(status, "value", status))
    if text not in STATUS_COLORS:
        raise InvalidArgumentError(f"unknown image status {text!r}; expected one of {', '.join(STATUSES)}")
    return text


def _score_value(score: object) -> float | None:
    if score is None:
        return None
    value = float(score)
    return None if math.isnan(value) else value


def _tooltip(name: str, score: float | None) -> str:
    if score is None:
        return f"{name}\nuncertainty: not predicted yet"
    return f"{name}\nuncertainty {score:.2f} (mean entropy of the last prediction: 0 certain, 1 uniform)"


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
        score = index.data(_SCORE_ROLE)
        if score is not None:
            text = f"u {score:.2f}"
            below = QRect(badge.left() - 20, badge.bottom() + 2, badge_w + 20, metrics.height())
            painter.setPen(opt.palette.color(QPalette.ColorRole.HighlightedText if selected
                                             else QPalette.ColorRole.Text))
            painter.drawText(below, Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter, text)
        painter.restore()

    def sizeHint(self, option, index) -> QSize:  # noqa: N802 (Qt override)
        hint = super().sizeHint(option, index)
        # narrow: a row as wide as its name pushed the badge out of a narrow list
        # (the rows stretch to the list's width; paint() elides the name)
        return QSize(THUMBNAIL_SIZE + 40, max(hint.height(), THUMBNAIL_SIZE + 8))


class ImagesPanel(QWidget):
    """Thumbnails, names, review status and uncertainty of the project's images.

    Signals
    -------
    currentChanged(int)
        The user picked another image (its index into the entries).
    reviewToggled(int, bool)
        The user marked an image reviewed (True) or took the mark back (False).
    """

    currentChanged = Signal(int)
    reviewToggled = Signal(int, bool)

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        #: the items by image index (their rows change when sorted)
        self._items: list[QListWidgetItem] = []
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

        self._sort = QComboBox()
        self._sort.setObjectName("images_sort")
        self._sort.addItems(SORT_CHOICES)
        self._sort.setToolTip(
            "Most uncertain first: the order of View > Next image to annotate (N). Images not yet "
            "predicted come first, then the highest uncertainty (mean entropy of the last "
            "prediction); reviewed images last")
        saved = QSettings().value("images/sort", SORT_CHOICES[0])
        if saved in SORT_CHOICES:  # the user's choice of last time
            self._sort.setCurrentText(saved)
        self._sort.currentTextChanged.connect(self._on_sort_changed)
        # no wider than the filter: the dock may be narrow (the list shows the whole text)
        self._sort.setSizeAdjustPolicy(QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon)
        self._sort.setMinimumContentsLength(8)

        self._review_button = QPushButton("Mark reviewed")
        self._review_button.setToolTip("Mark the current image as reviewed, or take the mark back")
        self._review_button.clicked.connect(self._on_review_clicked)
        self._count_label = QLabel()

        top = QGridLayout()  # Sort under Show: side by side they made the dock 60 px wider
        top.addWidget(QLabel("Show:"), 0, 0)
        top.addWidget(self._filter, 0, 1)
        top.addWidget(QLabel("Sort:"), 1, 0)
        top.addWidget(self._sort, 1, 1)
        top.setColumnStretch(1, 1)
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
    def set_entries(self, entries: list[tuple]) -> None:
        """Replace the list with ``(name, status)`` or ``(name, status, uncertainty)``
        tuples (uncertainty None: never predicted); thumbnails start blank."""
        placeholder = _placeholder_icon()
        with blocked(self._list):
            self._list.clear()
            self._items = []
            for index, (name, status, *score) in enumerate(entries):
                item = QListWidgetItem(placeholder, name)
                item.setData(_INDEX_ROLE, index)
                item.setData(_STATUS_ROLE, _status_text(status))
                value = _score_value(score[0]) if score else None
                item.setData(_SCORE_ROLE, value)
                item.setToolTip(_tooltip(name, value))
                self._items.append(item)
                self._list.addItem(item)
        self._arrange()
        self._apply_filter()
        self._update_controls()

    def set_status(self, index: int, status: str) -> None:
        """Show a new status for image ``index``."""
        self._item(index).setData(_STATUS_ROLE, _status_text(status))
        self._arrange()
        self._apply_filter()
        self._update_controls()

    def set_uncertainty(self, index: int, score: float | None) -> None:
        """Show image ``index``'s uncertainty score (None: not predicted); the
        list is sorted again when it shows the most uncertain first."""
        item = self._item(index)
        value = _score_value(score)
        item.setData(_SCORE_ROLE, value)
        item.setToolTip(_tooltip(item.text(), value))
        self._arrange()

    def set_thumbnail(self, index: int, rgb: np.ndarray) -> None:
        """Show ``rgb`` (uint8 ``H x W``, ``H x W x 3`` or ``H x W x 4``, any size) as the thumbnail."""
        self._item(index).setIcon(QIcon(thumbnail_pixmap(rgb)))

    def set_current(self, index: int) -> None:
        """Select image ``index`` (-1 for none) without emitting ``currentChanged``."""
        item = self._item(index) if index != -1 else None
        with blocked(self._list):
            if item is None:
                self._list.setCurrentRow(-1)
            else:
                self._list.setCurrentItem(item)
        self._update_controls()

    # -- getters ---------------------------------------------------------------
    def current_index(self) -> int:
        """Index of the selected image, -1 when none."""
        item = self._list.currentItem()
        return -1 if item is None or self._list.currentRow() < 0 else item.data(_INDEX_ROLE)

    def status(self, index: int) -> str:
        """The status shown for image ``index``."""
        return self._item(index).data(_STATUS_ROLE)

    def uncertainty(self, index: int) -> float | None:
        """The uncertainty score shown for image ``index``, None when it has none."""
        return self._item(index).data(_SCORE_ROLE)

    def count(self) -> int:
        """Number of images listed (including those hidden by the filter)."""
        return self._list.count()

    def order(self) -> list[int]:
        """The image indices from the top row to the bottom one."""
        return [self._list.item(row).data(_INDEX_ROLE) for row in range(self._list.count())]

    def sort_choice(self) -> str:
        """``"File order"`` or ``"Most uncertain first"``."""
        return self._sort.currentText()

    # -- handlers ----------------------------------------------------------------
    def _on_current_row_changed(self, row: int) -> None:
        self._update_controls()
        if row >= 0:
            self.currentChanged.emit(self._index_at(row))

    def _on_review_clicked(self) -> None:
        index = self.current_index()
        if index >= 0:
            self.reviewToggled.emit(index, self.status(index) != "reviewed")

    def _on_context_menu_requested(self, pos) -> None:
        item = self._list.itemAt(pos)
        if item is None:
            return
        index = item.data(_INDEX_ROLE)
        reviewed = self.status(index) == "reviewed"
        menu = QMenu(self)
        action = menu.addAction("Unmark reviewed" if reviewed else "Mark reviewed")
        action.triggered.connect(lambda: self.reviewToggled.emit(index, not reviewed))
        menu.exec(self._list.viewport().mapToGlobal(pos))

    def _on_filter_changed(self, _text: str) -> None:
        self._apply_filter()

    def _on_sort_changed(self, text: str) -> None:
        QSettings().setValue("images/sort", text)
        self._arrange()
        item = self._list.currentItem()
        if item is not None:
            self._list.scrollToItem(item)

    # -- helpers -------------------------------------------------------------------
    def _item(self, index: int) -> QListWidgetItem:
        if not 0 <= index < len(self._items):
            raise InvalidArgumentError(f"image index {index} out of range (0..{len(self._items) - 1})")
        return self._items[index]

    def _index_at(self, row: int) -> int:
        return self._list.item(row).data(_INDEX_ROLE)

    def _wanted_order(self) -> list[int]:
        if self._sort.currentText() != MOST_UNCERTAIN:
            return list(range(len(self._items)))
        statuses = [item.data(_STATUS_ROLE) for item in self._items]
        order = annotation_order([item.data(_SCORE_ROLE) for item in self._items],
                                 [status == "reviewed" for status in statuses])
        # an image that cannot be read is no candidate at all: at the very bottom
        return ([i for i in order if statuses[i] != "unreadable"]
                + [i for i in order if statuses[i] == "unreadable"])

    def _arrange(self) -> None:
        """Put the rows in the order the sort choice asks for (keeping the selection)."""
        wanted = self._wanted_order()
        if wanted == self.order():
            return
        current = self._list.currentItem() if self._list.currentRow() >= 0 else None
        with blocked(self._list):
            for row in reversed(range(self._list.count())):  # from the end: nothing shifts
                self._list.takeItem(row)
            for index in wanted:
                self._list.addItem(self._items[index])
            if current is not None:
                self._list.setCurrentItem(current)
            else:
                self._list.setCurrentRow(-1)
        self._apply_filter()  # the view keeps hidden rows by row: taken out, they show again
        self._update_controls()

    def _apply_filter(self) -> None:
        wanted = self._filter.currentText()
        shown = 0
        for item in self._items:
            hide = wanted != _ALL and item.data(_STATUS_ROLE) != wanted
            item.setHidden(hide)
            shown += not hide
        total = len(self._items)
        reviewed = sum(item.data(_STATUS_ROLE) == "reviewed" for item in self._items)
        self._count_label.setText(f"{reviewed}/{total} reviewed" + ("" if shown == total else f", {shown} shown"))

    def _update_controls(self) -> None:
        index = self.current_index()
        self._review_button.setEnabled(index >= 0)
        reviewed = index >= 0 and self.status(index) == "reviewed"
        self._review_button.setText("Unmark reviewed" if reviewed else "Mark reviewed")
