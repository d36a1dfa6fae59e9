"""Where DICOM slices are: sorting along the slice normal, the LPS affine, rescale
and Modality LUT, and the header values they rest on, checked.

Split from :mod:`segstudio.io.dicom` (which reads the files) so that each
stays small. Everything here works on pydicom datasets already read.
"""

from __future__ import annotations

import collections
import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from segstudio.errors import UnreadableInputError

# Geometry tolerances: DICOM stores decimals as text, so equal values written
# by different software differ in the last digits.
_ORIENTATION_TOL = 1e-4
_SPACING_REL_TOL = 1e-3
_SAME_POSITION_MM = 1e-3
_UNEVEN_REL_TOL = 0.01


def header_value(item, keyword: str, where: Path | None):
    """``item.get(keyword)``, with a value pydicom cannot convert (a RescaleSlope
    of ``"abc"``, an IS or DS that is not a number) reported as
    UnreadableInputError naming *where* and the attribute."""
    try:
        return item.get(keyword)
    except (ValueError, TypeError, OverflowError) as exc:
        raise UnreadableInputError(f"{keyword} holds a value that is not valid ({_first_line(exc)})",
                                   path=where) from None


def _first_line(exc: BaseException) -> str:
    lines = str(exc).strip().splitlines()
    return (lines[0] if lines else type(exc).__name__)[:200]


def header_number(item, keyword: str, default: float | None, where: Path | None) -> float | None:
    """A single number of the header, *default* when absent or empty.

    Raises
    ------
    UnreadableInputError
        The value is not a finite number.
    """
    value = header_value(item, keyword, where) if item is not None else None
    return _as_number(value, keyword, default, where)


def _as_number(value, what: str, default: float | None, where: Path | None) -> float | None:
    """*value* (a header value) as a finite float; *default* when absent or empty."""
    if value is None or value == "":
        return default
    try:
        number = float(value)
    except (TypeError, ValueError, OverflowError):
        raise UnreadableInputError(f"{what} is not a number ({value!r})", path=where) from None
    if not np.isfinite(number):
        raise UnreadableInputError(f"{what} is not a finite number ({value!r})", path=where)
    return number


def stated_spacing(ds, where: Path | None) -> float | None:
    """SpacingBetweenSlices, else SliceThickness, when positive; None otherwise."""
    for keyword in ("SpacingBetweenSlices", "SliceThickness"):
        try:
            value = header_number(ds, keyword, None, where)
        except UnreadableInputError:
            value = None  # only a fallback for a spacing the positions cannot give
        if value is not None and value > 0:
            return value
    return None


def _floats(value, count: int) -> np.ndarray | None:
    if value is None:
        return None
    try:
        out = np.array([float(v) for v in value], dtype=np.float64)
    except (TypeError, ValueError):
        return None
    return out if out.shape == (count,) and np.all(np.isfinite(out)) else None


def _orientation(value) -> tuple[np.ndarray, np.ndarray] | None:
    iop = _floats(value, 6)
    if iop is None:
        return None
    row, col = iop[:3], iop[3:]
    if np.linalg.norm(row) < 1e-6 or np.linalg.norm(col) < 1e-6:
        return None
    return row / np.linalg.norm(row), col / np.linalg.norm(col)


@dataclass
class Plane:
    """Where one 2-D frame sits, and how its stored values become real values.

    ``spacing_problem`` says why a PixelSpacing present in the file was not
    usable (zero, negative); ``pixel_spacing`` is then None.
    """

    position: np.ndarray | None
    orientation: tuple[np.ndarray, np.ndarray] | None
    pixel_spacing: np.ndarray | None
    slope: float
    intercept: float
    spacing_problem: str | None = None


def _rescale(item, where: Path | None) -> tuple[float, float]:
    if item is not None and "ModalityLUTSequence" in item:
        return 1.0, 0.0  # the LUT replaces the rescale (PS3.3 C.11.1); the reader applied it
    return (header_number(item, "RescaleSlope", 1.0, where),  # type: ignore[return-value]
            header_number(item, "RescaleIntercept", 0.0, where))


