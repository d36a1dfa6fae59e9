"""The document: painting, strokes, undo, accepting predictions, status, remapping."""

import numpy as np
import pytest

from segstudio.annotation.classes import ClassList
from segstudio.annotation.document import Document, ImageStatus
from segstudio.annotation.tools import disk, polygon, stroke_segment
from segstudio.errors import InvalidArgumentError
from segstudio.inference.predictor import PredictionResult


@pytest.fixture
def doc():
    rng = np.random.default_rng(0)
    return Document(rng.integers(0, 255, (40, 50, 3), dtype=np.uint8))


def _prediction(labels, classes=3):
    probabilities = np.stack([(labels == c).astype(np.float16) for c in range(classes)])
    return PredictionResult(probabilities, labels.astype(np.uint8), tile_size=64)


def test_defaults_and_validation():
    doc = Document(np.zeros((4, 6), np.uint16))
    assert doc.labels.shape == (4, 6) and doc.labels.dtype == np.uint8 and (doc.labels == 255).all()
    assert doc.status is ImageStatus.NEW and doc.revision == 0 and not doc.dirty
    with pytest.raises(InvalidArgumentError):
        Document(np.zeros((4, 6)), labels=np.zeros((4, 5), np.uint8))
    with pytest.raises(InvalidArgumentError):
        Document(np.zeros((4, 6)), labels=np.zeros((4, 6), np.int32))
    given = np.zeros((4, 6), np.uint8)
    assert Document(np.zeros((4, 6)), labels=given).labels is given


def test_paint_writes_in_place_and_notifies(doc):
    buffer = doc.labels
    heard = []
    unsubscribe = doc.subscribe(heard.append)
    region, mask = disk(10, 10, 3, doc.shape)
    assert doc.paint(region, mask, 2)
    assert doc.labels is buffer
    expected = np.full(doc.shape, 255, np.uint8)
    expected[region][mask] = 2
    assert np.array_equal(doc.labels, expected)
    assert region in heard and doc.dirty and doc.revision >= 1
    assert doc.status is ImageStatus.CORRECTED
    unsubscribe()
    heard.clear()
    doc.paint(*disk(30, 30, 2, doc.shape), 1)
    assert heard == []


def test_undo_restores_exact_labels_and_redo_reapplies(doc):
    doc.labels[:] = np.random.default_rng(1).integers(0, 4, doc.shape, dtype=np.uint8)
    before = doc.labels.copy()
    region, mask = polygon([(5, 5), (5, 30), (30, 5)], doc.shape)
    assert doc.apply(region, mask, 3, "Polygon")
    after = doc.labels.copy()
    assert not np.array_equal(before, after)
    assert doc.undo_description == "Polygon"
    undone = doc.undo()
    assert np.array_equal(doc.labels, before)
    assert undone[0].start >= region[0].start and undone[0].stop <= region[0].stop
    assert doc.can_redo and not doc.can_undo
    doc.redo()
    assert np.array_equal(doc.labels, after)
    assert doc.undo() is not None and doc.undo() is None


def test_apply_without_change_adds_no_step(doc):
    region, mask = disk(5, 5, 2, doc.shape)
    assert doc.apply(region, mask, 1, "dab")
    assert not doc.apply(region, mask, 1, "same again")
    assert doc.undo_description == "dab"


def test_stroke_is_one_undo_step_and_restores_pixels_painted_twice(doc):
    doc.labels[:, :25] = 1
    before = doc.labels.copy()
    doc.begin_stroke("Brush")
    points = [(20, 5), (20, 40), (10, 40), (20, 20)]  # crosses its own path
    values = [2, 3, 2]
    for (p0, p1), value in zip(zip(points, points[1:]), values):
        region, mask = stroke_segment(p0, p1, 2, doc.shape)
        doc.paint(region, mask, value)
    doc.paint(*disk(20, 20, 3, doc.shape), 255)  # erase inside the stroke
    doc.end_stroke()
    assert not np.array_equal(doc.labels, before)
    painted = doc.labels.copy()
    assert doc.history.can_undo and len(doc.history) == 1
    doc.undo()
    assert np.array_equal(doc.labels, before)
    assert not doc.can_undo
    doc.redo()
    assert np.array_equal(doc.labels, painted)


def test_paint_outside_a_stroke_is_its_own_step(doc):
    doc.paint(*disk(5, 5, 2, doc.shape), 1)
    doc.paint(*disk(30, 30, 2, doc.shape), 2)
    assert len(doc.history) == 2
    doc.undo()
    assert (doc.labels[28:33, 28:33] == 255).all() and doc.labels[5, 5] == 1


