"""Visibility, opacity and outline of the canvas layers; heatmap options."""

from __future__ import annotations

from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import QPixmap
from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QGridLayout,
    QHBoxLayout,
    QLabel,
    QSlider,
    QVBoxLayout,
    QWidget,
)

from segstudio.errors import InvalidArgumentError
from segstudio.gui.colormaps import COLORMAPS, legend_image
from segstudio.gui.panels._util import blocked

LAYER_NAMES = ("image", "heatmap", "prediction", "crf", "labels")
MASK_LAYERS = ("prediction", "crf", "labels")
_TITLES = {"image": "Image", "heatmap": "Heatmap", "prediction": "Prediction", "crf": "CRF", "labels": "Labels"}
ENTROPY_CHOICE = "Uncertainty (entropy)"
ENTROPY_INDEX = -1
LEGEND_SIZE = (120, 12)


class _LayerRow:
    """The widgets of one layer row."""

    def __init__(self, name: str) -> None:
        self.visible = QCheckBox(_TITLES[name])
        self.visible.setChecked(True)
        self.opacity = QSlider(Qt.Orientation.Horizontal)
        self.opacity.setRange(0, 100)
        self.opacity.setValue(100)
        self.opacity.setToolTip(f"Opacity of the {_TITLES[name].lower()} layer")
        self.percent = QLabel("100 %")
        self.percent.setMinimumWidth(self.percent.fontMetrics().horizontalAdvance("100 %") + 4)
        self.percent.setAlignment(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
        self.outline = QCheckBox("outline") if name in MASK_LAYERS else None
        if self.outline is not None:
            self.outline.setToolTip("Draw only the class boundaries")

    def widgets(self) -> list[QWidget]:
        return [w for w in (self.visible, self.opacity, self.percent, self.outline) if w is not None]


class LayersPanel(QWidget):
    """One row per canvas layer, plus what the heatmap shows and how.

    Signals
    -------
    visibilityChanged(str, bool), opacityChanged(str, float), outlineChanged(str, bool)
        Layer name and its new visibility, opacity (0..1) or outline mode.
    heatmapChanged(int)
        Class whose probability the heatmap shows; -1 = uncertainty (entropy).
    colormapChanged(str)
        Colour map of the heatmap, one of :data:`segstudio.gui.colormaps.COLORMAPS`.
    """

    visibilityChanged = Signal(str, bool)
    opacityChanged = Signal(str, float)
    outlineChanged = Signal(str, bool)
    heatmapChanged = Signal(int)
    colormapChanged = Signal(str)

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self._rows: dict[str, _LayerRow] = {}
        grid = QGridLayout()
        grid.setColumnStretch(1, 1)
        for line, name in enumerate(LAYER_NAMES):
            row = _LayerRow(name)
            row.visible.toggled.connect(lambda on, n=name: self.visibilityChanged.emit(n, bool(on)))
            row.opacity.valueChanged.connect(lambda v, n=name: self._on_opacity_changed(n, v))
            grid.addWidget(row.visible, line, 0)
            grid.addWidget(row.opacity, line, 1)
            grid.addWidget(row.percent, line, 2)
            if row.outline is not None:
                row.outline.toggled.connect(lambda on, n=name: self.outlineChanged.emit(n, bool(on)))
                grid.addWidget(row.outline, line, 3)
            self._rows[name] = row

        self._heatmap_choice = QComboBox()
        self._heatmap_choice.setToolTip("Class probability to show, or the per-pixel uncertainty")
        self._heatmap_choice.currentIndexChanged.connect(self._on_heatmap_choice_changed)
        self._colormap = QComboBox()
        self._colormap.addItems(COLORMAPS)
        self._colormap.setToolTip("Colour map of the heatmap")
        self._colormap.currentTextChanged.connect(self._on_colormap_changed)
        self._legend = QLabel()
        self._legend.setToolTip("Heatmap scale: probability (or normalised entropy) from 0 to 1")

        choose_row = QHBoxLayout()
        choose_row.addWidget(QLabel("Heatmap shows"))
        choose_row.addWidget(self._heatmap_choice, 1)
        legend_row = QHBoxLayout()
        legend_row.addWidget(self._colormap)
        legend_row.addStretch(1)
        legend_row.addWidget(QLabel("0"))
        legend_row.addWidget(self._legend)
        legend_row.addWidget(QLabel("1"))
        heatmap_box = QVBoxLayout()
        heatmap_box.setContentsMargins(20, 0, 0, 0)  # indent under the heatmap row
        heatmap_box.addLayout(choose_row)
        heatmap_box.addLayout(legend_row)
        self._heatmap_widgets = [self._heatmap_choice, self._colormap, self._legend]

        layout = QVBoxLayout(self)
        layout.setContentsMargins(4, 4, 4, 4)
        layout.addLayout(grid)
        layout.addLayout(heatmap_box)
        layout.addStretch(1)
        self.set_heatmap_choices([])
        self._update_legend()

    # -- setters (never emit) -------------------------------------------------
    def set_layer_state(self, name: str, visible: bool, opacity: float, outline: bool = False) -> None:
        """Show a layer's visibility, opacity (0..1) and, for mask layers, outline mode."""
        row = self._row(name)
        if not 0.0 <= opacity <= 1.0:
            raise InvalidArgumentError(f"opacity of layer {name!r} must be in 0..1, got {opacity}")
        with blocked(*row.widgets()):
            row.visible.setChecked(bool(visible))
            row.opacity.setValue(round(opacity * 100))
            if row.outline is not None:
                row.outline.setChecked(bool(outline))
        row.percent.setText(f"{row.opacity.value()} %")

    def set_layer_available(self, name: str, available: bool) -> None:
        """Grey out a layer that has no data yet (e.g. no prediction)."""
        row = self._row(name)
        widgets = row.widgets() + (self._heatmap_widgets if name == "heatmap" else [])
        for widget in widgets:
            widget.setEnabled(available)
        row.visible.setToolTip("" if available else "Nothing to show yet")

    def set_heatmap_choices(self, names: list[str]) -> None:
        """List the class names the heatmap can show (entropy is always last)."""
        previous = self.heatmap_index()
        with blocked(self._heatmap_choice):
            self._heatmap_choice.clear()
            for index, name in enumerate(names):
                self._heatmap_choice.addItem(str(name), index)
            self._heatmap_choice.addItem(ENTROPY_CHOICE, ENTROPY_INDEX)
            keep = self._heatmap_choice.findData(previous)
            self._heatmap_choice.setCurrentIndex(keep if keep >= 0 else 0)

    def set_heatmap_index(self, i: int) -> None:
        """Select class ``i`` (or -1 for entropy) in the heatmap combo."""
        position = self._heatmap_choice.findData(int(i))
        if position < 0:
            raise InvalidArgumentError(f"heatmap choice {i} out of range (-1 or 0..{self._heatmap_choice.count() - 2})")
        with blocked(self._heatmap_choice):
            self._heatmap_choice.setCurrentIndex(position)

    def set_colormap(self, name: str) -> None:
        """Select a colour map without emitting."""
        if name not in COLORMAPS:
            raise InvalidArgumentError(f"unknown colour map {name!r}; known: {', '.join(COLORMAPS)}")
        with blocked(self._colormap):
            self._colormap.setCurrentText(name)
        self._update_legend()

    # -- getters ---------------------------------------------------------------
    def layer_state(self, name: str) -> tuple[bool, float, bool]:
        """``(visible, opacity 0..1, outline)`` as shown for ``name``."""
        row = self._row(name)
        outline = row.outline.isChecked() if row.outline is not None else False
        return row.visible.isChecked(), row.opacity.value() / 100.0, outline

    def heatmap_index(self) -> int:
        """Class index the heatmap shows, -1 for entropy (also when the list is empty)."""
        data = self._heatmap_choice.currentData()
        return ENTROPY_INDEX if data is None else int(data)

    def colormap(self) -> str:
        """Name of the selected colour map."""
        return self._colormap.currentText()

    # -- handlers ----------------------------------------------------------------
    def _on_opacity_changed(self, name: str, value: int) -> None:
        self._rows[name].percent.setText(f"{value} %")
        self.opacityChanged.emit(name, value / 100.0)

    def _on_heatmap_choice_changed(self, _position: int) -> None:
        self.heatmapChanged.emit(self.heatmap_index())

    def _on_colormap_changed(self, name: str) -> None:
        self._update_legend()
        self.colormapChanged.emit(name)

    def _update_legend(self) -> None:
        self._legend.setPixmap(QPixmap.fromImage(legend_image(self.colormap(), *LEGEND_SIZE)))

    def _row(self, name: str) -> _LayerRow:
        try:
            return self._rows[name]
        except KeyError:
            raise InvalidArgumentError(f"unknown layer {name!r}; layers: {', '.join(LAYER_NAMES)}") from None
