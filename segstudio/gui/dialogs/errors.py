"""The one place where errors become dialogs.

A user error (:class:`~segstudio.errors.SegstudioError`) shows its one-line
message; anything else is a bug and shows its traceback under "Details".
Both are logged. The box is window-modal but opened without blocking, so a
worker finishing in the background is never held up by it.
"""

from __future__ import annotations

import logging
import traceback

from PySide6.QtWidgets import QMessageBox, QWidget

from segstudio.errors import SegstudioError

log = logging.getLogger(__name__)


def show_error(parent: QWidget | None, title: str, error: BaseException) -> QMessageBox:
    """Log ``error`` and show it in one message box (returned for tests)."""
    box = QMessageBox(parent)
    box.setIcon(QMessageBox.Icon.Warning)
    box.setWindowTitle(title)
    if isinstance(error, SegstudioError):
        log.warning("%s: %s", title, error)
        box.setText(str(error))
    else:
        details = "".join(traceback.format_exception(type(error), error, error.__traceback__))
        log.error("%s: %s\n%s", title, error, details)
        box.setText(f"{type(error).__name__}: {error}")
        box.setInformativeText("This looks like a bug in segstudio; the details are in the log.")
        box.setDetailedText(details)
    box.setStandardButtons(QMessageBox.StandardButton.Ok)
    box.open()
    return box
