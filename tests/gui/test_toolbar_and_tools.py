"""The tool bar, the pan and eyedropper tools, "paint only unlabelled pixels",
named Undo / Redo and the F1 list, driven as a user drives them."""

import numpy as np
from PySide6.QtCore import QPoint, Qt
from PySide6.QtGui import QKeySequence
from PySide6.QtTest import QTest
from PySide6.QtWidgets import QDoubleSpinBox, QToolBar

from segstudio.gui.canvas import Tool
from segstudio.gui.studio_actions import GESTURES, shortcut_rows, show_shortcuts

NO = Qt.KeyboardModifier.NoModifier
LEFT = Qt.MouseButton.LeftButton


def _point(canvas, row, column):
    p = canvas.to_widget(row + 0.5, column + 0.5)
    return QPoint(round(p.x()), round(p.y()))


def _drag(canvas, start, end, steps=8):
    """A left drag from image (row, col) *start* to *end*."""
    QTest.mousePress(canvas, LEFT, NO, _point(canvas, *start))
    for i in range(1, steps + 1):
        row = start[0] + (end[0] - start[0]) * i / steps
        column = start[1] + (end[1] - start[1]) * i / steps
        QTest.mouseMove(canvas, _point(canvas, row, column))
    QTest.mouseRelease(canvas, LEFT, NO, _point(canvas, *end))


def _toolbar(window):
    bar = window.findChild(QToolBar)
    assert bar is not None and bar.objectName() and bar.isMovable()
    return bar


def test_toolbar_buttons_choose_tools_and_show_the_active_one(qtbot, window, image_folder):
    window.open_path(image_folder)
    bar = _toolbar(window)
    for tool in Tool:
        action = window.actions_by_name[f"tool_{tool.value}"]
        button = bar.widgetForAction(action)
        assert button is not None, tool
        QTest.mouseClick(button, LEFT)
        assert window.canvas.tool is tool
        assert action.isChecked() and button.isChecked()
        others = [window.actions_by_name[f"tool_{t.value}"] for t in Tool if t is not tool]
        assert not any(a.isChecked() for a in others)
    # a key on the canvas checks the button too
    QTest.keyClick(window.canvas, Qt.Key.Key_B)
    assert window.canvas.tool is Tool.BRUSH
    assert bar.widgetForAction(window.actions_by_name["tool_brush"]).isChecked()
    assert window.actions_by_name["tool_brush"].toolTip().endswith("(B)")


def test_brush_size_box_follows_the_canvas_and_the_keys(qtbot, window, image_folder):
    window.open_path(image_folder)
    box = _toolbar(window).findChild(QDoubleSpinBox, "brush_size")
    assert box is not None and box.value() == window.canvas.brush_radius
    box.setValue(12)
    assert window.canvas.brush_radius == 12
    QTest.keyClick(window.canvas, Qt.Key.Key_BracketRight)
    assert window.canvas.brush_radius == 15 and box.value() == 15
    QTest.keyClick(window.canvas, Qt.Key.Key_BracketLeft)
    assert window.canvas.brush_radius == 12 and box.value() == 12
    window.canvas.set_brush_radius(3)
    assert box.value() == 3


