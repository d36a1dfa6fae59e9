"""``segstudio train SLIDE --labels STORE``: training from a whole slide's labelled regions only.

The slide is the demo's real cells, placed four times on glass in a pyramidal
OME-TIFF; the store labels three (or one) of them with the demo's expert masks.
"""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from segstudio import cli
from segstudio.io.masks import read_mask
from segstudio.io.pyramid import build_pyramid_steps
from segstudio.io.slide import Slide
from segstudio.io.tiled_labels import TiledLabels
from segstudio.models.checkpoint import load_checkpoint, read_meta
from segstudio.tasks import run_to_completion

SAMPLE = Path(__file__).resolve().parents[2] / "resources" / "sample"
TINY_UNET = ["--model", "unet", "--model-arg", "base_width=4"]
SIDE = 2048
#: where the four cell images lie; 256-pixel chunks leave an empty chunk between them
PLACES = ((100, 100), (100, 1100), (1100, 100), (1100, 1100))
CHUNK = 256


def _region(place: tuple[int, int], shape: tuple[int, int]) -> str:
    """The labelled box (whole chunks) of a mask of ``shape`` at ``place``, as history.json names it."""
    (y, x), (h, w) = place, shape
    return f"{y // CHUNK * CHUNK},{-(-(y + h) // CHUNK) * CHUNK},{x // CHUNK * CHUNK},{-(-(x + w) // CHUNK) * CHUNK}"


