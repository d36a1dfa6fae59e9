"""Training in a child process: progress, pause, cancel, errors, crashes, and a better version."""

import os
import signal
import sys
import time

import cv2
import pytest
import torch

from segstudio.errors import DataError
from segstudio.io.masks import write_indexed_png
from segstudio.models import get_model
from segstudio.models.checkpoint import load_checkpoint, make_meta, save_checkpoint
from segstudio.synthetic import CLASS_COLORS, CLASS_NAMES, generate_sample
from segstudio.training import TrainConfig
from segstudio.training.process import TrainingProcess, TrainJobSpec, score_versions
from segstudio.training.project_data import SampleSource
from segstudio.training.versions import VersionStore

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="reads /proc and sends POSIX signals")


@pytest.fixture(scope="module")
def sources(tmp_path_factory):
    """Ten 64 x 64 synthetic images and their labels on disk."""
    folder = tmp_path_factory.mktemp("data")
    found = []
    for i in range(10):
        image, mask = generate_sample(i, 64, 64)
        cv2.imwrite(str(folder / f"img{i}.png"), cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
        write_indexed_png(folder / f"img{i}_labels.png", mask, CLASS_COLORS)
        found.append(SampleSource(f"img{i}", folder / f"img{i}.png", folder / f"img{i}_labels.png"))
    return found


@pytest.fixture
def store(tmp_path):
    """A project's version store whose active version is an untrained tiny U-Net."""
    torch.manual_seed(0)
    model = get_model("unet", num_classes=3, in_channels=3, base_width=4, depth=2, batch_norm=True, padding="same")
    initial = save_checkpoint(tmp_path / "initial.safetensors", model, make_meta(model, class_names=CLASS_NAMES))
    versions = VersionStore(tmp_path / "project")
    versions.import_checkpoint(initial, name="initial")
    return versions


def job(store, sources, **settings):
    config = {"epochs": 10, "batch_size": 4, "crop_size": 64, "device": "cpu", "optimizer": "adamw", "lr": 3e-3}
    config.update(settings.pop("config", {}))
    return TrainJobSpec(
        base_checkpoint=store.checkpoint_path(store.active_id), train=sources[:8], val=sources[8:],
        config=TrainConfig(**config), out_dir=store.new_run_dir(), parent_id=store.active_id, **settings,
    )


def wait_for(process, predicate, timeout=30.0, into=None):
    """Poll until a message satisfies ``predicate``; returns every message seen."""
    seen = [] if into is None else into
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for message in process.poll():
            seen.append(message)
            if predicate(message):
                return seen
        time.sleep(0.02)
    raise AssertionError(f"no such message within {timeout} s; saw {[m['type'] for m in seen][-20:]}")


def cpu_seconds(pid):
    with open(f"/proc/{pid}/stat", encoding="ascii") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def kept_files(store):
    """The store's files besides the scratch run folders."""
    folder = store.folder
    return {p.relative_to(folder): p.read_bytes() for p in sorted(folder.rglob("*"))
            if p.is_file() and "runs" not in p.relative_to(folder).parts}


def test_progress_pause_resume_and_cancel(store, sources):
    before = kept_files(store)
    process = TrainingProcess()
    process.start(job(store, sources, config={"epochs": 500, "batch_size": 2}))
    try:
        seen = wait_for(process, lambda m: m["type"] == "progress" and m["step"] >= 3)
        started = next(m for m in seen if m["type"] == "started")
        assert started["pid"] == process.pid != os.getpid()
        assert started["train_images"] == [f"img{i}" for i in range(8)] and started["val_images"] == ["img8", "img9"]
        assert started["threads"] == max(1, min(torch.get_num_threads(), os.cpu_count() - 1))
        progress = [m for m in seen if m["type"] == "progress"]
        assert [m["step"] for m in progress] == list(range(1, len(progress) + 1))
        last = progress[-1]
        assert last["total"] == 2000 and last["epoch"] >= 1 and last["loss"] > 0 and last["lr"] > 0
        assert last["images_per_s"] > 0 and last["eta_s"] > 0

        process.pause()
        assert process.paused
        seen = wait_for(process, lambda m: m["type"] == "paused", timeout=5)
        paused_at = seen[-1]["step"]
        cpu_before = cpu_seconds(process.pid)
        time.sleep(1.0)
        quiet = process.poll()
        assert [m for m in quiet if m["type"] == "progress"] == []
        assert cpu_seconds(process.pid) - cpu_before < 0.2, "a paused run must not burn CPU"
        assert process.is_alive()

        process.resume()
        seen = wait_for(process, lambda m: m["type"] == "progress" and m["step"] > paused_at + 2, timeout=10)
        assert any(m["type"] == "resumed" for m in seen)
        wait_for(process, lambda m: m["type"] == "epoch", timeout=10)

        # cancelling a paused run wakes it up to stop
        process.pause()
        wait_for(process, lambda m: m["type"] == "paused", timeout=5)
        cancelled_at = time.monotonic()
        process.cancel()
        assert process.join(timeout=10), "the child must end within a few seconds of cancel"
        assert time.monotonic() - cancelled_at < 5
        assert not process.is_alive() and process.exitcode == 0
        ending = wait_for(process, lambda m: m["type"] in ("finished", "cancelled", "error"), timeout=2)[-1]
        # cancelled after a finished epoch: that epoch's model is offered, scored against its parent
        assert ending["type"] == "finished" and ending["status"] == "cancelled", ending
        assert ending["epochs_done"] >= 1 and ending["steps"] == 4 * ending["epochs_done"]
        assert ending["scores"]["mean_iou"] is not None and ending["parent_scores"]["mean_iou"] is not None
        assert len(ending["version_meta"]["curves"]["loss"]) == ending["steps"]
        assert process.poll() == [], "an ended run reports nothing more"
    finally:
        process.stop()
        process.close()
    # the active version and every stored file are as they were
    assert store.active_id == "v0001"
    assert kept_files(store) == before
    # keeping the cancelled run is the caller's choice
    kept = store.add(ending["checkpoint"], ending["version_meta"])
    assert kept.status == "cancelled" and kept.parent == "v0001" and store.active_id == "v0001"


def test_errors_in_the_child_come_back_as_messages(store, sources):
    # both children at once: they spend most of their time importing torch
    # a CUDA device this machine does not have, with or without GPUs: a user error everywhere
    absent = f"cuda:{torch.cuda.device_count()}" if torch.cuda.is_available() else "cuda"
    unavailable = TrainingProcess()
    unavailable.start(job(store, sources, config={"device": absent}))
    broken = TrainingProcess()
    broken.start(job(store, sources, fail_after_steps=2))
    try:
        seen = wait_for(unavailable, lambda m: m["type"] == "error")
        error = seen[-1]
        expected = "does not exist" if torch.cuda.is_available() else "no CUDA GPU is available"
        assert error["kind"] == "user" and expected in error["message"]
        assert not [m for m in seen if m["type"] == "progress"]

        seen = wait_for(broken, lambda m: m["type"] == "error")
        error = seen[-1]
        assert error["kind"] == "bug" and "test hook after 2 step(s)" in error["message"]
        assert "RuntimeError" in error["traceback"] and "_run_job" in error["traceback"]
        assert len([m for m in seen if m["type"] == "progress"]) == 2
        for process in (unavailable, broken):
            assert process.join(timeout=10) and process.exitcode == 0
    finally:
        for process in (unavailable, broken):
            process.stop()
    assert store.active_id == "v0001" and [v.id for v in store.list()] == ["v0001"]


def test_a_killed_child_is_reported_once_as_crashed(store, sources):
    process = TrainingProcess()
    process.start(job(store, sources, config={"epochs": 500}))
    try:
        wait_for(process, lambda m: m["type"] == "progress")
        os.kill(process.pid, signal.SIGKILL)
        seen = wait_for(process, lambda m: m["type"] == "error", timeout=10)
        error = seen[-1]
        assert error["kind"] == "crashed" and "SIGKILL" in error["message"]
        assert process.exitcode == -signal.SIGKILL and not process.is_alive()
        assert process.poll() == []
    finally:
        process.stop()
    assert store.active_id == "v0001"


def test_a_run_makes_a_version_that_beats_its_untrained_parent(store, sources):
    process = TrainingProcess()
    parent_id = store.active_id
    process.start(job(store, sources, config={"epochs": 12}))
    try:
        seen = wait_for(process, lambda m: m["type"] in ("finished", "error", "cancelled"), timeout=60)
    finally:
        process.stop()
    finished = seen[-1]
    assert finished["type"] == "finished", finished.get("traceback") or finished
    assert finished["status"] == "finished" and finished["epochs_done"] == 12 and finished["steps"] == 24
    assert [m["epoch"] for m in seen if m["type"] == "epoch"] == list(range(1, 13))
    scores, parent_scores = finished["scores"], finished["parent_scores"]
    assert len(scores["iou"]) == len(parent_scores["iou"]) == 3 and len(scores["dice"]) == 3
    # figures seen on a 2-core CPU: parent mIoU 0.19, new 0.55
    assert scores["mean_iou"] > parent_scores["mean_iou"] + 0.1
    assert scores["mean_dice"] > parent_scores["mean_dice"]

    version = store.add(finished["checkpoint"], finished["version_meta"], activate=True)
    assert version.parent == parent_id and version.status == "finished"
    assert version.images == [f"img{i}" for i in range(8)] and version.val_images == ["img8", "img9"]
    assert version.mean_iou == scores["mean_iou"] and version.parent_mean_iou == parent_scores["mean_iou"]
    assert len(version.curves["loss"]) == 24 and len(version.curves["val_mean_iou"]) == 12
    assert version.settings["epochs"] == 12
    assert store.active_id == version.id != parent_id

    # the scores in the message are what the stored checkpoints give
    val = [(cv2.cvtColor(cv2.imread(str(s.image)), cv2.COLOR_BGR2RGB), None) for s in sources[8:]]
    from segstudio.io.masks import read_mask

    val = [(image, read_mask(s.labels)) for (image, _), s in zip(val, sources[8:], strict=True)]
    again_parent, again_new = score_versions(store.checkpoint_path(parent_id), version.checkpoint, val)
    assert again_new.mean_iou == pytest.approx(scores["mean_iou"])
    assert again_parent.mean_iou == pytest.approx(parent_scores["mean_iou"])
    model, meta = load_checkpoint(version.checkpoint)
    assert meta.class_names == list(CLASS_NAMES) and meta.provenance["parent_version"] == parent_id


def test_a_job_needs_training_images(store):
    with pytest.raises(DataError, match="no training images"):
        TrainJobSpec(base_checkpoint=store.checkpoint_path("v0001"), train=[], val=[], config={},
                     out_dir=store.folder / "x")
