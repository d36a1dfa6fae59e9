"""Whole-slide label exports: a pyramidal OME-TIFF label image and QuPath GeoJSON polygons,
checked on the demo's real nucleus masks and read back."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
import tifffile

from segstudio import cli
from segstudio.annotation.classes import ClassList
from segstudio.errors import InvalidArgumentError
from segstudio.io.masks import read_mask
from segstudio.io.project import Project
from segstudio.io.slide import Slide
from segstudio.io.slide_export import labels_to_geojson, write_geojson, write_label_pyramid

SAMPLE = Path(__file__).resolve().parents[2] / "resources" / "sample"
NAMES, COLORS = ["background", "cytoplasm", "nucleus"], [(0, 0, 0), (0, 200, 0), (200, 0, 200)]


def _real_labels() -> np.ndarray:
    labels = read_mask(SAMPLE / "masks" / "cells_01.png")
    assert labels.dtype == np.uint8 and set(np.unique(labels)) >= {0, 1, 2}
    return labels


def test_the_label_pyramid_reads_back_level_by_level(tmp_path) -> None:
    labels = np.tile(_real_labels(), (4, 5))  # larger than one tile: several levels
    labels[:7, :9] = 255  # unlabelled stays 255
    path = write_label_pyramid(tmp_path / "cells.labels.ome.tif", labels, microns_per_pixel=(0.5, 0.5))
    with tifffile.TiffFile(path) as tif:
        assert tif.is_ome
        levels = tif.series[0].levels
        assert len(levels) >= 3 and levels[0].keyframe.is_tiled
        for number, level in enumerate(levels):
            np.testing.assert_array_equal(level.asarray(), labels[:: 2**number, :: 2**number])
        assert max(levels[-1].shape) <= 512
    with Slide(path) as slide:  # and through the lazy reader
        assert slide.microns_per_pixel == (0.5, 0.5) and slide.channels == 1
        np.testing.assert_array_equal(slide.read_region(1, ((100, 300), (50, 700))), labels[::2, ::2][100:300, 50:700])
    assert not list(tmp_path.glob(".*partial"))


def test_geojson_polygons_rasterise_back_to_the_mask(tmp_path) -> None:
    labels = _real_labels()
    collection = labels_to_geojson(labels, NAMES, COLORS)
    assert collection["type"] == "FeatureCollection"
    names = [f["properties"]["classification"]["name"] for f in collection["features"]]
    assert names == NAMES  # one feature per class present
    rebuilt = np.full(labels.shape, 255, np.uint8)
    for feature in collection["features"]:
        index = feature["properties"]["classIndex"]
        assert feature["properties"]["classification"]["color"] == list(COLORS[index])
        for polygon in feature["geometry"]["coordinates"]:
            outer, *holes = (np.round(np.array(ring)).astype(np.int32) for ring in polygon)
            assert all(ring[0].tolist() == ring[-1].tolist() for ring in (outer, *holes))  # closed rings
            mask = np.zeros(labels.shape, np.uint8)
            cv2.fillPoly(mask, [outer], 1)
            for hole in holes:  # a hole's own boundary pixels belong to the region around it
                inside = np.zeros(labels.shape, np.uint8)
                cv2.fillPoly(inside, [hole], 1)
                edge = np.zeros(labels.shape, np.uint8)
                cv2.polylines(edge, [hole], True, 1)
                mask[(inside == 1) & (edge == 0)] = 0
            rebuilt[mask == 1] = index
    agreement = (rebuilt == labels).mean()
    assert agreement >= 0.99, agreement


def test_a_hole_stays_a_hole_and_specks_are_dropped() -> None:
    labels = np.full((60, 60), 255, np.uint8)
    labels[10:50, 10:50] = 1
    labels[20:40, 20:40] = 255  # the hole
    labels[55, 55] = 1  # a one-pixel speck: no area to import
    (feature,) = labels_to_geojson(labels, ["bg", "ring"], [(0, 0, 0), (9, 9, 9)])["features"]
    polygons = feature["geometry"]["coordinates"]
    assert len(polygons) == 1 and len(polygons[0]) == 2  # one region with one hole
    xs = [x for x, _ in polygons[0][1]]
    assert min(xs) >= 19 and max(xs) <= 40  # the hole's ring runs around 20..39


def test_the_export_command_writes_both_formats(tmp_path) -> None:
    folder = tmp_path / "images"
    folder.mkdir()
    labels = _real_labels()
    cv2.imwrite(str(folder / "cells.png"), np.zeros((*labels.shape, 3), np.uint8))
    project = Project.create(tmp_path / "project", [folder], ClassList.from_names(NAMES))
    document = project.load_document(0)
    document.labels[...] = labels
    project.save_document(0, document)
    out = tmp_path / "out"
    assert cli.main(["export", str(project.folder), "--out", str(out), "--format", "ome-tiff"]) == 0
    np.testing.assert_array_equal(tifffile.imread(out / "cells.labels.ome.tif"), labels)
    assert cli.main(["export", str(project.folder), "--out", str(out), "--format", "geojson"]) == 0
    collection = json.loads((out / "cells.geojson").read_text(encoding="utf-8"))
    assert [f["properties"]["classification"]["name"] for f in collection["features"]] == NAMES


def test_bad_label_maps_are_refused(tmp_path) -> None:
    with pytest.raises(InvalidArgumentError, match="2-D"):
        labels_to_geojson(np.zeros((2, 3, 4), np.uint8), NAMES, COLORS)
    with pytest.raises(InvalidArgumentError, match="non-empty 2-D"):
        write_label_pyramid(tmp_path / "x.ome.tif", np.zeros((0, 5), np.uint8))
    assert write_geojson(tmp_path / "empty.geojson", np.full((4, 4), 255, np.uint8), NAMES, COLORS).read_text() \
        == '{"type":"FeatureCollection","features":[]}'


def test_a_label_store_becomes_a_pyramid_chunk_by_chunk(tmp_path) -> None:
    """A slide run's store as a pyramidal OME-TIFF, written tile by tile (the map never whole in memory)."""
    from segstudio.io.slide_export import write_store_pyramid_steps
    from segstudio.io.tiled_labels import TiledLabels
    from segstudio.tasks import run_to_completion

    labels = np.tile(_real_labels(), (3, 4))[:1300, :1700]
    labels[900:, :200] = 255
    store = TiledLabels.create(tmp_path / "run.zarr", labels.shape, chunk=512)
    store.write(((0, 1300), (0, 1700)), labels)
    store.flush()
    path = run_to_completion(write_store_pyramid_steps(TiledLabels.open(tmp_path / "run.zarr"),
                                                       tmp_path / "run.labels.ome.tif"))
    with tifffile.TiffFile(path) as tif:
        levels = tif.series[0].levels
        assert [level.shape for level in levels] == [(1300, 1700), (650, 850), (325, 425)]
        for number, level in enumerate(levels):
            np.testing.assert_array_equal(level.asarray(), labels[:: 2**number, :: 2**number])


