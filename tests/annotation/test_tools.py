"""The painting tools: exact pixels of dabs, strokes, fills and polygons.

Positions are canvas coordinates: pixel (row, col) is the unit square at
(row, col), its centre at (row + 0.5, col + 0.5).
"""

import time

import numpy as np
import pytest

from segstudio.annotation.tools import disk, flood_fill, polygon, stroke_segment
from segstudio.errors import InvalidArgumentError


def _paint(shape, result):
    canvas = np.zeros(shape, bool)
    region, mask = result
    canvas[region] |= mask
    return canvas


def _centres(shape):
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    return yy + 0.5, xx + 0.5


def test_disk_sets_exactly_the_pixels_within_the_radius():
    shape = (30, 40)
    cy, cx = _centres(shape)
    # Centred on a pixel corner: a round 6 x 6 block without its corners.
    got = _paint(shape, disk(10, 10, 3, shape))
    expected = (cy - 10) ** 2 + (cx - 10) ** 2 <= 9
    assert np.array_equal(got, expected) and got.sum() == 32
    # Centred on pixel (10, 10): the 29 pixels with dy^2 + dx^2 <= 9.
    got = _paint(shape, disk(10.5, 10.5, 3, shape))
    expected = (cy - 10.5) ** 2 + (cx - 10.5) ** 2 <= 9
    assert np.array_equal(got, expected) and got.sum() == 29
    region, mask = disk(10.5, 10.5, 3, shape)
    assert region == (slice(7, 14), slice(7, 14)) and mask.shape == (7, 7)
    # An off-grid centre.
    got = _paint(shape, disk(12.3, 20.8, 4.2, shape))
    assert np.array_equal(got, (cy - 12.3) ** 2 + (cx - 20.8) ** 2 <= 4.2**2)


def test_half_pixel_radius_paints_one_pixel_and_tiny_brush_never_paints_nothing():
    shape = (5, 5)
    assert np.argwhere(_paint(shape, disk(2.5, 3.5, 0.5, shape))).tolist() == [[2, 3]]
    # Off-centre with a radius too small to reach any centre: the pixel under the point.
    assert np.argwhere(_paint(shape, disk(1.9, 1.1, 0.1, shape))).tolist() == [[1, 1]]


def test_disk_is_clipped_to_the_image_and_none_outside():
    shape = (20, 20)
    region, mask = disk(0.5, 0.5, 3, shape)
    assert region == (slice(0, 4), slice(0, 4))
    assert mask.sum() == 11  # the r = 3 disk's points with y, x >= 0
    assert disk(-10, -10, 3, shape) is None
    assert disk(5, 25, 3, shape) is None


def test_fast_stroke_leaves_no_gap():
    shape = (50, 200)
    got = _paint(shape, stroke_segment((25.5, 10.5), (25.5, 190.5), 2, shape))
    # Every column along the way is covered on the stroke's centre line.
    assert got[25, 10:191].all()
    assert got[23:28, 10:191].all() and not got[22, 100] and not got[28, 100]
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    expected = ((yy - 25) ** 2 <= 4) & (xx >= 10) & (xx <= 190)
    expected |= (yy - 25) ** 2 + (xx - 10) ** 2 <= 4
    expected |= (yy - 25) ** 2 + (xx - 190) ** 2 <= 4
    assert np.array_equal(got, expected)


def test_thin_diagonal_stroke_is_connected():
    from scipy import ndimage

    shape = (100, 100)
    got = _paint(shape, stroke_segment((3.2, 5.7), (90.4, 41.1), 0.5, shape))
    _, count = ndimage.label(got, structure=np.ones((3, 3)))
    assert count == 1
    assert got[3, 5] and got[90, 41]


def test_bad_radius_is_refused():
    with pytest.raises(InvalidArgumentError):
        disk(1, 1, 0, (5, 5))
    with pytest.raises(InvalidArgumentError):
        disk(1, 1, float("nan"), (5, 5))


