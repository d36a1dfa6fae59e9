"""Crafted checkpoints: every problem is one CheckpointError naming the file,
nothing is downloaded, and nothing too large for memory is built."""

from __future__ import annotations

import json
import time

import pytest
import torch

from segstudio.errors import CheckpointError
from segstudio.models import checkpoint as ckpt
from segstudio.models import get_model
from segstudio.models.ensemble import MAX_MEMBERS
from segstudio.training.versions import VersionStore


def _tiny_checkpoint(path, **overrides):
    args = dict(num_classes=3, in_channels=1, base_width=4, depth=2, padding="same", batch_norm=True)
    args.update(overrides)
    model = get_model("unet", **args)
    return ckpt.save_checkpoint(path, model, ckpt.make_meta(model))


def _replace_metadata(path, text):
    """Store *text* as the checkpoint's metadata, the weights unchanged."""
    from safetensors import safe_open
    from safetensors.torch import save_file

    with safe_open(str(path), framework="pt") as handle:
        tensors = {name: handle.get_tensor(name) for name in handle.keys()}
    save_file(tensors, str(path), metadata={ckpt.METADATA_KEY: text})


def _edit_metadata(path, change):
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as handle:
        data = json.loads(handle.metadata()[ckpt.METADATA_KEY])
    change(data)
    _replace_metadata(path, json.dumps(data))


def _one_line_error(path, action=ckpt.load_checkpoint):
    with pytest.raises(CheckpointError) as info:
        action(path)
    message = str(info.value)
    assert info.value.path == str(path)
    assert message.startswith(f"{path}: ") and "\n" not in message
    return message


def _args(**values):
    return lambda data: data["arch_args"].update(values)


@pytest.mark.parametrize(("change", "expected"), [
    (_args(num_classes="3"), "num_classes must be a whole number from 1 to 65534, got '3'"),
    (_args(num_classes=-1), "num_classes must be a whole number from 1 to 65534, got -1"),
    (_args(num_classes=1e9), "num_classes must be a whole number from 1 to 65534, got 1000000000.0"),
    (_args(num_classes=10**9), "num_classes must be a whole number from 1 to 65534, got 1000000000"),
    (_args(in_channels=True), "in_channels must be a whole number"),
    (_args(base_width=1e6), "the checkpoint's model arguments are damaged"),
    (_args(base_width="wide"), "the checkpoint's model arguments are damaged"),
    (_args(depth=40), "model cannot be built: U-Net depth must be between 1 and 6"),
    (_args(typo=1), "model cannot be built: model 'unet' takes no argument(s) typo"),
    (lambda d: d.update(format_version="1"), "format_version '1' is not a whole number"),
    (lambda d: d.update(format_version=0), "format_version 0 is not a whole number"),
    (lambda d: d.update(class_names=None), "class_names must be a list of names, got None"),
    (lambda d: d.update(class_names=["a", "b"]), "3 classes but 2 class names and 3 colours"),
    (lambda d: d.update(class_names=[1, 2, 3]), "class_names must be a list of names"),
    (lambda d: d.update(class_colors=None), "'class_colors' a list"),
    (lambda d: d.update(class_colors=[[0, 0], [1, 1], [2, 2]]), "class_colors must be a list of [red, green"),
    (lambda d: d.update(class_colors=[[0, 0, 256]] * 3), "values 0..255"),
    (lambda d: d.update(preprocessing=None), "'preprocessing' must be an object"),
    (lambda d: d["preprocessing"].update(mean="abc"), "preprocessing mean and std must be 1 finite number"),
    (lambda d: d["preprocessing"].update(std=[0.0]), "std must not be zero"),
    (lambda d: d["preprocessing"].update(mean=[0.5, 0.5], std=[1, 1]), "must be 1 finite number(s) each"),
    (lambda d: d["preprocessing"].update(percentiles=[1]), "preprocessing is damaged"),
    (lambda d: d["preprocessing"].update(speed=3), "unexpected keyword argument 'speed'"),
    (lambda d: d.update(provenance="made by hand"), "provenance must be an object, got 'made by hand'"),
    (lambda d: d.update(architecture=42), "architecture 42 is not a name"),
    (lambda d: d.update(architecture="unet9000"), "model cannot be built: unknown model 'unet9000'"),
    (lambda d: d.update(arch_args=[3, 1]), "arch_args must be an object"),
    (lambda d: d.pop("class_names"), "damaged"),
], ids=lambda v: v if isinstance(v, str) else "")
def test_damaged_metadata_is_one_error_naming_the_file(tmp_path, change, expected):
    path = _tiny_checkpoint(tmp_path / "crafted.safetensors")
    _edit_metadata(path, change)
    message = _one_line_error(path)
    assert expected in message


@pytest.mark.parametrize("text", [
    "[" * 100000 + "]" * 100000,
    '{"provenance": ' + "[" * 100000 + "]" * 100000 + "}",
    "[]",
    '"just a string"',
    "{not json",
])
def test_metadata_that_is_not_a_json_object_is_one_error(tmp_path, text):
    path = _tiny_checkpoint(tmp_path / "deep.safetensors")
    _replace_metadata(path, text)
    assert "the checkpoint's metadata is damaged" in _one_line_error(path, ckpt.read_meta)


