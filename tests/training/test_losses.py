"""Losses: unlabelled pixels have no effect; the U-Net border weight map."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from scipy import ndimage

from segstudio.errors import InvalidArgumentError
from segstudio.training.losses import (
    IGNORE_INDEX,
    CrossEntropy,
    DiceCE,
    border_weight_map,
    build_loss,
    class_balance_weights,
    soft_dice_loss,
)

NUM_CLASSES = 3


def _target(seed=0):
    rng = np.random.default_rng(seed)
    target = rng.integers(0, NUM_CLASSES, size=(2, 12, 14))
    target[0, 3:8, 2:9] = IGNORE_INDEX
    target[1, :, 10:] = IGNORE_INDEX
    return torch.from_numpy(target).long()


def _loss_and_grad(loss_fn, logits, target, weights=None):
    logits = logits.clone().requires_grad_(True)
    loss = loss_fn(logits, target, weights) if weights is not None else loss_fn(logits, target)
    loss.backward()
    return loss.detach(), logits.grad


def _border_weights(target):
    # border_weight_map takes label maps as stored: uint8 with 255 = unlabelled
    maps = [np.where(t.numpy() == IGNORE_INDEX, 255, t.numpy()).astype(np.uint8) for t in target]
    return torch.stack([torch.from_numpy(border_weight_map(m, NUM_CLASSES)) for m in maps])


LOSSES = {
    "ce": lambda: CrossEntropy(),
    "ce_class_weights": lambda: CrossEntropy([0.5, 2.0, 1.0]),
    "dice_ce": lambda: DiceCE(),
    "dice_ce_class_weights": lambda: DiceCE([1.0, 3.0, 0.2]),
}


@pytest.mark.parametrize("name", [*LOSSES, "ce_border", "dice_ce_border"])
def test_unlabelled_pixels_change_neither_loss_nor_gradient(name):
    torch.manual_seed(1)
    target = _target()
    unlabelled = (target == IGNORE_INDEX).unsqueeze(1).expand(-1, NUM_CLASSES, -1, -1)
    assert unlabelled.any() and (~unlabelled).any()
    logits = torch.randn(2, NUM_CLASSES, 12, 14)
    # whatever the network says where nothing is labelled must not matter
    other = torch.where(unlabelled, torch.randn_like(logits) * 10, logits)
    weights = None
    if name.endswith("_border"):
        loss_fn = CrossEntropy() if name == "ce_border" else DiceCE()
        weights = _border_weights(target)
        # the weight map's values at unlabelled pixels must not matter either
        other_weights = torch.where(target == IGNORE_INDEX, torch.rand_like(weights) * 50, weights)
    else:
        loss_fn = LOSSES[name]()
        other_weights = None
    loss_a, grad_a = _loss_and_grad(loss_fn, logits, target, weights)
    loss_b, grad_b = _loss_and_grad(loss_fn, other, target, other_weights)
    assert torch.isfinite(loss_a) and loss_a > 0
    torch.testing.assert_close(loss_a, loss_b, rtol=1e-6, atol=1e-7)
    torch.testing.assert_close(grad_a, grad_b, rtol=1e-6, atol=1e-8)
    assert grad_a[unlabelled].abs().max() == 0
    assert grad_a[~unlabelled].abs().max() > 0


def test_cross_entropy_matches_torch_on_labelled_pixels():
    torch.manual_seed(2)
    target = _target(3)
    logits = torch.randn(2, NUM_CLASSES, 12, 14)
    expected = F.cross_entropy(logits, target, ignore_index=IGNORE_INDEX)
    torch.testing.assert_close(CrossEntropy()(logits, target), expected)
    weights = torch.tensor([0.2, 1.0, 3.0])
    expected_weighted = F.cross_entropy(logits, target, weight=weights, ignore_index=IGNORE_INDEX)
    torch.testing.assert_close(CrossEntropy(weights)(logits, target), expected_weighted)


def test_pixel_weights_give_a_weighted_mean():
    torch.manual_seed(3)
    target = torch.zeros(1, 2, 2, dtype=torch.long)
    target[0, 1, 1] = IGNORE_INDEX
    logits = torch.randn(1, NUM_CLASSES, 2, 2)
    per_pixel = F.cross_entropy(logits, target, ignore_index=IGNORE_INDEX, reduction="none")[0]
    weights = torch.tensor([[[1.0, 3.0], [0.5, 100.0]]])
    expected = (per_pixel[0, 0] * 1 + per_pixel[0, 1] * 3 + per_pixel[1, 0] * 0.5) / 4.5
    torch.testing.assert_close(CrossEntropy()(logits, target, weights), expected)


def test_dice_is_zero_for_a_perfect_prediction_and_one_for_a_wrong_one():
    target = torch.tensor([[[0, 1], [2, IGNORE_INDEX]]])
    perfect = F.one_hot(target.clamp(0, 2), NUM_CLASSES).permute(0, 3, 1, 2).float() * 100
    assert soft_dice_loss(perfect, target, smooth=0.0).item() == pytest.approx(0.0, abs=1e-6)
    wrong = torch.roll(perfect, 1, dims=1)
    assert soft_dice_loss(wrong, target, smooth=0.0).item() == pytest.approx(1.0, abs=1e-6)


def test_all_unlabelled_gives_a_zero_loss_that_still_backpropagates():
    target = torch.full((1, 4, 4), IGNORE_INDEX, dtype=torch.long)
    for loss_fn in (CrossEntropy(), DiceCE()):
        logits = torch.randn(1, NUM_CLASSES, 4, 4, requires_grad=True)
        loss = loss_fn(logits, target)
        loss.backward()
        assert loss.item() == 0.0
        assert logits.grad.abs().max() == 0


def test_build_loss_and_bad_weights():
    assert isinstance(build_loss("ce"), CrossEntropy)
    assert isinstance(build_loss("dice_ce", [1, 1, 1]), DiceCE)
    with pytest.raises(InvalidArgumentError, match="unknown loss"):
        build_loss("focal")
    with pytest.raises(InvalidArgumentError):
        CrossEntropy([1.0, -1.0])
    with pytest.raises(InvalidArgumentError, match="2 class weights"):
        CrossEntropy([1.0, 1.0])(torch.randn(1, 3, 2, 2), torch.zeros(1, 2, 2, dtype=torch.long))


def _two_squares(gap=2, size=120):
    labels = np.zeros((size, size), dtype=np.uint8)
    labels[40:70, 20:50] = 1
    labels[40:70, 50 + gap : 80 + gap] = 2
    return labels


def test_border_weight_peaks_in_the_gap_and_is_class_weight_far_away():
    labels = _two_squares(gap=2)
    weights = border_weight_map(labels, NUM_CLASSES)
    w_c = class_balance_weights(labels, NUM_CLASSES)
    gap_pixel = weights[55, 50]  # d1 = 1, d2 = 2 (edge-to-pixel distances)
    expected_gap = w_c[0] + 10.0 * np.exp(-((1 + 2) ** 2) / (2 * 25.0))
    assert gap_pixel == pytest.approx(expected_gap, rel=1e-5)
    assert gap_pixel > w_c[0] + 8.0  # near w0 + w_c
    assert weights[5, 5] == pytest.approx(w_c[0], rel=1e-6)  # far from both objects
    assert weights[110, 110] == pytest.approx(w_c[0], rel=1e-6)
    # among background pixels the gap is the peak; the border term itself
    # (weight minus class weight) peaks there too and vanishes far away
    assert weights[labels == 0].max() == pytest.approx(gap_pixel, rel=1e-6)
    border = weights - w_c[labels]
    assert border.max() == pytest.approx(gap_pixel - w_c[0], rel=1e-5)
    assert np.unravel_index(np.argmax(border), border.shape)[1] in range(48, 53)
    assert abs(border[5, 5]) < 1e-6
    # well inside an object the nearest other object is far away
    assert weights[55, 25] == pytest.approx(w_c[1], rel=1e-3)


def test_border_weight_matches_the_formula_everywhere():
    labels = _two_squares(gap=4)
    labels[10:20, 90:100] = 1  # a third object
    labels[100:110, 0:30] = 255
    got = border_weight_map(labels, NUM_CLASSES, balance=False)
    objects, count = ndimage.label((labels != 0) & (labels != 255), structure=np.ones((3, 3)))
    assert count == 3
    distances = np.sort(np.stack([ndimage.distance_transform_edt(objects != i) for i in range(1, count + 1)]), axis=0)
    expected = 1.0 + 10.0 * np.exp(-((distances[0] + distances[1]) ** 2) / (2 * 5.0**2))
    expected[labels == 255] = 0.0
    np.testing.assert_allclose(got, expected, atol=1e-5)


def test_border_weight_without_two_objects_is_the_class_balance():
    labels = np.zeros((30, 30), dtype=np.uint8)
    labels[5:15, 5:15] = 1
    labels[0, :] = 255
    weights = border_weight_map(labels, NUM_CLASSES)
    assert weights.dtype == np.float32
    assert (weights[0] == 0).all()
    labelled = weights[labels != 255]
    # class balance: labelled pixels average 1 and each class carries the same total
    assert labelled.mean() == pytest.approx(1.0, rel=1e-6)
    assert weights[labels == 1].sum() == pytest.approx(weights[labels == 0].sum(), rel=1e-5)


def test_border_weight_rejects_bad_input():
    with pytest.raises(InvalidArgumentError):
        border_weight_map(np.zeros((2, 2, 2), np.uint8), 2)
    with pytest.raises(InvalidArgumentError):
        border_weight_map(np.zeros((4, 4), np.uint8), 2, sigma=0)
