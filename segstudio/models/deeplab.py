"""DeepLab-v1 LargeFOV and MSc-LargeFOV (Chen et al., ICLR 2015).

VGG16 with 3x3/s2/p1 max pools, stride-1 pool4 and pool5 (output stride 8),
dilation 2 in conv5, and the LargeFOV head: fc6 3x3 with dilation 12 and
1024 channels, fc7 1x1 1024, fc8 1x1 to the classes, then bilinear
upsampling to the input size. Inputs of the form 32k - 31 (321, 513) land on
the stride-8 grid exactly (321 -> 41 x 41); every other size still returns
the input's H x W.

MSc adds a two-layer MLP (128 3x3, 128 1x1) on the input and on pool1..pool4;
each branch's first conv strides onto the stride-8 grid, and the five
128-channel maps are concatenated with fc7 before the classifier.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from segstudio.models.registry import register_model
from segstudio.models.vgg import (
    copy_vgg16_trunk,
    init_head,
    load_torchvision_vgg16,
    vgg16_blocks,
    vgg16_fc_as_conv,
)

#: (input channels, stride of the first conv) of the MSc branches: image, pool1..pool4
_MSC_BRANCHES = ((None, 8), (64, 4), (128, 2), (256, 1), (512, 1))
_MSC_WIDTH = 128


class DeepLabV1(nn.Module):
    """DeepLab-v1 LargeFOV, optionally with the multi-scale (MSc) branches."""

    def __init__(self, *, num_classes: int, in_channels: int, multiscale: bool) -> None:
        super().__init__()
        #: shifts of the input that shift the output exactly (three stride-2 pools)
        self.input_alignment = 8
        self.blocks = vgg16_blocks(in_channels, dilations=(1, 1, 1, 1, 2))
        strides = (2, 2, 2, 1, 1)
        self.pools = nn.ModuleList(
            nn.MaxPool2d(3, stride=s, padding=1, ceil_mode=True) for s in strides
        )
        self.fc6 = nn.Conv2d(512, 1024, 3, padding=12, dilation=12)
        self.fc7 = nn.Conv2d(1024, 1024, 1)
        self.drop = nn.Dropout2d(0.5)
        classifier_in = 1024
        self.branches = nn.ModuleList()
        if multiscale:
            for channels, stride in _MSC_BRANCHES:
                self.branches.append(
                    nn.Sequential(
                        nn.Conv2d(channels or in_channels, _MSC_WIDTH, 3, stride=stride, padding=1),
                        nn.ReLU(inplace=True),
                        nn.Dropout2d(0.5),
                        nn.Conv2d(_MSC_WIDTH, _MSC_WIDTH, 1),
                        nn.ReLU(inplace=True),
                        nn.Dropout2d(0.5),
                    )
                )
            classifier_in += _MSC_WIDTH * len(_MSC_BRANCHES)
            init_head(*(m for branch in self.branches for m in branch))
        self.fc8 = nn.Conv2d(classifier_in, num_classes, 1)
        nn.init.normal_(self.fc8.weight, std=0.01)
        nn.init.zeros_(self.fc8.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        size = x.shape[-2:]
        branch_inputs = [x]
        for block, pool in zip(self.blocks, self.pools, strict=True):
            x = pool(block(x))
            branch_inputs.append(x)
        x = self.drop(F.relu(self.fc6(x), inplace=True))
        x = self.drop(F.relu(self.fc7(x), inplace=True))
        if self.branches:
            grid = x.shape[-2:]
            maps = [x]
            for branch, source in zip(self.branches, branch_inputs, strict=False):
                y = branch(source)
                if y.shape[-2:] != grid:
                    # sizes not of the form 32k - 31 can land one cell off the grid
                    y = F.interpolate(y, size=grid, mode="bilinear", align_corners=True)
                maps.append(y)
            x = torch.cat(maps, dim=1)
        x = self.fc8(x)
        return F.interpolate(x, size=size, mode="bilinear", align_corners=True)

    @torch.no_grad()
    def load_imagenet(self, source: nn.Module) -> None:
        """Trunk from torchvision's VGG16; fc6/fc7 by decimation, as the paper does.

        The paper subsamples VGG's 4096 x 7 x 7 fc6 to 1024 x 3 x 3 (every 4th
        filter, every 3rd tap) and fc7 to 1024 x 1024.
        """
        copy_vgg16_trunk(self.blocks, source)
        w6, b6, w7, b7 = vgg16_fc_as_conv(source)
        keep = torch.arange(0, 4096, 4)
        taps = torch.tensor([0, 3, 6])
        self.fc6.weight.copy_(w6[keep][:, :, taps][:, :, :, taps])
        self.fc6.bias.copy_(b6[keep])
        self.fc7.weight.copy_(w7[keep][:, keep])
        self.fc7.bias.copy_(b7[keep])


def _deeplab(num_classes: int, in_channels: int, weights_backbone: str | None, multiscale: bool) -> DeepLabV1:
    source = load_torchvision_vgg16(weights_backbone)
    model = DeepLabV1(num_classes=num_classes, in_channels=in_channels, multiscale=multiscale)
    if source is not None:
        model.load_imagenet(source)
    return model


@register_model(
    "deeplab_largefov",
    pretrained_trunk=True,
    output_stride=8,
    summary="dilated VGG16, large field of view, light (20.5M); pair with the dense CRF",
)
def deeplab_largefov(
    *, num_classes: int = 21, in_channels: int = 3, weights_backbone: str | None = None
) -> DeepLabV1:
    """DeepLab-v1 LargeFOV: dilated VGG16 with a 1024-channel dilation-12 fc6."""
    return _deeplab(num_classes, in_channels, weights_backbone, multiscale=False)


@register_model(
    "deeplab_msc_largefov",
    pretrained_trunk=True,
    output_stride=8,
    summary="LargeFOV plus multi-scale branches from the image and pool1-4: sharper boundaries",
)
def deeplab_msc_largefov(
    *, num_classes: int = 21, in_channels: int = 3, weights_backbone: str | None = None
) -> DeepLabV1:
    """DeepLab-v1 MSc-LargeFOV: LargeFOV plus five 128-channel multi-scale branches."""
    return _deeplab(num_classes, in_channels, weights_backbone, multiscale=True)
