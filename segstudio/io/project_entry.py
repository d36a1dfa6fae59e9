"""One image or medical volume of a project, as ``project.json`` lists it."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from segstudio.annotation.document import ImageStatus
from segstudio.io.project_paths import same_file_key
from segstudio.io.project_volumes import selector_key


@dataclass
class ImageEntry:
    """One image (or medical volume) of a project.

    Attributes
    ----------
    id:
        Stable, file-safe name; the label file is ``labels/<id>.png``
        (``labels/<id>.npz`` for a volume).
    source:
        Absolute path of the image file, or of a volume's file or DICOM folder.
    status:
        Review status.
    labels_path:
        Absolute path of the label file (it may not exist yet).
    kind, selector, description:
        ``"image"`` or ``"volume"``; for a source holding several volumes the
        :func:`~segstudio.io.volume.read_volume` keywords choosing one
        (``{"series_uid": ...}``, ``{"volume_index": n}``); text shown after
        the file name (series description, ``vol k``; never patient data).
    uncertainty:
        How unsure the last prediction of the image was (its mean normalised
        entropy, 0..1, :func:`~segstudio.inference.uncertainty.mean_entropy`);
        None before the first. It orders Next image to annotate.
    """

    id: str
    source: Path
    status: ImageStatus
    labels_path: Path
    kind: str = "image"
    selector: dict[str, Any] | None = None
    description: str = ""
    uncertainty: float | None = None

    @property
    def is_volume(self) -> bool:
        """Whether this entry is a medical volume (one 3-D label map)."""
        return self.kind == "volume"

    @property
    def display_name(self) -> str:
        """The file name, with the description when there is one."""
        name = self.source.name
        if self.description and self.description != name:
            return f"{name} ({self.description})"
        return name

    def key(self) -> str:
        """What makes two entries the same: the real source path and the selector."""
        return same_file_key(self.source) + "|" + selector_key(self.selector)
