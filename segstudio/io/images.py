"""Reading images and image stacks from disk.

Every reader returns a NumPy array in a fixed layout: ``H x W`` for grey,
``H x W x 3`` for colour in RGB order, with the file's bit depth kept
(``uint8`` or ``uint16``; ``float32`` for floating-point TIFFs). Anything that
goes wrong with a file surfaces as :class:`~segstudio.errors.UnreadableInputError`
naming the file, never as a decoder's own exception.

PNG, JPEG and BMP files are decoded by OpenCV from bytes read in Python (so
that non-ASCII paths work on every platform); TIFF files go through tifffile,
which understands multi-page stacks and 16-bit or float data. EXIF orientation
is deliberately ignored: masks must line up with the pixels as stored.
"""

from __future__ import annotations

import contextlib
import logging
import os
import stat
import struct
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from segstudio.errors import SegstudioError, UnreadableInputError
from segstudio.io import limits

log = logging.getLogger(__name__)

IMAGE_SUFFIXES: frozenset[str] = frozenset({".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff"})
TIFF_SUFFIXES: frozenset[str] = frozenset({".tif", ".tiff"})

_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_TIFF_SIGNATURES = (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+")
_NOT_DECODABLE = "not a PNG/JPEG/BMP image or the file is truncated"
_NOT_TIFF = "not a TIFF image or the file is truncated"
#: OpenCV refuses to decode more pixels than this (its CV_IO_MAX_IMAGE_PIXELS
#: default) whatever the memory, and says only that decoding failed
_OPENCV_MAX_PIXELS = 1 << 30
#: PNG colour type -> channels OpenCV decodes it to (grey + alpha and palette
#: with transparency come back as BGRA)
_PNG_CHANNELS = {0: 1, 2: 3, 3: 4, 4: 4, 6: 4}


# --------------------------------------------------------------------------
# Small helpers
# --------------------------------------------------------------------------


def _check_file(path: Path) -> int:
    """Raise a specific error unless *path* is a non-empty, readable file.

    Returns the file size in bytes.
    """
    try:
        st = path.stat()
    except FileNotFoundError:
        raise UnreadableInputError("no such file", path=path) from None
    except OSError as exc:
        raise UnreadableInputError(f"cannot read file: {exc.strerror or exc}", path=path) from None
    if stat.S_ISDIR(st.st_mode):
        raise UnreadableInputError("is a folder, not an image file", path=path)
    if st.st_size == 0:
        raise UnreadableInputError("file is empty", path=path)
    return st.st_size


def _check_suffix(path: Path) -> str:
    suffix = path.suffix.lower()
    if suffix not in IMAGE_SUFFIXES:
        shown = suffix or "(none)"
        supported = ", ".join(sorted(IMAGE_SUFFIXES))
        raise UnreadableInputError(
            f"unsupported file type '{shown}' (supported: {supported})", path=path
        )
    return suffix


def _read_bytes(path: Path, size: int | None = None) -> bytes:
    try:
        with open(path, "rb") as fh:
            return fh.read() if size is None else fh.read(size)
    except OSError as exc:
        raise UnreadableInputError(f"cannot read file: {exc.strerror or exc}", path=path) from None


def _normalise_dtype(array: np.ndarray) -> np.ndarray:
    """Map any pixel type onto uint8, uint16 or float32."""
    if array.dtype in (np.uint8, np.uint16, np.float32):
        return array
    if array.dtype == np.bool_:
        # Bilevel images: make "on" visible rather than 1 out of 255.
        return array.astype(np.uint8) * np.uint8(255)
    if np.issubdtype(array.dtype, np.floating) or np.issubdtype(array.dtype, np.integer):
        return array.astype(np.float32)
    raise TypeError(f"pixel type {array.dtype} is not supported")


def _jpeg_is_complete(data: bytes) -> bool:
    """Tell whether a JPEG byte string reaches its end-of-image marker.

    Depending on the OpenCV version and entry point, a truncated JPEG may be
    decoded into a grey-padded image with only a printed warning (``imread``
    in 4.x and 5.0 does so), so truncation is detected here, independently of
    the decoder, by walking the marker segments
    (which skips embedded EXIF thumbnails and their own end markers) and the
    entropy-coded scans. Only running out of data counts as truncation: an
    unexpected layout is left for the decoder to judge.
    """
    n = len(data)
    i = 2  # after SOI
    while i < n:
        if data[i] != 0xFF:
            return True
        while i < n and data[i] == 0xFF:  # fill bytes may precede a marker
            i += 1
        if i >= n:
            return False
        marker = data[i]
        i += 1
        if marker == 0xD9:  # EOI
            return True
        if 0xD0 <= marker <= 0xD7 or marker == 0x01:  # markers without a length
            continue
        if i + 2 > n:
            return False
        i += int.from_bytes(data[i : i + 2], "big")
        if marker != 0xDA:  # not SOS: the length covers the whole segment
            continue
        # Inside a scan, 0xFF is followed by a stuffed 0x00, a restart marker
        # or more fill; anything else is the next real marker.
        while True:
            j = data.find(b"\xff", i)
            if j < 0 or j + 1 >= n:
                return False
            following = data[j + 1]
            if following == 0x00 or 0xD0 <= following <= 0xD7:
                i = j + 2
            elif following == 0xFF:
                i = j + 1
            else:
                i = j
                break
    return False


def _jpeg_header(data: bytes) -> tuple[int, int, int, int] | None:
    """``(height, width, bytes per sample, channels)`` from a JPEG's frame header."""
    n = len(data)
    i = 2
    while i + 4 <= n:
        if data[i] != 0xFF:
            return None
        marker = data[i + 1]
        if marker == 0xFF:  # fill byte
            i += 1
            continue
        if 0xD0 <= marker <= 0xD7 or marker == 0x01:
            i += 2
            continue
        length = int.from_bytes(data[i + 2 : i + 4], "big")
        # SOF0..SOF15 except DHT (C4), JPG (C8) and DAC (CC)
        if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):
            if i + 10 > n:
                return None
            precision, height, width, components = struct.unpack(">BHHB", data[i + 4 : i + 10])
            return height, width, 2 if precision > 8 else 1, 1 if components == 1 else 3
        if marker in (0xD9, 0xDA):  # end of image, start of scan: no frame header before
            return None
        i += 2 + length
    return None


