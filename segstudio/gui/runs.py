"""Inference and CRF runs for the studio, off the GUI thread.

One model run at a time (on the current image or on all images) and one
CRF preview at a time: a new preview cancels the one in flight. The
Predictor is built in the worker (loading a checkpoint can take seconds)
and kept while the model settings stay the same.
"""

from __future__ import annotations

import itertools
import logging
from collections.abc import Callable, Generator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PySide6.QtCore import QObject, Signal

from segstudio.errors import InvalidArgumentError, SegstudioError
from segstudio.gui.workers import RunningTask, start_task
from segstudio.inference.predictor import PredictionResult, Predictor
from segstudio.models.checkpoint import CheckpointMeta
from segstudio.refine import TileProgress
from segstudio.tasks import CancelToken, Progress

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Prediction:
    """Yielded by a model run when one image is done."""

    index: int
    result: PredictionResult


class ModelRuns(QObject):
    """Starts, tracks and cancels model and CRF runs."""

    runStarted = Signal(str)  # description
    runProgress = Signal(object)  # Progress
    predicted = Signal(int, object)  # image index, PredictionResult
    modelLoaded = Signal(object)  # CheckpointMeta
    runFinished = Signal(str)  # "done" | "cancelled" | "failed"
    runFailed = Signal(object)  # the exception
    crfDone = Signal(int, object)  # image index, RefineResult
    crfFailed = Signal(object)
    crfTile = Signal(int, object)  # image index, TileProgress (a finished CRF tile)

    def __init__(self, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.model_task: RunningTask | None = None
        self.crf_task: RunningTask | None = None
        self._predictor: Predictor | None = None
        self._predictor_key: tuple | None = None
        self.meta: CheckpointMeta | None = None
        # runs started for a project that is no longer open: they end, but what
        # they yield (model classes, predictions, CRF results) is dropped
        self._discarded: set[int] = set()
        self._winding_down: dict[int, RunningTask] = {}
        self._serial = itertools.count(1)

    @property
    def busy(self) -> bool:
        return self.model_task is not None and self.model_task.running

    def run(self, settings: dict[str, Any], jobs: list[tuple[int, Callable[[], np.ndarray]]]) -> bool:
        """Predict each ``(index, load_image)`` job; False if a run is in flight."""
        if self.busy:
            return False
        key = (settings.get("checkpoint"), settings.get("device"), settings.get("precision"), settings.get("tile"))

        def task(cancel: CancelToken) -> Generator[Any, None, int]:
            predictor = yield from self._ensure_predictor(settings, key)
            for number, (index, load_image) in enumerate(jobs, start=1):
                cancel.raise_if_cancelled()
                if len(jobs) > 1:
                    yield _by_image(number, len(jobs), None, "reading")
                image = load_image()
                if len(jobs) > 1:
                    def relay(progress, number=number):
                        return _by_image(number, len(jobs), progress, progress.message)
                else:
                    def relay(progress):
                        return Progress(progress.done, progress.total, message=progress.message, stage="predict")
                result = yield from _relayed(predictor.predict_steps(image, cancel=cancel), relay)
                yield Prediction(index, result)
            return len(jobs)

        description = "Running the model on all images" if len(jobs) > 1 else "Running the model"
        self._start(description, task)
        return True

    def _ensure_predictor(self, settings: dict[str, Any], key: tuple) -> Generator[Any, None, Predictor]:
        """(In the worker.) The Predictor for *settings*: built unless they are
        unchanged. The run keeps its own reference: a run discarded with its
        project may still be winding down while the next one loads another."""
        predictor = self._predictor
        if predictor is None or self._predictor_key != key:
            yield Progress(0, None, message="loading the model…", stage="load")
            predictor, meta = _build_predictor(settings)
            self._predictor, self._predictor_key, self.meta = predictor, key, meta
            yield meta
        return predictor

    def run_volume(
        self,
        settings: dict[str, Any],
        index: int,
        volume: np.ndarray,
        *,
        slices: list[int] | None,
        window: tuple[float, float] | None,
        invert: bool = False,
    ) -> bool:
        """Predict some axial slices (None: all) of a volume, slice by slice.

        *invert* (the volume's MONOCHROME1 flag, ``SliceView.invert``) makes
        the model see the slices as the canvas shows them."""
        if self.busy:
            return False
        from segstudio.inference.volume import predict_volume_steps

        key = (settings.get("checkpoint"), settings.get("device"), settings.get("precision"), settings.get("tile"))

        def task(cancel: CancelToken) -> Generator[Any, None, int]:
            predictor = yield from self._ensure_predictor(settings, key)
            # the checkpoint decides how the volume becomes the model's input;
            # only models from before that was recorded follow the window on screen
            result = yield from predict_volume_steps(predictor, volume, slices=slices, window=window,
                                                     invert=invert, cancel=cancel)
            yield Prediction(index, result)
            return 1

        self._start("Running the model on the volume" if slices is None else "Running the model on the slice", task)
        return True

    def _start(self, description: str, task) -> None:
        model_task = start_task(description, task, self)
        key = model_task.run_key = next(self._serial)
        self.model_task = model_task
        model_task.worker.yielded.connect(lambda item: self._on_model_yielded(item, key))
        model_task.succeeded.connect(lambda _: self._on_model_ended("done", key))
        model_task.cancelled.connect(lambda: self._on_model_ended("cancelled", key))
        model_task.failed.connect(lambda error: self._on_model_failed(error, key))
        self.runStarted.emit(description)

    def discard(self) -> None:
        """Another project is opened: cancel the runs in flight and drop whatever
        they still deliver (it belongs to the project that was open).

        They are let go at once: a run for the new project may start while
        they wind down, and their end is not announced (the new project never
        ran them)."""
        for task in (self.model_task, self.crf_task):
            if task is not None and task.running:
                self._discarded.add(task.run_key)
                self._winding_down[task.run_key] = task  # keeps the task alive until it ends
                task.cancel()
        self.model_task = self.crf_task = None

    def _on_model_ended(self, outcome: str, key: int) -> None:
        if key in self._discarded:
            self._forget(key)
            return
        self.runFinished.emit(outcome)

    def _forget(self, key: int) -> None:
        self._discarded.discard(key)
        self._winding_down.pop(key, None)

    def _on_model_yielded(self, item: object, key: int | None = None) -> None:
        if key in self._discarded:
            return
        if isinstance(item, Progress):
            self.runProgress.emit(item)
        elif isinstance(item, Prediction):
            self.predicted.emit(item.index, item.result)
        elif isinstance(item, CheckpointMeta):
            self.modelLoaded.emit(item)

    def _on_model_failed(self, error: BaseException, key: int | None = None) -> None:
        if key in self._discarded:  # the failure of a run for the project that was open
            self._forget(key)
            log.info("a discarded model run failed: %s", error)
            return
        self._predictor = None
        self._predictor_key = None
        self.runFailed.emit(error)
        self.runFinished.emit("failed")

    def cancel(self) -> None:
        if self.model_task is not None:
            self.model_task.cancel()

    def preview_crf(self, index: int, factory: Callable[[CancelToken], Generator]) -> RunningTask:
        """Run the CRF task ``factory(cancel)`` for image ``index``; cancels a preview in flight.

        Only the newest preview reports: its finished tiles (crfTile), its
        end (crfDone / crfFailed) and its progress (the returned task's
        ``progressed``)."""
        if self.crf_task is not None and self.crf_task.running:
            self.crf_task.cancel()
        crf_task = start_task("Dense CRF", factory, self)
        key = crf_task.run_key = next(self._serial)
        crf_task.succeeded.connect(lambda refined: self._on_crf_ended(key, index, refined))
        crf_task.failed.connect(lambda error: self._on_crf_ended(key, index, error, failed=True))
        crf_task.cancelled.connect(lambda: self._forget(key))
        crf_task.progressed.connect(lambda progress: self._on_crf_progress(key, index, progress))
        self.crf_task = crf_task
        return crf_task

    def _current_crf(self, key: int) -> bool:
        return self.crf_task is not None and self.crf_task.run_key == key and key not in self._discarded

    def _on_crf_progress(self, key: int, index: int, progress) -> None:
        if isinstance(progress, TileProgress) and self._current_crf(key):
            self.crfTile.emit(index, progress)

    def _on_crf_ended(self, key: int, index: int, outcome, *, failed: bool = False) -> None:
        if not self._current_crf(key):  # another project, or superseded by a newer preview
            self._forget(key)
            return
        if failed:
            self.crfFailed.emit(outcome)
        else:
            self.crfDone.emit(index, outcome)

    def shutdown(self, timeout_ms: int = 5000) -> None:
        """Cancel everything and wait for the workers (on window close)."""
        from PySide6.QtCore import QThreadPool

        for task in (self.model_task, self.crf_task):
            if task is not None and task.running:
                task.cancel()
        QThreadPool.globalInstance().waitForDone(timeout_ms)


#: progress units per image of a multi-image run: image k of n spans
#: [(k-1)·U, k·U) and its tiles move the bar within that span
_UNITS_PER_IMAGE = 1000


def _relayed(steps: Generator[Progress, None, Any], relay: Callable[[Progress], Progress]):
    """Run *steps* (a task generator), yielding each of its Progress through *relay*; returns its result."""
    while True:
        try:
            progress = next(steps)
        except StopIteration as stop:
            return stop.value
        yield relay(progress)


def _by_image(number: int, count: int, tiles: Progress | None, message: str) -> Progress:
    """Progress of image ``number`` of ``count``, with its tile progress inside it.

    Images differ in their tile counts, so the tiles cannot be the unit of a
    run on several images: the bar would fill on each image and start again."""
    inside = 0.0 if tiles is None or tiles.fraction is None else tiles.fraction
    done = (number - 1) * _UNITS_PER_IMAGE + int(inside * _UNITS_PER_IMAGE)
    return Progress(done, count * _UNITS_PER_IMAGE, message=f"image {number}/{count}: {message}", stage="predict")


def _build_predictor(settings: dict[str, Any]) -> tuple[Predictor, CheckpointMeta]:
    checkpoint = settings.get("checkpoint")
    if not checkpoint:
        raise InvalidArgumentError("choose a checkpoint (trained weights) in the Model panel first")
    predictor, meta = Predictor.from_checkpoint(
        Path(checkpoint),
        device=settings.get("device", "auto"),
        precision=settings.get("precision", "auto"),
        tile_size=int(settings.get("tile", 512)),
    )
    architecture = settings.get("architecture")
    if architecture and architecture != meta.architecture:
        raise SegstudioError(
            f"the checkpoint holds a {meta.architecture!r} model, but {architecture!r} is selected",
            path=checkpoint,
        )
    return predictor, meta
