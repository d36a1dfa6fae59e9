"""Menus, shortcuts and the small jobs behind them, for the main window.

Kept apart from main_window.py so that the window module stays a readable
composition of docks and signal connections.
"""

from __future__ import annotations

import logging
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from PySide6.QtCore import QSettings
from PySide6.QtGui import QAction, QActionGroup, QKeySequence
from PySide6.QtWidgets import QMessageBox

from segstudio.errors import SegstudioError
from segstudio.gui import next_image
from segstudio.gui.canvas import Tool
from segstudio.gui.slide.opening import open_slide_dialog
from segstudio.gui.volume_tools import fill_between_slices
from segstudio.io.masks import unlabelled_for

if TYPE_CHECKING:
    from segstudio.gui.main_window import MainWindow

log = logging.getLogger(__name__)

THUMBNAIL = 64

#: what the mouse and a few context keys do; the keys of the actions are listed
#: from the actions themselves (show_shortcuts), so that list cannot go stale
GESTURES = (
    ("Wheel", "Zoom at the cursor"),
    ("Space+drag, middle drag", "Pan (any tool)"),
    ("Ctrl+Wheel, Page Up / Page Down", "Next / previous slice (volumes)"),
    ("Right drag", "Window / level (volumes): sideways = width, up/down = level"),
    ("Shift+click, Shift+drag", "Move the crosshair to a voxel (three views of a volume)"),
    ("Click, double-click or Enter, Esc", "Polygon: add a corner, close and fill, cancel"),
    ("Esc (Model panel)", "Cancel the model run"),
)


def _action(window: MainWindow, name: str, text: str, slot, shortcut: str | QKeySequence | None = None,
            checkable: bool = False) -> QAction:
    action = QAction(text, window)
    if shortcut:
        action.setShortcut(QKeySequence(shortcut))
    action.setCheckable(checkable)
    action.triggered.connect(slot)
    window.actions_by_name[name] = action
    window.addAction(action)  # shortcuts work whichever dock has the focus
    return action


