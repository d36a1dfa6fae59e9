"""Medical volumes in projects: entries, 3-D label files, opening folders and files."""

from __future__ import annotations

import json
import logging
import shutil

import cv2
import nibabel as nib
import numpy as np
import pydicom
import pytest

from segstudio.annotation.classes import ClassList
from segstudio.annotation.document import ImageStatus
from segstudio.errors import DataError, InvalidArgumentError, UnreadableInputError
from segstudio.io import project_opening
from segstudio.io.export import export_project
from segstudio.io.masks import read_mask
from segstudio.io.nifti import read_nifti
from segstudio.io.project import PROJECT_FILE, Project
from segstudio.io.project_volumes import (
    find_volumes,
    folder_holds_volumes,
    read_label_volume,
    write_label_volume,
)
from segstudio.io.volume import read_volume
from segstudio.tasks import run_to_completion
from tests.io.test_dicom import make_ct_series, pydicom_file
from tests.io.test_nifti import nibabel_data

COLORS = [(0, 0, 0), (255, 0, 0), (0, 0, 255)]


def _classes():
    return ClassList.from_names(["background", "liver", "lesion"], COLORS)


@pytest.fixture
def ct_folder(tmp_path):
    """A 3-slice CT series and a PNG in one folder."""
    folder = tmp_path / "study"
    make_ct_series(folder, z_offsets=(0.0, 5.0, 10.0), file_order=(2, 0, 1))
    cv2.imwrite(str(folder / "photo.png"), np.full((20, 30, 3), 90, np.uint8))
    return folder


def test_opening_a_dicom_folder_gives_a_volume_and_an_image(ct_folder):
    project = project_opening.open_or_create(ct_folder)
    assert project.folder == ct_folder / project_opening.FOLDER_PROJECT
    kinds = sorted((e.kind, e.source.name) for e in project.entries)
    assert kinds == [("image", "photo.png"), ("volume", "study")]
    volume_index = next(i for i, e in enumerate(project.entries) if e.is_volume)
    entry = project.entries[volume_index]
    assert entry.selector is None and entry.labels_path.name == f"{entry.id}.npz"
    assert entry.display_name == "study (axial test)"

    doc = project.load_document(volume_index)
    assert doc.is_volume and doc.shape == (3, 128, 128)
    assert doc.volume.spacing[0] == pytest.approx(5.0) and doc.volume.kind == "dicom"
    # slice k holds HU -24 + k (see make_ct_series): sorted by position
    np.testing.assert_array_equal(doc.image[:, 0, 0], [-24, -23, -22])
    square = np.ones((1, 10, 10), bool)
    assert doc.apply((slice(1, 2), slice(20, 30), slice(40, 50)), square, 1, "paint slice 1")
    assert doc.status is ImageStatus.CORRECTED
    project.save_document(volume_index, doc)
    assert not doc.dirty and project.has_labels(volume_index)

    data = json.loads(project.project_file.read_text())
    assert data["version"] == 2
    item = next(i for i in data["images"] if i.get("kind") == "volume")
    assert item["source"] == ".." and item["labels"] == f"labels/{entry.id}.npz"

    again = project_opening.open_or_create(ct_folder)  # the same folder project, no new entries
    assert len(again.entries) == 2
    reopened = again.load_document(volume_index)
    assert reopened.status is ImageStatus.CORRECTED
    np.testing.assert_array_equal(reopened.labels, doc.labels)
    assert (reopened.labels[1, 20:30, 40:50] == 1).all() and (reopened.labels[[0, 2]] == 255).all()
    assert int((reopened.labels != 255).sum()) == 100


def test_saved_labels_of_another_shape_are_refused(ct_folder, tmp_path):
    project = Project.create(tmp_path / "p", [], _classes(), volume_paths=[ct_folder])

    write_label_volume(project.entries[0].labels_path, np.zeros((2, 128, 128), np.uint8), 3)
    with pytest.raises(DataError, match=r"2 x 128 x 128 .* 3 x 128 x 128") as info:
        project.load_document(0)
    assert info.value.path == str(project.entries[0].labels_path)


