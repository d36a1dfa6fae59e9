"""What "open this path" means for the studio (no Qt here).

- a project folder (it has ``project.json``), or that file: open it;
- a folder of images, DICOM files or NIfTI files: its project lives in
  ``<folder>/segstudio_project`` (opened again next time), or, when the
  folder is read-only (a mounted archive, a CD), in the per-user data
  directory. DICOM series and NIfTI files become volume entries, plain
  images image entries;
- image, DICOM or NIfTI files: a project in the per-user data directory
  named after the first file.
"""

from __future__ import annotations

import hashlib
import logging
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from segstudio.annotation.classes import ClassList
from segstudio.errors import UnreadableInputError
from segstudio.io.images import list_image_files
from segstudio.io.project import PROJECT_FILE, Project
from segstudio.io.project_volumes import (
    VolumeCandidate,
    find_volumes,
    folder_holds_volumes,
    is_volume_file,
    volume_file_stem,
)
from segstudio.io.volume import is_nifti_path

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


def open_or_create(path: Path, **access: Any) -> Project:
    """Open the project for *path*, making it first if there is none (see the module docstring).

    *access* goes to :meth:`Project.open` (``lock``, ``take_over``,
    ``read_only``); a project opened read-only is not extended with the
    folder's new images.

    Raises
    ------
    UnreadableInputError
        The path does not exist, or a folder holds nothing to annotate.
    ProjectLockedError
        ``lock`` was asked for and another studio holds the project.
    """
    path = Path(path)
    if path.is_file() and path.name == PROJECT_FILE:
        return Project.open(path.parent, **access)
    if path.is_dir() and (path / PROJECT_FILE).is_file():
        return Project.open(path, **access)
    if path.is_dir():
        nested = path / FOLDER_PROJECT
        if (nested / PROJECT_FILE).is_file():
            project = Project.open(nested, **access)
            if project.read_only is not None:
                return project
            with _released_on_error(project):
                images, volumes = _folder_contents(path, required=False)
                project.add_images(images)
                if volumes:
                    _add_folder_volumes(project, path)
                project.save()
            return project
        images, volumes = _folder_contents(path, required=True)
        target = nested if os.access(path, os.W_OK) else _user_project_folder(path)
        return _create_or_extend(target, images, [path] if volumes else [], **access)
    if path.is_file():
        return create_for_files([path], **access)
    raise UnreadableInputError("no such file or folder", path=path)


def create_for_files(paths: list[Path], **access: Any) -> Project:
    """A project in the per-user data directory for image, DICOM and NIfTI files.

    Raises
    ------
    UnreadableInputError
        A path does not exist (folders are expanded as for images).
    """
    paths = [Path(p) for p in paths]
    volumes = [p for p in paths if p.is_file() and is_volume_file(p)]
    others = [p for p in paths if p not in volumes]
    images = list_image_files(others) if others else []
    anchor = (images or volumes)[0]
    return _create_or_extend(_user_project_folder(anchor), images, volumes, **access)


def _folder_contents(folder: Path, *, required: bool) -> tuple[list[Path], bool]:
    """The folder's image files, and whether it holds DICOM or NIfTI volumes."""
    volumes = folder_holds_volumes(folder)
    try:
        images = list_image_files([folder])
    except UnreadableInputError as error:
        if not error.problem.startswith("no image files"):
            raise
        if required and not volumes:
            raise UnreadableInputError(
                f"{error.problem}, and no DICOM or NIfTI files (.dcm, .nii, .nii.gz)", path=folder
            ) from None
        images = []
    return images, volumes


def _add_folder_volumes(project: Project, folder: Path) -> None:
    """Add what is new in a folder that the project was made from.

    New NIfTI files are cheap to spot. DICOM series are looked for only when
    the project has none from this folder yet: that takes a header read of
    every file, too slow to repeat on every opening of a large series.
    """
    folder = Path(os.path.abspath(folder))
    known_dicom = any(
        e.is_volume and not is_nifti_path(e.source) and (e.source == folder or e.source.parent == folder)
        for e in project.entries
    )
    if not known_dicom:
        project.add_volume_candidates(_find_all([folder])[0])
        return
    known = {e.source for e in project.entries}
    new = [f for f in sorted(folder.iterdir()) if is_nifti_path(f) and f.is_file() and f not in known]
    project.add_volume_candidates(_find_all(new)[0])


def _find_all(paths: list[Path]) -> tuple[list[VolumeCandidate], list[UnreadableInputError]]:
    """The volumes at every path; a path that cannot be read is logged and left out."""
    found: list[VolumeCandidate] = []
    errors: list[UnreadableInputError] = []
    for path in paths:
        try:
            found.extend(find_volumes(path))
        except UnreadableInputError as error:
            log.warning("%s", error)
            errors.append(error)
    return found, errors


def _user_project_folder(anchor: Path) -> Path:
    digest = hashlib.sha1(str(anchor.resolve()).encode("utf-8")).hexdigest()[:8]
    return user_projects_dir() / f"{volume_file_stem(anchor) or 'images'}-{digest}"


def _create_or_extend(folder: Path, images: list[Path], volumes: list[Path], **access: Any) -> Project:
    """Open or make the project in *folder* and add what is new.

    A volume that cannot be read is logged and left out, so that the rest
    opens; only when nothing at all can be added is its error raised (before
    anything is written).
    """
    if (folder / PROJECT_FILE).is_file():
        project = Project.open(folder, **access)
        if project.read_only is not None:
            return project
        with _released_on_error(project):
            found, _errors = _find_all(volumes)
            project.add_images(images)
    else:
        found, errors = _find_all(volumes)
        if not images and not found and errors:
            raise errors[0]
        log.info("new project in %s", folder)
        project = Project.create(folder, images, default_classes())
        if access.get("lock"):
            project.take_lock()
    with _released_on_error(project):
        project.add_volume_candidates(found)
        project.save()
    return project


@contextmanager
def _released_on_error(project: Project) -> Iterator[None]:
    """Give the project's lock back if what follows its opening fails."""
    try:
        yield
    except BaseException:
        project.release()
        raise


def project_display_name(project) -> str:
    """What the user opened: the images' folder, not ``segstudio_project`` or
    the per-user data folder the project lives in."""
    folder = Path(project.folder)
    if folder.name == FOLDER_PROJECT:
        return folder.parent.name
    try:
        in_user_data = folder.resolve().is_relative_to(user_projects_dir().resolve())
    except OSError:
        in_user_data = False
    if in_user_data and project.entries:
        sources = [Path(e.source) for e in project.entries]
        try:
            common = Path(os.path.commonpath([str(s) for s in sources]))
        except ValueError:  # sources on different drives
            return folder.name
        if len(set(sources)) == 1 and not common.is_dir():
            common = common.parent
        return common.name or folder.name
    return folder.name
