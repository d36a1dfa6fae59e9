"""Image arrays to network input: intensity maps, channels, normalisation."""

import numpy as np
import pytest
import torch

from segstudio.errors import InvalidArgumentError
from segstudio.models.checkpoint import Preprocessing
from segstudio.preprocess import (
    LUMA_WEIGHTS,
    IntensityMap,
    MappedImage,
    fit_intensity,
    image_to_tensor,
    in_channels_of,
    normalize,
    robust_range,
    to_unit_range,
    volume_intensity,
    with_normalization,
)
from segstudio.windowing import apply_window, window_bounds

RGB_IDENTITY = Preprocessing("RGB", (0.0, 0.0, 0.0), (1.0, 1.0, 1.0))
GREY_IDENTITY = Preprocessing("grey", (0.0,), (1.0,))
#: what checkpoints written before the normalisation was recorded do
GREY_DTYPE = Preprocessing("grey", (0.0,), (1.0,), normalization="dtype")


@pytest.mark.parametrize(
    ("dtype", "maximum"),
    [(np.uint8, 255), (np.uint16, 65535), (np.int16, 32767), (np.int32, 2**31 - 1)],
)
def test_dtype_normalisation_divides_integers_by_their_type_maximum(dtype, maximum):
    image = np.array([[0, 1], [maximum // 2, maximum]], dtype=dtype)
    tensor = image_to_tensor(image, GREY_DTYPE)
    assert tensor.dtype == torch.float32 and tensor.shape == (1, 2, 2)
    expected = image.astype(np.float64) / maximum
    np.testing.assert_allclose(tensor[0].numpy(), expected, rtol=1e-6)


def test_dtype_normalisation_takes_float_images_as_they_are():
    image = np.array([[-0.5, 0.25], [1.0, 3.5]], dtype=np.float64)
    tensor = image_to_tensor(image, GREY_DTYPE)
    np.testing.assert_allclose(tensor[0].numpy(), image, rtol=1e-6)


def test_grey_is_replicated_for_a_three_channel_model():
    image = np.arange(12, dtype=np.uint8).reshape(3, 4)
    tensor = image_to_tensor(image, RGB_IDENTITY)
    assert tensor.shape == (3, 3, 4)
    for channel in range(3):
        np.testing.assert_allclose(tensor[channel].numpy(), image / 255.0, rtol=1e-6)


def test_rgb_becomes_luminance_for_a_one_channel_model():
    image = np.zeros((2, 2, 3), dtype=np.uint8)
    image[0, 0] = (255, 0, 0)
    image[0, 1] = (0, 255, 0)
    image[1, 0] = (0, 0, 255)
    image[1, 1] = (100, 150, 200)
    tensor = image_to_tensor(image, GREY_IDENTITY)
    assert tensor.shape == (1, 2, 2)
    expected = np.array(
        [[LUMA_WEIGHTS[0], LUMA_WEIGHTS[1]], [LUMA_WEIGHTS[2], (0.299 * 100 + 0.587 * 150 + 0.114 * 200) / 255]]
    )
    np.testing.assert_allclose(tensor[0].numpy(), expected, rtol=1e-5)


def test_rgb_channel_order_and_layout():
    image = np.zeros((2, 3, 3), dtype=np.uint8)
    image[..., 0], image[..., 1], image[..., 2] = 10, 20, 30
    tensor = image_to_tensor(image, RGB_IDENTITY)
    assert tensor.shape == (3, 2, 3) and tensor.is_contiguous()
    assert tensor[:, 0, 0].mul(255).round().tolist() == [10, 20, 30]
    bgr = image_to_tensor(image, Preprocessing("BGR", (0.0,) * 3, (1.0,) * 3))
    assert bgr[:, 1, 2].mul(255).round().tolist() == [30, 20, 10]


def test_alpha_is_dropped_and_single_channel_axis_accepted():
    rgba = np.zeros((2, 2, 4), dtype=np.uint8)
    rgba[..., :3] = 51
    rgba[..., 3] = 255
    tensor = image_to_tensor(rgba, RGB_IDENTITY)
    assert tensor.shape == (3, 2, 2)
    np.testing.assert_allclose(tensor.numpy(), 0.2, rtol=1e-6)
    single = np.full((2, 2, 1), 255, dtype=np.uint8)
    assert image_to_tensor(single, GREY_IDENTITY).shape == (1, 2, 2)


def test_normalisation_uses_mean_and_std_per_channel():
    image = np.full((2, 2, 3), 255, dtype=np.uint8)
    preprocessing = Preprocessing("RGB", (0.5, 0.25, 0.0), (0.5, 0.25, 2.0))
    tensor = image_to_tensor(image, preprocessing)
    assert tensor[:, 0, 0].tolist() == pytest.approx([1.0, 3.0, 0.5])


def test_normalize_accepts_batches():
    batch = torch.ones(2, 3, 4, 5)
    out = normalize(batch, Preprocessing("RGB", (1.0, 0.0, 0.5), (1.0, 2.0, 0.5)))
    assert out.shape == batch.shape
    assert out[1, :, 3, 4].tolist() == pytest.approx([0.0, 0.5, 1.0])


@pytest.mark.parametrize("shape", [(4,), (2, 2, 2), (2, 2, 5), (1, 2, 2, 3), (0, 3)])
def test_other_shapes_are_refused(shape):
    with pytest.raises(InvalidArgumentError):
        image_to_tensor(np.zeros(shape, dtype=np.uint8), RGB_IDENTITY)


def test_bad_preprocessing_is_refused():
    with pytest.raises(InvalidArgumentError, match="std"):
        image_to_tensor(np.zeros((2, 2), np.uint8), Preprocessing("grey", (0.0,), (0.0,)))
    with pytest.raises(InvalidArgumentError):
        in_channels_of(Preprocessing("RGB", (0.0, 0.0), (1.0, 1.0)))
    with pytest.raises(InvalidArgumentError):
        in_channels_of(Preprocessing("RGB", (0.0, 0.0, 0.0), (1.0,)))
    with pytest.raises(InvalidArgumentError):
        to_unit_range(np.zeros((2, 2), np.uint8), 2)
    with pytest.raises(InvalidArgumentError):
        image_to_tensor(np.zeros((2, 2), dtype=np.complex64), GREY_IDENTITY)


def test_in_channels_of():
    assert in_channels_of(RGB_IDENTITY) == 3
    assert in_channels_of(GREY_IDENTITY) == 1


# -- normalisation rules (recorded in the checkpoint) -------------------------------------------------

def test_auto_divides_8_bit_by_255_and_stretches_16_bit_between_its_percentiles():
    eight = np.array([[0, 51], [204, 255]], np.uint8)
    np.testing.assert_allclose(image_to_tensor(eight, GREY_IDENTITY)[0].numpy(), eight / 255.0, rtol=1e-6)
    # a 16-bit fluorescence image whose values stay in 0..300: divided by 65535 it is black
    rng = np.random.default_rng(0)
    sixteen = rng.integers(0, 301, (64, 64)).astype(np.uint16)
    mapped = image_to_tensor(sixteen, GREY_IDENTITY)[0].numpy()
    low, high = np.percentile(sixteen, [1.0, 99.8])
    np.testing.assert_allclose(mapped, (sixteen - low) / (high - low), rtol=1e-5, atol=1e-6)
    assert mapped.std() > 0.25  # spread over the whole range, not a near-constant
    legacy = image_to_tensor(sixteen, GREY_DTYPE)[0].numpy()
    assert legacy.max() < 0.005
    # floats and 32-bit integers too
    floats = rng.normal(1000.0, 50.0, (32, 32)).astype(np.float32)
    assert 0.2 < image_to_tensor(floats, GREY_IDENTITY)[0].numpy().std() < 0.5
    assert fit_intensity(sixteen.astype(np.int32), GREY_IDENTITY).high == pytest.approx(high)


def test_percentile_range_window_and_their_checks():
    image = np.arange(100, dtype=np.uint8).reshape(10, 10)
    percentile = Preprocessing("grey", (0.0,), (1.0,), normalization="percentile", percentiles=(0.0, 100.0))
    np.testing.assert_allclose(image_to_tensor(image, percentile)[0].numpy(), image / 99.0, rtol=1e-6)
    fixed = with_normalization(GREY_IDENTITY, "range", value_range=(10.0, 60.0))
    out = image_to_tensor(image, fixed)[0].numpy()
    assert out.min() == 0.0 and out.max() == 1.0  # clipped
    assert out[2, 0] == pytest.approx((20 - 10) / 50)
    # the CT window maps as DICOM's LINEAR function (and the display) does
    ct = np.array([[-1000, -160], [40, 2000]], np.int16)
    windowed = with_normalization(GREY_IDENTITY, "window", input_window=(40.0, 400.0))
    np.testing.assert_allclose(image_to_tensor(ct, windowed)[0].numpy() * 255,
                               apply_window(ct, 40.0, 400.0).astype(np.float64), atol=0.51)
    # a window carried over from a windowed model is dropped by "range"; asked for together, refused
    assert with_normalization(windowed, "range", value_range=(0.0, 100.0)).input_window is None
    for mode, values in (("range", {}), ("window", {}), ("nonsense", {}), ("percentile", {"percentiles": (5, 2)}),
                         ("range", {"value_range": (0.0, 1.0), "input_window": (40.0, 400.0)})):
        with pytest.raises(InvalidArgumentError):
            with_normalization(GREY_IDENTITY, mode, **values)


def test_a_constant_or_non_finite_image_maps_without_dividing_by_zero():
    constant = np.full((8, 8), 1234, np.uint16)
    assert (image_to_tensor(constant, GREY_IDENTITY)[0].numpy() == 0.0).all()
    floats = np.array([[np.nan, 1.0], [np.inf, 3.0]], np.float32)
    out = image_to_tensor(floats, GREY_IDENTITY)[0].numpy()
    assert np.isfinite(out).all() and out[0, 0] == out[1, 0] == pytest.approx(0.0, abs=1e-6)


def test_tiles_of_an_image_map_as_the_whole_image_does():
    rng = np.random.default_rng(1)
    image = rng.integers(100, 400, (64, 96)).astype(np.uint16)
    image[:, 48:] += 2000  # the right half is much brighter
    whole = image_to_tensor(image, GREY_IDENTITY)
    intensity = fit_intensity(image, GREY_IDENTITY)
    left = image_to_tensor(image[:, :48], GREY_IDENTITY, intensity=intensity)
    torch.testing.assert_close(left, whole[:, :, :48])
    # on its own, the dark half would be stretched to the full range: a different input
    assert not torch.allclose(image_to_tensor(image[:, :48], GREY_IDENTITY), whole[:, :, :48])
    # a MappedImage carries its map into tiles and crops
    mapped = MappedImage(image, intensity)
    torch.testing.assert_close(image_to_tensor(mapped[:, :48], GREY_IDENTITY), whole[:, :, :48])
    assert mapped.astype(np.float32)[:, :48].intensity == intensity
    # arithmetic makes other values, which the map was not fitted on: it is dropped
    assert not isinstance(mapped * 2, MappedImage) and not isinstance(np.sqrt(mapped), MappedImage)
    assert fit_intensity(mapped + 1000, GREY_IDENTITY) != intensity


def test_a_volume_is_mapped_by_its_own_statistics_never_by_the_display():
    rng = np.random.default_rng(2)
    volume = rng.normal(40, 30, (4, 16, 16)).astype(np.int16)
    volume[3] += 800  # one bright slice: every slice shares the volume's map
    auto = Preprocessing("grey", (0.0,), (1.0,))
    shown = volume_intensity(volume, auto, view_window=(40.0, 80.0))
    assert shown == volume_intensity(volume, auto, view_window=(400.0, 1800.0))
    assert (shown.low, shown.high) == pytest.approx(robust_range(volume, 1.0, 99.8))
    # a recorded input window wins; an old checkpoint follows the view as it always did
    fixed = with_normalization(auto, "window", input_window=(40.0, 400.0))
    assert volume_intensity(volume, fixed, view_window=(40.0, 80.0)).clip
    old = Preprocessing("grey", (0.0,), (1.0,), normalization="dtype")
    lower, upper = window_bounds(40.0, 80.0)
    assert volume_intensity(volume, old, view_window=(40.0, 80.0)) == IntensityMap(lower, upper, clip=True)
    inverted = volume_intensity(volume, auto, invert=True)
    assert inverted.apply(volume[:1]) == pytest.approx(1.0 - shown.apply(volume[:1]))
