"""Screenshots of the studio on the bundled sample, for the README.

Opens a fresh demo project (the sample with the demo model), runs the
model, and saves four pictures: the probability heatmap, the CRF mask, a
correction in progress, and the Training dock after a short fine-tuning
run. Runs headless (offscreen) by default.

    python scripts/screenshots.py [--out docs/screenshots]
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
from pathlib import Path

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def wait_for(app, condition, timeout_s: float = 120.0) -> None:
    import time

    deadline = time.monotonic() + timeout_s
    while not condition():
        app.processEvents()
        time.sleep(0.01)
        if time.monotonic() > deadline:
            raise TimeoutError("the studio did not finish in time")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "screenshots")
    args = parser.parse_args()
    from PySide6.QtCore import QPointF, QSettings

    from segstudio.gui.app import create_application
    from segstudio.gui.canvas import Tool
    from segstudio.gui.main_window import MainWindow

    workdir = Path(tempfile.mkdtemp(prefix="segstudio-shots-"))
    QSettings.setDefaultFormat(QSettings.Format.IniFormat)
    QSettings.setPath(QSettings.Format.IniFormat, QSettings.Scope.UserScope, str(workdir / "settings"))
    from segstudio.demo import prepare_demo

    project = prepare_demo(workdir / "demo")
    app = create_application()
    window = MainWindow()
    window.resize(1500, 900)
    window.show()
    window.open_path(project.folder)
    finished = []
    window.runs.runFinished.connect(finished.append)
    window.run_model(False)
    wait_for(app, lambda: finished)
    wait_for(app, lambda: window.session.document.crf_labels is not None)
    args.out.mkdir(parents=True, exist_ok=True)

    # 1. the nucleus probability through viridis, labels hidden
    canvas = window.canvas
    window.layers_panel.set_heatmap_index(2)
    canvas.set_heatmap(2)
    for name, visible in (("heatmap", True), ("prediction", False), ("crf", False), ("labels", False)):
        canvas.set_layer_visible(name, visible)
    canvas.set_layer_opacity("heatmap", 0.75)
    window._sync_layers_panel()
    app.processEvents()
    window.grab().save(str(args.out / "heatmap.png"))

    # 2. the CRF mask as outlines over the image
    canvas.set_layer_visible("heatmap", False)
    canvas.set_layer_visible("crf", True)
    canvas.set_layer_outline("crf", False)
    canvas.set_layer_opacity("crf", 0.5)
    window._sync_layers_panel()
    app.processEvents()
    window.grab().save(str(args.out / "crf_mask.png"))

    # 3. a correction in progress: accept the CRF mask, then brush a nucleus
    window.accept("crf")
    canvas.set_layer_visible("crf", False)
    canvas.set_layer_visible("labels", True)
    canvas.set_layer_outline("labels", True)
    canvas.set_layer_opacity("labels", 1.0)
    window._sync_layers_panel()
    window.set_tool(Tool.BRUSH)
    window.set_active_class(2)
    canvas.set_brush_radius(6)
    document = window.session.document
    document.begin_stroke("Brush")
    from segstudio.annotation import tools

    height, width = document.labels.shape
    last = None
    for step in range(40):
        point = (height * 0.5 + 20 * (step / 40.0), width * 0.3 + step * 2.0)
        found = tools.stroke_segment(last or point, point, 6, document.labels.shape)
        last = point
        if found:
            document.paint(*found, 2)
    document.end_stroke()
    canvas._cursor = canvas.to_widget(*last)
    canvas.zoom_at(1.6, QPointF(canvas.width() / 2, canvas.height() / 2))
    app.processEvents()
    window.grab().save(str(args.out / "correction.png"))
    # 4. fine-tuning: the Training dock with its curves after a short run
    canvas.zoom_at(1 / 1.6, QPointF(canvas.width() / 2, canvas.height() / 2))
    window.docks["Training"].raise_()
    ended = []
    window.training.runEnded.connect(ended.append)
    settings = {**window.training_panel.settings(), "epochs": 6, "freeze_backbone": False, "device": "cpu",
                "auto_adopt": False}
    window.training_panel._epochs.setValue(6)
    window.training_panel._mode.setCurrentIndex(1)  # full: what the run below uses
    window.training_panel.trainRequested.emit(settings)
    wait_for(app, lambda: ended, timeout_s=600)
    window.docks["CRF"].hide()
    window.docks["Layers"].hide()
    app.processEvents()
    window.grab().save(str(args.out / "training.png"))
    window.session.close()
    window.close()
    shutil.rmtree(workdir, ignore_errors=True)
    print(f"screenshots in {args.out}")


if __name__ == "__main__":
    main()
