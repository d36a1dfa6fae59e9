"""Dense-CRF settings with a debounced live preview."""

from __future__ import annotations

from dataclasses import dataclass

from PySide6.QtCore import QSettings, Qt, QTimer, Signal
from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QProgressBar,
    QPushButton,
    QVBoxLayout,
    QWidget,
)
from superqt import QLabeledDoubleSlider, QLabeledSlider

from segstudio.gui.panels._util import ignore_wheel_unless_focused
from segstudio.refine import CRFParams
from segstudio.refine.crf import pydensecrf_available

DEBOUNCE_MS = 300


@dataclass(frozen=True)
class _SliderSpec:
    field: str
    label: str
    low: float
    high: float
    integer: bool
    tooltip: str


_SPECS = (
    _SliderSpec(
        "bilateral_weight", "Bilateral weight w1", 1.0, 20.0, False,
        "Strength of the appearance kernel: pulls pixels of similar colour that are near each other\n"
        "into the same class, so labels snap to image edges. DeepLab: w1 in [5, 10].",
    ),
    _SliderSpec(
        "bilateral_sxy", "Bilateral σα (px)", 10.0, 200.0, True,
        "How far (in pixels) the appearance kernel reaches. Larger values let colour\n"
        "similarity spread labels across bigger regions. DeepLab: σα in [50, 100] px.",
    ),
    _SliderSpec(
        "bilateral_srgb", "Bilateral σβ (colour)", 1.0, 30.0, False,
        "How different two colours (8-bit units) may be and still count as similar.\n"
        "Smaller values follow edges more tightly. DeepLab: σβ in [3, 10].",
    ),
    _SliderSpec(
        "gaussian_weight", "Gaussian weight w2", 0.5, 10.0, False,
        "Strength of the smoothness kernel, which removes small isolated blobs\n"
        "whatever the colour. DeepLab: w2 = 3.",
    ),
    _SliderSpec(
        "gaussian_sxy", "Gaussian σγ (px)", 1.0, 10.0, False,
        "Reach of the smoothness kernel in pixels. DeepLab: σγ = 3 px.",
    ),
    _SliderSpec(
        "iterations", "Iterations", 1.0, 30.0, True,
        "Mean-field iterations. More converge further but take longer. DeepLab: 10.",
    ),
)


#: (value, text, tooltip) of the Backend choices
_BACKENDS = (
    ("auto", "Auto", "PyTorch, on the GPU when there is one: unlike pydensecrf2 it lets the window answer\n"
                     "while it works"),
    ("pydensecrf", "pydensecrf2 (CPU)", "The reference implementation: compiled C++, one CPU thread; the window\n"
                                        "stutters while it works (it holds Python's lock)"),
    ("torch", "PyTorch", "The PyTorch permutohedral lattice: on the GPU when there is one, else the CPU"),
)
#: (value, text, tooltip) of the choices for volumes
_VOLUME_MODES = (
    ("plane", "Shown plane", "Refine the plane on screen (axial, coronal or sagittal) as a 2-D image"),
    ("volume", "Whole volume (3-D)",
     "Refine the whole volume at once: the kernels reach across slices in millimetres (from the spacing),\n"
     "the appearance kernel sees the windowed intensity"),
)


