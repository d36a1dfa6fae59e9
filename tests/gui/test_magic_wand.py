"""The magic wand in the studio: chosen by its action, its tolerance set in
the tool bar, one click one undo step, "paint only unlabelled" respected,
and on a volume the raw voxel values of the plane as shown."""

import cv2
import numpy as np
import pytest
from PySide6.QtCore import QPoint, Qt
from PySide6.QtTest import QTest
from PySide6.QtWidgets import QDoubleSpinBox, QToolBar

from segstudio.annotation.document import Document
from segstudio.gui.canvas import Tool
from segstudio.io.volume import Volume
from tests.gui.conftest import shown_canvas

NO = Qt.KeyboardModifier.NoModifier
LEFT = Qt.MouseButton.LeftButton
SQUARE = (slice(10, 25), slice(15, 35))  # values 190..210 in every channel, 200 at SEED
GREY_SQUARE = (slice(10, 25), slice(35, 45))  # right next to it, 160..170
SEED = (17, 25)


def _point(canvas, row, column):
    p = canvas.to_widget(row + 0.5, column + 0.5)
    return QPoint(round(p.x()), round(p.y()))


@pytest.fixture
def wand_folder(tmp_path):
    """a.png: two squares on a dark noisy background (RGB); b.png: 12-bit grey (uint16)."""
    rng = np.random.default_rng(3)
    rgb = rng.integers(10, 31, (40, 50, 3)).astype(np.uint8)
    rgb[SQUARE] = rng.integers(190, 211, (15, 20, 3))
    rgb[GREY_SQUARE] = rng.integers(160, 171, (15, 10, 3))
    rgb[SEED] = 200
    folder = tmp_path / "wand"
    folder.mkdir()
    cv2.imwrite(str(folder / "a.png"), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    grey = np.full((30, 30), 1000, np.uint16)
    grey[0, 0], grey[0, 1] = 100, 4100  # a range of 4000: a tolerance of 400 to start with
    cv2.imwrite(str(folder / "b.png"), grey)
    return folder, rgb


def _box(window):
    box = window.findChild(QToolBar).findChild(QDoubleSpinBox, "wand_tolerance")
    assert box is not None and box is window.wand_tolerance_box
    return box


def _mask(shape, *regions):
    out = np.zeros(shape, bool)
    for region in regions:
        out[region] = True
    return out


def test_wand_paints_the_square_within_the_tolerance_and_undoes_in_one_step(qtbot, window, wand_folder):
    folder, rgb = wand_folder
    window.open_path(folder)
    canvas, document = window.canvas, window.session.document
    assert np.array_equal(document.image, rgb)
    window.actions_by_name["tool_wand"].trigger()
    assert canvas.tool is Tool.WAND and window.actions_by_name["tool_wand"].isChecked()
    assert window.actions_by_name["tool_wand"].shortcut().toString() == "W"
    assert canvas.cursor().shape() == Qt.CursorShape.CrossCursor
    window.set_active_class(0)
    assert canvas.active_class == 0
    box = _box(window)

    box.setValue(50)  # 160..170 is within 50 of 200, the background (<= 30) is not
    assert canvas.wand_tolerance == 50
    QTest.mouseClick(canvas, LEFT, NO, _point(canvas, *SEED))
    both = _mask(document.shape, SQUARE, GREY_SQUARE)
    assert (document.labels[both] == 0).all() and (document.labels[~both] == 255).all()
    assert window.actions_by_name["undo"].text() == "Undo Magic wand"
    window.actions_by_name["undo"].trigger()
    assert (document.labels == 255).all()

    box.setValue(10)  # the bright square only, exactly
    QTest.mouseClick(canvas, LEFT, NO, _point(canvas, *SEED))
    square = _mask(document.shape, SQUARE)
    assert np.array_equal(document.labels == 0, square) and (document.labels[~square] == 255).all()
    assert window.actions_by_name["undo"].text() == "Undo Magic wand"
    window.actions_by_name["undo"].trigger()
    assert (document.labels == 255).all() and window.actions_by_name["undo"].text() == "Undo"

    # outside the image: nothing, and no undo step
    canvas.zoom_at(0.5, QPoint(canvas.width() // 2, canvas.height() // 2))
    QTest.mouseClick(canvas, LEFT, NO, _point(canvas, -3, -3))
    assert (document.labels == 255).all() and not document.can_undo


def test_wand_respects_paint_only_unlabelled(qtbot, window, wand_folder):
    folder, _ = wand_folder
    window.open_path(folder)
    canvas, document = window.canvas, window.session.document
    # class 1 on the square's top rows and on the seed's own pixel
    document.apply((slice(10, 13), slice(15, 35)), None, 1, "setup")
    document.apply((slice(17, 18), slice(25, 26)), None, 1, "setup")
    before = document.labels.copy()
    window.actions_by_name["paint_unlabelled_only"].trigger()
    assert canvas.paint_unlabelled_only
    QTest.keyClick(canvas, Qt.Key.Key_W)  # the shortcut chooses the wand too
    assert canvas.tool is Tool.WAND
    window.set_active_class(0)
    _box(window).setValue(10)
    QTest.mouseClick(canvas, LEFT, NO, _point(canvas, *SEED))  # a labelled seed: the region still counts
    expected = before.copy()
    square = _mask(document.shape, SQUARE)
    expected[square & (before == 255)] = 0
    assert (expected == 0).sum() == 15 * 20 - 3 * 20 - 1
    assert np.array_equal(document.labels, expected)
    assert (document.labels[10:13, 15:35] == 1).all() and document.labels[17, 25] == 1
    window.undo()
    assert np.array_equal(document.labels, before)


def test_tolerance_defaults_to_a_tenth_of_the_range_per_image_type(qtbot, window, wand_folder):
    folder, _ = wand_folder
    window.open_path(folder)
    box, canvas = _box(window), window.canvas
    assert window.session.document.image.dtype == np.uint8
    assert canvas.wand_tolerance == 25 and box.value() == 25 and box.maximum() == 255 and box.decimals() == 0
    box.setValue(12)  # the user's choice for 8-bit images
    window.actions_by_name["next"].trigger()
    assert window.session.document.image.dtype == np.uint16
    assert canvas.wand_tolerance == 400 and box.value() == 400 and box.maximum() == 4000
    window.actions_by_name["previous"].trigger()
    assert window.session.document.image.dtype == np.uint8
    assert canvas.wand_tolerance == 12 and box.value() == 12


def _volume_canvas(qtbot):
    """An int16 CT in RAS order (shown flipped in rows and columns) with a
    block of 500 +- 5 HU next to one of 800 on slice 3, and the same block on slice 2."""
    rng = np.random.default_rng(5)
    ct = rng.integers(-1010, -990, (6, 20, 24)).astype(np.int16)
    ct[2:4, 2:8, 3:10] = rng.integers(495, 506, (2, 6, 7))
    ct[3, 2:8, 10:14] = 800
    ct[3, 4, 5] = 500
    affine = np.diag([0.8, 0.8, 2.5, 1.0])
    volume = Volume(array=ct, spacing=(2.5, 0.8, 0.8), affine=affine, source="memory", kind="nifti",
                    modality="CT")
    document = Document(ct, volume=True)
    document.volume = volume
    canvas = shown_canvas(qtbot, document)
    return canvas, document


def test_wand_on_a_volume_uses_the_raw_values_of_the_plane_as_shown(qtbot):
    canvas, document = _volume_canvas(qtbot)
    assert canvas.slicer.index == 3 and canvas.slicer.flips == (True, True)
    # the integer CT starts at a tenth of its range, in whole HU
    assert canvas.wand_tolerance == 180 and canvas.wand_decimals == 0
    shown_row, shown_col = 20 - 1 - 4, 24 - 1 - 5  # voxel (3, 4, 5) as shown
    # the soft-tissue window shows 500 and 800 HU alike: only raw values tell them apart
    display = canvas.layer_buffer("image")
    assert display[shown_row, shown_col, 0] == 255 and display[20 - 1 - 4, 24 - 1 - 11, 0] == 255
    canvas.set_tool(Tool.WAND)
    canvas.set_active_class(1)
    canvas.set_wand_tolerance(30)
    QTest.mouseClick(canvas, LEFT, NO, _point(canvas, shown_row, shown_col))
    expected = np.zeros(document.shape, bool)
    expected[3, 2:8, 3:10] = True
    assert np.array_equal(document.labels == 1, expected)
    assert (document.labels[~expected] == 255).all()  # slice 2's block and the 800 HU block untouched
    assert document.undo_description == "Magic wand"
    document.undo()
    assert (document.labels == 255).all()
