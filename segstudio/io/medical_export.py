"""Writing label volumes for medical viewers: NIfTI label maps, DICOM SEG, PNG slices.

A label volume is ``Z x Y x X`` in the voxel grid of a
:class:`~segstudio.io.volume.Volume` (``labels[k, j, i]`` labels voxel
``(i, j, k)``): ``uint8`` for projects of up to 254 classes, ``uint16``
beyond (:func:`~segstudio.io.masks.label_dtype`). The unlabelled value of
the type is 255 in a uint8 map and 65535 in a uint16 map (see
:func:`~segstudio.io.masks.unlabelled_for`); in a uint16 map 255 is an
ordinary class.

* NIfTI: same grid and orientation as the source, so 3D Slicer and ITK-SNAP
  show it on top of the source image. A NIfTI source keeps its own header
  (qform, sform and their codes); a DICOM source's LPS affine becomes RAS,
  in the sform and, when a qform can hold it (no shear), the qform; a
  source that does not say where it is (no slice positions, a TIFF stack)
  is written with both codes 0, "unknown". Class ``i`` is written as the
  value ``i + 1`` and unlabelled as 0, as 3D Slicer and ITK-SNAP expect
  (0 = nothing there, every class its own non-zero value), so a painted
  "background" class and unlabelled voxels stay apart. The data are uint8
  when every value fits, else uint16. A 3D Slicer colour table
  (``<name>.ctbl``) and an ITK-SNAP label description (``<name>.label.txt``)
  beside it name each value (:mod:`segstudio.io.label_tables`).
* DICOM SEG and PNG keep class indices: 0 is the first class (usually
  background) and unlabelled is not a segment (DICOM SEG) or stays 255 /
  65535 (PNG).
* DICOM SEG (highdicom): references the source series instance by instance,
  one segment per class present (segment numbers run 1..n, at most 65535).
* PNG: one PNG per slice, indexed for a uint8 map, 16-bit greyscale for a
  uint16 map (:func:`~segstudio.io.masks.write_label_png`).
"""

from __future__ import annotations

import gzip
import io
import logging
import os
import warnings
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from segstudio.errors import ExportError, InvalidArgumentError
from segstudio.io.dicom_geometry import frame_count
from segstudio.io.label_tables import LabelEntry, write_label_tables
from segstudio.io.masks import (
    UNLABELLED,
    UNLABELLED_16,
    atomic_write_bytes,
    default_palette,
    unlabelled_for,
    write_indexed_png,
    write_label_png,
)
from segstudio.io.volume import Volume

log = logging.getLogger(__name__)

SOFTWARE_NAME = "segstudio"
# A slice origin further than this from where the affine puts it means the
# grid is not regular (missing slices, varying spacing): NIfTI cannot hold it.
_ORIGIN_TOLERANCE_MM = 0.01
_ORIGIN_TOLERANCE_REL = 0.05
# A qform further than this from the sform at a corner voxel is not written as valid.
_QFORM_TOLERANCE_MM = 0.01
UNEVEN_SPACING_ADVICE = "pass allow_uneven_spacing=True (command line: --allow-uneven-spacing)"


def _check_labels(labels_zyx: np.ndarray, volume: Volume) -> np.ndarray:
    """*labels_zyx* as a uint8 or uint16 label map of the volume's shape.

    uint8 and uint16 maps pass as they are; booleans become uint8; other
    integer types become uint8 when every value fits 0..255 and uint16 when
    they fit 0..65535 (the unlabelled value is then that type's maximum).
    """
    labels = np.asarray(labels_zyx)
    if labels.shape != volume.shape_zyx:
        raise InvalidArgumentError(
            f"labels have shape {labels.shape} but the volume is {volume.shape_zyx} (Z x Y x X)"
        )
    if labels.dtype == np.bool_:
        labels = labels.astype(np.uint8)
    if not np.issubdtype(labels.dtype, np.integer):
        raise InvalidArgumentError(f"labels must be integers, got {labels.dtype}")
    if labels.dtype not in (np.uint8, np.uint16):
        lo, hi = (int(labels.min()), int(labels.max())) if labels.size else (0, 0)
        if lo < 0 or hi > UNLABELLED_16:
            raise InvalidArgumentError(
                f"labels of type {labels.dtype} must lie in 0..{UNLABELLED_16}, got {lo}..{hi}"
            )
        labels = labels.astype(np.uint8 if hi <= UNLABELLED else np.uint16)
    return labels


