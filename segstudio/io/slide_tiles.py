"""What a slide viewer draws, as arrays: display tiles of a pyramid level and of label maps.

A view of a slide shows one pyramid level, the one that fits the zoom, cut
into square tiles of :data:`TILE` level pixels. Each tile is read alone
(only the file tiles it touches), mapped to 8-bit colour and kept in a
:class:`TileCache` bounded by bytes, so panning back over a place costs no
read. Label maps (the user's labels, a model's prediction) are drawn the
same way: a label tile of a coarse level samples every ``downsample``-th
level-0 label (:meth:`TiledLabels.read_strided`), coloured by the class
table. Nothing here knows Qt; the studio's slide view wraps the RGBA
buffers in images and fetches tiles in a thread.
"""

from __future__ import annotations

import math
import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable
from dataclasses import dataclass

import numpy as np

from segstudio.io.slide import Slide
from segstudio.io.tiled_labels import TiledLabels

#: Level pixels a side of a display tile.
TILE = 512
#: Default memory of the tile cache (about 190 tiles of 512^2 RGBA).
CACHE_BYTES = 192 * 2**20

Box = tuple[tuple[int, int], tuple[int, int]]


@dataclass(frozen=True, order=True)
class TileKey:
    """A display tile: ``row`` and ``column`` of :data:`TILE`-sized tiles of ``level``."""

    level: int
    row: int
    column: int


def tile_box(slide: Slide, key: TileKey, tile: int = TILE) -> Box:
    """The tile's box in its level's pixels, clipped to the level."""
    height, width = slide.levels[key.level].shape
    return ((key.row * tile, min(height, (key.row + 1) * tile)),
            (key.column * tile, min(width, (key.column + 1) * tile)))


def level0_box(slide: Slide, key: TileKey, tile: int = TILE) -> tuple[tuple[float, float], tuple[float, float]]:
    """The tile's box in level-0 pixels (floats: levels need not divide exactly)."""
    (y0, y1), (x0, x1) = tile_box(slide, key, tile)
    dy, dx = slide.levels[key.level].downsample
    return (y0 * dy, y1 * dy), (x0 * dx, x1 * dx)


def tiles_in_view(slide: Slide, level: int, view: tuple[tuple[float, float], tuple[float, float]],
                  tile: int = TILE) -> list[TileKey]:
    """The tiles of ``level`` a level-0 ``view`` box ``((y0, y1), (x0, x1))``
    overlaps, those nearest its centre first (they are fetched in this order)."""
    height, width = slide.levels[level].shape
    dy, dx = slide.levels[level].downsample
    (y0, y1), (x0, x1) = view
    rows = range(max(0, math.floor(y0 / dy / tile)), min(math.ceil(height / tile), math.ceil(y1 / dy / tile)))
    columns = range(max(0, math.floor(x0 / dx / tile)), min(math.ceil(width / tile), math.ceil(x1 / dx / tile)))
    centre_row, centre_column = (y0 + y1) / 2 / dy / tile - 0.5, (x0 + x1) / 2 / dx / tile - 0.5
    keys = [TileKey(level, r, c) for r in rows for c in columns]
    keys.sort(key=lambda k: (k.row - centre_row) ** 2 + (k.column - centre_column) ** 2)
    return keys


def display_mapper(slide: Slide, overview: np.ndarray | None = None) -> Callable[[np.ndarray], np.ndarray]:
    """A function from slide pixels to uint8 for display, the same for every
    tile (fitted once on the thumbnail, or ``overview`` when the caller has read
    it: 8-bit slides are shown as they are, others stretched between the 0.5th
    and 99.5th percentiles)."""
    if slide.dtype == np.uint8:
        return lambda pixels: pixels
    from segstudio.preprocess import robust_range

    if overview is None:
        overview, _ = slide.thumbnail(1024)
    low, high = robust_range(overview, 0.5, 99.5)
    scale = 255.0 / (high - low)

    def to_uint8(pixels: np.ndarray) -> np.ndarray:
        values = np.nan_to_num(pixels.astype(np.float32), nan=low, posinf=high, neginf=low)
        return np.clip(np.rint((values - low) * scale), 0, 255).astype(np.uint8)

    return to_uint8


def rgba(pixels: np.ndarray) -> np.ndarray:
    """An opaque ``H x W x 4`` uint8 buffer of grey, RGB or RGBA uint8 ``pixels``."""
    out = np.empty((*pixels.shape[:2], 4), np.uint8)
    if pixels.ndim == 2 or pixels.shape[2] == 1:
        out[:, :, :3] = pixels.reshape(*pixels.shape[:2], 1)
    elif pixels.shape[2] == 2:  # grey + alpha
        out[:, :, :3] = pixels[:, :, :1]
    else:
        out[:, :, :3] = pixels[:, :, :3]
    out[:, :, 3] = 255
    return out


