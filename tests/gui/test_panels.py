"""The dock panels: setters show values silently, user actions emit signals."""

from enum import Enum
from pathlib import Path

import numpy as np
import pytest
import torch
from PySide6.QtCore import QPoint, Qt
from PySide6.QtGui import QColor
from PySide6.QtWidgets import QDialog, QDialogButtonBox

from segstudio.errors import InvalidArgumentError
from segstudio.gui.colormaps import COLORMAPS, colormap_lut, legend_image
from segstudio.gui.dialogs import ExportDialog
from segstudio.gui.panels import ClassesPanel, CRFPanel, ImagesPanel, LayersPanel, ModelPanel
from segstudio.gui.panels import classes as classes_module
from segstudio.gui.panels.crf import DEBOUNCE_MS
from segstudio.gui.panels.images import THUMBNAIL_SIZE
from segstudio.models import list_models
from segstudio.refine import CRFParams


def _shown(qtbot, widget):
    qtbot.addWidget(widget)
    widget.resize(320, 400)
    widget.show()
    qtbot.waitExposed(widget)
    return widget


# -- colour maps --------------------------------------------------------------------
@pytest.mark.parametrize(
    ("name", "index", "expected"),
    [
        ("viridis", 0, (68, 1, 84)),
        ("viridis", 128, (33, 145, 140)),
        ("viridis", 255, (253, 231, 37)),
        ("magma", 0, (0, 0, 4)),
        ("magma", 128, (183, 55, 121)),
        ("magma", 255, (252, 253, 191)),
    ],
)
def test_colormap_matches_published_values(name, index, expected):
    lut = colormap_lut(name)
    assert lut.shape == (256, 3) and lut.dtype == np.uint8
    assert np.abs(lut[index].astype(int) - expected).max() <= 3


@pytest.mark.parametrize("name", COLORMAPS)
def test_colormap_lightness_rises_monotonically(name):
    lut = colormap_lut(name).astype(float)
    luma = lut @ np.array([0.2126, 0.7152, 0.0722])
    assert np.all(np.diff(luma) > -0.5)  # perceptual maps never get darker
    assert luma[-1] - luma[0] > 150


def test_colormap_unknown_name_is_refused():
    with pytest.raises(InvalidArgumentError, match="jet"):
        colormap_lut("jet")


def test_legend_image_runs_low_to_high(qtbot):
    image = legend_image("viridis", 50, 8)
    assert (image.width(), image.height()) == (50, 8)
    assert image.pixelColor(0, 7).getRgb()[:3] == (68, 1, 84)
    assert image.pixelColor(49, 0).getRgb()[:3] == (253, 231, 37)


# -- images ---------------------------------------------------------------------------
class _Status(str, Enum):
    REVIEWED = "reviewed"


ENTRIES = [("a.png", "new"), ("b.tif", "predicted"), ("c.jpg", "corrected"), ("d.png", "reviewed")]


def test_images_setters_show_entries_without_emitting(qtbot):
    panel = _shown(qtbot, ImagesPanel())
    with qtbot.assertNotEmitted(panel.currentChanged), qtbot.assertNotEmitted(panel.reviewToggled):
        panel.set_entries(ENTRIES)
        panel.set_status(0, "predicted")
        panel.set_current(2)
    assert panel.count() == 4
    assert [panel._list.item(i).text() for i in range(4)] == ["a.png", "b.tif", "c.jpg", "d.png"]
    assert [panel.status(i) for i in range(4)] == ["predicted", "predicted", "corrected", "reviewed"]
    assert panel.current_index() == 2
    assert panel._list.iconSize().width() == THUMBNAIL_SIZE
    assert panel._count_label.text() == "1/4 reviewed"
    panel.set_status(2, _Status.REVIEWED)  # the document's str-enum works as well as its value
    assert panel.status(2) == "reviewed"
    panel.set_status(1, "unreadable")  # the window marks files it cannot open
    assert panel.status(1) == "unreadable"
    with pytest.raises(InvalidArgumentError, match="done"):
        panel.set_status(0, "done")


