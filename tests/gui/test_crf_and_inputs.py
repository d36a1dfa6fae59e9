"""The studio as people use it: the CRF after an image switch, the wheel over
the docks, progress of a run on all images, the pixel under a still cursor."""

import numpy as np
import torch
from PySide6.QtCore import QPoint, QPointF, Qt
from PySide6.QtGui import QWheelEvent
from PySide6.QtWidgets import (
    QAbstractSlider,
    QAbstractSpinBox,
    QApplication,
    QCheckBox,
    QComboBox,
    QProgressBar,
    QPushButton,
    QScrollBar,
)

from segstudio.gui.panels.crf import DEBOUNCE_MS

from .conftest import labelled, run_model


def _click_image(qtbot, window, row: int) -> None:
    """Pick an image in the Images panel with the mouse."""
    listing = window.images_panel._list
    rect = listing.visualItemRect(listing.item(row))
    qtbot.mouseClick(listing.viewport(), Qt.MouseButton.LeftButton, pos=rect.center())
    assert window.session.index == row


def _crf_button(window, name: str) -> QPushButton:
    button = window.crf_panel.findChild(QPushButton, name)
    assert button is not None, f"the CRF panel has no {name} button"
    return button


def _accept_crf(qtbot, window) -> None:
    """Click Accept CRF mask once the CRF has come back; it must change the labels."""
    accept = _crf_button(window, "crf_accept")
    qtbot.waitUntil(accept.isEnabled, timeout=30000)
    before = window.session.document.labels.copy()
    window.last_error = None
    qtbot.mouseClick(accept, Qt.MouseButton.LeftButton)
    assert window.last_error is None, f"Accept failed: {window.last_error}"
    assert (window.session.document.labels != before).any()
    assert labelled(window) > 0


# -- 1. the CRF ----------------------------------------------------------------
def test_the_crf_preview_follows_a_switch_to_a_predicted_image(qtbot, window, image_folder, checkpoint):
    assert window.open_path(image_folder)
    assert window.crf_panel.preview_enabled()
    assert run_model(qtbot, window, checkpoint, all_images=True) == "done"
    qtbot.waitUntil(lambda: window.session.document.crf_labels is not None, timeout=30000)

    _click_image(qtbot, window, 1)
    assert window.session.document.prediction is not None  # kept from the run
    qtbot.waitUntil(lambda: window.session.document.crf_labels is not None, timeout=30000)
    assert window.session.document.crf_labels.shape == window.session.document.labels.shape
    _accept_crf(qtbot, window)

    _click_image(qtbot, window, 2)  # and once more, after an accept
    qtbot.waitUntil(lambda: window.session.document.crf_labels is not None, timeout=30000)
    _accept_crf(qtbot, window)


def test_run_crf_button_computes_the_crf_with_live_preview_off(qtbot, window, image_folder, checkpoint):
    assert window.open_path(image_folder)
    preview = next(box for box in window.crf_panel.findChildren(QCheckBox) if box.text() == "Live preview")
    preview.setChecked(False)
    assert run_model(qtbot, window, checkpoint) == "done"
    qtbot.wait(DEBOUNCE_MS + 200)
    assert window.session.document.crf_labels is None  # nothing computed behind the user's back

    run = _crf_button(window, "crf_run")
    assert run.isEnabled()
    with qtbot.waitSignal(window.runs.crfDone, timeout=30000):
        qtbot.mouseClick(run, Qt.MouseButton.LeftButton)
    assert window.session.document.crf_labels is not None
    _accept_crf(qtbot, window)

    # after a switch with preview off, the button still works on the new image
    run_model(qtbot, window, checkpoint, all_images=True)
    _click_image(qtbot, window, 2)
    qtbot.wait(DEBOUNCE_MS + 200)
    assert window.session.document.crf_labels is None
    with qtbot.waitSignal(window.runs.crfDone, timeout=30000):
        qtbot.mouseClick(run, Qt.MouseButton.LeftButton)
    _accept_crf(qtbot, window)


