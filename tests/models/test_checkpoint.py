"""The checkpoint format: round trip, mismatches, unsafe pickles, atomic writes."""

import json
import os

import pytest
import torch

from segstudio.errors import CheckpointError, CheckpointMismatchError
from segstudio.models import get_model
from segstudio.models import checkpoint as ckpt


def _small_unet(**overrides):
    args = dict(num_classes=3, in_channels=1, base_width=4, depth=2, padding="same", batch_norm=True)
    args.update(overrides)
    return get_model("unet", **args)


def _trained_a_little(model):
    """Move BatchNorm statistics away from their initial values."""
    model.train()
    with torch.no_grad():
        model(torch.randn(2, model.segstudio_arch["args"]["in_channels"], 32, 32) * 3 + 1)
    return model.eval()


def test_round_trip_gives_identical_outputs(tmp_path):
    model = _trained_a_little(_small_unet())
    meta = ckpt.make_meta(
        model,
        class_names=["background", "cell", "nucleus"],
        class_colors=[(0, 0, 0), (0, 200, 0), (0, 0, 255)],
        provenance={"parent": None, "data": "unit test", "metrics": {"mean_iou": 0.5}},
    )
    path = ckpt.save_checkpoint(tmp_path / "m.safetensors", model, meta)
    loaded, loaded_meta = ckpt.load_checkpoint(path)
    x = torch.randn(1, 1, 45, 37)
    with torch.no_grad():
        assert torch.equal(model(x), loaded.eval()(x))
    assert loaded_meta.class_names == ["background", "cell", "nucleus"]
    assert loaded_meta.class_colors == [(0, 0, 0), (0, 200, 0), (0, 0, 255)]
    assert loaded_meta.architecture == "unet"
    assert loaded_meta.arch_args["base_width"] == 4
    assert loaded_meta.provenance["metrics"] == {"mean_iou": 0.5}
    assert loaded_meta.preprocessing.channel_order == "grey"
    assert "created" in loaded_meta.provenance


def test_round_trip_of_a_vgg_model(tmp_path):
    model = get_model("deeplab_largefov", num_classes=2).eval()
    path = ckpt.save_checkpoint(tmp_path / "d.safetensors", model, ckpt.make_meta(model))
    loaded, meta = ckpt.load_checkpoint(path)
    x = torch.randn(1, 3, 41, 41)
    with torch.no_grad():
        assert torch.equal(model(x), loaded.eval()(x))
    assert meta.preprocessing.mean == (0.485, 0.456, 0.406)
    assert meta.class_names[0] == "background" and len(meta.class_colors) == 2


def test_metadata_is_readable_without_loading_weights(tmp_path):
    model = _small_unet()
    path = ckpt.save_checkpoint(tmp_path / "m.safetensors", model, ckpt.make_meta(model))
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as handle:
        stored = json.loads(handle.metadata()["segstudio"])
    assert stored["architecture"] == "unet" and stored["format_version"] == 1
    assert ckpt.read_meta(path).num_classes == 3


@pytest.mark.parametrize(
    ("expect", "message"),
    [
        ({"architecture": "fcn8s"}, "architecture 'unet'"),
        ({"num_classes": 5}, "number of classes 3"),
        ({"in_channels": 3}, "input channels 1"),
    ],
)
def test_expectations_that_do_not_match_are_refused(tmp_path, expect, message):
    model = _small_unet()
    path = ckpt.save_checkpoint(tmp_path / "m.safetensors", model, ckpt.make_meta(model))
    with pytest.raises(CheckpointMismatchError, match=message) as info:
        ckpt.load_checkpoint(path, **expect)
    assert "m.safetensors" in str(info.value)


@pytest.mark.parametrize(
    ("other", "message"),
    [
        (lambda: get_model("deeplab_largefov", num_classes=3, in_channels=1), "'unet' model, not 'deeplab_largefov'"),
        (lambda: _small_unet(num_classes=4), "3 classes, the model has 4"),
        (lambda: _small_unet(in_channels=3), "1 input channels, the model has 3"),
        (lambda: _small_unet(base_width=8), "base_width=4"),
    ],
)
def test_loading_into_another_architecture_names_the_mismatch(tmp_path, other, message):
    model = _small_unet()
    path = ckpt.save_checkpoint(tmp_path / "m.safetensors", model, ckpt.make_meta(model))
    with pytest.raises(CheckpointMismatchError, match=message):
        ckpt.load_weights(other(), path)


def test_plain_state_dict_pickle_loads(tmp_path):
    source = _trained_a_little(_small_unet())
    path = tmp_path / "weights.pth"
    torch.save({"state_dict": {f"module.{k}": v for k, v in source.state_dict().items()}}, path)
    target = _small_unet().eval()
    assert ckpt.load_weights(target, path) is None
    x = torch.randn(1, 1, 20, 20)
    with torch.no_grad():
        assert torch.equal(source(x), target(x))


def test_foreign_weights_of_the_wrong_shape_are_refused(tmp_path):
    path = tmp_path / "weights.pt"
    torch.save(_small_unet(num_classes=7).state_dict(), path)
    with pytest.raises(CheckpointMismatchError, match=r"differ in shape, e\.g\. classifier"):
        ckpt.load_weights(_small_unet(), path)


