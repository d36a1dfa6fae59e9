"""Whole-slide reading: pyramidal TIFFs written here with tifffile (OME-TIFF
sub-resolutions, tiles, physical pixel size), read region by region."""

from __future__ import annotations

import numpy as np
import pytest
import tifffile

from segstudio.errors import InvalidArgumentError, UnreadableInputError
from segstudio.io.slide import Slide, is_pyramid


def _slide_pixels(height: int, width: int) -> np.ndarray:
    """A colour image whose every pixel is distinct enough to catch a misplaced tile."""
    y, x = np.mgrid[0:height, 0:width]
    return np.stack([(y * 7) % 251, (x * 5) % 241, (x + y) % 239], axis=2).astype(np.uint8)


def _write_ome_pyramid(path, image, levels=3, tile=256, microns=0.25, planar=False):
    with tifffile.TiffWriter(path, bigtiff=True) as tif:
        options = dict(tile=(tile, tile), photometric="rgb", compression="zlib")
        if planar:
            options["planarconfig"] = "separate"
            image = np.moveaxis(image, 2, 0)
        axes = "SYX" if planar else "YXS"
        tif.write(image, subifds=levels - 1, metadata={"axes": axes, "PhysicalSizeX": microns,
                                                        "PhysicalSizeY": microns}, **options)
        for level in range(1, levels):
            step = 2 ** level
            tif.write(image[:, ::step, ::step] if planar else image[::step, ::step], subfiletype=1, **options)
    return path


@pytest.fixture
def ome(tmp_path):
    image = _slide_pixels(1000, 1300)
    return _write_ome_pyramid(tmp_path / "slide.ome.tif", image), image


def test_an_ome_pyramid_has_its_levels_and_pixel_size(ome) -> None:
    path, image = ome
    assert is_pyramid(path)
    with Slide(path) as slide:
        assert slide.shape == (1000, 1300) and slide.channels == 3 and slide.dtype == np.uint8
        assert [level.shape for level in slide.levels] == [(1000, 1300), (500, 650), (250, 325)]
        assert [level.downsample for level in slide.levels] == [(1.0, 1.0), (2.0, 2.0), (4.0, 4.0)]
        assert slide.microns_per_pixel == (0.25, 0.25)


@pytest.mark.parametrize("planar", [False, True])
def test_regions_of_every_level_are_the_source_pixels(tmp_path, planar) -> None:
    image = _slide_pixels(700, 900)
    path = _write_ome_pyramid(tmp_path / "s.ome.tif", image, planar=planar)
    with Slide(path) as slide:
        for level, step in enumerate((1, 2, 4)):
            expected = image[::step, ::step]
            box = ((100 // step, 400 // step), (230 // step, 800 // step))  # across tile borders
            region = slide.read_region(level, box)
            np.testing.assert_array_equal(region, expected[slice(*box[0]), slice(*box[1])])
        # clipped at the edge
        assert slide.read_region(0, ((650, 900), (850, 2000))).shape == (50, 50, 3)


def test_a_small_region_reads_only_its_tiles(tmp_path) -> None:
    """A 64 x 64 region of a 4096 x 4096 uncompressed slide (48 MiB) reads the four tiles
    around the tile corner it straddles (y 1024, x 2048), nothing more."""
    image = np.random.default_rng(0).integers(0, 255, (4096, 4096, 3), dtype=np.uint8)
    path = tmp_path / "big.tif"
    tifffile.imwrite(path, image, tile=(256, 256), photometric="rgb")
    with Slide(path) as slide:
        before = _bytes_read()
        region = slide.read_region(0, ((1000, 1064), (2000, 2064)))
        read = _bytes_read() - before
    np.testing.assert_array_equal(region, image[1000:1064, 2000:2064])
    tile_bytes = 256 * 256 * 3
    assert 4 * tile_bytes <= read < 4 * tile_bytes + 65536, read  # measured 786559: 4 tiles and the header


def _bytes_read() -> int:
    with open("/proc/self/io", encoding="ascii") as io:
        return int(next(line for line in io if line.startswith("rchar:")).split()[1])


def test_pixel_size_from_resolution_tags_and_none_without_a_unit(tmp_path) -> None:
    grey = np.zeros((600, 500), np.uint16)
    in_cm = tmp_path / "cm.tif"
    tifffile.imwrite(in_cm, grey, tile=(256, 256), resolution=(40000.0, 20000.0), resolutionunit="CENTIMETER")
    with Slide(in_cm) as slide:
        assert slide.channels == 1 and slide.levels[0].shape == (600, 500)
        assert slide.microns_per_pixel == pytest.approx((0.5, 0.25))  # (y, x)
    no_unit = tmp_path / "none.tif"
    tifffile.imwrite(no_unit, grey, tile=(256, 256), resolution=(1.0, 1.0), resolutionunit="NONE")
    with Slide(no_unit) as slide:
        assert slide.microns_per_pixel is None
        assert not is_pyramid(no_unit)


def test_an_aperio_description_gives_the_pixel_size(tmp_path) -> None:
    path = tmp_path / "aperio.tif"
    tifffile.imwrite(path, _slide_pixels(300, 300), tile=(128, 128), photometric="rgb",
                     description="Aperio Image Library v12.0.15\r\n46920x33014 [0,100 46000x32914] (256x256) JPEG/RGB "
                                 "Q=70|AppMag = 20|MPP = 0.4990|Filename = CMU-1")
    with Slide(path) as slide:
        assert slide.microns_per_pixel == (0.499, 0.499)


def test_levels_for_zoom_and_a_thumbnail(ome) -> None:
    path, image = ome
    with Slide(path) as slide:
        assert [slide.level_for(d) for d in (0.5, 1, 1.9, 2, 3.9, 4, 100)] == [0, 0, 0, 1, 1, 2, 2]
        pixels, level = slide.thumbnail(400)
        assert level == 1 and pixels.shape == (500, 650, 3)  # the coarsest level at least 400 px long
        np.testing.assert_array_equal(pixels, image[::2, ::2])
        assert slide.thumbnail(5000)[1] == 0


def test_bad_files_and_requests_are_named(tmp_path, ome) -> None:
    path, _ = ome
    with Slide(path) as slide:
        with pytest.raises(InvalidArgumentError, match="levels 0 to 2, not 3"):
            slide.read_region(3, ((0, 10), (0, 10)))
        with pytest.raises(InvalidArgumentError, match="outside level 1"):
            slide.read_region(1, ((600, 700), (0, 10)))
    junk = tmp_path / "junk.tif"
    junk.write_bytes(b"II*\x00" + b"\xff" * 64)
    with pytest.raises(UnreadableInputError, match="junk.tif"):
        Slide(junk)
    truncated = tmp_path / "truncated.ome.tif"
    truncated.write_bytes(path.read_bytes()[: path.stat().st_size // 3])
    with pytest.raises(UnreadableInputError, match="truncated.ome.tif"):
        with Slide(truncated) as slide:
            slide.read_region(0, ((0, 1000), (0, 1300)))
