"""Augmentation that keeps images and masks aligned.

Every transform takes a dict of ``torchvision.tv_tensors``: ``"image"``
(:class:`~torchvision.tv_tensors.Image`, float ``C x H x W`` in 0..1),
``"mask"`` (:class:`~torchvision.tv_tensors.Mask`, integer class indices) and
optionally ``"weights"`` (a float :class:`~torchvision.tv_tensors.Mask` of
per-pixel loss weights). Geometric transforms move all of them together;
masks are resampled with nearest-neighbour interpolation so they keep exact
class values (any integer type: the dataset passes ``int32`` masks whose
unlabelled pixels are already :data:`~segstudio.training.losses.IGNORE_INDEX`,
so classes above 255 come through), and pixels that a crop takes from
outside the image become unlabelled in the mask (:data:`IGNORE_INDEX` in a
signed mask, 255 in a uint8 one) and weight 0 in the weight map.
Photometric jitter touches the image only.

Randomness comes from torch's global generator, which the training loop
seeds per epoch, so a run (and a resumed run) is reproducible.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torchvision import tv_tensors
from torchvision.transforms import v2
from torchvision.transforms.v2 import InterpolationMode
from torchvision.transforms.v2 import functional as TF

from segstudio.errors import InvalidArgumentError
from segstudio.io.masks import UNLABELLED
from segstudio.training.losses import IGNORE_INDEX


def _randint(low: int, high: int) -> int:
    """Uniform integer in ``[low, high]`` from torch's global generator."""
    return int(torch.randint(low, high + 1, (1,)).item())


def _uniform(low: float, high: float) -> float:
    return low + (high - low) * float(torch.rand(()).item())


def _fill_for(inpt: torch.Tensor) -> float:
    if isinstance(inpt, tv_tensors.Mask):
        # float masks are loss weight maps: padding carries no weight
        if inpt.dtype.is_floating_point:
            return 0.0
        # a uint8 mask is a label map as stored (255 = unlabelled); a signed
        # one is a training target, whose unlabelled value is never a class
        return float(UNLABELLED) if inpt.dtype == torch.uint8 else float(IGNORE_INDEX)
    return 0.0


def _window(tensor: torch.Tensor, top: int, left: int, height: int, width: int, fill: float) -> torch.Tensor:
    """The ``height x width`` window at ``(top, left)``; parts outside the
    tensor are ``fill``. Works on ``... x H x W``."""
    out = torch.full((*tensor.shape[:-2], height, width), fill, dtype=tensor.dtype)
    src_h, src_w = tensor.shape[-2:]
    y0, x0 = max(top, 0), max(left, 0)
    y1, x1 = min(top + height, src_h), min(left + width, src_w)
    if y1 > y0 and x1 > x0:
        out[..., y0 - top : y1 - top, x0 - left : x1 - left] = tensor[..., y0:y1, x0:x1]
    return out


class RandomScaleCrop(v2.Transform):
    """Random zoom by a factor in ``scale``, then a ``size x size`` crop.

    A window of ``round(size / factor)`` pixels is cut from the image (padded
    where it leaves the image) and resized to ``size``, which equals scaling
    the whole image and cropping it but costs only the crop. An image smaller
    than the window lands at a random place inside it.
    """

    def __init__(self, size: int, scale: tuple[float, float] = (0.75, 1.25)) -> None:
        super().__init__()
        if int(size) < 1:
            raise InvalidArgumentError(f"the crop size must be positive, got {size}")
        low, high = float(scale[0]), float(scale[1])
        if not 0 < low <= high:
            raise InvalidArgumentError(f"the scale range must satisfy 0 < low <= high, got {scale}")
        self.size = int(size)
        self.scale = (low, high)

    def make_params(self, flat_inputs: list[Any]) -> dict[str, Any]:
        height, width = next(
            t.shape[-2:] for t in flat_inputs if isinstance(t, tv_tensors.Image | tv_tensors.Mask)
        )
        # log-uniform, so zooming in and out are equally likely
        factor = math.exp(_uniform(math.log(self.scale[0]), math.log(self.scale[1])))
        window = max(1, round(self.size / factor))

        def start(extent: int) -> int:
            if extent >= window:
                return _randint(0, extent - window)
            return -_randint(0, window - extent)

        return {"top": start(height), "left": start(width), "window": window}

    def transform(self, inpt: Any, params: dict[str, Any]) -> Any:
        window = params["window"]
        cut = _window(inpt.as_subclass(torch.Tensor), params["top"], params["left"], window, window, _fill_for(inpt))
        cut = tv_tensors.wrap(cut, like=inpt)
        if window == self.size:
            return cut
        if isinstance(inpt, tv_tensors.Mask):
            return TF.resize(cut, [self.size, self.size], interpolation=InterpolationMode.NEAREST_EXACT)
        return TF.resize(cut, [self.size, self.size], interpolation=InterpolationMode.BILINEAR, antialias=True)


