"""Training on uint16 label maps (projects with more than 254 classes).

In a uint16 map 65535 is unlabelled and 255 is an ordinary class; the
training target marks unlabelled pixels with IGNORE_INDEX whatever the map's
type, and uint8 maps (255 = unlabelled) keep working beside uint16 ones.
"""

import cv2
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from segstudio.errors import DataError
from segstudio.io.masks import default_palette, write_label_png
from segstudio.models import get_model
from segstudio.models.checkpoint import CheckpointMeta, Preprocessing
from segstudio.tasks import run_to_completion
from segstudio.training import TrainConfig, train_steps
from segstudio.training.augment import build_augmentation
from segstudio.training.data import SegmentationDataset, check_labels
from segstudio.training.evaluate import evaluate
from segstudio.training.losses import (
    IGNORE_INDEX,
    CrossEntropy,
    DiceCE,
    border_weight_map,
    class_balance_weights,
    labels_to_target,
)
from segstudio.training.project_data import SampleSource, load_source, load_sources

# image value (channel 0, 0..255) that encodes each label, so alignment can be read off the image
CODES = {0: 10, 255: 100, 299: 200, 65535: 50}
# plain preprocessing: the network input is the pixel value / 255
PLAIN = Preprocessing("RGB", (0.0, 0.0, 0.0), (1.0, 1.0, 1.0))


def _uint16_sample(height=20, width=30):
    """Vertical bands of classes 0, 255, 299 and an unlabelled (65535) band."""
    labels = np.zeros((height, width), np.uint16)
    band = width // 4
    labels[:, band : 2 * band] = 255
    labels[:, 2 * band : 3 * band] = 299
    labels[:, 3 * band :] = 65535
    code = np.vectorize(CODES.get)(labels).astype(np.uint8)
    ramp = np.broadcast_to(np.linspace(0, 255, width).astype(np.uint8), (height, width))
    image = np.stack([code, ramp, code], axis=-1)
    return image, labels


def _expected_target(labels):
    target = torch.from_numpy(labels.astype(np.int64))
    target[target == 65535] = IGNORE_INDEX
    return target


def test_dataset_item_from_a_uint16_map_keeps_classes_above_254_and_ignores_65535():
    image, labels = _uint16_sample(30, 30)
    item = SegmentationDataset([(image, labels)], PLAIN, crop_size=30)[0]  # the crop is the whole image
    target = item["target"]
    assert target.dtype == torch.int64 and target.shape == (30, 30)
    assert torch.equal(target, _expected_target(labels))
    assert set(torch.unique(target).tolist()) == {IGNORE_INDEX, 0, 255, 299}
    assert target[0, 7].item() == 255 and target[0, 14].item() == 299 and target[0, 29].item() == IGNORE_INDEX


def test_uint8_and_uint16_maps_mix_each_with_its_own_unlabelled_value():
    image, labels16 = _uint16_sample(30, 30)
    labels8 = np.zeros((30, 30), np.uint8)
    labels8[:5] = 255
    labels8[5:, 20:] = 2
    dataset = SegmentationDataset([(image, labels8), (image, labels16)], PLAIN, crop_size=30, crops_per_epoch=40)
    targets = {}
    for index in range(len(dataset)):  # crops come from both images; each is the whole of one
        target = dataset[index]["target"]
        targets[bool((target == 299).any())] = target
    target8, target16 = targets[False], targets[True]
    assert (target8[:5] == IGNORE_INDEX).all() and (target8[5:, 20:] == 2).all() and (target8[5:, :20] == 0).all()
    assert torch.equal(target16, _expected_target(labels16))
    # the same check accepts both, each map judged by its own type
    check_labels([(image, labels8), (image, labels16)], 300)
    # with 255 classes, class 255 of the uint16 map is out of range too: it is a class, not unlabelled
    with pytest.raises(DataError, match=r"b\.png: .*class\(es\) \[255, 299\].*0\.\.254; 65535 = unlabelled"):
        check_labels([(image, labels8), (image, labels16)], 255, ["a.png", "b.png"])
    labels8[0, 0] = 7
    with pytest.raises(DataError, match=r"class\(es\) \[7\].*0\.\.2; 255 = unlabelled"):
        check_labels([(image, labels8)], 3)


