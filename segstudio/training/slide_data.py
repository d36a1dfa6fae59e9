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

A region's labels are its own: the context around it is unlabelled even
where a neighbouring region has labels, so regions split into training and
validation share no labelled pixel.
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
#: The largest piece a validation region is scored in, in pixels a side.
VALIDATION_PIECE = 1024

Box = tuple[tuple[int, int], tuple[int, int]]


def labelled_regions(store: TiledLabels) -> list[Box]:
    """Level-0 boxes covering the store's labelled chunks: one per group of chunks joined by
    an edge, cut into windows of at most :data:`MAX_REGION_CHUNKS` chunks a side."""
    from scipy import ndimage

    groups, _ = ndimage.label(store.present_chunks())  # edge neighbours only: diagonal labels do not join boxes
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


def label_values(store: TiledLabels) -> list[int]:
    """The label values in the store (the unlabelled value left out), read chunk by chunk."""
    found: set[int] = set()
    size = store.chunk
    for cy, cx in np.argwhere(store.present_chunks()).tolist():
        labels = store.read(((cy * size, (cy + 1) * size), (cx * size, (cx + 1) * size)))
        found.update(int(v) for v in np.unique(labels))
    found.discard(int(store.unlabelled))
    return sorted(found)


def region_name(box: Box) -> str:
    """``"Y0,Y1,X0,X1"``: a region's level-0 box as ``predict-slide --region`` takes it."""
    (y0, y1), (x0, x1) = box
    return f"{y0},{y1},{x0},{x1}"


def check_shapes(slide: Slide, store: TiledLabels) -> None:
    """Raise :class:`DataError`, naming the store and the slide, when their sizes differ."""
    if store.shape != slide.shape:
        raise DataError(f"the label store is {store.shape[1]} x {store.shape[0]} but the slide {slide.path} is "
                        f"{slide.shape[1]} x {slide.shape[0]}: these are not its labels", path=store.folder)


def region_samples(slide: Slide, store: TiledLabels, preprocessing, *, context: int = CONTEXT):
    """``[(region, (image, labels))]``: each labelled region's level-0 box (without its
    context) and its sample (see the module text); regions whose labels were all erased
    are left out."""
    check_shapes(slide, store)
    intensity = slide_intensity(slide, preprocessing)
    found = []
    for region in labelled_regions(store):
        sample = region_sample(slide, store, region, intensity, context=context)
        if sample is not None:
            found.append((region, sample))
    return found


def slide_intensity(slide: Slide, preprocessing):
    """The model's intensity map for the whole slide, fitted once on its overview."""
    from segstudio.preprocess import fit_intensity

    overview, _ = slide.thumbnail(1024)
    return fit_intensity(overview, preprocessing)


def region_sample(slide: Slide, store: TiledLabels, region: Box, intensity, *, context: int = CONTEXT):
    """One labelled region's ``(image, labels)`` with ``context`` pixels of image around it
    (unlabelled there, so a neighbour's labels are not this region's); None when its labels
    were all erased."""
    from segstudio.preprocess import MappedImage

    height, width = slide.shape
    (y0, y1), (x0, x1) = region
    box = ((max(0, y0 - context), min(height, y1 + context)), (max(0, x0 - context), min(width, x1 + context)))
    labels = store.read(box)
    own = np.zeros(labels.shape, bool)
    own[y0 - box[0][0] : y1 - box[0][0], x0 - box[1][0] : x1 - box[1][0]] = True
    labels[~own] = store.unlabelled
    if (labels == store.unlabelled).all():
        return None  # chunks written and erased again
    return MappedImage(slide.read_region(0, box), intensity), labels


def slide_samples(slide: Slide, store: TiledLabels, preprocessing, *, context: int = CONTEXT):
    """``(image, labels)`` samples of the labelled regions of ``slide`` (see the module text).

    Labels outside the labelled pixels (the context, unlabelled parts of a
    chunk) are the store's unlabelled value, which training ignores.
    """
    return [sample for _, sample in region_samples(slide, store, preprocessing, context=context)]


def pieces(sample, side: int = VALIDATION_PIECE) -> list:
    """A region's sample cut into samples at most ``side`` pixels a side that hold labels, so a
    validation region is scored piece by piece (the model never sees a 4096-pixel region whole).
    The pieces keep the region's intensity map."""
    from segstudio.io.masks import unlabelled_of
    from segstudio.preprocess import MappedImage

    image, labels = sample
    intensity = getattr(image, "intensity", None)
    height, width = labels.shape
    tall, wide = -(-height // -(-height // side)), -(-width // -(-width // side))  # even pieces
    out = []
    for top in range(0, height, tall):
        for left in range(0, width, wide):
            part = labels[top : top + tall, left : left + wide]
            if (part == unlabelled_of(part)).all():
                continue
            cut = np.asarray(image)[top : top + tall, left : left + wide]
            out.append((cut if intensity is None else MappedImage(cut, intensity), part))
    return out
