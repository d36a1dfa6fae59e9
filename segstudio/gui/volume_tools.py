"""Edits of a whole volume started from the Edit menu or the Volume dock.

Kept out of main_window.py: the window only connects the Volume dock's
button to the action built in studio_actions.build_menus.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from segstudio.annotation.interpolate import (
    annotated_slices,
    interpolate_between_slices,
)
from segstudio.gui.canvas.slicing import AXES

if TYPE_CHECKING:
    from segstudio.gui.main_window import MainWindow

log = logging.getLogger(__name__)

FILL_DESCRIPTION = "Fill between slices"
_MESSAGE_MS = 6000


def _slices(indices) -> str:
    """Slice numbers as the Volume dock shows them (from 1)."""
    numbers = [str(i + 1) for i in indices]
    return ", ".join(numbers) if len(numbers) <= 6 else f"{', '.join(numbers[:3])}, …, {', '.join(numbers[-2:])}"


def fill_between_slices(window: MainWindow) -> bool:
    """Edit > Fill between slices: interpolate the active class across the slices of the current view.

    Every slice between two slices painted with the active class (along the
    axis of the shown view) that holds none of it gets a shape interpolated
    from its two neighbours, on unlabelled voxels only, as one undo step.
    The status bar says what was filled, or why nothing was.

    Returns
    -------
    bool
        Whether any voxel changed.
    """
    document, canvas = window.session.document, window.canvas
    say = window.statusBar().showMessage
    if document is None:
        say("Fill between slices: open a volume first", _MESSAGE_MS)
        return False
    if not document.is_volume or canvas.slicer is None:
        say("Fill between slices works on volumes (CT, MR…); this is a 2-D image", _MESSAGE_MS)
        return False
    if document.read_only or window.session.read_only:
        say("This project is open read-only: Fill between slices changes nothing", _MESSAGE_MS)
        return False
    classes, class_index = window.session.classes, canvas.active_class
    if not 0 <= class_index < min(len(classes), document.unlabelled):
        say("Fill between slices: pick a class first", _MESSAGE_MS)
        return False
    name, axis = classes[class_index].name, canvas.slicer.axis
    view = AXES[axis]
    painted = annotated_slices(document.labels, class_index, axis)
    if len(painted) < 2:
        where = f"only {view} slice {_slices(painted)}" if len(painted) else f"no {view} slice"
        say(f"Fill between slices: class '{name}' is painted on {where}; paint it on at least two "
            f"{view} slices", _MESSAGE_MS)
        return False
    fill = interpolate_between_slices(document.labels, class_index, axis, document.unlabelled)
    if fill is None or not document.apply(fill.region, fill.mask, class_index, FILL_DESCRIPTION):
        say(f"Fill between slices: nothing to fill for class '{name}' between {view} slices {_slices(painted)} "
            "(no unpainted slice between them, or it is labelled already)", _MESSAGE_MS)
        return False
    count = len(fill.filled)
    message = (f"Filled {count} {view} slice{'s' if count != 1 else ''} of class '{name}' between slices "
               f"{fill.annotated[0] + 1} and {fill.annotated[-1] + 1} ({fill.voxels} voxels)")
    log.info(message)
    say(message, _MESSAGE_MS)
    return True
