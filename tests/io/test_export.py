"""Exporting a project: indexed PNGs, overlays and per-class binary masks."""

import cv2
import nibabel as nib
import numpy as np
import pydicom
import pytest
from PIL import Image

from segstudio.annotation.classes import ClassList
from segstudio.errors import ExportError, InvalidArgumentError
from segstudio.io.export import OVERLAY_ALPHA, export_project, overlay_image, safe_file_name
from segstudio.io.masks import UNLABELLED_16, default_palette, read_mask, write_label_png
from segstudio.io.project import Project
from segstudio.tasks import CancelToken, TaskCancelled, run_to_completion
from tests.io.test_dicom import make_ct_series

COLORS = [(0, 0, 0), (255, 0, 0), (0, 0, 255)]


@pytest.fixture
def project(tmp_path):
    folder = tmp_path / "images"
    folder.mkdir()
    grey = np.full((30, 40), 100, np.uint8)
    cv2.imwrite(str(folder / "a.png"), grey)
    cv2.imwrite(str(folder / "b.png"), np.zeros((20, 10, 3), np.uint8))
    cv2.imwrite(str(folder / "c.png"), np.zeros((8, 8, 3), np.uint8))
    classes = ClassList.from_names(["background", "cell/body", "nucleus"], COLORS)
    project = Project.create(tmp_path / "project", [folder], classes)
    doc = project.load_document(0)
    doc.labels[:10, :] = 0
    doc.labels[10:20, :20] = 2
    project.save_document(0, doc)
    doc = project.load_document(1)
    doc.labels[5:15, 2:8] = 1
    project.save_document(1, doc)
    return project  # image c has no labels


def test_png_export_round_trip(tmp_path, project):
    progress = []
    written = run_to_completion(export_project(project, tmp_path / "out"), progress.append)
    assert [p.name for p in written] == ["a.png", "b.png"]
    assert progress[-1].done == progress[-1].total == 3
    for index, path in enumerate(written):
        labels = read_mask(path)
        assert np.array_equal(labels, project.load_document(index).labels)
        with Image.open(path) as png:
            assert png.mode == "P" and png.getpalette()[:9] == [v for c in COLORS for v in c]
    assert read_mask(written[0]).shape == (30, 40)
    assert not (tmp_path / "out" / "c.png").exists()


def test_overlay_export(tmp_path, project):
    written = run_to_completion(export_project(project, tmp_path / "out", fmt="overlay"))
    assert [p.name for p in written] == ["a_overlay.png", "b_overlay.png"]
    with Image.open(written[0]) as overlay:
        assert overlay.mode == "RGB" and overlay.size == (40, 30)
        pixels = np.asarray(overlay)
    assert pixels[0, 0].tolist() == [50, 50, 50]  # grey 100 half-blended with black
    assert pixels[15, 5].tolist() == [50, 50, 178]  # with blue (0, 0, 255): 177.5 rounds to even
    assert pixels[25, 30].tolist() == [100, 100, 100]  # unlabelled: the image itself


def test_binary_export(tmp_path, project):
    written = run_to_completion(export_project(project, tmp_path / "out", fmt="binary"))
    assert sorted(p.name for p in written) == ["a_background.png", "a_nucleus.png", "b_cell_body.png"]
    mask = read_mask(tmp_path / "out" / "a_nucleus.png")
    expected = np.zeros((30, 40), np.uint8)
    expected[10:20, :20] = 255
    assert np.array_equal(mask, expected)
    assert set(np.unique(read_mask(tmp_path / "out" / "b_cell_body.png")).tolist()) == {0, 255}


def test_bad_format_and_cancel(tmp_path, project):
    with pytest.raises(InvalidArgumentError):
        run_to_completion(export_project(project, tmp_path / "out", fmt="jpeg"))
    token = CancelToken()
    token.cancel()
    with pytest.raises(TaskCancelled):
        run_to_completion(export_project(project, tmp_path / "out", cancel=token))


def test_failed_image_is_reported_after_the_others(tmp_path, project):
    project.entries[0].source.unlink()
    with pytest.raises(ExportError, match="1 of 3") as info:
        run_to_completion(export_project(project, tmp_path / "out", fmt="overlay"))
    assert [p.name for p in info.value.written] == ["b_overlay.png"]


def test_safe_file_name():
    assert safe_file_name("cell/body") == "cell_body"
    assert safe_file_name("..") == "class"
    assert safe_file_name("Tumour grade 2") == "Tumour_grade_2"


# ------------------------------------------------------------------ uint16 label maps (> 254 classes)

WIDE_NAMES = [f"c{i}" for i in range(301)]
WIDE_COLORS = default_palette(301)


def _wide_labels():
    """Rows of class 0, class 255 (an ordinary class in uint16), class 300, and unlabelled."""
    labels = np.full((12, 16), UNLABELLED_16, np.uint16)
    labels[0:3] = 0
    labels[3:6] = 255
    labels[6:9] = 300
    return labels  # rows 9..11: 65535, unlabelled


@pytest.fixture
def wide_project(tmp_path):
    folder = tmp_path / "wide_images"
    folder.mkdir()
    cv2.imwrite(str(folder / "w.png"), np.full((12, 16), 100, np.uint8))
    cv2.imwrite(str(folder / "x.png"), np.zeros((4, 4), np.uint8))  # never labelled
    project = Project.create(tmp_path / "wide", [folder], ClassList.from_names(WIDE_NAMES, WIDE_COLORS))
    write_label_png(project.entries[0].labels_path, _wide_labels(), project.classes.colors)
    # Only unlabelled pixels: skipped like an entry without labels.
    write_label_png(project.entries[1].labels_path, np.full((4, 4), UNLABELLED_16, np.uint16),
                    project.classes.colors)
    return project


