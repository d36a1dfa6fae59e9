"""Model-aided correction on real data: strokes to reach Dice 0.9 with the brush
alone, and with scribbles refined by the CRF and live update; images taken in
file order or in order of the model's uncertainty.

Run from the repository root::

    python benchmarks/bench_assist.py [--images 6] [--train-seconds 30] [--data em,nuclei]

The simulated user of ``bench_loop.py`` (the "annotator" part), on the same
real data: ISBI 2012 EM slices (and StarDist's nuclei image in 128 x 128
tiles when ``pip install stardist`` is there). For each image it looks at
the model's proposal and fixes the largest wrong region first (connected
wrong pixels of one true class) until the image's mean Dice reaches 0.9;
between images the model trains on every image so far for
``--train-seconds`` (segstudio's training loop with its defaults). The first
image is annotated from scratch in every condition. Strokes:

* brush: a region of ``a`` pixels takes ``ceil(a / 400)`` strokes (a
  10-pixel brush dragged 40 pixels), as in ``bench_loop.py``;
* scribble (regions of 40 pixels or more): one short stroke (a disc of
  radius 3 at the region's deepest pixel) of the true class, then
  :func:`segstudio.refine.refine_with_scribbles` with every stroke of the
  image so far; the user accepts the preview when it raises the image's
  Dice (as one looks before pressing Accept), and brushes what is still
  wrong of the region when more than half of it is;
* live update: after every 5 strokes (``--live-every``) a :class:`~segstudio.training.live.LiveTrainer`
  (the studio's defaults) learns from the strokes so far and the image is
  predicted again; what the user set stays.

Uncertainty order: the next image is the remaining one with the highest
mean entropy of the current model's prediction
(:func:`segstudio.inference.uncertainty.mean_entropy`), as the studio's N key
chooses; file order takes them as they come.
"""

from __future__ import annotations

import argparse
import math
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from scipy import ndimage

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from _measure import machine  # noqa: E402
from _realdata import isbi_slices, mean_dice, stardist_nuclei  # noqa: E402
from bench_loop import STROKE_PX, TARGET_DICE, from_scratch, new_model, train  # noqa: E402

from segstudio.inference import Predictor  # noqa: E402
from segstudio.inference.uncertainty import mean_entropy  # noqa: E402
from segstudio.refine import refine_with_scribbles  # noqa: E402
from segstudio.tasks import run_to_completion  # noqa: E402
from segstudio.training.live import LiveTrainer  # noqa: E402

SCRIBBLE_MIN_PX = 40
SCRIBBLE_RADIUS = 3
LIVE_EVERY = 5
LIVE_IMAGES = 4  # other labelled images a live update also learns from, as in the studio
CLASSES = 2


def _prediction(model, meta, image):
    return Predictor(model, preprocessing=meta.preprocessing, device="cpu", precision="fp32").predict(image)


def _largest_wrong_region(labels: np.ndarray, truth: np.ndarray) -> tuple[int, int, np.ndarray] | None:
    best = None
    for c in range(CLASSES):
        components, count = ndimage.label((truth == c) & (labels != c))
        if count:
            areas = np.bincount(components.ravel())[1:]
            index = int(np.argmax(areas))
            if best is None or areas[index] > best[0]:
                best = (int(areas[index]), c, components == index + 1)
    return best


def _dab(mask: np.ndarray) -> np.ndarray:
    """A disc of radius 3 around the region's deepest pixel, inside the region."""
    depth = ndimage.distance_transform_edt(mask)
    y, x = np.unravel_index(int(np.argmax(depth)), mask.shape)
    rows, cols = np.ogrid[: mask.shape[0], : mask.shape[1]]
    return ((rows - y) ** 2 + (cols - x) ** 2 <= SCRIBBLE_RADIUS**2) & mask


def correct_image(image, truth, model, meta, labelled, *, scribbles: bool, live: bool, live_every: int = LIVE_EVERY):
    """One image: (labels, pixels set by the user, strokes, CRF refinements accepted, live updates)."""
    result = _prediction(model, meta, image)
    probabilities, labels = result.probabilities_float(), result.labels.copy()
    user = np.full(truth.shape, 255, np.uint8)  # what the user set (strokes and brushed regions)
    trainer = LiveTrainer(model, meta, device="cpu") if live else None
    pixels = strokes = accepted = updates = since_update = 0
    while mean_dice(labels, truth, CLASSES) < TARGET_DICE:
        wrong = _largest_wrong_region(labels, truth)
        if wrong is None:
            break
        area, c, mask = wrong
        if scribbles and area >= SCRIBBLE_MIN_PX:
            dab = _dab(mask)
            user[dab] = c
            labels[dab] = c
            strokes += 1
            pixels += int(dab.sum())
            refined = refine_with_scribbles(image, probabilities, user, unlabelled=255)
            candidate = labels.copy()
            candidate[refined.region] = refined.labels
            candidate[user != 255] = user[user != 255]
            if mean_dice(candidate, truth, CLASSES) > mean_dice(labels, truth, CLASSES):
                labels = candidate
                accepted += 1
            remaining = mask & (labels != c)
            if remaining.sum() > area / 2:
                labels[remaining] = c
                user[remaining] = c
                strokes += math.ceil(int(remaining.sum()) / STROKE_PX)
                pixels += int(remaining.sum())
        else:
            labels[mask] = c
            user[mask] = c
            strokes += math.ceil(area / STROKE_PX)
            pixels += area
        since_update += 1
        if live and since_update >= live_every:
            since_update = 0
            run_to_completion(trainer.update_steps([(image, user), *labelled[-LIVE_IMAGES:]]))
            fresh = trainer.predictor().predict(image)
            probabilities, labels = fresh.probabilities_float(), fresh.labels.copy()
            labels[user != 255] = user[user != 255]
            updates += 1
    return labels, pixels, strokes, accepted, updates


