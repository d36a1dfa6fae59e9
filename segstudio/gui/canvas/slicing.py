"""Which 2-D plane of a volume the canvas shows, and how to map between them.

The canvas edits and draws 2-D arrays. For a volume it shows one plane —
axial (a Z slice), coronal (a Y slice) or sagittal (an X slice) — as a
numpy view of the 3-D arrays (no copy), and turns a tool's 2-D region and
mask into the document's 3-D region (one slice thick), so one history
covers the whole volume.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from segstudio.io.images import to_uint8_display
from segstudio.windowing import apply_window, default_window, invert_grey

Region2D = tuple[slice, slice]
AXES = ("axial", "coronal", "sagittal")


@dataclass
class SliceView:
    """The plane shown: ``axis`` 0 (axial), 1 (coronal) or 2 (sagittal), at ``index``."""

    shape: tuple[int, int, int]  # Z, Y, X
    spacing: tuple[float, float, float] = (1.0, 1.0, 1.0)  # z, y, x in mm
    axis: int = 0
    index: int = 0
    window: tuple[float, float] | None = None  # centre, width
    invert: bool = False  # MONOCHROME1: the window's output is shown inverted

    @classmethod
    def of_document(cls, document) -> SliceView:
        """The middle axial plane of a volume Document, with its volume's
        spacing, default window and MONOCHROME1 inversion (``document.volume``
        may be ``None``, or any object with those attributes)."""
        volume = document.volume
        spacing = tuple(volume.spacing) if volume is not None else (1.0, 1.0, 1.0)
        window = default_window(volume if volume is not None else document.image)
        return cls(document.shape, spacing, 0, document.shape[0] // 2, window, bool(getattr(volume, "invert", False)))

    @property
    def count(self) -> int:
        """Number of planes along the current axis."""
        return self.shape[self.axis]

    def clamp(self, index: int) -> int:
        return int(min(max(index, 0), self.count - 1))

    def plane(self, array: np.ndarray) -> np.ndarray:
        """The shown plane of a Z x Y x X (x C) array: a view, not a copy."""
        if self.axis == 0:
            return array[self.index]
        if self.axis == 1:
            return array[:, self.index]
        return array[:, :, self.index]

    def display(self, array: np.ndarray) -> np.ndarray:
        """The shown plane of a Z x Y x X (x C) array as uint8, as the user sees it."""
        return display_plane(self.plane(array), self.window, self.invert)

    def channel_plane(self, array: np.ndarray) -> np.ndarray:
        """The plane of a C x Z x Y x X array (probabilities), as C x rows x cols."""
        if self.axis == 0:
            return array[:, self.index]
        if self.axis == 1:
            return array[:, :, self.index]
        return array[:, :, :, self.index]

    @property
    def aspect(self) -> float:
        """Height of a displayed pixel relative to its width (from the spacing)."""
        z, y, x = self.spacing
        rows, cols = {0: (y, x), 1: (z, x), 2: (z, y)}[self.axis]
        return float(rows / cols) if cols > 0 else 1.0

    def to_volume(self, region: Region2D, mask: np.ndarray | None) -> tuple[tuple[slice, ...], np.ndarray | None]:
        """A tool's 2-D region (and mask) on the plane, as the volume's 3-D ones."""
        here = slice(self.index, self.index + 1)
        rows, cols = region
        if self.axis == 0:
            return (here, rows, cols), None if mask is None else mask[np.newaxis]
        if self.axis == 1:
            return (rows, here, cols), None if mask is None else mask[:, np.newaxis, :]
        return (rows, cols, here), None if mask is None else mask[:, :, np.newaxis]

    def to_plane(self, region: tuple[slice, ...]) -> Region2D | None:
        """The part of a 3-D region that lies in the shown plane, or None."""
        along = region[self.axis]
        if not along.start <= self.index < along.stop:
            return None
        others = [r for axis, r in enumerate(region) if axis != self.axis]
        return others[0], others[1]

    def voxel(self, row: int, col: int) -> tuple[int, int, int]:
        """(z, y, x) of a pixel of the shown plane."""
        if self.axis == 0:
            return self.index, row, col
        if self.axis == 1:
            return row, self.index, col
        return row, col, self.index


def display_plane(plane: np.ndarray, window: tuple[float, float] | None, invert: bool = False) -> np.ndarray:
    """A plane as uint8 for display: through the window if one is set.

    *invert* (MONOCHROME1, see :attr:`segstudio.io.volume.Volume.invert`)
    inverts a grey plane's output; colour planes are shown as they are.
    """
    if plane.ndim == 2 and window is not None:
        return apply_window(plane, window[0], window[1], invert=invert)
    grey = to_uint8_display(np.ascontiguousarray(plane))
    return invert_grey(grey) if invert and plane.ndim == 2 else grey
