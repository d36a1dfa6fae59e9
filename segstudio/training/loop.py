"""The training loop, as a generator.

:func:`train_steps` yields :class:`~segstudio.tasks.Progress` after every
optimisation step (``stage="train"``), after every validation
(``stage="val"``) and at the end of every epoch (``stage="epoch"``), checks
the cancel token at every step, and returns a :class:`TrainResult`.

Crops come from the labelled pixels (:mod:`segstudio.training.sampling`);
an epoch covers the labelled pixels once. A run is as long as its epochs,
its steps or its time budget say, whichever ends first; the learning rate
warms up and then decays over that length (by the clock when a time budget
is set). At the end of each epoch (skipping epochs while writing takes more
than a tenth of the time, see ``_SAVE_SHARE``), and when the run stops, it
writes, each file atomically:

* ``last.safetensors``: the model, with the epoch, step, scores and history
  in the checkpoint's provenance;
* ``best.safetensors``: the same, when validation mIoU improved;
* ``train_state.pt``: optimizer, scaler and RNG state, epoch, step, time
  used and history (plain tensors and containers, readable with
  ``torch.load(weights_only=True)``).

After the last step the model is checked for collapse
(:mod:`segstudio.training.collapse`): one class everywhere on its own
training pixels, or no better than always answering the most common class.
The result, the checkpoints' provenance and the log say so.

Cancelling raises :class:`~segstudio.tasks.TaskCancelled` and leaves the
files of the last saved epoch as they were; ``resume=True`` picks up from
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
from segstudio.training.collapse import CollapseReport, check_collapse
from segstudio.training.config import TrainConfig, resolve_amp, resolve_device
from segstudio.training.data import Sample, SegmentationDataset, check_labels
from segstudio.training.distributed import DistributedContext
from segstudio.training.evaluate import evaluate
from segstudio.training.freeze import freeze_backbone, restore_requires_grad
from segstudio.training.losses import IGNORE_INDEX, border_weight_map, build_loss
from segstudio.training.pairwise import affinity_loss
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

# In a run with a time budget, a validation is skipped while the last one
# took more than this share of the time since (large validation images must
# not eat the budget). Otherwise every epoch validates: an epoch covers the
# labelled training pixels once, and a forward pass over the validation
# pixels costs a fraction of that.
_VALIDATION_SHARE = 0.25
# An epoch can be a single step (a fully labelled 512 x 512 image is four
# crops), so its files are skipped while they cost too much: a save whose
# last one took more than _COSTLY_S seconds, while that was more than this
# share of the time since (a VGG net's files with their optimizer state are
# gigabytes). The last epoch always saves, and so does one whose validation
# improved.
_SAVE_SHARE = 0.1
_COSTLY_S = 1.0

#: the clock of time budgets (a module attribute, so tests can drive it)
_clock = time.monotonic


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
    #: stopped by the time budget before the steps or epochs asked for
    stopped_early: bool = False
    #: the collapse check of the final model (``None`` when the run trained nothing new)
    collapse: CollapseReport | None = None


@dataclass
class _Plan:
    """The length of a run, as the data and the settings make it."""

    steps_per_epoch: int
    #: ``None``: the time budget alone decides
    total_steps: int | None
    budget_s: float | None

    def progress(self, step: int, elapsed_s: float) -> float:
        """How far the run is, 0..1: the larger of its step and time shares."""
        shares = []
        if self.total_steps:
            shares.append(step / self.total_steps)
        if self.budget_s:
            shares.append(elapsed_s / self.budget_s)
        return min(1.0, max(shares))

    def done(self, step: int, elapsed_s: float) -> bool:
        return (self.total_steps is not None and step >= self.total_steps) or (
            self.budget_s is not None and elapsed_s >= self.budget_s
        )

    def estimated_total(self, step: int, elapsed_s: float) -> int:
        """Steps of the whole run: exact for step counts, estimated from the pace for a time budget."""
        progress = self.progress(step, elapsed_s)
        if self.total_steps is not None and (self.budget_s is None or progress == step / self.total_steps):
            return self.total_steps
        return max(step, round(step / progress)) if progress > 0 else step + 1


def lr_factor(schedule: str, progress: float, warmup: float, *, step_end: float | None = None) -> float:
    """The learning rate's share of its base value for a step that starts at
    *progress* (0..1) of the run and ends at *step_end* (the same when unknown):
    the decay follows the start, the linear warm-up the end (so the first step
    does learn)."""
    decay = {
        "poly": max(0.0, 1.0 - progress) ** 0.9,
        "cosine": 0.5 * (1.0 + math.cos(math.pi * min(progress, 1.0))),
        "constant": 1.0,
    }[schedule]
    # under a time budget a step's end is unknown: the first one gets a tenth of the rate
    end = max(progress if step_end is None else step_end, 0.1 * warmup)
    if warmup > 0 and end < warmup:
        return decay * end / warmup
    return decay


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


def _dataset(
    train_samples: Sequence[Sample], config: TrainConfig, base: CheckpointMeta, world: int
) -> tuple[SegmentationDataset, int]:
    """The crops of a run and the steps of one epoch."""
    weight_maps = None
    if config.border_weight:
        weight_maps = [border_weight_map(labels, base.num_classes) for _, labels in train_samples]
    augment = build_augmentation(None) if config.augment else None
    dataset = SegmentationDataset(
        train_samples, base.preprocessing, crop_size=config.crop_size, scale=(0.75, 1.25) if config.augment else None,
        augment=augment, weight_maps=weight_maps, class_share=config.class_share, seed=config.seed,
    )
    per_step = config.batch_size * world
    steps_per_epoch = max(1, -(-len(dataset) // per_step))
    dataset.length = steps_per_epoch * per_step
    return dataset, steps_per_epoch


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
    """Train ``model`` on in-memory samples; a task generator.

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
        ``last.safetensors``, with the time it had already used. A run that
        already reached its length returns at once.
    distributed:
        This process's place in a torchrun job (from
        :func:`~segstudio.training.distributed.init_distributed`): the model
        is wrapped in ``DistributedDataParallel`` on the context's device,
        each rank trains on its share of each epoch's crops (``batch_size``
        per rank), and only rank 0 validates and writes files; the ranks
        meet at a barrier after every epoch. Every rank must be given the
        same samples and settings.

    Yields
    ------
    Progress
        ``done`` = optimisation steps so far, ``total`` = all steps of the
        run (estimated from the pace under a time budget).
        ``stage="train"``: metrics ``loss``, ``lr``, ``images_per_s``,
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
    world = 1 if distributed is None else distributed.world_size

    run = RunState()
    saved: dict[str, Any] = {}
    if resume:
        run, saved = load_run_state(out, model)
        check_resumed_config(saved.get("config", {}), config)
    dataset, steps_per_epoch = _dataset(train_samples, config, base, world)
    total_steps = config.steps if config.steps is not None else (
        config.epochs * steps_per_epoch if config.epochs is not None else None
    )
    plan = _Plan(steps_per_epoch, total_steps, config.time_budget_s)
    if plan.done(run.step, run.elapsed_s):
        log.info("the run in %s already finished (%d steps, %.0f s); nothing to do", out, run.step, run.elapsed_s)
        return _result(out, run, stopped=False)
    loss_name = config.resolved_loss(dataset.sampler.class_pixels())
    sampler = None
    if distributed is not None:
        sampler = dist_utils.make_sampler(dataset, distributed, config.seed)

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
        scaler = torch.amp.GradScaler(device.type) if amp_dtype == torch.float16 else None
        if resume:
            restore_optimizers(saved, optimizer, scaler, out)
        loss_fn = build_loss(loss_name, config.class_weights).to(device)
        unit = tuple(torch.tensor(v, dtype=torch.float32, device=device)[:, None, None]
                     for v in (base.preprocessing.mean, base.preprocessing.std))
        length = [f"{total_steps} steps" if total_steps is not None else None,
                  f"{config.time_budget_s:.0f} s" if config.time_budget_s else None]
        log.info(
            "training %s on %d image(s) (%d labelled pixels; %d for validation) for %s (%d steps per epoch), "
            "%s loss, %s lr %g, on %s%s%s",
            base.architecture, len(train_samples), dataset.sampler.labelled_pixels, len(val_samples),
            " or ".join(x for x in length if x), steps_per_epoch, loss_name, config.optimizer, config.effective_lr,
            device, f" with {str(amp_dtype).removeprefix('torch.')} autocast" if amp_dtype else "",
            f", {distributed.world_size} processes ({distributed.backend})" if distributed is not None else "",
        )
        started = _clock() - run.elapsed_s
        last_validation_s = last_save_s = 0.0
        since_validation = since_save = _clock()
        stopped = False
        first_step = run.step
        while run.step == first_step or not plan.done(run.step, _clock() - started):
            # epoch e is steps [e * steps_per_epoch, (e + 1) * steps_per_epoch): a run
            # stopped inside an epoch resumes it at the crop where it stopped
            epoch, offset = divmod(run.step, steps_per_epoch)
            dataset.set_epoch(epoch)
            if sampler is None:
                order = list(range(len(dataset)))
            else:
                sampler.set_epoch(epoch)
                order = list(sampler)
                dist_utils.record_samples(distributed, epoch + 1, order)
            loader = DataLoader(dataset, batch_size=config.batch_size, sampler=order[offset * config.batch_size:],
                                drop_last=True, num_workers=config.num_workers, pin_memory=device.type == "cuda")
            net.train()
            if frozen is not None:
                frozen.keep_frozen_in_eval()
            losses: list[float] = []
            epoch_started = last = time.perf_counter()
            cut_short = False
            for batch in loader:
                elapsed = _clock() - started
                # every run takes at least one step, whatever its budget
                done = run.step > first_step and plan.done(run.step, elapsed)
                if config.time_budget_s is not None:
                    # rank 0's clock decides, so that every rank stops at the same step
                    done = dist_utils.main_decides(done, distributed)
                if done:
                    cut_short = True
                    break
                _check_cancel(cancel)
                lr = config.effective_lr * lr_factor(config.schedule, plan.progress(run.step, elapsed),
                                                     config.warmup, step_end=plan.progress(run.step + 1, elapsed))
                for group in optimizer.param_groups:
                    group["lr"] = lr
                loss = _step(net, batch, loss_fn, optimizer, scaler, device, amp_dtype, config, run.step, unit)
                run.step += 1
                losses.append(loss)
                now = time.perf_counter()
                images_per_s = batch["image"].shape[0] / max(now - last, 1e-9)
                yield Progress(
                    run.step, plan.estimated_total(run.step, _clock() - started),
                    message=f"epoch {epoch + 1}", stage="train",
                    metrics={"loss": loss, "lr": lr, "images_per_s": images_per_s, "epoch": epoch + 1},
                )
                # the consumer's time (a GUI repainting) is not training time
                last = time.perf_counter()
            run.elapsed_s = _clock() - started
            if not losses:
                # the run's length ran out right at the start of an epoch: it ends with the last one
                epoch -= 1
                record: dict[str, Any] = {**run.history.pop(), "elapsed_s": run.elapsed_s}
                finished = True
            else:
                finished = plan.done(run.step, run.elapsed_s) or cut_short
                record = {
                    "epoch": epoch + 1,
                    "step": run.step,
                    "train_loss": dist_utils.mean_across(float(np.mean(losses)), distributed),
                    "lr": lr,
                    "time_s": time.perf_counter() - epoch_started,
                    "elapsed_s": run.elapsed_s,
                }
                if run.step - epoch * steps_per_epoch < steps_per_epoch:
                    record["partial"] = True  # the run's length ended inside this epoch
            scores = None
            due = (epoch + 1) % config.val_every == 0 or finished
            if due and config.time_budget_s is not None and not finished:
                due = last_validation_s <= _VALIDATION_SHARE * (_clock() - since_validation)
            if is_main and val_samples and due:
                validation_started = _clock()
                scores = evaluate(
                    model, val_samples, base, device, amp_dtype=amp_dtype,
                    channels_last=config.channels_last, cancel=cancel,
                )
                since_validation = _clock()
                last_validation_s = since_validation - validation_started
                record.update(
                    val_mean_iou=scores.mean_iou, val_mean_dice=scores.mean_dice,
                    val_pixel_accuracy=scores.pixel_accuracy, val_iou=list(scores.iou), val_dice=list(scores.dice),
                )
                yield Progress(
                    run.step, plan.estimated_total(run.step, run.elapsed_s), message=f"epoch {epoch + 1}",
                    stage="val", metrics={"mean_iou": scores.mean_iou, "mean_dice": scores.mean_dice,
                                          "pixel_accuracy": scores.pixel_accuracy, "epoch": epoch + 1},
                )
            if run.history and run.history[-1].get("partial") and run.history[-1]["epoch"] == epoch + 1:
                run.history.pop()  # the epoch a resumed run has now finished
            run.history.append(json_safe(record))
            run.epoch = epoch + 1
            run.finished = finished
            improved = scores is not None and scores.mean_iou > run.best_mean_iou
            if improved:
                run.best_mean_iou = scores.mean_iou
            if finished:
                model.eval()
                if is_main:
                    run.collapse = check_collapse(model, train_samples, val_samples, base, device,
                                                  amp_dtype=amp_dtype, channels_last=config.channels_last,
                                                  cancel=cancel)
                    if run.collapse.collapsed:
                        log.warning("the model collapsed: %s", run.collapse.reason)
            if is_main and (finished or improved or _save_due(last_save_s, _clock() - since_save)):
                save_started = _clock()
                _save_epoch(out, model, _epoch_meta(base, run, total_steps, config),
                            improved or not val_samples, _state(run, total_steps, steps_per_epoch, optimizer,
                                                                scaler, config))
                since_save = _clock()
                last_save_s = since_save - save_started
            # the other ranks wait for rank 0's files before going on
            dist_utils.barrier(distributed)
            epoch_metrics = {"epoch": run.epoch, "loss": record["train_loss"]}
            if scores is not None:
                epoch_metrics.update(mean_iou=scores.mean_iou, mean_dice=scores.mean_dice,
                                     pixel_accuracy=scores.pixel_accuracy)
            yield Progress(run.step, plan.estimated_total(run.step, run.elapsed_s), message=f"epoch {run.epoch}",
                           stage="epoch", metrics=epoch_metrics)
            if finished:
                stopped = total_steps is not None and run.step < total_steps
                if stopped:
                    log.info("time budget of %.0f s used up after %d steps; stopping", config.time_budget_s,
                             run.step)
                break
        model.eval()
        return _result(out, run, stopped=stopped)
    finally:
        if frozen is not None:
            restore_requires_grad(frozen)


