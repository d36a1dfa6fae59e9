"""A model over a whole slide (or a region of it), tile by tile, into a chunked label store.

The slide is never read whole: each tile is read from level 0 with a margin
of context around it, predicted, and its core written into a
:class:`~segstudio.io.tiled_labels.TiledLabels` store, which is flushed
after every tile (only the chunks the tile touched). Tiles over empty glass
are skipped: a tissue mask is thresholded (Otsu) on a coarse level first.
The run yields progress per tile (with the level-0 box of a tile just
written in its metrics ``y0``, ``y1``, ``x0``, ``x1``) and can be cancelled; the tiles finished
are listed in the store (``done.json``, as level-0 boxes, with the key of
the model and settings that made them), so a run of the same key started
again on the same store resumes where the last one stopped, and a tile a
smaller region left half done is predicted again. Each tile may be refined
with the dense CRF (its context included) before it is written.

The image's intensity map is fitted once, on the coarse level, so every tile
is scaled alike (as one whole image would be).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass

import numpy as np

from segstudio.errors import InvalidArgumentError
from segstudio.io.masks import atomic_write_bytes
from segstudio.io.slide import Slide
from segstudio.io.tiled_labels import TiledLabels
from segstudio.tasks import CancelToken, Progress, Task

#: Level-0 pixels of context read around each tile.
CONTEXT = 64
DONE_FILE = "done.json"


@dataclass(frozen=True)
class SlideRun:
    """What a slide run did: tiles predicted now, skipped as glass, done before (resumed)."""

    predicted: int
    glass: int
    resumed: int


def tissue_mask(slide: Slide, *, max_side: int = 1024, overview: tuple[np.ndarray, int] | None = None
                ) -> tuple[np.ndarray, tuple[float, float]]:
    """A boolean tissue mask of a coarse level and its downsample ``(y, x)``.

    Brightfield (colour) slides: pixels darker or more saturated than the
    glass, by Otsu's threshold on each, opened to drop dust. Grey slides have
    no glass rule (fluorescence is dark where brightfield is bright), nor has a
    slide of one flat colour: all tissue. ``overview``: ``slide.thumbnail()``
    when the caller has read it already.
    """
    import cv2

    pixels, level = overview if overview is not None else slide.thumbnail(max_side)
    downsample = slide.levels[level].downsample
    if pixels.ndim == 2 or pixels.shape[2] < 3:
        return np.ones(pixels.shape[:2], bool), downsample
    rgb = pixels[:, :, :3]
    if rgb.dtype != np.uint8:
        rgb = cv2.normalize(rgb, None, 0, 255, cv2.NORM_MINMAX).astype(np.uint8)
    grey = cv2.cvtColor(np.ascontiguousarray(rgb), cv2.COLOR_RGB2GRAY)
    saturation = (rgb.max(axis=2) - rgb.min(axis=2)).astype(np.uint8)
    if int(grey.max()) - int(grey.min()) < 8:  # one flat colour: no contrast to tell glass by, skip nothing
        return np.ones(grey.shape, bool), downsample
    dark, _ = cv2.threshold(grey, 0, 255, cv2.THRESH_BINARY + cv2.THRESH_OTSU)
    tinted, _ = cv2.threshold(saturation, 0, 255, cv2.THRESH_BINARY + cv2.THRESH_OTSU)
    mask = (grey < dark) | (saturation > max(tinted, 20))
    mask = cv2.morphologyEx(mask.astype(np.uint8), cv2.MORPH_OPEN, np.ones((3, 3), np.uint8)).astype(bool)
    return mask, downsample


def predict_slide_steps(
    predictor,
    slide: Slide,
    store: TiledLabels,
    *,
    region: tuple[tuple[int, int], tuple[int, int]] | None = None,
    tile: int | None = None,
    skip_glass: bool = True,
    crf=None,
    crf_options: dict | None = None,
    run_key: str = "",
    cancel: CancelToken | None = None,
) -> Task[SlideRun]:
    """Predict ``region`` (level-0 box; the whole slide by default) tile by tile into ``store``.

    ``tile``: level-0 pixels a side (default: twice the store's chunk); a
    multiple of the chunk, so a tile's writes touch only its own chunks.
    ``crf``: a :class:`~segstudio.refine.CRFParams` to refine each tile (with
    its context) with the dense CRF (``crf_options``: refine's ``backend``,
    ``device``), on the slide's display colours (one mapping for every tile).
    ``run_key``: what makes this run's labels (model, CRF settings); tiles
    another key recorded as done are predicted again, so a new model version
    never resumes onto an old one's labels.
    """
    from segstudio.preprocess import MappedImage, fit_intensity

    if store.shape != slide.shape:
        raise InvalidArgumentError(f"the label store is {store.shape[1]} x {store.shape[0]}, the slide "
                                   f"{slide.shape[1]} x {slide.shape[0]}", path=slide.path)
    tile = tile or 2 * store.chunk
    if tile % store.chunk:
        raise InvalidArgumentError(f"the tile ({tile} px) must be a multiple of the store's chunk ({store.chunk})")
    height, width = slide.shape
    (y0, y1), (x0, x1) = region or ((0, height), (0, width))
    y0, y1, x0, x1 = max(0, y0), min(height, y1), max(0, x0), min(width, x1)
    if y1 <= y0 or x1 <= x0:
        raise InvalidArgumentError(f"the region {region} lies outside the slide", path=slide.path)

    overview = slide.thumbnail(1024)
    mask, (dy, dx) = tissue_mask(slide, overview=overview) if skip_glass else (None, (1.0, 1.0))
    intensity = fit_intensity(overview[0], predictor.preprocessing)  # one scaling for every tile
    done_path = store.folder / DONE_FILE
    # the level-0 boxes predicted by earlier runs of this key (a run on a region may have done part of a tile)
    done = _done_boxes(done_path, run_key)
    if crf is not None:
        from segstudio.io.slide_tiles import display_mapper
        from segstudio.refine import refine

        colours = display_mapper(slide, overview[0])

    first_row, first_column = (y0 // tile) * tile, (x0 // tile) * tile
    tiles = [(ty, tx) for ty in range(first_row, y1, tile) for tx in range(first_column, x1, tile)]
    counts = {"predicted": 0, "glass": 0, "resumed": 0}
    for number, (ty, tx) in enumerate(tiles, start=1):
        if cancel is not None:
            cancel.raise_if_cancelled()
        core = ((max(ty, y0), min(ty + tile, y1)), (max(tx, x0), min(tx + tile, x1)))
        predicted_before = counts["predicted"]
        if any(_covers(box, core) for box in done):
            counts["resumed"] += 1
        elif mask is not None and not _has_tissue(mask, core, dy, dx):
            counts["glass"] += 1
        else:
            outer = ((max(0, core[0][0] - CONTEXT), min(height, core[0][1] + CONTEXT)),
                     (max(0, core[1][0] - CONTEXT), min(width, core[1][1] + CONTEXT)))
            raw = slide.read_region(0, outer)
            result = predictor.predict(MappedImage(raw, intensity), cancel=cancel)
            labels = result.labels
            if crf is not None:
                labels = refine(colours(raw), result.probabilities, crf, keep_probabilities=False,
                                **(crf_options or {})).labels
            inner = labels[core[0][0] - outer[0][0]: core[0][1] - outer[0][0],
                           core[1][0] - outer[1][0]: core[1][1] - outer[1][0]]
            store.write(core, inner.astype(store.dtype, copy=False))
            store.flush()
            store.forget_clean()
            done.append(core)
            atomic_write_bytes(done_path, json.dumps({"run": run_key, "boxes": done}).encode("utf-8"))
            counts["predicted"] += 1
        metrics = {k: float(v) for k, v in counts.items()}
        if counts["predicted"] > predicted_before:  # the box just written, for a viewer to redraw
            metrics.update(zip(("y0", "y1", "x0", "x1"), map(float, (*core[0], *core[1]))))
        yield Progress(number, len(tiles), message=f"tile {number}/{len(tiles)}", stage="predict", metrics=metrics)
    return SlideRun(**counts)


def run_key(checkpoint, crf=None) -> str:
    """What makes a slide run's labels: the checkpoint (path, size, time) and the CRF settings."""
    from pathlib import Path

    stat = Path(checkpoint).stat()
    settings = "" if crf is None else json.dumps(crf.to_dict(), sort_keys=True)
    return f"{Path(checkpoint).resolve()}|{stat.st_size}|{stat.st_mtime_ns}|{settings}"


def _done_boxes(path, run_key: str) -> list:
    """The boxes ``done.json`` lists for ``run_key`` (a list alone: a run of no key, from before keys)."""
    if not path.is_file():
        return []
    recorded = json.loads(path.read_text(encoding="utf-8"))
    if isinstance(recorded, list):
        recorded = {"run": "", "boxes": recorded}
    if recorded.get("run", "") != run_key:
        return []
    return [tuple(map(tuple, box)) for box in recorded["boxes"]]


def _covers(outer, inner) -> bool:
    (a0, a1), (b0, b1) = outer
    (c0, c1), (d0, d1) = inner
    return a0 <= c0 and c1 <= a1 and b0 <= d0 and d1 <= b1


def _has_tissue(mask: np.ndarray, core, dy: float, dx: float) -> bool:
    (y0, y1), (x0, x1) = core
    rows = slice(int(y0 / dy), max(int(y0 / dy) + 1, math.ceil(y1 / dy)))
    columns = slice(int(x0 / dx), max(int(x0 / dx) + 1, math.ceil(x1 / dx)))
    return bool(mask[rows, columns].any())
