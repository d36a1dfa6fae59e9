"""The synthetic microscopy generator and the shipped sample set."""

import json

import cv2
import numpy as np
import pytest
from scipy import ndimage

from segstudio.errors import InvalidArgumentError
from segstudio.io.masks import read_mask
from segstudio.resources import SAMPLE, resource_path
from segstudio.synthetic import (
    BACKGROUND,
    CLASS_COLORS,
    CYTOPLASM,
    NUCLEUS,
    generate_sample,
    sample_plan,
    write_sample_set,
)


def test_same_seed_same_sample_other_seed_other_sample():
    a_image, a_mask = generate_sample(7, 128, 160)
    b_image, b_mask = generate_sample(7, 128, 160)
    c_image, _ = generate_sample(8, 128, 160)
    assert np.array_equal(a_image, b_image) and np.array_equal(a_mask, b_mask)
    assert not np.array_equal(a_image, c_image)
    assert a_image.shape == (128, 160, 3) and a_image.dtype == np.uint8
    assert a_mask.shape == (128, 160) and a_mask.dtype == np.uint8


def test_three_classes_in_sensible_proportions_and_nuclei_are_blue():
    image, mask = generate_sample(3, 256, 256)
    fractions = np.bincount(mask.ravel(), minlength=3) / mask.size
    assert set(np.unique(mask)) == {0, 1, 2}
    assert 0.2 < fractions[0] < 0.8 and fractions[1] > 0.1 and fractions[2] > 0.03
    blue = image[:, :, 2].astype(float)
    assert blue[mask == 2].mean() > blue[mask == 0].mean() + 40


def test_some_cells_touch():
    _, mask, instances = generate_sample(5, 256, 256, return_instances=True)
    cells = instances * (mask > 0)
    right = (cells[:, :-1] > 0) & (cells[:, 1:] > 0) & (cells[:, :-1] != cells[:, 1:])
    down = (cells[:-1, :] > 0) & (cells[1:, :] > 0) & (cells[:-1, :] != cells[1:, :])
    assert right.sum() + down.sum() > 0
    # and nuclei sit inside their cells
    labelled, count = ndimage.label(mask == 2)
    assert count >= 5


def test_bad_arguments_are_refused():
    with pytest.raises(InvalidArgumentError, match="seed"):
        generate_sample(-1, 64, 64)
    with pytest.raises(InvalidArgumentError, match="height"):
        generate_sample(1, 2, 64)


def test_shipped_sample_equals_a_fresh_regeneration(tmp_path):
    shipped = resource_path(*SAMPLE)
    write_sample_set(tmp_path / "fresh")
    plan = sample_plan()
    assert sorted(p.stem for p in (shipped / "images").glob("*.png")) == [stem for stem, *_ in plan]
    for stem, _, height, width in plan:
        fresh_image = cv2.imread(str(tmp_path / "fresh" / "images" / f"{stem}.png"))
        shipped_image = cv2.imread(str(shipped / "images" / f"{stem}.png"))
        assert shipped_image.shape == (height, width, 3)
        assert np.array_equal(fresh_image, shipped_image)
        assert np.array_equal(read_mask(tmp_path / "fresh" / "masks" / f"{stem}.png"),
                              read_mask(shipped / "masks" / f"{stem}.png"))
    info = json.loads((shipped / "classes.json").read_text())
    assert [c["name"] for c in info["classes"]] == ["background", "cytoplasm", "nucleus"]
    assert len(info["split"]["train"]) == 9 and len(info["split"]["val"]) == 3


def test_result_depends_on_nothing_but_the_arguments():
    first_image, first_mask = generate_sample(11, 96, 80)
    threads, global_state = cv2.getNumThreads(), np.random.get_state()
    try:
        cv2.setNumThreads(1)
        np.random.seed(12345)  # the global generator must play no part
        image, mask = generate_sample(11, 96, 80)
    finally:
        cv2.setNumThreads(threads)
        np.random.set_state(global_state)
    assert np.array_equal(first_image, image) and np.array_equal(first_mask, mask)


def test_ground_truth_is_the_scene_the_image_was_drawn_from():
    image, mask, instances = generate_sample(21, 200, 240, return_instances=True)
    # Every nucleus lies inside a cell body, with a cytoplasm rim around it.
    assert np.all(instances[mask == NUCLEUS] > 0)
    assert np.all(instances[mask == BACKGROUND] == 0)
    nuclei = (mask == NUCLEUS).astype(np.uint8)
    grown = cv2.dilate(nuclei, np.ones((3, 3), np.uint8))
    assert not np.any((grown > 0) & (mask == BACKGROUND))
    # The cytoplasm stain (green) marks the cells, the DNA stain (blue) the nuclei.
    green, blue = image[:, :, 1].astype(float), image[:, :, 2].astype(float)
    assert green[mask == CYTOPLASM].mean() > 3 * green[mask == BACKGROUND].mean()
    assert blue[mask == NUCLEUS].mean() > 2 * blue[mask == CYTOPLASM].mean()


@pytest.mark.parametrize("size", [(16, 16), (64, 96), (37, 121)])
def test_small_and_odd_sizes_work(size):
    image, mask = generate_sample(4, *size)
    assert image.shape == (*size, 3) and mask.shape == size
    assert mask.max() <= NUCLEUS


def test_write_sample_set_layout(tmp_path):
    written = write_sample_set(tmp_path, count=4, seed=9)
    assert written[-1] == tmp_path / "classes.json"
    info = json.loads((tmp_path / "classes.json").read_text())
    assert [tuple(c["color"]) for c in info["classes"]] == list(CLASS_COLORS)
    stems = sorted(info["split"]["train"] + info["split"]["val"])
    assert stems == [stem for stem, *_ in sample_plan(4, 9)]
    for stem, seed, height, width in sample_plan(4, 9):
        assert 256 <= height <= 512 and 256 <= width <= 512
        image = cv2.cvtColor(cv2.imread(str(tmp_path / "images" / f"{stem}.png")), cv2.COLOR_BGR2RGB)
        expected_image, expected_mask = generate_sample(seed, height, width)
        assert np.array_equal(image, expected_image)
        assert np.array_equal(read_mask(tmp_path / "masks" / f"{stem}.png"), expected_mask)
