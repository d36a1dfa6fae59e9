"""The training loop: it learns, saves, cancels, resumes and freezes."""

import math

import numpy as np
import pytest
import torch

from segstudio.errors import CheckpointError, DataError, InvalidArgumentError
from segstudio.models import get_model
from segstudio.models.checkpoint import load_checkpoint, read_meta
from segstudio.synthetic import generate_sample
from segstudio.tasks import CancelToken, TaskCancelled, run_to_completion
from segstudio.training import TrainConfig, train_steps
from segstudio.training.config import resolve_amp, resolve_device
from segstudio.training.freeze import backbone_modules

CLASSES = {"class_names": ["background", "cytoplasm", "nucleus"]}


@pytest.fixture(scope="module")
def samples():
    return [generate_sample(seed, 80, 80) for seed in range(10)]


def small_unet(seed=0):
    torch.manual_seed(seed)
    return get_model("unet", num_classes=3, in_channels=3, base_width=8, depth=3, batch_norm=True, padding="same")


def config(**changes):
    settings = {"epochs": 3, "batch_size": 4, "crop_size": 64, "device": "cpu", "seed": 0}
    settings.update(changes)
    return TrainConfig(**settings)


def collect(task, on_progress=None):
    seen = []

    def record(progress):
        seen.append(progress)
        if on_progress is not None:
            on_progress(progress)

    return run_to_completion(task, record), seen


def test_training_lowers_the_loss_and_reaches_a_good_miou(samples, tmp_path):
    model = small_unet()
    result, seen = collect(train_steps(model, samples[:8], samples[8:], config(epochs=None, steps=60), tmp_path,
                                       meta=CLASSES))
    history = result.history
    # 8 images of 80 x 80, all labelled: 51,200 pixels = 13 crops of 64 x 64 = 4 steps of 4 crops an epoch
    assert result.steps == 60 and result.epochs_done == 15 and not result.stopped_early
    assert [h["step"] for h in history] == list(range(4, 61, 4))
    # figures seen on a 2-core CPU: loss 1.25 -> 0.15, val mIoU 0.16 -> 0.93 in 60 steps (~4 s)
    assert history[0]["train_loss"] > 0.8
    assert np.mean([h["train_loss"] for h in history[-3:]]) < 0.5 * history[0]["train_loss"]
    assert history[0]["val_mean_iou"] < 0.5
    assert result.final_scores.mean_iou > 0.8
    assert result.final_scores.mean_iou == pytest.approx(history[-1]["val_mean_iou"])

    train = [p for p in seen if p.stage == "train"]
    assert [p.done for p in train] == list(range(1, 61)) and {p.total for p in train} == {60}
    assert set(train[0].metrics) >= {"loss", "lr", "images_per_s"}
    assert train[0].metrics["images_per_s"] > 0
    # AdamW at 1e-3: a linear warm-up over the first 5 % (3 steps), then a cosine decay towards zero
    assert train[0].metrics["lr"] == pytest.approx(1e-3 * (1 / 60) / 0.05)
    assert train[3].metrics["lr"] == pytest.approx(1e-3 * 0.5 * (1 + math.cos(math.pi * 3 / 60)))
    assert train[-1].metrics["lr"] == pytest.approx(1e-3 * 0.5 * (1 + math.cos(math.pi * 59 / 60)))
    val = [p for p in seen if p.stage == "val"]
    assert len(val) == 15 and set(val[0].metrics) >= {"mean_iou", "mean_dice", "pixel_accuracy", "epoch"}

    best_epoch = max(history, key=lambda h: h["val_mean_iou"])
    best_meta = read_meta(result.best_path)
    assert best_meta.provenance["epoch"] == best_epoch["epoch"]
    assert best_meta.provenance["metrics"]["val_mean_iou"] == pytest.approx(best_epoch["val_mean_iou"])
    assert best_meta.class_names == CLASSES["class_names"]
    last_meta = read_meta(result.last_path)
    assert last_meta.provenance["step"] == 60 and len(last_meta.provenance["history"]) == 15
    assert last_meta.provenance["train_config"]["optimizer"] == "adamw"
    # a model that learned is not flagged, and the check is kept with the checkpoint
    assert result.collapse is not None and not result.collapse.collapsed
    assert last_meta.provenance["collapse"]["collapsed"] is False
    # the saved weights are the trained model's
    reloaded, _ = load_checkpoint(result.last_path)
    for name, tensor in model.state_dict().items():
        assert torch.equal(reloaded.state_dict()[name], tensor.cpu())
    state = torch.load(tmp_path / "train_state.pt", weights_only=True)
    assert state["step"] == 60 and state["epoch"] == 15 and state["finished"]


