"""Segmentation losses that ignore unlabelled pixels.

Training targets are ``int64`` class indices in which unlabelled pixels hold
:data:`IGNORE_INDEX` (-1), a value that is never a class. A label map marks
them with the largest value of its type (255 in a uint8 map, 65535 in a
uint16 map, :func:`~segstudio.io.masks.unlabelled_for`), and in a uint16 map
255 is an ordinary class, so :func:`labels_to_target` maps each map's own
unlabelled value to :data:`IGNORE_INDEX`. An ignored pixel contributes
nothing: not to the loss, not to its normaliser, not to the gradient. That
matters here more than usual, because corrected documents are often labelled
only in part.

* :class:`CrossEntropy`: per-pixel cross-entropy, optionally with class
  weights and with a per-pixel weight map;
* :class:`DiceCE`: soft Dice over the classes plus cross-entropy;
* :func:`border_weight_map`: the U-Net paper's weight map that stresses the
  thin background gaps between touching objects.

The functions taking numpy label maps (:func:`border_weight_map`,
:func:`class_balance_weights`) read the unlabelled value from the map's type
(:func:`~segstudio.io.masks.unlabelled_of`).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from scipy import ndimage
from torch import nn

from segstudio.errors import InvalidArgumentError
from segstudio.io.masks import unlabelled_of

LOSSES = ("ce", "dice_ce")

IGNORE_INDEX = -1
"""Value of unlabelled pixels in a training target; never a class index."""


def labels_to_target(labels: np.ndarray) -> np.ndarray:
    """A label map (uint8 or uint16) as a training target: ``int32`` class
    indices with the map's unlabelled value replaced by :data:`IGNORE_INDEX`.

    ``int32`` holds every class of a uint16 map at half the memory of int64;
    the dataset widens the (augmented, usually much smaller) crop to int64.
    """
    labels = np.asarray(labels)
    target = labels.astype(np.int32)
    target[labels == unlabelled_of(labels)] = IGNORE_INDEX
    return target


def _valid(target: torch.Tensor) -> torch.Tensor:
    return target != IGNORE_INDEX


class CrossEntropy(nn.Module):
    """Cross-entropy over labelled pixels.

    Parameters
    ----------
    class_weights:
        Optional weight per class (as ``torch.nn.CrossEntropyLoss``'s
        ``weight``); the loss is the weighted mean over labelled pixels.

    ``forward(logits, target, pixel_weights=None)``: ``logits`` is
    ``N x C x H x W``, ``target`` ``N x H x W`` (int64, :data:`IGNORE_INDEX` =
    unlabelled) and
    ``pixel_weights`` an optional ``N x H x W`` weight map; with it, the loss
    is ``sum(w * ce) / sum(w)`` over labelled pixels (class weights, if any,
    multiply in).
    """

    def __init__(self, class_weights: Sequence[float] | torch.Tensor | None = None) -> None:
        super().__init__()
        weights = None if class_weights is None else torch.as_tensor(class_weights, dtype=torch.float32)
        if weights is not None and (weights.ndim != 1 or bool((weights < 0).any())):
            raise InvalidArgumentError("class weights must be a list of non-negative numbers")
        self.register_buffer("class_weights", weights, persistent=False)

    def forward(
        self, logits: torch.Tensor, target: torch.Tensor, pixel_weights: torch.Tensor | None = None
    ) -> torch.Tensor:
        logits = logits.float()
        if self.class_weights is not None and self.class_weights.numel() != logits.shape[1]:
            raise InvalidArgumentError(
                f"{self.class_weights.numel()} class weights were given for {logits.shape[1]} classes"
            )
        valid = _valid(target)
        per_pixel = F.cross_entropy(
            logits, target, weight=self.class_weights, ignore_index=IGNORE_INDEX, reduction="none"
        )
        # the normaliser is the total weight of labelled pixels, as in CrossEntropyLoss(weight=...)
        weight = valid.to(per_pixel.dtype)
        if self.class_weights is not None:
            weight = weight * self.class_weights[target.clamp(0, logits.shape[1] - 1)]
        if pixel_weights is not None:
            pixel_weights = pixel_weights.to(per_pixel.dtype) * valid
            per_pixel = per_pixel * pixel_weights
            weight = weight * pixel_weights
        total = weight.sum()
        if total <= 0:
            # nothing labelled in this batch (a crop of padding): a zero that still has a graph
            return logits.sum() * 0.0
        return per_pixel.sum() / total


def soft_dice_loss(logits: torch.Tensor, target: torch.Tensor, *, smooth: float = 1.0) -> torch.Tensor:
    """``1 - mean over classes of soft Dice``, over labelled pixels only.

    Probabilities and targets are summed over the whole batch, so a class
    absent from one image still counts where it appears in another. The
    smoothing term keeps a class absent from both the batch and the
    prediction at a Dice of 1 instead of 0/0.
    """
    probabilities = logits.float().softmax(dim=1)
    valid = _valid(target)
    num_classes = logits.shape[1]
    one_hot = F.one_hot(torch.where(valid, target, 0).long(), num_classes).permute(0, 3, 1, 2).float()
    mask = valid.unsqueeze(1).float()
    # multiplying by the mask (not indexing) keeps unlabelled pixels' gradients exactly zero
    probabilities = probabilities * mask
    one_hot = one_hot * mask
    dims = (0, 2, 3)
    intersection = (probabilities * one_hot).sum(dims)
    cardinality = probabilities.sum(dims) + one_hot.sum(dims)
    dice = (2 * intersection + smooth) / (cardinality + smooth)
    return 1.0 - dice.mean()


class DiceCE(nn.Module):
    """Soft Dice plus cross-entropy (each weighted 1 by default).

    Dice counters class imbalance at the image level, cross-entropy gives
    well-behaved gradients early in training. A pixel weight map, if given,
    applies to the cross-entropy term.
    """

    def __init__(
        self,
        class_weights: Sequence[float] | torch.Tensor | None = None,
        *,
        dice_weight: float = 1.0,
        ce_weight: float = 1.0,
    ) -> None:
        super().__init__()
        self.ce = CrossEntropy(class_weights)
        self.dice_weight = float(dice_weight)
        self.ce_weight = float(ce_weight)

    def forward(
        self, logits: torch.Tensor, target: torch.Tensor, pixel_weights: torch.Tensor | None = None
    ) -> torch.Tensor:
        ce = self.ce(logits, target, pixel_weights)
        if not bool(_valid(target).any()):
            return ce
        return self.ce_weight * ce + self.dice_weight * soft_dice_loss(logits, target)


def build_loss(name: str, class_weights: Sequence[float] | None = None) -> nn.Module:
    """The loss named ``"ce"`` or ``"dice_ce"``."""
    if name == "ce":
        return CrossEntropy(class_weights)
    if name == "dice_ce":
        return DiceCE(class_weights)
    raise InvalidArgumentError(f"unknown loss {name!r}; choose one of {', '.join(LOSSES)}")


def class_balance_weights(labels: np.ndarray, num_classes: int) -> np.ndarray:
    """Per-class weights ``total / (classes present * count)`` of one label
    map (so labelled pixels average 1); 0 for absent classes. The map's
    unlabelled value (:func:`~segstudio.io.masks.unlabelled_of`) is left out."""
    labels = np.asarray(labels)
    labelled = labels[labels != unlabelled_of(labels)]
    counts = np.bincount(labelled.ravel(), minlength=num_classes)[:num_classes].astype(np.float64)
    present = counts > 0
    weights = np.zeros(num_classes, dtype=np.float64)
    if present.any():
        weights[present] = counts.sum() / (present.sum() * counts[present])
    return weights


def border_weight_map(
    labels: np.ndarray,
    num_classes: int,
    *,
    w0: float = 10.0,
    sigma: float = 5.0,
    background: int = 0,
    balance: bool = True,
) -> np.ndarray:
    """The U-Net paper's pixel weight map for one label map.

    ``w(x) = w_c(x) + w0 * exp(-(d1(x) + d2(x))**2 / (2 sigma**2))`` where
    ``w_c`` balances the class frequencies and ``d1``, ``d2`` are the
    distances to the nearest and second-nearest object. Objects are the
    connected components (8-connected) of the foreground, i.e. every
    labelled class but ``background``; unlabelled pixels weigh 0.

    Parameters
    ----------
    labels:
        ``H x W`` class indices; the largest value of its type (255 for
        uint8, 65535 for uint16) is unlabelled.
    num_classes:
        Number of classes.
    w0, sigma:
        Height and width (in pixels) of the border term; the paper's 10 and 5.
    background:
        The class that separates objects.
    balance:
        ``False`` uses ``w_c = 1`` instead of the frequency balance.

    Returns
    -------
    numpy.ndarray
        ``float32`` ``H x W``.
    """
    labels = np.asarray(labels)
    if labels.ndim != 2:
        raise InvalidArgumentError(f"a label map must be H x W, got shape {labels.shape}")
    if sigma <= 0:
        raise InvalidArgumentError(f"sigma must be positive, got {sigma}")
    valid = labels != unlabelled_of(labels)
    if balance:
        per_class = class_balance_weights(labels, num_classes)
        weights = np.where(valid, per_class[np.where(valid, labels, 0).clip(max=num_classes - 1)], 0.0)
    else:
        weights = valid.astype(np.float64)
    foreground = valid & (labels != background)
    objects, count = ndimage.label(foreground, structure=np.ones((3, 3), dtype=bool))
    if count >= 2 and w0 > 0:
        d1, d2 = _two_nearest_distances(objects, count, reach=6.0 * sigma)
        border = w0 * np.exp(-((d1 + d2) ** 2) / (2.0 * sigma**2))
        weights = weights + np.where(valid, border, 0.0)
    return weights.astype(np.float32)


def _two_nearest_distances(objects: np.ndarray, count: int, *, reach: float) -> tuple[np.ndarray, np.ndarray]:
    """Per pixel, the distances to the nearest and second-nearest object.

    Distances beyond ``reach`` are left at infinity: the border term is
    ``exp(-(d1 + d2)^2 / 2 sigma^2)``, below 1e-7 once ``d1 + d2 > 6 sigma``,
    so each object's distance transform is computed only within its
    bounding box grown by ``reach``. That keeps the cost proportional to the
    objects' surroundings instead of ``count`` full-image transforms.
    """
    height, width = objects.shape
    d1 = np.full(objects.shape, np.inf)
    d2 = np.full(objects.shape, np.inf)
    margin = int(np.ceil(reach))
    for index, box in enumerate(ndimage.find_objects(objects), start=1):
        if box is None:
            continue
        y0, y1 = max(box[0].start - margin, 0), min(box[0].stop + margin, height)
        x0, x1 = max(box[1].start - margin, 0), min(box[1].stop + margin, width)
        distance = ndimage.distance_transform_edt(objects[y0:y1, x0:x1] != index)
        near1, near2 = d1[y0:y1, x0:x1], d2[y0:y1, x0:x1]
        closer = distance < near1
        # keep the two smallest: the new distance displaces the first or the second
        near2[...] = np.where(closer, near1, np.minimum(near2, distance))
        near1[...] = np.where(closer, distance, near1)
    return d1, d2
