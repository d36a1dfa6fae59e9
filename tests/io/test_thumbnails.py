"""Thumbnails of a project's images: one per 2-D image, errors carried, never stopped by a bad file."""

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from segstudio.io.project_entry import ImageEntry
from segstudio.io.thumbnails import Thumbnail, thumbnail_steps
from segstudio.tasks import CancelToken, TaskCancelled
from tests.steps import drain


def _entry(path: Path, kind: str = "image") -> ImageEntry:
    return ImageEntry(id=path.stem, source=path, status="new", labels_path=path.with_suffix(".labels.png"),
                      kind=kind)


def test_each_image_gets_a_thumbnail_and_a_broken_one_its_error(tmp_path):
    wide = np.zeros((100, 400, 3), np.uint8)
    wide[:, 200:] = (255, 0, 0)
    Image.fromarray(wide).save(tmp_path / "wide.png")
    (tmp_path / "broken.png").write_bytes(b"not a png")
    Image.fromarray(np.full((30, 20), 4000, np.uint16)).save(tmp_path / "deep.png")
    entries = [_entry(tmp_path / "wide.png"), _entry(tmp_path / "broken.png"),
               _entry(tmp_path / "ct", kind="volume"), _entry(tmp_path / "deep.png")]
    steps = thumbnail_steps(entries, 64)
    items, made = drain(steps)
    assert [item.index for item in items] == [0, 1, 3]  # the volume is left out
    wide_small = items[0].image
    assert wide_small.shape == (16, 64, 3) and tuple(wide_small[8, 60]) == (255, 0, 0)
    assert items[1].image is None and "broken.png" in str(items[1].error)
    assert items[2].image.shape[:2] == (64, 43)
    assert made == 2


def test_reading_stops_when_cancelled(tmp_path):
    Image.fromarray(np.zeros((8, 8), np.uint8)).save(tmp_path / "a.png")
    token = CancelToken()
    steps = thumbnail_steps([_entry(tmp_path / "a.png")] * 3, 64, cancel=token)
    assert isinstance(next(steps), Thumbnail)
    token.cancel()
    with pytest.raises(TaskCancelled):
        next(steps)