def test_labels_with_an_unknown_class_are_not_saved(ct_folder, tmp_path):
    project = Project.create(tmp_path / "p", [], _classes(), volume_paths=[ct_folder])
    doc = project.load_document(0)
    doc.labels[0, 0, 0] = 7
    with pytest.raises(InvalidArgumentError, match=r"\[7\]"):
        project.save_document(0, doc)
    assert not project.has_labels(0)


def test_4d_nifti_gives_one_entry_per_volume(tmp_path):
    source = nibabel_data("example4d.nii.gz")
    project = Project.create(tmp_path / "p", [], _classes())
    added = project.add_volumes(source)
    assert [e.id for e in added] == ["example4d_vol0", "example4d_vol1"]
    assert [e.selector for e in added] == [{"volume_index": 0}, {"volume_index": 1}]
    assert added[1].display_name == "example4d.nii.gz (vol 1)"
    assert project.add_volumes(source) == []  # already there
    project.save()

    reopened = Project.open(project.folder)
    assert [e.selector for e in reopened.entries] == [{"volume_index": 0}, {"volume_index": 1}]
    doc = reopened.load_document(1)
    expected = read_nifti(source, volume_index=1).array
    assert doc.shape == expected.shape == (24, 96, 128)
    np.testing.assert_array_equal(doc.image, expected)
    np.testing.assert_array_equal(doc.volume.affine, read_nifti(source, volume_index=1).affine)


def test_a_folder_with_two_series_gives_one_entry_each(tmp_path):
    make_ct_series(tmp_path / "two", series_uid="1.2.3.4", description="first")
    make_ct_series(tmp_path / "two", z_offsets=(0.0, 2.0), file_order=(10, 11), series_uid="1.2.3.5",
                   description="second")
    project = Project.create(tmp_path / "p", [], _classes(), volume_paths=[tmp_path / "two"])
    assert sorted(e.selector["series_uid"] for e in project.entries) == ["1.2.3.4", "1.2.3.5"]
    assert len({e.id for e in project.entries}) == 2
    assert all(e.id.startswith("two_s") for e in project.entries)
    shapes = {e.selector["series_uid"]: project.load_document(i).shape for i, e in enumerate(project.entries)}
    assert shapes == {"1.2.3.4": (5, 128, 128), "1.2.3.5": (2, 128, 128)}
    descriptions = sorted(e.description for e in project.entries)
    assert descriptions[0].endswith("first") and descriptions[1].endswith("second")


def test_a_multipage_tiff_is_one_volume(tmp_path):
    import tifffile

    stack = np.arange(3 * 16 * 20, dtype=np.uint16).reshape(3, 16, 20)
    tifffile.imwrite(tmp_path / "stack.tif", stack, photometric="minisblack")
    project = Project.create(tmp_path / "p", [], _classes())
    (entry,) = project.add_volumes(tmp_path / "stack.tif")
    assert entry.kind == "volume" and entry.id == "stack"
    doc = project.load_document(0)
    assert doc.shape == (3, 16, 20)
    np.testing.assert_array_equal(doc.image, stack)


def test_a_dicom_file_and_a_nifti_file_open_directly():
    ct = project_opening.open_or_create(pydicom_file("CT_small.dcm"))
    assert [(e.kind, e.id) for e in ct.entries] == [("volume", "CT_small")]
    assert ct.load_document(0).shape == (1, 128, 128)
    nifti = project_opening.open_or_create(nibabel_data("anatomical.nii"))
    assert [(e.kind, e.id) for e in nifti.entries] == [("volume", "anatomical")]
    assert nifti.load_document(0).shape == (25, 41, 33)
    assert nifti.folder.name.startswith("anatomical-")


