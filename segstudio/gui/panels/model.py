"""Model choice, inference settings and the run / cancel controls."""

from __future__ import annotations

import logging

import torch
from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import QKeySequence, QShortcut
from PySide6.QtWidgets import (
    QComboBox,
    QFileDialog,
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QProgressBar,
    QPushButton,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)

from segstudio.errors import InvalidArgumentError, SegstudioError
from segstudio.gui.panels._util import blocked
from segstudio.models import list_models

logger = logging.getLogger(__name__)

DEVICES = ("auto", "cpu", "cuda", "mps")
PRECISIONS = ("auto", "fp32", "bf16", "fp16")
SETTING_KEYS = ("architecture", "checkpoint", "device", "precision", "tile")
# The main window owns these shortcuts as window-wide actions; the panel only
# names them (a second QShortcut on the same keys would make both ambiguous).
RUN_SHORTCUT = "Ctrl+R"
RUN_ALL_SHORTCUT = "Ctrl+Shift+R"
CHECKPOINT_FILTER = "Checkpoints (*.safetensors *.pt *.pth);;All files (*)"


def default_settings() -> dict:
    """What a project that names no model settings starts with (no checkpoint)."""
    return {"architecture": list_models()[0], "checkpoint": "", "device": "auto", "precision": "auto", "tile": 512}


def available_devices() -> dict[str, bool]:
    """Whether each entry of :data:`DEVICES` can run on this machine."""
    mps = getattr(torch.backends, "mps", None)
    return {
        "auto": True,
        "cpu": True,
        "cuda": bool(torch.cuda.is_available()),
        "mps": bool(mps is not None and mps.is_available()),
    }


def device_choices() -> list[str]:
    """The devices the Device box offers: only those that exist here (and auto)."""
    return [name for name, ok in available_devices().items() if ok]


