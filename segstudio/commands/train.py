"""``segstudio train``: fine-tune a model on a folder of images and masks, or on the labelled
regions of a whole-slide image (a pyramidal TIFF and its chunked label store)."""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import math
import time
from pathlib import Path
from typing import Any

from segstudio.commands.common import progress_bar, read_classes_file
from segstudio.errors import CheckpointMismatchError, DataError, InvalidArgumentError

log = logging.getLogger(__name__)

HISTORY_NAME = "history.json"


#: the run length when none is given: what converged on real images on a 2-core CPU (README, "Training defaults")
DEFAULT_MINUTES = 5.0


def add_parser(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser(
        "train",
        help="train a model on images and masks",
        description=(
            "Train on DATA/images and DATA/masks (mask = image stem + .png, pixel value = class index; "
            "an 8-bit mask marks unlabelled pixels 255, a 16-bit mask, for more than 254 classes, 65535). "
            "Masks may be labelled in part: only labelled pixels count, and training crops are drawn "
            "where the labels are. DATA/classes.json, if present, names the classes and may fix the "
            "train/val split. Writes OUT/last.safetensors, OUT/best.safetensors and OUT/history.json. "
            f"With no --minutes, --steps or --epochs, a run lasts {DEFAULT_MINUTES:g} minutes. "
            "Runs data-parallel under torchrun (e.g. torchrun --nproc_per_node=4 -m segstudio train ...): "
            "NCCL on GPUs, gloo on CPUs, --batch-size per process, rank 0 writes the files. "
            "DATA may instead be a whole-slide image (pyramidal OME-TIFF, SVS or tiled TIFF) with --labels "
            "STORE, its label store (a Zarr folder such as predict-slide writes, 255 = unlabelled): training "
            "then reads only the labelled regions (groups of labelled 512-pixel chunks, with some context), "
            "never the whole slide; the regions, not the crops, are split into train and val; classes.json "
            "inside STORE, else beside it, names the classes (its split lists regions as Y0,Y1,X0,X1)."
        ),
    )
    parser.add_argument("data", type=Path, metavar="DATA",
                        help="folder with images/ and masks/, or a slide (pyramidal TIFF) with --labels")
    parser.add_argument("--labels", type=Path, metavar="STORE",
                        help="with a slide as DATA: the folder of its labels (a chunked Zarr label store)")
    parser.add_argument("--model", help="architecture to train from scratch (see `segstudio models`)")
    parser.add_argument("--out", type=Path, required=True, help="folder for checkpoints and history")
    parser.add_argument("--checkpoint", type=Path, help="start from this checkpoint's weights and architecture")
    length = parser.add_argument_group("run length (the first one reached ends the run)")
    length.add_argument("--minutes", type=float,
                        help=f"train for this many minutes (default {DEFAULT_MINUTES:g} when no --steps or "
                        "--epochs is given); the learning rate decays with the clock")
    length.add_argument("--time-budget", type=float, metavar="SECONDS", help="the same in seconds")
    length.add_argument("--steps", type=int, help="optimisation steps of --batch-size crops")
    length.add_argument("--epochs", type=int,
                        help="epochs; one epoch is as many crops as it takes to cover the labelled pixels once "
                        "(labelled pixels / crop area): 4 crops for a fully labelled 512 x 512 image at "
                        "--crop 256")
    parser.add_argument("--val-fraction", type=float, default=0.2,
                        help="share of images (of a slide: of labelled regions) held out for validation when "
                        "classes.json has no split (default 0.2)")
    parser.add_argument("--device", default="auto", help="auto (CUDA, then MPS, then CPU), cpu, cuda or mps")
    parser.add_argument("--batch-size", type=int, default=4,
                        help="crops per step (default 4; per process under torchrun)")
    parser.add_argument("--crop", type=int, default=256, help="training crop size in pixels (default 256)")
    parser.add_argument("--class-share", type=float, default=1 / 3,
                        help="share of crops centred on a labelled pixel of a randomly chosen class, so rare "
                        "classes are seen (default 1/3; the others lie around any labelled pixel)")
    parser.add_argument("--lr", type=float, help="learning rate (default: adamw 0.001, sgd 0.01)")
    parser.add_argument("--weight-decay", type=float, help="weight decay (default: adamw 1e-4, sgd 5e-4)")
    parser.add_argument("--optimizer", choices=["adamw", "sgd"], default="adamw",
                        help="adamw (default) or sgd (momentum 0.9, as in the papers)")
    parser.add_argument("--schedule", choices=["cosine", "poly", "constant"], default="cosine",
                        help="learning-rate decay over the run (default cosine)")
    parser.add_argument("--warmup", type=float, default=0.05,
                        help="share of the run over which the learning rate rises from zero (default 0.05)")
    parser.add_argument("--loss", choices=["auto", "ce", "dice_ce"], default="auto",
                        help="auto (default): Dice + cross-entropy when a class holds under 10%% of the labelled "
                        "pixels, else cross-entropy")
    parser.add_argument("--affinity", type=float, default=1.0,
                        help="weight of the term that spreads labels into unlabelled pixels of similar intensity "
                        "nearby (sparse corrections; default 1, 0 turns it off)")
    parser.add_argument("--border-weight", action="store_true",
                        help="weight the loss by the U-Net border map (separates touching objects)")
    parser.add_argument("--amp", choices=["auto", "off", "bf16", "fp16"], default="auto",
                        help="mixed precision (auto: on CUDA only)")
    parser.add_argument("--freeze-backbone", action="store_true", help="train only the head / decoder")
    parser.add_argument("--resume", action="store_true", help="continue the run saved in --out")
    parser.add_argument("--seed", type=int, default=0, help="seed for the split, the crops and their augmentation")
    inputs = parser.add_argument_group("input normalisation (recorded in the checkpoint; see README)")
    inputs.add_argument("--normalize", choices=["auto", "percentile", "range", "window", "dtype"],
                        help="auto (default for new models): 8-bit images / 255, 16-bit, 32-bit and float "
                        "images between their own --percentiles; percentile: every image so; range: "
                        "--value-range; window: --input-window; dtype: divide by the type's maximum "
                        "(checkpoints from before this choice). With --checkpoint: the checkpoint's")
    inputs.add_argument("--percentiles", metavar="LOW,HIGH", help="for percentile normalisation (default 1,99.8)")
    inputs.add_argument("--value-range", metavar="LOW,HIGH", help="for --normalize range: values mapped to 0..1")
    inputs.add_argument("--input-window", metavar="CENTER,WIDTH",
                        help="record a fixed window (e.g. 40,400 for CT soft tissue) in the checkpoint: volume "
                        "slices (and, with --normalize window, every image) become the model's input through it")
    parser.add_argument("--val-every", type=int, default=1, help="validate every N epochs (default 1)")
    parser.add_argument("--paper-variant", action="store_true",
                        help="with --model: the paper's network (for U-Net: valid convolutions, 64 channels, depth "
                        "4, no BatchNorm) instead of the training default (U-Net: same padding, BatchNorm, 16 "
                        "channels, depth 3)")
    parser.add_argument("--model-arg", action="append", default=[], metavar="KEY=VALUE",
                        help="builder argument, e.g. base_width=32 (values parsed as JSON where possible)")
    parser.set_defaults(run=run)


def _pair(text: str | None, option: str) -> tuple[float, float] | None:
    if text is None:
        return None
    try:
        low, high = (float(v) for v in text.split(","))
    except ValueError:
        raise InvalidArgumentError(f"{option} must be two numbers LOW,HIGH, got {text!r}") from None
    return low, high


def run_length(args: argparse.Namespace) -> tuple[int | None, int | None, float | None]:
    """``(epochs, steps, time_budget_s)`` from the command line, with the default length."""
    if args.minutes is not None and args.time_budget is not None:
        raise InvalidArgumentError("give --minutes or --time-budget, not both")
    budget = args.time_budget if args.minutes is None else args.minutes * 60.0
    if budget is None and args.steps is None and args.epochs is None:
        budget = DEFAULT_MINUTES * 60.0
    return args.epochs, args.steps, budget


def parse_model_args(items: list[str]) -> dict[str, Any]:
    """``["base_width=16", "padding=same"]`` -> ``{"base_width": 16, "padding": "same"}``."""
    parsed: dict[str, Any] = {}
    for item in items:
        key, sep, text = item.partition("=")
        key = key.strip()
        if not sep or not key:
            raise InvalidArgumentError(f"--model-arg expects KEY=VALUE, got {item!r}")
        try:
            parsed[key] = json.loads(text)
        except ValueError:
            parsed[key] = text
    return parsed


def _split(stems: list[str], classes: dict[str, Any] | None, val_fraction: float, seed: int,
           classes_path: Path, what: str = "image") -> tuple[list[int], list[int]]:
    from segstudio.training import split_train_val

    split = (classes or {}).get("split")
    if not split:
        return split_train_val(list(range(len(stems))), val_fraction, seed)
    if not isinstance(split, dict) or not all(isinstance(split.get(k, []), list) for k in ("train", "val")):
        raise DataError(f'"split" must hold lists "train" and "val" of {what}s', path=classes_path)
    val_stems = {str(s) for s in split.get("val", [])}
    train_stems = {str(s) for s in split.get("train", [])}
    missing = sorted((val_stems | train_stems) - set(stems))
    if missing:
        log.warning("%d %s(s) named in the split are not among the usable ones: %s",
                    len(missing), what, ", ".join(missing[:5]))
    unlisted = [s for s in stems if s not in val_stems and s not in train_stems]
    if unlisted:
        log.info("%d %s(s) not named in the split are used for training", len(unlisted), what)
    val = [i for i, s in enumerate(stems) if s in val_stems]
    train = [i for i, s in enumerate(stems) if s not in val_stems]
    log.info("using the train/val split of %s", classes_path)
    return train, val


def _num_classes_from_masks(samples: list[tuple[Any, Any]]) -> int:
    import numpy as np

    from segstudio.io.masks import unlabelled_of

    highest = 0
    for _, labels in samples:
        present = np.unique(labels)
        present = present[present != unlabelled_of(labels)]
        if present.size:
            highest = max(highest, int(present.max()))
    return max(highest + 1, 2)


def _build_model(args: argparse.Namespace, num_classes: int, in_channels: int,
                 class_names: list[str] | None, class_colors: list[tuple[int, int, int]] | None):
    from segstudio.models import get_training_model
    from segstudio.models.checkpoint import load_checkpoint, make_meta

    model_args = parse_model_args(args.model_arg)
    provenance: dict[str, Any] = {"data": str(args.data)}
    if getattr(args, "labels", None) is not None:
        provenance["labels"] = str(args.labels)
    if args.checkpoint is not None:
        if model_args or args.paper_variant:
            raise InvalidArgumentError("--model-arg and --paper-variant cannot be combined with --checkpoint: "
                                       "the checkpoint fixes the architecture")
        model, parent = load_checkpoint(args.checkpoint)
        if args.model is not None and args.model != parent.architecture:
            raise CheckpointMismatchError(
                f"--model {args.model} does not match the checkpoint, which holds a {parent.architecture!r} model",
                path=args.checkpoint,
            )
        if parent.num_classes != num_classes:
            raise CheckpointMismatchError(
                f"the checkpoint predicts {parent.num_classes} classes but the data has {num_classes}",
                path=args.checkpoint,
            )
        provenance["parent"] = str(args.checkpoint)
        meta = make_meta(
            model,
            class_names=class_names or parent.class_names,
            class_colors=class_colors or parent.class_colors,
            preprocessing=parent.preprocessing,
            provenance=provenance,
        )
        return model, _with_normalization(meta, args, keep=True)
    if args.model is None:
        raise InvalidArgumentError("give --model NAME (see `segstudio models`) or --checkpoint FILE")
    given = model_args.pop("num_classes", num_classes)
    if given != num_classes:
        raise InvalidArgumentError(f"--model-arg num_classes={given} but the data has {num_classes} classes")
    model_args.setdefault("in_channels", in_channels)
    model = get_training_model(args.model, paper=args.paper_variant, num_classes=num_classes, **model_args)
    meta = make_meta(model, class_names=class_names, class_colors=class_colors, provenance=provenance)
    return model, _with_normalization(meta, args, keep=False)


def _with_normalization(meta, args: argparse.Namespace, *, keep: bool):
    """Record the command line's input normalisation in the checkpoint's preprocessing.

    ``keep``: a checkpoint's own rule stays unless --normalize changes it."""
    from segstudio.commands.predict import parse_window
    from segstudio.preprocess import with_normalization

    window = None
    if getattr(args, "input_window", None):
        window = parse_window(argparse.Namespace(window=args.input_window, window_preset=None))
    mode = args.normalize or (meta.preprocessing.normalization if keep else "auto")
    if keep and args.normalize and args.normalize != meta.preprocessing.normalization:
        log.warning("the checkpoint was trained with %s normalisation; training it on %s-normalised input "
                    "changes what it sees", meta.preprocessing.normalization, args.normalize)
    meta.preprocessing = with_normalization(
        meta.preprocessing, mode, percentiles=_pair(args.percentiles, "--percentiles"),
        value_range=_pair(args.value_range, "--value-range"), input_window=window,
    )
    return meta


@dataclasses.dataclass
class _Data:
    """What a run trains on: ``samples`` with their ``names`` (image stems, or a slide's
    regions as Y0,Y1,X0,X1) and the files ``skipped`` on the way."""

    names: list[str]
    samples: list[Any]
    skipped: list[Any]


def _classes_path(args: argparse.Namespace) -> Path:
    """DATA/classes.json; for a slide, STORE/classes.json, else the one beside STORE."""
    if args.labels is None:
        return args.data / "classes.json"
    inside = args.labels / "classes.json"
    return inside if inside.is_file() else args.labels.parent / "classes.json"


def _folder_data(args: argparse.Namespace, classes: dict[str, Any] | None, build) -> tuple[_Data, Any, Any]:
    """DATA/images and DATA/masks in memory, and the model (``build(num_classes, in_channels)``)."""
    from segstudio.training import find_pairs, load_samples
    from segstudio.training.data import check_labels

    pairs = find_pairs(args.data)
    loaded = load_samples(pairs)
    pairs_by_image = {Path(image): Path(mask) for image, mask in pairs}
    if loaded.skipped:
        log.warning("%d file pair(s) were skipped: %s", len(loaded.skipped), "; ".join(map(str, loaded.skipped)))
    num_classes = len(classes["names"]) if classes is not None else _num_classes_from_masks(loaded.samples)
    in_channels = 3 if any(image.ndim == 3 for image, _ in loaded.samples) else 1
    check_labels(loaded.samples, num_classes, [pairs_by_image[path] for path in loaded.paths])
    model, meta = build(num_classes, in_channels)
    return _Data([path.stem for path in loaded.paths], loaded.samples, loaded.skipped), model, meta


def _slide_data(args: argparse.Namespace, classes: dict[str, Any] | None, build) -> tuple[_Data, Any, Any]:
    """The labelled regions of the slide DATA (labels in --labels), read region by region after
    the model is built (the regions carry its intensity map), and the model."""
    from segstudio.io.slide import Slide
    from segstudio.io.tiled_labels import TiledLabels
    from segstudio.training.slide_data import (
        check_shapes,
        label_values,
        region_name,
        region_samples,
    )

    if args.labels is None:
        raise InvalidArgumentError("a file as DATA is a slide: name its label store with --labels STORE "
                                   "(or give a folder with images/ and masks/)", path=args.data)
    if not args.data.is_file():
        what = "not a slide file" if args.data.exists() else "no such slide"
        raise DataError(f"{what}: with --labels, DATA is a whole-slide image file (pyramidal TIFF)",
                        path=args.data)
    if not (args.labels / ".zarray").is_file():
        raise DataError("not a label store (no .zarray): --labels names the Zarr folder of the slide's labels, "
                        "as predict-slide or the studio writes it", path=args.labels)
    store = TiledLabels.open(args.labels)
    with Slide(args.data) as slide:
        check_shapes(slide, store)
        values = label_values(store)
        if not values:
            raise DataError("the label store holds no labels: nothing to train on", path=args.labels)
        if classes is not None:
            num_classes = len(classes["names"])
            if values[-1] >= num_classes:
                raise DataError(f"the label store holds class {values[-1]} but {_classes_path(args)} names "
                                f"{num_classes} classes (0..{num_classes - 1}; {store.unlabelled} = unlabelled)",
                                path=args.labels)
        else:
            num_classes = max(values[-1] + 1, 2)
        model, meta = build(num_classes, 3 if slide.channels > 1 else 1)
        found = region_samples(slide, store, meta.preprocessing)
    labelled = sum(int((labels != store.unlabelled).sum()) for _, (_, labels) in found)
    log.info("%s: %d labelled region(s), %d labelled pixels (%.2f%% of the slide), %d classes",
             args.data.name, len(found), labelled, 100 * labelled / (slide.shape[0] * slide.shape[1]), num_classes)
    return _Data([region_name(region) for region, _ in found], [sample for _, sample in found], []), model, meta


def run(args: argparse.Namespace) -> int:
    from segstudio.training.distributed import cleanup, init_distributed

    context = init_distributed(args.device)
    try:
        if context is not None and not context.is_main:
            # one rank reports; the others speak only when something is wrong
            logging.getLogger("segstudio").setLevel(logging.WARNING)
        return _train(args, context)
    finally:
        cleanup(context)


def _train(args: argparse.Namespace, context: Any) -> int:
    from tqdm.contrib.logging import logging_redirect_tqdm

    from segstudio.io.masks import atomic_write_bytes
    from segstudio.models.registry import get_spec
    from segstudio.tasks import Progress
    from segstudio.training import (
        BEST_NAME,
        LAST_NAME,
        STATE_NAME,
        TrainConfig,
        train_steps,
    )

    epochs, steps, budget = run_length(args)
    config = TrainConfig(
        epochs=epochs, steps=steps, time_budget_s=budget, batch_size=args.batch_size, crop_size=args.crop,
        class_share=args.class_share, optimizer=args.optimizer, lr=args.lr, weight_decay=args.weight_decay,
        schedule=args.schedule, warmup=args.warmup, loss=args.loss, affinity=args.affinity,
        border_weight=args.border_weight,
        freeze_backbone=args.freeze_backbone, amp=args.amp, device=args.device, seed=args.seed,
        val_every=args.val_every,
    )
    if (args.out / STATE_NAME).is_file() and not args.resume:
        raise InvalidArgumentError(
            "this folder already holds a training run; add --resume to continue it or choose another --out",
            path=args.out,
        )
    classes_path = _classes_path(args)
    classes = read_classes_file(classes_path)
    if classes is not None:
        names, colors = classes["names"], classes["colors"]
    else:
        names = colors = None

    def build(num_classes: int, in_channels: int):
        return _build_model(args, num_classes, in_channels, names, colors)

    slide = args.labels is not None or args.data.is_file()
    data, model, meta = (_slide_data if slide else _folder_data)(args, classes, build)
    what = "region" if slide else "image"
    train_index, val_index = _split(data.names, classes, args.val_fraction, args.seed, classes_path, what)
    if not train_index:
        raise DataError(f"the split leaves no {what} for training", path=classes_path)
    if not val_index and slide and len(data.names) == 1:
        log.warning("the slide has one labelled region: it is all for training and nothing is validated, so "
                    "best.safetensors will simply be the last epoch's model (label a second region, apart from "
                    "the first, to validate)")
    elif not val_index:
        log.warning("no validation %ss: best.safetensors will simply be the last epoch's model", what)
    pretrained = any(item.split("=", 1)[0].strip() == "weights_backbone" for item in args.model_arg)
    if args.freeze_backbone and args.checkpoint is None and not pretrained:
        log.warning("--freeze-backbone on a network trained from scratch keeps its random backbone; "
                    "it learns far less than a full run")
    if args.checkpoint is None and not pretrained and get_spec(meta.architecture).pretrained_trunk:
        # measured on a 2-core CPU: FCN-8s 18 s and DeepLab-LargeFOV 1.6 s a step of 4 crops of 128 x 128;
        # after 150 steps from scratch (4.7 minutes) DeepLab still answered one class
        log.warning("%s from scratch: its VGG16 trunk has no normalisation layers and learns slowly without "
                    "pretrained weights (minutes on a CPU give a one-class model); start from ImageNet weights "
                    "(--model-arg weights_backbone=imagenet) or a --checkpoint, or train a unet",
                    meta.architecture)

    train = [data.samples[i] for i in train_index]
    val = [data.samples[i] for i in val_index]
    if slide:
        from segstudio.training.slide_data import pieces

        val = [piece for sample in val for piece in pieces(sample)]  # scored piece by piece
    bar = None
    is_main = context is None or context.is_main
    last_line = -math.inf
    task = train_steps(model, train, val, config, args.out, meta=meta, resume=args.resume, distributed=context)
    try:
        # log lines go above the progress bar instead of through it
        with logging_redirect_tqdm():
            while True:
                try:
                    progress: Progress = next(task)
                except StopIteration as stop:
                    result = stop.value
                    break
                if progress.stage == "train" and is_main:
                    if bar is None:
                        bar = progress_bar(progress.total, "train", unit="step")
                    if progress.total and bar.total != progress.total:
                        bar.total = progress.total  # a time budget's length is estimated from the pace
                    bar.set_postfix(epoch=int(progress.metrics["epoch"]), loss=f"{progress.metrics['loss']:.4f}",
                                    refresh=False)
                    bar.update(progress.done - bar.n)
                elif progress.stage == "epoch" and is_main:
                    # one line every few seconds at most: epochs of small data sets last seconds
                    if time.monotonic() - last_line >= _LINE_EVERY_S or progress.done >= (progress.total or 0):
                        last_line = time.monotonic()
                        log.info("%s", _epoch_line(progress.done, progress.metrics))
    except KeyboardInterrupt:
        log.info("interrupted; the last finished epoch is saved in %s (continue with --resume)", args.out)
        raise
    finally:
        if bar is not None:
            bar.close()

    if not is_main:
        return 0
    collapse = result.collapse.to_dict() if result.collapse is not None else None
    report = {
        "model": meta.architecture,
        "preprocessing": dataclasses.asdict(meta.preprocessing),
        "collapse": collapse,
        "classes": meta.class_names,
        **({"slide": str(args.data), "labels": str(args.labels)} if slide else {}),
        f"train_{what}s": [data.names[i] for i in train_index],
        f"val_{what}s": [data.names[i] for i in val_index],
        "skipped": [str(error) for error in data.skipped],
        "config": config.to_dict(),
        "processes": 1 if context is None else context.world_size,
        "epochs": result.history,
    }
    history_path = atomic_write_bytes(args.out / HISTORY_NAME, (json.dumps(report, indent=2) + "\n").encode())
    best = _best_epoch(result.history)
    if best is not None:
        log.info("best validation mIoU %.4f (Dice %.4f) at epoch %d",
                 best["val_mean_iou"], best["val_mean_dice"] or math.nan, best["epoch"])
    if result.stopped_early:
        log.info("stopped by the time budget after %d steps (%d epochs); --resume with a longer budget continues",
                 result.steps, result.epochs_done)
    log.info("wrote %s, %s and %s", args.out / LAST_NAME, args.out / BEST_NAME, history_path)
    if result.collapse is not None and result.collapse.collapsed:
        log.warning("THE MODEL COLLAPSED: %s", result.collapse.reason)
    return 0


#: seconds between two epoch lines in the log
_LINE_EVERY_S = 10.0


def _epoch_line(step: int, metrics: dict[str, float]) -> str:
    line = f"epoch {int(metrics['epoch'])} (step {step}): loss {metrics['loss']:.4f}"
    if "mean_iou" in metrics:
        line += f", val mIoU {metrics['mean_iou']:.4f}, Dice {metrics['mean_dice']:.4f}"
    return line


def _best_epoch(history: list[dict[str, Any]]) -> dict[str, Any] | None:
    scored = [h for h in history if h.get("val_mean_iou") is not None]
    return max(scored, key=lambda h: h["val_mean_iou"]) if scored else None
