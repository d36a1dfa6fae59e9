"""``segstudio predict`` on DICOM and NIfTI volumes, and ``segstudio export`` of volume projects."""

from __future__ import annotations

import logging
import shutil

import cv2
import nibabel as nib
import numpy as np
import pydicom
import pytest
import torch

from segstudio import cli
from segstudio.annotation.classes import ClassList
from segstudio.io.dicom import read_series
from segstudio.io.masks import read_mask
from segstudio.io.project import Project
from segstudio.models import get_model
from segstudio.models.checkpoint import make_meta, save_checkpoint
from tests.io.test_dicom import make_ct_series, pydicom_file
from tests.io.test_nifti import nibabel_data

COLORS = [(0, 0, 0), (230, 25, 75)]


def _grey_unet():
    torch.manual_seed(0)
    return get_model("unet", num_classes=2, in_channels=1, base_width=4, depth=2, padding="same")


@pytest.fixture
def checkpoint(tmp_path):
    model = _grey_unet()
    meta = make_meta(model, class_names=["background", "organ"], class_colors=COLORS)
    return save_checkpoint(tmp_path / "grey.safetensors", model, meta)


@pytest.fixture
def organ_everywhere(tmp_path):
    """A checkpoint whose model calls every pixel 'organ' (so a DICOM SEG has a segment)."""
    model = _grey_unet()
    with torch.no_grad():
        model.classifier.weight.zero_()
        model.classifier.bias.copy_(torch.tensor([0.0, 5.0]))
    meta = make_meta(model, class_names=["background", "organ"], class_colors=COLORS)
    return save_checkpoint(tmp_path / "organ.safetensors", model, meta)


@pytest.fixture
def series(tmp_path):
    folder = tmp_path / "ct_series"
    make_ct_series(folder, z_offsets=(0.0, 5.0, 10.0), file_order=(1, 2, 0))
    return folder


def _predict(*args):
    return cli.main(["predict", *map(str, args), "--device", "cpu", "--precision", "fp32"])


def test_predict_a_dicom_series_to_nifti_on_the_source_grid(tmp_path, checkpoint, series):
    out = tmp_path / "out"
    assert _predict(series, "--checkpoint", checkpoint, "--out", out, "--format", "nifti", "--save-probs") == 0
    written = nib.load(out / "ct_series.nii.gz")
    volume = read_series(series)
    assert written.shape == (128, 128, 3)
    np.testing.assert_allclose(written.affine, volume.affine_ras(), atol=1e-4)
    assert written.get_data_dtype() == np.uint8
    labels = np.asanyarray(written.dataobj)
    assert set(np.unique(labels).tolist()) <= {1, 2}  # class c is c + 1
    with np.load(out / "ct_series.probs.npz") as probs:
        p = probs["probabilities"].astype(int)
    assert p.shape == (2, 3, 128, 128)
    decided = np.abs(p[1] - p[0]) > 2  # rounding to 1/255 may turn near-ties
    # an untrained network is unsure of many pixels; the label map must agree with the rest
    assert decided.mean() > 0.25
    np.testing.assert_array_equal((p[1] > p[0])[decided], labels.transpose(2, 1, 0)[decided] == 2)


