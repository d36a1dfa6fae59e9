"""FCN-32s, FCN-16s and FCN-8s (Long, Shelhamer, Darrell, CVPR 2015).

VGG16 with fc6/fc7 as convolutions, a 1x1 score layer, skip fusion from
pool4 (16s, 8s) and pool3 (8s), and transposed-convolution upsampling
initialised to bilinear.

Two alignments give an output of exactly the input's H x W:

* ``reference_alignment=True`` is the Caffe reference: conv1_1 pads by 100,
  fc6 has no padding, and the score maps are cropped with the reference's
  offsets (5 for pool4, 9 for pool3, 19 / 27 / 31 at the end).
* the default pads the input on the bottom/right to a multiple of 32, keeps
  every map "same"-sized (fc6 pads by 3), upsamples with padding f/2 so each
  upsampled pixel sits on the centre of its pooling cell, and crops back.
  Pad-100 enlarges every trunk map by 200 pixels a side, which is why the
  cheaper alignment is the default (benchmarks/bench_inference.py measures it).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from segstudio.models.registry import register_model
from segstudio.models.vgg import (
    bilinear_upsampler,
    copy_vgg16_trunk,
    init_head,
    load_torchvision_vgg16,
    vgg16_blocks,
    vgg16_fc_as_conv,
)

#: reference crop offsets: (score_pool4, score_pool3, final) per variant
_REFERENCE_OFFSETS = {32: (None, None, 19), 16: (5, None, 27), 8: (5, 9, 31)}


def _crop(x: torch.Tensor, offset: int, height: int, width: int) -> torch.Tensor:
    return x[:, :, offset : offset + height, offset : offset + width]


def _upsample_fp32(layer: nn.ConvTranspose2d, x: torch.Tensor) -> torch.Tensor:
    """Run a bilinear upsampler in fp32, outside any autocast.

    The score maps have few channels, so this costs little; under bf16
    autocast oneDNN's transposed convolution with FCN-32s's 64 x 64 kernel
    took 1041 ms on a CPU against 18.6 ms in fp32.
    """
    with torch.autocast(x.device.type, enabled=False):
        return layer(x.float())


class FCN(nn.Module):
    """Fully convolutional VGG16 network with skip fusion.

    Parameters
    ----------
    stride:
        32, 16 or 8: the finest pooling layer fused into the prediction.
    learnable_upsampling:
        Let the 2x upsampling layers learn (the paper); the final upsampling
        stays fixed bilinear. By default all are fixed (the reference).
    reference_alignment:
        The paper-faithful pad-100 + crop alignment (see the module docstring).
    """

    def __init__(
        self,
        *,
        stride: int,
        num_classes: int,
        in_channels: int,
        learnable_upsampling: bool,
        reference_alignment: bool,
    ) -> None:
        super().__init__()
        self.stride = stride
        #: shifts of the input that shift the output exactly (five 2x2 pools)
        self.input_alignment = 32
        self.reference_alignment = reference_alignment
        self.blocks = vgg16_blocks(in_channels, first_padding=100 if reference_alignment else None)
        self.pool = nn.MaxPool2d(2, stride=2, ceil_mode=True)
        self.fc6 = nn.Conv2d(512, 4096, 7, padding=0 if reference_alignment else 3)
        self.fc7 = nn.Conv2d(4096, 4096, 1)
        self.drop = nn.Dropout2d(0.5)
        self.score_fr = nn.Conv2d(4096, num_classes, 1)
        pad = (lambda f: 0) if reference_alignment else (lambda f: f // 2)
        if stride <= 16:
            self.score_pool4 = nn.Conv2d(512, num_classes, 1)
            self.upscore2 = bilinear_upsampler(num_classes, 2, padding=pad(2), learnable=learnable_upsampling)
        if stride == 8:
            self.score_pool3 = nn.Conv2d(256, num_classes, 1)
            self.upscore_pool4 = bilinear_upsampler(
                num_classes, 2, padding=pad(2), learnable=learnable_upsampling
            )
        self.upscore_final = bilinear_upsampler(num_classes, stride, padding=pad(stride), learnable=False)
        init_head(*(m for name, m in self.named_children() if name.startswith("score")))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        height, width = x.shape[-2:]
        if not self.reference_alignment:
            x = F.pad(x, (0, -width % 32, 0, -height % 32))
        features = []
        for block in self.blocks:
            x = self.pool(block(x))
            features.append(x)
        pool3, pool4 = features[2], features[3]
        x = self.drop(F.relu(self.fc6(x), inplace=True))
        x = self.drop(F.relu(self.fc7(x), inplace=True))
        score = self.score_fr(x)
        offsets = _REFERENCE_OFFSETS[self.stride]
        if self.stride <= 16:
            score = _upsample_fp32(self.upscore2, score)
            score = score + self._skip(self.score_pool4(pool4), score, offsets[0])
        if self.stride == 8:
            score = _upsample_fp32(self.upscore_pool4, score)
            score = score + self._skip(self.score_pool3(pool3), score, offsets[1])
        score = _upsample_fp32(self.upscore_final, score)
        offset = offsets[2] if self.reference_alignment else 0
        return _crop(score, offset, height, width)

    def _skip(self, skip: torch.Tensor, reference: torch.Tensor, offset: int) -> torch.Tensor:
        """Align a skip score map with the upsampled coarse one."""
        height, width = reference.shape[-2:]
        return _crop(skip, offset if self.reference_alignment else 0, height, width)

    @torch.no_grad()
    def load_imagenet(self, source: nn.Module) -> None:
        """Initialise the trunk and fc6/fc7 from a torchvision VGG16."""
        copy_vgg16_trunk(self.blocks, source)
        w6, b6, w7, b7 = vgg16_fc_as_conv(source)
        self.fc6.weight.copy_(w6)
        self.fc6.bias.copy_(b6)
        self.fc7.weight.copy_(w7)
        self.fc7.bias.copy_(b7)


def _fcn(
    stride: int,
    num_classes: int,
    in_channels: int,
    weights_backbone: str | None,
    learnable_upsampling: bool,
    reference_alignment: bool,
) -> FCN:
    source = load_torchvision_vgg16(weights_backbone)
    model = FCN(
        stride=stride,
        num_classes=num_classes,
        in_channels=in_channels,
        learnable_upsampling=learnable_upsampling,
        reference_alignment=reference_alignment,
    )
    if source is not None:
        model.load_imagenet(source)
    return model


@register_model(
    "fcn32s",
    output_stride=32,
    summary="coarse blobs; the FCN baseline (VGG16, one 32x upsampling)",
    pretrained_trunk=True,
)
def fcn32s(
    *,
    num_classes: int = 21,
    in_channels: int = 3,
    weights_backbone: str | None = None,
    learnable_upsampling: bool = False,
    reference_alignment: bool = False,
) -> FCN:
    """FCN-32s: VGG16, fc6/fc7 as convolutions, one fixed 32x bilinear upsampling."""
    return _fcn(32, num_classes, in_channels, weights_backbone, learnable_upsampling, reference_alignment)


@register_model(
    "fcn16s",
    output_stride=16,
    summary="FCN with a pool4 skip: finer boundaries than 32s",
    pretrained_trunk=True,
)
def fcn16s(
    *,
    num_classes: int = 21,
    in_channels: int = 3,
    weights_backbone: str | None = None,
    learnable_upsampling: bool = False,
    reference_alignment: bool = False,
) -> FCN:
    """FCN-16s: FCN-32s plus a skip from pool4 fused at stride 16."""
    return _fcn(16, num_classes, in_channels, weights_backbone, learnable_upsampling, reference_alignment)


@register_model(
    "fcn8s",
    output_stride=8,
    summary="FCN with pool4 + pool3 skips: the best FCN on detail",
    pretrained_trunk=True,
)
def fcn8s(
    *,
    num_classes: int = 21,
    in_channels: int = 3,
    weights_backbone: str | None = None,
    learnable_upsampling: bool = False,
    reference_alignment: bool = False,
) -> FCN:
    """FCN-8s: FCN-16s plus a skip from pool3 fused at stride 8."""
    return _fcn(8, num_classes, in_channels, weights_backbone, learnable_upsampling, reference_alignment)
