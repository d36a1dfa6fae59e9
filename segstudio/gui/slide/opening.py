"""Opening a whole-slide image from the studio.

A pyramidal or tiled TIFF (OME-TIFF, SVS...), or a format OpenSlide reads
(MIRAX, Hamamatsu VMS, Sakura...; with the ``openslide`` extra), opens at
once in a slide window. A plain image too large for the studio's canvas (PNG, JPEG, an
untiled TIFF; above :data:`SLIDE_PIXELS` when opened alone, or any image
opened with File > Open whole-slide image) gets a pyramid built once, in a worker with a progress dialog
that can cancel, kept beside the labels (``pyramids/`` under the slides
folder) and reused the next time while the source is unchanged.

The labels live in the open project (``<project>/slides/<name>-<hash>/``),
or, without one or in a read-only one, in the per-user data folder.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import TYPE_CHECKING

from PySide6.QtCore import Qt
from PySide6.QtWidgets import QFileDialog, QProgressDialog

from segstudio.annotation.slide_document import SlideDocument, slide_folder
from segstudio.errors import SegstudioError, UnreadableInputError

if TYPE_CHECKING:
    from segstudio.gui.main_window import MainWindow
    from segstudio.gui.slide.window import SlideWindow

SLIDE_FILTER = ("Slides and large images (*.svs *.tif *.tiff *.ome.tif *.ndpi *.scn *.bif *.mrxs *.vms *.vmu "
                "*.svslide *.png *.jpg *.jpeg);;All files (*)")
#: A plain image (or one-level tiled TIFF) opened alone with more pixels than this opens as a slide
#: (a pyramid is built); the studio's canvas holds every layer of an image whole in memory.
SLIDE_PIXELS = 10000 * 10000
PLAIN = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp")


def slides_root(window: MainWindow) -> Path:
    """Where slide labels go: the open, writable project, else the per-user folder."""
    from segstudio.io.project_opening import user_projects_dir

    session = window.session
    if session.project is not None and not session.read_only:
        return session.project.folder / "slides"
    return user_projects_dir().parent / "slides"


def is_slide(path: Path) -> bool:
    """Whether ``path`` opens in a slide window as it is: a pyramid (TIFF, or a format only
    OpenSlide reads)."""
    from segstudio.io.slide import is_pyramid
    from segstudio.io.slide_openslide import OPENSLIDE_ONLY_SUFFIXES, OPENSLIDE_SUFFIXES

    suffix = path.suffix.lower()
    if suffix in OPENSLIDE_ONLY_SUFFIXES:  # only Slide reads them (it names the extra when it is missing)
        return True
    if suffix not in OPENSLIDE_SUFFIXES:
        return False
    # a one-level TIFF, however large, gets a pyramid first (opens_as_slide): drawn directly, every
    # view of it at fit zoom would read the whole image
    return is_pyramid(path)


def opens_as_slide(path: Path) -> bool:
    """Whether the studio opens the file ``path`` in a slide window: a pyramid, or an image
    larger than :data:`SLIDE_PIXELS` (its header says so)."""
    from segstudio.gui.session import _header_pixels

    if is_slide(path):
        return True
    return path.suffix.lower() in PLAIN and (_header_pixels(path) or 0) > SLIDE_PIXELS


def open_slide_dialog(window: MainWindow) -> None:
    """File > Open whole-slide image…"""
    path, _ = QFileDialog.getOpenFileName(window, "Open a whole-slide image", "", SLIDE_FILTER)
    if path:
        open_slide(window, Path(path))


def open_slide(window: MainWindow, path: Path) -> SlideWindow | None:
    """Open ``path`` in a slide window; a plain image gets its pyramid first (in the background)."""
    path = Path(path)
    if not is_slide(path):
        return _build_then_open(window, path)
    return _show(window, path, path)


def _show(window: MainWindow, slide_path: Path, source: Path) -> SlideWindow | None:
    from segstudio.annotation.classes import ClassList
    from segstudio.gui.crf_preview import studio_backend
    from segstudio.gui.slide.window import SlideWindow

    try:
        folder = slide_folder(source, slides_root(window))
    except OSError as error:
        window.report_error("Cannot open the slide", UnreadableInputError(str(error), path=source))
        return None
    for open_window in window.slide_windows:  # one window per slide: two would overwrite each other's chunks
        if open_window.document.folder == folder:
            open_window.showNormal()
            open_window.raise_()
            open_window.activateWindow()
            return open_window
    classes = ClassList(window.session.classes) if window.session.project else None  # a copy: the slide's own
    document = None
    try:
        document = SlideDocument.open(slide_path, folder, classes)
        slide_window = SlideWindow(document, model_settings=window.model_panel.settings,
                                   crf_settings=lambda: (window.crf_panel.params(), {"backend": studio_backend(window)}))
    except (SegstudioError, OSError) as error:
        if document is not None:
            document.close()
        window.report_error("Cannot open the slide", error)
        return None
    window.slide_windows.append(slide_window)
    slide_window.closed.connect(lambda: window.slide_windows.remove(slide_window)
                                if slide_window in window.slide_windows else None)
    slide_window.closed.connect(window.training.refresh)  # its labelled regions count for training
    slide_window.show()
    return slide_window


def pyramid_path(window: MainWindow, source: Path) -> Path:
    """Where the pyramid of a plain image is kept: named by its path, size and time, so an edited
    source gets a new one."""
    stat = source.stat()
    key = f"{source.resolve()}|{stat.st_size}|{stat.st_mtime_ns}"
    return slides_root(window) / "pyramids" / f"{source.name}-{hashlib.sha1(key.encode()).hexdigest()[:10]}.ome.tif"


def _build_then_open(window: MainWindow, source: Path) -> None:
    from segstudio.gui.workers import start_task
    from segstudio.io.pyramid import build_pyramid_from_file_steps

    try:
        target = pyramid_path(window, source)
    except OSError as error:
        window.report_error("Cannot open the slide", UnreadableInputError(str(error), path=source))
        return None
    if target.is_file():
        _show(window, target, source)
        return None

    def build(cancel):
        target.parent.mkdir(parents=True, exist_ok=True)
        return (yield from build_pyramid_from_file_steps(source, target, cancel=cancel))

    dialog = QProgressDialog(f"Building a pyramid of {source.name} (once)…", "Cancel", 0, 0, window)
    dialog.setWindowTitle("Opening a large image")
    dialog.setWindowModality(Qt.WindowModality.NonModal)
    dialog.setMinimumDuration(0)
    task = start_task("Building the pyramid", build, window)
    window.pyramid_task = task

    def on_progress(progress) -> None:
        if progress.total:
            dialog.setRange(0, progress.total)
            dialog.setValue(progress.done)
            dialog.setLabelText(f"Building a pyramid of {source.name}: level {progress.done} of {progress.total}")

    dialog.canceled.connect(task.cancel)
    task.progressed.connect(on_progress)
    task.succeeded.connect(lambda built: _show(window, Path(built), source))
    task.failed.connect(lambda error: window.report_error("Cannot open the slide", error))
    task.cancelled.connect(lambda: window.statusBar().showMessage("building the pyramid cancelled", 5000))
    task.done.connect(dialog.close)
    dialog.show()
    return None
