"""Project folders: create, save, reopen, move, and the errors of bad files."""

import json
import shutil

import cv2
import numpy as np
import pytest
from PIL import Image

from segstudio.annotation.classes import ClassList
from segstudio.annotation.document import ImageStatus
from segstudio.annotation.tools import disk
from segstudio.errors import DataError, InvalidArgumentError, UnreadableInputError
from segstudio.io.project import PROJECT_FILE, Project

COLORS = [(0, 0, 0), (255, 0, 0), (0, 0, 255)]


@pytest.fixture
def images(tmp_path):
    folder = tmp_path / "data" / "images"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    sizes = {"a": (30, 40), "b": (25, 20)}
    for stem, (h, w) in sizes.items():
        cv2.imwrite(str(folder / f"{stem}.png"), rng.integers(0, 255, (h, w, 3), dtype=np.uint8))
    return folder, sizes


def _classes():
    return ClassList.from_names(["background", "cell", "nucleus"], COLORS)


def test_create_edit_save_open_round_trip(tmp_path, images):
    folder, sizes = images
    project_dir = tmp_path / "data" / "project"
    project = Project.create(project_dir, [folder], _classes())
    assert [e.id for e in project.entries] == ["a", "b"]
    assert all(e.status is ImageStatus.NEW for e in project.entries)
    assert not project.has_labels(0)

    doc = project.load_document(1)
    assert doc.image.shape == (*sizes["b"], 3) and (doc.labels == 255).all()
    doc.paint(*disk(10, 10, 4, doc.shape), 2)
    doc.paint(*disk(3, 3, 1, doc.shape), 0)
    doc.set_status("reviewed")
    project.save_document(1, doc)
    assert not doc.dirty and project.has_labels(1)
    project.current = 1
    project.model_settings = {"architecture": "unet", "tile": 256}
    project.crf_settings["iterations"] = 5
    project.classes.set_visible(2, False)
    project.save()

    again = Project.open(project_dir)
    assert again.classes == project.classes and again.classes[2].visible is False
    assert [e.status for e in again.entries] == [ImageStatus.NEW, ImageStatus.REVIEWED]
    assert again.current == 1
    assert again.model_settings == {"architecture": "unet", "tile": 256}
    assert again.crf_settings["iterations"] == 5
    reopened = again.load_document(1)
    assert np.array_equal(reopened.labels, doc.labels)
    assert reopened.status is ImageStatus.REVIEWED and reopened.source == folder / "b.png"
    with Image.open(again.entries[1].labels_path) as png:
        assert png.mode == "P" and png.getpalette()[:9] == [v for c in COLORS for v in c]


def test_project_file_content(tmp_path, images):
    folder, _ = images
    project = Project.create(tmp_path / "data" / "project", [folder / "a.png"], _classes())
    data = json.loads((project.folder / PROJECT_FILE).read_text())
    assert data["format"] == "segstudio-project" and data["version"] == 1
    assert data["images"] == [
        {"id": "a", "source": "../images/a.png", "status": "new", "labels": "labels/a.png"}
    ]
    assert data["classes"][1] == {"name": "cell", "color": [255, 0, 0], "visible": True}
    assert data["current"] == 0 and "iterations" in data["crf"]


def test_relative_sources_survive_moving_the_folder(tmp_path, images):
    folder, _ = images
    project = Project.create(tmp_path / "data" / "project", [folder], _classes())
    doc = project.load_document(0)
    doc.paint(*disk(5, 5, 2, doc.shape), 1)
    project.save_document(0, doc)
    shutil.move(tmp_path / "data", tmp_path / "moved")
    moved = Project.open(tmp_path / "moved" / "project" / PROJECT_FILE)
    assert moved.entries[0].source == tmp_path / "moved" / "images" / "a.png"
    assert np.array_equal(moved.load_document(0).labels, doc.labels)


def test_far_away_images_are_stored_absolute(tmp_path, images):
    folder, _ = images
    project = Project.create(tmp_path / "x" / "y" / "z" / "project", [folder / "a.png"], _classes())
    data = json.loads(project.project_file.read_text())
    assert data["images"][0]["source"] == str(folder / "a.png")


def test_add_images_skips_duplicates_and_makes_unique_ids(tmp_path, images):
    folder, _ = images
    other = tmp_path / "other"
    other.mkdir()
    shutil.copy(folder / "a.png", other / "a.png")
    project = Project.create(tmp_path / "project", [folder], _classes())
    added = project.add_images([folder / "a.png", other / "a.png"])
    assert len(added) == 1 and added[0].id.startswith("a-") and added[0].id != "a"
    assert len(project.entries) == 3
    project.save()
    assert [e.id for e in Project.open(tmp_path / "project").entries] == [e.id for e in project.entries]


