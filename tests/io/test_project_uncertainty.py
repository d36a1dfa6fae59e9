"""The uncertainty score kept with each image in project.json (Next image to annotate)."""

import json
import logging

import cv2
import numpy as np
import pytest

from segstudio.annotation.classes import ClassList
from segstudio.io.project import PROJECT_FILE, Project


@pytest.fixture
def project(tmp_path):
    folder = tmp_path / "images"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for stem in ("a", "b", "c"):
        cv2.imwrite(str(folder / f"{stem}.png"), rng.integers(0, 255, (12, 16, 3), dtype=np.uint8))
    classes = ClassList.from_names(["background", "cell"], [(0, 0, 0), (255, 0, 0)])
    return Project.create(tmp_path / "project", [folder], classes)


def _images_json(project):
    return json.loads((project.folder / PROJECT_FILE).read_text())["images"]


def test_scores_survive_saving_and_opening_again(project):
    assert [e.uncertainty for e in project.entries] == [None, None, None]
    project.entries[0].uncertainty = 0.4213
    project.entries[2].uncertainty = 0.0
    project.save()
    images = _images_json(project)
    assert [item.get("uncertainty") for item in images] == [0.4213, None, 0.0]
    assert "uncertainty" not in images[1]  # never predicted: no key, as older files have it

    again = Project.open(project.folder)
    assert [e.uncertainty for e in again.entries] == [0.4213, None, 0.0]


def test_a_project_file_without_scores_opens(project):
    data = json.loads(project.project_file.read_text())
    for item in data["images"]:
        item.pop("uncertainty", None)
    project.project_file.write_text(json.dumps(data))
    assert [e.uncertainty for e in Project.open(project.folder).entries] == [None, None, None]


@pytest.mark.parametrize("bad", ["high", -0.25, 1.5, True, [0.3], "NaN"])
def test_a_hand_edited_bad_score_is_ignored_with_a_warning(project, caplog, bad):
    text = project.project_file.read_text()
    data = json.loads(text)
    data["images"][1]["uncertainty"] = float("nan") if bad == "NaN" else bad
    data["images"][2]["uncertainty"] = 0.75
    project.project_file.write_text(json.dumps(data))  # json writes NaN as NaN, which it reads back
    with caplog.at_level(logging.WARNING, logger="segstudio.io.project_file"):
        again = Project.open(project.folder)
    assert [e.uncertainty for e in again.entries] == [None, None, 0.75]
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "'b'" in warnings[0] and "uncertainty" in warnings[0]
    again.save()  # the bad value is dropped, the good one kept
    assert [item.get("uncertainty") for item in _images_json(again)] == [None, None, 0.75]
