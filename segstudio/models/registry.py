"""The model registry: names other tools call, and what each model is.

Builders are keyword-only functions returning an ``nn.Module`` whose forward
maps ``N x in_channels x H x W`` to class logits ``N x num_classes x H x W``.
"""

from __future__ import annotations

import difflib
import inspect
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from segstudio.errors import InvalidArgumentError

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass(frozen=True)
class ModelSpec:
    """What the registry knows of one model family member."""

    name: str
    builder: Callable[..., nn.Module]
    output_stride: int
    summary: str
    #: builder arguments for the parameter table (the paper's default setting)
    report_args: Mapping[str, Any] = field(default_factory=dict)
    #: input normalisation the model expects (after scaling to 0..1)
    mean: tuple[float, ...] = IMAGENET_MEAN
    std: tuple[float, ...] = IMAGENET_STD
    #: builder arguments of a model trained from scratch by default (``segstudio
    #: train --model NAME``, the studio's first model): measured to converge in
    #: minutes on a CPU; the builder's own defaults stay the paper's
    train_args: Mapping[str, Any] = field(default_factory=dict)
    #: built on a VGG16 trunk (no normalisation layers) that starts from ImageNet
    #: weights with ``weights_backbone="imagenet"``; from scratch it learns slowly
    pretrained_trunk: bool = False


_REGISTRY: dict[str, ModelSpec] = {}


def register_model(
    name: str,
    *,
    output_stride: int,
    summary: str,
    report_args: Mapping[str, Any] | None = None,
    mean: tuple[float, ...] = IMAGENET_MEAN,
    std: tuple[float, ...] = IMAGENET_STD,
    train_args: Mapping[str, Any] | None = None,
    pretrained_trunk: bool = False,
) -> Callable[[Callable[..., nn.Module]], Callable[..., nn.Module]]:
    """Decorator that adds a builder to the registry under ``name``."""

    def add(builder: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
        if name in _REGISTRY:
            raise RuntimeError(f"model {name!r} registered twice")
        _REGISTRY[name] = ModelSpec(
            name=name,
            builder=builder,
            output_stride=output_stride,
            summary=summary,
            report_args=dict(report_args or {"num_classes": 21, "in_channels": 3}),
            mean=mean,
            std=std,
            train_args=dict(train_args or {}),
            pretrained_trunk=pretrained_trunk,
        )
        return builder

    return add


def list_models() -> list[str]:
    """Names of all registered models, in registration order."""
    return list(_REGISTRY)


def get_spec(name: str) -> ModelSpec:
    """The :class:`ModelSpec` of ``name``; an unknown name suggests close ones."""
    try:
        return _REGISTRY[name]
    except KeyError:
        close = difflib.get_close_matches(name, _REGISTRY, n=3)
        hint = f" Did you mean {', '.join(close)}?" if close else ""
        raise InvalidArgumentError(
            f"unknown model {name!r}; known models: {', '.join(_REGISTRY)}.{hint}"
        ) from None


def resolve_args(name: str, kwargs: Mapping[str, Any]) -> dict[str, Any]:
    """The builder's full keyword arguments: ``kwargs`` plus its defaults.

    Unknown keywords raise :class:`InvalidArgumentError` naming them, so a typo
    never passes silently.
    """
    signature = inspect.signature(get_spec(name).builder)
    unknown = sorted(set(kwargs) - set(signature.parameters))
    if unknown:
        raise InvalidArgumentError(
            f"model {name!r} takes no argument(s) {', '.join(unknown)}; "
            f"it takes {', '.join(signature.parameters)}"
        )
    bound = signature.bind(**kwargs)
    bound.apply_defaults()
    return dict(bound.arguments)


def get_model(name: str, **kwargs: Any) -> nn.Module:
    """Build the registered model ``name`` with the given builder arguments.

    The resolved arguments are kept on the module as ``segstudio_arch`` so that
    a checkpoint can record exactly how to rebuild it.
    """
    args = resolve_args(name, kwargs)
    model = get_spec(name).builder(**args)
    recorded = {k: v for k, v in args.items() if k != "weights_backbone"}
    model.segstudio_arch = {"name": name, "args": recorded}
    return model


#: builder arguments that ask for pretrained weights (downloaded on first use)
PRETRAINED_ARGS = ("weights_backbone",)


def get_model_for_weights(name: str, **kwargs: Any) -> nn.Module:
    """Build ``name`` to receive a state dict: every pretrained-weight argument
    (:data:`PRETRAINED_ARGS`) is set to ``None`` whatever *kwargs* say, so
    nothing is downloaded for weights that are about to be replaced."""
    args = {k: v for k, v in kwargs.items() if k not in PRETRAINED_ARGS}
    accepted = inspect.signature(get_spec(name).builder).parameters
    args.update({k: None for k in PRETRAINED_ARGS if k in accepted})
    return get_model(name, **args)


def model_size(name: str, **kwargs: Any) -> tuple[int, int]:
    """``(bytes, parameters)`` of the model ``name`` builds with *kwargs*: the
    bytes of its weights and buffers, and its parameter count.

    The model is built on the ``meta`` device (no memory, no initialisation,
    no pretrained weights), so a network of many gigabytes costs nothing.

    Raises
    ------
    InvalidArgumentError
        From the builder, for arguments it refuses.
    """
    with torch.device("meta"):
        model = get_model_for_weights(name, **kwargs)
    tensors = model.state_dict().values()
    size = sum(t.numel() * t.element_size() for t in tensors)
    return size, sum(p.numel() for p in model.parameters())


def get_training_model(name: str, *, paper: bool = False, **kwargs: Any) -> nn.Module:
    """A model to train from scratch: the registry's training defaults for
    ``name`` (:attr:`ModelSpec.train_args`), overridden by ``kwargs``;
    ``paper=True`` keeps the builder's own defaults (the paper's network)."""
    args = {} if paper else dict(get_spec(name).train_args)
    args.update(kwargs)
    return get_model(name, **args)


def count_parameters(model: nn.Module) -> tuple[int, int]:
    """``(learned, fixed)`` parameter counts.

    Learned parameters have ``requires_grad``; fixed ones (bilinear upsampling
    kept at its initialisation) do not. Buffers such as BatchNorm running
    statistics are not parameters and are not counted.
    """
    learned = fixed = 0
    for parameter in model.parameters():
        if parameter.requires_grad:
            learned += parameter.numel()
        else:
            fixed += parameter.numel()
    return learned, fixed


@dataclass(frozen=True)
class ModelReport:
    name: str
    params_learned: int
    params_fixed: int
    output_stride: int
    summary: str
    args: Mapping[str, Any]

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "params_learned": self.params_learned,
            "params_fixed": self.params_fixed,
            "output_stride": self.output_stride,
            "summary": self.summary,
            "num_classes": self.args.get("num_classes"),
            "in_channels": self.args.get("in_channels"),
        }


def describe_models() -> list[ModelReport]:
    """Parameter counts of every model in its reported setting.

    Models are built on the ``meta`` device: no memory is allocated and no
    weights are initialised, so this takes a fraction of a second even for
    the 250-million-parameter DeconvNet.
    """
    reports = []
    for spec in _REGISTRY.values():
        with torch.device("meta"):
            model = get_model(spec.name, **spec.report_args)
        learned, fixed = count_parameters(model)
        reports.append(
            ModelReport(spec.name, learned, fixed, spec.output_stride, spec.summary, spec.report_args)
        )
    return reports
