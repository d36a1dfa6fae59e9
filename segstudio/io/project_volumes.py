"""Medical volumes in a project: finding them, and storing their label maps.

A project entry of kind ``"volume"`` names a source (a DICOM series folder
or file, a NIfTI file, a multi-page TIFF) and, where the source holds more
than one volume, a *selector*: ``{"series_uid": ...}`` for one series of a
DICOM folder, ``{"volume_index": n}`` for one volume of a 4-D NIfTI file.
The selector is passed to :func:`~segstudio.io.volume.read_volume` as
keyword arguments.

A volume's labels are one ``Z x Y x X`` uint8 map (255 = unlabelled; uint16
with 65535 for a project of more than 254 classes) kept
in ``labels/<id>.npz``: compressed, exact, and one file per volume instead
of thousands of slice PNGs.

Nothing that identifies a patient is stored: descriptions come from the
series description, series number, modality or the file name.
"""

from __future__ import annotations

import io
import logging
import os
import zipfile
import zlib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from segstudio.annotation.document import Document, ImageStatus
from segstudio.errors import DataError, InvalidArgumentError, SegstudioError, UnreadableInputError
from segstudio.io import limits
from segstudio.io.images import IMAGE_SUFFIXES
from segstudio.io.masks import LABEL_DTYPES, atomic_write_bytes, convert_labels, unlabelled_for
from segstudio.io.volume import NIFTI_SUFFIXES, is_nifti_path, looks_like_dicom, read_volume

log = logging.getLogger(__name__)

LABEL_VOLUME_SUFFIX = ".npz"
_LABELS_KEY = "labels"
ENTRY_KINDS = ("image", "volume")
_SELECTOR_KEYS = ("series_uid", "volume_index")
_TIFF_SUFFIXES = (".tif", ".tiff")
# How many files of a folder are opened to look for the DICOM marker: enough
# to see through a few stray files, few enough for folders of thousands.
_DICOM_PROBES = 8


@dataclass(frozen=True)
class VolumeCandidate:
    """One volume found at a path, before it becomes a project entry.

    Attributes
    ----------
    source:
        The file or folder to read.
    selector:
        Keyword arguments for :func:`read_volume` (``None`` when the source
        holds one volume).
    description:
        Shown beside the file name (series description, ``vol k``); never
        patient data.
    name:
        File-safe stem for the entry id and output files.
    series_uid:
        For DICOM, the SeriesInstanceUID (when it was read), to filter by.
    """

    source: Path
    selector: dict[str, Any] | None
    description: str
    name: str
    series_uid: str | None = None


# --------------------------------------------------------------------------
# Selectors
# --------------------------------------------------------------------------


def check_selector(selector: Any) -> dict[str, Any] | None:
    """Validate a selector from a project file or a caller; returns a clean copy.

    Raises
    ------
    InvalidArgumentError
        Not a mapping, an unknown key, or a value of the wrong type.
    """
    if selector is None:
        return None
    if not isinstance(selector, dict):
        raise InvalidArgumentError(f"a volume selector must be a mapping, got {selector!r}")
    unknown = sorted(set(selector) - set(_SELECTOR_KEYS))
    if unknown:
        raise InvalidArgumentError(f"unknown volume selector key(s) {unknown} (known: {', '.join(_SELECTOR_KEYS)})")
    clean: dict[str, Any] = {}
    uid = selector.get("series_uid")
    if uid is not None:
        if not isinstance(uid, str) or not uid:
            raise InvalidArgumentError(f"series_uid must be a non-empty string, got {uid!r}")
        clean["series_uid"] = uid
    index = selector.get("volume_index")
    if index is not None:
        if isinstance(index, bool) or not isinstance(index, int) or index < 0:
            raise InvalidArgumentError(f"volume_index must be an integer >= 0, got {index!r}")
        clean["volume_index"] = index
    return clean or None


def volume_fields_from_json(item: Mapping[str, Any], image_id: str) -> tuple[str, dict[str, Any] | None, str]:
    """``(kind, selector, description)`` of a project file entry (absent keys: an image).

    Raises
    ------
    InvalidArgumentError
        An unknown kind, a bad selector, or a selector on an image.
    """
    kind = item.get("kind", "image")
    if kind not in ENTRY_KINDS:
        raise InvalidArgumentError(f"image {image_id!r} has an unknown kind {kind!r} (one of {ENTRY_KINDS})")
    try:
        selector = check_selector(item.get("selector"))
    except InvalidArgumentError as exc:
        raise InvalidArgumentError(f"image {image_id!r}: {exc.problem}") from None
    if selector is not None and kind != "volume":
        raise InvalidArgumentError(f"image {image_id!r} has a volume selector but is not a volume")
    description = item.get("description", "")
    if not isinstance(description, str):
        raise InvalidArgumentError(f"image {image_id!r} has a bad description {description!r}")
    return kind, selector, description