class _Payload:
    """A pickle that runs code when loaded (here: it would create a file)."""

    target = ""

    def __reduce__(self):
        return (os.mkdir, (self.target,))


def test_pickle_that_needs_code_is_refused_and_never_run(tmp_path):
    marker = tmp_path / "pwned"
    payload = _Payload()
    payload.target = str(marker)
    path = tmp_path / "evil.pth"
    torch.save({"state_dict": payload}, path)
    with pytest.raises(CheckpointError, match="refused: this pickle needs code to load") as info:
        ckpt.load_weights(_small_unet(), path)
    assert not marker.exists()
    assert "evil.pth" in str(info.value)


@pytest.mark.parametrize(
    ("content", "message"),
    [(b"", "empty"), (b"not a checkpoint at all", "not a readable safetensors checkpoint")],
)
def test_broken_files_are_refused(tmp_path, content, message):
    path = tmp_path / "broken.safetensors"
    path.write_bytes(content)
    with pytest.raises(CheckpointError, match=message):
        ckpt.load_checkpoint(path)


def test_missing_file(tmp_path):
    with pytest.raises(CheckpointError, match="no such checkpoint"):
        ckpt.load_checkpoint(tmp_path / "nope.safetensors")


def test_a_crash_during_the_write_keeps_the_previous_checkpoint(tmp_path, monkeypatch):
    model = _small_unet()
    path = ckpt.save_checkpoint(tmp_path / "m.safetensors", model, ckpt.make_meta(model))
    before = path.read_bytes()

    def crash(tensors, filename, metadata=None):
        with open(filename, "wb") as partial:
            partial.write(b"half a checkpoint")
        raise OSError("disk full")

    monkeypatch.setattr(ckpt, "save_file", crash)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(1)
    with pytest.raises(OSError, match="disk full"):
        ckpt.save_checkpoint(path, model, ckpt.make_meta(model))
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["m.safetensors"]


def test_class_names_must_match_the_class_count():
    with pytest.raises(CheckpointMismatchError, match="3 classes but 2 names"):
        ckpt.make_meta(_small_unet(), class_names=["a", "b"])


def test_newer_format_is_refused(tmp_path):
    model = _small_unet()
    meta = ckpt.make_meta(model)
    meta.format_version = 99
    path = ckpt.save_checkpoint(tmp_path / "future.safetensors", model, meta)
    with pytest.raises(CheckpointError, match="newer than this segstudio"):
        ckpt.read_meta(path)


def test_a_fixed_input_window_round_trips_and_old_files_have_none(tmp_path):
    model = _small_unet()
    meta = ckpt.make_meta(model, preprocessing=ckpt.Preprocessing("grey", (0.5,), (0.25,), (40.0, 400.0)))
    path = ckpt.save_checkpoint(tmp_path / "ct.safetensors", model, meta)
    assert ckpt.read_meta(path).preprocessing.input_window == (40.0, 400.0)
    plain = ckpt.save_checkpoint(tmp_path / "plain.safetensors", model, ckpt.make_meta(model))
    assert ckpt.read_meta(plain).preprocessing.input_window is None


def _rewrite_metadata(path, change):
    """Edit a checkpoint's JSON metadata in place, as an older segstudio would have written it."""
    from safetensors import safe_open
    from safetensors.torch import save_file

    with safe_open(str(path), framework="pt") as handle:
        tensors = {name: handle.get_tensor(name) for name in handle.keys()}
        metadata = handle.metadata()
    data = json.loads(metadata[ckpt.METADATA_KEY])
    change(data)
    save_file(tensors, str(path), metadata={**metadata, ckpt.METADATA_KEY: json.dumps(data)})


def test_a_checkpoint_from_before_the_normalisation_was_recorded_keeps_dividing_by_the_type_maximum(tmp_path):
    import numpy as np

    from segstudio.preprocess import image_to_tensor

    model = _small_unet()
    path = ckpt.save_checkpoint(tmp_path / "old.safetensors", model, ckpt.make_meta(model))
    assert ckpt.read_meta(path).preprocessing.normalization == "auto"  # what new ones record
    for key in ("normalization", "percentiles", "value_range"):
        _rewrite_metadata(path, lambda data, key=key: data["preprocessing"].pop(key))
    preprocessing = ckpt.read_meta(path).preprocessing
    assert preprocessing.normalization == "dtype"
    image = np.array([[0, 100], [200, 300]], np.uint16)
    expected = (image / 65535.0 - preprocessing.mean[0]) / preprocessing.std[0]
    np.testing.assert_allclose(image_to_tensor(image, preprocessing)[0].numpy(), expected, rtol=1e-5)
    _, loaded = ckpt.load_checkpoint(path)
    assert loaded.preprocessing == preprocessing


def test_a_damaged_normalisation_is_refused(tmp_path):
    model = _small_unet()
    path = ckpt.save_checkpoint(tmp_path / "bad.safetensors", model, ckpt.make_meta(model))
    _rewrite_metadata(path, lambda data: data["preprocessing"].update(normalization="magic"))
    with pytest.raises(CheckpointError, match="preprocessing is damaged: normalization must be one of"):
        ckpt.read_meta(path)