def _check_regular_grid(volume: Volume, allow_uneven: bool) -> None:
    origins = volume.slice_origins
    if origins is None or len(origins) < 2 or allow_uneven:
        return
    k = np.arange(len(origins))
    predicted = volume.affine[:3, 3] + np.outer(k, volume.affine[:3, 2])
    error = float(np.max(np.linalg.norm(predicted - origins, axis=1)))
    tolerance = max(_ORIGIN_TOLERANCE_MM, _ORIGIN_TOLERANCE_REL * volume.spacing[0])
    if error > tolerance:
        raise ExportError(
            f"the source slices are not evenly spaced (a slice lies {error:.3g} mm off the regular grid), "
            "so a NIfTI label map would drift off the anatomy; export DICOM SEG instead, "
            f"or {UNEVEN_SPACING_ADVICE} to accept the error",
            path=volume.source,
        )


def nifti_label_entries(
    class_names: Sequence[str] | None, class_colors: Sequence[Sequence[int]] | None, top_class: int = -1
) -> list[LabelEntry]:
    """``(value, name, colour)`` of every class in a NIfTI label map: class ``i`` is value ``i + 1``.

    Classes up to *top_class* (the largest index in the labels) are listed
    even without a name (``class i``) or colour (the default palette's).
    """
    names = list(class_names or ())
    count = max(len(names), top_class + 1)
    colors = [tuple(int(c) for c in color[:3]) for color in (class_colors or ())]
    if len(colors) < count:
        colors += default_palette(count)[len(colors):]
    return [(i + 1, str(names[i]) if i < len(names) else f"class {i}", colors[i]) for i in range(count)]


def nifti_values(labels: np.ndarray) -> np.ndarray:
    """A uint8 or uint16 label map as written to NIfTI: class ``i`` as ``i + 1``, unlabelled as 0.

    The unlabelled value is the type's maximum, so adding 1 in the same type
    wraps it to 0; the result is uint8 when every value fits, else uint16.
    """
    values = labels + labels.dtype.type(1)
    if values.dtype != np.uint8 and (int(values.max()) if values.size else 0) <= UNLABELLED:
        values = values.astype(np.uint8)
    return values


