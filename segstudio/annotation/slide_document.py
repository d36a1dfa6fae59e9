"""A whole slide being annotated: the slide, its labels in chunks on disk, strokes with undo.

The labels of a slide are a :class:`~segstudio.io.tiled_labels.TiledLabels`
store in the slide's folder (``labels/``), next to a model's prediction
(``prediction/``, written tile by tile by
:func:`segstudio.inference.slide.predict_slide_steps`) and the classes
(``classes.json``, as in a training data folder: ``segstudio train SLIDE
--labels FOLDER/labels`` trains on what was painted). A stroke touches only the chunks under it, and one stroke
is one undo step that keeps, per chunk, just the box the brush crossed (a
stroke across a 100,000-pixel slide does not copy a 100,000-pixel box).
Saving writes the dirty chunks only; :meth:`SlideDocument.snapshot` and
:meth:`SlideDocument.write_snapshot` split that so a GUI can write in another
thread while the user keeps painting.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from segstudio.annotation.classes import ClassList
from segstudio.annotation.history import Edit, History
from segstudio.annotation.tools import stroke_segment
from segstudio.errors import DataError, InvalidArgumentError
from segstudio.io.leftovers import remove_leftovers
from segstudio.io.masks import atomic_write_bytes
from segstudio.io.slide import Slide
from segstudio.io.tiled_labels import TiledLabels

Box = tuple[tuple[int, int], tuple[int, int]]
#: Accepting a prediction copies at most this many level-0 pixels at once.
MAX_ACCEPT_PIXELS = 8192 * 8192
LABELS, PREDICTION, CLASSES, SLIDE_FILE = "labels", "prediction", "classes.json", "slide.json"


@dataclass(frozen=True)
class ChunkedEdit:
    """One undo step on a slide: the changed box of each chunk a stroke touched."""

    parts: tuple[Edit, ...]
    description: str

    @property
    def nbytes(self) -> int:
        return sum(part.nbytes for part in self.parts)

    @property
    def box(self) -> Box:
        """The level-0 box around every part."""
        return _union([((p.region[0].start, p.region[0].stop), (p.region[1].start, p.region[1].stop))
                       for p in self.parts])


def slide_folder(slide_path: str | os.PathLike[str], root: str | os.PathLike[str]) -> Path:
    """Where a slide's labels live under ``root`` (a project's ``slides`` folder or
    the per-user one): named after the file, with a hash of its full path so
    two ``case.svs`` in different folders never share labels."""
    path = Path(slide_path).resolve()
    digest = hashlib.sha1(str(path).encode("utf-8")).hexdigest()[:8]
    return Path(root) / f"{path.name}-{digest}"


class SlideDocument:
    """A slide and its tiled labels; see the module text. Open with :meth:`open`."""

    def __init__(self, slide: Slide, folder: Path, labels: TiledLabels, classes: ClassList,
                 prediction: TiledLabels | None = None, history_bytes: int = 256 * 2**20) -> None:
        self.slide, self.folder, self.labels, self.classes = slide, folder, labels, classes
        self.prediction = prediction
        self.history = History(history_bytes)
        self._listeners: list[Callable[[Box], None]] = []
        self._stroke: dict[tuple[int, int], np.ndarray] | None = None  # chunk -> labels before the stroke
        self._touched: dict[tuple[int, int], Box] = {}
        self._description = ""

    @classmethod
    def open(cls, slide_path: str | os.PathLike[str], folder: str | os.PathLike[str],
             classes: ClassList | None = None) -> SlideDocument:
        """The slide at ``slide_path`` with the labels kept in ``folder`` (made,
        with ``classes``, the first time; its own ``classes.json`` after that)."""
        slide = Slide(slide_path)
        folder = Path(folder)
        try:
            folder.mkdir(parents=True, exist_ok=True)
            saved = folder / CLASSES
            if saved.is_file():
                try:
                    stored = json.loads(saved.read_text(encoding="utf-8"))
                    classes = ClassList.from_list(stored["classes"] if isinstance(stored, dict) else stored)
                except (ValueError, KeyError, InvalidArgumentError) as error:
                    raise DataError(f"the slide's classes cannot be read: {error}", path=saved) from error
            else:
                classes = classes if classes is not None else ClassList.from_names(["background", "foreground"])
                _write_classes(folder, classes)
            atomic_write_bytes(folder / SLIDE_FILE, json.dumps(
                {"slide": str(Path(slide_path).resolve()), "shape": list(slide.shape)}).encode("utf-8"))
            # chunk files a killed write left half done (older than a minute: not another window's write)
            remove_leftovers(folder, [folder / LABELS, folder / PREDICTION])
            labels = _open_store(folder / LABELS, slide, classes.label_dtype)
            prediction = TiledLabels.open(folder / PREDICTION) if (folder / PREDICTION / ".zarray").is_file() else None
            if prediction is not None and prediction.shape != slide.shape:
                prediction = None  # a prediction of another image of that name: not shown
        except BaseException:
            slide.close()
            raise
        return cls(slide, folder, labels, classes, prediction)

    def close(self) -> None:
        self.slide.close()

    def save_classes(self) -> None:
        """Write ``classes.json`` (after classes were added)."""
        _write_classes(self.folder, self.classes)

    # -- listeners -------------------------------------------------------------
    def subscribe(self, callback: Callable[[Box], None]) -> Callable[[], None]:
        """Call ``callback(level-0 box)`` after every change of the labels."""
        self._listeners.append(callback)
        return lambda: self._listeners.remove(callback) if callback in self._listeners else None

    def _changed(self, box: Box) -> None:
        for listener in list(self._listeners):
            listener(box)

    # -- strokes ---------------------------------------------------------------
    @property
    def shape(self) -> tuple[int, int]:
        return self.slide.shape

    def begin_stroke(self, description: str) -> None:
        """Start one undo step (a stroke of many dabs, an accepted prediction)."""
        self._stroke, self._touched, self._description = {}, {}, description

    def paint_segment(self, start: tuple[float, float], end: tuple[float, float], radius: float, value: int,
                      *, unlabelled_only: bool = False) -> Box | None:
        """Paint ``value`` along the capsule from ``start`` to ``end`` (level-0
        ``(y, x)``); returns the changed box, None when it misses the slide."""
        found = stroke_segment(start, end, radius, self.shape)
        if found is None:
            return None
        (ys, xs), mask = found
        box = ((ys.start, ys.stop), (xs.start, xs.stop))
        values = self.labels.read(box)
        if unlabelled_only:
            mask = mask & (values == self.labels.unlabelled)
        return self._apply(box, np.where(mask, value, values).astype(self.labels.dtype, copy=False))

    def accept_prediction(self, box: Box) -> Box | None:
        """Copy the prediction into the labels inside ``box`` (one undo step)."""
        if self.prediction is None:
            raise InvalidArgumentError("there is no prediction of this slide yet: run the model first")
        (y0, y1), (x0, x1) = box
        y0, y1, x0, x1 = max(0, y0), min(self.shape[0], y1), max(0, x0), min(self.shape[1], x1)
        if (y1 - y0) * (x1 - x0) > MAX_ACCEPT_PIXELS:
            raise InvalidArgumentError(f"the view holds {(y1 - y0) * (x1 - x0) / 1e6:.0f} M pixels; accept at most "
                                       f"{MAX_ACCEPT_PIXELS / 1e6:.0f} M at once (zoom in)")
        predicted = self.prediction.read(((y0, y1), (x0, x1)))
        unlabelled = self.prediction.unlabelled
        if not (predicted != unlabelled).any():
            return None
        values = self.labels.read(((y0, y1), (x0, x1)))
        new = np.where(predicted != unlabelled, predicted, values).astype(self.labels.dtype, copy=False)
        self.begin_stroke("accept the prediction")
        changed = self._apply(((y0, y1), (x0, x1)), new)
        self.end_stroke()
        return changed

    def _apply(self, box: Box, new: np.ndarray) -> Box:
        if self._stroke is None:
            raise InvalidArgumentError("begin_stroke() first: every edit belongs to an undo step")
        chunk = self.labels.chunk
        (y0, y1), (x0, x1) = box
        for cy in range(y0 // chunk, (y1 - 1) // chunk + 1):
            for cx in range(x0 // chunk, (x1 - 1) // chunk + 1):
                key = (cy, cx)
                if key not in self._stroke:
                    self._stroke[key] = self.labels.read(((cy * chunk, (cy + 1) * chunk),
                                                          (cx * chunk, (cx + 1) * chunk)))
                part = ((max(y0, cy * chunk), min(y1, (cy + 1) * chunk)),
                        (max(x0, cx * chunk), min(x1, (cx + 1) * chunk)))
                self._touched[key] = _union([self._touched[key], part]) if key in self._touched else part
        self.labels.write(box, new)
        self._changed(box)
        return box

    def end_stroke(self) -> bool:
        """Close the undo step; returns whether it changed anything."""
        if self._stroke is None:
            return False
        parts = []
        chunk = self.labels.chunk
        for key, before in self._stroke.items():
            (y0, y1), (x0, x1) = self._touched[key]
            top, left = key[0] * chunk, key[1] * chunk
            old = before[y0 - top: y1 - top, x0 - left: x1 - left].copy()
            new = self.labels.read(((y0, y1), (x0, x1)))
            if not np.array_equal(old, new):
                parts.append(Edit((slice(y0, y1), slice(x0, x1)), old, new, self._description))
        self._stroke, self._touched = None, {}
        if parts:
            self.history.push(ChunkedEdit(tuple(parts), self._description))
        return bool(parts)

    @property
    def painting(self) -> bool:
        return self._stroke is not None

    def undo(self) -> Box | None:
        """Undo the last step; returns the box it changed (None: nothing to undo)."""
        return self._replay(self.history.undo(), "old")

    def redo(self) -> Box | None:
        return self._replay(self.history.redo(), "new")

    def _replay(self, edit: ChunkedEdit | None, side: str) -> Box | None:
        if edit is None:
            return None
        for part in edit.parts:
            ys, xs = part.region
            self.labels.write(((ys.start, ys.stop), (xs.start, xs.stop)), getattr(part, side))
        box = edit.box
        self._changed(box)
        return box

    # -- saving ----------------------------------------------------------------
    @property
    def unsaved(self) -> bool:
        return bool(self.labels.dirty)

    def snapshot(self) -> dict[tuple[int, int], np.ndarray]:
        """The dirty chunks, copied (see the module text)."""
        return self.labels.snapshot_dirty()

    def write_snapshot(self, snapshot: dict[tuple[int, int], np.ndarray]) -> int:
        """Write a :meth:`snapshot` (any thread: it touches no state of the document). When it
        fails, the caller hands the chunks back with :meth:`unsaved_again` (on its own thread)."""
        return self.labels.write_snapshot(snapshot)

    def unsaved_again(self, snapshot: dict[tuple[int, int], np.ndarray]) -> None:
        """A snapshot whose write failed: its chunks are dirty again (saved by the next save)."""
        self.labels.mark_dirty(snapshot)

    def save(self) -> int:
        """Write every dirty chunk now; returns the bytes written."""
        snapshot = self.snapshot()
        try:
            return self.write_snapshot(snapshot)
        except BaseException:
            self.unsaved_again(snapshot)
            raise


def _write_classes(folder: Path, classes: ClassList) -> None:
    """``classes.json`` as a data folder has it (``segstudio train SLIDE --labels FOLDER/labels`` reads it)."""
    atomic_write_bytes(folder / CLASSES, json.dumps({"classes": classes.to_list()}, indent=1).encode("utf-8"))


def _open_store(folder: Path, slide: Slide, dtype: np.dtype) -> TiledLabels:
    if (folder / ".zarray").is_file():
        store = TiledLabels.open(folder)
        if store.shape != slide.shape:
            raise DataError(f"the labels are {store.shape[1]} x {store.shape[0]} but the slide is "
                            f"{slide.shape[1]} x {slide.shape[0]}: they belong to another image", path=folder)
        return store
    return TiledLabels.create(folder, slide.shape, dtype)


def _union(boxes: list[Box]) -> Box:
    return ((min(b[0][0] for b in boxes), max(b[0][1] for b in boxes)),
            (min(b[1][0] for b in boxes), max(b[1][1] for b in boxes)))
