"""The canvas on a volume: planes, slice navigation, aspect, window/level,
tools writing into the 3-D label map, one undo history across slices."""

from types import SimpleNamespace

import numpy as np
import pytest
from PySide6.QtCore import QPoint, Qt
from PySide6.QtTest import QTest

from segstudio.annotation.classes import ClassList
from segstudio.annotation.document import Document
from segstudio.gui.canvas import Canvas, Tool
from tests.gui.conftest import shown_canvas


@pytest.fixture
def volume_canvas(qtbot):
    rng = np.random.default_rng(0)
    ct = rng.integers(-1000, 1000, (6, 40, 50)).astype(np.int16)
    document = Document(ct, volume=True)
    affine = np.diag([0.8, 0.8, 2.5, 1.0])
    document.volume = SimpleNamespace(spacing=(2.5, 0.8, 0.8), affine=affine, modality="CT",
                                      dicom_datasets=None, world_frame="LPS", array=ct)
    canvas = shown_canvas(qtbot, document)
    return canvas, document


def _point(canvas, row, column):
    p = canvas.to_widget(row + 0.5, column + 0.5)
    return QPoint(round(p.x()), round(p.y()))


def test_opens_on_the_middle_axial_slice_with_the_ct_window(volume_canvas):
    canvas, document = volume_canvas
    assert canvas.slicer.index == 3 and canvas.image_size() == (40, 50)
    assert canvas.slicer.window == (40.0, 400.0)  # CT soft tissue
    shown = canvas.layer_buffer("image")[..., 0]
    hu = document.image[3]
    assert (shown[hu <= -160] == 0).all() and (shown[hu >= 240] == 255).all()


def test_brush_on_a_slice_paints_only_that_slice_and_undo_crosses_slices(volume_canvas, qtbot):
    canvas, document = volume_canvas
    canvas.set_tool(Tool.BRUSH)
    canvas.set_active_class(1)
    canvas.set_brush_radius(1)
    QTest.mouseClick(canvas, Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier, _point(canvas, 10, 20))
    assert document.labels[3, 10, 20] == 1 and (document.labels[[0, 1, 2, 4, 5]] == 255).all()
    QTest.keyClick(canvas, Qt.Key.Key_PageUp)
    assert canvas.slicer.index == 4
    QTest.mouseClick(canvas, Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier, _point(canvas, 30, 30))
    assert document.labels[4, 30, 30] == 1
    # the labels layer shows slice 4 now
    assert canvas.layer_buffer("labels")[30, 30, 3] > 0 and canvas.layer_buffer("labels")[10, 20, 3] == 0
    document.undo()
    assert document.labels[4, 30, 30] == 255
    document.undo()
    assert (document.labels == 255).all()


def test_coronal_view_has_the_slice_spacing_aspect_and_edits_the_right_voxels(volume_canvas):
    canvas, document = volume_canvas
    canvas.set_view_axis(1)
    assert canvas.image_size() == (6, 50)  # rows are slices
    assert canvas.aspect == pytest.approx(2.5 / 0.8)
    canvas.set_tool(Tool.FILL)
    canvas.set_active_class(0)
    QTest.mouseClick(canvas, Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier, _point(canvas, 2, 10))
    y = canvas.slicer.index
    assert (document.labels[:, y, :] == 0).all()
    assert (document.labels[:, y + 1, :] == 255).all()


def test_right_drag_changes_window_and_level(volume_canvas, qtbot):
    canvas, _ = volume_canvas
    seen = []
    canvas.windowChanged.connect(lambda c, w: seen.append((c, w)))
    start = QPoint(300, 250)
    QTest.mousePress(canvas, Qt.MouseButton.RightButton, Qt.KeyboardModifier.NoModifier, start)
    QTest.mouseMove(canvas, QPoint(340, 270))
    QTest.mouseRelease(canvas, Qt.MouseButton.RightButton, Qt.KeyboardModifier.NoModifier, QPoint(340, 270))
    center, width = canvas.slicer.window
    assert width > 400 and center > 40
    assert seen and seen[-1] == (center, width)


def test_ctrl_wheel_steps_through_slices(volume_canvas, qtbot):
    canvas, _ = volume_canvas
    slices = []
    canvas.sliceChanged.connect(lambda index, count: slices.append((index, count)))
    canvas.step_slice(-2)
    canvas.step_slice(-10)
    assert slices == [(1, 6), (0, 6)]


@pytest.mark.filterwarnings("ignore:Expected explicit VR:UserWarning")
def test_a_monochrome1_radiograph_is_shown_inverted_but_keeps_its_values(qtbot):
    """A real CR file: the window's output is inverted on screen, the document keeps the stored values."""
    from segstudio.io.volume import read_volume
    from segstudio.windowing import apply_window
    from tests.io.test_dicom import CR_FILE, pydicom_file

    volume = read_volume(pydicom_file(CR_FILE))
    document = Document(volume.array, volume=True)
    document.volume = volume
    canvas = Canvas()
    qtbot.addWidget(canvas)
    canvas.set_document(document, ClassList().lut())
    assert canvas.slicer.invert and canvas.slicer.window == (1600.0, 2800.0)  # the file's own window
    values = document.image[0]
    shown = canvas.layer_buffer("image")
    np.testing.assert_array_equal(shown[..., 0], apply_window(values, 1600.0, 2800.0, invert=True))
    lo, hi = float(values.min()), float(values.max())
    canvas.set_window(lo + (hi - lo + 1) / 2, hi - lo + 1)  # the stored range, as a user could drag it
    shown = canvas.layer_buffer("image")[..., 0]
    assert shown[values == lo].tolist() == [255] and shown[values == hi].tolist() == [0]  # low values white
    np.testing.assert_array_equal(canvas.slicer.display(document.image), shown)
    assert document.image is volume.array and float(values.min()) == pytest.approx(1994 * 0.684 + 200)


def test_monochrome2_planes_are_not_inverted(volume_canvas):
    canvas, document = volume_canvas
    assert canvas.slicer.invert is False
    np.testing.assert_array_equal(canvas.layer_buffer("image")[..., 0], canvas.slicer.display(document.image))
    assert (canvas.slicer.display(document.image)[document.image[3] <= -160] == 0).all()
