"""Label masks on disk: indexed PNGs whose pixel value is the class index.

Masks are written as palette ("P" mode) PNGs so that any viewer shows them in
colour while every pixel still holds its class index. Value
:data:`UNLABELLED` (255) marks pixels nobody has labelled; it is shown white
and ignored by training and metrics.

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

if TYPE_CHECKING:
    from PIL import Image as PILImage

log = logging.getLogger(__name__)

UNLABELLED = 255
"""Mask value of pixels without a label."""

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
    index up to 254 gets its own colour, none of them white.

    Raises
    ------
    InvalidArgumentError
        *n* is negative or above 255 (an indexed PNG keeps 255 for unlabelled).
    """
    if not 0 <= n <= UNLABELLED:
        raise InvalidArgumentError(f"palette size must be between 0 and {UNLABELLED}, got {n}")
    colours = []
    for index in range(n):
        rgb = [0, 0, 0]
        value = index
        for shift in range(7, -1, -1):
            for channel in range(3):
                rgb[channel] |= ((value >> channel) & 1) << shift
            value >>= 3
        colours.append((rgb[0], rgb[1], rgb[2]))
    return colours


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


def _open_png_like(path: Path) -> PILImage.Image:
    """Open and fully decode an image with Pillow, mapping every failure to our errors."""
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
        with Image.open(path) as image:
            image.load()
            return image
    except _PIL_ERRORS + (Image.DecompressionBombError,) as exc:
        raise UnreadableInputError("not a PNG image or the file is truncated", path=path) from exc


def read_mask(path: str | os.PathLike[str]) -> np.ndarray:
    """Read a label mask as its class indices.

    Parameters
    ----------
    path:
        An indexed ("P") or greyscale ("L") image, normally a PNG, whose pixel
        values are class indices. The palette is not applied.

    Returns
    -------
    numpy.ndarray
        ``uint8`` array of shape ``H x W``.

    Raises
    ------
    UnreadableInputError
        Missing, empty, truncated or non-image file, or a colour mask.
    """
    path = Path(path)
    image = _open_png_like(path)
    mode = image.mode
    if mode in ("LA", "PA"):
        image = image.getchannel(0)
        mode = image.mode
    if mode in ("P", "L"):
        return np.array(image, dtype=np.uint8)
    if mode == "1":
        return np.array(image, dtype=np.uint8)
    if mode.startswith("I"):
        values = np.array(image)
        if values.size and (values.min() < 0 or values.max() > UNLABELLED):
            raise UnreadableInputError(
                f"mask values must lie in 0..{UNLABELLED}, found {values.min()}..{values.max()}",
                path=path,
            )
        return values.astype(np.uint8)
    raise UnreadableInputError(
        f"mask is a colour image (mode {mode}); masks must be indexed or greyscale "
        "with pixel value = class index",
        path=path,
    )


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
