"""Tests of scribble refinement: the dense CRF with the user's strokes as hard constraints."""

from __future__ import annotations

import numpy as np
import pytest

from segstudio.errors import InvalidArgumentError
from segstudio.refine import (
    CRFParams,
    ScribbleResult,
    refine,
    refine_with_scribbles,
    refine_with_scribbles_steps,
    scribble_region,
)
from segstudio.tasks import CancelToken, Progress, TaskCancelled
from tests.steps import drain

SIZE = 160
CENTRE, RADIUS = (80, 80), 40
UNLABELLED = 255


def _disc_scene(inside_background: float, seed: int = 0):
    """A noisy bright disc on a dark background and a model that misses it:
    outside the disc it says background (0.9), inside it gives background
    *inside_background*."""
    rng = np.random.default_rng(seed)
    rows, columns = np.mgrid[:SIZE, :SIZE]
    disc = (rows - CENTRE[0]) ** 2 + (columns - CENTRE[1]) ** 2 < RADIUS**2
    image = np.clip(np.where(disc, 190.0, 60.0) + rng.normal(0.0, 8.0, (SIZE, SIZE)), 0, 255).astype(np.uint8)
    background = np.where(disc, inside_background, 0.9)
    probabilities = np.stack([background, 1.0 - background]).astype(np.float32)
    return image, probabilities, disc


def _stroke(rows: slice, columns: slice, value: int = 1, scribbles: np.ndarray | None = None) -> np.ndarray:
    if scribbles is None:
        scribbles = np.full((SIZE, SIZE), UNLABELLED, np.uint8)
    scribbles[rows, columns] = value
    return scribbles


def _whole(result: ScribbleResult, fill: np.ndarray) -> np.ndarray:
    out = fill.copy()
    out[result.region] = result.labels
    return out


@pytest.mark.parametrize("inside_background", [0.5, 0.7, 0.95])
def test_one_stroke_in_a_missed_disc_labels_the_disc_and_not_the_background(inside_background):
    image, probabilities, disc = _disc_scene(inside_background)
    scribbles = _stroke(slice(78, 82), slice(65, 95))  # one short stroke of class 1 in the disc
    plain = refine(image, probabilities).labels
    assert (plain[disc] == 1).mean() < 0.05 or inside_background == 0.5  # the model alone misses it

    result = refine_with_scribbles(image, probabilities, scribbles, unlabelled=UNLABELLED, region=None)
    labels = result.labels
    assert (labels[disc] == 1).mean() > 0.95
    assert (labels[~disc] == 0).mean() > 0.99


def test_scribbled_pixels_keep_their_class_against_a_confident_model():
    image, _, disc = _disc_scene(0.9)
    probabilities = np.stack([np.full((SIZE, SIZE), 0.999), np.full((SIZE, SIZE), 0.001)]).astype(np.float32)
    scribbles = _stroke(slice(10, 14), slice(10, 60))  # class 1 on the dark background, against the image too
    scribbles = _stroke(slice(80, 81), slice(80, 81), 0, scribbles)
    result = refine_with_scribbles(image, probabilities, scribbles, unlabelled=UNLABELLED, region=None)
    assert (result.labels[10:14, 10:60] == 1).all()
    assert result.labels[80, 80] == 0
    assert np.array_equal(result.probabilities[1, 10:14, 10:60], np.ones((4, 50), np.float32))
    # far from the stroke the confident model stays
    assert (result.labels[100:, 100:] == 0).all()


def test_the_auto_region_is_the_scribbles_box_grown_by_the_margin_and_clipped():
    image, probabilities, _ = _disc_scene(0.7)
    scribbles = _stroke(slice(70, 80), slice(60, 100))
    result = refine_with_scribbles(image, probabilities, scribbles, unlabelled=UNLABELLED, margin=20)
    assert result.region == (slice(50, 100), slice(40, 120))
    assert result.labels.shape == (50, 80) and result.probabilities.shape == (2, 50, 80)
    assert result.labels.dtype == np.uint8

    corner = _stroke(slice(2, 5), slice(150, 158))
    clipped = refine_with_scribbles(image, probabilities, corner, unlabelled=UNLABELLED, margin=10)
    assert clipped.region == (slice(0, 15), slice(140, SIZE))
    assert scribble_region(corner != UNLABELLED, 10) == clipped.region
    assert scribble_region(np.zeros((4, 4), bool)) is None


