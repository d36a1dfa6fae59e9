"""Reading NIfTI images (nibabel) into a :class:`~segstudio.io.volume.Volume`.

nibabel indexes data as ``data[i, j, k]`` with the affine mapping
``(i, j, k)`` to RAS millimetres. The volume stores the transpose,
``array[k, j, i]``, and keeps the affine **unchanged**: the voxel index
``(i, j, k)`` means the same voxel in both, so writing a label map back
(transposed the other way) reproduces the source grid exactly.
"""

from __future__ import annotations

import logging
import os
import zlib
from pathlib import Path

import numpy as np

from segstudio.errors import InvalidArgumentError, UnreadableInputError
from segstudio.io.limits import check_pixels
from segstudio.io.volume import Volume

log = logging.getLogger(__name__)

_NOT_NIFTI = "not a NIfTI image (expected a .nii or .nii.gz file with a NIfTI-1 or NIfTI-2 header)"
# nibabel reports damaged files through many unrelated exception types: a
# negative dimension reaches mmap as OverflowError, a dim[0] or datatype it
# does not know is a HeaderDataError (an Exception of its own, see _load_errors).
_LOAD_ERRORS: tuple[type[BaseException], ...] = (
    ValueError, EOFError, OSError, OverflowError, zlib.error, MemoryError,
)


def _load_errors() -> tuple[type[BaseException], ...]:
    from nibabel.spatialimages import HeaderDataError

    return (*_LOAD_ERRORS, HeaderDataError)


class _NibabelToDebug(logging.Filter):
    """Send nibabel's header-check messages to our debug log.

    While loading, nibabel reports each header field it repairs ("vox offset
    0 too low ...", "sizeof_hdr should be 348 ...") on its own logger, which
    prints them to stderr without the file name, some at ERROR level. The
    error we raise for such a file names it; the repairs are detail.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        log.debug("nibabel: %s", record.getMessage())
        return False


def _quiet_nibabel_checks() -> None:
    logger = logging.getLogger("nibabel.global")
    if not any(isinstance(f, _NibabelToDebug) for f in logger.filters):
        logger.addFilter(_NibabelToDebug())


def _load(path: Path):
    import nibabel as nib
    from nibabel.filebasedimages import ImageFileError

    _quiet_nibabel_checks()

    if not path.exists():
        raise UnreadableInputError("no such file", path=path)
    if path.is_dir():
        raise UnreadableInputError("is a folder, not a NIfTI file", path=path)
    if path.stat().st_size == 0:
        raise UnreadableInputError("file is empty", path=path)
    try:
        image = nib.load(path)
    except ImageFileError as exc:
        raise UnreadableInputError(_NOT_NIFTI, path=path) from exc
    except _load_errors() as exc:
        raise UnreadableInputError(f"{_NOT_NIFTI} or the file is damaged ({_short(exc)})", path=path) from exc
    if not isinstance(image, nib.Nifti1Pair):  # Nifti1Image and Nifti2Image derive from it
        raise UnreadableInputError(f"{_NOT_NIFTI}; nibabel read it as {type(image).__name__}", path=path)
    shape = tuple(int(n) for n in image.shape)
    if not shape or any(n <= 0 for n in shape):
        raise UnreadableInputError(
            f"the header declares dimensions {' x '.join(map(str, shape)) or 'none'}; every dimension must be "
            "at least 1 (the file is damaged)",
            path=path,
        )
    return image


def _short(exc: BaseException) -> str:
    """The first line of an exception's text (nibabel's may print a whole matrix)."""
    text = str(exc).strip().splitlines()
    return (text[0] if text else type(exc).__name__)[:200]


def _values(image, path: Path, volume_index: int | None) -> np.ndarray:
    """The chosen 3-D block of voxel values, scaled, in nibabel's ``i, j, k`` order."""
    shape = image.shape
    if len(shape) > 3:
        extra = shape[4:]
        if any(n != 1 for n in extra):
            raise UnreadableInputError(
                f"image has {len(shape)} dimensions {shape}; only 3-D and 4-D images are supported", path=path
            )
        count = shape[3]
        if volume_index is None:
            if count != 1:
                raise UnreadableInputError(
                    f"4-D image holding {count} volumes; choose one with volume_index 0..{count - 1} "
                    "(CLI: --volume N)",
                    path=path,
                )
            volume_index = 0
        if not 0 <= volume_index < count:
            raise InvalidArgumentError(
                f"volume_index {volume_index} is out of range; the image holds {count} volume(s) "
                f"(0..{count - 1})",
                path=path,
            )
        slicer = (slice(None),) * 3 + (volume_index,) + (0,) * len(extra)
    else:
        if volume_index not in (None, 0):
            raise InvalidArgumentError(f"volume_index {volume_index} given but the image is {len(shape)}-D",
                                       path=path)
        slicer = (slice(None),) * len(shape)
    _check_memory(image, shape[:3], path)
    try:
        # The proxy applies scl_slope / scl_inter and reads only the chosen volume.
        data = np.asanyarray(image.dataobj[slicer])
    except _load_errors() as exc:
        raise UnreadableInputError("NIfTI image data is truncated or damaged", path=path) from exc
    while data.ndim < 3:
        data = data[..., np.newaxis]
    return data


