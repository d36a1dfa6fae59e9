"""Whole-slide and other very large images, read lazily, region by region.

A pyramidal TIFF (OME-TIFF with sub-resolution IFDs, Aperio SVS, any tiled
TIFF whose series tifffile recognises as a pyramid) is opened through
tifffile's zarr interface: only the tiles a region touches are read and
decoded, never the whole image. A plain tiled TIFF is a one-level slide.
The physical pixel size comes from the OME metadata (PhysicalSizeX/Y), the
SVS description (``MPP = ...``) or the TIFF resolution tags when their unit
is a length (inch or centimetre).

Any other slide (MIRAX ``.mrxs``, Hamamatsu ``.vms``, a TIFF variant tifffile
refuses...) is read through OpenSlide when the optional extra is installed
(``pip install "segstudio[openslide]"``, :mod:`segstudio.io.slide_openslide`),
with the same interface: RGB uint8 regions, the pixel size from
``openslide.mpp-y``/``openslide.mpp-x``. Without the extra such a file is
refused with an error saying what to install.

This is the reading layer of the whole-slide work (the canvas drawing
levels, tiled labels and region inference build on it).
"""

from __future__ import annotations

import math
import os
import re
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from segstudio.errors import InvalidArgumentError, SegstudioError, UnreadableInputError

#: Micrometres per unit of the OME PhysicalSize units we accept.
_OME_UNITS = {"µm": 1.0, "um": 1.0, "micron": 1.0, "nm": 1e-3, "mm": 1e3, "cm": 1e4, "m": 1e6}
#: TIFF ResolutionUnit -> micrometres per unit (1 = no absolute unit).
_TIFF_UNITS = {2: 25400.0, 3: 10000.0}


class _Refused(UnreadableInputError):
    """tifffile reads the file but its layout is not a slide's: OpenSlide is not tried (it would
    show the first plane of a z-stack, say)."""


@dataclass(frozen=True)
class SlideLevel:
    """One level of the pyramid: its ``(height, width)`` and how many level-0
    pixels one of its pixels spans along y and x."""

    shape: tuple[int, int]
    downsample: tuple[float, float]


