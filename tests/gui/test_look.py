"""How the studio looks as people use it: title, fitting, layer order, layout."""

import cv2
import numpy as np
from PySide6.QtCore import QPointF, QSettings, Qt

from tests.gui.conftest import run_model


def test_title_names_the_folder_opened_not_the_project_folder(window, image_folder):
    assert window.open_path(image_folder)
    assert (image_folder / "segstudio_project").is_dir()
    assert window.windowTitle() == "segstudio — cells"


def test_title_of_files_in_the_per_user_project_names_their_folder(window, image_folder):
    assert window.open_path_list(sorted(image_folder.glob("*.png"))[:2])
    assert "segstudio_project" not in str(window.session.project.folder)
    assert window.windowTitle() == "segstudio — cells"


def _fit_margins(canvas):
    height, width = canvas.image_size()
    top_left = canvas.to_widget(0, 0)
    bottom_right = canvas.to_widget(height, width)
    return (top_left.x(), top_left.y(), canvas.width() - bottom_right.x(), canvas.height() - bottom_right.y())


def _assert_fitted(canvas):
    left, top, right, bottom = _fit_margins(canvas)
    assert min(left, top, right, bottom) >= 0, "part of the image is outside the view"
    assert abs(left - right) <= 3 and abs(top - bottom) <= 3, "the image is not centred"
    # fitted: the image fills the view along one axis (2 % margin)
    assert min(left + right, top + bottom) <= 0.03 * max(canvas.width(), canvas.height())


def test_a_large_image_opens_fitted_and_stays_fitted_until_the_user_zooms(qtbot, window, tmp_path):
    folder = tmp_path / "big"
    folder.mkdir()
    image = np.zeros((2000, 3000, 3), np.uint8)
    image[:, :, 1] = np.linspace(0, 255, 3000, dtype=np.uint8)[None, :]
    cv2.imwrite(str(folder / "large.png"), image)
    assert window.open_path(folder)
    canvas = window.canvas
    assert canvas.image_size() == (2000, 3000)
    qtbot.wait(50)
    _assert_fitted(canvas)
    zoom_before = canvas.zoom
    window.resize(1500, 1000)
    qtbot.waitUntil(lambda: canvas.zoom != zoom_before, timeout=2000)
    _assert_fitted(canvas)
    canvas.zoom_at(2.0, QPointF(canvas.width() / 2, canvas.height() / 2))
    zoomed = canvas.zoom
    window.resize(1200, 800)
    qtbot.wait(100)
    assert canvas.zoom == zoomed
    canvas.fit()
    _assert_fitted(canvas)


def test_each_newly_selected_image_is_fitted(qtbot, window, image_folder):
    window.open_path(image_folder)
    window.canvas.zoom_at(3.0, QPointF(10, 10))
    window.select_image(1)
    _assert_fitted(window.canvas)


def test_the_heatmap_shows_over_the_masks(qtbot, window, image_folder, checkpoint):
    window.open_path(image_folder)
    assert run_model(qtbot, window, checkpoint) == "done"
    window.accept("prediction")
    canvas = window.canvas
    labels = window.session.document.labels
    assert np.count_nonzero((labels != 255) & (labels != 0)) > 100
    rows, columns = np.nonzero((labels != 255) & (labels != 0))

    def shown():
        frame = canvas.grab().toImage().convertToFormat(canvas.grab().toImage().Format.Format_RGB888)
        pixels = np.frombuffer(frame.constBits(), np.uint8).reshape(frame.height(), frame.bytesPerLine())
        pixels = pixels[:, : frame.width() * 3].reshape(frame.height(), frame.width(), 3)
        ratio = frame.width() / canvas.width()
        out = []
        for row, column in zip(rows, columns):
            point = canvas.to_widget(row + 0.5, column + 0.5)
            out.append(pixels[int(point.y() * ratio), int(point.x() * ratio)])
        return np.array(out, np.float32)

    before = shown()
    window.layers_panel._row("heatmap").visible.setChecked(True)
    assert canvas.states["heatmap"].visible
    after = shown()
    assert np.abs(after - before).mean() > 30


def test_reset_layout_puts_the_docks_back(qtbot, window):
    model, crf = window.docks["Model"], window.docks["CRF"]
    assert window.dockWidgetArea(model) == Qt.DockWidgetArea.RightDockWidgetArea
    window.addDockWidget(Qt.DockWidgetArea.LeftDockWidgetArea, model)
    crf.setFloating(True)
    window.docks["Layers"].hide()
    window.actions_by_name["reset_layout"].trigger()
    assert window.dockWidgetArea(model) == Qt.DockWidgetArea.RightDockWidgetArea
    assert not crf.isFloating()
    assert window.docks["Layers"].isVisible()
    assert not window.docks["Volume"].isVisible()
    assert window.tabifiedDockWidgets(model) == [window.docks["Training"]]


def test_a_maximised_window_comes_back_maximised(qtbot):
    from segstudio.gui.main_window import MainWindow

    first = MainWindow()
    qtbot.addWidget(first)
    first.show()
    first.showMaximized()
    qtbot.waitUntil(first.isMaximized, timeout=2000)
    first.close()
    assert QSettings().value("maximized") in (True, "true")
    second = MainWindow()
    qtbot.addWidget(second)
    second.show()
    qtbot.waitExposed(second)
    assert second.isMaximized()
    second.close()
    third = MainWindow()
    qtbot.addWidget(third)
    third.showNormal()
    third.resize(700, 500)
    size = third.size()
    third.close()
    fourth = MainWindow()
    qtbot.addWidget(fourth)
    fourth.show()
    assert not fourth.isMaximized()
    assert fourth.size() == size
    fourth.close()
