"""Fully connected CRF refinement of class probability maps.

DeepLab-v1 (Chen et al., "Semantic Image Segmentation with Deep Convolutional
Nets and Fully Connected CRFs", ICLR 2015) sharpens the coarse output of the
network with the fully connected CRF of Krähenbühl & Koltun (NeurIPS 2011):
a Potts model whose pairwise term is a Gaussian smoothness kernel plus a
bilateral appearance kernel, solved approximately by mean-field iterations
in the permutohedral lattice. This module wraps ``pydensecrf`` for that job
(the reference backend) and runs the iterations one at a time so the studio
can show progress and stop between them. :func:`segstudio.refine.refine`
chooses between it and the torch backend and splits large images into
tiles.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields
from typing import Any

import numpy as np

from segstudio.errors import InvalidArgumentError
from segstudio.io.images import to_uint8_display
from segstudio.io.masks import MAX_CLASSES_8BIT
from segstudio.tasks import CancelToken, Progress, Task, run_to_completion

logger = logging.getLogger(__name__)

#: Probabilities are clipped to this floor before ``-log`` so a hard zero in
#: the network output does not become an infinite unary energy.
PROBABILITY_FLOOR = 1e-8


#: Negative probabilities down to this are taken as float round-off (such as
#: ``1 - p`` computed in float64) and clipped like zeros; below it they are an
#: error in the caller's map.
NEGATIVE_TOLERANCE = 1e-6

MAX_ITERATIONS = 100
_MAX_CLASSES = 65536  # labels are stored as uint16 at most


@dataclass(frozen=True)
class CRFParams:
    """Settings of the fully connected CRF.

    The defaults follow DeepLab-v1 (Chen et al., ICLR 2015, section 4.1):
    the Gaussian kernel is fixed at ``w2 = 3``, ``σγ = 3`` px; the bilateral
    kernel was cross-validated over ``w1 ∈ [5, 10]``, ``σα ∈ [50, 100]`` px
    and ``σβ ∈ [3, 10]`` (8-bit colour units); 10 mean-field iterations.

    Attributes
    ----------
    gaussian_weight:
        Weight ``w2`` of the smoothness kernel (Potts compatibility).
    gaussian_sxy:
        Spatial standard deviation ``σγ`` of the smoothness kernel, pixels.
    bilateral_weight:
        Weight ``w1`` of the appearance kernel.
    bilateral_sxy:
        Spatial standard deviation ``σα`` of the appearance kernel, pixels.
    bilateral_srgb:
        Colour standard deviation ``σβ`` of the appearance kernel, in 8-bit
        units of the image after it was mapped to 0..255.
    iterations:
        Number of mean-field iterations, 1 to 100.
    """

    gaussian_weight: float = 3.0
    gaussian_sxy: float = 3.0
    bilateral_weight: float = 5.0
    bilateral_sxy: float = 50.0
    bilateral_srgb: float = 5.0
    iterations: int = 10

    def __post_init__(self) -> None:
        for f in fields(self):
            if f.name == "iterations":
                continue
            value = getattr(self, f.name)
            # bool is a Number subclass, but True as a kernel width is a bug upstream
            if isinstance(value, bool) or not isinstance(value, (int, float, np.floating, np.integer)):
                raise InvalidArgumentError(
                    f"CRF setting {f.name} must be a number, got {value!r}"
                )
            if not math.isfinite(float(value)) or float(value) <= 0:
                raise InvalidArgumentError(
                    f"CRF setting {f.name} must be a positive finite number, got {value!r}"
                )
            object.__setattr__(self, f.name, float(value))
        it = self.iterations
        if isinstance(it, bool) or not isinstance(it, (int, np.integer)):
            raise InvalidArgumentError(f"CRF setting iterations must be a whole number, got {it!r}")
        if not 1 <= int(it) <= MAX_ITERATIONS:
            raise InvalidArgumentError(
                f"CRF setting iterations must be between 1 and {MAX_ITERATIONS}, got {it}"
            )
        object.__setattr__(self, "iterations", int(it))

    @classmethod
    def resolve(cls, params: CRFParams | None) -> CRFParams:
        """``params``, or the DeepLab defaults when None; anything else is refused by name."""
        params = cls() if params is None else params
        if not isinstance(params, cls):
            raise InvalidArgumentError(f"params must be CRFParams, got {type(params).__name__}")
        return params

    def to_dict(self) -> dict[str, float | int]:
        """Return the settings as a JSON-friendly dict (for project files)."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> CRFParams:
        """Build settings from :meth:`to_dict` output.

        Missing keys take their defaults, so older project files still load.

        Raises
        ------
        InvalidArgumentError
            If ``data`` is not a mapping, has unknown keys or a bad value.
        """
        if not isinstance(data, Mapping):
            raise InvalidArgumentError(f"CRF settings must be a mapping, got {type(data).__name__}")
        known = {f.name for f in fields(cls)}
        unknown = sorted(str(k) for k in data if k not in known)
        if unknown:
            raise InvalidArgumentError(
                f"unknown CRF setting(s): {', '.join(unknown)}; expected some of {', '.join(sorted(known))}"
            )
        return cls(**dict(data))