def _pixel_spacing(value) -> tuple[np.ndarray | None, str | None]:
    """PixelSpacing as (row, column) mm, or None and why when it is there but unusable."""
    spacing = _floats(value, 2)
    if value is None:
        return None, None
    if spacing is None:
        return None, f"PixelSpacing {_text(value)} is not two numbers"
    if np.any(spacing <= 0):
        return None, f"PixelSpacing {_text(value)} is not a valid pixel size (it must be above 0)"
    return spacing, None


def _text(value) -> str:
    try:
        return "\\".join(str(v) for v in value)
    except TypeError:
        return repr(value)


def plane_of(ds, where: Path | None = None) -> Plane:
    """The plane of a single-frame dataset, from its top-level attributes.

    Raises
    ------
    UnreadableInputError
        A rescale or geometry attribute holds a value that is not a number
        (naming *where*).
    """
    slope, intercept = _rescale(ds, where)
    spacing, problem = _pixel_spacing(header_value(ds, "PixelSpacing", where))
    return Plane(
        position=_floats(header_value(ds, "ImagePositionPatient", where), 3),
        orientation=_orientation(header_value(ds, "ImageOrientationPatient", where)),
        pixel_spacing=spacing,
        slope=slope,
        intercept=intercept,
        spacing_problem=problem,
    )


def _functional(groups: list, name: str, attr: str, where: Path | None = None):
    """First value of ``attr`` inside the ``name`` macro of the given functional groups."""
    for group in groups:
        if group is None or name not in group or not group[name].value:
            continue
        item = group[name].value[0]
        if attr in item:
            try:
                return item[attr].value
            except (ValueError, TypeError, OverflowError) as exc:
                raise UnreadableInputError(f"{attr} in {name} holds a value that is not valid "
                                           f"({_first_line(exc)})", path=where) from None
    return None


def _functional_number(groups: list, name: str, attr: str, fallback: float, where: Path | None) -> float:
    return _as_number(_functional(groups, name, attr, where), f"{attr} in {name}", fallback, where)


def frame_count(ds, where: Path | None) -> int:
    """NumberOfFrames (1 when absent or empty).

    Raises
    ------
    UnreadableInputError
        Not a whole number of at least 1.
    """
    value = header_value(ds, "NumberOfFrames", where)
    if value is None or value == "":
        return 1
    try:
        count = int(value)
    except (TypeError, ValueError, OverflowError):
        raise UnreadableInputError(f"NumberOfFrames is not a whole number ({value!r})", path=where) from None
    if count == 0:
        return 1  # some writers put 0 for a single frame
    if count < 0:
        raise UnreadableInputError(f"NumberOfFrames is {count}; it must be at least 1", path=where)
    return count