def write_nifti_labels(
    path: str | os.PathLike[str],
    labels_zyx: np.ndarray,
    volume: Volume,
    class_names: Sequence[str] | None = None,
    class_colors: Sequence[Sequence[int]] | None = None,
    *,
    allow_uneven_spacing: bool = False,
) -> Path:
    """Write a label volume as a NIfTI label map on the source's grid, atomically,
    with a 3D Slicer colour table and an ITK-SNAP label description beside it.

    A NIfTI source gives its format (NIfTI-1 or -2), qform, sform and units;
    any other source gives NIfTI-1 with its affine in RAS as the sform (code
    "scanner") and as the qform where a qform can hold it. A sheared grid
    (a gantry-tilted CT series) cannot be a qform: the qform code is then 0
    and a warning says so (see :func:`_set_dicom_geometry`). A source whose
    position is unknown (:attr:`Volume.geometry_known` False) is written
    with qform and sform codes 0, with a warning.

    Parameters
    ----------
    path:
        Destination, normally ``*.nii.gz`` (``.nii`` writes uncompressed).
    labels_zyx:
        ``Z x Y x X`` class indices matching ``volume.shape_zyx``, uint8 or
        uint16. Class ``i`` is written as ``i + 1`` and unlabelled voxels
        (255 in a uint8 map, 65535 in a uint16 map) as 0, so that 0 means
        "nothing" in viewers and a painted background class is a label of
        its own. The file holds uint8 when every value fits, else uint16.
    volume:
        The volume the labels belong to.
    class_names, class_colors:
        The project's class names and RGB colours, for the label tables
        ``<name>.ctbl`` (3D Slicer) and ``<name>.label.txt`` (ITK-SNAP)
        written beside *path* (see :mod:`segstudio.io.label_tables`).
        Classes without a name are called ``class i`` and get the default
        palette's colour.
    allow_uneven_spacing:
        Write even when the source slices are not evenly spaced (the file's
        single affine then misplaces some slices).

    Returns
    -------
    pathlib.Path
        *path* (the label tables are at
        :func:`~segstudio.io.label_tables.label_table_paths` of it).

    Raises
    ------
    InvalidArgumentError
        Labels of the wrong shape or type.
    ExportError
        Uneven source spacing (see above), or the file cannot be written.
    """
    import nibabel as nib

    path = Path(path)
    labels = _check_labels(labels_zyx, volume)
    _check_regular_grid(volume, allow_uneven_spacing)
    values = nifti_values(labels)
    top = int(values.max()) if values.size else 0
    data_dtype = values.dtype
    # back to nibabel's (i, j, k)
    data = np.asfortranarray(values.transpose(2, 1, 0))
    del values
    source_header = volume.nifti_header if volume.kind == "nifti" else None
    if isinstance(source_header, nib.Nifti1Header):
        # Same format as the source (NIfTI-2 keeps a float64 affine), and the
        # source's own qform and sform with their codes: viewers choose between
        # them differently, and both must say what the source said.
        image_class = nib.Nifti2Image if isinstance(source_header, nib.Nifti2Header) else nib.Nifti1Image
        header = image_class.header_class()
        header.set_data_shape(data.shape)
        header.set_zooms(source_header.get_zooms()[:3])  # what viewers fall back on without a qform
        header.set_qform(*source_header.get_qform(coded=True))
        header.set_sform(*source_header.get_sform(coded=True))
        header.set_xyzt_units(*source_header.get_xyzt_units())
        image = image_class(data, None, header=header)
    else:
        header = nib.Nifti1Header()
        header.set_data_shape(data.shape)
        _set_dicom_geometry(header, volume, data.shape)
        header.set_xyzt_units("mm")
        image = nib.Nifti1Image(data, None, header=header)
    image.set_data_dtype(data_dtype)
    image.header["scl_slope"] = 1.0
    image.header["scl_inter"] = 0.0
    image.header.set_intent("label")
    image.header["descrip"] = f"{SOFTWARE_NAME} labels".encode()
    image.header["cal_min"] = 0
    image.header["cal_max"] = float(top)

    # Encoded in memory so that the file can be replaced in one atomic rename.
    try:
        raw = io.BytesIO()
        image.to_file_map({"image": nib.FileHolder(fileobj=raw)})
    except (ValueError, nib.spatialimages.HeaderDataError) as exc:
        raise ExportError(f"cannot encode the NIfTI label map: {exc}", path=path) from exc
    payload = raw.getvalue()
    if path.name.lower().endswith(".gz"):
        payload = gzip.compress(payload, compresslevel=6, mtime=0)
    written = atomic_write_bytes(path, payload)
    write_label_tables(written, nifti_label_entries(class_names, class_colors, top - 1))
    log.info("wrote NIfTI labels %s %s with its label tables", written.name, data.shape)
    return written


def _corner_error(a: np.ndarray, b: np.ndarray, shape: tuple[int, ...]) -> float:
    """Largest distance in mm between where *a* and *b* put the corner voxels of *shape*."""
    corners = np.array([[i, j, k, 1.0] for i in (0, shape[0] - 1) for j in (0, shape[1] - 1)
                        for k in (0, shape[2] - 1)]).T
    return float(np.max(np.linalg.norm((a @ corners - b @ corners)[:3], axis=0)))


