"""Training crops are drawn by labelled pixels, not by files."""

import numpy as np
import pytest
import torch

from segstudio.errors import DataError
from segstudio.models.checkpoint import Preprocessing
from segstudio.training.augment import build_augmentation
from segstudio.training.data import SegmentationDataset, crops_per_epoch_for
from segstudio.training.losses import IGNORE_INDEX
from segstudio.training.sampling import CropChoice, LabelledPixelSampler, place_window

GREY = Preprocessing("grey", (0.5,), (0.25,))


def sparse_image(size=1024, seed=0):
    """A large image with a few painted regions: 3 of 'cell' (class 1) in a ring of background."""
    rng = np.random.default_rng(seed)
    image = rng.integers(0, 300, (size, size)).astype(np.uint16)
    labels = np.full((size, size), 255, np.uint8)
    for cy, cx in ((100, 150), (700, 300), (500, 900)):
        labels[cy - 30 : cy + 30, cx - 30 : cx + 30] = 0
        labels[cy - 10 : cy + 10, cx - 10 : cx + 10] = 1
    return image, labels


def test_every_crop_of_a_sparsely_corrected_image_holds_labels_and_the_rare_class_is_seen():
    image, labels = sparse_image()
    assert (labels != 255).mean() < 0.011  # about 1 % of the image is labelled
    dataset = SegmentationDataset([(image, labels)], GREY, crop_size=128, crops_per_epoch=300)
    with_labels = with_rare = 0
    for index in range(len(dataset)):
        target = dataset[index]["target"]
        with_labels += int((target != IGNORE_INDEX).any())
        with_rare += int((target == 1).any())
    # a random 128 x 128 crop of this image would hold a label 13 % of the time, the rare class 8 %
    assert with_labels == 300
    # one crop in three is centred on a pixel of a randomly chosen class: class 1 in half of those
    assert with_rare >= 300 // 6


def test_images_are_drawn_in_proportion_to_their_labelled_area():
    small = np.full((64, 64), 255, np.uint8)
    small[:10, :10] = 0  # 100 labelled pixels
    large = np.full((64, 64), 255, np.uint8)
    large[:30, :30] = 1  # 900
    sampler = LabelledPixelSampler([small, large], class_share=0.0)
    rng = np.random.default_rng(0)
    draws = [sampler.draw(rng) for _ in range(2000)]
    share = np.mean([d.sample == 1 for d in draws])
    assert share == pytest.approx(0.9, abs=0.03)
    assert all(labels[d.anchor] != 255 for d in draws for labels in [(small, large)[d.sample]])
    # class-centred draws pick each class equally often, whatever its area
    balanced = LabelledPixelSampler([small, large], class_share=1.0)
    classes = [([small, large][d.sample])[d.anchor] for d in (balanced.draw(rng) for _ in range(2000))]
    assert np.mean(classes) == pytest.approx(0.5, abs=0.04)
    assert balanced.class_pixels() == {0: 100, 1: 900}


def test_windows_contain_their_anchor_and_stay_inside_a_large_image():
    rng = np.random.default_rng(3)
    for centred in (False, True):
        for _ in range(200):
            anchor = (int(rng.integers(0, 300)), int(rng.integers(0, 500)))
            top, left = place_window(CropChoice(0, anchor, 1, centred), (300, 500), 64, rng)
            assert 0 <= top <= 300 - 64 and 0 <= left <= 500 - 64
            assert top <= anchor[0] < top + 64 and left <= anchor[1] < left + 64
    # centred where the image allows
    assert place_window(CropChoice(0, (150, 250), 1, True), (300, 500), 64, rng) == (118, 218)


def test_an_image_smaller_than_the_crop_is_padded_with_unlabelled_pixels():
    image = np.arange(20 * 30, dtype=np.uint8).reshape(20, 30)
    labels = np.ones((20, 30), np.uint8)
    dataset = SegmentationDataset([(image, labels)], GREY, crop_size=64, crops_per_epoch=5)
    for index in range(5):
        target = dataset[index]["target"]
        assert target.shape == (64, 64)
        assert int((target == 1).sum()) == 600 and int((target == IGNORE_INDEX).sum()) == 64 * 64 - 600
        # the crop says where the image is, so that padding takes part in no pairwise term
        inside = dataset[index]["inside"]
        assert inside.dtype == torch.bool and torch.equal(inside, target == 1)


def test_crops_are_a_function_of_seed_epoch_and_index():
    image, labels = sparse_image(256, seed=1)
    dataset = SegmentationDataset([(image, labels)], GREY, crop_size=64, crops_per_epoch=4,
                                  scale=(0.75, 1.25), augment=build_augmentation(None), seed=7)
    first = dataset[2]
    torch.manual_seed(123)  # the caller's generator does not matter, flips and contrast included
    assert torch.equal(dataset[2]["image"], first["image"])
    assert torch.equal(dataset[2]["target"], first["target"])
    dataset.set_epoch(1)
    assert not torch.equal(dataset[2]["image"], first["image"])
    other_seed = SegmentationDataset([(image, labels)], GREY, crop_size=64, crops_per_epoch=4, seed=8)
    assert not torch.equal(other_seed[2]["target"], first["target"])


def test_an_epoch_covers_the_labelled_pixels_once_and_nothing_labelled_is_an_error():
    assert crops_per_epoch_for(512 * 512, 256) == 4
    assert crops_per_epoch_for(10, 256) == 1
    image, labels = sparse_image(256)
    assert len(SegmentationDataset([(image, labels)], GREY, crop_size=64)) == crops_per_epoch_for(
        int((labels != 255).sum()), 64)
    with pytest.raises(DataError, match="no training image has a labelled pixel"):
        SegmentationDataset([(image, np.full_like(labels, 255))], GREY, crop_size=64)
