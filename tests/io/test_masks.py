"""Tests for segstudio.io.masks: indexed PNG masks and atomic writes."""

from __future__ import annotations

import logging
import os
import stat

import numpy as np
import pytest
from PIL import Image

from segstudio.errors import ExportError, InvalidArgumentError, UnreadableInputError
from segstudio.io import masks
from segstudio.io.masks import (
    UNLABELLED,
    atomic_write_bytes,
    default_palette,
    read_mask,
    read_palette,
    write_indexed_png,
)


def _labels(seed: int = 0, shape=(21, 34), classes: int = 5) -> np.ndarray:
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, classes, size=shape).astype(np.uint8)
    labels[rng.random(shape) < 0.1] = UNLABELLED
    return labels


# --------------------------------------------------------------------------
# Palette
# --------------------------------------------------------------------------


def test_default_palette_start_matches_voc_colours():
    palette = default_palette(21)
    assert len(palette) == 21
    assert palette[0] == (0, 0, 0)
    assert palette[1:8] == [
        (128, 0, 0), (0, 128, 0), (128, 128, 0), (0, 0, 128), (128, 0, 128), (0, 128, 128), (128, 128, 128),
    ]
    assert palette[8] == (64, 0, 0)
    assert palette[15] == (192, 128, 128)
    assert palette[20] == (0, 64, 128)


def test_default_palette_is_distinct_and_deterministic():
    big = default_palette(UNLABELLED)
    assert len(set(big)) == UNLABELLED
    assert (255, 255, 255) not in big
    assert default_palette(30) == big[:30]
    assert all(isinstance(c, int) and 0 <= c <= 255 for colour in big for c in colour)
    assert default_palette(0) == []
    with pytest.raises(InvalidArgumentError):
        default_palette(65535)
    with pytest.raises(InvalidArgumentError):
        default_palette(-1)


# --------------------------------------------------------------------------
# Indexed PNG round trip
# --------------------------------------------------------------------------


def test_indexed_png_round_trip(tmp_path):
    labels = _labels()
    palette = default_palette(5)
    path = tmp_path / "deep" / "er" / "mask.png"
    assert write_indexed_png(path, labels, palette) == path
    with Image.open(path) as img:
        assert img.format == "PNG" and img.mode == "P"
        np.testing.assert_array_equal(np.array(img), labels)
        flat = img.getpalette("RGB")
    entries = [tuple(flat[i : i + 3]) for i in range(0, len(flat), 3)]
    assert entries[:5] == palette
    assert entries[255] == (255, 255, 255)
    assert all(e == (0, 0, 0) for e in entries[5:255])

    back = read_mask(path)
    assert back.dtype == np.uint8 and back.shape == labels.shape
    np.testing.assert_array_equal(back, labels)
    read_back = read_palette(path)
    assert read_back[:5] == palette and read_back[255] == (255, 255, 255)
    # Re-writing with the palette read back gives the same colours.
    write_indexed_png(tmp_path / "again.png", back, read_back)
    assert read_palette(tmp_path / "again.png") == read_back


def test_write_accepts_wider_integer_types_that_fit(tmp_path):
    labels = _labels(1).astype(np.uint16)
    write_indexed_png(tmp_path / "m.png", labels, default_palette(5))
    np.testing.assert_array_equal(read_mask(tmp_path / "m.png"), labels)
    write_indexed_png(tmp_path / "b.png", np.eye(3, dtype=bool), default_palette(2))
    np.testing.assert_array_equal(read_mask(tmp_path / "b.png"), np.eye(3, dtype=np.uint8))