class CRFPanel(QWidget):
    """Sliders for :class:`segstudio.refine.CRFParams` and the accept button.

    Signals
    -------
    paramsSettled(object)
        A :class:`CRFParams`, once the sliders have been still for
        :data:`DEBOUNCE_MS` ms, or when live preview is switched on. Only
        emitted while live preview is on.
    runRequested(object)
        A :class:`CRFParams`: compute the CRF now (the Run CRF button),
        whether live preview is on or not.
    acceptRequested()
        Replace the labels with the CRF result.
    scribbleRefineRequested()
        Refine the prediction of the whole image with the scribbles (the
        Scribble tool's strokes) as hard constraints, with these settings.
    scribblesClearRequested()
        Forget the scribbles of this image (they stay as labels).

    The Backend and Volume (shown plane or whole volume) choices are kept between starts
    (QSettings) and count as settings: changing one re-runs the preview.
    """

    paramsSettled = Signal(object)
    runRequested = Signal(object)
    acceptRequested = Signal()
    scribbleRefineRequested = Signal()
    scribblesClearRequested = Signal()

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self._sliders: dict[str, QLabeledSlider | QLabeledDoubleSlider] = {}
        self._timer = QTimer(self)
        self._timer.setSingleShot(True)
        self._timer.setInterval(DEBOUNCE_MS)
        self._timer.timeout.connect(self._on_timer_timeout)

        form = QFormLayout()
        form.setFieldGrowthPolicy(QFormLayout.FieldGrowthPolicy.AllNonFixedFieldsGrow)
        form.setVerticalSpacing(3)  # the Model / Training dock above needs the height
        for spec in _SPECS:
            slider = self._make_slider(spec)
            label = QLabel(spec.label)
            label.setToolTip(spec.tooltip)
            form.addRow(label, slider)
            self._sliders[spec.field] = slider
        self._backend = self._make_choice("crf_backend", _BACKENDS, "crf/backend")
        if not pydensecrf_available():
            self._backend.model().item(1).setEnabled(False)  # pydensecrf2 is not installed
        self._volume_mode = self._make_choice("crf_volume_mode", _VOLUME_MODES, "crf/volume_mode")
        self._volume_label = QLabel("Volume")
        choices = QHBoxLayout()  # one row: the dock above needs the height
        choices.setContentsMargins(0, 0, 0, 0)
        choices.addWidget(self._backend, 1)
        choices.addWidget(self._volume_label)
        choices.addWidget(self._volume_mode, 1)
        form.addRow("Backend", choices)
        self.set_volume(False)

        self._preview = QCheckBox("Live preview")
        self._preview.setObjectName("crf_preview")
        self._preview.setChecked(True)
        self._preview.setToolTip("Recompute the CRF mask on the current image whenever a setting changes")
        self._preview.toggled.connect(self._on_preview_changed)
        self._busy_label = QLabel("")
        self._busy_label.setObjectName("crf_status")
        self._busy_label.setAlignment(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
        self._busy_label.setWordWrap(True)
        self._progress = QProgressBar()
        self._progress.setObjectName("crf_progress")
        self._progress.setMaximumHeight(12)
        self._progress.setTextVisible(False)
        self._progress.setVisible(False)
        self._reset_button = QPushButton("Defaults")
        self._reset_button.setToolTip("Back to the DeepLab defaults: w1 = 5, σα = 50, σβ = 5, w2 = 3, σγ = 3, "
                                      "10 iterations")
        self._reset_button.clicked.connect(self._on_reset_clicked)
        self._run_button = QPushButton("Run CRF")
        self._run_button.setObjectName("crf_run")
        self._run_button.setToolTip("Compute the CRF mask of this image with these settings now")
        self._run_button.clicked.connect(lambda: self.runRequested.emit(self.params()))
        self._accept_button = QPushButton("Accept CRF mask")
        self._accept_button.setObjectName("crf_accept")
        self._accept_button.setToolTip("Replace the labels of this image with the CRF result (one undo step)")
        self._accept_button.clicked.connect(self.acceptRequested.emit)
        self._scribble_button = QPushButton("Refine with scribbles")
        self._scribble_button.setObjectName("crf_scribbles")
        self._scribble_button.setToolTip(
            "Run the CRF on the whole image with the strokes of the Scribble tool (S) as hard constraints:\n"
            "scribbled pixels keep their class and pull similar-looking pixels near them along.\n"
            "Each Scribble stroke already does this around itself.")
        self._scribble_button.clicked.connect(self.scribbleRefineRequested.emit)
        self._clear_scribbles_button = QPushButton("Clear scribbles")
        self._clear_scribbles_button.setObjectName("crf_clear_scribbles")
        self._clear_scribbles_button.setToolTip("Forget this image's scribbles (their pixels stay labelled)")
        self._clear_scribbles_button.setEnabled(False)
        self._clear_scribbles_button.clicked.connect(self.scribblesClearRequested.emit)

        preview_row = QHBoxLayout()
        preview_row.addWidget(self._preview)
        preview_row.addWidget(self._busy_label, 1)
        preview_row.addWidget(self._reset_button)  # a row of its own pushed the dock above out of room
        buttons = QHBoxLayout()
        buttons.addWidget(self._run_button)
        buttons.addWidget(self._accept_button)
        scribble_buttons = QHBoxLayout()
        scribble_buttons.addWidget(self._scribble_button)
        scribble_buttons.addWidget(self._clear_scribbles_button)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(4, 4, 4, 4)
        layout.addLayout(form)
        layout.addLayout(preview_row)
        layout.addWidget(self._progress)
        layout.addLayout(buttons)
        layout.addLayout(scribble_buttons)
        layout.addStretch(1)
        self.set_params(CRFParams())

    def _make_choice(self, name: str, choices, key: str) -> QComboBox:
        combo = QComboBox()
        combo.setObjectName(name)
        for value, text, tooltip in choices:
            combo.addItem(text, value)
            combo.setItemData(combo.count() - 1, tooltip, Qt.ItemDataRole.ToolTipRole)
        saved = combo.findData(QSettings().value(key, choices[0][0]))
        if saved >= 0 and combo.model().item(saved).isEnabled():
            combo.setCurrentIndex(saved)
        combo.setToolTip("\n".join(f"{text}: {tooltip}" for _, text, tooltip in choices))
        ignore_wheel_unless_focused(combo)
        combo.currentIndexChanged.connect(lambda _: self._on_choice_changed(combo, key))
        return combo

    def _make_slider(self, spec: _SliderSpec) -> QLabeledSlider | QLabeledDoubleSlider:
        if spec.integer:
            slider = QLabeledSlider(Qt.Orientation.Horizontal)
            slider.setRange(int(spec.low), int(spec.high))
        else:
            slider = QLabeledDoubleSlider(Qt.Orientation.Horizontal)
            slider.setRange(spec.low, spec.high)
            slider.setDecimals(1)
            slider.setSingleStep(0.1)
        slider.setToolTip(spec.tooltip)
        slider.valueChanged.connect(self._on_slider_changed)
        return slider

    # -- API -------------------------------------------------------------------
    def params(self) -> CRFParams:
        """The settings the sliders show."""
        values = {name: slider.value() for name, slider in self._sliders.items()}
        values["iterations"] = int(round(values["iterations"]))
        return CRFParams(**values)

    def set_params(self, p: CRFParams) -> None:
        """Show ``p`` without emitting; a slider widens its range for an outlying value."""
        for name, slider in self._sliders.items():
            value = getattr(p, name)
            slider.blockSignals(True)
            try:
                # widen rather than clamp: params() must give back what was set
                if value < slider.minimum():
                    slider.setMinimum(value)
                if value > slider.maximum():
                    slider.setMaximum(value)
                slider.setValue(value)
            finally:
                slider.blockSignals(False)
        self._timer.stop()

    def backend(self) -> str:
        """The chosen CRF backend: "auto", "pydensecrf" or "torch"."""
        return str(self._backend.currentData())

    def volume_mode(self) -> str:
        """How a volume is refined: "plane" (the shown one) or "volume" (3-D)."""
        return str(self._volume_mode.currentData())

    def set_volume(self, is_volume: bool) -> None:
        """Offer the choice for volumes (Shown plane / Whole volume) while a volume is shown."""
        self._volume_mode.setEnabled(is_volume)
        self._volume_mode.setVisible(is_volume)
        self._volume_label.setVisible(is_volume)

    def preview_enabled(self) -> bool:
        """Whether live preview is switched on."""
        return self._preview.isChecked()

    def set_busy(self, busy: bool, text: str = "", fraction: float | None = None) -> None:
        """Show that a CRF is being computed (with *text*, e.g. its progress, and a
        bar: *fraction* done, or a moving bar when None); Accept waits for it."""
        self._busy_label.setText((text or "computing…") if busy else "")
        self._busy_label.setToolTip("")
        self._busy_label.setStyleSheet("")
        self._accept_button.setEnabled(not busy)
        self._progress.setVisible(busy)
        if busy and fraction is None:
            self._progress.setRange(0, 0)  # busy indicator
        elif busy:
            self._progress.setRange(0, 1000)
            self._progress.setValue(int(round(1000 * min(1.0, max(0.0, fraction)))))

    def is_busy(self) -> bool:
        """Whether the busy indicator is shown."""
        return not self._progress.isHidden()

    def show_message(self, text: str, *, problem: bool = False) -> None:
        """Show *text* under the settings (why the CRF did not run) until the next run."""
        self._busy_label.setText(text)
        self._busy_label.setToolTip(text)
        self._busy_label.setStyleSheet("color: #b00020;" if problem else "")

    def set_scribble_count(self, pixels: int) -> None:
        """How many pixels of this image are scribbled (Clear scribbles is enabled when any)."""
        self._clear_scribbles_button.setEnabled(pixels > 0)
        self._clear_scribbles_button.setToolTip(
            f"Forget this image's scribbles ({pixels} pixels; they stay labelled)" if pixels
            else "Forget this image's scribbles (their pixels stay labelled)")

    def message(self) -> str:
        """The busy or refusal text shown now ("" when none)."""
        return self._busy_label.text()

    # -- handlers ----------------------------------------------------------------
    def _on_slider_changed(self, _value) -> None:
        if self._preview.isChecked():
            self._timer.start()  # restarts: only the last change of a burst counts

    def _on_timer_timeout(self) -> None:
        self.paramsSettled.emit(self.params())

    def _on_choice_changed(self, combo: QComboBox, key: str) -> None:
        QSettings().setValue(key, combo.currentData())
        if self._preview.isChecked():
            self._timer.start()

    def _on_preview_changed(self, checked: bool) -> None:
        self._timer.stop()
        if checked:
            self.paramsSettled.emit(self.params())

    def _on_reset_clicked(self) -> None:
        for name, slider in self._sliders.items():
            slider.setValue(getattr(CRFParams(), name))
