"""Fine-tuning from the studio: a training process, polled from the GUI thread.

The trainer runs in another process (segstudio.training.process), so it can
neither starve nor crash the window; its messages are drained every 100 ms.
A finished run (or one cancelled after a good epoch) becomes a new model
version with its curves and its before/after scores.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from PySide6.QtCore import QObject, QTimer, Signal

from segstudio.errors import InvalidArgumentError, SegstudioError

if TYPE_CHECKING:
    from segstudio.gui.main_window import MainWindow

log = logging.getLogger(__name__)

POLL_MS = 100


class TrainingRuns(QObject):
    """Starts, follows, pauses and cancels fine-tuning runs; keeps versions."""

    versionsChanged = Signal()
    runEnded = Signal(str)  # "finished" | "cancelled" | "error"

    def __init__(self, window: MainWindow) -> None:
        super().__init__(window)
        self.window = window
        self.panel = window.training_panel
        self.process = None
        self.store = None
        self._timer = QTimer(self)
        self._timer.setInterval(POLL_MS)
        self._timer.timeout.connect(self._poll)
        self._exiting: list[Any] = []
        self._reaper = QTimer(self)
        self._reaper.setInterval(250)
        self._reaper.timeout.connect(self._reap)
        self._settings: dict[str, Any] = {}
        self._losses: list[float] = []
        self._epochs: list[int] = []
        self._ious: list[float] = []
        self._dices: list[float] = []
        self.last_message: dict[str, Any] | None = None
        self.panel.trainRequested.connect(self.start)
        self.panel.pauseRequested.connect(self.pause)
        self.panel.cancelRequested.connect(self.cancel)
        self.panel.activateRequested.connect(self.activate)
        self.panel.versionSelected.connect(self.show_version)
        # "Start from" follows the Model panel's checkpoint and architecture
        window.model_panel.settingsChanged.connect(lambda _settings: self.refresh())
        self._run_project = None
        self._run_store = None

    @property
    def running(self) -> bool:
        return self.process is not None and self._timer.isActive()

    # -- versions ---------------------------------------------------------------
    def open_project(self) -> None:
        """Show the versions of the project now open."""
        from segstudio.training.versions import VersionStore

        project = self.window.session.project
        self.store = VersionStore(project.folder) if project is not None else None
        # nothing of the previous project stays on show; a run of it that is still
        # going keeps its process (and stores its version there) but not the panel
        self.panel.reset()
        if self.running:
            self.panel.set_running(True)
            if not self._showing_run():
                self.panel.set_progress(0, 1, f"a training run of {self._run_project.folder} is still going "
                                              "(Cancel stops it; its version is stored in that project)")
        self.refresh()

    def _showing_run(self) -> bool:
        """Whether the project on show is the one the current run trains."""
        return self.process is not None and self.window.session.project is self._run_project

    def refresh(self) -> None:
        project = self.window.session.project
        if project is None or self.store is None:
            self.panel.set_versions([], None)
            self.panel.set_image_count(0)
            self.panel.set_start_from("–", untrained=False)
            return
        self.panel.set_versions(self.store.list(), self.store.active_id)
        self._show_start_from()
        from segstudio.annotation.document import ImageStatus

        from segstudio.training.project_data import slide_sources

        count = sum(e.status in (ImageStatus.CORRECTED, ImageStatus.REVIEWED) for e in project.entries)
        self.panel.set_image_count(count, len(slide_sources(project.folder)))

    def show_version(self, version_id: str) -> None:
        """Show the curves and scores kept with a version (not during a run)."""
        if self.running or self.store is None:
            return
        try:
            version = self.store.get(version_id)
        except SegstudioError as error:
            log.warning("%s", error)
            return
        curves = version.curves or {}
        ious = curves.get("val_mean_iou") or []
        dices = curves.get("val_mean_dice") or []
        epochs = [i + 1 for i, value in enumerate(ious) if value is not None]
        self.panel.set_curves(list(curves.get("loss") or []), epochs, [v for v in ious if v is not None],
                              [v for v in dices if v is not None])
        self.panel.set_comparison(list(self.window.session.classes.names), version.parent_scores, version.scores)

    def _show_start_from(self) -> None:
        """What Train starts from, as :meth:`_ensure_active_version` will pick it."""
        from pathlib import Path

        active = self.store.active_id
        if active is not None:
            try:
                version = self.store.get(active)
                name = f"{version.id}: {version.name}"
            except SegstudioError:
                name = active
            untrained = self._active_is_untrained()
            self.panel.set_start_from(name + (" (untrained)" if untrained and "untrained" not in name else ""),
                                      untrained=untrained)
            return
        settings = self.window.model_panel.settings()
        if settings.get("checkpoint"):
            self.panel.set_start_from(f"the Model panel's checkpoint {Path(settings['checkpoint']).name}",
                                      untrained=False)
        else:
            self.panel.set_start_from(f"an untrained {settings.get('architecture')}", untrained=True)

    def _ensure_active_version(self) -> None:
        """A project that has no version yet starts from the Model panel's checkpoint,
        or without one, from an untrained model of its architecture for the project's classes."""
        if self.store.active_id is not None:
            return
        settings = self.window.model_panel.settings()
        checkpoint = settings.get("checkpoint")
        if checkpoint:
            self.store.import_checkpoint(checkpoint, activate=True)
            return
        architecture = settings.get("architecture")
        if not architecture:
            raise SegstudioError("choose an architecture or a checkpoint in the Model panel first")
        from segstudio.training.process import import_untrained_start

        classes = self.window.session.project.classes
        version = import_untrained_start(self.store, architecture, classes.names, classes.colors)
        self.window.statusBar().showMessage(
            f"no model yet: training an untrained {architecture} ({version.id}) for the project's "
            f"{len(classes)} classes from scratch", 10000)

    def _active_is_untrained(self) -> bool:
        """The active version is a freshly initialised network (or descends from none but one)."""
        from segstudio.models.checkpoint import read_meta

        version = self.store.active_id
        if version is None:
            return False
        try:
            provenance = read_meta(self.store.checkpoint_path(version)).provenance
        except SegstudioError:
            return False
        return bool(provenance.get("untrained_start"))

    def _check_writable(self, why: str) -> None:
        project = self.window.session.project
        if project is not None and project.read_only is not None:
            raise SegstudioError(f"the project is open read-only ({project.read_only}); {why}",
                                 path=project.folder)

    def activate(self, version_id: str) -> None:
        """Make a version active (or roll back): the Model panel runs it from now on."""
        try:
            self._check_writable("the active version is recorded in the project")
            self.store.set_active(version_id)
        except SegstudioError as error:
            self.window.report_error("Cannot activate the version", error)
            return
        settings = dict(self.window.model_panel.settings())
        settings["checkpoint"] = str(self.store.checkpoint_path(version_id))
        self.window.model_panel.set_settings(settings)
        self.window.session.project.model_settings.update(checkpoint=settings["checkpoint"])
        self.window.session.project.save()
        self.refresh()
        self.versionsChanged.emit()
        self.window.statusBar().showMessage(f"model version {version_id} is active", 5000)

    # -- runs -------------------------------------------------------------------
    def start(self, settings: dict[str, Any]) -> None:
        from segstudio.training.config import TrainConfig
        from segstudio.training.process import TrainingProcess, TrainJobSpec

        if self.running or self.window.session.project is None:
            return
        self.window.session.save(wait=True)  # the trainer reads the labels from disk
        try:
            self._check_writable("training stores each model version in the project")
            if self.store is None:
                self.open_project()
            self._ensure_active_version()
            epochs, budget = settings.get("epochs"), settings.get("time_budget_s")
            if not epochs and not budget:
                raise InvalidArgumentError("set how long to train: a time (Train for) or a number of epochs")
            fast = bool(settings["freeze_backbone"])
            if fast and self._active_is_untrained():
                fast = False
                before = self.window.statusBar().currentMessage()
                self.window.statusBar().showMessage(
                    (f"{before}; " if before else "")
                    + "an untrained model trains in Full mode (Fast would keep its random backbone)", 10000)
            # the rest are TrainConfig's defaults, measured to converge on real images
            config = TrainConfig(epochs=int(epochs) if epochs else None, time_budget_s=budget,
                                 freeze_backbone=fast, device=settings["device"])
            spec = TrainJobSpec.for_project(self.window.session.project, self.store, config,
                                            val_fraction=float(settings["val_fraction"]))
            process = TrainingProcess()
            process.start(spec)
        except SegstudioError as error:
            self.window.report_error("Cannot start training", error)
            return
        self.process = process
        # the run belongs to this project even if another one is opened meanwhile
        self._run_store = self.store
        self._run_project = self.window.session.project
        self._settings = dict(settings)
        self._losses, self._epochs, self._ious, self._dices = [], [], [], []
        self.panel.set_curves([], [], [], [])
        self.panel.set_running(True)
        self.panel.set_progress(0, 0, "starting the training process…")
        self._timer.start()
        self.refresh()

    def pause(self, paused: bool) -> None:
        if self.process is None:
            return
        if paused:
            self.process.pause()
        else:
            self.process.resume()

    def cancel(self) -> None:
        if self.process is not None:
            self.process.cancel()
            self.panel.set_progress(0, 0, "cancelling after the current step…")

    def shutdown(self) -> None:
        """Stop a run when the window closes (the last good epoch is kept)."""
        if self.process is not None:
            self.process.cancel()
            self.process.stop(timeout=10.0)
            self._timer.stop()
            # a run cancelled after a good epoch reports it while stopping: keep it
            for message in self.process.poll():
                if message.get("type") == "finished":
                    try:
                        self._run_store.add(message["checkpoint"], message["version_meta"], move=True)
                    except SegstudioError as error:
                        log.error("the last run's version could not be stored: %s", error)
        for process in self._exiting:
            process.stop(timeout=5.0)

    def _reap(self) -> None:
        """Close the processes of ended runs once they have exited."""
        for process in list(self._exiting):
            if not process.is_alive():
                process.close()
                self._exiting.remove(process)
        if not self._exiting:
            self._reaper.stop()

    def _poll(self) -> None:
        if self.process is None:
            return
        for message in self.process.poll():
            self.last_message = message
            handler = getattr(self, f"_on_{message.get('type')}", None)
            if handler is not None:
                handler(message)

    def _on_started(self, message: dict) -> None:
        text = (f"training in process {message['pid']} on {message['device']} ({len(message['train_images'])} "
                f"images, {len(message['val_images'])} for validation, {message['threads']} threads)")
        changes = message.get("classes")
        if changes:
            text += (f"; the model learns the project's classes (new: {', '.join(changes['new']) or 'none'}, "
                     f"dropped: {', '.join(changes['dropped']) or 'none'})")
        if self._showing_run():
            self.panel.set_progress(0, 0, text)

    def _on_progress(self, message: dict) -> None:
        self._losses.append(message["loss"])
        if not self._showing_run():
            return
        eta = message.get("eta_s")
        eta_text = f", about {eta:.0f} s left" if eta is not None else ""
        self.panel.set_progress(
            message["step"], message.get("total") or 0,
            f"epoch {message['epoch']}, step {message['step']}/{message.get('total')}: loss {message['loss']:.4f}, "
            f"lr {message['lr']:.2e}, {message['images_per_s']:.1f} images/s{eta_text}",
        )
        self.panel.set_curves(self._losses, self._epochs, self._ious, self._dices)

    def _on_epoch(self, message: dict) -> None:
        if message.get("val_mean_iou") is not None:
            self._epochs.append(message["epoch"])
            self._ious.append(message["val_mean_iou"])
            self._dices.append(message["val_mean_dice"])
            if self._showing_run():
                self.panel.set_curves(self._losses, self._epochs, self._ious, self._dices)

    def _on_paused(self, message: dict) -> None:
        self.panel.set_paused(True)
        self.panel.set_progress(0, 0, f"paused at step {message['step']}")

    def _on_resumed(self, message: dict) -> None:
        self.panel.set_paused(False)

    def _on_scoring(self, message: dict) -> None:
        if self._showing_run():
            self.panel.set_progress(0, 0, "scoring the parent and the new version on the validation images…")

    def _on_finished(self, message: dict) -> None:
        try:
            version = self._run_store.add(message["checkpoint"], message["version_meta"], move=True)
        except SegstudioError as error:
            self.window.report_error("The new model version could not be stored", error)
            self._end("error")
            return
        if self.window.session.project is not self._run_project:
            self.panel.set_progress(1, 1, f"{version.id} stored in {self._run_store.folder} "
                                          "(the project of the run, which is no longer open)")
            self._end("finished")
            return
        classes = list(self.window.session.classes.names)
        self.panel.set_comparison(classes, message.get("parent_scores"), message.get("scores"))
        before = (message.get("parent_scores") or {}).get("mean_iou")
        after = (message.get("scores") or {}).get("mean_iou")
        # a parent made for other classes cannot predict the project's: the new version wins
        changed = bool(message.get("classes_changed"))
        better = changed or (before is not None and after is not None and after > before)
        collapse = message.get("collapse") or {}
        text = f"{version.id} ready: validation mIoU {after if after is None else f'{after:.3f}'}"
        if changed:
            text += " (new classes: parent not compared)"
        elif before is not None:
            text += f" (parent {before:.3f})"
        if collapse.get("collapsed"):
            # never adopted automatically: it would wipe every proposal
            better = False
            text = f"{version.id} COLLAPSED, not adopted: {collapse.get('reason')}"
        self.panel.set_progress(1, 1, text)
        self._end("finished")
        if collapse.get("collapsed"):
            self.window.statusBar().showMessage(f"model version {version.id} collapsed; the active model is "
                                                "unchanged (see the Training dock)", 15000)
        if better and self._settings.get("auto_adopt"):
            self.activate(version.id)
            self.window.run_model_on_unreviewed()

    def _on_cancelled(self, message: dict) -> None:
        self.panel.set_progress(0, 1, message.get("message", "cancelled"))
        self._end("cancelled")

    def _on_error(self, message: dict) -> None:
        kind = message.get("kind", "bug")
        text = message.get("message", "the training process failed")
        self.panel.set_progress(0, 1, f"failed: {text}")
        if kind == "oom":
            text += " — try Fast mode, a smaller device batch, or the CPU"
        self.window.report_error("Training failed (the active model and all labels are unchanged)",
                                 SegstudioError(text))
        self._end("error")

    def _on_log(self, message: dict) -> None:
        log.log(logging.getLevelName(message.get("level", "INFO")), "trainer: %s", message.get("message"))

    def _end(self, outcome: str) -> None:
        self._timer.stop()
        if self.process is not None:
            # the child exits by itself after its last message; tearing torch
            # down takes it most of a second, so reap it later instead of
            # joining here on the GUI thread (that froze the window 650 ms)
            self._exiting.append(self.process)
            if not self._reaper.isActive():
                self._reaper.start()
        self.process = None
        self.panel.set_running(False)
        self.refresh()
        self.versionsChanged.emit()
        self.runEnded.emit(outcome)
