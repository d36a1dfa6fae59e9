"""Window / level: mapping CT numbers or MR intensities to 8-bit grey for display.

The mapping is DICOM's LINEAR VOI function (PS3.3 C.11.2.1.2.1), the one
every DICOM viewer applies for a WindowCenter ``c`` and WindowWidth ``w``
(``w >= 1``), with output range ``0 .. 255``::

    x <= c - 0.5 - (w - 1) / 2   ->  0
    x >  c - 0.5 + (w - 1) / 2   ->  255
    otherwise                    ->  ((x - (c - 0.5)) / (w - 1) + 0.5) * 255

The ``-0.5`` and ``w - 1`` terms make a window of width ``w`` cover exactly
``w`` integer input values: for soft tissue (c 40, w 400) the values
``-160 .. 239`` spread over the grey levels, ``-160`` and below are black and
``240`` and above are white. Results are rounded to the nearest grey level.
For ``w == 1`` the middle branch is empty and the function is a threshold.

Input values are the real-world values (Hounsfield units for CT, after the
modality rescale), which is what :class:`~segstudio.io.volume.Volume` holds.

MONOCHROME1 images (radiographs: CR, DX, some mammography) are meant to be
seen with low values bright. DICOM applies the window to their values as to
any other and inverts its output (PS3.3 C.7.6.3.1.2: the minimum value is
shown white); ``apply_window(..., invert=True)`` does the same, so that one
window (from the file, or dragged by the user) means the same thing for both
interpretations. The stored values are never changed.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from segstudio.errors import InvalidArgumentError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class WindowPreset:
    """A named window: centre (level) and width, in the data's real-world units."""

    name: str
    center: float
    width: float


# Standard CT presets in Hounsfield units. Soft tissue, lung and brain are
# the values found in every radiology reference. Bone windows vary more
# between sources and vendors (W 1000..2500, L 300..600); we use W 1800 / L 400
# as listed by Radiopaedia, "Windowing (CT)"
# (https://radiopaedia.org/articles/windowing-ct), the reference most
# trainees learn from.
CT_SOFT_TISSUE = WindowPreset("Soft tissue", center=40.0, width=400.0)
CT_LUNG = WindowPreset("Lung", center=-600.0, width=1500.0)
CT_BONE = WindowPreset("Bone", center=400.0, width=1800.0)
CT_BRAIN = WindowPreset("Brain", center=40.0, width=80.0)

CT_PRESETS: tuple[WindowPreset, ...] = (CT_SOFT_TISSUE, CT_LUNG, CT_BONE, CT_BRAIN)
"""The CT presets in menu order."""


def preset(name: str) -> WindowPreset:
    """Return the CT preset called *name* (case-insensitive).

    Raises
    ------
    InvalidArgumentError
        No preset has that name.
    """
    for item in CT_PRESETS:
        if item.name.casefold() == name.casefold():
            return item
    names = ", ".join(p.name for p in CT_PRESETS)
    raise InvalidArgumentError(f"unknown window preset {name!r} (known: {names})")


def window_bounds(center: float, width: float) -> tuple[float, float]:
    """``(lower, upper)``: values ``<= lower`` map to 0, values ``> upper`` map to 255."""
    _check_width(width)
    return center - 0.5 - (width - 1.0) / 2.0, center - 0.5 + (width - 1.0) / 2.0


def _check_width(width: float) -> None:
    if not np.isfinite(width) or width < 1.0:
        raise InvalidArgumentError(f"window width must be at least 1 (DICOM PS3.3 C.11.2.1.2), got {width}")


def apply_window(array: np.ndarray, center: float, width: float, *, invert: bool = False) -> np.ndarray:
    """Map values to ``uint8`` grey with the DICOM LINEAR window function.

    Parameters
    ----------
    array:
        Any real-valued array (one slice or a whole volume). NaN maps to 0
        (to 255 when inverted: it is the window's lowest output either way).
    center, width:
        Window centre (level) and width, in the array's units; ``width >= 1``.
    invert:
        Invert the window's output (``255 - grey``), for MONOCHROME1 data
        (see :attr:`segstudio.io.volume.Volume.invert`).

    Returns
    -------
    numpy.ndarray
        ``uint8`` array of the same shape (see the module docstring for the
        formula).

    Raises
    ------
    InvalidArgumentError
        ``width`` is below 1 or not finite, or ``center`` is not finite.
    """
    _check_width(width)
    if not np.isfinite(center):
        raise InvalidArgumentError(f"window centre must be a finite number, got {center}")
    values = np.asarray(array)
    if values.dtype.kind not in "biuf":
        raise InvalidArgumentError(f"cannot window values of type {values.dtype}")
    # float64 keeps large HU offsets exact; the arithmetic cost is the same per slice.
    x = values.astype(np.float64, copy=False)
    lower, upper = window_bounds(center, width)
    if width == 1.0:
        out = np.where(x > lower, 255.0, 0.0)
    else:
        out = ((x - (center - 0.5)) / (width - 1.0) + 0.5) * 255.0
        out = np.where(x <= lower, 0.0, np.where(x > upper, 255.0, out))
    out = np.nan_to_num(out, nan=0.0)
    grey = np.clip(np.rint(out), 0, 255).astype(np.uint8)
    return invert_grey(grey) if invert else grey