def _declared_size(path: Path, data: bytes) -> tuple[int, int, int, int] | None:
    """``(height, width, bytes per sample, channels)`` an image file declares, read
    from its header without decoding; ``None`` when the format is not recognised.

    The channels are those OpenCV decodes to (a palette PNG becomes colour).
    """
    if data[:8] == _PNG_SIGNATURE and data[12:16] == b"IHDR" and len(data) >= 26:
        width, height, depth, colour = struct.unpack(">IIBB", data[16:26])
        return height, width, 2 if depth == 16 else 1, _PNG_CHANNELS.get(colour, 4)
    if data[:2] == b"\xff\xd8":
        return _jpeg_header(data)
    if data[:2] == b"BM" and len(data) >= 30:
        if int.from_bytes(data[14:18], "little") == 12:  # OS/2 BITMAPCOREHEADER
            width, height, bits = struct.unpack("<HHxxH", data[18:26])
        else:
            width, height, _, bits = struct.unpack("<iiHH", data[18:30])
        return abs(height), width, 1, 4 if bits == 32 else 3
    image = limits.open_with_pillow(data, path)  # any other format OpenCV might decode
    if image is None:
        return None
    with image:
        width, height = image.size
        mode = image.mode
    itemsize = 2 if mode.startswith("I;16") else 4 if mode in ("I", "F") else 1
    return height, width, itemsize, 4


def _check_declared_size(path: Path, data: bytes, suffix: str) -> None:
    """Refuse an image whose header declares more pixels than memory (or OpenCV) allows."""
    declared = _declared_size(path, data)
    if declared is None:
        raise UnreadableInputError(_NOT_TIFF if suffix in TIFF_SUFFIXES else _NOT_DECODABLE, path=path)
    height, width, itemsize, channels = declared
    limits.check_pixels((height, width), itemsize, path, channels=channels)
    if height * width > _OPENCV_MAX_PIXELS:
        raise UnreadableInputError(
            f"the image ({width} x {height}, {height * width:,} pixels) is larger than the decoder "
            f"handles ({_OPENCV_MAX_PIXELS:,} pixels); not read",
            path=path,
        )