def _set_dicom_geometry(header, volume: Volume, shape: tuple[int, ...]) -> None:
    """The sform, qform, their codes and the zooms of a label map for a non-NIfTI source.

    A qform is a rotation and zooms only, so a sheared grid (gantry tilt:
    slices stacked along a step that is not their normal) cannot be one;
    nibabel would fit the nearest rotation, some millimetres off at the
    corners. Which to write was decided by what ITK does, because ITK
    (SimpleITK, ITK-SNAP, 3D Slicer's NIfTI reader) supports orthonormal
    directions only: its NiftiImageIO takes the sform when that is
    orthonormal and the qform code is 0 (or the sform code is "scanner"),
    else the qform when its code is not 0, else it refuses the file ("ITK
    only supports orthonormal direction cosines"; ITK_NIFTI_SFORM_PERMISSIVE
    makes it orthogonalise the sform instead). No header makes ITK read a
    sheared grid right, so with a qform it would show the labels silently
    off by the error. We write qform_code 0 and warn: ITK refuses loudly
    rather than misplacing, tools that read the sform (nibabel, FSL, AFNI,
    MRtrix) get the exact grid, and a DICOM SEG keeps it too. Checked with
    ITK 5.4 (SimpleITK 2.5.7) on a 20-degree tilted series of 60 slices:
    nibabel's nearest-rotation qform was read 28.7 mm off at a corner;
    with qform_code 0 the read fails; with ITK_NIFTI_SFORM_PERMISSIVE=1 it
    is 24 mm off. Where the grid is not sheared the qform agrees with the
    sform, both are "scanner", and ITK reads the sform.
    """
    import nibabel as nib

    affine = volume.affine_ras()
    header.set_sform(affine, code="scanner" if volume.geometry_known else "unknown")
    zooms = np.linalg.norm(affine[:3, :3], axis=0)
    if not volume.geometry_known:
        header.set_qform(None)  # code 0: "unknown"; ITK then uses the zooms alone
        header.set_zooms(tuple(float(z) for z in zooms))
        log.warning("%s: the source does not say where its voxels are in the patient (no slice positions or "
                    "orientation, or no valid pixel spacing): the NIfTI label map's geometry is marked unknown "
                    "(qform and sform code 0)", volume.source)
        return
    try:
        header.set_qform(affine, code="scanner")  # the nearest rotation when sheared
        error = _corner_error(header.get_qform(), affine, shape)
    except (nib.spatialimages.HeaderDataError, np.linalg.LinAlgError, ValueError):
        error = float("inf")
    if error > _QFORM_TOLERANCE_MM:
        header.set_qform(None)
        step, normal = affine[:3, 2], np.cross(affine[:3, 0], affine[:3, 1])
        cosine = abs(step @ normal) / (np.linalg.norm(step) * np.linalg.norm(normal))
        angle = float(np.degrees(np.arccos(np.clip(cosine, -1.0, 1.0))))
        log.warning("%s: the slice grid is sheared by %.1f degrees (gantry tilt), which a NIfTI qform cannot hold "
                    "(it would be up to %.3g mm off): written in the sform only, qform_code 0; ITK-based tools "
                    "(ITK-SNAP, 3D Slicer, SimpleITK) refuse such a file unless ITK_NIFTI_SFORM_PERMISSIVE=1 is "
                    "set; DICOM SEG keeps the exact geometry", volume.source, angle, error)
    header.set_zooms(tuple(float(z) for z in zooms))


def _segment_plan(labels: np.ndarray, class_names: Sequence[str]) -> list[int]:
    """Class indices to export as segments, in order (background and unlabelled left out)."""
    unlabelled = unlabelled_for(labels)
    counts = np.bincount(labels.ravel(), minlength=unlabelled + 1)
    present = [int(v) for v in np.flatnonzero(counts[1:unlabelled]) + 1]
    missing = [v for v in present if v >= len(class_names)]
    if missing:
        raise InvalidArgumentError(
            f"labels hold class indices {missing[:10]} but only {len(class_names)} class names were given"
        )
    return present


def _with_shared_geometry(ds):
    """A copy of a multi-frame source whose shared functional group holds the plane macros.

    highdicom reads pixel measures and plane orientation from the shared
    group only; many enhanced files (Philips MR among them) repeat them in
    every per-frame item instead. When all frames agree, the copy carries
    them in the shared group, which says the same thing.
    """
    import copy

    from pydicom.dataset import Dataset
    from pydicom.sequence import Sequence as DicomSequence

    per_frame = ds.get("PerFrameFunctionalGroupsSequence") or []
    shared = ds.SharedFunctionalGroupsSequence[0] if ds.get("SharedFunctionalGroupsSequence") else Dataset()
    missing = [name for name in ("PixelMeasuresSequence", "PlaneOrientationSequence") if name not in shared]
    if not missing or not per_frame:
        return ds
    additions = {}
    for name in missing:
        items = [frame.get(name) for frame in per_frame]
        if any(not item for item in items):
            raise ExportError(f"the multi-frame source has no {name} for some frames")
        if any(item[0] != items[0][0] for item in items[1:]):
            raise ExportError(f"{name} differs between the frames of the multi-frame source")
        additions[name] = items[0]
    patched = copy.deepcopy(ds)
    new_shared = copy.deepcopy(shared)
    for name, item in additions.items():
        setattr(new_shared, name, copy.deepcopy(item))
    patched.SharedFunctionalGroupsSequence = DicomSequence([new_shared])
    return patched


