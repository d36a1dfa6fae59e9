"""Python's cyclic garbage collector, run on the GUI thread only.

The collector runs in whichever thread crosses its allocation threshold. When
that is a worker thread (a model run building its network, a thumbnail being
decoded) and the garbage holds Qt objects (a closed window, its menus), their
C++ destructors run in the worker while the GUI thread destroys other Qt
objects: each holds what the other waits for (Qt's connection lock, Python's
GIL), and the studio froze. Seen in the test suite with py-spy: the GUI
thread in QObject::~QObject waiting for a mutex, a model worker in
gc_collect_main -> QObject::~QObject waiting for the GIL. pyqtgraph ships the
same remedy for the same reason.

So automatic collection is switched off and a timer on the GUI thread
collects the generations whose thresholds were crossed, once a second.
"""

from __future__ import annotations

import gc

from PySide6.QtCore import QObject, QTimer

INTERVAL_MS = 1000


class GuiThreadCollector(QObject):
    """Collects Python's cyclic garbage on the thread it lives on (the GUI thread)."""

    def __init__(self, parent: QObject | None = None, interval_ms: int = INTERVAL_MS) -> None:
        super().__init__(parent)
        self.thresholds = gc.get_threshold()
        gc.disable()
        self.timer = QTimer(self)
        self.timer.timeout.connect(self.collect_due)
        self.timer.start(interval_ms)

    def collect_due(self) -> int:
        """Collect the oldest generation whose threshold was crossed; returns what it found."""
        counts = gc.get_count()
        generation = -1
        for level in range(3):
            if counts[level] > self.thresholds[level]:
                generation = level
        return gc.collect(generation) if generation >= 0 else 0

    def stop(self) -> None:
        """Give automatic collection back (the application is quitting)."""
        self.timer.stop()
        gc.enable()


def install(app) -> GuiThreadCollector:
    """One collector per application (a child of *app*, so it lives on the GUI thread)."""
    existing = app.findChild(GuiThreadCollector)
    return existing if existing is not None else GuiThreadCollector(app)
