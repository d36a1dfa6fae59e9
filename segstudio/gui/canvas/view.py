"""The canvas widget: layers drawn over the image, zoom and pan, mouse tools.

Only the visible part of each layer is drawn, straight from QImages that
wrap the layers' numpy buffers. Edits go through the Document (the single
source of truth); the canvas listens to it and repaints the changed
rectangle only.

A volume's plane is shown oriented as in radiology viewers (superior up,
anterior up on axial planes, the patient's right on the left; see
:mod:`segstudio.gui.canvas.slicing`), with the patient directions lettered at
the edges. Layers, tool regions and the widget coordinates are in the plane
as shown; ``_to_document`` and ``_on_document_changed`` map regions to and
from the volume's own voxel order, in which the labels are stored.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
from PySide6.QtCore import QPointF, QRect, QRectF, Qt, QTimer, Signal
from PySide6.QtGui import QColor, QImage, QKeyEvent, QMouseEvent, QPainter, QWheelEvent
from PySide6.QtWidgets import QWidget

from segstudio.annotation.document import Document
from segstudio.gui.canvas import drawing
from segstudio.gui.canvas.painting import PaintingTools
from segstudio.gui.canvas.slicing import SliceView
from segstudio.gui.canvas.tool import Tool
from segstudio.gui.canvas.layers import (
    HeatmapLayer,
    LayerState,
    MaskLayer,
    Region,
    DEFAULT_LAYERS,
    display_rgba,
    heatmap_values,
    wrap_rgba,
)

MIN_ZOOM, MAX_ZOOM = 1 / 64, 64.0
#: pixels of the CRF layer recoloured per turn of the event loop (~20 ms)
RECOLOR_BAND_PIXELS = 1 << 21


class Canvas(PaintingTools, QWidget):
    """Shows a Document's image and masks and edits its labels."""

    # image column, row (for a volume: of the plane in its stored voxel order, as
    # SliceView.voxel takes them); -1, -1 outside the image
    cursorMoved = Signal(int, int)
    zoomChanged = Signal(float)
    brushRadiusChanged = Signal(float)
    sliceChanged = Signal(int, int)  # plane index, number of planes (volumes)
    windowChanged = Signal(float, float)  # centre, width (volumes)
    readOnlyTouched = Signal()  # a tool was used on a document that cannot be edited
    labelPicked = Signal(int)  # the eyedropper clicked a pixel of this label (unlabelled included)
    wandToleranceChanged = Signal(float)  # the magic wand's tolerance, in the image's units
    scribbled = Signal(object, object, int)  # a Scribble stroke ended: region, mask (document axes), class

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setMouseTracking(True)
        self.setFocusPolicy(Qt.FocusPolicy.StrongFocus)
        self.setAttribute(Qt.WidgetAttribute.WA_OpaquePaintEvent)
        self.setMinimumSize(200, 200)
        self.document: Document | None = None
        self._unsubscribe: Callable[[], None] | None = None
        self.states = {name: LayerState(s.visible, s.opacity, s.outline) for name, s in DEFAULT_LAYERS.items()}
        self._pending_crf: list[tuple[slice, slice]] = []  # CRF layer bands still to recolour
        self._crf_turn_scheduled = False  # one chain of event-loop turns drains them
        self._image_buffer: np.ndarray | None = None
        self._image_qimage: QImage | None = None
        self._masks: dict[str, MaskLayer] = {}
        self._labels_shown: np.ndarray | None = None  # the document array the label layer wraps
        self._heatmap: HeatmapLayer | None = None
        self._lut = np.zeros((65536, 4), np.uint8)
        self._colormap = np.stack([np.arange(256, dtype=np.uint8)] * 3, axis=1)
        self.heatmap_index = 1
        self.zoom = 1.0
        self._pan = QPointF(0.0, 0.0)  # widget = image * zoom + pan
        # the view follows the window's size until the user zooms or pans
        self._fitted = True
        self.tool = Tool.BRUSH
        self.brush_radius = 8.0
        self.wand_tolerance, self.wand_maximum, self.wand_decimals = 25.0, 255.0, 0  # see painting.py
        self._wand_chosen: dict[tuple[str, bool], float] = {}  # the user's tolerance per image type
        self.active_class = 1
        self.accept_source = "prediction"
        #: brush, fill and polygon change unlabelled pixels only (the eraser is unaffected)
        self.paint_unlabelled_only = False
        self._space_down = False
        self._drag_origin: QPointF | None = None
        self._stroke_last: tuple[float, float] | None = None
        self._accept_dabs: list[tuple[Region, np.ndarray]] = []
        self._accept_path: list[QPointF] = []
        self._scribble_dabs: list[tuple[Region, np.ndarray]] = []
        self.polygon_points: list[tuple[float, float]] = []
        self._cursor: QPointF | None = None
        #: frames drawn so far (benchmarks check that a repaint really drew)
        self.frames_painted = 0
        #: the plane shown when the document is a volume
        self.slicer: SliceView | None = None
        self._window_drag: tuple[QPointF, tuple[float, float]] | None = None
        #: the crosshair's voxel (z, y, x) of a volume, drawn when set (View > Three views)
        self.crosshair: tuple[int, int, int] | None = None

    # -- document and layers -------------------------------------------------
    def set_document(self, document: Document | None, lut: np.ndarray) -> None:
        if self._unsubscribe is not None:
            self._unsubscribe()
            self._unsubscribe = None
        self._finish_interaction()
        self.document = document
        self._lut = lut
        self._masks.clear()
        self._heatmap = None
        self._image_buffer = self._image_qimage = None
        self.slicer = None
        self.crosshair = None
        if document is not None:
            if document.is_volume:
                self.slicer = SliceView.of_document(document)  # window and MONOCHROME1 inversion
            self._build_plane_layers()
            self._wand_for_document()
            self._unsubscribe = document.subscribe(self._on_document_changed)
            self.fit()
            if self.slicer is not None:
                self.sliceChanged.emit(self.slicer.index, self.slicer.count)
                if self.slicer.window is not None:
                    self.windowChanged.emit(*self.slicer.window)
        self.update()

    def _plane(self, array: np.ndarray) -> np.ndarray:
        """What the canvas shows of a document-shaped array (a view, oriented)."""
        return array if self.slicer is None else self.slicer.oriented(self.slicer.plane(array))

    def _build_plane_layers(self) -> None:
        """Image and label layers for the image, or the volume's current plane."""
        document = self.document
        if self.slicer is None:
            self._image_buffer = display_rgba(document.image)
        else:
            self._image_buffer = display_rgba(self.slicer.oriented(self.slicer.display(document.image)))
        self._image_qimage = wrap_rgba(self._image_buffer)
        self._labels_shown = document.labels
        self._masks["labels"] = MaskLayer(self._plane(document.labels), self._lut, self.states["labels"].outline)
        self.refresh_prediction()

    # -- volumes --------------------------------------------------------------
    def set_slice(self, index: int) -> None:
        if self.slicer is None or self.document is None:
            return
        index = self.slicer.clamp(index)
        if index == self.slicer.index:
            return
        self._finish_interaction()
        self.slicer.index = index
        self._build_plane_layers()
        self.sliceChanged.emit(index, self.slicer.count)
        self.update()

    def set_crosshair(self, voxel: tuple[int, int, int] | None) -> None:
        self.crosshair = None if voxel is None else tuple(int(v) for v in voxel)
        self.update()

    def step_slice(self, delta: int) -> None:
        if self.slicer is not None:
            self.set_slice(self.slicer.index + delta)

    def set_view_axis(self, axis: int) -> None:
        """0 axial, 1 coronal, 2 sagittal; starts in the middle plane."""
        if self.slicer is None or axis == self.slicer.axis:
            return
        self._finish_interaction()
        self.slicer.axis = axis
        self.slicer.index = self.slicer.count // 2
        self._build_plane_layers()
        self.fit()
        self.sliceChanged.emit(self.slicer.index, self.slicer.count)

    def set_window(self, center: float, width: float) -> None:
        if self.slicer is None or self.document is None:
            return
        self.slicer.window = (float(center), max(1.0, float(width)))
        self._image_buffer[:] = display_rgba(self.slicer.oriented(self.slicer.display(self.document.image)))
        self.windowChanged.emit(*self.slicer.window)
        self.update()

    def refresh_prediction(self) -> None:
        """Rebuild the prediction, CRF and heatmap layers from the document."""
        document = self.document
        self._masks.pop("prediction", None)
        self._masks.pop("crf", None)
        self._pending_crf.clear()
        self._heatmap = None
        if document is None:
            return
        if document.prediction is not None:
            self._masks["prediction"] = MaskLayer(
                self._plane(document.prediction.labels), self._lut, self.states["prediction"].outline
            )
            self._rebuild_heatmap()
        if document.crf_labels is not None:
            self._masks["crf"] = MaskLayer(self._plane(document.crf_labels), self._lut, self.states["crf"].outline)
        self.update()

    def refresh_crf(self, *, blank: bool = False) -> None:
        """Rebuild the CRF layer only (the prediction and heatmap stay);
        *blank*: the document's CRF labels are all unlabelled."""
        document = self.document
        self._masks.pop("crf", None)
        self._pending_crf.clear()
        if document is not None and document.crf_labels is not None:
            self._masks["crf"] = MaskLayer(self._plane(document.crf_labels), self._lut, self.states["crf"].outline,
                                           blank=blank)
        self.update()

    def refresh_crf_region(self, ys: slice, xs: slice) -> None:
        """Recolour a part of the CRF layer of a 2-D image (a finished CRF tile).

        A large part is recoloured in bands of rows, one per turn of the event
        loop, so that the window keeps answering (a whole 12000^2 slide takes
        seconds)."""
        layer = self._masks.get("crf")
        document = self.document
        if document is None or document.crf_labels is None:
            return
        if layer is None or layer.labels is not document.crf_labels or self.slicer is not None:
            self.refresh_crf()
            return
        band = max(1, RECOLOR_BAND_PIXELS // max(1, xs.stop - xs.start))
        self._pending_crf.extend((slice(y, min(ys.stop, y + band)), xs) for y in range(ys.start, ys.stop, band))
        if not self._crf_turn_scheduled:
            self._recolor_pending_crf()

    def _recolor_pending_crf(self) -> None:
        self._crf_turn_scheduled = False
        layer = self._masks.get("crf")
        if layer is None or not self._pending_crf:
            self._pending_crf.clear()
            return
        region = self._pending_crf.pop(0)
        self.update(self._widget_rect(*layer.recolor(region)))
        if self._pending_crf:
            self._crf_turn_scheduled = True
            QTimer.singleShot(0, self._recolor_pending_crf)

    def visible_box(self) -> tuple[tuple[int, int], tuple[int, int]] | None:
        """The rows and columns of a 2-D image in view, ``((y0, y1), (x0, x1))``; None for a volume."""
        if self.document is None or self.slicer is not None:
            return None
        height, width = self.image_size()
        top, left = self.to_image(QPointF(0, 0))
        bottom, right = self.to_image(QPointF(self.width(), self.height()))
        y0, y1 = max(0, int(math.floor(top))), min(height, int(math.ceil(bottom)))
        x0, x1 = max(0, int(math.floor(left))), min(width, int(math.ceil(right)))
        return ((y0, y1), (x0, x1)) if y1 > y0 and x1 > x0 else None

    def _rebuild_heatmap(self) -> None:
        prediction = self.document.prediction if self.document else None
        if prediction is None:
            self._heatmap = None
            return
        probabilities = prediction.probabilities
        if self.slicer is not None:
            probabilities = self.slicer.oriented_channels(self.slicer.channel_plane(probabilities))
        values = heatmap_values(probabilities, self.heatmap_index)
        if self._heatmap is None:
            self._heatmap = HeatmapLayer(values, self._colormap)
        else:
            self._heatmap.set_values(values, self._colormap)

    def set_class_lut(self, lut: np.ndarray) -> None:
        self._lut = lut
        for layer in self._masks.values():
            layer.set_lut(lut)
        self.update()

    def set_heatmap(self, index: int) -> None:
        """Show class ``index``'s probability; -1 shows the entropy."""
        self.heatmap_index = index
        self._rebuild_heatmap()
        self.update()

    def set_colormap(self, lut: np.ndarray) -> None:
        self._colormap = lut
        self._rebuild_heatmap()
        self.update()

    def set_layer_visible(self, name: str, visible: bool) -> None:
        self.states[name].visible = visible
        self.update()

    def set_layer_opacity(self, name: str, opacity: float) -> None:
        self.states[name].opacity = float(min(1.0, max(0.0, opacity)))
        self.update()

    def set_layer_outline(self, name: str, outline: bool) -> None:
        self.states[name].outline = outline
        if name in self._masks:
            self._masks[name].set_outline(outline)
        self.update()

    def layer_image(self, name: str) -> QImage | None:
        if name == "image":
            return self._image_qimage
        if name == "heatmap":
            return self._heatmap.qimage if self._heatmap else None
        layer = self._masks.get(name)
        return layer.qimage if layer else None

    def layer_buffer(self, name: str) -> np.ndarray | None:
        """The RGBA buffer behind a layer (for tests and screenshots)."""
        if name == "image":
            return self._image_buffer
        if name == "heatmap":
            return self._heatmap.buffer if self._heatmap else None
        layer = self._masks.get(name)
        return layer.buffer if layer else None

    def _on_document_changed(self, region: Region | None) -> None:
        labels = self._masks.get("labels")
        if labels is None:
            return
        if region is None:
            if self._labels_shown is not self.document.labels:
                # the label type changed (a class count crossing 254): a new array
                self._build_plane_layers()
            else:
                labels.recolor(None)
            self.update()
            return
        if self.slicer is not None:
            region = self.slicer.to_plane(region)
            if region is None:
                return  # another plane changed
            region, _ = self.slicer.flip_region(region)
        ys, xs = labels.recolor(region)
        self.update(self._widget_rect(ys, xs))

    # -- view transform ------------------------------------------------------
    def image_size(self) -> tuple[int, int]:
        """Rows and columns of what is shown (a volume's current plane)."""
        if self.document is None:
            return 0, 0
        return self._plane(self.document.labels).shape

    @property
    def aspect(self) -> float:
        return self.slicer.aspect if self.slicer is not None else 1.0

    def to_image(self, point: QPointF) -> tuple[float, float]:
        """Widget point -> image (row, column), as floats."""
        return (point.y() - self._pan.y()) / (self.zoom * self.aspect), (point.x() - self._pan.x()) / self.zoom

    def to_widget(self, row: float, column: float) -> QPointF:
        return QPointF(column * self.zoom + self._pan.x(), row * self.zoom * self.aspect + self._pan.y())

    def _widget_rect(self, ys: slice, xs: slice) -> QRect:
        top_left = self.to_widget(ys.start, xs.start)
        rect = QRectF(top_left.x(), top_left.y(), (xs.stop - xs.start) * self.zoom,
                      (ys.stop - ys.start) * self.zoom * self.aspect)
        return rect.toAlignedRect().adjusted(-2, -2, 2, 2)

    def fit(self) -> None:
        height, width = self.image_size()
        if not height or not width:
            return
        zoom = min(self.width() / width, self.height() / (height * self.aspect)) * 0.98
        self._set_zoom(zoom, anchor_widget=None)
        self._pan = QPointF((self.width() - width * self.zoom) / 2,
                            (self.height() - height * self.zoom * self.aspect) / 2)
        self._fitted = True
        self.update()

    def actual_size(self) -> None:
        """1:1, centred on the middle of the view."""
        self.zoom_at(1.0 / self.zoom, QPointF(self.width() / 2, self.height() / 2))

    def zoom_at(self, factor: float, anchor: QPointF) -> None:
        """Zoom by ``factor`` keeping the image point under ``anchor`` fixed."""
        row, column = self.to_image(anchor)
        self._fitted = False
        self._set_zoom(self.zoom * factor, anchor_widget=None)
        self._pan = QPointF(anchor.x() - column * self.zoom, anchor.y() - row * self.zoom * self.aspect)
        self.update()

    def _set_zoom(self, zoom: float, anchor_widget: QPointF | None) -> None:
        self.zoom = float(min(MAX_ZOOM, max(MIN_ZOOM, zoom)))
        self.zoomChanged.emit(self.zoom)

    # -- tools ----------------------------------------------------------------
    def set_tool(self, tool: Tool | str) -> None:
        self._finish_interaction()
        self.tool = Tool(tool)
        self._set_tool_cursor()
        self.update()

    def _set_tool_cursor(self) -> None:
        if self.tool is Tool.PAN:
            self.setCursor(Qt.CursorShape.OpenHandCursor)
        elif self.tool in (Tool.EYEDROPPER, Tool.WAND):
            self.setCursor(Qt.CursorShape.CrossCursor)
        else:
            self.unsetCursor()

    def set_brush_radius(self, radius: float) -> None:
        self.brush_radius = float(min(500.0, max(0.5, radius)))
        self.brushRadiusChanged.emit(self.brush_radius)
        self.update()

    def set_active_class(self, index: int) -> None:
        self.active_class = index

    def _finish_interaction(self) -> None:
        if self._stroke_last is not None and self.document is not None:
            self.document.end_stroke()
        self._stroke_last = None
        self._accept_dabs.clear()
        self._accept_path.clear()
        self.polygon_points.clear()

    # -- Qt events --------------------------------------------------------------
    def paintEvent(self, event) -> None:  # noqa: N802 (Qt override)
        self.frames_painted += 1
        painter = QPainter(self)
        painter.fillRect(event.rect(), QColor(38, 38, 42))
        if self.document is None:
            painter.setPen(QColor(170, 170, 170))
            painter.drawText(self.rect(), Qt.AlignmentFlag.AlignCenter, "Open images or a project (File menu)")
            return
        drawing.paint_layers(self, painter, event.rect())
        drawing.paint_overlays(self, painter)
        drawing.paint_orientation(painter, self.rect(), self.orientation_letters())

    def orientation_letters(self) -> tuple[str, str, str, str] | None:
        """Patient directions at the top, bottom, left and right of a volume's
        plane as shown (None for a 2-D image or a volume without patient frame)."""
        return self.slicer.letters if self.slicer is not None else None

    def _panning(self, event: QMouseEvent) -> bool:
        return event.buttons() & Qt.MouseButton.MiddleButton or (
            event.buttons() & Qt.MouseButton.LeftButton and (self._space_down or self.tool is Tool.PAN)
        )

    def mousePressEvent(self, event: QMouseEvent) -> None:  # noqa: N802
        self.setFocus()
        if self.document is None:
            return
        position = event.position()
        if self._panning(event):
            self._drag_origin = position
            self.setCursor(Qt.CursorShape.ClosedHandCursor)
            return
        if event.button() == Qt.MouseButton.RightButton and self.slicer is not None and self.slicer.window:
            # window/level as in radiology viewers: right-drag sideways = width, up/down = level
            self._window_drag = (position, self.slicer.window)
            return
        if event.button() != Qt.MouseButton.LeftButton:
            return
        self._press_tool(self.to_image(position), position)

    def mouseMoveEvent(self, event: QMouseEvent) -> None:  # noqa: N802
        position = event.position()
        previous = self._cursor
        self._cursor = position
        if self._window_drag is not None:
            origin, (center, width) = self._window_drag
            delta = position - origin
            step = max(width, 1.0) / 256.0
            self.set_window(center + delta.y() * step, max(1.0, width + delta.x() * 2 * step))
        elif self._drag_origin is not None:
            delta = position - self._drag_origin
            self._drag_origin = position
            self._pan += delta
            self._fitted = False
            self.update()
        elif self._stroke_last is not None and event.buttons() & Qt.MouseButton.LeftButton:
            self._dab(self.to_image(position))
            if self.tool is Tool.ACCEPT:
                self._accept_path.append(position)
                self.update()
        self._update_cursor_area(previous)
        row, column = self.to_image(position)
        height, width = self.image_size()
        if 0 <= row < height and 0 <= column < width:
            row, column = int(row), int(column)
            if self.slicer is not None:
                row, column = self.slicer.screen_to_plane(row, column)
            self.cursorMoved.emit(column, row)
        else:
            self.cursorMoved.emit(-1, -1)

    def _update_cursor_area(self, previous: QPointF | None) -> None:
        if self.polygon_points:
            self.update()
            return
        radius = int(self.brush_radius * self.zoom * max(1.0, self.aspect)) + 4
        for point in (previous, self._cursor):
            if point is not None:
                self.update(QRect(int(point.x()) - radius, int(point.y()) - radius, 2 * radius, 2 * radius))

    def mouseReleaseEvent(self, event: QMouseEvent) -> None:  # noqa: N802
        if self._window_drag is not None and event.button() == Qt.MouseButton.RightButton:
            self._window_drag = None
            return
        if self._drag_origin is not None:
            self._drag_origin = None
            self._set_tool_cursor()
            return
        if event.button() != Qt.MouseButton.LeftButton or self._stroke_last is None:
            return
        self._stroke_last = None
        if self.tool is Tool.ACCEPT:
            self._finish_accept()
            self.update()
        elif self.document is not None:
            self.document.end_stroke()
            if self.tool is Tool.SCRIBBLE:
                self._finish_scribble()

    def mouseDoubleClickEvent(self, event: QMouseEvent) -> None:  # noqa: N802
        if self.tool is Tool.POLYGON and event.button() == Qt.MouseButton.LeftButton:
            self.close_polygon()
        else:
            super().mouseDoubleClickEvent(event)

    def leaveEvent(self, event) -> None:  # noqa: N802
        previous, self._cursor = self._cursor, None
        self._update_cursor_area(previous)
        self.cursorMoved.emit(-1, -1)

    def wheelEvent(self, event: QWheelEvent) -> None:  # noqa: N802
        steps = event.angleDelta().y() / 120.0
        if not steps or self.document is None:
            return
        if event.modifiers() & Qt.KeyboardModifier.ControlModifier and self.slicer is not None:
            self.step_slice(1 if steps > 0 else -1)
        else:
            self.zoom_at(1.25**steps, event.position())

    def keyPressEvent(self, event: QKeyEvent) -> None:  # noqa: N802
        key = event.key()
        if key == Qt.Key.Key_Space and not event.isAutoRepeat():
            self._space_down = True
            self.setCursor(Qt.CursorShape.OpenHandCursor)
        elif key in (Qt.Key.Key_Return, Qt.Key.Key_Enter) and self.polygon_points:
            self.close_polygon()
        elif key == Qt.Key.Key_Escape and self.polygon_points:
            self.polygon_points.clear()
            self.update()
        elif key in (Qt.Key.Key_PageUp, Qt.Key.Key_PageDown) and self.slicer is not None:
            self.step_slice(1 if key == Qt.Key.Key_PageUp else -1)
        else:
            super().keyPressEvent(event)

    def keyReleaseEvent(self, event: QKeyEvent) -> None:  # noqa: N802
        if event.key() == Qt.Key.Key_Space and not event.isAutoRepeat():
            self._space_down = False
            self._set_tool_cursor()
        else:
            super().keyReleaseEvent(event)

    def resizeEvent(self, event) -> None:  # noqa: N802
        super().resizeEvent(event)
        if self._fitted or event.oldSize().width() <= 0:
            self.fit()