def test_ctrl_k_runs_the_crf_and_ctrl_shift_k_accepts_it(qtbot, window, image_folder, checkpoint):
    assert window.open_path(image_folder)
    window.crf_panel._preview.setChecked(False)
    assert run_model(qtbot, window, checkpoint) == "done"
    run, accept = window.actions_by_name["run_crf"], window.actions_by_name["accept_crf"]
    assert run.shortcut().toString() == "Ctrl+K" and accept.shortcut().toString() == "Ctrl+Shift+K"
    with qtbot.waitSignal(window.runs.crfDone, timeout=30000):
        run.trigger()
    document = window.session.document
    assert document.crf_labels is not None and (document.crf_labels != 255).all()
    accept.trigger()
    np.testing.assert_array_equal(document.labels, document.crf_labels)


def test_run_crf_without_a_prediction_says_what_to_do(qtbot, window, image_folder):
    assert window.open_path(image_folder)
    qtbot.mouseClick(_crf_button(window, "crf_run"), Qt.MouseButton.LeftButton)
    assert "model" in window.statusBar().currentMessage().lower()
    assert window.session.document.crf_labels is None


def test_the_backend_choice_reruns_the_preview_and_is_kept(qtbot, window, image_folder, checkpoint, monkeypatch):
    from PySide6.QtCore import QSettings

    from segstudio.gui import crf_preview

    calls = []
    real_refine = crf_preview.refine_steps

    def spy(image, probabilities, params, **options):
        calls.append(options["backend"])
        return real_refine(image, probabilities, params, **options)

    monkeypatch.setattr(crf_preview, "refine_steps", spy)
    assert window.open_path(image_folder)
    backend = window.crf_panel.findChild(QComboBox, "crf_backend")
    assert backend is not None and [backend.itemText(i) for i in range(backend.count())] == [
        "Auto", "pydensecrf2 (CPU)", "PyTorch"]
    with qtbot.waitSignal(window.runs.crfDone, timeout=30000):
        assert run_model(qtbot, window, checkpoint) == "done"
    first = window.session.document.crf_labels.copy()
    with qtbot.waitSignal(window.runs.crfDone, timeout=30000):
        backend.setCurrentIndex(backend.findData("pydensecrf"))  # as a click in the list does
    assert calls == ["torch", "pydensecrf"]  # Auto is PyTorch in the studio: the window keeps answering
    assert QSettings().value("crf/backend") == "pydensecrf"
    assert (window.session.document.crf_labels == first).mean() >= 0.99  # the same CRF, another implementation
    volume_mode = window.crf_panel.findChild(QComboBox, "crf_volume_mode")
    assert volume_mode is not None and not volume_mode.isEnabled() and volume_mode.isHidden()  # a 2-D image
    backend.setCurrentIndex(backend.findData("auto"))


# -- 2. the wheel over the docks -------------------------------------------------
def _wheel(widget, steps: int = -1) -> QWheelEvent:
    local = QPointF(widget.width() / 2, widget.height() / 2)
    event = QWheelEvent(local, QPointF(widget.mapToGlobal(local.toPoint())), QPoint(0, 0), QPoint(0, 120 * steps),
                        Qt.MouseButton.NoButton, Qt.KeyboardModifier.NoModifier, Qt.ScrollPhase.NoScrollPhase, False)
    QApplication.sendEvent(widget, event)
    return event


def _model_box(window, holding: str) -> QComboBox:
    """The Model panel's combo box that offers *holding* ("cpu": Device)."""
    for combo in window.model_panel.findChildren(QComboBox):
        if combo.findText(holding) >= 0:
            return combo
    raise AssertionError(f"no box offers {holding}")


def _device_box(window) -> QComboBox:
    return _model_box(window, "cpu")


def test_the_wheel_over_an_unfocused_device_box_scrolls_the_dock_instead(qtbot, window):
    combo = _device_box(window)
    window.canvas.setFocus()
    assert not combo.hasFocus()
    before = combo.currentText()
    for steps in (-1, -1, 1, -1):
        event = _wheel(combo, steps)
        assert combo.currentText() == before
        # ignored: Qt offers a real (spontaneous) wheel event to the parents next,
        # up to the dock's scroll area (a synthetic one like this stops here)
        assert not event.isAccepted()
    assert not combo.hasFocus()  # the wheel does not take the focus either


def test_the_wheel_still_works_on_a_focused_box(qtbot, window):
    combo = _model_box(window, "fp32")  # Precision
    window.activateWindow()
    combo.setFocus()
    qtbot.waitUntil(combo.hasFocus, timeout=2000)
    before = combo.currentIndex()
    _wheel(combo, -1)
    assert combo.currentIndex() != before


