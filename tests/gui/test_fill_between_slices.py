"""Edit > Fill between slices and the Volume dock's button: the active class
is interpolated across the slices of the shown view, as one undo step."""

import nibabel
import numpy as np
import pytest
from PySide6.QtCore import Qt
from PySide6.QtGui import QKeySequence

from segstudio.gui.studio_actions import shortcut_rows

SHAPE = (12, 48, 40)  # Z, Y, X
U = 255


def _disc(shape, centre, radius):
    rows, cols = np.ogrid[: shape[0], : shape[1]]
    return (rows - centre[0]) ** 2 + (cols - centre[1]) ** 2 <= radius**2


@pytest.fixture
def volume_window(window, tmp_path):
    data = np.zeros(SHAPE[::-1], np.int16)  # x, y, z as nibabel holds it
    data[10:30, 10:38, :] = 400
    path = tmp_path / "abdomen.nii.gz"
    nibabel.save(nibabel.Nifti1Image(data, np.diag([0.8, 0.8, 2.5, 1.0])), path)
    assert window.open_path(path)
    document = window.session.document
    assert document.is_volume and document.shape == SHAPE
    assert len(window.session.classes) >= 2
    return window


def _paint(document, index, radius, value=1, axis=0):
    """A disc of *value* on slice *index* along *axis*, as one undo step (what a brush stroke leaves)."""
    plane_shape = tuple(n for a, n in enumerate(SHAPE) if a != axis)
    disc = _disc(plane_shape, (plane_shape[0] // 2, plane_shape[1] // 2), radius)
    region = [slice(0, plane_shape[0]), slice(0, plane_shape[1])]
    region.insert(axis, slice(index, index + 1))
    assert document.apply(tuple(region), np.expand_dims(disc, axis), value, "Brush")


def test_the_volume_button_fills_the_slices_between_and_undo_takes_it_back(qtbot, volume_window):
    window = volume_window
    document, canvas = window.session.document, window.canvas
    window.set_active_class(1)
    assert canvas.slicer.axis == 0
    _paint(document, 2, 6)
    _paint(document, 10, 14)
    document.labels[7, 22:26, :] = 0  # a band the user labelled background, across a slice between
    before = document.labels.copy()
    assert canvas.slicer.index == 6 and canvas.layer_buffer("labels")[24, 20, 3] == 0  # the shown slice

    button = window.volume_panel.fill_between_button
    assert button.isVisibleTo(window)
    qtbot.mouseClick(button, Qt.MouseButton.LeftButton)

    labels = document.labels
    middle = np.count_nonzero(labels[6] == 1)
    assert middle == pytest.approx(np.pi * 10**2, rel=0.06)  # radius 6 -> 14 over 8 slices: 10 halfway
    assert all(np.count_nonzero(labels[k] == 1) > 0 for k in range(3, 10))
    np.testing.assert_array_equal(labels[[0, 1, 2, 10, 11]], before[[0, 1, 2, 10, 11]])
    assert (labels[7, 22:26, :] == 0).all()  # the user's own labels stay
    assert np.count_nonzero(labels[7] == 1) > 100 and labels[7, 20, 20] == 1
    message = window.statusBar().currentMessage()
    assert "Filled 7 axial slices of class" in message and "between slices 3 and 11" in message
    # the canvas shows it: the label layer of the shown slice, 6, is painted where the disc is
    shown = canvas.layer_buffer("labels")[..., 3]
    assert shown[24, 20] > 0 and shown[0, 0] == 0

    undo = window.actions_by_name["undo"]
    assert undo.text() == "Undo Fill between slices"
    undo.trigger()
    np.testing.assert_array_equal(document.labels, before)
    assert undo.text() == "Undo Brush" and canvas.layer_buffer("labels")[24, 20, 3] == 0


def test_the_edit_action_follows_the_view_axis_and_the_active_class(qtbot, volume_window):
    window = volume_window
    document = window.session.document
    action = window.actions_by_name["fill_between_slices"]
    assert action.shortcut() == QKeySequence("Ctrl+Shift+F")
    assert "Fill between slices (active class)" in dict(shortcut_rows(window)).values()
    edit_menu = next(a.menu() for a in window.menuBar().actions() if a.text() == "&Edit")
    assert action in edit_menu.actions()

    window.set_active_class(1)
    _paint(document, 8, 8, axis=1)  # coronal slices 8 and 30
    _paint(document, 30, 8, axis=1)
    _paint(document, 6, 5, value=0)  # class 0 on an axial slice: untouched
    before = document.labels.copy()
    window.volume_panel._axis.setCurrentIndex(1)  # the dock's View box: coronal
    assert window.canvas.slicer.axis == 1

    action.trigger()
    labels = document.labels
    filled = labels[:, 9:30] == 1
    assert filled.any(axis=(0, 2)).all()  # every coronal slice between is filled
    # equal discs either side: the same disc between, less the class-0 voxel it meets on axial slice 6
    np.testing.assert_array_equal(labels[:, 19] == 1, (before[:, 8] == 1) & (before[:, 19] == U))
    assert before[6, 19, 20] == 0 and labels[6, 19, 20] == 0
    np.testing.assert_array_equal(labels[:, :9], before[:, :9])
    np.testing.assert_array_equal(labels[:, 31:], before[:, 31:])
    assert (labels[before != U] == before[before != U]).all()  # nothing labelled was overwritten
    assert "coronal slices" in window.statusBar().currentMessage()

    # class 0 lies on adjacent coronal slices (19..29, one axial disc): no slice between to fill
    window.set_active_class(0)
    edited = labels.copy()
    action.trigger()
    np.testing.assert_array_equal(document.labels, edited)
    assert "nothing to fill for class" in window.statusBar().currentMessage()
    assert document.undo_description == "Fill between slices"


def test_nothing_is_filled_with_one_slice_read_only_or_on_a_2d_image(qtbot, volume_window, image_folder):
    window = volume_window
    document = window.session.document
    window.set_active_class(1)
    action = window.actions_by_name["fill_between_slices"]
    _paint(document, 3, 6)
    action.trigger()
    assert "only axial slice 4" in window.statusBar().currentMessage()
    assert document.undo_description == "Brush"

    _paint(document, 9, 6)
    document.read_only = True
    qtbot.mouseClick(window.volume_panel.fill_between_button, Qt.MouseButton.LeftButton)
    assert "read-only" in window.statusBar().currentMessage()
    assert (document.labels[4:9] == U).all()
    document.read_only = False

    assert window.open_path(image_folder)
    assert not window.session.document.is_volume
    labels = window.session.document.labels.copy()
    action.trigger()
    assert "2-D image" in window.statusBar().currentMessage()
    np.testing.assert_array_equal(window.session.document.labels, labels)
