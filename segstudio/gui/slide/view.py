"""The slide view: a whole-slide image drawn level by level, tile by tile, with its labels.

Only the tiles in view are drawn, from the pyramid level that fits the zoom
(at most one level pixel per screen pixel). They are read in a thread
(:class:`~segstudio.gui.slide.fetcher.TileFetcher`); until a tile arrives the
slide's overview (its coarsest useful level, kept in memory) stands in for
it, so a coarse picture is always there and sharpens as tiles come. The
labels and a model's prediction are drawn over it the same way, from their
chunked stores. A brush dab writes the labels and recolours, in place, just
the pixels of the cached label tiles under it, then repaints its rectangle.

Coordinates: ``widget = level0 * zoom + pan``.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Hashable
from enum import Enum

import numpy as np
from PySide6.QtCore import QPointF, QRect, QRectF, Qt, Signal
from PySide6.QtGui import QColor, QImage, QMouseEvent, QPainter, QPen, QWheelEvent
from PySide6.QtWidgets import QWidget

from segstudio.annotation.slide_document import SlideDocument
from segstudio.io.slide_tiles import (
    TileCache,
    display_mapper,
    image_tile,
    label_patch,
    label_tile,
    level0_box,
    TILE,
    rgba,
    tile_box,
    tiles_in_view,
)

LAYERS = ("prediction", "labels")  # drawn in this order, over the image
BACKGROUND = QColor(48, 48, 48)
#: The largest brush radius in level-0 pixels: a 12-pixel brush at the fit zoom of a
#: 100,000-pixel slide would otherwise paint a 3000-pixel disc per mouse move.
MAX_BRUSH_RADIUS = 512
#: A label tile with no label on it: cached (and drawn) as nothing.
EMPTY = np.zeros((1, 1, 4), np.uint8)
EMPTY.flags.writeable = False


class SlideTool(str, Enum):
    BRUSH = "brush"
    ERASER = "eraser"
    PAN = "pan"
    REGION = "region"  # drag a rectangle: the model runs inside it


def wrap(buffer: np.ndarray) -> QImage:
    """A QImage over an ``H x W x 4`` uint8 buffer (no copy: keep the buffer alive)."""
    height, width = buffer.shape[:2]
    return QImage(buffer.data, width, height, buffer.strides[0], QImage.Format.Format_RGBA8888)


class SlideView(QWidget):
    """Shows a :class:`SlideDocument` and paints its labels; see the module text."""

    viewChanged = Signal()  # zoom, pan or level changed
    cursorMoved = Signal(int, int)  # level-0 column, row (-1, -1 outside the slide)
    brushLimited = Signal(float)  # the brush was held to this radius (level-0 pixels): zoom in to paint wider
    edited = Signal()  # a stroke ended (one undo step more)
    regionDrawn = Signal(object)  # the REGION tool's rectangle, a level-0 box ((y0, y1), (x0, x1))
    tileFailed = Signal(object)  # an error reading a tile

    def __init__(self, document: SlideDocument, parent: QWidget | None = None, *,
                 cache_bytes: int | None = None) -> None:
        super().__init__(parent)
        from segstudio.gui.slide.fetcher import TileFetcher
        from segstudio.gui.slide.minimap import Minimap

        self.setMouseTracking(True)
        self.setFocusPolicy(Qt.FocusPolicy.StrongFocus)
        self.setAttribute(Qt.WidgetAttribute.WA_OpaquePaintEvent)
        self.setMinimumSize(200, 200)
        self.document = document
        slide = document.slide
        self.cache = TileCache(cache_bytes) if cache_bytes else TileCache()
        overview, self.overview_level = slide.thumbnail(1024)  # read once: the mapper is fitted on it too
        self._mapper = display_mapper(slide, overview)
        self._overview = rgba(self._mapper(overview))
        self._overview_image = wrap(self._overview)
        self.lut = document.classes.lut()
        self.visible = {"labels": True, "prediction": True}
        self.opacity = {"labels": 0.5, "prediction": 0.4}
        self._serial = 0  # counts changes of the label layers
        self._changes: deque[tuple[int, str, tuple]] = deque(maxlen=4096)  # (serial, layer, level-0 box)
        self.zoom, self._pan = 1.0, QPointF(0, 0)
        self._fitted = True
        self.tool = SlideTool.BRUSH
        self.active_class = 1
        self.brush_pixels = 12.0  # radius on screen: the brush keeps its size as the user zooms
        self.unlabelled_only = False
        self._stroke_last: tuple[float, float] | None = None
        self._drag: QPointF | None = None
        self._rubber: tuple[QPointF, QPointF] | None = None  # the REGION tool's rectangle being drawn
        self._space = False
        self._cursor: QPointF | None = None
        self.frames_painted = 0
        self._unsubscribe = document.subscribe(self._on_labels_changed)
        self.fetcher = TileFetcher(self._render, self.cache, lambda key: self._serial, self._changed_since, self)
        self.fetcher.ready.connect(self._on_tile_ready)
        self.fetcher.failed.connect(lambda _key, error: self.tileFailed.emit(error))
        self.minimap = Minimap(self)
        self.fit()

    # -- tiles -----------------------------------------------------------------
    def _render(self, key: Hashable) -> np.ndarray:
        """(In the fetcher's thread.) The RGBA buffer of ``(layer, TileKey)``; :data:`EMPTY`
        for a label tile without labels."""
        layer, tile = key
        document = self.document
        if layer == "image":
            return image_tile(document.slide, tile, self._mapper)
        store = document.labels if layer == "labels" else document.prediction
        buffer = label_tile(store, document.slide, tile, self.lut)
        return buffer if buffer[:, :, 3].any() else EMPTY

    def _changed_since(self, key: Hashable, serial: int) -> bool:
        """Whether the layer of ``key`` changed under its tile after change ``serial``."""
        changes = list(self._changes)
        if changes and changes[0][0] > serial + 1:
            return True  # older changes were forgotten: assume the worst
        box = level0_box(self.document.slide, key[1])
        return any(number > serial and layer == key[0] and _overlaps(changed, box)
                   for number, layer, changed in changes)

    def _on_tile_ready(self, key: Hashable) -> None:
        if key[1].level == self.level():
            self.update(self._widget_rect(level0_box(self.document.slide, key[1])).adjusted(-1, -1, 1, 1))

    def level(self) -> int:
        return self.document.slide.level_for(1.0 / self.zoom)

    def visible_box(self) -> tuple[tuple[float, float], tuple[float, float]]:
        """The level-0 box the widget shows (may reach past the slide)."""
        top_left, bottom_right = self.to_slide(QPointF(0, 0)), self.to_slide(QPointF(self.width(), self.height()))
        return (top_left[0], bottom_right[0]), (top_left[1], bottom_right[1])

    def _store(self, layer: str):
        return self.document.labels if layer == "labels" else self.document.prediction

    # -- coordinates -------------------------------------------------------------
    def to_slide(self, point: QPointF) -> tuple[float, float]:
        """Level-0 ``(row, column)`` under a widget point."""
        return (point.y() - self._pan.y()) / self.zoom, (point.x() - self._pan.x()) / self.zoom

    def to_widget(self, row: float, column: float) -> QPointF:
        return QPointF(column * self.zoom + self._pan.x(), row * self.zoom + self._pan.y())

    def _widget_rect(self, box) -> QRect:
        """The screen pixels of a level-0 box, edges rounded alike for every tile (no seams,
        and a tile at 100 % covers exactly its own size)."""
        (y0, y1), (x0, x1) = box
        a, b = self.to_widget(y0, x0), self.to_widget(y1, x1)
        left, top, right, bottom = round(a.x()), round(a.y()), round(b.x()), round(b.y())
        return QRect(left, top, right - left, bottom - top)

    def fit(self) -> None:
        """The whole slide in the window."""
        height, width = self.document.shape
        self.zoom = min(self.width() / width, self.height() / height)
        self._pan = QPointF((self.width() - width * self.zoom) / 2, (self.height() - height * self.zoom) / 2)
        self._fitted = True
        self._view_changed()

    def actual_size(self) -> None:
        """One level-0 pixel per screen pixel, around the view's centre."""
        self.zoom_at(1.0 / self.zoom, QPointF(self.width() / 2, self.height() / 2))

    def zoom_at(self, factor: float, anchor: QPointF) -> None:
        height, width = self.document.shape
        least = min(0.5 * min(self.width() / width, self.height() / height), 1.0)
        zoom = min(max(self.zoom * factor, least), 32.0)
        row, column = self.to_slide(anchor)
        self.zoom = zoom
        self._pan = QPointF(anchor.x() - column * zoom, anchor.y() - row * zoom)
        self._fitted = False
        self._view_changed()

    def center_on(self, row: float, column: float) -> None:
        self._pan = QPointF(self.width() / 2 - column * self.zoom, self.height() / 2 - row * self.zoom)
        self._fitted = False
        self._view_changed()

    def pan_by(self, dx: float, dy: float) -> None:
        self._pan += QPointF(dx, dy)
        self._fitted = False
        self._view_changed()

    def _view_changed(self) -> None:
        self.update()
        self.minimap.update()
        self.viewChanged.emit()

    # -- layers ----------------------------------------------------------------
    def set_layer_visible(self, layer: str, visible: bool) -> None:
        self.visible[layer] = bool(visible)
        self.update()

    def set_opacity(self, percent: int) -> None:
        """The labels' opacity (0-100); the prediction is drawn at four fifths of it."""
        self.opacity = {"labels": percent / 100, "prediction": 0.8 * percent / 100}
        self.update()

    def set_lut(self, lut: np.ndarray) -> None:
        self.lut = lut
        height, width = self.document.shape
        for layer in LAYERS:  # a label tile being coloured with the old table is not kept
            self._record(layer, ((0, height), (0, width)))
        self.cache.discard(lambda key: key[0] != "image")
        self.update()

    def prediction_changed(self, box) -> None:
        """A model run wrote ``box`` (level 0) of the prediction: its tiles are patched."""
        if self.document.prediction is not None:
            self.document.prediction.forget_listing()  # the run wrote new chunk files
            self._on_store_changed("prediction", box)

    def _on_labels_changed(self, box) -> None:
        self._on_store_changed("labels", box)

    def _record(self, layer: str, box) -> None:
        self._serial += 1
        self._changes.append((self._serial, layer, box))

    def _on_store_changed(self, layer: str, box) -> None:
        """Recolour, in place, the pixels under ``box`` of the layer's cached tiles (microseconds
        for a dab; a tile being read meanwhile is read again) and repaint that rectangle."""
        self._record(layer, box)
        slide = self.document.slide
        store = self._store(layer)
        for key in self.cache.keys():
            if key[0] != layer or not _overlaps(level0_box(slide, key[1]), box):
                continue
            buffer = self.cache.get(key)
            found = label_patch(store, slide, key[1], box)
            if buffer is None or found is None:
                continue
            rows, columns, values = found
            if buffer is EMPTY:
                (y0, y1), (x0, x1) = tile_box(slide, key[1])
                buffer = np.zeros((y1 - y0, x1 - x0, 4), np.uint8)
                self.cache.put(key, buffer)
            buffer[rows, columns] = self.lut[values]
        self.update(self._widget_rect(box).adjusted(-2, -2, 2, 2))

    # -- painting ----------------------------------------------------------------
    def paintEvent(self, event) -> None:  # noqa: N802 (Qt override)
        painter = QPainter(self)
        painter.fillRect(event.rect(), BACKGROUND)
        slide = self.document.slide
        height, width = slide.shape
        painter.setRenderHint(QPainter.RenderHint.SmoothPixmapTransform, self.zoom < 1)
        level = self.level()
        keys = tiles_in_view(slide, level, self.visible_box())
        layers = 1 + sum(self.visible[name] and self._store(name) is not None for name in LAYERS)
        self.cache.max_bytes = max(self.cache.max_bytes, 2 * len(keys) * layers * TILE * TILE * 4)  # a view fits
        if not all(("image", key) in self.cache for key in keys):  # the overview stands in for missing tiles
            painter.drawImage(self._widget_rect(((0, height), (0, width))), self._overview_image)
        missing: list[Hashable] = []
        for layer in ("image", *LAYERS):
            if layer != "image" and (not self.visible[layer] or self._store(layer) is None):
                continue
            painter.setOpacity(1.0 if layer == "image" else self.opacity[layer])
            for key in keys:
                buffer = self.cache.get((layer, key))
                target = self._widget_rect(level0_box(slide, key))
                if buffer is None:
                    missing.append((layer, key))
                elif buffer is not EMPTY and target.intersects(event.rect()):
                    painter.drawImage(target, wrap(buffer))
        painter.setOpacity(1.0)
        self._paint_scale_bar(painter)
        self._paint_brush(painter)
        if self._rubber is not None:
            painter.setPen(QPen(QColor(255, 220, 0), 2, Qt.PenStyle.DashLine))
            painter.setBrush(Qt.BrushStyle.NoBrush)
            painter.drawRect(QRectF(*self._rubber).normalized())
        painter.end()
        self.frames_painted += 1
        self.fetcher.want(missing)  # image tiles before the overlays, nearest the centre first; no others

    def _paint_scale_bar(self, painter: QPainter) -> None:
        """A scale bar in the bottom-left corner when the slide states its pixel size."""
        microns = self.document.slide.microns_per_pixel
        if microns is None:
            return
        length, label = scale_bar(microns[1] / self.zoom)
        width = round(length / (microns[1] / self.zoom))
        left, bottom = 16, self.height() - 16
        painter.setRenderHint(QPainter.RenderHint.Antialiasing, False)
        painter.fillRect(QRect(left - 6, bottom - 26, width + 12, 32), QColor(0, 0, 0, 140))
        painter.fillRect(QRect(left, bottom - 4, width, 4), QColor(255, 255, 255))
        painter.setPen(QColor(255, 255, 255))
        painter.drawText(QRect(left, bottom - 24, max(width, 80), 18), Qt.AlignmentFlag.AlignLeft, label)

    def _paint_brush(self, painter: QPainter) -> None:
        if self._cursor is None or self.tool in (SlideTool.PAN, SlideTool.REGION):
            return
        painter.setRenderHint(QPainter.RenderHint.Antialiasing)
        painter.setPen(QPen(QColor(255, 255, 255, 200), 1))
        painter.setBrush(Qt.BrushStyle.NoBrush)
        radius = self._brush_radius() * self.zoom  # what the brush paints, held to its limit
        painter.drawEllipse(self._cursor, radius, radius)

    # -- tools -------------------------------------------------------------------
    def set_tool(self, tool: SlideTool | str) -> None:
        self.tool = SlideTool(tool)
        self.setCursor(Qt.CursorShape.OpenHandCursor if self.tool == SlideTool.PAN else Qt.CursorShape.CrossCursor)
        self.update()

    def set_brush_pixels(self, radius: float) -> None:
        self.brush_pixels = float(min(max(radius, 1.0), 400.0))
        self.update()

    def _brush_radius(self) -> float:
        """The brush radius in level-0 pixels at this zoom (at most :data:`MAX_BRUSH_RADIUS`)."""
        return min(max(0.5, self.brush_pixels / self.zoom), MAX_BRUSH_RADIUS)

    def _paint_to(self, point: tuple[float, float]) -> None:
        document = self.document
        value = self.active_class if self.tool == SlideTool.BRUSH else int(document.labels.unlabelled)
        start = self._stroke_last or point
        document.paint_segment(start, point, self._brush_radius(), value,
                               unlabelled_only=self.unlabelled_only and self.tool == SlideTool.BRUSH)
        self._stroke_last = point

    def finish_stroke(self) -> None:
        if self.document.painting:
            self._stroke_last = None
            if self.document.end_stroke():
                self.edited.emit()

    def mousePressEvent(self, event: QMouseEvent) -> None:  # noqa: N802
        pans = (event.button() in (Qt.MouseButton.MiddleButton, Qt.MouseButton.RightButton)
                or (event.button() == Qt.MouseButton.LeftButton and (self.tool == SlideTool.PAN or self._space)))
        if pans:
            self._drag = event.position()
            self.setCursor(Qt.CursorShape.ClosedHandCursor)
        elif event.button() == Qt.MouseButton.LeftButton and self.tool == SlideTool.REGION:
            self._rubber = (event.position(), event.position())
        elif event.button() == Qt.MouseButton.LeftButton:
            self.document.begin_stroke("brush" if self.tool == SlideTool.BRUSH else "eraser")
            self._stroke_last = None
            if self.brush_pixels / self.zoom > MAX_BRUSH_RADIUS:
                self.brushLimited.emit(float(MAX_BRUSH_RADIUS))
            self._paint_to(self.to_slide(event.position()))

    def mouseMoveEvent(self, event: QMouseEvent) -> None:  # noqa: N802
        position = event.position()
        previous, self._cursor = self._cursor, position
        if self._drag is not None:
            delta = position - self._drag
            self._drag = position
            self.pan_by(delta.x(), delta.y())
        elif self.document.painting and event.buttons() & Qt.MouseButton.LeftButton:
            self._paint_to(self.to_slide(position))
        elif self.document.painting:  # the release went elsewhere (a dialog came up mid-stroke)
            self.finish_stroke()
        elif self._rubber is not None:
            self._rubber = (self._rubber[0], position)
            self.update()
        if previous is not None and self.tool not in (SlideTool.PAN, SlideTool.REGION):
            r = int(self.brush_pixels) + 3
            for point in (previous, position):
                self.update(QRect(int(point.x()) - r, int(point.y()) - r, 2 * r, 2 * r))
        row, column = self.to_slide(position)
        height, width = self.document.shape
        inside = 0 <= row < height and 0 <= column < width
        self.cursorMoved.emit(int(column) if inside else -1, int(row) if inside else -1)

    def mouseReleaseEvent(self, event: QMouseEvent) -> None:  # noqa: N802
        if self._drag is not None:
            self._drag = None
            self.set_tool(self.tool)
        elif self._rubber is not None and event.button() == Qt.MouseButton.LeftButton:
            (row0, column0), (row1, column1) = self.to_slide(self._rubber[0]), self.to_slide(event.position())
            self._rubber = None
            self.update()
            height, width = self.document.shape
            box = ((max(0, int(min(row0, row1))), min(height, int(max(row0, row1)) + 1)),
                   (max(0, int(min(column0, column1))), min(width, int(max(column0, column1)) + 1)))
            if box[0][1] - box[0][0] > 1 and box[1][1] - box[1][0] > 1:  # a click is no rectangle
                self.regionDrawn.emit(box)
        elif event.button() == Qt.MouseButton.LeftButton:
            self.finish_stroke()

    def leaveEvent(self, event) -> None:  # noqa: N802
        self._cursor = None
        self.update()

    def wheelEvent(self, event: QWheelEvent) -> None:  # noqa: N802
        steps = event.angleDelta().y() / 120
        if steps:
            self.zoom_at(1.25 ** steps, event.position())

    def keyPressEvent(self, event) -> None:  # noqa: N802
        if event.key() == Qt.Key.Key_Space and not event.isAutoRepeat():
            self._space = True
            self.setCursor(Qt.CursorShape.OpenHandCursor)
            return
        arrows = {Qt.Key.Key_Left: (1, 0), Qt.Key.Key_Right: (-1, 0), Qt.Key.Key_Up: (0, 1), Qt.Key.Key_Down: (0, -1)}
        if event.key() in arrows:
            dx, dy = arrows[event.key()]
            self.pan_by(dx * self.width() / 4, dy * self.height() / 4)
            return
        super().keyPressEvent(event)

    def keyReleaseEvent(self, event) -> None:  # noqa: N802
        if event.key() == Qt.Key.Key_Space and not event.isAutoRepeat():
            self._space = False
            self.set_tool(self.tool)
            return
        super().keyReleaseEvent(event)

    def resizeEvent(self, event) -> None:  # noqa: N802
        self.minimap.place()
        if self._fitted:
            self.fit()

    def close_view(self) -> None:
        """Stop the reading thread (before the document closes its file)."""
        self._unsubscribe()
        self.fetcher.stop()


def scale_bar(microns_per_screen_pixel: float, target_pixels: float = 120) -> tuple[float, str]:
    """A round length (1, 2 or 5 x 10^k µm) near ``target_pixels`` on screen, and its label."""
    wanted = microns_per_screen_pixel * target_pixels
    power = 10 ** np.floor(np.log10(wanted))
    length = min((step * power for step in (1, 2, 5, 10)), key=lambda value: abs(value - wanted))
    if length >= 1000:
        return length, f"{length / 1000:g} mm"
    return length, f"{length:g} µm"


def _overlaps(a, b) -> bool:
    (ay0, ay1), (ax0, ax1) = a
    (by0, by1), (bx0, bx1) = b
    return ay0 < by1 and by0 < ay1 and ax0 < bx1 and bx0 < ax1
