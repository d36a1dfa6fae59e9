"""Whole-slide formats read through OpenSlide (the optional ``openslide`` extra).

The extra is not installed where these run, so the OpenSlide package is
replaced by a small stand-in (``sys.modules["openslide"]``) holding its
pyramid in numpy arrays and answering ``read_region`` the way OpenSlide does:
the location in level-0 pixels, the size in the level's own pixels, straight
RGBA with alpha 0 where no scan covers the slide and outside it. Its absence
is simulated the same way (``sys.modules["openslide"] = None``).
"""

from __future__ import annotations

import sys
import types
from typing import ClassVar

import numpy as np
import pytest
import tifffile
from PIL import Image

from segstudio.errors import InvalidArgumentError, UnreadableInputError
from segstudio.io.slide import Slide, is_pyramid
from segstudio.io.slide_openslide import composite


def _pixels(height: int, width: int) -> np.ndarray:
    """Opaque RGBA whose every pixel is distinct enough to catch a misplaced region."""
    y, x = np.mgrid[0:height, 0:width]
    rgb = np.stack([(y * 7) % 251, (x * 5) % 241, (x + y) % 239], axis=2).astype(np.uint8)
    return np.concatenate([rgb, np.full((height, width, 1), 255, np.uint8)], axis=2)


class _FakeOpenSlide:
    """OpenSlide's Python interface over RGBA arrays (level 0 first)."""

    slides: ClassVar[dict[str, tuple[list[np.ndarray], dict[str, str]]]] = {}

    def __init__(self, filename: str) -> None:
        if filename not in self.slides:
            raise _fake_module().OpenSlideUnsupportedFormatError("Unsupported or missing image file")
        self._levels, properties = self.slides[filename]
        self.properties = dict(properties)
        height, width = self._levels[0].shape[:2]
        self.level_count = len(self._levels)
        self.level_dimensions = tuple((a.shape[1], a.shape[0]) for a in self._levels)
        # OpenSlide's downsample: the mean of the two axes' ratios
        self.level_downsamples = tuple((width / a.shape[1] + height / a.shape[0]) / 2 for a in self._levels)
        self.calls: list[tuple[tuple[int, int], int, tuple[int, int]]] = []
        self.closed = False
        _fake_module().opened.append(self)

    def read_region(self, location, level, size) -> Image.Image:
        assert not self.closed
        self.calls.append((tuple(location), level, tuple(size)))
        if self.properties.get("fail") == "read":
            raise _fake_module().OpenSlideError("TIFFRGBAImageGet failed")
        x0 = round(location[0] / self.level_downsamples[level])  # level-0 location -> level pixels
        y0 = round(location[1] / self.level_downsamples[level])
        width, height = size
        out = np.zeros((height, width, 4), np.uint8)  # transparent outside the slide
        source = self._levels[level]
        ys = slice(max(0, y0), min(source.shape[0], y0 + height))
        xs = slice(max(0, x0), min(source.shape[1], x0 + width))
        if ys.stop > ys.start and xs.stop > xs.start:
            out[ys.start - y0:ys.stop - y0, xs.start - x0:xs.stop - x0] = source[ys, xs]
        return Image.fromarray(out, "RGBA")

    def close(self) -> None:
        self.closed = True


def _fake_module() -> types.ModuleType:
    return sys.modules["openslide"]


@pytest.fixture
def fake_openslide(monkeypatch) -> types.ModuleType:
    module = types.ModuleType("openslide")
    module.OpenSlideError = type("OpenSlideError", (Exception,), {})
    module.OpenSlideUnsupportedFormatError = type("OpenSlideUnsupportedFormatError", (module.OpenSlideError,), {})
    module.OpenSlide = _FakeOpenSlide
    module.opened = []
    monkeypatch.setitem(sys.modules, "openslide", module)
    monkeypatch.setattr(_FakeOpenSlide, "slides", {})
    return module


def _register(path, levels, properties=None):
    """A file OpenSlide (the stand-in) reads but tifffile does not: a MIRAX index, say."""
    path.write_bytes(b"[GENERAL]\nSLIDE_VERSION = 01.03\n")
    _FakeOpenSlide.slides[str(path)] = (levels, properties or {})
    return path


def _pyramid(height: int, width: int, count: int = 3) -> list[np.ndarray]:
    base = _pixels(height, width)
    return [base[:: 2**level, :: 2**level] for level in range(count)]


# -- without the extra ---------------------------------------------------------------------


