"""Freezing a model's backbone so that only its head / decoder trains.

Which part is the backbone depends on the family: the VGG16 trunk
(``blocks``) of FCN, DeepLab and DeconvNet; the encoder (``down``) of U-Net;
each member's backbone in an ensemble. Frozen parts keep their weights and,
because they stay in eval mode while the rest trains, their BatchNorm
running statistics too.
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import nn

from segstudio.errors import InvalidArgumentError


def backbone_modules(model: nn.Module) -> list[nn.Module]:
    """The backbone sub-modules of a registered model.

    Raises
    ------
    InvalidArgumentError
        The model has no part known as its backbone.
    """
    members = getattr(model, "members", None)
    if isinstance(members, nn.ModuleList):
        return [part for member in members for part in backbone_modules(member)]
    for name in ("blocks", "down"):
        part = getattr(model, name, None)
        if isinstance(part, nn.Module):
            return [part]
    raise InvalidArgumentError(f"{type(model).__name__} has no backbone that could be frozen")


@dataclass
class FrozenBackbone:
    """What :func:`freeze_backbone` changed, to keep it frozen and undo it."""

    modules: list[nn.Module]
    #: each parameter's ``requires_grad`` before freezing
    previous: list[tuple[nn.Parameter, bool]]

    def keep_frozen_in_eval(self) -> None:
        """Put the frozen modules back in eval mode (call after ``model.train()``)."""
        for module in self.modules:
            module.eval()


def freeze_backbone(model: nn.Module) -> FrozenBackbone:
    """Stop gradients to the backbone; returns a handle to undo it."""
    modules = backbone_modules(model)
    previous = []
    for module in modules:
        for parameter in module.parameters():
            previous.append((parameter, parameter.requires_grad))
            parameter.requires_grad_(False)
    return FrozenBackbone(modules, previous)


def restore_requires_grad(frozen: FrozenBackbone) -> None:
    """Give the backbone's parameters their ``requires_grad`` back."""
    for parameter, flag in frozen.previous:
        parameter.requires_grad_(flag)