def frame_planes(ds, where: Path | None = None) -> tuple[list[Plane], float | None]:
    """Planes of every frame of a multi-frame dataset, and its slice spacing if stated.

    Raises
    ------
    UnreadableInputError
        A rescale or geometry attribute holds a value that is not a number.
    """
    frames = frame_count(ds, where)
    shared = ds.SharedFunctionalGroupsSequence[0] if ds.get("SharedFunctionalGroupsSequence") else None
    per_frame = list(ds.get("PerFrameFunctionalGroupsSequence") or [])
    if per_frame and len(per_frame) != frames:
        per_frame = []
    top = plane_of(ds, where)
    try:
        spacing = (_functional_number([shared], "PixelMeasuresSequence", "SpacingBetweenSlices", 0.0, where)
                   or header_number(ds, "SpacingBetweenSlices", 0.0, where))
    except UnreadableInputError:
        spacing = 0.0  # only a fallback for positions the frames do not give
    spacing = spacing if spacing and spacing > 0 else None
    planes = []

    def either(value, fallback):
        return fallback if value is None else value

    for index in range(frames):
        groups = [per_frame[index] if per_frame else None, shared]
        raw_spacing = _functional(groups, "PixelMeasuresSequence", "PixelSpacing", where)
        pixel_spacing, problem = (top.pixel_spacing, top.spacing_problem) if raw_spacing is None else (
            _pixel_spacing(raw_spacing))
        planes.append(Plane(
            position=_floats(_functional(groups, "PlanePositionSequence", "ImagePositionPatient", where), 3),
            orientation=either(_orientation(_functional(groups, "PlaneOrientationSequence",
                                                        "ImageOrientationPatient", where)), top.orientation),
            pixel_spacing=pixel_spacing,
            slope=_functional_number(groups, "PixelValueTransformationSequence", "RescaleSlope", top.slope, where),
            intercept=_functional_number(groups, "PixelValueTransformationSequence", "RescaleIntercept",
                                         top.intercept, where),
            spacing_problem=problem,
        ))
    if all(p.position is not None for p in planes):
        # Identical positions (a cine or time series) stay identical: sorting
        # then reports them rather than inventing a slice spacing.
        return planes, spacing
    # No per-frame positions: derive them from one origin and an offset per frame.
    origin = next((p.position for p in planes if p.position is not None), top.position)
    if origin is None:
        return planes, spacing
    orientation = planes[0].orientation or (np.array([1.0, 0, 0]), np.array([0, 1.0, 0]))
    normal = np.cross(*orientation)
    offsets = _floats(header_value(ds, "GridFrameOffsetVector", where), frames)  # RT Dose
    if offsets is not None:
        steps = offsets - offsets[0]
    else:
        steps = np.arange(frames) * (spacing if spacing else 1.0)
    for plane, step in zip(planes, steps):
        plane.position = origin + step * normal
    return planes, spacing


def check_consistent(planes: list[Plane], shapes: list[tuple], paths: list[Path], what: str) -> None:
    """Raise naming the odd file when slices differ in size, orientation or pixel spacing."""

    def odd_one(values, same) -> int | None:
        reference = collections.Counter(values).most_common(1)[0][0] if values else None
        for index, value in enumerate(values):
            if not same(value, reference):
                return index
        return None

    index = odd_one(shapes, lambda a, b: a == b)
    if index is not None:
        common = collections.Counter(shapes).most_common(1)[0][0]
        raise UnreadableInputError(
            f"slice is {shapes[index][0]} x {shapes[index][1]} pixels but the rest of {what} is "
            f"{common[0]} x {common[1]}: the series is inconsistent (remove this file or choose another series)",
            path=paths[index],
        )
    orientations = [None if p.orientation is None else tuple(np.round(np.concatenate(p.orientation), 4))
                    for p in planes]
    index = odd_one(orientations, lambda a, b: (a is None) == (b is None) and (
        a is None or np.allclose(a, b, atol=_ORIENTATION_TOL * 10)))
    if index is not None:
        raise UnreadableInputError(
            f"slice orientation (ImageOrientationPatient) differs from the rest of {what}: "
            "the series is inconsistent (remove this file or choose another series)",
            path=paths[index],
        )
    spacings = [None if p.pixel_spacing is None else tuple(np.round(p.pixel_spacing, 4)) for p in planes]
    index = odd_one(spacings, lambda a, b: (a is None) == (b is None) and (
        a is None or np.allclose(a, b, rtol=_SPACING_REL_TOL)))
    if index is not None:
        raise UnreadableInputError(
            f"pixel spacing differs from the rest of {what}: the series is inconsistent", path=paths[index]
        )


