"""Exporting a project's label maps for use outside segstudio.

Label maps come as the project keeps them: ``uint8`` (at most 254 classes,
255 = unlabelled) or ``uint16`` (more classes, 65535 = unlabelled; 255 is an
ordinary class there). See :func:`segstudio.io.masks.label_dtype`.

For 2-D images, three formats, all PNG at the source image's size:

``png``
    ``<stem>.png``, pixel = class index: for a uint8 map an indexed PNG with
    the class palette (255 = unlabelled, shown white); for a uint16 map a
    16-bit greyscale PNG (65535 = unlabelled; a PNG palette holds only 256
    colours, so there is none).
``overlay``
    ``<stem>_overlay.png``: the image in colour with each labelled pixel
    blended half and half with its class colour; unlabelled pixels show the
    image unchanged. For looking at, not for training.
``binary``
    ``<stem>_<class>.png``: one black/white (0/255) mask per class present in
    the image, for tools that take one mask per structure.
``ome-tiff``
    ``<stem>.labels.ome.tif``: the label map (pixel = class index, 255 or
    65535 = unlabelled) as a tiled, pyramidal OME-TIFF, for whole-slide
    viewers (QuPath, napari); see :mod:`segstudio.io.slide_export`.
``geojson``
    ``<stem>.geojson``: the regions of each class as polygons with holes,
    one MultiPolygon feature per class named and coloured as the class, as
    QuPath imports them.

For medical volumes (project entries of kind ``"volume"``), named by entry id:

``png``
    A folder ``<id>/`` of PNGs, ``slice_0000.png`` ... in slice order, each
    written like the 2-D ``png`` format (indexed or 16-bit).
``nifti``
    ``<id>.nii.gz``: a label map on the source's voxel grid and orientation,
    class ``i`` written as ``i + 1`` and unlabelled as 0 (0 = nothing, as
    medical viewers expect), uint8 when every value fits, else uint16; with
    ``<id>.ctbl`` (3D Slicer colour table) and ``<id>.label.txt`` (ITK-SNAP
    label description) beside it.
``dicom-seg``
    ``<id>.seg.dcm``: a DICOM Segmentation referencing the source series,
    one segment per class present (DICOM sources only).

A format that does not apply to an entry (``overlay`` and ``binary`` for a
volume; ``nifti`` and ``dicom-seg`` for an image; ``dicom-seg`` for a
volume that is not DICOM) skips it with a log line. Entries without saved
labels, or whose labels are all unlabelled, are skipped too.
"""

from __future__ import annotations

import logging
import os
import re
from pathlib import Path

import numpy as np

from segstudio.errors import ExportError, InvalidArgumentError, SegstudioError
from segstudio.io.images import read_image, to_uint8_display
from segstudio.io.masks import atomic_write_bytes, unlabelled_for, write_label_png
from segstudio.io.project import ImageEntry, Project
from segstudio.io.project_paths import is_inside, same_file_key
from segstudio.io.volume import is_nifti_path, looks_like_dicom
from segstudio.tasks import CancelToken, Progress, Task

log = logging.getLogger(__name__)

IMAGE_FORMATS = ("png", "overlay", "binary", "ome-tiff", "geojson")
VOLUME_FORMATS = ("png", "nifti", "dicom-seg")
EXPORT_FORMATS = ("png", "overlay", "binary", "ome-tiff", "geojson", "nifti", "dicom-seg")
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
    """Per entry: an image's file stem, or its unique id when two images share a
    stem; a volume's id (its sources are folders and multi-volume files)."""
    stems = [e.source.stem for e in project.entries]
    counts: dict[str, int] = {}
    for stem, entry in zip(stems, project.entries, strict=True):
        if not entry.is_volume:
            counts[stem.casefold()] = counts.get(stem.casefold(), 0) + 1
    return [
        entry.id if entry.is_volume or counts[stem.casefold()] > 1 else stem
        for stem, entry in zip(stems, project.entries, strict=True)
    ]


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
        ``H x W`` uint8 or uint16 class indices; the unlabelled value of the
        type (255 or 65535) and indices without a colour leave the image
        unchanged.
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
    unlabelled = unlabelled_for(labels)
    count = min(len(colors), unlabelled)
    table = np.zeros((unlabelled + 1, 3), np.float32)
    table[:count] = np.asarray(colors[:count], np.float32).reshape(count, 3)
    shown = np.zeros(unlabelled + 1, bool)
    shown[:count] = True
    where = shown[labels]
    out = rgb.copy()
    blended = rgb[where].astype(np.float32) * (1.0 - alpha) + table[labels[where]] * alpha
    out[where] = np.clip(np.rint(blended), 0, 255).astype(np.uint8)
    return out


