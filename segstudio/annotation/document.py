"""One image being annotated: the single source of truth the studio edits.

A :class:`Document` holds the image, its label map, the latest model
prediction and CRF mask, the review status and the undo history. Widgets
read it, write only through its methods and subscribe to hear what changed
(a region to repaint, or None for everything). It knows nothing of Qt.

The label map is uint8 (255 = unlabelled), or uint16 (65535 = unlabelled)
for a project of more than 254 classes. It is written in place: the canvas
wraps that very buffer. Only a change of type (:meth:`Document.set_label_dtype`,
or :meth:`Document.remap_labels` with a table of the other type) replaces the
array; listeners then hear None and must fetch ``document.labels`` again.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from enum import Enum
from pathlib import Path
from typing import Any, TYPE_CHECKING

import numpy as np

from segstudio.annotation.history import DEFAULT_HISTORY_BYTES, Edit, History
from segstudio.annotation.regions import (
    Region,
    full_region,
    local,
    normalise_region,
    region_shape,
    remap_in_place,
    remapped_copy,
    union,
)
from segstudio.errors import InvalidArgumentError
from segstudio.io.masks import LABEL_DTYPES, convert_labels, unlabelled_for

if TYPE_CHECKING:
    # Only for annotations: importing the predictor would pull in torch.
    from segstudio.inference.predictor import PredictionResult

log = logging.getLogger(__name__)

Listener = Callable[[Region | None], None]

_HISTOGRAM_BAND_PIXELS = 1 << 23


class ImageStatus(str, Enum):
    """How far an image has come: untouched, predicted, hand-corrected, reviewed."""

    NEW = "new"
    PREDICTED = "predicted"
    CORRECTED = "corrected"
    REVIEWED = "reviewed"


def _check_value(value: int, unlabelled: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or not 0 <= value <= unlabelled:
        raise InvalidArgumentError(f"a label value must be an integer in 0..{unlabelled}, got {value!r}")
    return int(value)


def _check_label_map(labels: np.ndarray, shape: tuple[int, ...], what: str) -> np.ndarray:
    if not isinstance(labels, np.ndarray):
        raise InvalidArgumentError(f"{what} must be a NumPy array, got {type(labels).__name__}")
    if labels.shape != shape:
        raise InvalidArgumentError(f"{what} have shape {labels.shape}, the image is {shape}")
    if labels.dtype not in LABEL_DTYPES:
        raise InvalidArgumentError(f"{what} must be uint8 or uint16, got {labels.dtype}")
    return labels


class _Stroke:
    """An open brush stroke: the box it covers and each dab's old values."""

    def __init__(self, description: str) -> None:
        self.description = description
        self.region: Region | None = None
        self.saved: list[tuple[Region, np.ndarray]] = []


