"""Tests of the 3-D fully connected CRF over a label volume.

Real data that ships in installed packages: nibabel's ``anatomical.nii``
(a 33 x 41 x 25 T1 MRI with 2 mm voxels) and pydicom's ``CT_small.dcm``
(a 128 x 128 CT slice), with smooth, image-correlated probabilities like a
network's. The two backends must agree, a one-slice volume must be the 2-D
CRF, thick slices must couple less than thin ones, and tiles must agree
with the whole volume.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import nibabel as nib
import numpy as np
import pydicom
import pytest
import torch
from pydicom.data import get_testdata_file
from scipy.ndimage import gaussian_filter, zoom

from segstudio.errors import InvalidArgumentError
from segstudio.refine import crf as crf_module
from segstudio.refine.dense_crf import CRFParams
from segstudio.refine.volume_crf import refine_volume, refine_volume_steps
from segstudio.tasks import CancelToken, Progress, TaskCancelled, run_to_completion

NIFTI = Path(importlib.util.find_spec("nibabel").origin).parent / "tests" / "data" / "anatomical.nii"
AGREEMENT = 0.99


def _mri() -> tuple[np.ndarray, tuple[float, float, float]]:
    """nibabel's MRI as ``Z x Y x X`` (big-endian int16, as stored) and its ``(dz, dy, dx)`` in mm."""
    image = nib.load(NIFTI)
    volume = np.asarray(image.dataobj).transpose(2, 1, 0)  # voxel axes (i, j, k) = (x, y, z)
    spacing = tuple(float(z) for z in image.header.get_zooms()[2::-1])
    assert volume.shape == (25, 41, 33) and spacing == (2.0, 2.0, 2.0)
    return volume, spacing


