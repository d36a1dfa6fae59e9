"""Validation: a model's scores on whole images."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch import nn

from segstudio.metrics import Scores, confusion_matrix
from segstudio.models.checkpoint import CheckpointMeta
from segstudio.preprocess import image_to_tensor
from segstudio.tasks import CancelToken
from segstudio.training.data import Sample
from segstudio.io.masks import unlabelled_of


@torch.inference_mode()
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

    Each image goes through the model whole (validation images are small
    enough; the tiled predictor is for the large ones), the argmax is taken
    per pixel, and one confusion matrix is summed over all samples, so large
    images weigh more than small ones. Unlabelled pixels (each label map's
    own unlabelled value: 255 in a uint8 map, 65535 in a uint16 one) are left
    out; in a uint16 map, 255 is a class like any other.
    The model is left in eval mode.

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
    model.eval()
    total = np.zeros((meta.num_classes, meta.num_classes), dtype=np.int64)
    for image, labels in samples:
        if cancel is not None:
            cancel.raise_if_cancelled()
        batch = image_to_tensor(image, meta.preprocessing).unsqueeze(0).to(device)
        if channels_last:
            batch = batch.contiguous(memory_format=torch.channels_last)
        with torch.autocast(device.type, dtype=amp_dtype or torch.float32, enabled=amp_dtype is not None):
            logits = model(batch)
        prediction = logits.argmax(dim=1)[0].cpu().numpy()
        total += confusion_matrix(prediction, labels, meta.num_classes, ignore_index=unlabelled_of(labels))
    return Scores.from_confusion(total)
