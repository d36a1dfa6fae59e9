"""Starting and stopping the studio: QApplication, logging, the global error path."""

from __future__ import annotations

import logging
import logging.handlers
import os
import sys
from collections.abc import Sequence
from pathlib import Path

log = logging.getLogger(__name__)

APP_NAME = "segstudio"


def display_problem() -> str | None:
    """Why no window can open here, or None.

    Qt aborts the whole process when it finds no display; saying so in one
    line, with what to do, is kinder.
    """
    if os.environ.get("QT_QPA_PLATFORM"):
        return None
    if sys.platform.startswith("linux") and not (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")):
        return (
            "no display found (DISPLAY and WAYLAND_DISPLAY are unset): run segstudio on a desktop, "
            "under a virtual display (xvfb-run segstudio), or headless with QT_QPA_PLATFORM=offscreen"
        )
    return None


def log_file() -> Path:
    from platformdirs import user_log_dir

    return Path(user_log_dir(APP_NAME, appauthor=False)) / "segstudio.log"


def _log_to_file() -> None:
    path = log_file()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        handler = logging.handlers.RotatingFileHandler(path, maxBytes=2 * 2**20, backupCount=3, encoding="utf-8")
    except OSError as error:
        log.warning("cannot write the log file %s: %s", path, error)
        return
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    logging.getLogger().addHandler(handler)
    logging.getLogger().setLevel(logging.INFO)


def create_application(argv: Sequence[str] = ()):
    from PySide6.QtWidgets import QApplication

    app = QApplication.instance() or QApplication([APP_NAME, *argv])
    app.setApplicationName(APP_NAME)
    app.setOrganizationName(APP_NAME)
    app.setDesktopFileName("segstudio")
    _set_window_icon(app)
    return app


def _set_window_icon(app) -> None:
    from PySide6.QtGui import QIcon

    from segstudio.errors import SegstudioError
    from segstudio.resources import resource_path

    try:
        folder = resource_path("icons")
    except SegstudioError as error:
        log.warning("%s", error)
        return
    icon = QIcon()
    for png in sorted(folder.glob("segstudio-*.png")):
        icon.addFile(str(png))
    app.setWindowIcon(icon)


def install_excepthook(window) -> None:
    """Exceptions escaping a Qt slot become the window's one error dialog."""
    previous = sys.excepthook

    def hook(kind, error, trace):
        if issubclass(kind, KeyboardInterrupt):
            previous(kind, error, trace)
            return
        window.report_error("Unexpected error", error.with_traceback(trace))

    sys.excepthook = hook


def close_on_termination(window) -> None:
    """SIGTERM (logout, shutdown, ``kill``), SIGHUP and Ctrl+C close the window as
    the Quit command does: labels saved, the project's lock given back.

    Python runs signal handlers only between bytecodes, and Qt's event loop
    keeps the interpreter out for as long as no event comes; a short timer
    lets it in. Left to the default action, a terminated studio lost the
    last second of edits and left its lock behind.
    """
    import signal

    from PySide6.QtCore import QTimer

    def handler(number, _frame):
        log.warning("received %s: saving and closing (again to quit at once)", signal.Signals(number).name)
        for name in names:  # a second signal, if saving hangs on a dead drive, quits the default way
            signal.signal(getattr(signal, name), signal.SIG_DFL)
        QTimer.singleShot(0, window.close)

    names = [name for name in ("SIGTERM", "SIGHUP", "SIGINT") if hasattr(signal, name)]
    for name in names:
        signal.signal(getattr(signal, name), handler)
    ticker = QTimer(window)
    ticker.setInterval(200)
    ticker.timeout.connect(lambda: None)
    ticker.start()
    window.signal_ticker = ticker


def main(paths: Sequence[str] = (), *, exit_after_open: bool = False) -> int:
    """Open the studio (on ``paths`` if given) and run until it closes.

    ``exit_after_open`` quits as soon as the paths are open, with status 0
    if they opened (the packaged app's smoke test uses it).
    """
    problem = display_problem()
    if problem:
        sys.stderr.write(f"segstudio: error: {problem}\n")
        return 1
    _log_to_file()
    app = create_application()
    from segstudio.gui.main_window import MainWindow

    window = MainWindow()
    install_excepthook(window)
    close_on_termination(window)
    window.show()
    opened = True
    if paths:
        if len(paths) == 1:
            opened = window.open_path(paths[0])
        else:
            opened = window.open_path_list([Path(p) for p in paths])
    log.info("studio started (log: %s)", log_file())
    if exit_after_open:
        project = window.session.project
        count = len(project.entries) if project else 0
        sys.stdout.write(f"segstudio: opened {count} image(s)\n" if opened else "segstudio: nothing opened\n")
        window.close()
        return 0 if opened and count else 1
    return app.exec()
