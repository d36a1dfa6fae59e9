"""Regions of a label map and banded lookups over it.

Regions are tuples of plain slices, one per axis of the label map: (rows,
columns) for an image, (slices, rows, columns) for a volume, so one history
covers every slice of a volume. The lookups run through a map in bands of
rows so that their temporary copies stay small on very large images.
"""

from __future__ import annotations

import numpy as np

from segstudio.errors import InvalidArgumentError

Region = tuple[slice, ...]

_REMAP_BAND_PIXELS = 1 << 22


def full_region(shape: tuple[int, ...]) -> Region:
    return tuple(slice(0, n) for n in shape)


def normalise_region(region: Region, shape: tuple[int, ...]) -> Region:
    """Turn a region into plain ``slice(start, stop)`` items within the labels."""
    if (
        not isinstance(region, tuple)
        or len(region) != len(shape)
        or not all(isinstance(s, slice) for s in region)
    ):
        raise InvalidArgumentError(f"a region must be a tuple of {len(shape)} slices, got {region!r}")
    parts = []
    for axis, item in enumerate(region):
        start, stop, step = item.indices(shape[axis])
        if step != 1:
            raise InvalidArgumentError(f"a region's slices must have step 1, got {item!r}")
        parts.append(slice(start, max(start, stop)))
    return tuple(parts)


def region_shape(region: Region) -> tuple[int, ...]:
    return tuple(s.stop - s.start for s in region)


def union(a: Region | None, b: Region) -> Region:
    if a is None:
        return b
    return tuple(slice(min(x.start, y.start), max(x.stop, y.stop)) for x, y in zip(a, b, strict=True))


def local(region: Region, within: Region) -> Region:
    """``region`` in the coordinates of the box ``within``."""
    return tuple(slice(r.start - w.start, r.stop - w.start) for r, w in zip(region, within, strict=True))



def remap_in_place(labels: np.ndarray, table: np.ndarray) -> None:
    band = max(1, _REMAP_BAND_PIXELS // max(1, int(np.prod(labels.shape[1:]))))
    for top in range(0, labels.shape[0], band):
        rows = labels[top : top + band]
        rows[...] = table[rows]


def remapped_copy(labels: np.ndarray, table: np.ndarray) -> np.ndarray:
    """``table[labels]`` in bands, into a new array of the table's type."""
    out = np.empty(labels.shape, table.dtype)
    band = max(1, _REMAP_BAND_PIXELS // max(1, int(np.prod(labels.shape[1:]))))
    for top in range(0, labels.shape[0], band):
        out[top : top + band] = table[labels[top : top + band]]
    return out
