"""Reading DICOM series (pydicom) into a :class:`~segstudio.io.volume.Volume`.

Slices are ordered by where they are, not by file name or InstanceNumber:
each slice's ImagePositionPatient is projected on the slice normal
(row direction x column direction) and the slices are sorted by that
distance. The affine is built in DICOM's LPS patient frame (see
:mod:`segstudio.io.volume`) from ImageOrientationPatient, PixelSpacing and
the sorted positions.

Privacy: nothing that identifies the patient (name, ID, birth date, ...) is
ever logged or copied out of the datasets; log lines name files, series
descriptions, modalities and sizes only. The datasets kept in
:attr:`Volume.dicom_datasets` still hold the patient module, because a DICOM
SEG written from them must name the same patient.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from segstudio.errors import UnreadableInputError
from segstudio.io.dicom_geometry import (
    Geometry,
    apply_rescale,
    check_consistent,
    frame_count,
    frame_planes,
    header_value,
    modality_lut,
    plane_of,
    sort_slices,
    stated_spacing,
)
from segstudio.io.limits import check_pixels
from segstudio.io.volume import Volume, is_nifti_path
from segstudio.tasks import CancelToken, Progress, Task, run_to_completion

log = logging.getLogger(__name__)

_LIBJPEG = "pylibjpeg and pylibjpeg-libjpeg"
_OPENJPEG = "pylibjpeg and pylibjpeg-openjpeg"
# Which packages decode which compressed transfer syntax (pydicom 3 plugins).
_DECODER_PACKAGES: dict[str, str] = {
    "1.2.840.10008.1.2.4.50": _LIBJPEG,  # JPEG Baseline (Pillow handles most 8-bit files too)
    "1.2.840.10008.1.2.4.51": _LIBJPEG,  # JPEG Extended 12-bit: Pillow cannot
    "1.2.840.10008.1.2.4.57": _LIBJPEG,  # JPEG Lossless
    "1.2.840.10008.1.2.4.70": _LIBJPEG,  # JPEG Lossless SV1, the usual lossless CT/MR
    "1.2.840.10008.1.2.4.80": f"{_LIBJPEG} (or pyjpegls)",  # JPEG-LS lossless
    "1.2.840.10008.1.2.4.81": f"{_LIBJPEG} (or pyjpegls)",  # JPEG-LS near-lossless
    "1.2.840.10008.1.2.4.90": _OPENJPEG,  # JPEG 2000 lossless
    "1.2.840.10008.1.2.4.91": _OPENJPEG,  # JPEG 2000
    "1.2.840.10008.1.2.4.201": f"{_OPENJPEG} (version 2 or later)",  # HTJ2K lossless
    "1.2.840.10008.1.2.4.202": f"{_OPENJPEG} (version 2 or later)",  # HTJ2K lossless RPCL
    "1.2.840.10008.1.2.4.203": f"{_OPENJPEG} (version 2 or later)",  # HTJ2K
    "1.2.840.10008.1.2.5": "pylibjpeg and pylibjpeg-rle",  # RLE: pydicom decodes it natively
}


@dataclass(frozen=True)
class SeriesInfo:
    """One series found in a folder, as shown to the user to choose from."""

    series_uid: str
    modality: str | None
    description: str
    num_files: int
    rows: int | None
    columns: int | None
    files: tuple[Path, ...]
    series_number: int | None = None

    def summary(self) -> str:
        """One line for a picker or an error message (no patient data)."""
        size = f"{self.rows} x {self.columns}" if self.rows and self.columns else "size unknown"
        desc = f'"{self.description}"' if self.description else "no description"
        return f"{self.series_uid} ({self.modality or '?'}, {desc}, {self.num_files} file(s), {size})"


# --------------------------------------------------------------------------
# Reading single files
# --------------------------------------------------------------------------


def _read_dataset(path: Path, *, headers_only: bool):
    """``pydicom.dcmread`` with every failure turned into UnreadableInputError."""
    import pydicom
    from pydicom.errors import InvalidDicomError

    try:
        ds = pydicom.dcmread(path, stop_before_pixels=headers_only)
    except InvalidDicomError as exc:
        raise UnreadableInputError("not a DICOM file", path=path) from exc
    except FileNotFoundError:
        raise UnreadableInputError("no such file", path=path) from None
    except IsADirectoryError:
        raise UnreadableInputError("is a folder, not a DICOM file", path=path) from None
    except OSError as exc:
        raise UnreadableInputError(f"cannot read file: {exc.strerror or exc}", path=path) from exc
    except Exception as exc:  # noqa: BLE001 - pydicom's parser raises struct/EOF/Value/Key errors
        raise UnreadableInputError("DICOM file is truncated or damaged", path=path) from exc
    if _has_short_element(ds):
        raise UnreadableInputError("DICOM file is truncated (an element ends past the end of the file)", path=path)
    return ds


def _has_short_element(ds) -> bool:
    """Whether an element read from the file holds fewer bytes than its header declared."""
    from pydicom.dataelem import RawDataElement

    for tag in ds.keys():
        element = ds.get_item(tag)
        if (
            isinstance(element, RawDataElement)
            and element.length != 0xFFFFFFFF
            and element.value is not None
            and len(element.value) < element.length
        ):
            return True
    return False


def _is_image(ds) -> bool:
    return "Rows" in ds and "Columns" in ds


def _sop_class_name(ds) -> str:
    uid = ds.get("SOPClassUID")
    return getattr(uid, "name", None) or str(uid or "unknown SOP class")


def _decode_problem(ds, exc: Exception) -> str:
    """Explain why pixel data could not be decoded, naming the package to install."""
    from pydicom.pixels import get_decoder

    syntax = getattr(getattr(ds, "file_meta", None), "TransferSyntaxUID", None)
    detail = str(exc).strip().splitlines()
    detail_text = " ".join(line.strip() for line in detail)[:300]
    if syntax is None or not syntax.is_transfer_syntax:
        return f"pixel data cannot be decoded ({detail_text})"
    if not syntax.is_compressed:
        return f"DICOM file is truncated or its pixel data is damaged ({detail_text})"
    packages = _DECODER_PACKAGES.get(str(syntax))
    name = syntax.name
    if packages is None:
        return (
            f"pixel data is compressed as {name}, which pydicom cannot decode; convert the files "
            "to an uncompressed transfer syntax (for example with 'gdcmconv --raw' or dcmdjpeg)"
        )
    try:
        available = get_decoder(syntax).is_available
    except (NotImplementedError, ValueError):
        available = False
    install = f"install {packages} (pip install {packages.split(' (')[0].replace(' and ', ' ')})"
    if not available:
        return f"pixel data is compressed as {name} and no decoder for it is installed: {install}"
    return (
        f"the installed decoders failed on {name} pixel data ({detail_text}); {install}. "
        "If they are installed, the file is damaged"
    )


def _pixels(ds, path: Path) -> np.ndarray:
    """Decoded stored values, ``frames x rows x cols[ x 3]``, colour as RGB."""
    if not any(k in ds for k in ("PixelData", "FloatPixelData", "DoubleFloatPixelData")):
        hint = " (or the file is truncated)" if _is_image(ds) else ""
        raise UnreadableInputError(
            f"DICOM file holds no image (no Pixel Data); it is a {_sop_class_name(ds)} object{hint}",
            path=path,
        )
    frames = frame_count(ds, path)
    samples = _samples(ds, path)
    if _is_image(ds):
        check_pixels((frames, int(ds.Rows), int(ds.Columns)), _itemsize(ds, path), path, "the volume",
                     channels=samples)
    try:
        array = ds.pixel_array
    except (RuntimeError, NotImplementedError, ValueError, TypeError, AttributeError, ImportError) as exc:
        raise UnreadableInputError(_decode_problem(ds, exc), path=path) from exc
    if samples == 1 and "ModalityLUTSequence" in ds:
        array = modality_lut(ds, array, path)
    if frames == 1:
        array = array[np.newaxis]
    if samples not in (1, 3) or array.ndim != (4 if samples == 3 else 3):
        raise UnreadableInputError(
            f"unsupported pixel layout ({samples} samples per pixel, decoded shape {array.shape})", path=path
        )
    return array


def _samples(ds, path: Path) -> int:
    value = header_value(ds, "SamplesPerPixel", path)
    return int(value) if value not in (None, "") else 1


def _itemsize(ds, path: Path) -> int:
    """Bytes per decoded sample, from BitsAllocated (1-bit data decode to bytes)."""
    value = header_value(ds, "BitsAllocated", path)
    bits = int(value) if value not in (None, "") else 8
    return max(1, (bits + 7) // 8)


# --------------------------------------------------------------------------
# Listing series
# --------------------------------------------------------------------------


def _candidate_files(folder: Path, recursive: bool) -> list[Path]:
    try:
        entries = sorted(folder.iterdir(), key=lambda p: p.name)
    except OSError as exc:
        raise UnreadableInputError(f"cannot list folder: {exc.strerror or exc}", path=folder) from None
    files: list[Path] = []
    for entry in entries:
        if entry.name.startswith("."):
            continue
        if entry.is_dir():
            if recursive:
                files.extend(_candidate_files(entry, recursive))
        elif entry.is_file():
            files.append(entry)
    return files


# Folders whose files that are not DICOM were already reported (folder, count, names shown).
_REPORTED_NOT_DICOM: set[tuple[str, int, str]] = set()


def _scan(
    files: Sequence[Path], cancel: CancelToken | None = None
) -> tuple[dict[str, list[tuple[Path, object]]], list[str]]:
    """Group the image headers by series; return the groups and what was skipped.

    Damaged DICOM files get a warning each; files that are not DICOM at all
    get one warning line per folder, with their count and a few names
    (NIfTI files are left out of it: they are volumes of their own).
    """
    groups: dict[str, list[tuple[Path, object]]] = {}
    skipped: list[str] = []
    not_dicom: dict[Path, list[str]] = {}
    for path in files:
        if cancel is not None:
            cancel.raise_if_cancelled()
        try:
            ds = _read_dataset(path, headers_only=True)
        except UnreadableInputError as exc:
            if exc.problem == "not a DICOM file":
                log.debug("skipping %s: not DICOM", path.name)
                if not is_nifti_path(path):
                    not_dicom.setdefault(path.parent, []).append(path.name)
            else:
                log.warning("skipping %s", exc)
                skipped.append(str(exc))
            continue
        if not _is_image(ds):
            log.info("skipping %s: not an image (%s)", path.name, _sop_class_name(ds))
            continue
        try:
            frame_count(ds, path)
            problem = (UnreadableInputError("DICOM file is truncated (smaller than its pixel data)", path=path)
                       if _too_short(path, ds) else None)
        except UnreadableInputError as exc:
            problem = exc
        if problem is not None:
            log.warning("skipping %s", problem)
            skipped.append(str(problem))
            continue
        uid = str(ds.get("SeriesInstanceUID", "") or "")
        groups.setdefault(uid, []).append((path, ds))
    for folder, names in not_dicom.items():
        shown = ", ".join(names[:3]) + (", ..." if len(names) > 3 else "")
        # Listing a folder and then reading its series scans it twice: say it once.
        key = (str(folder), len(names), shown)
        if key in _REPORTED_NOT_DICOM:
            log.debug("%s: skipped %d file(s) that are not DICOM (%s)", folder, len(names), shown)
            continue
        if len(_REPORTED_NOT_DICOM) > 256:
            _REPORTED_NOT_DICOM.clear()
        _REPORTED_NOT_DICOM.add(key)
        log.warning("%s: skipped %d file(s) that are not DICOM (%s)", folder, len(names), shown)
    return groups, skipped


def _too_short(path: Path, ds) -> bool:
    """Whether an uncompressed file is smaller than the pixel data its header announces.

    Cheap enough for a folder scan (headers only), so that a truncated slice
    is skipped before it can form a series of its own.
    """
    syntax = getattr(getattr(ds, "file_meta", None), "TransferSyntaxUID", None)
    if syntax is None or not syntax.is_transfer_syntax or syntax.is_compressed:
        return False
    try:
        count = (int(ds.Rows) * int(ds.Columns) * int(ds.get("SamplesPerPixel", 1) or 1)
                 * int(ds.get("NumberOfFrames", 1) or 1))
        bits = int(ds.get("BitsAllocated", 8) or 8)
        size = path.stat().st_size
    except (TypeError, ValueError, OSError):
        return False
    return size < (count * bits + 7) // 8


def _series_info(uid: str, members: list[tuple[Path, object]]) -> SeriesInfo:
    first = members[0][1]
    try:
        number = first.get("SeriesNumber")
        number = int(number) if number not in (None, "") else None
    except (TypeError, ValueError, OverflowError):
        number = None  # only used for sorting and naming
    return SeriesInfo(
        series_uid=uid,
        modality=str(first.get("Modality", "")) or None,
        description=str(first.get("SeriesDescription", "") or ""),
        num_files=len(members),
        rows=int(first.Rows),
        columns=int(first.Columns),
        files=tuple(p for p, _ in members),
        series_number=number,
    )


def list_series(folder: str | os.PathLike[str], *, recursive: bool = False) -> list[SeriesInfo]:
    """List the image series in a folder of DICOM files.

    Files that are not DICOM are skipped (logged at debug level); DICOM files
    that are damaged or hold no image are skipped with a log message.

    Parameters
    ----------
    folder:
        The folder to look in.
    recursive:
        Also look in sub-folders.

    Returns
    -------
    list[SeriesInfo]
        Sorted by series number, then description.

    Raises
    ------
    UnreadableInputError
        The folder does not exist or holds no DICOM image.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise UnreadableInputError("no such folder", path=folder)
    groups, skipped = _scan(_candidate_files(folder, recursive))
    if not groups:
        where = "folder or its sub-folders" if recursive else "folder"
        extra = f" ({len(skipped)} damaged DICOM file(s) skipped)" if skipped else ""
        if not recursive and any(p.is_dir() for p in folder.iterdir()):
            extra += "; sub-folders were not searched"
        raise UnreadableInputError(f"no DICOM images in {where}{extra}", path=folder)
    infos = [_series_info(uid, members) for uid, members in groups.items()]
    infos.sort(key=lambda s: (s.series_number is None, s.series_number or 0, s.description))
    for info in infos:
        log.info("series %r: %s, %d file(s), %s x %s", info.description, info.modality,
                 info.num_files, info.rows, info.columns)
    return infos


