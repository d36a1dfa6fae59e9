"""Fill between slices: shape-based interpolation of a class across a volume."""

from itertools import pairwise

import numpy as np
import pytest

from segstudio.annotation.document import Document
from segstudio.annotation.interpolate import (
    annotated_slices,
    fill_between_slices,
    interpolate_between_slices,
    signed_distance,
)
from segstudio.errors import InvalidArgumentError

U = 255


def _disc(shape, centre, radius):
    rows, cols = np.ogrid[: shape[0], : shape[1]]
    return (rows - centre[0]) ** 2 + (cols - centre[1]) ** 2 <= radius**2


def _two_discs(axis=0, size=(11, 64, 64)):
    """Discs of radius 10 and 20 (class 1) on slices 0 and 10 along *axis* of an 11 x 64 x 64 map."""
    shape = list(size)
    shape.insert(axis, shape.pop(0))
    labels = np.full(shape, U, np.uint8)
    moved = np.moveaxis(labels, axis, 0)
    plane = moved.shape[1:]
    moved[0][_disc(plane, (32, 32), 10)] = 1
    moved[10][_disc(plane, (32, 32), 20)] = 1
    return labels


def _apply(labels, result):
    out = labels.copy()
    region, mask = result
    out[region][mask] = 1
    return out


def test_the_signed_distance_is_positive_inside_and_gives_the_mask_back_at_zero():
    mask = _disc((40, 40), (20, 20), 8)
    distance = signed_distance(mask)
    assert distance.dtype == np.float32
    np.testing.assert_array_equal(distance > 0, mask)
    assert distance[20, 20] == pytest.approx(7.5, abs=0.2) and distance[20, 35] == pytest.approx(-6.5, abs=0.6)


def test_halfway_between_discs_of_radius_10_and_20_lies_a_disc_of_radius_15():
    labels = _two_discs()
    before = labels.copy()
    result = fill_between_slices(labels, 1, 0, U)
    np.testing.assert_array_equal(labels, before)  # the labels themselves are not changed
    region, mask = result
    assert mask.dtype == np.bool_ and mask.shape == labels[region].shape
    assert region[0] == slice(1, 10)  # only the gap: the painted slices 0 and 10 are outside it
    out = _apply(labels, result)
    np.testing.assert_array_equal(out[0], before[0])
    np.testing.assert_array_equal(out[10], before[10])
    middle = out[5] == 1
    assert np.count_nonzero(middle) == pytest.approx(np.pi * 15**2, rel=0.04)
    rows, cols = np.nonzero(middle)
    assert rows.mean() == pytest.approx(32, abs=0.5) and cols.mean() == pytest.approx(32, abs=0.5)
    # the radius grows slice by slice: 11, 12, ... 19
    areas = [np.count_nonzero(out[k] == 1) for k in range(11)]
    assert all(a < b for a, b in pairwise(areas))
    for k in (2, 8):
        assert areas[k] == pytest.approx(np.pi * (10 + k) ** 2, rel=0.05)


@pytest.mark.parametrize("axis", [1, 2])
def test_coronal_and_sagittal_slices_are_filled_along_their_own_axis(axis):
    labels = _two_discs(axis)
    fill = interpolate_between_slices(labels, 1, axis, U)
    assert fill.axis == axis and fill.annotated == (0, 10) and fill.filled == tuple(range(1, 10))
    assert fill.region[axis] == slice(1, 10)
    out = _apply(labels, (fill.region, fill.mask))
    middle = np.take(out, 5, axis=axis) == 1
    assert np.count_nonzero(middle) == pytest.approx(np.pi * 15**2, rel=0.04)
    # along the other axes nothing was filled beyond slices 0..10 of this one
    assert (np.take(out, range(11, out.shape[axis]), axis=axis) == U).all()


def test_other_classes_and_labelled_voxels_are_never_overwritten():
    labels = _two_discs()
    labels[5, 30:35, :] = 2  # another class across the middle slice
    labels[6, 32, 32] = 0  # a voxel the user labelled background
    region, mask = fill_between_slices(labels, 1, 0, U)
    out = _apply(labels, (region, mask))
    assert (out[5, 30:35, :] == 2).all() and out[6, 32, 32] == 0
    assert (labels[region][mask] == U).all()  # the mask sets unlabelled voxels only
    assert np.count_nonzero(out[5] == 1) > 500  # the rest of the middle slice is filled