def _save_due(last_save_s: float, since_s: float) -> bool:
    """Whether an epoch's files are written: always while a save is cheap."""
    return last_save_s <= _COSTLY_S or last_save_s <= _SAVE_SHARE * since_s


def _epoch_meta(base: CheckpointMeta, run: RunState, total_steps: int | None, config: TrainConfig) -> CheckpointMeta:
    provenance = {
        "epoch": run.epoch, "step": run.step, "total_steps": total_steps, "elapsed_s": run.elapsed_s,
        "metrics": run.history[-1], "history": run.history, "train_config": config.to_dict(),
        "saved": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    if run.collapse is not None:
        provenance["collapse"] = run.collapse.to_dict()
    return dataclasses.replace(base, provenance=json_safe({**base.provenance, **provenance}))


def _state(run: RunState, total_steps: int | None, steps_per_epoch: int, optimizer: torch.optim.Optimizer,
           scaler: torch.amp.GradScaler | None, config: TrainConfig) -> dict[str, Any]:
    return {
        "format": STATE_FORMAT, "epoch": run.epoch, "step": run.step, "total_steps": total_steps,
        "steps_per_epoch": steps_per_epoch, "elapsed_s": run.elapsed_s, "history": run.history,
        "best_mean_iou": run.best_mean_iou, "finished": run.finished,
        "optimizer": optimizer.state_dict(), "scaler": scaler.state_dict() if scaler is not None else None,
        "rng": rng_state(), "config": config.to_dict(),
    }


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
    unit: tuple[torch.Tensor, torch.Tensor],
) -> float:
    """One optimisation step; returns the loss. ``unit``: the preprocessing's
    mean and std (``C x 1 x 1``), to take the input back to 0..1."""
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
    if config.affinity > 0 and bool((target == IGNORE_INDEX).any()):
        # sparse labels: spread them into the unlabelled pixels along the image (back in 0..1)
        mean, std = unit
        grey = (images.float() * std + mean).mean(dim=1)
        inside = batch.get("inside")
        inside = inside.to(device, non_blocking=non_blocking) if inside is not None else None
        loss = loss + config.affinity * affinity_loss(logits, grey, target, inside)
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
        collapse=run.collapse,
    )


def _num(value: float | None) -> float:
    return math.nan if value is None else float(value)
