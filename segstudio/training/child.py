"""The training process's own side: runs the job, reports, obeys the window.

:class:`~segstudio.training.process.TrainingProcess` starts
:func:`child_main` in a spawned process. Everything here runs in that
child: it imports torch, trains with :func:`~segstudio.training.loop.train_steps`,
checks pause and cancel between steps, and sends small dicts back.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import signal
import time
import traceback
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from segstudio.errors import DataError, SegstudioError
from segstudio.tasks import CancelToken, TaskCancelled
from segstudio.training.project_data import load_sources
from segstudio.training.versions import curves_from_history

if TYPE_CHECKING:
    from segstudio.training.process import TrainJobSpec

log = logging.getLogger(__name__)

#: how often a paused child looks whether its window is still there
_PAUSE_POLL_S = 0.5

Send = Callable[[dict[str, Any]], None]


class _Control(CancelToken):
    """The cancel token the loop checks before every step: it also pauses,
    and stops the run when the window's process has gone away."""

    def __init__(self, cancel_event: Any, running_event: Any, send: Send) -> None:
        super().__init__()
        self._cancel_event = cancel_event
        self._running = running_event
        self._send = send
        self.step = 0
        self._parent = multiprocessing.parent_process()

    def _orphaned(self) -> bool:
        return self._parent is not None and not self._parent.is_alive()

    def cancel(self) -> None:
        self._cancel_event.set()

    @property
    def cancelled(self) -> bool:
        return self._cancel_event.is_set()

    def raise_if_cancelled(self) -> None:
        if not self._running.is_set() and not self._cancel_event.is_set():
            self._send({"type": "paused", "step": self.step})
            # Event.wait sleeps in the kernel: a paused run costs no CPU
            while not self._running.wait(_PAUSE_POLL_S):
                if self._orphaned():
                    break
            self._send({"type": "resumed", "step": self.step})
        if self._cancel_event.is_set():
            raise TaskCancelled("cancelled by the user")
        if self._orphaned():
            raise TaskCancelled("the window that started the run has gone")


class _ForwardLogs(logging.Handler):
    def __init__(self, send: Send) -> None:
        super().__init__(logging.INFO)
        self._send = send

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self._send({"type": "log", "level": record.levelname, "message": record.getMessage()})
        except (ValueError, OSError, AssertionError):
            # the queue is closed while the interpreter winds down
            pass


def child_main(spec: TrainJobSpec, queue: Any, cancel_event: Any, running_event: Any) -> None:
    """Entry point of the child process."""
    # Ctrl+C in the terminal reaches the whole process group; the window decides when to stop
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    send: Send = queue.put
    package_log = logging.getLogger("segstudio")
    package_log.setLevel(logging.INFO)
    package_log.addHandler(_ForwardLogs(send))
    package_log.propagate = False
    control = _Control(cancel_event, running_event, send)
    try:
        _run_job(spec, send, control)
    except Exception as exc:  # noqa: BLE001 - every failure goes back to the window as one message
        send({
            "type": "error",
            "kind": _error_kind(exc),
            "message": _error_text(exc),
            "traceback": traceback.format_exc(),
        })
    finally:
        queue.close()
        queue.join_thread()


def _error_kind(exc: BaseException) -> str:
    if isinstance(exc, MemoryError):
        return "oom"
    if isinstance(exc, RuntimeError) and "out of memory" in str(exc).lower():
        return "oom"  # torch.cuda.OutOfMemoryError, and CPU allocator failures
    if isinstance(exc, SegstudioError):
        return "user"
    return "bug"


def _error_text(exc: BaseException) -> str:
    if _error_kind(exc) == "oom":
        return (
            "training ran out of memory; lower the batch size or the crop size, or turn on fast mode "
            f"(freeze the backbone) ({str(exc).splitlines()[0] if str(exc) else type(exc).__name__})"
        )
    return str(exc) or type(exc).__name__


def thread_count(requested: int | None = None) -> int:
    """torch threads for a training child: ``requested``, or leave one core to the window."""
    import torch

    if requested is not None:
        return requested
    return max(1, min(torch.get_num_threads(), (os.cpu_count() or 2) - 1))


