"""Scribble refinement in the studio: strokes of the Scribble tool (S) become
the CRF layer.

The Scribble tool paints like the brush (the strokes are labels too, one
undo step "Scribble" each) and the canvas reports each stroke here. The
strokes of the current image are remembered in a scribble map; when a
stroke ends and the image has a prediction, the dense CRF with the
scribbles as hard constraints (:func:`segstudio.refine.refine_with_scribbles_steps`)
runs in a worker on the region around them, and its result is pasted into
the CRF layer: inside the region the refined labels, outside it the CRF
layer as it was (the plain CRF preview, or nothing, which Accept leaves
alone). Edit > Accept CRF mask then applies it as one undo step. A new
stroke supersedes a refinement in flight; a new prediction or a plain CRF
preview that arrives later keeps the latest refinement in its region.

A scribbled pixel counts only while the labels still hold its class there,
so undoing a stroke or erasing over it takes it back. On a volume the plane
on screen is refined (axial, coronal or sagittal, as the canvas shows it),
like the CRF preview of a volume.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

import numpy as np
from PySide6.QtCore import QObject, Signal

from segstudio.gui.canvas.slicing import SliceView
from segstudio.gui.workers import RunningTask, start_task
from segstudio.io.masks import unlabelled_for
from segstudio.refine import ScribbleResult, refine_with_scribbles_steps

if TYPE_CHECKING:
    from segstudio.gui.main_window import MainWindow

log = logging.getLogger(__name__)

NO_PREDICTION = ("Scribble refinement refines the model's prediction: run the model on this image first "
                 "(Model > Run on this image, Ctrl+R); the stroke stays as labels")
NO_SCRIBBLES_HERE = "No scribbles on this plane: draw a stroke on the slice shown first"
NO_PREDICTION_HERE = ("The model has not run on this plane yet (Volume dock: Run on this slice, or on the whole "
                      "volume); the stroke stays as labels")
NO_SCRIBBLES = "No scribbles on this image: draw a few strokes with the Scribble tool (S) first"


class ScribbleRefinement(QObject):
    """The scribbles of the current image and their refinement runs.

    Signals
    -------
    refined()
        A refinement reached the CRF layer.
    """

    refined = Signal()

    def __init__(self, window: MainWindow) -> None:
        super().__init__(window)
        self.window = window
        #: the current image's scribbles: the class where scribbled, unlabelled elsewhere
        self.scribbles: np.ndarray | None = None
        self.task: RunningTask | None = None
        self._document = None  # the document the scribbles belong to
        #: the latest result, with the prediction it refined (pasted back over a later plain CRF)
        self._latest: tuple[object, ScribbleResult] | None = None
        window.canvas.scribbled.connect(self._on_scribbled)
        window.session.documentChanged.connect(lambda _index: self.clear())
        window.runs.predicted.connect(self._on_predicted)
        window.runs.crfDone.connect(self._on_plain_crf_done)
        window.crf_panel.scribbleRefineRequested.connect(lambda: self.refine(whole_image=True))
        window.crf_panel.scribblesClearRequested.connect(self._on_clear_requested)

    # -- the scribble map ------------------------------------------------------
    def clear(self) -> None:
        """Forget the scribbles (another image, or Clear scribbles); a refinement in flight is dropped."""
        self._cancel()
        self.scribbles = None
        self._document = None
        self._latest = None
        self.window.crf_panel.set_scribble_count(0)

    def _on_clear_requested(self) -> None:
        self.clear()
        self.window.statusBar().showMessage("Scribbles cleared (the strokes stay as labels)", 3000)

    def active_scribbles(self) -> np.ndarray | None:
        """The scribbles of the current image whose pixels still hold their
        class in the labels (an undone or erased stroke no longer counts)."""
        document = self.window.session.document
        if self.scribbles is None or document is None or self._document is not document:
            return None
        unlabelled = document.unlabelled
        kept = (self.scribbles != unlabelled) & (document.labels == self.scribbles)
        return np.where(kept, self.scribbles, unlabelled).astype(document.labels.dtype, copy=False)

    def _on_scribbled(self, region, mask, value: int) -> None:
        document = self.window.session.document
        if document is None:
            return
        if self._document is not document or self.scribbles is None or self.scribbles.shape != document.shape \
                or self.scribbles.dtype != document.labels.dtype:
            self.scribbles = np.full(document.shape, document.unlabelled, document.labels.dtype)
            self._document = document
        target = self.scribbles[region]
        if mask is None:
            target[...] = value
        else:
            target[mask] = value
        self.window.crf_panel.set_scribble_count(int(np.count_nonzero(self.scribbles != document.unlabelled)))
        self.refine()

    # -- runs -------------------------------------------------------------------
    def refine(self, *, whole_image: bool = False) -> bool:
        """Refine the current image's prediction with its scribbles in a worker
        (the region around them, or the whole image); False, with a message
        in the status bar, when there is nothing to refine."""
        window = self.window
        document = window.session.document
        status = window.statusBar()
        if document is None:
            status.showMessage("Open images first", 4000)
            return False
        if document.prediction is None:
            status.showMessage(NO_PREDICTION, 6000)
            return False
        scribbles = self.active_scribbles()
        if scribbles is None or not (scribbles != document.unlabelled).any():
            status.showMessage(NO_SCRIBBLES, 5000)
            return False
        prediction = document.prediction
        n_classes = prediction.probabilities.shape[0]
        if int(scribbles[scribbles != document.unlabelled].max()) >= n_classes:
            status.showMessage(f"The model predicts {n_classes} classes: scribbles of a class beyond "
                               "them cannot refine its prediction", 6000)
            return False
        image, probabilities, params = document.image, prediction.probabilities, window.crf_panel.params()
        plane = None
        if document.is_volume:  # the plane on screen, as the CRF preview of a volume does
            plane = self._plane_inputs(document, prediction, scribbles)
            if plane is None:
                return False
            image, probabilities, scribbles = plane[1]
            plane = plane[0]
        if whole_image:
            from segstudio.gui.crf_preview import refuse_whole_image

            if refuse_whole_image(window, *probabilities.shape[-2:], n_classes):
                return False
        self._cancel()
        region = None if whole_image else "auto"
        unlabelled = document.unlabelled

        def task(cancel):
            return refine_with_scribbles_steps(image, probabilities, scribbles, params,
                                               unlabelled=unlabelled, region=region, cancel=cancel)

        running = start_task("Scribble refinement", task, self)
        running.progressed.connect(lambda progress: window.crf_panel.set_busy(
            True, f"scribbles: {progress.message}" if progress.message else "refining…"))
        running.succeeded.connect(lambda result: self._on_done(running, document, prediction, result, plane))
        running.failed.connect(lambda error: self._on_failed(running, error))
        running.cancelled.connect(lambda: self._on_cancelled(running))
        self.task = running
        window.crf_panel.set_busy(True, "refining with the scribbles…")
        return True

    def _plane_inputs(self, document, prediction, scribbles):
        """((axis, index), (image, probabilities, scribbles)) of the volume's shown
        plane, as the canvas shows it (window, MONOCHROME1); None, with a
        message, when the plane has no scribble or no prediction yet."""
        slicer, status = self.window.canvas.slicer, self.window.statusBar()
        plane_scribbles = np.ascontiguousarray(slicer.plane(scribbles))
        if not (plane_scribbles != document.unlabelled).any():
            status.showMessage(NO_SCRIBBLES_HERE, 5000)
            return None
        predicted = slicer.plane(prediction.labels)
        if (predicted == unlabelled_for(predicted.dtype)).all():
            status.showMessage(NO_PREDICTION_HERE, 6000)
            return None
        return (slicer.axis, slicer.index), (slicer.display(document.image), np.ascontiguousarray(
            slicer.channel_plane(prediction.probabilities)), plane_scribbles)

    def _cancel(self) -> None:
        if self.task is not None and self.task.running:
            self.task.cancel()
            self.window.crf_panel.set_busy(False)
        self.task = None

    def _on_cancelled(self, running: RunningTask) -> None:
        if running is self.task:
            self.task = None
            self.window.crf_panel.set_busy(False)

    def _on_failed(self, running: RunningTask, error: BaseException) -> None:
        if running is not self.task:
            return
        self.task = None
        self.window.crf_panel.set_busy(False)
        self.window.report_error("Scribble refinement failed", error)

    def _on_done(self, running: RunningTask, document, prediction, result: ScribbleResult, plane=None) -> None:
        if running is not self.task:
            return  # superseded by a newer stroke
        self.task = None
        self.window.crf_panel.set_busy(False)
        if document is not self.window.session.document or document.prediction is not prediction:
            return  # another image, or a new prediction: its own refinement follows
        self._latest = (prediction, result, plane)
        self._show(document, result, plane)
        self.window.statusBar().showMessage(
            "Scribbles refined: the CRF layer shows the result; Edit > Accept CRF mask applies it", 5000)
        self.refined.emit()

    def _show(self, document, result: ScribbleResult, plane=None) -> None:
        """Paste *result* into the CRF layer (outside its region the layer stays
        as it was); *plane* ``(axis, index)``: the volume's plane it refined."""
        window = self.window
        dtype = result.labels.dtype
        crf = document.crf_labels
        if crf is not None and crf.dtype == dtype and crf.shape == document.shape:
            labels = crf.copy()
        else:
            labels = np.full(document.shape, unlabelled_for(dtype), dtype)
        target = labels if plane is None else SliceView(document.shape, (1.0, 1.0, 1.0), *plane).plane(labels)
        target[result.region] = result.labels  # a plane is a view: this writes the volume
        document.set_crf_labels(labels)
        window.canvas.refresh_prediction()
        window._sync_layer_availability()
        if not window.canvas.states["crf"].visible:
            window.canvas.set_layer_visible("crf", True)
            window._sync_layers_panel()

    def _on_plain_crf_done(self, index: int, _refined) -> None:
        """The plain CRF preview replaced the CRF layer (the window handled it
        first): the latest refinement goes back into its region."""
        document = self.window.session.document
        if self._latest is None or document is None or index != self.window.session.index:
            return
        prediction, result, plane = self._latest
        if document.prediction is prediction and document.crf_labels is not None:
            self._show(document, result, plane)

    def _on_predicted(self, index: int, _result) -> None:
        """A new prediction of the current image (the window stored it first):
        the scribbles refine it again."""
        document = self.window.session.document
        if index != self.window.session.index or document is None or document.prediction is None:
            return
        self._latest = None
        scribbles = self.active_scribbles()
        if scribbles is not None and (scribbles != document.unlabelled).any():
            self.refine()


def install(window: MainWindow) -> ScribbleRefinement:
    """Wire scribble refinement into *window* (after its canvas, runs and CRF panel exist)."""
    return ScribbleRefinement(window)