def test_a_label_store_becomes_geojson_group_by_group(tmp_path) -> None:
    from segstudio.io.slide_export import store_to_geojson
    from segstudio.io.tiled_labels import TiledLabels

    store = TiledLabels.create(tmp_path / "labels", (3000, 4000), chunk=256)
    labels = np.full((3000, 4000), 255, np.uint8)
    labels[100:300, 100:400] = 1  # a rectangle in one group of chunks
    labels[150:250, 200:300] = 2  # with a hole of another class
    labels[2000:2600, 3000:3900] = 1  # far away: a second group
    store.write(((0, 3000), (0, 4000)), labels)
    store.flush()
    names, colors = ["background", "tumour", "stroma"], [(0, 0, 0), (200, 0, 0), (0, 0, 200)]
    whole = labels_to_geojson(labels, names, colors)
    found = store_to_geojson(TiledLabels.open(tmp_path / "labels"), names, colors)
    assert [f["properties"]["classIndex"] for f in found["features"]] == [1, 2]
    tumour = found["features"][0]
    assert tumour["properties"]["pixels"] == int((labels == 1).sum())
    assert len(tumour["geometry"]["coordinates"]) == 2 and len(tumour["geometry"]["coordinates"][0]) == 2  # hole
    assert sorted(map(str, tumour["geometry"]["coordinates"])) == \
        sorted(map(str, whole["features"][0]["geometry"]["coordinates"]))  # the same outlines as the whole map
    coarse = store_to_geojson(TiledLabels.open(tmp_path / "labels"), names, colors, max_pixels=100_000)
    ring = coarse["features"][0]["geometry"]["coordinates"][1][0]  # the far rectangle, read every 3rd pixel
    xs, ys = [p[0] for p in ring], [p[1] for p in ring]
    assert abs(min(xs) - 3000) <= 3 and abs(max(xs) - 3899) <= 3 and abs(min(ys) - 2000) <= 3
