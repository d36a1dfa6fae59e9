"""The CRF layer: what the CRF panel's live preview and Run CRF compute.

- A 2-D image is refined whole. Above :data:`LIVE_PREVIEW_PIXELS` the live
  preview refines the part in view only (the panel says so): at full
  resolution when the view holds no more than that, else at a coarser scale
  (:data:`SCALED_PREVIEW_PIXELS`; a whole slide at "fit" zoom). Run CRF
  refines the whole image at full resolution, nearest the view first. An image whose CRF would not fit in
  :func:`tile_budget` runs in tiles, each shown as soon as it is done.
- A volume: the plane on screen (as a 2-D image, as the user sees it), or
  the whole volume in 3-D (the panel's "On a volume" choice), with kernels
  in millimetres from the spacing and the appearance kernel on the window.

The work runs in a worker (``window.runs.preview_crf``); one preview at a
time, a new one cancels the one in flight.
"""

from __future__ import annotations

import logging
from types import SimpleNamespace
from typing import TYPE_CHECKING

import numpy as np

from segstudio.io.masks import unlabelled_for
from segstudio.refine import refine_steps
from segstudio.refine.crf import DEFAULT_TILE_BYTES, refine_scaled_steps

if TYPE_CHECKING:
    from segstudio.gui.main_window import MainWindow

log = logging.getLogger(__name__)

#: Above this many pixels the live preview refines the part in view only
#: (at full resolution when that is no larger than this, else at a coarser scale).
LIVE_PREVIEW_PIXELS = 4096 * 4096
#: Pixels of a coarse-scale preview (about a screen's worth).
SCALED_PREVIEW_PIXELS = 1024 * 1024


def studio_backend(window: MainWindow) -> str:
    """The CRF dock's choice, with Auto meaning PyTorch (on the GPU when there is one):
    pydensecrf2 holds Python's lock (GIL) through each of its calls, so the window
    stood still for up to 0.7 s at a time during a 1024^2 CRF (a GUI-thread timer's
    longest gap; 5.8 ms with PyTorch, which lets go of it)."""
    chosen = window.crf_panel.backend()
    return "torch" if chosen == "auto" else chosen


def tile_budget() -> int:
    """Memory one CRF tile may take: 1 GiB, less under a lower memory limit."""
    from segstudio.io.limits import memory_limit

    return max(1 << 20, min(DEFAULT_TILE_BYTES, memory_limit()))


def run(window: MainWindow, params, *, live: bool = False) -> None:
    """Compute the CRF layer of the current image with *params*.

    *live*: asked by a settings change (the live preview) rather than Run CRF.
    """
    document = window.session.document
    if document is None or document.prediction is None:
        window.statusBar().showMessage("The CRF refines a prediction: run the model on this image first", 5000)
        return
    if document.is_volume:
        if window.crf_panel.volume_mode() == "volume":
            _start_volume(window, params)
        else:
            _start_plane(window, params)
        return
    height, width = document.labels.shape
    view = window.canvas.visible_box()
    image, probabilities = document.image, document.prediction.probabilities
    options = dict(backend=studio_backend(window), tile_bytes=tile_budget())
    window.crf_target = SimpleNamespace(kind="image", note="", tiled=False)
    if not live or height * width <= LIVE_PREVIEW_PIXELS or view is None:
        _start(window, f"computing the CRF on {width} x {height}…", lambda cancel: refine_steps(
            image, probabilities, params, cancel=cancel, focus=view, keep_probabilities=False, **options))
        return
    (y0, y1), (x0, x1) = view
    too_large = f"{width} x {height} is too large to refine whole at every change; Run CRF refines all of it."
    if (y1 - y0) * (x1 - x0) <= LIVE_PREVIEW_PIXELS:
        window.crf_target.note = f"Live preview refines the part in view ({x1 - x0} x {y1 - y0}): {too_large}"
        _start(window, f"computing the CRF on {x1 - x0} x {y1 - y0} in view…", lambda cancel: refine_steps(
            image, probabilities, params, cancel=cancel, region=view, focus=view, keep_probabilities=False,
            **options))
        return
    factor = ((y1 - y0) * (x1 - x0) / SCALED_PREVIEW_PIXELS) ** 0.5
    window.crf_target = SimpleNamespace(kind="box", box=view, tiled=False, note=(
        f"Live preview of the part in view at 1/{factor:.1f} of full resolution: {too_large}"))
    _start(window, f"computing the CRF on {x1 - x0} x {y1 - y0} in view at 1/{factor:.1f} resolution…",
           lambda cancel: refine_scaled_steps(image, probabilities, params, box=view,
                                              max_pixels=SCALED_PREVIEW_PIXELS, cancel=cancel, **options))