def build_menus(window: MainWindow) -> None:
    bar = window.menuBar()
    file_menu = bar.addMenu("&File")
    file_menu.addAction(_action(window, "open_files", "Open images…", lambda: window.open_dialog("files"),
                                QKeySequence.StandardKey.Open))
    file_menu.addAction(_action(window, "open_folder", "Open folder or project…",
                                lambda: window.open_dialog("folder"), "Ctrl+Shift+O"))
    file_menu.addAction(_action(window, "open_slide", "Open whole-slide image…",
                                lambda: open_slide_dialog(window), "Ctrl+Alt+O"))
    window.recent_menu = file_menu.addMenu("Open recent")
    refresh_recent_menu(window)
    file_menu.addSeparator()
    file_menu.addAction(_action(window, "save", "Save", lambda: window.session.save(wait=True),
                                QKeySequence.StandardKey.Save))
    file_menu.addAction(_action(window, "export", "Export masks…", partial(export_masks, window), "Ctrl+E"))
    file_menu.addSeparator()
    file_menu.addAction(_action(window, "quit", "Quit", window.close, QKeySequence.StandardKey.Quit))

    edit = bar.addMenu("&Edit")
    edit.addAction(_action(window, "undo", "Undo", window.undo, QKeySequence.StandardKey.Undo))
    # the texts name the step ("Undo Brush"): main_window._update_undo_actions
    edit.addAction(_action(window, "redo", "Redo", window.redo, "Ctrl+Shift+Z"))
    edit.addSeparator()
    edit.addAction(_action(window, "accept_all", "Accept prediction (whole image)",
                           lambda: window.accept("prediction"), "Ctrl+Shift+A"))
    edit.addAction(_action(window, "accept_class", "Accept prediction (active class)",
                           lambda: window.accept("prediction", active_class_only=True), "Ctrl+Alt+A"))
    edit.addAction(_action(window, "accept_crf", "Accept CRF mask (whole image)", lambda: window.accept("crf"),
                           "Ctrl+Shift+K"))
    edit.addAction(_action(window, "fill_between_slices", "Fill between slices (active class)",
                           partial(fill_between_slices, window), "Ctrl+Shift+F"))
    edit.addSeparator()
    edit.addAction(_action(window, "mark_reviewed", "Mark image reviewed", partial(mark_reviewed, window),
                           "Ctrl+Return"))

    tools_menu = bar.addMenu("&Tools")
    group = QActionGroup(window)
    for name, text, key in (("brush", "Brush", "B"), ("eraser", "Eraser", "E"), ("fill", "Fill", "F"),
                            ("polygon", "Polygon", "P"), ("accept", "Accept in region", "R"),
                            ("pan", "Pan", "H"), ("eyedropper", "Pick class (eyedropper)", "I"),
                            ("wand", "Magic wand (fill by intensity)", "W"),
                            ("scribble", "Scribble (refine the prediction with the CRF)", "S")):
        action = _action(window, f"tool_{name}", text, partial(window.set_tool, Tool(name)), key, checkable=True)
        group.addAction(action)
        tools_menu.addAction(action)
    window.actions_by_name["tool_brush"].setChecked(True)
    tools_menu.addSeparator()
    tools_menu.addAction(_action(window, "paint_unlabelled_only", "Paint only unlabelled pixels",
                                 window.canvas.set_paint_unlabelled_only, "U", checkable=True))
    tools_menu.addSeparator()
    tools_menu.addAction(_action(window, "brush_smaller", "Brush smaller",
                                 lambda: window.canvas.set_brush_radius(window.canvas.brush_radius / 1.25), "["))
    tools_menu.addAction(_action(window, "brush_larger", "Brush larger",
                                 lambda: window.canvas.set_brush_radius(window.canvas.brush_radius * 1.25), "]"))
    for number in range(1, 10):
        _action(window, f"class_{number}", f"Class {number}", partial(window.set_active_class, number - 1),
                str(number))

    view = bar.addMenu("&View")
    view.addAction(_action(window, "fit", "Fit to window", window.canvas.fit, "Ctrl+0"))
    view.addAction(_action(window, "actual", "Actual size (1:1)", window.canvas.actual_size, "Ctrl+1"))
    view.addAction(_action(window, "next", "Next image", partial(window.step_image, 1), "D"))
    view.addAction(_action(window, "previous", "Previous image", partial(window.step_image, -1), "A"))
    view.addAction(_action(window, "next_uncertain", "Next image to annotate", partial(next_image.open_next, window),
                           "N"))
    view.addAction(_action(window, "three_views", "Three views (volumes)",
                           lambda on: window.three_views.set_enabled(on), "Ctrl+3", checkable=True))
    view.addSeparator()
    for dock in window.docks.values():
        view.addAction(dock.toggleViewAction())
    view.addSeparator()
    view.addAction(_action(window, "reset_layout", "Reset layout", window.reset_layout))

    model = bar.addMenu("&Model")
    model.addAction(_action(window, "run", "Run on this image", lambda: window.run_model(False), "Ctrl+R"))
    model.addAction(_action(window, "run_all", "Run on all images", lambda: window.run_model(True), "Ctrl+Shift+R"))
    model.addAction(_action(window, "cancel", "Cancel run", window.runs.cancel, "Ctrl+."))
    model.addAction(_action(window, "run_crf", "Run the CRF (CRF dock settings)",
                            lambda: window.run_crf(window.crf_panel.params()), "Ctrl+K"))
    model.addAction(_action(window, "rescore", "Re-score unreviewed images", partial(next_image.rescore, window)))
    model.addSeparator()
    model.addAction(_action(window, "train", "Train a new version", partial(start_training, window), "Ctrl+T"))

    help_menu = bar.addMenu("&Help")
    help_menu.addAction(_action(window, "shortcuts", "Keyboard shortcuts", partial(show_shortcuts, window), "F1"))
    help_menu.addAction(_action(window, "about", "About segstudio", window.about))


