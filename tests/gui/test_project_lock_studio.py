"""A second studio on a project is told why and gets it read-only; taking over works."""

from __future__ import annotations

import subprocess
import sys

import pytest
from PySide6.QtCore import QPoint, Qt, QTimer
from PySide6.QtTest import QTest
from PySide6.QtWidgets import QFileDialog, QPushButton

from segstudio.gui.canvas import Tool
from segstudio.io.project_lock import LOCK_FILE, read_owner
from tests.io.test_project_lock import HOLD


def _point(canvas, row, column):
    p = canvas.to_widget(row + 0.5, column + 0.5)
    return QPoint(round(p.x()), round(p.y()))


def _stroke(canvas, row):
    QTest.mousePress(canvas, Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier, _point(canvas, row, 10))
    for column in range(10, 60, 5):
        QTest.mouseMove(canvas, _point(canvas, row, column))
    QTest.mouseRelease(canvas, Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier, _point(canvas, row, 60))


@pytest.fixture
def held_project(qtbot, window, image_folder):
    """The folder's project, made by this window, then closed and held by another process."""
    assert window.open_path(image_folder)
    folder = window.session.project.folder
    assert read_owner(folder)[0].pid != -1
    window.session.close()
    assert not (folder / LOCK_FILE).exists()
    holder = subprocess.Popen([sys.executable, "-c", HOLD, str(folder)], stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline().strip() == "held"
    yield folder, holder
    holder.kill()
    holder.wait()


def _open_folder_answering(qtbot, window, monkeypatch, folder, button_name):
    """File > Open folder, pick *folder*, and press *button_name* in the "Project in use" box."""
    monkeypatch.setattr(QFileDialog, "getExistingDirectory", lambda *a, **k: str(folder))
    seen = []

    def answer():
        box = getattr(window, "lock_box", None)
        if box is None or not box.isVisible():
            QTimer.singleShot(50, answer)
            return
        seen.append(box.text())
        box.findChild(QPushButton, button_name).click()

    QTimer.singleShot(50, answer)
    window.actions_by_name["open_folder"].trigger()
    return seen


def test_second_studio_opens_read_only_and_writes_nothing(qtbot, window, image_folder, held_project, monkeypatch):
    folder, holder = held_project
    before = {p: p.read_bytes() for p in folder.rglob("*") if p.is_file()}
    seen = _open_folder_answering(qtbot, window, monkeypatch, folder.parent, "lock_read_only")
    assert seen and f"process {holder.pid}" in seen[0]
    assert window.session.read_only and "[read-only]" in window.windowTitle()
    assert "Read-only" in window.statusBar().currentMessage()
    assert window.read_only_label.isVisible() and str(holder.pid) in window.read_only_label.toolTip()
    window.set_active_class(1)
    window.set_tool(Tool.BRUSH)
    _stroke(window.canvas, 20)
    assert (window.session.document.labels == 255).all()  # the brush changes nothing
    assert "open read-only: the tools change nothing" in window.statusBar().currentMessage()
    window.actions_by_name["save"].trigger()
    window.session.close()
    assert {p: p.read_bytes() for p in folder.rglob("*") if p.is_file()} == before
    assert read_owner(folder)[0].pid == holder.pid  # its lock is left alone


def test_taking_over_makes_the_project_ours(qtbot, window, image_folder, held_project, monkeypatch):
    folder, holder = held_project
    _open_folder_answering(qtbot, window, monkeypatch, folder.parent, "lock_take_over")
    assert not window.session.read_only and not window.read_only_label.isVisible()
    assert read_owner(folder)[0].pid != holder.pid
    window.set_active_class(1)
    window.set_tool(Tool.BRUSH)
    _stroke(window.canvas, 20)
    assert window.session.save(wait=True)
    assert window.session.project.read_labels(0)[20, 30] == 1
    window.session.close()
    assert not (folder / LOCK_FILE).exists()


def test_cancel_opens_nothing(qtbot, window, image_folder, held_project, monkeypatch):
    folder, _ = held_project
    monkeypatch.setattr(QFileDialog, "getExistingDirectory", lambda *a, **k: str(folder.parent))

    def cancel():
        box = getattr(window, "lock_box", None)
        if box is None or not box.isVisible():
            QTimer.singleShot(50, cancel)
            return
        box.reject()

    QTimer.singleShot(50, cancel)
    window.actions_by_name["open_folder"].trigger()
    assert window.session.project is None


def test_a_window_whose_project_is_taken_over_stops_writing(qtbot, window, image_folder, monkeypatch):
    assert window.open_path(image_folder)
    project = window.session.project
    shown = []
    monkeypatch.setattr(window, "report_error", lambda title, error: shown.append((title, str(error))))
    # another studio takes the project over (as its "Take over" button does)
    thief = subprocess.Popen([sys.executable, "-c", HOLD.replace(".acquire()", ".acquire(take_over=True)"),
                              str(project.folder)], stdout=subprocess.PIPE, text=True)
    try:
        assert thief.stdout.readline().strip() == "held"
        window.set_active_class(1)
        window.set_tool(Tool.BRUSH)
        _stroke(window.canvas, 20)
        assert not window.session.save(wait=True)
        assert not project.has_labels(0)  # nothing written over the other window's work
        assert window.session.read_only and "[read-only]" in window.windowTitle()
        assert shown and shown[-1][0] == "Project taken over"
        assert read_owner(project.folder)[0].pid == thief.pid
        window.session.discard()
        assert read_owner(project.folder)[0].pid == thief.pid  # its lock is left alone
    finally:
        thief.kill()
        thief.wait()