def test_create_refuses_an_existing_project(tmp_path, images):
    folder, _ = images
    Project.create(tmp_path / "project", [folder], _classes())
    with pytest.raises(InvalidArgumentError, match="already holds a project"):
        Project.create(tmp_path / "project", [folder], _classes())


@pytest.mark.parametrize(
    "content, message",
    [
        ("{ not json", "damaged"),
        ("[" * 100000 + "]" * 100000, "nested too deeply"),
        ('{"format": "segstudio-project", "version": 1, "model": ' + "[" * 100000 + "]" * 100000 + "}",
         "nested too deeply"),
        ('{"format": "something-else", "version": 1}', "not a segstudio project"),
        ('{"format": "segstudio-project", "version": 7, "classes": [], "images": []}', "newer segstudio"),
        ('{"format": "segstudio-project", "version": 1, "images": [{"id": "a"}]}', "no 'source'"),
        ('{"format": "segstudio-project", "version": 1, "images": [{"id": "a", "source": "a.png", '
         '"status": "odd"}]}', "unknown status"),
    ],
)
def test_bad_project_files_name_the_file(tmp_path, content, message):
    (tmp_path / PROJECT_FILE).write_text(content)
    with pytest.raises(UnreadableInputError, match=message) as info:
        Project.open(tmp_path)
    assert info.value.path == str(tmp_path / PROJECT_FILE)


def test_missing_project_file(tmp_path):
    with pytest.raises(UnreadableInputError, match="no project.json") as info:
        Project.open(tmp_path)
    assert PROJECT_FILE in str(info.value)


def test_missing_image_and_mismatched_labels(tmp_path, images):
    folder, _ = images
    project = Project.create(tmp_path / "project", [folder], _classes())
    (folder / "a.png").unlink()
    with pytest.raises(UnreadableInputError, match="a.png"):
        project.load_document(0)
    from segstudio.io.masks import write_indexed_png

    write_indexed_png(project.entries[1].labels_path, np.zeros((3, 3), np.uint8), COLORS)
    with pytest.raises(DataError):
        project.load_document(1)


def test_deleting_a_class_renumbers_every_saved_label_file(tmp_path, images):
    folder, _ = images
    project = Project.create(tmp_path / "project", [folder], _classes())
    saved = []
    for index in range(2):
        doc = project.load_document(index)
        doc.labels[:4, :] = 0
        doc.labels[4:8, :] = 1
        doc.labels[8:12, :] = 2
        project.save_document(index, doc)
        saved.append(doc.labels.copy())
    project.delete_class(1)  # "cell" goes, its pixels become unlabelled
    assert Project.open(project.folder).classes.names == ["background", "nucleus"]
    for index in range(2):
        labels = project.load_document(index).labels
        expected = saved[index].copy()
        expected[saved[index] == 1] = 255
        expected[saved[index] == 2] = 1
        assert np.array_equal(labels, expected)
        with Image.open(project.entries[index].labels_path) as png:
            assert png.getpalette()[:6] == [0, 0, 0, 0, 0, 255]


def _many_classes(n=300):
    return ClassList.from_names([f"class {i}" for i in range(n)])


def test_project_of_300_classes_saves_16_bit_labels_and_reads_them_back(tmp_path, images):
    folder, sizes = images
    project = Project.create(tmp_path / "project", [folder], _many_classes())
    doc = project.load_document(0)
    assert doc.labels.dtype == np.uint16 and (doc.labels == 65535).all()
    doc.paint(*disk(5, 5, 3, doc.shape), 299)
    doc.paint(*disk(15, 20, 3, doc.shape), 255)
    project.save_document(0, doc)
    with Image.open(project.entries[0].labels_path) as png:
        assert png.mode.startswith("I;16")
    again = Project.open(project.folder)
    assert len(again.classes) == 300
    reread = again.load_document(0)
    assert reread.labels.dtype == np.uint16 and np.array_equal(reread.labels, doc.labels)
    assert np.array_equal(again.read_labels(0), doc.labels)


