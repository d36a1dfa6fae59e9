"""Medical volumes: a voxel array with the geometry that places it on the patient.

A :class:`Volume` is what every volume reader returns, whatever the source
(a DICOM series, a NIfTI file or a TIFF stack), so that the studio and the
exporters deal with one type.

Index conventions
-----------------
``array`` is stored slice-first: ``array[k, j, i]`` (or ``array[k, j, i, c]``
for colour) is the voxel in slice ``k``, row ``j`` and column ``i``. The
``affine`` maps the voxel index ``(i, j, k, 1)`` (column, row, slice, in
that order, as in DICOM and NIfTI) to world coordinates in millimetres::

    world = affine @ [i, j, k, 1]

The world frame is the source's own (see :attr:`Volume.world_frame`):

* DICOM: the patient coordinate system of DICOM, **LPS** (+x towards the
  patient's left, +y posterior, +z head). Column ``i`` advances along the
  first ImageOrientationPatient vector, row ``j`` along the second, and slice
  ``k`` follows the slices sorted by their position along the slice normal.
* NIfTI: **RAS**, the affine exactly as nibabel gives it; ``(i, j, k)`` are
  the file's own first three indices, so the source geometry is reproduced
  exactly when labels are written back.
* TIFF: no patient frame; the identity (one voxel = 1 mm).
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from segstudio.errors import InvalidArgumentError, UnreadableInputError

log = logging.getLogger(__name__)

VOLUME_KINDS = ("dicom", "nifti", "tiff")
NIFTI_SUFFIXES = (".nii", ".nii.gz")
_TIFF_SUFFIXES = (".tif", ".tiff")
# DICOM Part 10 files hold "DICM" after a 128-byte preamble.
_DICOM_MAGIC_OFFSET = 128


@dataclass
class Volume:
    """A stack of slices and where it sits in space.

    Attributes
    ----------
    array:
        ``Z x Y x X`` (or ``Z x Y x X x 3`` for colour). Modality rescale is
        applied: ``float32`` when the rescale cannot be held exactly in the
        stored integer type, else the stored integer type (``int16``,
        ``uint16``, ``uint8``).
    spacing:
        ``(z, y, x)`` voxel size in mm; 1.0 where unknown.
    affine:
        4 x 4, maps ``(i, j, k, 1)`` to world coordinates (see the module
        docstring and :attr:`world_frame`).
    source:
        The file or folder it was read from.
    kind:
        ``"dicom"``, ``"nifti"`` or ``"tiff"``.
    modality:
        DICOM modality (``"CT"``, ``"MR"``, ...) or ``None``.
    dicom_datasets:
        For DICOM, the source datasets in slice order (one multi-frame dataset
        for an enhanced file), pixel data dropped; needed to write DICOM SEG.
    description:
        Series description or file name; never anything that identifies the
        patient.
    source_frames:
        For a multi-frame DICOM source, the frame index (0-based, in file
        order) of each sorted slice; ``None`` otherwise.
    slice_origins:
        World position of voxel ``(0, 0, k)`` for every slice, as read from
        the source (``Z x 3``); ``None`` where the source has no per-slice
        positions. Lets writers check that the affine holds for every slice.
    nifti_header:
        For NIfTI, the source header (nibabel), so that written label maps
        keep its qform/sform codes and units.
    warnings:
        Things the user should know about the data (skipped files, uneven
        slice spacing); each is also logged.
    geometry_known:
        Whether the source says where its voxels are in the patient. ``False``
        for a TIFF stack, and for DICOM without slice positions or
        orientation (a multi-frame file without plane geometry, a
        radiograph) or with an invalid pixel spacing: ``affine`` is then a
        stand-in (1 mm where unknown) and writers mark the geometry unknown
        (NIfTI qform/sform code 0) instead of claiming a patient position.
    invert:
        The window's output is shown inverted: DICOM MONOCHROME1 (radiographs
        such as CR and DX), where the lowest value is displayed white.
        ``array`` keeps the stored values; display and model input both go
        through ``apply_window(..., invert=True)``
        (:func:`segstudio.windowing.apply_window`). ``False`` for every other
        source.
    """

    array: np.ndarray
    spacing: tuple[float, float, float]
    affine: np.ndarray
    source: Path
    kind: str
    modality: str | None = None
    dicom_datasets: list | None = None
    description: str = ""
    source_frames: tuple[int, ...] | None = None
    slice_origins: np.ndarray | None = None
    nifti_header: object | None = None
    warnings: list[str] = field(default_factory=list)
    invert: bool = False
    geometry_known: bool = True

    def __post_init__(self) -> None:
        if self.kind not in VOLUME_KINDS:
            raise InvalidArgumentError(f"volume kind must be one of {VOLUME_KINDS}, got {self.kind!r}")
        array = np.asarray(self.array)
        colour = array.ndim == 4 and array.shape[3] == 3
        if array.ndim != 3 and not colour:
            raise InvalidArgumentError(
                f"a volume array must be Z x Y x X or Z x Y x X x 3, got shape {array.shape}"
            )
        affine = np.asarray(self.affine, dtype=np.float64)
        if affine.shape != (4, 4):
            raise InvalidArgumentError(f"affine must be 4 x 4, got shape {affine.shape}")
        self.array = array
        self.affine = affine
        self.spacing = tuple(float(s) for s in self.spacing)  # type: ignore[assignment]
        self.source = Path(self.source)
        self.invert = bool(self.invert)
        self.geometry_known = bool(self.geometry_known)
        if colour and self.invert:
            raise InvalidArgumentError("invert (MONOCHROME1 display) applies to grey volumes, not colour ones")

    @property
    def num_slices(self) -> int:
        """Number of slices (``Z``)."""
        return int(self.array.shape[0])

    @property
    def shape_zyx(self) -> tuple[int, int, int]:
        """``(Z, Y, X)``, the shape a label map for this volume must have."""
        return tuple(int(n) for n in self.array.shape[:3])  # type: ignore[return-value]

    @property
    def is_volume(self) -> bool:
        """Whether there is more than one slice."""
        return self.num_slices > 1

    @property
    def is_colour(self) -> bool:
        """Whether voxels are RGB triples."""
        return self.array.ndim == 4

    @property
    def world_frame(self) -> str | None:
        """``"LPS"`` (DICOM), ``"RAS"`` (NIfTI) or ``None`` (TIFF, no patient frame)."""
        return {"dicom": "LPS", "nifti": "RAS"}.get(self.kind)

    def slice(self, k: int) -> np.ndarray:
        """Slice ``k`` as a 2-D (or ``Y x X x 3``) array (a view, not a copy).

        Raises
        ------
        InvalidArgumentError
            *k* is outside ``0 .. num_slices - 1``.
        """
        if not -self.num_slices <= k < self.num_slices:
            raise InvalidArgumentError(
                f"slice {k} is out of range; the volume has {self.num_slices} slice(s)"
            )
        return self.array[k]

    def affine_ras(self) -> np.ndarray:
        """The affine in RAS, whatever the source frame (LPS is flipped in x and y)."""
        if self.world_frame == "LPS":
            return lps_to_ras() @ self.affine
        return self.affine.copy()


def lps_to_ras() -> np.ndarray:
    """4 x 4 matrix turning LPS world coordinates into RAS (and back: it is its own inverse)."""
    return np.diag([-1.0, -1.0, 1.0, 1.0])


def is_nifti_path(path: Path) -> bool:
    """Whether *path* has a NIfTI file name (``.nii`` or ``.nii.gz``)."""
    name = path.name.lower()
    return any(name.endswith(suffix) for suffix in NIFTI_SUFFIXES)


def looks_like_dicom(path: Path) -> bool:
    """Whether *path* is a DICOM Part 10 file (by its "DICM" marker) or named ``*.dcm``."""
    if path.suffix.lower() == ".dcm":
        return True
    try:
        with open(path, "rb") as fh:
            fh.seek(_DICOM_MAGIC_OFFSET)
            return fh.read(4) == b"DICM"
    except OSError:
        return False


def _read_tiff_volume(path: Path) -> Volume:
    from segstudio.io.images import read_stack

    array = read_stack(path)
    log.info("read TIFF stack %s: %s %s", path.name, array.shape, array.dtype)
    return Volume(
        array=array,
        spacing=(1.0, 1.0, 1.0),
        affine=np.eye(4),
        source=path,
        kind="tiff",
        description=path.name,
        geometry_known=False,
    )


def read_volume(
    path: str | os.PathLike[str],
    *,
    series_uid: str | None = None,
    volume_index: int | None = None,
) -> Volume:
    """Read a DICOM file or series, a NIfTI image or a TIFF stack.

    Parameters
    ----------
    path:
        A folder of DICOM files, one DICOM file (single- or multi-frame), a
        ``.nii``/``.nii.gz`` file or a ``.tif``/``.tiff`` stack.
    series_uid:
        For a folder holding several DICOM series, which one to read (see
        :func:`segstudio.io.dicom.list_series`).
    volume_index:
        For a 4-D NIfTI file, which volume to read (0-based).

    Returns
    -------
    Volume

    Raises
    ------
    UnreadableInputError
        The path does not exist or is none of the above, or the reader for
        its type fails (the message names the file and the problem).
    """
    path = Path(path)
    if path.is_dir():
        from segstudio.io.dicom import read_series

        return read_series(path, series_uid=series_uid)
    if not path.exists():
        raise UnreadableInputError("no such file or folder", path=path)
    if is_nifti_path(path):
        from segstudio.io.nifti import read_nifti

        return read_nifti(path, volume_index=volume_index)
    if path.suffix.lower() in _TIFF_SUFFIXES:
        return _read_tiff_volume(path)
    if looks_like_dicom(path):
        from segstudio.io.dicom import read_series

        return read_series(path, series_uid=series_uid)
    raise UnreadableInputError(
        "not a volume: expected a DICOM file or a folder of DICOM files, a NIfTI image "
        "(.nii, .nii.gz) or a TIFF stack (.tif, .tiff)",
        path=path,
    )
