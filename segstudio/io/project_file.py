"""Reading and checking ``project.json``; the format of its image entries.

:class:`~segstudio.io.project.Project` is built from what :func:`parse_project`
finds. Everything a project will write to is checked here, on opening: label
files must lie inside the project folder (links resolved), be of their
kind's type, not be a source image, and not be shared by two images.
An entry's optional ``uncertainty`` (the score of its last prediction) is
only a hint: a bad one is dropped with a warning, never refused.
"""

from __future__ import annotations

import json
import logging
import math
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from segstudio.annotation.classes import ClassList
from segstudio.annotation.document import ImageStatus
from segstudio.errors import InvalidArgumentError, UnreadableInputError
from segstudio.io.project_entry import ImageEntry
from segstudio.io.project_paths import UNSAFE_ID_CHARS, check_written_paths, inside, portable, resolve
from segstudio.io.project_volumes import LABEL_VOLUME_SUFFIX, volume_fields_from_json, volume_fields_to_json

PROJECT_FILE = "project.json"
LABELS_FOLDER = "labels"
FORMAT_NAME = "segstudio-project"
FORMAT_VERSION = 2

log = logging.getLogger(__name__)


@dataclass
class ParsedProject:
    """What ``project.json`` says, checked."""

    classes: ClassList
    entries: list[ImageEntry]
    current: int
    model: dict[str, Any]
    crf: dict[str, Any] | None


def read_project_file(project_file: Path) -> Any:
    """The JSON content of *project_file*.

    Raises
    ------
    UnreadableInputError
        Missing, unreadable or damaged (the message names the file).
    """
    try:
        text = project_file.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise UnreadableInputError(
            f"not a segstudio project: the folder has no {PROJECT_FILE}", path=project_file
        ) from None
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise UnreadableInputError(f"cannot read the project file: {reason}", path=project_file) from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise UnreadableInputError(
            f"the project file is damaged (invalid JSON at line {exc.lineno}, column {exc.colno})",
            path=project_file,
        ) from None
    except RecursionError:
        raise UnreadableInputError("the project file is damaged (nested too deeply to read)",
                                   path=project_file) from None


def parse_project(folder: Path, data: Any) -> ParsedProject:
    """Check the content of ``project.json`` of the project in *folder*.

    Raises
    ------
    InvalidArgumentError
        What is wrong, naming the image where it is about one.
    """
    if not isinstance(data, dict) or data.get("format") != FORMAT_NAME:
        raise InvalidArgumentError(
            f"not a segstudio project file (expected \"format\": \"{FORMAT_NAME}\")"
        )
    version = data.get("version")
    if isinstance(version, bool) or not isinstance(version, int) or version < 1:
        raise InvalidArgumentError(f"bad format version {version!r}")
    if version > FORMAT_VERSION:
        raise InvalidArgumentError(
            f"it was written by a newer segstudio (format version {version}); "
            f"this version reads up to {FORMAT_VERSION}. Update segstudio to open it"
        )
    classes = ClassList.from_list(data.get("classes", []))
    images = data.get("images", [])
    if not isinstance(images, list):
        raise InvalidArgumentError("\"images\" must be a list")
    entries: list[ImageEntry] = []
    seen: set[str] = set()
    for position, item in enumerate(images):
        entry = entry_from_json(folder, item, position)
        if entry.id.casefold() in seen:
            raise InvalidArgumentError(f"image id {entry.id!r} appears twice")
        seen.add(entry.id.casefold())
        entries.append(entry)
    check_written_paths(folder, entries)
    model = data.get("model", {})
    crf = data.get("crf") or None
    if not isinstance(model, dict):
        raise InvalidArgumentError("\"model\" must be a mapping")
    if crf is not None:
        from segstudio.refine import CRFParams

        crf = CRFParams.from_dict(crf).to_dict()
    current = data.get("current", 0)
    if isinstance(current, bool) or not isinstance(current, int):
        raise InvalidArgumentError(f"\"current\" must be an image index, got {current!r}")
    current = min(max(current, 0), max(len(entries) - 1, 0))
    return ParsedProject(classes, entries, current, model, crf)


def entry_from_json(folder: Path, item: Any, position: int) -> ImageEntry:
    """One image entry of ``project.json`` (*position* in the list, for messages)."""
    if not isinstance(item, Mapping):
        raise InvalidArgumentError(f"image {position} is not a mapping")
    try:
        image_id, source = item["id"], item["source"]
    except KeyError as exc:
        raise InvalidArgumentError(f"image {position} has no {exc.args[0]!r}") from None
    if (not isinstance(image_id, str) or not image_id or UNSAFE_ID_CHARS.search(image_id)
            or image_id.startswith(".")):
        raise InvalidArgumentError(f"image {position} has a bad id {image_id!r}")
    if not isinstance(source, str) or not source:
        raise InvalidArgumentError(f"image {image_id!r} has a bad source path {source!r}")
    status_value = item.get("status", ImageStatus.NEW.value)
    try:
        status = ImageStatus(status_value)
    except ValueError:
        raise InvalidArgumentError(f"image {image_id!r} has an unknown status {status_value!r}") from None
    kind, selector, description = volume_fields_from_json(item, image_id)
    suffix = LABEL_VOLUME_SUFFIX if kind == "volume" else ".png"
    labels = item.get("labels", f"{LABELS_FOLDER}/{image_id}{suffix}")
    if not isinstance(labels, str) or not labels:
        raise InvalidArgumentError(f"image {image_id!r} has a bad labels path {labels!r}")
    labels_path = inside(folder, labels)
    if labels_path is None:
        real = os.path.realpath(resolve(folder, labels))
        raise InvalidArgumentError(
            f"image {image_id!r} has its label file at {labels!r}, which leads to {real}, outside the "
            f"project folder (through a link, if the path looks inside); segstudio writes only inside "
            f"the project"
        )
    if labels_path.suffix.lower() != suffix:
        raise InvalidArgumentError(f"image {image_id!r} has a label file {labels!r} that is not a {suffix} file")
    return ImageEntry(image_id, resolve(folder, source), status, labels_path,
                      kind=kind, selector=selector, description=description,
                      uncertainty=_uncertainty_from_json(item, image_id))


def _uncertainty_from_json(item: Mapping, image_id: str) -> float | None:
    """An entry's optional uncertainty score, a number from 0 to 1; anything
    else (a hand edit) is dropped with a warning: the next prediction scores
    the image again."""
    value = item.get("uncertainty")
    if value is None:
        return None
    if (isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value)
            or not 0.0 <= value <= 1.0):
        log.warning("image %r: its uncertainty score %r is not a number from 0 to 1; ignored (the next "
                    "prediction scores the image again)", image_id, value)
        return None
    return float(value)


def entry_to_json(folder: Path, entry: ImageEntry) -> dict[str, Any]:
    """The ``project.json`` form of *entry* of the project in *folder*."""
    item: dict[str, Any] = {
        "id": entry.id,
        "source": portable(folder, entry.source),
        "status": entry.status.value,
        "labels": portable(folder, entry.labels_path),
    }
    if entry.uncertainty is not None:  # older versions ignore the key
        item["uncertainty"] = round(float(entry.uncertainty), 6)
    return volume_fields_to_json(item, entry.kind, entry.selector, entry.description)