def test_without_openslide_its_formats_say_what_to_install(tmp_path, monkeypatch) -> None:
    monkeypatch.setitem(sys.modules, "openslide", None)  # `import openslide` raises ImportError
    mirax = tmp_path / "scan.mrxs"
    mirax.write_bytes(b"[GENERAL]\n")
    with pytest.raises(UnreadableInputError, match=r'scan\.mrxs.*pip install "segstudio\[openslide\]"') as caught:
        Slide(mirax)
    assert ".mrxs slides are read through OpenSlide, which is not installed" in str(caught.value)
    # a TIFF variant tifffile refuses: tifffile's reason, then the hint
    odd = tmp_path / "odd.tif"
    odd.write_bytes(b"II*\x00" + b"\xff" * 64)
    with pytest.raises(UnreadableInputError, match=r"odd\.tif: cannot read .*; if it is a whole-slide format "
                                                   r"OpenSlide reads, .*segstudio\[openslide\]"):
        Slide(odd)
    # asking for OpenSlide on a file tifffile reads
    tiled = tmp_path / "tiled.tif"
    tifffile.imwrite(tiled, np.zeros((300, 300, 3), np.uint8), tile=(128, 128), photometric="rgb")
    with pytest.raises(UnreadableInputError, match=r'tiled\.tif.*pip install "segstudio\[openslide\]"'):
        Slide(tiled, backend="openslide")
    # OpenSlide would not read a PNG either: no hint; a missing file is just missing
    png = tmp_path / "broken.png"
    png.write_bytes(b"\x89PNG\r\n\x1a\n")
    with pytest.raises(UnreadableInputError, match=r"broken\.png: cannot read it as a TIFF") as caught:
        Slide(png)
    assert "pip install" not in str(caught.value)
    with pytest.raises(UnreadableInputError, match=r"gone\.mrxs: cannot read it as a TIFF") as caught:
        Slide(tmp_path / "gone.mrxs")
    assert "pip install" not in str(caught.value)
    assert not is_pyramid(mirax)


def test_an_unknown_backend_is_refused(tmp_path) -> None:
    with pytest.raises(InvalidArgumentError, match="auto, tifffile or openslide, not 'bioformats'"):
        Slide(tmp_path / "any.tif", backend="bioformats")


# -- through OpenSlide -------------------------------------------------------------------------


def test_an_openslide_format_has_its_levels_pixel_size_and_rgb(tmp_path, fake_openslide) -> None:
    path = _register(tmp_path / "scan.mrxs", _pyramid(1001, 1301),
                     {"openslide.mpp-x": "0.2431", "openslide.mpp-y": "0.2437"})
    assert is_pyramid(path)
    with Slide(path) as slide:
        assert slide.shape == (1001, 1301) and slide.channels == 3 and slide.dtype == np.uint8
        assert [level.shape for level in slide.levels] == [(1001, 1301), (501, 651), (251, 326)]
        assert slide.levels[1].downsample == (1001 / 501, 1301 / 651)  # per axis, as the tifffile path
        assert slide.microns_per_pixel == (0.2437, 0.2431)  # (y, x)
        assert [slide.level_for(d) for d in (1, 1.9, 2.01, 4)] == [0, 0, 1, 2]
        pixels, level = slide.thumbnail(400)
        assert level == 1 and pixels.shape == (501, 651, 3) and pixels.dtype == np.uint8
        np.testing.assert_array_equal(pixels, _pixels(1001, 1301)[::2, ::2, :3])
        handle = fake_openslide.opened[-1]
    assert handle.closed  # the context manager closed OpenSlide's handle


def test_without_a_pixel_size_it_is_none(tmp_path, fake_openslide) -> None:
    path = _register(tmp_path / "a.vms", _pyramid(300, 200, 1), {"openslide.mpp-x": "0.25"})
    with Slide(path) as slide:
        assert slide.microns_per_pixel is None and len(slide.levels) == 1
    assert not is_pyramid(path)


