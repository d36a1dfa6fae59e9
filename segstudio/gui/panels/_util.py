"""Small helpers shared by the panels."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from PySide6.QtCore import QEvent, QObject, Qt
from PySide6.QtWidgets import (
    QAbstractSlider,
    QAbstractSpinBox,
    QComboBox,
    QScrollBar,
    QWidget,
)


@contextmanager
def blocked(*objects: QObject) -> Iterator[None]:
    """Block the signals of ``objects`` for the body of a ``with`` statement.

    Setters use it so that showing a value the document already holds is not
    echoed back as a user edit (design rule 4).
    """
    previous = [obj.blockSignals(True) for obj in objects]
    try:
        yield
    finally:
        for obj, was in zip(objects, previous):
            obj.blockSignals(was)


class _WheelGuard(QObject):
    """Passes wheel events over an unfocused input on to its parents."""

    def eventFilter(self, watched: QObject, event: QEvent) -> bool:
        if event.type() == QEvent.Type.Wheel and isinstance(watched, QWidget) and not watched.hasFocus():
            # ignored and filtered: Qt offers the event to the parents, so the
            # scroll area around the panel scrolls instead of the value changing
            event.ignore()
            return True
        return False


_WHEEL_INPUTS = (QComboBox, QAbstractSpinBox, QAbstractSlider)


def ignore_wheel_unless_focused(root: QWidget) -> None:
    """Make the combo boxes, spin boxes and sliders under ``root`` ignore the
    wheel until they have the focus (a click or Tab gives it to them).

    Without this, scrolling a dock whose panel passes under the pointer turns
    whatever box happens to be there (the Device became "mps" on Linux).
    Scroll bars keep the wheel: scrolling is what they are for.
    """
    guard = root.findChild(_WheelGuard, "wheel_guard")
    if guard is None:
        guard = _WheelGuard(root)
        guard.setObjectName("wheel_guard")
    widgets = [root, *root.findChildren(QWidget)]
    for widget in widgets:
        if isinstance(widget, _WHEEL_INPUTS) and not isinstance(widget, QScrollBar):
            widget.setFocusPolicy(Qt.FocusPolicy.StrongFocus)  # not WheelFocus: the wheel gives no focus
            widget.installEventFilter(guard)  # a second install moves it, it does not stack
