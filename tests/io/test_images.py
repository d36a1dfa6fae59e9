"""Tests for segstudio.io.images: real files written with cv2, tifffile and Pillow."""

from __future__ import annotations

import logging
from pathlib import Path

import cv2
import numpy as np
import pytest
import tifffile
from PIL import Image

from segstudio.errors import UnreadableInputError
from segstudio.io.images import (
    IMAGE_SUFFIXES,
    _jpeg_is_complete,
    ImageItem,
    iter_images,
    list_image_files,
    read_image,
    read_stack,
    to_uint8_display,
)


@pytest.fixture
def rng():
    return np.random.default_rng(1234)


def _rgb(rng, h=23, w=31, dtype=np.uint8):
    top = 256 if dtype == np.uint8 else 65536
    return rng.integers(0, top, size=(h, w, 3)).astype(dtype)


def _write_cv2_rgb(path: Path, rgb: np.ndarray, *params) -> None:
    assert cv2.imwrite(str(path), np.ascontiguousarray(rgb[:, :, ::-1]), list(params))


# --------------------------------------------------------------------------
# Round trips
# --------------------------------------------------------------------------


def test_suffixes():
    assert IMAGE_SUFFIXES == {".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff"}


@pytest.mark.parametrize("suffix", [".png", ".bmp"])
def test_rgb_8bit_round_trip_keeps_rgb_order(tmp_path, rng, suffix):
    rgb = _rgb(rng)
    rgb[0, 0] = (255, 0, 0)
    path = tmp_path / f"colour{suffix}"
    _write_cv2_rgb(path, rgb)
    out = read_image(path)
    assert out.dtype == np.uint8 and out.shape == rgb.shape
    np.testing.assert_array_equal(out, rgb)
    assert out[0, 0].tolist() == [255, 0, 0]


def test_pure_red_png_has_red_in_channel_0(tmp_path):
    red = np.zeros((5, 6, 3), np.uint8)
    red[..., 0] = 255
    Image.fromarray(red).save(tmp_path / "red.png")
    out = read_image(tmp_path / "red.png")
    assert (out[..., 0] == 255).all() and (out[..., 1:] == 0).all()


def test_grey_8bit_and_16bit_png(tmp_path, rng):
    grey8 = rng.integers(0, 256, size=(17, 19), dtype=np.uint8)
    grey16 = rng.integers(0, 65536, size=(17, 19)).astype(np.uint16)
    cv2.imwrite(str(tmp_path / "g8.png"), grey8)
    cv2.imwrite(str(tmp_path / "g16.png"), grey16)
    out8, out16 = read_image(tmp_path / "g8.png"), read_image(tmp_path / "g16.png")
    assert out8.dtype == np.uint8 and out8.ndim == 2
    assert out16.dtype == np.uint16 and out16.ndim == 2
    np.testing.assert_array_equal(out8, grey8)
    np.testing.assert_array_equal(out16, grey16)


def test_rgb_16bit_png(tmp_path, rng):
    rgb = _rgb(rng, dtype=np.uint16)
    _write_cv2_rgb(tmp_path / "c16.png", rgb)
    out = read_image(tmp_path / "c16.png")
    assert out.dtype == np.uint16
    np.testing.assert_array_equal(out, rgb)


def test_alpha_is_dropped(tmp_path, rng):
    rgba = rng.integers(0, 256, size=(9, 11, 4), dtype=np.uint8)
    Image.fromarray(rgba, "RGBA").save(tmp_path / "rgba.png")
    np.testing.assert_array_equal(read_image(tmp_path / "rgba.png"), rgba[..., :3])
    grey_alpha = rng.integers(0, 256, size=(9, 11, 2), dtype=np.uint8)
    Image.fromarray(grey_alpha, "LA").save(tmp_path / "la.png")
    out = read_image(tmp_path / "la.png")
    assert out.shape == (9, 11)
    np.testing.assert_array_equal(out, grey_alpha[..., 0])


