"""The Training dock: settings, Train / Pause / Cancel, live curves, versions,
and the before/after scores of the last run."""

from __future__ import annotations

import math
from typing import Any

import pyqtgraph as pg
from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (
    QAbstractItemView,
    QCheckBox,
    QComboBox,
    QDoubleSpinBox,
    QFormLayout,
    QGridLayout,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QProgressBar,
    QPushButton,
    QSpinBox,
    QTabWidget,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from segstudio.gui.panels._util import blocked

MODES = (("Full (all layers)", False), ("Fast (train the head only)", True))

#: the studio's default run: what a person can wait for, and what converged on real images on a 2-core CPU
DEFAULT_MINUTES = 2

MODE_TIP = ("Fast keeps the backbone as it is and trains the rest: quicker, for a model that already knows the "
            "images; an untrained network always trains in Full")


class IntegerAxis(pg.AxisItem):
    """An axis of whole numbers (epochs, steps): no tick at 2.5 epochs."""

    def tickValues(self, minVal, maxVal, size):  # noqa: N802,N803 (pyqtgraph override)
        levels = [(spacing, [v for v in values if float(v).is_integer()])
                  for spacing, values in super().tickValues(minVal, maxVal, size) if spacing >= 1]
        levels = [(spacing, values) for spacing, values in levels if values]
        if not levels and math.isfinite(minVal) and math.isfinite(maxVal):
            levels = [(1.0, [float(v) for v in range(math.ceil(minVal), math.floor(maxVal) + 1)])]
        return levels

    def tickStrings(self, values, scale, spacing):  # noqa: N802 (pyqtgraph override)
        return [str(int(round(v * scale))) for v in values]


IOU_COLOR, DICE_COLOR = "#3cb44b", "#4363d8"


def _score(value: Any) -> str:
    return "–" if value is None else f"{float(value):.3f}"


class TrainingPanel(QWidget):
    """Views and controls of fine-tuning; the controller does the work."""

    trainRequested = Signal(dict)  # the settings
    pauseRequested = Signal(bool)  # True = pause, False = resume
    cancelRequested = Signal()
    activateRequested = Signal(str)  # version id
    versionSelected = Signal(str)  # version id (to show its stored curves)
    liveToggled = Signal(bool)  # live update on / off
    keepLiveRequested = Signal()  # keep the live model as a version

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self._start_from = QLabel("–")
        self._images = QLabel("0 corrected or reviewed images")
        self._val_share = QDoubleSpinBox()
        self._val_share.setRange(0.0, 0.9)
        self._val_share.setSingleStep(0.05)
        self._val_share.setValue(0.25)
        self._val_share.setToolTip("Share of the corrected images held out to score the new version "
                                   "(images marked reviewed are preferred for validation)")
        self._minutes = QSpinBox()
        self._minutes.setRange(0, 24 * 60)
        self._minutes.setValue(DEFAULT_MINUTES)
        self._minutes.setSuffix(" min")
        self._minutes.setSpecialValueText("no limit")
        self._minutes.setToolTip("Train for this long (the learning rate decays with the clock); the run also "
                                 "ends after the epochs below, if set")
        self._epochs = QSpinBox()
        self._epochs.setRange(0, 10000)
        self._epochs.setValue(0)
        self._epochs.setSpecialValueText("no limit")
        self._epochs.setToolTip("One epoch covers the labelled pixels once (crops of 256 x 256 drawn where the "
                                "labels are)")
        self._mode = QComboBox()
        for text, fast in MODES:
            self._mode.addItem(text, fast)
        self._mode.setToolTip(MODE_TIP)
        self._device = QComboBox()
        self._device.addItems(["auto", "cpu", "cuda", "mps"])
        self._auto_adopt = QCheckBox("Adopt when better")
        self._auto_adopt.setToolTip("When the new version beats its parent on the validation images, make it "
                                    "active and run it on every image not marked reviewed")
        self._auto_adopt.setChecked(True)
        self.live = QCheckBox("Live update")
        self.live.setToolTip("While you paint: a second after the last stroke, a few training steps on this "
                             "project's labels, then this image is predicted again (the model's head learns; "
                             "nothing is saved until you keep it)")
        self.keep_live = QPushButton("Keep as version")
        self.keep_live.setToolTip("Store the live-updated model as a new model version (then Make active to use it)")
        self.keep_live.setEnabled(False)
        self.live_status = QLabel("")
        self.live_status.setWordWrap(True)
        self.live_status.setVisible(False)  # shown while Live update is on
        self._train = QPushButton("Train")
        self._train.setToolTip("Fine-tune a new model version on the corrected and reviewed images (Ctrl+T)")
        self._pause = QPushButton("Pause")
        self._pause.setCheckable(True)
        self._cancel = QPushButton("Cancel")
        self._progress = QProgressBar()
        self._status = QLabel("Idle")
        self._status.setWordWrap(True)

        self.loss_plot = pg.PlotWidget(title="training loss", size="9pt", axisItems={"bottom": IntegerAxis("bottom")})
        self.loss_plot.setMinimumHeight(110)
        self.loss_plot.setMaximumHeight(130)
        self.loss_plot.setLabel("bottom", "step")
        self.loss_curve = self.loss_plot.plot(pen=pg.mkPen("#ffc400", width=1.5))
        # the legend is the title: inside the plot it covered the Dice curve near 1
        self.score_plot = pg.PlotWidget(
            title=f"val. <span style='color:{IOU_COLOR}'>&#9679; mIoU</span>&nbsp;"
                  f"<span style='color:{DICE_COLOR}'>&#9660; Dice</span>", size="9pt",
            axisItems={"bottom": IntegerAxis("bottom")})
        self.score_plot.setMinimumHeight(110)
        self.score_plot.setMaximumHeight(130)
        self.score_plot.setLabel("bottom", "epoch")
        # scores run 0..1: a fixed range, so that a curve near 1 is not on the frame
        self.score_plot.setYRange(0.0, 1.0, padding=0.04)
        self.score_plot.getPlotItem().getViewBox().enableAutoRange(y=False)
        self.iou_curve = self.score_plot.plot(pen=pg.mkPen(IOU_COLOR, width=2), symbol="o", symbolSize=5,
                                              name="mean IoU")
        self.dice_curve = self.score_plot.plot(pen=pg.mkPen(DICE_COLOR, width=2), symbol="t", symbolSize=5,
                                               name="mean Dice")

        self.versions = QTableWidget(0, 4)
        self.versions.setHorizontalHeaderLabels(["version", "from", "val mIoU", "status"])
        self.versions.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.versions.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.versions.verticalHeader().setVisible(False)
        self.versions.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeMode.Stretch)
        self.versions.setMinimumHeight(90)
        self._make_active = QPushButton("Make active")
        self._rollback = QPushButton("Roll back to parent")
        self.comparison = QTableWidget(0, 3)
        self.comparison.setHorizontalHeaderLabels(["class", "before (IoU)", "after (IoU)"])
        self.comparison.verticalHeader().setVisible(False)
        self.comparison.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.comparison.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeMode.Stretch)

        # compact: at 1400 x 900 the versions were below the fold under a one-column form
        info = QFormLayout()
        info.addRow("Start from", self._start_from)
        info.addRow("Train on", self._images)
        grid = QGridLayout()
        for row, pairs in enumerate(((("Validation", self._val_share), ("Train for", self._minutes)),
                                     (("Epochs", self._epochs), ("Device", self._device)))):
            for pair, (text, box) in enumerate(pairs):
                grid.addWidget(QLabel(text), row, 2 * pair)
                grid.addWidget(box, row, 2 * pair + 1)
        grid.addWidget(QLabel("Mode"), 2, 0)
        grid.addWidget(self._mode, 2, 1, 1, 3)
        grid.setColumnStretch(1, 1)
        grid.setColumnStretch(3, 1)
        buttons = QHBoxLayout()
        for button in (self._train, self._pause, self._cancel):
            buttons.addWidget(button)
        version_buttons = QHBoxLayout()
        version_buttons.addWidget(self._make_active)
        version_buttons.addWidget(self._rollback)
        versions_page = QWidget()
        versions_layout = QVBoxLayout(versions_page)
        versions_layout.setContentsMargins(0, 0, 0, 0)
        versions_layout.addWidget(self.versions)
        versions_layout.addLayout(version_buttons)
        self.results = QTabWidget()
        self.results.addTab(versions_page, "Model versions")
        self.results.addTab(self.comparison, "Last run by class")
        self.results.setTabToolTip(1, "The parent (before) and the new version (after) on the same validation "
                                      "images, IoU per class")
        layout = QVBoxLayout(self)
        layout.addLayout(info)
        layout.addLayout(grid)
        # one row: at 1400 x 900 a row more pushed the versions below the fold
        options = QHBoxLayout()
        options.addWidget(self._auto_adopt)
        options.addWidget(self.live)
        options.addStretch(1)
        options.addWidget(self.keep_live)
        layout.addLayout(options)
        layout.addWidget(self.live_status)
        layout.addLayout(buttons)
        layout.addWidget(self._progress)
        layout.addWidget(self._status)
        plots = QHBoxLayout()  # side by side: stacked they pushed the versions out of sight
        plots.addWidget(self.loss_plot)
        plots.addWidget(self.score_plot)
        layout.addLayout(plots)
        layout.addWidget(self.results)

        self._train.clicked.connect(lambda: self.trainRequested.emit(self.settings()))
        self._pause.toggled.connect(self._on_pause_toggled)
        self.live.toggled.connect(self.liveToggled.emit)
        self.keep_live.clicked.connect(self.keepLiveRequested.emit)
        self._cancel.clicked.connect(self.cancelRequested.emit)
        self._make_active.clicked.connect(self._on_make_active_clicked)
        self._rollback.clicked.connect(self._on_rollback_clicked)
        self.versions.itemSelectionChanged.connect(self._on_version_selection_changed)
        self._parents: dict[str, str | None] = {}
        self.set_running(False)

    # -- setters (no signals) ---------------------------------------------------
    def settings(self) -> dict[str, Any]:
        return {
            "epochs": self._epochs.value() or None,
            "time_budget_s": self._minutes.value() * 60.0 or None,
            "freeze_backbone": bool(self._mode.currentData()),
            "device": self._device.currentText(),
            "val_fraction": self._val_share.value(),
            "auto_adopt": self._auto_adopt.isChecked(),
        }

    def set_start_from(self, text: str, *, untrained: bool) -> None:
        """Say what a run starts from; an untrained start trains in Full mode
        (Fast would keep a random backbone and learn next to nothing)."""
        self._start_from.setText(text)
        if untrained:
            with blocked(self._mode):
                self._mode.setCurrentIndex(self._mode.findData(False))
            self._mode.setToolTip("An untrained network trains all its layers (Full)")
        else:
            self._mode.setToolTip(MODE_TIP)

    def reset(self) -> None:
        """Forget what was shown for the previous project: curves, scores, status, mode."""
        self.set_running(False)
        self.set_curves([], [], [], [])
        self.comparison.setRowCount(0)
        self._progress.setRange(0, 1)
        self._progress.setValue(0)
        self._status.setText("Idle")
        with blocked(self._mode):
            self._mode.setCurrentIndex(self._mode.findData(False))

    def set_image_count(self, count: int, slide_regions: int = 0) -> None:
        text = f"{count} corrected or reviewed image(s)"
        if slide_regions:
            text += f", {slide_regions} labelled slide region(s)"
        self._images.setText(text)

    def set_running(self, running: bool) -> None:
        self._train.setEnabled(not running)
        self._pause.setEnabled(running)
        self._cancel.setEnabled(running)
        if not running:
            with blocked(self._pause):
                self._pause.setChecked(False)
                self._pause.setText("Pause")

    def set_paused(self, paused: bool) -> None:
        with blocked(self._pause):
            self._pause.setChecked(paused)
            self._pause.setText("Resume" if paused else "Pause")

    def set_progress(self, done: int, total: int, text: str) -> None:
        if total > 0:
            self._progress.setRange(0, total)
            self._progress.setValue(min(done, total))
        else:
            self._progress.setRange(0, 0)
        self._status.setText(text)

    def set_curves(self, losses: list[float], epochs: list[int], ious: list[float], dices: list[float]) -> None:
        self.loss_curve.setData(list(range(1, len(losses) + 1)), losses)
        self.iou_curve.setData(epochs, ious)
        self.dice_curve.setData(epochs, dices)

    def set_versions(self, versions: list[Any], active_id: str | None) -> None:
        self._parents = {v.id: v.parent for v in versions}
        self.versions.setRowCount(len(versions))
        active_row = -1
        for row, version in enumerate(versions):
            marker = " (active)" if version.id == active_id else ""
            status = "collapsed" if getattr(version, "collapsed", False) else version.status
            cells = [f"{version.id}{marker}", version.parent or version.name, _score(version.mean_iou), status]
            for column, text in enumerate(cells):
                item = QTableWidgetItem(text)
                item.setData(Qt.ItemDataRole.UserRole, version.id)
                if version.id == active_id:
                    font = item.font()
                    font.setBold(True)
                    item.setFont(font)
                self.versions.setItem(row, column, item)
            if version.id == active_id:
                active_row = row
        if active_row >= 0:
            with blocked(self.versions):
                self.versions.selectRow(active_row)

    def set_comparison(self, class_names: list[str], before: dict | None, after: dict | None) -> None:
        rows = [*class_names, "mean"]
        self.comparison.setRowCount(len(rows))
        for row, name in enumerate(rows):
            key = "mean_iou" if name == "mean" else None

            def pick(scores, key=key, row=row):
                if scores is None:
                    return None
                return scores.get(key) if key else (scores.get("iou") or [None] * (row + 1))[row]

            for column, text in enumerate([name, _score(pick(before)), _score(pick(after))]):
                self.comparison.setItem(row, column, QTableWidgetItem(text))

    def request_training(self) -> bool:
        """Model > Train a new version (Ctrl+T): what the Train button does, while it is enabled."""
        if not self._train.isEnabled():
            return False
        self._train.click()
        return True

    # -- handlers ---------------------------------------------------------------
    def _selected_version(self) -> str | None:
        items = self.versions.selectedItems()
        return items[0].data(Qt.ItemDataRole.UserRole) if items else None

    def _on_version_selection_changed(self) -> None:
        version = self._selected_version()
        if version:
            self.versionSelected.emit(version)

    def _on_make_active_clicked(self) -> None:
        version = self._selected_version()
        if version:
            self.activateRequested.emit(version)

    def _on_rollback_clicked(self) -> None:
        version = self._selected_version()
        parent = self._parents.get(version) if version else None
        if parent:
            self.activateRequested.emit(parent)

    def _on_pause_toggled(self, paused: bool) -> None:
        self._pause.setText("Resume" if paused else "Pause")
        self.pauseRequested.emit(paused)
