"""Tests of the fully connected CRF refinement."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.ndimage import gaussian_filter

from segstudio.errors import InvalidArgumentError
from segstudio.refine import CRFParams, RefineResult, refine, refine_steps
from segstudio.refine.dense_crf import _robust_to_uint8
from segstudio.tasks import CancelToken, TaskCancelled
from tests.steps import drain

HEIGHT, WIDTH, EDGE = 80, 120, 60
BAND = 10  # boundary accuracy is measured within ±BAND px of the true edge
SHIFT = 6  # the probability map puts the edge this many px too far right


def _edge_scene(seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Noisy dark|bright image, its true labels, and a blurred, shifted map.

    The image is float64 in roughly 20..230; callers cast it as they need.
    """
    rng = np.random.default_rng(seed)
    columns = np.arange(WIDTH)[np.newaxis, :]
    image = np.where(columns < EDGE, 60.0, 190.0) + rng.normal(0.0, 10.0, (HEIGHT, WIDTH))
    truth = np.broadcast_to(columns >= EDGE, (HEIGHT, WIDTH)).astype(np.uint8)
    wrong = np.broadcast_to(columns >= EDGE + SHIFT, (HEIGHT, WIDTH)).astype(np.float64)
    foreground = gaussian_filter(wrong, sigma=8.0, mode="nearest")
    probabilities = np.stack([1.0 - foreground, foreground]).astype(np.float32)
    return image, truth, probabilities


def _boundary_accuracy(labels: np.ndarray, truth: np.ndarray) -> float:
    band = slice(EDGE - BAND, EDGE + BAND)
    return float((labels[:, band] == truth[:, band]).mean())


def _as_uint8(image: np.ndarray) -> np.ndarray:
    return np.clip(np.rint(image), 0, 255).astype(np.uint8)


def _scene_images() -> dict[str, np.ndarray]:
    image, _, _ = _edge_scene()
    grey8 = _as_uint8(image)
    return {
        "rgb_uint8": np.repeat(grey8[:, :, np.newaxis], 3, axis=2),
        "grey_uint8": grey8,
        # 16-bit values spread over 1000..40000
        "grey_uint16": (1000.0 + image / 255.0 * 39000.0).astype(np.uint16),
        "rgb_float": np.repeat((image / 255.0)[:, :, np.newaxis], 3, axis=2),
    }


@pytest.mark.parametrize("kind", ["rgb_uint8", "grey_uint8", "grey_uint16", "rgb_float"])
def test_refine_moves_blurred_boundary_onto_image_edge(kind: str) -> None:
    _, truth, probabilities = _edge_scene()
    image = _scene_images()[kind]
    before = _boundary_accuracy(probabilities.argmax(axis=0), truth)
    after = _boundary_accuracy(refine(image, probabilities).labels, truth)
    # Measured: before 0.700 (the 6 px shift), after 1.000 for every kind.
    assert before == pytest.approx(0.7, abs=0.01)
    assert after >= before + 0.05
    assert after >= 0.95


def test_flat_image_does_not_fix_boundary() -> None:
    # Control: the correction must come from the image edge, not from
    # smoothing alone (measured 0.59 here versus 1.00 with the edge).
    _, truth, probabilities = _edge_scene()
    flat = np.full((HEIGHT, WIDTH), 128, dtype=np.uint8)
    assert _boundary_accuracy(refine(flat, probabilities).labels, truth) < 0.9


def test_result_shapes_dtypes_and_normalisation() -> None:
    image, _, probabilities = _edge_scene()
    result = refine(_as_uint8(image), probabilities)
    assert isinstance(result, RefineResult)
    assert result.probabilities.shape == (2, HEIGHT, WIDTH)
    assert result.probabilities.dtype == np.float32
    assert result.labels.shape == (HEIGHT, WIDTH)
    assert result.labels.dtype == np.uint8
    np.testing.assert_allclose(result.probabilities.sum(axis=0), 1.0, atol=1e-4)
    assert np.all(result.probabilities >= 0)
    np.testing.assert_array_equal(result.labels, result.probabilities.argmax(axis=0))


