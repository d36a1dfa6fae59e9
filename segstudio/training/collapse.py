"""Did a run learn anything? The collapse check.

A network that has not found the signal settles on the cheapest answer:
the most common class everywhere. Its loss looks flat and finite, its
pixel accuracy can look decent, and a user who adopts it gets an empty
mask on every image. So after every run the model is checked twice:

* on its **own training pixels**: if one class covers 99 % of its
  predictions there while the labels hold at least two classes of 1 % or
  more each, it predicts one class;
* against the **most common class**: on the validation pixels (the training
  pixels when there are none), its mean IoU must beat that of a "model"
  answering the training labels' most common class everywhere.

Either failure makes :attr:`CollapseReport.collapsed` true with a sentence
a user can act on. The CLI logs it, the Training dock shows it, the
version's record keeps it, and such a version is never adopted
automatically.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn

from segstudio.metrics import iou_per_class
from segstudio.models.checkpoint import CheckpointMeta
from segstudio.tasks import CancelToken
from segstudio.training.data import Sample
from segstudio.training.evaluate import confusion_of

#: one predicted class covering this share of the training pixels is "one class"
ONE_CLASS_SHARE = 0.99
#: ... unless the labels are that one-sided too: two classes of at least this share
MINOR_CLASS_SHARE = 0.01
# the training images are scored on at most this many pixels a side each, and at most this many images
_MAX_SIDE = 1024
_MAX_IMAGES = 8


@dataclass(frozen=True)
class CollapseReport:
    """The verdict of :func:`check_collapse`."""

    collapsed: bool
    #: why, in words a user can act on ("" when not collapsed)
    reason: str = ""
    #: share of the labelled training pixels given to each predicted class
    predicted_share: dict[int, float] = field(default_factory=dict)
    #: the training labels' most common class
    majority_class: int = 0
    #: mean IoU of the model and of "always the most common class", on the same pixels
    model_mean_iou: float = float("nan")
    majority_mean_iou: float = float("nan")
    #: "validation" or "training": the pixels of the second comparison
    scored_on: str = "training"

    def to_dict(self) -> dict[str, Any]:
        values = asdict(self)
        values["predicted_share"] = {str(k): v for k, v in self.predicted_share.items()}
        for key in ("model_mean_iou", "majority_mean_iou"):
            if not np.isfinite(values[key]):
                values[key] = None
        return values

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> CollapseReport:
        values = dict(values)
        values["predicted_share"] = {int(k): float(v) for k, v in (values.get("predicted_share") or {}).items()}
        for key in ("model_mean_iou", "majority_mean_iou"):
            values[key] = float("nan") if values.get(key) is None else float(values[key])
        known = {k: values[k] for k in cls.__dataclass_fields__ if k in values}
        return cls(**known)


def majority_confusion(truth_totals: np.ndarray, majority: int) -> np.ndarray:
    """The confusion matrix of answering class *majority* everywhere, for
    these labelled-pixel counts per true class."""
    classes = truth_totals.size
    cm = np.zeros((classes, classes), np.int64)
    cm[:, majority] = truth_totals
    return cm


def verdict(
    train_cm: np.ndarray,
    score_cm: np.ndarray,
    class_names: Sequence[str] | None = None,
    *,
    scored_on: str = "training",
) -> CollapseReport:
    """The collapse verdict from two confusion matrices (rows: truth).

    Parameters
    ----------
    train_cm:
        The model on its labelled training pixels.
    score_cm:
        The model on the pixels of the comparison with the most common class
        (the validation pixels, or the training pixels again).
    class_names:
        For the message.
    scored_on:
        What *score_cm* was counted on.
    """
    names = list(class_names) if class_names is not None else [str(i) for i in range(train_cm.shape[0])]
    truth = train_cm.sum(axis=1)
    total = int(truth.sum())
    if total == 0:
        return CollapseReport(False, scored_on=scored_on)
    predicted = train_cm.sum(axis=0)
    share = {int(c): float(predicted[c] / total) for c in np.flatnonzero(predicted)}
    majority = int(np.argmax(truth))
    top = int(np.argmax(predicted))
    label_shares = truth / total
    reasons = []
    if predicted[top] >= ONE_CLASS_SHARE * total and int((label_shares >= MINOR_CLASS_SHARE).sum()) >= 2:
        reasons.append(
            f"it predicts {names[top]!r} on {100 * predicted[top] / total:.1f} % of its own training pixels, "
            f"where the labels hold {int((truth > 0).sum())} classes"
        )
    # both over the classes the labels hold: a class the model only predicts
    # costs its pixels in the other classes' IoU, not a zero of its own
    score_truth = score_cm.sum(axis=1)
    present = score_truth > 0
    model_iou = _mean_iou_over(score_cm, present)
    majority_iou = _mean_iou_over(majority_confusion(score_truth, majority), present)
    if np.isfinite(model_iou) and np.isfinite(majority_iou) and model_iou <= majority_iou \
            and int((score_truth > 0).sum()) >= 2:
        reasons.append(
            f"its mean IoU on the {scored_on} pixels ({model_iou:.3f}) is no better than answering "
            f"{names[majority]!r} everywhere ({majority_iou:.3f})"
        )
    reason = ""
    if reasons:
        reason = ("; ".join(reasons) + ". Label more pixels of the rarer classes, train longer, or check that "
                  "the images are not near-constant (a 16-bit image with a small range needs percentile "
                  "normalisation)")
    return CollapseReport(
        collapsed=bool(reasons), reason=reason, predicted_share=share, majority_class=majority,
        model_mean_iou=model_iou, majority_mean_iou=majority_iou, scored_on=scored_on,
    )


def _mean_iou_over(cm: np.ndarray, classes: np.ndarray) -> float:
    if not classes.any():
        return float("nan")
    return float(np.nanmean(iou_per_class(cm)[classes]))


def check_collapse(
    model: nn.Module,
    train_samples: Sequence[Sample],
    val_samples: Sequence[Sample],
    meta: CheckpointMeta,
    device: torch.device,
    *,
    amp_dtype: torch.dtype | None = None,
    channels_last: bool = False,
    cancel: CancelToken | None = None,
) -> CollapseReport:
    """Run the model on (up to 8 of) its training images and on the
    validation images, and judge (see the module docstring).

    Large training images are looked at around their labelled pixels, at most
    1024 pixels a side, so the check costs seconds at most.
    """
    chosen = sorted(range(len(train_samples)),
                    key=lambda i: -int(_labelled_count(train_samples[i][1])))[:_MAX_IMAGES]
    train = [train_samples[i] for i in chosen]
    options = {"amp_dtype": amp_dtype, "channels_last": channels_last, "cancel": cancel}
    train_cm = confusion_of(model, train, meta, device, max_side=_MAX_SIDE, **options)
    if val_samples:
        score_cm = confusion_of(model, val_samples, meta, device, **options)
        scored_on = "validation"
    else:
        score_cm, scored_on = train_cm, "training"
    return verdict(train_cm, score_cm, meta.class_names, scored_on=scored_on)


def _labelled_count(labels: np.ndarray) -> int:
    from segstudio.io.masks import unlabelled_of

    labels = np.asarray(labels)
    return int(np.count_nonzero(labels != unlabelled_of(labels)))
