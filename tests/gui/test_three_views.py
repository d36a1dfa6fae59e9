"""View > Three views: a volume's axial, coronal and sagittal planes side by
side, linked by a crosshair (3D Slicer, ITK-SNAP). The extra views are canvases
on the same Document: what is painted in one is in all."""

import math

import nibabel
import numpy as np
import pytest
from PySide6.QtCore import QPoint, Qt
from PySide6.QtTest import QTest

from segstudio.gui.canvas import Tool
from segstudio.gui.studio_actions import shortcut_rows

SHAPE = (12, 20, 24)  # Z, Y, X as the studio stores it


@pytest.fixture
def nifti_folder(tmp_path):
    """A RAS NIfTI (every view of it is shown flipped) whose voxels differ."""
    folder = tmp_path / "mri"
    folder.mkdir()
    z, y, x = np.indices(SHAPE)
    stored = (10 * z + 3 * y + x).astype(np.int16)
    # NIfTI data are (i, j, k) = (x, y, z)
    nibabel.save(nibabel.Nifti1Image(stored.transpose(2, 1, 0), np.diag([0.9, 1.0, 2.0, 1.0])),
                 str(folder / "head.nii.gz"))
    return folder


def _point(canvas, row, column):
    p = canvas.to_widget(row + 0.5, column + 0.5)
    return QPoint(round(p.x()), round(p.y()))


def _shown_pixel_of(canvas, voxel):
    """Where on the canvas (row, column as shown) a voxel of its plane is."""
    slicer = canvas.slicer
    row, column = (v for axis, v in enumerate(voxel) if axis != slicer.axis)
    return slicer.screen_to_plane(row, column)


def _three_views_on(qtbot, window, folder):
    assert window.open_path(folder)
    document = window.session.document
    assert document.is_volume and document.shape == SHAPE
    action = window.actions_by_name["three_views"]
    assert action.isCheckable() and not action.isChecked()
    action.trigger()
    assert action.isChecked()
    qtbot.waitUntil(lambda: all(e.isVisible() for e in window.three_views.extras))
    return document


