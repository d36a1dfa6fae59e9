"""The dense CRF's one entry point: which backend runs it, and in what pieces.

Two backends compute the same model (Krähenbühl & Koltun's fully connected
CRF as DeepLab-v1 uses it):

``"pydensecrf"``
    pydensecrf2, the reference: compiled C++, one CPU thread
    (:mod:`segstudio.refine.dense_crf`).
``"torch"``
    the PyTorch permutohedral lattice (:mod:`segstudio.refine.torch_crf`):
    runs on CUDA, and on the CPU with torch's threads.
``"auto"``
    torch on a GPU. On the CPU whichever ``benchmarks/bench_crf.py``
    measured faster on a 2-core Xeon: torch (2 threads) for an image of up
    to :data:`AUTO_TORCH_CPU_PIXELS` that it refines in one piece (1.2-1.6x
    pydensecrf2's speed at 512^2 and 1024^2, 3 and 21 classes), pydensecrf2
    above that (at 2048^2 the two were level, 0.99x and 1.03x: torch's
    lattice takes longer to build than its faster iterations win back, and
    it needs 1.2-1.8x the memory) and on one thread; torch when pydensecrf2
    is not installed.

An image whose CRF would need more than ``tile_bytes`` runs in overlapping
tiles (:mod:`segstudio.refine.tiles`), so memory follows the tile, not the
image; a tile yields its labels as soon as it is done (:class:`TileProgress`)
and the tiles nearest a ``focus`` box (what the user looks at) go first.
"""

from __future__ import annotations

import importlib.util
import logging
import math
from dataclasses import dataclass

import numpy as np

from segstudio.errors import InvalidArgumentError
from segstudio.io.masks import MAX_CLASSES_8BIT
from segstudio.refine import tiles as tiling
from segstudio.refine.dense_crf import (
    CRFParams,
    RefineResult,
    _check_shapes,
    _to_uint8_rgb,
)
from segstudio.tasks import CancelToken, Progress, Task, run_to_completion

logger = logging.getLogger(__name__)

BACKENDS = ("auto", "pydensecrf", "torch")

#: On the CPU, "auto" takes torch up to this many pixels (see the module text).
AUTO_TORCH_CPU_PIXELS = 1_500_000

#: Peak bytes a tile's CRF allocates per pixel: (fixed, per class). Measured
#: as the growth of RSS over the inputs (bench_crf.py) on 1024^2 and 2048^2
#: photographs with 3 and 21 classes: pydensecrf2 210-225 B + ~18 B per class,
#: torch 500-525 B + ~17 B per class; rounded up, plus the float32 unary and
#: marginals of the tile this module makes besides.
BYTES_PER_PIXEL = {"pydensecrf": (240, 28), "torch": (560, 28)}

#: Default memory for one tile's CRF (the studio's live preview uses this).
DEFAULT_TILE_BYTES = 1 << 30

#: The margin around a tile, in bilateral standard deviations (σα): the kernel
#: is e^-4.5 of its peak there (at two widths a 2-D Gaussian still has 13 % of
#: its mass outside; tiles then agreed with the whole image on 98.4 % of a
#: retina photograph's pixels, at three 99.2 %).
MARGIN_SIGMAS = 3.0


@dataclass(frozen=True)
class TileProgress(Progress):
    """Progress after a tile is finished: its ``core`` box, one ``(start, stop)``
    per axis (``((y0, y1), (x0, x1))`` for an image, three pairs for a volume),
    and the refined ``labels`` of that box (the studio shows them at once)."""

    core: tiling.Box = ()
    labels: np.ndarray | None = None


def pydensecrf_available() -> bool:
    """Whether pydensecrf2 is installed (it compiles at install time)."""
    return importlib.util.find_spec("pydensecrf") is not None


