"""The VGG16 trunk shared by FCN, DeepLab-v1 and DeconvNet, and its ImageNet
initialisation from torchvision's VGG16 weights.

Each family composes the five conv blocks with its own pooling (FCN: 2x2/s2;
DeepLab: 3x3/s2/p1 with stride-1 pool4/pool5; DeconvNet: 2x2/s2 keeping the
switch indices), so only the blocks are shared here.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import torch
from torch import nn

from segstudio.errors import InvalidArgumentError

log = logging.getLogger(__name__)

#: (output channels, number of 3x3 convolutions) of VGG16's five blocks
VGG16_BLOCKS: tuple[tuple[int, int], ...] = ((64, 2), (128, 2), (256, 3), (512, 3), (512, 3))

WEIGHT_CHOICES = (None, "imagenet")


def conv_block(
    in_channels: int,
    out_channels: int,
    num_convs: int,
    *,
    dilation: int = 1,
    first_padding: int | None = None,
    batch_norm: bool = False,
) -> nn.Sequential:
    """``num_convs`` 3x3 convolutions, each followed by (BatchNorm and) ReLU.

    Padding equals the dilation (the spatial size is kept) except for the
    first convolution when ``first_padding`` is given (FCN's pad-100).
    """
    layers: list[nn.Module] = []
    channels = in_channels
    for index in range(num_convs):
        padding = first_padding if (index == 0 and first_padding is not None) else dilation
        layers.append(nn.Conv2d(channels, out_channels, 3, padding=padding, dilation=dilation))
        if batch_norm:
            layers.append(nn.BatchNorm2d(out_channels))
        layers.append(nn.ReLU(inplace=True))
        channels = out_channels
    return nn.Sequential(*layers)


def vgg16_blocks(
    in_channels: int,
    *,
    dilations: Sequence[int] = (1, 1, 1, 1, 1),
    first_padding: int | None = None,
    batch_norm: bool = False,
) -> nn.ModuleList:
    """The five VGG16 conv blocks (conv1_1 ... conv5_3), without pooling."""
    blocks = nn.ModuleList()
    channels = in_channels
    for block_index, ((width, count), dilation) in enumerate(zip(VGG16_BLOCKS, dilations, strict=True)):
        blocks.append(
            conv_block(
                channels,
                width,
                count,
                dilation=dilation,
                first_padding=first_padding if block_index == 0 else None,
                batch_norm=batch_norm,
            )
        )
        channels = width
    return blocks


def trunk_convs(blocks: nn.ModuleList) -> list[nn.Conv2d]:
    """The 13 trunk convolutions in order (conv1_1 ... conv5_3)."""
    return [m for block in blocks for m in block if isinstance(m, nn.Conv2d)]


def check_weights_choice(weights_backbone: str | None) -> None:
    if weights_backbone not in WEIGHT_CHOICES:
        raise InvalidArgumentError(
            f"weights_backbone must be one of {WEIGHT_CHOICES}, not {weights_backbone!r}"
        )


def load_torchvision_vgg16(weights_backbone: str | None) -> nn.Module | None:
    """torchvision's VGG16 with ImageNet weights, or ``None`` when not asked for.

    The weights are downloaded by torchvision on the user's machine (and
    cached there) the first time; tests never take this path.
    """
    check_weights_choice(weights_backbone)
    if weights_backbone is None:
        return None
    from torchvision.models import VGG16_Weights, vgg16

    log.info("loading torchvision's ImageNet VGG16 weights for the backbone")
    return vgg16(weights=VGG16_Weights.IMAGENET1K_V1)


@torch.no_grad()
def copy_vgg16_trunk(blocks: nn.ModuleList, source: nn.Module) -> None:
    """Copy torchvision VGG16 ``features`` convolutions into our trunk blocks.

    When our first convolution takes a different number of input channels
    (a grey image), the RGB filters are summed over their input channels,
    which gives the same response to a grey image replicated to RGB.
    """
    ours = trunk_convs(blocks)
    theirs = [m for m in source.features if isinstance(m, nn.Conv2d)]
    if len(ours) != len(theirs):
        raise ValueError(f"trunk has {len(ours)} convolutions, source has {len(theirs)}")
    for target, donor in zip(ours, theirs, strict=True):
        weight = donor.weight
        if target.weight.shape[1] != weight.shape[1]:
            if target.weight.shape[1] != 1:
                raise InvalidArgumentError(
                    f"cannot map ImageNet weights onto a {target.weight.shape[1]}-channel input"
                )
            weight = weight.sum(dim=1, keepdim=True)
        target.weight.copy_(weight)
        target.bias.copy_(donor.bias)


def vgg16_fc_as_conv(source: nn.Module) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """torchvision's fc6/fc7 reshaped into 7x7 and 1x1 convolution weights.

    fc6 is a Linear over the flattened 512 x 7 x 7 pool5 map, so reshaping its
    weight to (4096, 512, 7, 7) gives the equivalent convolution (the FCN
    paper's "convolutionalization").
    """
    fc6, fc7 = source.classifier[0], source.classifier[3]
    return (
        fc6.weight.reshape(4096, 512, 7, 7),
        fc6.bias,
        fc7.weight.reshape(4096, 4096, 1, 1),
        fc7.bias,
    )


def bilinear_kernel(channels: int, kernel_size: int) -> torch.Tensor:
    """A (channels, channels, k, k) transposed-convolution weight that
    upsamples each channel bilinearly (non-grouped, as in the FCN reference).
    """
    factor = (kernel_size + 1) // 2
    center = factor - 1 if kernel_size % 2 == 1 else factor - 0.5
    grid = torch.arange(kernel_size, dtype=torch.float32)
    profile = 1 - (grid - center).abs() / factor
    kernel = profile[:, None] * profile[None, :]
    weight = torch.zeros(channels, channels, kernel_size, kernel_size)
    index = torch.arange(channels)
    weight[index, index] = kernel
    return weight


def bilinear_upsampler(channels: int, factor: int, *, padding: int, learnable: bool) -> nn.ConvTranspose2d:
    """Transposed convolution (kernel 2f, stride f) initialised to bilinear."""
    layer = nn.ConvTranspose2d(
        channels, channels, 2 * factor, stride=factor, padding=padding, bias=False
    )
    if layer.weight.device.type != "meta":
        with torch.no_grad():
            layer.weight.copy_(bilinear_kernel(channels, 2 * factor))
    layer.weight.requires_grad_(learnable)
    return layer


def init_head(*layers: nn.Module) -> None:
    """Initialise layers that have no ImageNet counterpart (score layers)."""
    for layer in layers:
        if isinstance(layer, nn.Conv2d | nn.ConvTranspose2d):
            nn.init.kaiming_normal_(layer.weight, mode="fan_out", nonlinearity="relu")
            if layer.bias is not None:
                nn.init.zeros_(layer.bias)
