"""The synthetic microscopy generator and the shipped sample set."""

import json

import cv2
import numpy as np
import pytest
from scipy import ndimage

from segstudio.errors import InvalidArgumentError
from segstudio.io.masks import read_mask
from segstudio.resources import SAMPLE, resource_path
from segstudio.synthetic import generate_sample, sample_plan, write_sample_set


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
