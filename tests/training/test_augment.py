"""Augmentation keeps image, mask and weight map aligned and masks exact."""

import numpy as np
import pytest
import torch
from torchvision import tv_tensors

from segstudio.errors import InvalidArgumentError
from segstudio.training.augment import RandomBrightnessContrast, RandomRot90, RandomScaleCrop, build_augmentation

# pixel value of the image for each class; unlabelled pixels get their own code
CODES = {0: 0.1, 1: 0.45, 2: 0.8, 255: 0.3}


def _coded_sample(height, width, seed=0, block=8):
    """Label blocks (and an unlabelled patch) with an image whose value encodes the label."""
    rng = np.random.default_rng(seed)
    blocks = rng.integers(0, 3, size=(-(-height // block), -(-width // block)))
    labels = np.kron(blocks, np.ones((block, block), dtype=np.int64))[:height, :width].astype(np.uint8)
    labels[: block * 2, : block * 2] = 255
    code = np.vectorize(CODES.get)(labels).astype(np.float32)
    # a horizontal ramp in channel 1 makes flips and rotations visible in the image alone
    ramp = np.broadcast_to(np.linspace(0, 1, width, dtype=np.float32), (height, width))
    image = np.stack([code, ramp, code])
    weights = labels.astype(np.float32) + 1.0  # a float map that must move with the mask
    weights[labels == 255] = 7.0
    return {
        "image": tv_tensors.Image(torch.from_numpy(image)),
        "mask": tv_tensors.Mask(torch.from_numpy(labels)),
        "weights": tv_tensors.Mask(torch.from_numpy(weights)),
    }


def _interior(mask, radius):
    """Labelled pixels whose (2r+1)^2 neighbourhood holds one label only."""
    m = mask.numpy().astype(np.int64)
    padded = np.pad(m, radius, mode="constant", constant_values=-1)
    same = np.ones_like(m, dtype=bool)
    h, w = m.shape
    for dy in range(-radius, radius + 1):
        for dx in range(-radius, radius + 1):
            same &= padded[radius + dy : radius + dy + h, radius + dx : radius + dx + w] == m
    return same & (m != 255)


@pytest.mark.parametrize(("height", "width", "crop"), [(64, 64, 48), (40, 72, 56), (100, 60, 32)])
def test_geometric_transforms_without_zoom_keep_every_pixel_aligned(height, width, crop):
    transform = build_augmentation(crop, scale=None, brightness=0, contrast=0)
    for seed in range(12):
        torch.manual_seed(seed)
        sample = _coded_sample(height, width, seed)
        out = transform(sample)
        image, mask, weights = out["image"], out["mask"], out["weights"]
        assert image.shape == (3, crop, crop) and mask.shape == (crop, crop) == weights.shape
        assert mask.dtype == torch.uint8 and isinstance(mask, tv_tensors.Mask)
        labelled = mask != 255
        for label in (0, 1, 2):
            where = mask == label
            assert torch.all(image[0][where] == CODES[label])
            assert torch.all(weights[where] == label + 1.0)
        # pixels the crop took from outside the image: unlabelled, black, no weight
        outside = (image[0] == 0) & (mask == 255)
        assert torch.all(weights[outside] == 0)
        assert labelled.any()


def test_zoom_keeps_masks_exact_and_aligned_with_the_image():
    transform = build_augmentation(48, scale=(0.75, 1.25), brightness=0, contrast=0)
    for seed in range(20):
        torch.manual_seed(seed)
        sample = _coded_sample(80, 64, seed)
        out = transform(sample)
        mask, image, weights = out["mask"], out["image"], out["weights"]
        assert set(torch.unique(mask).tolist()) <= {0, 1, 2, 255}
        assert set(torch.unique(weights).tolist()) <= {0.0, 1.0, 2.0, 3.0, 7.0}
        interior = torch.from_numpy(_interior(mask, 2))
        assert interior.sum() > 100
        expected = torch.tensor([CODES.get(v, 0.0) for v in range(256)])[mask.long()]
        torch.testing.assert_close(image[0][interior], expected[interior], atol=1e-4, rtol=0)
        torch.testing.assert_close(weights[interior], mask[interior].float() + 1.0)
    # and the zoom really varies: windows of 48 / 1.25 .. 48 / 0.75 pixels are resized to 48
    zoom = RandomScaleCrop(48, (0.75, 1.25))
    windows = set()
    for seed in range(40):
        torch.manual_seed(seed)
        windows.add(zoom.make_params([_coded_sample(80, 64)["image"]])["window"])
    assert min(windows) >= 38 and max(windows) <= 64 and len(windows) > 8


def test_crop_larger_than_image_pads_with_unlabelled():
    torch.manual_seed(0)
    sample = _coded_sample(20, 30, 1)
    out = RandomScaleCrop(64, (1.0, 1.0))(sample)
    mask = out["mask"]
    assert mask.shape == (64, 64)
    assert (mask != 255).sum() + (sample["mask"] == 255).sum() == 20 * 30
    assert (mask == 255).sum() == 64 * 64 - (sample["mask"] != 255).sum()
    assert out["weights"][mask == 255].max() == 7.0  # the sample's own unlabelled patch
    assert (out["weights"] == 0).sum() == 64 * 64 - 20 * 30


def test_rot90_on_a_non_square_image_matches_numpy():
    sample = _coded_sample(10, 16, 2, block=3)
    seen = set()
    for seed in range(16):
        torch.manual_seed(seed)
        transform = RandomRot90()
        out = transform(sample)
        for k in range(4):
            if np.array_equal(out["mask"].numpy(), np.rot90(sample["mask"].numpy(), k)) and out["mask"].shape == np.rot90(sample["mask"].numpy(), k).shape:
                seen.add(k)
                np.testing.assert_array_equal(out["image"].numpy(), np.rot90(sample["image"].numpy(), k, axes=(1, 2)))
                np.testing.assert_array_equal(out["weights"].numpy(), np.rot90(sample["weights"].numpy(), k))
                break
        else:
            pytest.fail("the output is no rotation of the input")
    assert seen == {0, 1, 2, 3}


def test_jitter_changes_the_image_only():
    sample = _coded_sample(32, 32, 3)
    torch.manual_seed(0)
    out = RandomBrightnessContrast(0.3, 0.3)(sample)
    assert torch.equal(out["mask"], sample["mask"])
    assert torch.equal(out["weights"], sample["weights"])
    assert not torch.allclose(out["image"], sample["image"])
    # an affine change of the pixel values: the order of values is kept
    before, after = sample["image"][0].flatten(), out["image"][0].flatten()
    assert torch.equal(torch.argsort(before, stable=True), torch.argsort(after, stable=True))


def test_same_seed_same_augmentation():
    transform = build_augmentation(40)
    results = []
    for _ in range(2):
        torch.manual_seed(123)
        results.append(transform(_coded_sample(64, 64, 4)))
    assert torch.equal(results[0]["image"], results[1]["image"])
    assert torch.equal(results[0]["mask"], results[1]["mask"])


def test_bad_settings_are_refused():
    with pytest.raises(InvalidArgumentError):
        RandomScaleCrop(0)
    with pytest.raises(InvalidArgumentError):
        RandomScaleCrop(32, (1.5, 1.0))
    with pytest.raises(InvalidArgumentError):
        RandomBrightnessContrast(brightness=1.5)
