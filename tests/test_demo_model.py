"""The shipped demo model reaches mean IoU >= 0.85 on the held-out sample images."""

import json

import numpy as np

from segstudio.inference import Predictor
from segstudio.io.images import read_image
from segstudio.io.masks import read_mask
from segstudio.metrics import Scores, confusion_matrix
from segstudio.resources import DEMO_MODEL, SAMPLE, resource_path


def test_demo_model_on_held_out_sample_images():
    sample = resource_path(*SAMPLE)
    split = json.loads((sample / "classes.json").read_text())["split"]
    assert split["val"] and not set(split["val"]) & set(split["train"])
    predictor, meta = Predictor.from_checkpoint(resource_path(*DEMO_MODEL), device="cpu", precision="fp32")
    assert meta.architecture == "unet" and meta.class_names == ["background", "cytoplasm", "nucleus"]
    cm = np.zeros((3, 3), np.int64)
    for stem in split["val"]:
        result = predictor.predict(read_image(sample / "images" / f"{stem}.png"))
        cm += confusion_matrix(result.labels, read_mask(sample / "masks" / f"{stem}.png"), 3)
    scores = Scores.from_confusion(cm)
    assert scores.mean_iou >= 0.85, scores
    assert min(scores.iou) >= 0.75, scores


def test_demo_model_is_small_enough_to_ship():
    assert resource_path(*DEMO_MODEL).stat().st_size < 20 * 2**20
