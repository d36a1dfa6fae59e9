"""Layer buffers: numpy RGBA arrays that QImages wrap without copying.

Each layer keeps an ``H x W x 4`` uint8 buffer and a QImage over the same
memory. A change to the labels recolours only the dirty rectangle through
the class colour table (rule 7 of the design), which costs microseconds per
brush dab, where recolouring a whole 8192 x 8192 map would cost a second.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PySide6.QtGui import QImage

from segstudio.io.images import to_uint8_display

Region = tuple[slice, slice]

# drawing order, bottom to top: the heatmap is drawn over the masks (under
# three half-transparent masks, turning it on seemed to change nothing)
LAYER_NAMES = ("image", "prediction", "crf", "labels", "heatmap")
MASK_LAYERS = ("prediction", "crf", "labels")


@dataclass
class LayerState:
    visible: bool = True
    opacity: float = 1.0
    outline: bool = False


def wrap_rgba(buffer: np.ndarray) -> QImage:
    """A QImage over ``buffer`` (H x W x 4 uint8, C-contiguous): no copy."""
    height, width = buffer.shape[:2]
    return QImage(buffer.data, width, height, buffer.strides[0], QImage.Format.Format_RGBA8888)


def display_rgba(image: np.ndarray) -> np.ndarray:
    """The image as an opaque RGBA display buffer (16-bit/float scaled)."""
    pixels = to_uint8_display(image)
    if pixels.ndim == 3 and pixels.shape[2] == 4:
        pixels = pixels[:, :, :3]
    if pixels.ndim == 3 and pixels.shape[2] == 1:
        pixels = pixels[:, :, 0]
    rgba = np.empty((*pixels.shape[:2], 4), np.uint8)
    if pixels.ndim == 2:
        rgba[:, :, :3] = pixels[:, :, None]
    else:
        rgba[:, :, :3] = pixels
    rgba[:, :, 3] = 255
    return rgba


def _outline(labels: np.ndarray) -> np.ndarray:
    """Pixels whose right or lower neighbour has another label."""
    edge = np.zeros(labels.shape, bool)
    edge[:, :-1] |= labels[:, :-1] != labels[:, 1:]
    edge[:-1, :] |= labels[:-1, :] != labels[1:, :]
    edge[:, 1:] |= labels[:, 1:] != labels[:, :-1]
    edge[1:, :] |= labels[1:, :] != labels[:-1, :]
    return edge


class MaskLayer:
    """A label map shown through the class colour table, optionally as outlines."""

    def __init__(self, labels: np.ndarray, lut: np.ndarray, outline: bool = False, *, blank: bool = False) -> None:
        self.labels = labels
        self.lut = lut
        self.outline = outline
        self.buffer = np.zeros((*labels.shape, 4), np.uint8)
        self.qimage = wrap_rgba(self.buffer)
        if not blank:  # blank: the caller knows every label is unlabelled (transparent, as the zeros are)
            self.recolor(None)

    def recolor(self, region: Region | None) -> Region:
        """Recolour ``region`` (None: everything); returns the region touched."""
        height, width = self.labels.shape
        if region is None:
            region = (slice(0, height), slice(0, width))
        ys, xs = region
        if self.outline:
            # an edge depends on the neighbours: widen the region by one pixel
            ys = slice(max(0, ys.start - 1), min(height, ys.stop + 1))
            xs = slice(max(0, xs.start - 1), min(width, xs.stop + 1))
            labels = self.labels[ys, xs]
            colors = self.lut[labels]
            colors[~_outline(labels), 3] = 0
            self.buffer[ys, xs] = colors
        else:
            self.buffer[ys, xs] = self.lut[self.labels[ys, xs]]
        return ys, xs

    def set_lut(self, lut: np.ndarray) -> None:
        self.lut = lut
        self.recolor(None)

    def set_outline(self, outline: bool) -> None:
        if outline != self.outline:
            self.outline = outline
            self.recolor(None)


class HeatmapLayer:
    """One class's probability (or the entropy) through a perceptual colour map."""

    def __init__(self, values: np.ndarray, colormap: np.ndarray) -> None:
        self.buffer = np.empty((*values.shape, 4), np.uint8)
        self.qimage = wrap_rgba(self.buffer)
        self.set_values(values, colormap)

    def set_values(self, values: np.ndarray, colormap: np.ndarray) -> None:
        """``values`` in [0, 1] (float) or 0..255 (uint8); ``colormap`` 256 x 3."""
        if values.dtype != np.uint8:
            values = np.clip(np.rint(values.astype(np.float32) * 255), 0, 255).astype(np.uint8)
        self.buffer[:, :, :3] = colormap[values]
        self.buffer[:, :, 3] = 255


def entropy_map(probabilities: np.ndarray) -> np.ndarray:
    """Normalised entropy (0 = certain, 1 = uniform) of a C x H x W map,
    computed in row bands to bound the float32 memory."""
    channels, height, width = probabilities.shape
    out = np.empty((height, width), np.float32)
    scale = 1.0 / np.log(channels) if channels > 1 else 1.0
    step = max(1, 4_000_000 // max(1, channels * width))
    for top in range(0, height, step):
        band = probabilities[:, top : top + step].astype(np.float32)
        if probabilities.dtype == np.uint8:
            band /= 255.0
        band = np.clip(band, 1e-7, 1.0)
        out[top : top + step] = -(band * np.log(band)).sum(axis=0) * scale
    return np.clip(out, 0.0, 1.0)


DEFAULT_LAYERS = {
    "image": LayerState(True, 1.0),
    "heatmap": LayerState(False, 0.6),
    "prediction": LayerState(True, 0.45),
    "crf": LayerState(False, 0.5),
    "labels": LayerState(True, 0.6),
}


def heatmap_values(probabilities: np.ndarray, index: int) -> np.ndarray:
    """What the heatmap shows of ``C x H x W`` *probabilities*: class *index*'s
    probability, or the entropy for a negative *index*."""
    if index < 0:
        return entropy_map(probabilities)
    values = np.ascontiguousarray(probabilities[min(index, probabilities.shape[0] - 1)])
    return values if values.dtype == np.uint8 else values.astype(np.float32)
