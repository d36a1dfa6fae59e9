"""Reading a whole-slide image lazily: open, first view, views at full resolution.

Writes a SIZE x SIZE RGB pyramidal OME-TIFF (default 100,000; levels 1/4/16/64/256,
512 px zlib tiles): glass everywhere but a band of tissue tiles cut from
scikit-image's immunohistochemistry photograph (a few per cent of the tiles, so
the file stays a few hundred MB). Then, in this process, measures with
:class:`segstudio.io.slide.Slide`:

- opening the slide (seconds, RSS growth),
- the first view: the whole slide at "fit" on a 1400 x 900 window, read
  from the level :meth:`Slide.level_for` picks,
- a 1400 x 900 view at 100 % over tissue, then 30 pans of 100 px (each read
  from the file: no tile cache yet),

beside the baseline of reading one whole level the ordinary way
(``tifffile.imread`` of level 2; level 0 would need SIZE^2 x 3 bytes).

    python benchmarks/bench_slide.py [--size 100000] [--keep PATH]
"""

from __future__ import annotations

import argparse
import importlib.util
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from _measure import _rss_bytes, machine  # noqa: E402

TILE = 512
DOWNSAMPLES = (1, 4, 16, 64, 256)


def write_slide(path: Path, size: int) -> None:
    import cv2
    import tifffile

    source = Path(importlib.util.find_spec("skimage").origin).parent / "data" / "ihc.png"
    photo = cv2.cvtColor(cv2.imread(str(source), cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)
    glass = np.full((TILE, TILE, 3), 236, np.uint8)
    rng = np.random.default_rng(0)

    def tiles(level_size: int):
        per_side = -(-level_size // TILE)
        for row in range(per_side):
            for column in range(per_side):
                # tissue: a diagonal band a few tiles wide (its share falls as the slide grows)
                if abs(row - column) <= max(1, per_side // 64):
                    piece = np.rot90(photo, int(rng.integers(4)))
                    yield np.ascontiguousarray(piece[:TILE, :TILE])
                else:
                    yield glass

    options = dict(tile=(TILE, TILE), photometric="rgb", compression="zlib", compressionargs={"level": 1})
    sizes = [-(-size // d) for d in DOWNSAMPLES]
    with tifffile.TiffWriter(path, bigtiff=True) as tif:
        tif.write(tiles(sizes[0]), shape=(sizes[0], sizes[0], 3), dtype=np.uint8, subifds=len(sizes) - 1,
                  metadata={"axes": "YXS", "PhysicalSizeX": 0.25, "PhysicalSizeY": 0.25}, **options)
        for level_size in sizes[1:]:
            tif.write(tiles(level_size), shape=(level_size, level_size, 3), dtype=np.uint8, subfiletype=1, **options)


def ensure_slide(keep: Path | None, size: int) -> Path:
    """The benchmark slide: ``keep`` when it exists, else written there (or to a temporary file)."""
    path = keep or Path(tempfile.mkdtemp(prefix="segstudio-slide-")) / "slide.ome.tif"
    if not path.exists():
        started = time.perf_counter()
        write_slide(path, size)
        print(f"wrote {path} ({path.stat().st_size / 2**20:.0f} MiB) in {time.perf_counter() - started:.0f} s")
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", type=int, default=100_000)
    parser.add_argument("--keep", type=Path, help="write (or reuse) the slide here instead of a temporary file")
    args = parser.parse_args()
    import tifffile

    from segstudio.io.slide import Slide

    print(machine())
    path = ensure_slide(args.keep, args.size)
    rows = []
    rss = _rss_bytes()
    started = time.perf_counter()
    slide = Slide(path)
    rows.append(("open", time.perf_counter() - started, _rss_bytes() - rss))
    print(f"levels {[level.shape for level in slide.levels]}, {slide.microns_per_pixel} µm per pixel")

    view_h, view_w = 900, 1400
    fit = max(slide.shape[0] / view_h, slide.shape[1] / view_w)
    level = slide.level_for(fit)
    height, width = slide.levels[level].shape
    started = time.perf_counter()
    overview = slide.read_region(level, ((0, height), (0, width)))
    rows.append((f"first view (fit, level {level}, {width} x {height})", time.perf_counter() - started,
                 _rss_bytes() - rss))
    del overview

    centre = slide.shape[0] // 2
    times = []
    for step in range(31):
        y0, x0 = centre - view_h // 2, centre - view_w // 2 + 100 * step
        started = time.perf_counter()
        slide.read_region(0, ((y0, y0 + view_h), (x0, x0 + view_w)))
        times.append(time.perf_counter() - started)
    rows.append(("100 % view over tissue", times[0], _rss_bytes() - rss))
    pans = sorted(times[1:])
    rows.append((f"pan 100 px: median / max of {len(pans)}", statistics.median(pans), _rss_bytes() - rss))
    print(f"pan reads: median {statistics.median(pans) * 1e3:.0f} ms, max {pans[-1] * 1e3:.0f} ms "
          "(every read decodes its tiles again: no cache yet)")
    slide.close()

    with tifffile.TiffFile(path) as tif:
        started = time.perf_counter()
        whole = tif.series[0].levels[2].asarray()
        rows.append((f"baseline: whole level 2 read ({whole.shape[1]} x {whole.shape[0]})",
                     time.perf_counter() - started, _rss_bytes() - rss))
        del whole
    print()
    print(f"{'step':<52} {'seconds':>8} {'RSS +MiB':>9}")
    for name, seconds, grown in rows:
        print(f"{name:<52} {seconds:>8.3f} {grown / 2**20:>9.0f}")
    print(f"\nlevel 0 read whole would need {args.size * args.size * 3 / 2**30:.1f} GiB")


if __name__ == "__main__":
    main()
