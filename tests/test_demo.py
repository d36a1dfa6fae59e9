"""segstudio demo: a copy of the sample project, never inside the package."""

import json

import numpy as np

from segstudio import cli
from segstudio.demo import demo_folder, prepare_demo
from segstudio.io.masks import read_mask
from segstudio.resources import SAMPLE, resource_path, resources_dir


def test_demo_project_has_the_sample_corrected_training_images(tmp_path):
    project = prepare_demo(tmp_path / "demo")
    sample = resource_path(*SAMPLE)
    split = json.loads((sample / "classes.json").read_text())["split"]
    assert len(project.entries) == 12
    assert list(project.classes.names) == ["background", "cytoplasm", "nucleus"]
    statuses = {e.source.stem: e.status.value for e in project.entries}
    assert all(statuses[s] == "corrected" for s in split["train"])
    assert all(statuses[s] == "new" for s in split["val"])
    first_train = next(i for i, e in enumerate(project.entries) if e.source.stem in split["train"])
    entry = project.entries[first_train]
    assert np.array_equal(read_mask(entry.labels_path), read_mask(sample / "masks" / f"{entry.source.stem}.png"))
    checkpoint = project.model_settings["checkpoint"]
    assert checkpoint.startswith(str(tmp_path)) and project.model_settings["architecture"] == "unet"
    assert project.entries[project.current].source.stem in split["val"]
    # the copy lives outside the installed resources
    assert resources_dir() not in entry.source.parents


def test_demo_reopens_and_fresh_starts_over(tmp_path):
    project = prepare_demo(tmp_path / "demo")
    project.current = 0
    project.save()
    assert prepare_demo(tmp_path / "demo").current == 0
    assert prepare_demo(tmp_path / "demo", fresh=True).current != 0


def test_demo_command_without_window_prints_the_folder(capsys):
    assert cli.main(["demo", "--no-window"]) == 0
    folder = capsys.readouterr().out.strip()
    assert folder == str(demo_folder())
    assert (demo_folder() / "project.json").is_file()