def test_resume_continues_the_step_count_and_matches_an_uninterrupted_run(samples, tmp_path):
    train, val = samples[:8], samples[8:]
    settings = config(epochs=3, batch_size=2, optimizer="adamw", lr=2e-3)
    straight = small_unet()
    full, _ = collect(train_steps(straight, train, val, settings, tmp_path / "straight", meta=CLASSES))
    per_epoch = 7  # 13 crops of 64 x 64 cover the labelled pixels: 7 steps of 2
    assert full.steps == 3 * per_epoch

    interrupted_dir = tmp_path / "interrupted"
    token = CancelToken()

    def stop_after_epoch_two(progress):
        if progress.stage == "epoch" and progress.metrics["epoch"] == 2:
            token.cancel()

    with pytest.raises(TaskCancelled):
        collect(train_steps(small_unet(), train, val, settings, interrupted_dir, meta=CLASSES, cancel=token),
                stop_after_epoch_two)
    state = torch.load(interrupted_dir / "train_state.pt", weights_only=True)
    assert (state["epoch"], state["step"]) == (2, 2 * per_epoch)

    # a model with other initial weights: everything must come from the saved files
    resumed_model = small_unet(seed=99)
    resumed, seen = collect(train_steps(resumed_model, train, val, settings, interrupted_dir, meta=CLASSES,
                                        resume=True))
    train_progress = [p for p in seen if p.stage == "train"]
    assert [p.done for p in train_progress] == list(range(2 * per_epoch + 1, 3 * per_epoch + 1))
    assert resumed.steps == 3 * per_epoch and resumed.epochs_done == 3 and len(resumed.history) == 3
    for a, b in zip(resumed.history, full.history, strict=True):
        assert a["step"] == b["step"]
        assert a["lr"] == pytest.approx(b["lr"])
        assert a["train_loss"] == pytest.approx(b["train_loss"], rel=1e-4)
        assert a["val_mean_iou"] == pytest.approx(b["val_mean_iou"], rel=1e-4)
    straight_state, resumed_state = straight.state_dict(), resumed_model.state_dict()
    for name in straight_state:
        torch.testing.assert_close(resumed_state[name], straight_state[name], rtol=1e-4, atol=1e-5)

    # resuming a finished run does nothing
    again, seen_again = collect(train_steps(small_unet(seed=5), train, val, settings, interrupted_dir,
                                            meta=CLASSES, resume=True))
    assert seen_again == [] and again.steps == 3 * per_epoch and again.epochs_done == 3


def test_resume_with_more_epochs_extends_the_run(samples, tmp_path):
    train, val = samples[:4], samples[8:]
    collect(train_steps(small_unet(), train, val, config(epochs=2), tmp_path, meta=CLASSES))
    result, seen = collect(train_steps(small_unet(), train, val, config(epochs=3), tmp_path, meta=CLASSES,
                                       resume=True))
    # 4 labelled images of 80 x 80: 7 crops of 64 x 64, 2 steps of 4 an epoch
    assert [p.done for p in seen if p.stage == "train"] == [5, 6]
    assert result.steps == 6 and [h["epoch"] for h in result.history] == [1, 2, 3]


def test_resume_without_saved_state_is_an_error(samples, tmp_path):
    with pytest.raises(CheckpointError, match="nothing to resume"):
        collect(train_steps(small_unet(), samples[:2], [], config(), tmp_path, resume=True))


