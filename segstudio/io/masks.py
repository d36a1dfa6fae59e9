"""Label maps and their files: pixel value = class index.

A label map is ``uint8`` while a project has at most
:data:`MAX_CLASSES_8BIT` (254) classes and ``uint16`` beyond that
(:func:`label_dtype`). The largest value of the type marks pixels nobody has
labelled: :data:`UNLABELLED` (255) in a uint8 map, :data:`UNLABELLED_16`
(65535) in a uint16 map (:func:`unlabelled_for`); it is shown white and
ignored by training and metrics. :func:`convert_labels` moves a map between
the two types, keeping unlabelled pixels unlabelled.

uint8 maps are written as palette ("P" mode) PNGs so that any viewer shows
them in colour while every pixel still holds its class index; uint16 maps as
16-bit greyscale PNGs (a PNG palette holds 256 colours at most). Either kind
reads back with its own type (:func:`read_mask`), so a file says by itself
which value is unlabelled.

Files are written atomically (:func:`atomic_write_bytes`): a crash or a full
disk never leaves a half-written mask in place of a good one.
"""

from __future__ import annotations

import io
import logging
import os
import stat
import struct
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from segstudio.errors import ExportError, InvalidArgumentError, UnreadableInputError
from segstudio.io import limits

if TYPE_CHECKING:
    from PIL import Image as PILImage

log = logging.getLogger(__name__)

UNLABELLED = 255
"""Value of pixels without a label in a uint8 label map."""

UNLABELLED_16 = 65535
"""Value of pixels without a label in a uint16 label map."""

MAX_CLASSES_8BIT = 254
"""Most classes a uint8 label map serves (255 is unlabelled, 254 kept free)."""

MAX_CLASSES = 65534
"""Most classes a project holds: a uint16 map, 65535 unlabelled, 65534 kept free."""

LABEL_DTYPES = (np.dtype(np.uint8), np.dtype(np.uint16))

_UNLABELLED_COLOUR = (255, 255, 255)
_MAX_PALETTE = 256
# Pillow reports damaged files through several unrelated exception types.
_PIL_ERRORS: tuple[type[BaseException], ...] = (OSError, SyntaxError, ValueError, EOFError, struct.error)


def default_palette(n: int) -> list[tuple[int, int, int]]:
    """Return *n* distinct RGB colours for classes ``0 .. n-1``.

    Colour ``i`` spreads the bits of ``i`` over the high bits of the three
    channels (bit 0 to red, bit 1 to green, bit 2 to blue, then the next three
    bits one step lower, and so on), the scheme PASCAL VOC masks use. Class 0
    is black, the first classes get strong, well-separated colours, and every
    index up to :data:`MAX_CLASSES` gets its own colour, none of them white.

    Raises
    ------
    InvalidArgumentError
        *n* is negative or above :data:`MAX_CLASSES`.
    """
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or not 0 <= n <= MAX_CLASSES:
        raise InvalidArgumentError(f"palette size must be between 0 and {MAX_CLASSES}, got {n!r}")
    value = np.arange(int(n), dtype=np.int64)
    rgb = np.zeros((int(n), 3), np.int64)
    for shift in range(7, -1, -1):
        for channel in range(3):
            rgb[:, channel] |= ((value >> channel) & 1) << shift
        value >>= 3
    return [(int(r), int(g), int(b)) for r, g, b in rgb]


def label_dtype(num_classes: int) -> np.dtype:
    """The label-map type for a project of *num_classes* classes: uint8 up to
    :data:`MAX_CLASSES_8BIT`, uint16 beyond.

    Raises
    ------
    InvalidArgumentError
        *num_classes* is negative or above :data:`MAX_CLASSES`.
    """
    if isinstance(num_classes, bool) or not isinstance(num_classes, (int, np.integer)) \
            or not 0 <= num_classes <= MAX_CLASSES:
        raise InvalidArgumentError(f"a project holds 0 to {MAX_CLASSES} classes, got {num_classes!r}")
    return LABEL_DTYPES[0] if num_classes <= MAX_CLASSES_8BIT else LABEL_DTYPES[1]


def unlabelled_for(dtype: np.dtype | type | np.ndarray) -> int:
    """The unlabelled value of a label map type (or of an array's type): 255 or 65535.

    Raises
    ------
    InvalidArgumentError
        Not uint8 or uint16.
    """
    dtype = np.asarray(dtype).dtype if isinstance(dtype, np.ndarray) else np.dtype(dtype)
    if dtype not in LABEL_DTYPES:
        raise InvalidArgumentError(f"label maps are uint8 or uint16, got {dtype}")
    return int(np.iinfo(dtype).max)


