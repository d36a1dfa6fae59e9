"""Time "press Train" on the demo project until a new model version beats its parent.

Run from the repository root::

    python benchmarks/bench_finetune.py [--epochs 8] [--device auto] [--modes full fast]

It prepares the demo project in a temporary folder (9 corrected images; the
3 images of the sample's ``val`` split, scored against the sample's ground
truth), registers the demo model as a version with
``VersionStore.import_checkpoint``, and starts training runs the way the
studio does: :class:`~segstudio.training.process.TrainingProcess` with a
:class:`TrainJobSpec` of file paths, polled every 20 ms as a GUI timer would.

Two parents:

* ``demo``: the shipped demo model (mIoU ~0.98 on the validation images),
  fine-tuned gently (AdamW, lr ``--lr-strong``); beating it is not a given;
* ``weak``: the demo architecture after ``--weak-steps`` optimisation steps
  from scratch (0: untrained), registered as a version too, fine-tuned with
  lr ``--lr-weak``.

and two modes: ``full`` (every layer trains) and ``fast`` (the encoder is
frozen: "fast mode").

For each run the table gives the time from ``start()`` to the child's first
progress message (spawn, torch import, loading the images), to the first
epoch whose validation mIoU beats the parent's, and to the ``finished``
message (scores of parent and new model included), then the parent's and
the new version's mIoU. The child uses ``cpu_count - 1`` torch threads (one
core stays with the window) unless ``--threads`` says otherwise.

The GUI event-loop part (gaps in the window's event loop while training) is
measured separately.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from _measure import event_loop_gaps, gap_row, machine, table  # noqa: E402

from segstudio.demo import prepare_demo  # noqa: E402
from segstudio.models.checkpoint import load_checkpoint, save_checkpoint  # noqa: E402
from segstudio.models.registry import get_model  # noqa: E402
from segstudio.resources import SAMPLE, resource_path  # noqa: E402
from segstudio.tasks import run_to_completion  # noqa: E402
from segstudio.training import TrainConfig, train_steps  # noqa: E402
from segstudio.training.process import TrainingProcess, TrainJobSpec, thread_count  # noqa: E402
from segstudio.training.project_data import SampleSource, load_sources, sources_from_project  # noqa: E402
from segstudio.training.versions import VersionStore  # noqa: E402

POLL_S = 0.02


def validation_sources(project) -> list[SampleSource]:
    """The demo's held-out images, with the sample's ground truth as labels."""
    masks = resource_path(*SAMPLE) / "masks"
    return [
        SampleSource(entry.id, entry.source, masks / f"{entry.source.stem}.png")
        for entry in project.entries
        if entry.status.value not in ("corrected", "reviewed")
    ]


def weak_parent(store: VersionStore, demo_id: str, train: list[SampleSource], steps: int, folder: Path) -> str:
    """The demo architecture after a few steps from scratch, stored as a version."""
    _, meta = load_checkpoint(store.checkpoint_path(demo_id))
    torch.manual_seed(1)
    model = get_model(meta.architecture, **meta.arch_args)
    if steps:
        samples = load_sources(train, meta.num_classes).samples
        config = TrainConfig(epochs=None, steps=steps, batch_size=4, crop_size=256, optimizer="adamw", lr=3e-3,
                             device="cpu")
        run_to_completion(train_steps(model, samples, [], config, folder / "weak-run", meta=meta))
    path = save_checkpoint(folder / "weak.safetensors", model, meta)
    return store.import_checkpoint(path, name=f"weak ({steps} steps from scratch)", activate=False).id


def run_once(store, parent_id, train, val, config, threads) -> dict:
    spec = TrainJobSpec(
        base_checkpoint=store.checkpoint_path(parent_id), train=train, val=val, config=config,
        out_dir=store.new_run_dir(), parent_id=parent_id, threads=threads,
    )
    process = TrainingProcess()
    started = time.perf_counter()
    process.start(spec)
    first_progress = None
    epochs: list[tuple[float, float | None]] = []
    finished = None
    try:
        while finished is None:
            for message in process.poll():
                now = time.perf_counter() - started
                kind = message["type"]
                if kind == "progress" and first_progress is None:
                    first_progress = now
                elif kind == "epoch":
                    epochs.append((now, message["val_mean_iou"]))
                elif kind in ("finished", "cancelled", "error"):
                    finished = (now, message)
            time.sleep(POLL_S)
    finally:
        process.stop()
    done_s, message = finished
    if message["type"] != "finished":
        raise SystemExit(f"the run failed: {message.get('message')}\n{message.get('traceback', '')}")
    version = store.add(message["checkpoint"], message["version_meta"])
    parent_miou = message["parent_scores"]["mean_iou"]
    beat = next((t for t, miou in epochs if miou is not None and miou > parent_miou), None)
    return {
        "first_progress": first_progress, "beat": beat, "finished": done_s, "steps": message["steps"],
        "parent_miou": parent_miou, "new_miou": message["scores"]["mean_iou"], "version": version.id,
        "train_s": message["elapsed_s"],
    }


def gui_event_loop(epochs: int) -> None:
    """Press Train in the studio on the demo project; report the gaps between
    ticks of a 1 ms QTimer on the GUI thread while the run goes, next to idle."""

    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    from PySide6.QtCore import QTimer

    from segstudio.gui.app import create_application
    from segstudio.gui.main_window import MainWindow

    folder = Path(tempfile.mkdtemp(prefix="segstudio-bench-gui-"))
    try:
        create_application()
        project = prepare_demo(folder / "demo")
        window = MainWindow()
        window.show()
        window.open_path(project.folder)

        idle = event_loop_gaps(lambda loop: QTimer.singleShot(3000, loop.quit))
        outcome: list[str] = []
        pressed = time.monotonic()

        def press(loop):
            window.training.runEnded.connect(lambda result: (outcome.append(result), loop.quit()))
            settings = {**window.training_panel.settings(), "epochs": epochs, "freeze_backbone": False,
                        "device": "cpu", "auto_adopt": False}
            window.training_panel.trainRequested.emit(settings)

        busy = event_loop_gaps(press)
        elapsed = time.monotonic() - pressed
        versions = window.training.store.list()
        new = versions[-1]
        print(f"studio: Train pressed -> {outcome[0]} in {elapsed:.1f} s ({len(versions)} versions; "
              f"new mIoU {new.mean_iou}, parent {new.parent_mean_iou})")
        rows = [gap_row("idle", idle), gap_row("training in the child process", busy)]
        print(table(["GUI thread (1 ms timer)", "ticks", "gap p50 ms", "gap p99 ms", "gap max ms"], rows))
        window.session.close()
        window.close()
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--epochs", type=int, default=8, help="epochs per run (default 8)")
    parser.add_argument("--crop", type=int, default=256)
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--lr-weak", type=float, default=3e-3, help="AdamW lr for the weak parent")
    parser.add_argument("--lr-strong", type=float, default=1e-4, help="AdamW lr for the demo parent")
    parser.add_argument("--weak-steps", type=int, default=4, help="steps from scratch for the weak parent (0: none)")
    parser.add_argument("--device", default="auto", help="auto, cpu or cuda")
    parser.add_argument("--threads", type=int, help="torch threads in the child (default: cpu_count - 1)")
    parser.add_argument("--modes", nargs="+", default=["full", "fast"], choices=["full", "fast"])
    parser.add_argument("--parents", nargs="+", default=["weak", "demo"], choices=["weak", "demo"])
    parser.add_argument("--gui", action="store_true",
                        help="also press Train in the studio (offscreen) and measure the GUI event-loop gaps")
    parser.add_argument("--gui-only", action="store_true", help="only the studio measurement")
    args = parser.parse_args()
    if args.gui or args.gui_only:
        gui_event_loop(args.epochs)
        if args.gui_only:
            return 0

    folder = Path(tempfile.mkdtemp(prefix="segstudio-bench-finetune-"))
    try:
        project = prepare_demo(folder / "demo")
        store = VersionStore(project.folder)
        demo_id = store.import_checkpoint(Path(project.model_settings["checkpoint"]), name="demo model").id
        train = sources_from_project(project)
        val = validation_sources(project)
        parents = {"demo": demo_id}
        if "weak" in args.parents:
            parents["weak"] = weak_parent(store, demo_id, train, args.weak_steps, folder)
        print(f"machine: {machine()}")
        print(f"load average before the runs: {', '.join(f'{v:.1f}' for v in os.getloadavg())}")
        print(f"child threads: {thread_count(args.threads)} of {os.cpu_count()} CPUs; device setting {args.device}")
        print(f"data: demo project, {len(train)} corrected training images, {len(val)} validation images; "
              f"U-Net (demo architecture), crop {args.crop}, batch {args.batch}, {args.epochs} epochs, AdamW cosine")
        rows = []
        for parent in args.parents:
            for mode in args.modes:
                config = TrainConfig(
                    epochs=args.epochs, batch_size=args.batch, crop_size=args.crop, optimizer="adamw",
                    lr=args.lr_weak if parent == "weak" else args.lr_strong, schedule="cosine",
                    freeze_backbone=mode == "fast", device=args.device, seed=0,
                )
                result = run_once(store, parents[parent], train, val, config, args.threads)
                print(f"  {parent}/{mode}: done", file=sys.stderr)
                rows.append([
                    parent, mode, f"{result['parent_miou']:.4f}", f"{result['new_miou']:.4f}",
                    "yes" if result["new_miou"] > result["parent_miou"] else "no",
                    f"{result['first_progress']:.1f}",
                    "-" if result["beat"] is None else f"{result['beat']:.1f}",
                    f"{result['finished']:.1f}", str(result["steps"]),
                    f"{(result['finished'] - result['first_progress']) / max(result['steps'], 1):.2f}",
                ])
        print(f"load average after the runs: {', '.join(f'{v:.1f}' for v in os.getloadavg())} "
              "(anything else running skews the figures)")
        print(table(["parent", "mode", "parent mIoU", "new mIoU", "beats", "1st step s", "beats at s",
                     "finished s", "steps", "s/step*"], rows))
        print("* (finished - first step) / steps: includes validation every epoch and the final scoring")
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
