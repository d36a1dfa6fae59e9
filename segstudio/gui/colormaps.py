"""Perceptual colour maps for the heatmap layer and its legend.

The maps are rebuilt from 17 evenly spaced anchor colours of the published
viridis and magma maps (van der Walt and Smith, CC0), interpolated linearly
in RGB. Between anchors the error against the full 256-entry tables stays
within a few 8-bit units, which is invisible on a heatmap and saves us from
carrying (or depending on matplotlib for) the full tables.
"""

from __future__ import annotations

import numpy as np
from PySide6.QtGui import QImage

from segstudio.errors import InvalidArgumentError

COLORMAPS = ("viridis", "magma")

# Anchors at t = 0, 1/16, ..., 1 (8-bit sRGB).
_ANCHORS: dict[str, tuple[tuple[int, int, int], ...]] = {
    "viridis": (
        (68, 1, 84),
        (72, 24, 106),
        (71, 45, 123),
        (66, 64, 134),
        (59, 82, 139),
        (51, 99, 141),
        (44, 114, 142),
        (38, 130, 142),
        (33, 145, 140),
        (31, 160, 136),
        (40, 174, 128),
        (63, 188, 115),
        (94, 201, 98),
        (132, 212, 75),
        (173, 220, 48),
        (216, 226, 25),
        (253, 231, 37),
    ),
    "magma": (
        (0, 0, 4),
        (10, 8, 34),
        (29, 17, 71),
        (55, 16, 107),
        (81, 18, 124),
        (106, 28, 129),
        (131, 38, 129),
        (157, 46, 126),
        (183, 55, 121),
        (209, 65, 111),
        (230, 81, 100),
        (245, 107, 92),
        (251, 136, 97),
        (254, 167, 114),
        (254, 196, 137),
        (253, 226, 163),
        (252, 253, 191),
    ),
}


def colormap_lut(name: str) -> np.ndarray:
    """Return the 256-entry lookup table of a colour map.

    Parameters
    ----------
    name:
        One of :data:`COLORMAPS`.

    Returns
    -------
    numpy.ndarray
        Array of shape ``(256, 3)``, dtype ``uint8``; row ``i`` is the colour
        of the value ``i / 255``.

    Raises
    ------
    InvalidArgumentError
        If ``name`` is not a known colour map.
    """
    try:
        anchors = np.asarray(_ANCHORS[name], dtype=np.float64)
    except KeyError:
        raise InvalidArgumentError(
            f"unknown colour map {name!r}; known: {', '.join(COLORMAPS)}"
        ) from None
    stops = np.linspace(0.0, 1.0, len(anchors))
    x = np.arange(256) / 255.0
    lut = np.stack([np.interp(x, stops, anchors[:, c]) for c in range(3)], axis=1)
    return np.clip(np.rint(lut), 0, 255).astype(np.uint8)


def legend_image(name: str, width: int, height: int) -> QImage:
    """Return a horizontal gradient of ``name``, low values on the left.

    Parameters
    ----------
    name:
        One of :data:`COLORMAPS`.
    width, height:
        Size of the image in pixels, both at least 1.

    Raises
    ------
    InvalidArgumentError
        If the name is unknown or a size is below 1.
    """
    if width < 1 or height < 1:
        raise InvalidArgumentError(f"legend size must be at least 1x1, got {width}x{height}")
    lut = colormap_lut(name)
    index = np.rint(np.linspace(0, 255, width)).astype(np.intp) if width > 1 else np.zeros(1, np.intp)
    row = lut[index]
    pixels = np.ascontiguousarray(np.broadcast_to(row, (height, width, 3)))
    image = QImage(pixels.data, width, height, 3 * width, QImage.Format.Format_RGB888)
    # QImage borrows the numpy buffer; copy so the image outlives `pixels`.
    return image.copy()
