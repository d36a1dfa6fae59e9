"""What the canvas's tools do to the labels: brush, eraser and scribble
strokes, fill, magic wand, polygon, accept-in-region and the eyedropper.
A scribble stroke paints like the brush and is then reported (``scribbled``)
for the window to refine the prediction with (``segstudio.gui.scribbles``).

A mixin of :class:`~segstudio.gui.canvas.view.Canvas`: the Qt events live
there and hand a left press to :meth:`PaintingTools._press_tool`. Every tool
works on the plane as shown and goes through ``_to_document`` to the
document's own axes, and every change goes through the Document (its
history and listeners).
"""

from __future__ import annotations

import math

import numpy as np
from PySide6.QtCore import QPointF

from segstudio.annotation import tools
from segstudio.gui.canvas.tool import Tool


class PaintingTools:
    """The label-changing half of the canvas (needs the Canvas's state)."""

    def set_paint_unlabelled_only(self, enabled: bool) -> None:
        self.paint_unlabelled_only = bool(enabled)

    def set_wand_tolerance(self, tolerance: float) -> None:
        """The magic wand's tolerance, in the image's own units (raw values:
        Hounsfield units for CT); remembered for images of this type."""
        tolerance = float(tolerance)
        if not math.isfinite(tolerance):
            return
        self.wand_tolerance = max(0.0, tolerance)
        if self.document is not None:
            self._wand_chosen[self._wand_image_type()] = self.wand_tolerance
        self.wandToleranceChanged.emit(self.wand_tolerance)

    def _wand_image_type(self) -> tuple[str, bool]:
        return self.document.image.dtype.name, self.document.is_volume

    def _wand_for_document(self) -> None:
        """A new document: the tolerance the user chose for images of its
        type, else a tenth of its intensity range; the largest useful value
        and the decimals that suit its values (for the tool bar's box)."""
        image = self.document.image
        scale = tools.intensity_range(image)
        scale = scale if math.isfinite(scale) else 0.0  # float64 values spanning -1e308..1e308
        chosen = self._wand_chosen.get(self._wand_image_type())
        self.wand_tolerance = tools.default_tolerance(image) if chosen is None else chosen
        self.wand_maximum = max(1.0, scale, self.wand_tolerance)
        if np.issubdtype(image.dtype, np.integer) or image.dtype == bool:
            self.wand_decimals = 0
        else:  # two significant digits of a tenth of the range: 0.1 of 0..1 -> 3 decimals
            self.wand_decimals = min(6, max(0, 2 - math.floor(math.log10(scale / 10)))) if scale > 0 else 3
        self.wandToleranceChanged.emit(self.wand_tolerance)

    def _keep_unlabelled(self, found):
        """A brush, fill, wand or polygon footprint on the shown plane, narrowed to
        unlabelled pixels when that option is on."""
        if found is None or not self.paint_unlabelled_only or self.document is None:
            return found
        return tools.only_unlabelled(found, self._plane(self.document.labels), self.document.unlabelled)

    def _to_document(self, region, mask):
        """A tool's region and mask on the shown plane, in the document's axes."""
        if self.slicer is None:
            return region, mask
        return self.slicer.to_volume(*self.slicer.flip_region(region, mask))

    def _dab(self, position: tuple[float, float]) -> None:
        document = self.document
        last = self._stroke_last or position
        found = tools.stroke_segment(last, position, self.brush_radius, self.image_size())
        self._stroke_last = position
        if found is None:
            return
        if self.tool in (Tool.BRUSH, Tool.SCRIBBLE):
            found = self._keep_unlabelled(found)
            if found is None:
                return
        region, mask = found
        if self.tool is Tool.ACCEPT:
            self._accept_dabs.append((region, mask))
            return
        if self.tool is Tool.SCRIBBLE:
            self._scribble_dabs.append((region, mask))
        value = self.document.unlabelled if self.tool is Tool.ERASER else self.active_class
        document.paint(*self._to_document(region, mask), value)

    def _finish_accept(self) -> None:
        dabs, self._accept_dabs = self._accept_dabs, []
        self._accept_path.clear()
        if not dabs or self.document is None:
            return
        region, mask = self._to_document(*_merge_dabs(dabs))
        self.document.accept(self.accept_source, region=region, mask=mask)

    def _finish_scribble(self) -> None:
        """A Scribble stroke ended (its labels are one undo step already): tell
        the window where it went, in the document's axes, with its class."""
        dabs, self._scribble_dabs = self._scribble_dabs, []
        if dabs and self.document is not None:
            self.scribbled.emit(*self._to_document(*_merge_dabs(dabs)), self.active_class)

    def close_polygon(self) -> bool:
        """Fill the polygon drawn so far with the active class."""
        points, self.polygon_points = self.polygon_points, []
        self.update()
        if self.document is None or len(points) < 3:
            return False
        found = self._keep_unlabelled(tools.polygon(points, self.image_size()))
        if found is None:
            return False
        return self.document.apply(*self._to_document(*found), self.active_class, "Polygon")

    def _pick_label(self, row: float, column: float) -> None:
        y, x = math.floor(row), math.floor(column)
        height, width = self.image_size()
        if 0 <= y < height and 0 <= x < width:
            self.labelPicked.emit(int(self._plane(self.document.labels)[y, x]))

    def _press_tool(self, point: tuple[float, float], position: QPointF) -> None:
        """A left press at image point *point* (widget *position*) with the current tool."""
        row, column = point
        if self.tool is Tool.EYEDROPPER:  # reads only: works on a read-only document too
            self._pick_label(row, column)
            return
        if self.document.read_only:
            self.readOnlyTouched.emit()
            return
        if self.tool in (Tool.BRUSH, Tool.ERASER, Tool.SCRIBBLE):
            self.document.begin_stroke(self.tool.value.capitalize())  # "Brush", "Eraser", "Scribble"
            self._stroke_last = None
            self._scribble_dabs = []
            self._dab((row, column))
        elif self.tool is Tool.ACCEPT:
            self._stroke_last = None
            self._accept_path = [position]
            self._dab((row, column))
            self.update()
        elif self.tool is Tool.FILL:
            y, x = int(math.floor(row)), int(math.floor(column))
            height, width = self.image_size()
            if 0 <= y < height and 0 <= x < width:
                plane = np.ascontiguousarray(self._plane(self.document.labels))
                found = self._keep_unlabelled(tools.flood_fill(plane, (y, x)))
                if found is not None:
                    self.document.apply(*self._to_document(*found), self.active_class, "Fill")
        elif self.tool is Tool.WAND:
            # the raw values of the plane as shown (not the display window), so
            # the mask lines up with the labels' plane; outside the image: None
            image = self._plane(self.document.image)
            found = self._keep_unlabelled(tools.magic_wand(image, (row, column), self.wand_tolerance))
            if found is not None:
                self.document.apply(*self._to_document(*found), self.active_class, "Magic wand")
        elif self.tool is Tool.POLYGON:
            self.polygon_points.append((row, column))
            self.update()


def _merge_dabs(dabs):
    """One (region, mask) covering every dab of a stroke (region and mask pairs on one plane)."""
    top = min(r[0].start for r, _ in dabs)
    bottom = max(r[0].stop for r, _ in dabs)
    left = min(r[1].start for r, _ in dabs)
    right = max(r[1].stop for r, _ in dabs)
    mask = np.zeros((bottom - top, right - left), bool)
    for (ys, xs), dab in dabs:
        mask[ys.start - top : ys.stop - top, xs.start - left : xs.stop - left] |= dab
    return (slice(top, bottom), slice(left, right)), mask
