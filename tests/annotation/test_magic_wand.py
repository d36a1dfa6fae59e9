"""The magic wand: the connected pixels within a tolerance of the seed's intensity.

Exact pixel sets on small hand-made images, and agreement with a plain
breadth-first reference on random ones (all dtypes, channel counts and both
connectivities).
"""

from collections import deque

import numpy as np
import pytest

from segstudio.annotation.tools import default_tolerance, intensity_range, magic_wand
from segstudio.errors import InvalidArgumentError


def _paint(shape, result):
    out = np.zeros(shape[:2], bool)
    region, mask = result
    out[region] |= mask
    return out


def _reference(image, seed, tolerance, connectivity=4):
    """Breadth-first fill, straight from the definition, in float64."""
    image = np.asarray(image, np.float64)
    planes = image[..., None] if image.ndim == 2 else image
    height, width = planes.shape[:2]
    seed_value = planes[seed]
    close = np.all(np.abs(planes - seed_value) <= tolerance, axis=2)  # NaN: False
    out = np.zeros((height, width), bool)
    if not close[seed]:
        return out
    steps = [(-1, 0), (1, 0), (0, -1), (0, 1)]
    if connectivity == 8:
        steps += [(-1, -1), (-1, 1), (1, -1), (1, 1)]
    out[seed] = True
    queue = deque([seed])
    while queue:
        y, x = queue.popleft()
        for dy, dx in steps:
            ny, nx = y + dy, x + dx
            if 0 <= ny < height and 0 <= nx < width and close[ny, nx] and not out[ny, nx]:
                out[ny, nx] = True
                queue.append((ny, nx))
    return out


def _noisy_square():
    """A 200 +- 10 square (rows 10..24, cols 20..39) on a 20 +- 10 background."""
    rng = np.random.default_rng(1)
    image = rng.integers(10, 31, (40, 60)).astype(np.uint8)
    image[10:25, 20:40] = rng.integers(190, 211, (15, 20))
    image[17, 30] = 200  # the seed
    return image


def test_selects_exactly_the_bright_square_and_its_bounding_box():
    image = _noisy_square()
    region, mask = magic_wand(image, (17, 30), 10)
    assert region == (slice(10, 25), slice(20, 40))
    assert mask.shape == (15, 20) and mask.dtype == bool and mask.all()
    # fractional positions mean the pixel that holds them
    assert magic_wand(image, (17.9, 30.2), 10)[0] == region
    # a tolerance that reaches the background takes the whole image
    assert _paint(image.shape, magic_wand(image, (17, 30), 190)).all()
    # a narrower one keeps the square's pixels within 4 of 200 that join the seed
    got = _paint(image.shape, magic_wand(image, (17, 30), 4))
    assert got[17, 30] and 1 < got.sum() < 15 * 20
    assert (np.abs(image[got].astype(int) - 200) <= 4).all()
    assert np.array_equal(got, _reference(image, (17, 30), 4))


def test_compares_with_the_seed_not_with_the_neighbours():
    ramp = np.tile(np.arange(100, dtype=np.uint8), (5, 1))  # +1 per column
    region, mask = magic_wand(ramp, (2, 50), 5)
    assert region == (slice(0, 5), slice(45, 56)) and mask.all()


def test_tolerance_zero_takes_the_constant_region_only():
    image = np.full((10, 12), 7, np.uint16)
    image[:, 5] = 8  # a wall of 8 splits two regions of 7
    image[2, 2] = 6
    got = _paint(image.shape, magic_wand(image, (4, 1), 0))
    expected = np.zeros(image.shape, bool)
    expected[:, :5] = True
    expected[2, 2] = False
    assert np.array_equal(got, expected)
    # 1 takes the wall, the far side and the 6 as well
    assert _paint(image.shape, magic_wand(image, (4, 1), 1)).all()
    # fractional tolerances on integers: 0.9 is 0
    assert np.array_equal(_paint(image.shape, magic_wand(image, (4, 1), 0.9)), expected)