def test_images_thumbnail_is_scaled_to_64px(qtbot):
    panel = _shown(qtbot, ImagesPanel())
    panel.set_entries(ENTRIES)
    rgb = np.zeros((30, 120, 3), np.uint8)
    rgb[...] = (200, 40, 10)
    panel.set_thumbnail(1, rgb)
    panel.set_thumbnail(2, np.full((500, 300), 90, np.uint8))
    image = panel._list.item(1).icon().pixmap(THUMBNAIL_SIZE, THUMBNAIL_SIZE).toImage()
    assert (image.width(), image.height()) == (THUMBNAIL_SIZE, THUMBNAIL_SIZE)
    assert image.pixelColor(32, 32).getRgb()[:3] == (200, 40, 10)
    assert image.pixelColor(32, 2).alpha() == 0  # letterbox above a wide image
    grey = panel._list.item(2).icon().pixmap(THUMBNAIL_SIZE, THUMBNAIL_SIZE).toImage()
    assert grey.pixelColor(32, 32).getRgb()[:3] == (90, 90, 90)
    rgba = np.zeros((64, 64, 4), np.uint8)
    rgba[...] = (10, 20, 30, 255)
    panel.set_thumbnail(3, rgba)
    assert panel._list.item(3).icon().pixmap(64, 64).toImage().pixelColor(5, 5).getRgb()[:3] == (10, 20, 30)
    with pytest.raises(InvalidArgumentError, match="uint8"):
        panel.set_thumbnail(0, np.zeros((4, 4, 3), np.float32))


def test_images_click_emits_current_changed(qtbot):
    panel = _shown(qtbot, ImagesPanel())
    panel.set_entries(ENTRIES)
    rect = panel._list.visualItemRect(panel._list.item(2))
    with qtbot.waitSignal(panel.currentChanged, timeout=1000) as blocker:
        qtbot.mouseClick(panel._list.viewport(), Qt.MouseButton.LeftButton, pos=rect.center())
    assert blocker.args == [2]
    assert panel.current_index() == 2


def test_images_review_button_toggles(qtbot):
    panel = _shown(qtbot, ImagesPanel())
    panel.set_entries(ENTRIES)
    assert not panel._review_button.isEnabled()
    panel.set_current(1)
    with qtbot.waitSignal(panel.reviewToggled, timeout=1000) as blocker:
        panel._review_button.click()
    assert blocker.args == [1, True]
    panel.set_current(3)
    assert panel._review_button.text() == "Unmark reviewed"
    with qtbot.waitSignal(panel.reviewToggled, timeout=1000) as blocker:
        panel._review_button.click()
    assert blocker.args == [3, False]


def test_images_filter_hides_other_statuses(qtbot):
    panel = _shown(qtbot, ImagesPanel())
    panel.set_entries(ENTRIES)
    panel._filter.setCurrentText("corrected")
    assert [panel._list.item(i).isHidden() for i in range(4)] == [True, True, False, True]
    panel._filter.setCurrentText("All")
    assert not any(panel._list.item(i).isHidden() for i in range(4))


# -- classes ---------------------------------------------------------------------------
CLASSES = [("background", (0, 0, 0), True), ("tumour", (230, 30, 30), True), ("vessel", (30, 100, 230), False)]


def _swatch_rgb(panel, row):
    icon = panel._table.item(row, classes_module.NAME_COLUMN).icon()
    return icon.pixmap(16, 16).toImage().pixelColor(8, 8).getRgb()[:3]


def test_classes_setters_show_rows_without_emitting(qtbot):
    panel = _shown(qtbot, ClassesPanel())
    with qtbot.assertNotEmitted(panel.activeChanged), qtbot.assertNotEmitted(panel.visibilityChanged):
        panel.set_classes(CLASSES + [(f"c{i}", (i, i, i), True) for i in range(8)])
        panel.set_active(1)
    table = panel._table
    assert table.rowCount() == 11
    assert [table.item(r, 0).text() for r in (0, 8, 9)] == ["1", "9", ""]
    assert table.item(1, 1).text() == "tumour"
    assert _swatch_rgb(panel, 1) == (230, 30, 30)
    assert table.item(2, 2).checkState() == Qt.CheckState.Unchecked
    assert panel.active_index() == 1


