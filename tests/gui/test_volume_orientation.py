"""Volumes are shown as radiology viewers show them (3D Slicer, ITK-SNAP):
superior up, anterior up on axial planes and on the left of sagittal ones,
the patient's right on the screen's left, with the directions lettered at
the edges. Only the display changes: tools paint the voxel shown under the
cursor, the labels stay in the volume's voxel order and export keeps the
source affine."""

import nibabel
import numpy as np
import pytest
from PySide6.QtCore import QEvent, QPoint, QPointF, Qt
from PySide6.QtGui import QMouseEvent
from PySide6.QtTest import QTest
from PySide6.QtWidgets import QApplication

from segstudio.annotation.document import Document
from segstudio.gui.canvas import Tool
from segstudio.gui.canvas.slicing import SliceView, patient_directions
from segstudio.io.volume import Volume
from tests.gui.conftest import shown_canvas

SHAPE = (8, 10, 12)  # Z, Y, X
BRIGHT = 1000
# what each view shows at its top, bottom, left and right edges
LETTERS = {0: ("A", "P", "R", "L"), 1: ("S", "I", "R", "L"), 2: ("S", "I", "A", "P")}
IN_PLANE = {0: ("A", "R"), 1: ("S", "R"), 2: ("S", "A")}  # the letters at the top and on the left

# Where each patient end lies in the array, for the affines below: the index (z, y, x) of the
# slab at that end. LPS (DICOM axial): +i left, +j posterior, +k superior.
LPS_ENDS = {"R": (slice(None), slice(None), 0), "A": (slice(None), 0), "S": (-1,)}
# RAS (NIfTI): +i right, +j anterior, +k superior.
RAS_ENDS = {"R": (slice(None), slice(None), -1), "A": (slice(None), -1), "S": (-1,)}
# LAS (a NIfTI stored radiologically): +i left.
LAS_ENDS = {"R": (slice(None), slice(None), 0), "A": (slice(None), -1), "S": (-1,)}

CASES = {
    "dicom LPS": ("dicom", np.diag([0.7, 0.8, 2.5, 1.0]), LPS_ENDS),
    "nifti RAS": ("nifti", np.diag([0.7, 0.8, 2.5, 1.0]), RAS_ENDS),
    "nifti LAS": ("nifti", np.diag([-0.7, 0.8, 2.5, 1.0]), LAS_ENDS),
}


def _volume(kind, affine, marked=None, ends=None):
    array = np.zeros(SHAPE, np.int16)
    if marked is not None:
        array[ends[marked]] = BRIGHT
    return Volume(array=array, spacing=(abs(affine[2, 2]), abs(affine[1, 1]), abs(affine[0, 0])), affine=affine,
                  source="memory", kind=kind, modality="MR")


def _canvas(qtbot, volume):
    document = Document(volume.array, volume=True)
    document.volume = volume
    canvas = shown_canvas(qtbot, document)
    canvas.set_window(BRIGHT / 2, BRIGHT)
    return canvas, document


def _point(canvas, row, column):
    p = canvas.to_widget(row + 0.5, column + 0.5)
    return QPoint(round(p.x()), round(p.y()))


@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("axis", [0, 1, 2], ids=["axial", "coronal", "sagittal"])
def test_each_view_shows_the_patient_ends_where_radiology_viewers_do(qtbot, case, axis):
    kind, affine, ends = CASES[case]
    top, left = IN_PLANE[axis]
    for marked, edge in ((top, "top"), (left, "left")):
        canvas, _ = _canvas(qtbot, _volume(kind, affine, marked, ends))
        canvas.set_view_axis(axis)
        shown = canvas.layer_buffer("image")[..., 0].astype(int)
        if edge == "top":
            near, far = shown[0], shown[-1]
        else:
            near, far = shown[:, 0], shown[:, -1]
        assert (near == 255).all() and (far == 0).all(), (case, axis, marked)
        assert canvas.orientation_letters() == LETTERS[axis]


def test_the_display_is_a_flip_of_the_stored_plane_and_the_slicer_keeps_voxel_order(qtbot):
    """The slicer's plane, display and channel plane stay in voxel order (the CRF
    preview and its write-back use them); only the canvas shows them flipped."""
    rng = np.random.default_rng(1)
    volume = _volume("nifti", np.diag([0.7, 0.8, 2.5, 1.0]))
    volume.array[:] = rng.integers(0, BRIGHT, SHAPE)
    canvas, document = _canvas(qtbot, volume)
    for axis in range(3):
        canvas.set_view_axis(axis)
        slicer = canvas.slicer
        assert slicer.flips == (True, True)  # every RAS index increases towards R, A or S
        stored = slicer.display(document.image)
        np.testing.assert_array_equal(canvas.layer_buffer("image")[..., 0], stored[::-1, ::-1])
        np.testing.assert_array_equal(slicer.plane(document.image), SliceView(
            document.shape, volume.spacing, axis, slicer.index).plane(document.image))