def test_uint16_png_export_is_a_16_bit_class_index_png(tmp_path, wide_project):
    written = run_to_completion(export_project(wide_project, tmp_path / "out"))
    assert [p.name for p in written] == ["w.png"]
    with Image.open(written[0]) as png:
        assert png.mode.startswith("I;16") and png.getpalette() is None
    labels = read_mask(written[0])
    assert labels.dtype == np.uint16
    np.testing.assert_array_equal(labels, _wide_labels())
    assert labels[4, 0] == 255 and labels[7, 0] == 300 and labels[10, 0] == 65535


def test_uint16_overlay_colours_classes_above_255(tmp_path, wide_project):
    written = run_to_completion(export_project(wide_project, tmp_path / "out", fmt="overlay"))
    assert [p.name for p in written] == ["w_overlay.png"]
    with Image.open(written[0]) as overlay:
        assert overlay.mode == "RGB" and overlay.size == (16, 12)
        pixels = np.asarray(overlay)

    def blended(colour):  # grey 100 blended half and half with the class colour, as OVERLAY_ALPHA says
        return np.rint(100 * (1 - OVERLAY_ALPHA) + np.asarray(colour, np.float32) * OVERLAY_ALPHA).tolist()

    assert WIDE_COLORS[300] == (64, 0, 224) != WIDE_COLORS[300 - 256]  # no wrap-around to class 44
    assert pixels[7, 3].tolist() == blended(WIDE_COLORS[300]) == [82, 50, 162]
    assert pixels[4, 3].tolist() == blended(WIDE_COLORS[255])
    assert pixels[1, 3].tolist() == [50, 50, 50]  # class 0 (black)
    assert pixels[10, 3].tolist() == [100, 100, 100]  # 65535: the image itself
    assert (pixels[6:9] == pixels[7, 3]).all() and (pixels[9:] == 100).all()


def test_uint16_binary_export_has_a_mask_for_classes_above_255(tmp_path, wide_project):
    written = run_to_completion(export_project(wide_project, tmp_path / "out", fmt="binary"))
    assert sorted(p.name for p in written) == ["w_c0.png", "w_c255.png", "w_c300.png"]
    for name, rows in (("w_c0.png", slice(0, 3)), ("w_c255.png", slice(3, 6)), ("w_c300.png", slice(6, 9))):
        mask = read_mask(tmp_path / "out" / name)
        expected = np.zeros((12, 16), np.uint8)
        expected[rows] = 255
        assert mask.dtype == np.uint8
        np.testing.assert_array_equal(mask, expected)


def test_overlay_image_takes_uint8_and_uint16_maps():
    grey = np.full((1, 4), 100, np.uint8)
    colours = [(0, 0, 0), (200, 0, 0)]
    eight = overlay_image(grey, np.array([[0, 1, 255, 7]], np.uint8), colours)
    sixteen = overlay_image(grey, np.array([[0, 1, 65535, 7]], np.uint16), colours)
    expected = [[50, 50, 50], [150, 50, 50], [100, 100, 100], [100, 100, 100]]  # 7 has no colour
    assert eight[0].tolist() == sixteen[0].tolist() == expected


def test_uint16_volume_export_to_nifti_and_dicom_seg(tmp_path, monkeypatch):
    series = tmp_path / "ct"
    make_ct_series(series, z_offsets=(0.0, 5.0, 10.0))
    project = Project.create(tmp_path / "vp", [], ClassList.from_names(WIDE_NAMES, WIDE_COLORS),
                             volume_paths=[series])
    labels = np.zeros((3, 128, 128), np.uint16)
    labels[0, :4, :4] = UNLABELLED_16
    labels[1, 10:20, 30:40] = 300
    labels[2, 5:7, 5:9] = 255
    # Label volumes on disk are the project's business; export takes what read_labels gives.
    monkeypatch.setattr(project, "read_labels", lambda index: labels)
    out = tmp_path / "out"
    nifti, *tables = run_to_completion(export_project(project, out, fmt="nifti"))
    assert sorted(p.name for p in tables) == ["ct.ctbl", "ct.label.txt"]  # Slicer and ITK-SNAP label tables
    written = nib.load(nifti)
    assert written.get_data_dtype() == np.uint16
    data = np.asanyarray(written.dataobj).transpose(2, 1, 0)  # back to Z x Y x X
    expected = np.where(labels == UNLABELLED_16, 0, labels.astype(np.int64) + 1)  # class i as i + 1
    np.testing.assert_array_equal(data, expected)

    [seg_path] = run_to_completion(export_project(project, out, fmt="dicom-seg"))
    ds = pydicom.dcmread(seg_path)
    assert [s.SegmentLabel for s in ds.SegmentSequence] == ["c255", "c300"]
    frames = {int(f.SegmentIdentificationSequence[0].ReferencedSegmentNumber): i
              for i, f in enumerate(ds.PerFrameFunctionalGroupsSequence)}
    assert sorted(frames) == [1, 2] and int(ds.NumberOfFrames) == 2
    np.testing.assert_array_equal(ds.pixel_array[frames[2]], labels[1] == 300)
    np.testing.assert_array_equal(ds.pixel_array[frames[1]], labels[2] == 255)