class Slide:
    """A lazily read image pyramid; use as a context manager or call :meth:`close`.

    Attributes
    ----------
    path:
        The file.
    levels:
        Level 0 (full resolution) first, then ever smaller ones.
    channels:
        1 (grey) or the number of samples per pixel (3 for RGB).
    dtype:
        The pixel type.
    microns_per_pixel:
        ``(y, x)`` size of a level-0 pixel in µm, or None when the file does
        not say.
    """

    def __init__(self, path: str | os.PathLike[str], *, backend: str = "auto") -> None:
        """``backend``: ``"auto"`` (tifffile, else OpenSlide when tifffile cannot read it as a
        slide), ``"tifffile"`` or ``"openslide"``."""
        if backend not in ("auto", "tifffile", "openslide"):
            raise InvalidArgumentError(f"the slide backend is auto, tifffile or openslide, not {backend!r}")
        self.path = Path(path)
        self._tif = None
        self._openslide = None
        if backend == "openslide":
            self._open_openslide(None)
            return
        try:
            self._open_tiff()
        except _Refused:  # a TIFF tifffile reads, in a layout no slide reader serves (a z-stack...)
            raise
        except UnreadableInputError as error:
            if backend == "tifffile" or not self.path.is_file():
                raise
            self._open_openslide(error)

    def _open_tiff(self) -> None:
        import tifffile
        import zarr

        try:
            self._tif = tifffile.TiffFile(self.path)
        except (OSError, ValueError, tifffile.TiffFileError) as error:
            raise UnreadableInputError(f"cannot read it as a TIFF: {error}", path=self.path) from error
        try:
            series = self._tif.series[0]
            levels = list(series.levels) or [series]
            if not all(_is_tiled_or_small(level) for level in levels):
                raise _Refused("its full-resolution image is not stored in tiles or strips "
                                           "that can be read one region at a time", path=self.path)
            self._axes = series.axes
            self._arrays = _zarr_levels(zarr, series, len(levels))
            base_h, base_w = self._yx(levels[0].shape)
            self.levels = [
                SlideLevel(self._yx(level.shape),
                           (base_h / self._yx(level.shape)[0], base_w / self._yx(level.shape)[1]))
                for level in levels
            ]
            self.dtype = np.dtype(series.dtype)
            self.channels = int(series.shape[self._axes.index("S")]) if "S" in self._axes else 1
            if not set(self._axes) <= {"Y", "X", "S"}:
                raise _Refused(
                    f"its axes are {self._axes}; only 2-D grey or colour slides (Y, X and samples) are read",
                    path=self.path)
            self.microns_per_pixel = _microns_per_pixel(self._tif)
        except UnreadableInputError:
            self.close()
            raise
        except Exception as error:  # a damaged or unusual file: named, never a traceback
            self.close()
            raise UnreadableInputError(f"cannot read its pyramid: {error}", path=self.path) from error

    def _open_openslide(self, tiff_error: UnreadableInputError | None) -> None:
        """Read the slide through OpenSlide; ``tiff_error``: why tifffile could not (None when forced)."""
        from segstudio.io import slide_openslide

        module = slide_openslide.openslide_module()
        if module is None:
            if tiff_error is not None and self.path.suffix.lower() not in slide_openslide.OPENSLIDE_SUFFIXES:
                raise tiff_error  # a PNG, say: OpenSlide would not read it either
            raise slide_openslide.missing_openslide_error(
                self.path, None if tiff_error is None else tiff_error.problem) from tiff_error
        try:
            reader = slide_openslide.OpenSlideReader(self.path, module)
        except UnreadableInputError as error:
            if tiff_error is None:
                raise
            raise UnreadableInputError(f"{tiff_error.problem}; {error.problem}", path=self.path) from error
        self._openslide = reader
        self.levels = [SlideLevel(shape, downsample) for shape, downsample in reader.levels]
        self.channels, self.dtype = reader.channels, reader.dtype
        self.microns_per_pixel = reader.microns_per_pixel

    # -- reading -------------------------------------------------------------
    @property
    def shape(self) -> tuple[int, int]:
        """``(height, width)`` of level 0."""
        return self.levels[0].shape

    def read_region(self, level: int, box: tuple[tuple[int, int], tuple[int, int]]) -> np.ndarray:
        """The pixels of ``box`` = ``((y0, y1), (x0, x1))`` in ``level``'s own
        coordinates, clipped to the level: ``H x W`` or ``H x W x C``. Only the
        tiles the box touches are read."""
        if not 0 <= level < len(self.levels):
            raise InvalidArgumentError(f"{self.path.name} has levels 0 to {len(self.levels) - 1}, not {level}")
        height, width = self.levels[level].shape
        (y0, y1), (x0, x1) = box
        y0, y1 = max(0, int(y0)), min(height, int(y1))
        x0, x1 = max(0, int(x0)), min(width, int(x1))
        if y1 <= y0 or x1 <= x0:
            raise InvalidArgumentError(f"the box {box} lies outside level {level} ({width} x {height}) "
                                       f"of {self.path.name}")
        if self._openslide is not None:
            return self._openslide.read(level, y0, y1, x0, x1)
        index = tuple(slice(y0, y1) if axis == "Y" else slice(x0, x1) if axis == "X" else slice(None)
                      for axis in self._axes)
        try:
            region = np.asarray(self._arrays[level][index])
        except Exception as error:  # a truncated tile, an unknown compression...
            raise UnreadableInputError(f"cannot read level {level} at {box}: {error}", path=self.path) from error
        if "S" in self._axes and self._axes.index("S") < self._axes.index("Y"):
            region = np.moveaxis(region, self._axes.index("S"), -1)  # planar: samples last
        return region

    def level_for(self, downsample: float) -> int:
        """The smallest level still at least as fine as ``downsample`` (level-0
        pixels per screen pixel): what to draw at that zoom."""
        best = 0
        for number, level in enumerate(self.levels):
            if max(level.downsample) <= max(1.0, float(downsample)) * 1.0001:
                best = number
        return best

    def thumbnail(self, max_side: int = 1024) -> tuple[np.ndarray, int]:
        """The whole slide from the coarsest level whose longer side is at
        least ``max_side`` (level 0 when the slide is smaller than that):
        ``(pixels, level)``."""
        chosen = len(self.levels) - 1
        for number in range(len(self.levels) - 1, -1, -1):
            chosen = number
            if max(self.levels[number].shape) >= max_side:
                break
        height, width = self.levels[chosen].shape
        return self.read_region(chosen, ((0, height), (0, width))), chosen

    # -- life ---------------------------------------------------------------
    def close(self) -> None:
        tif = getattr(self, "_tif", None)
        if tif is not None:
            tif.close()
            self._tif = None
        reader = getattr(self, "_openslide", None)
        if reader is not None:
            reader.close()
            self._openslide = None

    def __enter__(self) -> Slide:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _yx(self, shape: tuple[int, ...]) -> tuple[int, int]:
        return int(shape[self._axes.index("Y")]), int(shape[self._axes.index("X")])


