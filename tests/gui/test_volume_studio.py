"""The studio on a DICOM series: open, the Volume dock, paint a slice, run
the model slice by slice, autosave and reopen, export with the geometry."""

import nibabel
import numpy as np
import pytest
import torch
from PySide6.QtCore import QPoint, Qt
from PySide6.QtTest import QTest

from segstudio.gui.canvas import Tool
from segstudio.models import get_model
from segstudio.models.checkpoint import Preprocessing, make_meta, read_meta, save_checkpoint
from segstudio.preprocess import volume_intensity
from segstudio.tasks import run_to_completion
from tests.io.test_dicom import make_ct_series


@pytest.fixture
def series(tmp_path):
    folder = tmp_path / "ct"
    make_ct_series(folder)
    return folder


@pytest.fixture
def grey_checkpoint(tmp_path):
    torch.manual_seed(0)
    model = get_model("unet", num_classes=2, in_channels=1, base_width=4, depth=2, padding="same")
    meta = make_meta(model, class_names=["background", "organ"], class_colors=[(0, 0, 0), (255, 0, 0)],
                     preprocessing=Preprocessing("grey", (0.5,), (0.25,)))
    return save_checkpoint(tmp_path / "grey.safetensors", model, meta)


def _point(canvas, row, column):
    p = canvas.to_widget(row + 0.5, column + 0.5)
    return QPoint(round(p.x()), round(p.y()))


def test_dicom_series_opens_as_one_volume_and_is_annotated_slice_by_slice(qtbot, window, series, grey_checkpoint,
                                                                          tmp_path):
    assert window.open_path(series)
    project = window.session.project
    assert len(project.entries) == 1 and project.entries[0].kind == "volume"
    document = window.session.document
    assert document.is_volume and document.shape == (5, 128, 128)
    assert window.docks["Volume"].isVisibleTo(window)
    # the opened volume's thumbnail is its middle slice as shown
    thumbnail = window.images_panel._item(0).icon().pixmap(64, 64).toImage()
    middle = thumbnail.pixelColor(32, 32)
    shown = window.canvas.layer_buffer("image")[64, 64]
    assert middle.alpha() == 255 and abs(middle.red() - int(shown[0])) <= 8
    canvas = window.canvas
    assert canvas.slicer.index == 2
    # slices are in position order: slice k holds HU -24 + k
    assert [int(document.image[k, 0, 0]) for k in range(5)] == [-24, -23, -22, -21, -20]

    window.set_active_class(1)
    window.set_tool(Tool.BRUSH)
    canvas.set_brush_radius(3)
    QTest.mouseClick(canvas, Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier, _point(canvas, 60, 60))
    assert document.labels[2, 60, 60] == 1 and (document.labels[[0, 1, 3, 4]] == 255).all()

    # the model on the shown slice, then on the whole volume
    settings = {**window.model_panel.settings(), "checkpoint": str(grey_checkpoint), "architecture": "unet",
                "device": "cpu", "precision": "fp32"}
    window.model_panel.set_settings(settings)
    with qtbot.waitSignal(window.runs.runFinished, timeout=60000) as blocker:
        window.volume_panel.runRequested.emit(False)
    assert blocker.args[0] == "done"
    prediction = document.prediction
    assert prediction.probabilities.shape == (2, 5, 128, 128)
    assert (prediction.labels[2] != 255).all() and (prediction.labels[0] == 255).all()
    with qtbot.waitSignal(window.runs.runFinished, timeout=60000):
        window.volume_panel.runRequested.emit(True)
    assert (document.prediction.labels != 255).all()

    window.close()
    from segstudio.gui.main_window import MainWindow

    again = MainWindow()
    qtbot.addWidget(again)
    assert again.open_path(series)
    reopened = again.session.document
    assert reopened.labels[2, 60, 60] == 1 and reopened.status.value == "corrected"

    from segstudio.io.export import export_project

    written = run_to_completion(export_project(again.session.project, tmp_path / "export", fmt="nifti"))
    nifti = nibabel.load(written[0])
    data = np.asarray(nifti.dataobj)
    assert data.shape == (128, 128, 5)  # x, y, z: the source grid
    again.session.close()


