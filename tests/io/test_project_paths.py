"""Every path a project writes to stays inside it: crafted project files are refused on open."""

from __future__ import annotations

import json
import os

import cv2
import numpy as np
import pytest

from segstudio.annotation.classes import ClassList
from segstudio.errors import ExportError, UnreadableInputError
from segstudio.io.export import export_project
from segstudio.io.project import Project
from segstudio.io.project_paths import inside, is_inside
from segstudio.tasks import run_to_completion


@pytest.fixture
def crafted(tmp_path):
    """A project in tmp/p with images in tmp/img, and a function rewriting its first entry."""
    images = tmp_path / "img"
    images.mkdir()
    for name in ("a", "b"):
        cv2.imwrite(str(images / f"{name}.png"), np.full((12, 10), 90, np.uint8))
    project = Project.create(tmp_path / "p", [images], ClassList.from_names(["bg", "fg"]))
    doc = project.load_document(0)
    doc.labels[:4] = 1
    project.save_document(0, doc)

    def rewrite(**changes):
        data = json.loads(project.project_file.read_text())
        data["images"][0].update(changes)
        project.project_file.write_text(json.dumps(data))
        return project.folder

    return project, rewrite


def test_inside_and_is_inside(tmp_path):
    assert inside(tmp_path, "labels/a.png") == tmp_path / "labels" / "a.png"
    assert inside(tmp_path, "../x.png") is None
    assert inside(tmp_path, "labels/../../x.png") is None
    assert inside(tmp_path, str(tmp_path / "labels" / "a.png")) == tmp_path / "labels" / "a.png"
    assert inside(tmp_path, "/etc/x.png") is None
    assert not is_inside(tmp_path, tmp_path)
    (tmp_path / "out").mkdir()
    (tmp_path / "link").symlink_to(tmp_path / "out")
    assert not is_inside(tmp_path / "p", tmp_path / "link")


@pytest.mark.parametrize("labels", ["../../x.png", "../img/a.png", "/tmp/elsewhere/a.png", "labels/../../x.png"])
def test_label_file_outside_the_project_is_refused_naming_the_entry(crafted, labels):
    project, rewrite = crafted
    folder = rewrite(labels=labels)
    with pytest.raises(UnreadableInputError) as info:
        Project.open(folder)
    message = str(info.value)
    assert "project.json" in message and "'a'" in message and "outside the project folder" in message


def test_label_file_on_a_source_image_inside_the_project_is_refused(tmp_path):
    project = Project.create(tmp_path / "p", [], ClassList.from_names(["bg", "fg"]))
    cv2.imwrite(str(project.folder / "scan.png"), np.zeros((5, 5), np.uint8))
    project.add_images([project.folder / "scan.png"])
    project.save()
    data = json.loads(project.project_file.read_text())
    data["images"][0]["labels"] = "scan.png"
    project.project_file.write_text(json.dumps(data))
    before = (project.folder / "scan.png").read_bytes()
    with pytest.raises(UnreadableInputError, match="source images are never written"):
        Project.open(project.folder)
    assert (project.folder / "scan.png").read_bytes() == before


def test_two_images_sharing_a_label_file_are_refused(crafted):
    project, rewrite = crafted
    folder = rewrite(labels="labels/b.png")
    with pytest.raises(UnreadableInputError, match="'a' and 'b' share the label file"):
        Project.open(folder)


def test_label_file_that_is_not_a_png_is_refused(crafted):
    project, rewrite = crafted
    folder = rewrite(labels="project.json")
    with pytest.raises(UnreadableInputError, match="not a .png file"):
        Project.open(folder)


def test_symlinked_labels_folder_leading_outside_is_refused(crafted, tmp_path):
    project, _ = crafted
    outside = tmp_path / "outside"
    (project.folder / "labels").rename(outside)
    (project.folder / "labels").symlink_to(outside, target_is_directory=True)
    with pytest.raises(UnreadableInputError, match="outside the project folder"):
        Project.open(project.folder)


def test_symlinked_models_folder_leading_outside_is_refused(crafted, tmp_path):
    project, _ = crafted
    (tmp_path / "elsewhere").mkdir()
    models = project.folder / "models"
    if models.exists():
        models.rmdir()
    models.symlink_to(tmp_path / "elsewhere", target_is_directory=True)
    with pytest.raises(UnreadableInputError, match="models folder is a link to .*elsewhere, outside the project"):
        Project.open(project.folder)


def test_a_link_made_after_opening_is_not_written_through(crafted, tmp_path):
    project, _ = crafted
    outside = tmp_path / "outside"
    outside.mkdir()
    project.entries[0].labels_path.unlink()
    project.entries[0].labels_path.symlink_to(outside / "a.png")
    doc = project.load_document(1)
    with pytest.raises(ExportError, match="outside the project folder"):
        project.write_labels(0, doc.labels[:12, :10])
    assert not (outside / "a.png").exists()


@pytest.mark.parametrize("image_id", ["..", ".", ".hidden"])
def test_dot_ids_are_refused(crafted, image_id):
    _, rewrite = crafted
    with pytest.raises(UnreadableInputError, match="bad id"):
        Project.open(rewrite(id=image_id))


def test_export_never_writes_outside_its_folder_or_over_a_source(crafted, tmp_path, monkeypatch):
    project, _ = crafted
    images = tmp_path / "img"
    before = (images / "a.png").read_bytes()
    with pytest.raises(ExportError, match="source image") as info:
        run_to_completion(export_project(project, images))
    assert (images / "a.png").read_bytes() == before
    assert "a.png: this is a source image" in str(info.value)
    # a project whose entry carries a dangerous id built in memory is still kept in the folder
    project.entries[0].kind = "volume"
    project.entries[0].id = ".."
    monkeypatch.setattr(project, "read_labels", lambda index: np.ones((2, 12, 10), np.uint8))
    out = tmp_path / "exports" / "chosen"
    with pytest.raises(ExportError, match="'..' would lie outside the export folder"):
        run_to_completion(export_project(project, out, fmt="png"))
    assert sorted(os.listdir(tmp_path / "exports")) == ["chosen"]
