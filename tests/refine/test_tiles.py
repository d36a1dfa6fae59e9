"""Overlapping CRF tiles: cores cover the region once, outer boxes add the margin within the image."""

from __future__ import annotations

import math

import numpy as np
import pytest

from segstudio.refine.tiles import plan_tiles, square_core


@pytest.mark.parametrize(("shape", "core", "margin"), [
    ((100, 130), (32, 32), (8, 8)),
    ((7, 50, 45), (3, 16, 16), (1, 5, 5)),
    ((10, 10), (64, 64), (20, 20)),  # one tile larger than the image
])
def test_cores_cover_the_image_once_and_outer_boxes_hold_the_margin(shape, core, margin) -> None:
    tiles = plan_tiles(shape, core, margin)
    covered = np.zeros(shape, np.int32)
    for tile in tiles:
        covered[tile.core_slices] += 1
        for (c0, c1), (o0, o1), m, n, step in zip(tile.core, tile.outer, margin, shape, core):
            assert 0 < c1 - c0 <= step
            assert o0 == max(0, c0 - m) and o1 == min(n, c1 + m)
        # the core sits where core_in_outer says inside the outer box's array
        outer = np.arange(math.prod(shape)).reshape(shape)[tile.outer_slices]
        np.testing.assert_array_equal(outer[tile.core_in_outer],
                                      np.arange(math.prod(shape)).reshape(shape)[tile.core_slices])
    assert (covered == 1).all()


def test_a_focus_anchors_the_grid_and_comes_first() -> None:
    tiles = plan_tiles((1000, 1000), (100, 100), (10, 10), focus=((455, 555), (610, 710)))
    assert tiles[0].core == ((455, 555), (610, 710))  # the view is one tile
    centres = [((a + b) / 2, (c + d) / 2) for (a, b), (c, d) in (t.core for t in tiles)]
    distances = [math.hypot(y - 505, x - 660) for y, x in centres]
    assert distances == sorted(distances)


def test_a_region_is_covered_and_nothing_outside() -> None:
    tiles = plan_tiles((300, 300), (64, 64), (16, 16), region=((50, 170), (200, 290)))
    covered = np.zeros((300, 300), np.int32)
    for tile in tiles:
        covered[tile.core_slices] += 1
    assert (covered[50:170, 200:290] == 1).all() and covered.sum() == 120 * 90


@pytest.mark.parametrize(("pixels", "margin", "shape"), [
    (1 << 20, (150, 150), (12000, 12000)),
    (64, (0, 0, 0), (10, 10, 10)),
    (3_000_000, (37, 37, 37), (300, 512, 512)),
])
def test_square_core_keeps_the_outer_box_within_the_budget(pixels, margin, shape) -> None:
    core = square_core(pixels, margin, shape)
    outer = [min(n, c + 2 * m) for c, m, n in zip(core, margin, shape)]
    assert math.prod(outer) <= pixels
    assert all(c >= 1 for c in core)
    if margin == (0, 0, 0):
        assert core == (4, 4, 4)  # 64 ** (1/3) is 3.999...: not rounded down to 3


def test_bad_plans_are_refused() -> None:
    with pytest.raises(ValueError, match="one entry per axis"):
        plan_tiles((10, 10), (4,), (1, 1))
    with pytest.raises(ValueError, match="must be >= 1"):
        plan_tiles((10, 10), (0, 4), (1, 1))