def _start(window: MainWindow, text: str, factory) -> None:
    window.crf_panel.set_busy(True, text)
    task = window.runs.preview_crf(window.session.index, factory)

    def show(progress) -> None:
        if window.runs.crf_task is task:  # a preview superseded while it winds down says nothing
            window.crf_panel.set_busy(True, f"CRF: {progress.message}" if progress.message else "computing…",
                                      progress.fraction)

    task.progressed.connect(show)


def _start_plane(window: MainWindow, params) -> None:
    """The CRF on the shown plane of a volume (axial, coronal or sagittal).

    The CRF sees the plane as the canvas shows it (window, MONOCHROME1
    inversion). Pixels of slices the model has not run on yet are refined
    along with the rest but stay unlabelled in the result.
    """
    document, slicer = window.session.document, window.canvas.slicer
    if slicer is None:
        return
    labels = np.ascontiguousarray(slicer.plane(document.prediction.labels))
    if (labels == unlabelled_for(labels.dtype)).all():
        return  # no prediction in this plane yet
    image = slicer.display(document.image)
    probabilities = np.ascontiguousarray(slicer.channel_plane(document.prediction.probabilities))
    window.crf_target = SimpleNamespace(kind="plane", plane=(slicer.axis, slicer.index), note="", tiled=False)
    options = dict(backend=studio_backend(window), tile_bytes=tile_budget())
    rows, columns = labels.shape
    _start(window, f"computing the CRF on {columns} x {rows}…",
           lambda cancel: refine_steps(image, probabilities, params, cancel=cancel, **options))


def _start_volume(window: MainWindow, params) -> None:
    """The CRF over the whole volume at once, on the intensity as windowed on screen."""
    from segstudio.refine.volume_crf import refine_volume_steps
    from segstudio.windowing import apply_window

    document, slicer = window.session.document, window.canvas.slicer
    if slicer is None:
        return
    volume, probabilities = document.image, document.prediction.probabilities
    window_setting, invert, spacing = slicer.window, slicer.invert, tuple(float(s) for s in slicer.spacing)
    from segstudio.io.limits import memory_limit

    # the whole memory limit, not a preview's tile: 3-D tiles need margins of three
    # bilateral widths along every axis, so a volume refined whole agrees best
    options = dict(spacing=spacing, backend=studio_backend(window), tile_bytes=max(tile_budget(), memory_limit()),
                   keep_probabilities=False)

    predicted = document.prediction.labels

    def task(cancel):
        grey = volume if volume.ndim == 3 else volume.mean(axis=3)  # a colour volume: its brightness
        if window_setting is not None:
            grey = apply_window(grey, window_setting[0], window_setting[1], invert=invert)
        refined = yield from refine_volume_steps(grey, probabilities, params, cancel=cancel, **options)
        # slices the model has not run on stay unlabelled (done here, not on the GUI thread)
        labels = refined.labels
        labels[predicted == unlabelled_for(predicted.dtype)] = unlabelled_for(labels.dtype)
        return refined

    window.crf_target = SimpleNamespace(kind="volume", note="", tiled=False)
    depth, rows, columns = document.shape[:3]
    _start(window, f"computing the 3-D CRF on {columns} x {rows} x {depth}…", task)


def _layer(window: MainWindow, dtype) -> np.ndarray:
    """The document's CRF labels, ready for a new run's pieces: emptied where
    the last run wrote (the layer of a 12000^2 slide is not rebuilt for each
    change), or made, empty, when there is none of this shape and type."""
    document, canvas = window.session.document, window.canvas
    labels, unlabelled = document.crf_labels, unlabelled_for(dtype)
    # (the labels array, the box the previous runs wrote in it); another array: unknown
    owner, written = getattr(window, "crf_written", (None, None))
    if labels is None or labels.shape != document.labels.shape or labels.dtype != dtype:
        document.crf_labels = np.full(document.labels.shape, unlabelled, dtype)
        canvas.refresh_crf(blank=True)
        window.sync_crf_layer()
    elif owner is not labels:  # written by someone else, anywhere
        labels.fill(unlabelled)
        canvas.refresh_crf_region(slice(0, labels.shape[0]), slice(0, labels.shape[1]))
    elif written:
        (y0, y1), (x0, x1) = written
        labels[y0:y1, x0:x1] = unlabelled
        canvas.refresh_crf_region(slice(y0, y1), slice(x0, x1))
    window.crf_written = (document.crf_labels, ())
    return document.crf_labels