def test_classes_click_and_checkbox_emit(qtbot):
    panel = _shown(qtbot, ClassesPanel())
    panel.set_classes(CLASSES)
    panel.set_active(0)
    rect = panel._table.visualItemRect(panel._table.item(2, 1))
    with qtbot.waitSignal(panel.activeChanged, timeout=1000) as blocker:
        qtbot.mouseClick(panel._table.viewport(), Qt.MouseButton.LeftButton, pos=rect.center())
    assert blocker.args == [2]
    with qtbot.waitSignal(panel.visibilityChanged, timeout=1000) as blocker:
        panel._table.item(2, 2).setCheckState(Qt.CheckState.Checked)
    assert blocker.args == [2, True]


def test_classes_dialog_actions_emit_requested_values(qtbot, monkeypatch):
    panel = _shown(qtbot, ClassesPanel())
    panel.set_classes(CLASSES)
    panel.set_active(1)
    monkeypatch.setattr(panel, "_ask_name", lambda title, current: "lesion")
    monkeypatch.setattr(panel, "_ask_color", lambda current: (1, 2, 3))
    monkeypatch.setattr(panel, "_ask_replacement", lambda index: -1)
    with qtbot.waitSignal(panel.renameRequested, timeout=1000) as blocker:
        panel._rename_button.click()
    assert blocker.args == [1, "lesion"]
    with qtbot.waitSignal(panel.recolorRequested, timeout=1000) as blocker:
        panel._color_button.click()
    assert blocker.args == [1, (1, 2, 3)]
    with qtbot.waitSignal(panel.deleteRequested, timeout=1000) as blocker:
        panel._delete_button.click()
    assert blocker.args == [1, -1]
    with qtbot.waitSignal(panel.addRequested, timeout=1000) as blocker:
        panel._add_button.click()
    name, color = blocker.args
    assert name == "lesion" and color not in [c for _n, c, _v in CLASSES] and len(color) == 3


def test_classes_cancelled_dialog_emits_nothing(qtbot, monkeypatch):
    panel = _shown(qtbot, ClassesPanel())
    panel.set_classes(CLASSES)
    panel.set_active(0)
    monkeypatch.setattr(panel, "_ask_name", lambda title, current: None)
    monkeypatch.setattr(panel, "_ask_replacement", lambda index: None)
    with qtbot.assertNotEmitted(panel.renameRequested), qtbot.assertNotEmitted(panel.deleteRequested):
        panel._rename_button.click()
        panel._delete_button.click()


def test_classes_replacement_dialog_offers_unlabelled_and_other_classes(qtbot, monkeypatch):
    panel = _shown(qtbot, ClassesPanel())
    panel.set_classes(CLASSES)
    seen = {}

    def fake_exec(dialog):
        seen["labels"] = [dialog.combo.itemText(i) for i in range(dialog.combo.count())]
        dialog.combo.setCurrentIndex(2)
        return QDialog.DialogCode.Accepted

    monkeypatch.setattr(classes_module._ReplacementDialog, "exec", fake_exec)
    assert panel._ask_replacement(0) == 2
    assert seen["labels"] == ["Unlabelled", "tumour", "vessel"]

    def pick_unlabelled(dialog):
        dialog.combo.setCurrentIndex(0)
        return QDialog.DialogCode.Accepted

    monkeypatch.setattr(classes_module._ReplacementDialog, "exec", pick_unlabelled)
    assert panel._ask_replacement(0) == -1  # not 255: that is a class in a project of 256+ classes


