"""Choosing a checkpoint in the Model panel takes its architecture with it."""

from PySide6.QtCore import Qt
from PySide6.QtWidgets import QFileDialog

from segstudio.resources import DEMO_MODEL, resource_path


def _browse(qtbot, window, monkeypatch, path):
    monkeypatch.setattr(QFileDialog, "getOpenFileName", staticmethod(lambda *a, **k: (str(path), "")))
    qtbot.mouseClick(window.model_panel._browse_button, Qt.MouseButton.LeftButton)


def test_browsing_to_the_demo_unet_sets_the_architecture_and_run_succeeds(qtbot, window, image_folder, monkeypatch):
    assert window.open_path(image_folder)
    panel = window.model_panel
    assert panel.settings()["architecture"] != "unet"  # a new project starts on the first architecture
    demo = resource_path(*DEMO_MODEL)
    _browse(qtbot, window, monkeypatch, demo)
    assert panel.settings()["checkpoint"] == str(demo)
    assert panel._architecture.currentText() == "unet"
    # the project remembers both
    assert window.session.project.model_settings["architecture"] == "unet"
    assert window.session.project.model_settings["checkpoint"] == str(demo)
    window.last_error = None
    panel.set_settings({"device": "cpu", "precision": "fp32"})
    with qtbot.waitSignal(window.runs.runFinished, timeout=120000) as finished:
        qtbot.mouseClick(panel._run_one, Qt.MouseButton.LeftButton)
    assert finished.args[0] == "done", window.last_error
    assert window.session.document.prediction is not None


def test_typing_a_checkpoint_path_also_takes_its_architecture(qtbot, window, image_folder, checkpoint):
    assert window.open_path(image_folder)
    panel = window.model_panel
    panel._checkpoint.setText(str(checkpoint))
    panel._checkpoint.editingFinished.emit()
    assert panel._architecture.currentText() == "unet"


def test_an_unreadable_checkpoint_is_named_and_the_architecture_stays(qtbot, window, image_folder, tmp_path,
                                                                      monkeypatch):
    assert window.open_path(image_folder)
    panel = window.model_panel
    before = panel._architecture.currentText()
    bad = tmp_path / "broken.safetensors"
    bad.write_bytes(b"not a checkpoint")
    _browse(qtbot, window, monkeypatch, bad)
    assert panel.settings()["checkpoint"] == str(bad)
    assert panel._architecture.currentText() == before
    assert "broken.safetensors" in panel._status.text()
