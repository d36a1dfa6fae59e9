"""Next image to annotate: the Images panel's uncertainty order and the key N,
driven as a user does (the sort box, View > Next image to annotate)."""

import json

import cv2
import numpy as np
import pytest
import torch
from PySide6.QtCore import Qt
from PySide6.QtWidgets import QComboBox

from segstudio.gui.panels.images import MOST_UNCERTAIN, ImagesPanel
from segstudio.inference.uncertainty import mean_entropy
from segstudio.io.project import PROJECT_FILE
from segstudio.models import get_model
from segstudio.models.checkpoint import make_meta, save_checkpoint
from segstudio.synthetic import generate_sample
from segstudio.tasks import run_to_completion
from segstudio.training import TrainConfig, train_steps

from .conftest import CLASS_COLORS, CLASS_NAMES, run_model


def _sort_by_uncertainty(panel):
    box = panel.findChild(QComboBox, "images_sort")
    box.setCurrentText(MOST_UNCERTAIN)  # what picking it in the list does
    assert panel.sort_choice() == MOST_UNCERTAIN


def _rows(panel):
    return [panel._list.item(row).text() for row in range(panel._list.count())]


def test_the_panel_sorts_by_uncertainty_and_still_speaks_in_image_indices(qtbot):
    panel = ImagesPanel()
    qtbot.addWidget(panel)
    panel.resize(320, 500)
    panel.show()
    qtbot.waitExposed(panel)
    panel.set_entries([("a.png", "predicted", 0.2), ("b.png", "new", None), ("c.png", "predicted", 0.9),
                       ("d.png", "reviewed", 0.95), ("e.png", "corrected", 0.5)])
    assert panel.order() == [0, 1, 2, 3, 4]
    assert "uncertainty 0.90" in panel._item(2).toolTip() and "not predicted" in panel._item(1).toolTip()

    _sort_by_uncertainty(panel)
    # never predicted first, then the most uncertain, reviewed last
    assert panel.order() == [1, 2, 4, 0, 3]
    assert _rows(panel) == ["b.png", "c.png", "e.png", "a.png", "d.png"]

    rect = panel._list.visualItemRect(panel._list.item(1))
    with qtbot.waitSignal(panel.currentChanged) as picked:
        qtbot.mouseClick(panel._list.viewport(), Qt.MouseButton.LeftButton, pos=rect.center())
    assert picked.args == [2] and panel.current_index() == 2  # the image, not the row

    panel.set_uncertainty(1, 0.1)  # its first prediction: down the list, the selection kept
    assert panel.order() == [2, 4, 0, 1, 3] and panel.current_index() == 2
    assert panel.uncertainty(1) == pytest.approx(0.1)
    panel.set_status(2, "reviewed")
    assert panel.order() == [4, 0, 1, 3, 2] and panel.current_index() == 2

    panel._filter.setCurrentText("predicted")  # the filter holds across a re-sort
    panel.set_uncertainty(4, 0.01)
    assert panel.order() == [0, 1, 4, 3, 2]
    assert [panel._item(i).isHidden() for i in range(5)] == [False, True, True, True, True]

    panel.findChild(QComboBox, "images_sort").setCurrentText("File order")
    assert panel.order() == [0, 1, 2, 3, 4] and panel.current_index() == 2


def test_a_run_scores_every_image_and_n_opens_the_most_uncertain_unreviewed(qtbot, window, image_folder,
                                                                              checkpoint):
    assert window.open_path(image_folder)
    project, panel = window.session.project, window.images_panel
    assert [e.uncertainty for e in project.entries] == [None, None, None]
    assert run_model(qtbot, window, checkpoint, all_images=True) == "done"

    predictions = {**window.session.predictions, 0: window.session.document.prediction}
    scores = [e.uncertainty for e in project.entries]
    for index, score in enumerate(scores):  # each: the mean entropy of its own prediction
        assert score == pytest.approx(mean_entropy(predictions[index].probabilities), abs=1e-9)
        assert 0.0 < score < 1.0
        assert panel.uncertainty(index) == pytest.approx(score)
    assert len({round(s, 6) for s in scores}) == 3
    by_score = sorted(range(3), key=lambda i: -scores[i])
    _sort_by_uncertainty(panel)
    assert panel.order() == by_score

    # N: the most uncertain image other than the one shown
    expected = [i for i in by_score if i != 0][0]
    window.actions_by_name["next_uncertain"].trigger()
    assert window.session.index == expected and panel.current_index() == expected
    name = project.entries[expected].display_name
    assert name in window.statusBar().currentMessage()
    assert f"{scores[expected]:.2f}" in window.statusBar().currentMessage()

    window.actions_by_name["mark_reviewed"].trigger()  # reviewed: to the bottom, skipped by N
    assert panel.order()[-1] == expected
    window.actions_by_name["next_uncertain"].trigger()
    following = [i for i in by_score if i != expected][0]
    assert window.session.index == following
    window.actions_by_name["mark_reviewed"].trigger()
    window.actions_by_name["next_uncertain"].trigger()
    last = ({0, 1, 2} - {expected, following}).pop()
    assert window.session.index == last
    window.actions_by_name["mark_reviewed"].trigger()
    window.actions_by_name["next_uncertain"].trigger()
    assert window.session.index == last
    assert "Every image is reviewed" in window.statusBar().currentMessage()

    # kept with the project: the next session has them without running the model
    assert window.session.save(wait=True)
    saved = json.loads((project.folder / PROJECT_FILE).read_text())["images"]
    assert [item["uncertainty"] for item in saved] == pytest.approx(scores, abs=1e-6)


