"""The application shell: a terminated studio saves and gives its project back."""

from __future__ import annotations

import os
import signal

from segstudio.gui.app import close_on_termination
from segstudio.io.project_lock import LOCK_FILE


def test_sigterm_saves_the_labels_and_releases_the_lock(qtbot, window, image_folder):
    previous = {name: signal.getsignal(getattr(signal, name)) for name in ("SIGTERM", "SIGHUP", "SIGINT")}
    try:
        assert window.open_path(image_folder)
        project = window.session.project
        assert (project.folder / LOCK_FILE).exists()
        document = window.session.document
        document.begin_stroke("Brush")
        document.paint((slice(5, 9), slice(5, 30)), None, 1)
        document.end_stroke()
        assert not project.has_labels(0)  # autosave has not run yet
        close_on_termination(window)
        os.kill(os.getpid(), signal.SIGTERM)
        qtbot.waitUntil(lambda: not window.isVisible(), timeout=5000)
        assert (project.read_labels(0)[5:9, 5:30] == 1).all()
        assert not (project.folder / LOCK_FILE).exists()
    finally:
        for name, handler in previous.items():
            signal.signal(getattr(signal, name), handler)
