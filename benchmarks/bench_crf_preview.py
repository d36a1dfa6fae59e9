"""The CRF preview on a very large image in the real (offscreen) studio window.

Builds a SIZE x SIZE RGB slide (default 12000) as a mosaic of scikit-image's
immunohistochemistry photograph (flipped and rotated tiles, so no two
neighbours are alike), opens it in the studio at 1400 x 900, gives it a
model-like 3-class prediction (uint8, as a model run stores it; running the
model on 144 Mpx would take this CPU many minutes) and measures, for each
case, the seconds until the CRF layer is there, the peak resident memory
above the level before the CRF (the image, its layers and the prediction
already loaded) and the gaps of a 1 ms timer on the GUI thread (is the window
responsive?):

- live preview at "fit" zoom (the whole slide in view: refined at a coarser scale),
- live preview at 100 % zoom (the part in view, at full resolution),
- with ``--whole``: Run CRF on the whole slide at full resolution, in tiles.

The baseline is the memory the one-piece CRF would have needed (what the
studio did before: the kernel killed it past 17 GB), printed beside.

    python benchmarks/bench_crf_preview.py [--size 12000] [--whole]
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from _measure import PeakMemory, _rss_bytes, event_loop_gaps, gap_row, machine, table  # noqa: E402


def make_slide(size: int, path: Path) -> None:
    import cv2
    import tifffile

    source = Path(importlib.util.find_spec("skimage").origin).parent / "data" / "ihc.png"
    tile = cv2.cvtColor(cv2.imread(str(source), cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)
    rng = np.random.default_rng(0)
    slide = np.empty((size, size, 3), np.uint8)
    step = tile.shape[0]
    for y in range(0, size, step):
        for x in range(0, size, step):
            piece = np.rot90(tile, int(rng.integers(4)))
            if rng.random() < 0.5:
                piece = piece[:, ::-1]
            slide[y : y + step, x : x + step] = piece[: size - y, : size - x]
    tifffile.imwrite(path, slide, tile=(512, 512))


def model_like(image: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """3 classes from the stain colours (background glass, haematoxylin, DAB) with
    smooth noise: uint8 p x 255 probabilities and their argmax, row band by band."""
    import cv2

    height, width = image.shape[:2]
    rng = np.random.default_rng(1)
    noise = cv2.resize(rng.normal(0, 1.2, (height // 64, width // 64, 3)).astype(np.float32), (width, height))
    probabilities = np.empty((3, height, width), np.uint8)
    labels = np.empty((height, width), np.uint8)
    for y in range(0, height, 1024):
        rgb = image[y : y + 1024].astype(np.float32) / 255.0
        logits = np.stack([
            4.0 * (rgb.mean(axis=2) - 0.75),  # bright glass
            4.0 * (rgb[..., 2] - rgb[..., 0]),  # blue haematoxylin
            4.0 * (rgb[..., 0] - rgb[..., 2]) - 0.5,  # brown DAB
        ]) + noise[y : y + 1024].transpose(2, 0, 1)
        logits -= logits.max(axis=0)
        p = np.exp(logits)
        p /= p.sum(axis=0)
        probabilities[:, y : y + 1024] = np.rint(p * 255)
        labels[y : y + 1024] = p.argmax(axis=0)
    return probabilities, labels


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", type=int, default=12000)
    parser.add_argument("--whole", action="store_true", help="also Run CRF on the whole slide (minutes)")
    args = parser.parse_args()
    import torch
    from PySide6.QtCore import QPointF, QSettings

    from segstudio.annotation.classes import ClassList
    from segstudio.gui import crf_preview
    from segstudio.gui.app import create_application
    from segstudio.gui.main_window import MainWindow
    from segstudio.inference.predictor import PredictionResult
    from segstudio.io.project import Project

    print(machine())
    work = Path(tempfile.mkdtemp(prefix="segstudio-crf-preview-"))
    QSettings.setDefaultFormat(QSettings.Format.IniFormat)
    QSettings.setPath(QSettings.Format.IniFormat, QSettings.Scope.UserScope, str(work / "settings"))
    (work / "slide").mkdir()
    started = time.perf_counter()
    make_slide(args.size, work / "slide" / "slide.tif")
    print(f"slide {args.size} x {args.size} RGB written in {time.perf_counter() - started:.1f} s")
    classes = ClassList()
    for name, colour in (("glass", (0, 0, 0)), ("haematoxylin", (60, 80, 230)), ("DAB", (200, 120, 30))):
        classes.add(name, colour)
    Project.create(work / "slide", [work / "slide" / "slide.tif"], classes).save()

    app = create_application()
    window = MainWindow()
    window.resize(1400, 900)
    window.show()
    rss_empty = _rss_bytes()
    window.open_path(work / "slide")
    deadline = time.monotonic() + 600
    while window.session.document is None and time.monotonic() < deadline:
        app.processEvents()
        time.sleep(0.01)
    document = window.session.document
    image = document.image
    rss_image = _rss_bytes()
    probabilities, labels = model_like(image)
    window._on_predicted(window.session.index, PredictionResult(probabilities, labels, 512))
    if document.prediction is None:
        raise SystemExit("the studio dropped the prediction (its classes differ from the project's)")
    window.runs.crf_task and window.runs.crf_task.cancel()
    app.processEvents()
    del probabilities, labels
    print(f"RSS: empty window {rss_empty / 2**30:.2f} GiB, with the slide shown {rss_image / 2**30:.2f} GiB, "
          f"with its prediction {_rss_bytes() / 2**30:.2f} GiB (image {image.nbytes / 2**30:.2f} GiB)")
    one_piece = crf_preview.crf_memory_estimate(args.size, args.size, 3)

    def run_case(name: str, start) -> list[str]:
        document.crf_labels = None
        loop_holder: list = [None]
        began = [0.0]

        def finished(*_) -> None:
            loop_holder[0].quit()

        def begin(loop) -> None:
            loop_holder[0] = loop
            began[0] = time.perf_counter()
            start()

        window.runs.crfDone.connect(finished)
        window.runs.crfFailed.connect(finished)
        with PeakMemory(torch.device("cpu")) as memory:
            gaps = event_loop_gaps(begin)
        seconds = time.perf_counter() - began[0]
        window.runs.crfDone.disconnect(finished)
        window.runs.crfFailed.disconnect(finished)
        filled = float((document.crf_labels != 255).mean()) if document.crf_labels is not None else 0.0
        print(f"{name}: {window.crf_panel.message()!r}", flush=True)
        return [*gap_row(name, gaps), f"{seconds:.1f}", f"{memory.peak / 2**30:.2f}", f"{100 * filled:.1f}"]

    rows = []
    params = window.crf_panel.params()
    window.canvas.fit()
    rows.append(run_case("live, fit zoom", lambda: crf_preview.run(window, params, live=True)))
    window.canvas.actual_size()
    centre = QPointF(window.canvas.width() / 2, window.canvas.height() / 2)
    window.canvas.zoom_at(1.0, centre)
    print(f"100 % view: {window.canvas.visible_box()}")
    rows.append(run_case("live, 100 % zoom", lambda: crf_preview.run(window, params, live=True)))
    if args.whole:
        rows.append(run_case("Run CRF, whole slide", lambda: crf_preview.run(window, params)))
    print()
    print(table(["case", "ticks", "gap p50 ms", "gap p99 ms", "gap max ms", "seconds", "peak +GiB", "% refined"],
                rows))
    print(f"\nbaseline: the one-piece CRF of {args.size} x {args.size} x 3 classes would need about "
          f"{one_piece / 2**30:.1f} GiB (what the preview used to ask for)")
    window.close()


if __name__ == "__main__":
    main()