def test_rgb_needs_every_channel_within_the_tolerance():
    image = np.zeros((6, 9, 3), np.uint8)
    image[:, :3] = (100, 50, 10)
    image[:, 3:6] = (100, 50, 31)  # blue 21 away
    image[:, 6:] = (104, 46, 14)  # every channel 4 away
    assert _paint(image.shape, magic_wand(image, (0, 0), 3))[:, :3].all()
    assert _paint(image.shape, magic_wand(image, (0, 0), 3)).sum() == 18
    # 20 reaches columns 6.. only through columns 3..5, which are 21 away in blue
    assert _paint(image.shape, magic_wand(image, (0, 0), 20)).sum() == 18
    assert _paint(image.shape, magic_wand(image, (0, 0), 21)).all()
    # from the right-hand block, 4 takes the left block's colour but it is not connected
    assert _paint(image.shape, magic_wand(image, (0, 8), 4)).sum() == 18


def test_uint16_bounds_do_not_wrap_around():
    image = np.array([[65535, 65530, 65520, 65519, 0, 3, 13, 14]], np.uint16)
    got = _paint(image.shape, magic_wand(image, (0, 1), 10))
    assert got.tolist() == [[True, True, True, False, False, False, False, False]]
    got = _paint(image.shape, magic_wand(image, (0, 5), 10))
    assert got.tolist() == [[False, False, False, False, True, True, True, False]]
    # a huge tolerance takes all
    assert _paint(image.shape, magic_wand(image, (0, 0), 1e30)).all()


def test_signed_values_and_nan_pixels_never_belong():
    ct = np.full((8, 8), -1000.0, np.float32)  # air, in Hounsfield units
    ct[3, :] = 40.0  # a soft-tissue band across the middle
    ct[1, 1] = np.nan
    ct[6, 6] = -1049.5
    ct[6, 2] = -1050.5
    got = _paint(ct.shape, magic_wand(ct, (0, 0), 50))
    expected = np.zeros(ct.shape, bool)
    expected[:3] = True
    expected[1, 1] = False  # NaN, even with a huge tolerance below
    assert np.array_equal(got, expected)
    assert not _paint(ct.shape, magic_wand(ct, (0, 0), 1e9))[1, 1]
    got = _paint(ct.shape, magic_wand(ct, (7, 0), 50))
    assert got[6, 6] and not got[6, 2] and got[4:].sum() == 4 * 8 - 1
    assert magic_wand(ct, (1, 1), 1e9) is None  # a NaN seed selects nothing
    # int16 CT the same
    hu = np.array([[-1000, -950, -949, -1050, -1051, 0]], np.int16)
    assert _paint(hu.shape, magic_wand(hu, (0, 0), 50)).tolist() == [[True, True, False, False, False, False]]
    hu = hu[:, ::-1]  # a view with negative strides (a flipped volume plane)
    assert _paint(hu.shape, magic_wand(hu, (0, 5), 50)).tolist() == [[False, False, False, False, True, True]]


def test_float32_boundary_is_judged_as_the_definition_says():
    # float32(0.1) is 0.10000000149 > 0.1: just outside a tolerance of 0.1
    below = np.nextafter(np.float32(0.1), np.float32(0))
    image = np.array([[0.0, below, 0.0, np.float32(0.1), 0.0]], np.float32)
    got = _paint(image.shape, magic_wand(image, (0, 0), 0.1))
    assert got.tolist() == [[True, True, True, False, False]]
    # infinite pixels are never within a finite tolerance; an infinite seed selects nothing
    image = np.array([[0.0, 1e38, np.inf, -np.inf]], np.float32)
    assert _paint(image.shape, magic_wand(image, (0, 1), 1e38)).tolist() == [[True, True, False, False]]
    assert _paint(image.shape, magic_wand(image, (0, 1), 3e38)).tolist() == [[True, True, False, False]]
    assert magic_wand(image, (0, 2), 1e38) is None


def test_connectivity_4_and_8_on_a_diagonal():
    image = np.zeros((5, 5), np.uint8)
    np.fill_diagonal(image, 9)
    region, mask = magic_wand(image, (2, 2), 0)
    assert region == (slice(2, 3), slice(2, 3)) and mask.tolist() == [[True]]
    region, mask = magic_wand(image, (2, 2), 0, connectivity=8)
    assert region == (slice(0, 5), slice(0, 5)) and np.array_equal(mask, np.eye(5, dtype=bool))
    # the background's two triangles touch corner to corner: 8 joins them, 4 does not
    assert _paint(image.shape, magic_wand(image, (0, 4), 0)).sum() == 10
    assert _paint(image.shape, magic_wand(image, (0, 4), 0, connectivity=8)).sum() == 20


