"""The next image to annotate: the most uncertain one not yet reviewed.

Active learning as MONAI Label offers it from its server, in the window: each
prediction leaves a score with its image (Session.store_prediction, the mean
entropy of :mod:`segstudio.inference.uncertainty`, kept in project.json), the
Images panel can list the images in that order, and View > Next image to
annotate (N) opens the first one that is not reviewed. A training run that
adopts its new version re-runs the model on the unreviewed images (as it did
before), which scores them again; a version made active by hand says how to
do the same (Model > Re-score unreviewed images) without starting a run.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from segstudio.annotation.document import ImageStatus
from segstudio.inference.uncertainty import annotation_order

if TYPE_CHECKING:
    from segstudio.gui.main_window import MainWindow

MESSAGE_MS = 8000


def candidates(window: MainWindow) -> list[int]:
    """The images to annotate, first the most worth it: unreviewed, readable,
    never predicted first, then the most uncertain (the current one included)."""
    project = window.session.project
    if project is None:
        return []
    panel = window.images_panel
    entries = project.entries

    def done(index: int) -> bool:
        # the panel alone knows which images could not be read (never stored)
        unreadable = index < panel.count() and panel.status(index) == "unreadable"
        return entries[index].status == ImageStatus.REVIEWED or unreadable

    flags = [done(i) for i in range(len(entries))]
    order = annotation_order([e.uncertainty for e in entries], flags)
    return [i for i in order if not flags[i]]


def open_next(window: MainWindow) -> int:
    """View > Next image to annotate: open the most uncertain image not yet
    reviewed, other than the one shown, and say which in the status bar.
    Returns its index, -1 when there is none (the status bar says why)."""
    session = window.session
    bar = window.statusBar()
    if session.project is None or not session.project.entries:
        bar.showMessage("Open images first", 4000)
        return -1
    current = session.wanted_index
    left = candidates(window)
    others = [i for i in left if i != current]
    if not others:
        if left:
            name = session.project.entries[current].display_name
            bar.showMessage(f"{name}, shown now, is the only image left to review", MESSAGE_MS)
        else:
            bar.showMessage("Every image is reviewed: nothing left to annotate", MESSAGE_MS)
        return -1
    index = others[0]
    entry = session.project.entries[index]
    window.pick_image(index)
    score = entry.uncertainty
    why = "not predicted yet" if score is None else f"uncertainty {score:.2f}"
    rest = len(left) - 1
    bar.showMessage(f"Next to annotate: {entry.display_name} ({why}); {rest} other image"
                    f"{'' if rest == 1 else 's'} not yet reviewed", MESSAGE_MS)
    return index


def rescore(window: MainWindow) -> None:
    """Model > Re-score unreviewed images: run the model on every image not yet
    reviewed (the run a training run starts when it adopts a new version)."""
    if window.session.project is None:
        window.statusBar().showMessage("Open images first", 4000)
        return
    if window.runs.busy:
        window.statusBar().showMessage("A model run is already in progress (Cancel stops it)", 4000)
        return
    if not candidates(window):
        window.statusBar().showMessage("Every image is reviewed: nothing to re-score", 4000)
        return
    window.run_model_on_unreviewed()


def offer_rescoring(window: MainWindow, version_id: str) -> None:
    """After the user made a version active by hand: say how to score the
    unreviewed images with it (no run starts unasked)."""
    store = window.training.store
    if store is None or store.active_id != version_id or window.session.project is None:
        return  # activating failed (its error is on show)
    count = len(candidates(window))
    if count:
        window.statusBar().showMessage(
            f"model version {version_id} is active; Model > Re-score unreviewed images runs it on the "
            f"{count} image{'' if count == 1 else 's'} not yet reviewed, for Next image to annotate (N)", 10000)

