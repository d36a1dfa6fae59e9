"""Live update: short fine-tunes between strokes, as ilastik retrains while one paints.

A :class:`LiveTrainer` keeps a copy of the model and its optimizer from one
update to the next, so each pause in the painting adds a few optimisation
steps to the ones before instead of starting over. An update is a task
generator (design rule 2): it yields :class:`~segstudio.tasks.Progress`
after every step, checks the cancel token before each, and returns what it
did. The crops come from the labelled pixels exactly as in a full training
run (:class:`~segstudio.training.data.SegmentationDataset`: same sampler,
intensity mapping and augmentation), with the same loss.

The trainer never writes a file: :meth:`LiveTrainer.save` does, when the
user keeps the live model as a version. By default only the head (the
decoder of a U-Net, the classifier of an FCN) of a large network learns;
a small one (the demo's U-Net) learns whole, which costs little more.
"""

from __future__ import annotations

import copy
import dataclasses
import math
import os
import time
from collections.abc import Generator, Sequence
from dataclasses import dataclass

import torch
from torch import nn

from segstudio.errors import DataError, InvalidArgumentError
from segstudio.inference.predictor import Predictor
from segstudio.models.checkpoint import CheckpointMeta, save_checkpoint
from segstudio.serialize import json_safe
from segstudio.tasks import CancelToken, Progress
from segstudio.training.augment import build_augmentation
from segstudio.training.config import resolve_device
from segstudio.training.data import Sample, SegmentationDataset, check_labels
from segstudio.training.freeze import freeze_backbone
from segstudio.training.losses import build_loss

#: a network with at most this many weights learns whole in a live update (the demo
#: U-Net, 1.9 M: 4 steps of 2 crops took 0.97 s whole, 0.77 s head only, on a 2-core CPU);
#: a larger one (the VGG-based FCNs and DeepLabs) trains its head only
FULL_MODEL_PARAMETERS = 5_000_000


@dataclass(frozen=True)
class LiveUpdate:
    """What one update did."""

    steps: int
    seconds: float
    first_loss: float
    last_loss: float
    #: updates so far, this one included
    updates: int


class LiveTrainer:
    """A model fine-tuned a few steps at a time, kept between updates.

    Parameters
    ----------
    model, meta:
        The model to start from (copied: the caller's stays as it is) and its
        checkpoint metadata (classes, preprocessing).
    device:
        ``"auto"``, ``"cpu"``, ``"cuda"``...
    head_only:
        Train the head only (the backbone keeps its weights and BatchNorm
        statistics); ``None`` decides by size (:data:`FULL_MODEL_PARAMETERS`).
    steps, time_budget_s:
        An update stops after this many optimisation steps, or at the first
        step past this many seconds (at least one step is made).
    batch_size, crop_size:
        Crops per step and crop side.
    lr:
        AdamW's learning rate (kept low: the model is already trained).
    """

    def __init__(self, model: nn.Module, meta: CheckpointMeta, *, device: str = "auto",
                 head_only: bool | None = None, steps: int = 8, time_budget_s: float | None = 2.0,
                 batch_size: int = 2, crop_size: int = 256, lr: float = 3e-4, seed: int = 0) -> None:
        for name, value in (("steps", steps), ("batch_size", batch_size), ("crop_size", crop_size)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise InvalidArgumentError(f"live update {name} must be a positive integer, got {value!r}")
        if not (isinstance(lr, int | float) and math.isfinite(lr) and lr > 0):
            raise InvalidArgumentError(f"live update learning rate must be a positive number, got {lr!r}")
        if time_budget_s is not None and not (math.isfinite(time_budget_s) and time_budget_s > 0):
            raise InvalidArgumentError(f"live update time budget must be positive, got {time_budget_s!r}")
        self.meta = meta
        self.device = resolve_device(device)
        self.model = copy.deepcopy(model).to(self.device)
        if head_only is None:  # the whole network where that is quick: a few million weights
            head_only = sum(p.numel() for p in self.model.parameters()) > FULL_MODEL_PARAMETERS
        self.frozen = freeze_backbone(self.model) if head_only else None
        self.time_budget_s = time_budget_s
        parameters = [p for p in self.model.parameters() if p.requires_grad]
        self.optimizer = torch.optim.AdamW(parameters, lr=lr, weight_decay=1e-4)
        self.loss_fn = build_loss("ce").to(self.device)
        self.steps, self.batch_size, self.crop_size = steps, batch_size, crop_size
        self.seed = seed
        self.updates = 0
        self.total_steps = 0
        self.model.eval()

    def update_steps(self, samples: Sequence[Sample], *,
                     cancel: CancelToken | None = None) -> Generator[Progress, None, LiveUpdate]:
        """A few optimisation steps on crops of *samples*' labelled pixels.

        Raises
        ------
        DataError
            No sample holds a labelled pixel, or a label is not a class of the model.
        TaskCancelled
            *cancel* was set (the steps done so far stay in the model).
        """
        if not samples:
            raise DataError("live update: no labelled image to learn from")
        check_labels(samples, self.meta.num_classes)
        dataset = SegmentationDataset(samples, self.meta.preprocessing, crop_size=self.crop_size,
                                      crops_per_epoch=self.steps * self.batch_size, scale=(0.75, 1.25),
                                      augment=build_augmentation(None), seed=self.seed)
        dataset.set_epoch(self.updates)  # each update draws other crops
        start = time.perf_counter()
        losses: list[float] = []
        self.model.train()
        if self.frozen is not None:
            self.frozen.keep_frozen_in_eval()
        try:
            for step in range(self.steps):
                if cancel is not None:
                    cancel.raise_if_cancelled()
                if step and self.time_budget_s is not None and time.perf_counter() - start > self.time_budget_s:
                    break
                items = [dataset[step * self.batch_size + k] for k in range(self.batch_size)]
                images = torch.stack([item["image"] for item in items]).to(self.device)
                target = torch.stack([item["target"] for item in items]).to(self.device)
                loss = self.loss_fn(self.model(images).float(), target, None)
                if not torch.isfinite(loss):
                    raise InvalidArgumentError(f"live update diverged (the loss is {loss.item()})")
                self.optimizer.zero_grad(set_to_none=True)
                loss.backward()
                self.optimizer.step()
                losses.append(float(loss.item()))
                self.total_steps += 1
                yield Progress(step + 1, self.steps, message=f"live update: step {step + 1}/{self.steps}",
                               stage="train", metrics={"loss": losses[-1]})
        finally:
            self.model.eval()
        self.updates += 1
        return LiveUpdate(len(losses), time.perf_counter() - start, losses[0], losses[-1], self.updates)

    def predictor(self, *, tile_size: int = 512) -> Predictor:
        """A predictor running the live model as it is now (fp32: its weights keep changing)."""
        return Predictor(self.model, preprocessing=self.meta.preprocessing, device=self.device,
                         precision="fp32", tile_size=tile_size)

    def save(self, path: str | os.PathLike[str], *, parent: str | None = None) -> CheckpointMeta:
        """Write the live model as a checkpoint (to keep it as a model version)."""
        provenance = json_safe({**self.meta.provenance, "live_update": {
            "updates": self.updates, "steps": self.total_steps, "parent": parent,
            "head_only": self.frozen is not None}})
        meta = dataclasses.replace(self.meta, provenance=provenance)
        save_checkpoint(path, self.model, meta)
        return meta