@dataclass(frozen=True)
class RefineResult:
    """Output of :func:`refine`.

    Attributes
    ----------
    probabilities:
        float32 array ``C x H x W``; each pixel sums to 1. None when the
        caller asked for labels only (``keep_probabilities=False``).
    labels:
        ``H x W`` argmax of ``probabilities``; uint8, or uint16 when C > 254 (as label maps).
    """

    probabilities: np.ndarray | None
    labels: np.ndarray


def refine_steps(
    image: np.ndarray,
    probabilities: np.ndarray,
    params: CRFParams | None = None,
    *,
    cancel: CancelToken | None = None,
) -> Task[RefineResult]:
    """Refine class probabilities with a fully connected CRF, step by step.

    Parameters
    ----------
    image:
        ``H x W`` grey or ``H x W x 3`` RGB image; uint8, uint16 (or another
        integer type) or float. Anything but uint8 is mapped onto 0..255 by
        its 0.5/99.5 percentile range before the bilateral kernel sees it.
    probabilities:
        ``C x H x W`` class probabilities with C >= 2; float (any width) or
        uint8 holding ``p * 255``. Values are clipped to ``[1e-8, 1]`` and
        renormalised per pixel.
    params:
        CRF settings; the DeepLab-v1 defaults when omitted.
    cancel:
        Checked before setup and between mean-field iterations.

    Yields
    ------
    Progress
        ``Progress(i, params.iterations, stage="crf")`` after iteration ``i``.

    Returns
    -------
    RefineResult
        The CRF marginals and their argmax.

    Raises
    ------
    InvalidArgumentError
        On a shape mismatch, a wrong number of dimensions, fewer than two
        classes, non-finite values, or negative probabilities.
    TaskCancelled
        When ``cancel`` was cancelled.
    """
    # pydensecrf is a compiled extension; importing it lazily keeps
    # ``import segstudio`` cheap and working where it is not installed.
    import pydensecrf.densecrf as dcrf

    params = CRFParams.resolve(params)
    probabilities = np.asarray(probabilities)
    image = np.asarray(image)
    n_classes, height, width = _check_shapes(image, probabilities)
    if cancel is not None:
        cancel.raise_if_cancelled()

    started = time.perf_counter()
    unary = _unary_energy(probabilities)
    rgb = _to_uint8_rgb(image)

    crf = dcrf.DenseCRF2D(width, height, n_classes)
    crf.setUnaryEnergy(unary)  # copied into the CRF
    del unary
    crf.addPairwiseGaussian(sxy=params.gaussian_sxy, compat=params.gaussian_weight)
    crf.addPairwiseBilateral(
        sxy=params.bilateral_sxy,
        srgb=params.bilateral_srgb,
        rgbim=rgb,
        compat=params.bilateral_weight,
    )
    del rgb
    # stepInference updates Q in place; measured to match inference(n) exactly.
    q, tmp1, tmp2 = crf.startInference()
    logger.debug(
        "dense CRF setup for %d classes on %dx%d took %.3f s",
        n_classes, height, width, time.perf_counter() - started,
    )

    for i in range(params.iterations):
        if cancel is not None:
            cancel.raise_if_cancelled()
        crf.stepInference(q, tmp1, tmp2)
        yield Progress(
            i + 1,
            params.iterations,
            message=f"mean-field iteration {i + 1}/{params.iterations}",
            stage="crf",
        )
    if cancel is not None:
        cancel.raise_if_cancelled()

    # A view on the Eigen matrix's buffer (it stays alive through the view),
    # not a copy; Q is already a per-pixel softmax.
    marginals = np.asarray(q, dtype=np.float32).reshape(n_classes, height, width)
    label_dtype = np.uint8 if n_classes <= MAX_CLASSES_8BIT else np.uint16  # as label maps
    labels = np.argmax(marginals, axis=0).astype(label_dtype, copy=False)
    logger.debug("dense CRF finished in %.3f s", time.perf_counter() - started)
    return RefineResult(probabilities=marginals, labels=labels)


