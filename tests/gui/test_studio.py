"""The studio window: open, infer in a worker, correct with the mouse, undo,
autosave, reopen, export."""

import threading

import numpy as np
import pytest
from PIL import Image
from PySide6.QtCore import QPoint, Qt, QTimer
from PySide6.QtTest import QTest

from segstudio.gui.canvas import Tool
from segstudio.io.masks import read_mask

from .conftest import CLASS_NAMES, labelled, run_model


def _point(canvas, row, column):
    p = canvas.to_widget(row + 0.5, column + 0.5)
    return QPoint(round(p.x()), round(p.y()))


def test_open_folder_lists_images_and_shows_the_first(window, image_folder):
    assert window.open_path(image_folder)
    project = window.session.project
    assert [e.source.name for e in project.entries] == ["cell_0.png", "cell_1.png", "cell_2.png"]
    assert window.images_panel.current_index() == 0
    assert window.session.document.image.shape == (96, 128, 3)
    # labels start unlabelled; the labels layer is transparent
    assert labelled(window) == 0
    assert window.canvas.layer_buffer("labels")[..., 3].max() == 0
    assert (project.folder / "project.json").is_file()


def test_inference_fills_heatmap_and_mask_layers_off_the_gui_thread(qtbot, window, image_folder, checkpoint):
    window.open_path(image_folder)
    worker_threads = []
    original = window.runs._on_model_yielded

    ticks = []
    timer = QTimer()
    timer.timeout.connect(lambda: ticks.append(threading.get_ident()))
    timer.start(5)
    import segstudio.gui.runs as runs_module

    real_build = runs_module._build_predictor

    def recording_build(settings):
        worker_threads.append(threading.get_ident())
        return real_build(settings)

    runs_module._build_predictor = recording_build
    try:
        assert run_model(qtbot, window, checkpoint) == "done"
    finally:
        runs_module._build_predictor = real_build
        timer.stop()
    assert worker_threads and worker_threads[0] != threading.get_ident()
    assert len(ticks) >= 1  # the GUI event loop kept running during the run
    document = window.session.document
    assert document.prediction is not None
    assert document.prediction.probabilities.shape == (3, 96, 128)
    assert document.status.value == "predicted"
    assert window.canvas.layer_buffer("prediction")[..., 3].max() == 255
    heat = window.canvas.layer_buffer("heatmap")
    assert heat is not None and heat[..., :3].std() > 0
    assert window.model_panel._status.text() == "Model run finished"
    # the model's classes were adopted by the fresh project
    assert list(window.session.classes.names) == CLASS_NAMES
    assert original is not None


def test_run_on_all_images_marks_them_predicted(qtbot, window, image_folder, checkpoint):
    window.open_path(image_folder)
    assert run_model(qtbot, window, checkpoint, all_images=True) == "done"
    assert [e.status.value for e in window.session.project.entries] == ["predicted"] * 3
    window.select_image(2)
    assert window.session.document.prediction.labels.shape == (64, 100)


def test_cancel_stops_a_run(qtbot, window, image_folder, checkpoint):
    window.open_path(image_folder)
    window.model_panel.set_settings({**window.model_panel.settings(), "tile": 64})
    started = threading.Event()
    import segstudio.gui.runs as runs_module

    real_build = runs_module._build_predictor

    def slow_build(settings):
        started.set()
        window.runs.model_task.cancel()  # the user presses Cancel while the model loads
        return real_build(settings)

    runs_module._build_predictor = slow_build
    try:
        assert run_model(qtbot, window, checkpoint, all_images=True) == "cancelled"
    finally:
        runs_module._build_predictor = real_build
    assert started.is_set()
    assert window.session.document.prediction is None
    assert [e.status.value for e in window.session.project.entries] == ["new"] * 3


def test_a_failing_run_shows_one_dialog_and_the_window_keeps_working(qtbot, window, image_folder, tmp_path):
    window.open_path(image_folder)
    broken = tmp_path / "broken.safetensors"
    broken.write_bytes(b"not a checkpoint")
    assert run_model(qtbot, window, broken) == "failed"
    assert window.last_error is not None
    assert "broken.safetensors" in window.last_error.text()
    window.last_error.close()
    # still usable: paint a pixel
    window.set_tool(Tool.BRUSH)
    QTest.mouseClick(window.canvas, Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier,
                     _point(window.canvas, 40, 40))
    assert window.session.document.labels[40, 40] == window.canvas.active_class


