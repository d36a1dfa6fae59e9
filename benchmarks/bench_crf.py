"""Time the dense CRF refinement on synthetic inputs.

Run from the repository root::

    python benchmarks/bench_crf.py [--repeats N] [--sizes 512 1024]

For every size, class count and iteration count it reports the median wall
time of :func:`segstudio.refine.refine`, split into setup (building the
permutohedral lattices) and the cost of one mean-field iteration, next to a
baseline that only does what you would do without a CRF: a numpy softmax
and argmax over the same probabilities.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from segstudio.refine import CRFParams, refine_steps  # noqa: E402
from segstudio.tasks import Progress, run_to_completion  # noqa: E402


def synthetic_image(size: int, seed: int = 0) -> np.ndarray:
    """A photo-like RGB uint8 image: shaded background, a few solid shapes, mild noise.

    Pure noise would be unrealistic: the bilateral lattice grows with the
    number of distinct colour/position cells, so noise inflates setup time.
    """
    rng = np.random.default_rng(seed)
    ramp = np.linspace(40, 200, size, dtype=np.float32)
    image = np.stack(
        [np.add.outer(ramp, ramp) / 2, np.add.outer(ramp[::-1], ramp) / 2, np.tile(ramp, (size, 1))],
        axis=2,
    )
    for _ in range(12):
        colour = tuple(float(c) for c in rng.uniform(0, 255, 3))
        centre = tuple(int(c) for c in rng.integers(0, size, 2))
        if rng.random() < 0.5:
            cv2.circle(image, centre, int(rng.integers(size // 16, size // 4)), colour, -1)
        else:
            corner = tuple(int(c) for c in rng.integers(0, size, 2))
            cv2.rectangle(image, centre, corner, colour, -1)
    image += rng.normal(0.0, 3.0, image.shape).astype(np.float32)
    return np.clip(image, 0, 255).astype(np.uint8)


def smooth_probabilities(size: int, n_classes: int, seed: int = 1) -> np.ndarray:
    """Random class probabilities that vary smoothly, like upsampled network output."""
    rng = np.random.default_rng(seed)
    coarse = rng.normal(0.0, 3.0, (max(2, size // 32), max(2, size // 32), n_classes)).astype(np.float32)
    logits = np.empty((n_classes, size, size), dtype=np.float32)
    # cv2.resize handles at most 512 channels at once; go class by class
    for c in range(n_classes):
        logits[c] = cv2.resize(coarse[:, :, c], (size, size), interpolation=cv2.INTER_LINEAR)
    return softmax(logits)


def softmax(logits: np.ndarray) -> np.ndarray:
    out = logits - logits.max(axis=0, keepdims=True)
    np.exp(out, out=out)
    out /= out.sum(axis=0, keepdims=True)
    return out


def baseline(probabilities: np.ndarray) -> np.ndarray:
    """What "no CRF" costs: softmax of the log-probabilities, then argmax."""
    logits = np.log(np.maximum(probabilities, 1e-8))
    return softmax(logits).argmax(axis=0).astype(np.uint8)


def time_crf(image: np.ndarray, probabilities: np.ndarray, iterations: int) -> tuple[float, float]:
    """Return (total seconds, seconds per mean-field iteration) of one run."""
    stamps: list[float] = []

    def note(_: Progress) -> None:
        stamps.append(time.perf_counter())

    start = time.perf_counter()
    run_to_completion(refine_steps(image, probabilities, CRFParams(iterations=iterations)), note)
    total = time.perf_counter() - start
    per_iteration = (stamps[-1] - stamps[0]) / (len(stamps) - 1) if len(stamps) > 1 else total
    return total, per_iteration


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3, help="runs per configuration (median is shown)")
    parser.add_argument("--sizes", type=int, nargs="+", default=[512, 1024], help="square image sizes, px")
    parser.add_argument("--classes", type=int, nargs="+", default=[3, 21])
    parser.add_argument("--iterations", type=int, nargs="+", default=[5, 10])
    args = parser.parse_args(argv)
    if args.repeats < 1:
        parser.error("--repeats must be at least 1")

    print(f"machine: {platform.platform()}, {platform.processor() or platform.machine()}, "
          f"{os.cpu_count()} CPUs, python {platform.python_version()}, numpy {np.__version__}")
    print(f"median of {args.repeats} run(s); CRF defaults otherwise (DeepLab-v1)\n")
    header = (f"{'size':>9} {'classes':>7} {'iters':>5} {'median s':>9} {'setup s':>8} "
              f"{'ms/iter':>8} {'MP/s':>7} {'baseline ms':>11} {'x baseline':>10}")
    print(header)
    print("-" * len(header))
    for size in args.sizes:
        image = synthetic_image(size)
        megapixels = size * size / 1e6
        for n_classes in args.classes:
            probabilities = smooth_probabilities(size, n_classes)
            base = statistics.median(
                _timed(lambda: baseline(probabilities)) for _ in range(max(3, args.repeats))
            )
            for iterations in args.iterations:
                runs = [time_crf(image, probabilities, iterations) for _ in range(args.repeats)]
                total = statistics.median(r[0] for r in runs)
                per_iteration = statistics.median(r[1] for r in runs)
                setup = max(0.0, total - iterations * per_iteration)
                print(f"{size:>4}x{size:<4} {n_classes:>7} {iterations:>5} {total:>9.3f} {setup:>8.3f} "
                      f"{per_iteration * 1e3:>8.1f} {megapixels / total:>7.2f} {base * 1e3:>11.1f} "
                      f"{total / base:>10.0f}", flush=True)
    return 0


def _timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


if __name__ == "__main__":
    raise SystemExit(main())
