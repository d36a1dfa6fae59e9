"""Exporting a project's label maps for use outside segstudio.

Three formats, all PNG at the source image's size:

``png``
    ``<stem>.png``: indexed PNG, pixel = class index, with the class palette
    (255 = unlabelled, shown white).
``overlay``
    ``<stem>_overlay.png``: the image in colour with each labelled pixel
    blended half and half with its class colour; unlabelled pixels show the
    image unchanged. For looking at, not for training.
``binary``
    ``<stem>_<class>.png``: one black/white (0/255) mask per class present in
    the image, for tools that take one mask per structure.

Images without saved labels, or whose labels are all unlabelled, are skipped.
"""

from __future__ import annotations

import logging
import os
import re
from pathlib import Path

import numpy as np

from segstudio.errors import ExportError, InvalidArgumentError, SegstudioError
from segstudio.io.images import read_image, to_uint8_display
from segstudio.io.masks import UNLABELLED, atomic_write_bytes, read_mask, write_indexed_png
from segstudio.io.project import Project
from segstudio.tasks import CancelToken, Progress, Task

log = logging.getLogger(__name__)

EXPORT_FORMATS = ("png", "overlay", "binary")
OVERLAY_ALPHA = 0.5

_UNSAFE_NAME_CHARS = re.compile(r"[^A-Za-z0-9._-]+")


def safe_file_name(name: str) -> str:
    """*name* with every run of characters unsafe in file names replaced by ``_``."""
    cleaned = _UNSAFE_NAME_CHARS.sub("_", name).strip("._")
    return cleaned or "class"


def _class_file_names(names: list[str]) -> list[str]:
    """File-safe, unique (ignoring case) names for the classes."""
    result: list[str] = []
    taken: set[str] = set()
    for index, name in enumerate(names):
        candidate = safe_file_name(name)
        if candidate.casefold() in taken:
            candidate = f"{candidate}_{index}"
        taken.add(candidate.casefold())
        result.append(candidate)
    return result


def _output_stems(project: Project) -> list[str]:
    """The source file stem, or the entry's unique id when two sources share a stem."""
    stems = [e.source.stem for e in project.entries]
    counts: dict[str, int] = {}
    for stem in stems:
        counts[stem.casefold()] = counts.get(stem.casefold(), 0) + 1
    return [stem if counts[stem.casefold()] == 1 else entry.id for stem, entry in zip(stems, project.entries)]


def _encode_png(pixels: np.ndarray) -> bytes:
    """PNG bytes of an ``H x W`` grey or ``H x W x 3`` RGB uint8 array."""
    import cv2

    if pixels.ndim == 3:
        pixels = np.ascontiguousarray(pixels[:, :, ::-1])  # OpenCV writes BGR
    ok, encoded = cv2.imencode(".png", pixels)
    if not ok:
        raise ExportError("the PNG encoder failed")
    return encoded.tobytes()


def overlay_image(image: np.ndarray, labels: np.ndarray, colors: list[tuple[int, int, int]],
                  alpha: float = OVERLAY_ALPHA) -> np.ndarray:
    """Blend class colours onto an image.

    Parameters
    ----------
    image:
        ``H x W`` or ``H x W x 3`` of any supported dtype (scaled to uint8
        for display).
    labels:
        ``H x W`` class indices; 255 and indices without a colour leave the
        image unchanged.
    colors:
        RGB per class.
    alpha:
        Weight of the class colour.

    Returns
    -------
    numpy.ndarray
        ``H x W x 3`` uint8 RGB.
    """
    rgb = to_uint8_display(image)
    if rgb.ndim == 2:
        rgb = np.repeat(rgb[:, :, None], 3, axis=2)
    if rgb.shape[:2] != labels.shape:
        raise InvalidArgumentError(f"labels {labels.shape} do not match the image {rgb.shape[:2]}")
    table = np.zeros((256, 3), np.float32)
    shown = np.zeros(256, bool)
    for index, color in enumerate(colors[:UNLABELLED]):
        table[index] = color
        shown[index] = True
    where = shown[labels]
    out = rgb.copy()
    blended = rgb[where].astype(np.float32) * (1.0 - alpha) + table[labels[where]] * alpha
    out[where] = np.clip(np.rint(blended), 0, 255).astype(np.uint8)
    return out


