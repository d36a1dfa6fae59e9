"""How much a file may ask for before it is decoded or built.

A 268-byte TIFF can declare 100000 x 100000 pixels, a 4 KB NIfTI 4096^3
voxels, a checkpoint's metadata a network of many gigabytes. Decoding or
building them first and failing later means the studio is killed with the
user's unsaved work. Every reader therefore checks the size a file declares
against :func:`memory_limit` first and refuses with a message that names the
file, the size and the limit.

The limit is half of the memory available when the check runs (``MemAvailable``
on Linux), and never less than :data:`FLOOR_BYTES`. What an image costs is its
decoded array plus :data:`WORKING_BYTES_PER_PIXEL` for the copies the studio
and the model keep per pixel (the display image, the labels, the model's
input, the probabilities in float16), so an image refused here would not have
fitted anyway. ``SEGSTUDIO_MEMORY_LIMIT`` (bytes, or with a K/M/G/T suffix)
sets the limit by hand.
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Iterable
from pathlib import Path

from segstudio.errors import SegstudioError, UnreadableInputError

ENV_VARIABLE = "SEGSTUDIO_MEMORY_LIMIT"
#: share of the available memory one file may take
SHARE_OF_AVAILABLE = 0.5
#: the limit never goes below this, so a busy machine still opens normal images
FLOOR_BYTES = 512 * 2**20
#: what the studio keeps per pixel besides the decoded image: RGBA display
#: (4), labels (2), float32 model input (4), float16 probabilities of a few
#: classes (6)
WORKING_BYTES_PER_PIXEL = 16
_FALLBACK_AVAILABLE = 8 * 2**30
_UNITS = {"": 1, "K": 2**10, "M": 2**20, "G": 2**30, "T": 2**40}


def available_memory() -> int:
    """Bytes of memory available now (Linux ``MemAvailable``; else free pages; else 8 GiB)."""
    try:
        with open("/proc/meminfo", encoding="ascii") as meminfo:
            for line in meminfo:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return _FALLBACK_AVAILABLE


def _parse_bytes(text: str) -> int | None:
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([KMGT]?)i?B?\s*", text, re.IGNORECASE)
    if match is None:
        return None
    return int(float(match.group(1)) * _UNITS[match.group(2).upper()])


def memory_limit() -> int:
    """The most bytes one file may ask for now (see the module text)."""
    return _limit_and_origin()[0]


def _limit_and_origin() -> tuple[int, str]:
    configured = os.environ.get(ENV_VARIABLE)
    if configured:
        parsed = _parse_bytes(configured)
        if parsed is not None:
            return parsed, f"set by {ENV_VARIABLE}"
    available = int(available_memory() * SHARE_OF_AVAILABLE)
    if available < FLOOR_BYTES:
        return FLOOR_BYTES, "the smallest limit"
    return available, "half the memory available"


def format_bytes(count: float) -> str:
    """``1.5 GiB``-style text."""
    for unit in ("B", "KiB", "MiB", "GiB", "TiB", "PiB"):
        if abs(count) < 1024 or unit == "PiB":
            return f"{count:.0f} {unit}" if unit == "B" else f"{count:.1f} {unit}"
        count /= 1024
    raise AssertionError("unreachable")


def check_bytes(needed: int, path: str | os.PathLike[str] | None, what: str, *,
                error: type[SegstudioError] = UnreadableInputError) -> None:
    """Refuse *what* (e.g. ``"the image (100000 x 100000 pixels)"``) if it needs more than the limit.

    Raises
    ------
    UnreadableInputError
        (or *error*) naming *path*, the size and the limit.
    """
    limit, origin = _limit_and_origin()
    if needed > limit:
        raise error(
            f"{what} would need {format_bytes(needed)} of memory, more than the limit of "
            f"{format_bytes(limit)} ({origin}); not read",
            path=path,
        )


def check_pixels(shape: Iterable[int], itemsize: int, path: str | os.PathLike[str] | Path | None,
                 what: str = "the image", *, channels: int = 1,
                 working_bytes: int = WORKING_BYTES_PER_PIXEL) -> None:
    """Refuse an image or volume of *shape* (spatial dimensions) before decoding it.

    *itemsize* is the bytes per sample, *channels* the samples per pixel; the
    working copies (*working_bytes* a pixel, :data:`WORKING_BYTES_PER_PIXEL`
    unless told: a label map read beside its image needs fewer) are added.

    Raises
    ------
    UnreadableInputError
        A dimension is not positive, or the image would not fit.
    """
    dims = [int(d) for d in shape]
    text = " x ".join(str(d) for d in reversed(dims[-2:])) if len(dims) <= 2 else " x ".join(
        str(d) for d in dims)
    if any(d <= 0 for d in dims):
        raise UnreadableInputError(f"{what} declares a size of {text}, which is not a valid size", path=path)
    pixels = math.prod(dims)
    needed = pixels * (max(1, itemsize) * max(1, channels) + max(0, working_bytes))
    check_bytes(needed, path, f"{what} ({text}, {pixels:,} {'pixels' if len(dims) <= 2 else 'voxels'})")


def open_with_pillow(data: bytes, path: str | os.PathLike[str] | None = None):
    """Open image bytes with Pillow lazily (only the header is parsed), without Pillow's own size limit.

    Pillow refuses images above ``Image.MAX_IMAGE_PIXELS`` (and warns from
    half of that) by a fixed pixel count that knows nothing of the machine or
    of the bytes a pixel takes, with a message that does not name the file.
    The readers check :func:`check_pixels` on the returned image's ``size``
    and ``mode`` instead, before ``load()``. Setting ``MAX_IMAGE_PIXELS``
    would change it for the whole process, other threads included, so this
    walks Pillow's format registry as ``Image.open`` does, minus its check.
    (A few plugins, WebP among them, check again inside; their refusal is
    reported as our one line.)

    Returns
    -------
    PIL.Image.Image or None
        ``None`` when no Pillow format recognises the bytes.

    Raises
    ------
    UnreadableInputError
        A Pillow plugin refused the size itself.
    """
    import io
    import struct

    from PIL import Image

    filename = "" if path is None else os.fspath(path)
    prefix = data[:16]
    for register in (Image.preinit, Image.init):
        register()
        for name in list(Image.ID):
            factory, accept = Image.OPEN[name]
            accepted = accept(prefix) if accept else True
            if not accepted or isinstance(accepted, str):  # a string is Pillow's "nearly, but no"
                continue
            try:
                return factory(io.BytesIO(data), filename)
            except Image.DecompressionBombError:
                raise UnreadableInputError(
                    f"the {name} image declares more pixels than its reader opens "
                    f"({2 * (Image.MAX_IMAGE_PIXELS or 0):,}); not read",
                    path=path,
                ) from None
            except (SyntaxError, IndexError, TypeError, ValueError, EOFError, OSError, struct.error):
                continue
    return None
