"""A user's journey through the real studio window, driven by real X events.

Starts the studio as its own process on an X display with a window manager
(Xvfb + openbox, started here with ``--start-x``), and drives it with
xdotool the way a user does: keys and mouse drags, typed paths in the
dialogs. For each of three data sets -- the bundled demo (RGB images and
the demo model), a CT series (DICOM, made from pydicom's CT_small.dcm) and
a NIfTI volume (nibabel's anatomical.nii) -- it opens the studio, runs the
model (Ctrl+R), paints a stroke with the brush, trains a new model version
on the demo (Ctrl+T, the Training dock's defaults), on the volumes (given a
small grey U-Net beforehand) runs one 3-D CRF over the volume (Ctrl+K, the CRF
dock set to Whole volume) and accepts it (Ctrl+Shift+K), exports the masks (Ctrl+E,
folder typed, Enter) and quits (Ctrl+Q), then checks on disk that the
label file and the exports exist, hold the stroke, and that the project's
lock is gone. Last, on the demo project, a whole-slide image (a pyramidal
OME-TIFF of the demo's cells) is opened from File (Ctrl+Alt+O, path typed),
the model run on the view at 100 % (Ctrl+R), its prediction accepted
(Ctrl+Shift+A), a stroke painted, and the slide window closed (Ctrl+W):
the prediction and label chunks are checked on disk (``--only slide`` runs
just this part). It saves a screenshot after each step for a person to look
at, and prints one line per check.

    apt-get install -y xvfb openbox xdotool imagemagick
    python scripts/journey.py --start-x --out /tmp/journey

Exit status 0 when every check passed.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
PYTHON = sys.executable


class Journey:
    def __init__(self, out: Path, work: Path) -> None:
        self.out, self.work = out, work
        self.failures: list[str] = []
        self.shots = 0

    def check(self, ok: bool, what: str) -> bool:
        print(f"{'ok  ' if ok else 'FAIL'} {what}", flush=True)
        if not ok:
            self.failures.append(what)
        return ok

    def xdo(self, *args: str) -> str:
        return subprocess.run(["xdotool", *args], capture_output=True, text=True, check=False).stdout.strip()

    def shot(self, name: str) -> None:
        self.shots += 1
        path = self.out / f"{self.shots:02d}-{name}.png"
        subprocess.run(["import", "-window", "root", str(path)], check=False)

    def wait_window(self, pattern: str, timeout: float = 60.0) -> str | None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = self.xdo("search", "--onlyvisible", "--name", pattern).split()
            if found:
                return found[-1]
            time.sleep(0.3)
        return None

    def focus(self, window: str) -> tuple[int, int, int, int]:
        self.xdo("windowactivate", "--sync", window)
        geometry = self.xdo("getwindowgeometry", "--shell", window)
        values = dict(line.split("=") for line in geometry.splitlines() if "=" in line)
        return int(values["X"]), int(values["Y"]), int(values["WIDTH"]), int(values["HEIGHT"])

    def drag(self, x0: int, y0: int, x1: int, steps: int = 20) -> None:
        self.xdo("mousemove", str(x0), str(y0))
        self.xdo("mousedown", "1")
        for k in range(1, steps + 1):
            self.xdo("mousemove", str(x0 + (x1 - x0) * k // steps), str(y0))
            time.sleep(0.02)
        self.xdo("mouseup", "1")

    def run(self, name: str, path: Path, project: Path, label_glob: str) -> None:
        print(f"-- {name}: {path}", flush=True)
        env = dict(os.environ, QT_QPA_PLATFORM="xcb", HOME=str(self.work / "home"))
        settings = self.work / "home" / ".config" / "segstudio" / "segstudio.conf"
        settings.parent.mkdir(parents=True, exist_ok=True)
        if not settings.exists():  # the CRF dock's volume choice: the whole volume (3-D)
            settings.write_text("[crf]\nvolume_mode=volume\n", encoding="utf-8")
        env.pop("XDG_CONFIG_HOME", None)
        log = open(self.work / f"{name}.log", "w")  # noqa: SIM115 - open for the process's life
        studio = subprocess.Popen([PYTHON, "-m", "segstudio", "open", str(path)], stdout=log, stderr=log, env=env)
        try:
            self._steps(name, project, label_glob, studio, train=name == "demo")
        finally:
            if studio.poll() is None:
                studio.terminate()
                studio.wait(20)
            log.close()

    def _scribble_and_next(self, name: str, project: Path, window: str) -> None:
        """S and a short stroke (the CRF refines around it; the screenshot shows the CRF layer),
        then N: the next image to annotate opens (its name is in the title of the shot)."""
        x, y, width, height = self.focus(window)
        cx, cy = x + width // 2, y + height // 2
        self.xdo("key", "s")
        self.drag(cx - 20, cy + 60, cx + 20, steps=8)
        time.sleep(4)
        self.shot(f"{name}-scribble")
        project_file = project / "project.json"
        self.xdo("key", "n")
        time.sleep(3)
        self.shot(f"{name}-next-to-annotate")
        self.check('"uncertainty"' in project_file.read_text(encoding="utf-8"),
                   f"{name}: the prediction's uncertainty is kept in project.json")
        self.xdo("key", "b")

    def _train(self, name: str, project: Path, window: str) -> None:
        """Ctrl+T with the Training dock's defaults (2 minutes), then wait for the new version."""
        versions = project / "models" / "versions.json"
        before = versions.read_text() if versions.is_file() else ""
        self.focus(window)
        self.xdo("key", "ctrl+t")
        time.sleep(30)
        self.shot(f"{name}-training")
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline:
            now = versions.read_text() if versions.is_file() else ""
            if now != before and '"v0002"' in now:
                break
            time.sleep(2)
        time.sleep(8)  # scoring, adopting, re-running on unreviewed images
        self.shot(f"{name}-trained")
        now = versions.read_text() if versions.is_file() else ""
        self.check('"v0002"' in now and (project / "models" / "v0002").is_dir(),
                   f"{name}: Ctrl+T trained a new model version (models/v0002)")

    def _volume_tools(self, name: str, project: Path, window: str, frame: tuple[int, int, int, int],
                      since: float) -> None:
        """A second stroke four slices up, Fill between slices (Ctrl+Shift+F), then the three
        linked views (Ctrl+3) with the crosshair moved by Shift+click; the fill is read back from disk."""
        import numpy as np

        x, y, width, height = self.focus(window)
        cx, cy = x + width // 2, y + height // 2
        self.xdo("mousemove", str(cx), str(cy + 80))
        self.xdo("click", "1")  # focus the canvas (a click paints a dot below the stroke: fine)
        self.xdo("key", "Prior", "Prior", "Prior", "Prior")  # Page Up x4: four slices further
        time.sleep(1)
        self.drag(cx - 60, cy, cx + 60)
        time.sleep(0.5)
        self.xdo("key", "ctrl+shift+f")
        time.sleep(3)  # autosave
        self.shot(f"{name}-filled-between-slices")
        files = sorted((project / "labels").glob("*.npz"))
        filled = []
        if files:
            with np.load(files[0]) as stored:
                labels = stored["labels"]
            per_slice = [int(np.count_nonzero(labels[k] == 1)) for k in range(labels.shape[0])]
            painted = [k for k, count in enumerate(per_slice) if count]
            filled = painted
        self.check(len(filled) >= 5 and filled == list(range(filled[0], filled[-1] + 1)) if filled else False,
                   f"{name}: fill between slices gave class 2 on {len(filled)} consecutive slices {filled}")
        self.xdo("key", "ctrl+3")
        time.sleep(1.5)
        self.shot(f"{name}-three-views")
        self.xdo("mousemove", str(x + width // 3), str(cy + 30))
        self.xdo("keydown", "shift")
        self.xdo("click", "1")
        self.xdo("keyup", "shift")
        time.sleep(1)
        self.shot(f"{name}-three-views-crosshair")
        self.xdo("key", "ctrl+3")
        time.sleep(0.5)

    def _crf_3d(self, name: str, project: Path, window: str) -> None:
        """The CRF dock's "Whole volume (3-D)" (set in the studio's settings before it started):
        Ctrl+K runs one CRF over the volume, Ctrl+Shift+K accepts it; every slice the model
        predicted gets labels on disk."""
        import numpy as np

        self.focus(window)
        self.xdo("key", "ctrl+k")
        time.sleep(10)
        self.xdo("key", "ctrl+3")
        time.sleep(1.5)
        self.shot(f"{name}-crf-3d-three-views")
        self.xdo("key", "ctrl+3")
        time.sleep(0.5)
        self.xdo("key", "ctrl+shift+k")
        time.sleep(3)  # autosave
        files = sorted((project / "labels").glob("*.npz"))
        share = []
        if files:
            with np.load(files[0]) as stored:
                labels = stored["labels"]
            share = [float(np.mean(labels[k] != 255)) for k in range(labels.shape[0])]
        self.check(bool(share) and min(share) > 0.9,
                   f"{name}: Ctrl+K (3-D CRF) then Ctrl+Shift+K labelled every slice "
                   f"(least labelled slice {min(share) if share else 0:.2f})")
        self.xdo("key", "Escape")  # an error dialog, if any, must not block the steps after

    def slide(self, project: Path, slide: Path) -> None:
        """The studio on the demo project, a whole-slide image opened from File (Ctrl+Alt+O), the model
        run on the view, its prediction accepted, a stroke painted, the window closed: labels on disk."""
        print(f"-- slide: {slide}", flush=True)
        env = dict(os.environ, QT_QPA_PLATFORM="xcb", HOME=str(self.work / "home"))
        env.pop("XDG_CONFIG_HOME", None)
        log = open(self.work / "slide.log", "w")  # noqa: SIM115 - open for the process's life
        studio = subprocess.Popen([PYTHON, "-m", "segstudio", "open", str(project)], stdout=log, stderr=log, env=env)
        try:
            self._slide_steps(project, slide, studio)
        finally:
            if studio.poll() is None:
                studio.terminate()
                studio.wait(20)
            log.close()

    def _slide_steps(self, project: Path, slide: Path, studio: subprocess.Popen) -> None:
        window = self.wait_window("segstudio —")
        if not self.check(window is not None, "slide: the studio opened"):
            return
        time.sleep(3)
        self.focus(window)
        self.xdo("key", "ctrl+alt+o")
        dialog = self.wait_window("Open a whole-slide image", 15)
        if not self.check(dialog is not None, "slide: File > Open whole-slide image (Ctrl+Alt+O) asked for a file"):
            return
        self.focus(dialog)
        self.xdo("type", "--delay", "20", str(slide))
        self.xdo("key", "Return")
        viewer = self.wait_window(f"{slide.name} \\(", 30)
        if not self.check(viewer is not None, "slide: the slide window opened"):
            return
        time.sleep(2)
        x, y, width, height = self.focus(viewer)
        self.shot("slide-opened")
        self.xdo("key", "ctrl+1")  # 100 %: the model runs on the view
        time.sleep(2)
        self.shot("slide-full-resolution")
        started = time.time()
        self.xdo("key", "ctrl+r")
        folder = next((project / "slides").glob(f"{slide.name}-*"), None) if (project / "slides").is_dir() else None
        self.check(folder is not None, f"slide: its labels folder is in the project ({folder})")
        if folder is None:
            return
        done = folder / "prediction" / "done.json"
        while time.time() - started < 120 and not (done.is_file() and done.stat().st_mtime > started
                                                    and studio.poll() is None and self._run_finished(done)):
            time.sleep(1)
        time.sleep(2)
        predicted = sorted(p.name for p in (folder / "prediction").glob("*.*") if p.name[0].isdigit())
        self.check(bool(predicted), f"slide: Ctrl+R predicted the view into {len(predicted)} chunk files")
        self.shot("slide-predicted")
        self.xdo("key", "ctrl+shift+a")  # accept the prediction in view
        time.sleep(3)  # autosave
        accepted = sorted(p.name for p in (folder / "labels").glob("*.*") if p.name[0].isdigit())
        self.check(len(accepted) >= len(predicted) // 2,
                   f"slide: Ctrl+Shift+A accepted it, autosave wrote {len(accepted)} label chunks")
        self.xdo("key", "b", "2")
        cx, cy = x + width // 2, y + height // 2
        painted_at = time.time()
        self.drag(cx - 80, cy + 40, cx + 80)
        time.sleep(3)
        changed = [p.name for p in (folder / "labels").glob("*.*") if p.name[0].isdigit()
                   and p.stat().st_mtime >= painted_at - 0.5]
        self.check(0 < len(changed) <= 4, f"slide: the stroke's autosave rewrote only its chunks {changed}")
        self.shot("slide-painted")
        self.xdo("key", "m")
        time.sleep(1)
        self.shot("slide-no-overview")
        self.xdo("key", "ctrl+w")
        time.sleep(2)
        self.check(self.wait_window(f"{slide.name} \\(", 2) is None, "slide: Ctrl+W closed the slide window")
        self.quit("slide", project, window, studio)

    @staticmethod
    def _run_finished(done: Path) -> bool:
        """The run on the view wrote its last tile (done.json stops changing)."""
        before = done.stat().st_mtime
        time.sleep(3)
        return done.stat().st_mtime == before

    def _steps(self, name: str, project: Path, label_glob: str, studio: subprocess.Popen, train: bool) -> None:
        window = self.wait_window("segstudio —")
        if not self.check(window is not None, f"{name}: the window opened"):
            return
        time.sleep(3)
        x, y, width, height = self.focus(window)
        self.shot(f"{name}-opened")
        self.xdo("key", "ctrl+r")  # run the model on this image
        time.sleep(8)
        self.shot(f"{name}-model-run")
        self.xdo("key", "Escape", "b", "2")  # close any message; brush; class 2
        cx, cy = x + width // 2, y + height // 2
        painted_at = time.time()
        self.drag(cx - 60, cy, cx + 60)
        time.sleep(3)  # autosave
        self.shot(f"{name}-painted")
        labels = sorted((project / "labels").glob(label_glob)) if (project / "labels").is_dir() else []
        saved = [p.name for p in labels if p.stat().st_mtime >= painted_at - 0.5]
        self.check(bool(saved), f"{name}: the stroke was saved within 3 s ({saved or 'no label file written'})")
        self.check((project / ".segstudio.lock").is_file(), f"{name}: the open project holds its lock")
        if train:
            self._scribble_and_next(name, project, window)
            self._train(name, project, window)
        else:
            self._volume_tools(name, project, window, (x, y, width, height), painted_at)
            self._crf_3d(name, project, window)
        exports = self.work / f"{name}-export"
        self.focus(window)
        self.xdo("key", "ctrl+e")
        dialog = self.wait_window("Export labels", 15)
        if self.check(dialog is not None, f"{name}: the export dialog opened"):
            self.focus(dialog)
            self.xdo("type", "--delay", "20", str(exports))
            self.shot(f"{name}-export-dialog")
            self.xdo("key", "Return")
            time.sleep(6)
            written = sorted(p.name for p in exports.rglob("*") if p.is_file()) if exports.is_dir() else []
            self.check(bool(written), f"{name}: exported {len(written)} file(s) {written[:4]}")
        self.shot(f"{name}-exported")
        self.quit(name, project, window, studio)

    def quit(self, name: str, project: Path, window: str, studio: subprocess.Popen) -> None:
        """Ctrl+Q in the studio: it ends, and gives its project's lock back."""
        self.focus(window)
        self.xdo("key", "ctrl+q")
        try:
            studio.wait(30)
        except subprocess.TimeoutExpired:
            pass
        self.check(studio.poll() is not None, f"{name}: Ctrl+Q closed the studio")
        self.check(not (project / ".segstudio.lock").exists(), f"{name}: closing gave the lock back")


def start_x(display: str) -> list[subprocess.Popen]:
    xvfb = subprocess.Popen(["Xvfb", display, "-screen", "0", "1920x1200x24"], stderr=subprocess.DEVNULL)
    time.sleep(2)
    os.environ["DISPLAY"] = display
    wm = subprocess.Popen(["openbox"], stderr=subprocess.DEVNULL)
    time.sleep(1)
    return [wm, xvfb]


def data_sets(work: Path) -> list[tuple[str, Path, Path, str]]:
    """(name, path to open, its project folder, glob of its label files)."""
    import nibabel

    from segstudio.demo import prepare_demo
    from tests.io.test_dicom import make_ct_series

    demo = prepare_demo(work / "demo")
    series = work / "ct" / "series"
    make_ct_series(series, z_offsets=tuple(5.0 * k for k in range(12)), file_order=tuple(range(11, -1, -1)))
    nifti = work / "mr"
    nifti.mkdir()
    shutil.copy(Path(nibabel.__file__).parent / "tests" / "data" / "anatomical.nii", nifti)
    for volume in (series, nifti):
        _with_grey_model(volume, work / "grey_unet.safetensors")
    return [("demo", demo.folder, demo.folder, "*.png"),
            ("dicom", series, series / "segstudio_project", "*.npz"),
            ("nifti", nifti, nifti / "segstudio_project", "*.npz")]


def slide_of_cells(work: Path) -> Path:
    """A 6000 x 8000 pyramidal OME-TIFF of the demo's real fluorescence cell images on a dark
    background (as the demo model knows it)."""
    import cv2
    import numpy as np

    from segstudio.io.pyramid import build_pyramid_steps
    from segstudio.tasks import run_to_completion

    canvas = np.full((6000, 8000, 3), 6, np.uint8)
    images = sorted((ROOT / "resources" / "sample" / "images").glob("*.png"))
    for number, (row, column) in enumerate((r, c) for r in range(400, 5500, 1100) for c in range(300, 7500, 1300)):
        cells = cv2.cvtColor(cv2.imread(str(images[number % len(images)]), cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)
        canvas[row: row + cells.shape[0], column: column + cells.shape[1]] = cells
    (work / "slide").mkdir()
    return run_to_completion(build_pyramid_steps(canvas, work / "slide" / "cells.ome.tif"))


def _with_grey_model(path: Path, checkpoint: Path) -> None:
    """The volume's project, made before the studio opens it, with a small grey U-Net
    (random weights: its prediction is noise for the CRF to clean) in the Model panel."""
    import torch

    from segstudio.io.project_opening import open_or_create
    from segstudio.models import get_model
    from segstudio.models.checkpoint import Preprocessing, make_meta, save_checkpoint

    if not checkpoint.is_file():
        torch.manual_seed(0)
        model = get_model("unet", num_classes=2, in_channels=1, base_width=4, depth=2, padding="same")
        meta = make_meta(model, class_names=["background", "foreground"], class_colors=[(0, 0, 0), (230, 25, 75)],
                         preprocessing=Preprocessing("grey", (0.5,), (0.25,)))
        save_checkpoint(checkpoint, model, meta)
    project = open_or_create(path)
    project.model_settings = {"architecture": "unet", "checkpoint": str(checkpoint), "device": "cpu",
                              "precision": "fp32", "tile": 512}
    project.save()
    project.release()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path(tempfile.gettempdir()) / "segstudio-journey")
    parser.add_argument("--start-x", action="store_true", help="start Xvfb :97 and openbox first")
    parser.add_argument("--only", choices=["slide"], help="run only the whole-slide part")
    args = parser.parse_args()
    started = start_x(":97") if args.start_x else []
    if not os.environ.get("DISPLAY"):
        print("no DISPLAY: pass --start-x or run under an X server with a window manager", file=sys.stderr)
        return 2
    shutil.rmtree(args.out, ignore_errors=True)
    args.out.mkdir(parents=True)
    work = Path(tempfile.mkdtemp(prefix="segstudio-journey-"))
    journey = Journey(args.out, work)
    try:
        sets = data_sets(work)
        if args.only != "slide":
            for name, path, project, label_glob in sets:
                journey.run(name, path, project, label_glob)
        journey.slide(sets[0][2], slide_of_cells(work))
    finally:
        for process in started:
            process.terminate()
    print(f"{journey.shots} screenshots in {args.out}; {len(journey.failures)} check(s) failed", flush=True)
    return 1 if journey.failures else 0


if __name__ == "__main__":
    sys.exit(main())
