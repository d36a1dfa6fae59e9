"""The chunked label store of very large images: a stroke writes only its chunks,
Zarr readers open it, a kill mid-flush leaves every chunk whole."""

from __future__ import annotations

import os

import numpy as np
import pytest
import zarr

from segstudio.errors import DataError, InvalidArgumentError
from segstudio.io import tiled_labels
from segstudio.io.tiled_labels import TiledLabels


def _disc(radius: int) -> np.ndarray:
    y, x = np.ogrid[-radius:radius, -radius:radius]
    return (x * x + y * y < radius * radius)


def test_a_stroke_on_a_100000_square_map_writes_only_its_chunks(tmp_path) -> None:
    store = TiledLabels.create(tmp_path / "labels.zarr", (100_000, 100_000))
    assert sorted(p.name for p in (tmp_path / "labels.zarr").iterdir()) == [".zarray"]
    box = ((50_176 - 40, 50_176 + 40), (70_144 - 40, 70_144 + 40))  # a dab on a chunk corner (512 x 98, 512 x 137)
    dab = np.where(_disc(40), np.uint8(2), np.uint8(255))
    store.write(box, dab)
    assert store.dirty == {(97, 136), (97, 137), (98, 136), (98, 137)}
    written = store.flush()
    files = sorted(p.name for p in (tmp_path / "labels.zarr").iterdir() if not p.name.startswith("."))
    assert files == ["97.136", "97.137", "98.136", "98.137"]
    assert written == sum((tmp_path / "labels.zarr" / name).stat().st_size for name in files)
    assert written < 4 * 512 * 512 // 20  # compressed: mostly unlabelled
    assert store.flush() == 0  # nothing dirty: nothing written
    reopened = TiledLabels.open(tmp_path / "labels.zarr")
    np.testing.assert_array_equal(reopened.read(box), dab)
    assert (reopened.read(((0, 10), (0, 10))) == 255).all()


def test_zarr_reads_the_store_as_it_is(tmp_path) -> None:
    labels = np.random.default_rng(0).integers(0, 4, (1300, 1100), dtype=np.uint16)
    store = TiledLabels.create(tmp_path / "l.zarr", labels.shape, np.uint16, chunk=256)
    store.write(((0, 1300), (0, 1100)), labels)
    store.flush()
    opened = zarr.open(str(tmp_path / "l.zarr"), mode="r", zarr_format=2)
    assert opened.shape == (1300, 1100) and opened.dtype == np.uint16
    np.testing.assert_array_equal(opened[...], labels)
    np.testing.assert_array_equal(TiledLabels.open(tmp_path / "l.zarr").read(((100, 900), (300, 1100))),
                                  labels[100:900, 300:1100])


def test_erasing_a_chunk_back_to_unlabelled_removes_its_file(tmp_path) -> None:
    store = TiledLabels.create(tmp_path / "l.zarr", (600, 600), chunk=300)
    store.write(((10, 20), (10, 20)), np.ones((10, 10), np.uint8))
    store.flush()
    assert (tmp_path / "l.zarr" / "0.0").is_file()
    store.write(((10, 20), (10, 20)), np.full((10, 10), 255, np.uint8))
    assert store.flush() == 0 and not (tmp_path / "l.zarr" / "0.0").exists()


def test_a_kill_during_a_flush_leaves_every_chunk_whole(tmp_path, monkeypatch) -> None:
    store = TiledLabels.create(tmp_path / "l.zarr", (400, 400), chunk=200)
    store.write(((0, 400), (0, 400)), np.zeros((400, 400), np.uint8))
    store.flush()
    store.write(((0, 400), (0, 400)), np.ones((400, 400), np.uint8))
    real_replace, calls = os.replace, []

    def dying_replace(source, target):
        calls.append(target)
        if len(calls) == 3:  # the third chunk: the process dies with its new bytes beside it
            raise KeyboardInterrupt("killed")
        return real_replace(source, target)

    monkeypatch.setattr(tiled_labels.os, "replace", dying_replace)
    with pytest.raises(KeyboardInterrupt):
        store.flush()
    monkeypatch.setattr(tiled_labels.os, "replace", real_replace)
    after = TiledLabels.open(tmp_path / "l.zarr").read(((0, 400), (0, 400)))
    chunks = [after[y:y + 200, x:x + 200] for y in (0, 200) for x in (0, 200)]
    assert [int(c[0, 0]) for c in chunks] == [1, 1, 0, 0]  # two chunks new, two old
    assert all((c == c[0, 0]).all() for c in chunks)  # each one whole
    opened = zarr.open(str(tmp_path / "l.zarr"), mode="r", zarr_format=2)
    np.testing.assert_array_equal(opened[...], after)  # the partial file beside a chunk is no chunk


def test_damage_and_bad_requests_are_named(tmp_path) -> None:
    store = TiledLabels.create(tmp_path / "l.zarr", (300, 300), chunk=100)
    store.write(((0, 10), (0, 10)), np.ones((10, 10), np.uint8))
    store.flush()
    (tmp_path / "l.zarr" / "0.0").write_bytes(b"not zlib")
    with pytest.raises(DataError, match="chunk 0.0"):
        TiledLabels.open(tmp_path / "l.zarr").read(((0, 5), (0, 5)))
    (tmp_path / "l.zarr" / ".zarray").write_text("{", encoding="utf-8")
    with pytest.raises(DataError, match=".zarray"):
        TiledLabels.open(tmp_path / "l.zarr")
    with pytest.raises(InvalidArgumentError, match="already holds"):
        TiledLabels.create(tmp_path / "l.zarr", (10, 10))
    fresh = TiledLabels.create(tmp_path / "m.zarr", (50, 50))
    with pytest.raises(InvalidArgumentError, match="outside"):
        fresh.read(((60, 70), (0, 5)))
    with pytest.raises(InvalidArgumentError, match="values are"):
        fresh.write(((0, 5), (0, 5)), np.zeros((4, 5), np.uint8))
    with pytest.raises(InvalidArgumentError, match="uint8 or uint16"):
        TiledLabels.create(tmp_path / "f.zarr", (5, 5), np.float32)


@pytest.mark.parametrize("step", [1, 2, 3, 8, 64])
def test_strided_reads_match_numpy_striding(tmp_path, step) -> None:
    labels = np.random.default_rng(step).integers(0, 5, (700, 900), dtype=np.uint8)
    store = TiledLabels.create(tmp_path / "s.zarr", labels.shape, chunk=128)
    store.write(((0, 700), (0, 900)), labels)
    store.flush()
    fresh = TiledLabels.open(tmp_path / "s.zarr")
    for box in (((0, 700), (0, 900)), ((37, 611), (129, 877))):
        (y0, y1), (x0, x1) = box
        np.testing.assert_array_equal(fresh.read_strided(box, step), labels[y0:y1:step, x0:x1:step])


def test_a_snapshot_that_failed_to_be_written_is_kept_even_when_its_chunks_left_memory(tmp_path) -> None:
    store = TiledLabels.create(tmp_path / "s", (1024, 1024), chunk=256)
    store.write(((10, 20), (10, 20)), np.full((10, 10), 3, np.uint8))
    snapshot = store.snapshot_dirty()
    store.forget_clean()  # the chunk counted as saved and left memory, but its write then failed
    assert not store.dirty and store._cache == {}
    store.mark_dirty(snapshot)
    assert store.dirty == {(0, 0)}
    store.flush()
    assert TiledLabels.open(tmp_path / "s").read(((15, 16), (15, 16)))[0, 0] == 3
