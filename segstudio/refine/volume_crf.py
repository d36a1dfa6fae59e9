"""The fully connected CRF over a whole label volume (slices, rows, columns).

The 2-D CRF's Potts model and mean field (:mod:`segstudio.refine.crf`) with
kernels over voxels in millimetres, so thick slices couple less than thin
ones. :class:`~segstudio.refine.dense_crf.CRFParams` keeps its in-plane
meaning: ``σ`` pixels are ``σ min(dy, dx)`` mm along every axis. The Gaussian
kernel sees ``(x dx, y dy, z dz) / σγ``, the bilateral one ``(x dx, y dy,
z dz) / σα`` and ``I √3 / σβ`` (the 2-D CRF sees grey as three equal RGB
channels, whose colour distance is ``√3 |ΔI|``). Features are in the 2-D
order (x first) and an axis one voxel thick is left out (a constant feature
does not change a Gaussian), so a one-slice volume is a 2-D image.

pydensecrf2 runs it with its generic ``DenseCRF.addPairwiseEnergy`` (the
diagonal kernel and symmetric normalisation of its 2-D calls), torch with
:class:`~segstudio.refine.torch_crf.NormalizedKernel` lattices of any
dimension. A volume over ``tile_bytes`` runs in overlapping 3-D tiles.
"""

from __future__ import annotations

import logging
import math

import numpy as np

from segstudio.errors import InvalidArgumentError
from segstudio.io.masks import MAX_CLASSES_8BIT
from segstudio.refine import tiles as tiling
from segstudio.refine.crf import (
    MARGIN_SIGMAS,
    bytes_per_pixel,
    checked_settings,
    choose_backend,
    run_tiles,
    whole_range_mapper,
)
from segstudio.refine.dense_crf import _MAX_CLASSES, CRFParams, RefineResult, _shape_text, _unary_energy
from segstudio.tasks import CancelToken, Progress, Task, run_to_completion

logger = logging.getLogger(__name__)

#: The 2-D CRF's grey image is three equal channels: its colour distance is √3 times the grey one.
_GREY_AS_RGB = math.sqrt(3.0)



