"""Time scribble refinement next to the plain dense CRF on the same region.

Run from the repository root::

    python benchmarks/bench_scribbles.py [--repeats N] [--sizes 512 1024] [--classes 3]

For each region size it times :func:`segstudio.refine.refine_with_scribbles`
on a size x size region of a synthetic cell image (``region=None``: the whole
image is the region; a short stroke of one class, and one of another class
when asked for two) and, as the baseline, :func:`segstudio.refine.refine` on
the same pixels. The difference is the scribbles' own cost: the geodesic
distance to each scribbled class and the clamping. Target: <= 1 s for a
512 x 512 region on the 2-core CPU of the development machine.

``--studio`` also times the studio's whole path on a 512 x 512 image with a
(synthetic) prediction: from the release of a Scribble stroke to the CRF
layer showing the result (worker start, refinement of the stroke's region,
pasting, repaint), and counts the GUI thread's timer ticks meanwhile::

    QT_QPA_PLATFORM=offscreen python benchmarks/bench_scribbles.py --studio
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from segstudio.refine import CRFParams, refine, refine_with_scribbles  # noqa: E402
from segstudio.synthetic import generate_sample  # noqa: E402


def scene(size: int, n_classes: int, seed: int = 3):
    """A synthetic micrograph, a model that is half sure of the truth, and strokes of two classes."""
    image, truth = generate_sample(seed, size, size)
    truth = np.minimum(truth, n_classes - 1)
    rng = np.random.default_rng(seed)
    onehot = np.eye(n_classes, dtype=np.float32)[truth].transpose(2, 0, 1)
    probabilities = 0.5 * onehot + 0.5 * rng.dirichlet(np.ones(n_classes), (size, size)).astype(np.float32).transpose(2, 0, 1)
    scribbles = np.full((size, size), 255, np.uint8)
    for value in (1, 0):  # a stroke of 3 x 40 px on a pixel of each class
        rows, columns = np.nonzero(truth == value)
        if rows.size:
            r, c = int(rows[rows.size // 2]), int(columns[rows.size // 2])
            scribbles[max(0, r - 1) : r + 2, max(0, c - 20) : c + 20] = value
    return image, probabilities, scribbles


def timed(function, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        function()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--sizes", type=int, nargs="+", default=[256, 512, 1024])
    parser.add_argument("--classes", type=int, default=3)
    parser.add_argument("--studio", action="store_true", help="also time stroke -> CRF layer in the window")
    args = parser.parse_args(argv)
    print(f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, python {platform.python_version()}")
    params = CRFParams()
    print(f"CRF: {params}")
    print(f"{'region':>11} {'classes':>7} {'plain CRF s':>12} {'scribbles s':>12} {'overhead s':>11}")
    for size in args.sizes:
        image, probabilities, scribbles = scene(size, args.classes)
        refine(image, probabilities, params)  # warm up
        plain = timed(lambda: refine(image, probabilities, params), args.repeats)
        with_scribbles = timed(lambda: refine_with_scribbles(
            image, probabilities, scribbles, params, unlabelled=255, region=None), args.repeats)
        print(f"{size:>5}x{size:<5} {args.classes:>7} {plain:>12.3f} {with_scribbles:>12.3f} "
              f"{with_scribbles - plain:>11.3f}")
    if args.studio:
        studio(args.repeats)


def studio(repeats: int, size: int = 512) -> None:
    """Stroke release -> CRF layer in the real window (offscreen), *repeats* strokes."""
    import tempfile

    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    import cv2
    from PySide6.QtCore import QSettings, Qt, QTimer
    from PySide6.QtTest import QTest
    from PySide6.QtWidgets import QApplication

    from segstudio.gui.canvas import Tool
    from segstudio.gui.main_window import MainWindow
    from segstudio.inference.predictor import PredictionResult

    app = QApplication.instance() or QApplication([])
    with tempfile.TemporaryDirectory() as folder:
        QSettings.setDefaultFormat(QSettings.Format.IniFormat)  # keep the user's settings out of it
        QSettings.setPath(QSettings.Format.IniFormat, QSettings.Scope.UserScope, folder)
        image, probabilities, _ = scene(size, 2)
        images = Path(folder) / "images"
        images.mkdir()
        cv2.imwrite(str(images / "cells.png"), cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
        window = MainWindow()
        window.resize(1400, 900)
        window.show()
        assert window.open_path(images)
        document = window.session.document
        window.crf_panel._preview.setChecked(False)  # only the scribbles' CRF runs
        document.set_prediction(PredictionResult((probabilities * 255).astype(np.uint8),
                                                 probabilities.argmax(axis=0).astype(np.uint8), size))
        window.canvas.refresh_prediction()
        window.set_tool(Tool.SCRIBBLE)
        window.canvas.set_brush_radius(3.0)
        ticks = []
        timer = QTimer()
        timer.timeout.connect(lambda: ticks.append(time.perf_counter()))
        timer.start(5)
        times, counts = [], []
        for stroke in range(repeats):
            window.set_active_class(stroke % 2)
            row = 60 + 80 * stroke % (size - 120)
            points = [window.canvas.to_widget(row, column).toPoint() for column in range(100, 140, 4)]
            done = []
            window.scribbles.refined.connect(lambda: done.append(time.perf_counter()))
            QTest.mousePress(window.canvas, Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier, points[0])
            for point in points[1:]:
                QTest.mouseMove(window.canvas, point)
            QTest.mouseRelease(window.canvas, Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier, points[-1])
            released = time.perf_counter()
            ticks.clear()
            while not done:
                app.processEvents()
                time.sleep(0.001)
            window.scribbles.refined.disconnect()
            times.append(done[0] - released)
            counts.append(len(ticks))
            app.processEvents()
        timer.stop()
        region = window.scribbles._latest[1].region
        print(f"studio, {size}x{size} image: stroke release -> CRF layer, median {statistics.median(times):.3f} s "
              f"(max {max(times):.3f} s) over {repeats} strokes; last region "
              f"{region[0].stop - region[0].start}x{region[1].stop - region[1].start}; "
              f"GUI timer ticks (5 ms) meanwhile: median {statistics.median(counts)}")
        window.runs.shutdown()
        window.session.discard()
        window.session.close()
        window.close()


if __name__ == "__main__":
    main()