def test_a_run_stopped_inside_an_epoch_resumes_at_its_crop_and_matches_an_uninterrupted_run(samples, tmp_path):
    # a constant rate, so that the run's length does not change the schedule
    def settings(steps):
        return config(epochs=None, steps=steps, schedule="constant", warmup=0.0)

    train = samples[:4]  # 2 steps an epoch
    straight = small_unet()
    full, _ = collect(train_steps(straight, train, [], settings(7), tmp_path / "straight"))
    first, _ = collect(train_steps(small_unet(), train, [], settings(5), tmp_path / "cut"))
    assert first.steps == 5 and first.history[-1]["partial"] is True  # stopped after 1 of epoch 3's 2 steps
    resumed_model = small_unet(seed=99)
    resumed, seen = collect(train_steps(resumed_model, train, [], settings(7), tmp_path / "cut", resume=True))
    assert [p.done for p in seen if p.stage == "train"] == [6, 7]
    assert [h["epoch"] for h in resumed.history] == [1, 2, 3, 4]
    assert resumed.history[-1]["partial"] is True and not resumed.history[2].get("partial")
    straight_state, resumed_state = straight.state_dict(), resumed_model.state_dict()
    for name in straight_state:
        torch.testing.assert_close(resumed_state[name], straight_state[name], rtol=1e-4, atol=1e-5)


def test_a_run_started_by_an_older_segstudio_is_not_resumed(samples, tmp_path):
    collect(train_steps(small_unet(), samples[:4], [], config(epochs=1), tmp_path))
    state = torch.load(tmp_path / "train_state.pt", weights_only=True)
    state["format"] = 1  # its steps counted one crop per image as an epoch
    torch.save(state, tmp_path / "train_state.pt")
    with pytest.raises(CheckpointError, match=r"older segstudio.*--checkpoint last\.safetensors"):
        collect(train_steps(small_unet(), samples[:4], [], config(epochs=2), tmp_path, resume=True))


def test_costly_saves_are_spread_out_and_the_last_epoch_always_saves(samples, tmp_path, monkeypatch):
    from segstudio.training import loop

    # a step takes 1 s and writing the files 2 s (a VGG net's weights and optimizer state)
    now = [0.0]
    real_step, real_save = loop._step, loop._save_epoch
    saved_at_step = []

    def timed_step(*args, **kwargs):
        now[0] += 1.0
        return real_step(*args, **kwargs)

    def slow_save(out, model, meta, as_best, state):
        now[0] += 2.0
        saved_at_step.append(state["step"])
        return real_save(out, model, meta, as_best, state)

    monkeypatch.setattr(loop, "_clock", lambda: now[0])
    monkeypatch.setattr(loop, "_step", timed_step)
    monkeypatch.setattr(loop, "_save_epoch", slow_save)
    # 4 images: 2 steps an epoch, 10 epochs
    result, _ = collect(train_steps(small_unet(), samples[:4], [], config(epochs=10), tmp_path))
    # the first epoch saves (at t = 2 s, done at 4 s); the next save waits until 10 x 2 s have passed
    # (t = 24 s, step 22), so the run's end at step 20 is the next one
    assert result.steps == 20 and saved_at_step == [2, 20]
    assert read_meta(result.last_path).provenance["step"] == 20
    assert torch.load(tmp_path / "train_state.pt", weights_only=True)["step"] == 20


def test_cancel_mid_epoch_keeps_the_previous_checkpoint(samples, tmp_path):
    model = small_unet()
    token = CancelToken()
    snapshot = {}

    def watch(progress):
        if progress.stage == "epoch" and progress.metrics["epoch"] == 1:
            snapshot.update({k: v.clone() for k, v in model.state_dict().items()})
        if progress.stage == "train" and progress.done == 10:  # the middle of epoch 2 (7 steps an epoch)
            token.cancel()

    with pytest.raises(TaskCancelled):
        collect(train_steps(model, samples[:8], samples[8:], config(batch_size=2), tmp_path, meta=CLASSES,
                            cancel=token), watch)
    reloaded, meta = load_checkpoint(tmp_path / "last.safetensors")
    assert meta.provenance["epoch"] == 1 and meta.provenance["step"] == 7
    for name, tensor in reloaded.state_dict().items():
        assert torch.equal(tensor, snapshot[name])
    assert torch.load(tmp_path / "train_state.pt", weights_only=True)["step"] == 7
    assert sorted(p.name for p in tmp_path.iterdir()) == ["best.safetensors", "last.safetensors", "train_state.pt"]