def test_pan_tool_drags_the_view_and_paints_nothing(qtbot, window, image_folder):
    window.open_path(image_folder)
    canvas = window.canvas
    canvas.zoom_at(2.0, QPoint(canvas.width() // 2, canvas.height() // 2))
    QTest.keyClick(canvas, Qt.Key.Key_H)
    assert canvas.tool is Tool.PAN and window.actions_by_name["tool_pan"].isChecked()
    before = window.session.document.labels.copy()
    origin = canvas.to_widget(0, 0)
    start = QPoint(canvas.width() // 2, canvas.height() // 2)
    QTest.mousePress(canvas, LEFT, NO, start)
    for step in range(1, 6):
        QTest.mouseMove(canvas, start + QPoint(10 * step, 6 * step))
    QTest.mouseRelease(canvas, LEFT, NO, start + QPoint(50, 30))
    moved = canvas.to_widget(0, 0) - origin
    assert (round(moved.x()), round(moved.y())) == (50, 30)
    assert np.array_equal(window.session.document.labels, before)
    assert not window.session.document.can_undo


def test_eyedropper_makes_the_clicked_label_the_active_class(qtbot, window, image_folder):
    window.open_path(image_folder)
    canvas, document = window.canvas, window.session.document
    window.set_active_class(1)
    canvas.set_brush_radius(3)
    window.set_tool(Tool.BRUSH)
    QTest.mouseClick(canvas, LEFT, NO, _point(canvas, 20, 20))
    assert document.labels[20, 20] == 1
    window.set_active_class(0)
    QTest.keyClick(canvas, Qt.Key.Key_I)
    assert canvas.tool is Tool.EYEDROPPER
    before = document.labels.copy()
    QTest.mouseClick(canvas, LEFT, NO, _point(canvas, 20, 20))
    assert canvas.active_class == 1
    # an unlabelled pixel leaves the active class alone; nothing is painted
    QTest.mouseClick(canvas, LEFT, NO, _point(canvas, 60, 100))
    assert canvas.active_class == 1
    assert np.array_equal(document.labels, before)


def test_paint_only_unlabelled_keeps_labelled_pixels_and_undoes_in_one_step(qtbot, window, image_folder):
    window.open_path(image_folder)
    canvas, document = window.canvas, window.session.document
    window.set_active_class(1)
    canvas.set_brush_radius(2)
    window.set_tool(Tool.BRUSH)
    _drag(canvas, (30, 40), (30, 60))  # a class-1 bar across columns 40..60
    window.set_active_class(0)
    only = window.actions_by_name["paint_unlabelled_only"]
    button = _toolbar(window).widgetForAction(only)
    QTest.mouseClick(button, LEFT)
    assert only.isChecked() and canvas.paint_unlabelled_only
    before = document.labels.copy()
    _drag(canvas, (20, 50), (40, 50))  # a class-0 stroke across the bar
    after = document.labels
    changed = after != before
    assert changed.any()
    assert (before[changed] == 255).all()  # only unlabelled pixels changed
    assert (after[changed] == 0).all()
    assert (after[before == 1] == 1).all()  # the bar is intact where the stroke crossed it
    assert after[20, 50] == 0 and after[40, 50] == 0 and after[30, 50] == 1
    assert window.actions_by_name["undo"].text() == "Undo Brush"
    window.undo()  # one step restores the whole stroke
    assert np.array_equal(document.labels, before)

    # fill and polygon too: filling the unlabelled background leaves the bar
    window.set_tool(Tool.FILL)
    QTest.mouseClick(canvas, LEFT, NO, _point(canvas, 30, 50))  # on the bar: no unlabelled pixel there
    assert np.array_equal(document.labels, before)
    window.set_tool(Tool.POLYGON)
    for row, column in [(20, 45), (20, 55), (40, 55), (40, 45)]:
        QTest.mouseClick(canvas, LEFT, NO, _point(canvas, row, column))
    QTest.keyClick(canvas, Qt.Key.Key_Return)
    assert (document.labels[before == 1] == 1).all()
    assert document.labels[22, 50] == 0
    # the eraser is unaffected
    window.set_tool(Tool.ERASER)
    canvas.set_brush_radius(1)
    QTest.mouseClick(canvas, LEFT, NO, _point(canvas, 30, 50))
    assert document.labels[30, 50] == 255
    # off again: the brush paints over labels
    only.trigger()
    assert not canvas.paint_unlabelled_only
    window.set_tool(Tool.BRUSH)
    QTest.mouseClick(canvas, LEFT, NO, _point(canvas, 30, 42))
    assert document.labels[30, 42] == 0


def test_undo_and_redo_menu_items_name_the_step(qtbot, window, image_folder):
    window.open_path(image_folder)
    canvas, undo, redo = window.canvas, window.actions_by_name["undo"], window.actions_by_name["redo"]
    assert undo.text() == "Undo" and not undo.isEnabled()
    window.set_active_class(1)
    canvas.set_brush_radius(2)
    window.set_tool(Tool.BRUSH)
    _drag(canvas, (10, 10), (10, 30))
    assert undo.text() == "Undo Brush" and redo.text() == "Redo"
    window.set_tool(Tool.FILL)
    QTest.mouseClick(canvas, LEFT, NO, _point(canvas, 60, 60))
    assert undo.text() == "Undo Fill"
    QTest.keySequence(canvas, QKeySequence(QKeySequence.StandardKey.Undo))
    assert undo.text() == "Undo Brush" and redo.text() == "Redo Fill"
    window.undo()
    assert undo.text() == "Undo" and not undo.isEnabled() and redo.text() == "Redo Brush"
    window.redo()
    assert undo.text() == "Undo Brush" and redo.text() == "Redo Fill"


def test_f1_lists_every_action_shortcut_and_the_gestures(qtbot, window):
    box = show_shortcuts(window)
    text = box.text()
    for name, action in window.actions_by_name.items():
        keys = action.shortcut().toString(QKeySequence.SequenceFormat.NativeText)
        if keys:
            assert keys in text, name
    for keys, what in GESTURES:
        assert what.split()[0] in text
    for gesture in ("Ctrl+Wheel", "Page Up", "Right drag", "Space+drag", "middle drag", "Enter", "Esc"):
        assert gesture in text
    assert "H" in dict(shortcut_rows(window)) and "I" in dict(shortcut_rows(window))
    box.close()