def _train_on(image, labels, path):
    """A tiny U-Net trained for 100 steps on one image (about 2 s on a CPU)."""
    torch.manual_seed(0)
    model = get_model("unet", num_classes=3, in_channels=3, base_width=4, depth=2, padding="same")
    meta = make_meta(model, class_names=CLASS_NAMES, class_colors=CLASS_COLORS)
    config = TrainConfig(epochs=None, steps=100, batch_size=2, crop_size=64, lr=0.01, augment=False,
                         device="cpu", seed=0)
    run_to_completion(train_steps(model, [(image, labels)], [], config, path.parent / f"{path.stem}_run",
                                  meta=meta))
    return save_checkpoint(path, model.cpu(), meta)


def test_an_image_the_model_never_saw_comes_before_the_one_it_was_trained_on(qtbot, window, tmp_path):
    """Each of two images of the same kind ranks first under the model that was
    not trained on it: the order follows what the model has seen, not which
    image is harder (measured: 0.41 vs 0.23, and 0.81 vs 0.72 the other way)."""
    folder = tmp_path / "cells"
    folder.mkdir()
    samples = {"0_shown": generate_sample(1, 80, 80), "1_first": generate_sample(0, 80, 80),
               "2_second": generate_sample(5, 80, 80)}
    for name, (image, _) in samples.items():
        cv2.imwrite(str(folder / f"{name}.png"), cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
    assert window.open_path(folder)
    _sort_by_uncertainty(window.images_panel)
    for trained, unseen in ((1, 2), (2, 1)):
        name = list(samples)[trained]
        checkpoint = _train_on(*samples[name], tmp_path / f"trained_on_{name}.safetensors")
        window.pick_image(0)
        assert run_model(qtbot, window, checkpoint, all_images=True) == "done"
        entries = window.session.project.entries
        assert entries[unseen].uncertainty > entries[trained].uncertainty
        order = window.images_panel.order()
        assert order.index(unseen) < order.index(trained)
        window.actions_by_name["next_uncertain"].trigger()
        assert window.session.index == unseen
        assert np.isfinite(entries[trained].uncertainty)


def test_rescoring_runs_the_model_on_the_unreviewed_images_only(qtbot, window, image_folder, checkpoint,
                                                                  tmp_path):
    assert window.open_path(image_folder)
    assert run_model(qtbot, window, checkpoint, all_images=True) == "done"
    project, panel = window.session.project, window.images_panel
    before = [e.uncertainty for e in project.entries]
    window.actions_by_name["mark_reviewed"].trigger()  # image 0
    _sort_by_uncertainty(panel)

    torch.manual_seed(7)  # another version: other weights, other scores
    model = get_model("unet", num_classes=3, in_channels=3, base_width=4, depth=2, padding="same")
    other = save_checkpoint(tmp_path / "other.safetensors", model,
                            make_meta(model, class_names=CLASS_NAMES, class_colors=CLASS_COLORS))
    settings = window.model_panel.settings()
    settings.update(checkpoint=str(other))
    window.model_panel.set_settings(settings)
    with qtbot.waitSignal(window.runs.runFinished, timeout=60000):
        window.actions_by_name["rescore"].trigger()
    after = [e.uncertainty for e in project.entries]
    assert after[0] == before[0]  # reviewed: not run again
    for index in (1, 2):
        assert after[index] != pytest.approx(before[index], abs=1e-3)
        prediction = window.session.predictions[index]
        assert after[index] == pytest.approx(mean_entropy(prediction.probabilities), abs=1e-9)
        assert panel.uncertainty(index) == pytest.approx(after[index])
    assert panel.order() == [*sorted((1, 2), key=lambda i: -after[i]), 0]


def test_a_version_made_active_by_hand_offers_rescoring_without_running(qtbot, window, image_folder, monkeypatch):
    from types import SimpleNamespace

    from segstudio.gui import next_image

    assert window.open_path(image_folder)
    window.actions_by_name["mark_reviewed"].trigger()
    monkeypatch.setattr(window.training, "store", SimpleNamespace(active_id="v002"))
    next_image.offer_rescoring(window, "v002")
    message = window.statusBar().currentMessage()
    assert "v002 is active" in message and "Re-score unreviewed images" in message and "2 images" in message
    assert not window.runs.busy  # offered, not started
    window.statusBar().clearMessage()
    next_image.offer_rescoring(window, "v003")  # activating v003 failed: its error is on show, no offer
    assert window.statusBar().currentMessage() == ""


def test_d_and_a_follow_the_lists_order_and_the_sort_choice_is_kept(qtbot, window, image_folder):
    from segstudio.gui.panels.images import ImagesPanel

    assert window.open_path(image_folder)
    panel = window.images_panel
    for index, score in enumerate((0.2, 0.1, 0.9)):  # as predictions leave them
        panel.set_uncertainty(index, score)
    _sort_by_uncertainty(panel)
    order = panel.order()
    assert order == [2, 0, 1]
    window.pick_image(order[0])
    visited = [window.session.index]
    for _ in range(3):
        window.actions_by_name["next"].trigger()  # D
        visited.append(window.session.index)
    assert visited == [*order, order[-1]]  # the last one stays
    window.actions_by_name["previous"].trigger()  # A
    assert window.session.index == order[-2]
    again = ImagesPanel()  # the next start
    qtbot.addWidget(again)
    assert again.sort_choice() == "Most uncertain first"
