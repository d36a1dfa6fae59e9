"""Ensembles: the average of the members' class probabilities.

The DeconvNet paper's EDeconvNet averages FCN-8s and DeconvNet this way. The
forward pass returns the log of the averaged probabilities, which are valid
logits: their softmax is the averaged probability map.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import nn

from segstudio.errors import InvalidArgumentError
from segstudio.models.registry import get_model, register_model

#: most members an ensemble may have: two or three is what papers average;
#: each is a whole network on the device and in every forward pass
MAX_MEMBERS = 8


class Ensemble(nn.Module):
    """Averages the softmax probabilities of two or more models."""

    def __init__(self, members: Sequence[nn.Module]) -> None:
        super().__init__()
        if len(members) < 2:
            raise InvalidArgumentError("an ensemble needs at least two models")
        self.members = nn.ModuleList(members)
        self.input_alignment = math.lcm(*(getattr(m, "input_alignment", 32) for m in members))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        probabilities = None
        for member in self.members:
            p = member(x).float().softmax(dim=1)
            probabilities = p if probabilities is None else probabilities + p
        probabilities = probabilities / len(self.members)
        return probabilities.clamp_min(torch.finfo(probabilities.dtype).tiny).log()


@register_model(
    "ensemble",
    output_stride=8,
    summary="averages class probabilities of several models (default FCN-8s + DeconvNet = EDeconvNet)",
)
def ensemble(
    *,
    num_classes: int = 21,
    in_channels: int = 3,
    weights_backbone: str | None = None,
    members: Sequence[str] = ("fcn8s", "deconvnet"),
) -> Ensemble:
    """An ensemble of registered models, each built with the same classes and channels."""
    if isinstance(members, str | bytes) or not isinstance(members, Sequence) \
            or not all(isinstance(name, str) for name in members):
        raise InvalidArgumentError(f"ensemble members must be a list of model names, got {members!r:.60}")
    names = list(members)
    if len(names) > MAX_MEMBERS:
        raise InvalidArgumentError(f"an ensemble has at most {MAX_MEMBERS} members, got {len(names)}")
    if "ensemble" in names:
        raise InvalidArgumentError("an ensemble cannot contain another ensemble")
    return Ensemble(
        [
            get_model(name, num_classes=num_classes, in_channels=in_channels, weights_backbone=weights_backbone)
            for name in names
        ]
    )
