"""Fixtures of the studio tests: isolated settings, sample images, a model."""

import cv2
import numpy as np
import pytest
import torch
from PySide6.QtCore import QSettings

from segstudio.models import get_model
from segstudio.models.checkpoint import make_meta, save_checkpoint
from segstudio.synthetic import generate_sample

CLASS_NAMES = ["background", "cytoplasm", "nucleus"]
CLASS_COLORS = [(0, 0, 0), (60, 180, 75), (0, 130, 200)]


@pytest.fixture(autouse=True, scope="session")
def _gui_thread_collection(qapp):
    """As the studio does (gui/gui_thread_gc.py): garbage is collected on the GUI thread only;
    closed windows of earlier tests collected by a model worker deadlocked the suite."""
    from segstudio.gui import gui_thread_gc

    collector = gui_thread_gc.install(qapp)
    yield collector
    collector.stop()


@pytest.fixture(autouse=True)
def _isolated_qsettings(tmp_path_factory):
    folder = tmp_path_factory.mktemp("qsettings")
    QSettings.setDefaultFormat(QSettings.Format.IniFormat)
    QSettings.setPath(QSettings.Format.IniFormat, QSettings.Scope.UserScope, str(folder))
    yield


@pytest.fixture
def image_folder(tmp_path):
    folder = tmp_path / "cells"
    folder.mkdir()
    for index, (height, width) in enumerate([(96, 128), (80, 80), (64, 100)]):
        image, _ = generate_sample(index, height, width)
        cv2.imwrite(str(folder / f"cell_{index}.png"), cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
    return folder


@pytest.fixture
def checkpoint(tmp_path):
    torch.manual_seed(0)
    model = get_model("unet", num_classes=3, in_channels=3, base_width=4, depth=2, padding="same")
    with torch.no_grad():
        model.classifier.weight.mul_(10)
    meta = make_meta(model, class_names=CLASS_NAMES, class_colors=CLASS_COLORS)
    return save_checkpoint(tmp_path / "tiny_unet.safetensors", model, meta)


@pytest.fixture
def window(qtbot):
    from segstudio.gui.main_window import MainWindow

    main = MainWindow()
    qtbot.addWidget(main)
    main.resize(1200, 800)
    main.show()
    qtbot.waitExposed(main)
    yield main
    main.runs.shutdown()
    main.session.close()


def run_model(qtbot, window, checkpoint, *, all_images=False, timeout=60000):
    """Start a model run from the Model panel's settings and wait for its end."""
    settings = window.model_panel.settings()
    settings.update(checkpoint=str(checkpoint), architecture="unet", device="cpu", precision="fp32")
    window.model_panel.set_settings(settings)
    with qtbot.waitSignal(window.runs.runFinished, timeout=timeout) as blocker:
        window.run_model(all_images)
    return blocker.args[0]


def labelled(window):
    return np.count_nonzero(window.session.document.labels != 255)


def shown_canvas(qtbot, document, class_names=("background", "organ")):
    """A Canvas on its own, 600 x 500 and shown, holding *document* with these classes' colours."""
    from segstudio.annotation.classes import ClassList
    from segstudio.gui.canvas import Canvas

    classes = ClassList()
    for name in class_names:
        classes.add(name)
    canvas = Canvas()
    qtbot.addWidget(canvas)
    canvas.resize(600, 500)
    canvas.show()
    qtbot.waitExposed(canvas)
    canvas.set_document(document, classes.lut())
    return canvas
