"""From an image array to a network's input tensor.

Training and inference must feed a network exactly the same numbers, so the
conversion lives here, once. It has two halves that the training set uses
separately (augmentation such as brightness jitter works in the 0..1 range,
before normalisation):

* :func:`to_unit_range` scales pixels to 0..1 by their data type's maximum
  and adapts the channels to what the model takes (grey replicated to RGB,
  RGB reduced to luminance, alpha dropped);
* :func:`normalize` applies the per-channel ``(x - mean) / std``.

:func:`image_to_tensor` does both.
"""

from __future__ import annotations

import numpy as np
import torch

from segstudio.errors import InvalidArgumentError
from segstudio.models.checkpoint import Preprocessing

#: ITU-R BT.601 luma weights, the usual RGB -> grey conversion (OpenCV, Pillow).
LUMA_WEIGHTS = (0.299, 0.587, 0.114)


def in_channels_of(preprocessing: Preprocessing) -> int:
    """Number of input channels a model with this preprocessing takes."""
    channels = len(preprocessing.mean)
    if channels != len(preprocessing.std):
        raise InvalidArgumentError(
            f"preprocessing has {len(preprocessing.mean)} mean values but {len(preprocessing.std)} std values"
        )
    if channels not in (1, 3):
        raise InvalidArgumentError(f"models take 1 or 3 input channels, this preprocessing has {channels}")
    return channels


def _scale(image: np.ndarray) -> np.ndarray:
    """Pixels as float32; integer types divided by their maximum."""
    if image.dtype == np.bool_:
        return image.astype(np.float32)
    if np.issubdtype(image.dtype, np.integer):
        maximum = float(np.iinfo(image.dtype).max)
        return image.astype(np.float32) * np.float32(1.0 / maximum)
    if np.issubdtype(image.dtype, np.floating):
        return image.astype(np.float32, copy=False)
    raise InvalidArgumentError(f"pixel type {image.dtype} is not an image type")


def to_unit_range(image: np.ndarray, in_channels: int, *, channel_order: str = "RGB") -> np.ndarray:
    """Scale an image to 0..1 and give it the model's channels.

    Parameters
    ----------
    image:
        ``H x W`` (grey), ``H x W x 1``, ``H x W x 3`` (RGB) or ``H x W x 4``
        (RGBA; alpha is dropped). ``uint8``, ``uint16`` and other integer
        types are divided by their type's maximum; float images are taken as
        they are.
    in_channels:
        1 or 3, what the model takes. Grey is replicated to three channels;
        RGB is reduced to luminance for a one-channel model.
    channel_order:
        ``"RGB"`` (or ``"grey"``) keeps the channel order; ``"BGR"`` reverses
        a three-channel input for models trained on BGR data.

    Returns
    -------
    numpy.ndarray
        ``float32``, ``in_channels x H x W``, C-contiguous.

    Raises
    ------
    InvalidArgumentError
        An array of another shape or type.
    """
    image = np.asarray(image)
    if image.ndim == 3 and image.shape[2] == 4:
        image = image[:, :, :3]
    if image.ndim == 3 and image.shape[2] == 1:
        image = image[:, :, 0]
    if image.ndim not in (2, 3) or (image.ndim == 3 and image.shape[2] != 3):
        raise InvalidArgumentError(
            f"an image must be H x W (grey), H x W x 3 (RGB) or H x W x 4 (RGBA), got shape {image.shape}"
        )
    if image.shape[0] == 0 or image.shape[1] == 0:
        raise InvalidArgumentError(f"the image is empty (shape {image.shape})")
    if in_channels not in (1, 3):
        raise InvalidArgumentError(f"models take 1 or 3 input channels, not {in_channels}")
    pixels = _scale(image)
    if pixels.ndim == 2:
        planes = pixels[np.newaxis]
        if in_channels == 3:
            planes = np.repeat(planes, 3, axis=0)
        return np.ascontiguousarray(planes)
    if in_channels == 1:
        grey = pixels @ np.asarray(LUMA_WEIGHTS, dtype=np.float32)
        return np.ascontiguousarray(grey[np.newaxis])
    planes = pixels.transpose(2, 0, 1)
    if channel_order.upper() == "BGR":
        planes = planes[::-1]
    return np.ascontiguousarray(planes)


def normalize(tensor: torch.Tensor, preprocessing: Preprocessing) -> torch.Tensor:
    """``(x - mean) / std`` per channel of a ``C x H x W`` or ``N x C x H x W`` tensor."""
    channels = in_channels_of(preprocessing)
    if tensor.ndim not in (3, 4) or tensor.shape[-3] != channels:
        raise InvalidArgumentError(
            f"expected a tensor with {channels} channels (C x H x W or N x C x H x W), got shape {tuple(tensor.shape)}"
        )
    std = torch.as_tensor(preprocessing.std, dtype=tensor.dtype, device=tensor.device)
    if bool((std == 0).any()):
        raise InvalidArgumentError(f"preprocessing std must not be zero, got {tuple(preprocessing.std)}")
    mean = torch.as_tensor(preprocessing.mean, dtype=tensor.dtype, device=tensor.device)
    return (tensor - mean[:, None, None]) / std[:, None, None]


def image_to_tensor(image: np.ndarray, preprocessing: Preprocessing) -> torch.Tensor:
    """The network input for one image: scaled, channels adapted, normalised.

    Parameters
    ----------
    image:
        See :func:`to_unit_range` for the accepted shapes and types.
    preprocessing:
        The model's :class:`~segstudio.models.checkpoint.Preprocessing`; the
        length of its ``mean`` is the number of channels the model takes.

    Returns
    -------
    torch.Tensor
        ``float32``, ``C x H x W`` on the CPU.

    Raises
    ------
    InvalidArgumentError
        An image of an unsupported shape or type, or inconsistent
        preprocessing values.
    """
    channels = in_channels_of(preprocessing)
    planes = to_unit_range(image, channels, channel_order=preprocessing.channel_order)
    return normalize(torch.from_numpy(planes), preprocessing)