def test_write_rejects_bad_labels(tmp_path):
    palette = default_palette(3)
    with pytest.raises(InvalidArgumentError, match="2-D"):
        write_indexed_png(tmp_path / "a.png", np.zeros((2, 2, 3), np.uint8), palette)
    with pytest.raises(InvalidArgumentError, match=r"\[3, 7\]"):
        write_indexed_png(tmp_path / "a.png", np.array([[0, 3], [7, 255]], np.uint8), palette)
    with pytest.raises(InvalidArgumentError, match="0..255"):
        write_indexed_png(tmp_path / "a.png", np.array([[0, 300]], np.uint16), palette)
    with pytest.raises(InvalidArgumentError, match="0..255"):
        write_indexed_png(tmp_path / "a.png", np.array([[0, -1]], np.int32), palette)
    with pytest.raises(InvalidArgumentError, match="integers"):
        write_indexed_png(tmp_path / "a.png", np.zeros((2, 2), np.float32), palette)
    with pytest.raises(InvalidArgumentError, match="RGB triple"):
        write_indexed_png(tmp_path / "a.png", np.zeros((2, 2), np.uint8), [(0, 0, 0), (300, 0, 0)])
    with pytest.raises(InvalidArgumentError, match="RGB triple"):
        write_indexed_png(tmp_path / "a.png", np.zeros((2, 2), np.uint8), [(0, 0)])
    with pytest.raises(InvalidArgumentError, match="empty"):
        write_indexed_png(tmp_path / "a.png", np.zeros((0, 4), np.uint8), palette)
    assert not (tmp_path / "a.png").exists()


def test_greyscale_mask_is_read_as_values(tmp_path):
    labels = _labels(2)
    Image.fromarray(labels, "L").save(tmp_path / "grey.png")
    np.testing.assert_array_equal(read_mask(tmp_path / "grey.png"), labels)
    # A 16-bit grey mask with small values is fine too.
    Image.fromarray(labels.astype(np.uint16)).save(tmp_path / "grey16.png")
    np.testing.assert_array_equal(read_mask(tmp_path / "grey16.png"), labels)


def test_colour_mask_is_refused(tmp_path):
    colour = np.zeros((4, 4, 3), np.uint8)
    colour[:2] = (128, 0, 0)
    Image.fromarray(colour, "RGB").save(tmp_path / "rgb_mask.png")
    with pytest.raises(UnreadableInputError, match="indexed or greyscale") as info:
        read_mask(tmp_path / "rgb_mask.png")
    assert "rgb_mask.png" in str(info.value)
    Image.fromarray(np.zeros((4, 4, 4), np.uint8), "RGBA").save(tmp_path / "rgba_mask.png")
    with pytest.raises(UnreadableInputError, match="pixel value = class index"):
        read_mask(tmp_path / "rgba_mask.png")
    with pytest.raises(UnreadableInputError, match="no palette"):
        read_palette(tmp_path / "rgb_mask.png")


def test_bad_mask_files(tmp_path):
    with pytest.raises(UnreadableInputError, match="no such file") as info:
        read_mask(tmp_path / "gone.png")
    assert "gone.png" in str(info.value)
    (tmp_path / "empty.png").write_bytes(b"")
    with pytest.raises(UnreadableInputError, match="file is empty"):
        read_mask(tmp_path / "empty.png")
    (tmp_path / "text.png").write_text("label me")
    with pytest.raises(UnreadableInputError, match="truncated") as info:
        read_mask(tmp_path / "text.png")
    assert "text.png" in str(info.value)
    write_indexed_png(tmp_path / "good.png", _labels(3, shape=(80, 90)), default_palette(5))
    data = (tmp_path / "good.png").read_bytes()
    for fraction in (0.3, 0.7, 0.95):
        (tmp_path / "cut.png").write_bytes(data[: int(len(data) * fraction)])
        with pytest.raises(UnreadableInputError, match="truncated"):
            read_mask(tmp_path / "cut.png")


# --------------------------------------------------------------------------
# Atomic writes
# --------------------------------------------------------------------------


def test_atomic_write_creates_and_replaces(tmp_path, caplog):
    path = tmp_path / "sub" / "file.bin"
    with caplog.at_level(logging.DEBUG, logger="segstudio.io.masks"):
        assert atomic_write_bytes(path, b"first") == path
        atomic_write_bytes(path, b"second")
    assert path.read_bytes() == b"second"
    assert sorted(p.name for p in path.parent.iterdir()) == ["file.bin"]
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]