def recent_paths(settings: QSettings | None = None) -> list[str]:
    """The recently opened paths in QSettings, newest first, that still exist.

    An INI settings file gives a one-item list back as a plain string and an
    empty one as None; iterating the string would list its characters.
    """
    stored = (settings or QSettings()).value("recent", [])
    if stored is None:
        stored = []
    elif isinstance(stored, str):
        stored = [stored]
    paths: list[str] = []
    for path in stored:
        if isinstance(path, str) and path and path not in paths and Path(path).exists():
            paths.append(path)
    return paths


def refresh_recent_menu(window: MainWindow) -> None:
    menu = window.recent_menu
    menu.clear()
    recent = recent_paths()
    for path in recent:
        menu.addAction(path, partial(window.open_path, path))
    menu.setEnabled(bool(recent))


def shortcut_rows(window: MainWindow, gestures=GESTURES) -> list[tuple[str, str]]:
    """(keys, what) for every action with a shortcut, in menu order, then the
    canvas gestures. The active-class keys 1 … 9 share one row."""
    rows: list[tuple[str, str]] = []
    class_keys: list[str] = []
    for name, action in window.actions_by_name.items():
        keys = action.shortcut().toString(QKeySequence.SequenceFormat.NativeText)
        if not keys:
            continue
        if name.startswith("class_"):
            if not class_keys:
                rows.append(("", "Active class"))  # filled in below, in place
                class_index = len(rows) - 1
            class_keys.append(keys)
            continue
        rows.append((keys, action.text().replace("&", "").rstrip("…")))
    if class_keys:
        rows[class_index] = (" / ".join(class_keys), "Active class")
    return rows + list(gestures)


def show_shortcuts(window: MainWindow, gestures=GESTURES) -> QMessageBox:
    """Help > Keyboard shortcuts of a window with ``actions_by_name`` (the studio's, a slide window's)."""
    from html import escape

    rows = "".join(f"<tr><td><b>{escape(keys)}</b></td><td>&nbsp;&nbsp;{escape(what)}</td></tr>"
                   for keys, what in shortcut_rows(window, gestures))
    box = QMessageBox(window)
    box.setWindowTitle("Keyboard shortcuts")
    box.setText(f"<table>{rows}</table>")
    box.open()
    return box


def start_training(window: MainWindow) -> None:
    """Model > Train a new version: the Training dock comes forward and its Train button is pressed."""
    window.docks["Training"].show()
    window.docks["Training"].raise_()
    if not window.training_panel.request_training():
        window.statusBar().showMessage("A training run is in progress (Training panel: Pause, Cancel)", 4000)


def mark_reviewed(window: MainWindow) -> None:
    from segstudio.annotation.document import ImageStatus

    if window.session.document is not None:
        window.session.set_status(window.session.index, ImageStatus.REVIEWED)


def load_thumbnails(window: MainWindow) -> None:
    """The Images list's thumbnails, read in a worker thread one image after
    another (a folder of large images froze the window while they were read);
    a project opened meanwhile cancels the reading and drops what it still yields."""
    from segstudio.gui.workers import start_task
    from segstudio.io.thumbnails import thumbnail_steps

    previous = window.thumbnail_task
    if previous is not None and previous.running:
        previous.cancel()
    project = window.session.project
    if project is None:
        window.thumbnail_task = None
        return
    entries = list(project.entries)

    def on_thumbnail(item) -> None:
        if window.session.project is not project:
            return
        if item.error is not None:
            window.images_panel.set_status(item.index, "unreadable")
            log.warning("%s", item.error)
        else:
            window.images_panel.set_thumbnail(item.index, item.image)

    task = start_task("Thumbnails", lambda cancel: thumbnail_steps(entries, THUMBNAIL, cancel=cancel), window)
    task.worker.yielded.connect(on_thumbnail)
    window.thumbnail_task = task


