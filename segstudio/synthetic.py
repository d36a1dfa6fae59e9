"""Synthetic two-channel fluorescence microscopy with exact ground truth.

The sample data set that ships in ``resources/sample/`` is made here. Each
image imitates a widefield micrograph of cultured cells: a cytoplasm stain
shown in green, a DNA stain shown in blue and a faint red autofluorescence.
Cells are smooth random blobs, often touching in clusters, each with a
nucleus; the picture then goes through what a microscope does to it (optical
blur, uneven illumination, photon shot noise, camera read noise and offset)
and gets some out-of-focus debris that belongs to the background.

The mask is the scene the image was drawn from, not a threshold of the
image, so it is exact by construction. Everything depends only on the seed:
one :class:`numpy.random.Generator` is threaded through every step and no
global random state is touched.

Classes: 0 background, 1 cytoplasm (cell body outside the nucleus),
2 nucleus.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, overload

import cv2
import numpy as np

from segstudio.errors import ExportError, InvalidArgumentError

logger = logging.getLogger(__name__)

CLASS_NAMES: tuple[str, ...] = ("background", "cytoplasm", "nucleus")
CLASS_COLORS: tuple[tuple[int, int, int], ...] = ((0, 0, 0), (255, 196, 0), (230, 40, 150))
BACKGROUND, CYTOPLASM, NUCLEUS = 0, 1, 2

#: The smallest side :func:`generate_sample` accepts.
MIN_SIDE = 16

# Mean cell radius range in pixels. The scale is the same for every image
# size, as it would be for one objective on one camera.
_CELL_RADIUS = (12.0, 24.0)
# Fraction of the cell radius the nucleus takes.
_NUCLEUS_SCALE = (0.40, 0.54)
# Two cells never come closer than this times the sum of their radii, which
# keeps every nucleus inside the part of its cell that no neighbour claims.
_MIN_SEPARATION = 0.8

_STEM_PREFIX = "cells_"
# Sides the shipped images are drawn from (multiples of 32 keep them easy for
# encoder-decoder networks, though nothing here requires it).
_SIDES = (256, 288, 320, 352, 384, 416, 448, 480, 512)
_VAL_INDICES = (3, 7, 11)


@dataclass(frozen=True)
class _Blob:
    """A smooth random closed shape: a perturbed, rotated ellipse."""

    cy: float
    cx: float
    a: float  # semi-axis along the rotated x direction
    b: float
    angle: float
    amps: np.ndarray  # harmonic amplitudes for orders 2, 3, ...
    phases: np.ndarray

    @property
    def reach(self) -> float:
        return max(self.a, self.b) * (1.0 + float(np.abs(self.amps).sum())) + 2.0

    def bbox(self, height: int, width: int) -> tuple[int, int, int, int] | None:
        """Pixel box ``(y0, y1, x0, x1)`` that contains the blob, clipped."""
        r = self.reach
        y0, y1 = max(0, int(np.floor(self.cy - r))), min(height, int(np.ceil(self.cy + r)) + 1)
        x0, x1 = max(0, int(np.floor(self.cx - r))), min(width, int(np.ceil(self.cx + r)) + 1)
        if y0 >= y1 or x0 >= x1:
            return None
        return y0, y1, x0, x1

    def distance(self, box: tuple[int, int, int, int]) -> np.ndarray:
        """Normalised radial distance over ``box``: below 1 is inside."""
        y0, y1, x0, x1 = box
        dy = (np.arange(y0, y1, dtype=np.float64) - self.cy)[:, None]
        dx = (np.arange(x0, x1, dtype=np.float64) - self.cx)[None, :]
        c, s = np.cos(self.angle), np.sin(self.angle)
        u = (dx * c + dy * s) / self.a
        v = (dy * c - dx * s) / self.b
        rho = np.hypot(u, v)
        theta = np.arctan2(v, u)
        radius = np.ones_like(theta)
        for order, (amp, phase) in enumerate(zip(self.amps, self.phases), start=2):
            radius += amp * np.cos(order * theta + phase)
        return rho / radius


def _random_blob(
    rng: np.random.Generator,
    cy: float,
    cx: float,
    radius: float,
    elongation: tuple[float, float],
    roughness: Sequence[float],
) -> _Blob:
    ratio = rng.uniform(*elongation)
    # Keep the area of the ellipse equal to that of a circle of ``radius``.
    a, b = radius * np.sqrt(ratio), radius / np.sqrt(ratio)
    amps = np.array([rng.uniform(0.0, m) for m in roughness])
    phases = rng.uniform(0.0, 2.0 * np.pi, size=len(roughness))
    return _Blob(cy, cx, a, b, rng.uniform(0.0, np.pi), amps, phases)


def _smooth_noise(rng: np.random.Generator, height: int, width: int, scale: float) -> np.ndarray:
    """Zero-mean, roughly unit-variance random field with features of ``scale`` px."""
    gh = max(2, int(np.ceil(height / scale)) + 2)
    gw = max(2, int(np.ceil(width / scale)) + 2)
    grid = rng.standard_normal((gh, gw)).astype(np.float32)
    field = cv2.resize(grid, (width, height), interpolation=cv2.INTER_CUBIC)
    return field


def _place_cells(rng: np.random.Generator, height: int, width: int) -> list[tuple[float, float, float]]:
    """Cell centres and mean radii ``(cy, cx, r)``, grown in touching clusters."""
    target = rng.uniform(0.40, 0.58) * height * width
    covered = 0.0
    cells: list[tuple[float, float, float]] = []
    centres = np.empty((0, 2))
    radii = np.empty(0)
    cluster: list[int] = []
    margin = 0.5 * _CELL_RADIUS[1]
    budget = 60 + int(0.01 * height * width)
    for _ in range(budget):
        if covered >= target:
            break
        r = rng.uniform(*_CELL_RADIUS)
        if not cluster or rng.random() < 0.18:
            cy = rng.uniform(-margin, height + margin)
            cx = rng.uniform(-margin, width + margin)
            new_cluster = True
        else:
            # Grow from a recent member so clusters come out as chains and
            # clumps rather than as a scatter.
            parent = cluster[-1 - int(rng.integers(0, min(3, len(cluster))))]
            py, px, pr = cells[parent]
            step = (pr + r) * rng.uniform(0.82, 1.0)
            ang = rng.uniform(0.0, 2.0 * np.pi)
            cy, cx = py + step * np.sin(ang), px + step * np.cos(ang)
            new_cluster = False
        if not (-margin <= cy <= height + margin and -margin <= cx <= width + margin):
            continue
        if len(cells):
            gap = np.hypot(centres[:, 0] - cy, centres[:, 1] - cx)
            if np.any(gap < _MIN_SEPARATION * (radii + r)):
                continue
        if new_cluster:
            cluster = []
        cluster.append(len(cells))
        cells.append((cy, cx, r))
        centres = np.vstack([centres, [cy, cx]])
        radii = np.append(radii, r)
        # Cells hanging over the edge cover less of the image.
        inside = (min(cy, height - cy, r) + r) * (min(cx, width - cx, r) + r) / (4 * r * r)
        covered += np.pi * r * r * max(0.0, inside)
    if not cells:
        cells.append((height / 2.0, width / 2.0, min(_CELL_RADIUS[0], 0.4 * min(height, width))))
    return cells


def _draw_scene(
    rng: np.random.Generator, height: int, width: int
) -> tuple[np.ndarray, np.ndarray, list[tuple[_Blob, _Blob]]]:
    """Rasterise cells and nuclei.

    Returns the class mask, the cell instance map (0 background, cells from
    1) and the blob pair behind each instance.
    """
    cells = _place_cells(rng, height, width)
    best = np.full((height, width), np.inf)
    owner = np.zeros((height, width), np.int32)
    blobs: list[tuple[_Blob, _Blob]] = []
    for idx, (cy, cx, r) in enumerate(cells, start=1):
        body = _random_blob(rng, cy, cx, r, (1.0, 1.7), (0.12, 0.09, 0.06, 0.04))
        rn = r * rng.uniform(*_NUCLEUS_SCALE)
        off, ang = rng.uniform(0.0, 0.15) * r, rng.uniform(0.0, 2.0 * np.pi)
        nucleus = _random_blob(
            rng, cy + off * np.sin(ang), cx + off * np.cos(ang), rn, (1.0, 1.4), (0.05, 0.04, 0.02)
        )
        blobs.append((body, nucleus))
        box = body.bbox(height, width)
        if box is None:
            continue
        y0, y1, x0, x1 = box
        d = body.distance(box)
        # Where cells overlap, the pixel goes to the cell it is relatively
        # deepest in: touching cells meet along a shared border.
        win = (d < 1.0) & (d < best[y0:y1, x0:x1])
        best[y0:y1, x0:x1][win] = d[win]
        owner[y0:y1, x0:x1][win] = idx

    mask = (owner > 0).astype(np.uint8) * CYTOPLASM
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (5, 5))
    for idx, (body, nucleus) in enumerate(blobs, start=1):
        box = nucleus.bbox(height, width)
        if box is None:
            continue
        y0, y1, x0, x1 = box
        # A rim of cytoplasm always separates the nucleus from the cell edge.
        mine = cv2.erode((owner[y0:y1, x0:x1] == idx).astype(np.uint8), kernel, borderValue=1)
        inside = (nucleus.distance(box) < 1.0) & (mine > 0)
        mask[y0:y1, x0:x1][inside] = NUCLEUS
    return mask, owner, blobs


def _render(
    rng: np.random.Generator,
    mask: np.ndarray,
    owner: np.ndarray,
    blobs: list[tuple[_Blob, _Blob]],
) -> np.ndarray:
    """Photons to pixels: stains, texture, debris, blur, illumination, noise."""
    height, width = mask.shape
    green = np.zeros((height, width), np.float32)  # cytoplasm stain
    blue = np.zeros((height, width), np.float32)  # DNA stain
    is_nuc = mask == NUCLEUS

    for idx, (body, nucleus) in enumerate(blobs, start=1):
        cell_level = rng.uniform(0.42, 0.85)
        nuc_level = rng.uniform(0.6, 1.0)
        n_nucleoli = int(rng.integers(1, 4))
        spots = [
            (rng.uniform(-0.5, 0.5), rng.uniform(-0.5, 0.5), rng.uniform(0.15, 0.28), rng.uniform(0.2, 0.4))
            for _ in range(n_nucleoli)
        ]
        box = body.bbox(height, width)
        if box is None:
            continue
        y0, y1, x0, x1 = box
        mine = owner[y0:y1, x0:x1] == idx
        d = body.distance(box)
        # Cells are thickest around the nucleus and thin out to the edge.
        dome = 0.45 + 0.55 * np.sqrt(np.clip(1.0 - d * d, 0.0, 1.0))
        green[y0:y1, x0:x1][mine] = (cell_level * dome)[mine]

        nbox = nucleus.bbox(height, width)
        if nbox is None:
            continue
        ny0, ny1, nx0, nx1 = nbox
        dn = nucleus.distance(nbox)
        here = is_nuc[ny0:ny1, nx0:nx1] & (owner[ny0:ny1, nx0:nx1] == idx)
        level = nuc_level * (0.72 + 0.28 * np.sqrt(np.clip(1.0 - dn * dn, 0.0, 1.0)))
        yy = (np.arange(ny0, ny1) - nucleus.cy)[:, None]
        xx = (np.arange(nx0, nx1) - nucleus.cx)[None, :]
        rn = np.sqrt(nucleus.a * nucleus.b)
        for sy, sx, sr, depth in spots:
            g = np.exp(-((yy - sy * rn) ** 2 + (xx - sx * rn) ** 2) / (2.0 * (sr * rn) ** 2))
            level = level * (1.0 - depth * g)
        blue[ny0:ny1, nx0:nx1][here] = level[here]

    cell = owner > 0
    # Texture: mottled staining at two scales, plus granules in the cytoplasm.
    mottle = 1.0 + 0.16 * _smooth_noise(rng, height, width, 6.0) + 0.10 * _smooth_noise(rng, height, width, 2.5)
    granules = (rng.random((height, width)) < 0.02) & cell & ~is_nuc
    granule_img = granules.astype(np.float32) * rng.exponential(1.0, (height, width)).astype(np.float32)
    granule_img = cv2.GaussianBlur(granule_img, (0, 0), 0.9)
    green = green * mottle + 1.4 * granule_img * green
    # The cytoplasm stain is dimmer over the nucleus, which sits below it.
    green[is_nuc] *= 0.6
    chromatin = 1.0 + 0.12 * _smooth_noise(rng, height, width, 2.0)
    blue = blue * chromatin
    blue[cell & ~is_nuc] += 0.035
    red = 0.12 * green + 0.05 * blue

    # Out-of-focus debris in the background: soft, mostly red-yellow blobs.
    bg_y, bg_x = np.nonzero(owner == 0)
    n_debris = int(rng.poisson(2.0 + height * width / 25000.0)) if len(bg_y) else 0
    debris = np.zeros((height, width, 3), np.float32)
    for _ in range(n_debris):
        k = int(rng.integers(0, len(bg_y)))
        colour = np.array([rng.uniform(0.5, 1.0), rng.uniform(0.25, 0.7), rng.uniform(0.0, 0.12)], np.float32)
        if rng.random() < 0.35:
            amp, sigma = rng.uniform(0.12, 0.3), rng.uniform(0.8, 1.6)  # dust speck
        else:
            amp, sigma = rng.uniform(0.06, 0.16), rng.uniform(4.0, 11.0)  # blurred clump
        impulse = np.zeros((height, width), np.float32)
        impulse[bg_y[k], bg_x[k]] = 1.0
        spot = cv2.GaussianBlur(impulse, (0, 0), sigma)
        spot *= amp / max(float(spot.max()), 1e-6)
        debris += spot[:, :, None] * colour

    rgb = np.stack([red, green, blue], axis=-1) + debris
    rgb += 0.025 * (1.0 + 0.3 * _smooth_noise(rng, height, width, 40.0))[:, :, None]  # haze
    rgb = cv2.GaussianBlur(rgb.astype(np.float32), (0, 0), rng.uniform(0.8, 1.4))

    # Uneven illumination: off-centre vignetting times a slow gain drift.
    yy = (np.arange(height, dtype=np.float32) / max(height - 1, 1) - rng.uniform(0.35, 0.65))[:, None]
    xx = (np.arange(width, dtype=np.float32) / max(width - 1, 1) - rng.uniform(0.35, 0.65))[None, :]
    vignette = 1.0 - rng.uniform(0.2, 0.4) * (xx * xx + yy * yy) / 0.5
    gain = vignette * (1.0 + 0.07 * _smooth_noise(rng, height, width, 90.0))
    rgb *= np.clip(gain, 0.3, 1.3)[:, :, None]

    # Camera: photon counts, then offset, gain to 8 bit and read noise.
    full_well = rng.uniform(250.0, 450.0)
    channel_gain = np.array([rng.uniform(150, 190), rng.uniform(210, 240), rng.uniform(220, 245)])
    photons = rng.poisson(np.clip(rgb, 0.0, None).astype(np.float64) * full_well)
    offset = rng.uniform(3.0, 8.0)
    levels = offset + photons * (channel_gain / full_well) + rng.normal(0.0, 1.1, rgb.shape)
    return np.clip(np.rint(levels), 0, 255).astype(np.uint8)


@overload
def generate_sample(
    seed: int, height: int, width: int, *, return_instances: Literal[False] = ...
) -> tuple[np.ndarray, np.ndarray]: ...


@overload
def generate_sample(
    seed: int, height: int, width: int, *, return_instances: Literal[True]
) -> tuple[np.ndarray, np.ndarray, np.ndarray]: ...


def generate_sample(
    seed: int, height: int, width: int, *, return_instances: bool = False
) -> tuple[np.ndarray, np.ndarray] | tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Make one synthetic fluorescence image and its exact class mask.

    Parameters
    ----------
    seed:
        Non-negative integer; the result depends on nothing else besides the
        size.
    height, width:
        Image size in pixels, each at least :data:`MIN_SIDE`.
    return_instances:
        Also return the cell instance map (``int32``, 0 for background, one
        id per cell from 1), e.g. to find touching cells.

    Returns
    -------
    image:
        ``uint8`` array ``(height, width, 3)`` in RGB order.
    mask:
        ``uint8`` array ``(height, width)`` of class indices
        (0 background, 1 cytoplasm, 2 nucleus).
    instances:
        Only with ``return_instances``.

    Raises
    ------
    InvalidArgumentError
        If the seed is negative or not an integer, or a side is too small.
    """
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise InvalidArgumentError(f"seed must be a non-negative integer, got {seed!r}")
    for name, side in (("height", height), ("width", width)):
        if isinstance(side, bool) or not isinstance(side, (int, np.integer)) or side < MIN_SIDE:
            raise InvalidArgumentError(f"{name} must be an integer of at least {MIN_SIDE}, got {side!r}")
    rng = np.random.default_rng(int(seed))
    mask, owner, blobs = _draw_scene(rng, int(height), int(width))
    image = _render(rng, mask, owner, blobs)
    if return_instances:
        return image, mask, owner
    return image, mask


