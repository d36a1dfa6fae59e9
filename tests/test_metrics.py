"""Tests for segstudio.metrics, checked against scikit-learn and hand counts."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from sklearn.metrics import f1_score, jaccard_score

from segstudio.errors import InvalidArgumentError
from segstudio.metrics import (
    Scores,
    confusion_matrix,
    dice_per_class,
    format_table,
    iou_per_class,
    mean_dice,
    mean_iou,
    pixel_accuracy,
)


def _random_case(seed: int, num_classes: int, shape=(37, 53), ignore_fraction=0.15):
    rng = np.random.default_rng(seed)
    target = rng.integers(0, num_classes, size=shape).astype(np.uint8)
    # Predictions agree with the target most of the time so that scores are
    # neither trivially 0 nor 1.
    noise = rng.integers(0, num_classes, size=shape)
    pred = np.where(rng.random(shape) < 0.6, target, noise).astype(np.uint8)
    target[rng.random(shape) < ignore_fraction] = 255
    return pred, target


@pytest.mark.parametrize("seed", [0, 1, 2, 3, 4])
@pytest.mark.parametrize("num_classes", [2, 5, 9])
def test_means_match_sklearn_macro(seed, num_classes):
    pred, target = _random_case(seed, num_classes)
    cm = confusion_matrix(pred, target, num_classes)
    keep = target != 255
    y_true, y_pred = target[keep].astype(int), pred[keep].astype(int)
    assert cm.sum() == keep.sum()
    assert abs(mean_iou(cm) - jaccard_score(y_true, y_pred, average="macro")) < 1e-9
    assert abs(mean_dice(cm) - f1_score(y_true, y_pred, average="macro")) < 1e-9
    assert abs(pixel_accuracy(cm) - np.mean(y_true == y_pred)) < 1e-12


@pytest.mark.parametrize("seed", [10, 11, 12])
def test_per_class_match_sklearn_with_absent_class(seed):
    num_classes = 6
    pred, target = _random_case(seed, num_classes)
    # Class 4 vanishes from both sides; class 5 only from the target.
    pred[pred == 4] = 0
    target[target == 4] = 1
    target[target == 5] = 2
    cm = confusion_matrix(pred, target, num_classes)
    keep = target != 255
    y_true, y_pred = target[keep].astype(int), pred[keep].astype(int)
    labels = [0, 1, 2, 3, 5]
    sk_iou = jaccard_score(y_true, y_pred, labels=labels, average=None)
    sk_f1 = f1_score(y_true, y_pred, labels=labels, average=None)
    iou, dice = iou_per_class(cm), dice_per_class(cm)
    np.testing.assert_allclose(iou[labels], sk_iou, rtol=0, atol=1e-12)
    np.testing.assert_allclose(dice[labels], sk_f1, rtol=0, atol=1e-12)
    assert math.isnan(iou[4]) and math.isnan(dice[4])
    assert iou[5] == 0.0 and dice[5] == 0.0  # predicted but never true: a real zero
    # sklearn's macro mean also covers only the labels seen on either side.
    assert abs(mean_iou(cm) - jaccard_score(y_true, y_pred, average="macro")) < 1e-9
    assert abs(mean_iou(cm) - sk_iou.mean()) < 1e-12
    assert abs(mean_dice(cm) - sk_f1.mean()) < 1e-12


def test_hand_made_case():
    target = np.array([[0, 0, 1, 1], [2, 2, 255, 255]])
    pred = np.array([[0, 1, 1, 1], [2, 0, 2, 0]])
    cm = confusion_matrix(pred, target, 3)
    expected = np.array([[1, 1, 0], [0, 2, 0], [1, 0, 1]])
    np.testing.assert_array_equal(cm, expected)
    assert cm.dtype == np.int64
    # class 0: tp 1, fp 1, fn 1 -> IoU 1/3, Dice 2/4; class 1: tp 2, fp 1 -> 2/3, 4/5;
    # class 2: tp 1, fn 1 -> 1/2, 2/3.
    np.testing.assert_allclose(iou_per_class(cm), [1 / 3, 2 / 3, 1 / 2], rtol=0, atol=1e-15)
    np.testing.assert_allclose(dice_per_class(cm), [1 / 2, 4 / 5, 2 / 3], rtol=0, atol=1e-15)
    assert mean_iou(cm) == pytest.approx((1 / 3 + 2 / 3 + 1 / 2) / 3, abs=1e-15)
    assert mean_dice(cm) == pytest.approx((1 / 2 + 4 / 5 + 2 / 3) / 3, abs=1e-15)
    assert pixel_accuracy(cm) == pytest.approx(4 / 6, abs=1e-15)


def test_rows_are_target_and_columns_prediction():
    cm = confusion_matrix(np.array([1, 1, 1]), np.array([0, 0, 1]), 2)
    np.testing.assert_array_equal(cm, [[0, 2], [0, 1]])


def test_ignored_pixels_do_not_change_scores():
    pred, target = _random_case(7, 4)
    cm = confusion_matrix(pred, target, 4)
    rng = np.random.default_rng(99)
    shuffled = pred.copy()
    ignored = target == 255
    assert ignored.sum() > 50
    shuffled[ignored] = rng.integers(0, 4, size=ignored.sum())
    cm2 = confusion_matrix(shuffled, target, 4)
    np.testing.assert_array_equal(cm, cm2)
    assert Scores.from_confusion(cm) == Scores.from_confusion(cm2)


def test_prediction_may_hold_any_value_under_ignored_pixels():
    # 255 in the prediction is fine where the target is unlabelled.
    cm = confusion_matrix(np.array([0, 255, 1]), np.array([0, 255, 1]), 2)
    np.testing.assert_array_equal(cm, [[1, 0], [0, 1]])


def test_absent_class_is_nan_and_excluded_from_means():
    target = np.array([0, 0, 1, 1])
    pred = np.array([0, 0, 1, 1])
    cm = confusion_matrix(pred, target, 3)
    iou = iou_per_class(cm)
    assert iou[:2].tolist() == [1.0, 1.0]
    assert math.isnan(iou[2])
    assert mean_iou(cm) == 1.0 and mean_dice(cm) == 1.0


def test_empty_matrix_gives_nan_without_warnings(recwarn):
    cm = confusion_matrix(np.full((3, 3), 1), np.full((3, 3), 255), 2)
    assert cm.sum() == 0
    assert math.isnan(mean_iou(cm)) and math.isnan(mean_dice(cm)) and math.isnan(pixel_accuracy(cm))
    assert len(recwarn) == 0


@pytest.mark.parametrize("dtype", [np.uint8, np.int16, np.int32, np.uint16, np.int64])
def test_accepts_integer_dtypes(dtype):
    target = np.array([[0, 1], [2, 2]], dtype=dtype)
    pred = np.array([[0, 1], [1, 2]], dtype=np.int64)
    np.testing.assert_array_equal(
        confusion_matrix(pred, target, 3, ignore_index=None), [[1, 0, 0], [0, 1, 0], [0, 1, 1]]
    )


def test_ignore_index_other_than_255():
    cm = confusion_matrix(np.array([0, 1, 1]), np.array([-1, 1, 0]), 2, ignore_index=-1)
    np.testing.assert_array_equal(cm, [[0, 1], [0, 1]])


def test_bad_inputs_raise():
    with pytest.raises(InvalidArgumentError, match="shapes differ"):
        confusion_matrix(np.zeros((2, 3), int), np.zeros((3, 2), int), 2)
    with pytest.raises(InvalidArgumentError, match="target holds label 3"):
        confusion_matrix(np.zeros(3, int), np.array([0, 3, 1]), 3)
    with pytest.raises(InvalidArgumentError, match="prediction holds label -1"):
        confusion_matrix(np.array([0, -1, 1]), np.zeros(3, int), 3)
    with pytest.raises(InvalidArgumentError, match="integers"):
        confusion_matrix(np.zeros(3), np.zeros(3, int), 3)
    with pytest.raises(InvalidArgumentError):
        confusion_matrix(np.zeros(3, int), np.zeros(3, int), 0)
    with pytest.raises(InvalidArgumentError, match="square"):
        iou_per_class(np.zeros((2, 3)))


def test_matrices_add_up_over_images():
    a_pred, a_target = _random_case(20, 3)
    b_pred, b_target = _random_case(21, 3)
    whole = confusion_matrix(np.stack([a_pred, b_pred]), np.stack([a_target, b_target]), 3)
    np.testing.assert_array_equal(
        whole, confusion_matrix(a_pred, a_target, 3) + confusion_matrix(b_pred, b_target, 3)
    )


def test_scores_to_dict_is_json_ready():
    cm = np.array([[3, 1, 0], [0, 2, 0], [0, 0, 0]])
    scores = Scores.from_confusion(cm)
    assert scores.iou[0] == pytest.approx(0.75)
    assert math.isnan(scores.iou[2])
    data = scores.to_dict()
    assert data["iou"][2] is None and data["dice"][2] is None
    assert data["iou"][1] == pytest.approx(2 / 3)
    assert data["pixel_accuracy"] == pytest.approx(5 / 6)
    # allow_nan=False proves no NaN slipped through.
    round_trip = json.loads(json.dumps(data, allow_nan=False))
    assert round_trip["mean_iou"] == pytest.approx((0.75 + 2 / 3) / 2)


def test_format_table():
    scores = Scores.from_confusion(np.array([[3, 1, 0], [0, 2, 0], [0, 0, 0]]))
    text = format_table(scores, ["background", "cell", "nucleus"])
    lines = text.splitlines()
    assert lines[0].split() == ["class", "IoU", "Dice"]
    assert lines[2].split() == ["background", "0.7500", f"{6 / 7:.4f}"]
    assert lines[3].split() == ["cell", "0.6667", "0.8000"]
    assert lines[4].split() == ["nucleus", "n/a", "n/a"]
    assert lines[-2].split() == ["mean", f"{(0.75 + 2 / 3) / 2:.4f}", f"{(6 / 7 + 0.8) / 2:.4f}"]
    assert lines[-1].split() == ["pixel", "accuracy", "0.8333"]
    assert "class 2" in format_table(scores)
    with pytest.raises(InvalidArgumentError, match="2 class names given for 3 classes"):
        format_table(scores, ["a", "b"])


def test_large_input_is_fast():
    import time

    rng = np.random.default_rng(0)
    target = rng.integers(0, 21, size=(2048, 2048), dtype=np.uint8)
    pred = rng.integers(0, 21, size=(2048, 2048), dtype=np.uint8)
    start = time.perf_counter()
    cm = confusion_matrix(pred, target, 21)
    elapsed = time.perf_counter() - start
    assert cm.sum() == target.size
    assert elapsed < 2.0


def test_uint16_target_counts_classes_above_255_and_ignores_65535_by_default():
    # in a uint16 label map 255 is a class and 65535 is unlabelled
    target = np.array([[0, 255, 299], [299, 65535, 255]], dtype=np.uint16)
    pred = np.array([[0, 255, 299], [255, 7, 255]], dtype=np.uint16)
    cm = confusion_matrix(pred, target, 300)
    assert cm.shape == (300, 300) and cm.sum() == 5
    assert cm[0, 0] == 1 and cm[255, 255] == 2 and cm[299, 299] == 1 and cm[299, 255] == 1
    iou = iou_per_class(cm)
    assert iou[255] == pytest.approx(2 / 3) and iou[299] == pytest.approx(1 / 2) and iou[0] == 1.0
    # an explicit ignore value still wins: 255 left out, 65535 then out of range
    with pytest.raises(InvalidArgumentError, match="65535"):
        confusion_matrix(pred, target, 300, ignore_index=255)
    keep = target != 65535
    cm255 = confusion_matrix(pred[keep], target[keep], 300, ignore_index=255)
    assert cm255.sum() == 3 and cm255[0, 0] == 1 and cm255[299, 299] == 1 and cm255[299, 255] == 1


def test_auto_ignore_keeps_255_for_uint8_and_plain_integer_targets():
    for dtype in (np.uint8, np.int64):
        cm = confusion_matrix(np.array([0, 1, 1]), np.array([0, 255, 1], dtype=dtype), 2)
        np.testing.assert_array_equal(cm, [[1, 0], [0, 1]])
    with pytest.raises(InvalidArgumentError, match="ignore_index"):
        confusion_matrix(np.array([0]), np.array([0]), 2, ignore_index="unlabelled")
