"""The whole-slide window as a user drives it: opened from the studio, tiles drawn from the pyramid,
brush strokes into the tiled labels with undo and autosave, the model on the view, accept, close."""

from __future__ import annotations

import re
from pathlib import Path

import cv2
import numpy as np
import pytest
from PySide6.QtCore import QPoint, QPointF, Qt
from PySide6.QtTest import QTest
from PySide6.QtWidgets import QMessageBox

from segstudio.io.pyramid import build_pyramid_steps
from segstudio.io.tiled_labels import TiledLabels
from segstudio.tasks import run_to_completion

REPO = Path(__file__).resolve().parents[2]
SAMPLE = REPO / "resources" / "sample" / "images"


@pytest.fixture
def slide_path(tmp_path):
    """A 3000 x 4000 slide of glass with two of the demo's real cell images on it."""
    canvas = np.full((3000, 4000, 3), 236, np.uint8)
    for (y, x), name in (((400, 300), "cells_01.png"), ((1800, 2600), "cells_05.png")):
        cells = cv2.cvtColor(cv2.imread(str(SAMPLE / name), cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)
        canvas[y : y + cells.shape[0], x : x + cells.shape[1]] = cells
    canvas[0:50, 0:50] = (255, 0, 0)  # a red corner to find on screen
    return run_to_completion(build_pyramid_steps(canvas, tmp_path / "cells.ome.tif")), canvas


def _open(qtbot, window, path):
    assert window.open_path(path)
    slide_window = window.slide_windows[-1]
    qtbot.waitUntil(lambda: slide_window.windowHandle() is not None and slide_window.windowHandle().isExposed())
    _wait_tiles(qtbot, slide_window.view)
    return slide_window


def _wait_tiles(qtbot, view):
    def settled():
        view.repaint()
        assert view.fetcher.idle
        view.repaint()
        assert view.fetcher.idle
    qtbot.waitUntil(settled, timeout=20000)


def _screen_colour(view, row, column):
    """The colour on screen of level-0 pixel (row, column): where the view draws it."""
    point = view.to_widget(row, column)
    return view.grab().toImage().pixelColor(QPoint(round(point.x()), round(point.y())))


def test_a_slide_opens_in_its_window_drawn_from_the_level_that_fits(qtbot, window, slide_path) -> None:
    path, canvas = slide_path
    slide_window = _open(qtbot, window, path)
    view = slide_window.view
    assert slide_window.isVisible() and view.level() >= 1  # the whole slide: a coarse level
    colour = _screen_colour(view, 10, 10)
    assert (colour.red(), colour.green(), colour.blue()) == (255, 0, 0)
    image_tiles = [key for key in view.cache.keys() if key[0] == "image"]
    assert image_tiles and {key[1].level for key in image_tiles} == {view.level()}
    view.center_on(500, 400)
    slide_window.actions_by_name["actual"].trigger()
    assert view.level() == 0 and view.zoom == pytest.approx(1.0)
    _wait_tiles(qtbot, view)
    row, column = 400 + 100, 300 + 120  # inside the first cell image, at full resolution
    colour = _screen_colour(view, row, column)
    assert (colour.red(), colour.green(), colour.blue()) == tuple(int(v) for v in canvas[row, column])
    assert "level 0" in slide_window.view_label.text()
    slide_window.close()


def test_a_brush_stroke_undo_and_autosave_write_only_its_chunks(qtbot, window, slide_path) -> None:
    path, _ = slide_path
    slide_window = _open(qtbot, window, path)
    view, document = slide_window.view, slide_window.document
    view.center_on(1000, 1000)
    slide_window.actions_by_name["actual"].trigger()
    _wait_tiles(qtbot, view)
    QTest.keyClick(view, Qt.Key.Key_2)  # class 2 of the list (index 1)
    assert view.active_class == 1 and slide_window.class_box.currentIndex() == 1
    start, end = view.to_widget(1000, 900).toPoint(), view.to_widget(1000, 1100).toPoint()
    QTest.mousePress(view, Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier, start)
    for step in range(1, 11):
        QTest.mouseMove(view, start + (end - start) * step / 10)
    QTest.mouseRelease(view, Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier, end)
    labels = document.labels.read(((980, 1020), (880, 1120)))
    assert labels[20, 20] == 1 and labels[20, 220] == 1 and labels[0, 120] == 255  # radius 12 px at 100 %
    colour = _screen_colour(view, 1000, 1000)  # the label colour over the glass
    assert (colour.red(), colour.green(), colour.blue()) != (236, 236, 236)
    assert slide_window.actions_by_name["undo"].text() == "Undo brush"
    with qtbot.waitSignal(slide_window.saved, timeout=5000) as saved:
        pass  # autosave, 1.5 s after the stroke
    chunks, written = saved.args
    store = document.folder / "labels"
    files = sorted(p.name for p in store.iterdir() if not p.name.startswith("."))
    assert chunks == 2 and files == ["1.1", "1.2"] and 0 < written < 4000  # x 880-1120 straddles 1024
    assert slide_window.save_label.text().startswith("saved (2 chunks")
    QTest.keyClick(view, Qt.Key.Key_Z, Qt.KeyboardModifier.ControlModifier)
    assert (document.labels.read(((980, 1020), (880, 1120))) == 255).all()
    assert _screen_colour(view, 1000, 1000).red() == 236
    slide_window.actions_by_name["redo"].trigger()
    assert document.labels.read(((1000, 1001), (1000, 1001)))[0, 0] == 1
    slide_window.close()  # saves what autosave had not yet written
    reopened = TiledLabels.open(store)
    assert reopened.read(((1000, 1001), (1000, 1001)))[0, 0] == 1


def test_the_eraser_and_the_overview(qtbot, window, slide_path) -> None:
    path, _ = slide_path
    slide_window = _open(qtbot, window, path)
    view, document = slide_window.view, slide_window.document
    minimap = view.minimap
    assert minimap.isVisible() and max(minimap.width(), minimap.height()) == 200
    QTest.mouseClick(minimap, Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier,
                     QPoint(150, 75))  # 200 px for 4000: (150, 75) is level-0 (x 3000, y 1500)
    (y0, y1), (x0, x1) = view.visible_box()
    assert (y0 + y1) / 2 == pytest.approx(1500, abs=30) and (x0 + x1) / 2 == pytest.approx(3000, abs=30)
    QTest.keyClick(view, Qt.Key.Key_M)
    assert not minimap.isVisible()
    centre = view.rect().center()
    QTest.mouseClick(view, Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier, centre)
    row, column = (int(v) for v in view.to_slide(QPointF(centre)))
    assert document.labels.read(((row, row + 1), (column, column + 1)))[0, 0] == 1
    QTest.keyClick(view, Qt.Key.Key_E)
    assert slide_window.actions_by_name["tool_eraser"].isChecked()
    QTest.mouseClick(view, Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier, centre)
    assert document.labels.read(((row, row + 1), (column, column + 1)))[0, 0] == 255
    assert len(document.history) == 2
    QTest.keyClick(view, Qt.Key.Key_F1)
    boxes = [w for w in slide_window.findChildren(QMessageBox) if w.windowTitle() == "Keyboard shortcuts"]
    assert boxes and "Run on the view" in boxes[0].text() and "Ctrl+Shift+A" in boxes[0].text()
    assert "overview" in boxes[0].text() and "slice" not in boxes[0].text()  # the slide's gestures
    boxes[0].close()
    slide_window.close()


def test_the_model_runs_on_the_view_and_its_prediction_is_accepted(qtbot, window, slide_path, checkpoint) -> None:
    path, canvas = slide_path
    settings = window.model_panel.settings()
    settings.update(checkpoint=str(checkpoint), architecture="unet", device="cpu", precision="fp32")
    window.model_panel.set_settings(settings)
    slide_window = _open(qtbot, window, path)
    view, document = slide_window.view, slide_window.document
    view.center_on(600, 500)
    slide_window.actions_by_name["actual"].trigger()
    with qtbot.waitSignal(slide_window.statusBar().messageChanged, timeout=60000,
                          check_params_cb=lambda text: text.startswith("model done")):
        slide_window.actions_by_name["run_view"].trigger()
    assert len(document.classes) == 3  # the checkpoint's third class was added
    (y0, y1), (x0, x1) = ((max(0, int(a)), int(b)) for a, b in view.visible_box())
    predicted = document.prediction.read(((y0, y1), (x0, x1)))
    assert (predicted != 255).all()  # the whole view predicted
    assert (document.prediction.read(((2900, 3000), (3900, 4000))) == 255).all()  # not outside it
    _wait_tiles(qtbot, view)
    assert any(key[0] == "prediction" for key in view.cache.keys())
    QTest.keyClick(view, Qt.Key.Key_A, Qt.KeyboardModifier.ControlModifier | Qt.KeyboardModifier.ShiftModifier)
    np.testing.assert_array_equal(document.labels.read(((y0, y1), (x0, x1))), predicted)
    slide_window.actions_by_name["undo"].trigger()
    assert (document.labels.read(((y0, y1), (x0, x1))) == 255).all()
    slide_window.close()


def test_a_plain_large_image_gets_a_pyramid_in_the_background(qtbot, window, tmp_path) -> None:
    from segstudio.gui.slide.opening import open_slide

    image = cv2.imread(str(SAMPLE / "cells_01.png"), cv2.IMREAD_COLOR)
    big = np.tile(image, (5, 5, 1))  # 2240 x 2240
    source = tmp_path / "mosaic.png"
    cv2.imwrite(str(source), big)
    open_slide(window, source)
    qtbot.waitUntil(lambda: len(window.slide_windows) == 1, timeout=30000)
    slide_window = window.slide_windows[0]
    slide = slide_window.document.slide
    assert slide.shape == (2240, 2240) and len(slide.levels) >= 3 and slide.path.name.endswith(".ome.tif")
    np.testing.assert_array_equal(slide.read_region(0, ((0, 8), (0, 8))), cv2.cvtColor(big, cv2.COLOR_BGR2RGB)[:8, :8])
    slide_window.close()
    open_slide(window, source)  # the second time: the pyramid is reused, at once
    assert len(window.slide_windows) == 1


def test_an_unreadable_slide_is_named_and_nothing_opens(qtbot, window, tmp_path, monkeypatch) -> None:
    from segstudio.gui.slide import opening

    broken = tmp_path / "broken.svs"
    broken.write_bytes(b"II*\x00" + b"\x00" * 100)
    monkeypatch.setattr(opening, "is_slide", lambda path: True)
    monkeypatch.setattr("segstudio.gui.main_window.show_error", lambda *a: None, raising=False)
    shown = []
    monkeypatch.setattr(window, "report_error", lambda title, error: shown.append((title, str(error))))
    assert opening.open_slide(window, broken) is None
    assert shown and shown[0][0] == "Cannot open the slide" and "broken.svs" in shown[0][1]
    assert window.slide_windows == []


def _use_model(window, checkpoint):
    settings = window.model_panel.settings()
    settings.update(checkpoint=str(checkpoint), architecture="unet", device="cpu", precision="fp32")
    window.model_panel.set_settings(settings)


def _wait_run(qtbot, slide_window, trigger):
    with qtbot.waitSignal(slide_window.statusBar().messageChanged, timeout=60000,
                          check_params_cb=lambda text: text.startswith("model done")) as blocker:
        trigger()
    return blocker.args[0]


def test_a_drawn_rectangle_is_predicted_and_nothing_outside_it(qtbot, window, slide_path, checkpoint) -> None:
    path, _ = slide_path
    _use_model(window, checkpoint)
    slide_window = _open(qtbot, window, path)
    view, document = slide_window.view, slide_window.document
    view.center_on(600, 500)
    slide_window.actions_by_name["actual"].trigger()
    QTest.keyClick(view, Qt.Key.Key_R)
    assert view.tool.value == "region"
    a, b = view.to_widget(450, 350).toPoint(), view.to_widget(700, 650).toPoint()

    def drag() -> None:
        QTest.mousePress(view, Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier, a)
        QTest.mouseMove(view, (a + b) / 2)
        QTest.mouseMove(view, b)
        QTest.mouseRelease(view, Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier, b)

    _wait_run(qtbot, slide_window, drag)
    predicted = document.prediction.read(((400, 750), (300, 700)))
    inside = predicted[52:298, 52:348]
    assert (inside != 255).all()
    assert (predicted[:48] == 255).all() and (predicted[:, :48] == 255).all() and (predicted[302:] == 255).all()
    assert (document.labels.read(((400, 750), (300, 700))) == 255).all()  # the labels are the user's
    slide_window.close()


def test_the_whole_slide_run_skips_the_glass(qtbot, window, slide_path, checkpoint) -> None:
    path, _ = slide_path
    _use_model(window, checkpoint)
    slide_window = _open(qtbot, window, path)
    message = _wait_run(qtbot, slide_window, slide_window.actions_by_name["run_slide"].trigger)
    predicted, glass = (int(word) for word in re.findall(r"(\d+) tiles predicted, (\d+) glass", message)[0])
    assert predicted + glass == 12 and 2 <= predicted <= 6  # 1024 px tiles; two cell images on the glass
    prediction = slide_window.document.prediction
    assert prediction.read(((500, 501), (400, 401)))[0, 0] != 255  # on the first cell image
    assert prediction.read(((2900, 2901), (100, 101)))[0, 0] == 255  # glass: not predicted
    assert not slide_window.progress.isVisible()
    slide_window.close()


def test_a_plain_image_too_large_for_the_canvas_opens_as_a_slide(qtbot, window, tmp_path, monkeypatch) -> None:
    from segstudio.gui.slide import opening

    monkeypatch.setattr(opening, "SLIDE_PIXELS", 1000 * 1000)
    image = cv2.imread(str(SAMPLE / "cells_01.png"), cv2.IMREAD_COLOR)
    source = tmp_path / "wide.png"
    cv2.imwrite(str(source), np.tile(image, (3, 3, 1)))  # 1344^2 > 1000^2
    small = tmp_path / "small.png"
    cv2.imwrite(str(small), image)
    assert opening.opens_as_slide(source) and not opening.opens_as_slide(small)
    assert window.open_path_list([source])  # File > Open images, one file
    qtbot.waitUntil(lambda: len(window.slide_windows) == 1, timeout=30000)
    assert window.slide_windows[0].document.slide.shape == (1344, 1344)
    assert window.session.project is None  # the studio's canvas did not read it whole
    window.slide_windows[0].close()


def test_refining_with_the_crf_uses_the_crf_docks_settings(qtbot, window, slide_path, checkpoint) -> None:
    import json

    from segstudio.refine import CRFParams

    path, _ = slide_path
    _use_model(window, checkpoint)
    window.crf_panel.set_params(CRFParams(iterations=3))
    slide_window = _open(qtbot, window, path)
    crf = slide_window.actions_by_name["with_crf"]
    assert crf.isEnabled() and not crf.isChecked()
    crf.trigger()
    _wait_run(qtbot, slide_window, lambda: slide_window.run_model(region=((400, 600), (300, 500))))
    done = json.loads((slide_window.document.folder / "prediction" / "done.json").read_text())
    assert done["run"].endswith('"iterations": 3}') and done["boxes"] == [[[400, 600], [300, 500]]]
    assert (slide_window.document.prediction.read(((400, 600), (300, 500))) != 255).all()
    slide_window.close()


def test_the_labels_export_as_a_pyramid_and_as_geojson(qtbot, window, slide_path, tmp_path, monkeypatch) -> None:
    import json

    from segstudio.gui.slide import window as slide_window_module
    from segstudio.io.slide import Slide

    path, _ = slide_path
    slide_window = _open(qtbot, window, path)
    document = slide_window.document
    document.begin_stroke("brush")
    document.paint_segment((1000, 1000), (1000, 1400), 20, 1)
    document.end_stroke()
    for action, name in (("export", "labels.ome.tif"), ("export_geojson", "labels.geojson")):
        monkeypatch.setattr(slide_window_module.QFileDialog, "getSaveFileName",
                            lambda *args, name=name: (str(tmp_path / name), ""))
        slide_window.actions_by_name[action].trigger()
        qtbot.waitUntil(lambda: not slide_window.run_task.running, timeout=30000)  # the export task has ended
        assert slide_window.statusBar().currentMessage() == f"labels exported to {tmp_path / name}"
    with Slide(tmp_path / "labels.ome.tif") as exported:
        assert exported.shape == (3000, 4000) and len(exported.levels) >= 3
        assert exported.read_region(0, ((1000, 1001), (1200, 1201)))[0, 0] == 1
    collection = json.loads((tmp_path / "labels.geojson").read_text())
    feature, = collection["features"]
    assert feature["properties"]["classification"]["name"] == "foreground"
    ring = feature["geometry"]["coordinates"][0][0]
    xs, ys = [p[0] for p in ring], [p[1] for p in ring]
    assert 975 <= min(xs) <= 985 and 1415 <= max(xs) <= 1425 and 975 <= min(ys) <= 985
    slide_window.close()


def test_an_openslide_format_without_the_extra_names_what_to_install(qtbot, window, tmp_path, monkeypatch) -> None:
    import sys

    mirax = tmp_path / "scan.mrxs"
    mirax.write_bytes(b"not really a MIRAX slide")
    monkeypatch.setitem(sys.modules, "openslide", None)  # as on a machine without the extra
    shown = []
    monkeypatch.setattr(window, "report_error", lambda title, error: shown.append((title, str(error))))
    assert not window.open_path(mirax)
    assert shown[0][0] == "Cannot open the slide"
    assert "scan.mrxs" in shown[0][1] and 'pip install "segstudio[openslide]"' in shown[0][1]
    assert window.slide_windows == []


def test_a_failed_autosave_loses_nothing_and_says_so_once(qtbot, window, slide_path, monkeypatch) -> None:
    path, _ = slide_path
    slide_window = _open(qtbot, window, path)
    document, labels = slide_window.document, slide_window.document.labels
    real_write = labels.write_snapshot
    failures = []

    def full_disk(snapshot):
        failures.append(sorted(snapshot))
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(labels, "write_snapshot", full_disk)
    shown = []
    monkeypatch.setattr(slide_window, "report_error", lambda title, error: shown.append(title))
    for row in (700, 1700):
        document.begin_stroke("brush")
        document.paint_segment((row, 700), (row, 800), 10, 1)
        document.end_stroke()
        with qtbot.waitSignal(slide_window.saveFailed, timeout=5000):
            slide_window.view.edited.emit()  # what a stroke in the view emits: autosave is scheduled
    assert len(failures) == 2 and len(shown) == 1  # one dialog, not one per stroke
    assert slide_window.save_label.text() == "NOT SAVED" and document.unsaved
    monkeypatch.setattr(labels, "write_snapshot", real_write)  # the disk has room again
    slide_window.close()  # saves what autosave could not
    store = document.folder / "labels"
    assert (store / "1.1").is_file() and (store / "3.1").is_file()


def test_what_is_painted_on_a_slide_trains_from_the_training_dock(qtbot, window, slide_path, tmp_path) -> None:
    from segstudio.demo import prepare_demo
    from segstudio.io.masks import read_mask

    path, _ = slide_path
    project = prepare_demo(tmp_path / "demo")
    assert window.open_path(project.folder)
    slide_window = _open(qtbot, window, path)
    assert slide_window.document.folder.parent == project.folder / "slides"  # kept in the project
    mask = read_mask(REPO / "resources" / "sample" / "masks" / "cells_01.png")  # the expert labels of those cells
    document = slide_window.document
    document.begin_stroke("accept")
    document._apply(((400, 400 + mask.shape[0]), (300, 300 + mask.shape[1])), mask)
    document.end_stroke()
    slide_window.close()
    panel, training = window.training_panel, window.training
    assert panel._images.text().endswith(", 1 labelled slide region(s)")
    panel._epochs.setValue(1)
    panel._mode.setCurrentIndex(panel._mode.findData(True))
    panel._device.setCurrentText("cpu")
    panel._val_share.setValue(0.25)
    seen = []
    on_started = training._on_started
    training._on_started = lambda message: (seen.append(message), on_started(message))
    with qtbot.waitSignal(training.runEnded, timeout=180000) as ended:
        qtbot.mouseClick(panel._train, Qt.MouseButton.LeftButton)
    assert ended.args[0] == "finished", window.last_error
    started = seen[0]
    used = started["train_images"] + started["val_images"]
    assert "cells.ome.tif@0,1024,0,1024" in used and not started["skipped"]


def test_a_brush_is_held_to_its_limit_when_zoomed_far_out_and_a_lost_release_ends_the_stroke(
        qtbot, window, slide_path) -> None:
    from PySide6.QtCore import QEvent
    from PySide6.QtGui import QMouseEvent

    from segstudio.gui.slide.view import MAX_BRUSH_RADIUS

    path, _ = slide_path
    slide_window = _open(qtbot, window, path)
    view, document = slide_window.view, slide_window.document
    slide_window.size_box.setValue(400)  # 400 screen px at fit zoom (x0.27): ~1500 slide px
    centre = view.rect().center()
    with qtbot.waitSignal(view.brushLimited) as limited:
        QTest.mousePress(view, Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier, centre)
    assert limited.args == [float(MAX_BRUSH_RADIUS)]
    assert "at most 512 slide pixels" in slide_window.statusBar().currentMessage()
    row, column = view.to_slide(QPointF(centre))
    labelled = document.labels.read(((0, 3000), (0, 4000))) == 1
    rows, columns = labelled.any(axis=1).nonzero()[0], labelled.any(axis=0).nonzero()[0]
    assert rows[-1] - rows[0] + 1 <= 2 * MAX_BRUSH_RADIUS + 1 and abs((rows[0] + rows[-1]) / 2 - row) < 2
    # the release went to a dialog: the next move with no button down ends the stroke instead of painting
    moved = QPointF(centre.x() + 150, centre.y())
    view.mouseMoveEvent(QMouseEvent(QEvent.Type.MouseMove, moved, moved, Qt.MouseButton.NoButton,
                                    Qt.MouseButton.NoButton, Qt.KeyboardModifier.NoModifier))
    assert not document.painting and len(document.history) == 1
    assert not labelled.any(axis=0)[int(view.to_slide(moved)[1]) + MAX_BRUSH_RADIUS:].any()
    slide_window.close()


def test_opening_a_slide_again_brings_its_window_forward(qtbot, window, slide_path) -> None:
    path, _ = slide_path
    first = _open(qtbot, window, path)
    assert window.open_path(path)
    assert window.slide_windows == [first]  # one window per slide: two would overwrite each other's chunks
    first.close()


def test_a_scale_bar_in_microns_and_the_slide_in_open_recent(qtbot, window, tmp_path) -> None:
    from segstudio.gui.slide.view import scale_bar

    assert scale_bar(0.25) == (20.0, "20 µm")  # 30 µm wanted: 20 is the nearest of 10, 20, 50
    assert scale_bar(10.0) == (1000.0, "1 mm") and scale_bar(0.01) == (1.0, "1 µm")
    canvas = np.full((2000, 3000, 3), 40, np.uint8)
    path = run_to_completion(build_pyramid_steps(canvas, tmp_path / "scan.ome.tif", microns_per_pixel=(0.5, 0.5)))
    slide_window = _open(qtbot, window, path)
    view = slide_window.view
    slide_window.actions_by_name["actual"].trigger()  # 0.5 µm per screen pixel: a 50 µm bar, 100 px long
    shot = view.grab().toImage()
    bar = [shot.pixelColor(x, view.height() - 18).red() for x in range(16, 16 + 100)]
    assert min(bar) == 255 and shot.pixelColor(16 + 104, view.height() - 18).red() < 255
    assert "µm per screen pixel" in slide_window.view_label.text()
    assert str(path) in [action.text() for action in window.recent_menu.actions()]
    slide_window.close()


def test_the_opacity_slider_and_the_class_swatches(qtbot, window, slide_path) -> None:
    path, _ = slide_path
    slide_window = _open(qtbot, window, path)
    view, document = slide_window.view, slide_window.document
    view.center_on(2000, 2000)
    slide_window.actions_by_name["actual"].trigger()
    _wait_tiles(qtbot, view)
    document.begin_stroke("brush")
    document.paint_segment((2000, 1950), (2000, 2050), 10, 1)
    document.end_stroke()
    colour = document.classes[1].color
    slide_window.opacity_slider.setValue(100)
    shown = _screen_colour(view, 2000, 2000)
    assert (shown.red(), shown.green(), shown.blue()) == tuple(colour)  # opaque: the class colour itself
    slide_window.opacity_slider.setValue(0)
    shown = _screen_colour(view, 2000, 2000)
    assert (shown.red(), shown.green(), shown.blue()) == (236, 236, 236)  # the glass under it
    icon = slide_window.class_box.itemIcon(1).pixmap(12, 12).toImage().pixelColor(6, 6)
    assert (icon.red(), icon.green(), icon.blue()) == tuple(colour)
    slide_window.close()


def test_the_labels_in_view_export_as_an_indexed_png(qtbot, window, slide_path, tmp_path, monkeypatch) -> None:
    from segstudio.gui.slide import window as slide_window_module
    from segstudio.io.masks import read_mask

    path, _ = slide_path
    slide_window = _open(qtbot, window, path)
    view, document = slide_window.view, slide_window.document
    with monkeypatch.context() as small:  # a view above the limit is refused before any dialog
        small.setattr("segstudio.annotation.slide_document.MAX_ACCEPT_PIXELS", 1000)
        assert not slide_window.export_view()
        assert "zoom in" in slide_window.statusBar().currentMessage()
    view.center_on(1000, 1000)
    slide_window.actions_by_name["actual"].trigger()
    document.begin_stroke("brush")
    document.paint_segment((1000, 1000), (1000, 1000), 5, 1)
    document.end_stroke()
    target = tmp_path / "view.png"
    monkeypatch.setattr(slide_window_module.QFileDialog, "getSaveFileName", lambda *args: (str(target), ""))
    slide_window.actions_by_name["export_view"].trigger()
    (y0, y1), (x0, x1) = view.visible_box()
    mask = read_mask(target)
    assert mask.shape == (min(3000, int(y1) + 1) - max(0, int(y0)), min(4000, int(x1) + 1) - max(0, int(x0)))
    assert mask[1000 - max(0, int(y0)), 1000 - max(0, int(x0))] == 1 and (mask == 1).sum() == (
        document.labels.read(((995, 1006), (995, 1006))) == 1).sum()
    assert slide_window.statusBar().currentMessage() == f"labels exported to {target}"
    slide_window.close()
