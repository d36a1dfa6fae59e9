"""File > Export masks and File > Open recent, driven as a user drives them:
the menu action, the dialog filled in and accepted, the result read from disk."""

import os
from pathlib import Path

import nibabel
import numpy as np
import pytest
from PySide6.QtCore import QPoint, QSettings, Qt, QTimer
from PySide6.QtTest import QTest
from PySide6.QtWidgets import (
    QApplication,
    QDialogButtonBox,
    QFileDialog,
    QPushButton,
    QRadioButton,
)

from segstudio.gui.canvas import Tool
from segstudio.gui.dialogs.export import ExportDialog
from segstudio.io.masks import read_mask
from tests.io.test_dicom import make_ct_series


def _point(canvas, row, column):
    p = canvas.to_widget(row + 0.5, column + 0.5)
    return QPoint(round(p.x()), round(p.y()))


def _paint(window, class_index, row, column, radius=4):
    window.set_active_class(class_index)
    window.set_tool(Tool.BRUSH)
    window.canvas.set_brush_radius(radius)
    QTest.mouseClick(window.canvas, Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier,
                     _point(window.canvas, row, column))


def _export_through_the_dialog(qtbot, window, monkeypatch, folder, format_text, seen=None):
    """Trigger File > Export masks, browse to *folder*, pick the format whose
    radio button reads *format_text*, press OK and wait for the export to end."""
    monkeypatch.setattr(QFileDialog, "getExistingDirectory", lambda *args, **kwargs: str(folder))
    answered = []

    def answer():
        dialog = QApplication.activeModalWidget()
        assert isinstance(dialog, ExportDialog)
        try:
            radios = {radio.text(): radio for radio in dialog.findChildren(QRadioButton)}
            if seen is not None:
                seen.extend(radios)
            browse = next(b for b in dialog.findChildren(QPushButton) if b.text().startswith("Browse"))
            qtbot.mouseClick(browse, Qt.MouseButton.LeftButton)
            choice = [radio for text, radio in radios.items() if format_text in text]
            assert choice, f"no {format_text!r} among the offered formats {list(radios)}"
            # on the round indicator: the middle of a stretched radio button is empty space
            qtbot.mouseClick(choice[0], Qt.MouseButton.LeftButton, pos=QPoint(6, choice[0].height() // 2))
            assert choice[0].isChecked()
            ok = dialog.findChild(QDialogButtonBox).button(QDialogButtonBox.StandardButton.Ok)
            qtbot.mouseClick(ok, Qt.MouseButton.LeftButton)
            answered.append(True)
        finally:
            if dialog.isVisible():
                dialog.reject()  # never leave the test hanging in exec()

    QTimer.singleShot(0, answer)
    window.actions_by_name["export"].trigger()
    assert answered, "the export dialog was not answered"
    task = window.export_task
    qtbot.waitUntil(lambda: not task.running, timeout=30000)
    return task


def test_export_masks_from_the_menu_writes_the_painted_labels(qtbot, window, image_folder, tmp_path, monkeypatch):
    errors = []
    monkeypatch.setattr(window, "report_error", lambda title, error: errors.append((title, error)))
    assert window.open_path(image_folder)
    _paint(window, 1, 20, 30)
    first = window.session.document.labels.copy()
    window.actions_by_name["next"].trigger()
    qtbot.waitUntil(lambda: window.session.index == 1)
    _paint(window, 2, 40, 40)
    second = window.session.document.labels.copy()
    assert (first != 255).any() and (second != 255).any()

    out = tmp_path / "masks out"
    messages = []
    window.statusBar().messageChanged.connect(messages.append)
    _export_through_the_dialog(qtbot, window, monkeypatch, out, "Label PNG")

    assert not errors
    assert sorted(p.name for p in out.iterdir()) == ["cell_0.png", "cell_1.png"]
    np.testing.assert_array_equal(read_mask(out / "cell_0.png"), first)
    np.testing.assert_array_equal(read_mask(out / "cell_1.png"), second)
    assert any(m.startswith("Exporting") for m in messages)  # progress on the way
    assert window.statusBar().currentMessage() == f"exported 2 files to {out}"


def test_a_failed_export_is_reported_once(qtbot, window, image_folder, tmp_path, monkeypatch):
    errors = []
    monkeypatch.setattr(window, "report_error", lambda title, error: errors.append((title, error)))
    assert window.open_path(image_folder)
    _paint(window, 1, 20, 30)
    blocker = tmp_path / "a file"
    blocker.write_text("not a folder")
    _export_through_the_dialog(qtbot, window, monkeypatch, blocker, "Label PNG")
    assert len(errors) == 1 and errors[0][0] == "Export failed"
    assert "not a folder" in str(errors[0][1])


def test_the_export_dialog_offers_the_formats_that_fit_the_project(qtbot, window, image_folder, tmp_path,
                                                                    monkeypatch):
    assert window.open_path(image_folder)
    _paint(window, 1, 20, 30)
    offered = []
    _export_through_the_dialog(qtbot, window, monkeypatch, tmp_path / "out", "overlay", offered)
    assert not any("NIfTI" in text or "DICOM" in text for text in offered)
    assert (tmp_path / "out" / "cell_0_overlay.png").exists()


def test_a_volume_project_exports_nifti_through_the_dialog(qtbot, window, tmp_path, monkeypatch):
    from segstudio.io.project_volumes import read_source_volume

    series = tmp_path / "ct"
    make_ct_series(series)
    errors = []
    monkeypatch.setattr(window, "report_error", lambda title, error: errors.append((title, error)))
    assert window.open_path(series)
    canvas = window.canvas
    _paint(window, 1, 60, 60, radius=3)
    labels = window.session.document.labels.copy()

    out = tmp_path / "nifti out"
    offered = []
    _export_through_the_dialog(qtbot, window, monkeypatch, out, "NIfTI", offered)
    assert any("DICOM SEG" in text for text in offered)
    assert not any("overlay" in text.lower() or "binary" in text.lower() for text in offered)
    assert not errors
    entry = window.session.project.entries[0]
    written = out / f"{entry.id}.nii.gz"
    files = sorted(p.name for p in out.iterdir())  # the label tables for Slicer and ITK-SNAP come along
    assert written.name in files and not any(name.endswith(".png") for name in files)
    assert window.statusBar().currentMessage() == f"exported {len(files)} files to {out}"
    nifti = nibabel.load(written)
    source = read_source_volume(entry.source, entry.selector)
    data = np.asarray(nifti.dataobj)
    assert data.shape == tuple(reversed(source.shape_zyx)) == (128, 128, 5)  # x, y, z: the source grid
    np.testing.assert_allclose(nifti.affine, source.affine_ras(), atol=1e-4)  # DICOM's LPS as RAS
    # the painted voxels come back, class i as i + 1 and unlabelled as 0 (x, y, z order in the file)
    expected = np.where(labels == 255, 0, labels.astype(np.int64) + 1).transpose(2, 1, 0)
    np.testing.assert_array_equal(data, expected)
    assert (data[60, 60, canvas.slicer.index] == 2) and (data[:, :, 0] == 0).all()


# -- open recent -----------------------------------------------------------------------------------
def _recent_texts(window):
    return [action.text() for action in window.recent_menu.actions()]


def _settings_as_after_a_restart():
    """Make Qt read the settings file again, as a new session of the studio does
    (within one process it keeps what was set, a one-item list as a list)."""
    settings = QSettings()
    settings.sync()
    path = Path(settings.fileName())
    later = path.stat().st_mtime + 10
    os.utime(path, (later, later))
    QSettings().sync()


def test_open_recent_lists_the_opened_folders_newest_first(qtbot, window, image_folder, tmp_path):
    other = tmp_path / "other"
    other.mkdir()
    (other / "one.png").write_bytes((image_folder / "cell_1.png").read_bytes())
    assert window.open_path(image_folder)
    assert _recent_texts(window) == [str(image_folder)]
    _settings_as_after_a_restart()
    assert window.open_path(other)
    assert _recent_texts(window) == [str(other), str(image_folder)]
    _settings_as_after_a_restart()
    assert QSettings().value("recent") == [str(other), str(image_folder)]

    window.recent_menu.actions()[1].trigger()
    assert window.session.project is not None
    assert [e.source.name for e in window.session.project.entries] == ["cell_0.png", "cell_1.png", "cell_2.png"]
    assert _recent_texts(window) == [str(image_folder), str(other)]


@pytest.mark.parametrize("stored", ["one", "none", "missing"])
def test_open_recent_reads_back_what_settings_hold(qtbot, window, image_folder, tmp_path, stored):
    from segstudio.gui import studio_actions

    settings = QSettings()
    if stored == "one":  # what an INI file gives back for a one-item list
        settings.setValue("recent", str(image_folder))
    elif stored == "none":
        settings.setValue("recent", None)
    else:
        settings.setValue("recent", [str(tmp_path / "gone"), str(image_folder)])
    settings.sync()
    studio_actions.refresh_recent_menu(window)
    expected = [] if stored == "none" else [str(image_folder)]
    assert _recent_texts(window) == expected
    assert window.recent_menu.isEnabled() == bool(expected)
    if expected:
        window.recent_menu.actions()[0].trigger()
        assert window.session.project is not None
        assert QSettings().value("recent") in ([str(image_folder)], str(image_folder))
