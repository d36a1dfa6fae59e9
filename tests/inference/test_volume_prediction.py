"""Predicting volumes slice by slice: shapes, progress, cancel, and what the model sees."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from segstudio.errors import InvalidArgumentError
from segstudio.inference import Predictor
from segstudio.inference.volume import predict_volume_steps, slice_normaliser, volume_display_range
from segstudio.io.dicom import read_series
from segstudio.io.images import to_uint8_display
from segstudio.models import get_model
from segstudio.models.checkpoint import Preprocessing
from segstudio.preprocess import MappedImage, volume_intensity, with_normalization
from segstudio.tasks import CancelToken, TaskCancelled, run_to_completion
from segstudio.windowing import apply_window
from tests.io.test_dicom import pydicom_file

GREY = Preprocessing("grey", (0.5,), (0.25,))
IDENTITY = Preprocessing("grey", (0.0,), (1.0,))
#: a checkpoint written before the normalisation was recorded
LEGACY = Preprocessing("grey", (0.0,), (1.0,), normalization="dtype")


@pytest.fixture(scope="module")
def ct_volume():
    """Three slices of real CT (HU, int16): CT_small and two shifted copies."""
    ct = read_series(pydicom_file("CT_small.dcm")).array[0]
    return np.stack([ct, ct + 50, ct - 80]).astype(np.int16)


def _tiny_unet_predictor(tile_size=128):
    torch.manual_seed(0)
    model = get_model("unet", num_classes=2, in_channels=1, base_width=4, depth=2, padding="same")
    return Predictor(model, preprocessing=GREY, device="cpu", precision="fp32", tile_size=tile_size)


class MeanLogit(nn.Module):
    """Class 0's logit is the mean of the input, class 1's is 0: the output reveals the input."""

    def forward(self, x):
        mean = x.mean(dim=(1, 2, 3), keepdim=True).expand(-1, 1, x.shape[2], x.shape[3])
        return torch.cat([mean, torch.zeros_like(mean)], dim=1)


def test_every_slice_is_predicted_with_one_progress_each(ct_volume):
    predictor = _tiny_unet_predictor()
    progress = []
    result = run_to_completion(predict_volume_steps(predictor, ct_volume), progress.append)
    assert result.probabilities.shape == (2, 3, 128, 128) and result.probabilities.dtype == np.float16
    assert result.labels.shape == (3, 128, 128) and set(np.unique(result.labels)) <= {0, 1}
    assert [(p.done, p.total, p.message, p.stage) for p in progress] == [
        (1, 3, "slice 1/3", "predict"), (2, 3, "slice 2/3", "predict"), (3, 3, "slice 3/3", "predict"),
    ]
    np.testing.assert_allclose(result.probabilities.astype(np.float32).sum(axis=0), 1.0, atol=2e-3)
    # each slice is what the 2-D predictor gives for that slice, mapped by the whole volume's statistics
    alone = predictor.predict(MappedImage(ct_volume[1], volume_intensity(ct_volume, GREY)))
    np.testing.assert_array_equal(result.probabilities[:, 1], alone.probabilities)


def test_only_the_requested_slices(ct_volume):
    progress = []
    # 64 px tiles: nine tiles on the slice, still one Progress (per slice, not per tile)
    result = run_to_completion(predict_volume_steps(_tiny_unet_predictor(64), ct_volume, slices=[2]),
                               progress.append)
    assert [(p.done, p.total, p.message) for p in progress] == [(1, 1, "slice 3/3")]
    assert (result.labels[:2] == 255).all() and (result.labels[2] != 255).all()
    assert not result.probabilities[:, :2].any()
    with pytest.raises(InvalidArgumentError, match="slice 3 is out of range"):
        run_to_completion(predict_volume_steps(_tiny_unet_predictor(), ct_volume, slices=[3]))


def test_cancel_after_the_first_slice(ct_volume):
    token = CancelToken()
    task = predict_volume_steps(_tiny_unet_predictor(), ct_volume, cancel=token)
    first = next(task)
    assert first.done == 1
    token.cancel()
    with pytest.raises(TaskCancelled):
        next(task)


def _spying_predictor(monkeypatch, preprocessing=IDENTITY, **options):
    """A mean-logit predictor that records every image the model is given."""
    predictor = Predictor(MeanLogit(), preprocessing=preprocessing, device="cpu", precision="fp32", **options)
    seen = []
    original = predictor.predict_steps

    def spy(image, *, cancel=None):
        seen.append(image)
        return original(image, cancel=cancel)

    monkeypatch.setattr(predictor, "predict_steps", spy)
    return predictor, seen


def _input_mean(result, k):
    """The mean of slice k's network input, read back from MeanLogit's answer."""
    p0 = float(result.probabilities[0, k, 0, 0])
    return np.log(p0 / (1 - p0))


def test_an_old_checkpoint_sees_the_slice_through_the_window_on_screen(ct_volume, monkeypatch):
    predictor, seen = _spying_predictor(monkeypatch, LEGACY)
    result = run_to_completion(predict_volume_steps(predictor, ct_volume, window=(40, 400)))
    for k in range(3):
        expected = apply_window(ct_volume[k], 40, 400)
        assert seen[k].intensity.clip  # the raw slice, carrying the window's map
        np.testing.assert_array_equal(seen[k], ct_volume[k])
        assert _input_mean(result, k) == pytest.approx(expected.mean() / 255.0, abs=5e-3)
    # raw HU scaled by the int16 maximum would have a mean near 0, not this
    assert apply_window(ct_volume[0], 40, 400).mean() / 255.0 > 0.2
    assert abs(ct_volume[0].mean() / 32767.0) < 0.05


def test_a_new_checkpoint_sees_the_volume_as_it_was_trained_whatever_the_display(ct_volume, monkeypatch):
    predictor, _ = _spying_predictor(monkeypatch)
    narrow = run_to_completion(predict_volume_steps(predictor, ct_volume, window=(40, 80)))
    wide = run_to_completion(predict_volume_steps(predictor, ct_volume, window=(400, 1800)))
    np.testing.assert_array_equal(narrow.probabilities, wide.probabilities)
    low, high = np.percentile(ct_volume, [1.0, 99.8])
    for k in range(3):
        assert _input_mean(narrow, k) == pytest.approx(((ct_volume[k] - low) / (high - low)).mean(), abs=5e-3)
    # a window recorded in the checkpoint is what the model sees, whatever the display
    fixed = Predictor(MeanLogit(), preprocessing=with_normalization(IDENTITY, "window", input_window=(40, 400)),
                      device="cpu", precision="fp32")
    windowed = run_to_completion(predict_volume_steps(fixed, ct_volume, window=(400, 1800)))
    assert _input_mean(windowed, 0) == pytest.approx(apply_window(ct_volume[0], 40, 400).mean() / 255, abs=5e-3)


def test_without_a_window_the_whole_volume_sets_the_range(ct_volume):
    normalise = slice_normaliser(ct_volume)
    whole = to_uint8_display(ct_volume)
    for k in range(3):
        np.testing.assert_array_equal(normalise(k), whole[k])
    # slice 1 is brighter than slice 0 everywhere it is not clipped: one range for all
    assert normalise(1).astype(int).mean() > normalise(0).astype(int).mean()
    lo, hi = volume_display_range(ct_volume)
    assert lo == pytest.approx(np.percentile(ct_volume, 0.5)) and hi == pytest.approx(np.percentile(ct_volume, 99.5))


def test_uint8_volumes_pass_and_bad_requests_are_refused():
    grey = np.arange(2 * 4 * 5, dtype=np.uint8).reshape(2, 4, 5)
    np.testing.assert_array_equal(slice_normaliser(grey)(1), grey[1])
    assert not slice_normaliser(np.full((2, 4, 5), 7.0))(0).any()  # constant volume: black
    with pytest.raises(InvalidArgumentError, match="colour"):
        slice_normaliser(np.zeros((2, 4, 5, 3), np.uint8), window=(40, 400))
    with pytest.raises(InvalidArgumentError, match="width must be at least 1"):
        slice_normaliser(grey, window=(40, 0))
    with pytest.raises(InvalidArgumentError, match="Z x H x W"):
        slice_normaliser(np.zeros((4, 5), np.uint8))


def test_slices_not_run_are_unlabelled_in_a_uint16_map(ct_volume):
    # More than 255 channels: the predictor gives uint16 labels, where 255 is a class and 65535 unlabelled.
    torch.manual_seed(0)
    model = get_model("unet", num_classes=300, in_channels=1, base_width=4, depth=2, padding="same")
    predictor = Predictor(model, preprocessing=GREY, device="cpu", precision="fp32", tile_size=128)
    result = run_to_completion(predict_volume_steps(predictor, ct_volume, slices=[1]))
    assert result.labels.dtype == np.uint16 and result.labels.shape == (3, 128, 128)
    assert (result.labels[[0, 2]] == 65535).all()
    alone = predictor.predict(MappedImage(ct_volume[1], volume_intensity(ct_volume, GREY)))
    np.testing.assert_array_equal(result.labels[1], alone.labels)
    assert result.labels[1].max() < 300


# ---------------------------------------------------------------- MONOCHROME1


@pytest.fixture(scope="module")
def cr_volume():
    """A real computed radiograph (MONOCHROME1, 16 x 16, float32 after the rescale)."""
    import warnings

    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", "Expected explicit VR", UserWarning)  # the file's header is wrong
        volume = read_series(pydicom_file("77654033/CR1/6154"))
    assert volume.invert
    return volume


def test_the_model_sees_a_monochrome1_slice_inverted_as_it_is_shown(cr_volume, monkeypatch):
    values = cr_volume.array
    lo, hi = float(values.min()), float(values.max())
    full = (lo + (hi - lo + 1) / 2, hi - lo + 1)  # the stored range, black to white
    shown = apply_window(values[0], *full, invert=True)  # what the studio displays
    # an old checkpoint: through the window on screen, inverted
    predictor, seen = _spying_predictor(monkeypatch, LEGACY, tile_size=64)
    result = run_to_completion(predict_volume_steps(predictor, values, window=full, invert=cr_volume.invert))
    assert seen[0].intensity.invert
    assert _input_mean(result, 0) == pytest.approx(shown.mean() / 255.0, abs=5e-3)
    # a new one: through its own rule on the whole volume, inverted the same way
    predictor, seen = _spying_predictor(monkeypatch, IDENTITY, tile_size=64)
    result = run_to_completion(predict_volume_steps(predictor, values, window=full, invert=cr_volume.invert))
    mapped = volume_intensity(values, IDENTITY).apply(values[0])
    assert _input_mean(result, 0) == pytest.approx(1.0 - mapped.mean(), abs=5e-3)
    assert float(values.min()) == pytest.approx(1994 * 0.684 + 200)  # the volume itself is untouched


def test_invert_applies_without_a_window_too(cr_volume):
    plain = slice_normaliser(cr_volume.array)(0)
    np.testing.assert_array_equal(slice_normaliser(cr_volume.array, invert=True)(0), 255 - plain)
    grey = np.arange(2 * 4 * 5, dtype=np.uint8).reshape(2, 4, 5)
    np.testing.assert_array_equal(slice_normaliser(grey, invert=True)(1), 255 - grey[1])
    assert (slice_normaliser(np.full((2, 4, 5), 7.0), invert=True)(0) == 255).all()
    # a MONOCHROME2 volume is unchanged by default
    np.testing.assert_array_equal(slice_normaliser(cr_volume.array, (1600, 2800))(0),
                                  apply_window(cr_volume.array[0], 1600, 2800))
    with pytest.raises(InvalidArgumentError, match="grey volumes"):
        slice_normaliser(np.zeros((2, 4, 5, 3), np.uint8), invert=True)
