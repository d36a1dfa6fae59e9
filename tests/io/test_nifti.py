"""NIfTI reading with nibabel's bundled test images."""

from __future__ import annotations

import gzip
import os
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from segstudio.errors import InvalidArgumentError, UnreadableInputError
from segstudio.io.nifti import read_nifti


def nibabel_data(name: str) -> Path:
    path = Path(os.path.dirname(nib.__file__)) / "tests" / "data" / name
    if not path.exists():  # nibabel ships these files; losing one must show, not skip
        pytest.fail(f"{name} is no longer bundled with this nibabel; pick another of its test files")
    return path


def test_anatomical_3d():
    path = nibabel_data("anatomical.nii")
    source = nib.load(path)
    volume = read_nifti(path)
    data = np.asanyarray(source.dataobj)
    assert volume.kind == "nifti" and volume.world_frame == "RAS"
    assert volume.array.shape == data.shape[::-1]
    assert volume.array.dtype == np.int16 and volume.array.dtype.isnative  # file is big-endian
    np.testing.assert_array_equal(volume.array.transpose(2, 1, 0), data)
    np.testing.assert_array_equal(volume.affine, source.affine)
    assert volume.spacing == (2.0, 2.0, 2.0)
    assert volume.description == "anatomical.nii"
    # voxel (i, j, k) of the file is array[k, j, i]
    assert volume.array[7, 11, 5] == data[5, 11, 7]


def test_4d_needs_a_volume_index():
    path = nibabel_data("example4d.nii.gz")
    with pytest.raises(UnreadableInputError, match="2 volumes.*volume_index 0..1") as info:
        read_nifti(path)
    assert info.value.path == str(path)


def test_4d_volume_index_picks_that_volume():
    path = nibabel_data("example4d.nii.gz")
    source = nib.load(path)
    volume = read_nifti(path, volume_index=1)
    np.testing.assert_array_equal(volume.array.transpose(2, 1, 0), np.asanyarray(source.dataobj)[..., 1])
    np.testing.assert_array_equal(volume.affine, source.affine)
    assert volume.spacing == pytest.approx(tuple(nib.affines.voxel_sizes(source.affine)[::-1]))
    with pytest.raises(InvalidArgumentError, match="out of range"):
        read_nifti(path, volume_index=2)


def test_scaling_is_applied(tmp_path):
    data = np.arange(24, dtype=np.int16).reshape(2, 3, 4)
    image = nib.Nifti1Image(data, np.diag([1.5, 2.0, 3.0, 1.0]))
    image.header.set_slope_inter(0.5, 10.0)
    path = tmp_path / "scaled.nii.gz"
    nib.save(image, path)
    volume = read_nifti(path)
    assert volume.array.dtype == np.float32
    np.testing.assert_allclose(volume.array.transpose(2, 1, 0), data * 0.5 + 10.0)
    assert volume.spacing == (3.0, 2.0, 1.5)


def test_text_file_named_nii(tmp_path):
    path = tmp_path / "notes.nii"
    path.write_text("these are my notes, not an image\n" * 20)
    with pytest.raises(UnreadableInputError, match="not a NIfTI image") as info:
        read_nifti(path)
    assert info.value.path == str(path)