def _check_memory(image, shape: tuple[int, ...], path: Path) -> None:
    """Refuse before reading when the declared voxels would not fit.

    A few kilobytes of header can declare 4096 x 4096 x 256 voxels; nibabel
    allocates the whole array before it finds the data missing.
    """
    stored = image.get_data_dtype()
    slope, inter = image.dataobj.slope, image.dataobj.inter
    scaled = not (slope in (None, 1) and inter in (None, 0))
    # Scaled data come out of nibabel as float64 before they become float32 here.
    itemsize = max(stored.itemsize, 8) if scaled else stored.itemsize
    check_pixels(shape, itemsize, path, "the volume")


def _as_zyx(data: np.ndarray) -> np.ndarray:
    if data.dtype.names:  # RGB24 / RGBA32 structured voxels
        channels = [data[name] for name in data.dtype.names[:3]]
        return np.ascontiguousarray(np.stack(channels, axis=-1).transpose(2, 1, 0, 3))
    if data.dtype == np.float64 or data.dtype == np.float16:
        data = data.astype(np.float32)
    elif data.dtype == np.bool_:
        data = data.astype(np.uint8)
    array = np.ascontiguousarray(data.transpose(2, 1, 0))
    if not array.dtype.isnative:
        array = array.astype(array.dtype.newbyteorder("="))
    return array


def read_nifti(path: str | os.PathLike[str], volume_index: int | None = None) -> Volume:
    """Read a 3-D NIfTI image, or one volume of a 4-D one.

    Parameters
    ----------
    path:
        A ``.nii`` or ``.nii.gz`` file (NIfTI-1 or NIfTI-2).
    volume_index:
        For a 4-D image, which volume to read (0-based). Required when there
        is more than one: the caller (CLI option or studio dialog) decides.

    Returns
    -------
    Volume
        ``array[k, j, i]`` is nibabel's ``data[i, j, k]``; ``affine`` is the
        file's (RAS), unchanged; scl_slope/scl_inter applied (``float32``
        when they are not the identity, else the stored type in native byte
        order); spacing ``(z, y, x)`` from the affine's column lengths.

    Raises
    ------
    UnreadableInputError
        Missing, empty, damaged or non-NIfTI file (a header nibabel refuses,
        a dimension below 1); a 4-D image without a volume_index; more than
        four dimensions; more voxels than memory allows
        (:func:`segstudio.io.limits.check_pixels`), checked before reading.
    InvalidArgumentError
        volume_index out of range.
    """
    import nibabel as nib

    path = Path(path)
    image = _load(path)
    data = _values(image, path, volume_index)
    array = _as_zyx(data)
    try:
        affine = np.asarray(image.affine, dtype=np.float64)
        header = image.header.copy()
    except _load_errors() as exc:
        raise UnreadableInputError(f"the NIfTI header is damaged ({_short(exc)})", path=path) from exc
    if not np.all(np.isfinite(affine)):
        raise UnreadableInputError("the NIfTI affine (qform/sform) holds values that are not finite", path=path)
    sizes = nib.affines.voxel_sizes(affine)
    volume = Volume(
        array=array,
        spacing=(float(sizes[2]), float(sizes[1]), float(sizes[0])),
        affine=affine,
        source=path,
        kind="nifti",
        modality=None,
        description=path.name,
        nifti_header=header,
    )
    log.info("read NIfTI %s: %s %s, spacing %s mm", path.name, array.shape, array.dtype,
             tuple(round(s, 4) for s in volume.spacing))
    return volume
