"""The class list: validation, colours, lookup tables, removal mapping."""

import numpy as np
import pytest

from segstudio.annotation.classes import MAX_CLASSES, ClassList, LabelClass
from segstudio.errors import InvalidArgumentError
from segstudio.io.masks import default_palette


def test_add_uses_default_palette_and_validates_names():
    classes = ClassList()
    assert classes.add("background") == 0
    assert classes.add("cell") == 1
    assert classes.add("nucleus", (10, 20, 30)) == 2
    assert classes.colors == [default_palette(2)[0], default_palette(2)[1], (10, 20, 30)]
    assert classes.names == ["background", "cell", "nucleus"]
    assert len(classes) == 3 and classes[1].name == "cell" and [c.name for c in classes][-1] == "nucleus"
    for bad in ("", "   ", "Cell"):
        with pytest.raises(InvalidArgumentError):
            classes.add(bad)
    with pytest.raises(InvalidArgumentError):
        classes.add("x", (300, 0, 0))
    with pytest.raises(InvalidArgumentError):
        classes.rename(0, "cell")
    classes.rename(1, "Cell")  # its own name in another case is fine
    assert classes.names[1] == "Cell"


def test_at_most_254_classes():
    classes = ClassList.from_names([f"c{i}" for i in range(MAX_CLASSES)])
    assert len(classes) == 254 and len(set(classes.colors)) == 254
    with pytest.raises(InvalidArgumentError):
        classes.add("one too many")


def test_lut_alpha_and_colours():
    classes = ClassList.from_names(["a", "b"], [(1, 2, 3), (4, 5, 6)])
    classes.set_visible(1, False)
    lut = classes.lut()
    assert lut.shape == (256, 4) and lut.dtype == np.uint8
    assert lut[0].tolist() == [1, 2, 3, 255]
    assert lut[1].tolist() == [4, 5, 6, 0]
    assert lut[2].tolist() == [0, 0, 0, 0] and lut[255, 3] == 0


def test_removal_mapping_and_remove():
    classes = ClassList.from_names(["bg", "a", "b", "c"])
    to_background = classes.removal_mapping(2, replacement=0)
    assert to_background[:5].tolist() == [0, 1, 0, 2, 4 - 1] and to_background[255] == 255
    unlabelled = classes.removal_mapping(1)
    assert unlabelled[:4].tolist() == [0, 255, 1, 2]
    into_later = classes.removal_mapping(1, replacement=3)
    assert into_later[1] == 2  # class 3 becomes 2 after the removal
    classes.remove(2)
    assert classes.names == ["bg", "a", "c"]
    with pytest.raises(InvalidArgumentError):
        classes.remove(5)


def test_round_trip_through_dicts():
    classes = ClassList.from_names(["bg", "tumour"], [(0, 0, 0), (200, 10, 10)])
    classes.set_visible(0, False)
    again = ClassList.from_list(classes.to_list())
    assert again == classes and again[0].visible is False
    assert LabelClass.from_dict({"name": "x", "color": [1, 2, 3]}).visible is True
    with pytest.raises(InvalidArgumentError):
        ClassList.from_list([{"name": "x"}])
    with pytest.raises(InvalidArgumentError):
        ClassList.from_list([{"name": "x", "color": [1, 2, 3]}, {"name": "X", "color": [1, 2, 3]}])