@pytest.mark.filterwarnings("ignore:Expected explicit VR:UserWarning")
def test_a_monochrome1_radiograph_is_shown_predicted_and_refined_as_a_radiologist_sees_it(
        qtbot, window, grey_checkpoint, tmp_path, monkeypatch):
    """A real CR file (MONOCHROME1): screen, model input and CRF input are the same inverted plane."""
    import shutil

    from segstudio.gui import crf_preview, studio_actions
    from segstudio.inference.predictor import Predictor
    from segstudio.refine import CRFParams
    from segstudio.windowing import apply_window
    from tests.io.test_dicom import CR_FILE, pydicom_file

    (tmp_path / "cr").mkdir()
    shutil.copy(pydicom_file(CR_FILE), tmp_path / "cr" / "cr.dcm")
    assert window.open_path(tmp_path / "cr")
    document, canvas = window.session.document, window.canvas
    assert document.is_volume and document.shape == (1, 16, 16) and canvas.slicer.invert
    shown = canvas.layer_buffer("image")[..., 0].copy()
    np.testing.assert_array_equal(shown, apply_window(document.image[0], 1600.0, 2800.0, invert=True))
    # the status bar reports the stored value, not the inverted grey
    assert f"{document.image[0, 4, 5]:g}" in studio_actions.describe_pixel(window, 5, 4)

    seen = []
    original = Predictor.predict_steps

    def spy(self, image, *, cancel=None):
        seen.append(image)
        return original(self, image, cancel=cancel)

    monkeypatch.setattr(Predictor, "predict_steps", spy)
    settings = {**window.model_panel.settings(), "checkpoint": str(grey_checkpoint), "architecture": "unet",
                "device": "cpu", "precision": "fp32", "tile": 64}
    monkeypatch.setattr(window.model_panel, "settings", lambda: settings)
    with qtbot.waitSignal(window.runs.runFinished, timeout=60000) as blocker:
        window.run_volume(False)  # "Run on this slice" in the Volume dock
    assert blocker.args[0] == "done" and len(seen) == 1
    # the model sees the slice inverted, as the user does, through its checkpoint's own rule on the
    # whole volume (not through the window on screen)
    preprocessing = read_meta(grey_checkpoint).preprocessing
    assert seen[0].intensity == volume_intensity(document.image, preprocessing, invert=True)
    np.testing.assert_array_equal(np.asarray(seen[0]), document.image[0])
    assert document.prediction is not None

    refined_from = []
    real_refine = crf_preview.refine_steps

    def refine_spy(image, *args, **kwargs):
        refined_from.append(image)
        return real_refine(image, *args, **kwargs)

    monkeypatch.setattr(crf_preview, "refine_steps", refine_spy)
    with qtbot.waitSignal(window.runs.crfDone, timeout=60000):
        crf_preview.run(window, CRFParams(iterations=2))
    np.testing.assert_array_equal(refined_from[0], shown)


def test_the_crf_preview_refines_a_coronal_plane_of_a_volume(qtbot, window, series, grey_checkpoint, monkeypatch):
    from segstudio.gui import crf_preview
    from segstudio.refine import CRFParams

    assert window.open_path(series)
    document, canvas = window.session.document, window.canvas
    settings = {**window.model_panel.settings(), "checkpoint": str(grey_checkpoint), "architecture": "unet",
                "device": "cpu", "precision": "fp32"}
    window.model_panel.set_settings(settings)
    with qtbot.waitSignal(window.runs.runFinished, timeout=60000):
        window.volume_panel.runRequested.emit(False)  # the model on axial slice 2 only
    canvas.set_view_axis(1)  # coronal: rows are slices
    assert canvas.slicer.axis == 1 and canvas.slicer.index == 64
    seen = {}
    real_refine = crf_preview.refine_steps

    def spy(image, probabilities, *args, **kwargs):
        if image.shape == (5, 128):  # the coronal plane (the axial preview of the model run may start late)
            seen["image"], seen["probabilities"] = image.copy(), probabilities.copy()
        return real_refine(image, probabilities, *args, **kwargs)

    monkeypatch.setattr(crf_preview, "refine_steps", spy)
    with qtbot.waitSignal(window.runs.crfDone, timeout=60000):
        window._on_crf_params_settled(CRFParams(iterations=3))
    np.testing.assert_array_equal(seen["image"], canvas.slicer.display(document.image))  # the plane as shown
    assert seen["probabilities"].shape[1:] == (5, 128)
    crf = document.crf_labels
    assert crf is not None and crf.shape == (5, 128, 128)
    assert (crf[2, 64, :] != 255).all()  # the predicted row of this coronal plane (y = 64) is refined
    assert (crf[[0, 1, 3, 4], 64, :] == 255).all()  # slices the model has not seen stay unlabelled
    assert (crf[:, :64] == 255).all() and (crf[:, 65:] == 255).all()  # other planes untouched
    assert window.canvas.layer_buffer("crf") is not None


