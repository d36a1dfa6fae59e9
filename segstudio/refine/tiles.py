"""Overlapping tiles for the dense CRF, so its memory follows the tile, not the image.

The fully connected CRF couples every pixel with every other, but its
kernels fall off with distance: the bilateral kernel's weight at two
standard deviations is e^-2, at three e^-4.5. A tile refined with a margin
of three bilateral widths around it (where the kernel has fallen to e^-4.5
and a 2-D Gaussian keeps 1 % of its mass outside) therefore gives its core
nearly the labels the whole image would (measured in ``tests/refine/test_crf.py``);
only the core is kept. Boxes are N-dimensional (rows and columns of an
image, or slices, rows and columns of a volume).
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass

#: A box as one ``(start, stop)`` pair per axis.
Box = tuple[tuple[int, int], ...]


@dataclass(frozen=True)
class Tile:
    """One piece of the work: the ``core`` whose result is kept, inside the
    ``outer`` box that is refined (the core grown by the margin, clipped to
    the image)."""

    core: Box
    outer: Box

    @property
    def core_slices(self) -> tuple[slice, ...]:
        return tuple(slice(a, b) for a, b in self.core)

    @property
    def outer_slices(self) -> tuple[slice, ...]:
        return tuple(slice(a, b) for a, b in self.outer)

    @property
    def core_in_outer(self) -> tuple[slice, ...]:
        """Where the core lies inside the outer box's own array."""
        return tuple(slice(c0 - o0, c1 - o0) for (c0, c1), (o0, _) in zip(self.core, self.outer))


def box_size(box: Box) -> int:
    return math.prod(b - a for a, b in box)


def plan_tiles(
    shape: tuple[int, ...],
    core: tuple[int, ...],
    margin: tuple[int, ...],
    *,
    region: Box | None = None,
    focus: Box | None = None,
) -> list[Tile]:
    """Cover ``region`` (default: the whole ``shape``) with cores of at most
    ``core`` per axis, each grown by ``margin`` per axis.

    The grid is anchored on ``focus`` (a box, e.g. the part of the image on
    screen) when given, so the focus is covered by as few tiles as possible,
    and the tiles are ordered nearest to the focus's centre first (without
    a focus: row by row).
    """
    ndim = len(shape)
    if not (len(core) == len(margin) == ndim):
        raise ValueError(f"core {core} and margin {margin} must have one entry per axis of {shape}")
    if any(int(c) < 1 for c in core) or any(int(m) < 0 for m in margin):
        raise ValueError(f"tile cores must be >= 1 and margins >= 0, got {core} and {margin}")
    region = tuple((0, int(s)) for s in shape) if region is None else _clip(region, shape)
    if box_size(region) == 0:
        return []
    anchor = region if focus is None else _clip(focus, shape)
    if box_size(anchor) == 0:
        anchor = region
    starts_per_axis = []
    for (r0, r1), (a0, _), step in zip(region, anchor, core):
        step = int(step)
        first = a0 - step * math.ceil((a0 - r0) / step)  # the grid through the anchor, reaching r0
        starts_per_axis.append([s for s in range(first, r1, step) if s + step > r0])
    tiles = []
    for starts in itertools.product(*starts_per_axis):
        core_box = tuple((max(s, r0), min(s + int(c), r1)) for s, (r0, r1), c in zip(starts, region, core))
        outer_box = tuple(
            (max(0, a - int(m)), min(int(n), b + int(m))) for (a, b), m, n in zip(core_box, margin, shape)
        )
        tiles.append(Tile(core_box, outer_box))
    if focus is not None:
        centre = [(a + b) / 2 for a, b in anchor]
        tiles.sort(key=lambda t: sum(((a + b) / 2 - c) ** 2 for (a, b), c in zip(t.core, centre)))
    return tiles


def square_core(pixels: int, margin: tuple[int, ...], shape: tuple[int, ...]) -> tuple[int, ...]:
    """The largest cubic core whose outer box (core + 2 margins, per axis,
    no larger than the image) holds at most ``pixels`` elements; at least
    one element per axis, and never more than the image."""
    ndim = len(shape)
    side = max(1, int(pixels ** (1.0 / ndim) + 1e-9))  # 64 ** (1/3) is 3.9999...
    for _ in range(64):  # shrink until the clipped outer box fits
        outer = [min(n, side + 2 * m) for n, m in zip(shape, margin)]
        if math.prod(outer) <= pixels or side == 1:
            break
        side = max(1, int(side * 0.95))
    return tuple(min(int(n), side) for n in shape)


def _clip(box: Box, shape: tuple[int, ...]) -> Box:
    if len(box) != len(shape):
        raise ValueError(f"box {box} must have one (start, stop) per axis of {shape}")
    return tuple((max(0, min(int(a), n)), max(0, min(int(b), n))) for (a, b), n in zip(box, shape))