def test_atomic_write_keeps_permissions_of_existing_file(tmp_path):
    path = tmp_path / "perm.bin"
    path.write_bytes(b"old")
    os.chmod(path, 0o640)
    atomic_write_bytes(path, b"new")
    assert stat.S_IMODE(path.stat().st_mode) == 0o640
    # A new file is not left with mkstemp's private 0600 mode.
    atomic_write_bytes(tmp_path / "fresh.bin", b"x")
    assert stat.S_IMODE((tmp_path / "fresh.bin").stat().st_mode) & 0o044 == 0o044 & ~_umask()


def _umask() -> int:
    current = os.umask(0o022)
    os.umask(current)
    return current


def test_failed_replace_keeps_old_file_and_leaves_no_temp(tmp_path, monkeypatch):
    folder = tmp_path / "out"
    path = folder / "mask.png"
    old = _labels(4)
    write_indexed_png(path, old, default_palette(5))
    before = path.read_bytes()

    def broken_replace(src, dst):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(masks.os, "replace", broken_replace)
    with pytest.raises(ExportError, match="No space left on device") as info:
        write_indexed_png(path, np.zeros_like(old), default_palette(5))
    assert "mask.png" in str(info.value)
    assert path.read_bytes() == before
    assert sorted(p.name for p in folder.iterdir()) == ["mask.png"]


def test_failed_write_cleans_up_temp(tmp_path, monkeypatch):
    def broken_fsync(fd):
        raise OSError(5, "Input/output error")

    monkeypatch.setattr(masks.os, "fsync", broken_fsync)
    with pytest.raises(ExportError, match="Input/output error"):
        atomic_write_bytes(tmp_path / "out" / "x.bin", b"data")
    assert list((tmp_path / "out").iterdir()) == []


def test_unwritable_destination_raises_export_error(tmp_path):
    blocker = tmp_path / "blocker"
    blocker.write_text("a file where a folder should be")
    with pytest.raises(ExportError) as info:
        write_indexed_png(blocker / "mask.png", np.zeros((2, 2), np.uint8), default_palette(1))
    assert "mask.png" in str(info.value)


# --------------------------------------------------------------------------
# uint16 label maps (projects of more than 254 classes)
# --------------------------------------------------------------------------


def test_label_type_and_unlabelled_value_by_class_count():
    assert masks.label_dtype(0) == np.uint8 and masks.label_dtype(254) == np.uint8
    assert masks.label_dtype(255) == np.uint16 and masks.label_dtype(masks.MAX_CLASSES) == np.uint16
    assert masks.unlabelled_for(np.uint8) == 255 and masks.unlabelled_for(np.zeros(2, np.uint16)) == 65535
    for bad in (-1, masks.MAX_CLASSES + 1, True):
        with pytest.raises(InvalidArgumentError):
            masks.label_dtype(bad)
    with pytest.raises(InvalidArgumentError, match="uint8 or uint16"):
        masks.unlabelled_for(np.int32)


def test_convert_labels_keeps_classes_and_unlabelled():
    small = np.array([[0, 7, 254, 255]], np.uint8)
    wide = masks.convert_labels(small, np.uint16)
    assert wide.dtype == np.uint16 and wide.tolist() == [[0, 7, 254, 65535]]
    back = masks.convert_labels(wide, np.uint8)
    assert back.dtype == np.uint8 and np.array_equal(back, small)
    assert masks.convert_labels(small, np.uint8) is small
    with pytest.raises(InvalidArgumentError, match=r"m\.png.*\[255, 300\]"):
        masks.convert_labels(np.array([[255, 300, 65535]], np.uint16), np.uint8, path="m.png")


