"""The Model panel's description of a checkpoint, from its metadata alone."""

import torch

from segstudio.models import get_model
from segstudio.models.checkpoint import Preprocessing, make_meta
from segstudio.models.checkpoint_info import describe_checkpoint


def _meta(**kwargs):
    torch.manual_seed(0)
    model = get_model("unet", num_classes=2, in_channels=1, base_width=4, depth=2, padding="same")
    return make_meta(model, class_names=["background", "membrane"], class_colors=[(0, 0, 0), (255, 200, 0)],
                     **kwargs)


def test_a_trained_checkpoint_says_its_epochs_last_score_and_when():
    history = [{"epoch": 1, "val_mean_iou": 0.61}, {"epoch": 2, "val_mean_iou": 0.7349},
               {"epoch": 3, "train_loss": 0.2, "partial": True}]
    rows = dict(describe_checkpoint(_meta(provenance={"history": history, "saved": "2026-12-03T10:11:12+00:00"})))
    assert rows["Network"] == "unet (base_width 4, batch_norm False, depth 2, padding same)"
    assert rows["Classes"] == "2: background, membrane"
    assert rows["Trained"] == "3 epoch(s), last validation mIoU 0.735, saved 2026-12-03 10:11 UTC"


def test_an_untrained_start_and_the_input_mapping_are_named():
    meta = _meta(provenance={"untrained_start": True},
                 preprocessing=Preprocessing(mean=(0.5,), std=(0.25,), normalization="window",
                                             input_window=(40.0, 400.0)))
    rows = dict(describe_checkpoint(meta))
    assert rows["Trained"].startswith("not yet")
    assert rows["Input"] == "1 channel(s), window L 40 / W 400"
