"""Live update: a copy of the model fine-tuned a few steps at a time, between strokes."""

import numpy as np
import pytest
import torch

from segstudio.errors import DataError
from segstudio.models import get_model
from segstudio.models.checkpoint import load_checkpoint, make_meta, read_meta
from segstudio.tasks import CancelToken, TaskCancelled, run_to_completion
from segstudio.training.live import LiveTrainer


def _model_and_sample(seed=0):
    torch.manual_seed(seed)
    model = get_model("unet", num_classes=2, in_channels=1, base_width=4, depth=2, padding="same")
    with torch.no_grad():  # a model that answers "background" everywhere to begin with
        model.classifier.bias.copy_(torch.tensor([3.0, -3.0]))
    meta = make_meta(model, class_names=["background", "cell"], class_colors=[(0, 0, 0), (0, 200, 0)])
    rng = np.random.default_rng(seed)
    image = rng.integers(0, 60, (96, 96), dtype=np.uint8)
    image[30:70, 30:70] += 150  # a bright square: the cell
    labels = np.full((96, 96), 255, np.uint8)
    labels[35:65, 35:65] = 1  # strokes inside it
    labels[:12, :] = 0  # and some background
    return model, meta, image, labels


def _cell_probability(trainer, image):
    return float(trainer.predictor(tile_size=96).predict(image).probability(1)[40:60, 40:60].mean())


def test_updates_raise_the_painted_class_where_it_was_painted_and_leave_the_callers_model_alone():
    model, meta, image, labels = _model_and_sample()
    before_weights = [p.detach().clone() for p in model.parameters()]
    trainer = LiveTrainer(model, meta, device="cpu", steps=8, time_budget_s=None, lr=1e-2, crop_size=64)
    assert trainer.frozen is None  # a small network learns whole
    before = _cell_probability(trainer, image)
    for _ in range(4):
        update = run_to_completion(trainer.update_steps([(image, labels)]))
    after = _cell_probability(trainer, image)
    assert update.updates == 4 and update.steps == 8 and trainer.total_steps == 32
    assert before < 0.2 and after > 0.8, (before, after)
    assert all(torch.equal(a, b) for a, b in zip(before_weights, model.parameters(), strict=True))


def test_a_large_network_or_head_only_keeps_its_backbone():
    model, meta, image, labels = _model_and_sample()
    trainer = LiveTrainer(model, meta, device="cpu", head_only=True, steps=3, time_budget_s=None, crop_size=64)
    backbone = [p.detach().clone() for p in trainer.model.down.parameters()]
    head = [p.detach().clone() for p in trainer.model.classifier.parameters()]
    run_to_completion(trainer.update_steps([(image, labels)]))
    assert all(torch.equal(a, b) for a, b in zip(backbone, trainer.model.down.parameters(), strict=True))
    assert not all(torch.equal(a, b) for a, b in zip(head, trainer.model.classifier.parameters(), strict=True))


def test_a_time_budget_stops_the_update_after_at_least_one_step():
    model, meta, image, labels = _model_and_sample()
    trainer = LiveTrainer(model, meta, device="cpu", steps=50, time_budget_s=1e-9, crop_size=64)
    assert run_to_completion(trainer.update_steps([(image, labels)])).steps == 1


def test_cancelling_stops_between_steps_and_no_labels_is_an_error():
    model, meta, image, labels = _model_and_sample()
    trainer = LiveTrainer(model, meta, device="cpu", steps=5, time_budget_s=None, crop_size=64)
    token = CancelToken()
    steps = trainer.update_steps([(image, labels)], cancel=token)
    next(steps)
    token.cancel()
    with pytest.raises(TaskCancelled):
        next(steps)
    assert trainer.total_steps == 1
    with pytest.raises(DataError):
        run_to_completion(trainer.update_steps([]))
    with pytest.raises(DataError, match="class"):
        bad = labels.copy()
        bad[0, 0] = 7
        run_to_completion(trainer.update_steps([(image, bad)]))


def test_the_live_model_is_saved_as_a_checkpoint_that_loads_with_its_weights(tmp_path):
    model, meta, image, labels = _model_and_sample()
    trainer = LiveTrainer(model, meta, device="cpu", steps=2, time_budget_s=None, lr=1e-2, crop_size=64)
    run_to_completion(trainer.update_steps([(image, labels)]))
    trainer.save(tmp_path / "live.safetensors", parent="v0001")
    assert read_meta(tmp_path / "live.safetensors").provenance["live_update"] == {
        "updates": 1, "steps": 2, "parent": "v0001", "head_only": False}
    loaded, _ = load_checkpoint(tmp_path / "live.safetensors")
    for a, b in zip(loaded.state_dict().values(), trainer.model.state_dict().values(), strict=True):
        assert torch.equal(a, b.cpu())