def test_classes_filter_finds_a_class_among_hundreds(qtbot):
    panel = _shown(qtbot, ClassesPanel())
    panel.set_classes(CLASSES)
    assert not panel._filter.isVisible()  # keys 1-9 cover three classes
    many = [(f"structure {i}", (i % 256, 0, 0), True) for i in range(300)]
    panel.set_classes(many)
    assert panel._filter.isVisible()
    qtbot.keyClicks(panel._filter, "Structure 29")
    assert panel.visible_rows() == [29, *range(290, 300)]
    with qtbot.waitSignal(panel.activeChanged, timeout=1000) as blocker:
        qtbot.keyClick(panel._filter, Qt.Key.Key_Return)
    assert blocker.args == [29] and panel.active_index() == 29
    panel.set_classes(many)  # a rebuild (e.g. after a rename) keeps the filter
    assert panel.visible_rows() == [29, *range(290, 300)]
    panel._filter.clear()
    assert len(panel.visible_rows()) == 300
    assert "label value 299" in panel._table.item(299, 1).toolTip()


# -- model -----------------------------------------------------------------------------
def test_model_lists_architectures_and_marks_devices(qtbot):
    panel = _shown(qtbot, ModelPanel())
    combo = panel._architecture
    assert [combo.itemText(i) for i in range(combo.count())] == list_models()
    devices = [panel._device.itemText(i) for i in range(panel._device.count())]
    assert devices[:2] == ["auto", "cpu"]  # only devices that exist here are offered
    assert ("cuda" in devices) == torch.cuda.is_available() and ("mps" in devices) == torch.backends.mps.is_available()
    # the window's QAction owns Ctrl+R; a button shortcut on the same keys would make both ambiguous
    assert "Ctrl+R" in panel._run_one.text() and panel._run_one.shortcut().isEmpty()
    assert panel.settings()["tile"] == 512


def test_model_set_settings_round_trips_without_emitting(qtbot):
    panel = _shown(qtbot, ModelPanel())
    wanted = {"architecture": list_models()[-1], "checkpoint": "/data/w.safetensors",
              "device": "cpu", "precision": "bf16", "tile": 1024}
    with qtbot.assertNotEmitted(panel.settingsChanged):
        panel.set_settings(wanted)
    assert panel.settings() == wanted
    with pytest.raises(InvalidArgumentError, match="tiles"):
        panel.set_settings({"tiles": 3})
    with pytest.raises(InvalidArgumentError, match="fp8"):
        panel.set_settings({"precision": "fp8"})


def test_model_user_changes_emit_settings(qtbot, monkeypatch):
    panel = _shown(qtbot, ModelPanel())
    with qtbot.waitSignal(panel.settingsChanged, timeout=1000) as blocker:
        panel._tile.setValue(256)
    assert blocker.args[0]["tile"] == 256
    monkeypatch.setattr(panel, "_ask_checkpoint_path", lambda: "/x/model.pt")
    with qtbot.waitSignal(panel.settingsChanged, timeout=1000) as blocker:
        panel._browse_button.click()
    assert blocker.args[0]["checkpoint"] == "/x/model.pt"


def test_model_run_cancel_and_progress(qtbot):
    panel = _shown(qtbot, ModelPanel())
    assert not panel._cancel.isEnabled()
    with qtbot.waitSignal(panel.runRequested, timeout=1000) as blocker:
        panel._run_all.click()
    assert blocker.args == [True]
    with qtbot.waitSignal(panel.runRequested, timeout=1000) as blocker:
        panel._run_one.click()
    assert blocker.args == [False]
    panel.set_running(True)
    assert panel._cancel.isEnabled() and not panel._run_one.isEnabled() and not panel._tile.isEnabled()
    with qtbot.waitSignal(panel.cancelRequested, timeout=1000):
        panel._cancel.click()
    panel.set_progress(3, 12, "tile 3 of 12")
    assert (panel._progress.value(), panel._progress.maximum()) == (3, 12)
    assert panel._status.text() == "tile 3 of 12"
    panel.set_running(False)
    assert not panel._cancel.isEnabled() and panel._run_all.isEnabled()