def test_flood_fill_respects_holes_and_connectivity():
    labels = np.zeros((20, 20), np.uint8)
    labels[5:15, 5:15] = 1
    labels[8:12, 8:12] = 0  # a hole of another label inside the square
    region, mask = flood_fill(labels, (6.7, 6.2))  # inside pixel (6, 6)
    assert region == (slice(5, 15), slice(5, 15))
    expected = labels[region] == 1
    assert np.array_equal(mask, expected) and mask.sum() == 100 - 16
    # The hole is its own region, not connected to the outside background.
    region, mask = flood_fill(labels, (9, 9))
    assert region == (slice(8, 12), slice(8, 12)) and mask.all()
    # Two pixels touching at a corner: separate for 4-connectivity, joined for 8.
    diag = np.zeros((4, 4), np.uint8)
    diag[1, 1] = diag[2, 2] = 7
    assert flood_fill(diag, (1, 1))[1].sum() == 1
    assert flood_fill(diag, (1, 1), connectivity=8)[1].sum() == 2
    assert flood_fill(labels, (25, 3)) is None


def test_flood_fill_non_uint8_takes_the_same_answer():
    labels = np.zeros((20, 20), np.uint8)
    labels[5:15, 5:15] = 1
    labels[8:12, 8:12] = 0
    fast = flood_fill(labels, (6, 6))
    wide = flood_fill(labels.astype(np.int32), (6, 6))
    assert fast[0] == wide[0] and np.array_equal(fast[1], wide[1])
    # a uint16 map whose classes differ only above the low byte (256 vs 512)
    deep = labels.astype(np.uint16) * 256 + 256
    deep[0, :] = 512
    region, mask = flood_fill(deep, (6, 6))  # the ring of 512 around the hole of 256
    assert region == (slice(5, 15), slice(5, 15)) and mask.sum() == 100 - 16
    region, mask = flood_fill(deep, (0, 3))  # row 0 (512) does not touch the ring
    assert region == (slice(0, 1), slice(0, 20)) and mask.all()


def test_flood_fill_of_a_large_region_is_fast():
    labels = np.zeros((4096, 4096), np.uint8)
    labels[100:4000, 100:4000] = 3
    flood_fill(labels, (2000, 2000))  # warm-up (imports OpenCV)
    start = time.perf_counter()
    region, mask = flood_fill(labels, (2000, 2000))
    elapsed = time.perf_counter() - start
    assert mask.sum() == 3900 * 3900
    assert elapsed < 0.5  # ~0.011 s measured; generous for slow CI machines


def test_polygon_triangle_pixel_count_is_its_area():
    shape = (100, 100)
    points = [(10, 10), (10, 70), (70, 10)]  # right triangle, legs 60: area 1800
    region, mask = polygon(points, shape)
    assert abs(int(mask.sum()) - 1800) <= 60
    canvas = _paint(shape, (region, mask))
    assert canvas[20, 20] and not canvas[60, 60] and not canvas[5, 5]
    # (y, x) order: a tall thin triangle is tall, not wide.
    region, mask = polygon([(0, 0), (90, 0), (90, 10)], shape)
    assert mask.shape[0] > 80 and mask.shape[1] <= 11


def test_polygon_square_exact_and_clipped():
    shape = (50, 50)
    region, mask = polygon([(10, 10), (10, 20), (20, 20), (20, 10)], shape)
    assert region == (slice(10, 20), slice(10, 20)) and mask.all()
    region, mask = polygon([(-10, -10), (-10, 10), (10, 10), (10, -10)], shape)
    assert region == (slice(0, 10), slice(0, 10)) and mask.all()
    assert polygon([(1, 1), (2, 2)], shape) is None
    assert polygon([(-5, -5), (-5, -1), (-1, -1)], shape) is None


def test_only_unlabelled_narrows_a_footprint_to_unlabelled_pixels():
    from segstudio.annotation.tools import only_unlabelled

    labels = np.full((10, 10), 255, np.uint8)
    labels[4:6, :] = 1
    found = disk(5, 5, 3, labels.shape)
    region, mask = only_unlabelled(found, labels, 255)
    assert region == found[0]
    assert not (mask & (labels[region] != 255)).any()
    assert np.array_equal(mask, found[1] & (labels[region] == 255))
    assert only_unlabelled(None, labels, 255) is None
    assert only_unlabelled(((slice(4, 6), slice(0, 3)), np.ones((2, 3), bool)), labels, 255) is None