def volume_fields_to_json(
    item: dict[str, Any], kind: str, selector: dict[str, Any] | None, description: str
) -> dict[str, Any]:
    """Add the volume keys to a project file entry; an image's entry stays as in version 1."""
    if kind == "volume":
        item["kind"] = kind
        if selector:
            item["selector"] = dict(selector)
        if description:
            item["description"] = description
    return item


def selector_key(selector: dict[str, Any] | None) -> str:
    """A string telling selectors apart, for finding duplicates."""
    if not selector:
        return ""
    return ";".join(f"{key}={selector[key]}" for key in _SELECTOR_KEYS if key in selector)


# --------------------------------------------------------------------------
# Finding volumes
# --------------------------------------------------------------------------


def volume_file_stem(path: Path) -> str:
    """The file name without ``.nii.gz`` / ``.nii`` / other suffix."""
    name = path.name
    for suffix in NIFTI_SUFFIXES:
        if name.lower().endswith(suffix):
            return name[: -len(suffix)]
    return path.stem


def is_volume_file(path: Path) -> bool:
    """Whether a file is read as a volume rather than an image: NIfTI or DICOM."""
    return is_nifti_path(path) or (path.suffix.lower() not in IMAGE_SUFFIXES and looks_like_dicom(path))


def _folder_files(folder: Path) -> list[Path]:
    try:
        entries = sorted(folder.iterdir(), key=lambda p: p.name)
    except OSError as exc:
        raise UnreadableInputError(f"cannot list folder: {exc.strerror or exc}", path=folder) from None
    return [p for p in entries if not p.name.startswith(".") and p.is_file()]


def _may_be_dicom(files: list[Path]) -> bool:
    """Whether some file is DICOM, opening at most a few of them."""
    opened = 0
    for path in files:
        suffix = path.suffix.lower()
        if suffix in IMAGE_SUFFIXES or is_nifti_path(path) or suffix in (".json", ".txt", ".npz", ".csv"):
            continue
        if suffix == ".dcm":
            return True
        if opened >= _DICOM_PROBES:
            return False
        opened += 1
        if looks_like_dicom(path):
            return True
    return False


def folder_holds_volumes(folder: str | os.PathLike[str]) -> bool:
    """Whether a folder holds NIfTI files or (judging by a few files) DICOM files.

    Cheap: it lists the folder and opens at most a handful of files; whether
    the DICOM files form readable series is found out later.
    """
    files = _folder_files(Path(folder))
    return any(is_nifti_path(p) for p in files) or _may_be_dicom(files)


def _dicom_series_candidates(folder: Path) -> list[VolumeCandidate]:
    from segstudio.io.dicom import list_series

    series = list_series(folder)
    if len(series) == 1:
        info = series[0]
        return [VolumeCandidate(folder, None, info.description or (info.modality or ""), folder.name,
                                info.series_uid)]
    candidates = []
    for position, info in enumerate(series, start=1):
        number = f"series {info.series_number}" if info.series_number is not None else f"series #{position}"
        description = f"{number}, {info.description}" if info.description else number
        tag = f"s{info.series_number}" if info.series_number is not None else f"s{position}"
        if info.num_files == 1:
            # A one-file series reads fastest from its file (no rescan of the folder).
            source, selector = info.files[0], None
        else:
            source, selector = folder, {"series_uid": info.series_uid}
        candidates.append(VolumeCandidate(source, selector, description, f"{folder.name}_{tag}", info.series_uid))
    return candidates


def _dicom_file_candidate(path: Path) -> VolumeCandidate:
    from segstudio.io.dicom import _read_dataset  # maps every pydicom failure to our error

    ds = _read_dataset(path, headers_only=True)
    if "Rows" not in ds or "Columns" not in ds:
        raise UnreadableInputError("DICOM file holds no image", path=path)
    description = str(ds.get("SeriesDescription", "") or "") or str(ds.get("Modality", "") or "")
    uid = str(ds.get("SeriesInstanceUID", "") or "") or None
    return VolumeCandidate(path, None, description, volume_file_stem(path), uid)


