"""Validation: a model's scores on whole images."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch import nn

from segstudio.io.masks import unlabelled_of
from segstudio.metrics import Scores, confusion_matrix
from segstudio.models.checkpoint import CheckpointMeta
from segstudio.preprocess import MappedImage, fit_intensity, image_to_tensor
from segstudio.tasks import CancelToken
from segstudio.training.data import Sample

# context kept around the labelled pixels when only their region is scored
_MARGIN = 32


def labelled_view(image: np.ndarray, labels: np.ndarray, preprocessing, *, max_side: int | None = None):
    """The part of a sample worth running the model on: the bounding box of
    its labelled pixels plus a margin (the whole image when it is all
    labelled), at most ``max_side`` pixels a side around the labelled pixel
    nearest the box's centre.
    The image part carries the whole image's intensity map, so it looks to
    the model as it does in the whole image. ``None`` when nothing is labelled.
    """
    labels = np.asarray(labels)
    labelled = labels != unlabelled_of(labels)
    rows, cols = np.flatnonzero(labelled.any(axis=1)), np.flatnonzero(labelled.any(axis=0))
    if rows.size == 0:
        return None
    height, width = labels.shape
    bounds = []
    for first, last, extent in ((rows[0], rows[-1], height), (cols[0], cols[-1], width)):
        start, stop = max(0, int(first) - _MARGIN), min(extent, int(last) + 1 + _MARGIN)
        bounds.append([start, stop])
    if max_side is not None and any(stop - start > max_side for start, stop in bounds):
        # centred on the labelled pixel nearest the box's centre, so that the window holds labels
        ys, xs = np.nonzero(labelled)
        centre_y, centre_x = (bounds[0][0] + bounds[0][1]) / 2, (bounds[1][0] + bounds[1][1]) / 2
        nearest = int(np.argmin(np.abs(ys - centre_y) + np.abs(xs - centre_x)))
        for axis, (centre, extent) in enumerate(((ys[nearest], height), (xs[nearest], width))):
            start, stop = bounds[axis]
            if stop - start > max_side:
                start = min(max(0, int(centre) - max_side // 2), extent - max_side)
                bounds[axis] = [start, start + max_side]
    window = tuple(slice(start, stop) for start, stop in bounds)
    if window == (slice(0, height), slice(0, width)):
        return image, labels
    intensity = fit_intensity(image, preprocessing)
    return MappedImage(np.asarray(image)[window], intensity), labels[window]


@torch.inference_mode()
def confusion_of(
    model: nn.Module,
    samples: Sequence[Sample],
    meta: CheckpointMeta,
    device: torch.device,
    *,
    amp_dtype: torch.dtype | None = None,
    channels_last: bool = False,
    cancel: CancelToken | None = None,
    max_side: int | None = None,
) -> np.ndarray:
    """The summed confusion matrix (rows: truth, columns: prediction) of
    ``model`` over the labelled pixels of ``samples``; see :func:`evaluate`."""
    model.eval()
    total = np.zeros((meta.num_classes, meta.num_classes), dtype=np.int64)
    for image, labels in samples:
        if cancel is not None:
            cancel.raise_if_cancelled()
        view = labelled_view(image, labels, meta.preprocessing, max_side=max_side)
        if view is None:
            continue
        part, truth = view
        batch = image_to_tensor(part, meta.preprocessing).unsqueeze(0).to(device)
        if channels_last:
            batch = batch.contiguous(memory_format=torch.channels_last)
        with torch.autocast(device.type, dtype=amp_dtype or torch.float32, enabled=amp_dtype is not None):
            logits = model(batch)
        prediction = logits.argmax(dim=1)[0].cpu().numpy()
        total += confusion_matrix(prediction, truth, meta.num_classes, ignore_index=unlabelled_of(truth))
    return total


def evaluate(
    model: nn.Module,
    samples: Sequence[Sample],
    meta: CheckpointMeta,
    device: torch.device,
    *,
    amp_dtype: torch.dtype | None = None,
    channels_last: bool = False,
    cancel: CancelToken | None = None,
) -> Scores:
    """Scores of ``model`` on ``samples``.

    Each image goes through the model in one piece: the region around its
    labelled pixels (with a margin of context), which is the whole image
    when it is all labelled; the image's intensity map is fitted on the
    whole image, as the predictor does. The argmax is taken per pixel, and
    one confusion matrix is summed over all samples, so large images weigh
    more than small ones. Unlabelled pixels (each label map's own unlabelled
    value: 255 in a uint8 map, 65535 in a uint16 one) are left out; in a
    uint16 map, 255 is a class like any other. The model is left in eval mode.

    Parameters
    ----------
    model:
        Returns logits ``N x C x H x W``.
    samples:
        ``(image, labels)`` pairs; labels uint8 or uint16.
    meta:
        Gives the preprocessing and the number of classes.
    device:
        Where the model is.
    amp_dtype:
        Autocast precision, or ``None`` for full precision.
    channels_last:
        Feed NHWC tensors (when the model was converted to channels-last).
    cancel:
        Checked before each image.
    """
    total = confusion_of(model, samples, meta, device, amp_dtype=amp_dtype, channels_last=channels_last,
                         cancel=cancel)
    return Scores.from_confusion(total)
