"""The correct -> train -> better-model loop on real data, with a simulated annotator.

Run from the repository root (``pip install stardist`` first for the nuclei
data; its files are read without TensorFlow)::

    python benchmarks/bench_loop.py [--parts otsu,em,annotator] [--images 8] [--train-seconds 60]

Everything trains through :func:`segstudio.training.train_steps` with the
defaults a user gets (``TrainConfig()``, the registry's U-Net for training:
same padding, BatchNorm, 16 channels), on this machine's CPU or GPU.

Parts (data: ``benchmarks/_realdata.py``):

``otsu``
    Seconds of training from scratch until the model beats Otsu's threshold
    on held-out pixels: StarDist's 16-bit nuclei image with its left half
    labelled (a 2-minute run), and with 15 nuclei and a ring of background
    around each labelled (about 11 % of the half; a 4-minute run). The model
    is scored on the right half every 10 s of training; the scoring pauses
    the run's clock, so the figures are training seconds.
``em``
    ISBI 2012 slices 05-09, 5 minutes from scratch; pixel error on slices
    10-19 (answering "cell" everywhere: about 0.24 there; the U-Net paper:
    0.0611 on the challenge's test stack after ~10 h on a GPU with all 30
    slices and elastic deformation).
``annotator``
    A simulated user works through images one after another, as a person
    does: looks at the model's proposal, corrects the largest wrong regions
    first (connected regions of wrong pixels, per true class) until the
    image's mean Dice reaches 0.9, keeps proposal + corrections as the
    image's labels, then trains the model on every image so far within
    ``--train-seconds`` before the next image. Strokes: a region of ``a``
    pixels takes ``ceil(a / 400)`` strokes (a 10-pixel brush dragged 40
    pixels). The same user without a model starts each image with one fill
    of the most common class (one stroke) and paints the rest. Data: ISBI
    slices in order, and StarDist's nuclei image cut into 16 tiles of
    128 x 128.
"""

from __future__ import annotations

import argparse
import math
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from scipy import ndimage

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from _measure import machine  # noqa: E402
from _realdata import dice, isbi_slices, mean_dice, otsu_threshold, sparse_labels, stardist_nuclei  # noqa: E402

from segstudio.inference import Predictor  # noqa: E402
from segstudio.models import get_training_model  # noqa: E402
from segstudio.models.checkpoint import make_meta  # noqa: E402
from segstudio.training import TrainConfig, loop, train_steps  # noqa: E402

STROKE_PX = 400
TARGET_DICE = 0.9
PARTS = ("otsu", "em", "annotator")


class PausableClock:
    """The training loop's clock, stopped while the benchmark scores the model."""

    def __init__(self) -> None:
        self.paused = 0.0

    def __call__(self) -> float:
        return time.monotonic() - self.paused

    def pause(self):
        clock = self

        class _Pause:
            def __enter__(self):
                self.started = time.monotonic()

            def __exit__(self, *exc):
                clock.paused += time.monotonic() - self.started

        return _Pause()


def new_model(classes: int = 2, seed: int = 0):
    torch.manual_seed(seed)
    model = get_training_model("unet", num_classes=classes, in_channels=1)
    return model, make_meta(model, class_names=["background", "foreground"][:classes])


def predict(model, meta, image: np.ndarray) -> np.ndarray:
    predictor = Predictor(model, preprocessing=meta.preprocessing, device="auto", precision="fp32")
    return predictor.predict(image).labels


def train(model, meta, samples, seconds: float, out: Path, on_epoch=None):
    """Train in place for *seconds* with the default settings; ``on_epoch(seconds so far)`` after each epoch."""
    clock = PausableClock()
    loop._clock = clock
    task = train_steps(model, samples, [], TrainConfig(epochs=None, time_budget_s=seconds), out, meta=meta)
    started = clock()
    try:
        while True:
            progress = next(task)
            if progress.stage == "epoch" and on_epoch is not None:
                with clock.pause():
                    on_epoch(clock() - started)
    except StopIteration as stop:
        return stop.value
    finally:
        loop._clock = time.monotonic


