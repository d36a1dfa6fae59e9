"""The Scribble tool: strokes of a class refine the prediction with the CRF,
shown as the CRF layer and accepted as one undo step."""

import numpy as np
from PySide6.QtCore import Qt, QTimer
from PySide6.QtWidgets import QPushButton

from segstudio.gui.canvas import Tool
from segstudio.synthetic import generate_sample

from .conftest import run_model

NUCLEUS = 2


def _nucleus_stroke(height: int = 96, width: int = 128, seed: int = 0):
    """Image points (row, column) of a short horizontal stroke well inside a
    nucleus of the first sample image (cell_0.png of the image_folder fixture)."""
    from scipy import ndimage

    _, truth = generate_sample(seed, height, width)
    inner = ndimage.binary_erosion(truth == NUCLEUS, iterations=3)
    rows, columns = np.nonzero(inner)
    row = int(np.bincount(rows).argmax())  # the row with the most inner nucleus pixels
    on_row = columns[rows == row]
    start = int(on_row.min())
    run = [c for c in range(start, start + 8) if inner[row, c]]
    return [(row + 0.5, c + 0.5) for c in run], truth


def _draw(qtbot, canvas, points) -> None:
    widget = [canvas.to_widget(r, c).toPoint() for r, c in points]
    qtbot.mousePress(canvas, Qt.MouseButton.LeftButton, pos=widget[0])
    for point in widget[1:]:
        qtbot.mouseMove(canvas, point)
    qtbot.mouseRelease(canvas, Qt.MouseButton.LeftButton, pos=widget[-1])


def _start(qtbot, window, image_folder, checkpoint):
    assert window.open_path(image_folder)
    assert run_model(qtbot, window, checkpoint) == "done"
    document = window.session.document
    # the live preview's plain CRF first, so the scribbles' result is what changes the layer next
    qtbot.waitUntil(lambda: document.crf_labels is not None and not window.runs.crf_task.running, timeout=30000)
    window.actions_by_name["tool_scribble"].trigger()
    assert window.canvas.tool is Tool.SCRIBBLE and window.actions_by_name["tool_scribble"].isChecked()
    window.canvas.set_brush_radius(1.0)
    window.set_active_class(NUCLEUS)
    return document


def test_a_scribble_stroke_refines_the_prediction_off_the_gui_thread_and_accepts_as_one_step(
        qtbot, window, image_folder, checkpoint):
    document = _start(qtbot, window, image_folder, checkpoint)
    assert window.actions_by_name["tool_scribble"].shortcut().toString() == "S"
    points, truth = _nucleus_stroke()
    plain_crf = document.crf_labels.copy()
    labels_before = document.labels.copy()

    ticks = []
    timer = QTimer()
    timer.timeout.connect(lambda: ticks.append(1))
    timer.start(0)
    _draw(qtbot, window.canvas, points)
    # the refinement runs in a worker: nothing of it is there when the stroke's release returns
    task = window.scribbles.task
    assert task is not None and task.running
    assert np.array_equal(document.crf_labels, plain_crf)
    ticks.clear()
    with qtbot.waitSignal(window.scribbles.refined, timeout=30000):
        pass
    timer.stop()
    assert ticks, "the GUI thread did not tick while the refinement ran"

    scribbled = (document.labels != labels_before)
    assert scribbled.any() and (document.labels[scribbled] == NUCLEUS).all()  # the stroke is labels too
    assert document.undo_description == "Scribble"
    crf = document.crf_labels
    assert (crf[scribbled] == NUCLEUS).all()
    # around the stroke, the nucleus it lies in went to its class
    from scipy import ndimage

    components, _ = ndimage.label(truth == NUCLEUS)
    nucleus = components == components[scribbled][0]
    grown = nucleus & ~scribbled & (crf == NUCLEUS) & (plain_crf != NUCLEUS)
    assert grown.sum() >= 5, "the refinement did not spread the scribble's class into its nucleus"
    assert (crf[nucleus] == NUCLEUS).mean() > (plain_crf[nucleus] == NUCLEUS).mean()

    before_accept = document.labels.copy()
    window.actions_by_name["accept_crf"].trigger()
    assert (document.labels[scribbled] == NUCLEUS).all()
    assert np.array_equal(document.labels[crf != 255], crf[crf != 255])
    assert document.undo_description == "Accept CRF result"
    window.actions_by_name["undo"].trigger()
    assert np.array_equal(document.labels, before_accept)  # the accept was one step
    assert document.undo_description == "Scribble"