def invert_grey(grey: np.ndarray) -> np.ndarray:
    """``255 - grey`` for a ``uint8`` image: how MONOCHROME1 data is shown.

    Raises
    ------
    InvalidArgumentError
        *grey* is not ``uint8``.
    """
    grey = np.asarray(grey)
    if grey.dtype != np.uint8:
        raise InvalidArgumentError(f"only uint8 grey can be inverted, got {grey.dtype}")
    return np.subtract(255, grey, dtype=np.uint8)


def mr_percentile_window(array: np.ndarray, low: float = 0.5, high: float = 99.5) -> tuple[float, float]:
    """A window from intensity percentiles, for MR and other uncalibrated data.

    Values at or below the *low* percentile become black, values at or above
    the *high* percentile white, linearly in between (under
    :func:`apply_window`). Non-finite values are ignored.

    Returns
    -------
    tuple[float, float]
        ``(center, width)``; ``width = hi - lo + 1`` and
        ``center = lo + width / 2``, which is what makes the LINEAR function's
        ``-0.5`` / ``w - 1`` terms put its bounds exactly at ``lo`` and ``hi``.

    Raises
    ------
    InvalidArgumentError
        Percentiles outside ``0 <= low < high <= 100``.
    """
    if not 0.0 <= low < high <= 100.0:
        raise InvalidArgumentError(f"percentiles must satisfy 0 <= low < high <= 100, got {low}, {high}")
    values = np.asarray(array)
    if values.dtype.kind == "f":
        values = values[np.isfinite(values)]
    if values.size == 0:
        return 0.5, 1.0
    lo, hi = (float(v) for v in np.percentile(values, [low, high]))
    width = hi - lo + 1.0
    return lo + width / 2.0, width


def _first(value):
    """The first of a multi-valued DICOM element (pydicom MultiValue, list), or the value itself."""
    if isinstance(value, Sequence) and not isinstance(value, (str, bytes)):
        return value[0] if len(value) else None
    return value


def _first_number(value) -> float | None:
    value = _first(value)
    if value is None or value == "":
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if np.isfinite(number) else None


def window_from_dicom(dataset) -> WindowPreset | None:
    """The window stored in a DICOM dataset, or ``None`` if there is none.

    Reads WindowCenter / WindowWidth (the first value when several are
    given) from the top level, else from the Frame VOI LUT macro of the
    shared or first per-frame functional group (enhanced multi-frame files).
    The name is the first WindowCenterWidthExplanation, or ``"DICOM"``.
    A stored width below 1 is invalid and ignored.
    """
    candidates = [dataset]
    for sequence in ("SharedFunctionalGroupsSequence", "PerFrameFunctionalGroupsSequence"):
        groups = dataset.get(sequence)
        if groups:
            voi = groups[0].get("FrameVOILUTSequence")
            if voi:
                candidates.append(voi[0])
    for item in candidates:
        center = _first_number(item.get("WindowCenter"))
        width = _first_number(item.get("WindowWidth"))
        if center is None or width is None:
            continue
        if width < 1.0:
            log.warning("ignoring the stored window: width %s is below 1", width)
            continue
        name = str(_first(item.get("WindowCenterWidthExplanation")) or "").strip() or "DICOM"
        return WindowPreset(name=name, center=center, width=width)
    return None


def default_window(volume) -> tuple[float, float] | None:
    """The window a volume is first shown (and fed to models) with.

    The file's own window (DICOM WindowCenter/Width), else the CT
    soft-tissue preset for CT, else the 0.5-99.5 percentile range (MR and
    uncalibrated data). ``None`` for colour stacks, shown as they are.
    ``volume`` is a :class:`~segstudio.io.volume.Volume` or a plain array.
    """
    array = volume.array if hasattr(volume, "array") else volume
    if array.ndim != 3:
        return None
    datasets = getattr(volume, "dicom_datasets", None) or []
    if datasets:
        found = window_from_dicom(datasets[len(datasets) // 2])
        if found is not None:
            return found.center, found.width
    if getattr(volume, "modality", None) == "CT":
        return CT_SOFT_TISSUE.center, CT_SOFT_TISSUE.width
    return mr_percentile_window(array)