def _run_job(spec: TrainJobSpec, send: Send, control: _Control) -> None:
    import torch

    from segstudio.models.adapt import adapt_to_classes
    from segstudio.models.checkpoint import load_checkpoint, make_meta, read_meta
    from segstudio.training.config import TrainConfig, resolve_device
    from segstudio.training.loop import train_steps
    from segstudio.training.state import BEST_NAME, LAST_NAME

    started = time.monotonic()
    threads = thread_count(spec.threads)
    torch.set_num_threads(threads)
    config = TrainConfig.from_dict(spec.config)
    device = resolve_device(config.device)
    model, parent_meta = load_checkpoint(spec.base_checkpoint)
    class_names, class_colors = _job_classes(spec, parent_meta)
    adaptation = None
    if [n.casefold() for n in class_names] != [n.casefold() for n in parent_meta.class_names]:
        torch.manual_seed(config.seed)  # the new classes' outputs start the same way every time
        model, report = adapt_to_classes(model, parent_meta.class_names, class_names)
        adaptation = {"kept": report.kept, "new": report.new, "dropped": report.dropped,
                      "reinitialised": report.reinitialised}
        log.info("the model learns the project's %d classes: kept %s; new %s; dropped %s", len(class_names),
                 ", ".join(report.kept) or "none", ", ".join(report.new) or "none",
                 ", ".join(report.dropped) or "none")
    classes_changed = adaptation is not None
    # volume slices reach the model through its own normalisation, as in inference
    train = load_sources(spec.train, len(class_names), parent_meta.preprocessing)
    val = load_sources(spec.val, len(class_names), parent_meta.preprocessing)
    if not train.samples:
        raise DataError(f"none of the {len(spec.train)} training image(s) could be used: "
                        + "; ".join(str(e) for e in train.skipped[:3]))
    send({
        "type": "started", "pid": os.getpid(), "train_images": train.stems, "val_images": val.stems,
        "skipped": [str(e) for e in train.skipped + val.skipped], "threads": threads, "device": str(device),
        "classes": adaptation,
    })
    provenance = {"parent": os.fspath(spec.base_checkpoint), "parent_version": spec.parent_id,
                  "images": train.stems, "val_images": val.stems}
    if classes_changed:
        provenance.update(classes_changed=True, class_changes=adaptation,
                          parent_class_names=list(parent_meta.class_names))
    meta = make_meta(model, class_names=class_names, class_colors=class_colors,
                     preprocessing=parent_meta.preprocessing, provenance=provenance)
    task = train_steps(model, train.samples, val.samples, config, spec.out_dir, meta=meta, cancel=control)
    step_losses: list[float] = []
    epochs_seen = 0
    result = None
    status = "finished"
    loop_started = time.monotonic()
    try:
        while True:
            try:
                progress = next(task)
            except StopIteration as stop:
                result = stop.value
                break
            metrics = progress.metrics
            if progress.stage == "train":
                control.step = progress.done
                step_losses.append(float(metrics["loss"]))
                # validation time is in the average too: it recurs every epoch
                per_step = (time.monotonic() - loop_started) / len(step_losses)
                eta = per_step * (progress.total - progress.done) if progress.total else None
                send({
                    "type": "progress", "step": progress.done, "total": progress.total,
                    "epoch": int(metrics["epoch"]), "loss": float(metrics["loss"]), "lr": float(metrics["lr"]),
                    "images_per_s": float(metrics["images_per_s"]), "eta_s": eta,
                })
                if spec.fail_after_steps is not None and len(step_losses) >= spec.fail_after_steps:
                    raise RuntimeError(f"failure requested by the test hook after {len(step_losses)} step(s)")
            elif progress.stage == "epoch":
                epochs_seen += 1
                send({
                    "type": "epoch", "epoch": int(metrics["epoch"]), "total_steps": progress.total,
                    "loss": metrics.get("loss"), "val_mean_iou": metrics.get("mean_iou"),
                    "val_mean_dice": metrics.get("mean_dice"),
                })
    except TaskCancelled as exc:
        task.close()
        if epochs_seen == 0:
            send({"type": "cancelled", "message": f"{exc}; no epoch had finished, so there is nothing to keep"})
            return
        status = "cancelled"
    out = Path(spec.out_dir)
    if result is not None:
        history = result.history
        checkpoint = result.best_path if (val.samples and result.best_path) else result.last_path
        steps, epochs_done, stopped_early = result.steps, result.epochs_done, result.stopped_early
    else:
        provenance = read_meta(out / LAST_NAME).provenance
        history = list(provenance.get("history") or [])
        checkpoint = out / BEST_NAME if (val.samples and (out / BEST_NAME).is_file()) else out / LAST_NAME
        steps, epochs_done, stopped_early = int(provenance.get("step", 0)), len(history), True
        # the steps of the unfinished epoch did not make it into the checkpoint
        del step_losses[steps:]
    parent_scores = scores = None
    if val.samples:
        send({"type": "scoring"})
        if classes_changed:
            # the parent predicts other classes: there is nothing fair to compare
            scores = score_checkpoint(checkpoint, val.samples, device=device).to_dict()
        else:
            parent_scores, scores = score_versions(spec.base_checkpoint, checkpoint, val.samples, device=device)
            parent_scores, scores = parent_scores.to_dict(), scores.to_dict()
    collapse = result.collapse.to_dict() if result is not None and result.collapse is not None else None
    version_meta = {
        "parent": spec.parent_id, "images": train.stems, "val_images": val.stems, "settings": config.to_dict(),
        "curves": curves_from_history(history, step_losses), "scores": scores, "parent_scores": parent_scores,
        "status": status, "collapse": collapse,
    }
    if classes_changed:
        version_meta["name"] = _changed_classes_name(spec.parent_id, adaptation)
    send({
        "type": "finished", "status": status, "checkpoint": os.fspath(checkpoint), "history": history,
        "scores": scores, "parent_scores": parent_scores, "steps": steps, "epochs_done": epochs_done,
        "stopped_early": stopped_early, "elapsed_s": time.monotonic() - started, "version_meta": version_meta,
        "classes_changed": classes_changed, "classes": adaptation, "collapse": collapse,
    })


