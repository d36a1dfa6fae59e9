"""A collapsed run (one class everywhere, or no better than the most common class) is flagged."""

import logging

import numpy as np
import pytest
import torch

from segstudio.models import get_model
from segstudio.models.checkpoint import make_meta, read_meta
from segstudio.synthetic import generate_sample
from segstudio.tasks import run_to_completion
from segstudio.training import TrainConfig, train_steps
from segstudio.training.collapse import CollapseReport, check_collapse, verdict


def test_one_class_everywhere_on_the_training_pixels_is_a_collapse():
    # rows: truth (700 background, 300 nucleus); the model answers background for everything
    cm = np.array([[700, 0], [300, 0]])
    report = verdict(cm, cm, ["background", "nucleus"])
    assert report.collapsed and "'background' on 100.0 %" in report.reason
    assert report.predicted_share == {0: 1.0} and report.majority_class == 0
    assert report.model_mean_iou == pytest.approx(0.35) and report.majority_mean_iou == pytest.approx(0.35)


def test_no_better_than_the_most_common_class_on_validation_is_a_collapse():
    train = np.array([[600, 100], [100, 200]])  # a model that learned something on its training pixels
    val = np.array([[500, 300], [180, 20]])  # but not beyond them
    report = verdict(train, val, ["bg", "fg"], scored_on="validation")
    assert report.collapsed and "no better than answering 'bg' everywhere" in report.reason
    assert "validation pixels" in report.reason


def test_a_model_that_learned_and_one_sided_labels_are_not_collapses():
    learned = np.array([[680, 20], [30, 270]])
    assert not verdict(learned, learned).collapsed
    # labels of a single class: predicting it everywhere is right
    assert not verdict(np.array([[1000, 0], [0, 0]]), np.array([[1000, 0], [0, 0]])).collapsed
    report = verdict(learned, learned)
    assert CollapseReport.from_dict(report.to_dict()) == report


def test_a_few_stray_pixels_of_an_unlabelled_class_do_not_make_a_collapse():
    # labels: 990 background, 10 foreground; the model gets half the foreground and gives 20 background
    # pixels to a third class the labels never hold. Counting that class's IoU of 0 in the mean (0.492)
    # would put the model below "background everywhere" (0.495); over the labels' classes it is 0.74
    cm = np.array([[970, 0, 20], [5, 5, 0], [0, 0, 0]])
    report = verdict(cm, cm, ["bg", "fg", "other"])
    assert not report.collapsed
    assert report.model_mean_iou == pytest.approx((970 / 995 + 5 / 10) / 2)
    assert report.majority_mean_iou == pytest.approx(0.99 / 2)


@pytest.fixture(scope="module")
def samples():
    return [generate_sample(seed, 64, 64) for seed in range(4)]


def _collapsed_unet():
    torch.manual_seed(0)
    model = get_model("unet", num_classes=3, in_channels=3, base_width=4, depth=2, batch_norm=True, padding="same")
    with torch.no_grad():
        model.classifier.bias.copy_(torch.tensor([50.0, 0.0, 0.0]))  # background, whatever the input
    return model


def test_check_collapse_on_a_model_that_answers_background(samples):
    model = _collapsed_unet()
    meta = make_meta(model, class_names=["background", "cytoplasm", "nucleus"])
    report = check_collapse(model, samples[:3], samples[3:], meta, torch.device("cpu"))
    assert report.collapsed and report.scored_on == "validation"
    assert report.predicted_share == {0: 1.0}


def test_a_run_that_learns_nothing_is_flagged_in_the_result_the_checkpoint_and_the_log(samples, tmp_path, caplog):
    model = _collapsed_unet()
    settings = TrainConfig(steps=2, batch_size=2, crop_size=32, lr=1e-9, device="cpu")
    with caplog.at_level(logging.WARNING, logger="segstudio.training.loop"):
        result = run_to_completion(train_steps(model, samples[:3], samples[3:], settings, tmp_path,
                                               meta={"class_names": ["background", "cytoplasm", "nucleus"]}))
    assert result.collapse.collapsed
    assert read_meta(result.last_path).provenance["collapse"]["collapsed"] is True
    assert any("collapsed" in r.getMessage() for r in caplog.records)


def test_resuming_a_finished_run_keeps_its_collapse_record(samples, tmp_path):
    settings = TrainConfig(steps=2, batch_size=2, crop_size=32, lr=1e-9, device="cpu")
    meta = {"class_names": ["background", "cytoplasm", "nucleus"]}
    run_to_completion(train_steps(_collapsed_unet(), samples[:3], samples[3:], settings, tmp_path, meta=meta))
    again = run_to_completion(train_steps(_collapsed_unet(), samples[:3], samples[3:], settings, tmp_path,
                                          meta=meta, resume=True))
    assert again.steps == 2 and again.collapse is not None and again.collapse.collapsed
