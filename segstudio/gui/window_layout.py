"""The window's frame: how a project is opened into it (holding its lock), and
where the docks sit (saved on close, restored at start, View > Reset layout)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from PySide6.QtCore import QSettings, Qt
from PySide6.QtWidgets import QScrollArea

from segstudio.errors import SegstudioError
from segstudio.gui import studio_actions
from segstudio.io.project_lock import ProjectLockedError

if TYPE_CHECKING:
    from segstudio.gui.main_window import MainWindow


def open_with(window: MainWindow, opener) -> bool:
    """Open what *opener* (``open_or_create`` with its path) gives, holding the
    project's lock; when another window holds it, ask: read-only, take over, or cancel."""
    try:
        try:
            project = opener(lock=True)
        except ProjectLockedError as locked:
            choice = studio_actions.ask_about_lock(window, locked)
            if choice is None:
                return False
            if choice == "take-over":
                project = opener(lock=True, take_over=True)
            else:
                project = opener(read_only=f"it is open in another window: {locked.owner.describe()}")
        try:
            problems = window.session.open_project(project)
        except SegstudioError:
            project.release()
            raise
    except SegstudioError as error:
        window.report_error("Cannot open", error)
        return False
    if problems:
        window.report_error(f"{len(problems)} image(s) cannot be read; the others are open", problems[0])
    if project.read_only is not None:
        window.statusBar().showMessage(f"Read-only: {project.read_only}. Nothing you change is saved.")
    return True


def save_layout(window: MainWindow) -> None:
    """Size, position, dock arrangement and maximised state, for the next start."""
    settings = QSettings()
    settings.setValue("geometry", window.saveGeometry())
    settings.setValue("state", window.saveState())
    settings.setValue("maximized", window.isMaximized())


def restore_layout(window: MainWindow) -> bool:
    """The size, position, dock arrangement and maximised state of last time;
    False when there is none (a first start)."""
    settings = QSettings()
    geometry, state = settings.value("geometry"), settings.value("state")
    if geometry:
        window.restoreGeometry(geometry)
    if state:
        window.restoreState(state)
        window.docks["Volume"].hide()  # shown again when a volume opens
    # restoreGeometry alone does not bring a maximised window back maximised on
    # every platform (X11 window managers): the flag is kept separately
    if str(settings.value("maximized", "false")).lower() == "true":
        window.setWindowState(window.windowState() | Qt.WindowState.WindowMaximized)
    return bool(state)


def apply_default_dock_sizes(window: MainWindow) -> None:
    """CRF and Layers as tall as their controls, the Model / Training tabs the
    rest (the curves and versions need it); the image list taller than the classes."""
    docks = window.docks

    def wanted(name: str) -> int:  # the panel's height and the title bar's
        return docks[name].findChild(QScrollArea).widget().sizeHint().height() + 28

    right = [docks["Model"], docks["CRF"]]
    height = max(1, sum(dock.height() for dock in right))
    window.resizeDocks(right, [max(200, height - wanted("CRF")), wanted("CRF")], Qt.Orientation.Vertical)
    left = [docks["Images"], docks["Classes"], docks["Layers"]]
    height = max(1, sum(dock.height() for dock in left))
    rest = height - wanted("Layers")
    window.resizeDocks(left, [rest * 3 // 5, rest - rest * 3 // 5, wanted("Layers")], Qt.Orientation.Vertical)


def reset_layout(window: MainWindow) -> None:
    """View > Reset layout: the docks where a fresh install has them."""
    volume_shown = window.docks["Volume"].isVisible()
    window.restoreState(window._default_layout)
    if window._volume_dock_tabbed:
        window.tabifyDockWidget(window.docks["Classes"], window.docks["Volume"])
    window.docks["Volume"].setVisible(volume_shown)
    window.docks["Model"].raise_()
    apply_default_dock_sizes(window)