def test_8_bit_files_read_in_the_project_type_after_the_class_count_grows(tmp_path, images):
    folder, _ = images
    project = Project.create(tmp_path / "project", [folder], _many_classes(254))
    doc = project.load_document(0)
    doc.paint(*disk(5, 5, 3, doc.shape), 253)
    project.save_document(0, doc)
    project.classes.add("one more")
    assert project.classes.label_dtype == np.uint16
    labels = project.read_labels(0)
    assert labels.dtype == np.uint16 and labels[5, 5] == 253 and labels[0, 39] == 65535
    assert np.array_equal(project.load_document(0).labels, labels)
    # a snapshot taken before the change is written in the new depth
    project.write_labels(0, doc.labels)
    with Image.open(project.entries[0].labels_path) as png:
        assert png.mode.startswith("I;16")


def test_16_bit_file_with_classes_beyond_an_8_bit_project_names_the_file(tmp_path, images):
    from segstudio.io.masks import write_label_png

    folder, _ = images
    project = Project.create(tmp_path / "project", [folder], _classes())
    deep = np.full((30, 40), 65535, np.uint16)
    deep[0, 0] = 300
    write_label_png(project.entries[0].labels_path, deep, _many_classes(301).colors)
    with pytest.raises(UnreadableInputError, match=r"a\.png.*300.*3 classes"):
        project.load_document(0)


def test_deleting_a_class_of_255_narrows_every_saved_file_to_8_bit(tmp_path, images):
    folder, _ = images
    project = Project.create(tmp_path / "project", [folder], _many_classes(255))
    for index in range(2):
        doc = project.load_document(index)
        doc.labels[:4, :] = 254
        doc.labels[4:8, :] = 7
        project.save_document(index, doc)
    project.delete_class(7, replacement=0)
    for index in range(2):
        with Image.open(project.entries[index].labels_path) as png:
            assert png.mode == "P"
        labels = project.read_labels(index)
        assert labels.dtype == np.uint8
        assert (labels[:4] == 253).all() and (labels[4:8] == 0).all() and (labels[8:] == 255).all()
    with pytest.raises(InvalidArgumentError):
        list(project._renumbered(np.arange(256)))


def test_delete_class_is_all_or_nothing(tmp_path, images):
    folder, _ = images
    project = Project.create(tmp_path / "project", [folder], _classes())
    for index in range(2):
        doc = project.load_document(index)
        doc.labels[:3, :] = 2
        project.save_document(index, doc)
    before = project.entries[0].labels_path.read_bytes()
    project.entries[1].labels_path.write_bytes(b"damaged")
    with pytest.raises(UnreadableInputError, match=r"b\.png"):
        project.delete_class(1)
    assert project.classes.names == ["background", "cell", "nucleus"]
    assert project.entries[0].labels_path.read_bytes() == before  # untouched
    project.entries[1].labels_path.unlink()
    mapping = project.delete_class(1)
    assert project.classes.names == ["background", "nucleus"] and mapping[2] == 1
    assert (project.read_labels(0)[:3] == 1).all()


def test_opening_a_project_removes_the_temporary_files_of_killed_writes(tmp_path, images):
    import os
    import tempfile
    import time

    folder, _ = images
    project_dir = tmp_path / "data" / "project"
    project = Project.create(project_dir, [folder], _classes())
    doc = project.load_document(0)
    doc.paint(*disk(5, 5, 3, doc.shape), 1)
    project.save_document(0, doc)
    labels_dir = project.entries[0].labels_path.parent
    (project_dir / "models" / "runs" / "r1").mkdir(parents=True)

    def leftover(directory, name, age_s):
        # named as an atomic write names its temporary file
        handle, path = tempfile.mkstemp(prefix=f".{name}.", suffix=".tmp", dir=directory)
        os.write(handle, b"half a file")
        os.close(handle)
        os.utime(path, (time.time() - age_s, time.time() - age_s))
        return path

    stale = [leftover(labels_dir, "a.png", 300), leftover(project_dir, "project.json", 120),
             leftover(project_dir / "models" / "runs" / "r1", "last.safetensors", 7200)]
    kept = [leftover(labels_dir, "b.png", 5),  # maybe another window's write, under way
            leftover(project_dir / "models" / "runs" / "r1", "train_state.pt", 600)]
    (project_dir / "notes.tmp").write_text("the user's own file")
    old = time.time() - 7200
    os.utime(project_dir / "notes.tmp", (old, old))

    Project.open(project_dir)  # without the lock (export, evaluate): nothing is removed
    assert all(os.path.exists(p) for p in stale)
    again = Project.open(project_dir, lock=True)  # the studio
    again.release()
    assert [p for p in stale if os.path.exists(p)] == []
    assert all(os.path.exists(p) for p in kept)
    assert (project_dir / "notes.tmp").read_text() == "the user's own file"
    # the labels themselves are untouched
    assert (again.load_document(0).labels == doc.labels).all()