def _model_like(volume: np.ndarray, n_classes: int, seed: int) -> np.ndarray:
    """Smooth, image-correlated ``C x Z x Y x X`` probabilities: coarse noise
    upsampled (a network's low resolution) plus a term following the intensity."""
    rng = np.random.default_rng(seed)
    coarse = rng.normal(0.0, 2.0, (n_classes, *(max(2, s // 8) for s in volume.shape))).astype(np.float32)
    logits = np.stack([zoom(c, [s / t for s, t in zip(volume.shape, c.shape)], order=3) for c in coarse])
    grey = volume.astype(np.float32)
    grey = (grey - grey.mean()) / grey.std()
    logits += 1.5 * grey[np.newaxis] * rng.normal(0.0, 1.0, n_classes).astype(np.float32)[:, None, None, None]
    logits -= logits.max(axis=0, keepdims=True)
    probabilities = np.exp(logits)
    return (probabilities / probabilities.sum(axis=0, keepdims=True)).astype(np.float32)


def _collect(task) -> tuple[list, object]:
    seen = []
    result = run_to_completion(task, seen.append)
    return seen, result


def _tile_bytes(outer_side: int, n_classes: int, backend: str = "pydensecrf") -> int:
    return outer_side**3 * crf_module.bytes_per_pixel(backend, n_classes)


def test_both_backends_agree_on_a_real_mri() -> None:
    volume, spacing = _mri()
    probabilities = _model_like(volume, 3, seed=0)
    reference = refine_volume(volume, probabilities, spacing=spacing, backend="pydensecrf")
    torch_result = refine_volume(volume, probabilities, spacing=spacing, backend="torch", device="cpu")
    changed = (reference.labels != probabilities.argmax(axis=0)).mean()
    assert changed > 0.05, changed  # the CRF did real work, so agreement is not trivial (measured 0.38)
    agreement = (torch_result.labels == reference.labels).mean()
    assert agreement >= AGREEMENT, agreement  # measured 1.0
    assert reference.labels.shape == volume.shape and reference.labels.dtype == np.uint8
    assert reference.probabilities.shape == probabilities.shape
    assert reference.probabilities.dtype == np.float32
    np.testing.assert_allclose(reference.probabilities.sum(axis=0), 1.0, atol=1e-4)
    np.testing.assert_allclose(torch_result.probabilities, reference.probabilities, atol=1e-4)  # 1.4e-6


@pytest.mark.parametrize("backend", ["pydensecrf", "torch"])
@pytest.mark.parametrize("params", [CRFParams(), CRFParams(bilateral_srgb=13.0)], ids=["default", "srgb13"])
def test_a_one_slice_volume_is_the_2d_crf(backend: str, params: CRFParams) -> None:
    """Z = 1 with dy = dx = 1 mm: the same kernels as the 2-D CRF of the slice
    (the bilateral one sees √3 I, as the 2-D CRF's three equal channels: with
    σβ = 13 dropping the √3 measured 0.873 agreement, with it 0.997)."""
    ct = pydicom.dcmread(get_testdata_file("CT_small.dcm")).pixel_array  # 128 x 128 int16
    rng = np.random.default_rng(0)
    logits = np.stack([np.zeros(ct.shape, np.float32), (ct.astype(np.float32) - 1000.0) / 150.0])
    logits += gaussian_filter(rng.normal(0.0, 3.0, logits.shape), (0, 2, 2)).astype(np.float32)
    probabilities = np.exp(logits - logits.max(axis=0))
    probabilities = (probabilities / probabilities.sum(axis=0)).astype(np.float32)
    flat = crf_module.refine(ct, probabilities, params, backend=backend, device="cpu")
    volume = refine_volume(ct[np.newaxis], probabilities[:, np.newaxis], params, spacing=(5.0, 1.0, 1.0),
                           backend=backend, device="cpu")
    assert (flat.labels != probabilities.argmax(axis=0)).mean() > 0.05  # measured 0.185
    agreement = (volume.labels[0] == flat.labels).mean()
    assert agreement >= AGREEMENT, agreement  # measured 0.9964 (default), 0.9969 (σβ 13)
    # sigmas are in-plane pixels: the real 0.66 mm pixels change nothing
    pixel = float(pydicom.dcmread(get_testdata_file("CT_small.dcm")).PixelSpacing[0])
    scaled = refine_volume(ct[np.newaxis], probabilities[:, np.newaxis], params, spacing=(5.0, pixel, pixel),
                           backend=backend, device="cpu")
    assert (scaled.labels == volume.labels).mean() >= 0.999


def test_thick_slices_couple_less() -> None:
    """A structure in one slice only (a disc of the MRI's slice 12 the
    probabilities call class 1, all neighbours class 0): 2 mm slices are
    pulled into agreement with their neighbours and lose it; 20 mm slices
    keep most of it, as the 2-D CRF of that slice alone does."""
    volume, _ = _mri()
    params = CRFParams(bilateral_sxy=5.0)  # 10 mm: slices 20 mm apart barely touch
    rng = np.random.default_rng(1)
    ys, xs = np.mgrid[: volume.shape[1], : volume.shape[2]]
    disc = np.zeros(volume.shape, bool)
    disc[12] = (ys - 20) ** 2 + (xs - 16) ** 2 <= 36
    logit = np.where(disc, 4.0, -2.0).astype(np.float32)
    logit += gaussian_filter(rng.normal(0.0, 1.0, volume.shape), 1).astype(np.float32)
    probabilities = np.stack([1 / (1 + np.exp(logit)), 1 / (1 + np.exp(-logit))]).astype(np.float32)
    assert (probabilities.argmax(axis=0) == disc).all()

    kept = {}
    for dz in (2.0, 20.0):
        labels = refine_volume(volume, probabilities, params, spacing=(dz, 2.0, 2.0), backend="pydensecrf").labels
        kept[dz] = (labels[disc] == 1).mean()
        assert (labels[~disc] == 0).all()  # nothing grows elsewhere
    alone = crf_module.refine(volume[12], probabilities[:, 12], CRFParams(bilateral_sxy=5.0),
                              backend="pydensecrf").labels
    kept_alone = (alone[disc[12]] == 1).mean()
    assert kept[2.0] < 0.1, kept  # measured 0.0
    assert kept[20.0] > 0.6, kept  # measured 0.876
    assert kept_alone >= kept[20.0] - 0.05, (kept_alone, kept)


def test_tiles_agree_with_the_whole_volume() -> None:
    """Small kernels (σγ 1.5, σα 2 px = 3, 4 mm) so that the 3σ margins (6
    voxels) fit tiles of 32^3 on this 25 x 41 x 33 volume uncapped."""
    volume, spacing = _mri()
    probabilities = _model_like(volume, 3, seed=0)
    params = CRFParams(gaussian_sxy=1.5, bilateral_sxy=2.0)
    whole = refine_volume(volume, probabilities, params, spacing=spacing, backend="pydensecrf")
    seen, tiled = _collect(refine_volume_steps(volume, probabilities, params, spacing=spacing,
                                               backend="pydensecrf", tile_bytes=_tile_bytes(32, 3)))
    finished = [p for p in seen if isinstance(p, crf_module.TileProgress)]
    assert len(finished) >= 2, len(finished)  # 4 here
    covered = np.zeros(volume.shape, np.int32)
    for tile in finished:
        assert len(tile.core) == 3
        (z0, z1), (y0, y1), (x0, x1) = tile.core
        covered[z0:z1, y0:y1, x0:x1] += 1
        np.testing.assert_array_equal(tile.labels, tiled.labels[z0:z1, y0:y1, x0:x1])
    assert (covered == 1).all()  # every voxel in exactly one core
    steps = [p for p in seen if not isinstance(p, crf_module.TileProgress)]
    assert len(steps) == len(finished) * params.iterations
    assert [p.done for p in steps] == sorted(p.done for p in steps)
    assert steps[0].message == f"tile 1/{len(finished)}, iteration 1/10" and steps[0].stage == "crf"
    moved = whole.labels != probabilities.argmax(axis=0)
    assert moved.mean() > 0.05  # measured 0.098
    agreement = (tiled.labels == whole.labels).mean()
    assert agreement >= AGREEMENT, agreement  # measured 0.9956
    assert (tiled.labels[moved] == whole.labels[moved]).mean() >= 0.9
    np.testing.assert_allclose(tiled.probabilities.sum(axis=0), 1.0, atol=1e-4)

    labels_only = refine_volume(volume, np.asfortranarray(probabilities), params, spacing=spacing,
                                backend="pydensecrf",
                                tile_bytes=_tile_bytes(32, 3), keep_probabilities=False)
    assert labels_only.probabilities is None
    np.testing.assert_array_equal(labels_only.labels, tiled.labels)


def test_a_volume_is_mapped_by_its_own_percentiles_and_uint8_is_taken_as_shown() -> None:
    volume, spacing = _mri()
    probabilities = _model_like(volume, 2, seed=3)
    lo, hi = np.percentile(volume.astype(np.float64), [0.5, 99.5])
    shown = np.clip(np.rint((volume - lo) * (255.0 / (hi - lo))), 0, 255).astype(np.uint8)
    raw = refine_volume(volume, probabilities, spacing=spacing, backend="pydensecrf")
    windowed = refine_volume(shown, probabilities, spacing=spacing, backend="pydensecrf")
    np.testing.assert_array_equal(raw.labels, windowed.labels)
    as_float = refine_volume(volume.astype(np.float32), (probabilities * 255).round().astype(np.uint8),
                             spacing=spacing, backend="pydensecrf")
    assert (as_float.labels == raw.labels).mean() >= AGREEMENT


@pytest.mark.parametrize("backend", ["pydensecrf", "torch"])
def test_progress_every_iteration_and_cancel(backend: str) -> None:
    volume, spacing = _mri()
    volume, probabilities = volume[:8], _model_like(volume[:8], 2, seed=2)
    params = CRFParams(iterations=4)
    task = refine_volume_steps(volume, probabilities, params, spacing=spacing, backend=backend, device="cpu",
                               keep_probabilities=False)
    seen = []
    while True:
        try:
            seen.append(next(task))
        except StopIteration as stop:
            result = stop.value
            break
        assert torch.is_grad_enabled()  # no_grad never spans a yield
    assert [(p.done, p.total, p.stage) for p in seen] == [(i, 4, "crf") for i in range(1, 5)]
    assert all(isinstance(p, Progress) for p in seen) and seen[-1].message == "iteration 4/4"
    assert result.probabilities is None and result.labels.shape == volume.shape

    token = CancelToken()
    task = refine_volume_steps(volume, probabilities, params, spacing=spacing, backend=backend, device="cpu",
                               cancel=token)
    assert next(task).done == 1
    token.cancel()
    with pytest.raises(TaskCancelled):
        next(task)


@pytest.mark.parametrize(("volume_shape", "probability_shape", "options", "message"), [
    ((41, 33), (2, 41, 33), {}, "volume must have 3 dimensions"),
    ((4, 41, 33), (2, 41, 33), {}, "probabilities must have 4 dimensions"),
    ((4, 41, 33), (2, 5, 41, 33), {}, "differ in Z, Y or X"),
    ((4, 41, 33), (1, 4, 41, 33), {}, "at least 2 classes, got 1"),
    ((0, 41, 33), (2, 0, 41, 33), {}, "volume is empty"),
    ((4, 41, 33), (2, 4, 41, 33), {"spacing": (0.0, 1.0, 1.0)}, "spacing dz must be a positive finite.*0.0"),
    ((4, 41, 33), (2, 4, 41, 33), {"spacing": (1.0, -2.0, 1.0)}, "spacing dy .*-2.0"),
    ((4, 41, 33), (2, 4, 41, 33), {"spacing": (1.0, 1.0, float("nan"))}, "spacing dx .*nan"),
    ((4, 41, 33), (2, 4, 41, 33), {"spacing": (1.0, 1.0)}, "three numbers"),
    ((4, 41, 33), (2, 4, 41, 33), {"tile_bytes": 0}, "tile_bytes must be positive"),
    ((4, 41, 33), (2, 4, 41, 33), {"backend": "opencl"}, "unknown CRF backend"),
])
def test_bad_inputs_are_named(volume_shape, probability_shape, options, message) -> None:
    volume = np.zeros(volume_shape, np.uint8)
    probabilities = np.full(probability_shape, 0.5, np.float32)
    with pytest.raises(InvalidArgumentError, match=message):
        refine_volume(volume, probabilities, **options)


def test_non_finite_values_are_refused() -> None:
    volume = np.zeros((3, 8, 8), np.float32)
    volume[1, 2, 3] = np.nan
    probabilities = np.full((2, 3, 8, 8), 0.5, np.float32)
    with pytest.raises(InvalidArgumentError, match="volume contains NaN or infinite"):
        refine_volume(volume, probabilities)
    probabilities[0, 0, 0, 0] = np.inf
    with pytest.raises(InvalidArgumentError, match="probabilities contain NaN or infinite"):
        refine_volume(np.zeros((3, 8, 8), np.uint8), probabilities)
