"""The tool bar: the painting tools, "paint only unlabelled pixels", the brush
size and the magic wand's tolerance.

It shares the menus' QActions (``window.actions_by_name``), so a tool chosen
by key, menu or button is shown checked everywhere, and each button's
tooltip carries its shortcut. The brush-size and tolerance boxes and the
canvas follow each other both ways (a box echoes the canvas with its own
signals blocked, as rule 4 of DESIGN.md asks).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from PySide6.QtCore import QSignalBlocker, Qt
from PySide6.QtWidgets import QAbstractSpinBox, QDoubleSpinBox, QLabel, QToolBar

if TYPE_CHECKING:
    from segstudio.gui.main_window import MainWindow

#: the tool actions on the bar, in order (names in window.actions_by_name)
TOOL_ACTIONS = ("tool_brush", "tool_eraser", "tool_fill", "tool_wand", "tool_polygon", "tool_accept",
                "tool_scribble", "tool_pan", "tool_eyedropper")

#: the tool bar's words where the menu's are long (at 1400 px the bar ran out of room)
SHORT_NAMES = {"tool_wand": "Wand", "tool_accept": "Accept region", "tool_eyedropper": "Eyedropper",
               "tool_scribble": "Scribble",
               "paint_unlabelled_only": "Unlabelled only"}

TOLERANCE_TIP = (
    "Magic wand (W): a click paints the connected pixels whose value lies within this "
    "tolerance of the clicked pixel's, in every channel. Raw image values: grey levels, "
    "or Hounsfield units for CT (not the display window). Starts at a tenth of the "
    "image's range (25 for 8-bit images); the value you set is kept for images of the same type."
)


def _with_shortcut_tip(action) -> None:
    keys = action.shortcut().toString()
    action.setToolTip(f"{action.text()} ({keys})" if keys else action.text())


def build_toolbar(window: MainWindow) -> QToolBar:
    """Add the tool bar to *window* (movable; its object name lets saveState/restoreState keep its place)."""
    bar = QToolBar("Tools", window)
    bar.setObjectName("toolbar_tools")
    bar.setMovable(True)
    bar.setToolButtonStyle(Qt.ToolButtonStyle.ToolButtonTextOnly)
    for name in TOOL_ACTIONS:
        action = window.actions_by_name[name]
        _with_shortcut_tip(action)
        action.setIconText(SHORT_NAMES.get(name, action.text()))  # the menus keep the long names
        bar.addAction(action)
    bar.addSeparator()
    only_unlabelled = window.actions_by_name["paint_unlabelled_only"]
    _with_shortcut_tip(only_unlabelled)
    only_unlabelled.setIconText(SHORT_NAMES["paint_unlabelled_only"])
    bar.addAction(only_unlabelled)
    bar.addSeparator()

    bar.addWidget(QLabel(" Brush size "))
    size = QDoubleSpinBox(bar)
    size.setObjectName("brush_size")
    size.setDecimals(1)
    size.setRange(0.5, 500.0)
    size.setSingleStep(1.0)
    size.setSuffix(" px")
    size.setToolTip("Brush radius in image pixels ([ smaller, ] larger)")
    size.setValue(window.canvas.brush_radius)
    canvas = window.canvas

    def on_canvas_radius(radius: float) -> None:
        with QSignalBlocker(size):
            size.setValue(radius)

    canvas.brushRadiusChanged.connect(on_canvas_radius)
    size.valueChanged.connect(canvas.set_brush_radius)
    bar.addWidget(size)
    window.brush_size_box = size
    window.wand_tolerance_box = _add_tolerance_box(window, bar)
    window.addToolBar(Qt.ToolBarArea.TopToolBarArea, bar)
    return bar


def _add_tolerance_box(window: MainWindow, bar: QToolBar) -> QDoubleSpinBox:
    """The magic wand's tolerance; its range and decimals follow the image
    (0..255 whole numbers for 8-bit, 0..4095 for 12-bit or CT, 0.001 steps for 0..1 floats)."""
    label = QLabel(" Tolerance ")
    label.setToolTip(TOLERANCE_TIP)
    bar.addWidget(label)
    box = QDoubleSpinBox(bar)
    box.setObjectName("wand_tolerance")
    box.setToolTip(TOLERANCE_TIP)
    box.setStepType(QAbstractSpinBox.StepType.AdaptiveDecimalStepType)
    canvas = window.canvas

    def on_canvas_tolerance(tolerance: float) -> None:
        if (box.value(), box.decimals(), box.maximum()) == (tolerance, canvas.wand_decimals, canvas.wand_maximum):
            return  # the user's own edit coming back: leave the text being typed alone
        with QSignalBlocker(box):
            box.setDecimals(canvas.wand_decimals)
            box.setRange(0.0, canvas.wand_maximum)
            box.setValue(tolerance)

    on_canvas_tolerance(canvas.wand_tolerance)
    canvas.wandToleranceChanged.connect(on_canvas_tolerance)
    box.valueChanged.connect(canvas.set_wand_tolerance)
    bar.addWidget(box)
    return box