@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("axis", [0, 1, 2], ids=["axial", "coronal", "sagittal"])
def test_a_brush_dab_paints_the_voxel_shown_under_the_cursor(qtbot, case, axis):
    kind, affine, _ = CASES[case]
    canvas, document = _canvas(qtbot, _volume(kind, affine))
    canvas.set_view_axis(axis)
    canvas.set_tool(Tool.BRUSH)
    canvas.set_active_class(1)
    canvas.set_brush_radius(0.5)
    rows, cols = canvas.image_size()
    row, col = 1, 2  # near the top left corner as shown
    seen = []
    canvas.cursorMoved.connect(lambda x, y: seen.append((y, x)))
    where = QPointF(_point(canvas, row, col))
    QApplication.sendEvent(canvas, QMouseEvent(QEvent.Type.MouseMove, where, canvas.mapToGlobal(where),
                                               Qt.MouseButton.NoButton, Qt.MouseButton.NoButton,
                                               Qt.KeyboardModifier.NoModifier))
    QTest.mouseClick(canvas, Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier, _point(canvas, row, col))
    painted = np.argwhere(document.labels == 1)
    assert len(painted) == 1
    # the voxel by hand: a flipped axis counts from its far end
    stored_row = rows - 1 - row if canvas.slicer.flips[0] else row
    stored_col = cols - 1 - col if canvas.slicer.flips[1] else col
    expected = canvas.slicer.voxel(stored_row, stored_col)
    assert tuple(painted[0]) == expected
    # the labels layer shows it where the cursor was, and the status bar is told the stored pixel
    labels_shown = canvas.layer_buffer("labels")[..., 3]
    assert labels_shown[row, col] > 0 and (labels_shown > 0).sum() == 1
    assert seen[-1] == (stored_row, stored_col)


@pytest.mark.parametrize("axis", [0, 1, 2])
def test_a_fill_and_undo_on_a_flipped_plane_touch_only_that_plane(qtbot, axis):
    canvas, document = _canvas(qtbot, _volume("nifti", np.diag([0.7, 0.8, 2.5, 1.0]), "S", RAS_ENDS))
    canvas.set_view_axis(axis)
    canvas.set_tool(Tool.FILL)
    canvas.set_active_class(1)
    QTest.mouseClick(canvas, Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier, _point(canvas, 3, 3))
    plane = canvas.slicer.plane(document.labels)
    assert (plane == 1).all() and (document.labels == 1).sum() == plane.size
    assert (canvas.layer_buffer("labels")[..., 3] > 0).all()
    document.undo()
    assert (document.labels == 255).all() and (canvas.layer_buffer("labels")[..., 3] == 0).all()


def test_probabilities_and_predictions_are_flipped_with_the_image(qtbot):
    from segstudio.inference.predictor import PredictionResult

    canvas, document = _canvas(qtbot, _volume("nifti", np.diag([0.7, 0.8, 2.5, 1.0])))
    probabilities = np.zeros((2, *SHAPE), np.float16)
    probabilities[1][RAS_ENDS["S"]] = 1.0  # the superior slab is class 1
    probabilities[0] = 1.0 - probabilities[1]
    document.set_prediction(PredictionResult(probabilities, probabilities.argmax(0).astype(np.uint8), 0))
    canvas.set_view_axis(1)  # coronal: superior at the top
    canvas.refresh_prediction()
    canvas.set_heatmap(1)
    heat = canvas.layer_buffer("heatmap")[..., 0].astype(int)
    assert (heat[0] == 255).all() and (heat[1:] == 0).all()
    prediction = canvas.layer_buffer("prediction")
    class_1, class_0 = prediction[0, 0], prediction[-1, 0]
    assert (class_1 != class_0).any()
    assert (prediction[0] == class_1).all() and (prediction[1:] == class_0).all()