def test_a_new_stroke_supersedes_a_refinement_in_flight(qtbot, window, image_folder, checkpoint):
    document = _start(qtbot, window, image_folder, checkpoint)
    points, _ = _nucleus_stroke()
    _draw(qtbot, window.canvas, points[:4])
    first = window.scribbles.task
    _draw(qtbot, window.canvas, points[4:])
    assert first.token.cancelled and window.scribbles.task is not first
    with qtbot.waitSignal(window.scribbles.refined, timeout=30000):
        pass
    stroke = window.scribbles.active_scribbles() != document.unlabelled
    assert stroke.sum() >= len(points) and (document.crf_labels[stroke] == NUCLEUS).all()


def test_refine_and_clear_buttons_of_the_crf_panel(qtbot, window, image_folder, checkpoint):
    document = _start(qtbot, window, image_folder, checkpoint)
    refine = window.crf_panel.findChild(QPushButton, "crf_scribbles")
    clear = window.crf_panel.findChild(QPushButton, "crf_clear_scribbles")
    assert refine is not None and clear is not None and not clear.isEnabled()
    points, _ = _nucleus_stroke()
    _draw(qtbot, window.canvas, points)
    qtbot.waitSignal(window.scribbles.refined, timeout=30000).wait()
    assert clear.isEnabled()

    document.set_crf_labels(None)
    with qtbot.waitSignal(window.scribbles.refined, timeout=30000):
        qtbot.mouseClick(refine, Qt.MouseButton.LeftButton)
    assert document.crf_labels is not None
    assert (document.crf_labels != 255).all()  # the whole image this time

    qtbot.mouseClick(clear, Qt.MouseButton.LeftButton)
    assert not clear.isEnabled() and window.scribbles.active_scribbles() is None
    qtbot.mouseClick(refine, Qt.MouseButton.LeftButton)
    assert "No scribbles" in window.statusBar().currentMessage()
    assert window.scribbles.task is None


def test_a_scribble_without_a_prediction_says_to_run_the_model(qtbot, window, image_folder):
    assert window.open_path(image_folder)
    document = window.session.document
    window.actions_by_name["tool_scribble"].trigger()
    window.set_active_class(1)
    points, _ = _nucleus_stroke()
    _draw(qtbot, window.canvas, points)
    assert (document.labels == 1).any()  # the stroke still paints
    assert "run the model" in window.statusBar().currentMessage()
    assert window.scribbles.task is None and document.crf_labels is None


def test_on_a_volume_the_shown_plane_is_refined_and_the_other_planes_are_left(qtbot, window, tmp_path):
    from segstudio.inference.predictor import PredictionResult
    from tests.io.test_dicom import make_ct_series

    make_ct_series(tmp_path / "ct")
    assert window.open_path(tmp_path / "ct")
    document = window.session.document
    assert document.is_volume
    window.crf_panel._preview.setChecked(False)  # the scribbles' result alone in the CRF layer
    # a model that answers "background" (0.7) on every slice, as a run on the volume leaves it
    depth, height, width = document.shape
    probabilities = np.empty((2, depth, height, width), np.float16)
    probabilities[0], probabilities[1] = 0.7, 0.3
    window._on_predicted(window.session.index, PredictionResult(probabilities, np.zeros(document.shape, np.uint8),
                                                                512))
    assert document.prediction is not None
    window.actions_by_name["tool_scribble"].trigger()
    window.set_active_class(1)
    window.canvas.set_brush_radius(1.0)
    shown = window.canvas.slicer.index
    _draw(qtbot, window.canvas, [(60.5, 50.5 + c) for c in range(0, 12, 2)])
    stroke = (document.labels[shown] == 1)
    assert stroke.any()
    qtbot.waitUntil(lambda: document.crf_labels is not None, timeout=30000)
    crf = document.crf_labels
    plane = crf[shown]
    assert (plane[stroke] == 1).all()  # the scribbles keep their class
    assert np.count_nonzero(plane == 1) > 3 * np.count_nonzero(stroke)  # and pulled their neighbours
    others = [k for k in range(depth) if k != shown]
    assert (crf[others] == 255).all()  # no other plane was refined
    window.accept("crf")  # Edit > Accept CRF mask
    assert (document.labels[shown][plane == 1] == 1).all()


def test_a_later_plain_crf_preview_keeps_the_refinement_in_its_region(qtbot, window, image_folder, checkpoint):
    document = _start(qtbot, window, image_folder, checkpoint)
    points, _ = _nucleus_stroke()
    _draw(qtbot, window.canvas, points)
    qtbot.waitSignal(window.scribbles.refined, timeout=30000).wait()
    refined = document.crf_labels.copy()
    with qtbot.waitSignal(window.runs.crfDone, timeout=30000):
        qtbot.mouseClick(window.crf_panel.findChild(QPushButton, "crf_run"), Qt.MouseButton.LeftButton)
    assert np.array_equal(document.crf_labels, refined)  # the plain CRF outside, the same refinement inside
