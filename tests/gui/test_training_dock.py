"""Fine-tuning from the Training dock: a child process, live curves, pause,
resume, cancel, versions and rollback, with the window responsive."""

import os

import pytest
from PySide6.QtCore import Qt, QTimer

from segstudio.demo import prepare_demo


@pytest.fixture
def demo_window(window, tmp_path):
    project = prepare_demo(tmp_path / "demo")
    assert window.open_path(project.folder)
    return window


def _click_row(qtbot, table, row):
    rect = table.visualRect(table.model().index(row, 0))
    qtbot.mouseClick(table.viewport(), Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier, rect.center())
    assert table.selectedItems() and table.selectedItems()[0].row() == row


def _wait_for_type(qtbot, training, kind, timeout=120000):
    qtbot.waitUntil(lambda: training.last_message is not None and training.last_message.get("type") == kind,
                    timeout=timeout)


def test_train_from_the_dock_pause_resume_and_get_a_new_version(qtbot, demo_window):
    window = demo_window
    training = window.training
    panel = window.training_panel
    ticks = []
    timer = QTimer()
    timer.timeout.connect(lambda: ticks.append(1))
    timer.start(20)
    # as a user: the dock's settings, then Model > Train a new version (Ctrl+T)
    panel._epochs.setValue(3)
    panel._mode.setCurrentIndex(panel._mode.findData(True))
    panel._device.setCurrentText("cpu")
    panel._auto_adopt.setChecked(False)
    window.docks["Model"].raise_()
    window.actions_by_name["train"].trigger()
    assert training.running
    assert not window.docks["Training"].visibleRegion().isEmpty()  # the dock came forward
    window.actions_by_name["train"].trigger()  # a second press while it runs starts nothing
    assert "in progress" in window.statusBar().currentMessage()
    qtbot.waitUntil(lambda: len(training._losses) >= 1, timeout=120000)
    # the trainer is another process
    assert training.process.pid is not None and training.process.pid != os.getpid()
    xs, ys = panel.loss_curve.getData()
    assert len(ys) >= 1 and ys[0] > 0
    ticks_during_run = len(ticks)
    assert ticks_during_run > 0  # the GUI thread kept processing events
    panel.pauseRequested.emit(True)
    _wait_for_type(qtbot, training, "paused")
    steps_when_paused = len(training._losses)
    qtbot.wait(800)
    assert len(training._losses) == steps_when_paused  # no step while paused
    panel.pauseRequested.emit(False)
    with qtbot.waitSignal(training.runEnded, timeout=240000) as ended:
        pass
    timer.stop()
    assert ended.args[0] == "finished"
    assert len(ticks) > ticks_during_run
    versions = training.store.list()
    assert [v.id for v in versions] == ["v0001", "v0002"]
    new = versions[1]
    assert new.parent == "v0001" and new.scores is not None and new.parent_scores is not None
    assert training.store.active_id == "v0001"  # not adopted automatically (switched off)
    # the before/after table shows both
    assert panel.comparison.rowCount() == 4 and panel.comparison.item(3, 1).text() != "–"
    assert len(panel.iou_curve.getData()[1]) >= 1
    # selecting a version shows the curves kept with it
    panel.set_curves([], [], [], [])
    panel.versions.selectRow(1)
    assert len(panel.loss_curve.getData()[1]) == len(new.curves["loss"]) > 0
    # make the new version active, then roll back to its parent in one click (the dock's buttons);
    # the row is clicked as a user does (selectRow would follow a modifier key another test left down)
    _click_row(qtbot, panel.versions, 1)
    panel._make_active.click()
    assert training.store.active_id == "v0002"
    assert window.model_panel.settings()["checkpoint"] == str(training.store.checkpoint_path("v0002"))
    _click_row(qtbot, panel.versions, 1)
    panel._rollback.click()
    assert training.store.active_id == "v0001"


def test_cancel_stops_the_process_and_keeps_the_active_version(qtbot, demo_window):
    window = demo_window
    training = window.training
    panel = window.training_panel
    panel.trainRequested.emit({**panel.settings(), "epochs": 50, "freeze_backbone": True, "device": "cpu"})
    qtbot.waitUntil(lambda: len(training._losses) >= 1, timeout=120000)
    process = training.process
    with qtbot.waitSignal(training.runEnded, timeout=120000) as ended:
        panel.cancelRequested.emit()
    assert ended.args[0] in ("cancelled", "finished")
    qtbot.waitUntil(lambda: not process.is_alive(), timeout=15000)  # reaped off the GUI thread
    assert training.store.active_id == "v0001"
    assert not training.running


