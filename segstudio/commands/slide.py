"""``segstudio predict-slide``: a model over a whole-slide image, tile by tile,
into a chunked label store that resumes; ``segstudio pyramid``: a plain large
image made into a pyramidal OME-TIFF."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from segstudio.commands.common import add_crf_backend_option, crf_options, progress_bar
from segstudio.errors import InvalidArgumentError
from segstudio.io.masks import MAX_CLASSES_8BIT
from segstudio.tasks import run_to_completion

log = logging.getLogger(__name__)


def add_parser(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser(
        "predict-slide",
        help="run a model over a whole-slide image (pyramidal TIFF) into a chunked label store",
        description="Predict a whole-slide image (pyramidal OME-TIFF, SVS or tiled TIFF) tile by tile without "
        "reading it whole. The labels go to OUT/<stem>.labels.zarr, a Zarr v2 folder (napari and zarr open it; "
        "255 = not predicted). Tiles over empty glass are skipped (tissue found on a coarse level). Run it "
        "again on the same OUT to resume an interrupted run.",
    )
    parser.add_argument("slide", type=Path, metavar="SLIDE")
    parser.add_argument("--checkpoint", type=Path, required=True, help="trained weights (.safetensors)")
    parser.add_argument("--out", type=Path, required=True, help="folder for the label store")
    parser.add_argument("--region", metavar="Y0,Y1,X0,X1", help="only this level-0 box")
    parser.add_argument("--all-tiles", action="store_true", help="predict glass tiles too")
    parser.add_argument("--crf", action="store_true",
                        help="refine each tile with the dense CRF (default settings; the tile's context included)")
    add_crf_backend_option(parser, "CRF implementation (as for `segstudio predict`)")
    parser.add_argument("--ome-tiff", action="store_true",
                        help="also write OUT/<stem>.labels.ome.tif, the labels as a pyramidal OME-TIFF "
                             "(QuPath, napari), built chunk by chunk")
    parser.add_argument("--geojson", action="store_true",
                        help="also write OUT/<stem>.labels.geojson, class polygons QuPath imports "
                             "(File > Import objects), traced group by group of labelled chunks")
    parser.add_argument("--device", default="auto", help="auto (CUDA, then MPS, then CPU), cpu, cuda or mps")
    parser.add_argument("--precision", default="auto", choices=["auto", "fp32", "bf16", "fp16"])
    parser.set_defaults(run=run)

    pyramid = commands.add_parser(
        "pyramid", help="make a plain large image (PNG, JPEG, TIFF) into a pyramidal OME-TIFF",
        description="Read IMAGE once and write OUT, a tiled OME-TIFF with levels halved down to 512 px "
        "(lossless), which segstudio, QuPath and napari read region by region.",
    )
    pyramid.add_argument("image", type=Path, metavar="IMAGE")
    pyramid.add_argument("--out", type=Path, required=True, help="the .ome.tif to write")
    pyramid.set_defaults(run=run_pyramid)


def run(args: argparse.Namespace) -> int:
    from segstudio.inference.predictor import Predictor
    from segstudio.inference.slide import predict_slide_steps, run_key
    from segstudio.io.slide import Slide
    from segstudio.io.tiled_labels import TiledLabels

    region = _region(args.region)
    predictor, meta = Predictor.from_checkpoint(args.checkpoint, device=args.device, precision=args.precision)
    with Slide(args.slide) as slide:
        folder = args.out / f"{slide_stem(args.slide)}.labels.zarr"
        if (folder / ".zarray").is_file():
            store = TiledLabels.open(folder)
            log.info("resuming into %s", folder)
        else:
            dtype = "uint8" if len(meta.class_names) <= MAX_CLASSES_8BIT else "uint16"
            store = TiledLabels.create(folder, slide.shape, dtype)
        crf, options = None, None
        if args.crf:
            from segstudio.refine import CRFParams

            crf, options = CRFParams(), crf_options(args)
        task = predict_slide_steps(predictor, slide, store, region=region, skip_glass=not args.all_tiles,
                                   crf=crf, crf_options=options, run_key=run_key(args.checkpoint, crf))
        with progress_bar(None, slide.path.name, unit="tile") as bar:
            outcome = run_to_completion(task, lambda progress: _show(bar, progress))
    log.info("%s: %d tile(s) predicted, %d over glass skipped, %d done before; labels in %s",
             args.slide.name, outcome.predicted, outcome.glass, outcome.resumed, folder)
    if args.ome_tiff:
        from segstudio.io.slide_export import write_store_pyramid_steps

        target = args.out / f"{slide_stem(args.slide)}.labels.ome.tif"
        run_to_completion(write_store_pyramid_steps(TiledLabels.open(folder), target))
        log.info("wrote %s", target)
    if args.geojson:
        from segstudio.io.slide_export import write_store_geojson

        target = args.out / f"{slide_stem(args.slide)}.labels.geojson"
        write_store_geojson(target, TiledLabels.open(folder), meta.class_names, meta.class_colors)
        log.info("wrote %s", target)
    return 0


def run_pyramid(args: argparse.Namespace) -> int:
    from segstudio.io.pyramid import build_pyramid_from_file_steps

    with progress_bar(None, args.image.name, unit="level") as bar:
        run_to_completion(build_pyramid_from_file_steps(args.image, args.out), lambda progress: _show(bar, progress))
    log.info("wrote %s", args.out)
    return 0


def slide_stem(path: Path) -> str:
    """The file name without its image suffix: ``case.1.ome.tif`` -> ``case.1`` (not ``case``)."""
    name = path.name
    for suffix in (".ome.tiff", ".ome.tif"):
        if name.lower().endswith(suffix):
            return name[: -len(suffix)]
    return path.stem


def _show(bar, progress) -> None:
    bar.total, bar.n = progress.total, progress.done
    bar.refresh()


def _region(text: str | None):
    if text is None:
        return None
    try:
        y0, y1, x0, x1 = (int(v) for v in text.split(","))
    except ValueError as error:
        raise InvalidArgumentError(f"--region takes Y0,Y1,X0,X1 (whole numbers), got {text!r}") from error
    return (y0, y1), (x0, x1)
