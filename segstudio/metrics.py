"""Segmentation scores computed from a confusion matrix.

Everything starts from :func:`confusion_matrix`, which counts (target,
prediction) pairs over the labelled pixels; the per-class and mean scores are
cheap functions of it, and matrices from several images add up, so a data set
is scored by summing per-image matrices.

A class that appears in neither the target nor the prediction has no defined
IoU or Dice: it is reported as NaN and left out of the means (the convention
of scikit-learn's macro averages over the labels present).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from segstudio.errors import InvalidArgumentError
from segstudio.io.masks import unlabelled_of


def confusion_matrix(
    pred: np.ndarray,
    target: np.ndarray,
    num_classes: int,
    *,
    ignore_index: int | Literal["auto"] | None = "auto",
) -> np.ndarray:
    """Count target/prediction pairs.

    Parameters
    ----------
    pred, target:
        Integer label arrays of the same shape (class indices may go beyond
        255, e.g. in uint16 label maps).
    num_classes:
        Number of classes; labels must lie in ``0 .. num_classes - 1``.
    ignore_index:
        Target value of pixels to leave out (unlabelled); ``None`` keeps all.
        ``"auto"`` (the default) takes the unlabelled value of the target's
        type: 65535 for a uint16 label map (where 255 is a class), 255 for
        uint8 and for any other integer array.

    Returns
    -------
    numpy.ndarray
        ``int64`` matrix of shape ``(num_classes, num_classes)``; entry
        ``[t, p]`` counts pixels of target class ``t`` predicted as ``p``.

    Raises
    ------
    InvalidArgumentError
        Shapes differ, arrays are not integer, or a label is out of range.
    """
    num_classes = int(num_classes)
    if num_classes < 1:
        raise InvalidArgumentError(f"num_classes must be at least 1, got {num_classes}")
    pred = np.asarray(pred)
    target = np.asarray(target)
    if pred.shape != target.shape:
        raise InvalidArgumentError(
            f"prediction and target shapes differ: {pred.shape} vs {target.shape}"
        )
    for name, array in (("prediction", pred), ("target", target)):
        if not (np.issubdtype(array.dtype, np.integer) or array.dtype == np.bool_):
            raise InvalidArgumentError(f"{name} labels must be integers, got {array.dtype}")

    if isinstance(ignore_index, str):
        if ignore_index != "auto":
            raise InvalidArgumentError(f"ignore_index must be an integer, None or 'auto', got {ignore_index!r}")
        ignore_index = unlabelled_of(target)

    t = target.ravel()
    p = pred.ravel()
    if ignore_index is not None:
        keep = t != ignore_index
        if not keep.all():
            t = t[keep]
            p = p[keep]
    if t.size == 0:
        return np.zeros((num_classes, num_classes), dtype=np.int64)

    for name, values in (("target", t), ("prediction", p)):
        lo, hi = int(values.min()), int(values.max())
        if lo < 0 or hi >= num_classes:
            bad = lo if lo < 0 else hi
            note = ""
            if name == "target" and ignore_index is not None:
                note = f" (and not the ignore value {ignore_index})"
            raise InvalidArgumentError(
                f"{name} holds label {bad}, outside 0..{num_classes - 1}{note}"
            )
    flat = t.astype(np.int64) * num_classes + p.astype(np.int64)
    counts = np.bincount(flat, minlength=num_classes * num_classes)
    return counts.reshape(num_classes, num_classes)


def _check_cm(cm: np.ndarray) -> np.ndarray:
    cm = np.asarray(cm)
    if cm.ndim != 2 or cm.shape[0] != cm.shape[1]:
        raise InvalidArgumentError(f"a confusion matrix must be square, got shape {cm.shape}")
    return cm.astype(np.float64)


def _ratio(numerator: np.ndarray, denominator: np.ndarray) -> np.ndarray:
    out = np.full(numerator.shape, np.nan, dtype=np.float64)
    defined = denominator > 0
    out[defined] = numerator[defined] / denominator[defined]
    return out


def iou_per_class(cm: np.ndarray) -> np.ndarray:
    """Intersection over union of every class; NaN for a class absent from both sides."""
    cm = _check_cm(cm)
    tp = np.diag(cm)
    return _ratio(tp, cm.sum(axis=0) + cm.sum(axis=1) - tp)


def dice_per_class(cm: np.ndarray) -> np.ndarray:
    """Dice coefficient (F1) of every class; NaN for a class absent from both sides."""
    cm = _check_cm(cm)
    return _ratio(2.0 * np.diag(cm), cm.sum(axis=0) + cm.sum(axis=1))


def _mean_present(values: np.ndarray) -> float:
    # np.nanmean warns on an all-NaN input; an empty score is simply NaN.
    present = values[~np.isnan(values)]
    return float(present.mean()) if present.size else math.nan


def mean_iou(cm: np.ndarray) -> float:
    """Mean IoU over the classes present in the target or the prediction."""
    return _mean_present(iou_per_class(cm))


def mean_dice(cm: np.ndarray) -> float:
    """Mean Dice over the classes present in the target or the prediction."""
    return _mean_present(dice_per_class(cm))


def pixel_accuracy(cm: np.ndarray) -> float:
    """Fraction of counted pixels predicted correctly (NaN when none were counted)."""
    cm = _check_cm(cm)
    total = cm.sum()
    return float(np.trace(cm) / total) if total > 0 else math.nan


def _json_float(value: float) -> float | None:
    return None if math.isnan(value) else value


@dataclass(frozen=True)
class Scores:
    """Per-class and summary scores of one evaluation.

    Per-class entries are NaN for classes absent from both the target and the
    prediction.
    """

    iou: tuple[float, ...]
    dice: tuple[float, ...]
    mean_iou: float
    mean_dice: float
    pixel_accuracy: float

    @classmethod
    def from_confusion(cls, cm: np.ndarray) -> Scores:
        """Compute all scores from a confusion matrix."""
        return cls(
            iou=tuple(float(v) for v in iou_per_class(cm)),
            dice=tuple(float(v) for v in dice_per_class(cm)),
            mean_iou=mean_iou(cm),
            mean_dice=mean_dice(cm),
            pixel_accuracy=pixel_accuracy(cm),
        )

    def to_dict(self) -> dict[str, Any]:
        """Plain, JSON-ready form; undefined (NaN) scores become ``None``."""
        return {
            "iou": [_json_float(v) for v in self.iou],
            "dice": [_json_float(v) for v in self.dice],
            "mean_iou": _json_float(self.mean_iou),
            "mean_dice": _json_float(self.mean_dice),
            "pixel_accuracy": _json_float(self.pixel_accuracy),
        }


def _cell(value: float) -> str:
    return "n/a" if math.isnan(value) else f"{value:.4f}"


def format_table(scores: Scores, class_names: Sequence[str] | None = None) -> str:
    """Lay out scores as a plain-text table for a terminal.

    Parameters
    ----------
    scores:
        The scores to show.
    class_names:
        One name per class; ``None`` numbers the classes instead.

    Returns
    -------
    str
        One row per class (name, IoU, Dice; ``n/a`` where undefined), then the
        means and the pixel accuracy. No trailing newline.

    Raises
    ------
    InvalidArgumentError
        *class_names* does not have one name per class.
    """
    n = len(scores.iou)
    if class_names is None:
        names = [f"class {i}" for i in range(n)]
    else:
        names = [str(name) for name in class_names]
        if len(names) != n:
            raise InvalidArgumentError(f"{len(names)} class names given for {n} classes")
    footer = ["mean", "pixel accuracy"]
    width = max(len(s) for s in [*names, *footer, "class"])
    rows = [f"{'class':<{width}}  {'IoU':>7}  {'Dice':>7}"]
    rows.append("-" * len(rows[0]))
    for name, iou, dice in zip(names, scores.iou, scores.dice):
        rows.append(f"{name:<{width}}  {_cell(iou):>7}  {_cell(dice):>7}")
    rows.append("-" * len(rows[0]))
    rows.append(f"{'mean':<{width}}  {_cell(scores.mean_iou):>7}  {_cell(scores.mean_dice):>7}")
    rows.append(f"{'pixel accuracy':<{width}}  {_cell(scores.pixel_accuracy):>7}")
    return "\n".join(rows)