def test_no_patient_frame_means_no_flip_and_no_letters(qtbot):
    tiff = Volume(array=np.zeros(SHAPE, np.uint8), spacing=(1, 1, 1), affine=np.eye(4), source="stack.tif",
                  kind="tiff", geometry_known=False)
    assert patient_directions(tiff) is None
    canvas, _ = _canvas(qtbot, tiff)
    canvas.set_view_axis(1)
    assert canvas.slicer.flips == (False, False) and canvas.orientation_letters() is None


def test_an_oblique_volume_takes_its_nearest_patient_axes():
    angle = np.deg2rad(20)
    rotation = np.array([[np.cos(angle), -np.sin(angle), 0], [np.sin(angle), np.cos(angle), 0], [0, 0, 1]])
    affine = np.eye(4)
    affine[:3, :3] = rotation @ np.diag([0.7, 0.8, 2.5])
    volume = _volume("nifti", affine)
    assert patient_directions(volume) == ((2, 1), (1, 1), (0, 1))  # Z -> S, Y -> A, X -> R
    # a coronal acquisition stored as slices along A-P: its "axial" plane is a coronal one
    coronal = np.array([[1.0, 0, 0, 0], [0, 0, 1, 0], [0, -1, 0, 0], [0, 0, 0, 1]])  # +j inferior, +k anterior
    directions = patient_directions(_volume("nifti", coronal))
    assert directions == ((1, 1), (2, -1), (0, 1))
    assert SliceView(SHAPE, axis=0, directions=directions).letters == ("S", "I", "R", "L")


def test_dicom_series_coronal_view_has_the_head_end_at_the_top(qtbot, window, tmp_path):
    """A real DICOM series: slice k (HU -24 + k) is k * 5 mm towards the head."""
    from tests.io.test_dicom import make_ct_series

    make_ct_series(tmp_path / "ct")
    assert window.open_path(tmp_path / "ct")
    canvas, document = window.canvas, window.session.document
    assert canvas.orientation_letters() == LETTERS[0] and canvas.slicer.flips == (False, False)
    canvas.set_view_axis(1)
    slicer = canvas.slicer
    assert slicer.flips == (True, False) and canvas.orientation_letters() == LETTERS[1]
    np.testing.assert_array_equal(canvas.layer_buffer("image")[..., 0], slicer.display(document.image)[::-1])
    assert slicer.voxel(*slicer.screen_to_plane(0, 0))[0] == 4  # the top row is the most superior slice


def test_nifti_opened_in_the_studio_is_shown_oriented_painted_in_place_and_exported_on_its_grid(
        qtbot, window, tmp_path):
    from segstudio.io.medical_export import write_nifti_labels

    affine = np.array([[0.7, 0, 0, -10.0], [0, 0.8, 0, 20.0], [0, 0, 2.5, -30.0], [0, 0, 0, 1]])
    data = np.zeros(SHAPE[::-1], np.int16)  # x, y, z as nibabel holds it
    data[-1, :, :] = BRIGHT  # right end (+i in RAS)
    data[:, -1, :] += BRIGHT // 2  # anterior end
    path = tmp_path / "head.nii.gz"
    nibabel.save(nibabel.Nifti1Image(data, affine), path)
    assert window.open_path(path)
    canvas, document = window.canvas, window.session.document
    assert document.shape == SHAPE and canvas.orientation_letters() == LETTERS[0]
    canvas.set_window(BRIGHT / 2, BRIGHT)
    shown = canvas.layer_buffer("image")[..., 0].astype(int)
    assert (shown[:, 0] == 255).all() and shown[-1, -1] == 0  # right on the left
    assert (shown[0, 1:] > 0).all() and shown[0, -1] < 255  # anterior at the top

    window.set_active_class(1)
    window.set_tool(Tool.BRUSH)
    canvas.set_brush_radius(0.5)
    QTest.mouseClick(canvas, Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier, _point(canvas, 0, 0))
    z = canvas.slicer.index
    # shown top left = the most anterior row and the most right column of the slice
    assert document.labels[z, SHAPE[1] - 1, SHAPE[2] - 1] == 1 and (document.labels == 1).sum() == 1

    written = write_nifti_labels(tmp_path / "labels.nii.gz", document.labels, document.volume)
    labels = nibabel.load(written)
    np.testing.assert_allclose(labels.affine, affine, atol=1e-5)
    out = np.asarray(labels.dataobj)
    assert out.shape == SHAPE[::-1]
    assert np.argwhere(out).tolist() == [[SHAPE[2] - 1, SHAPE[1] - 1, z]]  # the painted voxel, on the source grid
