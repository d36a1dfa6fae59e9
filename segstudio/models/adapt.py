"""Giving a trained model another set of classes, keeping what it learned.

A user adds a class to a project, deletes or renames one, or reorders them:
the model's classifier no longer fits. :func:`adapt_to_classes` rebuilds the
same architecture for the new classes and carries over every weight it can:

* tensors that do not depend on the class count (the backbone, the decoder,
  BatchNorm statistics) are copied as they are;
* tensors with the class count in one dimension (a classifier's weight and
  bias, FCN's skip score layers) get the rows of the classes whose names
  match (case-insensitive), so a kept class keeps its learned output; the
  rows of new classes keep the builder's initialisation;
* tensors with the class count in two dimensions (FCN's C x C bilinear
  upsamplers, which mix classes) keep the builder's initialisation.

Which dimensions hold the class count is found by building the architecture
a second time, with one more class, on the ``meta`` device (no memory, no
initialisation), and comparing shapes: nothing here knows the families by
name, so every registered model, ensembles included, is handled alike.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from segstudio.errors import InvalidArgumentError
from segstudio.models.registry import get_model


@dataclass
class AdaptReport:
    """What :func:`adapt_to_classes` kept and what starts afresh.

    Attributes
    ----------
    kept:
        Classes of the new list that the old model knew (new spelling,
        in the new order); their outputs are carried over.
    new:
        Classes the old model did not know; their outputs start from the
        builder's initialisation.
    dropped:
        Classes of the old model that are not in the new list.
    class_tensors:
        Names of the tensors whose kept classes' rows were copied.
    reinitialised:
        Names of the tensors left entirely at the builder's initialisation.
    mapping:
        ``(new_index, old_index)`` for every kept class.
    """

    kept: list[str] = field(default_factory=list)
    new: list[str] = field(default_factory=list)
    dropped: list[str] = field(default_factory=list)
    class_tensors: list[str] = field(default_factory=list)
    reinitialised: list[str] = field(default_factory=list)
    mapping: list[tuple[int, int]] = field(default_factory=list)

    @property
    def changed(self) -> bool:
        """Whether the classes differ in anything but the spelling of names."""
        return bool(self.new or self.dropped) or any(new != old for new, old in self.mapping)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready summary (for logs, messages and provenance)."""
        return {
            "kept": list(self.kept), "new": list(self.new), "dropped": list(self.dropped),
            "class_tensors": list(self.class_tensors), "reinitialised": list(self.reinitialised),
            "mapping": [list(pair) for pair in self.mapping],
        }


def _check_names(names: Sequence[str], what: str) -> list[str]:
    names = list(names)
    if not names:
        raise InvalidArgumentError(f"the {what} class list is empty")
    if not all(isinstance(n, str) and n.strip() for n in names):
        raise InvalidArgumentError(f"the {what} class names must be non-empty text, got {names!r}")
    return names


def class_mapping(class_names_old: Sequence[str], class_names_new: Sequence[str]) -> list[tuple[int, int]]:
    """``(new_index, old_index)`` of every new class whose name an old class has.

    Names match case-insensitively (``casefold``); of two old classes with
    the same name, the first one counts.
    """
    old_index: dict[str, int] = {}
    for i, name in enumerate(class_names_old):
        old_index.setdefault(name.casefold(), i)
    return [(j, old_index[name.casefold()]) for j, name in enumerate(class_names_new)
            if name.casefold() in old_index]


def adapt_to_classes(
    model: nn.Module, class_names_old: Sequence[str], class_names_new: Sequence[str]
) -> tuple[nn.Module, AdaptReport]:
    """The same architecture for ``class_names_new``, with ``model``'s weights where they fit.

    The new model is built through the registry with the old builder
    arguments but ``num_classes=len(class_names_new)``; its fresh parameters
    come from torch's global random generator, exactly as
    ``get_model(name, **args)`` would draw them. It is put on the old
    model's device and in its train/eval mode; ``model`` is not changed.

    Parameters
    ----------
    model:
        A model built by :func:`segstudio.models.get_model` (or loaded from
        a checkpoint).
    class_names_old:
        The classes ``model`` predicts, in output-channel order.
    class_names_new:
        The classes the new model must predict.

    Returns
    -------
    (model, report)
        The new model and an :class:`AdaptReport`.

    Raises
    ------
    InvalidArgumentError
        The model was not built through the registry, the old names do not
        match its class count, or a list is empty.
    """
    arch = getattr(model, "segstudio_arch", None)
    if arch is None:
        raise InvalidArgumentError("this model was not built through the model registry; "
                                   "its architecture is unknown, so it cannot be given other classes")
    old_names = _check_names(class_names_old, "model's")
    new_names = _check_names(class_names_new, "new")
    args = dict(arch["args"])
    if int(args["num_classes"]) != len(old_names):
        raise InvalidArgumentError(f"the model predicts {args['num_classes']} classes but "
                                   f"{len(old_names)} class names were given for it")
    # the real build first: it draws from the RNG exactly as get_model alone would
    adapted = get_model(arch["name"], **{**args, "num_classes": len(new_names)})
    with torch.device("meta"):
        probe = get_model(arch["name"], **{**args, "num_classes": len(new_names) + 1})
    mapping = class_mapping(old_names, new_names)
    kept_new = {j for j, _ in mapping}
    kept_old = {i for _, i in mapping}
    report = AdaptReport(
        kept=[new_names[j] for j, _ in mapping],
        new=[name for j, name in enumerate(new_names) if j not in kept_new],
        dropped=[name for i, name in enumerate(old_names) if i not in kept_old],
        mapping=mapping,
    )
    old_state = model.state_dict()
    probe_state = probe.state_dict()
    new_index = torch.tensor([j for j, _ in mapping], dtype=torch.long)
    old_index = torch.tensor([i for _, i in mapping], dtype=torch.long)
    with torch.no_grad():
        for name, target in adapted.state_dict().items():
            source = old_state.get(name)
            class_dims = [d for d, (a, b) in enumerate(zip(target.shape, probe_state[name].shape, strict=True))
                          if a != b]
            if source is None or source.dim() != target.dim():
                report.reinitialised.append(name)
            elif not class_dims:
                if source.shape == target.shape:
                    target.copy_(source.to(target.dtype))
                else:
                    report.reinitialised.append(name)
            elif len(class_dims) == 1 and _fits_but_classes(source, target, class_dims[0], len(old_names)):
                dim = class_dims[0]
                if mapping:
                    rows = source.detach().to("cpu").index_select(dim, old_index)
                    target.index_copy_(dim, new_index, rows.to(target.dtype))
                report.class_tensors.append(name)
            else:
                # classes mixed with classes (C x C upsamplers): the builder's init
                report.reinitialised.append(name)
    device = next((t.device for t in old_state.values()), torch.device("cpu"))
    adapted.to(device)
    adapted.train(model.training)
    return adapted, report


def _fits_but_classes(source: torch.Tensor, target: torch.Tensor, dim: int, old_count: int) -> bool:
    """Whether ``source`` is ``target`` with ``old_count`` classes in dimension ``dim``."""
    return source.shape[dim] == old_count and all(
        a == b for d, (a, b) in enumerate(zip(source.shape, target.shape, strict=True)) if d != dim
    )
