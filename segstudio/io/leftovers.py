"""Temporary files that a killed write left behind in a project.

Every atomic write in segstudio goes to ``.<name>.<random>.tmp`` next to its
target and is renamed over it when complete. A process killed in between
leaves that file; nothing ever reads it, so it only takes space. Opening a
project removes the stale ones: older than a minute in the project folder
and its labels folder (a label file is written in about a second), older
than an hour under ``models/`` (a VGG checkpoint with its optimizer state
can take minutes to write, and a training run of another window may be
writing one now).
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Iterable
from pathlib import Path

log = logging.getLogger(__name__)

#: seconds after which a temporary file is a leftover, by where it lies
LABELS_AGE_S = 60.0
MODELS_AGE_S = 3600.0


def is_temporary(name: str) -> bool:
    """Whether *name* is one of our atomic writes' temporary files."""
    return name.startswith(".") and name.endswith(".tmp") and name.count(".") >= 3


def _candidates(folder: Path, recursive: bool) -> Iterable[Path]:
    if not folder.is_dir() or folder.is_symlink():
        return
    for root, _dirs, files in os.walk(folder):  # symlinked folders are not followed
        yield from (Path(root) / name for name in files if is_temporary(name))
        if not recursive:
            return


def remove_leftovers(project_folder: Path, label_folders: Iterable[Path] = (), *, now: float | None = None) -> int:
    """Remove stale temporary files of *project_folder* (its own folder,
    ``models/`` and the *label_folders*, which must lie inside it); the
    number removed. Symbolic links are never followed or removed.

    A file that cannot be removed (permissions, a read-only disk) is left
    and logged; opening the project goes on.
    """
    now = time.time() if now is None else now
    places = [(project_folder, False, LABELS_AGE_S), (project_folder / "models", True, MODELS_AGE_S)]
    places += [(Path(folder), False, LABELS_AGE_S) for folder in label_folders]
    removed = 0
    for folder, recursive, age in places:
        for path in _candidates(folder, recursive):
            try:
                if path.is_symlink() or not path.is_file() or now - path.stat().st_mtime < age:
                    continue
                path.unlink()
                removed += 1
            except OSError as exc:
                log.warning("could not remove the leftover temporary file %s: %s", path, exc.strerror or exc)
    if removed:
        log.info("removed %d temporary file(s) left by an interrupted write in %s", removed, project_folder)
    return removed
