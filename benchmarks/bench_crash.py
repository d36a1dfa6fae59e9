"""Crash safety: edits lost and inconsistent files when the studio is killed.

A child process (this script with ``--child``, Qt offscreen) runs the real
studio window and is killed with SIGKILL at a random moment; the project is
then opened as a new studio would (``Project.open(lock=True)``: it takes the
dead process's lock over and finishes an interrupted class deletion) and
every label file is checked.

``paint``
    The child opens a project of three 512 x 512 images (ISBI 2012 EM slices
    from ``../shared/data/isbi2012-em``, or synthetic ones) and paints
    through the canvas without pause on one of them (the next one each
    trial): one brush stroke every 0.25 s, each at its own place with its
    own class. Painting one image is the case only the autosave timers
    cover (going to another image saves too). It appends one fsynced line
    per finished stroke (wall time, place, class, pixels). It is killed
    uniform(1.5, 8) s after its first stroke. Seconds lost = kill time - finish time of the first stroke that
    is not (wholly) in its file; 0 if every stroke is. A file is
    inconsistent if it cannot be read or holds a stroke while an earlier
    stroke of the same image is missing. The baseline, in the same run, is
    the same child with autosave on the 1 s quiet-time timer alone
    (``AUTOSAVE_MAX_WAIT_MS`` set out of reach before the window is made).
    A stroke takes ~0.2 s from its first dab to its release, so the
    autosave's longest wait from the first unsaved dab
    (``AUTOSAVE_MAX_WAIT_MS``) shows as up to that less 0.2 s lost here,
    plus any lateness of the timer and the time the write takes.
``delete``
    A project of 40 labelled 128 x 128 images (5 classes in known bands of
    rows); the child opens it in the window and deletes class 2 through
    ``studio_actions.delete_class`` (what the Classes panel does). Three
    uninterrupted runs measure how long that takes (the longest counts:
    it swings with the disk's fsync latency); each trial kills the child
    uniform(0, that duration) after the moment it says it starts. A file is
    inconsistent if its rows, read through the class names of
    ``project.json``, are not what they were (if the class list is the old
    one) or not the deleted class's rows unlabelled and the others unchanged
    (if it is the new one), or if it cannot be read. The notes give the
    phase each kill hit (before staging, staging the renumbered files, the
    journal on disk, after it went) and which way the deletion went.

"kills mid-op": for painting, kills that came while the child was still
painting (a stroke finished in the second before); for deletion, kills
before the child said it was done.

Run from the repository root::

    python benchmarks/bench_crash.py [--scenario paint|delete|all] [--trials 20] [--baseline-trials 8] [--seed 0]

The defaults take about five minutes (each child spends ~2 s starting Qt
and torch). Children get their own settings and data folders, so the
user's recent-projects list is not touched.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import queue
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve()
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE.parents[1]))

# -- what the children do ------------------------------------------------------------------------------------

PAINT_SIZE = 512
PAINT_IMAGES = 3
PAINT_CLASSES = 64  # class 0 is never painted: stroke k paints class 1 + k % 63
STROKE_PERIOD_S = 0.25
STROKE_LENGTH = 48  # pixels, left to right
STROKE_STEPS = 12  # mouse moves per stroke, one per event-loop turn ~8 ms apart
BRUSH_RADIUS = 3
GRID_COLUMNS = 6  # stroke places: rows 16 + 24 i, columns 16 + 80 j
GRID_ROWS = 20

DELETE_IMAGES = 40
DELETE_SIZE = 128
DELETE_NAMES = ["background", "membrane", "nucleus", "vesicle", "mitochondrion"]
DELETED = 2
UNLABELLED = 255


def stroke_place(k: int) -> tuple[int, int]:
    place = k % (GRID_COLUMNS * GRID_ROWS)
    return 16 + 24 * (place // GRID_COLUMNS), 16 + 80 * (place % GRID_COLUMNS)


def stroke_box(k: int) -> tuple[int, int, int, int]:
    row, column = stroke_place(k)
    margin = BRUSH_RADIUS + 2
    return row - margin, row + margin + 1, column - margin, column + STROKE_LENGTH + margin + 1


def _window(folder: Path):
    from segstudio.gui.app import create_application
    from segstudio.gui.main_window import MainWindow

    app = create_application()
    window = MainWindow()
    window.resize(1200, 800)
    window.show()
    if not window.open_path(folder):
        sys.exit(f"child: could not open {folder}")
    deadline = time.monotonic() + 0.3  # let the canvas settle (fit, first paint)
    while time.monotonic() < deadline:
        app.processEvents()
        time.sleep(0.01)
    return app, window


def child_paint(folder: Path, log_path: Path, image: int, quiet_only: bool) -> None:
    import segstudio.gui.session as session_module

    if quiet_only:  # the baseline: Session reads the constant when it builds its timers
        session_module.AUTOSAVE_MAX_WAIT_MS = 2**31 - 1
    from PySide6.QtCore import QPoint, Qt, QTimer
    from PySide6.QtTest import QTest

    from segstudio.gui.canvas import Tool

    app, window = _window(folder)
    canvas = window.canvas
    window.set_tool(Tool.BRUSH)
    log = open(log_path, "a", encoding="utf-8")  # noqa: SIM115 - written until the kill
    left = Qt.MouseButton.LeftButton
    none = Qt.KeyboardModifier.NoModifier
    window.select_image(image)
    canvas.set_brush_radius(BRUSH_RADIUS)
    started = time.monotonic()

    def point(row: float, column: float) -> QPoint:
        p = canvas.to_widget(row + 0.5, column + 0.5)
        return QPoint(round(p.x()), round(p.y()))

    def begin(k: int) -> None:
        window.set_active_class(1 + k % (PAINT_CLASSES - 1))
        row, column = stroke_place(k)
        QTest.mousePress(canvas, left, none, point(row, column))
        if k == 0:  # the parent times the kill from the child's own clock, not the pipe's delivery
            print(f"painting {time.time():.6f}", flush=True)
        QTimer.singleShot(8, lambda: move(k, 1))

    def move(k: int, step: int) -> None:
        row, column = stroke_place(k)
        QTest.mouseMove(canvas, point(row, column + STROKE_LENGTH * step / STROKE_STEPS))
        if step < STROKE_STEPS:
            QTimer.singleShot(8, lambda: move(k, step + 1))
        else:
            QTimer.singleShot(8, lambda: finish(k))

    def finish(k: int) -> None:
        row, column = stroke_place(k)
        QTest.mouseRelease(canvas, left, none, point(row, column + STROKE_LENGTH))
        finished = time.time()
        r0, r1, c0, c1 = stroke_box(k)
        klass = 1 + k % (PAINT_CLASSES - 1)
        pixels = int((window.session.document.labels[r0:r1, c0:c1] == klass).sum())
        if pixels == 0:  # os._exit: SystemExit in a Qt slot would not end the process
            print(f"child: stroke {k} painted nothing (canvas mapping?)", file=sys.stderr, flush=True)
            os._exit(3)
        log.write(json.dumps({"t": finished, "k": k, "image": window.session.index, "class": klass,
                              "pixels": pixels}) + "\n")
        log.flush()
        os.fsync(log.fileno())
        due = started + (k + 1) * STROKE_PERIOD_S
        QTimer.singleShot(max(0, round(1000 * (due - time.monotonic()))), lambda: begin(k + 1))

    QTimer.singleShot(0, lambda: begin(0))
    app.exec()


def child_delete(folder: Path, timed: bool) -> None:
    from segstudio.gui import studio_actions
    from segstudio.io import class_change

    marks: dict[str, float] = {}
    if timed:  # calibration only (the killed runs are not wrapped): when the journal comes and goes
        for name in ("commit", "finish"):
            def wrapped(change, _name=name, _method=getattr(class_change.ClassChange, name)):
                _method(change)
                marks[_name] = time.monotonic()
            setattr(class_change.ClassChange, name, wrapped)
    app, window = _window(folder)
    print(f"start {time.time():.6f}", flush=True)
    started = time.monotonic()
    studio_actions.delete_class(window, DELETED, -1)
    done = time.monotonic()
    if timed:
        print(f"journal {marks['commit'] - started:.6f} {marks['finish'] - started:.6f}", flush=True)
    print(f"done {done - started:.6f}", flush=True)
    app.exec()  # until the kill


# -- the parent ----------------------------------------------------------------------------------------------

class Child:
    """A child process of this script whose stdout lines arrive on a queue."""

    def __init__(self, args: list[str], work: Path) -> None:
        env = dict(os.environ, QT_QPA_PLATFORM="offscreen")
        home = work / "home"
        for name, sub in (("XDG_CONFIG_HOME", ".config"), ("XDG_DATA_HOME", ".local/share"),
                          ("XDG_CACHE_HOME", ".cache"), ("XDG_STATE_HOME", ".local/state")):
            env[name] = str(home / sub)
        self.stderr_path = work / "child-stderr.txt"
        self._stderr = open(self.stderr_path, "wb")  # noqa: SIM115 - closed in kill()
        self.process = subprocess.Popen([sys.executable, str(HERE), "--child", *args], env=env,
                                        stdout=subprocess.PIPE, stderr=self._stderr, text=True)
        self.lines: queue.Queue[str | None] = queue.Queue()
        self.seen: list[str] = []
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        for line in self.process.stdout:
            self.lines.put(line.strip())
        self.lines.put(None)

    def expect(self, word: str, timeout: float = 120.0) -> list[float]:
        """Wait for the line ``word NUMBER...``; the numbers (times the child measured)."""
        try:
            line = self.lines.get(timeout=timeout)
        except queue.Empty:
            line = "(nothing)"
        if line is None or line.split()[:1] != [word]:
            self.kill()
            raise SystemExit(f"child said {line!r}, not {word!r}; its stderr:\n"
                             f"{self.stderr_path.read_text(errors='replace')[-3000:]}")
        self.seen.append(word)
        return [float(number) for number in line.split()[1:]]

    def kill(self) -> float:
        """SIGKILL and reap (a zombie's pid still looks alive to the lock); the kill's wall time."""
        killed = time.time()
        self.process.send_signal(signal.SIGKILL)
        self.process.wait()
        self._stderr.close()
        while True:  # what it said before dying
            try:
                line = self.lines.get(timeout=5)
            except queue.Empty:
                break
            if line is None:
                break
            self.seen.append(line.split()[0] if line else line)
        return killed

    def died_by_kill(self) -> bool:
        return self.process.returncode == -signal.SIGKILL


def _write_image(path: Path, image: np.ndarray) -> None:
    from PIL import Image

    Image.fromarray(image).save(path)


def make_paint_project(folder: Path) -> str:
    """Three 512 x 512 images, no labels yet; where the images come from."""
    from _realdata import ISBI

    from segstudio.annotation.classes import ClassList
    from segstudio.io.project import Project

    images = folder / "images"
    images.mkdir(parents=True)
    slices = sorted((ISBI / "images").glob("*.png"))[:PAINT_IMAGES] if (ISBI / "images").is_dir() else []
    if len(slices) == PAINT_IMAGES:
        for path in slices:
            shutil.copy(path, images / path.name)
        source = f"ISBI 2012 EM slices {', '.join(p.stem for p in slices)}"
    else:
        from segstudio.synthetic import generate_sample

        for index in range(PAINT_IMAGES):
            image, _ = generate_sample(index, PAINT_SIZE, PAINT_SIZE)
            _write_image(images / f"sample{index}.png", image)
        source = "synthetic samples (no ISBI data found)"
    Project.create(folder, [images], ClassList.from_names([f"class {i}" for i in range(PAINT_CLASSES)]))
    return source


def delete_truth(index: int) -> np.ndarray:
    """Image *index*'s labels: bands of 8 rows, each one class or unlabelled."""
    bands = (np.arange(DELETE_SIZE) // 8 + index) % (len(DELETE_NAMES) + 1)
    rows = np.where(bands == len(DELETE_NAMES), UNLABELLED, bands).astype(np.uint8)
    return np.repeat(rows[:, None], DELETE_SIZE, axis=1)


def make_delete_project(folder: Path) -> None:
    from segstudio.annotation.classes import ClassList
    from segstudio.io.project import Project

    images = folder / "images"
    images.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for index in range(DELETE_IMAGES):
        _write_image(images / f"tile{index:02d}.png",
                     rng.integers(0, 255, (DELETE_SIZE, DELETE_SIZE), dtype=np.uint8))
    project = Project.create(folder, [images], ClassList.from_names(DELETE_NAMES))
    for index in range(DELETE_IMAGES):
        project.write_labels(index, delete_truth(index))
    project.save()


def reopen(folder: Path):
    """Open as a new studio would; ``(project, None)`` or ``(None, the error)``."""
    from segstudio.errors import SegstudioError
    from segstudio.io.project import Project

    try:
        return Project.open(folder, lock=True), None
    except SegstudioError as error:
        return None, error


@dataclass
class Results:
    trials: int = 0
    mid_operation: int = 0
    lost: list[float] = field(default_factory=list)
    strokes: list[int] = field(default_factory=list)
    inconsistent: int = 0
    reopen_failed: int = 0
    notes: list[str] = field(default_factory=list)
    outcomes: dict[str, int] = field(default_factory=dict)
    phases: dict[str, int] = field(default_factory=dict)


def paint_trial(template: Path, work: Path, image: int, delay: float, quiet_only: bool, results: Results) -> None:
    from segstudio.errors import SegstudioError

    folder = work / "project"
    shutil.rmtree(folder, ignore_errors=True)
    shutil.copytree(template, folder)
    log_path = work / "strokes.log"
    log_path.unlink(missing_ok=True)
    child = Child(["paint", str(folder), str(log_path), str(image), *(["--quiet-only"] if quiet_only else [])],
                  work)
    (started,) = child.expect("painting")
    time.sleep(max(0.0, started + delay - time.time()))
    killed = child.kill()
    if not child.died_by_kill():
        raise SystemExit(f"the painting child ended by itself ({child.process.returncode}); its stderr:\n"
                         f"{child.stderr_path.read_text(errors='replace')[-3000:]}")
    strokes = [json.loads(line) for line in log_path.read_text(encoding="utf-8").splitlines()
               if line.endswith("}")]  # a line cut by the kill is a stroke not yet logged
    if not strokes:
        raise SystemExit(f"the painting child logged no stroke in {delay:.2f} s")
    results.trials += 1
    results.strokes.append(len(strokes))
    if strokes and killed - strokes[-1]["t"] < 1.0:
        results.mid_operation += 1
    project, error = reopen(folder)
    if project is None:
        results.reopen_failed += 1
        results.inconsistent += len({s["image"] for s in strokes})
        results.notes.append(f"reopen failed: {error}")
        results.lost.append(killed - strokes[0]["t"] if strokes else 0.0)
        return
    try:
        first_missing = None
        for index in sorted({s["image"] for s in strokes}):
            mine = [s for s in strokes if s["image"] == index]
            try:
                labels = project.read_labels(index)
            except SegstudioError as exc:
                results.inconsistent += 1
                results.notes.append(f"image {index}: unreadable after the kill: {exc}")
                labels = None
            gap = False
            bad = False
            for stroke in mine:
                r0, r1, c0, c1 = stroke_box(stroke["k"])
                found = 0 if labels is None else int((labels[r0:r1, c0:c1] == stroke["class"]).sum())
                whole = found == stroke["pixels"]
                if found and gap:
                    bad = True
                if not whole:
                    gap = True
                    if first_missing is None or stroke["t"] < first_missing:
                        first_missing = stroke["t"]
            if bad:
                results.inconsistent += 1
                results.notes.append(f"image {index}: holds a stroke while an earlier one is missing")
        results.lost.append(0.0 if first_missing is None else killed - first_missing)
    finally:
        project.release()


def delete_trial(template: Path, work: Path, delay: float | None,
                 results: Results | None) -> tuple[float, float, float]:
    """One deletion killed *delay* s after it starts; with None, an uninterrupted one
    timed: ``(duration, journal written, journal removed)`` in seconds from its start."""
    from segstudio.errors import SegstudioError
    from segstudio.io.class_change import JOURNAL_FILE, is_staged

    nan = (float("nan"),) * 3
    folder = work / "project"
    shutil.rmtree(folder, ignore_errors=True)
    shutil.copytree(template, folder)
    child = Child(["delete", str(folder), *(["timed"] if delay is None else [])], work)
    (started,) = child.expect("start")
    if delay is None:
        journal = child.expect("journal")
        (duration,) = child.expect("done")
        child.kill()
        return duration, journal[0], journal[1]
    time.sleep(max(0.0, started + delay - time.time()))
    child.kill()
    assert results is not None
    results.trials += 1
    finished = "done" in child.seen
    results.mid_operation += not finished
    journal = (folder / JOURNAL_FILE).exists()
    staged = any(is_staged(p.name) for p in (folder / "labels").iterdir())
    project, error = reopen(folder)
    if project is None:
        results.reopen_failed += 1
        results.inconsistent += DELETE_IMAGES
        results.notes.append(f"reopen failed: {error}")
        return nan
    try:
        names = project.classes.names
        after = [n for i, n in enumerate(DELETE_NAMES) if i != DELETED]
        outcome = "kept" if names == DELETE_NAMES else "deleted" if names == after else "other class list"
        phase = ("after it finished" if finished else "journal written" if journal
                 else "staging" if staged else "before staging" if outcome == "kept" else "journal removed")
        results.phases[phase] = results.phases.get(phase, 0) + 1
        results.outcomes[outcome] = results.outcomes.get(outcome, 0) + 1
        # each original class's value under project.json's names; a class it lacks reads unlabelled
        table = np.full(256, UNLABELLED, np.uint8)
        for value, name in enumerate(DELETE_NAMES):
            if name in names:
                table[value] = names.index(name)
        for index in range(DELETE_IMAGES):
            try:
                labels = project.read_labels(index)
            except SegstudioError as exc:
                results.inconsistent += 1
                results.notes.append(f"tile {index}: unreadable: {exc}")
                continue
            if outcome == "other class list" or labels is None or not np.array_equal(labels,
                                                                                  table[delete_truth(index)]):
                results.inconsistent += 1
                results.notes.append(f"tile {index}: rows disagree with the classes of project.json ({outcome})")
        leftovers = [p.name for p in (folder / "labels").iterdir() if is_staged(p.name)]
        if (folder / JOURNAL_FILE).exists() or leftovers:
            results.notes.append(f"left after reopening: journal {(folder / JOURNAL_FILE).exists()}, "
                                 f"{len(leftovers)} staged file(s)")
    finally:
        project.release()
    return nan


def run_paint(work: Path, trials: int, rng: np.random.Generator, quiet_only: bool, label: str) -> Results:
    template = work / "paint-template"
    if not template.exists():
        print(f"paint: {make_paint_project(template)}, {PAINT_SIZE} x {PAINT_SIZE}", flush=True)
    results = Results()
    for trial in range(trials):
        delay = float(rng.uniform(1.5, 8.0))
        paint_trial(template, work, trial % PAINT_IMAGES, delay, quiet_only, results)
        print(f"  {label} trial {trial + 1}/{trials}: killed {delay:.2f} s after the first stroke, "
              f"{results.strokes[-1]} strokes, {results.lost[-1]:.2f} s lost", flush=True)
    return results


def run_delete(work: Path, trials: int, rng: np.random.Generator) -> tuple[Results, float]:
    template = work / "delete-template"
    make_delete_project(template)
    duration, journal, removed = max(delete_trial(template, work, None, None) for _ in range(3))
    print(f"delete: {DELETE_IMAGES} tiles of {DELETE_SIZE} x {DELETE_SIZE}, class {DELETE_NAMES[DELETED]!r} "
          f"of {len(DELETE_NAMES)}; an uninterrupted deletion takes {duration:.3f} s (the longest of 3); "
          f"its journal is on disk from {journal:.3f} to {removed:.3f} s", flush=True)
    results = Results()
    for _trial in range(trials):
        delete_trial(template, work, float(rng.uniform(0.0, duration)), results)
    return results, duration


def _seconds(values: list[float]) -> list[str]:
    if not values:
        return ["-", "-", "-"]
    array = np.asarray(values)
    return [f"{np.median(array):.2f}", f"{np.percentile(array, 90):.2f}", f"{array.max():.2f}"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scenario", choices=("paint", "delete", "all"), default="all")
    parser.add_argument("--trials", type=int, default=20, help="kills per scenario (default 20)")
    parser.add_argument("--baseline-trials", type=int, default=8,
                        help="kills of the quiet-time-only baseline (default 8; 0 skips it)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--child", nargs="+", help=argparse.SUPPRESS)
    parser.add_argument("--quiet-only", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        if args.child[0] == "paint":
            child_paint(Path(args.child[1]), Path(args.child[2]), int(args.child[3]), args.quiet_only)
        else:
            child_delete(Path(args.child[1]), args.child[2:] == ["timed"])
        return

    from _measure import machine, table

    # "took over the lock of a dead process" and "finished an interrupted deletion" at every reopen
    logging.getLogger("segstudio").setLevel(logging.ERROR)

    print(f"machine: {machine()}", flush=True)
    rng = np.random.default_rng(args.seed)
    rows: list[list[str]] = []
    notes: list[str] = []
    lost_all: list[float] = []
    inconsistent_all = 0
    with tempfile.TemporaryDirectory(prefix="segstudio-bench-crash-") as tmp:
        work = Path(tmp)
        runs = []
        if args.scenario in ("paint", "all"):
            from segstudio.gui.session import AUTOSAVE_MAX_WAIT_MS, AUTOSAVE_MS

            label = f"paint: autosave ({AUTOSAVE_MS / 1000:g} s quiet, {AUTOSAVE_MAX_WAIT_MS / 1000:g} s max wait)"
            runs.append((label, "autosave", args.trials, False))
            if args.baseline_trials:
                runs.append(("paint: baseline, 1 s quiet time only", "baseline", args.baseline_trials, True))
        for label, short, trials, quiet_only in runs:
            results = run_paint(work, trials, rng, quiet_only, short)
            rows.append([label, str(results.trials), str(results.mid_operation),
                         f"{np.mean(results.strokes):.1f}", *_seconds(results.lost),
                         str(results.inconsistent), str(results.reopen_failed)])
            notes += [f"{label}: {note}" for note in dict.fromkeys(results.notes)]
            if not quiet_only:
                lost_all += results.lost
                inconsistent_all += results.inconsistent + results.reopen_failed
        if args.scenario in ("delete", "all"):
            results, _duration = run_delete(work, args.trials, rng)
            label = f"delete class ({DELETE_IMAGES} files)"
            rows.append([label, str(results.trials), str(results.mid_operation), "-", "-", "-", "-",
                         str(results.inconsistent), str(results.reopen_failed)])
            outcomes = ", ".join(f"{k} {v}" for k, v in sorted(results.outcomes.items()))
            phases = ", ".join(f"{k} {v}" for k, v in sorted(results.phases.items()))
            notes.append(f"{label}: after reopening: {outcomes}; phase at the kill: {phases}")
            notes += [f"{label}: {note}" for note in dict.fromkeys(results.notes)]
            inconsistent_all += results.inconsistent + results.reopen_failed
    print()
    print(table(["scenario", "trials", "kills mid-op", "strokes/trial", "lost s median", "p90", "max",
                 "inconsistent files", "reopen failed"], rows))
    for note in notes:
        print(f"  {note}")
    worst = max(lost_all, default=0.0)
    met = worst <= 2.0 and inconsistent_all == 0
    print(f"goal (<= 2 s of edits lost at any kill, 0 inconsistent files): {'met' if met else 'NOT met'} "
          f"(worst {worst:.3f} s lost, {inconsistent_all} inconsistent)")


if __name__ == "__main__":
    main()
