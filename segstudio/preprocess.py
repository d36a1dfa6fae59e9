"""From an image array to a network's input tensor.

Training, validation, prediction, the studio and volumes must feed a network
exactly the same numbers, so the conversion lives here, once, in two steps:

1. an :class:`IntensityMap` takes the image's values linearly to the 0..1
   range. It is fitted once per image (:func:`fit_intensity`) or per volume
   (:func:`volume_intensity`) by the rule the checkpoint records
   (:attr:`~segstudio.models.checkpoint.Preprocessing.normalization`):
   8-bit images divided by 255, other types stretched between their own
   percentiles, a fixed range, a CT/MR window, or the old "divide by the
   type's maximum". Fitted on the whole image, it is then applied to tiles
   and crops alike, so a tile never looks different from the same pixels
   in the whole image;
2. :func:`normalize` applies the per-channel ``(x - mean) / std``.

The training set uses the two halves separately (augmentation such as
brightness jitter works in the 0..1 range, before normalisation);
:func:`image_to_tensor` does both.

A slice of a volume must be mapped by its volume's statistics, not its own:
:class:`MappedImage` is an image that carries the map fitted elsewhere, and
every function here uses that map instead of fitting a new one.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
import torch

from segstudio.errors import InvalidArgumentError
from segstudio.models.checkpoint import Preprocessing, check_preprocessing

#: ITU-R BT.601 luma weights, the usual RGB -> grey conversion (OpenCV, Pillow).
LUMA_WEIGHTS = (0.299, 0.587, 0.114)

# Percentiles of more values than this are taken on an even subsample: the
# result is the same to well below a grey level, and a whole-slide image or
# a 512 x 512 x 600 CT needs no float64 copy of itself.
_PERCENTILE_SAMPLE = 1 << 22

#: the percentiles the studio has always used to show (and, for old
#: checkpoints, feed) volumes without a window
LEGACY_VOLUME_PERCENTILES = (0.5, 99.5)


@dataclass(frozen=True)
class IntensityMap:
    """How one image's (or volume's) values become the network's 0..1 range.

    ``(value - low) / (high - low)``, clipped to 0..1 when ``clip`` (windows
    and fixed ranges), then ``1 - x`` when ``invert`` (DICOM MONOCHROME1,
    shown and fed inverted). Non-finite values map as ``low`` does.
    """

    low: float
    high: float
    clip: bool = False
    invert: bool = False

    def __post_init__(self) -> None:
        if not (np.isfinite(self.low) and np.isfinite(self.high) and self.high > self.low):
            raise InvalidArgumentError(f"an intensity map needs finite low < high, got {self.low}, {self.high}")

    def apply(self, pixels: np.ndarray) -> np.ndarray:
        """The mapped values as ``float32`` (same shape)."""
        values = np.asarray(pixels)
        if values.dtype == np.bool_:
            values = values.astype(np.uint8)
        out = values.astype(np.float32)
        if values.dtype.kind == "f" and not np.isfinite(out).all():
            out = np.where(np.isfinite(out), out, np.float32(self.low))
        if self.low != 0.0:
            out -= np.float32(self.low)
        if self.high - self.low != 1.0:
            out *= np.float32(1.0 / (self.high - self.low))
        if self.clip:
            np.clip(out, 0.0, 1.0, out=out)
        if self.invert:
            out = np.float32(1.0) - out
        return out

    def describe(self) -> str:
        """A short text for logs: ``"values 12..3041 -> 0..1"``."""
        text = f"values {self.low:g}..{self.high:g} -> 0..1"
        return text + (" (clipped)" if self.clip else "") + (", inverted" if self.invert else "")


class MappedImage(np.ndarray):
    """An image array that carries the :class:`IntensityMap` it must be fed with.

    A volume's slice is one: its map comes from the whole volume. Views and
    slices of it (tiles, crops) and ``astype`` copies keep the map;
    ``numpy.asarray`` drops it, and so does arithmetic, whose values the map
    was not fitted on.
    """

    intensity: IntensityMap | None

    def __new__(cls, array: np.ndarray, intensity: IntensityMap) -> MappedImage:
        obj = np.asarray(array).view(cls)
        obj.intensity = intensity
        return obj

    def __array_finalize__(self, obj) -> None:
        self.intensity = getattr(obj, "intensity", None)

    def __array_ufunc__(self, ufunc, method, *inputs, **kwargs):
        def plain(values):
            return tuple(np.asarray(x) if isinstance(x, MappedImage) else x for x in values)

        if "out" in kwargs:
            kwargs["out"] = plain(kwargs["out"])
        return getattr(ufunc, method)(*plain(inputs), **kwargs)

    def __reduce__(self):
        # pickled (to a worker process) as a plain array plus its map
        return (MappedImage, (np.asarray(self), self.intensity))


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


def robust_range(data: np.ndarray, low: float, high: float, *, constant_ok: bool = True):
    """``(lo, hi)``: the *low* and *high* percentiles of the finite values.

    Falls back to the minimum and maximum where the percentiles coincide (a
    mostly constant image). A constant image gives ``(v, v + 1)`` (it maps
    to 0) and one without a finite value ``(0, 1)``; with
    ``constant_ok=False`` both give ``None``. Arrays of more than 4 M values
    are subsampled evenly.
    """
    values = np.asarray(data).reshape(-1)
    step = max(1, -(-values.size // _PERCENTILE_SAMPLE))
    sample = values[::step].astype(np.float64)
    sample = sample[np.isfinite(sample)]
    if sample.size == 0:
        return (0.0, 1.0) if constant_ok else None
    lo, hi = (float(v) for v in np.percentile(sample, [low, high]))
    if hi <= lo:
        lo, hi = float(sample.min()), float(sample.max())
    if hi <= lo:
        return (lo, lo + 1.0) if constant_ok else None
    return lo, hi


def _type_range(dtype: np.dtype) -> tuple[float, float]:
    if dtype == np.bool_:
        return 0.0, 1.0
    if np.issubdtype(dtype, np.integer):
        return 0.0, float(np.iinfo(dtype).max)
    if np.issubdtype(dtype, np.floating):
        return 0.0, 1.0  # floats as they are
    raise InvalidArgumentError(f"pixel type {dtype} is not an image type")


def _window_map(window: tuple[float, float], invert: bool) -> IntensityMap:
    from segstudio.windowing import window_bounds

    center, width = (float(v) for v in window)
    low, high = window_bounds(center, width)
    if high <= low:  # a width of 1 is a threshold
        high = low + 1.0
    return IntensityMap(low, high, clip=True, invert=invert)


def resolved_mode(preprocessing: Preprocessing, dtype: np.dtype) -> str:
    """The normalisation actually used for pixels of ``dtype``: ``"auto"`` becomes
    ``"dtype"`` for 8-bit (and boolean) images and ``"percentile"`` for the rest."""
    mode = preprocessing.normalization
    if mode == "auto":
        return "dtype" if np.dtype(dtype) in (np.dtype(np.uint8), np.dtype(np.bool_)) else "percentile"
    return mode


def fit_intensity(
    data: np.ndarray, preprocessing: Preprocessing, *, invert: bool = False, volume: bool = False
) -> IntensityMap:
    """The :class:`IntensityMap` of a whole image (or volume) under a checkpoint's rule.

    Parameters
    ----------
    data:
        The whole image (``H x W``, ``H x W x C``) or volume. A
        :class:`MappedImage` answers with its own map.
    preprocessing:
        The checkpoint's preprocessing; its ``normalization`` decides.
    invert:
        Map ``x -> 1 - x`` after the rest (MONOCHROME1).
    volume:
        *data* is a ``Z x H x W`` (or ``Z x H x W x 3``) volume, not an
        ``H x W x C`` image whose fourth channel (alpha) is left out.

    Raises
    ------
    InvalidArgumentError
        A non-numeric array, or a preprocessing whose settings cannot work.
    """
    if isinstance(data, MappedImage) and data.intensity is not None:
        return data.intensity
    data = np.asarray(data)
    if data.dtype.kind not in "biuf":
        raise InvalidArgumentError(f"pixel type {data.dtype} is not an image type")
    check_preprocessing(preprocessing)
    if not volume and data.ndim == 3 and data.shape[2] == 4:
        data = data[..., :3]  # alpha is no intensity
    mode = resolved_mode(preprocessing, data.dtype)
    if mode == "dtype":
        low, high = _type_range(data.dtype)
        return IntensityMap(low, high, invert=invert)
    if mode == "percentile":
        low, high = robust_range(data, *preprocessing.percentiles)
        return IntensityMap(low, high, invert=invert)
    if mode == "range":
        low, high = (float(v) for v in preprocessing.value_range)
        return IntensityMap(low, high, clip=True, invert=invert)
    return _window_map(preprocessing.input_window, invert)


def check_volume(
    volume: np.ndarray, *, window: tuple[float, float] | None = None, invert: bool = False
) -> np.ndarray:
    """*volume* as an array, after checking that it can be segmented slice by
    slice with this window and inversion.

    Raises
    ------
    InvalidArgumentError
        Not ``Z x H x W`` or ``Z x H x W x 3``, not numeric, a window or
        *invert* on a colour volume, or a window narrower than 1.
    """
    from segstudio.windowing import window_bounds

    array = np.asarray(volume)
    if array.ndim not in (3, 4) or (array.ndim == 4 and array.shape[3] != 3):
        raise InvalidArgumentError(f"a volume must be Z x H x W or Z x H x W x 3, got shape {array.shape}")
    if array.dtype.kind not in "biuf":
        raise InvalidArgumentError(f"cannot segment voxels of type {array.dtype}")
    if array.ndim == 4 and invert:
        raise InvalidArgumentError("inversion (MONOCHROME1) applies to grey volumes, not to colour ones")
    if window is not None:
        if array.ndim == 4:
            raise InvalidArgumentError("a window applies to grey volumes (CT, MR), not to colour ones")
        center, width = (float(v) for v in window)
        if not np.isfinite(center):
            raise InvalidArgumentError(f"window centre must be a finite number, got {center}")
        window_bounds(center, width)  # raises for a width below 1
    return array


def volume_intensity(
    volume: np.ndarray,
    preprocessing: Preprocessing,
    *,
    view_window: tuple[float, float] | None = None,
    invert: bool = False,
) -> IntensityMap:
    """How every slice of a volume becomes the model's input.

    * a checkpoint with an ``input_window`` uses it;
    * a checkpoint written before the normalisation was recorded
      (``"dtype"``) keeps its old behaviour: the window the user views with
      (*view_window*), else the volume's 0.5-99.5 percentiles, 8-bit
      volumes as stored;
    * every other checkpoint fits its own rule on the whole volume
      (:func:`fit_intensity`) and never looks at the display.

    Raises
    ------
    InvalidArgumentError
        A window or *invert* on a colour volume, a bad window, or a
        non-numeric volume.
    """
    window = preprocessing.input_window
    if window is None and preprocessing.normalization == "dtype":
        window = view_window
    array = check_volume(volume, window=window, invert=invert)
    if window is not None:
        return _window_map(window, invert)
    if preprocessing.normalization == "dtype":
        if array.dtype == np.uint8:
            return IntensityMap(0.0, 255.0, invert=invert)
        low, high = robust_range(array, *LEGACY_VOLUME_PERCENTILES)
        return IntensityMap(low, high, clip=True, invert=invert)
    return fit_intensity(array, preprocessing, invert=invert, volume=True)


def to_unit_range(
    image: np.ndarray, in_channels: int, *, channel_order: str = "RGB", intensity: IntensityMap | None = None
) -> np.ndarray:
    """Map an image to 0..1 and give it the model's channels.

    Parameters
    ----------
    image:
        ``H x W`` (grey), ``H x W x 1``, ``H x W x 3`` (RGB) or ``H x W x 4``
        (RGBA; alpha is dropped), any numeric type.
    in_channels:
        1 or 3, what the model takes. Grey is replicated to three channels;
        RGB is reduced to luminance for a one-channel model.
    channel_order:
        ``"RGB"`` (or ``"grey"``) keeps the channel order; ``"BGR"`` reverses
        a three-channel input for models trained on BGR data.
    intensity:
        The map fitted on the whole image (:func:`fit_intensity`); without
        one, the image's own map if it is a :class:`MappedImage`, else
        integers are divided by their type's maximum and floats taken as
        they are.

    Returns
    -------
    numpy.ndarray
        ``float32``, ``in_channels x H x W``, C-contiguous.

    Raises
    ------
    InvalidArgumentError
        An array of another shape or type.
    """
    if intensity is None:
        intensity = fit_intensity(image, Preprocessing(normalization="dtype"))
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
    if image.dtype.kind not in "biuf":
        raise InvalidArgumentError(f"pixel type {image.dtype} is not an image type")
    pixels = intensity.apply(image)
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


def image_to_tensor(
    image: np.ndarray, preprocessing: Preprocessing, *, intensity: IntensityMap | None = None
) -> torch.Tensor:
    """The network input for one image: mapped to 0..1, channels adapted, normalised.

    Parameters
    ----------
    image:
        See :func:`to_unit_range` for the accepted shapes and types.
    preprocessing:
        The model's :class:`~segstudio.models.checkpoint.Preprocessing`; the
        length of its ``mean`` is the number of channels the model takes.
    intensity:
        The map fitted on the whole image when *image* is a tile of it;
        ``None`` fits one on *image* itself (:func:`fit_intensity`).

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
    if intensity is None:
        intensity = fit_intensity(image, preprocessing)
    planes = to_unit_range(image, channels, channel_order=preprocessing.channel_order, intensity=intensity)
    return normalize(torch.from_numpy(planes), preprocessing)


def with_normalization(
    preprocessing: Preprocessing,
    mode: str,
    *,
    percentiles: tuple[float, float] | None = None,
    value_range: tuple[float, float] | None = None,
    input_window: tuple[float, float] | None = None,
) -> Preprocessing:
    """A copy of *preprocessing* with another normalisation rule, checked.

    Raises
    ------
    InvalidArgumentError
        An unknown mode, or a mode without the values it needs (``"range"``
        needs *value_range* and takes no input window, ``"window"`` needs
        an input window).
    """
    changed = replace(
        preprocessing,
        normalization=mode,
        percentiles=tuple(percentiles) if percentiles is not None else preprocessing.percentiles,
        value_range=tuple(value_range) if value_range is not None else preprocessing.value_range,
        input_window=tuple(input_window) if input_window is not None else preprocessing.input_window,
    )
    if mode == "range" and input_window is None:
        changed = replace(changed, input_window=None)  # a window carried over from before means nothing here
    check_preprocessing(changed)
    return changed