def test_cancel_before_the_first_step_writes_nothing(samples, tmp_path):
    token = CancelToken()
    token.cancel()
    with pytest.raises(TaskCancelled):
        collect(train_steps(small_unet(), samples[:4], [], config(), tmp_path, cancel=token))
    assert list(tmp_path.iterdir()) == []


def test_freeze_backbone_trains_only_the_decoder(samples, tmp_path):
    model = small_unet()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    collect(train_steps(model, samples[:4], samples[8:], config(epochs=2, freeze_backbone=True), tmp_path))
    after = model.state_dict()
    encoder = [k for k in before if k.startswith("down.")]
    assert any("running_mean" in k for k in encoder)
    for key in encoder:  # weights and BatchNorm statistics alike
        assert torch.equal(before[key], after[key]), key
    assert not torch.equal(before["classifier.weight"], after["classifier.weight"])
    assert not torch.equal(before["up.0.weight"], after["up.0.weight"])
    assert all(p.requires_grad for p in model.parameters())  # given back after training


def test_backbones_of_every_family():
    with torch.device("meta"):
        fcn = get_model("fcn32s", num_classes=3)
        ensemble = get_model("ensemble", num_classes=3, members=["deeplab_largefov", "unet"])
    assert backbone_modules(fcn) == [fcn.blocks]
    members = ensemble.members
    assert backbone_modules(ensemble) == [members[0].blocks, members[1].down]
    with pytest.raises(InvalidArgumentError, match="no backbone"):
        backbone_modules(torch.nn.Conv2d(3, 3, 1))


def test_border_weight_dice_ce_batch_of_one_and_tiny_data(samples, tmp_path):
    settings = config(epochs=1, batch_size=1, loss="dice_ce", border_weight=True, schedule="cosine",
                      optimizer="adamw", augment=False)
    result, _ = collect(train_steps(small_unet(), samples[:3], samples[8:9], settings, tmp_path))
    # 3 images of 80 x 80: 5 crops of 64 x 64 an epoch
    assert result.steps == 5 and math.isfinite(result.history[0]["train_loss"])
    # a batch larger than the data set: one (smaller) batch per epoch instead of none
    result, _ = collect(train_steps(small_unet(), samples[:3], [], config(epochs=2, batch_size=8),
                                    tmp_path / "big_batch"))
    assert result.steps == 2
    # no validation images: best follows last
    assert result.best_path is not None and result.final_scores is None


def test_time_budget_stops_at_the_step_that_passes_it_and_resume_finishes_the_epoch(samples, tmp_path):
    result, _ = collect(train_steps(small_unet(), samples[:4], [], config(time_budget_s=1e-6), tmp_path))
    # at least one step, whatever the budget; the epoch it stopped in is recorded as partial
    assert result.stopped_early and result.steps == 1 and result.epochs_done == 1
    assert result.history[-1]["partial"] is True
    assert read_meta(result.last_path).provenance["step"] == 1
    resumed, seen = collect(train_steps(small_unet(), samples[:4], [], config(), tmp_path, resume=True))
    assert [p.done for p in seen if p.stage == "train"] == [2, 3, 4, 5, 6]
    assert resumed.epochs_done == 3 and resumed.steps == 6 and not resumed.stopped_early
    assert [h["epoch"] for h in resumed.history] == [1, 2, 3]
    assert not any(h.get("partial") for h in resumed.history)


