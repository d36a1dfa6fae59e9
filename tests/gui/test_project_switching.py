"""Opening one project after another in the same window: every panel shows the
new project, nothing of the previous one (checkpoint, prediction, run, curves,
status texts) leaks into it."""

import itertools
import shutil

import pytest

from segstudio.annotation.classes import ClassList
from segstudio.io.project_opening import project_display_name
from segstudio.io.project import Project
from tests.gui.conftest import CLASS_COLORS, CLASS_NAMES, run_model
from tests.io.test_dicom import make_ct_series

KINDS = ("images", "volume", "empty")


@pytest.fixture
def projects(tmp_path, image_folder, checkpoint):
    """Three folders as a user has them: a demo-like project (2-D images, 3 classes,
    its own checkpoint), a DICOM series, and an empty new project."""
    images = tmp_path / "demo_like"
    shutil.copytree(image_folder, images / "images")
    classes = ClassList.from_list([{"name": n, "color": c} for n, c in zip(CLASS_NAMES, CLASS_COLORS)])
    project = Project.create(images, sorted((images / "images").glob("*.png")), classes)
    project.model_settings.update(architecture="unet", checkpoint=str(checkpoint), device="cpu",
                                  precision="fp32", tile=512)
    project.save()
    project.release()
    volume = tmp_path / "ct"
    make_ct_series(volume)
    empty = tmp_path / "empty"
    Project.create(empty, [], ClassList.from_list([{"name": "background", "color": (0, 0, 0)},
                                                    {"name": "thing", "color": (255, 0, 0)}])).release()
    return {"images": images, "volume": volume, "empty": empty}


def _start_from(window):
    return window.training_panel._start_from.text()


def _choose_fast(window):
    panel = window.training_panel
    panel._mode.setCurrentIndex(panel._mode.findData(True))


def test_the_training_panel_says_what_it_starts_from_and_an_untrained_start_trains_in_full(
        qtbot, window, projects, checkpoint):
    assert window.open_path(projects["images"])
    assert checkpoint.name in _start_from(window)  # the Model panel's checkpoint, not "no model yet"
    _choose_fast(window)  # a trained model may fine-tune its head only
    assert window.training_panel.settings()["freeze_backbone"] is True
    assert window.open_path(projects["empty"])
    architecture = window.model_panel.settings()["architecture"]
    assert _start_from(window) == f"an untrained {architecture}"
    assert window.training_panel.settings()["freeze_backbone"] is False  # Full for an untrained network
    _choose_fast(window)
    # choosing a checkpoint in the Model panel changes what training starts from
    window.model_panel._checkpoint.setText(str(checkpoint))
    window.model_panel._checkpoint.editingFinished.emit()
    assert checkpoint.name in _start_from(window)
    window.model_panel._checkpoint.setText("")
    window.model_panel._checkpoint.editingFinished.emit()
    assert _start_from(window).startswith("an untrained ")
    assert window.training_panel.settings()["freeze_backbone"] is False


def _dirty(qtbot, window, kind):
    """Leave what a session in a project leaves behind: a prediction, model and training texts, curves."""
    if kind == "images":
        assert run_model(qtbot, window, window.model_panel.settings()["checkpoint"]) == "done"
        assert window.session.document.prediction is not None
    window.model_panel.set_progress(0, 1, "Model run failed")
    window.training_panel.set_progress(1, 1, "v0002 ready: validation mIoU 0.512")
    window.training_panel.set_curves([1.0, 0.5], [1], [0.4], [0.5])
    window.training_panel.set_comparison(["a", "b"], {"iou": [0.1, 0.2], "mean_iou": 0.15}, None)


def _assert_fresh(window, kind, checkpoint):
    project = window.session.project
    settings = window.model_panel.settings()
    expected = str(checkpoint) if kind == "images" else ""
    assert settings["checkpoint"] == expected
    if kind == "images":
        assert settings["architecture"] == "unet"
    assert window.model_panel._status.text() == "Idle"
    assert not window.model_panel.is_running()
    assert window.training_panel._status.text() == "Idle"
    for curve in (window.training_panel.loss_curve, window.training_panel.iou_curve,
                  window.training_panel.dice_curve):
        _xs, ys = curve.getData()
        assert ys is None or len(ys) == 0
    assert window.training_panel.comparison.rowCount() == 0
    document = window.session.document
    assert document is None or document.prediction is None
    assert not window.layers_panel._row("prediction").visible.isEnabled()
    assert not window.layers_panel._row("heatmap").visible.isEnabled()
    if kind != "empty":  # see test_an_empty_project_shows_its_classes
        assert [name for name, _color, _visible in window.classes_panel.classes()] == list(project.classes.names)
        assert len(window.session.classes) == len(project.classes)
    # the title names the folder opened (not segstudio_project): test_look.py
    assert window.windowTitle().startswith(f"segstudio — {project_display_name(project)}")


@pytest.mark.parametrize("order", list(itertools.permutations(KINDS)), ids="-".join)
def test_each_project_opened_after_another_shows_its_own_state(qtbot, window, projects, checkpoint, order):
    for kind in order:
        assert window.open_path(projects[kind])
        qtbot.wait(10)
        _assert_fresh(window, kind, checkpoint)
        _dirty(qtbot, window, kind)


@pytest.mark.parametrize("second", ["plain_images", "volume"])
def test_a_run_in_flight_does_not_land_in_the_next_project(qtbot, window, projects, checkpoint, image_folder,
                                                           tmp_path, second):
    assert window.open_path(projects["images"])
    window.run_model()
    assert window.runs.busy
    # the same images as a new folder: a new project with the default two classes
    folder = projects["volume"] if second == "volume" else shutil.copytree(image_folder, tmp_path / "plain")
    assert window.open_path(folder)
    assert len(window.session.classes) == 2
    # the new project can run at once: the old run winds down on its own
    assert not window.runs.busy
    assert not window.model_panel.is_running()
    finished = []
    window.runs.runFinished.connect(finished.append)
    qtbot.waitUntil(lambda: not window.runs._winding_down, timeout=60000)
    qtbot.wait(50)
    document = window.session.document
    assert document.prediction is None
    assert len(window.session.classes) == 2  # the old run's model did not hand its classes over
    # its end is not announced in the new project ("Model run cancelled" there was a puzzle)
    assert finished == []
    assert window.model_panel._status.text() == "Idle"
    assert not window.model_panel.is_running()
    window.accept("prediction")  # Ctrl+Shift+A
    assert (document.labels == document.unlabelled).all()
    assert window.session.save(wait=True)


def test_accepting_a_prediction_never_writes_a_class_the_project_lacks(qtbot, window, projects, checkpoint):
    """A 3-class model run on a labelled 2-class project: no prediction to accept."""
    folder = projects["images"]
    project = Project.open(folder)
    project.classes = ClassList.from_list([{"name": "background", "color": (0, 0, 0)},
                                           {"name": "cell", "color": (0, 255, 0)}])
    document = project.load_document(0)
    document.labels[:4, :4] = 1
    project.save_document(0, document)
    project.save()
    project.release()
    assert window.open_path(folder)
    window.last_error = None
    run_model(qtbot, window, checkpoint)
    document = window.session.document
    assert window.last_error is not None  # "the model predicts 3 classes, the project has 2"
    assert document.prediction is None
    window.accept("prediction")
    assert int(document.labels[document.labels != document.unlabelled].max()) < 2
    assert window.session.save(wait=True)


def test_an_empty_project_shows_its_classes(qtbot, window, projects):
    assert window.open_path(projects["empty"])
    assert [name for name, _color, _visible in window.classes_panel.classes()] == ["background", "thing"]