def test_crop_padding_of_a_uint16_map_is_ignored_and_classes_survive():
    image, labels = _uint16_sample()
    counts = {c: int((labels == c).sum()) for c in (0, 255, 299, 65535)}
    dataset = SegmentationDataset([(image, labels)], PLAIN, crop_size=64)
    item = dataset[0]
    target, picture = item["target"], item["image"]
    assert target.shape == (64, 64)
    for cls in (0, 255, 299):
        assert (target == cls).sum().item() == counts[cls]
        # every pixel of the class still sits on the image pixels coded for it
        torch.testing.assert_close(picture[0][target == cls], torch.full((counts[cls],), CODES[cls] / 255))
    # the image's own unlabelled band plus the padding
    assert (target == IGNORE_INDEX).sum().item() == 64 * 64 - counts[0] - counts[255] - counts[299]
    padding = picture[0] == 0  # no label's code is 0: black pixels come from outside the image
    assert padding.sum().item() == 64 * 64 - 20 * 30
    assert (target[padding] == IGNORE_INDEX).all()


def test_zoom_flips_and_rotations_keep_uint16_classes_exact_and_aligned():
    image, labels = _uint16_sample(48, 64)
    flips = build_augmentation(None, brightness=0, contrast=0)
    dataset = SegmentationDataset([(image, labels)], PLAIN, crop_size=40, scale=(0.75, 1.25), augment=flips)
    flat = SegmentationDataset([(image, labels)], PLAIN, crop_size=40, augment=flips)
    seen = {0: 0, 255: 0, 299: 0}
    for epoch in range(8):
        dataset.set_epoch(epoch)
        target = dataset[0]["target"]
        assert target.dtype == torch.int64
        assert set(torch.unique(target).tolist()) <= {IGNORE_INDEX, 0, 255, 299}
        assert (target == 299).any() or (target == 255).any()
        flat.set_epoch(epoch)
        item = flat[0]
        for cls in (0, 255, 299):
            where = item["target"] == cls
            seen[cls] += int(where.sum())
            torch.testing.assert_close(item["image"][0][where], torch.full((int(where.sum()),), CODES[cls] / 255))
    # over the eight epochs every class came up, with its own intensity
    assert all(seen.values()), seen


def test_loss_ignores_ignore_index_and_counts_class_255_of_a_uint16_map():
    _, labels = _uint16_sample(6, 8)
    target = torch.from_numpy(labels_to_target(labels)).long().unsqueeze(0)
    assert set(torch.unique(target).tolist()) == {IGNORE_INDEX, 0, 255, 299}
    torch.manual_seed(0)
    logits = torch.randn(1, 300, 6, 8)
    labelled = target[0] != IGNORE_INDEX
    picked = logits[0].log_softmax(0).gather(0, target.clamp(min=0))[0]
    expected = -picked[labelled].mean()
    torch.testing.assert_close(CrossEntropy()(logits, target), expected)
    # changing the logits where nothing is labelled changes nothing ...
    ignored = (target == IGNORE_INDEX).unsqueeze(1).expand_as(logits)
    noisy = torch.where(ignored, torch.randn_like(logits) * 10, logits)
    for loss_fn in (CrossEntropy(), DiceCE()):
        torch.testing.assert_close(loss_fn(noisy, target), loss_fn(logits, target))
    # ... but class 255 is a class: its pixels count
    of_255 = (target == 255).unsqueeze(1).expand_as(logits)
    moved = torch.where(of_255, torch.randn_like(logits) * 10, logits)
    assert not torch.isclose(CrossEntropy()(moved, target), CrossEntropy()(logits, target))


def test_class_weights_and_border_map_read_65535_as_unlabelled():
    _, labels = _uint16_sample(16, 24)
    weights = class_balance_weights(labels, 300)
    # three classes of 16 x 6 pixels each: all weigh 1; 65535 is not counted
    assert weights[[0, 255, 299]].tolist() == [1.0, 1.0, 1.0] and weights.sum() == 3.0
    border = border_weight_map(labels, 300)
    assert (border[labels == 65535] == 0).all()
    assert (border[labels == 255] >= 1.0).all() and (border[labels == 299] >= 1.0).all()