def test_a_model_too_large_for_memory_is_refused_before_it_is_built(tmp_path):
    """With the machine's real limit: a U-Net of base width 4096 holds about
    127 billion parameters (half a terabyte)."""
    path = _tiny_checkpoint(tmp_path / "wide.safetensors")
    _edit_metadata(path, _args(base_width=4096, depth=4))
    started = time.perf_counter()
    message = _one_line_error(path)
    assert time.perf_counter() - started < 20
    assert "its unet model (" in message and "parameters) would need" in message
    assert "GiB of memory, more than the limit of" in message


def test_the_limit_counts_the_weights_of_the_model(tmp_path, monkeypatch):
    path = _tiny_checkpoint(tmp_path / "tiny.safetensors")
    model = get_model("unet", num_classes=3, in_channels=1, base_width=4, depth=2, padding="same", batch_norm=True)
    weight_bytes = sum(t.numel() * t.element_size() for t in model.state_dict().values())
    parameters = sum(p.numel() for p in model.parameters())
    monkeypatch.setenv("SEGSTUDIO_MEMORY_LIMIT", str(weight_bytes - 1))
    message = _one_line_error(path)
    assert f"its unet model ({parameters:,} parameters) would need" in message
    monkeypatch.setenv("SEGSTUDIO_MEMORY_LIMIT", str(weight_bytes))
    loaded, _ = ckpt.load_checkpoint(path)
    assert sum(p.numel() for p in loaded.parameters()) == parameters


def test_an_ensemble_of_many_members_is_refused_early(tmp_path):
    path = _tiny_checkpoint(tmp_path / "crowd.safetensors")

    def forty_deconvnets(data):
        data["architecture"] = "ensemble"
        data["arch_args"] = {"num_classes": 3, "in_channels": 1, "members": ["deconvnet"] * 40}

    _edit_metadata(path, forty_deconvnets)
    started = time.perf_counter()
    message = _one_line_error(path)
    assert time.perf_counter() - started < 5
    assert f"an ensemble has at most {MAX_MEMBERS} members, got 40" in message
    _edit_metadata(path, lambda data: data["arch_args"].update(members="deconvnet"))
    assert "ensemble members must be a list of model names" in _one_line_error(path)


def test_an_ensemble_is_sized_as_the_sum_of_its_members(tmp_path, monkeypatch):
    monkeypatch.setenv("SEGSTUDIO_MEMORY_LIMIT", "2G")  # one DeconvNet is about 1 GiB, three are not
    path = _tiny_checkpoint(tmp_path / "three.safetensors")

    def three_deconvnets(data):
        data["architecture"] = "ensemble"
        data["arch_args"] = {"num_classes": 3, "in_channels": 1, "members": ["deconvnet"] * 3}

    _edit_metadata(path, three_deconvnets)
    message = _one_line_error(path)
    assert "its ensemble model (" in message and "more than the limit of 2.0 GiB" in message
    parameters = int(message.split("its ensemble model (")[1].split(" parameters")[0].replace(",", ""))
    assert 3 * 250e6 < parameters < 3 * 255e6


@pytest.fixture
def no_downloads(monkeypatch):
    """Any attempt to fetch pretrained weights fails the test."""
    import torch.hub
    from torchvision.models import _api

    def refuse(*args, **kwargs):
        raise AssertionError("pretrained weights were requested")

    monkeypatch.setattr(_api.WeightsEnum, "get_state_dict", refuse)
    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", refuse)
    monkeypatch.setattr(_api, "load_state_dict_from_url", refuse, raising=False)


def test_loading_a_vgg_checkpoint_never_downloads_pretrained_weights(tmp_path, no_downloads):
    model = get_model("deeplab_largefov", num_classes=2).eval()
    path = ckpt.save_checkpoint(tmp_path / "vgg.safetensors", model, ckpt.make_meta(model))
    _edit_metadata(path, _args(weights_backbone="imagenet"))
    loaded, meta = ckpt.load_checkpoint(path)
    assert meta.arch_args["weights_backbone"] == "imagenet"  # the file is left as it is
    for name, tensor in model.state_dict().items():
        assert torch.equal(loaded.state_dict()[name], tensor), name


def test_a_unet_checkpoint_asking_for_a_backbone_still_loads(tmp_path, no_downloads):
    path = _tiny_checkpoint(tmp_path / "unet.safetensors")
    _edit_metadata(path, _args(weights_backbone="imagenet"))
    loaded, _ = ckpt.load_checkpoint(path)
    assert loaded.segstudio_arch["args"]["base_width"] == 4


def test_importing_a_checkpoint_with_a_text_provenance_names_the_file(tmp_path):
    path = _tiny_checkpoint(tmp_path / "odd.safetensors")
    _edit_metadata(path, lambda data: data.update(provenance="made by hand"))
    store = VersionStore(tmp_path / "project")
    message = _one_line_error(path, store.import_checkpoint)
    assert "provenance must be an object" in message
    assert store.list() == []


def test_importing_a_checkpoint_with_odd_history_and_settings_keeps_what_fits(tmp_path):
    path = _tiny_checkpoint(tmp_path / "odd.safetensors")
    history = ["not a record", 3, {"train_loss": 0.5, "val_mean_iou": 0.25}]
    _edit_metadata(path, lambda data: data["provenance"].update(history=history, train_config="fast"))
    info = VersionStore(tmp_path / "project").import_checkpoint(path)
    assert info.settings == {}
    assert info.curves["epoch_loss"] == [0.5] and info.curves["val_mean_iou"] == [0.25]