def unlabelled_of(labels: np.ndarray) -> int:
    """The unlabelled value of a label array: :func:`unlabelled_for` its type
    for uint8/uint16, and 255 for other integer arrays (maps built by hand,
    int32 predictions), the convention masks had before uint16 existed."""
    dtype = np.asarray(labels).dtype
    return unlabelled_for(dtype) if dtype in LABEL_DTYPES else UNLABELLED


def conversion_table(source: np.dtype | type, target: np.dtype | type) -> np.ndarray:
    """Lookup table taking a *source*-typed label map to *target*: class indices
    stay, unlabelled becomes the target's unlabelled value.

    Entries whose class index does not fit the target (uint16 values from 255
    up) hold the target's unlabelled value; :func:`convert_labels` refuses
    maps that use them instead of losing labels silently.
    """
    source_max, target_max = unlabelled_for(source), unlabelled_for(target)
    table = np.arange(source_max + 1, dtype=np.int64)
    table[table >= target_max] = target_max
    table[source_max] = target_max
    return table.astype(np.dtype(target))


def convert_labels(labels: np.ndarray, dtype: np.dtype | type, *, path: str | os.PathLike[str] | None = None) -> np.ndarray:
    """*labels* (uint8 or uint16) as a label map of *dtype*, unlabelled kept unlabelled.

    Returns *labels* itself when it already has that type.

    Raises
    ------
    InvalidArgumentError
        A class index does not fit the target type (e.g. class 300 in a
        uint8 map); the message names *path* when given.
    """
    labels = np.asarray(labels)
    target = np.dtype(dtype)
    source_unlabelled = unlabelled_for(labels.dtype)
    target_unlabelled = unlabelled_for(target)
    if labels.dtype == target:
        return labels
    if source_unlabelled > target_unlabelled and labels.size:
        counts = np.bincount(labels.ravel(), minlength=source_unlabelled + 1)
        bad = np.flatnonzero(counts[target_unlabelled:source_unlabelled])
        if bad.size:
            where = f" in {os.fspath(path)}" if path is not None else ""
            raise InvalidArgumentError(
                f"labels{where} hold class indices {(bad[:10] + target_unlabelled).tolist()}, "
                f"more than a {target} label map holds (at most {target_unlabelled - 1})"
            )
    return conversion_table(labels.dtype, target)[labels]


def permissions_for(path: Path) -> int:
    """Mode a freshly written file should get: the old file's, or 0o666 minus umask."""
    try:
        return stat.S_IMODE(path.stat().st_mode)
    except OSError:
        pass
    umask = None
    try:
        with open("/proc/self/status", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("Umask:"):
                    umask = int(line.split()[1], 8)
                    break
    except (OSError, ValueError):
        umask = None
    if umask is None:
        # Reading the umask means setting it; the window is tiny and only
        # matters for files created by other threads at the same instant.
        umask = os.umask(0o022)
        os.umask(umask)
    return 0o666 & ~umask


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes) -> Path:
    """Write *data* to *path* so that readers see the old file or the new one, never a mix.

    The bytes go to a temporary file in the same folder, are flushed to disk,
    and the temporary file then replaces *path* in one rename. Parent folders
    are created. On failure the temporary file is removed and the previous
    file, if any, is left untouched.

    Returns
    -------
    pathlib.Path
        *path*.

    Raises
    ------
    ExportError
        The folder cannot be created or the file cannot be written.
    """
    path = Path(path)
    parent = path.parent
    try:
        parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ExportError(f"cannot create folder {parent}: {exc.strerror or exc}", path=path) from exc
    mode = permissions_for(path)
    tmp_name: str | None = None
    try:
        fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=parent)
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp_name, mode)
        os.replace(tmp_name, path)
        tmp_name = None
    except OSError as exc:
        raise ExportError(f"cannot write file: {exc.strerror or exc}", path=path) from exc
    finally:
        if tmp_name is not None:
            try:
                os.unlink(tmp_name)
            except OSError:
                log.warning("could not remove temporary file %s", tmp_name)
    _sync_folder(parent)
    return path