def _drop_pixels(ds):
    for keyword in ("PixelData", "FloatPixelData", "DoubleFloatPixelData"):
        if keyword in ds:
            delattr(ds, keyword)
    return ds


# --------------------------------------------------------------------------
# Reading a series
# --------------------------------------------------------------------------


def _choose_series(groups: dict, series_uid: str | None, where: Path) -> list[tuple[Path, object]]:
    if series_uid is not None:
        if series_uid not in groups:
            known = "; ".join(_series_info(u, m).summary() for u, m in groups.items())
            raise UnreadableInputError(f"no series with UID {series_uid} here (found: {known})", path=where)
        return groups[series_uid]
    if len(groups) > 1:
        known = "; ".join(_series_info(u, m).summary() for u, m in groups.items())
        raise UnreadableInputError(
            f"holds {len(groups)} DICOM series; choose one by passing its SeriesInstanceUID as "
            f"series_uid (the studio asks; list_series() gives them): {known}",
            path=where,
        )
    return next(iter(groups.values()))


def _read_multiframe(path: Path, ds, skipped: list[str]) -> Volume:
    planes, stated = frame_planes(ds, path)  # header values first: a bad one fails before decoding
    stored = _pixels(ds, path)
    labels = [f"frame {i + 1}" for i in range(len(planes))]
    check_consistent(planes, [stored.shape[1:3]] * len(planes), [path] * len(planes), "the file")
    geometry = sort_slices(planes, stated, labels, path)
    array = apply_rescale([stored[i] for i in geometry.order], [planes[i] for i in geometry.order])
    del stored
    return _volume(array, geometry, path, [_drop_pixels(ds)], ds, skipped,
                   source_frames=tuple(int(i) for i in geometry.order), invert=_inverted([ds], [path], path))