def _write(window: MainWindow, box, labels: np.ndarray) -> None:
    """Put *labels* of *box* into the CRF layer and recolour that part."""
    (y0, y1), (x0, x1) = box
    layer = window.session.document.crf_labels
    layer[y0:y1, x0:x1] = labels
    _, written = window.crf_written
    window.crf_written = (layer, box if not written else (
        (min(written[0][0], y0), max(written[0][1], y1)), (min(written[1][0], x0), max(written[1][1], x1))))
    window.canvas.refresh_crf_region(slice(y0, y1), slice(x0, x1))


def on_tile(window: MainWindow, index: int, progress) -> None:
    """Show a finished tile of the CRF in flight (2-D images; volumes wait for the end)."""
    document, target = window.session.document, getattr(window, "crf_target", None)
    if index != window.session.index or document is None or target is None or target.kind != "image":
        return
    if not target.tiled:  # the first tile of a run: what is not refined yet shows nothing
        _layer(window, progress.labels.dtype)
        target.tiled = True
    _write(window, progress.core, progress.labels)


def on_done(window: MainWindow, index: int, refined) -> None:
    """The CRF finished: its labels become the CRF layer."""
    panel = window.crf_panel
    target = getattr(window, "crf_target", None)
    panel.set_busy(False)
    if target is not None and target.note:
        panel.show_message(target.note)
    document = window.session.document
    if index != window.session.index or document is None or target is None:
        return
    if target.kind in ("image", "box"):
        if not target.tiled:  # tiles were shown as they came
            _layer(window, refined.labels.dtype)
            height, width = refined.labels.shape
            _write(window, target.box if target.kind == "box" else ((0, height), (0, width)), refined.labels)
        window.sync_crf_layer()
        return
    if target.kind == "plane":
        labels = _plane_into_volume(document, target.plane, refined.labels)
    else:  # the whole volume, already masked in the worker
        labels = refined.labels
    document.set_crf_labels(labels)
    window.canvas.refresh_crf()
    window.sync_crf_layer()


def _plane_into_volume(document, plane_at, refined_labels: np.ndarray) -> np.ndarray:
    """A refined plane put into the volume's CRF mask (other planes kept);
    where the prediction has no answer yet the mask stays unlabelled."""
    from segstudio.gui.canvas.slicing import SliceView

    dtype = refined_labels.dtype
    unlabelled = unlabelled_for(dtype)
    if document.crf_labels is not None and document.crf_labels.dtype == dtype:
        volume_labels = document.crf_labels.copy()
    else:
        volume_labels = np.full(document.shape, unlabelled, dtype)
    plane = SliceView(document.shape, (1.0, 1.0, 1.0), *plane_at)
    predicted = plane.plane(document.prediction.labels)
    target = plane.plane(volume_labels)  # a view: writing it writes the volume
    target[...] = np.where(predicted == unlabelled_for(predicted.dtype), unlabelled, refined_labels)
    return volume_labels


#: what the scribble refinement of a whole image (pydensecrf on one piece) keeps
#: per pixel: about 520 bytes whatever the classes, plus about 40-70 bytes per
#: class and pixel, measured as peak RSS on 512^2..2048^2 random (worst-case
#: lattice) images with 2, 4 and 8 classes; the margin covers the float32 copy
#: of the prediction and the result the studio keeps besides
CRF_BYTES_PER_PIXEL = 560
CRF_BYTES_PER_PIXEL_AND_CLASS = 72


def crf_memory_estimate(height: int, width: int, classes: int) -> int:
    """Bytes the one-piece CRF of an *height* x *width* image of *classes* classes needs at its peak."""
    return int(height) * int(width) * (CRF_BYTES_PER_PIXEL + CRF_BYTES_PER_PIXEL_AND_CLASS * int(classes))


def refuse_whole_image(window: MainWindow, height: int, width: int, classes: int) -> bool:
    """True (and a message in the CRF panel and the status bar) when a one-piece
    CRF of this size (the scribbles' "whole image") would need more memory than
    :func:`segstudio.io.limits.memory_limit`."""
    from segstudio.io.limits import format_bytes, memory_limit

    needed, limit = crf_memory_estimate(height, width, classes), memory_limit()
    if needed <= limit:
        return False
    message = (f"Not run: {width} x {height} pixels with {classes} classes in one piece would need about "
               f"{format_bytes(needed)} of memory, more than the limit of {format_bytes(limit)}. "
               "Scribble strokes still refine the area around them.")
    log.warning("%s", message)
    window.crf_panel.set_busy(False)
    window.crf_panel.show_message(message, problem=True)
    window.statusBar().showMessage(message, 15000)
    return True
