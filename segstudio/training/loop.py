"""The fine-tuning loop, as a generator.

:func:`train_steps` yields :class:`~segstudio.tasks.Progress` after every
optimisation step (``stage="train"``), after every validation
(``stage="val"``) and at the end of every epoch (``stage="epoch"``), checks
the cancel token at every step, and returns a :class:`TrainResult`.

At the end of each epoch it writes, each file atomically:

* ``last.safetensors``: the model, with the epoch, step, scores and history
  in the checkpoint's provenance;
* ``best.safetensors``: the same, when validation mIoU improved;
* ``train_state.pt``: optimizer, schedule, scaler and RNG state, epoch,
  step and history (plain tensors and containers, readable with
  ``torch.load(weights_only=True)``).

Cancelling raises :class:`~segstudio.tasks.TaskCancelled` and leaves the
files of the last finished epoch as they were; ``resume=True`` picks up from
them at the same step and the same point of the learning-rate schedule.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import os
import time
from collections.abc import Generator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader

from segstudio.errors import DataError, InvalidArgumentError
from segstudio.metrics import Scores
from segstudio.models.checkpoint import CheckpointMeta, make_meta, save_checkpoint
from segstudio.preprocess import in_channels_of
from segstudio.serialize import json_safe
from segstudio.tasks import CancelToken, Progress
from segstudio.training import distributed as dist_utils
from segstudio.training.augment import build_augmentation
from segstudio.training.config import TrainConfig, resolve_amp, resolve_device
from segstudio.training.data import Sample, SegmentationDataset, check_labels
from segstudio.training.distributed import DistributedContext
from segstudio.training.evaluate import evaluate
from segstudio.training.freeze import freeze_backbone, restore_requires_grad
from segstudio.training.losses import border_weight_map, build_loss
from segstudio.training.state import (
    BEST_NAME,
    LAST_NAME,
    STATE_FORMAT,
    STATE_NAME,
    RunState,
    atomic_torch_save,
    check_resumed_config,
    load_run_state,
    restore_optimizers,
    rng_state,
)

log = logging.getLogger(__name__)

@dataclass
class TrainResult:
    """What a training run produced."""

    last_path: Path
    #: ``None`` when no epoch has been validated yet
    best_path: Path | None
    #: one dict per finished epoch: ``epoch``, ``step``, ``train_loss``,
    #: ``lr``, ``time_s`` and, after a validation, ``val_mean_iou``,
    #: ``val_mean_dice``, ``val_pixel_accuracy``, ``val_iou``, ``val_dice``
    history: list[dict[str, Any]] = field(default_factory=list)
    #: scores of the last validation, if any
    final_scores: Scores | None = None
    steps: int = 0
    epochs_done: int = 0
    #: stopped by the time budget before the last epoch
    stopped_early: bool = False


def _seeds(seed: int, epoch: int) -> tuple[int, int]:
    """Two independent seeds (augmentation, data order) for one epoch."""
    state = np.random.SeedSequence([seed, epoch]).generate_state(2, dtype=np.uint64)
    return int(state[0] >> np.uint64(1)), int(state[1] >> np.uint64(1))


def _schedule(kind: str, total_steps: int):
    total = max(total_steps, 1)

    # plain functions (not partials or lambdas with state) keep LambdaLR's
    # state_dict free of pickled code
    def poly(step: int) -> float:
        return max(0.0, 1.0 - step / total) ** 0.9

    def cosine(step: int) -> float:
        return 0.5 * (1.0 + math.cos(math.pi * min(step, total) / total))

    def constant(step: int) -> float:
        return 1.0

    return {"poly": poly, "cosine": cosine, "constant": constant}[kind]


def _build_optimizer(config: TrainConfig, parameters: Sequence[nn.Parameter]) -> torch.optim.Optimizer:
    if config.optimizer == "sgd":
        return torch.optim.SGD(
            parameters, lr=config.effective_lr, momentum=0.9, weight_decay=config.effective_weight_decay
        )
    return torch.optim.AdamW(parameters, lr=config.effective_lr, weight_decay=config.effective_weight_decay)


def _base_meta(model: nn.Module, meta: CheckpointMeta | Mapping[str, Any] | None) -> CheckpointMeta:
    if isinstance(meta, CheckpointMeta):
        return meta
    return make_meta(model, **dict(meta or {}))


def _check_cancel(cancel: CancelToken | None) -> None:
    if cancel is not None:
        cancel.raise_if_cancelled()


def train_steps(
    model: nn.Module,
    train_samples: Sequence[Sample],
    val_samples: Sequence[Sample],
    config: TrainConfig,
    out_dir: str | os.PathLike[str],
    *,
    meta: CheckpointMeta | Mapping[str, Any] | None = None,
    cancel: CancelToken | None = None,
    resume: bool = False,
    distributed: DistributedContext | None = None,
) -> Generator[Progress, None, TrainResult]:
    """Fine-tune ``model`` on in-memory samples; a task generator.

    Parameters
    ----------
    model:
        A model built by :func:`segstudio.models.get_model` (trained in
        place; it ends on the training device, in eval mode).
    train_samples, val_samples:
        ``(image, labels)`` pairs; labels are ``uint8`` class indices with
        255 = unlabelled, or ``uint16`` with 65535 = unlabelled (projects of
        more than 254 classes; the two may be mixed). The loss sees targets
        whose unlabelled pixels are
        :data:`~segstudio.training.losses.IGNORE_INDEX`. ``val_samples``
        may be empty: then nothing is validated and ``best.safetensors``
        follows the last epoch.
    config:
        The :class:`TrainConfig`.
    out_dir:
        Where the checkpoints and the training state go (created).
    meta:
        The checkpoints' metadata: a
        :class:`~segstudio.models.checkpoint.CheckpointMeta`, or keyword
        arguments for :func:`~segstudio.models.checkpoint.make_meta`
        (``class_names``, ``class_colors``, ``preprocessing``,
        ``provenance``).
    cancel:
        Checked before every step and every validation image.
    resume:
        Continue the run in ``out_dir`` from ``train_state.pt`` and
        ``last.safetensors``. A run that already reached ``config.epochs``
        returns at once.
    distributed:
        This process's place in a torchrun job (from
        :func:`~segstudio.training.distributed.init_distributed`): the model
        is wrapped in ``DistributedDataParallel`` on the context's device,
        each rank trains on its share of ``train_samples`` (``batch_size``
        per rank), and only rank 0 validates and writes files; the ranks
        meet at a barrier after every epoch. Every rank must be given the
        same samples and settings.

    Yields
    ------
    Progress
        ``done`` = optimisation steps so far, ``total`` = all steps of the
        run. ``stage="train"``: metrics ``loss``, ``lr``, ``images_per_s``,
        ``epoch``; ``stage="val"``: ``mean_iou``, ``mean_dice``,
        ``pixel_accuracy``, ``epoch``; ``stage="epoch"``: ``epoch``,
        ``loss`` and the validation scores if any.

    Returns
    -------
    TrainResult

    Raises
    ------
    TaskCancelled
        The token was cancelled; the previous epoch's files are intact.
    InvalidArgumentError, DataError, CheckpointError
        Bad settings, samples that do not fit the model, or a resume that
        finds no (or inconsistent) saved state.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    base = _base_meta(model, meta)
    if in_channels_of(base.preprocessing) != base.in_channels:
        raise InvalidArgumentError(
            f"the preprocessing has {in_channels_of(base.preprocessing)} channels, the model takes {base.in_channels}"
        )
    if not train_samples:
        raise DataError("there are no training samples")
    check_labels(list(train_samples) + list(val_samples), base.num_classes)
    if config.class_weights is not None and len(config.class_weights) != base.num_classes:
        raise InvalidArgumentError(
            f"{len(config.class_weights)} class weights were given for {base.num_classes} classes"
        )
    device = distributed.device if distributed is not None else resolve_device(config.device)
    amp_dtype = resolve_amp(config.amp, device)
    is_main = distributed is None or distributed.is_main
    rank = 0 if distributed is None else distributed.rank

    run = RunState()
    saved: dict[str, Any] = {}
    if resume:
        run, saved = load_run_state(out, model)
        check_resumed_config(saved.get("config", {}), config)
    if run.epoch >= config.epochs:
        log.info("the run in %s already finished %d epoch(s); nothing to do", out, run.epoch)
        return _result(out, run, stopped=False)

    weight_maps = None
    if config.border_weight:
        weight_maps = [border_weight_map(labels, base.num_classes) for _, labels in train_samples]
    if config.augment:
        augment = build_augmentation(config.crop_size)
    else:
        augment = build_augmentation(
            config.crop_size, scale=None, flips=False, rotations=False, brightness=0, contrast=0
        )
    dataset = SegmentationDataset(train_samples, base.preprocessing, augment=augment, weight_maps=weight_maps)
    sampler = None
    if distributed is not None:
        sampler = dist_utils.make_sampler(dataset, distributed, config.seed)
    per_rank = len(dataset) if sampler is None else len(sampler)
    # drop a ragged last batch (noisy BatchNorm statistics) unless that would drop everything
    drop_last = per_rank >= config.batch_size
    steps_per_epoch = per_rank // config.batch_size if drop_last else 1
    total_steps = steps_per_epoch * config.epochs

    frozen = freeze_backbone(model) if config.freeze_backbone else None
    try:
        trainable = [p for p in model.parameters() if p.requires_grad]
        if not trainable:
            raise InvalidArgumentError("the model has no trainable parameters")
        model.to(device)
        if config.channels_last:
            model.to(memory_format=torch.channels_last)
        # the forward/backward pass goes through DDP; validation and saving use the bare model
        net = dist_utils.wrap_model(model, distributed) if distributed is not None else model
        optimizer = _build_optimizer(config, trainable)
        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, _schedule(config.schedule, total_steps))
        scaler = torch.amp.GradScaler(device.type) if amp_dtype == torch.float16 else None
        if resume:
            restore_optimizers(saved, optimizer, scheduler, scaler, out)
        loss_fn = build_loss(config.loss, config.class_weights).to(device)
        log.info(
            "training %s on %d image(s) (%d for validation) for %d epoch(s), %d steps, on %s%s%s",
            base.architecture, len(train_samples), len(val_samples), config.epochs, total_steps, device,
            f" with {str(amp_dtype).removeprefix('torch.')} autocast" if amp_dtype else "",
            f", {distributed.world_size} processes ({distributed.backend})" if distributed is not None else "",
        )
        started = time.monotonic()
        stopped = False
        for epoch in range(run.epoch, config.epochs):
            augment_seed, order_seed = _seeds(config.seed, epoch)
            # each rank draws its own augmentations (same seed: same crops of different images)
            torch.manual_seed(augment_seed + rank)
            if sampler is None:
                loader = DataLoader(
                    dataset,
                    batch_size=config.batch_size,
                    shuffle=True,
                    drop_last=drop_last,
                    num_workers=config.num_workers,
                    generator=torch.Generator().manual_seed(order_seed),
                    pin_memory=device.type == "cuda",
                )
            else:
                sampler.set_epoch(epoch)
                dist_utils.record_samples(distributed, epoch + 1, list(sampler))
                loader = DataLoader(
                    dataset,
                    batch_size=config.batch_size,
                    sampler=sampler,
                    drop_last=drop_last,
                    num_workers=config.num_workers,
                    pin_memory=device.type == "cuda",
                )
            net.train()
            if frozen is not None:
                frozen.keep_frozen_in_eval()
            losses: list[float] = []
            epoch_started = last = time.perf_counter()
            for batch in loader:
                _check_cancel(cancel)
                loss = _step(net, batch, loss_fn, optimizer, scaler, device, amp_dtype, config, run.step)
                scheduler.step()
                run.step += 1
                losses.append(loss)
                now = time.perf_counter()
                images_per_s = batch["image"].shape[0] / max(now - last, 1e-9)
                yield Progress(
                    run.step, total_steps, message=f"epoch {epoch + 1}/{config.epochs}", stage="train",
                    metrics={"loss": loss, "lr": scheduler.get_last_lr()[0], "images_per_s": images_per_s,
                             "epoch": epoch + 1},
                )
                # the consumer's time (a GUI repainting) is not training time
                last = time.perf_counter()
            epoch_loss = float(np.mean(losses)) if losses else math.nan
            record: dict[str, Any] = {
                "epoch": epoch + 1,
                "step": run.step,
                "train_loss": dist_utils.mean_across(epoch_loss, distributed),
                "lr": scheduler.get_last_lr()[0],
                "time_s": time.perf_counter() - epoch_started,
            }
            scores = None
            if is_main and val_samples and ((epoch + 1) % config.val_every == 0 or epoch + 1 == config.epochs):
                scores = evaluate(
                    model, val_samples, base, device, amp_dtype=amp_dtype,
                    channels_last=config.channels_last, cancel=cancel,
                )
                record.update(
                    val_mean_iou=scores.mean_iou, val_mean_dice=scores.mean_dice,
                    val_pixel_accuracy=scores.pixel_accuracy, val_iou=list(scores.iou), val_dice=list(scores.dice),
                )
                yield Progress(
                    run.step, total_steps, message=f"epoch {epoch + 1}/{config.epochs}", stage="val",
                    metrics={"mean_iou": scores.mean_iou, "mean_dice": scores.mean_dice,
                             "pixel_accuracy": scores.pixel_accuracy, "epoch": epoch + 1},
                )
            run.history.append(json_safe(record))
            run.epoch = epoch + 1
            run.finished = run.epoch >= config.epochs
            improved = scores is not None and scores.mean_iou > run.best_mean_iou
            if improved:
                run.best_mean_iou = scores.mean_iou
            provenance = {
                "epoch": run.epoch, "step": run.step, "total_steps": total_steps,
                "metrics": run.history[-1], "history": run.history, "train_config": config.to_dict(),
                "saved": datetime.now(UTC).isoformat(timespec="seconds"),
            }
            meta_now = dataclasses.replace(base, provenance=json_safe({**base.provenance, **provenance}))
            if is_main:
                _save_epoch(out, model, meta_now, improved or not val_samples, {
                    "format": STATE_FORMAT, "epoch": run.epoch, "step": run.step, "total_steps": total_steps,
                    "steps_per_epoch": steps_per_epoch, "history": run.history,
                    "best_mean_iou": run.best_mean_iou, "finished": run.finished,
                    "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
                    "scaler": scaler.state_dict() if scaler is not None else None,
                    "rng": rng_state(), "config": config.to_dict(),
                })
            # the other ranks wait for rank 0's files before going on
            dist_utils.barrier(distributed)
            epoch_metrics = {"epoch": run.epoch, "loss": record["train_loss"]}
            if scores is not None:
                epoch_metrics.update(mean_iou=scores.mean_iou, mean_dice=scores.mean_dice,
                                     pixel_accuracy=scores.pixel_accuracy)
            yield Progress(run.step, total_steps, message=f"epoch {run.epoch}/{config.epochs}",
                           stage="epoch", metrics=epoch_metrics)
            out_of_time = (
                config.time_budget_s is not None
                and not run.finished
                and time.monotonic() - started >= config.time_budget_s
            )
            # rank 0's clock decides, so that every rank stops after the same epoch
            if dist_utils.main_decides(out_of_time, distributed):
                log.info("time budget of %.0f s used up after epoch %d; stopping", config.time_budget_s, run.epoch)
                stopped = True
                break
        model.eval()
        return _result(out, run, stopped=stopped)
    finally:
        if frozen is not None:
            restore_requires_grad(frozen)