def test_undo_memory_bound_keeps_the_newest():
    doc = Document(np.zeros((100, 100), np.uint8), history_bytes=4000)
    for i in range(20):
        doc.apply((slice(0, 30), slice(0, 30)), None, i % 3, f"fill {i}")  # 1800 bytes each
    assert doc.history.nbytes <= 4000
    before_last = doc.labels.copy()
    before_last[:30, :30] = 18 % 3
    doc.undo()
    assert np.array_equal(doc.labels, before_last)


def test_accept_prediction_whole_one_class_and_region(doc):
    predicted = np.zeros(doc.shape, np.uint8)
    predicted[10:20, 10:20] = 1
    predicted[25:35, 30:45] = 2
    with pytest.raises(InvalidArgumentError):
        doc.accept()
    doc.set_prediction(_prediction(predicted))
    assert doc.status is ImageStatus.PREDICTED

    assert doc.accept(class_index=2)
    expected = np.full(doc.shape, 255, np.uint8)
    expected[25:35, 30:45] = 2
    assert np.array_equal(doc.labels, expected)

    region, mask = disk(15, 15, 3, doc.shape)
    assert doc.accept(region=region, mask=mask)
    expected[region][mask] = predicted[region][mask]
    assert np.array_equal(doc.labels, expected)

    assert doc.accept()
    assert np.array_equal(doc.labels, predicted)
    doc.undo()
    assert np.array_equal(doc.labels, expected)
    with pytest.raises(InvalidArgumentError):
        doc.accept("crf")
    crf = np.full(doc.shape, 1, np.uint8)
    doc.set_crf_labels(crf)
    assert doc.accept("crf", region=(slice(0, 5), slice(0, 5)))
    assert (doc.labels[:5, :5] == 1).all() and doc.labels[6, 6] == expected[6, 6]


def test_status_transitions(doc):
    heard = []
    doc.subscribe(heard.append)
    doc.set_prediction(_prediction(np.zeros(doc.shape, np.uint8)))
    assert doc.status is ImageStatus.PREDICTED and None in heard
    doc.paint(*disk(3, 3, 1, doc.shape), 1)
    assert doc.status is ImageStatus.CORRECTED
    doc.set_status("reviewed")
    assert doc.status is ImageStatus.REVIEWED
    doc.paint(*disk(8, 8, 1, doc.shape), 2)
    assert doc.status is ImageStatus.REVIEWED  # an edit does not demote a reviewed image
    doc.set_status(ImageStatus.NEW)
    doc.set_prediction(_prediction(np.zeros(doc.shape, np.uint8)))
    assert doc.status is ImageStatus.PREDICTED
    with pytest.raises(InvalidArgumentError):
        doc.set_status("finished")
    with pytest.raises(InvalidArgumentError):
        doc.set_prediction(_prediction(np.zeros((3, 3), np.uint8)))


def test_class_delete_with_remap(doc):
    classes = ClassList.from_names(["background", "a", "b", "c"])
    doc.labels[:] = np.arange(doc.shape[1], dtype=np.uint8)[None, :] % 4
    doc.labels[0, :] = 255
    before = doc.labels.copy()
    doc.set_crf_labels(before.copy())
    buffer = doc.labels
    assert doc.remap_labels(classes.removal_mapping(1, replacement=0))
    classes.remove(1)
    expected = before.copy()
    for old, new in ((1, 0), (2, 1), (3, 2)):
        expected[before == old] = new
    assert doc.labels is buffer
    assert np.array_equal(doc.labels, expected) and np.array_equal(doc.crf_labels, expected)
    assert classes.names == ["background", "b", "c"]
    doc.undo()
    assert np.array_equal(doc.labels, before)


def test_label_counts(doc):
    doc.apply((slice(0, 10), slice(0, 10)), None, 3, "fill")
    counts = doc.label_counts()
    assert counts.shape == (256,) and counts[3] == 100 and counts[255] == 40 * 50 - 100


def test_bad_paint_arguments(doc):
    region, mask = disk(5, 5, 2, doc.shape)
    with pytest.raises(InvalidArgumentError):
        doc.paint(region, mask, 256)
    with pytest.raises(InvalidArgumentError):
        doc.paint(region, mask[:-1], 1)
    with pytest.raises(InvalidArgumentError):
        doc.paint(region, mask.astype(np.uint8), 1)