def model_jobs(window: MainWindow, all_images: bool, *, skip_reviewed: bool = False):
    """(index, load_image) pairs for a model run; images load in the worker.
    Volumes are left out (they run slice by slice from the Volume dock)."""
    from segstudio.annotation.document import ImageStatus
    from segstudio.io.images import read_image

    session = window.session
    if not all_images:
        image = session.document.image
        return [(session.index, lambda: image)]
    jobs = []
    for index, entry in enumerate(session.project.entries):
        if getattr(entry, "kind", "image") != "image":
            continue
        if skip_reviewed and entry.status == ImageStatus.REVIEWED:
            continue
        if index == session.index and session.document is not None:
            image = session.document.image
            jobs.append((index, lambda image=image: image))
        else:
            jobs.append((index, partial(read_image, entry.source)))
    return jobs


def adopt_model_classes(window: MainWindow, meta) -> None:
    """A project without labels takes the model's classes; otherwise the
    class counts must agree."""
    project = window.session.project
    if project is None:
        return
    classes = project.classes
    if list(classes.names) == list(meta.class_names):
        return
    labelled = any(project.has_labels(i) for i in range(len(project.entries)))
    document = window.session.document
    if document is not None and (document.labels != document.unlabelled).any():
        labelled = True
    if not labelled:
        from segstudio.annotation.classes import ClassList, LabelClass

        project.classes = ClassList.from_list(
            [LabelClass(name, tuple(color)).to_dict() for name, color in zip(meta.class_names, meta.class_colors,
                                                                              strict=True)]
        )
        project.save()
        window.session.match_label_type()
        window.sync_classes()
        window.statusBar().showMessage(f"classes taken from the model: {', '.join(meta.class_names)}", 5000)
    elif len(classes) != meta.num_classes:
        window.report_error(
            "Classes differ",
            SegstudioError(f"the model predicts {meta.num_classes} classes, the project has {len(classes)}"),
        )


def ask_about_lock(window: MainWindow, locked) -> str | None:
    """Another window holds the project (a :class:`ProjectLockedError`): ``"read-only"``,
    ``"take-over"`` or None (cancel), as the user chooses. Read-only is the default."""
    box = QMessageBox(window)
    box.setIcon(QMessageBox.Icon.Warning)
    box.setWindowTitle("Project in use")
    box.setText(f"{locked.path} is open in another window:\n{locked.owner.describe()}.")
    box.setInformativeText(
        "If both windows edit it, one overwrites the other's labels. Open it read-only to look, "
        "or take it over only if that window has crashed or is closed.")
    read_only = box.addButton("Open read-only", QMessageBox.ButtonRole.AcceptRole)
    take_over = box.addButton("Take over", QMessageBox.ButtonRole.DestructiveRole)
    box.addButton(QMessageBox.StandardButton.Cancel)
    read_only.setObjectName("lock_read_only")
    take_over.setObjectName("lock_take_over")
    box.setDefaultButton(read_only)
    window.lock_box = box  # tests find and click it
    box.exec()
    clicked = box.clickedButton()
    return "read-only" if clicked is read_only else "take-over" if clicked is take_over else None


def export_masks(window: MainWindow) -> None:
    """File > Export masks: ask for a folder and a format that fits the project,
    then export in a worker; progress and the outcome go to the status bar."""
    from segstudio.gui.dialogs.export import ExportDialog, formats_for
    from segstudio.gui.workers import start_task
    from segstudio.io.export import export_project

    project = window.session.project
    if project is None:
        window.statusBar().showMessage("Open images first", 4000)
        return
    running = getattr(window, "export_task", None)
    if running is not None and running.running:
        window.statusBar().showMessage("An export is already in progress", 4000)
        return
    if not window.session.save(wait=True):
        window.statusBar().showMessage("Some labels could not be saved; the export writes what is on disk", 8000)
    choice = ExportDialog(window, formats=formats_for(project.entries)).choice()
    if choice is None:
        return
    folder, fmt = choice

    def on_progress(progress) -> None:
        total = f"/{progress.total}" if progress.total else ""
        window.statusBar().showMessage(f"Exporting {progress.done}{total}: {progress.message}")

    def on_succeeded(paths) -> None:
        files = "file" if len(paths) == 1 else "files"
        window.statusBar().showMessage(f"exported {len(paths)} {files} to {folder}", 8000)

    task = start_task("Export", lambda cancel: export_project(project, folder, fmt=fmt, cancel=cancel), window)
    task.progressed.connect(on_progress)
    task.succeeded.connect(on_succeeded)
    task.cancelled.connect(lambda: window.statusBar().showMessage("Export cancelled", 5000))
    task.failed.connect(lambda error: window.report_error("Export failed", error))
    window.export_task = task


