"""Label volumes written for medical viewers land on the source's voxels."""

from __future__ import annotations

import logging
import warnings

import nibabel as nib
import numpy as np
import pydicom
import pytest
from PIL import Image

from segstudio.errors import ExportError, InvalidArgumentError
from segstudio.io.dicom import read_series
from segstudio.io.masks import UNLABELLED_16, default_palette, read_mask, read_palette
from segstudio.io.medical_export import write_dicom_seg, write_nifti_labels, write_png_slices
from segstudio.io.nifti import read_nifti
from tests.io.test_dicom import make_ct_series, nibabel_dicom
from tests.io.test_nifti import nibabel_data

NAMES = ["background", "liver", "kidney", "tumour"]
COLOURS = [(0, 0, 0), (220, 40, 40), (40, 200, 60), (250, 220, 0)]


def labels_for(volume, marks):
    """Unlabelled (255) but for *marks*: ``{(i, j, k): class index}``."""
    labels = np.full(volume.shape_zyx, 255, np.uint8)
    for (i, j, k), value in marks.items():
        labels[k, j, i] = value
    return labels


# ------------------------------------------------------------------ NIfTI


@pytest.mark.parametrize("name, index", [
    ("anatomical.nii", None),  # qform = sform, code 2
    ("example4d.nii.gz", 1),  # oblique, 4-D
    ("example_nifti2.nii.gz", 0),  # NIfTI-2
    ("standard.nii.gz", None),  # qform code 0, sform code 2
])
def test_nifti_source_round_trip(tmp_path, name, index):
    source_path = nibabel_data(name)
    source = nib.load(source_path)
    volume = read_nifti(source_path, volume_index=index)
    marks = {(1, 2, 3): 1, (0, 0, 0): 2, (source.shape[0] - 1, source.shape[1] - 1, source.shape[2] - 1): 3}
    out = write_nifti_labels(tmp_path / "labels.nii.gz", labels_for(volume, marks), volume)
    written = nib.load(out)
    assert type(written) is type(source)
    assert written.shape == source.shape[:3]
    np.testing.assert_allclose(written.affine, source.affine, atol=1e-6)
    np.testing.assert_allclose(written.get_qform(), source.get_qform(), atol=1e-6)
    np.testing.assert_allclose(written.get_sform(), source.get_sform(), atol=1e-6)
    assert int(written.header["qform_code"]) == int(source.header["qform_code"])
    assert int(written.header["sform_code"]) == int(source.header["sform_code"])
    assert written.get_data_dtype() == np.uint8
    data = np.asanyarray(written.dataobj)
    for (i, j, k), value in marks.items():
        assert data[i, j, k] == value + 1  # class i is i + 1, unlabelled 0
    assert int(np.count_nonzero(data)) == len(marks)


def test_dicom_source_to_nifti_ras(tmp_path):
    make_ct_series(tmp_path / "s")
    volume = read_series(tmp_path / "s")
    marks = {(17, 42, 3): 2, (0, 0, 0): 1}
    out = write_nifti_labels(tmp_path / "labels.nii", labels_for(volume, marks), volume)
    written = nib.load(out)
    assert written.shape == (128, 128, 5)
    data = np.asanyarray(written.dataobj)
    for (i, j, k), value in marks.items():
        assert data[i, j, k] == value + 1
        # The voxel's RAS position is the DICOM (LPS) position with x and y negated.
        ds = volume.dicom_datasets[k]
        row = np.array(ds.ImageOrientationPatient[:3], float)
        col = np.array(ds.ImageOrientationPatient[3:], float)
        dy, dx = (float(v) for v in ds.PixelSpacing)
        lps = np.array(ds.ImagePositionPatient, float) + i * dx * row + j * dy * col
        ras = (written.affine @ [i, j, k, 1])[:3]
        # NIfTI-1 stores the affine in float32: about 1e-5 mm at these coordinates.
        np.testing.assert_allclose(ras, [-lps[0], -lps[1], lps[2]], atol=1e-4)
    assert int(written.header["sform_code"]) == 1 and int(written.header["qform_code"]) == 1


