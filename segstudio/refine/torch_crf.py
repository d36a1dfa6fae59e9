"""Fully connected CRF in PyTorch, with a permutohedral lattice.

The same model as :mod:`segstudio.refine.dense_crf` (Krähenbühl & Koltun,
NeurIPS 2011, as ``pydensecrf`` implements it): a Potts model with a
Gaussian smoothness kernel over positions ``(x/σγ, y/σγ)`` and a bilateral
appearance kernel over ``(x/σα, y/σα, r/σβ, g/σβ, b/σβ)``, each filtered
with a permutohedral lattice and normalised symmetrically
(``D^-1/2 K D^-1/2`` with ``D = K 1``, pydensecrf's ``NORMALIZE_SYMMETRIC``
default), solved by parallel mean-field updates

    Q <- softmax(-U + w2 K̃γ Q + w1 K̃α Q)

starting from ``Q = softmax(-U)``, ``U = -log p``. The lattices are built
once per image and reused by every iteration; the iterations are pure
tensor operations on the chosen device.

:func:`segstudio.refine.refine` runs it as ``backend="torch"`` (and as
``"auto"`` on a GPU); it is checked against pydensecrf2 in
``tests/refine/test_torch_crf.py``.
"""

from __future__ import annotations

import logging
import time

import numpy as np
import torch

from segstudio.errors import InvalidArgumentError
from segstudio.io.masks import MAX_CLASSES_8BIT
from segstudio.refine.dense_crf import (
    CRFParams,
    RefineResult,
    _check_shapes,
    _to_uint8_rgb,
    _unary_energy,
)
from segstudio.refine.lattice import PermutohedralLattice
from segstudio.tasks import CancelToken, Progress, Task, run_to_completion

logger = logging.getLogger(__name__)

#: Added to the lattice's sum of weights before the inverse square root, as
#: pydensecrf does, so an isolated point cannot divide by zero.
_NORM_EPS = 1e-20


class NormalizedKernel:
    """A weighted Gaussian kernel on a lattice with pydensecrf's symmetric normalisation.

    ``apply(Q) = w * n * lattice(n * Q)`` with ``n = 1 / sqrt(lattice(1) + eps)``;
    ``n`` and ``w`` are folded into the lattice's splat and slice matrices.
    """

    def __init__(self, features: torch.Tensor, weight: float = 1.0) -> None:
        try:
            self.lattice = PermutohedralLattice(features)
        except ValueError as error:  # keys too wide for 64 bits: an absurd size/sigma ratio
            raise InvalidArgumentError(f"the CRF cannot filter this image: {error}") from error
        ones = torch.ones((features.shape[0], 1), dtype=torch.float32, device=features.device)
        norm = torch.rsqrt(self.lattice.filter(ones) + _NORM_EPS).reshape(-1)
        self.lattice.scale(before=norm, after=norm * weight)

    def apply(self, values: torch.Tensor) -> torch.Tensor:
        return self.lattice.filter(values)


