"""The whole-slide window: view, paint and predict a slide, its labels saved chunk by chunk.

Opened from the studio (File > Open whole-slide image…, or any pyramidal
TIFF / SVS opened as an image). The labels are saved by autosave a moment
after each stroke, writing only the chunks it touched, in a thread (the
brush never waits on the disk), and when the window closes. The model of the
studio's Model dock runs on the view or the whole slide in a worker, tile by
tile, into the slide's prediction store; tiles appear as they finish, and a
run stopped half way resumes where it stopped.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from functools import partial
from pathlib import Path
from typing import Any

from PySide6.QtCore import QEventLoop, Qt, QTimer, Signal
from PySide6.QtGui import QAction, QActionGroup, QColor, QIcon, QKeySequence, QPixmap
from PySide6.QtWidgets import (
    QComboBox,
    QFileDialog,
    QLabel,
    QMainWindow,
    QMessageBox,
    QProgressBar,
    QSlider,
    QSpinBox,
    QWidget,
)

from segstudio.annotation.slide_document import PREDICTION, SlideDocument
from segstudio.errors import InvalidArgumentError, SegstudioError
from segstudio.gui.dialogs.errors import show_error
from segstudio.gui.studio_actions import show_shortcuts
from segstudio.gui.slide.view import SlideTool, SlideView
from segstudio.gui.workers import RunningTask
from segstudio.tasks import Progress

log = logging.getLogger(__name__)

AUTOSAVE_MS = 1500
SLIDE_GESTURES = (
    ("Wheel", "Zoom at the cursor"),
    ("Space+drag, middle or right drag, arrow keys", "Pan (any tool)"),
    ("Click or drag on the overview", "Move the view there"),
)


class SlideWindow(QMainWindow):
    """A window on one :class:`SlideDocument` (see the module text)."""

    saved = Signal(int, int)  # chunks, bytes written by a save
    saveFailed = Signal(object, object)  # the error, the snapshot that was not written
    closed = Signal()  # the window closed, its labels saved

    def __init__(self, document: SlideDocument, model_settings: Callable[[], dict[str, Any]] | None = None,
                 parent: QWidget | None = None, *,
                 crf_settings: Callable[[], tuple[Any, dict[str, Any]]] | None = None) -> None:
        """``model_settings``: the studio Model dock's settings, read at each run;
        ``crf_settings``: the CRF dock's ``(CRFParams, refine options)``, for Refine with the CRF."""
        super().__init__(parent)
        self.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
        self.document = document
        self.model_settings = model_settings
        self.crf_settings = crf_settings
        self.view = SlideView(document, self)
        self.setCentralWidget(self.view)
        self.actions_by_name: dict[str, QAction] = {}
        self.run_task: RunningTask | None = None
        self.last_error: Any = None
        self._writer = ThreadPoolExecutor(1, thread_name_prefix="slide autosave")
        self._pending: Future | None = None
        self._write_lock = threading.Lock()
        self._save_failing = False  # an autosave failed: its dialog is not shown again until one succeeds
        self._saves = 0  # counts save() calls: an autosave failure from before one is already handled
        self._autosave = QTimer(self, singleShot=True, interval=AUTOSAVE_MS)
        self._autosave.timeout.connect(self.save_in_background)
        self._build_toolbar()
        self._build_menus()
        self._build_status()
        self.view.edited.connect(self._on_edited)
        self.view.regionDrawn.connect(lambda box: self.run_model(region=box))
        self.view.viewChanged.connect(self._describe_view)
        self.view.cursorMoved.connect(self._describe_cursor)
        self.view.brushLimited.connect(lambda radius: self.statusBar().showMessage(
            f"the brush paints at most {radius:.0f} slide pixels wide at a time: zoom in for finer work, "
            "or paint in several strokes", 5000))
        self.view.tileFailed.connect(lambda error: self.statusBar().showMessage(f"a tile cannot be read: {error}", 8000))
        self.saved.connect(self._on_saved)
        self.saveFailed.connect(self._on_save_failed)
        slide = document.slide
        self.setWindowTitle(f"{slide.path.name} ({slide.shape[1]:,} x {slide.shape[0]:,}) – segstudio")
        self.resize(1400, 900)
        self._update_undo()
        self._describe_view()

    # -- building --------------------------------------------------------------
    def _action(self, name: str, text: str, slot, shortcut=None, *, checkable: bool = False) -> QAction:
        action = QAction(text, self)
        action.setObjectName(name)
        if shortcut:
            action.setShortcut(QKeySequence(shortcut))
        action.setCheckable(checkable)
        action.triggered.connect(slot)
        self.addAction(action)
        self.actions_by_name[name] = action
        return action

    def _build_toolbar(self) -> None:
        bar = self.addToolBar("Slide tools")
        bar.setObjectName("slide_tools")
        group = QActionGroup(self)
        for tool, text, key in ((SlideTool.BRUSH, "Brush", "B"), (SlideTool.ERASER, "Eraser", "E"),
                                (SlideTool.PAN, "Pan", "H"),
                                (SlideTool.REGION, "Model in a rectangle", "R")):
            action = self._action(f"tool_{tool.value}", text, partial(self.set_tool, tool), key, checkable=True)
            group.addAction(action)
            bar.addAction(action)
        self.actions_by_name["tool_brush"].setChecked(True)
        bar.addSeparator()
        bar.addWidget(QLabel(" Class "))
        self.class_box = QComboBox()
        self.class_box.setToolTip("The class the brush paints (keys 1-9)")
        self._fill_classes()
        self.class_box.currentIndexChanged.connect(self._on_class_chosen)
        bar.addWidget(self.class_box)
        bar.addWidget(QLabel(" Brush "))
        self.size_box = QSpinBox()
        self.size_box.setRange(1, 400)
        self.size_box.setSuffix(" px")
        self.size_box.setToolTip("Brush radius on screen ([ and ]); it keeps its size on screen as you zoom")
        self.size_box.setValue(int(self.view.brush_pixels))
        self.size_box.valueChanged.connect(self.view.set_brush_pixels)
        bar.addWidget(self.size_box)
        bar.addWidget(QLabel(" Opacity "))
        self.opacity_slider = QSlider(Qt.Orientation.Horizontal)
        self.opacity_slider.setRange(0, 100)
        self.opacity_slider.setMaximumWidth(120)
        self.opacity_slider.setValue(round(self.view.opacity["labels"] * 100))
        self.opacity_slider.setToolTip("Opacity of the labels (the prediction is drawn a little fainter)")
        self.opacity_slider.valueChanged.connect(self.view.set_opacity)
        bar.addWidget(self.opacity_slider)

    def _build_menus(self) -> None:
        menus = self.menuBar()
        file_menu = menus.addMenu("&File")
        file_menu.addAction(self._action("save", "Save labels", lambda: self.save(), QKeySequence.StandardKey.Save))
        file_menu.addAction(self._action("export", "Export labels as pyramidal OME-TIFF…",
                                         lambda: self.export_labels("ome-tiff"), "Ctrl+E"))
        file_menu.addAction(self._action("export_geojson", "Export labels as GeoJSON polygons (QuPath)…",
                                         lambda: self.export_labels("geojson"), "Ctrl+Shift+E"))
        file_menu.addAction(self._action("export_view", "Export the labels in view as an indexed PNG…",
                                         lambda: self.export_view()))
        file_menu.addSeparator()
        file_menu.addAction(self._action("close", "Close slide", self.close, QKeySequence.StandardKey.Close))
        edit = menus.addMenu("&Edit")
        edit.addAction(self._action("undo", "Undo", self.undo, QKeySequence.StandardKey.Undo))
        edit.addAction(self._action("redo", "Redo", self.redo, "Ctrl+Shift+Z"))
        edit.addSeparator()
        edit.addAction(self._action("accept", "Accept prediction in view", self.accept_in_view, "Ctrl+Shift+A"))
        edit.addAction(self._action("unlabelled_only", "Paint only unlabelled pixels",
                                    lambda on: setattr(self.view, "unlabelled_only", on), "U", checkable=True))
        edit.addAction(self._action("brush_smaller", "Brush smaller",
                                    lambda: self.size_box.setValue(max(1, round(self.size_box.value() / 1.25))), "["))
        edit.addAction(self._action("brush_larger", "Brush larger",
                                    lambda: self.size_box.setValue(round(self.size_box.value() * 1.25) + 1), "]"))
        for number in range(1, 10):
            self._action(f"class_{number}", f"Class {number}", partial(self.set_active_class, number - 1), str(number))
        view = menus.addMenu("&View")
        view.addAction(self._action("fit", "Fit to window", self.view.fit, "Ctrl+0"))
        view.addAction(self._action("actual", "Actual size (1:1)", self.view.actual_size, "Ctrl+1"))
        view.addAction(self._action("zoom_in", "Zoom in", lambda: self._zoom(1.5), QKeySequence.StandardKey.ZoomIn))
        view.addAction(self._action("zoom_out", "Zoom out", lambda: self._zoom(1 / 1.5),
                                    QKeySequence.StandardKey.ZoomOut))
        view.addSeparator()
        for name, text, key in (("labels", "Labels", "L"), ("prediction", "Prediction", "P")):
            action = self._action(f"show_{name}", f"Show {text.lower()}",
                                  lambda on, name=name: self.view.set_layer_visible(name, on), key, checkable=True)
            action.setChecked(True)
            view.addAction(action)
        overview = self._action("overview", "Overview", lambda on: self.view.minimap.setVisible(on), "M",
                                checkable=True)
        overview.setChecked(True)
        view.addAction(overview)
        model = menus.addMenu("&Model")
        model.addAction(self._action("run_view", "Run on the view", lambda: self.run_model(), "Ctrl+R"))
        model.addAction(self._action("run_slide", "Run on the whole slide (skips the glass)",
                                     lambda: self.run_model(whole=True), "Ctrl+Shift+R"))
        model.addAction(self._action("cancel", "Cancel run", self.cancel_run, "Ctrl+."))
        model.addSeparator()
        crf = self._action("with_crf", "Refine each tile with the CRF (CRF dock settings)", lambda on: None,
                           checkable=True)
        crf.setEnabled(self.crf_settings is not None)
        model.addAction(crf)
        help_menu = menus.addMenu("&Help")
        help_menu.addAction(self._action("shortcuts", "Keyboard shortcuts",
                                         lambda: show_shortcuts(self, SLIDE_GESTURES), "F1"))

    def _build_status(self) -> None:
        status = self.statusBar()
        self.view_label, self.cursor_label, self.save_label = QLabel(), QLabel(), QLabel("saved")
        self.progress = QProgressBar()
        self.progress.setMaximumWidth(220)
        self.progress.hide()
        for widget in (self.cursor_label, self.view_label, self.progress, self.save_label):
            status.addPermanentWidget(widget)

    def _fill_classes(self) -> None:
        self.class_box.blockSignals(True)
        self.class_box.clear()
        for number, item in enumerate(self.document.classes):
            swatch = QPixmap(12, 12)
            swatch.fill(QColor(*item.color))
            self.class_box.addItem(QIcon(swatch), f"{number + 1} {item.name}")
        self.class_box.setCurrentIndex(min(self.view.active_class, len(self.document.classes) - 1))
        self.class_box.blockSignals(False)

    # -- tools and classes ---------------------------------------------------------
    def set_tool(self, tool: SlideTool) -> None:
        self.view.set_tool(tool)
        self.actions_by_name[f"tool_{SlideTool(tool).value}"].setChecked(True)

    def set_active_class(self, index: int) -> None:
        if 0 <= index < len(self.document.classes):
            self.class_box.setCurrentIndex(index)

    def _on_class_chosen(self, index: int) -> None:
        self.view.active_class = index
        if self.view.tool == SlideTool.ERASER:
            self.set_tool(SlideTool.BRUSH)

    def _zoom(self, factor: float) -> None:
        self.view.zoom_at(factor, self.view.rect().center().toPointF())

    # -- editing and saving ------------------------------------------------------
    def _on_edited(self) -> None:
        self._update_undo()
        self.save_label.setText("unsaved")
        self._autosave.start()

    def undo(self) -> None:
        self.view.finish_stroke()
        if self.document.undo() is not None:
            self._on_edited()

    def redo(self) -> None:
        if self.document.redo() is not None:
            self._on_edited()

    def _update_undo(self) -> None:
        history = self.document.history
        for name, text, enabled in (("undo", history.undo_description, history.can_undo),
                                    ("redo", history.redo_description, history.can_redo)):
            action = self.actions_by_name[name]
            action.setEnabled(enabled)
            action.setText(f"{name.title()} {text}" if text else name.title())

    def accept_in_view(self) -> None:
        (y0, y1), (x0, x1) = self.view.visible_box()
        try:
            box = self.document.accept_prediction(((int(y0), int(y1) + 1), (int(x0), int(x1) + 1)))
        except InvalidArgumentError as error:
            self.statusBar().showMessage(str(error), 8000)
            return
        if box is None:
            self.statusBar().showMessage("no prediction in view: run the model on it first (Ctrl+R)", 6000)
            return
        self._on_edited()

    def save_in_background(self) -> None:
        """Autosave: the dirty chunks are copied here and written by a thread."""
        if self.document.painting:  # mid-stroke: save when it ends
            self._autosave.start()
            return
        snapshot = self.document.snapshot()
        if not snapshot:
            return
        self.save_label.setText("saving…")
        self._pending = self._writer.submit(self._write, snapshot, self._saves)

    def _write(self, snapshot, generation: int):
        """(The autosave thread.) Returns the snapshot when it could not be written."""
        with self._write_lock:
            try:
                written = self.document.write_snapshot(snapshot)
            except Exception as error:  # a full disk, a removed folder: shown, the chunks stay dirty
                log.error("saving the slide labels failed: %s", error)
                self.saveFailed.emit(error, (snapshot, generation))
                return snapshot
        self.saved.emit(len(snapshot), written)
        return None

    def _on_save_failed(self, error: BaseException, failed) -> None:
        """(GUI thread.) The chunks are unsaved again; the dialog shows once until a save succeeds."""
        snapshot, generation = failed
        if generation < self._saves:
            return  # a save() since then took these chunks back and wrote them
        self.document.unsaved_again(snapshot)
        self.save_label.setText("NOT SAVED")
        if not self._save_failing:
            self._save_failing = True
            self.report_error("The labels could not be saved (they are kept and saved again after the next "
                              "stroke, and on closing)", error)

    def _on_saved(self, chunks: int, written: int) -> None:
        self._save_failing = False
        if self._pending is None or self._pending.done():  # nothing in flight: saved chunks leave memory
            self.document.labels.forget_clean()
        if not self.document.unsaved:
            self.save_label.setText(f"saved ({chunks} chunk{'s' * (chunks != 1)}, {written / 1024:.1f} KB)")

    def save(self) -> bool:
        """Write every unsaved chunk now (waits for an autosave in flight)."""
        self.view.finish_stroke()
        self._autosave.stop()
        self._saves += 1
        if self._pending is not None:
            failed = self._pending.result()
            self._pending = None
            if failed is not None:  # now, not when the queued signal arrives: this save writes them
                self.document.unsaved_again(failed)
        with self._write_lock:
            try:
                chunks = len(self.document.labels.dirty)
                written = self.document.save()
            except Exception as error:
                self.report_error("The labels could not be saved", error)
                return False
        self._on_saved(chunks, written)
        return True

    def export_labels(self, fmt: str = "ome-tiff", target: str | None = None) -> bool:
        """File > Export: the saved labels as a pyramidal OME-TIFF or GeoJSON, written in a worker."""
        from segstudio.io.slide_export import write_store_geojson, write_store_pyramid_steps
        from segstudio.io.tiled_labels import TiledLabels

        if not self.save():
            return False
        stem = self.document.slide.path.name.split(".")[0]
        suffix, kind = (".labels.ome.tif", "OME-TIFF (*.ome.tif)") if fmt == "ome-tiff" else \
            (".geojson", "GeoJSON (*.geojson *.json)")
        if target is None:
            target, _ = QFileDialog.getSaveFileName(self, "Export the labels", str(Path.home() / (stem + suffix)),
                                                    kind)
        if not target:
            return False
        # a store of its own: the export reads chunk by chunk and drops them, while the brush goes on
        labels, classes = TiledLabels.open(self.document.labels.folder), self.document.classes

        def geojson(cancel):
            yield Progress(0, None, message="tracing the outlines", stage="export")
            return write_store_geojson(target, labels, classes.names, [c.color for c in classes])

        factory = (lambda cancel: write_store_pyramid_steps(labels, target)) if fmt == "ome-tiff" else geojson
        return self._start("Exporting the labels", factory,
                           done=lambda path: self.statusBar().showMessage(f"labels exported to {path}", 8000))

    def export_view(self, target: str | None = None) -> bool:
        """File > Export the labels in view: the view's box of the labels, at full resolution, as an
        indexed PNG (the project's mask format; 255 = unlabelled), with the box in its name."""
        from segstudio.annotation.slide_document import MAX_ACCEPT_PIXELS
        from segstudio.io.masks import write_label_png

        height, width = self.document.shape
        (y0, y1), (x0, x1) = self.view.visible_box()
        y0, y1, x0, x1 = max(0, int(y0)), min(height, int(y1) + 1), max(0, int(x0)), min(width, int(x1) + 1)
        if (y1 - y0) * (x1 - x0) > MAX_ACCEPT_PIXELS:
            self.statusBar().showMessage(f"the view holds {(y1 - y0) * (x1 - x0) / 1e6:.0f} M pixels; export at "
                                         f"most {MAX_ACCEPT_PIXELS / 1e6:.0f} M at once (zoom in)", 8000)
            return False
        if target is None:
            stem = self.document.slide.path.name.split(".")[0]
            default = str(Path.home() / f"{stem}_y{y0}-{y1}_x{x0}-{x1}.png")
            target, _ = QFileDialog.getSaveFileName(self, "Export the labels in view", default, "PNG (*.png)")
        if not target:
            return False
        try:
            write_label_png(target, self.document.labels.read(((y0, y1), (x0, x1))), self.document.classes.colors)
        except SegstudioError as error:
            self.report_error("Export failed", error)
            return False
        self.statusBar().showMessage(f"labels exported to {target}", 8000)
        return True

    # -- the model ---------------------------------------------------------------
    def run_model(self, *, whole: bool = False, region=None) -> bool:
        """Predict the view, a level-0 ``region`` (the rectangle tool's) or the whole slide (skipping
        glass) with the studio's Model dock checkpoint."""
        from segstudio.gui.runs import _build_predictor
        from segstudio.inference.slide import predict_slide_steps, run_key
        from segstudio.io.slide import Slide
        from segstudio.io.tiled_labels import TiledLabels

        if self.run_task is not None and self.run_task.running:
            self.statusBar().showMessage("the model is already running (Ctrl+. cancels it)", 5000)
            return False
        settings = self.model_settings() if self.model_settings is not None else {}
        height, width = self.document.shape
        what = "the whole slide" if whole else "the view" if region is None else "the rectangle"
        if whole:
            region = None
        elif region is None:
            (y0, y1), (x0, x1) = self.view.visible_box()
            region = ((max(0, int(y0)), min(height, int(y1) + 1)), (max(0, int(x0)), min(width, int(x1) + 1)))
        folder = self.document.folder / PREDICTION
        try:
            if self.document.prediction is None:
                self.document.prediction = TiledLabels.create(folder, self.document.shape, self.document.labels.dtype)
        except Exception as error:
            self.report_error("Cannot run the model", error)
            return False
        path = self.document.slide.path
        crf, crf_options = None, None
        if self.actions_by_name["with_crf"].isChecked() and self.crf_settings is not None:
            crf, crf_options = self.crf_settings()

        def task(cancel):
            predictor, meta = _build_predictor(settings)  # raises a clear error without a checkpoint
            yield meta
            key = run_key(settings["checkpoint"], crf)  # a new model version predicts every tile again
            with Slide(path) as slide:  # its own file handle: the view's thread reads the other one
                return (yield from predict_slide_steps(predictor, slide, TiledLabels.open(folder), region=region,
                                                       skip_glass=whole, crf=crf, crf_options=crf_options,
                                                       run_key=key, cancel=cancel))

        return self._start(f"Running the model on {what}",
                           task, done=self._on_run_done, on_yield=self._on_run_yielded)

    def _on_run_yielded(self, item) -> None:
        if isinstance(item, Progress):
            if "y0" in item.metrics:
                m = item.metrics
                self.view.prediction_changed(((int(m["y0"]), int(m["y1"])), (int(m["x0"]), int(m["x1"]))))
        elif hasattr(item, "class_names"):  # the checkpoint's metadata: its classes
            self._adopt_classes(list(item.class_names))

    def _adopt_classes(self, names: list[str]) -> None:
        """A model of more classes than the slide has: its extra classes are added (kept in classes.json)."""
        classes = self.document.classes
        if len(names) <= len(classes):
            return
        for name in names[len(classes):]:
            classes.add(name if name not in classes.names else f"{name} ({len(classes)})")
        try:
            self.document.save_classes()
        except OSError as error:
            self.report_error("The classes could not be saved", error)
        self._fill_classes()
        self.view.set_lut(classes.lut())

    def _on_run_done(self, run) -> None:
        self.statusBar().showMessage(
            f"model done: {run.predicted} tiles predicted, {run.glass} glass skipped, {run.resumed} done before", 10000)

    def cancel_run(self) -> None:
        if self.run_task is not None and self.run_task.running:
            self.run_task.cancel()

    def _start(self, description: str, factory, *, done: Callable[[Any], None],
               on_yield: Callable[[Any], None] | None = None) -> bool:
        if self.run_task is not None and self.run_task.running:
            self.statusBar().showMessage("wait for the task in progress (Ctrl+. cancels it)", 5000)
            return False
        task = RunningTask(description, factory, self)
        self.run_task = task
        self.progress.setRange(0, 0)
        self.progress.setFormat(description)
        self.progress.show()
        self.statusBar().showMessage(description + "…")
        if on_yield is not None:
            task.worker.yielded.connect(on_yield)
        task.progressed.connect(self._on_progress)
        task.succeeded.connect(done)
        task.cancelled.connect(lambda: self.statusBar().showMessage(f"{description}: cancelled", 6000))
        task.failed.connect(lambda error: self.report_error(description, error))
        task.done.connect(self.progress.hide)
        task.start()
        return True

    def _on_progress(self, progress) -> None:
        if progress.total:
            self.progress.setRange(0, progress.total)
            self.progress.setValue(progress.done)
            self.progress.setFormat(f"{progress.message} (%p%)")

    # -- status ------------------------------------------------------------------
    def _describe_view(self) -> None:
        slide, view = self.document.slide, self.view
        level = view.level()
        text = f"level {level} (x{max(slide.levels[level].downsample):.1f}) · {view.zoom * 100:.3g} %"
        if slide.microns_per_pixel:
            text += f" · {slide.microns_per_pixel[1] / view.zoom:.3g} µm per screen pixel"
        self.view_label.setText(text)

    def _describe_cursor(self, x: int, y: int) -> None:
        if x < 0:
            self.cursor_label.setText("")
            return
        label = int(self.document.labels.read(((y, y + 1), (x, x + 1)))[0, 0])
        name = self.document.classes[label].name if label < len(self.document.classes) else "unlabelled"
        self.cursor_label.setText(f"x {x:,}  y {y:,}  {name}")

    def report_error(self, title: str, error: BaseException) -> None:
        self.last_error = show_error(self, title, error)
        self.statusBar().showMessage(f"{title}: {error}", 8000)

    # -- closing -----------------------------------------------------------------
    def closeEvent(self, event) -> None:  # noqa: N802
        """Nothing is lost: the labels are saved before the window goes; when that fails the
        user chooses to keep the window (and the labels) or to close without them."""
        if self.run_task is not None and self.run_task.running:
            self.run_task.cancel()
            self.run_task.worker.quit()
        if not self.save():
            answer = QMessageBox.question(
                self, "Labels not saved",
                "The last changes to the slide's labels could not be saved. Close anyway and lose them?")
            if answer != QMessageBox.StandardButton.Yes:
                event.ignore()
                return
        self._writer.shutdown(wait=True)
        self.view.close_view()
        self._wait_for_task(10000)  # its worker reads the slide and writes the prediction
        self.document.close()
        event.accept()
        self.closed.emit()

    def _wait_for_task(self, timeout_ms: int) -> None:
        task = self.run_task
        if task is None or not task.running:
            return
        loop = QEventLoop()
        task.done.connect(loop.quit)
        QTimer.singleShot(timeout_ms, loop.quit)
        if task.running:
            loop.exec()
