"""The uncertainty score that picks the next image to annotate, on hand-computed values."""

import math

import numpy as np
import pytest

from segstudio.errors import InvalidArgumentError
from segstudio.inference.uncertainty import annotation_order, class_uncertainty, mean_entropy


def _entropy(*p):
    """Normalised Shannon entropy of one pixel, written out."""
    return -sum(v * math.log(v) for v in p if v > 0) / math.log(len(p))


@pytest.mark.parametrize("dtype", [np.float32, np.float16, np.float64])
def test_uniform_probabilities_score_one(dtype):
    assert mean_entropy(np.full((3, 4, 5), 1 / 3, dtype)) == pytest.approx(1.0, abs=1e-6)
    assert mean_entropy(np.full((21, 2, 2), 1 / 21, dtype)) == pytest.approx(1.0, abs=1e-5)


def test_one_hot_probabilities_score_zero():
    labels = np.random.default_rng(0).integers(0, 4, (16, 16))
    one_hot = (np.arange(4)[:, None, None] == labels).astype(np.float16)
    assert mean_entropy(one_hot) == pytest.approx(0.0, abs=1e-5)
    assert mean_entropy(np.ones((1, 8, 8), np.float32)) == 0.0  # one class: nothing to doubt


def test_a_known_mixture_gives_the_hand_computed_mean():
    pixels = [(0.5, 0.5, 0.0), (1.0, 0.0, 0.0), (1 / 3, 1 / 3, 1 / 3), (0.7, 0.2, 0.1)]
    probabilities = np.array(pixels, np.float32).T.reshape(3, 2, 2)
    # log 2 / log 3 = 0.63093, 0, 1, (0.24967 + 0.32189 + 0.23026) / 1.09861 = 0.72985
    assert [_entropy(*p) for p in pixels] == pytest.approx([0.63093, 0.0, 1.0, 0.72985], abs=1e-5)
    assert mean_entropy(probabilities) == pytest.approx(0.59020, abs=1e-4)
    assert mean_entropy(probabilities.astype(np.float16)) == pytest.approx(0.59020, abs=1e-3)


def test_uint8_maps_hold_p_times_255_and_are_divided_by_their_sum():
    probabilities = np.zeros((2, 1, 2), np.uint8)
    probabilities[:, 0, 0] = (128, 127)  # 0.502 / 0.498: almost 1
    probabilities[:, 0, 1] = (255, 0)
    expected = (_entropy(128 / 255, 127 / 255) + 0.0) / 2
    assert mean_entropy(probabilities) == pytest.approx(expected, abs=1e-6)
    assert expected == pytest.approx(0.49999, abs=1e-4)


def test_a_volume_skips_the_slices_the_model_has_not_run_on():
    volume = np.zeros((3, 4, 8, 8), np.float16)  # C x D x H x W
    volume[:, 1] = 1 / 3  # slice 1 uniform
    volume[0, 2] = 1.0  # slice 2 certain; slices 0 and 3 never predicted (all 0)
    assert mean_entropy(volume) == pytest.approx(0.5, abs=1e-4)
    assert math.isnan(mean_entropy(np.zeros((3, 2, 4, 4), np.float16)))


def test_max_pixels_estimates_on_a_regular_grid():
    probabilities = np.zeros((2, 1000, 1000), np.float32)
    probabilities[:, :, :500] = 0.5  # left half uniform: 1
    probabilities[0, :, 500:] = 1.0  # right half certain: 0
    assert mean_entropy(probabilities) == pytest.approx(0.5, abs=1e-6)
    # every 10th row and column: 50 columns on each side
    assert mean_entropy(probabilities, max_pixels=10_000) == pytest.approx(0.5, abs=1e-6)
    probabilities[:, :, 500:] = 0.5
    assert mean_entropy(probabilities, max_pixels=10_000) == pytest.approx(1.0, abs=1e-6)


def test_per_class_score_is_the_mean_entropy_of_the_pixels_predicted_as_each():
    pixels = [(1 / 3, 1 / 3, 1 / 3), (1.0, 0.0, 0.0), (0.2, 0.7, 0.1), (0.1, 0.8, 0.1)]
    probabilities = np.array(pixels, np.float32).T.reshape(3, 2, 2)
    scores = class_uncertainty(probabilities)
    # class 0: the uniform pixel (argmax picks the first) and the certain one
    assert scores[0] == pytest.approx(0.5, abs=1e-5)
    assert scores[1] == pytest.approx((_entropy(0.2, 0.7, 0.1) + _entropy(0.1, 0.8, 0.1)) / 2, abs=1e-5)
    assert scores[1] == pytest.approx((0.72985 + 0.58167) / 2, abs=1e-4)
    assert math.isnan(scores[2])  # predicted nowhere


def test_bad_maps_are_refused():
    with pytest.raises(InvalidArgumentError, match="C x H x W"):
        mean_entropy(np.zeros((4, 4), np.float32))
    with pytest.raises(InvalidArgumentError, match="floats"):
        mean_entropy(np.zeros((2, 4, 4), np.int64))
    with pytest.raises(InvalidArgumentError, match="max_pixels"):
        mean_entropy(np.zeros((2, 4, 4), np.float32), max_pixels=0)


def test_annotation_order_puts_unscored_first_then_the_most_uncertain_and_reviewed_last():
    scores = [0.2, None, 0.9, 0.5, math.nan, 0.9]
    done = [False, False, False, True, False, False]
    assert annotation_order(scores, done) == [1, 4, 2, 5, 0, 3]
    assert annotation_order([], []) == []
    with pytest.raises(InvalidArgumentError):
        annotation_order([0.1], [])