def _inverted(datasets: Sequence, paths: Sequence[Path], where: Path) -> bool:
    """Whether the slices are MONOCHROME1 (low values shown white), so the window's output is inverted.

    A series mixing MONOCHROME1 with another interpretation is refused
    rather than shown with half its slices the wrong way round: the same
    value would mean "dark" on some slices and "bright" on others, for the
    user and for a model alike.
    """
    kinds = [str(ds.get("PhotometricInterpretation", "") or "").strip().upper() for ds in datasets]
    inverted = [path for path, kind in zip(paths, kinds) if kind == "MONOCHROME1"]
    if not inverted:
        return False
    others = [(path, kind) for path, kind in zip(paths, kinds) if kind != "MONOCHROME1"]
    if others:
        raise UnreadableInputError(
            f"the series mixes MONOCHROME1 images (low values shown white: {len(inverted)} file(s), e.g. "
            f"{inverted[0].name}) with {others[0][1] or 'unspecified'} images ({len(others)} file(s), e.g. "
            f"{others[0][0].name}); they cannot share one display: put them in separate folders",
            path=where,
        )
    return True


def _volume(array, geometry: Geometry, source: Path, datasets: list, first, skipped: list[str],
            source_frames=None, invert: bool = False) -> Volume:
    description = str(first.get("SeriesDescription", "") or "") or source.name
    notes = [f"skipped {s}" for s in skipped] + geometry.warnings
    for note in geometry.warnings:
        log.warning("%s: %s", source, note)
    volume = Volume(
        array=np.ascontiguousarray(array),
        spacing=geometry.spacing,
        affine=geometry.affine,
        source=source,
        kind="dicom",
        modality=str(first.get("Modality", "")) or None,
        dicom_datasets=datasets,
        description=description,
        source_frames=source_frames,
        slice_origins=geometry.origins,
        warnings=notes,
        invert=invert,
        geometry_known=geometry.known,
    )
    log.info("read DICOM %r (%s): %s %s, spacing %s mm%s", description, volume.modality,
             volume.array.shape, volume.array.dtype, tuple(round(s, 4) for s in volume.spacing),
             ", MONOCHROME1 (shown inverted)" if invert else "")
    return volume


