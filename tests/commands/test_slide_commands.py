"""``segstudio pyramid`` and ``segstudio predict-slide`` end to end, on the demo's real cell images."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import zarr

from segstudio import cli
from segstudio.io.slide import Slide

REPO = Path(__file__).resolve().parents[2]
CELLS = REPO / "resources" / "sample" / "images" / "cells_01.png"
MODEL = REPO / "resources" / "models" / "demo_unet.safetensors"


def test_pyramid_then_predict_slide_then_resume(tmp_path, capsys) -> None:
    canvas = np.full((1024, 1536, 3), 236, np.uint8)  # glass with one field of real cells
    cells = cv2.imread(str(CELLS), cv2.IMREAD_COLOR)
    canvas[100 : 100 + cells.shape[0], 80 : 80 + cells.shape[1]] = cells[:, :, ::-1]
    plain = tmp_path / "scan.png"
    cv2.imwrite(str(plain), canvas[:, :, ::-1])
    slide_path = tmp_path / "scan.ome.tif"
    assert cli.main(["pyramid", str(plain), "--out", str(slide_path)]) == 0
    with Slide(slide_path) as slide:
        assert [level.shape for level in slide.levels] == [(1024, 1536), (512, 768), (256, 384)]
        np.testing.assert_array_equal(slide.read_region(0, ((0, 1024), (0, 1536))), canvas)

    out = tmp_path / "out"
    command = ["predict-slide", str(slide_path), "--checkpoint", str(MODEL), "--out", str(out),
               "--device", "cpu", "--precision", "fp32"]
    assert cli.main(command) == 0
    store = zarr.open(str(out / "scan.labels.zarr"), mode="r", zarr_format=2)
    labels = store[...]
    assert labels.shape == (1024, 1536)
    field = labels[100 : 100 + cells.shape[0], 80 : 80 + cells.shape[1]]
    assert (field != 255).all() and len(np.unique(field)) >= 2  # the cells are predicted
    assert (labels[:, 1024:] == 255).all()  # glass on the right: skipped
    assert cli.main([*command, "--ome-tiff", "--geojson"]) == 0  # again: every tile is done already
    collection = json.loads((out / "scan.labels.geojson").read_text())
    assert {f["properties"]["classification"]["name"] for f in collection["features"]} <= {
        "background", "cytoplasm", "nucleus"} and len(collection["features"]) >= 2
    np.testing.assert_array_equal(zarr.open(str(out / "scan.labels.zarr"), mode="r", zarr_format=2)[...], labels)
    with Slide(out / "scan.labels.ome.tif") as pyramid:  # the labels as a pyramid, for QuPath and napari
        assert len(pyramid.levels) == 3
        np.testing.assert_array_equal(pyramid.read_region(0, ((0, 1024), (0, 1536))), labels)
    # with the CRF the run's key changes: the tiles are predicted again, and refined
    assert cli.main([*command, "--crf", "--crf-backend", "torch"]) == 0
    done = json.loads((out / "scan.labels.zarr" / "done.json").read_text())
    assert done["run"].endswith('"iterations": 10}') and done["boxes"] == [[[0, 1024], [0, 1024]]]
    refined = zarr.open(str(out / "scan.labels.zarr"), mode="r", zarr_format=2)[...]
    field_refined = refined[100 : 100 + cells.shape[0], 80 : 80 + cells.shape[1]]
    assert (field_refined != 255).all() and 0.8 < (field_refined == field).mean() < 1.0


def test_a_bad_region_is_named(tmp_path, capsys) -> None:
    plain = tmp_path / "x.png"
    cv2.imwrite(str(plain), np.full((600, 600, 3), 200, np.uint8))
    assert cli.main(["pyramid", str(plain), "--out", str(tmp_path / "x.ome.tif")]) == 0
    code = cli.main(["predict-slide", str(tmp_path / "x.ome.tif"), "--checkpoint", str(MODEL), "--out",
                     str(tmp_path / "o"), "--region", "1,2,3", "--device", "cpu"])
    assert code != 0 and "--region takes Y0,Y1,X0,X1" in capsys.readouterr().err


def test_slide_stems_keep_everything_before_the_image_suffix() -> None:
    from segstudio.commands.slide import slide_stem

    assert [slide_stem(Path(n)) for n in ("case.1.svs", "case.2.svs", "a.b.ome.tif", "x.OME.TIFF", "p.tif")] == \
        ["case.1", "case.2", "a.b", "x", "p"]
