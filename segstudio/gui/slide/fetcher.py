"""Display tiles read and coloured in a thread, so the window never waits on a file.

The view says which tiles it wants (:meth:`TileFetcher.want`), nearest its
centre first; a new wish replaces the old one, so tiles of a place the user
panned away from are never read. Each finished tile goes into the shared
:class:`~segstudio.io.slide_tiles.TileCache` and ``ready`` is emitted; the
view repaints. A label tile whose labels changed under it while it was
being read (``changed_since(key, stamp)``) is not kept but asked for again,
so a brush dab never disappears under a tile read a moment before it.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Hashable

import numpy as np
from PySide6.QtCore import QObject, Signal

from segstudio.io.slide_tiles import TileCache

log = logging.getLogger(__name__)


class TileFetcher(QObject):
    """One reading thread for a view (tifffile handles are not shared between threads)."""

    ready = Signal(object)  # the key of a tile now in the cache
    failed = Signal(object, object)  # key, error: shown once, the tile is not asked for again

    def __init__(self, render: Callable[[Hashable], np.ndarray], cache: TileCache,
                 stamp: Callable[[Hashable], int], changed_since: Callable[[Hashable, int], bool],
                 parent: QObject | None = None) -> None:
        super().__init__(parent)
        self._render, self._cache, self._stamp, self._changed_since = render, cache, stamp, changed_since
        self._wanted: list[Hashable] = []
        self._failed: set[Hashable] = set()
        self._condition = threading.Condition()
        self._stopping = False
        self.busy_key: Hashable | None = None
        self._thread = threading.Thread(target=self._run, name="slide tiles", daemon=True)
        self._thread.start()

    def want(self, keys: list[Hashable]) -> None:
        """Fetch these tiles (in this order), and no others still waiting."""
        with self._condition:
            self._wanted = [key for key in keys if key not in self._failed and key not in self._cache]
            self._condition.notify()

    @property
    def idle(self) -> bool:
        with self._condition:
            return not self._wanted and self.busy_key is None

    def stop(self, timeout: float = 5.0) -> None:
        with self._condition:
            self._stopping = True
            self._wanted = []
            self._condition.notify()
        self._thread.join(timeout)

    def _run(self) -> None:
        while True:
            with self._condition:
                while not self._wanted and not self._stopping:
                    self._condition.wait()
                if self._stopping:
                    return
                key = self._wanted.pop(0)
                self.busy_key = key
            try:
                if key in self._cache:
                    continue
                stamp = self._stamp(key)
                value = self._render(key)
                self._cache.put(key, value)
                # its labels changed while it was read (checked after the put: a change from now on
                # patches the cached tile in place): read it again
                if key[0] != "image" and self._changed_since(key, stamp):
                    self._cache.discard(lambda cached: cached == key)
                    with self._condition:
                        if not self._stopping:
                            self._wanted.append(key)
                    continue
                self.ready.emit(key)
            except Exception as error:  # a damaged tile: named once, the rest of the slide still shows
                log.warning("slide tile %s cannot be read: %s", key, error)
                with self._condition:
                    self._failed.add(key)
                self.failed.emit(key, error)
            finally:
                with self._condition:
                    self.busy_key = None
