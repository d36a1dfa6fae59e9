"""Deleting a class survives a kill at any moment: every label file agrees with project.json."""

from __future__ import annotations

import json
import os
from types import SimpleNamespace

import cv2
import numpy as np
import pytest

from segstudio.annotation.classes import ClassList
from segstudio.errors import UnreadableInputError
from segstudio.io import class_change
from segstudio.io.class_change import JOURNAL_FILE, staged_path
from segstudio.io.project import Project

NAMES = ["background", "a", "b", "c"]
FILES = 6


class Killed(BaseException):
    """Stands for SIGKILL: nothing after it runs, no handler sees it."""


@pytest.fixture
def labelled(tmp_path):
    """A project of 6 images; in each, rows 0-3 hold class a, 4-7 b, 8-11 c, the rest unlabelled."""
    images = tmp_path / "images"
    images.mkdir()
    for i in range(FILES):
        cv2.imwrite(str(images / f"im{i}.png"), np.full((16, 8), 40 * i, np.uint8))
    project = Project.create(tmp_path / "project", [images], ClassList.from_names(NAMES))
    for index in range(FILES):
        doc = project.load_document(index)
        for k in (1, 2, 3):
            doc.labels[4 * (k - 1):4 * k] = k
        project.save_document(index, doc)
    return project


def _reopen(folder) -> Project:
    """Open as the studio does (holding the lock, which lets it repair), then let the lock go."""
    project = Project.open(folder, lock=True)
    project.release()
    return project


def _names_per_row(project: Project) -> list[list[str]]:
    """For every file, the class name of each row (``-`` for unlabelled), read as a new window would."""
    rows = []
    for index in range(len(project.entries)):
        labels = project.read_labels(index)
        names = []
        for value in labels[:, 0]:
            names.append(project.classes.names[value] if value < len(project.classes) else "-")
        assert (labels == labels[:, :1]).all()
        rows.append(names)
    return rows


def _assert_consistent(folder, deleted: str) -> None:
    """Either the deletion did not happen, or it did in every file; never a class read as another."""
    project = _reopen(folder)
    assert not (folder / JOURNAL_FILE).exists()
    assert not list((folder / "labels").glob(".*.renumbered"))
    before = ["a"] * 4 + ["b"] * 4 + ["c"] * 4 + ["-"] * 4
    if deleted in project.classes.names:
        assert project.classes.names == NAMES
        expected = before
    else:
        assert project.classes.names == [n for n in NAMES if n != deleted]
        expected = ["-" if name == deleted else name for name in before]
    assert _names_per_row(project) == [expected] * FILES


def test_delete_class_renumbers_and_saves(labelled):
    labelled.delete_class(2)  # "b"
    _assert_consistent(labelled.folder, "b")
    assert _reopen(labelled.folder).classes.names == ["background", "a", "c"]


@pytest.mark.parametrize("kill_after", range(FILES))
def test_kill_while_staging_leaves_the_project_as_it_was(labelled, monkeypatch, kill_after):
    calls = {"n": 0}
    real_write = Project._write_label_file

    def write(self, entry, labels, classes, path):
        if calls["n"] == kill_after:
            raise Killed
        calls["n"] += 1
        real_write(self, entry, labels, classes, path)

    monkeypatch.setattr(Project, "_write_label_file", write)
    monkeypatch.setattr(class_change.ClassChange, "discard", lambda self: None)  # a kill cleans nothing
    with pytest.raises(Killed):
        labelled.delete_class(2)
    monkeypatch.undo()
    assert len(list((labelled.folder / "labels").glob(".*.renumbered"))) == kill_after
    _assert_consistent(labelled.folder, "b")
    assert _reopen(labelled.folder).classes.names == NAMES


@pytest.mark.parametrize("kill_after", range(FILES + 1))
def test_kill_while_renaming_is_finished_on_open(labelled, monkeypatch, kill_after):
    calls = {"n": 0}

    def replace(source, target):
        if calls["n"] == kill_after:
            raise Killed
        calls["n"] += 1
        os.replace(source, target)

    # the module's own os only: the atomic writes of step 1 keep the real one
    monkeypatch.setattr(class_change, "os", SimpleNamespace(replace=replace))
    with pytest.raises(Killed):
        labelled.delete_class(2) if kill_after < FILES else _kill_before_save(labelled, monkeypatch)
    monkeypatch.undo()
    assert (labelled.folder / JOURNAL_FILE).exists()
    _assert_consistent(labelled.folder, "b")
    assert _reopen(labelled.folder).classes.names == ["background", "a", "c"]


def _kill_before_save(project, monkeypatch):
    monkeypatch.setattr(Project, "save", lambda self: (_ for _ in ()).throw(Killed()))
    project.delete_class(2)