def test_multiframe_dicom_to_nifti(tmp_path):
    volume = read_series(nibabel_dicom("philips_mprage.dcm.gz", tmp_path))
    labels = labels_for(volume, {(10, 20, 100): 1})
    written = nib.load(write_nifti_labels(tmp_path / "mf.nii.gz", labels, volume))
    ds = pydicom.dcmread(tmp_path / "philips_mprage.dcm", stop_before_pixels=True)
    frame = ds.PerFrameFunctionalGroupsSequence[volume.source_frames[100]]
    lps = np.array(frame.PlanePositionSequence[0].ImagePositionPatient, float)
    iop = np.array(frame.PlaneOrientationSequence[0].ImageOrientationPatient, float)
    lps = lps + 10 * iop[:3] + 20 * iop[3:]  # 1 mm pixels
    ras = (written.affine @ [10, 20, 100, 1])[:3]
    np.testing.assert_allclose(ras, [-lps[0], -lps[1], lps[2]], atol=1e-3)
    assert np.asanyarray(written.dataobj)[10, 20, 100] == 2


def test_uneven_dicom_spacing_refuses_nifti(tmp_path):
    make_ct_series(tmp_path / "s", z_offsets=(0.0, 5.0, 10.0, 20.0, 25.0))
    volume = read_series(tmp_path / "s")
    labels = np.zeros(volume.shape_zyx, np.uint8)
    with pytest.raises(ExportError, match="not evenly spaced.*DICOM SEG") as info:
        write_nifti_labels(tmp_path / "x.nii.gz", labels, volume)
    assert "allow_uneven_spacing=True (command line: --allow-uneven-spacing)" in info.value.problem
    assert not (tmp_path / "x.nii.gz").exists()
    write_nifti_labels(tmp_path / "x.nii.gz", labels, volume, allow_uneven_spacing=True)
    assert (tmp_path / "x.nii.gz").exists()


def _corners(shape):
    return [np.array([i, j, k, 1.0]) for i in (0, shape[0] - 1) for j in (0, shape[1] - 1) for k in (0, shape[2] - 1)]


def _expected_ras(volume, i, j, k):
    """Where voxel (i, j, k) is, from the sorted slice's own DICOM header (LPS), in RAS."""
    ds = volume.dicom_datasets[k]
    row = np.array(ds.ImageOrientationPatient[:3], float)
    col = np.array(ds.ImageOrientationPatient[3:], float)
    dy, dx = (float(v) for v in ds.PixelSpacing)
    lps = np.array(ds.ImagePositionPatient, float) + i * dx * row + j * dy * col
    return np.array([-lps[0], -lps[1], lps[2]])


def test_an_untilted_series_has_a_qform_that_agrees_with_the_sform(tmp_path, caplog):
    make_ct_series(tmp_path / "s")
    volume = read_series(tmp_path / "s")
    with caplog.at_level(logging.WARNING, logger="segstudio"):
        written = nib.load(write_nifti_labels(tmp_path / "l.nii.gz", np.zeros(volume.shape_zyx, np.uint8), volume))
    assert int(written.header["qform_code"]) == 1 and int(written.header["sform_code"]) == 1
    for corner in _corners(written.shape):
        expected = _expected_ras(volume, *corner[:3].astype(int))
        np.testing.assert_allclose((written.get_qform() @ corner)[:3], expected, atol=0.01)
        np.testing.assert_allclose((written.get_sform() @ corner)[:3], expected, atol=1e-4)
    assert caplog.records == []