class Document:
    """One image with its label map, prediction, status and edit history.

    Parameters
    ----------
    image:
        ``H x W`` or ``H x W x C`` pixels; kept as given.
    labels:
        ``H x W`` label map, uint8 (value = class index, 255 = unlabelled) or
        uint16 (65535 = unlabelled). The document adopts this array (a
        C-contiguous one is not copied). By default everything is unlabelled.
    label_dtype:
        Type of the default label map (uint8, or uint16 for a project of more
        than 254 classes); ignored when *labels* are given.
    source:
        The image file, if any.
    status:
        Review status to start from.
    history_bytes:
        Memory bound of the undo history.

    Raises
    ------
    InvalidArgumentError
        The image is not 2-D/3-D, or the labels do not match it in shape or
        are not uint8/uint16.
    """

    def __init__(
        self,
        image: np.ndarray,
        *,
        labels: np.ndarray | None = None,
        source: Path | None = None,
        status: ImageStatus | str = ImageStatus.NEW,
        history_bytes: int = DEFAULT_HISTORY_BYTES,
        volume: bool = False,
        label_dtype: np.dtype | type = np.uint8,
    ) -> None:
        image = np.asarray(image)
        spatial = 3 if volume else 2
        if image.ndim not in (spatial, spatial + 1) or 0 in image.shape[:spatial]:
            expected = "Z x H x W (x C)" if volume else "H x W or H x W x C"
            raise InvalidArgumentError(f"an image must be {expected}, got shape {image.shape}")
        self.image = image
        #: a volume's labels are one Z x H x W map; tools edit it slice by slice
        self.is_volume = volume
        #: the source Volume (spacing, affine, window) when this is a volume
        self.volume: Any = None
        shape = image.shape[:spatial]
        if labels is None:
            labels = np.full(shape, unlabelled_for(label_dtype), label_dtype)
        else:
            labels = np.ascontiguousarray(_check_label_map(labels, shape, "labels"))
        self.labels: np.ndarray = labels
        self.source = None if source is None else Path(source)
        self.status = self._check_status(status)
        self.prediction: PredictionResult | None = None
        self.crf_labels: np.ndarray | None = None
        self.revision = 0
        #: counts the changes that are saved (labels, status), not a new prediction or CRF layer
        self.labels_revision = 0
        self.dirty = False
        #: a document of a project open read-only: the tools change nothing
        self.read_only = False
        self._history = History(history_bytes)
        self._listeners: list[Listener] = []
        self._stroke: _Stroke | None = None

    # ------------------------------------------------------------------
    # Basics and listeners
    # ------------------------------------------------------------------

    @property
    def shape(self) -> tuple[int, ...]:
        """Shape of the label map: ``(height, width)``, or ``(slices, height, width)``."""
        return self.labels.shape

    @property
    def unlabelled(self) -> int:
        """Value of unlabelled pixels: 255 in a uint8 map, 65535 in a uint16 one."""
        return unlabelled_for(self.labels.dtype)

    @property
    def history(self) -> History:
        return self._history

    @staticmethod
    def _check_status(status: ImageStatus | str) -> ImageStatus:
        try:
            return ImageStatus(status)
        except ValueError:
            allowed = ", ".join(s.value for s in ImageStatus)
            raise InvalidArgumentError(f"unknown image status {status!r} (one of {allowed})") from None

    def subscribe(self, callback: Listener) -> Callable[[], None]:
        """Call *callback* after every change; returns a function that unsubscribes.

        The callback receives the changed region, or None when the whole
        image or something other than pixels (status, prediction) changed.
        """
        self._listeners.append(callback)

        def unsubscribe() -> None:
            if callback in self._listeners:
                self._listeners.remove(callback)

        return unsubscribe

    def _notify(self, region: Region | None) -> None:
        for callback in list(self._listeners):
            callback(region)

    def _changed(self, region: Region | None, *, persistent: bool = True) -> None:
        self.revision += 1
        if persistent:
            self.dirty = True
            self.labels_revision += 1
        self._notify(region)

    def _labels_edited(self) -> None:
        """Hand edits make a new or predicted image 'corrected'."""
        if self.status in (ImageStatus.NEW, ImageStatus.PREDICTED):
            self.status = ImageStatus.CORRECTED
            self._changed(None)

    def _region_and_mask(self, region: Region, mask: np.ndarray | None) -> tuple[Region, np.ndarray | None]:
        region = normalise_region(region, self.labels.shape)
        if mask is not None:
            mask = np.asarray(mask)
            if mask.dtype != np.bool_:
                raise InvalidArgumentError(f"a tool mask must be boolean, got {mask.dtype}")
            if mask.shape != region_shape(region):
                raise InvalidArgumentError(
                    f"mask shape {mask.shape} does not match the region {region_shape(region)}"
                )
        return region, mask

    def _record(self, region: Region, old: np.ndarray, description: str) -> bool:
        """Push an edit for *region* (old values given, new ones read) cropped to what changed."""
        new_full = self.labels[region]
        changed = old != new_full
        if not changed.any():
            return False
        local_parts = []
        for axis in range(changed.ndim):
            others = tuple(a for a in range(changed.ndim) if a != axis)
            hits = np.flatnonzero(changed.any(axis=others))
            local_parts.append(slice(int(hits[0]), int(hits[-1]) + 1))
        local = tuple(local_parts)
        box = tuple(slice(r.start + l.start, r.start + l.stop) for r, l in zip(region, local, strict=True))
        self._history.push(Edit(box, np.array(old[local]), new_full[local].copy(), description))
        return True

    # ------------------------------------------------------------------
    # Painting
    # ------------------------------------------------------------------

    def begin_stroke(self, description: str) -> None:
        """Start a stroke: every :meth:`paint` until :meth:`end_stroke` is one undo step."""
        if self._stroke is not None:
            self.end_stroke()
        self._stroke = _Stroke(description)

    def paint(self, region: Region, mask: np.ndarray | None, value: int) -> bool:
        """Set the pixels of *region* where *mask* is True to *value* (:attr:`unlabelled` erases).

        Inside a stroke the change joins the stroke's undo step; outside one
        it is an undo step of its own. Listeners hear about *region*.

        Returns
        -------
        bool
            Whether any pixel changed.
        """
        if self.read_only:
            return False
        if self._stroke is None:
            return self.apply(region, mask, value, "Paint")
        value = _check_value(value, self.unlabelled)
        region, mask = self._region_and_mask(region, mask)
        view = self.labels[region]
        if view.size == 0:
            return False
        if mask is None:
            if not (view != value).any():
                return False
            self._stroke.saved.append((region, view.copy()))
            view[...] = value
        else:
            if not (view[mask] != value).any():
                return False
            self._stroke.saved.append((region, view.copy()))
            view[mask] = value
        self._stroke.region = union(self._stroke.region, region)
        self._labels_edited()
        self._changed(region)
        return True

    def end_stroke(self) -> bool:
        """Close the open stroke and record it as one undo step.

        Returns
        -------
        bool
            Whether the stroke changed anything (and so was recorded).
        """
        stroke, self._stroke = self._stroke, None
        if stroke is None or stroke.region is None:
            return False
        union = stroke.region
        old = self.labels[union].copy()
        # Replayed newest first, so each pixel ends with the value saved by
        # the first dab that touched it: its value before the stroke.
        for region, saved in reversed(stroke.saved):
            old[local(region, union)] = saved
        return self._record(union, old, stroke.description)

    @property
    def in_stroke(self) -> bool:
        return self._stroke is not None

    def apply(self, region: Region, mask: np.ndarray | None, value: int, description: str) -> bool:
        """Set *value* where *mask* is True in *region* as one undo step (fill, polygon).

        A stroke still open is closed first. *mask* None means the whole region.

        Returns
        -------
        bool
            False, and no history entry, when no pixel changed.
        """
        self.end_stroke()
        if self.read_only:
            return False
        value = _check_value(value, self.unlabelled)
        region, mask = self._region_and_mask(region, mask)
        view = self.labels[region]
        old = view.copy()
        if mask is None:
            view[...] = value
        else:
            view[mask] = value
        if not self._record(region, old, description):
            return False
        self._labels_edited()
        self._changed(region)
        return True

    # ------------------------------------------------------------------
    # Prediction and CRF
    # ------------------------------------------------------------------

    def set_prediction(self, result: PredictionResult | None) -> None:
        """Attach a model prediction (None removes it).

        A new prediction makes the CRF mask stale, so that is dropped. A new
        image becomes 'predicted'. The labels are untouched: :meth:`accept`
        copies the prediction into them.
        """
        if result is not None:
            labels = np.asarray(result.labels)
            if labels.shape != self.shape:
                raise InvalidArgumentError(
                    f"prediction labels have shape {labels.shape}, the image is {self.shape}"
                )
            if not np.issubdtype(labels.dtype, np.integer):
                raise InvalidArgumentError(f"prediction labels must be integers, got {labels.dtype}")
        self.prediction = result
        self.crf_labels = None
        persistent = False
        if result is not None and self.status is ImageStatus.NEW:
            self.status = ImageStatus.PREDICTED
            persistent = True
        self._changed(None, persistent=persistent)

    def set_crf_labels(self, labels: np.ndarray | None) -> None:
        """Attach the CRF-refined mask (uint8, or uint16 for many classes), or None to remove it."""
        if labels is not None:
            labels = np.ascontiguousarray(_check_label_map(np.asarray(labels), self.shape, "CRF labels"))
        self.crf_labels = labels
        self._changed(None, persistent=False)

    def _source_labels(self, source: str) -> np.ndarray:
        if source == "prediction":
            if self.prediction is None:
                raise InvalidArgumentError("there is no prediction to accept yet; run the model first")
            return np.asarray(self.prediction.labels)
        if source == "crf":
            if self.crf_labels is None:
                raise InvalidArgumentError("there is no CRF result to accept yet; run the CRF first")
            return self.crf_labels
        raise InvalidArgumentError(f"unknown source {source!r} (expected 'prediction' or 'crf')")

    def accept(
        self,
        source: str = "prediction",
        *,
        class_index: int | None = None,
        region: Region | None = None,
        mask: np.ndarray | None = None,
    ) -> bool:
        """Copy the prediction's (or CRF's) labels into the label map, as one undo step.

        Parameters
        ----------
        source:
            ``"prediction"`` or ``"crf"``.
        class_index:
            Copy only the pixels the source assigns to this class.
        region, mask:
            Copy only inside *region* (the whole image by default) and, within
            it, only where *mask* is True (e.g. the painted area of an
            "accept here" brush).

        Returns
        -------
        bool
            Whether any label changed.

        Raises
        ------
        InvalidArgumentError
            The source does not exist yet, or bad arguments.
        """
        labels = self._source_labels(source)
        region, mask = self._region_and_mask(region or full_region(self.shape), mask)
        self.end_stroke()
        if self.read_only:
            return False
        incoming = labels[region]
        selection = np.ones(region_shape(region), bool) if mask is None else mask.copy()
        if class_index is not None:
            selection &= incoming == _check_value(class_index, self.unlabelled - 1)
        if incoming.dtype in LABEL_DTYPES:
            # where the source has no answer (a volume slice not predicted yet,
            # a CRF run on one slice only) the user's labels stay
            selection &= incoming != unlabelled_for(incoming.dtype)
        if selection.any() and int(incoming[selection].max()) >= self.unlabelled:
            raise InvalidArgumentError(
                f"the {source} holds class indices above {self.unlabelled - 1}, more than this "
                f"project's {self.labels.dtype} label map holds; add classes to the project first"
            )
        incoming = incoming.astype(self.labels.dtype, copy=False)
        view = self.labels[region]
        old = view.copy()
        view[selection] = incoming[selection]
        what = "prediction" if source == "prediction" else "CRF result"
        description = f"Accept {what}" + ("" if class_index is None else f" (class {class_index})")
        if not self._record(region, old, description):
            return False
        self._labels_edited()
        self._changed(region)
        return True

    # ------------------------------------------------------------------
    # Undo, status, class changes
    # ------------------------------------------------------------------

    def _replay(self, edit: Edit | None, values: str) -> Region | None:
        if edit is None:
            return None
        self.labels[edit.region] = getattr(edit, values)
        self._changed(edit.region)
        return edit.region

    def undo(self) -> Region | None:
        """Revert the newest edit (closing an open stroke first); returns its region or None."""
        self.end_stroke()
        return self._replay(self._history.undo(), "old")

    def redo(self) -> Region | None:
        """Re-apply the last undone edit; returns its region or None."""
        self.end_stroke()
        return self._replay(self._history.redo(), "new")

    @property
    def can_undo(self) -> bool:
        open_stroke = self._stroke is not None and self._stroke.region is not None
        return open_stroke or self._history.can_undo

    @property
    def can_redo(self) -> bool:
        return self._history.can_redo

    @property
    def undo_description(self) -> str | None:
        if self._stroke is not None and self._stroke.region is not None:
            return self._stroke.description
        return self._history.undo_description

    @property
    def redo_description(self) -> str | None:
        return self._history.redo_description

    def set_status(self, status: ImageStatus | str) -> None:
        """Set the review status (no undo step; listeners hear None)."""
        status = self._check_status(status)
        if status is self.status or self.read_only:
            return
        self.status = status
        self._changed(None)

    def remap_labels(self, mapping: np.ndarray) -> bool:
        """Relabel every pixel through a lookup table, as one undo step.

        Used when a class is deleted (see :meth:`ClassList.removal_mapping`).
        The table has one entry per value of the current label type (256 or
        65536); its own type (uint8 or uint16) becomes the labels' type, so
        one call both renumbers and, when the class count crosses 254,
        changes the type (see :meth:`set_label_dtype` for what that does to
        the array and the history). The CRF mask is remapped too, because it
        is accepted into the labels in the document's class numbering. The
        prediction is left alone: its label values index the model's output
        channels (and its probability maps), which a change to the project's
        classes does not alter.

        Returns
        -------
        bool
            Whether any label changed.
        """
        table = np.asarray(mapping)
        size = self.unlabelled + 1
        if table.shape != (size,) or table.dtype not in LABEL_DTYPES:
            raise InvalidArgumentError(
                f"a label mapping for {self.labels.dtype} labels must be {size} uint8 or uint16 values, "
                f"got {table.dtype} {table.shape}"
            )
        self.end_stroke()
        old = self.labels.copy()
        changed_type = table.dtype != self.labels.dtype
        if changed_type:
            # the undo history speaks the new type, like the labels
            old = convert_labels(old, table.dtype)
            self._convert_history(table.dtype)
            self.labels = remapped_copy(self.labels, table)
            if self.crf_labels is not None:
                self.crf_labels = remapped_copy(self.crf_labels, table)
        else:
            remap_in_place(self.labels, table)
            if self.crf_labels is not None:
                remap_in_place(self.crf_labels, table)
        recorded = self._record(full_region(self.shape), old, "Relabel classes")
        if recorded or self.crf_labels is not None or changed_type:
            self._changed(None, persistent=recorded)
        return recorded

    def set_label_dtype(self, dtype: np.dtype | type) -> bool:
        """Change the label map's type (uint8 <-> uint16), keeping every label.

        For a project whose class count crosses 254. Unlabelled stays
        unlabelled; the undo history and the CRF mask are converted with the
        labels, so undo keeps working. The array is replaced (the canvas must
        fetch it again: listeners hear None), and the document is marked
        dirty so that its file is written in the new depth.

        Returns
        -------
        bool
            Whether the type changed.

        Raises
        ------
        InvalidArgumentError
            Not uint8/uint16, or (to uint8) a class index above 254 in the
            labels or the history.
        """
        target = np.dtype(dtype)
        unlabelled_for(target)  # raises for other types
        if target == self.labels.dtype:
            return False
        self.end_stroke()
        labels = convert_labels(self.labels, target)
        crf = None if self.crf_labels is None else convert_labels(self.crf_labels, target)
        self._convert_history(target)
        self.labels, self.crf_labels = np.ascontiguousarray(labels), crf
        self._changed(None)
        return True

    def _convert_history(self, target: np.dtype) -> None:
        """Express every undo step's values in *target* (raises before changing anything)."""
        self._history.convert(lambda values: convert_labels(values, target))

    def label_counts(self) -> np.ndarray:
        """Pixels per label value: 256 entries for a uint8 map (index 255 =
        unlabelled), 65536 for a uint16 one (index 65535 = unlabelled).

        One pass over the whole map: fine for a status bar, too slow per brush dab.
        """
        import cv2

        if self.labels.dtype != np.uint8:
            return np.bincount(self.labels.ravel(), minlength=self.unlabelled + 1).astype(np.int64)

        # OpenCV's histogram is ~15x faster than np.bincount on uint8, but
        # counts in float32, exact only up to 2**24: hence bands of rows.
        counts = np.zeros(256, np.int64)
        band = max(1, _HISTOGRAM_BAND_PIXELS // max(1, int(np.prod(self.labels.shape[1:]))))
        for top in range(0, self.labels.shape[0], band):
            rows = np.ascontiguousarray(self.labels[top : top + band])
            counts += cv2.calcHist([rows], [0], None, [256], [0, 256]).ravel().astype(np.int64)
        return counts

    def clear_history(self) -> None:
        """Forget all undo steps (e.g. after the image was reloaded)."""
        self.end_stroke()
        self._history.clear()
