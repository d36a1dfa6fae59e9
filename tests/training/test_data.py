"""Data folders, loading with bad files, the split, the Dataset."""

import logging

import cv2
import numpy as np
import pytest
import torch

from segstudio.errors import DataError, InvalidArgumentError, UnreadableInputError
from segstudio.io.masks import write_indexed_png
from segstudio.models.checkpoint import Preprocessing
from segstudio.preprocess import image_to_tensor
from segstudio.synthetic import CLASS_COLORS, generate_sample
from segstudio.training.data import (
    SegmentationDataset,
    check_labels,
    find_pairs,
    load_pair,
    load_samples,
    split_train_val,
)
from segstudio.training.losses import IGNORE_INDEX


def _write(folder, stem, seed, size=(40, 48), mask_size=None):
    image, mask = generate_sample(seed, *size)
    (folder / "images").mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(folder / "images" / f"{stem}.png"), cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
    if mask_size is not None:
        mask = cv2.resize(mask, mask_size[::-1], interpolation=cv2.INTER_NEAREST)
    write_indexed_png(folder / "masks" / f"{stem}.png", mask, CLASS_COLORS)
    return image, mask


def test_find_pairs_skips_images_without_masks_with_one_warning(tmp_path, caplog):
    for i, stem in enumerate(["b", "a", "c"]):
        _write(tmp_path, stem, i)
    (tmp_path / "masks" / "c.png").unlink()
    (tmp_path / "images" / "notes.txt").write_text("not an image")
    with caplog.at_level(logging.WARNING, logger="segstudio.training.data"):
        pairs = find_pairs(tmp_path)
    assert [(p.name, m.name) for p, m in pairs] == [("a.png", "a.png"), ("b.png", "b.png")]
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "1 image(s)" in warnings[0] and "c.png" in warnings[0]


@pytest.mark.parametrize("missing", ["images", "masks"])
def test_missing_folder_is_named(tmp_path, missing):
    _write(tmp_path, "a", 0)
    for file in (tmp_path / missing).iterdir():
        file.unlink()
    (tmp_path / missing).rmdir()
    with pytest.raises(DataError) as info:
        find_pairs(tmp_path)
    assert info.value.path == str(tmp_path / missing)


def test_no_pairs_and_no_folder_are_errors(tmp_path):
    with pytest.raises(DataError, match="no such data folder"):
        find_pairs(tmp_path / "nowhere")
    _write(tmp_path, "a", 0)
    (tmp_path / "masks" / "a.png").rename(tmp_path / "masks" / "other.png")
    with pytest.raises(DataError, match="no image in this folder has a mask") as info:
        find_pairs(tmp_path)
    assert info.value.path == str(tmp_path / "images")


def test_bad_files_are_skipped_and_named(tmp_path, caplog):
    _write(tmp_path, "good", 0)
    _write(tmp_path, "broken", 1)
    _write(tmp_path, "mismatch", 2, mask_size=(20, 24))
    (tmp_path / "images" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\nthis is not a png")
    pairs = find_pairs(tmp_path)
    with caplog.at_level(logging.WARNING, logger="segstudio.training.data"):
        loaded = load_samples(pairs)
    assert [p.name for p in loaded.paths] == ["good.png"]
    assert len(loaded.samples) == 1 and loaded.samples[0][0].shape == (40, 48, 3)
    assert len(loaded.skipped) == 2
    by_type = {type(e): e for e in loaded.skipped}
    assert by_type[UnreadableInputError].path.endswith("broken.png")
    mismatch = by_type[DataError]
    assert mismatch.path.endswith("images/mismatch.png") and "masks/mismatch.png" in mismatch.problem
    text = caplog.text
    assert "broken.png" in text and "mismatch.png" in text and "2 of 3" in text
    with pytest.raises(UnreadableInputError):
        load_samples(pairs, skip_bad=False)


def test_load_pair_and_all_bad(tmp_path):
    image, mask = _write(tmp_path, "a", 0)
    read_image, read_mask = load_pair(tmp_path / "images" / "a.png", tmp_path / "masks" / "a.png")
    np.testing.assert_array_equal(read_image, image)
    np.testing.assert_array_equal(read_mask, mask)
    (tmp_path / "images" / "a.png").write_bytes(b"")
    with pytest.raises(DataError, match="none of the 1"):
        load_samples(find_pairs(tmp_path))


def test_split_is_deterministic_disjoint_and_complete():
    items = list(range(20))
    train, val = split_train_val(items, 0.25, seed=3)
    assert len(val) == 5 and len(train) == 15
    assert sorted(train + val) == items and not set(train) & set(val)
    assert train == sorted(train) and val == sorted(val)
    assert split_train_val(items, 0.25, seed=3) == (train, val)
    assert split_train_val(items, 0.25, seed=4) != (train, val)
    assert split_train_val(["only"], 0.5, 0) == (["only"], [])
    assert split_train_val(["a", "b"], 0.1, 0)[1] != []  # at least one for validation
    assert split_train_val(items, 0.0, 0) == (items, [])
    with pytest.raises(InvalidArgumentError):
        split_train_val(items, 1.0, 0)


def test_check_labels_names_the_mask():
    labels = np.zeros((4, 4), np.uint8)
    labels[0, 0] = 5
    labels[1, 1] = 255
    check_labels([(np.zeros((4, 4)), labels)], 6)
    with pytest.raises(DataError, match=r"\[5\]") as info:
        check_labels([(np.zeros((4, 4)), labels)], 3, ["masks/x.png"])
    assert info.value.path == "masks/x.png"


def test_dataset_items_without_augmentation_are_the_preprocessed_sample():
    image, mask = generate_sample(0, 40, 40)
    mask = mask.copy()
    mask[:3] = 255
    preprocessing = Preprocessing("RGB", (0.5, 0.5, 0.5), (0.25, 0.25, 0.25))
    weights = np.random.default_rng(0).random((40, 40)).astype(np.float32)
    # a crop of the image's size without zoom is the whole image
    dataset = SegmentationDataset([(image, mask)], preprocessing, crop_size=40, weight_maps=[weights])
    assert len(dataset) == 1  # 1,480 labelled pixels: one 40 x 40 crop covers them
    item = dataset[0]
    torch.testing.assert_close(item["image"], image_to_tensor(image, preprocessing))
    assert item["target"].dtype == torch.int64 and item["target"].shape == (40, 40)
    expected = torch.from_numpy(mask).long()
    expected[:3] = IGNORE_INDEX  # the label map's 255 becomes the target's ignore value
    assert torch.equal(item["target"], expected)
    assert torch.equal(item["weights"], torch.from_numpy(weights))
    assert type(item["image"]) is torch.Tensor


def test_dataset_rejects_mismatched_samples():
    with pytest.raises(DataError):
        SegmentationDataset([(np.zeros((4, 4), np.uint8), np.zeros((4, 5), np.uint8))], Preprocessing())
    with pytest.raises(InvalidArgumentError):
        SegmentationDataset([(np.zeros((4, 4), np.uint8), np.zeros((4, 4), np.uint8))], Preprocessing(),
                            weight_maps=[])
