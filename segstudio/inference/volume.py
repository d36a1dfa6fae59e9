"""Predicting a medical volume slice by slice with a 2-D model.

The networks are 2-D, so a volume is segmented one axial slice (``array[k]``)
at a time with :meth:`Predictor.predict_steps`. What matters here is what a
slice looks like to the network, and that is the checkpoint's business
(:func:`segstudio.preprocess.volume_intensity`): a recorded input window
(CT), else the checkpoint's normalisation fitted on the *whole volume*, so
every slice is scaled alike and raw Hounsfield units never meet a "divide
by the type's maximum". Each slice goes to the predictor as a
:class:`~segstudio.preprocess.MappedImage` carrying the volume's map. Only
checkpoints written before the normalisation was recorded follow the window
the user is viewing with, as they always did. MONOCHROME1 volumes
(radiographs, :attr:`segstudio.io.volume.Volume.invert`) are inverted, as
the studio shows them, so that a model sees bone bright whichever way the
scanner stored it.

:func:`slice_normaliser` gives the uint8 slices the studio shows and the
dense CRF's appearance kernel compares (window, else the volume's 0.5-99.5
percentiles).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence

import numpy as np

from segstudio.errors import InvalidArgumentError
from segstudio.inference.predictor import PredictionResult, Predictor
from segstudio.io.masks import unlabelled_for
from segstudio.preprocess import LEGACY_VOLUME_PERCENTILES, MappedImage, check_volume, robust_range, volume_intensity
from segstudio.tasks import CancelToken, Progress, Task
from segstudio.windowing import apply_window, invert_grey

log = logging.getLogger(__name__)

def volume_display_range(volume_array: np.ndarray) -> tuple[float, float] | None:
    """``(lo, hi)``: the 0.5th and 99.5th percentiles of the finite values (how
    volumes without a window are shown).

    Falls back to the minimum and maximum when the percentiles coincide (a
    mostly constant volume); ``None`` when every value is the same or none is
    finite.
    """
    return robust_range(volume_array, *LEGACY_VOLUME_PERCENTILES, constant_ok=False)


def slice_normaliser(
    volume_array: np.ndarray, window: tuple[float, float] | None = None, *, invert: bool = False
) -> Callable[[int], np.ndarray]:
    """A function giving slice ``k`` of the volume as the uint8 image the model sees.

    Parameters
    ----------
    volume_array:
        ``Z x H x W`` (grey) or ``Z x H x W x 3`` (colour).
    window:
        ``(center, width)`` in the volume's units, for grey volumes.
    invert:
        Invert the uint8 output (MONOCHROME1, see
        :attr:`segstudio.io.volume.Volume.invert`), exactly as
        :func:`segstudio.windowing.apply_window` does for the display.

    Raises
    ------
    InvalidArgumentError
        A window or *invert* on a colour volume, a bad window, or a
        non-numeric volume.
    """
    array = check_volume(volume_array, window=window, invert=invert)
    if window is not None:
        center, width = (float(v) for v in window)
        return lambda k: apply_window(array[k], center, width, invert=invert)
    normalise = _percentile_normaliser(array)
    return (lambda k: invert_grey(normalise(k))) if invert else normalise


def _percentile_normaliser(array: np.ndarray) -> Callable[[int], np.ndarray]:
    """Slice ``k`` as uint8 without a window: as stored for uint8, else
    stretched between the volume's robust percentiles."""
    if array.dtype == np.uint8:
        return lambda k: array[k]
    bounds = volume_display_range(array)
    if bounds is None:
        return lambda k: np.zeros(array.shape[1:], np.uint8)
    lo, hi = bounds
    scale = 255.0 / (hi - lo)

    def normalise(k: int) -> np.ndarray:
        values = array[k].astype(np.float64)
        values = np.where(np.isfinite(values), values, lo)
        return np.clip(np.rint((values - lo) * scale), 0, 255).astype(np.uint8)

    return normalise


def _chosen_slices(slices: Sequence[int] | None, count: int) -> list[int]:
    if slices is None:
        return list(range(count))
    chosen: list[int] = []
    for k in slices:
        if isinstance(k, bool) or not isinstance(k, int | np.integer) or not 0 <= k < count:
            raise InvalidArgumentError(f"slice {k!r} is out of range; the volume has {count} slice(s)")
        if int(k) not in chosen:
            chosen.append(int(k))
    return chosen


def predict_volume_steps(
    predictor: Predictor,
    volume_array: np.ndarray,
    *,
    slices: Sequence[int] | None = None,
    window: tuple[float, float] | None = None,
    invert: bool = False,
    cancel: CancelToken | None = None,
) -> Task[PredictionResult]:
    """Predict the axial slices of a volume; a task yielding one Progress per slice.

    Parameters
    ----------
    predictor:
        The 2-D predictor (tiling, device and precision are its own).
    volume_array:
        ``Z x H x W`` or ``Z x H x W x 3``, any numeric type (HU for CT).
    slices:
        Which slices to predict (all by default). The others keep
        probability 0 and the unlabelled value of the label type (255 in a
        uint8 map, 65535 in a uint16 map).
    window:
        ``(center, width)``: the window the volume is viewed with. Only
        checkpoints written before the normalisation was recorded use it
        (see :func:`segstudio.preprocess.volume_intensity`).
    invert:
        The volume is MONOCHROME1 (:attr:`segstudio.io.volume.Volume.invert`):
        slices are inverted after the window, as the studio shows them.
    cancel:
        Checked between slices (and, through the predictor, between tiles).

    Returns
    -------
    PredictionResult
        ``probabilities`` C x Z x H x W in the predictor's probability type
        (float16 by default), ``labels`` Z x H x W in the predictor's label
        type (uint8, or uint16 for models with many classes).

    Raises
    ------
    InvalidArgumentError
        Bad volume, slice index or window.
    TaskCancelled
        Cancelled through *cancel*.
    """
    array = np.asarray(volume_array)
    intensity = volume_intensity(array, predictor.preprocessing, view_window=window, invert=invert)
    count = int(array.shape[0])
    chosen = _chosen_slices(slices, count)
    probabilities: np.ndarray | None = None
    labels: np.ndarray | None = None
    for done, k in enumerate(chosen):
        if cancel is not None:
            cancel.raise_if_cancelled()
        task = predictor.predict_steps(MappedImage(array[k], intensity), cancel=cancel)
        while True:
            try:
                next(task)
            except StopIteration as stop:
                result: PredictionResult = stop.value
                break
        if probabilities is None:
            # Allocated once, at the first slice, when the class count is known.
            channels = result.probabilities.shape[0]
            probabilities = np.zeros((channels, count, *array.shape[1:3]), result.probabilities.dtype)
            labels = np.full((count, *array.shape[1:3]), unlabelled_for(result.labels.dtype), result.labels.dtype)
        probabilities[:, k] = result.probabilities
        labels[k] = result.labels
        del result
        yield Progress(done + 1, len(chosen), message=f"slice {k + 1}/{count}", stage="predict")
    if probabilities is None:
        raise InvalidArgumentError("no slice to predict")
    log.debug("predicted %d of %d slice(s)", len(chosen), count)
    return PredictionResult(probabilities, labels, predictor.tile_size)