def _declared(ds, keyword: str, path: Path) -> int:
    """A whole-number size from the header (Rows, Columns), 0 when absent."""
    try:
        return int(ds.get(keyword, 0) or 0)
    except (TypeError, ValueError, OverflowError):
        raise UnreadableInputError(f"{keyword} is not a whole number", path=path) from None


def read_series(
    folder_or_files: str | os.PathLike[str] | Sequence[str | os.PathLike[str]],
    series_uid: str | None = None,
    *,
    recursive: bool = False,
) -> Volume:
    """Read one DICOM series (or one single- or multi-frame file) as a volume.

    Parameters
    ----------
    folder_or_files:
        A folder, one file, or a list of files.
    series_uid:
        Which series to read when there are several (see :func:`list_series`).
    recursive:
        For a folder, also look in sub-folders.

    Returns
    -------
    Volume
        Slices sorted by position along the slice normal, modality rescale
        applied, affine in LPS. In a folder, files that are damaged or hold no
        pixel data are skipped (named in :attr:`Volume.warnings` and logged).
        MONOCHROME1 images keep their stored values and set
        :attr:`Volume.invert` (they are shown, and given to models, inverted).

    Raises
    ------
    UnreadableInputError
        Naming the file and the problem: not DICOM, truncated, no pixel data,
        missing decoder (and which package to install), slices of different
        size or orientation, several series without a choice, several
        slices at one position, or MONOCHROME1 and MONOCHROME2 images in one
        series.
    """
    return run_to_completion(read_series_steps(folder_or_files, series_uid, recursive=recursive))