def test_model_escape_cancels_only_while_running(qtbot):
    panel = _shown(qtbot, ModelPanel())
    panel.activateWindow()
    panel._progress.setFocusPolicy(Qt.FocusPolicy.StrongFocus)
    panel._progress.setFocus()
    qtbot.waitUntil(lambda: panel._progress.hasFocus(), timeout=1000)
    with qtbot.assertNotEmitted(panel.cancelRequested):
        qtbot.keyClick(panel._progress, Qt.Key.Key_Escape)
    panel.set_running(True)
    with qtbot.waitSignal(panel.cancelRequested, timeout=1000):
        qtbot.keyClick(panel._progress, Qt.Key.Key_Escape)


# -- CRF -----------------------------------------------------------------------------------
def test_crf_defaults_and_set_params_are_silent(qtbot):
    panel = _shown(qtbot, CRFPanel())
    assert panel.params() == CRFParams()
    wanted = CRFParams(bilateral_weight=8.5, bilateral_sxy=80, bilateral_srgb=13.0,
                       gaussian_weight=2.0, gaussian_sxy=5.0, iterations=20)
    with qtbot.assertNotEmitted(panel.paramsSettled, wait=DEBOUNCE_MS + 150):
        panel.set_params(wanted)
    assert panel.params() == wanted
    assert panel._sliders["iterations"].value() == 20
    assert panel._sliders["bilateral_weight"].value() == pytest.approx(8.5)
    assert "[5, 10]" in panel._sliders["bilateral_weight"].toolTip()


def test_crf_burst_of_changes_settles_once_with_final_value(qtbot):
    panel = _shown(qtbot, CRFPanel())
    received = []
    panel.paramsSettled.connect(received.append)
    slider = panel._sliders["bilateral_sxy"]
    with qtbot.waitSignal(panel.paramsSettled, timeout=DEBOUNCE_MS + 1000):
        for value in (60, 70, 80, 95):
            slider.setValue(value)
            qtbot.wait(30)
    qtbot.wait(DEBOUNCE_MS + 100)
    assert len(received) == 1
    assert received[0].bilateral_sxy == 95.0


def test_crf_preview_switch_and_reset(qtbot):
    panel = _shown(qtbot, CRFPanel())
    panel._preview.setChecked(False)
    assert not panel.preview_enabled()
    with qtbot.assertNotEmitted(panel.paramsSettled, wait=DEBOUNCE_MS + 100):
        panel._sliders["iterations"].setValue(4)
    with qtbot.waitSignal(panel.paramsSettled, timeout=200) as blocker:
        panel._preview.setChecked(True)
    assert blocker.args[0].iterations == 4
    with qtbot.waitSignal(panel.paramsSettled, timeout=DEBOUNCE_MS + 1000) as blocker:
        panel._reset_button.click()
    assert blocker.args[0] == CRFParams()


def test_crf_accept_and_busy(qtbot):
    panel = _shown(qtbot, CRFPanel())
    with qtbot.waitSignal(panel.acceptRequested, timeout=1000):
        panel._accept_button.click()
    panel.set_busy(True)
    assert not panel._accept_button.isEnabled()
    panel.set_busy(False)
    assert panel._accept_button.isEnabled()


# -- layers ----------------------------------------------------------------------------------
def test_layers_set_state_is_silent(qtbot):
    panel = _shown(qtbot, LayersPanel())
    with qtbot.assertNotEmitted(panel.visibilityChanged), qtbot.assertNotEmitted(panel.opacityChanged), \
            qtbot.assertNotEmitted(panel.outlineChanged), qtbot.assertNotEmitted(panel.heatmapChanged):
        panel.set_layer_state("labels", False, 0.35, outline=True)
        panel.set_heatmap_choices(["bg", "cell"])
        panel.set_heatmap_index(-1)
    assert panel.layer_state("labels") == (False, 0.35, True)
    assert panel._rows["labels"].percent.text() == "35 %"
    combo = panel._heatmap_choice
    assert [combo.itemText(i) for i in range(combo.count())] == ["bg", "cell", "Uncertainty (entropy)"]
    assert panel.heatmap_index() == -1
    assert panel._rows["image"].outline is None
    with pytest.raises(InvalidArgumentError, match="overlay"):
        panel.set_layer_state("overlay", True, 1.0)