def test_a_failing_run_reports_the_reason_and_changes_nothing(qtbot, demo_window, monkeypatch):
    window = demo_window
    training = window.training
    panel = window.training_panel
    panel.trainRequested.emit({**panel.settings(), "epochs": 1, "device": "cuda" if not _has_cuda() else "mps"})
    with qtbot.waitSignal(training.runEnded, timeout=120000) as ended:
        pass
    assert ended.args[0] == "error" or window.last_error is not None
    assert window.last_error is not None
    assert [v.id for v in training.store.list()] == ["v0001"]


def _has_cuda():
    import torch

    return torch.cuda.is_available()


class _FinishingLater:
    """Stands in for a training child whose run finishes after a project switch."""

    def __init__(self):
        self.messages = []
        self.pid = 12345

    def poll(self):
        messages, self.messages = self.messages, []
        return messages

    def is_alive(self):
        return False

    def stop(self, timeout=None):
        return True

    def close(self):
        pass


def test_a_run_finishing_after_a_project_switch_stays_with_its_project(qtbot, window, tmp_path):
    from segstudio.models.checkpoint import load_checkpoint, save_checkpoint
    from segstudio.training.versions import VersionStore

    project_a = prepare_demo(tmp_path / "a")
    project_b = prepare_demo(tmp_path / "b")
    window.open_path(project_a.folder)
    training = window.training
    store_a = VersionStore(project_a.folder)
    parent = store_a.import_checkpoint(project_a.model_settings["checkpoint"], activate=True)
    model, meta = load_checkpoint(project_a.model_settings["checkpoint"])
    finished_checkpoint = save_checkpoint(store_a.new_run_dir() / "best.safetensors", model, meta)
    training.process = _FinishingLater()
    training._run_store, training._run_project = store_a, window.session.project
    training._settings = {"auto_adopt": True}
    training._timer.start()
    window.open_path(project_b.folder)  # the user moves on while A's run goes on
    training.process.messages.append({
        "type": "finished", "status": "finished", "checkpoint": str(finished_checkpoint),
        "version_meta": {"parent": parent.id, "images": [], "val_images": [], "settings": {}, "curves": {},
                         "scores": None, "parent_scores": None, "status": "finished"},
    })
    qtbot.waitUntil(lambda: not training.running, timeout=5000)
    assert [v.id for v in VersionStore(project_a.folder).list()] == ["v0001", "v0002"]
    assert VersionStore(project_b.folder).list() == []


def _demo_with_a_new_class(folder):
    """The demo project after the user added "debris" and painted it on a corrected image."""
    project = prepare_demo(folder)
    project.classes.add("debris", (40, 220, 90))
    index = next(i for i, e in enumerate(project.entries) if e.id == "cells_01")
    document = project.load_document(index)
    document.labels[10:60, 20:90] = 3
    project.save_document(index, document)
    return project


def _train_one_epoch_adopting(qtbot, window, project):
    """Open the project, press Train (one epoch, Fast, Adopt when better) and wait for the run to finish."""
    assert window.open_path(project.folder)
    training, panel = window.training, window.training_panel
    # as a user sets the dock: one epoch, Fast, on the CPU, a quarter held out, adopt when better
    panel._epochs.setValue(1)
    panel._mode.setCurrentIndex(panel._mode.findData(True))
    panel._device.setCurrentText("cpu")
    panel._val_share.setValue(0.25)
    panel._auto_adopt.setChecked(True)
    with qtbot.waitSignal(training.runEnded, timeout=120000) as ended:
        qtbot.mouseClick(panel._train, Qt.MouseButton.LeftButton)
    assert ended.args[0] == "finished", window.last_error
    return training, panel


def test_a_run_for_new_classes_is_adopted_without_comparing_the_parent(qtbot, window, tmp_path, caplog):
    caplog.set_level("INFO", logger="segstudio.gui.training_runs")
    project = _demo_with_a_new_class(tmp_path / "demo")
    training, panel = _train_one_epoch_adopting(qtbot, window, project)
    assert "trainer: the model learns the project's 4 classes: kept background, cytoplasm, nucleus; new debris; " \
           "dropped none" in caplog.messages
    versions = training.store.list()
    assert [v.id for v in versions] == ["v0001", "v0002"]
    old, new = versions
    assert old.class_names == ["background", "cytoplasm", "nucleus"]
    assert new.class_names == ["background", "cytoplasm", "nucleus", "debris"]
    assert new.parent_scores is None and len(new.scores["iou"]) == 4
    # the parent cannot predict "debris": the new version is adopted all the same
    assert training.store.active_id == "v0002"
    assert window.model_panel.settings()["checkpoint"] == str(training.store.checkpoint_path("v0002"))
    assert "new classes: parent not compared" in panel._status.text()
    assert panel.comparison.rowCount() == 5 and panel.comparison.item(3, 0).text() == "debris"
    assert panel.comparison.item(3, 1).text() == "–" and panel.comparison.item(3, 2).text() != "–"
    qtbot.waitUntil(lambda: not window.runs.busy, timeout=60000)  # the adopted model ran on the other images