def test_brush_stroke_paints_the_pixels_under_it_and_undoes_in_one_step(qtbot, window, image_folder):
    window.open_path(image_folder)
    canvas = window.canvas
    window.set_active_class(1)
    canvas.set_brush_radius(2)
    window.set_tool(Tool.BRUSH)
    start, end = _point(canvas, 30, 20), _point(canvas, 30, 80)
    QTest.mousePress(canvas, Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier, start)
    for column in range(20, 81, 5):
        QTest.mouseMove(canvas, _point(canvas, 30, column))
    QTest.mouseRelease(canvas, Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier, end)
    labels = window.session.document.labels
    assert (labels[30, 20:81] == 1).all()  # a continuous line, no gaps
    assert (labels[30 - 4, 20:81] == 255).all() and (labels[30 + 4, 20:81] == 255).all()
    painted = labels.copy()
    # the canvas recoloured the stroke with class 1's colour
    colour = window.session.classes[1].color
    assert tuple(canvas.layer_buffer("labels")[30, 50, :3]) == tuple(colour)
    window.undo()
    assert labelled(window) == 0
    window.redo()
    assert np.array_equal(window.session.document.labels, painted)


def test_eraser_fill_and_polygon(qtbot, window, image_folder):
    window.open_path(image_folder)
    canvas, document = window.canvas, window.session.document
    window.set_active_class(1)
    # polygon: a rectangle from (10,10) to (40,50)
    window.set_tool(Tool.POLYGON)
    for row, column in [(10, 10), (10, 50), (40, 50), (40, 10)]:
        QTest.mouseClick(canvas, Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier,
                         _point(canvas, row, column))
    QTest.keyClick(canvas, Qt.Key.Key_Return)
    inside = document.labels[12:39, 12:49]
    assert (inside == 1).all()
    assert document.labels[5, 5] == 255 and document.labels[45, 30] == 255
    # eraser
    window.set_tool(Tool.ERASER)
    canvas.set_brush_radius(1)
    QTest.mouseClick(canvas, Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier, _point(canvas, 25, 30))
    assert document.labels[25, 30] == 255
    # fill the unlabelled outside with class 0: the rectangle stays class 1
    window.set_active_class(0)
    window.set_tool(Tool.FILL)
    QTest.mouseClick(canvas, Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier, _point(canvas, 80, 120))
    assert document.labels[80, 120] == 0 and document.labels[0, 0] == 0
    assert document.labels[20, 20] == 1 and document.labels[25, 30] == 255  # the erased hole is enclosed
    window.undo()
    assert document.labels[80, 120] == 255


def test_accept_prediction_whole_class_and_region(qtbot, window, image_folder, checkpoint):
    window.open_path(image_folder)
    run_model(qtbot, window, checkpoint)
    document = window.session.document
    predicted = document.prediction.labels
    # inside a painted region only
    window.set_tool(Tool.ACCEPT)
    window.canvas.set_brush_radius(3)
    QTest.mouseClick(window.canvas, Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier,
                     _point(window.canvas, 50, 50))
    assert document.labels[50, 50] == predicted[50, 50]
    assert document.labels[10, 10] == 255
    window.undo()
    # one class
    window.set_active_class(int(predicted[50, 50]))
    window.accept("prediction", active_class_only=True)
    chosen = predicted == predicted[50, 50]
    assert (document.labels[chosen] == predicted[chosen]).all() and (document.labels[~chosen] == 255).all()
    # whole image
    window.accept("prediction")
    assert np.array_equal(document.labels, predicted)


def test_class_rename_recolor_and_delete(qtbot, window, image_folder):
    window.open_path(image_folder)
    document = window.session.document
    window.classes_panel.addRequested.emit("nucleus", (0, 0, 255))
    assert list(window.session.classes.names) == ["background", "foreground", "nucleus"]
    window.classes_panel.renameRequested.emit(1, "cell")
    window.classes_panel.recolorRequested.emit(1, (10, 200, 30))
    assert window.session.classes[1].name == "cell" and tuple(window.session.classes[1].color) == (10, 200, 30)
    document.apply((slice(0, 5), slice(0, 5)), np.ones((5, 5), bool), 1, "test")
    document.apply((slice(10, 15), slice(0, 5)), np.ones((5, 5), bool), 2, "test")
    assert tuple(window.canvas.layer_buffer("labels")[0, 0, :3]) == (10, 200, 30)
    # delete "cell": its pixels become unlabelled, "nucleus" shifts down to 1
    window.classes_panel.deleteRequested.emit(1, -1)
    assert list(window.session.classes.names) == ["background", "nucleus"]
    assert (document.labels[0:5, 0:5] == 255).all() and (document.labels[10:15, 0:5] == 1).all()