@dataclass
class Geometry:
    """Result of :func:`sort_slices`.

    ``order[k]`` is the input index of sorted slice ``k``; ``affine`` is in
    LPS; ``origins`` are the sorted slice positions (``None`` when unknown).
    ``known`` is False when positions, orientation or pixel spacing are
    missing or invalid, so that the affine is partly a stand-in.
    """

    order: np.ndarray
    affine: np.ndarray
    spacing: tuple[float, float, float]
    origins: np.ndarray | None
    warnings: list[str]
    known: bool = True


def sort_slices(planes: list[Plane], stated_spacing: float | None, labels: list[str], where: Path) -> Geometry:
    """Sort the planes along their normal and build the LPS affine.

    Parameters
    ----------
    planes:
        One per slice, in input order.
    stated_spacing:
        SpacingBetweenSlices / SliceThickness, used only when positions
        cannot give the spacing (one slice, or no positions).
    labels:
        A name per input slice (file name or frame number) for messages.
    where:
        The file or folder named by errors.

    Raises
    ------
    UnreadableInputError
        Two or more slices share one position.
    """
    warnings: list[str] = []
    first = planes[0]
    row, col = first.orientation or (np.array([1.0, 0.0, 0.0]), np.array([0.0, 1.0, 0.0]))
    normal = np.cross(row, col)
    pixel = first.pixel_spacing if first.pixel_spacing is not None else np.array([1.0, 1.0])
    if first.spacing_problem:
        warnings.append(f"{first.spacing_problem}: 1 mm pixels assumed, the geometry is unknown")
    n = len(planes)
    have_positions = all(p.position is not None for p in planes)
    known = have_positions and first.orientation is not None and first.pixel_spacing is not None
    if n > 1 and not have_positions:
        warnings.append("slices have no position (ImagePositionPatient, or PlanePositionSequence for the frames "
                        "of a multi-frame file): kept in file order, slice spacing unknown (1 mm), the geometry "
                        "is unknown")
        order = np.arange(n)
        origins = None
        step = normal * (stated_spacing or 1.0)
        z_spacing = stated_spacing or 1.0
        origin = first.position if first.position is not None else np.zeros(3)
    else:
        positions = np.array([p.position if p.position is not None else np.zeros(3) for p in planes])
        distance = positions @ normal
        order = np.argsort(distance, kind="stable")
        positions, distance = positions[order], distance[order]
        origins = positions if have_positions else None
        origin = positions[0]
        if n > 1:
            gaps = np.diff(distance)
            same = np.flatnonzero(gaps < _SAME_POSITION_MM)
            if same.size:
                a, b = labels[order[same[0]]], labels[order[same[0] + 1]]
                raise UnreadableInputError(
                    f"{same.size + 1} or more slices share one position ({a} and {b}, among others): the series "
                    "holds more than one volume (echoes, time points or repeated acquisitions); split it first",
                    path=where,
                )
            z_spacing = float(np.median(gaps))
            if gaps.max() - gaps.min() > _UNEVEN_REL_TOL * z_spacing:
                warnings.append(
                    f"slice spacing is uneven ({gaps.min():.3g} to {gaps.max():.3g} mm, median {z_spacing:.3g} mm): "
                    "slices may be missing; a NIfTI export cannot represent this geometry exactly"
                )
            # The mean step, not the normal, keeps a gantry tilt (sheared grid) exact.
            step = (positions[-1] - positions[0]) / (n - 1)
        else:
            z_spacing = stated_spacing or 1.0
            step = normal * z_spacing
    affine = np.eye(4)
    affine[:3, 0] = row * pixel[1]  # column index i walks along the row direction
    affine[:3, 1] = col * pixel[0]  # row index j walks along the column direction
    affine[:3, 2] = step
    affine[:3, 3] = origin
    return Geometry(order, affine, (z_spacing, float(pixel[0]), float(pixel[1])), origins, warnings, known)


# --------------------------------------------------------------------------
# Pixel values
# --------------------------------------------------------------------------