def image_tile(slide: Slide, key: TileKey, mapper: Callable[[np.ndarray], np.ndarray],
               tile: int = TILE) -> np.ndarray:
    """The RGBA display buffer of one tile of the slide."""
    return rgba(mapper(slide.read_region(key.level, tile_box(slide, key, tile))))


def label_patch(labels: TiledLabels, slide: Slide, key: TileKey, box0: Box | None = None,
                tile: int = TILE) -> tuple[slice, slice, np.ndarray] | None:
    """The labels a tile shows, or the part of them inside the level-0 ``box0``
    (what an edit there changed): ``(rows, columns, values)`` in the tile's own
    pixels, None when the box misses the tile. A tile pixel of a coarse level
    shows the level-0 label at its top-left corner (nearest neighbour), sampled
    every ``downsample`` level-0 pixels from the tile's corner, so a patch and
    the whole tile agree pixel for pixel; only the chunks holding those
    corners are read."""
    (ty0, ty1), (tx0, tx1) = tile_box(slide, key, tile)
    dy, dx = slide.levels[key.level].downsample
    step = 1 if key.level == 0 else max(1, round(min(dy, dx)))
    top, left = math.floor(ty0 * dy), math.floor(tx0 * dx)
    rows, columns = (0, ty1 - ty0), (0, tx1 - tx0)
    if box0 is not None:
        (by0, by1), (bx0, bx1) = box0
        rows = (max(0, -(-(by0 - top) // step)), min(ty1 - ty0, -(-(by1 - top) // step)))
        columns = (max(0, -(-(bx0 - left) // step)), min(tx1 - tx0, -(-(bx1 - left) // step)))
        if rows[1] <= rows[0] or columns[1] <= columns[0]:
            return None
    height, width = rows[1] - rows[0], columns[1] - columns[0]
    y0, x0 = top + rows[0] * step, left + columns[0] * step
    if y0 >= labels.shape[0] or x0 >= labels.shape[1]:
        return None
    box = ((y0, min(labels.shape[0], y0 + height * step)), (x0, min(labels.shape[1], x0 + width * step)))
    values = labels.read(box) if step == 1 else labels.read_strided(box, step)
    if values.shape != (height, width):  # the last rows or columns ran past level 0's edge
        padded = np.full((height, width), labels.unlabelled, labels.dtype)
        padded[: values.shape[0], : values.shape[1]] = values[:height, :width]
        values = padded
    return slice(*rows), slice(*columns), values


def label_tile(labels: TiledLabels, slide: Slide, key: TileKey, lut: np.ndarray, tile: int = TILE) -> np.ndarray:
    """The RGBA buffer of one tile of a label map (``lut``: the class table,
    ``(65536, 4)``; unlabelled pixels are transparent)."""
    _, _, values = label_patch(labels, slide, key, None, tile)
    return lut[values]


class TileCache:
    """Least recently used buffers up to ``max_bytes``, safe to share between threads."""

    def __init__(self, max_bytes: int = CACHE_BYTES) -> None:
        self.max_bytes = int(max_bytes)
        self._items: OrderedDict[Hashable, np.ndarray] = OrderedDict()
        self._nbytes = 0
        self._lock = threading.Lock()

    def get(self, key: Hashable) -> np.ndarray | None:
        with self._lock:
            value = self._items.get(key)
            if value is not None:
                self._items.move_to_end(key)
            return value

    def __contains__(self, key: Hashable) -> bool:
        with self._lock:
            return key in self._items

    def put(self, key: Hashable, value: np.ndarray) -> None:
        with self._lock:
            old = self._items.pop(key, None)
            if old is not None:
                self._nbytes -= old.nbytes
            self._items[key] = value
            self._nbytes += value.nbytes
            while self._nbytes > self.max_bytes and len(self._items) > 1:
                _, dropped = self._items.popitem(last=False)
                self._nbytes -= dropped.nbytes

    def discard(self, predicate: Callable[[Hashable], bool]) -> int:
        """Drop every entry whose key ``predicate`` accepts; returns how many."""
        with self._lock:
            keys = [key for key in self._items if predicate(key)]
            for key in keys:
                self._nbytes -= self._items.pop(key).nbytes
            return len(keys)

    def keys(self) -> list[Hashable]:
        with self._lock:
            return list(self._items)

    @property
    def nbytes(self) -> int:
        return self._nbytes