def test_a_run_of_seconds_alone_follows_the_clock(samples, tmp_path, monkeypatch):
    from segstudio.training import loop

    # a clock that moves 0.1 s a step, whatever this machine's speed
    now = [0.0]
    real_step = loop._step

    def timed_step(*args, **kwargs):
        now[0] += 0.1
        return real_step(*args, **kwargs)

    monkeypatch.setattr(loop, "_clock", lambda: now[0])
    monkeypatch.setattr(loop, "_step", timed_step)
    settings = config(epochs=None, time_budget_s=1.5)
    result, seen = collect(train_steps(small_unet(), samples[:4], samples[8:], settings, tmp_path))
    train = [p for p in seen if p.stage == "train"]
    assert result.steps == len(train) == 15 and not result.stopped_early
    assert result.history[-1]["elapsed_s"] == pytest.approx(1.5)
    # the schedule follows the clock: a warm-up over 5 % of the time (the first step, at a tenth of
    # the rate: its end is unknown), then a cosine decay to zero
    assert [p.metrics["lr"] for p in train] == pytest.approx(
        [1e-4] + [1e-3 * 0.5 * (1 + math.cos(math.pi * k / 15)) for k in range(1, 15)])
    # the progress total is the run's length as the pace says
    assert {p.total for p in train[1:]} == {15}


def test_labels_outside_the_model_are_refused(samples, tmp_path):
    image, labels = samples[0]
    bad = labels.copy()
    bad[0, 0] = 7
    with pytest.raises(DataError, match=r"\[7\]"):
        collect(train_steps(small_unet(), [(image, bad)], [], config(), tmp_path))
    with pytest.raises(DataError, match="no training samples"):
        collect(train_steps(small_unet(), [], [], config(), tmp_path))
    with pytest.raises(InvalidArgumentError, match="class weights"):
        collect(train_steps(small_unet(), samples[:2], [], config(class_weights=[1.0, 2.0]), tmp_path))


@pytest.mark.parametrize(
    "changes",
    [{"epochs": 0}, {"batch_size": 1.5}, {"optimizer": "adam"}, {"schedule": "step"}, {"loss": "focal"},
     {"amp": "fp8"}, {"device": "tpu"}, {"lr": -1.0}, {"lr": float("nan")}, {"seed": -1},
     {"class_weights": [1, -2]}, {"time_budget_s": 0}, {"val_every": 0}, {"device": "cpu:1"}, {"steps": 0},
     {"warmup": 1.0}, {"class_share": 1.5}, {"epochs": None}],
)
def test_config_validation(changes):
    with pytest.raises(InvalidArgumentError):
        TrainConfig(**changes)


def test_config_round_trip_and_defaults():
    settings = TrainConfig(optimizer="sgd", class_weights=[1, 2, 3])
    assert settings.effective_lr == 0.01 and settings.effective_weight_decay == 5e-4
    assert TrainConfig.from_dict(settings.to_dict()) == settings
    defaults = TrainConfig()
    assert (defaults.optimizer, defaults.schedule, defaults.loss) == ("adamw", "cosine", "auto")
    assert defaults.effective_lr == 1e-3 and defaults.effective_weight_decay == 1e-4 and defaults.num_workers == 0
    # settings written before runs had a warm-up keep none
    old = {k: v for k, v in settings.to_dict().items() if k not in ("steps", "warmup", "class_share")}
    assert TrainConfig.from_dict(old).warmup == 0.0
    # "auto" takes Dice + cross-entropy when a class is rare
    assert defaults.resolved_loss({0: 950, 1: 50}) == "dice_ce" and defaults.resolved_loss({0: 60, 1: 40}) == "ce"
    with pytest.raises(InvalidArgumentError, match="unknown"):
        TrainConfig.from_dict({"epochz": 3})


def test_device_and_precision_choice():
    assert resolve_device("cpu").type == "cpu"
    assert resolve_amp("auto", torch.device("cpu")) is None
    assert resolve_amp("bf16", torch.device("cpu")) == torch.bfloat16
    assert resolve_amp("off", torch.device("cpu")) is None
    with pytest.raises(InvalidArgumentError):
        resolve_amp("fp16", torch.device("cpu"))
    if not torch.cuda.is_available():
        assert resolve_device("auto").type in ("cpu", "mps")
        with pytest.raises(InvalidArgumentError, match="no CUDA"):
            resolve_device("cuda")