# -- otsu ---------------------------------------------------------------------------------------------------

def part_otsu(work: Path) -> None:
    nuclei = stardist_nuclei()
    if nuclei is None:
        print("otsu: skipped (pip install stardist for its nuclei image)")
        return
    image, truth = nuclei
    half = truth.shape[1] // 2
    otsu = dice((image[:, half:] > otsu_threshold(image[:, half:])).astype(np.uint8), truth[:, half:])
    print(f"otsu: StarDist nuclei (512 x 512, uint16, values {image.min()}..{image.max()}); Otsu's threshold on "
          f"the right half: Dice {otsu:.3f}")
    half_labels = truth.copy()
    half_labels[:, half:] = 255
    sparse = np.concatenate([sparse_labels(truth[:, :half]), np.full_like(truth[:, half:], 255)], axis=1)
    for name, labels, seconds in (("half labelled", half_labels, 120.0), ("sparse", sparse, 240.0)):
        model, meta = new_model()
        scores: list[tuple[float, float]] = []
        last = [-math.inf]

        def score(elapsed, model=model, meta=meta, scores=scores, last=last):
            if elapsed - last[0] >= 10.0:
                last[0] = elapsed
                scores.append((elapsed, dice(predict(model, meta, image)[:, half:], truth[:, half:])))
                model.train()

        result = train(model, meta, [(image, labels)], seconds, work / f"otsu-{name}", score)
        final = dice(predict(model, meta, image)[:, half:], truth[:, half:])
        scores.append((result.history[-1]["elapsed_s"], final))
        beaten = next((t for t, d in scores if d > otsu), None)
        trail = ", ".join(f"{t:.0f}s {d:.3f}" for t, d in scores)
        print(f"otsu: {name} ({100 * (labels != 255).mean():.1f} % labelled, {seconds:.0f} s run, "
              f"{result.steps} steps): beats Otsu after "
              f"{'never' if beaten is None else f'{beaten:.0f} s'}; final Dice {final:.3f}; "
              f"collapsed: {result.collapse.collapsed}")
        print(f"      Dice over training time: {trail}", flush=True)


# -- em -----------------------------------------------------------------------------------------------------

def part_em(work: Path) -> None:
    slices = isbi_slices()
    train_set, held = slices[:5], slices[5:]
    model, meta = new_model()
    result = train(model, meta, [(image, labels) for _, image, labels in train_set], 300.0, work / "em")
    errors = [float((predict(model, meta, image) != labels).mean()) for _, image, labels in held]
    cell = float(np.mean([(labels != 0).mean() for _, _, labels in held]))
    print(f"em: 5 slices, {result.history[-1]['elapsed_s']:.0f} s, {result.steps} steps: pixel error "
          f"{np.mean(errors):.4f} on {len(held)} held-out slices (cell everywhere {cell:.4f}; U-Net paper "
          f"0.0611)", flush=True)


# -- annotator ----------------------------------------------------------------------------------------------

def correct(proposal: np.ndarray, truth: np.ndarray, classes: int) -> tuple[np.ndarray, int, int]:
    """The user's corrections, largest wrong region first, until mean Dice >= 0.9.

    Returns the labels (proposal + corrections), pixels painted and strokes."""
    labels = proposal.copy()
    regions = []
    for c in range(classes):
        components, count = ndimage.label((truth == c) & (labels != c))
        if count:
            areas = np.bincount(components.ravel())[1:]
            for index in np.argsort(-areas):
                regions.append((int(areas[index]), c, components, index + 1))
    regions.sort(key=lambda r: -r[0])
    pixels = strokes = 0
    for area, c, components, index in regions:
        if mean_dice(labels, truth, classes) >= TARGET_DICE:
            break
        labels[components == index] = c
        pixels += area
        strokes += math.ceil(area / STROKE_PX)
    return labels, pixels, strokes