def test_every_input_in_the_docks_ignores_the_wheel_unless_focused(qtbot, window):
    window.canvas.setFocus()
    kinds = (QComboBox, QAbstractSpinBox, QAbstractSlider)
    checked = 0
    for title, dock in window.docks.items():
        for kind in kinds:
            for widget in dock.findChildren(kind):
                if isinstance(widget, QScrollBar):
                    continue  # scroll bars take the wheel: that is what they are for
                assert widget.focusPolicy() == Qt.FocusPolicy.StrongFocus, (title, widget)
                checked += 1
    assert checked >= 15
    # a CRF slider: the value stays
    slider = window.crf_panel.findChildren(QAbstractSlider)[0]
    value = slider.value()
    _wheel(slider, -3)
    assert slider.value() == value


def test_the_device_box_offers_only_devices_that_exist_here(window):
    combo = _device_box(window)
    names = [combo.itemText(i) for i in range(combo.count())]
    assert "cpu" in names and "auto" in names
    assert ("cuda" in names) == torch.cuda.is_available()
    mps = getattr(torch.backends, "mps", None)
    if mps is None or not mps.is_available():
        assert "mps" not in names
    # a project saved on another machine falls back to auto
    window.model_panel.set_settings({"device": "mps" if "mps" not in names else "cuda"})
    assert window.model_panel.settings()["device"] in names


# -- 3. progress of a run on all images ---------------------------------------------
def test_run_on_all_images_shows_progress_by_image(qtbot, window, image_folder, checkpoint):
    assert window.open_path(image_folder)
    window.model_panel.set_settings({"tile": 64})  # several tiles per image
    bar = window.model_panel.findChild(QProgressBar)
    seen = []

    def record(_progress):
        if bar.maximum() > 0:
            seen.append(bar.value() / bar.maximum())

    window.runs.runProgress.connect(record)
    assert run_model(qtbot, window, checkpoint, all_images=True) == "done"
    assert len(seen) > 6
    assert seen == sorted(seen), seen  # never goes back
    assert all(value < 1 for value in seen[:-1]), seen  # 100 % only at the end
    assert any(0 < value < 1 / 3 for value in seen), seen  # the tiles of image 1 move it
    assert any(2 / 3 <= value < 1 for value in seen), seen  # image 3 starts at two thirds
    assert bar.value() == bar.maximum()


# -- 4. the pixel under a still cursor ------------------------------------------------
def test_the_status_bar_follows_edits_under_a_still_cursor(qtbot, window, image_folder, checkpoint):
    assert window.open_path(image_folder)
    text = window.position_label.text
    window.canvas.cursorMoved.emit(10, 12)  # the mouse rests on x 10, y 12
    assert "x 10  y 12" in text() and "label: unlabelled" in text() and "p: " not in text()

    run_model(qtbot, window, checkpoint, all_images=True)  # the project takes the model's classes
    assert "p: " in text()  # the prediction arrived under the cursor
    classes = window.session.classes
    document = window.session.document
    document.apply((slice(12, 13), slice(10, 11)), None, 1, "Paint")  # a stroke
    assert f"label: {classes[1].name}" in text()
    window.undo()
    assert "label: unlabelled" in text()
    window.redo()
    assert f"label: {classes[1].name}" in text()
    document.apply((slice(12, 13), slice(10, 11)), None, 2, "Paint")
    assert f"label: {classes[2].name}" in text()
    window.accept("prediction")
    predicted = int(document.labels[12, 10])
    assert predicted != 255 and f"label: {classes[predicted].name}" in text()

    _click_image(qtbot, window, 2)  # another image, same cursor position
    image = window.session.document.image
    assert "x 10  y 12" in text()
    assert "value " + ", ".join(f"{v:g}" for v in np.atleast_1d(image[12, 10])) in text()
    assert "label: unlabelled" in text()


def test_a_still_cursor_outside_the_next_image_says_nothing(qtbot, window, image_folder):
    assert window.open_path(image_folder)  # image 0 is 128 x 96, image 1 80 x 80
    window.canvas.cursorMoved.emit(110, 90)
    assert "x 110  y 90" in window.position_label.text()
    _click_image(qtbot, window, 1)
    assert window.position_label.text() == ""
    assert window.last_error is None
