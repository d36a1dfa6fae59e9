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
