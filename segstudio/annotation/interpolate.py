"""Fill between slices: shape-based interpolation of one class across a volume.

The user paints a class on a few slices of a volume (say 10, 15 and 22 along
the viewed axis); every slice between two painted ones that holds none of
the class gets an interpolated shape, as 3D Slicer's "Fill between slices"
does. Each gap is filled from its two bounding slices by shape-based
interpolation (Raya and Udupa; Herman et al.): the signed distance maps of
the two masks are blended linearly by position and thresholded at zero, so a
disc of radius 10 and one of radius 20 five slices either side give a disc
of radius 15 halfway.

Before blending, each end's distance map is moved towards the other's
centroid by the fraction of the way the slice lies between them, so a shape
that drifts from slice to slice (an oblique vessel, a tumour off axis) is
carried across the gap; blended in place, two shapes that barely overlap
would shrink to nothing halfway.

Only unlabelled voxels are written: another class, or anything the user
painted, is never overwritten. Slices before the first or after the last
painted one are not touched. The result is a (region, mask) pair like every
tool's, which the document applies as one undo step.

Memory: the distance maps of a gap are computed on the bounding box of its
two masks only (float32), never on the whole volume.
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import pairwise

import numpy as np
from scipy.ndimage import distance_transform_edt, shift

from segstudio.errors import InvalidArgumentError

Region3D = tuple[slice, slice, slice]

# slices compared per chunk when looking for the painted ones: bounds the
# temporary boolean array (a whole 512 x 512 x 600 volume would be 150 MB)
_SCAN_VOXELS = 1 << 22


@dataclass(frozen=True)
class SliceFill:
    """What a fill between slices would write.

    Attributes
    ----------
    region:
        3-D box of the label map (Z, Y, X order) holding every voxel to set.
    mask:
        Boolean, of the region's shape: True on the unlabelled voxels to set.
    axis:
        The axis the slices are taken along (0 axial, 1 coronal, 2 sagittal).
    annotated:
        Indices (along *axis*) of the slices that hold the class.
    filled:
        Indices of the slices that receive at least one voxel.
    """

    region: Region3D
    mask: np.ndarray
    axis: int
    annotated: tuple[int, ...]
    filled: tuple[int, ...]

    @property
    def voxels(self) -> int:
        """Number of voxels set."""
        return int(np.count_nonzero(self.mask))


def _check(labels: np.ndarray, class_index: int, axis: int, unlabelled: int) -> None:
    if not isinstance(labels, np.ndarray) or labels.ndim != 3:
        raise InvalidArgumentError("fill between slices needs a 3-D label map (a volume)")
    if axis not in (0, 1, 2):
        raise InvalidArgumentError(f"axis must be 0, 1 or 2, got {axis!r}")
    if isinstance(class_index, bool) or not isinstance(class_index, (int, np.integer)) \
            or not 0 <= class_index < unlabelled:
        raise InvalidArgumentError(f"a class index must be an integer in 0..{unlabelled - 1}, got {class_index!r}")


def annotated_slices(labels: np.ndarray, class_index: int, axis: int) -> np.ndarray:
    """Indices along *axis* of the slices holding at least one voxel of *class_index*, ascending."""
    # read in chunks of whole Z slices, the order the map is stored in, whatever the axis
    per_slice = max(1, labels.shape[1] * labels.shape[2])
    step = max(1, _SCAN_VOXELS // per_slice)
    present = np.zeros(labels.shape[axis], bool)
    others = tuple(a for a in range(3) if a != axis)
    for start in range(0, labels.shape[0], step):
        chunk = labels[start : start + step] == class_index
        if axis == 0:
            present[start : start + step] = chunk.reshape(chunk.shape[0], -1).any(axis=1)
        else:
            present |= chunk.any(axis=others)
    return np.flatnonzero(present)


def _bounding_box(mask: np.ndarray) -> tuple[slice, slice]:
    rows = np.flatnonzero(mask.any(axis=1))
    cols = np.flatnonzero(mask.any(axis=0))
    return slice(int(rows[0]), int(rows[-1]) + 1), slice(int(cols[0]), int(cols[-1]) + 1)


def _box_union(a: tuple[slice, slice], b: tuple[slice, slice]) -> tuple[slice, slice]:
    return tuple(slice(min(p.start, q.start), max(p.stop, q.stop)) for p, q in zip(a, b, strict=True))


def signed_distance(mask: np.ndarray) -> np.ndarray:
    """Signed distance to the mask's edge (float32): positive inside, negative outside.

    The edge is taken halfway between a pixel of the mask and its neighbour
    outside (hence the half-pixel offsets), so that thresholding at zero
    gives the mask back exactly. Outside the array counts as outside the
    mask: a mask filling its whole array still has an edge there.
    """
    padded = np.pad(mask, 1)
    inside = distance_transform_edt(padded)[1:-1, 1:-1]
    outside = distance_transform_edt(~padded)[1:-1, 1:-1]
    return np.where(mask, inside - 0.5, 0.5 - outside).astype(np.float32)


def _centroid(mask: np.ndarray) -> np.ndarray:
    return np.array([float(axis.mean()) for axis in np.nonzero(mask)])


def _blend(start: np.ndarray, end: np.ndarray, t: np.float32, travel: np.ndarray) -> np.ndarray:
    """The distance map a fraction *t* of the way: each end's map moved to the
    centroid there (``t * travel`` from the first), then blended linearly."""
    if not np.abs(travel).max() >= 0.5:  # concentric: nothing to move
        return start + t * (end - start)
    outside = -float(sum(start.shape))  # what moves in from beyond the box is outside both shapes
    moved_start = shift(start, t * travel, order=1, mode="constant", cval=outside)
    moved_end = shift(end, (t - 1) * travel, order=1, mode="constant", cval=outside)
    return (1 - t) * moved_start + t * moved_end


def interpolate_between_slices(
    labels: np.ndarray, class_index: int, axis: int, unlabelled: int
) -> SliceFill | None:
    """Plan a fill between the slices painted with *class_index* along *axis*.

    Parameters
    ----------
    labels:
        ``Z x Y x X`` label map (not changed).
    class_index:
        The class to interpolate.
    axis:
        0 (axial: Z slices), 1 (coronal: Y) or 2 (sagittal: X).
    unlabelled:
        Value of unlabelled voxels; only those are written.

    Returns
    -------
    SliceFill or None
        None when fewer than two slices hold the class, or when no voxel would
        change (the painted slices are adjacent, or every interpolated voxel
        is labelled already).

    Raises
    ------
    InvalidArgumentError
        *labels* is not 3-D, *axis* not 0..2, or *class_index* not a class.
    """
    _check(labels, class_index, axis, unlabelled)
    annotated = annotated_slices(labels, class_index, axis)
    if len(annotated) < 2:
        return None
    moved = np.moveaxis(labels, axis, 0)  # a view: slices along axis first
    pieces: list[tuple[int, tuple[slice, slice], np.ndarray]] = []  # slice index, box, slice mask
    below = moved[annotated[0]] == class_index
    for low, high in pairwise(annotated):
        above = moved[high] == class_index
        if high - low > 1:
            box = _box_union(_bounding_box(below), _bounding_box(above))
            start, end = signed_distance(below[box]), signed_distance(above[box])
            # the shapes travel from one centroid to the other (an oblique vessel, a
            # tumour's edge): blended in place, two that barely overlap would vanish halfway
            travel = _centroid(above[box]) - _centroid(below[box])
            for index in range(low + 1, high):
                t = np.float32((index - low) / (high - low))
                shape = _blend(start, end, t, travel) > 0
                shape &= moved[index][box] == unlabelled
                if shape.any():
                    pieces.append((index, box, shape))
        below = above
    if not pieces:
        return None

    first, last = pieces[0][0], pieces[-1][0]
    plane_box = pieces[0][1]
    for _, box, _ in pieces[1:]:
        plane_box = _box_union(plane_box, box)
    rows, cols = plane_box
    mask = np.zeros((last + 1 - first, rows.stop - rows.start, cols.stop - cols.start), bool)
    for index, (r, c), shape in pieces:
        mask[index - first, r.start - rows.start : r.stop - rows.start, c.start - cols.start : c.stop - cols.start] = shape
    # back to Z x Y x X: the slices' axis returns to its place
    region = [rows, cols]
    region.insert(axis, slice(first, last + 1))
    return SliceFill(
        region=tuple(region),
        mask=np.ascontiguousarray(np.moveaxis(mask, 0, axis)),
        axis=axis,
        annotated=tuple(int(i) for i in annotated),
        filled=tuple(sorted({index for index, _, _ in pieces})),
    )


def fill_between_slices(
    labels: np.ndarray, class_index: int, axis: int, unlabelled: int
) -> tuple[Region3D, np.ndarray] | None:
    """The (region, mask) of a fill between slices, as a tool returns it.

    See :func:`interpolate_between_slices` (which also says which slices
    were painted and which get filled); None when there is nothing to fill.
    """
    fill = interpolate_between_slices(labels, class_index, axis, unlabelled)
    return None if fill is None else (fill.region, fill.mask)