def test_only_the_region_is_refined_and_returned():
    image, probabilities, disc = _disc_scene(0.7)
    scribbles = _stroke(slice(78, 82), slice(65, 95))
    region = (slice(30, 130), slice(30, 130))
    result = refine_with_scribbles(image, probabilities, scribbles, unlabelled=UNLABELLED, region=region)
    assert result.region == region and result.labels.shape == (100, 100)
    inside = disc[region]
    assert (result.labels[inside] == 1).mean() > 0.95
    # the default margin (64 px) around this stroke also stays inside the image's 160 px
    auto = refine_with_scribbles(image, probabilities, scribbles, unlabelled=UNLABELLED)
    assert auto.region == (slice(14, 146), slice(1, 159))


def test_several_classes_scribbled_each_take_their_object():
    rng = np.random.default_rng(1)
    rows, columns = np.mgrid[:SIZE, :SIZE]
    left = (rows - 80) ** 2 + (columns - 40) ** 2 < 28**2
    right = (rows - 80) ** 2 + (columns - 120) ** 2 < 28**2
    image = np.where(left, 200.0, np.where(right, 120.0, 30.0)) + rng.normal(0.0, 6.0, (SIZE, SIZE))
    image = np.clip(image, 0, 255).astype(np.uint8)
    probabilities = np.full((3, SIZE, SIZE), 1.0 / 3.0, np.float32)  # the model knows nothing
    scribbles = _stroke(slice(79, 82), slice(30, 50), 1)
    scribbles = _stroke(slice(79, 82), slice(110, 130), 2, scribbles)
    scribbles = _stroke(slice(10, 13), slice(20, 140), 0, scribbles)
    scribbles = _stroke(slice(148, 151), slice(20, 140), 0, scribbles)
    result = refine_with_scribbles(image, probabilities, scribbles, unlabelled=UNLABELLED, region=None)
    labels = result.labels
    assert (labels[left] == 1).mean() > 0.95
    assert (labels[right] == 2).mean() > 0.95
    assert (labels[~(left | right)] == 0).mean() > 0.95
    scribbled = scribbles != UNLABELLED
    assert np.array_equal(labels[scribbled], scribbles[scribbled])


def test_no_scribble_is_a_clear_error():
    image, probabilities, _ = _disc_scene(0.7)
    nothing = np.full((SIZE, SIZE), UNLABELLED, np.uint8)
    for region in ("auto", None):
        with pytest.raises(InvalidArgumentError, match="no scribbles"):
            refine_with_scribbles(image, probabilities, nothing, unlabelled=UNLABELLED, region=region)
    elsewhere = _stroke(slice(0, 2), slice(0, 2))
    with pytest.raises(InvalidArgumentError, match="inside the region"):
        refine_with_scribbles(image, probabilities, elsewhere, unlabelled=UNLABELLED,
                              region=(slice(50, 100), slice(50, 100)))


@pytest.mark.parametrize("bad", [
    dict(scribbles=np.full((SIZE, SIZE - 1), UNLABELLED, np.uint8)),
    dict(scribbles=np.full((SIZE, SIZE), 0.5)),
    dict(class_index=2),
    dict(margin=-1),
    dict(reach=0.0),
    dict(region="near"),
])
def test_bad_arguments_are_invalid_argument_errors(bad):
    image, probabilities, _ = _disc_scene(0.7)
    scribbles = bad.pop("scribbles", None)
    if scribbles is None:
        scribbles = _stroke(slice(78, 82), slice(65, 95), bad.pop("class_index", 1))
    with pytest.raises(InvalidArgumentError):
        refine_with_scribbles(image, probabilities, scribbles, unlabelled=UNLABELLED, **bad)


def test_steps_report_progress_accept_uint8_probabilities_and_stop_when_cancelled():
    image, probabilities, disc = _disc_scene(0.7)
    scribbles = _stroke(slice(78, 82), slice(65, 95))
    as_bytes = np.round(probabilities * 255).astype(np.uint8)
    params = CRFParams(iterations=4)
    steps = refine_with_scribbles_steps(image, as_bytes, scribbles, params, unlabelled=UNLABELLED, region=None)
    seen, result = drain(steps)
    assert all(isinstance(p, Progress) for p in seen)
    assert [(p.done, p.total) for p in seen] == [(i, 5) for i in range(1, 6)]
    assert (result.labels[disc] == 1).mean() > 0.95

    cancel = CancelToken()
    steps = refine_with_scribbles_steps(image, probabilities, scribbles, params, unlabelled=UNLABELLED,
                                        cancel=cancel)
    next(steps)
    cancel.cancel()
    with pytest.raises(TaskCancelled):
        next(steps)
