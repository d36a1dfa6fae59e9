"""The Predictor: tiling agrees with a whole-image pass, cancel, OOM fallback."""

import logging

from dataclasses import replace

import numpy as np
import pytest
import torch
from torch import nn

from segstudio.errors import InferenceError, InvalidArgumentError
from segstudio.inference import Predictor, resolve_precision
from segstudio.inference.tiling import blend_window, plan_tiles
from segstudio.models import get_model
from segstudio.models.checkpoint import Preprocessing, make_meta, save_checkpoint
from segstudio.tasks import CancelToken, TaskCancelled

GREY = Preprocessing("grey", (0.5,), (0.25,))


def _smooth_image(height, width, seed=0):
    """A grey image with blobs, so the model's classes change over space."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:height, 0:width]
    image = np.zeros((height, width), np.float32)
    for _ in range(12):
        cy, cx, r = rng.uniform(0, height), rng.uniform(0, width), rng.uniform(10, 40)
        image += np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * r * r))
    return (255 * image / image.max()).astype(np.uint8)


@pytest.fixture(scope="module")
def small_unet():
    torch.manual_seed(3)
    model = get_model("unet", num_classes=3, base_width=8, depth=2, padding="same", batch_norm=True)
    # sharpen the classifier so classes are decided with margin, as in a trained model
    with torch.no_grad():
        model.classifier.weight.mul_(20)
    return model.eval()


def _predictor(model, **kwargs):
    kwargs.setdefault("precision", "fp32")
    kwargs.setdefault("device", "cpu")
    return Predictor(model, preprocessing=GREY, **kwargs)


def test_tiles_cover_the_image_with_overlap_on_the_model_grid():
    rows = plan_tiles(1000, 700, 256, 64, align=32)
    covered = np.zeros((1000, 700), int)
    for row in rows:
        for tile in row:
            assert tile.y0 % 32 == 0 and tile.x0 % 32 == 0
            assert tile.y1 - tile.y0 <= 256 and tile.x1 - tile.x0 <= 256
            covered[tile.slices] += 1
    assert covered.min() >= 1
    starts = [row[0].y0 for row in rows]
    assert starts == [0, 192, 384, 576, 768]
    assert rows[-1][0].y1 == 1000 and rows[0][-1].x1 == 700


def test_blend_window_ramps_only_on_shared_edges():
    window = blend_window(100, 80, 32, top=False, bottom=True, left=True, right=False)
    assert window[0, 79] == 1.0 and window[50, 40] == 1.0
    # the outer quarter of a shared overlap is (almost) ignored, then a ramp
    assert window[99, 40] < 1e-3 and window[50, 0] < 1e-3 and window[50, 7] < 1e-3
    assert 0.4 < window[50, 15] < 0.6 and window[50, 24] == 1.0
    assert window.min() > 0


def test_tiled_and_untiled_inference_agree(small_unet):
    image = _smooth_image(300, 420)
    whole = _predictor(small_unet, tile_size=512).predict(image)
    tiled = _predictor(small_unet, tile_size=128, overlap=64).predict(image)
    assert whole.probabilities.shape == tiled.probabilities.shape == (3, 300, 420)
    agreement = (whole.labels == tiled.labels).mean()
    assert agreement >= 0.999, agreement
    # away from tile seams the probabilities are the same up to float16 storage
    diff = np.abs(whole.probabilities_float() - tiled.probabilities_float()).max(axis=0)
    assert np.median(diff) < 1e-3


def test_probabilities_are_stored_compactly_and_sum_to_one(small_unet):
    image = _smooth_image(200, 260)
    fp16 = _predictor(small_unet, tile_size=128, overlap=32).predict(image)
    u8 = _predictor(small_unet, tile_size=128, overlap=32, probability_dtype="uint8").predict(image)
    assert fp16.probabilities.dtype == np.float16 and u8.probabilities.dtype == np.uint8
    assert np.allclose(fp16.probabilities_float().sum(axis=0), 1, atol=5e-3)
    assert np.abs(u8.probabilities_float() - fp16.probabilities_float()).max() <= 1 / 255 + 2e-3
    assert np.array_equal(fp16.labels, fp16.probabilities_float().argmax(axis=0)) or (
        (fp16.labels == fp16.probabilities_float().argmax(axis=0)).mean() > 0.999
    )


def test_progress_per_tile_and_cancel_between_tiles(small_unet):
    calls = []
    original = small_unet.forward

    class Counting(nn.Module):
        def __init__(self):
            super().__init__()
            self.inner = small_unet

        def forward(self, x):
            calls.append(tuple(x.shape))
            return original(x)

    predictor = _predictor(Counting(), tile_size=64, overlap=16)
    cancel = CancelToken()
    steps = predictor.predict_steps(_smooth_image(200, 200), cancel=cancel)
    first = next(steps)
    expected_tiles = sum(plan_tiles(200, 200, 64, 16, align=predictor.alignment), [])
    assert (first.done, first.total) == (1, len(expected_tiles)) and first.total > 1
    cancel.cancel()
    with pytest.raises(TaskCancelled):
        next(steps)
    assert len(calls) == 1


class _RaisesOOMAboveSize(nn.Module):
    """Stands in for a GPU that runs out of memory on tiles above a size."""

    def __init__(self, model, limit):
        super().__init__()
        self.model = model
        self.limit = limit
        self.shapes = []

    def forward(self, x):
        if max(x.shape[-2:]) > self.limit:
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        self.shapes.append(tuple(x.shape[-2:]))
        return self.model(x)


def test_out_of_memory_halves_the_tile_and_carries_on(small_unet, caplog):
    image = _smooth_image(260, 300)
    reference = _predictor(small_unet, tile_size=512).predict(image)
    flaky = _RaisesOOMAboveSize(small_unet, limit=128)
    predictor = _predictor(flaky, tile_size=512, overlap=64)
    predictor.alignment = 4
    with caplog.at_level(logging.WARNING, logger="segstudio.inference.predictor"):
        result = predictor.predict(image)
    assert result.tile_size == 128 and predictor.tile_size == 128
    assert [r.getMessage() for r in caplog.records] == [
        "out of memory on cpu: tile size halved to 256 px",
        "out of memory on cpu: tile size halved to 128 px",
    ]
    assert max(max(s) for s in flaky.shapes) <= 128
    assert (result.labels == reference.labels).mean() >= 0.999


def test_out_of_memory_at_the_smallest_tile_is_a_clear_error(small_unet):
    predictor = _predictor(_RaisesOOMAboveSize(small_unet, limit=10), tile_size=128, overlap=16)
    with pytest.raises(InferenceError, match="out of memory on cpu even with 64 px tiles"):
        predictor.predict(_smooth_image(100, 100))


def test_other_runtime_errors_are_not_taken_for_oom(small_unet):
    class Broken(nn.Module):
        def forward(self, x):
            raise RuntimeError("shape mismatch in conv")

    with pytest.raises(RuntimeError, match="shape mismatch"):
        _predictor(Broken()).predict(_smooth_image(64, 64))


def test_bf16_on_cpu_agrees_with_fp32(small_unet):
    image = _smooth_image(160, 200)
    fp32 = _predictor(small_unet).predict(image)
    bf16 = _predictor(small_unet, precision="bf16").predict(image)
    assert (fp32.labels == bf16.labels).mean() > 0.98


def test_precision_choices():
    assert resolve_precision("fp32", torch.device("cpu")) is None
    assert resolve_precision("bf16", torch.device("cpu")) is torch.bfloat16
    with pytest.raises(InvalidArgumentError, match="fp16 autocast is for GPUs"):
        resolve_precision("fp16", torch.device("cpu"))
    with pytest.raises(InvalidArgumentError, match="precision must be one of"):
        resolve_precision("int4", torch.device("cpu"))


def test_asking_for_a_missing_gpu_is_a_user_error(monkeypatch, small_unet):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(InvalidArgumentError, match="no CUDA GPU"):
        Predictor(small_unet, preprocessing=GREY, device="cuda")


def test_predictor_from_checkpoint_uses_its_preprocessing(tmp_path, small_unet):
    meta = make_meta(small_unet, preprocessing=Preprocessing("grey", (0.3,), (0.2,)))
    path = save_checkpoint(tmp_path / "m.safetensors", small_unet, meta)
    predictor, loaded = Predictor.from_checkpoint(path, device="cpu", precision="fp32")
    assert predictor.preprocessing.mean == (0.3,)
    image = _smooth_image(80, 90)
    direct = Predictor(small_unet, preprocessing=loaded.preprocessing, device="cpu", precision="fp32")
    assert np.array_equal(predictor.predict(image).labels, direct.predict(image).labels)


def test_rgb_image_into_a_grey_model_and_16_bit_input(small_unet):
    grey = _smooth_image(90, 120)
    rgb = np.repeat(grey[:, :, None], 3, axis=2)
    wide = grey.astype(np.uint16) * 257
    predictor = _predictor(small_unet)
    reference = predictor.predict(grey).labels
    assert (predictor.predict(rgb).labels == reference).mean() > 0.99
    # a checkpoint from before the normalisation was recorded divides by the type's maximum
    legacy = Predictor(small_unet, preprocessing=replace(GREY, normalization="dtype"), precision="fp32",
                       device="cpu")
    assert (legacy.predict(wide).labels == reference).mean() > 0.99
    # new ones stretch a 16-bit image between its percentiles: the grey image stretched the same way
    # (as 8 bits) gives the same answer
    low, high = np.percentile(grey, [1.0, 99.8])
    stretched = np.clip(np.rint((grey - low) / (high - low) * 255), 0, 255).astype(np.uint8)
    assert (predictor.predict(wide).labels == predictor.predict(stretched).labels).mean() > 0.99
