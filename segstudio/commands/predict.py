"""``segstudio predict``: masks (and probabilities) for images and medical volumes on disk."""

from __future__ import annotations

import argparse
import io
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from segstudio.commands.common import add_crf_backend_option, crf_options, progress_bar, unique_output_names
from segstudio.errors import InvalidArgumentError, SegstudioError, UnreadableInputError

log = logging.getLogger(__name__)

VOLUME_FORMATS = ("png", "nifti", "dicom-seg")
WINDOW_PRESETS = {"soft-tissue": "Soft tissue", "lung": "Lung", "bone": "Bone", "brain": "Brain"}


def add_parser(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser(
        "predict",
        help="segment images or medical volumes with a trained model",
        description="Write one PNG mask per 2-D image (same stem and size as the source): indexed with the "
        "class palette for models of up to 254 classes, 16-bit greyscale class indices (65535 = unlabelled) "
        "for larger ones. "
        "DICOM files and series folders and NIfTI files (.nii, .nii.gz) are segmented slice by slice "
        "and written as a NIfTI label map on the source's grid (default), a DICOM SEG (DICOM sources) "
        "or a folder of PNG slices. A folder holding several series, or a 4-D NIfTI file, gives one "
        "output per series or volume unless --series / --volume chooses one.",
    )
    parser.add_argument("inputs", nargs="+", metavar="INPUT",
                        help="image files, DICOM files or series folders, NIfTI files, or folders of images")
    parser.add_argument("--model", help="architecture name; must match the checkpoint's if both are given")
    parser.add_argument("--checkpoint", type=Path, help="trained weights (.safetensors checkpoint)")
    parser.add_argument("--out", type=Path, required=True, help="folder for the masks")
    parser.add_argument("--format", dest="fmt", choices=VOLUME_FORMATS,
                        help="output for volumes: nifti (<stem>.nii.gz, default), dicom-seg (<stem>.seg.dcm, "
                        "DICOM sources only) or png (<stem>/slice_0000.png ..., 16-bit for models of more than "
                        "254 classes); 2-D images are always PNG")
    window = parser.add_mutually_exclusive_group()
    window.add_argument("--window", metavar="CENTER,WIDTH",
                        help="window of volumes for the CRF's image, in the data's units (CT: HU), e.g. "
                        "40,400; write --window=-600,1500 for a negative centre. The model's input follows "
                        "its checkpoint (which records how it was trained); only checkpoints from before "
                        "that was recorded take this window as their input too. Default: the checkpoint's "
                        "input window, else the 0.5-99.5 percentile range of each volume")
    window.add_argument("--window-preset", choices=sorted(WINDOW_PRESETS),
                        help="a standard CT window, as --window")
    parser.add_argument("--series", metavar="UID", help="in DICOM folders, segment only this SeriesInstanceUID")
    parser.add_argument("--volume", type=int, metavar="N", help="in 4-D NIfTI files, segment only volume N (0-based)")
    parser.add_argument("--allow-uneven-spacing", action="store_true",
                        help="write NIfTI label maps even for DICOM series whose slices are not evenly spaced "
                        "(the file's single affine then misplaces some slices; DICOM SEG has no such limit)")
    parser.add_argument("--crf", action="store_true", help="refine each mask (each slice) with the dense CRF")
    add_crf_backend_option(parser, "CRF implementation: auto (torch on a GPU, pydensecrf2 on the CPU), "
                                   "pydensecrf (CPU) or torch (on --device)")
    parser.add_argument("--crf-3d", action="store_true",
                        help="volumes: one 3-D CRF over the whole volume (kernels in mm from the spacing) "
                             "instead of slice by slice")
    parser.add_argument("--device", default="auto", help="auto (CUDA, then MPS, then CPU), cpu, cuda or mps")
    parser.add_argument("--precision", default="auto", choices=["auto", "fp32", "bf16", "fp16"])
    parser.add_argument("--tile", type=int, default=512, help="sliding-window tile size in pixels (default 512)")
    parser.add_argument("--save-probs", action="store_true", help="also write <stem>.probs.npz (uint8, p x 255)")
    parser.add_argument("--recursive", action="store_true", help="look for images in sub-folders too")
    parser.set_defaults(run=run)


@dataclass
class _Job:
    """One thing to segment: a 2-D image, or one volume (selector as for read_volume)."""

    source: Path
    stem: str
    is_volume: bool
    selector: dict[str, Any] | None = None


def parse_window(args: argparse.Namespace) -> tuple[float, float] | None:
    """``(center, width)`` from ``--window`` or ``--window-preset``, or None.

    Raises
    ------
    InvalidArgumentError
        Not two numbers, or a width below 1.
    """
    from segstudio.windowing import preset, window_bounds

    if getattr(args, "window_preset", None):
        chosen = preset(WINDOW_PRESETS[args.window_preset])
        return chosen.center, chosen.width
    text = getattr(args, "window", None)
    if text is None:
        return None
    parts = text.replace(" ", "").split(",")
    try:
        center, width = (float(p) for p in parts)
    except ValueError:
        raise InvalidArgumentError(f"--window must be CENTER,WIDTH (two numbers, e.g. 40,400), got {text!r}") from None
    if not np.isfinite(center):
        raise InvalidArgumentError(f"--window centre must be a finite number, got {text!r}")
    window_bounds(center, width)  # raises for a width below 1
    return center, width


def _volume_jobs(path: Path, args: argparse.Namespace, skipped: list[SegstudioError]) -> list[_Job]:
    """The volumes at *path*, filtered by --series / --volume; files of a folder
    that cannot be read are added to *skipped* (already logged)."""
    from segstudio.io.project_volumes import find_volumes

    candidates = find_volumes(path, skipped=skipped)
    if args.series is not None:
        dicom = [c for c in candidates if c.series_uid is not None]
        kept = [c for c in dicom if c.series_uid == args.series]
        if dicom and not kept:
            found = ", ".join(f"{c.series_uid} ({c.description or 'no description'})" for c in dicom)
            raise UnreadableInputError(f"no series with UID {args.series} here (found: {found})", path=path)
        candidates = [c for c in candidates if c.series_uid is None or c in kept]
    if args.volume is not None:
        indexed = [c for c in candidates if c.selector and "volume_index" in c.selector]
        kept = [c for c in indexed if c.selector["volume_index"] == args.volume]
        if indexed and not kept:
            raise InvalidArgumentError(
                f"--volume {args.volume} is out of range; the image holds {len(indexed)} volume(s) "
                f"(0..{len(indexed) - 1})",
                path=path,
            )
        candidates = [c for c in candidates if c not in indexed or c in kept]
    return [_Job(c.source, c.name, True, c.selector) for c in candidates]


def _collect_jobs(args: argparse.Namespace) -> tuple[list[_Job], list[SegstudioError]]:
    """Images and volumes to segment, and the inputs that failed already."""
    from segstudio.io.images import list_image_files
    from segstudio.io.project_volumes import folder_holds_volumes, is_volume_file

    image_paths: list[Path] = []
    volumes: list[_Job] = []
    failures: list[SegstudioError] = []
    for item in args.inputs:
        path = Path(item)
        if not path.exists():
            raise UnreadableInputError("no such file or folder", path=path)
        holds_volumes = folder_holds_volumes(path) if path.is_dir() else is_volume_file(path)
        if path.is_dir():
            try:
                image_paths.extend(list_image_files([path], recursive=args.recursive))
            except UnreadableInputError as error:
                if not holds_volumes or not error.problem.startswith("no image files"):
                    raise
        elif not holds_volumes:
            image_paths.append(path)
        if holds_volumes:
            try:
                volumes.extend(_volume_jobs(path, args, failures))
            except SegstudioError as error:
                log.error("%s", error)
                failures.append(error)
    jobs = [_Job(path, stem, False) for path, stem in unique_output_names(image_paths)]
    taken = {job.stem.casefold() for job in jobs}
    for job in volumes:
        stem, counter = job.stem, 2
        while stem.casefold() in taken:
            stem = f"{job.stem}_{counter}"
            counter += 1
        taken.add(stem.casefold())
        job.stem = stem
        jobs.append(job)
    return jobs, failures


def run(args: argparse.Namespace) -> int:
    from segstudio.inference import Predictor

    args.crf = args.crf or args.crf_3d  # --crf-3d is a way of refining

    if args.checkpoint is None:
        raise InvalidArgumentError(
            "predict needs trained weights: give --checkpoint FILE "
            "(the bundled demo model is resources/models/demo_unet.safetensors)"
        )
    window = parse_window(args)
    predictor, meta = Predictor.from_checkpoint(
        args.checkpoint, device=args.device, precision=args.precision, tile_size=args.tile
    )
    if window is not None and meta.preprocessing.normalization != "dtype":
        log.info("the model sees volumes as its checkpoint says (%s normalisation); --window applies to the "
                 "CRF's image", meta.preprocessing.normalization)
    if args.model is not None and args.model != meta.architecture:
        raise InvalidArgumentError(
            f"--model {args.model} does not match the checkpoint, which holds a {meta.architecture!r} model"
        )
    jobs, failures = _collect_jobs(args)
    _refuse_writing_over_sources(jobs, args.out)
    if args.fmt not in (None, "png") and any(not job.is_volume for job in jobs):
        log.info("2-D images are written as PNG masks; --format %s applies to volumes", args.fmt)
    log.info(
        "%s on %s (%s), %d input(s) -> %s",
        meta.architecture, predictor.device, predictor.precision_name, len(jobs), args.out,
    )
    total = len(jobs) + len(failures)
    with progress_bar(len(jobs), "predict", unit="input") as bar:
        for job in jobs:
            try:
                if job.is_volume:
                    _predict_volume(predictor, meta, job, args, window or meta.preprocessing.input_window)
                else:
                    _predict_image(predictor, meta, job, args, bar)
            except SegstudioError as error:
                if error.path is None:
                    error = type(error)(error.problem, path=job.source)
                failures.append(error)
                log.error("%s", error)
            bar.update(1)
    log.info("wrote %d of %d output(s) to %s", total - len(failures), total, args.out)
    if failures:
        log.error("%d of %d input(s) failed", len(failures), total)
        return 1
    return 0


def _refuse_writing_over_sources(jobs: list[_Job], out: Path) -> None:
    """Source images are never written: refuse an output folder where an output would replace one."""
    from segstudio.io.project_paths import same_file_key

    sources = {same_file_key(job.source) for job in jobs}
    for job in jobs:
        for name in (job.stem, f"{job.stem}.png", f"{job.stem}.nii.gz", f"{job.stem}.seg.dcm",
                     f"{job.stem}.probs.npz"):
            if same_file_key(out / name) in sources:
                raise InvalidArgumentError(
                    f"--out {out} holds the input {name}, which an output would replace; source images "
                    f"are never written. Choose another output folder"
                )


def _label_map(labels: np.ndarray, meta) -> np.ndarray:
    """*labels* in the label type of a project with the model's classes: uint8 up to
    254 classes, uint16 beyond (the predictor and the CRF switch at 255)."""
    from segstudio.io.masks import convert_labels, label_dtype

    return convert_labels(labels, label_dtype(len(meta.class_names)))


def _predict_image(predictor, meta, job: _Job, args: argparse.Namespace, bar) -> None:
    from segstudio.io.images import read_image
    from segstudio.io.masks import write_label_png
    from segstudio.tasks import run_to_completion

    image = read_image(job.source)
    result = run_to_completion(predictor.predict_steps(image), lambda p: bar.set_postfix_str(p.message))
    labels = result.labels
    if args.crf:
        labels = _refine(args, image, result.probabilities).labels
    write_label_png(args.out / f"{job.stem}.png", _label_map(labels, meta), meta.class_colors)
    if args.save_probs:
        _save_probabilities(args.out / f"{job.stem}.probs.npz", result, meta.class_names)


def _predict_volume(predictor, meta, job: _Job, args: argparse.Namespace, window) -> None:
    from segstudio.inference.volume import predict_volume_steps, slice_normaliser
    from segstudio.io.medical_export import write_dicom_seg, write_nifti_labels, write_png_slices
    from segstudio.io.project_volumes import read_source_volume
    from segstudio.tasks import run_to_completion

    fmt = args.fmt or "nifti"
    volume = read_source_volume(job.source, job.selector)
    if fmt == "dicom-seg" and volume.kind != "dicom":
        raise InvalidArgumentError(
            f"--format dicom-seg needs a DICOM source, this is a {volume.kind} volume; use --format nifti",
            path=job.source,
        )
    with progress_bar(volume.num_slices, job.stem, unit="slice") as slices_bar:
        result = run_to_completion(predict_volume_steps(predictor, volume.array, window=window, invert=volume.invert),
                                   lambda p: slices_bar.update(1))
    labels = result.labels
    if args.crf and args.crf_3d:
        from segstudio.refine.volume_crf import refine_volume

        normalise = slice_normaliser(volume.array, window, invert=volume.invert)
        grey = np.stack([normalise(k) for k in range(volume.num_slices)])
        labels = refine_volume(grey, result.probabilities, spacing=tuple(volume.spacing), keep_probabilities=False,
                               **crf_options(args)).labels
    elif args.crf:
        normalise = slice_normaliser(volume.array, window, invert=volume.invert)
        labels = np.stack([
            _refine(args, normalise(k), result.probabilities[:, k]).labels
            for k in range(volume.num_slices)
        ])
    labels = _label_map(labels, meta)
    if fmt == "nifti":
        write_nifti_labels(args.out / f"{job.stem}.nii.gz", labels, volume, meta.class_names, meta.class_colors,
                           allow_uneven_spacing=args.allow_uneven_spacing)
    elif fmt == "dicom-seg":
        write_dicom_seg(args.out / f"{job.stem}.seg.dcm", labels, volume, meta.class_names, meta.class_colors,
                        algorithm_type="AUTOMATIC")
    else:
        write_png_slices(args.out / job.stem, labels, meta.class_colors)
    if args.save_probs:
        _save_probabilities(args.out / f"{job.stem}.probs.npz", result, meta.class_names)


def _refine(args: argparse.Namespace, image, probabilities):
    from segstudio.refine import refine

    return refine(image, probabilities, keep_probabilities=False, **crf_options(args))


def _save_probabilities(path: Path, result, class_names) -> None:
    from segstudio.io.masks import atomic_write_bytes

    probabilities = result.probabilities
    if probabilities.dtype != np.uint8:
        # One class at a time: a volume's float32 copy would be twice the float16 map.
        quantised = np.empty(probabilities.shape, np.uint8)
        for c in range(probabilities.shape[0]):
            quantised[c] = np.rint(probabilities[c].astype(np.float32) * 255)
        probabilities = quantised
    buffer = io.BytesIO()
    np.savez_compressed(buffer, probabilities=probabilities, class_names=np.array(class_names), scale=255)
    atomic_write_bytes(path, buffer.getvalue())
