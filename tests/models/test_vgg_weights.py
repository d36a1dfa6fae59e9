"""ImageNet initialisation: torchvision's VGG16 mapped onto our trunks.

A randomly initialised torchvision VGG16 stands in for the ImageNet one, so
nothing is downloaded; after mapping, our networks compute the same features.
"""

import pytest
import torch
import torchvision

from segstudio.errors import InvalidArgumentError
from segstudio.models import get_model
from segstudio.models.vgg import trunk_convs


@pytest.fixture(scope="module")
def tv_vgg16():
    torch.manual_seed(1)
    return torchvision.models.vgg16().eval()


@pytest.fixture
def no_download(monkeypatch, tv_vgg16):
    """Make the builders' ImageNet path return the random torchvision model."""
    calls = []

    def fake_vgg16(*, weights=None):
        calls.append(weights)
        return tv_vgg16

    monkeypatch.setattr(torchvision.models, "vgg16", fake_vgg16)
    return calls


def _fcn_trunk(model, x):
    for block in model.blocks:
        x = model.pool(block(x))
    return x


def test_fcn_trunk_reproduces_torchvision_features(no_download, tv_vgg16):
    model = get_model("fcn8s", num_classes=2, weights_backbone="imagenet").eval()
    assert no_download == [torchvision.models.VGG16_Weights.IMAGENET1K_V1]
    x = torch.randn(1, 3, 64, 96)
    with torch.no_grad():
        assert torch.allclose(_fcn_trunk(model, x), tv_vgg16.features(x), atol=1e-5)


def test_fc6_as_convolution_equals_the_linear_layer(no_download, tv_vgg16):
    model = get_model("fcn32s", num_classes=2, weights_backbone="imagenet", reference_alignment=True).eval()
    pool5 = torch.randn(1, 512, 7, 7)
    with torch.no_grad():
        ours = model.fc6(pool5).flatten()
        theirs = tv_vgg16.classifier[0](pool5.flatten(1)).flatten()
    assert torch.allclose(ours, theirs, atol=1e-4)


def test_deeplab_and_deconvnet_take_every_trunk_convolution(no_download, tv_vgg16):
    donors = [m for m in tv_vgg16.features if isinstance(m, torch.nn.Conv2d)]
    for name in ("deeplab_largefov", "deeplab_msc_largefov", "deconvnet"):
        model = get_model(name, num_classes=2, weights_backbone="imagenet")
        convs = trunk_convs(model.blocks)
        assert len(convs) == 13
        for ours, theirs in zip(convs, donors, strict=True):
            assert torch.equal(ours.weight, theirs.weight) and torch.equal(ours.bias, theirs.bias)


def test_deeplab_first_block_reproduces_torchvision(no_download, tv_vgg16):
    model = get_model("deeplab_largefov", num_classes=2, weights_backbone="imagenet").eval()
    x = torch.randn(1, 3, 33, 47)
    with torch.no_grad():
        assert torch.allclose(model.blocks[0](x), tv_vgg16.features[:4](x), atol=1e-5)


def test_deeplab_fc6_is_decimated_from_vgg(no_download, tv_vgg16):
    model = get_model("deeplab_largefov", num_classes=2, weights_backbone="imagenet")
    fc6 = tv_vgg16.classifier[0].weight.reshape(4096, 512, 7, 7)
    assert torch.equal(model.fc6.weight, fc6[::4][:, :, ::3, ::3])


def test_grey_input_gets_summed_filters(no_download, tv_vgg16):
    model = get_model("fcn8s", num_classes=2, in_channels=1, weights_backbone="imagenet").eval()
    grey = torch.randn(1, 1, 32, 32)
    with torch.no_grad():
        assert torch.allclose(_fcn_trunk(model, grey), tv_vgg16.features(grey.expand(1, 3, 32, 32)), atol=1e-4)


def test_unknown_weights_name_is_refused():
    with pytest.raises(InvalidArgumentError, match="weights_backbone"):
        get_model("fcn8s", weights_backbone="imagenet21k")


def test_unet_has_no_backbone_weights():
    with pytest.raises(InvalidArgumentError, match="no ImageNet backbone"):
        get_model("unet", weights_backbone="imagenet")