def _nifti_candidates(path: Path) -> list[VolumeCandidate]:
    from segstudio.io.nifti import _load  # maps every nibabel failure (and a bad shape) to our error

    shape = _load(path).shape  # header only: the data stay on disk
    stem = volume_file_stem(path)
    count = shape[3] if len(shape) > 3 else 1
    if count <= 1:
        return [VolumeCandidate(path, None, "", stem)]
    return [VolumeCandidate(path, {"volume_index": k}, f"vol {k}", f"{stem}_vol{k}") for k in range(count)]


def find_volumes(
    path: str | os.PathLike[str], *, skipped: list[SegstudioError] | None = None
) -> list[VolumeCandidate]:
    """The volumes a path holds, in display order.

    * a folder: one candidate per DICOM series in it (a ``series_uid``
      selector when there are several) and the NIfTI files in it (sub-folders
      are not searched); a NIfTI file that cannot be read, or DICOM files
      that form no readable series, are left out with a one-line warning
      naming them, so that one bad file does not hide the others;
    * a DICOM file: one candidate;
    * a ``.nii``/``.nii.gz`` file: one, or one per volume of a 4-D image
      (``volume_index`` selector, described as ``vol k``);
    * a TIFF file: one (a multi-page stack).

    Parameters
    ----------
    path:
        A folder or file.
    skipped:
        If given, the errors of the files left out of a folder are appended
        to it (a command reports them as failures).

    Raises
    ------
    UnreadableInputError
        The path does not exist, is none of the above, or holds no volume
        (in a folder: nothing at all could be read; the first problem is
        named); a NIfTI or DICOM header of the file given cannot be read.
    """
    path = Path(os.path.abspath(path))
    if path.is_dir():
        files = _folder_files(path)
        niftis = [p for p in files if is_nifti_path(p)]
        candidates: list[VolumeCandidate] = []
        problems: list[SegstudioError] = []
        if _may_be_dicom(files):
            try:
                candidates.extend(_dicom_series_candidates(path))
            except UnreadableInputError as error:
                if not niftis:
                    raise
                log.warning("skipping the DICOM files: %s", error)
                problems.append(error)
        for nifti in niftis:
            try:
                candidates.extend(_nifti_candidates(nifti))
            except SegstudioError as error:
                log.warning("skipping %s", error)
                problems.append(error)
        if not candidates:
            if problems:
                raise UnreadableInputError(
                    f"no readable DICOM series or NIfTI volume in folder ({len(problems)} file(s) or series "
                    f"skipped; the first: {problems[0]})",
                    path=path,
                )
            raise UnreadableInputError("no DICOM series or NIfTI volumes in folder", path=path)
        if skipped is not None:
            skipped.extend(problems)
        return candidates
    if not path.exists():
        raise UnreadableInputError("no such file or folder", path=path)
    if is_nifti_path(path):
        return _nifti_candidates(path)
    if path.suffix.lower() in _TIFF_SUFFIXES:
        return [VolumeCandidate(path, None, "", volume_file_stem(path))]
    if looks_like_dicom(path):
        return [_dicom_file_candidate(path)]
    raise UnreadableInputError(
        "not a volume: expected a DICOM file or series folder, a NIfTI image (.nii, .nii.gz) "
        "or a TIFF stack",
        path=path,
    )


# --------------------------------------------------------------------------
# Label volumes on disk
# --------------------------------------------------------------------------


def read_label_volume(path: str | os.PathLike[str]) -> np.ndarray:
    """Read a ``Z x Y x X`` label map (uint8, or uint16) written by :func:`write_label_volume`.

    The array's header is read first: a shape or type that is not a label
    map, or a map larger than the memory limit (:mod:`segstudio.io.limits`),
    is refused before anything is decompressed.

    Raises
    ------
    UnreadableInputError
        Missing, damaged, too large, or not a label volume (the message names the file).
    """
    path = Path(path)
    try:
        return _read_checked_labels(path)
    except FileNotFoundError:
        raise UnreadableInputError("no such label file", path=path) from None
    except MemoryError:
        raise UnreadableInputError("the label volume does not fit in memory", path=path) from None
    except (OSError, ValueError, EOFError, zipfile.BadZipFile, zlib.error) as exc:
        raise UnreadableInputError(f"the label volume is damaged ({exc})", path=path) from None