def test_annotation_and_project_modules_do_not_load_torch():
    import subprocess
    import sys

    script = (
        "import sys, segstudio.annotation, segstudio.io.project, segstudio.io.export; "
        "print('torch' in sys.modules)"
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "False"


def _many_class_doc():
    return Document(np.zeros((30, 40), np.uint8), label_dtype=np.uint16)


def test_uint16_document_paints_classes_above_255_and_erases_to_65535():
    doc = _many_class_doc()
    assert doc.labels.dtype == np.uint16 and (doc.labels == 65535).all() and doc.unlabelled == 65535
    region, mask = disk(10, 10, 3, doc.shape)
    doc.begin_stroke("Brush")
    assert doc.paint(region, mask, 300)
    assert doc.paint(*disk(10, 14, 3, doc.shape), 255)  # 255 is a class here, not "erase"
    doc.end_stroke()
    assert doc.labels[10, 10] == 300 and doc.labels[10, 15] == 255 and doc.labels[0, 0] == 65535
    assert doc.paint(*disk(10, 10, 1, doc.shape), doc.unlabelled)
    assert doc.labels[10, 10] == 65535
    counts = doc.label_counts()
    assert counts.shape == (65536,) and counts[255] > 0 and counts.sum() == 30 * 40
    doc.undo()
    doc.undo()
    assert (doc.labels == 65535).all()
    with pytest.raises(InvalidArgumentError):
        doc.paint(region, mask, 65536)


def test_uint16_document_accepts_a_uint16_prediction_and_refuses_too_deep_ones():
    doc = _many_class_doc()
    predicted = np.full(doc.shape, 299, np.uint16)
    predicted[:, :10] = 256
    predicted[0, :] = 65535  # no answer there: the labels stay
    probabilities = np.zeros((1, *doc.shape), np.float16)
    doc.set_prediction(PredictionResult(probabilities, predicted, tile_size=64))
    doc.paint((slice(0, 1), slice(0, 40)), None, 7)
    assert doc.accept(class_index=256)
    assert (doc.labels[1:, :10] == 256).all() and (doc.labels[0] == 7).all() and doc.labels[5, 20] == 65535
    assert doc.accept()
    assert (doc.labels[1:, 10:] == 299).all()
    small = Document(np.zeros((30, 40), np.uint8))
    small.set_prediction(PredictionResult(probabilities, predicted, tile_size=64))
    with pytest.raises(InvalidArgumentError, match="add classes"):
        small.accept()
    assert (small.labels == 255).all()


def test_changing_the_label_type_keeps_labels_crf_and_undo():
    doc = Document(np.zeros((30, 40), np.uint8))
    doc.paint(*disk(5, 5, 2, doc.shape), 3)
    doc.apply((slice(10, 20), slice(0, 40)), None, 254, "Fill")
    doc.set_crf_labels(np.full(doc.shape, 2, np.uint8))
    heard = []
    doc.subscribe(heard.append)
    before = doc.labels.copy()
    assert doc.set_label_dtype(np.uint16)
    assert doc.labels.dtype == np.uint16 and doc.crf_labels.dtype == np.uint16 and heard[-1] is None
    assert np.array_equal(doc.labels, masks_convert(before, np.uint16))
    assert doc.dirty and not doc.set_label_dtype(np.uint16)
    doc.apply((slice(0, 2), slice(0, 2)), None, 400, "Fill")
    doc.undo()
    doc.undo()  # the uint8-era fill, replayed into the uint16 map
    assert doc.labels[15, 0] == 65535 and doc.labels[5, 5] == 3
    doc.redo()
    assert doc.labels[15, 0] == 254
    doc.redo()
    with pytest.raises(InvalidArgumentError, match="400"):
        doc.set_label_dtype(np.uint8)  # class 400 does not fit: nothing changes
    assert doc.labels.dtype == np.uint16 and doc.labels[0, 0] == 400
    doc.undo()
    with pytest.raises(InvalidArgumentError, match="400"):
        doc.set_label_dtype(np.uint8)  # the redo step still holds class 400
    doc.paint(*disk(25, 30, 1, doc.shape), 1)  # a new edit drops that redo step
    assert doc.set_label_dtype(np.uint8)
    doc.undo()
    doc.undo()
    assert doc.labels.dtype == np.uint8 and doc.labels[15, 0] == 255 and doc.labels[5, 5] == 3


def masks_convert(labels, dtype):
    from segstudio.io.masks import convert_labels

    return convert_labels(labels, dtype)


def test_deleting_the_255th_class_narrows_the_labels_in_one_undo_step():
    classes = ClassList.from_names([f"c{i}" for i in range(255)])
    doc = Document(np.zeros((20, 20), np.uint8), label_dtype=classes.label_dtype)
    doc.apply((slice(0, 5), slice(0, 20)), None, 254, "Fill")
    doc.apply((slice(5, 10), slice(0, 20)), None, 100, "Fill")
    heard = []
    doc.subscribe(heard.append)
    assert doc.remap_labels(classes.removal_mapping(100))  # class 100 goes: 254 -> 253
    assert doc.labels.dtype == np.uint8 and heard[-1] is None
    assert (doc.labels[:5] == 253).all() and (doc.labels[5:10] == 255).all() and (doc.labels[10:] == 255).all()
    doc.undo()
    assert doc.labels.dtype == np.uint8 and (doc.labels[:5] == 254).all() and (doc.labels[5:10] == 100).all()
    with pytest.raises(InvalidArgumentError, match="256"):
        doc.remap_labels(np.arange(65536, dtype=np.uint16))  # a table for the other type