def test_seed_outside_the_image_gives_none():
    image = _noisy_square()
    for seed in [(-1, 5), (5, -0.5), (40, 5), (5, 60), (1e9, 0)]:
        assert magic_wand(image, seed, 10) is None


@pytest.mark.parametrize("tolerance", [-1, -1e-9, float("nan"), float("inf"), "wide", None])
def test_bad_tolerance_is_refused(tolerance):
    with pytest.raises(InvalidArgumentError):
        magic_wand(_noisy_square(), (17, 30), tolerance)


def test_bad_images_and_connectivity_are_refused():
    with pytest.raises(InvalidArgumentError):
        magic_wand(np.zeros(5), (0, 0), 1)
    with pytest.raises(InvalidArgumentError):
        magic_wand(np.zeros((2, 3, 4, 5)), (0, 0), 1)
    with pytest.raises(InvalidArgumentError):
        magic_wand(np.zeros((3, 3), np.complex64), (0, 0), 1)
    with pytest.raises(InvalidArgumentError):
        magic_wand(np.zeros((3, 3)), (0, 0), 1, connectivity=6)


@pytest.mark.parametrize(
    "dtype, channels",
    [(np.uint8, 1), (np.uint8, 3), (np.int8, 1), (np.uint16, 1), (np.int16, 2), (np.int32, 4),
     (np.uint32, 1), (np.int64, 1), (np.float16, 1), (np.float32, 3), (np.float64, 1), (np.uint8, 5),
     (bool, 1)],
)
@pytest.mark.parametrize("connectivity", [4, 8])
def test_agrees_with_a_breadth_first_reference(dtype, channels, connectivity):
    rng = np.random.default_rng(channels * 10 + connectivity)
    shape = (24, 31) if channels == 1 else (24, 31, channels)
    image = rng.integers(0, 6, shape).astype(dtype)  # few levels: regions of every size
    if np.dtype(dtype).kind == "f":
        image[rng.random(shape[:2]) < 0.05] = np.nan
    for _ in range(6):
        seed = (int(rng.integers(0, 24)), int(rng.integers(0, 31)))
        tolerance = float(rng.choice([0, 1, 1.5, 2]))
        expected = _reference(image, seed, tolerance, connectivity)
        found = magic_wand(image, seed, tolerance, connectivity=connectivity)
        if not expected.any():
            assert found is None
            continue
        got = _paint(shape, found)
        assert np.array_equal(got, expected), (seed, tolerance)
        ys, xs = np.nonzero(expected)
        assert found[0] == (slice(ys.min(), ys.max() + 1), slice(xs.min(), xs.max() + 1))


def test_a_large_uint16_image_gives_its_whole_region():
    """(Its speed is measured in benchmarks/bench_tools.py: tests do not time.)"""
    rng = np.random.default_rng(0)
    image = rng.integers(0, 4000, (4096, 4096), dtype=np.uint16)
    image[1000:3000, 500:3500] = rng.integers(30000, 30100, (2000, 3000), dtype=np.uint16)
    region, mask = magic_wand(image, (2000, 2000), 100)
    assert region == (slice(1000, 3000), slice(500, 3500)) and mask.all()


def test_default_tolerance_is_a_tenth_of_the_intensity_range():
    assert intensity_range(np.zeros((3, 3), np.uint8)) == 255 and default_tolerance(np.zeros((3, 3), np.uint8)) == 25
    twelve_bit = np.array([[0, 4095]], np.uint16)
    assert intensity_range(twelve_bit) == 4095 and default_tolerance(twelve_bit) == 400
    ct = np.array([[-1024, 3071]], np.int16)
    assert default_tolerance(ct) == 400
    unit = np.array([[0.0, 1.0, np.nan, np.inf]], np.float32)
    assert intensity_range(unit) == 1.0 and default_tolerance(unit) == pytest.approx(0.1)
    assert default_tolerance(np.array([[0.0, 3.0]])) == pytest.approx(0.3)
    assert default_tolerance(np.full((2, 2), 5, np.uint16)) == 0
    assert default_tolerance(np.full((2, 2), np.nan)) == 0