def test_the_whole_volume_choice_runs_one_3d_crf_on_the_window_in_millimetres(qtbot, window, series, grey_checkpoint,
                                                                              monkeypatch):
    from PySide6.QtWidgets import QComboBox

    from segstudio.refine import volume_crf
    from segstudio.windowing import apply_window

    seen = {}
    real = volume_crf.refine_volume_steps

    def spy(volume, probabilities, params, **options):
        seen["volume"], seen["options"] = volume.copy(), options
        return real(volume, probabilities, params, **options)

    monkeypatch.setattr(volume_crf, "refine_volume_steps", spy)
    assert window.open_path(series)
    document, canvas = window.session.document, window.canvas
    mode = window.crf_panel.findChild(QComboBox, "crf_volume_mode")
    assert mode is not None and mode.isEnabled() and mode.isVisibleTo(window)  # a volume is shown
    window.crf_panel._preview.setChecked(False)
    window.model_panel.set_settings({**window.model_panel.settings(), "checkpoint": str(grey_checkpoint),
                                     "architecture": "unet", "device": "cpu", "precision": "fp32"})
    with qtbot.waitSignal(window.runs.runFinished, timeout=60000):
        window.volume_panel.runRequested.emit(True)  # the model on every slice
    mode.setCurrentIndex(mode.findData("volume"))
    with qtbot.waitSignal(window.runs.crfDone, timeout=60000):
        window.crf_panel._preview.setChecked(True)  # live preview on: the CRF runs
    center, width = canvas.slicer.window
    np.testing.assert_array_equal(seen["volume"], apply_window(document.image, center, width))  # as shown
    assert seen["options"]["spacing"] == tuple(float(s) for s in canvas.slicer.spacing)
    crf = document.crf_labels
    assert crf is not None and crf.shape == (5, 128, 128)
    assert (crf != 255).all()  # every slice was predicted, so every voxel is refined
    assert window.crf_panel.volume_mode() == "volume"
    mode.setCurrentIndex(mode.findData("plane"))


def test_ctrl_r_on_a_volume_runs_the_model_on_every_slice(qtbot, window, series, grey_checkpoint):
    """Model > Run on this image (Ctrl+R) on a volume: every slice, not the 3-D array as one image
    (the journey found it failing with "an image must be H x W ...")."""
    assert window.open_path(series)
    window.crf_panel._preview.setChecked(False)
    window.model_panel.set_settings({**window.model_panel.settings(), "checkpoint": str(grey_checkpoint),
                                     "architecture": "unet", "device": "cpu", "precision": "fp32"})
    window.last_error = None
    action = window.actions_by_name["run"]
    assert action.shortcut().toString() == "Ctrl+R"
    with qtbot.waitSignal(window.runs.runFinished, timeout=60000) as blocker:
        action.trigger()
    assert blocker.args[0] == "done" and window.last_error is None
    prediction = window.session.document.prediction
    assert prediction is not None and prediction.labels.shape == (5, 128, 128)
    assert (prediction.labels != 255).all()  # every slice predicted
