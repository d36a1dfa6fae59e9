"""The one-way imports of the design: only segstudio.gui touches Qt, and
``import segstudio`` stays cheap (no torch, no Qt)."""

import pkgutil
import subprocess
import sys
import textwrap

import segstudio

BLOCKED = ("PySide6", "superqt", "pyqtgraph", "shiboken6")


def _core_modules():
    names = []
    for info in pkgutil.walk_packages(segstudio.__path__, prefix="segstudio."):
        if info.name == "segstudio.gui" or info.name.startswith("segstudio.gui."):
            continue
        names.append(info.name)
    return names


def test_core_modules_import_with_qt_blocked():
    modules = _core_modules()
    assert "segstudio.models.fcn" in modules and "segstudio.cli" in modules
    script = textwrap.dedent(
        f"""
        import importlib, importlib.abc, sys
        BLOCKED = {BLOCKED!r}
        class Block(importlib.abc.MetaPathFinder):
            def find_spec(self, name, path, target=None):
                if name.split(".")[0] in BLOCKED:
                    raise ImportError("Qt is blocked in core modules: " + name)
                return None
        sys.meta_path.insert(0, Block())
        for name in {modules!r}:
            importlib.import_module(name)
        loaded = sorted(m for m in sys.modules if m.split(".")[0] in BLOCKED)
        assert not loaded, loaded
        """
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr


def test_importing_the_package_loads_neither_torch_nor_qt():
    script = "import sys, segstudio, segstudio.errors, segstudio.tasks; print(sorted(m for m in ('torch', 'PySide6', 'numpy') if m in sys.modules))"
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"
