"""DICOM reading with pydicom's and nibabel's bundled test files (nothing downloaded)."""

from __future__ import annotations

import gzip
import logging
import os
import shutil
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.data import get_testdata_file
from pydicom.uid import generate_uid

from segstudio.errors import UnreadableInputError
from segstudio.io.dicom import list_series, read_series


def pydicom_file(name: str) -> Path:
    """A file bundled with pydicom; never downloads."""
    path = get_testdata_file(name, download=False)
    if path is None:  # pydicom ships these files; losing one must show, not skip
        pytest.fail(f"{name} is no longer bundled with this pydicom; pick another of its test files")
    return Path(path)


def nibabel_dicom(name: str, tmp_path: Path) -> Path:
    """A DICOM file from nibabel's test data, unzipped into tmp_path."""
    import nibabel

    source = Path(os.path.dirname(nibabel.__file__)) / "nicom" / "tests" / "data" / name
    if not source.exists():
        pytest.fail(f"{name} is no longer bundled with this nibabel; pick another of its test files")
    target = tmp_path / name.removesuffix(".gz")
    with gzip.open(source) as src, open(target, "wb") as dst:
        shutil.copyfileobj(src, dst)
    return target


def make_ct_series(
    folder: Path,
    z_offsets=(0.0, 5.0, 10.0, 15.0, 20.0),
    *,
    file_order=(3, 0, 4, 1, 2),
    series_uid: str | None = None,
    description: str = "axial test",
    tilt_y_per_mm: float = 0.0,
) -> list[str]:
    """Copies of CT_small, slice k moved by z_offsets[k] mm, written in a shuffled name order.

    Slice k is filled with stored value 1000 + k (HU -24 + k after the rescale),
    so the slices can be told apart; InstanceNumber runs backwards so that
    sorting by it would be wrong too. ``tilt_y_per_mm`` also moves slice k by
    ``tilt_y_per_mm * z_offsets[k]`` mm along y with the orientation unchanged,
    as a gantry-tilted CT series is stacked (tan of the tilt angle). Returns
    the SOPInstanceUIDs by slice.
    """
    folder.mkdir(parents=True, exist_ok=True)
    series_uid = series_uid or generate_uid()
    uids = []
    for k, offset in enumerate(z_offsets):
        ds = pydicom.dcmread(pydicom_file("CT_small.dcm"))
        ds.SOPInstanceUID = generate_uid()
        ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
        ds.SeriesInstanceUID = series_uid
        ds.SeriesDescription = description
        position = [float(v) for v in ds.ImagePositionPatient]
        position[2] += offset
        position[1] += tilt_y_per_mm * offset
        ds.ImagePositionPatient = position
        ds.InstanceNumber = 100 - k
        pixels = np.full((ds.Rows, ds.Columns), 1000 + k, dtype=ds.pixel_array.dtype)
        ds.PixelData = pixels.tobytes()
        name = f"img_{file_order[k] if k < len(file_order) else k:03d}.dcm"
        ds.save_as(folder / name)
        uids.append(ds.SOPInstanceUID)
    return uids


# ---------------------------------------------------------------- single files


def test_ct_small_single_file():
    volume = read_series(pydicom_file("CT_small.dcm"))
    ds = pydicom.dcmread(pydicom_file("CT_small.dcm"))
    assert volume.kind == "dicom" and volume.modality == "CT"
    assert volume.array.shape == (1, 128, 128)
    # RescaleIntercept -1024 with slope 1: integer HU kept exactly in int16.
    assert volume.array.dtype == np.int16
    np.testing.assert_array_equal(volume.array[0], ds.pixel_array.astype(np.int32) - 1024)
    assert volume.spacing[1:] == pytest.approx((0.661468, 0.661468))
    np.testing.assert_allclose(volume.affine[:3, 3], [-158.135803, -179.035797, -75.699997])
    assert volume.world_frame == "LPS"
    assert len(volume.dicom_datasets) == 1 and "PixelData" not in volume.dicom_datasets[0]


