"""The Volume type and read_volume's dispatch on what a path is."""

from __future__ import annotations

import numpy as np
import pytest
import tifffile

from segstudio.errors import InvalidArgumentError, UnreadableInputError
from segstudio.io.volume import Volume, read_volume
from tests.io.test_dicom import make_ct_series, pydicom_file
from tests.io.test_nifti import nibabel_data


def test_volume_helpers(tmp_path):
    array = np.arange(2 * 3 * 4, dtype=np.int16).reshape(2, 3, 4)
    volume = Volume(array=array, spacing=(2, 1, 1), affine=np.eye(4), source=tmp_path, kind="tiff")
    assert volume.num_slices == 2 and volume.is_volume and not volume.is_colour
    assert volume.shape_zyx == (2, 3, 4)
    np.testing.assert_array_equal(volume.slice(1), array[1])
    assert volume.spacing == (2.0, 1.0, 1.0)
    with pytest.raises(InvalidArgumentError, match="out of range"):
        volume.slice(2)
    assert volume.world_frame is None


def test_single_slice_is_not_a_volume(tmp_path):
    volume = Volume(array=np.zeros((1, 5, 5, 3), np.uint8), spacing=(1, 1, 1), affine=np.eye(4),
                    source=tmp_path, kind="tiff")
    assert not volume.is_volume and volume.is_colour


def test_volume_rejects_bad_shapes(tmp_path):
    with pytest.raises(InvalidArgumentError, match="Z x Y x X"):
        Volume(array=np.zeros((5, 5)), spacing=(1, 1, 1), affine=np.eye(4), source=tmp_path, kind="tiff")
    with pytest.raises(InvalidArgumentError, match="kind"):
        Volume(array=np.zeros((1, 5, 5)), spacing=(1, 1, 1), affine=np.eye(4), source=tmp_path, kind="png")


def test_affine_ras_flips_x_and_y_for_dicom(tmp_path):
    affine = np.eye(4)
    affine[:3, 3] = [10, 20, 30]
    volume = Volume(array=np.zeros((1, 2, 2)), spacing=(1, 1, 1), affine=affine, source=tmp_path, kind="dicom")
    np.testing.assert_array_equal(volume.affine_ras() @ [0, 0, 0, 1], [-10, -20, 30, 1])


def test_read_volume_dispatch(tmp_path):
    assert read_volume(pydicom_file("CT_small.dcm")).kind == "dicom"
    make_ct_series(tmp_path / "series")
    assert read_volume(tmp_path / "series").num_slices == 5
    nifti = read_volume(nibabel_data("anatomical.nii"))
    assert nifti.kind == "nifti" and nifti.array.shape == (25, 41, 33)
    assert read_volume(nibabel_data("example4d.nii.gz"), volume_index=0).num_slices == 24


def test_read_volume_tiff_stack(tmp_path):
    stack = np.arange(3 * 8 * 6, dtype=np.uint16).reshape(3, 8, 6)
    path = tmp_path / "stack.tif"
    tifffile.imwrite(path, stack, photometric="minisblack")
    volume = read_volume(path)
    assert volume.kind == "tiff" and volume.description == "stack.tif"
    np.testing.assert_array_equal(volume.array, stack)
    np.testing.assert_array_equal(volume.affine, np.eye(4))
    assert volume.spacing == (1.0, 1.0, 1.0)
    assert volume.geometry_known is False  # no patient frame: writers say "unknown"


def test_read_volume_dicom_without_suffix(tmp_path):
    target = tmp_path / "IM000001"
    target.write_bytes(pydicom_file("MR_small.dcm").read_bytes())
    assert read_volume(target).modality == "MR"


def test_read_volume_errors(tmp_path):
    with pytest.raises(UnreadableInputError, match="no such file"):
        read_volume(tmp_path / "nothing")
    other = tmp_path / "notes.txt"
    other.write_text("hello")
    with pytest.raises(UnreadableInputError, match="not a volume") as info:
        read_volume(other)
    assert info.value.path == str(other)
    fake = tmp_path / "fake.nii"
    fake.write_text("text pretending to be NIfTI\n" * 10)
    with pytest.raises(UnreadableInputError, match="not a NIfTI"):
        read_volume(fake)
    empty_folder = tmp_path / "empty"
    empty_folder.mkdir()
    with pytest.raises(UnreadableInputError, match="no DICOM images"):
        read_volume(empty_folder)