def test_palette_png_reads_as_rgb(tmp_path):
    idx = np.array([[0, 1], [1, 0]], np.uint8)
    img = Image.frombytes("P", (2, 2), idx.tobytes())
    img.putpalette([0, 0, 0, 10, 200, 30] + [0] * 762)
    img.save(tmp_path / "p.png")
    out = read_image(tmp_path / "p.png")
    assert out.shape == (2, 2, 3)
    assert out[0, 1].tolist() == [10, 200, 30]


def test_jpeg_round_trip_within_tolerance(tmp_path):
    # A smooth image survives JPEG compression closely.
    y, x = np.mgrid[0:64, 0:80]
    rgb = np.stack([x * 3, y * 3, (x + y) * 2], axis=-1).astype(np.uint8)
    for name in ("a.jpg", "b.JPEG"):
        _write_cv2_rgb(tmp_path / name, rgb, cv2.IMWRITE_JPEG_QUALITY, 95)
        out = read_image(tmp_path / name)
        assert out.shape == rgb.shape and out.dtype == np.uint8
        assert np.abs(out.astype(int) - rgb).mean() < 2.0
        # Channel order: red grows along x, green along y.
        assert out[32, 79, 0] > 200 and out[63, 0, 1] > 150


def test_jpeg_with_trailing_bytes_is_accepted(tmp_path, rng):
    path = tmp_path / "trailer.jpg"
    _write_cv2_rgb(path, _rgb(rng))
    path.write_bytes(path.read_bytes() + b"extra data after the end marker")
    assert read_image(path).shape == (23, 31, 3)


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16, np.float32])
def test_tiff_grey_round_trip(tmp_path, rng, dtype):
    grey = (rng.random((13, 15)) * 1000).astype(dtype)
    tifffile.imwrite(tmp_path / "g.tif", grey)
    out = read_image(tmp_path / "g.tif")
    assert out.dtype == dtype
    np.testing.assert_array_equal(out, grey)


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16])
def test_tiff_rgb_round_trip(tmp_path, rng, dtype):
    rgb = _rgb(rng, dtype=dtype)
    tifffile.imwrite(tmp_path / "c.tiff", rgb, photometric="rgb")
    out = read_image(tmp_path / "c.tiff")
    assert out.dtype == dtype
    np.testing.assert_array_equal(out, rgb)


def test_tiff_planar_rgb_and_float64(tmp_path, rng):
    rgb = _rgb(rng)
    planar = np.moveaxis(rgb, 2, 0)
    tifffile.imwrite(tmp_path / "planar.tif", planar, photometric="rgb", planarconfig="separate")
    np.testing.assert_array_equal(read_image(tmp_path / "planar.tif"), rgb)
    values = rng.random((6, 7))
    tifffile.imwrite(tmp_path / "f64.tif", values)
    out = read_image(tmp_path / "f64.tif")
    assert out.dtype == np.float32
    np.testing.assert_allclose(out, values, rtol=1e-6)


def test_compressed_tiff(tmp_path, rng):
    grey = rng.integers(0, 65536, size=(20, 21)).astype(np.uint16)
    tifffile.imwrite(tmp_path / "z.tif", grey, compression="zlib")
    np.testing.assert_array_equal(read_image(tmp_path / "z.tif"), grey)


def test_lzw_tiff_as_opencv_and_microscopes_write_it(tmp_path, rng):
    grey = rng.integers(0, 65536, size=(36, 30)).astype(np.uint16)
    assert cv2.imwrite(str(tmp_path / "lzw.tif"), grey)  # OpenCV's TIFFs are LZW-compressed
    with tifffile.TiffFile(tmp_path / "lzw.tif") as tif:
        assert tif.pages[0].compression == 5  # LZW: needs imagecodecs
    np.testing.assert_array_equal(read_image(tmp_path / "lzw.tif"), grey)


# --------------------------------------------------------------------------
# Stacks
# --------------------------------------------------------------------------


def test_multipage_tiff_stack(tmp_path, rng):
    stack = rng.integers(0, 65536, size=(5, 12, 14)).astype(np.uint16)
    path = tmp_path / "stack.tif"
    tifffile.imwrite(path, stack)
    out = read_stack(path)
    assert out.shape == (5, 12, 14) and out.dtype == np.uint16
    np.testing.assert_array_equal(out, stack)
    with pytest.raises(UnreadableInputError, match="5 pages") as info:
        read_image(path)
    assert "stack.tif" in str(info.value)