def pixel_grid(height: int, width: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """Column (x) and row (y) of every pixel in row-major order, float32."""
    ys, xs = torch.meshgrid(
        torch.arange(height, dtype=torch.float32, device=device),
        torch.arange(width, dtype=torch.float32, device=device),
        indexing="ij",
    )
    return xs.reshape(-1), ys.reshape(-1)


def gaussian_features(height: int, width: int, sxy: float, device: torch.device) -> torch.Tensor:
    """``N x 2`` features ``(x/sxy, y/sxy)`` as pydensecrf's ``addPairwiseGaussian``."""
    xs, ys = pixel_grid(height, width, device)
    return torch.stack((xs / np.float32(sxy), ys / np.float32(sxy)), dim=1)


def bilateral_features(rgb: torch.Tensor, sxy: float, srgb: float) -> torch.Tensor:
    """``N x 5`` features ``(x/sxy, y/sxy, r/srgb, g/srgb, b/srgb)`` of an ``H x W x 3`` image."""
    height, width = rgb.shape[:2]
    xs, ys = pixel_grid(height, width, rgb.device)
    colours = rgb.reshape(-1, 3).to(torch.float32) / np.float32(srgb)
    return torch.cat((xs[:, None] / np.float32(sxy), ys[:, None] / np.float32(sxy), colours), dim=1)


def resolve_torch_device(device: str | torch.device | None) -> torch.device:
    """``None`` or ``"auto"``: CUDA when available, else the CPU."""
    if device is None or device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        return torch.device(device)
    except (RuntimeError, TypeError) as error:
        raise InvalidArgumentError(f"unknown torch device {device!r}") from error


def mean_field_step(neg_unary: torch.Tensor, q: torch.Tensor, kernels: list[NormalizedKernel]) -> torch.Tensor:
    """One parallel mean-field update of ``q`` (``N x C``); returns the new ``q``."""
    logits = neg_unary.clone()
    for kernel in kernels:
        # Potts: the message -w K̃ Q is subtracted from the logits
        logits += kernel.apply(q)
    # softmax in place: one N x C buffer fewer at the peak
    logits -= logits.amax(dim=1, keepdim=True)
    logits.exp_()
    logits /= logits.sum(dim=1, keepdim=True)
    return logits


def refine_torch_steps(
    image: np.ndarray,
    probabilities: np.ndarray,
    params: CRFParams | None = None,
    *,
    device: str | torch.device | None = None,
    cancel: CancelToken | None = None,
) -> Task[RefineResult]:
    """Refine class probabilities with the fully connected CRF in torch, step by step.

    Takes and returns what :func:`segstudio.refine.dense_crf.refine_steps`
    does (see there), plus ``device``: where the lattices and iterations
    run (``None``/``"auto"``: CUDA when available, else the CPU).

    Yields
    ------
    Progress
        ``Progress(i, params.iterations, stage="crf")`` after iteration ``i``.

    Returns
    -------
    RefineResult
        float32 ``C x H x W`` marginals and their argmax, as numpy arrays.
    """
    params = CRFParams.resolve(params)
    probabilities = np.asarray(probabilities)
    image = np.asarray(image)
    n_classes, height, width = _check_shapes(image, probabilities)
    torch_device = resolve_torch_device(device)
    if cancel is not None:
        cancel.raise_if_cancelled()

    started = time.perf_counter()
    unary = _unary_energy(probabilities)  # C x N float32, -log p
    neg_unary = torch.from_numpy(unary).to(torch_device).neg_().t().contiguous()  # N x C
    del unary
    rgb = torch.from_numpy(_to_uint8_rgb(image)).to(torch_device)

    # no_grad never spans a yield: grad mode is per thread, and a suspended
    # generator would leave it switched off in the caller's code.
    with torch.no_grad():
        kernels = [
            NormalizedKernel(
                gaussian_features(height, width, params.gaussian_sxy, torch_device), params.gaussian_weight
            ),
        ]
    if cancel is not None:
        cancel.raise_if_cancelled()
    with torch.no_grad():
        kernels.append(
            NormalizedKernel(
                bilateral_features(rgb, params.bilateral_sxy, params.bilateral_srgb), params.bilateral_weight
            )
        )
        del rgb
        q = torch.softmax(neg_unary, dim=1)
    logger.debug(
        "torch CRF setup for %d classes on %dx%d (%s) took %.3f s",
        n_classes, height, width, torch_device, time.perf_counter() - started,
    )
    for i in range(params.iterations):
        if cancel is not None:
            cancel.raise_if_cancelled()
        with torch.no_grad():
            q = mean_field_step(neg_unary, q, kernels)
        yield Progress(
            i + 1,
            params.iterations,
            message=f"mean-field iteration {i + 1}/{params.iterations}",
            stage="crf",
        )
    if cancel is not None:
        cancel.raise_if_cancelled()
    marginals = q.t().reshape(n_classes, height, width).cpu().numpy().astype(np.float32, copy=False)
    del q, kernels, neg_unary

    label_dtype = np.uint8 if n_classes <= MAX_CLASSES_8BIT else np.uint16  # as label maps
    labels = np.argmax(marginals, axis=0).astype(label_dtype, copy=False)
    logger.debug("torch CRF finished in %.3f s", time.perf_counter() - started)
    return RefineResult(probabilities=np.ascontiguousarray(marginals), labels=labels)


def refine_torch(
    image: np.ndarray,
    probabilities: np.ndarray,
    params: CRFParams | None = None,
    *,
    device: str | torch.device | None = None,
    cancel: CancelToken | None = None,
) -> RefineResult:
    """Refine class probabilities with the torch CRF; runs :func:`refine_torch_steps` to its end."""
    return run_to_completion(refine_torch_steps(image, probabilities, params, device=device, cancel=cancel))
