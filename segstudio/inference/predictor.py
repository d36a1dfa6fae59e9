"""The Predictor: one model on one device, images in, probabilities out.

Large images are cut into overlapping tiles whose predictions are blended
with raised-cosine weights. The full-resolution probability map is kept
compactly (float16, or uint8 holding p * 255): tiles are accumulated in
float32 only within the current band of tile rows, and each band is
quantised as soon as no later tile touches it, so an 8192 x 8192 image with
21 classes needs about 2.8 GB (float16) or 1.4 GB (uint8) for its map.

On a device out-of-memory error the tile size is halved (down to 64 px),
the log says so, and the failed tile is recomputed from smaller tiles.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from segstudio.errors import InferenceError, InvalidArgumentError
from segstudio.inference.device import Precision, is_out_of_memory, resolve_device, resolve_precision
from segstudio.inference.tiling import Tile, blend_window, plan_tiles
from segstudio.io.masks import MAX_CLASSES_8BIT
from segstudio.models.checkpoint import CheckpointMeta, Preprocessing, load_checkpoint
from segstudio.preprocess import IntensityMap, fit_intensity, image_to_tensor
from segstudio.tasks import CancelToken, Progress, Task, run_to_completion

log = logging.getLogger(__name__)

MIN_TILE = 64
PROBABILITY_DTYPES = ("float16", "uint8")


@dataclass
class PredictionResult:
    """Per-class probabilities and the label map of one image.

    ``probabilities`` is C x H x W, float16, or uint8 holding ``p * 255``.
    """

    probabilities: np.ndarray
    labels: np.ndarray
    tile_size: int

    def probability(self, class_index: int) -> np.ndarray:
        """One class's probability map as float32 in [0, 1]."""
        channel = self.probabilities[class_index]
        if channel.dtype == np.uint8:
            return channel.astype(np.float32) / 255.0
        return channel.astype(np.float32)

    def probabilities_float(self) -> np.ndarray:
        if self.probabilities.dtype == np.uint8:
            return self.probabilities.astype(np.float32) / 255.0
        return self.probabilities.astype(np.float32)


