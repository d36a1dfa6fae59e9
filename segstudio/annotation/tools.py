"""Pure array functions behind the painting tools: brush, fill, magic wand, polygon.

Every tool answers the same question, "which pixels?", as ``(region, mask)``:
``region`` is a ``(slice_y, slice_x)`` bounding box clipped to the image and
``mask`` a boolean array of the region's shape, True where the tool acts. The
tools never write labels; :class:`~segstudio.annotation.document.Document`
does, so that every change goes through its history and its listeners, and
the canvas repaints only ``region``. A tool whose footprint misses the image
returns ``None``.

Positions are continuous image coordinates ``(y, x)``, the convention of a
canvas that draws pixel ``(row, col)`` as the unit square from ``(row, col)``
to ``(row + 1, col + 1)``: that pixel's centre is ``(row + 0.5, col + 0.5)``,
and a mouse position maps to the tools without any offset. Distances and
"inside" are judged at pixel centres.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence

import numpy as np

from segstudio.errors import InvalidArgumentError

log = logging.getLogger(__name__)

Region = tuple[slice, slice]
ToolResult = tuple[Region, np.ndarray]

# A dab's radius is compared with a tiny slack so that a radius of exactly 3
# includes the pixels at distance exactly 3 despite float round-off.
_EPS = 1e-9


def _check_shape(shape: Sequence[int]) -> tuple[int, int]:
    if len(shape) < 2:
        raise InvalidArgumentError(f"an image shape needs height and width, got {tuple(shape)}")
    height, width = int(shape[0]), int(shape[1])
    if height <= 0 or width <= 0:
        raise InvalidArgumentError(f"image shape must be positive, got {height} x {width}")
    return height, width


def _check_radius(radius: float) -> float:
    radius = float(radius)
    if not math.isfinite(radius) or radius <= 0:
        raise InvalidArgumentError(f"brush radius must be a positive number, got {radius}")
    return radius


def _pixel_at(y: float, x: float) -> tuple[int, int]:
    """The pixel whose square holds the point (y, x)."""
    return math.floor(y), math.floor(x)


def _capsule(
    p0: tuple[float, float], p1: tuple[float, float], radius: float, shape: Sequence[int]
) -> ToolResult | None:
    """Pixels whose centre lies within *radius* of the segment p0-p1 (a disk when p0 == p1)."""
    height, width = _check_shape(shape)
    radius = _check_radius(radius)
    if not all(math.isfinite(float(v)) for v in (*p0, *p1)):
        raise InvalidArgumentError(f"brush position must be finite, got {p0} -> {p1}")
    # A brush smaller than a pixel still paints the pixel under the cursor,
    # so the box always covers the pixels under the two end points.
    nearest = {_pixel_at(float(p0[0]), float(p0[1])), _pixel_at(float(p1[0]), float(p1[1]))}
    # From here on in index units, where pixel (row, col) is centred at (row, col).
    y0, x0 = float(p0[0]) - 0.5, float(p0[1]) - 0.5
    y1, x1 = float(p1[0]) - 0.5, float(p1[1]) - 0.5
    near_ys = [y for y, _ in nearest]
    near_xs = [x for _, x in nearest]
    top = max(0, min(math.ceil(min(y0, y1) - radius - _EPS), *near_ys))
    bottom = min(height, max(math.floor(max(y0, y1) + radius + _EPS), *near_ys) + 1)
    left = max(0, min(math.ceil(min(x0, x1) - radius - _EPS), *near_xs))
    right = min(width, max(math.floor(max(x0, x1) + radius + _EPS), *near_xs) + 1)
    if top >= bottom or left >= right:
        return None
    ys = np.arange(top, bottom, dtype=np.float64)[:, None] - y0
    xs = np.arange(left, right, dtype=np.float64)[None, :] - x0
    dy, dx = y1 - y0, x1 - x0
    length2 = dy * dy + dx * dx
    if length2 > 0:
        # Distance to the segment: project onto it, clamp to the end points.
        t = np.clip((ys * dy + xs * dx) / length2, 0.0, 1.0)
        ry = ys - t * dy
        rx = xs - t * dx
        mask = ry * ry + rx * rx <= radius * radius + _EPS
    else:
        mask = ys * ys + xs * xs <= radius * radius + _EPS
    for y, x in nearest:
        if top <= y < bottom and left <= x < right:
            mask[y - top, x - left] = True
    if not mask.any():
        return None
    return (slice(top, bottom), slice(left, right)), mask


def disk(cy: float, cx: float, radius: float, shape: Sequence[int]) -> ToolResult | None:
    """A round brush dab.

    Parameters
    ----------
    cy, cx:
        Centre of the dab (sub-pixel positions are fine).
    radius:
        Pixels whose centre lies within this distance are painted; 0.5 at a
        pixel's centre paints that one pixel. The pixel under the centre is
        always included.
    shape:
        ``(height, width, ...)`` of the image.

    Returns
    -------
    tuple or None
        ``(region, mask)``, or ``None`` when the dab misses the image.
    """
    return _capsule((cy, cx), (cy, cx), radius, shape)


def stroke_segment(
    p0: tuple[float, float], p1: tuple[float, float], radius: float, shape: Sequence[int]
) -> ToolResult | None:
    """The capsule swept by a round brush moving from *p0* to *p1*.

    Painting this between consecutive mouse positions leaves no gaps however
    fast the mouse moves, unlike one dab per mouse event.

    Parameters
    ----------
    p0, p1:
        Start and end positions as ``(y, x)``.
    radius:
        Brush radius, as for :func:`disk`.
    shape:
        ``(height, width, ...)`` of the image.

    Returns
    -------
    tuple or None
        ``(region, mask)``, or ``None`` when the capsule misses the image.
    """
    return _capsule(p0, p1, radius, shape)


def flood_fill(labels: np.ndarray, seed: tuple[int, int], *, connectivity: int = 4) -> ToolResult | None:
    """The connected region of pixels that share the seed pixel's label.

    Parameters
    ----------
    labels:
        2-D label map.
    seed:
        ``(row, col)`` of the clicked pixel; a fractional position means the
        pixel whose square holds it (``floor``).
    connectivity:
        4 (edges only) or 8 (edges and corners).

    Returns
    -------
    tuple or None
        ``(region, mask)`` with region the bounding box of the connected
        component, or ``None`` when the seed lies outside the image.
    """
    labels = np.asarray(labels)
    if labels.ndim != 2:
        raise InvalidArgumentError(f"flood fill needs a 2-D label map, got shape {labels.shape}")
    if connectivity not in (4, 8):
        raise InvalidArgumentError(f"connectivity must be 4 or 8, got {connectivity}")
    height, width = labels.shape
    row, col = _pixel_at(float(seed[0]), float(seed[1]))
    if not (0 <= row < height and 0 <= col < width):
        return None
    if labels.dtype != np.uint8:
        # OpenCV fills 8-bit images only: fill the "same label as the seed"
        # mask instead (a uint16 map: 30 ms at 8192 x 8192, where
        # scipy.ndimage.label over the whole map took 840 ms)
        labels = (labels == labels[row, col]).view(np.uint8)
    return _flood_fill_cv2(labels, row, col, connectivity)


def _flood_fill_cv2(labels: np.ndarray, row: int, col: int, connectivity: int) -> ToolResult:
    import cv2

    height, width = labels.shape
    # OpenCV wants a mask one pixel larger on every side; it is filled with 1
    # where the component lies and the image itself is left untouched.
    fill_mask = np.zeros((height + 2, width + 2), np.uint8)
    flags = connectivity | cv2.FLOODFILL_MASK_ONLY | cv2.FLOODFILL_FIXED_RANGE | (1 << 8)
    _, _, _, (x, y, w, h) = cv2.floodFill(
        np.ascontiguousarray(labels), fill_mask, (col, row), 0, 0, 0, flags
    )
    mask = fill_mask[1 + y : 1 + y + h, 1 + x : 1 + x + w].astype(bool)
    return (slice(y, y + h), slice(x, x + w)), mask


def magic_wand(
    image: np.ndarray, seed: tuple[float, float], tolerance: float, *, connectivity: int = 4
) -> ToolResult | None:
    """The connected region of pixels whose intensity is close to the seed pixel's.

    The magic wand of QuPath, ilastik or GIMP: a pixel belongs when, in every
    channel, ``|value - seed value| <= tolerance`` (compared with the seed,
    not with its neighbours, so the region cannot creep along a slow
    gradient) and it is connected to the seed through such pixels. NaN
    pixels never belong.

    Parameters
    ----------
    image:
        2-D plane ``(H, W)`` or ``(H, W, C)`` of any real dtype (uint8,
        uint16, signed CT values, float); the raw values are compared.
    seed:
        ``(row, col)`` of the clicked pixel; a fractional position means the
        pixel whose square holds it (``floor``).
    tolerance:
        Largest difference from the seed's value, in the image's units.
    connectivity:
        4 (edges only) or 8 (edges and corners).

    Returns
    -------
    tuple or None
        ``(region, mask)`` with region the bounding box of the connected
        region, or ``None`` when the seed lies outside the image or is NaN.

    Raises
    ------
    InvalidArgumentError
        A negative or non-finite tolerance, a bad connectivity, or an image
        that is not a real-valued 2-D plane.
    """
    image = np.asarray(image)
    if image.ndim not in (2, 3) or 0 in image.shape:
        raise InvalidArgumentError(f"the magic wand needs an H x W (x C) plane, got shape {image.shape}")
    if image.dtype == bool:
        image = image.view(np.uint8)
    if not (np.issubdtype(image.dtype, np.integer) or np.issubdtype(image.dtype, np.floating)):
        raise InvalidArgumentError(f"the magic wand needs real pixel values, got {image.dtype}")
    try:
        tolerance = float(tolerance)
    except (TypeError, ValueError):
        raise InvalidArgumentError(f"tolerance must be a number, got {tolerance!r}") from None
    if not math.isfinite(tolerance) or tolerance < 0:
        raise InvalidArgumentError(f"tolerance must be a finite number >= 0, got {tolerance}")
    if connectivity not in (4, 8):
        raise InvalidArgumentError(f"connectivity must be 4 or 8, got {connectivity}")
    height, width = image.shape[:2]
    row, col = _pixel_at(float(seed[0]), float(seed[1]))
    if not (0 <= row < height and 0 <= col < width):
        return None
    channels = 1 if image.ndim == 2 else image.shape[2]
    seed_values = image[row, col].reshape(channels)
    bounds = [_tolerance_bounds(image.dtype, seed_values[c], tolerance) for c in range(channels)]
    if any(low is None for low, _ in bounds):
        return None  # a NaN seed: no pixel is within any tolerance of it
    inside = _in_range(image, bounds)
    if not inside[row, col]:
        return None  # an infinite seed is no distance from anything, itself included
    return _flood_fill_cv2(inside, row, col, connectivity)


# what cv2.inRange takes (with up to 4 channels and scalar bounds)
_CV2_IN_RANGE_TYPES = tuple(np.dtype(t) for t in (np.uint8, np.int8, np.uint16, np.int16, np.int32,
                                                  np.float32, np.float64))


def _in_range(image: np.ndarray, bounds: list[tuple]) -> np.ndarray:
    """uint8 map, nonzero where every channel lies within its (low, high) bounds (inclusive)."""
    channels = len(bounds)
    if image.dtype in _CV2_IN_RANGE_TYPES and channels <= 4:
        import cv2

        # a single pass over all channels, vectorised and threaded: 2 ms for a
        # 4096 x 4096 uint16 plane, 11 ms in RGB, where numpy's per-channel
        # comparisons of the interleaved channels took 140 ms; the bounds are
        # values of the image's type, so OpenCV's conversion keeps them exact
        low = tuple(float(b[0]) for b in bounds)
        high = tuple(float(b[1]) for b in bounds)
        if channels == 1:
            low, high = low[0], high[0]
        return cv2.inRange(np.ascontiguousarray(image), low, high)
    planes = image[..., np.newaxis] if image.ndim == 2 else image
    inside = np.ones(image.shape[:2], bool)
    for channel, (low, high) in enumerate(bounds):
        values = planes[..., channel]
        inside &= values >= low
        inside &= values <= high
    return inside.view(np.uint8)


def _tolerance_bounds(dtype: np.dtype, seed_value, tolerance: float) -> tuple:
    """The values ``v`` of *dtype* with ``|v - seed_value| <= tolerance``, as
    inclusive bounds of that type (``None, None`` for a NaN seed)."""
    if np.issubdtype(dtype, np.integer):
        # integers: |v - s| <= t exactly when |v - s| <= floor(t); the bounds
        # are clipped to the type so they compare without overflow
        info = np.iinfo(dtype)
        seed_value, step = int(seed_value), math.floor(tolerance)
        return dtype.type(max(info.min, seed_value - step)), dtype.type(min(info.max, seed_value + step))
    seed_value = float(seed_value)
    if math.isnan(seed_value):
        return None, None
    # kept finite, so that an infinite pixel is never within a finite tolerance
    largest = float(np.finfo(dtype).max)
    low = min(max(seed_value - tolerance, -largest), largest)
    high = max(min(seed_value + tolerance, largest), -largest)
    if dtype.itemsize >= 8:
        return dtype.type(low), dtype.type(high)
    # the nearest values of the image's type inside the float64 bounds, so
    # that comparing in that type gives what comparing in float64 would
    # (compared as Python floats: numpy would compare a float32 in float32)
    typed_low, typed_high = dtype.type(low), dtype.type(high)
    if float(typed_low) < low:
        typed_low = np.nextafter(typed_low, dtype.type(np.inf))
    if float(typed_high) > high:
        typed_high = np.nextafter(typed_high, dtype.type(-np.inf))
    return typed_low, typed_high


def intensity_range(image: np.ndarray) -> float:
    """The spread of an image's values, as a scale for the magic wand's tolerance.

    255 for 8-bit images (their full scale); otherwise the finite data range
    ``max - min`` over the whole array (a uint16 image often holds 12-bit
    data, a CT volume -1024..3071 HU), 0 for a constant or all-NaN image.
    """
    image = np.asarray(image)
    if image.dtype in (np.uint8, np.int8, bool):
        return 255.0
    if np.issubdtype(image.dtype, np.integer):
        return float(int(image.max()) - int(image.min())) if image.size else 0.0
    if not np.issubdtype(image.dtype, np.floating) or not image.size:
        return 0.0
    low, high = float(image.min()), float(image.max())
    if not (math.isfinite(low) and math.isfinite(high)):  # NaN or infinite pixels: left out
        values = image[np.isfinite(image)]
        if not values.size:
            return 0.0
        low, high = float(values.min()), float(values.max())
    return high - low


def default_tolerance(image: np.ndarray) -> float:
    """A starting magic-wand tolerance: about 10 % of :func:`intensity_range`,
    kept to two significant digits (25 for an 8-bit image, 400 for
    -1024..3071 HU); 0 for a constant image."""
    tenth = intensity_range(image) / 10
    if not math.isfinite(tenth) or tenth <= 0:
        return 0.0
    exponent = math.floor(math.log10(tenth)) - 1
    # rounded down (25.5 -> 25), with a little slack for 0.3 / 0.01 = 29.999...
    digits = math.floor(tenth / 10.0**exponent + 1e-9)
    return round(digits * 10.0**exponent, max(0, -exponent))


def polygon(points: Sequence[tuple[float, float]], shape: Sequence[int]) -> ToolResult | None:
    """The pixels inside a closed polygon.

    A pixel is inside when its centre is (even-odd rule, so a lasso that
    crosses itself leaves the doubly enclosed parts empty); a centre lying
    exactly on a left or top edge counts as inside, on a right or bottom edge
    as outside, so that two polygons sharing an edge never overlap. The
    filled pixel count is therefore close to the polygon's area.

    Parameters
    ----------
    points:
        Vertices as ``(y, x)``; the last connects back to the first. Vertices
        on pixel corners, e.g. ``(10, 10), (10, 20), (20, 20), (20, 10)``,
        fill exactly the pixels rows 10..19, columns 10..19.
    shape:
        ``(height, width, ...)`` of the image.

    Returns
    -------
    tuple or None
        ``(region, mask)``, or ``None`` for fewer than three points or a
        polygon that holds no pixel centre inside the image.
    """
    height, width = _check_shape(shape)
    if len(points) < 3:
        return None
    try:
        # Shifted to index units, where pixel (row, col) is centred at (row, col).
        vertices = np.asarray(points, dtype=np.float64) - 0.5
    except (TypeError, ValueError):
        raise InvalidArgumentError("polygon points must be (y, x) pairs of numbers") from None
    if vertices.ndim != 2 or vertices.shape[1] != 2:
        raise InvalidArgumentError(f"polygon points must be (y, x) pairs, got shape {vertices.shape}")
    if not np.isfinite(vertices).all():
        raise InvalidArgumentError("polygon points must be finite")
    ys, xs = vertices[:, 0], vertices[:, 1]
    top = max(0, math.ceil(ys.min()))
    bottom = min(height, math.ceil(ys.max()))
    left = max(0, math.ceil(xs.min()))
    right = min(width, math.ceil(xs.max()))
    if top >= bottom or left >= right:
        return None

    # Where each edge crosses each pixel-centre row. Rows are taken half-open
    # (y_low <= row < y_high) so a vertex on a row is counted once.
    ya, xa = ys, xs
    yb, xb = np.roll(ys, -1), np.roll(xs, -1)
    y_low, y_high = np.minimum(ya, yb), np.maximum(ya, yb)
    first = np.maximum(np.ceil(y_low), top).astype(np.int64)
    stop = np.minimum(np.ceil(y_high), bottom).astype(np.int64)
    counts = np.maximum(stop - first, 0)
    counts[ya == yb] = 0
    total = int(counts.sum())
    if total == 0:
        return None
    edge = np.repeat(np.arange(len(ys)), counts)
    offsets = np.arange(total) - np.repeat(np.cumsum(counts) - counts, counts)
    rows = first[edge] + offsets
    x_cross = xa[edge] + (rows - ya[edge]) * (xb[edge] - xa[edge]) / (yb[edge] - ya[edge])

    # Each crossing toggles inside/outside from the first pixel centre at or
    # right of it; a cumulative XOR along each row then marks the inside.
    region_w = right - left
    cols = np.clip(np.ceil(x_cross).astype(np.int64) - left, 0, region_w)
    toggles = np.zeros((bottom - top, region_w + 1), np.uint8)
    np.bitwise_xor.at(toggles, (rows - top, cols), 1)
    mask = np.bitwise_xor.accumulate(toggles, axis=1)[:, :region_w].astype(bool)
    if not mask.any():
        return None
    return (slice(top, bottom), slice(left, right)), mask


def only_unlabelled(found: ToolResult | None, labels: np.ndarray, unlabelled: int) -> ToolResult | None:
    """Narrow a tool's footprint to the pixels of *labels* that are still unlabelled.

    The "paint only unlabelled pixels" option: a brush, fill or polygon then
    adds labels without overwriting any. Applied to the mask before the
    document sees it, so a stroke stays one undo step.

    Parameters
    ----------
    found:
        ``(region, mask)`` from a tool, or ``None``.
    labels:
        The 2-D label map the region indexes.
    unlabelled:
        The value of unlabelled pixels (255 for uint8 maps, 65535 for uint16).

    Returns
    -------
    tuple or None
        ``(region, mask)`` with the mask narrowed, or ``None`` when no
        unlabelled pixel is left in it.
    """
    if found is None:
        return None
    region, mask = found
    mask = mask & (np.asarray(labels)[region] == unlabelled)
    if not mask.any():
        return None
    return region, mask
