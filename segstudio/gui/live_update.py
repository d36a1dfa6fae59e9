"""Live update (Training dock): the model learns from the strokes while the user paints.

A second after the last edit of the current image, a worker thread runs a
few training steps of a :class:`~segstudio.training.live.LiveTrainer` (a copy
of the Model panel's checkpoint, kept from one update to the next) on the
labels of this image and of a few other corrected ones, then predicts the
image again; the prediction layer shows the result. A stroke made meanwhile
cancels the cycle and starts a new one once the painting pauses again.
Nothing is written unless the user keeps the live model as a version.
PyTorch releases the GIL in its kernels, so the window keeps responding.
"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING

import numpy as np
from PySide6.QtCore import QObject, QTimer

from segstudio.annotation.document import ImageStatus
from segstudio.errors import SegstudioError
from segstudio.gui.workers import start_task

if TYPE_CHECKING:
    from segstudio.gui.main_window import MainWindow

log = logging.getLogger(__name__)

#: quiet time after the last edit before an update starts
QUIET_MS = 1000
#: other corrected images whose labels join the current image's
MAX_OTHER_IMAGES = 4


class LiveUpdates(QObject):
    """Runs the live-update cycles of one window."""

    def __init__(self, window: MainWindow) -> None:
        super().__init__(window)
        self.window = window
        self.panel = window.training_panel
        self.enabled = False
        self.trainer = None
        self._trainer_key: tuple | None = None
        self.task = None
        self._again = False
        self._edited_at: float | None = None
        self._seen_revision: dict[int, int] = {}  # the labels revision of the last edit seen
        #: seconds from the last edit to the new prediction, per update
        self.latencies: list[float] = []
        self._others: dict[tuple[int, float], tuple[np.ndarray, np.ndarray]] = {}
        self._timer = QTimer(self)
        self._timer.setSingleShot(True)
        self._timer.setInterval(QUIET_MS)
        self._timer.timeout.connect(self._start)
        window.session.documentEdited.connect(self._on_edited)
        window.session.documentChanged.connect(lambda _index: self._stop())
        window.session.projectChanged.connect(self.reset)
        self.panel.liveToggled.connect(self.set_enabled)
        self.panel.keepLiveRequested.connect(self.keep)

    # -- switching --------------------------------------------------------------
    def set_enabled(self, enabled: bool) -> None:
        self.enabled = bool(enabled)
        if not self.enabled:
            self._stop()
            self._say("")
        else:
            self._say("on: paint, then pause a second")

    def reset(self) -> None:
        """Another project: its own model, nothing kept from the previous one."""
        self._stop()
        self.trainer, self._trainer_key = None, None
        self._others.clear()
        self.latencies.clear()
        self.panel.keep_live.setEnabled(False)
        self._say("on: paint, then pause a second" if self.enabled else "")

    def _stop(self) -> None:
        self._timer.stop()
        self._again = False
        if self.task is not None and self.task.running:
            self.task.cancel()

    def _say(self, text: str) -> None:
        self.panel.live_status.setText(f"Live update {text}" if text else "")
        self.panel.live_status.setVisible(bool(text))

    # -- the cycle ----------------------------------------------------------------
    def _on_edited(self) -> None:
        document = self.window.session.document
        if not self.enabled or document is None or document.read_only:
            return
        if document.labels_revision == self._seen_revision.get(id(document)):
            return  # a new prediction or CRF layer (this cycle's own, too): not a stroke
        self._seen_revision = {id(document): document.labels_revision}
        self._edited_at = time.perf_counter()
        if self.task is not None and self.task.running:
            self._again = True  # a new stroke: this cycle's prediction would be stale
            self.task.cancel()
        self._timer.start()

    def _start(self) -> None:
        if self.task is not None and self.task.running:
            self._again = True
            return
        session, settings = self.window.session, self.window.model_panel.settings()
        document, index = session.document, session.index
        if not self.enabled or document is None or session.project is None:
            return
        if document.is_volume:
            self._say("works on 2-D images for now")
            return
        checkpoint = settings.get("checkpoint")
        if not checkpoint:
            self._say("needs a model: choose a checkpoint in the Model panel")
            return
        labels = document.labels.copy()
        if not (labels != document.unlabelled).any():
            return
        key = (checkpoint, settings.get("device", "auto"), len(session.classes))
        trainer = self.trainer if key == self._trainer_key else None
        others = self._other_jobs(index)
        image, edited_at, classes = document.image, self._edited_at, len(session.classes)

        def work(cancel):
            live = trainer or _new_trainer(checkpoint, settings.get("device", "auto"), classes)
            samples = [(image, labels), *self._read_others(others, cancel)]
            update = yield from live.update_steps(samples, cancel=cancel)
            cancel.raise_if_cancelled()
            result = yield from live.predictor().predict_steps(image, cancel=cancel)
            return live, update, result

        task = start_task("Live update", work, self)
        self.task = task
        task.succeeded.connect(lambda out: self._on_done(out, key, index, document, edited_at))
        task.failed.connect(self._on_failed)
        task.done.connect(self._on_ended)
        self._say("learning from the strokes…")

    def _on_done(self, out, key, index: int, document, edited_at: float | None) -> None:
        trainer, update, result = out
        self.trainer, self._trainer_key = trainer, key
        self.panel.keep_live.setEnabled(True)
        if self.window.session.document is not document:
            return  # another image (or project) meanwhile
        self.window._on_predicted(index, result)
        latency = time.perf_counter() - edited_at if edited_at is not None else float("nan")
        self.latencies.append(latency)
        self._say(f"{update.updates}: new prediction {latency:.1f} s after the last stroke "
                  f"(loss {update.first_loss:.2f} → {update.last_loss:.2f})")

    def _on_failed(self, error: BaseException) -> None:
        self.panel.live.setChecked(False)  # switched off: it would fail again at every stroke
        self.window.report_error("Live update failed", error)

    def _on_ended(self) -> None:
        if self._again and self.enabled:
            self._again = False
            self._timer.start()

    # -- labels of the other images ----------------------------------------------
    def _other_jobs(self, current: int) -> list[tuple[int, float]]:
        """(index, label file mtime) of up to MAX_OTHER_IMAGES other corrected 2-D images."""
        project = self.window.session.project
        jobs = []
        for index, entry in enumerate(project.entries):
            if index == current or entry.is_volume or entry.status not in (ImageStatus.CORRECTED,
                                                                            ImageStatus.REVIEWED):
                continue
            try:
                jobs.append((index, entry.labels_path.stat().st_mtime))
            except OSError:
                continue
            if len(jobs) == MAX_OTHER_IMAGES:
                break
        return jobs

    def _read_others(self, jobs, cancel) -> list[tuple[np.ndarray, np.ndarray]]:
        """(In the worker.) The other images and their labels, read once and kept."""
        project, samples = self.window.session.project, []
        for job in jobs:
            cancel.raise_if_cancelled()
            if job not in self._others:
                try:
                    document = project.load_document(job[0])
                except SegstudioError as error:
                    log.warning("live update leaves out %s", error)
                    continue
                self._others[job] = (document.image, document.labels)
            samples.append(self._others[job])
        return samples

    # -- keeping it ---------------------------------------------------------------
    def keep(self) -> None:
        """Store the live model as a new model version (the active one stays)."""
        training = self.window.training
        if self.trainer is None or training.store is None:
            return
        if self.task is not None and self.task.running:
            self.window.statusBar().showMessage("Live update: wait for the update in progress", 4000)
            return
        try:
            folder = training.store.new_run_dir()
            meta = self.trainer.save(folder / "live.safetensors", parent=training.store.active_id)
            info = training.store.add(folder / "live.safetensors", {
                "parent": training.store.active_id, "name": f"live update ({self.trainer.total_steps} steps)",
                "status": "finished"}, move=True)
        except SegstudioError as error:
            self.window.report_error("Cannot keep the live model", error)
            return
        log.info("live model kept as %s (%s)", info.id, meta.architecture)
        training.refresh()
        self.window.statusBar().showMessage(f"Live model kept as {info.id} (Make active to use it)", 6000)


def _new_trainer(checkpoint: str, device: str, classes: int):
    from segstudio.models.checkpoint import load_checkpoint
    from segstudio.training.live import LiveTrainer

    model, meta = load_checkpoint(checkpoint, num_classes=classes)
    return LiveTrainer(model, meta, device=device)


def install(window: MainWindow) -> LiveUpdates:
    return LiveUpdates(window)
