"""The registry and the parameter counts of PAPERS.md."""

import pytest
import torch

from segstudio.errors import InvalidArgumentError
from segstudio.models import count_parameters, describe_models, get_model, list_models
from segstudio.models.vgg import vgg16_blocks

REGISTRY_NAMES = [
    "fcn32s",
    "fcn16s",
    "fcn8s",
    "deeplab_largefov",
    "deeplab_msc_largefov",
    "deconvnet",
    "unet",
    "ensemble",
]

# (learned, fixed) at num_classes=21, in_channels=3 (U-Net: 1 channel, 2 classes)
PAPERS = {
    "fcn32s": (134_346_581, 1_806_336),
    "fcn16s": (134_357_354, 458_640),
    "fcn8s": (134_362_751, 127_008),
    "deeplab_largefov": (20_505_429, 0),
    "deconvnet": (251_805_653, 0),
    "unet": (31_030_658, 0),
}


def test_registry_names_are_the_fixed_public_ones():
    assert list_models() == REGISTRY_NAMES


@pytest.mark.parametrize("name", sorted(PAPERS))
def test_parameter_counts_equal_the_papers(name):
    report = {r.name: r for r in describe_models()}[name]
    assert (report.params_learned, report.params_fixed) == PAPERS[name]


def test_vgg16_trunk_has_the_papers_parameter_count():
    with torch.device("meta"):
        blocks = vgg16_blocks(3)
    assert sum(p.numel() for p in blocks.parameters()) == 14_714_688


def test_deconvnet_splits_into_conv_and_batchnorm_parameters():
    with torch.device("meta"):
        model = get_model("deconvnet", num_classes=21)
    bn = sum(p.numel() for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d) for p in m.parameters())
    total, _ = count_parameters(model)
    assert (total - bn, bn) == (251_772_245, 33_408)


def test_unet_with_three_input_channels():
    with torch.device("meta"):
        model = get_model("unet", in_channels=3, num_classes=2)
    assert count_parameters(model) == (31_031_810, 0)


def test_learnable_upsampling_moves_the_2x_layers_to_learned():
    with torch.device("meta"):
        fixed = get_model("fcn8s")
        learnable = get_model("fcn8s", learnable_upsampling=True)
    two_x = 2 * 21 * 21 * 4 * 4
    assert count_parameters(learnable) == (count_parameters(fixed)[0] + two_x, 21 * 21 * 16 * 16)


def test_ensemble_counts_its_members():
    reports = {r.name: r for r in describe_models()}
    assert reports["ensemble"].params_learned == PAPERS["fcn8s"][0] + PAPERS["deconvnet"][0]
    assert reports["ensemble"].params_fixed == PAPERS["fcn8s"][1]


def test_unknown_model_name_suggests_close_ones():
    with pytest.raises(InvalidArgumentError, match="fcn8s"):
        get_model("fcn8")


def test_builder_arguments_are_checked_not_swallowed():
    with pytest.raises(InvalidArgumentError, match="num_clases"):
        get_model("unet", num_clases=3)


def test_builders_are_keyword_only():
    from segstudio.models.fcn import fcn8s

    with pytest.raises(TypeError):
        fcn8s(21)


def test_model_records_how_to_rebuild_it():
    model = get_model("unet", num_classes=3, base_width=4, depth=2, padding="same")
    assert model.segstudio_arch == {
        "name": "unet",
        "args": {
            "num_classes": 3,
            "in_channels": 1,
            "depth": 2,
            "base_width": 4,
            "padding": "same",
            "batch_norm": False,
        },
    }
