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


# The system libraries that Qt's xcb platform plugin (PySide6/Qt/plugins/platforms/libqxcb.so),
# its libQt6XcbQpa.so.6 and libQt6Gui/Core/DBus link against and the PySide6 wheel does not
# bundle (readelf -d on PySide6 6.x; libc, libm, libstdc++ and libgcc_s left out), each with
# its Debian/Ubuntu package. Qt loads them all at once and names only the first it misses.
XCB_LIBRARIES: dict[str, str] = {
    "libxcb.so.1": "libxcb1",
    "libX11.so.6": "libx11-6",
    "libX11-xcb.so.1": "libx11-xcb1",
    "libxkbcommon.so.0": "libxkbcommon0",
    "libxkbcommon-x11.so.0": "libxkbcommon-x11-0",
    "libxcb-cursor.so.0": "libxcb-cursor0",
    "libxcb-icccm.so.4": "libxcb-icccm4",
    "libxcb-util.so.1": "libxcb-util1",
    "libxcb-image.so.0": "libxcb-image0",
    "libxcb-keysyms.so.1": "libxcb-keysyms1",
    "libxcb-randr.so.0": "libxcb-randr0",
    "libxcb-render.so.0": "libxcb-render0",
    "libxcb-render-util.so.0": "libxcb-render-util0",
    "libxcb-shape.so.0": "libxcb-shape0",
    "libxcb-shm.so.0": "libxcb-shm0",
    "libxcb-sync.so.1": "libxcb-sync1",
    "libxcb-xfixes.so.0": "libxcb-xfixes0",
    "libxcb-xkb.so.1": "libxcb-xkb1",
    "libGL.so.1": "libgl1",
    "libEGL.so.1": "libegl1",
    "libfontconfig.so.1": "libfontconfig1",
    "libfreetype.so.6": "libfreetype6",
    "libglib-2.0.so.0": "libglib2.0-0",
    "libgthread-2.0.so.0": "libglib2.0-0",
    "libdbus-1.so.3": "libdbus-1-3",
    "libz.so.1": "zlib1g",
    "libzstd.so.1": "libzstd1",
}


def _load_error(soname: str) -> str | None:
    """Why the dynamic loader cannot load *soname* here, or None if it can."""
    import ctypes

    try:
        ctypes.CDLL(soname)
    except OSError as error:
        return str(error)
    return None


def missing_xcb_libraries() -> list[str]:
    """The sonames of :data:`XCB_LIBRARIES` that the dynamic loader cannot find.

    A library that is there but whose own dependency is missing does not
    count: the loader's message then names the dependency, which is checked
    (and reported) on its own.
    """
    missing = []
    for soname in XCB_LIBRARIES:
        error = _load_error(soname)
        if error is None:
            continue
        named = error.split(":", 1)[0].strip()
        if named == soname or named not in XCB_LIBRARIES:
            missing.append(soname)
    return missing


def _platform_is_xcb() -> bool:
    """Whether Qt will use its xcb (X11) platform plugin here."""
    chosen = os.environ.get("QT_QPA_PLATFORM", "")
    if chosen:
        return chosen.split(";", 1)[0].split(":", 1)[0].strip() == "xcb"
    # Unset: Qt on a Wayland session tries its wayland plugin first and xcb only after.
    if os.environ.get("WAYLAND_DISPLAY") and os.environ.get("XDG_SESSION_TYPE") == "wayland":
        return False
    return bool(os.environ.get("DISPLAY"))


def display_problem() -> str | None:
    """Why no window can open here, or None.

    Qt aborts the whole process when it finds no display, or when its X11
    (xcb) plugin misses a system library, and then names only the first
    library; saying so in one line, with what to do, is kinder.
    """
    if not sys.platform.startswith("linux"):
        return None
    if not os.environ.get("QT_QPA_PLATFORM") and not (
        os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")
    ):
        return (
            "no display found (DISPLAY and WAYLAND_DISPLAY are unset): run segstudio on a desktop, "
            "under a virtual display (xvfb-run segstudio), or headless with QT_QPA_PLATFORM=offscreen"
        )
    if not (_platform_is_xcb() and os.environ.get("DISPLAY")):
        return None
    missing = missing_xcb_libraries()
    if not missing:
        return None
    packages = " ".join(dict.fromkeys(XCB_LIBRARIES[soname] for soname in missing))
    return (
        f"the window cannot open: Qt's X11 (xcb) platform needs system libraries that are missing "
        f"({', '.join(missing)}); on Debian or Ubuntu install them with: sudo apt-get install -y {packages} "
        "(other distributions: the packages that hold these files), "
        "or run headless with QT_QPA_PLATFORM=offscreen"
    )


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
    from segstudio.gui import gui_thread_gc

    gui_thread_gc.install(app)  # Qt objects are never destroyed by a worker thread's collection
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
        count = len(project.entries) if project is not None else 0
        sys.stdout.write(f"segstudio: opened {count} image(s)\n" if opened else "segstudio: nothing opened\n")
        window.close()
        return 0 if opened and count else 1
    return app.exec()