def test_mr_small_keeps_stored_type():
    volume = read_series(pydicom_file("MR_small.dcm"))
    assert volume.modality == "MR"
    assert volume.array.shape == (1, 64, 64)
    assert volume.array.dtype == np.int16  # no rescale: as stored
    np.testing.assert_array_equal(volume.array[0], pydicom.dcmread(pydicom_file("MR_small.dcm")).pixel_array)


def test_non_integer_rescale_gives_float32(tmp_path):
    ds = pydicom.dcmread(pydicom_file("CT_small.dcm"))
    ds.RescaleSlope = 0.5
    ds.RescaleIntercept = -10
    path = tmp_path / "scaled.dcm"
    ds.save_as(path)
    volume = read_series(path)
    assert volume.array.dtype == np.float32
    np.testing.assert_allclose(volume.array[0], ds.pixel_array * 0.5 - 10)


def test_legacy_multiframe_rt_dose():
    volume = read_series(pydicom_file("rtdose.dcm"))
    ds = pydicom.dcmread(pydicom_file("rtdose.dcm"))
    assert volume.array.shape == (15, 10, 10)
    offsets = [float(v) for v in ds.GridFrameOffsetVector]
    assert volume.spacing[0] == pytest.approx(abs(offsets[1] - offsets[0]))
    assert volume.source_frames is not None and len(volume.source_frames) == 15
    np.testing.assert_array_equal(volume.array, ds.pixel_array[list(volume.source_frames)])


def test_enhanced_multiframe_uses_per_frame_positions(tmp_path):
    path = nibabel_dicom("philips_mprage.dcm.gz", tmp_path)
    volume = read_series(path)
    ds = pydicom.dcmread(path, stop_before_pixels=True)
    frames = ds.PerFrameFunctionalGroupsSequence
    assert volume.array.shape == (176, 256, 256)
    assert volume.array.dtype == np.float32  # per-frame rescale slope 2.1079...
    assert volume.description == "MPRAGE_S2"
    iop = np.array(frames[0].PlaneOrientationSequence[0].ImageOrientationPatient, dtype=float)
    normal = np.cross(iop[:3], iop[3:])
    positions = np.array([f.PlanePositionSequence[0].ImagePositionPatient for f in frames], dtype=float)
    distance = positions[list(volume.source_frames)] @ normal
    assert np.all(np.diff(distance) > 0)
    # Every slice's first voxel is where the affine says.
    for k in (0, 57, 175):
        np.testing.assert_allclose(volume.affine @ [0, 0, k, 1], [*positions[volume.source_frames[k]], 1],
                                   atol=1e-3)
    np.testing.assert_allclose(volume.affine[:3, 0], iop[:3] * 1.0, atol=1e-6)
    assert volume.spacing[0] == pytest.approx(1.0, abs=1e-3)


def test_colour_multiframe_without_positions():
    volume = read_series(pydicom_file("SC_rgb_rle_2frame.dcm"))
    assert volume.array.shape == (2, 100, 100, 3)
    assert volume.is_colour
    assert any("ImagePositionPatient" in w for w in volume.warnings)


# ------------------------------------------------------------------ series


def test_series_sorted_by_position_not_name_or_instance_number(tmp_path):
    uids = make_ct_series(tmp_path / "series")
    volume = read_series(tmp_path / "series")
    assert volume.array.shape == (5, 128, 128)
    np.testing.assert_array_equal(volume.array[:, 0, 0], np.arange(5) - 24)
    assert [ds.SOPInstanceUID for ds in volume.dicom_datasets] == uids
    assert volume.spacing[0] == pytest.approx(5.0)
    assert volume.warnings == []


