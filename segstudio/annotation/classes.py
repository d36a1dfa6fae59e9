"""The label classes of a project: names, colours and visibility.

Class ``i`` is label value ``i`` in the label maps. Maps are uint8 (255 =
unlabelled) while there are at most 254 classes and uint16 (65535 =
unlabelled) beyond, up to :data:`MAX_CLASSES`; see
:func:`segstudio.io.masks.label_dtype`.
"""

from __future__ import annotations

import functools
import logging
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, overload

import numpy as np

from segstudio.errors import InvalidArgumentError
from segstudio.io.masks import MAX_CLASSES, UNLABELLED_16, default_palette, label_dtype, unlabelled_for

log = logging.getLogger(__name__)

__all__ = ["MAX_CLASSES", "ClassList", "LabelClass"]

_LUT_SIZE = UNLABELLED_16 + 1


@functools.lru_cache(maxsize=1)
def _palette() -> tuple[Color, ...]:
    return tuple(default_palette(MAX_CLASSES))

Color = tuple[int, int, int]


def _check_color(color: Any) -> Color:
    try:
        rgb = tuple(int(c) for c in color)
    except (TypeError, ValueError):
        rgb = ()
    if len(rgb) != 3 or not all(0 <= c <= 255 for c in rgb):
        raise InvalidArgumentError(f"a class colour must be an RGB triple of 0..255, got {color!r}")
    return rgb  # type: ignore[return-value]


def _check_name(name: Any) -> str:
    if not isinstance(name, str):
        raise InvalidArgumentError(f"a class name must be text, got {name!r}")
    name = name.strip()
    if not name:
        raise InvalidArgumentError("a class name must not be empty")
    return name


@dataclass
class LabelClass:
    """One class: its name, display colour and whether it is shown."""

    name: str
    color: Color
    visible: bool = True

    def to_dict(self) -> dict[str, Any]:
        """JSON-friendly form, for project files."""
        return {"name": self.name, "color": list(self.color), "visible": bool(self.visible)}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> LabelClass:
        """Inverse of :meth:`to_dict`; ``visible`` defaults to True.

        Raises
        ------
        InvalidArgumentError
            Missing name or colour, or values of the wrong kind.
        """
        if not isinstance(data, Mapping):
            raise InvalidArgumentError(f"a class must be a mapping, got {type(data).__name__}")
        if "name" not in data or "color" not in data:
            raise InvalidArgumentError(f"a class needs a name and a color, got {dict(data)!r}")
        visible = data.get("visible", True)
        if not isinstance(visible, bool):
            raise InvalidArgumentError(f"class visibility must be true or false, got {visible!r}")
        return cls(_check_name(data["name"]), _check_color(data["color"]), visible)