def _sync_folder(folder: Path) -> None:
    # Makes the rename itself durable; not possible (nor needed) on Windows.
    if os.name != "posix":
        return
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _labels_as_uint8(labels: np.ndarray, n_colours: int) -> np.ndarray:
    labels = np.asarray(labels)
    if labels.ndim != 2:
        raise InvalidArgumentError(f"a mask must be 2-D (H x W), got shape {labels.shape}")
    if labels.size == 0:
        raise InvalidArgumentError(f"a mask must not be empty, got shape {labels.shape}")
    if labels.dtype == np.bool_:
        labels = labels.astype(np.uint8)
    if not np.issubdtype(labels.dtype, np.integer):
        raise InvalidArgumentError(f"mask values must be integers, got {labels.dtype}")
    if labels.size and labels.dtype != np.uint8:
        lo, hi = int(labels.min()), int(labels.max())
        if lo < 0 or hi > UNLABELLED:
            raise InvalidArgumentError(
                f"mask values must lie in 0..{UNLABELLED}, got {lo}..{hi}"
            )
    labels = labels.astype(np.uint8, copy=False)
    bad = (labels >= n_colours) & (labels != UNLABELLED)
    if bad.any():
        values = np.unique(labels[bad])
        raise InvalidArgumentError(
            f"mask holds class indices {values[:10].tolist()} but the palette has only "
            f"{n_colours} colours"
        )
    return labels


def write_indexed_png(
    path: str | os.PathLike[str],
    labels: np.ndarray,
    palette: Sequence[tuple[int, int, int]],
) -> Path:
    """Write a label mask as an indexed (mode "P") PNG, atomically.

    Parameters
    ----------
    path:
        Destination; parent folders are created.
    labels:
        2-D array of class indices, values below ``len(palette)`` or
        :data:`UNLABELLED`. Any integer dtype whose values fit is accepted.
    palette:
        One RGB colour per class. Entry 255 is always white, for unlabelled
        pixels; entries without a class are black.

    Returns
    -------
    pathlib.Path
        *path*.

    Raises
    ------
    InvalidArgumentError
        Wrong shape, non-integer values, or class indices outside the palette.
    ExportError
        The file cannot be written.
    """
    from PIL import Image

    if len(palette) > _MAX_PALETTE:
        raise InvalidArgumentError(
            f"a palette holds at most {_MAX_PALETTE} colours, got {len(palette)}"
        )
    table = np.zeros((_MAX_PALETTE, 3), dtype=np.uint8)
    for index, colour in enumerate(palette):
        try:
            rgb = tuple(int(c) for c in colour)
        except (TypeError, ValueError):
            rgb = ()
        if len(rgb) != 3 or not all(0 <= c <= 255 for c in rgb):
            raise InvalidArgumentError(
                f"palette entry {index} is not an RGB triple of 0..255: {colour!r}"
            )
        table[index] = rgb
    table[UNLABELLED] = _UNLABELLED_COLOUR
    labels8 = _labels_as_uint8(labels, min(len(palette), UNLABELLED))

    height, width = labels8.shape
    image = Image.frombytes("P", (width, height), np.ascontiguousarray(labels8).tobytes())
    image.putpalette(table.ravel().tolist(), rawmode="RGB")
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", optimize=False)
    written = atomic_write_bytes(path, buffer.getvalue())
    log.debug("wrote mask %s (%d x %d)", written, labels8.shape[1], labels8.shape[0])
    return written


def write_label_png(
    path: str | os.PathLike[str],
    labels: np.ndarray,
    palette: Sequence[tuple[int, int, int]],
) -> Path:
    """Write a label map as a PNG, atomically, in the depth of its type.

    A uint8 map becomes an indexed PNG with *palette* (:func:`write_indexed_png`);
    a uint16 map a 16-bit greyscale PNG holding the class indices, 65535 for
    unlabelled (no palette: a PNG palette has 256 entries at most).

    Raises
    ------
    InvalidArgumentError
        Not a 2-D uint8/uint16 map, or class indices without a colour in *palette*.
    ExportError
        The file cannot be written.
    """
    from PIL import Image

    labels = np.asarray(labels)
    if labels.dtype == np.uint8:
        return write_indexed_png(path, labels, palette)
    if labels.dtype != np.uint16:
        raise InvalidArgumentError(f"label maps are uint8 or uint16, got {labels.dtype}")
    if labels.ndim != 2 or labels.size == 0:
        raise InvalidArgumentError(f"a mask must be 2-D (H x W) and not empty, got shape {labels.shape}")
    counts = np.bincount(labels.ravel(), minlength=UNLABELLED_16 + 1)
    bad = np.flatnonzero(counts[len(palette):UNLABELLED_16]) + len(palette)
    if bad.size:
        raise InvalidArgumentError(
            f"mask holds class indices {bad[:10].tolist()} but there are only {len(palette)} classes"
        )
    image = Image.fromarray(np.ascontiguousarray(labels))
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", optimize=False)
    written = atomic_write_bytes(path, buffer.getvalue())
    log.debug("wrote 16-bit mask %s (%d x %d)", written, labels.shape[1], labels.shape[0])
    return written