def test_a_gantry_tilted_series_is_exact_in_the_sform_and_never_a_wrong_qform(tmp_path, caplog):
    """Slices stacked along y as z increases (15 degrees), orientation unchanged: a sheared grid.

    nibabel's nearest-rotation qform placed a corner 11 mm off; ITK reads the
    qform whenever the sform is not orthonormal, so the qform must not claim it."""
    make_ct_series(tmp_path / "tilt", tilt_y_per_mm=np.tan(np.radians(15.0)))
    volume = read_series(tmp_path / "tilt")
    labels = labels_for(volume, {(3, 4, 4): 1})
    with caplog.at_level(logging.WARNING, logger="segstudio"):
        written = nib.load(write_nifti_labels(tmp_path / "tilt.nii.gz", labels, volume))
    np.testing.assert_allclose(written.get_sform(), volume.affine_ras(), atol=1e-4)
    for corner in _corners(written.shape):
        np.testing.assert_allclose((written.get_sform() @ corner)[:3], _expected_ras(volume, *corner[:3].astype(int)),
                                   atol=1e-4)
    qform_error = max(np.linalg.norm((written.get_qform() @ c - written.get_sform() @ c)[:3])
                      for c in _corners(written.shape))
    assert int(written.header["qform_code"]) == 0 or qform_error < 0.01
    assert int(written.header["qform_code"]) == 0 and int(written.header["sform_code"]) == 1
    np.testing.assert_allclose(written.affine, written.get_sform())  # what nibabel (and FSL, AFNI) use
    np.testing.assert_allclose(written.header.get_zooms(), np.linalg.norm(volume.affine[:3, :3], axis=0), rtol=1e-6)
    assert np.asanyarray(written.dataobj)[3, 4, 4] == 2
    [record] = caplog.records
    message = record.getMessage()
    assert message.startswith(f"{volume.source}: the slice grid is sheared by 15.0 degrees (gantry tilt)")
    assert "qform_code 0" in message and "up to 11 mm off" in message and "\n" not in message


def test_a_source_without_position_is_written_as_unknown_geometry(tmp_path, caplog):
    """A multi-frame MR without plane position or orientation (emri_small): codes 0, and said so."""
    from tests.io.test_dicom import pydicom_file

    volume = read_series(pydicom_file("emri_small.dcm"))
    with caplog.at_level(logging.WARNING, logger="segstudio.io.medical_export"):
        written = nib.load(write_nifti_labels(tmp_path / "mf.nii.gz", np.zeros(volume.shape_zyx, np.uint8), volume))
    assert (int(written.header["qform_code"]), int(written.header["sform_code"])) == (0, 0)
    assert written.shape == (64, 64, 10)
    assert f"{volume.source}: the source does not say where its voxels are" in caplog.text
    assert "(qform and sform code 0)" in caplog.text


def test_a_zero_pixel_spacing_exports_without_a_crash(tmp_path):
    """PixelSpacing 0\\0 made nibabel's qform decomposition fail with HeaderDataError."""
    from tests.io.test_dicom import ct_copy

    path = ct_copy(tmp_path / "zero.dcm", lambda ds: setattr(ds, "PixelSpacing", [0, 0]))
    volume = read_series(path)
    written = nib.load(write_nifti_labels(tmp_path / "zero.nii.gz", np.zeros(volume.shape_zyx, np.uint8), volume))
    assert (int(written.header["qform_code"]), int(written.header["sform_code"])) == (0, 0)
    assert written.header.get_zooms()[:2] == (1.0, 1.0)


def test_a_tiff_stack_has_no_patient_geometry(tmp_path):
    import tifffile

    from segstudio.io.volume import read_volume

    tifffile.imwrite(tmp_path / "stack.tif", np.zeros((3, 8, 9), np.uint8), photometric="minisblack")
    volume = read_volume(tmp_path / "stack.tif")
    written = nib.load(write_nifti_labels(tmp_path / "t.nii.gz", np.zeros(volume.shape_zyx, np.uint8), volume))
    assert (int(written.header["qform_code"]), int(written.header["sform_code"])) == (0, 0)
    assert written.shape == (9, 8, 3)


def test_nifti_rejects_wrong_shape(tmp_path):
    volume = read_nifti(nibabel_data("anatomical.nii"))
    with pytest.raises(InvalidArgumentError, match="shape"):
        write_nifti_labels(tmp_path / "x.nii", np.zeros((2, 2, 2), np.uint8), volume)