def _missing_plane_geometry(ds) -> list[str]:
    """What a source dataset lacks to place its frames: names of the missing macros (empty if none).

    A single-frame image carries ImagePositionPatient / ImageOrientationPatient
    at the top; a multi-frame one may carry them there or in its per-frame
    or shared functional groups (Plane Position / Plane Orientation).
    """
    missing = []
    groups = [*(ds.get("SharedFunctionalGroupsSequence") or [])[:1],
              *(ds.get("PerFrameFunctionalGroupsSequence") or [])[:1]]
    for macro, attribute in (("PlanePositionSequence", "ImagePositionPatient"),
                             ("PlaneOrientationSequence", "ImageOrientationPatient")):
        if attribute in ds:
            continue
        if any(group.get(macro) and attribute in group.get(macro)[0] for group in groups):
            continue
        missing.append(macro if frame_count(ds, None) > 1 else attribute)
    return missing


def _check_plane_geometry(sources: list, volume: Volume) -> None:
    """Refuse, saying what is missing, a source whose frames have no position.

    highdicom then fails with "no Frame of Reference UID", which misleads when
    the source has one and lacks only the plane geometry.
    """
    frames = sum(frame_count(ds, None) for ds in sources)
    if frames < 2:
        return  # one frame needs no position to be referenced
    for ds in sources:
        missing = _missing_plane_geometry(ds)
        if missing:
            where = ("its per-frame and shared functional groups"
                     if frame_count(ds, None) > 1 else "its files")
            raise ExportError(
                f"the source has no plane geometry ({' and '.join(missing)} missing from {where}), so a DICOM "
                "SEG cannot say where each of its frames lies; export NIfTI (written with unknown geometry) or "
                "PNG slices instead",
                path=volume.source,
            )


def _display_colour(rgb):
    from highdicom.color import CIELabColor

    r, g, b = (int(c) for c in rgb)
    return CIELabColor.from_rgb(r, g, b)