#: the modes a mask may have; others are colour images
_MASK_MODES = ("1", "L", "P", "LA", "PA", "I;16", "I;16L", "I;16B", "I;16N", "I")


def _pillow_pixel_bytes(mode: str) -> int:
    """Bytes Pillow stores a pixel of *mode* in (several bands share 32 bits)."""
    if mode in ("1", "L", "P"):
        return 1
    return 2 if mode.startswith("I;16") else 4


def _colour_mask_error(mode: str, path: Path) -> UnreadableInputError:
    return UnreadableInputError(
        f"mask is a colour image (mode {mode}); masks must be indexed or greyscale "
        "with pixel value = class index",
        path=path,
    )


def _open_png_like(path: Path, modes: tuple[str, ...] | None = None) -> PILImage.Image:
    """Open and fully decode a mask image with Pillow, mapping every failure to our errors.

    The header is checked before decoding: a mode outside *modes* (when
    given) is refused as a colour image, and an image larger than the memory
    limit (:mod:`segstudio.io.limits`; Pillow's own pixel limit plays no
    part) is refused naming its size.
    """
    from PIL import Image

    try:
        size = path.stat().st_size
    except FileNotFoundError:
        raise UnreadableInputError("no such file", path=path) from None
    except OSError as exc:
        raise UnreadableInputError(f"cannot read file: {exc.strerror or exc}", path=path) from None
    if path.is_dir():
        raise UnreadableInputError("is a folder, not a mask file", path=path)
    if size == 0:
        raise UnreadableInputError("file is empty", path=path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise UnreadableInputError(f"cannot read file: {exc.strerror or exc}", path=path) from None
    image = limits.open_with_pillow(data, path)
    if image is None:
        raise UnreadableInputError("not a PNG image or the file is truncated", path=path)
    try:
        with image:
            if modes is not None and image.mode not in modes:
                raise _colour_mask_error(image.mode, path)
            width, height = image.size
            # the decoded image and NumPy's copy of it
            itemsize = _pillow_pixel_bytes(image.mode)
            limits.check_pixels((height, width), itemsize, path, "the mask", working_bytes=itemsize)
            image.load()
            return image
    except _PIL_ERRORS + (Image.DecompressionBombError,) as exc:
        raise UnreadableInputError("not a PNG image or the file is truncated", path=path) from exc


def read_mask(path: str | os.PathLike[str]) -> np.ndarray:
    """Read a label mask as its class indices.

    Parameters
    ----------
    path:
        An indexed ("P") or 8-bit greyscale ("L") image, normally a PNG,
        whose pixel values are class indices (255 = unlabelled); or a 16-bit
        greyscale image (65535 = unlabelled). The palette is not applied.

    Returns
    -------
    numpy.ndarray
        ``H x W``: ``uint8`` for an 8-bit file, ``uint16`` for a 16-bit one.
        A 32-bit integer image (TIFF) gives uint8 when its values fit 0..255,
        else uint16.

    Raises
    ------
    UnreadableInputError
        Missing, empty, truncated or non-image file, a colour mask, or values
        beyond 65535.
    """
    path = Path(path)
    image = _open_png_like(path, _MASK_MODES)
    mode = image.mode
    if mode in ("LA", "PA"):
        image = image.getchannel(0)
        mode = image.mode
    if mode in ("P", "L", "1"):
        return np.array(image, dtype=np.uint8)
    if mode.startswith("I;16"):
        return np.array(image).astype(np.uint16)
    if mode == "I":
        values = np.array(image)
        if values.size and (values.min() < 0 or values.max() > UNLABELLED_16):
            raise UnreadableInputError(
                f"mask values must lie in 0..{UNLABELLED_16}, found {values.min()}..{values.max()}",
                path=path,
            )
        fits_8bit = not values.size or values.max() <= UNLABELLED
        return values.astype(np.uint8 if fits_8bit else np.uint16)
    raise _colour_mask_error(mode, path)


def read_palette(path: str | os.PathLike[str]) -> list[tuple[int, int, int]]:
    """Return the colour table of an indexed PNG, one RGB triple per entry.

    Raises
    ------
    UnreadableInputError
        The file cannot be read or is not an indexed image.
    """
    path = Path(path)
    image = _open_png_like(path)
    if image.mode not in ("P", "PA"):
        raise UnreadableInputError(
            f"not an indexed image (mode {image.mode}), so it has no palette", path=path
        )
    flat = image.getpalette("RGB") or []
    return [(flat[i], flat[i + 1], flat[i + 2]) for i in range(0, len(flat) - 2, 3)]
