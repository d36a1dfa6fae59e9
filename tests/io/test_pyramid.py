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


@pytest.mark.parametrize("layout", ["tiles", "strips"])
def test_a_one_level_tiff_becomes_a_pyramid_band_by_band(tmp_path, layout) -> None:
    import tifffile

    from segstudio.io.pyramid import build_pyramid_from_slide_steps, image_levels
    from segstudio.io.slide import Slide

    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (1500, 2100, 3), dtype=np.uint8)
    source = tmp_path / "mosaic.tif"
    options = {"tile": (256, 256)} if layout == "tiles" else {"rowsperstrip": 64}
    tifffile.imwrite(source, image, photometric="rgb", resolution=(40000, 40000), resolutionunit="CENTIMETER",
                     **options)
    with Slide(source) as slide:
        assert len(slide.levels) == 1
        progress = []
        target = run_to_completion(build_pyramid_from_slide_steps(slide, tmp_path / "mosaic.ome.tif"),
                                   progress.append)
    assert [p.done for p in progress] == [1, 2, 3, 4] and not list(tmp_path.glob(".pyramid-*"))
    with Slide(target) as pyramid:
        expected = list(image_levels(image))
        assert [level.shape for level in pyramid.levels] == [e.shape[:2] for e in expected]
        assert pyramid.microns_per_pixel == pytest.approx((0.25, 0.25))
        np.testing.assert_array_equal(pyramid.read_region(0, ((0, 1500), (0, 2100))), image)
        level1 = pyramid.read_region(1, ((0, 750), (0, 1050)))
        blocks = image.reshape(750, 2, 1050, 2, 3).astype(float).mean(axis=(1, 3))
        assert np.abs(level1 - blocks).max() <= 0.5 + 1e-9  # exact 2 x 2 means, rounded
        # 375 x 525 at level 2 (odd): level 3 halves it in 2 x 2 blocks, the last row and column repeated
        level2 = pyramid.read_region(2, ((0, 375), (0, 525))).astype(float)
        padded = np.pad(level2, ((0, 1), (0, 1), (0, 0)), mode="edge")
        blocks3 = padded.reshape(188, 2, 263, 2, 3).mean(axis=(1, 3))
        assert np.abs(pyramid.read_region(3, ((0, 188), (0, 263))) - blocks3).max() <= 0.5 + 1e-9


def test_a_file_pyramid_streams_tiffs_and_reads_other_images_whole(tmp_path, monkeypatch) -> None:
    import tifffile

    from segstudio import cli
    from segstudio.io import images

    image = np.random.default_rng(1).integers(0, 65535, (700, 900), dtype=np.uint16)
    tifffile.imwrite(tmp_path / "grey.tif", image, tile=(128, 128))
    cv2.imwrite(str(tmp_path / "grey.png"), image)
    read_whole = []
    real_read = images.read_image
    monkeypatch.setattr(images, "read_image", lambda path: (read_whole.append(Path(path).name), real_read(path))[1])
    assert cli.main(["pyramid", str(tmp_path / "grey.tif"), "--out", str(tmp_path / "a.ome.tif")]) == 0
    assert cli.main(["pyramid", str(tmp_path / "grey.png"), "--out", str(tmp_path / "b.ome.tif")]) == 0
    assert read_whole == ["grey.png"]  # the TIFF was read band by band
    for name in ("a.ome.tif", "b.ome.tif"):
        with Slide(tmp_path / name) as slide:
            assert slide.dtype == np.uint16 and len(slide.levels) == 2
            np.testing.assert_array_equal(slide.read_region(0, ((0, 700), (0, 900))), image)
