"""Giving a model other classes: kept classes keep their outputs, new ones start fresh."""

import pytest
import torch

from segstudio.errors import InvalidArgumentError
from segstudio.models import adapt_to_classes, get_model
from segstudio.models.adapt import class_mapping
from segstudio.models.checkpoint import load_checkpoint, make_meta, save_checkpoint

OLD = ["background", "cytoplasm", "nucleus"]
#: the project gained a class
ADDED = [*OLD, "membrane"]
TINY_UNET = {"in_channels": 3, "base_width": 4, "depth": 2, "batch_norm": True, "padding": "same"}


def _trained_unet():
    """A tiny U-Net whose weights and BatchNorm statistics are not the builder's."""
    torch.manual_seed(0)
    model = get_model("unet", num_classes=3, **TINY_UNET)
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.add_(torch.randn_like(parameter) * 0.1)
        model.train()
        model(torch.randn(2, 3, 32, 32))  # moves the running statistics
    return model.eval()


def test_an_added_class_keeps_the_old_classes_outputs_bit_for_bit():
    old = _trained_unet()
    torch.manual_seed(7)
    adapted, report = adapt_to_classes(old, OLD, ADDED)
    torch.manual_seed(7)
    fresh = get_model("unet", num_classes=4, **TINY_UNET)

    assert report.kept == OLD and report.new == ["membrane"] and report.dropped == []
    assert report.mapping == [(0, 0), (1, 1), (2, 2)]
    assert report.class_tensors == ["classifier.weight", "classifier.bias"] and report.reinitialised == []
    assert adapted.segstudio_arch == {"name": "unet", "args": {**old.segstudio_arch["args"], "num_classes": 4}}
    assert not adapted.training  # the old model's mode
    # kept rows are the old ones, the new row is the builder's under the same seed
    assert adapted.classifier.weight.shape == (4, 4, 1, 1)
    assert torch.equal(adapted.classifier.weight[:3], old.classifier.weight)
    assert torch.equal(adapted.classifier.bias[:3], old.classifier.bias)
    assert torch.equal(adapted.classifier.weight[3], fresh.classifier.weight[3])
    assert not any(torch.equal(adapted.classifier.weight[3], row) for row in old.classifier.weight)
    # everything else, BatchNorm statistics included, is the old model's
    old_state, new_state = old.state_dict(), adapted.state_dict()
    assert set(old_state) == set(new_state)
    for name, value in old_state.items():
        if not name.startswith("classifier."):
            assert torch.equal(new_state[name], value), name
    assert old_state["down.0.1.running_mean"].abs().sum() > 0
    # and so the kept classes' logits are the old ones on the same input
    x = torch.randn(1, 3, 40, 24)
    with torch.no_grad():
        before, after = old(x), adapted(x)
    assert after.shape == (1, 4, 40, 24)
    torch.testing.assert_close(after[:, :3], before, rtol=0, atol=1e-6)
    assert not torch.allclose(after[:, 3], before[:, 2])


def test_removed_renamed_and_reordered_classes_follow_their_names():
    old = _trained_unet()
    new = ["Nucleus", "debris", "BACKGROUND"]  # cytoplasm deleted, debris new, names in another case and order
    adapted, report = adapt_to_classes(old, OLD, new)
    assert report.kept == ["Nucleus", "BACKGROUND"] and report.new == ["debris"] and report.dropped == ["cytoplasm"]
    assert report.mapping == [(0, 2), (2, 0)] and report.changed
    weight, bias = adapted.classifier.weight, adapted.classifier.bias
    assert torch.equal(weight[0], old.classifier.weight[2]) and torch.equal(bias[0], old.classifier.bias[2])
    assert torch.equal(weight[2], old.classifier.weight[0]) and torch.equal(bias[2], old.classifier.bias[0])
    assert not any(torch.equal(weight[1], row) for row in old.classifier.weight)
    assert bias[1].item() == 0.0  # U-Net's builder zeroes biases


def test_only_the_case_of_names_changed_is_no_change():
    old = _trained_unet()
    adapted, report = adapt_to_classes(old, OLD, [n.upper() for n in OLD])
    assert not report.changed and report.new == report.dropped == []
    assert all(torch.equal(a, b) for a, b in zip(adapted.state_dict().values(), old.state_dict().values(),
                                                  strict=True))


