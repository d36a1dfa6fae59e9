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


def test_label_type_follows_the_class_count():
    classes = ClassList.from_names([f"c{i}" for i in range(254)])
    assert classes.label_dtype == np.uint8 and classes.unlabelled == 255
    assert classes.add("c254") == 254
    assert classes.label_dtype == np.uint16 and classes.unlabelled == 65535
    classes.remove(0)
    assert classes.label_dtype == np.uint8


def test_at_most_65534_classes_each_with_its_own_colour():
    assert MAX_CLASSES == 65534
    classes = ClassList.from_names([f"c{i}" for i in range(MAX_CLASSES)])
    assert len(classes) == MAX_CLASSES and len(set(classes.colors)) == MAX_CLASSES
    assert (255, 255, 255) not in set(classes.colors)
    with pytest.raises(InvalidArgumentError, match="65534"):
        classes.add("one too many")
    with pytest.raises(InvalidArgumentError, match="already exists"):
        ClassList.from_names(["x", "y", "X"])


def test_free_colour_skips_colours_in_use_after_recolour_and_remove():
    classes = ClassList.from_names(["a", "b"])
    palette = default_palette(4)
    classes.recolor(0, palette[2])  # now a uses colour 2, colour 0 is free
    added = classes.add("c")
    assert classes[added].color == palette[0]
    classes.remove(1)  # frees colour 1
    added = classes.add("d")
    assert classes[added].color == palette[1]
    classes.rename(2, "D")
    with pytest.raises(InvalidArgumentError):
        classes.add("d")
    classes.add("b")  # the removed name is free again


def test_lut_alpha_and_colours():
    classes = ClassList.from_names(["a", "b"], [(1, 2, 3), (4, 5, 6)])
    classes.set_visible(1, False)
    lut = classes.lut()
    assert lut.shape == (65536, 4) and lut.dtype == np.uint8
    assert lut[0].tolist() == [1, 2, 3, 255]
    assert lut[1].tolist() == [4, 5, 6, 0]
    assert lut[2].tolist() == [0, 0, 0, 0] and lut[255, 3] == 0 and lut[65535, 3] == 0
    many = ClassList.from_names([f"c{i}" for i in range(300)])
    assert many.lut()[299].tolist() == [*default_palette(300)[299], 255]
    assert many.lut()[300:].max() == 0


def test_removal_mapping_and_remove():
    classes = ClassList.from_names(["bg", "a", "b", "c"])
    to_background = classes.removal_mapping(2, replacement=0)
    assert to_background.dtype == np.uint8 and to_background.shape == (256,)
    # values without a class (4 and up) become unlabelled
    assert to_background[:5].tolist() == [0, 1, 0, 2, 255] and to_background[255] == 255
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


def test_removal_mapping_across_the_uint16_boundary():
    classes = ClassList.from_names([f"c{i}" for i in range(256)])  # uint16, 255 is a class
    mapping = classes.removal_mapping(10, replacement=255)
    assert mapping.shape == (65536,) and mapping.dtype == np.uint16  # 255 classes left: still uint16
    assert mapping[[9, 10, 11, 255, 256, 65535]].tolist() == [9, 254, 10, 254, 65535, 65535]
    classes.remove(10)
    down = classes.removal_mapping(0)  # 255 -> 254 classes: to uint8
    assert down.shape == (65536,) and down.dtype == np.uint8
    assert down[[0, 1, 254, 255, 65535]].tolist() == [255, 0, 253, 255, 255]
    classes.remove(0)
    up_again = classes.removal_mapping(3)
    assert up_again.shape == (256,) and up_again.dtype == np.uint8
