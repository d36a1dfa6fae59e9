"""Sliding-window tiles and the weights that blend their seams away."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Tile:
    """A window ``[y0:y1, x0:x1]`` of the image."""

    y0: int
    y1: int
    x0: int
    x1: int

    @property
    def slices(self) -> tuple[slice, slice]:
        return slice(self.y0, self.y1), slice(self.x0, self.x1)


def _starts(length: int, tile: int, overlap: int, align: int) -> list[int]:
    """Window starts covering ``length`` with at least ``overlap`` shared
    pixels. Starts are multiples of ``align`` so that every tile sees the
    pooling grid the whole image would (a network with stride-2 pools is
    only shift-equivariant for shifts that are multiples of its total
    stride); the last window may be shorter than ``tile``."""
    if length <= tile:
        return [0]
    step = max(align, (tile - overlap) // align * align)
    starts = [0]
    while starts[-1] + tile < length:
        starts.append(starts[-1] + step)
    return starts


def plan_tiles(height: int, width: int, tile: int, overlap: int, align: int = 1) -> list[list[Tile]]:
    """Rows of tiles covering an image, in row-major order."""
    if tile < 16:
        raise ValueError(f"tile size {tile} is too small")
    overlap = min(overlap, tile // 2)
    align = max(1, min(align, tile - overlap))
    rows = []
    for y in _starts(height, tile, overlap, align):
        rows.append(
            [Tile(y, min(y + tile, height), x, min(x + tile, width)) for x in _starts(width, tile, overlap, align)]
        )
    return rows


def blend_window(height: int, width: int, overlap: int, *, top: bool, bottom: bool, left: bool, right: bool) -> np.ndarray:
    """Per-pixel weights of one tile.

    Along an edge shared with a neighbour the weight is ~0 for the outer
    quarter of the overlap (there the network sees the tile's artificial
    border instead of the real context), rises as a raised cosine over the
    middle half and is 1 beyond; up to the image border (where no other tile
    helps) it is 1. Neighbouring ramps cross smoothly, so seams do not show,
    and the small floor keeps every weight positive.
    """

    def profile(length: int, ramp_start: bool, ramp_end: bool) -> np.ndarray:
        weights = np.ones(length, dtype=np.float32)
        span = min(overlap, length // 2)
        margin = span // 4
        ramp = span - 2 * margin
        edge = np.zeros(span, dtype=np.float32)
        if ramp > 0:
            phase = (np.arange(ramp, dtype=np.float32) + 0.5) / ramp
            edge[margin : margin + ramp] = 0.5 - 0.5 * np.cos(np.pi * phase)
        edge[margin + ramp :] = 1.0
        if span > 0:
            if ramp_start:
                weights[:span] = edge
            if ramp_end:
                weights[length - span :] = edge[::-1]
        return np.maximum(weights, 1e-4)

    return np.outer(profile(height, top, bottom), profile(width, left, right))