class _TifffileLogToDebug(logging.Filter):
    """Keeps tifffile's own log lines (about odd tags, damaged pages) out of the
    user's output, which gets one line from us; they go to our debug log."""

    def __init__(self, path: Path) -> None:
        super().__init__()
        self.path = path

    def filter(self, record: logging.LogRecord) -> bool:
        log.debug("%s: tifffile: %s", self.path, record.getMessage())
        return False


@contextlib.contextmanager
def _quiet_tifffile(path: Path) -> Iterator[None]:
    logger = logging.getLogger("tifffile")
    quiet = _TifffileLogToDebug(path)
    logger.addFilter(quiet)
    try:
        yield
    finally:
        logger.removeFilter(quiet)


# --------------------------------------------------------------------------
# Decoders
# --------------------------------------------------------------------------


def _decode_with_cv2(path: Path, data: bytes, suffix: str) -> np.ndarray:
    import cv2

    problem = _NOT_TIFF if suffix in TIFF_SUFFIXES else _NOT_DECODABLE
    if data[:2] == b"\xff\xd8" and not _jpeg_is_complete(data):
        raise UnreadableInputError("JPEG file is truncated", path=path)
    _check_declared_size(path, data, suffix)
    try:
        image = cv2.imdecode(np.frombuffer(data, dtype=np.uint8), cv2.IMREAD_UNCHANGED)
    except cv2.error as exc:
        raise UnreadableInputError(problem, path=path) from exc
    if image is None or image.size == 0:
        raise UnreadableInputError(problem, path=path)

    # OpenCV expands grey+alpha PNGs to BGRA; the header says what it was.
    png_grey = data[:8] == _PNG_SIGNATURE and len(data) > 25 and data[25] in (0, 4)
    if image.ndim == 3:
        channels = image.shape[2]
        if channels <= 2 or png_grey:  # grey, grey + alpha
            image = image[:, :, 0]
        elif channels in (3, 4):
            image = image[:, :, 2::-1]  # BGR(A) -> RGB, alpha dropped
        else:
            raise UnreadableInputError(f"image has {channels} channels; expected 1, 3 or 4", path=path)
    try:
        return np.ascontiguousarray(_normalise_dtype(image))
    except TypeError as exc:
        raise UnreadableInputError(str(exc), path=path) from None


@dataclass(frozen=True)
class _TiffLayout:
    """Where the pixels sit in one tifffile series, worked out from its axes."""

    axes: str
    shape: tuple[int, ...]
    planes: int
    samples: int

    @classmethod
    def of(cls, series, path: Path) -> _TiffLayout:  # series: tifffile.TiffPageSeries
        axes, shape = series.axes, tuple(series.shape)
        if "Y" not in axes or "X" not in axes:
            raise UnreadableInputError(f"unsupported TIFF layout (axes {axes})", path=path)
        samples = shape[axes.index("S")] if "S" in axes else 1
        planes = int(np.prod([n for a, n in zip(axes, shape) if a not in "YXS"], dtype=np.int64))
        if samples > 4:
            # More samples than RGB + alpha: independent channels, shown as planes.
            planes *= samples
        return cls(axes, shape, planes, samples)

    def arrange(self, data: np.ndarray) -> np.ndarray:
        """Reorder raw series data into ``Z x H x W`` or ``Z x H x W x 3``."""
        axes = self.axes
        data = np.asarray(data).reshape(self.shape)
        order = [i for i, a in enumerate(axes) if a not in "YXS"]
        order += [axes.index("Y"), axes.index("X")]
        if "S" in axes:
            order.append(axes.index("S"))
        data = np.transpose(data, order)
        height, width = self.shape[axes.index("Y")], self.shape[axes.index("X")]
        samples = self.samples
        if samples in (3, 4):
            return data.reshape(-1, height, width, samples)[..., :3]
        if samples == 2:  # grey + alpha
            return data.reshape(-1, height, width, 2)[..., 0]
        if samples > 4:
            return np.moveaxis(data.reshape(-1, height, width, samples), 3, 1).reshape(-1, height, width)
        return data.reshape(-1, height, width)