def sample_plan(count: int = 12, seed: int = 2026) -> list[tuple[str, int, int, int]]:
    """The ``(stem, seed, height, width)`` of each image in a sample set."""
    if count < 1:
        raise InvalidArgumentError(f"count must be at least 1, got {count}")
    state = np.random.SeedSequence(seed).generate_state(3 * count, dtype=np.uint32)
    plan = []
    for i in range(count):
        image_seed = int(state[3 * i])
        height = _SIDES[int(state[3 * i + 1]) % len(_SIDES)]
        width = _SIDES[int(state[3 * i + 2]) % len(_SIDES)]
        plan.append((f"{_STEM_PREFIX}{i + 1:02d}", image_seed, height, width))
    return plan


def write_sample_set(out_dir: str | os.PathLike[str], *, count: int = 12, seed: int = 2026) -> list[Path]:
    """Write a sample data set with ground truth to ``out_dir``.

    Layout: ``images/<stem>.png`` (RGB), ``masks/<stem>.png`` (indexed, pixel
    value = class index) and ``classes.json`` with the class names, colours
    and a train/val split. The same arguments give byte-identical files.

    Parameters
    ----------
    out_dir:
        Folder to write into; created if missing.
    count:
        Number of images.
    seed:
        Seed of the whole set.

    Returns
    -------
    list of Path
        Every file written, ``classes.json`` last.

    Raises
    ------
    ExportError
        If a file cannot be written.
    """
    from segstudio.io.masks import write_indexed_png

    out = Path(out_dir)
    images_dir, masks_dir = out / "images", out / "masks"
    try:
        images_dir.mkdir(parents=True, exist_ok=True)
        masks_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ExportError(f"cannot create the folder: {exc.strerror or exc}", path=out) from exc

    plan = sample_plan(count, seed)
    written: list[Path] = []
    for stem, image_seed, height, width in plan:
        image, mask = generate_sample(image_seed, height, width)
        image_path = images_dir / f"{stem}.png"
        ok = cv2.imwrite(
            str(image_path), cv2.cvtColor(image, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_PNG_COMPRESSION, 9]
        )
        if not ok:
            raise ExportError("cannot write the PNG image", path=image_path)
        written.append(image_path)
        written.append(Path(write_indexed_png(masks_dir / f"{stem}.png", mask, CLASS_COLORS)))
        logger.debug("wrote sample %s (%dx%d)", stem, width, height)

    val_idx = [i for i in _VAL_INDICES if i < count] if count > len(_VAL_INDICES) else []
    stems = [p[0] for p in plan]
    meta = {
        "classes": [{"name": n, "color": list(c)} for n, c in zip(CLASS_NAMES, CLASS_COLORS)],
        "split": {
            "train": [s for i, s in enumerate(stems) if i not in val_idx],
            "val": [stems[i] for i in val_idx],
        },
    }
    meta_path = out / "classes.json"
    try:
        meta_path.write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8")
    except OSError as exc:
        raise ExportError(f"cannot write the class list: {exc.strerror or exc}", path=meta_path) from exc
    written.append(meta_path)
    return written
