"""Canvas responsiveness on large images.

For 4096 x 4096 and 8192 x 8192 images: the time from a brush dab to the
repainted frame (document edit + dirty-rect recolour + repaint of that
rectangle), the dirty-rect recolour alone next to a full-frame recolour in
the same run, and a pan frame (full repaint after a 10 px pan); p50 and
p99. Then the gaps between ticks of a 1 ms QTimer on the GUI thread while a
model runs in the worker, next to the same timer idle: p50 / p99 / max.
Each size runs with 3 classes (uint8 labels) and with 300 classes (uint16
labels, painting classes above 255), so the two label types sit side by side.

    QT_QPA_PLATFORM=offscreen python benchmarks/bench_canvas.py [--sizes 4096 8192] [--dabs 200] [--classes 3 300]
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

import numpy as np  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _measure import event_loop_gaps, gap_row, machine, table  # noqa: E402


def percentiles(samples_ms: list[float]) -> tuple[str, str]:
    values = np.asarray(samples_ms)
    return f"{np.percentile(values, 50):.2f}", f"{np.percentile(values, 99):.2f}"


def bench_size(size: int, dabs: int, n_classes: int = 3) -> list[list[str]]:
    from PySide6.QtCore import QPointF

    from segstudio.annotation import tools
    from segstudio.annotation.classes import ClassList
    from segstudio.annotation.document import Document
    from segstudio.gui.canvas import Canvas

    rng = np.random.default_rng(0)
    image = rng.integers(0, 255, (size, size, 3), dtype=np.uint8)
    classes = ClassList.from_names([f"class {i}" for i in range(n_classes)])
    document = Document(image, label_dtype=classes.label_dtype)
    paint_classes = np.arange(max(0, n_classes - 3), n_classes)  # the highest three
    from PySide6.QtWidgets import QApplication

    canvas = Canvas()
    canvas.resize(1600, 1000)
    canvas.show()
    # repaint() draws nothing until the window is exposed: wait for it
    deadline = time.monotonic() + 10
    while not (canvas.windowHandle() and canvas.windowHandle().isExposed()) and time.monotonic() < deadline:
        QApplication.processEvents()
        time.sleep(0.01)
    canvas.set_document(document, classes.lut())
    canvas.zoom_at(4.0 / canvas.zoom, QPointF(800, 500))  # 4x zoom, as when painting detail
    canvas.repaint()
    labels = canvas._masks["labels"]

    dab_ms, recolor_ms = [], []
    for _ in range(dabs):
        row, column = canvas.to_image(QPointF(rng.uniform(100, 1500), rng.uniform(100, 900)))
        start = time.perf_counter()
        region, mask = tools.disk(row, column, 12, document.labels.shape)
        document.paint(region, mask, int(rng.choice(paint_classes)))  # canvas recolours and schedules the rect
        canvas.repaint(canvas._widget_rect(*region))
        dab_ms.append((time.perf_counter() - start) * 1000)
        start = time.perf_counter()
        labels.recolor(region)
        recolor_ms.append((time.perf_counter() - start) * 1000)
    full_ms = []
    for _ in range(5):
        start = time.perf_counter()
        labels.recolor(None)
        full_ms.append((time.perf_counter() - start) * 1000)
    pan_ms = []
    for step in range(50):
        start = time.perf_counter()
        canvas._pan += QPointF(10 if step % 2 else -10, 0)
        canvas.repaint()
        pan_ms.append((time.perf_counter() - start) * 1000)
    canvas.fit()
    fit_ms = []
    for step in range(20):
        start = time.perf_counter()
        canvas._pan += QPointF(10 if step % 2 else -10, 0)
        canvas.repaint()
        fit_ms.append((time.perf_counter() - start) * 1000)
    canvas.close()
    if not canvas.frames_painted:
        raise RuntimeError("the canvas never painted: the timings would be meaningless")
    kind = f"{n_classes} ({document.labels.dtype})"
    return [
        [f"{size}", kind, "brush dab -> frame", *percentiles(dab_ms)],
        [f"{size}", kind, "dirty-rect recolour", *percentiles(recolor_ms)],
        [f"{size}", kind, "full-frame recolour", *percentiles(full_ms)],
        [f"{size}", kind, "pan frame (4x zoom)", *percentiles(pan_ms)],
        [f"{size}", kind, "pan frame (whole image fit)", *percentiles(fit_ms)],
    ]


def bench_event_loop(size: int) -> list[list[str]]:
    """Tick gaps of a 1 ms timer, idle and while the model runs."""
    import tempfile

    import torch
    from PySide6.QtCore import QTimer

    from segstudio.gui.runs import ModelRuns
    from segstudio.models import get_model
    from segstudio.models.checkpoint import make_meta, save_checkpoint

    model = get_model("unet", num_classes=3, in_channels=3, base_width=16, depth=4, padding="same")
    folder = Path(tempfile.mkdtemp())
    checkpoint = save_checkpoint(folder / "bench.safetensors", model, make_meta(model))
    image = np.random.default_rng(1).integers(0, 255, (size, size, 3), dtype=np.uint8)

    idle = event_loop_gaps(lambda loop: QTimer.singleShot(3000, loop.quit))
    runs = ModelRuns()
    settings = {"checkpoint": str(checkpoint), "device": "auto", "precision": "auto", "tile": 512}

    def start(loop):
        runs.runFinished.connect(lambda _: loop.quit())
        runs.run(settings, [(0, lambda: image)])

    busy = event_loop_gaps(start)
    runs.shutdown()
    rows = [gap_row("idle", idle), gap_row(f"U-Net inference {size}^2 in the worker", busy)]
    del torch
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", nargs="+", type=int, default=[4096, 8192])
    parser.add_argument("--dabs", type=int, default=200)
    parser.add_argument("--classes", nargs="+", type=int, default=[3, 300],
                        help="class counts to run (above 254: uint16 labels)")
    parser.add_argument("--loop-size", type=int, default=2048, help="image size for the event-loop test")
    args = parser.parse_args()
    from segstudio.gui.app import create_application

    app = create_application()
    print(machine())
    print(f"Qt platform: {app.platformName()}\n")
    rows = []
    for size in args.sizes:
        for n_classes in args.classes:
            rows += bench_size(size, args.dabs, n_classes)
    print(table(["image", "classes (labels)", "operation", "p50 ms", "p99 ms"], rows))
    print()
    print(table(["GUI thread", "ticks", "gap p50 ms", "gap p99 ms", "gap max ms"], bench_event_loop(args.loop_size)))


if __name__ == "__main__":
    main()
