"""Three linked views of a volume (axial, coronal, sagittal) with a crosshair,
as 3D Slicer and ITK-SNAP show them.

:class:`OrthoViews` is the window's central area: the main canvas (the one the
rest of the studio drives) large on the left and, for a volume in three-view
mode, the two other planes stacked on the right. The extra views are plain
:class:`~segstudio.gui.canvas.view.Canvas` instances on the same Document: an
edit made in any of them reaches the Document, which tells every view.

The crosshair is one voxel (z, y, x) in the volume's stored order. Each view
shows the plane through it along its own axis and draws the traces of the two
other planes through it. Shift+click (or Shift+drag) in any view moves it to
the voxel under the mouse; moving a view's slice (Page Up/Down, Ctrl+wheel,
the Volume panel) moves it along that view's axis.
"""

from __future__ import annotations

import math
from functools import partial

from PySide6.QtCore import QEvent, QObject, Qt
from PySide6.QtGui import QMouseEvent
from PySide6.QtWidgets import QSplitter, QVBoxLayout, QWidget

from segstudio.annotation.document import Document
from segstudio.gui.canvas.view import Canvas

#: how much of the width the main view takes when the two others are shown
MAIN_SHARE = 0.6
#: the main canvas's tool settings the extra views copy as they are
_PLAIN_SETTINGS = ("active_class", "paint_unlabelled_only", "accept_source", "wand_tolerance", "wand_maximum",
                   "wand_decimals")