def test_slices_outside_the_first_and_last_painted_one_are_not_touched():
    labels = np.full((30, 40, 40), U, np.uint8)
    labels[10][_disc((40, 40), (20, 20), 6)] = 3
    labels[15][_disc((40, 40), (20, 20), 6)] = 3
    labels[22][_disc((40, 40), (20, 20), 9)] = 3
    fill = interpolate_between_slices(labels, 3, 0, U)
    assert fill.annotated == (10, 15, 22)
    # two gaps, 11..14 and 16..21: ten slices filled, the painted ones not
    assert fill.filled == (11, 12, 13, 14, 16, 17, 18, 19, 20, 21)
    out = labels.copy()
    out[fill.region][fill.mask] = 3
    assert (out[:10] == U).all() and (out[23:] == U).all()
    np.testing.assert_array_equal(out[[10, 15, 22]], labels[[10, 15, 22]])
    assert np.count_nonzero(out[12] == 3) == np.count_nonzero(labels[10] == 3)  # same disc in between
    assert np.count_nonzero(out[15] == 3) < np.count_nonzero(out[19] == 3) < np.count_nonzero(out[22] == 3)
    assert fill.voxels == np.count_nonzero(out == 3) - np.count_nonzero(labels == 3)


def test_a_slice_with_two_blobs_interpolates_each_blob():
    labels = np.full((9, 40, 60), U, np.uint8)
    for k in (0, 8):
        labels[k][_disc((40, 60), (20, 15), 6)] = 1
        labels[k][_disc((40, 60), (20, 45), 6)] = 1
    out = _apply(labels, fill_between_slices(labels, 1, 0, U))
    middle = out[4] == 1
    assert middle[20, 15] and middle[20, 45] and not middle[20, 30]  # two blobs, not bridged
    assert np.count_nonzero(middle) == np.count_nonzero(labels[0] == 1)


def test_a_shape_that_drifts_is_carried_across_the_gap():
    """An oblique vessel: a disc of radius 8 moving 20 px sideways over four slices."""
    labels = np.full((5, 40, 80), U, np.uint8)
    labels[0][_disc((40, 80), (20, 20), 8)] = 1
    labels[4][_disc((40, 80), (20, 40), 8)] = 1
    fill = interpolate_between_slices(labels, 1, 0, U)
    assert fill.filled == (1, 2, 3)
    out = _apply(labels, (fill.region, fill.mask))
    area = np.count_nonzero(labels[0] == 1)
    for k, centre in ((1, 25), (2, 30), (3, 35)):
        rows, cols = np.nonzero(out[k] == 1)
        assert abs(cols.mean() - centre) < 0.75 and abs(rows.mean() - 20) < 0.75
        assert abs(len(rows) - area) <= 0.08 * area  # the same disc, moved


def test_a_single_painted_slice_or_adjacent_slices_give_nothing_to_fill():
    labels = np.full((6, 20, 20), U, np.uint8)
    assert fill_between_slices(labels, 1, 0, U) is None
    labels[2, 5:10, 5:10] = 1
    assert fill_between_slices(labels, 1, 0, U) is None
    labels[3, 5:10, 5:10] = 1  # adjacent: no slice between
    assert interpolate_between_slices(labels, 1, 0, U) is None
    assert annotated_slices(labels, 1, 0).tolist() == [2, 3]
    assert annotated_slices(labels, 1, 1).tolist() == [5, 6, 7, 8, 9]


def test_a_gap_already_labelled_with_another_class_gives_nothing_to_fill():
    labels = np.full((5, 20, 20), U, np.uint8)
    labels[1:4] = 2
    labels[0, 5:10, 5:10] = 1
    labels[4, 5:10, 5:10] = 1
    labels[1:4, 5:10, 5:10] = 2
    assert fill_between_slices(labels, 1, 0, U) is None


def test_uint16_labels_and_bad_arguments():
    labels = np.full((5, 20, 20), 65535, np.uint16)
    labels[0, 5:10, 5:10] = 300
    labels[4, 5:10, 5:10] = 300
    region, mask = fill_between_slices(labels, 300, 0, 65535)
    assert region[0] == slice(1, 4) and np.count_nonzero(mask) == 3 * 25
    with pytest.raises(InvalidArgumentError, match="3-D"):
        fill_between_slices(labels[0], 300, 0, 65535)
    with pytest.raises(InvalidArgumentError, match="axis"):
        fill_between_slices(labels, 300, 3, 65535)
    with pytest.raises(InvalidArgumentError, match="class index"):
        fill_between_slices(labels, 65535, 0, 65535)


def test_the_document_applies_the_fill_as_one_undo_step():
    document = Document(np.zeros((11, 64, 64), np.int16), volume=True)
    document.labels[...] = _two_discs()
    region, mask = fill_between_slices(document.labels, 1, 0, document.unlabelled)
    assert document.apply(region, mask, 1, "Fill between slices")
    assert document.undo_description == "Fill between slices"
    assert np.count_nonzero(document.labels[5] == 1) > 600
    document.undo()
    np.testing.assert_array_equal(document.labels, _two_discs())
