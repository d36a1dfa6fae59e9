"""Where training crops come from: labelled pixels, not files.

A person who corrects a large image paints a few regions; a random crop of
that image mostly holds no label at all and teaches nothing. So crops are
drawn by labelled pixels:

* an image is chosen in proportion to its labelled area (a fully labelled
  512 x 512 image counts as much as a whole slide with 512 x 512 pixels
  painted), and the crop is placed at random among the windows that contain
  one of its labelled pixels, chosen uniformly: every crop holds labels;
* a share of the crops (one in three by default) is *class-centred*: a class
  is chosen uniformly among the classes the training labels hold, then one
  of its pixels (images in proportion to how many they hold), and the crop is
  centred on it, so a rare class is seen as often as a common one.

The draw is a pure function of a :class:`numpy.random.Generator`, so the
dataset can make crop ``i`` of epoch ``e`` the same every time (resumed and
distributed runs depend on that).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from segstudio.errors import DataError, InvalidArgumentError
from segstudio.io.masks import unlabelled_of

#: the share of crops centred on a pixel of a randomly chosen class
CLASS_CENTRED_SHARE = 1.0 / 3.0

# How many labelled positions are kept per image (all of them, up to this:
# beyond, an even random subsample, so a whole slide costs a few MB) and per
# class and image for the class-centred draw.
_MAX_POINTS = 1 << 20
_MAX_CLASS_POINTS = 1 << 16


@dataclass(frozen=True)
class CropChoice:
    """One drawn crop: which image, and the labelled pixel it must contain."""

    sample: int
    #: ``(row, column)`` of a labelled pixel
    anchor: tuple[int, int]
    #: its class
    label: int
    #: a class-centred draw (the crop is centred on the anchor)
    centred: bool


class LabelledPixelSampler:
    """Draws crop anchors from the labelled pixels of training label maps.

    Parameters
    ----------
    label_maps:
        One label map per training image (uint8 with 255 = unlabelled, or
        uint16 with 65535 = unlabelled).
    class_share:
        Share of class-centred draws (0 turns them off).
    seed:
        Seeds the subsampling of very large label maps.

    Raises
    ------
    DataError
        No label map holds a labelled pixel.
    """

    def __init__(self, label_maps: Sequence[np.ndarray], *, class_share: float = CLASS_CENTRED_SHARE,
                 seed: int = 0) -> None:
        if not 0.0 <= class_share <= 1.0:
            raise InvalidArgumentError(f"the class-centred share must be in [0, 1], got {class_share}")
        self.class_share = float(class_share)
        rng = np.random.default_rng(seed)
        self.shapes: list[tuple[int, int]] = []
        self.counts = np.zeros(len(label_maps), np.int64)
        self._points: list[np.ndarray] = []
        #: class -> (image indices, pixel count of the class in each, positions per image)
        self._class_points: dict[int, list[tuple[int, np.ndarray]]] = {}
        self._class_counts: dict[int, list[int]] = {}
        for index, labels in enumerate(label_maps):
            labels = np.asarray(labels)
            self.shapes.append((int(labels.shape[0]), int(labels.shape[1])))
            flat = labels.reshape(-1)
            positions = np.flatnonzero(flat != unlabelled_of(labels))
            self.counts[index] = positions.size
            if positions.size == 0:
                self._points.append(positions)
                continue
            classes = flat[positions]
            order = np.argsort(classes, kind="stable")
            present, starts, sizes = np.unique(classes[order], return_index=True, return_counts=True)
            for value, start, size in zip(present.tolist(), starts.tolist(), sizes.tolist(), strict=True):
                of_class = positions[order[start : start + size]]
                if of_class.size > _MAX_CLASS_POINTS:
                    of_class = rng.choice(of_class, _MAX_CLASS_POINTS, replace=False)
                self._class_points.setdefault(value, []).append((index, of_class))
                self._class_counts.setdefault(value, []).append(size)
            if positions.size > _MAX_POINTS:
                positions = rng.choice(positions, _MAX_POINTS, replace=False)
            self._points.append(positions)
        self.labelled_pixels = int(self.counts.sum())
        if self.labelled_pixels == 0:
            raise DataError("no training image has a labelled pixel; there is nothing to learn from")
        self._image_p = self.counts / self.labelled_pixels
        self.classes = sorted(self._class_points)
        self._class_image_p = {
            value: np.asarray(counts, np.float64) / float(sum(counts)) for value, counts in self._class_counts.items()
        }

    def class_pixels(self) -> dict[int, int]:
        """Labelled pixels per class over all training images."""
        return {value: int(sum(counts)) for value, counts in self._class_counts.items()}

    def draw(self, rng: np.random.Generator) -> CropChoice:
        """One crop anchor (see the module docstring)."""
        if self.class_share > 0 and rng.random() < self.class_share:
            value = self.classes[int(rng.integers(len(self.classes)))]
            holders = self._class_points[value]
            which = int(rng.choice(len(holders), p=self._class_image_p[value]))
            index, positions = holders[which]
            flat = int(positions[int(rng.integers(positions.size))])
            centred = True
        else:
            index = int(rng.choice(len(self.counts), p=self._image_p))
            positions = self._points[index]
            flat = int(positions[int(rng.integers(positions.size))])
            value = -1
            centred = False
        width = self.shapes[index][1]
        anchor = (flat // width, flat % width)
        return CropChoice(index, anchor, value, centred)


def place_window(choice: CropChoice, shape: tuple[int, int], window: int, rng: np.random.Generator) -> tuple[int, int]:
    """``(top, left)`` of a ``window x window`` crop that contains the anchor.

    Along an axis the image covers, the window stays inside the image: a
    class-centred crop is centred on its anchor as far as the image allows,
    any other lies uniformly at random among the windows holding the anchor.
    Along an axis shorter than the window, the image lands at a random place
    inside it (the rest is padding).
    """

    def start(anchor: int, extent: int) -> int:
        if extent < window:
            return -int(rng.integers(0, window - extent + 1))
        if choice.centred:
            return int(np.clip(anchor - window // 2, 0, extent - window))
        low, high = max(0, anchor - window + 1), min(anchor, extent - window)
        return int(rng.integers(low, high + 1))

    return start(choice.anchor[0], shape[0]), start(choice.anchor[1], shape[1])