class Predictor:
    """Runs a segmentation model on whole images of any size.

    Parameters
    ----------
    model:
        A network returning logits N x C x H x W for any H x W.
    preprocessing:
        How pixels become the input tensor (from the checkpoint).
    device:
        ``auto`` (CUDA, then MPS, then CPU), ``cpu``, ``cuda`` or ``mps``.
    precision:
        ``auto`` (bf16/fp16 autocast where the device has it), or forced
        ``fp32``, ``bf16``, ``fp16``.
    tile_size, overlap:
        Sliding-window size and the overlap blended between neighbours
        (default: 64 px, or a quarter of a smaller tile).
    probability_dtype:
        ``float16`` or ``uint8`` for the stored probability map.
    """

    def __init__(
        self,
        model: nn.Module,
        *,
        preprocessing: Preprocessing,
        device: str | torch.device = "auto",
        precision: Precision | str = Precision.AUTO,
        tile_size: int = 512,
        overlap: int | None = None,
        probability_dtype: str = "float16",
        channels_last: bool | None = None,
    ) -> None:
        if tile_size < MIN_TILE:
            raise InvalidArgumentError(f"tile size must be at least {MIN_TILE} px, not {tile_size}")
        if overlap is None:
            overlap = min(64, tile_size // 4)
        if not 0 <= overlap < tile_size:
            raise InvalidArgumentError(f"overlap must be between 0 and the tile size, not {overlap}")
        if probability_dtype not in PROBABILITY_DTYPES:
            raise InvalidArgumentError(f"probability_dtype must be one of {PROBABILITY_DTYPES}")
        self.device = resolve_device(device)
        self.autocast_dtype = resolve_precision(precision, self.device)
        self.preprocessing = preprocessing
        self.tile_size = tile_size
        self.overlap = overlap
        self.probability_dtype = np.dtype(probability_dtype)
        # channels_last feeds cuDNN's tensor-core kernels and oneDNN's bf16
        # kernels: on a CPU with AMX, bf16 without it was no faster than fp32
        # (demo U-Net, 512 x 512: fp32 812 ms, bf16 797 ms, bf16 + channels_last 261 ms)
        if channels_last is None:
            channels_last = self.device.type == "cuda" or self.autocast_dtype is not None
        self.channels_last = channels_last
        memory_format = torch.channels_last if self.channels_last else torch.contiguous_format
        self.model = model.eval().to(self.device, memory_format=memory_format)
        #: tile origins sit on the model's pooling grid (see tiling._starts)
        self.alignment = int(getattr(model, "input_alignment", 32))

    @classmethod
    def from_checkpoint(cls, path: str | os.PathLike[str], **kwargs: Any) -> tuple[Predictor, CheckpointMeta]:
        """A Predictor for the model stored in a segstudio checkpoint."""
        model, meta = load_checkpoint(path)
        return cls(model, preprocessing=meta.preprocessing, **kwargs), meta

    @property
    def precision_name(self) -> str:
        return {None: "fp32", torch.bfloat16: "bf16", torch.float16: "fp16"}[self.autocast_dtype]

    def predict(self, image: np.ndarray, *, cancel: CancelToken | None = None) -> PredictionResult:
        return run_to_completion(self.predict_steps(image, cancel=cancel))

    def predict_steps(self, image: np.ndarray, *, cancel: CancelToken | None = None) -> Task[PredictionResult]:
        """Predict ``image`` tile by tile, yielding Progress after each tile.

        The image's intensity map (:func:`segstudio.preprocess.fit_intensity`)
        is fitted once on the whole image, so every tile is scaled alike; a
        :class:`~segstudio.preprocess.MappedImage` (a volume's slice) brings
        its own.
        """
        if image.ndim not in (2, 3) or image.shape[0] == 0 or image.shape[1] == 0:
            raise InvalidArgumentError(f"expected an H x W or H x W x C image, got shape {image.shape}")
        intensity = fit_intensity(image, self.preprocessing)
        height, width = image.shape[:2]
        rows = plan_tiles(height, width, self.tile_size, self.overlap, self.alignment)
        total = sum(len(row) for row in rows)
        probabilities: np.ndarray | None = None
        labels: np.ndarray | None = None
        band: np.ndarray | None = None
        band_weight = np.zeros((0, width), np.float32)
        band_top = 0
        done = 0
        for row_index, row in enumerate(rows):
            row_top = row[0].y0
            row_bottom = max(t.y1 for t in row)
            band, band_weight = _shift_band(band, band_weight, band_top, row_top, row_bottom, width)
            band_top = row_top
            for tile in row:
                if cancel is not None:
                    cancel.raise_if_cancelled()
                tile_probs = self._infer_region(image[tile.slices], intensity, cancel)
                if band is None:
                    band = np.zeros((tile_probs.shape[0], row_bottom - row_top, width), np.float32)
                weight = self._weight(tile, height, width)
                rows_in_band = slice(tile.y0 - band_top, tile.y1 - band_top)
                band[:, rows_in_band, tile.x0 : tile.x1] += tile_probs * weight
                band_weight[rows_in_band, tile.x0 : tile.x1] += weight
                done += 1
                yield Progress(done, total, message=f"tile {done}/{total}", stage="predict")
            if probabilities is None:
                channels = band.shape[0]
                probabilities = np.empty((channels, height, width), self.probability_dtype)
                # the project's rule: uint8 up to 254 classes, so 255 stays free for unlabelled
                labels = np.empty((height, width), np.uint8 if channels <= MAX_CLASSES_8BIT else np.uint16)
            final_bottom = rows[row_index + 1][0].y0 if row_index + 1 < len(rows) else row_bottom
            self._finalise(band, band_weight, band_top, final_bottom, probabilities, labels)
        return PredictionResult(probabilities, labels, self.tile_size)

    def _weight(self, tile: Tile, height: int, width: int) -> np.ndarray:
        return blend_window(
            tile.y1 - tile.y0,
            tile.x1 - tile.x0,
            self.overlap,
            top=tile.y0 > 0,
            bottom=tile.y1 < height,
            left=tile.x0 > 0,
            right=tile.x1 < width,
        )

    def _finalise(
        self,
        band: np.ndarray,
        weight: np.ndarray,
        band_top: int,
        final_bottom: int,
        probabilities: np.ndarray,
        labels: np.ndarray,
    ) -> None:
        """Normalise the rows no later tile touches and store them compactly."""
        count = final_bottom - band_top
        if count <= 0:
            return
        rows = band[:, :count] / weight[None, :count]
        target = slice(band_top, final_bottom)
        labels[target] = rows.argmax(axis=0)
        if self.probability_dtype == np.uint8:
            probabilities[:, target] = np.rint(rows * 255.0)
        else:
            probabilities[:, target] = rows

    def _infer_region(self, region: np.ndarray, intensity: IntensityMap, cancel: CancelToken | None) -> np.ndarray:
        """Probabilities (C x h x w, float32) of an image region.

        A region larger than the current tile size (after an out-of-memory
        fallback) is itself tiled and blended.
        """
        height, width = region.shape[:2]
        if max(height, width) > self.tile_size:
            return self._blend_subtiles(region, intensity, cancel)
        try:
            return self._forward(region, intensity)
        except (RuntimeError, torch.OutOfMemoryError) as error:
            if not is_out_of_memory(error):
                raise
            if self.device.type == "cuda":
                torch.cuda.empty_cache()
            if self.tile_size <= MIN_TILE:
                raise InferenceError(
                    f"out of memory on {self.device} even with {MIN_TILE} px tiles; "
                    "try the CPU or a smaller model"
                ) from None
            self.tile_size = max(MIN_TILE, self.tile_size // 2)
            self.overlap = min(self.overlap, self.tile_size // 2)
            self.alignment = min(self.alignment, self.tile_size // 2)
            log.warning("out of memory on %s: tile size halved to %d px", self.device, self.tile_size)
            return self._infer_region(region, intensity, cancel)

    def _blend_subtiles(self, region: np.ndarray, intensity: IntensityMap, cancel: CancelToken | None) -> np.ndarray:
        height, width = region.shape[:2]
        total: np.ndarray | None = None
        weights = np.zeros((height, width), np.float32)
        for row in plan_tiles(height, width, self.tile_size, self.overlap, self.alignment):
            for tile in row:
                if cancel is not None:
                    cancel.raise_if_cancelled()
                probs = self._infer_region(region[tile.slices], intensity, cancel)
                if total is None:
                    total = np.zeros((probs.shape[0], height, width), np.float32)
                weight = self._weight(tile, height, width)
                total[:, tile.y0 : tile.y1, tile.x0 : tile.x1] += probs * weight
                weights[tile.y0 : tile.y1, tile.x0 : tile.x1] += weight
        return total / weights

    @torch.inference_mode()
    def _forward(self, region: np.ndarray, intensity: IntensityMap) -> np.ndarray:
        x = image_to_tensor(region, self.preprocessing, intensity=intensity).unsqueeze(0)
        memory_format = torch.channels_last if self.channels_last else torch.contiguous_format
        x = x.to(self.device, non_blocking=True).contiguous(memory_format=memory_format)
        if self.autocast_dtype is None:
            logits = self.model(x)
        else:
            with torch.autocast(self.device.type, dtype=self.autocast_dtype):
                logits = self.model(x)
        return logits.float().softmax(dim=1)[0].cpu().numpy()


def _shift_band(
    band: np.ndarray | None,
    weight: np.ndarray,
    old_top: int,
    new_top: int,
    new_bottom: int,
    width: int,
) -> tuple[np.ndarray | None, np.ndarray]:
    """Move the accumulator to rows ``[new_top, new_bottom)``, keeping the
    partial sums of rows that the previous tile row shares with this one."""
    height = new_bottom - new_top
    new_weight = np.zeros((height, width), np.float32)
    if band is None:
        return None, new_weight
    new_band = np.zeros((band.shape[0], height, width), np.float32)
    keep = max(0, old_top + band.shape[1] - new_top)
    if keep:
        start = new_top - old_top
        new_band[:, :keep] = band[:, start : start + keep]
        new_weight[:keep] = weight[start : start + keep]
    return new_band, new_weight