def test_edits_survive_close_and_reopen(qtbot, image_folder, window):
    from segstudio.gui.main_window import MainWindow

    window.open_path(image_folder)
    window.set_active_class(1)
    window.set_tool(Tool.BRUSH)
    window.canvas.set_brush_radius(2)
    QTest.mouseClick(window.canvas, Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier,
                     _point(window.canvas, 20, 20))
    window.select_image(1)
    window.canvas.set_brush_radius(1)
    QTest.mouseClick(window.canvas, Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier,
                     _point(window.canvas, 5, 6))
    window.classes_panel.renameRequested.emit(1, "cell")
    folder = window.session.project.folder
    window.close()  # saves everything
    again = MainWindow()
    qtbot.addWidget(again)
    assert again.open_path(image_folder)
    assert again.session.project.folder == folder
    assert again.session.index == 1  # the current image is restored
    assert again.session.document.labels[5, 6] == 1
    assert [e.status.value for e in again.session.project.entries] == ["corrected", "corrected", "new"]
    assert again.session.classes[1].name == "cell"
    again.select_image(0)
    assert again.session.document.labels[20, 20] == 1
    again.session.close()


def test_autosave_writes_within_two_seconds(qtbot, window, image_folder):
    window.open_path(image_folder)
    window.set_tool(Tool.BRUSH)
    QTest.mouseClick(window.canvas, Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier,
                     _point(window.canvas, 30, 30))
    entry = window.session.project.entries[0]
    qtbot.waitUntil(lambda: entry.labels_path.is_file(), timeout=2000)
    assert read_mask(entry.labels_path)[30, 30] == window.canvas.active_class


def test_continuous_painting_is_saved_while_it_goes_on(qtbot, window, image_folder):
    # a stroke every 200 ms for 3 s: the 1 s quiet-time timer never fires, the 2 s deadline does
    window.open_path(image_folder)
    window.set_tool(Tool.BRUSH)
    entry = window.session.project.entries[0]
    saved_while_painting = []
    for step in range(15):
        QTest.mouseClick(window.canvas, Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier,
                         _point(window.canvas, 10 + 5 * step, 30))
        qtbot.wait(200)
        saved_while_painting.append(entry.labels_path.is_file())
    assert any(saved_while_painting)
    # what the deadline saved is what was painted by then: the first stroke
    first_save = read_mask(entry.labels_path)
    assert first_save[10, 30] == window.canvas.active_class
    assert window.session.save(wait=True)
    assert read_mask(entry.labels_path)[80, 30] == window.canvas.active_class


def test_a_write_under_way_or_failed_counts_as_unsaved(qtbot, window, image_folder, monkeypatch):
    import threading

    window.open_path(image_folder)
    project = window.session.project
    release = threading.Event()
    real_write = project.write_labels

    def failing_write(index, labels):
        release.wait(10)
        raise OSError("No space left on device")

    monkeypatch.setattr(project, "write_labels", failing_write)
    window.session.document.apply((slice(0, 10), slice(0, 10)), None, 1, "paint")
    window.session.save()  # queued; the document is no longer dirty
    assert window.session.has_unsaved  # the write is still under way
    release.set()
    qtbot.waitUntil(lambda: not window.session._pending, timeout=5000)
    assert window.session.has_unsaved  # it failed: the snapshot waits for a retry
    monkeypatch.setattr(project, "write_labels", real_write)
    assert window.session.save(wait=True) and not window.session.has_unsaved
    assert (read_mask(project.entries[0].labels_path)[:10, :10] == 1).all()


