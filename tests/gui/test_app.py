"""The application shell: a terminated studio saves and gives its project back; a machine
without the system libraries of Qt's X11 plugin is told which packages to install."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
from pathlib import Path

import pytest

from segstudio.gui import app as app_module
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


# ------------------------------------------------------------------ missing system libraries for the window

@pytest.fixture
def x11_session(monkeypatch):
    """A Linux desktop on X11, with Qt left to choose its platform (xcb)."""
    monkeypatch.setattr(app_module.sys, "platform", "linux")
    monkeypatch.delenv("QT_QPA_PLATFORM", raising=False)
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)
    monkeypatch.delenv("XDG_SESSION_TYPE", raising=False)
    monkeypatch.setenv("DISPLAY", ":0")


def _loader_missing(monkeypatch, *absent, dependency_of=None):
    """The dynamic loader as on a machine without *absent*; *dependency_of* maps a
    present library to the absent one it needs (the loader then names that one)."""
    dependency_of = dependency_of or {}

    def load_error(soname):
        if soname in absent:
            return f"{soname}: cannot open shared object file: No such file or directory"
        if soname in dependency_of:
            return f"{dependency_of[soname]}: cannot open shared object file: No such file or directory"
        return None

    monkeypatch.setattr(app_module, "_load_error", load_error)


def test_missing_xcb_libraries_are_named_with_the_packages_to_install(x11_session, monkeypatch):
    _loader_missing(monkeypatch, "libxcb-cursor.so.0", "libxcb-icccm.so.4", "libxcb-keysyms.so.1",
                    dependency_of={"libxcb-image.so.0": "libxcb-util.so.1"})
    problem = app_module.display_problem()
    assert problem is not None and "\n" not in problem
    assert "libxcb-cursor.so.0, libxcb-icccm.so.4, libxcb-keysyms.so.1" in problem
    assert "sudo apt-get install -y libxcb-cursor0 libxcb-icccm4 libxcb-keysyms1 " in problem
    assert "libxcb-image0" not in problem  # installed; its own dependency is what is missing
    assert "QT_QPA_PLATFORM=offscreen" in problem


def test_a_dependency_missing_behind_a_present_library_is_the_one_named(x11_session, monkeypatch):
    _loader_missing(monkeypatch, "libxcb-util.so.1", dependency_of={"libxcb-image.so.0": "libxcb-util.so.1"})
    problem = app_module.display_problem()
    assert "(libxcb-util.so.1)" in problem and "sudo apt-get install -y libxcb-util1 (" in problem


def test_with_every_library_present_the_window_may_open(x11_session, monkeypatch):
    _loader_missing(monkeypatch)
    assert app_module.display_problem() is None


@pytest.mark.parametrize("environment, checked", [
    ({"QT_QPA_PLATFORM": "xcb"}, True),
    ({"QT_QPA_PLATFORM": "offscreen"}, False),
    ({"QT_QPA_PLATFORM": "wayland"}, False),
    ({"WAYLAND_DISPLAY": "wayland-0", "XDG_SESSION_TYPE": "wayland"}, False),  # Qt tries wayland first
    ({"WAYLAND_DISPLAY": "wayland-0", "XDG_SESSION_TYPE": "x11"}, True),
])
def test_the_libraries_are_checked_only_when_qt_will_use_xcb(x11_session, monkeypatch, environment, checked):
    for name, value in environment.items():
        monkeypatch.setenv(name, value)
    _loader_missing(monkeypatch, "libxcb-cursor.so.0")
    assert (app_module.display_problem() is not None) is checked


def test_no_display_is_still_said_first(x11_session, monkeypatch):
    monkeypatch.delenv("DISPLAY")
    _loader_missing(monkeypatch, "libxcb-cursor.so.0")
    assert app_module.display_problem().startswith("no display found")


def test_main_exits_with_the_message_instead_of_qt_aborting(x11_session, monkeypatch, capsys):
    _loader_missing(monkeypatch, "libxcb-cursor.so.0")
    monkeypatch.setattr(app_module, "create_application", lambda *a: pytest.fail("Qt was started"))
    assert app_module.main() == 1
    err = capsys.readouterr().err
    assert err.startswith("segstudio: error: the window cannot open") and "libxcb-cursor0" in err


def test_the_real_loader_reads_a_present_and_an_absent_library():
    assert app_module._load_error("libc.so.6") is None
    assert app_module._load_error("libsegstudio-nonexistent.so.7").startswith("libsegstudio-nonexistent.so.7:")


@pytest.mark.skipif(not shutil.which("readelf"), reason="needs readelf (binutils)")
def test_the_table_covers_what_the_installed_xcb_plugin_links_against():
    """A PySide6 upgrade that links the plugin against a new system library fails here."""
    import PySide6

    qt = Path(PySide6.__file__).parent / "Qt"
    bundled = {path.name for path in (qt / "lib").iterdir()}
    always_there = {"libc.so.6", "libm.so.6", "libstdc++.so.6", "libgcc_s.so.1", "libdl.so.2",
                    "libpthread.so.0", "librt.so.1", "ld-linux-x86-64.so.2", "ld-linux-aarch64.so.1"}
    needed = set()
    for binary in [qt / "plugins" / "platforms" / "libqxcb.so",
                   *(qt / "lib" / f"libQt6{name}.so.6" for name in ("XcbQpa", "Gui", "Core", "DBus"))]:
        if not binary.exists():
            continue
        dynamic = subprocess.run(["readelf", "-d", str(binary)], capture_output=True, text=True, check=True).stdout
        needed |= {line.split("[", 1)[1].rstrip("]") for line in dynamic.splitlines() if "(NEEDED)" in line}
    assert "libxcb-cursor.so.0" in needed
    assert needed - bundled - always_there <= set(app_module.XCB_LIBRARIES)


def test_the_readme_install_line_covers_every_package():
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text(encoding="utf-8")
    quick = readme.split("## Quick start", 1)[1].split("\n## ", 1)[0]
    line = quick.split("`sudo apt-get install -y ", 1)[1].split("`", 1)[0]
    essential = {"zlib1g", "libzstd1"}  # Debian priority "required": on every system
    assert set(app_module.XCB_LIBRARIES.values()) - essential == set(line.split())