def is_pyramid(path: str | os.PathLike[str]) -> bool:
    """Whether ``path`` holds more than one resolution level: a TIFF tifffile reads as a
    pyramid or, with the OpenSlide extra installed, a slide only OpenSlide reads."""
    import tifffile

    from segstudio.io import slide_openslide

    try:
        with tifffile.TiffFile(path) as tif:
            return len(tif.series[0].levels) > 1
    except Exception:  # not a TIFF, or damaged: not a pyramid tifffile can use
        if not slide_openslide.openslide_available() or not Path(path).is_file():
            return False
    try:
        with Slide(path, backend="openslide") as slide:
            return len(slide.levels) > 1
    except SegstudioError:
        return False


def _zarr_levels(zarr, series, count: int) -> list:
    store = series.aszarr()
    opened = zarr.open(store, mode="r")
    if count == 1 and not hasattr(opened, "keys"):
        return [opened]
    return [opened[str(number)] for number in range(count)]


def _is_tiled_or_small(level) -> bool:
    page = level.keyframe
    return bool(page.is_tiled) or page.rowsperstrip < page.imagelength or page.imagelength <= 4096


def _microns_per_pixel(tif) -> tuple[float, float] | None:
    if tif.is_ome and tif.ome_metadata:
        found = _ome_microns(tif.ome_metadata)
        if found:
            return found
    page = tif.pages[0]
    description = page.description or ""
    match = re.search(r"\bMPP\s*=\s*([0-9.]+)", description)
    if match and float(match.group(1)) > 0:  # Aperio SVS
        value = float(match.group(1))
        return value, value
    tags = page.tags
    unit = tags.get("ResolutionUnit")
    x_res, y_res = tags.get("XResolution"), tags.get("YResolution")
    unit_value = int(unit.value) if unit is not None else 2  # the TIFF default unit is the inch
    if unit is None or unit_value not in _TIFF_UNITS or x_res is None or y_res is None:
        return None
    per_unit = _TIFF_UNITS[unit_value]
    x, y = _rational(x_res.value), _rational(y_res.value)
    if not (x > 0 and y > 0 and math.isfinite(x) and math.isfinite(y)):
        return None
    return per_unit / y, per_unit / x


def _ome_microns(xml: str) -> tuple[float, float] | None:
    try:
        root = ET.fromstring(xml)
    except ET.ParseError:
        return None
    for element in root.iter():
        if element.tag.endswith("}Pixels") or element.tag == "Pixels":
            try:
                x = float(element.attrib["PhysicalSizeX"]) * _OME_UNITS[element.attrib.get("PhysicalSizeXUnit", "µm")]
                y = float(element.attrib["PhysicalSizeY"]) * _OME_UNITS[element.attrib.get("PhysicalSizeYUnit", "µm")]
            except (KeyError, ValueError):
                return None
            return (y, x) if x > 0 and y > 0 else None
    return None


def _rational(value) -> float:
    if isinstance(value, tuple) and len(value) == 2:
        return value[0] / value[1] if value[1] else float("nan")
    return float(value)