def test_moving_the_project_with_its_volumes(tmp_path):
    make_ct_series(tmp_path / "data" / "series", z_offsets=(0.0, 5.0, 10.0))
    project = Project.create(tmp_path / "data" / "project", [], _classes(),
                             volume_paths=[tmp_path / "data" / "series"])
    doc = project.load_document(0)
    doc.labels[2, :5, :5] = 1
    project.save_document(0, doc)
    shutil.move(tmp_path / "data", tmp_path / "moved")
    moved = Project.open(tmp_path / "moved" / "project")
    assert moved.entries[0].source == tmp_path / "moved" / "series"
    np.testing.assert_array_equal(moved.load_document(0).labels, doc.labels)


def test_deleting_a_class_renumbers_label_volumes(ct_folder, tmp_path):
    project = Project.create(tmp_path / "p", [], _classes(), volume_paths=[ct_folder])
    doc = project.load_document(0)
    doc.labels[0] = 1
    doc.labels[1] = 2
    project.save_document(0, doc)
    project.delete_class(1)
    labels = read_label_volume(project.entries[0].labels_path)
    assert (labels[0] == 255).all() and (labels[1] == 1).all() and (labels[2] == 255).all()


def test_old_project_files_and_bad_selectors(tmp_path):
    (tmp_path / "a.png").write_bytes(cv2.imencode(".png", np.zeros((4, 4), np.uint8))[1].tobytes())
    item = {"id": "a", "source": "a.png", "status": "new", "labels": "labels/a.png"}
    (tmp_path / PROJECT_FILE).write_text(json.dumps(
        {"format": "segstudio-project", "version": 1, "classes": [], "images": [item]}))
    project = Project.open(tmp_path)
    assert project.entries[0].kind == "image" and project.entries[0].selector is None

    item.update(kind="volume", selector={"volume_index": "one"})
    (tmp_path / PROJECT_FILE).write_text(json.dumps(
        {"format": "segstudio-project", "version": 2, "classes": [], "images": [item]}))
    with pytest.raises(UnreadableInputError, match="volume_index must be an integer"):
        Project.open(tmp_path)


