"""Building a tiled image pyramid from a plain large image, once, in the background.

A plain PNG, JPEG or strip TIFF has to be read whole; a pyramidal OME-TIFF
made from it once can then be viewed, refined and annotated region by region
(:mod:`segstudio.io.slide`). Each level halves the one before with area
averaging (cv2's INTER_AREA), down to :data:`MIN_SIDE`; tiles are zlib
compressed (lossless). The file is written beside its final name and renamed
when complete, so a cancelled or failed build leaves nothing behind.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from segstudio.errors import ExportError, InvalidArgumentError
from segstudio.tasks import CancelToken, Progress, Task

TILE = 512
MIN_SIDE = 512


def image_levels(image: np.ndarray, min_side: int = MIN_SIDE) -> Iterator[np.ndarray]:
    """``image`` and its halvings (area averaging) until the longer side is at most ``min_side``."""
    import cv2

    level = image
    yield level
    while max(level.shape[:2]) > min_side:
        height, width = level.shape[:2]
        size = (max(1, (width + 1) // 2), max(1, (height + 1) // 2))
        level = cv2.resize(level, size, interpolation=cv2.INTER_AREA)
        yield level


def level_count(shape: tuple[int, ...], min_side: int = MIN_SIDE) -> int:
    height, width = shape[:2]
    count = 1
    while max(height, width) > min_side:
        height, width = max(1, (height + 1) // 2), max(1, (width + 1) // 2)
        count += 1
    return count


def build_pyramid_steps(
    image: np.ndarray,
    target: str | os.PathLike[str],
    *,
    microns_per_pixel: tuple[float, float] | None = None,
    cancel: CancelToken | None = None,
) -> Task[Path]:
    """Write ``image`` (``H x W`` grey or ``H x W x 3`` RGB; uint8 or uint16)
    as a pyramidal OME-TIFF at ``target``.

    Yields
    ------
    Progress
        ``Progress(level, levels, stage="pyramid")`` after each level.

    Returns
    -------
    Path
        ``target``.

    Raises
    ------
    InvalidArgumentError
        Another shape or type.
    ExportError
        The file cannot be written (named).
    TaskCancelled
        When ``cancel`` was cancelled (nothing is left on disk).
    """
    image = np.asarray(image)
    if image.ndim == 3 and image.shape[2] == 4:
        image = image[:, :, :3]
    if not (image.ndim == 2 or (image.ndim == 3 and image.shape[2] == 3)) or image.size == 0:
        raise InvalidArgumentError(f"a pyramid is built from an H x W or H x W x 3 image, got shape {image.shape}")
    if image.dtype not in (np.uint8, np.uint16):
        raise InvalidArgumentError(f"a pyramid is built from uint8 or uint16 pixels, got {image.dtype}")
    return (yield from write_levels_steps(image_levels(image), level_count(image.shape), target,
                                          microns_per_pixel=microns_per_pixel, cancel=cancel))


def write_levels_steps(
    levels,
    total: int,
    target: str | os.PathLike[str],
    *,
    microns_per_pixel: tuple[float, float] | None = None,
    cancel: CancelToken | None = None,
) -> Task[Path]:
    """Write ``levels`` (full resolution first, each one the next level down;
    ``total`` of them; an array, or an object with ``shape``, ``dtype`` and
    ``tiles``, an iterator of its TILE x TILE tiles in row order) as a tiled OME-TIFF with sub-resolution IFDs at
    ``target``, through a hidden file renamed when complete. Shared by image
    pyramids and label pyramids (:mod:`segstudio.io.slide_export`)."""
    import tifffile

    target = Path(target)
    partial = target.with_name(f".{target.name}.partial")
    done = False
    try:
        with tifffile.TiffWriter(partial, bigtiff=True, ome=True) as tif:
            for number, level in enumerate(levels):
                if cancel is not None:
                    cancel.raise_if_cancelled()
                tiled = hasattr(level, "tiles")  # a level given tile by tile (shape, dtype, tiles)
                if not tiled:
                    level = np.ascontiguousarray(level)
                colour = len(level.shape) == 3
                options = dict(tile=(TILE, TILE), compression="zlib", compressionargs={"level": 1},
                               photometric="rgb" if colour else "minisblack")
                if tiled:
                    options.update(shape=level.shape, dtype=level.dtype)
                    level_data = level.tiles
                else:
                    level_data = level
                if number == 0:
                    metadata: dict = {"axes": "YXS" if colour else "YX"}
                    if microns_per_pixel is not None:
                        metadata.update(PhysicalSizeY=float(microns_per_pixel[0]),
                                        PhysicalSizeX=float(microns_per_pixel[1]))
                    tif.write(level_data, subifds=total - 1, metadata=metadata, **options)
                else:
                    tif.write(level_data, subfiletype=1, metadata=None, **options)
                yield Progress(number + 1, total, message=f"level {number + 1}/{total}: "
                               f"{level.shape[1]} x {level.shape[0]}", stage="pyramid")
        os.replace(partial, target)
        done = True
    except OSError as error:
        raise ExportError(f"cannot write the pyramid: {error}", path=target) from error
    finally:
        if not done:
            partial.unlink(missing_ok=True)
    return target


def build_pyramid_from_slide_steps(
    slide,
    target: str | os.PathLike[str],
    *,
    cancel: CancelToken | None = None,
) -> Task[Path]:
    """The pyramid of a large one-level TIFF (tiled or in strips) read band by band, never whole.

    ``slide``: the :class:`~segstudio.io.slide.Slide` of the TIFF. Level 0 is
    copied 512 rows at a time; each coarser level halves the one before in 2 x 2
    blocks (an odd last row or column counts twice), kept in a temporary file
    beside ``target`` until the next level has read it, so memory follows a band
    of rows, not the image. Writes and cancels as :func:`build_pyramid_steps`.
    """
    import tempfile

    height, width = slide.shape
    shapes = [(height, width)]
    while max(shapes[-1]) > MIN_SIDE:
        shapes.append((max(1, (shapes[-1][0] + 1) // 2), max(1, (shapes[-1][1] + 1) // 2)))
    channels = () if slide.channels == 1 else (slide.channels,)
    dtype = np.dtype(slide.dtype)
    if dtype not in (np.uint8, np.uint16) or slide.channels not in (1, 3):
        raise InvalidArgumentError(f"a pyramid is built from grey or RGB uint8/uint16 pixels, got "
                                   f"{slide.channels} channel(s) of {dtype}", path=slide.path)
    with tempfile.TemporaryDirectory(prefix=".pyramid-", dir=Path(target).parent) as scratch:
        kept = {k: np.lib.format.open_memmap(Path(scratch) / f"{k}.npy", "w+", dtype, (*shapes[k], *channels))
                for k in range(1, len(shapes) - 1)}  # read back by the next level

        def rows(level: int, start: int, stop: int) -> np.ndarray:
            if level == 0:
                band = slide.read_region(0, ((start, stop), (0, width)))
                return band.reshape(*band.shape[:2], *channels)
            return kept[level][start:stop]

        def tiles(level: int):
            level_h, level_w = shapes[level]
            for top in range(0, level_h, TILE):
                if cancel is not None:
                    cancel.raise_if_cancelled()
                bottom = min(level_h, top + TILE)
                if level == 0:
                    band = rows(0, top, bottom)
                else:
                    source = rows(level - 1, 2 * top, min(shapes[level - 1][0], 2 * bottom))
                    band = _halve(source, bottom - top, level_w)
                    if level in kept:
                        kept[level][top:bottom] = band
                for left in range(0, level_w, TILE):
                    tile = np.zeros((TILE, TILE, *channels), dtype)
                    piece = band[:, left: left + TILE]
                    tile[: piece.shape[0], : piece.shape[1]] = piece
                    yield tile

        levels = [_TiledLevel(tiles(k), (*shapes[k], *channels), dtype) for k in range(len(shapes))]
        result = yield from write_levels_steps(levels, len(shapes), target, microns_per_pixel=slide.microns_per_pixel,
                                               cancel=cancel)
        kept.clear()  # the maps are released before the scratch folder goes
    return result


def _halve(source: np.ndarray, height: int, width: int, block: int = 4096) -> np.ndarray:
    """2 x 2 block means of ``source`` into ``height`` x ``width``, column block by column block
    (an odd last row or column is repeated)."""
    out = np.empty((height, width, *source.shape[2:]), source.dtype)
    for left in range(0, width, block):
        right = min(width, left + block)
        part = source[:, 2 * left: 2 * right].astype(np.float32)
        pad_rows, pad_columns = 2 * height - part.shape[0], 2 * (right - left) - part.shape[1]
        if pad_rows or pad_columns:
            widths = [(0, pad_rows), (0, pad_columns)] + [(0, 0)] * (part.ndim - 2)
            part = np.pad(part, widths, mode="edge")
        means = part.reshape(height, 2, right - left, 2, *part.shape[2:]).mean(axis=(1, 3))
        out[:, left:right] = np.rint(means).astype(source.dtype)
    return out


class _TiledLevel:
    """A level given as its tiles in row order: what :func:`write_levels_steps` writes."""

    def __init__(self, tiles, shape, dtype) -> None:
        self.tiles, self.shape, self.dtype = tiles, tuple(shape), np.dtype(dtype)


def build_pyramid_from_file_steps(
    source: str | os.PathLike[str],
    target: str | os.PathLike[str],
    *,
    cancel: CancelToken | None = None,
) -> Task[Path]:
    """The pyramid of an image file: a TIFF the slide reader opens (tiled, or in strips) band by
    band (:func:`build_pyramid_from_slide_steps`), any other image read whole first."""
    from segstudio.errors import UnreadableInputError
    from segstudio.io.images import read_image
    from segstudio.io.slide import Slide

    source = Path(source)
    slide = None
    if source.suffix.lower() in (".tif", ".tiff"):
        try:
            slide = Slide(source, backend="tifffile")
        except UnreadableInputError:
            slide = None  # a TIFF the slide reader refuses (one big strip, a stack): read whole
    if slide is not None:
        with slide:
            if len(slide.levels) == 1 and slide.channels in (1, 3) and slide.dtype in (np.uint8, np.uint16):
                return (yield from build_pyramid_from_slide_steps(slide, target, cancel=cancel))
    yield Progress(0, None, message=f"reading {source.name}", stage="read")
    image = read_image(source)
    if cancel is not None:
        cancel.raise_if_cancelled()
    return (yield from build_pyramid_steps(image, target, cancel=cancel))