def test_multipage_rgb_stack_from_separate_pages(tmp_path, rng):
    pages = [_rgb(rng, 8, 9) for _ in range(3)]
    path = tmp_path / "rgbstack.tif"
    with tifffile.TiffWriter(path) as writer:
        for page in pages:
            writer.write(page, photometric="rgb")
    out = read_stack(path)
    assert out.shape == (3, 8, 9, 3)
    np.testing.assert_array_equal(out, np.stack(pages))
    with pytest.raises(UnreadableInputError, match="3 pages"):
        read_image(path)


def test_read_stack_of_single_images(tmp_path, rng):
    rgb = _rgb(rng)
    _write_cv2_rgb(tmp_path / "one.png", rgb)
    out = read_stack(tmp_path / "one.png")
    assert out.shape == (1, *rgb.shape)
    np.testing.assert_array_equal(out[0], rgb)
    grey = rng.integers(0, 256, size=(4, 5), dtype=np.uint8)
    tifffile.imwrite(tmp_path / "one.tif", grey)
    np.testing.assert_array_equal(read_stack(tmp_path / "one.tif"), grey[np.newaxis])


# --------------------------------------------------------------------------
# Bad files
# --------------------------------------------------------------------------


def _expect_unreadable(path: Path, match: str) -> UnreadableInputError:
    with pytest.raises(UnreadableInputError, match=match) as info:
        read_image(path)
    assert path.name in str(info.value)
    return info.value


def test_missing_file(tmp_path):
    err = _expect_unreadable(tmp_path / "absent.png", "no such file")
    assert err.path == str(tmp_path / "absent.png")


def test_empty_file(tmp_path):
    (tmp_path / "empty.png").write_bytes(b"")
    _expect_unreadable(tmp_path / "empty.png", "file is empty")
    (tmp_path / "empty.tif").write_bytes(b"")
    _expect_unreadable(tmp_path / "empty.tif", "file is empty")


def test_text_renamed_as_image(tmp_path):
    (tmp_path / "notes.png").write_text("these are my notes, not an image\n")
    _expect_unreadable(tmp_path / "notes.png", "not a PNG/JPEG/BMP image")
    (tmp_path / "notes.tif").write_text("these are my notes, not an image\n")
    _expect_unreadable(tmp_path / "notes.tif", "not a TIFF image")


def test_unsupported_suffix(tmp_path):
    (tmp_path / "data.xyz").write_bytes(b"1234")
    _expect_unreadable(tmp_path / "data.xyz", r"unsupported file type '\.xyz'")


def test_folder_given_as_image(tmp_path):
    (tmp_path / "dir.png").mkdir()
    _expect_unreadable(tmp_path / "dir.png", "folder")


@pytest.mark.parametrize("fraction", [0.1, 0.5, 0.9, 0.99])
@pytest.mark.parametrize("suffix", [".png", ".jpg", ".bmp", ".tif"])
def test_truncated_files(tmp_path, rng, suffix, fraction):
    rgb = _rgb(rng, 48, 64)
    whole = tmp_path / f"whole{suffix}"
    if suffix == ".tif":
        tifffile.imwrite(whole, rgb, photometric="rgb")
    else:
        _write_cv2_rgb(whole, rgb)
    data = whole.read_bytes()
    cut = tmp_path / f"cut{suffix}"
    cut.write_bytes(data[: int(len(data) * fraction)])
    _expect_unreadable(cut, "truncated")
    with pytest.raises(UnreadableInputError, match="truncated"):
        read_stack(cut)


def test_truncated_compressed_tiff(tmp_path, rng):
    path = tmp_path / "z.tif"
    tifffile.imwrite(path, rng.integers(0, 65536, size=(40, 40)).astype(np.uint16), compression="zlib")
    path.write_bytes(path.read_bytes()[:-200])
    _expect_unreadable(path, "truncated")


