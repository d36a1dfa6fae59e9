"""View > Three views (volumes): the wiring between the window and its
:class:`~segstudio.gui.canvas.ortho.OrthoViews`.

The window's central widget becomes the OrthoViews holding ``window.canvas``
(which stays the canvas the rest of the studio drives). While the action is
on and the open document is a volume, the two extra views show its other
planes; otherwise they hold no document, so they keep no listener on it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from PySide6.QtCore import QObject

from segstudio.gui.canvas.ortho import OrthoViews

if TYPE_CHECKING:
    from segstudio.gui.main_window import MainWindow


class ThreeViews(QObject):
    """Turns the three views on and off and keeps them on the window's document."""

    def __init__(self, window: MainWindow) -> None:
        super().__init__(window)
        self.window = window
        self.enabled = False
        canvas = window.takeCentralWidget()  # taken, not deleted, to be held by the views
        self.views = OrthoViews(canvas, window)
        window.setCentralWidget(self.views)
        # connected after the window's own handlers: the main canvas has changed when these run
        window.session.documentChanged.connect(self.refresh)
        sync = self.views.sync_from_main
        canvas.brushRadiusChanged.connect(lambda _radius: sync())
        for action in window.actions_by_name.values():  # tools, class keys, "paint only unlabelled"...
            action.triggered.connect(lambda *_: sync())
        window.classes_panel.activeChanged.connect(lambda _index: sync())
        layers = window.layers_panel
        for signal in (layers.visibilityChanged, layers.opacityChanged, layers.outlineChanged,
                       layers.heatmapChanged, layers.colormapChanged):
            signal.connect(lambda *_: sync())
        window.session.documentEdited.connect(sync)
        # a run on some slices fills the prediction in place: the same object, new values
        window.runs.predicted.connect(lambda *_: sync(predictions=True))
        window.runs.crfDone.connect(lambda *_: sync(predictions=True))

    @property
    def extras(self):
        """The two extra canvases (they hold no document unless shown)."""
        return self.views.extras

    def set_enabled(self, enabled: bool) -> None:
        self.enabled = bool(enabled)
        action = self.window.actions_by_name.get("three_views")
        if action is not None and action.isChecked() != self.enabled:
            action.setChecked(self.enabled)
        self.refresh()
        document = self.window.session.document
        if self.enabled and (document is None or not document.is_volume):
            self.window.statusBar().showMessage("Three views show volumes (DICOM series, NIfTI)", 4000)

    def refresh(self, *_args) -> None:
        """Show the window's document in three views if it is a volume and the mode is on."""
        document = self.window.session.document
        canvas = self.window.canvas
        if self.enabled and document is not None and document.is_volume and canvas.document is document:
            self.views.show_volume(document)
        else:
            self.views.clear()


def install(window: MainWindow) -> ThreeViews:
    """Put the three-view area in *window* (off until View > Three views is checked)."""
    return ThreeViews(window)
