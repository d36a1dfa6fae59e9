"""The open project and its current document, with autosave.

Every label edit restarts a short timer; when it fires (``AUTOSAVE_MS``
after the last edit, and never more than ``AUTOSAVE_MAX_WAIT_MS`` after the
first unsaved one, so that continuous painting is saved too) the current
document's labels and the project file are written atomically. The label
file is written from a snapshot on one background writer thread (an 8192 x 8192 PNG takes most of
a second to compress, which the window must not wait for); the small
project file is written at once. Switching images saves first; closing the
window waits for the writer, so no edit is ever lost. A large image picked
in the Images panel is read in a worker thread (:meth:`Session.select_in_background`)
while the window keeps responding; the previous one stays current until it arrives.
"""

from __future__ import annotations

import logging
import os
import warnings
from collections.abc import Generator
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

import numpy as np

from PySide6.QtCore import QObject, QTimer, Signal

from segstudio.annotation.classes import ClassList
from segstudio.annotation.document import Document, ImageStatus
from segstudio.errors import SegstudioError
from segstudio.gui.workers import start_task
from segstudio.inference.predictor import PredictionResult
from segstudio.inference.uncertainty import mean_entropy
from segstudio.io.masks import convert_labels
from segstudio.io.project import Project
from segstudio.io.project_lock import REFRESH_S
from segstudio.tasks import Progress

log = logging.getLogger(__name__)

AUTOSAVE_MS = 1000
#: while edits keep coming, labels are saved at least this often
AUTOSAVE_MAX_WAIT_MS = 1500
#: images of up to this many pixels are read at once when picked (a fraction
#: of a second); larger ones in a worker thread, so the window keeps responding
QUICK_READ_PIXELS = 4096 * 4096
#: a volume whose files hold more bytes than this opens in the background (a CT of 512^2 x 128 slices)
QUICK_READ_BYTES = 64 * 2**20
#: a prediction's uncertainty score is the mean over at most about this many pixels (a
#: regular grid beyond): on the GUI thread, 1 ms for 3 classes, 7 ms for 21 at 4096 x 4096
SCORE_PIXELS = 256 * 256


