"""``segstudio export`` end to end."""

import cv2
import numpy as np

from segstudio import cli
from segstudio.annotation.classes import ClassList
from segstudio.io.masks import read_mask
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
