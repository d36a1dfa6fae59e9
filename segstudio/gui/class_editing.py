"""The Classes panel's edits: add, rename, recolour, hide and delete a class.

Each edit changes the project's class list, saves project.json and shows the
list again; crossing 254 classes changes the label maps' depth, and the
status bar says so.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from segstudio.errors import SegstudioError

if TYPE_CHECKING:
    from segstudio.gui.main_window import MainWindow


def connect_classes_panel(window: MainWindow) -> None:
    """Wire the Classes panel's requests to the project's class list."""
    panel = window.classes_panel
    panel.addRequested.connect(lambda name, color: edit_classes(window, lambda c: c.add(name, tuple(color))))
    panel.renameRequested.connect(lambda index, name: edit_classes(window, lambda c: c.rename(index, name)))
    panel.recolorRequested.connect(
        lambda index, color: edit_classes(window, lambda c: c.recolor(index, tuple(color))))
    panel.visibilityChanged.connect(
        lambda index, visible: edit_classes(window, lambda c: c.set_visible(index, visible)))
    panel.deleteRequested.connect(lambda index, replacement: on_class_deleted(window, index, replacement))


def edit_classes(window: MainWindow, change) -> None:
    """Apply *change* to the class list, save the project and show the list."""
    session = window.session
    if session.project is None:
        return
    depth = session.classes.label_dtype
    try:
        change(session.classes)
        session.match_label_type()  # the 255th class makes the labels uint16
    except SegstudioError as error:
        window.report_error("Classes", error)
    session.project.save()
    window.sync_classes()
    report_label_depth(window, depth)


def on_class_deleted(window: MainWindow, index: int, replacement: int) -> None:
    depth = window.session.classes.label_dtype
    try:
        delete_class(window, index, replacement)
    except SegstudioError as error:
        window.report_error("Cannot delete the class", error)
    window.sync_classes()
    report_label_depth(window, depth)


def report_label_depth(window: MainWindow, before) -> None:
    """Say so when the class count crossed 254 and the label maps changed depth."""
    classes = window.session.classes
    if classes.label_dtype != before:
        bits = 8 * classes.label_dtype.itemsize
        window.statusBar().showMessage(f"{len(classes)} classes: labels are now saved as {bits}-bit PNGs", 8000)


def delete_class(window: MainWindow, index: int, replacement: int) -> None:
    """Remove class ``index`` everywhere; its pixels become ``replacement``
    (another class, or -1 = unlabelled) and higher classes shift down. Going
    from 255 classes to 254 also narrows every label map from uint16 to uint8.

    All or nothing (:meth:`Project.delete_class`): one unreadable file stops
    the deletion with the project intact, instead of leaving it half renumbered.
    """
    project = window.session.project
    if project is None:
        return
    if not window.session.save(wait=True):  # every image's labels on disk, in the old numbering
        raise SegstudioError("the labels could not be saved, so no class was deleted")
    document = window.session.document

    def renumber_open_image(mapping):
        # called once the deletion is certain, even if a later write fails
        if document is not None:
            document.remap_labels(mapping)
            document.dirty = False  # its file is the one being renumbered

    project.delete_class(index, None if replacement < 0 else replacement, on_commit=renumber_open_image)