class Session(QObject):
    """Owns the Project and the Document being edited."""

    projectChanged = Signal()
    documentChanged = Signal(int)  # index of the new current image, -1 for none
    documentEdited = Signal()
    statusChanged = Signal(int, str)  # image index, status value
    saved = Signal(str)  # what was saved, for the status bar
    saveFailed = Signal(object)  # the exception
    lockLost = Signal(str)  # another window took the project over: why it is read-only now
    loadingStarted = Signal(int, str)  # image index and name being read in the background
    loadFailed = Signal(int, object)  # image index, the exception of a background read
    uncertaintyChanged = Signal(int, object)  # image index, its score (float; None: not predicted)

    def __init__(self, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.project: Project | None = None
        self.document: Document | None = None
        self.index = -1
        self._unsubscribe = None
        #: the background read of the image being selected (select_in_background)
        self._loading = None
        self._loading_index = -1
        #: predictions of images that are not the current one (kept in memory)
        self.predictions: dict[int, PredictionResult] = {}
        self._timer = QTimer(self)
        self._timer.setSingleShot(True)
        self._timer.setInterval(AUTOSAVE_MS)
        self._timer.timeout.connect(self.save)
        # started by the first unsaved edit and not restarted by the next ones
        self._deadline = QTimer(self)
        self._deadline.setSingleShot(True)
        self._deadline.setInterval(AUTOSAVE_MAX_WAIT_MS)
        self._deadline.timeout.connect(self.save)
        self._last_status: ImageStatus | None = None
        self._writer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="segstudio-autosave")
        #: queued writes: (future, project, image index, the labels snapshot)
        self._pending: list[tuple[Future, Project, int, np.ndarray]] = []
        #: snapshots whose write failed, retried at the next save whatever image is open
        self._unsaved: dict[int, np.ndarray] = {}
        self._watch = QTimer(self)  # notices failed writes on the GUI thread
        self._watch.setInterval(300)
        self._watch.timeout.connect(lambda: self._collect(wait=False))
        self._heartbeat = QTimer(self)  # keeps the project's lock fresh (see io.project_lock)
        self._heartbeat.setInterval(int(REFRESH_S * 1000))
        self._heartbeat.timeout.connect(self._refresh_lock)

    @property
    def classes(self) -> ClassList:
        return self.project.classes if self.project is not None else ClassList()

    def open_project(self, project: Project) -> list[SegstudioError]:
        """Open ``project`` on its current image, or the next one that reads.

        An unreadable image does not stop the others: its error is returned
        (and the first readable image is shown) instead of raised. A current
        image that reads slowly (a large image or volume, :meth:`opens_slowly`)
        is read in the background, as a pick in the list would be.
        """
        if not self.close():
            raise SegstudioError(
                "the labels of the open project could not be saved (see the previous message); "
                "free some space or fix the folder, then open the other project again",
                path=self.project.folder if self.project is not None else None,
            )
        self.project = project
        self.predictions.clear()
        if project.lock is not None:
            self._heartbeat.start()
        self.projectChanged.emit()
        problems: list[SegstudioError] = []
        count = len(project.entries)
        if count:
            start = min(max(project.current, 0), count - 1)
            if self.opens_slowly(start) and self.select_in_background(start):
                return problems  # a failed read goes the way of any other (loadFailed)
            for index in [*range(start, count), *range(0, start)]:
                try:
                    self.select(index)
                    break
                except SegstudioError as error:
                    problems.append(error)
        return problems

    def select(self, index: int) -> Document | None:
        """Make image ``index`` current (saving the previous one first)."""
        if self.project is None or index == self.index:
            self.cancel_loading()
            return self.document
        if not 0 <= index < len(self.project.entries):
            return self.document
        self.cancel_loading()
        self.save()
        self._settle(index)
        document = self.project.load_document(index)  # raises UnreadableInputError
        return self._attach(index, document)

    def select_in_background(self, index: int) -> bool:
        """Make image ``index`` current, reading it in a worker thread.

        The previous image is saved first (and again when the new one is
        attached, for edits made while it loads). ``loadingStarted`` is
        emitted now; ``documentChanged`` or ``loadFailed`` when the read
        ends. A later selection supersedes this one: its result is dropped.
        Returns False when there was nothing to load (same image, no project).
        """
        if self.project is None or index == self.index:
            self.cancel_loading()
            return False
        if not 0 <= index < len(self.project.entries):
            return False
        if self._loading is not None and self._loading_index == index:
            return True  # already on its way
        self.cancel_loading()
        self.save()
        project = self.project
        # the writes of that image must land before its file is read (see _settle)
        writes = [future for future, owner, pending, _ in self._pending if pending == index and owner is project]

        def load(cancel) -> Generator[Progress, None, Document]:
            for future in writes:
                future.exception()  # waits; errors are handled by _collect on the GUI thread
            cancel.raise_if_cancelled()
            yield Progress(0, 1, message=f"Opening {project.entries[index].display_name}", stage="open")
            return project.load_document(index)

        task = start_task(f"Opening image {index}", load, self)
        self._loading, self._loading_index = task, index
        task.succeeded.connect(lambda document: self._on_loaded(task, project, index, document))
        task.failed.connect(lambda error: self._on_load_failed(task, index, error))
        task.cancelled.connect(lambda: self._on_load_ended(task))
        self.loadingStarted.emit(index, project.entries[index].display_name)
        return True

    def reads_slowly(self, index: int) -> bool:
        """Whether image ``index`` is worth reading in the background: a volume,
        more than :data:`QUICK_READ_PIXELS` pixels, or a size its header does not tell."""
        if self.project is None or not 0 <= index < len(self.project.entries):
            return False
        entry = self.project.entries[index]
        if entry.is_volume:
            return True
        pixels = _header_pixels(entry.source)
        # not for Pillow, or broken: the worker reads it and reports what is wrong
        return pixels is None or pixels > QUICK_READ_PIXELS

    def opens_slowly(self, index: int) -> bool:
        """Whether image ``index`` is read in the background when a project opens
        on it: as :meth:`reads_slowly` for a 2-D image; a volume when its files
        hold more than :data:`QUICK_READ_BYTES` (a small series is there at once)."""
        if self.project is None or not 0 <= index < len(self.project.entries):
            return False
        entry = self.project.entries[index]
        if not entry.is_volume:
            # a header that cannot be read: read at once, so that a broken image fails
            # here and the project opens on the next one that reads
            pixels = _header_pixels(entry.source)
            return pixels is not None and pixels > QUICK_READ_PIXELS
        return _bytes_on_disk(entry.source) > QUICK_READ_BYTES

    @property
    def wanted_index(self) -> int:
        """The image being read in the background, else the current one (where Next counts from)."""
        return self._loading_index if self._loading is not None else self.index

    @property
    def loading(self) -> bool:
        """Whether an image is being read in the background."""
        return self._loading is not None

    def cancel_loading(self) -> None:
        """Drop the background read in flight (its result is ignored)."""
        task, self._loading, self._loading_index = self._loading, None, -1
        if task is not None:
            task.cancel()

    def _on_load_ended(self, task) -> bool:
        """True if *task* is the read still wanted (and clears it)."""
        if task is not self._loading:
            return False
        self._loading, self._loading_index = None, -1
        return True

    def _on_loaded(self, task, project: Project, index: int, document: Document) -> None:
        if not self._on_load_ended(task) or project is not self.project:
            return  # superseded, or another project was opened meanwhile
        self._collect(wait=False)
        # taken before save(): it would queue this image's failed-write snapshot again and
        # attach the older file; the snapshot, not the file, holds the user's labels
        unsaved = self._unsaved.pop(index, None)
        self.save()  # edits made to the previous image while this one loaded
        self._attach(index, document, unsaved)

    def _on_load_failed(self, task, index: int, error: BaseException) -> None:
        if self._on_load_ended(task):
            self.loadFailed.emit(index, error)

    def _attach(self, index: int, document: Document, unsaved: np.ndarray | None = None) -> Document:
        """Make the read *document* image ``index``, the current one (with *unsaved*,
        the snapshot of a failed write, or the one kept for it, over its file's labels)."""
        if unsaved is None:
            unsaved = self._unsaved.pop(index, None)
        # what changed while it was read in the background: its status, the label type
        document.status = self.project.entries[index].status
        document.set_label_dtype(self.project.classes.label_dtype)
        if unsaved is not None and unsaved.shape == document.shape:
            # its last write failed: the snapshot, not the file, holds the user's labels
            document.labels[...] = convert_labels(unsaved, document.labels.dtype)
            document.dirty = True
        self._detach()
        document.read_only = self.read_only
        self.document = document
        self.index = index
        self.project.current = index
        if index in self.predictions:
            document.set_prediction(self.predictions.pop(index))
            document.dirty = False
        self._last_status = document.status
        self._unsubscribe = document.subscribe(self._on_document_changed)
        self.documentChanged.emit(index)
        return document

    @property
    def read_only(self) -> bool:
        """Whether the open project may not be written (another studio holds it)."""
        return self.project is not None and self.project.read_only is not None

    def _refresh_lock(self) -> bool:
        """Keep the lock fresh; False (and the project read-only) once another window took it."""
        project = self.project
        if project is None or project.lock is None:
            return project is not None and project.read_only is None
        if project.still_locked():
            return True
        self._heartbeat.stop()
        if self.document is not None:
            self.document.read_only = True
        log.warning("%s: %s; nothing more is written from this window", project.folder, project.read_only)
        self.lockLost.emit(project.read_only)
        return False

    def _release(self) -> None:
        self._heartbeat.stop()
        if self.project is not None:
            self.project.release()

    def _detach(self) -> None:
        if self._unsubscribe is not None:
            self._unsubscribe()
            self._unsubscribe = None
        if self.document is not None and self.document.prediction is not None:
            # keep the prediction so coming back does not mean re-running
            self.predictions[self.index] = self.document.prediction
        self.document = None
        self.index = -1

    def _on_document_changed(self, region) -> None:
        document = self.document
        if document is None:
            return
        self.documentEdited.emit()
        if document.status != self._last_status:
            self._last_status = document.status
            self.project.entries[self.index].status = document.status
            self.statusChanged.emit(self.index, document.status.value)
        if document.dirty:
            self._schedule_save()

    def _schedule_save(self) -> None:
        self._timer.start()
        if not self._deadline.isActive():
            self._deadline.start()

    def match_label_type(self) -> None:
        """Give the open image's labels the project's type after the class
        count crossed 254 (uint8 <-> uint16); labels and undo are kept."""
        if self.project is not None and self.document is not None:
            self.document.set_label_dtype(self.project.classes.label_dtype)

    def set_status(self, index: int, status: ImageStatus) -> None:
        if self.project is None or self.read_only:
            return
        if index == self.index and self.document is not None:
            self.document.set_status(status)
            self._schedule_save()
        else:
            self.project.entries[index].status = status
            self.project.save()
        self.statusChanged.emit(index, ImageStatus(status).value)

    def store_prediction(self, index: int, result: PredictionResult) -> None:
        """A prediction for image ``index`` arrived (from a worker)."""
        if index == self.index and self.document is not None:
            self.document.set_prediction(result)
            self._schedule_save()
        else:
            self.predictions[index] = result
            entry = self.project.entries[index]
            if entry.status == ImageStatus.NEW and not self.read_only:
                entry.status = ImageStatus.PREDICTED
                self.project.save()
                self.statusChanged.emit(index, entry.status.value)
        self._keep_score(index, result)

    def _keep_score(self, index: int, result: PredictionResult) -> None:
        """Keep how unsure the prediction is with its image (``uncertainty`` in
        project.json), for the Images panel's order and Next image to annotate."""
        score = mean_entropy(result.probabilities, max_pixels=SCORE_PIXELS)
        entry = self.project.entries[index]
        entry.uncertainty = None if score != score else score  # NaN: no pixel predicted yet
        self.uncertaintyChanged.emit(index, entry.uncertainty)
        if not self.read_only:
            self._schedule_save()  # project.json, with the next autosave

    def save(self, *, wait: bool = False) -> bool:
        """Write the current labels (in the background) and the project file.

        Snapshots whose earlier write failed are written again. ``wait``
        blocks until every queued label file is written and returns False if
        one could not be (its snapshot is kept for the next try).
        """
        self._timer.stop()
        self._deadline.stop()
        project, document = self.project, self.document
        if project is None:
            return self._collect(wait=True) if wait else True
        if self.read_only:  # its documents cannot be edited: nothing to write
            return True
        if not self._refresh_lock():  # taken over since: writing now would overwrite the other window
            return False
        retry, self._unsaved = self._unsaved, {}
        for index, snapshot in retry.items():
            if not (index == self.index and document is not None and document.dirty):
                self._queue_write(project, index, snapshot)
        try:
            if document is not None and document.dirty:
                document.dirty = False  # before queueing: a failure seen later sets the retry
                project.entries[self.index].status = document.status
                self._queue_write(project, self.index, document.labels.copy())  # the user paints on
            project.save()
        except (OSError, SegstudioError) as error:  # a full disk or a vanished folder
            log.error("autosave failed: %s", error)
            self.saveFailed.emit(error)
            return False
        ok = self._collect(wait=True) if wait else True
        if ok:
            self.saved.emit(str(project.folder))
        return ok

    def _settle(self, index: int) -> None:
        """Wait until the queued writes of image ``index`` are done, so that
        reading its file gives what the user painted (switching back to an
        image right away used to read the file before its write landed)."""
        for future, project, pending_index, _snapshot in list(self._pending):
            if pending_index == index and project is self.project:
                future.exception()  # blocks until it is done; errors are handled by _collect
        self._collect(wait=False)

    def _queue_write(self, project: Project, index: int, snapshot: np.ndarray) -> None:
        future = self._writer.submit(project.write_labels, index, snapshot)
        self._pending.append((future, project, index, snapshot))
        self._watch.start()

    def _collect(self, *, wait: bool) -> bool:
        """Look at finished writes (all of them with ``wait``); keep the
        snapshots of failed ones for a retry. False if one failed."""
        ok = True
        still = []
        for future, project, index, snapshot in self._pending:
            if not wait and not future.done():
                still.append((future, project, index, snapshot))
                continue
            error = future.exception()
            if error is None:
                continue
            ok = False
            log.error("the labels of image %d could not be saved: %s", index, error)
            if project is self.project:
                self._unsaved[index] = snapshot
            self.saveFailed.emit(error)
        self._pending = still
        if not still:
            self._watch.stop()
        return ok

    @property
    def has_unsaved(self) -> bool:
        """Edits not yet on disk: the open image's, snapshots whose write
        failed (waiting for a retry), and writes not yet seen to succeed."""
        return (bool(self._unsaved) or bool(self._pending)
                or bool(self.document is not None and self.document.dirty))

    def close(self) -> bool:
        """Save and close the project; False (and nothing closed) if the
        labels could not be saved."""
        if not self.save(wait=True):
            return False
        self.cancel_loading()
        self._detach()
        self._release()
        self.project = None
        self.predictions.clear()
        self._unsaved.clear()
        self.documentChanged.emit(-1)
        return True

    def discard(self) -> None:
        """Close without saving (the user chose to lose unsaved labels)."""
        self._collect(wait=True)
        self.cancel_loading()
        self._detach()
        self._release()
        self.project = None
        self.predictions.clear()
        self._unsaved.clear()
        self.documentChanged.emit(-1)

    def folder(self) -> Path | None:
        return self.project.folder if self.project is not None else None


def _bytes_on_disk(source: Path) -> int:
    """The size of a volume's file, or of the files directly in its DICOM folder."""
    try:
        if not source.is_dir():
            return source.stat().st_size
        with os.scandir(source) as entries:
            return sum(e.stat().st_size for e in entries if e.is_file())
    except OSError:
        return 0  # unreadable: read at once, and the read says what is wrong


def _header_pixels(source: Path) -> int | None:
    """Width x height from the image's header alone, None when Pillow cannot tell."""
    from PIL import Image

    try:
        with warnings.catch_warnings():  # the size is all we ask: no decompression-bomb warning
            warnings.simplefilter("ignore")
            with Image.open(source) as header:  # lazy: only the header is parsed
                width, height = header.size
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError):
        return None
    return width * height
