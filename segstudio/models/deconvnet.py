"""DeconvNet (Noh, Hong, Han, ICCV 2015).

A VGG16 encoder whose 2x2 max pools keep their switch indices, fc6 (7x7,
4096) and fc7 (1x1, 4096), then a mirrored decoder: fc6-deconv (7x7, back to
512 channels), five max-unpooling stages that put activations back where the
pools took them, each followed by 3x3 deconvolutions mirroring the VGG
blocks, and a 1x1 score layer. BatchNorm follows every conv and deconv.

The paper runs on 224 x 224 proposals; here any image size works: the input
is padded (bottom/right) to a multiple of 32 of at least 256, and the
scores are cropped back. 256 rather than the paper's 224: at 224 fc6 sees
a 1 x 1 map, and its BatchNorm cannot train on one value per channel when a
user fine-tunes with a batch of one image.
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

_MIN_SIZE = 256

#: decoder stages, deepest first: the channel widths of each deconvolution
_DECODER = ((512, 512, 512), (512, 512, 256), (256, 256, 128), (128, 64), (64, 64))


def _bn_relu(layer: nn.Module, channels: int) -> nn.Sequential:
    return nn.Sequential(layer, nn.BatchNorm2d(channels), nn.ReLU(inplace=True))


class DeconvNet(nn.Module):
    """Encoder-decoder with unpooling by switch indices and learned deconvolutions."""

    def __init__(self, *, num_classes: int, in_channels: int) -> None:
        super().__init__()
        #: shifts of the input that shift the output exactly (five 2x2 pools)
        self.input_alignment = 32
        self.blocks = vgg16_blocks(in_channels, batch_norm=True)
        self.pool = nn.MaxPool2d(2, stride=2, return_indices=True)
        self.fc6 = _bn_relu(nn.Conv2d(512, 4096, 7), 4096)
        self.fc7 = _bn_relu(nn.Conv2d(4096, 4096, 1), 4096)
        self.fc6_deconv = _bn_relu(nn.ConvTranspose2d(4096, 512, 7), 512)
        self.unpool = nn.MaxUnpool2d(2, stride=2)
        self.decoder = nn.ModuleList()
        channels = 512
        for widths in _DECODER:
            layers = []
            for width in widths:
                layers.append(_bn_relu(nn.ConvTranspose2d(channels, width, 3, padding=1), width))
                channels = width
            self.decoder.append(nn.Sequential(*layers))
        self.score = nn.Conv2d(channels, num_classes, 1)
        init_head(self.score, *(m for m in self.modules() if isinstance(m, nn.ConvTranspose2d)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        height, width = x.shape[-2:]
        padded_h = max(_MIN_SIZE, height + (-height % 32))
        padded_w = max(_MIN_SIZE, width + (-width % 32))
        x = F.pad(x, (0, padded_w - width, 0, padded_h - height))
        switches = []
        for block in self.blocks:
            x = block(x)
            size = x.shape[-2:]
            x, indices = self.pool(x)
            switches.append((indices, size))
        x = self.fc6_deconv(self.fc7(self.fc6(x)))
        for stage, (indices, size) in zip(self.decoder, reversed(switches), strict=True):
            x = stage(self.unpool(x, indices, output_size=size))
        return self.score(x)[:, :, :height, :width]

    @torch.no_grad()
    def load_imagenet(self, source: nn.Module) -> None:
        """Encoder convolutions and fc6/fc7 from torchvision's VGG16."""
        copy_vgg16_trunk(self.blocks, source)
        w6, b6, w7, b7 = vgg16_fc_as_conv(source)
        self.fc6[0].weight.copy_(w6)
        self.fc6[0].bias.copy_(b6)
        self.fc7[0].weight.copy_(w7)
        self.fc7[0].bias.copy_(b7)



@register_model(
    "deconvnet",
    pretrained_trunk=True,
    output_stride=1,
    summary="learned unpooling decoder: fine object shapes; heavy (252M parameters)",
)
def deconvnet(
    *, num_classes: int = 21, in_channels: int = 3, weights_backbone: str | None = None
) -> DeconvNet:
    """DeconvNet: VGG16 encoder with switch indices and a mirrored deconvolution decoder."""
    source = load_torchvision_vgg16(weights_backbone)
    model = DeconvNet(num_classes=num_classes, in_channels=in_channels)
    if source is not None:
        model.load_imagenet(source)
    return model
