"""The label classes of a project: names, colours and visibility.

Class ``i`` is label value ``i`` in the uint8 label maps; value 255 means
unlabelled, so at most :data:`MAX_CLASSES` classes exist.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, overload

import numpy as np

from segstudio.errors import InvalidArgumentError
from segstudio.io.masks import UNLABELLED, default_palette

log = logging.getLogger(__name__)

MAX_CLASSES = 254
"""Most classes a uint8 label map holds (255 is unlabelled, 254 kept free)."""

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
        for index, existing in enumerate(self._classes):
            if index != skip and existing.name.casefold() == name.casefold():
                raise InvalidArgumentError(f"a class named {existing.name!r} already exists")
        return name

    def _free_color(self) -> Color:
        """The first default-palette colour no class uses yet."""
        used = set(self.colors)
        palette = default_palette(UNLABELLED)
        for color in palette:
            if color not in used:
                return color
        return palette[len(self._classes)]

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
        return len(self._classes) - 1

    def rename(self, i: int, name: str) -> None:
        """Give class *i* a new (unique, non-empty) name."""
        index = self._index(i)
        self._classes[index].name = self._unique_name(name, skip=index)

    def recolor(self, i: int, color: Sequence[int]) -> None:
        """Give class *i* a new RGB colour."""
        self._classes[self._index(i)].color = _check_color(color)

    def set_visible(self, i: int, visible: bool) -> None:
        """Show or hide class *i* in the label layer."""
        self._classes[self._index(i)].visible = bool(visible)

    def remove(self, i: int) -> None:
        """Delete class *i*; the classes after it move down by one index."""
        del self._classes[self._index(i)]

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
            256 uint8 entries: ``i`` goes to the replacement (shifted down if
            it lay above ``i``) or 255, higher classes shift down by one,
            everything else stays.
        """
        index = self._index(i)
        mapping = np.arange(256, dtype=np.uint8)
        mapping[index + 1 : UNLABELLED] -= 1
        if replacement is None:
            mapping[index] = UNLABELLED
        else:
            target = self._index(replacement)
            if target == index:
                raise InvalidArgumentError("a class cannot replace itself")
            mapping[index] = target - 1 if target > index else target
        return mapping

    def lut(self) -> np.ndarray:
        """Colour lookup table for a label map, ``(256, 4)`` uint8 RGBA.

        Entry ``i`` is class ``i``'s colour, opaque when the class is visible
        and fully transparent when hidden; entries without a class and 255
        (unlabelled) are transparent black.
        """
        table = np.zeros((256, 4), np.uint8)
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
