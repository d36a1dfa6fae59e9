"""Training for a project whose classes are not the model's: added, deleted, or no model at all."""

import sys
import time

import numpy as np
import pytest
import torch

from segstudio.demo import prepare_demo
from segstudio.errors import InvalidArgumentError
from segstudio.models import get_model
from segstudio.models.checkpoint import load_checkpoint, read_meta
from segstudio.training import TrainConfig
from segstudio.training.process import (
    TrainingProcess,
    TrainJobSpec,
    import_untrained_start,
)
from segstudio.training.versions import VersionStore

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="spawns training processes the POSIX way")

DEMO_CLASSES = ["background", "cytoplasm", "nucleus"]
DEBRIS = (40, 220, 90)
VAL_STEMS = ["cells_02", "cells_03"]  # corrected images (the demo's own val split is not)


def _run(spec, timeout=90.0):
    process = TrainingProcess()
    process.start(spec)
    seen = []
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            seen.extend(process.poll())
            if seen and seen[-1]["type"] in ("finished", "cancelled", "error"):
                return seen
            time.sleep(0.05)
        raise AssertionError(f"the run did not end within {timeout} s; saw {[m['type'] for m in seen][-10:]}")
    finally:
        process.stop()
        process.close()


def _config(**changes):
    settings = {"epochs": 1, "batch_size": 4, "crop_size": 128, "device": "cpu", "optimizer": "adamw",
                "lr": 1e-3, "freeze_backbone": True, "seed": 3}
    settings.update(changes)
    return TrainConfig(**settings)


@pytest.fixture
def demo_with_debris(tmp_path):
    """The demo project with a fourth class, painted on a corrected image, and the demo model as v0001."""
    project = prepare_demo(tmp_path / "demo")
    store = VersionStore(project.folder)
    store.import_checkpoint(project.model_settings["checkpoint"], activate=True)
    assert project.classes.add("debris", DEBRIS) == 3
    index = next(i for i, e in enumerate(project.entries) if e.id == "cells_01")
    document = project.load_document(index)
    document.labels[10:60, 20:90] = 3
    project.save_document(index, document)
    return project, store


def test_an_added_class_trains_a_four_class_version_from_the_three_class_parent(demo_with_debris):
    project, store = demo_with_debris
    parent, parent_meta = load_checkpoint(store.checkpoint_path("v0001"))
    assert parent_meta.class_names == DEMO_CLASSES
    spec = TrainJobSpec.for_project(project, store, _config(), val_stems=VAL_STEMS)
    assert spec.class_names == [*DEMO_CLASSES, "debris"] and spec.class_colors[3] == DEBRIS

    seen = _run(spec)
    finished = seen[-1]
    assert finished["type"] == "finished", finished.get("traceback") or finished
    started = next(m for m in seen if m["type"] == "started")
    assert "cells_01" in started["train_images"] and started["val_images"] == VAL_STEMS
    assert started["classes"] == {"kept": DEMO_CLASSES, "new": ["debris"], "dropped": [],
                                  "reinitialised": []}
    assert finished["classes_changed"] is True and finished["classes"] == started["classes"]
    # the parent knows three classes: it is not scored against the project's four
    assert finished["parent_scores"] is None and finished["version_meta"]["parent_scores"] is None
    assert len(finished["scores"]["iou"]) == 4
    assert not any(m["type"] == "log" and "labels hold class" in m["message"] for m in seen)

    version = store.add(finished["checkpoint"], finished["version_meta"])
    assert version.parent == "v0001" and version.class_names == [*DEMO_CLASSES, "debris"]
    assert version.name == "trained from v0001 for the project's classes (new debris)"
    model, meta = load_checkpoint(version.checkpoint)
    assert meta.num_classes == 4 and meta.class_colors == [tuple(c) for c in project.classes.colors]
    assert meta.preprocessing == parent_meta.preprocessing
    assert meta.provenance["classes_changed"] is True and meta.provenance["parent_class_names"] == DEMO_CLASSES
    # the kept rows started from the parent's and moved by one short epoch only;
    # the new row started from the builder's initialisation under the run's seed
    torch.manual_seed(3)
    fresh = get_model("unet", **{**parent_meta.arch_args, "num_classes": 4})
    new_weight, old_weight = model.classifier.weight, parent.classifier.weight
    assert (new_weight[:3] - old_weight).abs().max() < 0.02 < old_weight.abs().max()
    assert (new_weight[3] - fresh.classifier.weight[3]).abs().max() < 0.02
    assert min((new_weight[3] - row).abs().max() for row in old_weight) > 0.05
    # the frozen encoder is the parent's, bit for bit
    assert torch.equal(model.down[0][0].weight, parent.down[0][0].weight)


def test_labels_are_checked_against_the_projects_class_count(demo_with_debris):
    project, store = demo_with_debris
    # a job for two classes whose labels still hold class 2 and 3: refused with the file named
    spec = TrainJobSpec.for_project(project, store, _config(), val_stems=VAL_STEMS)
    spec.class_names, spec.class_colors = ["background", "cytoplasm"], None
    error = _run(spec)[-1]
    assert error["type"] == "error" and error["kind"] == "user"
    assert "only 2 classes" in error["message"], error["message"]


def test_spec_refuses_colours_that_do_not_fit_the_names(demo_with_debris):
    project, store = demo_with_debris
    spec = TrainJobSpec.for_project(project, store, _config())
    with pytest.raises(InvalidArgumentError, match="3 class colours were given for 4 class names"):
        TrainJobSpec(base_checkpoint=spec.base_checkpoint, train=spec.train, val=spec.val, config=spec.config,
                     out_dir=spec.out_dir, class_names=spec.class_names, class_colors=spec.class_colors[:3])


def test_an_untrained_start_is_a_first_version_with_the_projects_classes(tmp_path):
    store = VersionStore(tmp_path / "project")
    colors = [(0, 0, 0), (200, 10, 10), (10, 10, 200)]
    version = import_untrained_start(store, "unet", ["sky", "road", "car"], colors, seed=5)
    assert store.active_id == version.id == "v0001" and version.parent is None
    assert version.name == "untrained start (unet)" and version.class_names == ["sky", "road", "car"]
    model, meta = load_checkpoint(version.checkpoint)
    assert meta.class_colors == colors and meta.provenance["untrained_start"] is True
    # the registry's training variant of U-Net
    assert meta.arch_args == {"num_classes": 3, "in_channels": 3, "depth": 3,
                              "padding": "same", "batch_norm": True, "base_width": 16}
    assert meta.preprocessing.channel_order == "RGB" and meta.preprocessing.mean == (0.5, 0.5, 0.5)
    torch.manual_seed(5)
    fresh = get_model("unet", **meta.arch_args)
    assert torch.equal(model.classifier.weight, fresh.classifier.weight)
    # a VGG family takes ImageNet statistics and no downloaded weights
    other = import_untrained_start(store, "deeplab_largefov", ["a", "b"])
    meta = read_meta(other.checkpoint)
    assert meta.preprocessing.mean == (0.485, 0.456, 0.406) and store.active_id == "v0001"
    assert meta.class_colors[0] == (0, 0, 0) and len(set(meta.class_colors)) == 2
    with pytest.raises(InvalidArgumentError, match="unknown model"):
        import_untrained_start(store, "unetx", ["a"])
    assert np.array_equal([v.id for v in store.list()], ["v0001", "v0002"])
