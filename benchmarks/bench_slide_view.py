"""The slide window on a 100,000 x 100,000 slide: first view, pan frames, brush dabs, autosave.

Writes (or reuses, --keep) the pyramidal OME-TIFF of bench_slide.py, opens it
in the studio's slide window (offscreen, 1400 x 900) and measures:

- open: SlideDocument + window until the first frame (the overview) is drawn,
  and until every tile in view has arrived and is drawn (seconds, RSS growth);
- pan frames with the tiles cached: a full repaint after each 10 px pan, at
  fit and at 100 % over tissue (p50 / p99);
- brush dab -> frame: a mouse move of a pressed brush at 100 % (the labels
  written, the cached label tiles recoloured, the dirty rectangle repainted;
  p50 / p99);
- autosave of that stroke: chunks and bytes written;

beside the studio's ordinary canvas on an 8192 x 8192 image in the same run
(its pan and dab frames), the largest it holds whole in memory.

    python benchmarks/bench_slide_view.py [--size 100000] [--keep PATH] [--dabs 200]
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

import numpy as np  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from _measure import _rss_bytes, machine, table  # noqa: E402
from bench_slide import ensure_slide  # noqa: E402


def percentiles(samples_ms: list[float]) -> tuple[str, str]:
    values = np.asarray(samples_ms)
    return f"{np.percentile(values, 50):.2f}", f"{np.percentile(values, 99):.2f}"


def wait_exposed(widget) -> None:
    from PySide6.QtWidgets import QApplication

    deadline = time.monotonic() + 10
    while not (widget.windowHandle() and widget.windowHandle().isExposed()) and time.monotonic() < deadline:
        QApplication.processEvents()
        time.sleep(0.005)


def settle(view) -> None:
    """Repaint until the view wants no tile more (every tile in view drawn)."""
    from PySide6.QtWidgets import QApplication

    while True:
        view.repaint()
        QApplication.processEvents()
        if view.fetcher.idle:
            view.repaint()
            if view.fetcher.idle:
                return
        time.sleep(0.002)


def pan_frames(view, count: int = 60) -> list[float]:
    from PySide6.QtWidgets import QApplication

    times = []
    for step in range(count):
        view.pan_by(10 if step % 2 else -10, 0)
        QApplication.processEvents()
        started = time.perf_counter()
        view.repaint()
        times.append((time.perf_counter() - started) * 1000)
    return times


def bench_slide_window(path: Path, dabs: int) -> tuple[list[list[str]], str]:
    from PySide6.QtCore import QEvent, QPointF, QRectF, Qt
    from PySide6.QtGui import QMouseEvent
    from PySide6.QtWidgets import QApplication

    from segstudio.annotation.slide_document import SlideDocument
    from segstudio.gui.slide.window import SlideWindow

    folder = Path(tempfile.mkdtemp(prefix="segstudio-slide-labels-"))
    rss = _rss_bytes()
    started = time.perf_counter()
    document = SlideDocument.open(path, folder)
    window = SlideWindow(document)
    window.resize(1400, 900)
    window.show()
    wait_exposed(window)
    view = window.view
    view.repaint()
    first_frame = time.perf_counter() - started
    first_rss = _rss_bytes() - rss
    settle(view)
    all_tiles = time.perf_counter() - started
    all_rss = _rss_bytes() - rss
    rows = [["open: first frame (overview)", f"{first_frame * 1000:.0f}", "", f"{first_rss / 2**20:.0f}"],
            [f"open: every tile in view (level {view.level()})", f"{all_tiles * 1000:.0f}", "",
             f"{all_rss / 2**20:.0f}"]]
    settle(view)
    fit = pan_frames(view)
    rows.append(["pan frame, fit, tiles cached", *percentiles(fit), ""])

    size = document.shape[0]
    view.center_on(size / 2, size / 2)  # the tissue band runs along the diagonal
    view.actual_size()
    settle(view)
    pan_frames(view, 4)
    settle(view)
    full = pan_frames(view)
    rows.append(["pan frame, 100 %, tiles cached", *percentiles(full), ""])

    rng = np.random.default_rng(0)
    dab_ms = []
    centre = QPointF(view.width() / 2, view.height() / 2)
    press = QMouseEvent(QEvent.Type.MouseButtonPress, centre, centre, Qt.MouseButton.LeftButton,
                        Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier)
    view.mousePressEvent(press)
    position = centre
    for _ in range(dabs):
        previous = position
        position = QPointF(min(max(position.x() + rng.uniform(-12, 12), 50), view.width() - 50),
                           min(max(position.y() + rng.uniform(-12, 12), 50), view.height() - 50))
        move = QMouseEvent(QEvent.Type.MouseMove, position, position, Qt.MouseButton.NoButton,
                           Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier)
        started = time.perf_counter()
        view.mouseMoveEvent(move)  # labels written, cached label tiles recoloured, rect scheduled
        dirty = QRectF(previous, position).normalized().adjusted(-16, -16, 16, 16).toAlignedRect()
        view.repaint(dirty)  # the frame of that rectangle, drawn now
        dab_ms.append((time.perf_counter() - started) * 1000)
        QApplication.processEvents()
    release = QMouseEvent(QEvent.Type.MouseButtonRelease, position, position, Qt.MouseButton.LeftButton,
                          Qt.MouseButton.NoButton, Qt.KeyboardModifier.NoModifier)
    view.mouseReleaseEvent(release)
    rows.append([f"brush dab -> frame ({dabs} dabs, one stroke)", *percentiles(dab_ms), ""])
    chunks = sorted(document.labels.dirty)
    started = time.perf_counter()
    written = document.save()
    save_ms = (time.perf_counter() - started) * 1000
    files = sum(1 for p in (folder / "labels").iterdir() if not p.name.startswith("."))
    note = (f"autosave of the stroke: {len(chunks)} chunks dirty, {files} chunk files on disk, "
            f"{written:,} bytes written in {save_ms:.0f} ms (the label map is {size:,} x {size:,}: "
            f"{size * size / 2**30:.1f} GiB as one uint8 array)")
    window.close()
    QApplication.processEvents()
    shutil.rmtree(folder, ignore_errors=True)
    return rows, note


def bench_canvas_baseline(size: int = 8192, dabs: int = 200) -> list[list[str]]:
    """The ordinary canvas holding a whole image: its pan and dab frames, for comparison."""
    from PySide6.QtCore import QPointF

    from segstudio.annotation import tools
    from segstudio.annotation.classes import ClassList
    from segstudio.annotation.document import Document
    from segstudio.gui.canvas import Canvas

    rng = np.random.default_rng(0)
    image = rng.integers(0, 255, (size, size, 3), dtype=np.uint8)
    classes = ClassList.from_names(["a", "b", "c"])
    document = Document(image, label_dtype=classes.label_dtype)
    canvas = Canvas()
    canvas.resize(1400, 900)
    canvas.show()
    wait_exposed(canvas)
    canvas.set_document(document, classes.lut())
    canvas.repaint()
    fit = []
    for step in range(60):
        canvas._pan += QPointF(10 if step % 2 else -10, 0)
        started = time.perf_counter()
        canvas.repaint()
        fit.append((time.perf_counter() - started) * 1000)
    canvas.actual_size()
    canvas.repaint()
    full, dab_ms = [], []
    for step in range(60):
        canvas._pan += QPointF(10 if step % 2 else -10, 0)
        started = time.perf_counter()
        canvas.repaint()
        full.append((time.perf_counter() - started) * 1000)
    for _ in range(dabs):
        row, column = canvas.to_image(QPointF(rng.uniform(100, 1300), rng.uniform(100, 800)))
        started = time.perf_counter()
        region, mask = tools.disk(row, column, 12, document.labels.shape)
        document.paint(region, mask, 1)
        canvas.repaint(canvas._widget_rect(*region))
        dab_ms.append((time.perf_counter() - started) * 1000)
    canvas.close()
    return [[f"baseline: canvas {size}^2, pan frame, fit", *percentiles(fit), ""],
            [f"baseline: canvas {size}^2, pan frame, 100 %", *percentiles(full), ""],
            [f"baseline: canvas {size}^2, brush dab -> frame", *percentiles(dab_ms), ""]]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", type=int, default=100_000)
    parser.add_argument("--keep", type=Path, help="write (or reuse) the slide here instead of a temporary file")
    parser.add_argument("--dabs", type=int, default=200)
    args = parser.parse_args()
    from PySide6.QtWidgets import QApplication

    app = QApplication.instance() or QApplication([])  # noqa: F841 (kept alive)
    print(machine())
    path = ensure_slide(args.keep, args.size)
    rows, note = bench_slide_window(path, args.dabs)
    rows += bench_canvas_baseline(dabs=args.dabs)
    print(table(["step", "ms (p50)", "ms (p99)", "RSS +MiB"], rows))
    print(note)


if __name__ == "__main__":
    main()
