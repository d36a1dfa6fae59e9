"""Exporting a project: indexed PNGs, overlays and per-class binary masks."""

import cv2
import numpy as np
import pytest
from PIL import Image

from segstudio.annotation.classes import ClassList
from segstudio.errors import ExportError, InvalidArgumentError
from segstudio.io.export import export_project, safe_file_name
from segstudio.io.masks import read_mask
from segstudio.io.project import Project
from segstudio.tasks import CancelToken, TaskCancelled, run_to_completion

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