# ------------------------------------------------------------------ NIfTI values and label tables


def _read_slicer_table(path):
    """3D Slicer's colour table: ``{value: (name, (r, g, b), alpha)}``."""
    table = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.strip() and not line.startswith("#"):
            value, name, r, g, b, a = line.split()
            table[int(value)] = (name, (int(r), int(g), int(b)), int(a))
    return table


def _read_itksnap_labels(path):
    """ITK-SNAP's label description: ``{value: (label, (r, g, b), alpha, vis, mesh)}``."""
    import re

    pattern = re.compile(r'^\s*(\d+)\s+(\d+)\s+(\d+)\s+(\d+)\s+([0-9.]+)\s+([01])\s+([01])\s+"([^"]*)"\s*$')
    table = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.startswith("#") or not line.strip():
            continue
        match = pattern.match(line)
        assert match, line
        value, r, g, b, alpha, vis, mesh, label = match.groups()
        table[int(value)] = (label, (int(r), int(g), int(b)), float(alpha), int(vis), int(mesh))
    return table


def test_painted_background_and_unlabelled_read_back_as_different_values(tmp_path):
    make_ct_series(tmp_path / "s", z_offsets=(0.0, 5.0))
    volume = read_series(tmp_path / "s")
    labels = np.full(volume.shape_zyx, 255, np.uint8)  # unlabelled
    labels[0, :10, :10] = 0  # "background", painted
    labels[1, 20:30, 20:30] = 2  # kidney
    data = np.asanyarray(nib.load(write_nifti_labels(tmp_path / "l.nii.gz", labels, volume, NAMES, COLOURS)).dataobj)
    zyx = data.transpose(2, 1, 0)
    background, unlabelled, kidney = zyx[0, 5, 5], zyx[0, 50, 50], zyx[1, 25, 25]
    assert unlabelled == 0 and background != unlabelled and kidney not in (0, background)
    assert np.count_nonzero(zyx == background) == 100 and np.count_nonzero(zyx == kidney) == 100
    assert np.count_nonzero(zyx == 0) == zyx.size - 200
    # and in a uint16 map
    wide = labels.astype(np.uint16)
    wide[labels == 255] = UNLABELLED_16
    wide[1, 0, 0] = 300
    data = np.asanyarray(nib.load(write_nifti_labels(tmp_path / "w.nii.gz", wide, volume, WIDE_NAMES)).dataobj)
    zyx = data.transpose(2, 1, 0)
    assert (zyx[0, 5, 5], zyx[0, 50, 50], zyx[1, 25, 25], zyx[1, 0, 0]) == (1, 0, 3, 301)


def test_label_tables_beside_the_nifti_name_every_value(tmp_path):
    make_ct_series(tmp_path / "s", z_offsets=(0.0, 5.0))
    volume = read_series(tmp_path / "s")
    names = ["background", "left kidney", 'a "quoted" organ', "tumour"]
    labels = np.full(volume.shape_zyx, 255, np.uint8)
    for index in range(4):
        labels[index % 2, index, :5] = index
    out = write_nifti_labels(tmp_path / "case.nii.gz", labels, volume, names, COLOURS)
    assert sorted(p.name for p in tmp_path.iterdir() if p.is_file()) == [
        "case.ctbl", "case.label.txt", "case.nii.gz"]
    data = np.asanyarray(nib.load(out).dataobj).transpose(2, 1, 0)

    slicer = _read_slicer_table(tmp_path / "case.ctbl")
    assert (tmp_path / "case.ctbl").read_text().startswith("# Color table file case.ctbl\n# 5 values\n")
    itksnap = _read_itksnap_labels(tmp_path / "case.label.txt")
    assert (tmp_path / "case.label.txt").read_text().startswith("################################################\n"
                                                                 "# ITK-SnAP Label Description File\n")
    assert sorted(slicer) == sorted(itksnap) == [0, 1, 2, 3, 4]
    assert slicer[0] == ("unlabelled", (0, 0, 0), 0)
    assert itksnap[0] == ("unlabelled", (0, 0, 0), 0.0, 0, 0)
    for index, name in enumerate(names):
        value = int(data[index % 2, index, 0])  # what the file holds for this class
        assert slicer[value] == (name.replace(" ", "_"), COLOURS[index], 255)
        assert itksnap[value] == (name.replace('"', "'"), COLOURS[index], 1.0, 1, 1)
    assert int(data[0, 50, 50]) == 0 and slicer[0][0] == "unlabelled"