def test_16_bit_label_png_round_trip(tmp_path):
    labels = np.full((20, 30), 65535, np.uint16)
    labels[2:5, 3:9] = 255  # an ordinary class in a uint16 map
    labels[10:12, :] = 300
    labels[15, 29] = 0
    path = masks.write_label_png(tmp_path / "deep.png", labels, default_palette(301))
    with Image.open(path) as image:
        assert image.mode.startswith("I;16")
    back = read_mask(path)
    assert back.dtype == np.uint16 and np.array_equal(back, labels)
    with pytest.raises(InvalidArgumentError, match=r"\[300\].*300 classes"):
        masks.write_label_png(tmp_path / "bad.png", labels, default_palette(300))
    # uint8 maps still become indexed PNGs with the palette
    small = _labels(1)
    masks.write_label_png(tmp_path / "small.png", small, default_palette(5))
    assert read_palette(tmp_path / "small.png")[:2] == default_palette(2)
    assert np.array_equal(read_mask(tmp_path / "small.png"), small)


def test_32_bit_integer_masks_read_as_the_narrowest_label_type(tmp_path):
    narrow = np.array([[0, 3], [255, 1]], np.int32)
    Image.fromarray(narrow, mode="I").save(tmp_path / "narrow.tif")
    assert read_mask(tmp_path / "narrow.tif").dtype == np.uint8
    wide = np.array([[0, 300], [65535, 1]], np.int32)
    Image.fromarray(wide, mode="I").save(tmp_path / "wide.tif")
    read = read_mask(tmp_path / "wide.tif")
    assert read.dtype == np.uint16 and read.tolist() == [[0, 300], [65535, 1]]
    Image.fromarray(np.array([[70000]], np.int32), mode="I").save(tmp_path / "huge.tif")
    with pytest.raises(UnreadableInputError, match="huge.tif"):
        read_mask(tmp_path / "huge.tif")


# --------------------------------------------------------------------------
# Hostile files: the declared size is checked before decoding
# --------------------------------------------------------------------------


@pytest.mark.parametrize(("depth", "needed"), [(8, "18.6 GiB"), (16, "37.3 GiB")])
def test_a_huge_declared_mask_is_refused_naming_file_size_and_limit(tmp_path, monkeypatch, depth, needed):
    from tests.io.test_images import png_declaring

    monkeypatch.setenv("SEGSTUDIO_MEMORY_LIMIT", "256M")
    path = tmp_path / "labels.png"
    path.write_bytes(png_declaring(100000, 100000, depth=depth, colour=0))  # greyscale
    with pytest.raises(UnreadableInputError) as info:
        read_mask(path)
    message = str(info.value)
    assert message.startswith(f"{path}: the mask (100000 x 100000") and "\n" not in message
    assert needed in message and "256.0 MiB" in message


def test_a_mask_within_the_limit_reads_whatever_pillows_own_limit(tmp_path, monkeypatch, recwarn):
    """Pillow refuses more than twice MAX_IMAGE_PIXELS with its own message and
    warns above it; our limit decides instead."""
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 100)
    labels = _labels(3, shape=(40, 50))
    write_indexed_png(tmp_path / "m.png", labels, default_palette(5))
    assert np.array_equal(read_mask(tmp_path / "m.png"), labels)
    assert read_palette(tmp_path / "m.png")[:5] == default_palette(5)
    assert not [w for w in recwarn if "decompression bomb" in str(w.message).lower()]
    monkeypatch.setenv("SEGSTUDIO_MEMORY_LIMIT", "3K")  # 2000 pixels x 2 bytes
    with pytest.raises(UnreadableInputError, match=r"m\.png: the mask \(50 x 40, 2,000 pixels\) would need "
                                                   r"3\.9 KiB of memory, more than the limit of 3\.0 KiB"):
        read_mask(tmp_path / "m.png")


def test_a_colour_mask_is_refused_before_decoding(tmp_path, monkeypatch):
    from tests.io.test_images import png_declaring

    path = tmp_path / "colour.png"
    path.write_bytes(png_declaring(100000, 100000, colour=2))  # RGB, pixel data one row
    with pytest.raises(UnreadableInputError, match="colour image"):
        read_mask(path)