def _read_checked_labels(path: Path) -> np.ndarray:
    """The labels array of an ``.npz``: its ``.npy`` header checked first, then
    that same member decoded (never another member of the same name)."""
    from numpy.lib import format as npy

    with zipfile.ZipFile(path) as archive:
        name = f"{_LABELS_KEY}.npy"
        if name not in archive.namelist():
            raise UnreadableInputError(f"not a label volume (no {_LABELS_KEY!r} array)", path=path)
        with archive.open(name) as member:
            version = npy.read_magic(member)
            if version == (1, 0):
                shape, _, dtype = npy.read_array_header_1_0(member)
            elif version == (2, 0):
                shape, _, dtype = npy.read_array_header_2_0(member)
            else:  # 3.0 holds UTF-8 field names, which no label map has
                raise ValueError(f"unsupported array format {version}")
        shape, dtype = tuple(int(n) for n in shape), np.dtype(dtype)
        if len(shape) != 3 or dtype not in LABEL_DTYPES:
            raise UnreadableInputError(
                f"not a label volume: expected Z x Y x X uint8 or uint16, found {dtype} {shape}", path=path
            )
        limits.check_pixels(shape, dtype.itemsize, path, "the label volume", working_bytes=0)
        with archive.open(name) as member:
            labels = npy.read_array(member, allow_pickle=False)
    return np.ascontiguousarray(labels)


def write_label_volume(path: str | os.PathLike[str], labels: np.ndarray, num_classes: int) -> Path:
    """Write a ``Z x Y x X`` label map (uint8, or uint16 for more than 254
    classes), compressed and atomically.

    Raises
    ------
    InvalidArgumentError
        Not a 3-D uint8/uint16 map, or a class index without a class (other
        than the unlabelled value).
    ExportError
        The file cannot be written.
    """
    labels = np.asarray(labels)
    if labels.ndim != 3 or labels.dtype not in LABEL_DTYPES:
        raise InvalidArgumentError(
            f"a label volume must be Z x Y x X uint8 or uint16, got {labels.dtype} {labels.shape}"
        )
    unlabelled = unlabelled_for(labels.dtype)
    present = np.flatnonzero(np.bincount(labels.ravel(), minlength=unlabelled + 1)[:unlabelled])
    bad = present[present >= num_classes]
    if bad.size:
        raise InvalidArgumentError(
            f"labels hold class indices {bad[:10].tolist()} but the project has only {num_classes} class(es)"
        )
    buffer = io.BytesIO()
    np.savez_compressed(buffer, **{_LABELS_KEY: np.ascontiguousarray(labels)})
    written = atomic_write_bytes(path, buffer.getvalue())
    log.debug("wrote label volume %s %s", written, labels.shape)
    return written


def load_volume_document(
    source: Path,
    selector: dict[str, Any] | None,
    labels_path: Path,
    status: ImageStatus,
    *,
    label_dtype: np.dtype | type = np.uint8,
) -> Document:
    """Read a volume and its saved labels (if any) into a volume :class:`Document`.

    The :class:`~segstudio.io.volume.Volume` (spacing, affine, DICOM
    datasets) is attached as ``doc.volume`` for display and export.

    Raises
    ------
    UnreadableInputError
        The volume or the label file cannot be read, or the file holds class
        indices *label_dtype* cannot (saved labels of the other type are
        converted to *label_dtype*).
    DataError
        The saved labels' shape differs from the volume's.
    """
    volume = read_volume(source, **(selector or {}))
    labels = None
    if labels_path.is_file():
        labels = read_label_volume(labels_path)
        try:
            labels = convert_labels(labels, label_dtype, path=labels_path)
        except InvalidArgumentError as error:
            raise UnreadableInputError(error.problem, path=labels_path) from None
        if labels.shape != volume.shape_zyx:
            raise DataError(
                f"labels are {_zyx(labels.shape)} (slices x rows x columns) but the volume "
                f"{source.name} is {_zyx(volume.shape_zyx)}",
                path=labels_path,
            )
    doc = Document(volume.array, labels=labels, volume=True, source=source, status=status, label_dtype=label_dtype)
    doc.volume = volume
    return doc


def _zyx(shape: tuple[int, ...]) -> str:
    return " x ".join(str(n) for n in shape)


def read_source_volume(source: Path, selector: dict[str, Any] | None):
    """:func:`read_volume` with the selector, errors naming the source."""
    try:
        return read_volume(source, **(selector or {}))
    except SegstudioError as error:
        if error.path is None:
            raise type(error)(error.problem, path=source) from None
        raise