def _save_epoch(
    out: Path, model: nn.Module, meta: CheckpointMeta, as_best: bool, state: dict[str, Any]
) -> None:
    """Write an epoch's files: weights first, then the training state that refers to them."""
    save_checkpoint(out / LAST_NAME, model, meta)
    if as_best:
        save_checkpoint(out / BEST_NAME, model, meta)
    atomic_torch_save(state, out / STATE_NAME)


def _step(
    model: nn.Module,
    batch: Mapping[str, torch.Tensor],
    loss_fn: nn.Module,
    optimizer: torch.optim.Optimizer,
    scaler: torch.amp.GradScaler | None,
    device: torch.device,
    amp_dtype: torch.dtype | None,
    config: TrainConfig,
    step: int,
) -> float:
    """One optimisation step; returns the loss."""
    non_blocking = device.type == "cuda"
    images = batch["image"].to(device, non_blocking=non_blocking)
    if config.channels_last:
        images = images.contiguous(memory_format=torch.channels_last)
    target = batch["target"].to(device, non_blocking=non_blocking)
    weights = batch.get("weights")
    if weights is not None:
        weights = weights.to(device, non_blocking=non_blocking)
    try:
        with torch.autocast(device.type, dtype=amp_dtype or torch.float32, enabled=amp_dtype is not None):
            logits = model(images)
    except ValueError as exc:
        if "Expected more than 1 value per channel" in str(exc):
            raise InvalidArgumentError(
                f"BatchNorm saw a 1 x 1 feature map with a batch of 1 ({exc}); "
                "use a larger crop size or batch size"
            ) from None
        raise
    # the loss runs in float32 whatever the autocast precision
    loss = loss_fn(logits.float(), target, weights)
    if not torch.isfinite(loss) and scaler is None:
        raise InvalidArgumentError(
            f"training diverged at step {step + 1} (the loss is {loss.item()}); lower the learning rate"
        )
    optimizer.zero_grad(set_to_none=True)
    if scaler is not None:
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()
    else:
        loss.backward()
        optimizer.step()
    return float(loss.detach())


def _result(out: Path, run: RunState, *, stopped: bool) -> TrainResult:
    best = out / BEST_NAME
    final = None
    for record in reversed(run.history):
        if record.get("val_iou") is not None:
            final = Scores(
                iou=tuple(math.nan if v is None else v for v in record["val_iou"]),
                dice=tuple(math.nan if v is None else v for v in record["val_dice"]),
                mean_iou=_num(record["val_mean_iou"]),
                mean_dice=_num(record["val_mean_dice"]),
                pixel_accuracy=_num(record["val_pixel_accuracy"]),
            )
            break
    return TrainResult(
        last_path=out / LAST_NAME,
        best_path=best if best.is_file() else None,
        history=list(run.history),
        final_scores=final,
        steps=run.step,
        epochs_done=run.epoch,
        stopped_early=stopped,
    )


def _num(value: float | None) -> float:
    return math.nan if value is None else float(value)
