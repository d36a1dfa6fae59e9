"""Training samples from the labelled regions of a whole slide, never the whole slide.

A slide's labels live in a :class:`~segstudio.io.tiled_labels.TiledLabels`
store, where only chunks holding labels exist on disk. The labelled chunks are
grouped into rectangles (connected groups on the chunk grid); each rectangle,
grown by some context, is read from the slide's full-resolution level and
becomes one ``(image, labels)`` sample for
:class:`~segstudio.training.data.SegmentationDataset`, which draws its crops
by labelled pixels as it does for any image. Memory follows the labelled
area, not the slide. Every region's pixels carry the slide's intensity map
(fitted once on a coarse level), so a crop is scaled as the model sees it
when it predicts the slide.
"""

from __future__ import annotations

import numpy as np

from segstudio.errors import DataError
from segstudio.io.slide import Slide
from segstudio.io.tiled_labels import TiledLabels

#: Level-0 pixels of image context read around each labelled region.
CONTEXT = 64
#: The largest region read at once, in chunks a side (4096 px with 512 px chunks).
MAX_REGION_CHUNKS = 8


def labelled_regions(store: TiledLabels) -> list[tuple[tuple[int, int], tuple[int, int]]]:
    """Level-0 boxes covering the store's labelled chunks: one per group of chunks joined by
    an edge, cut into windows of at most :data:`MAX_REGION_CHUNKS` chunks a side."""
    from scipy import ndimage

    rows, columns = store.grid
    present = np.zeros((rows, columns), bool)
    for path in store.folder.iterdir():
        parts = path.name.split(".")
        if len(parts) == 2 and parts[0].isdigit() and parts[1].isdigit():
            cy, cx = int(parts[0]), int(parts[1])
            if cy < rows and cx < columns:
                present[cy, cx] = True
    for cy, cx in store.dirty:
        present[cy, cx] = True
    groups, _ = ndimage.label(present)  # edge neighbours only: diagonal labels do not join boxes
    boxes = []
    size = MAX_REGION_CHUNKS
    for number, (ys, xs) in enumerate(ndimage.find_objects(groups), start=1):
        # a long or L-shaped group is cut into windows of at most size x size chunks, so that
        # no region read approaches the slide's size; windows without its chunks are dropped
        for cy in range(ys.start, ys.stop, size):
            for cx in range(xs.start, xs.stop, size):
                window = groups[cy : min(ys.stop, cy + size), cx : min(xs.stop, cx + size)] == number
                if not window.any():
                    continue
                rows, columns = np.nonzero(window.any(axis=1))[0], np.nonzero(window.any(axis=0))[0]
                top, bottom = cy + rows[0], cy + rows[-1] + 1
                left, right = cx + columns[0], cx + columns[-1] + 1
                boxes.append(((top * store.chunk, min(store.shape[0], bottom * store.chunk)),
                              (left * store.chunk, min(store.shape[1], right * store.chunk))))
    return boxes


def slide_samples(slide: Slide, store: TiledLabels, preprocessing, *, context: int = CONTEXT):
    """``(image, labels)`` samples of the labelled regions of ``slide`` (see the module text).

    Labels outside the labelled pixels (the context, unlabelled parts of a
    chunk) are the store's unlabelled value, which training ignores.
    """
    from segstudio.preprocess import MappedImage, fit_intensity

    if store.shape != slide.shape:
        raise DataError(f"the label store is {store.shape[1]} x {store.shape[0]}, the slide "
                        f"{slide.shape[1]} x {slide.shape[0]}", path=store.folder)
    overview, _ = slide.thumbnail(1024)
    intensity = fit_intensity(overview, preprocessing)
    height, width = slide.shape
    samples = []
    for (y0, y1), (x0, x1) in labelled_regions(store):
        box = ((max(0, y0 - context), min(height, y1 + context)), (max(0, x0 - context), min(width, x1 + context)))
        labels = store.read(box)
        store.forget_clean()
        if (labels == store.unlabelled).all():
            continue  # chunks written and erased again
        samples.append((MappedImage(slide.read_region(0, box), intensity), labels))
    return samples