def test_many_classes_give_uint16_labels() -> None:
    rng = np.random.default_rng(3)
    n_classes = 260
    probabilities = rng.random((n_classes, 6, 7)).astype(np.float32)
    image = rng.integers(0, 256, (6, 7, 3), dtype=np.uint8)
    result = refine(image, probabilities, CRFParams(iterations=2))
    assert result.labels.dtype == np.uint16
    assert result.probabilities.shape == (n_classes, 6, 7)
    np.testing.assert_array_equal(result.labels, result.probabilities.argmax(axis=0))


def test_inputs_are_not_modified() -> None:
    image, _, probabilities = _edge_scene()
    image8 = _as_uint8(image)
    image_copy, prob_copy = image8.copy(), probabilities.copy()
    refine(image8, probabilities)
    np.testing.assert_array_equal(image8, image_copy)
    np.testing.assert_array_equal(probabilities, prob_copy)


@pytest.mark.parametrize("dtype", [np.float16, np.float64, np.uint8])
def test_other_probability_dtypes_are_accepted(dtype: type) -> None:
    image, truth, probabilities = _edge_scene()
    if dtype is np.uint8:
        converted = np.rint(probabilities * 255).astype(np.uint8)
    else:
        converted = probabilities.astype(dtype)
    result = refine(_as_uint8(image), converted)
    assert _boundary_accuracy(result.labels, truth) >= 0.95
    np.testing.assert_allclose(result.probabilities.sum(axis=0), 1.0, atol=1e-4)


@pytest.mark.parametrize("iterations", [1, 25, 100])
def test_iteration_counts_run_and_stay_normalised(iterations: int) -> None:
    rng = np.random.default_rng(iterations)
    probabilities = rng.dirichlet(np.ones(3), size=(24, 32)).transpose(2, 0, 1)
    image = rng.integers(0, 256, (24, 32, 3), dtype=np.uint8)
    result = refine(image, probabilities, CRFParams(iterations=iterations))
    assert np.isfinite(result.probabilities).all()
    np.testing.assert_allclose(result.probabilities.sum(axis=0), 1.0, atol=1e-4)


def test_refine_steps_yields_one_progress_per_iteration() -> None:
    image, _, probabilities = _edge_scene()
    steps = refine_steps(_as_uint8(image), probabilities, CRFParams(iterations=7))
    seen, result = drain(steps)
    assert [p.done for p in seen] == list(range(1, 8))
    assert all(p.total == 7 and p.stage == "crf" for p in seen)
    assert isinstance(result, RefineResult)
    assert result.labels.shape == (HEIGHT, WIDTH)


def test_cancel_after_second_iteration_raises() -> None:
    image, _, probabilities = _edge_scene()
    token = CancelToken()
    steps = refine_steps(_as_uint8(image), probabilities, CRFParams(iterations=10), cancel=token)
    assert next(steps).done == 1
    assert next(steps).done == 2
    token.cancel()
    with pytest.raises(TaskCancelled):
        next(steps)


def test_cancel_before_start_raises_at_once() -> None:
    image, _, probabilities = _edge_scene()
    token = CancelToken()
    token.cancel()
    with pytest.raises(TaskCancelled):
        refine(_as_uint8(image), probabilities, cancel=token)


def test_negligible_weights_keep_input_argmax() -> None:
    rng = np.random.default_rng(5)
    probabilities = rng.dirichlet(np.ones(4), size=(48, 64)).transpose(2, 0, 1)
    image = rng.integers(0, 256, (48, 64, 3), dtype=np.uint8)
    expected = probabilities.argmax(axis=0)
    tiny = CRFParams(gaussian_weight=1e-6, bilateral_weight=1e-6)
    np.testing.assert_array_equal(refine(image, probabilities, tiny).labels, expected)
    # Control: the default weights do change a noisy map (measured ~9% of pixels).
    changed = (refine(image, probabilities).labels != expected).mean()
    assert changed > 0.02