def test_kill_after_saving_before_the_journal_goes(labelled, monkeypatch):
    monkeypatch.setattr(class_change.ClassChange, "finish", lambda self: (_ for _ in ()).throw(Killed()))
    with pytest.raises(Killed):
        labelled.delete_class(1, replacement=3)
    monkeypatch.undo()
    project = _reopen(labelled.folder)
    assert project.classes.names == ["background", "b", "c"]
    assert not (labelled.folder / JOURNAL_FILE).exists()
    # a's rows went to c, b and c moved down by one
    assert _names_per_row(project) == [["c"] * 4 + ["b"] * 4 + ["c"] * 4 + ["-"] * 4] * FILES


def test_a_kill_while_finishing_is_finished_at_the_next_open(labelled, monkeypatch):
    monkeypatch.setattr(Project, "save", lambda self: (_ for _ in ()).throw(Killed()))
    with pytest.raises(Killed):
        labelled.delete_class(2)
    with pytest.raises(Killed):
        _reopen(labelled.folder)  # killed again while finishing
    monkeypatch.undo()
    _assert_consistent(labelled.folder, "b")


def test_a_stale_journal_is_ignored(labelled, monkeypatch, caplog):
    monkeypatch.setattr(Project, "save", lambda self: (_ for _ in ()).throw(Killed()))
    with pytest.raises(Killed):
        labelled.delete_class(2)
    monkeypatch.undo()
    journal = json.loads((labelled.folder / JOURNAL_FILE).read_text())
    journal["classes_before"][1]["name"] = "renamed since"
    journal["classes_after"][1]["name"] = "renamed since"
    (labelled.folder / JOURNAL_FILE).write_text(json.dumps(journal))
    project = _reopen(labelled.folder)
    assert project.classes.names == NAMES
    assert "no longer match" in caplog.text


def test_an_open_without_the_lock_leaves_a_deletion_under_way_alone(labelled, monkeypatch):
    """segstudio export opens without the lock while a studio may be deleting a class."""
    real_write = Project._write_label_file
    seen = []

    def write(self, entry, labels, classes, path):
        real_write(self, entry, labels, classes, path)
        if len(seen) == 2:  # two files staged: another command opens the project now
            seen.append(Project.open(self.folder).classes.names)
        seen.append(path)

    monkeypatch.setattr(Project, "_write_label_file", write)
    labelled.delete_class(2)
    monkeypatch.undo()
    assert seen[2] == NAMES
    _assert_consistent(labelled.folder, "b")
    assert _reopen(labelled.folder).classes.names == ["background", "a", "c"]


def test_a_failed_save_after_the_journal_still_renumbers_the_open_image(labelled, monkeypatch):
    from segstudio.errors import ExportError

    doc = labelled.load_document(0)
    calls = []
    monkeypatch.setattr(Project, "save", lambda self: (_ for _ in ()).throw(ExportError("No space left")))
    with pytest.raises(ExportError, match="deleted, but .*No space left"):
        labelled.delete_class(1, on_commit=lambda mapping: calls.append(doc.remap_labels(mapping)))
    monkeypatch.undo()
    assert calls == [True]
    assert set(np.unique(doc.labels[:, 0])) == {255, 1, 2}  # a gone; b, c moved down
    _assert_consistent(labelled.folder, "a")


def test_a_journal_naming_another_file_of_the_project_is_refused(labelled):
    (labelled.folder / JOURNAL_FILE).write_text(json.dumps({
        "format": "segstudio-class-change", "version": 1,
        "classes_before": [], "classes_after": [], "files": ["project.json"]}))
    with pytest.raises(UnreadableInputError, match="project.json, which is not a label file"):
        _reopen(labelled.folder)


@pytest.mark.parametrize("files", [["../../outside.png"], ["/etc/passwd"], [3]])
def test_a_journal_naming_a_file_outside_the_project_is_refused(labelled, files):
    (labelled.folder / JOURNAL_FILE).write_text(json.dumps({
        "format": "segstudio-class-change", "version": 1,
        "classes_before": [], "classes_after": [], "files": files}))
    with pytest.raises(UnreadableInputError, match=r"class-change\.json.*not a file inside the project"):
        _reopen(labelled.folder)


def test_a_damaged_journal_is_refused_naming_it(labelled):
    (labelled.folder / JOURNAL_FILE).write_text("{not json")
    with pytest.raises(UnreadableInputError, match=r"class-change\.json.*damaged"):
        _reopen(labelled.folder)


def test_an_unreadable_file_stops_the_deletion_without_staged_leftovers(labelled):
    labelled.entries[3].labels_path.write_bytes(b"damaged")
    with pytest.raises(UnreadableInputError, match=r"im3\.png"):
        labelled.delete_class(2)
    assert not list((labelled.folder / "labels").glob(".*"))
    assert not (labelled.folder / JOURNAL_FILE).exists()
    assert _reopen(labelled.folder).classes.names == NAMES
    assert staged_path(labelled.entries[0].labels_path).name == ".im0.png.renumbered"