def test_a_project_without_a_model_starts_from_an_untrained_architecture(qtbot, window, tmp_path):
    import shutil

    from segstudio.annotation.classes import ClassList
    from segstudio.annotation.document import ImageStatus
    from segstudio.io.masks import read_mask
    from segstudio.io.project import Project
    from segstudio.models.checkpoint import read_meta
    from segstudio.resources import SAMPLE, resource_path

    sample = resource_path(*SAMPLE)
    images = tmp_path / "own" / "images"
    shutil.copytree(sample / "images", images)
    classes = ClassList.from_names(["background", "cell"], [(0, 0, 0), (250, 120, 20)])
    project = Project.create(tmp_path / "own", sorted(images.glob("*.png"))[:6], classes)
    for index, entry in enumerate(project.entries):
        document = project.load_document(index)
        document.labels[...] = (read_mask(sample / "masks" / f"{entry.source.stem}.png") > 0).astype("uint8")
        document.status = ImageStatus.CORRECTED
        project.save_document(index, document)
    assert window.open_path(project.folder)
    window.model_panel.set_settings({"architecture": "unet", "checkpoint": ""})
    training = window.training
    panel = window.training_panel
    panel.trainRequested.emit({**panel.settings(), "epochs": 1, "freeze_backbone": True, "device": "cpu",
                               "val_fraction": 0.34, "auto_adopt": False})
    assert training.running, window.last_error
    assert "untrained unet (v0001)" in window.statusBar().currentMessage()
    with qtbot.waitSignal(training.runEnded, timeout=120000) as ended:
        pass
    assert ended.args[0] == "finished", window.last_error
    start, trained = training.store.list()
    assert start.name == "untrained start (unet)" and start.parent is None
    assert start.class_names == trained.class_names == ["background", "cell"]
    assert trained.parent == "v0001" and trained.parent_scores is not None and len(trained.scores["iou"]) == 2
    meta = read_meta(trained.checkpoint)
    assert meta.class_colors == [(0, 0, 0), (250, 120, 20)] and meta.arch_args["num_classes"] == 2
    assert meta.preprocessing.channel_order == "RGB" and meta.preprocessing.mean == (0.5, 0.5, 0.5)
    assert read_meta(start.checkpoint).provenance["untrained_start"] is True
    assert training.store.active_id == "v0001"


def test_without_a_model_or_an_architecture_training_says_what_to_choose(qtbot, window, tmp_path, monkeypatch):
    project = prepare_demo(tmp_path / "demo")
    assert window.open_path(project.folder)
    monkeypatch.setattr(window.model_panel, "settings", lambda: {"architecture": "", "checkpoint": ""})
    window.training_panel.trainRequested.emit({**window.training_panel.settings(), "device": "cpu"})
    assert not window.training.running
    assert "choose an architecture or a checkpoint" in window.last_error.text()
    assert window.training.store.list() == []


def test_a_collapsed_run_is_flagged_and_never_adopted(qtbot, window, tmp_path):
    """A run whose model answers one class everywhere says so, and stays out even where a run
    for new classes would be adopted without comparison."""
    import torch

    from segstudio.models.checkpoint import load_checkpoint, save_checkpoint
    from segstudio.training.versions import VersionStore

    from segstudio.resources import DEMO_MODEL, resource_path

    project = _demo_with_a_new_class(tmp_path / "demo")
    model, meta = load_checkpoint(resource_path(*DEMO_MODEL))
    with torch.no_grad():
        model.classifier.bias.copy_(torch.tensor([50.0, 0.0, 0.0]))  # background, whatever the image
    biased = save_checkpoint(tmp_path / "background.safetensors", model, meta)
    VersionStore(project.folder).import_checkpoint(biased, name="answers background", activate=True)
    training, panel = _train_one_epoch_adopting(qtbot, window, project)
    versions = training.store.list()
    assert [v.id for v in versions] == ["v0001", "v0002"]
    new = versions[-1]
    assert new.collapsed and "'background'" in new.collapse["reason"]
    assert training.store.active_id == "v0001"  # not adopted, although its classes are new
    assert "v0002 COLLAPSED, not adopted" in panel._status.text()
    assert "collapsed" in window.statusBar().currentMessage()
    assert panel.versions.item(1, 3).text() == "collapsed"
