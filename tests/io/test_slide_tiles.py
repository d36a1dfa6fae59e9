"""Display tiles of a slide and of its label maps: the pixels a viewer draws, read tile by tile."""

from __future__ import annotations

import numpy as np
import pytest

from segstudio.io.pyramid import build_pyramid_steps
from segstudio.io.slide import Slide
from segstudio.io.slide_tiles import (
    TileCache,
    TileKey,
    display_mapper,
    image_tile,
    label_patch,
    label_tile,
    tile_box,
    tiles_in_view,
)
from segstudio.io.tiled_labels import TiledLabels
from segstudio.tasks import run_to_completion


def _pixels(height, width, dtype=np.uint8):
    y, x = np.mgrid[0:height, 0:width]
    image = np.stack([(y * 7) % 251, (x * 5) % 241, (x + y) % 239], axis=2)
    return image.astype(dtype) if dtype == np.uint8 else (image[:, :, 0] * 200 + 1000).astype(dtype)


@pytest.fixture
def slide(tmp_path):
    image = _pixels(1500, 2100)
    path = run_to_completion(build_pyramid_steps(image, tmp_path / "s.ome.tif"))
    with Slide(path) as opened:
        yield opened, image


def test_image_tiles_are_the_level_pixels_with_opaque_alpha(slide) -> None:
    opened, image = slide
    mapper = display_mapper(opened)
    tile = image_tile(opened, TileKey(0, 1, 2), mapper, tile=256)
    np.testing.assert_array_equal(tile[:, :, :3], image[256:512, 512:768])
    assert (tile[:, :, 3] == 255).all()
    edge = image_tile(opened, TileKey(1, 2, 4), mapper, tile=256)  # level 1 is 750 x 1050: a clipped tile
    assert edge.shape == (750 - 512, 1050 - 1024, 4)


def test_tiles_in_view_cover_the_view_nearest_the_centre_first(slide) -> None:
    opened, _ = slide
    keys = tiles_in_view(opened, 1, ((0, 1500), (0, 2100)), tile=256)  # level 1: 750 x 1050
    assert {(k.row, k.column) for k in keys} == {(r, c) for r in range(3) for c in range(5)}
    assert (keys[0].row, keys[0].column) == (1, 2)
    corner = tiles_in_view(opened, 0, ((10, 20), (2000, 2100)), tile=256)
    assert [(k.row, k.column) for k in corner] == [(0, 8), (0, 7)]  # 2000-2100 straddles 2048


def test_a_16_bit_slide_is_stretched_the_same_in_every_tile(tmp_path) -> None:
    image = _pixels(600, 700, np.uint16)
    path = run_to_completion(build_pyramid_steps(image, tmp_path / "g.ome.tif"))
    with Slide(path) as opened:
        mapper = display_mapper(opened)
        a = image_tile(opened, TileKey(0, 0, 0), mapper, tile=256)
        b = image_tile(opened, TileKey(0, 1, 1), mapper, tile=256)
    assert a.dtype == np.uint8 and a[:, :, 0].max() > 200 and a[:, :, 0].min() < 30
    # equal source values give equal display values in both tiles
    value = image[300, 300]
    both = (image[:256, :256] == value)
    assert both.any()
    assert set(np.unique(a[:, :, 0][both])) == set(np.unique(b[:, :, 0][image[256:512, 256:512] == value]))


def test_label_tiles_sample_level_0_and_patches_match_the_whole_tile(tmp_path, slide) -> None:
    opened, _ = slide
    store = TiledLabels.create(tmp_path / "labels", opened.shape, chunk=128)
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 3, opened.shape).astype(np.uint8)
    labels[:, 1800:] = 255  # unlabelled
    store.write(((0, 1500), (0, 2100)), labels)
    lut = np.zeros((65536, 4), np.uint8)
    lut[0], lut[1], lut[2] = (10, 0, 0, 255), (0, 20, 0, 255), (0, 0, 30, 255)
    key = TileKey(1, 1, 3)  # level 1 (downsample 2), rows 256-512, columns 768-1024 of level 1
    tile = label_tile(store, opened, key, lut, tile=256)
    expected = lut[labels[512:1024:2, 1536:2048:2]]
    np.testing.assert_array_equal(tile, expected)
    assert (tile[:, 1800 // 2 - 768:, 3] == 0).all()  # unlabelled: transparent
    rows, columns, values = label_patch(store, opened, key, ((600, 641), (1601, 1700)), tile=256)
    np.testing.assert_array_equal(values, labels[512:1024:2, 1536:2048:2][rows, columns])
    assert (rows.start, rows.stop, columns.start, columns.stop) == (44, 65, 33, 82)
    assert label_patch(store, opened, key, ((0, 100), (0, 100)), tile=256) is None
    assert tile_box(opened, key, 256) == ((256, 512), (768, 1024))


def test_coarse_label_tiles_read_without_keeping_chunks(tmp_path, slide) -> None:
    opened, _ = slide
    store = TiledLabels.create(tmp_path / "labels", opened.shape, chunk=128)
    store.write(((0, 10), (0, 10)), np.ones((10, 10), np.uint8))
    store.flush()
    store.forget_clean()
    lut = np.zeros((65536, 4), np.uint8)
    lut[1] = (255, 0, 0, 255)
    tile = label_tile(store, opened, TileKey(2, 0, 0), lut, tile=512)
    assert tile[0, 0, 0] == 255 and tile[3, 3, 3] == 0  # level 2 (x4): pixels 0..2 are labelled, 3 is not
    assert store._cache == {}  # read, not kept


def test_the_cache_keeps_the_most_recently_used_within_its_bytes() -> None:
    cache = TileCache(max_bytes=3 * 1000)
    for name in "abc":
        cache.put(name, np.zeros(1000, np.uint8))
    assert cache.get("a") is not None  # a is now the most recent
    cache.put("d", np.zeros(1000, np.uint8))
    assert sorted(cache.keys()) == ["a", "c", "d"] and cache.nbytes == 3000
    assert cache.discard(lambda key: key in ("a", "d")) == 2
    assert cache.keys() == ["c"] and cache.nbytes == 1000
