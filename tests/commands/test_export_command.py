"""``segstudio export`` end to end."""

import cv2
import numpy as np
import pytest

from segstudio import cli
from segstudio.annotation.classes import ClassList
from segstudio.io.masks import default_palette, read_mask, write_label_png
from segstudio.io.project import Project


def _project(tmp_path):
    folder = tmp_path / "images"
    folder.mkdir()
    cv2.imwrite(str(folder / "slide.png"), np.zeros((12, 16, 3), np.uint8))
    project = Project.create(tmp_path / "project", [folder], ClassList.from_names(["bg", "lesion"]))
    doc = project.load_document(0)
    doc.labels[2:6, 3:9] = 1
    project.save_document(0, doc)
    return project, doc


def test_export_command_writes_masks(tmp_path):
    project, doc = _project(tmp_path)
    out = tmp_path / "out"
    assert cli.main(["export", str(project.folder), "--out", str(out)]) == 0
    assert np.array_equal(read_mask(out / "slide.png"), doc.labels)
    assert cli.main(["export", str(project.folder), "--out", str(out), "--format", "binary"]) == 0
    assert (read_mask(out / "slide_lesion.png") == 255).sum() == 24
    assert not (out / "slide_bg.png").exists()


def test_export_command_reports_a_missing_project(tmp_path, capsys):
    assert cli.main(["export", str(tmp_path / "nowhere"), "--out", str(tmp_path / "out")]) == 1
    err = capsys.readouterr().err
    assert "nowhere" in err and "no such project folder" in err


def test_export_command_writes_16_bit_masks_for_projects_of_many_classes(tmp_path, capsys):
    folder = tmp_path / "images"
    folder.mkdir()
    cv2.imwrite(str(folder / "slide.png"), np.zeros((6, 8), np.uint8))
    classes = ClassList.from_names([f"c{i}" for i in range(301)], default_palette(301))
    project = Project.create(tmp_path / "project", [folder], classes)
    labels = np.full((6, 8), 65535, np.uint16)
    labels[1:3, 2:5] = 300
    labels[4, :] = 255
    write_label_png(project.entries[0].labels_path, labels, classes.colors)
    out = tmp_path / "out"
    assert cli.main(["export", str(project.folder), "--out", str(out)]) == 0
    written = read_mask(out / "slide.png")
    assert written.dtype == np.uint16
    np.testing.assert_array_equal(written, labels)
    assert cli.main(["export", str(project.folder), "--out", str(out), "--format", "binary"]) == 0
    assert (read_mask(out / "slide_c300.png") == 255).sum() == 6
    assert (read_mask(out / "slide_c255.png") == 255).sum() == 8
    capsys.readouterr()
    with pytest.raises(SystemExit):
        cli.main(["export", "--help"])
    assert "16-bit greyscale PNG, 65535 = unlabelled" in " ".join(capsys.readouterr().out.split())
