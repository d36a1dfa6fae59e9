"""Live update from the Training dock: strokes, a pause, a new prediction, the window never blocked."""

import numpy as np
from PySide6.QtCore import QPoint, Qt, QTimer
from PySide6.QtTest import QTest

from segstudio.training.versions import VersionStore
from tests.gui.conftest import run_model

NO = Qt.KeyboardModifier.NoModifier
LEFT = Qt.MouseButton.LeftButton


def _drag(canvas, row, start, end, steps=8):
    def point(column):
        p = canvas.to_widget(row + 0.5, column + 0.5)
        return QPoint(round(p.x()), round(p.y()))

    QTest.mousePress(canvas, LEFT, NO, point(start))
    for i in range(1, steps + 1):
        QTest.mouseMove(canvas, point(start + (end - start) * i / steps))
    QTest.mouseRelease(canvas, LEFT, NO, point(end))


def test_a_pause_after_strokes_updates_the_prediction_without_blocking_the_window(qtbot, window, image_folder,
                                                                                 checkpoint):
    assert window.open_path(image_folder)
    assert run_model(qtbot, window, checkpoint) == "done"
    document = window.session.document
    before = document.prediction.probabilities_float().copy()
    panel = window.training_panel
    window.docks["Training"].raise_()  # a user brings the Training tab forward to reach the toggle
    qtbot.wait(20)
    assert not panel.live.isChecked()  # off by default
    qtbot.mouseClick(panel.live, LEFT)
    assert window.live.enabled
    ticks = []
    timer = QTimer()
    timer.timeout.connect(lambda: ticks.append(1))
    timer.start(10)
    window.set_active_class(2)
    _drag(window.canvas, 20, 10, 60)
    _drag(window.canvas, 40, 10, 60)
    painted = document.labels == 2
    assert painted.sum() > 100
    qtbot.waitUntil(lambda: len(window.live.latencies) == 1, timeout=60000)
    timer.stop()
    after = document.prediction.probabilities_float()
    assert not np.allclose(before, after)  # a new prediction of this image
    # it learned from the strokes: the painted class is more likely where it was painted
    assert after[2][painted].mean() > before[2][painted].mean()
    # the GUI thread kept running: the quiet second and the update took well over 100 ticks of 10 ms
    assert len(ticks) > 100
    assert panel.live_status.text().startswith("Live update 1: new prediction")
    # its own new prediction is not a stroke: no second cycle follows without painting
    qtbot.wait(2500)
    assert len(window.live.latencies) == 1 and not window.live.task.running
    # kept as a version only when asked
    store = VersionStore(window.session.project.folder)
    versions = len(store.list())
    assert panel.keep_live.isEnabled()
    qtbot.mouseClick(panel.keep_live, LEFT)
    kept = store.list()
    assert len(kept) == versions + 1 and kept[-1].name.startswith("live update")
    assert store.active_id != kept[-1].id  # the active model stays until Make active


def test_a_stroke_during_an_update_starts_another_and_switching_off_stops(qtbot, window, image_folder, checkpoint):
    assert window.open_path(image_folder)
    assert run_model(qtbot, window, checkpoint) == "done"
    window.training_panel.live.setChecked(True)
    window.set_active_class(1)
    _drag(window.canvas, 10, 5, 40)
    qtbot.waitUntil(lambda: window.live.task is not None and window.live.task.running, timeout=10000)
    _drag(window.canvas, 30, 5, 40)  # while it learns: that cycle is dropped, a new one follows
    qtbot.waitUntil(lambda: len(window.live.latencies) == 1, timeout=60000)
    assert window.live.latencies[0] < 30
    window.training_panel.live.setChecked(False)
    _drag(window.canvas, 50, 5, 40)
    qtbot.wait(1500)
    assert window.live.task is None or not window.live.task.running
    assert len(window.live.latencies) == 1