def test_truncated_gz(tmp_path):
    data = gzip.decompress(nibabel_data("example4d.nii.gz").read_bytes())
    path = tmp_path / "cut.nii.gz"
    path.write_bytes(gzip.compress(data[: len(data) // 2]))
    with pytest.raises(UnreadableInputError, match="truncated|damaged") as info:
        read_nifti(path, volume_index=0)
    assert info.value.path == str(path)


def test_analyze_is_not_nifti():
    with pytest.raises(UnreadableInputError, match="not a NIfTI"):
        read_nifti(nibabel_data("analyze.hdr"))


def test_missing_and_empty(tmp_path):
    with pytest.raises(UnreadableInputError, match="no such file"):
        read_nifti(tmp_path / "missing.nii")
    (tmp_path / "empty.nii").write_bytes(b"")
    with pytest.raises(UnreadableInputError, match="empty"):
        read_nifti(tmp_path / "empty.nii")


# ------------------------------------------------------------- crafted headers

# NIfTI-1 header offsets (little-endian as nibabel writes here): dim[0..7] int16, datatype int16.
DIM_OFFSET, DATATYPE_OFFSET = 40, 70


def crafted_nifti(path: Path, **fields) -> Path:
    """A small valid NIfTI-1 image (int16, 4 x 3 x 2), then header fields overwritten in its bytes.

    ``dims=(d0, d1, ...)`` overwrites dim[0..]; ``datatype=n`` the datatype code.
    A ``.gz`` name is gzip-compressed after patching.
    """
    import struct

    image = nib.Nifti1Image(np.arange(24, dtype=np.int16).reshape(4, 3, 2), np.diag([1.5, 2.0, 3.0, 1.0]))
    raw = bytearray(image.to_bytes())
    assert struct.unpack_from("<h", raw, DIM_OFFSET)[0] == 3  # little-endian, as assumed
    if "dims" in fields:
        struct.pack_into(f"<{len(fields['dims'])}h", raw, DIM_OFFSET, *fields["dims"])
    if "datatype" in fields:
        struct.pack_into("<h", raw, DATATYPE_OFFSET, fields["datatype"])
    path.write_bytes(gzip.compress(bytes(raw)) if path.name.endswith(".gz") else bytes(raw))
    return path


def test_the_crafted_base_file_reads(tmp_path):
    volume = read_nifti(crafted_nifti(tmp_path / "good.nii"))
    assert volume.array.shape == (2, 3, 4) and volume.spacing == (3.0, 2.0, 1.5)


@pytest.mark.parametrize("name, fields, problem", [
    # nibabel: OverflowError ("memory mapped length must be positive") before
    ("negative.nii", {"dims": (3, 4, -32768, 2)}, "dimensions 4 x -32768 x 2"),
    ("negative_gz.nii.gz", {"dims": (3, -2, 3, 2)}, "dimensions -2 x 3 x 2"),
    # nibabel: HeaderDataError before (dim[0] = 9 even flips its guess of the byte order)
    ("dim0.nii", {"dims": (9,)}, "damaged"),
    ("datatype.nii", {"datatype": 9999}, "data code 9999 not recognized"),
])
def test_a_damaged_header_is_one_error_naming_the_file(tmp_path, caplog, name, fields, problem):
    path = crafted_nifti(tmp_path / name, **fields)
    with pytest.raises(UnreadableInputError) as info:
        read_nifti(path)
    assert info.value.path == str(path)
    assert problem in info.value.problem
    assert "\n" not in str(info.value)
    # nibabel's own header-repair lines ("vox offset 0 too low ...", printed to stderr and passed
    # on to the root logger) name no file: they go to segstudio's debug log only
    assert [r.getMessage() for r in caplog.records if r.name.startswith("nibabel")] == []


@pytest.mark.parametrize("name", ["bomb.nii", "bomb.nii.gz"])
def test_a_huge_declared_volume_is_refused_before_reading(tmp_path, monkeypatch, name):
    """4096 x 4096 x 256 int16 declared in a few kilobytes: nibabel would allocate 8 GiB first."""
    import tracemalloc

    monkeypatch.setenv("SEGSTUDIO_MEMORY_LIMIT", "2G")
    path = crafted_nifti(tmp_path / name, dims=(3, 4096, 4096, 256, 1, 1, 1, 1))
    assert path.stat().st_size < 5000
    tracemalloc.start()
    try:
        with pytest.raises(UnreadableInputError) as info:
            read_nifti(path)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert info.value.path == str(path)
    assert "4096 x 4096 x 256" in info.value.problem and "more than the limit of 2.0 GiB" in info.value.problem
    assert peak < 32 * 2**20  # nothing near the declared size was allocated


def test_a_volume_within_the_limit_still_reads(tmp_path, monkeypatch):
    monkeypatch.setenv("SEGSTUDIO_MEMORY_LIMIT", "1M")
    assert read_nifti(crafted_nifti(tmp_path / "small.nii")).array.shape == (2, 3, 4)
