"""Fine-tuning: data, augmentation, losses and the training loop.

The package takes arrays and a model, never widgets or documents: the
studio and the ``segstudio train`` command both turn their data into
``(image, labels)`` samples and drive :func:`train_steps`.
"""

from segstudio.training.config import TrainConfig, resolve_amp, resolve_device
from segstudio.training.data import (
    LoadedSamples,
    SegmentationDataset,
    find_pairs,
    load_pair,
    load_samples,
    split_train_val,
)
from segstudio.training.evaluate import evaluate
from segstudio.training.freeze import backbone_modules, freeze_backbone
from segstudio.training.loop import TrainResult, train_steps
from segstudio.training.losses import CrossEntropy, DiceCE, border_weight_map, build_loss
from segstudio.training.state import BEST_NAME, LAST_NAME, STATE_NAME

__all__ = [
    "BEST_NAME",
    "LAST_NAME",
    "STATE_NAME",
    "CrossEntropy",
    "DiceCE",
    "LoadedSamples",
    "SegmentationDataset",
    "TrainConfig",
    "TrainResult",
    "backbone_modules",
    "border_weight_map",
    "build_loss",
    "evaluate",
    "find_pairs",
    "freeze_backbone",
    "load_pair",
    "load_samples",
    "resolve_amp",
    "resolve_device",
    "split_train_val",
    "train_steps",
]