def test_the_adapted_model_saves_with_the_new_classes(tmp_path):
    adapted, _ = adapt_to_classes(_trained_unet(), OLD, ADDED)
    colors = [(0, 0, 0), (255, 196, 0), (230, 40, 150), (10, 200, 90)]
    path = save_checkpoint(tmp_path / "m.safetensors", adapted, make_meta(adapted, class_names=ADDED,
                                                                          class_colors=colors))
    loaded, meta = load_checkpoint(path)
    assert meta.class_names == ADDED and meta.class_colors == colors and meta.num_classes == 4
    assert torch.equal(loaded.classifier.weight, adapted.classifier.weight)


#: the tensors of each family that hold the class count in one dimension / in two
FAMILIES = {
    "fcn8s": (["score_fr.weight", "score_fr.bias", "score_pool4.weight", "score_pool4.bias",
               "score_pool3.weight", "score_pool3.bias"],
              ["upscore2.weight", "upscore_pool4.weight", "upscore_final.weight"]),
    "deeplab_largefov": (["fc8.weight", "fc8.bias"], []),
    "deconvnet": (["score.weight", "score.bias"], []),
    "unet": (["classifier.weight", "classifier.bias"], []),
}


@pytest.mark.parametrize("name", list(FAMILIES))
def test_every_family_keeps_its_backbone_and_its_kept_rows(name):
    torch.manual_seed(0)
    old = get_model(name, num_classes=3)
    torch.manual_seed(1)  # different fresh draws, so a copied tensor is told from a fresh one
    adapted, report = adapt_to_classes(old, OLD, ["nucleus", "background", "membrane", "debris"])
    class_tensors, mixed = FAMILIES[name]
    assert sorted(report.class_tensors) == sorted(class_tensors)
    assert sorted(report.reinitialised) == sorted(mixed)
    old_state, new_state = old.state_dict(), adapted.state_dict()
    for key, value in old_state.items():
        if key in class_tensors:
            assert new_state[key].shape[0] == 4
            assert torch.equal(new_state[key][0], value[2]) and torch.equal(new_state[key][1], value[0]), key
        elif key not in mixed:
            assert torch.equal(new_state[key], value), key
    for key in mixed:
        # FCN's upsamplers mix classes: they stay the bilinear kernel of the new size
        weight = new_state[key]
        assert weight.shape[:2] == (4, 4)
        assert weight[0, 1].abs().sum() == 0 and weight[3, 3].sum() > 0
        assert torch.equal(weight[0, 0], old_state[key][0, 0])


def test_an_ensemble_adapts_each_member():
    torch.manual_seed(0)
    old = get_model("ensemble", num_classes=3, members=("unet", "deeplab_largefov"))
    adapted, report = adapt_to_classes(old, OLD, ADDED)
    assert sorted(report.class_tensors) == ["members.0.classifier.bias", "members.0.classifier.weight",
                                            "members.1.fc8.bias", "members.1.fc8.weight"]
    assert torch.equal(adapted.members[0].classifier.weight[:3], old.members[0].classifier.weight)
    assert torch.equal(adapted.members[1].fc8.weight[:3], old.members[1].fc8.weight)
    assert torch.equal(adapted.members[1].fc7.weight, old.members[1].fc7.weight)
    with torch.no_grad():
        assert adapted.eval()(torch.randn(1, 3, 33, 33)).shape == (1, 4, 33, 33)


def test_class_mapping_matches_names_case_insensitively():
    assert class_mapping(["a", "B", "c"], ["b", "d", "A"]) == [(0, 1), (2, 0)]
    assert class_mapping(["a"], ["x"]) == []


def test_refuses_what_it_cannot_adapt():
    old = _trained_unet()
    with pytest.raises(InvalidArgumentError, match="predicts 3 classes but 2 class names"):
        adapt_to_classes(old, ["a", "b"], ADDED)
    with pytest.raises(InvalidArgumentError, match="new class list is empty"):
        adapt_to_classes(old, OLD, [])
    with pytest.raises(InvalidArgumentError, match="not built through the model registry"):
        adapt_to_classes(torch.nn.Conv2d(3, 3, 1), OLD, ADDED)
