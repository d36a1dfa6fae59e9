"""Live update: seconds from the last stroke to the new prediction on the demo.

Opens the bundled demo in a real (offscreen) studio window, runs the demo
U-Net on its largest image (512 x 448), turns Live update on, and paints a stroke of the
nucleus class several times, pausing after each as a user does; prints each
update's latency (the 1 s quiet time included), next to the time of a plain
model run on the same image (the baseline: what a prediction costs at all).

    python benchmarks/bench_live.py [--strokes 5]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from _measure import machine  # noqa: E402


def wait_for(app, condition, timeout_s: float = 300.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        app.processEvents()
        time.sleep(0.005)
        if time.monotonic() > deadline:
            raise TimeoutError("the studio did not finish in time")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--strokes", type=int, default=5)
    args = parser.parse_args()
    from PySide6.QtCore import QSettings

    from segstudio.annotation import tools
    from segstudio.demo import prepare_demo
    from segstudio.gui.app import create_application
    from segstudio.gui.main_window import MainWindow

    work = Path(tempfile.mkdtemp(prefix="segstudio-live-"))
    QSettings.setDefaultFormat(QSettings.Format.IniFormat)
    QSettings.setPath(QSettings.Format.IniFormat, QSettings.Scope.UserScope, str(work / "settings"))
    project = prepare_demo(work / "demo")
    app = create_application()
    window = MainWindow()
    window.resize(1400, 900)
    window.show()
    window.open_path(project.folder)
    # the largest demo image (512 x 448: the demo has no 512 x 512 one)
    from PIL import Image

    areas = [(Image.open(e.source).size[0] * Image.open(e.source).size[1], i)
             for i, e in enumerate(window.session.project.entries)]
    window.select_image(max(areas)[1])
    settings = window.model_panel.settings()
    settings.update(device="cpu", precision="fp32")
    window.model_panel.set_settings(settings)
    runs = []
    for _ in range(3):
        finished = []
        window.runs.runFinished.connect(finished.append)
        start = time.perf_counter()
        window.run_model(False)
        wait_for(app, lambda: finished)
        runs.append(time.perf_counter() - start)
        window.runs.runFinished.disconnect()
    window.training_panel.live.setChecked(True)
    document = window.session.document
    height, width = document.labels.shape
    for stroke in range(args.strokes):
        document.begin_stroke("Brush")
        row = height * (0.2 + 0.12 * stroke)
        last = None
        for step in range(30):
            point = (row, width * 0.2 + step * 8.0)
            found = tools.stroke_segment(last or point, point, 6, document.labels.shape)
            last = point
            if found:
                document.paint(*found, 2)
            app.processEvents()
        document.end_stroke()
        wait_for(app, lambda n=stroke: len(window.live.latencies) > n)
    latencies = window.live.latencies
    print(machine())
    print(f"demo image {height} x {width}, demo U-Net ({window.live.trainer.total_steps} live steps in "
          f"{window.live.trainer.updates} updates, {'head only' if window.live.trainer.frozen else 'whole model'})")
    print(f"{'':34}{'median s':>10}{'max s':>8}")
    print(f"{'model run on the image (baseline)':34}{statistics.median(runs):>10.2f}{max(runs):>8.2f}")
    print(f"{'stroke -> live-updated prediction':34}{statistics.median(latencies):>10.2f}{max(latencies):>8.2f}")
    print("(the live figure includes the 1 s quiet time after the last stroke)")
    window.session.close()
    window.close()


if __name__ == "__main__":
    main()
