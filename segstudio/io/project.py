"""A project is a folder: ``project.json`` plus one label file per image or volume.

``project.json`` lists the classes, the images (their source files, review
status and label file), the image shown last, and the model and CRF
settings. Label maps of 2-D images live in ``labels/<id>.png`` as indexed
PNGs with the class palette, so any viewer shows them in colour (16-bit grey
PNGs once the project has more than 254 classes); those of
medical volumes (DICOM series, NIfTI, TIFF stacks; see
:mod:`segstudio.io.project_volumes`) in ``labels/<id>.npz``. All are written
atomically. Source images are never copied or modified.

Format version 2 adds the optional entry keys ``kind``, ``selector`` and
``description``; a project without volumes is still written as version 1,
which older segstudio versions open.

Image paths are stored relative to the project folder when the image lies
inside it or in a folder beside it, so a project moved or copied together
with its images still opens; other images are stored by absolute path.
Nothing but file paths, settings and labels is written: no image metadata,
so nothing that could identify a patient ends up in the project.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import numpy as np

from segstudio.annotation.classes import ClassList
from segstudio.annotation.document import Document, ImageStatus
from segstudio.errors import (
    DataError,
    ExportError,
    InvalidArgumentError,
    SegstudioError,
    UnreadableInputError,
)
from segstudio.io.images import list_image_files, read_image
from segstudio.io.class_change import JOURNAL_FILE, ClassChange, finish_interrupted
from segstudio.io.leftovers import remove_leftovers
from segstudio.io.project_entry import ImageEntry
from segstudio.io.project_file import (
    FORMAT_NAME,
    FORMAT_VERSION,
    LABELS_FOLDER,
    PROJECT_FILE,
    entry_to_json,
    parse_project,
    read_project_file,
)
from segstudio.io.project_lock import ProjectLock
from segstudio.io.project_paths import (
    is_inside,
    make_id,
)
from segstudio.io.masks import LABEL_DTYPES, atomic_write_bytes, convert_labels, read_mask, write_label_png
from segstudio.io.project_volumes import (
    LABEL_VOLUME_SUFFIX,
    VolumeCandidate,
    find_volumes,
    load_volume_document,
    read_label_volume,
    write_label_volume,
)

log = logging.getLogger(__name__)

#: what a project without volumes is written as, for older readers
_IMAGES_ONLY_VERSION = 1


def _default_crf_settings() -> dict[str, Any]:
    from segstudio.refine import CRFParams

    return CRFParams().to_dict()





class Project:
    """An annotation project stored in a folder.

    Use :meth:`create` or :meth:`open` rather than the constructor.

    Attributes
    ----------
    folder:
        The project folder (absolute).
    classes:
        The label classes.
    entries:
        The images, in display order.
    current:
        Index of the image shown last (0 when there are none).
    model_settings:
        Free-form model choice: architecture, checkpoint, device, tile...
    crf_settings:
        :meth:`CRFParams.to_dict` output.
    """

    def __init__(
        self,
        folder: Path,
        classes: ClassList,
        entries: list[ImageEntry] | None = None,
        *,
        current: int = 0,
        model_settings: dict[str, Any] | None = None,
        crf_settings: dict[str, Any] | None = None,
    ) -> None:
        self.folder = Path(os.path.abspath(folder))
        self.classes = classes
        self.entries: list[ImageEntry] = list(entries or [])
        self._current = 0
        self.current = current if self.entries else 0
        self.model_settings: dict[str, Any] = dict(model_settings or {})
        self.crf_settings: dict[str, Any] = dict(crf_settings) if crf_settings else _default_crf_settings()
        #: why nothing may be written (another studio holds the lock), or None
        self.read_only: str | None = None
        self.lock: ProjectLock | None = None

    # ------------------------------------------------------------------
    # Creating and opening
    # ------------------------------------------------------------------

    @property
    def project_file(self) -> Path:
        return self.folder / PROJECT_FILE

    @property
    def labels_folder(self) -> Path:
        return self.folder / LABELS_FOLDER

    @classmethod
    def create(
        cls,
        folder: str | os.PathLike[str],
        image_paths: Iterable[str | os.PathLike[str]],
        classes: ClassList,
        *,
        volume_paths: Iterable[str | os.PathLike[str]] = (),
    ) -> Project:
        """Start a project in *folder* with the given images and classes, and save it.

        Parameters
        ----------
        folder:
            Created if absent. An existing folder may hold other files (the
            images themselves, say) but no ``project.json`` and no non-empty
            ``labels`` folder, which would belong to another project.
        image_paths:
            Image files and folders of images (see :func:`list_image_files`).
        classes:
            The label classes.
        volume_paths:
            DICOM series folders or files, NIfTI files, TIFF stacks (see
            :meth:`add_volumes`).

        Raises
        ------
        InvalidArgumentError
            The folder already holds a project, or is a file.
        UnreadableInputError
            An image path does not exist or a folder holds no images; a
            volume path holds no volume.
        ExportError
            The project file cannot be written.
        """
        folder = Path(os.path.abspath(folder))
        if folder.exists() and not folder.is_dir():
            raise InvalidArgumentError("is a file, not a folder for a project", path=folder)
        if (folder / PROJECT_FILE).exists():
            raise InvalidArgumentError(
                f"already holds a project ({PROJECT_FILE}); open it instead of creating a new one",
                path=folder,
            )
        labels = folder / LABELS_FOLDER
        if labels.is_dir() and any(labels.iterdir()):
            raise InvalidArgumentError(
                f"has a non-empty '{LABELS_FOLDER}' folder that a new project would overwrite",
                path=folder,
            )
        paths = list(image_paths)
        files = list_image_files(paths) if paths else []
        project = cls(folder, classes)
        project._append_files(files)
        for path in volume_paths:
            project.add_volumes(path)
        project.save()
        log.info("created project %s with %d image(s)", folder, len(project.entries))
        return project

    @classmethod
    def open(cls, folder: str | os.PathLike[str], *, lock: bool = False, take_over: bool = False,
             read_only: str | None = None) -> Project:
        """Open the project in *folder* (or the ``project.json`` file itself).

        With *lock* (the studio), the project's lock is taken first
        (:mod:`segstudio.io.project_lock`; *take_over* replaces another's).
        With *read_only* (the reason, shown to the user) nothing is ever
        written, not even the repairs of an interrupted write.

        Raises
        ------
        UnreadableInputError
            No project file, damaged JSON, another format, a newer format
            version, or entries that do not make sense; the message names
            the file.
        ProjectLockedError
            *lock* and another studio holds the project.
        """
        path = Path(os.path.abspath(folder))
        if path.name == PROJECT_FILE and not path.is_dir():
            path = path.parent
        project_file = path / PROJECT_FILE
        if not path.is_dir():
            raise UnreadableInputError("no such project folder", path=path)
        data = read_project_file(project_file)
        try:
            project = cls._from_json(path, data)
        except SegstudioError as exc:
            raise UnreadableInputError(
                f"the project file is not valid: {exc.problem}", path=project_file
            ) from None
        if read_only is not None:
            project.read_only = read_only
        elif lock:
            project.take_lock(take_over=take_over)
        if project.lock is None:  # a studio holding the project may be in the middle of a write
            if (path / JOURNAL_FILE).exists():
                log.warning("%s: a class deletion is under way or was interrupted; the labels may not "
                            "match the classes until the project is opened in the studio", path)
            return project
        try:
            finish_interrupted(project)
            remove_leftovers(path, [project.labels_folder])
        except BaseException:
            project.release()
            raise
        return project

    def take_lock(self, *, take_over: bool = False) -> None:
        """Hold this project's lock until :meth:`release` (see :mod:`segstudio.io.project_lock`).

        Raises
        ------
        ProjectLockedError
            Another studio holds it and *take_over* is False.
        """
        lock = ProjectLock(self.folder)
        try:
            lock.acquire(take_over=take_over)
        except (OSError, ExportError) as exc:
            reason = exc.problem if isinstance(exc, ExportError) else (exc.strerror or str(exc))
            self.read_only = f"its folder cannot be written: {reason}"
            log.warning("%s: opened read-only, %s", self.folder, self.read_only)
            return
        self.lock = lock

    def still_locked(self) -> bool:
        """Whether this project may still be written: not read-only, and its lock
        (when held) not taken over by another studio. A lost lock makes the
        project read-only from here on."""
        if self.read_only is not None:
            return False
        if self.lock is not None and not self.lock.refresh():
            self.lock = None
            self.read_only = "another window took it over"
            return False
        return True

    def release(self) -> None:
        """Give up the lock, if held (closing the project)."""
        if self.lock is not None:
            self.lock.release()
            self.lock = None

    def _check_writable(self, path: Path) -> None:
        if self.read_only is not None:
            raise ExportError(f"the project is open read-only ({self.read_only}); nothing was written",
                              path=path)

    @classmethod
    def _from_json(cls, folder: Path, data: Any) -> Project:
        parsed = parse_project(folder, data)
        return cls(folder, parsed.classes, parsed.entries, current=parsed.current,
                   model_settings=parsed.model, crf_settings=parsed.crf)

    # ------------------------------------------------------------------
    # Images
    # ------------------------------------------------------------------

    @property
    def current(self) -> int:
        """Index of the image shown last."""
        return self._current

    @current.setter
    def current(self, index: int) -> None:
        if not self.entries and index == 0:
            self._current = 0
            return
        self._current = self._check_index(index)

    def __len__(self) -> int:
        return len(self.entries)

    def _check_index(self, index: int) -> int:
        if isinstance(index, bool) or not isinstance(index, int) or not 0 <= index < len(self.entries):
            raise InvalidArgumentError(f"no image with index {index} (the project has {len(self.entries)})")
        return index

    def _append(self, new: Iterable[tuple[ImageEntry, str]]) -> list[ImageEntry]:
        """Give new (entry, name) pairs an id and a label path and append them,
        skipping those already present."""
        known = {e.key() for e in self.entries}
        taken = {e.id.casefold() for e in self.entries}
        added: list[ImageEntry] = []
        for entry, name in new:
            key = entry.key()
            if key in known:
                log.info("skipping %s: already in the project", entry.display_name)
                continue
            known.add(key)
            entry.id = make_id(name, key, taken)
            taken.add(entry.id.casefold())
            suffix = LABEL_VOLUME_SUFFIX if entry.is_volume else ".png"
            entry.labels_path = self.labels_folder / f"{entry.id}{suffix}"
            self.entries.append(entry)
            added.append(entry)
        return added

    def _append_files(self, files: Iterable[Path]) -> list[ImageEntry]:
        sources = (Path(os.path.abspath(f)) for f in files)
        return self._append((ImageEntry("", s, ImageStatus.NEW, Path()), s.stem) for s in sources)

    def add_images(self, paths: Iterable[str | os.PathLike[str]]) -> list[ImageEntry]:
        """Add image files (or folders of images); images already present are skipped.

        The project file is not saved; call :meth:`save`.

        Returns
        -------
        list[ImageEntry]
            The entries actually added.
        """
        paths = list(paths)
        return self._append_files(list_image_files(paths)) if paths else []

    def add_volumes(self, path: str | os.PathLike[str]) -> list[ImageEntry]:
        """Add the medical volumes at *path*; volumes already present are skipped.

        DICOM folders and files, NIfTI files (one entry per volume of a 4-D
        image) and TIFF stacks, as found by
        :func:`~segstudio.io.project_volumes.find_volumes` (headers only).
        The project file is not saved; call :meth:`save`.

        Returns
        -------
        list[ImageEntry]
            The entries actually added.

        Raises
        ------
        UnreadableInputError
            The path holds no volume, or a header cannot be read.
        """
        added = self.add_volume_candidates(find_volumes(path))
        log.info("added %d volume(s) from %s", len(added), path)
        return added

    def add_volume_candidates(self, candidates: Iterable[VolumeCandidate]) -> list[ImageEntry]:
        """Add volumes already found by :func:`~segstudio.io.project_volumes.find_volumes`."""
        return self._append(
            (ImageEntry("", c.source, ImageStatus.NEW, Path(), kind="volume", selector=c.selector,
                        description=c.description), c.name)
            for c in candidates
        )

    def has_labels(self, index: int) -> bool:
        """Whether image *index* has a saved label file."""
        return self.entries[self._check_index(index)].labels_path.is_file()

    def read_labels(self, index: int) -> np.ndarray | None:
        """The saved label map of entry *index* (``H x W``, or ``Z x H x W`` for a
        volume) or None, unchecked against the source.

        The map comes in the project's label type (``classes.label_dtype``),
        whatever depth the file was written in: a file from before the
        project passed 254 classes is 8-bit and reads as uint16 here.

        Raises
        ------
        UnreadableInputError
            The file cannot be read, or holds class indices the project's
            label type cannot (the message names the file).
        """
        entry = self.entries[self._check_index(index)]
        if not entry.labels_path.is_file():
            return None
        labels = read_label_volume(entry.labels_path) if entry.is_volume else read_mask(entry.labels_path)
        return self._in_project_type(labels, entry.labels_path)

    def _in_project_type(self, labels: np.ndarray, path: Path) -> np.ndarray:
        return self._converted(labels, self.classes.label_dtype, path)

    def _converted(self, labels: np.ndarray, dtype: np.dtype, path: Path) -> np.ndarray:
        try:
            return convert_labels(labels, dtype, path=path)
        except InvalidArgumentError as error:
            raise UnreadableInputError(
                f"{error.problem}; the project has {len(self.classes)} classes", path=path
            ) from None

    def load_document(self, index: int) -> Document:
        """Read image *index* and its saved labels (if any) into a :class:`Document`.

        A volume entry gives a volume document (``Z x H x W`` labels) with
        the :class:`~segstudio.io.volume.Volume` as ``doc.volume``.

        Raises
        ------
        UnreadableInputError
            The image or the label file cannot be read (the error names it).
        DataError
            The saved labels do not match the image's size.
        """
        entry = self.entries[self._check_index(index)]
        dtype = self.classes.label_dtype
        if entry.is_volume:
            return load_volume_document(entry.source, entry.selector, entry.labels_path, entry.status,
                                        label_dtype=dtype)
        image = read_image(entry.source)
        labels = None
        if entry.labels_path.is_file():
            labels = self._in_project_type(read_mask(entry.labels_path), entry.labels_path)
            if labels.shape != image.shape[:2]:
                raise DataError(
                    f"labels are {labels.shape[1]} x {labels.shape[0]} but the image {entry.source.name} "
                    f"is {image.shape[1]} x {image.shape[0]}",
                    path=entry.labels_path,
                )
        return Document(image, labels=labels, source=entry.source, status=entry.status, label_dtype=dtype)

    def save_document(self, index: int, doc: Document) -> None:
        """Write the document's labels and status (and the project file); clears ``doc.dirty``.

        Raises
        ------
        InvalidArgumentError
            The labels hold a class index the project has no class for.
        ExportError
            A file cannot be written.
        """
        self.write_labels(index, doc.labels)
        self.entries[index].status = doc.status
        self.save()
        doc.dirty = False

    def write_labels(self, index: int, labels: np.ndarray) -> None:
        """Write one image's label map (an indexed PNG, a 16-bit PNG when the
        project has more than 254 classes, or an npz for a volume).

        Touches nothing but that file, so the studio can call it from a
        background thread with a snapshot of the labels. A map of the other
        label type (a snapshot taken before the class count crossed 254) is
        converted to the project's.
        """
        entry = self.entries[self._check_index(index)]
        self._check_writable(entry.labels_path)
        if not is_inside(self.folder, entry.labels_path):  # a link made since the project opened
            raise ExportError("the label file lies outside the project folder (a link?); not written",
                              path=entry.labels_path)
        self._write_label_file(entry, labels, self.classes, entry.labels_path)

    def _write_label_file(self, entry: ImageEntry, labels: np.ndarray, classes: ClassList, path: Path) -> None:
        labels = convert_labels(labels, classes.label_dtype, path=entry.labels_path)
        if entry.is_volume:
            write_label_volume(path, labels, len(classes))
        else:
            write_label_png(path, labels, classes.colors)

    def delete_class(self, index: int, replacement: int | None = None, *,
                     on_commit: Callable[[np.ndarray], None] | None = None) -> np.ndarray:
        """Remove class *index*, renumber every saved label file and save the
        project file, all or nothing, even when the process is killed midway.

        Its pixels become *replacement* (a class index before the removal)
        or unlabelled; going from 255 classes to 254 also narrows the files
        to 8-bit. The renumbered files are written beside their targets
        first, so one unreadable file stops the deletion with the project
        intact; then a journal makes the change one that is finished the
        next time the project opens if the process dies (see
        :mod:`segstudio.io.class_change`). The open document is not touched:
        *on_commit* gets the table (for :meth:`Document.remap_labels`) the
        moment the deletion becomes certain, before the files change, so it
        is called even when a later write fails.

        Raises
        ------
        InvalidArgumentError
            No such class, or a class replacing itself.
        UnreadableInputError
            A label file cannot be read (nothing has changed).
        ExportError
            A file cannot be written (nothing has changed unless it was
            ``project.json``; the journal finishes the change on open).
        """
        self._check_writable(self.project_file)
        mapping = self.classes.removal_mapping(index, replacement)
        after = ClassList.from_list(self.classes.to_list())
        after.remove(index)
        change = ClassChange(self.folder, self.classes.to_list(), after.to_list())
        try:
            for entry_index, labels in self._renumbered(mapping):
                entry = self.entries[entry_index]
                self._write_label_file(entry, labels, after, change.stage(entry.labels_path))
        except BaseException:
            change.discard()
            raise
        change.commit()
        self.classes.remove(index)
        if on_commit is not None:
            on_commit(mapping)
        try:
            change.apply()
            self.save()
            change.finish()
        except (OSError, SegstudioError) as exc:
            reason = exc.problem if isinstance(exc, SegstudioError) else (exc.strerror or str(exc))
            raise ExportError(
                f"the class was deleted, but the project could not be brought up to date ({reason}); "
                f"it will be when the project is next opened", path=self.project_file) from None
        return mapping

    def _renumbered(self, mapping: np.ndarray) -> Iterable[tuple[int, np.ndarray]]:
        """``(entry index, labels through the table)`` for every saved file whose labels change."""
        table = np.asarray(mapping)
        if table.dtype not in LABEL_DTYPES or table.shape not in ((256,), (65536,)):
            raise InvalidArgumentError(
                f"a label mapping must be 256 or 65536 uint8/uint16 values, got {table.dtype} {table.shape}"
            )
        source_type = LABEL_DTYPES[0] if table.shape == (256,) else LABEL_DTYPES[1]
        for entry_index, entry in enumerate(self.entries):
            path = entry.labels_path
            if not path.is_file():
                continue
            labels = read_label_volume(path) if entry.is_volume else read_mask(path)
            labels = self._converted(labels, source_type, path)
            remapped = table[labels]
            if remapped.dtype != labels.dtype or not np.array_equal(remapped, labels):
                yield entry_index, remapped

    # ------------------------------------------------------------------
    # The project file
    # ------------------------------------------------------------------

    def to_json(self) -> dict[str, Any]:
        """The content of ``project.json``."""
        volumes = any(e.is_volume for e in self.entries)
        return {
            "format": FORMAT_NAME,
            "version": FORMAT_VERSION if volumes else _IMAGES_ONLY_VERSION,
            "classes": self.classes.to_list(),
            "images": [entry_to_json(self.folder, e) for e in self.entries],
            "current": self.current,
            "model": self.model_settings,
            "crf": self.crf_settings,
        }

    def save(self) -> Path:
        """Write ``project.json`` atomically and return its path.

        Raises
        ------
        ExportError
            The file cannot be written, or a setting is not JSON-serialisable.
            A project open read-only writes nothing: its settings changes
            (a model, a class colour) last as long as the window.
        """
        if self.read_only is not None:
            log.debug("%s is open read-only; project.json not written", self.folder)
            return self.project_file
        try:
            text = json.dumps(self.to_json(), indent=2, ensure_ascii=False)
        except (TypeError, ValueError) as exc:
            raise ExportError(f"project settings cannot be saved: {exc}", path=self.project_file) from None
        return atomic_write_bytes(self.project_file, (text + "\n").encode("utf-8"))