def test_a_damaged_dicom_file_does_not_stop_the_images_from_opening(tmp_path, caplog):
    folder = tmp_path / "mixed"
    folder.mkdir()
    cv2.imwrite(str(folder / "a.png"), np.zeros((8, 8), np.uint8))
    data = pydicom_file("CT_small.dcm").read_bytes()
    (folder / "half.dcm").write_bytes(data[: len(data) // 2])
    assert folder_holds_volumes(folder)
    project = project_opening.open_or_create(folder)
    assert [(e.kind, e.source.name) for e in project.entries] == [("image", "a.png")]
    assert "half.dcm" in caplog.text


def _folder_with_bad_niftis(folder):
    """Two good NIfTI files and three bad ones (each of the kinds the bug hunt found) in *folder*."""
    from tests.io.test_nifti import crafted_nifti

    folder.mkdir()
    good = [crafted_nifti(folder / "a_good.nii"), crafted_nifti(folder / "z_good.nii.gz")]
    bad = [crafted_nifti(folder / "b_negative.nii", dims=(3, 4, -32768, 2)),
           crafted_nifti(folder / "c_datatype.nii", datatype=9999),
           crafted_nifti(folder / "d_dim0.nii", dims=(9,))]
    return good, bad


def test_one_bad_nifti_in_a_folder_does_not_hide_the_others(tmp_path, caplog):
    good, bad = _folder_with_bad_niftis(tmp_path / "niftis")
    make_ct_series(tmp_path / "niftis", z_offsets=(0.0, 5.0))  # and a DICOM series beside them
    skipped = []
    with caplog.at_level(logging.WARNING, logger="segstudio"):
        found = find_volumes(tmp_path / "niftis", skipped=skipped)
    assert [(c.source.name, c.series_uid is not None) for c in found] == [
        ("niftis", True), ("a_good.nii", False), ("z_good.nii.gz", False)]
    assert [e.path for e in skipped] == [str(p) for p in bad]
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING and r.name.startswith(
        "segstudio")]
    for path in bad:  # one line each, naming the file
        assert sum(str(path) in w for w in warnings) == 1
    assert all("\n" not in w for w in warnings)
    # the project opens every readable volume of the folder too
    project = project_opening.open_or_create(tmp_path / "niftis")
    assert sorted(e.source.name for e in project.entries) == ["a_good.nii", "niftis", "z_good.nii.gz"]


def test_a_folder_of_only_bad_niftis_names_the_first_problem(tmp_path):
    _good, bad = _folder_with_bad_niftis(tmp_path / "bad")
    for path in _good:
        path.unlink()
    with pytest.raises(UnreadableInputError) as info:
        find_volumes(tmp_path / "bad")
    assert info.value.path == str(tmp_path / "bad")
    assert "3 file(s) or series skipped" in info.value.problem and str(bad[0]) in info.value.problem


def test_folder_probe_and_errors(tmp_path):
    folder = tmp_path / "plain"
    folder.mkdir()
    (folder / "notes.txt").write_text("hello")
    cv2.imwrite(str(folder / "a.png"), np.zeros((8, 8), np.uint8))
    assert not folder_holds_volumes(folder)
    with pytest.raises(UnreadableInputError, match="no DICOM series or NIfTI volumes"):
        find_volumes(folder)
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(UnreadableInputError, match="no DICOM or NIfTI files") as info:
        project_opening.open_or_create(empty)
    assert info.value.path == str(empty)


# ------------------------------------------------------------------ export


@pytest.fixture
def labelled_project(tmp_path, ct_folder):
    """A CT series (3 slices), anatomical.nii and a PNG image, all labelled."""
    project = Project.create(tmp_path / "p", [ct_folder / "photo.png"], _classes(),
                             volume_paths=[ct_folder, nibabel_data("anatomical.nii")])
    assert [e.kind for e in project.entries] == ["image", "volume", "volume"]
    image = project.load_document(0)
    image.labels[2:6, 3:9] = 1
    project.save_document(0, image)
    ct = project.load_document(1)
    ct.labels[0, 10:20, 30:40] = 1  # liver on slice 0
    ct.labels[2, 50:60, 60:70] = 2  # lesion on slice 2
    ct.labels[1, :5, :5] = 0  # background only: no segment
    project.save_document(1, ct)
    mri = project.load_document(2)
    mri.labels[7, 11, 5] = 2  # nibabel voxel (5, 11, 7)
    project.save_document(2, mri)
    return project


def test_nifti_export_keeps_the_source_geometry(tmp_path, labelled_project, caplog):
    caplog.set_level(logging.INFO, logger="segstudio")

    project = labelled_project
    written = run_to_completion(export_project(project, tmp_path / "out", fmt="nifti"))
    ct_id, mri_id = project.entries[1].id, project.entries[2].id
    assert sorted(p.name for p in written) == sorted(f"{i}{suffix}" for i in (ct_id, mri_id) for suffix in (".nii.gz", ".ctbl", ".label.txt"))
    assert "photo.png" in caplog.text  # the 2-D image is skipped, with a log line

    ct = nib.load(tmp_path / "out" / f"{ct_id}.nii.gz")
    ct_volume = read_volume(project.entries[1].source)
    assert ct.shape == (128, 128, 3)
    np.testing.assert_allclose(ct.affine, ct_volume.affine_ras(), atol=1e-4)
    data = np.asanyarray(ct.dataobj)
    assert data[35, 15, 0] == 2 and data[65, 55, 2] == 3  # class c is c + 1
    assert int(np.count_nonzero(data)) == 225  # unlabelled (255) is 0; painted background (class 0) is 1

    source = nib.load(nibabel_data("anatomical.nii"))
    mri = nib.load(tmp_path / "out" / f"{mri_id}.nii.gz")
    assert mri.shape == source.shape
    np.testing.assert_allclose(mri.affine, source.affine, atol=1e-6)
    assert np.asanyarray(mri.dataobj)[5, 11, 7] == 3 and int(np.count_nonzero(np.asanyarray(mri.dataobj))) == 1


def test_dicom_seg_export_is_for_dicom_volumes(tmp_path, labelled_project, caplog):
    caplog.set_level(logging.INFO, logger="segstudio")

    project = labelled_project
    written = run_to_completion(export_project(project, tmp_path / "out", fmt="dicom-seg"))
    assert [p.name for p in written] == [f"{project.entries[1].id}.seg.dcm"]
    assert "DICOM SEG needs a DICOM source" in caplog.text  # the NIfTI volume
    ds = pydicom.dcmread(written[0])
    assert ds.Modality == "SEG"
    assert [s.SegmentLabel for s in ds.SegmentSequence] == ["liver", "lesion"]
    assert int(ds.NumberOfFrames) == 2  # one non-empty slice per segment
    assert ds.SegmentSequence[0].SegmentAlgorithmType == "SEMIAUTOMATIC"  # corrected by hand


def test_png_export_writes_a_folder_of_slices_per_volume(tmp_path, labelled_project):

    project = labelled_project
    written = run_to_completion(export_project(project, tmp_path / "out", fmt="png"))
    ct_id, mri_id = project.entries[1].id, project.entries[2].id
    assert sorted(p.name for p in (tmp_path / "out" / ct_id).iterdir()) == [
        "slice_0000.png", "slice_0001.png", "slice_0002.png"]
    assert len(list((tmp_path / "out" / mri_id).iterdir())) == 25
    assert len(written) == 1 + 3 + 25
    assert (read_mask(tmp_path / "out" / ct_id / "slice_0002.png")[50:60, 60:70] == 2).all()
    assert (tmp_path / "out" / "photo.png").is_file()


def test_overlay_export_skips_volumes(tmp_path, labelled_project, caplog):
    caplog.set_level(logging.INFO, logger="segstudio")

    written = run_to_completion(export_project(labelled_project, tmp_path / "out", fmt="overlay"))
    assert [p.name for p in written] == ["photo_overlay.png"]
    assert "overlay export is for 2-D images" in caplog.text


def test_a_volume_in_a_project_of_300_classes_keeps_uint16_labels(ct_folder, tmp_path):
    classes = ClassList.from_names([f"c{i}" for i in range(300)])
    project = Project.create(tmp_path / "p", [], classes, volume_paths=[ct_folder])
    doc = project.load_document(0)
    assert doc.labels.dtype == np.uint16 and (doc.labels == 65535).all()
    doc.labels[0] = 299
    doc.labels[1, :5] = 255
    project.save_document(0, doc)
    stored = read_label_volume(project.entries[0].labels_path)
    assert stored.dtype == np.uint16 and np.array_equal(stored, doc.labels)
    assert np.array_equal(Project.open(project.folder).load_document(0).labels, doc.labels)
    # deleting classes until 254 remain narrows the file to uint8
    while len(project.classes) > 254:
        project.delete_class(10)
    narrowed = read_label_volume(project.entries[0].labels_path)
    assert narrowed.dtype == np.uint8
    assert (narrowed[0] == 253).all() and (narrowed[1, :5] == 209).all() and narrowed[2, 0, 0] == 255
    with pytest.raises(InvalidArgumentError, match="uint8 or uint16"):
        write_label_volume(project.entries[0].labels_path, narrowed.astype(np.int32), 254)


# --------------------------------------------------------------------------
# Hostile label files: the .npy header inside the .npz is read first
# --------------------------------------------------------------------------


def _npz_declaring(path, shape, dtype, payload=b""):
    """A label .npz whose array header declares *shape* and *dtype*, followed by *payload* only."""
    import io
    import zipfile

    header = io.BytesIO()
    np.lib.format.write_array_header_1_0(
        header, {"descr": np.lib.format.dtype_to_descr(np.dtype(dtype)), "fortran_order": False, "shape": shape})
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("labels.npy", header.getvalue() + payload)
    return path


def test_a_huge_declared_label_volume_is_refused_before_decompressing(tmp_path, monkeypatch):
    monkeypatch.setenv("SEGSTUDIO_MEMORY_LIMIT", "256M")
    path = _npz_declaring(tmp_path / "bomb.npz", (2048, 2048, 2048), np.uint16, bytes(1000))
    assert path.stat().st_size < 1000
    with pytest.raises(UnreadableInputError) as info:
        read_label_volume(path)
    message = str(info.value)
    assert message.startswith(f"{path}: the label volume (2048 x 2048 x 2048, 8,589,934,592 voxels)")
    assert "16.0 GiB" in message and "256.0 MiB" in message


def test_a_second_member_named_labels_is_not_what_gets_decoded(tmp_path, monkeypatch):
    """np.load prefers a member "labels" over the checked "labels.npy": that member is never read."""
    import io
    import zipfile

    monkeypatch.setenv("SEGSTUDIO_MEMORY_LIMIT", "256M")
    path = write_label_volume(tmp_path / "two.npz", np.ones((2, 3, 4), np.uint8), 3)
    huge = io.BytesIO()
    np.lib.format.write_array_header_1_0(huge, {"descr": "|u1", "fortran_order": False, "shape": (2**17,) * 3})
    with zipfile.ZipFile(path, "a") as archive:
        archive.writestr("labels", huge.getvalue())
    labels = read_label_volume(path)
    assert labels.shape == (2, 3, 4) and (labels == 1).all()


def test_a_label_zip_bomb_is_refused_and_the_same_file_reads_within_the_limit(tmp_path, monkeypatch):
    labels = np.zeros((64, 512, 512), np.uint8)  # 16 MiB that deflate to 16 KiB
    path = write_label_volume(tmp_path / "zeros.npz", labels, 3)
    assert path.stat().st_size < 100_000
    monkeypatch.setenv("SEGSTUDIO_MEMORY_LIMIT", "8M")
    with pytest.raises(UnreadableInputError, match=r"zeros\.npz: the label volume \(64 x 512 x 512, 16,777,216 "
                                                   r"voxels\) would need 16\.0 MiB of memory, more than the limit "
                                                   r"of 8\.0 MiB"):
        read_label_volume(path)
    monkeypatch.setenv("SEGSTUDIO_MEMORY_LIMIT", "32M")
    assert read_label_volume(path).shape == (64, 512, 512)


@pytest.mark.parametrize(("shape", "dtype", "found"), [
    ((4096, 4096, 4096), np.float64, "float64 (4096, 4096, 4096)"),
    ((100000, 100000), np.uint8, "uint8 (100000, 100000)"),
    ((2, 3, 4), np.int64, "int64 (2, 3, 4)"),
])
def test_an_array_that_is_not_a_label_map_is_refused_from_its_header(tmp_path, shape, dtype, found):
    path = _npz_declaring(tmp_path / "odd.npz", shape, dtype)
    with pytest.raises(UnreadableInputError) as info:
        read_label_volume(path)
    assert str(info.value) == (f"{path}: not a label volume: expected Z x Y x X uint8 or uint16, found {found}")


def test_damaged_label_files_name_the_file(tmp_path):
    import zipfile

    path = _npz_declaring(tmp_path / "short.npz", (4, 4, 4), np.uint8, bytes(10))
    with pytest.raises(UnreadableInputError, match=r"short\.npz: the label volume is damaged"):
        read_label_volume(path)
    with zipfile.ZipFile(tmp_path / "other.npz", "w") as archive:
        archive.writestr("something.npy", b"")
    with pytest.raises(UnreadableInputError, match=r"other\.npz: not a label volume \(no 'labels' array\)"):
        read_label_volume(tmp_path / "other.npz")
    (tmp_path / "text.npz").write_text("not a zip")
    with pytest.raises(UnreadableInputError, match=r"text\.npz: the label volume is damaged"):
        read_label_volume(tmp_path / "text.npz")
    with pytest.raises(UnreadableInputError, match="no such label file"):
        read_label_volume(tmp_path / "absent.npz")
