"""Training data: image/mask pairs on disk, samples in memory, the Dataset.

The headless commands read a folder ``DATA`` with ``images/`` and ``masks/``:
a mask has its image's file stem and the extension ``.png``, and its pixel
values are class indices: an 8-bit mask (up to 254 classes) marks unlabelled
pixels with 255, a 16-bit mask (more classes) with 65535, so each file says
by itself which value is unlabelled and one data set may mix both. The
dataset turns every label map into an int64 target whose unlabelled pixels
are :data:`~segstudio.training.losses.IGNORE_INDEX`. The studio builds the same
in-memory samples from corrected documents, so everything past
:func:`load_samples` works on arrays only.
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import torch
from torch.utils.data import Dataset

from segstudio.errors import DataError, InvalidArgumentError, SegstudioError, UnreadableInputError
from segstudio.io.images import IMAGE_SUFFIXES, read_image
from segstudio.io.masks import read_mask, unlabelled_of
from segstudio.models.checkpoint import Preprocessing
from segstudio.preprocess import fit_intensity, in_channels_of, normalize, to_unit_range
from segstudio.training.losses import IGNORE_INDEX, labels_to_target
from segstudio.training.sampling import CLASS_CENTRED_SHARE, place_window

log = logging.getLogger(__name__)

#: One training example: the image as read (H x W or H x W x 3, any pixel
#: type) and its label map (uint8 H x W with 255 = unlabelled, or uint16
#: H x W with 65535 = unlabelled).
Sample = tuple[np.ndarray, np.ndarray]

T = TypeVar("T")

_SHOWN = 5  # how many file names a warning lists before "and N more"


def _listing(names: Sequence[str]) -> str:
    shown = ", ".join(names[:_SHOWN])
    return shown + (f" and {len(names) - _SHOWN} more" if len(names) > _SHOWN else "")


def find_pairs(root: str | os.PathLike[str]) -> list[tuple[Path, Path]]:
    """The (image, mask) file pairs of a data folder, sorted by file name.

    Parameters
    ----------
    root:
        A folder holding ``images/`` and ``masks/``.

    Returns
    -------
    list of (Path, Path)
        Every image in ``images/`` that has a mask ``masks/<stem>.png``.
        Images without a mask are skipped with one warning.

    Raises
    ------
    DataError
        ``root``, ``images/`` or ``masks/`` is missing, or no image has a mask.
    """
    root = Path(root)
    if not root.is_dir():
        raise DataError("no such data folder", path=root)
    images_dir, masks_dir = root / "images", root / "masks"
    for folder in (images_dir, masks_dir):
        if not folder.is_dir():
            raise DataError(
                f"missing folder '{folder.name}/' (a data folder holds images/ and masks/, "
                "masks named like their image with .png)",
                path=folder,
            )
    images = sorted(
        (p for p in images_dir.iterdir() if p.is_file() and not p.name.startswith(".")
         and p.suffix.lower() in IMAGE_SUFFIXES),
        key=lambda p: p.name,
    )
    pairs: list[tuple[Path, Path]] = []
    unmatched: list[str] = []
    for image in images:
        mask = masks_dir / f"{image.stem}.png"
        if mask.is_file():
            pairs.append((image, mask))
        else:
            unmatched.append(image.name)
    if unmatched:
        log.warning(
            "%d image(s) in %s have no mask in %s and are skipped: %s",
            len(unmatched), images_dir, masks_dir, _listing(unmatched),
        )
    if not pairs:
        raise DataError(
            f"no image in this folder has a mask in {masks_dir} "
            f"({len(images)} image file(s) found; a mask is masks/<image stem>.png)",
            path=images_dir,
        )
    return pairs


def load_pair(image_path: str | os.PathLike[str], mask_path: str | os.PathLike[str]) -> Sample:
    """Read one image and its mask and check that they fit together.

    Raises
    ------
    UnreadableInputError
        Either file cannot be read (the error names the file).
    DataError
        The mask's size differs from the image's (the error names both).
    """
    image = read_image(image_path)
    labels = read_mask(mask_path)
    if image.shape[:2] != labels.shape:
        raise DataError(
            f"mask {os.fspath(mask_path)} is {labels.shape[1]} x {labels.shape[0]} pixels but its image "
            f"is {image.shape[1]} x {image.shape[0]}",
            path=image_path,
        )
    return image, labels


@dataclass
class LoadedSamples:
    """What :func:`load_samples` read, and what it had to skip."""

    samples: list[Sample] = field(default_factory=list)
    #: the image file of each sample, in the same order
    paths: list[Path] = field(default_factory=list)
    #: one error per skipped pair, naming the file
    skipped: list[SegstudioError] = field(default_factory=list)


def load_samples(pairs: Sequence[tuple[Path, Path]], *, skip_bad: bool = True) -> LoadedSamples:
    """Read (image, mask) pairs into memory.

    Parameters
    ----------
    pairs:
        From :func:`find_pairs`.
    skip_bad:
        Skip a pair whose files cannot be read or do not match, with a
        warning naming the file (the default); ``False`` raises the first
        such error.

    Raises
    ------
    UnreadableInputError, DataError
        With ``skip_bad=False``, the first bad pair. With ``skip_bad=True``,
        :class:`DataError` when no pair at all could be read.
    """
    loaded = LoadedSamples()
    for image_path, mask_path in pairs:
        try:
            loaded.samples.append(load_pair(image_path, mask_path))
        except (UnreadableInputError, DataError) as exc:
            if not skip_bad:
                raise
            log.warning("skipping a training pair: %s", exc)
            loaded.skipped.append(exc)
        else:
            loaded.paths.append(Path(image_path))
    if loaded.skipped:
        log.warning(
            "%d of %d pair(s) could not be used and were left out of the training data",
            len(loaded.skipped), len(pairs),
        )
    if pairs and not loaded.samples:
        raise DataError(
            f"none of the {len(pairs)} image/mask pair(s) could be read", path=Path(pairs[0][0]).parent
        )
    return loaded


def split_train_val(items: Sequence[T], val_fraction: float, seed: int) -> tuple[list[T], list[T]]:
    """Split items into training and validation parts, deterministically.

    The same items, fraction and seed always give the same split, whatever
    the global random state. At least one item stays in training; with two
    or more items and a positive fraction, at least one goes to validation.

    Returns
    -------
    (train, val)
        Both keep the items' original order.
    """
    if not 0.0 <= val_fraction < 1.0:
        raise InvalidArgumentError(f"the validation fraction must be in [0, 1), got {val_fraction}")
    count = len(items)
    n_val = round(count * val_fraction)
    if val_fraction > 0 and count >= 2:
        n_val = max(n_val, 1)
    n_val = min(n_val, count - 1) if count else 0
    order = np.random.default_rng(seed).permutation(count)
    val_index = set(order[:n_val].tolist())
    train = [item for i, item in enumerate(items) if i not in val_index]
    val = [item for i, item in enumerate(items) if i in val_index]
    return train, val


def check_labels(samples: Sequence[Sample], num_classes: int, sources: Sequence[str | os.PathLike[str]] | None = None) -> None:
    """Raise :class:`DataError` when a label map holds a class the model lacks.

    Each map's unlabelled value is that of its own type (255 for uint8,
    65535 for uint16), so the samples may mix both.

    ``sources`` (one file per sample) lets the error name the mask's file.
    """
    for index, (_, labels) in enumerate(samples):
        unlabelled = unlabelled_of(labels)
        present = np.unique(labels)
        bad = present[(present >= num_classes) & (present != unlabelled)]
        if bad.size:
            path = None if sources is None else sources[index]
            what = "this mask" if path is not None else f"label map {index}"
            raise DataError(
                f"{what} holds class(es) {bad[:10].tolist()} but the model has "
                f"{num_classes} classes (0..{num_classes - 1}; {unlabelled} = unlabelled)",
                path=path,
            )


class SegmentationDataset(Dataset):
    """Training crops drawn by labelled pixels, augmented, as tensors.

    Each item is a dict: ``"image"`` (float32 ``C x crop x crop``,
    normalised), ``"target"`` (int64 ``crop x crop``, unlabelled =
    :data:`~segstudio.training.losses.IGNORE_INDEX`), ``"inside"`` (bool
    ``crop x crop``: False where the crop reaches past the image) and, when
    weight maps are given, ``"weights"`` (float32 ``crop x crop``).

    Crops come from :class:`~segstudio.training.sampling.LabelledPixelSampler`:
    every crop holds labelled pixels, images weigh by their labelled area, and
    a share of the crops is centred on a pixel of a randomly chosen class.
    Item ``i`` of epoch ``e`` is a pure function of ``(seed, e, i)`` (the
    draw, the zoom, the place and the augmentation), so a resumed or
    distributed run sees exactly the crops an uninterrupted one would.

    Every image is mapped to 0..1 by its own intensity map, fitted once on
    the whole image (:func:`~segstudio.preprocess.fit_intensity`), as the
    predictor does: a crop never looks different from the same pixels seen
    whole.

    Parameters
    ----------
    samples:
        (image, labels) pairs in memory; labels uint8 (255 = unlabelled) or
        uint16 (65535 = unlabelled), each map by its own type.
    preprocessing:
        The model's input preprocessing.
    crop_size:
        Side of the square crops.
    crops_per_epoch:
        The dataset's length; default :func:`crops_per_epoch`.
    scale:
        Zoom range (log-uniform): a window of ``crop / factor`` pixels is cut
        and resized to ``crop``; ``None`` cuts ``crop`` pixels as they are.
    augment:
        Called with a dict of ``tv_tensors`` (``"image"`` in 0..1 before
        normalisation, ``"mask"``: ``int32`` class indices with unlabelled
        pixels already :data:`~segstudio.training.losses.IGNORE_INDEX`,
        optionally ``"weights"``) and returning the same keys (flips,
        rotations, jitter: see :mod:`segstudio.training.augment`).
    weight_maps:
        Optional per-pixel loss weights, one ``H x W`` float array per sample
        (e.g. :func:`segstudio.training.losses.border_weight_map`).
    class_share:
        Share of class-centred crops.
    seed:
        Seeds every draw (with the epoch and the item index).
    """

    def __init__(
        self,
        samples: Sequence[Sample],
        preprocessing: Preprocessing,
        *,
        crop_size: int = 256,
        crops_per_epoch: int | None = None,
        scale: tuple[float, float] | None = None,
        augment: Callable[[dict[str, Any]], dict[str, Any]] | None = None,
        weight_maps: Sequence[np.ndarray] | None = None,
        class_share: float = CLASS_CENTRED_SHARE,
        seed: int = 0,
    ) -> None:
        from segstudio.training.sampling import LabelledPixelSampler

        self.samples = list(samples)
        self.preprocessing = preprocessing
        self.in_channels = in_channels_of(preprocessing)
        if isinstance(crop_size, bool) or not isinstance(crop_size, int) or crop_size < 1:
            raise InvalidArgumentError(f"the crop size must be a positive integer, got {crop_size!r}")
        self.crop_size = crop_size
        if scale is not None and not 0 < float(scale[0]) <= float(scale[1]):
            raise InvalidArgumentError(f"the scale range must satisfy 0 < low <= high, got {scale}")
        self.scale = None if scale is None else (float(scale[0]), float(scale[1]))
        self.augment = augment
        self.seed = int(seed)
        self.epoch = 0
        if weight_maps is not None and len(weight_maps) != len(self.samples):
            raise InvalidArgumentError(
                f"{len(weight_maps)} weight maps were given for {len(self.samples)} samples"
            )
        self.weight_maps = None if weight_maps is None else list(weight_maps)
        for index, (image, labels) in enumerate(self.samples):
            if np.asarray(image).shape[:2] != np.asarray(labels).shape:
                raise DataError(
                    f"sample {index}: label map {np.asarray(labels).shape} does not match image "
                    f"{np.asarray(image).shape[:2]}"
                )
        self.intensities = [fit_intensity(image, preprocessing) for image, _ in self.samples]
        self.sampler = LabelledPixelSampler([labels for _, labels in self.samples], class_share=class_share,
                                            seed=self.seed)
        self.length = crops_per_epoch or crops_per_epoch_for(self.sampler.labelled_pixels, crop_size)

    def set_epoch(self, epoch: int) -> None:
        """Items from now on are those of this epoch."""
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return self.length

    def _cut(self, index: int, top: int, left: int, window: int) -> dict[str, np.ndarray]:
        """The ``window x window`` region at ``(top, left)`` of sample *index*;
        outside the image: 0 in the mapped image, unlabelled, weight 0."""
        image, labels = self.samples[index]
        height, width = labels.shape
        y0, x0 = max(top, 0), max(left, 0)
        y1, x1 = min(top + window, height), min(left + window, width)
        region = (slice(y0 - top, y1 - top), slice(x0 - left, x1 - left))
        planes = np.zeros((self.in_channels, window, window), np.float32)
        target = np.full((window, window), IGNORE_INDEX, np.int32)
        in_image = np.zeros((window, window), np.uint8)
        weights = np.zeros((window, window), np.float32) if self.weight_maps is not None else None
        if y1 > y0 and x1 > x0:
            in_image[region] = 1
            planes[(slice(None), *region)] = to_unit_range(
                image[y0:y1, x0:x1], self.in_channels, channel_order=self.preprocessing.channel_order,
                intensity=self.intensities[index],
            )
            target[region] = labels_to_target(np.asarray(labels[y0:y1, x0:x1]))
            if weights is not None:
                weights[region] = self.weight_maps[index][y0:y1, x0:x1]
        cut = {"image": planes, "mask": target, "inside": in_image}
        if weights is not None:
            cut["weights"] = weights
        return cut

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        from torchvision import tv_tensors
        from torchvision.transforms.v2 import InterpolationMode
        from torchvision.transforms.v2 import functional as TF

        if not 0 <= index < self.length:
            raise IndexError(f"item {index} of a dataset of {self.length}")
        rng = np.random.default_rng([self.seed, self.epoch, index])
        choice = self.sampler.draw(rng)
        window = self.crop_size
        if self.scale is not None and self.scale != (1.0, 1.0):
            low, high = self.scale
            factor = low if low == high else math.exp(rng.uniform(math.log(low), math.log(high)))
            window = max(1, round(self.crop_size / factor))
        top, left = place_window(choice, self.sampler.shapes[choice.sample], window, rng)
        cut = self._cut(choice.sample, top, left, window)
        item: dict[str, Any] = {
            "image": tv_tensors.Image(torch.from_numpy(cut["image"])),
            "mask": tv_tensors.Mask(torch.from_numpy(cut["mask"])),
            "inside": tv_tensors.Mask(torch.from_numpy(cut["inside"])),
        }
        if "weights" in cut:
            item["weights"] = tv_tensors.Mask(torch.from_numpy(cut["weights"]))
        if window != self.crop_size:
            size = [self.crop_size, self.crop_size]
            for key, value in item.items():
                if isinstance(value, tv_tensors.Image):
                    item[key] = TF.resize(value, size, interpolation=InterpolationMode.BILINEAR, antialias=True)
                else:
                    item[key] = TF.resize(value, size, interpolation=InterpolationMode.NEAREST_EXACT)
        if self.augment is not None:
            # torchvision's transforms draw from torch's global generator: seed
            # it from this item's draw, and leave the caller's state alone
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(int(rng.integers(1 << 62)))
                item = self.augment(item)
        out = {
            "image": normalize(item["image"].as_subclass(torch.Tensor).float(), self.preprocessing),
            "target": item["mask"].as_subclass(torch.Tensor).long(),
            "inside": item["inside"].as_subclass(torch.Tensor).bool(),
        }
        if "weights" in item:
            out["weights"] = item["weights"].as_subclass(torch.Tensor).float()
        return out


def crops_per_epoch_for(labelled_pixels: int, crop_size: int) -> int:
    """What one epoch is: as many crops as it takes to cover the labelled
    pixels once (labelled pixels / crop area, rounded up; at least one)."""
    return max(1, -(-int(labelled_pixels) // (crop_size * crop_size)))