def test_label_tables_without_class_names_follow_the_labels(tmp_path):
    make_ct_series(tmp_path / "s", z_offsets=(0.0, 5.0))
    volume = read_series(tmp_path / "s")
    labels = np.full(volume.shape_zyx, 255, np.uint8)
    labels[0, 0, 0] = 5
    write_nifti_labels(tmp_path / "plain.nii", labels, volume)  # uncompressed: tables named after the stem
    slicer = _read_slicer_table(tmp_path / "plain.ctbl")
    palette = default_palette(6)
    assert sorted(slicer) == list(range(7))
    assert slicer[6] == ("class_5", palette[5], 255) and slicer[1] == ("class_0", palette[0], 255)
    assert _read_itksnap_labels(tmp_path / "plain.label.txt")[6][0] == "class 5"


def test_label_table_paths():
    from segstudio.io.label_tables import label_table_paths

    assert [p.name for p in label_table_paths("/x/CT 1.nii.gz")] == ["CT 1.ctbl", "CT 1.label.txt"]
    assert [p.name for p in label_table_paths("/x/a.b.NII")] == ["a.b.ctbl", "a.b.label.txt"]


# ------------------------------------------------------------------ DICOM SEG


def test_dicom_seg_references_the_source_series(tmp_path):
    import highdicom as hd

    uids = make_ct_series(tmp_path / "s")
    volume = read_series(tmp_path / "s")
    labels = np.zeros(volume.shape_zyx, np.uint8)
    labels[1, 10:20, 30:40] = 1  # liver on slice 1
    labels[3, 5, 6] = 3  # tumour on slice 3
    labels[2, 50:60, 50:60] = 3  # and on slice 2
    labels[4, :2, :2] = 255  # unlabelled: not a segment
    out = write_dicom_seg(tmp_path / "seg.dcm", labels, volume, NAMES, COLOURS)

    ds = pydicom.dcmread(out)
    assert ds.Modality == "SEG" and ds.SegmentationType == "BINARY"
    assert ds.Manufacturer == "segstudio" and ds.ManufacturerModelName == "segstudio"
    assert [s.SegmentLabel for s in ds.SegmentSequence] == ["liver", "tumour"]
    assert [int(s.SegmentNumber) for s in ds.SegmentSequence] == [1, 2]
    assert int(ds.NumberOfFrames) == 3  # liver on 1 slice, tumour on 2: empty frames omitted
    referenced = [item.ReferencedSOPInstanceUID
                  for item in ds.ReferencedSeriesSequence[0].ReferencedInstanceSequence]
    assert sorted(referenced) == sorted(uids)
    assert ds.ReferencedSeriesSequence[0].SeriesInstanceUID == volume.dicom_datasets[0].SeriesInstanceUID
    colour = hd.color.CIELabColor.from_dicom_value(tuple(ds.SegmentSequence[1].RecommendedDisplayCIELabValue))
    assert np.allclose(colour.to_rgb(), COLOURS[3], atol=2)

    # Each frame points at the source slice it was drawn on.
    seg = hd.seg.segread(out)
    for frame in ds.PerFrameFunctionalGroupsSequence:
        segment = int(frame.SegmentIdentificationSequence[0].ReferencedSegmentNumber)
        source_uid = frame.DerivationImageSequence[0].SourceImageSequence[0].ReferencedSOPInstanceUID
        k = uids.index(source_uid)
        assert (k, segment) in {(1, 1), (3, 2), (2, 2)}
    mask = seg.get_volume(combine_segments=True).array  # label map, frames in position order
    assert mask.shape[1:] == (128, 128)
    assert np.count_nonzero(mask == 1) == 100 and np.count_nonzero(mask == 2) == 101


