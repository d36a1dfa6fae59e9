"""Small helpers shared by the panels."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from PySide6.QtCore import QObject


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
