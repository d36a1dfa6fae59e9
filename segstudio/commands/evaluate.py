"""``segstudio evaluate``: scores of predicted masks against ground truth."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

import numpy as np

from segstudio.commands.common import read_classes_file
from segstudio.errors import DataError, SegstudioError

log = logging.getLogger(__name__)


def add_parser(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser(
        "evaluate",
        help="score predicted masks against ground-truth masks",
        description="Per-class IoU and Dice, mean IoU and pixel accuracy over all masks of PRED_DIR "
        "that have a ground-truth mask of the same stem in GT_DIR.",
    )
    parser.add_argument("pred_dir", type=Path, metavar="PRED_DIR")
    parser.add_argument("gt_dir", type=Path, metavar="GT_DIR")
    parser.add_argument(
        "--ignore", type=_ignore_value, default="auto", metavar="VALUE",
        help="ground-truth value to ignore (default auto: the unlabelled value of each ground-truth file, "
        "255 for 8-bit masks, 65535 for 16-bit ones)",
    )
    parser.add_argument("--num-classes", type=int, help="number of classes (default: from the masks)")
    parser.add_argument("--json", action="store_true", help="print the scores as JSON")
    parser.set_defaults(run=run)


def _ignore_value(text: str) -> int | str:
    """``--ignore``: ``auto`` or an integer."""
    if text.strip().lower() == "auto":
        return "auto"
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer or 'auto', got {text!r}") from None


def _ignore_for(mask: np.ndarray, ignore: int | str) -> int:
    """The value to ignore in *mask*: the explicit one, or the unlabelled value of its type."""
    if ignore != "auto":
        return int(ignore)
    from segstudio.io.masks import unlabelled_for

    return unlabelled_for(mask.dtype)  # read_mask gives uint8 or uint16


def run(args: argparse.Namespace) -> int:
    from segstudio.io.masks import read_mask
    from segstudio.metrics import Scores, confusion_matrix, format_table

    for folder in (args.pred_dir, args.gt_dir):
        if not folder.is_dir():
            raise DataError("no such folder", path=folder)
    truths = {p.stem: p for p in sorted(args.gt_dir.glob("*.png"))}
    predictions = {p.stem: p for p in sorted(args.pred_dir.glob("*.png"))}
    stems = sorted(set(truths) & set(predictions))
    if not stems:
        raise DataError(f"no predicted mask has a ground-truth mask of the same name in {args.gt_dir}",
                        path=args.pred_dir)
    missing = sorted(set(truths) - set(predictions))
    if missing:
        log.warning("%d ground-truth mask(s) have no prediction, e.g. %s", len(missing), missing[0])
    pairs = []
    failures = 0
    for stem in stems:
        try:
            prediction, truth = read_mask(predictions[stem]), read_mask(truths[stem])
        except SegstudioError as error:
            log.error("%s", error)
            failures += 1
            continue
        if prediction.shape != truth.shape:
            log.error("%s", DataError(f"size {prediction.shape} differs from the ground truth's {truth.shape}",
                                      path=predictions[stem]))
            failures += 1
            continue
        pairs.append((prediction, truth))
    if not pairs:
        raise DataError("no mask pair could be read", path=args.pred_dir)
    classes = read_classes_file(args.gt_dir.parent / "classes.json")
    num_classes = args.num_classes or (len(classes["names"]) if classes else _count_classes(pairs, args.ignore))
    cm = np.zeros((num_classes, num_classes), np.int64)
    for prediction, truth in pairs:
        cm += confusion_matrix(prediction, truth, num_classes, ignore_index=_ignore_for(truth, args.ignore))
    scores = Scores.from_confusion(cm)
    names = classes["names"] if classes and len(classes["names"]) == num_classes else None
    if args.json:
        sys.stdout.write(json.dumps({"images": len(pairs), **scores.to_dict()}, indent=2) + "\n")
    else:
        sys.stdout.write(f"{len(pairs)} image(s)\n{format_table(scores, names)}\n")
    return 1 if failures else 0


def _count_classes(pairs, ignore: int | str) -> int:
    highest = 0
    for prediction, truth in pairs:
        for mask in (prediction, truth):
            values = mask[mask != _ignore_for(mask, ignore)]
            if values.size:
                highest = max(highest, int(values.max()))
    return highest + 1
