"""Which 2-D plane of a volume the canvas shows, and how to map between them.

The canvas edits and draws 2-D arrays. For a volume it shows one plane —
axial (a Z slice), coronal (a Y slice) or sagittal (an X slice) — as a
numpy view of the 3-D arrays (no copy), and turns a tool's 2-D region and
mask into the document's 3-D region (one slice thick), so one history
covers the whole volume.

Orientation
-----------
:meth:`SliceView.plane` and the methods that take a plane keep the volume's
own voxel order (labels are stored, predicted and exported that way). The
canvas shows the plane *oriented* as radiology viewers do (3D Slicer,
ITK-SNAP): superior at the top, anterior at the top of an axial plane and on
the left of a sagittal one, the patient's right on the screen's left. That is
only a flip of the plane's rows and/or columns, chosen from the affine
(:func:`patient_directions`); :meth:`SliceView.oriented` applies it and
:meth:`SliceView.flip_region` maps a region either way (a flip is its own
inverse).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from segstudio.io.images import to_uint8_display
from segstudio.windowing import apply_window, default_window, invert_grey

Region2D = tuple[slice, slice]
AXES = ("axial", "coronal", "sagittal")
# the array axes (of Z x Y x X) that are a view's rows and columns
_PLANE_AXES = {0: (1, 2), 1: (0, 2), 2: (0, 1)}
# RAS axis -> letter of its + end and of its - end; the + end (R, A, S) is the
# one radiology viewers put at the top or on the left
_LETTERS = (("R", "L"), ("A", "P"), ("S", "I"))
_LPS_TO_RAS = np.diag([-1.0, -1.0, 1.0])

Direction = tuple[int, int]  # RAS axis (0 R-L, 1 A-P, 2 S-I), sign (+1 / -1)


def patient_directions(volume) -> tuple[Direction, Direction, Direction] | None:
    """Where each array axis (Z, Y, X) of a volume points in the patient.

    For each array axis, the nearest patient axis in RAS and the sign along
    it of the axis's increasing index (an oblique volume gets its nearest
    axes, each patient axis used once). ``None`` when the volume has no
    patient frame (a TIFF stack, a DICOM file without geometry): it is then
    shown in its voxel order, without orientation letters.

    ``volume`` is a :class:`segstudio.io.volume.Volume` or any object with
    ``affine`` and ``world_frame`` (and optionally ``geometry_known``).
    """
    affine = getattr(volume, "affine", None)
    frame = getattr(volume, "world_frame", None)
    if affine is None or frame not in ("LPS", "RAS") or not getattr(volume, "geometry_known", True):
        return None
    rotation = np.asarray(affine, dtype=np.float64)[:3, :3]
    if frame == "LPS":
        rotation = _LPS_TO_RAS @ rotation
    # column c of the affine is the direction of voxel index (i, j, k)[c]; array axis a is index 2 - a
    weights = np.abs(rotation)
    if not np.isfinite(weights).all() or not weights.any(axis=0).all():
        return None
    found: dict[int, Direction] = {}
    for _ in range(3):  # greedy: the strongest remaining (patient axis, index) pair first
        masked = weights.copy()
        masked[list({d[0] for d in found.values()}), :] = -1.0
        masked[:, [2 - a for a in found]] = -1.0
        patient, column = np.unravel_index(int(np.argmax(masked)), masked.shape)
        found[2 - int(column)] = (int(patient), 1 if rotation[patient, column] > 0 else -1)
    return found[0], found[1], found[2]


@dataclass
class SliceView:
    """The plane shown: ``axis`` 0 (axial), 1 (coronal) or 2 (sagittal), at ``index``."""

    shape: tuple[int, int, int]  # Z, Y, X
    spacing: tuple[float, float, float] = (1.0, 1.0, 1.0)  # z, y, x in mm
    axis: int = 0
    index: int = 0
    window: tuple[float, float] | None = None  # centre, width
    invert: bool = False  # MONOCHROME1: the window's output is shown inverted
    #: patient direction of each array axis (see :func:`patient_directions`); None: shown as stored
    directions: tuple[Direction, Direction, Direction] | None = None

    @classmethod
    def of_document(cls, document) -> SliceView:
        """The middle axial plane of a volume Document, with its volume's
        spacing, default window and MONOCHROME1 inversion (``document.volume``
        may be ``None``, or any object with those attributes)."""
        volume = document.volume
        spacing = tuple(volume.spacing) if volume is not None else (1.0, 1.0, 1.0)
        window = default_window(volume if volume is not None else document.image)
        return cls(document.shape, spacing, 0, document.shape[0] // 2, window, bool(getattr(volume, "invert", False)),
                   patient_directions(volume) if volume is not None else None)

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
        """(z, y, x) of a pixel of the plane (in the plane's voxel order, see
        :meth:`screen_to_plane` for a pixel as shown)."""
        if self.axis == 0:
            return self.index, row, col
        if self.axis == 1:
            return row, self.index, col
        return row, col, self.index

    # -- orientation: the plane as shown -------------------------------------
    @property
    def plane_shape(self) -> tuple[int, int]:
        """Rows and columns of the plane (the same shown or stored)."""
        rows, cols = _PLANE_AXES[self.axis]
        return self.shape[rows], self.shape[cols]

    @property
    def flips(self) -> tuple[bool, bool]:
        """Whether the shown plane reverses the stored rows, and the columns.

        An axis is reversed when its index increases towards R, A or S, so
        that R, A and S end up at the top or on the left, as in Slicer:
        axial A up and R left, coronal S up and R left, sagittal S up and A left.
        """
        if self.directions is None:
            return False, False
        rows, cols = _PLANE_AXES[self.axis]
        return self.directions[rows][1] > 0, self.directions[cols][1] > 0

    @property
    def letters(self) -> tuple[str, str, str, str] | None:
        """Patient directions at the shown plane's top, bottom, left and right
        edges (``None`` without a patient frame)."""
        if self.directions is None:
            return None
        ends = []
        for array_axis, flipped in zip(_PLANE_AXES[self.axis], self.flips, strict=True):
            patient, sign = self.directions[array_axis]
            low, high = _LETTERS[patient] if sign < 0 else _LETTERS[patient][::-1]  # index 0 end, last end
            ends += [high, low] if flipped else [low, high]
        return ends[0], ends[1], ends[2], ends[3]

    def oriented(self, plane: np.ndarray) -> np.ndarray:
        """A rows x cols (x C) plane as shown (a view with negative strides where flipped)."""
        flip_rows, flip_cols = self.flips
        return plane[:: -1 if flip_rows else 1, :: -1 if flip_cols else 1]

    def oriented_channels(self, planes: np.ndarray) -> np.ndarray:
        """A C x rows x cols plane (probabilities) as shown."""
        flip_rows, flip_cols = self.flips
        return planes[:, :: -1 if flip_rows else 1, :: -1 if flip_cols else 1]

    def screen_to_plane(self, row: int, col: int) -> tuple[int, int]:
        """The stored (row, col) of a pixel as shown (and back: a flip is its own inverse)."""
        rows, cols = self.plane_shape
        flip_rows, flip_cols = self.flips
        return (rows - 1 - row if flip_rows else row), (cols - 1 - col if flip_cols else col)

    def flip_region(self, region: Region2D, mask: np.ndarray | None = None) -> tuple[Region2D, np.ndarray | None]:
        """A region (and mask) of the plane as shown, in stored order, or back."""
        rows, cols = region
        height, width = self.plane_shape
        flip_rows, flip_cols = self.flips
        if flip_rows:
            start, stop, _ = rows.indices(height)
            rows = slice(height - stop, height - start)
        if flip_cols:
            start, stop, _ = cols.indices(width)
            cols = slice(width - stop, width - start)
        if mask is not None:
            mask = self.oriented(mask)
        return (rows, cols), mask


def display_plane(plane: np.ndarray, window: tuple[float, float] | None, invert: bool = False) -> np.ndarray:
    """A plane as uint8 for display: through the window if one is set.

    *invert* (MONOCHROME1, see :attr:`segstudio.io.volume.Volume.invert`)
    inverts a grey plane's output; colour planes are shown as they are.
    """
    if plane.ndim == 2 and window is not None:
        return apply_window(plane, window[0], window[1], invert=invert)
    grey = to_uint8_display(np.ascontiguousarray(plane))
    return invert_grey(grey) if invert and plane.ndim == 2 else grey