class ModelPanel(QWidget):
    """Pick a network and its checkpoint, then run it on one or all images.

    Signals
    -------
    runRequested(bool)
        Run the model; True means on every image, False on the current one.
    cancelRequested()
        Stop the run in progress.
    settingsChanged(dict)
        The user changed a setting; the dict is :meth:`settings`.
    """

    runRequested = Signal(bool)
    cancelRequested = Signal()
    settingsChanged = Signal(dict)

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self._architecture = QComboBox()
        self._architecture.addItems(list_models())
        self._architecture.setToolTip("Network family; must match the checkpoint")

        self._checkpoint = QLineEdit()
        self._checkpoint.setPlaceholderText("untrained (no checkpoint)")
        self._checkpoint.setToolTip("Weights file: .safetensors, or a PyTorch .pt / .pth")
        self._browse_button = QPushButton("Browse…")
        self._browse_button.clicked.connect(self._on_browse_clicked)

        self._device = QComboBox()
        self._device.setObjectName("device")
        # a device this machine lacks is not offered at all (a greyed entry was
        # still reachable with the wheel and failed only at the next run)
        self._device.addItems(device_choices())
        self._device.setToolTip("Where the network runs; auto picks CUDA, then MPS, then CPU")

        self._precision = QComboBox()
        self._precision.setObjectName("precision")
        self._precision.addItems(PRECISIONS)
        self._precision.setToolTip("Number format; auto uses bf16/fp16 on GPUs and fp32 on the CPU")

        self._tile = QSpinBox()
        self._tile.setRange(64, 4096)
        self._tile.setSingleStep(64)
        self._tile.setValue(512)
        self._tile.setSuffix(" px")
        self._tile.setToolTip("Large images are cut into overlapping tiles of this size")

        self._run_one = QPushButton(f"Run on this image ({RUN_SHORTCUT})")
        self._run_one.setToolTip(f"Predict the current image ({RUN_SHORTCUT})")
        self._run_all = QPushButton("Run on all images")
        self._run_all.setToolTip(f"Predict every image of the project ({RUN_ALL_SHORTCUT})")
        self._cancel = QPushButton("Cancel")
        self._cancel.setToolTip("Stop the run (Esc while this panel has the focus)")
        escape = QShortcut(QKeySequence(Qt.Key.Key_Escape), self, context=Qt.ShortcutContext.WidgetWithChildrenShortcut)
        escape.activated.connect(self._on_escape_pressed)
        self._progress = QProgressBar()
        self._progress.setTextVisible(True)
        self._status = QLabel("Idle")
        self._status.setWordWrap(True)
        self._status.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)

        self._run_one.clicked.connect(lambda: self.runRequested.emit(False))
        self._run_all.clicked.connect(lambda: self.runRequested.emit(True))
        self._cancel.clicked.connect(self.cancelRequested.emit)
        self._architecture.currentIndexChanged.connect(self._on_setting_changed)
        self._device.currentIndexChanged.connect(self._on_setting_changed)
        self._precision.currentIndexChanged.connect(self._on_setting_changed)
        self._tile.valueChanged.connect(self._on_setting_changed)
        self._checkpoint.editingFinished.connect(self._on_checkpoint_changed)
        self._last_checkpoint = ""

        checkpoint_row = QHBoxLayout()
        checkpoint_row.addWidget(self._checkpoint, 1)
        checkpoint_row.addWidget(self._browse_button)
        form = QFormLayout()
        form.addRow("Architecture", self._architecture)
        form.addRow("Checkpoint", checkpoint_row)
        form.addRow("Device", self._device)
        form.addRow("Precision", self._precision)
        form.addRow("Tile size", self._tile)
        run_row = QHBoxLayout()
        run_row.addWidget(self._run_all, 1)
        run_row.addWidget(self._cancel)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(4, 4, 4, 4)
        layout.addLayout(form)
        layout.addWidget(self._run_one)
        layout.addLayout(run_row)
        layout.addWidget(self._progress)
        layout.addWidget(self._status)
        # what the chosen checkpoint is: the panel's lower half was empty
        self.about_box = QGroupBox("This model")
        self._about = QFormLayout(self.about_box)
        self._about.setFieldGrowthPolicy(QFormLayout.FieldGrowthPolicy.AllNonFixedFieldsGrow)
        layout.addWidget(self.about_box)
        layout.addStretch(1)
        self._settings_widgets = (
            self._architecture, self._checkpoint, self._browse_button, self._device, self._precision, self._tile,
        )
        self.set_running(False)
        self.describe_checkpoint("")

    # -- settings ------------------------------------------------------------
    def settings(self) -> dict:
        """The current settings: architecture, checkpoint ("" = none), device, precision, tile."""
        return {
            "architecture": self._architecture.currentText(),
            "checkpoint": self._checkpoint.text().strip(),
            "device": self._device.currentText(),
            "precision": self._precision.currentText(),
            "tile": int(self._tile.value()),
        }

    def set_settings(self, d: dict) -> None:
        """Show ``d`` (any subset of :meth:`settings`' keys) without emitting.

        Raises
        ------
        InvalidArgumentError
            On an unknown key or a value the panel cannot show.
        """
        unknown = sorted(set(d) - set(SETTING_KEYS))
        if unknown:
            raise InvalidArgumentError(
                f"unknown model setting(s) {', '.join(unknown)}; known: {', '.join(SETTING_KEYS)}"
            )
        with blocked(*self._settings_widgets):
            if "architecture" in d:
                _select(self._architecture, str(d["architecture"]), "architecture")
            if "checkpoint" in d:
                self._last_checkpoint = str(d["checkpoint"] or "")
                self._checkpoint.setText(self._last_checkpoint)
                self.describe_checkpoint(self._last_checkpoint)
            if "device" in d:
                device = str(d["device"])
                if device in DEVICES and device not in device_choices():
                    # a project saved on a GPU machine opened on a laptop
                    logger.info("device %s is not available here; using auto", device)
                    device = "auto"
                _select(self._device, device, "device")
            if "precision" in d:
                _select(self._precision, str(d["precision"]), "precision")
            if "tile" in d:
                tile = int(d["tile"])
                if not self._tile.minimum() <= tile <= self._tile.maximum():
                    raise InvalidArgumentError(f"tile size must be 64..4096 px, got {tile}")
                self._tile.setValue(tile)

    def show_project(self, project_settings: dict) -> list[str]:
        """Show a newly opened project: the defaults overlaid with *project_settings*
        (its saved model settings), no run, status "Idle"; nothing of the previous
        project stays. Returns what could not be shown (an unknown key or value is
        skipped, so a hand-edited project file still opens)."""
        problems = []
        self.set_settings(default_settings())
        for key, value in (project_settings or {}).items():
            try:
                self.set_settings({key: value})
            except (InvalidArgumentError, TypeError, ValueError) as error:
                logger.warning("model setting %s=%r of the project is ignored: %s", key, value, error)
                problems.append(f"{key}: {error}")
        self.set_running(False)
        self.set_progress(0, 1, "Idle")
        return problems

    # -- run state -------------------------------------------------------------
    def set_running(self, running: bool) -> None:
        """Enable Cancel (and lock the settings) while a run is in progress."""
        self._cancel.setEnabled(running)
        self._run_one.setEnabled(not running)
        self._run_all.setEnabled(not running)
        for widget in self._settings_widgets:
            widget.setEnabled(not running)
        if not running:
            self._progress.setRange(0, 1)
            self._progress.setValue(0)

    def set_progress(self, done: int, total: int, text: str) -> None:
        """Show ``done`` of ``total`` units (``total`` 0 = unknown) and a status line."""
        if total <= 0:
            self._progress.setRange(0, 0)  # busy indicator
        else:
            self._progress.setRange(0, total)
            self._progress.setValue(max(0, min(done, total)))
        self._status.setText(text)

    def is_running(self) -> bool:
        """Whether the panel is showing a run in progress."""
        return self._cancel.isEnabled()

    # -- dialogs (tests replace these) --------------------------------------------
    def _ask_checkpoint_path(self) -> str | None:
        path, _filter = QFileDialog.getOpenFileName(self, "Open checkpoint", self._checkpoint.text(), CHECKPOINT_FILTER)
        return path or None

    # -- handlers ----------------------------------------------------------------
    def _on_browse_clicked(self) -> None:
        path = self._ask_checkpoint_path()
        if path:
            self._checkpoint.setText(path)
            self._on_checkpoint_changed()

    def _on_escape_pressed(self) -> None:
        if self._cancel.isEnabled():
            self.cancelRequested.emit()

    def _on_checkpoint_changed(self) -> None:
        text = self._checkpoint.text().strip()
        if text != self._last_checkpoint:
            self._last_checkpoint = text
            if text:
                self._adopt_checkpoint_architecture(text)
            self.describe_checkpoint(text)
            self.settingsChanged.emit(self.settings())

    def describe_checkpoint(self, path: str) -> None:
        """Fill "This model" from the checkpoint's metadata (its weights stay on disk)."""
        from segstudio.models.checkpoint import read_meta
        from segstudio.models.checkpoint_info import describe_checkpoint

        while self._about.rowCount():
            self._about.removeRow(0)
        if not path:
            rows = [("", "No checkpoint: the network starts untrained. Choose trained weights with Browse…, "
                         "or train one in the Training panel.")]
        else:
            try:
                rows = describe_checkpoint(read_meta(path))
            except SegstudioError as error:
                rows = [("", f"Its description cannot be read: {error}")]
        for label, text in rows:
            value = QLabel(text)
            value.setWordWrap(True)
            value.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
            self._about.addRow(label, value)

    def about_rows(self) -> list[tuple[str, str]]:
        """What "This model" shows, as (label, text) rows (for tests and screenshots)."""
        rows = []
        for row in range(self._about.rowCount()):
            label = self._about.itemAt(row, QFormLayout.ItemRole.LabelRole)
            field = self._about.itemAt(row, QFormLayout.ItemRole.FieldRole)
            label_text = label.widget().text() if label is not None else ""
            rows.append((label_text, field.widget().text() if field is not None else ""))
        return rows

    def _adopt_checkpoint_architecture(self, path: str) -> None:
        """The architecture follows the chosen checkpoint: its metadata names it."""
        from segstudio.models.checkpoint import read_meta

        try:
            meta = read_meta(path)
        except SegstudioError as error:
            # a .pt without segstudio metadata is loaded into the chosen architecture
            self._status.setText(f"{error}; the architecture stays {self._architecture.currentText()}")
            return
        if self._architecture.findText(meta.architecture) < 0:
            self._status.setText(f"{path} holds a {meta.architecture!r} model, which this version cannot build")
            return
        with blocked(self._architecture):
            _select(self._architecture, meta.architecture, "architecture")
        self._status.setText(f"{meta.architecture}, {meta.num_classes} classes: {', '.join(meta.class_names)}")

    def _on_setting_changed(self, *_args) -> None:
        self.settingsChanged.emit(self.settings())


def _select(combo: QComboBox, text: str, what: str) -> None:
    index = combo.findText(text)
    if index < 0:
        choices = ", ".join(combo.itemText(i) for i in range(combo.count()))
        raise InvalidArgumentError(f"unknown {what} {text!r}; expected one of {choices}")
    combo.setCurrentIndex(index)
