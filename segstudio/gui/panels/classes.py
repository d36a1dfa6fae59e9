"""The class list: colour, name, visibility, the 1-9 shortcut keys, and a
filter box for projects with more classes than keys."""

from __future__ import annotations

import colorsys

from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import QColor, QIcon, QPixmap
from PySide6.QtWidgets import (
    QAbstractItemView,
    QColorDialog,
    QComboBox,
    QDialog,
    QDialogButtonBox,
    QGridLayout,
    QHeaderView,
    QInputDialog,
    QLabel,
    QLineEdit,
    QPushButton,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from segstudio.errors import InvalidArgumentError
from segstudio.gui.panels._util import blocked

#: the "Unlabelled" choice when a class is deleted (255 is a class in a uint16 project)
UNLABELLED_CHOICE = -1
SWATCH_SIZE = 16
KEY_COLUMN, NAME_COLUMN, VISIBLE_COLUMN = 0, 1, 2
# Distinct, colour-blind-friendly first picks (Okabe-Ito, then Tableau-like).
_SUGGESTED_COLORS = (
    (230, 159, 0), (86, 180, 233), (0, 158, 115), (240, 228, 66), (0, 114, 178),
    (213, 94, 0), (204, 121, 167), (148, 103, 189), (140, 86, 75), (188, 189, 34),
)


def suggest_color(used: list[tuple[int, int, int]]) -> tuple[int, int, int]:
    """A colour for a new class that differs from those in ``used``."""
    taken = {tuple(c) for c in used}
    for color in _SUGGESTED_COLORS:
        if color not in taken:
            return color
    # golden-ratio hue steps keep later colours apart without a table
    hue = (len(taken) * 0.618033988749895) % 1.0
    r, g, b = colorsys.hsv_to_rgb(hue, 0.75, 0.9)
    return (round(r * 255), round(g * 255), round(b * 255))


def _swatch(color: tuple[int, int, int]) -> QIcon:
    pixmap = QPixmap(SWATCH_SIZE, SWATCH_SIZE)
    pixmap.fill(QColor(*color))
    icon = QIcon(pixmap)
    # without this the selected row tints the swatch and misreports the colour
    icon.addPixmap(pixmap, QIcon.Mode.Selected)
    return icon


class _ReplacementDialog(QDialog):
    """Asks what the pixels of a deleted class become."""

    def __init__(self, parent: QWidget, name: str, choices: list[tuple[str, int]]) -> None:
        super().__init__(parent)
        self.setWindowTitle(f"Delete class '{name}'")
        self.combo = QComboBox()
        for label, value in choices:
            self.combo.addItem(label, value)
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Ok | QDialogButtonBox.StandardButton.Cancel)
        buttons.accepted.connect(self.accept)
        buttons.rejected.connect(self.reject)
        layout = QVBoxLayout(self)
        layout.addWidget(QLabel(f"Pixels labelled '{name}' become:"))
        layout.addWidget(self.combo)
        layout.addWidget(buttons)