def apply_rescale(slices: list[np.ndarray], planes: list[Plane]) -> np.ndarray:
    """Stack stored slices into real-world values, slice by slice.

    The entries of *slices* are released (set to ``None``) as they are
    copied, so that a large series is not held twice. The result stays
    integer when every slope and intercept is an integer and the values fit
    in int16 (the usual CT case: slope 1, intercept -1024), which halves the
    memory of float32 without losing anything; it keeps the stored type when
    there is no rescale at all; otherwise it is float32.
    """
    slopes = np.array([p.slope for p in planes])
    intercepts = np.array([p.intercept for p in planes])
    shape = (len(slices), *slices[0].shape)
    stored_type = np.result_type(*[s.dtype for s in slices])
    identity = bool(np.all(slopes == 1.0) and np.all(intercepts == 0.0))
    out_type = stored_type if identity else np.dtype(np.float32)
    integral = np.all(slopes == np.round(slopes)) and np.all(intercepts == np.round(intercepts))
    if not identity and integral and np.issubdtype(stored_type, np.integer):
        lo = min(int(s.min()) for s in slices)
        hi = max(int(s.max()) for s in slices)
        results = [s * v + b for s, b in zip(slopes, intercepts) for v in (lo, hi)]
        if min(results) >= np.iinfo(np.int16).min and max(results) <= np.iinfo(np.int16).max:
            out_type = np.dtype(np.int16)
    out = np.empty(shape, dtype=out_type)
    for k, (slope, intercept) in enumerate(zip(slopes, intercepts)):
        if identity:
            out[k] = slices[k]
        elif out_type == np.int16:
            out[k] = slices[k].astype(np.int32) * int(slope) + int(intercept)
        else:
            out[k] = slices[k].astype(np.float32) * np.float32(slope) + np.float32(intercept)
        slices[k] = None  # type: ignore[call-overload]
    return out


def _check_lut_length(ds, path: Path) -> None:
    """A Modality LUT shorter than its descriptor says is refused before pydicom
    unpacks it (it fails there with struct.error or an index error)."""
    item = ds.ModalityLUTSequence[0]
    descriptor = header_value(item, "LUTDescriptor", path)
    data = header_value(item, "LUTData", path)
    try:
        entries = int(descriptor[0]) or 65536  # 0 means 2**16 (PS3.3 C.11.1.1)
        int(descriptor[1]), int(descriptor[2])
    except (TypeError, ValueError, IndexError):
        raise UnreadableInputError(
            f"its Modality LUT has no valid LUTDescriptor (three numbers expected, got {descriptor!r})", path=path
        ) from None
    if data is None:
        raise UnreadableInputError("its Modality LUT has no LUTData", path=path)
    count = len(data) // 2 if isinstance(data, bytes) else len(data)  # OW: 16-bit entries
    if count < entries:
        raise UnreadableInputError(
            f"its Modality LUT holds {count} entries but its LUTDescriptor declares {entries} (the file is damaged)",
            path=path,
        )


def modality_lut(ds, array: np.ndarray, path: Path) -> np.ndarray:
    """Stored values through the file's Modality LUT Sequence (PS3.3 C.11.1.1).

    Some modalities (XA, some CR and secondary captures) map stored values
    to meaningful ones with a table instead of Rescale Slope/Intercept; the
    plane's rescale is then the identity (see :func:`_rescale`).

    Raises
    ------
    UnreadableInputError
        The table is damaged (shorter than its descriptor says, or
        unusable), naming *path*.
    """
    try:
        from pydicom.pixels import apply_modality_lut
    except ImportError:  # pydicom 2.x
        from pydicom.pixel_data_handlers.util import apply_modality_lut

    _check_lut_length(ds, path)
    try:
        return np.asarray(apply_modality_lut(array, ds))
    except (ValueError, IndexError, KeyError, AttributeError, TypeError, struct.error) as exc:
        raise UnreadableInputError(f"its Modality LUT Sequence cannot be applied ({exc})", path=path) from exc