def read_series_steps(
    folder_or_files: str | os.PathLike[str] | Sequence[str | os.PathLike[str]],
    series_uid: str | None = None,
    *,
    recursive: bool = False,
    cancel: CancelToken | None = None,
) -> Task[Volume]:
    """:func:`read_series` as a task: yields a Progress per file read, returns the Volume.

    Cancelling (through *cancel*) raises :class:`~segstudio.tasks.TaskCancelled`
    between files.
    """
    single = None
    if isinstance(folder_or_files, (str, os.PathLike)):
        root = Path(folder_or_files)
        if root.is_dir():
            files = _candidate_files(root, recursive)
        else:
            files, single = [root], root
    else:
        files = [Path(p) for p in folder_or_files]
        if not files:
            raise UnreadableInputError("no DICOM files given")
        root = files[0].parent
        single = files[0] if len(files) == 1 else None

    if single is not None:
        ds = _read_dataset(single, headers_only=False)
        if frame_count(ds, single) > 1:
            return _read_multiframe(single, ds, [])
        members = [(single, ds)]
        skipped: list[str] = []
    else:
        yield Progress(0, None, message=f"scanning {len(files)} file(s)", stage="scan")
        groups, skipped = _scan(files, cancel)
        if not groups:
            raise UnreadableInputError(
                "no DICOM images here" + (f" ({len(skipped)} damaged DICOM file(s) skipped)" if skipped else ""),
                path=root,
            )
        members = _choose_series(groups, series_uid, root)
        if any(frame_count(ds, path) > 1 for path, ds in members):
            if len(members) > 1:
                raise UnreadableInputError(
                    f"the series is made of {len(members)} multi-frame files; open them one file at a time",
                    path=root,
                )
            path = members[0][0]
            return _read_multiframe(path, _read_dataset(path, headers_only=False), skipped)

    if single is None and _is_image(members[0][1]):
        # The whole series before any slice is decoded: a few kilobytes of header each can declare
        # gigabytes, and each file may declare its own size, so the largest counts.
        sizes = [(_declared(ds, "Rows", path), _declared(ds, "Columns", path), _itemsize(ds, path),
                  _samples(ds, path)) for path, ds in members]
        check_pixels((len(members), max(s[0] for s in sizes), max(s[1] for s in sizes)),
                     max(s[2] for s in sizes), root, "the volume", channels=max(s[3] for s in sizes))
    paths: list[Path] = []
    datasets: list = []
    slices: list[np.ndarray] = []
    planes = []
    for done, (path, header) in enumerate(members):
        if cancel is not None:
            cancel.raise_if_cancelled()
        try:
            plane = plane_of(header, path)  # a bad rescale or geometry value: this file, named
            ds = header if "PixelData" in header else _read_dataset(path, headers_only=False)
            pixels = _pixels(ds, path)
        except UnreadableInputError as exc:
            if single is not None or "no decoder" in exc.problem:
                raise
            log.warning("skipping %s", exc)
            skipped.append(str(exc))
        else:
            paths.append(path)
            datasets.append(_drop_pixels(ds))
            slices.append(pixels[0])
            planes.append(plane)
        yield Progress(done + 1, len(members), message=path.name, stage="read")
    if not slices:
        raise UnreadableInputError(f"none of the {len(members)} file(s) of the series could be read: {skipped[0]}",
                                   path=root)

    source = single if single is not None else root
    invert = _inverted(datasets, paths, source)
    what = f"series {str(datasets[0].get('SeriesDescription', '') or '')!r}"
    check_consistent(planes, [px.shape for px in slices], paths, what)
    geometry = sort_slices(planes, stated_spacing(datasets[0], paths[0]),
                           [p.name for p in paths], single if single is not None else root)
    array = apply_rescale([slices[i] for i in geometry.order], [planes[i] for i in geometry.order])
    del slices
    datasets = [datasets[i] for i in geometry.order]
    return _volume(array, geometry, source, datasets, datasets[0], skipped, invert=invert)