def test_layers_user_actions_emit(qtbot):
    panel = _shown(qtbot, LayersPanel())
    panel.set_heatmap_choices(["bg", "cell"])
    box = panel._rows["labels"].visible
    with qtbot.waitSignal(panel.visibilityChanged, timeout=1000) as blocker:
        qtbot.mouseClick(box, Qt.MouseButton.LeftButton, pos=QPoint(6, box.height() // 2))
    assert blocker.args == ["labels", False]
    with qtbot.waitSignal(panel.opacityChanged, timeout=1000) as blocker:
        panel._rows["prediction"].opacity.setValue(40)
    assert blocker.args == ["prediction", pytest.approx(0.4)]
    with qtbot.waitSignal(panel.outlineChanged, timeout=1000) as blocker:
        panel._rows["crf"].outline.setChecked(True)
    assert blocker.args == ["crf", True]
    assert panel.heatmap_index() == -1  # uncertainty is the default view
    with qtbot.waitSignal(panel.heatmapChanged, timeout=1000) as blocker:
        panel._heatmap_choice.setCurrentIndex(1)
    assert blocker.args == [1]
    with qtbot.waitSignal(panel.heatmapChanged, timeout=1000) as blocker:
        panel._heatmap_choice.setCurrentIndex(2)
    assert blocker.args == [-1]
    with qtbot.waitSignal(panel.colormapChanged, timeout=1000) as blocker:
        panel._colormap.setCurrentText("magma")
    assert blocker.args == ["magma"]
    legend = panel._legend.pixmap().toImage()
    assert legend.pixelColor(0, 0).getRgb()[:3] == tuple(int(v) for v in colormap_lut("magma")[0])


def test_layers_unavailable_layer_is_greyed_out(qtbot):
    panel = _shown(qtbot, LayersPanel())
    panel.set_layer_available("heatmap", False)
    assert not panel._rows["heatmap"].opacity.isEnabled()
    assert not panel._heatmap_choice.isEnabled()
    panel.set_layer_available("heatmap", True)
    assert panel._rows["heatmap"].visible.isEnabled() and panel._colormap.isEnabled()


# -- export dialog ----------------------------------------------------------------------------
def test_export_dialog_choice(qtbot, tmp_path):
    dialog = ExportDialog()
    qtbot.addWidget(dialog)
    ok = dialog._buttons.button(QDialogButtonBox.StandardButton.Ok)
    assert not ok.isEnabled()
    dialog.set_folder(tmp_path)
    dialog._radios["binary"].setChecked(True)
    assert ok.isEnabled()
    assert dialog.selection() == (Path(tmp_path), "binary")
    ok.click()
    assert dialog.choice() == (Path(tmp_path), "binary")
    dialog.set_format("overlay")
    assert dialog.selection() == (Path(tmp_path), "overlay")


def test_export_dialog_cancel_gives_none(qtbot, monkeypatch, tmp_path):
    monkeypatch.setattr(ExportDialog, "exec", lambda self: self.reject())
    assert ExportDialog.ask(None, tmp_path, "png") is None
    monkeypatch.setattr(ExportDialog, "exec", lambda self: self.accept())
    assert ExportDialog.ask(None, tmp_path, "overlay") == (Path(tmp_path), "overlay")


# -- layout smoke test -------------------------------------------------------------------------
@pytest.mark.parametrize("factory", [ImagesPanel, ClassesPanel, ModelPanel, CRFPanel, LayersPanel])
def test_panels_fit_a_dock(qtbot, factory, tmp_path):
    panel = factory()
    qtbot.addWidget(panel)
    hint = panel.sizeHint()
    assert 150 < hint.width() <= 420  # a dock column, not a window
    panel.resize(hint)
    image = panel.grab().toImage()
    assert not image.isNull() and image.width() == hint.width()
    # something was drawn besides the background
    colors = {image.pixelColor(x, y).rgb() for x in range(0, image.width(), 7) for y in range(0, image.height(), 7)}
    assert len(colors) > 5
    assert QColor(image.pixelColor(0, 0)).isValid()