def _valid_inputs() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(7)
    probabilities = rng.dirichlet(np.ones(3), size=(10, 12)).transpose(2, 0, 1).astype(np.float32)
    return rng.integers(0, 256, (10, 12, 3), dtype=np.uint8), probabilities


def test_shape_mismatch_names_both_shapes() -> None:
    image, probabilities = _valid_inputs()
    with pytest.raises(InvalidArgumentError) as info:
        refine(image[:, :11], probabilities)
    assert "10x11x3" in str(info.value) and "3x10x12" in str(info.value)


@pytest.mark.parametrize(
    "make_bad",
    [
        pytest.param(lambda im, p: (im, p[0]), id="2d-probabilities"),
        pytest.param(lambda im, p: (im[..., :2], p), id="two-channel-image"),
        pytest.param(lambda im, p: (im, p[:1]), id="one-class"),
        pytest.param(lambda im, p: (im, np.where(p > 0.5, np.nan, p)), id="nan-probability"),
        pytest.param(lambda im, p: (im, np.where(p > 0.5, np.inf, p)), id="inf-probability"),
        pytest.param(lambda im, p: (im, p - 0.1), id="negative-probability"),
        pytest.param(lambda im, p: (np.where(im > 100, np.nan, 1.0), p), id="nan-image"),
        pytest.param(lambda im, p: (im, p.astype(np.int64)), id="int64-probabilities"),
    ],
)
def test_bad_inputs_raise_invalid_argument(make_bad) -> None:
    image, probabilities = _valid_inputs()
    bad_image, bad_probabilities = make_bad(image, probabilities)
    with pytest.raises(InvalidArgumentError):
        refine(bad_image, bad_probabilities)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"gaussian_weight": 0.0},
        {"bilateral_sxy": -1.0},
        {"bilateral_srgb": float("nan")},
        {"gaussian_sxy": float("inf")},
        {"iterations": 0},
        {"iterations": 101},
        {"iterations": 2.5},
        {"bilateral_weight": "5"},
    ],
)
def test_params_validation(kwargs: dict) -> None:
    with pytest.raises(InvalidArgumentError):
        CRFParams(**kwargs)


def test_params_round_trip_and_defaults() -> None:
    defaults = CRFParams()
    assert defaults.to_dict() == {
        "gaussian_weight": 3.0,
        "gaussian_sxy": 3.0,
        "bilateral_weight": 5.0,
        "bilateral_sxy": 50.0,
        "bilateral_srgb": 5.0,
        "iterations": 10,
    }
    custom = CRFParams(bilateral_weight=10, bilateral_sxy=80.0, bilateral_srgb=3, iterations=5)
    assert CRFParams.from_dict(custom.to_dict()) == custom
    assert CRFParams.from_dict({"iterations": 4}) == CRFParams(iterations=4)
    with pytest.raises(InvalidArgumentError):
        CRFParams.from_dict({"iterations": 4, "sigma": 2})


def test_robust_scaling_ignores_outliers_and_survives_flat_images() -> None:
    ramp = np.linspace(1000, 40000, 10000).reshape(100, 100).astype(np.uint16)
    ramp[0, 0] = 65535  # one hot pixel must not compress the range
    scaled = _robust_to_uint8(ramp)
    assert scaled.dtype == np.uint8
    assert int(scaled[50, 50]) == pytest.approx(128, abs=3)
    assert scaled.max() == 255 and scaled.min() == 0
    flat = _robust_to_uint8(np.full((8, 8), 3.5))
    np.testing.assert_array_equal(flat, 0)
    # A small object on a flat background has an empty percentile range but
    # must stay visible.
    spot = np.zeros((100, 100), dtype=np.float32)
    spot[:3, :3] = 7.0
    assert _robust_to_uint8(spot)[1, 1] == 255
