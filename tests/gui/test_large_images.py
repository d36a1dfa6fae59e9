"""Large images: the CRF preview runs in tiles and refines the view first, and a
large image is read off the GUI thread."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
from PIL import Image
from PySide6.QtCore import QPointF, Qt, QThreadPool, QTimer
from PySide6.QtWidgets import QPushButton

from segstudio.gui import crf_preview
from segstudio.io.limits import ENV_VARIABLE
from segstudio.io.masks import read_mask

from .conftest import run_model

LARGE = 6000  # pixels a side: decoding it takes a good part of a second


def _run_crf_button(window) -> QPushButton:
    button = window.crf_panel.findChild(QPushButton, "crf_run")
    assert button is not None
    return button


# -- the CRF preview ------------------------------------------------------------------
def test_the_one_piece_estimate_grows_with_pixels_and_classes():
    small = crf_preview.crf_memory_estimate(100, 100, 3)
    assert crf_preview.crf_memory_estimate(200, 100, 3) == 2 * small
    assert crf_preview.crf_memory_estimate(100, 100, 6) > small
    # the reported case: 12000^2 took more than 17 GB in one piece before the kernel killed it
    assert crf_preview.crf_memory_estimate(12000, 12000, 3) > 17 * 10**9


def test_under_a_small_memory_limit_the_crf_runs_in_tiles_shown_as_they_finish(qtbot, window, image_folder,
                                                                               checkpoint, monkeypatch):
    monkeypatch.setenv(ENV_VARIABLE, "2M")  # a 128 x 96 image does not fit one piece of 2 MiB
    window.crf_panel._preview.setChecked(False)
    assert window.open_path(image_folder)
    assert run_model(qtbot, window, checkpoint) == "done"
    document = window.session.document
    tiles, layers_seen = [], []

    def on_tile(index, tile):
        tiles.append(tile.core)
        layers_seen.append(int((document.crf_labels != 255).sum()) if document.crf_labels is not None else -1)

    window.runs.crfTile.connect(on_tile)
    window.last_error = None
    with qtbot.waitSignal(window.runs.crfDone, timeout=60000):
        qtbot.mouseClick(_run_crf_button(window), Qt.MouseButton.LeftButton)
        assert window.crf_panel.is_busy()  # the busy bar is up while it computes
        assert window.crf_panel.message().startswith("computing the CRF on 128 x 96")
        assert not window.findChild(QPushButton, "crf_accept").isEnabled()
    assert len(tiles) >= 2
    covered = np.zeros(document.shape, int)
    for (y0, y1), (x0, x1) in tiles:
        covered[y0:y1, x0:x1] += 1
    assert (covered == 1).all()
    assert layers_seen == sorted(layers_seen)  # the layer filled up tile by tile (the handler ran after each)
    assert document.crf_labels is not None and (document.crf_labels != 255).all()  # every pixel refined
    assert not window.crf_panel.is_busy() and window.crf_panel.message() == ""
    assert window.findChild(QPushButton, "crf_accept").isEnabled()
    assert window.last_error is None


def test_live_preview_of_a_large_image_refines_the_view_and_run_crf_all_of_it(qtbot, window, image_folder,
                                                                              checkpoint, monkeypatch):
    monkeypatch.setattr(crf_preview, "LIVE_PREVIEW_PIXELS", 1000)  # "large": over 1000 pixels
    assert window.open_path(image_folder)
    canvas = window.canvas
    canvas.resize(400, 300)
    canvas.zoom_at(8.0, QPointF(0, 0))  # the top-left corner of the image fills the view
    view = canvas.visible_box()
    assert view is not None and view[0][0] == 0 and view[1][0] == 0 and view[0][1] < 96 and view[1][1] < 128
    with qtbot.waitSignal(window.runs.crfDone, timeout=60000):
        assert run_model(qtbot, window, checkpoint) == "done"  # live preview on: the CRF follows
    document = window.session.document
    (y0, y1), (x0, x1) = view
    inside = document.crf_labels[y0:y1, x0:x1]
    assert (inside != 255).all()
    assert (document.crf_labels == 255).sum() == 128 * 96 - inside.size  # nothing refined outside the view
    assert window.crf_panel.message().startswith("Live preview refines the part in view")
    assert "Run CRF refines all of it" in window.crf_panel.message()
    with qtbot.waitSignal(window.runs.crfDone, timeout=60000):
        qtbot.mouseClick(_run_crf_button(window), Qt.MouseButton.LeftButton)
    assert (document.crf_labels != 255).all()
    assert window.crf_panel.message() == ""


def test_live_preview_of_a_view_too_large_for_full_resolution_is_refined_at_a_coarser_scale(
        qtbot, window, image_folder, checkpoint, monkeypatch):
    monkeypatch.setattr(crf_preview, "LIVE_PREVIEW_PIXELS", 1000)
    monkeypatch.setattr(crf_preview, "SCALED_PREVIEW_PIXELS", 32 * 24)  # 1/4 of 128 x 96 a side
    seen = []
    real = crf_preview.refine_scaled_steps

    def spy(image, probabilities, params, **options):
        seen.append(options["box"])
        return real(image, probabilities, params, **options)

    monkeypatch.setattr(crf_preview, "refine_scaled_steps", spy)
    assert window.open_path(image_folder)
    window.canvas.fit()  # the whole image in view: 12288 pixels, more than 1000
    with qtbot.waitSignal(window.runs.crfDone, timeout=60000):
        assert run_model(qtbot, window, checkpoint) == "done"
    assert seen == [((0, 96), (0, 128))]
    crf = window.session.document.crf_labels
    assert crf is not None and (crf != 255).all()  # the coarse labels enlarged over the whole view
    assert window.crf_panel.message().startswith("Live preview of the part in view at 1/4.0 of full resolution")
    assert window.canvas.states["crf"].visible


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


def test_a_large_part_of_the_crf_layer_is_recoloured_in_bands_between_events(qtbot, monkeypatch):
    """The window keeps answering while a slide-sized CRF layer is coloured: one band per turn."""
    from segstudio.annotation.document import Document
    from segstudio.gui.canvas import view as view_module

    from .conftest import shown_canvas

    document = Document(np.zeros((300, 200), np.uint8))
    canvas = shown_canvas(qtbot, document, ("background", "organ"))
    document.crf_labels = np.full((300, 200), 255, np.uint8)
    canvas.refresh_crf(blank=True)
    assert (canvas.layer_buffer("crf")[..., 3] == 0).all()
    document.crf_labels[:, :] = 1
    monkeypatch.setattr(view_module, "RECOLOR_BAND_PIXELS", 200 * 50)  # 50 rows a turn
    canvas.refresh_crf_region(slice(0, 300), slice(0, 200))
    alpha = canvas.layer_buffer("crf")[..., 3]
    assert (alpha[:50] == 255).all() and (alpha[50:] == 0).all()  # one band now, the rest later
    qtbot.waitUntil(lambda: (canvas.layer_buffer("crf")[..., 3] == 255).all(), timeout=5000)
    np.testing.assert_array_equal(canvas.layer_buffer("crf")[5, 5], canvas._lut[1])
