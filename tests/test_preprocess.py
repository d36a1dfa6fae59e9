"""Image arrays to network input: scaling, channels, normalisation."""

import numpy as np
import pytest
import torch

from segstudio.errors import InvalidArgumentError
from segstudio.models.checkpoint import Preprocessing
from segstudio.preprocess import LUMA_WEIGHTS, image_to_tensor, in_channels_of, normalize, to_unit_range

RGB_IDENTITY = Preprocessing("RGB", (0.0, 0.0, 0.0), (1.0, 1.0, 1.0))
GREY_IDENTITY = Preprocessing("grey", (0.0,), (1.0,))


@pytest.mark.parametrize(
    ("dtype", "maximum"),
    [(np.uint8, 255), (np.uint16, 65535), (np.int16, 32767), (np.int32, 2**31 - 1)],
)
def test_integer_images_are_divided_by_their_type_maximum(dtype, maximum):
    image = np.array([[0, 1], [maximum // 2, maximum]], dtype=dtype)
    tensor = image_to_tensor(image, GREY_IDENTITY)
    assert tensor.dtype == torch.float32 and tensor.shape == (1, 2, 2)
    expected = image.astype(np.float64) / maximum
    np.testing.assert_allclose(tensor[0].numpy(), expected, rtol=1e-6)


def test_float_images_are_taken_as_they_are():
    image = np.array([[-0.5, 0.25], [1.0, 3.5]], dtype=np.float64)
    tensor = image_to_tensor(image, GREY_IDENTITY)
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