def choose_backend(backend: str = "auto", device=None, *, pixels: int | None = None, n_classes: int = 2,
                   tile_bytes: int = DEFAULT_TILE_BYTES) -> tuple[str, object]:
    """Resolve ``backend`` and ``device`` to ``(name, torch.device or None)``.

    ``device``: ``None``/``"auto"`` (CUDA when there is one), ``"cpu"``,
    ``"cuda"``, ``"cuda:1"``... pydensecrf2 runs on the CPU only.
    ``pixels``, ``n_classes`` and ``tile_bytes`` describe the job, for
    "auto" on the CPU (unknown pixels: pydensecrf2).

    Raises
    ------
    InvalidArgumentError
        An unknown backend or device, pydensecrf2 asked for on a GPU or
        when it is not installed.
    """
    if backend not in BACKENDS:
        raise InvalidArgumentError(f"unknown CRF backend {backend!r}; expected one of {', '.join(BACKENDS)}")
    from segstudio.refine.torch_crf import resolve_torch_device

    if backend == "torch":
        return "torch", resolve_torch_device(device)
    if backend == "pydensecrf":
        if device not in (None, "auto", "cpu") and resolve_torch_device(device).type != "cpu":
            raise InvalidArgumentError(f"the pydensecrf backend runs on the CPU only, not on {device}; "
                                       "choose the torch backend for a GPU")
        if not pydensecrf_available():
            raise InvalidArgumentError("the pydensecrf backend needs pydensecrf2 (pip install pydensecrf2); "
                                       "the torch backend needs nothing more")
        return "pydensecrf", None
    torch_device = resolve_torch_device(device)
    if torch_device.type != "cpu" or not pydensecrf_available():
        return "torch", torch_device
    import torch

    small = (pixels is not None and pixels <= AUTO_TORCH_CPU_PIXELS
             and pixels * bytes_per_pixel("torch", n_classes) <= tile_bytes)
    return ("torch", torch_device) if small and torch.get_num_threads() >= 2 else ("pydensecrf", None)


def bytes_per_pixel(backend: str, n_classes: int) -> int:
    """Peak bytes per pixel of one CRF run with ``backend`` (see :data:`BYTES_PER_PIXEL`)."""
    fixed, per_class = BYTES_PER_PIXEL[backend]
    return fixed + per_class * int(n_classes)


def tile_margin(params: CRFParams) -> int:
    """Pixels of context around a tile: :data:`MARGIN_SIGMAS` bilateral (or Gaussian) widths."""
    return int(math.ceil(MARGIN_SIGMAS * max(params.bilateral_sxy, params.gaussian_sxy)))


