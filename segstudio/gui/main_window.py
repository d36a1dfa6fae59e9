"""The studio's main window: docks, menus and actions, wired together.

No business logic lives here: the Session owns the project and document,
ModelRuns owns the workers, the panels and the canvas are views.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
from PySide6.QtCore import QSettings, Qt, QTimer
from PySide6.QtGui import QAction
from PySide6.QtWidgets import (
    QDockWidget,
    QFileDialog,
    QFrame,
    QLabel,
    QMainWindow,
    QMessageBox,
    QScrollArea,
    QVBoxLayout,
    QWidget,
)

from segstudio import __version__
from segstudio.annotation.document import ImageStatus
from segstudio.errors import SegstudioError
from segstudio.gui.canvas import Canvas, Tool
from segstudio.gui.colormaps import colormap_lut
from segstudio.gui.dialogs.errors import show_error
from segstudio.gui.panels.classes import ClassesPanel
from segstudio.gui.panels._util import ignore_wheel_unless_focused
from segstudio.gui.panels.crf import CRFPanel
from segstudio.gui.panels.images import ImagesPanel
from segstudio.gui.panels.layers import LayersPanel
from segstudio.gui.panels.model import ModelPanel
from segstudio.gui.panels.training import TrainingPanel
from segstudio.gui.panels.volume import VolumePanel
from segstudio.gui.training_runs import TrainingRuns
from segstudio.gui.runs import ModelRuns
from segstudio.gui.session import Session
from segstudio.gui import (class_editing, crf_preview, live_update, next_image, scribbles, studio_actions,
                           three_views, window_layout)
from segstudio.gui.toolbar import build_toolbar
from segstudio.io import project_opening
from segstudio.tasks import Progress

log = logging.getLogger(__name__)

MAX_RECENT = 8


class MainWindow(QMainWindow):
    """segstudio's window."""

    def __init__(self) -> None:
        super().__init__()
        self.setWindowTitle("segstudio")
        self.resize(1400, 900)
        self.session = Session(self)
        self.runs = ModelRuns(self)
        self.canvas = Canvas(self)
        self.setCentralWidget(self.canvas)
        self.slide_windows: list = []  # whole-slide windows opened from this one (gui/slide)
        self.images_panel = ImagesPanel()
        self.classes_panel = ClassesPanel()
        self.model_panel = ModelPanel()
        self.crf_panel = CRFPanel()
        self.layers_panel = LayersPanel()
        self.volume_panel = VolumePanel()
        self.training_panel = TrainingPanel()
        self.docks: dict[str, QDockWidget] = {}
        self._add_dock("Images", self.images_panel, Qt.DockWidgetArea.LeftDockWidgetArea)
        self._add_dock("Classes", self.classes_panel, Qt.DockWidgetArea.LeftDockWidgetArea)
        self._add_dock("Model", self.model_panel, Qt.DockWidgetArea.RightDockWidgetArea)
        self._add_dock("CRF", self.crf_panel, Qt.DockWidgetArea.RightDockWidgetArea)
        # under Classes: on the right the Model / Training tabs had no room for the curves
        self._add_dock("Layers", self.layers_panel, Qt.DockWidgetArea.LeftDockWidgetArea)
        self._add_dock("Volume", self.volume_panel, Qt.DockWidgetArea.LeftDockWidgetArea)
        self.docks["Volume"].hide()
        self._volume_dock_tabbed = False
        self._add_dock("Training", self.training_panel, Qt.DockWidgetArea.RightDockWidgetArea)
        self.tabifyDockWidget(self.docks["Model"], self.docks["Training"])
        self.docks["Model"].raise_()
        self.training = TrainingRuns(self)
        self.live = live_update.install(self)  # Training dock > Live update
        self.position_label = QLabel()
        self._cursor = (-1, -1)  # the last image pixel under the mouse, for the status bar
        self.statusBar().addPermanentWidget(self.position_label, 1)
        # stays in sight while the project is open read-only (messages come and go)
        self.read_only_label = QLabel("READ-ONLY: changes are not saved")
        self.read_only_label.setStyleSheet("color: white; background: #b03a2e; padding: 1px 6px;")
        self.read_only_label.setVisible(False)
        self.statusBar().addPermanentWidget(self.read_only_label)
        self.last_error = None
        self.thumbnail_task = None  # the Images list's thumbnails being read (studio_actions.load_thumbnails)
        self.actions_by_name: dict[str, QAction] = {}
        studio_actions.build_menus(self)
        self.tool_bar = build_toolbar(self)  # before the layout is saved or restored
        self._connect()
        self.three_views = three_views.install(self)  # the central area: one view, or three of a volume
        self.scribbles = scribbles.install(self)  # the Scribble tool's strokes refine the prediction (CRF)
        self._sync_layers_panel()
        self._update_title()
        # the arrangement View > Reset layout goes back to, then the user's from last time
        self._default_layout = self.saveState()
        if not window_layout.restore_layout(self):
            # the dock sizes need the window laid out: once it is shown
            QTimer.singleShot(0, lambda: window_layout.apply_default_dock_sizes(self))

    def _add_dock(self, title: str, widget: QWidget, area: Qt.DockWidgetArea) -> None:
        dock = QDockWidget(title, self)
        dock.setObjectName(f"dock_{title.lower()}")
        # a scroll area lets a dock be smaller than its panel: stacked docks
        # would otherwise force the window taller than the screen
        scroll = QScrollArea()
        scroll.setWidgetResizable(True)
        scroll.setFrameShape(QFrame.Shape.NoFrame)
        scroll.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        scroll.setWidget(widget)
        # the wheel scrolls the dock; it turns a box or slider only once clicked
        ignore_wheel_unless_focused(widget)
        # a gap under the title bar: its close button sat on the scroll bar's up arrow
        holder = QWidget()
        gap = QVBoxLayout(holder)
        gap.setContentsMargins(0, 4, 0, 0)
        gap.addWidget(scroll)
        dock.setWidget(holder)
        self.addDockWidget(area, dock)
        self.docks[title] = dock

    # -- wiring ---------------------------------------------------------------
    def _connect(self) -> None:
        session, runs, canvas = self.session, self.runs, self.canvas
        session.projectChanged.connect(self._on_project_changed)
        session.documentChanged.connect(self._on_document_changed)
        session.statusChanged.connect(self.images_panel.set_status)
        session.statusChanged.connect(lambda *_: self.training.refresh())
        session.uncertaintyChanged.connect(self.images_panel.set_uncertainty)
        self.training_panel.activateRequested.connect(lambda version: next_image.offer_rescoring(self, version))
        session.saveFailed.connect(lambda e: self.report_error("Autosave failed", e))
        session.lockLost.connect(self._on_lock_lost)
        session.documentEdited.connect(self._update_undo_actions)
        session.documentEdited.connect(self._describe_cursor)
        self.images_panel.currentChanged.connect(self.pick_image)
        session.loadingStarted.connect(lambda _i, name: self.statusBar().showMessage(f"Opening {name}…"))
        session.loadFailed.connect(self._on_image_unreadable)
        self.images_panel.reviewToggled.connect(self._on_review_toggled)
        self.classes_panel.activeChanged.connect(self.set_active_class)
        class_editing.connect_classes_panel(self)
        self.model_panel.runRequested.connect(self.run_model)
        self.model_panel.cancelRequested.connect(runs.cancel)
        self.model_panel.settingsChanged.connect(self._on_model_settings_changed)
        self.crf_panel.paramsSettled.connect(self._on_crf_params_settled)
        self.crf_panel.runRequested.connect(self.run_crf)
        self.crf_panel.acceptRequested.connect(lambda: self.accept("crf"))
        self.layers_panel.visibilityChanged.connect(canvas.set_layer_visible)
        self.layers_panel.opacityChanged.connect(canvas.set_layer_opacity)
        self.layers_panel.outlineChanged.connect(canvas.set_layer_outline)
        self.layers_panel.heatmapChanged.connect(canvas.set_heatmap)
        self.layers_panel.colormapChanged.connect(lambda name: canvas.set_colormap(colormap_lut(name)))
        canvas.set_colormap(colormap_lut("viridis"))
        canvas.cursorMoved.connect(self._on_cursor_moved)
        canvas.sliceChanged.connect(self._on_slice_changed)
        canvas.windowChanged.connect(self.volume_panel.set_window)
        canvas.labelPicked.connect(self._on_label_picked)
        canvas.readOnlyTouched.connect(lambda: self.statusBar().showMessage(
            "This project is open read-only: the tools change nothing (File > Open it again to take it "
            "over once the other window is closed)", 6000))
        self.volume_panel.sliceRequested.connect(canvas.set_slice)
        self.volume_panel.axisRequested.connect(canvas.set_view_axis)
        self.volume_panel.windowRequested.connect(canvas.set_window)
        self.volume_panel.runRequested.connect(self.run_volume)
        self.volume_panel.fillBetweenRequested.connect(self.actions_by_name["fill_between_slices"].trigger)
        runs.runStarted.connect(self._on_run_started)
        runs.runProgress.connect(self._on_run_progress)
        runs.predicted.connect(self._on_predicted)
        runs.modelLoaded.connect(self._on_model_loaded)
        runs.runFinished.connect(self._on_run_finished)
        runs.runFailed.connect(lambda e: self.report_error("The model run failed", e))
        runs.crfDone.connect(lambda index, refined: crf_preview.on_done(self, index, refined))
        runs.crfFailed.connect(self._on_crf_failed)
        runs.crfTile.connect(lambda index, tile: crf_preview.on_tile(self, index, tile))

    def report_error(self, title: str, error: BaseException) -> None:
        """The one error path of the window: a dialog and the log."""
        self.last_error = show_error(self, title, error)
        self.statusBar().showMessage(f"{title}: {error}", 8000)

    # -- projects -------------------------------------------------------------
    def open_path(self, path: str | Path) -> bool:
        """Open a project folder, a folder of images or image files (a whole-slide image in a slide window)."""
        from segstudio.gui.slide.opening import is_slide, open_slide, opens_as_slide

        if Path(path).is_file() and is_slide(Path(path)):
            if open_slide(self, Path(path)) is None:
                return False
            self._remember_recent(Path(path))  # File > Open recent opens it again in a slide window
            return True
        if Path(path).is_file() and opens_as_slide(Path(path)):
            open_slide(self, Path(path))  # a plain image's pyramid is built first, in the background
            self._remember_recent(Path(path))
            return True
        if not self._open_with(lambda **access: project_opening.open_or_create(Path(path), **access)):
            return False
        self._remember_recent(Path(path))
        return True

    def _on_project_changed(self) -> None:
        """Every panel shows the project now open, nothing of the previous one."""
        from segstudio.refine import CRFParams

        project = self.session.project
        # a model run or CRF preview in flight belongs to the previous project: what it delivers is dropped
        self.runs.discard()
        self.crf_panel.set_busy(False)
        entries = ([(e.display_name, ImageStatus(e.status).value, e.uncertainty) for e in project.entries]
                   if project is not None else [])
        self.images_panel.set_entries(entries)
        self.sync_classes()
        # the project's own model settings over the defaults: no checkpoint unless it names one
        # (`is not None`: a project without images is falsy, Project has a __len__)
        problems = self.model_panel.show_project(project.model_settings if project is not None else {})
        if problems:
            self.statusBar().showMessage(f"model settings of the project ignored: {'; '.join(problems)}", 8000)
        saved_crf = project.crf_settings if project is not None else None
        try:
            params = CRFParams.from_dict(saved_crf) if saved_crf else CRFParams()
        except (SegstudioError, TypeError, ValueError) as error:
            log.warning("CRF settings of the project are ignored: %s", error)
            params = CRFParams()
        self.crf_panel.set_params(params)
        self._sync_layer_availability()
        if project is not None:
            QTimer.singleShot(0, self._load_thumbnails)
        self.training.open_project()
        self._update_title()

    def _load_thumbnails(self) -> None:
        studio_actions.load_thumbnails(self)

    def select_image(self, index: int) -> None:
        try:
            self.session.select(index)
        except SegstudioError as error:
            self.report_error("Cannot open the image", error)
            self.images_panel.set_current(self.session.index)  # the list shows what the canvas shows

    def pick_image(self, index: int) -> None:
        """The user picked image *index*: a large one is read off the GUI thread."""
        if not self.session.reads_slowly(index) or not self.session.select_in_background(index):
            self.select_image(index)

    def _on_image_unreadable(self, _index: int, error: BaseException) -> None:
        self.statusBar().clearMessage()
        self.report_error("Cannot open the image", error)
        self.images_panel.set_current(self.session.index)

    def step_image(self, step: int) -> None:
        """D / A: the next or previous image in the Images list's order (file or uncertainty)."""
        project = self.session.project
        if project is None or not project.entries:
            return
        order = self.images_panel.order() or list(range(len(project.entries)))
        here = order.index(self.session.wanted_index) if self.session.wanted_index in order else 0
        self.pick_image(order[max(0, min(len(order) - 1, here + step))])

    def _on_document_changed(self, index: int) -> None:
        document = self.session.document
        is_volume = document is not None and document.is_volume
        if is_volume and not self._volume_dock_tabbed:
            # a tab beside Classes (stacked under two docks its run buttons were
            # out of sight); done on first use: tabifying a dock and hiding it at
            # once left a stale tab bar painted over another dock
            self.tabifyDockWidget(self.docks["Classes"], self.docks["Volume"])
            self._volume_dock_tabbed = True
        self.docks["Volume"].setVisible(is_volume)
        if is_volume:
            self.volume_panel.set_axis(0)
            self.docks["Volume"].raise_()
        if self.statusBar().currentMessage().startswith("Opening "):
            self.statusBar().clearMessage()
        self.canvas.set_document(document, self.session.classes.lut())
        if is_volume:  # not read up front for a thumbnail: show the slice now on screen
            self.images_panel.set_thumbnail(index, self.canvas.layer_buffer("image"))
        self.images_panel.set_current(index)
        self._sync_layer_availability()
        self.crf_panel.set_volume(is_volume)
        self._update_undo_actions()
        self._update_title()
        self._describe_cursor()
        if document is not None and document.prediction is not None and self.crf_panel.preview_enabled():
            # the prediction kept from a run on all images: its CRF was never computed
            crf_preview.run(self, self.crf_panel.params(), live=True)

    def _on_review_toggled(self, index: int, reviewed: bool) -> None:
        status = ImageStatus.REVIEWED if reviewed else ImageStatus.CORRECTED
        self.session.set_status(index, status)

    def _on_lock_lost(self, why: str) -> None:
        self._update_title()
        self.report_error("Project taken over", SegstudioError(
            f"{why}: this window is read-only from now on and saves nothing more. Edits made here since "
            f"the last save are not in the project", path=self.session.folder()))

    def _update_title(self) -> None:
        project = self.session.project
        name = project_opening.project_display_name(project) if project is not None else "no project"
        read_only = " [read-only]" if self.session.read_only else ""
        self.setWindowTitle(f"segstudio — {name}{read_only}")
        self.read_only_label.setVisible(self.session.read_only)
        if self.session.read_only:
            self.read_only_label.setToolTip(f"Opened read-only: {self.session.project.read_only}")

    def _remember_recent(self, path: Path) -> None:
        settings = QSettings()
        recent = [p for p in studio_actions.recent_paths(settings) if p != str(path)]
        settings.setValue("recent", [str(path), *recent][:MAX_RECENT])
        studio_actions.refresh_recent_menu(self)

    # -- classes --------------------------------------------------------------
    def sync_classes(self) -> None:
        classes = self.session.classes
        self.classes_panel.set_classes([(c.name, tuple(c.color), c.visible) for c in classes])
        self.layers_panel.set_heatmap_choices(list(classes.names))
        self.canvas.set_class_lut(classes.lut())
        if len(classes):
            self.set_active_class(min(max(self.canvas.active_class, 0), len(classes) - 1))

    def set_active_class(self, index: int) -> None:
        if 0 <= index < len(self.session.classes):
            self.canvas.set_active_class(index)
            self.classes_panel.set_active(index)
            self.statusBar().showMessage(f"class: {self.session.classes[index].name}", 2000)

    # -- model and CRF ----------------------------------------------------------
    def run_model(self, all_images: bool = False) -> None:
        project, document = self.session.project, self.session.document
        if project is None or (document is None and not all_images):
            self.statusBar().showMessage("Open images first", 4000)
            return
        if self.runs.busy:
            self.statusBar().showMessage("A model run is already in progress (Cancel stops it)", 4000)
            return
        if not all_images and document.is_volume:
            self.run_volume(True)  # "this image" is the whole volume, slice by slice
            return
        jobs = studio_actions.model_jobs(self, all_images)
        self.runs.run(self.model_panel.settings(), jobs)

    def run_volume(self, whole: bool) -> None:
        """Run the model on the shown axial slice or on every slice."""
        document, slicer = self.session.document, self.canvas.slicer
        if document is None or not document.is_volume or slicer is None:
            return
        if self.runs.busy:
            self.statusBar().showMessage("A model run is already in progress (Cancel stops it)", 4000)
            return
        if not whole and slicer.axis != 0:
            self.statusBar().showMessage("Run on this slice works in the axial view", 4000)
            return
        self.runs.run_volume(self.model_panel.settings(), self.session.index, document.image,
                             slices=None if whole else [slicer.index], window=slicer.window,
                             invert=slicer.invert)  # MONOCHROME1: the model sees what the user sees

    def _on_slice_changed(self, index: int, count: int) -> None:
        self.volume_panel.set_slice(index, count)
        self.statusBar().showMessage(studio_actions.describe_slice(self), 3000)
        self._describe_cursor()  # the same spot of the screen is another voxel now

    def run_model_on_unreviewed(self) -> None:
        """After a better version is adopted: predict every image not yet reviewed."""
        if self.session.project is None or self.runs.busy:
            return
        jobs = studio_actions.model_jobs(self, True, skip_reviewed=True)
        if jobs:
            self.runs.run(self.model_panel.settings(), jobs)

    def _on_model_settings_changed(self, settings: dict) -> None:
        if self.session.project is not None:
            self.session.project.model_settings.update(settings)
            self.session.project.save()

    def _on_run_started(self, description: str) -> None:
        self.model_panel.set_running(True)
        self.statusBar().showMessage(description + "…")

    def _on_run_progress(self, progress: Progress) -> None:
        self.model_panel.set_progress(progress.done, progress.total or 0, progress.message)
        self.statusBar().showMessage(progress.message)

    def _on_model_loaded(self, meta) -> None:
        studio_actions.adopt_model_classes(self, meta)
        if meta.num_classes != len(self.session.classes):
            self.runs.cancel()  # its predictions would hold classes the project lacks

    def _on_predicted(self, index: int, result) -> None:
        if self.session.project is None or result.probabilities.shape[0] != len(self.session.classes):
            # accepting it would write class indices the project does not have
            self.statusBar().showMessage("Prediction dropped: the model's classes differ from the project's", 8000)
            return
        result = studio_actions.merge_volume_prediction(self, index, result)
        self.session.store_prediction(index, result)
        if index == self.session.index:
            self.canvas.refresh_prediction()
            self._sync_layer_availability()
            self._describe_cursor()
            if self.crf_panel.preview_enabled():
                self._on_crf_params_settled(self.crf_panel.params())

    def _on_run_finished(self, outcome: str) -> None:
        self.model_panel.set_running(False)
        messages = {"done": "Model run finished", "cancelled": "Model run cancelled", "failed": "Model run failed"}
        self.model_panel.set_progress(1 if outcome == "done" else 0, 1, messages[outcome])
        self.statusBar().showMessage(messages[outcome], 5000)

    def _on_crf_params_settled(self, params) -> None:
        document = self.session.document
        if self.crf_panel.preview_enabled() and document is not None and document.prediction is not None:
            if self.session.project is not None:
                self.session.project.crf_settings = params.to_dict()
            crf_preview.run(self, params, live=True)
        elif self.session.project is not None:
            self.session.project.crf_settings = params.to_dict()

    def run_crf(self, params) -> None:
        """Compute the CRF mask of the current image with *params* (the Run CRF
        button: all of it); a computation in flight is cancelled."""
        if self.session.project is not None:
            self.session.project.crf_settings = params.to_dict()
        crf_preview.run(self, params)

    def _on_crf_failed(self, error: BaseException) -> None:
        self.crf_panel.set_busy(False)  # Accept must not stay disabled
        self.report_error("The CRF failed", error)

    def sync_crf_layer(self) -> None:
        """The CRF layer changed: offer it in the Layers panel and show it."""
        self._sync_layer_availability()
        if self.session.document is not None and self.session.document.crf_labels is not None \
                and not self.canvas.states["crf"].visible:
            self.canvas.set_layer_visible("crf", True)
            self._sync_layers_panel()

    def accept(self, source: str, *, active_class_only: bool = False) -> None:
        document = self.session.document
        if document is None:
            return
        class_index = self.canvas.active_class if active_class_only else None
        try:
            changed = document.accept(source, class_index=class_index)
        except SegstudioError as error:
            self.report_error("Nothing to accept", error)
            return
        self.statusBar().showMessage("Accepted" if changed else "Nothing changed", 3000)

    # -- layers and status bar ----------------------------------------------------
    def _sync_layers_panel(self) -> None:
        for name, state in self.canvas.states.items():
            self.layers_panel.set_layer_state(name, state.visible, state.opacity, state.outline)

    def _sync_layer_availability(self) -> None:
        document = self.session.document
        has_prediction = document is not None and document.prediction is not None
        self.layers_panel.set_layer_available("heatmap", has_prediction)
        self.layers_panel.set_layer_available("prediction", has_prediction)
        self.layers_panel.set_layer_available("crf", document is not None and document.crf_labels is not None)

    def _on_cursor_moved(self, x: int, y: int) -> None:
        self._cursor = (x, y)
        self._describe_cursor()

    def _describe_cursor(self) -> None:
        """Describe the pixel under the mouse again: strokes, undo, accept, a new
        prediction or another image change it while the mouse stays still."""
        self.position_label.setText(studio_actions.describe_pixel(self, *self._cursor))

    def _update_undo_actions(self) -> None:
        """Enable Undo / Redo and name the step each would take ("Undo Brush")."""
        document = self.session.document
        for name, can, description in (
            ("undo", document is not None and document.can_undo, document and document.undo_description),
            ("redo", document is not None and document.can_redo, document and document.redo_description),
        ):
            action = self.actions_by_name[name]
            action.setEnabled(bool(can))
            label = name.capitalize()
            action.setText(f"{label} {description}" if can and description else label)

    def undo(self) -> None:
        if self.session.document is not None:
            self.session.document.undo()
            self._update_undo_actions()

    def redo(self) -> None:
        if self.session.document is not None:
            self.session.document.redo()
            self._update_undo_actions()

    def set_tool(self, tool: Tool) -> None:
        self.canvas.set_tool(tool)
        for each in Tool:
            self.actions_by_name[f"tool_{each.value}"].setChecked(each is tool)
        self.statusBar().showMessage(f"tool: {tool.value}", 2000)

    def _on_label_picked(self, label: int) -> None:
        """The eyedropper's click: that pixel's class becomes the active one."""
        if 0 <= label < len(self.session.classes):
            self.set_active_class(label)
        else:
            self.statusBar().showMessage("unlabelled pixel: the active class is unchanged", 3000)

    # -- closing ----------------------------------------------------------------
    def closeEvent(self, event) -> None:  # noqa: N802
        for slide_window in list(self.slide_windows):  # each saves its labels as it closes
            if not slide_window.close():
                event.ignore()
                return
        # save first: if that fails the user may keep the window (and the labels)
        if not self.session.save(wait=True):
            answer = QMessageBox.question(
                self, "Labels not saved", "The last changes could not be saved. Close anyway and lose them?"
            )
            if answer != QMessageBox.StandardButton.Yes:
                event.ignore()
                return
            self.session.discard()
        if self.thumbnail_task is not None:
            self.thumbnail_task.cancel()
        self.runs.shutdown()
        self.training.shutdown()
        self.session.close()
        window_layout.save_layout(self)
        event.accept()

    def reset_layout(self) -> None:
        """View > Reset layout: the docks where a fresh install has them."""
        window_layout.reset_layout(self)

    def _open_with(self, opener) -> bool:
        return window_layout.open_with(self, opener)

    def about(self) -> None:
        QMessageBox.about(
            self,
            "About segstudio",
            f"segstudio {__version__}\nModel-assisted semantic segmentation: FCN, DeepLab, DeconvNet, "
            "U-Net, the dense CRF, correction tools and fine-tuning.",
        )

    def open_dialog(self, kind: str) -> None:
        if kind == "files":
            paths, _ = QFileDialog.getOpenFileNames(
                self, "Open images", "", "Images (*.png *.jpg *.jpeg *.bmp *.tif *.tiff *.svs)"
            )
            if paths:
                self.open_path_list([Path(p) for p in paths])
            return
        folder = QFileDialog.getExistingDirectory(self, "Open a folder of images or a project")
        if folder:
            self.open_path(folder)

    def open_path_list(self, paths: list[Path]) -> bool:
        if len(paths) == 1 and Path(paths[0]).is_file():
            return self.open_path(paths[0])
        return self._open_with(lambda **access: project_opening.create_for_files(paths, **access))

    def current_image(self) -> np.ndarray | None:
        return self.session.document.image if self.session.document else None