def describe_pixel(window: MainWindow, x: int, y: int) -> str:
    """Status bar text: position, intensity, label and class probabilities."""
    document = window.session.document
    if document is None or x < 0:
        return ""
    classes = window.session.classes
    slicer = window.canvas.slicer
    if slicer is not None:
        voxel = slicer.voxel(y, x)
        where = f"voxel z {voxel[0]} y {voxel[1]} x {voxel[2]}" + _patient_position(document, voxel)
    else:
        voxel = (y, x)
        where = f"x {x}  y {y}"
    if any(not 0 <= i < n for i, n in zip(voxel, document.labels.shape, strict=False)):
        return ""  # a position kept from a larger image or another plane
    value = document.image[voxel]
    intensity = ", ".join(f"{v:g}" for v in np.atleast_1d(value))
    label = int(document.labels[voxel])
    label_name = "unlabelled" if label == document.unlabelled else (classes[label].name if label < len(classes) else str(label))
    text = f"{where}   value {intensity}   label: {label_name}"
    if document.prediction is not None:
        probabilities = document.prediction.probabilities[(slice(None), *voxel)].astype(np.float32)
        if document.prediction.probabilities.dtype == np.uint8:
            probabilities /= 255.0
        names = classes.names if len(classes) == len(probabilities) else [str(i) for i in range(len(probabilities))]
        text += "   p: " + "  ".join(f"{n} {p:.2f}" for n, p in zip(names, probabilities, strict=False))
    return text


def _patient_position(document, voxel: tuple[int, int, int]) -> str:
    volume = document.volume
    if volume is None or getattr(volume, "affine", None) is None:
        return ""
    z, y, x = voxel
    point = volume.affine @ np.array([x, y, z, 1.0])
    frame = getattr(volume, "world_frame", None) or "mm"
    return f" ({frame} {point[0]:.1f}, {point[1]:.1f}, {point[2]:.1f} mm)"


def describe_slice(window: MainWindow) -> str:
    slicer = window.canvas.slicer
    if slicer is None:
        return ""
    from segstudio.gui.canvas.slicing import AXES

    text = f"{AXES[slicer.axis]} slice {slicer.index + 1} / {slicer.count}"
    volume = window.session.document.volume if window.session.document else None
    if volume is not None and getattr(volume, "affine", None) is not None:
        centre = [s // 2 for s in slicer.shape]
        centre[slicer.axis] = slicer.index
        z, y, x = centre
        point = volume.affine @ np.array([x, y, z, 1.0])
        text += f", position {point[2 - slicer.axis]:.1f} mm"
    return text


def merge_volume_prediction(window: MainWindow, index: int, result):
    """A run on some slices of a volume updates those slices of the prediction
    already shown, instead of replacing it (unrun slices are unlabelled: 255, or
    65535 for a model of more than 254 classes)."""
    document = window.session.document
    if document is None or index != window.session.index or not document.is_volume:
        return result
    old = document.prediction
    if old is None or old.probabilities.shape != result.probabilities.shape:
        return result
    if old.probabilities.dtype != result.probabilities.dtype:
        return result
    done = (result.labels != unlabelled_for(result.labels.dtype)).any(axis=(1, 2))
    old.probabilities[:, done] = result.probabilities[:, done]
    old.labels[done] = result.labels[done]
    return old
