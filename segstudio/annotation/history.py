"""Undo and redo that store only the pixels an edit touched.

An :class:`Edit` keeps the bounding box of a change with the label values
before and after it, so a brush stroke over a 8192 x 8192 image costs a few
kilobytes, not 64 MB. :class:`History` bounds the total memory and forgets
the oldest edits first.
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from segstudio.errors import InvalidArgumentError

log = logging.getLogger(__name__)

DEFAULT_HISTORY_BYTES = 256 * 2**20


@dataclass(frozen=True)
class Edit:
    """One undoable change to a label map.

    Attributes
    ----------
    region:
        ``(slice_y, slice_x)`` of the changed box.
    old, new:
        Label values in ``region`` before and after the change.
    description:
        What the user did, for "Undo <description>" menu entries.
    """

    region: tuple[slice, slice]
    old: np.ndarray
    new: np.ndarray
    description: str

    def __post_init__(self) -> None:
        if self.old.shape != self.new.shape:
            raise InvalidArgumentError(
                f"an edit's old and new values differ in shape: {self.old.shape} vs {self.new.shape}"
            )

    @property
    def nbytes(self) -> int:
        """Memory held by the edit's two arrays."""
        return int(self.old.nbytes + self.new.nbytes)


class History:
    """Bounded undo/redo stacks of :class:`Edit`.

    Parameters
    ----------
    max_bytes:
        Upper bound on the memory of all stored edits. When a new edit takes
        the total above it, the oldest edits are dropped; the newest edit is
        always kept, even when it alone is larger than the bound.
    """

    def __init__(self, max_bytes: int = DEFAULT_HISTORY_BYTES) -> None:
        if max_bytes < 0:
            raise InvalidArgumentError(f"history size must not be negative, got {max_bytes}")
        self.max_bytes = int(max_bytes)
        self._undo: deque[Edit] = deque()
        self._redo: list[Edit] = []
        self._nbytes = 0

    def push(self, edit: Edit) -> None:
        """Record a new edit; the redo stack is cleared."""
        for dropped in self._redo:
            self._nbytes -= dropped.nbytes
        self._redo.clear()
        self._undo.append(edit)
        self._nbytes += edit.nbytes
        while self._nbytes > self.max_bytes and len(self._undo) > 1:
            oldest = self._undo.popleft()
            self._nbytes -= oldest.nbytes
            log.debug("history full: forgot %r (%d bytes)", oldest.description, oldest.nbytes)

    def undo(self) -> Edit | None:
        """Take the newest edit off the undo stack (onto the redo stack) and return it."""
        if not self._undo:
            return None
        edit = self._undo.pop()
        self._redo.append(edit)
        return edit

    def redo(self) -> Edit | None:
        """Take the last undone edit back onto the undo stack and return it."""
        if not self._redo:
            return None
        edit = self._redo.pop()
        self._undo.append(edit)
        return edit

    @property
    def can_undo(self) -> bool:
        return bool(self._undo)

    @property
    def can_redo(self) -> bool:
        return bool(self._redo)

    @property
    def undo_description(self) -> str | None:
        """Description of the edit :meth:`undo` would return, or None."""
        return self._undo[-1].description if self._undo else None

    @property
    def redo_description(self) -> str | None:
        """Description of the edit :meth:`redo` would return, or None."""
        return self._redo[-1].description if self._redo else None

    @property
    def nbytes(self) -> int:
        """Memory held by all stored edits, undo and redo together."""
        return self._nbytes

    def __len__(self) -> int:
        return len(self._undo) + len(self._redo)

    def convert(self, values: Callable[[np.ndarray], np.ndarray]) -> None:
        """Replace every edit's old and new values by ``values(array)``.

        Used when the label map changes type (uint8 <-> uint16). All edits are
        converted before any is replaced, so an error leaves the history as it
        was. The oldest edits are dropped if the bound is now exceeded.
        """
        undo = [self._converted(edit, values) for edit in self._undo]
        redo = [self._converted(edit, values) for edit in self._redo]
        self._undo, self._redo = deque(undo), redo
        self._nbytes = sum(edit.nbytes for edit in undo) + sum(edit.nbytes for edit in redo)
        while self._nbytes > self.max_bytes and len(self._undo) > 1:
            self._nbytes -= self._undo.popleft().nbytes

    @staticmethod
    def _converted(edit: Edit, values: Callable[[np.ndarray], np.ndarray]) -> Edit:
        return Edit(edit.region, values(edit.old), values(edit.new), edit.description)

    def clear(self) -> None:
        """Forget every edit."""
        self._undo.clear()
        self._redo.clear()
        self._nbytes = 0