class _Place:
    """Where an export writes a name: inside the chosen folder, and never over a source image."""

    def __init__(self, target: Path, project: Project) -> None:
        self.target = target
        self.sources = {same_file_key(entry.source) for entry in project.entries}

    def __call__(self, name: str) -> Path:
        path = self.target / name
        if not is_inside(self.target, path):
            raise ExportError(f"the output name {name!r} would lie outside the export folder; not written",
                              path=self.target)
        if same_file_key(path) in self.sources:
            raise ExportError("this is a source image of the project; exports never write over one",
                              path=path)
        return path


def _export_one(project: Project, index: int, labels: np.ndarray, place: _Place, stem: str,
                fmt: str, class_files: list[str]) -> list[Path]:
    entry = project.entries[index]
    colors = project.classes.colors
    if fmt == "png":
        return [write_label_png(place(f"{stem}.png"), labels, colors)]
    if fmt == "ome-tiff":
        from segstudio.io.slide_export import write_label_pyramid

        return [write_label_pyramid(place(f"{stem}.labels.ome.tif"), labels)]
    if fmt == "geojson":
        from segstudio.io.slide_export import write_geojson

        return [write_geojson(place(f"{stem}.geojson"), labels, project.classes.names, colors)]
    if fmt == "overlay":
        image = read_image(entry.source)
        if image.shape[:2] != labels.shape:
            raise ExportError(
                f"labels are {labels.shape[1]} x {labels.shape[0]} but the image is "
                f"{image.shape[1]} x {image.shape[0]}",
                path=entry.labels_path,
            )
        pixels = overlay_image(image, labels, colors)
        return [atomic_write_bytes(place(f"{stem}_overlay.png"), _encode_png(pixels))]
    written = []
    unlabelled = unlabelled_for(labels)
    counts = np.bincount(labels.ravel(), minlength=unlabelled + 1)
    for class_index in np.flatnonzero(counts[:unlabelled]):
        if class_index >= len(class_files):
            log.warning("%s: label value %d has no class; not exported", entry.labels_path, class_index)
            continue
        mask = np.where(labels == class_index, np.uint8(255), np.uint8(0))
        path = place(f"{stem}_{class_files[class_index]}.png")
        written.append(atomic_write_bytes(path, _encode_png(mask)))
    return written


def _is_dicom_source(entry: ImageEntry) -> bool:
    source = entry.source
    if source.is_dir():
        return True  # folders are read as DICOM series
    return not is_nifti_path(source) and source.suffix.lower() not in (".tif", ".tiff") and looks_like_dicom(source)


def _skip_reason(entry: ImageEntry, fmt: str) -> str | None:
    """Why *fmt* does not apply to *entry*, or None when it does."""
    if entry.is_volume and fmt not in VOLUME_FORMATS:
        return f"{fmt} export is for 2-D images; use png, nifti or dicom-seg for volumes"
    if not entry.is_volume and fmt not in IMAGE_FORMATS:
        return f"{fmt} export is for volumes (DICOM, NIfTI); use {', '.join(IMAGE_FORMATS)} for images"
    if fmt == "dicom-seg" and not _is_dicom_source(entry):
        return "DICOM SEG needs a DICOM source (it references the source images); use nifti"
    return None


