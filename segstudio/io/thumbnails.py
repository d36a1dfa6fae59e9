"""Thumbnails of a project's images, read one after another off the GUI thread.

A core generator (design rule 2): it yields one :class:`Thumbnail` per 2-D
image, checks its cancel token between images, and never stops at an
unreadable one (that thumbnail carries the error instead). Volumes are left
out (they are read when opened), and so are files too large to read just for
a thumbnail.
"""

from __future__ import annotations

from collections.abc import Generator, Sequence
from dataclasses import dataclass

import numpy as np

from segstudio.errors import SegstudioError
from segstudio.tasks import CancelToken

#: files larger than this are not read for a thumbnail alone
MAX_THUMBNAIL_SOURCE_BYTES = 64 * 2**20


@dataclass(frozen=True)
class Thumbnail:
    """Image ``index``'s thumbnail (uint8 RGB or grey), or why it has none."""

    index: int
    image: np.ndarray | None = None
    error: SegstudioError | None = None


def thumbnail_steps(entries: Sequence, size: int = 64, *,
                    cancel: CancelToken | None = None) -> Generator[Thumbnail, None, int]:
    """Yield the thumbnail of each 2-D image among *entries* (ImageEntry),
    at most *size* pixels a side; returns how many were made."""
    import cv2

    from segstudio.io.images import read_image, to_uint8_display

    made = 0
    for index, entry in enumerate(entries):
        if cancel is not None:
            cancel.raise_if_cancelled()
        if entry.is_volume:
            continue
        try:
            if entry.source.stat().st_size > MAX_THUMBNAIL_SOURCE_BYTES:
                continue
            image = to_uint8_display(read_image(entry.source))
        except OSError as error:
            yield Thumbnail(index, error=SegstudioError(f"cannot read it ({error.strerror or error})",
                                                         path=entry.source))
            continue
        except SegstudioError as error:
            yield Thumbnail(index, error=error)
            continue
        scale = size / max(image.shape[:2])
        shape = (max(1, round(image.shape[1] * scale)), max(1, round(image.shape[0] * scale)))
        yield Thumbnail(index, image=cv2.resize(image, shape, interpolation=cv2.INTER_AREA))
        made += 1
    return made