class RandomRot90(v2.Transform):
    """Rotation by a random multiple of 90 degrees (exact: no resampling)."""

    def make_params(self, flat_inputs: list[Any]) -> dict[str, Any]:
        return {"k": _randint(0, 3)}

    def transform(self, inpt: Any, params: dict[str, Any]) -> Any:
        if params["k"] == 0:
            return inpt
        rotated = torch.rot90(inpt.as_subclass(torch.Tensor), params["k"], dims=(-2, -1))
        return tv_tensors.wrap(rotated.contiguous(), like=inpt)


class RandomBrightnessContrast(v2.Transform):
    """Multiply contrast around the image's mean and brightness by random
    factors in ``1 ± contrast`` and ``1 ± brightness``. Images only.

    Unlike torchvision's ColorJitter this does not clamp to 0..1, so float
    images with values beyond that range (scientific TIFFs) are not cut off.
    """

    _transformed_types = (tv_tensors.Image,)

    def __init__(self, brightness: float = 0.2, contrast: float = 0.2) -> None:
        super().__init__()
        if not (0 <= brightness < 1 and 0 <= contrast < 1):
            raise InvalidArgumentError(
                f"brightness and contrast jitter must be in [0, 1), got {brightness} and {contrast}"
            )
        self.brightness = float(brightness)
        self.contrast = float(contrast)

    def make_params(self, flat_inputs: list[Any]) -> dict[str, Any]:
        return {
            "brightness": _uniform(1 - self.brightness, 1 + self.brightness),
            "contrast": _uniform(1 - self.contrast, 1 + self.contrast),
        }

    def transform(self, inpt: Any, params: dict[str, Any]) -> Any:
        pixels = inpt.as_subclass(torch.Tensor)
        mean = pixels.mean()
        jittered = ((pixels - mean) * params["contrast"] + mean) * params["brightness"]
        return tv_tensors.wrap(jittered, like=inpt)


def build_augmentation(
    crop_size: int | None,
    *,
    scale: tuple[float, float] | None = (0.75, 1.25),
    flips: bool = True,
    rotations: bool = True,
    brightness: float = 0.2,
    contrast: float = 0.2,
) -> v2.Compose:
    """The training augmentation: scale + crop, flips, 90-degree rotations,
    brightness/contrast jitter.

    Parameters
    ----------
    crop_size:
        Side of the square crops the network trains on (all items of a batch
        must have one size); ``None`` leaves out the scale + crop step, for
        items that are already crops (the training dataset cuts its crops
        where the labels are, see :mod:`segstudio.training.sampling`).
    scale:
        Zoom range; ``None`` crops without zooming.
    flips, rotations:
        Random horizontal/vertical flips and 90-degree rotations.
    brightness, contrast:
        Jitter amplitudes (0 turns them off).
    """
    steps: list[v2.Transform] = []
    if crop_size is not None:
        steps.append(RandomScaleCrop(crop_size, scale or (1.0, 1.0)))
    if flips:
        steps += [v2.RandomHorizontalFlip(), v2.RandomVerticalFlip()]
    if rotations:
        steps.append(RandomRot90())
    if brightness or contrast:
        steps.append(RandomBrightnessContrast(brightness, contrast))
    return v2.Compose(steps)