def test_evaluate_leaves_out_65535_and_scores_class_255():
    _, labels = _uint16_sample(4, 8)  # bands: 0 0 | 255 255 | 299 299 | 65535 65535
    predicted = np.array([0, 0, 255, 0, 299, 299, 7, 7])

    class Fixed(nn.Module):
        def forward(self, batch):
            logits = F.one_hot(torch.from_numpy(predicted), 300).T.float()
            return logits[None, :, None, :].expand(batch.shape[0], 300, batch.shape[2], 8)

    meta = CheckpointMeta("fixed", {"num_classes": 300, "in_channels": 3}, [f"c{i}" for i in range(300)],
                          default_palette(300), PLAIN)
    scores = evaluate(Fixed(), [(np.zeros((4, 8, 3), np.uint8), labels)], meta, torch.device("cpu"))
    # per row: 0 -> 0, 0, 255 -> 255, 0; 299 -> 299, 299; the 65535 pixels (predicted 7) are left out
    assert scores.iou[0] == pytest.approx(2 / 3) and scores.iou[255] == pytest.approx(1 / 2)
    assert scores.iou[299] == 1.0 and np.isnan(scores.iou[7])
    assert scores.pixel_accuracy == pytest.approx(5 / 6)


def test_a_tiny_unet_learns_300_classes_from_uint16_maps(tmp_path):
    rng = np.random.default_rng(0)
    samples = []
    for index in range(5):
        # four quadrants of classes from 256..299, each with its own grey level; a strip unlabelled
        classes = rng.choice(np.arange(256, 300), size=4, replace=False)
        labels = np.empty((40, 40), np.uint16)
        image = np.empty((40, 40, 3), np.uint8)
        for k, cls in enumerate(classes):
            rows, cols = slice(20 * (k // 2), 20 * (k // 2 + 1)), slice(20 * (k % 2), 20 * (k % 2 + 1))
            labels[rows, cols] = cls
            image[rows, cols] = (cls - 256) * 5
        labels[:, 37:] = 65535
        samples.append((image, labels))
    torch.manual_seed(0)
    model = get_model("unet", num_classes=300, in_channels=3, base_width=8, depth=3, batch_norm=True,
                      padding="same")
    # 40 steps, about 1 s on 2 CPU cores; seen: loss 6.05 -> 2.93
    settings = TrainConfig(epochs=20, batch_size=2, crop_size=32, device="cpu", seed=0, lr=0.1)
    result = run_to_completion(train_steps(model, samples[:4], samples[4:], settings, tmp_path))
    losses = [h["train_loss"] for h in result.history]
    assert losses[0] > 3.0  # about ln(300) at the start
    assert losses[-1] < 0.6 * losses[0]
    assert len(result.final_scores.iou) == 300
    # the classes it predicts on the held-out image are the ones used, not the unused 0..255
    model.eval()
    with torch.no_grad():
        from segstudio.preprocess import image_to_tensor

        prediction = model(image_to_tensor(samples[4][0], PLAIN).unsqueeze(0)).argmax(1)
    assert (prediction >= 256).float().mean() > 0.9


def _write_source(tmp_path, stem, labels):
    image = np.full((*labels.shape, 3), 90, np.uint8)
    cv2.imwrite(str(tmp_path / f"{stem}.png"), image)
    write_label_png(tmp_path / f"{stem}_labels.png", labels, default_palette(300))
    return SampleSource(stem, tmp_path / f"{stem}.png", tmp_path / f"{stem}_labels.png")


def test_project_data_skips_all_unlabelled_uint16_labels_and_keeps_class_255(tmp_path):
    _, labels = _uint16_sample(12, 16)
    empty = _write_source(tmp_path, "empty", np.full((12, 16), 65535, np.uint16))
    good = _write_source(tmp_path, "good", labels)
    loaded = load_sources([empty, good], num_classes=300)
    assert loaded.stems == ["good"] and len(loaded.skipped) == 1
    assert "empty_labels.png" in str(loaded.skipped[0]) and "every pixel is unlabelled" in str(loaded.skipped[0])
    image, read = loaded.samples[0]
    assert read.dtype == np.uint16
    np.testing.assert_array_equal(read, labels)
    with pytest.raises(DataError, match=r"\[299\].*0\.\.255; 65535 = unlabelled"):
        load_source(good, num_classes=256)