def test_export_from_the_project(qtbot, window, image_folder, tmp_path):
    from segstudio.io.export import export_project
    from segstudio.tasks import run_to_completion

    window.open_path(image_folder)
    window.session.document.apply((slice(0, 10), slice(0, 10)), np.ones((10, 10), bool), 1, "test")
    window.session.save(wait=True)
    written = run_to_completion(export_project(window.session.project, tmp_path / "export", fmt="png"))
    assert [p.name for p in written] == ["cell_0.png"]
    with Image.open(written[0]) as mask:
        assert mask.mode == "P" and mask.size == (128, 96)
        assert tuple(mask.getpalette()[3:6]) == tuple(window.session.classes[1].color)
    assert (read_mask(written[0])[:10, :10] == 1).all()


@pytest.mark.parametrize("key,tool", [("B", Tool.BRUSH), ("E", Tool.ERASER), ("F", Tool.FILL), ("P", Tool.POLYGON)])
def test_tool_shortcuts(qtbot, window, image_folder, key, tool):
    window.open_path(image_folder)
    window.set_tool(Tool.ACCEPT)
    window.actions_by_name[f"tool_{tool.value}"].trigger()
    assert window.canvas.tool is tool
    assert window.actions_by_name[f"tool_{tool.value}"].shortcut().toString() == key


def test_demo_project_runs_the_demo_model_in_one_click(qtbot, window, tmp_path):
    from segstudio.demo import prepare_demo

    project = prepare_demo(tmp_path / "demo")
    assert window.open_path(project.folder)
    assert window.model_panel.settings()["checkpoint"] == project.model_settings["checkpoint"]
    with qtbot.waitSignal(window.runs.runFinished, timeout=60000) as blocker:
        window.model_panel.runRequested.emit(False)  # the Run button
    assert blocker.args[0] == "done"
    prediction = window.session.document.prediction
    assert set(np.unique(prediction.labels)) == {0, 1, 2}
    # the CRF preview follows the prediction
    qtbot.waitUntil(lambda: window.session.document.crf_labels is not None, timeout=30000)
    assert window.canvas.layer_buffer("crf") is not None


def test_autosave_writes_a_snapshot_in_the_background(qtbot, window, image_folder, monkeypatch):
    """The label file is written off the GUI thread from a copy, so painting
    on after the save starts does not leak into the file being written."""
    import threading

    window.open_path(image_folder)
    document = window.session.document
    project = window.session.project
    threads = []
    release = threading.Event()
    real_write = project.write_labels

    def slow_write(index, labels):
        threads.append(threading.get_ident())
        release.wait(5)
        real_write(index, labels)

    monkeypatch.setattr(project, "write_labels", slow_write)
    document.apply((slice(0, 4), slice(0, 4)), None, 1, "first")
    window.session.save()  # returns at once: the writer waits on `release`
    document.apply((slice(10, 14), slice(10, 14)), None, 1, "after the snapshot")
    release.set()
    assert window.session.save(wait=True)
    assert threads and threads[0] != threading.get_ident()
    saved = read_mask(project.entries[0].labels_path)
    assert saved[0, 0] == 1
    # the second edit was saved by the second save, after the first snapshot
    assert saved[12, 12] == 1


def test_an_unreadable_first_image_does_not_stop_the_others(qtbot, window, image_folder):
    (image_folder / "a_broken.png").write_bytes(b"not a png")  # sorts first
    assert window.open_path(image_folder)
    assert window.session.document is not None
    assert window.session.project.entries[window.session.index].source.name == "cell_0.png"
    assert "a_broken.png" in window.last_error.text()
    window.last_error.close()
    window.select_image(0)  # the user clicks the broken one
    assert window.session.project.entries[window.session.index].source.name == "cell_0.png"
    assert window.images_panel.current_index() == window.session.index


def _make_the_disk_full(window, monkeypatch):
    """Label writes fail as on a full disk until the returned switch's "on" is False."""
    project = window.session.project
    real_write = project.write_labels
    disk_full = {"on": True}

    def flaky(index, labels):
        if disk_full["on"]:
            raise OSError(28, "No space left on device")
        real_write(index, labels)

    monkeypatch.setattr(project, "write_labels", flaky)
    return disk_full


def _edit_image_0_and_fail_to_save_it(window):
    window.session.document.apply((slice(0, 10), slice(0, 10)), None, 1, "image 0")
    window.select_image(1)  # saves image 0 (fails in the background)
    assert not window.session.save(wait=True)


