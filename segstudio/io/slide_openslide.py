"""The OpenSlide backend of :class:`segstudio.io.slide.Slide`.

Formats tifffile cannot read as a slide (MIRAX ``.mrxs``, Hamamatsu
``.vms``/``.vmu``, Sakura ``.svslide``, a TIFF variant
tifffile refuses...) open through OpenSlide when the optional extra is
installed (``pip install "segstudio[openslide]"``: openslide-python and
openslide-bin, which ships the C library). Without it such a file is refused
with an :class:`~segstudio.errors.UnreadableInputError` that says so.

OpenSlide's ``read_region`` takes its location in level-0 pixels and its size
in the level's own pixels, and returns RGBA whose alpha marks the places no
scan covers (alpha 0) and their anti-aliased borders; those are composited
onto the slide's background colour (``openslide.background-color``, white
when unset), as QuPath and OpenSlide's own thumbnails do, so a region is
always ``H x W x 3`` uint8 RGB. An OpenSlide handle may be read from several
threads at once.

Level 0, and every level whose downsample is a whole number, reads exactly the
stored pixels. At a level whose downsample is not (1.998 for a 1001-pixel
slide's 501-pixel level, Aperio's 4.0003...), OpenSlide's whole-number level-0
location falls between two of the level's pixels and it resamples the region
by that fraction (at most half a pixel): OpenSlide's behaviour, QuPath's too.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from segstudio.errors import UnreadableInputError

#: What to install for the formats only OpenSlide reads.
INSTALL_HINT = 'install the OpenSlide extra to open it: pip install "segstudio[openslide]"'
#: Suffixes of the whole-slide formats OpenSlide reads (TIFF-based ones included).
OPENSLIDE_SUFFIXES = (".svs", ".tif", ".tiff", ".ndpi", ".vms", ".vmu", ".scn", ".mrxs", ".svslide", ".bif")
#: Of those, the ones that are not TIFFs tifffile can read: they open only through OpenSlide.
OPENSLIDE_ONLY_SUFFIXES = (".mrxs", ".vms", ".vmu", ".svslide")


def openslide_module():
    """The ``openslide`` package, or None when it (or its C library) is not installed."""
    try:
        import openslide
    except (ImportError, OSError):  # OSError: openslide-python found but not its shared library
        return None
    return openslide


def openslide_available() -> bool:
    """Whether the OpenSlide extra is installed and loads."""
    return openslide_module() is not None


def missing_openslide_error(path: Path, tiff_problem: str | None = None) -> UnreadableInputError:
    """The error for a file only OpenSlide could read while it is not installed."""
    if path.suffix.lower() in OPENSLIDE_ONLY_SUFFIXES:
        return UnreadableInputError(f"{path.suffix} slides are read through OpenSlide, which is not "
                                    f"installed; {INSTALL_HINT}", path=path)
    if tiff_problem is None:  # OpenSlide asked for by name
        return UnreadableInputError(f"OpenSlide is not installed; {INSTALL_HINT}", path=path)
    return UnreadableInputError(f"{tiff_problem}; if it is a whole-slide format OpenSlide reads, {INSTALL_HINT}",
                                path=path)


class OpenSlideReader:
    """One open OpenSlide handle: the levels, the pixel size and clipped region reads.

    ``levels`` holds ``((height, width), (downsample_y, downsample_x))`` per level,
    level 0 first; the slide is always 3-channel uint8 RGB.
    """

    channels = 3
    dtype = np.dtype(np.uint8)

    def __init__(self, path: Path, openslide) -> None:
        self.path = path
        try:
            self._handle = openslide.OpenSlide(str(path))
        except Exception as error:  # OpenSlideUnsupportedFormatError, OpenSlideError, OSError...
            raise UnreadableInputError(f"OpenSlide cannot read it: {error}", path=path) from error
        try:
            dimensions = [(int(w), int(h)) for w, h in self._handle.level_dimensions]
            self._downsamples = [float(d) for d in self._handle.level_downsamples]
            if not dimensions or len(dimensions) != len(self._downsamples) or min(min(d) for d in dimensions) < 1:
                raise ValueError(f"levels {dimensions}")
            base_w, base_h = dimensions[0]
            self.levels = [((h, w), (base_h / h, base_w / w)) for w, h in dimensions]
            properties = dict(self._handle.properties)
            self.microns_per_pixel = _microns(properties)
            self._background = _background(properties)
        except Exception as error:
            self.close()
            raise UnreadableInputError(f"OpenSlide cannot read its levels: {error}", path=path) from error

    def read(self, level: int, y0: int, y1: int, x0: int, x1: int) -> np.ndarray:
        """``[y0:y1, x0:x1]`` of ``level`` (already clipped to it) as ``H x W x 3`` uint8."""
        downsample = self._downsamples[level]
        # OpenSlide divides the level-0 location by the level's downsample: the level pixel (x0, y0)
        # is at level-0 (x0 * downsample, y0 * downsample); the size is in the level's pixels.
        location = (round(x0 * downsample), round(y0 * downsample))
        try:
            image = self._handle.read_region(location, level, (x1 - x0, y1 - y0))
            rgba = np.asarray(image.convert("RGBA") if image.mode != "RGBA" else image)
        except Exception as error:  # a damaged tile: OpenSlide's handle reports it (and stays in error)
            raise UnreadableInputError(f"OpenSlide cannot read level {level} at "
                                       f"(({y0}, {y1}), ({x0}, {x1})): {error}", path=self.path) from error
        if rgba.shape != (y1 - y0, x1 - x0, 4):
            raise UnreadableInputError(f"OpenSlide returned {rgba.shape} for a {y1 - y0} x {x1 - x0} region",
                                       path=self.path)
        return composite(rgba, self._background)

    def close(self) -> None:
        handle = getattr(self, "_handle", None)
        if handle is not None:
            handle.close()
            self._handle = None


def composite(rgba: np.ndarray, background: tuple[int, int, int] = (255, 255, 255)) -> np.ndarray:
    """Straight (not premultiplied) RGBA over an opaque ``background``: ``H x W x 3`` uint8.
    Opaque pixels keep their colour exactly; transparent ones become the background."""
    rgb = np.ascontiguousarray(rgba[..., :3])
    alpha = rgba[..., 3]
    if bool((alpha == 255).all()):
        return rgb
    a = alpha[..., None].astype(np.uint32)
    back = np.asarray(background, np.uint32)
    mixed = (rgb.astype(np.uint32) * a + back * (255 - a) + 127) // 255
    return mixed.astype(np.uint8)


def _microns(properties: dict) -> tuple[float, float] | None:
    try:
        y, x = float(properties["openslide.mpp-y"]), float(properties["openslide.mpp-x"])
    except (KeyError, ValueError, TypeError):
        return None
    if not (y > 0 and x > 0 and math.isfinite(y) and math.isfinite(x)):
        return None
    return y, x


def _background(properties: dict) -> tuple[int, int, int]:
    value = str(properties.get("openslide.background-color", "ffffff")).strip().lstrip("#")
    try:
        number = int(value, 16)
    except ValueError:
        return 255, 255, 255
    if len(value) != 6:
        return 255, 255, 255
    return (number >> 16) & 255, (number >> 8) & 255, number & 255
