"""Building a pyramid from a plain large image: levels, pixels, cancel leaves nothing."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import cv2
import numpy as np
import pytest

from segstudio.errors import InvalidArgumentError
from segstudio.io.pyramid import build_pyramid_steps, level_count
from segstudio.io.slide import Slide
from segstudio.tasks import CancelToken, TaskCancelled, run_to_completion

RETINA = Path(importlib.util.find_spec("skimage").origin).parent / "data" / "retina.jpg"


def _large_photo() -> np.ndarray:
    photo = cv2.cvtColor(cv2.imread(str(RETINA), cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)  # 1411 x 1411 fundus
    return np.ascontiguousarray(np.concatenate([photo, photo[:, ::-1]], axis=1)[:, :2500])


def test_a_photograph_becomes_a_pyramid_the_slide_reader_opens(tmp_path) -> None:
    image = _large_photo()
    progress = []
    path = run_to_completion(build_pyramid_steps(image, tmp_path / "retina.ome.tif", microns_per_pixel=(6.0, 6.0)),
                             progress.append)
    assert [p.done for p in progress] == [1, 2, 3, 4] and progress[-1].total == level_count(image.shape) == 4
    with Slide(path) as slide:
        assert [level.shape for level in slide.levels] == [(1411, 2500), (706, 1250), (353, 625), (177, 313)]
        assert slide.microns_per_pixel == (6.0, 6.0) and slide.channels == 3
        np.testing.assert_array_equal(slide.read_region(0, ((0, 1411), (0, 2500))), image)  # lossless
        half = slide.read_region(1, ((0, 706), (0, 1250)))
        expected = cv2.resize(image, (1250, 706), interpolation=cv2.INTER_AREA)
        np.testing.assert_array_equal(half, expected)  # area averaging
    assert not list(tmp_path.glob(".*partial"))


def test_a_16_bit_grey_image_keeps_its_values(tmp_path) -> None:
    image = (np.arange(900 * 1100, dtype=np.uint32).reshape(900, 1100) % 65521).astype(np.uint16)
    path = run_to_completion(build_pyramid_steps(image, tmp_path / "grey.ome.tif"))
    with Slide(path) as slide:
        assert slide.dtype == np.uint16 and slide.channels == 1 and len(slide.levels) == 3  # 1100, 550, 275
        np.testing.assert_array_equal(slide.read_region(0, ((0, 900), (0, 1100))), image)


def test_cancel_leaves_nothing_and_bad_images_are_refused(tmp_path) -> None:
    token = CancelToken()
    task = build_pyramid_steps(_large_photo(), tmp_path / "cancelled.ome.tif", cancel=token)
    next(task)  # level 0 written
    token.cancel()
    with pytest.raises(TaskCancelled):
        next(task)
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(InvalidArgumentError, match="uint8 or uint16"):
        run_to_completion(build_pyramid_steps(np.zeros((10, 10), np.float32), tmp_path / "f.ome.tif"))
    with pytest.raises(InvalidArgumentError, match="H x W"):
        run_to_completion(build_pyramid_steps(np.zeros((10, 10, 2), np.uint8), tmp_path / "f.ome.tif"))