def _export_volume(project: Project, entry: ImageEntry, labels: np.ndarray, place: _Place,
                   fmt: str, allow_uneven_spacing: bool = False) -> list[Path]:
    from segstudio.annotation.document import ImageStatus
    from segstudio.io.label_tables import label_table_paths
    from segstudio.io.medical_export import write_dicom_seg, write_nifti_labels, write_png_slices
    from segstudio.io.project_volumes import read_source_volume

    if fmt == "png":
        return write_png_slices(place(entry.id), labels, project.classes.colors)
    volume = read_source_volume(entry.source, entry.selector)
    if volume.shape_zyx != labels.shape:
        raise ExportError(
            f"labels are {' x '.join(map(str, labels.shape))} but the volume is "
            f"{' x '.join(map(str, volume.shape_zyx))} (slices x rows x columns)",
            path=entry.labels_path,
        )
    if fmt == "nifti":
        # Class i is written as i + 1 and unlabelled as 0, as medical viewers expect; the
        # 3D Slicer and ITK-SNAP label tables beside it name each value.
        nifti = place(f"{entry.id}.nii.gz")
        tables = [place(table.name) for table in label_table_paths(nifti)]  # checked before writing
        return [write_nifti_labels(nifti, labels, volume, project.classes.names, project.classes.colors,
                                   allow_uneven_spacing=allow_uneven_spacing), *tables]
    if not ((labels != 0) & (labels != unlabelled_for(labels))).any():
        log.info("skipping %s: only background is labelled, DICOM SEG would hold no segment",
                 entry.display_name)
        return []
    algorithm = "AUTOMATIC" if entry.status is ImageStatus.PREDICTED else "SEMIAUTOMATIC"
    return [write_dicom_seg(place(f"{entry.id}.seg.dcm"), labels, volume, project.classes.names,
                            project.classes.colors, algorithm_type=algorithm)]


def export_project(
    project: Project,
    out_dir: str | os.PathLike[str],
    *,
    fmt: str = "png",
    cancel: CancelToken | None = None,
    allow_uneven_spacing: bool = False,
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
        ``"png"``, ``"overlay"``, ``"binary"``, ``"nifti"`` or ``"dicom-seg"``
        (see the module docstring).
    cancel:
        Checked between images.
    allow_uneven_spacing:
        For ``"nifti"``: write volumes whose source slices are not evenly
        spaced too (see :func:`~segstudio.io.medical_export.write_nifti_labels`).

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
    place = _Place(target, project)
    class_files = _class_file_names(project.classes.names)
    written: list[Path] = []
    failures: list[SegstudioError] = []
    skipped = 0
    yield Progress(0, total, message="exporting", stage="export")
    for index, entry in enumerate(project.entries):
        if cancel is not None:
            cancel.raise_if_cancelled()
        reason = _skip_reason(entry, fmt)
        try:
            labels = None if reason else project.read_labels(index)
            if reason:
                log.info("skipping %s: %s", entry.display_name, reason)
                skipped += 1
            elif labels is None or not (labels != unlabelled_for(labels)).any():
                log.info("skipping %s: no labels", entry.display_name)
                skipped += 1
            elif entry.is_volume:
                written.extend(_export_volume(project, entry, labels, place, fmt, allow_uneven_spacing))
            else:
                written.extend(_export_one(project, index, labels, place, stems[index], fmt, class_files))
        except SegstudioError as error:
            log.error("%s", error)
            failures.append(error)
        yield Progress(index + 1, total, message=entry.display_name, stage="export")
    log.info("exported %d file(s) to %s (%d image(s) skipped)", len(written), target, skipped)
    if failures:
        error = ExportError(
            f"{len(failures)} of {total} image(s) could not be exported; the first, "
            f"{Path(failures[0].path).name if failures[0].path else 'an image'}: {failures[0].problem}",
            path=target,
        )
        error.written = written  # type: ignore[attr-defined]
        raise error
    return written