def test_dicom_seg_from_enhanced_multiframe(tmp_path, caplog):
    path = nibabel_dicom("philips_mprage.dcm.gz", tmp_path)
    volume = read_series(path)
    labels = np.zeros(volume.shape_zyx, np.uint8)
    labels[100, 5:9, 6:9] = 2
    with warnings.catch_warnings(record=True) as caught, caplog.at_level(logging.DEBUG):
        warnings.simplefilter("always")
        out = write_dicom_seg(tmp_path / "seg.dcm", labels, volume, NAMES, COLOURS)
    # The phantom's one-component PatientName makes highdicom warn, quoting it.
    patient = str(pydicom.dcmread(path, stop_before_pixels=True).PatientName)
    assert all(patient not in str(w.message) for w in caught)
    assert patient not in caplog.text
    ds = pydicom.dcmread(out)
    assert int(ds.NumberOfFrames) == 1 and ds.SegmentSequence[0].SegmentLabel == "kidney"
    frame = ds.PerFrameFunctionalGroupsSequence[0]
    source = frame.DerivationImageSequence[0].SourceImageSequence[0]
    assert int(source.ReferencedFrameNumber) == volume.source_frames[100] + 1
    np.testing.assert_allclose(frame.PlanePositionSequence[0].ImagePositionPatient,
                               volume.affine[:3, 3] + 100 * volume.affine[:3, 2], atol=1e-3)


def test_dicom_seg_errors(tmp_path):
    make_ct_series(tmp_path / "s", z_offsets=(0.0, 5.0))
    volume = read_series(tmp_path / "s")
    empty = np.zeros(volume.shape_zyx, np.uint8)
    with pytest.raises(InvalidArgumentError, match="nothing to export"):
        write_dicom_seg(tmp_path / "seg.dcm", empty, volume, NAMES, COLOURS)
    labels = empty.copy()
    labels[0, 0, 0] = 7
    with pytest.raises(InvalidArgumentError, match="class indices \\[7\\]"):
        write_dicom_seg(tmp_path / "seg.dcm", labels, volume, NAMES, COLOURS)
    nifti = read_nifti(nibabel_data("anatomical.nii"))
    with pytest.raises(InvalidArgumentError, match="read from DICOM"):
        write_dicom_seg(tmp_path / "seg.dcm", np.ones(nifti.shape_zyx, np.uint8), nifti, NAMES, COLOURS)
    assert not (tmp_path / "seg.dcm").exists()


def test_dicom_seg_of_a_multiframe_without_plane_geometry_says_what_is_missing(tmp_path):
    """emri_small has a Frame of Reference UID but no plane position: highdicom said "no Frame of Reference UID"."""
    from tests.io.test_dicom import pydicom_file

    volume = read_series(pydicom_file("emri_small.dcm"))
    assert volume.dicom_datasets[0].FrameOfReferenceUID
    labels = np.zeros(volume.shape_zyx, np.uint8)
    labels[2, 10:20, 10:20] = 1
    with pytest.raises(ExportError) as info:
        write_dicom_seg(tmp_path / "seg.dcm", labels, volume, NAMES, COLOURS)
    assert info.value.path == str(volume.source)
    assert info.value.problem.startswith("the source has no plane geometry (PlanePositionSequence and "
                                         "PlaneOrientationSequence missing from its per-frame and shared "
                                         "functional groups)")
    assert "Frame of Reference" not in info.value.problem
    assert not (tmp_path / "seg.dcm").exists()


# ------------------------------------------------------------------ PNG


def test_png_slices(tmp_path):
    labels = np.zeros((3, 4, 5), np.uint8)
    labels[0, 1, 2] = 1
    labels[2, 3, 4] = 3
    labels[1, 0, 0] = 255
    files = write_png_slices(tmp_path / "png", labels, COLOURS)
    assert [f.name for f in files] == ["slice_0000.png", "slice_0001.png", "slice_0002.png"]
    for k, file in enumerate(files):
        np.testing.assert_array_equal(read_mask(file), labels[k])
    assert read_palette(files[0])[1] == COLOURS[1]
    with pytest.raises(InvalidArgumentError, match="Z x Y x X"):
        write_png_slices(tmp_path / "png", labels[0], COLOURS)