def session(name: str, images, seconds: float, work: Path, *, tools: bool, order: str,
            live_every: int = LIVE_EVERY) -> list[dict]:
    """One simulated user through every image; a row per image."""
    model, meta = new_model()
    remaining = list(range(len(images)))
    labelled: list[tuple[np.ndarray, np.ndarray]] = []
    rows = []
    while remaining:
        if order == "uncertainty" and labelled:
            scores = {i: mean_entropy(_prediction(model, meta, images[i][1]).probabilities) for i in remaining}
            pick = max(remaining, key=lambda i: (scores[i], -i))
        else:
            pick = remaining[0]
        remaining.remove(pick)
        stem, image, truth = images[pick]
        started = time.perf_counter()
        if not labelled:
            labels, pixels, strokes = from_scratch(truth, CLASSES)
            accepted = updates = 0
            proposal = float("nan")
        else:
            proposal = mean_dice(_prediction(model, meta, image).labels, truth, CLASSES)
            labels, pixels, strokes, accepted, updates = correct_image(image, truth, model, meta, labelled,
                                                                       scribbles=tools, live=tools,
                                                                       live_every=live_every)
        simulated = time.perf_counter() - started
        labelled.append((image, labels.astype(np.uint8)))
        train(model, meta, labelled, seconds, work / f"{name}-{'tools' if tools else 'brush'}-{order}-{len(rows)}")
        rows.append({"stem": stem, "proposal": proposal, "pixels": pixels, "strokes": strokes,
                     "accepted": accepted, "updates": updates, "seconds": simulated,
                     "dice": mean_dice(labels, truth, CLASSES)})
    return rows


def report(name: str, runs: dict[tuple[str, str], list[dict]]) -> None:
    print(f"{name}: per image after the first (the first is painted from scratch in every condition)")
    print(f"  {'condition':26s} {'images':>6s} {'strokes/img':>11s} {'pixels/img':>10s} {'min Dice':>8s} "
          f"{'CRF kept':>8s} {'live upd.':>9s}  order")
    for (tools, order), rows in runs.items():
        later = rows[1:]
        print(f"  {tools + ', ' + order + ' order':26s} {len(later):6d} "
              f"{statistics.mean(r['strokes'] for r in later):11.1f} "
              f"{statistics.mean(r['pixels'] for r in later):10.0f} {min(r['dice'] for r in later):8.3f} "
              f"{sum(r['accepted'] for r in later):8d} {sum(r['updates'] for r in later):9d}  "
              f"{' '.join(r['stem'] for r in rows)}")
    brush, assisted = runs.get(("brush", "file")), runs.get(("tools", "file"))
    if brush and assisted:
        b = sum(r["strokes"] for r in brush[1:])
        a = sum(r["strokes"] for r in assisted[1:])
        print(f"  strokes, file order: brush {b}, with the tools {a} ({b / max(a, 1):.1f}x fewer)")
    for tools in ("brush", "tools"):
        f, u = runs.get((tools, "file")), runs.get((tools, "uncertainty"))
        if f and u:
            print(f"  {tools}: all {len(f)} images, strokes in file order {sum(r['strokes'] for r in f)}, "
                  f"in uncertainty order {sum(r['strokes'] for r in u)}")
    print(flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=6)
    parser.add_argument("--train-seconds", type=float, default=30.0)
    parser.add_argument("--data", default="em,nuclei")
    parser.add_argument("--conditions", default="brush:file,tools:file,brush:uncertainty,tools:uncertainty")
    parser.add_argument("--live-every", type=int, default=LIVE_EVERY,
                        help=f"strokes between live updates (default {LIVE_EVERY}; the studio updates at every "
                             "pause of 1 s, so 1 is a user who pauses after each stroke)")
    args = parser.parse_args()
    print(f"machine: {machine()}")
    data = {}
    if "em" in args.data:
        data["ISBI 2012 EM"] = isbi_slices()[: args.images]
    nuclei = stardist_nuclei() if "nuclei" in args.data else None
    if nuclei is not None:
        image, truth = nuclei
        tiles = [(f"tile{r}{c}", image[r * 128:(r + 1) * 128, c * 128:(c + 1) * 128],
                  truth[r * 128:(r + 1) * 128, c * 128:(c + 1) * 128]) for r in range(4) for c in range(4)]
        data["StarDist nuclei tiles"] = tiles[: args.images]
    elif "nuclei" in args.data:
        print("nuclei skipped (pip install stardist)")
    conditions = [tuple(c.split(":")) for c in args.conditions.split(",") if c]
    with tempfile.TemporaryDirectory(prefix="segstudio-bench-assist-") as tmp:
        for name, images in data.items():
            runs = {}
            for tools, order in conditions:
                started = time.perf_counter()
                runs[(tools, order)] = session(name, images, args.train_seconds, Path(tmp), tools=tools == "tools",
                                               order=order, live_every=args.live_every)
                print(f"  ({name}: {tools}, {order} order done in {time.perf_counter() - started:.0f} s)",
                      flush=True)
            report(name, runs)


if __name__ == "__main__":
    main()
