"""A volume is one document: 3-D labels, one history across slices."""

import numpy as np
import pytest

from segstudio.annotation.document import Document
from segstudio.errors import InvalidArgumentError


def _volume():
    return Document(np.zeros((4, 20, 30), np.int16), volume=True)


def test_volume_labels_are_one_3d_map_starting_unlabelled():
    doc = _volume()
    assert doc.shape == (4, 20, 30) and doc.labels.dtype == np.uint8 and (doc.labels == 255).all()


def test_undo_walks_back_across_slices():
    doc = _volume()
    square = np.ones((1, 5, 5), bool)
    doc.apply((slice(1, 2), slice(0, 5), slice(0, 5)), square, 1, "slice 1")
    doc.begin_stroke("slice 3")
    doc.paint((slice(3, 4), slice(10, 15), slice(10, 15)), square, 2)
    doc.paint((slice(3, 4), slice(12, 17), slice(12, 17)), square, 2)
    doc.end_stroke()
    assert doc.labels[3, 16, 16] == 2 and doc.labels[1, 2, 2] == 1
    region = doc.undo()
    assert region[0] == slice(3, 4)  # the canvas learns which slice changed
    assert (doc.labels[3] == 255).all() and doc.labels[1, 2, 2] == 1
    doc.undo()
    assert (doc.labels == 255).all()
    doc.redo()
    doc.redo()
    assert doc.labels[3, 16, 16] == 2 and doc.labels[1, 2, 2] == 1


def test_a_2d_region_is_refused_on_a_volume():
    with pytest.raises(InvalidArgumentError, match="tuple of 3 slices"):
        _volume().apply((slice(0, 2), slice(0, 2)), None, 1, "wrong")


def test_accept_a_3d_prediction():
    from segstudio.inference.predictor import PredictionResult

    doc = _volume()
    predicted = np.zeros((4, 20, 30), np.uint8)
    predicted[2] = 1
    probabilities = np.stack([predicted == 0, predicted == 1]).astype(np.float16)
    doc.set_prediction(PredictionResult(probabilities, predicted, 512))
    doc.accept("prediction", class_index=1)
    assert (doc.labels[2] == 1).all() and (doc.labels[[0, 1, 3]] == 255).all()


def test_accepting_a_partial_prediction_keeps_labels_where_it_has_no_answer():
    from segstudio.inference.predictor import PredictionResult

    doc = _volume()
    doc.apply((slice(0, 1), slice(0, 20), slice(0, 30)), None, 1, "labelled by hand")
    predicted = np.full((4, 20, 30), 255, np.uint8)
    predicted[2] = 0  # only slice 2 was predicted
    doc.set_prediction(PredictionResult(np.zeros((2, 4, 20, 30), np.float16), predicted, 512))
    doc.accept("prediction")
    assert (doc.labels[0] == 1).all() and (doc.labels[2] == 0).all() and (doc.labels[3] == 255).all()
