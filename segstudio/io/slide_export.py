"""Label exports for whole-slide tools: a pyramidal OME-TIFF label image and
GeoJSON class polygons.

``write_label_pyramid`` writes the label map (pixel = class index, 255 or
65535 = unlabelled, as the project keeps it) as a tiled OME-TIFF whose
sub-resolution levels halve until the image is small; QuPath and napari open
it as a multi-resolution image. Levels are taken by striding (every other
pixel), so every value in a level is a class that is really there.

``labels_to_geojson`` traces each class's regions (outer boundaries and
holes) into a GeoJSON FeatureCollection in the form QuPath imports (File >
Import objects): one MultiPolygon feature per class with its name and colour
as the classification. Coordinates are pixel coordinates of the full
resolution image; a boundary runs through the centres of the region's edge
pixels, so a region loses half a pixel along its outline.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

import numpy as np

from segstudio.errors import InvalidArgumentError
from segstudio.io.masks import unlabelled_for
from segstudio.io.pyramid import MIN_SIDE, TILE, write_levels_steps

log = logging.getLogger(__name__)

#: The most pixels of one labelled group traced at full resolution for GeoJSON (else subsampled).
GEOJSON_PIXELS = 8192 * 8192


def label_pyramid_levels(labels: np.ndarray, min_side: int = MIN_SIDE) -> list[np.ndarray]:
    """The label map and its halvings (every other pixel) until the longer side is at most ``min_side``."""
    if labels.ndim != 2 or labels.size == 0:
        raise InvalidArgumentError(f"a label pyramid needs a non-empty 2-D label map, got shape {labels.shape}")
    levels = [labels]
    while max(levels[-1].shape) > min_side:
        levels.append(levels[-1][::2, ::2])
    return levels


def write_label_pyramid(path: str | os.PathLike[str], labels: np.ndarray, *,
                        microns_per_pixel: tuple[float, float] | None = None) -> Path:
    """Write ``labels`` as a tiled, pyramidal OME-TIFF at ``path`` (replaced
    whole: written beside it, then renamed, so a reader never sees half a file)."""
    from segstudio.tasks import run_to_completion

    levels = label_pyramid_levels(np.ascontiguousarray(labels))
    return run_to_completion(write_levels_steps(levels, len(levels), path, microns_per_pixel=microns_per_pixel))


def store_pyramid_levels(store, min_side: int = MIN_SIDE):
    """``(levels, count)`` of a :class:`~segstudio.io.tiled_labels.TiledLabels` store's
    pyramid, each level an iterator of its 512 x 512 tiles in row order (as
    tifffile writes them), built chunk by chunk: the map is never whole in
    memory. Level k takes every 2^k-th pixel, as :func:`label_pyramid_levels`."""
    height, width = store.shape
    shapes = [(height, width)]
    while max(shapes[-1]) > min_side:
        shapes.append(((shapes[-1][0] + 1) // 2, (shapes[-1][1] + 1) // 2))

    def tiles(level: int):
        step = 2 ** level
        level_h, level_w = shapes[level]
        for ty in range(0, level_h, TILE):
            for tx in range(0, level_w, TILE):
                y0, x0 = ty * step, tx * step  # the tile's corner in level 0
                y1, x1 = min(height, (ty + TILE) * step), min(width, (tx + TILE) * step)
                tile = np.full((TILE, TILE), store.unlabelled, store.dtype)
                block = store.read_strided(((y0, y1), (x0, x1)), step)
                tile[: block.shape[0], : block.shape[1]] = block
                store.forget_clean()  # memory follows one tile, not the map
                yield tile

    return [_Level(tiles(k), shapes[k], store.dtype) for k in range(len(shapes))], len(shapes)


class _Level:
    """A level given as tiles: what :func:`segstudio.io.pyramid.write_levels_steps` writes."""

    def __init__(self, tiles, shape, dtype) -> None:
        self.tiles, self.shape, self.dtype = tiles, shape, np.dtype(dtype)


def write_store_pyramid_steps(store, path: str | os.PathLike[str]):
    """A label store (the result of a slide run) as a pyramidal OME-TIFF, chunk by chunk."""
    levels, count = store_pyramid_levels(store)
    return write_levels_steps(levels, count, path)


def labels_to_geojson(labels: np.ndarray, class_names: list[str],
                      class_colors: list[tuple[int, int, int]]) -> dict:
    """A GeoJSON FeatureCollection with one MultiPolygon per class present (see the module text)."""
    import cv2

    if labels.ndim != 2:
        raise InvalidArgumentError(f"GeoJSON export needs a 2-D label map, got shape {labels.shape}")
    unlabelled = unlabelled_for(labels)
    counts = np.bincount(labels.ravel(), minlength=unlabelled + 1)
    features = []
    for class_index in np.flatnonzero(counts[:unlabelled]):
        if class_index >= len(class_names):
            continue  # a value without a class: nothing to name it by
        mask = (labels == class_index).astype(np.uint8)
        contours, hierarchy = cv2.findContours(mask, cv2.RETR_CCOMP, cv2.CHAIN_APPROX_SIMPLE)
        polygons = []
        if hierarchy is not None:
            links = hierarchy[0]
            for number, contour in enumerate(contours):
                if links[number][3] != -1:
                    continue  # a hole: added to its outer ring below
                outer = _ring(contour)
                if outer is None:
                    continue  # a line or a point: no area to import
                rings = [outer]
                child = links[number][2]
                while child != -1:
                    hole = _ring(contours[child])
                    if hole is not None:
                        rings.append(hole)
                    child = links[child][0]
                polygons.append(rings)
        if not polygons:
            continue
        features.append({
            "type": "Feature",
            "geometry": {"type": "MultiPolygon", "coordinates": polygons},
            "properties": {
                "objectType": "annotation",
                "classification": {"name": class_names[class_index],
                                   "color": [int(c) for c in class_colors[class_index]]},
                "classIndex": int(class_index),
                "pixels": int(counts[class_index]),
            },
        })
    return {"type": "FeatureCollection", "features": features}


def write_geojson(path: str | os.PathLike[str], labels: np.ndarray, class_names: list[str],
                  class_colors: list[tuple[int, int, int]]) -> Path:
    """Write :func:`labels_to_geojson` to ``path`` (atomically)."""
    from segstudio.io.masks import atomic_write_bytes

    collection = labels_to_geojson(labels, class_names, class_colors)
    return atomic_write_bytes(Path(path), json.dumps(collection, separators=(",", ":")).encode("utf-8"))


def store_to_geojson(store, class_names: list[str], class_colors: list[tuple[int, int, int]], *,
                     max_pixels: int = GEOJSON_PIXELS) -> dict:
    """:func:`labels_to_geojson` of a chunked label store (a slide's labels), never read whole.

    Each group of labelled chunks joined by an edge is traced on its own, read
    whole when its box holds at most ``max_pixels`` pixels, else every k-th
    pixel (coordinates scaled back; outlines then follow a k-pixel grid).
    Coordinates are level-0 pixels; a class's polygons of every group make
    its one feature.
    """
    from scipy import ndimage

    groups, _ = ndimage.label(store.present_chunks())
    size = store.chunk
    merged: dict[int, dict] = {}
    for number, (rows, columns) in enumerate(ndimage.find_objects(groups), start=1):
        box = ((rows.start * size, min(store.shape[0], rows.stop * size)),
               (columns.start * size, min(store.shape[1], columns.stop * size)))
        (y0, y1), (x0, x1) = box
        step = max(1, int(np.ceil(np.sqrt((y1 - y0) * (x1 - x0) / max_pixels))))
        if step > 1:
            log.warning("GeoJSON: a labelled area of %d x %d pixels is traced every %d pixels (outlines on a "
                        "%d-pixel grid; objects smaller than that may be missed)", x1 - x0, y1 - y0, step, step)
        labels = store.read(box) if step == 1 else store.read_strided(box, step)
        # chunks of other groups inside this box are traced with their own group
        chunk_rows = (y0 + np.arange(labels.shape[0]) * step) // size - rows.start
        chunk_columns = (x0 + np.arange(labels.shape[1]) * step) // size - columns.start
        own = (groups[rows, columns] == number)[chunk_rows[:, None], chunk_columns[None, :]]
        labels = np.where(own, labels, store.unlabelled).astype(store.dtype, copy=False)
        for feature in labels_to_geojson(labels, class_names, class_colors)["features"]:
            polygons = [[[[x * step + x0, y * step + y0] for x, y in ring] for ring in polygon]
                        for polygon in feature["geometry"]["coordinates"]]
            index = feature["properties"]["classIndex"]
            if index in merged:
                merged[index]["geometry"]["coordinates"].extend(polygons)
                merged[index]["properties"]["pixels"] += feature["properties"]["pixels"] * step * step
            else:
                feature["geometry"]["coordinates"] = polygons
                feature["properties"]["pixels"] *= step * step
                merged[index] = feature
    return {"type": "FeatureCollection", "features": [merged[index] for index in sorted(merged)]}


def write_store_geojson(path: str | os.PathLike[str], store, class_names: list[str],
                        class_colors: list[tuple[int, int, int]]) -> Path:
    """Write :func:`store_to_geojson` to ``path`` (atomically)."""
    from segstudio.io.masks import atomic_write_bytes

    collection = store_to_geojson(store, class_names, class_colors)
    return atomic_write_bytes(Path(path), json.dumps(collection, separators=(",", ":")).encode("utf-8"))


def _ring(contour: np.ndarray) -> list[list[float]] | None:
    """A closed ring of ``[x, y]`` points, or None for a degenerate one (a line or a point)."""
    points = contour.reshape(-1, 2)
    if len(points) < 3:
        return None
    ring = [[float(x), float(y)] for x, y in points]
    ring.append(ring[0])
    return ring
