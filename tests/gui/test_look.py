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


def test_training_curves_have_whole_epochs_and_a_legend_clear_of_them(qtbot):

    from segstudio.gui.panels.training import TrainingPanel

    panel = TrainingPanel()
    qtbot.addWidget(panel)
    panel.resize(480, 800)
    panel.show()
    qtbot.waitExposed(panel)
    ious, dices = [0.52, 0.74, 0.9], [0.61, 0.83, 0.97]
    panel.set_curves([1.0, 0.8, 0.6, 0.5, 0.45, 0.4], [1, 2, 3], ious, dices)
    qtbot.wait(50)
    axis = panel.score_plot.getPlotItem().getAxis("bottom")
    for low, high in ((0.8, 3.2), (0.9, 2.1), (1, 40)):
        values = [v for _spacing, level in axis.tickValues(low, high, 300) for v in level]
        assert values and all(float(v).is_integer() for v in values)
        assert all(text.lstrip("-").isdigit() for text in axis.tickStrings(values, 1.0, 1.0))
    view = panel.score_plot.getPlotItem().getViewBox()
    # no legend over the curves: the title names them
    assert panel.score_plot.getPlotItem().legend is None
    title = panel.score_plot.getPlotItem().titleLabel.text
    assert "mIoU" in title and "Dice" in title
    # the whole curve range is in sight
    (x0, x1), (y0, y1) = view.viewRange()
    assert x0 <= 1 and x1 >= 3 and y0 <= 0.5 and y1 >= 1.0


def test_the_default_layout_gives_the_model_and_training_tabs_the_room(qtbot, window):
    qtbot.wait(50)
    docks = window.docks
    assert window.dockWidgetArea(docks["Layers"]) == Qt.DockWidgetArea.LeftDockWidgetArea
    assert docks["Model"].height() > docks["CRF"].height()
    assert docks["Images"].height() > docks["Classes"].height()
    for dock in docks.values():  # a gap between the title bar's buttons and the scroll bar
        assert dock.widget().layout().contentsMargins().top() > 0


def test_status_badges_stay_inside_a_narrow_image_list(qtbot):
    from segstudio.gui.panels.images import ImagesPanel

    panel = ImagesPanel()
    qtbot.addWidget(panel)
    panel.set_entries([(f"a_rather_long_image_name_number_{i}.png", "corrected") for i in range(5)])
    panel.resize(200, 400)
    panel.show()
    qtbot.waitExposed(panel)
    view = panel._list
    assert view.horizontalScrollBar().maximum() == 0 or not view.horizontalScrollBar().isVisible()
    for row in range(view.count()):
        rect = view.visualItemRect(view.item(row))
        assert rect.right() <= view.viewport().width()


def test_at_1400_by_900_the_versions_table_is_in_sight_without_scrolling(qtbot, window):
    window.resize(1400, 900)
    window.docks["Training"].raise_()
    qtbot.wait(100)
    panel = window.training_panel
    scroll = panel.parentWidget().parentWidget()  # the dock's scroll area viewport
    top = panel.results.mapTo(panel, panel.results.rect().topLeft()).y()
    table = panel.versions.mapTo(panel, panel.versions.rect().topLeft()).y()
    assert panel.results.currentIndex() == 0  # the versions page
    # the tab bar, the table's header and its first row are inside the visible part
    assert top >= 0 and table + 60 <= scroll.height(), (table, scroll.height())


def test_the_model_panel_describes_the_chosen_checkpoint(qtbot, window, checkpoint):
    panel = window.model_panel
    assert "untrained" in panel.about_rows()[0][1]
    panel.set_settings({"checkpoint": str(checkpoint)})
    rows = dict(panel.about_rows())
    assert rows["Network"].startswith("unet (base_width 4, ")
    assert rows["Classes"] == "3: background, cytoplasm, nucleus"
    assert rows["Input"].startswith("3 channel(s)")
    assert rows["Trained"] == "outside segstudio (no training record)"
    panel.set_settings({"checkpoint": str(checkpoint.parent / "missing.safetensors")})
    assert "cannot be read" in panel.about_rows()[0][1] and "missing.safetensors" in panel.about_rows()[0][1]
