"""How a project names its images and stores their paths.

Ids are file-safe names (the label file is ``labels/<id>.png``); source
paths are stored relative to the project folder when the image is inside
or beside it, so a project moved together with its images still opens.
"""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Iterable
from pathlib import Path, PurePosixPath
from typing import Any

from segstudio.errors import InvalidArgumentError

UNSAFE_ID_CHARS = re.compile(r"[^A-Za-z0-9._-]+")
# Relative paths climbing more than this many folders are stored absolute:
# "../images/a.png" (beside the project) survives moving both, a path up to
# the file-system root does not.
MAX_PARENT_STEPS = 1


def make_id(name: str, key: str, taken: set[str]) -> str:
    """A file-safe id from *name*, made unique with a short hash of *key* (the path)."""
    stem = UNSAFE_ID_CHARS.sub("_", name).strip("._") or "image"
    if stem.casefold() not in taken:
        return stem
    digest = hashlib.sha1(key.encode("utf-8", "surrogatepass")).hexdigest()
    candidate = f"{stem}-{digest[:8]}"
    counter = 2
    while candidate.casefold() in taken:
        candidate = f"{stem}-{digest[:8]}-{counter}"
        counter += 1
    return candidate


def same_file_key(path: Path) -> str:
    return os.path.normcase(os.path.realpath(path))


def portable(folder: Path, path: Path) -> str:
    """*path* relative to *folder* (POSIX separators) when inside or beside it, else absolute."""
    try:
        relative = os.path.relpath(path, folder)
    except ValueError:  # another drive on Windows
        return os.fspath(path)
    parts = Path(relative).parts
    if sum(1 for p in parts if p == os.pardir) > MAX_PARENT_STEPS:
        return os.fspath(path)
    return PurePosixPath(*parts).as_posix()


def resolve(folder: Path, stored: str) -> Path:
    """Inverse of :func:`portable`: an absolute path."""
    path = Path(stored)
    if not path.is_absolute():
        path = folder / PurePosixPath(stored)
    return Path(os.path.normpath(path))


def is_inside(folder: Path, path: Path) -> bool:
    """Whether *path*, symbolic links resolved, lies inside *folder* (resolved too)."""
    root = os.path.realpath(folder)
    real = os.path.realpath(path)
    try:
        return os.path.commonpath([root, real]) == root and real != root
    except ValueError:  # another drive on Windows
        return False


def inside(folder: Path, stored: str) -> Path | None:
    """The path *stored* (relative to *folder*, or absolute) if it stays inside *folder*, else None."""
    path = resolve(folder, stored)
    return path if is_inside(folder, path) else None


def portable_inside(folder: Path, path: Path) -> str:
    """*path*, which lies inside *folder*, relative to it with POSIX separators."""
    return PurePosixPath(*Path(os.path.relpath(path, folder)).parts).as_posix()


def check_written_paths(folder: Path, entries: Iterable[Any]) -> None:
    """Refuse a project (its *entries*: ``id``, ``source``, ``labels_path``) whose
    label files would overwrite a source image or each other, or whose models
    folder leads outside it.

    Raises
    ------
    InvalidArgumentError
        Naming the image.
    """
    entries = list(entries)
    sources = {same_file_key(entry.source) for entry in entries}
    label_files: dict[str, str] = {}
    for entry in entries:
        key = same_file_key(entry.labels_path)
        if key in sources:
            raise InvalidArgumentError(
                f"image {entry.id!r} has its label file at a source image "
                f"({entry.labels_path.name}); source images are never written"
            )
        if key in label_files:
            raise InvalidArgumentError(
                f"images {label_files[key]!r} and {entry.id!r} share the label file {entry.labels_path.name}"
            )
        label_files[key] = entry.id
    models = folder / "models"
    if models.exists() and not is_inside(folder, models):
        raise InvalidArgumentError(
            f"its models folder is a link to {os.path.realpath(models)}, outside the project folder; "
            f"segstudio writes only inside the project"
        )
