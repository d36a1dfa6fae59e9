"""Renumbering every label file when a class is deleted, safe against a kill at any moment.

Deleting class ``i`` rewrites every label file that holds class ``i`` or a
class above it, and changes the class list in ``project.json``. A process
killed halfway through must not leave a project whose files disagree with
its class list (class "b" silently reading as "a"). The change goes in
four steps:

1. every renumbered file is written beside its target as
   ``.<name>.renumbered`` (atomically); nothing the project reads changes.
   A failure here removes them again: the deletion did not happen;
2. the journal ``.class-change.json`` is written (atomically), naming the
   class lists before and after and the staged files. From here on the
   deletion *will* happen;
3. each staged file is renamed over its target (``os.replace``, atomic);
4. ``project.json`` is saved with the new classes, then the journal removed.

Opening a project with a journal finishes the change (:func:`finish_interrupted`):
staged files still there are renamed over their targets (those already
renamed are done), the class list becomes the journal's and the journal
goes. Every step can be repeated, so a kill while finishing is finished at
the next open. Without a journal, staged files are leftovers of step 1 and
are removed.
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from segstudio.errors import UnreadableInputError
from segstudio.io.masks import atomic_write_bytes
from segstudio.io.project_paths import inside, portable_inside

log = logging.getLogger(__name__)

JOURNAL_FILE = ".class-change.json"
STAGED_SUFFIX = ".renumbered"
_FORMAT = "segstudio-class-change"


def staged_path(target: Path) -> Path:
    """Where the renumbered version of *target* waits for step 3."""
    return target.with_name(f".{target.name}{STAGED_SUFFIX}")


def is_staged(name: str) -> bool:
    return name.startswith(".") and name.endswith(STAGED_SUFFIX)


@dataclass
class ClassChange:
    """One class deletion under way in the project *folder* (see the module text)."""

    folder: Path
    before: list[dict[str, Any]]
    after: list[dict[str, Any]]
    targets: list[Path] = field(default_factory=list)

    @property
    def journal(self) -> Path:
        return self.folder / JOURNAL_FILE

    def stage(self, target: Path) -> Path:
        """Register *target* and return the path its renumbered version goes to (step 1)."""
        self.targets.append(target)
        return staged_path(target)

    def discard(self) -> None:
        """Undo step 1: remove the staged files; the project is as it was."""
        for target in self.targets:
            _remove(staged_path(target))
        self.targets.clear()

    def commit(self) -> None:
        """Step 2: write the journal. After this the change is finished even after a kill."""
        data = {
            "format": _FORMAT,
            "version": 1,
            "classes_before": self.before,
            "classes_after": self.after,
            "files": [portable_inside(self.folder, target) for target in self.targets],
        }
        atomic_write_bytes(self.journal, (json.dumps(data, indent=1) + "\n").encode("utf-8"))

    def apply(self) -> int:
        """Step 3: rename the staged files still there over their targets; how many."""
        moved = 0
        for target in self.targets:
            staged = staged_path(target)
            if staged.is_file():
                os.replace(staged, target)
                moved += 1
        return moved

    def finish(self) -> None:
        """After step 4 (``project.json`` saved): remove the journal."""
        self.journal.unlink(missing_ok=True)


def read_journal(folder: Path) -> ClassChange | None:
    """The interrupted change recorded in *folder*, or None.

    Raises
    ------
    UnreadableInputError
        The journal is damaged or names a file outside the project; the
        project is left as it is for the user to look at.
    """
    journal = folder / JOURNAL_FILE
    if not journal.is_file():
        return None
    try:
        data = json.loads(journal.read_text(encoding="utf-8"))
        if data.get("format") != _FORMAT or data.get("version") != 1:
            raise ValueError("not a class-change journal of this version")
        before, after, files = data["classes_before"], data["classes_after"], data["files"]
        if not all(isinstance(item, list) for item in (before, after, files)):
            raise ValueError("its class lists and files must be lists")
    except (OSError, ValueError, KeyError, AttributeError, RecursionError) as exc:
        raise UnreadableInputError(
            f"the record of an interrupted class deletion is damaged ({exc}); the label files may "
            f"disagree with the class list. Keep a copy of the project and remove this file to open it",
            path=journal,
        ) from None
    targets = []
    for name in files:
        target = inside(folder, name) if isinstance(name, str) else None
        if target is None:
            raise UnreadableInputError(
                f"the record of an interrupted class deletion names {name!r}, which is not a file "
                f"inside the project; not opened", path=journal)
        targets.append(target)
    return ClassChange(folder, before, after, targets)


def finish_interrupted(project: Any) -> None:
    """Finish the class deletion a killed process left in *project* (a
    :class:`~segstudio.io.project.Project` whose lock this process holds),
    or remove what it staged before its journal was written.

    Raises
    ------
    UnreadableInputError
        The journal is damaged or names a file that is not one of the
        project's label files.
    """
    from segstudio.annotation.classes import ClassList

    label_paths = {os.path.normcase(entry.labels_path) for entry in project.entries}
    change = read_journal(project.folder)
    if change is None:
        remove_stale_staged(sorted({Path(p).parent for p in label_paths} | {project.labels_folder}))
        return
    strangers = [t for t in change.targets if os.path.normcase(t) not in label_paths]
    if strangers:
        raise UnreadableInputError(
            f"the record of an interrupted class deletion names {strangers[0].name}, which is not a "
            f"label file of the project; not opened", path=change.journal)
    current = project.classes.to_list()
    if current in (change.before, change.after):
        change.apply()
        if current == change.before:
            project.classes = ClassList.from_list(change.after)
            project.save()
        log.warning("finished a class deletion that was interrupted: the classes are now %s",
                    ", ".join(project.classes.names))
    else:  # the project changed since: the record is stale
        log.warning("ignored the record of an interrupted class deletion in %s: the project's "
                    "classes no longer match it", project.folder)
        change.discard()
    change.finish()


def remove_stale_staged(folders: list[Path]) -> int:
    """Remove staged files of a deletion that never reached its journal; how many."""
    removed = 0
    for folder in folders:
        if not folder.is_dir() or folder.is_symlink():
            continue
        for path in folder.iterdir():
            if is_staged(path.name) and path.is_file() and not path.is_symlink():
                removed += _remove(path)
    return removed


def _remove(path: Path) -> int:
    try:
        path.unlink()
        return 1
    except FileNotFoundError:
        return 0
    except OSError as exc:
        log.warning("could not remove %s: %s", path, exc.strerror or exc)
        return 0