def _cells(number: int) -> tuple[np.ndarray, np.ndarray]:
    name = f"cells_{number:02d}.png"
    image = cv2.cvtColor(cv2.imread(str(SAMPLE / "images" / name), cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)
    return image, read_mask(SAMPLE / "masks" / name)


@pytest.fixture(scope="module")
def slide_and_masks(tmp_path_factory) -> tuple[Path, list[np.ndarray]]:
    folder = tmp_path_factory.mktemp("slide")
    canvas = np.full((SIDE, SIDE, 3), 236, np.uint8)
    masks = []
    for number, (y, x) in enumerate(PLACES, start=1):
        image, mask = _cells(number)
        canvas[y : y + image.shape[0], x : x + image.shape[1]] = image
        masks.append(mask)
    return run_to_completion(build_pyramid_steps(canvas, folder / "cells.ome.tif")), masks


def _store(folder: Path, masks: list[np.ndarray], labelled: tuple[int, ...]) -> Path:
    store = TiledLabels.create(folder, (SIDE, SIDE), chunk=CHUNK)
    for index in labelled:
        (y, x), (h, w) = PLACES[index], masks[index].shape
        store.write(((y, y + h), (x, x + w)), masks[index])
    store.flush()
    return folder


def _train(slide: Path, labels: Path, out: Path, *extra: str) -> int:
    return cli.main(["train", str(slide), "--labels", str(labels), "--out", str(out), "--crop", "128",
                     "--batch-size", "2", "--device", "cpu", *TINY_UNET, *extra])


def test_a_slide_trains_from_its_labelled_regions_only(slide_and_masks, tmp_path, monkeypatch) -> None:
    slide, masks = slide_and_masks
    regions = [_region(place, mask.shape) for place, mask in zip(PLACES, masks, strict=True)]
    labels = _store(tmp_path / "cells.labels.zarr", masks, (0, 1, 3))
    read = []
    real_read = Slide.read_region
    monkeypatch.setattr(Slide, "read_region", lambda self, level, box: read.append((level, box)) or
                        real_read(self, level, box))
    out = tmp_path / "run"
    assert _train(slide, labels, out, "--epochs", "3", "--lr", "0.01") == 0

    # only the labelled regions (and their context) were read at full resolution, never the slide
    level0 = sum((y1 - y0) * (x1 - x0) for level, ((y0, y1), (x0, x1)) in read if level == 0)
    assert 0 < level0 <= 3 * (768 + 2 * 64) ** 2 < 0.6 * SIDE * SIDE  # regions of at most 3 x 3 chunks
    history = json.loads((out / "history.json").read_text())
    assert history["slide"] == str(slide) and history["labels"] == str(labels)
    # three regions, 20 % of them (rounded up to one) for validation, seed 0
    assert sorted(history["train_regions"] + history["val_regions"]) == [regions[0], regions[1], regions[3]]
    assert len(history["val_regions"]) == 1
    epochs = history["epochs"]
    assert [e["epoch"] for e in epochs] == [1, 2, 3]
    assert epochs[-1]["train_loss"] < epochs[0]["train_loss"]  # it learned,
    assert epochs[-1]["val_mean_dice"] > epochs[0]["val_mean_dice"]  # and on the held-out region too
    assert epochs[-1]["val_mean_dice"] > 0.8

    for name in ("last.safetensors", "best.safetensors", "train_state.pt"):
        assert (out / name).is_file(), name
    model, meta = load_checkpoint(out / "best.safetensors")  # loads: weights and architecture agree
    with torch.no_grad():
        assert model.eval()(torch.zeros(1, 3, 64, 64)).shape == (1, 3, 64, 64)  # three classes out
    # no classes.json: the classes come from the store's labels (0, 1, 2), the input is RGB
    assert meta.num_classes == 3 and meta.in_channels == 3
    assert meta.class_names == ["background", "class 1", "class 2"]
    assert meta.provenance["data"] == str(slide) and meta.provenance["labels"] == str(labels)

    # the run continues as a folder's does
    assert _train(slide, labels, out, "--epochs", "3") == 1  # a run is there: --resume is needed
    assert _train(slide, labels, out, "--epochs", "4", "--lr", "0.01", "--resume") == 0
    resumed = json.loads((out / "history.json").read_text())
    assert [e["epoch"] for e in resumed["epochs"]] == [1, 2, 3, 4]
    assert resumed["val_regions"] == history["val_regions"]  # the same split


def test_the_split_is_by_region_and_follows_the_seed(slide_and_masks, tmp_path) -> None:
    slide, masks = slide_and_masks
    regions = [_region(place, mask.shape) for place, mask in zip(PLACES, masks, strict=True)]
    labels = _store(tmp_path / "l.zarr", masks, (0, 1, 2, 3))
    splits = {}
    for seed in (0, 1, 2, 0):
        out = tmp_path / f"run{seed}"
        shutil.rmtree(out, ignore_errors=True)
        assert _train(slide, labels, out, "--steps", "1", "--seed", str(seed), "--val-fraction", "0.5") == 0
        history = json.loads((out / "history.json").read_text())
        assert len(history["val_regions"]) == 2 and len(history["train_regions"]) == 2
        assert sorted(history["val_regions"] + history["train_regions"]) == sorted(regions)
        if seed in splits:
            assert history["val_regions"] == splits[seed]  # deterministic
        splits[seed] = history["val_regions"]
    assert len({tuple(v) for v in splits.values()}) > 1  # another seed, another split


def test_one_region_trains_without_validation_and_says_so(slide_and_masks, tmp_path, caplog) -> None:
    slide, masks = slide_and_masks
    regions = [_region(place, mask.shape) for place, mask in zip(PLACES, masks, strict=True)]
    labels = _store(tmp_path / "l.zarr", masks, (2,))
    out = tmp_path / "run"
    with caplog.at_level(logging.INFO):
        assert _train(slide, labels, out, "--steps", "3") == 0
    assert "one labelled region" in caplog.text and "nothing is validated" in caplog.text
    history = json.loads((out / "history.json").read_text())
    assert history["train_regions"] == [regions[2]] and history["val_regions"] == []
    assert read_meta(out / "best.safetensors").num_classes == 3


def test_classes_json_in_the_store_names_the_classes_and_may_fix_the_split(slide_and_masks, tmp_path,
                                                                          capsys) -> None:
    slide, masks = slide_and_masks
    regions = [_region(place, mask.shape) for place, mask in zip(PLACES, masks, strict=True)]
    labels = _store(tmp_path / "l.zarr", masks, (0, 1, 3))
    names = ["glass", "cytoplasm", "nucleus", "debris"]  # more classes than the labels hold
    classes = {"classes": [{"name": n, "color": [i * 60, 0, 0]} for i, n in enumerate(names)],
               "split": {"val": [regions[1]]}}
    (labels / "classes.json").write_text(json.dumps(classes))
    out = tmp_path / "run"
    assert _train(slide, labels, out, "--steps", "2") == 0
    history = json.loads((out / "history.json").read_text())
    assert history["val_regions"] == [regions[1]] and history["train_regions"] == [regions[0], regions[3]]
    meta = read_meta(out / "last.safetensors")
    assert meta.num_classes == 4 and meta.class_names == names

    # beside the store when not inside it; too few classes for the labels is named
    (labels / "classes.json").unlink()
    classes["classes"] = classes["classes"][:2]
    (tmp_path / "classes.json").write_text(json.dumps(classes))
    assert _train(slide, labels, tmp_path / "run2", "--steps", "2") == 1
    error = capsys.readouterr().err
    assert f"{labels}: the label store holds class 2 but {tmp_path / 'classes.json'} names 2 classes" in error


def test_missing_or_mismatched_inputs_are_named(slide_and_masks, tmp_path, capsys) -> None:
    slide, masks = slide_and_masks
    labels = _store(tmp_path / "l.zarr", masks, (0,))

    assert cli.main(["train", str(slide), "--out", str(tmp_path / "o"), *TINY_UNET]) == 1
    error = capsys.readouterr().err
    assert str(slide) in error and "--labels" in error

    assert _train(slide, tmp_path / "nowhere.zarr", tmp_path / "o") == 1
    error = capsys.readouterr().err
    assert str(tmp_path / "nowhere.zarr") in error and "not a label store" in error

    assert _train(tmp_path / "gone.ome.tif", labels, tmp_path / "o") == 1
    error = capsys.readouterr().err
    assert str(tmp_path / "gone.ome.tif") in error and "no such slide" in error

    other = tmp_path / "small.zarr"
    small = TiledLabels.create(other, (1000, 2048), chunk=256)
    small.write(((0, 10), (0, 10)), np.ones((10, 10), np.uint8))
    small.flush()
    assert _train(slide, other, tmp_path / "o") == 1
    error = capsys.readouterr().err
    assert str(other) in error and str(slide) in error and "2048 x 1000" in error and "2048 x 2048" in error

    empty = TiledLabels.create(tmp_path / "empty.zarr", (SIDE, SIDE), chunk=256)
    assert _train(slide, empty.folder, tmp_path / "o") == 1
    error = capsys.readouterr().err
    assert str(empty.folder) in error and "no labels" in error

    assert _train(tmp_path, labels, tmp_path / "o") == 1  # a folder is no slide
    assert f"{tmp_path}: not a slide file" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


def test_what_the_studio_painted_on_a_slide_trains_with_its_classes(slide_and_masks, tmp_path) -> None:
    from segstudio.annotation.classes import ClassList
    from segstudio.annotation.slide_document import SlideDocument

    slide, masks = slide_and_masks
    classes = ClassList.from_names(["glass", "cytoplasm", "nucleus"])
    document = SlideDocument.open(slide, tmp_path / "studio", classes)  # as the slide window keeps it
    for index in (0, 3):
        (y, x), mask = PLACES[index], masks[index]
        document.begin_stroke("accept")
        document._apply(((y, y + mask.shape[0]), (x, x + mask.shape[1])), mask)
        document.end_stroke()
    document.save()
    document.close()
    assert _train(slide, tmp_path / "studio" / "labels", tmp_path / "run", "--steps", "2") == 0
    history = json.loads((tmp_path / "run" / "history.json").read_text())
    assert history["classes"] == ["glass", "cytoplasm", "nucleus"]  # from the slide folder's classes.json
    assert len(history["train_regions"]) + len(history["val_regions"]) == 2
