"""Model versions of a project: every trained or imported model, kept side by side.

Layout, all inside the project's ``models/`` folder::

    models/versions.json          the list of versions and the active one
    models/v0001/model.safetensors
    models/v0001/meta.json        where it came from, what it was trained on, its scores
    models/v0002/...
    models/runs/<run>/            scratch folders of training runs

A version is written into a hidden folder first, renamed into place, and
only then entered in ``versions.json`` (itself replaced atomically): a run
that crashes half-way leaves, at worst, a hidden folder or an unlisted one,
never a half-written version in the list. Nothing outside ``models/`` is
touched, and only :meth:`VersionStore.set_active` (or an explicit
``activate=True``) changes which version is active, so a failed run never
does. Rolling back is ``set_active(older_id)``.

One window writes a project's store at a time; the training process only
writes its own run folder.
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import time
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from segstudio.errors import CheckpointError, ExportError, InvalidArgumentError, UnreadableInputError
from segstudio.io.masks import atomic_write_bytes
from segstudio.models.checkpoint import read_meta
from segstudio.serialize import json_safe

log = logging.getLogger(__name__)

MODELS_FOLDER = "models"
VERSIONS_FILE = "versions.json"
RUNS_FOLDER = "runs"
CHECKPOINT_NAME = "model.safetensors"
META_NAME = "meta.json"
FORMAT_NAME = "segstudio-model-versions"
FORMAT_VERSION = 1
META_FORMAT_NAME = "segstudio-model-version"
STATUSES = ("finished", "cancelled")

_ID_PATTERN = re.compile(r"^v(\d{4,})$")
_INCOMING_PREFIX = ".incoming-"
# hidden folders older than this are leftovers of a crash, not an add in progress
_STALE_INCOMING_S = 3600.0

#: keys :meth:`VersionStore.add` accepts in its ``meta`` mapping
META_KEYS = ("parent", "name", "images", "val_images", "settings", "curves", "scores", "parent_scores", "status",
             "collapse")


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


@dataclass
class VersionInfo:
    """One model version, as recorded in its ``meta.json``.

    Attributes
    ----------
    id:
        ``"v0001"``, ``"v0002"``, ... in order of creation.
    parent:
        The version it was fine-tuned from; ``None`` for an imported model.
    created:
        ISO 8601 time (UTC).
    name:
        A label for people (the imported file's name, or ``"fine-tuned from v0001"``).
    status:
        ``"finished"``, or ``"cancelled"`` for a run stopped after at least one epoch.
    origin:
        ``"training"`` or ``"import"``.
    images:
        The stems of the images it was trained on.
    val_images:
        The stems of the images it was scored on.
    settings:
        The run's :meth:`TrainConfig.to_dict`.
    curves:
        ``"loss"`` (per step), ``"epoch_loss"``, ``"val_mean_iou"`` and
        ``"val_mean_dice"`` (per epoch; ``None`` where not validated).
    scores:
        This version's per-class and mean IoU/Dice on ``val_images``
        (:meth:`Scores.to_dict`), or ``None``.
    parent_scores:
        The parent's scores on the same images, or ``None``.
    collapse:
        The run's collapse check (:meth:`CollapseReport.to_dict`), or ``None``
        when it was not checked (an import, a run from before the check).
    architecture, class_names:
        From the checkpoint.
    imported_from:
        For an import, the file it was copied from.
    folder:
        The version's folder.
    """

    id: str
    parent: str | None
    created: str
    name: str
    status: str
    origin: str
    images: list[str] = field(default_factory=list)
    val_images: list[str] = field(default_factory=list)
    settings: dict[str, Any] = field(default_factory=dict)
    curves: dict[str, list[Any]] = field(default_factory=dict)
    scores: dict[str, Any] | None = None
    parent_scores: dict[str, Any] | None = None
    collapse: dict[str, Any] | None = None
    architecture: str = ""
    class_names: list[str] = field(default_factory=list)
    imported_from: str | None = None
    folder: Path = field(default_factory=Path)

    @property
    def checkpoint(self) -> Path:
        """The version's weights."""
        return self.folder / CHECKPOINT_NAME

    @property
    def mean_iou(self) -> float | None:
        """Mean IoU on the validation images, if scored."""
        return None if not self.scores else self.scores.get("mean_iou")

    @property
    def collapsed(self) -> bool:
        """The run's model predicts one class, or no better than the most common class."""
        return bool(self.collapse and self.collapse.get("collapsed"))

    @property
    def parent_mean_iou(self) -> float | None:
        """The parent's mean IoU on the same images, if scored."""
        return None if not self.parent_scores else self.parent_scores.get("mean_iou")

    def to_json(self) -> dict[str, Any]:
        """The content of ``meta.json``."""
        return json_safe({
            "format": META_FORMAT_NAME,
            "version": FORMAT_VERSION,
            "id": self.id,
            "parent": self.parent,
            "created": self.created,
            "name": self.name,
            "status": self.status,
            "origin": self.origin,
            "images": list(self.images),
            "val_images": list(self.val_images),
            "settings": dict(self.settings),
            "curves": dict(self.curves),
            "scores": self.scores,
            "parent_scores": self.parent_scores,
            "collapse": self.collapse,
            "architecture": self.architecture,
            "class_names": list(self.class_names),
            "imported_from": self.imported_from,
        })

    @classmethod
    def from_json(cls, data: Any, folder: Path) -> VersionInfo:
        """Rebuild from ``meta.json`` content.

        Raises
        ------
        UnreadableInputError
            Not a version record, or one written by a newer segstudio.
        """
        path = folder / META_NAME
        if not isinstance(data, dict) or data.get("format") != META_FORMAT_NAME:
            raise UnreadableInputError("not a segstudio model version record", path=path)
        if not isinstance(data.get("version"), int) or data["version"] > FORMAT_VERSION:
            raise UnreadableInputError(
                f"written by a newer segstudio (format {data.get('version')!r}); update segstudio", path=path
            )
        try:
            return cls(
                id=str(data["id"]),
                parent=None if data.get("parent") is None else str(data["parent"]),
                created=str(data.get("created", "")),
                name=str(data.get("name", data["id"])),
                status=str(data.get("status", "finished")),
                origin=str(data.get("origin", "training")),
                images=[str(s) for s in data.get("images") or []],
                val_images=[str(s) for s in data.get("val_images") or []],
                settings=dict(data.get("settings") or {}),
                curves=dict(data.get("curves") or {}),
                scores=data.get("scores"),
                parent_scores=data.get("parent_scores"),
                collapse=data.get("collapse"),
                architecture=str(data.get("architecture", "")),
                class_names=[str(s) for s in data.get("class_names") or []],
                imported_from=data.get("imported_from"),
                folder=folder,
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise UnreadableInputError(f"the version record is damaged ({exc})", path=path) from None


class VersionStore:
    """The model versions of one project.

    Parameters
    ----------
    project_folder:
        The project's folder; the store lives in its ``models/`` sub-folder,
        which is created on the first write.
    """

    def __init__(self, project_folder: str | os.PathLike[str]) -> None:
        self.folder = Path(os.path.abspath(project_folder)) / MODELS_FOLDER
        self.index_path = self.folder / VERSIONS_FILE

    # ------------------------------------------------------------------
    # Reading
    # ------------------------------------------------------------------

    def _read_index(self) -> dict[str, Any]:
        if not self.index_path.is_file():
            return {"format": FORMAT_NAME, "version": FORMAT_VERSION, "active": None, "versions": []}
        try:
            data = json.loads(self.index_path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError) as exc:
            raise UnreadableInputError(f"cannot read the model versions file ({exc})", path=self.index_path) from None
        except json.JSONDecodeError as exc:
            raise UnreadableInputError(
                f"the model versions file is damaged (invalid JSON at line {exc.lineno})", path=self.index_path
            ) from None
        if not isinstance(data, dict) or data.get("format") != FORMAT_NAME:
            raise UnreadableInputError(
                f'not a model versions file (expected "format": "{FORMAT_NAME}")', path=self.index_path
            )
        version = data.get("version")
        if isinstance(version, bool) or not isinstance(version, int) or version < 1:
            raise UnreadableInputError(f"bad format version {version!r}", path=self.index_path)
        if version > FORMAT_VERSION:
            raise UnreadableInputError(
                f"written by a newer segstudio (format version {version}; this one reads up to "
                f"{FORMAT_VERSION}); update segstudio",
                path=self.index_path,
            )
        entries = data.get("versions")
        if not isinstance(entries, list) or not all(
            isinstance(e, dict) and isinstance(e.get("id"), str) and _ID_PATTERN.match(e["id"]) for e in entries
        ):
            raise UnreadableInputError('"versions" must be a list of {"id": "v0001", ...}', path=self.index_path)
        return data

    def _write_index(self, data: dict[str, Any]) -> None:
        text = json.dumps(json_safe(data), indent=2, ensure_ascii=False) + "\n"
        atomic_write_bytes(self.index_path, text.encode("utf-8"))

    def _ids(self) -> list[str]:
        return [e["id"] for e in self._read_index()["versions"]]

    def _read_info(self, version_id: str) -> VersionInfo:
        folder = self.folder / version_id
        path = folder / META_NAME
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise UnreadableInputError(f"model version {version_id} has no {META_NAME}", path=path) from None
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise UnreadableInputError(f"cannot read the version record ({exc})", path=path) from None
        return VersionInfo.from_json(data, folder)

    def list(self) -> list[VersionInfo]:
        """Every version, oldest first. A listed version whose folder is gone
        or damaged is left out with a warning."""
        infos = []
        for version_id in self._ids():
            try:
                infos.append(self._read_info(version_id))
            except UnreadableInputError as exc:
                log.warning("model version %s is unreadable and is not listed: %s", version_id, exc)
        return infos

    def get(self, version_id: str) -> VersionInfo:
        """One version.

        Raises
        ------
        InvalidArgumentError
            No version has that id.
        UnreadableInputError
            Its record cannot be read.
        """
        if version_id not in self._ids():
            raise InvalidArgumentError(f"there is no model version {version_id!r}", path=self.index_path)
        return self._read_info(version_id)

    @property
    def active_id(self) -> str | None:
        """The version the project predicts with (``None`` before the first one)."""
        active = self._read_index().get("active")
        return active if isinstance(active, str) else None

    def active(self) -> VersionInfo | None:
        """The active version's record, if any."""
        active = self.active_id
        return None if active is None else self.get(active)

    def checkpoint_path(self, version_id: str) -> Path:
        """The weights file of a version.

        Raises
        ------
        InvalidArgumentError
            No version has that id.
        CheckpointError
            Its weights file is missing.
        """
        if version_id not in self._ids():
            raise InvalidArgumentError(f"there is no model version {version_id!r}", path=self.index_path)
        path = self.folder / version_id / CHECKPOINT_NAME
        if not path.is_file():
            raise CheckpointError(f"the weights of model version {version_id} are missing", path=path)
        return path

    # ------------------------------------------------------------------
    # Writing
    # ------------------------------------------------------------------

    def set_active(self, version_id: str) -> None:
        """Make a version the active one (rolling back is choosing an older one).

        Raises
        ------
        InvalidArgumentError
            No version has that id.
        ExportError
            ``versions.json`` cannot be written.
        """
        data = self._read_index()
        if version_id not in [e["id"] for e in data["versions"]]:
            raise InvalidArgumentError(f"there is no model version {version_id!r}", path=self.index_path)
        self.checkpoint_path(version_id)
        data["active"] = version_id
        self._write_index(data)
        log.info("model version %s is now active", version_id)

    def new_run_dir(self) -> Path:
        """A fresh, empty folder for a training run under ``models/runs/``."""
        stamp = datetime.now(UTC).strftime("%Y%m%d-%H%M%S")
        path = self.folder / RUNS_FOLDER / f"run-{stamp}-{uuid.uuid4().hex[:6]}"
        try:
            path.mkdir(parents=True)
        except OSError as exc:
            raise ExportError(f"cannot create a folder for the training run ({exc})", path=path) from None
        return path

    def import_checkpoint(
        self, path: str | os.PathLike[str], *, name: str | None = None, activate: bool | None = None
    ) -> VersionInfo:
        """Register an external checkpoint (the demo model, one trained elsewhere) as a version.

        The file is copied; the new version has no parent.

        Parameters
        ----------
        path:
            A segstudio checkpoint (``.safetensors`` with metadata).
        name:
            A label; defaults to the file's name.
        activate:
            Make it active. ``None`` (the default) activates it only when the
            project has no active version yet.

        Raises
        ------
        CheckpointError
            The file is not a readable segstudio checkpoint.
        ExportError
            The version cannot be written.
        """
        path = Path(path)
        meta = read_meta(path)  # checks that the provenance is a mapping
        history = meta.provenance.get("history")
        curves = _epoch_curves([h for h in history if isinstance(h, Mapping)] if isinstance(history, list) else [])
        settings = meta.provenance.get("train_config")
        record = {
            "parent": None,
            "name": name or path.name,
            "settings": settings if isinstance(settings, dict) else {},
            "curves": curves,
            "status": "finished",
        }
        return self._add(path, record, origin="import", imported_from=os.fspath(path.resolve()),
                         activate=activate, move=False)

    def add(
        self,
        checkpoint_path: str | os.PathLike[str],
        meta: Mapping[str, Any],
        *,
        activate: bool = False,
        move: bool = False,
    ) -> VersionInfo:
        """Store a training run's checkpoint as a new version.

        Parameters
        ----------
        checkpoint_path:
            The run's checkpoint (e.g. the ``"checkpoint"`` of a training
            process's ``"finished"`` message).
        meta:
            Any of :data:`META_KEYS`: ``parent`` (a version id), ``name``,
            ``images``, ``val_images``, ``settings``, ``curves``,
            ``scores``, ``parent_scores``, ``status`` (``"finished"`` or
            ``"cancelled"``), ``collapse``. The ``"version_meta"`` of a ``"finished"``
            message fits as it is.
        activate:
            Make the new version active (by default the active one stays).
        move:
            Move the file in instead of copying it (falls back to a copy
            across file systems).

        Raises
        ------
        InvalidArgumentError
            Unknown keys, an unknown parent or status.
        CheckpointError
            The file is not a readable segstudio checkpoint.
        ExportError
            The version cannot be written.
        """
        unknown = sorted(set(meta) - set(META_KEYS))
        if unknown:
            raise InvalidArgumentError(f"unknown model version field(s): {', '.join(unknown)}")
        parent = meta.get("parent")
        if parent is not None and parent not in self._ids():
            raise InvalidArgumentError(f"the parent version {parent!r} does not exist", path=self.index_path)
        record = dict(meta)
        record.setdefault("name", f"fine-tuned from {parent}" if parent else "trained model")
        return self._add(Path(checkpoint_path), record, origin="training", imported_from=None,
                         activate=activate, move=move)

    def _add(
        self,
        source: Path,
        record: Mapping[str, Any],
        *,
        origin: str,
        imported_from: str | None,
        activate: bool | None,
        move: bool,
    ) -> VersionInfo:
        status = record.get("status", "finished")
        if status not in STATUSES:
            raise InvalidArgumentError(f"a version's status must be one of {', '.join(STATUSES)}, got {status!r}")
        checkpoint_meta = read_meta(source)
        self._drop_stale_incoming()
        incoming = self.folder / f"{_INCOMING_PREFIX}{uuid.uuid4().hex}"
        try:
            incoming.mkdir(parents=True)
            _place_file(source, incoming / CHECKPOINT_NAME, move=move)
            info = VersionInfo(
                id="", parent=record.get("parent"), created=_now(), name=str(record.get("name") or ""),
                status=status, origin=origin,
                images=[str(s) for s in record.get("images") or []],
                val_images=[str(s) for s in record.get("val_images") or []],
                settings=dict(record.get("settings") or {}), curves=dict(record.get("curves") or {}),
                scores=record.get("scores"), parent_scores=record.get("parent_scores"),
                collapse=record.get("collapse"), architecture=checkpoint_meta.architecture, class_names=list(checkpoint_meta.class_names),
                imported_from=imported_from,
            )
            info.id, info.folder = self._claim_folder(incoming, info)
        except OSError as exc:
            shutil.rmtree(incoming, ignore_errors=True)
            raise ExportError(f"cannot store the model version ({exc})", path=self.folder) from None
        except BaseException:
            shutil.rmtree(incoming, ignore_errors=True)
            raise
        try:
            data = self._read_index()
            data["versions"].append(
                {"id": info.id, "parent": info.parent, "created": info.created, "name": info.name,
                 "status": info.status}
            )
            if activate or (activate is None and not data.get("active")):
                data["active"] = info.id
            self._write_index(data)
        except BaseException:
            # not listed yet: take the folder away so the id is free again
            shutil.rmtree(info.folder, ignore_errors=True)
            raise
        log.info("stored model version %s (%s)", info.id, info.name)
        return info

    def _claim_folder(self, incoming: Path, info: VersionInfo) -> tuple[str, Path]:
        """Write ``meta.json`` and rename the folder to the next free id."""
        taken = set(self._ids())
        if self.folder.is_dir():
            taken.update(p.name for p in self.folder.iterdir() if _ID_PATTERN.match(p.name))
        number = max((int(_ID_PATTERN.match(t).group(1)) for t in taken), default=0) + 1
        for _ in range(100):
            version_id = f"v{number:04d}"
            info.id = version_id
            info.folder = self.folder / version_id
            text = json.dumps(info.to_json(), indent=2, ensure_ascii=False) + "\n"
            atomic_write_bytes(incoming / META_NAME, text.encode("utf-8"))
            try:
                # the rename is atomic and refuses an existing non-empty folder
                os.rename(incoming, info.folder)
            except OSError:
                if info.folder.exists():
                    number += 1
                    continue
                raise
            return version_id, info.folder
        raise ExportError("cannot find a free model version id", path=self.folder)

    def _drop_stale_incoming(self) -> None:
        if not self.folder.is_dir():
            return
        now = time.time()
        for path in self.folder.iterdir():
            if path.name.startswith(_INCOMING_PREFIX) and path.is_dir():
                try:
                    old = now - path.stat().st_mtime > _STALE_INCOMING_S
                except OSError:
                    continue
                if old:
                    shutil.rmtree(path, ignore_errors=True)


def _place_file(source: Path, target: Path, *, move: bool) -> None:
    if not source.is_file():
        raise CheckpointError("no such checkpoint file", path=source)
    if move:
        try:
            os.replace(source, target)
            return
        except OSError:
            pass  # another file system: copy below
    shutil.copyfile(source, target)
    with open(target, "rb") as written:
        os.fsync(written.fileno())
    if move:
        source.unlink(missing_ok=True)


def _epoch_curves(history: Sequence[Mapping[str, Any]]) -> dict[str, list[Any]]:
    """Per-epoch curves from a training history (see :class:`TrainResult`)."""
    return {
        "epoch_loss": [h.get("train_loss") for h in history],
        "val_mean_iou": [h.get("val_mean_iou") for h in history],
        "val_mean_dice": [h.get("val_mean_dice") for h in history],
    }


def curves_from_history(
    history: Sequence[Mapping[str, Any]], step_losses: Sequence[float] = ()
) -> dict[str, list[Any]]:
    """The ``curves`` of a version: per-step losses and per-epoch scores.

    Parameters
    ----------
    history:
        The run's epoch records (:attr:`TrainResult.history`).
    step_losses:
        The loss of every optimisation step, in order.
    """
    curves = _epoch_curves(history)
    curves["loss"] = [float(v) for v in step_losses]
    return json_safe(curves)