def _tiff_planes(path: Path, *, single: bool) -> np.ndarray:
    """Read a TIFF as ``Z x H x W`` or ``Z x H x W x 3``.

    The planes are the first series plus every later series of the same
    shape and type: files written page by page come back as one series per
    page, while pyramids and thumbnails (other shapes) are left out. With
    ``single`` the plane count is checked before any pixel data is read, so a
    large stack opened as an image fails fast; the size the pages declare is
    checked against the memory limit before any is decoded.
    """
    import tifffile

    try:
        with _quiet_tifffile(path), tifffile.TiffFile(path) as tif:
            if not tif.series:
                raise UnreadableInputError("TIFF holds no images", path=path)
            first = tif.series[0]
            group = [
                s for s in tif.series
                if s.axes == first.axes and s.shape == first.shape and s.dtype == first.dtype
            ]
            layout = _TiffLayout.of(first, path)
            planes = layout.planes * len(group)
            if single and planes > 1:
                raise UnreadableInputError(
                    f"TIFF holds {planes} pages; open it as a stack instead of a single image",
                    path=path,
                )
            _check_tiff_size(path, layout, planes, np.dtype(first.dtype).itemsize)
            data = np.concatenate([layout.arrange(s.asarray()) for s in group])
    except UnreadableInputError:
        raise
    except Exception as exc:  # noqa: BLE001 - tifffile and its codecs raise many unrelated types
        if "imagecodecs" in str(exc):  # a compression without its codec: say which
            raise UnreadableInputError(f"cannot decode this TIFF: {exc}", path=path) from None
        raise UnreadableInputError(_NOT_TIFF, path=path) from exc
    try:
        return np.ascontiguousarray(_normalise_dtype(data))
    except TypeError as exc:
        raise UnreadableInputError(str(exc), path=path) from None


def _check_tiff_size(path: Path, layout: _TiffLayout, planes: int, itemsize: int) -> None:
    height, width = layout.shape[layout.axes.index("Y")], layout.shape[layout.axes.index("X")]
    channels = layout.samples if layout.samples <= 4 else 1  # more samples are counted as planes
    if planes == 1:
        limits.check_pixels((height, width), itemsize, path, channels=channels)
    else:
        limits.check_pixels((planes, height, width), itemsize, path, "the stack", channels=channels)


def _is_tiff(path: Path) -> bool:
    return _read_bytes(path, 4) in _TIFF_SIGNATURES


# --------------------------------------------------------------------------
# Public readers
# --------------------------------------------------------------------------


def read_image(path: str | os.PathLike[str]) -> np.ndarray:
    """Read one 2-D image.

    Parameters
    ----------
    path:
        A PNG, JPEG, BMP or single-page TIFF file.

    Returns
    -------
    numpy.ndarray
        ``H x W`` for grey or ``H x W x 3`` in RGB order; alpha is dropped.
        The dtype is ``uint8`` or ``uint16`` as stored (``float32`` for
        floating-point or signed TIFFs).

    Raises
    ------
    UnreadableInputError
        The file is missing, empty, truncated, of an unsupported type, not an
        image, or a multi-page TIFF (use :func:`read_stack`).
    """
    path = Path(path)
    size = _check_file(path)
    suffix = _check_suffix(path)
    if _is_tiff(path):
        return _tiff_planes(path, single=True)[0]
    image = _decode_with_cv2(path, _read_bytes(path), suffix)
    log.debug("read %s: %s %s (%d bytes)", path, image.shape, image.dtype, size)
    return image


def read_stack(path: str | os.PathLike[str]) -> np.ndarray:
    """Read a multi-page TIFF (or any single image) as a stack.

    Returns
    -------
    numpy.ndarray
        ``Z x H x W`` or ``Z x H x W x 3``; a single image gives ``Z = 1``.

    Raises
    ------
    UnreadableInputError
        As for :func:`read_image`.
    """
    path = Path(path)
    _check_file(path)
    suffix = _check_suffix(path)
    if _is_tiff(path):
        return _tiff_planes(path, single=False)
    return _decode_with_cv2(path, _read_bytes(path), suffix)[np.newaxis]


