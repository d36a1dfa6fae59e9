"""The label map of a very large image, on disk in chunks: only what changed is written.

The store is a folder in the Zarr v2 layout, so napari and any Zarr reader
open it as it is: ``.zarray`` (shape, chunk size, ``|u1`` or ``<u2``, zlib,
fill value = the unlabelled value) and one file per chunk named ``"cy.cx"``
holding the chunk's zlib-compressed C-order bytes. A chunk that is entirely
unlabelled has no file (the fill value stands for it).

Nothing a user did is lost, and the store stays readable after a kill at any
moment: every chunk file (and ``.zarray``) is written beside its name and
renamed over it (:func:`segstudio.io.masks.atomic_write_bytes`), so a reader sees a chunk's old bytes or its new ones, never
a mix. A flush writes only the chunks marked dirty since the last one; a kill
during a flush leaves each chunk whole, some from before the flush and some
after it.
"""

from __future__ import annotations

import json
import math
import os
import zlib
from pathlib import Path

import numpy as np

from segstudio.errors import DataError, InvalidArgumentError
from segstudio.io.masks import atomic_write_bytes, unlabelled_for

CHUNK = 512
_DTYPES = {np.dtype(np.uint8): "|u1", np.dtype(np.uint16): "<u2"}


class TiledLabels:
    """A chunked label map on disk (see the module text).

    Use :meth:`create` or :meth:`open`; :meth:`read` a box, :meth:`write` a
    box (kept in memory and marked dirty), :meth:`flush` to disk.
    """

    def __init__(self, folder: Path, shape: tuple[int, int], dtype: np.dtype, chunk: int) -> None:
        self.folder, self.shape, self.dtype, self.chunk = folder, shape, np.dtype(dtype), chunk
        self.unlabelled = unlabelled_for(self.dtype)
        self._cache: dict[tuple[int, int], np.ndarray] = {}
        self._dirty: set[tuple[int, int]] = set()
        self._blank: np.ndarray | None = None  # the shared read-only chunk of a chunk with no file
        self._listing: set[tuple[int, int]] | None = None  # the chunk files on disk, listed once

    @classmethod
    def create(cls, folder: str | os.PathLike[str], shape: tuple[int, int], dtype=np.uint8,
               chunk: int = CHUNK) -> TiledLabels:
        """A new, all-unlabelled store (``folder`` must not hold one yet)."""
        folder = Path(folder)
        dtype = np.dtype(dtype)
        if dtype not in _DTYPES:
            raise InvalidArgumentError(f"label maps are uint8 or uint16, not {dtype}")
        if len(shape) != 2 or min(shape) < 1 or chunk < 1:
            raise InvalidArgumentError(f"a tiled label map needs a 2-D shape and a chunk >= 1, got {shape}, {chunk}")
        if (folder / ".zarray").exists():
            raise InvalidArgumentError(f"{folder} already holds a label store")
        folder.mkdir(parents=True, exist_ok=True)
        header = {"zarr_format": 2, "shape": [int(s) for s in shape], "chunks": [chunk, chunk],
                  "dtype": _DTYPES[dtype], "compressor": {"id": "zlib", "level": 1},
                  "fill_value": int(unlabelled_for(dtype)), "order": "C", "filters": None,
                  "dimension_separator": "."}
        atomic_write_bytes(folder / ".zarray", json.dumps(header).encode("utf-8"))
        return cls(folder, (int(shape[0]), int(shape[1])), dtype, chunk)

    @classmethod
    def open(cls, folder: str | os.PathLike[str]) -> TiledLabels:
        """An existing store; a damaged ``.zarray`` is named."""
        folder = Path(folder)
        try:
            header = json.loads((folder / ".zarray").read_text(encoding="utf-8"))
            dtype = next(d for d, code in _DTYPES.items() if code == header["dtype"])
            shape = tuple(int(s) for s in header["shape"])
            chunk = int(header["chunks"][0])
            if len(shape) != 2 or header["chunks"] != [chunk, chunk] or header["compressor"]["id"] != "zlib":
                raise ValueError("not a 2-D zlib store with square chunks")
        except (OSError, ValueError, KeyError, TypeError, StopIteration) as error:
            raise DataError(f"not a readable label store: {error}", path=folder / ".zarray") from error
        return cls(folder, shape, dtype, chunk)

    # -- reading and writing -------------------------------------------------
    @property
    def grid(self) -> tuple[int, int]:
        return math.ceil(self.shape[0] / self.chunk), math.ceil(self.shape[1] / self.chunk)

    def read(self, box: tuple[tuple[int, int], tuple[int, int]]) -> np.ndarray:
        """The labels of ``((y0, y1), (x0, x1))`` (clipped to the map); reads only its chunks."""
        (y0, y1), (x0, x1) = self._clip(box)
        out = np.empty((y1 - y0, x1 - x0), self.dtype)
        for cy, cx, inner, outer in self._chunks(y0, y1, x0, x1):
            out[outer] = self._peek(cy, cx)[inner]
        return out

    def read_strided(self, box: tuple[tuple[int, int], tuple[int, int]], step: int) -> np.ndarray:
        """Every ``step``-th row and column of ``box`` (from its corner), chunk by
        chunk: what a coarse pyramid level takes, without the box in memory."""
        (y0, y1), (x0, x1) = self._clip(box)
        rows, columns = range(y0, y1, step), range(x0, x1, step)
        out = np.empty((len(rows), len(columns)), self.dtype)
        size = self.chunk
        for cy in range(y0 // size, (y1 - 1) // size + 1):
            first_row = max(0, -(-(cy * size - y0) // step))  # the first sampled row in this chunk
            top = y0 + first_row * step
            if top >= min(y1, (cy + 1) * size):
                continue
            rows_here = range(top, min(y1, (cy + 1) * size), step)
            for cx in range(x0 // size, (x1 - 1) // size + 1):
                first_column = max(0, -(-(cx * size - x0) // step))
                left = x0 + first_column * step
                if left >= min(x1, (cx + 1) * size):
                    continue
                columns_here = range(left, min(x1, (cx + 1) * size), step)
                chunk = self._peek(cy, cx)
                out[first_row : first_row + len(rows_here), first_column : first_column + len(columns_here)] = \
                    chunk[top - cy * size :: step, left - cx * size :: step][: len(rows_here), : len(columns_here)]
        return out

    def write(self, box: tuple[tuple[int, int], tuple[int, int]], values: np.ndarray) -> None:
        """Put ``values`` (the box's shape) into the map; the chunks it touches become dirty."""
        (y0, y1), (x0, x1) = self._clip(box)
        values = np.asarray(values)
        if values.shape != (y1 - y0, x1 - x0):
            raise InvalidArgumentError(f"values are {values.shape}, the box {box} is {(y1 - y0, x1 - x0)}")
        for cy, cx, inner, outer in self._chunks(y0, y1, x0, x1):
            chunk = self._chunk(cy, cx)
            chunk[inner] = values[outer]
            self._dirty.add((cy, cx))

    @property
    def dirty(self) -> set[tuple[int, int]]:
        """The chunks changed since the last :meth:`flush`."""
        return set(self._dirty)

    def flush(self) -> int:
        """Write the dirty chunks (an all-unlabelled one removes its file); returns the bytes written."""
        return self.write_snapshot(self.snapshot_dirty())

    def snapshot_dirty(self) -> dict[tuple[int, int], np.ndarray]:
        """Copies of the dirty chunks, which are marked clean: what :meth:`write_snapshot`
        writes, possibly in another thread while editing goes on (the studio's autosave).
        A snapshot that fails to be written is handed back with :meth:`mark_dirty`."""
        snapshot = {key: self._cache[key].copy() for key in sorted(self._dirty)}
        self._dirty.clear()
        return snapshot

    def write_snapshot(self, snapshot: dict[tuple[int, int], np.ndarray]) -> int:
        """Write the chunks of a :meth:`snapshot_dirty`; returns the bytes written."""
        written = 0
        for (cy, cx), chunk in snapshot.items():
            path = self.folder / f"{cy}.{cx}"
            if (chunk == self.unlabelled).all():
                path.unlink(missing_ok=True)
                if self._listing is not None:
                    self._listing.discard((cy, cx))
            else:
                data = zlib.compress(np.ascontiguousarray(chunk).tobytes(), 1)
                atomic_write_bytes(path, data)
                written += len(data)
                if self._listing is not None:
                    self._listing.add((cy, cx))
        return written

    def present_chunks(self) -> np.ndarray:
        """The chunk grid, True where a chunk has a file or unsaved changes (where labels may be)."""
        rows, columns = self.grid
        present = np.zeros((rows, columns), bool)
        self._listing = None  # listed afresh: another writer may have added chunks
        for cy, cx in self._files() | self._dirty:
            if cy < rows and cx < columns:
                present[cy, cx] = True
        return present

    def forget_listing(self) -> None:
        """Another writer (a model run with its own instance) added chunk files: list them again."""
        self._listing = None

    def mark_dirty(self, snapshot: dict[tuple[int, int], np.ndarray]) -> None:
        """A snapshot whose write failed: its chunks are dirty again, kept in memory as they are
        now (or as the snapshot holds them, if they were dropped from memory meanwhile)."""
        for key, chunk in snapshot.items():
            self._cache.setdefault(key, chunk.copy())
            self._dirty.add(key)

    def forget_clean(self) -> None:
        """Drop the cached chunks that are saved (memory follows what is being edited)."""
        for key in [key for key in self._cache if key not in self._dirty]:
            del self._cache[key]

    # -- helpers -------------------------------------------------------------
    def _clip(self, box):
        (y0, y1), (x0, x1) = box
        y0, y1 = max(0, int(y0)), min(self.shape[0], int(y1))
        x0, x1 = max(0, int(x0)), min(self.shape[1], int(x1))
        if y1 <= y0 or x1 <= x0:
            raise InvalidArgumentError(f"the box {box} lies outside the {self.shape[1]} x {self.shape[0]} label map")
        return (y0, y1), (x0, x1)

    def _chunks(self, y0, y1, x0, x1):
        size = self.chunk
        for cy in range(y0 // size, (y1 - 1) // size + 1):
            for cx in range(x0 // size, (x1 - 1) // size + 1):
                top, left = cy * size, cx * size
                ys = slice(max(y0, top), min(y1, top + size))
                xs = slice(max(x0, left), min(x1, left + size))
                inner = (slice(ys.start - top, ys.stop - top), slice(xs.start - left, xs.stop - left))
                outer = (slice(ys.start - y0, ys.stop - y0), slice(xs.start - x0, xs.stop - x0))
                yield cy, cx, inner, outer

    def _chunk(self, cy: int, cx: int) -> np.ndarray:
        """The chunk to edit: read once, then kept (and written by :meth:`flush` when dirty)."""
        key = (cy, cx)
        if key not in self._cache:
            self._cache[key] = self._load(cy, cx).copy()
        return self._cache[key]

    def _files(self) -> set[tuple[int, int]]:
        if self._listing is None:
            listing = set()
            with os.scandir(self.folder) as entries:
                for entry in entries:
                    parts = entry.name.split(".")
                    if len(parts) == 2 and parts[0].isdigit() and parts[1].isdigit():
                        listing.add((int(parts[0]), int(parts[1])))
            self._listing = listing
        return self._listing

    def _peek(self, cy: int, cx: int) -> np.ndarray:
        """The chunk to read, not kept: reading a coarse view of a slide-sized map
        must not fill memory with chunks nobody edits (read only)."""
        cached = self._cache.get((cy, cx))
        return cached if cached is not None else self._load(cy, cx)

    def _load(self, cy: int, cx: int) -> np.ndarray:
        path = self.folder / f"{cy}.{cx}"
        try:
            if (cy, cx) not in self._files():  # a coarse view of a slide asks for thousands: no file calls
                raise FileNotFoundError(path)
            raw = zlib.decompress(path.read_bytes())
        except FileNotFoundError:
            if self._blank is None:
                self._blank = np.full((self.chunk, self.chunk), self.unlabelled, self.dtype)
                self._blank.flags.writeable = False
            return self._blank
        except (OSError, zlib.error) as error:
            raise DataError(f"chunk {cy}.{cx} of the label store cannot be read: {error}", path=path) from error
        try:
            return np.frombuffer(raw, self.dtype).reshape(self.chunk, self.chunk)
        except ValueError as error:
            raise DataError(f"chunk {cy}.{cx} of the label store cannot be read: {error}", path=path) from error