# ------------------------------------------------------------------ uint16 label maps (> 254 classes)

WIDE_NAMES = [f"c{i}" for i in range(301)]
WIDE_COLOURS = default_palette(301)


def _wide_volume_labels(shape):
    """Classes 0, 255 (ordinary in uint16), 300, and 65535 (unlabelled) on different slices."""
    labels = np.zeros(shape, np.uint16)
    labels[0, :3, :3] = UNLABELLED_16
    labels[1, 10:20, 30:40] = 300
    labels[1, 0, 0] = UNLABELLED_16
    labels[2, 5:7, 5:9] = 255
    return labels


def test_nifti_uint16_keeps_classes_above_255_and_unlabelled_is_0(tmp_path):
    make_ct_series(tmp_path / "s", z_offsets=(0.0, 5.0, 10.0))
    volume = read_series(tmp_path / "s")
    labels = _wide_volume_labels(volume.shape_zyx)
    written = nib.load(write_nifti_labels(tmp_path / "wide.nii.gz", labels, volume, WIDE_NAMES, WIDE_COLOURS))
    assert written.get_data_dtype() == np.uint16
    assert float(written.header["cal_max"]) == 301.0
    data = np.asanyarray(written.dataobj)
    assert data.dtype == np.uint16
    zyx = data.transpose(2, 1, 0)
    np.testing.assert_array_equal(zyx, np.where(labels == UNLABELLED_16, 0, labels.astype(np.int64) + 1))
    assert zyx[1, 15, 35] == 301 and zyx[2, 6, 6] == 256 and zyx[1, 1, 1] == 1
    assert zyx[0, 0, 0] == 0 and zyx[1, 0, 0] == 0
    slicer = _read_slicer_table(tmp_path / "wide.ctbl")
    assert len(slicer) == 302 and slicer[301] == ("c300", WIDE_COLOURS[300], 255)
    assert _read_itksnap_labels(tmp_path / "wide.label.txt")[256] == ("c255", WIDE_COLOURS[255], 1.0, 1, 1)


def test_nifti_is_uint8_when_every_value_fits(tmp_path):
    make_ct_series(tmp_path / "s", z_offsets=(0.0, 5.0))
    volume = read_series(tmp_path / "s")
    wide = np.full(volume.shape_zyx, UNLABELLED_16, np.uint16)
    wide[0, 1, 2] = 254  # a class of a uint16 map whose value (255) fits a uint8 file
    data = np.asanyarray(nib.load(write_nifti_labels(tmp_path / "a.nii", wide, volume)).dataobj)
    assert data.dtype == np.uint8 and data[2, 1, 0] == 255 and int(data.sum()) == 255
    wide[0, 1, 2] = 255  # an ordinary class in a uint16 map, written as 256: uint16
    data = np.asanyarray(nib.load(write_nifti_labels(tmp_path / "a.nii", wide, volume)).dataobj)
    assert data.dtype == np.uint16 and data[2, 1, 0] == 256 and int(data.sum()) == 256
    eight = np.full(volume.shape_zyx, 255, np.uint8)  # unlabelled in a uint8 map: 0
    eight[0, 1, 2] = 7
    eight[1, :2, :2] = 0  # the first class, painted
    data = np.asanyarray(nib.load(write_nifti_labels(tmp_path / "b.nii", eight, volume)).dataobj)
    assert data.dtype == np.uint8 and data[2, 1, 0] == 8 and int(data.sum()) == 8 + 4


