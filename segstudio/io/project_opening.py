"""What "open this path" means for the studio (no Qt here).

- a project folder (it has ``project.json``), or that file: open it;
- a folder of images: its project lives in ``<folder>/segstudio_project``
  (opened again next time), or, when the folder is read-only (a mounted
  archive, a CD), in the per-user data directory;
- image files: a project in the per-user data directory named after the
  first file.
"""

from __future__ import annotations

import hashlib
import logging
import os
from pathlib import Path

from segstudio.annotation.classes import ClassList
from segstudio.errors import UnreadableInputError
from segstudio.io.images import list_image_files
from segstudio.io.project import PROJECT_FILE, Project

log = logging.getLogger(__name__)

FOLDER_PROJECT = "segstudio_project"


def default_classes() -> ClassList:
    classes = ClassList()
    classes.add("background", (0, 0, 0))
    classes.add("foreground", (230, 25, 75))
    return classes


def user_projects_dir() -> Path:
    from platformdirs import user_data_dir

    return Path(user_data_dir("segstudio", appauthor=False)) / "projects"


def open_or_create(path: Path) -> Project:
    path = Path(path)
    if path.is_file() and path.name == PROJECT_FILE:
        return Project.open(path.parent)
    if path.is_dir() and (path / PROJECT_FILE).is_file():
        return Project.open(path)
    if path.is_dir():
        nested = path / FOLDER_PROJECT
        if (nested / PROJECT_FILE).is_file():
            project = Project.open(nested)
            project.add_images(list_image_files([path]))
            project.save()
            return project
        images = list_image_files([path])  # raises when there is none
        target = nested if os.access(path, os.W_OK) else _user_project_folder(path)
        return _create_or_extend(target, images)
    if path.is_file():
        return create_for_files([path])
    raise UnreadableInputError("no such file or folder", path=path)


def create_for_files(paths: list[Path]) -> Project:
    images = list_image_files(paths)
    return _create_or_extend(_user_project_folder(images[0]), images)


def _user_project_folder(anchor: Path) -> Path:
    digest = hashlib.sha1(str(anchor.resolve()).encode("utf-8")).hexdigest()[:8]
    return user_projects_dir() / f"{anchor.stem or 'images'}-{digest}"


def _create_or_extend(folder: Path, images: list[Path]) -> Project:
    if (folder / PROJECT_FILE).is_file():
        project = Project.open(folder)
        project.add_images(images)
        project.save()
        return project
    log.info("new project in %s", folder)
    return Project.create(folder, images, default_classes())