def refine_steps(
    image: np.ndarray,
    probabilities: np.ndarray,
    params: CRFParams | None = None,
    *,
    backend: str = "auto",
    device=None,
    tile_bytes: int | None = None,
    region: tiling.Box | None = None,
    focus: tiling.Box | None = None,
    keep_probabilities: bool = True,
    cancel: CancelToken | None = None,
) -> Task[RefineResult]:
    """Refine class probabilities with the fully connected CRF, step by step.

    Parameters
    ----------
    image, probabilities, params:
        As :func:`segstudio.refine.dense_crf.refine_steps`: ``H x W`` or
        ``H x W x 3`` image (anything but uint8 is mapped to 0..255 by its
        0.5/99.5 percentiles), ``C x H x W`` probabilities (float, or uint8
        holding ``p * 255``), the settings (DeepLab-v1's by default).
    backend, device:
        See :func:`choose_backend`.
    tile_bytes:
        Memory one piece of the CRF may use (default
        :data:`DEFAULT_TILE_BYTES`). A smaller image runs whole, exactly as
        the backend does; a larger one in tiles with a margin of
        :func:`tile_margin`, whose labels agree with the whole image's on
        > 99 % of pixels (tested).
    region:
        ``((y0, y1), (x0, x1))``: refine only this box (tiles still see
        their margins around it); outside it the result holds the input's
        argmax and probabilities.
    focus:
        ``((y0, y1), (x0, x1))``: the tiles nearest this box go first.
    keep_probabilities:
        When False the result's ``probabilities`` is None: only labels are
        kept, which is all a preview needs (a 12000^2 image with 3 classes
        would otherwise return 1.7 GB of float32 marginals).
    cancel:
        Checked between iterations and tiles.

    Yields
    ------
    Progress
        After every mean-field iteration of every tile
        (``stage="crf"``); a finished tile (when there are several) as a
        :class:`TileProgress` carrying its labels.

    Returns
    -------
    RefineResult

    Raises
    ------
    InvalidArgumentError
        Bad shapes or values (named), an unknown or unavailable backend.
    TaskCancelled
        When ``cancel`` was cancelled.
    """
    params, budget = checked_settings(params, tile_bytes)
    image, probabilities = np.asarray(image), np.asarray(probabilities)
    n_classes, height, width = _check_shapes(image, probabilities)
    name, torch_device = choose_backend(backend, device, pixels=height * width, n_classes=n_classes,
                                        tile_bytes=budget)
    per_pixel = bytes_per_pixel(name, n_classes)

    if region is None and height * width * per_pixel <= budget:
        # one piece: exactly what the backend computes on the whole image
        result = yield from _piece_steps(name, torch_device, image, probabilities, params, cancel)
        return result if keep_probabilities else RefineResult(probabilities=None, labels=result.labels)

    pixels = max(1, budget // per_pixel)
    margin = min(tile_margin(params), max(1, int(math.sqrt(pixels)) // 4))  # a margin never dwarfs the core
    shape = (height, width)
    core = tiling.square_core(pixels, (margin, margin), shape)
    plan = tiling.plan_tiles(shape, core, (margin, margin), region=region, focus=focus)
    logger.debug("CRF of %dx%d in %d tiles of %s (margin %d px, %s)", height, width, len(plan), core, margin, name)

    to_uint8 = _uint8_mapper(image)
    return (yield from run_tiles(
        plan,
        lambda tile: _piece_steps(name, torch_device, to_uint8(image[tile.outer_slices]),
                                  probabilities[(slice(None), *tile.outer_slices)], params, cancel),
        probabilities, keep_probabilities, params.iterations,
    ))


def run_tiles(plan, make_piece, probabilities: np.ndarray, keep_probabilities: bool,
              iterations: int) -> Task[RefineResult]:
    """Refine the tiles of ``plan`` one by one (``make_piece(tile)``: the CRF
    task of its outer box) and keep each core in the labels (the argmax of
    ``probabilities`` until then, uint8 or uint16 as label maps) and, with
    ``keep_probabilities``, in the marginals; shared by the 2-D and 3-D CRFs.

    Yields a Progress per iteration of each tile and a :class:`TileProgress`
    per finished tile."""
    label_dtype = np.uint8 if probabilities.shape[0] <= MAX_CLASSES_8BIT else np.uint16
    labels = _argmax(probabilities, label_dtype)
    marginals = _normalised_float(probabilities) if keep_probabilities else None
    total = len(plan) * iterations
    for number, tile in enumerate(plan):
        piece = make_piece(tile)
        while True:
            try:
                step = next(piece)
            except StopIteration as stop:
                refined = stop.value
                break
            yield Progress(number * iterations + step.done, total,
                           message=f"tile {number + 1}/{len(plan)}, iteration {step.done}/{iterations}",
                           stage="crf")
        inner = tile.core_in_outer
        labels[tile.core_slices] = refined.labels[inner]
        if marginals is not None:
            marginals[(slice(None), *tile.core_slices)] = refined.probabilities[(slice(None), *inner)]
        yield TileProgress((number + 1) * iterations, total, message=f"tile {number + 1}/{len(plan)} done",
                           stage="crf", core=tile.core, labels=labels[tile.core_slices].copy())
    return RefineResult(probabilities=marginals, labels=labels)


def refine(
    image: np.ndarray,
    probabilities: np.ndarray,
    params: CRFParams | None = None,
    **options,
) -> RefineResult:
    """Refine class probabilities with the fully connected CRF.

    Runs :func:`refine_steps` to its end; see there for the arguments.
    """
    return run_to_completion(refine_steps(image, probabilities, params, **options))


def refine_scaled_steps(
    image: np.ndarray,
    probabilities: np.ndarray,
    params: CRFParams | None = None,
    *,
    box: tiling.Box,
    max_pixels: int,
    **options,
) -> Task[RefineResult]:
    """The CRF of ``box`` at a coarser scale: a preview of a view too large to
    refine at full resolution quickly (a whole slide at "fit" zoom).

    The box's image and probabilities are shrunk (area averaging) to at most
    ``max_pixels``, the kernel widths in pixels shrink with them, the CRF
    runs there (``options`` as :func:`refine_steps`) and its labels are
    enlarged back (nearest neighbour) to the box's size. The result's
    ``labels`` cover the box only; ``probabilities`` is None.
    """
    import cv2

    params = CRFParams.resolve(params)
    image, probabilities = np.asarray(image), np.asarray(probabilities)
    _check_shapes(image, probabilities)
    (y0, y1), (x0, x1) = ((max(0, int(a)), min(int(n), int(b))) for (a, b), n in zip(box, image.shape[:2]))
    height, width = y1 - y0, x1 - x0
    if height <= 0 or width <= 0 or max_pixels < 1:
        raise InvalidArgumentError(f"nothing to refine: box {box} in a {image.shape[1]} x {image.shape[0]} image")
    factor = max(1.0, math.sqrt(height * width / max_pixels))
    size = (max(1, round(width / factor)), max(1, round(height / factor)))

    def shrink(plane: np.ndarray) -> np.ndarray:
        if plane.dtype not in (np.uint8, np.uint16, np.float32):
            plane = plane.astype(np.float32)
        return cv2.resize(np.ascontiguousarray(plane), size, interpolation=cv2.INTER_AREA)

    small_image = _uint8_mapper(image)(shrink(image[y0:y1, x0:x1]))
    small_probabilities = np.stack([shrink(channel[y0:y1, x0:x1]) for channel in probabilities])
    scaled = CRFParams(
        gaussian_weight=params.gaussian_weight, gaussian_sxy=params.gaussian_sxy / factor,
        bilateral_weight=params.bilateral_weight, bilateral_sxy=params.bilateral_sxy / factor,
        bilateral_srgb=params.bilateral_srgb, iterations=params.iterations,
    )
    options["keep_probabilities"] = False
    result = yield from refine_steps(small_image, small_probabilities, scaled, **options)
    labels = cv2.resize(result.labels, (width, height), interpolation=cv2.INTER_NEAREST)
    return RefineResult(probabilities=None, labels=labels)


def _piece_steps(name, torch_device, image, probabilities, params, cancel) -> Task[RefineResult]:
    if name == "torch":
        from segstudio.refine.torch_crf import refine_torch_steps

        return refine_torch_steps(image, probabilities, params, device=torch_device, cancel=cancel)
    from segstudio.refine.dense_crf import refine_steps as pydensecrf_steps

    return pydensecrf_steps(image, probabilities, params, cancel=cancel)


def _uint8_mapper(image: np.ndarray):
    """A function taking a part of ``image`` to 8-bit RGB with the whole
    image's intensity range (tiles must not each stretch their own)."""
    if image.dtype == np.uint8:
        return _to_uint8_rgb
    grey = whole_range_mapper(image, "image")
    return lambda part: _to_uint8_rgb(grey(part))


def whole_range_mapper(data: np.ndarray, what: str):
    """A function mapping a part of ``data`` (an image or a volume) onto uint8
    by the whole array's 0.5/99.5 percentiles
    (:func:`segstudio.preprocess.robust_range`: a sample of at most 4 M values,
    so a 12000^2 image is not copied in float64; min..max when that range is empty).

    Raises InvalidArgumentError naming ``what`` for a non-numeric type or NaN/inf.
    """
    if data.dtype == np.bool_ or not (np.issubdtype(data.dtype, np.integer)
                                      or np.issubdtype(data.dtype, np.floating)):
        raise InvalidArgumentError(f"{what} must be uint8, another integer type or float; got dtype {data.dtype}")
    if np.issubdtype(data.dtype, np.floating):
        low, high = float(data.min()), float(data.max())  # NaN and inf propagate, with no temporary
        if not (math.isfinite(low) and math.isfinite(high)):
            raise InvalidArgumentError(f"{what} contains NaN or infinite values")
    from segstudio.preprocess import robust_range

    lo, hi = robust_range(data, 0.5, 99.5)  # subsampled evenly above 4 M values; a flat array maps to 0
    scale = 255.0 / (hi - lo)
    return lambda part: np.clip(np.rint((part.astype(np.float64) - lo) * scale), 0, 255).astype(np.uint8)


def checked_settings(params: CRFParams | None, tile_bytes: int | None) -> tuple[CRFParams, int]:
    """The settings (DeepLab's when None) and the tile budget (the default when None), checked."""
    params = CRFParams.resolve(params)
    budget = DEFAULT_TILE_BYTES if tile_bytes is None else int(tile_bytes)
    if budget <= 0:
        raise InvalidArgumentError(f"tile_bytes must be positive, got {tile_bytes}")
    return params, budget


def _argmax(probabilities: np.ndarray, dtype) -> np.ndarray:
    """The per-pixel argmax of ``C x H x W`` (or ``C x Z x Y x X``), in bands
    along the first spatial axis of about 4 M elements each (np.argmax makes
    an int64 map the size of the image)."""
    labels = np.empty(probabilities.shape[1:], dtype=dtype)
    band = max(1, (1 << 22) // max(1, math.prod(probabilities.shape[2:])))
    for start in range(0, probabilities.shape[1], band):
        labels[start : start + band] = np.argmax(probabilities[:, start : start + band], axis=0)
    return labels


def _normalised_float(probabilities: np.ndarray) -> np.ndarray:
    """float32 probabilities summing to 1 per pixel (what lies outside a refined region)."""
    out = probabilities.astype(np.float32)
    if probabilities.dtype == np.uint8:
        out *= np.float32(1.0 / 255.0)
    np.clip(out, 1e-8, 1.0, out=out)
    out /= out.sum(axis=0, keepdims=True)
    return out