def test_jpeg_truncated_after_thumbnail_like_end_marker(tmp_path, rng):
    # An end-of-image marker inside an APP segment (as EXIF thumbnails have)
    # must not hide the truncation of the main image.
    path = tmp_path / "thumb.jpg"
    _write_cv2_rgb(path, _rgb(rng, 32, 32))
    data = path.read_bytes()
    payload = b"Exif\x00\x00\xff\xd8\xff\xd9"
    app1 = b"\xff\xe1" + (len(payload) + 2).to_bytes(2, "big") + payload
    path.write_bytes(data[:2] + app1 + data[2 : len(data) // 2])
    _expect_unreadable(path, "truncated")
    path.write_bytes(data[:2] + app1 + data[2:])
    assert read_image(path).shape == (32, 32, 3)


def test_jpeg_completeness_check(tmp_path, rng):
    # Checked directly: some OpenCV entry points refuse truncated JPEGs
    # themselves, others return a padded image, so the decoder cannot be
    # relied upon to exercise this check.
    path = tmp_path / "x.jpg"
    _write_cv2_rgb(path, _rgb(rng, 40, 40))
    data = path.read_bytes()
    assert _jpeg_is_complete(data)
    assert _jpeg_is_complete(data + b"\x00trailer\xff\xda")
    for end in (3, 20, len(data) // 3, len(data) // 2, len(data) - 2, len(data) - 1):
        assert not _jpeg_is_complete(data[:end]), end
    payload = b"Exif\x00\x00\xff\xd8\xff\xd9"
    app1 = b"\xff\xe1" + (len(payload) + 2).to_bytes(2, "big") + payload
    assert not _jpeg_is_complete(data[:2] + app1 + data[2 : len(data) // 2])
    assert _jpeg_is_complete(data[:2] + app1 + data[2:])
    progressive = tmp_path / "p.jpg"
    _write_cv2_rgb(progressive, _rgb(rng, 40, 40), cv2.IMWRITE_JPEG_PROGRESSIVE, 1)
    pdata = progressive.read_bytes()
    assert _jpeg_is_complete(pdata)
    assert not _jpeg_is_complete(pdata[: int(len(pdata) * 0.8)])


# --------------------------------------------------------------------------
# Listing and iterating
# --------------------------------------------------------------------------


def _make_folder(root: Path, rng) -> list[str]:
    root.mkdir(parents=True, exist_ok=True)
    names = ["b.png", "a.jpg", "c.tif"]
    _write_cv2_rgb(root / "b.png", _rgb(rng))
    _write_cv2_rgb(root / "a.jpg", _rgb(rng))
    tifffile.imwrite(root / "c.tif", _rgb(rng), photometric="rgb")
    (root / "readme.txt").write_text("not an image")
    (root / ".hidden.png").write_bytes(b"junk")
    return sorted(names)


def test_list_folder_sorted_and_filtered(tmp_path, rng):
    names = _make_folder(tmp_path / "imgs", rng)
    _make_folder(tmp_path / "imgs" / "sub", rng)
    files = list_image_files([tmp_path / "imgs"])
    assert [f.name for f in files] == names
    deep = list_image_files([str(tmp_path / "imgs")], recursive=True)
    assert [f.relative_to(tmp_path / "imgs").as_posix() for f in deep] == names + [f"sub/{n}" for n in names]


def test_list_files_given_explicitly(tmp_path, rng):
    folder = tmp_path / "imgs"
    _make_folder(folder, rng)
    files = list_image_files([folder / "readme.txt", folder / "b.png", folder / "b.png"])
    assert [f.name for f in files] == ["readme.txt", "b.png"]


def test_list_missing_and_empty(tmp_path):
    with pytest.raises(UnreadableInputError, match="no such file or folder") as info:
        list_image_files([tmp_path / "nope"])
    assert "nope" in str(info.value)
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "notes.txt").write_text("x")
    with pytest.raises(UnreadableInputError, match="no image files") as info:
        list_image_files([tmp_path / "empty"])
    assert "empty" in str(info.value)


def test_iter_images_continues_past_corrupt_file(tmp_path, rng, caplog):
    folder = tmp_path / "imgs"
    names = _make_folder(folder, rng)
    (folder / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00" * 40)
    with caplog.at_level(logging.WARNING, logger="segstudio.io.images"):
        items = list(iter_images([folder]))
    assert all(isinstance(item, ImageItem) for item in items)
    assert sorted(i.path.name for i in items if i.error is None) == names
    bad = [i for i in items if i.error is not None]
    assert len(bad) == 1 and bad[0].path.name == "broken.png" and bad[0].image is None
    assert isinstance(bad[0].error, UnreadableInputError)
    assert "broken.png" in caplog.text
    good = [i for i in items if i.ok]
    assert all(i.image is not None and i.image.shape == (23, 31, 3) for i in good)


def test_iter_images_missing_input_raises_immediately(tmp_path):
    with pytest.raises(UnreadableInputError):
        iter_images([tmp_path / "absent"])


# --------------------------------------------------------------------------
# Display scaling
# --------------------------------------------------------------------------


def test_to_uint8_display():
    image8 = np.arange(12, dtype=np.uint8).reshape(3, 4)
    assert to_uint8_display(image8) is image8
    ramp = np.linspace(1000, 61000, 2000).astype(np.uint16).reshape(40, 50)
    out = to_uint8_display(ramp)
    assert out.dtype == np.uint8 and out.shape == ramp.shape
    assert out.min() == 0 and out.max() == 255
    assert (np.diff(out.ravel().astype(int)) >= 0).all()  # order preserved
    # The 0.5/99.5 percentiles clip about 10 of 2000 pixels at each end; one
    # output level spans about 8 pixels, and rounding adds half of one.
    assert 10 <= (out == 0).sum() <= 16 and 10 <= (out == 255).sum() <= 16
    without_clipping = ((ramp.astype(float) - ramp.min()) * 255 / np.ptp(ramp)).round()
    assert (out == 0).sum() > (without_clipping == 0).sum()
    floats = np.array([[0.0, 0.5], [1.0, np.nan]], np.float32)
    out = to_uint8_display(floats)
    assert out[1, 1] == 0 and out[0, 0] == 0 and out[1, 0] == 255 and 120 <= out[0, 1] <= 135
    assert (to_uint8_display(np.full((2, 2), 7, np.uint16)) == 0).all()


# --------------------------------------------------------------------------
# Hostile files: the declared size is checked before anything is decoded
# --------------------------------------------------------------------------


def sparse_tiff(width: int, height: int, *, bits: int = 8, samples: int = 1) -> bytes:
    """A deflate TIFF of about a hundred bytes declaring *width* x *height* in one
    strip of zero bytes: tifffile takes it for a sparse file and fills the
    whole image with zeros."""
    import struct

    entries = [(256, 4, width), (257, 4, height), (258, 3, bits), (259, 3, 8),
               (262, 3, 1 if samples == 1 else 2), (273, 4, 0), (277, 3, samples),
               (278, 4, height), (279, 4, 0)]
    data = bytearray(b"II*\x00" + struct.pack("<IH", 8, len(entries)))
    for tag, kind, value in entries:  # kind 3: SHORT, padded to 4 bytes; 4: LONG
        data += struct.pack("<HHIHH" if kind == 3 else "<HHII", tag, kind, 1, value, *([0] if kind == 3 else []))
    return bytes(data + struct.pack("<I", 0))


def png_declaring(width: int, height: int, *, depth: int = 8, colour: int = 6) -> bytes:
    """A PNG whose header declares *width* x *height* (colour type 6: RGBA) and
    whose pixel data is one compressed row: a decoder that trusts the header
    allocates the whole image."""
    import struct
    import zlib

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    header = struct.pack(">IIBBBBB", width, height, depth, colour, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(bytes(64)))
            + chunk(b"IEND", b""))


def _refused(path: Path, *parts: str) -> str:
    with pytest.raises(UnreadableInputError) as info:
        read_image(path)
    message = str(info.value)
    assert message.startswith(f"{path}: ") and "\n" not in message
    for part in parts:
        assert part in message
    return message


def test_a_huge_declared_tiff_is_refused_naming_file_size_and_limit(tmp_path, monkeypatch):
    monkeypatch.setenv("SEGSTUDIO_MEMORY_LIMIT", "256M")
    path = tmp_path / "bomb.tif"
    path.write_bytes(sparse_tiff(100000, 100000))
    assert path.stat().st_size < 300
    _refused(path, "100000 x 100000", "10,000,000,000 pixels", "256.0 MiB")
    tall = tmp_path / "tall.tif"
    tall.write_bytes(sparse_tiff(1, 4294967295))
    _refused(tall, "1 x 4294967295", "256.0 MiB")


def test_a_small_sparse_tiff_within_the_limit_still_reads(tmp_path, monkeypatch):
    monkeypatch.setenv("SEGSTUDIO_MEMORY_LIMIT", "256M")
    path = tmp_path / "sparse.tif"
    path.write_bytes(sparse_tiff(300, 200))
    image = read_image(path)
    assert image.shape == (200, 300) and image.dtype == np.uint8 and not image.any()


def test_the_real_limit_refuses_a_100000_squared_tiff_before_allocating(tmp_path):
    """With the machine's own limit; a subprocess measures the peak memory.
    Its address space is capped at 2 GiB so that a regression fails instead
    of filling the machine's memory with 10 GB of zeros."""
    import json
    import os
    import subprocess
    import sys

    if not Path("/proc/self/status").exists():
        pytest.skip("peak memory is read from /proc (Linux)")
    path = tmp_path / "bomb.tif"
    path.write_bytes(sparse_tiff(100000, 100000))
    script = (
        "import json, resource, sys\n"
        "resource.setrlimit(resource.RLIMIT_AS, (2 << 30, 2 << 30))\n"
        "from segstudio.io.images import read_image\n"
        "from segstudio.errors import UnreadableInputError\n"
        "try:\n"
        "    read_image(sys.argv[1]); message = None\n"
        "except UnreadableInputError as exc:\n"
        "    message = str(exc)\n"
        # VmHWM, the peak of this process's memory; ru_maxrss would carry pytest's over the exec
        "peak = [l for l in open('/proc/self/status') if l.startswith('VmHWM:')][0].split()[1]\n"
        "print(json.dumps({'message': message, 'peak_kib': int(peak)}))\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "SEGSTUDIO_MEMORY_LIMIT"}
    done = subprocess.run([sys.executable, "-c", script, str(path)], capture_output=True, text=True, env=env,
                          timeout=120, cwd=Path(__file__).resolve().parents[2])
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["message"] is not None and str(path) in result["message"]
    assert "100000 x 100000" in result["message"] and "more than the limit of" in result["message"]
    assert result["peak_kib"] < 200 * 1024  # the interpreter and NumPy; no pixels


@pytest.mark.parametrize("depth", [8, 16])
def test_png_bytes_per_pixel_come_from_its_header(tmp_path, monkeypatch, depth):
    # 1000 x 1000 RGBA: 8-bit needs 4 + 16 working bytes a pixel (20 MB), 16-bit 8 + 16 (24 MB)
    monkeypatch.setenv("SEGSTUDIO_MEMORY_LIMIT", str(22 * 10**6))
    rgba = np.zeros((1000, 1000, 4), np.uint8 if depth == 8 else np.uint16)
    path = tmp_path / f"rgba{depth}.png"
    assert cv2.imwrite(str(path), rgba)
    if depth == 8:
        assert read_image(path).shape == (1000, 1000, 3)
    else:
        _refused(path, "1000 x 1000", "22.9 MiB", "21.0 MiB")


def test_a_huge_declared_rgba16_png_is_refused_before_decoding(tmp_path):
    path = tmp_path / "bomb.png"
    path.write_bytes(png_declaring(200000, 200000, depth=16))
    _refused(path, "200000 x 200000", "more than the limit of")


def _patched(data: bytes, offset: int, fmt: str, *values: int) -> bytes:
    import struct

    return data[:offset] + struct.pack(fmt, *values) + data[offset + struct.calcsize(fmt):]


def test_huge_declared_jpeg_and_bmp_are_refused(tmp_path, monkeypatch):
    monkeypatch.setenv("SEGSTUDIO_MEMORY_LIMIT", "64M")
    small = np.zeros((8, 8, 3), np.uint8)
    jpeg = cv2.imencode(".jpg", small)[1].tobytes()
    sof = jpeg.index(b"\xff\xc0")
    path = tmp_path / "bomb.jpg"
    path.write_bytes(_patched(jpeg, sof + 5, ">HH", 60000, 60000))
    _refused(path, "60000 x 60000", "64.0 MiB")
    bmp = cv2.imencode(".bmp", small)[1].tobytes()
    path = tmp_path / "bomb.bmp"
    path.write_bytes(_patched(bmp, 18, "<ii", 50000, -50000))  # negative height: top-down rows
    _refused(path, "50000 x 50000", "64.0 MiB")


def test_pillows_own_limit_does_not_decide(tmp_path, monkeypatch, recwarn):
    """PNG, JPEG and BMP are sized from their headers: Pillow's pixel limit,
    far below them here, plays no part and warns nothing. A format only Pillow
    sizes for us (WebP, misnamed) still reads within Pillow's limit, and above
    it is refused in one line naming the file."""
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 100)
    for suffix in (".png", ".jpg", ".bmp"):
        path = tmp_path / f"plain{suffix}"
        assert cv2.imwrite(str(path), np.full((40, 50, 3), 90, np.uint8))
        assert read_image(path).shape == (40, 50, 3)
    path = tmp_path / "webp_named.png"
    Image.fromarray(np.full((40, 50, 3), 90, np.uint8)).save(path, format="WEBP", lossless=True)
    message = _refused(path, "WEBP image declares more pixels than its reader opens (200)")
    assert "decompression bomb" not in message
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 10_000)
    image = read_image(path)
    assert image.shape == (40, 50, 3) and int(image[0, 0, 0]) == 90
    assert not [w for w in recwarn if "decompression bomb" in str(w.message).lower()]


def test_a_huge_stack_is_refused_naming_its_voxels(tmp_path, monkeypatch):
    path = tmp_path / "stack.tif"
    tifffile.imwrite(path, np.zeros((10, 64, 64), np.uint8))
    monkeypatch.setenv("SEGSTUDIO_MEMORY_LIMIT", "600K")  # 40960 voxels x 17 bytes = 680 KiB
    with pytest.raises(UnreadableInputError) as info:
        read_stack(path)
    assert str(path) in str(info.value) and "10 x 64 x 64" in str(info.value) and "600.0 KiB" in str(info.value)
    monkeypatch.setenv("SEGSTUDIO_MEMORY_LIMIT", "1M")
    assert read_stack(path).shape == (10, 64, 64)


def _tiff_with_bad_tags(path: Path) -> None:
    """A valid 4 x 4 TIFF whose description and software tags have a type that
    does not exist: tifffile skips them and logs an error for each."""
    import io
    import struct

    buffer = io.BytesIO()
    tifffile.imwrite(buffer, np.full((4, 4), 7, np.uint8), description="x", software="y")
    data = bytearray(buffer.getvalue())
    ifd = struct.unpack("<I", data[4:8])[0]
    for index in range(struct.unpack("<H", data[ifd:ifd + 2])[0]):
        entry = ifd + 2 + 12 * index
        if struct.unpack("<H", data[entry:entry + 2])[0] in (270, 305):
            data[entry + 2:entry + 4] = struct.pack("<H", 99)
    path.write_bytes(bytes(data))


def test_tifffile_log_lines_do_not_reach_the_user(tmp_path, caplog):
    path = tmp_path / "odd.tif"
    _tiff_with_bad_tags(path)
    with caplog.at_level(logging.DEBUG):
        image = read_image(path)
        assert image.shape == (4, 4) and int(image[0, 0]) == 7
        (tmp_path / "damaged.tif").write_bytes(path.read_bytes()[:60])
        with pytest.raises(UnreadableInputError, match="damaged.tif"):
            read_image(tmp_path / "damaged.tif")
    assert not [r for r in caplog.records if r.name == "tifffile"]
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING and "tifffile" in r.getMessage()]
    # what tifffile said is kept for --verbose
    assert any(r.name == "segstudio.io.images" and "invalid data type 99" in r.getMessage() for r in caplog.records)