def refine(
    image: np.ndarray,
    probabilities: np.ndarray,
    params: CRFParams | None = None,
    *,
    cancel: CancelToken | None = None,
) -> RefineResult:
    """Refine class probabilities with a fully connected CRF.

    Runs :func:`refine_steps` to its end; see there for the arguments.
    """
    return run_to_completion(refine_steps(image, probabilities, params, cancel=cancel))


def _shape_text(shape: tuple[int, ...]) -> str:
    return "x".join(str(s) for s in shape)


def _check_shapes(image: np.ndarray, probabilities: np.ndarray) -> tuple[int, int, int]:
    """Validate the layouts and return ``(C, H, W)``."""
    both = (
        f"image is {_shape_text(image.shape)} (H x W or H x W x 3), probabilities are "
        f"{_shape_text(probabilities.shape)} (C x H x W)"
    )
    if probabilities.ndim != 3:
        raise InvalidArgumentError(f"probabilities must have 3 dimensions (C x H x W); {both}")
    if image.ndim == 3 and image.shape[2] == 1:
        image = image[:, :, 0]
    if image.ndim not in (2, 3) or (image.ndim == 3 and image.shape[2] != 3):
        raise InvalidArgumentError(f"image must be H x W grey or H x W x 3 RGB; {both}")
    n_classes, height, width = probabilities.shape
    if image.shape[:2] != (height, width):
        raise InvalidArgumentError(f"image and probabilities differ in height and width; {both}")
    if height == 0 or width == 0:
        raise InvalidArgumentError(f"image is empty; {both}")
    if n_classes < 2:
        raise InvalidArgumentError(f"probabilities need at least 2 classes, got {n_classes}; {both}")
    if n_classes > _MAX_CLASSES:
        raise InvalidArgumentError(f"at most {_MAX_CLASSES} classes are supported; {both}")
    return n_classes, height, width


def _unary_energy(probabilities: np.ndarray) -> np.ndarray:
    """Return ``-log p`` as a C-contiguous float32 ``C x (H*W)`` array.

    Only one C x H x W float32 buffer is allocated; every step after the
    first works in place on it.
    """
    n_classes = probabilities.shape[0]
    dtype = probabilities.dtype
    if dtype == np.uint8:
        energy = probabilities.astype(np.float32)  # always a fresh buffer
        energy *= np.float32(1.0 / 255.0)
    elif np.issubdtype(dtype, np.floating):
        # min/max need no temporary, and NaN propagates through both
        low, high = float(probabilities.min()), float(probabilities.max())
        if not (math.isfinite(low) and math.isfinite(high)):
            raise InvalidArgumentError("probabilities contain NaN or infinite values")
        if low < -NEGATIVE_TOLERANCE:
            raise InvalidArgumentError(f"probabilities must not be negative (minimum is {low:g})")
        # Cast before clipping: in float16 the 1e-8 floor would round to 0.
        energy = probabilities.astype(np.float32, order="C", copy=True)
    else:
        raise InvalidArgumentError(
            f"probabilities must be float, or uint8 holding p*255; got dtype {dtype}"
        )
    np.clip(energy, PROBABILITY_FLOOR, 1.0, out=energy)
    energy /= energy.sum(axis=0, keepdims=True)
    np.log(energy, out=energy)
    np.negative(energy, out=energy)
    return energy.reshape(n_classes, -1)


def _to_uint8_rgb(image: np.ndarray) -> np.ndarray:
    """Return a C-contiguous ``H x W x 3`` uint8 copy or view of ``image``."""
    if image.ndim == 3 and image.shape[2] == 1:
        image = image[:, :, 0]
    if image.dtype != np.uint8:
        image = _robust_to_uint8(image)
    if image.ndim == 2:
        return np.repeat(image[:, :, np.newaxis], 3, axis=2)
    return np.ascontiguousarray(image)


def _robust_to_uint8(image: np.ndarray) -> np.ndarray:
    """Map a non-8-bit image onto 0..255 by its robust intensity range.

    All channels share one range so colours keep their balance. When the
    percentile range is empty (a small bright object on a flat background)
    the full min..max range is used instead, and a truly flat image becomes
    all zeros rather than dividing by zero.

    Raises
    ------
    InvalidArgumentError
        If the image is boolean/complex or holds NaN or infinite values.
    """
    if not (np.issubdtype(image.dtype, np.integer) or np.issubdtype(image.dtype, np.floating)):
        raise InvalidArgumentError(f"image must be uint8, uint16 or float; got dtype {image.dtype}")
    if not np.isfinite(image).all():
        raise InvalidArgumentError("image contains NaN or infinite values")
    return to_uint8_display(image)
