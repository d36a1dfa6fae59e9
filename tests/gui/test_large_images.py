"""Large images: the CRF preview refuses what does not fit in memory, and a
large image is read off the GUI thread."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
from PIL import Image
from PySide6.QtCore import Qt, QThreadPool, QTimer
from PySide6.QtWidgets import QPushButton

from segstudio.gui import studio_actions
from segstudio.io.limits import ENV_VARIABLE
from segstudio.io.masks import read_mask

from .conftest import run_model

LARGE = 6000  # pixels a side: decoding it takes a good part of a second


def _run_crf_button(window) -> QPushButton:
    button = window.crf_panel.findChild(QPushButton, "crf_run")
    assert button is not None
    return button


# -- the CRF preview ------------------------------------------------------------------
def test_the_crf_estimate_grows_with_pixels_and_classes():
    small = studio_actions.crf_memory_estimate(100, 100, 3)
    assert studio_actions.crf_memory_estimate(200, 100, 3) == 2 * small
    assert studio_actions.crf_memory_estimate(100, 100, 6) > small
    # the reported case: 12000^2 took more than 17 GB before the kernel killed it
    assert studio_actions.crf_memory_estimate(12000, 12000, 3) > 17 * 10**9


def test_the_crf_refuses_with_a_message_when_it_would_not_fit(qtbot, window, image_folder, checkpoint,
                                                               monkeypatch):
    monkeypatch.setenv(ENV_VARIABLE, "4M")
    assert window.open_path(image_folder)
    assert run_model(qtbot, window, checkpoint) == "done"  # live preview: the CRF is asked for at once
    document = window.session.document
    assert document.prediction is not None
    window.last_error = None
    qtbot.mouseClick(_run_crf_button(window), Qt.MouseButton.LeftButton)
    message = window.crf_panel.message()
    assert message.startswith("CRF not run")
    assert "128 x 96" in message and "MiB" in message and "4.0 MiB" in message
    assert "prediction is still there to accept" in message
    assert "CRF not run" in window.statusBar().currentMessage()
    assert window.runs.crf_task is None or not window.runs.crf_task.running
    qtbot.wait(200)
    assert document.crf_labels is None
    assert window.last_error is None
    assert window.findChild(QPushButton, "crf_accept").isEnabled()
    window.accept("prediction")  # what is left to take
    assert (document.labels == document.prediction.labels).all()


def test_the_crf_runs_and_says_so_within_the_limit(qtbot, window, image_folder, checkpoint, monkeypatch):
    monkeypatch.delenv(ENV_VARIABLE, raising=False)
    window.crf_panel._preview.setChecked(False)
    assert window.open_path(image_folder)
    assert run_model(qtbot, window, checkpoint) == "done"
    qtbot.mouseClick(_run_crf_button(window), Qt.MouseButton.LeftButton)
    assert window.crf_panel.message().startswith("computing the CRF on 128 x 96")
    assert not window.findChild(QPushButton, "crf_accept").isEnabled()
    qtbot.waitUntil(lambda: window.session.document.crf_labels is not None, timeout=30000)
    assert window.crf_panel.message() == ""
    assert window.last_error is None


# -- reading a large image ---------------------------------------------------------------
@pytest.fixture(scope="module")
def _large_source(tmp_path_factory):
    folder = tmp_path_factory.mktemp("large")
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 255, (64, 80, 3), dtype=np.uint8)).save(folder / "a_small.png")
    big = rng.integers(0, 255, (LARGE, LARGE), dtype=np.uint8)
    Image.fromarray(np.stack([big, big[::-1], big[:, ::-1]], axis=2)).save(folder / "b_large.png",
                                                                            compress_level=1)
    Image.fromarray(rng.integers(0, 255, (50, 70, 3), dtype=np.uint8)).save(folder / "c_small.png")
    return folder


@pytest.fixture
def large_folder(_large_source, tmp_path):
    """A fresh copy per test: opening it makes a project there, and one test breaks the image."""
    return shutil.copytree(_large_source, tmp_path / "large")


def _ticking(window):
    ticks = {"n": 0}
    timer = QTimer(window)
    timer.setInterval(10)
    timer.timeout.connect(lambda: ticks.__setitem__("n", ticks["n"] + 1))
    timer.start()
    return ticks, timer


def test_a_large_image_is_read_while_the_window_keeps_responding(qtbot, window, large_folder):
    assert window.open_path(large_folder)
    assert window.session.index == 0
    window.session.document.apply((slice(0, 6), slice(0, 6)), None, 1, "edit before switching")
    ticks, timer = _ticking(window)
    window.pick_image(1)
    assert window.session.loading and window.session.index == 0  # still reading
    assert window.statusBar().currentMessage() == "Opening b_large.png…"
    window.session.document.apply((slice(6, 8), slice(6, 8)), None, 1, "edit while it loads")
    qtbot.waitUntil(lambda: window.session.index == 1, timeout=60000)
    timer.stop()
    assert ticks["n"] >= 5, "the GUI thread stood still while the image was read"
    assert window.session.document.shape == (LARGE, LARGE)
    assert window.images_panel.current_index() == 1
    assert window.statusBar().currentMessage() == ""
    assert window.session.save(wait=True)
    saved = read_mask(window.session.project.entries[0].labels_path)
    assert (saved[:6, :6] == 1).all() and (saved[6:8, 6:8] == 1).all()  # nothing lost, not even the late edit


def test_a_later_pick_supersedes_a_read_in_flight(qtbot, window, large_folder):
    assert window.open_path(large_folder)
    window.pick_image(1)
    assert window.session.loading
    window.pick_image(2)  # a small image: read at once
    assert window.session.index == 2 and not window.session.loading
    QThreadPool.globalInstance().waitForDone(60000)
    qtbot.wait(100)  # the dropped read's signals
    assert window.session.index == 2
    assert window.images_panel.current_index() == 2
    assert window.last_error is None


def test_a_large_image_that_cannot_be_read_goes_through_the_error_path(qtbot, window, large_folder):
    data = (large_folder / "b_large.png").read_bytes()
    (large_folder / "b_large.png").write_bytes(data[: len(data) // 2])  # the header is intact
    assert window.open_path(large_folder)
    window.last_error = None
    window.pick_image(1)
    assert window.session.loading
    qtbot.waitUntil(lambda: not window.session.loading, timeout=60000)
    assert window.last_error is not None
    assert window.session.index == 0
    assert window.images_panel.current_index() == 0


def test_a_failed_writes_snapshot_survives_a_background_load(qtbot, window, large_folder, monkeypatch):
    """Its labels live only in the snapshot of the failed write: attaching the image read in
    the background must put them back, not the older file (a review found them lost)."""
    assert window.open_path(large_folder)
    project = window.session.project
    window.pick_image(2)  # small: read at once
    window.session.document.apply((slice(0, 5), slice(0, 5)), None, 1, "edit")
    real_write = type(project).write_labels
    failing = {"on": True}

    def write(self, index, labels):
        if failing["on"] and index == 2:
            raise OSError(28, "No space left on device")
        return real_write(self, index, labels)

    monkeypatch.setattr(type(project), "write_labels", write)
    monkeypatch.setattr(window, "report_error", lambda *args, **kwargs: None)
    window.session.select(0)  # the save of image 2 fails: its labels wait in a snapshot
    window.session._collect(wait=True)
    assert 2 in window.session._unsaved
    monkeypatch.setattr(window.session, "reads_slowly", lambda index: True)
    window.pick_image(2)
    assert window.session.loading
    qtbot.waitUntil(lambda: window.session.index == 2, timeout=60000)
    failing["on"] = False
    assert (window.session.document.labels[:5, :5] == 1).all()
    assert window.session.save(wait=True)
    assert (project.read_labels(2)[:5, :5] == 1).all()



def test_a_project_whose_current_image_is_large_opens_without_freezing(qtbot, window, large_folder, image_folder):
    assert window.open_path(large_folder)
    window.pick_image(1)
    qtbot.waitUntil(lambda: window.session.index == 1, timeout=60000)
    window.session.document.apply((slice(0, 4), slice(0, 4)), None, 1, "edit")
    assert window.open_path(image_folder)
    ticks, timer = _ticking(window)
    assert window.open_path(large_folder)  # back: it opens on its current image, the large one
    assert window.session.loading and window.session.document is None  # read in the background
    qtbot.waitUntil(lambda: window.session.index == 1, timeout=60000)
    timer.stop()
    assert ticks["n"] >= 5, "the GUI thread stood still while the image was read"
    assert window.images_panel.current_index() == 1
    assert (window.session.document.labels[:4, :4] == 1).all()
    assert window.last_error is None


def test_a_project_opening_on_a_large_volume_reads_it_in_the_background(qtbot, window, tmp_path, image_folder,
                                                                        monkeypatch):
    from segstudio.gui import session as session_module
    from tests.io.test_dicom import make_ct_series

    series = tmp_path / "ct"
    make_ct_series(series)
    assert window.open_path(series)  # small: there at once
    assert window.session.document is not None and window.session.document.is_volume
    shape = window.session.document.shape
    assert window.open_path(image_folder)
    monkeypatch.setattr(session_module, "QUICK_READ_BYTES", 1000)  # the series' files are more than that
    assert window.open_path(series)
    assert window.session.loading and window.session.document is None
    qtbot.waitUntil(lambda: window.session.document is not None, timeout=60000)
    assert window.session.document.shape == shape
    assert window.docks["Volume"].isVisibleTo(window)
    assert window.last_error is None