def from_scratch(truth: np.ndarray, classes: int) -> tuple[np.ndarray, int, int]:
    """The same user with no model: one fill of the most common class (one stroke), then painting."""
    majority = int(np.argmax(np.bincount(truth.ravel(), minlength=classes)))
    labels, pixels, strokes = correct(np.full_like(truth, majority), truth, classes)
    return labels, pixels, strokes + 1


def annotate(name: str, images: list[tuple[str, np.ndarray, np.ndarray]], seconds: float, work: Path) -> None:
    print(f"annotator: {name}, {len(images)} images, {seconds:.0f} s of training after each")
    print(f"  {'image':10s} {'proposal Dice':>13s} {'pixels':>8s} {'strokes':>7s} {'train s':>7s} | "
          f"{'no model: pixels':>16s} {'strokes':>7s} | {'ratio':>6s}")
    model, meta = new_model()
    labelled: list[tuple[np.ndarray, np.ndarray]] = []
    totals = [0, 0]
    for number, (stem, image, truth) in enumerate(images, start=1):
        scratch_labels, scratch_pixels, scratch_strokes = from_scratch(truth, 2)
        if labelled:
            proposal = predict(model, meta, image)
            proposal_dice = mean_dice(proposal, truth, 2)
            labels, pixels, strokes = correct(proposal, truth, 2)
        else:  # no model yet: the first image is annotated from scratch
            proposal_dice = float("nan")
            labels, pixels, strokes = scratch_labels, scratch_pixels, scratch_strokes
        labelled.append((image, labels.astype(np.uint8)))
        started = time.monotonic()
        train(model, meta, labelled, seconds, work / f"annotator-{name}-{number}")
        trained = time.monotonic() - started
        totals[0] += pixels
        totals[1] += scratch_pixels
        # no pixel to correct: the proposal already reached the target Dice
        ratio = f"{scratch_pixels / pixels:5.1f}x" if pixels else "  none"
        print(f"  {stem:10s} {proposal_dice:13.3f} {pixels:8d} {strokes:7d} {trained:7.0f} | "
              f"{scratch_pixels:16d} {scratch_strokes:7d} | {ratio}", flush=True)
    print(f"  all images: {totals[0]} pixels with the model, {totals[1]} without "
          f"({totals[1] / max(totals[0], 1):.1f}x fewer)", flush=True)


def part_annotator(work: Path, count: int, seconds: float) -> None:
    slices = isbi_slices()[:count]
    annotate("ISBI 2012 EM", slices, seconds, work)
    nuclei = stardist_nuclei()
    if nuclei is None:
        print("annotator: nuclei skipped (pip install stardist)")
        return
    image, truth = nuclei
    tiles = [(f"tile{r}{c}", image[r * 128:(r + 1) * 128, c * 128:(c + 1) * 128],
              truth[r * 128:(r + 1) * 128, c * 128:(c + 1) * 128]) for r in range(4) for c in range(4)]
    annotate("StarDist nuclei tiles", tiles[:count], seconds, work)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--parts", default=",".join(PARTS))
    parser.add_argument("--images", type=int, default=8, help="images the simulated user annotates (default 8)")
    parser.add_argument("--train-seconds", type=float, default=60.0,
                        help="training after each image (default 60)")
    args = parser.parse_args()
    parts = [p for p in args.parts.split(",") if p]
    unknown = sorted(set(parts) - set(PARTS))
    if unknown:
        raise SystemExit(f"unknown part(s): {', '.join(unknown)}; known: {', '.join(PARTS)}")
    print(f"machine: {machine()}")
    with tempfile.TemporaryDirectory(prefix="segstudio-bench-loop-") as tmp:
        work = Path(tmp)
        if "otsu" in parts:
            part_otsu(work)
        if "em" in parts:
            part_em(work)
        if "annotator" in parts:
            part_annotator(work, args.images, args.train_seconds)


if __name__ == "__main__":
    main()