def _job_classes(spec: TrainJobSpec, parent_meta: Any) -> tuple[list[str], list[tuple[int, int, int]]]:
    """The classes the new version predicts: the project's when the job names them.

    Without colours from the job, a class the parent knows keeps its colour
    and a new one takes the default palette's.
    """
    from segstudio.models.adapt import class_mapping
    from segstudio.models.checkpoint import default_class_colors

    if spec.class_names is None:
        return list(parent_meta.class_names), list(parent_meta.class_colors)
    names = list(spec.class_names)
    if spec.class_colors is not None:
        return names, [tuple(c) for c in spec.class_colors]
    colors = default_class_colors(len(names))
    for new, old in class_mapping(parent_meta.class_names, names):
        colors[new] = tuple(parent_meta.class_colors[old])
    return names, colors


def _changed_classes_name(parent_id: str | None, adaptation: dict[str, list[str]]) -> str:
    """The version's label when it was trained for other classes than its parent's."""
    parts = []
    if adaptation["new"]:
        parts.append("new " + ", ".join(adaptation["new"]))
    if adaptation["dropped"]:
        parts.append("without " + ", ".join(adaptation["dropped"]))
    if not parts:
        parts.append("classes reordered")
    origin = f"from {parent_id}" if parent_id else "from its parent"
    return f"trained {origin} for the project's classes ({'; '.join(parts)})"


def score_checkpoint(
    checkpoint: str | os.PathLike[str], val_samples: Sequence[tuple[Any, Any]], *, device: Any = "cpu"
) -> Any:
    """Score one checkpoint on ``(image, labels)`` pairs.

    Returns
    -------
    Scores
        Per-class and mean IoU/Dice (:class:`~segstudio.metrics.Scores`).
    """
    import torch

    from segstudio.models.checkpoint import load_checkpoint
    from segstudio.training.evaluate import evaluate

    device = torch.device(device)
    model, meta = load_checkpoint(checkpoint)
    model.to(device)
    return evaluate(model, val_samples, meta, device)


def score_versions(
    parent_checkpoint: str | os.PathLike[str],
    new_checkpoint: str | os.PathLike[str],
    val_samples: Sequence[tuple[Any, Any]],
    *,
    device: Any = "cpu",
) -> tuple[Any, Any]:
    """Score a parent model and its fine-tuned child on the same images.

    Parameters
    ----------
    parent_checkpoint, new_checkpoint:
        The two checkpoints.
    val_samples:
        ``(image, labels)`` pairs (unlabelled pixels, 255 in a uint8 map and
        65535 in a uint16 one, are left out).
    device:
        A torch device or its name.

    Returns
    -------
    (parent_scores, new_scores)
        Two :class:`~segstudio.metrics.Scores` (per-class and mean IoU/Dice).
    """
    parent = score_checkpoint(parent_checkpoint, val_samples, device=device)
    return parent, score_checkpoint(new_checkpoint, val_samples, device=device)
