"""Training samples from a slide's labelled regions only: the demo's real cells on glass,
labelled in two places of a chunked store."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from segstudio.io.masks import read_mask
from segstudio.io.pyramid import build_pyramid_steps
from segstudio.io.slide import Slide
from segstudio.io.tiled_labels import TiledLabels
from segstudio.models.checkpoint import read_meta
from segstudio.tasks import run_to_completion
from segstudio.training.data import SegmentationDataset
from segstudio.training.slide_data import labelled_regions, slide_samples

REPO = Path(__file__).resolve().parents[2]
SAMPLE = REPO / "resources" / "sample"
MODEL = REPO / "resources" / "models" / "demo_unet.safetensors"


def test_only_the_labelled_regions_become_samples(tmp_path, monkeypatch) -> None:
    canvas = np.full((3000, 3000, 3), 236, np.uint8)
    cells = cv2.cvtColor(cv2.imread(str(SAMPLE / "images" / "cells_01.png"), cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)
    mask = read_mask(SAMPLE / "masks" / "cells_01.png")
    places = ((100, 150), (2300, 2400))
    for y, x in places:
        canvas[y : y + 448, x : x + 448] = cells
    slide_path = run_to_completion(build_pyramid_steps(canvas, tmp_path / "s.ome.tif"))
    store = TiledLabels.create(tmp_path / "labels.zarr", (3000, 3000), chunk=256)
    for y, x in places:
        store.write(((y, y + 448), (x, x + 448)), mask)
    store.flush()
    regions = labelled_regions(store)
    assert regions == [((0, 768), (0, 768)), ((2048, 2816), (2304, 3000))]  # whole chunks around each

    reads = []
    with Slide(slide_path) as slide:
        real_read = slide.read_region
        monkeypatch.setattr(slide, "read_region", lambda level, box: reads.append((level, box)) or
                            real_read(level, box))
        preprocessing = read_meta(MODEL).preprocessing
        samples = slide_samples(slide, TiledLabels.open(tmp_path / "labels.zarr"), preprocessing)
    assert len(samples) == 2
    level0 = sum((b[0][1] - b[0][0]) * (b[1][1] - b[1][0]) for level, b in reads if level == 0)
    assert level0 < 0.2 * 3000 * 3000  # the labelled regions and their context, not the slide
    (image, labels), _ = samples
    assert image.shape[:2] == labels.shape == (768 + 64, 768 + 64)
    np.testing.assert_array_equal(np.asarray(image), canvas[: 768 + 64, : 768 + 64])
    np.testing.assert_array_equal(labels[100:548, 150:598], mask)
    assert (labels[:100] == 255).all()  # around the labels: unlabelled, ignored by the loss
    assert image.intensity is not None  # the slide's own intensity map

    dataset = SegmentationDataset(samples, preprocessing, crop_size=128, crops_per_epoch=8, seed=0)
    item = dataset[0]
    assert item["image"].shape == (3, 128, 128)
    labelled = item["target"] >= 0
    assert labelled.any()  # crops are drawn where the labels are


def test_diagonal_or_long_labels_do_not_make_one_huge_region(tmp_path) -> None:
    store = TiledLabels.create(tmp_path / "l.zarr", (40 * 64, 40 * 64), chunk=64)
    for k in range(20):  # a diagonal line of labelled chunks
        store.write(((k * 64 + 5, k * 64 + 10), (k * 64 + 5, k * 64 + 10)), np.ones((5, 5), np.uint8))
    store.write(((30 * 64, 30 * 64 + 3), (0, 40 * 64)), np.ones((3, 40 * 64), np.uint8))  # a long band
    store.flush()
    regions = labelled_regions(TiledLabels.open(tmp_path / "l.zarr"))
    assert sum(1 for (y0, y1), _ in regions if y1 <= 20 * 64) == 20  # one per diagonal chunk
    assert all(y1 - y0 <= 8 * 64 and x1 - x0 <= 8 * 64 for (y0, y1), (x0, x1) in regions)
    band = [r for r in regions if r[0] == (30 * 64, 31 * 64)]
    assert len(band) == 5 and sum(x1 - x0 for _, (x0, x1) in band) == 40 * 64


def test_a_regions_labels_are_its_own_and_validation_pieces_keep_its_intensity(tmp_path) -> None:
    from segstudio.training.slide_data import (
        label_values,
        pieces,
        region_name,
        region_samples,
    )

    rng = np.random.default_rng(0)
    canvas = rng.integers(0, 200, (1536, 1536), dtype=np.uint8)
    slide_path = run_to_completion(build_pyramid_steps(canvas, tmp_path / "g.ome.tif"))
    store = TiledLabels.create(tmp_path / "g.zarr", (1536, 1536), chunk=256)
    store.write(((0, 256), (0, 256)), np.full((256, 256), 1, np.uint8))  # one region...
    store.write(((256, 512), (256, 512)), np.full((256, 256), 3, np.uint8))  # ...and a diagonal neighbour
    store.write(((1024, 1536), (0, 1536)), np.full((512, 1536), 0, np.uint8))  # a wide one
    store.flush()
    store = TiledLabels.open(tmp_path / "g.zarr")
    assert label_values(store) == [0, 1, 3]
    preprocessing = read_meta(MODEL).preprocessing
    with Slide(slide_path) as slide:
        found = region_samples(slide, store, preprocessing)
    assert [region_name(r) for r, _ in found] == ["0,256,0,256", "256,512,256,512", "1024,1536,0,1536"]
    (_, (first_image, first)), (_, (_, second)), (_, wide) = found
    # the context of each reaches into the other, but holds none of the other's labels
    assert first.shape == (320, 320) and set(np.unique(first[:256, :256])) == {1}
    assert (first[256:, :] == 255).all() and (first[:, 256:] == 255).all()
    assert second.shape == (384, 384) and (second[:64, :] == 255).all() and (second[64:320, 64:320] == 3).all()
    np.testing.assert_array_equal(np.asarray(first_image), canvas[:320, :320])

    parts = pieces(wide, side=400)
    image, labels = wide
    assert labels.shape == (576, 1536)
    assert all(p_labels.shape[0] <= 400 and p_labels.shape[1] <= 400 for _, p_labels in parts)
    assert sum(int((p_labels == 0).sum()) for _, p_labels in parts) == 512 * 1536  # every labelled pixel once
    assert all(p_image.intensity is image.intensity for p_image, _ in parts)  # the slide's map, not the piece's