class ClassList(Sequence[LabelClass]):
    """The ordered classes of a project; position ``i`` is label value ``i``.

    The list does its own bookkeeping only: removing a class does not touch
    any label map (:meth:`Document.remap_labels` does that, with
    :meth:`removal_mapping` as the lookup table).
    """

    def __init__(self, classes: Iterable[LabelClass] = ()) -> None:
        self._classes: list[LabelClass] = []
        # kept beside the list so that adding one of thousands of classes
        # does not compare it with all the others
        self._name_keys: set[str] = set()
        self._color_counts: Counter[Color] = Counter()
        for item in classes:
            self.add(item.name, item.color)
            self._classes[-1].visible = bool(item.visible)

    @overload
    def __getitem__(self, index: int) -> LabelClass: ...

    @overload
    def __getitem__(self, index: slice) -> list[LabelClass]: ...

    def __getitem__(self, index):
        return self._classes[index]

    def __len__(self) -> int:
        return len(self._classes)

    def __iter__(self) -> Iterator[LabelClass]:
        return iter(self._classes)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, ClassList):
            return NotImplemented
        return self._classes == other._classes

    def __repr__(self) -> str:
        return f"ClassList({self.names!r})"

    @property
    def names(self) -> list[str]:
        return [c.name for c in self._classes]

    @property
    def colors(self) -> list[Color]:
        return [c.color for c in self._classes]

    def _index(self, i: int) -> int:
        if not isinstance(i, (int, np.integer)) or not 0 <= i < len(self._classes):
            raise InvalidArgumentError(f"no class with index {i} (there are {len(self._classes)})")
        return int(i)

    def _unique_name(self, name: Any, skip: int | None = None) -> str:
        name = _check_name(name)
        key = name.casefold()
        if key in self._name_keys and (skip is None or self._classes[skip].name.casefold() != key):
            existing = next(c.name for c in self._classes if c.name.casefold() == key)
            raise InvalidArgumentError(f"a class named {existing!r} already exists")
        return name

    def _free_color(self) -> Color:
        """The first default-palette colour no class uses yet."""
        # n classes use at most n colours, so one of the first n + 1 is free;
        # the n-th is the usual answer
        palette = _palette()
        guess = palette[len(self._classes)]
        if self._color_counts[guess] == 0:
            return guess
        return next(color for color in palette if self._color_counts[color] == 0)

    def add(self, name: str, color: Sequence[int] | None = None) -> int:
        """Append a class and return its index (= its label value).

        Parameters
        ----------
        name:
            Non-empty and unique (ignoring case); surrounding spaces are removed.
        color:
            RGB; by default the first colour of :func:`default_palette` that
            no other class uses.

        Raises
        ------
        InvalidArgumentError
            Empty or duplicate name, bad colour, or already :data:`MAX_CLASSES` classes.
        """
        if len(self._classes) >= MAX_CLASSES:
            raise InvalidArgumentError(f"a project holds at most {MAX_CLASSES} classes")
        name = self._unique_name(name)
        rgb = self._free_color() if color is None else _check_color(color)
        self._classes.append(LabelClass(name, rgb))
        self._name_keys.add(name.casefold())
        self._color_counts[rgb] += 1
        return len(self._classes) - 1

    def rename(self, i: int, name: str) -> None:
        """Give class *i* a new (unique, non-empty) name."""
        index = self._index(i)
        name = self._unique_name(name, skip=index)
        self._name_keys.discard(self._classes[index].name.casefold())
        self._name_keys.add(name.casefold())
        self._classes[index].name = name

    def recolor(self, i: int, color: Sequence[int]) -> None:
        """Give class *i* a new RGB colour."""
        index, rgb = self._index(i), _check_color(color)
        self._color_counts[self._classes[index].color] -= 1
        self._color_counts[rgb] += 1
        self._classes[index].color = rgb

    def set_visible(self, i: int, visible: bool) -> None:
        """Show or hide class *i* in the label layer."""
        self._classes[self._index(i)].visible = bool(visible)

    def remove(self, i: int) -> None:
        """Delete class *i*; the classes after it move down by one index."""
        index = self._index(i)
        removed = self._classes.pop(index)
        self._name_keys.discard(removed.name.casefold())
        self._color_counts[removed.color] -= 1

    @property
    def label_dtype(self) -> np.dtype:
        """Type of this project's label maps: uint8 up to 254 classes, else uint16."""
        return label_dtype(len(self._classes))

    @property
    def unlabelled(self) -> int:
        """Value of unlabelled pixels in this project's label maps (255 or 65535)."""
        return unlabelled_for(self.label_dtype)

    def removal_mapping(self, i: int, replacement: int | None = None) -> np.ndarray:
        """Lookup table that relabels a map after :meth:`remove` of class *i*.

        Parameters
        ----------
        i:
            Index of the class being removed (call this before :meth:`remove`).
        replacement:
            Class (index before the removal) that takes over the removed
            class's pixels; None leaves them unlabelled.

        Returns
        -------
        numpy.ndarray
            One entry per value of the current label type (256 for uint8,
            65536 for uint16), of the label type after the removal (a
            project going from 255 classes to 254 goes from uint16 to
            uint8): ``i`` goes to the replacement (shifted down if it lay
            above ``i``) or unlabelled, higher classes shift down by one,
            unlabelled (and any value without a class) becomes unlabelled.
        """
        index = self._index(i)
        before = self.label_dtype
        after = label_dtype(len(self._classes) - 1)
        old_unlabelled, new_unlabelled = unlabelled_for(before), unlabelled_for(after)
        mapping = np.arange(old_unlabelled + 1, dtype=np.int64)
        mapping[index + 1 :] -= 1
        mapping[len(self._classes) :] = new_unlabelled  # no class there: nothing to keep
        if replacement is None:
            mapping[index] = new_unlabelled
        else:
            target = self._index(replacement)
            if target == index:
                raise InvalidArgumentError("a class cannot replace itself")
            mapping[index] = target - 1 if target > index else target
        return mapping.astype(after)

    def lut(self) -> np.ndarray:
        """Colour lookup table for a label map, ``(65536, 4)`` uint8 RGBA.

        Entry ``i`` is class ``i``'s colour, opaque when the class is visible
        and fully transparent when hidden; entries without a class and the
        unlabelled values (255 in a uint8 map, 65535 in a uint16 one) are
        transparent black. One size serves both label types (and a model's
        uint16 prediction); indexing it costs the same as a 256-entry table.
        """
        table = np.zeros((_LUT_SIZE, 4), np.uint8)
        for index, item in enumerate(self._classes):
            table[index, :3] = item.color
            table[index, 3] = 255 if item.visible else 0
        return table

    def to_list(self) -> list[dict[str, Any]]:
        """JSON-friendly form, for project files."""
        return [c.to_dict() for c in self._classes]

    @classmethod
    def from_list(cls, data: Iterable[Mapping[str, Any]]) -> ClassList:
        """Inverse of :meth:`to_list`.

        Raises
        ------
        InvalidArgumentError
            A malformed entry, duplicate names or too many classes.
        """
        if isinstance(data, (str, bytes, Mapping)) or not isinstance(data, Iterable):
            raise InvalidArgumentError(f"classes must be a list, got {type(data).__name__}")
        return cls(LabelClass.from_dict(item) for item in data)

    @classmethod
    def from_names(cls, names: Iterable[str], colors: Iterable[Sequence[int]] | None = None) -> ClassList:
        """Classes from names (and optional colours, default palette otherwise)."""
        result = cls()
        color_list = list(colors) if colors is not None else []
        for position, name in enumerate(names):
            result.add(name, color_list[position] if position < len(color_list) else None)
        return result