def test_label_range_check_follows_the_type(tmp_path):
    make_ct_series(tmp_path / "s", z_offsets=(0.0, 5.0))
    volume = read_series(tmp_path / "s")
    wide = np.zeros(volume.shape_zyx, np.int32)
    wide[0, 0, 0] = 300  # another integer type: taken as uint16
    data = np.asanyarray(nib.load(write_nifti_labels(tmp_path / "a.nii", wide, volume)).dataobj)
    assert data.dtype == np.uint16 and data[0, 0, 0] == 301
    wide[0, 0, 0] = 70000
    with pytest.raises(InvalidArgumentError, match="0..65535, got 0..70000"):
        write_nifti_labels(tmp_path / "b.nii", wide, volume)


def test_dicom_seg_from_uint16_labels_has_a_segment_for_class_300(tmp_path):
    import highdicom as hd

    uids = make_ct_series(tmp_path / "s", z_offsets=(0.0, 5.0, 10.0))
    volume = read_series(tmp_path / "s")
    labels = _wide_volume_labels(volume.shape_zyx)
    out = write_dicom_seg(tmp_path / "seg.dcm", labels, volume, WIDE_NAMES, WIDE_COLOURS)
    ds = pydicom.dcmread(out)
    # 0 and 65535 are background; 255 is a class of its own in a uint16 map.
    assert [s.SegmentLabel for s in ds.SegmentSequence] == ["c255", "c300"]
    assert [int(s.SegmentNumber) for s in ds.SegmentSequence] == [1, 2]
    colour = hd.color.CIELabColor.from_dicom_value(tuple(ds.SegmentSequence[1].RecommendedDisplayCIELabValue))
    assert np.allclose(colour.to_rgb(), WIDE_COLOURS[300], atol=2)
    assert int(ds.NumberOfFrames) == 2
    pixels = ds.pixel_array
    for index, frame in enumerate(ds.PerFrameFunctionalGroupsSequence):
        segment = int(frame.SegmentIdentificationSequence[0].ReferencedSegmentNumber)
        k = uids.index(frame.DerivationImageSequence[0].SourceImageSequence[0].ReferencedSOPInstanceUID)
        class_index = {1: 255, 2: 300}[segment]
        assert k == {255: 2, 300: 1}[class_index]
        np.testing.assert_array_equal(pixels[index], labels[k] == class_index)


def test_dicom_seg_with_more_than_255_segments(tmp_path):
    uids = make_ct_series(tmp_path / "s", z_offsets=(0.0, 5.0))
    volume = read_series(tmp_path / "s")
    labels = np.zeros(volume.shape_zyx, np.uint16)
    labels[1, :100, :3] = np.arange(1, 301, dtype=np.uint16).reshape(100, 3)  # classes 1..300, one voxel each
    out = write_dicom_seg(tmp_path / "seg.dcm", labels, volume, WIDE_NAMES, WIDE_COLOURS)
    ds = pydicom.dcmread(out)
    assert len(ds.SegmentSequence) == 300 and int(ds.NumberOfFrames) == 300
    assert ds.SegmentSequence[299].SegmentLabel == "c300" and int(ds.SegmentSequence[299].SegmentNumber) == 300
    pixels = ds.pixel_array
    for index, frame in enumerate(ds.PerFrameFunctionalGroupsSequence):
        segment = int(frame.SegmentIdentificationSequence[0].ReferencedSegmentNumber)
        source = frame.DerivationImageSequence[0].SourceImageSequence[0].ReferencedSOPInstanceUID
        assert uids.index(source) == 1
        np.testing.assert_array_equal(pixels[index], labels[1] == segment)  # segment n is class n here


def test_png_slices_of_a_uint16_map_are_16_bit(tmp_path):
    labels = np.zeros((2, 4, 5), np.uint16)
    labels[0, 1, 2] = 300
    labels[0, 0, 0] = 255
    labels[1, 3, 4] = UNLABELLED_16
    files = write_png_slices(tmp_path / "png", labels, WIDE_COLOURS)
    for k, file in enumerate(files):
        read = read_mask(file)
        assert read.dtype == np.uint16
        np.testing.assert_array_equal(read, labels[k])
    with Image.open(files[0]) as png:
        assert png.mode.startswith("I;16")