def test_regions_of_every_level_are_the_source_pixels(tmp_path, fake_openslide) -> None:
    levels = _pyramid(1001, 1301)
    path = _register(tmp_path / "scan.mrxs", levels)
    with Slide(path) as slide:
        handle = fake_openslide.opened[-1]
        for level, step in enumerate((1, 2, 4)):
            box = ((100 // step, 400 // step), (230 // step, 800 // step))
            region = slide.read_region(level, box)
            assert region.dtype == np.uint8 and region.flags.c_contiguous
            np.testing.assert_array_equal(region, levels[level][slice(*box[0]), slice(*box[1]), :3])
        # OpenSlide was asked at level-0 locations for level-sized regions
        ds = handle.level_downsamples
        assert handle.calls == [((230, 100), 0, (570, 300)),
                                ((round(115 * ds[1]), round(50 * ds[1])), 1, (285, 150)),
                                ((round(57 * ds[2]), round(25 * ds[2])), 2, (143, 75))]
        assert [call[0] for call in handle.calls] == [(230, 100), (230, 100), (227, 100)]  # downsamples 1.998, 3.989
        # clipped to the level exactly as the tifffile path clips
        edge = slide.read_region(0, ((950, 1200), (-40, 30)))
        assert edge.shape == (51, 30, 3) and handle.calls[-1] == ((0, 950), 0, (30, 51))
        np.testing.assert_array_equal(edge, levels[0][950:, :30, :3])
        corner = slide.read_region(2, ((240, 999), (300, 999)))
        np.testing.assert_array_equal(corner, levels[2][240:251, 300:326, :3])


def test_transparent_pixels_are_composited_onto_the_background(tmp_path, fake_openslide) -> None:
    level = _pixels(40, 60)
    level[:10, :, 3] = 0  # no scan there: OpenSlide gives (0, 0, 0, 0)
    level[:10, :, :3] = 0
    level[10:20, :, :3] = (10, 20, 30)
    level[10:20, :, 3] = 128  # a scan border, half covered (straight alpha)
    path = _register(tmp_path / "scan.mrxs", [level])
    with Slide(path) as slide:
        region = slide.read_region(0, ((0, 40), (0, 60)))
    assert region.shape == (40, 60, 3)
    assert (region[:10] == 255).all()  # white, as QuPath and OpenSlide's thumbnails show it
    assert (region[10:20] == (132, 137, 142)).all()  # (c * 128 + 255 * 127) / 255, rounded
    np.testing.assert_array_equal(region[20:], level[20:, :, :3])  # opaque: exactly the scan
    grey = _register(tmp_path / "grey.mrxs", [level], {"openslide.background-color": "E0E0E0"})
    with Slide(grey) as slide:
        assert (slide.read_region(0, ((0, 10), (0, 5))) == 224).all()
    assert composite(np.array([[[1, 2, 3, 255], [9, 9, 9, 0]]], np.uint8)).tolist() == [[[1, 2, 3], [255, 255, 255]]]


def test_bad_requests_and_files_are_named(tmp_path, fake_openslide) -> None:
    path = _register(tmp_path / "scan.mrxs", _pyramid(400, 500))
    with Slide(path) as slide:
        with pytest.raises(InvalidArgumentError, match="levels 0 to 2, not 3"):
            slide.read_region(3, ((0, 10), (0, 10)))
        with pytest.raises(InvalidArgumentError, match=r"outside level 1 \(250 x 200\) of scan\.mrxs"):
            slide.read_region(1, ((200, 300), (0, 10)))
        assert fake_openslide.opened[-1].calls == []  # refused before OpenSlide is asked
    failing = _register(tmp_path / "failing.mrxs", _pyramid(400, 500), {"fail": "read"})
    with Slide(failing) as slide, pytest.raises(
            UnreadableInputError, match=r"failing\.mrxs: OpenSlide cannot read level 0 .*TIFFRGBAImageGet failed"):
        slide.read_region(0, ((0, 10), (0, 10)))
    # neither tifffile nor OpenSlide reads it: both reasons
    unknown = tmp_path / "unknown.svslide"
    unknown.write_bytes(b"not a slide")
    with pytest.raises(UnreadableInputError, match=r"unknown\.svslide: cannot read it as a TIFF.*; "
                                                   r"OpenSlide cannot read it: Unsupported or missing image file"):
        Slide(unknown)
    assert not is_pyramid(unknown)


def test_a_tiff_tifffile_reads_stays_with_tifffile_and_a_z_stack_is_not_handed_to_openslide(
        tmp_path, fake_openslide) -> None:
    tiled = tmp_path / "tiled.tif"
    image = _pixels(300, 400)[..., :3]
    tifffile.imwrite(tiled, image, tile=(128, 128), photometric="rgb")
    _FakeOpenSlide.slides[str(tiled)] = ([_black(300, 400)], {})  # would read black
    with Slide(tiled) as slide:
        np.testing.assert_array_equal(slide.read_region(0, ((0, 300), (0, 400))), image)
    with Slide(tiled, backend="openslide") as slide:  # forced: OpenSlide's (here black) pixels
        assert (slide.read_region(0, ((0, 300), (0, 400))) == 0).all()
    stack = tmp_path / "stack.tif"
    tifffile.imwrite(stack, np.zeros((4, 300, 400, 3), np.uint8), tile=(128, 128), photometric="rgb")
    _FakeOpenSlide.slides[str(stack)] = ([_black(300, 400)], {})
    with pytest.raises(UnreadableInputError, match=r"stack\.tif: its axes are QYXS"):
        Slide(stack)
    assert len(fake_openslide.opened) == 1  # only the forced one


def _black(height: int, width: int) -> np.ndarray:
    level = np.zeros((height, width, 4), np.uint8)
    level[..., 3] = 255
    return level
