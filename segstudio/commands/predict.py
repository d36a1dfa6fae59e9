"""``segstudio predict``: masks (and probabilities) for images on disk."""

from __future__ import annotations

import argparse
import io
import logging
from pathlib import Path

import numpy as np

from segstudio.commands.common import progress_bar, unique_output_names
from segstudio.errors import InvalidArgumentError, SegstudioError

log = logging.getLogger(__name__)


def add_parser(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser(
        "predict",
        help="segment images with a trained model",
        description="Write one indexed-palette PNG mask per image (same stem and size as the source).",
    )
    parser.add_argument("inputs", nargs="+", metavar="INPUT", help="image files or folders")
    parser.add_argument("--model", help="architecture name; must match the checkpoint's if both are given")
    parser.add_argument("--checkpoint", type=Path, help="trained weights (.safetensors checkpoint)")
    parser.add_argument("--out", type=Path, required=True, help="folder for the masks")
    parser.add_argument("--crf", action="store_true", help="refine each mask with the dense CRF")
    parser.add_argument("--device", default="auto", help="auto (CUDA, then MPS, then CPU), cpu, cuda or mps")
    parser.add_argument("--precision", default="auto", choices=["auto", "fp32", "bf16", "fp16"])
    parser.add_argument("--tile", type=int, default=512, help="sliding-window tile size in pixels (default 512)")
    parser.add_argument("--save-probs", action="store_true", help="also write <stem>.probs.npz (uint8, p x 255)")
    parser.add_argument("--recursive", action="store_true", help="look for images in sub-folders too")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from segstudio.inference import Predictor
    from segstudio.io.images import list_image_files, read_image
    from segstudio.io.masks import write_indexed_png

    if args.checkpoint is None:
        raise InvalidArgumentError(
            "predict needs trained weights: give --checkpoint FILE "
            "(the bundled demo model is resources/models/demo_unet.safetensors)"
        )
    predictor, meta = Predictor.from_checkpoint(
        args.checkpoint, device=args.device, precision=args.precision, tile_size=args.tile
    )
    if args.model is not None and args.model != meta.architecture:
        raise InvalidArgumentError(
            f"--model {args.model} does not match the checkpoint, which holds a {meta.architecture!r} model"
        )
    files = list_image_files(args.inputs, recursive=args.recursive)
    log.info(
        "%s on %s (%s), %d image(s) -> %s",
        meta.architecture, predictor.device, predictor.precision_name, len(files), args.out,
    )
    failures: list[SegstudioError] = []
    with progress_bar(len(files), "predict", unit="image") as bar:
        for path, stem in unique_output_names(files):
            try:
                image = read_image(path)
                result = _run_one(predictor, image, bar)
                labels = result.labels
                if args.crf:
                    labels = _refine(image, result).labels
                write_indexed_png(args.out / f"{stem}.png", labels, meta.class_colors)
                if args.save_probs:
                    _save_probabilities(args.out / f"{stem}.probs.npz", result, meta.class_names)
            except SegstudioError as error:
                if error.path is None:
                    error = type(error)(error.problem, path=path)
                failures.append(error)
                log.error("%s", error)
            bar.update(1)
    written = len(files) - len(failures)
    log.info("wrote %d mask(s) to %s", written, args.out)
    if failures:
        log.error("%d of %d image(s) failed", len(failures), len(files))
        return 1
    return 0


def _run_one(predictor, image, bar):
    from segstudio.tasks import run_to_completion

    def show(progress):
        bar.set_postfix_str(progress.message)

    return run_to_completion(predictor.predict_steps(image), show)


def _refine(image, result):
    from segstudio.refine import refine

    return refine(image, result.probabilities_float())


def _save_probabilities(path: Path, result, class_names) -> None:
    from segstudio.io.masks import atomic_write_bytes

    probabilities = result.probabilities
    if probabilities.dtype != np.uint8:
        probabilities = np.rint(result.probabilities_float() * 255).astype(np.uint8)
    buffer = io.BytesIO()
    np.savez_compressed(buffer, probabilities=probabilities, class_names=np.array(class_names), scale=255)
    atomic_write_bytes(path, buffer.getvalue())
