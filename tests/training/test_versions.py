"""Model versions of a project: add, list, activate, roll back, survive crashes."""

import json
import os

import pytest
import torch

from segstudio.errors import CheckpointError, InvalidArgumentError, UnreadableInputError
from segstudio.models import get_model
from segstudio.models.checkpoint import load_checkpoint, make_meta, save_checkpoint
from segstudio.training import versions as versions_module
from segstudio.training.versions import VersionStore, curves_from_history


def tiny_checkpoint(path, seed=0, provenance=None):
    torch.manual_seed(seed)
    model = get_model("unet", num_classes=3, in_channels=3, base_width=4, depth=2, batch_norm=True, padding="same")
    meta = make_meta(model, class_names=["background", "cytoplasm", "nucleus"], provenance=provenance)
    return save_checkpoint(path, model, meta)


def snapshot(folder):
    """Every file under a folder with its bytes."""
    return {p.relative_to(folder): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_import_add_list_activate_and_roll_back(tmp_path):
    project = tmp_path / "project"
    project.mkdir()
    (project / "project.json").write_text("{}")
    store = VersionStore(project)
    assert store.list() == [] and store.active_id is None and store.active() is None

    external = tiny_checkpoint(tmp_path / "elsewhere" / "demo.safetensors", provenance={
        "train_config": {"epochs": 60}, "history": [{"epoch": 1, "train_loss": 1.0, "val_mean_iou": 0.5}]})
    first = store.import_checkpoint(external)
    assert first.id == "v0001" and first.parent is None and first.origin == "import"
    assert first.name == "demo.safetensors" and first.imported_from == str(external.resolve())
    assert first.settings == {"epochs": 60} and first.curves["val_mean_iou"] == [0.5]
    # the first version of a project becomes active by itself
    assert store.active_id == "v0001"
    assert external.is_file(), "an import copies, it never moves"
    assert store.checkpoint_path("v0001").read_bytes() == external.read_bytes()

    run_checkpoint = tiny_checkpoint(tmp_path / "run" / "best.safetensors", seed=1)
    scores = {"iou": [0.9, 0.8, float("nan")], "dice": [0.95, 0.9, None], "mean_iou": 0.85, "mean_dice": 0.92,
              "pixel_accuracy": 0.9}
    meta = {
        "parent": "v0001", "images": ["a", "b"], "val_images": ["c"], "settings": {"epochs": 3},
        "curves": curves_from_history([{"train_loss": 0.5, "val_mean_iou": 0.85, "val_mean_dice": 0.92}],
                                      [0.9, 0.7, 0.5]),
        "scores": scores, "parent_scores": {"mean_iou": 0.4}, "status": "finished",
    }
    second = store.add(run_checkpoint, meta)
    assert second.id == "v0002" and second.parent == "v0001" and second.name == "fine-tuned from v0001"
    assert store.active_id == "v0001", "adding a version does not switch to it unless asked"
    assert run_checkpoint.is_file()

    again = store.get("v0002")
    assert again.images == ["a", "b"] and again.val_images == ["c"]
    assert again.curves["loss"] == [0.9, 0.7, 0.5] and again.curves["val_mean_iou"] == [0.85]
    assert again.scores["iou"] == [0.9, 0.8, None], "NaN is stored as null"
    assert again.mean_iou == 0.85 and again.parent_mean_iou == 0.4
    assert again.architecture == "unet" and again.class_names == ["background", "cytoplasm", "nucleus"]
    model, _ = load_checkpoint(again.checkpoint)
    assert sum(p.numel() for p in model.parameters()) > 0

    third = store.add(tiny_checkpoint(tmp_path / "run2.safetensors", seed=2),
                      {"parent": "v0002", "status": "cancelled"}, activate=True, move=True)
    assert not (tmp_path / "run2.safetensors").exists(), "move=True moves the file in"
    assert third.status == "cancelled" and store.active_id == "v0003"
    assert [v.id for v in store.list()] == ["v0001", "v0002", "v0003"]

    # one-click rollback, and it persists for a new store object
    store.set_active("v0001")
    assert VersionStore(project).active_id == "v0001"
    index = json.loads((project / "models" / "versions.json").read_text())
    assert index["format"] == "segstudio-model-versions" and index["version"] == 1
    assert [v["id"] for v in index["versions"]] == ["v0001", "v0002", "v0003"]
    meta_file = json.loads((project / "models" / "v0002" / "meta.json").read_text())
    assert meta_file["parent"] == "v0001" and meta_file["settings"] == {"epochs": 3}

    # nothing outside models/ was touched
    assert sorted(p.name for p in project.iterdir()) == ["models", "project.json"]
    assert (project / "project.json").read_text() == "{}"


def test_bad_requests_change_nothing(tmp_path):
    store = VersionStore(tmp_path)
    store.import_checkpoint(tiny_checkpoint(tmp_path / "a.safetensors"))
    before = snapshot(tmp_path / "models")
    with pytest.raises(InvalidArgumentError, match="no model version 'v0042'"):
        store.set_active("v0042")
    with pytest.raises(InvalidArgumentError, match="no model version"):
        store.get("v0042")
    with pytest.raises(InvalidArgumentError, match="parent version 'v0009'"):
        store.add(tmp_path / "a.safetensors", {"parent": "v0009"})
    with pytest.raises(InvalidArgumentError, match="unknown model version field"):
        store.add(tmp_path / "a.safetensors", {"colour": "red"})
    with pytest.raises(InvalidArgumentError, match="status"):
        store.add(tmp_path / "a.safetensors", {"status": "crashed"})
    (tmp_path / "junk.safetensors").write_bytes(b"not a checkpoint at all")
    with pytest.raises(CheckpointError, match="junk.safetensors"):
        store.import_checkpoint(tmp_path / "junk.safetensors")
    with pytest.raises(CheckpointError, match="no such checkpoint"):
        store.add(tmp_path / "missing.safetensors", {})
    assert snapshot(tmp_path / "models") == before
    assert [p.name for p in (tmp_path / "models").iterdir() if p.name.startswith(".")] == []


def test_a_crash_while_storing_never_lists_a_half_written_version(tmp_path, monkeypatch):
    store = VersionStore(tmp_path)
    store.import_checkpoint(tiny_checkpoint(tmp_path / "a.safetensors"))
    checkpoint = tiny_checkpoint(tmp_path / "b.safetensors", seed=1)

    def fail(*args, **kwargs):
        raise OSError(28, "No space left on device")

    # the copy of the weights fails: no version, no leftover folder
    monkeypatch.setattr(versions_module.shutil, "copyfile", fail)
    with pytest.raises(Exception, match="No space left"):
        store.add(checkpoint, {"parent": "v0001"})
    monkeypatch.undo()
    assert [v.id for v in store.list()] == ["v0001"] and store.active_id == "v0001"
    assert sorted(p.name for p in (tmp_path / "models").iterdir()) == ["v0001", "versions.json"]

    # the index cannot be written after the folder was renamed into place
    real_write = versions_module.atomic_write_bytes

    def fail_on_index(path, data):
        if path.name == "versions.json":
            raise OSError(5, "Input/output error")
        return real_write(path, data)

    monkeypatch.setattr(versions_module, "atomic_write_bytes", fail_on_index)
    with pytest.raises(OSError):
        store.add(checkpoint, {"parent": "v0001"}, activate=True)
    monkeypatch.undo()
    assert [v.id for v in store.list()] == ["v0001"] and store.active_id == "v0001"
    assert not (tmp_path / "models" / "v0002").exists()

    # a folder left by a crash between the rename and the index write is not listed, and its id is skipped
    orphan = tmp_path / "models" / "v0002"
    orphan.mkdir()
    (orphan / "model.safetensors").write_bytes(checkpoint.read_bytes())
    assert [v.id for v in store.list()] == ["v0001"]
    added = store.add(checkpoint, {"parent": "v0001"})
    assert added.id == "v0003"


def test_damaged_or_newer_index_files_are_reported(tmp_path):
    store = VersionStore(tmp_path)
    index = tmp_path / "models" / "versions.json"
    index.parent.mkdir()
    index.write_text("{ not json")
    with pytest.raises(UnreadableInputError, match="versions.json: the model versions file is damaged"):
        store.list()
    index.write_text(json.dumps({"format": "segstudio-model-versions", "version": 99, "versions": []}))
    with pytest.raises(UnreadableInputError, match="newer segstudio"):
        _ = store.active_id
    index.write_text(json.dumps({"format": "segstudio-model-versions", "version": 1,
                                 "versions": [{"id": "../etc"}]}))
    with pytest.raises(UnreadableInputError, match="must be a list"):
        store.list()


def test_a_listed_version_whose_files_vanished_is_left_out(tmp_path, caplog):
    store = VersionStore(tmp_path)
    store.import_checkpoint(tiny_checkpoint(tmp_path / "a.safetensors"))
    store.import_checkpoint(tiny_checkpoint(tmp_path / "b.safetensors"))
    os.remove(tmp_path / "models" / "v0001" / "meta.json")
    assert [v.id for v in store.list()] == ["v0002"]
    assert "v0001" in caplog.text
    os.remove(tmp_path / "models" / "v0002" / "model.safetensors")
    with pytest.raises(CheckpointError, match="weights of model version v0002 are missing"):
        store.checkpoint_path("v0002")


def test_new_run_dirs_are_distinct_and_inside_models(tmp_path):
    store = VersionStore(tmp_path)
    first, second = store.new_run_dir(), store.new_run_dir()
    assert first != second and first.is_dir() and not any(first.iterdir())
    assert first.parent == tmp_path / "models" / "runs"
    assert store.list() == []