def test_series_affine_maps_every_voxel_to_its_patient_position(tmp_path):
    make_ct_series(tmp_path / "series")
    volume = read_series(tmp_path / "series")
    for k, ds in enumerate(volume.dicom_datasets):
        row, col = np.array(ds.ImageOrientationPatient[:3], float), np.array(ds.ImageOrientationPatient[3:], float)
        dy, dx = (float(v) for v in ds.PixelSpacing)
        ipp = np.array(ds.ImagePositionPatient, float)
        i, j = 17, 42
        expected = ipp + i * dx * row + j * dy * col
        np.testing.assert_allclose((volume.affine @ [i, j, k, 1])[:3], expected, atol=1e-6)


def test_reversed_positions_still_sorted_ascending(tmp_path):
    make_ct_series(tmp_path / "s", z_offsets=(20.0, 15.0, 10.0, 5.0, 0.0))
    volume = read_series(tmp_path / "s")
    np.testing.assert_array_equal(volume.array[:, 0, 0], np.arange(5)[::-1] - 24)
    assert volume.affine[2, 2] == pytest.approx(5.0)


def test_uneven_spacing_warns(tmp_path, caplog):
    make_ct_series(tmp_path / "s", z_offsets=(0.0, 5.0, 10.0, 20.0, 25.0))
    with caplog.at_level(logging.WARNING, logger="segstudio"):
        volume = read_series(tmp_path / "s")
    assert volume.spacing[0] == pytest.approx(5.0)
    assert any("uneven" in w for w in volume.warnings)
    assert "uneven" in caplog.text


def test_two_slices_at_one_position_is_an_error(tmp_path):
    make_ct_series(tmp_path / "s", z_offsets=(0.0, 5.0, 5.0))
    with pytest.raises(UnreadableInputError, match="share one position"):
        read_series(tmp_path / "s")


def test_list_series_and_choice(tmp_path):
    make_ct_series(tmp_path, series_uid="1.2.3.4", description="first")
    make_ct_series(tmp_path, z_offsets=(0.0, 2.0), file_order=(10, 11), series_uid="1.2.3.5", description="second")
    (tmp_path / "notes.txt").write_text("not DICOM")
    series = list_series(tmp_path)
    assert {s.series_uid: s.num_files for s in series} == {"1.2.3.4": 5, "1.2.3.5": 2}
    assert {s.description for s in series} == {"first", "second"}
    assert all(s.modality == "CT" and (s.rows, s.columns) == (128, 128) for s in series)

    with pytest.raises(UnreadableInputError) as info:
        read_series(tmp_path)
    message = str(info.value)
    assert "2 DICOM series" in message and "series_uid" in message and "1.2.3.5" in message
    assert read_series(tmp_path, series_uid="1.2.3.5").num_slices == 2
    with pytest.raises(UnreadableInputError, match="no series with UID 9.9"):
        read_series(tmp_path, series_uid="9.9")


def test_folder_without_dicom(tmp_path):
    (tmp_path / "a.txt").write_text("hello")
    with pytest.raises(UnreadableInputError, match="no DICOM images") as info:
        list_series(tmp_path)
    assert info.value.path == str(tmp_path)


# ------------------------------------------------------------------ errors


def test_truncated_file_is_named(tmp_path):
    data = pydicom_file("CT_small.dcm").read_bytes()
    path = tmp_path / "half.dcm"
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(UnreadableInputError, match="truncated") as info:
        read_series(path)
    assert info.value.path == str(path)


def test_dicom_without_pixel_data(tmp_path):
    ds = pydicom.dcmread(pydicom_file("CT_small.dcm"))
    del ds.PixelData
    path = tmp_path / "nopix.dcm"
    ds.save_as(path)
    with pytest.raises(UnreadableInputError, match="no Pixel Data") as info:
        read_series(path)
    assert info.value.path == str(path)
    with pytest.raises(UnreadableInputError, match="no image .*RT Plan"):
        read_series(pydicom_file("rtplan.dcm"))