def refine_volume_steps(
    volume: np.ndarray,
    probabilities: np.ndarray,
    params: CRFParams | None = None,
    *,
    spacing: tuple[float, float, float] = (1.0, 1.0, 1.0),
    backend: str = "auto",
    device=None,
    tile_bytes: int | None = None,
    keep_probabilities: bool = True,
    cancel: CancelToken | None = None,
) -> Task[RefineResult]:
    """Refine a volume's class probabilities with the 3-D fully connected CRF, step by step.

    Parameters
    ----------
    volume:
        ``Z x Y x X`` grey volume: uint8 as shown (the studio passes the
        windowed intensity); any other integer or float type is mapped to
        0..255 by the whole volume's 0.5/99.5 percentiles.
    probabilities:
        ``C x Z x Y x X``, C >= 2; float, or uint8 holding ``p * 255``.
    params:
        The 2-D settings (DeepLab-v1's by default); widths in in-plane pixels.
    spacing:
        ``(dz, dy, dx)``: voxel size in millimetres, positive and finite.
    backend, device:
        See :func:`segstudio.refine.crf.choose_backend`.
    tile_bytes:
        Memory one piece may use (default :data:`~segstudio.refine.crf.DEFAULT_TILE_BYTES`);
        a larger volume runs in 3-D tiles, only whose cores are kept.
    keep_probabilities:
        When False the result's ``probabilities`` is None.
    cancel:
        Checked between iterations and tiles.

    Yields
    ------
    Progress
        After every mean-field iteration of every tile (``stage="crf"``);
        a finished tile (when there are several) as a
        :class:`~segstudio.refine.crf.TileProgress` with its core box
        ``((z0, z1), (y0, y1), (x0, x1))`` and labels.

    Returns
    -------
    RefineResult
        ``C x Z x Y x X`` float32 marginals (or None) and ``Z x Y x X`` labels.

    Raises
    ------
    InvalidArgumentError
        Bad shapes, values or spacing (named), an unknown or unavailable backend.
    TaskCancelled
        When ``cancel`` was cancelled.
    """
    params, budget = checked_settings(params, tile_bytes)
    volume, probabilities = np.asarray(volume), np.asarray(probabilities)
    n_classes, shape = _check_volume_shapes(volume, probabilities)
    spacing = _check_spacing(spacing)
    name, torch_device = choose_backend(backend, device)
    to_uint8 = np.ascontiguousarray if volume.dtype == np.uint8 else whole_range_mapper(volume, "volume")
    per_voxel = bytes_per_pixel(name, n_classes)
    if cancel is not None:
        cancel.raise_if_cancelled()

    if math.prod(shape) * per_voxel <= budget:
        result = yield from _piece_steps(name, torch_device, to_uint8(volume), probabilities, params, spacing,
                                         cancel)
        return result if keep_probabilities else RefineResult(probabilities=None, labels=result.labels)

    voxels = max(1, budget // per_voxel)
    cap = max(1, _cube_root(voxels) // 4)  # a margin never dwarfs the core
    sigma_mm = max(params.bilateral_sxy, params.gaussian_sxy) * min(spacing[1], spacing[2])
    margin = tuple(min(cap, int(math.ceil(MARGIN_SIGMAS * sigma_mm / step))) for step in spacing)
    core = tiling.square_core(voxels, margin, shape)
    plan = tiling.plan_tiles(shape, core, margin)
    logger.debug("volume CRF of %s in %d tiles of %s (margins %s voxels, %s)",
                 _shape_text(shape), len(plan), core, margin, name)

    return (yield from run_tiles(
        plan,
        lambda tile: _piece_steps(name, torch_device, to_uint8(volume[tile.outer_slices]),
                                  probabilities[(slice(None), *tile.outer_slices)], params, spacing, cancel),
        probabilities, keep_probabilities, params.iterations,
    ))


def refine_volume(volume: np.ndarray, probabilities: np.ndarray, params: CRFParams | None = None,
                  **options) -> RefineResult:
    """Refine a volume with the 3-D CRF; runs :func:`refine_volume_steps` to its end."""
    return run_to_completion(refine_volume_steps(volume, probabilities, params, **options))


def _features(shape, grey, spacing, sigma_mm, srgb) -> np.ndarray:
    """The ``d x N`` float32 kernel features of a ``Z x Y x X`` piece, C-contiguous:
    ``(x dx, y dy, z dz) / sigma_mm`` (axes one voxel thick left out), then,
    when ``grey`` is given, ``grey √3 / srgb``."""
    rows = []
    for axis in (2, 1, 0):  # x, y, z: the 2-D CRF's order
        if shape[axis] == 1:
            continue
        coordinate = np.arange(shape[axis], dtype=np.float32) * np.float32(spacing[axis]) / np.float32(sigma_mm)
        view = [1, 1, 1]
        view[axis] = shape[axis]
        rows.append(np.broadcast_to(coordinate.reshape(view), shape))
    if grey is not None:
        rows.append(grey.astype(np.float32) * np.float32(_GREY_AS_RGB / srgb))
    if not rows:  # a single voxel: any constant feature
        rows.append(np.zeros(shape, np.float32))
    features = np.empty((len(rows), math.prod(shape)), dtype=np.float32)
    for row, values in zip(features, rows):
        row[:] = values.reshape(-1)
    return features


def _piece_steps(name, torch_device, grey, probabilities, params, spacing, cancel) -> Task[RefineResult]:
    """The CRF of one piece (uint8 ``Z x Y x X`` grey, ``C x Z x Y x X`` probabilities)."""
    shape, n_classes = grey.shape, probabilities.shape[0]
    pixel_mm = min(spacing[1], spacing[2])
    unary = _unary_energy(probabilities)  # C x N float32, -log p
    kernels = [
        (_features(shape, None, spacing, params.gaussian_sxy * pixel_mm, None), params.gaussian_weight),
        (_features(shape, grey, spacing, params.bilateral_sxy * pixel_mm, params.bilateral_srgb),
         params.bilateral_weight),
    ]
    if cancel is not None:
        cancel.raise_if_cancelled()
    if name == "torch":
        step, read = _torch_inference(unary, kernels, torch_device)
    else:
        step, read = _pydensecrf_inference(unary, kernels)
    del unary, kernels
    for i in range(params.iterations):
        if cancel is not None:
            cancel.raise_if_cancelled()
        step()
        yield Progress(i + 1, params.iterations, message=f"iteration {i + 1}/{params.iterations}",
                       stage="crf")
    if cancel is not None:
        cancel.raise_if_cancelled()
    marginals = np.ascontiguousarray(read(), dtype=np.float32).reshape(n_classes, *shape)
    label_dtype = np.uint8 if n_classes <= MAX_CLASSES_8BIT else np.uint16  # as label maps
    return RefineResult(probabilities=marginals, labels=np.argmax(marginals, axis=0).astype(label_dtype))


def _pydensecrf_inference(unary, kernels):
    import pydensecrf.densecrf as dcrf

    n_classes, n = unary.shape
    crf = dcrf.DenseCRF(n, n_classes)
    crf.setUnaryEnergy(unary)  # copied into the CRF
    for features, weight in kernels:
        # DIAG_KERNEL and NORMALIZE_SYMMETRIC by default, as addPairwiseGaussian/Bilateral
        crf.addPairwiseEnergy(features, compat=weight)
    q, tmp1, tmp2 = crf.startInference()
    return (lambda: crf.stepInference(q, tmp1, tmp2)), (lambda: np.asarray(q))


def _torch_inference(unary, kernels, device):
    import torch

    from segstudio.refine.torch_crf import NormalizedKernel, mean_field_step

    # no_grad never spans a yield: these run between the caller's yields
    with torch.no_grad():
        neg_unary = torch.from_numpy(unary).to(device).neg_().t().contiguous()  # N x C
        lattices = [NormalizedKernel(torch.from_numpy(f).to(device).t().contiguous(), w) for f, w in kernels]
        state = {"q": torch.softmax(neg_unary, dim=1)}

    def step() -> None:
        with torch.no_grad():
            state["q"] = mean_field_step(neg_unary, state["q"], lattices)

    return step, (lambda: state["q"].t().cpu().numpy())


def _cube_root(value: int) -> int:
    """The integer cube root (``int(64 ** (1/3))`` is 3)."""
    root = int(round(value ** (1.0 / 3.0)))
    while root**3 > value:
        root -= 1
    while (root + 1) ** 3 <= value:
        root += 1
    return root


def _check_volume_shapes(volume: np.ndarray, probabilities: np.ndarray) -> tuple[int, tuple[int, int, int]]:
    """Validate the layouts and return ``(C, (Z, Y, X))``."""
    both = (f"volume is {_shape_text(volume.shape)} (Z x Y x X), probabilities are "
            f"{_shape_text(probabilities.shape)} (C x Z x Y x X)")
    if volume.ndim != 3:
        raise InvalidArgumentError(f"volume must have 3 dimensions (Z x Y x X grey); {both}")
    if probabilities.ndim != 4:
        raise InvalidArgumentError(f"probabilities must have 4 dimensions (C x Z x Y x X); {both}")
    if probabilities.shape[1:] != volume.shape:
        raise InvalidArgumentError(f"volume and probabilities differ in Z, Y or X; {both}")
    if volume.size == 0:
        raise InvalidArgumentError(f"volume is empty; {both}")
    n_classes = probabilities.shape[0]
    if n_classes < 2:
        raise InvalidArgumentError(f"probabilities need at least 2 classes, got {n_classes}; {both}")
    if n_classes > _MAX_CLASSES:
        raise InvalidArgumentError(f"at most {_MAX_CLASSES} classes are supported; {both}")
    return n_classes, tuple(int(s) for s in volume.shape)


def _check_spacing(spacing) -> tuple[float, float, float]:
    try:
        values = tuple(float(s) for s in spacing)
    except (TypeError, ValueError):
        raise InvalidArgumentError(f"spacing must be three numbers (dz, dy, dx) in mm, got {spacing!r}") from None
    if len(values) != 3:
        raise InvalidArgumentError(f"spacing must be three numbers (dz, dy, dx) in mm, got {spacing!r}")
    for axis, value in zip(("dz", "dy", "dx"), values):
        if not math.isfinite(value) or value <= 0:
            raise InvalidArgumentError(f"spacing {axis} must be a positive finite number of mm, got {value!r}")
    return values