def test_three_views_show_the_other_planes_of_the_same_document(qtbot, window, nifti_folder):
    before = len(window.session.document._listeners) if window.session.document else None
    assert before is None
    assert window.open_path(nifti_folder)
    document = window.session.document
    listeners = len(document._listeners)
    first, second = window.three_views.extras
    assert first.document is None and second.document is None and not first.isVisible()

    window.actions_by_name["three_views"].trigger()
    qtbot.waitUntil(lambda: first.isVisible() and second.isVisible())
    assert first.document is document and second.document is document
    assert (window.canvas.slicer.axis, first.slicer.axis, second.slicer.axis) == (0, 1, 2)
    assert len(document._listeners) == listeners + 2
    assert first._on_document_changed in document._listeners and second._on_document_changed in document._listeners
    # all three views share the window (and it is not the default any more once changed)
    window.canvas.set_window(100.0, 50.0)
    assert first.slicer.window == second.slicer.window == (100.0, 50.0)
    # the extra views are beside the main canvas, which stays the larger one
    assert window.canvas.width() > first.width() and first.mapTo(window, QPoint(0, 0)).x() > window.canvas.mapTo(window, QPoint(0, 0)).x()
    # the crosshair starts on the main view's slice and the middle of the others
    assert window.canvas.crosshair == (SHAPE[0] // 2, SHAPE[1] // 2, SHAPE[2] // 2)
    assert first.slicer.index == SHAPE[1] // 2 and second.slicer.index == SHAPE[2] // 2
    # the coronal view shows the coronal plane of the volume (as oriented)
    shown = first.layer_buffer("image")[..., 0].astype(int)
    expected = first.slicer.display(document.image)
    assert np.array_equal(shown, first.slicer.oriented(expected)[..., 0] if expected.ndim == 3
                          else first.slicer.oriented(expected))

    # off again: one canvas, and no listener left behind
    window.actions_by_name["three_views"].trigger()
    assert first.document is None and second.document is None
    assert len(document._listeners) == listeners
    assert first._on_document_changed not in document._listeners
    assert window.canvas.crosshair is None
    qtbot.waitUntil(lambda: not first.isVisible())


def test_shift_click_moves_the_crosshair_and_every_view_follows(qtbot, window, nifti_folder):
    document = _three_views_on(qtbot, window, nifti_folder)
    canvas = window.canvas
    first, second = window.three_views.extras
    canvas.set_tool(Tool.BRUSH)
    row, column = 5, 17  # as shown on the axial view
    QTest.mouseClick(canvas, Qt.MouseButton.LeftButton, Qt.KeyboardModifier.ShiftModifier, _point(canvas, row, column))
    voxel = canvas.slicer.voxel(*canvas.slicer.screen_to_plane(row, column))
    assert voxel[0] == SHAPE[0] // 2
    # the plane is flipped both ways (RAS): the voxel is not the shown row, column
    assert voxel[1:] == (SHAPE[1] - 1 - row, SHAPE[2] - 1 - column)
    assert canvas.crosshair == first.crosshair == second.crosshair == voxel
    assert first.slicer.index == voxel[first.slicer.axis] == voxel[1]
    assert second.slicer.index == voxel[second.slicer.axis] == voxel[2]
    assert (document.labels == document.unlabelled).all()  # Shift+click is not a brush stroke

    # Shift+click in the sagittal view moves the axial and coronal planes
    row, column = 3, 4
    QTest.mouseClick(second, Qt.MouseButton.LeftButton, Qt.KeyboardModifier.ShiftModifier,
                     _point(second, row, column))
    moved = second.slicer.voxel(*second.slicer.screen_to_plane(row, column))
    assert moved[2] == voxel[2]
    assert canvas.slicer.index == moved[0] and first.slicer.index == moved[1]
    assert canvas.crosshair == moved
    assert window.volume_panel._slider.value() == moved[0]  # the Volume panel shows the main view's slice

    # Page Up in the coronal view moves the crosshair along y; the others keep their planes
    QTest.keyClick(first, Qt.Key.Key_PageUp)
    assert first.slicer.index == moved[1] + 1
    assert canvas.crosshair == (moved[0], moved[1] + 1, moved[2]) == second.crosshair
    assert canvas.slicer.index == moved[0] and second.slicer.index == moved[2]
    # the main view's slice (Volume panel, Page Down) moves it along z
    canvas.set_slice(2)
    assert first.crosshair == (2, moved[1] + 1, moved[2])

    # each view draws its two lines through the crosshair's voxel, and nothing else changes
    for view in (canvas, first, second):
        shown_row, shown_column = _shown_pixel_of(view, view.crosshair)
        centre = view.to_widget(shown_row + 0.5, shown_column + 0.5)
        with_lines = view.grab().toImage()
        crosshair, view.crosshair = view.crosshair, None
        without = view.grab().toImage()
        view.crosshair = crosshair
        x, y = math.floor(centre.x()), math.floor(centre.y())
        along_row = (x // 2 if x > 30 else (x + view.width()) // 2, y)  # half way to an edge, off the gap
        along_column = (x, y // 2 if y > 30 else (y + view.height()) // 2)
        off_lines = (along_row[0], along_column[1])
        for (px, py), differs in ((along_row, True), (along_column, True), (off_lines, False)):
            assert (with_lines.pixelColor(px, py) != without.pixelColor(px, py)) is differs, (view.slicer.axis, px, py)


def test_a_stroke_in_an_extra_view_paints_the_volume_and_shows_in_the_main_view(qtbot, window, nifti_folder):
    document = _three_views_on(qtbot, window, nifti_folder)
    canvas = window.canvas
    first, second = window.three_views.extras
    window.set_active_class(1)
    window.set_tool(Tool.BRUSH)
    canvas.set_brush_radius(1)
    assert first.tool is Tool.BRUSH and first.brush_radius == 1 and first.active_class == 1
    # a stroke along a row of the coronal view (z constant): a line of x at one y, one z
    row = 4
    start, end = _point(first, row, 3), _point(first, row, 15)
    QTest.mousePress(first, Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier, start)
    for step in range(1, 7):
        QTest.mouseMove(first, start + (end - start) * (step / 6))
    QTest.mouseRelease(first, Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier, end)
    painted = np.argwhere(document.labels == 1)
    assert len(painted) > 10
    z, y, _ = first.slicer.voxel(*first.slicer.screen_to_plane(row, 3))
    assert set(painted[:, 1]) == {first.slicer.index} and y == first.slicer.index
    assert set(painted[:, 0]) >= {z}  # a 1-pixel brush reaches the row above and below at most
    assert max(abs(int(k) - z) for k in painted[:, 0]) <= 1
    # one undo step for the whole stroke
    assert document.undo_description == "Brush"

    # the main (axial) view shows it once it shows that plane: the label colour at each painted voxel
    assert canvas.slicer.axis == 0
    canvas.set_slice(z)
    labels = canvas.layer_buffer("labels")
    colour = window.session.classes.lut()[1]
    for voxel in painted[painted[:, 0] == z]:
        shown_row, shown_column = _shown_pixel_of(canvas, tuple(voxel))
        assert tuple(labels[shown_row, shown_column]) == tuple(colour)
    unpainted = _shown_pixel_of(canvas, (z, (first.slicer.index + 5) % SHAPE[1], 10))
    assert labels[unpainted][3] == 0
    # and the sagittal view through a painted voxel shows it too
    x = int(painted[painted[:, 0] == z][0, 2])
    QTest.mouseClick(canvas, Qt.MouseButton.LeftButton, Qt.KeyboardModifier.ShiftModifier,
                     _point(canvas, *_shown_pixel_of(canvas, (z, int(first.slicer.index), x))))
    assert second.slicer.index == x
    shown_row, shown_column = _shown_pixel_of(second, (z, first.slicer.index, x))
    assert tuple(second.layer_buffer("labels")[shown_row, shown_column]) == tuple(colour)

    # undo in the window takes it away in every view
    window.actions_by_name["undo"].trigger()
    assert (document.labels == document.unlabelled).all()
    assert second.layer_buffer("labels")[shown_row, shown_column][3] == 0


def test_extra_views_follow_the_tool_and_layers_and_let_go_of_a_volume_when_a_2d_project_opens(
        qtbot, window, nifti_folder, image_folder):
    document = _three_views_on(qtbot, window, nifti_folder)
    first, second = window.three_views.extras
    listeners = len(document._listeners)
    window.actions_by_name["tool_eraser"].trigger()
    window.actions_by_name["paint_unlabelled_only"].trigger()
    window.layers_panel.opacityChanged.emit("labels", 0.25)
    assert first.tool is Tool.ERASER and second.tool is Tool.ERASER
    assert first.paint_unlabelled_only and second.paint_unlabelled_only
    assert first.states["labels"].opacity == 0.25 == window.canvas.states["labels"].opacity
    # F1 lists the action and the gesture
    rows = dict((what, keys) for keys, what in shortcut_rows(window))
    assert "Three views (volumes)" in rows and rows["Three views (volumes)"]
    assert any(keys.startswith("Shift+click") for keys, _ in shortcut_rows(window))

    assert window.open_path(image_folder)
    assert window.session.document is not None and not window.session.document.is_volume
    assert first.document is None and second.document is None
    assert window.canvas.crosshair is None
    for extra in (first, second):  # the old volume lost the extra views' listeners
        assert extra._on_document_changed not in document._listeners
    assert len(document._listeners) <= listeners - 2
    qtbot.waitUntil(lambda: not first.isVisible())
    # the mode stays on, and a Shift+click on the 2-D image is what the tool does (no crosshair)
    assert window.actions_by_name["three_views"].isChecked()
    image = window.session.document
    window.actions_by_name["tool_brush"].trigger()
    window.actions_by_name["paint_unlabelled_only"].trigger()  # off again
    window.set_active_class(1)
    QTest.mouseClick(window.canvas, Qt.MouseButton.LeftButton, Qt.KeyboardModifier.ShiftModifier,
                     _point(window.canvas, 20, 30))
    assert image.labels[20, 30] == 1 and window.canvas.crosshair is None

    # back to a volume with the mode still on: three views again, of the new document
    assert window.open_path(nifti_folder)
    volume = window.session.document
    assert first.document is volume and second.document is volume and volume is not document
    assert (first.slicer.axis, second.slicer.axis) == (1, 2)


def test_turning_the_main_view_keeps_the_crosshair_and_the_other_views_take_the_remaining_axes(
        qtbot, window, nifti_folder):
    _three_views_on(qtbot, window, nifti_folder)
    canvas = window.canvas
    first, second = window.three_views.extras
    QTest.mouseClick(canvas, Qt.MouseButton.LeftButton, Qt.KeyboardModifier.ShiftModifier, _point(canvas, 2, 3))
    voxel = canvas.crosshair
    window.volume_panel.axisRequested.emit(2)  # the Volume panel's sagittal choice
    assert canvas.slicer.axis == 2 and (first.slicer.axis, second.slicer.axis) == (0, 1)
    assert canvas.crosshair == voxel
    assert (canvas.slicer.index, first.slicer.index, second.slicer.index) == (voxel[2], voxel[0], voxel[1])