def test_text_file_is_not_dicom(tmp_path):
    path = tmp_path / "fake.dcm"
    path.write_text("this is not a DICOM file\n" * 10)
    with pytest.raises(UnreadableInputError, match="not a DICOM file"):
        read_series(path)


def test_inconsistent_series_names_the_odd_file(tmp_path):
    make_ct_series(tmp_path)
    ds = pydicom.dcmread(pydicom_file("MR_small.dcm"))  # 64 x 64
    ds.SeriesInstanceUID = pydicom.dcmread(tmp_path / "img_000.dcm").SeriesInstanceUID
    ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
    odd = tmp_path / "img_099.dcm"
    ds.save_as(odd)
    with pytest.raises(UnreadableInputError, match="64 x 64.*128 x 128.*inconsistent") as info:
        read_series(tmp_path)
    assert info.value.path == str(odd)


def test_inconsistent_orientation(tmp_path):
    make_ct_series(tmp_path)
    path = tmp_path / "img_002.dcm"
    ds = pydicom.dcmread(path)
    ds.ImageOrientationPatient = [0, 1, 0, 0, 0, -1]
    ds.save_as(path)
    with pytest.raises(UnreadableInputError, match="orientation") as info:
        read_series(tmp_path)
    assert info.value.path == str(path)


def test_bad_files_in_a_folder_are_skipped(tmp_path, caplog):
    make_ct_series(tmp_path)
    data = pydicom_file("CT_small.dcm").read_bytes()
    (tmp_path / "zz_truncated.dcm").write_bytes(data[: len(data) // 2])
    no_pixels = pydicom.dcmread(tmp_path / "img_000.dcm")
    no_pixels.SOPInstanceUID = generate_uid()
    no_pixels.ImagePositionPatient = [0, 0, 500]
    del no_pixels.PixelData
    no_pixels.save_as(tmp_path / "zz_nopixels.dcm")
    (tmp_path / "readme.nii").write_text("text, not an image")
    with caplog.at_level(logging.WARNING, logger="segstudio"):
        volume = read_series(tmp_path)
    assert volume.num_slices == 5
    np.testing.assert_array_equal(volume.array[:, 0, 0], np.arange(5) - 24)
    assert any("zz_nopixels.dcm" in w for w in volume.warnings)
    assert any("zz_truncated.dcm" in w and "truncated" in w for w in volume.warnings)
    assert "zz_nopixels.dcm" in caplog.text


def test_missing_decoder_names_the_package(monkeypatch):
    # 12-bit JPEG Extended: Pillow (installed) cannot decode it, pylibjpeg-libjpeg can.
    path = pydicom_file("JPEG-lossy.dcm")
    if _decodes(path):
        # a decoder is installed here: make pydicom fail as it does without one
        def no_decoder(self):
            raise RuntimeError("Unable to decode the pixel data: no plugins are available")

        monkeypatch.setattr(pydicom.dataset.Dataset, "pixel_array", property(no_decoder))
    with pytest.raises(UnreadableInputError, match="pylibjpeg-libjpeg") as info:
        read_series(path)
    assert info.value.path == str(path)
    assert "JPEG Extended" in str(info.value)


def test_no_decoder_at_all(monkeypatch):
    import pydicom.pixels

    class NoDecoder:
        is_available = False

    ds = pydicom.dcmread(pydicom_file("JPEG2000.dcm"))

    def fail(*args, **kwargs):
        raise RuntimeError("Unable to decode as there are no pixel data decoders available")

    monkeypatch.setattr(pydicom.pixels, "get_decoder", lambda syntax: NoDecoder())
    monkeypatch.setattr(type(ds), "pixel_array", property(fail))
    from segstudio.io.dicom import _pixels

    with pytest.raises(UnreadableInputError, match="no decoder .* pylibjpeg-openjpeg"):
        _pixels(ds, Path("JPEG2000.dcm"))


# ------------------------------------------------------------------ privacy


def test_patient_identity_never_logged(tmp_path, caplog):
    ds = pydicom.dcmread(pydicom_file("CT_small.dcm"))
    name, patient_id = str(ds.PatientName), str(ds.PatientID)
    assert name and patient_id
    make_ct_series(tmp_path / "s")
    (tmp_path / "s" / "junk.dcm").write_bytes(b"\0" * 10)
    with caplog.at_level(logging.DEBUG):
        read_series(pydicom_file("CT_small.dcm"))
        list_series(tmp_path / "s")
        volume = read_series(tmp_path / "s")
    text = caplog.text + " ".join(r.getMessage() for r in caplog.records)
    assert caplog.records  # something was logged, so the check means something
    for secret in (name, patient_id, name.replace("^", " "), str(ds.get("PatientBirthDate", "")) or "\0"):
        assert secret not in text
    assert name not in volume.description and patient_id not in " ".join(volume.warnings)


# ------------------------------------------------------------------ as a task


def test_read_series_steps_reports_progress_and_cancels(tmp_path):
    from segstudio.io.dicom import read_series_steps
    from segstudio.tasks import CancelToken, TaskCancelled, run_to_completion

    make_ct_series(tmp_path)
    seen = []
    volume = run_to_completion(read_series_steps(tmp_path), seen.append)
    assert volume.num_slices == 5
    reads = [p for p in seen if p.stage == "read"]
    assert [(p.done, p.total) for p in reads] == [(k, 5) for k in range(1, 6)]

    token = CancelToken()
    task = read_series_steps(tmp_path, cancel=token)
    next(task)  # scanning
    next(task)  # first file read
    token.cancel()
    with pytest.raises(TaskCancelled):
        run_to_completion(task)


def _decodes(path: Path) -> bool:
    try:
        pydicom.dcmread(path).pixel_array
    except (RuntimeError, NotImplementedError):
        return False
    return True


# ---------------------------------------------------------------- MONOCHROME1

# A 16 x 16 computed radiograph (CR, MONOCHROME1: low values are shown white) among
# pydicom's own test files; its header claims explicit VR but the body is implicit.
CR_FILE = "77654033/CR1/6154"
cr_file_warning = pytest.mark.filterwarnings("ignore:Expected explicit VR:UserWarning")


def cr_copies(folder: Path, kinds: tuple[str, ...]) -> list[Path]:
    """Copies of the CR file as the slices of one series, 2 mm apart, with the given
    PhotometricInterpretation each."""
    folder.mkdir(parents=True, exist_ok=True)
    series_uid = generate_uid()
    paths = []
    for k, kind in enumerate(kinds):
        ds = pydicom.dcmread(pydicom_file(CR_FILE))
        ds.SeriesInstanceUID = series_uid
        ds.SOPInstanceUID = generate_uid()
        ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
        ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
        ds.ImagePositionPatient = [0.0, 0.0, 2.0 * k]
        ds.PhotometricInterpretation = kind
        paths.append(folder / f"slice{k}.dcm")
        ds.save_as(paths[-1])
    return paths


@cr_file_warning
def test_monochrome1_radiograph_is_flagged_and_keeps_its_stored_values():
    path = pydicom_file(CR_FILE)
    ds = pydicom.dcmread(path)
    assert ds.PhotometricInterpretation == "MONOCHROME1" and ds.Modality == "CR"
    volume = read_series(path)
    assert volume.invert is True
    # the stored values, modality rescale applied, are never inverted
    assert volume.array.shape == (1, 16, 16) and volume.array.dtype == np.float32
    expected = ds.pixel_array * float(ds.RescaleSlope) + float(ds.RescaleIntercept)
    np.testing.assert_allclose(volume.array[0], expected, rtol=1e-6)
    assert float(volume.array.min()) == pytest.approx(1994 * 0.684 + 200)


@pytest.mark.parametrize("name", ["CT_small.dcm", "MR_small.dcm", "rtdose.dcm"])
def test_monochrome2_files_are_not_inverted(name):
    assert pydicom.dcmread(pydicom_file(name), stop_before_pixels=True).PhotometricInterpretation == "MONOCHROME2"
    assert read_series(pydicom_file(name)).invert is False


@cr_file_warning
def test_a_monochrome1_series_is_inverted_as_a_whole(tmp_path):
    cr_copies(tmp_path / "cr", ("MONOCHROME1",) * 3)
    volume = read_series(tmp_path / "cr")
    assert volume.invert is True and volume.array.shape == (3, 16, 16)
    assert volume.spacing[0] == pytest.approx(2.0)


@cr_file_warning
def test_a_series_mixing_monochrome1_and_monochrome2_is_refused(tmp_path):
    folder = tmp_path / "mixed"
    paths = cr_copies(folder, ("MONOCHROME1", "MONOCHROME1", "MONOCHROME2"))
    with pytest.raises(UnreadableInputError) as caught:
        read_series(folder)
    assert caught.value.path == str(folder)
    problem = caught.value.problem
    assert "mixes MONOCHROME1" in problem and "2 file(s), e.g. slice0.dcm" in problem
    assert "MONOCHROME2 images (1 file(s), e.g. slice2.dcm)" in problem
    # the MONOCHROME1 files alone read fine
    assert read_series(paths[:2]).invert is True


def test_a_modality_lut_sequence_is_applied_instead_of_a_rescale():
    """pydicom-data's mlut_18.dcm maps stored values through a 4096-entry table
    (first stored value mapped: -2048); the volume holds the table's output."""
    path = pydicom_file("mlut_18.dcm")
    ds = pydicom.dcmread(path)
    item = ds.ModalityLUTSequence[0]
    entries, first, _bits = (int(v) for v in item.LUTDescriptor)
    table = np.frombuffer(item.LUTData, np.uint16) if isinstance(item.LUTData, bytes) else np.asarray(item.LUTData)
    assert entries == 4096 and first == -2048 and len(table) == entries
    stored = ds.pixel_array.astype(np.int64)
    expected = table[np.clip(stored - first, 0, entries - 1)]
    volume = read_series(path)
    assert volume.array.shape == (1, 512, 512)
    np.testing.assert_array_equal(volume.array[0], expected)
    assert volume.array.min() == 0 and volume.array.max() == 65535  # not the stored -2048..2047


# ------------------------------------------------------------- crafted headers


def set_raw(ds, keyword: str, text: str) -> None:
    """Put *text* as the stored bytes of *keyword*, unchecked, as a damaged file holds it
    (pydicom refuses to write a RescaleSlope of "abc" through its normal setters)."""
    from pydicom.dataelem import RawDataElement
    from pydicom.datadict import dictionary_VR, tag_for_keyword
    from pydicom.tag import Tag

    tag = Tag(tag_for_keyword(keyword))
    value = text.encode("ascii") + (b" " if len(text) % 2 else b"")
    ds[tag] = RawDataElement(tag, dictionary_VR(tag), len(value), value, 0, False, True)


def ct_copy(path: Path, edit) -> Path:
    ds = pydicom.dcmread(pydicom_file("CT_small.dcm"))
    edit(ds)
    ds.save_as(path)
    return path


invalid_value_warning = pytest.mark.filterwarnings("ignore:Invalid value for VR:UserWarning")


@invalid_value_warning
@pytest.mark.parametrize("keyword, text, problem", [
    ("RescaleSlope", "abc", "RescaleSlope is not a number ('abc')"),  # was a ValueError traceback
    ("RescaleIntercept", "1e999", "RescaleIntercept is not a finite number"),
    ("NumberOfFrames", "abc", "NumberOfFrames is not a whole number ('abc')"),
])
def test_a_header_value_that_is_not_a_number_is_one_error_naming_the_file(tmp_path, keyword, text, problem):
    path = ct_copy(tmp_path / "bad.dcm", lambda ds: set_raw(ds, keyword, text))
    with pytest.raises(UnreadableInputError) as info:
        read_series(path)
    assert info.value.path == str(path)
    assert problem in info.value.problem


@invalid_value_warning
def test_a_slice_with_a_bad_rescale_is_skipped_from_its_series(tmp_path, caplog):
    make_ct_series(tmp_path / "s")
    bad = tmp_path / "s" / "img_002.dcm"
    ds = pydicom.dcmread(bad)
    set_raw(ds, "RescaleSlope", "abc")
    ds.save_as(bad)
    with caplog.at_level(logging.WARNING, logger="segstudio"):
        volume = read_series(tmp_path / "s")
    assert volume.num_slices == 4
    assert any(str(bad) in w and "RescaleSlope" in w for w in volume.warnings)
    assert f"{bad}: RescaleSlope is not a number" in caplog.text


def test_a_modality_lut_shorter_than_its_descriptor_is_one_error(tmp_path):
    """An OW table of 100 entries under a descriptor of 4096: pydicom's unpack raised struct.error."""
    ds = pydicom.dcmread(pydicom_file("mlut_18.dcm"))
    item = ds.ModalityLUTSequence[0]
    item["LUTData"].VR = "OW"
    item.LUTData = np.arange(100, dtype="<u2").tobytes()
    path = tmp_path / "short_lut.dcm"
    ds.save_as(path)
    with pytest.raises(UnreadableInputError) as info:
        read_series(path)
    assert info.value.path == str(path)
    assert info.value.problem == "its Modality LUT holds 100 entries but its LUTDescriptor declares 4096 " \
                                 "(the file is damaged)"


def test_a_zero_pixel_spacing_falls_back_to_1_mm_and_unknown_geometry(tmp_path, caplog):
    path = ct_copy(tmp_path / "zero.dcm", lambda ds: setattr(ds, "PixelSpacing", [0, 0]))
    with caplog.at_level(logging.WARNING, logger="segstudio"):
        volume = read_series(path)
    assert volume.spacing[1:] == (1.0, 1.0)
    np.testing.assert_allclose(np.linalg.norm(volume.affine[:3, :2], axis=0), [1.0, 1.0])
    assert volume.geometry_known is False
    assert volume.warnings == ["PixelSpacing 0.0\\0.0 is not a valid pixel size (it must be above 0): "
                               "1 mm pixels assumed, the geometry is unknown"]
    assert f"{path}: PixelSpacing 0.0\\0.0 is not a valid" in caplog.text


def test_geometry_is_known_for_a_positioned_series_only(tmp_path):
    make_ct_series(tmp_path / "s", z_offsets=(0.0, 5.0))
    assert read_series(tmp_path / "s").geometry_known is True
    assert read_series(pydicom_file("CT_small.dcm")).geometry_known is True
    multiframe = read_series(pydicom_file("emri_small.dcm"))  # no plane position or orientation anywhere
    assert multiframe.num_slices == 10 and multiframe.geometry_known is False


def test_a_series_declaring_more_than_memory_allows_is_refused_before_decoding(tmp_path, monkeypatch):
    import pydicom.dataset

    make_ct_series(tmp_path / "s")  # 5 x 128 x 128 int16: 80 KiB of pixels, 1.3 MiB with working copies
    decoded = []
    monkeypatch.setattr(pydicom.dataset.Dataset, "pixel_array",
                        property(lambda ds: decoded.append(1) or pytest.fail("decoded")))
    monkeypatch.setenv("SEGSTUDIO_MEMORY_LIMIT", "1M")
    with pytest.raises(UnreadableInputError) as info:
        read_series(tmp_path / "s")
    assert info.value.path == str(tmp_path / "s")
    assert "the volume (5 x 128 x 128, 81,920 voxels)" in info.value.problem and "limit of 1.0 MiB" in info.value.problem
    assert decoded == []


def test_a_series_whose_later_files_declare_huge_slices_is_refused_before_decoding(tmp_path, monkeypatch):
    import pydicom.dataset

    from pydicom.uid import RLELossless

    make_ct_series(tmp_path / "s")
    last = sorted((tmp_path / "s").iterdir())[-1]
    ds = pydicom.dcmread(last)
    ds.Rows = ds.Columns = 2048  # RLE-compressed zeros: a few kilobytes declaring 8 MiB
    ds.compress(RLELossless, np.zeros((2048, 2048), np.int16))
    ds.save_as(last)
    assert last.stat().st_size < 200_000  # RLE of zeros: about 1/60 of the pixels
    monkeypatch.setattr(pydicom.dataset.Dataset, "pixel_array", property(lambda ds: pytest.fail("decoded")))
    monkeypatch.setenv("SEGSTUDIO_MEMORY_LIMIT", "64M")  # the first file's size x 5 slices would pass
    with pytest.raises(UnreadableInputError, match="5 x 2048 x 2048"):
        read_series(tmp_path / "s")


def test_a_file_declaring_huge_frames_is_refused_before_decoding(tmp_path, monkeypatch):
    monkeypatch.setenv("SEGSTUDIO_MEMORY_LIMIT", "1G")
    path = ct_copy(tmp_path / "frames.dcm", lambda ds: setattr(ds, "NumberOfFrames", 100000))
    with pytest.raises(UnreadableInputError) as info:
        read_series(path)
    assert info.value.path == str(path)
    assert "the volume (100000 x 128 x 128" in info.value.problem


def test_files_that_are_not_dicom_are_counted_in_one_warning_per_folder(tmp_path, caplog):
    make_ct_series(tmp_path / "s", z_offsets=(0.0, 5.0))
    for name in ("notes.txt", "scan.jpg", "thumbs.db", "report.pdf"):
        (tmp_path / "s" / name).write_bytes(b"not dicom at all")
    (tmp_path / "s" / "labels.nii.gz").write_bytes(b"a volume of its own, not counted")
    with caplog.at_level(logging.WARNING, logger="segstudio"):
        assert read_series(tmp_path / "s").num_slices == 2
    lines = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert lines == [f"{tmp_path / 's'}: skipped 4 file(s) that are not DICOM (notes.txt, report.pdf, scan.jpg, ...)"]
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="segstudio"):
        list_series(tmp_path / "s")  # the same folder scanned again (listing, then reading): said once
        assert caplog.records == []
        (tmp_path / "s" / "more.txt").write_text("another")
        list_series(tmp_path / "s")
    assert [r.getMessage() for r in caplog.records] == [
        f"{tmp_path / 's'}: skipped 5 file(s) that are not DICOM (more.txt, notes.txt, report.pdf, ...)"]


def test_a_tilted_series_keeps_its_sheared_grid(tmp_path):
    make_ct_series(tmp_path / "tilt", tilt_y_per_mm=np.tan(np.radians(15.0)))
    volume = read_series(tmp_path / "tilt")
    assert volume.geometry_known and volume.warnings == []
    for k, ds in enumerate(volume.dicom_datasets):
        np.testing.assert_allclose(volume.affine @ [0, 0, k, 1], [*map(float, ds.ImagePositionPatient), 1],
                                   atol=1e-6)


def test_a_zero_byte_dcm_beside_a_series_is_reported(tmp_path, caplog):
    make_ct_series(tmp_path / "s", z_offsets=(0.0, 5.0))
    (tmp_path / "s" / "zero.dcm").write_bytes(b"")  # an interrupted copy
    with caplog.at_level(logging.WARNING, logger="segstudio"):
        assert read_series(tmp_path / "s").num_slices == 2
    assert f"{tmp_path / 's'}: skipped 1 file(s) that are not DICOM (zero.dcm)" in caplog.text