def write_dicom_seg(
    path: str | os.PathLike[str],
    labels_zyx: np.ndarray,
    volume: Volume,
    class_names: Sequence[str],
    class_colors: Sequence[tuple[int, int, int]],
    *,
    algorithm_type: str = "SEMIAUTOMATIC",
    series_description: str = "segstudio segmentation",
    series_number: int = 9001,
) -> Path:
    """Write a label volume as a DICOM Segmentation (BINARY) referencing the source series.

    Parameters
    ----------
    path:
        Destination ``.dcm`` file.
    labels_zyx:
        ``Z x Y x X`` class indices for ``volume``, uint8 or uint16.
    volume:
        A volume read from DICOM (``volume.dicom_datasets`` set).
    class_names, class_colors:
        Name and RGB display colour of every class index. Class 0 is
        background and never a segment; unlabelled (255 in a uint8 map,
        65535 in a uint16 map) is background too. Each class present becomes
        one segment, numbered 1..n in class order (DICOM allows up to 65535),
        labelled with the class name.
    algorithm_type:
        ``"SEMIAUTOMATIC"`` (model proposal corrected by a person, the
        default), ``"AUTOMATIC"`` or ``"MANUAL"``.
    series_description, series_number:
        For the new SEG series.

    Returns
    -------
    pathlib.Path
        *path*.

    Raises
    ------
    InvalidArgumentError
        Not a DICOM volume, labels of the wrong shape, no labelled voxel, or
        classes without names or colours.
    ExportError
        highdicom rejects the data, or the file cannot be written.
    """
    import highdicom as hd
    from pydicom.sr.codedict import codes

    from segstudio import __version__

    path = Path(path)
    if volume.kind != "dicom" or not volume.dicom_datasets:
        raise InvalidArgumentError("DICOM SEG needs a volume read from DICOM (it references the source images)")
    labels = _check_labels(labels_zyx, volume)
    if volume.is_colour:
        raise InvalidArgumentError("DICOM SEG export supports greyscale source images only")
    present = _segment_plan(labels, class_names)
    if not present:
        raise InvalidArgumentError("nothing to export: no voxel carries a class other than background")
    if len(class_colors) < max(present) + 1:
        raise InvalidArgumentError(f"{len(class_colors)} class colours given, class {max(present)} needs one")

    # Segment numbers must run 1..n: class c becomes segment n_c. highdicom
    # takes a uint8 or uint16 map of segment numbers (0 = no segment).
    table = np.zeros(unlabelled_for(labels) + 1, dtype=np.uint8 if len(present) <= UNLABELLED else np.uint16)
    table[present] = np.arange(1, len(present) + 1)
    segment_map = table[labels]
    if volume.source_frames is not None:
        # A multi-frame source: frames go back into the file's frame order.
        restored = np.empty_like(segment_map)
        restored[np.asarray(volume.source_frames)] = segment_map
        segment_map = restored

    sources = list(volume.dicom_datasets)
    _check_plane_geometry(sources, volume)
    if len(sources) == 1 and frame_count(sources[0], None) > 1:
        sources = [_with_shared_geometry(sources[0])]

    algorithm = hd.AlgorithmIdentificationSequence(
        name=SOFTWARE_NAME, family=codes.cid7162.ArtificialIntelligence, version=__version__
    )
    descriptions = [
        hd.seg.SegmentDescription(
            segment_number=number,
            segment_label=str(class_names[class_index])[:64],
            # User-defined classes have no standard code: "Tissue" is the neutral choice.
            segmented_property_category=codes.SCT.Tissue,
            segmented_property_type=codes.SCT.Tissue,
            algorithm_type=algorithm_type,
            algorithm_identification=None if algorithm_type == "MANUAL" else algorithm,
            display_color=_display_colour(class_colors[class_index]),
        )
        for number, class_index in enumerate(present, start=1)
    ]
    try:
        with warnings.catch_warnings():
            # highdicom's person-name check quotes the patient's name; it must not reach logs.
            warnings.filterwarnings("ignore", message=".*intended person name", category=UserWarning)
            seg = hd.seg.Segmentation(
                source_images=sources,
                pixel_array=segment_map,
                segmentation_type=hd.seg.SegmentationTypeValues.BINARY,
                segment_descriptions=descriptions,
                series_instance_uid=hd.UID(),
                series_number=series_number,
                sop_instance_uid=hd.UID(),
                instance_number=1,
                manufacturer=SOFTWARE_NAME,
                manufacturer_model_name=SOFTWARE_NAME,
                software_versions=__version__,
                device_serial_number="none",
                series_description=series_description,
                content_label="SEGMENTATION",
            )
            buffer = io.BytesIO()
            seg.save_as(buffer)
    except (ValueError, TypeError, AttributeError, KeyError) as exc:
        raise ExportError(f"cannot build the DICOM SEG: {exc}", path=path) from exc
    written = atomic_write_bytes(path, buffer.getvalue())
    log.info("wrote DICOM SEG %s: %d segment(s), %d frame(s)", written.name, len(present),
             int(seg.get("NumberOfFrames", 0)))
    return written


def write_png_slices(
    folder: str | os.PathLike[str],
    labels_zyx: np.ndarray,
    palette: Sequence[tuple[int, int, int]],
) -> list[Path]:
    """Write one PNG per slice, ``slice_0000.png``, ``slice_0001.png``, ...

    Slice ``k`` of the file names is slice ``k`` of the volume (sorted by
    position for DICOM). Each file is written atomically, as
    :func:`~segstudio.io.masks.write_label_png` writes it: a uint8 map gives
    indexed PNGs with *palette* (255 = unlabelled), a uint16 map 16-bit
    greyscale PNGs of class indices (65535 = unlabelled).

    Returns
    -------
    list[pathlib.Path]
        The files, in slice order.

    Raises
    ------
    InvalidArgumentError
        Labels not ``Z x Y x X``, or holding indices outside the palette.
    ExportError
        A file cannot be written.
    """
    labels = np.asarray(labels_zyx)
    if labels.ndim != 3:
        raise InvalidArgumentError(f"labels must be Z x Y x X, got shape {labels.shape}")
    folder = Path(folder)
    digits = max(4, len(str(labels.shape[0] - 1)))
    # Other integer types whose values fit 0..255 keep going to the indexed writer, as before.
    write = write_label_png if labels.dtype == np.uint16 else write_indexed_png
    written = [write(folder / f"slice_{k:0{digits}d}.png", labels[k], palette) for k in range(labels.shape[0])]
    log.info("wrote %d PNG slice(s) to %s", len(written), folder)
    return written