def _export_one(project: Project, index: int, labels: np.ndarray, target: Path, stem: str,
                fmt: str, class_files: list[str]) -> list[Path]:
    entry = project.entries[index]
    colors = project.classes.colors
    if fmt == "png":
        return [write_indexed_png(target / f"{stem}.png", labels, colors)]
    if fmt == "overlay":
        image = read_image(entry.source)
        if image.shape[:2] != labels.shape:
            raise ExportError(
                f"labels are {labels.shape[1]} x {labels.shape[0]} but the image is "
                f"{image.shape[1]} x {image.shape[0]}",
                path=entry.labels_path,
            )
        pixels = overlay_image(image, labels, colors)
        return [atomic_write_bytes(target / f"{stem}_overlay.png", _encode_png(pixels))]
    written = []
    counts = np.bincount(labels.ravel(), minlength=256)
    for class_index in np.flatnonzero(counts[:UNLABELLED]):
        if class_index >= len(class_files):
            log.warning("%s: label value %d has no class; not exported", entry.labels_path, class_index)
            continue
        mask = np.where(labels == class_index, np.uint8(255), np.uint8(0))
        path = target / f"{stem}_{class_files[class_index]}.png"
        written.append(atomic_write_bytes(path, _encode_png(mask)))
    return written


def export_project(
    project: Project,
    out_dir: str | os.PathLike[str],
    *,
    fmt: str = "png",
    cancel: CancelToken | None = None,
) -> Task[list[Path]]:
    """Write every labelled image of *project* to *out_dir* in format *fmt*.

    A generator function: yields :class:`Progress` once per image and returns
    the list of written files (nothing happens before the first ``next``).
    An image that fails (unreadable source or label file, size mismatch) is
    logged and the export goes on with the next; at the end an
    :class:`ExportError` reports the failures, with the files written so far
    in its ``written`` attribute.

    Parameters
    ----------
    project:
        The project to export.
    out_dir:
        Destination folder, created if needed.
    fmt:
        ``"png"``, ``"overlay"`` or ``"binary"`` (see the module docstring).
    cancel:
        Checked between images.

    Raises
    ------
    InvalidArgumentError
        Unknown format.
    ExportError
        The folder cannot be created, or some images failed.
    """
    if fmt not in EXPORT_FORMATS:
        raise InvalidArgumentError(f"unknown export format {fmt!r} (one of {', '.join(EXPORT_FORMATS)})")
    target = Path(out_dir)
    try:
        target.mkdir(parents=True, exist_ok=True)
    except FileExistsError:
        raise ExportError("is a file, not a folder", path=target) from None
    except OSError as exc:
        raise ExportError(f"cannot create folder: {exc.strerror or exc}", path=target) from None
    total = len(project.entries)
    stems = _output_stems(project)
    class_files = _class_file_names(project.classes.names)
    written: list[Path] = []
    failures: list[SegstudioError] = []
    skipped = 0
    yield Progress(0, total, message="exporting", stage="export")
    for index, entry in enumerate(project.entries):
        if cancel is not None:
            cancel.raise_if_cancelled()
        try:
            labels = read_mask(entry.labels_path) if entry.labels_path.is_file() else None
            if labels is None or not (labels != UNLABELLED).any():
                log.info("skipping %s: no labels", entry.source.name)
                skipped += 1
            else:
                written.extend(_export_one(project, index, labels, target, stems[index], fmt, class_files))
        except SegstudioError as error:
            log.error("%s", error)
            failures.append(error)
        yield Progress(index + 1, total, message=entry.source.name, stage="export")
    log.info("exported %d file(s) to %s (%d image(s) without labels skipped)", len(written), target, skipped)
    if failures:
        error = ExportError(
            f"{len(failures)} of {total} image(s) could not be exported; the first: {failures[0]}",
            path=target,
        )
        error.written = written  # type: ignore[attr-defined]
        raise error
    return written