class ClassesPanel(QWidget):
    """The segmentation classes, the active one highlighted.

    Signals
    -------
    activeChanged(int)
        The user picked the class to paint with.
    addRequested(str, tuple)
        Add a class with this name and ``(r, g, b)`` colour.
    renameRequested(int, str), recolorRequested(int, tuple)
        Change a class's name or colour.
    visibilityChanged(int, bool)
        Show or hide a class's pixels.
    deleteRequested(int, int)
        Delete a class; its pixels become the second index (-1 = unlabelled).
    """

    activeChanged = Signal(int)
    addRequested = Signal(str, tuple)
    renameRequested = Signal(int, str)
    recolorRequested = Signal(int, tuple)
    visibilityChanged = Signal(int, bool)
    deleteRequested = Signal(int, int)

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self._classes: list[tuple[str, tuple[int, int, int], bool]] = []
        self._table = QTableWidget(0, 3)
        self._table.setHorizontalHeaderLabels(["Key", "Class", "Visible"])
        self._table.verticalHeader().setVisible(False)
        self._table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self._table.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self._table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        header = self._table.horizontalHeader()
        header.setSectionResizeMode(KEY_COLUMN, QHeaderView.ResizeMode.ResizeToContents)
        header.setSectionResizeMode(NAME_COLUMN, QHeaderView.ResizeMode.Stretch)
        header.setSectionResizeMode(VISIBLE_COLUMN, QHeaderView.ResizeMode.ResizeToContents)
        self._table.currentCellChanged.connect(self._on_current_cell_changed)
        self._table.itemChanged.connect(self._on_item_changed)
        self._table.cellDoubleClicked.connect(self._on_cell_double_clicked)
        # with more classes than keys, typing part of a name is the quick way to one
        self._filter = QLineEdit()
        self._filter.setPlaceholderText("Find a class (Enter picks the first match)")
        self._filter.setClearButtonEnabled(True)
        self._filter.textChanged.connect(self._apply_filter)
        self._filter.returnPressed.connect(self._pick_first_match)
        self._filter.setVisible(False)

        self._add_button = QPushButton("Add…")
        self._rename_button = QPushButton("Rename…")
        self._color_button = QPushButton("Colour…")
        self._delete_button = QPushButton("Delete…")
        self._add_button.clicked.connect(self._on_add_clicked)
        self._rename_button.clicked.connect(self._on_rename_clicked)
        self._color_button.clicked.connect(self._on_color_clicked)
        self._delete_button.clicked.connect(self._on_delete_clicked)

        buttons = QGridLayout()
        buttons.addWidget(self._add_button, 0, 0)
        buttons.addWidget(self._rename_button, 0, 1)
        buttons.addWidget(self._color_button, 1, 0)
        buttons.addWidget(self._delete_button, 1, 1)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(4, 4, 4, 4)
        layout.addWidget(self._filter)
        layout.addWidget(self._table, 1)
        layout.addLayout(buttons)
        self._update_buttons()

    # -- setters (never emit) -------------------------------------------------
    def set_classes(self, classes: list[tuple[str, tuple[int, int, int], bool]]) -> None:
        """Show ``(name, (r, g, b), visible)`` rows; keeps the active row if it still exists."""
        active = self._table.currentRow()
        self._classes = [(str(n), tuple(int(v) for v in c), bool(vis)) for n, c, vis in classes]
        with blocked(self._table):
            self._table.setRowCount(len(self._classes))
            for row, (name, color, visible) in enumerate(self._classes):
                key = QTableWidgetItem(str(row + 1) if row < 9 else "")
                key.setTextAlignment(Qt.AlignmentFlag.AlignCenter)
                key.setFlags(Qt.ItemFlag.ItemIsEnabled | Qt.ItemFlag.ItemIsSelectable)
                label = QTableWidgetItem(_swatch(color), name)
                label.setToolTip(
                    f"{name}  (label value {row}, RGB {color[0]}, {color[1]}, {color[2]}); double-click to rename"
                )
                label.setFlags(Qt.ItemFlag.ItemIsEnabled | Qt.ItemFlag.ItemIsSelectable)
                check = QTableWidgetItem()
                check.setFlags(
                    Qt.ItemFlag.ItemIsEnabled | Qt.ItemFlag.ItemIsSelectable | Qt.ItemFlag.ItemIsUserCheckable
                )
                check.setCheckState(Qt.CheckState.Checked if visible else Qt.CheckState.Unchecked)
                self._table.setItem(row, KEY_COLUMN, key)
                self._table.setItem(row, NAME_COLUMN, label)
                self._table.setItem(row, VISIBLE_COLUMN, check)
            self._table.setCurrentCell(min(active, len(self._classes) - 1) if active >= 0 else -1, NAME_COLUMN)
        self._filter.setVisible(len(self._classes) > 9)
        self._apply_filter(self._filter.text())
        self._update_buttons()

    # -- finding a class ---------------------------------------------------------
    def _apply_filter(self, text: str) -> None:
        """Hide the rows whose name does not contain ``text`` (any case)."""
        needle = text.strip().casefold()
        for row, (name, _color, _visible) in enumerate(self._classes):
            self._table.setRowHidden(row, bool(needle) and needle not in name.casefold())

    def visible_rows(self) -> list[int]:
        """Rows the filter leaves shown."""
        return [row for row in range(len(self._classes)) if not self._table.isRowHidden(row)]

    def _pick_first_match(self) -> None:
        shown = self.visible_rows()
        if shown:
            self._table.setCurrentCell(shown[0], NAME_COLUMN)  # emits activeChanged
            self._table.scrollToItem(self._table.item(shown[0], NAME_COLUMN))

    def set_active(self, index: int) -> None:
        """Highlight class ``index`` (-1 for none) without emitting ``activeChanged``."""
        if not -1 <= index < len(self._classes):
            raise InvalidArgumentError(f"class index {index} out of range (0..{len(self._classes) - 1})")
        with blocked(self._table):
            self._table.setCurrentCell(index, NAME_COLUMN)
        self._update_buttons()

    # -- getters ---------------------------------------------------------------
    def active_index(self) -> int:
        """Index of the active class, -1 when none."""
        return self._table.currentRow()

    def classes(self) -> list[tuple[str, tuple[int, int, int], bool]]:
        """The rows as last given to :meth:`set_classes`."""
        return list(self._classes)

    # -- dialogs (tests replace these) -------------------------------------------
    def _ask_name(self, title: str, current: str) -> str | None:
        text, ok = QInputDialog.getText(self, title, "Class name:", text=current)
        return text.strip() if ok and text.strip() else None

    def _ask_color(self, current: tuple[int, int, int]) -> tuple[int, int, int] | None:
        color = QColorDialog.getColor(QColor(*current), self, "Class colour")
        return (color.red(), color.green(), color.blue()) if color.isValid() else None

    def _ask_replacement(self, index: int) -> int | None:
        choices = [("Unlabelled", UNLABELLED_CHOICE)]
        choices += [(name, i) for i, (name, _c, _v) in enumerate(self._classes) if i != index]
        dialog = _ReplacementDialog(self, self._classes[index][0], choices)
        if dialog.exec() != QDialog.DialogCode.Accepted:
            return None
        return int(dialog.combo.currentData())

    # -- handlers ----------------------------------------------------------------
    def _on_current_cell_changed(self, row: int, _col: int, previous_row: int, _prev_col: int) -> None:
        self._update_buttons()
        if row >= 0 and row != previous_row:
            self.activeChanged.emit(row)

    def _on_item_changed(self, item: QTableWidgetItem) -> None:
        if item.column() != VISIBLE_COLUMN:
            return
        row = item.row()
        visible = item.checkState() == Qt.CheckState.Checked
        name, color, _was = self._classes[row]
        self._classes[row] = (name, color, visible)
        self.visibilityChanged.emit(row, visible)

    def _on_cell_double_clicked(self, _row: int, column: int) -> None:
        if column == NAME_COLUMN:
            self._on_rename_clicked()

    def _on_add_clicked(self) -> None:
        name = self._ask_name("Add class", "")
        if name:
            self.addRequested.emit(name, suggest_color([c for _n, c, _v in self._classes]))

    def _on_rename_clicked(self) -> None:
        row = self.active_index()
        if row < 0:
            return
        name = self._ask_name("Rename class", self._classes[row][0])
        if name and name != self._classes[row][0]:
            self.renameRequested.emit(row, name)

    def _on_color_clicked(self) -> None:
        row = self.active_index()
        if row < 0:
            return
        color = self._ask_color(self._classes[row][1])
        if color is not None and tuple(color) != self._classes[row][1]:
            self.recolorRequested.emit(row, tuple(int(v) for v in color))

    def _on_delete_clicked(self) -> None:
        row = self.active_index()
        if row < 0:
            return
        replacement = self._ask_replacement(row)
        if replacement is not None:
            self.deleteRequested.emit(row, replacement)

    def _update_buttons(self) -> None:
        has_active = self._table.currentRow() >= 0
        for button in (self._rename_button, self._color_button, self._delete_button):
            button.setEnabled(has_active)