def test_a_failed_write_of_an_image_switched_away_from_is_retried(qtbot, window, image_folder, monkeypatch):
    window.open_path(image_folder)
    project = window.session.project
    disk_full = _make_the_disk_full(window, monkeypatch)
    _edit_image_0_and_fail_to_save_it(window)
    assert window.last_error is not None and "No space left" in window.last_error.text()
    disk_full["on"] = False
    window.session.document.apply((slice(0, 2), slice(0, 2)), None, 1, "image 1")
    assert window.session.save(wait=True)
    assert (read_mask(project.entries[0].labels_path)[:10, :10] == 1).all()  # image 0's edits survived


def test_declining_to_close_after_a_failed_save_keeps_everything(qtbot, window, image_folder, monkeypatch):
    from PySide6.QtWidgets import QMessageBox

    window.open_path(image_folder)
    project = window.session.project

    def broken(index, labels):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(project, "write_labels", broken)
    monkeypatch.setattr(QMessageBox, "question", lambda *args, **kwargs: QMessageBox.StandardButton.No)
    window.session.document.apply((slice(0, 10), slice(0, 10)), None, 1, "unsaved")
    assert window.close() is False
    assert window.session.project is project
    assert (window.session.document.labels[:10, :10] == 1).all()
    monkeypatch.undo()
    assert window.session.save(wait=True)
    assert (read_mask(project.entries[0].labels_path)[:10, :10] == 1).all()


def test_deleting_a_class_with_an_unreadable_label_file_changes_nothing(qtbot, window, image_folder):
    window.open_path(image_folder)
    project = window.session.project
    window.classes_panel.addRequested.emit("third", (0, 0, 255))
    for index in (0, 1, 2):
        window.select_image(index)
        window.session.document.apply((slice(0, 4), slice(0, 4)), None, 2, "third")
    window.session.save(wait=True)
    project.entries[1].labels_path.write_bytes(b"damaged")
    window.classes_panel.deleteRequested.emit(1, -1)
    assert "damaged" in window.last_error.text() or "cell_1" in window.last_error.text()
    assert list(window.session.classes.names) == ["background", "foreground", "third"]
    assert read_mask(project.entries[0].labels_path)[0, 0] == 2  # not renumbered
    assert window.session.document.labels[0, 0] == 2


def _paint_at(window, row, column):
    QTest.mouseClick(window.canvas, Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier,
                     _point(window.canvas, row, column))


def test_the_255th_class_switches_labels_to_uint16_keeping_paint_and_undo(qtbot, window, image_folder):
    from segstudio.gui.main_window import MainWindow

    window.open_path(image_folder)
    document = window.session.document
    window.set_tool(Tool.BRUSH)
    window.canvas.set_brush_radius(0)
    window.set_active_class(1)
    _paint_at(window, 20, 20)
    classes = window.session.classes
    for i in range(len(classes), 254):
        classes.add(f"extra {i}")
    window.sync_classes()
    assert window.session.document.labels.dtype == np.uint8
    window.classes_panel.addRequested.emit("class 254", (1, 2, 3))  # the 255th class, through the panel
    assert len(classes) == 255
    assert window.statusBar().currentMessage() == "255 classes: labels are now saved as 16-bit PNGs"
    labels = window.session.document.labels
    assert labels.dtype == np.uint16 and labels[20, 20] == 1 and labels[0, 0] == 65535
    for i in range(255, 301):
        classes.add(f"extra {i}")
    window.sync_classes()
    window.set_active_class(300)
    _paint_at(window, 40, 40)
    window.set_active_class(255)  # an ordinary class in a uint16 map
    _paint_at(window, 40, 60)
    assert document.labels[40, 40] == 300 and document.labels[40, 60] == 255
    shown = window.canvas.layer_buffer("labels")
    assert tuple(shown[40, 40, :3]) == classes[300].color and shown[40, 40, 3] == 255
    assert tuple(shown[40, 60, :3]) == classes[255].color and shown[0, 0, 3] == 0
    window.set_tool(Tool.ERASER)
    _paint_at(window, 40, 40)
    assert document.labels[40, 40] == 65535 and window.canvas.layer_buffer("labels")[40, 40, 3] == 0
    window.undo()
    assert document.labels[40, 40] == 300
    for _ in range(3):
        window.undo()
    assert document.labels[20, 20] == 65535  # the uint8-era stroke undone: unlabelled
    window.redo()
    assert document.labels[20, 20] == 1
    folder = window.session.project.folder
    expected = document.labels.copy()
    window.close()
    again = MainWindow()
    qtbot.addWidget(again)
    assert again.open_path(folder)
    assert len(again.session.classes) == 301
    assert again.session.document.labels.dtype == np.uint16
    assert np.array_equal(again.session.document.labels, expected)
    assert read_mask(again.session.project.entries[0].labels_path).dtype == np.uint16
    again.close()