def test_a_damaged_dicom_file_is_reported_and_the_others_written(tmp_path, checkpoint, series, caplog):
    data = pydicom_file("CT_small.dcm").read_bytes()
    broken = tmp_path / "broken.dcm"
    broken.write_bytes(data[: len(data) // 3])
    single = tmp_path / "single.dcm"
    shutil.copy(pydicom_file("CT_small.dcm"), single)
    image = tmp_path / "photo.png"
    cv2.imwrite(str(image), np.full((40, 50), 128, np.uint8))
    out = tmp_path / "out"
    code = _predict(series, broken, single, image, "--checkpoint", checkpoint, "--out", out)
    assert code == 1
    assert any("broken.dcm" in r.getMessage() and r.levelno == logging.ERROR for r in caplog.records)
    assert nib.load(out / "ct_series.nii.gz").shape == (128, 128, 3)  # nifti is the default for volumes
    assert nib.load(out / "single.nii.gz").shape == (128, 128, 1)
    assert read_mask(out / "photo.png").shape == (40, 50)  # 2-D images stay PNG
    assert not list(out.glob("broken*"))


def test_windows_and_their_errors(tmp_path, checkpoint, series, capsys):
    for name, option in (("a", ["--window", "40,400"]), ("b", ["--window-preset", "soft-tissue"])):
        assert _predict(series, "--checkpoint", checkpoint, "--out", tmp_path / name, *option) == 0
    a = np.asanyarray(nib.load(tmp_path / "a" / "ct_series.nii.gz").dataobj)
    b = np.asanyarray(nib.load(tmp_path / "b" / "ct_series.nii.gz").dataobj)
    np.testing.assert_array_equal(a, b)
    assert _predict(series, "--checkpoint", checkpoint, "--out", tmp_path / "c", "--window", "40") == 1
    assert "--window must be CENTER,WIDTH" in capsys.readouterr().err
    assert _predict(series, "--checkpoint", checkpoint, "--out", tmp_path / "c", "--window", "40,0") == 1
    assert "width must be at least 1" in capsys.readouterr().err


def test_predict_crf_3d_refines_a_real_mri_as_one_volume_with_its_spacing(tmp_path, checkpoint, monkeypatch):
    """--crf-3d: one 3-D CRF over nibabel's anatomical MRI (2 mm voxels) instead of one per slice."""
    import segstudio.refine
    from segstudio.refine import volume_crf

    calls, per_slice = [], []
    real = volume_crf.refine_volume

    def spy(volume, probabilities, params=None, **options):
        calls.append((volume.shape, probabilities.shape, options["spacing"]))
        return real(volume, probabilities, params, **options)

    monkeypatch.setattr(volume_crf, "refine_volume", spy)
    monkeypatch.setattr(segstudio.refine, "refine", lambda *a, **k: per_slice.append(1))
    out = tmp_path / "out"
    assert _predict(nibabel_data("anatomical.nii"), "--checkpoint", checkpoint, "--out", out, "--crf-3d",
                    "--tile", "64") == 0
    source = nib.load(nibabel_data("anatomical.nii"))
    written = nib.load(out / "anatomical.nii.gz")
    assert written.shape == source.shape and per_slice == []
    assert len(calls) == 1
    (z, y, x), probability_shape, spacing = calls[0]
    assert probability_shape[1:] == (z, y, x) and z * y * x == int(np.prod(source.shape))
    np.testing.assert_allclose(sorted(spacing), sorted(float(v) for v in source.header.get_zooms()[:3]))
    labels = np.asanyarray(written.dataobj)
    assert labels.max() <= 3 and (labels > 0).all()  # every voxel refined and written as class + 1


def test_predict_a_4d_nifti_volume_by_index(tmp_path, checkpoint):
    source_path = nibabel_data("example4d.nii.gz")
    source = nib.load(source_path)
    out = tmp_path / "out"
    assert _predict(source_path, "--checkpoint", checkpoint, "--out", out, "--volume", "1", "--tile", "128") == 0
    assert sorted(p.name for p in out.iterdir()) == ["example4d_vol1.ctbl", "example4d_vol1.label.txt", "example4d_vol1.nii.gz"]
    written = nib.load(out / "example4d_vol1.nii.gz")
    assert written.shape == source.shape[:3]
    np.testing.assert_allclose(written.affine, source.affine, atol=1e-6)
    assert _predict(source_path, "--checkpoint", checkpoint, "--out", out, "--volume", "5") == 1


def test_predict_to_dicom_seg_and_png_slices(tmp_path, organ_everywhere, series, caplog):
    out = tmp_path / "out"
    assert _predict(series, "--checkpoint", organ_everywhere, "--out", out, "--format", "dicom-seg") == 0
    ds = pydicom.dcmread(out / "ct_series.seg.dcm")
    assert ds.Modality == "SEG" and int(ds.NumberOfFrames) == 3
    assert [s.SegmentLabel for s in ds.SegmentSequence] == ["organ"]
    assert ds.SegmentSequence[0].SegmentAlgorithmType == "AUTOMATIC"

    assert _predict(series, "--checkpoint", organ_everywhere, "--out", out, "--format", "png") == 0
    slices = sorted((out / "ct_series").iterdir())
    assert [p.name for p in slices] == ["slice_0000.png", "slice_0001.png", "slice_0002.png"]
    assert (read_mask(slices[1]) == 1).all()

    code = _predict(nibabel_data("anatomical.nii"), "--checkpoint", organ_everywhere, "--out", out,
                    "--format", "dicom-seg")
    assert code == 1
    assert "anatomical.nii: --format dicom-seg needs a DICOM source" in caplog.text


def test_export_command_writes_nifti_for_volumes(tmp_path, series):
    project = Project.create(tmp_path / "project", [], ClassList.from_names(["bg", "organ"]),
                             volume_paths=[series])
    doc = project.load_document(0)
    doc.labels[1, 10:20, 10:20] = 1
    project.save_document(0, doc)
    out = tmp_path / "out"
    assert cli.main(["export", str(project.folder), "--out", str(out), "--format", "nifti"]) == 0
    data = np.asanyarray(nib.load(out / "ct_series.nii.gz").dataobj)
    assert data.shape == (128, 128, 3) and int(data.sum()) == 200 and data[15, 15, 1] == 2
    assert cli.main(["export", str(project.folder), "--out", str(out), "--format", "dicom-seg"]) == 0
    assert int(pydicom.dcmread(out / "ct_series.seg.dcm").NumberOfFrames) == 1


@pytest.mark.filterwarnings("ignore:Expected explicit VR:UserWarning")
def test_predict_feeds_a_monochrome1_radiograph_to_the_model_as_shown(tmp_path, checkpoint, monkeypatch):
    """MONOCHROME1 (low values bright): the model gets the volume inverted, with and without --crf;
    the model's input follows its checkpoint, --window the CRF's image."""
    import segstudio.refine
    from segstudio.inference.predictor import Predictor
    from segstudio.windowing import apply_window
    from tests.io.test_dicom import CR_FILE

    (tmp_path / "cr").mkdir()
    shutil.copy(pydicom_file(CR_FILE), tmp_path / "cr" / "cr.dcm")
    stored = read_series(tmp_path / "cr").array[0]
    expected = apply_window(stored, 1000.0, 3000.0, invert=True)
    model_inputs, crf_inputs = [], []
    original = Predictor.predict_steps

    def spy(self, image, *, cancel=None):
        model_inputs.append(image)
        return original(self, image, cancel=cancel)

    real_refine = segstudio.refine.refine

    def refine_spy(image, probabilities, *args, **kwargs):
        crf_inputs.append(np.array(image))
        return real_refine(image, probabilities, *args, **kwargs)

    monkeypatch.setattr(Predictor, "predict_steps", spy)
    monkeypatch.setattr(segstudio.refine, "refine", refine_spy)
    assert _predict(tmp_path / "cr", "--checkpoint", checkpoint, "--out", tmp_path / "out", "--tile", "64",
                    "--window=1000,3000", "--crf") == 0
    assert len(model_inputs) == 1
    seen = model_inputs[0]
    np.testing.assert_array_equal(np.asarray(seen), stored)  # the stored values, carrying the volume's map
    low, high = np.percentile(stored, [1.0, 99.8])
    np.testing.assert_allclose(seen.intensity.apply(np.asarray(seen)), 1.0 - (stored - low) / (high - low),
                               atol=1e-5)
    np.testing.assert_array_equal(expected, 255 - apply_window(stored, 1000.0, 3000.0))  # not the raw window
    assert len(crf_inputs) == 1  # the CRF refines the same plane the model saw, as the window shows it
    np.testing.assert_array_equal(crf_inputs[0], expected)


def _no_traceback(capsys, caplog):
    captured = capsys.readouterr()
    assert "Traceback" not in captured.err + captured.out + caplog.text


def test_one_bad_nifti_in_a_folder_does_not_stop_the_others(tmp_path, checkpoint, series, capsys, caplog):
    """Before, find_volumes raised on the first bad file and the folder gave 0 outputs."""
    from tests.io.test_nifti import crafted_nifti

    folder = tmp_path / "niftis"
    folder.mkdir()
    for name in ("a.nii.gz", "c.nii"):
        nib.save(nib.Nifti1Image(np.arange(32 * 32 * 2, dtype=np.int16).reshape(32, 32, 2), np.eye(4)), folder / name)
    bad = [crafted_nifti(folder / "b_negative.nii", dims=(3, 4, -32768, 2)),
           crafted_nifti(folder / "d_datatype.nii.gz", datatype=9999)]
    image = tmp_path / "photo.png"
    cv2.imwrite(str(image), np.full((40, 50), 128, np.uint8))
    out = tmp_path / "out"
    with caplog.at_level(logging.INFO, logger="segstudio"):
        code = _predict(folder, series, image, "--checkpoint", checkpoint, "--out", out, "--tile", "64")
    assert code == 1  # the skipped files count as failures
    assert sorted(p.name for p in out.iterdir()) == ["a.ctbl", "a.label.txt", "a.nii.gz", "c.ctbl", "c.label.txt", "c.nii.gz",
                                                  "ct_series.ctbl", "ct_series.label.txt", "ct_series.nii.gz", "photo.png"]
    for path in bad:
        assert sum(str(path) in r.getMessage() for r in caplog.records if r.levelno == logging.WARNING) == 1
    assert "wrote 4 of 6 output(s)" in caplog.text and "2 of 6 input(s) failed" in caplog.text
    _no_traceback(capsys, caplog)


@pytest.mark.filterwarnings("ignore:Invalid value for VR:UserWarning")
def test_a_damaged_dicom_header_is_one_line_and_the_rest_is_written(tmp_path, checkpoint, series, capsys, caplog):
    from tests.io.test_dicom import ct_copy, set_raw

    slope = ct_copy(tmp_path / "slope.dcm", lambda ds: set_raw(ds, "RescaleSlope", "abc"))
    spacing = ct_copy(tmp_path / "spacing.dcm", lambda ds: setattr(ds, "PixelSpacing", [0, 0]))
    out = tmp_path / "out"
    assert _predict(series, slope, spacing, "--checkpoint", checkpoint, "--out", out) == 1
    assert f"{slope}: RescaleSlope is not a number ('abc')" in caplog.text
    assert sorted(p.name for p in out.iterdir()) == ["ct_series.ctbl", "ct_series.label.txt", "ct_series.nii.gz",
                                                  "spacing.ctbl", "spacing.label.txt", "spacing.nii.gz"]
    written = nib.load(out / "spacing.nii.gz")  # zero spacing: 1 mm, geometry unknown, said so
    assert (int(written.header["qform_code"]), int(written.header["sform_code"])) == (0, 0)
    assert f"{spacing}: the source does not say where its voxels are" in caplog.text
    _no_traceback(capsys, caplog)


@pytest.fixture
def uneven_series(tmp_path):
    folder = tmp_path / "uneven"
    make_ct_series(folder, z_offsets=(0.0, 5.0, 15.0), file_order=(0, 1, 2))
    return folder


def test_predict_allow_uneven_spacing(tmp_path, checkpoint, uneven_series, capsys, caplog):
    out = tmp_path / "out"
    assert _predict(uneven_series, "--checkpoint", checkpoint, "--out", out) == 1
    assert "--allow-uneven-spacing" in caplog.text and not (out / "uneven.nii.gz").exists()
    assert _predict(uneven_series, "--checkpoint", checkpoint, "--out", out, "--allow-uneven-spacing") == 0
    assert nib.load(out / "uneven.nii.gz").shape == (128, 128, 3)
    _no_traceback(capsys, caplog)


def test_export_allow_uneven_spacing(tmp_path, uneven_series, capsys, caplog):
    project = Project.create(tmp_path / "project", [], ClassList.from_names(["bg", "organ"]),
                             volume_paths=[uneven_series])
    doc = project.load_document(0)
    doc.labels[2, 10:20, 10:20] = 1
    project.save_document(0, doc)
    out = tmp_path / "out"
    assert cli.main(["export", str(project.folder), "--out", str(out), "--format", "nifti"]) == 1
    assert "--allow-uneven-spacing" in capsys.readouterr().err
    assert cli.main(["export", str(project.folder), "--out", str(out), "--format", "nifti",
                     "--allow-uneven-spacing"]) == 0
    data = np.asanyarray(nib.load(out / "uneven.nii.gz").dataobj)
    assert int(data.sum()) == 200 and data[15, 15, 2] == 2  # class 1 written as 2
    _no_traceback(capsys, caplog)
