"""Scoring a model on labelled pixels: which part of an image is looked at."""

import numpy as np

from segstudio.models.checkpoint import Preprocessing
from segstudio.training.evaluate import labelled_view


def test_a_capped_view_of_far_apart_labels_still_holds_labels():
    # a 3000 x 3000 slide with two corrected patches in opposite corners: the box around them is the
    # whole slide, and a window cut at its centre would hold no label at all
    image = np.random.default_rng(0).integers(0, 4000, (3000, 3000), dtype=np.uint16)
    labels = np.full((3000, 3000), 255, np.uint8)
    labels[10:40, 10:40] = 1
    labels[2950:2990, 2950:2990] = 0
    part, truth = labelled_view(image, labels, Preprocessing(), max_side=1024)
    assert part.shape == truth.shape == (1024, 1024)
    assert np.count_nonzero(truth != 255) in (30 * 30, 40 * 40)


def test_a_small_labelled_region_gets_its_box_and_margin():
    image = np.zeros((200, 300), np.uint8)
    labels = np.full((200, 300), 255, np.uint8)
    labels[100:110, 150:170] = 1
    part, truth = labelled_view(image, labels, Preprocessing(), max_side=1024)
    # 32 pixels of context on each side
    assert truth.shape == part.shape == (10 + 64, 20 + 64)
    assert np.count_nonzero(truth == 1) == 200
    assert labelled_view(image, np.full_like(labels, 255), Preprocessing()) is None