def _folder_images(folder: Path, recursive: bool) -> list[Path]:
    found: list[Path] = []
    try:
        entries = sorted(folder.iterdir(), key=lambda p: p.name)
    except OSError as exc:
        raise UnreadableInputError(f"cannot list folder: {exc.strerror or exc}", path=folder) from None
    for entry in entries:
        if entry.name.startswith("."):
            continue
        if entry.is_dir():
            if recursive:
                found.extend(_folder_images(entry, recursive))
        elif entry.suffix.lower() in IMAGE_SUFFIXES:
            found.append(entry)
    return found


def list_image_files(
    inputs: Iterable[str | os.PathLike[str]], *, recursive: bool = False
) -> list[Path]:
    """Expand files and folders into the list of image files to process.

    Parameters
    ----------
    inputs:
        Files and folders. A file is listed as given, whatever its suffix, so
        that reading it reports the problem; a folder contributes its image
        files sorted by name, skipping hidden entries.
    recursive:
        Also descend into sub-folders (sorted by name, hidden ones skipped).

    Returns
    -------
    list[pathlib.Path]
        Each file once, in input order.

    Raises
    ------
    UnreadableInputError
        An input does not exist, or a folder holds no image files.
    """
    result: list[Path] = []
    seen: set[Path] = set()
    for item in inputs:
        path = Path(item)
        if path.is_dir():
            files = _folder_images(path, recursive)
            if not files:
                where = "folder or its sub-folders" if recursive else "folder"
                raise UnreadableInputError(
                    f"no image files in {where} (looked for {', '.join(sorted(IMAGE_SUFFIXES))})",
                    path=path,
                )
        elif path.exists():
            files = [path]
        else:
            raise UnreadableInputError("no such file or folder", path=path)
        for file in files:
            key = file.resolve()
            if key not in seen:
                seen.add(key)
                result.append(file)
    return result


@dataclass(frozen=True)
class ImageItem:
    """One file from :func:`iter_images`: its pixels, or why it could not be read."""

    path: Path
    image: np.ndarray | None
    error: SegstudioError | None

    @property
    def ok(self) -> bool:
        """Whether the image was read."""
        return self.error is None


def iter_images(
    inputs: Iterable[str | os.PathLike[str]], *, recursive: bool = False
) -> Iterator[ImageItem]:
    """Read every image named by *inputs*, carrying on past bad files.

    The inputs are expanded by :func:`list_image_files` at call time, so a
    missing input raises at once; a file that cannot be read later yields an
    :class:`ImageItem` with ``error`` set (and logs a warning) and the
    iteration goes on with the next file.
    """
    files = list_image_files(inputs, recursive=recursive)

    def generate() -> Iterator[ImageItem]:
        for file in files:
            try:
                image = read_image(file)
            except SegstudioError as exc:
                log.warning("skipping %s", exc)
                yield ImageItem(path=file, image=None, error=exc)
            else:
                yield ImageItem(path=file, image=image, error=None)

    return generate()


def to_uint8_display(image: np.ndarray) -> np.ndarray:
    """Scale an image to ``uint8`` for display or colour-based refinement.

    ``uint8`` input is returned unchanged. Other types are stretched so that
    the 0.5th percentile maps to 0 and the 99.5th to 255 (over all channels at
    once, which keeps colour balance); non-finite values become 0.
    """
    image = np.asarray(image)
    if image.dtype == np.uint8:
        return image
    values = image.astype(np.float64, copy=False)
    finite = np.isfinite(values)
    if not finite.any():
        return np.zeros(image.shape, dtype=np.uint8)
    lo, hi = np.percentile(values[finite], [0.5, 99.5])
    if hi <= lo:
        lo, hi = float(values[finite].min()), float(values[finite].max())
    if hi <= lo:
        return np.zeros(image.shape, dtype=np.uint8)
    scaled = (np.where(finite, values, lo) - lo) * (255.0 / (hi - lo))
    return np.clip(np.rint(scaled), 0, 255).astype(np.uint8)