def test_deleting_the_255th_class_narrows_labels_back_to_uint8(qtbot, window, image_folder):
    window.open_path(image_folder)
    classes = window.session.classes
    for i in range(len(classes), 255):
        classes.add(f"extra {i}")
    window.session.match_label_type()
    window.sync_classes()
    document = window.session.document
    assert document.labels.dtype == np.uint16
    document.apply((slice(0, 5), slice(0, 5)), None, 254, "test")
    document.apply((slice(10, 15), slice(0, 5)), None, 3, "test")
    window.select_image(1)
    window.session.document.apply((slice(0, 2), slice(0, 2)), None, 200, "test")
    window.select_image(0)
    document = window.session.document
    window.classes_panel.deleteRequested.emit(3, -1)
    assert len(classes) == 254
    assert window.statusBar().currentMessage() == "254 classes: labels are now saved as 8-bit PNGs"
    assert document.labels.dtype == np.uint8 and window.session.document is document
    assert (document.labels[0:5, 0:5] == 253).all() and (document.labels[10:15, 0:5] == 255).all()
    assert tuple(window.canvas.layer_buffer("labels")[0, 0, :3]) == classes[253].color
    other = read_mask(window.session.project.entries[1].labels_path)
    assert other.dtype == np.uint8 and (other[0:2, 0:2] == 199).all()


def test_switching_back_at_once_shows_the_labels_still_being_written(qtbot, window, image_folder, monkeypatch):
    """Going back to an image whose write is still queued used to read the
    old file: the edits vanished from view, and the next save wrote the old
    labels back over them."""
    import threading

    window.open_path(image_folder)
    project = window.session.project
    real_write = project.write_labels
    release = threading.Event()

    def slow_write(index, labels):
        if index == 0:
            release.wait(0.5)  # a big image on a slow disk
        real_write(index, labels)

    monkeypatch.setattr(project, "write_labels", slow_write)
    window.session.document.apply((slice(0, 6), slice(0, 6)), None, 1, "image 0")
    window.select_image(1)  # queues image 0's write
    window.select_image(0)  # back before it has landed
    assert (window.session.document.labels[:6, :6] == 1).all()
    release.set()
    assert window.session.save(wait=True)
    assert (read_mask(project.entries[0].labels_path)[:6, :6] == 1).all()


def test_going_back_to_an_image_whose_write_failed_shows_the_unsaved_labels(qtbot, window, image_folder,
                                                                              monkeypatch):
    window.open_path(image_folder)
    project = window.session.project
    disk_full = _make_the_disk_full(window, monkeypatch)
    _edit_image_0_and_fail_to_save_it(window)
    window.select_image(0)  # its file never got the edit; the snapshot did
    document = window.session.document
    assert (document.labels[:10, :10] == 1).all() and document.dirty
    disk_full["on"] = False
    document.apply((slice(20, 22), slice(20, 22)), None, 1, "more")
    assert window.session.save(wait=True)
    saved = read_mask(project.entries[0].labels_path)
    assert (saved[:10, :10] == 1).all() and (saved[20:22, 20:22] == 1).all()


def test_thumbnails_are_read_in_the_background_and_a_broken_image_is_marked(qtbot, window, image_folder):
    (image_folder / "a_broken.png").write_bytes(b"not a png")  # sorts first
    assert window.open_path(image_folder)
    if window.last_error is not None:
        window.last_error.close()
    qtbot.waitUntil(lambda: window.thumbnail_task is not None, timeout=5000)  # started once the window is idle
    task = window.thumbnail_task
    qtbot.waitUntil(lambda: not task.running, timeout=30000)
    qtbot.wait(50)
    panel = window.images_panel
    assert "unreadable" in panel.status(0).lower()
    placeholder = panel._item(0).icon().pixmap(64, 64).toImage()  # the broken image keeps it
    for index in (1, 2, 3):  # the others show their picture
        assert panel._item(index).icon().pixmap(64, 64).toImage() != placeholder
