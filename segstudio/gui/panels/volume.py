"""The Volume dock: plane, slice, window/level, and runs on a slice or the volume."""

from __future__ import annotations

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (
    QComboBox,
    QDoubleSpinBox,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QPushButton,
    QSlider,
    QVBoxLayout,
    QWidget,
)

from segstudio.gui.panels._util import blocked
from segstudio.windowing import CT_PRESETS

VIEWS = ("Axial", "Coronal", "Sagittal")


class VolumePanel(QWidget):
    """Controls for volumes (DICOM series, NIfTI, TIFF stacks)."""

    sliceRequested = Signal(int)
    axisRequested = Signal(int)  # 0 axial, 1 coronal, 2 sagittal
    windowRequested = Signal(float, float)  # centre, width
    runRequested = Signal(bool)  # True = the whole volume, False = this slice
    fillBetweenRequested = Signal()  # interpolate the active class across the view's slices

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self._axis = QComboBox()
        self._axis.addItems(VIEWS)
        self._slider = QSlider(Qt.Orientation.Horizontal)
        self._slider.setToolTip("Slice (Page Up / Page Down, Ctrl+wheel)")
        self._slice_label = QLabel("–")
        self._preset = QComboBox()
        self._preset.addItem("Window preset…")
        for preset in CT_PRESETS:
            self._preset.addItem(f"CT {preset.name} (W {preset.width:g} / L {preset.center:g})", preset)
        self._center = QDoubleSpinBox()
        self._width = QDoubleSpinBox()
        for box in (self._center, self._width):
            box.setRange(-100000.0, 100000.0)
            box.setDecimals(1)
            box.setKeyboardTracking(False)
        self._width.setMinimum(1.0)
        self._center.setToolTip("Level (window centre); right-drag up/down on the image")
        self._width.setToolTip("Window width; right-drag sideways on the image")
        run_slice = QPushButton("Run on this slice")
        run_volume = QPushButton("Run on the whole volume")
        run_slice.clicked.connect(lambda: self.runRequested.emit(False))
        run_volume.clicked.connect(lambda: self.runRequested.emit(True))
        self.fill_between_button = QPushButton("Fill between slices")
        self.fill_between_button.setToolTip(
            "Interpolate the active class on every slice between two painted ones, along this view's "
            "axis (unlabelled voxels only; one undo step)")
        self.fill_between_button.clicked.connect(self.fillBetweenRequested.emit)

        slice_row = QHBoxLayout()
        slice_row.addWidget(self._slider, 1)
        slice_row.addWidget(self._slice_label)
        window_row = QHBoxLayout()
        window_row.addWidget(QLabel("L"))
        window_row.addWidget(self._center)
        window_row.addWidget(QLabel("W"))
        window_row.addWidget(self._width)
        form = QFormLayout()
        form.addRow("View", self._axis)
        form.addRow("Slice", slice_row)
        form.addRow("Window", window_row)
        form.addRow("", self._preset)
        layout = QVBoxLayout(self)
        layout.addLayout(form)
        buttons = QHBoxLayout()
        buttons.addWidget(run_slice)
        buttons.addWidget(run_volume)
        layout.addLayout(buttons)
        layout.addWidget(self.fill_between_button)
        layout.addStretch(1)

        self._axis.currentIndexChanged.connect(self.axisRequested.emit)
        self._slider.valueChanged.connect(self.sliceRequested.emit)
        self._preset.activated.connect(self._on_preset_activated)
        self._center.valueChanged.connect(self._on_window_edited)
        self._width.valueChanged.connect(self._on_window_edited)

    def set_slice(self, index: int, count: int) -> None:
        with blocked(self._slider):
            self._slider.setRange(0, max(0, count - 1))
            self._slider.setValue(index)
        self._slice_label.setText(f"{index + 1} / {count}")

    def set_axis(self, axis: int) -> None:
        with blocked(self._axis):
            self._axis.setCurrentIndex(axis)

    def set_window(self, center: float, width: float) -> None:
        with blocked(self._center, self._width):
            self._center.setValue(center)
            self._width.setValue(width)

    def _on_preset_activated(self, index: int) -> None:
        preset = self._preset.itemData(index)
        if preset is not None:
            self.windowRequested.emit(float(preset.center), float(preset.width))
        with blocked(self._preset):
            self._preset.setCurrentIndex(0)

    def _on_window_edited(self, _value: float) -> None:
        self.windowRequested.emit(self._center.value(), self._width.value())
