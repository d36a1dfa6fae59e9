"""The array tools' speed on large images: the magic wand (fill by intensity)
against the flood fill by label on the same image (the baseline: the tool it
sits beside), and fill between slices on a CT-sized volume.

    python benchmarks/bench_tools.py [--repeat 10]

Prints a table: median and best time per click / per fill.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks._measure import machine  # noqa: E402
from segstudio.annotation import tools  # noqa: E402
from segstudio.annotation.interpolate import interpolate_between_slices  # noqa: E402


def _times(call, repeat: int) -> tuple[float, float]:
    call()  # warm-up (OpenCV, SciPy imports and caches)
    samples = []
    for _ in range(repeat):
        start = time.perf_counter()
        call()
        samples.append((time.perf_counter() - start) * 1000)
    return statistics.median(samples), min(samples)


def _disc(shape, centre, radius):
    rows, cols = np.ogrid[: shape[0], : shape[1]]
    return (rows - centre[0]) ** 2 + (cols - centre[1]) ** 2 <= radius**2


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeat", type=int, default=10)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    rows = []
    image = rng.integers(0, 4000, (4096, 4096), dtype=np.uint16)
    image[1000:3000, 500:3500] = rng.integers(30000, 30100, (2000, 3000), dtype=np.uint16)
    labels = np.full(image.shape, 255, np.uint8)
    labels[1000:3000, 500:3500] = 1
    rgb = rng.integers(0, 60, (4096, 4096, 3), dtype=np.uint8)
    rgb[1000:3000, 500:3500] = 200
    cases = [
        ("flood fill by label (baseline), 4096^2, 6 Mpx region", lambda: tools.flood_fill(labels, (2000, 2000))),
        ("magic wand, 4096^2 uint16, 6 Mpx region", lambda: tools.magic_wand(image, (2000, 2000), 100)),
        ("magic wand, 4096^2 uint16, 1 px region (noise)", lambda: tools.magic_wand(image, (10, 10), 0)),
        ("magic wand, 4096^2 RGB uint8, 6 Mpx region", lambda: tools.magic_wand(rgb, (2000, 2000), 20)),
    ]
    volume = np.full((200, 512, 512), 255, np.uint8)
    volume[80][_disc((512, 512), (256, 256), 100)] = 1
    volume[120][_disc((512, 512), (256, 256), 180)] = 1
    drifting = np.full((200, 512, 512), 255, np.uint8)
    drifting[80][_disc((512, 512), (256, 150), 60)] = 1
    drifting[120][_disc((512, 512), (256, 350), 60)] = 1
    cases += [
        ("fill between slices, 512^2 x 200, 39-slice gap, concentric",
         lambda: interpolate_between_slices(volume, 1, 0, 255)),
        ("fill between slices, same gap, a disc drifting 200 px",
         lambda: interpolate_between_slices(drifting, 1, 0, 255)),
    ]
    for name, call in cases:
        median, best = _times(call, args.repeat)
        rows.append((name, median, best))
    print(machine())
    width = max(len(name) for name, _, _ in rows)
    print(f"{'case':<{width}}  {'median ms':>10}  {'best ms':>8}")
    for name, median, best in rows:
        print(f"{name:<{width}}  {median:>10.1f}  {best:>8.1f}")


if __name__ == "__main__":
    main()
