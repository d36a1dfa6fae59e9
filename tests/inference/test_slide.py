"""The demo model over a whole slide built from the demo's real cell images on glass:
tissue tiles predicted into the chunked store, glass skipped, a cancelled run resumed."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from segstudio.inference.predictor import Predictor
from segstudio.inference.slide import predict_slide_steps, tissue_mask
from segstudio.io.pyramid import build_pyramid_steps
from segstudio.io.slide import Slide
from segstudio.io.tiled_labels import TiledLabels
from segstudio.tasks import CancelToken, TaskCancelled, run_to_completion

REPO = Path(__file__).resolve().parents[2]
SAMPLE = REPO / "resources" / "sample" / "images"
MODEL = REPO / "resources" / "models" / "demo_unet.safetensors"
PLACES = ((300, 200), (1300, 1200))  # top-left corners of the two cell images on the glass


@pytest.fixture(scope="module")
def slide_path(tmp_path_factory):
    canvas = np.full((2048, 2048, 3), 236, np.uint8)  # bright glass
    for (y, x), name in zip(PLACES, ("cells_01.png", "cells_05.png")):
        cells = cv2.cvtColor(cv2.imread(str(SAMPLE / name), cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)
        canvas[y : y + cells.shape[0], x : x + cells.shape[1]] = cells
    path = tmp_path_factory.mktemp("slide") / "cells.ome.tif"
    return run_to_completion(build_pyramid_steps(canvas, path)), canvas


@pytest.fixture(scope="module")
def predictor():
    return Predictor.from_checkpoint(MODEL, device="cpu", precision="fp32")[0]


def test_the_tissue_mask_finds_the_cells_and_not_the_glass(slide_path) -> None:
    path, canvas = slide_path
    with Slide(path) as slide:
        mask, (dy, dx) = tissue_mask(slide, max_side=512)
    assert (dy, dx) == (4.0, 4.0) and mask.shape == (512, 512)
    cells = np.zeros((2048, 2048), bool)
    for y, x in PLACES:
        cells[y : y + 448, x : x + 448] = True
    coarse = cells[::4, ::4]
    assert mask[coarse].mean() > 0.5 and mask[~coarse].mean() < 0.01


def test_tissue_tiles_are_predicted_and_glass_skipped(tmp_path, slide_path, predictor) -> None:
    path, canvas = slide_path
    store = TiledLabels.create(tmp_path / "prediction.zarr", (2048, 2048), chunk=256)
    with Slide(path) as slide:
        seen = []
        run = run_to_completion(predict_slide_steps(predictor, slide, store), seen.append)
    assert run.predicted + run.glass == 16 and run.resumed == 0  # 512-px tiles
    assert 2 <= run.predicted <= 8 and seen[-1].done == seen[-1].total == 16
    boxes = [tuple(int(p.metrics[k]) for k in ("y0", "y1", "x0", "x1")) for p in seen if "y0" in p.metrics]
    assert len(boxes) == run.predicted and all(b[1] - b[0] == b[3] - b[2] == 512 for b in boxes)
    assert (256, 768, 0, 512) in boxes or any(b[0] <= 300 < b[1] and b[2] <= 200 < b[3] for b in boxes)
    labels = TiledLabels.open(tmp_path / "prediction.zarr").read(((0, 2048), (0, 2048)))
    assert (labels[:256, 1536:] == 255).all()  # a glass corner: never predicted, no chunk on disk
    assert not (tmp_path / "prediction.zarr" / "0.7").exists()
    for y, x in PLACES:  # inside each cell image: what the model says of that image alone
        cells = canvas[y : y + 448, x : x + 448]
        alone = predictor.predict(cells).labels
        agreement = (labels[y : y + 448, x : x + 448] == alone).mean()
        assert agreement >= 0.95, agreement


def test_a_cancelled_run_resumes_where_it_stopped(tmp_path, slide_path, predictor) -> None:
    path, _ = slide_path
    folder = tmp_path / "p.zarr"
    store = TiledLabels.create(folder, (2048, 2048), chunk=256)
    token = CancelToken()
    with Slide(path) as slide:
        box = ((0, 1024), (0, 1024))  # the first cell image's four tiles
        task = predict_slide_steps(predictor, slide, store, region=box, cancel=token)
        predicted_before = 0
        with pytest.raises(TaskCancelled):
            for step in task:
                predicted_before = int(step.metrics["predicted"])
                if predicted_before == 2:
                    token.cancel()
        again = run_to_completion(predict_slide_steps(predictor, slide, TiledLabels.open(folder), region=box))
        whole = TiledLabels.create(tmp_path / "whole.zarr", (2048, 2048), chunk=256)
        reference = run_to_completion(predict_slide_steps(predictor, slide, whole, region=box))
    assert reference.predicted == 4 and again.resumed == 2 and again.predicted == 2
    np.testing.assert_array_equal(TiledLabels.open(folder).read(((0, 2048), (0, 2048))),
                                  TiledLabels.open(tmp_path / "whole.zarr").read(((0, 2048), (0, 2048))))


def test_a_tile_a_smaller_region_left_half_done_is_predicted_again(tmp_path, slide_path, predictor) -> None:
    path, _ = slide_path
    folder = tmp_path / "p.zarr"
    TiledLabels.create(folder, (2048, 2048), chunk=256)
    with Slide(path) as slide:
        first = run_to_completion(predict_slide_steps(predictor, slide, TiledLabels.open(folder),
                                                      region=((300, 400), (200, 300))))  # inside tile (0, 0)
        wider = run_to_completion(predict_slide_steps(predictor, slide, TiledLabels.open(folder),
                                                      region=((0, 512), (0, 1024))))
    assert first.predicted == 1
    assert wider.resumed == 0 and wider.predicted == 2  # tile (0, 0) is done whole this time
    labels = TiledLabels.open(folder).read(((0, 512), (0, 1024)))
    assert (labels[300:512, 200:512] != 255).all()


def test_another_model_or_the_crf_predicts_every_tile_again_and_the_crf_refines(tmp_path, slide_path,
                                                                                predictor) -> None:
    from segstudio.refine import CRFParams, refine

    path, canvas = slide_path
    box = ((256, 768), (0, 512))  # over the first cell image: parts of two 512 px tiles
    plain = TiledLabels.create(tmp_path / "p.zarr", (2048, 2048), chunk=256)
    with Slide(path) as slide:
        first = run_to_completion(predict_slide_steps(predictor, slide, plain, region=box, run_key="model A"))
        same = run_to_completion(predict_slide_steps(predictor, slide, TiledLabels.open(tmp_path / "p.zarr"),
                                                     region=box, run_key="model A"))
        crf = CRFParams()
        refined = run_to_completion(predict_slide_steps(predictor, slide, TiledLabels.open(tmp_path / "p.zarr"),
                                                        region=box, crf=crf, crf_options={"backend": "torch"},
                                                        run_key="model A + CRF"))
    assert (first.predicted, same.resumed, same.predicted, refined.predicted) == (2, 2, 0, 2)
    labels = TiledLabels.open(tmp_path / "p.zarr").read(box)
    # what the CRF makes of the model's probabilities on this tile with its context, alone
    outer = canvas[256 - 64: 768 + 64, 0: 512 + 64]
    expected = refine(outer, predictor.predict(outer).probabilities, crf, backend="torch").labels[64:-64, :512]
    assert (labels == expected).mean() > 0.99
    unrefined = predictor.predict(outer).labels[64:-64, :512]
    assert (labels != unrefined).mean() > 0.001  # the CRF changed something