class OrthoViews(QWidget):
    """The main canvas, and two more views of a volume's other planes."""

    def __init__(self, main: Canvas, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.main = main
        self.extras = (Canvas(), Canvas())
        for number, extra in enumerate(self.extras):
            extra.setObjectName(f"ortho_view_{number + 1}")
            extra.setMinimumSize(120, 120)
            # what the eyedropper picks or a read-only touch is reported as the main view's
            extra.labelPicked.connect(main.labelPicked)
            extra.readOnlyTouched.connect(main.readOnlyTouched)
            extra.windowChanged.connect(partial(self._on_extra_window_changed, extra))
        for canvas in self.canvases:
            canvas.sliceChanged.connect(partial(self._on_slice_changed, canvas))
        main.windowChanged.connect(self._on_main_window_changed)
        self.side = QSplitter(Qt.Orientation.Vertical)
        self.side.setChildrenCollapsible(False)
        for extra in self.extras:
            self.side.addWidget(extra)
        self.splitter = QSplitter(Qt.Orientation.Horizontal)
        self.splitter.setChildrenCollapsible(False)
        self.splitter.addWidget(main)
        self.splitter.addWidget(self.side)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.splitter)
        self.side.hide()
        self._main_axis = 0
        self._updating = False  # the views' own slice signals while the crosshair moves them
        self._prediction_seen: tuple[int, int] | None = None

    @property
    def canvases(self) -> tuple[Canvas, Canvas, Canvas]:
        return self.main, *self.extras

    @property
    def active(self) -> bool:
        """Whether the three views are shown (a volume in three-view mode)."""
        return self.main.document is not None and all(e.document is self.main.document for e in self.extras)

    @property
    def crosshair(self) -> tuple[int, int, int] | None:
        return self.main.crosshair

    # -- showing a volume ---------------------------------------------------------
    def show_volume(self, document: Document) -> None:
        """The main canvas's volume in three views, the crosshair through its
        current slice and the middle of the two other axes."""
        for extra in self.extras:
            extra.set_document(document, self.main._lut)  # the same colour table as the main view
        self._prediction_seen = None
        self._arrange_axes()
        voxel = [n // 2 for n in document.shape[:3]]
        voxel[self.main.slicer.axis] = self.main.slicer.index
        if not self.side.isVisible():
            self.side.show()
            width = max(self.splitter.width(), 400)
            self.splitter.setSizes([round(width * MAIN_SHARE), width - round(width * MAIN_SHARE)])
        for canvas in self.canvases:
            canvas.installEventFilter(self)
        self.sync_from_main()
        self.set_crosshair(tuple(voxel))

    def clear(self) -> None:
        """The main canvas alone; the extra views let go of the document (and its listeners)."""
        for canvas in self.canvases:
            canvas.removeEventFilter(self)
        for extra in self.extras:
            extra.set_document(None, self.main._lut)
        self.main.set_crosshair(None)
        self._prediction_seen = None
        self.side.hide()

    def _arrange_axes(self) -> None:
        """The extra views show the two axes the main view does not, in order."""
        self._main_axis = self.main.slicer.axis
        others = [axis for axis in range(3) if axis != self._main_axis]
        self._updating = True
        try:
            for extra, axis in zip(self.extras, others, strict=True):
                extra.set_view_axis(axis)
        finally:
            self._updating = False

    # -- the crosshair ------------------------------------------------------------
    def set_crosshair(self, voxel: tuple[int, int, int]) -> None:
        """Move the crosshair to *voxel* (z, y, x): every view shows the plane through it."""
        if not self.active:
            return
        shape = self.main.document.shape[:3]
        voxel = tuple(int(min(max(v, 0), n - 1)) for v, n in zip(voxel, shape, strict=True))
        self._updating = True
        try:
            for canvas in self.canvases:
                canvas.set_slice(voxel[canvas.slicer.axis])
                canvas.set_crosshair(voxel)
        finally:
            self._updating = False

    def voxel_at(self, canvas: Canvas, event: QMouseEvent) -> tuple[int, int, int] | None:
        """The voxel (z, y, x) under the mouse in *canvas*, or None outside the plane."""
        row, column = canvas.to_image(event.position())
        row, column = math.floor(row), math.floor(column)
        height, width = canvas.image_size()
        if canvas.slicer is None or not (0 <= row < height and 0 <= column < width):
            return None
        return canvas.slicer.voxel(*canvas.slicer.screen_to_plane(row, column))

    def _on_slice_changed(self, canvas: Canvas, index: int, _count: int) -> None:
        if self._updating or not self.active or self.crosshair is None:
            return
        if canvas is self.main and canvas.slicer.axis != self._main_axis:
            # the Volume panel turned the main view: the others take the two remaining axes
            # and the main view goes to the crosshair's plane along its new axis
            self._arrange_axes()
            self.set_crosshair(self.crosshair)
            return
        voxel = list(self.crosshair)
        voxel[canvas.slicer.axis] = index
        self.set_crosshair(tuple(voxel))

    def eventFilter(self, watched: QObject, event: QEvent) -> bool:  # noqa: N802 (Qt override)
        kind = event.type()
        if watched not in self.canvases or not self.active:
            return False
        if kind == QEvent.Type.Paint and watched is self.main:
            self.sync_from_main()  # whatever the main view changed, the others follow
        elif kind in (QEvent.Type.Enter, QEvent.Type.MouseButtonPress, QEvent.Type.Wheel) and watched is not self.main:
            self.sync_from_main()
        if kind in (QEvent.Type.MouseButtonPress, QEvent.Type.MouseMove) and self._is_crosshair_gesture(event):
            if kind == QEvent.Type.MouseButtonPress:
                watched.setFocus()  # Page Up / Down then step this view's slice
            voxel = self.voxel_at(watched, event)
            if voxel is not None:
                self.set_crosshair(voxel)
            return True  # a Shift+click never paints
        return False

    @staticmethod
    def _is_crosshair_gesture(event: QMouseEvent) -> bool:
        if not event.modifiers() & Qt.KeyboardModifier.ShiftModifier:
            return False
        if event.type() == QEvent.Type.MouseButtonPress:
            return event.button() == Qt.MouseButton.LeftButton
        return bool(event.buttons() & Qt.MouseButton.LeftButton)

    # -- the extra views follow the main one ------------------------------------
    def sync_from_main(self, *, predictions: bool = False) -> None:
        """Give the extra views the main view's tool, brush, class, options,
        window, class colours, layer states and heatmap (only what differs, so
        it is cheap enough to call on every repaint). *predictions* rebuilds
        their prediction layers even when the document's prediction is the same
        object (a run on some slices fills it in place)."""
        main = self.main
        if not self.active:
            return
        document = main.document
        seen = (id(document.prediction), id(document.crf_labels))
        rebuild = predictions or seen != self._prediction_seen
        self._prediction_seen = seen
        for extra in self.extras:
            if extra.tool is not main.tool:
                extra.set_tool(main.tool)
            if extra.brush_radius != main.brush_radius:
                extra.set_brush_radius(main.brush_radius)
            for name in _PLAIN_SETTINGS:  # read when a tool is used: nothing to redraw
                if hasattr(main, name):
                    setattr(extra, name, getattr(main, name))
            if extra._lut is not main._lut:
                extra.set_class_lut(main._lut)
            if extra._colormap is not main._colormap:
                extra.set_colormap(main._colormap)
            if extra.heatmap_index != main.heatmap_index:
                extra.set_heatmap(main.heatmap_index)
            for name, state in main.states.items():
                mine = extra.states[name]
                if mine.visible != state.visible:
                    extra.set_layer_visible(name, state.visible)
                if mine.opacity != state.opacity:
                    extra.set_layer_opacity(name, state.opacity)
                if mine.outline != state.outline:
                    extra.set_layer_outline(name, state.outline)
            if main.slicer.window is not None and extra.slicer.window != main.slicer.window:
                extra.set_window(*main.slicer.window)
            if rebuild:
                extra.refresh_prediction()

    def _on_main_window_changed(self, center: float, width: float) -> None:
        if self.active:
            for extra in self.extras:
                if extra.slicer.window != (center, width):
                    extra.set_window(center, width)

    def _on_extra_window_changed(self, extra: Canvas, center: float, width: float) -> None:
        """A right-drag in an extra view sets the window of all three (and the Volume panel's)."""
        if self.active and extra.document is self.main.document and self.main.slicer.window != (center, width):
            self.main.set_window(center, width)
